"""Problems: one breach of the data dictionary (:class:`Problem`), the error listing them all
(:class:`DataValidationError`) and the helpers that word their messages.

A problem names the file, the table, the column, the rows (1-based data row numbers, the header is row 0)
and a sample of the offending values, with what to do about it. Every check of :mod:`pbc_analysis.data`
(and :mod:`pbc_analysis.data.plausibility`) reports through these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

#: rows quoted in a problem's text; rows kept in ``Problem.rows``; values kept in ``Problem.values``
SHOW_ROWS = 10
KEEP_ROWS = 1000
KEEP_VALUES = 10


def _n(count: int, noun: str, plural: str | None = None) -> str:
    """``"1 row"``, ``"3 rows"``, ``"1,200 practice-months"``."""
    return f"{count:,} {noun if count == 1 else (plural or noun + 's')}"


def _are(count: int) -> str:
    return "is" if count == 1 else "are"


def _have(count: int) -> str:
    return "has" if count == 1 else "have"


@dataclass(frozen=True)
class Problem:
    """One breach of the data dictionary.

    ``rows`` are 1-based data row numbers (the header is row 0; Parquet: 1-based row position), at
    most :data:`KEEP_ROWS` of them, in file order; ``n_rows`` is how many rows offend in total (0 when
    the problem is about rows that are absent, e.g. a missing month). ``values`` is a sample of the
    offending values (cells, or key tuples for key/coverage problems). ``check`` names the rule.
    """

    file: str
    table: str
    column: str | None
    rows: list[int]
    values: list[Any]
    message: str
    fix: str
    n_rows: int = 0
    check: str = ""

    def __str__(self) -> str:
        where = self.file or "(no file)"
        head = f"{where} [table {self.table}]"
        if self.column:
            head += f", column '{self.column}'"
        lines = [f"{head}: {self.message}"]
        if self.rows:
            if self.rows == [0]:
                lines.append("    rows: 0 (the header)")
            else:
                shown = ", ".join(str(r) for r in self.rows[:SHOW_ROWS])
                more = f", ... ({self.n_rows:,} rows in total)" if self.n_rows > SHOW_ROWS else \
                    f" ({self.n_rows} row{'s' if self.n_rows != 1 else ''} in total)"
                lines.append(f"    rows: {shown}{more}")
        if self.values:
            lines.append("    values: " + ", ".join(_fmt_value(v) for v in self.values[:SHOW_ROWS]))
        if self.fix:
            lines.append(f"    fix: {self.fix}")
        return "\n".join(lines)


def _fmt_value(v: Any) -> str:
    if isinstance(v, tuple):
        return "(" + ", ".join(_fmt_value(x) for x in v) + ")"
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "<missing>"
    if isinstance(v, str):
        return repr(v)
    return str(v)


class DataValidationError(ValueError):
    """The input data breach the data dictionary; ``problems`` lists every breach."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems: list[Problem] = list(problems)
        super().__init__(self._report())

    def _report(self) -> str:
        n = len(self.problems)
        head = (f"The input data failed validation: {n} problem{'s' if n != 1 else ''} "
                "(all are listed; fix them and load again; see docs/data_dictionary.md).")
        body = [f"[{i}] " + str(p).replace("\n", "\n  ") for i, p in enumerate(self.problems, 1)]
        return "\n\n".join([head, *body])

    def __str__(self) -> str:
        return self._report()


def _samples(values: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    seen: set = set()
    for v in values:
        if isinstance(v, float) and np.isnan(v):
            v = None
        if isinstance(v, np.generic):
            v = v.item()
        h = ("__none__",) if v is None else v
        if h not in seen:
            seen.add(h)
            out.append(v)
            if len(out) >= KEEP_VALUES:
                break
    return out


def _rows(positions: np.ndarray, rowmap: np.ndarray | None) -> np.ndarray:
    positions = np.asarray(positions, dtype=np.int64)
    return rowmap[positions] if rowmap is not None else positions + 1
