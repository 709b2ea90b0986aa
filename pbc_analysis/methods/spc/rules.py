"""SPC constants and the Making Data Count pattern rules: runs on one side of the mean, trends, two in three.

Each rule is vectorised over many series at once on rows sorted by series and time (a ``segment`` label per
point; patterns never cross a change of label), as NHSRplotthedots v0.2.2 computes it for one series.

References
----------
NHS England / NHS Improvement (2019), Making Data Count: strengthening your decisions.
NHSRplotthedots v0.2.2 (NHS-R Community, MIT): ``ptd_seven_point_one_side_mean``, ``ptd_seven_point_trend``,
``ptd_part_of_seven_trend``, ``ptd_two_in_three``, ``ptd_part_of_two_in_three``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

__all__ = ["ASSURANCE_ICONS", "D2", "D4", "IMPROVEMENT", "LIMIT", "LIMIT_CLOSE", "POINT_TYPES", "RUN_LENGTH",
           "SPECIAL_CAUSE", "TREND_LENGTH", "VARIATION_ICONS", "Improvement", "part_of", "part_of_two_in_three",
           "run_flags", "trend_flags", "two_in_three_flags"]


#: 3 / d2 rounded to 2.66, with d2 = 1.128 for moving ranges of two points (MDC, NHSRplotthedots).
LIMIT = 2.66
#: two-sigma multiplier of the average moving range, 2 * (2.66 / 3), as NHSRplotthedots' ``limitclose``.
LIMIT_CLOSE = 2 * (LIMIT / 3)
#: d2 for subgroups of two: E[|X1 - X2|] = 1.128 sigma.
D2 = 1.128
#: D4 for subgroups of two: moving ranges >= 3.267 x AMR are screened out as outliers.
D4 = 3.267
#: NHSRplotthedots' run (shift) and trend lengths; MDC's Excel allows 6 or 7.
RUN_LENGTH = 7
TREND_LENGTH = 7

#: the direction of improvement of a measure (for colouring special causes)
Improvement = Literal["increase", "decrease", "neither", "neutral"]
IMPROVEMENT = {"increase": 1, "decrease": -1, "neither": 0, "neutral": 0}
POINT_TYPES = ("common_cause", "special_cause_improvement", "special_cause_concern",
               "special_cause_neutral_high", "special_cause_neutral_low")
SPECIAL_CAUSE = ("none", "improvement", "concern", "neither")
VARIATION_ICONS = ("common cause", "special cause improvement high", "special cause improvement low",
                   "special cause concern high", "special cause concern low", "neither high", "neither low")
ASSURANCE_ICONS = ("consistently pass", "consistently fail", "inconsistent")



# --------------------------------------------------------------------------------------------------------------
# Rules on 1-D arrays (optionally split into segments by a sorted ``segment`` label array)
# --------------------------------------------------------------------------------------------------------------

def _bounds(n: int, segment: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``first`` (row starts a segment), ``end`` (index of the segment's last row) and ``idx``."""
    idx = np.arange(n)
    if n == 0:
        return np.zeros(0, bool), idx, idx
    if segment is None:
        first = np.zeros(n, bool)
        first[0] = True
    else:
        seg = np.asarray(segment)
        first = np.r_[True, seg[1:] != seg[:-1]]
    last = np.r_[first[1:], True]
    end = np.minimum.accumulate(np.where(last, idx, n)[::-1])[::-1]
    return first, end, idx


def _run_length(cont: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Length of the run ending at each row, where ``cont[i]`` says row i continues the run of row i-1."""
    if len(idx) == 0:
        return idx
    return idx - np.maximum.accumulate(np.where(cont, 0, idx)) + 1


def _run_flags(rtm: np.ndarray, length: int, first: np.ndarray, idx: np.ndarray) -> np.ndarray:
    cont = ~first.copy()
    cont[1:] &= rtm[1:] == rtm[:-1]
    return ((rtm != 0) & (_run_length(cont, idx) >= length)).astype(np.int8)


def _trend_flags(y: np.ndarray, length: int, first: np.ndarray, idx: np.ndarray) -> np.ndarray:
    d = np.zeros(len(y), np.int8)
    if len(y) > 1:
        d[1:] = np.sign(y[1:] - y[:-1])
    d[first] = 0
    cont = ~first.copy()
    cont[1:] &= d[1:] == d[:-1]
    return np.where((d != 0) & (_run_length(cont, idx) >= length - 1), d, 0).astype(np.int8)


def _part_of(flags: np.ndarray, length: int, end: np.ndarray, idx: np.ndarray) -> np.ndarray:
    n = len(flags)
    if n == 0:
        return np.zeros(0, np.int8)
    nxt = np.minimum.accumulate(np.where(np.abs(flags) == 1, idx, n)[::-1])[::-1]
    return ((nxt <= idx + length - 1) & (nxt <= end)).astype(np.int8)


def _two_in_three(close: np.ndarray, rtm: np.ndarray, end: np.ndarray, idx: np.ndarray) -> np.ndarray:
    n = len(close)
    w = np.zeros(n, bool)
    if n >= 3:
        v = close.astype(np.int64)
        r = rtm.astype(np.int64)
        sv = v[:-2] + v[1:-1] + v[2:]
        sr = r[:-2] + r[1:-1] + r[2:]
        w[:-2] = (end[:-2] >= idx[:-2] + 2) & (sv >= 2) & (np.abs(sr) == 3)
    out = w.copy()
    out[1:] |= w[:-1]
    out[2:] |= w[:-2]
    return out.astype(np.int8)


def _check_length(length: int, name: str) -> int:
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 2:
        raise ValueError(f"{name} must be an integer of at least 2, got {length!r}")
    return int(length)


def run_flags(relative_to_mean: Sequence[float], run_length: int = RUN_LENGTH, segment: Any = None) -> np.ndarray:
    """1 where a point ends ``run_length`` consecutive points on the same (non-zero) side of the mean.

    ``relative_to_mean`` is ``sign(y - mean)``; as NHSRplotthedots' ``ptd_seven_point_one_side_mean`` (which
    has ``run_length = 7``). Runs never cross a change in ``segment`` (a sorted label per point).

    Parameters
    ----------
    relative_to_mean : array_like
        -1, 0 or 1 per point.
    run_length : int
        Points in a run (at least 2).
    segment : array_like, optional
        A sorted label per point; patterns never cross a change of label.

    Returns
    -------
    numpy.ndarray of int8

    References
    ----------
    NHS England (2019), Making Data Count; NHSRplotthedots v0.2.2, ``ptd_seven_point_one_side_mean``.
    """
    r = np.asarray(relative_to_mean, dtype=float)
    first, _, idx = _bounds(len(r), segment)
    return _run_flags(r, _check_length(run_length, "run_length"), first, idx)


def trend_flags(y: Sequence[float], trend_length: int = TREND_LENGTH, segment: Any = None) -> np.ndarray:
    """+1 (-1) where a point ends ``trend_length`` points each strictly above (below) the one before.

    As NHSRplotthedots' ``ptd_seven_point_trend`` (``trend_length = 7``): ties break a trend.

    Parameters
    ----------
    y : array_like
        The values.
    trend_length : int
        Points in a trend (at least 2).
    segment : array_like, optional
        A sorted label per point; patterns never cross a change of label.

    Returns
    -------
    numpy.ndarray of int8

    References
    ----------
    NHS England (2019), Making Data Count; NHSRplotthedots v0.2.2, ``ptd_seven_point_trend``.
    """
    v = np.asarray(y, dtype=float)
    first, _, idx = _bounds(len(v), segment)
    return _trend_flags(v, _check_length(trend_length, "trend_length"), first, idx)


def part_of(flags: Sequence[float], length: int = RUN_LENGTH, segment: Any = None) -> np.ndarray:
    """1 where a point belongs to a flagged run: it or one of the next ``length - 1`` points is +/-1.

    As NHSRplotthedots' ``ptd_part_of_seven_trend`` (``length = 7``), used for both runs and trends.

    Parameters
    ----------
    flags : array_like
        :func:`run_flags` or :func:`trend_flags`.
    length : int
        The run or trend length.
    segment : array_like, optional
        A sorted label per point; patterns never cross a change of label.

    Returns
    -------
    numpy.ndarray of int8

    References
    ----------
    NHSRplotthedots v0.2.2, ``ptd_part_of_seven_trend``.
    """
    f = np.asarray(flags, dtype=float)
    _, end, idx = _bounds(len(f), segment)
    return _part_of(f, _check_length(length, "length"), end, idx)


def two_in_three_flags(close_to_limits: Sequence[float], relative_to_mean: Sequence[float],
                       segment: Any = None) -> np.ndarray:
    """1 where a point lies in a window of three with at least two beyond a two-sigma line, all three on
    the same side of the mean (NHSRplotthedots' ``ptd_two_in_three``).

    Parameters
    ----------
    close_to_limits : array_like
        -1, 0 or 1: beyond the lower or upper two-sigma line.
    relative_to_mean : array_like
        -1, 0 or 1 per point.
    segment : array_like, optional
        A sorted label per point; patterns never cross a change of label.

    Returns
    -------
    numpy.ndarray of int8

    References
    ----------
    NHS England (2019), Making Data Count; NHSRplotthedots v0.2.2, ``ptd_two_in_three``.
    """
    c = np.asarray(close_to_limits, dtype=float)
    r = np.asarray(relative_to_mean, dtype=float)
    if c.shape != r.shape:
        raise ValueError("close_to_limits and relative_to_mean must have the same length")
    _, end, idx = _bounds(len(c), segment)
    return _two_in_three(c, r, end, idx)


def part_of_two_in_three(flags: Sequence[float], close_to_limits: Sequence[float]) -> np.ndarray:
    """1 where a point is in a two-in-three window and itself beyond a two-sigma line
    (NHSRplotthedots' ``ptd_part_of_two_in_three``).

    Parameters
    ----------
    flags : array_like
        :func:`two_in_three_flags`.
    close_to_limits : array_like
        -1, 0 or 1 per point.

    Returns
    -------
    numpy.ndarray of int8

    References
    ----------
    NHSRplotthedots v0.2.2, ``ptd_part_of_two_in_three``.
    """
    f = np.asarray(flags, dtype=float)
    c = np.asarray(close_to_limits, dtype=float)
    return ((f == 1) & (np.abs(c) == 1)).astype(np.int8)
