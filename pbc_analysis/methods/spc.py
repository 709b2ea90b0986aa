"""Statistical process control (SPC) for monthly monitoring: XmR, u and p charts.

Follows NHS England's *Making Data Count* (MDC: "Making Data Count: strengthening your decisions", NHS
Improvement 2019) as implemented by NHSRplotthedots v0.2.2 (NHS-R Community, MIT licence; functions
``ptd_spc``, ``ptd_spc_standard``, ``ptd_calculate_point_type``, ``ptd_calculate_assurance_type``). The
XmR calculations, the special-cause rules, their precedence and the point, variation and assurance
labels match that package exactly (see ``tests/test_spc.py`` for its test vectors).

Process limits (XmR chart)
--------------------------
Within each *segment* (a series, or the part of it between two change points when rebased) the centre
line is the mean of the baseline points and the moving ranges are ``|y_t - y_{t-1}|`` between consecutive
baseline points. With ``AMR`` their average:

- process limits ``mean +/- 2.66 * AMR``. ``2.66 = 3 / d2`` rounded, where ``d2 = 1.128`` is the bias
  constant of the range of two observations, so ``AMR / d2`` estimates sigma;
- two-sigma lines ``mean +/- 2 * (2.66 / 3) * AMR`` (NHSRplotthedots' "near process limits");
- optional moving-range screening (``screen_outliers=True``; NHSRplotthedots' default, not MDC Excel's):
  moving ranges of ``3.267 * AMR`` or more are dropped and AMR recomputed once. ``3.267 = D4`` for
  subgroups of two, the upper limit of the moving-range chart.

Baselines ("fix after n points"): ``baseline=n`` uses the first ``n`` points of each segment (as
NHSRplotthedots' ``fix_after_n_points``); ``baseline=(start, end)`` the points with ``start <= time <= end``.
The limits so computed are extended over the whole segment.

Attribute charts (varying denominators)
---------------------------------------
- u chart (rates): ``u_i = events_i / exposure_i``; centre ``ubar = sum(events) / sum(exposure)`` over the
  baseline; ``sigma_i = sqrt(ubar / exposure_i)``; limits ``ubar +/- 3 sigma_i`` (lower limit clipped at 0).
- p chart (proportions): ``p_i = numerator_i / denominator_i``; ``pbar = sum(numerator) / sum(denominator)``;
  ``sigma_i = sqrt(pbar (1 - pbar) / denominator_i)``; limits ``pbar +/- 3 sigma_i`` clipped to [0, 1].
  Two-sigma lines are ``centre +/- 2 sigma_i``, clipped the same way. ``multiplier`` scales everything
  (per 1,000, per cent).

Special-cause rules (within a segment)
--------------------------------------
1. *Outside limits*: a point above the upper or below the lower process limit (strictly).
2. *Shift (run)*: ``run_length`` (default 7) consecutive points on the same side of the mean; a point on
   the mean breaks the run. Every point of the run is flagged.
3. *Trend*: ``trend_length`` (default 7) consecutive points each strictly higher (or each strictly lower)
   than the one before; equal neighbours break it. Every point of the trend is flagged. NHSRplotthedots
   uses 7 for both; MDC's Excel tool allows 6 or 7, so both lengths are settings.
4. *Two in three*: two of three consecutive points beyond the same two-sigma line (between it and the
   process limit), with all three on the same side of the mean; the points beyond the line are flagged.

A point flagged by several rules takes its type from the first in the order outside limits, trend, two in
three, shift (NHSRplotthedots 0.2.2). Its direction is the side of the mean (or, for trends, the direction
of the trend), and with ``improvement`` it becomes ``special_cause_improvement`` or
``special_cause_concern`` (``special_cause_neutral_high``/``_low`` when ``improvement="neither"``).

Icons (per segment)
-------------------
- Variation: the type of the segment's last point: "common cause", "special cause improvement high/low",
  "special cause concern high/low" or "neither high/low".
- Assurance (needs a target and a direction): target above the upper limit -> "consistently fail" when
  higher is better ("consistently pass" when lower is better); below the lower limit -> the reverse;
  otherwise "inconsistent". NHSRplotthedots reports it for the last segment only (from its last point's
  limits); here every segment gets one, the last segment's equals the package's.

Everything is vectorised over many series at once: rows are sorted by series and time once, and every
per-segment quantity is a ``numpy.bincount`` or a cumulative run-length computation on the sorted arrays
(no Python loop per series), so 6,500 practices x 60 months take well under a second.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

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

IMPROVEMENT = {"increase": 1, "decrease": -1, "neither": 0, "neutral": 0}
POINT_TYPES = ("common_cause", "special_cause_improvement", "special_cause_concern",
               "special_cause_neutral_high", "special_cause_neutral_low")
SPECIAL_CAUSE = ("none", "improvement", "concern", "neither")
VARIATION_ICONS = ("common cause", "special cause improvement high", "special cause improvement low",
                   "special cause concern high", "special cause concern low", "neither high", "neither low")
ASSURANCE_ICONS = ("consistently pass", "consistently fail", "inconsistent")

__all__ = ["xmr", "u_chart", "p_chart", "run_flags", "trend_flags", "part_of", "two_in_three_flags",
           "part_of_two_in_three", "LIMIT", "LIMIT_CLOSE", "D2", "D4", "RUN_LENGTH", "TREND_LENGTH"]


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
    """
    r = np.asarray(relative_to_mean, dtype=float)
    first, _, idx = _bounds(len(r), segment)
    return _run_flags(r, _check_length(run_length, "run_length"), first, idx)


def trend_flags(y: Sequence[float], trend_length: int = TREND_LENGTH, segment: Any = None) -> np.ndarray:
    """+1 (-1) where a point ends ``trend_length`` points each strictly above (below) the one before.

    As NHSRplotthedots' ``ptd_seven_point_trend`` (``trend_length = 7``): ties break a trend.
    """
    v = np.asarray(y, dtype=float)
    first, _, idx = _bounds(len(v), segment)
    return _trend_flags(v, _check_length(trend_length, "trend_length"), first, idx)


def part_of(flags: Sequence[float], length: int = RUN_LENGTH, segment: Any = None) -> np.ndarray:
    """1 where a point belongs to a flagged run: it or one of the next ``length - 1`` points is +/-1.

    As NHSRplotthedots' ``ptd_part_of_seven_trend`` (``length = 7``), used for both runs and trends.
    """
    f = np.asarray(flags, dtype=float)
    _, end, idx = _bounds(len(f), segment)
    return _part_of(f, _check_length(length, "length"), end, idx)


def two_in_three_flags(close_to_limits: Sequence[float], relative_to_mean: Sequence[float],
                       segment: Any = None) -> np.ndarray:
    """1 where a point lies in a window of three with at least two beyond a two-sigma line, all three on
    the same side of the mean (NHSRplotthedots' ``ptd_two_in_three``)."""
    c = np.asarray(close_to_limits, dtype=float)
    r = np.asarray(relative_to_mean, dtype=float)
    if c.shape != r.shape:
        raise ValueError("close_to_limits and relative_to_mean must have the same length")
    _, end, idx = _bounds(len(c), segment)
    return _two_in_three(c, r, end, idx)


def part_of_two_in_three(flags: Sequence[float], close_to_limits: Sequence[float]) -> np.ndarray:
    """1 where a point is in a two-in-three window and itself beyond a two-sigma line
    (NHSRplotthedots' ``ptd_part_of_two_in_three``)."""
    f = np.asarray(flags, dtype=float)
    c = np.asarray(close_to_limits, dtype=float)
    return ((f == 1) & (np.abs(c) == 1)).astype(np.int8)


# --------------------------------------------------------------------------------------------------------------
# Preparing many series: sort once, find segments and baselines
# --------------------------------------------------------------------------------------------------------------

@dataclass
class _Series:
    func: str
    by: list[str]
    keys: list[Any]              # series key per series code (scalar for one `by` column, tuple for several)
    order: np.ndarray            # row positions of `data`, sorted by series then time
    gcode: np.ndarray            # series code per sorted row
    trank: np.ndarray            # rank of time per sorted row
    times: pd.Index              # sorted unique times
    seg: np.ndarray              # global segment id per sorted row
    segment: np.ndarray          # segment number within its series per sorted row (0 = before any change point)
    first: np.ndarray            # sorted row starts a segment
    end: np.ndarray              # index of the last row of the row's segment
    idx: np.ndarray
    seg_start: np.ndarray        # first row of each segment
    seg_end: np.ndarray          # last row of each segment
    base: np.ndarray             # sorted row is in its segment's baseline

    @property
    def n_seg(self) -> int:
        return len(self.seg_start)

    def name(self, code: int) -> str:
        if not self.by:
            return "the series"
        key = self.keys[code]
        if len(self.by) == 1:
            return f"series {self.by[0]}={key!r}"
        return "series (" + ", ".join(f"{c}={k!r}" for c, k in zip(self.by, key)) + ")"


def _as_by(by: str | Sequence[str] | None) -> list[str]:
    if by is None:
        return []
    if isinstance(by, str):
        return [by]
    return list(by)


def _key_code(s: _Series, key: Any, what: str) -> int:
    lookup = getattr(s, "_lookup", None)
    if lookup is None:
        lookup = {k: i for i, k in enumerate(s.keys)}
        s._lookup = lookup  # type: ignore[attr-defined]
    k = key
    if len(s.by) > 1 and not isinstance(k, tuple):
        raise ValueError(f"{s.func}: {what} keys must be tuples of ({', '.join(s.by)}), got {key!r}")
    if k not in lookup:
        raise ValueError(f"{s.func}: {what} names series {key!r}, which is not in the data")
    return lookup[k]


def _ranks(s_times: pd.Index, values: Any, side: str, func: str, what: str) -> np.ndarray:
    try:
        return np.asarray(s_times.searchsorted(values, side=side), dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{func}: {what} {values!r} cannot be compared with the time column "
                         f"(dtype {s_times.dtype}): {exc}") from exc


def _prepare(data: pd.DataFrame, func: str, time: str, by: str | Sequence[str] | None, numeric: Sequence[str],
             rebase: Any, baseline: Any, min_baseline: int, out_cols: Sequence[str]) -> _Series:
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"{func}: data must be a pandas DataFrame, got {type(data).__name__}")
    bycols = _as_by(by)
    needed = [*numeric, time, *bycols]
    missing = [c for c in needed if c not in data.columns]
    if missing:
        raise ValueError(f"{func}: column(s) {missing} not in data (columns: {list(data.columns)})")
    if len(set(needed)) != len(needed):
        raise ValueError(f"{func}: the value, time and by columns must be distinct, got {needed}")
    clash = [c for c in needed if c in out_cols]
    if clash:
        raise ValueError(f"{func}: input column name(s) {clash} clash with output columns; rename them first")
    if len(data) == 0:
        raise ValueError(f"{func}: data has no rows")
    n = len(data)

    # series codes and keys
    for c in bycols:
        if data[c].isna().any():
            raise ValueError(f"{func}: by column {c!r} has {int(data[c].isna().sum())} missing values")
    if not bycols:
        codes = np.zeros(n, np.int64)
    elif len(bycols) == 1:
        codes, _ = pd.factorize(data[bycols[0]], sort=True)
        codes = codes.astype(np.int64)
    else:
        codes = data.groupby(bycols, sort=True).ngroup().to_numpy(np.int64)
    order = np.argsort(codes, kind="stable")
    gcode = codes[order]
    gfirst = np.r_[True, gcode[1:] != gcode[:-1]]
    gstart = np.flatnonzero(gfirst)
    if not bycols:
        keys: list[Any] = [None]
    elif len(bycols) == 1:
        keys = data[bycols[0]].to_numpy(dtype=object)[order[gstart]].tolist()
    else:
        keys = [tuple(r) for r in data[bycols].to_numpy(dtype=object)[order[gstart]]]

    # times: integer ranks; strictly increasing within each series in the given order
    tcodes, times = pd.factorize(data[time], sort=True)
    times = pd.Index(times)
    trank = tcodes[order].astype(np.int64)
    proto = _Series(func, bycols, keys, order, gcode, trank, times, *(np.zeros(0, np.int64),) * 8)
    if (trank < 0).any():
        i = int(np.flatnonzero(trank < 0)[0])
        raise ValueError(f"{func}: time column {time!r} has {int((trank < 0).sum())} missing values "
                         f"(first in {proto.name(int(gcode[i]))})")
    # values: numeric and complete
    for c in numeric:
        col = data[c]
        if not (pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)):
            raise ValueError(f"{func}: column {c!r} must be numeric, got dtype {col.dtype}")
        bad = col.isna().to_numpy()[order]
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{func}: column {c!r} has {int(bad.sum())} missing values (first in "
                             f"{proto.name(int(gcode[i]))} at time {times[trank[i]]}); SPC needs a complete "
                             "series: fill or drop them first")
        if not np.isfinite(col.to_numpy(dtype=float)).all():
            raise ValueError(f"{func}: column {c!r} has infinite values")
    same = ~gfirst[1:]
    dup = same & (trank[1:] == trank[:-1])
    if dup.any():
        i = int(np.flatnonzero(dup)[0]) + 1
        raise ValueError(f"{func}: duplicate times within a series: {proto.name(int(gcode[i]))} has time "
                         f"{times[trank[i]]} more than once ({int(dup.sum())} duplicates in all)")
    back = same & (trank[1:] < trank[:-1])
    if back.any():
        i = int(np.flatnonzero(back)[0]) + 1
        raise ValueError(f"{func}: times must be sorted ascending within each series: {proto.name(int(gcode[i]))} "
                         f"goes from {times[trank[i - 1]]} to {times[trank[i]]}; sort the data by time first")

    # segments from change points (a change point starts a new segment at the first time >= it)
    count = np.zeros(n, np.int64)
    if rebase is not None:
        cp_code, cp_rank = [], []
        items: list[tuple[np.ndarray, Any]]
        if isinstance(rebase, Mapping):
            if not bycols:
                raise ValueError(f"{func}: rebase must be a list of change points when by is None, not a mapping")
            items = [(np.array([_key_code(proto, k, "rebase")]), v) for k, v in rebase.items()]
        else:
            items = [(np.arange(len(keys)), rebase)]
        for codes_, cps in items:
            cps_list = [cps] if (isinstance(cps, (str, bytes)) or not pd.api.types.is_list_like(cps)) else list(cps)
            if any(pd.isna(c) for c in cps_list):
                raise ValueError(f"{func}: rebase change points must not be missing")
            if not cps_list:
                continue
            r = _ranks(times, cps_list, "left", func, "rebase change point")
            cp_code.append(np.repeat(codes_, len(r)))
            cp_rank.append(np.tile(r, len(codes_)))
        if cp_code:
            k = len(times) + 1
            cpkey = np.sort(np.concatenate(cp_code) * k + np.concatenate(cp_rank))
            count = np.searchsorted(cpkey, gcode * k + trank, "right") - np.searchsorted(cpkey, gcode * k, "left")
    first = gfirst | np.r_[True, count[1:] != count[:-1]]
    seg = np.cumsum(first) - 1
    seg_start = np.flatnonzero(first)
    seg_end = np.r_[seg_start[1:] - 1, n - 1]
    idx = np.arange(n)
    end = seg_end[seg]
    pos = idx - seg_start[seg]
    glen = np.bincount(gcode)

    # baseline
    if baseline is None:
        base = np.ones(n, bool)
    elif isinstance(baseline, (int, np.integer)) and not isinstance(baseline, bool):
        if baseline < min_baseline:
            raise ValueError(f"{func}: baseline must be at least {min_baseline} points, got {baseline}")
        if baseline > glen.min():
            code = int(np.argmin(glen))
            raise ValueError(f"{func}: baseline of {baseline} points is longer than {proto.name(code)}, which has "
                             f"{int(glen[code])} points")
        base = pos < baseline
    elif isinstance(baseline, (tuple, list)) and len(baseline) == 2:
        start, stop = baseline
        lo = int(_ranks(times, [start], "left", func, "baseline start")[0])
        hi = int(_ranks(times, [stop], "right", func, "baseline end")[0])
        if lo >= hi:
            raise ValueError(f"{func}: baseline window {baseline!r} holds no times of the data (or start > end)")
        base = (trank >= lo) & (trank < hi)
        cnt = np.bincount(seg, weights=base, minlength=len(seg_start))
        seg_no = count[seg_start]
        short = (seg_no == 0) & (cnt < min_baseline)
        if short.any():
            code = int(gcode[seg_start[np.flatnonzero(short)[0]]])
            got = int(cnt[np.flatnonzero(short)[0]])
            raise ValueError(f"{func}: baseline window {baseline!r} holds {got} point(s) of {proto.name(code)}; "
                             f"at least {min_baseline} are needed")
        empty = cnt == 0  # later segments wholly outside the window use all their points
        base |= empty[seg]
    else:
        raise ValueError(f"{func}: baseline must be None, a number of points or a (start, end) pair, got {baseline!r}")

    return _Series(func, bycols, keys, order, gcode, trank, times, seg, count, first, end, idx, seg_start, seg_end,
                   base)


def _direction(improvement: str, func: str) -> int:
    if not isinstance(improvement, str) or improvement not in IMPROVEMENT:
        raise ValueError(f"{func}: improvement must be 'increase', 'decrease' or 'neither', got {improvement!r}")
    return IMPROVEMENT[improvement]


def _targets(s: _Series, target: Any) -> np.ndarray:
    """Target per series (NaN where none)."""
    out = np.full(len(s.keys), np.nan)
    if target is None:
        return out
    if isinstance(target, Mapping):
        if not s.by:
            raise ValueError(f"{s.func}: target must be a number when by is None, not a mapping")
        for k, v in target.items():
            out[_key_code(s, k, "target")] = float(v)
        return out
    try:
        out[:] = float(target)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{s.func}: target must be a number or a mapping of series to numbers, got {target!r}") from exc
    return out


# --------------------------------------------------------------------------------------------------------------
# Classification shared by all charts
# --------------------------------------------------------------------------------------------------------------

def _classify(s: _Series, y: np.ndarray, mean: np.ndarray, lpl: np.ndarray, upl: np.ndarray, lo2: np.ndarray,
              hi2: np.ndarray, direction: int, run_length: int, trend_length: int, target: np.ndarray) -> dict:
    first, end, idx = s.first, s.end, s.idx
    with np.errstate(invalid="ignore"):
        outside = (y > upl) | (y < lpl)
        rtm = np.nan_to_num(np.sign(y - mean)).astype(np.int8)
        close = ~outside & ((y < lo2) | (y > hi2))
    part_run = _part_of(_run_flags(rtm, run_length, first, idx), run_length, end, idx).astype(bool)
    part_trend = _part_of(_trend_flags(y, trend_length, first, idx), trend_length, end, idx).astype(bool)
    part_23 = (_two_in_three(close, rtm, end, idx).astype(bool)) & close

    # direction of a trend point: of the step to the next point when that is in the trend too, else from the
    # previous point (NHSRplotthedots 0.2.2, issue 171)
    n = len(y)
    step = np.sign(np.diff(y)).astype(np.int8) if n > 1 else np.zeros(0, np.int8)
    left = np.r_[np.int8(0), step]
    left[first] = 0
    right = np.r_[step, np.int8(0)]
    nxt_in = np.r_[part_trend[1:], False] & (idx < end)
    sdy = np.where(part_trend & nxt_in, right, left)

    above = rtm > 0
    code = np.select([outside, part_trend, part_23, part_run],
                     [np.where(rtm == 1, 1, 2), np.where(sdy == 1, 3, 4), np.where(above, 5, 6),
                      np.where(above, 7, 8)], 0).astype(np.int8)
    v = np.where(code == 0, 0, np.where(code % 2 == 1, 1, -1)).astype(np.int8)
    if direction == 0:
        ptype = np.where(v > 0, 3, np.where(v < 0, 4, 0))
    else:
        ptype = np.where(v * direction > 0, 1, np.where(v * direction < 0, 2, 0))
    ptype = ptype.astype(np.int8)

    # variation icon: the type of each segment's last point
    last = s.seg_end
    lt, lv = ptype[last], v[last]
    vicon = np.select([lt == 0, lt == 1, lt == 2, lt == 3, lt == 4],
                      [0, np.where(lv > 0, 1, 2), np.where(lv > 0, 3, 4), 5, 6]).astype(np.int8)
    # assurance icon: target against each segment's limits at its last point
    tg = target[s.gcode[last]]
    lo, hi = lpl[last], upl[last]
    with np.errstate(invalid="ignore"):
        fail_hi = 1 if direction > 0 else 0  # target above upl: higher-is-better fails, lower-is-better passes
        pass_lo = 0 if direction > 0 else 1
        aicon = np.where(tg > hi, fail_hi, np.where(tg < lo, pass_lo, 2))
    aicon = np.where(np.isnan(tg) | np.isnan(lo) | np.isnan(hi) | (direction == 0), -1, aicon).astype(np.int8)

    labels_type = np.array(["Common Cause", "Above UCL", "Below LCL", f"{trend_length} Point Trend (Increasing)",
                            f"{trend_length} Point Trend (Decreasing)", "2 in 3 Above CL", "2 in 3 Below CL",
                            f"{run_length} Points Above CL", f"{run_length} Points Below CL"], dtype=object)
    return {
        "outside_limits": outside,
        "relative_to_mean": rtm,
        "close_to_limits": close,
        "run": part_run,
        "trend": part_trend,
        "two_in_three": part_23,
        "special_cause_flag": code != 0,
        "special_cause_type": _strings(labels_type, code),
        "point_type": _strings(np.array(POINT_TYPES, dtype=object), ptype),
        "special_cause": _strings(np.array(SPECIAL_CAUSE, dtype=object), np.array([0, 1, 2, 3, 3], np.int8)[ptype]),
        "variation_icon": _strings(np.array(VARIATION_ICONS, dtype=object), vicon[s.seg]),
        "target": target[s.gcode],
        "assurance_icon": _strings(np.array(ASSURANCE_ICONS, dtype=object), aicon[s.seg]),
    }


def _strings(labels: np.ndarray, codes: np.ndarray) -> pd.Series:
    """A string column from small integer codes (-1 -> missing), built from the few distinct labels."""
    cat = pd.Categorical.from_codes(codes, categories=pd.Index(labels, dtype=object))
    return pd.Series(cat).astype("str")


def _frame(s: _Series, data: pd.DataFrame, time: str, inputs: Sequence[str], computed: dict, meta: dict) -> pd.DataFrame:
    cols: dict[str, Any] = {}
    for c in [*s.by, time, *inputs]:
        cols[c] = data[c].iloc[s.order].reset_index(drop=True)
    cols["segment"] = s.segment
    cols["baseline"] = s.base
    cols.update(computed)
    out = pd.DataFrame({k: (v.reset_index(drop=True) if isinstance(v, pd.Series) else v) for k, v in cols.items()})
    out.attrs["spc"] = meta
    return out


def _finish(s: _Series, data: pd.DataFrame, time: str, inputs: Sequence[str], value_name: str, y: np.ndarray,
            limits: dict, direction: int, improvement: str, run_length: int, trend_length: int, target: Any,
            chart: str, extra_meta: dict) -> pd.DataFrame:
    tg = _targets(s, target)
    cls = _classify(s, y, limits["mean"], limits["lpl"], limits["upl"], limits["lower_2sigma"],
                    limits["upper_2sigma"], direction, run_length, trend_length, tg)
    computed = {value_name: y} if value_name not in inputs else {}
    computed.update(limits)
    computed.update(cls)
    meta = {"chart": chart, "value": value_name, "time": time, "by": list(s.by), "improvement": improvement,
            "run_length": run_length, "trend_length": trend_length, **extra_meta}
    return _frame(s, data, time, inputs, computed, meta)


_COMMON_OUT = ("segment", "baseline", "mean", "sigma", "lpl", "upl", "lower_2sigma", "upper_2sigma", "outside_limits",
               "relative_to_mean", "close_to_limits", "run", "trend", "two_in_three", "special_cause_flag",
               "special_cause_type", "point_type", "special_cause", "variation_icon", "target", "assurance_icon")


# --------------------------------------------------------------------------------------------------------------
# Public charts
# --------------------------------------------------------------------------------------------------------------

def xmr(data: pd.DataFrame, value: str, time: str, by: str | Sequence[str] | None = None,
        baseline: int | tuple[Any, Any] | None = None, rebase: Sequence[Any] | Mapping[Hashable, Any] | None = None,
        improvement: str = "increase", screen_outliers: bool = False, run_length: int = RUN_LENGTH,
        trend_length: int = TREND_LENGTH, target: float | Mapping[Hashable, float] | None = None) -> pd.DataFrame:
    """XmR (individuals) chart with Making Data Count rules, for one or many series.

    Limits per segment: ``mean +/- 2.66 * AMR`` (2.66 = 3 / d2, d2 = 1.128), two-sigma lines
    ``mean +/- 2 * (2.66 / 3) * AMR``, mean and AMR from the segment's baseline; with ``screen_outliers``
    moving ranges ``>= 3.267 * AMR`` (D4 for n = 2) are dropped before AMR is recomputed. Rules: outside
    limits, ``run_length`` points on one side of the mean, ``trend_length`` points rising or falling, two of
    three beyond the same two-sigma line (see the module docstring). As NHSRplotthedots v0.2.2 ``ptd_spc``
    (MDC, NHS Improvement 2019), except that ``screen_outliers`` defaults to False (MDC's Excel tool does not
    screen; pass True for NHSRplotthedots' default).

    Parameters
    ----------
    data : one row per series and time; ``value`` numeric with no missing values.
    value, time : column names. Times may be anything orderable (dates, periods, ``YYYY-MM`` strings,
        integers); within each series they must be unique and in ascending order.
    by : column(s) naming the series; all series are computed at once.
    baseline : None (all points of each segment), ``n`` (the first ``n`` points of each segment, as
        NHSRplotthedots' ``fix_after_n_points``) or ``(start, end)`` (points with ``start <= time <= end``;
        a later segment wholly outside the window uses all its points).
    rebase : change points: a list (applied to every series) or, with ``by``, a mapping from series key
        (a tuple for several ``by`` columns) to a list. A change point starts a new segment at the first time
        at or after it; each segment gets its own mean, limits, rules and icons.
    improvement : "increase", "decrease" or "neither" (NHSRplotthedots' "neutral" is accepted too).
    screen_outliers : screen moving ranges as above.
    run_length, trend_length : lengths of the shift and trend rules (7 as NHSRplotthedots; MDC Excel 6 or 7).
    target : a number, or a mapping from series key to number, for the assurance icon.

    Returns
    -------
    One row per point, sorted by series and time: the ``by``, ``time`` and ``value`` columns, then
    ``segment`` (0 before the first change point), ``baseline`` (point used for the limits),
    ``moving_range`` (|y_t - y_(t-1)| within the segment), ``average_moving_range``, ``mean``, ``sigma``
    (``AMR * 2.66 / 3``), ``lpl``, ``upl``, ``lower_2sigma``, ``upper_2sigma``, the rule columns
    ``outside_limits``, ``relative_to_mean`` (-1, 0, 1), ``close_to_limits`` (beyond a two-sigma line, inside the
    limits), ``run``, ``trend``, ``two_in_three`` (point is part of such a pattern), ``special_cause_flag``,
    ``special_cause_type`` (e.g. "Above UCL", "7 Point Trend (Increasing)", "2 in 3 Below CL", "7 Points Above
    CL", "Common Cause"), ``point_type`` (NHSRplotthedots' "common_cause", "special_cause_improvement",
    "special_cause_concern", "special_cause_neutral_high/low"), ``special_cause`` ("none", "improvement",
    "concern", "neither"), and per segment ``variation_icon``, ``target`` and ``assurance_icon`` (missing when
    there is no target or no improvement direction). ``DataFrame.attrs["spc"]`` records the settings for
    :func:`plot_spc`.
    """
    func = "xmr"
    direction = _direction(improvement, func)
    run_length = _check_length(run_length, "run_length")
    trend_length = _check_length(trend_length, "trend_length")
    s = _prepare(data, func, time, by, [value], rebase, baseline, 2,
                 (*_COMMON_OUT, "moving_range", "average_moving_range"))
    y = data[value].to_numpy(dtype=float)[s.order]
    nseg = s.n_seg
    base = s.base
    with np.errstate(invalid="ignore", divide="ignore"):
        cnt = np.bincount(s.seg, weights=base, minlength=nseg)
        mean = (np.bincount(s.seg, weights=np.where(base, y, 0.0), minlength=nseg) / cnt)[s.seg]
        mr = np.full(len(y), np.nan)
        mr[1:] = np.abs(np.diff(y))
        mr[s.first] = np.nan
        ok = ~s.first & base & np.r_[False, base[:-1]]
        amr_s = np.bincount(s.seg, weights=np.where(ok, mr, 0.0), minlength=nseg) / np.bincount(s.seg, weights=ok,
                                                                                             minlength=nseg)
        if screen_outliers:
            ok &= mr < D4 * amr_s[s.seg]
            amr_s = np.bincount(s.seg, weights=np.where(ok, mr, 0.0), minlength=nseg) / np.bincount(
                s.seg, weights=ok, minlength=nseg)
    amr = amr_s[s.seg]
    limits = {
        "moving_range": mr,
        "average_moving_range": amr,
        "mean": mean,
        "sigma": amr * (LIMIT / 3),
        "lpl": mean - (LIMIT * amr),
        "upl": mean + (LIMIT * amr),
        "lower_2sigma": mean - (LIMIT_CLOSE * amr),
        "upper_2sigma": mean + (LIMIT_CLOSE * amr),
    }
    return _finish(s, data, time, [value], value, y, limits, direction, improvement, run_length, trend_length, target,
                   "xmr", {"screen_outliers": bool(screen_outliers), "baseline": _meta_baseline(baseline)})


def _meta_baseline(baseline: Any) -> Any:
    return baseline if baseline is None or isinstance(baseline, (int, np.integer)) else [str(b) for b in baseline]


def _attribute(data: pd.DataFrame, func: str, num: str, den: str, time: str, by: Any, baseline: Any, rebase: Any,
               improvement: str, run_length: int, trend_length: int, target: Any, multiplier: float,
               kind: str) -> pd.DataFrame:
    direction = _direction(improvement, func)
    run_length = _check_length(run_length, "run_length")
    trend_length = _check_length(trend_length, "trend_length")
    value_name = "rate" if kind == "u" else "proportion"
    if not (np.isfinite(multiplier) and multiplier > 0):
        raise ValueError(f"{func}: multiplier must be a positive number, got {multiplier!r}")
    s = _prepare(data, func, time, by, [num, den], rebase, baseline, 1, (*_COMMON_OUT, value_name))
    e = data[num].to_numpy(dtype=float)[s.order]
    n = data[den].to_numpy(dtype=float)[s.order]
    if (e < 0).any():
        raise ValueError(f"{func}: {num!r} must not be negative ({int((e < 0).sum())} negative values)")
    if (n <= 0).any():
        raise ValueError(f"{func}: {den!r} must be positive ({int((n <= 0).sum())} values <= 0)")
    if kind == "p" and (e > n).any():
        raise ValueError(f"{func}: {num!r} exceeds {den!r} in {int((e > n).sum())} rows")
    nseg = s.n_seg
    centre = (np.bincount(s.seg, weights=np.where(s.base, e, 0.0), minlength=nseg)
              / np.bincount(s.seg, weights=np.where(s.base, n, 0.0), minlength=nseg))[s.seg]
    if kind == "u":
        sd = np.sqrt(centre / n)
        upper = np.inf
    else:
        sd = np.sqrt(centre * (1 - centre) / n)
        upper = 1.0
    y = e / n * multiplier
    m = multiplier
    limits = {
        "mean": centre * m,
        "sigma": sd * m,
        "lpl": np.clip(centre - 3 * sd, 0.0, upper) * m,
        "upl": np.clip(centre + 3 * sd, 0.0, upper) * m,
        "lower_2sigma": np.clip(centre - 2 * sd, 0.0, upper) * m,
        "upper_2sigma": np.clip(centre + 2 * sd, 0.0, upper) * m,
    }
    return _finish(s, data, time, [num, den], value_name, y, limits, direction, improvement, run_length,
                   trend_length, target, f"{kind}_chart", {"multiplier": float(multiplier),
                                                          "baseline": _meta_baseline(baseline)})


def u_chart(data: pd.DataFrame, events: str, exposure: str, time: str, by: str | Sequence[str] | None = None,
            baseline: int | tuple[Any, Any] | None = None,
            rebase: Sequence[Any] | Mapping[Hashable, Any] | None = None, improvement: str = "increase",
            run_length: int = RUN_LENGTH, trend_length: int = TREND_LENGTH,
            target: float | Mapping[Hashable, float] | None = None, multiplier: float = 1.0) -> pd.DataFrame:
    """u chart for rates with varying exposure (e.g. admissions per registered patient each month).

    ``rate_i = multiplier * events_i / exposure_i``; centre ``ubar = sum(events) / sum(exposure)`` over each
    segment's baseline; ``sigma_i = sqrt(ubar / exposure_i)``; process limits ``ubar +/- 3 sigma_i`` and
    two-sigma lines ``ubar +/- 2 sigma_i``, lower ones clipped at 0, all times ``multiplier``. The same rules,
    point types and icons as :func:`xmr` (two in three uses the two-sigma lines; the assurance icon compares
    the target with the limits at the segment's last point). Arguments as :func:`xmr`; the output has
    ``events``, ``exposure`` and ``rate`` in place of the value and no moving-range columns.
    """
    return _attribute(data, "u_chart", events, exposure, time, by, baseline, rebase, improvement, run_length,
                      trend_length, target, multiplier, "u")


def p_chart(data: pd.DataFrame, numerator: str, denominator: str, time: str, by: str | Sequence[str] | None = None,
            baseline: int | tuple[Any, Any] | None = None,
            rebase: Sequence[Any] | Mapping[Hashable, Any] | None = None, improvement: str = "increase",
            run_length: int = RUN_LENGTH, trend_length: int = TREND_LENGTH,
            target: float | Mapping[Hashable, float] | None = None, multiplier: float = 1.0) -> pd.DataFrame:
    """p chart for proportions with varying denominators.

    ``proportion_i = multiplier * numerator_i / denominator_i``; centre ``pbar = sum(numerator) /
    sum(denominator)`` over each segment's baseline; ``sigma_i = sqrt(pbar (1 - pbar) / denominator_i)``;
    process limits ``pbar +/- 3 sigma_i`` and two-sigma lines ``pbar +/- 2 sigma_i``, clipped to [0, 1], all
    times ``multiplier`` (100 for per cent). Rules, point types and icons as :func:`u_chart`.
    """
    return _attribute(data, "p_chart", numerator, denominator, time, by, baseline, rebase, improvement, run_length,
                      trend_length, target, multiplier, "p")


# --------------------------------------------------------------------------------------------------------------
# Figure
# --------------------------------------------------------------------------------------------------------------
