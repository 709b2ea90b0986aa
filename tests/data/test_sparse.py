"""Sparse ``activity`` and ``referrals``: implicit zeros are valid (docs/data_dictionary.md).

A tiny dataset (3 practices, 2 providers, 3 months: 2005-04 to 2005-06; the hand-written tables of
``tests/fixtures/tiny``) is written with activity and referral rows only where the count is > 0. A missing
row means zero, so there is no gap rule and no rule that every practice has rows in every month; the
rules that remain (keys, references, the window, cost 0 without activity, prices, dense population) still
hold and are checked here on the sparse tables.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from pbc_analysis import data as D
from pbc_analysis.data import DataValidationError, Inputs, load_inputs

FIXTURES = Path(__file__).parents[1] / "fixtures" / "tiny"
START, END = "2005-04", "2005-06"
MONTHS = ["2005-04", "2005-05", "2005-06"]
PRACTICES = ["P81001", "P81002", "P81003"]
PRICES = {("110", "first_op"): 120.0, ("110", "elective"): 1850.0, ("180", "ae"): 85.0}
ACT_HEADER = ["practice_code", "provider_code", "specialty_code", "pod", "month", "activity", "cost"]
REF_HEADER = ["practice_code", "provider_code", "specialty_code", "month", "referrals"]
#: the sparse activity rows: (practice, provider, specialty, pod, month, activity); no row = 0.
#: P81002 has no activity at all in 2005-05, P81003 only ever attends A&E, RXN's first_op series has a gap
ACTIVITY = [("P81001", "RA7", "110", "first_op", "2005-04", 3), ("P81001", "RA7", "110", "first_op", "2005-06", 1),
            ("P81001", "RXN", "110", "elective", "2005-05", 2), ("P81001", "RA7", "180", "ae", "2005-05", 4),
            ("P81002", "RXN", "110", "first_op", "2005-04", 2), ("P81002", "RXN", "110", "first_op", "2005-06", 5),
            ("P81003", "RA7", "180", "ae", "2005-04", 1), ("P81003", "RA7", "180", "ae", "2005-06", 2)]
#: the sparse referral rows; P81003 made no GP referral in the window
REFERRALS = [("P81001", "RA7", "110", "2005-04", 2), ("P81001", "RA7", "110", "2005-06", 1),
             ("P81002", "RXN", "110", "2005-05", 3)]


def write_rows(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def act_rows(rows=ACTIVITY) -> list[list[str]]:
    return [[p, v, s, k, m, str(n), repr(n * PRICES[(s, k)])] for p, v, s, k, m, n in rows]


def ref_rows(rows=REFERRALS) -> list[list[str]]:
    return [[p, v, s, m, str(n)] for p, v, s, m, n in rows]


@pytest.fixture
def ds(tmp_path: Path) -> Path:
    """The tiny dataset with sparse activity and referrals (population dense: 38 rows per practice-month)."""
    d = tmp_path / "data"
    d.mkdir()
    for f in FIXTURES.glob("*.csv"):
        shutil.copy(f, d / f.name)
    pop = [[p, m, band, sex, str(50 + 3 * b + s)] for p in PRACTICES for m in MONTHS
           for b, band in enumerate(D.AGE_BANDS) for s, sex in enumerate(D.SEXES)]
    write_rows(d / "population.csv", ["practice_code", "month", "age_band", "sex", "registered"], pop)
    write_rows(d / "activity.csv", ACT_HEADER, act_rows())
    write_rows(d / "referrals.csv", REF_HEADER, ref_rows())
    return d


def load(d: Path) -> Inputs:
    return load_inputs(d, start_month=START, end_month=END)


def fails(d: Path) -> DataValidationError:
    with pytest.raises(DataValidationError) as info:
        load(d)
    return info.value


def test_sparse_tables_are_valid_and_read_as_they_are(ds: Path) -> None:
    """Gaps in series, a practice-month without activity rows and a practice without any referral rows are
    all valid: the rows are read as written, none added (the stages densify what they need)."""
    inputs = load(ds)
    assert len(inputs.activity) == 8 and len(inputs.referrals) == 3   # exactly the rows written
    assert inputs.activity["activity"].tolist() == [3, 1, 2, 4, 2, 5, 1, 2]
    assert inputs.activity["cost"].tolist() == [360.0, 120.0, 3700.0, 340.0, 240.0, 600.0, 85.0, 170.0]  # n x price
    assert "P81003" not in set(inputs.referrals["practice_code"].astype(str))


def test_explicit_zero_rows_are_still_allowed(ds: Path) -> None:
    rows = ACTIVITY + [("P81002", "RXN", "110", "first_op", "2005-05", 0)]   # the gap filled with an explicit 0
    write_rows(ds / "activity.csv", ACT_HEADER, act_rows(rows))
    write_rows(ds / "referrals.csv", REF_HEADER, ref_rows(REFERRALS + [("P81003", "RA7", "110", "2005-05", 0)]))
    inputs = load(ds)
    assert len(inputs.activity) == 9 and inputs.activity["activity"].iloc[-1] == 0 and inputs.activity["cost"].iloc[-1] == 0
    assert len(inputs.referrals) == 4


def test_the_rules_that_remain_hold_on_sparse_tables(ds: Path) -> None:
    """Keys, references, the window and cost-without-activity are still errors, all reported at once."""
    rows = act_rows()
    rows.append(list(rows[0]))                                         # row 9: duplicate key of row 1
    rows.append(["P89999", "RA7", "110", "first_op", "2005-05", "1", "120.0"])   # row 10: unknown practice
    rows.append(["P81003", "RA7", "110", "first_op", "2005-07", "1", "120.0"])   # row 11: outside the window
    rows.append(["P81003", "RXN", "110", "first_op", "2005-05", "0", "50.0"])    # row 12: cost without activity
    write_rows(ds / "activity.csv", ACT_HEADER, rows)
    err = fails(ds)
    by_check = {p.check: p for p in err.problems if p.table == "activity"}
    assert set(by_check) == {"duplicate_key", "unknown_code", "outside_window", "cost_without_activity"}
    assert by_check["duplicate_key"].rows == [1, 9]
    assert by_check["unknown_code"].rows == [10] and by_check["unknown_code"].values == ["P89999"]
    assert by_check["outside_window"].rows == [11]
    assert by_check["cost_without_activity"].rows == [12]
    assert not [p for p in err.problems if p.check in ("series_gap", "practice_month_missing")]


def test_missing_price_still_judged_on_sparse_rows(ds: Path) -> None:
    rows = act_rows() + [["P81003", "RXN", "110", "followup_op", "2005-05", "2", "180.0"]]   # no followup_op price
    write_rows(ds / "activity.csv", ACT_HEADER, rows)
    (p,) = [p for p in fails(ds).problems if p.check == "missing_price"]
    assert p.rows == [9] and p.values == [("110", "followup_op", "2005/06")]


def test_population_stays_dense(ds: Path) -> None:
    """A practice-month without population rows is still an error: population is not sparse."""
    path = ds / "population.csv"
    with open(path, newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    write_rows(path, header, [r for r in rows if not (r[0] == "P81002" and r[1] == "2005-05")])
    (p,) = [p for p in fails(ds).problems if p.check == "population_missing"]
    assert p.values == [("P81002", "2005-05")]
