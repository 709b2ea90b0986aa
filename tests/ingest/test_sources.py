"""Reading extracts: CSV all as text (leading zeros kept), Parquet typed (integer codes zero-padded), ``_row`` the
1-based data row, coded fields as categories; every problem of a file listed at once with rows and values."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pbc_analysis.ingest import engine
from pbc_analysis.ingest.columnmap import load_map
from pbc_analysis.ingest.sources import read_source, source_problems

HEADER = "ATTENDKEY,GPPRAC,PROCODE3,TRETSPEF,FIRSTATT,ATTENDED,REFSOURC,APPTDATE,REQDATE,COST\n"


@pytest.fixture()
def con(tmp_path):
    c = engine.connect(engine.EngineSettings(memory_limit="1GB", threads=1), tmp_path)
    yield c
    c.disconnect()


def _read(con, path, kind="outpatients", name="hes_opa"):
    src = read_source(con, kind, path, load_map(name))
    return src, source_problems(con, src)


def test_csv_keeps_leading_zeros_and_maps_codes(con, tmp_path):
    f = tmp_path / "op.csv"
    f.write_text(HEADER + "0001, P81001 ,RA7,110,1,5,03,2005-04-02,2005-03-01,100.5\n"
                          "0002,,RA7,010,4,2,01,2005-04-03,,\n")
    src, problems = _read(con, f)
    assert problems == []
    rows = con.to_pyarrow(src.table.order_by("_row")).to_pylist()
    assert [r["_row"] for r in rows] == [1, 2]
    assert rows[0]["event_id"] == "0001" and rows[0]["practice_code"] == "P81001"   # stripped
    assert rows[1]["specialty_code"] == "010" and rows[1]["practice_code"] is None   # zero kept; empty = missing
    assert (rows[0]["first_attendance"], rows[0]["attended"], rows[0]["referral_source"]) == ("first", "seen", "gp")
    assert (rows[1]["first_attendance"], rows[1]["attended"], rows[1]["referral_source"]) == ("followup", "not_seen", "other")
    assert rows[0]["appointment_date"] == dt.date(2005, 4, 2) and rows[1]["referral_received_date"] is None
    assert rows[0]["cost"] == 100.5 and rows[1]["cost"] is None
    assert rows[0]["hrg"] is None and rows[0]["patient_id"] is None      # optional fields absent from the file


def test_parquet_integer_codes_are_padded(con, tmp_path):
    f = tmp_path / "op.parquet"
    pq.write_table(pa.table({
        "ATTENDKEY": [17, 18], "GPPRAC": ["P81001", "P81002"], "PROCODE3": ["RA7", "RA7"], "TRETSPEF": [110, 10],
        "FIRSTATT": [1, 2], "ATTENDED": [5, 6], "REFSOURC": pa.array([3, 1], pa.int8()),
        "APPTDATE": pa.array([dt.date(2005, 4, 2), dt.date(2005, 5, 1)]),
        "REQDATE": pa.array([dt.datetime(2005, 3, 1, 12), None], pa.timestamp("us")), "COST": [100, 20]}), f)
    src, problems = _read(con, f)
    assert problems == []
    rows = con.to_pyarrow(src.table.order_by("_row")).to_pylist()
    assert [r["specialty_code"] for r in rows] == ["110", "010"]
    assert [r["referral_source"] for r in rows] == ["gp", "other"]     # 3 -> "03" (pad 2) -> gp
    assert [r["event_id"] for r in rows] == ["17", "18"] and [r["_row"] for r in rows] == [1, 2]
    assert rows[0]["referral_received_date"] == dt.date(2005, 3, 1) and [r["cost"] for r in rows] == [100.0, 20.0]


def test_every_problem_of_a_file_at_once(con, tmp_path):
    f = tmp_path / "op.csv"
    f.write_text(HEADER + "1,P81001,RA7,110,1,5,03,2005-04-02,,1\n"        # row 1 fine
                          "2,P81001,,110,7,5,03,2005-13-02,,x\n"          # row 2: no provider, FIRSTATT 7, bad date, bad cost
                          "3,P81001,RA7,110,7,8,03,02/04/2005,,\n"        # row 3: FIRSTATT 7, ATTENDED 8, bad date
                          "4,P81001,RA7,110,9,5,03,2005-04-02,,\n")       # row 4: FIRSTATT 9
    src, problems = _read(con, f)
    got = {(p.column, p.check): (p.n_rows, p.rows, p.values) for p in problems}
    assert got == {
        ("PROCODE3", "missing_value"): (1, [2], []),
        ("FIRSTATT", "unknown_code"): (3, [2, 3, 4], ["7", "9"]),     # '7' twice, then '9' (by count)
        ("ATTENDED", "unknown_code"): (1, [3], ["8"]),
        ("APPTDATE", "unparseable"): (2, [2, 3], ["02/04/2005", "2005-13-02"]),
        ("COST", "unparseable"): (1, [2], ["x"]),
    }
    assert all(p.file == str(f) and p.table == "outpatients" and p.fix for p in problems)
    first = next(p for p in problems if p.check == "unknown_code" and p.column == "FIRSTATT")
    assert "'7' (2 rows), '9' (1 row)" in first.message and "add them to the column map's code lists" in first.fix


def test_missing_columns_and_unreadable_files(con, tmp_path):
    f = tmp_path / "op.csv"
    f.write_text("ATTENDKEY,GPPRAC,PROCODE\n1,P81001,RA7\n")
    src, problems = _read(con, f)
    assert src.table is None and len(problems) == 1 and problems[0].check == "missing_column"
    assert "provider_code ('PROCODE3' (did you mean 'PROCODE'?))" in problems[0].message
    assert "appointment_date ('APPTDATE')" in problems[0].message
    p = tmp_path / "op.parquet"
    p.write_text("not parquet")
    src, problems = _read(con, p)
    assert [q.check for q in problems] == ["unreadable_file"]


def test_wrongly_typed_parquet_column(con, tmp_path):
    f = tmp_path / "ers.parquet"
    pq.write_table(pa.table({"UBRN": ["1"], "REFERRER_ORG": ["P81001"], "PROVIDER_ORG": ["RA7"], "TFC": [110.0],
                             "REFERRAL_DATE": [20050401]}), f)
    src, problems = _read(con, f, "referrals", "ers")
    assert [p.check for p in problems] == ["column_type"]
    assert "TFC (specialty_code: code) is float64" in problems[0].message
    assert "REFERRAL_DATE (referral_date: date) is int64" in problems[0].message


def test_file_without_header_by_position(con, tmp_path):
    m = tmp_path / "ers_pos.yaml"
    m.write_text("source: referrals\nheader: false\ncolumns: {event_id: 1, practice_code: 2, provider_code: 3, "
                 "specialty_code: 4, referral_date: 6}\ndate_format: {referral_date: \"%Y%m%d\"}\n")
    f = tmp_path / "ers.csv"
    f.write_text("U1,P81001,RA7,110,ignored,20050401\nU2,P81002,RBA,100,ignored,20050502\n")
    src = read_source(con, "referrals", f, load_map(str(m)))
    assert source_problems(con, src) == []
    rows = con.to_pyarrow(src.table.order_by("_row")).to_pylist()
    assert [(r["_row"], r["event_id"], r["referral_date"]) for r in rows] == [(1, "U1", dt.date(2005, 4, 1)),
                                                                             (2, "U2", dt.date(2005, 5, 2))]
