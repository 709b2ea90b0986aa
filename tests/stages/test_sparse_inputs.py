"""Every stage gives the same result tables on sparse ``activity`` and ``referrals`` as on dense ones.

The embedded sample (data/sample) has explicit zero rows (40% of its activity rows, a quarter of its
referral rows). Dropping every activity row with activity 0 (and cost 0) and every referral row with 0
referrals gives the sparse form of the same data (docs/data_dictionary.md: a missing row is a zero). Each
stage's ``run()`` must give identical tables on both (``pandas.testing``, exact), and the settings derived
from the data must be the same. A harsher pair also has a practice-month with no activity and no referrals
at all and a referral series that is zero throughout, so that the sparse form lacks whole practice-months
and a whole series. The one intended difference: ``dq_table_summary.rows`` counts the rows of each file.

The hand-made tests below check the densifying helpers on a few rows, with the expected values typed in.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pbc_analysis import data
from pbc_analysis.core import paths
from pbc_analysis.stages import attribution, benchmark, budgets, evaluation, facts, quality, risk
from pbc_analysis.stages.attribution.panel import _dense_series
from pbc_analysis.stages.quality import _every_month

START, END = "2003-04", "2008-03"


def _write_sparse(dense_dir: Path, out: Path) -> Path:
    """A copy of ``dense_dir`` with the zero rows of activity and referrals dropped."""
    shutil.copytree(dense_dir, out)
    act = pd.read_parquet(dense_dir / "activity.parquet")
    assert ((act["activity"] == 0) <= (act["cost"] == 0)).all()   # a zero row is zero in both
    act[act["activity"] != 0].to_parquet(out / "activity.parquet", index=False)
    ref = pd.read_parquet(dense_dir / "referrals.parquet")
    ref[ref["referrals"] != 0].to_parquet(out / "referrals.parquet", index=False)
    return out


def _write_harsh(out: Path) -> Path:
    """The sample with the first practice's activity and referrals of 2006-06 set to 0, and one referral
    series of the second practice set to 0 in every month (explicit zero rows)."""
    shutil.copytree(paths.SAMPLE_DIR, out)
    act = pd.read_parquet(paths.SAMPLE_DIR / "activity.parquet")
    ref = pd.read_parquet(paths.SAMPLE_DIR / "referrals.parquet")
    first, second = sorted(act["practice_code"].astype(str).unique())[:2]
    hit = (act["practice_code"].astype(str) == first) & (act["month"].astype(str) == "2006-06")
    act.loc[hit, ["activity", "cost"]] = [0, 0.0]
    hit = (ref["practice_code"].astype(str) == first) & (ref["month"].astype(str) == "2006-06")
    ref.loc[hit, "referrals"] = 0
    s = ref[ref["practice_code"].astype(str) == second].iloc[0]
    hit = ((ref["practice_code"] == s["practice_code"]) & (ref["provider_code"] == s["provider_code"])
           & (ref["specialty_code"] == s["specialty_code"]))
    ref.loc[hit, "referrals"] = 0
    act.to_parquet(out / "activity.parquet", index=False)
    ref.to_parquet(out / "referrals.parquet", index=False)
    return out


def _stage_tables(data_dir: Path) -> tuple[facts.DataFacts, dict[str, pd.DataFrame], data.Inputs]:
    """The facts and every result table of the five stages, with the sample config's settings."""
    inputs = data.load_inputs(data_dir, START, END)
    f = facts.data_facts(inputs)
    out: dict[str, pd.DataFrame] = {}
    out.update(quality.run(inputs, quality.Params(completeness_recent_months=6, completeness_threshold=0.95)).tables())
    out.update(benchmark.run(inputs, benchmark.Params(high_level=0.998).resolve(f)[0]).tables())
    out.update(evaluation.run(inputs, evaluation.Params(rtm_specialty="110").resolve(f)[0], facts=f).tables())
    gate = benchmark.under_referrer_flags(inputs, benchmark.Params())
    out.update(attribution.run(inputs, attribution.Params(n_boot=99).resolve(f)[0], flags=gate).tables())
    bud = budgets.run(inputs, budgets.Params().resolve(f)[0])
    out.update(bud.tables())
    out.update(risk.run(inputs, risk.Params().resolve(f)[0], bud).tables())
    return f, out, inputs


@pytest.fixture(scope="module", params=["sample", "harsh"])
def dense_and_sparse(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"sparse_{request.param}")
    dense = paths.SAMPLE_DIR if request.param == "sample" else _write_harsh(tmp / "dense")
    return _stage_tables(dense), _stage_tables(_write_sparse(dense, tmp / "sparse"))


@pytest.mark.slow
def test_every_stage_gives_identical_tables_on_sparse_inputs(dense_and_sparse):
    (f_dense, dense, in_dense), (f_sparse, sparse, in_sparse) = dense_and_sparse
    assert len(in_sparse.activity) < len(in_dense.activity) and len(in_sparse.referrals) < len(in_dense.referrals)
    assert f_sparse == f_dense
    assert sorted(sparse) == sorted(dense) and len(dense) > 50
    for name in dense:
        d, s = dense[name], sparse[name]
        if name == "dq_table_summary":   # the rows of each file: the one intended difference
            rows = dict(zip(s["table"], s["rows"]))
            assert rows["activity"] == len(in_sparse.activity) and rows["referrals"] == len(in_sparse.referrals)
            d, s = d.drop(columns="rows"), s.drop(columns="rows")
        pd.testing.assert_frame_equal(s, d, check_exact=True, obj=name)


# --------------------------------------------------------------------------------------------------
# The densifying helpers, by hand
# --------------------------------------------------------------------------------------------------

def test_dense_series_fills_every_month_of_each_series_with_a_row():
    """Two practices x one provider x two specialties, 3 months. Rows: (p0, s1) in months 0 and 2 with 4 and 1
    referrals, (p1, s0) in month 1 with 2. Series with a row: (p0, v0, s1) and (p1, v0, s0), so 2 x 3 = 6
    rows, sorted by series (key p * V * S + v * S + s: 1 then 2) and month; the months without a row are 0."""
    p, v, s, m, n = _dense_series([np.array([0, 1, 0]), np.array([0, 0, 0]), np.array([1, 0, 1]), np.array([0, 1, 2])],
                                  (2, 1, 2, 3), np.array([4, 2, 1]))
    assert p.tolist() == [0, 0, 0, 1, 1, 1]
    assert v.tolist() == [0] * 6
    assert s.tolist() == [1, 1, 1, 0, 0, 0]
    assert m.tolist() == [0, 1, 2, 0, 1, 2]
    assert n.tolist() == [4, 0, 1, 0, 2, 0]


def test_every_month_adds_zero_months_per_group():
    """Sums of pod x month with first_op in 2005-04 (3) and 2005-06 (2), ae in 2005-05 (7): each pod gets all
    three months, 0 where it had no row."""
    sums = pd.DataFrame({"pod": ["ae", "first_op", "first_op"], "month": ["2005-05", "2005-04", "2005-06"],
                         "activity": [7, 3, 2], "cost": [595.0, 360.0, 240.0]}).set_index(["pod", "month"])
    out = _every_month(sums, ["2005-04", "2005-05", "2005-06"])
    assert out["pod"].tolist() == ["ae"] * 3 + ["first_op"] * 3
    assert out["month"].tolist() == ["2005-04", "2005-05", "2005-06"] * 2
    assert out["activity"].tolist() == [0, 7, 0, 3, 0, 2]
    assert out["cost"].tolist() == [0.0, 595.0, 0.0, 360.0, 0.0, 240.0]
    one = _every_month(pd.DataFrame({"month": ["2005-05"], "referrals": [4]}).set_index("month"), ["2005-04", "2005-05"])
    assert one["month"].tolist() == ["2005-04", "2005-05"] and one["referrals"].tolist() == [0, 4]


def test_practice_cells_leave_out_zero_cells():
    """Three rows of one practice, specialty and pod: 2005-04 at two providers (2 and 0 units) and 2005-05 with
    0 units. Summed over providers: 2005-04 has 2 units costing 120 + 0 = 120; 2005-05 is a zero cell, left
    out (the same as a sparse table without that row)."""
    act = pd.DataFrame({"practice_code": ["P81001"] * 3, "provider_code": ["RA7", "RXN", "RA7"],
                        "specialty_code": ["110"] * 3, "pod": ["first_op"] * 3,
                        "month": ["2005-04", "2005-04", "2005-05"], "activity": [2, 0, 0], "cost": [120.0, 0.0, 0.0]})
    cells = budgets.practice_cells(act)
    assert cells["month"].tolist() == ["2005-04"]
    assert cells["activity"].tolist() == [2] and cells["cost"].tolist() == [120.0]


def test_monthly_costs_give_every_practice_every_month():
    """Cells of P2 in 2005-04 only and of P1 in both months: P2's 2005-05 is a 0 row, with that month's
    financial year and completeness factor (0.8) from the other practices' cells."""
    cells = pd.DataFrame({"practice_code": ["P1", "P1", "P1", "P2"], "month": ["2005-04", "2005-04", "2005-05", "2005-04"],
                          "financial_year": ["2005/06"] * 4, "cost": [10.0, 5.0, 8.0, 3.0], "factor": [1.0, 1.0, 0.8, 1.0],
                          "cost_adjusted": [10.0, 5.0, 10.0, 3.0], "cost_at_target": [11.0, 5.5, 11.0, 3.3]})
    practices = pd.DataFrame({"practice_code": ["P2", "P1"], "consortium": ["B", "A"]})
    g = risk.monthly_costs(cells, practices)
    assert list(g.columns) == ["practice_code", "month", "financial_year", "cost", "factor", "cost_adjusted",
                               "cost_at_target", "consortium"]
    assert g["practice_code"].tolist() == ["P1", "P1", "P2", "P2"]
    assert g["month"].tolist() == ["2005-04", "2005-05", "2005-04", "2005-05"]
    assert g["cost"].tolist() == [15.0, 8.0, 3.0, 0.0]          # P1 2005-04: 10 + 5
    assert g["factor"].tolist() == [1.0, 0.8, 1.0, 0.8]
    assert g["cost_at_target"].tolist() == [16.5, 11.0, 3.3, 0.0]   # 11 + 5.5
    assert g["consortium"].tolist() == ["A", "A", "B", "B"]
