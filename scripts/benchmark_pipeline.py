"""Time and measure the whole pipeline on synthetic PCTs of several sizes: per stage, and its scaling (issue 17).

    .venv/bin/python scripts/benchmark_pipeline.py [--practices 60 400 1500] [--months 60] [--seed 1]

For each size N:

1. Writes a synthetic PCT, ``pbc synth --practices N --months M --seed S --out /tmp/pbc-bench-pipeline-pN``, or
   reuses the directory when its ``ground_truth.json`` has the same seed, practices and months.
2. Writes a run config from configs/sample.yaml with ``data_dir`` = that directory and ``run: workers: 1`` (the
   notebooks one after another, so that every memory sample belongs to one stage) and runs ``pbc run`` in a child
   process, sampling the process tree's memory (PSS: shared pages divided among their sharers; and summed RSS, an
   upper bound) every ``--interval`` seconds with psutil.
3. Splits the samples into stages by the times ``run.log`` records (validation until the first notebook starts,
   each notebook until it finishes, then rendering, practice pages and the bundle) and reports, per stage, the
   wall seconds and the peak memory of the process tree.

Finally the scaling exponent of each stage's time and peak memory, the least-squares slope of log(value) on
log(practices) over the sizes, and the targets of issue 17 (1,500 practices: under 100 s and 4 GiB for the
process tree; 400: under 1.5 GiB). Everything is written to /tmp/pbc-bench-pipeline.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import yaml
from bench_synth import ensure_synth, log  # scripts/ is on sys.path: the script's own folder
from benchmark_national import _tree_memory

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "sample.yaml"
#: issue 17's targets: practices -> (seconds or None, GiB of the process tree)
TARGETS = {1500: (100.0, 4.0), 400: (None, 1.5)}
_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO (.*)$")


def is_complete(data: Path, practices: int, months: int, seed: int) -> tuple[bool, str]:
    """Whether ``data`` holds a finished ``pbc synth`` of these settings (and why not)."""
    truth = data / "ground_truth.json"
    if not truth.is_file():
        return False, "no ground_truth.json"
    p = json.loads(truth.read_text(encoding="utf-8")).get("generator", {}).get("params", {})
    got = (p.get("seed"), p.get("n_practices"), p.get("n_months"))
    return (got == (seed, practices, months)), f"written with seed, practices, months = {got}"


def write_config(data: Path, practices: int) -> Path:
    """configs/sample.yaml on ``data``, notebooks one after another, as DIR/bench_pipeline.yaml."""
    cfg = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    cfg["parameters"]["data_dir"] = str(data)
    cfg["run"]["name"] = f"bench-p{practices}"
    cfg["run"]["workers"] = 1
    path = data / "bench_pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def run_sampled(config: Path, reports: Path, interval: float) -> tuple[dict[str, Any], list[tuple[float, int, int]]]:
    """``pbc run`` in a child process: its exit code and seconds, and (epoch time, PSS, RSS) samples of its tree."""
    shutil.rmtree(reports, ignore_errors=True)
    reports.mkdir(parents=True)
    cmd = [sys.executable, "-m", "pbc_analysis.pipeline.cli", "run", "--config", str(config), "--reports-dir", str(reports)]
    log("running: pbc " + " ".join(cmd[3:]))
    env = {**os.environ, "JUPYTER_PREFER_ENV_PATH": "1", "MPLBACKEND": "Agg"}
    samples: list[tuple[float, int, int]] = []
    t0 = time.perf_counter()
    with open(reports / "bench_pipeline.log", "w", encoding="utf-8") as out:
        child = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
        proc = psutil.Process(child.pid)
        while child.poll() is None:
            rss, pss, _ = _tree_memory(proc)
            samples.append((time.time(), pss, rss))
            time.sleep(interval)
    seconds = time.perf_counter() - t0
    log(f"pbc run exited {child.returncode} after {seconds:.1f} s")
    return {"exit_code": child.returncode, "seconds": round(seconds, 2)}, samples


def stage_windows(run_dir: Path, begin: float, end: float) -> list[tuple[str, float, float]]:
    """(stage, start, end) in epoch seconds: from ``begin`` (the command's start) to the first notebook, validation
    and settings; each notebook until its "finished" line in the run's log; then the report, pages and bundle."""
    marks: list[tuple[float, str]] = []
    for line in (run_dir / "run.log").read_text(encoding="utf-8").splitlines():
        m = _LOG_TIME.match(line)
        if m:
            t = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            marks.append((t, m.group(2)))
    start = begin
    windows, last, label = [], start, "validation"
    for t, msg in marks:
        if msg.startswith("executing "):  # a notebook starts (all at once when run in parallel)
            if label == "validation":
                windows.append(("validation and settings", start, t))
                label = "notebooks"
            last = t
        m = re.match(r"(\S+) finished in", msg)
        if m:
            windows.append((m.group(1), last, t))
            last = t
    windows.append(("report, pages and bundle", last, end))
    return windows


def per_stage(windows: list[tuple[str, float, float]], samples: list[tuple[float, int, int]]) -> list[dict[str, Any]]:
    """Each stage's wall seconds and the peak PSS and RSS of the samples inside its window."""
    out = []
    for name, a, b in windows:
        inside = [s for s in samples if a <= s[0] <= b]
        out.append({"stage": name, "seconds": round(b - a, 2),
                    "peak_pss_gib": round(max((s[1] for s in inside), default=0) / 2**30, 3),
                    "peak_rss_gib": round(max((s[2] for s in inside), default=0) / 2**30, 3)})
    return out


def exponents(sizes: list[int], rows: dict[int, list[dict[str, Any]]], key: str) -> dict[str, float | None]:
    """Per stage, the slope of log(``key``) on log(practices) (None with fewer than two positive values)."""
    out: dict[str, float | None] = {}
    for stage in [r["stage"] for r in rows[sizes[0]]]:
        pts = [(n, r[key]) for n in sizes for r in rows[n] if r["stage"] == stage and r[key] > 0]
        out[stage] = (round(float(np.polyfit(np.log([p[0] for p in pts]), np.log([p[1] for p in pts]), 1)[0]), 2)
                      if len(pts) >= 2 else None)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--practices", type=int, nargs="+", default=[60, 400, 1500])
    ap.add_argument("--months", type=int, default=60)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--interval", type=float, default=0.5, help="seconds between memory samples")
    args = ap.parse_args(argv)
    sizes = sorted(set(args.practices))
    rows: dict[int, list[dict[str, Any]]] = {}
    totals: dict[int, dict[str, Any]] = {}
    for n in sizes:
        data = Path(f"/tmp/pbc-bench-pipeline-p{n}")
        synth = ensure_synth(data, ["--practices", str(n), "--months", str(args.months), "--seed", str(args.seed)],
                             lambda d, n=n: is_complete(d, n, args.months, args.seed), ("ground_truth.json",), "the PCT")
        run, samples = run_sampled(write_config(data, n), data / "reports", args.interval)
        runs = [p for p in (data / "reports").iterdir() if p.is_dir() and not p.is_symlink() and (p / "run.log").is_file()]
        if run["exit_code"] != 0 or len(runs) != 1:
            raise SystemExit(f"the run of {n} practices failed (exit {run['exit_code']}); see {data / 'reports'}")
        now = time.time()
        rows[n] = per_stage(stage_windows(runs[0], samples[0][0] if samples else now, samples[-1][0] if samples else now),
                            samples)
        totals[n] = {**run, "synth": synth, "peak_pss_gib": round(max((s[1] for s in samples), default=0) / 2**30, 3),
                     "peak_rss_gib": round(max((s[2] for s in samples), default=0) / 2**30, 3)}
        print(f"\n{n:,d} practices, {args.months} months: {run['seconds']:.1f} s, peak {totals[n]['peak_pss_gib']:.2f} GiB "
              f"PSS ({totals[n]['peak_rss_gib']:.2f} GiB summed RSS)")
        print(f"  {'stage':28s}{'seconds':>9s}{'peak PSS GiB':>14s}{'peak RSS GiB':>14s}")
        for r in rows[n]:
            print(f"  {r['stage']:28s}{r['seconds']:>9.1f}{r['peak_pss_gib']:>14.2f}{r['peak_rss_gib']:>14.2f}")
        target = TARGETS.get(n)
        if target:
            secs, gib = target
            ok = (secs is None or run["seconds"] < secs) and totals[n]["peak_pss_gib"] < gib
            print(f"  issue 17 target ({'under ' + str(secs) + ' s and ' if secs else 'under '}{gib} GiB): "
                  f"{'met' if ok else 'NOT met'}")
    doc: dict[str, Any] = {"sizes": sizes, "months": args.months, "seed": args.seed, "cpus": os.cpu_count(),
                           "totals": {str(n): totals[n] for n in sizes}, "stages": {str(n): rows[n] for n in sizes}}
    if len(sizes) >= 2:
        doc["time_exponent"], doc["memory_exponent"] = exponents(sizes, rows, "seconds"), exponents(sizes, rows, "peak_pss_gib")
        print("\nscaling exponents (slope of log value on log practices): stage, time, peak memory")
        for stage, e in doc["time_exponent"].items():
            print(f"  {stage:28s}{e if e is not None else '':>8}{doc['memory_exponent'][stage] or '':>8}")
    Path("/tmp/pbc-bench-pipeline.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    log("wrote /tmp/pbc-bench-pipeline.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
