"""Aggregations of group-time effects (:func:`aggregate`, as ``did::aggte``), relative and total effects.

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


References
----------
Callaway B, Sant'Anna PHC (2021). J Econometrics 225:200-230 (R package ``did``, ``aggte``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from pbc_analysis.core.checks import check_choice
from pbc_analysis.methods.did.attgt import ATTgtFit, _fit_of
from pbc_analysis.methods.did.inference import _agg_se, _multiplier_bootstrap, _wif_term
from pbc_analysis.methods.did.panel import _check_confidence, _int_if_integral

__all__ = ["AggregateKind", "AggregateResult", "aggregate", "relative_effect", "total_effect"]

AggregateKind = Literal["simple", "group", "dynamic", "calendar"]


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


@dataclass(frozen=True)
class _Cells:
    """What every aggregation reads from an :class:`ATTgtFit`: cells recoded to consecutive periods and the
    cohort-share weights (``did``'s ``compute.aggte``)."""

    fit: ATTgtFit
    tcells: np.ndarray      # the cells' distinct times
    t_idx: np.ndarray       # each cell's time as 1, 2, ...
    g_idx: np.ndarray       # each cell's cohort on the same scale
    glist: np.ndarray       # the cohorts
    pg_group: np.ndarray    # each cohort's share of units
    pg: np.ndarray          # each cell's cohort share

    @classmethod
    def of(cls, fit: ATTgtFit) -> _Cells:
        tcells = np.unique(fit.time)
        glist = np.unique(fit.cohort)
        pg_group = np.array([np.mean(fit.unit_cohort == g) for g in glist])
        return cls(fit=fit, tcells=tcells, t_idx=np.searchsorted(tcells, fit.time) + 1.0,
                   g_idx=np.searchsorted(tcells, fit.cohort) + 1.0, glist=glist, pg_group=pg_group,
                   pg=pg_group[np.searchsorted(glist, fit.cohort)])

    def weighted(self, sel: np.ndarray) -> tuple[float, np.ndarray]:
        """The cohort-share weighted mean of the selected cells and its influence function (with ``wif``)."""
        f = self.fit
        w = self.pg[sel] / self.pg[sel].sum()
        return float(f.att[sel] @ w), f.influence[:, sel] @ w + _wif_term(sel, self.pg, f.cohort, f.unit_cohort, f.att)


_Parts = tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]  # overall, its psi, labels, table, psi, name


def _simple(c: _Cells, max_e: float) -> _Parts:
    keep = (c.g_idx <= c.t_idx) & (c.t_idx <= c.g_idx + max_e)
    if not keep.any():
        raise ValueError("no post-treatment ATT(g,t) within max_e")
    overall, psi = c.weighted(keep)
    return overall, psi, np.array([]), np.array([]), np.empty((c.fit.n, 0)), "cohort"


def _group(c: _Cells, max_e: float) -> _Parts:
    f = c.fit
    comp_att, cols, has = [], [], []
    for g in c.glist:
        wg = (f.cohort == g) & (c.g_idx <= c.t_idx) & (c.t_idx <= c.g_idx + max_e)
        has.append(wg.any())
        if wg.any():  # a cohort with no post-treatment cell within max_e is left out
            comp_att.append(f.att[wg].mean())
            cols.append(f.influence[:, wg].mean(1))
    glist, pg_group = c.glist[np.array(has)], c.pg_group[np.array(has)]
    if glist.size == 0:
        raise ValueError("no post-treatment ATT(g,t) within max_e")
    att, psi = np.array(comp_att), np.column_stack(cols)
    overall = float(att @ pg_group / pg_group.sum())
    keep_all = np.ones(glist.size, dtype=bool)
    overall_psi = psi @ (pg_group / pg_group.sum()) + _wif_term(keep_all, pg_group, glist, f.unit_cohort, att)
    return overall, overall_psi, glist, att, psi, "cohort"


def _dynamic(c: _Cells, min_e: float, max_e: float, balance_e: float | None) -> _Parts:
    f = c.fit
    e_cell = f.time - f.cohort
    eseq = np.unique(e_cell)
    include = np.ones(f.att.size, dtype=bool)
    if balance_e is not None:
        t_last, t_first = c.tcells[-1], c.tcells[0]
        eseq = eseq[(eseq <= balance_e) & (eseq >= balance_e - t_last + t_first)]
        include = (t_last - f.cohort) >= balance_e
    eseq = eseq[(eseq >= min_e) & (eseq <= max_e)]
    # event times whose cohorts were all removed by balance_e are left out (did reports 0 for them)
    eseq = np.array([e for e in eseq if np.any((e_cell == e) & include)])
    if eseq.size == 0:
        raise ValueError("no event times left after min_e / max_e / balance_e")
    parts = [c.weighted((e_cell == e) & include) for e in eseq]
    att, psi = np.array([a for a, _ in parts]), np.column_stack([p for _, p in parts])
    epos = eseq >= 0
    if not epos.any():
        return np.nan, np.full(f.n, np.nan), eseq, att, psi, "event_time"
    return float(att[epos].mean()), psi[:, epos].mean(1), eseq, att, psi, "event_time"


def _calendar(c: _Cells) -> _Parts:
    cal = np.unique(c.t_idx[c.t_idx >= c.g_idx.min()])
    parts = [c.weighted((c.t_idx == tt) & (c.g_idx <= c.t_idx)) for tt in cal]
    att, psi = np.array([a for a, _ in parts]), np.column_stack([p for _, p in parts])
    return float(att.mean()), psi.mean(1), c.tcells[cal.astype(int) - 1], att, psi, "time"


def _bootstrap_se(fit: ATTgtFit, overall_psi: np.ndarray, comp_psi: np.ndarray, n_boot: int | None,
                  seed: int | None, z: float) -> tuple[float, np.ndarray, float]:
    """Multiplier-bootstrap standard errors of the overall effect and the table, and the table's critical
    value (``did`` falls back to the pointwise one when the band is narrower)."""
    nb = fit.n_boot if n_boot is None else n_boot
    sd = fit.seed if seed is None else seed
    overall_se = float(_multiplier_bootstrap(overall_psi, nb, sd, fit.confidence, fit.multiplier)["se"][0])
    if not comp_psi.shape[1]:
        return overall_se, np.array([]), z
    b_comp = _multiplier_bootstrap(comp_psi, nb, sd, fit.confidence, fit.multiplier)
    crit = max(b_comp["crit"], z) if np.isfinite(b_comp["crit"]) else z
    return overall_se, b_comp["se"], crit


def aggregate(attgt_result, kind: AggregateKind = "simple", min_e: float = -np.inf, max_e: float = np.inf,
              balance_e: float | None = None, bootstrap: bool | None = None, n_boot: int | None = None,
              seed: int | None = None) -> AggregateResult:
    """Aggregate ``ATT(g, t)`` as R's ``did::aggte(type = kind, min_e, max_e, balance_e)``.

    Standard errors are analytic (influence functions including the estimated weights, ``did``'s ``wif``)
    unless the ATT(g,t) were bootstrapped or ``bootstrap=True``, when they come from the multiplier bootstrap of
    the same influence functions.

    Parameters
    ----------
    attgt_result : pandas.DataFrame or ATTgtFit
        The result of :func:`~pbc_analysis.methods.did.att_gt`.
    kind : {"simple", "group", "dynamic", "calendar"}
        The aggregation (see the module docstring).
    min_e, max_e : float
        Event times kept (``min_e`` only for ``dynamic``; ``max_e`` counts periods for ``simple`` and
        ``group``, time units for ``dynamic``, as ``did``).
    balance_e : float, optional
        ``dynamic`` only: keep cohorts observed at least this many periods after treatment.
    bootstrap : bool, optional
        Override whether to bootstrap (default: as ``att_gt``).
    n_boot, seed : int, optional
        Bootstrap draws and seed (default: those of ``att_gt``).

    Returns
    -------
    AggregateResult
        Its ``table`` is indexed by ``cohort`` (group), ``event_time`` (dynamic) or ``time`` (calendar).

    References
    ----------
    Callaway B, Sant'Anna PHC (2021), J Econometrics 225:200-230; R package ``did`` (``aggte``).
    """
    check_choice("kind", kind, AggregateKind)
    fit = _fit_of(attgt_result)
    if np.isnan(fit.att).any():
        raise ValueError("some ATT(g,t) are missing (no comparison units); aggregate needs all of them")
    c = _Cells.of(fit)
    z = stats.norm.ppf(1 - (1 - fit.confidence) / 2)
    if kind == "simple":
        parts = _simple(c, max_e)
    elif kind == "group":
        parts = _group(c, max_e)
    elif kind == "dynamic":
        parts = _dynamic(c, min_e, max_e, balance_e)
    else:
        parts = _calendar(c)
    overall_att, overall_psi, labels, comp_att, comp_psi, label_name = parts
    crit = z
    if fit.bootstrap if bootstrap is None else bootstrap:
        overall_se, comp_se, crit = _bootstrap_se(fit, overall_psi, comp_psi, n_boot, seed, z)
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
    largely cancels. Standard errors are analytic.

    Parameters
    ----------
    attgt_result : pandas.DataFrame or ATTgtFit
        The result of :func:`~pbc_analysis.methods.did.att_gt` on a positive level (a count or a rate).
    min_e, max_e : float
        The event times averaged (``min_e`` at least 0).
    confidence : float, optional
        Interval level (default: that of ``att_gt``).

    Returns
    -------
    pandas.Series
        ``att, treated_mean, counterfactual_mean, ratio, ratio_ci_low, ratio_ci_high, relative,
        relative_ci_low, relative_ci_high, std_error_log`` (``std_error_log`` of ``log ratio``).

    References
    ----------
    Callaway B, Sant'Anna PHC (2021), J Econometrics 225:200-230 (the dynamic aggregation and its influence
    function); the delta method for a ratio of means (e.g. Casella G, Berger RL, *Statistical Inference*, 2002,
    5.5.4).
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
    ``sqrt(sum psi^2) / n``, normal interval.

    Parameters
    ----------
    attgt_result : pandas.DataFrame or ATTgtFit
        The result of :func:`~pbc_analysis.methods.did.att_gt`.
    exposure : pandas.DataFrame
        ``cohort, time, exposure`` (and ``by``), one row per post-treatment cell.
    by : str, optional
        A column of ``exposure`` to sum within.
    confidence : float, optional
        Interval level (default: that of ``att_gt``).

    Returns
    -------
    pandas.DataFrame
        One row per ``by`` value then a ``total`` row: ``[by,] estimate, std_error, ci_low, ci_high, cells``.

    References
    ----------
    Callaway B, Sant'Anna PHC (2021), J Econometrics 225:200-230 (influence functions of linear combinations
    of ATT(g,t)).
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
