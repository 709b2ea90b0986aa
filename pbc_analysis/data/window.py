"""The analysis window (:class:`Window`) and the data window of a data directory: the months every monthly
table covers (``start_month``/``end_month`` ``auto``).

The monthly tables (``population``, ``activity``, ``referrals``) are read for their ``month`` column only
(pyarrow, column projection: a national extract is not loaded), and the window is the span all of them cover:
from the latest of their first months to the earliest of their last months. Validation then checks that
``population`` covers that window month by month (:mod:`pbc_analysis.data`), so a gap inside it is still an
error; ``activity`` and ``referrals`` may be sparse (a missing row means zero).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pbc_analysis.core import calendar
from pbc_analysis.data.files import find_table_files

__all__ = ["MONTHLY_TABLES", "Window", "WindowError", "data_window", "resolve_window"]

MONTHLY_TABLES = ("population", "activity", "referrals")


@dataclass(frozen=True)
class Window:
    """The analysis window, ``start_month`` to ``end_month`` inclusive (``YYYY-MM``).

    Month arithmetic is :mod:`pbc_analysis.core.calendar`'s; a ``ValueError`` is raised for a month not
    written ``YYYY-MM`` or a start after the end.
    """

    start_month: str
    end_month: str

    def __post_init__(self) -> None:
        for name in ("start_month", "end_month"):
            value = getattr(self, name)
            if not calendar.is_month(value):
                raise ValueError(f"{name} must be a month 'YYYY-MM' (e.g. '2005-04'), got {value!r}")
        if self.start_month > self.end_month:
            raise ValueError(f"start_month {self.start_month} is after end_month {self.end_month}")

    @property
    def start_index(self) -> int:
        """``year * 12 + month - 1`` of the first month (:func:`pbc_analysis.core.calendar.month_int`)."""
        return calendar.month_int(self.start_month)

    @property
    def end_index(self) -> int:
        """``year * 12 + month - 1`` of the last month."""
        return calendar.month_int(self.end_month)

    @property
    def n_months(self) -> int:
        """The number of months of the window, both ends counted."""
        return calendar.months_between(self.start_month, self.end_month)

    @property
    def months(self) -> list[str]:
        """Every month of the window, ``["2005-04", "2005-05", ...]``."""
        return calendar.month_range(self.start_month, self.end_month)

    @property
    def financial_years(self) -> list[str]:
        """The financial years (April to March) the window touches, ``["2005/06", ...]``."""
        return list(dict.fromkeys(calendar.fy_of_month(m) for m in self.months))

    def __str__(self) -> str:
        return f"{self.start_month} to {self.end_month}"


class WindowError(ValueError):
    """The data window cannot be told from the files (naming the files and the fix)."""


def _month_span(path: Path) -> tuple[str, str] | None:
    """First and last ``YYYY-MM`` value of a table's ``month`` column (values of another form are left to validation)."""
    name = path.name.lower()
    if name.endswith(".parquet"):
        schema = pq.read_schema(path)
        text = "month" in schema.names and pa.types.is_string(schema.field("month").type)
        column = pq.read_table(path, columns=["month"], read_dictionary=["month"] if text else None).column("month")
        if pa.types.is_dictionary(column.type):  # the values present, not a string per row
            column = pa.chunked_array([c.dictionary.take(pc.drop_null(pc.unique(c.indices))) for c in column.chunks],
                                      type=column.type.value_type)
    else:
        options = pacsv.ConvertOptions(include_columns=["month"], column_types={"month": pa.string()})
        column = pacsv.read_csv(path, convert_options=options).column("month")
    column = pc.cast(column, pa.string())
    valid = pc.filter(column, pc.match_substring_regex(column, calendar.MONTH_PATTERN))
    if len(valid) == 0:
        return None
    span = pc.min_max(valid)
    return str(span["min"].as_py()), str(span["max"].as_py())


def data_window(data_dir: str | Path) -> tuple[str, str]:
    """The months every monthly table of ``data_dir`` covers.

    Parameters
    ----------
    data_dir : str or Path
        The data directory (relative paths from the project root).

    Returns
    -------
    start_month, end_month : str
        The latest first month and the earliest last month of :data:`MONTHLY_TABLES`.

    Raises
    ------
    WindowError
        When no monthly table has a month, a file cannot be read, or the tables do not overlap.
    pbc_analysis.data.DataValidationError
        When the directory's files cannot be told apart (as :func:`pbc_analysis.data.find_table_files`).
    """
    files = find_table_files(data_dir)
    spans: dict[str, tuple[str, str]] = {}
    problems = []
    for table in MONTHLY_TABLES:
        path = files.get(table)
        if path is None:
            continue
        try:
            span = _month_span(path)
        except (OSError, pa.ArrowException, KeyError) as exc:
            problems.append(f"{path.name}: its month column cannot be read ({str(exc).splitlines()[0]})")
            continue
        if span is None:
            problems.append(f"{path.name}: no month \"YYYY-MM\" in its month column")
        else:
            spans[table] = span
    if problems or not spans:
        found = "; ".join(problems) or f"none of {', '.join(MONTHLY_TABLES)} is in {data_dir}"
        raise WindowError(f"the data window cannot be read from the files: {found}; fix the files or give "
                          "start_month and end_month in the config")
    start, end = max(s for s, _ in spans.values()), min(e for _, e in spans.values())
    if start > end:
        shown = ", ".join(f"{t} {s} to {e}" for t, (s, e) in spans.items())
        raise WindowError(f"the monthly tables do not overlap ({shown}): no window is covered by all of them")
    return start, end


def resolve_window(data_dir: str | Path, start_month: str, end_month: str) -> tuple[str, str]:
    """``start_month`` and ``end_month`` with ``"auto"`` replaced by the data window's (:func:`data_window`).

    Parameters
    ----------
    data_dir : str or Path
    start_month, end_month : str
        ``YYYY-MM`` or ``"auto"``.

    Returns
    -------
    start_month, end_month : str
    """
    if start_month != "auto" and end_month != "auto":
        return start_month, end_month
    first, last = data_window(data_dir)
    return (first if start_month == "auto" else start_month), (last if end_month == "auto" else end_month)
