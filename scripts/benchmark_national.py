"""Time and measure the national run: every commissioner of a synthetic nation in one ``pbc run`` (issue 15).

    make bench
    .venv/bin/python scripts/benchmark_national.py [--practices 6500] [--months 60] [--seed 1] [--dir DIR]
    .venv/bin/python scripts/benchmark_national.py --practices 300        # a quick check (a few commissioners)

1. Writes a synthetic nation, ``pbc synth --national --practices N --months M --seed S --out DIR`` (DIR:
   /tmp/pbc-bench-national at the default 6,500 practices, /tmp/pbc-bench-national-pN otherwise), or reuses DIR
   when it is complete (``national_truth.json`` of the same seed, practices and months: the last file written).
2. Writes a run config from configs/national.yaml with ``data_dir`` = DIR (and ``run: parallel`` when given) to
   DIR/bench_national.yaml and runs ``pbc run --config DIR/bench_national.yaml --reports-dir DIR/reports`` in a
   child process, sampling the memory of the whole process tree (the runner, its forked commissioner workers and
   their Jupyter kernels) every ``--interval`` seconds with psutil: the sum of RSS (counts pages shared by forked
   processes more than once: an upper bound) and the sum of PSS (shared pages divided among their sharers: the
   tree's real footprint). Peaks of both are reported; the target (issue 15: under 8 GB) is checked on PSS and
   on RSS, in GiB (1024**3 bytes) like scripts/benchmark.py.
3. Reads the national run's manifest: each commissioner's status and seconds; prints the total wall time, the
   per-commissioner median (and quartiles), failures with their reasons, and writes DIR/bench_national.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import yaml
from bench_synth import add_synth_options, data_dir, ensure_synth, log  # scripts/ is on sys.path: the script's own folder

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "national.yaml"
DEFAULT_PRACTICES = 6500
#: issue 15: the national run completes on 2 cores / 24 GB with peak memory under 8 GB
TARGET_GIB = 8.0


def is_complete(data: Path, practices: int, months: int, seed: int) -> tuple[bool, str]:
    """Whether ``data`` holds a finished ``pbc synth --national`` of these settings (and why not)."""
    truth = data / "national_truth.json"
    if not truth.is_file():
        return False, "no national_truth.json"
    doc = json.loads(truth.read_text(encoding="utf-8"))
    nat = doc.get("national", {})
    got = (nat.get("seed"), nat.get("n_practices"), nat.get("n_months"))
    if got != (seed, practices, months):
        return False, f"written with seed, practices, months = {got}, not {(seed, practices, months)}"
    return True, "complete"


def ensure_nation(data: Path, practices: int, months: int, seed: int) -> dict[str, Any]:
    """Reuse ``data`` if complete, else (re)write it with ``pbc synth --national``."""
    return ensure_synth(data, ["--national", "--practices", str(practices), "--months", str(months), "--seed", str(seed)],
                        lambda d: is_complete(d, practices, months, seed), ("national_truth.json", "practices.csv"),
                        "the nation")


def write_config(data: Path, parallel: int | None) -> Path:
    """configs/national.yaml with ``data_dir`` moved to ``data`` (and ``run: parallel``), as DIR/bench_national.yaml."""
    cfg = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    cfg["parameters"]["data_dir"] = str(data)
    cfg["run"]["name"] = "bench-national"
    if parallel is not None:
        cfg["run"]["parallel"] = parallel
    path = data / "bench_national.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def _tree_memory(proc: psutil.Process) -> tuple[int, int, int]:
    """(sum of RSS, sum of PSS, processes) of ``proc`` and all its descendants, in bytes."""
    rss = pss = n = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0, 0
    for p in procs:
        try:
            info = p.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
        n += 1
    return rss, pss, n


def run_and_sample(config: Path, reports: Path, interval: float) -> dict[str, Any]:
    """``pbc run`` in a child process; wall seconds, exit code and the process tree's memory peaks."""
    shutil.rmtree(reports, ignore_errors=True)
    cmd = [sys.executable, "-m", "pbc_analysis.pipeline.cli", "run", "--config", str(config), "--reports-dir", str(reports)]
    log("running: pbc " + " ".join(cmd[3:]))
    env = {**os.environ, "JUPYTER_PREFER_ENV_PATH": "1", "MPLBACKEND": "Agg"}
    t0 = time.perf_counter()
    with open(reports.parent / "bench_national.log", "w", encoding="utf-8") as out:
        child = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
        proc = psutil.Process(child.pid)
        peak_rss = peak_pss = peak_n = 0
        last = 0.0
        while child.poll() is None:
            rss, pss, n = _tree_memory(proc)
            peak_rss, peak_pss, peak_n = max(peak_rss, rss), max(peak_pss, pss), max(peak_n, n)
            if time.perf_counter() - last > 60:
                last = time.perf_counter()
                log(f"  {last - t0:6.0f} s: tree {n} processes, RSS {rss / 2**30:.2f} GiB, PSS {pss / 2**30:.2f} GiB")
            time.sleep(interval)
    seconds = time.perf_counter() - t0
    log(f"pbc run exited {child.returncode} after {seconds:.1f} s; peak PSS {peak_pss / 2**30:.2f} GiB, "
        f"peak RSS {peak_rss / 2**30:.2f} GiB")
    return {"seconds": round(seconds, 2), "exit_code": child.returncode, "peak_rss_gib": round(peak_rss / 2**30, 3),
            "peak_pss_gib": round(peak_pss / 2**30, 3), "peak_processes": peak_n, "interval_s": interval}


def national_run_dir(reports: Path) -> Path:
    """The one run directory the national run made under ``reports``."""
    runs = sorted(p for p in reports.iterdir() if p.is_dir() and not p.is_symlink() and (p / "national.html").exists()) \
        if reports.is_dir() else []
    if len(runs) != 1:
        raise SystemExit(f"expected one national run directory with national.html under {reports}, found {len(runs)}; "
                         f"see {reports.parent / 'bench_national.log'}")
    return runs[0]


def commissioner_times(run_dir: Path) -> dict[str, Any]:
    """Per commissioner status and seconds from the national manifest; median and quartiles of the complete ones."""
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    rows = manifest.get("commissioners", [])
    if isinstance(rows, dict):
        rows = [{"commissioner_code": k, **v} for k, v in rows.items()]
    done = sorted(float(r["seconds"]) for r in rows if r.get("status") == "complete" and r.get("seconds") is not None)
    failed = [{"commissioner_code": r.get("commissioner_code"), "reason": r.get("reason")} for r in rows
              if r.get("status") != "complete"]
    q = statistics.quantiles(done, n=4) if len(done) >= 2 else [float("nan")] * 3
    return {"n": len(rows), "complete": len(done), "failed": failed,
            "median_s": round(statistics.median(done), 2) if done else None, "q1_s": round(q[0], 2), "q3_s": round(q[2], 2),
            "min_s": round(done[0], 2) if done else None, "max_s": round(done[-1], 2) if done else None,
            "sum_s": round(sum(done), 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_synth_options(ap, DEFAULT_PRACTICES, "practices in the nation (6500: England)", "/tmp/pbc-bench-national")
    ap.add_argument("--parallel", type=int, default=None, help="commissioners at once (default: the config's)")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between memory samples")
    args = ap.parse_args(argv)
    data = data_dir(args, DEFAULT_PRACTICES, "/tmp/pbc-bench-national")
    synth = ensure_nation(data, args.practices, args.months, args.seed)
    config = write_config(data, args.parallel)
    run = run_and_sample(config, data / "reports", args.interval)
    run_dir = national_run_dir(data / "reports")
    per = commissioner_times(run_dir)
    met = run["peak_pss_gib"] < TARGET_GIB
    print(f"\nnational run of {per['n']} commissioners ({args.practices:,d} practices, {args.months} months) on "
          f"{os.cpu_count()} cores")
    print(f"{'total wall time':34s}{run['seconds']:>10.1f} s   (pbc run exit code {run['exit_code']})")
    print(f"{'per commissioner: median':34s}{per['median_s'] or float('nan'):>10.1f} s   (quartiles {per['q1_s']} to "
          f"{per['q3_s']} s, range {per['min_s']} to {per['max_s']} s; sum {per['sum_s']} s)")
    print(f"{'peak memory of the process tree':34s}{run['peak_pss_gib']:>10.2f} GiB PSS ({run['peak_rss_gib']:.2f} GiB "
          f"summed RSS, {run['peak_processes']} processes at most)   target < {TARGET_GIB:g} GiB: {'met' if met else 'NOT met'}")
    print(f"{'commissioners complete / failed':34s}{per['complete']:>10d} / {len(per['failed'])}")
    for f in per["failed"]:
        print(f"  failed {f['commissioner_code']}: {f['reason']}")
    doc = {"command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
           "data": str(data), "practices": args.practices, "months": args.months, "seed": args.seed, "synth": synth,
           "run": run, "run_dir": str(run_dir), "commissioners": per, "target_gib": TARGET_GIB, "target_met": met,
           "cpus": os.cpu_count(), "load_average_at_end": os.getloadavg()}
    (data / "bench_national.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    log(f"wrote {data / 'bench_national.json'}")
    return 0 if run["exit_code"] in (0, 1) else 1


if __name__ == "__main__":
    raise SystemExit(main())
