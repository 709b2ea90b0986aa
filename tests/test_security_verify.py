"""Issue 12: ``pbc verify`` checks everything a run publishes, trusts nothing it reads, and compares with a tolerance.

Most cases use a small synthetic run directory (a table, results, a figure, the report, a notebook,
provenance, a published bundle) with a manifest written by :func:`manifest.write_manifest`, driven
through the ``pbc`` command as an auditor would run it. The slow cases use one full sample run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from pbc_analysis import compare, paths, results
from pbc_analysis import manifest as mf
from pbc_analysis import verify as vf
from pbc_analysis.config import parse_config

SAMPLE_CONFIG = paths.CONFIGS_DIR / "sample.yaml"
CLEAN = {"commit": "a" * 40, "dirty": False, "changed_files": []}


def pbc(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ, MPLBACKEND="Agg", JUPYTER_PREFER_ENV_PATH="1")
    return subprocess.run([sys.executable, "-m", "pbc_analysis.cli", *args], check=False, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(scope="module")
def sample_inputs() -> dict[str, str]:
    cfg = parse_config(SAMPLE_CONFIG.read_text(), path=SAMPLE_CONFIG)
    return {rel: mf.sha256_file(p) for rel, p in mf.input_files(cfg).items()}


def config_block(text: str) -> dict[str, str]:
    return {"path": "configs/sample.yaml", "text": text, "sha256": hashlib.sha256(text.encode()).hexdigest()}


def make_run(root: Path, inputs: dict[str, str], text: str | None = None, code: dict | None = None) -> Path:
    """A small run directory of every kind of output, with a manifest as `pbc run` writes it."""
    import matplotlib.pyplot as plt

    text = SAMPLE_CONFIG.read_text() if text is None else text
    run = root / "run"
    results.write_table(pd.DataFrame({"practice_code": ["A00001", "B00002"], "observed": [12, 40],
                                      "ratio": [1 / 3, 2.5], "p_value": [0.0123456789, 5.805319322e-30]}), "demo", run)
    results.write_section(run, "demo", {"ratio": 1 / 3, "practices": 2})
    results.merge_sections(run)
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([1, 2], [2, 1])
    results.save_figure(fig, "demo", run)
    plt.close(fig)
    (run / "report.html").write_text("<!doctype html><html><body><h1>PBC evaluation</h1></body></html>\n")
    (run / "notebooks").mkdir()
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")]), run / "notebooks" / "01_data_quality.ipynb")
    (run / "provenance.json").write_text(results.dumps({"run_id": "synthetic"}))
    (run / "published" / "tables").mkdir(parents=True)
    shutil.copy(run / "tables" / "demo.csv", run / "published" / "tables" / "demo.csv")
    (run / "run.log").write_text("log\n")
    cfg = parse_config(text, path=SAMPLE_CONFIG)
    manifest = {"run_id": "synthetic", "config": config_block(text), "parameters": cfg.parameters,
                "code": code or mf.git_info(), "inputs": dict(inputs), "outputs": mf.output_hashes(run),
                "headline": results.read_results(run)}
    mf.write_manifest(run, manifest)
    return run


def rewrite_manifest(run: Path, change, rehash: bool = True) -> None:
    manifest = json.loads((run / "manifest.json").read_text())
    change(manifest)
    if rehash:
        mf.write_manifest(run, manifest)
    else:
        (run / "manifest.json").write_text(json.dumps(manifest))


# --------------------------------------------------------------------------------------------------
# The manifest: every published file, and the manifest's own hash
# --------------------------------------------------------------------------------------------------

def test_manifest_lists_every_published_file_and_hashes_itself(tmp_path, sample_inputs):
    run = make_run(tmp_path, sample_inputs)
    manifest = json.loads((run / "manifest.json").read_text())
    assert sorted(manifest["outputs"]) == ["figures/demo.png", "notebooks/01_data_quality.ipynb", "provenance.json",
                                           "published/tables/demo.csv", "report.html", "results.json",
                                           "results/demo.json", "tables/demo.csv"]
    assert manifest["manifest_sha256"] == mf.manifest_hash(manifest)
    assert manifest["manifest_sha256"] == hashlib.sha256(
        results.dumps({k: v for k, v in manifest.items() if k != "manifest_sha256"}).encode()).hexdigest()
    assert mf.check_published(run) == []


def test_output_hashes_refuse_a_link_leaving_the_run(tmp_path):
    run = tmp_path / "run"
    (run / "tables").mkdir(parents=True)
    (tmp_path / "secret.txt").write_text("not part of the run\n")
    (run / "tables" / "link.csv").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(ValueError, match=r"link\.csv: a run directory may hold only its own files.*leading outside"):
        mf.output_hashes(run)


def tamper_table(run): (run / "tables" / "demo.csv").write_text((run / "tables" / "demo.csv").read_text().replace("40", "41"))
def tamper_results(run): (run / "results.json").write_text((run / "results.json").read_text().replace('"practices": 2', '"practices": 3'))
def tamper_section(run): (run / "results" / "demo.json").write_text("{}\n")
def tamper_figure(run): (run / "figures" / "demo.png").write_bytes((run / "figures" / "demo.png").read_bytes()[:-1] + b"\0")
def tamper_report(run): (run / "report.html").write_text("<html><script>alert(1)</script></html>\n")
def tamper_notebook(run): (run / "notebooks" / "01_data_quality.ipynb").write_text((run / "notebooks" / "01_data_quality.ipynb").read_text().replace("x = 1", "x = 2"))
def tamper_provenance(run): (run / "provenance.json").write_text('{"run_id": "other"}\n')
def tamper_bundle(run): (run / "published" / "tables" / "demo.csv").write_text("practice_code\nA00001\n")
def remove_figure(run): (run / "figures" / "demo.png").unlink()
def add_figure(run): shutil.copy(run / "figures" / "demo.png", run / "figures" / "extra.png")


@pytest.mark.parametrize("tamper, rel, what", [
    (tamper_table, "tables/demo.csv", "sha256 differs"),
    (tamper_results, "results.json", "sha256 differs"),
    (tamper_section, "results/demo.json", "sha256 differs"),
    (tamper_figure, "figures/demo.png", "sha256 differs"),
    (tamper_report, "report.html", "sha256 differs"),
    (tamper_notebook, "notebooks/01_data_quality.ipynb", "sha256 differs"),
    (tamper_provenance, "provenance.json", "sha256 differs"),
    (tamper_bundle, "published/tables/demo.csv", "sha256 differs"),
    (remove_figure, "figures/demo.png", "listed in the manifest but missing"),
    (add_figure, "figures/extra.png", "not listed in the manifest"),
], ids=lambda v: v.__name__ if callable(v) else None)
def test_cli_verify_reports_each_tampered_output_and_fails_without_rerunning(tmp_path, sample_inputs, tamper, rel, what):
    run = make_run(tmp_path, sample_inputs, code=CLEAN)
    tamper(run)
    proc = pbc("verify", str(run), "--allow-dirty")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"TAMPERED: {rel}: {what}" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "TAMPERED: 1 problem with the published files (listed above); not re-run"
    assert "re-running" not in proc.stdout and "Traceback" not in proc.stderr


def test_cli_verify_detects_an_edited_manifest(tmp_path, sample_inputs):
    run = make_run(tmp_path, sample_inputs, code=CLEAN)
    # the doctored publication of the old test: a table changed and its hash in the manifest updated to match
    tamper_table(run)
    rewrite_manifest(run, lambda m: m["outputs"].update({"tables/demo.csv": mf.sha256_file(run / "tables" / "demo.csv")}),
                     rehash=False)
    proc = pbc("verify", str(run), "--allow-dirty")
    assert proc.returncode == 1
    assert "TAMPERED: manifest.json: content does not match its manifest_sha256: the manifest was edited after the run" in proc.stdout
    assert "tables/demo.csv" not in proc.stdout.split("TAMPERED: manifest.json")[0]   # the table's own hash now matches

    rewrite_manifest(run, lambda m: m.pop("manifest_sha256"), rehash=False)
    assert any("no valid manifest_sha256" in p for p in mf.check_published(run))


def test_cli_verify_refuses_a_config_text_edited_in_the_manifest(tmp_path, sample_inputs):
    run = make_run(tmp_path, sample_inputs, code=CLEAN)
    rewrite_manifest(run, lambda m: m["config"].update(text=m["config"]["text"].replace("data/sample", "/etc")))
    proc = pbc("verify", str(run), "--allow-dirty")
    assert proc.returncode == 2
    assert "TAMPERED: manifest.json: config.text does not match config.sha256" in proc.stdout
    assert "error: refused: the config text in manifest.json does not match its recorded config.sha256" in proc.stderr
    assert "re-running" not in proc.stdout


@pytest.mark.parametrize("line", [
    'run:\n  name: !!python/object/apply:os.system ["touch {marker}"]\n',
    'run:\n  name: sample\nparameters:\n  data_dir: !!python/object/apply:os.system ["touch {marker}"]\n',
    'run:\n  name: sample\nparameters:\n  start_month: !!set {{"2003-04": null}}\n',
], ids=["python-object-name", "python-object-parameter", "set-parameter"])
def test_cli_verify_refuses_a_forged_config_and_runs_nothing(tmp_path, sample_inputs, line):
    run = make_run(tmp_path, sample_inputs, code=CLEAN)
    marker = tmp_path / "ran"
    forged = line.format(marker=marker)
    # a forger who rewrites the config text *and* every hash: the files are self-consistent ...
    rewrite_manifest(run, lambda m: m.update(config=config_block(forged)))
    assert mf.check_published(run) == []
    # ... and the re-run's own validation is what refuses it
    proc = pbc("verify", str(run), "--allow-dirty")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "error: refused: the config in manifest.json fails the checks of `pbc run` and is not run" in proc.stderr
    assert "re-running" not in proc.stdout and "Traceback" not in proc.stderr
    assert not marker.exists()


def test_paths_in_a_tampered_manifest_are_never_read_outside_the_run(tmp_path, sample_inputs, monkeypatch):
    run = make_run(tmp_path, sample_inputs, code=CLEAN)
    (tmp_path / "secret.txt").write_text("outside\n")
    os.symlink(tmp_path / "secret.txt", run / "tables" / "link.csv")
    digest = mf.sha256_file(tmp_path / "secret.txt")
    rewrite_manifest(run, lambda m: m["outputs"].update({"../secret.txt": digest, str(tmp_path / "secret.txt"): digest,
                                                         "tables/link.csv": digest, "tables/./demo.csv": digest,
                                                         "manifest.json": digest}))
    read: list[Path] = []
    real = mf.sha256_file
    monkeypatch.setattr(mf, "sha256_file", lambda p, *a: read.append(Path(p).resolve()) or real(p, *a))
    problems = mf.check_published(run)
    for rel in ("../secret.txt", str(tmp_path / "secret.txt"), "tables/link.csv", "tables/./demo.csv", "manifest.json"):
        assert f"{rel!r}: not a plain relative path to a published file inside the run directory; not read" in problems
    assert read and all(p.is_relative_to(run.resolve()) for p in read)
    assert len(problems) == 5


# --------------------------------------------------------------------------------------------------
# The code: another commit, or uncommitted changes
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("now, expected", [
    ({"commit": "b" * 40, "dirty": False, "changed_files": []},
     "code differs from the run's: commit aaaaaaaaaaaa vs bbbbbbbbbbbb, 0 files modified"),
    ({"commit": "a" * 40, "dirty": True, "changed_files": [" M pbc_analysis/funnel.py", "?? notes.txt", " M README.md"]},
     "code differs from the run's: commit aaaaaaaaaaaa vs aaaaaaaaaaaa, 3 files modified"),
], ids=["other-commit", "dirty"])
def test_verify_reports_code_differences_first_and_fails_unless_allowed(tmp_path, sample_inputs, monkeypatch, now, expected):
    run = make_run(tmp_path, sample_inputs, code=CLEAN)
    monkeypatch.setattr(mf, "git_info", lambda *a, **k: now)
    printed: list[str] = []
    report = vf.verify(run, echo=printed.append, rerun=False)
    assert printed[0] == f"WARNING: {expected}; verify fails unless --allow-dirty is given"
    assert report.code == expected and report.exit_code == 1 and report.verdict == vf.CODE_DIFFERS
    assert report.lines[-1].endswith("the code differs from the run's (give --allow-dirty to accept)")
    allowed = vf.verify(run, echo=lambda *a: None, rerun=False, allow_dirty=True)
    assert allowed.exit_code == 0 and allowed.verdict == vf.INTACT and allowed.lines[0] == f"WARNING: {expected}"


def test_verify_flags_a_run_made_from_a_dirty_checkout(tmp_path, sample_inputs, monkeypatch):
    run = make_run(tmp_path, sample_inputs, code={"commit": "a" * 40, "dirty": True, "changed_files": [" M x.py", " M y.py"]})
    monkeypatch.setattr(mf, "git_info", lambda *a, **k: dict(CLEAN))
    report = vf.verify(run, echo=lambda *a: None, rerun=False)
    assert report.exit_code == 1
    assert "the run itself was made from a checkout with uncommitted changes (2 files)" in report.code


def test_cli_verify_at_another_commit(tmp_path, sample_inputs):
    run = make_run(tmp_path, sample_inputs, code={"commit": "0" * 40, "dirty": False, "changed_files": []})
    proc = pbc("verify", str(run), "--no-rerun")
    assert proc.returncode == 1
    first = proc.stdout.splitlines()[0]
    assert re.fullmatch(r"WARNING: code differs from the run's: commit 000000000000 vs [0-9a-f]{12}, \d+ files modified"
                        r"; verify fails unless --allow-dirty is given", first), first
    proc = pbc("verify", str(run), "--no-rerun", "--allow-dirty")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "intact: every published file matches the manifest (not re-run)"


def test_git_info_counts_changes_but_not_reports(tmp_path):
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), "-c", "user.email=t@example.org", "-c", "user.name=t", *args],
                       check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", "code.py")
    git("commit", "-q", "-m", "one")
    (tmp_path / "reports" / "run1").mkdir(parents=True)
    (tmp_path / "reports" / "run1" / "report.html").write_text("<html></html>\n")
    clean = mf.git_info(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{40}", clean["commit"]) and clean["dirty"] is False and clean["changed_files"] == []
    (tmp_path / "code.py").write_text("x = 2\n")
    (tmp_path / "new.py").write_text("y = 1\n")
    dirty = mf.git_info(tmp_path)
    assert dirty["dirty"] is True and sorted(dirty["changed_files"]) == [" M code.py", "?? new.py"]
    assert vf.code_difference(clean, dirty) == (f"code differs from the run's: commit {clean['commit'][:12]} vs "
                                                f"{clean['commit'][:12]}, 2 files modified")


# --------------------------------------------------------------------------------------------------
# A failed re-run
# --------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_cli_failed_rerun_names_the_notebook_and_keeps_its_output(tmp_path, sample_inputs):
    text = SAMPLE_CONFIG.read_text().replace("  workers: 0", "  workers: 1\n  notebooks: [01_data_quality]").replace(
        "completeness_recent_months: 6", "completeness_recent_months: 1000")
    assert "completeness_recent_months: 1000" in text and "notebooks: [01_data_quality]" in text
    run = make_run(tmp_path, sample_inputs, text=text, code=CLEAN)
    proc = pbc("verify", str(run), "--allow-dirty")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    m = re.fullmatch(r"error: the re-run failed: notebook 01_data_quality\.ipynb failed in cell \d+ .*ValueError: "
                     r"completeness needs at least 24 months.*; partial re-run output kept at (\S+)", last)
    assert m, last
    kept = Path(m.group(1))
    try:
        assert kept.is_dir() and (kept / "notebooks" / "01_data_quality.ipynb").is_file()
        assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    finally:
        shutil.rmtree(kept.parent, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# Tolerance: one comparison for the back tests and for verify
# --------------------------------------------------------------------------------------------------

def test_pvalue_columns_are_written_without_noise_digits(tmp_path):
    for name in ("p", "p_value", "pvalue", "dispersion_p", "pretrend_p", "pretrend_p_chi2", "ljung_box_p",
                 "probability_overspend", "probability_exhausted"):
        assert results.is_pvalue_column(name), name
    for name in ("ratio", "upper", "pool", "top_slice", "person_years", "lpl", "upl", "pct_percentile", "dispersion_df"):
        assert not results.is_pvalue_column(name), name
    # the two machines: the same p-values, different in the tenth digit, now write the same bytes
    machine = [pd.DataFrame({"k": ["a", "b", "c", "d"], "probability_overspend": [p, q, 0.0, 0.9999161447],
                             "pretrend_p": [0.0001914587422, 0.4113358558, 1.0, np.nan], "ratio": [0.1905346895, 1 / 3, 2.0, 7.0]})
               for p, q in ((5.805319322e-30, 8.926399287e-17), (5.805319321e-30, 8.926399286e-17))]
    a = results.write_table(machine[0], "a", tmp_path).read_text()
    b = results.write_table(machine[1], "b", tmp_path).read_text()
    assert a == b == ("k,probability_overspend,pretrend_p,ratio\n"
                      "a,1e-16,0.0001915,0.1905346895\nb,1e-16,0.4113,0.3333333333\nc,0,1,2\nd,0.9999,,7\n")
    assert pd.read_csv(tmp_path / "tables" / "a.csv")["probability_overspend"].dtype == float


def test_compare_keeps_keys_counts_flags_text_and_missing_values_exact():
    base = pd.DataFrame({"code": ["A", "B"], "n": ["1234567890", "7"], "flag": ["True", "False"], "x": ["1.5", "2.25"]})
    for col, value in (("code", "C"), ("n", "1234567891"), ("flag", "True"), ("x", "")):
        other = base.copy()
        other.loc[1, col] = value
        result = compare.compare_frames(base, other, "t")
        assert result.state == compare.DIFFERENT and result.details[0].startswith(f"{col}: "), (col, str(result))
    assert compare.compare_frames(base, base.iloc[:1], "t").details == ["2 rows published vs 1 rows re-run"]
    near = base.copy()
    near.loc[1, "x"] = "2.2500000000001"
    assert compare.compare_frames(base, near, "t").state == compare.WITHIN
    zero = pd.DataFrame({"x": ["0", "1.5"]})
    assert compare.compare_frames(zero, pd.DataFrame({"x": ["-3e-15", "1.5"]})).state == compare.WITHIN   # absolute floor
    assert compare.compare_frames(zero, pd.DataFrame({"x": ["-3e-9", "1.5"]})).state == compare.DIFFERENT


def test_compare_json_recursively_with_the_same_rule():
    a = {"s": {"saving": 1234.5, "n": 60, "ok": True, "name": "x", "list": [0.1, 2]}}
    near = {"s": {"saving": 1234.5 * (1 + 1e-12), "n": 60, "ok": True, "name": "x", "list": [0.1 * (1 + 1e-12), 2]}}
    result = compare.compare_json(a, near)
    assert result.state == compare.WITHIN and result.max_rel == pytest.approx(1e-12, rel=0.01)
    for change in ({"n": 61}, {"ok": 1}, {"name": "y"}, {"saving": 1234.5 * (1 + 1e-6)}, {"extra": 1}):
        other = {"s": {**a["s"], **change}}
        result = compare.compare_json(a, other)
        assert result.state == compare.DIFFERENT and result.details[0].startswith(f"s.{next(iter(change))}: "), str(result)


def perturb(path: Path, out: Path, rel: float) -> list[str]:
    """Write ``path`` with every float multiplied by (1 + rel), printed in full; return the float columns."""
    typed = pd.read_csv(path)
    text = pd.read_csv(path, dtype=str, keep_default_na=False)
    floats = [c for c in typed.columns if typed[c].dtype == float]
    for c in floats:
        text[c] = [repr(float(v) * (1 + rel)) if v != "" else v for v in text[c]]
    out.parent.mkdir(parents=True, exist_ok=True)
    text.to_csv(out, index=False, lineterminator="\n")
    return floats


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    from pbc_analysis.run import load_config, run_pipeline

    return run_pipeline(load_config(SAMPLE_CONFIG), reports_dir=tmp_path_factory.mktemp("reports"), run_id="sample",
                        echo=lambda *a, **k: None)


PERTURBED_TABLES = ("bm_ratios.csv", "risk_monitoring.csv", "ev_did_effects.csv", "att_ledger.csv")


@pytest.mark.slow
@pytest.mark.parametrize("table", PERTURBED_TABLES)
def test_perturbed_floats_pass_at_1e12_and_fail_at_1e6_in_back_test_and_verify(sample_run, tmp_path, table):
    produced = sample_run / "tables" / table
    for rel, state in ((1e-12, compare.WITHIN), (1e-6, compare.DIFFERENT)):
        published = tmp_path / f"{rel:g}"
        floats = perturb(produced, published / "tables" / table, rel)
        assert floats and (published / "tables" / table).read_bytes() != produced.read_bytes()
        back = compare.compare_files(published / "tables" / table, produced, table, labels=("expected", "produced"))
        (checked,) = vf.compare_outputs(published, sample_run, [f"tables/{table}"])
        assert back.state == checked.state == state, (str(back), str(checked))
        if state == compare.DIFFERENT:
            assert any(d.startswith(f"{c}: ") and "beyond tolerance" in d for d in checked.details for c in floats), str(checked)
        else:
            assert checked.max_rel == pytest.approx(1e-12, rel=0.01), str(checked)


@pytest.mark.slow
def test_cli_verify_a_faithful_rerun_on_another_machine_is_within_tolerance(sample_run, tmp_path):
    """A run whose floats differ in the twelfth digit (another CPU) verifies as 'equal within tolerance', exit 0."""
    published = tmp_path / "published_run"
    shutil.copytree(sample_run, published, symlinks=True)
    perturb(sample_run / "tables" / "bm_ratios.csv", published / "tables" / "bm_ratios.csv", 1e-12)
    rewrite_manifest(published, lambda m: m.update(outputs=mf.output_hashes(published)))
    assert mf.check_published(published) == []
    proc = pbc("verify", str(published), "--allow-dirty")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "tables/bm_ratios.csv: equal within tolerance (" in out
    assert "tables/dq_completeness.csv: byte-identical" in out and "results.json: byte-identical" in out
    n = len(vf.compared_names(json.loads((published / "manifest.json").read_text())["outputs"]))
    assert out.strip().splitlines()[-1].startswith(
        f"equal within tolerance: {n - 1} of {n} outputs byte-identical, 1 equal within tolerance "
        f"(relative 1e-09, absolute 1e-12): tables/bm_ratios.csv")
