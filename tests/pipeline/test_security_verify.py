"""Issue 12: ``pbc verify`` checks everything a run publishes, trusts nothing it reads, and compares with a tolerance.

Most cases use a small synthetic run directory (a table, results, a figure, the report, a notebook,
provenance, a published bundle) with a manifest written by :func:`manifest.write_manifest`, and call
:func:`verify.verify` in-process; a few drive the ``pbc`` command as an auditor would run it. The slow
cases use the shared ``sample_run`` (one complete rendered run, copied before anything is changed), and
only two of them re-run the whole pipeline: a faithful run (within tolerance, exit 0) and a forged one.
"""

from __future__ import annotations

import csv
import hashlib
import io
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

from pbc_analysis.core import paths
from pbc_analysis.pipeline import compare
from pbc_analysis.pipeline import manifest as mf
from pbc_analysis.pipeline import verify as vf
from pbc_analysis.pipeline.config import parse_config
from pbc_analysis.publish import results
from pbc_analysis.publish.report import ReportError, extract_tables

SAMPLE_CONFIG = paths.CONFIGS_DIR / "sample.yaml"
CLEAN = {"commit": "a" * 40, "dirty": False, "changed_files": []}


def pbc(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ, MPLBACKEND="Agg", JUPYTER_PREFER_ENV_PATH="1")
    return subprocess.run([sys.executable, "-m", "pbc_analysis.pipeline.cli", *args], check=False, capture_output=True, text=True,
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
    with pytest.raises(ValueError, match=r"link\.csv: a run directory may hold only its own plain files; this is a "
                                         r"symbolic link"):
        mf.output_hashes(run)
    (run / "tables" / "link.csv").unlink()
    (run / "tables" / "real.csv").write_text("a\n1\n")
    (run / "tables" / "inside.csv").symlink_to("real.csv")      # inside the run, still refused
    with pytest.raises(ValueError, match=r"inside\.csv: .* this is a symbolic link"):
        mf.output_hashes(run)


def tamper_table(run): (run / "tables" / "demo.csv").write_text((run / "tables" / "demo.csv").read_text().replace("40", "41"))
def tamper_results(run): (run / "results.json").write_text((run / "results.json").read_text().replace('"practices": 2', '"practices": 3'))
def tamper_section(run): (run / "results" / "demo.json").write_text("{}\n")
def tamper_figure(run): (run / "figures" / "demo.png").write_bytes((run / "figures" / "demo.png").read_bytes()[:-1] + b"\0")
def tamper_report(run): (run / "report.html").write_text("<html><script>alert(1)</script></html>\n")
def tamper_notebook(run):
    nb = run / "notebooks" / "01_data_quality.ipynb"
    nb.write_text(nb.read_text().replace("x = 1", "x = 2"))
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
def test_verify_reports_each_tampered_output_and_fails_without_rerunning(tmp_path, sample_inputs, monkeypatch, tamper, rel, what):
    run = make_run(tmp_path, sample_inputs, code=CLEAN)
    tamper(run)
    monkeypatch.setattr(vf, "run_pipeline", lambda *a, **k: pytest.fail("a tampered run must not be re-run"))
    printed: list[str] = []
    report = vf.verify(run, echo=printed.append, allow_dirty=True)
    assert report.exit_code == 1 and report.verdict == vf.TAMPERED
    assert len(report.published_problems) == 1 and report.published_problems[0].startswith(f"{rel}: {what}")
    assert any(line.startswith(f"TAMPERED: {rel}: {what}") for line in printed)
    assert printed[-1] == "TAMPERED: 1 problem with the published files (listed above); not re-run"
    assert not any(line.startswith("re-running") for line in printed)


def test_cli_verify_reports_a_tampered_table_and_fails_without_rerunning(tmp_path, sample_inputs):
    run = make_run(tmp_path, sample_inputs, code=CLEAN)
    tamper_table(run)
    proc = pbc("verify", str(run), "--allow-dirty")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "TAMPERED: tables/demo.csv: sha256 differs from the manifest: the file was changed after the run" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "TAMPERED: 1 problem with the published files (listed above); not re-run"
    assert "re-running" not in proc.stdout and "Traceback" not in proc.stderr


def test_verify_detects_an_edited_manifest(tmp_path, sample_inputs):
    run = make_run(tmp_path, sample_inputs, code=CLEAN)
    # the doctored publication of the old test: a table changed and its hash in the manifest updated to match
    tamper_table(run)
    rewrite_manifest(run, lambda m: m["outputs"].update({"tables/demo.csv": mf.sha256_file(run / "tables" / "demo.csv")}),
                     rehash=False)
    report = vf.verify(run, echo=lambda *a: None, allow_dirty=True)
    assert report.exit_code == 1 and report.verdict == vf.TAMPERED
    assert report.published_problems == ["manifest.json: content does not match its manifest_sha256: the manifest was edited after the run"]

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
def test_verify_refuses_a_forged_config_and_runs_nothing(tmp_path, sample_inputs, monkeypatch, line):
    run = make_run(tmp_path, sample_inputs, code=CLEAN)
    marker = tmp_path / "ran"
    forged = line.format(marker=marker)
    # a forger who rewrites the config text *and* every hash: the files are self-consistent ...
    rewrite_manifest(run, lambda m: m.update(config=config_block(forged)))
    assert mf.check_published(run) == []
    # ... and the re-run's own validation is what refuses it
    monkeypatch.setattr(vf, "run_pipeline", lambda *a, **k: pytest.fail("a forged config must not be run"))
    printed: list[str] = []
    with pytest.raises(vf.VerifyRefused, match="the config in manifest.json fails the checks of `pbc run` and is not run"):
        vf.verify(run, echo=printed.append, allow_dirty=True)
    assert not any(line.startswith("re-running") for line in printed)
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
    assert "tables/link.csv: a symbolic link, not a file of the run (a link in published/ could send a private file)" \
        in " ".join(problems)
    assert len(problems) == 6


# --------------------------------------------------------------------------------------------------
# The code: another commit, or uncommitted changes
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("now, expected", [
    ({"commit": "b" * 40, "dirty": False, "changed_files": []},
     "code differs from the run's: commit aaaaaaaaaaaa vs bbbbbbbbbbbb, 0 files modified"),
    ({"commit": "a" * 40, "dirty": True, "changed_files": [" M pbc_analysis/methods/funnel.py", "?? notes.txt", " M README.md"]},
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
    report = vf.verify(run, echo=lambda *a: None, rerun=False)
    assert report.exit_code == 1
    assert re.fullmatch(r"WARNING: code differs from the run's: commit 000000000000 vs [0-9a-f]{12}, \d+ files modified"
                        r"; verify fails unless --allow-dirty is given", report.lines[0]), report.lines[0]
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
    # a setting every check before the run accepts, but the notebook cannot use: supplied cost curves, whose
    # table only the Python API can give
    text = SAMPLE_CONFIG.read_text().replace("  workers: 0", "  workers: 1\n  notebooks: [05_budgets_and_risk]")
    text = re.sub(r"    curves: calibrated[^\n]*", "    curves: supplied", text)
    assert "curves: supplied" in text and "notebooks: [05_budgets_and_risk]" in text
    run = make_run(tmp_path, sample_inputs, text=text, code=CLEAN)
    proc = pbc("verify", str(run), "--allow-dirty")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    m = re.fullmatch(r"error: the re-run failed: notebook 05_budgets_and_risk\.ipynb failed in cell \d+ .*ValueError: "
                     r"curves='supplied' needs a supplied table.*; partial re-run output kept at (\S+)", last)
    assert m, last
    kept = Path(m.group(1))
    try:
        assert kept.is_dir() and (kept / "notebooks" / "05_budgets_and_risk.ipynb").is_file()
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
def test_cli_verify_a_faithful_rerun_on_another_machine_is_within_tolerance(sample_run, sample_rerun, tmp_path):
    """A run whose floats differ in the twelfth digit (another CPU) verifies as 'equal within tolerance', exit 0."""
    published = tmp_path / "published_run"
    shutil.copytree(sample_run, published, symlinks=True)
    perturb(sample_run / "tables" / "bm_ratios.csv", published / "tables" / "bm_ratios.csv", 1e-12)
    rewrite_manifest(published, lambda m: m.update(outputs=mf.output_hashes(published)))
    assert mf.check_published(published) == []
    proc = pbc("verify", str(published), "--allow-dirty", "--against", str(sample_rerun.rerun_dir))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "tables/bm_ratios.csv: equal within tolerance (" in out
    assert "tables/dq_completeness.csv: byte-identical" in out and "results.json: byte-identical" in out
    assert "published/tables/bm_ratios.csv: byte-identical" in out and "published/results.json: byte-identical" in out
    assert re.search(r"^report\.html: all \d+ tables identical, caption, headers and cells", out, re.MULTILINE), out
    assert re.search(r"^published/report\.html: all \d+ tables identical", out, re.MULTILINE), out
    n = len(vf.compared_names(json.loads((published / "manifest.json").read_text())["outputs"]))
    assert {"report.html", "published/report.html", "published/results.json", "published/README.txt"} <= set(
        vf.compared_names(json.loads((published / "manifest.json").read_text())["outputs"]))
    assert out.strip().splitlines()[-1] == (
        f"equal within tolerance: {n - 1} of {n} outputs identical, 1 equal within tolerance "
        f"(relative 1e-09, absolute 1e-12): tables/bm_ratios.csv; {vf.HASH_ONLY}")


# --------------------------------------------------------------------------------------------------
# The column floor, and counts compared exactly whatever their text
# --------------------------------------------------------------------------------------------------

def test_absolute_floor_scales_with_the_column():
    # risk_monitoring.variance = forecast - budget: millions cancelling to a few pounds, noise ~1e-9 of the millions
    published = pd.DataFrame({"variance": ["3525549.125", "-0.000123", "12.5"]})
    rerun = pd.DataFrame({"variance": ["3525549.125", "-0.000121", "12.5"]})
    result = compare.compare_frames(published, rerun, "tables/risk_monitoring.csv")
    assert result.state == compare.WITHIN, str(result)
    assert "column floor 0.00353" in result.details[0]
    assert compare.column_floor(published["variance"], rerun["variance"]) == pytest.approx(1e-9 * 3525549.125)
    # the same two values in a column of small numbers are far apart
    small = compare.compare_frames(pd.DataFrame({"x": ["-0.000123", "0.5"]}), pd.DataFrame({"x": ["-0.000121", "0.5"]}), "t")
    assert small.state == compare.DIFFERENT and "beyond tolerance" in small.details[0], str(small)
    # and a real change in the big column is still a difference
    moved = pd.DataFrame({"variance": ["3525549.125", "-0.01", "12.5"]})
    assert compare.compare_frames(published, moved, "tables/risk_monitoring.csv").state == compare.DIFFERENT


def test_count_columns_are_compared_exactly_even_when_written_as_floats():
    # a count column with a missing value is written by pandas as 12.0
    a = pd.DataFrame({"pod": ["ae", "op"], "month": ["2007-10", "2007-10"], "activity": ["12.0", ""], "cost": ["1.5", "2.5"]})
    for value in ("12.0000000001", "13.0"):
        b = a.copy()
        b.loc[0, "activity"] = value
        for name in ("tables/dq_monthly_totals.csv", "published/tables/dq_monthly_totals.csv"):
            result = compare.compare_frames(a, b, name)
            assert result.state == compare.DIFFERENT, (name, str(result))
            assert result.details == [f"activity: 1 rows differ (e.g. row 1: '12.0' vs '{value}', compared exactly: a count column)"]
    # the same cells in a money column of the same table are floats, compared with the tolerance
    b = a.copy()
    b.loc[0, "cost"] = "1.5000000000001"
    assert compare.compare_frames(a, b, "tables/dq_monthly_totals.csv").state == compare.WITHIN
    # and in an unregistered table the count is just a float column
    b = a.copy()
    b.loc[0, "activity"] = "12.0000000001"
    assert compare.compare_frames(a, b, "tables/not_registered.csv").state == compare.WITHIN
    assert compare.exact_kind("bm_scorecard", "gp_referrals_observed") == "count"      # a pattern of the registry
    assert compare.exact_kind("bm_scorecard", "gp_referrals_ratio") is None


# --------------------------------------------------------------------------------------------------
# Reports compared by their tables
# --------------------------------------------------------------------------------------------------

def _page(cell: str, caption: str = "Headline estimates", extra: str = "") -> str:
    return (f"<html><body><p>run {extra}</p><table><caption>{caption}</caption><tr><th>Estimate</th><th>Value</th></tr>"
            f"<tr><td>Referrals avoided</td><td>{cell}</td></tr></table>"
            "<table><caption>Second</caption><tr><th>A</th></tr><tr><td>1</td></tr></table></body></html>")


def test_compare_report_names_the_table_and_first_differing_cell(tmp_path):
    def cmp(a: str, b: str) -> compare.Comparison:
        (tmp_path / "a.html").write_text(a)
        (tmp_path / "b.html").write_text(b)
        return compare.compare_report(tmp_path / "a.html", tmp_path / "b.html")

    same = cmp(_page("8,908", extra="reports/x"), _page("8,908", extra="reports/y"))
    assert same.state == compare.IDENTICAL and str(same).startswith("report.html: all 2 tables identical")
    cell = cmp(_page("9,908"), _page("8,908"))
    assert cell.state == compare.DIFFERENT
    assert cell.details == ["table 'Headline estimates': row 1, 'Value': '9,908' published vs '8,908' re-run"]
    caption = cmp(_page("8,908", caption="Headline estimates (forged)"), _page("8,908"))
    assert caption.details == ["caption 'Headline estimates (forged)' published vs 'Headline estimates' re-run"]
    fewer = cmp(_page("1").replace("<table><caption>Second</caption><tr><th>A</th></tr><tr><td>1</td></tr></table>", ""), _page("1"))
    assert fewer.state == compare.DIFFERENT and fewer.details == ["1 tables published vs 2 re-run; only re-run: 'Second'"]


# --------------------------------------------------------------------------------------------------
# Errors are one line, never a traceback
# --------------------------------------------------------------------------------------------------

def test_verify_names_every_file_it_cannot_read(tmp_path, sample_inputs, monkeypatch):
    run = make_run(tmp_path, sample_inputs, code=CLEAN)
    locked = {(run / "report.html").resolve(), (run / "figures" / "demo.png").resolve()}
    real_open = open

    def guarded(path, *args, **kwargs):   # as root, chmod cannot make a file unreadable
        if Path(path).resolve() in locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(mf, "open", guarded, raising=False)
    with pytest.raises(vf.VerifyRefused) as exc:
        vf.verify(run, echo=lambda *a: None, allow_dirty=True)
    message = str(exc.value)
    assert message.startswith("2 files of the run cannot be read, so it cannot be checked; make them readable")
    assert f"{run / 'report.html'}: cannot be read (Permission denied)" in message
    assert f"{run / 'figures' / 'demo.png'}: cannot be read (Permission denied)" in message


@pytest.mark.parametrize("failure, expected", [
    ("report", (r"the re-run failed: the report could not be rendered: nbconvert failed to render .*09_evaluation_report"
                r"\.ipynb: boom; partial re-run output kept at (\S+)")),
    ("link", (r"the re-run failed: ValueError: .*leak\.csv: a run directory may hold only its own plain files; this is "
              r"a symbolic link; remove it; partial re-run output kept at (\S+)")),
], ids=["ReportError", "link-outside"])
def test_a_failing_rerun_is_one_line_and_keeps_its_output(tmp_path, sample_inputs, monkeypatch, failure, expected):
    run = make_run(tmp_path, sample_inputs, code=CLEAN)
    calls: list[dict] = []

    def rerun(cfg, reports_dir, render, run_id, echo):
        calls.append({"render": render, "run_id": run_id})
        out = Path(reports_dir) / run_id
        (out / "notebooks").mkdir(parents=True)
        if failure == "report":
            raise ReportError(f"nbconvert failed to render {out / 'notebooks' / '09_evaluation_report.ipynb'}: boom")
        (out / "tables").mkdir()
        (out / "tables" / "leak.csv").symlink_to(tmp_path / "outside.csv")
        (tmp_path / "outside.csv").write_text("a\n1\n")
        return out

    monkeypatch.setattr(vf, "run_pipeline", rerun)
    printed: list[str] = []
    report = vf.verify(run, echo=printed.append, allow_dirty=True)
    assert calls == [{"render": True, "run_id": "synthetic"}]   # the report and the bundle are re-made too
    assert report.exit_code == 1 and report.verdict == vf.RERUN_FAILED
    m = re.fullmatch(expected, report.error)
    assert m, report.error
    kept = Path(m.group(1))
    assert kept.name == "synthetic" and (kept / "notebooks").is_dir() and report.lines[-1] == f"error: {report.error}"
    shutil.rmtree(kept.parent, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# A forger who edits what is published and rewrites every hash
# --------------------------------------------------------------------------------------------------

def forge_report_cell(path: Path) -> tuple[str, str, str]:
    """Change the first number of the report's first table; return (caption, old cell, new cell)."""
    html = path.read_text(encoding="utf-8")
    table = extract_tables(html)[0]
    old = next(c for c in table["rows"][0] if re.search(r"\d", c))
    new = re.sub(r"\d", lambda d: str((int(d.group()) + 1) % 10), old, count=1)
    start = html.index(table["caption"].split()[0], html.index("<caption"))
    m = re.compile(r"(<td[^>]*>\s*)" + re.escape(old) + r"(\s*</td>)").search(html, start)
    assert m, old
    path.write_text(html[:m.start()] + m.group(1) + new + m.group(2) + html[m.end():], encoding="utf-8")
    assert extract_tables(path.read_text(encoding="utf-8"))[0]["rows"][0] != table["rows"][0]
    return table["caption"], old, new


def forge_csv_cell(path: Path, column: str) -> tuple[str, str]:
    """Add 5 to the first row's ``column`` (a disclosed count stays a multiple of 5); return (old, new)."""
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    i = rows[0].index(column)
    old = rows[1][i]
    rows[1][i] = str(int(float(old)) + 5)
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")
    return old, rows[1][i]


@pytest.mark.slow
def test_cli_verify_a_forged_report_and_bundle_with_rewritten_hashes_is_different(sample_run, sample_rerun, tmp_path):
    forged = tmp_path / "forged_run"
    shutil.copytree(sample_run, forged, symlinks=True)
    caption, old, new = forge_report_cell(forged / "report.html")
    forge_report_cell(forged / "published" / "report.html")
    table_old, table_new = forge_csv_cell(forged / "published" / "tables" / "dq_monthly_totals.csv", "activity")
    # every hash rewritten, the manifest's own too: the files are self-consistent ...
    rewrite_manifest(forged, lambda m: m.update(outputs=mf.output_hashes(forged)))
    assert mf.check_published(forged) == []
    # ... and only the re-run shows the forgery
    proc = pbc("verify", str(forged), "--allow-dirty", "--against", str(sample_rerun.rerun_dir))
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert f"report.html: DIFFERENT (table {caption!r}: row 1, " in out and f"{new!r} published vs {old!r} re-run" in out
    assert f"published/report.html: DIFFERENT (table {caption!r}: row 1, " in out
    assert (f"published/tables/dq_monthly_totals.csv: DIFFERENT (activity: 1 rows differ (e.g. row 1: {table_new!r} vs "
            f"{table_old!r}, compared exactly: a count column))") in out
    assert "tables/dq_monthly_totals.csv: byte-identical" in out and "published/results.json: byte-identical" in out
    assert out.strip().splitlines()[-1].startswith("NOT IDENTICAL: 3 of ")
    assert "Traceback" not in proc.stderr


# --------------------------------------------------------------------------------------------------
# --against: an existing re-run stands in for a new one only when it is one, made here and now
# --------------------------------------------------------------------------------------------------

def _config_edited(m: dict) -> None:
    m["config"]["text"] += "# edited\n"
    m["config"]["sha256"] = hashlib.sha256(m["config"]["text"].encode()).hexdigest()


def _input_changed(m: dict) -> None:
    first = sorted(m["inputs"])[0]
    m["inputs"][first] = "0" * 64


@pytest.mark.parametrize(("change", "reason"), [
    ("itself", "the run itself or a copy of it"),
    ("table", "tables/dq_completeness.csv"),
    ("run_id", "its run id is other, the run's sample"),
    ("config", "another config text"),
    ("inputs", "read other inputs than those here now"),
])
def test_verify_against_refuses_what_is_not_a_rerun_made_here(sample_run, sample_rerun, tmp_path, change, reason):
    if change == "itself":
        against = sample_run
    else:
        against = tmp_path / sample_rerun.rerun_dir.name
        shutil.copytree(sample_rerun.rerun_dir, against, symlinks=True)
        if change == "table":   # an edited re-run: its files no longer match its manifest
            table = against / "tables" / "dq_completeness.csv"
            table.write_text(table.read_text() + "\n")
        else:
            rewrite_manifest(against, {"run_id": lambda m: m.update(run_id="other"), "config": _config_edited,
                                       "inputs": _input_changed}[change])
    with pytest.raises(vf.VerifyRefused) as err:
        vf.verify(sample_run, echo=lambda *a, **k: None, allow_dirty=True, against=against)
    text = str(err.value)
    assert "cannot stand as the re-run" in text and reason in text, text


def test_cli_verify_against_the_kept_rerun_is_identical_without_rerunning(sample_run, sample_rerun):
    proc = pbc("verify", str(sample_run), "--allow-dirty", "--against", str(sample_rerun.rerun_dir))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "comparing with the re-run" in proc.stdout and "re-running" not in proc.stdout
    assert proc.stdout.strip().splitlines()[-1].startswith("identical: all ")
    proc = pbc("verify", str(sample_run), "--allow-dirty", "--against", str(sample_run))
    assert proc.returncode == 2 and "error: refused:" in proc.stderr and "copy of it" in proc.stderr
