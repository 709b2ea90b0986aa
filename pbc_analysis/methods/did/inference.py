"""Influence-function inference for group-time effects: the multiplier bootstrap and the weights' term.

:func:`_multiplier_bootstrap` is ``did``'s ``mboot`` (Mammen or Rademacher multipliers, standard error from
the interquartile range of the draws, simultaneous critical value); :func:`_wif_term` is ``did``'s ``wif``,
the influence of estimating the cohort-share weights of an aggregate; :func:`_agg_se` the analytic standard
error of an influence function.

References
----------
Callaway B, Sant'Anna PHC (2021). J Econometrics 225:200-230 (R package ``did``: ``mboot``, ``wif``).
Mammen E (1993). Bootstrap and wild bootstrap for high dimensional linear models. Ann Stat 21:255-285.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from pbc_analysis.methods.did.panel import SE_FLOOR


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
    ok = sigma > SE_FLOOR
    se = np.full(infl.shape[1], np.nan)
    se[ok] = sigma[ok] / np.sqrt(n)
    crit = np.nan
    if ok.any():
        tmax = np.max(np.abs(draws[:, ok] / sigma[ok]), axis=1)
        crit = float(np.quantile(tmax, confidence, method="inverted_cdf"))
    return {"se": se, "crit": crit, "draws": draws}


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
    return np.where(se <= SE_FLOOR, np.nan, se)
