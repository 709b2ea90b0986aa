"""core.params, core.checks and core.calendar: the one typed source of settings and the one calendar."""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np
import pytest

from pbc_analysis.core import calendar
from pbc_analysis.core.checks import ArgumentError, check_choice, check_number, choices_of
from pbc_analysis.core.params import AUTO, StageParams, describe_settings, setting

Control = Literal["never", "not_yet"]


@dataclasses.dataclass(frozen=True)
class Toy(StageParams):
    STAGE = "toy"
    control_group: str = setting("not_yet", "comparison practices", choices=Control)
    periods: int = setting(3, "months per period", low=1, high=12)
    level: float = setting(0.95, "confidence", low=0.0, high=1.0, low_open=True, high_open=True)
    window: list[str] | str = setting(AUTO, "baseline window", kind="window", derive="start to the month before the first engagement")
    year: str = setting(AUTO, "base year", kind="financial_year", derive="last full year before the first engagement")
    uplift: float | None = setting(None, "tariff uplift")
    shared_level: float = setting(0.95, "used by two stages", shared=True)

    def derive(self, facts):
        return {"window": [facts["start"], calendar.add_months(facts["first"], -1)],
                "year": calendar.fy_of_month(calendar.add_months(facts["first"], -12))}

    def rules(self, facts):
        return [] if self.window == AUTO or self.window[1] < facts["first"] else [
            f"window {self.window} must end before the first engagement {facts['first']}: end it at "
            f"{calendar.add_months(facts['first'], -1)}"]


def test_choices_and_numbers_are_checked_by_one_helper():
    assert choices_of(Control) == ("never", "not_yet")
    assert choices_of(Literal[Control, Literal["x"]]) == ("never", "not_yet", "x")
    assert check_choice("control_group", "never", Control) == "never"
    with pytest.raises(ArgumentError, match=r"control_group must be one of 'never', 'not_yet'; got 'nevr' \(did you mean 'never'\?\)"):
        check_choice("control_group", "nevr", Control)
    assert check_number("n", 3, 1, 12, integer=True) == 3
    for value, match in ((0, ">= 1"), (3.5, "whole number"), (True, "whole number"), (13, "<= 12")):
        with pytest.raises(ArgumentError, match=match):
            check_number("n", value, 1, 12, integer=True)
    with pytest.raises(ArgumentError, match=r"level must be > 0 and < 1, got 1"):
        check_number("level", 1, 0, 1, low_open=True, high_open=True)
    with pytest.raises(ArgumentError, match="finite"):
        check_number("x", float("nan"))


def test_params_check_every_field_at_once():
    assert Toy().values()["control_group"] == "not_yet"
    with pytest.raises(ArgumentError) as err:
        Toy(control_group="nevr", periods=0, level=1.0, window=["2005-01", "2004-01"], year="2004/06", uplift="x")
    problems = err.value.problems
    assert len(problems) == 6
    assert any("did you mean 'never'" in p for p in problems)
    assert any(p.startswith("periods must be >= 1 and <= 12, got 0") for p in problems)
    assert any("window = ['2005-01', '2004-01'] ends before it starts" in p for p in problems)
    assert any('year must be a financial year "YYYY/YY"' in p for p in problems)
    assert any(p.startswith("uplift must be float | None") for p in problems)
    with pytest.raises(ArgumentError, match="periods must be"):
        Toy(periods=2.0)  # an int setting refuses a float
    assert Toy(uplift=1).uplift == 1  # an int is a float


def test_auto_is_resolved_by_the_rule_and_rules_are_checked():
    facts = {"start": "2004-01", "first": "2005-10"}
    resolved, derived = Toy().resolve(facts)
    assert resolved.window == ["2004-01", "2005-09"] and resolved.year == "2004/05"
    assert [(d.name, d.value) for d in derived] == [("window", ["2004-01", "2005-09"]), ("year", "2004/05")]
    assert derived[0].rule == "start to the month before the first engagement"
    given, derived = Toy(window=["2004-01", "2005-03"], year="2003/04").resolve(facts)
    assert derived == [] and given.window == ["2004-01", "2005-03"]
    with pytest.raises(ArgumentError, match=r"must end before the first engagement 2005-10: end it at 2005-09"):
        Toy(window=["2004-01", "2005-12"]).resolve(facts)
    assert Toy.from_namespace({"periods": 6, "data_dir": "ignored"}).periods == 6


def test_describe_settings_lists_each_setting_with_its_rule():
    rows = {r["name"]: r for r in describe_settings([Toy])}
    assert rows["control_group"]["allowed"] == "never | not_yet"
    assert rows["level"]["allowed"] == "> 0 and < 1"
    assert rows["window"]["derive"].startswith("start to") and rows["window"]["type"] == "list[str] | str"
    assert rows["shared_level"]["shared"] and not rows["periods"]["shared"]


def test_calendar_by_hand():
    assert calendar.fy_of_month("2006-03") == "2005/06" and calendar.fy_of_month("2006-04") == "2006/07"
    assert calendar.fy_of_month("1999-04") == "1999/00"
    assert calendar.shift_year("2007/08", 1) == "2008/09" and calendar.shift_year("2000/01", -1) == "1999/00"
    assert calendar.fy_months("2005/06")[0] == "2005-04" and calendar.fy_months("2005/06")[-1] == "2006-03"
    assert calendar.add_months("2005-11", 3) == "2006-02" and calendar.add_months("2005-01", -1) == "2004-12"
    assert calendar.months_between("2005-04", "2006-03") == 12 and calendar.months_between("2006-04", "2006-03") == 0
    assert calendar.full_financial_years("2004-01", "2007-12") == ["2004/05", "2005/06", "2006/07"]
    assert calendar.full_financial_years("2003-04", "2008-03")[-1] == "2007/08"
    assert calendar.full_financial_years("2004-05", "2005-03") == []
    assert list(calendar.month_index(["2003-04", "2004-04", "2003-04"], "2003-04")) == [1, 13, 1]
    assert list(calendar.period_of_months(["2005-04", "2006-03", "2005-07"], "quarter")) == ["2005/06 Q1", "2005/06 Q4", "2005/06 Q2"]
    assert list(calendar.period_of_months(["2005-04"], "calendar_year")) == ["2005"]
    assert calendar.financial_year_of(np.array([], dtype=str)).size == 0
    assert calendar.is_financial_year("2005/06") and not calendar.is_financial_year("2005/07")
    assert calendar.is_month("2005-12") and not calendar.is_month("2005-13")
    with pytest.raises(ValueError, match="'YYYY/YY'"):
        calendar.fy_start_year("2005-06")
