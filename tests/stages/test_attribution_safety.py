"""The safety check: emergency admissions and A&E attendances against expected, by hand, on planted rises and
null data, and the gate it puts on sharing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pbc_analysis.stages import attribution as at
from pbc_analysis.stages.attribution.safety import safety_check, safety_flags

MONTHS = ["2004-04", "2004-05", "2007-04", "2007-05"]


def _world(counts: dict[str, tuple[int, int]], lists: dict[str, tuple[int, int]], engaged: dict[str, str | None]):
    """Activity per practice: (base-year count, evaluation-year count) split over two months, for both pods."""
    rows, pop = [], []
    for code, (b, o) in counts.items():
        for pod in ("non_elective", "ae"):
            for m, v in zip(MONTHS, (b // 2, b - b // 2, o // 2, o - o // 2)):
                rows.append({"practice_code": code, "pod": pod, "month": m, "activity": v})
        lb, ly = lists[code]
        for m, v in zip(MONTHS, (lb, lb, ly, ly)):
            pop.append({"practice_code": code, "month": m, "registered": v})
    eng = pd.DataFrame({"practice_code": list(engaged), "engaged_from": list(engaged.values())})
    return pd.DataFrame(rows), pd.DataFrame(pop), eng


def test_safety_check_by_hand():
    """A: 100 -> 150 on a list grown 1000 -> 1100; comparators 5 x (200 -> 220) on flat lists of 2000, so g = 1.1.
    Expected = 100 x 1.1 x 1.1 = 121; ratio 150/121; the interval is Clopper-Pearson's on O | O + B mapped to theta."""
    counts = {"A": (100, 150), **{f"C{i}": (200, 220) for i in range(5)}}
    lists = {"A": (1000, 1100), **{f"C{i}": (2000, 2000) for i in range(5)}}
    engaged = {"A": "2005-04", **{f"C{i}": None for i in range(5)}}
    act, pop, eng = _world(counts, lists, engaged)
    s = safety_check(act, pop, eng, "2004/05", ["2007/08"], ["A"], level=0.95)
    r = s.set_index("measure").loc["emergency_admissions"]
    assert (r["observed"], r["base_observed"], r["months"], r["comparison"]) == (150, 100, 2, "never engaged")
    assert r["list_ratio"] == pytest.approx(1.1) and r["comparison_growth"] == pytest.approx(1.1)
    assert r["expected"] == pytest.approx(121.0) and r["ratio"] == pytest.approx(150 / 121)
    w = 1.21
    lo_pi, hi_pi = stats.beta.ppf(0.025, 150, 101), stats.beta.ppf(0.975, 151, 100)
    assert r["ci_low"] == pytest.approx(lo_pi / (1 - lo_pi) / w) and r["ci_high"] == pytest.approx(hi_pi / (1 - hi_pi) / w)
    assert r["p_rise"] == pytest.approx(stats.binom.sf(149, 250, w / (1 + w)))
    assert bool(r["rise"]) == (r["ci_low"] > 1)
    # at 99.8% the same data no longer flag a rise (wider interval)
    strict = safety_check(act, pop, eng, "2004/05", ["2007/08"], ["A"], level=0.998).set_index("measure")
    assert strict.loc["emergency_admissions", "ci_low"] < r["ci_low"]


def test_safety_check_uses_complete_months_and_falls_back_to_every_practice():
    counts = {"A": (100, 150), "C0": (200, 220)}
    lists = {"A": (1000, 1000), "C0": (2000, 2000)}
    act, pop, eng = _world(counts, lists, {"A": "2005-04", "C0": None})
    s = safety_check(act, pop, eng, "2004/05", ["2007/08"], ["A"], incomplete_months=["2007-05"], level=0.95)
    # 2007-05 is lag-adjusted: left out of the year and (as May) of the base; one comparator is too few
    assert (s["months"] == 1).all() and (s["comparison"] == "every practice").all()
    r = s.set_index("measure").loc["ae_attendances"]
    assert (r["observed"], r["base_observed"]) == (75, 50)
    g = ((75 + 110) / 3000) / ((50 + 100) / 3000)
    assert r["comparison_growth"] == pytest.approx(g) and r["expected"] == pytest.approx(50 * g)
    with pytest.raises(ValueError, match="level"):
        safety_check(act, pop, eng, "2004/05", ["2007/08"], ["A"], level=1.0)


def test_flags_name_the_measures_that_rose():
    check = pd.DataFrame({"practice_code": ["A", "A", "B", "B"], "financial_year": "2007/08",
                          "measure": ["ae_attendances", "emergency_admissions"] * 2, "rise": [True, True, False, False]})
    f = safety_flags(check).set_index("practice_code")
    assert bool(f.loc["A", "emergency_rise"]) and f.loc["A", "measures"] == "A&E attendances and emergency admissions"
    assert not bool(f.loc["B", "emergency_rise"]) and f.loc["B", "measures"] == ""


def test_sharing_holds_a_practice_whose_emergencies_rose():
    """The gate: A00001 would be paid 35; with an emergency rise it is held, the reason names the measure; a review
    clears it; an under-referrer with a rise says both."""
    from tests.stages.test_attribution import _sharing_inputs

    led, budgets, flags, quarters = _sharing_inputs()
    safety = pd.DataFrame({"practice_code": ["A00001", "A00003"], "financial_year": "2007/08",
                           "emergency_rise": [True, True], "measures": ["emergency admissions", "A&E attendances"]})
    sh, _ = at.share_savings(led, budgets, flags, quarters, min_payment=0, safety=safety)
    sh = sh.set_index("practice_code")
    assert sh.loc["A00001", "status"] == "held for review" and sh.loc["A00001", "to_practice"] == 0.0
    assert "its emergency admissions rose above expected (the safety check)" in sh.loc["A00001", "reason"]
    assert bool(sh.loc["A00001", "emergency_rise_flag"]) and not bool(sh.loc["A00002", "emergency_rise_flag"])
    assert "possible under-referrer by benchmarking and its A&E attendances rose" in sh.loc["A00003", "reason"]
    cleared, _ = at.share_savings(led, budgets, flags, quarters, min_payment=0, safety=safety, reviewed=["A00001"])
    assert cleared.set_index("practice_code").loc["A00001", "to_practice"] == pytest.approx(35.0)


@pytest.fixture(scope="module")
def sample_safety(sample_inputs):
    i = sample_inputs
    e = i.engagement
    checked = sorted(e.loc[e["engaged_from"].notna(), "practice_code"].astype(str))
    lag = ["2008-01", "2008-02", "2008-03"]
    return i, checked, lag


def test_sample_null_intervals_cover_and_a_planted_rise_is_flagged(sample_safety):
    """No rise is planted in the sample: the 99.8% intervals cover 1 for nearly every practice, year and measure.
    Planting a 40% rise in one practice's emergency admissions in 2007/08 flags exactly that practice and measure."""
    i, checked, lag = sample_safety
    years = ["2005/06", "2006/07", "2007/08"]
    s = safety_check(i.activity, i.population, i.engagement, "2004/05", years, checked, lag)
    assert len(s) == len(checked) * len(years) * 2
    covered = ((s["ci_low"] <= 1) & (s["ci_high"] >= 1)).mean()
    assert covered >= 0.98
    act = i.activity.copy()
    hit = (act["practice_code"].astype(str) == "P89334") & (act["pod"].astype(str) == "non_elective") & \
        act["month"].astype(str).between("2007-04", "2008-03")
    act["activity"] = np.where(hit, np.round(act["activity"] * 1.4), act["activity"]).astype(act["activity"].dtype)
    planted = safety_check(act, i.population, i.engagement, "2004/05", ["2007/08"], checked, lag)
    rises = planted[planted["rise"]]
    assert rises[["practice_code", "measure"]].values.tolist() == [["P89334", "emergency_admissions"]]
    r = rises.iloc[0]
    before = s[(s["practice_code"] == "P89334") & (s["financial_year"] == "2007/08")
               & (s["measure"] == "emergency_admissions")].iloc[0]
    # the expected count does not move (the practice is not its own comparison); the ratio grows by the planted 40%
    used = hit & (act["month"].astype(str) <= "2007-12")
    factor = act.loc[used, "activity"].sum() / i.activity.loc[used, "activity"].sum()   # 1.4, after rounding counts
    assert factor > 1.3
    assert r["expected"] == pytest.approx(before["expected"]) and r["ratio"] / before["ratio"] == pytest.approx(factor)
    assert r["months"] == 9  # the three lag-adjusted months are left out
