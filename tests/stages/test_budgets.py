"""Tests for pbc_analysis.stages.budgets: hand-computed rules, envelope conservation, pace caps, and recovery of the
synthetic PCT's planted budget rule and deprivation weights."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re

import numpy as np
import pandas as pd
import pytest
import statsmodels.api  # noqa: F401  (imported first so that its warning filters do not override the tests')

from pbc_analysis import data as D
from pbc_analysis.core import calendar
from pbc_analysis.core.checks import ArgumentError
from pbc_analysis.core.params import AUTO
from pbc_analysis.publish import results
from pbc_analysis.stages import budgets as B
from pbc_analysis.stages.budgets.params import derive_target_year
from pbc_analysis.stages.facts import DataFacts

# --------------------------------------------------------------------------------------------------
# helpers and small rules
# --------------------------------------------------------------------------------------------------

def test_base_years_for():
    assert B.base_years_for("2007/08", ["2005/06", "2006/07", "2007/08"]) == ["2005/06", "2006/07"]
    assert B.base_years_for("2000/01", ["1999/00"], 1) == ["1999/00"]
    with pytest.raises(ValueError, match="2004/05 is not in the data"):
        B.base_years_for("2006/07", ["2005/06", "2006/07"], 2)
    with pytest.raises(ValueError, match="target_year must be a financial year 'YYYY/YY'.*'2007'"):
        B.base_years_for("2007", ["2005/06"])
    with pytest.raises(ValueError, match="base_years must be >= 1, got 0"):
        B.base_years_for("2007/08", ["2006/07"], 0)


def test_allocate_pence_largest_remainder_by_hand():
    """GBP 100 in thirds: 10,000 pence / 3 = 3,333.33 each; the floors leave 1 penny, which goes to the first
    of the tied remainders: 3,334 + 3,333 + 3,333."""
    assert B.allocate_pence([1, 1, 1], 100.0).tolist() == [3334, 3333, 3333]
    # 0.5 / 0.3 / 0.2 of GBP 0.07 = 3.5, 2.1, 1.4 pence: floors 3 + 2 + 1 = 6, the penny left goes to the
    # largest remainder (0.5, the first part)
    assert B.allocate_pence([0.5, 0.3, 0.2], 0.07).tolist() == [4, 2, 1]
    rng = np.random.default_rng(1)
    shares = rng.gamma(2.0, size=500)
    for total in (123456789.01, 1.0, 0.0):
        p = B.allocate_pence(shares, total)
        assert p.sum() == round(total * 100)
        assert np.all(np.abs(p - shares / shares.sum() * round(total * 100)) < 1)
    with pytest.raises(ValueError, match="non-negative"):
        B.allocate_pence([1.0, -0.5], 10.0)


def _activity(rows):
    return pd.DataFrame(rows, columns=["practice_code", "provider_code", "specialty_code", "pod", "month", "activity",
                                       "cost"]).astype({"activity": "int64", "cost": float})


TARIFF = pd.DataFrame({"specialty_code": ["110"] * 3, "pod": ["first_op"] * 3,
                       "financial_year": ["2005/06", "2006/07", "2007/08"], "price": [100.0, 105.0, 110.0]})


def test_recost_price_index_and_tariff_by_hand():
    """A 2005/06 cell with 10 attendances costing GBP 1,050 (price 100, provider factor 1.05): at the 2007/08
    price of 110, price_index gives 1,050 x 110 / 100 = 1,155 (keeps the provider factor) and tariff gives
    10 x 110 = 1,100."""
    act = _activity([["P1", "RA1", "110", "first_op", "2005-04", 10, 1050.0]])
    cells = B.practice_cells(act)
    a = B.recost_cells(cells, TARIFF, "2007/08", "price_index")
    b = B.recost_cells(cells, TARIFF, "2007/08", "tariff")
    assert a["cost_at_target"].iloc[0] == pytest.approx(1155.0)
    assert b["cost_at_target"].iloc[0] == pytest.approx(1100.0)
    with pytest.raises(ValueError, match="recost must be one of.*did you mean 'tariff'"):
        B.recost_cells(cells, TARIFF, "2007/08", "tarif")
    # no 2008/09 price: an error that names the fix, or a projection by an explicit uplift
    with pytest.raises(ValueError, match="tariff_uplift"):
        B.recost_cells(cells, TARIFF, "2008/09")
    proj = B.project_tariff(TARIFF, "2008/09", 0.025)
    assert proj.loc[proj["financial_year"] == "2008/09", "price"].iloc[0] == pytest.approx(round(110 * 1.025, 2))
    with pytest.raises(ValueError, match="already has prices"):
        B.project_tariff(TARIFF, "2007/08", 0.025)


def test_completeness_adjustment_divides_only_named_months():
    """A month 55% complete: its recorded GBP 550 counts as 550 / 0.55 = 1,000; other months are kept."""
    act = _activity([["P1", "RA1", "110", "first_op", "2008-02", 5, 500.0],
                     ["P1", "RA1", "110", "first_op", "2008-03", 6, 550.0]])
    comp = pd.DataFrame({"month": ["2008-03"], "factor": [0.55]})
    c = B.practice_cells(act, comp).set_index("month")
    assert c.loc["2008-03", "cost"] == 550.0 and c.loc["2008-03", "cost_adjusted"] == pytest.approx(1000.0)
    assert c.loc["2008-02", "cost_adjusted"] == 500.0 and c.loc["2008-02", "factor"] == 1.0
    with pytest.raises(ValueError, match=r"completeness factors must be in \(0, 1\]"):
        B.practice_cells(act, pd.DataFrame({"month": ["2008-03"], "factor": [1.2]}))


def test_historic_budget_by_hand():
    """Window 2005-10 to 2007-04, so base year 2005/06 has 6 months (annualised x 2).

    P1: 2005/06 GBP 1,000 at price 100 -> 1,000 x 110/100 = 1,100 at 2007/08 prices, x 12/6 = 2,200 a year;
        2006/07 GBP 1,200 at price 105 -> 1,200 x 110/105 = 1,257.14 (12 months). Mean 1,728.57.
        List: mean over the 18 base months 1,000, at 2007-04 1,050 -> index 1.05 -> budget 1,815.00.
    P2: only 2006/07, GBP 2,100 at 105 -> 2,200; 2005/06 counts 0 -> mean 1,100; list index 1 -> 1,100."""
    months = [f"{y}-{m:02d}" for y, m in [(2005, 10 + i) if i < 3 else (2006, i - 2) for i in range(6)]]
    months += [f"{2006 + (m < 4)}-{m:02d}" for m in (4, 5, 6, 7, 8, 9, 10, 11, 12, 1, 2, 3)] + ["2007-04"]
    act = _activity([["P1", "RA1", "110", "first_op", "2005-11", 10, 1000.0],
                     ["P1", "RA1", "110", "first_op", "2006-06", 11, 1200.0],
                     ["P2", "RA1", "110", "first_op", "2006-06", 20, 2100.0]])
    cells = B.recost_cells(B.practice_cells(act), TARIFF, "2007/08")
    annual = B.annual_costs(cells, ["2005/06", "2006/07"], months)
    p1 = annual[annual["practice_code"] == "P1"].set_index("financial_year")
    assert p1.loc["2005/06", "months"] == 6 and p1.loc["2005/06", "annual_at_target"] == pytest.approx(2200.0)
    lists = pd.DataFrame({"practice_code": ["P1"] * len(months) + ["P2"] * len(months), "month": months * 2,
                          "registered": [1000.0] * (len(months) - 1) + [1050.0] + [500.0] * len(months)})
    idx = B.list_growth(lists, "2007/08", ["2005/06", "2006/07"], "registered")
    assert idx.set_index("practice_code").loc["P1", "list_index"] == pytest.approx(1.05)
    assert (idx["list_month"] == "2007-04").all()
    h = B.historic_budgets(annual, idx, ["2005/06", "2006/07"], "2007/08").set_index("practice_code")
    spend1 = (2200.0 + 1200 * 110 / 105) / 2
    assert h.loc["P1", "historic_spend"] == pytest.approx(spend1)
    assert h.loc["P1", "historic_budget"] == pytest.approx(spend1 * 1.05)
    assert h.loc["P2", "historic_budget"] == pytest.approx(2100 * 110 / 105 / 2)


def test_list_index_beyond_the_data_uses_the_latest_month():
    lists = pd.DataFrame({"practice_code": ["P1"] * 3, "month": ["2007-02", "2007-03", "2007-04"],
                          "registered": [100.0, 100.0, 110.0]})
    idx = B.list_growth(lists, "2008/09", ["2006/07"], "registered")
    assert idx["list_month"].iloc[0] == "2007-04"  # named in the statement
    assert idx["list_index"].iloc[0] == pytest.approx(110 / 100)


def _rates(values: dict[tuple[str, str], float], measure="first_op", spec="110") -> pd.DataFrame:
    bands = np.repeat(np.array(D.AGE_BANDS), 2)
    sexes = np.tile(np.array(D.SEXES), len(D.AGE_BANDS))
    rate = [values.get((b, s), 0.0) for b, s in zip(bands, sexes)]
    return pd.DataFrame({"measure": measure, "specialty_code": spec, "age_band": bands, "sex": sexes, "rate": rate})


def test_cost_curves_by_hand():
    """Reference first-outpatient rates 100 (F 0-4) and 50 (M 0-4) per 1,000 a year at GBP 110 give GBP 11 and
    5.50 a head; over 100 person-years of each the mean is 8.25, so the weights are 4/3 and 2/3. Calibrated:
    the PCT saw 30 attendances where the rates predict 100 x 0.1 + 100 x 0.05 = 15, so costs per head
    double (f = 2) and the weights do not change."""
    rr = _rates({("0-4", "F"): 100.0, ("0-4", "M"): 50.0})
    pop = pd.DataFrame({"age_band": ["0-4", "0-4"], "sex": ["F", "M"], "person_years": [100.0, 100.0]})
    ref = B.cost_curves(rr, TARIFF, "2007/08", "reference", population=pop)
    pl = ref[(ref["component"] == "planned")].set_index(["age_band", "sex"])
    assert pl.loc[("0-4", "F"), "cost_per_head"] == pytest.approx(11.0)
    assert pl.loc[("0-4", "M"), "cost_per_head"] == pytest.approx(5.5)
    assert pl.loc[("0-4", "F"), "weight"] == pytest.approx(4 / 3) and pl.loc[("0-4", "M"), "weight"] == pytest.approx(2 / 3)
    obs = pd.DataFrame({"pod": ["first_op"], "specialty_code": ["110"], "activity": [30.0]})
    cal = B.cost_curves(rr, TARIFF, "2007/08", "calibrated", observed=obs, population=pop)
    cpl = cal[cal["component"] == "planned"].set_index(["age_band", "sex"])
    assert cpl.loc[("0-4", "F"), "cost_per_head"] == pytest.approx(22.0)
    assert cpl.loc[("0-4", "F"), "weight"] == pytest.approx(4 / 3)
    # all spend = the components summed
    allc = cal[cal["component"] == "all"].set_index(["age_band", "sex"])["cost_per_head"]
    summed = cal[cal["component"] != "all"].groupby(["age_band", "sex"])["cost_per_head"].sum()
    assert np.allclose(allc.reindex(summed.index), summed)
    none = B.cost_curves(None, TARIFF, "2007/08", "none")
    assert (none["weight"] == 1.0).all()
    with pytest.raises(ValueError, match="needs the reference_rates table"):
        B.cost_curves(None, TARIFF, "2007/08", "reference")
    with pytest.raises(ValueError, match="curves must be one of"):
        B.cost_curves(rr, TARIFF, "2007/08", "calibrate")
    bad = pd.DataFrame({"component": ["planned"], "age_band": ["0-4"], "sex": ["F"], "cost_per_head": [1.0]})
    with pytest.raises(ValueError, match="all 38 age-sex cells"):
        B.cost_curves(None, TARIFF, "2007/08", "supplied", supplied=bad)


def test_parse_formula():
    assert B.parse_formula("deprivation | provider_cost_index") == (["deprivation"], ["provider_cost_index"])
    assert B.parse_formula("deprivation + diabetes", extra=["diabetes"]) == (["deprivation", "diabetes"], [])
    assert B.parse_formula("1 | single_handed") == ([], ["single_handed"])
    with pytest.raises(ValueError, match="unknown term 'deprivaton'.*did you mean 'deprivation'"):
        B.parse_formula("deprivaton | provider_cost_index")
    with pytest.raises(ValueError, match="repeated"):
        B.parse_formula("deprivation + deprivation")
    with pytest.raises(ValueError, match="both need and supply"):
        B.parse_formula("deprivation | deprivation")
    with pytest.raises(ValueError, match="more than one '\\|'"):
        B.parse_formula("deprivation | a | b")


@pytest.mark.filterwarnings("ignore:Perfect separation")  # statsmodels' note on an exact fit
def test_need_model_recovers_exact_coefficients():
    """Cost exactly WL x exp(0.3 + 0.2 x + 0.5 s): the quasi-Poisson fit returns 0.2 and 0.5, and the need
    holds the supply term at its average (drops it: a constant cancels in shares), WL x exp(0.2 x)."""
    rng = np.random.default_rng(3)
    n = 40
    x, s = rng.normal(size=n), rng.normal(size=n)
    wl = rng.uniform(2000, 12000, n)
    codes = [f"P{i:05d}" for i in range(n)]
    base = pd.DataFrame({"practice_code": codes, "component": "planned", "cost": wl * np.exp(0.3 + 0.2 * x + 0.5 * s),
                         "weighted_list": wl})
    cov = pd.DataFrame({"practice_code": codes, "deprivation": x, "provider_cost_index": s})
    coef, fitted = B.fit_need_model(base, cov, ["deprivation"], ["provider_cost_index"])
    est = coef.set_index("term")["estimate"]
    assert est["deprivation"] == pytest.approx(0.2, abs=1e-8)
    assert est["provider_cost_index"] == pytest.approx(0.5, abs=1e-8)
    assert np.allclose(fitted["need"], wl * np.exp(0.2 * x))
    assert np.allclose(fitted["fitted"], base["cost"])
    with pytest.raises(ValueError, match="takes one value for every practice"):
        B.fit_need_model(base, cov.assign(deprivation=1.0), ["deprivation"], [])


def test_fair_shares_by_hand():
    """Two components with equal base cost (100 each, so w = 1/2 each). Planned need 100 and 200 -> shares
    1/3, 2/3; A&E need 50 and 50 -> 1/2 each. Targets: P1 = 1/2 x 1/3 + 1/2 x 1/2 = 5/12, P2 = 7/12. Age-sex
    shares 1/2 each (equal weighted lists), lists equal, so age_sex_index = 1 and need_index = 5/6 and 7/6.
    At target lists where P1's planned weighted list doubles, P1's planned need doubles too: 200 vs 200."""
    fitted = pd.DataFrame({"practice_code": ["P1", "P2", "P1", "P2"], "component": ["planned", "planned", "ae", "ae"],
                           "cost": [60.0, 40.0, 30.0, 70.0], "weighted_list": [100.0, 100.0, 50.0, 50.0],
                           "fitted": [60.0, 40.0, 30.0, 70.0], "need": [100.0, 200.0, 50.0, 50.0]})
    lists = pd.DataFrame({"practice_code": ["P1", "P2"], "registered": [100.0, 100.0],
                          "weighted_planned": [100.0, 100.0], "weighted_ae": [50.0, 50.0],
                          "weighted_list": [100.0, 100.0]})
    fs = B.fair_shares(fitted, lists).set_index("practice_code")
    assert fs.loc["P1", "target_share"] == pytest.approx(5 / 12) and fs.loc["P2", "target_share"] == pytest.approx(7 / 12)
    assert fs["age_sex_index"].tolist() == pytest.approx([1.0, 1.0])
    assert fs.loc["P1", "need_index"] == pytest.approx(5 / 6)
    grown = B.fair_shares(fitted, lists.assign(weighted_planned=[200.0, 100.0])).set_index("practice_code")
    # planned shares now 200/400 each: P1 = 1/2 x 1/2 + 1/2 x 1/2 = 1/2
    assert grown.loc["P1", "target_share"] == pytest.approx(0.5)


# --------------------------------------------------------------------------------------------------
# pace of change
# --------------------------------------------------------------------------------------------------

def _path(h, t, **kw):
    # zero-padded codes, so that sorting by code keeps the order of h and t
    start = pd.DataFrame({"practice_code": [f"P{i:03d}" for i in range(len(h))], "historic_budget": h,
                          "target_share": t})
    return B.glide_path(start, kw.pop("envelope", 1000.0), "2007/08", **kw)


def test_glide_path_cap_binds_and_smaller_side_is_scaled_by_hand():
    """Targets 1/2, 1/2; historic shares 0.40, 0.60; band 10% (0.45 to 0.55); one year to close the gap.
    P1 wants +0.05 but the 5% cap allows 0.02; P2 wants -0.05, capped at 0.03. No practice below target has
    room left, so the losses are scaled to the gains: 0.42 and 0.58 (GBP 420 and 580 of 1,000)."""
    p = _path([400.0, 600.0], [0.5, 0.5], years=1, cap=0.05, band=0.10)
    y1 = p[p["year"] == 1].set_index("practice_code")
    assert y1["share"].tolist() == pytest.approx([0.42, 0.58])
    assert y1["budget"].tolist() == [420.0, 580.0]
    assert y1["cap_binding"].all()
    y0 = p[p["year"] == 0]
    assert y0["financial_year"].iloc[0] == "historic" and y0["budget"].tolist() == [400.0, 600.0]


def test_glide_path_spare_losses_go_to_practices_below_target_by_hand():
    """Targets 0.5, 0.3, 0.2, band 10%, cap 100%, one year. P1 (0.40) wants +0.05 to reach 0.45; P2 (0.32) is
    inside its band; P3 (0.28) wants -0.06 to reach 0.22. Losses exceed gains by 0.01, which goes to the
    practice below target with room (P1: room up to target 0.10 - 0.05 = 0.05): 0.46, 0.32, 0.22.
    With fund_from='outside_band' the losses are scaled down instead: 0.45, 0.32, 0.23."""
    p = _path([400.0, 320.0, 280.0], [0.5, 0.3, 0.2], years=1, cap=1.0, band=0.10)
    assert p.loc[p["year"] == 1, "share"].tolist() == pytest.approx([0.46, 0.32, 0.22])
    q = _path([400.0, 320.0, 280.0], [0.5, 0.3, 0.2], years=1, cap=1.0, band=0.10, fund_from="outside_band")
    assert q.loc[q["year"] == 1, "share"].tolist() == pytest.approx([0.45, 0.32, 0.23])


def test_glide_path_gains_funded_by_practices_above_target_by_hand():
    """Targets 0.4, 0.3, 0.3, band 20% (P1 band 0.32 to 0.48, others up to 0.36). P1 (0.30) wants +0.02; P2 (0.36)
    and P3 (0.34) are inside the band but above target with room 0.06 and 0.04: they fund the 0.02 pro rata
    (0.012 and 0.008): 0.32, 0.348, 0.332. With fund_from='outside_band' nobody can fund it: no move."""
    p = _path([300.0, 360.0, 340.0], [0.4, 0.3, 0.3], years=1, cap=1.0, band=0.20)
    assert p.loc[p["year"] == 1, "share"].tolist() == pytest.approx([0.32, 0.348, 0.332])
    q = _path([300.0, 360.0, 340.0], [0.4, 0.3, 0.3], years=1, cap=1.0, band=0.20, fund_from="outside_band")
    assert q.loc[q["year"] == 1, "share"].tolist() == pytest.approx([0.30, 0.36, 0.34])


def test_glide_path_equal_steps_over_the_years():
    """Two years, no cap, band 0: the gap 0.10 closes in equal halves, 0.05 a year (years_left 2, then 1)."""
    p = _path([400.0, 600.0], [0.5, 0.5], years=2, cap=1.0, band=0.0)
    assert p.loc[p["practice_code"] == "P000", "share"].tolist() == pytest.approx([0.40, 0.45, 0.50])
    assert p.loc[p["year"] == 2, "within_band"].all()


def test_glide_path_caps_conservation_and_no_overshoot_on_random_practices():
    rng = np.random.default_rng(7)
    n = 300
    t = rng.gamma(5.0, size=n)
    t = t / t.sum()
    h = t * np.exp(rng.normal(0, 0.2, n)) * 1e6
    for cap, band, growth, fund in [(0.05, 0.10, 0.0, "above_target"), (0.02, 0.05, 0.04, "above_target"),
                                    (0.03, 0.0, -0.01, "outside_band")]:
        p = _path(h, t, years=4, cap=cap, band=band, envelope=123456789.01, envelope_growth=growth, fund_from=fund)
        wide = p.pivot(index="practice_code", columns="year", values="share").to_numpy()
        change = wide[:, 1:] / wide[:, :-1] - 1
        assert np.abs(change).max() <= cap + 1e-12  # pace caps never exceeded
        dist = wide - t[:, None]
        assert np.all(dist[:, 1:] * dist[:, :-1] >= -1e-15)  # never crosses its target
        assert np.all(np.abs(dist[:, 1:]) <= np.abs(dist[:, :-1]) + 1e-15)  # never moves away from it
        for year, g in p.groupby("year"):
            env = 123456789.01 * (1 + growth) ** max(year - 1, 0)
            assert int(np.round(g["budget"].to_numpy() * 100).sum()) == round(env * 100)  # to the penny
            assert g["share"].sum() == pytest.approx(1.0, abs=1e-12)


def test_glide_path_parameter_errors_name_the_parameter():
    with pytest.raises(ValueError, match="pace_cap must be >= 0, got -0.05"):
        _path([1.0, 1.0], [0.5, 0.5], cap=-0.05)
    with pytest.raises(ValueError, match="band must be >= 0 and < 1, got -0.1"):
        _path([1.0, 1.0], [0.5, 0.5], band=-0.1)
    with pytest.raises(ValueError, match="band must be >= 0 and < 1, got 1.0"):
        _path([1.0, 1.0], [0.5, 0.5], band=1.0)
    with pytest.raises(ValueError, match="pace_years must be >= 1, got 0"):
        _path([1.0, 1.0], [0.5, 0.5], years=0)
    with pytest.raises(ValueError, match="fund_from must be one of.*did you mean 'above_target'"):
        _path([1.0, 1.0], [0.5, 0.5], fund_from="above_targt")
    with pytest.raises(ValueError, match="envelope must be > 0"):
        _path([1.0, 1.0], [0.5, 0.5], envelope=0.0)


def test_winners_and_losers_by_hand():
    """From the capped example: P1 gains GBP 20 (400 -> 420, +5%), P2 loses GBP 20 (600 -> 580)."""
    p = _path([400.0, 600.0], [0.5, 0.5], years=1, cap=0.05, band=0.10)
    w = B.winners_and_losers(p).set_index("practice_code")
    assert w["status"].tolist() == ["gains", "loses"]
    assert w["change_first_year"].tolist() == [20.0, -20.0]
    assert w.loc["P000", "change_first_year_pct"] == pytest.approx(0.05)


# --------------------------------------------------------------------------------------------------
# the embedded synthetic PCT
# --------------------------------------------------------------------------------------------------

def _params(**kw) -> B.Params:
    return B.Params(**{"target_year": "2007/08", **kw})


@pytest.fixture(scope="module")
def sample(sample_inputs, sample_truth):
    return sample_inputs, sample_truth, B.set_budgets(sample_inputs, _params())


def test_historic_rule_reproduces_budgets_csv_up_to_poisson_noise(sample):
    """ground_truth['budget_rule']: the two previous years' expected activity, re-costed at the new tariff x
    the provider's HRG factor, x list at the start of the year / mean list over the base years. Our rule on
    the *observed* activity (recost='price_index' keeps the HRG factor; registered-list index) can differ
    from budgets.csv only by the Poisson noise of the observed counts. Its SD per practice is
    sqrt(sum over cells of count x unit cost^2) / 2 (the mean of two years) x the list index, so the
    standardised differences should have mean about 0 and SD about 1, and the PCT total should agree within
    3 of its SDs."""
    inputs, truth, _ = sample
    assert "re-costed at the new year's tariff" in truth["budget_rule"]
    for year in ("2005/06", "2006/07", "2007/08"):
        r = B.set_budgets(inputs, _params(target_year=year, list_index="registered"))
        c = r.cells[r.cells["financial_year"].isin(r.settings["base_years"])]
        unit = np.where(c["activity"] > 0, c["cost_at_target"] / c["activity"].where(c["activity"] > 0, 1), 0.0)
        var = c.assign(v=c["activity"] * unit ** 2).groupby("practice_code")["v"].sum() / 4
        h = r.historic.set_index("practice_code")
        sd = np.sqrt(var.reindex(h.index)) * h["list_index"]
        pv = r.provided.set_index("practice_code")
        assert len(pv) == 60
        z = (pv["historic_budget"] - pv["provided_budget"]) / sd.reindex(pv.index)
        assert abs(z.mean()) < 3 / np.sqrt(len(z)), (year, z.mean())
        assert 0.7 < z.std() < 1.3, (year, z.std())
        assert z.abs().max() < 4
        total_sd = np.sqrt((sd ** 2).sum())
        assert abs(pv["historic_budget"].sum() - pv["provided_budget"].sum()) < 3 * total_sd


def test_fair_shares_recover_planted_deprivation_weights(sample):
    """The truth plants log rate ratios per SD of IMD of 0.21 for GP referrals (which drive planned care:
    first and follow-up outpatients and electives), 0.15 for non-elective admissions and 0.20 for A&E. The
    need model's deprivation coefficient per component should be within 3 standard errors of them, and
    precise enough for that to mean something. Costs are proportional to the providers' HRG factor, so
    the supply term provider_cost_index should be near 1."""
    _, truth, res = sample
    dep = truth["deprivation"]
    planted = {"planned": dep["beta_referrals"], "non_elective": dep["beta_non_elective"], "ae": dep["beta_ae"]}
    co = res.coefficients.set_index(["component", "term"])
    for comp, beta in planted.items():
        est, se = co.loc[(comp, "deprivation"), ["estimate", "std_error"]]
        assert se < 0.05
        assert abs(est - beta) < 3 * se, (comp, est, se, beta)
        pci, pse = co.loc[(comp, "provider_cost_index"), ["estimate", "std_error"]]
        assert abs(pci - 1.0) < 3 * pse, (comp, pci, pse)


def test_deprivation_improves_the_practice_level_fit(sample):
    """Deprivation is planted in every component, so the need-only prediction with it must fit cost per
    patient better than age and sex alone; and the fit statistics are proper proportions."""
    inputs, _, res = sample
    plain = B.set_budgets(inputs, _params(formula=""))
    f_dep = res.fit.set_index("component")
    f_plain = plain.fit.set_index("component")
    assert f_dep.loc["all", "r_squared_need"] > f_plain.loc["all", "r_squared_need"] + 0.05
    assert f_dep["share_more_than_10pct_from_actual"].between(0, 1).all()
    assert (f_dep["r_squared"] >= f_dep["r_squared_need"] - 1e-9).all()  # supply terms only add


def test_weighted_lists_keep_the_pct_total(sample):
    """Weights are normalised over the PCT's base-year population: the weighted list of each component sums
    (over practices, averaged over base months) to the registered list."""
    _, _, res = sample
    base = [m for y in res.settings["base_years"] for m in calendar.fy_months(y)]
    lb = B.weighted_lists(res.lists, base)
    for comp in ("planned", "non_elective", "ae", "all"):
        assert lb[f"weighted_{comp}"].sum() == pytest.approx(lb["registered"].sum(), rel=1e-9)


def test_envelope_conservation_on_the_sample(sample):
    inputs, _, res = sample
    E = res.settings["envelope"]
    assert E == pytest.approx(res.historic["historic_budget"].sum(), abs=0.01)  # envelope 0 -> historic total
    assert int(np.round(res.statement["budget"] * 100).sum()) == round(E * 100)
    assert res.statement["fair_share"].sum() == pytest.approx(E)
    r2 = B.set_budgets(inputs, _params(envelope=200_000_000.37, envelope_growth=0.03, pace_years=2))
    for year, g in r2.path.groupby("year"):
        env = 200_000_000.37 * 1.03 ** max(year - 1, 0)
        assert int(np.round(g["budget"] * 100).sum()) == round(env * 100)


def test_statement_explains_each_number(sample):
    _, _, res = sample
    s = res.statement
    assert list(s.columns) == B.STATEMENT_COLUMNS
    assert len(s) == 60 and s["practice_code"].is_unique
    assert np.allclose(s["distance_from_target"], (s["historic_at_envelope"] - s["fair_share"]) / s["fair_share"])
    assert np.allclose(s["budget"], s["historic_at_envelope"] + s["step"], atol=0.011)
    assert np.allclose(s["target_share"], s["list_share"] * s["age_sex_index"] * s["need_index"])
    assert np.allclose(s["historic_budget"], s["historic_spend"] * s["list_index"])
    r = s.iloc[0]
    text = r["explanation"]
    for number in (f"{r['registered']:,.0f}", f"GBP {r['budget']:,.0f}", f"GBP {r['fair_share']:,.0f}",
                   f"{r['need_index']:.3f}", f"{r['list_index']:.3f}", "2005/06 and 2006/07"):
        assert number in text
    # winners and losers agree with the statement
    w = res.winners.set_index("practice_code")["status"]
    assert (w.reindex(s["practice_code"]).to_numpy() == s["status"].to_numpy()).all()
    assert set(s["status"]) <= {"gains", "loses", "unchanged"}


def test_set_budgets_bad_parameters(sample):
    inputs, _, _ = sample
    with pytest.raises(ValueError, match="unknown term 'deprivaton'"):
        B.set_budgets(inputs, _params(formula="deprivaton"))
    with pytest.raises(ValueError, match="2008/09.*tariff_uplift"):
        B.set_budgets(inputs, _params(target_year="2008/09"))


def test_target_year_beyond_the_data_with_a_projected_tariff(sample):
    """2008/09 is after the window: its tariff is projected by an explicit uplift and its list is the latest
    month in the data, both recorded."""
    inputs, _, _ = sample
    r = B.set_budgets(inputs, _params(target_year="2008/09", tariff_uplift=0.025, pace_years=1))
    assert r.settings["tariff_projected"] and r.settings["list_month"] == "2008-03"
    assert r.settings["base_years"] == ["2006/07", "2007/08"]
    assert (r.statement["list_month"] == "2008-03").all()
    assert len(r.provided) == 0  # budgets.csv has no 2008/09


def test_total_component_model_runs_and_conserves(sample):
    inputs, _, _ = sample
    r = B.set_budgets(inputs, _params(components="total", curves="reference"))
    assert r.coefficients["component"].unique().tolist() == ["all"]
    assert r.shares["target_share"].sum() == pytest.approx(1.0)


def test_result_tables_and_headline(sample):
    _, _, res = sample
    tables = res.tables()
    assert list(tables) == ["bud_statement", "bud_historic", "bud_curves", "bud_need_model", "bud_model_fit",
                            "bud_glide_path", "bud_winners_losers", "bud_provided_comparison"]
    assert all(isinstance(t, pd.DataFrame) for t in tables.values())
    assert tables["bud_statement"] is res.statement
    head = res.headline()
    assert head == B.headline(res) and "risk" not in head
    json.loads(results.dumps(head))  # JSON-able
    assert head["budgets_total_gbp"] == head["envelope_gbp"]
    assert head["winners"] + head["losers"] + head["unchanged"] == 60
    assert set(head["need_model"]) >= {"planned:deprivation", "non_elective:deprivation", "ae:deprivation"}
    text = res.describe()
    assert text == B.describe(head)
    assert head["target_year"] in text and f"{head['winners']} practices gain" in text


# --------------------------------------------------------------------------------------------------
# the stage's settings: Params, derivation from the data, cross-setting rules, one source of defaults
# --------------------------------------------------------------------------------------------------

ALL_YEARS = ("2002/03", "2003/04", "2004/05", "2005/06", "2006/07", "2007/08")


def _facts(start: str, end: str, tariff_years=ALL_YEARS, engaged=("2005-04", None)) -> DataFacts:
    """Hand-built facts: a window, practices engaged at the given months (None: never), tariff years."""
    return DataFacts(start_month=start, end_month=end, n_practices=len(engaged),
                     engaged_from={f"P{i}": m for i, m in enumerate(engaged)}, latest_complete={},
                     tariff_years=tuple(tariff_years))


def test_params_defaults_and_notebook_names():
    d = B.Params.defaults()
    assert d["target_year"] == AUTO and d["as_at"] == AUTO
    assert (d["base_years"], d["recost"], d["list_index"], d["pace_cap"], d["band"]) == (2, "price_index", "weighted", 0.05, 0.10)
    assert d["completeness_factors"] == [] and d["tariff_uplift"] is None and d["completeness_months"] == 3
    # the notebook's names, not the old function's (recost_method, list_index_kind)
    assert {"recost", "list_index"} <= set(d) and not {"recost_method", "list_index_kind"} & set(d)
    assert all(info.help for info in B.Params.settings().values())


@pytest.mark.parametrize("field, value, message", [
    ("recost", "tarif", r"recost must be one of 'price_index', 'tariff'; got 'tarif' \(did you mean 'tariff'\?\)"),
    ("list_index", "wieghted", r"list_index must be one of 'weighted', 'registered'.*did you mean 'weighted'"),
    ("curves", "calibrate", r"curves must be one of 'calibrated', 'reference', 'supplied', 'none'"),
    ("components", "pods", r"components must be one of 'pod_group', 'total'"),
    ("fund_from", "above", r"fund_from must be one of 'above_target', 'outside_band'"),
    ("envelope", -1, r"envelope must be >= 0, got -1"),
    ("band", 1.0, r"band must be >= 0 and < 1, got 1.0"),
    ("pace_years", 0, r"pace_years must be >= 1 and <= 20, got 0"),
    ("base_years", 2.0, r"base_years must be int, got float 2.0"),
    ("envelope_growth", -1.0, r"envelope_growth must be > -1"),
    ("tariff_uplift", 0.9, r"tariff_uplift must be >= -0.5 and <= 0.5, got 0.9"),
    ("completeness_months", 7, r"completeness_months must be >= 1 and <= 6, got 7"),
    ("completeness_factors", [0.9, 1.2], r"completeness_factors must be numbers in \(0, 1\]"),
    ("target_year", "2007", r"target_year must be a financial year \"YYYY/YY\""),
    ("as_at", "2008-13", r"as_at must be a month \"YYYY-MM\""),
])
def test_params_refuse_bad_values_naming_the_setting(field, value, message):
    with pytest.raises(ArgumentError, match=message):
        B.Params(**{field: value})


def test_params_report_every_problem_at_once():
    with pytest.raises(ArgumentError) as err:
        B.Params(recost="x", band=-0.1, pace_years=0)
    assert len(err.value.problems) == 3
    assert all(any(p.startswith(name) for p in err.value.problems) for name in ("recost", "band", "pace_years"))


def test_derive_target_year_and_as_at_by_hand():
    """April start, 60 months: full years 2003/04 .. 2007/08, the last with two full years before it is 2007/08
    and its latest month in the window 2008-03. January start (2004-01 to 2007-12): full years 2004/05 ..
    2006/07, so 2006/07 and 2007-03. An explicit target year keeps as_at inside it; one beyond the window
    (monitoring skipped) takes the window's last month."""
    assert B.Params().derive(_facts("2003-04", "2008-03")) == {"target_year": "2007/08", "as_at": "2008-03"}
    assert B.Params().derive(_facts("2004-01", "2007-12")) == {"target_year": "2006/07", "as_at": "2007-03"}
    assert B.Params(target_year="2006/07").derive(_facts("2003-04", "2008-03")) == {"as_at": "2007-03"}
    assert B.Params(target_year="2008/09", tariff_uplift=0.025).derive(_facts("2003-04", "2008-03")) == {"as_at": "2008-03"}
    assert B.Params(as_at="2007-09").derive(_facts("2003-04", "2008-03")) == {"target_year": "2007/08"}


def test_derive_on_a_short_window_needs_enough_full_years():
    """2005-10 to 2008-03 (30 months) holds two full years, 2006/07 and 2007/08: too few for a target year with two
    full base years before it, so the derivation says what to do; with base_years = 1 it is 2007/08."""
    short = _facts("2005-10", "2008-03")
    with pytest.raises(ArgumentError, match=r"2 full financial year\(s\) \(2006/07, 2007/08\).*base_years = 2.*set target_year"):
        B.Params().derive(short)
    assert B.Params(base_years=1).derive(short)["target_year"] == "2007/08"
    with pytest.raises(ArgumentError, match=r"0 full financial year\(s\) \(none\)"):
        derive_target_year([], 2)
    assert derive_target_year(["2005/06", "2006/07", "2007/08"], 2) == "2007/08"


def test_derive_and_rules_do_not_need_never_engaged_practices():
    """Budgets are set for every practice: a PCT whose practices all engage derives and checks the same."""
    all_engaged = _facts("2003-04", "2008-03", engaged=("2005-04", "2006-10", "2003-04"))
    assert all_engaged.n_never_engaged == 0
    params, derived = B.Params().resolve(all_engaged)
    assert (params.target_year, params.as_at) == ("2007/08", "2008-03")
    assert [d.name for d in derived] == ["target_year", "as_at"] and all(d.rule for d in derived)


def test_rules_on_the_sample_window_pass():
    assert B.Params(target_year="2007/08", as_at="2008-03").rules(_facts("2003-04", "2008-03")) == []


@pytest.mark.parametrize("params, facts, message", [
    (dict(target_year="2004/05", as_at="2005-03"), ("2003-04", "2008-03"),
     r"needs activity in 2002/03, 2003/04, but 2002/03 is outside the window 2003-04 to 2008-03; choose a later target_year"),
    (dict(target_year="2007/08", as_at="2008-03"), ("2003-04", "2008-03", ALL_YEARS[:-1]),
     r"target_year = '2007/08': the tariff has no prices for it .*set tariff_uplift"),
    (dict(target_year="2007/08", as_at="2008-03", tariff_uplift=0.02), ("2003-04", "2008-03"),
     r"tariff_uplift = 0.02, but the tariff already has prices for 2007/08; set tariff_uplift to None"),
    (dict(target_year="2007/08", as_at="2008-03"), ("2003-04", "2008-03", ("2003/04", "2004/05", "2007/08")),
     r"recost = 'price_index' .* no prices for 2005/06, 2006/07; add them, or set recost = 'tariff'"),
    (dict(target_year="2007/08", as_at="2007-03"), ("2003-04", "2008-03"),
     r"as_at = '2007-03' is not a month of 2007/08 in the window \(they run 2007-04 to 2008-03\)"),
    (dict(target_year="2007/08", as_at="2008-03", base_years=1), ("2006-01", "2008-03"),
     r"the 27-month window is too short for the data-quality model \(it needs 30 months\); set completeness_factors"),
    (dict(target_year="2007/08", as_at="2008-03", base_years=1, completeness_factors=[0.9]), ("2006-01", "2008-03"),
     r"in-year monitoring of 2007/08 needs two complete financial years before it.*the window has 2006/07"),
])
def test_rules_catch_each_broken_rule(params, facts, message):
    problems = B.Params(**params).rules(_facts(*facts))
    assert any(re.search(message, p) for p in problems), problems


def test_rules_price_index_only_needs_base_year_prices():
    facts = _facts("2003-04", "2008-03", tariff_years=("2003/04", "2004/05", "2007/08"))
    assert B.Params(target_year="2007/08", as_at="2008-03", recost="tariff").rules(facts) == []


def test_rules_months_adjusted_for_completeness_do_not_count_as_complete():
    """A window ending in 2007-06: the model adjusts 2007-04 .. 2007-06, which are in the target year 2007/08
    itself, so 2005/06 and 2006/07 stay complete; with six supplied factors 2007-01 .. 2007-06, 2006/07 is no
    longer complete and monitoring has one year."""
    facts = _facts("2003-04", "2007-06")
    assert B.Params(target_year="2007/08", base_years=1, as_at="2007-06").rules(facts) == []
    six = B.Params(target_year="2007/08", base_years=1, as_at="2007-06", completeness_factors=[0.99] * 6)
    assert any("needs two complete financial years" in p for p in six.rules(_facts("2005-04", "2007-06")))


def test_resolve_reports_the_rule_with_the_fix(sample_facts):
    with pytest.raises(ArgumentError, match="budgets: as_at = '2006-03' is not a month of 2007/08"):
        B.Params(as_at="2006-03").resolve(sample_facts)


def test_derived_values_on_the_sample_equal_the_config(sample_facts):
    """configs/sample.yaml spelt out target_year "2007/08"; as_at was "" (the latest month of the target year)."""
    params, derived = B.Params().resolve(sample_facts)
    assert (params.target_year, params.as_at) == ("2007/08", "2008-03")
    assert {d.name: d.value for d in derived} == {"target_year": "2007/08", "as_at": "2008-03"}


def test_function_defaults_are_the_params_defaults():
    """No second copy of a default: the building blocks default to the stage's settings."""
    d = B.Params.defaults()
    sig = inspect.signature(B.glide_path).parameters
    assert (sig["years"].default, sig["cap"].default, sig["band"].default, sig["envelope_growth"].default,
            sig["fund_from"].default) == (d["pace_years"], d["pace_cap"], d["band"], d["envelope_growth"], d["fund_from"])
    assert inspect.signature(B.recost_cells).parameters["recost"].default == d["recost"]
    assert inspect.signature(B.cost_curves).parameters["curves"].default == d["curves"]
    assert inspect.signature(B.annual_costs).parameters["components"].default == d["components"]
    assert inspect.signature(B.base_years_for).parameters["n"].default == d["base_years"]
    assert inspect.signature(B.completeness_for).parameters["completeness_months"].default == d["completeness_months"]


def test_run_resolves_auto_and_carries_its_settings(sample, sample_inputs):
    """run() with every setting at its default derives target_year and as_at from the data, measures the
    completeness of the latest months and sets the budgets with it."""
    res = B.run(sample_inputs, B.Params())
    assert res.params.target_year == "2007/08" and res.params.as_at == "2008-03" and not res.params.auto()
    assert res.completeness["month"].tolist() == ["2008-01", "2008-02", "2008-03"]
    assert res.settings["completeness_months"] == ["2008-01", "2008-02", "2008-03"]
    assert (res.cells.loc[res.cells["month"] == "2008-03", "factor"] < 1).all()
    # the adjusted months are in the target year, not the base years: the budgets are those set without them
    assert res.settings["historic_total"] == pytest.approx(sample[2].settings["historic_total"], rel=1e-12)
    march = res.cells[res.cells["month"] == "2008-03"]
    assert (march["cost_adjusted"] > march["cost"]).any()
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.params.band = 0.05  # type: ignore[misc]


def test_an_unknown_formula_term_is_refused_before_the_run(sample_facts):
    with pytest.raises(ValueError, match="formula: unknown term 'bogus'"):
        B.Params(formula="deprivation | bogus").resolve(sample_facts)
    B.Params(formula="deprivation + engaged | provider_cost_index").resolve(sample_facts)
