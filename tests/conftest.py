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


def _once(tmp_path_factory, name: str, build):
    """``build(directory)`` once per test session, also when pytest-xdist runs the session in several workers.

    Without xdist this is ``build`` on a new temporary directory. Under xdist the first worker to ask builds it
    in the directory the workers share (their base temporary directory's parent), holding a lock, and leaves
    the pickled result there; the others wait on the lock and read it. A build that failed is not repeated:
    each later worker raises the same error.
    """
    import fcntl
    import pickle
    import traceback

    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return build(tmp_path_factory.mktemp(name))
    shared = tmp_path_factory.getbasetemp().parent
    result, failed = shared / f"{name}.pickle", shared / f"{name}.failed"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if failed.exists():
            pytest.fail(f"{name} failed in another worker:\n{failed.read_text(encoding='utf-8')}")
        if not result.exists():
            try:
                result.write_bytes(pickle.dumps(build(shared / name)))
            except BaseException:
                failed.write_text(traceback.format_exc(), encoding="utf-8")
                raise
        return pickle.loads(result.read_bytes())


@pytest.fixture(scope="session")
def sample_run(tmp_path_factory):
    """One complete, rendered run of configs/sample.yaml, shared by every module (and xdist worker) that needs one.

    Read-only: a test that changes files copies it first (``shutil.copytree(sample_run, dst,
    symlinks=True)``). Its reports directory holds only this run.
    """
    from pbc_analysis.pipeline.config import load_config
    from pbc_analysis.pipeline.run import run_pipeline

    def build(reports):
        reports.mkdir(parents=True, exist_ok=True)
        return run_pipeline(load_config(paths.CONFIGS_DIR / "sample.yaml"), reports_dir=reports, run_id="sample",
                            echo=lambda *a, **k: None)

    return _once(tmp_path_factory, "sample_reports", build)


@pytest.fixture(scope="session")
def sample_rerun(sample_run, tmp_path_factory):
    """``pbc verify --keep`` of the shared sample run: the report (a real re-run) and the kept re-run directory,
    which the tests of tampered copies compare with (``against``) instead of re-running the sample for each.

    The re-run is kept under pytest's temporary directories (verify makes it with :mod:`tempfile`), which pytest
    removes with them, so no worker deletes it while another still compares with it.
    """
    import tempfile

    from pbc_analysis.pipeline.verify import verify

    def build(where):
        where.mkdir(parents=True, exist_ok=True)
        saved, tempfile.tempdir = tempfile.tempdir, str(where)
        try:
            return verify(sample_run, echo=lambda *a, **k: None, allow_dirty=True, keep=True)
        finally:
            tempfile.tempdir = saved

    return _once(tmp_path_factory, "sample_rerun", build)


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
