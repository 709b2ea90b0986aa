"""Tests of pbc_analysis.ingest.registrations: registration snapshots -> the dense population table.

Fixture ``tests/ingest/fixtures/reference/registrations.csv`` (canonical fields), window 2005-04 .. 2005-09,
snapshots 2005-01-01, 2005-04-01, 2005-07-01, 2005-10-01 (Apr 1 -> Jul 1 = 91 days, Jul 1 -> Oct 1 = 92 days).
Codes: P81001 and P81003 included, P81002 merged into P81003 (its history before P81003 opened),
P81010 merged into P81001, Q82001 other commissioner, P81005 not a GP practice; V81999 pseudo; X99999 unknown.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import ibis
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from pbc_analysis.data.schema import AGE_BANDS, SEXES, TABLES
from pbc_analysis.ingest import registrations as RG

FIX = Path(__file__).parent / "fixtures" / "reference"
WINDOW = ("2005-04", "2005-09")
MONTHS = ["2005-04", "2005-05", "2005-06", "2005-07", "2005-08", "2005-09"]
CODES = [("P81001", "P81001", "included"), ("P81002", "P81003", "merged"), ("P81003", "P81003", "included"),
         ("P81010", "P81001", "merged"), ("Q82001", None, "other_commissioner"), ("P81005", None, "not_gp_practice")]


def codes_table(rows=CODES) -> ibis.Table:
    code, practice, status = zip(*rows)
    return ibis.memtable(pa.table({"code": list(code), "practice_code": pa.array(practice, pa.string()),
                                   "status": list(status)}))


def regs(path: Path | None = None, table: pa.Table | None = None) -> ibis.Table:
    """Registration rows as an ibis table with canonical types and ``_row``."""
    if table is None:
        table = pacsv.read_csv(path or FIX / "registrations.csv", convert_options=pacsv.ConvertOptions(
            strings_can_be_null=True, column_types={"practice_code": pa.string(), "patients": pa.int64()}))
    cols = {c: table.column(c) for c in table.column_names}
    cols["extract_date"] = cols["extract_date"].cast(pa.date32())
    cols["_row"] = pa.array(range(1, table.num_rows + 1), pa.int64())
    return ibis.memtable(pa.table(cols))


def rows_of(d: dict) -> pa.Table:
    """``{(practice, month, band, sex): n}`` as registration rows, one snapshot per month dated the 1st."""
    keys = list(d)
    return pa.table({"extract_date": [dt.date(int(k[1][:4]), int(k[1][5:]), 1) for k in keys],
                     "practice_code": [k[0] for k in keys], "sex": [k[3] for k in keys], "age_group": [k[2] for k in keys],
                     "patients": pa.array([d[k] for k in keys], pa.int64())})


@pytest.fixture(scope="module")
def con():
    return ibis.duckdb.connect()


@pytest.fixture(scope="module")
def result(con):
    return RG.population(regs(), codes_table(), window=WINDOW, pseudo_practices=["V81997", "V81998", "V81999"],
                         files={"registrations": "gp-reg.csv"})


def test_population_by_hand(result):
    assert result.problems == []
    t = result.table
    assert t.num_rows == 2 * 6 * 19 * 2            # every included practice x month x band x sex
    assert t.schema.names == TABLES["population"].column_names
    assert t.schema.types == [pa.string()] * 4 + [pa.int64()]
    got = {(r["practice_code"], r["month"], r["age_band"], r["sex"]): r["registered"] for r in t.to_pylist() if r["registered"]}
    expected = {}
    # P81001 F 0-4: own rows 100, 100, 100 plus merged P81010's 9 on Jul 1 -> snapshots 100 (Apr), 109 (Jul), 100 (Oct)
    f04 = [100,
           103,     # May 1: 100 + 9*30/91 = 102.967 -> 103
           106,     # Jun 1: 100 + 9*61/91 = 106.033 -> 106
           109,     # Jul 1: the snapshot
           106,     # Aug 1: 109 - 9*31/92 = 105.967 -> 106
           103]     # Sep 1: 109 - 9*62/92 = 102.935 -> 103
    # P81003 F 30-34: P81002's 200 (Apr), 230 (Jul), P81003's own 260 (Oct)
    f3034 = [200,
             210,   # 200 + 30*30/91 = 209.890 -> 210
             220,   # 200 + 30*61/91 = 220.110 -> 220
             230,
             240,   # 230 + 30*31/92 = 240.109 -> 240
             250]   # 230 + 30*62/92 = 250.217 -> 250
    for m, a, b in zip(MONTHS, f04, f3034):
        expected[("P81001", m, "0-4", "F")] = a
        expected[("P81001", m, "85-89", "M")] = 40       # 40 in every snapshot
        expected[("P81001", m, "90+", "M")] = 8          # Apr: 90_94 5 + 95+ 3 = 8; Jul, Oct: 8
        expected[("P81003", m, "30-34", "F")] = b
    assert got == expected


def test_sorted_in_data_dictionary_order(result):
    t = result.table
    first = t.slice(0, 38)
    assert first.column("age_band").to_pylist() == [b for b in AGE_BANDS for _ in SEXES]
    assert first.column("sex").to_pylist() == list(SEXES) * 19
    assert t.column("practice_code").to_pylist() == ["P81001"] * 228 + ["P81003"] * 228
    assert t.column("month").to_pylist()[:76:38] == ["2005-04", "2005-05"]


def test_reconciliation_counts_by_hand(result):
    # 26 rows: 14 aggregated (rows 3-6, 10, 16-20, 23-26); total_row 6 (rows 2, 7, 8, 9, 11, 22);
    # outside_window 1 (row 1, the 2005-01-01 snapshot: Apr 1 has its own snapshot, Jan 1 is not needed);
    # one each: other_commissioner (12), pseudo_practice (13), unknown_practice (14), practice_code_missing (15),
    # not_gp_practice (21). Merged rows (information): 10, 19, 20.
    assert result.read == 26 and result.aggregated == 14
    assert result.excluded == {"not_gp_practice": 1, "other_commissioner": 1, "outside_window": 1,
                               "practice_code_missing": 1, "pseudo_practice": 1, "total_row": 6, "unknown_practice": 1}
    assert result.read == result.aggregated + sum(result.excluded.values())
    assert result.merged == 3


def test_monthly_snapshots_on_the_first_reproduce_exactly(con):
    rng = np.random.default_rng(14)
    months = ["2005-01", "2005-02", "2005-03", "2005-04"]
    d = {(p, m, b, s): int(rng.integers(0, 500)) for p in ("P81001", "P81003") for m in months for b in AGE_BANDS
         for s in SEXES}
    r = RG.population(regs(table=rows_of(d)), codes_table(), window=("2005-01", "2005-04"))
    assert r.problems == []
    got = {(x["practice_code"], x["month"], x["age_band"], x["sex"]): x["registered"] for x in r.table.to_pylist()}
    assert got == d


def test_rounding_half_up(con):
    # snapshots 2005-03-15 and 2005-04-14 (span 30 days); Apr 1 is k = 17 days after the first:
    # rising 10 -> 25: 10 + 15*17/30 = 18.5 -> 19 (half up); falling 25 -> 10: 25 - 8.5 = 16.5 -> 17
    t = pa.table({"extract_date": [dt.date(2005, 3, 15), dt.date(2005, 4, 14)] * 2,
                  "practice_code": ["P81001"] * 4, "sex": ["F", "F", "M", "M"], "age_group": ["0-4"] * 4,
                  "patients": pa.array([10, 25, 25, 10], pa.int64())})
    r = RG.population(regs(table=t), codes_table(CODES[:1]), window=("2005-04", "2005-04"))
    got = {(x["age_band"], x["sex"]): x["registered"] for x in r.table.to_pylist() if x["registered"]}
    assert got == {("0-4", "F"): 19, ("0-4", "M"): 17}


def test_interpolation_plan_nearest_within_three_months():
    dates = [dt.date(2005, 4, 1), dt.date(2005, 5, 1)]
    plan, uncovered = RG.interpolation_plan(dates, ("2004-12", "2005-09"))
    # Dec 1 is more than 3 months before Apr 1 (Jan 1 is the limit); Aug 1 is within 3 months of May 1 (Aug 1),
    # Sep 1 is not
    assert uncovered == ["2004-12", "2005-09"]
    rows = plan.to_pylist()
    assert [r["month"] for r in rows] == ["2005-01", "2005-02", "2005-03", "2005-04", "2005-05", "2005-06", "2005-07", "2005-08"]
    assert [(r["d0"], r["d1"], r["k"], r["span"]) for r in rows[:3]] == [(dates[0], dates[0], 0, 1)] * 3
    assert [(r["d0"], r["d1"], r["k"], r["span"]) for r in rows[5:]] == [(dates[1], dates[1], 0, 1)] * 3


def test_problems_uncovered_months_totals_missing_practice_zero_list(con):
    rows = {("P81001", "2005-04", "0-4", "F"): 5, ("P81001", "2005-05", "0-4", "F"): 6,
            ("P81003", "2005-04", "0-4", "F"): 0,                   # P81003's list is zero in April
            ("P81001", "2005-04", "total", "total"): 9}             # total 9 != 5
    r = RG.population(regs(table=rows_of(rows)), codes_table(), window=("2005-04", "2005-10"))
    by = {p.check: p for p in r.problems}
    assert set(by) == {"total_row", "snapshot_cover", "snapshot_practice", "zero_list"}
    assert by["snapshot_cover"].values == ["2005-09", "2005-10"]           # Aug 1 is within 3 months of May 1
    assert by["total_row"].rows == [4] and by["total_row"].values == [("2005-04-01", "P81001", "total", "total", 9, 5)]
    assert by["snapshot_practice"].values == [("P81003", "2005-05-01")]
    assert by["zero_list"].values == [("P81003", m) for m in ["2005-04", "2005-05", "2005-06", "2005-07", "2005-08"]]


def test_snapshot_window():
    assert RG.snapshot_window(regs()) == ("2005-01", "2005-10")


def test_repeated_cell_is_a_problem_but_two_top_bands_are_summed(con):
    t = pa.table({"extract_date": [dt.date(2005, 4, 1)] * 4, "practice_code": ["P81001"] * 4,
                  "sex": ["F", "F", "M", "M"], "age_group": ["0-4", "0-4", "90+", "90+"],
                  "patients": pa.array([4, 4, 2, 3], pa.int64())})
    r = RG.population(regs(table=t), codes_table(CODES[:1]), window=("2005-04", "2005-04"))
    assert [(p.check, p.rows, p.values) for p in r.problems] == [("unique", [1, 2], [("2005-04-01", "P81001", "F", "0-4")])]
    got = {(x["age_band"], x["sex"]): x["registered"] for x in r.table.to_pylist() if x["registered"]}
    assert got == {("0-4", "F"): 8, ("90+", "M"): 5}      # 4 + 4 (reported), 2 + 3 (90_94 and 95+)
