"""Tests of pbc_analysis.ingest.reference (providers and specialties tables, the treatment-function list) and of
the shipped column maps of the reference sources (``ingest/maps``).
"""

from __future__ import annotations

from pathlib import Path

import ibis
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from pbc_analysis.data.problems import DataValidationError
from pbc_analysis.data.schema import TABLES
from pbc_analysis.ingest import reference as RF
from pbc_analysis.ingest.columnmap import load_map
from pbc_analysis.synth import calibration

FIX = Path(__file__).parent / "fixtures" / "reference"


def providers_ref(**replace) -> ibis.Table:
    t = pacsv.read_csv(FIX / "providers.csv")
    cols = {c: t.column(c) for c in t.column_names}
    cols.update(replace)
    cols["_row"] = pa.array(range(1, t.num_rows + 1), pa.int64())
    return ibis.memtable(pa.table(cols))


def used(codes, has_ae) -> ibis.Table:
    return ibis.memtable(pa.table({"provider_code": codes, "has_ae": pa.array(has_ae, pa.bool_())}))


@pytest.fixture(scope="module")
def con():
    return ibis.duckdb.connect()


def test_providers_by_hand(con):
    # RA7 twice (one type 1 attendance: has_ae true), RXN without A&E; RBB is in the reference but unused
    t, problems = RF.providers_table(used(["RXN", "RA7", "RA7"], [False, False, True]), providers_ref())
    assert problems == []
    assert t.equals(pa.table({"provider_code": ["RA7", "RXN"],
                              "provider_name": ["Alpha Hospitals NHS Trust", "Beta Teaching Hospitals NHS Trust"],
                              "has_ae": [True, False]}))
    assert t.schema.names == TABLES["providers"].column_names


def test_providers_without_has_ae_column_are_false(con):
    t, _ = RF.providers_table(ibis.memtable(pa.table({"provider_code": ["RXN"]})), providers_ref())
    assert t.column("has_ae").to_pylist() == [False]


def test_provider_missing_or_named_twice_is_a_problem(con):
    ref = providers_ref(provider_code=pa.array(["RA7", "RA7", "RBB"]))     # RA7 named twice, RXN gone
    t, problems = RF.providers_table(used(["RA7", "RXN", "RZZ"], [True, False, False]), ref, file="providers.csv")
    by = {p.check: p for p in problems}
    assert by["provider_known"].values == ["RXN", "RZZ"] and by["provider_known"].file == "providers.csv"
    assert by["unique"].values == ["RA7"] and by["unique"].rows == [1, 2]
    assert t.column("provider_code").to_pylist() == ["RA7"]


def test_specialties_by_hand(con):
    t, problems = RF.specialties_table(["330", "110", "180", "110"])
    assert problems == []
    assert t.equals(pa.table({"specialty_code": ["110", "180", "330"],
                              "specialty_name": ["Trauma and orthopaedics", "Emergency medicine", "Dermatology"]}))
    t2, _ = RF.specialties_table(ibis.memtable(pa.table({"specialty_code": ["330", None, "110"]})))
    assert t2.column("specialty_code").to_pylist() == ["110", "330"]


def test_unknown_specialty_is_a_problem_and_a_user_list(tmp_path):
    f = tmp_path / "tfc.csv"
    f.write_text("specialty_code,specialty_name\n110,T&O\n999,Local service\n", encoding="utf-8")
    t, problems = RF.specialties_table(["110", "999", "998"], f)
    assert t.to_pylist() == [{"specialty_code": "110", "specialty_name": "T&O"},
                             {"specialty_code": "999", "specialty_name": "Local service"}]
    assert len(problems) == 1 and problems[0].values == ["998"] and problems[0].file == str(f)
    f.write_text("specialty_code,specialty_name\n110,T&O\n110,Other\n120,\n", encoding="utf-8")
    with pytest.raises(DataValidationError) as err:
        RF.read_treatment_functions(f)
    assert {p.check for p in err.value.problems} == {"unique", "not_missing"}


def test_shipped_list_names_every_synthetic_specialty_alike():
    t = RF.read_treatment_functions()
    names = dict(zip(t.column("specialty_code").to_pylist(), t.column("specialty_name").to_pylist()))
    for code, name, *_ in (*calibration.SPECIALTIES, calibration.AE_SPECIALTY):
        assert names.get(code) == name, code
    assert names["180"] == "Emergency medicine"
    assert all(len(c) == 3 and c.isdigit() for c in names)


@pytest.mark.parametrize("name,kind", [("gp_reg_quinary", "registrations"), ("epraccur", "practice_reference"),
                                       ("practice_attributes", "practice_attributes"), ("succession", "succession"),
                                       ("providers", "provider_reference"), ("prices", "prices")])
def test_shipped_maps_load(name, kind):
    m = load_map(name, kind)
    assert m.source == kind


def test_shipped_map_codes():
    reg = load_map("gp_reg_quinary")
    ages = reg.category_of("age_group")
    assert ages["0_4"] == "0-4" and ages["85_89"] == "85-89" and ages["90_94"] == ages["95+"] == "90+"
    assert ages["ALL"] == "total" and len(set(ages.values())) == 20        # 19 bands and the total
    assert reg.category_of("sex") == {"FEMALE": "F", "F": "F", "MALE": "M", "M": "M", "ALL": "total"}
    ep = load_map("epraccur")
    assert ep.header is False and dict(ep.columns) == {"practice_code": 1, "practice_name": 2, "open_date": 11,
                                                       "close_date": 12, "commissioner": 15, "prescribing_setting": 26}
    assert load_map("prices").category_of("category") == {"OP_FIRST": "first_op", "OP_FOLLOWUP": "followup_op",
                                                          "APC_ELECTIVE": "elective", "APC_NON_ELECTIVE": "non_elective",
                                                          "AE": "ae"}


def test_arrow_table_order_and_types():
    t = pa.table({"price": [2.0, 1], "financial_year": ["2005/06", "2005/06"], "pod": ["ae", "ae"],
                  "specialty_code": ["180", "110"], "extra": [1, 2]})
    out = RF.arrow_table("tariff", t)
    assert out.schema.names == ["specialty_code", "pod", "financial_year", "price"]
    assert out.column("specialty_code").to_pylist() == ["110", "180"] and out.column("price").type == pa.float64()
