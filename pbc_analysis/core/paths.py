"""Project-root anchored paths.

Notebooks run with whatever working directory papermill or JupyterLab gives them, so nothing in the
package may depend on the current directory. Every relative path a user writes (in a config, on the
command line) is resolved against the project root, found from this file's location.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent   # pbc_analysis/ (this file is pbc_analysis/core/paths.py)
PROJECT_ROOT = PACKAGE_DIR.parent
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
DATA_DIR = PROJECT_ROOT / "data"
SAMPLE_DIR = DATA_DIR / "sample"
REPORTS_DIR = PROJECT_ROOT / "reports"
CONFIGS_DIR = PROJECT_ROOT / "configs"
SHARED_DIR = PROJECT_ROOT.parent / "shared"
REFERENCE_DIR = SHARED_DIR / "reference"


def resolve(path: str | Path, base: Path = PROJECT_ROOT) -> Path:
    """Return ``path`` as an absolute path; relative paths are taken from ``base`` (the project root)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes.

    Parameters
    ----------
    path : Path
        The file.
    chunk : int
        Bytes read at a time.

    Returns
    -------
    str
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
