"""Tests of pbc_analysis.ingest.prices: the price lookup and the fixed-weight (Laspeyres) tariff index.

Fixture ``tests/ingest/fixtures/reference/prices.csv`` (canonical fields; ``category`` already a pod):
TFC 110 first 120 -> 126, follow-up 60 -> 63; elective HRGs HB11 1000 and HB12 3000 in both years (no price
change); A&E HRGs VB01 80 -> 88 and VB02 120 -> 132 (+10 %); HB99 only in 2005/06; row 13 repeats row 11.
"""

from __future__ import annotations

from pathlib import Path

import ibis
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from pbc_analysis.data.problems import DataValidationError
from pbc_analysis.data.schema import TABLES
from pbc_analysis.ingest import prices as PC

FIX = Path(__file__).parent / "fixtures" / "reference"
YEARS = ["2005/06", "2006/07"]


def source(**replace) -> ibis.Table:
    t = pacsv.read_csv(FIX / "prices.csv", convert_options=pacsv.ConvertOptions(
        column_types={"financial_year": pa.string(), "category": pa.string(), "code": pa.string(), "price": pa.float64()}))
    cols = {c: t.column(c) for c in t.column_names}
    cols.update(replace)
    cols["_row"] = pa.array(range(1, t.num_rows + 1), pa.int64())
    return ibis.memtable(pa.table(cols))


def weights(rows) -> ibis.Table:
    s, p, c, n = zip(*rows)
    return ibis.memtable(pa.table({"specialty_code": list(s), "pod": list(p), "code": pa.array(c, pa.string()),
                                   "n": pa.array(n, pa.int64())}))


#: included events of the base year 2005/06: HB11:HB12 = 3:1, VB01:VB02 = 3:1
BASE = [("110", "first_op", "110", 500), ("110", "followup_op", "110", 900),
        ("110", "elective", "HB11", 3), ("110", "elective", "HB12", 1),
        ("180", "ae", "VB01", 3), ("180", "ae", "VB02", 1)]


@pytest.fixture(scope="module")
def con():
    return ibis.duckdb.connect()


def prices_of(t: pa.Table) -> dict:
    return {(r["specialty_code"], r["pod"], r["financial_year"]): r["price"] for r in t.to_pylist()}


def test_price_lookup_one_row_per_key(con):
    lk = PC.price_lookup(source()).order_by(["pod", "code", "financial_year"]).to_pyarrow()
    assert lk.schema.names == ["pod", "code", "financial_year", "price"]
    assert lk.num_rows == 13                       # 14 rows, row 13 repeats row 11
    got = {(r["pod"], r["code"], r["financial_year"]): r["price"] for r in lk.to_pylist()}
    assert got[("ae", "VB02", "2005/06")] == 120.0 and got[("first_op", "110", "2006/07")] == 126.0


def test_tariff_fixed_weights_by_hand(con):
    t, problems = PC.tariff(PC.price_lookup(source()), weights(BASE), base_year="2005/06", years=YEARS)
    assert problems == []
    assert t.schema.names == TABLES["tariff"].column_names
    assert prices_of(t) == {
        ("110", "elective", "2005/06"): 1500.0,     # (3*1000 + 1*3000) / 4
        ("110", "elective", "2006/07"): 1500.0,     # the same prices: the same index, whatever the 2006/07 mix
        ("110", "first_op", "2005/06"): 120.0,      # the TFC's price
        ("110", "first_op", "2006/07"): 126.0,
        ("110", "followup_op", "2005/06"): 60.0,
        ("110", "followup_op", "2006/07"): 63.0,
        ("180", "ae", "2005/06"): 90.0,             # (3*80 + 1*120) / 4 = 360 / 4
        ("180", "ae", "2006/07"): 99.0,             # (3*88 + 1*132) / 4 = 396 / 4: +10 % with the prices
    }
    assert t.column("specialty_code").to_pylist() == ["110"] * 6 + ["180"] * 2   # sorted by key


def test_current_weights_would_move_with_the_mix(con):
    # Counter-test: in 2006/07 the elective mix turns to HB11:HB12 = 1:3 at unchanged prices. A current-weighted
    # mean (each year's own mix) moves from 1500 to (1*1000 + 3*3000) / 4 = 2500: a "tariff change" of +67 %
    # with no price change; the fixed-weight index stays at 1500 (test above).
    lk = PC.price_lookup(source())
    y1, _ = PC.tariff(lk, weights(BASE), base_year="2005/06", years=["2005/06"])
    y2, _ = PC.tariff(lk, weights([("110", "elective", "HB11", 1), ("110", "elective", "HB12", 3)]),
                      base_year="2006/07", years=["2006/07"])
    current = [prices_of(y1)[("110", "elective", "2005/06")], prices_of(y2)[("110", "elective", "2006/07")]]
    assert current == [1500.0, 2500.0]
    fixed, _ = PC.tariff(lk, weights(BASE), base_year="2005/06", years=YEARS)
    assert [prices_of(fixed)[("110", "elective", y)] for y in YEARS] == [1500.0, 1500.0]


def test_missing_prices_and_weights_are_problems(con):
    w = weights(BASE + [("110", "elective", "HB99", 2),       # HB99 has no 2006/07 price
                        ("120", "first_op", "120", 5),        # TFC 120 has no price at all
                        ("130", "elective", None, 7)])        # events without HRG: no weights
    t, problems = PC.tariff(PC.price_lookup(source()), w, base_year="2005/06", years=YEARS, file="prices.csv")
    by = {p.check: p for p in problems}
    assert set(by) == {"price_known", "price_weights"}
    assert by["price_known"].values == [("elective", "HB99", "2006/07"), ("first_op", "120", "2005/06"),
                                        ("first_op", "120", "2006/07")]
    assert by["price_weights"].values == [("130", "elective")]
    got = prices_of(t)
    # with HB99 (weight 2, price 5000) in 2005/06: (3*1000 + 1*3000 + 2*5000) / 6 = 16000 / 6
    assert got[("110", "elective", "2005/06")] == pytest.approx(16000 / 6, rel=1e-12)
    assert ("110", "elective", "2006/07") not in got and ("120", "first_op", "2005/06") not in got


def test_lookup_problems_raised_or_collected(con):
    bad = source(price=pa.array([120.0, 126.0, 60.0, 63.0, 1000.0, 1000.0, 3000.0, 3000.0, 80.0, 88.0, 120.0, 132.0,
                                 121.0, -5.0]),                     # row 13 now clashes with row 11; row 14 negative
                 financial_year=pa.array(["2005/06", "2006/07"] * 6 + ["2005/06", "2005/07"]))   # row 14: 2005/07
    with pytest.raises(DataValidationError) as err:
        PC.price_lookup(bad, file="prices.csv")
    by = {p.check: p for p in err.value.problems}
    assert set(by) == {"price_value", "financial_year", "price_unique"}
    assert by["price_value"].rows == [14] and by["financial_year"].values == ["2005/07"]
    assert by["price_unique"].rows == [11, 13] and by["price_unique"].values == [("ae", "VB02", "2005/06")]
    collected: list = []
    PC.price_lookup(bad, problems=collected)
    assert len(collected) == 3


def test_default_base_year():
    assert PC.default_base_year(("2005-01", "2007-06")) == "2005/06"     # first full April-March year
    with pytest.raises(ValueError, match="price_base_year"):
        PC.default_base_year(("2005-05", "2006-02"))
