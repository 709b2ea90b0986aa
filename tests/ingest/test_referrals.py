"""Referrals on the hand-made fixture: an e-RS-style extract, or derived from GP-referred first attendances."""

from __future__ import annotations

from pathlib import Path

from pbc_analysis.ingest import hospital, reconcile, referrals
from pbc_analysis.ingest.columnmap import load_map
from pbc_analysis.ingest.sources import read_source, source_problems

FIX = Path(__file__).parent / "fixtures" / "events"
KEY = ["practice_code", "provider_code", "specialty_code", "month"]


def _result(con, name, grouped):
    recon = reconcile.table(reconcile.from_groups(con, name, grouped))
    reconcile.check(recon)
    rows = con.to_pyarrow(referrals.referral_rows(grouped).order_by(KEY)).to_pylist()
    return recon, [tuple(r.values()) for r in rows]


def test_referrals_from_an_extract(con, rules):
    src = read_source(con, "referrals", FIX / "referrals.csv", load_map("ers"))
    assert source_problems(con, src) == []
    grouped = referrals.group_referrals(con, referrals.classify_extract(src.table, rules), "g_ers")
    recon, rows = _result(con, "referrals", grouped)
    ex = recon[recon.outcome == "excluded"]
    assert dict(zip(ex.reason, ex.rows)) == {"duplicate_event_id": 2, "outside_window": 3, "pseudo_practice": 1,
                                             "unknown_practice": 2}
    # 30 + 9 included of 47 read (30 + 2 duplicates + 9 + 3 + 1 + 2); P81003's 9 count under P81002
    assert recon[recon.outcome == "read"].rows.iloc[0] == 47
    agg = recon[recon.outcome == "aggregated"].iloc[0]
    assert (agg.rows, agg.merged_rows, agg.cost) == (39, 9, 0.0)
    assert rows == [("P81001", "RA7", "110", "2005-06", 30), ("P81002", "RBA", "100", "2005-10", 9)]


def test_referrals_derived_from_first_attendances(con, rules):
    src = read_source(con, "outpatients", FIX / "outpatients.csv", load_map("hes_opa"))
    g = hospital.group_events(con, hospital.classify("outpatients", src.table, rules), "g_op_ref")
    grouped = referrals.group_referrals(con, referrals.derive(g, rules), "g_derived")
    recon, rows = _result(con, referrals.DERIVED, grouped)
    # candidates: included, first attendance, GP source: A 40 + D 12 + E 8 + F 5 = 65 (B is a follow-up, C not from a GP)
    assert recon[recon.outcome == "read"].rows.iloc[0] == 65
    ex = recon[recon.outcome == "excluded"]
    assert dict(zip(ex.reason, ex.rows)) == {"referral_date_missing": 5, "outside_window": 8}   # F; E (received 2005-02)
    assert rows == [("P81001", "RA7", "110", "2005-04", 40),    # A: received 2005-04-15
                    ("P81002", "RA7", "110", "2005-07", 12)]    # D: P81003 merged, received 2005-07-20
