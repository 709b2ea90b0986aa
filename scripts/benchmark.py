"""Time the synthetic generator and validated loading at national size (6,500 practices x 60 months).

    make bench
    .venv/bin/python scripts/benchmark.py [--practices 6500] [--months 60] [--out DIR] [--no-load]

Prints the rows of every table, the seconds spent generating and writing, the size on disk, the
seconds `pbc_analysis.data.load_inputs` takes to read and validate everything it wrote, the seconds
benchmarking takes (`pbc_analysis.stages.benchmark.build_cube` and `benchmark_practices`, the work of
notebook 02 without its figures), and the peak resident memory. Without --out the files go to a temporary directory that is removed.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pbc_analysis.data import load_inputs  # noqa: E402
from pbc_analysis.synth import SynthParams, generate, write_tables  # noqa: E402


def _last_month(start: str, months: int) -> str:
    y, m = (int(x) for x in start.split("-"))
    k = y * 12 + m - 1 + months - 1
    return f"{k // 12:04d}-{k % 12 + 1:02d}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--practices", type=int, default=6500)
    ap.add_argument("--months", type=int, default=60)
    ap.add_argument("--start", default="2003-04")
    ap.add_argument("--seed", type=int, default=20070401)
    ap.add_argument("--fmt", default="parquet", choices=["parquet", "csv", "csv.gz"])
    ap.add_argument("--out", default=None, help="output directory (default: a temporary directory)")
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--no-load", action="store_true", help="skip timing load_inputs on the written files")
    args = ap.parse_args(argv)

    tmp = None
    out = Path(args.out) if args.out else Path(tmp := tempfile.mkdtemp(prefix="pbc_synth_bench_"))
    params = SynthParams(seed=args.seed, n_practices=args.practices, n_months=args.months, start_month=args.start)
    t0 = time.perf_counter()
    result = generate(params, progress=args.progress)
    t1 = time.perf_counter()
    paths = write_tables(result, out, fmt=args.fmt, progress=args.progress)
    t2 = time.perf_counter()

    total_rows = 0
    for name, df in result.tables.items():
        total_rows += len(df)
        print(f"{name:20s} {len(df):>12,d} rows  {paths[name].stat().st_size / 1e6:9.1f} MB  {paths[name].name}")
    size = sum(pth.stat().st_size for pth in paths.values())
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"{'total':20s} {total_rows:>12,d} rows  {size / 1e6:9.1f} MB (incl. ground_truth.json)")
    print(f"practices={args.practices} months={args.months} fmt={args.fmt}")
    print(f"generate {t1 - t0:.1f} s, write {t2 - t1:.1f} s, total {t2 - t0:.1f} s, peak RSS {peak_gb:.1f} GB")
    if not args.no_load:
        t3 = time.perf_counter()
        inputs = load_inputs(out, start_month=args.start, end_month=_last_month(args.start, args.months))
        t4 = time.perf_counter()
        n = sum(len(df) for df in inputs.tables().values())
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
        print(f"load_inputs (read + validate {n:,d} rows) {t4 - t3:.1f} s, peak RSS {peak_gb:.1f} GB")
        from pbc_analysis.stages import benchmark as B

        t5 = time.perf_counter()
        cube = B.build_cube(inputs)
        t6 = time.perf_counter()
        bm = B.benchmark_practices(cube)
        t7 = time.perf_counter()
        print(f"benchmarking: build_cube {t6 - t5:.1f} s + benchmark_practices {t7 - t6:.1f} s = {t7 - t5:.1f} s "
              f"({len(cube.practices):,d} practices x {len(cube.series)} series x {len(cube.months)} months; "
              f"{len(bm.ratios):,d} ratio rows)")
    if tmp:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
