"""run_ingest end to end on the hand-made fixture: the tables, the reconciliation (adds up), the manifest, a
byte-identical rerun, and every problem of every source at once before any output; IngestParams' checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pbc_analysis.core.checks import ArgumentError
from pbc_analysis.data.problems import DataValidationError
from pbc_analysis.ingest.params import IngestParams
from pbc_analysis.ingest.run import OUTPUT_TABLES, run_ingest

FIX = Path(__file__).parent / "fixtures" / "events"
FILES = {"outpatients": "outpatients.csv", "admitted": "admitted.csv", "ae": "ae.csv", "registrations": "registrations.csv",
         "practice_reference": "epraccur.csv", "practice_attributes": "practice_attributes.csv", "succession": "succession.csv",
         "provider_reference": "providers.csv", "prices": "prices.csv"}


def params(folder: Path = FIX, **extra) -> IngestParams:
    sources = {k: {"path": str(folder / f)} for k, f in FILES.items()}
    sources.update(extra.pop("sources", {}))
    return IngestParams.from_mapping({"sources": sources, "commissioners": ["5NG"], "tables": str(FIX / "tables"),
                                      "memory_limit": "1GB", "threads": 2, **extra})


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("ingest")
    return run_ingest(params(), out, progress=False), out


def test_tables_written(result):
    res, out = result
    assert set(res.tables) == set(OUTPUT_TABLES) and res.window == ("2005-04", "2006-03")
    act = pq.read_table(out / "activity.parquet")
    assert act.schema.names == ["practice_code", "provider_code", "specialty_code", "pod", "month", "activity", "cost"]
    assert act.num_rows == 12   # outpatients 6 + admitted 3 + A&E 3 (tests/ingest/test_hospital.py)
    # 105 appointments + 36 spells + 44 attendances; cost 12150 + 1400 + 58600 + 25000 + 3100 + 2250
    assert sum(act.column("activity").to_pylist()) == 185 and sum(act.column("cost").to_pylist()) == 102500.0
    ref = pq.read_table(out / "referrals.parquet").to_pylist()
    assert [(r["practice_code"], r["month"], r["referrals"]) for r in ref] == [("P81001", "2005-04", 40), ("P81002", "2005-07", 12)]
    assert pq.read_table(out / "practices.parquet").column("practice_code").to_pylist() == ["P81001", "P81002"]
    prov = pq.read_table(out / "providers.parquet").to_pylist()
    assert [(p["provider_code"], p["has_ae"]) for p in prov] == [("RA7", True), ("RBA", False)]   # RVJ unused
    assert pq.read_table(out / "specialties.parquet").column("specialty_code").to_pylist() == ["100", "110", "180"]
    # P81001, P81002 x 12 months x 19 bands x 2 sexes
    assert pq.read_table(out / "population.parquet").num_rows == 2 * 12 * 38
    tariff = {(t["specialty_code"], t["pod"]): t["price"] for t in pq.read_table(out / "tariff.parquet").to_pylist()}
    assert tariff[("110", "first_op")] == 150.0 and tariff[("100", "non_elective")] == 3100.0
    # fixed weights of 2005/06: VB01Z 25 attendances at 100, VB02Z 15 + 4 at 150
    assert tariff[("180", "ae")] == pytest.approx((25 * 100 + 19 * 150) / 44, rel=1e-12)
    assert (out / "engagement.csv").read_bytes() == (FIX / "tables" / "engagement.csv").read_bytes()
    assert not (out / ".ingest_tmp").exists()


def test_reconciliation_adds_up(result):
    res, out = result
    r = res.reconciliation
    for source, part in r.groupby("source"):
        read = part[part.outcome == "read"]
        assert read.rows.iloc[0] == part[part.outcome != "read"].rows.sum(), source
        assert read.cost.iloc[0] == pytest.approx(part[part.outcome != "read"].cost.sum(), rel=1e-12), source
    reads = dict(zip(r[r.outcome == "read"].source, r[r.outcome == "read"].rows))
    # every row of every extract (registrations: 1,722 rows incl. 42 ALL totals)
    assert reads == {"outpatients": 161, "admitted": 74, "ae": 52, "referrals (derived)": 65, "registrations": 1722}
    assert (out / "reconciliation.csv").read_text().startswith("source,outcome,reason,rows,cost,priced_rows,priced_cost")


def test_manifest(result):
    res, out = result
    m = json.loads((out / "ingest.json").read_text())
    assert m["window"] == ["2005-04", "2006-03"] and m["referrals_from"] == "derived"
    assert m["settings"]["price_base_year"] == "2005/06" and m["settings"]["commissioners"] == ["5NG"]
    assert m["rows"]["activity"] == 12 and m["rows"]["population"] == 912
    # machine- and directory-independent: no output directory, no engine resources (they change no result)
    assert not {"engine", "out", "memory_limit", "temp_directory", "threads"} & set(m["settings"])
    sources = {e["source"]: e for e in m["extracts"]}
    assert set(sources) == set(FILES) | {"table:engagement"}
    assert len(sources["outpatients"]["sha256"]) == 64 and sources["outpatients"]["bytes"] == (FIX / "outpatients.csv").stat().st_size


def test_rerun_is_byte_identical(result, tmp_path):
    _, first = result
    # another output directory and other engine resources write the same bytes (ingest.json included)
    run_ingest(params(memory_limit="512MB", threads=1), tmp_path, progress=False)
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in tmp_path.iterdir())
    assert [n for n in names if (first / n).read_bytes() != (tmp_path / n).read_bytes()] == []


def test_extract_referrals(tmp_path):
    res = run_ingest(params(sources={"referrals": {"path": str(FIX / "referrals.csv")}}), tmp_path, progress=False)
    rows = pq.read_table(tmp_path / "referrals.parquet").to_pylist()
    assert [(r["practice_code"], r["month"], r["referrals"]) for r in rows] == [("P81001", "2005-06", 30), ("P81002", "2005-10", 9)]
    assert "referrals" in set(res.reconciliation.source) and "referrals (derived)" not in set(res.reconciliation.source)


def test_every_problem_of_every_source_before_any_output(tmp_path):
    bad = tmp_path / "in"
    shutil.copytree(FIX, bad)
    op = (bad / "outpatients.csv").read_text().splitlines()
    op[3] = op[3].replace(",2005-05-10,", ",10/05/2005,")        # data row 3: a date in another format
    (bad / "outpatients.csv").write_text("\n".join(op) + "\n")
    ae = (bad / "ae.csv").read_text().splitlines()
    ae[1] = ae[1].replace(",01,VB01Z,", ",09,VB01Z,")             # data row 1: department type 09 not in the map
    (bad / "ae.csv").write_text("\n".join(ae) + "\n")
    (bad / "admitted.csv").write_text((bad / "admitted.csv").read_text().replace("ADMIMETH", "ADMIMETH_X"))
    out = tmp_path / "out"
    with pytest.raises(DataValidationError) as err:
        run_ingest(params(bad), out, progress=False)
    got = {(p.table, p.check) for p in err.value.problems}
    assert got == {("outpatients", "unparseable"), ("ae", "unknown_code"), ("admitted", "missing_column")}
    date = next(p for p in err.value.problems if p.table == "outpatients")
    assert date.rows == [3] and date.values == ["10/05/2005"] and date.column == "APPTDATE"
    assert not out.exists()


def test_unpriced_events_are_a_problem(tmp_path):
    bad = tmp_path / "in"
    shutil.copytree(FIX, bad)
    prices = [line for line in (bad / "prices.csv").read_text().splitlines() if "VB02Z" not in line]
    (bad / "prices.csv").write_text("\n".join(prices) + "\n")
    with pytest.raises(DataValidationError) as err:
        run_ingest(params(bad), tmp_path / "out", progress=False)
    unpriced = [p for p in err.value.problems if p.check == "unpriced"]
    assert len(unpriced) == 1 and unpriced[0].values == [("ae", "VB02Z", "2005/06")] and unpriced[0].n_rows == 15
    assert not (tmp_path / "out").exists()


def test_params_list_every_problem():
    with pytest.raises(ArgumentError) as err:
        IngestParams.from_mapping({"sourcs": {}, "sources": {"outpatient": {"path": "x.csv"}, "ae": {"path": "", "mapp": "e"}},
                                   "threads": 0, "memory_limit": "lots", "referrals": "sometimes", "start_month": "2005-13"})
    text = "\n".join(err.value.problems)
    for expected in ("unknown setting 'sourcs'", "sources.outpatient: unknown source kind (did you mean 'outpatients'?)",
                     "sources.ae.mapp: unknown key", "sources.ae.path: the extract's file is required",
                     "sources.registrations: required", "threads must be", "memory_limit must be", "referrals",
                     "start_month must be a month"):
        assert expected in text, expected
    p = params()
    assert p.referrals_from() == "derived" and p.source_maps()["outpatients"] == "hes_opa"
