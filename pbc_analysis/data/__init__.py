"""The input data model and validated loading.

The pandera schemas in :data:`TABLES` are the single source of truth for the input tables; the data
dictionary (``docs/data_dictionary.md``) documents them. :func:`load_inputs` finds one file per table
in a data directory, reads it (:func:`read_table`) and checks every rule (:func:`validate`). Every
breach is collected and reported at once in a :class:`DataValidationError`, each :class:`Problem`
naming the file, the column, the rows (1-based data row numbers, the header is row 0) and the values,
with what to do about it. Nothing is dropped, coerced or filled.

Reading. CSV is read with everything as text (nothing is coerced), then each column is converted to
its schema type; every cell that does not convert is a problem. Codes stay text, so leading zeros
are kept. Parquet columns must already have the schema's types (integer columns may be any integer
width, float columns may be stored as integers). After loading, text columns have pandas ``str``
dtype, integers ``int64``, floats ``float64`` and booleans ``bool``; a missing ``engaged_from`` is NA.

Checks. Element-wise rules (types, missing values, ranges, allowed values, code patterns, months and
financial years) are pandera checks, run lazily, column by column; text columns are validated on their
distinct values (a factorisation), which is exact for element-wise rules and makes them cheap at
national scale (tens of millions of activity rows with a few thousand distinct codes). Keys, foreign
keys, the analysis window, coverage (no gaps, every practice in every month, complete age-sex
lists), prices, engagement and the activity/cost consistency rules are vectorised numpy/pandas on
integer codes; there are no Python loops over rows or practices (only over the handful of items
quoted in a message).
"""

from __future__ import annotations

import codecs
import csv
import gzip
import os
import re
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as pyarrow
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from pandera.errors import SchemaErrors

from pbc_analysis.core import paths as _paths

__all__ = [
    "AGE_BANDS",
    "MEASURES",
    "PODS",
    "SEXES",
    "TABLES",
    "DataValidationError",
    "Inputs",
    "Problem",
    "TableSpec",
    "Window",
    "find_table_files",
    "load_inputs",
    "read_table",
    "validate",
]

# --------------------------------------------------------------------------------------------------
# Vocabularies and formats
# --------------------------------------------------------------------------------------------------

PODS: tuple[str, ...] = ("first_op", "followup_op", "elective", "non_elective", "ae")
AE_POD = "ae"
AE_SPECIALTY = "180"
AGE_BANDS: tuple[str, ...] = tuple(f"{a}-{a + 4}" for a in range(0, 90, 5)) + ("90+",)
SEXES: tuple[str, ...] = ("F", "M")
#: what a reference rate counts: GP referrals or activity at one point of delivery
MEASURES: tuple[str, ...] = ("referrals",) + PODS
ALL = "all"

MONTH_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])$"
FY_PATTERN = r"^[0-9]{4}/[0-9]{2}$"
PRACTICE_PATTERN = r"^[A-Z][0-9]{5}$"
PROVIDER_PATTERN = r"^[A-Z0-9]{3,5}$"
SPECIALTY_PATTERN = r"^[0-9]{3}$"

SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz", ".parquet")

#: rows quoted in a problem's text; rows kept in ``Problem.rows``; values kept in ``Problem.values``
SHOW_ROWS = 10
KEEP_ROWS = 1000
KEEP_VALUES = 10
#: text columns with at least this many rows are checked by pandera on their distinct values
DEDUPE_MIN_ROWS = 10_000


def _n(count: int, noun: str, plural: str | None = None) -> str:
    """``"1 row"``, ``"3 rows"``, ``"1,200 practice-months"``."""
    return f"{count:,} {noun if count == 1 else (plural or noun + 's')}"


def _are(count: int) -> str:
    return "is" if count == 1 else "are"


def _have(count: int) -> str:
    return "has" if count == 1 else "have"


def _month_int(month: str) -> int:
    return int(month[:4]) * 12 + int(month[5:7]) - 1


def _month_str(m: int) -> str:
    return f"{m // 12:04d}-{m % 12 + 1:02d}"


def financial_year_label(start: int) -> str:
    """The label ``YYYY/YY`` of the financial year that starts in April of ``start`` (2005 -> ``2005/06``).

    Parameters
    ----------
    start : int
        The calendar year in which the financial year starts.

    Returns
    -------
    str
    """
    return f"{start:04d}/{(start + 1) % 100:02d}"


def _fy_of_month_int(m: int) -> str:
    return financial_year_label((m - 3) // 12)  # April (index 3) starts the year


def _valid_fy(s: pd.Series) -> pd.Series:
    """Vectorised: ``YYYY/YY`` with consecutive years (``2005/06``)."""
    text = s.astype("str")
    ok = text.str.fullmatch(FY_PATTERN).fillna(False).astype(bool)
    start = pd.to_numeric(text.str.slice(0, 4).where(ok), errors="coerce")
    end = pd.to_numeric(text.str.slice(5, 7).where(ok), errors="coerce")
    return (ok & ((start + 1) % 100 == end)).astype(bool)


# --------------------------------------------------------------------------------------------------
# The analysis window
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Window:
    """The analysis window, ``start_month`` to ``end_month`` inclusive (``YYYY-MM``)."""

    start_month: str
    end_month: str

    def __post_init__(self) -> None:
        for name in ("start_month", "end_month"):
            value = getattr(self, name)
            if not isinstance(value, str) or not re.fullmatch(MONTH_PATTERN, value):
                raise ValueError(f"{name} must be a month 'YYYY-MM' (e.g. '2005-04'), got {value!r}")
        if self.start_month > self.end_month:
            raise ValueError(f"start_month {self.start_month} is after end_month {self.end_month}")

    @property
    def start_index(self) -> int:
        """``year * 12 + month - 1`` of the first month."""
        return _month_int(self.start_month)

    @property
    def end_index(self) -> int:
        return _month_int(self.end_month)

    @property
    def n_months(self) -> int:
        return self.end_index - self.start_index + 1

    @property
    def months(self) -> list[str]:
        """Every month of the window, ``["2005-04", "2005-05", ...]``."""
        return [_month_str(m) for m in range(self.start_index, self.end_index + 1)]

    @property
    def financial_years(self) -> list[str]:
        """The financial years (April to March) the window touches, ``["2005/06", ...]``."""
        return list(dict.fromkeys(_fy_of_month_int(m) for m in range(self.start_index, self.end_index + 1)))

    def __str__(self) -> str:
        return f"{self.start_month} to {self.end_month}"


# --------------------------------------------------------------------------------------------------
# Problems
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    """One breach of the data dictionary.

    ``rows`` are 1-based data row numbers (the header is row 0; Parquet: 1-based row position), at
    most :data:`KEEP_ROWS` of them, in file order; ``n_rows`` is how many rows offend in total (0 when
    the problem is about rows that are absent, e.g. a missing month). ``values`` is a sample of the
    offending values (cells, or key tuples for key/coverage problems). ``check`` names the rule.
    """

    file: str
    table: str
    column: str | None
    rows: list[int]
    values: list[Any]
    message: str
    fix: str
    n_rows: int = 0
    check: str = ""

    def __str__(self) -> str:
        where = self.file or "(no file)"
        head = f"{where} [table {self.table}]"
        if self.column:
            head += f", column '{self.column}'"
        lines = [f"{head}: {self.message}"]
        if self.rows:
            if self.rows == [0]:
                lines.append("    rows: 0 (the header)")
            else:
                shown = ", ".join(str(r) for r in self.rows[:SHOW_ROWS])
                more = f", ... ({self.n_rows:,} rows in total)" if self.n_rows > SHOW_ROWS else \
                    f" ({self.n_rows} row{'s' if self.n_rows != 1 else ''} in total)"
                lines.append(f"    rows: {shown}{more}")
        if self.values:
            lines.append("    values: " + ", ".join(_fmt_value(v) for v in self.values[:SHOW_ROWS]))
        if self.fix:
            lines.append(f"    fix: {self.fix}")
        return "\n".join(lines)


def _fmt_value(v: Any) -> str:
    if isinstance(v, tuple):
        return "(" + ", ".join(_fmt_value(x) for x in v) + ")"
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "<missing>"
    if isinstance(v, str):
        return repr(v)
    return str(v)


class DataValidationError(ValueError):
    """The input data breach the data dictionary; ``problems`` lists every breach."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems: list[Problem] = list(problems)
        super().__init__(self._report())

    def _report(self) -> str:
        n = len(self.problems)
        head = (f"The input data failed validation: {n} problem{'s' if n != 1 else ''} "
                "(all are listed; fix them and load again; see docs/data_dictionary.md).")
        body = [f"[{i}] " + str(p).replace("\n", "\n  ") for i, p in enumerate(self.problems, 1)]
        return "\n\n".join([head, *body])

    def __str__(self) -> str:
        return self._report()


# --------------------------------------------------------------------------------------------------
# Schemas (the single source of truth)
# --------------------------------------------------------------------------------------------------

def _col(dtype: Any, checks: Sequence[pa.Check] = (), *, kind: str, nullable: bool = False,
         description: str = "", **meta: Any) -> pa.Column:
    return pa.Column(dtype, checks=list(checks), nullable=nullable, coerce=False, required=True,
                     description=description, metadata={"kind": kind, **meta})


def _text(description: str = "", nullable: bool = False) -> pa.Column:
    return _col(str, kind="text", nullable=nullable, description=description)


def _practice(description: str = "", references: str | None = "practices") -> pa.Column:
    checks = [] if references else [pa.Check.str_matches(PRACTICE_PATTERN)]
    return _col(str, checks, kind="practice_code", references=references, description=description)


def _provider(description: str = "", references: str | None = "providers") -> pa.Column:
    checks = [] if references else [pa.Check.str_matches(PROVIDER_PATTERN)]
    return _col(str, checks, kind="provider_code", references=references, description=description)


def _specialty(description: str = "", references: str | None = "specialties", not_ae: bool = False,
               also: Sequence[str] = ()) -> pa.Column:
    checks = [] if references else [pa.Check.str_matches(SPECIALTY_PATTERN)]
    if not_ae:
        checks.append(pa.Check.notin([AE_SPECIALTY]))
    return _col(str, checks, kind="specialty_code", references=references, also_allowed=tuple(also),
                description=description)


def _pod(also: Sequence[str] = ()) -> pa.Column:
    return _col(str, [pa.Check.isin(list(PODS) + list(also))], kind="pod", description="point of delivery")


def _month(description: str = "", in_window: bool = True, nullable: bool = False) -> pa.Column:
    return _col(str, [pa.Check.str_matches(MONTH_PATTERN)], kind="month", in_window=in_window,
                nullable=nullable, description=description)


def _fy(description: str = "", in_window: bool = False) -> pa.Column:
    check = pa.Check(_valid_fy, name="financial_year", error="financial year YYYY/YY")
    return _col(str, [check], kind="financial_year", in_window=in_window, description=description)


def _count(description: str = "") -> pa.Column:
    return _col("int64", [pa.Check.ge(0)], kind="count", description=description)


def _money(description: str = "", positive: bool = False) -> pa.Column:
    return _col("float64", [pa.Check.gt(0) if positive else pa.Check.ge(0)], kind="money", description=description)


def _bool(description: str = "") -> pa.Column:
    return _col(bool, kind="bool", description=description)


def _schema(name: str, columns: dict[str, pa.Column], key: Sequence[str] | None, description: str) -> pa.DataFrameSchema:
    return pa.DataFrameSchema(columns, unique=list(key) if key else None, strict=True, ordered=False,
                              coerce=False, name=name, description=description)


@dataclass(frozen=True)
class TableSpec:
    """One input table: its pandera schema (columns, dtypes, element rules, key) and table-level rules.

    Column metadata: ``kind`` (text, practice_code, provider_code, specialty_code, pod, month,
    financial_year, count, money, bool, category, score, id), ``references`` (the table whose key the
    column must be in), ``also_allowed`` (values allowed besides the references), ``in_window``
    (months or financial years must lie in the analysis window).
    """

    name: str
    required: bool
    schema: pa.DataFrameSchema
    description: str = ""
    rules: tuple[str, ...] = ()

    @property
    def columns(self) -> dict[str, pa.Column]:
        return dict(self.schema.columns)

    @property
    def column_names(self) -> list[str]:
        return list(self.schema.columns)

    @property
    def key(self) -> tuple[str, ...]:
        return tuple(self.schema.unique or ())

    @property
    def dtypes(self) -> dict[str, str]:
        """``{column: "str" | "int64" | "float64" | "bool"}`` after loading."""
        return {name: _dtype_name(col) for name, col in self.schema.columns.items()}

    @property
    def file_names(self) -> tuple[str, ...]:
        return tuple(self.name + s for s in SUFFIXES)

    def meta(self, column: str) -> dict[str, Any]:
        return dict(self.schema.columns[column].metadata or {})


def _dtype_name(col: pa.Column) -> str:
    s = str(col.dtype)
    if s.startswith("int"):
        return "int64"
    if s.startswith("float"):
        return "float64"
    if s.startswith("bool"):
        return "bool"
    return "str"


def _spec(name: str, required: bool, columns: dict[str, pa.Column], key: Sequence[str] | None,
          description: str, rules: Sequence[str] = ()) -> TableSpec:
    return TableSpec(name, required, _schema(name, columns, key, description), description, tuple(rules))


TABLES: dict[str, TableSpec] = {s.name: s for s in [
    _spec("practices", True, {
        "practice_code": _practice("practice identifier (ODS)", references=None),
        "practice_name": _text("name"),
        "consortium": _text("PBC consortium or locality"),
        "imd_score": _col("float64", [pa.Check.in_range(0, 100)], kind="score",
                          description="Index of Multiple Deprivation score (0 to 100)"),
        "single_handed": _bool("one GP principal"),
    }, ["practice_code"], "one row per practice"),
    _spec("providers", True, {
        "provider_code": _provider("provider (trust) identifier", references=None),
        "provider_name": _text("name"),
        "has_ae": _bool("runs a type 1 A&E department"),
    }, ["provider_code"], "one row per provider"),
    _spec("specialties", True, {
        "specialty_code": _specialty("treatment function code", references=None),
        "specialty_name": _text("name"),
    }, ["specialty_code"], "one row per specialty"),
    _spec("population", True, {
        "practice_code": _practice(),
        "month": _month("list at the start of the month"),
        "age_band": _col(str, [pa.Check.isin(list(AGE_BANDS))], kind="category", description="age band"),
        "sex": _col(str, [pa.Check.isin(list(SEXES))], kind="category", description="F or M"),
        "registered": _count("registered patients"),
    }, ["practice_code", "month", "age_band", "sex"], "registered list by practice, month, age band and sex",
        rules=("every practice has every month of the window",
               "every practice-month has all 38 age-sex rows",
               "no practice-month has a total list of zero")),
    _spec("activity", True, {
        "practice_code": _practice("registered practice of the patients"),
        "provider_code": _provider("provider that delivered the activity"),
        "specialty_code": _specialty(),
        "pod": _pod(),
        "month": _month("month of attendance or discharge"),
        "activity": _count("attendances or admissions"),
        "cost": _money("cost to the commissioner, GBP"),
    }, ["practice_code", "provider_code", "specialty_code", "pod", "month"],
        "hospital activity by practice, provider, specialty, point of delivery and month",
        rules=("specialty 180 exactly when pod is ae",
               "cost is 0 when activity is 0",
               "each (practice, provider, specialty, pod) series has no gaps between its first and last month",
               "every practice has activity rows in every month of the window",
               "activity > 0 needs a tariff price for its specialty, pod and financial year")),
    _spec("referrals", True, {
        "practice_code": _practice("referring practice"),
        "provider_code": _provider("provider referred to"),
        "specialty_code": _specialty(not_ae=True),
        "month": _month("month the referral was made"),
        "referrals": _count("GP referrals"),
    }, ["practice_code", "provider_code", "specialty_code", "month"],
        "GP referrals by practice, provider, specialty and month",
        rules=("each (practice, provider, specialty) series has no gaps between its first and last month",
               "every practice has referral rows in every month of the window")),
    _spec("tariff", True, {
        "specialty_code": _specialty(),
        "pod": _pod(),
        "financial_year": _fy(),
        "price": _money("national tariff price per unit, GBP", positive=True),
    }, ["specialty_code", "pod", "financial_year"], "national prices"),
    _spec("engagement", True, {
        "practice_code": _practice(),
        "engaged_from": _month("first month of engagement; missing = never engaged", nullable=True),
    }, ["practice_code"], "when each practice engaged in PBC",
        rules=("one row per practice in practices (no more, no fewer)",)),
    _spec("high_cost_patients", True, {
        "patient_id": _col(str, kind="id", description="pseudonymised identifier"),
        "practice_code": _practice(),
        "financial_year": _fy(in_window=True),
        "cost": _money("the patient's total hospital cost in the year, GBP", positive=True),
    }, ["patient_id", "financial_year"], "patient-level annual costs above a reporting floor (never reported)"),
    _spec("budgets", False, {
        "practice_code": _practice(),
        "financial_year": _fy(),
        "budget": _money("indicative budget for hospital activity, GBP"),
    }, ["practice_code", "financial_year"], "indicative budgets already set"),
    _spec("provider_changes", False, {
        "provider_code": _provider(),
        "specialty_code": _specialty(also=(ALL,)),
        "pod": _pod(also=(ALL,)),
        "effective_month": _month("first month the change applies", in_window=False),
        "description": _text("what changed"),
    }, ["provider_code", "specialty_code", "pod", "effective_month"], "documented provider service changes"),
    _spec("reference_rates", False, {
        "measure": _col(str, [pa.Check.isin(list(MEASURES))], kind="category",
                        description="referrals or a point of delivery"),
        "specialty_code": _specialty(),
        "age_band": _col(str, [pa.Check.isin(list(AGE_BANDS))], kind="category", description="age band"),
        "sex": _col(str, [pa.Check.isin(list(SEXES))], kind="category", description="F or M"),
        "rate": _col("float64", [pa.Check.ge(0)], kind="score",
                     description="events per 1,000 registered patients per year"),
    }, ["measure", "specialty_code", "age_band", "sex"],
        "reference (e.g. national) age-sex rates for indirect standardisation",
        rules=("specialty 180 exactly when measure is ae",
               "each (measure, specialty) has all 38 age-sex rows")),
]}

REQUIRED_TABLES: tuple[str, ...] = tuple(n for n, s in TABLES.items() if s.required)
OPTIONAL_TABLES: tuple[str, ...] = tuple(n for n, s in TABLES.items() if not s.required)


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Inputs:
    """Validated input tables (optional tables are ``None`` when absent), their files and the window."""

    practices: pd.DataFrame
    providers: pd.DataFrame
    specialties: pd.DataFrame
    population: pd.DataFrame
    activity: pd.DataFrame
    referrals: pd.DataFrame
    tariff: pd.DataFrame
    engagement: pd.DataFrame
    high_cost_patients: pd.DataFrame
    budgets: pd.DataFrame | None = None
    provider_changes: pd.DataFrame | None = None
    reference_rates: pd.DataFrame | None = None
    files: dict[str, Path] = field(default_factory=dict)
    window: Window | None = None
    #: ``{(table, column): (codes, uniques)}`` of text columns factorised during validation, so that
    #: analyses of national-size tables need not factorise them again (see :meth:`factorize`)
    factors: dict[tuple[str, str], tuple[np.ndarray, pd.Index]] = field(default_factory=dict, repr=False)

    def factorize(self, table: str, column: str) -> tuple[np.ndarray, pd.Index]:
        """``pd.factorize`` of ``table[column]`` (codes, uniques), reusing validation's work when it
        was done; the codes index the uniques (every value of validated inputs is present)."""
        hit = self.factors.get((table, column))
        if hit is not None:
            return hit
        codes, uniques = pd.factorize(getattr(self, table)[column])
        return np.asarray(codes, dtype=np.int64), pd.Index(uniques)

    def tables(self) -> dict[str, pd.DataFrame]:
        """``{table: DataFrame}`` of the tables present."""
        return {n: getattr(self, n) for n in TABLES if getattr(self, n) is not None}


# --------------------------------------------------------------------------------------------------
# Finding files
# --------------------------------------------------------------------------------------------------

def _table_of(path: Path) -> str | None:
    name = path.name
    for suffix in SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in TABLES:
            return name[: -len(suffix)]
    return None


#: checks of an entry in a table's place that keep the table from being read (it is not "missing")
_BLOCKING = frozenset({"duplicate_file", "dangling_symlink", "symlink_outside", "not_a_file", "unreadable_file"})
_SPREADSHEET = (".xlsx", ".xlsm", ".xls", ".ods", ".numbers")


def _near_table(name: str) -> str | None:
    """The table an entry's name is probably meant for (``Budgets.CSV``, ``budgets.xlsx``), else None."""
    stem = name.split(".")[0].strip().lower()
    return stem if stem in TABLES else None


def _entry_problem(p: Path, d: Path | None, table: str) -> Problem | None:
    """Why the entry ``p`` (named as table ``table``'s file) cannot be read, or None if it can.

    A symbolic link is followed only when its target lies inside the data directory ``d`` (``None``:
    an explicitly configured path, followed anywhere); a link leaving ``d`` is reported and never
    opened, so no message can quote the content of a file outside the data directory.
    """
    names = " or ".join(TABLES[table].file_names)
    if p.is_symlink():
        try:
            target = p.resolve(strict=True)
        except (OSError, RuntimeError):
            return Problem(str(p), table, None, [], [],
                           f"{p.name} is a symbolic link to {os.readlink(p)}, which does not exist (a dangling link)",
                           f"point the link at the table's file, or replace it with the file itself ({names})",
                           check="dangling_symlink")
        if d is not None and not target.is_relative_to(d.resolve()):
            return Problem(str(p), table, None, [], [],
                           f"{p.name} is a symbolic link to {target}, outside the data directory {d}; it was not read "
                           "(inputs are read only from inside the data directory)",
                           f"copy the file into {d} as {p.name}, or set data_dir to the folder that holds it",
                           check="symlink_outside")
    if p.is_dir():
        return Problem(str(p), table, None, [], [], f"{p.name} is a directory, not a file",
                       f"put table '{table}' in one file named {names}, or move the directory out of the way",
                       check="not_a_file")
    if not p.is_file():
        return Problem(str(p), table, None, [], [],
                       f"{p.name} is not a regular file (a device, socket or named pipe) and is not read",
                       f"replace it with the table's file ({names})", check="not_a_file")
    try:
        with open(p, "rb"):
            pass
    except OSError as exc:
        reason = "permission denied" if isinstance(exc, PermissionError) else (exc.strerror or str(exc))
        return Problem(str(p), table, None, [], [], f"the file cannot be opened: {reason}",
                       f"let the user running pbc read it (e.g. chmod a+r '{p}') or copy it somewhere readable",
                       check="unreadable_file")
    return None


def _misnamed_problem(p: Path, table: str, used: Path | None) -> Problem:
    names = ", ".join(TABLES[table].file_names)
    lower = p.name.lower()
    if used is not None:
        message = (f"{p.name} looks like another file for table '{table}', which is read from {used.name}; "
                   f"{p.name} is not read")
        fix = f"keep exactly one file per table: remove {p.name} or move it out of the data directory"
    else:
        kind = "optional" if not TABLES[table].required else "required"
        message = (f"{p.name} looks like {kind} table '{table}' but is not read: the file name must be exactly one "
                   f"of {names} (lower case)")
        if p.is_dir() and not p.is_symlink():
            fix = f"put table '{table}' in one file named {table}.csv or {table}.parquet, not in a directory"
        elif _table_of(Path(lower)) == table:
            fix = f"rename it to {lower}"
        elif lower.endswith(_SPREADSHEET):
            fix = f"save it from the spreadsheet as 'CSV UTF-8 (Comma delimited)' named {table}.csv"
        else:
            fix = f"save it as a comma-separated {table}.csv (UTF-8) or as {table}.parquet"
        if not TABLES[table].required:
            fix += f"; if the table is not meant to be used, move {p.name} out of the data directory"
    return Problem(str(p), table, None, [], [p.name], message, fix, check="misnamed_file")


def _find_table_files(data_dir: str | Path) -> tuple[dict[str, Path], list[Problem], Path]:
    d = _paths.resolve(data_dir)
    if not d.is_dir():
        what = "is not a directory" if d.exists() else "does not exist"
        return {}, [Problem(str(d), "", None, [], [], f"the data directory {what}",
                            "point data_dir at the folder holding the table files", check="data_dir")], d
    found: dict[str, list[Path]] = {}
    near: dict[str, list[Path]] = {}
    problems: list[Problem] = []
    for p in sorted(d.iterdir()):
        if p.name.startswith("."):
            continue
        t = _table_of(p)
        if t is not None:
            bad = _entry_problem(p, d, t)
            if bad is None:
                found.setdefault(t, []).append(p)
            else:
                problems.append(bad)
        elif _near_table(p.name) is not None:
            near.setdefault(str(_near_table(p.name)), []).append(p)
    problems += [
        Problem(", ".join(str(p) for p in ps), t, None, [], [p.name for p in ps],
                f"{len(ps)} files for table '{t}': " + ", ".join(p.name for p in ps),
                "keep exactly one file per table (remove or rename the others)", check="duplicate_file")
        for t, ps in found.items() if len(ps) > 1
    ]
    files = {t: ps[0] for t, ps in found.items() if len(ps) == 1}
    blocked = {pr.table for pr in problems}
    for t, ps in near.items():
        if t in files or t in blocked or not TABLES[t].required:  # a required table's absence says it all
            problems += [_misnamed_problem(p, t, files.get(t)) for p in ps]
    return files, problems, d


def find_table_files(data_dir: str | Path) -> dict[str, Path]:
    """The table files in a data directory, checked for every way a table can be present but unreadable.

    Parameters
    ----------
    data_dir : str or Path
        The folder holding one file per table (``<table>.csv``, ``.csv.gz`` or ``.parquet``); relative
        paths are taken from the project root. Other files (``ground_truth.json``, notes, ...) are
        ignored, unless their name looks like a table's (see Raises).

    Returns
    -------
    dict of str to Path
        ``{table: path}`` of the readable table files found.

    Raises
    ------
    DataValidationError
        Listing every problem: a missing directory; two files for one table; a file whose name differs
        from a table's only in case or extension (``Budgets.csv``, ``budgets.CSV``, ``budgets.xlsx``),
        for any table, required or optional; a directory, a dangling symbolic link, a link leaving the
        data directory, a special file or an unreadable file in a table's place. Nothing is silently
        skipped. (A *missing* required table is reported by :func:`load_inputs`.)
    """
    files, problems, _ = _find_table_files(data_dir)
    if problems:
        raise DataValidationError(problems)
    return files


def _near_misses(d: Path | None, table: str) -> list[str]:
    if d is None or not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir()
                  if not p.name.startswith(".") and _near_table(p.name) == table and _table_of(p) is None)


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------

@dataclass
class _Loaded:
    df: pd.DataFrame | None
    problems: list[Problem]
    rowmap: np.ndarray | None = None          # original 1-based row number per position, if rows were skipped
    excluded: dict[str, np.ndarray] = field(default_factory=dict)  # positions whose cells did not convert


def _fix_type(kind: str, dtype: str) -> str:
    return {
        "count": "counts must be whole numbers written like 12 (no decimals, text, spaces or thousands separators)",
        "money": "money must be a plain number like 1234.50 (no currency signs, spaces or thousands separators)",
        "score": "write the score as a plain number like 23.4",
        "bool": "write booleans as true or false",
    }.get(kind, f"write these cells as {dtype}")


def _expected_text(kind: str, dtype: str) -> str:
    return {"count": "a whole number", "money": "a number", "score": "a number",
            "bool": "true or false"}.get(kind, dtype)


def _samples(values: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    seen: set = set()
    for v in values:
        if isinstance(v, float) and np.isnan(v):
            v = None
        if isinstance(v, np.generic):
            v = v.item()
        h = ("__none__",) if v is None else v
        if h not in seen:
            seen.add(h)
            out.append(v)
            if len(out) >= KEEP_VALUES:
                break
    return out


def _rows(positions: np.ndarray, rowmap: np.ndarray | None) -> np.ndarray:
    positions = np.asarray(positions, dtype=np.int64)
    return rowmap[positions] if rowmap is not None else positions + 1


def _read_head(path: Path, n: int = 1 << 16) -> bytes:
    if path.name.endswith(".gz"):
        with gzip.open(path, "rb") as f:
            return f.read(n)
    with open(path, "rb") as f:
        return f.read(n)


def _read_all(path: Path) -> bytes:
    if path.name.endswith(".gz"):
        with gzip.open(path, "rb") as f:
            return f.read()
    return path.read_bytes()


_decode_errors = threading.local()


def _record_decode_error(err: UnicodeError) -> tuple[str, int]:
    _decode_errors.positions.append(err.start)  # type: ignore[attr-defined]
    return ("\ufffd", err.end)  # type: ignore[attr-defined]


codecs.register_error("pbc_record", _record_decode_error)


def _encoding_problem(path: Path, table: str, data: bytes | None = None) -> Problem:
    data = _read_all(path) if data is None else data
    fix = ("re-save the file as UTF-8 (in Excel: Save As > 'CSV UTF-8 (Comma delimited)'; in R: "
           "write.csv(..., fileEncoding = 'UTF-8'); in pandas: to_csv(..., encoding='utf-8'))")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or data[:4096].count(b"\x00") > 0:
        return Problem(str(path), table, None, [0], [], "the file is not UTF-8: it looks like UTF-16 "
                       "(Excel's 'Unicode Text'; NUL bytes or a UTF-16 byte-order mark at the start)", fix,
                       n_rows=1, check="encoding")
    _decode_errors.positions = []
    data.decode("utf-8-sig", errors="pbc_record")
    positions = np.asarray(_decode_errors.positions, dtype=np.int64)
    _decode_errors.positions = []
    if not len(positions):  # pragma: no cover - only called on a decoding failure
        return Problem(str(path), table, None, [], [], "the file could not be decoded as UTF-8", fix, check="encoding")
    if data.startswith(codecs.BOM_UTF8):
        positions = positions + 3
    newlines = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
    lines = np.unique(np.searchsorted(newlines, positions))  # 0-based line index: 0 is the header
    first = int(positions[0])
    first_line = int(np.searchsorted(newlines, first))
    line_start = int(newlines[first_line - 1]) + 1 if first_line > 0 else 0
    snippet = data[max(line_start, first - 20): first + 20].decode("utf-8", errors="backslashreplace")
    values: list[Any] = [snippet]
    for pos in positions[1:]:
        b = data[int(pos): int(pos) + 1]
        values.append(b.decode("latin-1") + f" (byte 0x{b.hex().upper()})")
    msg = (f"the file is not UTF-8: byte 0x{data[first:first + 1].hex().upper()} at byte position {first:,} "
           f"(line {first_line + 1}, data row {first_line}) is not valid UTF-8; {len(positions):,} invalid "
           f"byte sequence{'s' if len(positions) != 1 else ''} on {len(lines):,} line{'s' if len(lines) != 1 else ''}. "
           "It is probably Windows-1252 / Latin-1 (e.g. an accented name or a pound sign)")
    return Problem(str(path), table, None, [int(x) for x in lines[:KEEP_ROWS]], _samples(values), msg, fix,
                   n_rows=len(lines), check="encoding")


def _sniff_delimiter(header_text: str) -> str | None:
    counts = {d: header_text.count(d) for d in (";", "\t", "|")}
    best = max(counts, key=counts.get)  # type: ignore[arg-type]
    return best if counts[best] > 0 else None


_DELIM_NAMES = {";": "semicolon (;)", "\t": "tab", "|": "pipe (|)"}


def _read_csv(path: Path, spec: TableSpec) -> _Loaded:
    table, f = spec.name, str(path)
    expected = spec.column_names
    try:
        head = _read_head(path)
    except (OSError, EOFError, zlib.error) as exc:
        return _Loaded(None, [Problem(f, table, None, [], [], f"the file cannot be read: {exc}",
                                      "check that the file is a plain or gzip-compressed CSV file", check="unreadable")])
    if not head:
        return _Loaded(None, [Problem(f, table, None, [], [], "the file is empty (0 bytes): no header and no data",
                                      f"write the table with a header row ({', '.join(expected)}) and its data rows",
                                      check="empty_file")])
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in head:
        return _Loaded(None, [_encoding_problem(path, table, head)])
    first_line = head.split(b"\n", 1)[0].rstrip(b"\r")
    if first_line.startswith(codecs.BOM_UTF8):
        first_line = first_line[len(codecs.BOM_UTF8):]
    try:
        header_text = first_line.decode("utf-8")
    except UnicodeDecodeError:
        return _Loaded(None, [_encoding_problem(path, table)])
    header = next(csv.reader([header_text]), [])
    problems: list[Problem] = []

    # structure of the header
    if len(header) <= 1 < len(expected):
        delim = _sniff_delimiter(header_text)
        if delim is not None:
            name = _DELIM_NAMES[delim]
            return _Loaded(None, [Problem(
                f, table, None, [0], [header_text[:120]],
                f"the file is not comma-delimited: it looks {name}-delimited (the header row has no commas "
                f"but {header_text.count(delim)} {name}s)",
                "save the file as comma-separated CSV (in Excel: Save As > 'CSV UTF-8 (Comma delimited)'; "
                "use a full stop as the decimal mark)", n_rows=1, check="delimiter")])
    dup_names = sorted({c for c in header if header.count(c) > 1})
    for c in dup_names:
        problems.append(Problem(f, table, c, [0], [c], f"the header names column '{c}' {header.count(c)} times",
                                "give every column one unique name, as in the data dictionary", n_rows=1,
                                check="duplicate_column"))
    if dup_names:
        return _Loaded(None, problems)
    problems += _column_set_problems(f, table, spec, header)
    present = [c for c in expected if c in header]

    # the data, as text
    invalid: list[tuple[int | None, int, int, str]] = []

    def on_invalid(row: Any) -> str:
        invalid.append((row.number, row.expected_columns, row.actual_columns, row.text))
        return "skip"

    def read(threads: bool) -> pyarrow.Table:
        return pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(use_threads=threads, block_size=1 << 24),
            parse_options=pacsv.ParseOptions(delimiter=",", newlines_in_values=True, invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pyarrow.string() for c in header}, include_columns=present,
                strings_can_be_null=False, quoted_strings_can_be_null=False, null_values=[], check_utf8=True),
        )

    try:
        tbl = read(True)
        if invalid and any(r[0] is None for r in invalid):
            invalid.clear()
            tbl = read(False)
    except pyarrow.ArrowInvalid as exc:
        if "UTF8" in str(exc) or "utf8" in str(exc).lower():
            return _Loaded(None, problems + [_encoding_problem(path, table)])
        return _Loaded(None, problems + [Problem(f, table, None, [], [], f"the file cannot be parsed as CSV: {exc}",
                                                 "check the quoting (a quote opened and not closed?) and re-save as CSV",
                                                 check="unreadable")])
    except (OSError, EOFError, zlib.error) as exc:
        return _Loaded(None, problems + [Problem(f, table, None, [], [], f"the file cannot be read: {exc}",
                                                 "check that the file is a plain or gzip-compressed CSV file",
                                                 check="unreadable")])

    rowmap = None
    if invalid:
        skipped = np.array(sorted(int(r[0]) - 1 for r in invalid), dtype=np.int64)  # data row numbers
        n_kept = tbl.num_rows
        pos = np.arange(1, n_kept + 1, dtype=np.int64)
        adjusted = skipped - np.arange(len(skipped))
        rowmap = pos + np.searchsorted(adjusted, pos, side="right")
        first = invalid[0]
        problems.append(Problem(
            f, table, None, [int(x) for x in skipped[:KEEP_ROWS]], _samples(r[3][:100] for r in invalid),
            f"{len(invalid):,} row{'s have' if len(invalid) != 1 else ' has'} the wrong number of fields (the header "
            f"has {first[1]}; e.g. row {int(skipped[0])} has {first[2]})",
            "quote fields that contain commas (e.g. \"Smith, Jones and Partners\"), remove stray delimiters, "
            "and make every row have one field per column", n_rows=len(invalid), check="field_count"))

    if tbl.num_rows == 0:
        if not invalid:
            problems.append(Problem(f, table, None, [0], [], "the file has a header but no data rows",
                                    "write the data rows; a table with nothing to report must still have its rows "
                                    "(optional tables may instead be left out)", n_rows=1, check="no_rows"))
        return _Loaded(None, problems)

    arrays: dict[str, pyarrow.ChunkedArray] = {}
    excluded: dict[str, np.ndarray] = {}
    for c in present:
        arr, bad = _convert_text(tbl.column(c), spec.dtypes[c])
        arrays[c] = arr
        if bad is not None and len(bad):
            excluded[c] = bad
            kind = spec.meta(c).get("kind", "")
            raw = tbl.column(c).take(pyarrow.array(bad[:KEEP_ROWS])).to_pylist()
            problems.append(Problem(
                f, table, c, [int(x) for x in _rows(bad[:KEEP_ROWS], rowmap)], _samples(raw),
                f"wrong type: {_n(len(bad), 'cell')} {_are(len(bad))} not "
                f"{_expected_text(kind, spec.dtypes[c])}", _fix_type(kind, spec.dtypes[c]),
                n_rows=len(bad), check="wrong_type"))
    df = _to_pandas(arrays, present, tbl.num_rows)
    return _Loaded(df, problems, rowmap, excluded)


def _column_set_problems(f: str, table: str, spec: TableSpec, header: Sequence[str]) -> list[Problem]:
    expected = spec.column_names
    problems = []
    missing = [c for c in expected if c not in header]
    extra = [c for c in header if c not in expected]
    for c in missing:
        problems.append(Problem(f, table, c, [0], [], f"required column '{c}' is missing (the file has: "
                                f"{', '.join(map(str, header)) or 'no columns'})",
                                f"add column '{c}' (see docs/data_dictionary.md, table '{table}')", n_rows=1,
                                check="missing_column"))
    norm = {c.strip().lower(): c for c in missing}
    for c in extra:
        hint = f"; did you mean '{norm[str(c).strip().lower()]}'?" if str(c).strip().lower() in norm else ""
        problems.append(Problem(f, table, str(c), [0], [c], f"unexpected column '{c}'{hint}",
                                f"remove or rename it; table '{table}' has exactly the columns {', '.join(expected)}",
                                n_rows=1, check="extra_column"))
    return problems


_INT_RE = r"^-?[0-9]{1,18}$"
_FLOAT_RE = r"^-?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?$"


def _positions(mask: pyarrow.ChunkedArray | pyarrow.Array) -> np.ndarray:
    return np.flatnonzero(np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool))


def _convert_text(col: pyarrow.ChunkedArray, dtype: str) -> tuple[pyarrow.ChunkedArray, np.ndarray | None]:
    """Text -> schema type; empty cells become null; returns (array, positions of unconvertible cells)."""
    col = col.cast(pyarrow.string()) if col.type != pyarrow.string() else col
    empty = pc.equal(col, "")
    null_str = pyarrow.scalar(None, pyarrow.string())
    has_empty = pc.any(empty).as_py()
    text = pc.if_else(empty, null_str, col) if has_empty else col
    if dtype == "str":
        return text, None
    if dtype == "bool":
        low = pc.utf8_lower(text)
        is_true, is_false = pc.equal(low, "true"), pc.equal(low, "false")
        ok = pc.or_(is_true, is_false)
        bad = _positions(pc.invert(ok))
        out = pc.if_else(ok, is_true, pyarrow.scalar(None, pyarrow.bool_()))
        return out, bad
    target = pyarrow.int64() if dtype == "int64" else pyarrow.float64()
    try:
        out = pc.cast(text, target)
        bad = np.empty(0, dtype=np.int64)
    except (pyarrow.ArrowInvalid, pyarrow.ArrowNotImplementedError):
        ok = pc.match_substring_regex(text, _INT_RE if dtype == "int64" else _FLOAT_RE)
        bad = _positions(pc.invert(ok))
        out = pc.cast(pc.if_else(ok, text, null_str), target)
    if dtype == "float64":
        nonfinite = _positions(pc.invert(pc.is_finite(out)))
        if len(nonfinite):
            bad = np.union1d(bad, nonfinite)
            out = pc.if_else(pc.is_finite(out), out, pyarrow.scalar(None, pyarrow.float64()))
    return out, bad


def _to_pandas(arrays: dict[str, Any], order: Sequence[str], n: int) -> pd.DataFrame:
    data = {}
    for c in order:
        arr = arrays[c]
        if isinstance(arr, pyarrow.ChunkedArray) and arr.num_chunks != 1:
            arr = arr.combine_chunks()
        if isinstance(arr, pyarrow.ChunkedArray):
            arr = arr.chunk(0)
        if pyarrow.types.is_string(arr.type) or pyarrow.types.is_large_string(arr.type):
            data[c] = pd.Series(pd.array(arr, dtype="str"), name=c)
        else:
            data[c] = pd.Series(arr.to_pandas(), name=c)
    df = pd.DataFrame(data, columns=list(order))
    if not order:
        df = pd.DataFrame(index=pd.RangeIndex(n))
    return df


def _parquet_kind_ok(t: pyarrow.DataType, dtype: str) -> bool:
    if pyarrow.types.is_dictionary(t):
        t = t.value_type
    if dtype == "str":
        return pyarrow.types.is_string(t) or pyarrow.types.is_large_string(t) or pyarrow.types.is_string_view(t)
    if dtype == "int64":
        return pyarrow.types.is_integer(t)
    if dtype == "float64":
        return pyarrow.types.is_floating(t) or pyarrow.types.is_integer(t)
    return pyarrow.types.is_boolean(t)


def _read_parquet(path: Path, spec: TableSpec) -> _Loaded:
    table, f = spec.name, str(path)
    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        msg = "the file is empty (0 bytes)" if path.stat().st_size == 0 else f"the file cannot be read as Parquet: {exc}"
        return _Loaded(None, [Problem(f, table, None, [], [], msg, "re-write the table as a Parquet file",
                                      check="empty_file" if path.stat().st_size == 0 else "unreadable")])
    header = list(schema.names)
    problems = _column_set_problems(f, table, spec, header)
    present = [c for c in spec.column_names if c in header]
    tbl = pq.read_table(path, columns=present)
    if tbl.num_rows == 0:
        problems.append(Problem(f, table, None, [], [], "the file has no data rows",
                                "write the data rows (optional tables may instead be left out)", check="no_rows"))
        return _Loaded(None, problems)
    arrays: dict[str, Any] = {}
    excluded: dict[str, np.ndarray] = {}
    for c in present:
        col = tbl.column(c)
        dtype = spec.dtypes[c]
        if not _parquet_kind_ok(col.type, dtype):
            excluded[c] = np.arange(tbl.num_rows)
            kind = spec.meta(c).get("kind", "")
            problems.append(Problem(
                f, table, c, [], _samples(col.slice(0, 50).to_pylist()),
                f"wrong type: the Parquet column is {col.type}, expected {'text (string)' if dtype == 'str' else dtype}"
                + (" (codes are text, so leading zeros are kept)" if dtype == "str" else ""),
                f"write column '{c}' as {'string' if dtype == 'str' else dtype}; " + _fix_type(kind, dtype),
                check="wrong_type"))
            continue
        target = {"str": pyarrow.string(), "int64": pyarrow.int64(), "float64": pyarrow.float64(),
                  "bool": pyarrow.bool_()}[dtype]
        if pyarrow.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        try:
            arrays[c] = col.cast(target) if col.type != target else col
        except pyarrow.ArrowInvalid as exc:
            excluded[c] = np.arange(tbl.num_rows)
            problems.append(Problem(f, table, c, [], [], f"wrong type: values do not fit {dtype}: {exc}",
                                    f"write column '{c}' as {dtype}", check="wrong_type"))
            continue
        if dtype == "float64":
            bad = _positions(pc.and_(pc.is_valid(arrays[c]), pc.invert(pc.is_finite(arrays[c]))))
            bad = bad[~np.isnan(arrays[c].to_numpy()[bad])] if len(bad) else bad  # NaN is missing, not a type error
            if len(bad):
                excluded[c] = bad
                problems.append(Problem(f, table, c, [int(x) for x in bad[:KEEP_ROWS] + 1],
                                        _samples(arrays[c].take(pyarrow.array(bad[:KEEP_ROWS])).to_pylist()),
                                        f"wrong type: {len(bad):,} values are infinite", "write finite numbers",
                                        n_rows=len(bad), check="wrong_type"))
                arrays[c] = pc.if_else(pc.is_finite(arrays[c]), arrays[c], pyarrow.scalar(None, pyarrow.float64()))
    df = _to_pandas(arrays, [c for c in present if c in arrays], tbl.num_rows)
    # columns whose Parquet type is wrong are kept out of the frame (their checks are skipped)
    return _Loaded(df, problems, None, excluded)


def _format_of(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(".csv") or name.endswith(".csv.gz") or name.endswith(".gz"):
        return "csv"
    return None


def _read(path: Path, table: str) -> _Loaded:
    spec = TABLES[table]
    if not path.is_file():
        return _Loaded(None, [Problem(str(path), table, None, [], [], "the file does not exist",
                                      f"check the path configured for table '{table}'", check="missing_file")])
    fmt = _format_of(path)
    if fmt is None:
        return _Loaded(None, [Problem(str(path), table, None, [], [],
                                      f"unsupported file type '{path.suffix}' (use .csv, .csv.gz or .parquet)",
                                      "save the table as CSV (UTF-8, comma-delimited) or Parquet",
                                      check="unsupported_format")])
    return _read_parquet(path, spec) if fmt == "parquet" else _read_csv(path, spec)


def read_table(path: str | Path, table: str) -> pd.DataFrame:
    """Read one table file (CSV, CSV.gz or Parquet) and convert its columns to the schema types.

    CSV is read as text and converted column by column; Parquet column types are checked. Every
    structural problem (empty file, delimiter, encoding, missing/extra columns, wrong field counts)
    and every unconvertible cell is collected; if there are any, :class:`DataValidationError` is
    raised with all of them. The rules of :func:`validate` are *not* checked here.
    """
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; tables are {', '.join(TABLES)}")
    loaded = _read(_paths.resolve(path), table)
    if loaded.problems:
        raise DataValidationError(loaded.problems)
    assert loaded.df is not None
    return loaded.df


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------

class _Ctx:
    """One table under validation: its frame, file label, row numbering and cached factorisations."""

    def __init__(self, table: str, df: pd.DataFrame, file: str, rowmap: np.ndarray | None = None,
                 check_dtype: bool = True, excluded: Mapping[str, np.ndarray] | None = None):
        self.table = table
        self.spec = TABLES[table]
        if not isinstance(df.index, pd.RangeIndex) or df.index.start != 0 or df.index.step != 1:
            df = df.reset_index(drop=True)
        self.df = df
        self.n = len(df)
        self.file = file
        self.rowmap = rowmap
        self.check_dtype = check_dtype
        self.excluded = dict(excluded or {})
        self.invalid: dict[str, np.ndarray] = {}  # boolean masks of cells failing column checks
        self._raw: dict[str, tuple[np.ndarray, pd.Index]] = {}
        self._months: dict[str, np.ndarray] = {}
        self.usable: set[str] = {c for c in self.spec.column_names if c in df.columns}

    def has(self, *cols: str) -> bool:
        return all(c in self.usable for c in cols)

    def raw_factorize(self, col: str) -> tuple[np.ndarray, pd.Index]:
        """(codes, uniques) of a column; missing cells get code -1."""
        if col not in self._raw:
            codes, uniques = pd.factorize(self.df[col], use_na_sentinel=True)
            self._raw[col] = (np.asarray(codes, dtype=np.int64), pd.Index(uniques))
        return self._raw[col]

    def factorize(self, col: str) -> tuple[np.ndarray, pd.Index]:
        """(codes, uniques) of a column; missing cells and cells failing a column check get code -1."""
        codes, uniques = self.raw_factorize(col)
        if col in self.invalid:
            codes = np.where(self.invalid[col], -1, codes)
        return codes, uniques

    def month_index(self, col: str) -> np.ndarray:
        """``year*12 + month - 1`` per row; -1 where missing or not a valid month."""
        if col not in self._months:
            self._months[col] = self._month_index(col)
        return self._months[col]

    def _month_index(self, col: str) -> np.ndarray:
        codes, uniques = self.factorize(col)
        u = pd.Series(uniques, dtype="str")
        ok = u.str.fullmatch(MONTH_PATTERN).fillna(False).astype(bool)
        y = pd.to_numeric(u.str.slice(0, 4).where(ok), errors="coerce")
        m = pd.to_numeric(u.str.slice(5, 7).where(ok), errors="coerce")
        mi = (y * 12 + m - 1).fillna(-1).astype(np.int64).to_numpy()
        return np.where(codes >= 0, mi[np.maximum(codes, 0)] if len(mi) else -1, -1)

    def problem(self, column: str | None, positions: np.ndarray, message: str, fix: str, check: str,
                values: list[Any] | None = None) -> Problem:
        positions = np.asarray(positions, dtype=np.int64)
        rows = _rows(positions[:KEEP_ROWS], self.rowmap)
        if values is None:
            if column is not None and column in self.df.columns:
                values = _samples(self.df[column].iloc[positions[: KEEP_ROWS * 10]].tolist())
            else:
                values = []
        return Problem(self.file, self.table, column, [int(r) for r in rows], values, message, fix,
                       n_rows=len(positions), check=check)


# ---- element-wise rules: pandera, lazily, column by column ----------------------------------------

def _check_text(check_name: str, stats: dict[str, Any], meta: dict[str, Any], col: str, n: int) -> tuple[str, str, str]:
    """(check id, message, fix) for a failed pandera check."""
    kind = meta.get("kind", "")
    cells = f"{_n(n, 'value')} {_are(n)}"
    if check_name == "not_nullable":
        return ("missing_value", f"{_n(n, 'value')} {_are(n)} missing (empty cells) in a column that must not be missing",
                f"fill in '{col}' for these rows in the source data; missing values are not allowed here")
    if check_name == "greater_than_or_equal_to":
        what = "counts" if kind == "count" else "amounts"
        return ("negative", f"{cells} negative (must be >= {stats.get('min_value')})",
                f"{what} are never negative: correct these rows in the source data")
    if check_name == "greater_than":
        return ("not_positive", f"{cells} not greater than {stats.get('min_value')}",
                f"'{col}' must be positive: correct these rows or remove rows that should not be there")
    if check_name == "in_range":
        return ("out_of_range", f"{cells} outside {stats.get('min_value')} to {stats.get('max_value')}",
                f"'{col}' must lie between {stats.get('min_value')} and {stats.get('max_value')}")
    if check_name == "isin":
        allowed = ", ".join(map(str, stats.get("allowed_values", [])))
        return ("not_allowed", f"{cells} not allowed (allowed: {allowed})", f"use one of: {allowed}")
    if check_name == "notin":
        forbidden = ", ".join(map(str, stats.get("forbidden_values", [])))
        extra = " (A&E is not a referral specialty)" if kind == "specialty_code" else ""
        return ("not_allowed", f"{cells} not allowed here: {forbidden}{extra}",
                f"remove or correct these rows; '{col}' may not be {forbidden}")
    if check_name == "str_matches":
        if kind == "month":
            return ("bad_month", f"wrong type: {cells} not a valid month (YYYY-MM, e.g. 2005-04)",
                    "write months as YYYY-MM with a month 01 to 12 (not dates, not 2005-4)")
        example = {"practice_code": "P81001 (one letter and five digits)",
                   "provider_code": "RA7 (three to five capital letters/digits)",
                   "specialty_code": "110 (three digits, kept as text so leading zeros stay)"}.get(kind, "")
        return ("bad_pattern", f"{cells} not a valid {kind.replace('_', ' ')} (pattern {stats.get('pattern')})",
                f"correct the codes; a valid {kind.replace('_', ' ')} looks like {example}".rstrip())
    if check_name == "financial_year":
        return ("bad_financial_year", f"wrong type: {cells} not a valid financial year (YYYY/YY, e.g. 2005/06)",
                "write financial years as YYYY/YY with consecutive years (April 2005 to March 2006 is 2005/06)")
    if check_name.startswith("dtype"):
        return ("wrong_type", f"wrong type: the column's dtype is not {check_name[6:-1]}",
                "convert the column to the type in the data dictionary (codes and months as text)")
    return (check_name, f"{cells} fail check {check_name}", "correct these rows")


_COLUMN_SCHEMAS: dict[tuple[str, str, bool], pa.DataFrameSchema] = {}


def _column_schema(table: str, col: str, check_dtype: bool) -> pa.DataFrameSchema:
    """A one-column schema for ``table.col`` (without the dtype check for columns the reader typed)."""
    k = (table, col, check_dtype)
    if k not in _COLUMN_SCHEMAS:
        schema = pa.DataFrameSchema({col: TABLES[table].schema.columns[col]}, strict=False, coerce=False)
        _COLUMN_SCHEMAS[k] = schema if check_dtype else schema.update_column(col, dtype=None)
    return _COLUMN_SCHEMAS[k]


def _pandera_problems(ctx: _Ctx, col: str) -> list[Problem]:
    column = ctx.spec.schema.columns[col]
    schema = _column_schema(ctx.table, col, ctx.check_dtype)
    s = ctx.df[col]
    dedupe = len(s) >= DEDUPE_MIN_ROWS and (s.dtype == object or pd.api.types.is_string_dtype(s.dtype))
    if dedupe:
        codes, uniques = ctx.raw_factorize(col)
        values = pd.Series(uniques, dtype=s.dtype)
        if (codes < 0).any():  # missing cells: one NaN entry, at index len(uniques)
            values = pd.concat([values, pd.Series([None], dtype=s.dtype)], ignore_index=True)
            codes = np.where(codes < 0, len(uniques), codes)
        frame = values.to_frame(col)
    else:
        frame = s.to_frame()
    try:
        schema.validate(frame, lazy=True)
        return []
    except SchemaErrors as exc:
        fc = exc.failure_cases
    meta = ctx.spec.meta(col)
    problems: list[Problem] = []
    excluded = ctx.excluded.get(col)
    for (check, number), group in fc.groupby(["check", fc["check_number"].fillna(-1)], sort=False, dropna=False):
        idx = pd.to_numeric(group["index"], errors="coerce").dropna().astype(np.int64).to_numpy()
        if check.startswith("dtype"):
            name, stats = check, {}
        elif check == "not_nullable":
            name, stats = check, {}
        else:
            chk = column.checks[int(number)]
            name, stats = chk.name, dict(chk.statistics or {})
        if dedupe:
            positions = np.flatnonzero(np.isin(codes, idx))
        else:
            positions = np.sort(idx)
        if excluded is not None and len(positions):
            positions = positions[~np.isin(positions, excluded)]
        if not len(positions) and not name.startswith("dtype"):
            continue
        if name not in ("not_nullable",) and not name.startswith("dtype"):
            mask = ctx.invalid.setdefault(col, np.zeros(ctx.n, dtype=bool))
            mask[positions] = True
        cid, msg, fix = _check_text(name, stats, meta, col, len(positions))
        if name.startswith("dtype"):
            msg = f"wrong type: the column has dtype {s.dtype}, expected {_dtype_name(column)}"
            values = _samples(group["failure_case"].tolist()) if len(positions) else [str(s.dtype)]
            problems.append(ctx.problem(col, positions, msg, fix, cid, values=values))
            ctx.usable.discard(col)
            continue
        problems.append(ctx.problem(col, positions, msg, fix, cid))
    return problems


# ---- keys -----------------------------------------------------------------------------------------

def _combine(parts: Sequence[tuple[np.ndarray, int]]) -> np.ndarray:
    """Mixed-radix combination of non-negative integer codes (re-compacted before int64 overflow)."""
    key = np.zeros(len(parts[0][0]) if parts else 0, dtype=np.int64)
    span = 1
    for codes, n in parts:
        n = max(int(n), 1)
        if span * n >= 2 ** 62:
            key = pd.factorize(key)[0].astype(np.int64)
            span = int(key.max()) + 1 if len(key) else 1
        key = key * n + codes
        span *= n
    return key


def _key_codes(ctx: _Ctx, cols: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(combined key, valid mask) of rows; rows with a missing/invalid key part are not valid."""
    parts, valid = [], np.ones(ctx.n, dtype=bool)
    for c in cols:
        codes, uniques = ctx.factorize(c)
        valid &= codes >= 0
        parts.append((np.maximum(codes, 0), len(uniques)))
    return _combine(parts), valid


def _sorted_unique(a: np.ndarray) -> np.ndarray:
    """Sorted distinct values (sort-based: faster than hashing for tens of millions of distinct keys)."""
    if len(a) > 1 and not np.all(a[1:] > a[:-1]):
        a = np.sort(a)
        a = a[np.r_[True, a[1:] != a[:-1]]]
    return a


def _sorted_dups(key: np.ndarray) -> bool:
    if len(key) < 2:
        return False
    if np.all(key[1:] > key[:-1]):
        return False
    ks = np.sort(key)
    return bool(np.any(ks[1:] == ks[:-1]))


def _key_problems(ctx: _Ctx) -> list[Problem]:
    key_cols = ctx.spec.key
    if not key_cols or not ctx.has(*key_cols):
        return []
    key, valid = _key_codes(ctx, key_cols)
    pos_valid = np.flatnonzero(valid)
    k = key[pos_valid]
    if not _sorted_dups(k):
        return []
    dup = pd.Series(k).duplicated(keep=False).to_numpy()
    positions, kd = pos_valid[dup], k[dup]
    dup_keys = pd.unique(kd)  # in order of first appearance
    n_keys = len(dup_keys)
    details, values = [], []
    for key_value in dup_keys[:SHOW_ROWS]:
        p = positions[kd == key_value]
        kv = tuple(ctx.df[c].iloc[int(p[0])] for c in key_cols)
        values.append(kv)
        rows = _rows(p[:20], ctx.rowmap)
        details.append(f"{_fmt_value(kv)} on rows {', '.join(map(str, rows))}" + (" ..." if len(p) > 20 else ""))
    label = "(" + ", ".join(key_cols) + ")"
    msg = (f"duplicate key {label}: {_n(n_keys, 'key value')} {'appears' if n_keys == 1 else 'appear'} more than "
           f"once, on {_n(len(positions), 'row')}: " + "; ".join(details) + (" ..." if n_keys > SHOW_ROWS else ""))
    return [ctx.problem(", ".join(key_cols), positions, msg,
                        f"keep one row per {label}: remove the duplicates or add them up in the source extract",
                        "duplicate_key", values=values)]


# ---- references (foreign keys) -------------------------------------------------------------------

def _reference_values(ctxs: Mapping[str, _Ctx], table: str) -> pd.Index | None:
    ref = ctxs.get(table)
    if ref is None:
        return None
    key = ref.spec.key[0]
    if not ref.has(key):
        return None
    return pd.Index(ref.df[key].dropna().unique())


def _reference_problems(ctx: _Ctx, ctxs: Mapping[str, _Ctx]) -> list[Problem]:
    problems = []
    for col in ctx.spec.column_names:
        meta = ctx.spec.meta(col)
        ref_table = meta.get("references")
        if not ref_table or not ctx.has(col):
            continue
        known = _reference_values(ctxs, ref_table)
        if known is None:
            continue
        codes, uniques = ctx.factorize(col)
        allowed = known.append(pd.Index(list(meta.get("also_allowed", ())), dtype=known.dtype)) \
            if meta.get("also_allowed") else known
        unknown_u = ~np.asarray(pd.Index(uniques).isin(allowed), dtype=bool)
        if not unknown_u.any():
            continue
        bad = np.zeros(len(uniques) + 1, dtype=bool)
        bad[:-1] = unknown_u
        positions = np.flatnonzero(bad[codes])  # code -1 -> last slot (False)
        ref_file = ctxs[ref_table].file
        what = meta.get("kind", col).replace("_", " ")
        n_codes = int(unknown_u.sum())
        problems.append(ctx.problem(
            col, positions,
            f"{_n(n_codes, 'unknown ' + what)} (not in table '{ref_table}'), on {_n(len(positions), 'row')}",
            f"add the missing {what}s to '{ref_table}' ({Path(ref_file).name if ref_file else ref_table}) or "
            f"correct the codes here", "unknown_code",
            values=_samples(pd.Index(uniques)[unknown_u].tolist())))
    return problems


# ---- window -------------------------------------------------------------------------------------

def _window_problems(ctx: _Ctx, window: Window) -> list[Problem]:
    problems = []
    for col in ctx.spec.column_names:
        meta = ctx.spec.meta(col)
        if not meta.get("in_window") or not ctx.has(col):
            continue
        if meta["kind"] == "month":
            mi = ctx.month_index(col)
            outside = (mi >= 0) & ((mi < window.start_index) | (mi > window.end_index))
        else:
            codes, uniques = ctx.factorize(col)
            inside = np.append(pd.Index(uniques).isin(window.financial_years), True)
            outside = ~inside[codes]
        positions = np.flatnonzero(outside)
        if len(positions):
            unit = "months" if meta["kind"] == "month" else "financial years"
            span = str(window) if meta["kind"] == "month" else ", ".join(window.financial_years)
            problems.append(ctx.problem(
                col, positions, f"{_n(len(positions), 'row')} {_are(len(positions))} outside the analysis window ({span})",
                "remove rows outside the window from the extract, or widen the window (start_month/end_month in "
                f"the run config) if these {unit} belong to the analysis",
                "outside_window"))
    return problems


# ---- table-level rules ----------------------------------------------------------------------------

def _practice_index(ctx: _Ctx, ctxs: Mapping[str, _Ctx]) -> tuple[np.ndarray, pd.Index] | None:
    """Per row, the index of the practice in ``practices`` (-1 if unknown/missing), and the practice list."""
    known = _reference_values(ctxs, "practices")
    if known is None or not ctx.has("practice_code"):
        return None
    codes, uniques = ctx.factorize("practice_code")
    idx = np.append(known.get_indexer(pd.Index(uniques)), -1)
    return idx[codes], known


def _window_month(ctx: _Ctx, window: Window, col: str = "month") -> np.ndarray:
    mi = ctx.month_index(col)
    rel = mi - window.start_index
    return np.where((mi >= 0) & (rel >= 0) & (rel < window.n_months), rel, -1)


def _coverage_problems(ctx: _Ctx, ctxs: Mapping[str, _Ctx], window: Window, what: str) -> list[Problem]:
    """Every practice in ``practices`` has rows in every month of the window.

    Practices with a row whose month is missing or invalid (already reported) are not judged.
    """
    pi = _practice_index(ctx, ctxs)
    if pi is None or not ctx.has("month"):
        return []
    p, known = pi
    m = _window_month(ctx, window)
    ok = (p >= 0) & (m >= 0)
    n_m = window.n_months
    present = np.zeros(len(known) * n_m, dtype=bool)
    present[p[ok] * n_m + m[ok]] = True
    grid = present.reshape(len(known), n_m)
    missing = ~grid
    missing[np.unique(p[(p >= 0) & (ctx.month_index("month") < 0)])] = False
    if not missing.any():
        return []
    n_pm = int(missing.sum())
    prac = np.flatnonzero(missing.any(axis=1))
    months = window.months
    values, details = [], []
    for i in prac[:SHOW_ROWS]:
        ms = [months[j] for j in np.flatnonzero(missing[i])]
        values.extend((str(known[i]), mm) for mm in ms[:3])
        details.append(f"{known[i]}: " + (", ".join(ms[:6]) + (" ..." if len(ms) > 6 else "") if len(ms) < n_m
                                          else "no rows at all"))
    return [Problem(ctx.file, ctx.table, "month", [], values[:KEEP_VALUES],
                    f"{_n(n_pm, 'practice-month')} ({_n(len(prac), 'practice')}) {_have(n_pm)} no {ctx.table} rows "
                    f"in the window {window}: "
                    + "; ".join(details) + (" ..." if len(prac) > SHOW_ROWS else ""),
                    f"zero months must be explicit rows: add rows with {what} 0 for these practice-months "
                    "(or check the extract is complete)", n_rows=0, check="practice_month_missing")]


def _gap_problems(ctx: _Ctx, window: Window, series: Sequence[str], what: str) -> list[Problem]:
    """Each series (``series`` columns) runs without gaps from its first to its last month in the window."""
    if not ctx.has(*series, "month"):
        return []
    sid, valid = _key_codes(ctx, series)
    m = _window_month(ctx, window)
    unsure = np.unique(sid[valid & (ctx.month_index("month") < 0)])  # a row with a missing/invalid month
    valid &= m >= 0
    if not valid.any():
        return []
    n_m = window.n_months
    if int(sid.max()) >= 2 ** 62 // n_m:  # pragma: no cover - only with astronomically many codes
        sid = pd.factorize(sid)[0].astype(np.int64)
    key = _sorted_unique(sid[valid] * n_m + m[valid])  # distinct (series, month)
    s, mm = key // n_m, key % n_m
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    ends = np.r_[starts[1:], len(s)] - 1
    count = ends - starts + 1
    span = mm[ends] - mm[starts] + 1
    gappy = np.flatnonzero(span > count)
    if len(unsure):
        gappy = gappy[~np.isin(s[starts[gappy]], unsure)]
    if not len(gappy):
        return []
    bad_series = s[starts[gappy]]
    positions = np.flatnonzero(valid & np.isin(sid, bad_series))
    months = window.months
    values, details = [], []
    for g, b in zip(gappy[:SHOW_ROWS], bad_series[:SHOW_ROWS]):
        have = mm[starts[g]: ends[g] + 1]
        gaps = sorted(set(range(int(have.min()), int(have.max()) + 1)) - set(have.tolist()))
        first_row = int(positions[np.argmax(sid[positions] == b)])
        label = tuple(str(ctx.df[c].iloc[first_row]) for c in series)
        values.append(label)
        details.append(f"{_fmt_value(label)} has no rows for {', '.join(months[j] for j in gaps[:6])}"
                       + (" ..." if len(gaps) > 6 else "")
                       + f" (runs {months[int(have.min())]} to {months[int(have.max())]})")
    n = len(bad_series)
    return [ctx.problem(", ".join(series) + ", month", positions,
                        f"{_n(n, ctx.table + ' series', ctx.table + ' series')} ({', '.join(series)}) {_have(n)} "
                        f"gaps (months with no row between their first and last month); their rows: "
                        f"{len(positions):,}. " + "; ".join(details)
                        + (" ..." if n > SHOW_ROWS else ""),
                        f"zero months must be explicit rows: add the missing months with {what} 0"
                        + (" and cost 0" if ctx.table == "activity" else ""),
                        "series_gap", values=values)]


def _population_problems(ctx: _Ctx, ctxs: Mapping[str, _Ctx], window: Window) -> list[Problem]:
    pi = _practice_index(ctx, ctxs)
    if pi is None or not ctx.has("month", "age_band", "sex"):
        return []
    p, known = pi
    m = _window_month(ctx, window)
    band = _lookup(ctx, "age_band", AGE_BANDS)
    sex = _lookup(ctx, "sex", SEXES)
    ok = (p >= 0) & (m >= 0) & (band >= 0) & (sex >= 0)
    n_m, n_as = window.n_months, len(AGE_BANDS) * len(SEXES)
    n_p = len(known)
    pm = np.where((p >= 0) & (m >= 0), p * n_m + m, n_p * n_m)  # n_p * n_m: not a practice-month of the window
    cell = np.zeros(n_p * n_m * n_as, dtype=bool)
    cell[pm[ok] * n_as + band[ok] * len(SEXES) + sex[ok]] = True
    n_cells = cell.reshape(n_p * n_m, n_as).sum(axis=1)
    # not judged (the cause is already reported): practices with a row whose month is missing or invalid,
    # practice-months with a row whose age band or sex is missing or invalid
    unsure = np.zeros(n_p * n_m + 1, dtype=bool)
    unsure[:-1] = np.repeat(np.isin(np.arange(n_p), p[(p >= 0) & (ctx.month_index("month") < 0)]), n_m)
    unsure[pm[(band < 0) | (sex < 0)]] = True
    unsure = unsure[:-1]
    problems: list[Problem] = []
    months = window.months
    # practice-months with no rows at all
    none = np.flatnonzero((n_cells == 0) & ~unsure)
    if len(none):
        pairs = [(str(known[i // n_m]), months[i % n_m]) for i in none[:KEEP_VALUES]]
        n_prac = len(np.unique(none // n_m))
        problems.append(Problem(ctx.file, ctx.table, "month", [], pairs,
                                f"{_n(len(none), 'practice-month')} ({_n(n_prac, 'practice')}) {_have(len(none))} "
                                "no population rows: "
                                + ", ".join(f"{a} {b}" for a, b in pairs) + (" ..." if len(none) > KEEP_VALUES else ""),
                                "every practice needs its registered list (38 age-sex rows) for every month of the "
                                "window; add the missing months", n_rows=0, check="population_missing"))
    # practice-months with some but not all age-sex rows
    part = (n_cells > 0) & (n_cells < n_as) & ~unsure
    if part.any():
        bad_pm = np.append(part, False)
        positions = np.flatnonzero(bad_pm[pm])
        grid = cell.reshape(n_p * n_m, n_as)
        details, values = [], []
        labels = [f"{s} {b}" for b in AGE_BANDS for s in SEXES]
        for i in np.flatnonzero(part)[:SHOW_ROWS]:
            miss = [labels[j] for j in np.flatnonzero(~grid[i])]
            values.append((str(known[i // n_m]), months[i % n_m]))
            details.append(f"{known[i // n_m]} {months[i % n_m]}: {n_cells[i]} of {n_as} rows (missing "
                           + ", ".join(miss[:5]) + (" ..." if len(miss) > 5 else "") + ")")
        problems.append(ctx.problem(
            "age_band, sex", positions,
            f"{_n(int(part.sum()), 'practice-month')} {_have(int(part.sum()))} incomplete age-sex rows: "
            + "; ".join(details) + (" ..." if part.sum() > SHOW_ROWS else ""),
            f"every practice-month needs all {n_as} rows (19 age bands x F/M), with 0 where nobody is registered",
            "population_incomplete", values=values))
    # zero list size
    if ctx.has("registered"):
        reg = ctx.df["registered"].to_numpy(dtype=float, na_value=np.nan)
        okr = ok & ~np.isnan(reg)
        total = np.bincount(pm[okr], weights=reg[okr], minlength=n_p * n_m + 1)[:-1]
        no_reg = np.bincount(pm[np.isnan(reg)], minlength=n_p * n_m + 1)[:-1] > 0
        zero = (total == 0) & (n_cells > 0) & ~no_reg
        if zero.any():
            bad_pm = np.append(zero, False)
            positions = np.flatnonzero(bad_pm[pm] & ok)
            pairs = [(str(known[i // n_m]), months[i % n_m]) for i in np.flatnonzero(zero)[:KEEP_VALUES]]
            problems.append(ctx.problem(
                "registered", positions,
                f"{_n(int(zero.sum()), 'practice-month')} {_have(int(zero.sum()))} a total registered list of 0 "
                "(a rate needs a denominator): "
                + ", ".join(f"{a} {b}" for a, b in pairs) + (" ..." if zero.sum() > KEEP_VALUES else ""),
                "give the practice's registered list for these months; if the practice had closed, remove it "
                "from all tables for those months", "zero_list", values=pairs))
    return problems


def _lookup(ctx: _Ctx, col: str, vocabulary: Sequence[str]) -> np.ndarray:
    """Per row, the index of the value in ``vocabulary`` (-1 if missing or not in it)."""
    codes, uniques = ctx.factorize(col)
    idx = np.append(pd.Index(vocabulary).get_indexer(pd.Index(uniques)), -1)
    return idx[codes]


def _ae_mismatch(ctx: _Ctx, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Rows breaking 'specialty 180 exactly when ``kind`` (pod or measure) is ae', and the rows where
    both values are valid (the rule is not judged on cells already reported as invalid)."""
    sc, su = ctx.factorize("specialty_code")
    kc, ku = ctx.factorize(kind)
    is180 = np.append(np.asarray(pd.Index(su) == AE_SPECIALTY, dtype=bool), False)[sc]
    isae = np.append(np.asarray(pd.Index(ku) == AE_POD, dtype=bool), False)[kc]
    valid = (sc >= 0) & (kc >= 0)
    return np.flatnonzero(valid & (is180 != isae)), valid


def _activity_problems(ctx: _Ctx, ctxs: Mapping[str, _Ctx], window: Window) -> list[Problem]:
    problems: list[Problem] = []
    df = ctx.df
    # specialty 180 exactly when pod is ae
    if ctx.has("specialty_code", "pod"):
        positions, _ = _ae_mismatch(ctx, "pod")
        if len(positions):
            values = _samples(zip(df["specialty_code"].iloc[positions[:1000]], df["pod"].iloc[positions[:1000]]))
            problems.append(ctx.problem(
                "specialty_code, pod", positions,
                f"{_n(len(positions), 'row')} break{'s' if len(positions) == 1 else ''} the rule 'specialty 180 "
                "exactly when pod is ae' (values are (specialty_code, pod))",
                "A&E attendances have pod 'ae' and specialty 180; other points of delivery never use 180",
                "ae_specialty", values=values))
    if ctx.has("activity", "cost"):
        act = df["activity"].to_numpy(dtype=float, na_value=np.nan)
        cost = df["cost"].to_numpy(dtype=float, na_value=np.nan)
        positions = np.flatnonzero((act == 0) & (cost > 0))
        if len(positions):
            values = _samples(zip(act[positions[:1000]].astype(np.int64).tolist(), cost[positions[:1000]].tolist()))
            problems.append(ctx.problem(
                "cost", positions, f"{_n(len(positions), 'row')} {_have(len(positions))} cost > 0 with activity 0 "
                "(values are (activity, cost))",
                "cost must be 0 when there is no activity: correct the activity count or the cost",
                "cost_without_activity", values=values))
    # prices
    tariff = ctxs.get("tariff")
    if tariff is not None and ctx.has("specialty_code", "pod", "month", "activity") and \
            tariff.has("specialty_code", "pod", "financial_year"):
        act = df["activity"].to_numpy(dtype=float, na_value=np.nan)
        sc, su = ctx.factorize("specialty_code")
        pcodes, pu = ctx.factorize("pod")
        mi = ctx.month_index("month")
        need = (act > 0) & (sc >= 0) & (pcodes >= 0) & (mi >= 0)
        if need.any():
            fy_start = np.where(need, (mi - 3) // 12, 0)
            y0 = int(fy_start[need].min())
            fy_idx = fy_start - y0
            n_fy = int(fy_idx[need].max()) + 1
            combo = _combine([(np.maximum(sc, 0), len(su)), (np.maximum(pcodes, 0), len(pu)), (fy_idx, n_fy)])
            used = np.flatnonzero(np.bincount(combo[need]))
            spec_u = used // (len(pu) * n_fy)
            pod_u = (used // n_fy) % len(pu)
            fy_u = used % n_fy + y0
            fy_label = pd.Series(fy_u).map(financial_year_label)
            want = pd.DataFrame({"specialty_code": pd.Index(su)[spec_u].astype(str),
                                 "pod": pd.Index(pu)[pod_u].astype(str), "financial_year": fy_label.to_numpy()})
            t = tariff.df
            tk = pd.MultiIndex.from_frame(t[["specialty_code", "pod", "financial_year"]].dropna().astype(str))
            priced = pd.MultiIndex.from_frame(want).isin(tk)
            if not priced.all():
                missing_combo = used[~priced]
                positions = np.flatnonzero(need & np.isin(combo, missing_combo))
                miss = want[~priced]
                values = list(miss.itertuples(index=False, name=None))
                problems.append(ctx.problem(
                    "specialty_code, pod, month", positions,
                    f"no tariff price for {_n(len(miss), '(specialty, pod, financial year) combination')} with "
                    f"activity > 0 ({_n(len(positions), 'row')}): "
                    + ", ".join(f"specialty {a}, pod {b}, {c}" for a, b, c in values[:SHOW_ROWS])
                    + (" ..." if len(values) > SHOW_ROWS else ""),
                    f"add these prices to table 'tariff' ({Path(tariff.file).name if tariff.file else 'tariff'})",
                    "missing_price", values=values[:KEEP_VALUES]))
    return problems


def _engagement_problems(ctx: _Ctx, ctxs: Mapping[str, _Ctx], window: Window) -> list[Problem]:
    known = _reference_values(ctxs, "practices")
    if known is None or not ctx.has("practice_code"):
        return []
    listed = pd.Index(ctx.df["practice_code"].dropna().unique())
    missing = known[~known.isin(listed)]
    if not len(missing):
        return []
    return [Problem(ctx.file, ctx.table, "practice_code", [], _samples(missing.tolist()),
                    f"{_n(len(missing), 'practice')} in 'practices' {_have(len(missing))} no engagement row: "
                    + ", ".join(map(str, missing[:SHOW_ROWS])) + (" ..." if len(missing) > SHOW_ROWS else ""),
                    "add one row per practice; leave engaged_from empty for practices that never engaged",
                    n_rows=0, check="engagement_missing")]


def _reference_rate_problems(ctx: _Ctx, ctxs: Mapping[str, _Ctx], window: Window) -> list[Problem]:
    if not ctx.has("measure", "specialty_code", "age_band", "sex"):
        return []
    problems: list[Problem] = []
    df = ctx.df
    positions, valid = _ae_mismatch(ctx, "measure")
    sc, su = ctx.factorize("specialty_code")
    meas = _lookup(ctx, "measure", MEASURES)
    if len(positions):
        values = _samples(zip(df["measure"].iloc[positions[:1000]], df["specialty_code"].iloc[positions[:1000]]))
        problems.append(ctx.problem(
            "measure, specialty_code", positions,
            f"{_n(len(positions), 'row')} break{'s' if len(positions) == 1 else ''} the rule 'specialty 180 exactly "
            "when measure is ae' (values are (measure, specialty_code))",
            "A&E rates have measure 'ae' and specialty 180; referrals and other points of delivery never use 180",
            "ae_specialty", values=values))
    band = _lookup(ctx, "age_band", AGE_BANDS)
    sex = _lookup(ctx, "sex", SEXES)
    ok = valid & (band >= 0) & (sex >= 0)
    if ok.any():
        n_as = len(AGE_BANDS) * len(SEXES)
        series = meas[ok].astype(np.int64) * (len(su) + 1) + sc[ok]
        uniq, inv = np.unique(series, return_inverse=True)
        cells = np.unique(inv * n_as + band[ok] * len(SEXES) + sex[ok])
        n_cells = np.bincount(cells // n_as, minlength=len(uniq))
        short = np.flatnonzero(n_cells < n_as)
        if len(short):
            pairs = [(MEASURES[int(uniq[i] // (len(su) + 1))], str(su[int(uniq[i] % (len(su) + 1))])) for i in short]
            bad = np.isin(inv, short)
            problems.append(ctx.problem(
                "age_band, sex", np.flatnonzero(ok)[bad],
                f"{_n(len(short), '(measure, specialty)')} {_have(len(short))} fewer than {n_as} age-sex rows: "
                + ", ".join(f"{m} {s_}" for m, s_ in pairs[:SHOW_ROWS]) + (" ..." if len(short) > SHOW_ROWS else ""),
                f"give a rate for all {n_as} age-sex cells (19 age bands x F/M) of each measure and specialty, "
                "0 where there are no events", "reference_rates_incomplete", values=pairs[:KEEP_VALUES]))
    return problems


_TABLE_RULES: dict[str, Callable[[_Ctx, Mapping[str, _Ctx], Window], list[Problem]]] = {
    "population": _population_problems,
    "activity": lambda c, cs, w: (_activity_problems(c, cs, w)
                                  + _gap_problems(c, w, TABLES["activity"].key[:-1], "activity")
                                  + _coverage_problems(c, cs, w, "activity")),
    "referrals": lambda c, cs, w: (_gap_problems(c, w, TABLES["referrals"].key[:-1], "referrals")
                                   + _coverage_problems(c, cs, w, "referrals")),
    "engagement": _engagement_problems,
    "reference_rates": _reference_rate_problems,
}


def _validate(ctxs: dict[str, _Ctx], window: Window) -> list[Problem]:
    problems: list[Problem] = []
    for table in TABLES:  # element-wise (pandera) first: later checks skip invalid cells
        ctx = ctxs.get(table)
        if ctx is None:
            continue
        cols = [c for c in ctx.spec.column_names if c in ctx.df.columns]
        if ctx.check_dtype:  # frames from a caller; files had their header checked when read
            problems += _column_set_problems(ctx.file, table, ctx.spec, list(map(str, ctx.df.columns)))
        for c in cols:
            problems += _pandera_problems(ctx, c)
    for table in TABLES:
        ctx = ctxs.get(table)
        if ctx is None:
            continue
        problems += _key_problems(ctx)
        problems += _reference_problems(ctx, ctxs)
        problems += _window_problems(ctx, window)
        rule = _TABLE_RULES.get(table)
        if rule is not None:
            problems += rule(ctx, ctxs, window)
    return problems


def _missing_table_problem(table: str, data_dir: Path | None) -> Problem:
    names = ", ".join(TABLES[table].file_names)
    near = _near_misses(data_dir, table)
    hint = f" (found {', '.join(near)}, which is not a supported name/format)" if near else ""
    where = f" in {data_dir}" if data_dir is not None else ""
    into = f" to {data_dir}" if data_dir is not None else " to the data directory"
    fix = (f"rename {', '.join(near)} to {table}.csv (save spreadsheets as 'CSV UTF-8 (Comma delimited)') or "
           f"{table}.parquet" if near else f"add the file{into}, named exactly {TABLES[table].file_names[0]} "
           f"(or {' or '.join(TABLES[table].file_names[1:])})")
    return Problem(str(data_dir) if data_dir is not None else "", table, None, [], near,
                   f"required table '{table}' is missing: expected one of {names}{where}{hint}",
                   f"{fix}; see docs/data_dictionary.md, table '{table}'", check="missing_table")


def validate(tables: Mapping[str, pd.DataFrame], window: Window, files: Mapping[str, Path] | None = None) -> None:
    """Check every rule of the data dictionary on loaded ``tables``; raise :class:`DataValidationError`
    listing every problem. ``files`` (``{table: path}``) only labels the problems."""
    files = dict(files or {})
    problems: list[Problem] = []
    unknown = [t for t in tables if t not in TABLES]
    for t in unknown:
        problems.append(Problem(str(files.get(t, "")), t, None, [], [], f"unknown table '{t}'",
                                f"tables are {', '.join(TABLES)}", check="unknown_table"))
    for t in REQUIRED_TABLES:
        if tables.get(t) is None:
            problems.append(_missing_table_problem(t, None))
    ctxs = {t: _Ctx(t, df, str(files.get(t, "")), check_dtype=True)
            for t, df in tables.items() if t in TABLES and df is not None}
    problems += _validate(ctxs, window)
    if problems:
        raise DataValidationError(_in_table_order(problems))


def _in_table_order(problems: list[Problem]) -> list[Problem]:
    """Problems grouped by table (in :data:`TABLES` order), keeping the order of checks within a table."""
    order = {t: i for i, t in enumerate(TABLES)}
    return sorted(problems, key=lambda p: order.get(p.table, -1))


def load_inputs(data_dir: str | Path | None = None, start_month: str | None = None, end_month: str | None = None,
                paths: Mapping[str, str | Path] | None = None) -> Inputs:
    """Find, read and validate every table; return :class:`Inputs` or raise :class:`DataValidationError`.

    ``data_dir`` holds one file per table (``<table>.csv``, ``.csv.gz`` or ``.parquet``); ``paths``
    (``{table: path}``) overrides or supplies single tables. Without either, the embedded sample
    (``data/sample``) is used. Relative paths are taken from the project root. The analysis window is
    ``start_month`` to ``end_month`` (``YYYY-MM``, inclusive).
    """
    if start_month is None or end_month is None:
        raise ValueError("load_inputs needs start_month and end_month ('YYYY-MM')")
    window = Window(str(start_month), str(end_month))
    ctxs, files, problems = _load_contexts(data_dir, window, paths)
    if problems:
        raise DataValidationError(_in_table_order(problems))
    return _inputs(ctxs, files, window)


def _inputs(ctxs: Mapping[str, _Ctx], files: Mapping[str, Path], window: Window) -> Inputs:
    """:class:`Inputs` of validated contexts (their factorisations kept for the analyses)."""
    factors = {(t, c): v for t, ctx in ctxs.items() for c, v in ctx._raw.items()}
    return Inputs(**{t: (ctxs[t].df if t in ctxs else None) for t in TABLES},
                  files={t: files[t] for t in TABLES if t in files}, window=window, factors=factors)


def _load_contexts(data_dir: str | Path | None, window: Window, paths: Mapping[str, str | Path] | None
                   ) -> tuple[dict[str, _Ctx], dict[str, Path], list[Problem]]:
    """Find, read and validate every table: ``(contexts of the tables read, {table: file}, problems)``.

    The contexts hold each frame with its row numbering and the cells found invalid, so that later
    checks (:mod:`pbc_analysis.data.plausibility`) can run on the same frames and report rows alike.
    """
    overrides = dict(paths or {})
    problems: list[Problem] = []
    files: dict[str, Path] = {}
    root: Path | None = None
    if data_dir is None and not overrides:
        data_dir = _paths.SAMPLE_DIR
    if data_dir is not None:
        found, probs, root = _find_table_files(data_dir)
        files.update(found)
        problems += probs
    for t, p in overrides.items():
        if t not in TABLES:
            problems.append(Problem(str(p), t, None, [], [], f"paths names unknown table '{t}'",
                                    f"tables are {', '.join(TABLES)}", check="unknown_table"))
            continue
        bad = _entry_problem(_paths.resolve(p), None, t) if _paths.resolve(p).exists() or \
            _paths.resolve(p).is_symlink() else None
        if bad is not None:
            problems.append(bad)
            files.pop(t, None)
            continue
        files[t] = _paths.resolve(p)
    if root is None or root.is_dir():
        dup_tables = {pr.table for pr in problems if pr.check in _BLOCKING}
        for t in REQUIRED_TABLES:
            if t not in files and t not in dup_tables:
                problems.append(_missing_table_problem(t, root))
    ctxs: dict[str, _Ctx] = {}
    for t in TABLES:
        if t not in files:
            continue
        loaded = _read(files[t], t)
        problems += loaded.problems
        if loaded.df is not None:
            ctxs[t] = _Ctx(t, loaded.df, str(files[t]), loaded.rowmap, check_dtype=False, excluded=loaded.excluded)
    problems += _validate(ctxs, window)
    return ctxs, files, problems

