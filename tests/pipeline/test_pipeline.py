"""End-to-end: `pbc run` on the embedded sample, reproducibility, `pbc verify`, failures.

These are the functional tests of issue 2's "done when": a report from the sample, identical result
tables from two runs, a verified run, a misspelt key failing before any notebook runs, and a failing
cell stopping the run with the notebook and cell named.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import nbformat
import pytest

from pbc_analysis.core import paths
from pbc_analysis.pipeline.manifest import write_manifest
from pbc_analysis.pipeline.run import REPORT_NOTEBOOK, RunError, parse_config, run_pipeline, sha256_file, verify
from pbc_analysis.publish import report

pytestmark = pytest.mark.slow
SAMPLE_CONFIG = paths.CONFIGS_DIR / "sample.yaml"


def _sequential_config():
    """configs/sample.yaml with ``workers: 1``: the notebooks one after another (the shared run has them in parallel)."""
    text = SAMPLE_CONFIG.read_text().replace("  workers: 0 ", "  workers: 1 ")
    assert "workers: 1 " in text
    return parse_config(text, path=SAMPLE_CONFIG)


@pytest.fixture(scope="module")
def runs(sample_run, tmp_path_factory):
    """Two full runs of the sample config: the shared ``sample_run`` (tests/conftest.py, notebooks in parallel) and
    a second one with the notebooks one after another, so that one second run shows both that a rerun and that a
    sequential run give the same tables.

    The second run is made in its own reports directory beside a copy of the first, so that its
    ``index.html`` lists both runs while the shared run's reports directory keeps only that run.
    """
    reports = tmp_path_factory.mktemp("reports")
    shutil.copytree(sample_run, reports / sample_run.name, symlinks=True)
    second = run_pipeline(_sequential_config(), reports_dir=reports, run_id="second", echo=lambda *a, **k: None)
    return sample_run, second


def test_run_produces_report_tables_and_manifest(runs):
    run_dir, _ = runs
    for name in ("report.html", "results.json", "manifest.json", "provenance.json", "run.log"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "notebooks" / "01_data_quality.ipynb").is_file()
    assert (run_dir / "notebooks" / f"{REPORT_NOTEBOOK}.ipynb").is_file()
    tables = sorted(p.name for p in (run_dir / "tables").glob("*.csv"))
    assert "dq_completeness.csv" in tables and "dq_practice_consistency.csv" in tables

    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["code"]["commit"] and isinstance(manifest["code"]["dirty"], bool)
    assert len(manifest["parameters_hash"]) == 64
    assert manifest["lockfile_sha256"] == sha256_file(paths.PROJECT_ROOT / "requirements.lock")
    assert manifest["packages"]["pandas"] and manifest["packages"]["papermill"]
    for rel, digest in manifest["inputs"].items():
        assert sha256_file(paths.PROJECT_ROOT / rel) == digest
    assert any(rel.startswith("data/sample/activity") for rel in manifest["inputs"])
    for rel, digest in manifest["outputs"].items():
        assert sha256_file(run_dir / rel) == digest
    numbered = {p.stem for p in paths.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")}
    assert set(manifest["notebooks"]["seconds"]) == numbered and {"01_data_quality", "02_benchmarking"} <= numbered
    assert manifest["report"]["renderer"] in ("quarto", "nbconvert")
    assert manifest["command"] == "pbc run --config configs/sample.yaml"


def test_report_is_self_contained_and_from_results(runs):
    run_dir, _ = runs
    html = (run_dir / "report.html").read_text()
    assert report.check_self_contained(html) == []
    assert "Data and data quality" in html and "Reproducibility" in html and "Benchmarking practices" in html
    assert "data:image/png;base64" in html
    res = json.loads((run_dir / "results.json").read_text())
    assert res["data_quality"]["latest_complete_month"] in html
    assert "def " not in html and "import " not in html  # no code cells


def test_two_runs_give_identical_result_tables(runs):
    first, second = runs
    a = {k: v for k, v in json.loads((first / "manifest.json").read_text())["outputs"].items() if k.startswith(("tables/", "results"))}
    b = {k: v for k, v in json.loads((second / "manifest.json").read_text())["outputs"].items() if k.startswith(("tables/", "results"))}
    assert a == b and len(a) >= 8


def test_data_quality_detects_the_planted_lag(runs, sample_truth):
    run_dir, _ = runs
    truth = sample_truth
    res = json.loads((run_dir / "results.json").read_text())["data_quality"]
    assert res["incomplete_trailing_months"]["gp_referral"] == 0   # referrals are not lagged
    # every hospital point of delivery: the months the generator made clearly short (<= 85%) are flagged
    short = sum(1 for f in truth["completeness_factors"] if f <= 0.85) if isinstance(truth.get("completeness_factors"), list) else 2
    for pod in ("first_op", "followup_op", "elective"):
        assert res["incomplete_trailing_months"][pod] >= short
    assert res["practices"] == 60


def test_verify_identical_and_detects_a_changed_table(runs, sample_rerun, tmp_path):
    run_dir, _ = runs
    out = sample_rerun                     # verify(run_dir, keep=True): a real re-run of the shared run
    assert out.identical, str(out)
    assert "identical: all" in str(out) and out.rerun_dir is not None and out.rerun_dir.name == run_dir.name

    tampered = tmp_path / "tampered"
    shutil.copytree(run_dir, tampered, symlinks=True)
    table = tampered / "tables" / "dq_practice_consistency.csv"
    lines = table.read_text().splitlines()
    cells = lines[1].split(",")
    cells[2] = str(int(cells[2]) + 1)          # list_last_month of the first practice
    lines[1] = ",".join(cells)
    table.write_text("\n".join(lines) + "\n")
    manifest = json.loads((tampered / "manifest.json").read_text())
    manifest["outputs"]["tables/dq_practice_consistency.csv"] = sha256_file(table)  # a doctored publication
    write_manifest(tampered, manifest)  # a forger who recomputes every hash: only the re-run can tell
    out = verify(tampered, echo=lambda *a, **k: None, allow_dirty=True, against=sample_rerun.rerun_dir)
    assert not out.identical
    text = str(out)
    assert "tables/dq_practice_consistency.csv: DIFFERENT (" in text and "list_last_month: 1 rows" in text
    assert "NOT IDENTICAL" in text


def test_cli_misspelt_key_fails_before_any_notebook_runs(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(SAMPLE_CONFIG.read_text().replace("completeness_threshold", "completness_threshold"))
    reports = tmp_path / "reports"
    proc = subprocess.run([sys.executable, "-m", "pbc_analysis.pipeline.cli", "run", "--config", str(bad), "--reports-dir", str(reports)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "completness_threshold" in proc.stderr and "did you mean 'completeness_threshold'" in proc.stderr
    assert not reports.exists()


def test_failing_cell_names_notebook_and_cell_and_keeps_output(tmp_path):
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    params = nbformat.v4.new_code_cell('run_dir = ""\nx = 1')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("y = x + 1"), nbformat.v4.new_code_cell("raise ValueError('planted failure')")]
    nbformat.write(nb, nbdir / "01_fails.ipynb")
    cfg = parse_config("notebooks:\n  01_fails:\n    x: 2\n", notebooks_dir=nbdir)
    with pytest.raises(RunError) as err:
        run_pipeline(cfg, reports_dir=tmp_path / "reports", run_id="r", echo=lambda *a, **k: None)
    msg = str(err.value)
    assert "01_fails.ipynb" in msg and "ValueError: planted failure" in msg and "cell" in msg
    partial = tmp_path / "reports" / "r" / "notebooks" / "01_fails.ipynb"
    assert partial.is_file()
    assert "planted failure" in partial.read_text()


def test_report_benchmarking_section_discloses_counts(runs):
    """The flagged-practices table shows GP referral counts only as multiples of 5 or '*' (DOMAIN.md
    publishing rules); ratios are modelled and shown as they are; flagged practices are named."""
    import re

    run_dir, _ = runs
    html = (run_dir / "report.html").read_text()
    res = json.loads((run_dir / "results.json").read_text())
    head = res["benchmarking"]
    for code in head["possible_under_referrers"] + head["high_referrers"]:
        assert code in html
    start = html.index("Practices flagged in the latest period")
    table = html[start:html.index("</table>", start)]
    rows = [re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", r, flags=re.S) for r in re.findall(r"<tr[^>]*>(.*?)</tr>", table, flags=re.S)]
    header, body = rows[0], [r for r in rows[1:] if r]
    col = header.index("GP referrals (count)")
    counts = [r[col].strip() for r in body]
    assert body and all(v == "*" or (v.isdigit() and int(v) % 5 == 0) for v in counts), counts


def test_parallel_failure_names_the_notebook_and_lets_the_other_finish(tmp_path):
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    meta = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    for name, body in (("01_ok", "import pathlib\npathlib.Path(run_dir, 'ok.txt').write_text('done')"),
                       ("02_fails", "raise RuntimeError('planted parallel failure')")):
        nb = nbformat.v4.new_notebook(metadata=meta)
        params = nbformat.v4.new_code_cell('run_dir = ""')
        params.metadata["tags"] = ["parameters"]
        nb.cells = [params, nbformat.v4.new_code_cell(body)]
        nbformat.write(nb, nbdir / f"{name}.ipynb")
    cfg = parse_config("run:\n  workers: 2\n", notebooks_dir=nbdir)
    with pytest.raises(RunError, match="02_fails.ipynb failed in cell .*RuntimeError: planted parallel failure"):
        run_pipeline(cfg, reports_dir=tmp_path / "reports", run_id="r", echo=lambda *a, **k: None)
    assert (tmp_path / "reports" / "r" / "ok.txt").read_text() == "done"


def test_sequential_run_gives_the_same_tables_as_the_parallel_one(runs):
    par, seq = runs
    assert json.loads((seq / "manifest.json").read_text())["config"]["text"].count("workers: 1 ") == 1
    names = sorted(p.name for p in (par / "tables").glob("*.csv"))
    assert names and names == sorted(p.name for p in (seq / "tables").glob("*.csv"))
    for n in names:
        assert (par / "tables" / n).read_bytes() == (seq / "tables" / n).read_bytes(), n
    man = json.loads((par / "manifest.json").read_text())
    assert set(man["notebooks"]["seconds"]) == set(man["notebooks"]["order"])


def test_report_budgets_section_discloses_patient_counts(runs):
    """The budgets section states how many patients cross the risk-pool threshold: rounded to 5."""
    import re

    html = (runs[0] / "report.html").read_text(encoding="utf-8")
    m = re.search(r"about ([\d,*]+) patients a year will cross the threshold", html)
    assert m, "the risk-pool sentence is missing from the report"
    n = m.group(1)
    assert n == "*" or int(n.replace(",", "")) % 5 == 0
    assert "Budget statement per practice" in html


# Columns whose header names something counted (people or events) ...
_COUNTED = re.compile(r"referral|activity|admission|attendance|patient|event|observed|spell", re.IGNORECASE)
# ... unless the header says it is modelled or a ratio, rate, share, money or an interval
_MODELLED = re.compile(r"ratio|rate|avoided|%|per |gbp|change|effect|expected|ci\b|interval|share|index|p\b|percentile",
                       re.IGNORECASE)


def _disclosed(cell: str) -> bool:
    v = cell.replace(",", "").strip()
    if v in ("*", "0", ""):
        return True
    if not re.fullmatch(r"\d+", v):
        return True  # not a count (text, a decimal, an interval)
    n = int(v)
    return n >= 10 and n % 5 == 0


def test_every_count_in_the_report_is_disclosed(runs):
    """Scan every table of the published HTML: counts of people or events are 0, '*' or a multiple of 5 of
    at least 10 (never 1 to 7, never unrounded). A count column is one labelled '(count)' or any numeric
    column of a table captioned as counts; every other column whose header names something counted must
    say it is modelled (a ratio, rate, interval, money ...) so that nothing slips past the scan."""
    tables = report.extract_tables((runs[0] / "report.html").read_text(encoding="utf-8"))
    assert len(tables) >= 10
    checked = 0
    for t in tables:
        table_of_counts = "(counts" in t["caption"].lower()
        for j, head in enumerate(t["headers"]):
            cells = [r[j] for r in t["rows"] if j < len(r)]
            is_count = "(count)" in head.lower() or (table_of_counts and re.search(r"\d{4}/\d{2}", head))
            if is_count:
                bad = [c for c in cells if not _disclosed(c)]
                assert not bad, f"table {t['caption']!r}, column {head!r}: undisclosed counts {bad[:5]}"
                checked += len(cells)
            elif _COUNTED.search(head):
                assert _MODELLED.search(head), (f"table {t['caption']!r}: column {head!r} looks like a count but is "
                                                "neither labelled '(count)' nor marked as modelled")
    assert checked > 50
    assert all(t["caption"] for t in tables), "every table needs a title"


def test_index_lists_runs_with_headlines(runs):
    reports = runs[1].parent   # the second run's reports directory: a copy of the first run and the second
    html = (reports / "index.html").read_text(encoding="utf-8")
    assert report.check_self_contained(html) == [] and "<script" not in html
    for run in runs:
        assert f'href="{run.name}/report.html"' in html
    res = json.loads((runs[0] / "results.json").read_text())
    avoided = res["evaluation"]["referrals_avoided"]["estimate"]
    assert f"{avoided:,.0f}" in html
    man = json.loads((runs[0] / "manifest.json").read_text())
    assert man["parameters_hash"][:12] in html




def test_report_opens_in_a_headless_browser(runs, tmp_path, chromium):
    """Open the report in headless Chromium (Debian's `chromium` package): it must render to a screenshot
    with no console message (errors, failed loads) at all."""
    exe = chromium
    shot = tmp_path / "report.png"
    page = (runs[0] / "report.html").resolve().as_uri()
    proc = subprocess.run([exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--screenshot={shot}", "--window-size=1280,3000", "--enable-logging=stderr", "--v=0",
                           f"--user-data-dir={tmp_path / 'profile'}", page],
                          capture_output=True, text=True, timeout=180)
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    assert not console, "browser console messages:\n" + "\n".join(console[:10])
    assert shot.is_file(), f"no screenshot; chromium said:\n{proc.stderr[-2000:]}"
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000  # a rendered page, not a blank one


def test_run_log_of_a_successful_run_has_no_kernel_errors(runs):
    """No kernel "KeyboardInterrupt" or traceback, and no nbformat warning about the injected parameters cell."""
    log = (runs[0] / "run.log").read_text(encoding="utf-8")
    assert "finished in" in log  # the log is the run's
    for bad in ("KeyboardInterrupt", "Traceback", "MissingIDFieldWarning"):
        assert bad not in log, f"run.log has {bad!r}"
