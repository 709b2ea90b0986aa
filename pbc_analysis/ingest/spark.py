"""The ingest on Spark (``engine: spark``): the session, reading extracts with their row numbers, the date parser,
materialising and streaming results, so that every Ibis expression of the ingest runs unchanged on Spark.

:func:`connect` returns an Ibis PySpark backend on the active SparkSession (Databricks, ``spark-submit``) or on a
local one it starts (``local[<cores>]``). :func:`open_extract` reads a CSV (every column as text, the delimiter
sniffed from the first line, malformed rows refused), a Parquet file or directory, a Delta table directory or a
catalogue table, with ``_row``: the 1-based data row number, exact for a single file (each row's index inside its
Spark partition plus the rows of the partitions before it; partitions of one file are its byte ranges in order).
:func:`parse_date` is DuckDB's ``try_strptime`` in Spark (the map's strftime format converted to a Java pattern,
``try_to_timestamp``). :func:`materialise` caches an expression as a temporary view (``CACHE TABLE``) and
:func:`batches` streams a result to :func:`pbc_analysis.ingest.engine.write_parquet`. Only aggregated tables
come back to the driver.

References
----------
Apache Spark SQL reference: ``CACHE TABLE``, ``try_to_timestamp``, "Datetime Patterns", CSV data source options
(``mode``, ``sep``, ``escape``), ``spark_partition_id`` and ``monotonically_increasing_id`` (the partition index
in the upper 31 bits, the row index in the lower 33); Ibis PySpark backend.
"""

from __future__ import annotations

import csv
import datetime
import gzip
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import ibis

__all__ = ["ROW_BITS", "SESSION_DEFAULTS", "available", "batches", "close", "connect", "error_text", "java_pattern",
           "materialise", "open_extract", "parse_date", "quote_table", "version"]

#: the bits of ``monotonically_increasing_id`` that hold the row index inside a partition
ROW_BITS = 33
#: settings of a session this module starts (a user's ``spark_conf`` overrides them)
SESSION_DEFAULTS = {
    "spark.app.name": "pbc-ingest",
    "spark.sql.session.timeZone": "UTC",          # dates parsed and cast in one zone, whatever the machine's
    "spark.sql.legacy.timeParserPolicy": "CORRECTED",
    "spark.ui.showConsoleProgress": "false",
}
#: strftime directives and their Java (Spark) patterns; numbers unpadded so that "2005-4-1" parses as in DuckDB
_DIRECTIVES = {"Y": "y", "m": "M", "d": "d", "H": "H", "M": "m", "S": "s", "b": "MMM", "B": "MMMM", "j": "D", "y": "yy"}
#: the fixed-width patterns, for formats whose fields touch (``%Y%m%d``: Java's adjacent value parsing)
_PADDED = {"Y": "yyyy", "m": "MM", "d": "dd", "H": "HH", "M": "mm", "S": "ss", "j": "DDD"}
_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}$")
_DELIMITERS = ",;|\t"


@ibis.udf.scalar.builtin(name="try_to_timestamp")
def _try_to_timestamp(value: str, fmt: str) -> datetime.datetime:  # type: ignore[empty-body]
    """Spark's ``try_to_timestamp``: the timestamp, or null when ``value`` does not match the pattern."""


def available() -> str | None:
    """Why Spark cannot run here (no PySpark, no Java), or None when it can.

    Returns
    -------
    str or None

    References
    ----------
    Source: PySpark installation ("Dependencies": Java 17 or later for Spark 4).
    """
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "PySpark is not installed: install the spark extra (make venv-spark, or pip install -e .[spark])"
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        return "Java is not installed (Spark needs Java 17 or later: apt-get install default-jre-headless)"
    return None


def version() -> str:
    """The PySpark version (the engine's version in ``ingest.json``).

    Returns
    -------
    str
    """
    import pyspark

    return str(pyspark.__version__)


def _session(master: str, conf: dict[str, str], threads: int | None, local_dir: str | None) -> tuple[Any, bool]:
    """The active SparkSession (``master: auto``) or a new one; and whether this module started it."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None and master == "auto":
        return active, False
    if master == "auto":
        master = f"local[{threads or os.cpu_count() or 1}]"
    builder = SparkSession.builder.master(master)
    # a local session's Python workers are this interpreter (the project's environment), not whatever python3 is on PATH
    workers = {"spark.pyspark.python": sys.executable} if master.startswith("local") else {}
    settings = {**SESSION_DEFAULTS, **workers, **({"spark.local.dir": local_dir} if local_dir else {}), **conf}
    for key, value in settings.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    if active is None:
        session.sparkContext.setLogLevel("ERROR")
    return session, active is None


def connect(master: str = "auto", conf: dict[str, str] | None = None, threads: int | None = None,
            local_dir: str | None = None) -> Any:
    """An Ibis PySpark backend on the active SparkSession, or on a session started here.

    Parameters
    ----------
    master : str
        ``auto``: the active session when there is one (Databricks, ``spark-submit``), else ``local[<threads>]``;
        otherwise a Spark master URL (``local[4]``, ``spark://host:7077``, ``yarn``).
    conf : dict, optional
        Spark settings (str -> str) of a session started here, e.g. ``spark.driver.memory``.
    threads : int, optional
        Cores of the local master (default: every core).
    local_dir : str, optional
        ``spark.local.dir`` (where a local session spills) of a session started here.

    Returns
    -------
    ibis.backends.pyspark.Backend
        With ``pbc_views`` (the temporary views made here) and ``pbc_owned`` (whether :func:`close` stops the session).

    References
    ----------
    Source: ``SparkSession.builder``, ``SparkSession.getActiveSession``; Ibis ``ibis.pyspark.connect``.
    """
    session, owned = _session(master, dict(conf or {}), threads, local_dir)
    con = ibis.pyspark.connect(session)
    con.pbc_views = []
    con.pbc_owned = owned
    return con


def close(con: Any) -> None:
    """Drop the temporary views and caches made by the ingest; stop the session only if :func:`connect` started it.

    Parameters
    ----------
    con : ibis PySpark backend
        From :func:`connect`.
    """
    session = con._session
    for name in reversed(getattr(con, "pbc_views", [])):
        session.catalog.dropTempView(name)   # uncached with it
    con.pbc_views = []
    if getattr(con, "pbc_owned", False):
        session.stop()


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def quote_table(name: str) -> str:
    """A checked table name (``name``, ``db.name`` or ``catalog.db.name``) with every part quoted.

    Parameters
    ----------
    name : str

    Returns
    -------
    str

    Raises
    ------
    ValueError
        Not such a name (letters, digits and underscores, not starting with a digit).
    """
    if not (isinstance(name, str) and _TABLE.match(name)):
        raise ValueError(f"not a table name: {name!r} (name, db.name or catalog.db.name; letters, digits, underscores)")
    return ".".join(_quote(part) for part in name.split("."))


def materialise(con: Any, expr: Any, name: str) -> Any:
    """Compute an expression once into a cached temporary view and return it.

    Parameters
    ----------
    con : ibis PySpark backend
    expr : ibis.Table
    name : str
        The view's name (a plain identifier).

    Returns
    -------
    ibis.Table

    References
    ----------
    Method: ``CACHE LAZY TABLE``: computed once, by the first query that reads it (which saves a Spark job per
    table; small jobs dominate the time of a small ingest). Source: Spark SQL ``CACHE TABLE``, ``CREATE TEMPORARY VIEW``.
    """
    session = con._session
    if name in con.pbc_views:
        session.sql(f"UNCACHE TABLE IF EXISTS {_quote(name)}")
    con.create_view(name, expr, overwrite=True)
    session.sql(f"CACHE LAZY TABLE {_quote(name)}")
    if name not in con.pbc_views:
        con.pbc_views.append(name)
    return con.table(name)


def batches(con: Any, expr: Any, batch_size: int) -> Any:
    """The result of ``expr`` (an aggregated table) as a stream of Arrow record batches.

    Parameters
    ----------
    con : ibis PySpark backend
    expr : ibis.Table
    batch_size : int

    Returns
    -------
    pyarrow.RecordBatchReader

    References
    ----------
    Source: Ibis ``Backend.to_pyarrow_batches``.
    """
    return con.to_pyarrow_batches(expr, chunk_size=batch_size)


def java_pattern(fmt: str) -> str:
    """A strftime format (the column map's ``date_format``) as a Spark datetime pattern.

    Parameters
    ----------
    fmt : str
        E.g. ``%Y-%m-%d`` or ``%d/%m/%Y``.

    Returns
    -------
    str
        E.g. ``y-M-d`` (numbers unpadded, so one or two digits parse, as DuckDB's ``strptime``; fixed widths, e.g.
        ``yyyyMMdd``, when two fields touch); literal text quoted.

    Raises
    ------
    ValueError
        A directive with no Spark equivalent (supported: %Y %m %d %H %M %S %b %B %j %y %%).

    References
    ----------
    Source: Spark SQL "Datetime Patterns for Formatting and Parsing"; Python ``strftime`` directives.
    """
    out, literal, i = [], "", 0
    patterns = _PADDED | {k: v for k, v in _DIRECTIVES.items() if k not in _PADDED} if re.search(r"%[^%]%[^%]", fmt) else _DIRECTIVES
    while i < len(fmt):
        ch = fmt[i]
        if ch == "%" and i + 1 < len(fmt) and (fmt[i + 1] in _DIRECTIVES or fmt[i + 1] == "%"):
            if fmt[i + 1] == "%":
                literal += "%"
            else:
                if literal:
                    out.append("'" + literal.replace("'", "''") + "'")
                    literal = ""
                out.append(patterns[fmt[i + 1]])
            i += 2
            continue
        if ch == "%":
            raise ValueError(f"the date format {fmt!r} has a directive Spark cannot parse ({fmt[i:i + 2]!r}); "
                             f"supported: {' '.join('%' + d for d in _DIRECTIVES)} %%")
        literal += ch
        i += 1
    if literal:
        out.append("'" + literal.replace("'", "''") + "'")
    return "".join(out)


def parse_date(value: Any, fmt: str) -> Any:
    """The date of a text column in a strftime format, null when it does not match (DuckDB's ``try_strptime``).

    Parameters
    ----------
    value : ibis string column
    fmt : str
        A strftime format.

    Returns
    -------
    ibis date column

    References
    ----------
    Source: Spark SQL ``try_to_timestamp``; :func:`java_pattern`.
    """
    return _try_to_timestamp(value, java_pattern(fmt)).cast("date")


def _first_line(path: Path) -> str | None:
    """The first line of a local CSV (``.gz`` too), or None when it cannot be read here (Spark reads it then)."""
    try:
        opener = gzip.open if path.suffix.lower() == ".gz" else open
        with opener(path, "rt", encoding="utf-8-sig", newline="") as f:
            return f.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError, EOFError):
        return None


def _delimiter(line: str | None) -> str:
    """The CSV delimiter sniffed from the first line (``,`` when it cannot be told)."""
    try:
        return csv.Sniffer().sniff(line, delimiters=_DELIMITERS).delimiter if line else ","
    except csv.Error:
        return ","


def _csv(session: Any, path: Path, header: bool) -> Any:
    """A CSV file as all-text columns (header-less columns named as DuckDB names them), malformed rows refused."""
    from pyspark.sql import types as T

    line = _first_line(path)
    sep = _delimiter(line)
    options = {"header": header, "sep": sep, "quote": '"', "escape": '"', "inferSchema": False}
    if line:   # the header (or the width) from the first line, read here: no Spark job
        names = next(csv.reader([line], delimiter=sep, quotechar='"'))
    else:
        names = session.read.options(**options).csv(str(path)).columns
    if not header:
        width = len(str(len(names) - 1))
        names = [f"column{i:0{width}d}" for i in range(len(names))]
    schema = T.StructType([T.StructField(n, T.StringType()) for n in names])
    return session.read.options(**options, mode="FAILFAST").schema(schema).csv(str(path))


def _with_row(session: Any, df: Any, parse_all: bool) -> Any:
    """``df`` with ``_row`` first: the 1-based position of each row in the scan (exact for a single file)."""
    from pyspark.sql import functions as F

    cols = [F.col(_quote(c)) for c in df.columns]
    if not parse_all and df.rdd.getNumPartitions() == 1:   # one partition (planned, not run): the id is the position
        return df.select((F.monotonically_increasing_id() + F.lit(1)).alias("_row"), *cols)
    t = df.select(F.spark_partition_id().alias("_pid"), F.monotonically_increasing_id().alias("_mid"), *cols)
    aggs = [F.count(F.lit(1)).alias("_n")]
    if parse_all and cols:   # every column parsed, so that a malformed row fails here, when the file is read
        aggs.append(F.max(F.length(F.concat_ws("\u0001", *cols))).alias("_w"))
    counts = sorted((int(r["_pid"]), int(r["_n"])) for r in t.groupBy("_pid").agg(*aggs).collect())
    offsets, total = [], 0
    for pid, n in counts:
        offsets.append((pid, total))
        total += n
    off = session.createDataFrame(offsets or [(0, 0)], "_pid int, _off long")
    j = t.join(F.broadcast(off), "_pid", "left")
    row = F.col("_mid") - F.shiftleft(F.col("_pid").cast("long"), ROW_BITS) + F.col("_off") + F.lit(1)
    return j.select(row.alias("_row"), *[F.col(_quote(c)) for c in df.columns])


def open_extract(con: Any, name: str, path: str | Path | None = None, header: bool = True, table: str | None = None) -> Any:
    """An extract as an Ibis table with ``_row`` first: a CSV or Parquet file, a Parquet or Delta directory, or a table.

    Parameters
    ----------
    con : ibis PySpark backend
    name : str
        The temporary view's name (a plain identifier).
    path : str or Path, optional
        A file (``.parquet`` typed; anything else CSV, ``.csv.gz`` too) or a directory (Delta when it holds
        ``_delta_log``, else Parquet).
    header : bool
        Whether a CSV has a header row.
    table : str, optional
        A catalogue table (``db.name``) instead of a path; ``_row`` is then its scan order.

    Returns
    -------
    ibis.Table

    Raises
    ------
    Exception
        Spark's reader errors (the caller reports them as an unreadable extract).

    References
    ----------
    Source: Spark ``DataFrameReader`` (csv, parquet, format("delta")), ``SparkSession.table``.
    """
    session = con._session
    parse_all = False
    if table is not None:
        df = session.table(quote_table(table))
    else:
        p = Path(path) if path is not None else Path()
        if p.is_dir():
            df = session.read.format("delta").load(str(p)) if (p / "_delta_log").is_dir() else session.read.parquet(str(p))
        elif p.suffix.lower() == ".parquet":
            df = session.read.parquet(str(p))
        else:
            df, parse_all = _csv(session, p, header), True
    view = f"{name}_rows"
    _with_row(session, df, parse_all).createOrReplaceTempView(view)
    if view not in con.pbc_views:
        con.pbc_views.append(view)
    return con.table(view)


def error_text(exc: BaseException) -> str:
    """The line of a Spark error that says what is wrong (a malformed record, a missing file), else its first line.

    Parameters
    ----------
    exc : Exception

    Returns
    -------
    str
    """
    text = str(exc)
    for key in ("MALFORMED_CSV_RECORD", "MALFORMED_RECORD_IN_PARSING", "PATH_NOT_FOUND", "FAILED_READ_FILE", "UNABLE_TO_INFER_SCHEMA"):
        for line in text.splitlines():
            if key in line:
                return line.strip()
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__
