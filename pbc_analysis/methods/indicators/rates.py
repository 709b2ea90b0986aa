"""Crude rates, proportions and means with their confidence limits, as PHEindicatormethods v2.1.0.

References
----------
PHEindicatormethods v2.1.0 (UKHSA): ``calculate_rate``/``phe_rate``, ``phe_proportion``, ``phe_mean``.
Breslow and Day (1987) (Byar's limits); Wilson (1927) (score interval); Student's t for means.
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np
import pandas as pd
from scipy import stats

from pbc_analysis.methods.indicators.frames import (
    By,
    _any_missing,
    _by_list,
    _counts_and_denominators,
    _finish,
    _groupby,
    _keyed,
    _limit_columns,
    _method_column,
    _numeric,
    _require,
)
from pbc_analysis.methods.indicators.limits import (
    EXACT_BELOW,
    ConfidenceArg,
    _confidence_label,
    _fmt_multiplier,
    confidence_levels,
    poisson_limits,
    wilson_lower,
    wilson_upper,
)

__all__ = ["crude_rate", "mean_ci", "proportion"]


def crude_rate(df: pd.DataFrame, x: Hashable, n: Hashable, multiplier: float = 1000,
               confidence: ConfidenceArg = 0.95, by: By = None) -> pd.DataFrame:
    """Crude rates ``x / n * multiplier`` with exact Poisson (x < 10) or Byar's (x >= 10) limits.

    As PHEindicatormethods v2.1.0 ``calculate_rate``/``phe_rate``: the limits are those of the count,
    divided by ``n`` and scaled, exact ``chi2_{(1-c)/2}(2x)/2`` and ``chi2_{c+(1-c)/2}(2x+2)/2`` below 10
    events and Byar's (Breslow and Day 1987) from 10. A missing numerator or denominator gives missing
    value and limits (``method`` is missing only when the numerator is). Note PHE's default multiplier is
    100000; here it is 1000.

    Without ``by`` the rows of ``df`` are returned with the results appended. With ``by`` (a column or
    list of columns), ``x`` and ``n`` are first summed within groups (a group with any missing ``x``
    or ``n`` has a missing sum, as PHE's grouped version) and one row per group is returned: the ``by``
    columns, ``x``, ``n``, ``value``, ``lower_<c>``/``upper_<c>`` per level, ``confidence``,
    ``statistic`` (``"rate per <multiplier>"``) and ``method`` (``"Exact"``/``"Byars"``).

    Raises ``ValueError`` for negative numerators or denominators <= 0, naming the column.

    Parameters
    ----------
    df : pandas.DataFrame
    x, n : hashable
        Columns of events and denominators.
    multiplier : float
        Rate per this many.
    confidence : float or sequence of float
    by : hashable or sequence, optional
        Group columns.

    Returns
    -------
    pandas.DataFrame

    References
    ----------
    PHEindicatormethods v2.1.0 ``calculate_rate``; Breslow and Day (1987).
    """
    levels = confidence_levels(confidence)
    out, xv, nv = _counts_and_denominators(df, x, n, by)
    lowers, uppers = zip(*(poisson_limits(xv, c) for c in levels))
    scale = multiplier / nv
    result = {"value": xv * scale,
              **_limit_columns(levels, [lo * scale for lo in lowers], [hi * scale for hi in uppers])}
    for k, v in result.items():
        out[k] = v
    out["confidence"] = _confidence_label(levels)
    out["statistic"] = f"rate per {_fmt_multiplier(multiplier)}"
    out["method"] = _method_column(np.where(xv < EXACT_BELOW, "Exact", "Byars"), np.isnan(xv), out.index)
    return out


def proportion(df: pd.DataFrame, x: Hashable, n: Hashable, multiplier: float = 1,
               confidence: ConfidenceArg = 0.95, by: By = None) -> pd.DataFrame:
    """Proportions ``x / n * multiplier`` with Wilson score limits (Wilson 1927; Newcombe 1998).

    As PHEindicatormethods v2.1.0 ``phe_proportion``: limits
    ``(2x + z^2 -/+ z sqrt(z^2 + 4x(1 - x/n))) / (2(n + z^2)) * multiplier``. Missing numerator or
    denominator gives missing value and limits. ``statistic`` is ``"percentage"`` for a multiplier of
    100, else ``"proportion of <multiplier>"``; ``method`` is ``"Wilson"``. ``by`` sums within groups
    first (missing if any member is missing), as for :func:`crude_rate`; output columns likewise.

    Raises ``ValueError`` for negative numerators, denominators <= 0 or numerators above their
    denominator, naming the columns.

    Parameters
    ----------
    df : pandas.DataFrame
    x, n : hashable
        Columns of numerators and denominators.
    multiplier : float
        1 for a proportion, 100 for a percentage.
    confidence : float or sequence of float
    by : hashable or sequence, optional
        Group columns.

    Returns
    -------
    pandas.DataFrame

    References
    ----------
    PHEindicatormethods v2.1.0 ``phe_proportion``; Wilson (1927); Newcombe (1998), Stat Med 17:857-872.
    """
    levels = confidence_levels(confidence)
    out, xv, nv = _counts_and_denominators(df, x, n, by)
    bad = xv > nv
    if bad.any():
        raise ValueError(f"column {x!r} (numerator) exceeds column {n!r} (denominator) in {int(bad.sum())} "
                         f"row(s){' after summing by group' if _by_list(by) else ''}; a proportion needs x <= n")
    result = {"value": xv / nv * multiplier,
              **_limit_columns(levels, [wilson_lower(xv, nv, c) * multiplier for c in levels],
                               [wilson_upper(xv, nv, c) * multiplier for c in levels])}
    for k, v in result.items():
        out[k] = v
    out["confidence"] = _confidence_label(levels)
    out["statistic"] = "percentage" if float(multiplier) == 100 else f"proportion of {_fmt_multiplier(multiplier)}"
    out["method"] = "Wilson"
    return out


def mean_ci(df: pd.DataFrame, x: Hashable, by: By = None, confidence: ConfidenceArg = 0.95) -> pd.DataFrame:
    """Means with Student's t limits, as PHEindicatormethods v2.1.0 ``phe_mean``.

    ``value = sum / k``, limits ``value -/+ |t_{(1-c)/2, k-1}| * s / sqrt(k)`` where ``k`` is the number
    of rows and ``s`` the sample standard deviation (``ddof = 1``). As in PHE, a group with a missing
    value has missing sum, standard deviation, mean and limits (``value_count`` still counts its rows).

    Returns one row per ``by`` group (one row overall without ``by``): the ``by`` columns,
    ``value_sum``, ``value_count``, ``stdev``, ``value``, ``lower_<c>``/``upper_<c>``, ``confidence``,
    ``statistic`` (``"mean"``) and ``method`` (``"Student's t-distribution"``).

    Parameters
    ----------
    df : pandas.DataFrame
    x : hashable
        Column of values.
    by : hashable or sequence, optional
        Group columns.
    confidence : float or sequence of float

    Returns
    -------
    pandas.DataFrame

    References
    ----------
    PHEindicatormethods v2.1.0 ``phe_mean``.
    """
    levels = confidence_levels(confidence)
    _require(df, [x])
    frame, keys_used, keys = _keyed(df, by)
    frame["__v"] = _numeric(df, x, role="values")
    g = _groupby(frame, keys_used)["__v"]
    out = pd.DataFrame({"value_sum": g.sum(), "value_count": g.size(), "stdev": g.std(ddof=1)})
    out.loc[_any_missing(frame, keys_used, ["__v"])["__v"].to_numpy(), ["value_sum", "stdev"]] = np.nan
    k = out["value_count"].to_numpy(dtype=float)
    out["value"] = out["value_sum"].to_numpy() / k
    se = out["stdev"].to_numpy() / np.sqrt(k)
    v = out["value"].to_numpy()
    with np.errstate(invalid="ignore"):
        half = [np.abs(stats.t.ppf((1 - c) / 2, k - 1)) * se for c in levels]
    for name, col in _limit_columns(levels, [v - h for h in half], [v + h for h in half]).items():
        out[name] = col
    out["confidence"] = _confidence_label(levels)
    out["statistic"] = "mean"
    out["method"] = "Student's t-distribution"
    return _finish(out, keys)
