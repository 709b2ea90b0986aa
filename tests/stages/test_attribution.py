"""Savings attribution: exact decompositions, the multi-fixed-effect Poisson, the ledger, sharing rules and
back tests on the embedded synthetic PCT (``data/sample``, whose ``ground_truth.json`` holds the truth)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from pbc_analysis.core.checks import ArgumentError
from pbc_analysis.stages import attribution as at
from pbc_analysis.stages import facts as stage_facts
from pbc_analysis.synth import SynthParams, generate, without_provider_cut

F = list(at.FACTORS)


# ----------------------------------------------------------------------------------------------------------
# Hand-computed decompositions
# ----------------------------------------------------------------------------------------------------------


def test_lmdi_two_factors_by_hand():
    # V = a x b: (2, 3) -> (4, 3.5), V0 = 6, V1 = 14
    L = (14 - 6) / math.log(14 / 6)
    parts = at.lmdi(np.array([6.0]), np.array([14.0]), np.array([[2.0, 3.0]]), np.array([[4.0, 3.5]]))[0]
    assert parts[0] == pytest.approx(L * math.log(2.0), rel=1e-12)
    assert parts[1] == pytest.approx(L * math.log(3.5 / 3.0), rel=1e-12)
    assert parts.sum() == pytest.approx(8.0, rel=1e-12)


def test_shapley_two_factors_by_hand():
    # each factor: the average of its effect switched first and switched second
    parts = at.shapley(np.array([[2.0, 3.0]]), np.array([[4.0, 3.5]]))[0]
    assert parts[0] == pytest.approx(0.5 * ((4 * 3 - 2 * 3) + (4 * 3.5 - 2 * 3.5)))  # 6.5
    assert parts[1] == pytest.approx(0.5 * ((2 * 3.5 - 2 * 3) + (4 * 3.5 - 4 * 3)))  # 1.5
    assert parts.sum() == pytest.approx(8.0)


def test_three_factors_by_hand():
    x0, x1 = np.array([2.0, 5.0, 10.0]), np.array([3.0, 4.0, 12.0])
    v0, v1 = 100.0, 144.0
    L = (v1 - v0) / math.log(v1 / v0)
    lm = at.lmdi(np.array([v0]), np.array([v1]), x0[None], x1[None])[0]
    np.testing.assert_allclose(lm, [L * math.log(1.5), L * math.log(0.8), L * math.log(1.2)], rtol=1e-12)
    # Shapley, 3 factors: weight 1/3 when the others are both at base or both at target, 1/6 when mixed
    a0, b0, c0 = x0
    a1, b1, c1 = x1
    sa = (a1 - a0) * (b0 * c0 / 3 + (b1 * c0 + b0 * c1) / 6 + b1 * c1 / 3)
    sb = (b1 - b0) * (a0 * c0 / 3 + (a1 * c0 + a0 * c1) / 6 + a1 * c1 / 3)
    sc = (c1 - c0) * (a0 * b0 / 3 + (a1 * b0 + a0 * b1) / 6 + a1 * b1 / 3)
    np.testing.assert_allclose(at.shapley(x0[None], x1[None])[0], [sa, sb, sc], rtol=1e-12)
    assert sa + sb + sc == pytest.approx(v1 - v0, rel=1e-12)


def test_shapley_equals_average_over_orders_with_zeros():
    from itertools import permutations

    rng = np.random.default_rng(4)
    x0, x1 = rng.uniform(0, 2, (30, 5)), rng.uniform(0, 2, (30, 5))
    x0[0, 1] = x1[1, 3] = x0[2, 0] = x1[2, 0] = 0.0
    brute = np.zeros_like(x0)
    for order in permutations(range(5)):
        cur = x0.copy()
        for k in order:
            before = cur.prod(axis=1)
            cur[:, k] = x1[:, k]
            brute[:, k] += cur.prod(axis=1) - before
    np.testing.assert_allclose(at.shapley(x0, x1), brute / 120, rtol=1e-12, atol=1e-12)


def test_lmdi_zero_rules():
    # new cell: the factor that is zero at base gets the whole change; closed cell: the one zero at target
    parts = at.lmdi(np.array([0.0, 8.0, 0.0]), np.array([6.0, 0.0, 0.0]),
                    np.array([[2.0, 0.0, np.nan], [2.0, 2.0, 2.0], [1.0, 0.0, np.nan]]),
                    np.array([[2.0, 3.0, 1.0], [2.0, 4.0, 0.0], [1.0, 0.0, np.nan]]))
    np.testing.assert_allclose(parts[0], [0.0, 6.0, 0.0])
    np.testing.assert_allclose(parts[1], [0.0, 0.0, -8.0])
    np.testing.assert_allclose(parts[2], [0.0, 0.0, 0.0])


def _random_cells(seed: int, n_practices: int = 7, zero_rate: float = 0.25) -> pd.DataFrame:
    """Cells with small counts, zeros, new and closed cells, chain gaps and missing tariffs."""
    rng = np.random.default_rng(seed)
    rows = []
    years = ["2004/05", "2005/06", "2006/07"]
    for p in range(n_practices):
        lst = {y: rng.uniform(2000, 9000) for y in years}
        for v in ("RA1", "RB2"):
            for s in ("100", "110", "180"):
                pods = ["ae"] if s == "180" else ["first_op", "followup_op", "elective", "non_elective"]
                R = {y: float(rng.poisson(20) * (rng.random() > zero_rate)) for y in years}
                Fi = {y: float(rng.binomial(int(R[y]), 0.9) if rng.random() > 0.1 else rng.poisson(2)) for y in years}
                for pod in pods:
                    for y in years:
                        if pod == "first_op":
                            A = Fi[y]
                        elif pod in ("followup_op", "elective"):
                            A = float(rng.poisson(2 * Fi[y] + 0.3) * (rng.random() > zero_rate / 2))
                        else:
                            A = float(rng.poisson(15) * (rng.random() > zero_rate))
                        T = rng.uniform(80, 3000) if rng.random() > 0.05 or A > 0 else np.nan
                        rows.append({"practice_code": f"P{p:05d}", "provider_code": v, "specialty_code": s, "pod": pod,
                                     "financial_year": y, "list": lst[y],
                                     "weighted_list": lst[y] * rng.uniform(0.8, 1.2) * (rng.random() > 0.02),
                                     "referrals": R[y] if pod != "ae" and pod != "non_elective" else np.nan,
                                     "first": Fi[y] if pod != "ae" and pod != "non_elective" else np.nan,
                                     "activity": A, "cost": A * (0 if np.isnan(T) else T) * rng.uniform(0.9, 1.1),
                                     "tariff": T})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("method", ["lmdi", "shapley"])
@pytest.mark.parametrize("seed", range(8))
def test_parts_add_up_exactly_for_every_aggregation(method, seed):
    cells = _random_cells(seed)
    parts = at.decompose(cells, "2004/05", method=method)
    assert np.all(np.isfinite(parts[F].to_numpy()))
    for by in (["practice_code", "provider_code", "specialty_code", "pod"], ["practice_code"], ["provider_code"],
               ["specialty_code"], ["pod"], []):
        g = parts.groupby(by + ["financial_year"])[F + ["change"]].sum()
        err = np.abs(g[F].sum(axis=1) - g["change"]) / np.maximum(np.abs(g["change"]), 1e-300)
        assert err.max() < 1e-9, (by, err.max())
    # the observed change is the change in the cells' cost
    tot = cells.groupby("financial_year")["cost"].sum()
    got = parts.groupby("financial_year")["change"].sum()
    np.testing.assert_allclose(got.to_numpy(), (tot.loc[got.index] - tot.loc["2004/05"]).to_numpy(), rtol=1e-12)


def test_factors_multiply_to_cost_with_chain_gaps_and_zeros():
    cells = _random_cells(11)
    fac = at.spend_factors(cells)
    X = fac[F].to_numpy()
    cost = fac["cost"].to_numpy()
    defined = ~np.isnan(X).any(axis=1)
    # every cell with spend has all factors defined and their product is its cost
    assert defined[cost > 0].all()
    np.testing.assert_allclose(np.prod(X[cost > 0], axis=1), cost[cost > 0], rtol=1e-10)
    # a cell without spend has exactly one zero factor (the first zero of its chain) or, when its referral
    # rate is zero, the rest undefined
    z = cost == 0
    assert ((np.nan_to_num(X[z], nan=1.0) == 0).sum(axis=1) == 1).all()


def test_chain_gap_new_and_closed_specialty_rules():
    base = dict(practice_code="P00001", provider_code="RA1", specialty_code="110", list=5000.0,
                weighted_list=5000.0, tariff=100.0)
    rows = [
        # follow-ups with no first attendance in 2005/06 (referred the year before): a chain gap
        dict(base, pod="followup_op", financial_year="2004/05", referrals=10.0, first=8.0, activity=16.0, cost=1600.0),
        dict(base, pod="followup_op", financial_year="2005/06", referrals=0.0, first=0.0, activity=4.0, cost=400.0),
        # a specialty the practice starts using (new) and one it stops (closed)
        dict(base, specialty_code="330", pod="first_op", financial_year="2004/05", referrals=0.0, first=0.0,
             activity=0.0, cost=0.0),
        dict(base, specialty_code="330", pod="first_op", financial_year="2005/06", referrals=5.0, first=5.0,
             activity=5.0, cost=500.0),
        dict(base, specialty_code="410", pod="first_op", financial_year="2004/05", referrals=3.0, first=3.0,
             activity=3.0, cost=300.0),
        dict(base, specialty_code="410", pod="first_op", financial_year="2005/06", referrals=0.0, first=0.0,
             activity=0.0, cost=0.0),
    ]
    cells = pd.DataFrame(rows)
    fac = at.spend_factors(cells)
    gap = fac[(fac["specialty_code"] == "110") & (fac["financial_year"] == "2005/06")].iloc[0]
    assert gap["referral_rate"] == pytest.approx(4 / 5000)  # referrals := first := follow-ups (4)
    assert np.prod(gap[F].to_numpy(float)) == pytest.approx(400.0)
    for method in ("lmdi", "shapley"):
        parts = at.decompose(cells, "2004/05", method=method).set_index("specialty_code")
        assert parts.loc["330", F].sum() == pytest.approx(500.0)
        assert parts.loc["410", F].sum() == pytest.approx(-300.0)
        if method == "lmdi":  # the whole change goes to the zero factor: referrals started / stopped
            assert parts.loc["330", "referral_rate"] == pytest.approx(500.0)
            assert parts.loc["410", "referral_rate"] == pytest.approx(-300.0)


def test_decompose_refuses_missing_rows_and_bad_method():
    cells = _random_cells(1)
    with pytest.raises(ValueError, match="method must be one of"):
        at.decompose(cells, "2004/05", method="ida")
    with pytest.raises(ValueError, match="every cell"):
        at.decompose(cells.iloc[1:], "2004/05")
    with pytest.raises(ValueError, match="base_year '2001/02' is not in cells"):
        at.decompose(cells, "2001/02")


# ----------------------------------------------------------------------------------------------------------
# The causal model (its Poisson engine: tests/methods/test_ppml.py)
# ----------------------------------------------------------------------------------------------------------


def _small_panel(seed: int = 3, practices: int = 8, months: int = 14) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    cohort = {p: [0, 0, 0, 6, 6, 9, 9, 11][p % 8] for p in range(practices)}
    for p in range(practices):
        for v in ("RA1", "RB2"):
            share = rng.uniform(0.3, 0.7)
            for s in ("100", "110"):
                for m in range(months):
                    wl = 5000 * (1 + 0.01 * m) * (1 + 0.1 * p)
                    eff = 0.8 if cohort[p] and m + 1 >= cohort[p] else 1.0
                    mu = wl / 200 * share * (1.0 if s == "100" else 0.6) * (1 + 0.1 * np.sin(m)) * eff
                    rows.append({"practice_code": f"P{p:05d}", "provider_code": v, "specialty_code": s,
                                 "month": f"2005-{m + 1:02d}" if m < 12 else f"2006-{m - 11:02d}",
                                 "referrals": rng.poisson(mu), "weighted_list": wl, "cohort": cohort[p]})
    df = pd.DataFrame(rows)
    for c in ("practice_code", "provider_code", "specialty_code", "month"):
        df[c] = df[c].astype("category")
    return df


def _flat_cost(panel: pd.DataFrame) -> pd.DataFrame:
    idx = pd.MultiIndex.from_product([panel["provider_code"].cat.categories, panel["specialty_code"].cat.categories,
                                      panel["month"].cat.categories, list(at.ELECTIVE_PODS)],
                                     names=["provider_code", "specialty_code", "month", "pod"]).to_frame(index=False)
    return idx.assign(cost_per_referral=np.tile([150.0, 200.0, 500.0], len(idx) // 3))


def test_imputation_equals_saturated_etwfe_and_statsmodels():
    panel = _small_panel()
    et = at.etwfe_poisson(panel, cells="observation")
    res = at.practice_action(panel, _flat_cost(panel), inference="model", by=None)
    # counterfactual referrals of engaged practice-months: fast imputation = generic PPML with one
    # coefficient per engaged observation
    ours = res.practice_year.groupby("financial_year")["counterfactual_referrals"].sum()
    tr = et[et["treated"]].assign(fy=lambda d: np.where(d["month"].astype(str) >= "2005-04", "2005/06", "2004/05"))
    theirs = tr.groupby("fy")["counterfactual"].sum()
    np.testing.assert_allclose(ours.to_numpy(), theirs.loc[ours.index].to_numpy(), rtol=1e-8)
    # ... = statsmodels' GLM with dummies (practice x provider x specialty, provider x specialty x month, one
    # dummy per engaged observation)
    p = panel.assign(pair=panel["practice_code"].astype(str) + panel["provider_code"].astype(str)
                     + panel["specialty_code"].astype(str),
                     pm=panel["provider_code"].astype(str) + panel["specialty_code"].astype(str)
                     + panel["month"].astype(str))
    first = p["month"].astype(str) == p["month"].astype(str).min()  # each provider-specialty's first month out
    X = pd.concat([pd.get_dummies(p["pair"], dtype=float),
                   pd.get_dummies(p["pm"].where(~first, "base"), dtype=float).drop(columns="base")], axis=1).to_numpy()
    treated = et["treated"].to_numpy()
    T = np.zeros((len(p), treated.sum()))
    T[np.flatnonzero(treated), np.arange(treated.sum())] = 1.0
    glm = sm.GLM(p["referrals"].to_numpy(float), np.column_stack([X, T]), family=sm.families.Poisson(),
                 offset=np.log(p["weighted_list"].to_numpy(float))).fit(tol=1e-13, maxiter=300)
    np.testing.assert_allclose(et.attrs["coef"], glm.params[-treated.sum():], atol=1e-6)
    # Wooldridge's cohort x month interactions: close, not identical (engaged months inform the practice effects)
    wo = at.etwfe_poisson(panel, cells="cohort_month")
    assert wo.loc[wo["treated"], "counterfactual"].sum() == pytest.approx(tr["counterfactual"].sum(), rel=0.02)


def test_precision_floor_by_hand():
    """The floor: the engaged practices' own Poisson noise plus the month effects learned from untreated
    referrals, with every practice's level taken as known (computed here from the generic fit)."""
    panel = _small_panel()
    res = at.practice_action(panel, _flat_cost(panel), inference="model", by=None)
    et = at.etwfe_poisson(panel, cells="observation")
    c = 150.0 + 200.0 + 500.0  # cost per referral of _flat_cost
    d = et.assign(fy=np.where(et["month"].astype(str) >= "2005-04", "2005/06", "2004/05"),
                  untreated_referrals=np.where(et["treated"], 0, et["referrals"]),
                  cf_t=np.where(et["treated"], et["counterfactual"], 0.0))
    tr = d[d["treated"]].copy()
    # the treated mean: counterfactual x the cohort x specialty x month ratio observed / counterfactual
    key = ["cohort", "specialty_code", "month"]
    ratio = tr.groupby(key, observed=True)["referrals"].transform("sum") / \
        tr.groupby(key, observed=True)["counterfactual"].transform("sum")
    own = (c ** 2 * tr["counterfactual"] * ratio).groupby(tr["fy"]).sum()
    cell = d.groupby(["fy", "provider_code", "specialty_code", "month"], observed=True)[
        ["cf_t", "untreated_referrals"]].sum()
    cell = cell[cell["cf_t"] > 0]
    months_part = ((c * cell["cf_t"]) ** 2 / cell["untreated_referrals"]).groupby(level="fy").sum()
    expected = res.fit["dispersion"] * (own + months_part)
    pct = res.aggregates[res.aggregates["target"] == "pct"].set_index("financial_year")
    np.testing.assert_allclose(pct["std_error_floor"] ** 2, expected.loc[pct.index], rtol=1e-6)
    # knowing the practice effects can only help: the floor is below the model's standard error
    assert (pct["std_error_floor"] < pct["std_error_model"]).all()
    assert (pct["std_error_floor"] > 0.5 * pct["std_error_model"]).all()


def test_precision_table_by_hand():
    agg = pd.DataFrame({"target": ["pct", "pct", "consortium:A"], "financial_year": ["2006/07", "2007/08", "2007/08"],
                        "savings": [100.0, -50.0, 10.0], "std_error": [20.0, 10.0, 5.0],
                        "std_error_floor": [10.0, 5.0, 4.0], "std_error_own_noise": [6.0, 3.0, 4.0]})
    t = at.precision(agg, tolerance=0.10)
    assert t["target"].tolist() == ["pct", "pct"]
    np.testing.assert_allclose(t["std_error_controls"], [8.0, 4.0])  # sqrt(10^2 - 6^2), sqrt(5^2 - 3^2)
    np.testing.assert_allclose(t["relative_floor"], [0.1, 0.1])  # a negative saving is measured by its size
    np.testing.assert_allclose(t["relative_own_noise"], [0.06, 0.06])
    np.testing.assert_allclose(t["floor_half_width"], [0.1 * 1.959963984540054] * 2)
    np.testing.assert_allclose(t["chance_within_tolerance_at_floor"], [0.6826894921370859] * 2)  # 2 Phi(1) - 1
    assert at.precision(agg, target="consortium:A")["chance_within_tolerance_at_floor"].iloc[0] == pytest.approx(
        2 * 0.5987063256829237 - 1)  # 2 Phi(0.25) - 1: 10% of 10 is a quarter of the floor
    with pytest.raises(ValueError, match="no rows for target 'ccg'; targets: pct, consortium:A"):
        at.precision(agg, target="ccg")
    with pytest.raises(ValueError, match="tolerance must be > 0 and < 1, got 10"):
        at.precision(agg, tolerance=10)
    with pytest.raises(ValueError, match="aggregates has no column"):
        at.precision(agg.drop(columns="std_error_floor"))


def test_practice_action_parameters_and_reproducibility():
    panel = _small_panel()
    cost = _flat_cost(panel)
    with pytest.raises(ValueError, match="inference must be one of"):
        at.practice_action(panel, cost, inference="bayes")
    with pytest.raises(ValueError, match="confidence must be > 0 and < 1, got 95"):
        at.practice_action(panel, cost, confidence=95)
    with pytest.raises(ValueError, match="bootstrap_weights must be one of 'webb', 'rademacher'; got 'webbs'"):
        at.practice_action(panel, cost, bootstrap_weights="webbs")
    with pytest.raises(ValueError, match="n_boot must be >= 1, got 0"):
        at.practice_action(panel, cost, n_boot=0)
    with pytest.raises(ValueError, match="panel has no column"):
        at.practice_action(panel.drop(columns="weighted_list"), cost)
    a = at.practice_action(panel, cost, inference="wild", n_boot=199, seed=5, by=None)
    b = at.practice_action(panel, cost, inference="wild", n_boot=199, seed=5, by=None)
    pd.testing.assert_frame_equal(a.aggregates, b.aggregates)
    agg = a.aggregates
    assert (agg["ci_low"] < agg["savings"]).all() and (agg["savings"] < agg["ci_high"]).all()
    # model, cluster-robust and bootstrap standard errors agree roughly on pure Poisson data
    ratio = agg["std_error_cluster"] / agg["std_error_model"]
    assert ((ratio > 0.4) & (ratio < 2.5)).all()
    m = at.practice_action(panel, cost, inference="max", by=None).aggregates
    assert np.allclose(m["std_error"], np.maximum(m["std_error_model"], m["std_error_cluster"]))
    assert np.allclose(m["ci_high"] - m["savings"], 1.959963984540054 * m["std_error"])
    assert (m["inference"] == "max").all()


# ----------------------------------------------------------------------------------------------------------
# Sharing rules
# ----------------------------------------------------------------------------------------------------------


def _sharing_inputs():
    led = pd.DataFrame({
        "level": "practice", "engaged": True,
        "unit": ["A00001", "A00002", "A00003", "A00004", "A00005"], "financial_year": "2007/08",
        "spend": [900.0, 900.0, 900.0, 1100.0, 900.0],
        "practice_action_savings": [50.0, 200.0, 80.0, 60.0, 40.0],
        "savings_ci_low": [10.0, 150.0, 20.0, 5.0, -10.0], "savings_ci_high": [90.0, 250.0, 140.0, 115.0, 90.0]})
    budgets = pd.DataFrame({"practice_code": ["A00001", "A00002", "A00003", "A00004"], "financial_year": "2007/08",
                            "budget": [1000.0, 1000.0, 1000.0, 1000.0]})
    flags = pd.DataFrame({"period": "2007/08", "practice_code": ["A00001", "A00002", "A00003", "A00004", "A00005"],
                          "measure": "referrals", "specialty_code": "all",
                          "possible_under_referrer": [False, False, True, False, False]})
    q = [f"2006/07 Q{i}" for i in (1, 2, 3, 4)] + [f"2007/08 Q{i}" for i in (1, 2, 3, 4)]
    quarters = pd.DataFrame({"practice_code": np.repeat(["A00001", "A00002", "A00003", "A00004", "A00005"], 8),
                             "quarter": q * 5, "engaged_months": 3.0,
                             "savings": np.r_[[5] * 8, [5] * 6 + [-1, 5], [5] * 8, [5] * 8, [5] * 8].astype(float)})
    return led, budgets, flags, quarters


def test_sharing_split_gate_recurrence_and_reasons():
    led, budgets, flags, quarters = _sharing_inputs()
    sh, why = at.share_savings(led, budgets, flags, quarters, practice_share=0.7, sustained_quarters=4, min_payment=0)
    sh = sh.set_index("practice_code")
    # A00001: underspend 100 > savings 50: all 50 eligible, 70/30
    assert sh.loc["A00001", "eligible"] == pytest.approx(50.0)
    assert sh.loc["A00001", "to_practice"] == pytest.approx(35.0)
    assert sh.loc["A00001", "to_pct"] == pytest.approx(15.0)
    assert sh.loc["A00001", "retained_by_pct"] == pytest.approx(50.0)
    assert bool(sh.loc["A00001", "recurrent"]) and sh.loc["A00001", "status"] == "paid (recurrent)"
    # A00002: savings 200 capped at the underspend 100; a negative quarter inside the last 4: non-recurrent
    assert sh.loc["A00002", "eligible"] == pytest.approx(100.0)
    assert not bool(sh.loc["A00002", "recurrent"]) and "non-recurrent" in sh.loc["A00002", "reason"]
    # A00003: flagged possible under-referrer: nothing until reviewed
    assert sh.loc["A00003", "eligible"] == 0.0 and sh.loc["A00003", "status"] == "held for review"
    assert "under-referrer" in sh.loc["A00003", "reason"]
    # A00004 overspent: no resources freed up; A00005 has no budget
    assert sh.loc["A00004", "eligible"] == 0.0 and "not below the indicative budget" in sh.loc["A00004", "reason"]
    assert sh.loc["A00005", "status"] == "no budget"
    # reviewing lifts the gate; another split and the interval basis are parameters
    sh2, _ = at.share_savings(led, budgets, flags, quarters, practice_share=0.8, reviewed=["A00003"], basis="ci_low",
                              min_payment=0)
    sh2 = sh2.set_index("practice_code")
    assert sh2.loc["A00003", "eligible"] == pytest.approx(20.0)
    assert sh2.loc["A00003", "to_practice"] == pytest.approx(16.0)
    # a reason for every figure
    assert set(why["item"]) >= {"budget", "spend", "underspend", "practice_action_savings", "eligible", "to_practice",
                                "to_pct", "recurrent"}
    assert why["reason"].str.len().min() > 10
    assert len(why) == 13 * len(sh)
    assert set(sh["settlement"]) == {"final"}      # no month was lag-adjusted


def test_sharing_minimum_payment_and_provisional_settlement():
    led, budgets, flags, quarters = _sharing_inputs()
    # A00001's share is 0.7 x 50 = 35: below a minimum of 40 it is not paid, and the PCT keeps the 50 eligible
    sh, why = at.share_savings(led, budgets, flags, quarters, practice_share=0.7, min_payment=40.0,
                               lag_adjusted=["2008-02", "2008-03"])
    sh = sh.set_index("practice_code")
    assert sh.loc["A00001", "status"] == "below minimum payment"
    assert sh.loc["A00001", "to_practice"] == 0.0 and sh.loc["A00001", "to_pct"] == pytest.approx(50.0)
    assert "below the minimum payment of GBP 40" in sh.loc["A00001", "reason"]
    # A00002's 0.7 x 100 = 70 is paid; every row of 2007/08 (which holds 2008-02) is provisional, and says so
    assert sh.loc["A00002", "to_practice"] == pytest.approx(70.0) and sh.loc["A00002", "status"] == "paid (non-recurrent)"
    assert set(sh["settlement"]) == {"provisional"}
    assert sh["reason"].str.contains("provisional until the data are complete").all()
    assert (why.loc[why["item"] == "provisional", "amount"] == 1.0).all()
    # the accounting still adds up: to the practice + to the PCT = eligible; eligible + retained = RFU
    rfu = (sh["budget"] - sh["spend"]).clip(lower=0).fillna(0)
    assert np.allclose(sh["to_practice"] + sh["to_pct"], sh["eligible"])
    assert np.allclose(sh["eligible"] + sh["retained_by_pct"], rfu)
    # a lag-adjusted month of another year leaves 2007/08 final; min_payment 0 pays 35
    sh0, _ = at.share_savings(led, budgets, flags, quarters, min_payment=0, lag_adjusted=["2007-03"])
    assert set(sh0["settlement"]) == {"final"}
    assert sh0.set_index("practice_code").loc["A00001", "to_practice"] == pytest.approx(35.0)


def test_sharing_bad_parameters_named():
    led, budgets, flags, quarters = _sharing_inputs()
    with pytest.raises(ValueError, match="practice_share must be >= 0 and <= 1, got 70"):
        at.share_savings(led, budgets, flags, quarters, practice_share=70)
    with pytest.raises(ValueError, match="basis must be one of 'estimate', 'ci_low'; got 'lower'"):
        at.share_savings(led, budgets, flags, quarters, basis="lower")
    with pytest.raises(ValueError, match="sustained_quarters must be >= 1, got 0"):
        at.share_savings(led, budgets, flags, quarters, sustained_quarters=0)
    with pytest.raises(ValueError, match="min_payment must be >= 0, got -1"):
        at.share_savings(led, budgets, flags, quarters, min_payment=-1)
    with pytest.raises(ValueError, match="reviewed must be a list"):
        at.share_savings(led, budgets, flags, quarters, reviewed="A00003")


# ----------------------------------------------------------------------------------------------------------
# Back tests on the embedded synthetic PCT
# ----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample(sample_inputs, sample_truth):
    inputs, truth = sample_inputs, sample_truth
    att = at.run(inputs, at.Params(decomposition_draws=30))  # base and evaluation years derived from the data
    return inputs, truth, att


def _pct_truth(truth: dict) -> pd.DataFrame:
    return pd.DataFrame(truth["pct_year"]).set_index("financial_year")


def test_sample_ledger_adds_up_on_every_row(sample):
    _, _, att = sample
    led = att.ledger
    err = np.abs(led[list(at.LEDGER_LINES)].sum(axis=1) - led["change"]) / np.maximum(np.abs(led["change"]), 1.0)
    assert err.max() < 1e-9
    assert set(led["level"]) == {"practice", "consortium", "pct"}
    # practices add up to consortia and the PCT
    p = led[led["level"] == "practice"].groupby("financial_year")[["change", *at.LEDGER_LINES]].sum()
    t = led[led["level"] == "pct"].set_index("financial_year")[["change", *at.LEDGER_LINES]]
    np.testing.assert_allclose(p.to_numpy(), t.loc[p.index].to_numpy(), rtol=1e-9, atol=1e-3)
    # the observed change is the change in (completed) cost
    cells = att.cells.groupby("financial_year")["cost"].sum()
    np.testing.assert_allclose(t["change"].to_numpy(), (cells.loc[t.index] - cells.loc["2004/05"]).to_numpy(),
                               rtol=1e-12)


def test_sample_practice_action_savings_intervals_cover_truth(sample):
    _, truth, att = sample
    tr = _pct_truth(truth)
    pct = att.action.aggregates.query("target == 'pct'").set_index("financial_year")
    for fy in ("2005/06", "2006/07", "2007/08"):
        t = tr.loc[fy, "savings_practice_action"]
        assert pct.loc[fy, "ci_low"] <= t <= pct.loc[fy, "ci_high"], fy
        assert abs(pct.loc[fy, "savings"] - t) < 2 * pct.loc[fy, "std_error"], fy


@pytest.mark.xfail(strict=False, reason=(
    "not attainable on 60 practices: even with every practice's level known, the standard error of PCT "
    "practice-action savings is 12-15% of the truth (the precision floor, see "
    "test_sample_precision_floor_is_wider_than_the_ten_percent_target), so an unbiased estimate is within 10% "
    "of it only about half the time; the sample's estimates are 19%, 10% and 11% below the truth, inside their "
    "95% intervals; over 100 seeds see scripts/simulate_attribution.py"))
def test_sample_practice_action_savings_within_ten_percent(sample):
    _, truth, att = sample
    tr = _pct_truth(truth)
    pct = att.action.aggregates.query("target == 'pct'").set_index("financial_year")
    for fy in ("2005/06", "2006/07", "2007/08"):
        assert pct.loc[fy, "savings"] == pytest.approx(tr.loc[fy, "savings_practice_action"], rel=0.10), fy


def test_sample_precision_floor_is_wider_than_the_ten_percent_target(sample):
    """Why the 10% target above cannot be promised on 60 practices: even with every practice's level known,
    the standard error of the PCT saving is more than 10% of the true saving in every year, so an unbiased
    estimator lands within 10% of the truth with probability well under 95% (about one in two)."""
    _, truth, att = sample
    tr = _pct_truth(truth)
    pct = att.action.aggregates.query("target == 'pct'").set_index("financial_year")
    rel = pct["std_error_floor"] / tr.loc[pct.index, "savings_practice_action"]
    assert (rel > 0.10).all(), rel
    chance = 2 * stats.norm.cdf(0.10 / rel) - 1
    assert (chance < 0.70).all(), chance
    # the estimate's own standard error is above the floor, but not far above: the data, not the method, limit it
    ratio = pct["std_error_model"] / pct["std_error_floor"]
    assert ((ratio > 1.0) & (ratio < 1.5)).all(), ratio


def test_sample_practice_estimates_correlate_with_truth(sample):
    _, truth, att = sample
    py = pd.DataFrame(truth["practice_year"])[["practice_code", "financial_year", "savings_practice_action"]]
    m = att.action.practice_year.merge(py, on=["practice_code", "financial_year"])
    for fy, g in m.groupby("financial_year"):
        assert np.corrcoef(g["savings"], g["savings_practice_action"])[0, 1] > 0.5, fy
        cover = ((g["ci_low"] <= g["savings_practice_action"]) & (g["savings_practice_action"] <= g["ci_high"])).mean()
        assert cover > 0.85, fy


def test_sample_tariff_and_population_match_truth(sample):
    _, truth, att = sample
    tr = _pct_truth(truth)
    pct = att.ledger.query("level == 'pct'").set_index("financial_year")
    for fy in ("2005/06", "2006/07", "2007/08"):
        # the truth's population factor is the need-weighted list: our list and need parts together
        assert pct.loc[fy, "population"] + pct.loc[fy, "need"] == pytest.approx(tr.loc[fy, "lmdi_population"], rel=0.01)
        assert pct.loc[fy, "tariff"] == pytest.approx(tr.loc[fy, "lmdi_tariff"], rel=0.01)


def test_sample_provider_cut_lands_on_the_provider(sample):
    inputs, truth, att = sample
    cut = truth["provider_change"]  # noqa: F841 (used in the query below)
    tr = _pct_truth(truth)
    # the dispute table's provider line at the cut provider's follow-ups recovers the planted cut
    d = att.disputes.query("provider_code == @cut['provider_code'] and pod == 'followup_op'").set_index("item")
    assert d.loc["evidence: provider change", "amount"] == pytest.approx(tr.loc["2007/08", "lmdi_provider_change"],
                                                                         rel=0.15)
    # practices' side: undo the planted cut in the data (the cut provider's follow-ups scaled back up from the
    # effective month) and re-run; the practice-action savings may move only as the truth's do (the same
    # referrals avoided are worth more without the cut: truth from the same PCT generated without the cut);
    # what is left over must be under 5% of the cut
    undone = without_provider_cut(inputs, truth)
    p = SynthParams.from_dict(truth["generator"]["params"])
    t0 = pd.DataFrame(generate(SynthParams(**{**p.__dict__, "provider_cut_size": 0.0})).truth["pct_year"]) \
        .set_index("financial_year")
    with_cut = at.practice_action(at.referral_panel(inputs), at.cost_per_referral(inputs), inference="model")
    without = at.practice_action(at.referral_panel(undone), at.cost_per_referral(undone), inference="model")
    for fy in ("2006/07", "2007/08"):
        est_move = (with_cut.aggregates.query("target == 'pct' and financial_year == @fy")["savings"].iloc[0]
                    - without.aggregates.query("target == 'pct' and financial_year == @fy")["savings"].iloc[0])
        true_move = tr.loc[fy, "savings_practice_action"] - t0.loc[fy, "savings_practice_action"]
        leak = abs(est_move - true_move) / tr.loc[fy, "savings_provider_change"]
        assert leak < 0.05, (fy, leak)
    # the referral model never sees follow-ups: the referrals avoided are identical
    np.testing.assert_allclose(with_cut.practice_year["referrals_avoided"].to_numpy(),
                               without.practice_year["referrals_avoided"].to_numpy())


def test_sample_under_referrers_held_and_headline(sample):
    inputs, truth, att = sample
    from pbc_analysis.stages import benchmark

    flags = benchmark.under_referrer_flags(inputs, benchmark.Params())  # the gate notebook 04 applies
    sh, _ = at.share_savings(att.ledger, inputs.budgets, flags, att.action.practice_quarter)
    held = set(sh.loc[sh["status"] == "held for review", "practice_code"])
    planted = set(truth["under_referrers"]["practices"])
    assert planted & held  # the planted under-referrers flagged by benchmarking get nothing unreviewed
    assert (sh.loc[sh["status"] == "held for review", "eligible"] == 0).all()
    head = att.headline()
    assert head == at.headline(att) and (head["base_year"], head["evaluation_year"]) == ("2004/05", "2007/08")
    for k in ("practice_action_savings", "provider_change", "tariff", "population"):
        assert set(head[k]) == {"estimate", "ci_low", "ci_high"}
        assert head[k]["ci_low"] <= head[k]["estimate"] <= head[k]["ci_high"]
    json.dumps(head)  # JSON-able
    tables = att.tables()
    assert all(name.startswith("att_") for name in tables)
    assert "practice" in att.describe().lower() and att.describe() == at.describe(head)


# ----------------------------------------------------------------------------------------------------------
# Settings: Params (types, choices, ranges), derived years, rules against the data
# ----------------------------------------------------------------------------------------------------------


def _facts(start="2003-04", end="2008-03", engaged=None, activity_end=None, tariff_years=None, never=3):
    """Hand-built facts: ``engaged`` month -> number of practices, plus ``never`` practices never engaged."""
    engaged = {"2005-04": 4, "2005-10": 3} if engaged is None else engaged
    eng: dict[str, str | None] = {}
    for month, n in engaged.items():
        eng.update({f"E{month}{i}": month for i in range(n)})
    eng.update({f"N{i:04d}": None for i in range(never)})
    latest = {pod: activity_end or end for pod in ("first_op", "followup_op", "elective", "non_elective", "ae")}
    years = tuple(tariff_years) if tariff_years is not None else ()
    return stage_facts.DataFacts(start_month=start, end_month=end, n_practices=len(eng), engaged_from=eng,
                                 latest_complete={**latest, "gp_referral": end}, tariff_years=years)


def test_params_defaults_are_the_notebooks_and_the_functions():
    """One source: the function defaults are Params's (the drifts of issue 13 fixed: inference "max" as the
    notebook, decomposition_draws 40, bootstrap_weights named as the notebook names it)."""
    import inspect

    d = at.Params.defaults()
    assert (d["base_year"], d["evaluation_year"]) == ("auto", "auto")
    assert (d["inference"], d["decomposition_draws"], d["bootstrap_weights"], d["method"]) == ("max", 40, "webb", "shapley")
    for fn in (at.practice_action, at.decomposition_intervals, at.share_savings, at.completeness_factors, at.spend_cells,
               at.decompose, at.cost_per_referral, at.ledger, at.dispute_table):
        for name, par in inspect.signature(fn).parameters.items():
            if name in d and par.default is not inspect.Parameter.empty:
                default = list(par.default) if isinstance(par.default, tuple) else par.default  # reviewed: () is []
                assert default == d[name], (fn.__name__, name, par.default, d[name])
    assert "weights" not in inspect.signature(at.practice_action).parameters
    assert "n_draws" not in inspect.signature(at.decomposition_intervals).parameters


@pytest.mark.parametrize("bad, message", [
    (dict(method="ida"), r"method must be one of 'shapley', 'lmdi'; got 'ida'"),
    (dict(inference="Max"), r"inference must be one of 'max', 'wild', 'cluster', 'model', 'auto'; got 'Max' \(did you mean 'max'\?\)"),
    (dict(bootstrap_weights="mammen"), r"bootstrap_weights must be one of 'webb', 'rademacher'; got 'mammen'"),
    (dict(basis="lower"), r"basis must be one of 'estimate', 'ci_low'; got 'lower'"),
    (dict(confidence=95), r"confidence must be > 0 and < 1, got 95"),
    (dict(practice_share=1.5), r"practice_share must be >= 0 and <= 1, got 1.5"),
    (dict(plan_saving_rate=-0.1), r"plan_saving_rate must be >= 0 and <= 1, got -0.1"),
    (dict(lag_months=-1), r"lag_months must be >= 0 and <= 12, got -1"),
    (dict(n_boot=0), r"n_boot must be >= 1, got 0"),
    (dict(decomposition_draws=1), r"decomposition_draws must be >= 2, got 1"),
    (dict(sustained_quarters=2.5), r"sustained_quarters must be int, got float 2.5"),
    (dict(reviewed="A00001"), r"reviewed must be list\[str\], got str 'A00001'"),
    (dict(base_year="2004-05"), r"base_year must be a financial year \"YYYY/YY\" such as \"2007/08\""),
    (dict(evaluation_year="2007/09"), r"evaluation_year must be a financial year"),
])
def test_params_refuse_bad_values_naming_the_setting(bad, message):
    with pytest.raises(ArgumentError, match=message):
        at.Params(**bad)


def test_params_report_every_problem_at_once():
    with pytest.raises(ArgumentError) as err:
        at.Params(method="ida", n_boot=0, seed=-1)
    assert len(err.value.problems) == 3 and "seed must be >= 0, got -1" in str(err.value)


def test_derive_on_the_standard_window():
    p, derived = at.Params().resolve(_facts(activity_end="2008-01"))
    assert (p.base_year, p.evaluation_year) == ("2004/05", "2007/08")
    assert {d.name for d in derived} == {"base_year", "evaluation_year"} and all(d.rule for d in derived)
    # an explicit value is kept, and not reported as derived
    p2, derived2 = at.Params(base_year="2003/04").resolve(_facts())
    assert p2.base_year == "2003/04" and [d.name for d in derived2] == ["evaluation_year"]


def test_derive_on_a_january_start_window():
    """2004-01 .. 2007-12: full years 2004/05 to 2006/07; the last one ending before engagement (2005-08) is
    2004/05; 2007/08 is not full, so the evaluation year is 2006/07 (complete: it ends before activity_end)."""
    f = _facts("2004-01", "2007-12", engaged={"2005-08": 5, "2006-01": 5}, activity_end="2007-10")
    p, _ = at.Params().resolve(f)
    assert (p.base_year, p.evaluation_year) == ("2004/05", "2006/07")


def test_derive_evaluation_year_from_measured_completeness():
    # hospital activity complete to 2007-12: the last three months are incomplete, completed when lag_months >= 3
    f = _facts(activity_end="2007-12")
    assert at.Params(lag_months=3).resolve(f)[0].evaluation_year == "2007/08"
    assert at.Params(lag_months=2).resolve(f)[0].evaluation_year == "2006/07"
    with pytest.raises(ArgumentError, match=r"evaluation_year = '2007/08' is incomplete: hospital activity is complete "
                                            r"only to 2007-12 .*3 months before the window's end, and lag_months = 2 "
                                            r"completes only the last 2; raise lag_months to 3 or choose an earlier year "
                                            r"\('2006/07', or \"auto\"\)"):
        at.Params(lag_months=2, evaluation_year="2007/08").resolve(f)


def test_derive_on_a_short_window():
    # 2005-06 .. 2007-03: the only full year (2006/07) starts after the first engagement: no base year
    f = _facts("2005-06", "2007-03", engaged={"2006-02": 4})
    with pytest.raises(ArgumentError, match=r"cannot derive base_year \(no full financial year of the window "
                                            r"\(2005-06 to 2007-03\) ends before the first engagement \(2006-02\)"):
        at.Params().resolve(f)
    # 2005-04 .. 2006-09: a base year, but no later full year, and too short to complete the lagged months
    g = _facts("2005-04", "2006-09", engaged={"2006-04": 4})
    with pytest.raises(ArgumentError) as err:
        at.Params().resolve(g)
    assert err.value.problems == ["evaluation_year = '2005/06' is not after base_year = '2005/06'; choose a later "
                                  "evaluation year (or \"auto\")"]


def test_rules_need_practices_not_yet_engaged():
    """No never-engaged practice: the counterfactual of the last year has no controls; an earlier year, before
    the last cohort engaged, has them."""
    f = _facts(engaged={"2005-04": 6, "2006-04": 6}, never=0)
    with pytest.raises(ArgumentError, match=r"only 0 practice\(s\) are not yet engaged by 2008-03, the end of "
                                            r"evaluation_year 2007/08.*needs at least 2"):
        at.Params().resolve(f)
    p, _ = at.Params(evaluation_year="2005/06").resolve(f)
    assert p.evaluation_year == "2005/06"


@pytest.mark.parametrize("settings, facts_kw, message", [
    (dict(base_year="2005/06"), {}, r"base_year = '2005/06' does not end before the first engagement \(2005-04\): "
                                    r"its spend would already include practice action; use '2004/05'"),
    (dict(base_year="2002/03"), {}, r"base_year = '2002/03' is not a full financial year of the window \(2003-04 to "
                                    r"2008-03; full years: 2003/04, 2004/05, 2005/06, 2006/07, 2007/08\)"),
    (dict(evaluation_year="2008/09"), {}, r"evaluation_year = '2008/09' is not a full financial year"),
    (dict(evaluation_year="2004/05"), {}, r"evaluation_year = '2004/05' is not after base_year = '2004/05'"),
    (dict(reviewed=["X9"]), {}, r"reviewed names practice\(s\) not in the data: X9"),
    ({}, dict(tariff_years=["2004/05", "2005/06"]), r"the tariff table has no prices for 2006/07, 2007/08"),
    ({}, dict(engaged={}), r"no practice engaged"),
])
def test_rules_catch_each_broken_rule(settings, facts_kw, message):
    f = _facts(**facts_kw)
    with pytest.raises(ArgumentError, match=message):
        at.Params(**{"base_year": "2004/05", "evaluation_year": "2007/08", **settings}).resolve(f)


def test_rules_window_too_short_to_complete_the_lag():
    f = _facts("2004-04", "2006-03", engaged={"2005-04": 4})
    problems = at.Params(base_year="2004/05", evaluation_year="2005/06", lag_months=3).rules(f)
    assert problems == ["lag_months = 3 with reference_months = 12 needs at least 27 months of data (the reference "
                        "months and the year before them); the window has 24: lower reference_months or lag_months"]
    assert at.Params(base_year="2004/05", evaluation_year="2005/06", lag_months=0).rules(f) == []


def test_derived_settings_on_the_sample_equal_the_config(sample_facts):
    """The sample's derived years are the ones configs/sample.yaml spelled out by hand."""
    f = sample_facts
    p, derived = at.Params().resolve(f)
    assert (p.base_year, p.evaluation_year) == ("2004/05", "2007/08")
    assert f.activity_end == "2008-01"  # measured: two incomplete months, within lag_months = 3
    assert [d.value for d in derived] == ["2004/05", "2007/08"]


def test_run_refuses_settings_that_are_not_params():
    with pytest.raises(TypeError, match="params must be attribution.Params"):
        at.run(None, {"base_year": "2004/05"})

