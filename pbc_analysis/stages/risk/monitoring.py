"""In-year monitoring of the target year against its first-year budgets, for practices and consortia.

See :mod:`pbc_analysis.stages.risk` ("In-year monitoring") for the rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from pbc_analysis.core import calendar
from pbc_analysis.core.params import AUTO
from pbc_analysis.stages import budgets as _bud
from pbc_analysis.stages.risk.forecast import (
    backtest,
    backtest_coverage,
    error_model,
    forecast_outturn,
    month_of_year,
    monthly_costs,
    prediction_interval,
    rag_status,
    seasonal_profile,
    spc_signals,
)
from pbc_analysis.stages.risk.params import Params

__all__ = ["Monitoring", "monitor"]


@dataclass
class Monitoring:
    """In-year monitoring of the target year (:func:`monitor`); ``available`` False (with ``note``) when the data hold no month of it."""

    available: bool
    note: str
    monthly: pd.DataFrame
    consortium: pd.DataFrame
    status: pd.DataFrame
    consortium_status: pd.DataFrame
    profile: pd.DataFrame
    completeness: pd.DataFrame
    backtest: pd.DataFrame
    coverage: pd.DataFrame
    errors: pd.DataFrame
    spc: pd.DataFrame
    settings: dict[str, Any] = field(default_factory=dict)
    #: the practices' XmR chart (for :func:`pbc_analysis.publish.figures.plot_spc`)
    spc_practice: pd.DataFrame | None = field(default=None, repr=False)


def _monitor_unit(monthly: pd.DataFrame, year: str, profile: pd.DataFrame, em: pd.DataFrame, budget: pd.Series,
                  by: str, z: float, comp_se: pd.Series, concern: pd.DataFrame, amber: float, red: float) -> pd.DataFrame:
    """Forecast, interval, variance and status of each unit (practice or consortium) after each month of ``year``."""
    f = forecast_outturn(monthly, year, profile, by)
    # completeness uncertainty: adjusted months' cost x relative SE of their factor, accumulated
    adj = monthly[monthly["financial_year"] == year].groupby([by, "month"], sort=True)["cost_adjusted"].sum()
    rel = adj.index.get_level_values("month").map(comp_se).to_numpy(float)
    ev = pd.Series((adj.to_numpy(float) * np.nan_to_num(rel)) ** 2, index=adj.index).groupby(level=by).cumsum()
    ev = ev.reindex(pd.MultiIndex.from_frame(f[[by, "month"]])).to_numpy(float) / f["profile_ytd"].to_numpy() ** 2
    centre, lo, hi, sd = prediction_interval(f["forecast"].to_numpy(float), f["k"].to_numpy(), em, z, ev)
    f["forecast_centre"] = centre
    f["lower"], f["upper"] = lo, hi
    f["budget"] = f[by].map(budget).to_numpy(float)
    f["profile_budget_ytd"] = f["budget"] * f["profile_ytd"]
    f["ytd_variance"] = (f["ytd"] - f["profile_budget_ytd"]) / f["profile_budget_ytd"]
    f["variance"] = (f["forecast_centre"] - f["budget"]) / f["budget"]
    with np.errstate(divide="ignore", invalid="ignore"):
        f["probability_overspend"] = np.where(sd > 0, stats.norm.sf((f["budget"] - centre) / np.where(sd > 0, sd, 1)),
                                              (centre > f["budget"]).astype(float))
    c = concern.set_index([by, "month"])["concern"]
    f["spc_concern"] = c.reindex(pd.MultiIndex.from_frame(f[[by, "month"]])).fillna(False).to_numpy(bool)
    f["spc_concern_to_date"] = f.groupby(by, sort=False)["spc_concern"].cummax()
    f["status"] = rag_status(f["variance"], f["spc_concern_to_date"], amber, red)
    return f


def _reporting_months(monthly: pd.DataFrame, year: str, as_at: str | None) -> list[str]:
    """The months of ``year`` in the data up to ``as_at`` (None or ``"auto"``: all of them)."""
    months_y = sorted(monthly.loc[monthly["financial_year"] == year, "month"].unique())
    if not months_y or as_at is None or as_at == AUTO:
        return months_y
    if as_at not in set(months_y):
        raise ValueError(f"as_at {as_at!r} is not a month of {year} in the data (they run {months_y[0]} to "
                         f"{months_y[-1]}); set one of them, or \"auto\" for the latest")
    return [m for m in months_y if m <= as_at]


def _completeness_se(comp: pd.DataFrame) -> pd.Series:
    """Relative standard error of each month's completeness factor, from its 95% interval (log scale)."""
    if not ({"ci_low", "ci_high"} <= set(comp.columns) and len(comp)):
        return pd.Series(dtype=float)
    zc = stats.norm.ppf(0.975)
    se = (np.log(comp["ci_high"].astype(float)) - np.log(comp["ci_low"].astype(float))) / (2 * zc)
    return pd.Series(se.to_numpy(float), index=comp["month"].astype(str))


def monitor(inputs: Any, res: _bud.Result, params: Params, as_at: str | None = None, run_length: int = 7,
            trend_length: int = 7) -> Monitoring:
    """Month-by-month monitoring of ``res``'s target year against its first-year budgets (module docstring).

    Parameters
    ----------
    inputs : pbc_analysis.data.Inputs
        Validated inputs (``practices``).
    res : pbc_analysis.stages.budgets.Result
        The budgets, with the completeness table their cells were adjusted by (``month, factor`` and
        optionally ``ci_low, ci_high``).
    params : Params
        ``interval_level, amber, red``.
    as_at : str, optional
        The month whose status is reported (None or ``"auto"``: the latest month of the target year in the
        data; the budget stage's ``as_at``).
    run_length, trend_length : int
        The SPC rules' run and trend lengths (Making Data Count: 7).

    Returns
    -------
    Monitoring
        Not ``available`` when the data hold no month of the target year.

    Raises
    ------
    ValueError
        When ``as_at`` is not a month of the target year in the data, or fewer than two complete past years
        (all 12 months in the data, none adjusted for completeness) give the profile and the back-test.

    References
    ----------
    Williams and Goodman (1971), *JASA* 66:752 (empirical prediction intervals); NHS England, *Making Data
    Count*; Audit Commission (2007), paras 130-134 (early warning).
    """
    level, amber, red = params.interval_level, params.amber, params.red
    year = res.settings["target_year"]
    monthly = monthly_costs(res.cells, inputs.practices)
    comp = res.completeness
    adjusted_months = set(comp["month"].astype(str))
    months_y = _reporting_months(monthly, year, as_at)
    if not months_y:
        empty = pd.DataFrame()
        return Monitoring(False, f"The data hold no month of {year}, so there is nothing to monitor yet.", empty, empty,
                          empty, empty, empty, comp, empty, empty, empty, empty, {"target_year": year})
    mcount = monthly.groupby("financial_year")["month"].nunique()
    complete = [y for y, n in mcount.items() if n == 12 and y < year and not (set(calendar.fy_months(y)) & adjusted_months)]
    if len(complete) < 2:
        raise ValueError(f"monitoring needs at least two complete financial years before {year} for the profile "
                         f"and the back-test; the data have {complete}")
    last = months_y[-1]
    monthly = monthly[monthly["month"] <= last]
    z = stats.norm.ppf(0.5 + level / 2)
    profile = seasonal_profile(monthly, complete)
    bt = backtest(monthly, complete)
    em = error_model(bt)
    comp_se = _completeness_se(comp)
    base = res.settings["base_years"]
    baseline = (calendar.fy_start_month(base[0]), calendar.fy_end_month(base[-1]))
    sp = spc_signals(monthly, profile, baseline, last, run_length=run_length, trend_length=trend_length)
    concern = sp.assign(concern=sp["special_cause"].eq("concern"))[["practice_code", "month", "concern"]]
    budget = res.statement.set_index("practice_code")["budget"]
    prac = _monitor_unit(monthly, year, profile, em, budget, "practice_code", z, comp_se, concern, amber, red)
    prac = prac.merge(inputs.practices[["practice_code", "consortium"]].astype(str), on="practice_code", how="left")
    # consortia: sums of practices
    cons_budget = res.statement.groupby("consortium")["budget"].sum()
    spc_c = spc_signals(monthly, profile, baseline, last, by="consortium", run_length=run_length, trend_length=trend_length)
    concern_c = spc_c.assign(concern=spc_c["special_cause"].eq("concern"))[["consortium", "month", "concern"]]
    cons = _monitor_unit(monthly, year, profile, em, cons_budget, "consortium", z, comp_se, concern_c, amber, red)
    pct = cons.groupby("month", sort=True)[["ytd", "profile_budget_ytd", "forecast_centre", "budget"]].sum()
    settings = {"target_year": year, "as_at": last, "months_elapsed": int(month_of_year(pd.Series([last]))[0]),
                "level": level, "amber": amber, "red": red, "profile_years": complete, "backtest_years": complete,
                "adjusted_months": sorted(m for m in adjusted_months if m in set(months_y)),
                "pct_forecast": float(pct["forecast_centre"].iloc[-1]), "pct_budget": float(pct["budget"].iloc[-1])}
    spc_tab = pd.concat([sp.assign(unit="practice").rename(columns={"practice_code": "code"}),
                         spc_c.assign(unit="consortium").rename(columns={"consortium": "code"})], ignore_index=True)
    return Monitoring(True, "", prac, cons, prac[prac["month"] == last].reset_index(drop=True),
                      cons[cons["month"] == last].reset_index(drop=True), profile, comp, bt, backtest_coverage(bt, level),
                      em, spc_tab, settings, sp)
