"""Completeness of the latest months: the factors (recorded / eventual) that budgets and monitoring divide by.

Hospital data (SUS) arrive about three months late, so the latest months of an extract are incomplete.
Completeness factors per month are estimated from how past months filled in across successive extracts when
such snapshots exist (:func:`completeness_from_snapshots`, the chain-ladder development ratios of claims
reserving, Mack 1993), or else from the data-quality model (observed / expected from trend and seasonality,
:func:`pbc_analysis.stages.quality.completeness`; :func:`completeness_from_model`), or are supplied
(:func:`completeness_table`). The recorded cost of an incomplete month is divided by its factor; nothing else
is filled in. :func:`completeness_for` picks the source from the stage's settings.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from pbc_analysis.core import calendar
from pbc_analysis.core.checks import check_number
from pbc_analysis.stages import quality as _quality
from pbc_analysis.stages.budgets.params import COMPLETENESS_RECENT_MONTHS

__all__ = ["completeness_for", "completeness_from_model", "completeness_from_snapshots", "completeness_table"]


def completeness_table(factors: Sequence[float], last_month: str) -> pd.DataFrame:
    """Supplied completeness factors for the months up to ``last_month``, oldest first.

    Parameters
    ----------
    factors : sequence of float
        In (0, 1], oldest month first (as ``pbc synth``'s ``completeness`` parameter).
    last_month : str
        The month of the last factor.

    Returns
    -------
    DataFrame
        ``month, lag, factor, ci_low, ci_high, source``.

    References
    ----------
    DOMAIN.md "Data lag".
    """
    f = np.asarray(factors, float)
    if f.ndim != 1 or not np.all(np.isfinite(f)) or (f <= 0).any() or (f > 1).any():
        raise ValueError(f"completeness factors must be numbers in (0, 1], oldest month first, got {list(factors)!r}")
    n = len(f)
    months = [calendar.add_months(last_month, -(n - 1 - i)) for i in range(n)]
    return pd.DataFrame({"month": months, "lag": np.arange(n - 1, -1, -1), "factor": f, "ci_low": f, "ci_high": f,
                         "source": "supplied"})


def completeness_from_snapshots(snapshots: pd.DataFrame, value: str = "value", max_lag: int | None = None) -> pd.DataFrame:
    """Completeness factors by lag from successive data extracts (how past months filled in).

    Parameters
    ----------
    snapshots : DataFrame
        ``extract`` (the latest month the extract covers), ``month`` and ``value`` (the month's total as that
        extract recorded it). A month's lag in an extract is ``extract - month`` in months.
    value : str
        The value column.
    max_lag : int, optional
        The lag from which a month counts as final (default the largest lag observed).

    Returns
    -------
    DataFrame
        ``lag, factor, months`` (months used): the factor for lag L is ``sum_m value(m, L) / sum_m final(m)``
        over months m seen at lag L whose final value is known.

    References
    ----------
    Mack T (1993), Distribution-free calculation of the standard error of chain ladder reserve estimates,
    *ASTIN Bulletin* 23:213-225 (the development ratios of claims reserving).
    """
    need = [c for c in ("extract", "month", value) if c not in snapshots.columns]
    if need:
        raise ValueError(f"snapshots lack columns {need}; they need extract, month and {value}")
    s = snapshots.copy()
    s["lag"] = s["extract"].astype(str).map(calendar.month_int) - s["month"].astype(str).map(calendar.month_int)
    if (s["lag"] < 0).any():
        raise ValueError("snapshots have months after their extract")
    L = int(s["lag"].max()) if max_lag is None else int(max_lag)
    mature = s[s["lag"] >= L].sort_values("lag").groupby("month")[value].last().rename("final")
    s = s.merge(mature, left_on="month", right_index=True, how="inner")
    s = s[s["lag"] < L]
    g = s.groupby("lag", sort=True).agg(num=(value, "sum"), den=("final", "sum"), months=("month", "nunique"))
    out = pd.DataFrame({"lag": g.index.astype(int), "factor": (g["num"] / g["den"]).to_numpy(float),
                        "months": g["months"].to_numpy(int)})
    return out.reset_index(drop=True)


def completeness_from_model(activity: pd.DataFrame, months: int = 3, recent_months: int = COMPLETENESS_RECENT_MONTHS,
                            level: float = 0.95, window_months: Sequence[str] | None = None) -> pd.DataFrame:
    """Completeness factors of the last ``months`` months from the data-quality model, capped at 1.

    Parameters
    ----------
    activity : DataFrame
        The validated ``activity`` table (all points of delivery are summed per month).
    months : int
        How many of the latest months get a factor (1 to ``recent_months``).
    recent_months : int
        The model's recent window (:func:`pbc_analysis.stages.quality.completeness`).
    level : float
        Level of the factors' intervals.
    window_months : sequence of str, optional
        The window's months: a month without rows counts 0 (``activity`` may be sparse). Default: the
        months with rows.

    Returns
    -------
    DataFrame
        ``month, lag, factor, ci_low, ci_high, source``. Used when the data carry no snapshots of past
        extracts.

    References
    ----------
    McCullagh P, Nelder JA (1989), *Generalized Linear Models*: the quasi-Poisson trend and seasonality
    model of :func:`pbc_analysis.stages.quality.completeness`.
    """
    check_number("completeness_months", months, 1, recent_months, integer=True)
    m = activity.groupby("month", observed=True, sort=True)["activity"].sum()
    m.index = m.index.astype(str)
    if window_months is not None:
        m = m.reindex(pd.Index(list(window_months), name="month"), fill_value=0)
    m = m.reset_index().assign(pod="all")
    c = _quality.completeness(m, recent_months=recent_months, level=level).tail(int(months))
    return pd.DataFrame({"month": c["month"].to_numpy(), "lag": np.arange(int(months) - 1, -1, -1),
                         "factor": np.minimum(c["completeness"].to_numpy(float), 1.0),
                         "ci_low": np.minimum(c["ci_low"].to_numpy(float), 1.0),
                         "ci_high": np.minimum(c["ci_high"].to_numpy(float), 1.0), "source": "model"})


def completeness_for(inputs: Any, completeness_factors: Sequence[float] = (), completeness_months: int = 3,
                     completeness_snapshots: str | pd.DataFrame = "", level: float = 0.95) -> pd.DataFrame:
    """The completeness table a run uses, from the budget stage's completeness settings.

    Parameters
    ----------
    inputs : pbc_analysis.data.Inputs
        Validated inputs (the window's last month is lag 0).
    completeness_factors : sequence of float
        Supplied factors, oldest first, ending at the window's last month; used if given.
    completeness_months : int
        Months the data-quality model adjusts (when neither factors nor snapshots are given).
    completeness_snapshots : str or DataFrame
        A CSV path (from the project root) or table of past extracts (:func:`completeness_from_snapshots`);
        used if given and no factors are.
    level : float
        Level of the model's intervals.

    Returns
    -------
    DataFrame
        ``month, lag, factor, ci_low, ci_high, source``.

    References
    ----------
    See the module docstring (chain ladder, Mack 1993; quasi-Poisson, McCullagh and Nelder 1989).
    """
    last = inputs.window.end_month if inputs.window is not None else str(inputs.activity["month"].max())
    if completeness_factors is not None and len(completeness_factors):
        return completeness_table(completeness_factors, last)
    snapshots = completeness_snapshots
    if isinstance(snapshots, pd.DataFrame) or (isinstance(snapshots, str) and snapshots):
        from pbc_analysis.core import paths as _paths

        snap = snapshots if isinstance(snapshots, pd.DataFrame) else pd.read_csv(
            _paths.resolve(snapshots), dtype={"extract": str, "month": str})
        by_lag = completeness_from_snapshots(snap)
        by_lag = by_lag[by_lag["factor"] < 1]
        f = by_lag.sort_values("lag", ascending=False)["factor"].to_numpy(float)
        out = completeness_table(np.minimum(f, 1.0), last)
        return out.assign(source="snapshots")
    return completeness_from_model(inputs.activity, completeness_months, level=level,
                                   window_months=inputs.window.months if inputs.window is not None else None)
