"""Faults leave a consistent state (issue 12): validation once, signals, SIGKILL, run directories, `latest`.

The runs here use tiny probe notebooks (a parameters cell and a cell that records its kernel's pid and
sleeps), so a signal can be sent while every notebook is running without waiting for the real analysis.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest

from pbc_analysis.core import paths
from pbc_analysis.pipeline import run
from pbc_analysis.pipeline.config import parse_config

PY = sys.executable
SAMPLE = paths.SAMPLE_DIR


def _probe_notebook(path: Path, body: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    params = nbformat.v4.new_code_cell(
        'data_dir = "data/sample"\nstart_month = "2003-04"\nend_month = "2008-03"\nrun_dir = ""')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, str(path))


_SLEEPER = textwrap.dedent("""\
    import os, pathlib, time
    d = pathlib.Path(run_dir)
    (d / f"pid-{os.getpid()}").write_text(str(os.getppid()))
    time.sleep(120)
""")


@pytest.fixture
def sleepers(tmp_path):
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    for name in ("01_sleep_a", "02_sleep_b", "03_sleep_c"):
        _probe_notebook(nbdir / f"{name}.ipynb", _SLEEPER)
    return nbdir


def _config(data_dir: Path = SAMPLE, workers: int = 2, name: str = "probe") -> str:
    return textwrap.dedent(f"""\
        run:
          name: {name}
          workers: {workers}
        parameters:
          data_dir: "{data_dir}"
          start_month: "2003-04"
          end_month: "2008-03"
    """)


def _start_runner(tmp_path: Path, nbdir: Path, config_text: str, reports: Path | None = None) -> subprocess.Popen:
    """`pbc run` in a subprocess, with the probe notebooks (the CLI's own run_and_report)."""
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(f"""\
        import sys
        from pathlib import Path
        from pbc_analysis.pipeline.cli import run_and_report
        from pbc_analysis.pipeline.config import parse_config
        cfg = parse_config(Path({str(tmp_path / 'cfg.yaml')!r}).read_text(), notebooks_dir=Path({str(nbdir)!r}))
        sys.exit(run_and_report(cfg, Path({str(reports or tmp_path / 'reports')!r})))
    """))
    (tmp_path / "cfg.yaml").write_text(config_text)
    return subprocess.Popen([PY, str(driver)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "JUPYTER_PREFER_ENV_PATH": "1"})


def _wait_for_pids(reports: Path, n: int, timeout: float = 120) -> dict[int, int]:
    """{kernel pid: its parent's pid} once ``n`` probe kernels are running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = {int(p.name[4:]): int(p.read_text() or 0) for p in reports.glob("*/pid-*") if p.read_text()}
        if len(found) >= n:
            return found
        time.sleep(0.2)
    raise AssertionError(f"only {len(found)} of {n} probe kernels started within {timeout} s")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _all_dead(pids, timeout: float = 15) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if _alive(p)]
        if not alive:
            return []
        time.sleep(0.2)
    return alive


def _finished_run(reports: Path, name: str, finished: str) -> Path:
    """A complete run directory with an intact manifest (its hashes and its own hash)."""
    from pbc_analysis.pipeline.manifest import output_hashes, write_manifest

    d = reports / name
    (d / "tables").mkdir(parents=True)
    (d / "tables" / "t.csv").write_text("a\n1\n")
    write_manifest(d, {"config": {"text": "", "sha256": hashlib.sha256(b"").hexdigest()}, "finished_utc": finished,
                       "outputs": output_hashes(d)})
    return d


def _complete_old_run(reports: Path) -> Path:
    """A finished earlier run that `latest` points at."""
    old = _finished_run(reports, "20000101-000000-old-00000000", "2000-01-01T00:00:00+00:00")
    (reports / "latest").symlink_to(old.name)
    return old


@pytest.mark.parametrize("sig, code, workers", [(signal.SIGINT, 130, 2), (signal.SIGTERM, 143, 2), (signal.SIGTERM, 143, 1)],
                         ids=["sigint-parallel", "sigterm-parallel", "sigterm-sequential"])
def test_signal_stops_every_notebook_and_marks_the_run_incomplete(tmp_path, sleepers, sig, code, workers):
    reports = tmp_path / "reports"
    old = _complete_old_run(reports)
    proc = _start_runner(tmp_path, sleepers, _config(workers=workers))
    kernels = _wait_for_pids(reports, workers)
    workers_pids = set(kernels.values())
    t0 = time.monotonic()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    took = time.monotonic() - t0
    assert proc.returncode == code, (out, err)
    assert took < 15, f"took {took:.1f} s to stop"
    assert f"interrupted by {sig.name}" in err and "Traceback" not in err
    assert _all_dead(list(kernels) + list(workers_pids)) == []
    runs = [d for d in reports.iterdir() if d.is_dir() and not d.is_symlink() and d != old]
    assert len(runs) == 1
    assert not (runs[0] / "manifest.json").exists()
    assert "interrupted" in (runs[0] / run.INCOMPLETE).read_text()
    assert os.readlink(reports / "latest") == old.name          # latest keeps the last complete run
    assert len(list(runs[0].glob("pid-*"))) == workers           # the third notebook never started


def test_sigkill_of_the_runner_leaves_no_worker_or_kernel(tmp_path, sleepers):
    reports = tmp_path / "reports"
    proc = _start_runner(tmp_path, sleepers, _config(workers=2))
    kernels = _wait_for_pids(reports, 2)
    proc.kill()
    proc.wait(timeout=10)
    leftover = _all_dead(list(kernels) + list(set(kernels.values())), timeout=20)
    assert leftover == [], f"processes left running after SIGKILL of the runner: {leftover}"


def test_bad_inputs_are_reported_once_before_any_notebook_starts(tmp_path, sleepers):
    data = tmp_path / "data"
    shutil.copytree(SAMPLE, data)
    next(data.glob("activity.*")).unlink()
    proc = _start_runner(tmp_path, sleepers, _config(data_dir=data, workers=0))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert err.count("required table 'activity' is missing") == 1, err
    assert "no notebook was run" in err
    reports = tmp_path / "reports"
    assert not reports.exists() or not list(reports.glob("*/pid-*"))
    assert not reports.exists() or not [d for d in reports.iterdir() if d.is_dir()]


def test_run_directories_are_unique_and_inside_the_reports_directory(tmp_path, monkeypatch, sleepers):
    cfg = parse_config(_config(), notebooks_dir=sleepers)
    monkeypatch.setattr(run, "_new_run_id", lambda cfg: "20260101-000000-probe-abcdef12")
    first = run._make_run_dir(tmp_path / "r", cfg, None)
    second = run._make_run_dir(tmp_path / "r", cfg, None)
    assert first.name == "20260101-000000-probe-abcdef12" and second.name == first.name + "-2"
    for bad in ("../escape", "/tmp/abs", "a/b", ".hidden", "x<script>"):
        with pytest.raises(run.RunError):
            run._make_run_dir(tmp_path / "r", cfg, bad)
    assert not (tmp_path / "escape").exists()
    with pytest.raises(run.RunError, match="braces"):
        run._make_run_dir(tmp_path / "{pm}", cfg, None)


def test_two_runs_started_at_once_both_succeed(tmp_path):
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    _probe_notebook(nbdir / "01_quick.ipynb", "x = 1")
    procs = []
    for k in range(2):
        sub = tmp_path / f"p{k}"
        sub.mkdir()
        procs.append(_start_runner(sub, nbdir, _config(workers=1), reports=tmp_path / "reports"))
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    runs = sorted(d.name for d in (tmp_path / "reports").iterdir() if d.is_dir() and not d.is_symlink())
    assert len(runs) == 2
    assert all((tmp_path / "reports" / r / "manifest.json").is_file() for r in runs)
    assert (tmp_path / "reports" / "latest").resolve().name in runs


def test_latest_never_dangles(tmp_path):
    reports = tmp_path / "reports"
    old = _complete_old_run(reports)
    newer = _finished_run(reports, "20000102-000000-newer-00000000", "2000-01-02T00:00:00+00:00")
    renamed = _finished_run(reports, "zz-explicit-id", "1999-12-31T00:00:00+00:00")   # sorts last by name only
    altered = _finished_run(reports, "20000104-000000-altered-00000000", "2000-01-04T00:00:00+00:00")
    (altered / "tables" / "t.csv").write_text("a\n2\n")                             # fails the integrity check
    broken = reports / "20000103-000000-broken-00000000"
    broken.mkdir()
    (broken / run.INCOMPLETE).write_text("interrupted\n")
    (reports / "latest").unlink()
    (reports / "latest").symlink_to(broken.name)             # an incomplete run
    assert run.repair_latest(reports) == newer.resolve()     # finished last among the intact runs
    (reports / "latest").unlink()
    (reports / "latest").symlink_to(altered.name)            # an altered run
    assert run.repair_latest(reports) == newer.resolve()
    (reports / "latest").unlink()
    (reports / "latest").symlink_to("../../..")              # out of the reports directory
    assert run.repair_latest(reports) == newer.resolve()
    shutil.rmtree(newer)                                        # the run it points at is deleted
    shutil.rmtree(renamed)
    assert run.repair_latest(reports) == old.resolve()
    assert os.readlink(reports / "latest") == old.name
    shutil.rmtree(old)
    assert run.repair_latest(reports) is None and not (reports / "latest").is_symlink()


def test_parameters_reach_the_kernel_only_as_literals(tmp_path):
    """The injected cell is written by config.parameters_source: `name = repr(value)` lines only."""
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    _probe_notebook(nbdir / "01_probe.ipynb", "x = 1")
    nb = run._parameterised(nbdir / "01_probe.ipynb", {"data_dir": "a\"); import os #\n'''", "run_dir": "/r"})
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and nb.cells.index(injected[0]) == 1
    import ast

    body = [n for n in ast.parse(injected[0].source).body]
    assert all(isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant) for n in body)
    assert {n.targets[0].id: n.value.value for n in body} == {"data_dir": "a\"); import os #\n'''", "run_dir": "/r"}
    assert json.loads(json.dumps(nb.metadata["papermill"]["parameters"]))["run_dir"] == "/r"


def test_a_long_error_message_does_not_hang_the_runner(tmp_path):
    """A worker's error longer than a pipe buffer (64 KiB) is read while the worker waits to exit."""
    script = tmp_path / "big.py"
    script.write_text(textwrap.dedent("""\
        from pbc_analysis.pipeline import supervise
        got = {}
        supervise.run_jobs({"big": (200_000,)}, lambda n: (0.0, "x" * n), 1,
                           lambda name, seconds, err: got.setdefault(name, err) is None)
        print(len(got["big"]), got["big"][-40:].strip().replace(chr(10), " "))
    """))
    proc = subprocess.run([PY, str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    from pbc_analysis.pipeline.supervise import MAX_MESSAGE

    length, tail = proc.stdout.split(maxsplit=1)
    assert MAX_MESSAGE < int(length) < MAX_MESSAGE + 100 and tail.strip().endswith("(180,000 more characters cut)")


def test_the_runs_validation_section_discloses_row_counts(sample_run):
    """The summary of the inputs (exact in plausibility) is written with 1-7 as '*' and the rest to 5."""
    section = json.loads((sample_run / "results.json").read_text())["validation"]
    rows = {t["table"]: t["rows"] for t in section["tables"]}
    assert rows["providers"] == "*" and rows["reference_rates"] == 2320 and rows["high_cost_patients"] == 12385
    assert section["notebooks"][0] == "01_data_quality" and "other_data" not in section
    assert run._disclose_rows({"tables": [{"rows": 3}, {"rows": None}], "accepted_exceptions": [{"rows": 13}]}) == {
        "tables": [{"rows": "*"}, {"rows": None}], "accepted_exceptions": [{"rows": 15}]}
