"""Callaway and Sant'Anna group-time average treatment effects (:func:`att_gt`) and the pre-test.

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


Pre-test (:func:`pretrend_test`): ``W = n ATT_pre' V_pre^-1 ATT_pre`` with ``V = psi' psi / n`` over the
pre-treatment cells (``t < g``; zero-variance cells dropped), chi-squared with as many degrees of
freedom as cells (``did``'s ``att_gt``: "P-value for pre-test of parallel trends assumption").

References
----------
Callaway B, Sant'Anna PHC (2021). Difference-in-differences with multiple time periods. J Econometrics
225:200-230 (R package ``did``, ``att_gt``, ``mboot``).
Hotelling H (1931). The generalization of Student's ratio. Ann Math Stat 2:360-378.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from pbc_analysis.core.checks import check_choice, check_number
from pbc_analysis.methods.did.inference import _multiplier_bootstrap
from pbc_analysis.methods.did.panel import (
    SE_FLOOR,
    _check_confidence,
    _check_unique_cells,
    _cohort_array,
    _int_if_integral,
    _no_missing,
    _numeric,
    _require_columns,
)

__all__ = ["ATTgtFit", "BasePeriod", "ControlGroup", "Multiplier", "att_gt", "pretrend_test"]

ControlGroup = Literal["never", "not_yet"]        # comparison units: never treated, or never and not yet treated
BasePeriod = Literal["varying", "universal"]
Multiplier = Literal["mammen", "rademacher"]      # the multiplier bootstrap's weights


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
        """The number of units (rows of ``influence``)."""
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


def _drop_unidentified(y: np.ndarray, units: np.ndarray, periods: np.ndarray, g_unit: np.ndarray,
                       control_group: str, anticipation: float, cohort: str):
    """``did``'s ``pre_process_did``: without never-treated units the last cohort is only a comparison group
    (periods from its start less anticipation dropped); units treated in the first period are dropped; cohorts
    without a pre-period get no ATT(g,t). Returns the kept ``y, units, periods, g_unit`` and the cohorts."""
    glist = np.unique(g_unit[g_unit > 0])
    if not (g_unit == 0).any():
        if control_group == "never":
            raise ValueError(f"control_group='never' but cohort column '{cohort}' has no never-treated "
                             "units; use control_group='not_yet'")
        keep_t = periods < glist[-1] - anticipation
        y, periods, glist = y[:, keep_t], periods[keep_t], glist[:-1]
    first = (g_unit > 0) & (g_unit <= periods[0])
    if first.any():
        warnings.warn(f"dropped {int(first.sum())} unit(s) already treated in the first period "
                      f"({periods[0]:g}); their ATT(g,t) are not identified", UserWarning, stacklevel=3)
        y, units, g_unit = y[~first], units[~first], g_unit[~first]
    glist = glist[glist > periods[0] + anticipation]  # did: no ATT(g,t) without a pre-period
    if glist.size == 0 or periods.size < 2:
        raise ValueError(f"no treated cohort with a pre-treatment period in cohort column '{cohort}'")
    return y, units, periods, g_unit, glist


def _cells(glist: np.ndarray, periods: np.ndarray, anticipation: float,
           base_period: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``(cohort, current period index, base period index)`` of every ATT(g,t) cell, as ``did``."""
    cur_start = 1 if base_period == "varying" else 0
    gi, ci, bi = [], [], []
    for g in glist:
        last_pre = np.flatnonzero(periods + anticipation < g)
        if last_pre.size == 0:  # cannot happen after dropping first-period cohorts; did drops the group
            continue
        b_post = last_pre[-1]
        for j in range(cur_start, len(periods)):
            post = g <= periods[j]
            # did: post-treatment cells (and all cells with a universal base) compare with g - 1 -
            # anticipation; pre-treatment cells (anticipation periods included) with the period before
            b = b_post if (base_period == "universal" or post) else j - 1
            gi.append(g)
            ci.append(j)
            bi.append(b)
    return np.array(gi), np.array(ci), np.array(bi)


def _cell_effects(y: np.ndarray, g_unit: np.ndarray, periods: np.ndarray, g_cell: np.ndarray, cur: np.ndarray,
                  base: np.ndarray, control_group: str, anticipation: float):
    """Every cell's ATT, influence function (n x K, ``did``'s scaling), treated and comparison counts, and
    which cells are the normalised base of a universal base period."""
    n = y.shape[0]
    never = g_unit == 0
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
                      "comparisons run out late in the panel); they are missing", UserWarning, stacklevel=3)
        att[empty] = np.nan
        infl[:, empty] = 0.0
    return att, infl, n_g, n_c, same


def att_gt(data: pd.DataFrame, outcome: str, unit: str, time: str, cohort: str,
           control_group: ControlGroup = "never", base_period: BasePeriod = "varying", anticipation: float = 0,
           confidence: float = 0.95, bootstrap: bool = False, n_boot: int = 999, seed: int | None = None,
           multiplier: Multiplier = "mammen") -> pd.DataFrame:
    """Callaway and Sant'Anna (2021) group-time average treatment effects, unconditional parallel trends.

    Balanced panel; R ``did::att_gt(yname, tname, idname, gname, xformla = ~1)`` with analytic standard errors
    (``bstrap = FALSE``) or the seeded multiplier bootstrap. See the module docstring for the formulas.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per unit and period.
    outcome, unit, time : str
        The outcome, unit and (numeric) period columns.
    cohort : str
        First treated period; 0 or missing = never treated.
    control_group : {"never", "not_yet"}
        Comparison units: never treated, or never and not yet treated.
    base_period : {"varying", "universal"}
        ``did``'s base period.
    anticipation : float
        Periods of anticipation (time units), >= 0.
    confidence : float
        Interval level, in (0, 1).
    bootstrap : bool
        Multiplier bootstrap standard errors and a simultaneous band.
    n_boot : int
        Bootstrap draws.
    seed : int, optional
        Seed of the bootstrap multipliers.
    multiplier : {"mammen", "rademacher"}
        The bootstrap's multiplier distribution.

    Returns
    -------
    pandas.DataFrame
        One row per ``(cohort, time)`` cell: ``cohort, time, att, std_error, ci_low, ci_high, n_treated,
        n_control, post`` (plus ``cband_low, cband_high`` with ``bootstrap=True``); ``attrs["att_gt"]`` holds
        the :class:`ATTgtFit` with the influence functions.

    References
    ----------
    Callaway B, Sant'Anna PHC (2021), J Econometrics 225:200-230; R package ``did`` (``att_gt``, ``mboot``).
    """
    check_choice("control_group", control_group, ControlGroup)
    check_choice("base_period", base_period, BasePeriod)
    check_number("anticipation", anticipation, 0)
    check_choice("multiplier", multiplier, Multiplier)
    _check_confidence(confidence)
    y, units, periods, g_unit = _prepare_staggered(data, outcome, unit, time, cohort)
    y, units, periods, g_unit, glist = _drop_unidentified(y, units, periods, g_unit, control_group, anticipation,
                                                          cohort)
    g_cell, cur, base = _cells(glist, periods, anticipation, base_period)
    post_cell = g_cell <= periods[cur]
    att, infl, n_g, n_c, same = _cell_effects(y, g_unit, periods, g_cell, cur, base, control_group, anticipation)
    n = y.shape[0]
    se = np.sqrt((infl ** 2).sum(0)) / n
    boot = None
    if bootstrap:
        boot = _multiplier_bootstrap(infl, n_boot, seed, confidence, multiplier)
        se = boot["se"]
    se = np.where(se <= SE_FLOOR, np.nan, se)
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
        table.attrs["crit_val"] = crit
    table.attrs["att_gt"] = ATTgtFit(
        cohort=g_cell, time=periods[cur], att=att, post=post_cell, influence=infl, unit_cohort=g_unit,
        units=units, periods=periods, control_group=control_group, anticipation=float(anticipation),
        base_period=base_period, confidence=confidence, bootstrap=bootstrap, n_boot=n_boot, seed=seed,
        multiplier=multiplier, outcomes=y)
    return table


def pretrend_test(attgt_result) -> pd.Series:
    """Wald test that every pre-treatment ``ATT(g, t)`` (``t < g``) is zero, with the joint
    influence-function covariance (``did``'s "P-value for pre-test of parallel trends assumption").

    Returns a Series ``statistic, df, p_value`` (chi-squared with ``df`` = number of pre-treatment cells
    with non-zero variance) and ``f_statistic, f_p_value``: Hotelling's small-sample version, ``F = (n -
    q) / (q (n - 1)) W`` on ``(q, n - q)`` degrees of freedom (missing when ``n <= q``). With monthly or
    quarterly panels ``q`` is large beside the number of units (30 pre-treatment cells and 60 practices),
    the covariance is poorly estimated and the chi-squared test rejects far too often (``did`` reports
    only the chi-squared p-value); the F version is exact for normal unit-level influence functions
    (Hotelling 1931; Anderson, *An Introduction to Multivariate Statistical Analysis*, 2003, 5.2).

    Parameters
    ----------
    attgt_result : pandas.DataFrame or ATTgtFit
        The result of :func:`att_gt`.

    Returns
    -------
    pandas.Series
        ``statistic, df, p_value, f_statistic, f_p_value``.

    Raises
    ------
    ValueError
        If there is no pre-treatment cell or their covariance is singular.

    References
    ----------
    Callaway B, Sant'Anna PHC (2021), J Econometrics 225:200-230 (``did``'s pre-test); Hotelling H (1931), Ann
    Math Stat 2:360-378.
    """
    fit = _fit_of(attgt_result)
    n = fit.n
    pre = ~fit.post & ~np.isnan(fit.att)
    se = np.sqrt((fit.influence ** 2).sum(0)) / n
    pre &= se > SE_FLOOR
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
