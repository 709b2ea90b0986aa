"""The one implementation of month, quarter and financial-year arithmetic.

Months are ``YYYY-MM`` strings; an English (NHS) financial year runs April to March and is labelled
``YYYY/YY`` by the calendar year it starts in (April 2005 to March 2006 is ``2005/06``); its quarters are
Q1 = April to June ... Q4 = January to March. Every module that needs one of these asks here, so that a
month is never turned into a year, a quarter or an index in two different ways.

The vectorised functions (:func:`financial_year_of`, :func:`month_index`, :func:`period_of_months`) work on
the distinct months only, so they cost nothing on a column of millions of rows with 60 distinct months.

References
----------
NHS England, *Financial year* (1 April to 31 March) as used in HES, SUS and the PbR tariff, e.g.
NHS Digital, "Hospital Episode Statistics (HES) Analysis Guide", section "Financial years".
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np
import pandas as pd

MONTH_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])$"
FY_PATTERN = r"^[0-9]{4}/[0-9]{2}$"
FIRST_MONTH_OF_YEAR = 4          # April starts the financial year
_MONTH_RE = re.compile(MONTH_PATTERN)
_FY_RE = re.compile(r"^([0-9]{4})/([0-9]{2})$")
PERIODS = ("financial_year", "calendar_year", "quarter", "month")   # quarter: the financial quarter

__all__ = ["FIRST_MONTH_OF_YEAR", "FY_PATTERN", "MONTH_PATTERN", "PERIODS", "add_months", "financial_year_label",
           "financial_year_of", "full_financial_years", "fy_end_month", "fy_months", "fy_of_month", "fy_start_month",
           "fy_start_year", "is_financial_year", "is_month", "month_index", "month_int", "month_range", "month_str",
           "months_between", "period_of_months", "shift_year"]


def is_month(value: object) -> bool:
    """Whether ``value`` is a ``YYYY-MM`` month string (month 01 to 12).

    Parameters
    ----------
    value : object

    Returns
    -------
    bool
    """
    return isinstance(value, str) and _MONTH_RE.fullmatch(value) is not None


def is_financial_year(value: object) -> bool:
    """Whether ``value`` is a financial-year label ``YYYY/YY`` with consecutive years (``2005/06``).

    Parameters
    ----------
    value : object

    Returns
    -------
    bool
    """
    m = _FY_RE.fullmatch(value) if isinstance(value, str) else None
    return m is not None and (int(m.group(1)) + 1) % 100 == int(m.group(2))


def month_int(month: str) -> int:
    """A month as a number of months since year 0 (``year * 12 + month - 1``), for arithmetic.

    Parameters
    ----------
    month : str
        ``YYYY-MM``.

    Returns
    -------
    int
    """
    return int(month[:4]) * 12 + int(month[5:7]) - 1


def month_str(m: int) -> str:
    """The ``YYYY-MM`` string of a :func:`month_int` number.

    Parameters
    ----------
    m : int

    Returns
    -------
    str
    """
    return f"{m // 12:04d}-{m % 12 + 1:02d}"


def add_months(month: str, k: int) -> str:
    """The month ``k`` months after ``month`` (``k`` may be negative).

    Parameters
    ----------
    month : str
        ``YYYY-MM``.
    k : int

    Returns
    -------
    str
    """
    return month_str(month_int(month) + int(k))


def months_between(first: str, last: str) -> int:
    """The number of months from ``first`` to ``last``, both counted (``2005-04`` to ``2006-03`` is 12).

    Parameters
    ----------
    first, last : str
        ``YYYY-MM``.

    Returns
    -------
    int
        0 when ``last`` is before ``first``.
    """
    return max(0, month_int(last) - month_int(first) + 1)


def month_range(first: str, last: str) -> list[str]:
    """Every month from ``first`` to ``last`` inclusive.

    Parameters
    ----------
    first, last : str
        ``YYYY-MM``.

    Returns
    -------
    list of str
        Empty when ``last`` is before ``first``.
    """
    return [month_str(m) for m in range(month_int(first), month_int(last) + 1)]


def month_index(months: Sequence[str] | pd.Series, first: str) -> np.ndarray:
    """1-based month number of ``YYYY-MM`` strings counted from ``first`` (``first`` is 1).

    Parameters
    ----------
    months : sequence of str
    first : str

    Returns
    -------
    numpy.ndarray of int
    """
    codes, uniq = pd.factorize(pd.Series(months, dtype="str"))
    base = month_int(first)
    values = np.array([month_int(u) - base + 1 for u in uniq], dtype=np.int64)
    return values[codes] if len(uniq) else np.array([], dtype=np.int64)


def financial_year_label(start: int) -> str:
    """The label ``YYYY/YY`` of the financial year that starts in April of ``start`` (2005 -> ``2005/06``).

    Parameters
    ----------
    start : int
        The calendar year in which the financial year starts.

    Returns
    -------
    str
    """
    return f"{start:04d}/{(start + 1) % 100:02d}"


def fy_start_year(fy: str) -> int:
    """The calendar year in which financial year ``fy`` starts (``2005/06`` -> 2005).

    Parameters
    ----------
    fy : str
        ``YYYY/YY``.

    Returns
    -------
    int

    Raises
    ------
    ValueError
        If ``fy`` is not a financial-year label.
    """
    if not is_financial_year(fy):
        raise ValueError(f"a financial year is written 'YYYY/YY' with consecutive years, such as '2007/08'; got {fy!r}")
    return int(fy[:4])


def fy_of_month(month: str) -> str:
    """The financial year of one month (``2006-03`` -> ``2005/06``).

    Parameters
    ----------
    month : str
        ``YYYY-MM``.

    Returns
    -------
    str
    """
    y, m = int(month[:4]), int(month[5:7])
    return financial_year_label(y if m >= FIRST_MONTH_OF_YEAR else y - 1)


def fy_start_month(fy: str) -> str:
    """The first month (April) of financial year ``fy``.

    Parameters
    ----------
    fy : str

    Returns
    -------
    str
    """
    return f"{fy_start_year(fy):04d}-{FIRST_MONTH_OF_YEAR:02d}"


def fy_end_month(fy: str) -> str:
    """The last month (March) of financial year ``fy``.

    Parameters
    ----------
    fy : str

    Returns
    -------
    str
    """
    return add_months(fy_start_month(fy), 11)


def fy_months(fy: str) -> list[str]:
    """The twelve months of financial year ``fy``, April first.

    Parameters
    ----------
    fy : str

    Returns
    -------
    list of str
    """
    return month_range(fy_start_month(fy), fy_end_month(fy))


def shift_year(fy: str, k: int) -> str:
    """The financial year ``k`` years after ``fy`` (``shift_year("2007/08", 1) == "2008/09"``).

    Parameters
    ----------
    fy : str
    k : int

    Returns
    -------
    str
    """
    return financial_year_label(fy_start_year(fy) + int(k))


def full_financial_years(first: str, last: str) -> list[str]:
    """The financial years all twelve of whose months lie in ``first`` .. ``last``, oldest first.

    Parameters
    ----------
    first, last : str
        ``YYYY-MM``, the first and last month of a window.

    Returns
    -------
    list of str
        E.g. ``2004-01`` .. ``2007-12`` -> ``["2004/05", "2005/06", "2006/07"]``.
    """
    start = int(first[:4]) + (int(first[5:7]) > FIRST_MONTH_OF_YEAR)
    years = []
    while month_int(fy_end_month(financial_year_label(start))) <= month_int(last):
        years.append(financial_year_label(start))
        start += 1
    return years


def financial_year_of(months: Sequence[str] | pd.Series | np.ndarray) -> np.ndarray:
    """Financial year ``YYYY/YY`` of each ``YYYY-MM`` month string (vectorised on the distinct months).

    Parameters
    ----------
    months : sequence of str

    Returns
    -------
    numpy.ndarray of object (str)
    """
    codes, uniq = pd.factorize(pd.Series(months, dtype="str"))
    labels = np.array([fy_of_month(u) for u in uniq], dtype=object)
    return labels[codes] if len(uniq) else np.array([], dtype=object)


def period_of_months(months: Sequence[str], period: str = "financial_year") -> np.ndarray:
    """The period label of each month: ``2005/06`` (financial year), ``2005`` (calendar year),
    ``2005/06 Q1`` (financial quarter, Q1 = April to June) or the month itself.

    Parameters
    ----------
    months : sequence of str
    period : {"financial_year", "calendar_year", "quarter", "month"}

    Returns
    -------
    numpy.ndarray of str

    Raises
    ------
    ValueError
        For another ``period``.
    """
    if period not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}, not {period!r}")
    if period == "month":
        return np.asarray(months, dtype=str)
    codes, uniq = pd.factorize(pd.Series(list(months), dtype="str"))
    if period == "calendar_year":
        labels = [u[:4] for u in uniq]
    elif period == "financial_year":
        labels = [fy_of_month(u) for u in uniq]
    else:
        labels = [f"{fy_of_month(u)} Q{(int(u[5:7]) - FIRST_MONTH_OF_YEAR) % 12 // 3 + 1}" for u in uniq]
    return np.asarray(labels, dtype=str)[codes] if len(uniq) else np.array([], dtype=str)
