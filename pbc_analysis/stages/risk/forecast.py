"""In-year forecasting: monthly costs, the seasonal profile, run-rate forecasts, their back-test and prediction
interval, SPC signals and red / amber / green status.

See :mod:`pbc_analysis.stages.risk` ("In-year monitoring") for the rules.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from pbc_analysis.core import calendar
from pbc_analysis.core.checks import check_number
from pbc_analysis.methods import spc as _spc
from pbc_analysis.stages.risk.params import Params

_DEFAULTS = Params.defaults()   # function defaults are the stage's settings' defaults: one source

__all__ = ["backtest", "backtest_coverage", "error_model", "forecast_outturn", "monthly_costs", "month_of_year",
           "prediction_interval", "rag_status", "seasonal_profile", "spc_signals"]


def monthly_costs(cells: pd.DataFrame, practices: pd.DataFrame | None = None) -> pd.DataFrame:
    """Cost per practice and month, recorded, completeness-adjusted and at the target year's prices.

    Parameters
    ----------
    cells : DataFrame
        From :func:`pbc_analysis.stages.budgets.recost_cells`.
    practices : DataFrame, optional
        Adds each practice's ``consortium``.

    Returns
    -------
    DataFrame
        ``practice_code, month, financial_year, cost`` (recorded), ``factor`` (completeness),
        ``cost_adjusted`` and ``cost_at_target`` (adjusted, at the target year's prices): every month of
        ``cells`` for every practice (of ``practices`` when given), 0 where a practice has no cell that
        month (``activity`` may be sparse: a missing row is a zero, so each practice's series has no gaps).

    References
    ----------
    DOMAIN.md "Data lag".
    """
    g = cells.groupby(["practice_code", "month"], sort=True).agg(
        cost=("cost", "sum"), cost_adjusted=("cost_adjusted", "sum"), cost_at_target=("cost_at_target", "sum"))
    per_month = cells.groupby("month", sort=True).agg(financial_year=("financial_year", "first"),
                                                       factor=("factor", "first"))
    codes = (pd.Index(sorted(practices["practice_code"].astype(str))) if practices is not None
             else pd.Index(sorted(cells["practice_code"].astype(str).unique())))
    n_m = len(per_month)
    full = pd.MultiIndex.from_arrays([np.repeat(codes.to_numpy(), n_m), np.tile(per_month.index.to_numpy(), len(codes))],
                                     names=["practice_code", "month"])
    g = g.reindex(full, fill_value=0.0)
    g.insert(0, "financial_year", np.tile(per_month["financial_year"].to_numpy(), len(codes)))
    g.insert(2, "factor", np.tile(per_month["factor"].to_numpy(), len(codes)))
    g = g.reset_index()
    if practices is not None:
        g = g.merge(practices[["practice_code", "consortium"]].astype(str), on="practice_code", how="left")
    return g


def seasonal_profile(monthly: pd.DataFrame, years: Sequence[str], value: str = "cost_adjusted") -> pd.DataFrame:
    """Each month's share of its financial year's PCT ``value``, averaged over ``years`` (complete years).

    Parameters
    ----------
    monthly : DataFrame
        From :func:`monthly_costs`.
    years : sequence of str
        Complete financial years (12 months each).
    value : str

    Returns
    -------
    DataFrame
        ``period`` (1 = April ... 12 = March), ``share`` (summing to 1) and ``cumulative``.

    References
    ----------
    Audit Commission (2007), paras 130-134 (budgets profiled by month for monitoring).
    """
    if len(list(years)) == 0:
        raise ValueError("seasonal_profile needs at least one complete past financial year")
    sub = monthly[monthly["financial_year"].isin(list(years))]
    tot = sub.groupby(["financial_year", "month"], sort=True)[value].sum().reset_index()
    tot["period"] = month_of_year(tot["month"])
    tot["share"] = tot[value] / tot.groupby("financial_year")[value].transform("sum")
    counts = tot.groupby("financial_year")["month"].count()
    short = counts[counts != 12]
    if len(short):
        raise ValueError(f"seasonal_profile: years {list(short.index)} do not have 12 months; pass complete years")
    prof = tot.groupby("period", sort=True)["share"].mean()
    prof = prof / prof.sum()
    return pd.DataFrame({"period": prof.index.astype(int), "share": prof.to_numpy(float),
                         "cumulative": prof.cumsum().to_numpy(float)})


def month_of_year(months: pd.Series) -> np.ndarray:
    """The month's place in its financial year: 1 = April ... 12 = March.

    Parameters
    ----------
    months : Series of str
        ``YYYY-MM``.

    Returns
    -------
    numpy.ndarray of int

    References
    ----------
    NHS financial year (:mod:`pbc_analysis.core.calendar`).
    """
    codes, uniq = pd.factorize(pd.Series(months, dtype="str"))
    k = np.array([calendar.months_between(calendar.fy_start_month(calendar.fy_of_month(u)), u) for u in uniq], dtype=np.int64)
    return k[codes] if len(uniq) else np.array([], dtype=np.int64)


def forecast_outturn(monthly: pd.DataFrame, year: str, profile: pd.DataFrame, by: str = "practice_code",
                     value: str = "cost_adjusted") -> pd.DataFrame:
    """Year-to-date cost and the run-rate forecast ``F = A_k / Pi_k`` after each month k of ``year``.

    Parameters
    ----------
    monthly : DataFrame
        From :func:`monthly_costs`.
    year : str
    profile : DataFrame
        From :func:`seasonal_profile`.
    by : str
        The unit (``practice_code`` or ``consortium``).
    value : str

    Returns
    -------
    DataFrame
        ``by, financial_year, month, k, actual, ytd, profile_ytd, forecast``.

    References
    ----------
    Audit Commission (2007), paras 130-134 (forecast outturn against plan).
    """
    sub = monthly[monthly["financial_year"] == year].groupby([by, "month"], sort=True)[value].sum().reset_index()
    sub = sub.rename(columns={value: "actual"})
    sub["k"] = month_of_year(sub["month"])
    sub = sub.sort_values([by, "k"])
    sub["ytd"] = sub.groupby(by, sort=False)["actual"].cumsum()
    cum = profile.set_index("period")["cumulative"]
    sub["profile_ytd"] = sub["k"].map(cum).to_numpy(float)
    sub["forecast"] = sub["ytd"] / sub["profile_ytd"]
    sub.insert(1, "financial_year", year)
    return sub.reset_index(drop=True)


def backtest(monthly: pd.DataFrame, years: Sequence[str], by: str = "practice_code",
             value: str = "cost_adjusted") -> pd.DataFrame:
    """Run-rate forecasts in each complete past year, each with the profile of the *other* years.

    Parameters
    ----------
    monthly : DataFrame
    years : sequence of str
        At least two complete past years.
    by, value : str

    Returns
    -------
    DataFrame
        ``by, financial_year, k, forecast, outturn, residual`` (``(outturn - forecast) / sqrt(forecast)``),
        for k = 1..11 (after 12 months the outturn is known).

    References
    ----------
    Williams WH, Goodman ML (1971), A simple method for the construction of empirical confidence limits for
    economic forecasts, *JASA* 66:752-754.
    """
    years = list(years)
    if len(years) < 2:
        raise ValueError(f"backtest needs at least two complete past years, got {years}")
    frames = []
    for y in years:  # a handful of years
        prof = seasonal_profile(monthly, [o for o in years if o != y], value)
        f = forecast_outturn(monthly, y, prof, by, value)
        out = f.groupby(by)["ytd"].transform("last")
        frames.append(f.assign(outturn=out)[f["k"] < 12])
    b = pd.concat(frames, ignore_index=True)
    b["residual"] = (b["outturn"] - b["forecast"]) / np.sqrt(b["forecast"])
    return b[[by, "financial_year", "k", "forecast", "outturn", "residual"]]


def error_model(bt: pd.DataFrame, exclude_year: str | None = None) -> pd.DataFrame:
    """Mean and SD of the standardised back-test errors per month elapsed ``k`` (``k = 12``: 0 and 0).

    Parameters
    ----------
    bt : DataFrame
        From :func:`backtest`.
    exclude_year : str, optional
        A year left out.

    Returns
    -------
    DataFrame
        ``k, mean, sd, n``.

    References
    ----------
    Williams and Goodman (1971).
    """
    b = bt if exclude_year is None else bt[bt["financial_year"] != exclude_year]
    g = b.groupby("k", sort=True)["residual"].agg(["mean", "std", "count"]).rename(
        columns={"std": "sd", "count": "n"}).reset_index()
    g = pd.concat([g, pd.DataFrame({"k": [12], "mean": [0.0], "sd": [0.0], "n": [0]})], ignore_index=True)
    return g


def prediction_interval(forecast: np.ndarray, k: np.ndarray, em: pd.DataFrame, z: float,
                        extra_var: np.ndarray | float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The empirical prediction interval ``F + mu_k sqrt(F) +/- z sqrt(sigma_k^2 F + extra_var)``.

    Parameters
    ----------
    forecast : numpy.ndarray
        Run-rate forecasts F.
    k : numpy.ndarray
        Months elapsed.
    em : DataFrame
        From :func:`error_model`.
    z : float
        The normal quantile of the level.
    extra_var : array or float
        Added variance (the completeness factors' own uncertainty).

    Returns
    -------
    centre, lower, upper, sd : numpy.ndarray

    References
    ----------
    Williams and Goodman (1971); variance proportional to the forecast, as for a compound Poisson cost.
    """
    e = em.set_index("k")
    mu = e["mean"].reindex(k).to_numpy(float)
    sd = e["sd"].reindex(k).to_numpy(float)
    root = np.sqrt(np.maximum(forecast, 0.0))
    centre = forecast + mu * root
    half = z * np.sqrt((sd * root) ** 2 + extra_var)
    return centre, centre - half, centre + half, np.sqrt((sd * root) ** 2 + extra_var)


def backtest_coverage(bt: pd.DataFrame, level: float = _DEFAULTS["interval_level"]) -> pd.DataFrame:
    """Coverage of the prediction interval in each back-test year, each year's interval built from the other years' errors.

    Parameters
    ----------
    bt : DataFrame
        From :func:`backtest`.
    level : float
        The interval's level (``interval_level``).

    Returns
    -------
    DataFrame
        ``financial_year, k, n, covered, coverage, level``; per year, ``k = 0`` for all months together.

    References
    ----------
    Williams and Goodman (1971).
    """
    z = stats.norm.ppf(0.5 + level / 2)
    frames = []
    for y in sorted(bt["financial_year"].unique()):  # a handful of years
        b = bt[bt["financial_year"] == y]
        _, lo, hi, _ = prediction_interval(b["forecast"].to_numpy(float), b["k"].to_numpy(), error_model(bt, y), z)
        frames.append(b.assign(covered=(b["outturn"] >= lo) & (b["outturn"] <= hi)))
    c = pd.concat(frames, ignore_index=True)
    by_k = c.groupby(["financial_year", "k"], sort=True)["covered"].agg(["size", "sum"]).reset_index()
    by_y = c.groupby("financial_year", sort=True)["covered"].agg(["size", "sum"]).reset_index().assign(k=0)
    out = pd.concat([by_y, by_k], ignore_index=True).rename(columns={"size": "n", "sum": "covered"})
    out["coverage"] = out["covered"] / out["n"]
    out["level"] = level
    return out[["financial_year", "k", "n", "covered", "coverage", "level"]].sort_values(
        ["financial_year", "k"], ignore_index=True)


def spc_signals(monthly: pd.DataFrame, profile: pd.DataFrame, baseline: tuple[str, str], through: str,
                by: str = "practice_code", value: str = "cost_at_target", run_length: int = 7,
                trend_length: int = 7) -> pd.DataFrame:
    """XmR chart of the monthly ``value`` divided by the month's profile share (a deseasonalised run rate).

    Parameters
    ----------
    monthly : DataFrame
        From :func:`monthly_costs`.
    profile : DataFrame
        From :func:`seasonal_profile`.
    baseline : tuple of str
        First and last month of the limits' baseline.
    through : str
        The last month charted (from the first baseline month).
    by, value : str
    run_length, trend_length : int
        Making Data Count rules.

    Returns
    -------
    DataFrame
        The :func:`pbc_analysis.methods.spc.xmr` table with ``run_rate`` as the value (higher = concern).

    References
    ----------
    NHS England, *Making Data Count* (XmR charts and their rules).
    """
    sub = monthly[(monthly["month"] >= baseline[0]) & (monthly["month"] <= through)]
    sub = sub.groupby([by, "month"], sort=True)[value].sum().reset_index()
    share = profile.set_index("period")["share"]
    sub["run_rate"] = sub[value] / pd.Series(month_of_year(sub["month"]), index=sub.index).map(share).to_numpy(float)
    return _spc.xmr(sub[[by, "month", "run_rate"]], "run_rate", "month", by=by, baseline=baseline,
                    improvement="decrease", run_length=run_length, trend_length=trend_length)


def rag_status(variance: np.ndarray | pd.Series, spc_concern: np.ndarray | pd.Series, amber: float = _DEFAULTS["amber"],
               red: float = _DEFAULTS["red"]) -> np.ndarray:
    """Red / amber / green early warning.

    Red if ``variance >= red`` or (``variance >= amber`` and an SPC concern); amber if ``variance >= amber``
    or an SPC concern; green otherwise.

    Parameters
    ----------
    variance : array-like
        (forecast - budget) / budget (an underspend is never a warning here).
    spc_concern : array-like of bool
    amber, red : float
        The triggers (red at least amber).

    Returns
    -------
    numpy.ndarray of str

    References
    ----------
    Audit Commission (2007), paras 130-134 (early-warning triggers).
    """
    a = float(check_number("amber", amber, 0.0))
    r = float(check_number("red", red, 0.0))
    if r < a:
        raise ValueError(f"red ({red!r}) must be at least amber ({amber!r}): red is the stricter trigger")
    v = np.asarray(variance, float)
    c = np.asarray(spc_concern, bool)
    return np.select([(v >= r) | ((v >= a) & c), (v >= a) | c], ["red", "amber"], "green")
