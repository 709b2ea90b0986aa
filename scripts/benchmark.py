"""Time the synthetic generator, validated loading and benchmarking at national size (6,500 practices x 60 months).

    make bench
    .venv/bin/python scripts/benchmark.py [--practices 6500] [--months 60] [--out DIR] [--no-load]
    .venv/bin/python scripts/benchmark.py --data DIR [--start 2003-04 --months 60]   # measure existing files only

Prints the rows of every table, the seconds spent generating and writing, the size on disk, then, measured in a
fresh child process (so that the generator's memory does not count): the seconds
`pbc_analysis.data.load_inputs` takes to read and validate everything written and the peak resident memory
(RSS) at that point, the seconds benchmarking takes (`pbc_analysis.stages.benchmark.build_cube` and
`benchmark_practices`, the work of notebook 02 without its figures), and the peak RSS of loading and
benchmarking together (RSS in GiB, 1024**3 bytes, as ``ru_maxrss`` reports it and as issue 14's figures were
taken), beside the targets of issue 14 (below 4 GB, no slower than the 99 s measured before the
loading kept codes as categoricals: 15.2 GB and 99 s, of which loading 65 s and 14.4 GB). Without --out the
files go to a temporary directory that is removed.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
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


#: issue 14's figures before the categorical loading (6,500 practices x 60 months) and its memory target
BEFORE = {"load_s": 65.0, "load_gb": 14.4, "total_s": 99.0, "total_gb": 15.2}
TARGET_GB = 4.0


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def measure(data_dir: Path, start: str, end: str) -> dict[str, float]:
    """Load and validate ``data_dir`` and benchmark it in this process: seconds and peak RSS (GB) of each step."""
    from pbc_analysis.stages import benchmark as B

    t0 = time.perf_counter()
    inputs = load_inputs(data_dir, start_month=start, end_month=end)
    t1 = time.perf_counter()
    load_gb = _peak_gb()
    n = sum(len(df) for df in inputs.tables().values())
    print(f"load_inputs (read + validate {n:,d} rows) {t1 - t0:.1f} s, peak RSS {load_gb:.2f} GiB")
    cube = B.build_cube(inputs)
    t2 = time.perf_counter()
    bm = B.benchmark_practices(cube)
    t3 = time.perf_counter()
    total_gb = _peak_gb()
    print(f"benchmarking: build_cube {t2 - t1:.1f} s + benchmark_practices {t3 - t2:.1f} s = {t3 - t1:.1f} s "
          f"({len(cube.practices):,d} practices x {len(cube.series)} series x {len(cube.months)} months; "
          f"{len(bm.ratios):,d} ratio rows)")
    res = {"load_s": t1 - t0, "load_gb": load_gb, "total_s": t3 - t0, "total_gb": total_gb}
    print(f"loading + benchmarking {res['total_s']:.1f} s, peak RSS {total_gb:.2f} GiB "
          f"(target < {TARGET_GB:g} GiB: {'met' if total_gb < TARGET_GB else 'NOT met'})")
    if len(cube.practices) == 6500 and len(cube.months) == 60:
        print(f"{'':24s}{'before':>17s}{'now':>17s}")
        print(f"{'loading':24s}{BEFORE['load_s']:>7.0f} s {BEFORE['load_gb']:>5.1f} GiB{res['load_s']:>7.1f} s "
              f"{res['load_gb']:>5.2f} GiB")
        print(f"{'loading + benchmarking':24s}{BEFORE['total_s']:>7.0f} s {BEFORE['total_gb']:>5.1f} GiB"
              f"{res['total_s']:>7.1f} s {res['total_gb']:>5.2f} GiB")
    return res


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
    ap.add_argument("--data", default=None, help="measure loading and benchmarking of this directory only (no synth)")
    args = ap.parse_args(argv)
    if args.data:
        measure(Path(args.data), args.start, _last_month(args.start, args.months))
        return 0

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
        del result  # the child measures loading and benchmarking on its own
        subprocess.run([sys.executable, __file__, "--data", str(out), "--start", args.start, "--months",
                        str(args.months)], check=True)
    if tmp:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
