"""A table under validation (:class:`_Ctx`) and its element-wise rules (pandera, lazily, column by column).

:class:`_Ctx` holds a frame with its file label, its row numbering and cached factorisations of its
columns; the code helpers here (:func:`_combine`, :func:`_key_codes`, :func:`_lookup`, ...) turn columns
into integer codes, so that the table-level rules (:mod:`pbc_analysis.data.rules`) and the plausibility
checks are vectorised. Text columns of large tables are checked by pandera on their distinct values
(a factorisation), which is exact for element-wise rules.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from pbc_analysis.core import calendar
from pbc_analysis.data.problems import KEEP_ROWS, Problem, _are, _n, _rows, _samples
from pbc_analysis.data.schema import TABLES, _dtype_name
from pbc_analysis.data.window import Window

#: text columns with at least this many rows are checked by pandera on their distinct values
DEDUPE_MIN_ROWS = 10_000


class _Ctx:
    """One table under validation: its frame, file label, row numbering and cached factorisations."""

    def __init__(self, table: str, df: pd.DataFrame, file: str, rowmap: np.ndarray | None = None,
                 check_dtype: bool = True, excluded: Mapping[str, np.ndarray] | None = None):
        self.table = table
        self.spec = TABLES[table]
        if not isinstance(df.index, pd.RangeIndex) or df.index.start != 0 or df.index.step != 1:
            df = df.reset_index(drop=True)
        self.df = df
        self.n = len(df)
        self.file = file
        self.rowmap = rowmap
        self.check_dtype = check_dtype
        self.excluded = dict(excluded or {})
        self.invalid: dict[str, np.ndarray] = {}  # boolean masks of cells failing column checks
        self._raw: dict[str, tuple[np.ndarray, pd.Index]] = {}
        self._months: dict[str, np.ndarray] = {}
        self.usable: set[str] = {c for c in self.spec.column_names if c in df.columns}

    def has(self, *cols: str) -> bool:
        return all(c in self.usable for c in cols)

    def raw_factorize(self, col: str) -> tuple[np.ndarray, pd.Index]:
        """(codes, uniques) of a column; missing cells get code -1.

        A ``Categorical`` column's own codes and categories are used as they are (no copy; the codes are
        of the narrowest integer width); a frame from a caller first has its unused categories removed,
        so that every unique value occurs (the reader keeps only the values present).
        """
        if col not in self._raw:
            s = self.df[col]
            if isinstance(s.dtype, pd.CategoricalDtype):
                cat = s.array.remove_unused_categories() if self.check_dtype else s.array
                self._raw[col] = (np.asarray(cat.codes), pd.Index(cat.categories))
            else:
                codes, uniques = pd.factorize(s, use_na_sentinel=True)
                self._raw[col] = (np.asarray(codes, dtype=np.int64), pd.Index(uniques))
        return self._raw[col]

    def factorize(self, col: str) -> tuple[np.ndarray, pd.Index]:
        """(codes, uniques) of a column; missing cells and cells failing a column check get code -1."""
        codes, uniques = self.raw_factorize(col)
        if col in self.invalid:
            codes = np.where(self.invalid[col], -1, codes)
        return codes, uniques

    def month_index(self, col: str) -> np.ndarray:
        """``year*12 + month - 1`` per row (``int32``); -1 where missing or not a valid month."""
        if col not in self._months:
            self._months[col] = self._month_index(col)
        return self._months[col]

    def _month_index(self, col: str) -> np.ndarray:
        codes, uniques = self.factorize(col)
        u = pd.Series(uniques, dtype="str")
        ok = u.str.fullmatch(calendar.MONTH_PATTERN).fillna(False).astype(bool)
        y = pd.to_numeric(u.str.slice(0, 4).where(ok), errors="coerce")
        m = pd.to_numeric(u.str.slice(5, 7).where(ok), errors="coerce")
        mi = np.append((y * 12 + m - 1).fillna(-1).astype(np.int32).to_numpy(), np.int32(-1))
        return mi[codes]  # code -1 (missing or invalid): the last slot, -1

    def problem(self, column: str | None, positions: np.ndarray, message: str, fix: str, check: str,
                values: list[Any] | None = None) -> Problem:
        positions = np.asarray(positions, dtype=np.int64)
        rows = _rows(positions[:KEEP_ROWS], self.rowmap)
        if values is None:
            if column is not None and column in self.df.columns:
                values = _samples(self.df[column].iloc[positions[: KEEP_ROWS * 10]].tolist())
            else:
                values = []
        return Problem(self.file, self.table, column, [int(r) for r in rows], values, message, fix,
                       n_rows=len(positions), check=check)


def _check_text(check_name: str, stats: dict[str, Any], meta: dict[str, Any], col: str, n: int) -> tuple[str, str, str]:
    """(check id, message, fix) for a failed pandera check."""
    kind = meta.get("kind", "")
    cells = f"{_n(n, 'value')} {_are(n)}"
    if check_name == "not_nullable":
        return ("missing_value", f"{_n(n, 'value')} {_are(n)} missing (empty cells) in a column that must not be missing",
                f"fill in '{col}' for these rows in the source data; missing values are not allowed here")
    if check_name == "greater_than_or_equal_to":
        what = "counts" if kind == "count" else "amounts"
        return ("negative", f"{cells} negative (must be >= {stats.get('min_value')})",
                f"{what} are never negative: correct these rows in the source data")
    if check_name == "greater_than":
        return ("not_positive", f"{cells} not greater than {stats.get('min_value')}",
                f"'{col}' must be positive: correct these rows or remove rows that should not be there")
    if check_name == "in_range":
        return ("out_of_range", f"{cells} outside {stats.get('min_value')} to {stats.get('max_value')}",
                f"'{col}' must lie between {stats.get('min_value')} and {stats.get('max_value')}")
    if check_name == "isin":
        allowed = ", ".join(map(str, stats.get("allowed_values", [])))
        return ("not_allowed", f"{cells} not allowed (allowed: {allowed})", f"use one of: {allowed}")
    if check_name == "notin":
        forbidden = ", ".join(map(str, stats.get("forbidden_values", [])))
        extra = " (A&E is not a referral specialty)" if kind == "specialty_code" else ""
        return ("not_allowed", f"{cells} not allowed here: {forbidden}{extra}",
                f"remove or correct these rows; '{col}' may not be {forbidden}")
    if check_name == "str_matches":
        if kind == "month":
            return ("bad_month", f"wrong type: {cells} not a valid month (YYYY-MM, e.g. 2005-04)",
                    "write months as YYYY-MM with a month 01 to 12 (not dates, not 2005-4)")
        example = {"practice_code": "P81001 (one letter and five digits)",
                   "provider_code": "RA7 (three to five capital letters/digits)",
                   "specialty_code": "110 (three digits, kept as text so leading zeros stay)",
                   "commissioner_code": "5A0 (three to five capital letters/digits)"}.get(kind, "")
        return ("bad_pattern", f"{cells} not a valid {kind.replace('_', ' ')} (pattern {stats.get('pattern')})",
                f"correct the codes; a valid {kind.replace('_', ' ')} looks like {example}".rstrip())
    if check_name == "financial_year":
        return ("bad_financial_year", f"wrong type: {cells} not a valid financial year (YYYY/YY, e.g. 2005/06)",
                "write financial years as YYYY/YY with consecutive years (April 2005 to March 2006 is 2005/06)")
    if check_name.startswith("dtype"):
        return ("wrong_type", f"wrong type: the column's dtype is not {check_name[6:-1]}",
                "convert the column to the type in the data dictionary (codes and months as text)")
    return (check_name, f"{cells} fail check {check_name}", "correct these rows")


_COLUMN_SCHEMAS: dict[tuple[str, str, bool], pa.DataFrameSchema] = {}


def _column_schema(table: str, col: str, check_dtype: bool) -> pa.DataFrameSchema:
    """A one-column schema for ``table.col`` (without the dtype check for columns the reader typed)."""
    k = (table, col, check_dtype)
    if k not in _COLUMN_SCHEMAS:
        schema = pa.DataFrameSchema({col: TABLES[table].schema.columns[col]}, strict=False, coerce=False)
        _COLUMN_SCHEMAS[k] = schema if check_dtype else schema.update_column(col, dtype=None)
    return _COLUMN_SCHEMAS[k]


def _pandera_problems(ctx: _Ctx, col: str) -> list[Problem]:
    column = ctx.spec.schema.columns[col]
    schema = _column_schema(ctx.table, col, ctx.check_dtype)
    s = ctx.df[col]
    categorical = isinstance(s.dtype, pd.CategoricalDtype) and ctx.spec.dtypes[col] == "str"
    dedupe = categorical or (len(s) >= DEDUPE_MIN_ROWS and (s.dtype == object or pd.api.types.is_string_dtype(s.dtype)))
    if dedupe:  # the distinct values (a Categorical's categories), with one NaN entry for missing cells
        codes, uniques = ctx.raw_factorize(col)
        vtype = uniques.dtype if categorical else s.dtype
        values = pd.Series(uniques, dtype=vtype)
        if (codes < 0).any():  # missing cells: one NaN entry, at index len(uniques)
            values = pd.concat([values, pd.Series([None], dtype=vtype)], ignore_index=True)
            codes = np.where(codes < 0, len(uniques), codes.astype(np.int64))
        frame = values.to_frame(col)
    else:
        frame = s.to_frame()
    try:
        schema.validate(frame, lazy=True)
        return []
    except SchemaErrors as exc:
        fc = exc.failure_cases
    meta = ctx.spec.meta(col)
    problems: list[Problem] = []
    excluded = ctx.excluded.get(col)
    stats: dict[str, Any]
    for (check, number), group in fc.groupby(["check", fc["check_number"].fillna(-1)], sort=False, dropna=False):
        idx = pd.to_numeric(group["index"], errors="coerce").dropna().astype(np.int64).to_numpy()
        if check.startswith("dtype"):
            name, stats = check, {}
        elif check == "not_nullable":
            name, stats = check, {}
        else:
            chk = column.checks[int(number)]
            name, stats = chk.name, dict(chk.statistics or {})
        if dedupe:
            positions = np.flatnonzero(np.isin(codes, idx))
        else:
            positions = np.sort(idx)
        if excluded is not None and len(positions):
            positions = positions[~np.isin(positions, excluded)]
        if not len(positions) and not name.startswith("dtype"):
            continue
        if name not in ("not_nullable",) and not name.startswith("dtype"):
            mask = ctx.invalid.setdefault(col, np.zeros(ctx.n, dtype=bool))
            mask[positions] = True
        cid, msg, fix = _check_text(name, stats, meta, col, len(positions))
        if name.startswith("dtype"):
            msg = f"wrong type: the column has dtype {s.dtype}, expected {_dtype_name(column)}"
            values = _samples(group["failure_case"].tolist()) if len(positions) else [str(s.dtype)]
            problems.append(ctx.problem(col, positions, msg, fix, cid, values=values))
            ctx.usable.discard(col)
            continue
        problems.append(ctx.problem(col, positions, msg, fix, cid))
    return problems


def _combine(parts: Sequence[tuple[np.ndarray, int]]) -> np.ndarray:
    """Mixed-radix combination of non-negative integer codes (re-compacted before int64 overflow), ``int64``,
    built in place (one array of the rows' length)."""
    key = np.zeros(len(parts[0][0]) if parts else 0, dtype=np.int64)
    span = 1
    for codes, n in parts:
        n = max(int(n), 1)
        if span * n >= 2 ** 62:
            key = pd.factorize(key)[0].astype(np.int64)
            span = int(key.max()) + 1 if len(key) else 1
        key *= n
        key += codes
        span *= n
    return key


def _key_codes(ctx: _Ctx, cols: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(combined key, valid mask) of rows; rows with a missing/invalid key part are not valid."""
    parts, valid = [], np.ones(ctx.n, dtype=bool)
    for c in cols:
        codes, uniques = ctx.factorize(c)
        ok = codes >= 0
        valid &= ok
        parts.append((codes if ok.all() else np.maximum(codes, 0), len(uniques)))
    return _combine(parts), valid


def _reference_values(ctxs: Mapping[str, _Ctx], table: str) -> pd.Index | None:
    ref = ctxs.get(table)
    if ref is None:
        return None
    key = ref.spec.key[0]
    if not ref.has(key):
        return None
    return pd.Index(ref.df[key].dropna().unique())


def _practice_index(ctx: _Ctx, ctxs: Mapping[str, _Ctx]) -> tuple[np.ndarray, pd.Index] | None:
    """Per row, the index of the practice in ``practices`` (-1 if unknown/missing), and the practice list."""
    known = _reference_values(ctxs, "practices")
    if known is None or not ctx.has("practice_code"):
        return None
    codes, uniques = ctx.factorize("practice_code")
    idx = np.append(known.get_indexer(pd.Index(uniques)), -1)
    return idx[codes], known


def _window_month(ctx: _Ctx, window: Window, col: str = "month") -> np.ndarray:
    mi = ctx.month_index(col)
    rel = mi - window.start_index
    return np.where((mi >= 0) & (rel >= 0) & (rel < window.n_months), rel, -1)


def _lookup(ctx: _Ctx, col: str, vocabulary: Sequence[str]) -> np.ndarray:
    """Per row, the index of the value in ``vocabulary`` (-1 if missing or not in it)."""
    codes, uniques = ctx.factorize(col)
    idx = np.append(pd.Index(vocabulary).get_indexer(pd.Index(uniques)), -1)
    return idx[codes]
