"""The published bundle: the only part of a run directory that may be sent with a report.

A run directory (``reports/<run_id>/``) is the analyst's **private working area**: ``tables/*.csv``,
``results/*.json``, ``results.json``, ``notebooks/*.ipynb``, ``provenance.json``, ``manifest.json`` and
``run.log`` hold unrounded counts and must never be sent. :func:`build_bundle` makes
``<run_dir>/published/``, the one thing that may be::

    published/
      README.txt        what is here, the disclosure rule, what was withheld and why
      CONTENTS.json     every file with its sha256, every table's columns with their kind
      report.html       the report (its tables already apply the rule)
      results.json      headline figures, counts disclosed (JSON_RULES)
      tables/<name>.csv every result table that may be sent, counts disclosed (TABLES)
      figures/*.png     the report's figures
      practices/*.html  a page per practice and their index (their tables already apply the rule)
      finance.xlsx      the payment schedule and budget statements as a workbook, from the disclosed tables

The rule (``disclosure``; NHS Digital HES/ECDS disclosure control, see ../shared/DOMAIN.md "Publishing
rules"): counts of people or events 0 -> 0, 1 to 7 -> ``*``, otherwise rounded to the nearest 5;
simple ratios recomputed from the rounded counts (``*`` when an input is suppressed); modelled outputs,
money, rates, intervals and already-public figures are exempt.

**Registries, not guesses.** :data:`TABLES` classifies every column of every result table (kinds in
:data:`KINDS`); a table, or a column, that is not in it stops :func:`build_bundle` with the list of all of
them, so a new table cannot slip out undisclosed. Tables with a patient-level column, or whose figures would
give back a small count (:data:`TABLES` ``withhold``), are never copied. :data:`JSON_RULES` classifies every
numeric figure of ``results.json`` by its path (e.g. ``data_quality.activity_by_financial_year.*``); an
unclassified number is an error too. Registered list sizes are ``public``: NHS Digital publishes every
practice's list ("Patients Registered at a GP Practice"), and ``disclosure.disclose_table``'s
``public_columns`` treat them so.

The bundle is byte-stable: the same run directory gives the same bytes (cells of exempt columns are
copied as text, JSON is canonical, nothing records a time).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
from collections.abc import Mapping
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pandas as pd

from pbc_analysis.methods import disclosure
from pbc_analysis.publish import results
from pbc_analysis.publish.registry import _JSON_KINDS, JSON_RULES, KINDS, PATIENT_LEVEL_INPUTS, TABLES, Column, TableSpec  # noqa: F401
from pbc_analysis.publish.workbook import write_finance_workbook

__all__ = [
    "BUNDLE",
    "JSON_RULES",
    "KINDS",
    "PATIENT_LEVEL_INPUTS",
    "TABLES",
    "Column",
    "PublishError",
    "TableSpec",
    "build_bundle",
    "disclose_input_rows",
    "disclose_results",
    "disclose_table_text",
]

BUNDLE = "published"

class PublishError(ValueError):
    """The run directory cannot be published as it is (unregistered tables or columns, bad counts)."""




# --------------------------------------------------------------------------------------------------
# disclosing cells (text in, text out: exempt cells are never re-formatted)
# --------------------------------------------------------------------------------------------------
def _count_cell(cell: str) -> int | str | None:
    """A CSV cell of a count column as a non-negative int, ``"*"`` or ``""``; None if it is not a count
    (the rule of ``disclosure._as_count``: a non-negative whole number; only the text is parsed here)."""
    s = cell.strip()
    if s in ("", disclosure.SUPPRESSED):
        return s
    try:
        value: int | float = int(s) if s.isdigit() else float(s)  # int(): exact beyond 2**53
    except ValueError:
        return None
    return disclosure._as_count(value)


def _disclose_cells(cells: list[str], what: str) -> list[str]:
    parsed = [_count_cell(c) for c in cells]
    bad = [(i, c) for i, (c, p) in enumerate(zip(cells, parsed)) if p is None]
    if bad:
        shown = ", ".join(f"row {i + 1} {c!r}" for i, c in bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10
                                                                          else "")
        raise PublishError(f"{what}: a count column holds values that are not non-negative whole numbers ({shown}); "
                           f"fix the table, or classify the column correctly in pbc_analysis/publish/registry.py TABLES")
    nums = [p for p in parsed if isinstance(p, int)]
    done = iter(disclosure.disclose_counts(nums).tolist())
    return [str(next(done)) if isinstance(p, int) else str(p) for p in parsed]


def _ratio_input(cell: str) -> object:
    """A text cell as an input of ``disclosure._ratio``: ``"*"`` kept, blank or non-finite as missing."""
    s = cell.strip()
    if s in ("", disclosure.SUPPRESSED):
        return s or None
    try:
        f = float(s)
    except ValueError:
        return s  # disclosure._ratio refuses it, naming the value
    return f if math.isfinite(f) else None


def _ratio_cell(num: str, den: str, mult: float) -> str:
    """``num / den * mult`` by ``disclosure._ratio`` (the HTML tables' rule) as text: ``"*"``, ``""`` (blank,
    non-finite or zero denominator) or :data:`results.FLOAT_FORMAT`; ValueError for a non-number."""
    value = disclosure._ratio(_ratio_input(num), _ratio_input(den), mult, None)
    if isinstance(value, str):
        return value
    return "" if value is pd.NA else results.FLOAT_FORMAT % value


def disclose_table_text(name: str, df: pd.DataFrame, spec: TableSpec | None = None) -> pd.DataFrame:
    """Apply the publishing rule to one result table read as text; return the published copy.

    Parameters
    ----------
    name : str
        The table's name (a key of :data:`TABLES`, used for the rule and in error messages).
    df : pandas.DataFrame
        The table with every cell as text (``pd.read_csv(..., dtype=str, keep_default_na=False)``).
    spec : TableSpec, optional
        The table's rules; default ``TABLES[name]``.

    Returns
    -------
    pandas.DataFrame
        Text cells: ``count`` columns disclosed (0, ``*`` or a multiple of 5 from 10), ``ratio`` columns
        recomputed from them, ``withheld`` columns dropped, every other cell unchanged. Disclosing a
        disclosed table again gives the same table.

    Raises
    ------
    PublishError
        Naming every unregistered column at once, or the rows of a count that is not a whole number.

    References
    ----------
    NHS Digital, disclosure control methodology for HES and ECDS (2018); ../shared/DOMAIN.md.
    """
    spec = spec or TABLES.get(name)
    if spec is None:
        raise PublishError(f"table {name!r} is not in pbc_analysis/publish/registry.py TABLES; classify each of its columns")
    found = {c: spec.column(c) for c in df.columns}
    missing = [c for c, r in found.items() if r is None]
    rules = {c: r for c, r in found.items() if r is not None}
    if missing:
        raise PublishError(f"table {name!r}: column(s) {missing} are not classified in pbc_analysis/publish/bundle.py "
                           f"TABLES[{name!r}]; add each with its kind ({', '.join(KINDS)})")
    out = df.copy()
    for col, rule in rules.items():
        if rule.kind != "count":
            continue
        rows = slice(None) if rule.rows_where is None else df[rule.rows_where[0]].isin(rule.rows_where[1]).to_numpy()
        cells = df[col].to_numpy(dtype=object)[rows].tolist()
        disclosed = _disclose_cells(cells, f"table {name!r}, column {col!r}")
        values = out[col].to_numpy(dtype=object).copy()
        values[rows] = disclosed
        out[col] = values
    for col, rule in rules.items():
        if rule.kind == "ratio":
            assert rule.ratio is not None, "a ratio column names its inputs"
            num, den, mult = rule.ratio
            kinds = {c: (found_col.kind if (found_col := spec.column(c)) else None) for c in (num, den)}
            if kinds[num] != "count" or kinds[den] not in ("count", "public") or num not in df or den not in df:
                raise PublishError(f"table {name!r}, ratio column {col!r}: inputs {num!r} ({kinds[num]}) and {den!r} "
                                   f"({kinds[den]}) must be a count and a count or public column of the table")
            try:
                out[col] = [_ratio_cell(n, d, mult) for n, d in zip(out[num], out[den])]
            except ValueError:  # the count was checked above: a denominator is not a number
                bad = [f"row {i + 1} {d!r}" for i, d in enumerate(out[den]) if _ratio_input(d) not in (None, "*")
                       and isinstance(_ratio_input(d), str)]
                raise PublishError(f"table {name!r}, ratio column {col!r}: denominator {den!r} is not a number at "
                                   f"{', '.join(bad[:10])}; fix the table, or classify {den!r} correctly in "
                                   "pbc_analysis/publish/registry.py TABLES") from None
    return out.drop(columns=[c for c, r in rules.items() if r.kind == "withheld"])


def disclose_input_rows(summary: pd.DataFrame) -> pd.DataFrame:
    """The input-file summary (``quality.table_summary``) with patient-level files' row counts disclosed.

    Parameters
    ----------
    summary : pandas.DataFrame
        One row per input file with ``table`` and ``rows``.

    Returns
    -------
    pandas.DataFrame
        A copy whose ``rows`` of tables in :data:`PATIENT_LEVEL_INPUTS` (one row per patient and year)
        follow the rule (0, ``*`` or rounded to 5); other files' rows are file rows, not people, and stay.

    References
    ----------
    NHS Digital, disclosure control methodology for HES and ECDS (2018).
    """
    out = summary.copy()
    mask = out["table"].isin(PATIENT_LEVEL_INPUTS).to_numpy()
    values = out["rows"].astype(object).to_numpy().copy()
    if mask.any():
        values[mask] = disclosure.disclose_counts(pd.Series(values[mask], dtype=object)).tolist()
    out["rows"] = values
    return out


# --------------------------------------------------------------------------------------------------
# results.json
# --------------------------------------------------------------------------------------------------
def _match(path: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    if not pattern:
        return not path
    if pattern[0] == "**":
        return any(_match(path[i:], pattern[1:]) for i in range(len(path) + 1))
    return bool(path) and fnmatchcase(path[0], pattern[0]) and _match(path[1:], pattern[1:])


def _json_kind(path: tuple[str, ...], rules: tuple[tuple[str, str], ...]) -> str | None:
    return next((kind for pat, kind in rules if _match(path, tuple(pat.split(".")))), None)


def _walk(obj: Any, path: tuple[str, ...], rules: tuple[tuple[str, str], ...], problems: list[str]) -> Any:
    if isinstance(obj, Mapping):
        return {k: _walk(v, (*path, str(k)), rules, problems) for k, v in obj.items()}
    if isinstance(obj, list):
        item = (*path[:-1], path[-1] + "[]") if path else ("[]",)
        return [_walk(v, item, rules, problems) for v in obj]
    is_number = isinstance(obj, (int, float)) and not isinstance(obj, bool)
    kind = _json_kind(path, rules) if is_number or obj == disclosure.SUPPRESSED else None
    where = ".".join(path)
    if is_number and kind is None:
        problems.append(f"{where} = {obj!r}: not classified in pbc_analysis/publish/bundle.py JSON_RULES")
    elif kind in ("count", "expected_count") and obj != disclosure.SUPPRESSED:
        n = obj if kind == "count" else math.floor(obj + 0.5)
        if not (isinstance(n, int) or float(n).is_integer()) or n < 0:
            problems.append(f"{where} = {obj!r}: a count must be a non-negative whole number")
            return obj
        return disclosure.disclose_counts([int(n)]).iloc[0]
    return obj


def disclose_results(res: Mapping[str, Any], rules: tuple[tuple[str, str], ...] = JSON_RULES) -> dict[str, Any]:
    """The published copy of ``results.json``: every figure classified ``count`` disclosed.

    Parameters
    ----------
    res : mapping
        The merged headline figures (``results.json``).
    rules : tuple of (pattern, kind)
        Path rules, default :data:`JSON_RULES` (kinds: :data:`KINDS` plus ``expected_count``).

    Returns
    -------
    dict
        The same structure; counts are ``0``, ``"*"`` or multiples of 5 from 10, other values unchanged.

    Raises
    ------
    PublishError
        Listing every numeric figure no rule classifies, and every count that is not a whole number.

    References
    ----------
    NHS Digital, disclosure control methodology for HES and ECDS (2018).
    """
    bad_kinds = sorted({k for _, k in rules} - _JSON_KINDS)
    if bad_kinds:
        raise PublishError(f"JSON_RULES: unknown kind(s) {bad_kinds}; use one of {sorted(_JSON_KINDS)}")
    problems: list[str] = []
    out = _walk(results.to_jsonable(res), (), rules, problems)
    if problems:
        raise PublishError("results.json cannot be published; classify or fix these figures (path rules in "
                           "pbc_analysis/publish/bundle.py JSON_RULES):\n  " + "\n  ".join(problems))
    return out


# --------------------------------------------------------------------------------------------------
# the bundle
# --------------------------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_text_table(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)


def _check_registered(tables: list[Path]) -> list[str]:
    """Every problem that stops publication, all at once: unregistered tables and columns."""
    problems = []
    for path in tables:
        spec = TABLES.get(path.stem)
        if spec is None:
            problems.append(f"tables/{path.name}: table {path.stem!r} is not in pbc_analysis/publish/registry.py TABLES; add "
                            f"it with every column classified ({', '.join(KINDS)}), or withhold it with a reason")
            continue
        header = list(pd.read_csv(path, nrows=0).columns)
        missing = [c for c in header if spec.column(c) is None]
        if missing:
            problems.append(f"tables/{path.name}: column(s) {missing} are not classified in "
                            f"pbc_analysis/publish/registry.py TABLES[{path.stem!r}]; add each with its kind")
    return problems


def _readme(run_id: str, contents: dict[str, Any]) -> str:
    tables = contents["tables"]
    withheld = contents["withheld_tables"]
    lines = [
        f"Published bundle of run {run_id}",
        "",
        "This directory is the only part of the run that may be sent with the report. Everything else in the",
        "run directory (tables/, results/, results.json, notebooks/, provenance.json, manifest.json, run.log) is",
        "the analyst's private working area: it holds unrounded counts and is never to be sent.",
        "",
        "Disclosure rule (NHS Digital HES/ECDS disclosure control):",
        "  " + disclosure.disclosure_footnote(),
        "  In the tables: columns of kind 'count' follow the rule; 'ratio' columns are recomputed from the",
        "  rounded counts ('*' when an input is suppressed); modelled figures, money, rates, intervals and",
        "  already-public registered lists are exempt. CONTENTS.json gives the kind of every column.",
        "",
        "Contents:",
        "  README.txt      this file",
        "  CONTENTS.json   every file with its sha256; every table's columns and their kind",
    ]
    if "report.html" in contents["files"]:
        lines.append("  report.html     the report (self-contained; its tables apply the same rule)")
    if "finance.xlsx" in contents["files"]:
        lines.append("  finance.xlsx    the payment schedule and budget statements (values, no formulas; from the tables here)")
    n_pages = sum(1 for f in contents["files"] if f.startswith("practices/") and f != "practices/index.html")
    if n_pages:
        lines.append(f"  practices/      {n_pages} practice pages and their index (self-contained; counts disclosed)")
    lines += ["  results.json    headline figures, counts disclosed",
              f"  tables/         {len(tables)} result tables, counts disclosed",
              f"  figures/        {sum(1 for f in contents['files'] if f.startswith('figures/'))} figures of the report",
              "", "Withheld (kept in the private working area only):"]
    for name, why in sorted(withheld.items()):
        lines.append(f"  tables/{name}.csv: {why}")
    for name, cols in sorted(contents["withheld_columns"].items()):
        for col, why in sorted(cols.items()):
            lines.append(f"  column {col} of tables/{name}.csv: {why}")
    if not withheld and not contents["withheld_columns"]:
        lines.append("  nothing")
    return "\n".join(lines) + "\n"


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?|[-+]?(inf|nan)", re.IGNORECASE)


def neutralise_formulas(df: pd.DataFrame) -> pd.DataFrame:
    """Text cells that a spreadsheet would run as a formula, prefixed with ``'`` (numbers untouched).

    A practice named ``=HYPERLINK(...)`` or ``@SUM(...)`` in an input file would otherwise become a live
    formula when a published CSV is opened in Excel or LibreOffice ("CSV injection").

    Parameters
    ----------
    df : pandas.DataFrame
        A table read as text.

    Returns
    -------
    pandas.DataFrame
        The same table, with every cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
        return and is not a number written as ``'`` followed by the cell.

    References
    ----------
    OWASP, "CSV Injection" (https://owasp.org/www-community/attacks/CSV_Injection).
    """
    def safe(cell: Any) -> Any:
        if isinstance(cell, str) and cell.startswith(_FORMULA_START) and not _NUMBER.fullmatch(cell):
            return "'" + cell
        return cell

    return df.apply(lambda col: col.map(safe)) if len(df) else df


def _write_tables(run_dir: Path, stage: Path, tables: list[Path], contents: dict[str, Any]) -> None:
    (stage / results.TABLES).mkdir(parents=True)
    for path in tables:
        spec = TABLES[path.stem]
        if spec.withheld_reason:
            contents["withheld_tables"][path.stem] = spec.withheld_reason
            continue
        df = _read_text_table(path)
        out = neutralise_formulas(disclose_table_text(path.stem, df, spec))
        target = stage / results.TABLES / path.name
        out.to_csv(target, index=False, lineterminator="\n")
        kinds = {c: spec.column(c).kind for c in df.columns}  # type: ignore[union-attr]
        notes = {c: spec.column(c).note for c in df.columns if spec.column(c).note}  # type: ignore[union-attr]
        if notes:
            contents["withheld_columns"][path.stem] = notes
        contents["tables"][path.stem] = {"description": spec.description, "rows": len(df), "columns": kinds}


def build_bundle(run_dir: str | Path) -> Path:
    """Create ``<run_dir>/published/``: the report, results and tables that may be sent, counts disclosed.

    Parameters
    ----------
    run_dir : str or Path
        A finished run directory (``tables/``, ``results.json``; ``report.html`` and ``figures/`` when
        rendered).

    Returns
    -------
    Path
        The bundle directory. It is rebuilt from scratch (an older bundle is replaced only once the new one
        is complete) and is byte-identical for the same run directory.

    Raises
    ------
    PublishError
        Before anything is written: every result table or column not in :data:`TABLES`, every figure of
        ``results.json`` not in :data:`JSON_RULES`, a missing ``tables/`` or ``results.json``.

    References
    ----------
    NHS Digital, disclosure control methodology for HES and ECDS (2018); ../shared/DOMAIN.md,
    "Publishing rules".
    """
    run_dir = Path(run_dir).resolve()
    res_path = run_dir / "results.json"
    tables = sorted((run_dir / results.TABLES).glob("*.csv"))
    missing = [p for p in (run_dir / results.TABLES, res_path) if not p.exists()]
    if missing:
        raise PublishError(f"run directory {run_dir} is not a finished run: {[p.name for p in missing]} missing; "
                           f"run `pbc run` to completion first")
    problems = _check_registered(tables)
    try:
        published_results = disclose_results(json.loads(res_path.read_text(encoding="utf-8")))
    except PublishError as err:
        problems.append(str(err))
    if problems:
        raise PublishError(f"cannot publish {run_dir.name}: nothing was written.\n" + "\n".join(problems))

    stage = run_dir / f".{BUNDLE}.tmp"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir()
    try:
        contents: dict[str, Any] = {"run_id": run_dir.name, "files": {}, "tables": {}, "withheld_tables": {},
                                    "withheld_columns": {}}
        _write_tables(run_dir, stage, tables, contents)
        (stage / "results.json").write_text(results.dumps(published_results), encoding="utf-8")
        if (run_dir / "report.html").exists():
            shutil.copyfile(run_dir / "report.html", stage / "report.html")
        figures = sorted((run_dir / results.FIGURES).glob("*.png"))
        if figures:
            (stage / results.FIGURES).mkdir()
        for fig in figures:
            shutil.copyfile(fig, stage / results.FIGURES / fig.name)
        pages = sorted((run_dir / "practices").glob("*.html"))   # the practice pages (they apply the rule)
        if pages:
            (stage / "practices").mkdir()
        for page in pages:
            shutil.copyfile(page, stage / "practices" / page.name)
        write_finance_workbook(stage, run_id=run_dir.name)  # from the bundle's disclosed tables, never the private ones
        contents["files"] = {p.relative_to(stage).as_posix(): "" for p in stage.rglob("*") if p.is_file()}
        (stage / "README.txt").write_text(_readme(run_dir.name, contents), encoding="utf-8")
        files = sorted(p for p in stage.rglob("*") if p.is_file())
        contents["files"] = {p.relative_to(stage).as_posix(): _sha256(p) for p in files}
        contents["disclosure"] = {"suppress_max": disclosure.SUPPRESS_MAX, "round_to": disclosure.ROUND_TO,
                                  "suppressed": disclosure.SUPPRESSED, "rule": disclosure.disclosure_footnote(),
                                  "kinds": KINDS}
        contents["private"] = ("everything in the run directory outside published/ is the private working area "
                               "and is never to be sent")
        (stage / "CONTENTS.json").write_text(results.dumps(contents), encoding="utf-8")
        target = run_dir / BUNDLE
        if target.exists():
            shutil.rmtree(target)
        stage.rename(target)
    finally:
        if stage.exists():
            shutil.rmtree(stage)
    return target
