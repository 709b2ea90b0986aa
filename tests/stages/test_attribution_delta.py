"""The delta-method standard errors of the accounting lines (pbc_analysis.stages.attribution.delta).

Checked three ways: a hand case (the change in an A&E line is linear in the counts, so its standard error is
exact); the gradient against central finite differences of the bootstrap's own computation of the lines (so the
two methods linearise the same function); and the standard errors against the Poisson bootstrap.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pbc_analysis.stages.attribution import delta
from pbc_analysis.stages.attribution.bootstrap import (
    _Block,
    _block_sums,
    _block_units,
    _bootstrap_base,
    _pool,
    decomposition_intervals,
)
from pbc_analysis.stages.attribution.decomposition import _pair_years, spend_cells, spend_factors
from pbc_analysis.stages.attribution.delta import decomposition_delta

BASE, YEARS = "2004/05", ["2005/06", "2007/08"]


@pytest.fixture(scope="module")
def cells(sample_inputs):
    """The sample's spend cells of ten practices (the provider ratios pooled over them): small enough to
    differentiate count by count."""
    all_cells = spend_cells(sample_inputs, years=[BASE, *YEARS])
    keep = sorted(all_cells["practice_code"].astype(str).unique())[:10]
    return all_cells[all_cells["practice_code"].astype(str).isin(keep)].reset_index(drop=True)


def test_hand_case_change_is_exact(ae_cells):
    """Change in spend = A1 c1 - A0 c0 with A ~ Poisson(A): linear in the counts, so the delta method's variance
    c1^2 A1 + c0^2 A0 is exact (the bootstrap gets within its Monte Carlo error of it: test_attribution_bootstrap)."""
    act, uc = {"2004/05": 400.0, "2007/08": 250.0}, {"2004/05": 90.0, "2007/08": 120.0}
    out = decomposition_delta(ae_cells(act, uc), "2004/05", ["2007/08"])
    truth = np.sqrt(uc["2007/08"] ** 2 * act["2007/08"] + uc["2004/05"] ** 2 * act["2004/05"])
    for level in ("pct", "practice"):
        got = out.query(f"level == '{level}' and line == 'change'")["std_error"].item()
        assert got == pytest.approx(truth, rel=1e-12)
    # the HRG mix h = c / tariff does not move with the count, but its Shapley part does: with the emergency rate
    # the only other factor that changes, part = (h1 - h0) T (A0 + A1) / 2, so its SE is |c1 - c0| / 2 sqrt(A0 + A1)
    prov = out.query("level == 'pct' and line == 'provider_change'")["std_error"].item()
    assert prov == pytest.approx(abs(uc["2007/08"] - uc["2004/05"]) / 2 * np.sqrt(sum(act.values())), rel=1e-12)


def _line_totals(cells: pd.DataFrame, counts: np.ndarray, method: str) -> dict:
    """The lines per unit at the given counts ``[R per group, F per group, A per row]``, computed the way every
    bootstrap draw computes them (provider ratios pooled again, then the decomposition)."""
    fac = spend_factors(cells)
    _, p0, p1 = _pair_years(fac, BASE, YEARS)
    base = _bootstrap_base(fac)
    ng = base["Rg"].size
    blk = _Block(counts[None, :ng], counts[None, ng:2 * ng], counts[None, 2 * ng:])
    _pool(base, blk)
    return _block_sums(base, blk, p0, p1, YEARS, _block_units(base, p0, None), method)


@pytest.mark.parametrize("method", ["shapley", "lmdi"])
def test_gradient_matches_finite_differences(cells, method):
    """For referrals, first attendances, follow-ups, elective and emergency activity: the derivative of every
    line of the count's practice and of the PCT (through the provider ratios pooled over all practices) equals a
    central finite difference of the bootstrap's own computation, to 1e-5 relative."""
    fac = spend_factors(cells)
    base = _bootstrap_base(fac)
    idx = delta._count_index(base)
    lam = idx["lam"]
    ng = base["Rg"].size
    pod = fac["pod"].astype(str).to_numpy()
    rng = np.random.default_rng(4)
    picks = []
    for kind in ("R", "F"):
        cand = np.flatnonzero(lam[idx[kind][base["elective"]]] > 3)
        picks += list(idx[kind][base["elective"]][rng.choice(cand, 2, replace=False)])
    for p in ("followup_op", "elective", "non_elective", "ae"):
        cand = np.flatnonzero((pod == p) & (base["col"]["activity"] > 3))
        picks.append(2 * ng + int(rng.choice(cand)))
    prac_of = np.concatenate([np.zeros(ng, dtype=object), np.zeros(ng, dtype=object), base["prac"]])
    prac_of[base["grp"]] = base["prac"]
    prac_of[ng + base["grp"]] = base["prac"]
    checked = 0
    for n in picks:
        w = np.zeros(lam.size)
        w[n] = 1.0
        var, units, _, _ = delta._line_variances(cells, BASE, YEARS, method, None, weights=w)
        h = 1e-4 * lam[n]
        up, down = lam.copy(), lam.copy()
        up[n] += h
        down[n] -= h
        g_up, g_down = _line_totals(cells, up, method), _line_totals(cells, down, method)
        u = list(units["practice"][1]).index(prac_of[n])
        for (level, y, line), v in var.items():
            i = 0 if level == "pct" else u
            fd = (g_up[(level, y, line)][0, i] - g_down[(level, y, line)][0, i]) / (2 * h)
            scale = abs(g_up[(level, y, "change")][0, i]) / lam[n] + 1e-9
            assert np.sqrt(v[i]) == pytest.approx(abs(fd), rel=1e-5, abs=1e-7 * scale), (n, level, y, line)
            if level == "practice":   # a count moves only its own practice's lines directly; others via ratios
                assert np.all(np.isfinite(v))
            checked += abs(fd) > 1e-6 * scale
    assert checked > 20   # most of the lines do move with the counts picked


def test_agrees_with_the_bootstrap(cells, consortia):
    """1,000 Poisson bootstrap draws give the same standard errors to their Monte Carlo error (1 / sqrt(2 D): 2.2%)
    at every level; the delta method has none. (On the whole sample against 4,000 draws the median ratio is 0.993
    at every level, the 5-95% range 0.95-1.01 for practices: README "Methods and their checks".)"""
    kw = dict(groups={"consortium": consortia})
    d = decomposition_delta(cells, BASE, YEARS, **kw)
    b = decomposition_intervals(cells, BASE, YEARS, decomposition_draws=1000, seed=9, **kw)
    m = d.merge(b, on=["level", "unit", "financial_year", "line"], suffixes=("_d", "_b"))
    assert len(m) == len(d) == len(b)
    m = m[m["std_error_b"] > 0]
    ratio = m["std_error_d"] / m["std_error_b"]
    mc = 1 / np.sqrt(2 * 999)
    for level, r in ratio.groupby(m["level"]):
        assert abs(r.median() - 1) < 2 * mc + 0.01, level
        assert (abs(r - 1) < 5 * mc + 0.02).mean() > 0.97, level
    assert np.all(abs(ratio[m["level"] == "pct"] - 1) < 5 * mc + 0.02)


def test_deterministic_and_in_the_bootstrap_layout(cells, consortia):
    """No randomness: the same inputs give the same bytes; the rows are the bootstrap's (level, unit, year, line)."""
    a = decomposition_delta(cells, BASE, YEARS, groups={"consortium": consortia})
    b = decomposition_delta(cells, BASE, YEARS, groups={"consortium": consortia})
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    boot = decomposition_intervals(cells, BASE, YEARS, decomposition_draws=2, seed=1, groups={"consortium": consortia})
    key = ["level", "unit", "financial_year", "line"]
    pd.testing.assert_frame_equal(a[key], boot[key])
    assert (a["std_error"] >= 0).all() and np.isfinite(a["std_error"]).all()


def test_closed_form_gradient_equals_the_complex_step():
    """Shapley's derivatives in closed form (P / z_m over the quadrature nodes) equal the complex step through
    decomposition.shapley to rounding; cells with a factor zero in both years take the complex step."""
    rng = np.random.default_rng(2)
    f0, f1 = rng.uniform(0.05, 3, (400, 9)), rng.uniform(0.05, 3, (400, 9))
    f1[:40, 8] = 0.0          # a cell closed in the target year
    f0[40:60, 2] = f1[40:60, 2] = 0.0   # a factor zero in both years
    closed, step = delta._shapley_gradients(f0, f1), delta._complex_step(f0, f1, "shapley")
    ok = ~np.any((f0 == 0) & (f1 == 0), axis=1)
    moving = delta._MOVING
    np.testing.assert_allclose(closed[:, :, ok][..., moving], step[:, :, ok][..., moving], rtol=1e-12, atol=1e-12)
    g0, g1 = delta._cell_gradients(f0, f1, "shapley")
    np.testing.assert_array_equal(np.stack([g0, g1])[:, :, ~ok], step[:, :, ~ok])


def test_results_do_not_depend_on_the_chunk_size(cells, consortia, monkeypatch):
    """Chunks of 97 cells give the default's standard errors (sums in another order: 1e-12 relative)."""
    one = decomposition_delta(cells, BASE, YEARS, groups={"consortium": consortia})
    monkeypatch.setattr(delta, "CHUNK_CELLS", 97)
    many = decomposition_delta(cells, BASE, YEARS, groups={"consortium": consortia})
    np.testing.assert_allclose(many["std_error"], one["std_error"], rtol=1e-12, atol=1e-9)
