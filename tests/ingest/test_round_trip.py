"""Round trip: ``pbc synth --events`` -> ``run_ingest`` gives the aggregated tables back, and its reconciliation
excludes exactly the dirt planted (``events_truth.json``).

A small synthetic PCT (20 practices, 24 months) is written with its extracts; the ingest runs on them with the
settings of ``configs/ingest_sample.yaml`` (paths moved to the temporary directory). Counts are compared exactly,
money to 1e-9 relative; activity and referrals on the tables' non-zero rows (ingest writes them sparse).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pbc_analysis.core import paths
from pbc_analysis.core.strict_yaml import load_yaml
from pbc_analysis.ingest import run
from pbc_analysis.ingest.params import IngestParams
from pbc_analysis.synth import SynthParams, generate
from pbc_analysis.synth.events_reference import LOCAL_TABLES
from pbc_analysis.synth.write import write_result_events, write_tables

SHAPE = {"n_practices": 20, "n_months": 24}


@pytest.fixture(scope="module")
def trip(tmp_path_factory) -> tuple[Path, Path, dict, object]:
    base = tmp_path_factory.mktemp("trip")
    pct = base / "pct"
    result = generate(SynthParams(**SHAPE))
    write_tables(result, pct)
    write_result_events(result, pct)
    config = paths.CONFIGS_DIR / "ingest_sample.yaml"
    cfg = load_yaml(config.read_text(encoding="utf-8"), where=str(config))["ingest"]
    text = json.dumps(cfg).replace("data/sample-events", str(pct))   # every extract path, moved to the PCT
    section = json.loads(text) | {"out": str(base / "ingested"), "temp_directory": str(base / "spill"),
                                  "memory_limit": "1GB", "threads": 2}
    params = IngestParams.from_mapping(section)
    res = run.run_ingest(params, out_dir=base / "ingested", progress=False)
    truth = json.loads((pct / "extracts" / "events_truth.json").read_text())
    return pct, base / "ingested", truth, res


def _read(d: Path, name: str) -> pd.DataFrame:
    path = d / f"{name}.parquet"
    df = pd.read_parquet(path) if path.exists() else pd.read_csv(d / f"{name}.csv", dtype=str, keep_default_na=False)
    return df.astype({c: str for c in df.columns if df[c].dtype == object or isinstance(df[c].dtype, pd.CategoricalDtype)
                      or str(df[c].dtype).startswith("str")})


def _nonzero(df: pd.DataFrame, count: str, key: list[str]) -> pd.DataFrame:
    return df[df[count].astype(int) > 0].sort_values(key).reset_index(drop=True)


@pytest.mark.parametrize("name,count,key", [
    ("activity", "activity", ["practice_code", "provider_code", "specialty_code", "pod", "month"]),
    ("referrals", "referrals", ["practice_code", "provider_code", "specialty_code", "month"]),
])
def test_events_give_the_tables_back(trip, name, count, key):
    pct, out, _, _ = trip
    want, got = _nonzero(_read(pct, name), count, key), _nonzero(_read(out, name), count, key)
    assert len(got) == len(want) > 0
    assert got[key].equals(want[key])
    assert (got[count].astype(np.int64).to_numpy() == want[count].astype(np.int64).to_numpy()).all()
    if name == "activity":
        np.testing.assert_allclose(got["cost"].astype(float), want["cost"].astype(float), rtol=1e-9)


def test_population_practices_providers_tariff(trip):
    pct, out, _, _ = trip
    key = ["practice_code", "month", "age_band", "sex"]
    want, got = _read(pct, "population"), _read(out, "population")
    assert got.sort_values(key).reset_index(drop=True)[key + ["registered"]].astype(str).equals(
        want.sort_values(key).reset_index(drop=True)[key + ["registered"]].astype(str))
    p_want, p_got = pd.read_csv(pct / "practices.csv", dtype=str), _read(out, "practices")
    for col in ["practice_code", "practice_name", "consortium"]:
        assert p_got[col].tolist() == p_want[col].tolist(), col
    np.testing.assert_allclose(p_got["imd_score"].astype(float), p_want["imd_score"].astype(float), rtol=1e-9)
    assert p_got["single_handed"].astype(str).str.lower().tolist() == p_want["single_handed"].str.lower().tolist()
    v_want, v_got = pd.read_csv(pct / "providers.csv", dtype=str), _read(out, "providers")
    assert v_got["provider_code"].tolist() == v_want["provider_code"].tolist()
    assert v_got["provider_name"].tolist() == v_want["provider_name"].tolist()
    assert v_got["has_ae"].astype(str).str.lower().tolist() == v_want["has_ae"].str.lower().tolist()
    s_want, s_got = pd.read_csv(pct / "specialties.csv", dtype=str), _read(out, "specialties")
    assert s_got["specialty_code"].tolist() == s_want["specialty_code"].tolist()
    tkey = ["specialty_code", "pod", "financial_year"]
    t_want = pd.read_csv(pct / "tariff.csv", dtype={"specialty_code": str}).sort_values(tkey).reset_index(drop=True)
    t_got = _read(out, "tariff").sort_values(tkey).reset_index(drop=True)
    assert t_got[tkey].equals(t_want[tkey])
    np.testing.assert_allclose(t_got["price"].astype(float), t_want["price"].astype(float), rtol=1e-9)


def test_local_tables_copied(trip):
    pct, out, _, _ = trip
    for name in LOCAL_TABLES:
        assert (out / f"{name}.csv").read_bytes() == (pct / f"{name}.csv").read_bytes(), name


def test_reconciliation_excludes_the_dirt_planted(trip):
    _, out, truth, res = trip
    recon = res.reconciliation
    assert (out / "reconciliation.csv").is_file()
    for source, t in truth["sources"].items():
        part = recon[recon["source"] == source]
        assert not part.empty, source
        read = part[part["outcome"] == "read"].iloc[0]
        agg = part[part["outcome"] == "aggregated"].iloc[0]
        excluded = {r["reason"]: r for _, r in part[part["outcome"] == "excluded"].iterrows()}
        assert int(read["rows"]) == t["read"]["rows"], source
        assert int(agg["rows"]) == t["aggregated"]["rows"], source
        assert int(agg["merged_rows"]) == t["merged"]["rows"] > 0, source
        assert {r: int(v["rows"]) for r, v in excluded.items()} == {r: v["rows"] for r, v in t["excluded"].items()}, source
        if "cost" in t["read"]:
            assert float(read["cost"]) == pytest.approx(t["read"]["cost"], rel=1e-9), source
            assert float(agg["cost"]) == pytest.approx(t["aggregated"]["cost"], rel=1e-9), source
            for reason, v in t["excluded"].items():
                assert float(excluded[reason]["cost"]) == pytest.approx(v["cost"], rel=1e-9, abs=1e-6), (source, reason)
            assert int(agg["priced_rows"]) == 0, source   # every event carries its cost


def test_manifest_records_the_extracts(trip):
    pct, out, truth, res = trip
    manifest = json.loads((out / "ingest.json").read_text())
    assert manifest["window"] == [truth["settings"]["start_month"], truth["settings"]["end_month"]]
    recorded = {Path(e["path"]).name for e in res.extracts}
    assert set(truth["files"].values()) <= recorded
