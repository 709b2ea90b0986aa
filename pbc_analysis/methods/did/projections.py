"""Alternating projections: the within transformation over any number of fixed-effect dimensions.

:func:`_demean` returns the residuals of columns on the dummies of every fixed-effect dimension (weighted
least squares if weights are given) by subtracting group means dimension by dimension until the largest
change is below ``1e-13`` relative (the method of ``fixest`` and ``lfe``; Gaure 2013). In a balanced panel
one sweep is exact (``x_it - x_i. - x_.t + x_..``) and the second only confirms it; unbalanced panels converge
geometrically. :func:`_fixest_adjustment` is fixest's default small-sample factor of cluster-robust
variances. Both are used by :mod:`pbc_analysis.methods.did.twfe` and :mod:`pbc_analysis.methods.ppml`.

References
----------
Gaure S (2013). OLS with multiple high dimensional category variables. Comput Stat Data Anal 66:8-18.
Berge L (2018). Efficient estimation of maximum likelihood models with multiple fixed-effects: the R package
FENmlm. CREA Discussion Papers 13 (``fixest``'s ``ssc(adj = TRUE, fixef.K = "nested", cluster.adj = TRUE)``).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from pbc_analysis.methods.did.panel import _no_missing

_DEMEAN_TOL = 1e-13
_DEMEAN_MAX_ITER = 100_000


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
    """The small-sample factor of fixest's default, ``G/(G-1) (n-1)/(n-K)`` with ``fixef.K = "nested"``: ``K`` is
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
