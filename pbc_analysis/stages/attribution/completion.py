"""The completeness factors' uncertainty in the attribution's intervals: gradients of every saving and line.

The latest months are completed (:func:`.panel.completeness_factors`): each lagged month's activity and cost of a
point of delivery is divided by its completeness, so the completed total of pod k in month m is an estimate,
with a log error ``e_q`` (``q`` = the pod and month, a row of the completeness table). Its covariance ``Sigma``
comes from backtesting the completion method on complete months (:func:`.panel.completeness_covariance`). Every
saving and accounting line ``G`` is a smooth function of the completed counts, so to first order its error from
completion is ``sum_q (dG/de_q) e_q`` with variance ``g' Sigma g``, added to its sampling variance (the two are
independent: one is what the months still to arrive will hold, the other the chance in the counts):

- **savings** value each referral avoided at its provider's cost per referral, pooled over the financial year:
  ``rho = sum A / sum R`` (activity per referral, within the year and change period) times ``unit = sum C / sum
  A``, so scaling month m's completed activity and cost by ``(1 + e)`` moves them by ``d rho = A_m / sum R`` and
  ``d unit = (C_m - unit A_m) / sum A`` (:func:`cost_gradients`); the savings' derivatives are the same referrals
  avoided valued at ``d cost per referral`` (``practice_action(values=...)``);
- **accounting lines**: the delta method's derivatives with respect to the counts (:mod:`.delta`), along the
  lagged part of each count (:func:`.delta.lag_matrix`, :func:`.delta.completion_gradients`);
- **the unexplained rest** (the demand line plus the saving) takes the sum of both gradients, so their
  covariance through completion is counted (:func:`apply`);
- **the late records' thinning**: which records of a month are late is chance, so a cell's observed count is
  binomial; the completed cells still add up to the completed total (whose error is the covariance's), but how
  that total is shared between practices is chance too: a line whose gradient differs across the month's
  records takes ``sum_n a_n (1 - c) / c (g_n - gbar)^2`` (:func:`.delta.completion_gradients`).

Emergency pods have no cost per referral: their completion moves the accounting lines only.

Checked over 30 synthetic PCTs written twice with the same draws, thinned for the lag and complete
(``scripts/simulate_completion.py``): the 443 completed pod-month totals fall within their 95% intervals of the
complete totals 95.0% of the time (root mean square z 0.97; with Poisson errors alone 74.3%, 2.34), and each
PCT line of the evaluation year computed from the completed data lies within its completion interval of the
line from the complete data 90.0 to 96.7% of the time (RMS z 0.91 to 1.13).

References
----------
Oehlert GW (1992), "A note on the delta method", The American Statistician 46:27-29; DOMAIN.md "Data lag"
(SUS activity arrives about three months late).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import pandas as pd

from pbc_analysis import data as _data
from pbc_analysis.stages.attribution.causal import PracticeAction
from pbc_analysis.stages.attribution.common import ELECTIVE_PODS
from pbc_analysis.stages.attribution.panel import _cost_arrays

__all__ = ["VALUE_PREFIX", "apply", "cost_gradients"]

#: the cost table's columns of derivatives: ``d_completion_<q>``, q the row of the completeness table
VALUE_PREFIX = "d_completion_"
_COLUMNS = ["level", "unit", "financial_year", "quantity", "std_error"]


def cost_gradients(inputs: _data.Inputs, completeness: pd.DataFrame, covariance: pd.DataFrame) -> pd.DataFrame:
    """Derivatives of the cost per referral with respect to the log of each completed elective total.

    Parameters
    ----------
    inputs : pbc_analysis.data.Inputs
        Validated inputs loaded with a window.
    completeness : pandas.DataFrame
        :func:`pbc_analysis.stages.attribution.panel.completeness_factors`.
    covariance : pandas.DataFrame
        :func:`pbc_analysis.stages.attribution.panel.completeness_covariance`: only totals with a completion error
        (a nonzero variance) get a column.

    Returns
    -------
    pandas.DataFrame
        In the row order of :func:`pbc_analysis.stages.attribution.panel.cost_per_referral`, one column
        ``d_completion_<q>`` per elective row ``q`` of ``completeness`` with a completion error.

    References
    ----------
    The module docstring (the derivatives of the pooled activity per referral and cost per unit).
    """
    a = _cost_arrays(inputs, completeness)
    pods, months = a["pods"], list(a["months"])
    var = np.diag(covariance.to_numpy(dtype=float)) if len(covariance) else np.zeros(0)
    A, C, seg, seg2, rho, unit = a["A"], a["C"], a["seg"], a["seg2"], a["rho"], a["unit"]
    cols = {}
    for q, (pod, month) in enumerate(zip(completeness["pod"].astype(str), completeness["month"].astype(str))):
        if pod not in ELECTIVE_PODS or not var[q] > 0 or month not in months:
            continue
        k, m = pods.index(pod), months.index(month)
        s1, s2 = seg[:, :, k, m], seg2[:, :, k, m]
        d_rho = np.divide(A[:, :, k, m], a["rsum"][s1], out=np.zeros(s1.shape), where=a["rsum"][s1] > 0)
        d_unit = np.divide(C[:, :, k, m] - unit[:, :, k, m] * A[:, :, k, m], a["a2"][s2], out=np.zeros(s2.shape),
                           where=a["a2"][s2] > 0)
        g = np.zeros(A.shape)
        g[:, :, k, :] = (np.where(seg[:, :, k, :] == s1[:, :, None], d_rho[:, :, None], 0.0) * unit[:, :, k, :]
                         + rho[:, :, k, :] * np.where(seg2[:, :, k, :] == s2[:, :, None], d_unit[:, :, None], 0.0))
        cols[f"{VALUE_PREFIX}{q}"] = g.ravel()
    return pd.DataFrame(cols, index=pd.RangeIndex(A.size))


def _quad(g: pd.DataFrame, sigma: np.ndarray, keys: Sequence[str]) -> pd.DataFrame:
    """``g' Sigma g`` per key of a long table of gradients ``keys + [q, gradient]``."""
    if not len(g):
        return pd.DataFrame(columns=[*keys, "variance"])
    grouped = g.groupby(list(keys), sort=True, observed=True)
    key_codes = grouped.ngroup().to_numpy()
    G = np.zeros((grouped.ngroups, sigma.shape[0]))
    np.add.at(G, (key_codes, g["q"].to_numpy(dtype=np.int64)), g["gradient"].to_numpy(dtype=float))
    out = grouped.size().reset_index()[list(keys)]
    out["variance"] = np.einsum("iq,qr,ir->i", G, sigma, G)
    return out


def _savings_gradients(action: PracticeAction) -> pd.DataFrame:
    """The savings' gradients as ``level, unit, financial_year, target, q, gradient`` (ledger levels and units)."""
    v = action.valued
    if v is None or not len(v):
        return pd.DataFrame(columns=["level", "unit", "financial_year", "target", "q", "gradient"])
    v = v[v["value"].astype(str).str.startswith(VALUE_PREFIX)]
    q = v["value"].astype(str).str.slice(len(VALUE_PREFIX)).astype(np.int64)
    return pd.DataFrame({"level": v["level"].astype(str).to_numpy(),
                         "unit": np.where(v["level"] == "pct", "PCT", v["unit"].astype(str)),
                         "financial_year": v["financial_year"].astype(str).to_numpy(),
                         "target": v["target"].astype(str).to_numpy(), "pod": v["pod"].astype(str).to_numpy(),
                         "q": q.to_numpy(), "gradient": v["savings"].to_numpy(dtype=float)})


def _plus(variances: pd.DataFrame, more: pd.DataFrame | None, keys: Sequence[str]) -> pd.DataFrame:
    """``variances`` with ``more``'s (``line`` for ``quantity``) added by key; keys only in ``more`` are added too."""
    if more is None or not len(more):
        return variances
    m = more.rename(columns={"line": "quantity"})[[*keys, "variance"]]
    both = pd.concat([variances[[*keys, "variance"]], m], ignore_index=True)
    return both.groupby(list(keys), sort=True, observed=True)["variance"].sum().reset_index()


def _lookup(variances: pd.DataFrame, frame: pd.DataFrame, keys: Sequence[str]) -> np.ndarray:
    """``variances`` (by ``keys``) at the rows of ``frame``; 0 where a row has none."""
    if not len(variances):
        return np.zeros(len(frame))
    v = variances.set_index(list(keys))["variance"]
    return v.reindex(pd.MultiIndex.from_frame(frame[list(keys)].astype(str))).fillna(0.0).to_numpy(dtype=float)


def _widen(frame: pd.DataFrame, var: np.ndarray, z: float) -> pd.DataFrame:
    """``frame``'s ``std_error`` and interval widened by a variance added to it (a bootstrap interval's two
    half-widths each combined with ``z`` times the added standard error)."""
    out = frame.copy()
    sc = np.sqrt(np.maximum(np.nan_to_num(var), 0.0))
    est = out["savings"].to_numpy(dtype=float)
    out["std_error_completion"] = sc
    out["std_error"] = np.sqrt(out["std_error"].to_numpy(dtype=float) ** 2 + sc ** 2)
    below = np.maximum(est - out["ci_low"].to_numpy(dtype=float), 0.0)
    above = np.maximum(out["ci_high"].to_numpy(dtype=float) - est, 0.0)
    out["ci_low"] = np.where(sc > 0, est - np.sqrt(below ** 2 + (z * sc) ** 2), out["ci_low"])
    out["ci_high"] = np.where(sc > 0, est + np.sqrt(above ** 2 + (z * sc) ** 2), out["ci_high"])
    return out


def apply(action: PracticeAction, intervals: pd.DataFrame, line_gradients: pd.DataFrame, covariance: pd.DataFrame,
          z: float, group: str, thinning: pd.DataFrame | None = None) -> tuple[PracticeAction, pd.DataFrame, pd.DataFrame]:
    """Add the completion variance to the savings' and the lines' standard errors and intervals.

    Parameters
    ----------
    action : PracticeAction
        :func:`pbc_analysis.stages.attribution.causal.practice_action` valued at :func:`cost_gradients`.
    intervals : pandas.DataFrame
        The lines' standard errors (``level, unit, financial_year, line, std_error``).
    line_gradients : pandas.DataFrame
        :func:`pbc_analysis.stages.attribution.delta.completion_gradients`.
    covariance : pandas.DataFrame
        :func:`pbc_analysis.stages.attribution.panel.completeness_covariance`.
    z : float
        The normal quantile of the intervals.
    group : str
        The practices' grouping level of the ledger (e.g. ``consortium``).
    thinning : pandas.DataFrame, optional
        :func:`pbc_analysis.stages.attribution.delta.completion_gradients`' thinning variances of the lines, added
        to their completion part (the unexplained rest takes the demand line's; the saving's, through a cost per
        referral pooled over the year, is negligible and left out).

    Returns
    -------
    action : PracticeAction
        ``practice_year`` and ``aggregates`` with ``std_error``, ``ci_low`` and ``ci_high`` widened and the added
        part as ``std_error_completion``.
    intervals : pandas.DataFrame
        ``std_error`` the total, ``std_error_sampling`` and ``std_error_completion`` its parts.
    completion : pandas.DataFrame
        ``level, unit, financial_year, quantity, std_error``: the completion part of every line, of the
        practice-action saving and of the unexplained rest (demand line plus saving, its covariance included).

    References
    ----------
    The module docstring.
    """
    sigma = covariance.to_numpy(dtype=float) if len(covariance) else np.zeros((0, 0))
    sav = _savings_gradients(action)
    ag, py = action.aggregates, action.practice_year
    v_ag = _lookup(_quad(sav[sav["level"] != "practice"], sigma, ["target", "financial_year"]), ag,
                   ["target", "financial_year"])
    v_py = _lookup(_quad(sav[sav["level"] == "practice"], sigma, ["unit", "financial_year"]),
                   py.rename(columns={"practice_code": "unit"}), ["unit", "financial_year"])
    action = dataclasses.replace(action, aggregates=_widen(ag, v_ag, z), practice_year=_widen(py, v_py, z))
    # the ledger's rows: practices, groups, the PCT (aggregates over every pod)
    led_sav = sav[(sav["pod"] == "all") & sav["level"].isin(["practice", group, "pct"])].drop(columns=["target", "pod"])
    keys = ["level", "unit", "financial_year"]
    lines = _plus(_quad(line_gradients.rename(columns={"line": "quantity"}), sigma, [*keys, "quantity"]),
                  thinning, [*keys, "quantity"])
    un = pd.concat([line_gradients[line_gradients["line"] == "demand"].drop(columns="line"), led_sav])
    thin_un = thinning[thinning["line"] == "demand"].assign(line="unexplained") if thinning is not None else None
    parts = [lines, _quad(led_sav, sigma, keys).assign(quantity="practice_action_savings"),
             _plus(_quad(un, sigma, keys).assign(quantity="unexplained"), thin_un, [*keys, "quantity"])]
    completion = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else \
        pd.DataFrame(columns=[*keys, "quantity", "variance"])
    completion["std_error"] = np.sqrt(np.maximum(completion["variance"].to_numpy(dtype=float), 0.0))
    completion = completion[_COLUMNS].sort_values(_COLUMNS[:4], ignore_index=True)
    return action, _with_completion(intervals, completion), completion


def _with_completion(intervals: pd.DataFrame, completion: pd.DataFrame) -> pd.DataFrame:
    """The lines' standard errors with their completion part added in quadrature."""
    out = intervals.copy()
    keys = ["level", "unit", "financial_year", "line"]
    c = completion.rename(columns={"quantity": "line", "std_error": "sc"}).set_index(keys)["sc"]
    sc = c.reindex(pd.MultiIndex.from_frame(out[keys].astype(str))).fillna(0.0).to_numpy(dtype=float) \
        if len(c) else np.zeros(len(out))
    out["std_error_sampling"] = out["std_error"]
    out["std_error_completion"] = sc
    out["std_error"] = np.sqrt(out["std_error_sampling"].to_numpy(dtype=float) ** 2 + sc ** 2)
    return out
