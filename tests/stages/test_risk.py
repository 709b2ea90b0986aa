"""Tests for pbc_analysis.stages.risk: the risk pool, its adequacy, completeness, forecasts and early warning,
by hand and on the synthetic PCT (back-test coverage, planted data lag)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import types

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pbc_analysis.core import calendar
from pbc_analysis.core.checks import ArgumentError
from pbc_analysis.publish import results
from pbc_analysis.stages import budgets as B
from pbc_analysis.stages import risk as R

# --------------------------------------------------------------------------------------------------
# the pool
# --------------------------------------------------------------------------------------------------

HC = pd.DataFrame({"patient_id": ["a", "b", "c", "d"], "practice_code": ["P1", "P1", "P1", "P2"],
                   "financial_year": ["2006/07"] * 4, "cost": [12000.0, 20000.0, 50000.0, 16000.0]})


def test_pool_charges_by_hand():
    """Threshold GBP 15,000: P1's patients of 20,000 and 50,000 put 5,000 + 35,000 = 40,000 in the pool and
    2 x 15,000 on the practice (the 12,000 patient stays wholly with the practice and is not counted);
    P2's 16,000 patient puts 1,000 in the pool. P3 has none."""
    c = R.pool_charges(HC, 15000, practices=["P1", "P2", "P3"]).set_index("practice_code")
    assert c.loc["P1", ["patients", "pool_charge", "practice_charge", "cost"]].tolist() == [2, 40000.0, 30000.0, 70000.0]
    assert c.loc["P2", ["patients", "pool_charge"]].tolist() == [1, 1000.0]
    assert c.loc["P3", ["patients", "pool_charge"]].tolist() == [0, 0.0]
    assert "patient_id" not in c.columns
    # re-priced costs: x 1.25 makes the 12,000 patient 15,000, still not above the threshold
    up = R.pool_charges(HC, 15000, inflation={"2006/07": 1.25}).set_index("practice_code")
    assert up.loc["P1", "pool_charge"] == pytest.approx(25000 - 15000 + 62500 - 15000)


def test_pool_parameter_errors():
    with pytest.raises(ValueError, match="threshold must be > 0, got -5"):
        R.pool_charges(HC, -5)
    with pytest.raises(ValueError, match="below the high_cost_patients reporting floor"):
        R.pool_charges(HC, 5000, reporting_floor=10000)
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=f"top_slice must be >= 0 and < 1, got {bad}"):
            R.apply_top_slice(pd.DataFrame({"practice_code": ["P1"], "budget": [100.0]}), bad)


def test_apply_top_slice_conserves_the_envelope_to_the_penny():
    """Budgets 100.00, 200.00 and 300.01 (envelope 600.01); a 3% top-slice leaves 97% = 58,200.97 pence,
    i.e. 58,201 pence of net budgets, split pro rata by largest remainder; the pool gets the other 1,800."""
    b = pd.DataFrame({"practice_code": ["P1", "P2", "P3"], "budget": [100.00, 200.00, 300.01]})
    net, pool = R.apply_top_slice(b, 0.03)
    assert int(np.round(net["net_budget"] * 100).sum()) == 58201
    assert pool == pytest.approx(18.00)
    assert int(np.round(net["net_budget"] * 100).sum()) + round(pool * 100) == 60001
    assert np.allclose(net["top_slice_contribution"] / net["budget"], 0.03, atol=0.0002)


def test_exhaustion_probability_against_the_poisson_analytic_case():
    """Every excess is GBP 1,000 and lambda = 50, so S = 1,000 N with N ~ Poisson(50) and a pool of 55,000 is
    exhausted when N > 55: P = 1 - F_Poisson(55; 50). The simulation must agree within 4 Monte Carlo SEs."""
    n = 200_000
    totals = R.simulate_pool(np.full(10, 1000.0), 50.0, n_sims=n, seed=11)
    p_true = stats.poisson.sf(55, 50)
    p_sim = R.exhaustion_probability(totals, 55_000)
    assert abs(p_sim - p_true) < 4 * np.sqrt(p_true * (1 - p_true) / n)
    # the smallest top-slice with P <= 5%: the pool must be 1,000 x the Poisson 95th percentile (the smallest
    # q with P(N > q) <= 0.05), here with an envelope of 1,000,000
    q = stats.poisson.ppf(0.95, 50)
    ts = R.smallest_top_slice(totals, 1_000_000, 0.05)
    assert ts * 1_000_000 == pytest.approx(1000 * q, abs=1000)  # one patient either side: Monte Carlo error


def test_compound_poisson_moments():
    """E[S] = lambda E[X] and Var[S] = lambda E[X^2] for a compound Poisson sum (with X resampled from the
    given excesses)."""
    x = np.array([500.0, 2000.0, 12000.0, 40000.0])
    lam, n = 30.0, 100_000
    s = R.simulate_pool(x, lam, n_sims=n, seed=5)
    mean, var = lam * x.mean(), lam * np.mean(x ** 2)
    assert abs(s.mean() - mean) < 4 * np.sqrt(var / n)
    assert s.var() == pytest.approx(var, rel=0.03)
    again = R.simulate_pool(x, lam, n_sims=n, seed=5)
    assert np.array_equal(s, again)  # the seed is the only source of randomness
    assert not np.array_equal(s, R.simulate_pool(x, lam, n_sims=n, seed=6))
    with pytest.raises(ValueError, match="seed must be a whole number, got 'abc'"):
        R.simulate_pool(x, lam, seed="abc")
    with pytest.raises(ValueError, match="seed must be >= 0, got -1"):
        R.simulate_pool(x, lam, seed=-1)
    with pytest.raises(ValueError, match="n_sims must be >= 100, got 10"):
        R.simulate_pool(x, lam, n_sims=10)


def test_smallest_top_slice_is_the_smallest_adequate_one():
    rng = np.random.default_rng(2)
    totals = rng.gamma(20, 50_000, size=5000)
    E = 30_000_000.0
    for a in (0.01, 0.05, 0.2):
        ts = R.smallest_top_slice(totals, E, a)
        assert R.exhaustion_probability(totals, ts * E) <= a
        below = np.sort(totals)[np.sort(totals) < ts * E]
        assert R.exhaustion_probability(totals, below[-1]) > a  # the next smaller pool is not adequate
    curve = R.adequacy_curve(totals, E, [0.0, 0.03, 1.0])
    assert curve["probability_exhausted"].tolist() == [1.0, R.exhaustion_probability(totals, 0.03 * E), 0.0]
    with pytest.raises(ValueError, match="max_probability must be > 0 and < 1"):
        R.smallest_top_slice(totals, E, 1.5)


# --------------------------------------------------------------------------------------------------
# completeness, profile, forecast, status
# --------------------------------------------------------------------------------------------------

def test_completeness_from_snapshots_by_hand():
    """January was recorded as 50, 90, 100, 100 in the extracts of January to April (lags 0 to 3); February
    as 30, 54, 60 (lags 0 to 2); March as 20, 40. With maturity at lag 2, January's final value is 100 and
    February's 60, so lag 0 is (50 + 30) / 160 = 0.5 and lag 1 (90 + 54) / 160 = 0.9. With the default
    maturity (the largest lag, 3) only January is mature: 0.5, 0.9, 1.0."""
    snap = pd.DataFrame({
        "extract": ["2007-01", "2007-02", "2007-03", "2007-04", "2007-02", "2007-03", "2007-04", "2007-03", "2007-04"],
        "month": ["2007-01"] * 4 + ["2007-02"] * 3 + ["2007-03"] * 2,
        "value": [50, 90, 100, 100, 30, 54, 60, 20, 40]})
    f2 = B.completeness_from_snapshots(snap, max_lag=2).set_index("lag")["factor"]
    assert f2.to_dict() == pytest.approx({0: 0.5, 1: 0.9})
    f3 = B.completeness_from_snapshots(snap).set_index("lag")["factor"]
    assert f3.to_dict() == pytest.approx({0: 0.5, 1: 0.9, 2: 1.0})


def test_completeness_table_supplied():
    t = B.completeness_table([0.97, 0.85, 0.55], "2008-03")
    assert t["month"].tolist() == ["2008-01", "2008-02", "2008-03"] and t["lag"].tolist() == [2, 1, 0]
    across = B.completeness_table([0.9, 0.5], "2008-01")  # across a calendar year
    assert across["month"].tolist() == ["2007-12", "2008-01"]
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        B.completeness_table([0.9, 1.2], "2008-03")


def _monthly(values: dict[str, list[float]]) -> pd.DataFrame:
    rows = []
    for fy, v in values.items():
        for m, x in zip(calendar.fy_months(fy), v):
            rows.append({"practice_code": "P1", "month": m, "financial_year": fy, "cost_adjusted": x,
                         "cost_at_target": x, "consortium": "C"})
    return pd.DataFrame(rows)


def test_seasonal_profile_forecast_and_backtest_by_hand():
    """Two flat years (100 a month) and one with everything in April. The profile of the flat years is 1/12 a
    month, so after 3 months of 100 the run-rate forecast is 300 / (3/12) = 1,200. In the back-test the
    April-only year is forecast with the flat years' profile: 1,200 / (1/12) = 14,400 after April for an
    outturn of 1,200; each flat year is forecast with a profile that includes the April-only year."""
    m = _monthly({"2004/05": [100.0] * 12, "2005/06": [100.0] * 12, "2006/07": [1200.0] + [0.0] * 11})
    prof = R.seasonal_profile(m, ["2004/05", "2005/06"])
    assert prof["share"].tolist() == pytest.approx([1 / 12] * 12) and prof["cumulative"].iloc[-1] == pytest.approx(1)
    f = R.forecast_outturn(m, "2005/06", prof)
    assert f.loc[f["k"] == 3, "forecast"].iloc[0] == pytest.approx(1200.0)
    assert f.loc[f["k"] == 3, "ytd"].iloc[0] == 300.0
    bt = R.backtest(m, ["2004/05", "2005/06", "2006/07"])
    odd = bt[(bt["financial_year"] == "2006/07") & (bt["k"] == 1)].iloc[0]
    assert odd["forecast"] == pytest.approx(14400.0) and odd["outturn"] == 1200.0
    assert odd["residual"] == pytest.approx((1200 - 14400) / np.sqrt(14400))
    flat = bt[(bt["financial_year"] == "2004/05") & (bt["k"] == 1)].iloc[0]
    # profile of 2005/06 and the April-only year: April share (1/12 + 1) / 2 = 13/24
    assert flat["forecast"] == pytest.approx(100 / (13 / 24))
    assert bt["k"].max() == 11
    with pytest.raises(ValueError, match="do not have 12 months"):
        R.seasonal_profile(m[m["month"] != "2004-07"], ["2004/05"])


def test_spc_signal_on_the_annualised_run_rate_by_hand():
    """A flat profile (1/12 a month) turns a month's cost into an annual run rate of 12 x cost. Base years
    alternate 100 and 110 a month: mean 1,260, average moving range 120, upper limit 1,260 + 2.66 x 120 =
    1,579.2. April 2006 at 200 (2,400 a year) is above it: a special cause of concern (higher is worse)."""
    m = _monthly({"2004/05": [100.0, 110.0] * 6, "2005/06": [100.0, 110.0] * 6, "2006/07": [200.0] + [105.0] * 11})
    flat = pd.DataFrame({"period": range(1, 13), "share": [1 / 12] * 12, "cumulative": np.arange(1, 13) / 12})
    sp = R.spc_signals(m, flat, ("2004-04", "2006-03"), "2006-06").set_index("month")
    assert sp.loc["2004-04", "run_rate"] == pytest.approx(1200.0) and sp.loc["2004-05", "run_rate"] == pytest.approx(1320.0)
    assert sp.loc["2006-04", "upl"] == pytest.approx(1260 + 2.66 * 120)
    assert sp.loc["2006-04", "special_cause"] == "concern"
    assert (sp.loc[sp.index < "2006-04", "special_cause"] == "none").all()


def test_prediction_interval_by_hand():
    """Errors with mean 1 and SD 2 (per sqrt of the forecast) at k = 3, forecast 10,000 (sqrt 100): centre
    10,000 + 100 = 10,100, 90% half-width 1.6449 x 2 x 100 = 329.0; an extra variance of 300^2 from the
    completeness factors widens it to 1.6449 x sqrt(200^2 + 300^2)."""
    em = pd.DataFrame({"k": [3, 12], "mean": [1.0, 0.0], "sd": [2.0, 0.0], "n": [10, 0]})
    z = stats.norm.ppf(0.95)
    c, lo, hi, _ = R.prediction_interval(np.array([10000.0]), np.array([3]), em, z)
    assert c[0] == pytest.approx(10100.0) and hi[0] - c[0] == pytest.approx(z * 200)
    _, lo2, hi2, _ = R.prediction_interval(np.array([10000.0]), np.array([3]), em, z, np.array([300.0 ** 2]))
    assert hi2[0] - lo2[0] == pytest.approx(2 * z * np.hypot(200, 300))


def test_rag_status_by_hand():
    """amber 2%, red 5%: 6% -> red; 3% with an SPC concern -> red; 3% -> amber; 1% with a concern -> amber;
    1% -> green; an underspend of -8% -> green."""
    v = np.array([0.06, 0.03, 0.03, 0.01, 0.01, -0.08])
    c = np.array([False, True, False, True, False, False])
    assert R.rag_status(v, c, 0.02, 0.05).tolist() == ["red", "red", "amber", "amber", "green", "green"]
    with pytest.raises(ValueError, match="red .* must be at least amber"):
        R.rag_status(v, c, amber=0.05, red=0.02)
    with pytest.raises(ValueError, match="amber must be >= 0"):
        R.rag_status(v, c, amber=-0.01)


# --------------------------------------------------------------------------------------------------
# the embedded synthetic PCT
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sample(sample_inputs, sample_truth):
    inputs, truth = sample_inputs, sample_truth
    res = B.run(inputs, B.Params(target_year="2007/08", completeness_months=3))
    # the truth's high-cost threshold is the table's reporting floor
    risk = R.assess_pool(inputs, res, R.Params(threshold=15000.0, top_slice=0.03, n_sims=5000, seed=1),
                         reporting_floor=truth["high_cost"]["threshold"])
    mon = R.monitor(inputs, res, R.Params(interval_level=0.90), as_at=res.params.as_at)
    return inputs, truth, res.completeness, res, risk, mon


def test_completeness_sources(sample):
    """Supplied factors end at the window's last month; snapshots give factors by lag (lag 0 = last month);
    without either, the data-quality model is used."""
    inputs, _, comp, _, _, _ = sample
    sup = B.completeness_for(inputs, completeness_factors=[0.9, 0.5])
    assert sup["month"].tolist() == ["2008-02", "2008-03"] and (sup["source"] == "supplied").all()
    snap = pd.DataFrame({"extract": ["2008-01", "2008-02", "2008-02", "2008-03"],
                         "month": ["2008-01", "2008-01", "2008-02", "2008-02"], "value": [60.0, 100.0, 50.0, 100.0]})
    fs = B.completeness_for(inputs, completeness_snapshots=snap)
    assert fs["month"].tolist() == ["2008-03"] and fs["factor"].iloc[0] == pytest.approx(0.55)  # (60 + 50) / 200
    assert (comp["source"] == "model").all()


def test_model_completeness_recovers_the_planted_lag(sample):
    """The truth thins the last three months to 97%, 85% and 55%; the model's intervals should cover them."""
    _, truth, comp, _, _, _ = sample
    planted = truth["completeness"]
    assert comp["month"].tolist() == sorted(planted)
    for r in comp.itertuples():
        assert r.ci_low <= planted[r.month] <= max(r.ci_high, 1.0), (r.month, r.factor, planted[r.month])


def test_completeness_adjustment_restores_the_latest_year(sample):
    """Recorded 2007/08 cost is short by the lag (about 5%); adjusted, it is within 1% of the truth's expected
    spend, as the complete years are."""
    _, truth, _, res, _, _ = sample
    expected = {r["financial_year"]: r["expected_spend"] for r in truth["pct_year"]}
    g = res.cells.groupby("financial_year")[["cost", "cost_adjusted"]].sum()
    assert g.loc["2007/08", "cost"] / expected["2007/08"] - 1 < -0.03
    for fy in expected:
        assert abs(g.loc[fy, "cost_adjusted"] / expected[fy] - 1) < 0.01, fy


def test_forecast_interval_covers_outturn_at_about_its_nominal_rate(sample):
    """Back-tests over the four complete past years: each year's 90% intervals (built from the other years'
    errors and profiles) should cover the actual outturn about 90% of the time: overall within 0.85-0.95, no
    year below 0.80. At 80% the overall coverage should be within 0.74-0.86."""
    _, _, _, _, _, mon = sample
    assert mon.settings["backtest_years"] == ["2003/04", "2004/05", "2005/06", "2006/07"]
    allk = mon.coverage[mon.coverage["k"] == 0]
    overall = allk["covered"].sum() / allk["n"].sum()
    assert 0.85 <= overall <= 0.95, overall
    assert (allk["coverage"] >= 0.80).all(), allk
    cov80 = R.backtest_coverage(mon.backtest, level=0.80)
    a80 = cov80[cov80["k"] == 0]
    assert 0.74 <= a80["covered"].sum() / a80["n"].sum() <= 0.86


def test_monitoring_status_and_consortia(sample):
    _, _, _, res, _, mon = sample
    st = mon.status
    assert len(st) == 60 and set(st["status"]) <= {"red", "amber", "green"}
    assert mon.settings["as_at"] == "2008-03" and mon.settings["months_elapsed"] == 12
    # budgets are the first year of the glide path; variance and status follow the rules
    b = res.statement.set_index("practice_code")["budget"]
    assert np.allclose(st["budget"], b.reindex(st["practice_code"]).to_numpy())
    assert np.allclose(st["variance"], st["forecast_centre"] / st["budget"] - 1)
    assert (R.rag_status(st["variance"], st["spc_concern_to_date"], 0.02, 0.05) == st["status"].to_numpy()).all()
    assert ((st["lower"] <= st["forecast_centre"]) & (st["forecast_centre"] <= st["upper"])).all()
    # after 12 months the forecast is the completeness-adjusted actual
    assert np.allclose(st["forecast"], st["ytd"])
    # consortia: sums of their practices
    cs = mon.consortium_status.set_index("consortium")
    by = st.groupby("consortium")[["ytd", "budget"]].sum()
    assert np.allclose(cs.loc[by.index, "ytd"], by["ytd"]) and np.allclose(cs.loc[by.index, "budget"], by["budget"])
    # month by month: one row per practice and month of the year, year to date increasing
    m = mon.monthly
    assert m.groupby("practice_code")["k"].apply(list).map(len).eq(12).all()
    assert (m.groupby("practice_code")["ytd"].diff().dropna() >= 0).all()


def test_monitoring_as_at_an_earlier_month(sample):
    inputs, _, comp, res, _, _ = sample
    mon = R.monitor(inputs, res, R.Params(), as_at="2007-09")
    assert mon.settings["months_elapsed"] == 6 and mon.status["month"].eq("2007-09").all()
    assert (mon.status["upper"] > mon.status["lower"]).all()
    assert mon.completeness is comp
    with pytest.raises(ValueError, match="as_at '2008-09' is not a month of 2007/08"):
        R.monitor(inputs, res, R.Params(), as_at="2008-09")


def test_pool_on_the_sample(sample):
    """The simulated pool charge has the compound Poisson mean lambda E[X]; the actual 2007/08 charge (not
    used in the simulation, which resamples 2005/06 and 2006/07) falls inside the simulated distribution."""
    _, _, _, res, risk, _ = sample
    s = risk.settings
    assert abs(risk.totals.mean() - s["expected_charge"]) < 4 * s["sd_charge_analytic"] / np.sqrt(s["n_sims"])
    assert 0.005 < s["actual_percentile"] < 0.995
    assert s["probability_exhausted"] == R.exhaustion_probability(risk.totals, s["pool"])
    net = risk.net_budgets
    assert int(np.round(net["net_budget"] * 100).sum()) + round(s["pool"] * 100) == round(res.settings["envelope"] * 100)
    # every base-year patient above the threshold is resampled
    base = risk.charges[risk.charges["financial_year"].isin(res.settings["base_years"])]
    assert s["excess_resampled"] == base["patients"].sum()


def test_tables_headline_and_no_patient_rows(sample):
    _, _, _, res, risk, mon = sample
    stage = R.Result(risk, mon, R.Params(n_sims=5000, seed=1))
    tables = stage.tables()
    assert list(tables) == ["risk_pool_charges", "risk_pool_years", "risk_adequacy", "risk_net_budgets",
                            "risk_completeness", "risk_profile", "risk_monitoring", "risk_monitoring_consortium",
                            "risk_status", "risk_backtest_coverage", "risk_spc", "risk_thresholds"]
    for t in tables.values():
        assert "patient_id" not in t.columns
    head = {**res.headline(), **stage.headline()}
    assert list(head)[-2:] == ["risk", "monitoring"]
    assert stage.describe() == R.describe(head["risk"], head["monitoring"])
    assert "**Risk pool.**" in stage.describe() and "as at 2008-03" in stage.describe()
    json.loads(results.dumps(head))
    assert head["risk"]["pool_gbp"] == pytest.approx(risk.settings["pool"])
    assert head["monitoring"]["backtest_coverage_overall"] == pytest.approx(
        mon.coverage.loc[mon.coverage["k"] == 0, "covered"].sum() / mon.coverage.loc[mon.coverage["k"] == 0, "n"].sum(),
        abs=1e-4)
    assert sum(head["monitoring"]["practices"].values()) == 60


# --------------------------------------------------------------------------------------------------
# the stage's settings and entry point
# --------------------------------------------------------------------------------------------------

def test_params_defaults_are_the_notebooks():
    d = R.Params.defaults()
    assert d == {"threshold": 15000.0, "top_slice": 0.03, "max_probability": 0.05, "n_sims": 10000, "seed": 20070401,
                 "interval_level": 0.90, "amber": 0.02, "red": 0.05, "max_spc_charts": 4,
                 "threshold_options": [10000.0, 15000.0, 20000.0]}
    assert not set(d) & set(B.Params.defaults())  # no name in both stages of the notebook
    assert all(not info.derive for info in R.Params.settings().values())


@pytest.mark.parametrize("field, value, message", [
    ("threshold", 0.0, r"threshold must be > 0, got 0.0"),
    ("top_slice", 1.0, r"top_slice must be >= 0 and < 1, got 1.0"),
    ("max_probability", 0.0, r"max_probability must be > 0 and < 1, got 0.0"),
    ("n_sims", 10, r"n_sims must be >= 100, got 10"),
    ("n_sims", 1e4, r"n_sims must be int, got float 10000.0"),
    ("seed", -1, r"seed must be >= 0, got -1"),
    ("interval_level", 1.0, r"interval_level must be > 0 and < 1, got 1.0"),
    ("amber", -0.01, r"amber must be >= 0, got -0.01"),
    ("max_spc_charts", -1, r"max_spc_charts must be >= 0, got -1"),
])
def test_params_refuse_bad_values_naming_the_setting(field, value, message):
    with pytest.raises(ArgumentError, match=message):
        R.Params(**{field: value})


def test_params_red_must_be_at_least_amber():
    with pytest.raises(ArgumentError, match=r"red \(0.02\) must be at least amber \(0.05\)"):
        R.Params(amber=0.05, red=0.02)
    assert R.Params(amber=0.05, red=0.05).red == 0.05


def test_params_resolve_on_the_sample_changes_nothing(sample_facts):
    params, derived = R.Params().resolve(sample_facts)
    assert params == R.Params() and derived == [] and params.rules(sample_facts) == []


def test_function_defaults_are_the_params_defaults():
    d = R.Params.defaults()
    assert inspect.signature(R.pool_charges).parameters["threshold"].default == d["threshold"]
    sim = inspect.signature(R.simulate_pool).parameters
    assert (sim["n_sims"].default, sim["seed"].default) == (d["n_sims"], d["seed"])
    assert inspect.signature(R.smallest_top_slice).parameters["max_probability"].default == d["max_probability"]
    assert inspect.signature(R.backtest_coverage).parameters["level"].default == d["interval_level"]
    rag = inspect.signature(R.rag_status).parameters
    assert (rag["amber"].default, rag["red"].default) == (d["amber"], d["red"])


def test_month_of_year():
    assert R.month_of_year(pd.Series(["2007-04", "2007-12", "2008-01", "2008-03", "2007-04"])).tolist() == [1, 9, 10, 12, 1]


def test_run_is_the_pool_and_monitoring_with_its_settings(sample):
    """run() = assess_pool + monitor at the budget stage's as_at, with the risk stage's settings."""
    inputs, _, _, res, _, _ = sample
    params = R.Params(n_sims=2000, seed=3, interval_level=0.8)
    out = R.run(inputs, params, res)
    assert out.params is params and out.pool.settings["n_sims"] == 2000 and out.pool.settings["seed"] == 3
    direct = R.assess_pool(inputs, res, params)
    assert np.array_equal(out.pool.totals, direct.totals)
    assert out.monitoring.settings["as_at"] == res.params.as_at == "2008-03"
    assert out.monitoring.settings["level"] == 0.8 and (out.monitoring.coverage["level"] == 0.8).all()


def test_run_without_a_month_of_the_target_year_skips_monitoring(sample):
    """Budgets for 2008/09 (after the window, tariff projected): the pool is assessed, monitoring is not
    available, and the monitoring tables are not written."""
    inputs = sample[0]
    res = B.run(inputs, B.Params(target_year="2008/09", tariff_uplift=0.025, pace_years=1))
    assert res.params.as_at == "2008-03"
    out = R.run(inputs, R.Params(n_sims=500), res)
    assert not out.monitoring.available and "no month of 2008/09" in out.monitoring.note
    assert set(out.tables()) == {"risk_pool_charges", "risk_pool_years", "risk_adequacy", "risk_net_budgets",
                                 "risk_completeness", "risk_thresholds"}
    assert out.headline()["monitoring"] == {"available": False, "note": out.monitoring.note}
    assert "**In-year monitoring.** The data hold no month of 2008/09" in out.describe()


# --------------------------------------------------------------------------------------------------
# one budget basis; the threshold table and its recommendation
# --------------------------------------------------------------------------------------------------

def test_basis_budgets_by_hand():
    """Supplied: the issued budget where there is one, the set budget (counted, named) where not; set: the stage's.
    The envelope is the sum of the budgets used, so net budgets + pool = envelope still holds."""
    statement = pd.DataFrame({"practice_code": ["A", "B", "C"], "consortium": ["X", "X", "Y"],
                              "budget": [100.0, 200.0, 300.0]})
    res = B.Result(*[pd.DataFrame()] * 11, cells=pd.DataFrame(), lists=pd.DataFrame(),
                   settings={"target_year": "2007/08", "envelope": 600.0}, params=B.Params(budget_basis="supplied"))
    res = dataclasses.replace(res, statement=statement)
    supplied = pd.DataFrame({"practice_code": ["A", "B", "A"], "financial_year": ["2007/08", "2007/08", "2006/07"],
                             "budget": [110.0, 190.0, 90.0]})
    inputs = types.SimpleNamespace(budgets=supplied)
    out, table = R.basis_budgets(inputs, res)
    assert out.statement["budget"].tolist() == [110.0, 190.0, 300.0] and out.settings["envelope"] == 600.0
    assert table["budget_source"].tolist() == ["supplied", "supplied", "set (no supplied budget)"]
    assert table["set_budget"].tolist() == [100.0, 200.0, 300.0] and np.isnan(table["supplied_budget"].iloc[2])
    assert out.statement["consortium"].tolist() == ["X", "X", "Y"] and res.statement["budget"].tolist() == [100, 200, 300]
    same, table_set = R.basis_budgets(inputs, dataclasses.replace(res, params=B.Params(budget_basis="set")))
    assert same.statement["budget"].tolist() == [100, 200, 300] and same.settings["envelope"] == 600.0
    assert table_set["budget_source"].tolist() == ["set"] * 3 and table_set["budget"].tolist() == [100, 200, 300]
    none, table_none = R.basis_budgets(types.SimpleNamespace(budgets=None), res)
    assert none is res and (table_none["budget_source"] == "set (no supplied budget)").all()
    with pytest.raises(ArgumentError, match="budget_basis must be one of"):
        B.Params(budget_basis="historic")


def test_run_uses_one_basis_for_the_pool_and_monitoring(sample):
    """On the sample (budgets.csv has 2007/08 for every practice) the default basis is the supplied budget: the
    net budgets, the envelope the pool is a share of, and monitoring's budget are all the issued ones."""
    inputs, _, _, res, _, _ = sample
    out = R.run(inputs, R.Params(n_sims=2000, seed=3), res)
    supplied = inputs.budgets[inputs.budgets["financial_year"] == "2007/08"].set_index("practice_code")["budget"]
    net = out.tables()["risk_net_budgets"].set_index("practice_code")
    assert (net["budget_source"] == "supplied").all()
    assert np.allclose(net["budget"], supplied.reindex(net.index)) and np.allclose(net["supplied_budget"], net["budget"])
    assert np.allclose(net["set_budget"], res.statement.set_index("practice_code")["budget"].reindex(net.index))
    assert out.pool.settings["envelope"] == pytest.approx(supplied.sum(), abs=0.01)
    assert out.pool.settings["pool"] == pytest.approx(0.03 * supplied.sum(), abs=0.01)
    status = out.monitoring.status.set_index("practice_code")
    assert np.allclose(status["budget"], supplied.reindex(status.index))
    charges = out.pool.charges[out.pool.charges["financial_year"] == "2007/08"].set_index("practice_code")["pool_charge"]
    assert np.allclose(net["pool_charge"], charges.reindex(net.index).fillna(0.0))
    head = out.headline()["risk"]
    assert head["budget_basis"] == "supplied" and head["practices_without_supplied_budget"] == 0
    assert "**Budget basis.** The pool's top-slice and in-year monitoring use the budget issued" in out.describe()
    on_set = R.run(inputs, R.Params(n_sims=2000, seed=3), dataclasses.replace(res, params=B.Params(
        **{**res.params.values(), "budget_basis": "set"})))
    assert on_set.pool.settings["envelope"] == pytest.approx(res.settings["envelope"])
    assert "use the budgets set here" in on_set.describe()


def test_threshold_table_and_recommendation(sample):
    """The table repeats the pool simulation at each threshold: a higher threshold means fewer patients and a smaller
    charge; at the run's threshold it equals the pool's own figures; the text recommends the smallest adequate
    top-slice when the current one is not, and says so when it is."""
    inputs, _, _, res, _, _ = sample
    out = R.run(inputs, R.Params(n_sims=2000, seed=3), res)
    t = out.thresholds
    assert t["threshold"].tolist() == [10000.0, 15000.0, 20000.0]
    assert t["expected_patients"].is_monotonic_decreasing and t["expected_charge"].is_monotonic_decreasing
    assert t["smallest_adequate_top_slice"].is_monotonic_decreasing
    now = t.set_index("threshold").loc[15000.0]
    s = out.pool.settings
    assert now["smallest_adequate_top_slice"] == pytest.approx(s["smallest_top_slice"])
    assert now["probability_exhausted"] == pytest.approx(s["probability_exhausted"])
    assert now["expected_charge"] == pytest.approx(s["expected_charge"])
    text = out.describe()
    if s["smallest_top_slice"] > 0.03:
        assert f"set it to at least {s['smallest_top_slice']:.2%}" in text
    big = R.run(inputs, R.Params(n_sims=2000, seed=3, top_slice=0.5), res)
    assert "The 50.0% top-slice is adequate at the GBP 15,000 threshold" in big.describe()
    assert "Other thresholds: GBP 10,000 needs" in text and "GBP 20,000 needs" in text
    assert "Red: forecast overspend of 5% of budget or more, or 2% or more with a special cause" in text
    with pytest.raises(ArgumentError, match="threshold_options must be positive"):
        R.Params(threshold_options=[10000.0, -5.0])
