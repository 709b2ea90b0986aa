"""A national run: ``pbc run`` with ``run: {partition: commissioner}``, one normal run per commissioner, and a summary.

``pbc run --config configs/national.yaml`` (:func:`run_national`, called by :func:`pbc_analysis.pipeline.run.run_pipeline`):

1. The config is checked before anything runs (:func:`partition_problems`): the data directory (or the
   ``extracts:`` section) must give the ``commissioners`` table, and every code of ``run.commissioners`` must
   be one of its commissioners (with a "did you mean").
2. The national run directory ``reports/<run_id>/`` is made, marked ``INCOMPLETE`` until its manifest is written.
3. In one worker process (so that the ~4 GB of a 6,500-practice validation is returned to the system before
   any commissioner starts): the national data are validated once (the data dictionary and the plausibility
   rules; a failure stops everything), the national reference rates and the national benchmark of every
   practice are computed (:mod:`pbc_analysis.stages.benchmark.national`) and written to ``data/``.
4. The aggregated tables are sliced per commissioner into ``slices/<code>/`` in the engine (DuckDB, out of core;
   :func:`write_slices`): byte-stable, one valid data directory per commissioner.
5. Each commissioner runs as a normal run (:func:`pbc_analysis.pipeline.run.run_pipeline`) of its own config
   (``configs/<code>.yaml``: the national config with ``data_dir`` the slice, one notebook at a time) into
   ``commissioners/<code>/``, ``run.parallel`` at a time. A commissioner that fails (its data, a notebook, too
   few comparison practices) is recorded with its reason; the others complete. Each commissioner directory is
   a normal run that ``pbc verify`` checks alone.
6. The summary page (:func:`pbc_analysis.publish.national.write_national_summary`: ``national.html`` and its
   tables), then ``manifest.json``: config, parameters hash, inputs' sha256, each commissioner's status,
   reason, run directory and manifest sha256, and the sha256 of every file of the national run.

A national run with failed commissioners is complete (its summary says which failed and why), and
:func:`raise_if_failed` turns it into exit code 1 for ``pbc run``.

References
----------
DuckDB ``COPY ... TO`` and ``read_csv``/``read_parquet``; :mod:`pbc_analysis.pipeline.supervise` (forked workers).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import json
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from pbc_analysis.core import names, paths
from pbc_analysis.pipeline import run as _run
from pbc_analysis.pipeline.config import PARTITION_KEYS, ConfigError, RunConfig, check_name, load_yaml, parse_config
from pbc_analysis.pipeline.manifest import _rel, output_hashes, sha256_file, write_manifest
from pbc_analysis.publish import results

__all__ = ["CommissionersFailed", "commissioner_config_text", "partition_problems", "raise_if_failed", "run_national",
           "write_slices"]

log = logging.getLogger("pbc.run")

SLICES, COMMISSIONERS, CONFIGS, DATA = "slices", "commissioners", "configs", "data"
BENCHMARK_FILE = "national_benchmark.parquet"     # data/: every practice x measure against national expected counts
NATIONAL_JSON = "national.json"                   # data/: the national window and benchmark settings
COPIED = ("specialties", "tariff")                # national tables: the same file in every slice
BY_PROVIDER = ("providers", "provider_changes")   # the providers the slice's activity and referrals use
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class CommissionersFailed(_run.RunError):
    """A national run completed, but some commissioners failed (``pbc run`` exits 1); ``run_dir`` is the national run."""

    def __init__(self, message: str, run_dir: Path):
        super().__init__(message)
        self.run_dir = run_dir


def _shown(text: Any, width: int = 200) -> str:
    """A data value made safe to print on one line (no control characters, bounded)."""
    s = _CONTROL.sub("?", str(text))
    return s if len(s) <= width else s[: width - 3] + "..."


# --------------------------------------------------------------------------------------------------
# The config: the commissioners table and the codes
# --------------------------------------------------------------------------------------------------

def _data_dirs(effective: Mapping[str, Mapping[str, Any]]) -> list[str]:
    return sorted({str(p["data_dir"]) for p in effective.values() if p.get("data_dir")})


def _commissioner_table(data_dir: str | Path) -> tuple[pd.DataFrame | None, str | None]:
    """The data directory's ``commissioners`` table, or None and why not."""
    from pbc_analysis.data import DataValidationError, find_table_files, read_table

    try:
        files = find_table_files(data_dir)
    except DataValidationError as exc:
        return None, "its files cannot be listed: " + "; ".join(f"{p.message} ({p.file})" for p in exc.problems[:3])
    if "commissioners" not in files:
        return None, "it has no commissioners table (commissioners.csv, .csv.gz or .parquet)"
    try:
        return read_table(files["commissioners"], "commissioners"), None
    except DataValidationError as exc:
        return None, "its commissioners table cannot be read: " + "; ".join(f"{p.column}: {p.message}" for p in exc.problems[:3])


def _unknown_codes(chosen: tuple[str, ...], known: list[str], source: str, where: str) -> list[str]:
    shown = ", ".join(known[:12]) + (" ..." if len(known) > 12 else "")
    return [f"{where}: run.commissioners names {c!r}, which is not a commissioner of {source}{names.did_you_mean(c, known)}; "
            f"its commissioners are {shown}" for c in chosen if c not in known]


def partition_problems(effective: Mapping[str, Mapping[str, Any]], extracts: Any, chosen: tuple[str, ...] | str,
                       where: str) -> list[str]:
    """Why a config with ``run.partition: commissioner`` cannot run: no commissioners table, or unknown codes.

    Parameters
    ----------
    effective : mapping
        Notebook -> its checked parameters (paths resolved or not).
    extracts : IngestParams or None
        The ``extracts:`` section, whose ingest writes the commissioners table (its codes are checked against
        the section's ``commissioners`` when that is a list, the others once the tables are ingested).
    chosen : tuple of str or "all"
        ``run.commissioners``.
    where : str
        The config's name, for messages.

    Returns
    -------
    list of str
        Every problem, each with its fix (empty: the partition can run).
    """
    if extracts is not None:
        listed = getattr(extracts, "commissioners", "all")
        if chosen == "all" or listed == "all":
            return []
        return _unknown_codes(tuple(chosen), sorted(listed), "the extracts: section (extracts.commissioners)", where)
    dirs = _data_dirs(effective)
    if len(dirs) != 1:
        return [f"{where}: run.partition: commissioner needs one data_dir for every notebook (set it once, under "
                f"parameters:), got {len(dirs)}: {', '.join(dirs) or 'none'}"]
    table, why = _commissioner_table(dirs[0])
    if table is None:
        return [f"{where}: run.partition: commissioner needs the commissioners table in data_dir {_rel(Path(dirs[0]))}, "
                f"but {why}; a national data directory has one row per practice with its commissioner_code and "
                "commissioner_name (docs/data_dictionary.md; made by pbc synth --national and by pbc ingest): give "
                "such a directory, or remove run.partition to run the data as one PCT"]
    known = sorted(str(c) for c in table["commissioner_code"].dropna().unique())
    if not known:
        return [f"{where}: the commissioners table of {_rel(Path(dirs[0]))} has no rows: there is no commissioner to run"]
    return [] if chosen == "all" else _unknown_codes(tuple(chosen), known, _rel(Path(dirs[0])), where)


def _flow(value: Any) -> str:
    """A checked config value as YAML flow text (JSON is YAML: strings double-quoted, numbers in decimal)."""
    return json.dumps(value, ensure_ascii=False)


def _yaml_lines(mapping: Mapping[str, Any], indent: int = 0) -> list[str]:
    out = []
    for key, value in mapping.items():
        if isinstance(value, dict):
            out += [f"{' ' * indent}{key}:" + ("" if value else " {}")] + _yaml_lines(value, indent + 2)
        else:
            out.append(f"{' ' * indent}{key}: {_flow(value)}")
    return out


def commissioner_config_text(cfg: RunConfig, code: str, slice_dir: Path, national_id: str) -> str:
    """The config of one commissioner's run: the national config with ``data_dir`` its slice, one notebook at a time.

    Parameters
    ----------
    cfg : RunConfig
        The national config (``run.partition: commissioner``).
    code : str
        The commissioner's code (a safe name).
    slice_dir : Path
        Its data directory (``slices/<code>``).
    national_id : str
        The national run's directory name, for the header comment.

    Returns
    -------
    str
        YAML that :func:`pbc_analysis.pipeline.config.parse_config` accepts: ``run.partition``,
        ``run.commissioners``, ``run.parallel`` and ``extracts:`` removed, ``run.workers: 1``, ``run.name``
        ``<name>-<code>``, ``parameters.data_dir`` the slice (relative to the project root when inside it) and no
        other ``data_dir``. Comments of the national config are not kept.
    """
    raw = load_yaml(cfg.source, str(cfg.path or "config")) or {}
    run = {k: v for k, v in (raw.get("run") or {}).items() if k not in PARTITION_KEYS}
    run["name"] = f"{cfg.name[: names.MAX_RUN_NAME - len(code) - 1]}-{code}"
    run["workers"] = 1
    params = {k: v for k, v in (raw.get("parameters") or {}).items() if k != "data_dir"}
    params = {"data_dir": _rel(slice_dir), **params}
    notebooks = {nb: {k: v for k, v in (p or {}).items() if k != "data_dir"} for nb, p in (raw.get("notebooks") or {}).items()}
    body: dict[str, Any] = {"run": run, "parameters": params}
    if notebooks:
        body["notebooks"] = notebooks
    if raw.get("validation") is not None:
        body["validation"] = raw["validation"]
    header = [f"# Commissioner {code} of the national run {national_id}: written by pbc run (run.partition: commissioner).",
              "# A normal run of this commissioner's slice of the national tables; `pbc run --config` on this file",
              "# runs it again, and `pbc verify` checks its run directory alone."]
    return "\n".join(header + _yaml_lines(body)) + "\n"


# --------------------------------------------------------------------------------------------------
# The national data: validated once, national reference rates and benchmark (in a worker process)
# --------------------------------------------------------------------------------------------------

def _target(cfg: RunConfig) -> str:
    """The benchmark target the notebooks are given (``pct`` or ``reference``; shared, so one value)."""
    return next((str(p["target"]) for p in cfg.parameters.values() if "target" in p), "pct")


def _benchmark_params(cfg: RunConfig, data_dir: str, inputs: Any, start: str, end: str) -> Any:
    """The benchmarking stage's settings of the config (notebook 02's, else its defaults), derived on the national data."""
    from pbc_analysis.pipeline.derive import notebook_settings, resolve_settings
    from pbc_analysis.stages.benchmark.params import Params

    nb = "02_benchmarking"
    given = {**cfg.parameters.get(nb, {}), "data_dir": data_dir, "start_month": start, "end_month": end}
    if nb not in cfg.parameters:   # not run: its shared settings as the other notebooks have them
        shared = {k: v for p in cfg.parameters.values() for k, v in p.items() if k in notebook_settings(nb)}
        given = {**shared, **given}
    resolved = resolve_settings({nb: given}, {data_dir: inputs}, where=str(cfg.path or "config")).parameters[nb]
    fields = {f.name for f in dataclasses.fields(Params)}
    return Params(**{k: v for k, v in resolved.items() if k in fields})


def _prepare(cfg: RunConfig, data_dir: str, national_dir: Path) -> tuple[float, str | None]:
    """In a worker: validate the national data, write the national reference rates, benchmark and settings to data/."""
    from pbc_analysis.core.checks import ArgumentError
    from pbc_analysis.data import DataValidationError
    from pbc_analysis.data.plausibility import load_run_inputs
    from pbc_analysis.data.window import resolve_window
    from pbc_analysis.stages.benchmark import national as bench

    t0 = time.perf_counter()
    first = next(p for p in cfg.parameters.values() if p.get("data_dir"))
    try:
        start, end = resolve_window(data_dir, first.get("start_month", "auto"), first.get("end_month", "auto"))
        _, inputs = load_run_inputs(data_dir, start, end, cfg.validation)
    except (DataValidationError, ValueError) as exc:
        return 0.0, f"the national data did not pass validation; no commissioner was run.\n{exc}"
    if inputs.commissioners is None:
        return 0.0, f"the national data {_rel(Path(data_dir))} have no commissioners table; no commissioner was run"
    try:
        params = _benchmark_params(cfg, data_dir, inputs, start, end)
    except ArgumentError as exc:
        return 0.0, f"the benchmarking settings do not fit the national data; no commissioner was run.\n{exc}"
    rates = bench.national_reference_rates(Path(data_dir), inputs.reference_rates, start_month=start, end_month=end)
    key = ["measure", "specialty_code", "age_band", "sex"]
    out = national_dir / DATA
    out.mkdir(exist_ok=True)
    rates.sort_values(key, kind="mergesort").to_csv(out / "reference_rates.csv", index=False, lineterminator="\n")
    benchmark = bench.national_benchmark(inputs, rates, inputs.commissioners, params)
    order = [c for c in ("commissioner_code", "practice_code", "measure", "period") if c in benchmark.columns]
    benchmark.sort_values(order, kind="mergesort").reset_index(drop=True).to_parquet(out / BENCHMARK_FILE, index=False)
    settings = {"start_month": start, "end_month": end, "target": _target(cfg),
                "benchmark": {f.name: getattr(params, f.name) for f in dataclasses.fields(params)}}
    (out / NATIONAL_JSON).write_text(json.dumps(settings, indent=1, sort_keys=True, default=str) + "\n", encoding="utf-8")
    return time.perf_counter() - t0, None


def _in_worker(target: Any, args: tuple[Any, ...], what: str) -> float:
    """Run ``target(*args)`` in one forked worker (its memory returns to the system when it ends); RunError on failure."""
    from pbc_analysis.pipeline.supervise import run_jobs

    outcome: dict[str, Any] = {}

    def done(name: str, seconds: float, err: str | None) -> bool:
        outcome.update(seconds=seconds, err=err)
        return True

    run_jobs({what: args}, target, 1, done)
    if outcome.get("err"):
        raise _run.RunError(outcome["err"])
    return float(outcome.get("seconds", 0.0))


# --------------------------------------------------------------------------------------------------
# Slices: each commissioner's part of the aggregated tables, in the engine
# --------------------------------------------------------------------------------------------------

def _quote(path: Path) -> str:
    """A path as an SQL string literal."""
    return "'" + str(path).replace("'", "''") + "'"


def _source(path: Path) -> str:
    """The DuckDB table function reading a table file (CSV as text, so every value is written back as it was)."""
    if path.name.endswith(".parquet"):
        return f"read_parquet({_quote(path)})"
    return f"read_csv({_quote(path)}, header = true, delim = ',', quote = '\"', escape = '\"', all_varchar = true)"


def _copy(con: Any, select: str, src: Path, out: Path) -> int:
    """Write the rows of ``select`` to ``out`` in ``src``'s format (Parquet with its schema; CSV; gzip without a date);
    return the rows written."""
    if src.name.endswith(".parquet"):
        return _write_parquet(con, select, out, src)
    plain = out.with_name(out.name.removesuffix(".gz")) if out.name.endswith(".gz") else out
    row = con.con.execute(f"COPY ({select}) TO {_quote(plain)} (FORMAT csv, HEADER true)").fetchone()
    if plain != out:
        with open(plain, "rb") as fin, open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as fout:
            shutil.copyfileobj(fin, fout)
        plain.unlink()
    return int(row[0]) if row else 0


def _write_parquet(con: Any, select: str, out: Path, src: Path) -> int:
    """Stream ``select`` to Parquet with ``src``'s schema, zstd, in fixed row groups (as the ingest writes its tables)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pbc_analysis.ingest.engine import ROW_GROUP

    schema = pq.read_schema(src).remove_metadata()
    reader = con.con.sql(select).to_arrow_reader(ROW_GROUP)
    n, pending = 0, []
    with pq.ParquetWriter(str(out), schema, compression="zstd") as writer:
        for batch in reader:
            pending.append(pa.Table.from_batches([batch]).select(schema.names).cast(schema))
            held = pa.concat_tables(pending)
            while held.num_rows >= ROW_GROUP:
                writer.write_table(held.slice(0, ROW_GROUP), row_group_size=ROW_GROUP)
                n, held = n + ROW_GROUP, held.slice(ROW_GROUP)
            pending = [held]
        rest = pa.concat_tables(pending) if pending else schema.empty_table()
        if rest.num_rows or n == 0:
            writer.write_table(rest.combine_chunks(), row_group_size=ROW_GROUP)
            n += rest.num_rows
    return n


def _order(table: str) -> str:
    from pbc_analysis.data import TABLES

    return ", ".join(TABLES[table].key) or ", ".join(TABLES[table].column_names)


def _slice_one(con: Any, files: Mapping[str, Path], code: str, out: Path, shared: Mapping[str, Path]) -> None:
    """One commissioner's data directory: its practices' rows, the providers they use, the national tables (an
    optional table with no rows of the commissioner is left out; a required one is kept, and fails its validation)."""
    from pbc_analysis.data import TABLES

    con.con.execute("CREATE OR REPLACE TEMP TABLE sel AS SELECT DISTINCT practice_code FROM members WHERE commissioner_code = ?",
                    [code])
    out.mkdir(parents=True)
    for table, src in files.items():
        if table in shared or table in BY_PROVIDER:
            continue
        if table in COPIED or "practice_code" not in TABLES[table].column_names:   # national: the same in every slice
            shutil.copyfile(src, out / src.name)
        else:
            n = _copy(con, f"SELECT * FROM src_{table} WHERE practice_code IN (SELECT practice_code FROM sel) "
                           f"ORDER BY {_order(table)}", src, out / src.name)
            if not n and not TABLES[table].required:
                (out / src.name).unlink()
    used = [f"SELECT provider_code FROM {_source(out / files[t].name)}" for t in ("activity", "referrals") if t in files]
    con.con.execute("CREATE OR REPLACE TEMP TABLE used AS " + (" UNION ".join(used) or "SELECT NULL AS provider_code WHERE false"))
    for table in BY_PROVIDER:
        if table in files:
            n = _copy(con, f"SELECT * FROM src_{table} WHERE provider_code IN (SELECT provider_code FROM used) "
                           f"ORDER BY {_order(table)}", files[table], out / files[table].name)
            if not n and not TABLES[table].required:
                (out / files[table].name).unlink()
    for src in shared.values():
        shutil.copyfile(src, out / src.name)


def write_slices(data_dir: str | Path, out_dir: Path, codes: list[str], shared: Mapping[str, Path] | None = None,
                 echo: Any = print) -> dict[str, Path]:
    """Slice a national data directory into one data directory per commissioner, in DuckDB (never all rows in pandas).

    Parameters
    ----------
    data_dir : str or Path
        The national data directory (validated, with the ``commissioners`` table).
    out_dir : Path
        Where ``<code>/`` is made for each commissioner (it must not exist yet).
    codes : list of str
        The commissioners to slice (safe names, codes of the commissioners table).
    shared : mapping of str to Path, optional
        National tables given to every slice in place of the data directory's own (``reference_rates``: the
        national rates of a ``target: reference`` run).
    echo : callable
        Progress printer.

    Returns
    -------
    dict of str to Path
        Code -> its data directory. Each holds every table of ``data_dir`` in the same format: the tables with a
        ``practice_code`` (practices, population, activity, referrals, engagement, high_cost_patients, budgets,
        commissioners) restricted to the commissioner's practices; ``providers`` and ``provider_changes`` to the
        providers its activity and referrals use; ``specialties``, ``tariff`` and ``reference_rates`` (or
        ``shared``) copied. Rows are sorted by each table's key, CSV values written back as read, Parquet with the
        source's schema in fixed row groups, gzip without a date: the same inputs give the same bytes.

    References
    ----------
    DuckDB ``read_csv`` (``all_varchar``), ``read_parquet`` and ``COPY ... TO``; :func:`pbc_analysis.ingest.engine.write_parquet`.
    """
    from pbc_analysis.data import find_table_files
    from pbc_analysis.ingest.engine import EngineSettings, close, connect

    files = find_table_files(data_dir)
    if "commissioners" not in files:
        raise _run.RunError(f"{data_dir}: no commissioners table to slice by")
    shared = dict(shared or {})
    spill = Path(tempfile.mkdtemp(prefix="pbc-slices-"))
    con = connect(EngineSettings(temp_directory=str(spill)))
    try:
        for table, src in files.items():
            con.con.execute(f"CREATE VIEW src_{table} AS SELECT * FROM {_source(src)}")
        con.con.execute("CREATE TEMP TABLE members AS SELECT CAST(practice_code AS VARCHAR) AS practice_code, "
                        "CAST(commissioner_code AS VARCHAR) AS commissioner_code FROM src_commissioners")
        out: dict[str, Path] = {}
        for i, code in enumerate(codes, 1):
            t0 = time.perf_counter()
            _slice_one(con, files, check_name(code, "commissioner code"), out_dir / code, shared)
            out[code] = out_dir / code
            echo(f"  slice {i}/{len(codes)} {code} ({time.perf_counter() - t0:.1f} s)")
        return out
    finally:
        close(con)
        shutil.rmtree(spill, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# The commissioners' runs
# --------------------------------------------------------------------------------------------------

def _quiet(*_args: Any, **_kwargs: Any) -> None:
    """A commissioner's own progress lines go to its run.log only (the national run prints one line per commissioner)."""


def _commissioner_job(text: str, config_path: Path, reports: Path, code: str) -> tuple[float, str | None]:
    """In a worker: one commissioner's normal run (its config parsed with every check of ``pbc run``)."""
    t0 = time.perf_counter()
    for handler in list(log.handlers):   # the national run.log's handler, inherited by the fork: this run has its own
        log.removeHandler(handler)
    try:
        cfg = parse_config(text, path=config_path)
        _run.run_pipeline(cfg, reports_dir=reports, render=True, run_id=code, echo=_quiet)
    except (_run.RunError, ConfigError) as exc:
        return time.perf_counter() - t0, str(exc) or type(exc).__name__
    return time.perf_counter() - t0, None


def _reason(err: str) -> str:
    """The first line of a failure (with the first problem after it when the first line only says what stopped)."""
    lines = [line.strip(" -") for line in err.splitlines() if line.strip(" -")]
    if not lines:
        return "failed"
    first = lines[0]
    if len(lines) > 1 and first.rstrip(".:").endswith(("no notebook was run", "no commissioner was run")):
        first = f"{first.rstrip('.:')}: {lines[1]}"
    return _shown(first, 400)


def _parallel(requested: int, n: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(requested or cores, n))


def _run_commissioners(cfg: RunConfig, national_dir: Path, plan: list[dict[str, Any]], echo: Any) -> list[dict[str, Any]]:
    """Run every planned commissioner, ``run.parallel`` at once; return the outcomes (one dict per commissioner)."""
    from pbc_analysis.pipeline.supervise import run_jobs

    reports = national_dir / COMMISSIONERS
    reports.mkdir()
    (national_dir / CONFIGS).mkdir()
    jobs = {}
    for c in plan:
        path = national_dir / CONFIGS / f"{c['commissioner_code']}.yaml"
        path.write_text(commissioner_config_text(cfg, c["commissioner_code"], national_dir / SLICES / c["commissioner_code"],
                                                 national_dir.name), encoding="utf-8")
        jobs[c["commissioner_code"]] = (path.read_text(encoding="utf-8"), path, reports, c["commissioner_code"])
    at_once = _parallel(cfg.parallel, len(jobs))
    echo(f"running {len(jobs)} commissioners, {at_once} at a time (each one notebook at a time)")
    by_code = {c["commissioner_code"]: c for c in plan}
    finished = iter(range(1, len(jobs) + 1))

    def done(code: str, seconds: float, err: str | None) -> bool:
        c = by_code[code]
        complete = err is None and _run._is_complete(reports / code)
        c.update(status="complete" if complete else "failed", seconds=round(seconds, 2),
                 reason=None if complete else _reason((err or _incomplete_text(reports / code)).replace(f"{jobs[code][1]}: ", "")),
                 run_dir=c["run_dir"] if (reports / code).is_dir() else None)   # None: failed before its run directory
        line = f"{seconds:.1f} s" if complete else f"FAILED: {c['reason']}"
        echo(f"[{next(finished)}/{len(jobs)}] {code} {_shown(c['commissioner_name'], 60)} ({c['n_practices']} practices) {line}")
        log.info("commissioner %s: %s", code, line)
        return True

    run_jobs(jobs, _commissioner_job, at_once, done)
    return plan


def _incomplete_text(run_dir: Path) -> str:
    try:
        return (run_dir / _run.INCOMPLETE).read_text(encoding="utf-8")
    except OSError:
        return "the run left no manifest"


def _plan(data_dir: str | Path, chosen: tuple[str, ...] | str) -> list[dict[str, Any]]:
    """The commissioners to run, in code order: code, name, number of practices (from the validated commissioners table)."""
    table, why = _commissioner_table(data_dir)
    if table is None:
        raise _run.RunError(f"the national data {_rel(Path(data_dir))}: {why}; no commissioner was run")
    counts = table.groupby("commissioner_code", sort=True).agg(n_practices=("practice_code", "size"),
                                                               commissioner_name=("commissioner_name", "first"))
    codes = list(counts.index) if chosen == "all" else [c for c in counts.index if c in chosen]
    missing = [] if chosen == "all" else sorted(set(chosen) - set(codes))
    if missing:
        raise _run.RunError(f"run.commissioners names {', '.join(missing)}, not commissioners of the data; no commissioner was run")
    return [{"commissioner_code": check_name(str(c), "commissioner code"), "commissioner_name": str(counts.at[c, "commissioner_name"]),
             "n_practices": int(counts.at[c, "n_practices"]), "status": "failed", "reason": "not run",
             "run_dir": f"{COMMISSIONERS}/{c}", "seconds": 0.0} for c in codes]


# --------------------------------------------------------------------------------------------------
# The national run
# --------------------------------------------------------------------------------------------------

def _national_data(cfg: RunConfig, national_dir: Path, echo: Any) -> tuple[RunConfig, str, dict[str, Any] | None]:
    """The config with its data directory, the directory, and the ingest's manifest section (``extracts:`` only)."""
    if cfg.extracts is None:
        return cfg, _data_dirs(cfg.parameters)[0], None
    from pbc_analysis.data import DataValidationError
    from pbc_analysis.pipeline.extracts import ingest_for_run, with_data_dir

    (national_dir / "ingest").mkdir()
    try:
        ingested = ingest_for_run(cfg.extracts, national_dir / "ingest", echo=echo)
    except DataValidationError as exc:
        raise _run.RunError(f"the extracts did not pass validation; no commissioner was run.\n{exc}") from None
    data_cfg = with_data_dir(cfg, ingested.data_dir)
    problems = partition_problems(data_cfg.parameters, None, cfg.commissioners, str(cfg.path or "config"))
    if problems:
        raise _run.RunError("the ingested tables cannot be run by commissioner; no commissioner was run.\n" + "\n".join(problems))
    return data_cfg, str(ingested.data_dir), ingested.section


def _national_body(cfg: RunConfig, national_dir: Path, started: dt.datetime, echo: Any) -> None:
    """Validate, slice, run every commissioner, write the summary page and the manifest."""
    from pbc_analysis.publish.national import write_national_summary

    data_cfg, data_dir, ingest = _national_data(cfg, national_dir, echo)
    provenance = _run._provenance(cfg, national_dir)
    if ingest is not None:
        provenance["ingest"] = ingest
    (national_dir / "provenance.json").write_text(results.dumps(provenance), encoding="utf-8")
    echo(f"validating the national data {_rel(Path(data_dir))}, national reference rates and benchmark ...", end="", flush=True)
    try:
        seconds = _in_worker(_prepare, (data_cfg, data_dir, national_dir), "national")
    except _run.RunError:
        echo(" FAILED")
        raise
    echo(f" {seconds:.1f} s")
    plan = _plan(data_dir, cfg.commissioners)
    shared = {"reference_rates": national_dir / DATA / "reference_rates.csv"} if _target(cfg) == "reference" else {}
    echo(f"slicing the tables into {len(plan)} commissioners ({'national' if shared else 'the data'}'s reference rates)")
    write_slices(data_dir, national_dir / SLICES, [c["commissioner_code"] for c in plan], shared, echo=echo)
    outcomes = _run_commissioners(cfg, national_dir, plan, echo)
    benchmark = pd.read_parquet(national_dir / DATA / BENCHMARK_FILE)
    written = write_national_summary(national_dir, [dict(o) for o in outcomes], benchmark, cfg.name)
    echo(f"national summary: {national_dir / 'national.html'}")
    for o in outcomes:
        man = national_dir / str(o["run_dir"]) / "manifest.json"
        o["manifest_sha256"] = sha256_file(man) if o["status"] == "complete" and o["run_dir"] and man.is_file() else None
    n_ok = sum(o["status"] == "complete" for o in outcomes)
    manifest = {
        **provenance,
        "kind": "national",
        "partition": {"by": "commissioner", "commissioners": list(cfg.commissioners) if cfg.commissioners != "all" else "all",
                      "parallel": cfg.parallel},
        "national": json.loads((national_dir / DATA / NATIONAL_JSON).read_text(encoding="utf-8")),
        "commissioners": outcomes,
        "summary": {k: v.relative_to(national_dir).as_posix() if Path(v).is_absolute() else str(v) for k, v in written.items()},
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "headline": {"commissioners": len(outcomes), "complete": n_ok, "failed": len(outcomes) - n_ok},
        "outputs": output_hashes(national_dir),
    }
    write_manifest(national_dir, manifest)
    (national_dir / _run.INCOMPLETE).unlink()


def run_national(cfg: RunConfig, reports_dir: Path = paths.REPORTS_DIR, echo: Any = print, run_id: str | None = None) -> Path:
    """Run a config with ``run.partition: commissioner``: one normal run per commissioner, and the national summary.

    Parameters
    ----------
    cfg : RunConfig
        A config from :func:`pbc_analysis.pipeline.config.parse_config` with ``partition == "commissioner"``.
    reports_dir : Path
        Where the national run directory is made.
    echo : callable
        Progress printer (one line per step and per commissioner).
    run_id : str, optional
        The national run directory's name (a safe name); default ``<stamp>-<name>-<hash>``, made unique.

    Returns
    -------
    Path
        The national run directory: ``data/`` (national reference rates, benchmark, settings), ``slices/<code>/``,
        ``configs/<code>.yaml``, ``commissioners/<code>/`` (normal runs), ``national.html`` and its tables,
        ``provenance.json``, ``manifest.json`` and ``run.log``. It is complete (has a manifest) even when some
        commissioners failed: their status and reason are in the manifest and on the summary page
        (:func:`raise_if_failed`).

    Raises
    ------
    RunError
        The national data did not pass validation, or the benchmark settings do not fit them (no commissioner
        was run); the directory is kept, marked ``INCOMPLETE`` with the reason.
    supervise.Interrupted
        SIGINT or SIGTERM: every commissioner was stopped.

    References
    ----------
    Module docstring; :func:`pbc_analysis.pipeline.run.run_pipeline` (each commissioner's run).
    """
    from pbc_analysis.pipeline.supervise import Interrupted

    national_dir = _run._make_run_dir(reports_dir, cfg, run_id)
    _run._mark_incomplete(national_dir, f"running a national run (pid {os.getpid()})")
    handler = logging.FileHandler(national_dir / "run.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    echo(f"national run {national_dir}")
    try:
        _national_body(cfg, national_dir, dt.datetime.now(dt.UTC), echo)
    except Interrupted as exc:
        _run._mark_incomplete(national_dir, f"{exc}; stopped every commissioner; partial output kept in {national_dir}")
        raise
    except BaseException as exc:
        _run._mark_incomplete(national_dir, f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        raise
    finally:
        _run._finish_index(national_dir.parent)
        log.removeHandler(handler)
        handler.close()
    return national_dir


def raise_if_failed(national_dir: Path) -> Path:
    """``national_dir`` when every commissioner completed; else :class:`CommissionersFailed` naming each failure.

    Parameters
    ----------
    national_dir : Path
        A complete national run directory (its ``manifest.json``).

    Returns
    -------
    Path
        ``national_dir``.

    Raises
    ------
    CommissionersFailed
        Some commissioners failed (``pbc run`` exits 1); the message lists them with their reasons.
    """
    manifest = json.loads((Path(national_dir) / "manifest.json").read_text(encoding="utf-8"))
    failed = [c for c in manifest["commissioners"] if c["status"] != "complete"]
    if not failed:
        return national_dir
    lines = [f"  - {c['commissioner_code']}: {c['reason']}" for c in failed]
    raise CommissionersFailed(
        f"the national run {national_dir} completed, but {len(failed)} of {len(manifest['commissioners'])} commissioners "
        f"failed (national.html says which and why; the others are complete):\n" + "\n".join(lines), Path(national_dir))
