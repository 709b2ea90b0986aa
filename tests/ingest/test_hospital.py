"""Hospital event rules on the hand-made fixture (tests/ingest/fixtures/events, written by make_fixture.py, whose
blocks are quoted below): every exclusion reason with its count and cost, the activity rows and the pricing."""

from __future__ import annotations

from pathlib import Path

import ibis
import pyarrow as pa

from pbc_analysis.ingest import engine, hospital, reconcile
from pbc_analysis.ingest.columnmap import load_map
from pbc_analysis.ingest.sources import read_source, source_problems

FIX = Path(__file__).parent / "fixtures" / "events"
MAPS = {"outpatients": "hes_opa", "admitted": "hes_apc", "ae": "ecds", "referrals": "ers"}
PRICES = pa.table({"pod": ["first_op", "followup_op", "first_op", "followup_op", "elective", "non_elective", "non_elective",
                           "ae", "ae"],
                   "code": ["110", "110", "100", "100", "HA01", "HA01", "HA02", "VB01Z", "VB02Z"],
                   "financial_year": ["2005/06"] * 9,
                   "price": [150.0, 80.0, 140.0, 70.0, 2000.0, 2500.0, 3100.0, 100.0, 150.0]})
KEY = ["practice_code", "provider_code", "specialty_code", "pod", "month"]


def run_source(con, rules, kind):
    src = read_source(con, kind, FIX / f"{kind}.csv", load_map(MAPS[kind]))
    assert source_problems(con, src) == []
    grouped = hospital.group_events(con, hospital.classify(kind, src.table, rules), f"g_{kind}")
    lookup = engine.materialise(con, ibis.memtable(PRICES), "lookup")
    pg = engine.materialise(con, hospital.priced(grouped, lookup), f"p_{kind}")
    recon = reconcile.table(reconcile.from_groups(con, kind, grouped, pg))
    activity = con.to_pyarrow(hospital.activity_rows(pg).order_by(KEY)).to_pylist()
    return recon, activity, pg


def excluded(recon):
    ex = recon[recon.outcome == "excluded"]
    return {r: (n, c) for r, n, c in zip(ex.reason, ex.rows, ex.cost)}


def test_outpatient_rules(con, rules):
    recon, activity, _ = run_source(con, rules, "outpatients")
    assert excluded(recon) == {
        "duplicate_event_id": (6, 900.0),            # G: 6 repeats of block A's ids x 150
        "outside_window": (10, 1290.0),              # H: 7 x 150 (2005-03) + 3 x 80 (2006-04, also DNAs: the window comes first)
        "not_attended": (15, 220.0),                 # I: 9 x 20 + 4 x missing (0); Q: 2 x 20 (pseudo V81998, DNA comes first)
        "first_attendance_excluded": (3, 150.0),     # J: 3 x 50
        "practice_code_missing": (4, 600.0),         # K: 4 x 150
        "pseudo_practice": (5, 750.0),               # L: 5 x 150
        "unknown_practice": (2, 160.0),              # M: 2 x 80
        "other_commissioner": (6, 900.0),            # N: 6 x 150
        "not_gp_practice": (3, 240.0),               # O: 3 x 80
        "not_open_throughout_window": (2, 300.0),    # P: 2 x 150
    }
    agg = recon[recon.outcome == "aggregated"].iloc[0]
    # A 40 + B 30 + C 10 + D 12 + E 8 + F 5 = 105; cost 40x150 + 30x80 + 12x150 + 8x150 + 5x150 = 12150 (C priced: 10 x 140)
    assert (agg.rows, agg.cost, agg.priced_rows, agg.priced_cost, agg.merged_rows) == (105, 12150.0, 10, 1400.0, 12)
    read = recon[recon.outcome == "read"].iloc[0]
    assert (read.rows, read.cost) == (161, 17660.0)   # 105 + 56 excluded; 12150 + 5510
    assert [tuple(r.values()) for r in activity] == [
        ("P81001", "RA7", "110", "first_op", "2005-04", 8, 1200.0),      # E
        ("P81001", "RA7", "110", "first_op", "2005-05", 40, 6000.0),     # A (its 6 duplicates not counted)
        ("P81001", "RA7", "110", "first_op", "2005-09", 5, 750.0),       # F
        ("P81001", "RA7", "110", "followup_op", "2005-06", 30, 2400.0),  # B (FIRSTATT 2, ATTENDED 6)
        ("P81002", "RA7", "110", "first_op", "2005-08", 12, 1800.0),     # D: P81003 merged into P81002
        ("P81002", "RBA", "100", "first_op", "2005-07", 10, 1400.0),     # C: FIRSTATT 3, cost priced 10 x 140
    ]


def test_admitted_rules_count_spells_on_their_first_episode(con, rules):
    recon, activity, _ = run_source(con, rules, "admitted")
    assert excluded(recon) == {
        "duplicate_event_id": (3, 0.0),             # d: 3 repeats of block b's episodes (cost missing)
        "later_episode": (20, 10000.0),             # a: the 2nd episode of 20 spells x 500
        "unfinished_spell": (4, 4000.0),            # e: 4 x 1000, no discharge date
        "outside_window": (5, 10000.0),             # f: discharged 2005-03, 5 x 2000
        "admission_method_excluded": (3, 4500.0),   # g: ADMIMETH 31, 3 x 1500
        "pseudo_practice": (2, 4000.0),             # h: V81997, 2 x 2000
        "unknown_practice": (1, 2000.0),            # i: P89999
    }
    agg = recon[recon.outcome == "aggregated"].iloc[0]
    # a 20 + b 10 + c 6 = 36 spells; cost 20 x 2000 + 6 x 3100 = 58600; b priced 10 x 2500 (HA01 non-elective)
    assert (agg.rows, agg.cost, agg.priced_rows, agg.priced_cost) == (36, 58600.0, 10, 25000.0)
    assert recon[recon.outcome == "read"].rows.iloc[0] == 74   # 40 + 10 + 6 + 3 + 4 + 5 + 3 + 2 + 1 rows
    assert [tuple(r.values()) for r in activity] == [
        ("P81001", "RA7", "100", "elective", "2005-05", 20, 40000.0),       # a: the first episode's specialty 100
        ("P81001", "RA7", "100", "non_elective", "2006-01", 6, 18600.0),    # c: ADMIMETH 2A
        ("P81002", "RBA", "110", "non_elective", "2005-11", 10, 25000.0),   # b: ADMIMETH 21, priced
    ]


def test_ae_rules_and_type_1(con, rules):
    recon, activity, pg = run_source(con, rules, "ae")
    assert excluded(recon) == {"duplicate_event_id": (2, 200.0), "outside_window": (3, 300.0),
                               "practice_code_missing": (2, 200.0), "not_open_throughout_window": (1, 100.0)}
    agg = recon[recon.outcome == "aggregated"].iloc[0]
    # 25 x 100 + 15 priced x 150 + 4 (merged P81003) x 150
    assert (agg.rows, agg.cost, agg.priced_rows, agg.priced_cost, agg.merged_rows) == (44, 3100.0, 15, 2250.0, 4)
    assert [tuple(r.values()) for r in activity] == [
        ("P81001", "RA7", "180", "ae", "2005-12", 25, 2500.0),
        ("P81002", "RBA", "180", "ae", "2006-02", 15, 2250.0),
        ("P81002", "RBA", "180", "ae", "2006-03", 4, 600.0),
    ]
    t1 = con.to_pyarrow(pg.group_by("provider_code").aggregate(t1=pg.type_1.any()).order_by("provider_code")).to_pylist()
    assert t1 == [{"provider_code": "RA7", "t1": True}, {"provider_code": "RBA", "t1": False}]


def test_weights_and_unpriced(con, rules):
    _, _, pg = run_source(con, rules, "ae")
    w = con.to_pyarrow(hospital.weights(pg, "2005/06").order_by("code")).to_pylist()
    assert w == [{"specialty_code": "180", "pod": "ae", "code": "VB01Z", "n": 25},
                 {"specialty_code": "180", "pod": "ae", "code": "VB02Z", "n": 19}]   # 15 + 4
    lookup = engine.materialise(con, ibis.memtable(PRICES.slice(0, 8)), "lookup_short")   # no VB02Z price
    src = read_source(con, "ae", FIX / "ae.csv", load_map("ecds"))
    g = hospital.group_events(con, hospital.classify("ae", src.table, rules), "g_ae2")
    missing = con.to_pyarrow(hospital.unpriced(hospital.priced(g, lookup))).to_pylist()
    assert missing == [{"pod": "ae", "code": "VB02Z", "financial_year": "2005/06", "rows": 15}]


def test_financial_year_and_duplicates(con):
    t = ibis.memtable(pa.table({"month": ["2005-03", "2005-04", "2006-03", "2009-12"]}))
    assert con.to_pyarrow(t.select(fy=hospital.financial_year(t.month))).column(0).to_pylist() == \
        ["2004/05", "2005/06", "2005/06", "2009/10"]
    e = ibis.memtable(pa.table({"event_id": ["a", "b", "a", "a"], "_row": [3, 1, 2, 4]}))
    d = con.to_pyarrow(hospital.with_duplicates(e).order_by("_row")).to_pylist()
    assert [(r["_row"], r["_dup"]) for r in d] == [(1, False), (2, False), (3, True), (4, True)]   # kept: the lowest _row
