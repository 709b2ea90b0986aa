"""Time the ingest of about 40 million synthetic outpatient events on DuckDB and on Spark, beside a bare DuckDB GROUP BY
and a pandas baseline (issues 14 and 15).

    make bench
    .venv/bin/python scripts/benchmark_ingest.py [--practices 1920] [--months 60] [--seed 1] [--dir DIR]
    .venv/bin/python scripts/benchmark_ingest.py --practices 100          # a quick check (about 2M outpatient rows)

1. Writes a synthetic PCT with event-level extracts, ``pbc synth --practices N --months M --seed S --events --out DIR``
   (DIR: /tmp/pbc-bench-events at the default 1,920 practices, /tmp/pbc-bench-events-pN otherwise), or reuses DIR
   when it is already there and complete (ground_truth.json of the same seed, practices and months, and every file
   listed in extracts/events_truth.json, the last file ``pbc synth --events`` writes).
2. Measures, each in a fresh child process (peak RSS = that child's ``ru_maxrss`` from ``os.wait4``, KiB -> GiB,
   1024**3 bytes, as scripts/benchmark.py and issue 14's figures; seconds = wall time of the work alone, without
   the child's imports, which are in ``process_s`` of the JSON):
   - ``bare_groupby``: plain DuckDB (no Ibis), memory_limit 2GB, ``CREATE TEMP TABLE AS SELECT`` practice,
     provider, specialty, first/follow-up (FIRSTATT in 1,3), month of the appointment date, count(*), sum(cost)
     ``FROM DIR/extracts/outpatients.parquet GROUP BY ALL`` (every row, no rules);
   - ``bare_groupby_all``: the same kind of GROUP BY of each event extract (outpatients, admitted care, A&E,
     e-RS referrals) in one process, the yardstick of the whole set;
   - ``ingest_outpatients``: ``pbc_analysis.ingest.run.run_ingest`` with the settings of configs/ingest_sample.yaml
     (paths moved to DIR/extracts; memory_limit "2GB"; temp_directory /tmp/pbc-bench-ingest-tmp/<step>; output
     DIR/bench_out/<step>) and the outpatient extract as the only hospital source, the reference sources it needs
     (registrations, practice reference, attributes, succession, providers, prices) and no referrals extract, so
     the referrals are DERIVED from the outpatients' GP-referred first attendances (``referrals: auto``);
   - ``ingest_all``: the same with every extract of configs/ingest_sample.yaml (referrals from the e-RS extract);
   - ``pandas_groupby_all``: the pandas baseline, each event extract read whole into a DataFrame (only the grouped
     columns) and grouped as the bare GROUP BY (no rules): what a notebook without an engine does;
   - ``ingest_all_spark``: ``ingest_all`` with ``engine: spark`` in local mode (``local[2]``, driver memory 4g): the
     same rules as Ibis expressions on Spark. Spark's JVM is a child of the measuring process, so every step's peak is
     also sampled over the whole process tree (psutil, every 0.2 s) and the larger of the two is reported.
   The ingest children also time each step of ``run_ingest`` (between its progress-bar steps; Ibis is lazy, so a
   step's time is where its query runs) and print them.
3. Prints a table (step, seconds, peak RSS GiB, seconds as a ratio to the bare GROUP BY) beside the targets of
   issue 14 (40M outpatient events -> tables within 2x of the bare GROUP BY; DuckDB memory limit 2 GB; peak RSS
   under 3 GB, checked as 3 GiB like scripts/benchmark.py's 4 GB target) and writes it to DIR/bench_ingest.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from bench_synth import add_synth_options, data_dir, ensure_synth, log  # scripts/ is on sys.path: the script's own folder

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_PRACTICES = 1920
CONFIG = ROOT / "configs" / "ingest_sample.yaml"
SAMPLE_EXTRACTS = "data/sample-events/extracts"
MEMORY_LIMIT = "2GB"
TEMP_ROOT = Path("/tmp/pbc-bench-ingest-tmp")
#: issue 14: the full ingest within 2x of the bare GROUP BY, DuckDB memory limit 2 GB, peak RSS under 3 GB
TARGET_RATIO = 2.0
TARGET_RSS_GIB = 3.0
STEPS = ("bare_groupby", "bare_groupby_all", "pandas_groupby_all", "ingest_outpatients", "ingest_all", "ingest_all_spark")
#: the step whose seconds are the denominator of each step's ratio
BASELINE = {"bare_groupby": "bare_groupby", "bare_groupby_all": "bare_groupby", "pandas_groupby_all": "bare_groupby_all",
            "ingest_outpatients": "bare_groupby", "ingest_all": "bare_groupby_all", "ingest_all_spark": "bare_groupby_all"}
#: Spark local mode for ``ingest_all_spark`` (the driver's JVM holds the executors: its memory is in the tree's peak)
SPARK = {"engine": "spark", "spark_master": "local[2]", "spark_conf": {"spark.driver.memory": "4g", "spark.ui.enabled": "false"}}
#: sources of the outpatient path alone
OUTPATIENT_SOURCES = ("outpatients", "registrations", "practice_reference", "practice_attributes", "succession",
                      "provider_reference", "prices")
#: bare GROUP BY of each event extract: file -> (grouping expressions, aggregates)
_BARE = {
    "outpatients.parquet": ("GPPRAC, PROCODE3, TRETSPEF, FIRSTATT IN ('1', '3') AS first, date_trunc('month', APPTDATE) AS month",
                            "count(*) AS n, sum(COST) AS cost"),
    "admitted.parquet": ("GPPRAC, PROCODE3, TRETSPEF, ADMIMETH, date_trunc('month', ADMIDATE) AS month",
                         "count(*) AS n, sum(COST) AS cost"),
    "ae.parquet": ("GP_PRACTICE_CODE, PROVIDER_CODE, EC_DEPARTMENT_TYPE, date_trunc('month', ARRIVAL_DATE) AS month",
                   "count(*) AS n, sum(COST) AS cost"),
    "referrals.parquet": ("REFERRER_ORG, PROVIDER_ORG, TFC, date_trunc('month', REFERRAL_DATE) AS month", "count(*) AS n"),
}


# ------------------------------------------------------------------ the synthetic extracts


def is_complete(data: Path, practices: int, months: int, seed: int) -> tuple[bool, str]:
    """Whether ``data`` holds a finished ``pbc synth --events`` of these settings (and why not)."""
    gt, truth = data / "ground_truth.json", data / "extracts" / "events_truth.json"
    if not gt.is_file() or not truth.is_file():
        return False, "no ground_truth.json or extracts/events_truth.json"
    g = json.loads(gt.read_text(encoding="utf-8"))
    got = (g.get("seed"), len(g.get("practices", [])), g.get("window", {}).get("n_months"))
    if got != (seed, practices, months):
        return False, f"written with seed, practices, months = {got}, not {(seed, practices, months)}"
    files = json.loads(truth.read_text(encoding="utf-8")).get("files", {})
    missing = [f for f in files.values() if not (data / "extracts" / f).is_file()]
    if missing or not files:
        return False, f"extracts missing: {missing or 'all'}"
    return True, "complete"


def ensure_extracts(data: Path, practices: int, months: int, seed: int) -> dict[str, Any]:
    """Reuse ``data`` if complete, else (re)write it with ``pbc synth --events``; returns what was done."""
    return ensure_synth(data, ["--practices", str(practices), "--months", str(months), "--seed", str(seed), "--events"],
                        lambda d: is_complete(d, practices, months, seed), ("ground_truth.json", "extracts"),
                        "the extracts")


def extract_rows(data: Path) -> dict[str, int]:
    """Rows of each event extract (from the Parquet footers)."""
    import pyarrow.parquet as pq

    return {f.split(".")[0]: pq.ParquetFile(data / "extracts" / f).metadata.num_rows for f in _BARE
            if (data / "extracts" / f).is_file()}


# ------------------------------------------------------------------ the measured steps (each in a child process)


def _one(con: Any, sql: str) -> Any:
    row = con.execute(sql).fetchone()
    return row[0] if row else None


def bare_groupby(data: Path, files: tuple[str, ...]) -> dict[str, Any]:
    """The bare DuckDB GROUP BY of each file into a temp table; seconds of the queries and result rows."""
    import duckdb

    temp = TEMP_ROOT / "bare"
    temp.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config={"memory_limit": MEMORY_LIMIT, "temp_directory": str(temp)})
    limit = _one(con, "SELECT current_setting('memory_limit')")
    t0 = time.perf_counter()
    groups = {}
    for i, f in enumerate(files):
        keys, aggs = _BARE[f]
        path = str(data / "extracts" / f).replace("'", "''")
        con.execute(f"CREATE TEMP TABLE g{i} AS SELECT {keys}, {aggs} FROM read_parquet('{path}') GROUP BY ALL")
        groups[f] = _one(con, f"SELECT count(*) FROM g{i}")
    seconds = time.perf_counter() - t0
    con.close()
    shutil.rmtree(temp, ignore_errors=True)
    return {"seconds": seconds, "groups": groups, "duckdb_memory_limit": limit}


def pandas_groupby(data: Path, files: tuple[str, ...]) -> dict[str, Any]:
    """The pandas baseline: each extract read whole into a DataFrame (only the grouped columns) and grouped like
    :func:`bare_groupby` (every row, no rules) - what a notebook without an engine would do."""
    import pandas as pd

    cols = {"outpatients.parquet": (["GPPRAC", "PROCODE3", "TRETSPEF", "FIRSTATT", "APPTDATE", "COST"], "APPTDATE", "FIRSTATT"),
            "admitted.parquet": (["GPPRAC", "PROCODE3", "TRETSPEF", "ADMIMETH", "ADMIDATE", "COST"], "ADMIDATE", None),
            "ae.parquet": (["GP_PRACTICE_CODE", "PROVIDER_CODE", "EC_DEPARTMENT_TYPE", "ARRIVAL_DATE", "COST"], "ARRIVAL_DATE", None),
            "referrals.parquet": (["REFERRER_ORG", "PROVIDER_ORG", "TFC", "REFERRAL_DATE"], "REFERRAL_DATE", None)}
    t0 = time.perf_counter()
    groups = {}
    for f in files:
        names, date, first = cols[f]
        df = pd.read_parquet(data / "extracts" / f, columns=names)
        df["month"] = pd.to_datetime(df.pop(date)).dt.to_period("M")
        if first:
            df["first"] = df.pop(first).isin(["1", "3"])
        keys = [c for c in df.columns if c != "COST"]
        g = df.groupby(keys, observed=True, sort=False)
        out = g.agg(n=(keys[0], "size"), cost=("COST", "sum")) if "COST" in df.columns else g.size()
        groups[f] = len(out)
        del df, g, out
    return {"seconds": time.perf_counter() - t0, "groups": groups}


def ingest_config(data: Path, step: str) -> dict[str, Any]:
    """configs/ingest_sample.yaml's ``ingest:`` section with the paths moved to ``data`` and the bench's engine."""
    cfg = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))["ingest"]
    ext = str(data / "extracts")
    sources = {k: {**v, "path": v["path"].replace(SAMPLE_EXTRACTS, ext)} for k, v in cfg["sources"].items()}
    if step == "ingest_outpatients":
        sources = {k: v for k, v in sources.items() if k in OUTPATIENT_SOURCES}
    out = {**cfg, "sources": sources, "tables": cfg["tables"].replace(SAMPLE_EXTRACTS, ext),
           "out": str(data / "bench_out" / step), "memory_limit": MEMORY_LIMIT, "temp_directory": str(TEMP_ROOT / step)}
    return {**out, **SPARK} if step.endswith("_spark") else out


def _step_timer(run_mod: Any, times: list[tuple[str, float]]) -> None:
    """Replace run_ingest's progress-step generator by one that records the seconds of each step."""
    names = getattr(run_mod, "_STEPS", None)
    if names is None or not hasattr(run_mod, "_steps"):
        return

    def steps(progress: bool) -> Any:
        t, prev = time.perf_counter(), None
        for name in names:
            if prev is not None:
                now = time.perf_counter()
                times.append((prev, now - t))
                log(f"  ingest step {prev:12s} {now - t:7.1f} s")
                t = now
            prev = name
            yield name
        if prev is not None:
            times.append((prev, time.perf_counter() - t))
            log(f"  ingest step {prev:12s} {times[-1][1]:7.1f} s")

    run_mod._steps = steps


def _memory_probe(engine_mod: Any, seen: list[str]) -> None:
    """Record DuckDB's memory limit as the ingest's connection has it."""
    connect = engine_mod.connect

    def probed(*a: Any, **k: Any) -> Any:
        con = connect(*a, **k)
        try:
            seen.append(str(con.raw_sql("SELECT current_setting('memory_limit')").fetchone()[0]))
        except Exception as exc:  # noqa: BLE001 - a probe only
            seen.append(f"unknown ({exc})")
        return con

    engine_mod.connect = probed


def ingest(data: Path, step: str) -> dict[str, Any]:
    """run_ingest of the step's sources; seconds, seconds per step, rows written and the reconciliation's totals."""
    from pbc_analysis.ingest import engine as engine_mod
    from pbc_analysis.ingest import run as run_mod
    from pbc_analysis.ingest.params import IngestParams

    cfg = ingest_config(data, step)
    out, temp = Path(cfg["out"]), Path(cfg["temp_directory"])
    shutil.rmtree(out, ignore_errors=True)
    temp.mkdir(parents=True, exist_ok=True)
    params = IngestParams.from_mapping(cfg, where=f"bench {step}")
    times: list[tuple[str, float]] = []
    limits: list[str] = []
    _step_timer(run_mod, times)
    if not step.endswith("_spark"):   # DuckDB's limit; Spark's driver memory is spark_conf's
        _memory_probe(engine_mod, limits)
    t0 = time.perf_counter()
    res = run_mod.run_ingest(params, progress=False)
    seconds = time.perf_counter() - t0
    shutil.rmtree(temp, ignore_errors=True)
    manifest = json.loads((out / "ingest.json").read_text(encoding="utf-8"))
    return {"seconds": seconds, "step_seconds": times, "rows": manifest.get("rows", {}),
            "referrals_from": manifest.get("referrals_from"), "sources": sorted(cfg["sources"]),
            "duckdb_memory_limit": limits[0] if limits else ("" if step.endswith("_spark") else "unknown"),
            "engine": manifest.get("engine"), "reconciliation_rows": len(res.reconciliation)}


def child(step: str, data: Path, result: Path) -> int:
    """Run one step in this (fresh) process and write its result."""
    if step == "bare_groupby":
        out = bare_groupby(data, ("outpatients.parquet",))
    elif step == "bare_groupby_all":
        out = bare_groupby(data, tuple(f for f in _BARE if (data / "extracts" / f).is_file()))
    elif step == "pandas_groupby_all":
        out = pandas_groupby(data, tuple(f for f in _BARE if (data / "extracts" / f).is_file()))
    else:
        out = ingest(data, step)
    result.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return 0


class _TreeSampler(threading.Thread):
    """The peak of the summed RSS of a process and its descendants (Spark's JVM is a child of the Python process),
    sampled every 0.2 s with psutil."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0, threading.Event()

    def run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self.stop.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
                total = 0
                for q in procs:
                    try:
                        total += q.memory_info().rss
                    except (psutil.NoSuchProcess, psutil.ZombieProcess):
                        pass
                self.peak = max(self.peak, total)
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                return
            self.stop.wait(0.2)


def measure(step: str, data: Path) -> dict[str, Any]:
    """Run ``step`` in a child process; its result, wall seconds of the whole process and peak RSS (GiB)."""
    result = data / "bench_out" / f"{step}.result.json"
    result.parent.mkdir(parents=True, exist_ok=True)
    result.unlink(missing_ok=True)
    log(f"{step}: starting a child process")
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, __file__, "--child", step, "--dir", str(data)], cwd=ROOT)
    tree = _TreeSampler(p.pid)
    tree.start()
    _, status, usage = os.wait4(p.pid, 0)
    tree.stop.set()
    tree.join()
    p.returncode = os.waitstatus_to_exitcode(status)
    process_s = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{step} failed (exit code {p.returncode})")
    out = json.loads(result.read_text(encoding="utf-8"))
    out |= {"process_s": process_s, "peak_rss_gib": max(usage.ru_maxrss / 1024**2, tree.peak / 2**30),
            "peak_rss_kib": usage.ru_maxrss, "peak_tree_rss_gib": tree.peak / 2**30}
    log(f"{step}: {out['seconds']:.1f} s (process {process_s:.1f} s), peak RSS {out['peak_rss_gib']:.2f} GiB")
    return out


# ------------------------------------------------------------------ the table


def verdicts(step: str, r: dict[str, Any], ratio: float) -> str:
    """The targets of issue 14 for one step."""
    limit = str(r.get("duckdb_memory_limit", ""))
    rss = "met" if r["peak_rss_gib"] < TARGET_RSS_GIB else "NOT met"
    out = [f"RSS<{TARGET_RSS_GIB:g}G {rss}"] + ([f"memory_limit {MEMORY_LIMIT} (DuckDB: {limit})"] if limit else [])
    if step.startswith("ingest"):
        out.insert(0, f"<= {TARGET_RATIO:g}x {'met' if ratio <= TARGET_RATIO else 'NOT met'}")
    return "; ".join(out)


def table(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for step, r in results.items():
        base = results.get(BASELINE[step])
        ratio = r["seconds"] / base["seconds"] if base else float("nan")
        rows.append({"step": step, "seconds": round(r["seconds"], 2), "process_s": round(r["process_s"], 2),
                     "peak_rss_gib": round(r["peak_rss_gib"], 3), "ratio": round(ratio, 2), "baseline": BASELINE[step],
                     "targets": verdicts(step, r, ratio)})
    return rows


def print_table(rows: list[dict[str, Any]], n_rows: dict[str, int], results: dict[str, dict[str, Any]]) -> None:
    print("\nevent rows: " + ", ".join(f"{k} {v:,d}" for k, v in n_rows.items()))
    print(f"targets (issue 14): ingest within {TARGET_RATIO:g}x of the bare GROUP BY, DuckDB memory_limit "
          f"{MEMORY_LIMIT}, peak RSS < {TARGET_RSS_GIB:g} GiB")
    print(f"{'step':20s}{'wall s':>9s}{'peak RSS GiB':>14s}{'ratio':>8s}  {'(to)':18s} targets")
    for r in rows:
        print(f"{r['step']:20s}{r['seconds']:>9.1f}{r['peak_rss_gib']:>14.2f}{r['ratio']:>7.2f}x  {r['baseline']:18s} "
              f"{r['targets']}")
    ingests = [s for s in results if results[s].get("step_seconds")]
    if ingests:
        print("\nseconds per step of run_ingest (Ibis is lazy: a step's time is where its queries run)")
        print(f"{'step':20s}" + "".join(f"{s:>20s}" for s in ingests))
        secs = {s: dict(results[s]["step_seconds"]) for s in ingests}
        for n in dict.fromkeys(n for s in ingests for n, _ in results[s]["step_seconds"]):
            print(f"{n:20s}" + "".join(f"{secs[s].get(n, 0.0):>20.1f}" for s in ingests))


def code_version() -> dict[str, Any]:
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    diff = git("diff", "HEAD", "--", "pbc_analysis/ingest")
    return {"commit": git("log", "-1", "--oneline"), "ingest_uncommitted": bool(git("status", "--porcelain", "pbc_analysis/ingest")),
            "ingest_diff_sha256": hashlib.sha256(diff.encode("utf-8")).hexdigest() if diff else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_synth_options(ap, DEFAULT_PRACTICES, "practices (1920: about 40M outpatient rows)", "/tmp/pbc-bench-events")
    ap.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated subset of {','.join(STEPS)}")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    data = data_dir(args, DEFAULT_PRACTICES, "/tmp/pbc-bench-events")
    if args.child:
        return child(args.child, data, data / "bench_out" / f"{args.child}.result.json")
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        ap.error(f"unknown steps {unknown}; choose from {','.join(STEPS)}")
    code = code_version()
    synth = ensure_extracts(data, args.practices, args.months, args.seed)
    n_rows = extract_rows(data)
    log("event rows: " + ", ".join(f"{k} {v:,d}" for k, v in n_rows.items()))
    results = {s: measure(s, data) for s in steps}
    rows = table(results)
    print_table(rows, n_rows, results)
    doc = {"command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
           "data": str(data), "practices": args.practices, "months": args.months, "seed": args.seed, "synth": synth,
           "event_rows": n_rows, "targets": {"ratio": TARGET_RATIO, "memory_limit": MEMORY_LIMIT, "peak_rss_gib": TARGET_RSS_GIB},
           "code": code, "code_changed_during_run": code_version() != code, "cpus": os.cpu_count(),
           "load_average_at_end": os.getloadavg(), "table": rows, "steps": results}
    (data / "bench_ingest.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    log(f"wrote {data / 'bench_ingest.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
