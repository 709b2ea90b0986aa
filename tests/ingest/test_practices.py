"""Tests of pbc_analysis.ingest.practices: the practice reference, attributes and succession -> practices and
the status of every practice code, on the hand-made fixture ``tests/ingest/fixtures/reference``.

Fixture (window 2005-04 .. 2006-03, commissioner 5NT), by hand:
- P81001 open 1990, 5NT, setting 4 -> included; P81009 opened 2005-04-01 = the window's first day -> included;
- P81003 opened 2005-10-01 at the merger of P81002 (open 1995) and, through P81002, P81004 (open 1980): it counts
  from 1980 -> included; chain P81004 -> P81002 -> P81003 maps both to P81003 (merged);
- P81010 (not in the reference) -> P81001: merged into P81001; Q82003 -> Q82001 (other commissioner): other_commissioner;
- P81005 setting 1 -> not_gp_practice; P81006 closed 2005-06-30, P81007 opened 2005-05-01 and P81008 closed
  2006-03-31 (the last day, not after it) -> not_open_throughout_window; Q82001, Q82002 (5QV) -> other_commissioner
  (the first reason that applies, although Q82002 is also not a GP practice).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import ibis
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from pbc_analysis.ingest import practices as PR

FIX = Path(__file__).parent / "fixtures" / "reference"
WINDOW = ("2005-04", "2006-03")
DATES = ("open_date", "close_date", "effective_date")


def load(name: str, **replace) -> ibis.Table:
    """A fixture CSV as an ibis table with canonical types (codes text, dates date, imd float) and ``_row``."""
    t = pacsv.read_csv(FIX / f"{name}.csv", convert_options=pacsv.ConvertOptions(strings_can_be_null=True,
                                                                               column_types={"imd_score": pa.float64()}))
    cols = {c: (t.column(c).cast(pa.date32()) if c in DATES else
                t.column(c) if c == "imd_score" else t.column(c).cast(pa.string())) for c in t.column_names}
    cols.update(replace)
    cols["_row"] = pa.array(range(1, t.num_rows + 1), pa.int64())
    return ibis.memtable(pa.table(cols))


@pytest.fixture(scope="module")
def con():
    return ibis.duckdb.connect()


@pytest.fixture(scope="module")
def result(con):
    return PR.practice_reference(con, load("practice_reference"), load("practice_attributes"), load("succession"),
                                 commissioners=["5NT"], window=WINDOW)


def test_practices_table_by_hand(result):
    assert result.problems == []
    expected = pa.table({
        "practice_code": ["P81001", "P81003", "P81009"],
        "practice_name": ["Alpha Surgery", "Gamma Group Practice", "Iota Health Centre"],
        "consortium": ["North Locality", "South Locality", "North Locality"],
        "imd_score": [21.5, 34.25, 8.75],
        "single_handed": [False, False, True],      # "false", "False", "TRUE": any letter case
    })
    assert result.practices.equals(expected)


def test_status_of_every_code_by_hand(result):
    got = result.codes.order_by("code").to_pyarrow()
    expected = [
        ("P81001", "P81001", "included"),
        ("P81002", "P81003", "merged"),                 # P81002 -> P81003
        ("P81003", "P81003", "included"),               # opened at the merger, counts from P81004's 1980
        ("P81004", "P81003", "merged"),                 # P81004 -> P81002 -> P81003: the final successor
        ("P81005", None, "not_gp_practice"),
        ("P81006", None, "not_open_throughout_window"),  # closed 2005-06-30
        ("P81007", None, "not_open_throughout_window"),  # opened 2005-05-01
        ("P81008", None, "not_open_throughout_window"),  # closed on 2006-03-31, not after it
        ("P81009", "P81009", "included"),               # opened on the first day
        ("P81010", "P81001", "merged"),                 # known only from the succession table
        ("Q82001", None, "other_commissioner"),
        ("Q82002", None, "other_commissioner"),          # first reason wins over not_gp_practice
        ("Q82003", None, "other_commissioner"),          # merged into an excluded practice: its status
    ]
    assert list(zip(*(got.column(c).to_pylist() for c in ("code", "practice_code", "status")))) == expected
    assert got.schema.types == [pa.string()] * 3


def test_every_commissioner_when_none(con):
    r = PR.practice_reference(con, load("practice_reference"), load("practice_attributes"), load("succession"),
                              commissioners=None, window=WINDOW)
    status = dict(zip(r.status.column("code").to_pylist(), r.status.column("status").to_pylist()))
    assert status["Q82001"] == "included" and status["Q82002"] == "not_gp_practice" and status["Q82003"] == "merged"
    # Q82001 has no attributes in the fixture: a problem naming it, and it is not in practices
    assert [p.check for p in r.problems] == ["attributes_known"]
    assert r.problems[0].values == ["Q82001"]
    assert r.practices.column("practice_code").to_pylist() == ["P81001", "P81003", "P81009"]
    with pytest.raises(ValueError, match="empty list"):
        PR.practice_reference(con, load("practice_reference"), load("practice_attributes"), None, commissioners=[],
                              window=WINDOW)


def test_without_succession_predecessors_stand_alone(con):
    r = PR.practice_reference(con, load("practice_reference"), load("practice_attributes"), None,
                              commissioners=["5NT"], window=WINDOW)
    status = dict(zip(r.status.column("code").to_pylist(), r.status.column("status").to_pylist()))
    # P81003 opened 2005-10-01 with no predecessor: not open throughout; P81002 closed 2005-09-30: the same
    assert status["P81003"] == status["P81002"] == status["P81004"] == "not_open_throughout_window"
    assert "P81010" not in status
    assert r.practices.column("practice_code").to_pylist() == ["P81001", "P81009"]


def test_follow_succession_chains_and_cycles():
    final, cycles = PR.follow_succession({"A": "B", "B": "C", "X": "Y", "Y": "Z", "Z": "X", "W": "X"})
    assert final == {"A": "C", "B": "C"}      # A -> B -> C: both to C
    assert cycles == [["X", "Y", "Z"]]         # X -> Y -> Z -> X refused (W leads into it: no successor)


def test_cycle_is_a_problem(con):
    succ = pa.table({"old_code": ["P81001", "P81009"], "new_code": ["P81009", "P81001"],
                     "effective_date": pa.array([dt.date(2005, 1, 1)] * 2, pa.date32()), "_row": [1, 2]})
    r = PR.practice_reference(con, load("practice_reference"), load("practice_attributes"), ibis.memtable(succ),
                              commissioners=["5NT"], window=WINDOW)
    cyc = [p for p in r.problems if p.check == "succession_cycle"]
    assert len(cyc) == 1 and cyc[0].values == ["P81001 -> P81009 -> P81001"]
    assert "cycle" in str(cyc[0]) and cyc[0].table == "succession"


def test_reference_and_attribute_problems_all_at_once(con):
    ref = load("practice_reference", practice_code=pa.array(["P81001", "P81001", "P81003", "P81004", "P81005", "P81006",
                                                             "P81007", "P81008", "P81009", "Q82001", "Q82002"]))
    att = load("practice_attributes", single_handed=pa.array(["no", "false", "false", "true"]))
    succ = pa.table({"old_code": ["P81003", "P81003", "P81004"], "new_code": ["P81001", "P81009", "P89999"],
                     "effective_date": pa.array([dt.date(2005, 1, 1)] * 3, pa.date32()), "_row": [1, 2, 3]})
    r = PR.practice_reference(con, ref, att, ibis.memtable(succ), commissioners=["5NT"], window=WINDOW,
                              files={"practice_reference": "epraccur.csv", "practice_attributes": "attrs.csv"})
    by = {p.check: p for p in r.problems}
    assert set(by) == {"unique", "succession_split", "successor_known", "attribute_value"}
    assert by["unique"].rows == [2] and by["unique"].values == ["P81001"] and by["unique"].file == "epraccur.csv"
    assert by["succession_split"].rows == [2] and by["succession_split"].values == ["P81003"]
    assert by["successor_known"].values == ["P89999"]
    assert by["attribute_value"].column == "single_handed" and by["attribute_value"].values == ["no"]
    assert by["attribute_value"].rows == [1] and by["attribute_value"].file == "attrs.csv"


def test_window_days():
    assert PR.window_days(("2005-04", "2006-02")) == (dt.date(2005, 4, 1), dt.date(2006, 2, 28))
    with pytest.raises(ValueError):
        PR.window_days(("2006-04", "2005-04"))
