"""Writing the synthetic PCT in the real-data formats (``docs/data_dictionary.md`` is the contract).

One file per table, columns in data-dictionary order, rows sorted by the table key (codes as
text; the age bands of population and reference_rates in age order, ``0-4`` ... ``90+``). population,
activity and referrals are Parquet (pyarrow, zstd, code columns dictionary-encoded: pandas reads them
back as categoricals with the same values) or CSV; the other tables are always CSV (UTF-8, ``\\n``,
floats with two decimals (reference rates four), booleans ``true``/``false``, missing as an empty
field). Money is rounded to pence in the data frames, so Parquet and CSV hold the same values. Nothing
depends on the clock (gzip mtime 0, no timestamps in Parquet metadata): the same parameters give the
same bytes with the locked pandas/pyarrow. ``ground_truth.json`` is ``json.dumps(truth,
sort_keys=True, indent=1)``. The sample is ``make sample`` = ``write_synthetic_pct("data/sample",
seed=20070401, n_practices=60, n_months=60, start_month="2003-04", fmt="parquet")`` (about 2 MB);
6,500 practices x 60 months (84 million rows) takes about 45 s and 4.5 GB on 2 cores
(``scripts/benchmark.py``). With ``events=True`` (``pbc synth --events``) the same PCT is also written as
event-level extracts into ``<out>/extracts/`` (:func:`pbc_analysis.synth.events.write_events`); the tables
beside them are unchanged, so ``pbc ingest`` of the extracts can be compared with them.

References
----------
Apache Parquet format (dictionary encoding); RFC 4180 (CSV).
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from pbc_analysis.synth.contract import LARGE_TABLES, TABLE_COLUMNS
from pbc_analysis.synth.events import write_events
from pbc_analysis.synth.generator import SynthResult, generate
from pbc_analysis.synth.params import SynthParams

__all__ = ["FORMATS", "write_result_events", "write_synthetic_pct", "write_tables"]

FORMATS = ("parquet", "csv", "csv.gz")


def _csv_bytes(df: pd.DataFrame) -> bytes:
    out = df.copy()
    for c in out.columns:
        if out[c].dtype == bool:
            out[c] = np.where(out[c].to_numpy(), "true", "false")
        elif c == "rate":  # reference rates per 1,000 a year: small numbers, keep 4 decimals
            out[c] = np.char.mod("%.4f", out[c].to_numpy(dtype=float))
    buf = io.StringIO()
    out.to_csv(buf, index=False, float_format="%.2f", lineterminator="\n")
    return buf.getvalue().encode("utf-8")


def _write_csv(df: pd.DataFrame, path: Path, compress: bool = False) -> None:
    data = _csv_bytes(df)
    if compress:
        with open(path, "wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0) as gz:
            gz.write(data)
    else:
        path.write_bytes(data)


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    table = pa.Table.from_pandas(df, preserve_index=False)
    pq.write_table(table, path, compression="zstd", use_dictionary=True, write_statistics=True)


def write_tables(result: SynthResult, out_dir: str | Path, fmt: str = "parquet",
                 progress: bool = False) -> dict[str, Path]:
    """Write ``result``: one file per table and ``ground_truth.json``.

    Other files of the same tables are removed first, so a directory never holds two files for one table.

    Parameters
    ----------
    result : SynthResult
        From :func:`pbc_analysis.synth.generator.generate`.
    out_dir : str or Path
        Created if absent.
    fmt : {"parquet", "csv", "csv.gz"}
        The format of population, activity and referrals; the small tables are always CSV.
    progress : bool
        Show a progress bar.

    Returns
    -------
    dict
        Table name (and ``ground_truth``) -> path written.

    Raises
    ------
    ValueError
        For another ``fmt``.

    References
    ----------
    ``docs/data_dictionary.md``; the module docstring.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be 'parquet', 'csv' or 'csv.gz', got {fmt!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name in tqdm(list(TABLE_COLUMNS), desc="writing", unit="table", disable=not progress, leave=False):
        ext = fmt if name in LARGE_TABLES else "csv"
        path = out / f"{name}.{ext}"
        for other in FORMATS:
            stale = out / f"{name}.{other}"
            if other != ext and stale.exists():
                stale.unlink()
        df = result.tables[name]
        if ext == "parquet":
            _write_parquet(df, path)
        else:
            _write_csv(df, path, compress=ext == "csv.gz")
        paths[name] = path
    truth_path = out / "ground_truth.json"
    truth_path.write_bytes((json.dumps(result.truth, sort_keys=True, indent=1, allow_nan=False) + "\n").encode("utf-8"))
    paths["ground_truth"] = truth_path
    return paths


def write_synthetic_pct(out_dir: str | Path, seed: int = 20070401, n_practices: int = 60, n_months: int = 60,
                        start_month: str = "2003-04", fmt: str = "parquet", progress: bool = True,
                        params: SynthParams | None = None, events: bool = False) -> dict[str, Path]:
    """Generate a synthetic PCT and write it to ``out_dir``.

    The documented sample is ``write_synthetic_pct("data/sample", seed=20070401, n_practices=60,
    n_months=60, start_month="2003-04", fmt="parquet")``.

    Parameters
    ----------
    out_dir : str or Path
    seed, n_practices, n_months, start_month
        The shape, with every other parameter at its default (ignored when ``params`` is given).
    fmt : {"parquet", "csv", "csv.gz"}
    progress : bool
    params : SynthParams, optional
        Every parameter (``pbc synth`` builds one from its flags).
    events : bool
        Also write the event-level extracts into ``<out_dir>/extracts/`` (``pbc synth --events``).

    Returns
    -------
    dict
        Table name (and ``ground_truth``; with ``events``, every extract and ``events_truth``) -> path written.

    References
    ----------
    :mod:`pbc_analysis.synth` (the model); :mod:`pbc_analysis.synth.events` (the extracts).
    """
    if params is None:
        params = SynthParams(seed=seed, n_practices=n_practices, n_months=n_months, start_month=start_month)
    result = generate(params, progress=progress)
    paths = write_tables(result, out_dir, fmt=fmt, progress=progress)
    if events:
        paths |= write_result_events(result, out_dir, progress=progress)
    return paths


def write_result_events(result: SynthResult, out_dir: str | Path, progress: bool = False) -> dict[str, Path]:
    """Write ``result`` as event-level extracts into ``<out_dir>/extracts/`` (after :func:`write_tables`).

    Parameters
    ----------
    result : SynthResult
    out_dir : str or Path
        Where :func:`write_tables` wrote the tables.
    progress : bool

    Returns
    -------
    dict
        Extract name (and ``events_truth``) -> path written.

    References
    ----------
    :mod:`pbc_analysis.synth.events`.
    """
    p = result.params
    return write_events(result.tables, out_dir, seed=int(p.seed), start_month=str(p.start_month),
                        n_months=int(p.n_months), progress=progress)
