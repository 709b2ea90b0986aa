"""Two-way fixed effects: the static OLS regression (:func:`twfe`) and its Poisson version (:func:`fepois`).

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

PPML (:func:`fepois`)
---------------------
``E[y_it] = exp(offset_it + a_i + l_t + b D_it)``, fitted by iteratively reweighted least squares in
which each weighted least-squares step absorbs both sets of effects by weighted alternating projections
(``fixest::feglm``; Correia, Guimaraes and Zylkin 2020, Stata J 20:95-115). Units or periods whose
outcome is zero throughout have an infinite fixed effect and are dropped first (fixest's
``fixef.rm = "perfect"``), repeatedly until none is left. Cluster-robust variance as for :func:`twfe`
with the weighted demeaned regressor ``D~`` (weights ``mu``): ``V = adj * sum_g (sum D~ (y - mu))^2 /
(sum mu D~^2)^2``, with the same small-sample factor; tests and intervals are normal (fixest reports
``z`` values for GLMs). ``ratio = exp(b)`` is the rate ratio. The fit is
:func:`pbc_analysis.methods.ppml.fepois` (the project's one Poisson fixed-effects engine) with
the unit and period codes as fixed effects and the treatment dummy as the only regressor.

References
----------
Berge L (2018). Efficient estimation of maximum likelihood models with multiple fixed-effects: the R package
FENmlm. CREA Discussion Papers 13.
Correia S, Guimaraes P, Zylkin T (2020). Fast Poisson estimation with high-dimensional fixed effects. Stata J
20:95-115.
Cameron AC, Miller DL (2015). A practitioner's guide to cluster-robust inference. J Hum Resour 50:317-372.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

from pbc_analysis.methods.did.panel import (
    _binary,
    _check_treated_matches_cohort,
    _check_unique_cells,
    _cohort_array,
    _inference,
    _no_missing,
    _numeric,
    _require_columns,
)
from pbc_analysis.methods.did.projections import _cluster_codes, _demean, _fixest_adjustment

__all__ = ["fepois", "twfe"]


def twfe(data: pd.DataFrame, outcome: str, unit: str, time: str, treated: str, cluster: str | None = None,
         confidence: float = 0.95, *, cohort: str | None = None) -> pd.Series:
    """Static two-way fixed effects DiD ``y_it = a_i + l_t + b treated_it + e_it``.

    As ``fixest::feols(y ~ treated | unit + time, cluster = ~unit)``: the within transformation by alternating
    projections, cluster-robust CR1 errors with fixest's small-sample factor and Student's t with ``G - 1``
    degrees of freedom (see the module docstring). Balanced or unbalanced panels; rows with missing values are
    refused (the error names the column).

    Parameters
    ----------
    data : pandas.DataFrame
        One row per unit and period.
    outcome, unit, time, treated : str
        Columns: the outcome, the unit and period identifiers and the 0/1 treated-post indicator.
    cluster : str, optional
        The cluster column (default ``unit``).
    confidence : float
        Interval level, in (0, 1).
    cohort : str, optional
        If given, ``treated`` is checked against ``1{cohort > 0 and time >= cohort}``.

    Returns
    -------
    pandas.Series
        ``estimate, std_error, ci_low, ci_high, p_value, n_obs, n_clusters``.

    References
    ----------
    Berge L (2018), FENmlm / ``fixest``; Gaure S (2013), Comput Stat Data Anal 66:8-18 (alternating
    projections); Cameron AC, Miller DL (2015), J Hum Resour 50:317-372 (CR1).
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


def fepois(data: pd.DataFrame, outcome: str, unit: str, time: str, treated: str, offset: str | None = None,
           cluster: str | None = None, confidence: float = 0.95, *, cohort: str | None = None,
           tol: float = 1e-12, max_iter: int = 100) -> pd.Series:
    """Poisson regression with unit and time fixed effects (PPML), as ``fixest::fepois``.

    ``fixest::fepois(y ~ treated | unit + time, offset = ~offset, cluster = ~unit)``, fitted by the project's
    one Poisson fixed-effects engine (:func:`pbc_analysis.methods.ppml.fepois`). Units or periods whose
    outcome is zero throughout have an infinite fixed effect and are dropped (with a warning).

    Parameters
    ----------
    data : pandas.DataFrame
        One row per unit and period.
    outcome : str
        Non-negative counts (non-integers allowed, as PPML).
    unit, time, treated : str
        The unit and period identifiers and the 0/1 treated-post indicator.
    offset : str, optional
        A column already on the log scale (e.g. log list size), entering with coefficient 1.
    cluster : str, optional
        The cluster column (default ``unit``).
    confidence : float
        Interval level, in (0, 1).
    cohort : str, optional
        If given, ``treated`` is checked against ``1{cohort > 0 and time >= cohort}``.
    tol : float
        IRLS stops when the relative change in deviance is below it.
    max_iter : int
        At most this many IRLS steps.

    Returns
    -------
    pandas.Series
        As :func:`twfe` (normal-based tests and intervals) plus ``ratio = exp(estimate)``, ``ratio_ci_low``,
        ``ratio_ci_high``; ``n_obs`` counts the rows used.

    References
    ----------
    Correia S, Guimaraes P, Zylkin T (2020), Stata J 20:95-115; Berge L (2018), FENmlm; Santos Silva JMC,
    Tenreyro S (2006), Rev Econ Stat 88:641-658.
    """
    from pbc_analysis.methods import ppml  # ppml imports this package's projections: imported when called

    _require_columns(data, {"outcome": outcome, "unit": unit, "time": time, "treated": treated,
                            "offset": offset, "cluster": cluster, "cohort": cohort})
    for col, role in ((outcome, "outcome"), (unit, "unit"), (time, "time"), (treated, "treated"),
                      (offset, "offset")):
        if col is not None:
            _no_missing(data, col, role)
    y = _numeric(data, outcome, "outcome")
    if np.any(y < 0):
        raise ValueError(f"outcome column '{outcome}' has negative values; Poisson needs counts >= 0")
    d = _binary(data, treated, "treated")
    if cohort is not None:
        _numeric(data, time, "time")
        _cohort_array(data, unit, cohort)
        _check_treated_matches_cohort(data, time, treated, cohort, d)
    off = np.zeros(len(y)) if offset is None else _numeric(data, offset, "offset")
    uc, _ = pd.factorize(data[unit], sort=True)
    tc, tlev = pd.factorize(data[time], sort=True)
    _check_unique_cells(uc, tc, len(tlev), unit, time)
    cl, _ = _cluster_codes(data, cluster, unit)
    fit = ppml.fepois(y, [uc, tc], X=d[:, None], offset=off, cluster=cl, tol=tol, max_iter=max_iter,
                      names=[f"treated column '{treated}'"])
    if not fit.keep.all():
        warnings.warn(f"fepois: dropped {int((~fit.keep).sum())} row(s) of units or periods whose outcome is "
                      "zero throughout (infinite fixed effect)", RuntimeWarning, stacklevel=2)
    beta, se = float(fit.coef[0]), float(np.sqrt(fit.vcov[0, 0]))
    out = _inference(beta, se, stats.norm(), confidence, int(fit.keep.sum()), fit.n_clusters)
    out["ratio"] = np.exp(out["estimate"])
    out["ratio_ci_low"] = np.exp(out["ci_low"])
    out["ratio_ci_high"] = np.exp(out["ci_high"])
    return out
