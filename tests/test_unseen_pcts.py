"""Any PCT without hand edits: synthetic PCTs of other shapes go through `pbc synth`, `pbc init` and `pbc run`.

Other seeds, practice counts (45 to 150), lengths (48 to 72 months), start months (January, April, October)
and engagement timing than the embedded sample; the config `pbc init` writes is run as written. Each run must
complete (report and manifest), derive its settings from its own data (recorded in the manifest with their
rules), and report the derived values in the report.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pbc_analysis.core import paths

SHAPES = [
    pytest.param(["--seed", "11", "--practices", "45", "--months", "48", "--start", "2004-01"], id="45-practices-48-months-january"),
    pytest.param(["--seed", "12", "--practices", "150", "--months", "72", "--start", "2002-04"], id="150-practices-72-months-april"),
    pytest.param(["--seed", "13", "--practices", "80", "--months", "54", "--start", "2005-10"], id="80-practices-54-months-october"),
]


def _pbc(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pbc_analysis.pipeline.cli", *args], capture_output=True, text=True,
                          cwd=cwd or paths.PROJECT_ROOT, timeout=900)


@pytest.mark.slow
@pytest.mark.parametrize("shape", SHAPES)
def test_synth_init_run_with_no_edits(shape, tmp_path):
    data, config, reports = tmp_path / "data", tmp_path / "pct.yaml", tmp_path / "reports"
    made = _pbc("synth", *shape, "--out", str(data), "--quiet")
    assert made.returncode == 0, made.stderr
    init = _pbc("init", "--data-dir", str(data), "--out", str(config), "--name", "unseen")
    assert init.returncode == 0, init.stdout + init.stderr
    text = config.read_text(encoding="utf-8")
    assert "auto" in text and "#   auto -> " in text
    run = _pbc("run", "--config", str(config), "--reports-dir", str(reports))
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert "settings derived from the data" in run.stdout
    (run_dir,) = [p for p in reports.iterdir() if p.is_dir() and not p.is_symlink()]
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    derived = {(d["notebook"], d["setting"]): d for d in manifest["derived"]["settings"]}
    for key in (("03_referral_evaluation", "baseline_window"), ("04_savings_attribution", "base_year"),
                ("05_budgets_and_risk", "target_year"), ("03_referral_evaluation", "activity_end")):
        assert key in derived and derived[key]["rule"], key
    facts = next(iter(manifest["derived"]["facts"].values()))
    assert derived[("03_referral_evaluation", "baseline_window")]["value"][1] < facts["first_engagement"]
    assert (run_dir / "report.html").is_file()
    report = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "Settings derived from the data" in report
