"""Tidy, byte-stable result tables, results.json sections and figures in a run directory.

Layout of a run directory (``reports/<run_id>/``)::

    tables/<name>.csv         tidy result tables (sorted rows, fixed float format, "\\n" line ends)
    results/<section>.json    headline figures, one file per notebook section
    results.json              all sections merged by the runner
    figures/<name>.png        figures, saved without time stamps
    notebooks/<nb>.ipynb      executed notebooks
    manifest.json, run.log, report.html

Same inputs and parameters must give byte-identical tables, so every writer here fixes what pandas
would otherwise leave to chance: row order, float formatting, line endings, key order.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

FLOAT_FORMAT = "%.10g"
PVALUE_DIGITS = 4          # significant digits of p-values and probabilities in result tables
PVALUE_FLOOR = 1e-16       # smaller positive p-values are written as this bound (read: p <= 1e-16)
_PVALUE_NAME = re.compile(r"^(p|pvalue|p_value)$|_p$|_pvalue$|_p_value$|_p_|^probability_|_probability$")
TABLES = "tables"
SECTIONS = "results"
FIGURES = "figures"


def _run_dir(run_dir: str | Path) -> Path:
    if not str(run_dir):
        raise ValueError("run_dir is empty: pass resolve_run_dir(run_dir) or run the notebook with `pbc run`")
    return Path(run_dir)


def resolve_run_dir(run_dir: str | Path) -> Path:
    """The run directory a notebook writes to.

    ``pbc run`` passes an absolute ``run_dir``. A notebook opened by hand (``make lab``) has the default
    ``""`` and writes to ``reports/interactive/`` instead, which is never published or verified.
    """
    from pbc_analysis.core.paths import REPORTS_DIR

    p = Path(run_dir) if str(run_dir) else REPORTS_DIR / "interactive"
    p.mkdir(parents=True, exist_ok=True)
    return p


def table_path(run_dir: str | Path, name: str) -> Path:
    """The path of result table ``name`` in a run directory (``tables/<name>.csv``).

    Parameters
    ----------
    run_dir : str or Path
        The run directory.
    name : str
        The table's name.

    Returns
    -------
    Path
    """
    return _run_dir(run_dir) / TABLES / f"{name}.csv"


def is_pvalue_column(name: str) -> bool:
    """Whether a result-table column holds p-values or probabilities (written rounded by :func:`write_table`).

    Parameters
    ----------
    name : str
        Column name. Matches ``p``, ``pvalue``, ``p_value``, names ending in ``_p``, ``_pvalue`` or
        ``_p_value``, names with a ``_p_`` part (``pretrend_p_chi2``), and ``probability_*`` /
        ``*_probability``.

    Returns
    -------
    bool
    """
    return bool(_PVALUE_NAME.search(str(name)))


def round_pvalues(values: pd.Series) -> pd.Series:
    """p-values or probabilities rounded to the digits that are not floating-point noise.

    A p-value of ``5.805319322e-30`` on one CPU is ``5.805319321e-30`` on another: the digits past
    the first few carry no information. Values are rounded to :data:`PVALUE_DIGITS` significant
    digits, and positive values below :data:`PVALUE_FLOOR` (1e-16, where a p-value is the tail of a
    double's precision) are written as that bound, to be read "p <= 1e-16". Exact zeros, ones and
    missing values are kept; the column stays numeric.

    Parameters
    ----------
    values : pandas.Series
        A float column.

    Returns
    -------
    pandas.Series
        The rounded column, same index and dtype.
    """
    x = values.to_numpy(dtype=float, copy=True)
    tiny = (x > 0) & (x < PVALUE_FLOOR)
    x[tiny] = PVALUE_FLOOR
    finite = np.isfinite(x) & (x != 0)
    x[finite] = [float(f"{v:.{PVALUE_DIGITS}g}") for v in x[finite]]
    return pd.Series(x, index=values.index, name=values.name)


def write_table(df: pd.DataFrame, name: str, run_dir: str | Path, sort_by: Iterable[str] | None = None) -> Path:
    """Write ``df`` to ``<run_dir>/tables/<name>.csv`` in a byte-stable form.

    Rows are sorted by ``sort_by`` (default: every column, left to right), the index is dropped,
    floats are written with 10 significant digits, missing values as empty fields. Categorical
    columns are written (and sorted) as their text values. Float columns of p-values and
    probabilities (:func:`is_pvalue_column`) are written with :data:`PVALUE_DIGITS` significant
    digits, positive values below 1e-16 as ``1e-16`` (:func:`round_pvalues`): their further digits
    differ between CPUs and BLAS builds.

    Parameters
    ----------
    df : pandas.DataFrame
        The table.
    name : str
        Table name (letters, digits and underscores); the file is ``tables/<name>.csv``.
    run_dir : str or Path
        The run directory.
    sort_by : iterable of str, optional
        Columns to sort rows by (default: every column, left to right).

    Returns
    -------
    Path
        The file written.
    """
    if not name.replace("_", "").isalnum():
        raise ValueError(f"table name {name!r} must be letters, digits and underscores")
    out = df.reset_index(drop=True).copy()
    for c in out.columns:  # categoricals sort by category order; tables sort by value
        if isinstance(out[c].dtype, pd.CategoricalDtype):
            out[c] = out[c].astype("str")
        elif pd.api.types.is_float_dtype(out[c].dtype) and is_pvalue_column(c):
            out[c] = round_pvalues(out[c])
    keys = list(sort_by) if sort_by is not None else list(out.columns)
    if keys:
        out = out.sort_values(keys, kind="mergesort", na_position="last").reset_index(drop=True)
    path = table_path(run_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(path, index=False, float_format=FLOAT_FORMAT, lineterminator="\n", na_rep="")
    return path


def read_table(run_dir: str | Path, name: str, **kwargs: Any) -> pd.DataFrame:
    """Read a result table written by :func:`write_table` (codes kept as text)."""
    path = table_path(run_dir, name)
    if not path.exists():
        raise FileNotFoundError(f"result table {name!r} not found at {path}; did its notebook run?")
    kwargs.setdefault("dtype", {c: str for c in ("practice_code", "provider_code", "specialty_code", "month", "financial_year")})
    return pd.read_csv(path, **kwargs)


def to_jsonable(obj: Any) -> Any:
    """Convert numpy/pandas scalars and containers to plain JSON types (NaN -> None)."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return None if math.isnan(f) or math.isinf(f) else f
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, pd.Timestamp):
        return obj.isoformat()
    if obj is pd.NA:
        return None
    return obj


def dumps(obj: Any) -> str:
    """Canonical JSON: sorted keys, two-space indent, trailing newline."""
    return json.dumps(to_jsonable(obj), sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def write_section(run_dir: str | Path, section: str, values: Mapping[str, Any]) -> Path:
    """Write one notebook's headline figures to ``<run_dir>/results/<section>.json``."""
    path = _run_dir(run_dir) / SECTIONS / f"{section}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(values), encoding="utf-8")
    return path


def merge_sections(run_dir: str | Path) -> dict[str, Any]:
    """Merge every section into ``<run_dir>/results.json`` and return it."""
    run_dir = _run_dir(run_dir)
    merged = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted((run_dir / SECTIONS).glob("*.json"))}
    (run_dir / "results.json").write_text(dumps(merged), encoding="utf-8")
    return merged


def read_results(run_dir: str | Path) -> dict[str, Any]:
    """Headline figures of a run: ``results.json`` if merged, else the sections written so far."""
    run_dir = _run_dir(run_dir)
    merged = run_dir / "results.json"
    if merged.exists():
        return json.loads(merged.read_text(encoding="utf-8"))
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted((run_dir / SECTIONS).glob("*.json"))}


def save_figure(fig: Any, name: str, run_dir: str | Path, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG without the time-stamp and software metadata."""
    path = _run_dir(run_dir) / FIGURES / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    return path
