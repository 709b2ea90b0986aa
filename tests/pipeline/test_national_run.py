"""A national run (``run.partition: commissioner``): its config checks, the slices, and one run end to end.

The nation is ``pbc synth --national`` at 100 practices, 48 months, seed 2: three commissioners (5A0, 5A1, 5A2)
of 30, 37 and 33 practices.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from pbc_analysis.core.paths import PROJECT_ROOT
from pbc_analysis.data import DataValidationError, load_inputs
from pbc_analysis.pipeline import national
from pbc_analysis.pipeline.config import ConfigError, parse_config
from pbc_analysis.synth.national import plan_national, write_national
from pbc_analysis.synth.params import SynthParams

QUIET = {"echo": lambda *a, **k: None}
CODES = ["5A0", "5A1", "5A2"]
WINDOW = ("2003-04", "2007-03")


@pytest.fixture(scope="module")
def nation(tmp_path_factory) -> Path:
    base = SynthParams(seed=2, n_practices=100, n_months=48, start_month=WINDOW[0])
    out = tmp_path_factory.mktemp("nation") / "data"
    write_national(out, plan_national(base), base, echo=None)
    assert sorted(pd.read_csv(out / "commissioners.csv")["commissioner_code"].unique()) == CODES
    return out


NATIONAL_YAML = (PROJECT_ROOT / "configs" / "national.yaml").read_text(encoding="utf-8")


def config_text(data_dir: Path, run: str = "", notebooks: str = "[02_benchmarking, 03_referral_evaluation]") -> str:
    """configs/national.yaml on ``data_dir``, running ``notebooks``, with ``run`` in place of its commissioners/parallel."""
    text = NATIONAL_YAML.replace("data_dir: data/national", f"data_dir: {data_dir}")
    text = re.sub(r"\n  (commissioners|parallel): [^\n]*", "", text)
    return text.replace("  partition: commissioner", f"  partition: commissioner\n  notebooks: {notebooks}\n{run.rstrip()}")


def problems_of(text: str) -> str:
    with pytest.raises(ConfigError) as err:
        parse_config(text)
    return str(err.value)


# --------------------------------------------------------------------------------------------------
# The config
# --------------------------------------------------------------------------------------------------

def test_partition_needs_the_commissioners_table(tmp_path):
    msg = problems_of(config_text(Path("data/sample")))
    assert "run.partition: commissioner needs the commissioners table" in msg and "data/sample" in msg
    assert "pbc synth --national" in msg
    assert "does not exist" in problems_of(config_text(tmp_path / "nowhere"))


def test_unknown_commissioner_codes_are_errors_with_did_you_mean(nation):
    msg = problems_of(config_text(nation, run='  commissioners: ["5A0", "5A9", "5B2"]\n'))
    assert "names '5A9', which is not a commissioner" in msg
    assert "'5B2'" in msg and "did you mean '5A2'?" in msg
    assert "5A0" not in msg.split("names")[0]
    cfg = parse_config(config_text(nation, run='  commissioners: ["5A2", "5A0"]\n  parallel: 2\n'))
    assert (cfg.partition, cfg.commissioners, cfg.parallel) == ("commissioner", ("5A2", "5A0"), 2)


@pytest.mark.parametrize(("run", "expected"), [
    ("  parallel: -1\n", "run.parallel must be a whole number >= 0"),
    ("  parallel: 1.5\n", "run.parallel must be a whole number >= 0"),
    ("  parallel: true\n", "run.parallel must be a whole number >= 0"),
    ("  commissioners: []\n", 'run.commissioners must be "all" or a non-empty list'),
    ("  commissioners: 5A0\n", 'run.commissioners must be "all" or a non-empty list'),
    ('  commissioners: ["5A0", "5A0"]\n', "names a commissioner more than once"),
])
def test_bad_partition_settings(nation, run, expected):
    assert expected in problems_of(config_text(nation, run=run))


def test_partition_words_and_keys_without_partition(nation):
    text = config_text(nation).replace("partition: commissioner", "partition: comissioner")
    assert "did you mean 'commissioner'?" in problems_of(text)
    plain = f"run:\n  parallel: 2\nparameters:\n  data_dir: {nation}\n"
    assert "apply to a national run only" in problems_of(plain)
    assert parse_config(f"parameters:\n  data_dir: {nation}\n").partition == "none"


def test_commissioner_config_is_a_normal_config(nation, tmp_path):
    cfg = parse_config(config_text(nation, run='  commissioners: ["5A1"]\n  parallel: 1\n'))
    text = national.commissioner_config_text(cfg, "5A1", tmp_path / "slices" / "5A1", "20990101-000000-nat-x")
    sub = parse_config(text)
    assert (sub.partition, sub.workers, sub.name, sub.notebooks) == ("none", 1, "national-5A1", cfg.notebooks)
    assert {p["data_dir"] for p in sub.parameters.values() if "data_dir" in p} == {str(tmp_path / "slices" / "5A1")}
    assert sub.parameters["03_referral_evaluation"]["placebo_shift_months"] == 12 and sub.parameters["02_benchmarking"]["target"] == "reference"


# --------------------------------------------------------------------------------------------------
# The commissioners table and the slices
# --------------------------------------------------------------------------------------------------

def test_commissioners_table_has_every_practice(nation, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(nation, data)
    table = pd.read_csv(data / "commissioners.csv", dtype=str)
    table.iloc[3:].to_csv(data / "commissioners.csv", index=False)
    with pytest.raises(DataValidationError) as err:
        load_inputs(data, *WINDOW)
    found = [p for p in err.value.problems if p.table == "commissioners"]
    assert [p.check for p in found] == ["commissioner_missing"]
    assert "3 practices in 'practices' have no commissioners row" in found[0].message


def _digests(d: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}


def test_slices_are_valid_add_up_and_are_byte_stable(nation, tmp_path):
    first = national.write_slices(nation, tmp_path / "a", CODES, **QUIET)
    again = national.write_slices(nation, tmp_path / "b", CODES, **QUIET)
    whole = load_inputs(nation, *WINDOW)
    parts = {code: load_inputs(d, *WINDOW) for code, d in first.items()}   # each slice a valid data directory
    for table in ("practices", "population", "activity", "referrals", "engagement", "high_cost_patients", "budgets",
                  "commissioners"):
        assert sum(len(getattr(p, table)) for p in parts.values()) == len(getattr(whole, table)), table
    assert sum(p.activity["cost"].sum() for p in parts.values()) == pytest.approx(whole.activity["cost"].sum(), rel=1e-12)
    for code, p in parts.items():
        assert set(p.commissioners["commissioner_code"]) == {code}
        assert set(p.providers["provider_code"]) == set(p.activity["provider_code"]) | set(p.referrals["provider_code"])
        for table in ("population", "activity", "referrals"):   # the Parquet tables keep the national file's schema
            assert pq.read_schema(first[code] / f"{table}.parquet") == pq.read_schema(nation / f"{table}.parquet").remove_metadata()
        pd.testing.assert_frame_equal(p.tariff, whole.tariff)
        assert _digests(first[code]) == _digests(again[code])
    rates = tmp_path / "reference_rates.csv"
    whole.reference_rates.assign(rate=whole.reference_rates["rate"] * 2).to_csv(rates, index=False)
    shared = national.write_slices(nation, tmp_path / "c", ["5A0"], {"reference_rates": rates}, **QUIET)
    assert (shared["5A0"] / "reference_rates.csv").read_bytes() == rates.read_bytes()


# --------------------------------------------------------------------------------------------------
# End to end
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def national_run(nation, tmp_path_factory):
    """The nation with 5A1 broken (every practice engaged in one month: no comparison practices), 2 at a time."""
    from pbc_analysis.pipeline.run import run_pipeline

    data = tmp_path_factory.mktemp("broken") / "data"
    shutil.copytree(nation, data)
    eng = pd.read_csv(data / "engagement.csv", dtype=str, keep_default_na=False)
    members = pd.read_csv(data / "commissioners.csv", dtype=str)
    of_5a1 = eng["practice_code"].isin(members.loc[members["commissioner_code"] == "5A1", "practice_code"])
    eng.loc[of_5a1, "engaged_from"] = min(eng.loc[of_5a1 & (eng["engaged_from"] != ""), "engaged_from"])
    eng.to_csv(data / "engagement.csv", index=False)
    cfg = parse_config(config_text(data, run="  parallel: 2\n"))
    lines: list[str] = []
    reports = tmp_path_factory.mktemp("reports")
    with pytest.raises(national.CommissionersFailed) as err:
        run_pipeline(cfg, reports_dir=reports, echo=lambda *a, **k: lines.append(str(a[0]) if a else ""))
    return err.value, lines


@pytest.mark.slow
def test_national_run_reports_the_broken_commissioner_and_completes_the_others(national_run):
    err, lines = national_run
    run_dir = err.run_dir
    assert "1 of 3 commissioners failed" in str(err) and "5A1" in str(err)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert not (run_dir / "INCOMPLETE").exists()
    status = {c["commissioner_code"]: c for c in manifest["commissioners"]}
    assert [status[c]["status"] for c in CODES] == ["complete", "failed", "complete"]
    assert "never engaged" in status["5A1"]["reason"] and status["5A0"]["reason"] is None
    assert status["5A1"]["manifest_sha256"] is None
    for code in ("5A0", "5A2"):
        assert status[code]["manifest_sha256"] == hashlib.sha256((run_dir / f"commissioners/{code}/manifest.json").read_bytes()).hexdigest()
        assert (run_dir / f"commissioners/{code}/report.html").is_file()
    assert status["5A1"]["run_dir"] is None and not (run_dir / "commissioners/5A1").exists()   # failed before its run
    page = (run_dir / "national.html").read_text()
    assert all(code in page for code in CODES) and html.escape(status["5A1"]["reason"]) in page
    assert manifest["outputs"]["national.html"] == hashlib.sha256((run_dir / "national.html").read_bytes()).hexdigest()
    assert any(k.startswith("slices/5A0/") for k in manifest["outputs"]) and "data/reference_rates.csv" in manifest["outputs"]
    assert any("5A1" in line and "FAILED" in line for line in lines)
    rates = pd.read_csv(run_dir / "data/reference_rates.csv", dtype={"specialty_code": str})
    sliced = pd.read_csv(run_dir / "slices/5A0/reference_rates.csv", dtype={"specialty_code": str})
    pd.testing.assert_frame_equal(rates, sliced)


@pytest.mark.slow
def test_a_commissioner_directory_verifies_alone(national_run):
    from pbc_analysis.pipeline.verify import verify

    run_dir = national_run[0].run_dir / "commissioners" / "5A0"
    report = verify(run_dir, allow_dirty=True, **QUIET)
    assert report.exit_code == 0, report.lines
    assert report.identical
