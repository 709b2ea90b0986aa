"""Confidence limits on arrays: Byar's and exact Poisson limits for counts, Wilson limits for proportions.

Also the checks of confidence levels and the column suffix of a level (:func:`ci_suffix`), shared by every
indicator (see :mod:`pbc_analysis.methods.indicators` for the formulas).

References
----------
Breslow NE, Day NE (1987), Statistical methods in cancer research II (Byar's approximation).
Armitage P, Berry G (2002), Statistical methods in medical research (exact Poisson limits).
Wilson EB (1927), JASA 22:209-212; Newcombe RG, Altman DG (2000), Proportions and their differences.
PHEindicatormethods v2.1.0 (UKHSA), ``byars_lower``, ``byars_upper``, ``wilson_lower``, ``wilson_upper``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

__all__ = ["EXACT_BELOW", "ConfidenceArg", "byars_lower", "byars_upper", "ci_suffix", "confidence_levels",
           "poisson_exact_lower", "poisson_exact_upper", "poisson_limits", "wilson_lower", "wilson_upper"]

#: Counts below this use exact Poisson limits, from it Byar's (crude rates and ISRs, as PHE).
EXACT_BELOW = 10

ConfidenceArg = float | Sequence[float]


# --------------------------------------------------------------------------------------------------
# confidence levels
# --------------------------------------------------------------------------------------------------

def confidence_levels(confidence: ConfidenceArg) -> tuple[float, ...]:
    """Validate ``confidence`` (a fraction in [0.9, 1) or a list/tuple of them) and return a tuple.

    Raises ``ValueError`` for a level outside [0.9, 1) (including percentages such as ``95``), for an
    empty list and for two levels that would give the same column names.

    Parameters
    ----------
    confidence : float or sequence of float
        Levels in [0.9, 1).

    Returns
    -------
    tuple of float

    References
    ----------
    PHEindicatormethods v2.1.0 (its ``confidence`` argument; percentages are refused here).
    """
    if np.isscalar(confidence):
        levels: tuple = (confidence,)
    elif isinstance(confidence, Sequence | np.ndarray):
        levels = tuple(confidence)
    else:
        raise ValueError(f"confidence must be a fraction such as 0.95, or a list of them; got {confidence!r}")
    if not levels:
        raise ValueError("confidence must be a fraction such as 0.95, or a list of them; got an empty list")
    out = []
    for c in levels:
        if isinstance(c, bool) or not isinstance(c, (int, float, np.integer, np.floating)):
            raise ValueError(f"confidence must be a number such as 0.95 or 0.998; got {c!r}")
        c = float(c)
        if not 0.9 <= c < 1:
            hint = " (give it as a fraction, e.g. 0.95, not a percentage)" if 90 <= c <= 100 else ""
            raise ValueError(f"confidence must be a fraction between 0.9 and 1 (e.g. 0.95 or 0.998); got {c:g}{hint}")
        out.append(c)
    suffixes = [ci_suffix(c) for c in out]
    if len(set(suffixes)) != len(suffixes):
        raise ValueError(f"confidence levels must be distinct; got {list(levels)}")
    return tuple(out)


def _pct(level: float) -> str:
    """``0.95 -> '95'``, ``0.998 -> '99.8'`` (shortest decimal, as R prints ``confidence * 100``)."""
    return np.format_float_positional(round(level * 100, 10), trim="-")


def ci_suffix(level: float) -> str:
    """Column suffix of a confidence level: ``0.95 -> '95_0'``, ``0.998 -> '99_8'``, ``0.9999 -> '99_99'``.

    Parameters
    ----------
    level : float

    Returns
    -------
    str

    References
    ----------
    PHEindicatormethods v2.1.0 (``lower95_0cl``, ``upper99_8cl``), without its ``cl`` tail.
    """
    p = _pct(level)
    return (p if "." in p else p + ".0").replace(".", "_")


def _confidence_label(levels: Sequence[float]) -> str:
    return ", ".join(f"{_pct(c)}%" for c in levels)


def _z(level: float) -> float:
    """Two-sided standard normal quantile, computed as PHE does: ``qnorm(c + (1 - c)/2)``."""
    return float(stats.norm.ppf(level + (1 - level) / 2))


def _fmt_multiplier(m: float) -> str:
    """``100000 -> '100000'`` (R's ``format(m, scientific = FALSE)``), ``0.5 -> '0.5'``."""
    m = float(m)
    return str(int(m)) if m.is_integer() else np.format_float_positional(m, trim="-")


def _single_level(confidence: float) -> float:
    levels = confidence_levels(confidence)
    if len(levels) != 1:
        raise ValueError("this function takes a single confidence level, e.g. 0.95")
    return levels[0]


# --------------------------------------------------------------------------------------------------
# limits on arrays
# --------------------------------------------------------------------------------------------------

def _as_float(x: Any, what: str) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if np.any(arr < 0):
        raise ValueError(f"{what} must all be greater than or equal to zero")
    return arr


def _out(arr: np.ndarray, like: Any) -> np.ndarray | float:
    return float(arr) if np.ndim(like) == 0 else arr


def byars_lower(x: Any, confidence: float = 0.95) -> np.ndarray | float:
    """Byar's lower limit for observed Poisson counts ``x`` (Breslow and Day 1987).

    ``x * (1 - 1/(9x) - z/(3 sqrt(x)))^3`` with ``z = Phi^-1(c + (1-c)/2)``; negative results (and
    ``x = 0``) are missing, as in PHEindicatormethods' ``byars_lower``. Scalars in, float out.

    Parameters
    ----------
    x : array_like
        Observed counts (>= 0).
    confidence : float
        One level.

    Returns
    -------
    numpy.ndarray or float

    References
    ----------
    Breslow NE, Day NE (1987), Statistical methods in cancer research II; PHEindicatormethods ``byars_lower``.
    """
    z = _z(_single_level(confidence))
    arr = _as_float(x, "observed events")
    with np.errstate(divide="ignore", invalid="ignore"):
        lo = arr * (1 - 1 / (9 * arr) - z / (3 * np.sqrt(arr))) ** 3
    return _out(np.where(lo < 0, np.nan, lo), x)


def byars_upper(x: Any, confidence: float = 0.95) -> np.ndarray | float:
    """Byar's upper limit ``(x+1) * (1 - 1/(9(x+1)) + z/(3 sqrt(x+1)))^3`` (Breslow and Day 1987).

    Parameters
    ----------
    x : array_like
        Observed counts (>= 0).
    confidence : float
        One level.

    Returns
    -------
    numpy.ndarray or float

    References
    ----------
    Breslow NE, Day NE (1987), Statistical methods in cancer research II; PHEindicatormethods ``byars_upper``.
    """
    z = _z(_single_level(confidence))
    arr = _as_float(x, "observed events") + 1
    return _out(arr * (1 - 1 / (9 * arr) + z / (3 * np.sqrt(arr))) ** 3, x)


def poisson_exact_lower(x: Any, confidence: float = 0.95) -> np.ndarray | float:
    """Exact Poisson lower limit ``chi2.ppf((1-c)/2, 2x) / 2``, 0 for ``x = 0`` (as R's ``qchisq``).

    Parameters
    ----------
    x : array_like
        Observed counts (>= 0).
    confidence : float
        One level.

    Returns
    -------
    numpy.ndarray or float

    References
    ----------
    Armitage P, Berry G (2002), Statistical methods in medical research, 4th ed.
    """
    c = _single_level(confidence)
    arr = _as_float(x, "observed events")
    with np.errstate(invalid="ignore"):
        lo = stats.chi2.ppf((1 - c) / 2, 2 * arr) / 2
    return _out(np.where(arr == 0, 0.0, lo), x)


def poisson_exact_upper(x: Any, confidence: float = 0.95) -> np.ndarray | float:
    """Exact Poisson upper limit ``chi2.ppf(c + (1-c)/2, 2x + 2) / 2``.

    Parameters
    ----------
    x : array_like
        Observed counts (>= 0).
    confidence : float
        One level.

    Returns
    -------
    numpy.ndarray or float

    References
    ----------
    Armitage P, Berry G (2002), Statistical methods in medical research, 4th ed.
    """
    c = _single_level(confidence)
    arr = _as_float(x, "observed events")
    return _out(stats.chi2.ppf(c + (1 - c) / 2, 2 * arr + 2) / 2, x)


def poisson_limits(x: Any, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Limits for counts as PHE's rates and ISRs: exact Poisson below 10 events, Byar's from 10.

    Returns ``(lower, upper)`` arrays of counts; missing ``x`` gives missing limits.

    Parameters
    ----------
    x : array_like
        Observed counts.
    confidence : float
        One level.

    Returns
    -------
    lower, upper : numpy.ndarray

    References
    ----------
    PHEindicatormethods v2.1.0 (exact below 10 events, Byar's from 10); Breslow and Day (1987).
    """
    arr = np.atleast_1d(np.asarray(x, dtype=float))
    exact = arr < EXACT_BELOW
    lower, upper = np.asarray(byars_lower(arr, confidence)), np.asarray(byars_upper(arr, confidence))
    if exact.any():  # chi-squared quantiles are slow: compute them once per distinct small count
        vals, inv = np.unique(arr[exact], return_inverse=True)
        lower[exact] = np.asarray(poisson_exact_lower(vals, confidence))[inv]
        upper[exact] = np.asarray(poisson_exact_upper(vals, confidence))[inv]
    return lower, upper


def _wilson(x: Any, n: Any, confidence: float, sign: int) -> np.ndarray | float:
    c = _single_level(confidence)
    xa = _as_float(x, "observed events")
    na = np.asarray(n, dtype=float)
    if np.any(na < 0):
        raise ValueError("sample sizes must all be greater than or equal to zero")
    if np.any(xa > na):
        raise ValueError("numerators must be less than or equal to denominators for a Wilson score")
    z = _z(c)
    with np.errstate(divide="ignore", invalid="ignore"):
        res = (2 * xa + z**2 + sign * z * np.sqrt(z**2 + 4 * xa * (1 - xa / na))) / 2 / (na + z**2)
    return _out(res, np.broadcast(x, n))


def wilson_lower(x: Any, n: Any, confidence: float = 0.95) -> np.ndarray | float:
    """Wilson score lower limit of the proportion ``x/n`` (Wilson 1927; Newcombe and Altman 2000).

    Parameters
    ----------
    x, n : array_like
        Numerators and denominators (0 <= x <= n).
    confidence : float
        One level.

    Returns
    -------
    numpy.ndarray or float

    References
    ----------
    Wilson EB (1927), JASA 22:209-212; PHEindicatormethods ``wilson_lower``.
    """
    return _wilson(x, n, confidence, -1)


def wilson_upper(x: Any, n: Any, confidence: float = 0.95) -> np.ndarray | float:
    """Wilson score upper limit of the proportion ``x/n`` (Wilson 1927; Newcombe and Altman 2000).

    Parameters
    ----------
    x, n : array_like
        Numerators and denominators (0 <= x <= n).
    confidence : float
        One level.

    Returns
    -------
    numpy.ndarray or float

    References
    ----------
    Wilson EB (1927), JASA 22:209-212; PHEindicatormethods ``wilson_upper``.
    """
    return _wilson(x, n, confidence, +1)
