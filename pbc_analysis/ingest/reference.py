"""The providers and specialties tables from the provider reference and the treatment-function list, and
the shared helpers of the reference sources (output tables in data-dictionary form, problems with rows).

``providers`` holds the providers the included events use, named from the provider reference (ODS-like
``provider_code, provider_name``), with ``has_ae`` (a type 1 A&E attendance) from the events;
``specialties`` holds the treatment functions the events use, named from the shipped list
``ingest/maps/treatment_functions.csv`` (or a user's file with the same two columns). A used code missing
from the reference is a problem, never a blank name.

References
----------
NHS Digital, Organisation Data Service: "NHS Trusts and Trust Sites" (``etr.csv``) for provider codes and names.
NHS Data Model and Dictionary, "Treatment Function Code" and "Main Specialty and Treatment Function Codes Table".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import ibis
import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from pbc_analysis.data import problems as P
from pbc_analysis.data.problems import DataValidationError, Problem
from pbc_analysis.data.schema import TABLES

__all__ = ["TREATMENT_FUNCTIONS", "arrow_table", "examples", "files_of", "providers_table", "read_treatment_functions",
           "specialties_table"]

#: the shipped treatment-function list (code -> name, NHS Data Dictionary main TFCs)
TREATMENT_FUNCTIONS = Path(__file__).parent / "maps" / "treatment_functions.csv"
_ARROW = {"str": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_()}


def arrow_table(name: str, table: pa.Table, *, sort: bool = True) -> pa.Table:
    """``table`` in the data dictionary's form for table ``name``: its columns in order, its types, sorted by key.

    Parameters
    ----------
    name : str
        A table of :data:`pbc_analysis.data.schema.TABLES` (``practices``, ``providers``, ...).
    table : pyarrow.Table
        Holding at least the table's columns (extra columns are dropped).
    sort : bool
        Sort the rows by the table's key (codes and months sort as text).

    Returns
    -------
    pyarrow.Table
        Plain (not dictionary-encoded) string, int64, float64 and bool columns, no schema metadata.

    References
    ----------
    ``docs/data_dictionary.md`` (the tables, their column order and types).
    """
    spec = TABLES[name]
    fields = [pa.field(c, _ARROW[t]) for c, t in spec.dtypes.items()]
    cols = [table.column(f.name).cast(f.type) for f in fields]
    out = pa.Table.from_arrays(cols, schema=pa.schema(fields))
    if sort and spec.key and out.num_rows:
        out = out.take(pc.sort_indices(out, sort_keys=[(k, "ascending") for k in spec.key]))
    return out.combine_chunks()


def examples(t: ir.Table, limit: int = P.KEEP_ROWS) -> tuple[list[int], int]:
    """The 1-based file rows (``_row``) of the rows of ``t`` (at most ``limit``, in file order) and their count.

    Parameters
    ----------
    t : ibis.Table
        Rows of a source (with ``_row`` when the source has it; else rows are not quoted).
    limit : int
        Rows kept.

    Returns
    -------
    (list of int, int)
        The rows and how many rows ``t`` has.

    References
    ----------
    :class:`pbc_analysis.data.problems.Problem` (rows are 1-based data row numbers).
    """
    n = int(t.count().to_pyarrow().as_py())
    if "_row" not in t.columns or n == 0:
        return [], n
    rows = t.select("_row").order_by("_row").limit(limit).to_pyarrow().column("_row").to_pylist()
    return [int(r) for r in rows], n


def _problem(file: str, table: str, column: str | None, message: str, fix: str, *, values: Iterable[Any] = (),
             rows: Sequence[int] = (), n_rows: int = 0, check: str = "") -> Problem:
    return Problem(file=file, table=table, column=column, rows=list(rows), values=P._samples(values),
                   message=message, fix=fix, n_rows=n_rows, check=check)


def read_treatment_functions(path: str | Path | None = None) -> pa.Table:
    """Read a treatment-function list (CSV ``specialty_code, specialty_name``, codes as text).

    Parameters
    ----------
    path : str or Path, optional
        A user's list; default the shipped :data:`TREATMENT_FUNCTIONS`.

    Returns
    -------
    pyarrow.Table
        ``specialty_code, specialty_name`` as strings, in file order.

    Raises
    ------
    DataValidationError
        A missing column, a missing name or a code given twice.

    References
    ----------
    NHS Data Model and Dictionary, "Treatment Function Code".
    """
    path = Path(path) if path is not None else TREATMENT_FUNCTIONS
    cols = ["specialty_code", "specialty_name"]
    t = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in cols},
                                                                  strings_can_be_null=True))
    problems = []
    missing = [c for c in cols if c not in t.column_names]
    if missing:
        raise DataValidationError([_problem(str(path), "treatment_functions", missing[0],
                                            f"the treatment-function list has no column {', '.join(missing)}",
                                            "give the list the header 'specialty_code,specialty_name'", values=t.column_names)])
    t = t.select(cols)
    codes = t.column("specialty_code").to_pylist()
    names = t.column("specialty_name").to_pylist()
    bad = [i for i, (c, n) in enumerate(zip(codes, names)) if not c or not n or not str(c).strip() or not str(n).strip()]
    if bad:
        problems.append(_problem(str(path), "treatment_functions", "specialty_name", "codes or names are missing",
                                 "give every row a three-digit code and a name", values=[codes[i] for i in bad],
                                 rows=[i + 1 for i in bad], n_rows=len(bad), check="not_missing"))
    seen: dict[str, int] = {}
    dup = [i for i, c in enumerate(codes) if c is not None and seen.setdefault(c, i) != i]
    if dup:
        problems.append(_problem(str(path), "treatment_functions", "specialty_code", "codes are listed more than once",
                                 "list each code once", values=[codes[i] for i in dup], rows=[i + 1 for i in dup],
                                 n_rows=len(dup), check="unique"))
    if problems:
        raise DataValidationError(problems)
    return t


def specialties_table(used: Sequence[str] | ir.Table, names: str | Path | pa.Table | None = None, *,
                      file: str = "") -> tuple[pa.Table, list[Problem]]:
    """The specialties table: the treatment functions the events use, with their names.

    Parameters
    ----------
    used : sequence of str or ibis.Table
        The codes used (an ibis table: its ``specialty_code`` column, distinct values taken).
    names : str, Path or pyarrow.Table, optional
        The code -> name list (``specialty_code, specialty_name``); default the shipped list.
    file : str
        The list's file for messages (default: its path).

    Returns
    -------
    (pyarrow.Table, list of Problem)
        ``specialties`` (``specialty_code, specialty_name``, sorted by code) and the problems: a used code
        the list does not name.

    References
    ----------
    NHS Data Model and Dictionary, "Treatment Function Code"; ``docs/extracts_reference.md``.
    """
    if isinstance(names, pa.Table):
        ref, where = names, file or "(treatment-function table)"
    else:
        ref = read_treatment_functions(names)
        where = file or str(names if names is not None else TREATMENT_FUNCTIONS)
    if isinstance(used, ir.Table):
        codes = sorted(c for c in used.select("specialty_code").distinct().to_pyarrow().column(0).to_pylist() if c is not None)
    else:
        codes = sorted(set(used))
    lookup = dict(zip(ref.column("specialty_code").to_pylist(), ref.column("specialty_name").to_pylist()))
    unknown = [c for c in codes if c not in lookup]
    problems = []
    if unknown:
        problems.append(_problem(where, "treatment_functions", "specialty_code",
                                 f"{len(unknown)} treatment function code(s) used by the events are not in the list",
                                 "add them with their names to the treatment-function list (a CSV 'specialty_code,specialty_name') "
                                 "and point the ingest settings at it, or correct the codes in the extract",
                                 values=unknown, check="specialty_known"))
    known = [c for c in codes if c in lookup]
    out = pa.table({"specialty_code": known, "specialty_name": [lookup[c] for c in known]})
    return arrow_table("specialties", out), problems


def providers_table(used: ir.Table, reference: ir.Table, *, file: str = "") -> tuple[pa.Table, list[Problem]]:
    """The providers table: the providers the included events use, named from the provider reference.

    Parameters
    ----------
    used : ibis.Table
        ``provider_code`` and ``has_ae`` (bool: a type 1 A&E attendance), any number of rows per provider
        (``has_ae`` true when any row says so; a table without ``has_ae`` means false for all).
    reference : ibis.Table
        The provider reference with canonical fields ``provider_code, provider_name`` (and ``_row``).
    file : str
        The reference's file, for messages.

    Returns
    -------
    (pyarrow.Table, list of Problem)
        ``providers`` (``provider_code, provider_name, has_ae``, sorted by code) and the problems: a used
        provider missing from the reference or without a name, a provider given two different names.

    References
    ----------
    NHS Digital ODS, "NHS Trusts and Trust Sites" (``etr.csv``); ``docs/extracts_reference.md``.
    """
    if "has_ae" not in used.columns:
        used = used.mutate(has_ae=ibis.literal(False))
    u = used.filter(used.provider_code.notnull()).group_by("provider_code").aggregate(has_ae=used.has_ae.fill_null(False).any())
    ref = reference.filter(reference.provider_code.notnull())
    names = ref.group_by("provider_code").aggregate(provider_name=ref.provider_name.max(),
                                                     n_names=ref.provider_name.nunique())
    joined = u.left_join(names, "provider_code").select("provider_code", "provider_name", "has_ae", "n_names")
    res = joined.order_by("provider_code").to_pyarrow()
    problems: list[Problem] = []
    d = res.to_pydict()
    missing = [c for c, n in zip(d["provider_code"], d["provider_name"]) if n is None or not str(n).strip()]
    if missing:
        problems.append(_problem(file, "provider_reference", "provider_code",
                                 f"{len(missing)} provider(s) used by the events are not in the provider reference (or have no name)",
                                 "add them with their names to the provider reference file, or correct the codes in the extract",
                                 values=missing, check="provider_known"))
    twice = [c for c, k in zip(d["provider_code"], d["n_names"]) if k is not None and k > 1]
    if twice:
        rows, n = examples(ref.filter(ref.provider_code.isin(twice)))
        problems.append(_problem(file, "provider_reference", "provider_name", "providers have more than one name in the reference",
                                 "give each provider code one row", values=twice, rows=rows, n_rows=n, check="unique"))
    keep = pc.invert(pc.is_null(res.column("provider_name")))
    return arrow_table("providers", res.filter(keep)), problems


def files_of(files: Mapping[str, str] | None, kind: str) -> str:
    """The file of source ``kind`` for messages (empty when not known)."""
    return str((files or {}).get(kind, ""))
