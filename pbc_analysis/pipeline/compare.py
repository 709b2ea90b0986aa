"""Compare result tables and JSON with a stated tolerance: the one rule the back tests and ``pbc verify`` share.

Floating-point results differ in their last bits between CPUs, BLAS builds and library versions, so a
faithful re-run on another machine need not be byte-identical. Each output is one of three states:

``identical``
    byte for byte.
``within tolerance``
    every difference is in a float: ``|a - b| <= max(REL_TOL * max(|a|, |b|), atol)``, with
    ``REL_TOL = 1e-9`` (the tables print 10 significant digits, so this allows the last printed digit
    or two to move) and an absolute floor ``atol`` for values near zero. A value that comes from
    cancellation - a difference of two nearly equal sums, such as ``risk_monitoring.variance`` (forecast
    minus budget, both in the millions) - carries the absolute noise of the numbers it came from, not
    of itself, so no rule relative to the value alone can bound it. In a table the floor is therefore
    scaled to the column: ``atol = max(ABS_TOL, REL_TOL * m)``, ``m`` the largest finite ``|value|`` of
    the column in either table; a column of pounds in the millions may move by a thousandth of a
    penny, a column of rates near one by 1e-9. ``ABS_TOL = 1e-12`` is the floor of a column of tiny
    values (nothing in the tables - pounds, counts, rates, ratios - means anything at 1e-12, and
    p-values are written no smaller than 1e-16). In JSON, where numbers have no column, the floor is
    ``ABS_TOL``.
    Columns of p-values and probabilities, written with :data:`~pbc_analysis.publish.results.PVALUE_DIGITS`
    significant digits, may also differ by one unit in that last digit (a last-bit difference can
    carry the rounding across a half).
``different``
    anything else: other columns or keys, other row counts, text, flags, integers (counts, years,
    codes) or missing values that differ at all, or a float beyond the tolerance.

A column is a float column when every non-empty cell, in both tables, is a number and at least one is
not written as an integer; columns of integers are compared exactly, like text. A column that the
publishing registry :data:`pbc_analysis.publish.bundle.TABLES` classifies as one of :data:`EXACT_KINDS` (keys,
counts, tallies, flags, settings, text) is compared exactly whatever its cells look like: a count
column with a missing value is written by pandas as floats (``12.0``), and a count that moved by one
must still be a difference, never "within tolerance". The table is found by the output's name
(``tables/bm_ratios.csv`` and ``published/tables/bm_ratios.csv`` are ``bm_ratios``).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pbc_analysis.publish.bundle import TABLES as PUBLISH_TABLES
from pbc_analysis.publish.results import PVALUE_DIGITS, is_pvalue_column

REL_TOL = 1e-9
ABS_TOL = 1e-12
IDENTICAL = "identical"
WITHIN = "within tolerance"
DIFFERENT = "different"
_INTEGER = re.compile(r"^[+-]?\d+$")
_MAX_DETAILS = 8
LABELS = ("published", "re-run")
#: A figure equals its re-run when its decoded pixels do: PNG metadata (software version, time) is the one part
#: excluded, by rule. Pixels that differ by at most this root-mean-square on the 0-255 scale (another machine's
#: anti-aliasing) are within tolerance; the numbers a figure draws are compared in its tables.
FIGURE_RMS = 1.0
#: figures embedded in a report or a practice page: PNG images as data URIs, and inline SVG charts
_PNG_URI = re.compile(r'data:image/png;base64,([A-Za-z0-9+/=]+)')
_SVG = re.compile(r"<svg\b.*?</svg>", re.S)

#: Column kinds of :data:`pbc_analysis.publish.bundle.TABLES` that are compared exactly, never with a tolerance.
EXACT_KINDS = frozenset({"key", "count", "tally", "flag", "setting", "text", "patient"})


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
        :data:`IDENTICAL`, :data:`WITHIN` or :data:`DIFFERENT` (for a report, :data:`IDENTICAL` means its
        tables are, :func:`compare_report`).
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
            return f"{self.name}: {self.details[0] if self.details else 'byte-identical'}"
        shown = self.details[:_MAX_DETAILS]
        more = f"; and {len(self.details) - _MAX_DETAILS} more" if len(self.details) > _MAX_DETAILS else ""
        label = "equal within tolerance" if self.state == WITHIN else "DIFFERENT"
        return f"{self.name}: {label} ({'; '.join(shown)}{more})"


def _rel_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    scale = np.maximum(np.abs(a), np.abs(b))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(scale > 0, np.abs(a - b) / scale, 0.0)


def _allowed(a: np.ndarray, b: np.ndarray, tol: Tolerance, pvalue: bool, atol: float | None = None) -> np.ndarray:
    """Elementwise: are finite ``a`` and ``b`` equal within ``tol`` (and, for p-values, one last digit)?

    ``atol`` is the absolute floor (default ``tol.abs``; a table column passes its scaled floor).
    """
    scale = np.maximum(np.abs(a), np.abs(b))
    limit = np.maximum(tol.rel * scale, tol.abs if atol is None else atol)
    if pvalue:
        with np.errstate(divide="ignore"):
            step = np.where(scale > 0, 10.0 ** (np.floor(np.log10(np.where(scale > 0, scale, 1.0))) - (PVALUE_DIGITS - 1)), 0.0)
        limit = np.maximum(limit, step * (1 + 1e-6))
    return np.abs(a - b) <= limit


def _is_number(cells: pd.Series) -> pd.Series:
    return pd.to_numeric(cells, errors="coerce").notna() | cells.str.lower().isin(["nan", "inf", "-inf"])


def column_floor(x: pd.Series, y: pd.Series, tol: Tolerance = DEFAULT) -> float:
    """The absolute floor of one float column: ``max(tol.abs, tol.rel * m)``, ``m`` its largest finite ``|value|``.

    Parameters
    ----------
    x, y : pandas.Series
        The column in the two tables, as text (empty cells and non-numbers are ignored).
    tol : Tolerance
        The tolerance.

    Returns
    -------
    float
        The floor (see the module docstring: values from cancellation carry the noise of the column).
    """
    values = pd.to_numeric(pd.concat([x, y]), errors="coerce").to_numpy(dtype=float)
    values = np.abs(values[np.isfinite(values)])
    return max(tol.abs, tol.rel * float(values.max())) if values.size else tol.abs


def exact_kind(table: str, column: str) -> str | None:
    """The registry kind of ``column`` of ``table`` when it is one of :data:`EXACT_KINDS`, else None.

    Parameters
    ----------
    table : str
        The table's name (a key of :data:`pbc_analysis.publish.bundle.TABLES`).
    column : str
        The column's name (exact names, then the registry's patterns).

    Returns
    -------
    str or None
    """
    spec = PUBLISH_TABLES.get(table)
    rule = spec.column(column) if spec is not None else None
    return rule.kind if rule is not None and rule.kind in EXACT_KINDS else None


def _compare_float_column(col: str, x: pd.Series, y: pd.Series, tol: Tolerance) -> tuple[str, str, float, float]:
    """State, detail, max abs and max rel differences of one float column whose cells differ somewhere."""
    atol = column_floor(x, y, tol)
    differ = (x != y).to_numpy()
    filled = ((x != "") & (y != "")).to_numpy()
    both = differ & filled                       # two numbers that are written differently
    a = pd.to_numeric(x[both]).to_numpy(dtype=float)
    b = pd.to_numeric(y[both]).to_numpy(dtype=float)
    finite = np.isfinite(a) & np.isfinite(b)
    close = (a == b) | (np.isnan(a) & np.isnan(b))
    close[finite] = _allowed(a[finite], b[finite], tol, is_pvalue_column(col), atol)
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
                  f"max rel diff {mrel:.3g}, column floor {atol:.3g} ({example})")
        return DIFFERENT, detail, mabs, mrel
    return WITHIN, (f"{col}: {n_diff} rows within tolerance, max abs diff {mabs:.3g}, max rel diff {mrel:.3g}, "
                    f"column floor {atol:.3g} ({example})"), mabs, mrel


def table_name(name: str) -> str:
    """The registry name of an output: ``tables/bm_ratios.csv`` -> ``bm_ratios``.

    Parameters
    ----------
    name : str
        An output's name or path.

    Returns
    -------
    str
    """
    return Path(name).stem


def compare_frames(x: pd.DataFrame, y: pd.DataFrame, name: str = "table", tol: Tolerance = DEFAULT,
                   labels: tuple[str, str] = LABELS, table: str | None = None) -> Comparison:
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
    table : str, optional
        The table's name in :data:`pbc_analysis.publish.bundle.TABLES`, whose columns of :data:`EXACT_KINDS`
        are compared exactly (default :func:`table_name` of ``name``; an unregistered name has none).

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
    table = table_name(name) if table is None else table
    details, states, mabs, mrel = [], [], 0.0, 0.0
    for col in x.columns:
        xc, yc = x[col].reset_index(drop=True), y[col].reset_index(drop=True)
        differ = xc != yc
        if not differ.any():
            continue
        cells = pd.concat([xc, yc])
        filled = cells[cells != ""]
        numeric = bool(len(filled)) and bool(_is_number(filled).all())
        kind = exact_kind(table, str(col))
        if numeric and kind is None and not filled.str.match(_INTEGER).all():
            state, detail, a, r = _compare_float_column(str(col), xc, yc, tol)
            mabs, mrel = max(mabs, a), max(mrel, r)
        else:
            i = int(differ.to_numpy().argmax())
            why = f", compared exactly: a {kind} column" if kind and numeric else ""
            state, detail = DIFFERENT, (f"{col}: {int(differ.sum())} rows differ (e.g. row {i + 1}: "
                                        f"{xc.iloc[i]!r} vs {yc.iloc[i]!r}{why})")
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
    if published.suffix == ".xlsx":
        return _compare_workbooks(published, rerun, name, tol, labels)
    if published.suffix == ".png":
        return compare_figure(published.read_bytes(), rerun.read_bytes(), name, labels)
    return Comparison(name, DIFFERENT, ["content differs (compared byte for byte only)"])


def _pixels(raw: bytes) -> np.ndarray:
    """A PNG's pixels as RGBA bytes ``(height, width, 4)`` (Pillow; its decompression-bomb limit applies)."""
    from PIL import Image

    with Image.open(io.BytesIO(raw)) as im:
        if im.format != "PNG":
            raise ValueError(f"a {im.format} image, not PNG")
        return np.asarray(im.convert("RGBA"), dtype=np.int16)


def compare_figure(published: bytes, rerun: bytes, name: str = "figure.png", labels: tuple[str, str] = LABELS) -> Comparison:
    """Compare two PNG figures by their pixels (the rule of :data:`FIGURE_RMS`).

    Parameters
    ----------
    published, rerun : bytes
        The two PNG files' contents.
    name : str
        Name used in the outcome.
    labels : tuple of str
        What the two figures are, for the messages.

    Returns
    -------
    Comparison
        :data:`IDENTICAL` when the bytes or the decoded pixels are equal (saying which), :data:`WITHIN` when the
        pixels differ by a root-mean-square of at most :data:`FIGURE_RMS`, else :data:`DIFFERENT` with the sizes
        or the share of pixels that differ and the RMS; an unreadable image is :data:`DIFFERENT`.

    References
    ----------
    The root-mean-square pixel difference of matplotlib's own image tests (``matplotlib.testing.compare``).
    """
    if published == rerun:
        return Comparison(name, IDENTICAL)
    try:
        a, b = _pixels(published), _pixels(rerun)
    except Exception as exc:   # Pillow raises OSError, ValueError, SyntaxError or its DecompressionBombError
        return Comparison(name, DIFFERENT, [f"not a readable PNG image: {type(exc).__name__}: {_short(exc)}"])
    if a.shape != b.shape:
        return Comparison(name, DIFFERENT, [f"{a.shape[1]} x {a.shape[0]} pixels {labels[0]} vs {b.shape[1]} x "
                                            f"{b.shape[0]} {labels[1]}"])
    diff = a - b
    if not diff.any():
        return Comparison(name, IDENTICAL, ["pixels identical (the PNG metadata differs, excluded by rule)"])
    rms = float(np.sqrt(np.mean(diff.astype(float) ** 2)))
    share = float(np.any(diff != 0, axis=2).mean())
    detail = f"{share:.2%} of pixels differ, root-mean-square {rms:.3g} on 0-255 (allowed {FIGURE_RMS:g})"
    return Comparison(name, WITHIN if rms <= FIGURE_RMS else DIFFERENT, [detail], rms / 255, rms / 255)


def _short(exc: BaseException, width: int = 120) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= width else text[:width - 3] + "..."


def _page_figures(html_text: str) -> tuple[list[bytes], list[str]]:
    """The PNG figures (data URIs, decoded) and the inline SVG charts of a rendered page, in order."""
    pngs = []
    for m in _PNG_URI.finditer(html_text):
        try:
            pngs.append(base64.b64decode(m.group(1), validate=True))
        except (binascii.Error, ValueError):
            pngs.append(b"")   # compared as an unreadable image
    return pngs, _SVG.findall(html_text)


def _figure_differences(a: str, b: str, labels: tuple[str, str]) -> tuple[list[str], bool]:
    """How the figures of two pages differ (and whether any is only within tolerance)."""
    (pa, sa), (pb, sb) = _page_figures(a), _page_figures(b)
    if len(pa) != len(pb) or len(sa) != len(sb):
        return [f"{len(pa)} images and {len(sa)} charts {labels[0]} vs {len(pb)} and {len(sb)} {labels[1]}"], False
    out, within = [], False
    for i, (x, y) in enumerate(zip(pa, pb), start=1):
        c = compare_figure(x, y, f"image {i}", labels)
        within |= c.state == WITHIN
        if c.state == DIFFERENT:
            out.append(f"image {i}: {c.details[0]}")
    out += [f"chart {i} (inline SVG) differs" for i, (x, y) in enumerate(zip(sa, sb), start=1) if x != y]
    return out, within


def _workbook_sheets(path: Path) -> dict[str, pd.DataFrame]:
    """Every sheet of a workbook as a table of text cells (values only; the header is the first row)."""
    from openpyxl import load_workbook

    wb = load_workbook(path, read_only=True, data_only=True)
    out = {}
    for ws in wb.worksheets:
        rows = [["" if v is None else repr(v) if isinstance(v, float) else str(v) for v in r]
                for r in ws.iter_rows(values_only=True)]
        out[ws.title] = pd.DataFrame(rows[1:], columns=rows[0]) if rows else pd.DataFrame()
    wb.close()
    return out


def _compare_workbooks(published: Path, rerun: Path, name: str, tol: Tolerance, labels: tuple[str, str]) -> Comparison:
    """Two workbooks compared sheet by sheet as tables (:func:`compare_frames`), the sheets' names first."""
    import zipfile

    try:
        a, b = _workbook_sheets(published), _workbook_sheets(rerun)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        return Comparison(name, DIFFERENT, [f"not a readable workbook: {exc}"])
    if list(a) != list(b):
        return Comparison(name, DIFFERENT, [f"sheets {list(a)} {labels[0]} vs {list(b)} {labels[1]}"])
    parts = [compare_frames(a[sheet], b[sheet], f"{name} [{sheet}]", tol, labels) for sheet in a]
    states = {c.state for c in parts}
    state = DIFFERENT if DIFFERENT in states else WITHIN
    details = [f"[{sheet}] {d}" for sheet, c in zip(a, parts) for d in c.details]
    return Comparison(name, state, details, max((c.max_abs for c in parts), default=0.0),
                      max((c.max_rel for c in parts), default=0.0))


def _first_table_difference(a: dict[str, Any], b: dict[str, Any], labels: tuple[str, str]) -> str | None:
    """Where two tables extracted from a report first differ (caption, headers, row count, cell), or None."""
    caption = a["caption"] or "(no caption)"
    if a["caption"] != b["caption"]:
        return f"caption {a['caption']!r} {labels[0]} vs {b['caption']!r} {labels[1]}"
    if a["headers"] != b["headers"]:
        return f"table {caption!r}: headers {a['headers']} {labels[0]} vs {b['headers']} {labels[1]}"
    if len(a["rows"]) != len(b["rows"]):
        return f"table {caption!r}: {len(a['rows'])} rows {labels[0]} vs {len(b['rows'])} rows {labels[1]}"
    for r, (u, v) in enumerate(zip(a["rows"], b["rows"])):
        if u != v:
            width = max(len(u), len(v))
            c = next(i for i in range(width) if (u[i] if i < len(u) else None) != (v[i] if i < len(v) else None))
            header = a["headers"][c] if c < len(a["headers"]) else f"column {c + 1}"
            cell = (u[c] if c < len(u) else "(no cell)"), (v[c] if c < len(v) else "(no cell)")
            return f"table {caption!r}: row {r + 1}, {header!r}: {cell[0]!r} {labels[0]} vs {cell[1]!r} {labels[1]}"
    return None


def compare_report(published: Path, rerun: Path, name: str = "report.html", labels: tuple[str, str] = LABELS) -> Comparison:
    """Compare two rendered reports (or practice pages) by their tables and their figures.

    A report is never byte-identical to its re-run (the renderer gives cells random ids, and the
    reproducibility section names the run's own directory and checkout). Its tables are what a reader quotes,
    printed at the precision they are read at, so every caption, header and cell must match as exact text; its
    figures (PNG images as data URIs, by :func:`compare_figure`; inline SVG charts, as exact text) must match
    in number and content.

    Parameters
    ----------
    published, rerun : Path
        The two ``report.html`` files.
    name : str
        Name used in the outcome.
    labels : tuple of str
        What the two files are, for the messages.

    Returns
    -------
    Comparison
        :data:`IDENTICAL` when the bytes, or else every table (same number, in the same order) and figure, are
        equal (:data:`WITHIN` when an image is only within :data:`FIGURE_RMS`); :data:`DIFFERENT` naming the
        first differing table by its caption and its first differing cell (row, column header, the two texts),
        and each differing figure.

    References
    ----------
    Tables are read by :func:`pbc_analysis.publish.report.extract_tables` (the standard library's HTML parser).
    """
    from pbc_analysis.publish.report import extract_tables

    if not published.is_file() or not rerun.is_file():
        return Comparison(name, DIFFERENT, [f"missing from the {labels[0] if not published.is_file() else labels[1]} outputs"])
    raw = published.read_bytes(), rerun.read_bytes()
    if raw[0] == raw[1]:
        return Comparison(name, IDENTICAL)
    try:
        tables = [extract_tables(r.decode("utf-8")) for r in raw]
    except UnicodeDecodeError as exc:
        return Comparison(name, DIFFERENT, [f"not readable as UTF-8 HTML: {exc}"])
    if len(tables[0]) != len(tables[1]):
        only = [t["caption"] for t in tables[0] if t["caption"] not in {u["caption"] for u in tables[1]}]
        only_b = [t["caption"] for t in tables[1] if t["caption"] not in {u["caption"] for u in tables[0]}]
        more = (f"; only {labels[0]}: {only[0]!r}" if only else "") + (f"; only {labels[1]}: {only_b[0]!r}" if only_b else "")
        return Comparison(name, DIFFERENT, [f"{len(tables[0])} tables {labels[0]} vs {len(tables[1])} {labels[1]}{more}"])
    found = [d for d in (_first_table_difference(a, b, labels) for a, b in zip(*tables)) if d]
    figures, within = _figure_differences(raw[0].decode("utf-8"), raw[1].decode("utf-8"), labels)
    if found or figures:
        return Comparison(name, DIFFERENT, found + figures)
    n_png, n_svg = (len(x) for x in _page_figures(raw[0].decode("utf-8")))
    same = (f"all {len(tables[0])} tables identical, caption, headers and cells, and its {n_png} images and {n_svg} "
            f"charts {'within tolerance' if within else 'identical'} (the text around them is checked against its "
            "hash only)")
    return Comparison(name, WITHIN if within else IDENTICAL, [same])
