"""The input data model and validated loading.

The pandera schemas in :data:`TABLES` are the single source of truth for the input tables; the data
dictionary (``docs/data_dictionary.md``) documents them. :func:`load_inputs` finds one file per table in a
data directory, reads it (:func:`read_table`) and checks every rule (:func:`validate`). Every breach is
collected and reported at once in a :class:`DataValidationError`, each :class:`Problem` naming the file,
the column, the rows (1-based data row numbers, the header is row 0) and the values, with what to do about
it. Nothing is dropped, coerced or filled.

Modules, in the order they build on each other:

- :mod:`~pbc_analysis.data.problems`: :class:`Problem`, :class:`DataValidationError` and the helpers that
  word messages (``SHOW_ROWS``, ``KEEP_ROWS``, ``KEEP_VALUES``).
- :mod:`~pbc_analysis.data.schema`: vocabularies (``PODS``, ``AGE_BANDS``, ``SEXES``, ``MEASURES``), code
  patterns, the column builders, :class:`TableSpec` and :data:`TABLES`.
- :mod:`~pbc_analysis.data.files`: finding the table files of a data directory (:func:`find_table_files`),
  near misses, unreadable entries and missing tables.
- :mod:`~pbc_analysis.data.window`: the analysis :class:`Window`, and the data window of a directory's
  monthly tables (``start_month``/``end_month`` ``auto``).
- :mod:`~pbc_analysis.data.read`: reading CSV, CSV.gz and Parquet into frames of the schema's types
  (:func:`read_table`).
- :mod:`~pbc_analysis.data.checks`: a table under validation (``_Ctx``), its integer codes and the
  element-wise (pandera) rules.
- :mod:`~pbc_analysis.data.rules`: keys, references, the window and the table-level rules (population
  (dense), activity, prices, engagement, reference rates; activity and referrals may be sparse).
- :mod:`~pbc_analysis.data.inputs`: :class:`Inputs`, :func:`load_inputs` and :func:`validate`.
- :mod:`~pbc_analysis.data.plausibility`: the plausibility ceilings checked after validation.

The names below are re-exported for ``from pbc_analysis.data import X`` and ``data.X``; the private ones
(``_n``, ``_have``, ``_fmt_value``, ``_lookup``, ``_in_table_order``, ``_inputs``, ``_load_contexts``) are
used by :mod:`~pbc_analysis.data.plausibility` and the tests.
"""

from __future__ import annotations

from pbc_analysis.data.files import find_table_files
from pbc_analysis.data.inputs import Inputs, load_inputs, validate
from pbc_analysis.data.problems import KEEP_ROWS, KEEP_VALUES, SHOW_ROWS, DataValidationError, Problem
from pbc_analysis.data.read import read_table
from pbc_analysis.data.schema import (
    AE_POD,
    AE_SPECIALTY,
    AGE_BANDS,
    ALL,
    FY_PATTERN,
    MEASURES,
    MONTH_PATTERN,
    OPTIONAL_TABLES,
    PODS,
    PRACTICE_PATTERN,
    PROVIDER_PATTERN,
    REQUIRED_TABLES,
    SEXES,
    SPECIALTY_PATTERN,
    SUFFIXES,
    TABLES,
    TableSpec,
)
from pbc_analysis.data.window import Window

# private helpers re-exported (``X as X``) for pbc_analysis.data.plausibility and the tests
from pbc_analysis.core.calendar import financial_year_label as financial_year_label  # isort: skip
from pbc_analysis.data.checks import _lookup as _lookup  # isort: skip
from pbc_analysis.data.inputs import _in_table_order as _in_table_order  # isort: skip
from pbc_analysis.data.inputs import _inputs as _inputs  # isort: skip
from pbc_analysis.data.inputs import _load_contexts as _load_contexts  # isort: skip
from pbc_analysis.data.problems import _fmt_value as _fmt_value  # isort: skip
from pbc_analysis.data.problems import _have as _have  # isort: skip
from pbc_analysis.data.problems import _n as _n  # isort: skip

__all__ = [
    "AE_POD",
    "AE_SPECIALTY",
    "AGE_BANDS",
    "ALL",
    "FY_PATTERN",
    "KEEP_ROWS",
    "KEEP_VALUES",
    "MEASURES",
    "MONTH_PATTERN",
    "OPTIONAL_TABLES",
    "PODS",
    "PRACTICE_PATTERN",
    "PROVIDER_PATTERN",
    "REQUIRED_TABLES",
    "SEXES",
    "SHOW_ROWS",
    "SPECIALTY_PATTERN",
    "SUFFIXES",
    "TABLES",
    "DataValidationError",
    "Inputs",
    "Problem",
    "TableSpec",
    "Window",
    "find_table_files",
    "load_inputs",
    "read_table",
    "validate",
]
