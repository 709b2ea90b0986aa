"""The ingest as the first stage of a run (``extracts:``) and ``pbc ingest`` (pbc_analysis.pipeline.extracts).

The extracts are the sample written by ``pbc synth --events`` (same seed and shape as data/sample); the run of
``configs/sample_events.yaml`` on them must give the sample run's results (money to float noise), record the
extracts in its manifest, show the reconciliation in its report under the disclosure rule, and be checked by
``pbc verify`` (a changed extract or ingested table is caught; the re-run ingests again and compares).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from pbc_analysis.core import paths
from pbc_analysis.core.strict_yaml import ConfigError
from pbc_analysis.pipeline import compare
from pbc_analysis.pipeline import manifest as mf
from pbc_analysis.pipeline import verify as vf
from pbc_analysis.pipeline.cli import main
from pbc_analysis.pipeline.config import parse_config
from pbc_analysis.pipeline.run import run_pipeline
from pbc_analysis.synth.write import write_synthetic_pct

EVENTS_CONFIG = paths.CONFIGS_DIR / "sample_events.yaml"
INGEST_CONFIG = paths.CONFIGS_DIR / "ingest_sample.yaml"
QUIET = {"echo": lambda *a, **k: None}


@pytest.fixture(scope="module")
def events_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sample_events")
    write_synthetic_pct(out, progress=False, events=True)   # the sample's seed and shape
    return out


def _config_text(events_dir: Path, path: Path = EVENTS_CONFIG) -> str:
    return path.read_text(encoding="utf-8").replace("data/sample-events", str(events_dir))


def test_a_run_config_with_extracts_has_no_data_dir_and_reads_the_extracts(events_dir):
    cfg = parse_config(_config_text(events_dir), path=EVENTS_CONFIG)
    assert cfg.extracts is not None and cfg.extracts.referrals_from() == "extract"
    assert all("data_dir" not in p for p in cfg.parameters.values())
    inputs = mf.input_files(cfg)
    extracts = {p.name for p in inputs.values() if p.parent.name == "extracts"}
    assert extracts == {"outpatients.parquet", "admitted.parquet", "ae.parquet", "referrals.parquet", "registrations.csv",
                        "practice_reference.csv", "practice_attributes.csv", "succession.csv", "providers.csv", "prices.csv"}
    local = {p.name for p in inputs.values() if p.parent.name == "local"}
    assert local == {"engagement.csv", "budgets.csv", "provider_changes.csv", "reference_rates.csv", "high_cost_patients.csv"}


def test_extracts_with_data_dir_out_and_an_unknown_setting_are_refused_at_once(events_dir):
    text = _config_text(events_dir).replace("parameters:\n", "parameters:\n  data_dir: data/sample\n", 1)
    text = text.replace("extracts:\n", "extracts:\n  out: data/x\n  memory_limt: 2GB\n", 1)
    with pytest.raises(ConfigError) as err:
        parse_config(text, path=EVENTS_CONFIG)
    msg = str(err.value)
    assert "data_dir is set" in msg and "but so is extracts:" in msg
    assert "extracts.out: not used by `pbc run`" in msg
    assert "unknown setting 'memory_limt'" in msg and "memory_limit" in msg


def _ingest_config(tmp_path: Path, events_dir: Path, **changes: str) -> Path:
    text = _config_text(events_dir, INGEST_CONFIG).replace("data/sample-ingested", str(tmp_path / "ingested"))
    for old, new in changes.items():
        text = text.replace(old, new)
    path = tmp_path / "ingest.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_pbc_ingest_writes_the_tables_and_reports_every_source(tmp_path, events_dir, capsys):
    assert main(["ingest", "--config", str(_ingest_config(tmp_path, events_dir)), "--quiet"]) == 0
    out = capsys.readouterr().out
    truth = json.loads((events_dir / "extracts" / "events_truth.json").read_text())["sources"]
    for source in ("outpatients", "admitted", "ae", "referrals"):
        read = truth[source]["read"]["rows"]
        assert re.search(rf"{source}: read {read:,}, aggregated [0-9,]+, excluded [0-9,]+ \(", out), (source, out)
    written = sorted(p.name for p in (tmp_path / "ingested").iterdir())
    assert {"activity.parquet", "referrals.parquet", "population.parquet", "reconciliation.csv", "ingest.json"} <= set(written)


def test_pbc_ingest_refuses_a_bad_config_with_2_and_bad_extracts_with_1_writing_nothing(tmp_path, events_dir, capsys):
    bad_cfg = _ingest_config(tmp_path, events_dir, **{"threads: auto": "threads: many"})
    assert main(["ingest", "--config", str(bad_cfg), "--quiet"]) == 2
    assert "threads must be" in capsys.readouterr().err
    bad_map = tmp_path / "opa.yaml"
    opa = (paths.PACKAGE_DIR / "ingest" / "maps" / "hes_opa.yaml").read_text(encoding="utf-8")
    bad_map.write_text(opa.replace("PROCODE3", "PROVIDER_CODE_X"), encoding="utf-8")
    cfg = _ingest_config(tmp_path, events_dir, **{"map: hes_opa": f"map: {bad_map}"})
    assert main(["ingest", "--config", str(cfg), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "did not pass validation; nothing was written" in err and "PROVIDER_CODE_X" in err
    assert not (tmp_path / "ingested").exists()


@pytest.mark.slow
def test_a_run_from_extracts_gives_the_sample_results_and_verify_covers_the_ingest(tmp_path, events_dir, sample_run):
    cfg = parse_config(_config_text(events_dir), path=EVENTS_CONFIG)
    run = run_pipeline(cfg, reports_dir=tmp_path / "reports", run_id="events", **QUIET)
    manifest = json.loads((run / "manifest.json").read_text())
    # the extracts are the run's inputs; the ingested tables are its outputs
    assert {Path(k).name for k in manifest["inputs"]} >= {"outpatients.parquet", "registrations.csv", "engagement.csv"}
    assert {"data/activity.parquet", "data/reconciliation.csv", "data/ingest.json"} <= set(manifest["outputs"])
    section = manifest["ingest"]
    assert section["window"] == ["2003-04", "2008-03"]
    assert {e["source"] for e in section["extracts"]} >= {"outpatients", "prices"}
    assert all(len(e["sha256"]) == 64 for e in section["extracts"])
    rec = section["reconciliation_rows"]["outpatients"]
    assert rec["read"] == rec["aggregated"] + rec["excluded"] > 0
    # the same results as the sample run from its aggregated tables (money to float noise: costs per event)
    for table in sorted((sample_run / "tables").glob("*.csv")):
        if table.name == "dq_table_summary.csv":   # lists the input files: parquet here, csv there
            continue
        comp = compare.compare_files(table, run / "tables" / table.name, table.name, compare.DEFAULT)
        close = comp.state != compare.DIFFERENT or _only_residual_noise(table, run / "tables" / table.name)
        assert close, str(comp)
    # the report's data section shows the reconciliation, counts of events disclosed (no 1 to 7)
    html = (run / "report.html").read_text(encoding="utf-8")
    assert "Reconciliation of the extracts" in html and "derived from first outpatient" not in html
    shown = pd.read_csv(run / "published" / "tables" / "ingest_reconciliation.csv", dtype=str)
    events = shown[shown["source"] != "registrations"]["rows"]
    assert all(v == "*" or int(v) == 0 or (int(v) > 7 and int(v) % 5 == 0) for v in events)
    # verify: intact, re-ingests and compares the tables; a changed extract or ingested table is caught
    report = vf.verify(run, allow_dirty=True, **QUIET)
    assert report.exit_code == 0, report.lines
    assert any(line.startswith("data/activity.parquet: byte-identical") for line in report.lines), report.lines
    tampered = tmp_path / "tampered"
    shutil.copytree(run, tampered, symlinks=True)
    (tampered / "data" / "activity.parquet").write_bytes(b"PAR1 not the table")
    assert vf.verify(tampered, allow_dirty=True, rerun=False, **QUIET).exit_code == 1
    extract = events_dir / "extracts" / "prices.csv"
    saved = extract.read_bytes()
    try:
        extract.write_bytes(saved + b"\n")   # one more (empty) line: the extract's sha256 changes
        changed = vf.verify(run, allow_dirty=True, rerun=False, **QUIET)
        assert any("prices.csv" in line and "sha256 differs" in line for line in changed.lines), changed.lines
        assert changed.exit_code != 0
    finally:
        extract.write_bytes(saved)


def _only_residual_noise(a: Path, b: Path) -> bool:
    """Every difference is below 1e-5 GBP plus 1e-8 relative: the costs of ingested events are each cell's cost / its
    count, summed again (to 1e-9 GBP), so figures differ in their last written digits and residual terms of the
    decomposition (``hrg_mix``, near 0 by construction, of spends near 1e8) by up to 3.4e-6 GBP."""
    x, y = pd.read_csv(a), pd.read_csv(b)
    if list(x.columns) != list(y.columns) or len(x) != len(y):
        return False
    for c in x.columns:
        if x[c].dtype.kind == "f":
            if ((x[c] - y[c]).abs() > 1e-5 + 1e-8 * x[c].abs()).any():
                return False
        elif not x[c].equals(y[c]):
            return False
    return True


def test_a_run_whose_extracts_fail_validation_runs_no_notebook_and_is_marked_incomplete(tmp_path, events_dir):
    from pbc_analysis.core.names import INCOMPLETE
    from pbc_analysis.pipeline.run import RunError

    bad_map = tmp_path / "opa.yaml"
    opa = (paths.PACKAGE_DIR / "ingest" / "maps" / "hes_opa.yaml").read_text(encoding="utf-8")
    bad_map.write_text(opa.replace("PROCODE3", "PROVIDER_CODE_X"), encoding="utf-8")
    cfg = parse_config(_config_text(events_dir).replace("map: hes_opa", f"map: {bad_map}"), path=EVENTS_CONFIG)
    with pytest.raises(RunError, match="the extracts did not pass validation; no notebook was run") as err:
        run_pipeline(cfg, reports_dir=tmp_path / "reports", run_id="bad", **QUIET)
    assert "PROVIDER_CODE_X" in str(err.value)
    run = tmp_path / "reports" / "bad"
    assert "extracts did not pass validation" in (run / INCOMPLETE).read_text()
    assert not (run / "notebooks").exists() and not (run / "manifest.json").exists()
    assert not (tmp_path / "reports" / "latest").exists()
