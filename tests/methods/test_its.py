"""Interrupted time series (pbc_analysis.methods.its): segmented Poisson / quasi-Poisson / NB2 regression.

Hand-computed and simulated cases need nothing outside the repository. The reference tests reproduce the
four models of Lopez Bernal, Cummins and Gasparrini, "Interrupted time series regression for the
evaluation of public health interventions: a tutorial", Int J Epidemiol 2017;46:348-355, on their Sicily
smoking-ban data (``../shared/reference/its_sicily/sicily.csv``; the authors' ``Rcode.R`` in
gasparrini/2017_lopezbernal_IJE_codedata), and pin every estimate to statsmodels' GLM fitted directly on a
hand-built design; they skip when the reference data are absent.
"""

from __future__ import annotations

import io

import matplotlib
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from pbc_analysis.core import paths
from pbc_analysis.methods import its
from pbc_analysis.publish import figures

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# the noiseless series are fitted perfectly (mu == y), which statsmodels reports as "perfect prediction"
pytestmark = pytest.mark.filterwarnings("ignore::statsmodels.tools.sm_exceptions.PerfectSeparationWarning")


def _sicily_path():
    return paths.REFERENCE_DIR / "its_sicily" / "sicily.csv"


def load_sicily() -> pd.DataFrame:
    path = _sicily_path()
    if not path.is_file():
        pytest.skip(f"Sicily ITS reference data not found at {path} "
                    "(clone the project beside ../shared to run the reference tests)")
    return pd.read_csv(path)


@pytest.fixture(scope="module")
def sicily() -> pd.DataFrame:
    return load_sicily()


def series(n_pre: int = 24, n_post: int = 24, b0: float = 4.0, trend: float = 0.01, level: float = np.log(0.8),
           slope: float = 0.0, pop: np.ndarray | None = None) -> pd.DataFrame:
    """A noiseless exponential series: y = pop exp(b0 + trend t + level post + slope (t - T0) post)."""
    t = np.arange(1, n_pre + n_post + 1)
    post = (t > n_pre).astype(int)
    pop = np.ones(len(t)) if pop is None else pop
    y = pop * np.exp(b0 + trend * t + level * post + slope * (t - n_pre) * post)
    return pd.DataFrame({"t": t, "post": post, "y": y, "pop": pop})


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------------------
# Reference: Lopez Bernal, Cummins, Gasparrini (2017), models 1-4
# ----------------------------------------------------------------------------------------------------------

def _r3(x):
    return round(float(x), 3)


def _r4(x):
    return round(float(x), 4)


@pytest.mark.reference
def test_sicily_model1_poisson(sicily):
    """model1 <- glm(aces ~ offset(log(stdpop)) + smokban + time, family=poisson): ci.exp 0.894 (0.865, 0.925)."""
    r = its.fit_segmented(sicily, "aces", "time", "smokban", offset="stdpop", family="poisson")
    c = r.coefficients.loc["level_change"]
    assert (_r3(c["ratio"]), _r3(c["ci_low"]), _r3(c["ci_high"])) == (0.894, 0.865, 0.925)
    assert r.dispersion == 1.0
    assert r.summary()["level_change_ratio"] == pytest.approx(c["ratio"])


@pytest.mark.reference
def test_sicily_model2_quasipoisson(sicily):
    """model2, family=quasipoisson: 0.894 (0.839, 0.953), summary(model2)$dispersion 3.559."""
    r = its.fit_segmented(sicily, "aces", "time", "smokban", offset="stdpop", family="quasipoisson")
    c = r.coefficients.loc["level_change"]
    assert (_r3(c["ratio"]), _r3(c["ci_low"]), _r3(c["ci_high"])) == (0.894, 0.839, 0.953)
    assert _r3(r.dispersion) == 3.559
    assert r.summary()["dispersion"] == r.dispersion


@pytest.mark.reference
@pytest.mark.parametrize("season", ["month", "time"])
def test_sicily_model3_quasipoisson_harmonics(sicily, season):
    """model3 adds harmonic(month, 2, 12): 0.8851 (0.8394, 0.9332); trend exp(12 b_time) = 1.0668 per year.
    With monthly time starting in January, harmonics of ``time`` equal those of ``month``."""
    r = its.fit_segmented(sicily, "aces", "time", "smokban", offset="stdpop", family="quasipoisson",
                          harmonics=2, period=12, season=season)
    c = r.coefficients.loc["level_change"]
    assert (_r4(c["ratio"]), _r4(c["ci_low"]), _r4(c["ci_high"])) == (0.8851, 0.8394, 0.9332)
    assert _r4(np.exp(12 * r.coefficients.at["time", "estimate"])) == 1.0668
    assert list(r.coefficients.index) == ["intercept", "time", "level_change", "sin1", "cos1", "sin2", "cos2"]


@pytest.mark.reference
def test_sicily_model4_centred_slope_change(sicily):
    """model4 adds I(time-36):smokban (slope change centred at the last pre-ban month): 0.876 (0.827, 0.929).
    The uncentred time:smokban would give a level change of 0.831 instead."""
    r = its.fit_segmented(sicily, "aces", "time", "smokban", offset="stdpop", family="quasipoisson",
                          harmonics=2, season="month", slope_change=True)
    c = r.coefficients.loc["level_change"]
    assert (_r3(c["ratio"]), _r3(c["ci_low"]), _r3(c["ci_high"])) == (0.876, 0.827, 0.929)
    assert r.last_pre_time == 36 and r.first_post_time == 37
    s = r.summary()
    assert s["slope_change_ratio"] == pytest.approx(r.coefficients.at["slope_change", "ratio"])
    assert s["slope_change_ci_low"] < 1 < s["slope_change_ci_high"]  # no evidence of a slope change


def _tsmodel_harmonic(x, nfreq, period):
    """tsModel::harmonic (R. D. Peng): k = 2^(0:(nfreq-1)) * 2 pi / period; cbind(sin(outer(x, k)), cos(...))."""
    k = 2.0 ** np.arange(nfreq) * 2 * np.pi / period
    m = np.outer(np.asarray(x, float), k)
    return np.column_stack([np.sin(m), np.cos(m)])


def _sicily_design(d: pd.DataFrame, harmonics: bool, slope: bool) -> tuple[np.ndarray, list[str]]:
    cols = [np.ones(len(d)), d["time"].to_numpy(float), d["smokban"].to_numpy(float)]
    names = ["intercept", "time", "level_change"]
    if slope:
        cols.append((d["time"].to_numpy(float) - 36) * d["smokban"].to_numpy(float))
        names.append("slope_change")
    if harmonics:
        cols.append(_tsmodel_harmonic(d["month"], 2, 12))
        names += ["sin1", "sin2", "cos1", "cos2"]
    return np.column_stack(cols), names


MODELS = {
    "model1": dict(family="poisson", harmonics=0, slope_change=False),
    "model2": dict(family="quasipoisson", harmonics=0, slope_change=False),
    "model3": dict(family="quasipoisson", harmonics=2, slope_change=False),
    "model4": dict(family="quasipoisson", harmonics=2, slope_change=True),
    "model4_poisson": dict(family="poisson", harmonics=2, slope_change=True),
}


@pytest.mark.reference
@pytest.mark.parametrize("model", list(MODELS))
def test_sicily_pinned_to_statsmodels_glm(sicily, model):
    """Every coefficient to 1e-8 and standard error to 1e-5 relative against statsmodels GLM on a hand-built
    design (R's column order: smokban, time, centred slope change, tsModel harmonics sin, sin, cos, cos)."""
    spec = MODELS[model]
    r = its.fit_segmented(sicily, "aces", "time", "smokban", offset="stdpop", season="month", **spec)
    X, names = _sicily_design(sicily, spec["harmonics"] > 0, spec["slope_change"])
    glm = sm.GLM(sicily["aces"].to_numpy(float), X, family=sm.families.Poisson(),
                 offset=np.log(sicily["stdpop"].to_numpy(float)))
    ref = glm.fit(scale="X2" if spec["family"] == "quasipoisson" else None)
    got = r.coefficients.loc[names]
    np.testing.assert_allclose(got["estimate"], ref.params, rtol=0, atol=1e-8)
    np.testing.assert_allclose(got["std_error"], ref.bse, rtol=1e-5)
    np.testing.assert_allclose(got["p_value"], ref.pvalues, rtol=1e-5, atol=1e-12)
    lo, hi = np.exp(ref.conf_int()).T
    np.testing.assert_allclose(got["ci_low"], lo, rtol=1e-6)
    np.testing.assert_allclose(got["ci_high"], hi, rtol=1e-6)
    np.testing.assert_allclose(r.fitted["fitted"], ref.mu, rtol=1e-8)
    assert r.dispersion == pytest.approx(ref.scale if spec["family"] == "quasipoisson" else 1.0, rel=1e-10)
    assert r.pearson_dispersion == pytest.approx(ref.pearson_chi2 / ref.df_resid, rel=1e-8)
    assert r.deviance == pytest.approx(ref.deviance, rel=1e-8)
    assert r.df_resid == ref.df_resid


@pytest.mark.reference
def test_sicily_newey_west_pinned_to_statsmodels_hac(sicily):
    """newey_west_lags=3: the covariance is statsmodels' HAC (Bartlett, 3 lags, no small-sample correction)."""
    r = its.fit_segmented(sicily, "aces", "time", "smokban", offset="stdpop", family="quasipoisson",
                          harmonics=2, season="month", newey_west_lags=3)
    X, names = _sicily_design(sicily, True, False)
    ref = sm.GLM(sicily["aces"].to_numpy(float), X, family=sm.families.Poisson(),
                 offset=np.log(sicily["stdpop"].to_numpy(float))).fit(cov_type="HAC", cov_kwds={"maxlags": 3})
    got = r.coefficients.loc[names]
    np.testing.assert_allclose(got["estimate"], ref.params, atol=1e-8)
    np.testing.assert_allclose(got["std_error"], ref.bse, rtol=1e-5)
    assert r.cov_type == "newey-west(3)"
    assert r.summary()["cov_type"] == "newey-west(3)"


@pytest.mark.reference
def test_sicily_negbin_pinned_to_statsmodels(sicily):
    """NB2 by ML: the same as statsmodels' discrete NegativeBinomial fitted directly; its coefficients solve
    the GLM NB2 score equations at the estimated alpha."""
    r = its.fit_segmented(sicily, "aces", "time", "smokban", offset="stdpop", family="negbin", harmonics=2,
                          season="month")
    X, names = _sicily_design(sicily, True, False)
    y, off = sicily["aces"].to_numpy(float), np.log(sicily["stdpop"].to_numpy(float))
    ref = sm.NegativeBinomial(y, X, loglike_method="nb2", offset=off).fit(maxiter=1000, disp=0)
    assert ref.mle_retvals["converged"]
    got = r.coefficients.loc[names]
    np.testing.assert_allclose(got["estimate"], ref.params[:-1], atol=1e-7)
    np.testing.assert_allclose(got["std_error"], ref.bse[:-1], rtol=1e-4)
    assert r.alpha == pytest.approx(ref.params[-1], rel=1e-4)
    glm = sm.GLM(y, X, family=sm.families.NegativeBinomial(alpha=r.alpha), offset=off).fit(tol=1e-12)
    np.testing.assert_allclose(got["estimate"], glm.params, atol=1e-8)
    assert r.dispersion == 1.0 and r.summary()["alpha"] == r.alpha
    # little extra-Poisson variation after seasonality: NB2 agrees with quasi-Poisson's level change
    assert got.loc["level_change", "ratio"] == pytest.approx(0.8851, abs=0.002)


@pytest.mark.reference
def test_sicily_effects_and_plot(sicily):
    """Model 3's events avoided after the ban: simulation and delta method agree; the plot is deterministic."""
    r = its.fit_segmented(sicily, "aces", "time", "smokban", offset="stdpop", family="quasipoisson",
                          harmonics=2, season="month")
    sim = its.effect_summary(r, seed=7)
    delta = its.effect_summary(r, method="delta")
    total_s, total_d = sim.iloc[-1], delta.iloc[-1]
    assert total_s["scope"] == "total" and (sim["scope"] == "point").sum() == 23  # Jan 2005 - Nov 2006
    assert total_s["avoided"] == pytest.approx(total_d["avoided"])
    assert total_s["ratio"] == pytest.approx(r.coefficients.at["level_change", "ratio"])
    assert total_s["avoided_low"] == pytest.approx(total_d["avoided_low"], rel=0.03)
    assert total_s["avoided_high"] == pytest.approx(total_d["avoided_high"], rel=0.03)
    assert 0 < total_s["avoided_low"] < total_s["avoided"] < total_s["avoided_high"]
    fig = figures.plot_its(r, per=1e5, title="Sicily, 2002-2006")
    assert fig.axes[0].get_ylabel() == "aces per 100,000"
    again = figures.plot_its(r, per=1e5, title="Sicily, 2002-2006")
    assert _png(fig) == _png(again)
    plt.close(fig)
    plt.close(again)


def test_reference_absent_skips(monkeypatch, tmp_path):
    """With the reference directory absent the reference tests skip with a reason naming the path."""
    monkeypatch.setattr(paths, "REFERENCE_DIR", tmp_path / "no-such-reference")
    with pytest.raises(pytest.skip.Exception, match="Sicily ITS reference data not found"):
        load_sicily()


# ----------------------------------------------------------------------------------------------------------
# Hand-computed cases
# ----------------------------------------------------------------------------------------------------------

def test_harmonic_terms_by_hand():
    """s = 0, 3, 6, 9 with period 12: angles 0, pi/2, pi, 3pi/2 (j = 1) and 0, pi, 2pi, 3pi (j = 2)."""
    h = its.harmonic_terms([0, 3, 6, 9], 2, 12)
    assert list(h.columns) == ["sin1", "cos1", "sin2", "cos2"]
    np.testing.assert_allclose(h["sin1"], [0, 1, 0, -1], atol=1e-15)
    np.testing.assert_allclose(h["cos1"], [1, 0, -1, 0], atol=1e-15)
    np.testing.assert_allclose(h["sin2"], [0, 0, 0, 0], atol=1e-15)
    np.testing.assert_allclose(h["cos2"], [1, -1, 1, -1], atol=1e-15)
    assert its.harmonic_terms([1.0, 2.0], 0).shape == (2, 0)
    # tsModel::harmonic(x, 2, 12) is the same four columns in the order sin1, sin2, cos1, cos2
    x = np.arange(1, 25)
    np.testing.assert_allclose(its.harmonic_terms(x, 2, 12)[["sin1", "sin2", "cos1", "cos2"]].to_numpy(),
                               _tsmodel_harmonic(x, 2, 12), atol=1e-14)
    # three pairs: j = 1, 2, 3 (tsModel would use frequencies 1, 2, 4)
    np.testing.assert_allclose(its.harmonic_terms([1.0], 3, 12)["sin3"], [np.sin(2 * np.pi * 3 / 12)])


def test_noiseless_series_recovers_level_change_exactly():
    """y = pop exp(4 + 0.01 t) x 0.8 after t = 24: the Poisson MLE reproduces the series, ratio 0.8 exactly."""
    pop = np.linspace(1000, 1500, 48)
    d = series(pop=pop)
    r = its.fit_segmented(d, "y", "t", "post", offset="pop")
    c = r.coefficients
    assert c.at["level_change", "ratio"] == pytest.approx(0.8, abs=1e-10)
    assert c.at["time", "estimate"] == pytest.approx(0.01, abs=1e-10)
    assert c.at["intercept", "estimate"] == pytest.approx(4.0, abs=1e-9)
    np.testing.assert_allclose(r.fitted["fitted"], d["y"], rtol=1e-10)
    assert r.deviance == pytest.approx(0.0, abs=1e-8)
    # counterfactual: the pre-period line continued, so exactly observed / 0.8 after the interruption
    f = r.fitted
    post = f["post"] == 1
    np.testing.assert_allclose(f.loc[post, "counterfactual"], f.loc[post, "observed"] / 0.8, rtol=1e-10)
    np.testing.assert_allclose(f.loc[~post, "counterfactual"], f.loc[~post, "fitted"], rtol=1e-12)
    q = its.fit_segmented(d, "y", "t", "post", offset="pop", family="quasipoisson")
    assert q.dispersion == pytest.approx(0.0, abs=1e-12)
    assert q.coefficients.at["level_change", "ci_low"] == pytest.approx(0.8, abs=1e-8)


def test_slope_change_centring_keeps_level_change_immediate():
    """y = exp(4 + 0.01 t - 0.2 post + 0.03 (t - 24) post): level change exp(-0.2) at the interruption,
    slope change exp(0.03) per month; the uncentred t x post would give -0.2 - 0.03 x 24 = -0.92."""
    d = series(level=-0.2, slope=0.03)
    r = its.fit_segmented(d, "y", "t", "post", slope_change=True)
    c = r.coefficients
    assert list(c.index) == ["intercept", "time", "level_change", "slope_change"]
    assert c.at["level_change", "estimate"] == pytest.approx(-0.2, abs=1e-9)
    assert c.at["slope_change", "estimate"] == pytest.approx(0.03, abs=1e-10)
    assert r.effect_terms == ("level_change", "slope_change")
    # at the first post month (t = 25) the effect is one month of slope change beyond the step
    e = its.effect_summary(r, method="delta")
    assert e["ratio"].iloc[0] == pytest.approx(np.exp(-0.2 + 0.03), rel=1e-9)
    assert e["ratio"].iloc[-2] == pytest.approx(np.exp(-0.2 + 0.03 * 24), rel=1e-9)
    # the uncentred parametrisation fitted by hand moves the level change
    X = np.column_stack([np.ones(48), d["t"], d["post"], d["t"] * d["post"]]).astype(float)
    unc = sm.GLM(d["y"].to_numpy(), X, family=sm.families.Poisson()).fit(tol=1e-12)
    assert unc.params[2] == pytest.approx(-0.2 - 0.03 * 24, abs=1e-8)
    assert unc.params[3] == pytest.approx(c.at["slope_change", "estimate"], abs=1e-9)


def test_fitted_interval_is_delta_method_on_the_log_scale():
    """fitted_low/high = exp(eta -/+ 1.96 sqrt(x'Vx)), checked by hand for one row."""
    rng = np.random.default_rng(3)
    d = series()
    d["y"] = rng.poisson(d["y"])
    r = its.fit_segmented(d, "y", "t", "post", slope_change=True)
    V = r.covariance.to_numpy()
    b = r.coefficients["estimate"].to_numpy()
    x = np.array([1.0, 30.0, 1.0, 6.0])
    x_cf = np.array([1.0, 30.0, 0.0, 0.0])
    row = r.fitted.loc[r.fitted["t" if "t" in r.fitted else "time"] == 30].iloc[0]
    z = 1.959963984540054
    for vec, name in [(x, "fitted"), (x_cf, "counterfactual")]:
        eta, se = vec @ b, np.sqrt(vec @ V @ vec)
        assert row[name] == pytest.approx(np.exp(eta), rel=1e-12)
        assert row[f"{name}_low"] == pytest.approx(np.exp(eta - z * se), rel=1e-9)
        assert row[f"{name}_high"] == pytest.approx(np.exp(eta + z * se), rel=1e-9)
    assert list(r.fitted.columns) == ["time", "post", "observed", "population", "fitted", "fitted_low",
                                      "fitted_high", "counterfactual", "counterfactual_low", "counterfactual_high"]


def test_autocorrelation_by_hand():
    """ACF r_k = sum (e_t - ebar)(e_t+k - ebar) / sum (e_t - ebar)^2 of deviance residuals, Ljung-Box
    Q(m) = n (n + 2) sum_k r_k^2 / (n - k), p = chi2_m upper tail."""
    from scipy import stats

    rng = np.random.default_rng(11)
    d = series(n_pre=30, n_post=30)
    d["y"] = rng.poisson(d["y"])
    r = its.fit_segmented(d, "y", "t", "post")
    y, mu = d["y"].to_numpy(float), r.fitted["fitted"].to_numpy()
    unit = 2 * (np.where(y > 0, y * np.log(np.where(y > 0, y, 1) / mu), 0) - (y - mu))
    e = np.sign(y - mu) * np.sqrt(unit)
    ec = e - e.mean()
    n = len(e)
    acf = np.array([np.sum(ec[:-k] * ec[k:]) for k in range(1, 13)]) / np.sum(ec ** 2)
    q = n * (n + 2) * np.cumsum(acf ** 2 / (n - np.arange(1, 13)))
    a = r.autocorrelation
    assert list(a.columns) == ["lag", "acf", "ljung_box", "p_value"] and a["lag"].tolist() == list(range(1, 13))
    np.testing.assert_allclose(a["acf"], acf, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(a["ljung_box"], q, rtol=1e-10)
    np.testing.assert_allclose(a["p_value"], stats.chi2.sf(q, np.arange(1, 13)), rtol=1e-8)
    assert r.summary()["ljung_box_p"] == pytest.approx(a["p_value"].iloc[-1])


def test_effect_summary_noiseless_by_hand():
    """Counterfactual exp(4 + 0.01 t), fitted 0.8 of it: 20% avoided at every post point."""
    d = series()
    r = its.fit_segmented(d, "y", "t", "post", family="quasipoisson")  # dispersion 0: no uncertainty
    e = its.effect_summary(r, method="delta")
    t = np.arange(25, 49)
    cf = np.exp(4 + 0.01 * t)
    pts = e[e["scope"] == "point"]
    assert list(e.columns) == ["scope", "time", "observed", "fitted", "counterfactual", "avoided", "avoided_low",
                               "avoided_high", "ratio"]
    np.testing.assert_allclose(pts["time"], t)
    np.testing.assert_allclose(pts["counterfactual"], cf, rtol=1e-9)
    np.testing.assert_allclose(pts["avoided"], 0.2 * cf, rtol=1e-8)
    tot = e.iloc[-1]
    assert tot["scope"] == "total" and np.isnan(tot["time"])
    assert tot["avoided"] == pytest.approx(0.2 * cf.sum(), rel=1e-8)
    assert tot["observed"] == pytest.approx(d.loc[d["post"] == 1, "y"].sum())
    assert tot["avoided_high"] - tot["avoided_low"] < 1e-6 * tot["avoided"]


def test_effect_summary_simulation_is_seeded_and_matches_delta():
    rng = np.random.default_rng(5)
    d = series(b0=5.0)
    d["y"] = rng.poisson(d["y"])
    r = its.fit_segmented(d, "y", "t", "post", family="quasipoisson")
    a = its.effect_summary(r, seed=1)
    b = its.effect_summary(r, seed=1)
    c = its.effect_summary(r, seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert a.iloc[-1]["avoided_low"] != c.iloc[-1]["avoided_low"]
    delta = its.effect_summary(r, method="delta")
    np.testing.assert_allclose(a["avoided"], delta["avoided"], rtol=1e-12)
    assert a.iloc[-1]["avoided_low"] == pytest.approx(delta.iloc[-1]["avoided_low"], rel=0.05)
    assert a.iloc[-1]["avoided_high"] == pytest.approx(delta.iloc[-1]["avoided_high"], rel=0.05)
    assert (a["avoided_low"] <= a["avoided"]).all() and (a["avoided"] <= a["avoided_high"]).all()
    assert a.iloc[-1]["avoided"] == pytest.approx(a.iloc[:-1]["avoided"].sum())
    with pytest.raises(ValueError, match="method must be one of 'simulation', 'delta'; got 'bootstrap'"):
        its.effect_summary(r, method="bootstrap")
    with pytest.raises(ValueError, match="n_sims must be >= 100, got 10"):
        its.effect_summary(r, n_sims=10)
    with pytest.raises(ValueError, match="confidence must be > 0 and < 1, got 0"):
        its.effect_summary(r, confidence=0)


# ----------------------------------------------------------------------------------------------------------
# Simulation: recovery, Newey-West, negative binomial
# ----------------------------------------------------------------------------------------------------------

def test_recovery_on_simulated_poisson_counts():
    """Poisson counts with a known level change ratio 0.85, monthly seasonality and population growth."""
    rng = np.random.default_rng(20240601)
    t = np.arange(1, 73)
    post = (t > 36).astype(int)
    pop = 50_000 * (1 + 0.002 * t)
    mu = pop * np.exp(-6 + 0.004 * t + np.log(0.85) * post + 0.1 * np.sin(2 * np.pi * t / 12))
    d = pd.DataFrame({"month": t, "referrals": rng.poisson(mu), "after": post, "list_size": pop})
    r = its.fit_segmented(d, "referrals", "month", "after", offset="list_size", harmonics=1)
    c = r.coefficients.loc["level_change"]
    assert c["ci_low"] < 0.85 < c["ci_high"]
    assert c["ratio"] == pytest.approx(0.85, abs=0.03)
    assert r.coefficients.at["sin1", "ci_low"] < np.exp(0.1) < r.coefficients.at["sin1", "ci_high"]
    assert 0.5 < r.pearson_dispersion < 1.6
    # row order does not matter: the result is sorted by time
    shuffled = d.sample(frac=1, random_state=1)
    r2 = its.fit_segmented(shuffled, "referrals", "month", "after", offset="list_size", harmonics=1)
    pd.testing.assert_frame_equal(r.coefficients, r2.coefficients, rtol=1e-10)
    assert r2.fitted["time"].tolist() == t.tolist()


def _autocorrelated(seed: int = 1, n: int = 96, rho: float = 0.8) -> pd.DataFrame:
    """Poisson counts around a mean with AR(1) log-scale noise (sd 0.2, rho 0.8): positively autocorrelated."""
    rng = np.random.default_rng(seed)
    u = np.empty(n)
    u[0] = rng.normal(0, 0.2)
    eps = rng.normal(0, 0.2 * np.sqrt(1 - rho ** 2), n)
    for i in range(1, n):  # the AR(1) recursion itself (simulation only)
        u[i] = rho * u[i - 1] + eps[i]
    t = np.arange(1, n + 1)
    post = (t > n // 2).astype(int)
    y = rng.poisson(np.exp(5 + 0.003 * t - 0.1 * post + u))
    return pd.DataFrame({"t": t, "post": post, "y": y})


def test_newey_west_widens_standard_errors_on_autocorrelated_series():
    d = _autocorrelated()
    plain = its.fit_segmented(d, "y", "t", "post", family="quasipoisson")
    nw = its.fit_segmented(d, "y", "t", "post", family="quasipoisson", newey_west_lags=6)
    assert plain.autocorrelation["acf"].iloc[0] > 0.3
    assert plain.summary()["ljung_box_p"] < 0.01
    for term in ("time", "level_change"):
        assert nw.coefficients.at[term, "std_error"] > 1.2 * plain.coefficients.at[term, "std_error"]
    pd.testing.assert_series_equal(nw.coefficients["estimate"], plain.coefficients["estimate"])
    # the HAC sandwich does not use the dispersion: Poisson and quasi-Poisson give the same errors
    nwp = its.fit_segmented(d, "y", "t", "post", family="poisson", newey_west_lags=6)
    np.testing.assert_allclose(nwp.coefficients["std_error"], nw.coefficients["std_error"], rtol=1e-10)


def test_negbin_recovers_level_change_and_alpha():
    rng = np.random.default_rng(99)
    d = series(n_pre=48, n_post=48, b0=4.0, trend=0.005, level=np.log(0.8))
    alpha = 0.05
    d["y"] = rng.negative_binomial(1 / alpha, 1 / (1 + alpha * d["y"]))  # mean mu, var mu + alpha mu^2
    r = its.fit_segmented(d, "y", "t", "post", family="negbin")
    c = r.coefficients.loc["level_change"]
    assert c["ci_low"] < 0.8 < c["ci_high"]
    assert r.alpha == pytest.approx(alpha, rel=0.5)
    qp = its.fit_segmented(d, "y", "t", "post", family="poisson")
    assert c["std_error"] > 1.5 * qp.coefficients.at["level_change", "std_error"]  # over-dispersion allowed for


def test_negbin_on_equidispersed_counts_warns_and_reduces_to_poisson():
    t = np.arange(1, 49)
    post = (t > 24).astype(int)
    d = pd.DataFrame({"t": t, "post": post, "y": np.random.default_rng(0).poisson(np.exp(3 + 0.01 * t - 0.2 * post))})
    with pytest.warns(RuntimeWarning, match="alpha is estimated at the boundary"):
        r = its.fit_segmented(d, "y", "t", "post", family="negbin")
    p = its.fit_segmented(d, "y", "t", "post", family="poisson")
    assert r.alpha < 1e-4
    np.testing.assert_allclose(r.coefficients["estimate"], p.coefficients["estimate"], atol=1e-4)
    np.testing.assert_allclose(r.coefficients["std_error"], p.coefficients["std_error"], rtol=1e-4)


# ----------------------------------------------------------------------------------------------------------
# Controlled ITS
# ----------------------------------------------------------------------------------------------------------

def _stack(treated: pd.DataFrame, control: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([treated.assign(area="pbc"), control.assign(area="comparison")], ignore_index=True)


def test_controlled_identical_series_gives_zero_difference():
    rng = np.random.default_rng(8)
    a = series(b0=5.0)
    a["y"] = rng.poisson(a["y"])
    r = its.fit_controlled(_stack(a, a.copy()), "y", "t", "post", group="area", treated_value="pbc",
                           slope_change=True, harmonics=1)
    c = r.coefficients
    assert list(c.index) == ["intercept", "time", "level_change", "slope_change", "sin1", "cos1", "group",
                             "group_time", "level_change_difference", "slope_change_difference"]
    for term in ("group", "group_time", "level_change_difference", "slope_change_difference"):
        assert c.at[term, "estimate"] == pytest.approx(0.0, abs=1e-9)
        assert c.at[term, "ratio"] == pytest.approx(1.0, abs=1e-9)
    assert r.effect_terms == ("level_change_difference", "slope_change_difference")
    assert r.summary()["level_change_term"] == "level_change_difference"
    e = its.effect_summary(r, method="delta")
    assert e.iloc[-1]["avoided"] == pytest.approx(0.0, abs=1e-6)
    assert list(r.fitted.columns[:3]) == ["group", "treated", "time"]
    assert set(r.autocorrelation["group"]) == {"pbc", "comparison"}


def test_controlled_difference_equals_separate_fits_and_recovers_noiseless_effect():
    """Fully interacted Poisson (no shared seasonality): the difference terms are the differences of two
    separate fits, with variances adding. Noiseless: treated 0.8 x, comparison 0.95 x after the interruption."""
    treated = series(level=np.log(0.8 * 0.95), b0=4.0)
    control = series(level=np.log(0.95), b0=4.5, trend=0.02)
    r = its.fit_controlled(_stack(treated, control), "y", "t", "post", "area", "pbc")
    c = r.coefficients
    assert c.at["level_change_difference", "ratio"] == pytest.approx(0.8, abs=1e-9)
    assert c.at["level_change", "ratio"] == pytest.approx(0.95, abs=1e-9)
    assert c.at["group_time", "estimate"] == pytest.approx(0.01 - 0.02, abs=1e-9)
    rng = np.random.default_rng(4)
    tr, co = treated.assign(y=rng.poisson(treated["y"])), control.assign(y=rng.poisson(control["y"]))
    r = its.fit_controlled(_stack(tr, co), "y", "t", "post", "area", "pbc", slope_change=True)
    ft = its.fit_segmented(tr, "y", "t", "post", slope_change=True).coefficients
    fc = its.fit_segmented(co, "y", "t", "post", slope_change=True).coefficients
    for diff, term in [("level_change_difference", "level_change"), ("slope_change_difference", "slope_change")]:
        assert r.coefficients.at[diff, "estimate"] == pytest.approx(ft.at[term, "estimate"] - fc.at[term, "estimate"],
                                                                    abs=1e-8)
        assert r.coefficients.at[diff, "std_error"] == pytest.approx(
            np.hypot(ft.at[term, "std_error"], fc.at[term, "std_error"]), rel=1e-6)
    # the counterfactual of the treated series follows the comparison series' change
    f = r.fitted
    pre_last = f[(f["treated"]) & (f["time"] == 25)].iloc[0]
    assert pre_last["counterfactual"] / pre_last["fitted"] == pytest.approx(
        np.exp(-r.coefficients.at["level_change_difference", "estimate"]
               - r.coefficients.at["slope_change_difference", "estimate"]), rel=1e-10)
    comp = f[~f["treated"]]
    np.testing.assert_allclose(comp["counterfactual"], comp["fitted"], rtol=1e-12)


def test_controlled_newey_west_is_summed_within_series():
    a, b = _autocorrelated(seed=3), _autocorrelated(seed=4)
    d = _stack(a, b)
    r = its.fit_controlled(d, "y", "t", "post", "area", "pbc", newey_west_lags=4)
    order = np.r_[0:len(a), len(a):len(d)]  # treated first, then comparison, each in time order
    s = d.iloc[order]
    G = (s["area"] == "pbc").to_numpy(float)
    t, p = s["t"].to_numpy(float), s["post"].to_numpy(float)
    X = np.column_stack([np.ones(len(s)), t, p, G, G * t, G * p])
    ref = sm.GLM(s["y"].to_numpy(float), X, family=sm.families.Poisson()).fit(
        cov_type="hac-panel", cov_kwds={"groups": 1 - G.astype(int), "maxlags": 4})
    np.testing.assert_allclose(r.coefficients["estimate"], ref.params, atol=1e-8)
    np.testing.assert_allclose(r.coefficients["std_error"], ref.bse, rtol=1e-5)


def test_controlled_validation():
    a = series()
    with pytest.raises(ValueError, match="group column 'area' not found"):
        its.fit_controlled(a, "y", "t", "post", "area", "pbc")
    with pytest.raises(ValueError, match="treated_value 'x' is not a value of group column 'area'"):
        its.fit_controlled(_stack(a, a), "y", "t", "post", "area", "x")
    three = pd.concat([_stack(a, a), a.assign(area="third")], ignore_index=True)
    with pytest.raises(ValueError, match="exactly two values"):
        its.fit_controlled(three, "y", "t", "post", "area", "pbc")
    b = a.assign(post=(a["t"] > 30).astype(int))
    with pytest.raises(ValueError, match="same time in both series"):
        its.fit_controlled(_stack(a, b), "y", "t", "post", "area", "pbc")
    dup = pd.concat([_stack(a, a), a.iloc[[3]].assign(area="pbc")], ignore_index=True)
    with pytest.raises(ValueError, match="duplicate values \\[4.0\\] within a series"):
        its.fit_controlled(dup, "y", "t", "post", "area", "pbc")


# ----------------------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("change, kwargs, message", [
    (None, {"outcome": "referrals"}, "outcome column 'referrals' not found"),
    (None, {"time": "month"}, "time column 'month' not found"),
    (None, {"offset": "list_size"}, "offset column 'list_size' not found"),
    (None, {"season": "calendar_month"}, "season column 'calendar_month' not found"),
    (lambda d: d.assign(post=d["post"] * 2), {}, "post column 'post' must be binary 0/1; found \\[2.0\\]"),
    (lambda d: d.assign(post=np.r_[d["post"].to_numpy()[:-1], 0]), {}, "post column 'post' is not monotone"),
    (lambda d: d.assign(post=0), {}, "post column 'post' must have both pre \\(0\\) and post \\(1\\) points"),
    (lambda d: d.assign(y=np.r_[-1.0, d["y"].to_numpy()[1:]]), {}, "outcome column 'y' has 1 negative count"),
    (lambda d: d.assign(pop=np.r_[0.0, d["pop"].to_numpy()[1:]]), {"offset": "pop"},
     "offset column 'pop' must be positive"),
    (lambda d: d.assign(t=np.r_[d["t"].to_numpy()[:-1], 1]), {}, "time column 't' has duplicate values \\[1.0\\]"),
    (lambda d: d.assign(y=np.r_[np.nan, d["y"].to_numpy()[1:]]), {}, "outcome column 'y' has 1 missing value"),
    (lambda d: d.assign(t=d["t"].astype(str)), {}, "time column 't' must be numeric"),
    (None, {"family": "gaussian"}, "family must be one of 'poisson', 'quasipoisson', 'negbin'; got 'gaussian'"),
    (None, {"harmonics": -1}, "harmonics must be >= 0, got -1"),
    (None, {"newey_west_lags": 1.5}, "newey_west_lags must be a whole number, got 1.5; or None"),
    (None, {"confidence": 95}, "confidence must be > 0 and < 1, got 95"),
    (lambda d: d.iloc[20:26], {"harmonics": 2}, "6 observations cannot fit 7 parameters"),
])
def test_validation_errors_name_the_column(change, kwargs, message):
    d = series()
    if change is not None:
        d = change(d)
    args = {"outcome": "y", "time": "t", "post": "post"} | kwargs
    with pytest.raises(ValueError, match=message):
        its.fit_segmented(d, **args)


def test_plot_its_draws_counterfactual_band_and_interruption():
    rng = np.random.default_rng(2)
    d = series(b0=5.0)
    d["y"] = rng.poisson(d["y"])
    r = its.fit_segmented(d, "y", "t", "post", slope_change=True)
    fig = figures.plot_its(r, title="test")
    ax = fig.axes[0]
    styles = [line.get_linestyle() for line in ax.get_lines()]
    assert "--" in styles and ":" in styles and "-" in styles
    vline = [line for line in ax.get_lines() if line.get_linestyle() == ":"][0]
    assert vline.get_xdata()[0] == pytest.approx(24.5)
    assert any(type(c).__name__ in ("PolyCollection", "FillBetweenPolyCollection") for c in ax.collections)
    labels = ax.get_legend_handles_labels()[1]
    assert {"observed", "fitted", "counterfactual", "interruption"} <= set(labels)
    again = figures.plot_its(r, title="test")
    assert _png(fig) == _png(again)
    plt.close(fig)
    plt.close(again)
    rc = its.fit_controlled(_stack(d, d.assign(y=rng.poisson(d["y"]))), "y", "t", "post", "area", "pbc")
    figc = figures.plot_its(rc)
    assert {"pbc: counterfactual", "comparison: fitted"} <= set(figc.axes[0].get_legend_handles_labels()[1])
    plt.close(figc)
