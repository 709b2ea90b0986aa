"""Tests for pbc_analysis.stages.benchmark.national: national reference rates (hand-computed, calibrated, engine ==
pandas) and the national benchmark of every practice (a planted high referrer is flagged)."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from pbc_analysis import data as D
from pbc_analysis.core import paths
from pbc_analysis.stages.benchmark import BenchmarkError, Params
from pbc_analysis.stages.benchmark.national import (
    BENCHMARK_COLUMNS,
    RATE_COLUMNS,
    national_benchmark,
    national_observed,
    national_reference_rates,
)

SAMPLE = paths.SAMPLE_DIR


def _population(rows: dict[tuple[str, str], dict[str, int]], months: list[str]) -> pd.DataFrame:
    """Dense population: every practice x month x 38 cells, ``rows[(practice, month)][cell]`` registered (else 0)."""
    out = []
    for (p, m), cells in rows.items():
        assert m in months
        for a in D.AGE_BANDS:
            for s in D.SEXES:
                out.append({"practice_code": p, "month": m, "age_band": a, "sex": s, "registered": cells.get(f"{a}{s}", 0)})
    return pd.DataFrame(out)


def _shape(series: dict[tuple[str, str], dict[str, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"measure": m, "specialty_code": sp, "age_band": a, "sex": s, "rate": cells.get(f"{a}{s}", 0.0)}
                         for (m, sp), cells in series.items() for a in D.AGE_BANDS for s in D.SEXES])


@pytest.fixture()
def hand_dir(tmp_path):
    """2 practices, 2 age-sex cells with people (0-4 F, 0-4 M), two months; one activity row outside the window."""
    months = ["2005-04", "2005-05"]
    pop = _population({("A", m): {"0-4F": 1200} for m in months} | {("B", m): {"0-4F": 600, "0-4M": 600} for m in months},
                      months)
    pop.to_parquet(tmp_path / "population.parquet", index=False)
    pd.DataFrame({"practice_code": ["A", "A", "B"], "provider_code": "RX1", "specialty_code": "110",
                  "month": ["2005-04", "2005-05", "2005-05"], "referrals": [30, 40, 20]}).to_parquet(
        tmp_path / "referrals.parquet", index=False)
    pd.DataFrame({"practice_code": ["A", "B", "B"], "provider_code": "RX1", "specialty_code": "110", "pod": "first_op",
                  "month": ["2005-04", "2005-05", "2005-06"], "activity": [4, 6, 1000], "cost": [400.0, 600.0, 1e5]}
                 ).to_parquet(tmp_path / "activity.parquet", index=False)
    _shape({("referrals", "110"): {"0-4F": 100.0, "0-4M": 300.0}, ("first_op", "110"): {"0-4F": 50.0, "0-4M": 50.0}}
           ).to_csv(tmp_path / "reference_rates.csv", index=False)
    return tmp_path


def test_hand_computed_rates(hand_dir):
    # PY: F = (2 x 1200 + 2 x 600) / 12 = 300, M = 2 x 600 / 12 = 100 (window 2005-04..05: activity's 2005-06 is out)
    # referrals: E = (100 x 300 + 300 x 100) / 1000 = 60, O = 90 -> x 1.5; first_op: E = 50 x 400 / 1000 = 20, O = 10
    r = national_reference_rates(hand_dir)
    assert list(r.columns) == RATE_COLUMNS and len(r) == 2 * 38
    cell = r.set_index(["measure", "specialty_code", "age_band", "sex"])["rate"]
    assert cell[("referrals", "110", "0-4", "F")] == pytest.approx(150.0, rel=1e-12)
    assert cell[("referrals", "110", "0-4", "M")] == pytest.approx(450.0, rel=1e-12)
    assert cell[("first_op", "110", "0-4", "F")] == pytest.approx(25.0, rel=1e-12)
    assert cell[("first_op", "110", "5-9", "M")] == 0.0
    assert list(r["measure"].drop_duplicates()) == ["first_op", "referrals"]           # sorted series
    assert list(r["age_band"].iloc[:38:2]) == list(D.AGE_BANDS)                        # dictionary order within
    obs, py = national_observed(hand_dir)
    assert dict(zip(obs["measure"], obs["observed"])) == {"first_op": 10, "referrals": 90}
    assert py.set_index(["age_band", "sex"])["person_years"][("0-4", "F")] == 300.0
    # an explicit window takes the 2005-06 activity in only where population covers it: here it narrows to 2005-05
    obs5, _ = national_observed(hand_dir, "2005-05", "2005-05")
    assert dict(zip(obs5["measure"], obs5["observed"])) == {"first_op": 6, "referrals": 60}


def test_errors_name_the_fix(hand_dir):
    (hand_dir / "reference_rates.csv").unlink()
    with pytest.raises(BenchmarkError, match="no reference_rates table"):
        national_reference_rates(hand_dir)
    only_ref = _shape({("referrals", "110"): {"0-4F": 1.0}})
    with pytest.raises(BenchmarkError, match=r"first_op 110 \(10 events\)"):
        national_reference_rates(hand_dir, shape=only_ref)
    short = _shape({("referrals", "110"): {"0-4F": 1.0}, ("first_op", "110"): {"0-4F": 1.0}}).iloc[:-1]
    with pytest.raises(BenchmarkError, match="all 38 age-sex cells"):
        national_reference_rates(hand_dir, shape=short)
    zero = _shape({("referrals", "110"): {"0-4F": 1.0}, ("first_op", "110"): {"90+F": 1.0}})
    with pytest.raises(BenchmarkError, match="no expected events.*first_op 110"):
        national_reference_rates(hand_dir, shape=zero)


@pytest.fixture(scope="module")
def sample_rates():
    return national_reference_rates(SAMPLE)


def test_engine_equals_pandas_and_expected_equals_observed(sample_rates):
    obs, py = national_observed(SAMPLE)
    act = pd.read_parquet(SAMPLE / "activity.parquet")
    ref = pd.read_parquet(SAMPLE / "referrals.parquet")
    pop = pd.read_parquet(SAMPLE / "population.parquet")
    o_act = act.groupby(["pod", "specialty_code"], observed=True)["activity"].sum()
    o_ref = ref.groupby("specialty_code", observed=True)["referrals"].sum()
    want = pd.concat([o_act.rename_axis(["measure", "specialty_code"]),
                      pd.concat({"referrals": o_ref}, names=["measure"])]).astype("int64")
    want = want[want > 0].sort_index()
    got = obs.set_index(["measure", "specialty_code"])["observed"].sort_index()
    assert got.index.tolist() == [(str(m), str(s)) for m, s in want.index] and got.tolist() == want.tolist()
    py_want = pop.groupby(["age_band", "sex"], observed=True)["registered"].sum() / 12.0
    got_py = py.set_index(["age_band", "sex"])["person_years"]
    assert all(got_py[(a, s)] == py_want[(a, s)] for a, s in py_want.index)
    # national expected == observed, every measure and specialty (pandas, from the practices' person-years)
    e = sample_rates.merge(py, on=["age_band", "sex"]).assign(e=lambda d: d["rate"] * d["person_years"] / 1000.0)
    e = e.groupby(["measure", "specialty_code"])["e"].sum()
    assert np.allclose(e.reindex(got.index).to_numpy(), got.to_numpy(dtype=float), rtol=1e-12)


def test_byte_stable(sample_rates, tmp_path):
    again = national_reference_rates(SAMPLE)
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    sample_rates.to_csv(a, index=False, float_format="%.10g", lineterminator="\n")
    again.to_csv(b, index=False, float_format="%.10g", lineterminator="\n")
    assert a.read_bytes() == b.read_bytes()


def test_national_benchmark_flags_a_planted_high_referrer(tmp_path):
    d = tmp_path / "data"
    shutil.copytree(SAMPLE, d)
    ref = pd.read_parquet(d / "referrals.parquet")
    planted = "P89004"
    ref["referrals"] = np.where(ref["practice_code"] == planted, (ref["referrals"] * 3), ref["referrals"]).astype("int64")
    ref.to_parquet(d / "referrals.parquet", index=False)
    inputs = D.load_inputs(d, "auto", "auto")
    rates = national_reference_rates(d)
    codes = sorted(inputs.practices["practice_code"])
    comm = pd.DataFrame({"practice_code": codes, "commissioner_code": [("5A0", "5A1")[i % 2] for i in range(len(codes))],
                         "commissioner_name": "x"})
    b = national_benchmark(inputs, rates, comm, Params(standardisation="age_sex"))
    assert list(b.columns) == BENCHMARK_COLUMNS
    assert len(b) == len(codes) * 6 and not b.duplicated(["practice_code", "measure"]).any()
    assert b.equals(b.sort_values(["commissioner_code", "practice_code", "measure"], ignore_index=True))
    tot = b.groupby("measure")[["observed", "expected"]].sum()
    assert np.allclose(tot["expected"], tot["observed"], rtol=1e-9)        # calibrated on the same window
    row = b[(b["practice_code"] == planted) & (b["measure"] == "referrals")].iloc[0]
    assert row["flag"] == "high" and row["ratio"] > row["upper"] and row["commissioner_code"] == "5A0"
    others = b[(b["practice_code"] != planted) & (b["measure"] == "referrals")]
    assert (others["flag"] == "high").sum() <= 2
    assert set(b["flag"]) <= {"high", "low", "within", "not_assessed"}
    with pytest.raises(BenchmarkError, match="no commissioner"):
        national_benchmark(inputs, rates, comm.iloc[1:], Params(standardisation="age_sex"))
