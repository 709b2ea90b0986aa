"""Reading one table file (CSV, CSV.gz or Parquet) into a frame of the schema's types.

CSV is read with everything as text (nothing is coerced), then each column is converted to its schema
type; every cell that does not convert is a problem. Codes stay text, so leading zeros are kept. Parquet
columns must already have the schema's types (integer columns may be any integer width, float columns may
be stored as integers). After loading, text columns have pandas ``str`` dtype, integers ``int64``, floats
``float64`` and booleans ``bool``; the text columns of the large monthly tables
(:data:`~pbc_analysis.data.schema.CATEGORICAL_TABLES`) are pandas ``Categorical`` instead, with the values
present as sorted ``str`` categories and narrow integer codes (read straight from Parquet's dictionary
encoding, so no string is built per row; the values are the same). Structural problems (empty file, delimiter, encoding, missing or extra
columns, wrong field counts) are collected with the cells that do not convert; nothing is dropped silently.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence, cast

import numpy as np
import pandas as pd
import pyarrow as pyarrow
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pbc_analysis.core import paths as _paths
from pbc_analysis.data.problems import KEEP_ROWS, DataValidationError, Problem, _are, _n, _rows, _samples
from pbc_analysis.data.schema import TABLES, TableSpec


@dataclass
class _Loaded:
    df: pd.DataFrame | None
    problems: list[Problem]
    rowmap: np.ndarray | None = None          # original 1-based row number per position, if rows were skipped
    excluded: dict[str, np.ndarray] = field(default_factory=dict)  # positions whose cells did not convert


def _fix_type(kind: str, dtype: str) -> str:
    return {
        "count": "counts must be whole numbers written like 12 (no decimals, text, spaces or thousands separators)",
        "money": "money must be a plain number like 1234.50 (no currency signs, spaces or thousands separators)",
        "score": "write the score as a plain number like 23.4",
        "bool": "write booleans as true or false",
    }.get(kind, f"write these cells as {dtype}")


def _expected_text(kind: str, dtype: str) -> str:
    return {"count": "a whole number", "money": "a number", "score": "a number",
            "bool": "true or false"}.get(kind, dtype)


def _read_head(path: Path, n: int = 1 << 16) -> bytes:
    if path.name.endswith(".gz"):
        with gzip.open(path, "rb") as f:
            return f.read(n)
    with open(path, "rb") as f:
        return f.read(n)


def _read_all(path: Path) -> bytes:
    if path.name.endswith(".gz"):
        with gzip.open(path, "rb") as f:
            return f.read()
    return path.read_bytes()


_decode_errors = threading.local()


def _record_decode_error(err: UnicodeError) -> tuple[str, int]:
    _decode_errors.positions.append(err.start)  # type: ignore[attr-defined]
    return ("\ufffd", err.end)  # type: ignore[attr-defined]


codecs.register_error("pbc_record", _record_decode_error)


def _encoding_problem(path: Path, table: str, data: bytes | None = None) -> Problem:
    data = _read_all(path) if data is None else data
    fix = ("re-save the file as UTF-8 (in Excel: Save As > 'CSV UTF-8 (Comma delimited)'; in R: "
           "write.csv(..., fileEncoding = 'UTF-8'); in pandas: to_csv(..., encoding='utf-8'))")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or data[:4096].count(b"\x00") > 0:
        return Problem(str(path), table, None, [0], [], "the file is not UTF-8: it looks like UTF-16 "
                       "(Excel's 'Unicode Text'; NUL bytes or a UTF-16 byte-order mark at the start)", fix,
                       n_rows=1, check="encoding")
    _decode_errors.positions = []
    data.decode("utf-8-sig", errors="pbc_record")
    positions = np.asarray(_decode_errors.positions, dtype=np.int64)
    _decode_errors.positions = []
    if not len(positions):  # pragma: no cover - only called on a decoding failure
        return Problem(str(path), table, None, [], [], "the file could not be decoded as UTF-8", fix, check="encoding")
    if data.startswith(codecs.BOM_UTF8):
        positions = positions + 3
    newlines = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
    lines = np.unique(np.searchsorted(newlines, positions))  # 0-based line index: 0 is the header
    first = int(positions[0])
    first_line = int(np.searchsorted(newlines, first))
    line_start = int(newlines[first_line - 1]) + 1 if first_line > 0 else 0
    snippet = data[max(line_start, first - 20): first + 20].decode("utf-8", errors="backslashreplace")
    values: list[Any] = [snippet]
    for pos in positions[1:]:
        b = data[int(pos): int(pos) + 1]
        values.append(b.decode("latin-1") + f" (byte 0x{b.hex().upper()})")
    msg = (f"the file is not UTF-8: byte 0x{data[first:first + 1].hex().upper()} at byte position {first:,} "
           f"(line {first_line + 1}, data row {first_line}) is not valid UTF-8; {len(positions):,} invalid "
           f"byte sequence{'s' if len(positions) != 1 else ''} on {len(lines):,} line{'s' if len(lines) != 1 else ''}. "
           "It is probably Windows-1252 / Latin-1 (e.g. an accented name or a pound sign)")
    return Problem(str(path), table, None, [int(x) for x in lines[:KEEP_ROWS]], _samples(values), msg, fix,
                   n_rows=len(lines), check="encoding")


def _sniff_delimiter(header_text: str) -> str | None:
    counts = {d: header_text.count(d) for d in (";", "\t", "|")}
    best = max(counts, key=counts.get)  # type: ignore[arg-type]
    return best if counts[best] > 0 else None


_DELIM_NAMES = {";": "semicolon (;)", "\t": "tab", "|": "pipe (|)"}


def _csv_header(path: Path, spec: TableSpec) -> tuple[str, list[str]] | _Loaded:
    """The header row of a CSV file (its text and its column names), or the :class:`_Loaded` failure that
    keeps the file from being read (unreadable, empty, not UTF-8, not comma-delimited)."""
    table, f = spec.name, str(path)
    expected = spec.column_names
    try:
        head = _read_head(path)
    except (OSError, EOFError, zlib.error) as exc:
        return _Loaded(None, [Problem(f, table, None, [], [], f"the file cannot be read: {exc}",
                                      "check that the file is a plain or gzip-compressed CSV file", check="unreadable")])
    if not head:
        return _Loaded(None, [Problem(f, table, None, [], [], "the file is empty (0 bytes): no header and no data",
                                      f"write the table with a header row ({', '.join(expected)}) and its data rows",
                                      check="empty_file")])
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in head:
        return _Loaded(None, [_encoding_problem(path, table, head)])
    first_line = head.split(b"\n", 1)[0].rstrip(b"\r")
    if first_line.startswith(codecs.BOM_UTF8):
        first_line = first_line[len(codecs.BOM_UTF8):]
    try:
        header_text = first_line.decode("utf-8")
    except UnicodeDecodeError:
        return _Loaded(None, [_encoding_problem(path, table)])
    header = next(csv.reader([header_text]), [])
    if len(header) <= 1 < len(expected):
        delim = _sniff_delimiter(header_text)
        if delim is not None:
            name = _DELIM_NAMES[delim]
            return _Loaded(None, [Problem(
                f, table, None, [0], [header_text[:120]],
                f"the file is not comma-delimited: it looks {name}-delimited (the header row has no commas "
                f"but {header_text.count(delim)} {name}s)",
                "save the file as comma-separated CSV (in Excel: Save As > 'CSV UTF-8 (Comma delimited)'; "
                "use a full stop as the decimal mark)", n_rows=1, check="delimiter")])
    return header_text, header


_Invalid = tuple[int | None, int, int, str]  # a row with the wrong number of fields: number, expected, actual, text


def _csv_as_text(path: Path, header: Sequence[str], present: Sequence[str]) -> tuple[pyarrow.Table, list[_Invalid]]:
    """The columns ``present`` of a CSV file, every cell as text, and the rows skipped for their field count.

    Read with threads, again without when a skipped row's number is unknown (pyarrow numbers rows only
    when reading serially). Raises what pyarrow raises for a file that cannot be parsed or read.
    """
    invalid: list[_Invalid] = []

    def on_invalid(row: Any) -> str:
        invalid.append((row.number, row.expected_columns, row.actual_columns, row.text))
        return "skip"

    def read(threads: bool) -> pyarrow.Table:
        return pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(use_threads=threads, block_size=1 << 24),
            parse_options=pacsv.ParseOptions(delimiter=",", newlines_in_values=True, invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pyarrow.string() for c in header}, include_columns=list(present),
                strings_can_be_null=False, quoted_strings_can_be_null=False, null_values=[], check_utf8=True),
        )

    tbl = read(True)
    if invalid and any(r[0] is None for r in invalid):
        invalid.clear()
        tbl = read(False)
    return tbl, invalid


def _field_count_problem(f: str, table: str, invalid: list[_Invalid], n_kept: int) -> tuple[np.ndarray, Problem]:
    """The original 1-based data row number of each row kept, and the problem naming the rows skipped."""
    # data row numbers (every skipped row is numbered: _csv_as_text re-reads serially otherwise)
    skipped = np.array(sorted(int(cast(int, r[0])) - 1 for r in invalid), dtype=np.int64)
    pos = np.arange(1, n_kept + 1, dtype=np.int64)
    adjusted = skipped - np.arange(len(skipped))
    rowmap = pos + np.searchsorted(adjusted, pos, side="right")
    first = invalid[0]
    return rowmap, Problem(
        f, table, None, [int(x) for x in skipped[:KEEP_ROWS]], _samples(r[3][:100] for r in invalid),
        f"{len(invalid):,} row{'s have' if len(invalid) != 1 else ' has'} the wrong number of fields (the header "
        f"has {first[1]}; e.g. row {int(skipped[0])} has {first[2]})",
        "quote fields that contain commas (e.g. \"Smith, Jones and Partners\"), remove stray delimiters, "
        "and make every row have one field per column", n_rows=len(invalid), check="field_count")


def _typed_columns(f: str, spec: TableSpec, tbl: pyarrow.Table, present: Sequence[str], rowmap: np.ndarray | None
                   ) -> tuple[dict[str, pyarrow.ChunkedArray], dict[str, np.ndarray], list[Problem]]:
    """The text columns converted to their schema types: (arrays, positions of unconvertible cells, problems)."""
    arrays: dict[str, pyarrow.ChunkedArray] = {}
    excluded: dict[str, np.ndarray] = {}
    problems: list[Problem] = []
    for c in present:
        arr, bad = _convert_text(tbl.column(c), spec.dtypes[c])
        arrays[c] = arr
        if bad is not None and len(bad):
            excluded[c] = bad
            kind = spec.meta(c).get("kind", "")
            raw = tbl.column(c).take(pyarrow.array(bad[:KEEP_ROWS])).to_pylist()
            problems.append(Problem(
                f, spec.name, c, [int(x) for x in _rows(bad[:KEEP_ROWS], rowmap)], _samples(raw),
                f"wrong type: {_n(len(bad), 'cell')} {_are(len(bad))} not "
                f"{_expected_text(kind, spec.dtypes[c])}", _fix_type(kind, spec.dtypes[c]),
                n_rows=len(bad), check="wrong_type"))
    return arrays, excluded, problems


def _read_csv(path: Path, spec: TableSpec) -> _Loaded:
    table, f = spec.name, str(path)
    head = _csv_header(path, spec)
    if isinstance(head, _Loaded):
        return head
    _, header = head
    problems: list[Problem] = []
    dup_names = sorted({c for c in header if header.count(c) > 1})
    for c in dup_names:
        problems.append(Problem(f, table, c, [0], [c], f"the header names column '{c}' {header.count(c)} times",
                                "give every column one unique name, as in the data dictionary", n_rows=1,
                                check="duplicate_column"))
    if dup_names:
        return _Loaded(None, problems)
    problems += _column_set_problems(f, table, spec, header)
    present = [c for c in spec.column_names if c in header]
    try:
        tbl, invalid = _csv_as_text(path, header, present)
    except pyarrow.ArrowInvalid as exc:
        if "UTF8" in str(exc) or "utf8" in str(exc).lower():
            return _Loaded(None, problems + [_encoding_problem(path, table)])
        return _Loaded(None, problems + [Problem(f, table, None, [], [], f"the file cannot be parsed as CSV: {exc}",
                                                 "check the quoting (a quote opened and not closed?) and re-save as CSV",
                                                 check="unreadable")])
    except (OSError, EOFError, zlib.error) as exc:
        return _Loaded(None, problems + [Problem(f, table, None, [], [], f"the file cannot be read: {exc}",
                                                 "check that the file is a plain or gzip-compressed CSV file",
                                                 check="unreadable")])
    rowmap = None
    if invalid:
        rowmap, skipped = _field_count_problem(f, table, invalid, tbl.num_rows)
        problems.append(skipped)
    if tbl.num_rows == 0:
        if not invalid:
            problems.append(Problem(f, table, None, [0], [], "the file has a header but no data rows",
                                    "write the data rows; a table with nothing to report must still have its rows "
                                    "(optional tables may instead be left out)", n_rows=1, check="no_rows"))
        return _Loaded(None, problems)
    arrays, excluded, wrong = _typed_columns(f, spec, tbl, present, rowmap)
    n_rows = tbl.num_rows
    del tbl  # the text is no longer needed: free it before the frame is built
    df = _to_pandas(arrays, present, n_rows, categorical=spec.categorical)
    return _Loaded(df, problems + wrong, rowmap, excluded)


def _column_set_problems(f: str, table: str, spec: TableSpec, header: Sequence[str]) -> list[Problem]:
    expected = spec.column_names
    problems = []
    missing = [c for c in expected if c not in header]
    extra = [c for c in header if c not in expected]
    for c in missing:
        problems.append(Problem(f, table, c, [0], [], f"required column '{c}' is missing (the file has: "
                                f"{', '.join(map(str, header)) or 'no columns'})",
                                f"add column '{c}' (see docs/data_dictionary.md, table '{table}')", n_rows=1,
                                check="missing_column"))
    norm = {c.strip().lower(): c for c in missing}
    for c in extra:
        hint = f"; did you mean '{norm[str(c).strip().lower()]}'?" if str(c).strip().lower() in norm else ""
        problems.append(Problem(f, table, str(c), [0], [c], f"unexpected column '{c}'{hint}",
                                f"remove or rename it; table '{table}' has exactly the columns {', '.join(expected)}",
                                n_rows=1, check="extra_column"))
    return problems


_INT_RE = r"^-?[0-9]{1,18}$"
_FLOAT_RE = r"^-?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?$"


def _positions(mask: pyarrow.ChunkedArray | pyarrow.Array) -> np.ndarray:
    return np.flatnonzero(np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool))


def _convert_text(col: pyarrow.ChunkedArray, dtype: str) -> tuple[pyarrow.ChunkedArray, np.ndarray | None]:
    """Text -> schema type; empty cells become null; returns (array, positions of unconvertible cells)."""
    col = col.cast(pyarrow.string()) if col.type != pyarrow.string() else col
    empty = pc.equal(col, "")
    null_str = pyarrow.scalar(None, pyarrow.string())
    has_empty = pc.any(empty).as_py()
    text = pc.if_else(empty, null_str, col) if has_empty else col
    if dtype == "str":
        return text, None
    if dtype == "bool":
        low = pc.utf8_lower(text)
        is_true, is_false = pc.equal(low, "true"), pc.equal(low, "false")
        ok = pc.or_(is_true, is_false)
        bad = _positions(pc.invert(ok))
        out = pc.if_else(ok, is_true, pyarrow.scalar(None, pyarrow.bool_()))
        return out, bad
    target = pyarrow.int64() if dtype == "int64" else pyarrow.float64()
    try:
        out = pc.cast(text, target)
        bad = np.empty(0, dtype=np.int64)
    except (pyarrow.ArrowInvalid, pyarrow.ArrowNotImplementedError):
        ok = pc.match_substring_regex(text, _INT_RE if dtype == "int64" else _FLOAT_RE)
        bad = _positions(pc.invert(ok))
        out = pc.cast(pc.if_else(ok, text, null_str), target)
    if dtype == "float64":
        nonfinite = _positions(pc.invert(pc.is_finite(out)))
        if len(nonfinite):
            bad = np.union1d(bad, nonfinite)
            out = pc.if_else(pc.is_finite(out), out, pyarrow.scalar(None, pyarrow.float64()))
    return out, bad


def _narrow_int(n: int) -> type[np.signedinteger[Any]]:
    """The narrowest signed integer type holding the codes ``-1 .. n - 1``."""
    for t in (np.int8, np.int16, np.int32):
        if n <= np.iinfo(t).max:
            return t
    return np.int64


def _categorical(arr: pyarrow.ChunkedArray | pyarrow.Array) -> pd.Categorical:
    """A text (or dictionary of text) column as a pandas ``Categorical``: categories the values present,
    sorted and ordered as the strings sort (so ``min``, ``max`` and comparisons with a value present work as
    on text), of ``str`` dtype; codes of the narrowest width; null cells code -1. Every value is kept.

    Dictionary-encoded Parquet columns are used as they are (their dictionaries unified across row groups),
    so no string is materialised per row.
    """
    if isinstance(arr, pyarrow.Array):
        arr = pyarrow.chunked_array([arr])
    if not pyarrow.types.is_dictionary(arr.type):
        arr = pc.dictionary_encode(arr)
    arr = pyarrow.table({"c": arr}).unify_dictionaries().column(0)
    arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    values = np.asarray(arr.dictionary.to_pylist(), dtype=object)
    used = pc.drop_null(pc.unique(arr.indices)).to_numpy(zero_copy_only=False).astype(np.int64)
    used = used[np.asarray([values[i] is not None for i in used], dtype=bool)] if len(used) else used
    keep = np.asarray(sorted(used.tolist(), key=lambda i: values[i]), dtype=np.int64)
    remap = np.full(max(len(values), 1), -1, dtype=_narrow_int(len(keep)))  # -1: a null value
    remap[keep] = np.arange(len(keep))
    indices = arr.indices
    null = indices.is_null().to_numpy(zero_copy_only=False) if indices.null_count else None
    codes = remap[pc.fill_null(indices, 0).to_numpy(zero_copy_only=False)]
    del arr, indices
    if null is not None:
        codes[null] = -1
    categories = pd.Index([str(values[i]) for i in keep], dtype="str")
    return pd.Categorical.from_codes(codes, categories=categories, ordered=True, validate=False)


def _to_pandas(arrays: dict[str, Any], order: Sequence[str], n: int, categorical: bool = False) -> pd.DataFrame:
    """The arrays as a frame; text columns as ``str``, or as ``Categorical`` when ``categorical``."""
    data = {}
    for c in order:
        arr = arrays.pop(c)
        if categorical and (pyarrow.types.is_dictionary(arr.type) or pyarrow.types.is_string(arr.type)
                            or pyarrow.types.is_large_string(arr.type)):
            data[c] = pd.Series(_categorical(arr), name=c, copy=False)
            continue
        if isinstance(arr, pyarrow.ChunkedArray) and arr.num_chunks != 1:
            arr = arr.combine_chunks()
        if isinstance(arr, pyarrow.ChunkedArray):
            arr = arr.chunk(0)
        if pyarrow.types.is_string(arr.type) or pyarrow.types.is_large_string(arr.type):
            data[c] = pd.Series(pd.array(arr, dtype="str"), name=c)
        else:
            data[c] = pd.Series(arr.to_pandas(), name=c, copy=False)
        del arr
    df = pd.DataFrame(data, columns=list(order), copy=False)
    if not order:
        df = pd.DataFrame(index=pd.RangeIndex(n))
    return df


def _is_text(t: pyarrow.DataType) -> bool:
    return pyarrow.types.is_string(t) or pyarrow.types.is_large_string(t) or pyarrow.types.is_string_view(t)


def _parquet_kind_ok(t: pyarrow.DataType, dtype: str) -> bool:
    if pyarrow.types.is_dictionary(t):
        t = t.value_type
    if dtype == "str":
        return _is_text(t)
    if dtype == "int64":
        return pyarrow.types.is_integer(t)
    if dtype == "float64":
        return pyarrow.types.is_floating(t) or pyarrow.types.is_integer(t)
    return pyarrow.types.is_boolean(t)


def _read_parquet(path: Path, spec: TableSpec) -> _Loaded:
    table, f = spec.name, str(path)
    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        msg = "the file is empty (0 bytes)" if path.stat().st_size == 0 else f"the file cannot be read as Parquet: {exc}"
        return _Loaded(None, [Problem(f, table, None, [], [], msg, "re-write the table as a Parquet file",
                                      check="empty_file" if path.stat().st_size == 0 else "unreadable")])
    header = list(schema.names)
    problems = _column_set_problems(f, table, spec, header)
    present = [c for c in spec.column_names if c in header]
    # text columns of the large tables are read as dictionaries, never as a string per row
    as_dict = [c for c in present if spec.categorical and spec.dtypes[c] == "str" and _is_text(schema.field(c).type)]
    tbl = pq.read_table(path, columns=present, read_dictionary=as_dict or None)
    n_rows = tbl.num_rows
    if tbl.num_rows == 0:
        problems.append(Problem(f, table, None, [], [], "the file has no data rows",
                                "write the data rows (optional tables may instead be left out)", check="no_rows"))
        return _Loaded(None, problems)
    arrays: dict[str, Any] = {}
    excluded: dict[str, np.ndarray] = {}
    for c in present:
        col = tbl.column(c)
        dtype = spec.dtypes[c]
        if not _parquet_kind_ok(col.type, dtype):
            excluded[c] = np.arange(tbl.num_rows)
            kind = spec.meta(c).get("kind", "")
            problems.append(Problem(
                f, table, c, [], _samples(col.slice(0, 50).to_pylist()),
                f"wrong type: the Parquet column is {col.type}, expected {'text (string)' if dtype == 'str' else dtype}"
                + (" (codes are text, so leading zeros are kept)" if dtype == "str" else ""),
                f"write column '{c}' as {'string' if dtype == 'str' else dtype}; " + _fix_type(kind, dtype),
                check="wrong_type"))
            continue
        target = {"str": pyarrow.string(), "int64": pyarrow.int64(), "float64": pyarrow.float64(),
                  "bool": pyarrow.bool_()}[dtype]
        if dtype == "str" and spec.categorical:  # kept as (or encoded to) a dictionary: see _categorical
            arrays[c] = col
            continue
        if pyarrow.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        try:
            arrays[c] = col.cast(target) if col.type != target else col
        except pyarrow.ArrowInvalid as exc:
            excluded[c] = np.arange(tbl.num_rows)
            problems.append(Problem(f, table, c, [], [], f"wrong type: values do not fit {dtype}: {exc}",
                                    f"write column '{c}' as {dtype}", check="wrong_type"))
            continue
        if dtype == "float64":
            bad = _positions(pc.and_(pc.is_valid(arrays[c]), pc.invert(pc.is_finite(arrays[c]))))
            bad = bad[~np.isnan(arrays[c].to_numpy()[bad])] if len(bad) else bad  # NaN is missing, not a type error
            if len(bad):
                excluded[c] = bad
                problems.append(Problem(f, table, c, [int(x) for x in bad[:KEEP_ROWS] + 1],
                                        _samples(arrays[c].take(pyarrow.array(bad[:KEEP_ROWS])).to_pylist()),
                                        f"wrong type: {len(bad):,} values are infinite", "write finite numbers",
                                        n_rows=len(bad), check="wrong_type"))
                arrays[c] = pc.if_else(pc.is_finite(arrays[c]), arrays[c], pyarrow.scalar(None, pyarrow.float64()))
    del tbl
    df = _to_pandas(arrays, [c for c in present if c in arrays], n_rows, categorical=spec.categorical)
    # columns whose Parquet type is wrong are kept out of the frame (their checks are skipped)
    return _Loaded(df, problems, None, excluded)


def _format_of(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(".csv") or name.endswith(".csv.gz") or name.endswith(".gz"):
        return "csv"
    return None


def _read(path: Path, table: str) -> _Loaded:
    spec = TABLES[table]
    if not path.is_file():
        return _Loaded(None, [Problem(str(path), table, None, [], [], "the file does not exist",
                                      f"check the path configured for table '{table}'", check="missing_file")])
    fmt = _format_of(path)
    if fmt is None:
        return _Loaded(None, [Problem(str(path), table, None, [], [],
                                      f"unsupported file type '{path.suffix}' (use .csv, .csv.gz or .parquet)",
                                      "save the table as CSV (UTF-8, comma-delimited) or Parquet",
                                      check="unsupported_format")])
    return _read_parquet(path, spec) if fmt == "parquet" else _read_csv(path, spec)


def read_table(path: str | Path, table: str) -> pd.DataFrame:
    """Read one table file (CSV, CSV.gz or Parquet) and convert its columns to the schema types.

    CSV is read as text and converted column by column; Parquet column types are checked. Every
    structural problem (empty file, delimiter, encoding, missing/extra columns, wrong field counts)
    and every unconvertible cell is collected; if there are any, :class:`DataValidationError` is
    raised with all of them. The rules of :func:`pbc_analysis.data.validate` are *not* checked here.

    Parameters
    ----------
    path : str or Path
        The file (relative paths from the project root).
    table : str
        The table it holds, a key of :data:`~pbc_analysis.data.schema.TABLES`.

    Returns
    -------
    pandas.DataFrame
        The table's columns in data-dictionary order, with the schema's dtypes.

    Raises
    ------
    ValueError
        For an unknown ``table``.
    DataValidationError
        Listing every problem of the file.
    """
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; tables are {', '.join(TABLES)}")
    loaded = _read(_paths.resolve(path), table)
    if loaded.problems:
        raise DataValidationError(loaded.problems)
    assert loaded.df is not None
    return loaded.df
