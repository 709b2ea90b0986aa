"""The one Poisson fixed-effects engine (pbc_analysis.methods.ppml): the general IRLS solver against statsmodels'
GLM with dummies, the fast two-way solver against the general one, and the profiled information by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from pbc_analysis.methods import ppml


def test_fepois_equals_statsmodels_glm_with_dummies():
    rng = np.random.default_rng(7)
    n = 600
    a, b, c = rng.integers(0, 15, n), rng.integers(0, 8, n), rng.integers(0, 5, n)
    x = rng.normal(size=(n, 2))
    off = rng.normal(0, 0.3, n)
    eta = off + 0.3 * x[:, 0] - 0.2 * x[:, 1] + rng.normal(0, 0.5, 15)[a] + rng.normal(0, 0.5, 8)[b] + \
        rng.normal(0, 0.5, 5)[c]
    y = rng.poisson(np.exp(eta)).astype(float)
    fit = ppml.fepois(y, [a, b, c], x, off, cluster=a)
    d = pd.get_dummies(pd.DataFrame({"a": a.astype(str), "b": b.astype(str), "c": c.astype(str)}), drop_first=True,
                       dtype=float)
    X = sm.add_constant(np.column_stack([x, d.to_numpy()]))
    glm = sm.GLM(y, X, family=sm.families.Poisson(), offset=off).fit(tol=1e-14, maxiter=200)
    np.testing.assert_allclose(fit.coef, glm.params[1:3], atol=1e-6)
    np.testing.assert_allclose(fit.mu, glm.fittedvalues, rtol=1e-6)
    assert fit.n_clusters == 15 and fit.keep.all()
    # model-based variance without clusters equals the GLM's
    plain = ppml.fepois(y, [a, b, c], x, off)
    np.testing.assert_allclose(plain.vcov, glm.cov_params()[1:3, 1:3], rtol=1e-5)
    assert plain.n_clusters == 0


def test_fepois_drops_all_zero_levels_and_names_a_flat_regressor():
    rng = np.random.default_rng(2)
    unit, time = np.repeat(np.arange(6), 5), np.tile(np.arange(5), 6)
    y = rng.poisson(3.0, 30).astype(float)
    y[unit == 2] = 0.0  # an all-zero unit: infinite fixed effect, dropped
    fit = ppml.fepois(y, [unit, time], rng.normal(size=30))
    assert (~fit.keep).sum() == 5 and np.isnan(fit.mu[unit == 2]).all()
    with pytest.raises(ValueError, match="treated has no variation left after removing the fixed effects"):
        ppml.fepois(y, [unit, time], (unit >= 3).astype(float), names=["treated"])
    with pytest.raises(ValueError, match="y must be finite counts >= 0"):
        ppml.fepois(-y, [unit, time])


def test_fit_two_way_equals_fepois():
    """E[y_rc] = w_rc a_r g_{b(r)c} by exact alternating updates = the general IRLS fit with row and block x
    column fixed effects and log w as offset."""
    rng = np.random.default_rng(5)
    R, C = 24, 9
    block = np.sort(rng.integers(0, 4, R))
    block = pd.factorize(block, sort=True)[0]
    w = rng.uniform(500, 5000, (R, C))
    mu = w / 1000 * rng.uniform(0.5, 2, R)[:, None] * rng.uniform(0.5, 2, (block.max() + 1, C))[block]
    y = rng.poisson(mu).astype(float)
    fit = ppml.fit_two_way(y, w, block, tol=1e-13)
    assert fit.converged
    rows = np.repeat(np.arange(R), C)
    cells = block[rows] * C + np.tile(np.arange(C), R)
    gen = ppml.fepois(y.ravel(), [rows, cells], offset=np.log(w.ravel()), tol=1e-14)
    np.testing.assert_allclose((w * fit.row[:, None] * fit.cell[block]).ravel(), gen.mu, rtol=1e-7)
    # the fitted totals equal the observed ones (the Poisson first-order conditions)
    np.testing.assert_allclose(fit.row_total, y.sum(axis=1))


def test_two_way_information_inverse_is_the_profiled_information():
    """Per block, the inverse of the information of log g with log a profiled out: on identified contrasts it
    equals the (pseudo-)inverse of the Schur complement D_g - M' D_a^-1 M."""
    rng = np.random.default_rng(9)
    R, C = 10, 5
    block = np.array([0] * 4 + [1] * 6)
    w = rng.uniform(1, 3, (R, C)) * 100
    y = rng.poisson(w / 20).astype(float)
    fit = ppml.fit_two_way(y, w, block, tol=1e-13)
    mu = w * fit.row[:, None] * fit.cell[block]
    kinv = ppml.two_way_information_inverse(mu, fit, ppml.pad_index(block, 2))
    for b in range(2):
        m = mu[block == b]
        schur = np.diag(m.sum(axis=0)) - m.T @ np.diag(1 / m.sum(axis=1)) @ m
        contrast = np.eye(C)[0] - np.eye(C)[1]  # identified: a difference of log g between two columns
        np.testing.assert_allclose(contrast @ kinv[b] @ contrast, contrast @ np.linalg.pinv(schur) @ contrast,
                                   rtol=1e-8)
