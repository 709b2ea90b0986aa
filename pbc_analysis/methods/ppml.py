"""Poisson pseudo-maximum likelihood (PPML) with high-dimensional fixed effects: the one Poisson FE engine.

Counts ``y_i`` (referrals, admissions) with an exposure offset ``o_i`` (log list size) are modelled as
``E[y_i] = exp(o_i + x_i b + sum_d fe_d[code_di])``: Poisson pseudo-maximum likelihood, consistent for any
count-like outcome whose conditional mean has that form, whatever its variance (Santos Silva and Tenreyro
2006), with as many fixed-effect dimensions as the design needs (practice, period, provider x month, ...).
Two solvers:

- :func:`fepois` (general: any number of fixed-effect dimensions and regressors; as ``fixest::fepois``).
  Iteratively reweighted least squares in which every weighted least-squares step absorbs all fixed-effect
  dimensions by weighted alternating projections (Correia, Guimaraes and Zylkin 2020; Berge 2018), with R's
  ``glm.fit`` step halving. Levels whose outcome is zero throughout have an infinite effect and are dropped
  first, repeatedly (fixest's ``fixef.rm``). Variance: the inverse information, or cluster-robust (CR1) with
  fixest's small-sample factor (:func:`pbc_analysis.methods.did.projections._fixest_adjustment`).
  :func:`pbc_analysis.methods.did.fepois` (unit and period effects, one treatment dummy) calls it.

- :func:`fit_two_way` (fast, no regressors): a row effect ``a_r`` and a block x column effect ``g_bc``,
  ``E[y_rc] = w_rc a_r g_{b(r)c}``, every row belonging to one block (practice-provider pairs within their
  provider; months as columns). The Poisson score equations then have closed-form solutions given the other
  effect, ``a = sum_c y / sum_c w g`` and ``g = sum_{r in b} y / sum_{r in b} w a``, so the fit alternates
  these exact updates (Guimaraes and Portugal 2010, "A simple feasible procedure to fit models with
  high-dimensional fixed effects", Stata J 10:628-649) until the largest change of ``log g`` is below
  ``tol``, vectorised over blocks and rows: on a national panel (6,500 practices x 60 months x 12
  specialties) in seconds where IRLS with dummies is out of reach. It equals :func:`fepois` with the same two
  dimensions (tests). :func:`two_way_information_inverse` gives the inverse of the Poisson information of
  ``log g`` with ``log a`` profiled out (the Schur complement), block by block, for delta-method variances.

References
----------
Santos Silva JMC, Tenreyro S (2006). The log of gravity. Rev Econ Stat 88:641-658.
Correia S, Guimaraes P, Zylkin T (2020). Fast Poisson estimation with high-dimensional fixed effects.
Stata J 20:95-115.
Berge L (2018). Efficient estimation of maximum likelihood models with multiple fixed-effects: the R package
FENmlm. CREA Discussion Papers 13.
Guimaraes P, Portugal P (2010). A simple feasible procedure to fit models with high-dimensional fixed
effects. Stata J 10:628-649.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Sequence

import numpy as np
import pandas as pd

from pbc_analysis.methods.did.projections import _demean, _fixest_adjustment

__all__ = ["FEPoisFit", "TwoWayFit", "drop_all_zero", "fepois", "fit_two_way", "gather", "pad_index",
           "poisson_deviance", "two_way_information_inverse"]


@dataclasses.dataclass(frozen=True, eq=False)
class FEPoisFit:
    """Result of :func:`fepois`: coefficients, their variance, and the fitted values of every row."""

    coef: np.ndarray          # (k,) the regressors' coefficients
    vcov: np.ndarray          # (k, k) cluster-robust (CR1) if clusters were given, else the inverse information
    mu: np.ndarray            # (n,) fitted means (NaN for dropped rows)
    eta: np.ndarray           # (n,) linear predictors (NaN for dropped rows)
    keep: np.ndarray          # (n,) rows used (not in a level whose outcome is zero throughout)
    iterations: int
    deviance: float
    n_clusters: int = 0       # clusters among the rows used (0 without clusters)


@dataclasses.dataclass(frozen=True, eq=False)
class TwoWayFit:
    """Result of :func:`fit_two_way` (effects on the rate scale: ``E[y] = w a g``)."""

    row: np.ndarray           # (R,) row effects a (0 where the row has no counts)
    cell: np.ndarray          # (B, C) block x column effects g (0 where the block has no counts in the column)
    row_total: np.ndarray     # (R,) sum of each row's counts (= its fitted sum, the information of log a)
    cell_total: np.ndarray    # (B, C) sum of each block x column's counts (= the information of log g)
    iterations: int
    converged: bool


def poisson_deviance(y: np.ndarray, mu: np.ndarray) -> float:
    """The Poisson deviance ``2 sum(y log(y / mu) - (y - mu))`` (``y log y = 0`` at 0).

    Parameters
    ----------
    y, mu : numpy.ndarray
        Counts and fitted means.

    Returns
    -------
    float

    References
    ----------
    McCullagh P, Nelder JA (1989). *Generalized Linear Models*, 2nd ed., section 2.3.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(y > 0, y * np.log(y / mu), 0.0)
    return float(2 * np.sum(term - (y - mu)))


def drop_all_zero(y: np.ndarray, fe_codes: Sequence[np.ndarray]) -> np.ndarray:
    """Rows to keep after repeatedly removing fixed-effect levels whose outcome is zero throughout.

    Parameters
    ----------
    y : numpy.ndarray
        Counts.
    fe_codes : sequence of numpy.ndarray
        Integer codes (0 .. L-1) of each fixed-effect dimension, one per row.

    Returns
    -------
    numpy.ndarray of bool

    References
    ----------
    Berge L (2018), FENmlm (``fixef.rm``): such a level's effect is minus infinity and its rows fit exactly.
    """
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
    """One IRLS step with step halving, as R's ``glm.fit``: halve the step from ``eta`` towards ``eta_new`` (at
    most 30 times) until the deviance is finite and not above ``dev_old``. Returns eta, mu and the deviance."""
    mu_new = np.exp(eta_new)
    dev = poisson_deviance(y, mu_new)
    halvings = 0
    while (not np.isfinite(dev) or dev > dev_old * (1 + 1e-10) + 1e-12) and halvings < 30:
        eta_new = (eta_new + eta) / 2
        mu_new = np.exp(eta_new)
        dev = poisson_deviance(y, mu_new)
        halvings += 1
    return eta_new, mu_new, dev


def _check_fepois(y: np.ndarray, fixed_effects: Sequence[np.ndarray]) -> list[np.ndarray]:
    if np.any(~np.isfinite(y)) or np.any(y < 0):
        raise ValueError("y must be finite counts >= 0 (Poisson); remove missing values or negative counts")
    fes = [np.asarray(c, dtype=np.int64) for c in fixed_effects]
    if not fes or any(c.shape != (y.size,) for c in fes):
        raise ValueError("fixed_effects must be a non-empty list of integer code arrays, one value per observation")
    return fes


def _vcov(Xk: np.ndarray, yk: np.ndarray, mu: np.ndarray, codes: list[np.ndarray], sizes: list[int],
          cluster: np.ndarray | None) -> tuple[np.ndarray, int]:
    """Inverse information, or CR1 cluster-robust with fixest's small-sample factor, of the coefficients."""
    k = Xk.shape[1]
    if not k:
        return np.zeros((0, 0)), 0
    xd = _demean(Xk, codes, sizes, weights=mu)
    bread = np.linalg.inv((xd * mu[:, None]).T @ xd)
    if cluster is None:
        return bread, 0
    cl, lev = pd.factorize(cluster, sort=True)
    score = np.zeros((len(lev), k))
    np.add.at(score, cl, xd * (yk - mu)[:, None])
    adj, _ = _fixest_adjustment(yk.size, k, codes, sizes, cl, len(lev))
    return adj * bread @ (score.T @ score) @ bread, len(lev)


def fepois(y: np.ndarray, fixed_effects: Sequence[np.ndarray], X: np.ndarray | None = None,
           offset: np.ndarray | None = None, cluster: np.ndarray | None = None, tol: float = 1e-12,
           max_iter: int = 200, names: Sequence[str] | None = None) -> FEPoisFit:
    """PPML with several high-dimensional fixed effects and optional regressors (``fixest::fepois``).

    Parameters
    ----------
    y : numpy.ndarray
        Non-negative counts (non-integers allowed, as PPML).
    fixed_effects : sequence of numpy.ndarray
        Integer codes of each fixed-effect dimension, one value per observation.
    X : numpy.ndarray, optional
        Regressors ``(n, k)`` (none: only the fixed effects and the offset).
    offset : numpy.ndarray, optional
        On the log scale, coefficient 1 (e.g. log list size).
    cluster : numpy.ndarray, optional
        Cluster of each observation: the variance is then cluster-robust (CR1, fixest's small-sample factor).
    tol : float
        IRLS stops when the relative change in deviance is below it.
    max_iter : int
        At most this many IRLS steps (a RuntimeWarning if not converged).
    names : sequence of str, optional
        The regressors' names, for the message when one has no variation left.

    Returns
    -------
    FEPoisFit

    Raises
    ------
    ValueError
        For negative or missing counts, malformed codes, or a regressor with no variation left after the fixed
        effects are removed.

    References
    ----------
    Correia S, Guimaraes P, Zylkin T (2020), Stata J 20:95-115 (IRLS with alternating projections); Berge L
    (2018), FENmlm; Santos Silva JMC, Tenreyro S (2006), Rev Econ Stat 88:641-658.
    """
    y = np.asarray(y, dtype=float)
    n = y.size
    fes = _check_fepois(y, fixed_effects)
    Xa = np.zeros((n, 0)) if X is None else np.asarray(X, dtype=float).reshape(n, -1)
    off = np.zeros(n) if offset is None else np.asarray(offset, dtype=float)
    labels = list(names) if names is not None else [f"regressor {j}" for j in range(Xa.shape[1])]
    keep = drop_all_zero(y, fes)
    yk, Xk, ok = y[keep], Xa[keep], off[keep]
    codes = [pd.factorize(c[keep], sort=True)[0] for c in fes]
    sizes = [int(c.max()) + 1 for c in codes]
    mu = (yk + yk.mean()) / 2  # start values as fixest/glm: between the data and their mean
    eta = np.log(mu)
    dev, dev_old = np.inf, np.inf
    beta = np.zeros(Xk.shape[1])
    it = 0
    for step in range(1, max_iter + 1):
        it = step
        z = eta - ok + (yk - mu) / mu  # working response without the offset
        zd = _demean(np.column_stack([z, Xk]), codes, sizes, weights=mu)
        if Xk.shape[1]:
            xw = zd[:, 1:] * mu[:, None]
            info = xw.T @ zd[:, 1:]
            flat = np.flatnonzero(np.diag(info) <= 1e-14)
            if flat.size:
                raise ValueError(f"{labels[flat[0]]} has no variation left after removing the fixed effects")
            beta = np.linalg.solve(info, xw.T @ zd[:, 0])
        eta_new = ok + z - (zd[:, 0] - zd[:, 1:] @ beta)
        eta, mu, dev = _halve_step(yk, eta, eta_new, dev_old)
        if abs(dev - dev_old) / (0.1 + abs(dev)) < tol:
            break
        dev_old = dev
    else:
        warnings.warn(f"fepois: IRLS did not converge in {max_iter} iterations", RuntimeWarning, stacklevel=2)
    vcov, n_clusters = _vcov(Xk, yk, mu, codes, sizes, None if cluster is None else np.asarray(cluster)[keep])
    mu_all, eta_all = np.full(n, np.nan), np.full(n, np.nan)
    mu_all[keep], eta_all[keep] = mu, eta
    return FEPoisFit(coef=beta, vcov=vcov, mu=mu_all, eta=eta_all, keep=keep, iterations=it, deviance=float(dev),
                     n_clusters=n_clusters)


def fit_two_way(counts: np.ndarray, exposure: np.ndarray, block: np.ndarray, tol: float = 1e-10,
                max_iter: int = 2000) -> TwoWayFit:
    """Poisson fixed effects ``E[y_rc] = w_rc a_r g_{b(r)c}`` by exact alternating updates (see the module docstring).

    Parameters
    ----------
    counts : numpy.ndarray
        ``(R, C)`` counts; rows sorted by ``block``. Entries outside the fit (unobserved, or treated
        observations left out of an imputation) must have zero ``exposure`` and zero ``counts``.
    exposure : numpy.ndarray
        ``(R, C)`` exposure ``w`` (0 where the observation is not in the fit).
    block : numpy.ndarray
        ``(R,)`` block of each row, codes 0 .. B-1, sorted, every block non-empty.
    tol : float
        Stop when the largest change of ``log g`` is below it.
    max_iter : int
        At most this many sweeps (``converged`` is False if reached).

    Returns
    -------
    TwoWayFit
        Effects are 0 where their counts are 0 (the maximum-likelihood limit: an infinite negative log effect).

    References
    ----------
    Guimaraes P, Portugal P (2010), Stata J 10:628-649; Correia S, Guimaraes P, Zylkin T (2020), Stata J
    20:95-115 (the Poisson fixed-effect first-order conditions).
    """
    n_blocks = int(block.max()) + 1 if block.size else 0
    start = np.searchsorted(block, np.arange(n_blocks))
    row_total = counts.sum(axis=1)
    cell_total = np.add.reduceat(counts, start, axis=0)
    g = np.ones((n_blocks, counts.shape[1]))
    converged, it = False, 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for step in range(1, max_iter + 1):
            it = step
            den = np.einsum("rc,rc->r", exposure, g[block])
            a = np.where(den > 0, row_total / np.where(den > 0, den, 1.0), 0.0)
            den_g = np.add.reduceat(exposure * a[:, None], start, axis=0)
            g_new = np.where(den_g > 0, cell_total / np.where(den_g > 0, den_g, 1.0), 0.0)
            pos = (g_new > 0) & (g > 0)
            change = float(np.max(np.abs(np.log(g_new[pos] / g[pos])))) if pos.any() else 0.0
            g = g_new
            if change < tol:
                converged = True
                break
        den = np.einsum("rc,rc->r", exposure, g[block])
        a = np.where((row_total > 0) & (den > 0), row_total / np.where(den > 0, den, 1.0), 0.0)
    return TwoWayFit(row=a, cell=g, row_total=row_total, cell_total=cell_total, iterations=it, converged=converged)


def pad_index(group: np.ndarray, n_groups: int) -> np.ndarray:
    """Positions of each group's members, ``(n_groups, largest group)``, -1 padded.

    Parameters
    ----------
    group : numpy.ndarray
        Sorted group codes 0 .. n_groups-1.
    n_groups : int

    Returns
    -------
    numpy.ndarray of int

    References
    ----------
    A ragged-to-dense layout so that per-block linear algebra runs as one batched ``numpy.matmul``.
    """
    counts = np.bincount(group, minlength=n_groups)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    idx = np.full((n_groups, max(1, int(counts.max()) if counts.size else 1)), -1, dtype=np.int64)
    idx[group, np.arange(group.size) - start[group]] = np.arange(group.size)
    return idx


def gather(arr: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``arr[idx]`` with zeros where ``idx`` is -1 (the padding of :func:`pad_index`).

    Parameters
    ----------
    arr : numpy.ndarray
    idx : numpy.ndarray of int

    Returns
    -------
    numpy.ndarray

    References
    ----------
    See :func:`pad_index`.
    """
    out = arr[np.where(idx >= 0, idx, 0)]
    out[idx < 0] = 0
    return out


def two_way_information_inverse(mu: np.ndarray, fit: TwoWayFit, pad: np.ndarray) -> np.ndarray:
    """Inverse of the Poisson information of ``log g`` with ``log a`` profiled out, for each block.

    In block ``b`` the information of ``(log a, log g)`` is ``[[D_a, M], [M', D_g]]`` with ``D_a`` the rows'
    fitted totals, ``D_g`` the block x column fitted totals and ``M`` the fitted means ``mu_rc``; the Schur
    complement on ``log g`` is ``K = D_g - M' D_a^-1 M``. One direction is not identified (``a`` up, ``g`` down by
    the same factor), so ``K`` is singular; adding ``lam n n' / C`` (``n`` the indicator of columns with counts)
    fixes that direction without changing any identified contrast. Columns without counts get 1 on the diagonal.

    Parameters
    ----------
    mu : numpy.ndarray
        ``(R, C)`` fitted means of the observations in the fit (0 elsewhere).
    fit : TwoWayFit
        The fit (its ``row_total`` and ``cell_total`` are the fitted totals at the maximum).
    pad : numpy.ndarray
        :func:`pad_index` of the rows' blocks.

    Returns
    -------
    numpy.ndarray
        ``(B, C, C)``.

    References
    ----------
    The partitioned inverse (Schur complement), e.g. Magnus JR, Neudecker H (2019), *Matrix Differential
    Calculus*, 3rd ed., chapter 1; applied to the fixed-effect Poisson information as in Correia et al. (2020).
    """
    d_g = fit.cell_total
    inv_da = np.where(fit.row_total > 0, 1.0 / np.where(fit.row_total > 0, fit.row_total, 1.0), 0.0)
    z = gather(mu * np.sqrt(inv_da)[:, None], pad)  # (B, n, C)
    k = -np.matmul(z.transpose(0, 2, 1), z)
    del z
    ident = d_g > 0
    n_cols = d_g.shape[1]
    k[:, np.arange(n_cols), np.arange(n_cols)] += np.where(ident, d_g, 1.0)
    nvec = ident.astype(float)
    lam = np.where(ident.any(axis=1), d_g.sum(axis=1) / np.maximum(ident.sum(axis=1), 1), 1.0)
    k += lam[:, None, None] * nvec[:, :, None] * nvec[:, None, :] / n_cols
    return np.linalg.inv(k)
