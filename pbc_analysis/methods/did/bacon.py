"""Goodman-Bacon decomposition of the static two-way fixed-effects estimate into its 2x2 comparisons.

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


References
----------
Goodman-Bacon A (2021). Difference-in-differences with variation in treatment timing. J Econometrics
225:254-277 (R package ``bacondecomp``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pbc_analysis.methods.did.attgt import _prepare_staggered

__all__ = ["bacon_decomposition", "bacon_summary"]


def bacon_decomposition(data: pd.DataFrame, outcome: str, unit: str, time: str, cohort: str) -> pd.DataFrame:
    """Goodman-Bacon (2021) decomposition of the static TWFE estimate into 2x2 comparisons (balanced
    panel; R ``bacondecomp::bacon``).

    Returns one row per comparison: ``treated`` (cohort), ``control`` (cohort, ``inf`` = never treated),
    ``type`` (``"Earlier vs Later Treated"``, ``"Later vs Earlier Treated"``, ``"Treated vs Untreated"``,
    ``"Later vs Always Treated"``), ``estimate`` (the 2x2 DiD) and ``weight``; the weights sum to 1 and
    ``sum(weight * estimate)`` is :func:`~pbc_analysis.methods.did.twfe`'s estimate with the treated-post
    indicator of ``cohort``.

    Parameters
    ----------
    data : pandas.DataFrame
        A balanced panel.
    outcome, unit, time, cohort : str
        The outcome, unit, (numeric) period and cohort columns (cohort 0 or missing = never treated).

    Returns
    -------
    pandas.DataFrame
        ``treated, control, type, estimate, weight``.

    References
    ----------
    Goodman-Bacon A (2021), J Econometrics 225:254-277, Theorem 1; R package ``bacondecomp``.
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
    """Total weight and weighted average estimate by comparison type (``bacondecomp::bacon``'s first table).

    Parameters
    ----------
    decomposition : pandas.DataFrame
        The result of :func:`bacon_decomposition`.

    Returns
    -------
    pandas.DataFrame
        ``type, weight, avg_est``.

    References
    ----------
    Goodman-Bacon A (2021), J Econometrics 225:254-277.
    """
    d = decomposition.assign(_we=decomposition["weight"] * decomposition["estimate"])
    s = d.groupby("type", sort=True)[["weight", "_we"]].sum()
    return pd.DataFrame({"type": s.index, "weight": s["weight"].to_numpy(),
                         "avg_est": (s["_we"] / s["weight"]).to_numpy()})
