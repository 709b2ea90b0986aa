"""The streamed Poisson bootstrap of the accounting lines (pbc_analysis.stages.attribution.bootstrap).

Its agreement with the unstreamed implementation it replaced, at the same seed and number of draws, is the back
test (tests/pipeline/test_backtest.py): the committed expected ledger tables were written by that implementation.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pytest

from pbc_analysis.stages.attribution import bootstrap
from pbc_analysis.stages.attribution.bootstrap import decomposition_intervals
from pbc_analysis.stages.attribution.decomposition import spend_cells

YEARS = ["2005/06", "2006/07", "2007/08"]


@pytest.fixture(scope="module")
def cells(sample_inputs):
    return spend_cells(sample_inputs, years=["2004/05", *YEARS])


def test_hand_case_change_has_the_poisson_standard_error(ae_cells):
    """Change in spend = A1 c1 - A0 c0 with A ~ Poisson: its variance is c1^2 A1 + c0^2 A0 exactly; 4,000 draws
    estimate the standard error to within 4 Monte Carlo standard errors (1 / sqrt(2 (D - 1)) relative)."""
    act, uc = {"2004/05": 400.0, "2007/08": 250.0}, {"2004/05": 90.0, "2007/08": 120.0}
    out = decomposition_intervals(ae_cells(act, uc), "2004/05", ["2007/08"], decomposition_draws=4000, seed=3)
    got = out.query("level == 'pct' and line == 'change'")["std_error"].item()
    truth = np.sqrt(uc["2007/08"] ** 2 * act["2007/08"] + uc["2004/05"] ** 2 * act["2004/05"])
    assert got == pytest.approx(truth, rel=4 / np.sqrt(2 * 3999))
    # one practice: its line is the PCT's, draw for draw
    prac = out.query("level == 'practice' and line == 'change'")["std_error"].item()
    assert prac == pytest.approx(got, rel=1e-12)


def test_results_do_not_depend_on_the_chunk_size(cells, consortia, monkeypatch):
    """Sums continue across chunks in one pass's order (_add_in_order): chunks of 97 cells give the default's
    standard errors bit for bit, including the draw blocks' last, short block (45 draws = 20 + 20 + 5)."""
    kw = dict(decomposition_draws=45, seed=11, groups={"consortium": consortia})
    one = decomposition_intervals(cells, "2004/05", YEARS, **kw)
    monkeypatch.setattr(bootstrap, "CHUNK_CELLS", 97)
    many = decomposition_intervals(cells, "2004/05", YEARS, **kw)
    pd.testing.assert_frame_equal(one, many, check_exact=True)
    assert set(one["level"]) == {"practice", "consortium", "pct"}
    assert (one["std_error"] > 0).mean() > 0.9


def test_same_seed_same_errors_other_seed_other_errors(cells):
    a = decomposition_intervals(cells, "2004/05", YEARS, decomposition_draws=20, seed=5)
    b = decomposition_intervals(cells, "2004/05", YEARS, decomposition_draws=20, seed=5)
    c = decomposition_intervals(cells, "2004/05", YEARS, decomposition_draws=20, seed=6)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert not np.allclose(a["std_error"], c["std_error"])


def _peak_bytes(cells: pd.DataFrame, draws: int) -> int:
    tracemalloc.start()
    try:
        decomposition_intervals(cells, "2004/05", YEARS, decomposition_draws=draws, seed=1)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_number_of_draws(cells):
    """Blocks of draws are reduced to running moments: 200 draws peak within 0.5 MB of 20 draws' peak (numpy reports
    its arrays to tracemalloc); keeping every draw's line totals, as the unstreamed version did, would add 180 draws x
    1,188 totals x 8 bytes (1.6 MB) and their concatenation as much again."""
    small, large = _peak_bytes(cells, 20), _peak_bytes(cells, 200)
    assert large < small + 2 ** 19, (small, large)


def test_moments_merge_equals_the_standard_deviation_of_all_draws():
    x = np.random.default_rng(0).normal(1e7, 3e5, size=(53, 4))
    m = bootstrap._Moments(4)
    for b0 in range(0, 53, 20):
        m.add(x[b0:b0 + 20])
    np.testing.assert_allclose(m.std(), x.std(axis=0, ddof=1), rtol=1e-12)
