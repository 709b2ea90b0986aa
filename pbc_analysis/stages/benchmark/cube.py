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


def _codes(inputs: _data.Inputs, table: str, column: str, categories: Sequence[str] | pd.Index) -> np.ndarray:
    """Integer positions of ``inputs.<table>[column]`` in ``categories`` (validated inputs: all known)."""
    codes, uniques = inputs.factorize(table, column)
    pos = pd.Index(categories).get_indexer(pd.Index(uniques))
    if (pos < 0).any():  # cannot happen after validation; a guard, not a filter
        raise BenchmarkError(f"{table}.{column}: values not in the reference list: {list(pd.Index(uniques)[pos < 0][:5])}")
    return pos[codes]


def build_cube(inputs: _data.Inputs) -> Cube:
    """Reduce validated inputs to the :class:`Cube` (one pass over each large table).

    Parameters
    ----------
    inputs : pbc_analysis.data.Inputs
        Validated inputs (their window gives the months).

    Returns
    -------
    Cube
        Series: GP referrals by specialty, then each point of delivery by specialty (the combinations that
        occur); reference rates from the optional ``reference_rates`` table.

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
    s_codes = spec_act.get_indexer(spec_seen)[s_raw]
    p_raw, pod_seen = inputs.factorize("activity", "pod")
    pod_act = pd.Index([p for p in _data.PODS if p in set(pod_seen)])
    p_codes = pod_act.get_indexer(pod_seen)[p_raw]
    r_raw, spec_ref_seen = inputs.factorize("referrals", "specialty_code")
    spec_ref = pd.Index(sorted(spec_ref_seen))
    r_codes = spec_ref.get_indexer(spec_ref_seen)[r_raw]
    # series: referrals by specialty, then each pod by specialty (only combinations that occur)
    combo = np.flatnonzero(np.bincount(p_codes * len(spec_act) + s_codes, minlength=len(pod_act) * len(spec_act)))
    series = pd.DataFrame({
        "measure": ["referrals"] * len(spec_ref) + [pod_act[c // len(spec_act)] for c in combo],
        "specialty_code": list(spec_ref) + [spec_act[c % len(spec_act)] for c in combo]})
    series = series.astype({"measure": "str", "specialty_code": "str"})
    K = len(series)
    combo_k = np.full(len(pod_act) * len(spec_act), -1)
    combo_k[combo] = len(spec_ref) + np.arange(len(combo))

    counts = np.zeros((P, K, M))
    cost = np.full((P, K, M), np.nan)
    cost[:, len(spec_ref):, :] = 0.0
    # activity
    pi = _codes(inputs, "activity", "practice_code", practices)
    mi = _codes(inputs, "activity", "month", months)
    ki = combo_k[p_codes * len(spec_act) + s_codes]
    flat = (pi * K + ki) * M + mi
    counts.reshape(-1)[:] += np.bincount(flat, weights=act["activity"].to_numpy(dtype=float), minlength=P * K * M)
    cost_flat = np.bincount(flat, weights=act["cost"].to_numpy(dtype=float), minlength=P * K * M).reshape(P, K, M)
    cost[:, len(spec_ref):, :] = cost_flat[:, len(spec_ref):, :]
    # referrals
    pi = _codes(inputs, "referrals", "practice_code", practices)
    mi = _codes(inputs, "referrals", "month", months)
    ki = r_codes
    flat = (pi * K + ki) * M + mi
    counts.reshape(-1)[:] += np.bincount(flat, weights=ref["referrals"].to_numpy(dtype=float), minlength=P * K * M)

    pop = inputs.population
    pi = _codes(inputs, "population", "practice_code", practices)
    mi = _codes(inputs, "population", "month", months)
    ai = _codes(inputs, "population", "age_band", _data.AGE_BANDS) * 2 + _codes(inputs, "population", "sex", _data.SEXES)
    registered = np.bincount((pi * M + mi) * N_AS + ai, weights=pop["registered"].to_numpy(dtype=float),
                             minlength=P * M * N_AS).reshape(P, M, N_AS)

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


