"""The ``pbc`` command.

    pbc run --config configs/sample.yaml       run the pipeline and publish the report
    pbc verify reports/<run_id>                re-run a published run and compare its tables
    pbc synth --seed N --practices P --months M --out DIR
                                               write a synthetic PCT (inputs + ground truth)
    pbc validate --data-dir DIR --start YYYY-MM --end YYYY-MM
                                               validate input files without running anything
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import paths


def _cmd_run(args: argparse.Namespace) -> int:
    from .run import ConfigError, RunError, load_config, run_pipeline

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        run_dir = run_pipeline(cfg, reports_dir=paths.resolve(args.reports_dir))
    except RunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"run {run_dir.name} finished in {time.perf_counter() - start:.1f} s: {run_dir}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from .verify import verify

    report = verify(args.run_dir)
    print(report)
    return 0 if report.identical else 1


def _cmd_synth(args: argparse.Namespace) -> int:
    from .synth import write_synthetic_pct

    start = time.perf_counter()
    files = write_synthetic_pct(paths.resolve(args.out, base=Path.cwd()), seed=args.seed, n_practices=args.practices,
                                n_months=args.months, start_month=args.start, fmt=args.format, progress=not args.quiet)
    print(f"wrote {len(files)} tables and ground_truth.json to {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from .data import DataValidationError, load_inputs

    try:
        inputs = load_inputs(paths.resolve(args.data_dir, base=Path.cwd()), start_month=args.start, end_month=args.end)
    except DataValidationError as exc:
        print(exc, file=sys.stderr)
        return 1
    for table, path in sorted(inputs.files.items()):
        print(f"{table:20s} {len(getattr(inputs, table)):>12,d} rows  {path}")
    print("all checks passed")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pbc", description="Evaluate practice based commissioning reproducibly.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run the notebooks for a config and publish the HTML report")
    p.add_argument("--config", required=True, help="YAML run config, e.g. configs/sample.yaml")
    p.add_argument("--reports-dir", default=str(paths.REPORTS_DIR), help="where run directories go (default: reports/)")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("verify", help="re-run a published run from its manifest and compare result tables")
    p.add_argument("run_dir", help="a run directory, e.g. reports/latest")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser("synth", help="write a synthetic PCT with planted effects and its ground truth")
    p.add_argument("--seed", type=int, default=20070401)
    p.add_argument("--practices", type=int, default=60)
    p.add_argument("--months", type=int, default=60)
    p.add_argument("--start", default="2003-04", help="first month, YYYY-MM (default 2003-04)")
    p.add_argument("--format", choices=("parquet", "csv"), default="parquet", help="format of the large tables")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("validate", help="validate a data directory against the data dictionary")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--start", required=True, help="first month of the analysis window, YYYY-MM")
    p.add_argument("--end", required=True, help="last month of the analysis window, YYYY-MM")
    p.set_defaults(func=_cmd_validate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
