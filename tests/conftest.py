"""Shared fixtures. Paths are anchored on the project root, never the working directory."""

from __future__ import annotations

import os

import pytest

from pbc_analysis.core import paths

os.environ.setdefault("JUPYTER_PREFER_ENV_PATH", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def project_root():
    return paths.PROJECT_ROOT


@pytest.fixture(scope="session")
def reference_dir():
    if not paths.REFERENCE_DIR.is_dir():
        pytest.skip(f"reference data not found at {paths.REFERENCE_DIR} (clone the project beside ../shared)")
    return paths.REFERENCE_DIR


@pytest.fixture(scope="session")
def sample_run(tmp_path_factory):
    """One complete, rendered run of configs/sample.yaml, shared by every module that needs one.

    Read-only: a test that changes files copies it first (``shutil.copytree(sample_run, dst,
    symlinks=True)``). Its reports directory holds only this run.
    """
    from pbc_analysis.pipeline.config import load_config
    from pbc_analysis.pipeline.run import run_pipeline

    reports = tmp_path_factory.mktemp("sample_reports")
    return run_pipeline(load_config(paths.CONFIGS_DIR / "sample.yaml"), reports_dir=reports, run_id="sample",
                        echo=lambda *a, **k: None)


@pytest.fixture(scope="session")
def sample_rerun(sample_run):
    """``pbc verify --keep`` of the shared sample run: the report (a real re-run) and the kept re-run directory,
    which the tests of tampered copies compare with (``against``) instead of re-running the sample for each."""
    import shutil

    from pbc_analysis.pipeline.verify import verify

    report = verify(sample_run, echo=lambda *a, **k: None, allow_dirty=True, keep=True)
    yield report
    if report.rerun_dir is not None:
        shutil.rmtree(report.rerun_dir.parent, ignore_errors=True)   # the verify-made temporary directory


@pytest.fixture(scope="session")
def sample_inputs():
    """The embedded sample (data/sample), validated, over its whole window: read once for the whole session.

    Read-only: a test that changes a table copies it first.
    """
    from pbc_analysis import data

    return data.load_inputs(paths.SAMPLE_DIR, "2003-04", "2008-03")


@pytest.fixture(scope="session")
def sample_truth():
    """The ground truth the generator planted in the sample (data/sample/ground_truth.json)."""
    import json

    return json.loads((paths.SAMPLE_DIR / "ground_truth.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def sample_facts(sample_inputs):
    """The facts of the sample that settings are derived from (:func:`pbc_analysis.stages.facts.data_facts`)."""
    from pbc_analysis.stages import facts

    return facts.data_facts(sample_inputs)


@pytest.fixture(scope="session")
def chromium():
    """Headless Chromium for the browser and print tests (``PBC_CHROMIUM``, else Debian's ``chromium`` on PATH);
    the test skips, saying why, without it (``.ci/run`` installs it)."""
    import shutil

    exe = os.environ.get("PBC_CHROMIUM") or next(
        (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome", "chrome") if shutil.which(n)), None)
    if exe is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium, or set PBC_CHROMIUM); .ci/run installs it")
    return exe
