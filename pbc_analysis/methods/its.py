"""Interrupted time series (ITS): segmented Poisson, quasi-Poisson and negative binomial regression.

Follows Lopez Bernal, Cummins and Gasparrini, "Interrupted time series regression for the evaluation
of public health interventions: a tutorial", Int J Epidemiol 2017;46:348-355 (code and the Sicily
smoking-ban data published by the authors, repository ``gasparrini/2017_lopezbernal_IJE_codedata``,
``Rcode.R``), and, for comparison series, Lopez Bernal, Cummins and Gasparrini, "The use of controls in
interrupted time series studies of public health interventions", Int J Epidemiol 2018;47:2082-2093.
``tests/test_its.py`` reproduces the tutorial's four published models exactly.

Model (single series)
---------------------
For counts ``y_t`` at times ``t`` with an indicator ``post_t`` (0 before, 1 from the interruption on)
and optionally a population ``N_t``::

    log E[y_t] = log N_t + b0 + b1 t + b2 post_t [+ b3 (t - T0) post_t] [+ sum_j (s_j sin_j + c_j cos_j)]

Terms (rows of :attr:`ITSResult.coefficients`): ``intercept``, ``time`` (the underlying trend, per
time unit), ``level_change`` (``post``), ``slope_change`` (``(t - T0) post``), then ``sin1, cos1,
sin2, cos2, ...``.

- ``T0`` is the **last pre-interruption time**, so the slope-change term is centred there and
  ``exp(b2)`` stays the immediate (step) effect at the interruption, whatever the slope change. This is
  exactly the authors' model 4, ``glm(aces ~ offset(log(stdpop)) + smokban + time + I(time-36):smokban
  + harmonic(month,2,12), family=quasipoisson)`` (time 36 = Dec 2004 is the last month before the ban),
  which gives the published 0.876 (0.827, 0.929); the uncentred ``time:smokban`` would turn ``b2`` into
  the effect extrapolated back to ``t = 0`` (0.831 for Sicily). At the first post point ``T1`` the
  fitted/counterfactual ratio is ``exp(b2 + b3 (T1 - T0))``.
- Harmonics (Fourier terms for seasonality): ``sin_j = sin(2 pi j s / period)``,
  ``cos_j = cos(2 pi j s / period)`` for ``j = 1..harmonics``, with ``s`` the ``season`` column
  (default the time column). The tutorial uses ``harmonic(month, 2, 12)`` of the R package tsModel
  (R. D. Peng), whose definition is ``k = 2^(0:(nfreq-1)) * 2 pi / period; cbind(sin(outer(x, k)),
  cos(outer(x, k)))`` -- frequencies 1, 2, 4, 8, ... (dyadic), applied to the *month* variable. For
  ``harmonics <= 2`` (the tutorial's case) that is the same column space as here (frequencies 1 and
  2), so the fit is identical; for 3 or more pairs tsModel uses frequencies 1, 2, 4 rather than
  1, 2, 3, and this module follows the usual Fourier series (``j = 1..k``). Pass ``season="month"`` to
  use the calendar month as the tutorial does (with integer monthly time starting at a January,
  ``month`` and ``time`` give the same columns to rounding, ~1e-15).
- ``offset``: a population column; ``log`` of it enters with coefficient 1, so ratios are rate ratios.

Families
--------
- ``"poisson"``: Poisson GLM (statsmodels ``GLM``, IRLS), model-based covariance ``(X'WX)^-1``;
  ``dispersion`` 1.
- ``"quasipoisson"``: the same estimates; dispersion ``phi = Pearson chi-squared / (n - p)`` as R's
  ``quasipoisson`` (``summary.glm``), and standard errors multiplied by ``sqrt(phi)``
  (statsmodels ``GLM.fit(scale="X2")``).
- ``"negbin"``: negative binomial NB2 (``Var = mu + alpha mu^2``), ``alpha`` estimated jointly with the
  coefficients by maximum likelihood with statsmodels' discrete ``NegativeBinomial(loglike_method=
  "nb2")`` (BFGS from Poisson start values, polished by Newton; when the data show no over-dispersion
  ``alpha`` sits at its boundary 0, Newton fails and the BFGS solution is kept with a ``RuntimeWarning``
  -- the fit is then Poisson's); the covariance is the coefficient block
  of the inverse observed information of ``(b, alpha)``; ``alpha`` is reported in
  :attr:`ITSResult.alpha`, ``dispersion`` is 1. (Same coefficients as a GLM NB2 with ``alpha`` fixed at
  its estimate; standard errors differ slightly because the GLM uses the expected information.)

Intervals and tests are Wald with normal quantiles (as ``Epi::ci.exp``, which the tutorial uses):
``ratio = exp(b)``, ``exp(b -/+ z se)``, ``p = 2 (1 - Phi(|b / se|))``. (R's ``summary.glm`` prints
t-based p-values for the quasi family; the published intervals are normal-based.)

Newey-West
----------
``newey_west_lags=L`` replaces the covariance by the heteroscedasticity and autocorrelation consistent
(HAC) sandwich with Bartlett weights over ``L`` lags (Newey and West 1987), statsmodels
``cov_type="HAC"`` without small-sample correction (no prewhitening, unlike R's ``sandwich::NeweyWest``
default). The sandwich does not use the dispersion, so quasi-Poisson and Poisson give the same HAC
errors. Controlled fits use ``cov_type="hac-panel"`` (the sandwich summed within each series, so lags
never cross from one series to the other). ``L = 0`` gives White's heteroscedasticity-robust errors.

Fitted values and counterfactual
--------------------------------
:attr:`ITSResult.fitted` has, per time point, the fitted mean ``exp(x'b + log N)`` and the
counterfactual with the effect terms removed (``post = 0`` and no slope change; for a controlled fit, the
treated series without the difference terms, i.e. following the comparison series' change), each with a
``confidence`` interval by the delta method on the log-linear predictor: ``exp(eta -/+ z sqrt(x'Vx))``.

Autocorrelation
---------------
:attr:`ITSResult.autocorrelation`: the autocorrelation of the deviance residuals (the tutorial's
``residuals(model, type="deviance")``; R's ``acf``, biased estimator) at lags 1..12 (fewer for short
series) and the Ljung-Box statistic ``Q(m) = n (n + 2) sum_{k<=m} r_k^2 / (n - k)`` with its
chi-squared(m) p-value at each lag (Ljung and Box 1978; statsmodels ``acorr_ljungbox``). The residuals
are taken in time order, so the series should be equally spaced; the test does not allow for the
regression's degrees of freedom, so it is approximate. Controlled fits report each series separately.

Controlled ITS
--------------
:func:`fit_controlled` stacks the treated and one comparison series and fits (Lopez Bernal, Cummins and
Gasparrini 2018, the model with a control series)::

    log E[y] = log N + b0 + b1 t + b2 post [+ b3 (t - T0) post] + seasonality
               + g0 G + g1 G t + g2 G post [+ g3 G (t - T0) post]

with ``G = 1`` for the treated series. ``b2, b3`` are the comparison series' changes (terms
``level_change``, ``slope_change``: history and co-interventions the control shares); the treatment
effects are the differences ``g2`` (``level_change_difference``) and ``g3``
(``slope_change_difference``); ``group`` and ``group_time`` are ``g0, g1``. Both series must have the
same interruption time; seasonality is common to both.

Referrals avoided
-----------------
:func:`effect_summary` gives, per post-interruption point, ``avoided = counterfactual - fitted`` (positive
when the intervention lowered the count) and the total over the post period, with intervals either by
simulation (default: ``n_sims`` draws of the coefficients from ``N(b_hat, V)`` with
``numpy.random.default_rng(seed)``, percentile interval of the simulated avoided counts; King, Tomz and
Wittenberg 2000) or the delta method (gradient ``sum_t mu_cf,t x_cf,t - mu_t x_t``). Point estimates are
the plug-in values at ``b_hat``. Uncertainty is in the model's expected counts (not in the observed ones)
and NB2's ``alpha`` does not enter the mean, so it is not simulated.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from pbc_analysis.core.checks import check_choice, check_number, choices_of

__all__ = [
    "FAMILIES",
    "EffectMethod",
    "Family",
    "ITSResult",
    "effect_summary",
    "fit_controlled",
    "fit_segmented",
    "harmonic_terms",
]

Family = Literal["poisson", "quasipoisson", "negbin"]
EffectMethod = Literal["simulation", "delta"]        # intervals of the counts avoided
FAMILIES: tuple[str, ...] = choices_of(Family)
#: autocorrelation is reported to this lag (monthly data: one year)
ACF_LAGS = 12


# --------------------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ITSResult:
    """A fitted segmented regression (:func:`fit_segmented` or :func:`fit_controlled`).

    - ``coefficients``: indexed by term, columns ``estimate, std_error, ratio, ci_low, ci_high, p_value``
      (``ratio``, ``ci_low``, ``ci_high`` on the ratio scale, ``exp``).
    - ``covariance``: the coefficient covariance used (model-based, scaled by the dispersion for
      quasi-Poisson, or Newey-West).
    - ``dispersion``: the scale used (quasi-Poisson ``phi``; 1 otherwise); ``pearson_dispersion`` is
      Pearson chi-squared / residual df for every family (a diagnostic); ``alpha`` NB2's parameter.
    - ``fitted``: per time point ``[group, treated,] time, post, observed, population, fitted, fitted_low,
      fitted_high, counterfactual, counterfactual_low, counterfactual_high``.
    - ``autocorrelation``: ``[group,] lag, acf, ljung_box, p_value`` (deviance residuals).
    """

    family: str
    outcome: str
    coefficients: pd.DataFrame
    covariance: pd.DataFrame = field(repr=False)
    dispersion: float
    pearson_dispersion: float
    alpha: float | None
    fitted: pd.DataFrame = field(repr=False)
    autocorrelation: pd.DataFrame = field(repr=False)
    cov_type: str
    confidence: float
    effect_terms: tuple[str, ...]
    last_pre_time: float
    first_post_time: float
    n_obs: int
    df_resid: int
    deviance: float
    design: pd.DataFrame = field(repr=False)                 # the model matrix (for effect_summary)
    counterfactual_design: pd.DataFrame = field(repr=False)  # ... with the effect terms set to 0
    log_offset: np.ndarray = field(repr=False)
    controlled: bool = False

    def summary(self) -> dict[str, Any]:
        """Headline figures: the level (and slope) change ratio with interval and p-value, dispersion,
        family, covariance type and the Ljung-Box test at the largest lag reported. For a controlled fit
        the effect terms are the differences (``level_change_difference``, ...).

        Returns
        -------
        dict
            ``level_change_ratio``, its interval and p-value, the slope change's, ``dispersion``,
            ``ljung_box_p``, ...
        """
        level, slope = self.effect_terms[0], (self.effect_terms[1] if len(self.effect_terms) > 1 else None)
        c = self.coefficients
        out: dict[str, Any] = {"family": self.family, "controlled": self.controlled, "n_obs": self.n_obs,
                               "level_change_term": level,
                               "level_change_ratio": float(c.at[level, "ratio"]),
                               "level_change_ci_low": float(c.at[level, "ci_low"]),
                               "level_change_ci_high": float(c.at[level, "ci_high"]),
                               "level_change_p": float(c.at[level, "p_value"]),
                               "slope_change_term": slope}
        for key in ("ratio", "ci_low", "ci_high"):
            out[f"slope_change_{key}"] = float(c.at[slope, key]) if slope else None
        out["slope_change_p"] = float(c.at[slope, "p_value"]) if slope else None
        out.update({"confidence": self.confidence, "dispersion": self.dispersion,
                    "pearson_dispersion": self.pearson_dispersion, "alpha": self.alpha,
                    "cov_type": self.cov_type})
        ac = self.autocorrelation
        last = ac[ac["lag"] == ac["lag"].max()]
        if self.controlled:  # the treated series' test
            last = last[last["group"] == self.fitted.loc[self.fitted["treated"], "group"].iloc[0]]
        out["ljung_box_lag"] = int(last["lag"].iloc[0]) if len(last) else None
        out["ljung_box"] = float(last["ljung_box"].iloc[0]) if len(last) else None
        out["ljung_box_p"] = float(last["p_value"].iloc[0]) if len(last) else None
        return out


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------

def _column(data: pd.DataFrame, name: str, role: str) -> np.ndarray:
    """The column as float, with clear errors naming it (missing, not numeric, missing values)."""
    if name not in data.columns:
        raise ValueError(f"{role} column {name!r} not found in data (columns: {list(data.columns)})")
    s = data[name]
    if not (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)):
        raise ValueError(f"{role} column {name!r} must be numeric, got dtype {s.dtype}")
    v = s.to_numpy(dtype=float, na_value=np.nan)
    if np.isnan(v).any():
        raise ValueError(f"{role} column {name!r} has {int(np.isnan(v).sum())} missing value(s)")
    if not np.isfinite(v).all():
        raise ValueError(f"{role} column {name!r} has infinite values")
    return v


def _check_settings(family: str, harmonics: int, period: float, newey_west_lags: int | None,
                    confidence: float) -> None:
    check_choice("family", family, Family)
    check_number("harmonics", harmonics, 0, integer=True)
    check_number("period", period, 0, low_open=True)
    if newey_west_lags is not None:
        check_number("newey_west_lags", newey_west_lags, 0, integer=True, fix="or None for model-based errors")
    check_number("confidence", confidence, 0, 1, low_open=True, high_open=True)


def _prepare(data: pd.DataFrame, outcome: str, time: str, post: str, offset: str | None,
             season: str | None, series: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Validated arrays sorted by (series, time). ``series`` (codes, 0 = treated first) splits a
    stacked data set; post must switch once from 0 to 1 within each series at the same time."""
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    if len(data) == 0:
        raise ValueError("data has no rows")
    y = _column(data, outcome, "outcome")
    t = _column(data, time, "time")
    p = _column(data, post, "post")
    s = _column(data, season, "season") if season is not None else t
    pop = _column(data, offset, "offset") if offset is not None else np.ones(len(data))
    if (y < 0).any():
        bad = t[y < 0]
        raise ValueError(f"outcome column {outcome!r} has {int((y < 0).sum())} negative count(s) "
                         f"(first at {time}={bad.min():g})")
    if offset is not None and (pop <= 0).any():
        raise ValueError(f"offset column {offset!r} must be positive (its log enters the model); "
                         f"{int((pop <= 0).sum())} value(s) are <= 0")
    if not np.isin(p, (0.0, 1.0)).all():
        found = sorted(set(np.unique(p[~np.isin(p, (0.0, 1.0))]).tolist()))[:5]
        raise ValueError(f"post column {post!r} must be binary 0/1; found {found}")
    g = np.zeros(len(data), dtype=int) if series is None else np.asarray(series, dtype=int)
    order = np.lexsort((t, g))
    y, t, p, s, pop, g = (a[order] for a in (y, t, p, s, pop, g))
    same = g[1:] == g[:-1]
    dup = same & (t[1:] == t[:-1])
    if dup.any():
        raise ValueError(f"time column {time!r} has duplicate values {sorted(set(t[1:][dup].tolist()))[:5]}"
                         + (" within a series" if series is not None else ""))
    if (same & (p[1:] < p[:-1])).any():
        raise ValueError(f"post column {post!r} is not monotone in time: it must be 0 before the "
                         "interruption and 1 from it on (it goes back from 1 to 0)")
    first_post = np.full(g.max() + 1, np.nan)
    last_pre = np.full(g.max() + 1, np.nan)
    np.fmin.at(first_post, g[p == 1], t[p == 1])
    np.fmax.at(last_pre, g[p == 0], t[p == 0])
    if np.isnan(first_post).any() or np.isnan(last_pre).any():
        raise ValueError(f"post column {post!r} must have both pre (0) and post (1) points"
                         + (" in every series" if series is not None else ""))
    if series is not None and (np.ptp(first_post) > 0 or np.ptp(last_pre) > 0):
        raise ValueError(f"post column {post!r} must switch from 0 to 1 at the same time in both series "
                         f"(first post times {first_post.tolist()}, last pre times {last_pre.tolist()})")
    return {"y": y, "time": t, "post": p, "season": s, "population": pop, "series": g, "order": order,
            "time_values": data[time].to_numpy()[order],
            "last_pre": float(last_pre[0]), "first_post": float(first_post[0])}


# --------------------------------------------------------------------------------------------------
# Design
# --------------------------------------------------------------------------------------------------

def harmonic_terms(season: Any, harmonics: int, period: float = 12.0) -> pd.DataFrame:
    """Fourier terms ``sin_j = sin(2 pi j s / period)``, ``cos_j = cos(2 pi j s / period)`` for
    ``j = 1..harmonics``, columns ``sin1, cos1, sin2, cos2, ...``.

    For ``harmonics <= 2`` these span the same columns as ``tsModel::harmonic(s, harmonics, period)``
    used by Lopez Bernal et al. (2017); tsModel's frequencies are dyadic (1, 2, 4, ...) beyond that.

    Parameters
    ----------
    season : array-like
        The seasonal position of each point (e.g. the calendar month).
    harmonics : int
        The number of sine/cosine pairs.
    period : float
        The seasonal period.

    Returns
    -------
    pandas.DataFrame
        Columns ``sin1, cos1, sin2, cos2, ...``, one row per point.

    References
    ----------
    Lopez Bernal J, Cummins S, Gasparrini A (2017), Int J Epidemiol 46:348-355 (R package tsModel's
    ``harmonic``).
    """
    s = np.asarray(season, dtype=float)
    j = np.arange(1, harmonics + 1, dtype=float)
    angle = 2.0 * np.pi * np.outer(s, j) / period
    out = np.empty((len(s), 2 * harmonics))
    out[:, 0::2] = np.sin(angle)
    out[:, 1::2] = np.cos(angle)
    names = [f"{f}{k}" for k in range(1, harmonics + 1) for f in ("sin", "cos")]
    return pd.DataFrame(out, columns=names)


def _design(a: dict[str, np.ndarray], harmonics: int, period: float, slope_change: bool,
            controlled: bool) -> tuple[pd.DataFrame, pd.DataFrame, tuple[str, ...]]:
    """Design matrix, its counterfactual (effect terms zeroed) and the effect terms' names."""
    t, p = a["time"], a["post"]
    cols: dict[str, np.ndarray] = {"intercept": np.ones(len(t)), "time": t, "level_change": p}
    if slope_change:
        cols["slope_change"] = (t - a["last_pre"]) * p
    X = pd.concat([pd.DataFrame(cols), harmonic_terms(a["season"], harmonics, period)], axis=1)
    if controlled:
        treated = (a["series"] == 0).astype(float)
        X["group"] = treated
        X["group_time"] = treated * t
        X["level_change_difference"] = treated * p
        if slope_change:
            X["slope_change_difference"] = treated * X["slope_change"].to_numpy()
        effect = ("level_change_difference",) + (("slope_change_difference",) if slope_change else ())
    else:
        effect = ("level_change",) + (("slope_change",) if slope_change else ())
    Xcf = X.copy()
    Xcf[list(effect)] = 0.0
    return X, Xcf, effect


# --------------------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------------------

#: NB2's alpha at or below this (from the BFGS fit) is the boundary: Var = mu + alpha mu^2 adds under 1e-4 of the
#: variance at a mean of 100, so the model is the Poisson model (Cameron & Trivedi 2013, section 3.4)
NEGBIN_ALPHA_BOUNDARY = 1e-6


def _fit_model(y: np.ndarray, X: np.ndarray, log_offset: np.ndarray, family: str,
               newey_west_lags: int | None, panel: np.ndarray | None
               ) -> tuple[np.ndarray, np.ndarray, float, float | None, np.ndarray, str]:
    """Estimates, covariance, dispersion, alpha, fitted means and a covariance label."""
    import warnings

    import statsmodels.api as sm

    cov: dict[str, Any] = {}
    label = "model"
    if newey_west_lags is not None:
        if panel is None:
            cov = {"cov_type": "HAC", "cov_kwds": {"maxlags": int(newey_west_lags)}}
        else:
            cov = {"cov_type": "hac-panel", "cov_kwds": {"maxlags": int(newey_west_lags), "groups": panel}}
        label = f"newey-west({int(newey_west_lags)})"
    if family in ("poisson", "quasipoisson"):
        model = sm.GLM(y, X, family=sm.families.Poisson(), offset=log_offset)
        res = model.fit(scale="X2" if family == "quasipoisson" else None, tol=1e-12, maxiter=200, **cov)
        params = np.asarray(res.params, dtype=float)
        vcov = np.asarray(res.cov_params(), dtype=float)
        disp = float(res.scale) if family == "quasipoisson" else 1.0
        return params, vcov, disp, None, np.asarray(res.mu, dtype=float), label
    model = sm.NegativeBinomial(y, X, loglike_method="nb2", offset=log_offset)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = model.fit(method="bfgs", maxiter=2000, disp=0)
    if not (np.isfinite(start.params[-1]) and start.params[-1] > NEGBIN_ALPHA_BOUNDARY):
        # alpha at its boundary (no over-dispersion): NB2 is the Poisson model there. Newton polishing on the
        # boundary takes minutes and ends with alpha = NaN, so the Poisson fit is returned, with alpha = 0.
        warnings.warn(f"negative binomial: alpha is estimated at the boundary ({float(start.params[-1]):.2g} <= "
                      f"{NEGBIN_ALPHA_BOUNDARY:g}: no over-dispersion, NB2 reduces to Poisson); the Poisson fit is "
                      "used, with alpha = 0", RuntimeWarning, stacklevel=4)
        params, vcov, _, _, mu, label = _fit_model(y, X, log_offset, "poisson", newey_west_lags, panel)
        return params, vcov, 1.0, 0.0, mu, label
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit(method="newton", start_params=start.params, maxiter=100, tol=1e-12, disp=0, **cov)
    params = np.asarray(res.params, dtype=float)
    if not (np.isfinite(params).all() and params[-1] > 0):
        warnings.warn("negative binomial: alpha is estimated at the boundary (~0, no over-dispersion: NB2 "
                      "reduces to Poisson); Newton polishing failed, using the BFGS solution", RuntimeWarning,
                      stacklevel=4)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = model.fit(method="bfgs", maxiter=2000, disp=0, **cov)
        params = np.asarray(res.params, dtype=float)
    k = X.shape[1]
    vcov = np.asarray(res.cov_params(), dtype=float)[:k, :k]
    mu = np.exp(X @ params[:k] + log_offset)
    return params[:k], vcov, 1.0, float(params[k]), mu, label


def _coefficient_table(names: list[str], est: np.ndarray, vcov: np.ndarray, confidence: float) -> pd.DataFrame:
    se = np.sqrt(np.clip(np.diag(vcov), 0.0, None))
    z = stats.norm.ppf(0.5 + confidence / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        zstat = est / se
    p = np.where(se > 0, 2 * stats.norm.sf(np.abs(zstat)), np.where(est == 0, 1.0, 0.0))
    out = pd.DataFrame({"estimate": est, "std_error": se, "ratio": np.exp(est), "ci_low": np.exp(est - z * se),
                        "ci_high": np.exp(est + z * se), "p_value": p}, index=pd.Index(names, name="term"))
    return out


def _predict(X: np.ndarray, log_offset: np.ndarray, est: np.ndarray, vcov: np.ndarray,
             z: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and delta-method interval on the log-linear predictor, vectorised over rows."""
    eta = X @ est + log_offset
    se = np.sqrt(np.clip(np.einsum("ij,jk,ik->i", X, vcov, X), 0.0, None))
    return np.exp(eta), np.exp(eta - z * se), np.exp(eta + z * se)


def _autocorrelation(resid: np.ndarray, series: np.ndarray, labels: list[Hashable] | None) -> pd.DataFrame:
    """ACF of residuals and Ljung-Box Q at lags 1..min(12, n - 1), per series."""
    from statsmodels.stats.diagnostic import acorr_ljungbox
    from statsmodels.tsa.stattools import acf

    frames = []
    for code in np.unique(series):  # one or two series
        r = resid[series == code]
        nlags = min(ACF_LAGS, len(r) - 1)
        if nlags < 1 or np.allclose(r, r[0]):
            continue
        lb = acorr_ljungbox(r, lags=nlags)
        f = pd.DataFrame({"lag": np.arange(1, nlags + 1), "acf": acf(r, nlags=nlags, fft=False)[1:],
                          "ljung_box": lb["lb_stat"].to_numpy(float), "p_value": lb["lb_pvalue"].to_numpy(float)})
        if labels is not None:
            f.insert(0, "group", labels[code])
        frames.append(f)
    if not frames:
        cols = (["group"] if labels is not None else []) + ["lag", "acf", "ljung_box", "p_value"]
        return pd.DataFrame(columns=cols)
    return pd.concat(frames, ignore_index=True)


def _fit(data: pd.DataFrame, outcome: str, time: str, post: str, offset: str | None, family: str,
         harmonics: int, period: float, season: str | None, slope_change: bool, newey_west_lags: int | None,
         confidence: float, series: np.ndarray | None, labels: list[Hashable] | None) -> ITSResult:
    import statsmodels.api as sm

    _check_settings(family, harmonics, period, newey_west_lags, confidence)
    a = _prepare(data, outcome, time, post, offset, season, series)
    controlled = series is not None
    X, Xcf, effect = _design(a, harmonics, period, slope_change, controlled)
    n, k = X.shape
    if n <= k:
        raise ValueError(f"{n} observations cannot fit {k} parameters ({', '.join(X.columns)})")
    if np.linalg.matrix_rank(X.to_numpy()) < k:
        raise ValueError(f"design matrix is rank deficient (terms {', '.join(X.columns)}); too few points "
                         "before or after the interruption, or too many harmonics for the period?")
    y, log_off = a["y"], np.log(a["population"])
    est, vcov, disp, alpha, mu, label = _fit_model(y, X.to_numpy(), log_off, family, newey_west_lags,
                                                   a["series"] if controlled else None)
    names = list(X.columns)
    coefs = _coefficient_table(names, est, vcov, confidence)
    z = stats.norm.ppf(0.5 + confidence / 2)
    fit, fit_lo, fit_hi = _predict(X.to_numpy(), log_off, est, vcov, z)
    cf, cf_lo, cf_hi = _predict(Xcf.to_numpy(), log_off, est, vcov, z)
    fam = sm.families.Poisson() if not alpha else sm.families.NegativeBinomial(alpha=alpha)   # alpha 0: Poisson
    var = mu if alpha is None else mu + alpha * mu ** 2
    df_resid = n - k
    pearson = float(np.sum((y - mu) ** 2 / var) / df_resid)
    deviance = float(np.sum(fam.resid_dev(y, mu) ** 2))
    fitted = pd.DataFrame({"time": a["time_values"], "post": a["post"].astype(int), "observed": y,
                           "population": a["population"], "fitted": fit, "fitted_low": fit_lo,
                           "fitted_high": fit_hi, "counterfactual": cf, "counterfactual_low": cf_lo,
                           "counterfactual_high": cf_hi})
    if controlled:
        fitted.insert(0, "treated", a["series"] == 0)
        fitted.insert(0, "group", pd.Series(labels, dtype=object).to_numpy()[a["series"]])
    return ITSResult(
        family=family, outcome=outcome, coefficients=coefs,
        covariance=pd.DataFrame(vcov, index=pd.Index(names, name="term"), columns=names),
        dispersion=disp, pearson_dispersion=pearson, alpha=alpha, fitted=fitted,
        autocorrelation=_autocorrelation(fam.resid_dev(y, mu), a["series"], labels), cov_type=label,
        confidence=confidence, effect_terms=effect, last_pre_time=float(a["last_pre"]),
        first_post_time=float(a["first_post"]),
        n_obs=n, df_resid=df_resid, deviance=deviance, controlled=controlled, design=X, counterfactual_design=Xcf,
        log_offset=log_off)


def fit_segmented(data: pd.DataFrame, outcome: str, time: str, post: str, offset: str | None = None,
                  family: Family = "poisson", harmonics: int = 0, period: float = 12.0, slope_change: bool = False,
                  newey_west_lags: int | None = None, confidence: float = 0.95, season: str | None = None
                  ) -> ITSResult:
    """Segmented regression of one count series on trend, a step (and slope) change and seasonality.

    ``log E[y] = log N + b0 + b1 time + b2 post [+ b3 (time - T0) post] [+ harmonics]``, ``T0`` the last
    pre-interruption time (see the module docstring for the families, the harmonic terms and the
    covariance options). Lopez Bernal, Cummins and Gasparrini (2017), Int J Epidemiol 46:348-355: their
    models 1-4 are ``family="poisson"``, ``"quasipoisson"``, ``"quasipoisson"`` with ``harmonics=2,
    season="month"``, and the same with ``slope_change=True``, all with ``offset="stdpop"``.

    ``data`` holds one row per time point (any order; sorted by time in the result). ``post`` is 0/1 and
    switches once from 0 to 1; ``offset`` is a population column (positive) whose log is the offset;
    ``season`` is the column the harmonics are computed from (default ``time``). Raises ``ValueError``
    naming the column for a missing or non-numeric column, missing values, negative counts, a
    non-positive population, a non-binary or non-monotone ``post``, duplicate times, or an unknown family.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per time point.
    outcome, time, post : str
        The count, time and 0/1 post-interruption columns.
    offset : str, optional
        A positive population column (its log is the offset).
    family : {"poisson", "quasipoisson", "negbin"}
        The model family.
    harmonics : int
        Seasonal sine/cosine pairs (>= 0).
    period : float
        The seasonal period in time units (12 for months).
    slope_change : bool
        Whether to add the slope-change term.
    newey_west_lags : int, optional
        Newey-West (HAC) errors with this many lags (None: model-based).
    confidence : float
        Interval level, in (0, 1).
    season : str, optional
        The column the harmonics are computed from (default ``time``).

    Returns
    -------
    ITSResult

    References
    ----------
    Lopez Bernal J, Cummins S, Gasparrini A (2017). Interrupted time series regression for the evaluation of
    public health interventions: a tutorial. Int J Epidemiol 46:348-355.
    """
    return _fit(data, outcome, time, post, offset, family, harmonics, period, season, slope_change,
                newey_west_lags, confidence, None, None)


def fit_controlled(data: pd.DataFrame, outcome: str, time: str, post: str, group: str, treated_value: Hashable,
                   offset: str | None = None, family: Family = "poisson", harmonics: int = 0, period: float = 12.0,
                   slope_change: bool = False, newey_west_lags: int | None = None, confidence: float = 0.95,
                   season: str | None = None) -> ITSResult:
    """Controlled ITS: the segmented model on a treated and a comparison series stacked, with interactions.

    Lopez Bernal, Cummins and Gasparrini, "The use of controls in interrupted time series studies of
    public health interventions", Int J Epidemiol 2018;47:2082-2093. Terms: the comparison series'
    ``intercept, time, level_change[, slope_change]``, common harmonics, then ``group`` (treated
    indicator), ``group_time``, and the treatment effects ``level_change_difference`` (treated x post)
    and ``slope_change_difference`` (treated x (time - T0) x post): the treated series' change over and
    above the comparison series'. ``data[group]`` must have exactly two values, one equal to
    ``treated_value``; both series must switch ``post`` at the same time. Newey-West errors are summed
    within series (statsmodels ``hac-panel``). The counterfactual in :attr:`ITSResult.fitted` is the
    treated series with the difference terms removed (the comparison series' rows equal their fit).

    Parameters
    ----------
    data : pandas.DataFrame
        The two series stacked, one row per series and time point.
    outcome, time, post : str
        As :func:`fit_segmented`.
    group : str
        The column telling the series apart.
    treated_value : hashable
        The value of ``group`` of the treated series.
    offset, family, harmonics, period, slope_change, newey_west_lags, confidence, season
        As :func:`fit_segmented`.

    Returns
    -------
    ITSResult

    References
    ----------
    Lopez Bernal J, Cummins S, Gasparrini A (2018). The use of controls in interrupted time series studies of
    public health interventions. Int J Epidemiol 47:2082-2093.
    """
    if group not in data.columns:
        raise ValueError(f"group column {group!r} not found in data (columns: {list(data.columns)})")
    g = data[group]
    if g.isna().any():
        raise ValueError(f"group column {group!r} has {int(g.isna().sum())} missing value(s)")
    values = list(pd.unique(g))
    if treated_value not in values:
        raise ValueError(f"treated_value {treated_value!r} is not a value of group column {group!r} "
                         f"(values: {values[:10]})")
    if len(values) != 2:
        raise ValueError(f"group column {group!r} must have exactly two values (treated and one comparison "
                         f"series), found {len(values)}: {values[:10]}")
    comparison = values[1] if values[0] == treated_value else values[0]
    series = np.where((g == treated_value).to_numpy(), 0, 1)
    return _fit(data, outcome, time, post, offset, family, harmonics, period, season, slope_change,
                newey_west_lags, confidence, series, [treated_value, comparison])


# --------------------------------------------------------------------------------------------------
# Effects
# --------------------------------------------------------------------------------------------------

def effect_summary(result: ITSResult, method: EffectMethod = "simulation",
                   n_sims: int = 10_000, seed: int = 0, confidence: float = 0.95) -> pd.DataFrame:
    """Counts avoided by the intervention: ``avoided = counterfactual - fitted`` per post point and in total.

    Rows ``scope == "point"`` (one per post-interruption time of the treated series) then one row
    ``scope == "total"`` (sums over the post period; ``time`` missing). Columns ``scope, time, observed,
    fitted, counterfactual, avoided, avoided_low, avoided_high, ratio`` (``fitted / counterfactual``).

    Intervals: ``method="simulation"`` draws ``n_sims`` coefficient vectors from ``N(b_hat, V)`` (``V`` the
    fit's covariance, so dispersion or Newey-West errors carry over) with
    ``numpy.random.default_rng(seed)`` and takes percentile intervals of the simulated avoided counts
    (King, Tomz and Wittenberg 2000, "Making the most of statistical analyses", AJPS 44:347-361);
    ``method="delta"`` uses the delta method, ``avoided -/+ z sqrt(g'Vg)`` with gradient
    ``g = sum_t (mu_cf,t x_cf,t - mu_t x_t)``. Point estimates are plug-in values at ``b_hat``.

    Parameters
    ----------
    result : ITSResult
        A fit of :func:`fit_segmented` or :func:`fit_controlled` (its treated series).
    method : {"simulation", "delta"}
        How the intervals are made.
    n_sims : int
        Simulation draws (at least 100).
    seed : int
        Seed of the simulation.
    confidence : float
        Interval level, in (0, 1).

    Returns
    -------
    pandas.DataFrame
        ``scope, time, observed, fitted, counterfactual, avoided, avoided_low, avoided_high, ratio``.

    References
    ----------
    King G, Tomz M, Wittenberg J (2000), Am J Polit Sci 44:347-361 (simulation of quantities of interest);
    Lopez Bernal J, Cummins S, Gasparrini A (2017), Int J Epidemiol 46:348-355.
    """
    check_choice("method", method, EffectMethod)
    check_number("confidence", confidence, 0, 1, low_open=True, high_open=True)
    if method == "simulation":
        check_number("n_sims", n_sims, 100, integer=True)
    f = result.fitted
    rows = (f["post"] == 1).to_numpy()
    if result.controlled:
        rows = rows & f["treated"].to_numpy(dtype=bool)
    X = result.design.to_numpy()[rows]
    Xcf = result.counterfactual_design.to_numpy()[rows]
    off = result.log_offset[rows]
    b = result.coefficients["estimate"].to_numpy()
    V = result.covariance.to_numpy()
    mu, mu_cf = np.exp(X @ b + off), np.exp(Xcf @ b + off)
    avoided = mu_cf - mu
    q = (1 - confidence) / 2
    if method == "simulation":
        rng = np.random.default_rng(seed)
        draws = rng.multivariate_normal(b, V, size=int(n_sims))  # (n_sims, k)
        sim = np.exp(draws @ Xcf.T + off) - np.exp(draws @ X.T + off)  # (n_sims, n_post)
        sim = np.column_stack([sim, sim.sum(axis=1)])
        low, high = np.quantile(sim, [q, 1 - q], axis=0)
    else:
        z = stats.norm.ppf(1 - q)
        grad = mu_cf[:, None] * Xcf - mu[:, None] * X  # (n_post, k)
        grad = np.vstack([grad, grad.sum(axis=0)])
        se = np.sqrt(np.clip(np.einsum("ij,jk,ik->i", grad, V, grad), 0.0, None))
        est = np.append(avoided, avoided.sum())
        low, high = est - z * se, est + z * se
    obs = f.loc[rows, "observed"].to_numpy()
    out = pd.DataFrame({
        "scope": ["point"] * int(rows.sum()) + ["total"],
        "time": np.append(f.loc[rows, "time"].to_numpy(dtype=float), np.nan),
        "observed": np.append(obs, obs.sum()),
        "fitted": np.append(mu, mu.sum()),
        "counterfactual": np.append(mu_cf, mu_cf.sum()),
        "avoided": np.append(avoided, avoided.sum()),
        "avoided_low": low,
        "avoided_high": high,
    })
    out["ratio"] = out["fitted"] / out["counterfactual"]
    return out

