"""Validated inputs: :class:`Inputs`, :func:`load_inputs` (find, read and validate every table) and :func:`validate`.

Every breach is collected and reported at once in a :class:`~pbc_analysis.data.problems.DataValidationError`,
problems grouped by table in :data:`~pbc_analysis.data.schema.TABLES` order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from pbc_analysis.core import paths as _paths
from pbc_analysis.data.checks import _Ctx
from pbc_analysis.data.files import _BLOCKING, _entry_problem, _find_table_files, _missing_table_problem
from pbc_analysis.data.problems import DataValidationError, Problem
from pbc_analysis.data.read import _read
from pbc_analysis.data.rules import _validate
from pbc_analysis.data.schema import REQUIRED_TABLES, TABLES
from pbc_analysis.data.store import read_store
from pbc_analysis.data.window import Window, resolve_window


@dataclass(frozen=True, eq=False)
class Inputs:
    """Validated input tables (optional tables are ``None`` when absent), their files and the window."""

    practices: pd.DataFrame
    providers: pd.DataFrame
    specialties: pd.DataFrame
    population: pd.DataFrame
    activity: pd.DataFrame
    referrals: pd.DataFrame
    tariff: pd.DataFrame
    engagement: pd.DataFrame
    high_cost_patients: pd.DataFrame
    budgets: pd.DataFrame | None = None
    provider_changes: pd.DataFrame | None = None
    reference_rates: pd.DataFrame | None = None
    commissioners: pd.DataFrame | None = None
    files: dict[str, Path] = field(default_factory=dict)
    window: Window | None = None
    #: ``{(table, column): (codes, uniques)}`` of text columns factorised during validation, so that
    #: analyses of national-size tables need not factorise them again (see :meth:`factorize`)
    factors: dict[tuple[str, str], tuple[np.ndarray, pd.Index]] = field(default_factory=dict, repr=False)

    def factorize(self, table: str, column: str) -> tuple[np.ndarray, pd.Index]:
        """``pd.factorize`` of ``table[column]`` (codes, uniques), reusing validation's work when it
        was done; the codes index the uniques (every value of validated inputs is present). For a
        ``Categorical`` column (:data:`~pbc_analysis.data.schema.CATEGORICAL_TABLES`) these are its own
        codes (narrow integers, not copied) and its sorted categories."""
        hit = self.factors.get((table, column))
        if hit is not None:
            return hit
        s = getattr(self, table)[column]
        if isinstance(s.dtype, pd.CategoricalDtype):
            return np.asarray(s.array.codes), pd.Index(s.array.categories)
        codes, uniques = pd.factorize(s)
        return np.asarray(codes, dtype=np.int64), pd.Index(uniques)

    def tables(self) -> dict[str, pd.DataFrame]:
        """``{table: DataFrame}`` of the tables present."""
        return {n: getattr(self, n) for n in TABLES if getattr(self, n) is not None}


def validate(tables: Mapping[str, pd.DataFrame], window: Window, files: Mapping[str, Path] | None = None) -> None:
    """Check every rule of the data dictionary on loaded ``tables``; raise :class:`DataValidationError`
    listing every problem.

    Parameters
    ----------
    tables : mapping of str to pandas.DataFrame
        ``{table: frame}``; every required table must be present (``None`` counts as absent).
    window : Window
        The analysis window.
    files : mapping of str to Path, optional
        ``{table: path}``, only to label the problems.

    Raises
    ------
    DataValidationError
        Listing every problem, grouped by table.
    """
    files = dict(files or {})
    problems: list[Problem] = []
    unknown = [t for t in tables if t not in TABLES]
    for t in unknown:
        problems.append(Problem(str(files.get(t, "")), t, None, [], [], f"unknown table '{t}'",
                                f"tables are {', '.join(TABLES)}", check="unknown_table"))
    for t in REQUIRED_TABLES:
        if tables.get(t) is None:
            problems.append(_missing_table_problem(t, None))
    ctxs = {t: _Ctx(t, df, str(files.get(t, "")), check_dtype=True)
            for t, df in tables.items() if t in TABLES and df is not None}
    problems += _validate(ctxs, window)
    if problems:
        raise DataValidationError(_in_table_order(problems))


def _in_table_order(problems: list[Problem]) -> list[Problem]:
    """Problems grouped by table (in :data:`TABLES` order), keeping the order of checks within a table."""
    order = {t: i for i, t in enumerate(TABLES)}
    return sorted(problems, key=lambda p: order.get(p.table, -1))


def load_inputs(data_dir: str | Path | None = None, start_month: str | None = None, end_month: str | None = None,
                paths: Mapping[str, str | Path] | None = None, run_dir: str | Path = "") -> Inputs:
    """Find, read and validate every table; return :class:`Inputs` or raise :class:`DataValidationError`.

    ``data_dir`` holds one file per table (``<table>.csv``, ``.csv.gz`` or ``.parquet``); ``paths``
    (``{table: path}``) overrides or supplies single tables. Without either, the embedded sample
    (``data/sample``) is used. Relative paths are taken from the project root. The analysis window is
    ``start_month`` to ``end_month`` (``YYYY-MM``, inclusive).

    Parameters
    ----------
    data_dir : str or Path, optional
        The folder holding one file per table.
    start_month, end_month : str
        The analysis window, ``YYYY-MM`` (both required); ``"auto"`` takes the months every monthly table of
        ``data_dir`` covers (:func:`pbc_analysis.data.window.data_window`).
    paths : mapping of str to str or Path, optional
        ``{table: path}`` of single tables, overriding those of ``data_dir``.
    run_dir : str or Path, optional
        The run directory ``pbc run`` gives a notebook: the tables the runner validated for ``data_dir`` and the
        window are read from its store (:mod:`pbc_analysis.data.store`) instead of being read and validated
        again; without a store (or with ``paths``) the files are read and validated.

    Returns
    -------
    Inputs
        The validated tables, their files and the window.

    Raises
    ------
    ValueError
        Without ``start_month`` or ``end_month``, or for a month not written ``YYYY-MM``; or naming every problem
        of a run's store of validated tables (tampered with, or a source changed after validation).
    DataValidationError
        Listing every problem of the files found.
    """
    if start_month is None or end_month is None:
        raise ValueError("load_inputs needs start_month and end_month ('YYYY-MM', or 'auto' for the data's own window)")
    if "auto" in (start_month, end_month):
        start_month, end_month = resolve_window(data_dir if data_dir is not None else _paths.SAMPLE_DIR, start_month, end_month)
    window = Window(str(start_month), str(end_month))
    if str(run_dir) and not paths:
        stored = read_store(run_dir, data_dir if data_dir is not None else _paths.SAMPLE_DIR, window)
        if stored is not None:
            return stored
    ctxs, files, problems = _load_contexts(data_dir, window, paths)
    if problems:
        raise DataValidationError(_in_table_order(problems))
    return _inputs(ctxs, files, window)


def _inputs(ctxs: Mapping[str, _Ctx], files: Mapping[str, Path], window: Window) -> Inputs:
    """:class:`Inputs` of validated contexts (their factorisations kept for the analyses)."""
    factors = {(t, c): v for t, ctx in ctxs.items() for c, v in ctx._raw.items()}
    return Inputs(**{t: (ctxs[t].df if t in ctxs else None) for t in TABLES},
                  files={t: files[t] for t in TABLES if t in files}, window=window, factors=factors)


def _load_contexts(data_dir: str | Path | None, window: Window, paths: Mapping[str, str | Path] | None
                   ) -> tuple[dict[str, _Ctx], dict[str, Path], list[Problem]]:
    """Find, read and validate every table: ``(contexts of the tables read, {table: file}, problems)``.

    The contexts hold each frame with its row numbering and the cells found invalid, so that later
    checks (:mod:`pbc_analysis.data.plausibility`) can run on the same frames and report rows alike.
    """
    overrides = dict(paths or {})
    problems: list[Problem] = []
    files: dict[str, Path] = {}
    root: Path | None = None
    if data_dir is None and not overrides:
        data_dir = _paths.SAMPLE_DIR
    if data_dir is not None:
        found, probs, root = _find_table_files(data_dir)
        files.update(found)
        problems += probs
    for t, p in overrides.items():
        if t not in TABLES:
            problems.append(Problem(str(p), t, None, [], [], f"paths names unknown table '{t}'",
                                    f"tables are {', '.join(TABLES)}", check="unknown_table"))
            continue
        bad = _entry_problem(_paths.resolve(p), None, t) if _paths.resolve(p).exists() or \
            _paths.resolve(p).is_symlink() else None
        if bad is not None:
            problems.append(bad)
            files.pop(t, None)
            continue
        files[t] = _paths.resolve(p)
    if root is None or root.is_dir():
        dup_tables = {pr.table for pr in problems if pr.check in _BLOCKING}
        for t in REQUIRED_TABLES:
            if t not in files and t not in dup_tables:
                problems.append(_missing_table_problem(t, root))
    ctxs: dict[str, _Ctx] = {}
    for t in TABLES:
        if t not in files:
            continue
        loaded = _read(files[t], t)
        problems += loaded.problems
        if loaded.df is not None:
            ctxs[t] = _Ctx(t, loaded.df, str(files[t]), loaded.rowmap, check_dtype=False, excluded=loaded.excluded)
    problems += _validate(ctxs, window)
    return ctxs, files, problems
