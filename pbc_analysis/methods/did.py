"""Difference-in-differences for staggered adoption: TWFE, Callaway-Sant'Anna, Bacon decomposition, PPML.

Practices join practice based commissioning (PBC) at different times, so the evaluation is a
*staggered adoption* design: unit ``i`` (a GP practice) is first treated in period ``g_i`` (its
*cohort*) and stays treated; ``g_i = 0`` or missing means never treated in the data. This module gives

- :func:`twfe`: the static two-way fixed effects regression ``y_it = a_i + l_t + b D_it + e_it``
  (``D_it = 1`` from the cohort's start on), estimated by the within transformation, with
  cluster-robust standard errors computed as R's ``fixest::feols`` does by default;
- :func:`att_gt`: group-time average treatment effects ``ATT(g, t)`` of Callaway and Sant'Anna,
  "Difference-in-Differences with multiple time periods", J Econometrics 2021;225:200-230, with the
  unconditional (no covariates) estimator and analytic influence-function standard errors exactly as R's
  ``did::att_gt`` (``bstrap = FALSE, cband = FALSE``), or the seeded multiplier bootstrap;
- :func:`aggregate`: ``did::aggte``'s simple, group, dynamic (event-study) and calendar aggregations,
  with the estimation effect of the weights in the influence function;
- :func:`pretrend_test`: ``did``'s Wald pre-test that all pre-treatment ``ATT(g, t)`` are zero;
- :func:`plot_event_study`: the event-study figure;
- :func:`bacon_decomposition`: Goodman-Bacon, "Difference-in-differences with variation in treatment
  timing", J Econometrics 2021;225:254-277: TWFE as a weighted average of all 2x2 comparisons;
- :func:`fepois`: Poisson pseudo-maximum-likelihood (PPML) with unit and time fixed effects, as
  ``fixest::fepois`` (Berge 2018, "Efficient estimation of maximum likelihood models with multiple
  fixed-effects: the R package FENmlm"), for referral *counts* with a list-size offset.

``tests/test_did.py`` reproduces, on the ``did`` package's ``mpdta`` data and the Mixtape Sessions
Medicaid-expansion data (``../shared/reference/did_*``), the numbers published in the READMEs of ``did``,
``csdid`` and ``twfeweights`` and in the Advanced-DID course solutions (``did``, ``fixest`` and
``bacondecomp`` output), and checks TWFE and PPML against statsmodels fits with explicit dummies. All
estimators are unweighted (every unit counts once; no sampling or population weights).

Two-way fixed effects (:func:`twfe`)
------------------------------------
The within transformation demeans ``y`` and ``D`` by unit and by period with alternating projections
(the method of ``fixest`` and ``lfe``; Gaure 2013): repeatedly subtract unit means then period means
until the largest change is below ``1e-13`` relative. In a balanced panel one sweep is exact
(``x_it - x_i. - x_.t + x_..``) and the second only confirms it; unbalanced panels converge
geometrically. Then ``b = sum(D~ y~) / sum(D~^2)`` and the residuals ``e = y~ - b D~`` are those of the
dummy-variable regression (Frisch-Waugh-Lovell).

Cluster-robust variance (CR1), fixest's default ``ssc(adj = TRUE, fixef.K = "nested",
cluster.adj = TRUE)``::

    V = G / (G - 1) * (n - 1) / (n - K) * sum_g (sum_{i in g} D~_i e_i)^2 / (sum D~^2)^2

with ``G`` clusters, ``n`` observations and ``K`` = 1 (the slope) plus the number of fixed-effect
levels of every fixed-effect dimension *not nested* in the clusters, less one reference level for each
such dimension after the first counted (fixest counts ``sum(levels) - (dims - 1)``, and a nested dimension
is dropped before counting). With the default clustering by unit, the unit effects are nested, so
``K = 1 + T``: this reproduces fixest's published ``-0.036549 (0.013265)`` on mpdta and ``0.070321
(0.007401)`` on the Medicaid data (46 states, 12 years), and, outside the test suite, pyfixest 0.60 with
clusters nesting units, periods or neither. Tests and intervals use Student's t with ``G - 1`` degrees of
freedom, as fixest does for clustered standard errors.

Callaway and Sant'Anna (:func:`att_gt`)
---------------------------------------
For cohort ``g`` and period ``t``, with base period ``b`` (``varying``: ``b`` = the period before ``t``
for ``t < g``, anticipation periods included, and the last period before ``g - anticipation`` for
``t >= g``; ``universal``: always the latter, with ``ATT(g, b) = 0``), treated units
``G_i = 1{g_i = g}`` and comparison units ``C_i`` (``never``: never treated; ``not_yet``: never treated or
``g_i > max(t, b) + anticipation`` and ``g_i != g``, as ``did``'s ``compute.att_gt``)::

    ATT(g, t) = mean(dY | G = 1) - mean(dY | C = 1),     dY_i = Y_it - Y_ib

This is what ``did``'s ``reg``, ``ipw`` and ``dr`` estimators all reduce to without covariates
(``DRDID::reg_did_panel``/``drdid_panel`` with an intercept only). The influence function, in ``did``'s
scaling (``n`` = all units, including those in neither group, whose entries are 0)::

    psi_i = n * [ G_i (dY_i - mean_G) / n_G  -  C_i (dY_i - mean_C) / n_C ]

and ``se = sqrt(mean(psi^2) / n)``; pointwise intervals ``ATT -/+ z se``. Every ``(g, t)`` cell is
computed at once from the units x periods outcome matrix (one pivot of the balanced panel). As in
``did``'s ``pre_process_did``: units treated in the first period are dropped (with a warning), cohorts
with ``g <= first period + anticipation`` get no ``ATT(g, t)``, cohorts after the last period are never
treated, and with ``not_yet`` but no never-treated units the last cohort is only a comparison group and
the periods from ``g_last - anticipation`` on are dropped.

The multiplier bootstrap (``bootstrap=True``) follows ``did``'s ``mboot``: draws
``sqrt(n) mean(psi_i V_i)`` with i.i.d. multipliers ``V`` (Mammen's two-point weights by default, as
``BMisc::multiplier_bootstrap``; Rademacher optional), standard error = interquartile range of the draws
/ (z_.75 - z_.25) / sqrt(n), and the simultaneous band's critical value = the ``confidence`` quantile of
``max_k |draw_k / sigma_k|`` (R's type 1 quantiles). R's random numbers cannot be reproduced, so these
agree with ``did`` only up to simulation error; ``seed`` makes them reproducible here.

Aggregations (:func:`aggregate`), as ``did``'s ``compute.aggte``
-----------------------------------------------------------------
With ``p_g`` the share of units in cohort ``g`` and ``w_k = p_g(k) / sum_{k' in S} p_g(k')`` over a set
``S`` of cells:

- ``simple``: all post-treatment cells (``g <= t <= g + max_e``), weights ``w_k``;
- ``group``: ``theta(g)`` = mean of cohort ``g``'s post-treatment cells; overall ``sum_g p_g theta(g) /
  sum_g p_g``;
- ``dynamic``: ``theta(e)`` = ``w``-weighted mean of cells with ``t - g = e`` (``min_e <= e <= max_e``;
  ``balance_e`` keeps only cohorts observed at least ``balance_e`` periods after treatment); overall =
  mean of ``theta(e)`` over ``e >= 0``;
- ``calendar``: ``theta(t)`` = ``w``-weighted mean of the cells treated at ``t``; overall = mean over ``t``.

Influence function of a weighted aggregate ``sum_k w_k ATT_k``: ``sum_k w_k psi_k`` plus, where the
weights are estimated cohort shares, ``did``'s ``wif`` term::

    sum_k ATT_k [ (1{g_i = g(k)} - p_g(k)) / P  -  p_g(k) / P^2 * sum_{k'} (1{g_i = g(k')} - p_g(k')) ],
    P = sum_k p_g(k)

For ``group``'s overall effect the indicator compares each unit's cohort with the list of cohorts (the
current ``did`` and ``csdid``; some older ``did`` releases indexed the cell vector there). ``did``
recodes time to consecutive integers before comparing ``t`` with ``g + max_e`` for ``simple`` and
``group``, so ``max_e`` counts periods there but time units in ``dynamic``; ``min_e`` only applies to
``dynamic``; this module does the same. Two departures where ``did`` returns degenerate output: a cohort
with no post-treatment cell within ``max_e`` is left out of ``group`` (``did``: missing overall effect),
and an event time whose cohorts ``balance_e`` removes is left out of ``dynamic`` (``did``: estimate 0,
missing SE). A standard error below ``sqrt(machine eps) * 10`` is reported as missing, as in ``did``.

Checked (``tests/test_did.py``): on ``mpdta`` and the Medicaid data every ``ATT(g, t)`` and aggregate
printed by ``did``'s README and the course solutions (4 dp; twfeweights' README to 9 dp), the pre-test
p-value 0.16812, and, outside the test suite, every analytic standard error and aggregate to 1e-15
against ``csdid`` 0.4.3 (a line-by-line Python port of ``did``) with ``bstrap = False``.

Pre-test (:func:`pretrend_test`): ``W = n ATT_pre' V_pre^-1 ATT_pre`` with ``V = psi' psi / n`` over the
pre-treatment cells (``t < g``; zero-variance cells dropped), chi-squared with as many degrees of
freedom as cells (``did``'s ``att_gt``: "P-value for pre-test of parallel trends assumption").

Bacon decomposition (:func:`bacon_decomposition`)
-------------------------------------------------
For a balanced panel with timing groups ``k`` (share of units ``n_k``, share of periods treated
``D_k``) and never-treated units ``U``, Goodman-Bacon's Theorem 1 writes the TWFE coefficient as
``sum s beta`` over: *Treated vs Untreated* (``k`` against ``U``, weight ``(n_k + n_U)^2 n_kU (1 - n_kU)
D_k (1 - D_k) / V_D``), *Earlier vs Later Treated* (``k`` before ``l`` starts, weight ``((n_k + n_l)
(1 - D_l))^2 n_kl (1 - n_kl) (D_k - D_l)/(1 - D_l) (1 - D_k)/(1 - D_l) / V_D``) and *Later vs Earlier
Treated* (``l`` against the already treated ``k``, weight ``((n_k + n_l) D_k)^2 n_kl (1 - n_kl)
(D_l/D_k) (D_k - D_l)/D_k / V_D``), with ``n_ab = n_a / (n_a + n_b)`` and ``V_D`` the variance of the
two-way demeaned treatment. Units treated from the first period are a timing group with ``D = 1``
(*Later vs Always Treated*). The labels are those of R's ``bacondecomp::bacon``.

PPML (:func:`fepois`)
---------------------
``E[y_it] = exp(offset_it + a_i + l_t + b D_it)``, fitted by iteratively reweighted least squares in
which each weighted least-squares step absorbs both sets of effects by weighted alternating projections
(``fixest::feglm``; Correia, Guimaraes and Zylkin 2020, Stata J 20:95-115). Units or periods whose
outcome is zero throughout have an infinite fixed effect and are dropped first (fixest's
``fixef.rm = "perfect"``), repeatedly until none is left. Cluster-robust variance as for :func:`twfe`
with the weighted demeaned regressor ``D~`` (weights ``mu``): ``V = adj * sum_g (sum D~ (y - mu))^2 /
(sum mu D~^2)^2``, with the same small-sample factor; tests and intervals are normal (fixest reports
``z`` values for GLMs). ``ratio = exp(b)`` is the rate ratio.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "ATTgtFit",
    "AggregateResult",
    "aggregate",
    "att_gt",
    "bacon_decomposition",
    "bacon_summary",
    "fepois",
    "pretrend_test",
    "relative_effect",
    "total_effect",
    "treated_from_cohort",
    "twfe",
]

_SE_FLOOR = np.sqrt(np.finfo(float).eps) * 10  # did: se <= sqrt(.Machine$double.eps)*10 -> NA
_DEMEAN_TOL = 1e-13
_DEMEAN_MAX_ITER = 100_000


# ----------------------------------------------------------------------------------------------------------
# Validation helpers
# ----------------------------------------------------------------------------------------------------------


def _require_columns(data: pd.DataFrame, columns: dict[str, str | None]) -> None:
    """Raise ``ValueError`` naming the first argument whose column is not in ``data``."""
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame, not {type(data).__name__}")
    for role, col in columns.items():
        if col is not None and col not in data.columns:
            raise ValueError(f"{role} column '{col}' is not in the data (columns: {list(data.columns)})")


def _no_missing(data: pd.DataFrame, col: str, role: str) -> None:
    n_missing = int(data[col].isna().sum())
    if n_missing:
        raise ValueError(f"{role} column '{col}' has {n_missing} missing value(s); drop or impute them first")


def _numeric(data: pd.DataFrame, col: str, role: str) -> np.ndarray:
    s = data[col]
    if not (pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype)):
        raise ValueError(f"{role} column '{col}' must be numeric (found dtype {s.dtype})")
    return s.to_numpy(dtype=float, na_value=np.nan)


def _cohort_array(data: pd.DataFrame, unit: str, cohort: str) -> np.ndarray:
    """Cohort per row as floats with never treated coded 0 (0 or missing in the data); checked constant
    within unit."""
    g = _numeric(data, cohort, "cohort")
    g = np.where(np.isnan(g), 0.0, g)
    if np.any(g < 0):
        raise ValueError(f"cohort column '{cohort}' has negative values; use 0 or missing for never treated")
    codes, _ = pd.factorize(data[unit], sort=True)
    n_units = codes.max() + 1 if len(codes) else 0
    gmin = np.full(n_units, np.inf)
    gmax = np.full(n_units, -np.inf)
    np.minimum.at(gmin, codes, g)
    np.maximum.at(gmax, codes, g)
    bad = np.flatnonzero(gmin != gmax)
    if bad.size:
        raise ValueError(
            f"cohort column '{cohort}' is not constant within unit column '{unit}' "
            f"({bad.size} unit(s) with more than one cohort)")
    return g


def _binary(data: pd.DataFrame, col: str, role: str) -> np.ndarray:
    d = _numeric(data, col, role)
    if not np.all((d == 0) | (d == 1)):
        raise ValueError(f"{role} column '{col}' must be 0/1 (or boolean)")
    return d


def _check_unique_cells(unit_codes: np.ndarray, time_codes: np.ndarray, n_times: int, unit: str,
                        time: str) -> None:
    key = np.sort(unit_codes.astype(np.int64) * n_times + time_codes)
    if np.any(key[1:] == key[:-1]):
        raise ValueError(f"more than one row for some ({unit}, {time}) pairs; the panel must have one row "
                         "per unit and period")


def treated_from_cohort(data: pd.DataFrame, time: str, cohort: str) -> pd.Series:
    """The treated-post indicator ``1{cohort > 0 and time >= cohort}`` (0 for never treated: cohort 0 or
    missing), as an integer Series aligned with ``data``."""
    _require_columns(data, {"time": time, "cohort": cohort})
    t = _numeric(data, time, "time")
    g = _numeric(data, cohort, "cohort")
    g = np.where(np.isnan(g), 0.0, g)
    return pd.Series(((g > 0) & (t >= g)).astype(int), index=data.index, name="treated")


def _check_treated_matches_cohort(data: pd.DataFrame, time: str, treated: str, cohort: str,
                                  d: np.ndarray) -> None:
    expected = treated_from_cohort(data, time, cohort).to_numpy()
    n_bad = int(np.sum(expected != d))
    if n_bad:
        raise ValueError(
            f"treated column '{treated}' is inconsistent with cohort column '{cohort}' in {n_bad} row(s): "
            f"expected {treated} = 1 exactly when {cohort} > 0 and {time} >= {cohort}")


# ----------------------------------------------------------------------------------------------------------
# Alternating projections
# ----------------------------------------------------------------------------------------------------------


def _demean(x: np.ndarray, fe_codes: list[np.ndarray], fe_sizes: list[int],
            weights: np.ndarray | None = None, tol: float = _DEMEAN_TOL,
            max_iter: int = _DEMEAN_MAX_ITER) -> np.ndarray:
    """Residuals of the columns of ``x`` (n x k) on the dummies of every fixed-effect dimension (weighted
    least squares if ``weights``), by alternating projections: subtract (weighted) group means dimension
    by dimension until the largest change is below ``tol`` times the scale of ``x``."""
    x = np.array(x, dtype=float, copy=True)
    if x.ndim == 1:
        x = x[:, None]
    w = np.ones(x.shape[0]) if weights is None else np.asarray(weights, dtype=float)
    wsum = [np.bincount(c, weights=w, minlength=s) for c, s in zip(fe_codes, fe_sizes, strict=True)]
    scale = max(1.0, float(np.max(np.abs(x))) if x.size else 1.0)
    for _ in range(max_iter):
        change = 0.0
        for c, s, ws in zip(fe_codes, fe_sizes, wsum, strict=True):
            for j in range(x.shape[1]):
                means = np.bincount(c, weights=w * x[:, j], minlength=s) / ws
                step = means[c]
                x[:, j] -= step
                change = max(change, float(np.max(np.abs(step))))
        if change <= tol * scale:
            return x
    warnings.warn(f"alternating projections did not converge in {max_iter} iterations (last change "
                  f"{change:.2e}); results may be inaccurate", RuntimeWarning, stacklevel=3)
    return x


def _nested(fe: np.ndarray, cl: np.ndarray) -> bool:
    """True if every level of the fixed effect ``fe`` (codes 0..L-1) lies within a single cluster."""
    size = int(fe.max()) + 1
    lo, hi = np.full(size, np.iinfo(np.int64).max), np.full(size, -1)
    np.minimum.at(lo, fe, cl)
    np.maximum.at(hi, fe, cl)
    return bool(np.all(lo == hi))


def _fixest_adjustment(n: int, n_coef: int, fe_codes: list[np.ndarray], fe_sizes: list[int],
                       cl: np.ndarray, n_cl: int) -> tuple[float, int]:
    """fixest's default small-sample factor ``G/(G-1) (n-1)/(n-K)`` with ``fixef.K = "nested"``: ``K`` is
    the number of coefficients plus the fixed-effect levels of the dimensions not nested in the clusters,
    less one reference level per counted dimension after the first."""
    counted = [s for c, s in zip(fe_codes, fe_sizes, strict=True) if not _nested(c, cl)]
    k = n_coef + (sum(counted) - (len(counted) - 1) if counted else 0)
    return n_cl / (n_cl - 1) * (n - 1) / (n - k), k


def _cluster_codes(data: pd.DataFrame, cluster: str | None, unit: str) -> tuple[np.ndarray, int]:
    col = unit if cluster is None else cluster
    _no_missing(data, col, "cluster")
    codes, levels = pd.factorize(data[col], sort=True)
    if len(levels) < 2:
        raise ValueError(f"cluster column '{col}' needs at least two clusters")
    return codes, len(levels)


# ----------------------------------------------------------------------------------------------------------
# Two-way fixed effects (OLS)
# ----------------------------------------------------------------------------------------------------------


def twfe(data: pd.DataFrame, outcome: str, unit: str, time: str, treated: str, cluster: str | None = None,
         confidence: float = 0.95, *, cohort: str | None = None) -> pd.Series:
    """Static two-way fixed effects DiD ``y_it = a_i + l_t + b treated_it + e_it`` (``fixest::feols(y ~
    treated | unit + time, cluster = ~unit)``).

    Returns a Series ``estimate, std_error, ci_low, ci_high, p_value, n_obs, n_clusters`` (cluster-robust
    CR1 errors with fixest's small-sample factor, t with ``G - 1`` df; see the module docstring).
    ``cluster`` defaults to ``unit``. Balanced or unbalanced panels; rows with missing values are refused
    (the error names the column). If ``cohort`` is given, ``treated`` is checked against
    ``1{cohort > 0 and time >= cohort}``.
    """
    _require_columns(data, {"outcome": outcome, "unit": unit, "time": time, "treated": treated,
                            "cluster": cluster, "cohort": cohort})
    for col, role in ((outcome, "outcome"), (unit, "unit"), (time, "time"), (treated, "treated")):
        _no_missing(data, col, role)
    y = _numeric(data, outcome, "outcome")
    d = _binary(data, treated, "treated")
    if cohort is not None:
        _numeric(data, time, "time")
        _cohort_array(data, unit, cohort)
        _check_treated_matches_cohort(data, time, treated, cohort, d)
    uc, ulev = pd.factorize(data[unit], sort=True)
    tc, tlev = pd.factorize(data[time], sort=True)
    _check_unique_cells(uc, tc, len(tlev), unit, time)
    fe_codes, fe_sizes = [uc, tc], [len(ulev), len(tlev)]

    z = _demean(np.column_stack([y, d]), fe_codes, fe_sizes)
    yt, dt = z[:, 0], z[:, 1]
    sdd = float(dt @ dt)
    if sdd <= 1e-12 * max(1.0, float(d @ d)):
        raise ValueError(f"treated column '{treated}' has no variation left after removing unit and time "
                         "effects (every unit always or never treated?)")
    beta = float(dt @ yt) / sdd
    resid = yt - beta * dt

    cl, n_cl = _cluster_codes(data, cluster, unit)
    score = np.bincount(cl, weights=dt * resid, minlength=n_cl)
    adj, _ = _fixest_adjustment(len(y), 1, fe_codes, fe_sizes, cl, n_cl)
    se = float(np.sqrt(adj * (score @ score))) / sdd
    return _inference(beta, se, stats.t(df=n_cl - 1), confidence, len(y), n_cl)


def _inference(estimate: float, se: float, dist, confidence: float, n_obs: int, n_clusters: int) -> pd.Series:
    _check_confidence(confidence)
    crit = float(dist.ppf(1 - (1 - confidence) / 2))
    p = float(2 * dist.sf(abs(estimate / se))) if se > 0 else np.nan
    return pd.Series({"estimate": estimate, "std_error": se, "ci_low": estimate - crit * se,
                      "ci_high": estimate + crit * se, "p_value": p, "n_obs": n_obs, "n_clusters": n_clusters})


def _int_if_integral(values: np.ndarray) -> np.ndarray:
    """Periods and cohorts as integers when they are whole numbers (years, months), else floats."""
    values = np.asarray(values, dtype=float)
    if values.size and np.all(np.isfinite(values)) and np.all(values == np.round(values)):
        return values.astype(np.int64)
    return values


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, not {confidence}")


# ----------------------------------------------------------------------------------------------------------
# Poisson with two-way fixed effects (PPML)
# ----------------------------------------------------------------------------------------------------------


def _drop_all_zero(y: np.ndarray, fe_codes: list[np.ndarray]) -> np.ndarray:
    """Rows to keep after repeatedly removing fixed-effect levels whose outcome is zero throughout."""
    keep = np.ones(y.size, dtype=bool)
    while True:
        removed = False
        for c in fe_codes:
            tot = np.bincount(c[keep], weights=y[keep], minlength=c.max() + 1)
            present = np.bincount(c[keep], minlength=c.max() + 1) > 0
            zero_levels = present & (tot <= 0)
            if zero_levels.any():
                keep &= ~zero_levels[c]
                removed = True
        if not removed:
            return keep


def _halve_step(y: np.ndarray, eta: np.ndarray, eta_new: np.ndarray,
                dev_old: float) -> tuple[np.ndarray, np.ndarray, float]:
    """One IRLS step of a Poisson fit with step halving, as R's ``glm.fit``: halve the step from ``eta``
    towards ``eta_new`` (at most 30 times) until the deviance is finite and not above ``dev_old``.
    Returns the accepted linear predictor, its mean and deviance."""
    mu_new = np.exp(eta_new)
    dev = _poisson_deviance(y, mu_new)
    halvings = 0
    while (not np.isfinite(dev) or dev > dev_old * (1 + 1e-10) + 1e-12) and halvings < 30:
        eta_new = (eta_new + eta) / 2
        mu_new = np.exp(eta_new)
        dev = _poisson_deviance(y, mu_new)
        halvings += 1
    return eta_new, mu_new, dev


def fepois(data: pd.DataFrame, outcome: str, unit: str, time: str, treated: str, offset: str | None = None,
           cluster: str | None = None, confidence: float = 0.95, *, cohort: str | None = None,
           tol: float = 1e-12, max_iter: int = 100) -> pd.Series:
    """Poisson regression with unit and time fixed effects (PPML, ``fixest::fepois(y ~ treated |
    unit + time, offset = ~offset, cluster = ~unit)``).

    ``outcome``: non-negative counts (non-integers allowed, as PPML). ``offset``: a column already on the
    log scale (e.g. log list size) entering the linear predictor with coefficient 1. Returns the Series of
    :func:`twfe` (normal-based tests and intervals) plus ``ratio = exp(estimate)``, ``ratio_ci_low``,
    ``ratio_ci_high``; ``n_obs`` counts the rows used after dropping units or periods whose outcome is
    zero throughout (their fixed effect is infinite). IRLS stops when the relative change in deviance is
    below ``tol``.
    """
    _require_columns(data, {"outcome": outcome, "unit": unit, "time": time, "treated": treated,
                            "offset": offset, "cluster": cluster, "cohort": cohort})
    for col, role in ((outcome, "outcome"), (unit, "unit"), (time, "time"), (treated, "treated"),
                      (offset, "offset")):
        if col is not None:
            _no_missing(data, col, role)
    y_all = _numeric(data, outcome, "outcome")
    if np.any(y_all < 0):
        raise ValueError(f"outcome column '{outcome}' has negative values; Poisson needs counts >= 0")
    d_all = _binary(data, treated, "treated")
    if cohort is not None:
        _numeric(data, time, "time")
        _cohort_array(data, unit, cohort)
        _check_treated_matches_cohort(data, time, treated, cohort, d_all)
    off_all = np.zeros(len(y_all)) if offset is None else _numeric(data, offset, "offset")
    uc0, _ = pd.factorize(data[unit], sort=True)
    tc0, tlev0 = pd.factorize(data[time], sort=True)
    _check_unique_cells(uc0, tc0, len(tlev0), unit, time)

    keep = _drop_all_zero(y_all, [uc0, tc0])
    if not keep.all():
        warnings.warn(f"fepois: dropped {int((~keep).sum())} row(s) of units or periods whose outcome is "
                      "zero throughout (infinite fixed effect)", RuntimeWarning, stacklevel=2)
    y, d, off = y_all[keep], d_all[keep], off_all[keep]
    uc, ulev = pd.factorize(uc0[keep], sort=True)
    tc, tlev = pd.factorize(tc0[keep], sort=True)
    fe_codes, fe_sizes = [uc, tc], [len(ulev), len(tlev)]

    mu = (y + y.mean()) / 2  # start values as fixest/glm: between the data and their mean
    eta = np.log(mu)
    dev_old = np.inf
    for _ in range(max_iter):
        z = eta - off + (y - mu) / mu  # working response without the offset
        zd = _demean(np.column_stack([z, d]), fe_codes, fe_sizes, weights=mu)
        sdd = float(mu @ zd[:, 1] ** 2)
        if sdd <= 1e-14:
            raise ValueError(f"treated column '{treated}' has no variation left after removing unit and "
                             "time effects")
        beta = float(mu @ (zd[:, 1] * zd[:, 0])) / sdd
        eta_new = off + z - (zd[:, 0] - beta * zd[:, 1])
        eta, mu, dev = _halve_step(y, eta, eta_new, dev_old)
        if abs(dev - dev_old) / (0.1 + abs(dev)) < tol:
            break
        dev_old = dev
    else:
        warnings.warn(f"fepois: IRLS did not converge in {max_iter} iterations", RuntimeWarning, stacklevel=2)

    # scores and Hessian at the solution, with D demeaned under the final weights
    dd = _demean(d, fe_codes, fe_sizes, weights=mu)[:, 0]
    hess = float(mu @ dd ** 2)
    resid = y - mu
    cl_all, _ = _cluster_codes(data, cluster, unit)
    cl, cl_lev = pd.factorize(cl_all[keep], sort=True)
    n_cl = len(cl_lev)
    score = np.bincount(cl, weights=dd * resid, minlength=n_cl)
    adj, _ = _fixest_adjustment(len(y), 1, fe_codes, fe_sizes, cl, n_cl)
    se = float(np.sqrt(adj * (score @ score))) / hess
    out = _inference(beta, se, stats.norm(), confidence, len(y), n_cl)
    out["ratio"] = np.exp(out["estimate"])
    out["ratio_ci_low"] = np.exp(out["ci_low"])
    out["ratio_ci_high"] = np.exp(out["ci_high"])
    return out


def _poisson_deviance(y: np.ndarray, mu: np.ndarray) -> float:
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(y > 0, y * np.log(y / mu), 0.0)
    return float(2 * np.sum(term - (y - mu)))


# ----------------------------------------------------------------------------------------------------------
# Callaway and Sant'Anna group-time ATTs
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ATTgtFit:
    """Everything :func:`aggregate` and :func:`pretrend_test` need from :func:`att_gt` (kept in
    ``result.attrs["att_gt"]``). Cells are ordered by cohort, then time, as ``did``.

    ``influence`` is the ``n x K`` matrix of influence functions in ``did``'s scaling (``se_k =
    sqrt(mean(influence[:, k]^2) / n)``); ``unit_cohort`` the cohort of each of the ``n`` units (0 =
    never treated) in the row order of ``influence`` (``units``).
    """

    cohort: np.ndarray
    time: np.ndarray
    att: np.ndarray
    post: np.ndarray
    influence: np.ndarray
    unit_cohort: np.ndarray
    units: np.ndarray
    periods: np.ndarray
    control_group: str
    anticipation: float
    base_period: str
    confidence: float
    bootstrap: bool = False
    n_boot: int = 999
    seed: int | None = None
    multiplier: str = "mammen"
    outcomes: np.ndarray | None = None  # units x periods outcome matrix (for relative_effect, total_effect)

    @property
    def n(self) -> int:
        return int(self.influence.shape[0])

    def __deepcopy__(self, memo):  # immutable: pandas deep-copies attrs on every operation
        return self


def _fit_of(attgt_result) -> ATTgtFit:
    if isinstance(attgt_result, ATTgtFit):
        return attgt_result
    fit = getattr(attgt_result, "attrs", {}).get("att_gt")
    if not isinstance(fit, ATTgtFit):
        raise TypeError("expected the DataFrame returned by att_gt (its attrs['att_gt'] holds the influence "
                        "functions) or an ATTgtFit")
    return fit


def _balanced_matrix(data: pd.DataFrame, outcome: str, unit: str, time: str,
                     g_row: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Units x periods outcome matrix of a balanced panel, the sorted unit ids and periods, and each
    unit's cohort."""
    uc, ulev = pd.factorize(data[unit], sort=True)
    t = _numeric(data, time, "time")
    tc, tlev = pd.factorize(t, sort=True)
    n_units, n_times = len(ulev), len(tlev)
    _check_unique_cells(uc, tc, n_times, unit, time)
    if len(t) != n_units * n_times:
        counts = np.bincount(uc, minlength=n_units)
        n_short = int(np.sum(counts < n_times))
        raise ValueError(
            f"unbalanced panel: {n_short} unit(s) of '{unit}' are not observed in all {n_times} periods of "
            f"'{time}'; att_gt and bacon_decomposition need a balanced panel (drop incomplete units)")
    y = np.empty((n_units, n_times))
    y[uc, tc] = _numeric(data, outcome, "outcome")
    g_unit = np.empty(n_units)
    g_unit[uc] = g_row
    return y, np.asarray(ulev), np.asarray(tlev, dtype=float), g_unit


def _prepare_staggered(data: pd.DataFrame, outcome: str, unit: str, time: str, cohort: str):
    """Validated units x periods outcome matrix, unit ids, periods and unit cohorts (0 = never treated;
    cohorts after the last period are never treated within the data, as ``did``'s ``pre_process_did``)."""
    _require_columns(data, {"outcome": outcome, "unit": unit, "time": time, "cohort": cohort})
    _numeric(data, time, "time")
    for col, role in ((outcome, "outcome"), (unit, "unit"), (time, "time")):
        _no_missing(data, col, role)
    _numeric(data, outcome, "outcome")
    g_row = _cohort_array(data, unit, cohort)
    y, units, periods, g_unit = _balanced_matrix(data, outcome, unit, time, g_row)
    g_unit = np.where(g_unit > periods[-1], 0.0, g_unit)
    not_period = (g_unit > 0) & ~np.isin(g_unit, periods)
    if not_period.any():
        bad = np.unique(g_unit[not_period])
        raise ValueError(f"cohort column '{cohort}' has value(s) {bad.tolist()} that are not periods of "
                         f"'{time}'; cohorts must be the first treated period (0 or missing = never)")
    return y, units, periods, g_unit


def att_gt(data: pd.DataFrame, outcome: str, unit: str, time: str, cohort: str,
           control_group: Literal["never", "not_yet"] = "never",
           base_period: Literal["varying", "universal"] = "varying", anticipation: float = 0,
           confidence: float = 0.95, bootstrap: bool = False, n_boot: int = 999, seed: int | None = None,
           multiplier: Literal["mammen", "rademacher"] = "mammen") -> pd.DataFrame:
    """Callaway and Sant'Anna (2021) group-time average treatment effects, unconditional parallel trends,
    balanced panel (R ``did::att_gt(yname, tname, idname, gname, xformla = ~1)``).

    ``cohort``: first treated period, 0 or missing = never treated. ``control_group``: ``"never"``
    (never treated) or ``"not_yet"`` (never or not yet treated). ``anticipation``: periods of
    anticipation (time units). Returns a DataFrame, one row per ``(cohort, time)`` cell: ``cohort, time,
    att, std_error, ci_low, ci_high, n_treated, n_control, post`` (plus ``cband_low, cband_high``, the
    simultaneous band, with ``bootstrap=True``); ``attrs["att_gt"]`` holds the :class:`ATTgtFit` with the
    influence functions. See the module docstring for formulas.
    """
    if control_group not in ("never", "not_yet"):
        raise ValueError(f"control_group must be 'never' or 'not_yet', not {control_group!r}")
    if base_period not in ("varying", "universal"):
        raise ValueError(f"base_period must be 'varying' or 'universal', not {base_period!r}")
    if anticipation < 0:
        raise ValueError("anticipation must be >= 0")
    if multiplier not in ("mammen", "rademacher"):
        raise ValueError(f"multiplier must be 'mammen' or 'rademacher', not {multiplier!r}")
    _check_confidence(confidence)
    y, units, periods, g_unit = _prepare_staggered(data, outcome, unit, time, cohort)
    glist = np.unique(g_unit[g_unit > 0])
    if not (g_unit == 0).any():
        if control_group == "never":
            raise ValueError(f"control_group='never' but cohort column '{cohort}' has no never-treated "
                             "units; use control_group='not_yet'")
        # did: without never-treated units the last cohort is only a comparison group, and periods from
        # its start (less anticipation) on are dropped
        keep_t = periods < glist[-1] - anticipation
        y, periods, glist = y[:, keep_t], periods[keep_t], glist[:-1]
    first = (g_unit > 0) & (g_unit <= periods[0])
    if first.any():
        warnings.warn(f"dropped {int(first.sum())} unit(s) already treated in the first period "
                      f"({periods[0]:g}); their ATT(g,t) are not identified", UserWarning, stacklevel=2)
        y, units, g_unit = y[~first], units[~first], g_unit[~first]
    glist = glist[glist > periods[0] + anticipation]  # did: no ATT(g,t) without a pre-period
    if glist.size == 0 or periods.size < 2:
        raise ValueError(f"no treated cohort with a pre-treatment period in cohort column '{cohort}'")
    n, n_t = y.shape
    never = g_unit == 0

    # cells: (cohort, current period index, base period index)
    cur_start = 1 if base_period == "varying" else 0
    gi, ci, bi = [], [], []
    for g in glist:
        last_pre = np.flatnonzero(periods + anticipation < g)
        if last_pre.size == 0:  # cannot happen after dropping first-period cohorts; did drops the group
            continue
        b_post = last_pre[-1]
        for j in range(cur_start, n_t):
            post = g <= periods[j]
            # did: post-treatment cells (and all cells with a universal base) compare with g - 1 -
            # anticipation; pre-treatment cells (anticipation periods included) with the period before
            b = b_post if (base_period == "universal" or post) else j - 1
            gi.append(g), ci.append(j), bi.append(b)
    g_cell, cur, base = np.array(gi), np.array(ci), np.array(bi)
    post_cell = g_cell <= periods[cur]

    dy = y[:, cur] - y[:, base]  # n x K
    treat = g_unit[:, None] == g_cell[None, :]
    if control_group == "never":
        ctrl = np.broadcast_to(never[:, None], treat.shape)
    else:
        thresh = np.maximum(periods[cur], periods[base]) + anticipation
        ctrl = never[:, None] | ((g_unit[:, None] > thresh[None, :]) & (g_unit[:, None] != g_cell[None, :]))
    n_g = treat.sum(0)
    n_c = ctrl.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_g = np.where(treat, dy, 0.0).sum(0) / n_g
        mean_c = np.where(ctrl, dy, 0.0).sum(0) / n_c
        att = mean_g - mean_c
        infl = n * (np.where(treat, dy - mean_g, 0.0) / n_g - np.where(ctrl, dy - mean_c, 0.0) / n_c)
    same = cur == base  # universal base period: ATT(g, g-1) normalised to 0
    att[same] = 0.0
    infl[:, same] = 0.0
    empty = (n_c == 0) & ~same
    if empty.any():
        warnings.warn(f"{int(empty.sum())} ATT(g,t) cell(s) have no comparison units (not-yet-treated "
                      "comparisons run out late in the panel); they are missing", UserWarning, stacklevel=2)
        att[empty] = np.nan
        infl[:, empty] = 0.0

    se = np.sqrt((infl ** 2).sum(0)) / n
    boot = None
    if bootstrap:
        boot = _multiplier_bootstrap(infl, n_boot, seed, confidence, multiplier)
        se = boot["se"]
    se = np.where(se <= _SE_FLOOR, np.nan, se)
    se[np.isnan(att)] = np.nan
    z = stats.norm.ppf(1 - (1 - confidence) / 2)
    table = pd.DataFrame({
        "cohort": _int_if_integral(g_cell), "time": _int_if_integral(periods[cur]), "att": att,
        "std_error": se,
        "ci_low": att - z * se, "ci_high": att + z * se,
        "n_treated": n_g.astype(int), "n_control": np.where(same, 0, n_c).astype(int), "post": post_cell,
    })
    if boot is not None:  # did reports pointwise intervals if the simultaneous band is narrower
        crit = max(boot["crit"], z) if np.isfinite(boot["crit"]) else z
        table["cband_low"] = att - crit * se
        table["cband_high"] = att + crit * se
    table.attrs["att_gt"] = ATTgtFit(
        cohort=g_cell, time=periods[cur], att=att, post=post_cell, influence=infl, unit_cohort=g_unit,
        units=units, periods=periods, control_group=control_group, anticipation=float(anticipation),
        base_period=base_period, confidence=confidence, bootstrap=bootstrap, n_boot=n_boot, seed=seed,
        multiplier=multiplier, outcomes=y)
    if boot is not None:
        table.attrs["crit_val"] = crit
    return table


def _multiplier_bootstrap(infl: np.ndarray, n_boot: int, seed: int | None, confidence: float,
                          multiplier: str) -> dict:
    """``did``'s ``mboot`` for unit-level influence functions (n x K): standard errors from the
    interquartile range of ``sqrt(n) mean(psi V)`` and the simultaneous critical value."""
    if n_boot < 2:
        raise ValueError("n_boot must be at least 2")
    infl = np.asarray(infl, dtype=float)
    if infl.ndim == 1:
        infl = infl[:, None]
    n = infl.shape[0]
    rng = np.random.default_rng(seed)
    draws = np.empty((n_boot, infl.shape[1]))
    chunk = max(1, int(2e7 // max(n, 1)))
    for start in range(0, n_boot, chunk):  # chunks of draws bound the memory of the n x B multipliers
        b = min(chunk, n_boot - start)
        if multiplier == "mammen":
            s5 = np.sqrt(5.0)
            v = np.where(rng.random((b, n)) < (s5 + 1) / (2 * s5), (1 - s5) / 2, (1 + s5) / 2)
        else:
            v = rng.choice(np.array([-1.0, 1.0]), size=(b, n))
        draws[start:start + b] = np.sqrt(n) * (v @ infl) / n
    q75 = np.quantile(draws, 0.75, axis=0, method="inverted_cdf")
    q25 = np.quantile(draws, 0.25, axis=0, method="inverted_cdf")
    sigma = (q75 - q25) / (stats.norm.ppf(0.75) - stats.norm.ppf(0.25))
    ok = sigma > _SE_FLOOR
    se = np.full(infl.shape[1], np.nan)
    se[ok] = sigma[ok] / np.sqrt(n)
    crit = np.nan
    if ok.any():
        tmax = np.max(np.abs(draws[:, ok] / sigma[ok]), axis=1)
        crit = float(np.quantile(tmax, confidence, method="inverted_cdf"))
    return {"se": se, "crit": crit, "draws": draws}


def pretrend_test(attgt_result) -> pd.Series:
    """Wald test that every pre-treatment ``ATT(g, t)`` (``t < g``) is zero, with the joint
    influence-function covariance (``did``'s "P-value for pre-test of parallel trends assumption").

    Returns a Series ``statistic, df, p_value`` (chi-squared with ``df`` = number of pre-treatment cells
    with non-zero variance) and ``f_statistic, f_p_value``: Hotelling's small-sample version, ``F = (n -
    q) / (q (n - 1)) W`` on ``(q, n - q)`` degrees of freedom (missing when ``n <= q``). With monthly or
    quarterly panels ``q`` is large beside the number of units (30 pre-treatment cells and 60 practices),
    the covariance is poorly estimated and the chi-squared test rejects far too often (``did`` reports
    only the chi-squared p-value); the F version is exact for normal unit-level influence functions
    (Hotelling 1931; Anderson, *An Introduction to Multivariate Statistical Analysis*, 2003, 5.2). Raises
    ``ValueError`` if there are none or their covariance is singular.
    """
    fit = _fit_of(attgt_result)
    n = fit.n
    pre = ~fit.post & ~np.isnan(fit.att)
    se = np.sqrt((fit.influence ** 2).sum(0)) / n
    pre &= se > _SE_FLOOR
    if not pre.any():
        raise ValueError("no pre-treatment ATT(g,t) to test")
    psi = fit.influence[:, pre]
    v = psi.T @ psi / n
    if 1 / np.linalg.cond(v, 1) <= np.finfo(float).eps:
        raise ValueError("singular covariance of the pre-treatment ATT(g,t); no Wald statistic")
    a = fit.att[pre]
    w = float(n * a @ np.linalg.solve(v, a))
    q = int(pre.sum())
    f = (n - q) / (q * (n - 1)) * w if n > q else np.nan
    f_p = float(stats.f.sf(f, q, n - q)) if n > q else np.nan
    return pd.Series({"statistic": w, "df": q, "p_value": float(stats.chi2.sf(w, q)), "f_statistic": f,
                      "f_p_value": f_p})


# ----------------------------------------------------------------------------------------------------------
# Aggregations (did::aggte)
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class AggregateResult:
    """Result of :func:`aggregate`: ``overall`` (Series ``estimate, std_error, ci_low, ci_high``),
    ``table`` (one row per cohort / event time / calendar period with ``estimate, std_error, ci_low,
    ci_high``; empty for ``simple``), their influence functions and, with the bootstrap, the simultaneous
    critical value of the table's band (``crit_val``; otherwise the pointwise normal quantile)."""

    kind: str
    overall: pd.Series
    table: pd.DataFrame
    influence: np.ndarray
    table_influence: np.ndarray
    crit_val: float
    min_e: float = -np.inf
    max_e: float = np.inf
    balance_e: float | None = None


def _wif_term(keep: np.ndarray, pg: np.ndarray, cell_group: np.ndarray, unit_group: np.ndarray,
              att: np.ndarray) -> np.ndarray:
    """``did``'s ``wif(keepers, pg, ...) %*% att[keepers]``: the influence of estimating the cohort-share
    weights, as one n-vector (vectorised over units)."""
    pk = pg[keep]
    total = pk.sum()
    ind = (unit_group[:, None] == cell_group[keep][None, :]).astype(float) - pk[None, :]  # n x k
    return ind @ att[keep] / total - ind.sum(1) * (pk @ att[keep]) / total ** 2


def _agg_se(psi: np.ndarray) -> np.ndarray:
    psi = np.atleast_2d(psi.T).T
    n = psi.shape[0]
    se = np.sqrt((psi ** 2).sum(0)) / n
    return np.where(se <= _SE_FLOOR, np.nan, se)


def aggregate(attgt_result, kind: Literal["simple", "group", "dynamic", "calendar"] = "simple",
              min_e: float = -np.inf, max_e: float = np.inf, balance_e: float | None = None,
              bootstrap: bool | None = None, n_boot: int | None = None,
              seed: int | None = None) -> AggregateResult:
    """Aggregate ``ATT(g, t)`` as R's ``did::aggte(type = kind, min_e, max_e, balance_e)``.

    ``attgt_result``: the DataFrame from :func:`att_gt`. Returns an :class:`AggregateResult`; its
    ``table`` is indexed by ``cohort`` (group), ``event_time`` (dynamic) or ``time`` (calendar).
    Standard errors are analytic (influence functions including the estimated weights, ``did``'s ``wif``)
    unless the ATT(g,t) were bootstrapped or ``bootstrap=True``, when they come from the multiplier
    bootstrap of the same influence functions (``n_boot``/``seed`` default to those of ``att_gt``).
    """
    if kind not in ("simple", "group", "dynamic", "calendar"):
        raise ValueError(f"kind must be 'simple', 'group', 'dynamic' or 'calendar', not {kind!r}")
    fit = _fit_of(attgt_result)
    if np.isnan(fit.att).any():
        raise ValueError("some ATT(g,t) are missing (no comparison units); aggregate needs all of them")
    att, psi_gt = fit.att, fit.influence
    n = fit.n
    # did recodes the cells' times (and cohorts) to 1, 2, ... before comparing them
    tcells = np.unique(fit.time)
    t_idx = np.searchsorted(tcells, fit.time) + 1.0
    g_idx = np.searchsorted(tcells, fit.cohort) + 1.0
    glist = np.unique(fit.cohort)
    pg_group = np.array([np.mean(fit.unit_cohort == g) for g in glist])
    pg = pg_group[np.searchsorted(glist, fit.cohort)]
    z = stats.norm.ppf(1 - (1 - fit.confidence) / 2)

    labels: np.ndarray
    if kind == "simple":
        keep = (g_idx <= t_idx) & (t_idx <= g_idx + max_e)
        if not keep.any():
            raise ValueError("no post-treatment ATT(g,t) within max_e")
        w = pg[keep] / pg[keep].sum()
        overall_att = float(att[keep] @ w)
        overall_psi = psi_gt[:, keep] @ w + _wif_term(keep, pg, fit.cohort, fit.unit_cohort, att)
        labels, comp_att, comp_psi, label_name = np.array([]), np.array([]), np.empty((n, 0)), "cohort"
    elif kind == "group":
        comp_att, cols, has = [], [], []
        for g in glist:
            wg = (fit.cohort == g) & (g_idx <= t_idx) & (t_idx <= g_idx + max_e)
            has.append(wg.any())
            if wg.any():  # a cohort with no post-treatment cell within max_e is left out
                comp_att.append(att[wg].mean())
                cols.append(psi_gt[:, wg].mean(1))
        glist, pg_group = glist[np.array(has)], pg_group[np.array(has)]
        if glist.size == 0:
            raise ValueError("no post-treatment ATT(g,t) within max_e")
        comp_att, comp_psi = np.array(comp_att), np.column_stack(cols)
        overall_att = float(comp_att @ pg_group / pg_group.sum())
        keep_all = np.ones(glist.size, dtype=bool)
        overall_psi = (comp_psi @ (pg_group / pg_group.sum())
                       + _wif_term(keep_all, pg_group, glist, fit.unit_cohort, comp_att))
        labels, label_name = glist, "cohort"
    elif kind == "dynamic":
        e_cell = fit.time - fit.cohort
        eseq = np.unique(e_cell)
        include = np.ones(att.size, dtype=bool)
        if balance_e is not None:
            t_last, t_first = tcells[-1], tcells[0]
            eseq = eseq[(eseq <= balance_e) & (eseq >= balance_e - t_last + t_first)]
            include = (t_last - fit.cohort) >= balance_e
        eseq = eseq[(eseq >= min_e) & (eseq <= max_e)]
        # event times whose cohorts were all removed by balance_e are left out (did reports 0 for them)
        eseq = np.array([e for e in eseq if np.any((e_cell == e) & include)])
        if eseq.size == 0:
            raise ValueError("no event times left after min_e / max_e / balance_e")
        comp_att, cols = [], []
        for e in eseq:
            we = (e_cell == e) & include
            w = pg[we] / pg[we].sum()
            comp_att.append(float(att[we] @ w))
            cols.append(psi_gt[:, we] @ w + _wif_term(we, pg, fit.cohort, fit.unit_cohort, att))
        comp_att, comp_psi = np.array(comp_att), np.column_stack(cols)
        epos = eseq >= 0
        if not epos.any():
            overall_att, overall_psi = np.nan, np.full(n, np.nan)
        else:
            overall_att = float(comp_att[epos].mean())
            overall_psi = comp_psi[:, epos].mean(1)
        labels, label_name = eseq, "event_time"
    else:  # calendar
        min_g = g_idx.min()
        cal = np.unique(t_idx[t_idx >= min_g])
        comp_att, cols = [], []
        for tt in cal:
            wt = (t_idx == tt) & (g_idx <= t_idx)
            w = pg[wt] / pg[wt].sum()
            comp_att.append(float(att[wt] @ w))
            cols.append(psi_gt[:, wt] @ w + _wif_term(wt, pg, fit.cohort, fit.unit_cohort, att))
        comp_att, comp_psi = np.array(comp_att), np.column_stack(cols)
        overall_att = float(comp_att.mean())
        overall_psi = comp_psi.mean(1)
        labels, label_name = tcells[cal.astype(int) - 1], "time"

    use_boot = fit.bootstrap if bootstrap is None else bootstrap
    crit = z
    if use_boot:
        nb = fit.n_boot if n_boot is None else n_boot
        sd = fit.seed if seed is None else seed
        b_overall = _multiplier_bootstrap(overall_psi, nb, sd, fit.confidence, fit.multiplier)
        overall_se = float(b_overall["se"][0])
        if comp_psi.shape[1]:
            b_comp = _multiplier_bootstrap(comp_psi, nb, sd, fit.confidence, fit.multiplier)
            comp_se = b_comp["se"]
            if np.isfinite(b_comp["crit"]):
                crit = max(b_comp["crit"], z)  # did falls back to pointwise when the band is narrower
        else:
            comp_se = np.array([])
    else:
        overall_se = float(_agg_se(overall_psi)[0]) if np.isfinite(overall_att) else np.nan
        comp_se = _agg_se(comp_psi) if comp_psi.shape[1] else np.array([])

    overall = pd.Series({"estimate": overall_att, "std_error": overall_se,
                         "ci_low": overall_att - z * overall_se, "ci_high": overall_att + z * overall_se})
    table = pd.DataFrame({label_name: _int_if_integral(labels), "estimate": comp_att, "std_error": comp_se,
                          "ci_low": comp_att - crit * comp_se, "ci_high": comp_att + crit * comp_se})
    return AggregateResult(kind=kind, overall=overall, table=table, influence=overall_psi,
                           table_influence=comp_psi, crit_val=float(crit), min_e=min_e, max_e=max_e,
                           balance_e=balance_e)


def _dynamic_weights(fit: ATTgtFit, min_e: float, max_e: float) -> list[np.ndarray]:
    """The cell sets of ``aggregate(kind="dynamic")``'s overall effect: one boolean mask per event time
    ``e`` with ``max(min_e, 0) <= e <= max_e``."""
    e_cell = fit.time - fit.cohort
    eseq = np.unique(e_cell)
    eseq = eseq[(eseq >= max(min_e, 0)) & (eseq <= max_e)]
    if eseq.size == 0:
        raise ValueError(f"no post-treatment event times between min_e={min_e} and max_e={max_e}")
    return [e_cell == e for e in eseq]


def _cell_means(fit: ATTgtFit) -> tuple[np.ndarray, np.ndarray]:
    """Treated cohorts' observed mean outcome in each ``(g, t)`` cell and its influence function (n x K,
    ``did``'s scaling): ``psi_i = n 1{g_i = g} (Y_it - mean) / n_g``."""
    if fit.outcomes is None:
        raise ValueError("this att_gt result carries no outcome matrix; re-run att_gt")
    cur = np.searchsorted(fit.periods, fit.time)
    yk = fit.outcomes[:, cur]  # n x K
    treat = fit.unit_cohort[:, None] == fit.cohort[None, :]
    n_g = treat.sum(0)
    mean = np.where(treat, yk, 0.0).sum(0) / n_g
    infl = fit.n * np.where(treat, yk - mean, 0.0) / n_g
    return mean, infl


def relative_effect(attgt_result, min_e: float = 0, max_e: float = np.inf,
                    confidence: float | None = None) -> pd.Series:
    """The treatment effect as a proportion of the treated's counterfactual outcome, over event times
    ``min_e..max_e`` (e.g. from the end of a ramp-up), with a delta-method interval.

    ``A`` is :func:`aggregate`'s ``dynamic`` overall effect over those event times (the mean over ``e`` of
    the cohort-share weighted ``ATT(g, g + e)``) and ``M`` the treated cohorts' *observed* mean outcome
    over the same cells with the same weights, so ``M - A`` is their counterfactual mean and

        ratio = M / (M - A)   (observed over counterfactual),   relative = ratio - 1 = A / (M - A).

    The influence function of ``log ratio = log M - log(M - A)`` combines those of ``A`` (including the
    estimated weights, ``did``'s ``wif``) and of ``M`` (each cell's treated mean, plus the same weight
    term), so the interval ``exp(log ratio -/+ z se)`` accounts for their covariance: when effects are
    proportional to each unit's level, heterogeneity in levels moves ``A`` and ``M`` together and
    largely cancels. Returns a Series ``att, treated_mean, counterfactual_mean, ratio, ratio_ci_low,
    ratio_ci_high, relative, relative_ci_low, relative_ci_high, std_error_log`` (``std_error_log`` of
    ``log ratio``). Standard errors are analytic; ``confidence`` defaults to that of ``att_gt``.
    """
    fit = _fit_of(attgt_result)
    conf = fit.confidence if confidence is None else confidence
    _check_confidence(conf)
    agg = aggregate(attgt_result, "dynamic", min_e=max(min_e, 0), max_e=max_e, bootstrap=False)
    a, psi_a = float(agg.overall["estimate"]), agg.influence
    glist = np.unique(fit.cohort)
    pg_group = np.array([np.mean(fit.unit_cohort == g) for g in glist])
    pg = pg_group[np.searchsorted(glist, fit.cohort)]
    mean, infl = _cell_means(fit)
    masks = _dynamic_weights(fit, min_e, max_e)
    m = float(np.mean([mean[we] @ (pg[we] / pg[we].sum()) for we in masks]))
    psi_m = np.mean([infl[:, we] @ (pg[we] / pg[we].sum()) + _wif_term(we, pg, fit.cohort, fit.unit_cohort, mean)
                     for we in masks], axis=0)
    cf = m - a
    if not (m > 0 and cf > 0):
        raise ValueError(f"relative effect needs positive observed ({m:g}) and counterfactual ({cf:g}) means; "
                         "use an outcome that is a positive level (a count or a rate)")
    psi_log = psi_m / m - (psi_m - psi_a) / cf
    se = float(_agg_se(psi_log)[0])
    z = stats.norm.ppf(1 - (1 - conf) / 2)
    ratio = m / cf
    lo, hi = ratio * np.exp(-z * se), ratio * np.exp(z * se)
    return pd.Series({"att": a, "treated_mean": m, "counterfactual_mean": cf, "ratio": ratio,
                      "ratio_ci_low": lo, "ratio_ci_high": hi, "relative": ratio - 1,
                      "relative_ci_low": lo - 1, "relative_ci_high": hi - 1, "std_error_log": se})


def total_effect(attgt_result, exposure: pd.DataFrame, by: str | None = None,
                 confidence: float | None = None) -> pd.DataFrame:
    """Total effect over post-treatment cells: ``sum_k ATT(g_k, t_k) x exposure_k``, e.g. referrals
    avoided = - sum of (rate effect per 1,000 patients per year) x (cohort's person-years / 1,000).

    ``exposure``: one row per ``(cohort, time)`` with column ``exposure`` (the treated cohort's size in the
    outcome's units, taken as known) and optionally the column named by ``by`` (e.g. a financial year)
    to sum within. Every post-treatment cell of ``att_gt`` must have a row (a missing one is an error
    naming it). Influence function ``sum_k exposure_k psi_k`` (exposures fixed), analytic standard error
    ``sqrt(sum psi^2) / n``, normal interval. Returns one row per ``by`` value then a ``total`` row:
    ``[by,] estimate, std_error, ci_low, ci_high, cells``.
    """
    fit = _fit_of(attgt_result)
    conf = fit.confidence if confidence is None else confidence
    _check_confidence(conf)
    need = {"cohort", "time", "exposure"} | ({by} if by else set())
    missing = sorted(need - set(exposure.columns))
    if missing:
        raise ValueError(f"exposure table lacks column(s) {missing}; it needs cohort, time, exposure"
                         + (f" and {by}" if by else ""))
    if np.isnan(fit.att[fit.post]).any():
        raise ValueError("some post-treatment ATT(g,t) are missing (no comparison units); no total")
    cells = pd.DataFrame({"cohort": fit.cohort[fit.post].astype(float), "time": fit.time[fit.post].astype(float),
                          "k": np.flatnonzero(fit.post)})
    ex = exposure.assign(cohort=exposure["cohort"].astype(float), time=exposure["time"].astype(float))
    if ex.duplicated(["cohort", "time"]).any():
        raise ValueError("exposure table has duplicate (cohort, time) rows")
    merged = cells.merge(ex, on=["cohort", "time"], how="left", validate="one_to_one")
    lacking = merged["exposure"].isna()
    if lacking.any():
        first = merged.loc[lacking, ["cohort", "time"]].head(5).to_dict("records")
        raise ValueError(f"exposure table has no row for {int(lacking.sum())} post-treatment cell(s), e.g. {first}")
    k = merged["k"].to_numpy()
    x = merged["exposure"].to_numpy(dtype=float)
    contrib = fit.att[k] * x
    psi = fit.influence[:, k] * x[None, :]
    z = stats.norm.ppf(1 - (1 - conf) / 2)
    groups = [("total", np.ones(len(k), bool))]
    if by:
        labels = merged[by].to_numpy()
        groups = [(g, labels == g) for g in pd.unique(np.sort(labels))] + groups
    rows = []
    for label, sel in groups:
        est = float(contrib[sel].sum())
        se = float(np.sqrt((psi[:, sel].sum(1) ** 2).sum()) / fit.n)
        row = {by: label} if by else {}
        rows.append(row | {"estimate": est, "std_error": se, "ci_low": est - z * se, "ci_high": est + z * se,
                           "cells": int(sel.sum())})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------------------
# Event-study figure
# ----------------------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------------------
# Goodman-Bacon decomposition
# ----------------------------------------------------------------------------------------------------------


def bacon_decomposition(data: pd.DataFrame, outcome: str, unit: str, time: str, cohort: str) -> pd.DataFrame:
    """Goodman-Bacon (2021) decomposition of the static TWFE estimate into 2x2 comparisons (balanced
    panel; R ``bacondecomp::bacon``).

    Returns one row per comparison: ``treated`` (cohort), ``control`` (cohort, ``inf`` = never treated),
    ``type`` (``"Earlier vs Later Treated"``, ``"Later vs Earlier Treated"``, ``"Treated vs Untreated"``,
    ``"Later vs Always Treated"``), ``estimate`` (the 2x2 DiD) and ``weight``; the weights sum to 1 and
    ``sum(weight * estimate)`` is :func:`twfe`'s estimate with the treated-post indicator of ``cohort``.
    """
    y, _, periods, g_unit = _prepare_staggered(data, outcome, unit, time, cohort)
    n, n_t = y.shape
    g_unit = np.where((g_unit > 0) & (g_unit <= periods[0]), periods[0], g_unit)  # always treated
    groups = np.unique(g_unit)
    gcode = np.searchsorted(groups, g_unit)
    n_g = np.bincount(gcode, minlength=groups.size)
    ybar = np.zeros((groups.size, n_t))
    np.add.at(ybar, gcode, y)
    ybar /= n_g[:, None]  # cohort x period means
    share = n_g / n
    dbar = np.array([np.mean(periods >= g) if g > 0 else 0.0 for g in groups])  # share of periods treated

    d = (g_unit[:, None] > 0) & (periods[None, :] >= g_unit[:, None])
    dd = d - d.mean(1, keepdims=True) - d.mean(0, keepdims=True) + d.mean()
    v_d = float((dd ** 2).mean())
    if v_d <= 1e-15:
        raise ValueError(f"no variation in treatment timing to decompose in cohort column '{cohort}'")

    def did(a: int, b: int, post: np.ndarray, pre: np.ndarray) -> float:
        return float((ybar[a, post].mean() - ybar[a, pre].mean()) - (ybar[b, post].mean() - ybar[b, pre].mean()))

    rows = []
    never_idx = np.flatnonzero(groups == 0)
    timing = [i for i in range(groups.size) if groups[i] > 0]
    first = periods[0]
    for k in timing:
        gk = groups[k]
        if gk == first:
            continue  # always treated: only a control
        if never_idx.size:
            u = never_idx[0]
            nku = share[k] / (share[k] + share[u])
            wt = (share[k] + share[u]) ** 2 * nku * (1 - nku) * dbar[k] * (1 - dbar[k]) / v_d
            rows.append((gk, np.inf, "Treated vs Untreated", did(k, u, periods >= gk, periods < gk), wt))
        for m in timing:
            if m == k:
                continue
            gl = groups[m]
            nkl = share[k] / (share[k] + share[m])
            if gl == first:  # k against the always treated
                wt = (share[k] + share[m]) ** 2 * nkl * (1 - nkl) * dbar[k] * (1 - dbar[k]) / v_d
                rows.append((gk, gl, "Later vs Always Treated", did(k, m, periods >= gk, periods < gk), wt))
            elif gk < gl:  # earlier k treated, later m not yet treated
                mid = (periods >= gk) & (periods < gl)
                wt = (((share[k] + share[m]) * (1 - dbar[m])) ** 2 * nkl * (1 - nkl)
                      * (dbar[k] - dbar[m]) / (1 - dbar[m]) * (1 - dbar[k]) / (1 - dbar[m]) / v_d)
                rows.append((gk, gl, "Earlier vs Later Treated", did(k, m, mid, periods < gk), wt))
            else:  # later k treated, earlier m already treated
                mid = (periods >= gl) & (periods < gk)
                nlk = share[m] / (share[k] + share[m])
                wt = (((share[k] + share[m]) * dbar[m]) ** 2 * nlk * (1 - nlk)
                      * (dbar[k] / dbar[m]) * (dbar[m] - dbar[k]) / dbar[m] / v_d)
                rows.append((gk, gl, "Later vs Earlier Treated", did(k, m, periods >= gk, mid), wt))
    out = pd.DataFrame(rows, columns=["treated", "control", "type", "estimate", "weight"])
    return out.astype({"treated": float, "control": float, "estimate": float, "weight": float})


def bacon_summary(decomposition: pd.DataFrame) -> pd.DataFrame:
    """Total weight and weighted average estimate by comparison type (``bacondecomp::bacon``'s first
    table): ``type, weight, avg_est``."""
    d = decomposition.assign(_we=decomposition["weight"] * decomposition["estimate"])
    s = d.groupby("type", sort=True)[["weight", "_we"]].sum()
    return pd.DataFrame({"type": s.index, "weight": s["weight"].to_numpy(),
                         "avg_est": (s["_we"] / s["weight"]).to_numpy()})
