"""``pbc synth --national``: commissioners of 30 to 200 practices, each a synthetic PCT with its own known answer.

One small nation (250 practices, 24 months, with its extracts) is written once for the module through the
command line; every commissioner's slice of its tables is compared with a standalone ``generate()`` of the
commissioner's recorded parameters, and the ingest of its extracts (``commissioners: all``) must give the
tables and the commissioners table back.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pbc_analysis.core import paths
from pbc_analysis.core.strict_yaml import load_yaml
from pbc_analysis.pipeline import cli
from pbc_analysis.synth import SynthParams, generate
from pbc_analysis.synth.contract import LARGE_TABLES, TABLE_COLUMNS
from pbc_analysis.synth.events_reference import COMMISSIONER, OTHER_COMMISSIONER
from pbc_analysis.synth.national import MAX_SIZE, MIN_SIZE, RANGES, commissioner_sizes, plan_national
from pbc_analysis.synth.write import _csv_bytes

SHAPE = ["--seed", "4", "--practices", "250", "--months", "24", "--start", "2003-04"]
PROVIDER_TABLES = ("providers", "provider_changes")
SHARED = ("specialties", "tariff", "reference_rates")


@pytest.fixture(scope="module")
def nation(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("nation") / "national"
    assert cli.main(["synth", "--national", *SHAPE, "--events", "--out", str(out), "--quiet"]) == 0
    return out


def _truth(out: Path) -> dict:
    return json.loads((out / "national_truth.json").read_text(encoding="utf-8"))


def _as_text(df: pd.DataFrame) -> pd.DataFrame:
    """Categoricals and strings as plain ``str`` columns, a fresh index (to compare values, not dtypes)."""
    return df.astype({c: str for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])
                      or isinstance(df[c].dtype, pd.CategoricalDtype)}).reset_index(drop=True)


def _csv(data: bytes | Path) -> pd.DataFrame:
    raw = data.read_bytes() if isinstance(data, Path) else data
    return pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False)


@pytest.mark.parametrize("n", [30, 31, 59, 60, 200, 201, 399, 401, 1000, 6500])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sizes_are_commissioner_sized_and_add_up(n, seed):
    sizes = commissioner_sizes(n, np.random.default_rng(seed))
    assert int(sizes.sum()) == n
    assert sizes.min() >= MIN_SIZE and sizes.max() <= MAX_SIZE


def test_a_nation_of_england_size_has_about_a_hundred_commissioners():
    commissioners = plan_national(SynthParams(seed=20070401, n_practices=6500))
    assert 70 <= len(commissioners) <= 200
    assert len({c.code for c in commissioners}) == len(commissioners)
    assert len({c.params.seed for c in commissioners}) == len(commissioners)


@pytest.mark.parametrize("argv, words", [
    (["--practices", "29"], "30 or more"),
    (["--practices", "2"], "30 or more"),
    (["--seed", "3"], "needs --practices"),
    (["--practices", "many"], "whole number"),
    (["--practices", "100", "--cohort-offsets", "24,30,36"], "--cohort-offsets cannot be given with --national"),
    (["--practices", "100", "--months", "6"], "--months"),
])
def test_bad_national_flags_are_refused_with_the_fix(argv, words, tmp_path, capsys):
    out = tmp_path / "never"
    assert cli.main(["synth", "--national", *argv, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "error: pbc synth --national" in err and words in err, err
    assert not out.exists()


def test_codes_are_unique_across_commissioners(nation):
    truth = _truth(nation)
    codes = list(truth["commissioners"])
    assert len(codes) >= 2 and len(set(codes)) == len(codes)
    assert all(re.fullmatch(r"5[A-Z][0-9A-Z]", c) for c in codes)
    assert COMMISSIONER not in codes and OTHER_COMMISSIONER not in codes
    practices, providers = _csv(nation / "practices.csv"), _csv(nation / "providers.csv")
    assert practices["practice_code"].is_unique and providers["provider_code"].is_unique
    assert practices["practice_code"].tolist() == sorted(practices["practice_code"])
    assert practices["practice_code"].str.fullmatch(r"[A-Z][0-9]{5}").all()
    assert providers["provider_code"].str.fullmatch(r"[A-Z0-9]{3,5}").all()
    members = _csv(nation / "commissioners.csv")
    assert list(members.columns) == ["practice_code", "commissioner_code", "commissioner_name"]
    assert members["practice_code"].tolist() == practices["practice_code"].tolist()
    assert members.groupby("commissioner_code").size().to_dict() == {
        c: e["n_practices"] for c, e in truth["commissioners"].items()}
    assert dict(zip(members["commissioner_code"], members["commissioner_name"])) == {
        c: e["name"] for c, e in truth["commissioners"].items()}


def test_sizes_of_the_nation_and_its_truth(nation):
    truth = _truth(nation)
    sizes = [e["n_practices"] for e in truth["commissioners"].values()]
    assert sum(sizes) == 250 == truth["national"]["n_practices"] and all(MIN_SIZE <= s <= MAX_SIZE for s in sizes)
    assert truth["national"]["n_commissioners"] == len(sizes)
    text = (nation / "national_truth.json").read_text(encoding="utf-8")
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=1) + "\n"   # the bytes of json.dumps


def test_each_commissioner_has_its_own_planted_answer(nation):
    entries = list(_truth(nation)["commissioners"].values())
    drawn = [(tuple(e["params"]["cohort_offsets"]), e["params"]["provider_cut_size"],
              e["params"]["under_referrer_log_propensity"], tuple(e["params"]["cohort_fractions"])) for e in entries]
    assert len(set(drawn)) == len(drawn)
    for e in entries:
        p = e["params"]
        lo, hi = RANGES["provider_cut_size"]
        assert lo <= p["provider_cut_size"] <= hi
        for f, (a, b) in zip(p["cohort_fractions"], RANGES["cohort_fractions"]):
            assert a <= f <= b
        assert e["truth"]["provider_change"]["relative_change_in_follow_up_ratio"] == p["provider_cut_size"]
        assert len(e["truth"]["under_referrers"]["practices"]) == p["n_under_referrers"] >= 1


def test_each_slice_equals_a_standalone_pct(nation):
    truth = _truth(nation)
    national = {name: (pd.read_parquet(nation / f"{name}.parquet") if name in LARGE_TABLES
                       else _csv(nation / f"{name}.csv")) for name in TABLE_COLUMNS}
    for code, entry in truth["commissioners"].items():
        result = generate(SynthParams.from_dict(entry["params"]))
        assert entry["truth"] == json.loads(json.dumps(result.truth, sort_keys=True)), code
        own = set(result.tables["practices"]["practice_code"])
        providers = set(result.tables["providers"]["provider_code"])
        for name, df in national.items():
            if name in SHARED:
                assert df.equals(_csv(_csv_bytes(result.tables[name]))), (code, name)
                continue
            col, keep = ("provider_code", providers) if name in PROVIDER_TABLES else ("practice_code", own)
            got = df[df[col].astype(str).isin(keep)]
            if name in LARGE_TABLES:
                assert _as_text(got).equals(_as_text(result.tables[name])), (code, name)
            else:  # the CSV rows, byte for byte
                assert got.reset_index(drop=True).equals(_csv(_csv_bytes(result.tables[name]))), (code, name)


def test_national_tables_pass_validation(nation):
    from pbc_analysis.data.plausibility import validate_inputs_for_cli

    window = next(iter(_truth(nation)["commissioners"].values()))["truth"]["window"]
    inputs, accepted = validate_inputs_for_cli(nation, window["start_month"], window["end_month"])
    assert accepted == []
    assert len(inputs.practices) == 250
    assert inputs.activity["practice_code"].nunique() == 250
    assert len(inputs.commissioners) == 250   # the optional commissioners table, loaded and checked


def _digests(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_same_seed_same_bytes(tmp_path, fmt):
    argv = ["synth", "--national", "--seed", "9", "--practices", "70", "--months", "24", "--format", fmt, "--quiet"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli.main([*argv, "--out", str(a)]) == 0 and cli.main([*argv, "--out", str(b)]) == 0
    assert _digests(a) == _digests(b) and len(_digests(a)) == len(TABLE_COLUMNS) + 2
    assert cli.main([*argv[:3], "10", *argv[4:], "--out", str(tmp_path / "c")]) == 0
    assert _digests(tmp_path / "c")["practices.csv"] != _digests(a)["practices.csv"]


def test_code_block_leaves_a_single_pct_unchanged():
    assert "code_block" not in SynthParams().to_dict()
    p = SynthParams(n_practices=40, code_block=7)
    assert SynthParams.from_dict(p.to_dict()) == p
    assert SynthParams(n_practices=251, code_block=0).problems()


# ---------------------------------------------------------------------------------------------
# the extracts of the nation through the ingest (commissioners: all)
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ingested(nation, tmp_path_factory):
    from pbc_analysis.ingest import run
    from pbc_analysis.ingest.params import IngestParams

    base = tmp_path_factory.mktemp("ingested")
    config = paths.CONFIGS_DIR / "ingest_sample.yaml"
    cfg = load_yaml(config.read_text(encoding="utf-8"), where=str(config))["ingest"]
    section = json.loads(json.dumps(cfg).replace("data/sample-events", str(nation))) | {
        "out": str(base / "out"), "temp_directory": str(base / "spill"), "memory_limit": "1GB", "threads": 2,
        "commissioners": "all"}
    res = run.run_ingest(IngestParams.from_mapping(section), out_dir=base / "out", progress=False)
    return base / "out", res


def test_national_extracts_are_one_file_per_source_with_summed_truth(nation):
    doc = json.loads((nation / "extracts" / "events_truth.json").read_text(encoding="utf-8"))
    codes = list(_truth(nation)["commissioners"])
    assert doc["settings"]["commissioners"] == codes and list(doc["commissioners"]) == codes
    for source, t in doc["sources"].items():
        assert t["read"]["rows"] == sum(c["sources"][source]["read"]["rows"] for c in doc["commissioners"].values())
    assert not (nation / "extracts" / ".parts").exists()
    reference = pd.read_csv(nation / "extracts" / "practice_reference.csv", header=None, dtype=str, keep_default_na=False)
    members = _csv(nation / "commissioners.csv")
    listed = dict(zip(reference[0], reference[14]))
    assert all(listed[p] == c for p, c in zip(members["practice_code"], members["commissioner_code"]))


def test_ingest_of_all_commissioners_gives_the_tables_back(nation, ingested):
    out, res = ingested
    key = ["practice_code", "provider_code", "specialty_code", "pod", "month"]
    want = pd.read_parquet(nation / "activity.parquet")
    want = _as_text(want[want["activity"] > 0].sort_values(key))
    got = _as_text(pd.read_parquet(out / "activity.parquet").sort_values(key))
    assert got[key].equals(want[key]) and (got["activity"].to_numpy() == want["activity"].to_numpy()).all()
    np.testing.assert_allclose(got["cost"].astype(float), want["cost"].astype(float), rtol=1e-9)
    pkey = ["practice_code", "month", "age_band", "sex"]
    want, got = (_as_text(pd.read_parquet(d / "population.parquet")).sort_values(pkey, ignore_index=True)
                 for d in (nation, out))
    assert got[pkey].equals(want[pkey]) and (got["registered"].to_numpy() == want["registered"].to_numpy()).all()
    members = _csv(out / "commissioners.csv")
    national = _csv(nation / "commissioners.csv")
    assert members[["practice_code", "commissioner_code"]].equals(national[["practice_code", "commissioner_code"]])
    assert (members["commissioner_name"] == members["commissioner_code"]).all()   # the extracts carry no name
    doc = json.loads((nation / "extracts" / "events_truth.json").read_text(encoding="utf-8"))
    recon = res.reconciliation
    for source, t in doc["sources"].items():
        part = recon[recon["source"] == source]
        excluded = part[part["outcome"] == "excluded"].set_index("reason")["rows"].astype(int).to_dict()
        assert excluded == {r: v["rows"] for r, v in t["excluded"].items()}, source
        assert int(part[part["outcome"] == "aggregated"]["rows"].iloc[0]) == t["aggregated"]["rows"], source


def test_commissioners_table_of_the_ingest_takes_a_name_when_the_reference_has_one():
    import pyarrow as pa

    from pbc_analysis.ingest.practices import _commissioners

    ref = pa.table({"practice_code": ["A81001", "A81002", "A81001"], "commissioner": ["5A0", "5A1", "5ZZ"]})
    got = _commissioners(ref, ["A81001", "A81002"]).to_pylist()
    assert got == [{"practice_code": "A81001", "commissioner_code": "5A0", "commissioner_name": "5A0"},
                   {"practice_code": "A81002", "commissioner_code": "5A1", "commissioner_name": "5A1"}]
    named = ref.append_column("commissioner_name", pa.array(["Ashford PCT", None, "Other"]))
    assert [r["commissioner_name"] for r in _commissioners(named, ["A81001", "A81002"]).to_pylist()] == ["Ashford PCT", "5A1"]
