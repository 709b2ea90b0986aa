"""The ``pbc`` command.

    pbc run --config configs/sample.yaml       run the pipeline and publish the report
    pbc verify reports/<run_id> [--allow-dirty] [--no-rerun] [--keep] [--against RERUN]
                                               check a published run's files, re-run it and compare
    pbc synth --seed N --practices P --months M --start YYYY-MM --out DIR [--cohort-offsets ...] ...
                                               write a synthetic PCT (inputs + ground truth); every
                                               generator parameter is a flag (pbc synth --help)
    pbc settings [NOTEBOOK]                    every setting: default, type, allowed values, rule
    pbc init --data-dir DIR [--out CONFIG] [--name NAME] [--force]
                                               validate DIR and write a config with every setting
    pbc validate --data-dir DIR --start YYYY-MM --end YYYY-MM [--config CONFIG]
                                               validate input files without running anything
    pbc ingest --config INGEST.yaml [--out DIR] [--quiet]
                                               event-level extracts -> the analysis tables (Parquet),
                                               with the reconciliation of every source
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from pbc_analysis.core import paths


def run_and_report(cfg, reports_dir: Path, echo=print) -> int:
    """Run a validated config and turn the outcome into an exit code and one message.

    Parameters
    ----------
    cfg : RunConfig
        A config from :func:`config.parse_config`.
    reports_dir : Path
        Where the run directory is made.
    echo : callable
        Progress printer.

    Returns
    -------
    int
        0: complete; 1: the inputs failed validation or a notebook failed (the message names it and
        where its partial output is); 128 + N: stopped by signal N (130 for Ctrl-C, 143 for SIGTERM),
        every notebook stopped and the run marked incomplete.
    """
    from pbc_analysis.pipeline.run import RunError, run_pipeline
    from pbc_analysis.pipeline.supervise import Interrupted

    start = time.perf_counter()
    try:
        run_dir = run_pipeline(cfg, reports_dir=reports_dir, echo=echo)
    except RunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Interrupted as exc:
        print(f"\nstopped: {exc}; nothing is left running, and a run directory, if one was made, is marked "
              "incomplete (reports/latest still points at the last complete run)", file=sys.stderr)
        return exc.exit_code
    print(f"run {run_dir.name} finished in {time.perf_counter() - start:.1f} s: {run_dir}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from pbc_analysis.pipeline.run import ConfigError, load_config

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return run_and_report(cfg, paths.resolve(args.reports_dir, base=Path.cwd()))


def _cmd_verify(args: argparse.Namespace) -> int:
    """``pbc verify``: 0 verified (identical or within tolerance), 1 not (printed why), 2 refused, 128+N signal N."""
    from pbc_analysis.pipeline.supervise import Interrupted
    from pbc_analysis.pipeline.verify import VerifyRefused, verify

    try:
        report = verify(args.run_dir, echo=print, allow_dirty=args.allow_dirty, rerun=not args.no_rerun, keep=args.keep,
                        against=args.against)
    except VerifyRefused as exc:
        print(f"error: refused: {exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(f"\nstopped: {exc}; the re-run was stopped", file=sys.stderr)
        return exc.exit_code
    if report.error:
        sys.stdout.flush()
        print(f"error: {report.error}", file=sys.stderr)
    return report.exit_code


def _cmd_synth(args: argparse.Namespace) -> int:
    """``pbc synth``: 0 written, 2 a flag refused (every problem printed, naming its flag and the fix)."""
    from pbc_analysis.core.checks import ArgumentError
    from pbc_analysis.synth import flags, generate, params_from_flags, pipeline_warnings, write_tables
    from pbc_analysis.synth.options import flag_label, name_flags
    from pbc_analysis.synth.write import write_result_events

    given = {f.name: getattr(args, f.name) for f in flags() if hasattr(args, f.name)}
    if getattr(args, "national", False):
        return _synth_national(args, given)
    try:
        params = params_from_flags(given)
        resolved = params.resolved()
    except ArgumentError as exc:
        print("error: pbc synth: " + "; ".join(exc.problems), file=sys.stderr)
        return 2
    for warning in pipeline_warnings(resolved, flag_label):
        print(f"warning: {warning}", file=sys.stderr)
    start = time.perf_counter()
    try:
        result = generate(params, progress=not args.quiet)
    except ValueError as exc:  # a value only the drawn PCT can refuse (an unknown --provider-cut-provider)
        print(f"error: pbc synth: {name_flags(str(exc))}", file=sys.stderr)
        return 2
    out = paths.resolve(args.out, base=Path.cwd())
    files = write_tables(result, out, fmt=args.format, progress=not args.quiet)
    events = write_result_events(result, out, progress=not args.quiet) if getattr(args, "events", False) else {}
    extracts = f" and {len(events) - 1} extracts with events_truth.json to {Path(args.out) / 'extracts'}" if events else ""
    print(f"wrote {len(files) - 1} tables and ground_truth.json to {args.out}{extracts} in "
          f"{time.perf_counter() - start:.1f} s")
    return 0


def _synth_national(args: argparse.Namespace, given: dict[str, str]) -> int:
    """``pbc synth --national``: 0 written, 2 a flag refused."""
    from pbc_analysis.core.checks import ArgumentError
    from pbc_analysis.synth import pipeline_warnings
    from pbc_analysis.synth.national import national_from_flags, plan_national, write_national
    from pbc_analysis.synth.options import flag_label

    try:
        base = national_from_flags(given)
        commissioners = plan_national(base)
    except ArgumentError as exc:
        print("error: pbc synth --national: " + "; ".join(exc.problems), file=sys.stderr)
        return 2
    for c in commissioners:
        for warning in pipeline_warnings(c.params.resolved(), flag_label):
            print(f"warning: commissioner {c.code}: {warning}", file=sys.stderr)
    start, echo = time.perf_counter(), None if args.quiet else print
    out = paths.resolve(args.out, base=Path.cwd())
    write_national(out, commissioners, base, fmt=args.format, echo=echo, events=args.events)
    extracts = f"; the extracts and events_truth.json to {Path(args.out) / 'extracts'}" if args.events else ""
    print(f"wrote {len(commissioners)} commissioner(s) of {base.n_practices} practices: the tables, commissioners.csv "
          f"and national_truth.json to {args.out}{extracts} in {time.perf_counter() - start:.1f} s")
    return 0


def _add_synth_flags(p: argparse.ArgumentParser) -> None:
    """One flag per field of ``SynthParams``, its name, metavar, default and help from the dataclass.

    Flags not typed stay absent from the namespace (``argparse.SUPPRESS``), so the parameters are built
    from what was given and every other field keeps the dataclass's default.
    """
    from pbc_analysis.synth import flags

    groups: dict[str, Any] = {}
    for f in flags():
        if f.group not in groups:
            groups[f.group] = p.add_argument_group(f.group)
        groups[f.group].add_argument(f.flag, dest=f.name, metavar=f.metavar, default=argparse.SUPPRESS,
                                     help=f.help.replace("%", "%%"))
    p.add_argument("--events", action="store_true",
                   help="also write the PCT as event-level extracts (outpatients, admitted care, A&E, e-RS referrals as "
                        "Parquet; GP registrations, practice reference, succession, providers, prices as CSV; the local "
                        "tables; events_truth.json: the planted dirt by source and reason) into OUT/extracts/, for "
                        "pbc ingest (configs/ingest_sample.yaml); the tables in OUT are written unchanged")
    p.add_argument("--national", action="store_true",
                   help="a synthetic nation: --practices N (at least 30) split into commissioners of 30 to 200 practices, "
                        "each a synthetic PCT with its own seed, codes, providers, engagement timing and planted effects; "
                        "writes the tables of all of them, commissioners.csv and national_truth.json (every "
                        "commissioner's truth); only --seed, --practices, --months, --start and settings the "
                        "commissioners do not draw may be given")


def _validate_window(args: argparse.Namespace) -> tuple[str, str, str, Any] | str:
    """(data_dir, start, end, plausibility settings) for ``pbc validate``, or a one-line error."""
    import re

    from pbc_analysis.data import MONTH_PATTERN
    from pbc_analysis.data.plausibility import PlausibilitySettings

    settings, given = PlausibilitySettings(), {"data_dir": args.data_dir, "start_month": args.start,
                                               "end_month": args.end}
    if args.config:
        from pbc_analysis.pipeline.config import ConfigError, load_config

        try:
            cfg = load_config(args.config)
        except ConfigError as exc:
            return str(exc)
        settings = cfg.validation
        for params in cfg.parameters.values():  # the config's data and window fill what is not given
            for key, value in list(given.items()):
                if value is None and params.get(key) is not None:
                    given[key] = str(params[key])
    if given["data_dir"] is None:
        return "--data-dir is required (or give --config CONFIG, whose parameters set data_dir)"
    if "auto" in (given["start_month"], given["end_month"]) or None in (given["start_month"], given["end_month"]):
        from pbc_analysis.data import DataValidationError
        from pbc_analysis.data.window import WindowError, data_window

        try:  # not given, or auto: the months every monthly table covers
            first, last = data_window(paths.resolve(given["data_dir"], base=Path.cwd()))
        except (WindowError, DataValidationError) as exc:
            return f"the data window cannot be read (give --start and --end): {str(exc).splitlines()[0]}"
        given["start_month"] = first if given["start_month"] in (None, "auto") else given["start_month"]
        given["end_month"] = last if given["end_month"] in (None, "auto") else given["end_month"]
    for key, option in (("start_month", "--start"), ("end_month", "--end")):
        if not re.fullmatch(MONTH_PATTERN, given[key]):
            return f"{option} must be a month written YYYY-MM, e.g. 2003-04; got {given[key]!r}"
    if given["start_month"] > given["end_month"]:
        return f"--start {given['start_month']} is after --end {given['end_month']}"
    return given["data_dir"], given["start_month"], given["end_month"], settings


def _cmd_validate(args: argparse.Namespace) -> int:
    from pbc_analysis.data import DataValidationError
    from pbc_analysis.data.plausibility import validate_inputs_for_cli

    parsed = _validate_window(args)
    if isinstance(parsed, str):
        print(f"error: {parsed}", file=sys.stderr)
        return 2
    data_dir, start, end, settings = parsed
    try:
        inputs, accepted = validate_inputs_for_cli(paths.resolve(data_dir, base=Path.cwd()), start, end, settings)
    except DataValidationError as exc:
        print(exc, file=sys.stderr)
        return 1
    for table, path in sorted(inputs.files.items()):
        print(f"{table:20s} {len(getattr(inputs, table)):>12,d} rows  {path}")
    for problem in accepted:
        print(f"accepted (validation.accept: {problem.check}): " + str(problem).replace("\n", "\n  "))
    print("all checks passed" + (f" ({len(accepted)} accepted plausibility exception"
                                 f"{'s' if len(accepted) != 1 else ''})" if accepted else ""))
    return 0


def _cmd_settings(args: argparse.Namespace) -> int:
    from pbc_analysis.pipeline.derive import NOTEBOOK_STAGES, settings_markdown

    text = settings_markdown()
    if args.notebook:
        if args.notebook not in NOTEBOOK_STAGES:
            print(f"error: {args.notebook!r} is not an analysis notebook; they are {', '.join(NOTEBOOK_STAGES)}", file=sys.stderr)
            return 2
        text = text[text.index(f"## {args.notebook}"):].split("\n## ")[0]
    print(text)
    return 0


def _cmd_init(args: argparse.Namespace) -> int:
    from pbc_analysis.pipeline.init import InitError, init_config

    try:
        init_config(paths.resolve(args.data_dir, base=Path.cwd()), out=args.out and paths.resolve(args.out, base=Path.cwd()),
                    name=args.name, force=args.force)
    except InitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_ingest(args: argparse.Namespace) -> int:
    """``pbc ingest``: 0 written, 1 the extracts failed validation (every problem listed), 2 the config refused."""
    from pbc_analysis.core.strict_yaml import ConfigError
    from pbc_analysis.data import DataValidationError
    from pbc_analysis.ingest.run import run_ingest
    from pbc_analysis.pipeline.extracts import load_ingest_config

    try:
        params, path = load_ingest_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = paths.resolve(args.out, base=Path.cwd()) if args.out else paths.resolve(params.out)
    t0 = time.perf_counter()
    try:
        result = run_ingest(params, out_dir=out, progress=not args.quiet)
    except DataValidationError as exc:
        print(f"error: the extracts of {path} did not pass validation; nothing was written.\n{exc}", file=sys.stderr)
        return 1
    print(f"ingested {len(result.extracts)} extracts in {time.perf_counter() - t0:.1f} s, window {result.window[0]} "
          f"to {result.window[1]}: {out}")
    rec = result.reconciliation
    for source, part in rec.groupby("source", sort=False):
        by = part.groupby("outcome")["rows"].sum()
        excluded = ", ".join(f"{r.reason} {int(r.rows):,}" for r in part.itertuples() if r.outcome == "excluded")
        print(f"  {source}: read {int(by.get('read', 0)):,}, aggregated {int(by.get('aggregated', 0)):,}, "
              f"excluded {int(by.get('excluded', 0)):,}" + (f" ({excluded})" if excluded else ""))
    print(f"reconciliation: {out / 'reconciliation.csv'}; run it with parameters.data_dir: {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``pbc`` command's argument parser (subcommands run, verify, synth, settings, init, validate, ingest).

    Returns
    -------
    argparse.ArgumentParser
    """
    parser = argparse.ArgumentParser(prog="pbc", description="Evaluate practice based commissioning reproducibly.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run the notebooks for a config and publish the HTML report")
    p.add_argument("--config", required=True, help="YAML run config, e.g. configs/sample.yaml")
    p.add_argument("--reports-dir", default=str(paths.REPORTS_DIR), help="where run directories go (default: reports/)")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("verify", help="check a published run against its manifest, re-run it (report and published/ "
                                      "bundle included) and compare what it publishes")
    p.add_argument("run_dir", help="a run directory, e.g. reports/latest")
    p.add_argument("--allow-dirty", action="store_true",
                   help="accept a checkout at another commit than the run's or with uncommitted changes (still reported)")
    p.add_argument("--no-rerun", action="store_true", help="check the published files and the config only; do not re-run")
    p.add_argument("--keep", action="store_true", help="keep the re-run's directory (always kept when the re-run fails)")
    p.add_argument("--against", default=None, metavar="RERUN",
                   help="compare with this existing re-run (e.g. one kept by --keep) instead of re-running: refused unless "
                        "it is intact and made from the run's id and config, the inputs as they are now and this checkout")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser("synth", help="write a synthetic PCT with planted effects and its ground truth",
                       usage="pbc synth --out DIR [--seed N] [--practices N] [--months N] [--start YYYY-MM] "
                             "[generator flags, below]",
                       description="Write a synthetic PCT (inputs + ground_truth.json) of any shape. Lists are "
                                   "comma-separated; months of the window are YYYY-MM or offsets from --start; "
                                   "code=value pairs change those codes only (all=X every code, none: all 0); "
                                   "'auto' derives a value from the window.")
    _add_synth_flags(p)
    p.add_argument("--format", choices=("parquet", "csv"), default="parquet", help="format of the large tables")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("settings", help="every setting of every notebook: default, type, allowed values, rule (from the "
                                        "stages' Params)")
    p.add_argument("notebook", nargs="?", help="only this notebook's, e.g. 03_referral_evaluation")
    p.set_defaults(func=_cmd_settings)

    p = sub.add_parser("init", help="validate a data directory and write a config with every setting (derived "
                                    "values as comments)")
    p.add_argument("--data-dir", required=True, help="the folder of input tables")
    p.add_argument("--out", help="the config to write (default: configs/<name>.yaml)")
    p.add_argument("--name", help="run.name (default: the --out file's name, else the data folder's)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.set_defaults(func=_cmd_init)

    p = sub.add_parser("validate", help="validate a data directory against the data dictionary and the "
                                        "plausibility checks")
    p.add_argument("--data-dir", help="the folder of input tables (default: the config's data_dir)")
    p.add_argument("--start", help="first month of the analysis window, YYYY-MM (default: the config's, else the data's)")
    p.add_argument("--end", help="last month of the analysis window, YYYY-MM (default: the config's, else the data's)")
    p.add_argument("--config", help="a run config whose validation: settings (thresholds, accept) are used")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("ingest", help="event-level extracts (outpatients, admitted care, A&E, registrations, practice "
                                      "reference, prices) -> the analysis tables, with a reconciliation of every source")
    p.add_argument("--config", required=True, help="YAML with one section, ingest: (docs/extracts.md), e.g. "
                                                   "configs/ingest_sample.yaml")
    p.add_argument("--out", help="the data directory to write (default: the config's ingest.out)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_ingest)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``pbc`` command.

    Parameters
    ----------
    argv : list of str, optional
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit code: 0 success, 1 a run, check or validation failed, 2 a usage error.
    """
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
