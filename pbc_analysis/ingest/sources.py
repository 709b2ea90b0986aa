"""Reading one extract through its column map: canonical field names, normalised types, coded fields as categories.

:func:`read_source` opens a CSV (every column as text, so codes keep their leading zeros; ``.csv.gz`` too) or a
Parquet file (typed) as an Ibis table on DuckDB or (``engine: spark``) on Spark, where a source may also be a Parquet or
Delta directory or a catalogue table (:func:`pbc_analysis.ingest.spark.open_extract`), with ``_row``, the 1-based data row number in the file (the
header is row 0). Codes are stripped (integer code columns zero-padded to the map's ``pad`` width), dates parsed
with the map's ``date_format`` (Parquet dates and timestamps taken as they are), money as float64, counts as
int64; an empty text field is missing. Coded fields become their category (``first``, ``seen``, ``gp``, ...).
:func:`source_problems` lists, all at once and with example rows and values, the columns the map names but the
file lacks, missing values in fields that need one, values that do not parse, and codes not in the map.

References
----------
DuckDB ``read_csv`` (``all_varchar``) and ``read_parquet`` (``file_row_number``), ``try_strptime``; Spark SQL
``try_to_timestamp``; Ibis.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.datatypes as dt

from pbc_analysis.core.names import did_you_mean
from pbc_analysis.data.problems import KEEP_VALUES, SHOW_ROWS, Problem
from pbc_analysis.ingest import engine
from pbc_analysis.ingest.columnmap import ColumnMap, Field

__all__ = ["DEFAULT_DATE_FORMAT", "Source", "read_source", "source_problems"]

#: the format of a text date column whose map gives none
DEFAULT_DATE_FORMAT = "%Y-%m-%d"
_MAP_FIX = "correct the column map (docs/extracts.md, 'Writing your own column map') or the extract"
_TYPES: dict[str, dt.DataType] = {"code": dt.string, "text": dt.string, "date": dt.date, "money": dt.float64, "int": dt.int64}


@ibis.udf.scalar.builtin
def try_strptime(value: str, fmt: str) -> datetime.datetime:  # type: ignore[empty-body]
    """DuckDB's ``try_strptime``: the timestamp, or null when ``value`` does not match ``fmt``."""


@dataclass
class Source:
    """One extract read through its column map.

    ``table``: the canonical fields (coded fields as their categories) and ``_row``; ``raw``: the same before
    the code lists are applied (for the problems); ``problems``: what made the file unreadable or the map not
    fit it (then ``table`` is None); ``columns``: the file's column names; ``absent``: optional fields the map
    names but the file lacks (read as missing).
    """

    kind: str
    path: Path
    cmap: ColumnMap
    table: Any = None
    raw: Any = None
    wide: Any = None
    text_fields: set[str] = field(default_factory=set)
    absent: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    condensed: Any = None
    table_name: str | None = None
    spark: bool = False

    def checked(self) -> Any:
        """The canonical fields (as :attr:`table`) with ``_id`` (the event id as the file holds it: an integer column
        stays an integer, cheaper to group) and ``_bad`` (bit ``i`` set when check ``i`` of :func:`check_names` fails).

        Returns
        -------
        ibis.Table

        References
        ----------
        Method: the row-level checks as a bit mask, so one grouping pass both condenses the events and counts
        every check (:func:`source_problems` reads the counts from :attr:`condensed`). Source: docs/extracts.md.
        """
        w = self.wide
        bits = [ibis.ifelse(cond, 1 << i, 0) for i, (_, _, cond, _) in enumerate(_checks(self))]
        bad = sum(bits[1:], bits[0]) if bits else ibis.literal(0)
        fields = [w[f"{f}__cat"].name(f) if f"{f}__cat" in w.columns else w[f] for f in self.raw.columns]
        return w.select(*fields, _id=w["_id"], _bad=bad.cast("int64"))

    @property
    def file(self) -> str:
        """The extract's file name (or ``table <name>``), as the problems name it."""
        return f"table {self.table_name}" if self.table_name else str(self.path)

    def column_of(self, fieldname: str) -> str:
        """The extract's column holding a field (its name, or ``column N`` for a file without header).

        Parameters
        ----------
        fieldname : str

        Returns
        -------
        str

        References
        ----------
        Source: the column map (docs/extracts.md).
        """
        col = self.cmap.columns.get(fieldname)
        return f"column {col}" if isinstance(col, int) else str(col)


def _problem(src: Source, column: str | None, message: str, fix: str, rows: list[int] | None = None,
             values: list[Any] | None = None, n_rows: int = 0, check: str = "") -> Problem:
    return Problem(src.file, src.kind, column, rows or [], values or [], message, fix, n_rows=n_rows, check=check)


def _open(con: Any, src: Source) -> Any:
    """The file as an Ibis table with ``_row`` first (CSV: all text, copied into a temporary table)."""
    name = f"src_{src.kind}"
    path = str(src.path)
    if src.spark:
        from pbc_analysis.ingest import spark

        return spark.open_extract(con, name, None if src.table_name else src.path, src.cmap.header, src.table_name)
    if src.path.suffix.lower() == ".parquet":
        t = con.read_parquet(path, table_name=f"{name}_file", file_row_number=True)
        return t.mutate(_row=t.file_row_number + 1).drop("file_row_number")
    header = "true" if src.cmap.header else "false"
    quoted = path.replace("'", "''")
    con.raw_sql(f"CREATE OR REPLACE TEMP TABLE {name}_file AS SELECT * FROM read_csv('{quoted}', all_varchar = true, "
                f"header = {header}, skip = 0)")
    con.raw_sql(f"CREATE OR REPLACE TEMP VIEW {name}_rows AS SELECT rowid + 1 AS _row, * FROM {name}_file")
    return con.table(f"{name}_rows")


def _error_text(src: Source, exc: BaseException) -> str:
    """The line of a reader's error that says what is wrong."""
    if src.spark:
        from pbc_analysis.ingest import spark

        return spark.error_text(exc)
    return str(exc).splitlines()[0]


def _resolve_columns(src: Source, t: Any) -> dict[str, str]:
    """Field -> the table's column, recording a problem for each mapped column the file lacks."""
    names = [c for c in t.columns if c != "_row"]
    src.columns = names
    out: dict[str, str] = {}
    missing = []
    for f, col in src.cmap.columns.items():
        if isinstance(col, int):
            if col <= len(names):
                out[f] = names[col - 1]
            elif src.cmap.fields[f].optional:
                src.absent.append(f)
            else:
                missing.append(f"{f} (column {col}; the file has {len(names)} columns)")
        elif col in names:
            out[f] = col
        elif src.cmap.fields[f].optional:
            src.absent.append(f)
        else:
            missing.append(f"{f} ({col!r}{did_you_mean(col, names)})")
    if missing:
        hint = (" (the file was read as one column: its delimiter could not be detected, often because a row has more "
                "fields than the header)") if len(names) == 1 and any(d in names[0] for d in ",;|\t") else ""
        src.problems.append(_problem(
            src, None, f"the extract lacks {len(missing)} column{'s' if len(missing) != 1 else ''} the column map "
            f"{src.cmap.name!r} names: {', '.join(missing)}; its columns are: {', '.join(names[:40])}{hint}",
            f"use the map that fits this extract, or write your own: {_MAP_FIX}", check="missing_column"))
    return out


def _is_text(col: Any) -> bool:
    return col.type().is_string()


def _normalise(src: Source, fieldname: str, spec: Field, col: Any) -> Any:
    """A column in the field's type (``None``: the column's type cannot hold the field)."""
    kind = spec.kind
    if kind in ("code", "text"):
        if col.type().is_integer():
            out = col.cast("string")
            pad = src.cmap.pad.get(fieldname)
            return out.lpad(pad, "0") if pad else out
        return col.cast("string").strip().nullif("") if _is_text(col) or kind == "text" else None
    if kind == "date":
        if _is_text(col):
            fmt = src.cmap.date_format.get(fieldname, DEFAULT_DATE_FORMAT)
            if src.spark:
                from pbc_analysis.ingest import spark

                return spark.parse_date(col.strip().nullif(""), fmt)
            return try_strptime(col.strip().nullif(""), fmt).cast("date")
        return col.cast("date") if col.type().is_date() or col.type().is_timestamp() else None
    want = "float64" if kind == "money" else "int64"
    if _is_text(col):
        number = col.strip().nullif("").try_cast("float64")
        if kind == "money":
            return number
        # a whole number written as such (12, 12.0); 12.5 does not parse (DuckDB's cast would round it, Spark's refuse it)
        return ibis.ifelse((number % 1) == 0, number, ibis.null("float64")).try_cast("int64")
    ok = col.type().is_numeric() if kind == "money" else col.type().is_integer()
    return col.cast(want) if ok else None


def _categories(src: Source, fieldname: str, col: Any) -> Any:
    mapping = src.cmap.category_of(fieldname)
    other = src.cmap.any_category(fieldname)
    return col.substitute(mapping, else_=ibis.literal(other, "string") if other else ibis.null("string"))


def _cell(col: Any) -> Any:
    """The untouched cell as stripped text, null when empty (to tell an empty cell from one that does not parse)."""
    return col.cast("string").strip().nullif("")


def read_source(con: Any, kind: str, path: str | Path, cmap: ColumnMap, table: str | None = None) -> Source:
    """Open one extract through its column map.

    Parameters
    ----------
    con : ibis backend (DuckDB or Spark)
        From :func:`pbc_analysis.ingest.engine.connect`.
    kind : str
        The source kind (a key of :data:`~pbc_analysis.ingest.columnmap.FIELDS`).
    path : str or Path
        The extract: ``.parquet`` (typed), otherwise CSV (``.csv``, ``.csv.gz``, ``.txt``; delimiter detected); on
        Spark also a Parquet or Delta directory.
    cmap : ColumnMap
        Its column map (for ``kind``).
    table : str, optional
        On Spark: a catalogue table (``db.name``) instead of ``path``.

    Returns
    -------
    Source
        With ``table`` (canonical fields, coded fields as categories, ``_row``) unless the file could not
        be read or lacks a mapped column (see ``problems``).

    References
    ----------
    Method: codes as text, never numbers; nothing dropped (every row keeps its ``_row``).
    Source: DuckDB ``read_csv``/``read_parquet``; the column maps of docs/extracts.md.
    """
    src = Source(kind, Path(path), cmap, table_name=table, spark=engine.is_spark(con))
    if cmap.source != kind:
        src.problems.append(_problem(src, None, f"the column map {cmap.name!r} is for {cmap.source!r}, not {kind!r}",
                                     f"give a map for {kind!r}", check="wrong_map"))
        return src
    try:
        t = _open(con, src)
    except Exception as exc:  # noqa: BLE001 - the engine's reader errors: reported as a problem of this file
        src.problems.append(_problem(src, None, f"the extract cannot be read: {_error_text(src, exc)}",
                                     "check the path, that the file is a CSV (UTF-8) or Parquet file, and that every row has as many "
                                     "fields as the header (a delimiter inside a value must be quoted)",
                                     check="unreadable_file"))
        return src
    cols = _resolve_columns(src, t)
    if src.problems:
        return src
    raw, bad_types = {"_row": t._row}, []
    for f, spec in cmap.fields.items():
        if f not in cols:
            raw[f] = ibis.null(_TYPES[spec.kind])
            continue
        value = _normalise(src, f, spec, t[cols[f]])
        if value is None:
            bad_types.append(f"{src.column_of(f)} ({f}: {spec.kind}) is {t[cols[f]].type()}")
        else:
            raw[f] = value.name(f)
    if bad_types:
        src.problems.append(_problem(src, None, "columns of a type that cannot hold their field: " + "; ".join(bad_types),
                                     "write codes as text or whole numbers, dates as dates or text, money and counts as "
                                     "numbers or text", check="column_type"))
        return src
    src.text_fields = {f for f in cols if _is_text(t[cols[f]])}
    cells = {f"{f}__cell": _cell(t[cols[f]]) if f in src.text_fields else t[cols[f]] for f in cols}
    coded = {f"{f}__cat": _categories(src, f, raw[f]) for f, spec in cmap.fields.items() if spec.categories and f in cols}
    ident = t[cols["event_id"]] if "event_id" in cols and t[cols["event_id"]].type().is_integer() else raw.get("event_id")
    src.wide = t.select(**raw, **cells, **coded, **({"_id": ident} if ident is not None else {}))
    src.raw = src.wide.select(*raw)
    src.table = src.wide.select(*[src.wide[f"{f}__cat"].name(f) if f"{f}__cat" in coded else src.wide[f] for f in raw])
    return src


def _checks(src: Source) -> list[tuple[str, str, Any, str]]:
    """(field, check, condition on a row of ``src.wide``, what is wrong) of every row-level rule of the source."""
    out = []
    w = src.wide
    for f, spec in src.cmap.fields.items():
        if f"{f}__cell" not in w.columns:
            continue
        value, cell = w[f], w[f"{f}__cell"]
        if not spec.nullable:
            out.append((f, "missing_value", cell.isnull(), "no value (empty or missing)"))
        if spec.kind in ("date", "money", "int") and f in src.text_fields:
            fmt = src.cmap.date_format.get(f, DEFAULT_DATE_FORMAT)
            out.append((f, "unparseable", value.isnull() & cell.notnull(),
                        {"date": f"dates that do not match the format {fmt!r}", "money": "values that are not numbers",
                         "int": "values that are not whole numbers"}[spec.kind]))
        if spec.categories:
            out.append((f, "unknown_code", w[f"{f}__cat"].isnull() & value.notnull(), "codes not in the column map's code lists"))
    return out


def source_problems(con: Any, src: Source) -> list[Problem]:
    """Every problem of one extract: reading, missing columns, missing values, unparseable values, unknown codes.

    Parameters
    ----------
    con : ibis DuckDB backend
    src : Source
        From :func:`read_source`.

    Returns
    -------
    list of Problem
        One per (field, check) that fails, naming the file, the source kind (``table``), the column, the rows
        (up to ten examples, ``n_rows`` the total) and example values (codes with their counts).

    References
    ----------
    Method: one aggregate pass counts every check (or, when the events were condensed with their check bits,
    :attr:`Source.condensed`, sums of its groups); only the failing checks are queried for examples.
    Source: the column map's fields (:data:`~pbc_analysis.ingest.columnmap.FIELDS`), docs/extracts.md.
    """
    if src.table is None:
        return list(src.problems)
    checks = _checks(src)
    if not checks:
        return []
    if src.condensed is not None:
        c = src.condensed
        counts = con.to_pyarrow(c.aggregate(**{f"n{i}": ibis.ifelse((c._bad & (1 << i)) != 0, c.rows, 0).sum()
                                               for i in range(len(checks))}))
    else:
        counts = con.to_pyarrow(src.wide.aggregate(**{f"n{i}": cond.sum() for i, (_, _, cond, _) in enumerate(checks)}))
    row = counts.to_pylist()[0]
    return [_example_problem(con, src, f, check, cond, what, int(row[f"n{i}"]))
            for i, (f, check, cond, what) in enumerate(checks) if row[f"n{i}"]]


def _example_problem(con: Any, src: Source, f: str, check: str, cond: Any, what: str, n: int) -> Problem:
    w = src.wide
    bad = w.filter(cond)
    rows = [int(r) for r in con.to_pyarrow(bad.order_by("_row").limit(SHOW_ROWS).select("_row"))["_row"].to_pylist()]
    cell = bad[f"{f}__cell"].cast("string")
    counted = con.to_pyarrow(bad.group_by(cell.name("v")).aggregate(n=bad.count()).order_by([ibis.desc("n"), "v"]).limit(KEEP_VALUES))
    values = counted["v"].to_pylist()
    shown = ", ".join(f"{v!r} ({k:,} row{'s' if k != 1 else ''})" for v, k in zip(values, counted["n"].to_pylist()))
    column = src.column_of(f)
    rows_have = f"{n:,} row{'s have' if n != 1 else ' has'}"
    if check == "missing_value":
        message = f"{rows_have} no {f} ({column}), which every row needs"
        fix = "fill the column in the extract, or map the field to the column that holds it"
        values = []
    elif check == "unparseable":
        message = f"{rows_have} {what} in {f} ({column}): {shown}"
        fix = (f"set date_format.{f} in the column map to the extract's format, or correct the values"
               if src.cmap.fields[f].kind == "date" else "write plain numbers (no thousands separators or currency signs)")
    else:
        message = f"{rows_have} {what} for {f} ({column}): {shown}"
        fix = f"add them to the column map's code lists (codes.{f}: {', '.join(src.cmap.codes[f])}), or correct the extract"
    return _problem(src, column, message, fix, rows=rows, values=values, n_rows=n, check=check)
