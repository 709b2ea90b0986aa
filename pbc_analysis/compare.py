"""Compare result tables and JSON with a stated tolerance: the one rule the back tests and ``pbc verify`` share.

Floating-point results differ in their last bits between CPUs, BLAS builds and library versions, so a
faithful re-run on another machine need not be byte-identical. Each output is one of three states:

``identical``
    byte for byte.
``within tolerance``
    every difference is in a float: ``|a - b| <= max(REL_TOL * max(|a|, |b|), ABS_TOL)``, with
    ``REL_TOL = 1e-9`` (the tables print 10 significant digits, so this allows the last printed digit
    or two to move) and ``ABS_TOL = 1e-12`` (values near zero, such as a difference of two equal
    sums, carry absolute noise that no relative rule can bound; nothing in the tables - pounds,
    counts, rates, ratios - means anything at 1e-12, and p-values are written no smaller than 1e-16).
    Columns of p-values and probabilities, written with :data:`~pbc_analysis.results.PVALUE_DIGITS`
    significant digits, may also differ by one unit in that last digit (a last-bit difference can
    carry the rounding across a half).
``different``
    anything else: other columns or keys, other row counts, text, flags, integers (counts, years,
    codes) or missing values that differ at all, or a float beyond the tolerance.

A column is a float column when every non-empty cell, in both tables, is a number and at least one is
not written as an integer; columns of integers are compared exactly, like text.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .results import PVALUE_DIGITS, is_pvalue_column

REL_TOL = 1e-9
ABS_TOL = 1e-12
IDENTICAL = "identical"
WITHIN = "within tolerance"
DIFFERENT = "different"
_INTEGER = re.compile(r"^[+-]?\d+$")
_MAX_DETAILS = 8
LABELS = ("published", "re-run")


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """How far two floats may differ and still be equal (see the module docstring).

    Parameters
    ----------
    rel : float
        Relative tolerance, of the larger magnitude.
    abs : float
        Absolute floor, for values near zero.
    """

    rel: float = REL_TOL
    abs: float = ABS_TOL

    def __str__(self) -> str:
        return f"relative {self.rel:g}, absolute {self.abs:g}"


DEFAULT = Tolerance()


@dataclasses.dataclass
class Comparison:
    """The outcome of comparing one published output with its re-run (or expected) version.

    Attributes
    ----------
    name : str
        The output, e.g. ``tables/bm_ratios.csv``.
    state : str
        :data:`IDENTICAL`, :data:`WITHIN` or :data:`DIFFERENT`.
    details : list of str
        What differs: per column (or JSON key) the rows, the largest absolute and relative
        differences, and an example.
    max_abs, max_rel : float
        The largest absolute and relative differences among floats (0 when none differ).
    """

    name: str
    state: str
    details: list[str] = dataclasses.field(default_factory=list)
    max_abs: float = 0.0
    max_rel: float = 0.0

    @property
    def ok(self) -> bool:
        """Identical or within tolerance."""
        return self.state != DIFFERENT

    def __str__(self) -> str:
        if self.state == IDENTICAL:
            return f"{self.name}: byte-identical"
        shown = self.details[:_MAX_DETAILS]
        more = f"; and {len(self.details) - _MAX_DETAILS} more" if len(self.details) > _MAX_DETAILS else ""
        label = "equal within tolerance" if self.state == WITHIN else "DIFFERENT"
        return f"{self.name}: {label} ({'; '.join(shown)}{more})"


def _rel_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    scale = np.maximum(np.abs(a), np.abs(b))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(scale > 0, np.abs(a - b) / scale, 0.0)


def _allowed(a: np.ndarray, b: np.ndarray, tol: Tolerance, pvalue: bool) -> np.ndarray:
    """Elementwise: are finite ``a`` and ``b`` equal within ``tol`` (and, for p-values, one last digit)?"""
    scale = np.maximum(np.abs(a), np.abs(b))
    limit = np.maximum(tol.rel * scale, tol.abs)
    if pvalue:
        with np.errstate(divide="ignore"):
            step = np.where(scale > 0, 10.0 ** (np.floor(np.log10(np.where(scale > 0, scale, 1.0))) - (PVALUE_DIGITS - 1)), 0.0)
        limit = np.maximum(limit, step * (1 + 1e-6))
    return np.abs(a - b) <= limit


def _is_number(cells: pd.Series) -> pd.Series:
    return pd.to_numeric(cells, errors="coerce").notna() | cells.str.lower().isin(["nan", "inf", "-inf"])


def _compare_float_column(col: str, x: pd.Series, y: pd.Series, tol: Tolerance) -> tuple[str, str, float, float]:
    """State, detail, max abs and max rel differences of one float column whose cells differ somewhere."""
    differ = (x != y).to_numpy()
    filled = ((x != "") & (y != "")).to_numpy()
    both = differ & filled                       # two numbers that are written differently
    a = pd.to_numeric(x[both]).to_numpy(dtype=float)
    b = pd.to_numeric(y[both]).to_numpy(dtype=float)
    finite = np.isfinite(a) & np.isfinite(b)
    close = (a == b) | (np.isnan(a) & np.isnan(b))
    close[finite] = _allowed(a[finite], b[finite], tol, is_pvalue_column(col))
    ok = ~differ
    ok[both] = close                             # a value against a missing one is never close
    d_abs, d_rel = np.abs(a[finite] - b[finite]), _rel_diff(a[finite], b[finite])
    mabs = float(d_abs.max()) if d_abs.size else 0.0
    mrel = float(d_rel.max()) if d_rel.size else 0.0
    n_diff, beyond = int(differ.sum()), int((~ok).sum())
    r = int(np.flatnonzero(~ok)[0]) if beyond else int(np.flatnonzero(differ)[0])
    example = f"e.g. row {r + 1}: {x.iloc[r]!r} vs {y.iloc[r]!r}"
    if beyond:
        detail = (f"{col}: {beyond} of {n_diff} differing rows beyond tolerance, max abs diff {mabs:.3g}, "
                  f"max rel diff {mrel:.3g} ({example})")
        return DIFFERENT, detail, mabs, mrel
    return WITHIN, f"{col}: {n_diff} rows within tolerance, max abs diff {mabs:.3g}, max rel diff {mrel:.3g} ({example})", mabs, mrel


def compare_frames(x: pd.DataFrame, y: pd.DataFrame, name: str = "table", tol: Tolerance = DEFAULT,
                   labels: tuple[str, str] = LABELS) -> Comparison:
    """Compare two tables read as text (``dtype=str, keep_default_na=False``), row by row.

    Parameters
    ----------
    x, y : pandas.DataFrame
        The published (or expected) and the re-run table, every cell a string.
    name : str
        Name used in the outcome.
    tol : Tolerance
        Tolerance for float columns.
    labels : tuple of str
        What ``x`` and ``y`` are, for the messages (default ``("published", "re-run")``).

    Returns
    -------
    Comparison
        :data:`WITHIN` or :data:`DIFFERENT` (bytes are not looked at here; :func:`compare_files`
        reports :data:`IDENTICAL`), with one detail per differing column.
    """
    if list(x.columns) != list(y.columns):
        return Comparison(name, DIFFERENT, [f"columns differ: {list(x.columns)} {labels[0]} vs {list(y.columns)} {labels[1]}"])
    if len(x) != len(y):
        return Comparison(name, DIFFERENT, [f"{len(x)} rows {labels[0]} vs {len(y)} rows {labels[1]}"])
    details, states, mabs, mrel = [], [], 0.0, 0.0
    for col in x.columns:
        xc, yc = x[col].reset_index(drop=True), y[col].reset_index(drop=True)
        differ = xc != yc
        if not differ.any():
            continue
        cells = pd.concat([xc, yc])
        filled = cells[cells != ""]
        numeric = bool(len(filled)) and bool(_is_number(filled).all())
        if numeric and not filled.str.match(_INTEGER).all():
            state, detail, a, r = _compare_float_column(str(col), xc, yc, tol)
            mabs, mrel = max(mabs, a), max(mrel, r)
        else:
            i = int(differ.to_numpy().argmax())
            state, detail = DIFFERENT, f"{col}: {int(differ.sum())} rows differ (e.g. row {i + 1}: {xc.iloc[i]!r} vs {yc.iloc[i]!r})"
        states.append(state)
        details.append(detail)
    if not details:
        return Comparison(name, WITHIN, ["same values, formatting differs"])
    state = DIFFERENT if DIFFERENT in states else WITHIN
    ordered = [d for d, s in zip(details, states) if s == DIFFERENT] + [d for d, s in zip(details, states) if s != DIFFERENT]
    return Comparison(name, state, ordered, mabs, mrel)


def _walk_json(a: Any, b: Any, where: str, tol: Tolerance, out: dict[str, Any], labels: tuple[str, str]) -> None:
    """Collect differences between two parsed JSON values into ``out`` (lists of different/within details)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            sub = f"{where}.{key}" if where else str(key)
            if key not in a or key not in b:
                out["different"].append(f"{sub}: only in the {labels[0] if key in a else labels[1]}")
            else:
                _walk_json(a[key], b[key], sub, tol, out, labels)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out["different"].append(f"{where}: {len(a)} items {labels[0]} vs {len(b)} {labels[1]}")
        else:
            for i, (u, v) in enumerate(zip(a, b)):
                _walk_json(u, v, f"{where}[{i}]", tol, out, labels)
    elif (isinstance(a, float) or isinstance(b, float)) and not isinstance(a, bool) and not isinstance(b, bool) \
            and isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if a == b:
            return
        fa, fb = np.array([float(a)]), np.array([float(b)])
        if not (math.isfinite(a) and math.isfinite(b)):
            out["different"].append(f"{where}: {a!r} vs {b!r}")
            return
        d_abs, d_rel = abs(float(a) - float(b)), float(_rel_diff(fa, fb)[0])
        out["max_abs"], out["max_rel"] = max(out["max_abs"], d_abs), max(out["max_rel"], d_rel)
        key = "within" if bool(_allowed(fa, fb, tol, False)[0]) else "different"
        out[key].append(f"{where}: {a!r} vs {b!r} (abs diff {d_abs:.3g}, rel diff {d_rel:.3g})")
    elif type(a) is not type(b) or a != b:
        out["different"].append(f"{where}: {a!r} vs {b!r}")


def compare_json(a: Any, b: Any, name: str = "results.json", tol: Tolerance = DEFAULT,
                 labels: tuple[str, str] = LABELS) -> Comparison:
    """Compare two parsed JSON documents recursively with the table rule.

    Keys, list lengths, strings, booleans, integers and nulls must be equal; numbers where either
    side is a float are compared with ``tol``.

    Parameters
    ----------
    a, b : Any
        Parsed JSON (published or expected, and re-run).
    name : str
        Name used in the outcome.
    tol : Tolerance
        Tolerance for floats.
    labels : tuple of str
        What ``a`` and ``b`` are, for the messages.

    Returns
    -------
    Comparison
        :data:`WITHIN` or :data:`DIFFERENT`, listing differing keys (as dotted paths) first.
    """
    out: dict[str, Any] = {"different": [], "within": [], "max_abs": 0.0, "max_rel": 0.0}
    _walk_json(a, b, "", tol, out, labels)
    if not out["different"] and not out["within"]:
        return Comparison(name, WITHIN, ["same values, formatting differs"])
    state = DIFFERENT if out["different"] else WITHIN
    within = sorted(out["within"], key=lambda d: -float(d.rsplit("rel diff ", 1)[1].rstrip(")")))
    return Comparison(name, state, out["different"] + within, out["max_abs"], out["max_rel"])


def compare_files(published: Path, rerun: Path, name: str | None = None, tol: Tolerance = DEFAULT,
                  labels: tuple[str, str] = LABELS) -> Comparison:
    """Compare two output files: bytes first, then CSV tables or JSON with ``tol``.

    Parameters
    ----------
    published : Path
        The published (or expected) file.
    rerun : Path
        The re-run file.
    name : str, optional
        Name used in the outcome (default: the published file's name).
    tol : Tolerance
        Tolerance for floats.
    labels : tuple of str
        What the two files are, for the messages (default ``("published", "re-run")``).

    Returns
    -------
    Comparison
        :data:`IDENTICAL` when the bytes are equal; otherwise the table or JSON comparison. Other
        files (figures, notebooks) that differ are :data:`DIFFERENT`; a missing file is
        :data:`DIFFERENT` naming which side lacks it.
    """
    name = name or published.name
    if not published.is_file() or not rerun.is_file():
        side = labels[0] if not published.is_file() else labels[1]
        return Comparison(name, DIFFERENT, [f"missing from the {side} outputs"])
    if published.read_bytes() == rerun.read_bytes():
        return Comparison(name, IDENTICAL)
    if published.suffix == ".csv":
        read: dict[str, Any] = {"dtype": str, "keep_default_na": False, "na_filter": False}
        try:
            return compare_frames(pd.read_csv(published, **read), pd.read_csv(rerun, **read), name, tol, labels)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            return Comparison(name, DIFFERENT, [f"not a readable CSV table: {exc}"])
    if published.suffix == ".json":
        try:
            a, b = (json.loads(p.read_text(encoding="utf-8")) for p in (published, rerun))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return Comparison(name, DIFFERENT, [f"not readable JSON: {exc}"])
        return compare_json(a, b, name, tol, labels)
    return Comparison(name, DIFFERENT, ["content differs (compared byte for byte only)"])
