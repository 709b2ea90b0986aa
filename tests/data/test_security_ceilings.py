"""Issue 12, plausibility: every money and rate column has a ceiling, every count column a ceiling.

A hostile tester passed ``high_cost_patients.cost = 1e300`` (it reached the risk pool as 1.1e300),
``budgets.budget = 1e18`` and ``reference_rates.rate = 1e9`` through validation. These tests plant such
values in a copy of the embedded sample (``data/sample``) and call
:func:`pbc_analysis.data.plausibility.validate_run_inputs`, which ``pbc run`` calls before any notebook starts:
the run is refused with the file, table, column, rows and value, and passes when the rule is accepted.
Thresholds are checked on the sample itself (a ceiling just below its maximum flags exactly the rows
above it), so most tests need no copy of the data.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pbc_analysis.core import paths
from pbc_analysis.data import TABLES, DataValidationError, Problem
from pbc_analysis.data.plausibility import (
    COLUMN_CEILINGS,
    RULES,
    PlausibilitySettings,
    check_plausibility,
    parse_settings,
    validate_run_inputs,
)

START, END = "2003-04", "2008-03"
SAMPLE = paths.SAMPLE_DIR
DEFAULTS = {"max_tariff_price": 250_000.0, "max_patient_cost": 5_000_000.0, "max_budget": 2_000_000_000.0,
            "max_reference_rate": 5_000.0}


def rows_line(rows: list[int]) -> str:
    shown = ", ".join(map(str, rows[:10]))
    n = len(rows)
    return f"rows: {shown}, ... ({n:,} rows in total)" if n > 10 else \
        f"rows: {shown} ({n} row{'s' if n != 1 else ''} in total)"


def plant_csv(d: Path, table: str, column: str, rows: list[int], value: str) -> list[int]:
    """Write ``value`` (as text) into ``column`` of 0-based ``rows`` of ``d/<table>.csv``; every other cell
    is kept as written. Returns the 1-based data rows (the header is row 0)."""
    path = d / f"{table}.csv"
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df.loc[rows, column] = value
    df.to_csv(path, index=False)
    return [r + 1 for r in rows]


#: rule: (table, column, rows planted (0-based), value planted, what the message says of the value)
PLANTS: dict[str, tuple[str, str, list[int], str, str]] = {
    "patient_cost_ceiling": ("high_cost_patients", "cost", [3], "1e300",
                             ("a patient's annual hospital cost above the ceiling of GBP 5,000,000.00, "
                              "up to GBP 1e+300")),
    "budget_ceiling": ("budgets", "budget", [5, 9], "1e18",
                       "an indicative budget above the ceiling of GBP 2,000,000,000.00, up to GBP 1e+18"),
    "reference_rate_ceiling": ("reference_rates", "rate", [0, 40, 41], "1e9",
                               ("a reference rate above the ceiling of 5,000.0 per 1,000 patients a year, "
                                "up to 1,000,000,000.0 per 1,000 patients a year")),
    "tariff_price_ceiling": ("tariff", "price", [2], "3000000",
                             "a tariff price per unit above the ceiling of GBP 250,000.00, up to GBP 3,000,000.00"),
}
PRINTED = {"1e300": "1e+300", "1e18": "1e+18", "1e9": "1000000000.0", "3000000": "3000000.0"}


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    shutil.copytree(SAMPLE, d)
    return d


def refused(d: Path, settings: PlausibilitySettings | None = None) -> list[Problem]:
    with pytest.raises(DataValidationError) as info:
        validate_run_inputs(d, START, END, settings)
    return info.value.problems


# --------------------------------------------------------------------------------------------------
# Every column is covered
# --------------------------------------------------------------------------------------------------

def test_every_money_rate_and_count_column_has_a_ceiling() -> None:
    covered = {(t, c) for t, c, _ in COLUMN_CEILINGS.values()}
    for table, spec in TABLES.items():
        for col, dtype in spec.dtypes.items():
            kind = spec.meta(col).get("kind")
            if dtype == "float64":
                bounded = any(ch.name == "in_range" for ch in spec.columns[col].checks)
                by_unit_cost = (table, col) == ("activity", "cost")     # unit_cost_ceiling: cost / activity
                assert (table, col) in covered or bounded or by_unit_cost, (table, col, kind)
            elif dtype == "int64":
                assert kind == "count", (table, col)                    # count_ceiling judges every count
    assert covered == {("tariff", "price"), ("high_cost_patients", "cost"), ("budgets", "budget"),
                       ("reference_rates", "rate")}
    fields = {f.name for f in dataclasses.fields(PlausibilitySettings)}
    for rule, (_, _, setting) in COLUMN_CEILINGS.items():
        assert rule in RULES and setting in fields and setting in RULES[rule]
        assert PlausibilitySettings().to_dict()[setting] == DEFAULTS[setting]


def test_docs_list_every_rule_and_setting_with_its_default() -> None:
    doc = (paths.PROJECT_ROOT / "docs" / "data_dictionary.md").read_text(encoding="utf-8")
    section = doc.split("## Plausibility checks", 1)[1]
    for rule, (_, _, setting) in COLUMN_CEILINGS.items():
        assert re.search(rf"^\| {rule} \|.*\| `{setting}` \({DEFAULTS[setting]:.0f}\) \|$", section, re.MULTILINE), rule
        assert f"  {setting}: {DEFAULTS[setting]:.0f} " in section, setting


# --------------------------------------------------------------------------------------------------
# The sample passes; each ceiling is a setting that flags exactly the rows above it
# --------------------------------------------------------------------------------------------------

def test_sample_passes_with_defaults() -> None:
    summary = validate_run_inputs(SAMPLE, START, END)
    assert summary["accepted_exceptions"] == []
    assert {k: summary["settings"][k] for k in DEFAULTS} == DEFAULTS


def sample_column(table: str, column: str) -> np.ndarray:
    return pd.read_csv(SAMPLE / f"{table}.csv")[column].to_numpy(dtype=float)


def test_each_ceiling_is_a_setting_flagging_exactly_the_rows_above_it() -> None:
    lowered, expected = {}, {}
    for rule, (table, column, setting) in COLUMN_CEILINGS.items():
        values = sample_column(table, column)
        assert values.max() < DEFAULTS[setting] / 5           # the defaults are far above the sample
        limit = float(np.quantile(values, 0.99))             # about 1% of the rows lie above
        lowered[setting] = limit
        expected[rule] = (table, column, (np.flatnonzero(values > limit) + 1).tolist(), values.max())
    problems = refused(SAMPLE, PlausibilitySettings(**lowered))
    flagged = {p.check: p for p in problems}
    assert set(flagged) == set(COLUMN_CEILINGS), [str(p) for p in problems]
    for rule, (table, column, rows, top) in expected.items():
        p = flagged[rule]
        assert (p.table, p.column, str(p.file)) == (table, column, str(SAMPLE / f"{table}.csv"))
        assert p.n_rows == len(rows) > 0 and p.rows == rows[:len(p.rows)]
        assert rows_line(rows) in str(p) and f"accept: [{rule}]" in p.fix
        assert f"{top:,.1f}" in p.message or f"{top:,.2f}" in p.message       # "up to" the largest value
    # the same lowered ceilings pass when the rules are accepted, and the exceptions are listed
    accept = tuple(COLUMN_CEILINGS)
    summary = validate_run_inputs(SAMPLE, START, END, PlausibilitySettings(**lowered, accept=accept))
    listed = {e["rule"]: e for e in summary["accepted_exceptions"]}
    for rule, (table, column, rows, _) in expected.items():
        assert listed[rule] == {"rule": rule, "table": table, "column": column, "rows": len(rows),
                                "reason": RULES[rule]}


def test_count_ceiling_judges_every_count_column() -> None:
    from pbc_analysis.data import Window, _load_contexts

    window = Window(START, END)
    ctxs, _, problems = _load_contexts(SAMPLE, window, None)
    assert problems == []
    counts = {(t, c) for t, s in TABLES.items() for c in s.column_names if s.meta(c).get("kind") == "count"}
    assert counts == {("population", "registered"), ("activity", "activity"), ("referrals", "referrals")}
    lowest_max = min(float(ctxs[t].df[c].max()) for t, c in counts)
    flagged = {(p.table, p.column) for p in check_plausibility(ctxs, window, PlausibilitySettings(
        max_count=int(lowest_max) - 1)) if p.check == "count_ceiling"}
    assert flagged == counts


# --------------------------------------------------------------------------------------------------
# The hostile values: refused with table, column, rows and value; passed when accepted
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rule", list(PLANTS))
def test_planted_absurd_value_is_refused_and_can_be_accepted(rule: str, data: Path) -> None:
    table, column, positions, value, says = PLANTS[rule]
    rows = plant_csv(data, table, column, positions, value)
    problems = refused(data)
    [p] = [p for p in problems if p.check == rule]
    text = str(p)
    assert text.startswith(f"{data / f'{table}.csv'} [table {table}], column '{column}': ")
    assert f"{len(rows)} row{'s' if len(rows) > 1 else ''} ha{'ve' if len(rows) > 1 else 's'} {says}" in text
    assert rows_line(rows) in text and p.rows == rows and p.n_rows == len(rows)
    assert f"{PRINTED[value]})" in text.split("    values: ")[1].splitlines()[0]   # the value, per row
    assert f"validation: {{accept: [{rule}]}}" in p.fix
    if table == "high_cost_patients":                              # rows are named, patients are not
        ids = pd.read_csv(data / "high_cost_patients.csv", dtype=str)["patient_id"].iloc[positions]
        assert not any(i in text for i in ids)
    # accepted (with any other rule the plant sets off, e.g. a tariff price 600 times the costs), it passes
    fired = tuple(sorted({q.check for q in problems}))
    assert rule in fired and set(fired) <= set(RULES)
    summary = validate_run_inputs(data, START, END, PlausibilitySettings(accept=fired))
    [exc] = [e for e in summary["accepted_exceptions"] if e["rule"] == rule]
    assert exc == {"rule": rule, "table": table, "column": column, "rows": len(rows), "reason": RULES[rule]}


def test_all_absurd_values_are_listed_at_once(data: Path) -> None:
    planted: dict[str, list[int]] = {}
    for rule, (table, column, positions, value, _) in PLANTS.items():
        if rule != "tariff_price_ceiling":                         # the others touch no other rule
            planted[rule] = plant_csv(data, table, column, positions, value)
    problems = refused(data)
    assert {p.check: p.rows for p in problems} == planted


def test_a_raised_ceiling_lets_a_real_outlier_through(data: Path) -> None:
    rows = plant_csv(data, "high_cost_patients", "cost", [7], "6500000")
    problems = refused(data)
    assert [(p.check, p.rows) for p in problems] == [("patient_cost_ceiling", rows)]
    settings, errors = parse_settings({"max_patient_cost": 7_000_000}, "run.yaml")
    assert errors == [] and settings.max_patient_cost == 7_000_000.0
    assert validate_run_inputs(data, START, END, settings)["accepted_exceptions"] == []


# --------------------------------------------------------------------------------------------------
# The settings in a config's validation: section
# --------------------------------------------------------------------------------------------------

def test_parse_settings_reads_the_new_ceilings() -> None:
    raw = {"max_tariff_price": 300000, "max_patient_cost": 2.5e6, "max_budget": 5e8, "max_reference_rate": 8000,
           "accept": ["budget_ceiling", "reference_rate_ceiling"]}
    settings, problems = parse_settings(raw, "run.yaml")
    assert problems == []
    assert settings == PlausibilitySettings(max_tariff_price=300000.0, max_patient_cost=2.5e6, max_budget=5e8,
                                            max_reference_rate=8000.0,
                                            accept=("budget_ceiling", "reference_rate_ceiling"))
    assert all(isinstance(getattr(settings, k), float) for k in DEFAULTS)
    assert settings.to_dict()["max_budget"] == 5e8
    assert parse_settings(["accept"], "run.yaml")[1] == [(
        "run.yaml: 'validation' must be a mapping with keys ['max_cost_ratio', 'max_unit_cost', "
        "'max_population_change', 'max_count', 'max_tariff_price', 'max_patient_cost', 'max_budget', "
        "'max_reference_rate', 'activity_rate', 'accept'], got list ['accept']")]


BAD: list[tuple[object, str]] = [
    (0, "int 0"), (-5.0, "float -5.0"), ("1e6", "str '1e6'"), (True, "bool True"), ([1000], "list [1000]"),
    (float("nan"), "float nan"), (float("inf"), "float inf"), (None, "NoneType None"),
]


@pytest.mark.parametrize("key", list(DEFAULTS))
def test_parse_settings_refuses_a_bad_ceiling(key: str) -> None:
    for value, shown in BAD:
        settings, problems = parse_settings({key: value}, "run.yaml")
        assert problems == [f"run.yaml: validation.{key} must be a number > 0, got {shown}"], value
        assert getattr(settings, key) == DEFAULTS[key]             # a bad key keeps its default
    # every bad key at once, and a misspelt one with a suggestion
    settings, problems = parse_settings({**{k: -1 for k in DEFAULTS}, key + "s": 1}, "run.yaml")
    assert len(problems) == len(DEFAULTS) + 1
    assert f"unknown key validation.{key}s (did you mean '{key}'?)" in problems[-1]
    assert settings == PlausibilitySettings()


def test_the_new_rules_can_be_accepted_by_name() -> None:
    settings, problems = parse_settings({"accept": list(COLUMN_CEILINGS)}, "run.yaml")
    assert problems == [] and settings.accept == tuple(COLUMN_CEILINGS)
    _, problems = parse_settings({"accept": ["budget_ceilings"]}, "run.yaml")
    assert problems == [("run.yaml: validation.accept names 'budget_ceilings', which is not a rule (did you mean "
                         f"'budget_ceiling'?); rules are {list(RULES)}")]
