"""Shared fixtures. Paths are anchored on the project root, never the working directory."""

from __future__ import annotations

import os

import pytest

from pbc_analysis import paths

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
