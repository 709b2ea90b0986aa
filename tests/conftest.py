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
