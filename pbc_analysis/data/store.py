"""The validated tables of a run, kept for its notebooks: validated once by ``pbc run``, read by every stage.

``pbc run`` validates every input before any notebook runs (:func:`pbc_analysis.data.plausibility.load_run_inputs`)
and writes the validated tables here, one Parquet file per table, in the run directory's private ``validated/``
folder (never published, never hashed as an output: the manifest records the store's own hashes instead). Each
notebook's :func:`~pbc_analysis.data.load_inputs` given the run directory reads them back instead of reading and
validating the files again: Parquet keeps every column's type (categories stay dictionary-encoded codes, not a
Python string per row) and reads in a fraction of the time.

The store is data like any input, possibly tampered with: its index (``index.json``) is read as checked literals,
every table's sha256 is checked against the index before it is read, the source files' sizes and modification
times are checked against those validated (a file changed after validation is an error, not silently used), and
table names come from :data:`~pbc_analysis.data.schema.TABLES`, never from the index.

References
----------
Apache Parquet format (https://parquet.apache.org/docs/file-format/), dictionary encoding of repeated values.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pbc_analysis.core.paths import sha256_file
from pbc_analysis.data.schema import TABLES
from pbc_analysis.data.window import Window

__all__ = ["STORE_DIR", "read_store", "store_folder", "write_store"]

#: the run directory's private folder of validated tables (excluded from the outputs and the published bundle)
STORE_DIR = "validated"
_INDEX = "index.json"
_FORMAT = 1


def store_folder(run_dir: str | Path, data_dir: str | Path, window: Window) -> Path:
    """The store of ``data_dir`` over ``window`` in ``run_dir``: a folder named by a hash (never by the path).

    Parameters
    ----------
    run_dir : str or Path
    data_dir : str or Path
        The data directory validated (resolved to an absolute path).
    window : Window

    Returns
    -------
    Path

    References
    ----------
    The module docstring.
    """
    key = json.dumps([str(Path(data_dir).resolve()), window.start_month, window.end_month])
    return Path(run_dir) / STORE_DIR / hashlib.sha256(key.encode()).hexdigest()[:16]


def _source_stamp(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def write_store(inputs: Any, run_dir: str | Path, data_dir: str | Path) -> dict[str, Any]:
    """Write validated ``inputs`` (:class:`~pbc_analysis.data.Inputs`) of ``data_dir`` to the run's store.

    Parameters
    ----------
    inputs : Inputs
        As validated by the runner (its ``window`` set).
    run_dir : str or Path
    data_dir : str or Path

    Returns
    -------
    dict
        ``{"folder", "window", "tables": {table: {"rows", "sha256"}}}`` for the manifest (folder relative to
        the run directory).

    References
    ----------
    The module docstring.
    """
    folder = store_folder(run_dir, data_dir, inputs.window)
    folder.mkdir(parents=True, exist_ok=True)
    tables: dict[str, dict[str, Any]] = {}
    sources: dict[str, dict[str, Any]] = {}
    for name, df in inputs.tables().items():
        path = folder / f"{name}.parquet"
        df.to_parquet(path, index=False)
        tables[name] = {"rows": int(len(df)), "sha256": sha256_file(path)}
        if name in inputs.files:
            sources[name] = {**_source_stamp(Path(inputs.files[name])), "path": str(inputs.files[name])}
    index = {"format": _FORMAT, "window": [inputs.window.start_month, inputs.window.end_month], "tables": tables,
             "sources": sources}
    (folder / _INDEX).write_text(json.dumps(index, indent=1, sort_keys=True), encoding="utf-8")
    return {"folder": folder.relative_to(Path(run_dir)).as_posix(), "window": index["window"], "tables": tables}


def _read_table(path: Path) -> pd.DataFrame:
    """One stored table as the frame written: Arrow buffers freed column by column as they are converted
    (``self_destruct``), so a table is not held twice while it is read."""
    return pq.read_table(path).to_pandas(self_destruct=True, split_blocks=True)


def _checked_index(path: Path, window: Window) -> dict[str, Any]:
    """The store's index as checked literals, or ValueError naming the file and what is wrong."""
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable store index ({exc}); rerun `pbc run`") from None
    problems = []
    if not isinstance(index, dict) or index.get("format") != _FORMAT:
        raise ValueError(f"{path}: not a store index of format {_FORMAT}; rerun `pbc run`")
    if index.get("window") != [window.start_month, window.end_month]:
        problems.append(f"window {index.get('window')!r} is not the notebook's {[window.start_month, window.end_month]}")
    tables, sources = index.get("tables"), index.get("sources")
    if not isinstance(tables, dict) or not isinstance(sources, dict):
        problems.append("tables and sources must be mappings")
    else:
        for name, entry in tables.items():
            if name not in TABLES or not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
                problems.append(f"table entry {name!r} is not a known table with a sha256")
        for name, entry in sources.items():
            if (name not in tables or not isinstance(entry, dict) or not isinstance(entry.get("path"), str)
                    or not all(isinstance(entry.get(k), int) for k in ("size", "mtime_ns"))):
                problems.append(f"source entry {name!r} must name a stored table with path, size and mtime_ns")
    if problems:
        raise ValueError(f"{path}: " + "; ".join(problems) + "; rerun `pbc run`")
    return index


def read_store(run_dir: str | Path, data_dir: str | Path, window: Window) -> Any:
    """The validated tables of ``data_dir`` over ``window`` kept in ``run_dir``, or None when none were kept.

    Parameters
    ----------
    run_dir : str or Path
    data_dir : str or Path
    window : Window

    Returns
    -------
    Inputs or None

    Raises
    ------
    ValueError
        Naming every problem at once: a table whose sha256 is not the index's (tampered with or damaged), a source
        file changed since it was validated, or an index that is not the store's.

    References
    ----------
    The module docstring.
    """
    from pbc_analysis.data.inputs import Inputs

    folder = store_folder(run_dir, data_dir, window)
    if not (folder / _INDEX).is_file():
        return None
    index = _checked_index(folder / _INDEX, window)
    problems = []
    for name, entry in index["sources"].items():
        src = Path(entry["path"])
        if not src.is_file() or _source_stamp(src) != {"size": entry["size"], "mtime_ns": entry["mtime_ns"]}:
            problems.append(f"{src} changed after it was validated (table {name}): rerun `pbc run`")
    for name, entry in index["tables"].items():
        path = folder / f"{name}.parquet"
        if not path.is_file() or sha256_file(path) != entry["sha256"]:
            problems.append(f"{path} is not the table validated (its sha256 differs from {folder / _INDEX}): "
                            "rerun `pbc run`")
    if problems:
        raise ValueError("the run's validated tables cannot be used:\n  " + "\n  ".join(problems))
    frames = {name: _read_table(folder / f"{name}.parquet") for name in TABLES if name in index["tables"]}
    pa.default_memory_pool().release_unused()   # Arrow's pool returns what the conversions no longer use
    files = {name: Path(index["sources"][name]["path"]) for name in TABLES if name in index["sources"]}
    tables: dict[str, Any] = {name: frames.get(name) for name in TABLES}
    return Inputs(**tables, files=files, window=window)
