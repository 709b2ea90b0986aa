"""Provenance of a run: file hashes, code version, packages and the inputs a config reads."""

from __future__ import annotations

import hashlib
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from . import paths, results
from .config import RunConfig


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def git_info(root: Path = paths.PROJECT_ROOT) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain")
    return {"commit": commit, "dirty": bool(status) if status is not None else None, "changed_files": status.splitlines() if status else []}


def package_versions() -> dict[str, str]:
    return {d.metadata["Name"].lower(): d.version for d in sorted(metadata.distributions(), key=lambda d: d.metadata["Name"].lower())}


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(paths.PROJECT_ROOT))
    except ValueError:
        return str(path.resolve())


def input_files(cfg: RunConfig) -> dict[str, Path]:
    """Every input table file the run reads (from each notebook's ``data_dir``)."""
    from .data import find_table_files

    files: dict[str, Path] = {}
    for params in cfg.parameters.values():
        if params.get("data_dir"):
            for table, path in find_table_files(params["data_dir"]).items():
                files[_rel(path)] = path
    return dict(sorted(files.items()))


def _package_version() -> str:
    from . import __version__

    return __version__


def output_hashes(run_dir: Path) -> dict[str, str]:
    """sha256 of every result table and results.json (the things an auditor compares)."""
    files = sorted((run_dir / results.TABLES).glob("*.csv")) + [run_dir / "results.json"]
    return {str(p.relative_to(run_dir)): sha256_file(p) for p in files if p.exists()}


