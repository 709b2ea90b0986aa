"""Difference-in-differences for staggered adoption (pbc_analysis.methods.did).

Hand-computed and simulated panels need nothing outside the repository. The reference tests use
``../shared/reference/did_mpdta/mpdta.csv`` (``mpdta`` of the R package ``did``: 500 counties, 2003-2007,
log teen employment) and ``../shared/reference/did_medicaid/ehec_data.csv`` (Mixtape Sessions Advanced-DID
course: 46 states, 2008-2019, share of low-income adults insured, Medicaid expansion year) and pin the
numbers published by

- the ``did`` README (bcallaway11/did, ``README.md``): ``att_gt``/``aggte`` estimates on mpdta and the
  pre-test p-value 0.16812 (its standard errors are multiplier-bootstrap ones, so they are matched only
  loosely; the analytic ones are pinned as regression values, and agree to 1e-15 with the analytic path of
  ``csdid`` 0.4.3, a line-by-line Python port of ``did``, run outside the test suite);
- the ``csdid`` README (d2cml-ai/csdid): the calendar aggregation on mpdta;
- the ``twfeweights`` README (bcallaway11/twfeweights): ``att_gt(..., base_period = "universal")`` on
  mpdta to 9 decimals, its pre-test, the group-aggregated ATT, and
  ``fixest::feols(lemp ~ post | countyreal + year, cluster = "countyreal")`` = -0.036549 (0.013265);
- the Advanced-DID solutions (Mixtape-Sessions/Advanced-DID,
  ``Exercises/Exercise-1/Solutions/medicaid-analysis-solutions-R.md``): ``att_gt`` with not-yet-treated
  comparisons on the Medicaid data, ``aggte(type = "simple")``, ``feols(dins ~ postTreated | stfips +
  year, cluster = "stfips")`` and ``bacondecomp::bacon`` with and without the never-treated states.

They skip, with the reason, when the reference data are absent.
"""

from __future__ import annotations

import importlib.util
import io
import warnings

import matplotlib
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from pbc_analysis.core import paths
from pbc_analysis.methods import did
from pbc_analysis.publish import figures

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# ----------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------


def _load(relative: str) -> pd.DataFrame:
    path = paths.REFERENCE_DIR / relative
    if not path.is_file():
        pytest.skip(f"DiD reference data not found at {path} (clone the project beside ../shared to run the "
                    "reference tests)")
    return pd.read_csv(path)


def load_mpdta() -> pd.DataFrame:
    df = _load("did_mpdta/mpdta.csv")
    return df.assign(treat_post=((df["treat"] == 1) & (df["year"] >= df["first.treat"])).astype(int))


def load_ehec() -> pd.DataFrame:
    df = _load("did_medicaid/ehec_data.csv")
    return df.assign(post=(df["yexp2"].notna() & (df["year"] >= df["yexp2"])).astype(int))


@pytest.fixture(scope="module")
def mpdta() -> pd.DataFrame:
    return load_mpdta()


@pytest.fixture(scope="module")
def ehec() -> pd.DataFrame:
    return load_ehec()


@pytest.fixture(scope="module")
def mpdta_attgt(mpdta) -> pd.DataFrame:
    return did.att_gt(mpdta, "lemp", "countyreal", "year", "first.treat")


def panel(cohort_sizes: dict[int, int], periods: int = 6, effect=None, noise: float = 0.0, seed: int = 0,
          first: int = 1) -> pd.DataFrame:
    """Balanced panel ``unit, t, g, y, d``: cohorts ``{g: n_units}`` (0 = never treated), unit and period
    effects, ``y += effect(e)`` for event time ``e = t - g >= 0`` (``effect`` maps an array of event times
    to effects) and optional noise."""
    rng = np.random.default_rng(seed)
    g_unit = np.concatenate([np.full(n, g, dtype=float) for g, n in cohort_sizes.items()])
    n = g_unit.size
    t = np.arange(first, first + periods, dtype=float)
    unit = np.repeat(np.arange(n), periods)
    tt = np.tile(t, n)
    g = np.repeat(g_unit, periods)
    e = tt - g
    treated = (g > 0) & (e >= 0)
    te = np.zeros(tt.size) if effect is None else np.where(treated, effect(e), 0.0)
    y = np.repeat(rng.normal(0, 1, n), periods) + 0.3 * tt + np.sin(tt) + te + noise * rng.normal(size=tt.size)
    return pd.DataFrame({"unit": unit, "t": tt, "g": g, "y": y, "d": treated.astype(int)})


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------------------
# Hand-computed cases
# ----------------------------------------------------------------------------------------------------------


def two_by_two() -> pd.DataFrame:
    """Two treated and three control units, periods 1 and 2; treatment from period 2."""
    rows = {  # unit: (group, y1, y2)
        1: (2, 10.0, 15.0), 2: (2, 12.0, 16.0), 3: (0, 9.0, 10.0), 4: (0, 11.0, 13.0), 5: (0, 7.0, 7.5)}
    recs = []
    for u, (g, y1, y2) in rows.items():
        recs += [(u, 1, g, y1, 0), (u, 2, g, y2, int(g > 0))]
    return pd.DataFrame(recs, columns=["unit", "t", "g", "y", "d"])


def test_two_by_two_by_hand():
    """(mean change treated) - (mean change control) = (5 + 4)/2 - (1 + 2 + 0.5)/3 = 4.5 - 7/6."""
    df = two_by_two()
    truth = 4.5 - 3.5 / 3
    tw = did.twfe(df, "y", "unit", "t", "d", cohort="g")
    assert tw["estimate"] == pytest.approx(truth, abs=1e-12)
    res = did.att_gt(df, "y", "unit", "t", "g")
    assert len(res) == 1 and res["att"].iloc[0] == pytest.approx(truth, abs=1e-12)
    # analytic SE: sqrt(var_T / n_T + var_C / n_C) with population (1/n) variances of the changes
    dt, dc = np.array([5.0, 4.0]), np.array([1.0, 2.0, 0.5])
    se = np.sqrt(dt.var() / 2 + dc.var() / 3)
    assert res["std_error"].iloc[0] == pytest.approx(se, rel=1e-12)
    assert res[["n_treated", "n_control"]].iloc[0].tolist() == [2, 3]
    bacon = did.bacon_decomposition(df, "y", "unit", "t", "g")
    assert bacon["type"].tolist() == ["Treated vs Untreated"]
    assert bacon["weight"].iloc[0] == pytest.approx(1.0, abs=1e-12)
    assert bacon["estimate"].iloc[0] == pytest.approx(truth, abs=1e-12)
    assert did.aggregate(res, "simple").overall["estimate"] == pytest.approx(truth, abs=1e-12)


def test_two_by_two_poisson_by_hand():
    """PPML with unit and period effects on a 2x2 design: log of the ratio of ratios of group sums
    (the conditional likelihood is a binomial logit saturated in the two groups)."""
    df = two_by_two()
    s = df.groupby(["g", "t"])["y"].sum()
    truth = np.log((s[(2, 2)] / s[(2, 1)]) / (s[(0, 2)] / s[(0, 1)]))
    out = did.fepois(df, "y", "unit", "t", "d")
    assert out["estimate"] == pytest.approx(truth, abs=1e-9)
    assert out["ratio"] == pytest.approx(np.exp(truth), rel=1e-9)
    assert out["ratio_ci_low"] < out["ratio"] < out["ratio_ci_high"]


def test_homogeneous_effect_three_cohorts_twfe_and_cs_recover_truth():
    """Constant effect 2 in three cohorts plus never treated, no noise: TWFE, every post ATT(g,t) and every
    aggregation equal 2; pre-treatment ATT(g,t) are 0; the Bacon 2x2s all estimate 2."""
    df = panel({0: 5, 3: 4, 4: 3, 6: 4}, periods=8, effect=lambda e: np.full(e.shape, 2.0))
    assert did.twfe(df, "y", "unit", "t", "d", cohort="g")["estimate"] == pytest.approx(2.0, abs=1e-10)
    res = did.att_gt(df, "y", "unit", "t", "g")
    np.testing.assert_allclose(res.loc[res["post"], "att"], 2.0, atol=1e-10)
    np.testing.assert_allclose(res.loc[~res["post"], "att"], 0.0, atol=1e-10)
    for kind in ("simple", "group", "dynamic", "calendar"):
        assert did.aggregate(res, kind).overall["estimate"] == pytest.approx(2.0, abs=1e-10)
    b = did.bacon_decomposition(df, "y", "unit", "t", "g")
    np.testing.assert_allclose(b["estimate"], 2.0, atol=1e-10)
    assert b["weight"].sum() == pytest.approx(1.0, abs=1e-12)


def test_homogeneous_effect_with_noise_close_to_truth():
    df = panel({0: 200, 3: 150, 5: 150}, periods=7, effect=lambda e: np.full(e.shape, 1.0), noise=0.5, seed=3)
    tw = did.twfe(df, "y", "unit", "t", "d")
    cs = did.aggregate(did.att_gt(df, "y", "unit", "t", "g"), "simple").overall
    for est in (tw, cs):
        assert abs(est["estimate"] - 1.0) < 4 * est["std_error"]
        assert est["ci_low"] < 1.0 < est["ci_high"]


def test_heterogeneous_dynamic_effects_cs_recovers_truth_twfe_biased():
    """Effect 1 + 0.5 e growing with time since adoption: CS's event-study estimates are exactly the truth;
    static TWFE is biased away from every sensible average (already-treated units serve as controls:
    Goodman-Bacon's 'Later vs Earlier Treated' comparisons subtract the earlier cohort's growing effect)."""
    effect = lambda e: 1.0 + 0.5 * e  # noqa: E731
    df = panel({0: 6, 3: 5, 5: 5, 7: 4}, periods=9, effect=effect)
    res = did.att_gt(df, "y", "unit", "t", "g")
    dyn = did.aggregate(res, "dynamic")
    post = dyn.table[dyn.table["event_time"] >= 0]
    np.testing.assert_allclose(post["estimate"], effect(post["event_time"].to_numpy(float)), atol=1e-10)
    pre = dyn.table[dyn.table["event_time"] < 0]
    np.testing.assert_allclose(pre["estimate"], 0.0, atol=1e-10)
    simple = did.aggregate(res, "simple").overall["estimate"]
    # the simple aggregate is the cohort-size-weighted mean of the true post-treatment effects
    post_cells = df[df["d"] == 1]
    assert simple == pytest.approx(effect(post_cells["t"] - post_cells["g"]).mean(), abs=1e-10)
    tw = did.twfe(df, "y", "unit", "t", "d")["estimate"]
    assert tw < simple - 0.3  # biased downwards, well below every post-treatment effect's mean
    b = did.bacon_decomposition(df, "y", "unit", "t", "g")
    assert (b["weight"] * b["estimate"]).sum() == pytest.approx(tw, abs=1e-10)
    forbidden = b[b["type"] == "Later vs Earlier Treated"]
    assert (forbidden["estimate"] < 1.0).all()  # below the smallest true effect


def test_bacon_with_always_treated_units_sums_to_twfe():
    """Units treated from the first period are a timing group with D = 1 throughout: they appear only as
    controls ('Later vs Always Treated'), and the weighted 2x2s still add up to TWFE."""
    for sizes in ({0: 5, 1: 3, 3: 4, 5: 4}, {1: 3, 3: 4, 5: 4}, {3: 4, 5: 4, 6: 2}):
        df = panel(sizes, periods=7, effect=lambda e: 1 + 0.3 * e, noise=0.5, seed=1)
        b = did.bacon_decomposition(df, "y", "unit", "t", "g")
        tw = did.twfe(df, "y", "unit", "t", "d", cohort="g")["estimate"]
        assert b["weight"].sum() == pytest.approx(1.0, abs=1e-12)
        assert (b["weight"] * b["estimate"]).sum() == pytest.approx(tw, abs=1e-10)
        assert (b["type"] == "Later vs Always Treated").any() == (1 in sizes)
        assert (b["type"] == "Treated vs Untreated").any() == (0 in sizes)


def test_not_yet_treated_controls_by_hand():
    """No never-treated units: cohorts 3, 4, 5 over periods 1..6. As ``did``, the last cohort (5) is only
    a comparison group and periods from 5 on are dropped; ATT(g, t) compares cohort g with the cohorts not
    treated by t."""
    df = panel({3: 3, 4: 4, 5: 5}, periods=6, effect=lambda e: 1.0 + e, noise=0.3, seed=11)
    with pytest.raises(ValueError, match="no never-treated"):
        did.att_gt(df, "y", "unit", "t", "g", control_group="never")
    res = did.att_gt(df, "y", "unit", "t", "g", control_group="not_yet")
    assert sorted(res["cohort"].unique()) == [3, 4] and res["time"].max() == 4
    wide = df.pivot(index="unit", columns="t", values="y")
    g = df.groupby("unit")["g"].first()

    def by_hand(gg, t, base, ctrl):
        dy = wide[t] - wide[base]
        return dy[g == gg].mean() - dy[ctrl].mean()

    cell = res.set_index(["cohort", "time"])["att"]
    assert cell[(3, 3)] == pytest.approx(by_hand(3, 3, 2, g > 3), abs=1e-12)
    assert cell[(3, 4)] == pytest.approx(by_hand(3, 4, 2, g > 4), abs=1e-12)
    assert cell[(4, 4)] == pytest.approx(by_hand(4, 4, 3, g > 4), abs=1e-12)
    assert cell[(4, 3)] == pytest.approx(by_hand(4, 3, 2, (g > 3) & (g != 4)), abs=1e-12)  # pre-period
    assert cell[(4, 2)] == pytest.approx(by_hand(4, 2, 1, (g > 2) & (g != 4)), abs=1e-12)
    n_ctrl = res.set_index(["cohort", "time"])["n_control"]
    assert n_ctrl[(3, 4)] == 5 and n_ctrl[(3, 3)] == 9


def test_not_yet_includes_never_treated_and_later_cohorts():
    df = panel({0: 4, 3: 3, 5: 3}, periods=6, noise=0.2, seed=2)
    res = did.att_gt(df, "y", "unit", "t", "g", control_group="not_yet").set_index(["cohort", "time"])
    assert res.loc[(3, 4), "n_control"] == 7  # never (4) + cohort 5 (3)
    assert res.loc[(3, 5), "n_control"] == 4  # cohort 5 treated from 5: never only
    never = did.att_gt(df, "y", "unit", "t", "g").set_index(["cohort", "time"])
    assert never.loc[(3, 5), "att"] == pytest.approx(res.loc[(3, 5), "att"], abs=1e-12)


def test_anticipation_shifts_the_base_period():
    """Effect -1 one period before adoption and +2 from it: with ``anticipation=1`` the base period is
    g - 2, so post-treatment cells give 2 and the cell at g - 1 gives the anticipation effect -1; ignoring
    anticipation gives 3 (= 2 - (-1)) on impact."""
    df = panel({0: 5, 4: 4, 6: 4}, periods=8)
    pre = (df["g"] > 0) & (df["t"] == df["g"] - 1)
    df.loc[pre, "y"] -= 1.0
    df.loc[df["d"] == 1, "y"] += 2.0
    res = did.att_gt(df, "y", "unit", "t", "g", anticipation=1)
    np.testing.assert_allclose(res.loc[res["post"], "att"], 2.0, atol=1e-10)
    cells = res.set_index(["cohort", "time"])["att"]
    assert cells[(4, 3)] == pytest.approx(-1.0, abs=1e-10) and cells[(6, 5)] == pytest.approx(-1.0, abs=1e-10)
    naive = did.att_gt(df, "y", "unit", "t", "g").set_index(["cohort", "time"])["att"]
    assert naive[(4, 4)] == pytest.approx(3.0, abs=1e-10)


def test_universal_base_period_normalises_the_reference_cell():
    df = panel({0: 5, 3: 4, 5: 4}, periods=6, noise=0.3, seed=5)
    res = did.att_gt(df, "y", "unit", "t", "g", base_period="universal")
    ref = res[res["time"] == res["cohort"] - 1]
    assert (ref["att"] == 0).all() and ref["std_error"].isna().all()
    assert len(res) == 2 * 6  # every period, including the first
    other = res[(res["time"] < res["cohort"] - 1)].iloc[0]
    wide = df.pivot(index="unit", columns="t", values="y")
    g = df.groupby("unit")["g"].first()
    gg, t = other["cohort"], other["time"]
    dy = wide[t] - wide[gg - 1]
    assert other["att"] == pytest.approx(dy[g == gg].mean() - dy[g == 0].mean(), abs=1e-12)


def test_influence_functions_give_the_standard_errors():
    df = panel({0: 30, 3: 20, 5: 25}, periods=6, noise=1.0, seed=8)
    res = did.att_gt(df, "y", "unit", "t", "g")
    fit = res.attrs["att_gt"]
    n = fit.n
    assert fit.influence.shape == (n, len(res))
    np.testing.assert_allclose(fit.influence.mean(0), 0.0, atol=1e-10)
    np.testing.assert_allclose(np.sqrt((fit.influence ** 2).mean(0) / n), res["std_error"], rtol=1e-12)
    agg = did.aggregate(res, "simple")
    assert agg.overall["std_error"] == pytest.approx(np.sqrt(np.mean(agg.influence ** 2) / n), rel=1e-12)
    # cohort-size weights: simple = sum over post cells of n_g ATT / sum n_g
    post = res[res["post"]]
    assert agg.overall["estimate"] == pytest.approx(np.average(post["att"], weights=post["n_treated"]), abs=1e-12)
    # attrs survive DataFrame operations without copying the influence matrix
    assert res.copy().attrs["att_gt"] is fit and res.head(3).attrs["att_gt"] is fit


def test_weights_estimation_effect_in_aggregate_matches_empirical_influence():
    """The aggregate's influence function, including ``did``'s ``wif`` term for the estimated cohort
    shares, is the derivative of the estimate when unit i's weight in the sample grows: with the sample
    replicated k times and one more copy of unit i, the estimate moves by h * psi_i, h = 1 / (k n + 1)."""
    df = panel({0: 6, 3: 4, 5: 5}, periods=6, noise=1.0, seed=21)
    n, k = df["unit"].nunique(), 400
    for kind in ("simple", "dynamic", "calendar", "group"):
        base = did.aggregate(did.att_gt(df, "y", "unit", "t", "g"), kind)
        for i in (0, 7, 12):  # a never-treated unit, one of cohort 3, one of cohort 5
            big = pd.concat([df.assign(unit=df["unit"] + r * n) for r in range(k)]
                            + [df[df["unit"] == i].assign(unit=k * n + 1)])
            moved = did.aggregate(did.att_gt(big, "y", "unit", "t", "g"), kind).overall["estimate"]
            h = 1.0 / (k * n + 1)
            assert (moved - base.overall["estimate"]) / h == pytest.approx(base.influence[i], rel=2e-2, abs=1e-3)


def test_pretrend_test_single_pre_cell_is_squared_t():
    df = panel({0: 20, 3: 15}, periods=3, noise=1.0, seed=4)
    res = did.att_gt(df, "y", "unit", "t", "g")
    pre = res[~res["post"]]
    assert len(pre) == 1
    out = did.pretrend_test(res)
    assert out["df"] == 1
    assert out["statistic"] == pytest.approx((pre["att"].iloc[0] / pre["std_error"].iloc[0]) ** 2, rel=1e-10)
    assert 0 < out["p_value"] < 1


def test_aggregate_options_min_max_balance():
    df = panel({0: 8, 3: 5, 4: 5, 6: 5}, periods=8, effect=lambda e: 1.0 + e, noise=0.1, seed=9)
    res = did.att_gt(df, "y", "unit", "t", "g")
    dyn = did.aggregate(res, "dynamic", min_e=-2, max_e=2)
    assert dyn.table["event_time"].tolist() == [-2, -1, 0, 1, 2]
    bal = did.aggregate(res, "dynamic", balance_e=2)
    assert bal.table["event_time"].max() == 2
    # balance_e keeps cohorts observed 2 periods after adoption: cohort 6 (last period 8) is, so all are
    full = did.aggregate(res, "dynamic")
    bal4 = did.aggregate(res, "dynamic", balance_e=3)  # drops cohort 6 (only 2 periods after)
    e0 = bal4.table.set_index("event_time").loc[0, "estimate"]
    cells = res[(res["time"] == res["cohort"]) & (res["cohort"] <= 5)]
    assert e0 == pytest.approx(np.average(cells["att"], weights=cells["n_treated"]), abs=1e-12)
    assert full.table["event_time"].min() == -4
    grp = did.aggregate(res, "group", max_e=0)  # on-impact effect per cohort
    on_impact = res[res["time"] == res["cohort"]].set_index("cohort")["att"]
    np.testing.assert_allclose(grp.table.set_index("cohort")["estimate"], on_impact, atol=1e-12)
    cal = did.aggregate(res, "calendar")
    assert cal.table["time"].tolist() == [3, 4, 5, 6, 7, 8]


def test_bootstrap_is_seeded_and_close_to_analytic():
    df = panel({0: 150, 3: 100, 5: 100}, periods=6, noise=1.0, seed=13)
    a = did.att_gt(df, "y", "unit", "t", "g", bootstrap=True, n_boot=2000, seed=42)
    b = did.att_gt(df, "y", "unit", "t", "g", bootstrap=True, n_boot=2000, seed=42)
    pd.testing.assert_frame_equal(a, b)
    analytic = did.att_gt(df, "y", "unit", "t", "g")
    np.testing.assert_allclose(a["std_error"], analytic["std_error"], rtol=0.12)
    assert a.attrs["crit_val"] > 1.96
    assert ((a["cband_low"] <= a["ci_low"]) & (a["cband_high"] >= a["ci_high"])).all()
    r = did.att_gt(df, "y", "unit", "t", "g", bootstrap=True, n_boot=2000, seed=42, multiplier="rademacher")
    np.testing.assert_allclose(r["std_error"], analytic["std_error"], rtol=0.12)
    agg = did.aggregate(a, "dynamic")
    agg_an = did.aggregate(analytic, "dynamic")
    assert agg.overall["std_error"] == pytest.approx(agg_an.overall["std_error"], rel=0.12)
    assert agg.crit_val >= 1.959


def test_twfe_matches_statsmodels_dummies_unbalanced():
    """TWFE by alternating projections = OLS with unit and period dummies (statsmodels) on an unbalanced
    panel, to 1e-10; the cluster-robust variance = statsmodels' uncorrected sandwich x fixest's factor
    G/(G-1) (n-1)/(n-K), K = 1 + the non-nested fixed-effect levels (units nested in their clusters)."""
    df = panel({0: 6, 3: 4, 5: 4}, periods=7, effect=lambda e: 0.5 + 0.2 * e, noise=0.7, seed=17)
    df = df.drop(index=[3, 10, 11, 40, 77]).reset_index(drop=True)
    df["region"] = df["unit"] % 5
    x = pd.get_dummies(df[["unit", "t"]].astype(str), drop_first=True, dtype=float)
    x.insert(0, "d", df["d"].astype(float))
    x = sm.add_constant(x)
    n = len(df)
    for cluster, groups in ((None, df["unit"]), ("region", df["region"])):
        ols = sm.OLS(df["y"], x).fit(cov_type="cluster", cov_kwds={"groups": groups.to_numpy(),
                                                                   "use_correction": False})
        mine = did.twfe(df, "y", "unit", "t", "d", cluster=cluster)
        assert mine["estimate"] == pytest.approx(ols.params["d"], abs=1e-10)
        g = groups.nunique()
        k = 1 + df["t"].nunique()  # units are nested in both clusterings; periods are not
        adj = g / (g - 1) * (n - 1) / (n - k)
        assert mine["std_error"] == pytest.approx(np.sqrt(ols.cov_params().loc["d", "d"] * adj), abs=1e-10)
        assert mine["n_clusters"] == g and mine["n_obs"] == n
    # clustering by period: the period effects are nested, the unit effects are not
    ols = sm.OLS(df["y"], x).fit(cov_type="cluster", cov_kwds={"groups": df["t"].to_numpy(),
                                                               "use_correction": False})
    mine = did.twfe(df, "y", "unit", "t", "d", cluster="t")
    g, k = df["t"].nunique(), 1 + df["unit"].nunique()
    adj = g / (g - 1) * (n - 1) / (n - k)
    assert mine["std_error"] == pytest.approx(np.sqrt(ols.cov_params().loc["d", "d"] * adj), abs=1e-10)


def test_fepois_matches_statsmodels_glm_dummies():
    """PPML with fixed effects by IRLS and weighted alternating projections = statsmodels' Poisson GLM with
    explicit dummies and the offset, coefficient to 1e-8 and cluster-robust SE with the same factor."""
    rng = np.random.default_rng(12)
    df = panel({0: 8, 3: 6, 5: 6}, periods=6)
    pop = rng.integers(2000, 12000, size=df["unit"].nunique()).astype(float)
    df["logpop"] = np.log(pop)[df["unit"]]
    mu = np.exp(df["logpop"] - 7 + 0.2 * np.sin(df["t"]) + rng.normal(0, 0.3, 20)[df["unit"]] - 0.25 * df["d"])
    df["y"] = rng.poisson(mu)
    df.loc[df["unit"] == 4, "y"] = 0  # an all-zero unit: infinite fixed effect, dropped (fixest)
    df = df.drop(index=[2, 30, 31]).reset_index(drop=True)  # unbalanced
    with pytest.warns(RuntimeWarning, match="zero throughout"):
        mine = did.fepois(df, "y", "unit", "t", "d", offset="logpop", cohort="g")
    used = df[df["unit"] != 4].reset_index(drop=True)
    x = pd.get_dummies(used[["unit", "t"]].astype(str), drop_first=True, dtype=float)
    x.insert(0, "d", used["d"].astype(float))
    x = sm.add_constant(x)
    glm = sm.GLM(used["y"], x, family=sm.families.Poisson(), offset=used["logpop"]).fit(
        tol=1e-14, maxiter=200, cov_type="cluster",
        cov_kwds={"groups": used["unit"].to_numpy(), "use_correction": False})
    assert mine["estimate"] == pytest.approx(glm.params["d"], abs=1e-8)
    n, g, k = len(used), used["unit"].nunique(), 1 + used["t"].nunique()
    adj = g / (g - 1) * (n - 1) / (n - k)
    assert mine["std_error"] == pytest.approx(np.sqrt(glm.cov_params().loc["d", "d"] * adj), rel=1e-8)
    assert mine["n_obs"] == n and mine["n_clusters"] == g
    assert mine["ratio"] == pytest.approx(np.exp(mine["estimate"]))
    z = (mine["estimate"] - mine["ci_low"]) / mine["std_error"]
    assert z == pytest.approx(1.959963984540054)  # normal-based, as fixest's z values for GLMs
    # the fit is the project's one Poisson fixed-effects engine (methods.ppml), with unit and period effects
    from pbc_analysis.methods import ppml

    codes = [pd.factorize(df["unit"], sort=True)[0], pd.factorize(df["t"], sort=True)[0]]
    engine = ppml.fepois(df["y"].to_numpy(float), codes, X=df[["d"]].to_numpy(float), offset=df["logpop"].to_numpy(),
                         cluster=codes[0])
    assert mine["estimate"] == engine.coef[0] and mine["std_error"] == np.sqrt(engine.vcov[0, 0])


# ----------------------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------------------


def test_unbalanced_panel_refused_for_att_gt_and_bacon():
    df = panel({0: 3, 3: 3}, periods=5).drop(index=[4])
    with pytest.raises(ValueError, match="unbalanced panel.*'unit'.*'t'"):
        did.att_gt(df, "y", "unit", "t", "g")
    with pytest.raises(ValueError, match="unbalanced panel"):
        did.bacon_decomposition(df, "y", "unit", "t", "g")
    did.twfe(df, "y", "unit", "t", "d")  # TWFE handles unbalanced panels


def test_cohort_not_constant_within_unit():
    df = panel({0: 3, 3: 3}, periods=5)
    df.loc[7, "g"] = 4
    with pytest.raises(ValueError, match="cohort column 'g' is not constant within unit column 'unit'"):
        did.att_gt(df, "y", "unit", "t", "g")


def test_treated_inconsistent_with_cohort():
    df = panel({0: 3, 3: 3}, periods=5)
    df.loc[df["unit"] == 4, "d"] = 0
    with pytest.raises(ValueError, match="treated column 'd' is inconsistent with cohort column 'g'"):
        did.twfe(df, "y", "unit", "t", "d", cohort="g")
    with pytest.raises(ValueError, match="treated column 'd' is inconsistent"):
        did.fepois(df.assign(y=1.0), "y", "unit", "t", "d", cohort="g")


def test_missing_outcome_named():
    df = panel({0: 3, 3: 3}, periods=5)
    df.loc[2, "y"] = np.nan
    for call in (lambda: did.att_gt(df, "y", "unit", "t", "g"),
                 lambda: did.twfe(df, "y", "unit", "t", "d"),
                 lambda: did.bacon_decomposition(df, "y", "unit", "t", "g")):
        with pytest.raises(ValueError, match="outcome column 'y' has 1 missing"):
            call()


def test_non_numeric_time_named():
    df = panel({0: 3, 3: 3}, periods=5)
    df["t"] = "P" + df["t"].astype(int).astype(str)
    with pytest.raises(ValueError, match="time column 't' must be numeric"):
        did.att_gt(df, "y", "unit", "t", "g")
    with pytest.raises(ValueError, match="time column 't' must be numeric"):
        did.bacon_decomposition(df, "y", "unit", "t", "g")


def test_other_validation_errors():
    df = panel({0: 3, 3: 3}, periods=5)
    with pytest.raises(ValueError, match="cohort column 'nope' is not in the data"):
        did.att_gt(df, "y", "unit", "t", "nope")
    with pytest.raises(ValueError, match="one row per unit and period"):
        did.att_gt(pd.concat([df, df.iloc[:1]]), "y", "unit", "t", "g")
    with pytest.raises(ValueError, match="must be 0/1"):
        did.twfe(df.assign(d=df["d"] * 2), "y", "unit", "t", "d")
    with pytest.raises(ValueError, match="not periods of 't'"):
        did.att_gt(df.assign(g=np.where(df["g"] == 3, 3.5, df["g"])), "y", "unit", "t", "g")
    with pytest.raises(ValueError, match="control_group must be one of 'never', 'not_yet'; got 'nevertreated'"):
        did.att_gt(df, "y", "unit", "t", "g", control_group="nevertreated")
    with pytest.raises(ValueError, match="base_period must be one of 'varying', 'universal'"):
        did.att_gt(df, "y", "unit", "t", "g", base_period="fixed")
    with pytest.raises(ValueError, match="anticipation must be >= 0, got -1"):
        did.att_gt(df, "y", "unit", "t", "g", anticipation=-1)
    with pytest.raises(ValueError, match="confidence must be > 0 and < 1, got 1.5"):
        did.twfe(df, "y", "unit", "t", "d", confidence=1.5)
    with pytest.raises(ValueError, match="negative"):
        did.fepois(df.assign(y=-1.0), "y", "unit", "t", "d")
    with pytest.raises(TypeError, match="att_gt"):
        did.aggregate(df, "simple")
    with pytest.raises(ValueError, match="kind must be one of 'simple', 'group', 'dynamic', 'calendar'"):
        did.aggregate(did.att_gt(df, "y", "unit", "t", "g"), "event")
    with pytest.raises(ValueError, match="no variation"):
        did.twfe(df.assign(d=0), "y", "unit", "t", "d")


def test_first_period_cohorts_dropped_and_late_cohorts_never_treated():
    df = panel({0: 4, 1: 2, 3: 3, 9: 2}, periods=5)  # cohort 1 = first period; 9 is after the panel
    with pytest.warns(UserWarning, match="already treated in the first period"):
        res = did.att_gt(df, "y", "unit", "t", "g")
    assert sorted(res["cohort"].unique()) == [3]
    assert res["n_control"].iloc[0] == 6  # 4 never + 2 treated after the panel
    assert res.attrs["att_gt"].n == 9


# ----------------------------------------------------------------------------------------------------------
# Event-study figure
# ----------------------------------------------------------------------------------------------------------


def test_plot_event_study_deterministic():
    df = panel({0: 30, 3: 20, 5: 20}, periods=7, effect=lambda e: -0.5 - 0.1 * e, noise=0.5, seed=6)
    res = did.att_gt(df, "y", "unit", "t", "g")
    agg = did.aggregate(res, "dynamic")
    fig1 = figures.plot_event_study(agg)
    fig2 = figures.plot_event_study(agg)
    try:
        assert isinstance(fig1, plt.Figure)
        assert _png(fig1) == _png(fig2)
        ax = fig1.axes[0]
        containers = ax.containers
        assert len(containers) == 2  # pre and post
        colours = {matplotlib.colors.to_hex(c.lines[0].get_color()) for c in containers}
        assert len(colours) == 2
        assert any(np.allclose(line.get_ydata(), 0) for line in ax.get_lines())  # zero line
        x_pre = containers[0].lines[0].get_xdata()
        assert np.all(np.asarray(x_pre) < 0)
    finally:
        plt.close(fig1)
        plt.close(fig2)
    with pytest.raises(ValueError, match="dynamic"):
        figures.plot_event_study(did.aggregate(res, "group"))


# ----------------------------------------------------------------------------------------------------------
# Reference data: mpdta (did package)
# ----------------------------------------------------------------------------------------------------------


def test_reference_loader_skips_when_data_absent(monkeypatch, tmp_path):
    monkeypatch.setattr(paths, "REFERENCE_DIR", tmp_path / "nowhere")
    with pytest.raises(pytest.skip.Exception, match="reference data not found"):
        load_mpdta()
    with pytest.raises(pytest.skip.Exception, match="reference data not found"):
        load_ehec()


# did README (bcallaway11/did): summary(att_gt(lemp ~ first.treat, xformla = ~1, est_method = "reg"))
README_ATT = [(2004, 2004, -0.0105), (2004, 2005, -0.0704), (2004, 2006, -0.1373), (2004, 2007, -0.1008),
              (2006, 2004, 0.0065), (2006, 2005, -0.0028), (2006, 2006, -0.0046), (2006, 2007, -0.0412),
              (2007, 2004, 0.0305), (2007, 2005, -0.0027), (2007, 2006, -0.0311), (2007, 2007, -0.0261)]
README_BOOT_SE = [0.0241, 0.0313, 0.0380, 0.0337, 0.0223, 0.0196, 0.0188, 0.0202, 0.0154, 0.0168, 0.0190,
                  0.0182]
# this module's analytic standard errors (did's bstrap = FALSE); equal to 1e-15 to csdid 0.4.3's analytic
# path (a port of did's compute.att_gt / DRDID) when checked outside the suite
ANALYTIC_SE = [0.0232510363681662, 0.03098476675727639, 0.03643566428768614, 0.03435922583467303,
               0.023326805141804834, 0.01955856103588152, 0.0177551966592764, 0.020229180704107057,
               0.015033560280130049, 0.01639583289553443, 0.017877511313343496, 0.016655435349252175]


@pytest.mark.reference
def test_mpdta_att_gt_matches_did_readme(mpdta_attgt):
    """ATT(g,t) as printed in the did README (4 dp); analytic SEs pinned (ATT(2004,2004) SE 0.0233) and
    within 10% of the README's bootstrap SEs (simulation error of the IQR-based bootstrap)."""
    res = mpdta_attgt
    assert list(zip(res["cohort"], res["time"], strict=True)) == [(g, t) for g, t, _ in README_ATT]
    np.testing.assert_allclose(res["att"].round(4), [a for *_, a in README_ATT], atol=1e-12)
    np.testing.assert_allclose(res["att"].to_numpy(), [
        -0.010503246220963547, -0.07042315810314909, -0.13725873888940443, -0.10081136308540525,
        0.006520112424232893, -0.0027508187505186858, -0.004594606952862727, -0.041224471546217945,
        0.030506655583292082, -0.002725892886115959, -0.031087119389688143, -0.026054410719197237], atol=1e-14)
    np.testing.assert_allclose(res["std_error"], ANALYTIC_SE, rtol=1e-10)
    assert round(res["std_error"].iloc[0], 4) == 0.0233
    np.testing.assert_allclose(res["std_error"], README_BOOT_SE, rtol=0.10)
    assert res["n_control"].eq(309).all()
    assert res["n_treated"].tolist() == [20] * 4 + [40] * 4 + [131] * 4


@pytest.mark.reference
def test_mpdta_pretest_matches_did_readme(mpdta_attgt):
    """'P-value for pre-test of parallel trends assumption: 0.16812' (did README, twfeweights README)."""
    out = did.pretrend_test(mpdta_attgt)
    assert round(out["p_value"], 5) == 0.16812
    assert out["df"] == 5
    assert out["statistic"] == pytest.approx(7.791236627200002, rel=1e-10)


@pytest.mark.reference
def test_mpdta_aggregations_match_published(mpdta_attgt):
    """aggte(type = "dynamic"/"group") in the did README and "calendar" in the csdid README (4 dp; their
    SEs are bootstrap ones, matched within 10%); every analytic SE pinned as a regression value."""
    dyn = did.aggregate(mpdta_attgt, "dynamic")
    assert round(dyn.overall["estimate"], 4) == -0.0772
    assert dyn.table["event_time"].tolist() == [-3, -2, -1, 0, 1, 2, 3]
    np.testing.assert_allclose(dyn.table["estimate"].round(4),
                               [0.0305, -0.0006, -0.0245, -0.0199, -0.0510, -0.1373, -0.1008], atol=1e-12)
    np.testing.assert_allclose(dyn.table["std_error"],
                               [0.0153, 0.0136, 0.0138, 0.0115, 0.0174, 0.0356, 0.0354], rtol=0.10)
    np.testing.assert_allclose(dyn.table["std_error"], [
        0.015033560280130049, 0.013291644736550012, 0.014236402210519299, 0.011826364058058182,
        0.016893476268678067, 0.03643566428768614, 0.03435922583467303], rtol=1e-10)
    assert dyn.overall["std_error"] == pytest.approx(0.019964989061849233, rel=1e-10)
    assert dyn.overall["std_error"] == pytest.approx(0.0196, rel=0.10)

    grp = did.aggregate(mpdta_attgt, "group")
    assert round(grp.overall["estimate"], 4) == -0.0310
    np.testing.assert_allclose(grp.table["estimate"].round(4), [-0.0797, -0.0229, -0.0261], atol=1e-12)
    np.testing.assert_allclose(grp.table["std_error"], [0.0277, 0.0172, 0.0177], rtol=0.10)
    np.testing.assert_allclose(grp.table["std_error"], [
        0.026367799435027008, 0.016703330255162144, 0.016655435349252175], rtol=1e-10)
    assert grp.overall["std_error"] == pytest.approx(0.012446059320997916, rel=1e-10)
    assert grp.overall["std_error"] == pytest.approx(0.0123, rel=0.10)

    cal = did.aggregate(mpdta_attgt, "calendar")
    assert round(cal.overall["estimate"], 4) == -0.0417
    np.testing.assert_allclose(cal.table["estimate"].round(4), [-0.0105, -0.0704, -0.0488, -0.0371],
                               atol=1e-12)
    np.testing.assert_allclose(cal.table["std_error"], [0.0244, 0.0307, 0.0210, 0.0136], rtol=0.10)
    assert cal.overall["std_error"] == pytest.approx(0.01597185188455984, rel=1e-10)

    simple = did.aggregate(mpdta_attgt, "simple")
    assert round(simple.overall["estimate"], 4) == -0.0400
    assert simple.overall["estimate"] == pytest.approx(-0.03995127515517701, abs=1e-14)
    assert simple.overall["std_error"] == pytest.approx(0.012034012770185419, rel=1e-10)
    assert simple.table.empty


@pytest.mark.reference
def test_mpdta_universal_base_matches_twfeweights(mpdta):
    """att_gt(..., base_period = "universal") in the twfeweights README: ATT(g,t) to 9 decimals, the
    pre-test p-value and the group-aggregated ATT -0.03101828."""
    res = did.att_gt(mpdta, "lemp", "countyreal", "year", "first.treat", base_period="universal")
    published = [0.000000000, -0.010503246, -0.070423158, -0.137258739, -0.100811363,
                 -0.003769294, 0.002750819, 0.000000000, -0.004594607, -0.041224472,
                 0.003306357, 0.033813012, 0.031087119, 0.000000000, -0.026054411]
    assert res["time"].tolist() == [2003, 2004, 2005, 2006, 2007] * 3
    np.testing.assert_allclose(res["att"], published, atol=5e-10)
    assert round(did.pretrend_test(res)["p_value"], 5) == 0.16812
    assert did.aggregate(res, "group").overall["estimate"] == pytest.approx(-0.03101828, abs=5e-9)


@pytest.mark.reference
def test_mpdta_twfe_matches_fixest(mpdta):
    """fixest::feols(lemp ~ post | countyreal + year, cluster = "countyreal"): -0.036549 (0.013265),
    t -2.75526, p 0.006079 (twfeweights README)."""
    out = did.twfe(mpdta, "lemp", "countyreal", "year", "treat_post", cohort="first.treat")
    assert round(out["estimate"], 6) == -0.036549
    assert round(out["std_error"], 6) == 0.013265
    assert round(out["estimate"] / out["std_error"], 5) == -2.75526
    assert round(out["p_value"], 6) == 0.006079
    assert out["estimate"] == pytest.approx(-0.03654893667406725, abs=1e-13)
    assert out["std_error"] == pytest.approx(0.01326515542933895, rel=1e-10)
    assert (out["n_obs"], out["n_clusters"]) == (2500, 500)


@pytest.mark.reference
def test_mpdta_bacon_sums_to_twfe(mpdta):
    b = did.bacon_decomposition(mpdta, "lemp", "countyreal", "year", "first.treat")
    tw = did.twfe(mpdta, "lemp", "countyreal", "year", "treat_post")["estimate"]
    assert b["weight"].sum() == pytest.approx(1.0, abs=1e-12)
    assert (b["weight"] * b["estimate"]).sum() == pytest.approx(tw, abs=1e-10)
    assert set(b["type"]) == {"Treated vs Untreated", "Earlier vs Later Treated", "Later vs Earlier Treated"}
    assert len(b) == 3 + 6


@pytest.mark.reference
def test_mpdta_not_yet_treated_regression_values(mpdta):
    """control_group = "not_yet": values pinned here (equal to 1e-15 to csdid 0.4.3's analytic path);
    the last cell of each cohort has no not-yet-treated comparison but the never treated, so it equals the
    never-treated estimate."""
    res = did.att_gt(mpdta, "lemp", "countyreal", "year", "first.treat", control_group="not_yet")
    np.testing.assert_allclose(res["att"].iloc[:4], [-0.01937236367592303, -0.07831909906206291,
                                                     -0.13627434632867927, -0.10081136308540524], atol=1e-14)
    np.testing.assert_allclose(res["std_error"].iloc[:4], [0.022310112883680434, 0.030390228543396975,
                                                           0.035403384968909705, 0.03435922583467303], rtol=1e-10)
    out = {k: did.aggregate(res, k).overall for k in ("simple", "group", "dynamic", "calendar")}
    assert out["simple"]["estimate"] == pytest.approx(-0.039763625623044384, abs=1e-14)
    assert out["simple"]["std_error"] == pytest.approx(0.012052424787341885, rel=1e-10)
    assert out["group"]["std_error"] == pytest.approx(0.0125751201316818, rel=1e-10)
    assert out["dynamic"]["std_error"] == pytest.approx(0.0195601769463942, rel=1e-10)
    assert out["calendar"]["std_error"] == pytest.approx(0.015570904421144767, rel=1e-10)


# ----------------------------------------------------------------------------------------------------------
# Reference data: Medicaid expansion (Mixtape Sessions Advanced-DID)
# ----------------------------------------------------------------------------------------------------------

# summary(att_gt(dins ~ yexp2, control_group = "notyettreated")), Advanced-DID solutions, 4 dp
MIXTAPE_ATT = {
    2014: [-0.0065, 0.0111, 0.0015, 0.0016, 0.0009, 0.0467, 0.0692, 0.0785, 0.0725, 0.0738, 0.0803],
    2015: [0.0071, -0.0245, -0.0027, 0.0003, -0.0100, -0.0020, 0.0491, 0.0526, 0.0682, 0.0663, 0.0738],
    2016: [0.0022, 0.0511, -0.0262, -0.0276, 0.0440, -0.0322, 0.0409, 0.0317, 0.0368, 0.0645, 0.0825],
    2017: [0.0102, -0.0161, 0.0019, 0.0177, 0.0012, -0.0063, 0.0036, 0.0398, 0.0471, 0.0681, 0.0650],
    2019: [0.0189, -0.0269, -0.0244, 0.0024, 0.0129, 0.0003, -0.0108, -0.0182, 0.0093, 0.0062, 0.0365],
}

# bacondecomp::bacon(dins ~ postTreated, id_var = "stfips", time_var = "year"), Advanced-DID solutions
BACON_ALL = [  # treated, untreated (99999 = never), estimate, weight, type
    (2016, 99999, 0.082728773, 0.0502256229, "Treated vs Untreated"),
    (2014, 99999, 0.074935691, 0.6215420836, "Treated vs Untreated"),
    (2015, 99999, 0.046864475, 0.0824014126, "Treated vs Untreated"),
    (2017, 99999, 0.102274094, 0.0211889347, "Treated vs Untreated"),
    (2019, 99999, 0.030943646, 0.0172650579, "Treated vs Untreated"),
    (2014, 2016, 0.050191048, 0.0258975868, "Earlier vs Later Treated"),
    (2015, 2016, 0.004156228, 0.0020600353, "Earlier vs Later Treated"),
    (2017, 2016, 0.031975667, 0.0002942908, "Later vs Earlier Treated"),
    (2019, 2016, 0.005429020, 0.0005885815, "Later vs Earlier Treated"),
    (2016, 2014, 0.054292531, 0.0172650579, "Later vs Earlier Treated"),
    (2015, 2014, 0.030656579, 0.0161859918, "Later vs Earlier Treated"),
    (2017, 2014, 0.077060485, 0.0097115951, "Later vs Earlier Treated"),
    (2019, 2014, 0.025483405, 0.0107906612, "Later vs Earlier Treated"),
    (2016, 2015, 0.041763062, 0.0011771630, "Later vs Earlier Treated"),
    (2014, 2015, 0.066569262, 0.0194231901, "Earlier vs Later Treated"),
    (2017, 2015, 0.063993540, 0.0008828723, "Later vs Earlier Treated"),
    (2019, 2015, 0.027470457, 0.0011771630, "Later vs Earlier Treated"),
    (2016, 2017, 0.014518637, 0.0007847754, "Earlier vs Later Treated"),
    (2014, 2017, 0.048755447, 0.0194231901, "Earlier vs Later Treated"),
    (2015, 2017, 0.008627171, 0.0020600353, "Earlier vs Later Treated"),
    (2019, 2017, 0.033588931, 0.0001961938, "Later vs Earlier Treated"),
    (2016, 2019, 0.090774537, 0.0047086521, "Earlier vs Later Treated"),
    (2014, 2019, 0.088170864, 0.0647439670, "Earlier vs Later Treated"),
    (2015, 2019, 0.061097391, 0.0082401413, "Earlier vs Later Treated"),
    (2017, 2019, 0.110885473, 0.0017657446, "Earlier vs Later Treated"),
]
BACON_TREATED_ONLY_WEIGHTS = {  # the same comparisons without the never-treated states
    (2014, 2016): 0.1248817408, (2015, 2016): 0.0099337748, (2017, 2016): 0.0014191107,
    (2019, 2016): 0.0028382214, (2016, 2014): 0.0832544939, (2015, 2014): 0.0780510880,
    (2017, 2014): 0.0468306528, (2019, 2014): 0.0520340587, (2016, 2015): 0.0056764428,
    (2014, 2015): 0.0936613056, (2017, 2015): 0.0042573321, (2019, 2015): 0.0056764428,
    (2016, 2017): 0.0037842952, (2014, 2017): 0.0936613056, (2015, 2017): 0.0099337748,
    (2019, 2017): 0.0009460738, (2016, 2019): 0.0227057711, (2014, 2019): 0.3122043519,
    (2015, 2019): 0.0397350993, (2017, 2019): 0.0085146641,
}


@pytest.mark.reference
def test_ehec_population_weight_is_state_constant(ehec):
    """W is the state's sum of ACS person weights (constant within state, population-sized); the course
    solutions, and these tests, treat states equally (unweighted)."""
    assert ehec.groupby("stfips")["W"].nunique().eq(1).all()
    assert (ehec["W"] > 10_000).all()
    assert ehec.groupby("stfips").size().eq(12).all() and ehec["stfips"].nunique() == 46


@pytest.mark.reference
def test_ehec_att_gt_not_yet_matches_mixtape(ehec):
    res = did.att_gt(ehec, "dins", "stfips", "year", "yexp2", control_group="not_yet")
    assert sorted(res["cohort"].unique()) == sorted(MIXTAPE_ATT)
    for g, values in MIXTAPE_ATT.items():
        rows = res[res["cohort"] == g]
        assert rows["time"].tolist() == list(range(2009, 2020))
        np.testing.assert_allclose(rows["att"].round(4), values, atol=1e-12, err_msg=f"cohort {g}")
    # ATT(2014, 2014) computed by hand in the solutions: 0.04670243
    assert res.set_index(["cohort", "time"]).loc[(2014, 2014), "att"] == pytest.approx(0.04670243, abs=5e-9)
    simple = did.aggregate(res, "simple").overall
    assert round(simple["estimate"], 3) == 0.068 and round(simple["ci_low"], 3) == 0.053
    assert simple["std_error"] == pytest.approx(0.008, rel=0.1)  # published (bootstrap) SE 0.008
    assert simple["std_error"] == pytest.approx(0.007831305660984505, rel=1e-10)
    with pytest.raises(ValueError, match="singular"):  # the solutions print no pre-test for these data
        did.pretrend_test(res)


@pytest.mark.reference
def test_ehec_without_never_treated_matches_mixtape(ehec):
    """Dropping the never-treated states: simple ATT 0.0728 (did drops 2019 on, cohort 2019 is the
    comparison), and with effects growing by 0.01 a year (dins2) 0.0917."""
    treated = ehec[ehec["yexp2"].notna()]
    res = did.att_gt(treated, "dins", "stfips", "year", "yexp2", control_group="not_yet")
    assert res["time"].max() == 2018 and 2019 not in set(res["cohort"])
    assert round(did.aggregate(res, "simple").overall["estimate"], 4) == 0.0728
    dyn = treated.assign(dins2=treated["dins"] + np.maximum(treated["year"] - treated["yexp2"], 0) * 0.01)
    res2 = did.att_gt(dyn, "dins2", "stfips", "year", "yexp2", control_group="not_yet")
    assert round(did.aggregate(res2, "simple").overall["estimate"], 4) == 0.0917


@pytest.mark.reference
def test_ehec_twfe_matches_fixest(ehec):
    """feols(dins ~ postTreated | stfips + year, cluster = "stfips"): 0.070321 (0.007401), t 9.50152,
    p 2.5169e-12; without the never-treated states 0.062817 (0.007653), t 8.2084, p 4.7423e-09."""
    out = did.twfe(ehec, "dins", "stfips", "year", "post", cohort="yexp2")
    assert (round(out["estimate"], 6), round(out["std_error"], 6)) == (0.070321, 0.007401)
    assert round(out["estimate"] / out["std_error"], 5) == 9.50152
    assert out["p_value"] == pytest.approx(2.5169e-12, rel=5e-5)
    assert (out["n_obs"], out["n_clusters"]) == (552, 46)
    sub = did.twfe(ehec[ehec["yexp2"].notna()], "dins", "stfips", "year", "post")
    assert (round(sub["estimate"], 6), round(sub["std_error"], 6)) == (0.062817, 0.007653)
    assert round(sub["estimate"] / sub["std_error"], 4) == 8.2084
    assert sub["p_value"] == pytest.approx(4.7423e-09, rel=5e-5)


@pytest.mark.reference
def test_ehec_bacon_matches_bacondecomp(ehec):
    b = did.bacon_decomposition(ehec, "dins", "stfips", "year", "yexp2")
    b = b.assign(control=b["control"].replace(np.inf, 99999)).set_index(["treated", "control"])
    assert len(b) == len(BACON_ALL)
    for tr, ctl, est, wt, kind in BACON_ALL:
        row = b.loc[(tr, ctl)]
        assert row["type"] == kind
        assert row["estimate"] == pytest.approx(est, abs=5e-10)
        assert row["weight"] == pytest.approx(wt, abs=5e-11)
    summary = did.bacon_summary(b.reset_index()).set_index("type")
    np.testing.assert_allclose(summary.loc[["Earlier vs Later Treated", "Later vs Earlier Treated",
                                            "Treated vs Untreated"], "weight"], [0.14911, 0.05827, 0.79262],
                               atol=5e-6)
    np.testing.assert_allclose(summary.loc[["Earlier vs Later Treated", "Later vs Earlier Treated",
                                            "Treated vs Untreated"], "avg_est"], [0.06983, 0.04486, 0.07228],
                               atol=5e-6)
    tw = did.twfe(ehec, "dins", "stfips", "year", "post")["estimate"]
    assert (b["weight"] * b["estimate"]).sum() == pytest.approx(tw, abs=1e-10)

    treated = ehec[ehec["yexp2"].notna()]
    b2 = did.bacon_decomposition(treated, "dins", "stfips", "year", "yexp2").set_index(["treated", "control"])
    assert len(b2) == len(BACON_TREATED_ONLY_WEIGHTS)
    for key, wt in BACON_TREATED_ONLY_WEIGHTS.items():
        assert b2.loc[key, "weight"] == pytest.approx(wt, abs=5e-11)
    tw2 = did.twfe(treated, "dins", "stfips", "year", "post")["estimate"]
    assert (b2["weight"] * b2["estimate"]).sum() == pytest.approx(tw2, abs=1e-10)


@pytest.mark.reference
def test_ehec_fepois_on_rates_close_to_ols(ehec):
    """PPML on the insured share (a fractional outcome, as PPML allows) with state and year effects gives a
    ratio near 1 + OLS effect / counterfactual mean: a consistency check on real data, not a published
    value."""
    out = did.fepois(ehec, "dins", "stfips", "year", "post")
    ols = did.twfe(ehec, "dins", "stfips", "year", "post")
    base = ehec.loc[ehec["post"] == 1, "dins"].mean() - ols["estimate"]
    assert out["ratio"] == pytest.approx(1 + ols["estimate"] / base, abs=0.02)
    assert out["n_clusters"] == 46


# ----------------------------------------------------------------------------------------------------------
# Benchmark script
# ----------------------------------------------------------------------------------------------------------


def test_benchmark_script_runs_small(capsys):
    spec = importlib.util.spec_from_file_location("benchmark_did", paths.PROJECT_ROOT / "scripts" /
                                                  "benchmark_did.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert mod.main(["--units", "300", "--periods", "50", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "att_gt (" in out and "aggregations" in out
