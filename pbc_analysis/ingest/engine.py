"""The embedded engine: DuckDB through Ibis, with its memory limit, spill directory and threads as settings; and the
dispatch point of the engines (``engine: duckdb | spark``: :mod:`pbc_analysis.ingest.spark`).

:func:`connect` opens an in-memory DuckDB database (an Ibis backend) whose memory limit defaults to half the
machine's physical memory and whose temporary directory defaults to a hidden directory under the output
directory, so an extract larger than memory spills to disk instead of failing; with ``engine: spark`` it returns
an Ibis PySpark backend instead. The helpers here take either backend (:func:`materialise`, :func:`to_arrow`,
:func:`write_parquet`, :func:`close`, :func:`describe`), so every expression of the ingest is the same on both.
:func:`write_parquet` streams a (sorted) Ibis expression to a Parquet file in fixed-size row groups, so a rerun
(on either engine) gives a byte-identical file.

References
----------
DuckDB documentation, "Configuration" (``memory_limit``, ``temp_directory``, ``threads``,
``preserve_insertion_order``) and "Out-of-core processing"; Ibis DuckDB backend; Apache Arrow, ``pyarrow.parquet``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ibis
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["AUTO", "ENGINES", "ROW_GROUP", "TEMP_SUBDIR", "EngineSettings", "close", "connect", "describe", "is_spark",
           "materialise", "physical_memory", "to_arrow", "write_arrow_parquet", "write_parquet"]

AUTO = "auto"
#: share of the machine's physical memory DuckDB may use when ``memory_limit`` is auto
MEMORY_SHARE = 0.5
#: the spill directory under the output directory when ``temp_directory`` is auto
TEMP_SUBDIR = ".ingest_tmp"
#: rows per Parquet row group (fixed, so the file does not depend on the engine's batch sizes)
ROW_GROUP = 1_000_000
#: the engines the ingest runs on
ENGINES = ("duckdb", "spark")


@dataclass(frozen=True)
class EngineSettings:
    """The engine and its resources: ``memory_limit`` ("auto" or e.g. "2GB"), ``temp_directory`` ("auto" or a path),
    ``threads`` ("auto" or a whole number); ``engine`` (duckdb or spark), and Spark's ``spark_master`` and
    ``spark_conf`` (see :func:`pbc_analysis.ingest.spark.connect`)."""

    memory_limit: str = AUTO
    temp_directory: str = AUTO
    threads: int | str = AUTO
    engine: str = "duckdb"
    spark_master: str = AUTO
    spark_conf: tuple[tuple[str, str], ...] = ()

    def resolved(self, out_dir: str | Path | None = None) -> dict[str, Any]:
        """The settings as DuckDB receives them (``auto`` replaced).

        Parameters
        ----------
        out_dir : str or Path, optional
            The output directory (the auto spill directory lives under it).

        Returns
        -------
        dict
            ``memory_limit`` (text like "7.8GB"), ``temp_directory`` (a path or None: DuckDB's own default)
            and ``threads`` (int or None: one per core).

        References
        ----------
        Method: half the physical memory (``os.sysconf``). Source: DuckDB "Configuration".
        """
        memory = self.memory_limit
        if memory == AUTO:
            memory = f"{physical_memory() * MEMORY_SHARE / 2**30:.1f}GiB"
        temp: str | None = self.temp_directory
        if temp == AUTO:
            temp = str(Path(out_dir) / TEMP_SUBDIR) if out_dir is not None else None
        threads = None if self.threads == AUTO else int(self.threads)
        return {"memory_limit": memory, "temp_directory": temp, "threads": threads}


def physical_memory() -> int:
    """The machine's physical memory in bytes (8 GiB when the system does not say).

    Returns
    -------
    int

    References
    ----------
    Method: ``os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')``. Source: POSIX ``sysconf``.
    """
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def connect(settings: EngineSettings | None = None, out_dir: str | Path | None = None) -> Any:
    """The backend of the configured engine: an Ibis DuckDB backend (in-memory database) with the given resources,
    or (``engine: spark``) an Ibis PySpark backend from :func:`pbc_analysis.ingest.spark.connect`.

    Parameters
    ----------
    settings : EngineSettings, optional
        Memory limit, spill directory and threads (default: all auto).
    out_dir : str or Path, optional
        The output directory, for the auto spill directory.

    Returns
    -------
    ibis.backends.duckdb.Backend or ibis.backends.pyspark.Backend

    References
    ----------
    Method: DuckDB spills operators (sorts, joins, aggregates, windows) to ``temp_directory`` beyond
    ``memory_limit``. Source: DuckDB "Out-of-core processing"; Ibis ``ibis.duckdb.connect``.
    """
    settings = settings or EngineSettings()
    conf = settings.resolved(out_dir)
    if settings.engine == "spark":
        from pbc_analysis.ingest import spark

        return spark.connect(settings.spark_master, dict(settings.spark_conf), threads=conf["threads"],
                             local_dir=conf["temp_directory"])
    kwargs: dict[str, Any] = {"memory_limit": conf["memory_limit"], "preserve_insertion_order": True}
    if conf["temp_directory"] is not None:
        kwargs["temp_directory"] = conf["temp_directory"]
    if conf["threads"] is not None:
        kwargs["threads"] = conf["threads"]
    return ibis.duckdb.connect(**kwargs)


def is_spark(con: Any) -> bool:
    """Whether ``con`` is a Spark backend.

    Parameters
    ----------
    con : ibis backend

    Returns
    -------
    bool
    """
    return getattr(con, "name", "") == "pyspark"


def describe(con: Any) -> dict[str, str]:
    """The engine's name and version (recorded in ``ingest.json``).

    Parameters
    ----------
    con : ibis backend

    Returns
    -------
    dict
        ``name`` (duckdb or spark) and ``version``.
    """
    if is_spark(con):
        from pbc_analysis.ingest import spark

        return {"name": "spark", "version": spark.version()}
    import duckdb

    return {"name": "duckdb", "version": str(duckdb.__version__)}


def close(con: Any) -> None:
    """Release the backend: DuckDB's database is closed; on Spark the ingest's views and caches are dropped and the
    session stopped only when the ingest started it.

    Parameters
    ----------
    con : ibis backend
    """
    if is_spark(con):
        from pbc_analysis.ingest import spark

        spark.close(con)
    else:
        con.disconnect()


def to_arrow(con: Any, expr: Any) -> pa.Table:
    """Execute a (small, aggregated) expression into a pyarrow table.

    Parameters
    ----------
    con : ibis DuckDB backend
    expr : ibis.Table

    Returns
    -------
    pyarrow.Table

    References
    ----------
    Source: Ibis ``Backend.to_pyarrow``.
    """
    return con.to_pyarrow(expr)


def materialise(con: Any, expr: Any, name: str) -> Any:
    """Compute an expression once into a temporary table (``CREATE OR REPLACE TEMP TABLE``) and return it.

    Parameters
    ----------
    con : ibis backend (DuckDB or Spark: :func:`pbc_analysis.ingest.spark.materialise`, a cached view)
    expr : ibis.Table
    name : str
        The temporary table's name (a plain identifier).

    Returns
    -------
    ibis.Table
        The table, read from the database.

    References
    ----------
    Method: a condensed intermediate read many times is computed once. Source: DuckDB ``CREATE TEMP TABLE ... AS``; Ibis ``create_table``.
    """
    if is_spark(con):
        from pbc_analysis.ingest import spark

        return spark.materialise(con, expr, name)
    con.raw_sql(f'DROP TABLE IF EXISTS "{name}"')
    return con.create_table(name, expr, temp=True)


def _batches(con: Any, expr: Any, batch_size: int) -> Any:
    """The result of ``expr`` as a stream of record batches (DuckDB's Arrow reader, bounded memory; Spark's)."""
    if is_spark(con):
        from pbc_analysis.ingest import spark

        return spark.batches(con, expr, batch_size)
    return con.con.sql(con.compile(expr)).to_arrow_reader(batch_size)


def write_parquet(con: Any, expr: Any, path: str | Path, schema: pa.Schema, row_group: int = ROW_GROUP) -> int:
    """Stream an expression (sorted by its key) to a Parquet file in fixed-size row groups.

    Parameters
    ----------
    con : ibis backend (DuckDB or Spark)
    expr : ibis.Table
        Already ordered (``order_by``) by the table's key.
    path : str or Path
        The file to write (replaced).
    schema : pyarrow.Schema
        The file's column names and types (codes as ``string``, counts ``int64``, money ``float64``).
    row_group : int
        Rows per row group.

    Returns
    -------
    int
        Rows written.

    References
    ----------
    Method: fixed row groups and no timestamps, so the same rows give the same bytes.
    Source: Apache Arrow ``pyarrow.parquet.ParquetWriter``; DuckDB ``to_arrow_reader``.
    """
    n = 0
    pending: list[pa.RecordBatch] = []
    held = 0
    with pq.ParquetWriter(str(path), schema, compression="zstd") as writer:
        for batch in _batches(con, expr.select(*schema.names), row_group):
            batch = pa.Table.from_batches([batch]).cast(schema).combine_chunks().to_batches()
            pending.extend(batch)
            held += sum(b.num_rows for b in batch)
            while held >= row_group:
                table = pa.Table.from_batches(pending, schema=schema)
                writer.write_table(table.slice(0, row_group), row_group_size=row_group)
                rest = table.slice(row_group)
                pending, held = rest.to_batches(), rest.num_rows
                n += row_group
        if held or n == 0:
            table = pa.Table.from_batches(pending, schema=schema)
            writer.write_table(table, row_group_size=row_group)
            n += table.num_rows
    return n


def write_arrow_parquet(table: pa.Table, path: str | Path, schema: pa.Schema | None = None) -> int:
    """Write a small pyarrow table (already sorted) to Parquet the same way as :func:`write_parquet`.

    Parameters
    ----------
    table : pyarrow.Table
    path : str or Path
    schema : pyarrow.Schema, optional
        Cast to it first.

    Returns
    -------
    int
        Rows written.

    References
    ----------
    Method: one row-group size, no schema metadata (byte-stable). Source: Apache Arrow ``pyarrow.parquet.write_table``.
    """
    if schema is not None:
        table = table.select(schema.names).cast(schema)
    table = table.replace_schema_metadata(None)
    pq.write_table(table, str(path), row_group_size=ROW_GROUP, compression="zstd")
    return table.num_rows
