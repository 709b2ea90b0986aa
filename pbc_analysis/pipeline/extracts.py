"""The ingest stage of a run and ``pbc ingest``: event-level extracts to the analysis tables, recorded for audit.

A run config with an ``extracts:`` section (the settings of :class:`pbc_analysis.ingest.params.IngestParams`,
without ``out``) runs :func:`pbc_analysis.ingest.run.run_ingest` as its first stage, into the run directory's
``data/``; every notebook that reads ``data_dir`` is given that directory (a config with ``extracts:`` must not
set ``data_dir`` itself). The extracts, the column maps given as files and the local tables are the run's
inputs (their sha256 in the manifest's ``inputs``); the tables written are outputs of the run (hashed with
the others, and compared byte for byte by ``pbc verify``'s re-run, which ingests again). The manifest's
``ingest`` section holds the resolved settings, the window, each extract's sha256 and size, and the
reconciliation's totals; the reconciliation itself becomes the result table ``ingest_reconciliation``
(counts under the disclosure rule when published) shown in the report's data section.

``pbc ingest --config F`` runs the same stage alone: ``F`` has one top-level key, ``ingest:``, with the same
settings plus ``out`` (the data directory written).

References
----------
docs/extracts.md (every source, column, code and rule); W3C PROV (inputs and outputs with their hashes).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from pbc_analysis.core import paths
from pbc_analysis.core.checks import ArgumentError
from pbc_analysis.core.strict_yaml import ConfigError, load_yaml, read_config_file

SECTION = "extracts"                    # the run config's section
INGEST_SECTION = "ingest"               # the only section of a `pbc ingest` config
DATA_SUBDIR = "data"                    # the run directory's folder of ingested tables
RECONCILIATION_TABLE = "ingest_reconciliation"
RUN_ONLY_REFUSED = ("out",)             # a run writes into its own directory


def parse_section(raw: Any, where: str, *, in_run: bool) -> Any:
    """The ``extracts:`` (run config) or ``ingest:`` (``pbc ingest``) section as checked settings.

    Parameters
    ----------
    raw : Any
        The section as read from YAML (untrusted).
    where : str
        Names the config in messages.
    in_run : bool
        True for a run config's ``extracts:`` (``out`` is refused: the run writes into its own directory).

    Returns
    -------
    pbc_analysis.ingest.params.IngestParams

    Raises
    ------
    ConfigError
        Listing every problem at once.

    References
    ----------
    docs/extracts.md, "Settings".
    """
    from pbc_analysis.ingest.params import IngestParams

    name = SECTION if in_run else INGEST_SECTION
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: '{name}' must be a mapping of ingest settings, got {type(raw).__name__}")
    problems = [f"{where}: {name}.{k}: not used by `pbc run` (the tables are written into the run directory's "
                f"{DATA_SUBDIR}/); remove it" for k in RUN_ONLY_REFUSED if in_run and k in raw]
    try:
        params = IngestParams.from_mapping({k: v for k, v in raw.items() if not (in_run and k in RUN_ONLY_REFUSED)},
                                           where=f"{where}: {name}")
    except ArgumentError as exc:
        problems += [p if p.startswith(where) else f"{where}: {name}: {p}" for p in (exc.problems or [str(exc)])]
        params = None
    if problems:
        raise ConfigError("\n".join(problems))
    return params


def load_ingest_config(path: str | Path) -> tuple[Any, Path]:
    """Read a ``pbc ingest`` config: one top-level key, ``ingest:``.

    Parameters
    ----------
    path : str or Path
        The YAML file (relative: from the current directory if it exists there, else the project root).

    Returns
    -------
    params : IngestParams
    path : Path
        The file read.

    Raises
    ------
    ConfigError
        Unreadable file, YAML that is not plain data, other top-level keys, or invalid settings (all at once).

    References
    ----------
    docs/extracts.md, "Settings".
    """
    text, p = read_config_file(path, "ingest config")
    raw = load_yaml(text, str(p))
    if not isinstance(raw, dict) or set(raw) != {INGEST_SECTION}:
        keys = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
        raise ConfigError(f"{p}: an ingest config has one top-level key, '{INGEST_SECTION}:', got {keys}")
    return parse_section(raw[INGEST_SECTION], str(p), in_run=False), p


def input_files(params: Any) -> dict[str, Path]:
    """Every file the ingest reads: the extracts, the column maps given as files and the local tables.

    Parameters
    ----------
    params : IngestParams

    Returns
    -------
    dict of str to Path
        Path relative to the project root (absolute when outside it) -> file.

    References
    ----------
    docs/extracts.md.
    """
    from pbc_analysis.data import find_table_files
    from pbc_analysis.pipeline.manifest import _rel

    files: dict[str, Path] = {}
    for kind, path in params.source_paths().items():
        files[_rel(path)] = path
        cmap = params.source_maps()[kind]
        if Path(cmap).is_absolute():
            files[_rel(Path(cmap))] = Path(cmap)
    if params.tables:
        for path in find_table_files(paths.resolve(params.tables)).values():
            files[_rel(path)] = path
    return dict(sorted(files.items()))


@dataclasses.dataclass(frozen=True)
class Ingested:
    """What the ingest stage of a run produced: the data directory, the manifest section and the reconciliation."""

    data_dir: Path
    section: dict[str, Any]
    reconciliation: Any        # pandas.DataFrame


def ingest_for_run(params: Any, run_dir: Path, echo: Any = print) -> Ingested:
    """Run the ingest into ``run_dir/data`` and describe it for the manifest.

    Parameters
    ----------
    params : IngestParams
        The run config's ``extracts:`` settings.
    run_dir : Path
        The run directory (already made and marked incomplete).
    echo : callable
        Progress printer.

    Returns
    -------
    Ingested

    Raises
    ------
    pbc_analysis.data.DataValidationError
        The extracts failed validation (every problem at once); nothing was written.

    References
    ----------
    :func:`pbc_analysis.ingest.run.run_ingest`.
    """
    from pbc_analysis.ingest.run import run_ingest

    out = run_dir / DATA_SUBDIR
    echo(f"ingesting {len(params.sources)} extracts into {out} ...", flush=True)
    t0 = time.perf_counter()
    result = run_ingest(params, out_dir=out, progress=False)
    seconds = time.perf_counter() - t0
    echo(f"ingested in {seconds:.1f} s: window {result.window[0]} to {result.window[1]}")
    return Ingested(data_dir=out, section=manifest_section(result), reconciliation=result.reconciliation)


def manifest_section(result: Any) -> dict[str, Any]:
    """The manifest's ``ingest`` section: settings, window, extracts (sha256, bytes) and reconciliation totals.

    Parameters
    ----------
    result : pbc_analysis.ingest.run.IngestResult

    Returns
    -------
    dict
        JSON-ready; paths relative to the project root.

    References
    ----------
    W3C PROV: the inputs of the ingest with their hashes.
    """
    from pbc_analysis.pipeline.manifest import _rel

    rec = result.reconciliation
    totals = {}
    for source, part in rec.groupby("source", sort=True):
        by = part.groupby("outcome")["rows"].sum()
        totals[str(source)] = {k: int(by.get(k, 0)) for k in ("read", "aggregated", "excluded")}
    extracts = [{**e, "path": _rel(paths.resolve(e["path"]))} if "path" in e else e for e in result.extracts]
    return {"settings": result.settings, "window": list(result.window), "extracts": extracts,
            "tables": sorted(result.tables), "reconciliation_rows": totals}


def with_data_dir(cfg: Any, data_dir: Path) -> Any:
    """``cfg`` with ``data_dir`` given to every notebook that declares it (a config with ``extracts:``).

    Parameters
    ----------
    cfg : pbc_analysis.pipeline.config.RunConfig
    data_dir : Path

    Returns
    -------
    RunConfig

    References
    ----------
    :mod:`pbc_analysis.pipeline.config` (``data_dir``).
    """
    from pbc_analysis.pipeline.config import declares_data_dir

    params = {nb: ({**p, "data_dir": str(data_dir)} if declares_data_dir(cfg, nb) else dict(p))
              for nb, p in cfg.parameters.items()}
    return dataclasses.replace(cfg, parameters=params)
