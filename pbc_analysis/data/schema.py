"""The input data model: vocabularies, code patterns and the pandera schema of every table.

The schemas in :data:`TABLES` are the single source of truth for the input tables; the data dictionary
(``docs/data_dictionary.md``) documents them. Each :class:`TableSpec` holds a table's pandera schema
(columns, dtypes, element-wise rules, key) and the wording of its table-level rules (checked in
:mod:`pbc_analysis.data.rules`). Months and financial years follow :mod:`pbc_analysis.core.calendar`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pandera.pandas as pa

from pbc_analysis.core import calendar

PODS: tuple[str, ...] = ("first_op", "followup_op", "elective", "non_elective", "ae")
AE_POD = "ae"
AE_SPECIALTY = "180"
AGE_BANDS: tuple[str, ...] = tuple(f"{a}-{a + 4}" for a in range(0, 90, 5)) + ("90+",)
SEXES: tuple[str, ...] = ("F", "M")
#: what a reference rate counts: GP referrals or activity at one point of delivery
MEASURES: tuple[str, ...] = ("referrals",) + PODS
ALL = "all"

MONTH_PATTERN = calendar.MONTH_PATTERN
FY_PATTERN = calendar.FY_PATTERN
PRACTICE_PATTERN = r"^[A-Z][0-9]{5}$"
PROVIDER_PATTERN = r"^[A-Z0-9]{3,5}$"
SPECIALTY_PATTERN = r"^[0-9]{3}$"
COMMISSIONER_PATTERN = r"^[A-Z0-9]{3,5}$"

SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz", ".parquet")

#: the large monthly tables, whose text columns load as pandas ``Categorical`` (categories sorted and ordered, ``str``
#: dtype; integer codes of the narrowest width) rather than ``str``: at national size (84 million rows)
#: strings would take about 170 bytes a row, codes a few (:mod:`pbc_analysis.data.read`)
CATEGORICAL_TABLES: tuple[str, ...] = ("population", "activity", "referrals")


def _valid_fy(s: pd.Series) -> pd.Series:
    """Per cell, whether it is a financial year ``YYYY/YY`` with consecutive years (``2005/06``), as
    :func:`pbc_analysis.core.calendar.is_financial_year` judges its distinct values (missing: False)."""
    codes, uniques = pd.factorize(s)
    ok = np.array([calendar.is_financial_year(u) for u in uniques] + [False], dtype=bool)
    return pd.Series(ok[codes], index=s.index, dtype=bool)


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
    def categorical(self) -> bool:
        """Whether the text columns load as pandas ``Categorical`` (:data:`CATEGORICAL_TABLES`)."""
        return self.name in CATEGORICAL_TABLES

    @property
    def columns(self) -> dict[str, pa.Column]:
        """``{column: pandera Column}`` in data-dictionary order."""
        return dict(self.schema.columns)

    @property
    def column_names(self) -> list[str]:
        """The column names in data-dictionary order."""
        return list(self.schema.columns)

    @property
    def key(self) -> tuple[str, ...]:
        """The columns whose values are unique together (empty: no key)."""
        return tuple(self.schema.unique or ())

    @property
    def dtypes(self) -> dict[str, str]:
        """``{column: "str" | "int64" | "float64" | "bool"}`` after loading."""
        return {name: _dtype_name(col) for name, col in self.schema.columns.items()}

    @property
    def file_names(self) -> tuple[str, ...]:
        """The file names the table may have in a data directory (``<table>.csv``, ``.csv.gz``, ``.parquet``)."""
        return tuple(self.name + s for s in SUFFIXES)

    def meta(self, column: str) -> dict[str, Any]:
        """The metadata of ``column`` (``kind``, ``references``, ``also_allowed``, ``in_window``)."""
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
               "zeros may be implicit: a missing (practice, provider, specialty, pod, month) row means 0",
               "activity > 0 needs a tariff price for its specialty, pod and financial year")),
    _spec("referrals", True, {
        "practice_code": _practice("referring practice"),
        "provider_code": _provider("provider referred to"),
        "specialty_code": _specialty(not_ae=True),
        "month": _month("month the referral was made"),
        "referrals": _count("GP referrals"),
    }, ["practice_code", "provider_code", "specialty_code", "month"],
        "GP referrals by practice, provider, specialty and month",
        rules=("zeros may be implicit: a missing (practice, provider, specialty, month) row means 0",)),
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
    _spec("commissioners", False, {
        "practice_code": _practice(),
        "commissioner_code": _col(str, [pa.Check.str_matches(COMMISSIONER_PATTERN)], kind="commissioner_code",
                                  description="commissioner (PCT or sub-ICB) identifier (ODS)"),
        "commissioner_name": _text("name"),
    }, ["practice_code"],
        "practices grouped into commissioners (PCTs or sub-ICBs) for a national run (pbc run with partition: "
        "commissioner); made by pbc synth --national and by pbc ingest from the practice reference",
        rules=("one row per practice in practices when present",)),
]}

REQUIRED_TABLES: tuple[str, ...] = tuple(n for n, s in TABLES.items() if s.required)
OPTIONAL_TABLES: tuple[str, ...] = tuple(n for n, s in TABLES.items() if not s.required)
