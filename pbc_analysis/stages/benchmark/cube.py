"""The count cube of benchmarking: validated inputs reduced once to arrays over practices, series and months.

Observed counts ``O[p, k, m]`` for practice p, series k (a measure, i.e. GP referrals or a point of delivery,
by specialty) and month m, cost alongside, and the registered list ``N[p, m, a]`` by age-sex cell a. Everything
after that is numpy on these arrays, with no loops over practices or rows, so all of England (6,500 practices
x 61 series x 60 months) takes seconds. Periods (financial years, calendar years, quarters, months) are sums
over months (:func:`pbc_analysis.core.calendar.period_of_months` labels them).

References
----------
Breslow NE, Day NE (1987), Statistical methods in cancer research II, ch. 2 (person-years by age-sex cell).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import pandas as pd

from pbc_analysis import data as _data
from pbc_analysis.core import calendar
from pbc_analysis.core.checks import ArgumentError

__all__ = ["ALL", "N_AS", "BenchmarkError", "Cube", "build_cube", "period_of_months", "select_measures"]

ALL = "all"
N_AS = len(_data.AGE_BANDS) * len(_data.SEXES)
#: a month's period label (financial year, calendar year, financial quarter or the month): the one calendar
period_of_months = calendar.period_of_months


class BenchmarkError(ArgumentError):
    """A benchmarking argument that cannot work with these inputs (a ``ValueError`` saying what to change)."""


@dataclass(frozen=True, eq=False)
class Cube:
    """Counts, cost and lists as arrays over practices, series and months.

    ``counts[p, k, m]`` and ``cost[p, k, m]`` (cost is NaN for GP referrals) for practice
    ``practices[p]``, series ``series.iloc[k]`` (``measure``, ``specialty_code``) and month
    ``months[m]``; ``registered[p, m, a]`` the list by age-sex cell a (age band major, F then M,
    as :data:`pbc_analysis.data.AGE_BANDS` x ``SEXES``); ``practice_info`` the practices table in the
    same order; ``reference_rates[k, a]`` per 1,000 a year (NaN where the reference table has no
    rate for the series, or when the table is absent).
    """

    practices: pd.Index
    practice_info: pd.DataFrame
    series: pd.DataFrame
    months: list[str]
    counts: np.ndarray
    cost: np.ndarray
    registered: np.ndarray
    reference_rates: np.ndarray

    @property
    def has_reference_rates(self) -> bool:
        """Whether the inputs have reference age-sex rates for at least one series."""
        return bool(np.isfinite(self.reference_rates).any())


def _positions(inputs: _data.Inputs, table: str, column: str, categories: Sequence[str] | pd.Index
               ) -> tuple[np.ndarray, np.ndarray]:
    """``(lookup, codes)``: each row's position in ``categories`` is ``lookup[codes]`` (validated inputs: all known)."""
    codes, uniques = inputs.factorize(table, column)
    pos = pd.Index(categories).get_indexer(pd.Index(uniques))
    if (pos < 0).any():  # cannot happen after validation; a guard, not a filter
        raise BenchmarkError(f"{table}.{column}: values not in the reference list: {list(pd.Index(uniques)[pos < 0][:5])}")
    return pos, codes


def _codes(inputs: _data.Inputs, table: str, column: str, categories: Sequence[str] | pd.Index) -> np.ndarray:
    """Integer positions of ``inputs.<table>[column]`` in ``categories`` (validated inputs: all known)."""
    pos, codes = _positions(inputs, table, column, categories)
    return pos[codes]


#: rows per block while the cells of a large table are indexed (bounds the temporaries at national size)
_BLOCK = 1 << 22
_Axis = tuple[np.ndarray, tuple[np.ndarray, ...], int]


def _cells(n_rows: int, axes: Sequence[_Axis]) -> np.ndarray:
    """Per row, the row-major index (``int64``) of its cell over ``axes`` ``(lookup, codes, length)``, a row's
    position on an axis being ``lookup[codes]`` (``codes``: one array per dimension of ``lookup``); a row
    with position -1 on any axis gets the spare index one past the last cell. Built in blocks of rows."""
    size = int(np.prod([n for _, _, n in axes]))
    flat = np.empty(n_rows, dtype=np.int64)
    for i in range(0, n_rows, _BLOCK):
        sl = slice(i, min(i + _BLOCK, n_rows))
        out = np.zeros(sl.stop - sl.start, dtype=np.int64)
        bad = np.zeros(len(out), dtype=bool)
        for lookup, codes, n in axes:
            pos = lookup[tuple(c[sl] for c in codes)]
            out *= n
            out += pos
            bad |= pos < 0
        out[bad] = size
        flat[sl] = out
    return flat


def _sums(cells: np.ndarray, weights: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sums of ``weights`` by cell (one pass in row order, as ``np.bincount``), the spare cell dropped."""
    size = int(np.prod(shape))
    return np.bincount(cells, weights=weights, minlength=size + 1)[:size].reshape(shape)


def _pair_lookup(rows: np.ndarray, cols: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``table[rows[i], cols[j]]`` for every (i, j), -1 where ``rows[i]`` or ``cols[j]`` is -1."""
    ok = (rows[:, None] >= 0) & (cols[None, :] >= 0)
    return np.where(ok, table[np.maximum(rows, 0)][:, np.maximum(cols, 0)], -1)


def build_cube(inputs: _data.Inputs) -> Cube:
    """Reduce validated inputs to the :class:`Cube` (one pass over each large table).

    Parameters
    ----------
    inputs : pbc_analysis.data.Inputs
        Validated inputs (their window gives the months).

    Returns
    -------
    Cube
        Series: GP referrals by specialty, then each point of delivery by specialty (the combinations with
        a count > 0: ``activity`` and ``referrals`` may be sparse, missing rows are zeros); reference rates from the optional ``reference_rates`` table.

    References
    ----------
    Breslow and Day (1987), ch. 2 (the person-years and rates indirect standardisation needs).
    """
    window = inputs.window
    months = window.months if window is not None else sorted(inputs.population["month"].unique())
    practices = pd.Index(sorted(inputs.practices["practice_code"]), name="practice_code")
    info = inputs.practices.set_index("practice_code").loc[practices].reset_index()
    P, M = len(practices), len(months)

    act = inputs.activity
    ref = inputs.referrals
    s_raw, spec_seen = inputs.factorize("activity", "specialty_code")
    spec_act = pd.Index(sorted(spec_seen))
    s_pos = spec_act.get_indexer(spec_seen)
    p_raw, pod_seen = inputs.factorize("activity", "pod")
    pod_act = pd.Index([p for p in _data.PODS if p in set(pod_seen)])
    p_pos = pod_act.get_indexer(pod_seen)
    r_raw, spec_ref_seen = inputs.factorize("referrals", "specialty_code")
    # series: referrals by specialty, then each pod by specialty (only combinations with a count > 0, so that
    # explicit zero rows and a sparse table's implicit zeros give the same series)
    ref_val = ref["referrals"].to_numpy(dtype=float)
    spec_ref_seen = pd.Index(spec_ref_seen)
    spec_ref = pd.Index(sorted(spec_ref_seen[np.bincount(r_raw, weights=ref_val, minlength=len(spec_ref_seen)) > 0]))
    r_pos = spec_ref.get_indexer(spec_ref_seen)
    act_val = act["activity"].to_numpy(dtype=float)
    pairs = np.arange(len(pod_act) * len(spec_act)).reshape(len(pod_act), len(spec_act))
    pair_axis = (_pair_lookup(p_pos, s_pos, pairs), (p_raw, s_raw), pairs.size)
    combo = np.flatnonzero(_sums(_cells(len(act), [pair_axis]), act_val, (pairs.size,)) > 0)
    series = pd.DataFrame({
        "measure": ["referrals"] * len(spec_ref) + [pod_act[c // len(spec_act)] for c in combo],
        "specialty_code": list(spec_ref) + [spec_act[c % len(spec_act)] for c in combo]})
    series = series.astype({"measure": "str", "specialty_code": "str"})
    K = len(series)
    combo_k = np.full(len(pod_act) * len(spec_act), -1)
    combo_k[combo] = len(spec_ref) + np.arange(len(combo))

    # activity: rows of a combination with no activity at all are zeros (their cost is 0 too) and go to the
    # spare cell; cost is NaN for the referral series
    def prac_month(table: str) -> list[_Axis]:
        (pl, pc), (ml, mc) = (_positions(inputs, table, c, v) for c, v in (("practice_code", practices), ("month", months)))
        return [(pl, (pc,), P), (ml, (mc,), M)]

    (pa_, ma_) = prac_month("activity")
    cells = _cells(len(act), [pa_, (_pair_lookup(p_pos, s_pos, combo_k.reshape(pairs.shape)), (p_raw, s_raw), K), ma_])
    counts = _sums(cells, act_val, (P, K, M))
    del act_val
    cost = _sums(cells, act["cost"].to_numpy(dtype=float), (P, K, M))
    cost[:, :len(spec_ref), :] = np.nan
    del cells
    # referrals
    (pr_, mr_) = prac_month("referrals")
    counts += _sums(_cells(len(ref), [pr_, (r_pos, (r_raw,), K), mr_]), ref_val, (P, K, M))

    pop = inputs.population
    (pp_, mp_) = prac_month("population")
    (al, ac), (sl, sc) = (_positions(inputs, "population", c, v) for c, v in (("age_band", _data.AGE_BANDS), ("sex", _data.SEXES)))
    cell_as = _pair_lookup(al, sl, np.arange(N_AS).reshape(len(_data.AGE_BANDS), len(_data.SEXES)))
    registered = _sums(_cells(len(pop), [pp_, mp_, (cell_as, (ac, sc), N_AS)]), pop["registered"].to_numpy(dtype=float),
                       (P, M, N_AS))

    rates = np.full((K, N_AS), np.nan)
    rr = inputs.reference_rates
    if rr is not None and len(rr):
        key = pd.MultiIndex.from_frame(series)
        k = key.get_indexer(pd.MultiIndex.from_arrays([rr["measure"], rr["specialty_code"]]))
        a = _codes(inputs, "reference_rates", "age_band", _data.AGE_BANDS) * 2 + \
            _codes(inputs, "reference_rates", "sex", _data.SEXES)
        ok = k >= 0
        rates[k[ok], a[ok]] = rr["rate"].to_numpy(dtype=float)[ok]
    return Cube(practices, info, series, list(months), counts, cost, registered, rates)



def select_measures(cube: Cube, measures: Sequence[str]) -> Cube:
    """The cube restricted to the series of ``measures`` (e.g. ``["referrals"]``).

    Parameters
    ----------
    cube : Cube
    measures : sequence of str
        Measures (``referrals`` or points of delivery) in the cube.

    Returns
    -------
    Cube

    Raises
    ------
    BenchmarkError
        Naming a measure the data do not have, and the ones they have.

    References
    ----------
    The count cube: see the module docstring.
    """
    unknown = [m for m in measures if m not in set(cube.series["measure"])]
    if unknown:
        raise BenchmarkError(f"measures {unknown} are not in the data; measures are "
                             f"{', '.join(dict.fromkeys(cube.series['measure']))}")
    k = np.flatnonzero(cube.series["measure"].isin(list(measures)).to_numpy())
    return replace(cube, series=cube.series.iloc[k].reset_index(drop=True), counts=cube.counts[:, k, :],
                   cost=cube.cost[:, k, :], reference_rates=cube.reference_rates[k, :])


def _period_index(cube: Cube, period: str, periods: Sequence[str] | None) -> tuple[list[str], np.ndarray]:
    """The period labels benchmarked (all, or those of ``periods``) and each month's position among them (-1: none)."""
    labels = period_of_months(cube.months, period)
    uniq = list(dict.fromkeys(labels))
    if periods is not None:
        unknown = [p for p in periods if p not in uniq]
        if unknown:
            raise BenchmarkError(f"periods {unknown} are not in the data ({period} labels are {', '.join(uniq)}); "
                                 "use those labels, or \"auto\" for every period of the data")
        uniq = [p for p in uniq if p in set(periods)]
    idx = pd.Index(uniq).get_indexer(labels)  # -1: month not in a chosen period
    return uniq, idx


def _sum_months(arr: np.ndarray, idx: np.ndarray, n: int, axis: int) -> np.ndarray:
    """Sum ``arr`` over months (``axis``) into ``n`` periods by ``idx`` (months with -1 dropped)."""
    arr = np.moveaxis(arr, axis, -1)
    keep = idx >= 0
    onehot = np.zeros((int(keep.sum()), n))
    onehot[np.arange(onehot.shape[0]), idx[keep]] = 1.0
    out = arr[..., keep] @ onehot
    return np.moveaxis(out, -1, axis)


