"""Back tests: the sample run's result tables equal the committed expected tables, within the stated tolerance.

The comparison is :func:`pbc_analysis.pipeline.compare.compare_files`, the same one ``pbc verify`` uses: keys,
counts, flags and text exactly, floats within relative 1e-9 (with an absolute floor scaled to the column, see pbc_analysis.pipeline.compare), because the
last bits of floating-point results differ between CPUs and BLAS builds. The expected tables in
tests/expected/ are regenerated only by `make expected` (scripts/make_expected.py), after a deliberate
change; review the diff before committing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pbc_analysis.pipeline import compare

EXPECTED = Path(__file__).parents[1] / "expected"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sample_tables(sample_run):
    """The result tables of the shared sample run (tests/conftest.py). Rendering the report adds
    report.html and published/ but writes no table, so these are the tables a ``render=False`` run makes."""
    return sample_run / "tables"


def test_expected_tables_exist():
    assert sorted(EXPECTED.glob("*.csv")), "no expected tables: run `make expected`"


@pytest.mark.parametrize("expected", sorted(EXPECTED.glob("*.csv")), ids=lambda p: p.stem)
def test_table_matches_expected(sample_tables, expected):
    got = sample_tables / expected.name
    assert got.exists(), f"{expected.name} is no longer produced"
    result = compare.compare_files(expected, got, f"tests/expected/{expected.name}", labels=("expected", "produced"))
    assert result.ok, f"{result}; if intended, run `make expected`"


def test_no_unexpected_new_tables(sample_tables):
    new = {p.name for p in sample_tables.glob("*.csv")} - {p.name for p in EXPECTED.glob("*.csv")}
    assert not new, f"tables without expected versions: {sorted(new)}; run `make expected`"
