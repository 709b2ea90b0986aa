"""Provenance of a run: file hashes, code version, packages, the inputs a config reads, and the manifest.

``manifest.json`` lists the sha256 of every file a run publishes (:func:`output_hashes`) and, under
``manifest_sha256``, a hash of its own canonical content (:func:`write_manifest`), so that
:func:`check_published` can tell whether anything in a run directory - a table, a figure, the report,
a notebook, the config text or the manifest itself - was changed, removed or added after the run.
A hash is not a signature: whoever can rewrite every file can rewrite every hash too, which is why
``pbc verify`` also re-runs the analysis from the (validated) config.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

from pbc_analysis.core import names, paths
from pbc_analysis.data.store import STORE_DIR
from pbc_analysis.pipeline.config import RunConfig
from pbc_analysis.publish import results

MANIFEST = "manifest.json"
MANIFEST_HASH = "manifest_sha256"
UNHASHED = frozenset({MANIFEST, "run.log", names.INCOMPLETE})   # top-level files of a run directory that are not outputs
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


#: kept here for callers of the manifest's name; the one implementation is core.paths.sha256_file
sha256_file = paths.sha256_file


def _porcelain_path(line: str) -> str:
    """The (new) path of one ``git status --porcelain`` line."""
    path = line[3:].split(" -> ")[-1]
    return path[1:-1] if len(path) > 1 and path.startswith('"') and path.endswith('"') else path


def git_info(root: Path = paths.PROJECT_ROOT) -> dict[str, Any]:
    """The checkout's commit and uncommitted changes (files under ``reports/`` are not changes to the code).

    Parameters
    ----------
    root : Path
        The checkout (default: the project root).

    Returns
    -------
    dict
        ``commit`` (None outside git), ``dirty`` (None when unknown) and ``changed_files`` (the
        ``git status --porcelain`` lines, without those for ``reports/``).
    """
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(root), *args], check=False, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout if out.returncode == 0 else None

    commit = (git("rev-parse", "HEAD") or "").strip() or None
    status = git("status", "--porcelain")   # not stripped: the first column of a line is its status
    changed = [line for line in (status or "").splitlines() if line.strip() and not _porcelain_path(line).startswith("reports/")]
    return {"commit": commit, "dirty": bool(changed) if status is not None else None, "changed_files": changed}


def package_versions() -> dict[str, str]:
    """Installed distributions and their versions.

    Returns
    -------
    dict of str to str
        Lower-case distribution name -> version, sorted by name.
    """
    return {d.metadata["Name"].lower(): d.version for d in sorted(metadata.distributions(), key=lambda d: d.metadata["Name"].lower())}


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(paths.PROJECT_ROOT))
    except ValueError:
        return str(path.resolve())


def input_files(cfg: RunConfig) -> dict[str, Path]:
    """Every input file the run reads: each notebook's ``data_dir`` tables (or, with ``extracts:``, the extracts, their
    column-map files and local tables) and the files its path parameters name.

    Parameters
    ----------
    cfg : RunConfig
        The validated config.

    Returns
    -------
    dict of str to Path
        Path relative to the project root (absolute when outside it) -> file, sorted.
    """
    from pbc_analysis.data import find_table_files
    from pbc_analysis.pipeline.config import is_path_parameter

    files: dict[str, Path] = {}
    if cfg.extracts is not None:   # the run's data_dir is its own ingested data/ (an output): its inputs are the extracts
        from pbc_analysis.pipeline.extracts import input_files as extract_files

        files.update(extract_files(cfg.extracts))
    for params in cfg.parameters.values():
        if params.get("data_dir") and cfg.extracts is None:
            for path in find_table_files(params["data_dir"]).values():
                files[_rel(path)] = path
        for key, value in params.items():  # other input files named by a parameter (completeness_snapshots)
            if is_path_parameter(key) and not key.endswith("_dir") and isinstance(value, str) and value:
                files[_rel(Path(value))] = Path(value)
    return dict(sorted(files.items()))


def _package_version() -> str:
    from pbc_analysis import __version__

    return __version__


def _published_files(run_dir: Path, errors: list[OSError] | None = None) -> list[str]:
    """Every file and symlink in a run directory except :data:`UNHASHED` and the private store of validated tables
    (:data:`pbc_analysis.data.store.STORE_DIR`, whose hashes the manifest's ``validated`` section records), as
    sorted posix paths (nothing is read).

    A directory that cannot be listed is appended to ``errors`` when given (else silently skipped).
    """
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(run_dir, followlinks=False, onerror=None if errors is None else errors.append):
        here = Path(dirpath)
        links = [d for d in dirnames if (here / d).is_symlink()]   # listed, never descended into
        dirnames[:] = sorted(d for d in dirnames if d not in links and not (here == run_dir and d == STORE_DIR))
        for name in filenames + links:
            rel = (here / name).relative_to(run_dir).as_posix()
            if rel not in UNHASHED:
                found.append(rel)
    return sorted(found)


def output_path(run_dir: Path, rel: Any) -> Path | None:
    """The file ``rel`` names inside ``run_dir``, or None if it is not a plain relative path that stays inside.

    Parameters
    ----------
    run_dir : Path
        The run directory.
    rel : Any
        A path as listed in a manifest's ``outputs`` (untrusted).

    Returns
    -------
    Path or None
        None for anything but a relative posix path without ``..``, empty or ``.`` parts or
        backslashes, and for a path that, following symlinks, resolves outside ``run_dir``.
    """
    if not isinstance(rel, str) or not rel or "\\" in rel or "\0" in rel:
        return None
    pure = PurePosixPath(rel)
    if pure.is_absolute() or rel.startswith("/") or any(part in ("..", ".", "") for part in rel.split("/")):
        return None
    root = run_dir.resolve()
    target = (root / pure).resolve()
    return target if target != root and target.is_relative_to(root) else None


def unreadable_files(run_dir: Path) -> list[str]:
    """Every file or directory of a run that cannot be read (permissions, I/O errors), one line each.

    ``pbc verify`` calls this before anything else, so that a run it cannot read is an error naming
    every such file, never an absence, a hash mismatch or a traceback. Symlinks are not followed
    (:func:`check_published` reports them).

    Parameters
    ----------
    run_dir : Path
        The run directory.

    Returns
    -------
    list of str
        ``<path>: cannot be read (<reason>)``; empty when everything can be read.
    """
    run_dir = Path(run_dir)
    errors: list[OSError] = []
    rels = _published_files(run_dir, errors) + [MANIFEST]
    out = [f"{exc.filename or run_dir}: cannot be read ({exc.strerror or exc})" for exc in errors]
    for rel in rels:
        path = run_dir / rel
        if path.is_symlink() or not path.exists():
            continue
        try:
            if path.is_file():
                with open(path, "rb") as fh:
                    fh.read(1)
        except OSError as exc:
            out.append(f"{path}: cannot be read ({exc.strerror or exc})")
    return out


def output_hashes(run_dir: Path) -> dict[str, str]:
    """sha256 of every file a run publishes: everything in the run directory but ``manifest.json`` and ``run.log``.

    That is the tables, ``results.json`` and ``results/*.json``, figures, ``report.html``, the executed
    notebooks, ``provenance.json`` and the ``published/`` bundle.

    Parameters
    ----------
    run_dir : Path
        The run directory.

    Returns
    -------
    dict of str to str
        Relative posix path -> hex sha256, sorted by path.

    Raises
    ------
    ValueError
        If the run directory holds a symbolic link (anywhere: a link in ``published/`` to a private table
        would send it to whoever copies the bundle with its links followed) or something that is not a
        regular file: a run publishes only its own plain files.
    """
    run_dir = Path(run_dir)
    out: dict[str, str] = {}
    for rel in _published_files(run_dir):
        target = output_path(run_dir, rel)
        if (run_dir / rel).is_symlink() or target is None or not target.is_file():
            kind = "a symbolic link" if (run_dir / rel).is_symlink() else "not a regular file"
            raise ValueError(f"{run_dir / rel}: a run directory may hold only its own plain files; this is {kind}; "
                             "remove it")
        out[rel] = sha256_file(target)
    return out


def manifest_hash(manifest: dict[str, Any]) -> str:
    """sha256 of a manifest's canonical JSON (:func:`results.dumps`) without its own ``manifest_sha256``.

    Parameters
    ----------
    manifest : dict
        The manifest.

    Returns
    -------
    str
    """
    body = {k: v for k, v in manifest.items() if k != MANIFEST_HASH}
    return hashlib.sha256(results.dumps(body).encode("utf-8")).hexdigest()


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> Path:
    """Write ``<run_dir>/manifest.json`` with ``manifest_sha256``, the hash of its own content.

    Parameters
    ----------
    run_dir : Path
        The run directory.
    manifest : dict
        The manifest; its ``outputs`` should be :func:`output_hashes` of the finished run.

    Returns
    -------
    Path
        The manifest file.
    """
    body = {k: v for k, v in manifest.items() if k != MANIFEST_HASH}
    path = Path(run_dir) / MANIFEST
    tmp = path.with_name(f".{MANIFEST}.{os.getpid()}.partial")
    tmp.write_text(results.dumps({**body, MANIFEST_HASH: manifest_hash(body)}), encoding="utf-8")
    os.replace(tmp, path)  # atomic: a reader sees no manifest or a whole one, never a truncated one
    return path


def read_manifest(run_dir: Path) -> tuple[dict[str, Any] | None, list[str]]:
    """The parsed ``manifest.json`` of a run directory and the problems that prevent using it.

    Parameters
    ----------
    run_dir : Path
        The run directory.

    Returns
    -------
    (dict or None, list of str)
        The manifest (None if it cannot be read) and problems (missing, not JSON, not a mapping,
        ``config`` or ``outputs`` of the wrong shape).
    """
    path = Path(run_dir) / MANIFEST
    if not path.is_file() or path.is_symlink():
        return None, [f"{path}: no manifest.json (or not a plain file): is {run_dir} a run directory made by `pbc run`?"]
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, [f"{path}: not valid JSON ({exc}); the manifest was damaged or edited"]
    except OSError as exc:
        return None, [f"{path}: cannot be read ({exc.strerror or exc}); make it readable and try again"]
    if not isinstance(manifest, dict):
        return None, [f"{path}: must be a JSON object, got {type(manifest).__name__}"]
    problems = []
    cfg = manifest.get("config")
    if not (isinstance(cfg, dict) and isinstance(cfg.get("text"), str) and isinstance(cfg.get("sha256"), str)):
        problems.append(f"{MANIFEST}: 'config' must hold the config 'text' and its 'sha256' as strings")
    outputs = manifest.get("outputs")
    if not (isinstance(outputs, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in outputs.items())):
        problems.append(f"{MANIFEST}: 'outputs' must map each published file to its sha256")
    return (manifest if not problems else None), problems


def check_published(run_dir: Path) -> list[str]:
    """Check a run directory against its manifest: every problem found, ``[]`` when intact.

    Checks the manifest's own hash (``manifest_sha256``), the config text against ``config.sha256``,
    and each output listed: a plain relative path inside the run directory (never read otherwise),
    present, and with the recorded sha256; then that no published file is missing from the list.

    Parameters
    ----------
    run_dir : Path
        The run directory.

    Returns
    -------
    list of str
        One line per problem, naming the file.
    """
    run_dir = Path(run_dir)
    manifest, problems = read_manifest(run_dir)
    if manifest is None:
        return problems
    recorded = manifest.get(MANIFEST_HASH)
    if not isinstance(recorded, str) or not _SHA256.match(recorded):
        problems.append(f"{MANIFEST}: no valid {MANIFEST_HASH}, so its content cannot be checked (edited, or made before it was recorded)")
    elif recorded != manifest_hash(manifest):
        problems.append(f"{MANIFEST}: content does not match its {MANIFEST_HASH}: the manifest was edited after the run")
    if hashlib.sha256(manifest["config"]["text"].encode("utf-8")).hexdigest() != manifest["config"]["sha256"]:
        problems.append(f"{MANIFEST}: config.text does not match config.sha256: the config in the manifest was edited")
    outputs: dict[str, str] = manifest["outputs"]
    for rel in sorted(outputs):
        target = output_path(run_dir, rel)
        if target is None or rel in UNHASHED:
            problems.append(f"{rel!r}: not a plain relative path to a published file inside the run directory; not read")
        elif not target.is_file():
            problems.append(f"{rel}: listed in the manifest but missing from the run directory")
        elif sha256_file(target) != outputs[rel]:
            problems.append(f"{rel}: sha256 differs from the manifest: the file was changed after the run")
    for rel in _published_files(run_dir):
        if (run_dir / rel).is_symlink():
            problems.append(f"{rel}: a symbolic link, not a file of the run (a link in published/ could send a private "
                            "file): replaced after the run")
        elif rel not in outputs:
            problems.append(f"{rel}: not listed in the manifest: added after the run")
    return problems
