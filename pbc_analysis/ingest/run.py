"""The ingest orchestrator: extracts -> validated analysis tables (Parquet), reconciliation and manifest.

:func:`run_ingest` reads every source through its column map, lists every validation problem of every source
at once, resolves the window (auto: the registration snapshots), builds the practices and the practice-code
status, the population, the price lookup, applies the event rules to outpatients, admitted care and A&E,
derives or reads the referrals, builds the tariff index, the providers and the specialties, checks that the
reconciliation adds up, and only then writes ``<out>/{practices,providers,specialties,population,activity,
referrals,tariff}.parquet``, the copied local tables, ``reconciliation.csv`` and ``ingest.json``. The same
inputs give byte-identical files.

References
----------
Method: docs/extracts.md (rules, reconciliation, outputs). Source: the HES, ECDS, e-RS, GP registration, ODS
and payment-scheme extracts it reads.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import ibis
import pandas as pd
import pyarrow as pa
from tqdm.auto import tqdm

from pbc_analysis.core import calendar, paths
from pbc_analysis.data.problems import DataValidationError, Problem
from pbc_analysis.ingest import engine, hospital, practices, prices, reconcile, reference, referrals, registrations
from pbc_analysis.ingest.columnmap import ColumnMapError, load_map
from pbc_analysis.ingest.params import DEFAULT_MAPS, LOCAL_TABLES, IngestParams
from pbc_analysis.ingest.sources import Source, read_source, source_problems

__all__ = ["ACTIVITY_SCHEMA", "OUTPUT_TABLES", "REFERRALS_SCHEMA", "IngestResult", "run_ingest"]

OUTPUT_TABLES = ("practices", "providers", "specialties", "population", "activity", "referrals", "tariff")
_S, _I, _F = pa.string(), pa.int64(), pa.float64()
ACTIVITY_SCHEMA = pa.schema([("practice_code", _S), ("provider_code", _S), ("specialty_code", _S), ("pod", _S),
                             ("month", _S), ("activity", _I), ("cost", _F)])
REFERRALS_SCHEMA = pa.schema([("practice_code", _S), ("provider_code", _S), ("specialty_code", _S), ("month", _S),
                              ("referrals", _I)])
_ACTIVITY_KEY = ["practice_code", "provider_code", "specialty_code", "pod", "month"]
_REFERRALS_KEY = ["practice_code", "provider_code", "specialty_code", "month"]
#: the event sources, condensed in one pass when they are read
_EVENTS = (*hospital.HOSPITAL, "referrals")
_STEPS = ("read", "practices", "population", "prices", "outpatients", "admitted", "ae", "referrals", "tariff",
          "reference", "write")


@dataclass
class IngestResult:
    """What :func:`run_ingest` wrote: table -> file, the reconciliation, the extracts' checksums, the settings and
    the window."""

    tables: dict[str, Path]
    reconciliation: pd.DataFrame
    extracts: list[dict[str, Any]]
    settings: dict[str, Any]
    window: tuple[str, str]


@dataclass
class _State:
    """The working state of one run (sources, intermediate tables, problems, reconciliation rows)."""

    params: IngestParams
    con: Any
    out_dir: Path
    sources: dict[str, Source] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    recon: list[dict[str, Any]] = field(default_factory=list)
    window: tuple[str, str] = ("", "")
    base_year: str = ""
    referrals_from: str = ""
    counts: dict[str, Any] = field(default_factory=dict)
    arrow: dict[str, pa.Table] = field(default_factory=dict)
    lazy: dict[str, Any] = field(default_factory=dict)
    parts: dict[str, list[Any]] = field(default_factory=lambda: {"activity": [], "weights": [], "providers": []})

    def file(self, kind: str) -> str:
        return self.sources[kind].file if kind in self.sources else ""

    def table(self, kind: str) -> Any:
        return self.sources[kind].table if kind in self.sources else None

    def raise_problems(self) -> None:
        if self.problems:
            raise DataValidationError(self.problems)


def sha256(path: Path) -> str:
    """The SHA-256 of a file (read in 1 MiB blocks).

    Parameters
    ----------
    path : Path

    Returns
    -------
    str
        Hex digest.

    References
    ----------
    Source: FIPS 180-4 (SHA-256), Python ``hashlib``.
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_sources(s: _State) -> None:
    """Every source through its map; all problems (maps, files, columns, values, codes) collected."""
    maps = s.params.source_maps()
    tables = s.params.source_tables()
    spark = engine.is_spark(s.con)
    for kind, path in {**s.params.source_paths(), **{k: Path(t) for k, t in tables.items()}}.items():
        try:
            cmap = load_map(maps[kind], kind)
        except ColumnMapError as exc:
            s.problems += [Problem(maps[kind], kind, None, [], [], p, "fix the column map (docs/extracts.md)", check="column_map")
                           for p in exc.problems]
            continue
        if kind not in tables and not (path.is_file() or (spark and path.is_dir())):
            s.problems.append(Problem(str(path), kind, None, [], [], "the extract does not exist (or is not a file)",
                                      f"check sources.{kind}.path (paths are taken from the project root)", check="no_file"))
            continue
        src = read_source(s.con, kind, path, cmap, table=tables.get(kind))
        s.sources[kind] = src
        if kind in _EVENTS and src.table is not None:   # the one pass over the events: groups and check counts
            src.condensed = hospital.condense(s.con, kind, src.checked(), f"condensed_{kind}")
        s.problems += source_problems(s.con, src)
        if kind not in _EVENTS and src.table is not None and not src.problems:   # a text file parsed once, read often
            src.table = engine.materialise(s.con, src.table, f"source_{kind}")


def _window(s: _State) -> None:
    p = s.params
    try:
        first, last = registrations.snapshot_window(s.table("registrations"))
    except ValueError as exc:
        s.problems.append(Problem(s.file("registrations"), "registrations", "extract_date", [], [], str(exc),
                                  "give registration snapshots, or set start_month and end_month", check="window"))
        first, last = p.start_month, p.end_month
    s.window = (first if p.start_month == "auto" else p.start_month, last if p.end_month == "auto" else p.end_month)
    if "auto" in s.window or s.window[0] > s.window[1]:
        s.problems.append(Problem("", "ingest", None, [], [], f"no usable window: {s.window[0]} .. {s.window[1]}",
                                  "set start_month and end_month (YYYY-MM, first <= last)", check="window"))
        s.raise_problems()
    s.referrals_from = p.referrals_from()
    try:
        s.base_year = prices.default_base_year(s.window) if p.price_base_year == "auto" else p.price_base_year
    except ValueError as exc:
        s.problems.append(Problem("", "ingest", None, [], [], str(exc), "set price_base_year (YYYY/YY)", check="base_year"))


def _files(s: _State) -> dict[str, str]:
    return {k: src.file for k, src in s.sources.items()}


def _practices(s: _State) -> Any:
    p = s.params
    ref = practices.practice_reference(
        s.con, s.table("practice_reference"), s.table("practice_attributes"), s.table("succession"),
        commissioners=None if p.commissioners == "all" else list(p.commissioners), window=s.window, files=_files(s))
    s.problems += ref.problems
    s.arrow["practices"] = ref.practices
    if p.commissioners == "all" and ref.commissioners is not None:  # every commissioner: which practice is whose
        s.arrow["commissioners"] = ref.commissioners
    return hospital.EventRules(s.window[0], s.window[1], ref.codes, tuple(p.pseudo_practices))


def _population(s: _State, rules: hospital.EventRules) -> None:
    pop = registrations.population(s.table("registrations"), rules.codes, window=s.window,
                                   pseudo_practices=rules.pseudo_practices, files=_files(s))
    s.problems += pop.problems
    s.arrow["population"] = pop.table
    s.recon += reconcile.counted("registrations", pop.aggregated, pop.excluded, pop.merged)


def _unpriced_problem(s: _State, kind: str, keys: list[dict[str, Any]]) -> Problem:
    values = [(k["pod"], k["code"], k["financial_year"]) for k in keys]
    n = sum(int(k["rows"]) for k in keys)
    return Problem(s.file(kind), kind, "cost", [], values,
                   f"{n:,} included event{'s' if n != 1 else ''} without a cost have no price for their (point of delivery, "
                   f"code, financial year): {len(keys)} key{'s' if len(keys) != 1 else ''} (codes: TFC for outpatients, "
                   "HRG otherwise; a missing HRG cannot be priced)",
                   f"add these prices to the price table ({s.file('prices')}), or give the events' cost or HRG in the extract",
                   n_rows=n, check="unpriced")


def _hospital(s: _State, kind: str, rules: hospital.EventRules, lookup: Any) -> Any:
    classified = hospital.classify(kind, s.sources[kind].condensed, rules)
    grouped = hospital.group_events(s.con, classified, f"grouped_{kind}")
    pg = engine.materialise(s.con, hospital.priced(grouped, lookup), f"priced_{kind}")
    keys = s.con.to_pyarrow(hospital.unpriced(pg)).to_pylist()
    if keys:
        s.problems.append(_unpriced_problem(s, kind, keys))
    s.recon += reconcile.from_groups(s.con, kind, grouped, pg)
    s.parts["activity"].append(hospital.activity_rows(pg))
    s.parts["weights"].append(hospital.weights(pg, s.base_year))
    used = pg.group_by("provider_code").aggregate(has_ae=(pg.type_1 & (pg.rows > 0)).any())
    s.parts["providers"].append(used)
    return grouped


def _referrals(s: _State, rules: hospital.EventRules, outpatients: Any) -> None:
    if s.referrals_from == "extract":
        name, classified = "referrals", referrals.classify_extract(s.sources["referrals"].condensed, rules)
    else:
        name, classified = referrals.DERIVED, referrals.derive(outpatients, rules)
    grouped = referrals.group_referrals(s.con, classified, "grouped_referrals")
    s.recon += reconcile.from_groups(s.con, name, grouped)
    rows = referrals.referral_rows(grouped)
    s.lazy["referrals"] = rows
    s.parts["providers"].append(rows.select("provider_code").mutate(has_ae=ibis.literal(False)))


def _union(parts: list[Any]) -> Any:
    out = parts[0]
    for p in parts[1:]:
        out = out.union(p, distinct=False)
    return out


def _years(window: tuple[str, str]) -> list[str]:
    return sorted({calendar.fy_of_month(m) for m in calendar.month_range(*window)})


def _reference_tables(s: _State, lookup: Any) -> None:
    activity = engine.materialise(s.con, _union(s.parts["activity"]), "activity_rows")   # computed once: read twice
    s.lazy["activity"] = activity
    s.lazy["referrals"] = engine.materialise(s.con, s.lazy["referrals"], "referral_rows")
    tariff, found = prices.tariff(lookup, _union(s.parts["weights"]), base_year=s.base_year, years=_years(s.window),
                                  file=s.file("prices"))
    s.problems += found
    s.arrow["tariff"] = tariff
    providers, found = reference.providers_table(_union(s.parts["providers"]), s.table("provider_reference"),
                                                 file=s.file("provider_reference"))
    s.problems += found
    s.arrow["providers"] = providers
    used = activity.select("specialty_code").union(s.lazy["referrals"].select("specialty_code"))
    specialties, found = reference.specialties_table(used)
    s.problems += found
    s.arrow["specialties"] = specialties


def _copy_tables(s: _State) -> list[dict[str, Any]]:
    if s.params.tables is None:
        return []
    src_dir = paths.resolve(s.params.tables)
    out = []
    for name in LOCAL_TABLES:
        for suffix in (".csv", ".csv.gz", ".parquet"):
            f = src_dir / f"{name}{suffix}"
            if f.is_file():
                shutil.copyfile(f, s.out_dir / f.name)
                out.append({"source": f"table:{name}", "path": str(Path(s.params.tables) / f.name), "sha256": sha256(f),
                            "bytes": f.stat().st_size})
    return out


def _write(s: _State, recon: pd.DataFrame) -> tuple[dict[str, Path], list[dict[str, Any]]]:
    s.out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name in OUTPUT_TABLES:
        path = s.out_dir / f"{name}.parquet"
        if name == "activity":
            n = engine.write_parquet(s.con, s.lazy[name].order_by(_ACTIVITY_KEY), path, ACTIVITY_SCHEMA)
        elif name == "referrals":
            n = engine.write_parquet(s.con, s.lazy[name].order_by(_REFERRALS_KEY), path, REFERRALS_SCHEMA)
        else:
            n = engine.write_arrow_parquet(s.arrow[name], path)
        s.counts[name] = n
        written[name] = path
    if "commissioners" in s.arrow:  # the optional commissioners table (docs/data_dictionary.md), as CSV
        written["commissioners"] = s.out_dir / "commissioners.csv"
        s.counts["commissioners"] = s.arrow["commissioners"].num_rows
        s.arrow["commissioners"].to_pandas().to_csv(written["commissioners"], index=False, lineterminator="\n")
    copied = _copy_tables(s)
    reconcile.write(recon, s.out_dir / "reconciliation.csv")
    return written, copied


def _extract(kind: str, given: dict[str, Any], src: Source) -> dict[str, Any]:
    """One extract's entry of the manifest: a file's checksum and size; a directory's over its files (Spark); a table's name."""
    out = {"source": kind, "map": given.get("map", DEFAULT_MAPS[kind])}
    if src.table_name:
        return out | {"table": src.table_name, "sha256": None, "bytes": None}
    files = sorted(f for f in src.path.rglob("*") if f.is_file()) if src.path.is_dir() else [src.path]
    digest = sha256(src.path) if not src.path.is_dir() else hashlib.sha256(
        "".join(f"{f.relative_to(src.path).as_posix()} {sha256(f)}\n" for f in files).encode()).hexdigest()
    return out | {"path": given["path"], "sha256": digest, "bytes": sum(f.stat().st_size for f in files)}


def _extracts(s: _State) -> list[dict[str, Any]]:
    return [_extract(k, s.params.sources[k], src) for k, src in sorted(s.sources.items())]


def _steps(progress: bool) -> Iterator[str]:
    bar = tqdm(_STEPS, desc="ingest", disable=not progress, leave=False)
    for step in bar:
        bar.set_postfix_str(step)
        yield step


def run_ingest(params: IngestParams, out_dir: str | Path | None = None, progress: bool = True) -> IngestResult:
    """Extracts -> the analysis tables, the reconciliation and the manifest, in ``out_dir``.

    Parameters
    ----------
    params : IngestParams
        The settings (sources, window, practices, engine).
    out_dir : str or Path, optional
        The output data directory (default ``params.out``, from the project root).
    progress : bool
        Show a progress bar of the steps.

    Returns
    -------
    IngestResult

    Raises
    ------
    DataValidationError
        Every validation problem of every source at once, before any output is written.
    ReconciliationError
        The reconciliation does not add up (a bug, never the data's fault).

    References
    ----------
    Method: docs/extracts.md. Source: the extracts' data dictionaries (HES, ECDS, e-RS, NHS Digital GP
    registrations, ODS epraccur, the national tariff).
    """
    out = paths.resolve(out_dir if out_dir is not None else params.out)
    settings = params.engine_settings()
    existed = out.exists()
    temp = settings.resolved(out)["temp_directory"]
    if params.temp_directory == "auto" and temp:   # DuckDB makes the spill directory when it spills, but not its parents
        Path(temp).mkdir(parents=True, exist_ok=True)
    con = engine.connect(settings, out)
    s = _State(params, con, out)
    try:
        return _run(s, _steps(progress), settings.resolved(out))
    finally:
        engine.close(con)
        if params.temp_directory == "auto" and temp and Path(temp).is_dir():
            shutil.rmtree(temp, ignore_errors=True)
        if not existed and out.is_dir() and not any(out.iterdir()):
            out.rmdir()   # a failed run leaves no empty output directory behind


def _run(s: _State, steps: Iterator[str], engine_settings: dict[str, Any]) -> IngestResult:
    next(steps)
    _read_sources(s)
    s.raise_problems()
    _window(s)
    next(steps)
    rules = _practices(s)
    next(steps)
    _population(s, rules)
    next(steps)
    lookup = prices.price_lookup(s.table("prices"), problems=s.problems, file=s.file("prices"))
    grouped: dict[str, Any] = {}
    for kind in hospital.HOSPITAL:
        next(steps)
        if kind in s.sources:
            grouped[kind] = _hospital(s, kind, rules, lookup)
    next(steps)
    _referrals(s, rules, grouped.get("outpatients"))
    next(steps)
    next(steps)
    _reference_tables(s, lookup)
    s.raise_problems()
    recon = reconcile.table(s.recon)
    reconcile.check(recon)
    next(steps)
    written, copied = _write(s, recon)
    extracts = _extracts(s) + copied
    settings = {**s.params.values(), "start_month": s.window[0], "end_month": s.window[1], "referrals": s.referrals_from,
                "price_base_year": s.base_year,
                "engine": {**engine.describe(s.con), **{k: engine_settings[k] for k in ("memory_limit", "threads")}}}
    # ingest.json holds what the tables follow from, so that a rerun on another machine or into another directory
    # writes the same bytes: not the engine's resources (they change no result) nor the output directory
    portable = {k: v for k, v in settings.items() if k not in ("engine", "out", "memory_limit", "temp_directory", "threads",
                                                               "spark_master", "spark_conf")}
    manifest = {"settings": portable, "window": list(s.window), "extracts": extracts, "rows": dict(sorted(s.counts.items())),
                "referrals_from": s.referrals_from, "engine": engine.describe(s.con)}
    (s.out_dir / "ingest.json").write_text(json.dumps(manifest, sort_keys=True, indent=1) + "\n", encoding="utf-8")
    for _ in steps:
        pass
    return IngestResult(tables=written, reconciliation=recon, extracts=extracts, settings=settings, window=s.window)
