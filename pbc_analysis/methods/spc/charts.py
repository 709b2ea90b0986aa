"""XmR, u and p charts with the Making Data Count rules, for many series at once.

Rows are sorted by series and time once (:func:`_prepare`, which also checks the data and lays out segments
and baselines); every per-segment quantity is then a ``numpy.bincount`` on the sorted arrays. See
:mod:`pbc_analysis.methods.spc` for the limits, the rules and their precedence.

References
----------
NHS England / NHS Improvement (2019), Making Data Count: strengthening your decisions.
NHSRplotthedots v0.2.2 (NHS-R Community, MIT): ``ptd_spc``, ``ptd_spc_standard``, ``ptd_calculate_point_type``,
``ptd_calculate_assurance_type``.
Montgomery DC (2009), Introduction to Statistical Quality Control, 6th ed., ch. 7 (u and p charts).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pbc_analysis.core.checks import check_choice
from pbc_analysis.methods.spc.rules import (
    ASSURANCE_ICONS,
    D4,
    IMPROVEMENT,
    LIMIT,
    LIMIT_CLOSE,
    POINT_TYPES,
    RUN_LENGTH,
    SPECIAL_CAUSE,
    TREND_LENGTH,
    VARIATION_ICONS,
    Improvement,
    _check_length,
    _part_of,
    _run_flags,
    _trend_flags,
    _two_in_three,
)

__all__ = ["p_chart", "u_chart", "xmr"]


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
    """Check the data of a chart and lay out its series, segments and baselines (:class:`_Series`).

    Every problem is a ``ValueError`` naming the chart, the column, the series and the time concerned.
    """
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"{func}: data must be a pandas DataFrame, got {type(data).__name__}")
    bycols = _as_by(by)
    _check_columns(data, func, [*numeric, time, *bycols], bycols, out_cols)
    n = len(data)
    order, gcode, gfirst, keys = _series_codes(data, bycols)
    # times: integer ranks; strictly increasing within each series in the given order
    tcodes, times = pd.factorize(data[time], sort=True)
    times = pd.Index(times)
    trank = tcodes[order].astype(np.int64)
    proto = _Series(func, bycols, keys, order, gcode, trank, times, *(np.zeros(0, np.int64),) * 8)
    _check_times_and_values(data, proto, time, numeric, gfirst)
    count = _rebase_counts(proto, rebase, n)
    first = gfirst | np.r_[True, count[1:] != count[:-1]]
    seg = np.cumsum(first) - 1
    seg_start = np.flatnonzero(first)
    seg_end = np.r_[seg_start[1:] - 1, n - 1]
    idx = np.arange(n)
    end = seg_end[seg]
    base = _baseline_mask(proto, baseline, min_baseline, idx - seg_start[seg], seg, seg_start, count)
    return _Series(func, bycols, keys, order, gcode, trank, times, seg, count, first, end, idx, seg_start, seg_end,
                   base)


def _check_columns(data: pd.DataFrame, func: str, needed: list[str], bycols: list[str], out_cols: Sequence[str]) -> None:
    """The value, time and by columns exist, are distinct, do not clash with the output; rows exist; no missing by."""
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
    for c in bycols:
        if data[c].isna().any():
            raise ValueError(f"{func}: by column {c!r} has {int(data[c].isna().sum())} missing values")


def _series_codes(data: pd.DataFrame, bycols: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Any]]:
    """Rows ordered by series (stable), each row's series code in that order, series starts, and series keys."""
    n = len(data)
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
    return order, gcode, gfirst, keys


def _check_times_and_values(data: pd.DataFrame, proto: _Series, time: str, numeric: Sequence[str],
                            gfirst: np.ndarray) -> None:
    """No missing time; numeric, complete, finite values; times unique and ascending within each series."""
    func, order, gcode, trank, times = proto.func, proto.order, proto.gcode, proto.trank, proto.times
    if (trank < 0).any():
        i = int(np.flatnonzero(trank < 0)[0])
        raise ValueError(f"{func}: time column {time!r} has {int((trank < 0).sum())} missing values "
                         f"(first in {proto.name(int(gcode[i]))})")
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


def _rebase_counts(proto: _Series, rebase: Any, n: int) -> np.ndarray:
    """Per row, the number of change points at or before its time (a change point starts a new segment at the
    first time >= it)."""
    func, gcode, trank, times = proto.func, proto.gcode, proto.trank, proto.times
    count = np.zeros(n, np.int64)
    if rebase is None:
        return count
    cp_code, cp_rank = [], []
    items: list[tuple[np.ndarray, Any]]
    if isinstance(rebase, Mapping):
        if not proto.by:
            raise ValueError(f"{func}: rebase must be a list of change points when by is None, not a mapping")
        items = [(np.array([_key_code(proto, k, "rebase")]), v) for k, v in rebase.items()]
    else:
        items = [(np.arange(len(proto.keys)), rebase)]
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
    return count


def _baseline_mask(proto: _Series, baseline: Any, min_baseline: int, pos: np.ndarray, seg: np.ndarray,
                   seg_start: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Which rows set their segment's limits: all (None), the first ``n`` of each segment, or a time window (later
    segments wholly outside the window use all their points)."""
    func, gcode, trank, times = proto.func, proto.gcode, proto.trank, proto.times
    if baseline is None:
        return np.ones(len(pos), bool)
    if isinstance(baseline, (int, np.integer)) and not isinstance(baseline, bool):
        glen = np.bincount(gcode)
        if baseline < min_baseline:
            raise ValueError(f"{func}: baseline must be at least {min_baseline} points, got {baseline}")
        if baseline > glen.min():
            code = int(np.argmin(glen))
            raise ValueError(f"{func}: baseline of {baseline} points is longer than {proto.name(code)}, which has "
                             f"{int(glen[code])} points")
        return pos < baseline
    if isinstance(baseline, (tuple, list)) and len(baseline) == 2:
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
        empty = cnt == 0
        return base | empty[seg]
    raise ValueError(f"{func}: baseline must be None, a number of points or a (start, end) pair, got {baseline!r}")


def _direction(improvement: str, func: str) -> int:
    """+1, -1 or 0: the sign of change that is an improvement (refusing any other ``improvement``)."""
    check_choice(f"{func}: improvement", improvement, Improvement)
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
    :func:`pbc_analysis.publish.figures.plot_spc`.

    References
    ----------
    NHS England / NHS Improvement (2019), Making Data Count; Wheeler DJ (2000), Understanding Variation;
    NHSRplotthedots v0.2.2, ``ptd_spc``.
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
    """U chart for rates with varying exposure (e.g. admissions per registered patient each month).

    ``rate_i = multiplier * events_i / exposure_i``; centre ``ubar = sum(events) / sum(exposure)`` over each
    segment's baseline; ``sigma_i = sqrt(ubar / exposure_i)``; process limits ``ubar +/- 3 sigma_i`` and
    two-sigma lines ``ubar +/- 2 sigma_i``, lower ones clipped at 0, all times ``multiplier``. The same rules,
    point types and icons as :func:`xmr` (two in three uses the two-sigma lines; the assurance icon compares
    the target with the limits at the segment's last point). Arguments as :func:`xmr`; the output has
    ``events``, ``exposure`` and ``rate`` in place of the value and no moving-range columns.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per series and time.
    events, exposure : str
        Columns of events (>= 0) and exposure (> 0).
    time : str
        The time column (orderable; unique and ascending within each series).
    by, baseline, rebase, improvement, run_length, trend_length, target
        As :func:`xmr`.
    multiplier : float
        Scale of the plotted values.

    Returns
    -------
    pandas.DataFrame
        One row per point, as :func:`xmr`.

    References
    ----------
    Montgomery DC (2009), Introduction to Statistical Quality Control, 6th ed., s. 7.3 (the u chart); NHS England
    (2019), Making Data Count (the rules).
    """
    return _attribute(data, "u_chart", events, exposure, time, by, baseline, rebase, improvement, run_length,
                      trend_length, target, multiplier, "u")


def p_chart(data: pd.DataFrame, numerator: str, denominator: str, time: str, by: str | Sequence[str] | None = None,
            baseline: int | tuple[Any, Any] | None = None,
            rebase: Sequence[Any] | Mapping[Hashable, Any] | None = None, improvement: str = "increase",
            run_length: int = RUN_LENGTH, trend_length: int = TREND_LENGTH,
            target: float | Mapping[Hashable, float] | None = None, multiplier: float = 1.0) -> pd.DataFrame:
    """P chart for proportions with varying denominators.

    ``proportion_i = multiplier * numerator_i / denominator_i``; centre ``pbar = sum(numerator) /
    sum(denominator)`` over each segment's baseline; ``sigma_i = sqrt(pbar (1 - pbar) / denominator_i)``;
    process limits ``pbar +/- 3 sigma_i`` and two-sigma lines ``pbar +/- 2 sigma_i``, clipped to [0, 1], all
    times ``multiplier`` (100 for per cent). Rules, point types and icons as :func:`u_chart`.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per series and time.
    numerator, denominator : str
        Columns of the counts (0 <= numerator <= denominator, denominator > 0).
    time : str
        The time column (orderable; unique and ascending within each series).
    by, baseline, rebase, improvement, run_length, trend_length, target
        As :func:`xmr`.
    multiplier : float
        Scale of the plotted values.

    Returns
    -------
    pandas.DataFrame
        One row per point, as :func:`xmr`.

    References
    ----------
    Montgomery DC (2009), Introduction to Statistical Quality Control, 6th ed., s. 7.2 (the p chart); NHS England
    (2019), Making Data Count (the rules).
    """
    return _attribute(data, "p_chart", numerator, denominator, time, by, baseline, rebase, improvement, run_length,
                      trend_length, target, multiplier, "p")
