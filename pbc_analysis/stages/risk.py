"""Financial risk of indicative budgets: the high-cost risk pool, its adequacy, and in-year monitoring.

Small practices face large swings from a few very expensive patients, and the Audit Commission (2007,
*Putting commissioning into practice*, paras 130-134) found few PCTs with early-warning arrangements
and most practices unaware of how risk was shared. The rules here are those it describes.

Risk pool (:func:`pool_charges`, :func:`apply_top_slice`)
    For each patient-year of the ``high_cost_patients`` table, cost above ``threshold`` (default GBP
    15,000; typically 10,000 to 20,000) is charged to the pool and the rest to the practice. The pool is
    funded by a contingency top-slice of the envelope (typically 3 to 5%): each practice's net budget is
    ``budget x (1 - top_slice)`` in whole pence (largest remainder), and the pool is what is left, so
    net budgets + pool = envelope exactly. The table only holds patients above a reporting floor, so the
    threshold must not be below that floor (``reporting_floor``).

Pool adequacy (:func:`simulate_pool`, :func:`exhaustion_probability`, :func:`smallest_top_slice`)
    The year's pool charge is a compound Poisson sum (the collective risk model: Klugman, Panjer and
    Willmot, *Loss Models*, ch. 9): ``S = sum_{i=1}^{N} X_i`` with ``N ~ Poisson(lambda)`` patients above
    the threshold and ``X_i`` their excess costs, resampled with replacement from the base years' patients
    (a nonparametric bootstrap of the severity, Efron and Tibshirani 1993) after re-pricing each year's
    costs to the target year (the PCT's tariff index of that year) and scaling ``lambda`` (the base
    years' mean count) by list growth. P(pool exhausted) = P(S > pool) over ``n_sims`` draws from
    ``numpy.random.default_rng(seed)``; the smallest top-slice that keeps it at or below
    ``max_probability`` is the ``1 - max_probability`` quantile of S (the smallest simulated value with
    at most that share of draws above it) over the envelope.

In-year monitoring (:func:`monitor`)
    * Seasonal profile: each month's share of its financial year's PCT cost, averaged over complete past
      years (:func:`seasonal_profile`); a practice's profiled budget to month k is ``budget x Pi_k``, the
      cumulative share.
    * Completeness: hospital data (SUS) arrive about three months late, so the latest months are
      incomplete. Completeness factors per month (recorded / eventual) are estimated from how past months
      filled in across successive extracts when such snapshots exist (:func:`completeness_from_snapshots`,
      the chain-ladder development ratios of claims reserving, Mack 1993), or else from the data-quality
      model (observed / expected from trend and seasonality, :func:`pbc_analysis.stages.quality.completeness`;
      :func:`completeness_from_model`), or are supplied (:func:`completeness_table`). The recorded cost of
      an incomplete month is divided by its factor; nothing else is filled in.
    * Forecast outturn by the run rate on the profile, ``F = A_k / Pi_k`` (A_k the completeness-adjusted
      year-to-date cost), with an empirical prediction interval (Williams and Goodman 1971, *JASA* 66:752):
      standardised errors ``r = (O - F) / sqrt(F)`` of the same forecast in past complete years (O the
      actual outturn; variance proportional to the forecast, as for a compound Poisson cost) give a mean
      ``mu_k`` and SD ``sigma_k`` per month elapsed, and the interval is ``F + mu_k sqrt(F) +/- z sigma_k
      sqrt(F)``, widened by the completeness factors' own uncertainty. :func:`backtest` checks its
      coverage year by year, with each year's interval built from the other years only.
    * Early warning: forecast variance ``(F - budget) / budget`` at or above ``amber`` (default 2%) or
      ``red`` (5%); an SPC signal of concern (:func:`pbc_analysis.methods.spc.xmr`, Making Data Count rules, higher
      is worse) on the monthly cost at target-year prices divided by its month's profile share
      (an annualised, deseasonalised run rate), with limits from the base years. Status: **red** if the
      variance is at or above ``red``, or at or above ``amber`` with an SPC concern; **amber** if the
      variance is at or above ``amber`` or SPC shows concern; **green** otherwise. The same rules are
      applied to consortia (sums of their practices; the interval assumes practices' errors independent).

Monitoring is on gross cost against the gross budget: the pool's charges are known per patient-year
only, so the year-end settlement against net budgets is the pool table's job, not the monthly one's.
Everything is vectorised; loops run over years, months elapsed or simulation chunks only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from pbc_analysis.stages import budgets as _bud
from pbc_analysis.stages import quality as _quality
from pbc_analysis.methods import spc as _spc

__all__ = [
    "Monitoring",
    "RiskResult",
    "adequacy_curve",
    "apply_top_slice",
    "assess_pool",
    "backtest",
    "completeness_from_model",
    "completeness_for",
    "describe",
    "completeness_from_snapshots",
    "completeness_table",
    "error_model",
    "excess_costs",
    "exhaustion_probability",
    "forecast_outturn",
    "headline",
    "monitor",
    "monitoring_headline",
    "monthly_costs",
    "pool_charges",
    "rag_status",
    "result_tables",
    "seasonal_profile",
    "simulate_pool",
    "smallest_top_slice",
    "spc_signals",
]

_check_fy = _bud._check_fy
_number = _bud._number
_choice = _bud._choice


def _check_top_slice(top_slice: Any) -> float:
    return _bud._number(top_slice, "top_slice", 0.0, 1.0, high_open=True,
                        fix="a share of the envelope in [0, 1), e.g. 0.03 to 0.05")


def _check_threshold(threshold: Any, reporting_floor: float | None) -> float:
    t = _bud._number(threshold, "threshold", 0.0, low_open=True, fix="GBP per patient per year, e.g. 15000")
    if reporting_floor is not None and t < float(reporting_floor):
        raise ValueError(f"threshold {threshold!r} is below the high_cost_patients reporting floor "
                         f"{reporting_floor!r}: patients between them are missing from the table, so the pool's "
                         "charges would be understated; use a threshold at or above the floor")
    return t


def _month_add(month: str, k: int) -> str:
    m = int(month[:4]) * 12 + int(month[5:7]) - 1 + int(k)
    return f"{m // 12:04d}-{m % 12 + 1:02d}"


# --------------------------------------------------------------------------------------------------
# the risk pool
# --------------------------------------------------------------------------------------------------

def pool_charges(high_cost_patients: pd.DataFrame, threshold: float = 15000.0, years: Sequence[str] | None = None,
                 practices: Sequence[str] | None = None, reporting_floor: float | None = None,
                 inflation: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Per practice and financial year: ``patients`` above the threshold, their ``cost``, the
    ``pool_charge`` (the part above ``threshold``) and ``practice_charge`` (``threshold`` per patient).

    ``inflation`` (financial year -> factor) re-prices each year's costs first (e.g. to the target year's
    tariff). ``practices`` adds zero rows for practices with no patient above the threshold. Patient-level
    rows never leave this function.
    """
    t = _check_threshold(threshold, reporting_floor)
    hc = high_cost_patients
    if years is not None:
        hc = hc[hc["financial_year"].isin(list(years))]
    cost = hc["cost"].to_numpy(float)
    if inflation is not None:
        cost = cost * hc["financial_year"].map(dict(inflation)).astype(float).to_numpy()
    above = cost > t
    frame = pd.DataFrame({"practice_code": hc["practice_code"].astype(str).to_numpy(),
                          "financial_year": hc["financial_year"].astype(str).to_numpy(),
                          "patients": above.astype(np.int64), "cost": np.where(above, cost, 0.0),
                          "pool_charge": np.where(above, cost - t, 0.0),
                          "practice_charge": np.where(above, t, 0.0)})
    g = frame.groupby(["practice_code", "financial_year"], sort=True).sum().reset_index()
    if practices is not None:
        yrs = list(years) if years is not None else sorted(frame["financial_year"].unique())
        full = pd.MultiIndex.from_product([sorted(map(str, practices)), yrs], names=["practice_code", "financial_year"])
        g = g.set_index(["practice_code", "financial_year"]).reindex(full, fill_value=0).reset_index()
        g["patients"] = g["patients"].astype("int64")
    return g


def excess_costs(high_cost_patients: pd.DataFrame, threshold: float, years: Sequence[str],
                 inflation: Mapping[str, float] | None = None) -> tuple[np.ndarray, float]:
    """The excess over ``threshold`` of every patient-year above it in ``years`` (re-priced by
    ``inflation``), and the mean number of such patients per year."""
    hc = high_cost_patients[high_cost_patients["financial_year"].isin(list(years))]
    cost = hc["cost"].to_numpy(float)
    if inflation is not None:
        cost = cost * hc["financial_year"].map(dict(inflation)).astype(float).to_numpy()
    x = cost[cost > threshold] - threshold
    return x, len(x) / max(len(list(years)), 1)


def simulate_pool(excess: np.ndarray, expected_count: float, n_sims: int = 10000, seed: int = 20070401,
                  max_draws: int = 2_000_000) -> np.ndarray:
    """Simulated annual pool charges ``S = sum_{i<=N} X_i``, ``N ~ Poisson(expected_count)``, ``X_i``
    drawn with replacement from ``excess`` (``numpy.random.default_rng(seed)``; chunks of at most
    ``max_draws`` patient draws keep memory flat). Returns ``n_sims`` totals."""
    x = np.asarray(excess, float)
    lam = _number(expected_count, "expected_count", 0.0)
    if isinstance(n_sims, bool) or not isinstance(n_sims, (int, np.integer)) or n_sims < 100:
        raise ValueError(f"n_sims must be a whole number >= 100, got {n_sims!r}")
    if lam > 0 and len(x) == 0:
        raise ValueError("expected_count > 0 but there are no excess costs to resample")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative whole number (numpy default_rng), got {seed!r}")
    rng = np.random.default_rng(seed)
    counts = rng.poisson(lam, size=int(n_sims))
    totals = np.zeros(int(n_sims))
    per = max(1, int(max_draws // max(lam, 1.0)))
    for start in range(0, int(n_sims), per):  # chunks of simulations, not rows
        c = counts[start:start + per]
        draws = x[rng.integers(0, len(x), size=int(c.sum()))] if len(x) else np.zeros(0)
        sim = np.repeat(np.arange(len(c)), c)
        totals[start:start + len(c)] = np.bincount(sim, weights=draws, minlength=len(c))
    return totals


def exhaustion_probability(totals: np.ndarray, pool: float) -> float:
    """Share of simulated years whose pool charge exceeds ``pool`` (strictly)."""
    return float(np.mean(np.asarray(totals, float) > float(pool)))


def smallest_top_slice(totals: np.ndarray, envelope: float, max_probability: float = 0.05) -> float:
    """The smallest top-slice whose pool (``top_slice x envelope``) is exceeded in at most
    ``max_probability`` of the simulated years: the ``ceil((1 - max_probability) n)``-th smallest total
    over the envelope (may be 1 or more if the pool cannot be made adequate)."""
    a = _number(max_probability, "max_probability", 0.0, 1.0, low_open=True, high_open=True,
                fix="e.g. 0.05 for a 1 in 20 chance of exhausting the pool")
    E = _number(envelope, "envelope", 0.0, low_open=True)
    s = np.sort(np.asarray(totals, float))
    n = len(s)
    k = int(np.ceil((1 - a) * n)) - 1  # at most floor(a n) draws lie above s[k]
    k = min(max(k, 0), n - 1)
    return float(s[k] / E)


def adequacy_curve(totals: np.ndarray, envelope: float, top_slices: Sequence[float] | None = None) -> pd.DataFrame:
    """P(pool exhausted) for a grid of top-slices: ``top_slice, pool, probability_exhausted``."""
    E = _number(envelope, "envelope", 0.0, low_open=True)
    grid = np.asarray(top_slices if top_slices is not None else np.round(np.arange(0.0, 0.2001, 0.0025), 4), float)
    s = np.sort(np.asarray(totals, float))
    above = len(s) - np.searchsorted(s, grid * E, side="right")
    return pd.DataFrame({"top_slice": grid, "pool": grid * E, "probability_exhausted": above / len(s)})


def apply_top_slice(budgets: pd.DataFrame, top_slice: float, envelope: float | None = None) -> tuple[pd.DataFrame, float]:
    """Net budgets after the contingency top-slice: ``practice_code, budget, top_slice_contribution,
    net_budget`` (whole pence; net budgets are ``(1 - top_slice) x`` the envelope split in proportion to
    the budgets by largest remainder) and the pool, so that net budgets + pool = envelope exactly."""
    ts = _check_top_slice(top_slice)
    b = budgets["budget"].to_numpy(float)
    E = float(np.round(b.sum(), 2)) if envelope is None else float(envelope)
    net_total = np.floor(round(E * 100) * (1 - ts) + 0.5) / 100
    net = _bud.allocate_pence(b, net_total)
    out = pd.DataFrame({"practice_code": budgets["practice_code"].astype(str).to_numpy(), "budget": b,
                        "net_budget": net / 100.0})
    out["top_slice_contribution"] = np.round(out["budget"] - out["net_budget"], 2)
    pool = (round(E * 100) - int(net.sum())) / 100.0
    return out[["practice_code", "budget", "top_slice_contribution", "net_budget"]], pool


@dataclass
class RiskResult:
    """The risk pool's charges, simulation and adequacy (:func:`assess_pool`)."""

    charges: pd.DataFrame
    years: pd.DataFrame
    adequacy: pd.DataFrame
    net_budgets: pd.DataFrame
    totals: np.ndarray = field(repr=False)
    settings: dict[str, Any] = field(default_factory=dict)


def _inflation(cells: pd.DataFrame) -> dict[str, float]:
    g = cells.groupby("financial_year", sort=True)[["cost_adjusted", "cost_at_target"]].sum()
    return (g["cost_at_target"] / g["cost_adjusted"]).to_dict()


def assess_pool(inputs: Any, res: _bud.BudgetResult, threshold: float = 15000.0, top_slice: float = 0.03,
                max_probability: float = 0.05, n_sims: int = 10000, seed: int = 20070401,
                reporting_floor: float | None = None) -> RiskResult:
    """The risk pool for ``res``'s target year: charges by practice and year (re-priced to the target
    year), the simulated pool charge from the base years' patients, P(exhausted) at ``top_slice``, the
    smallest adequate top-slice, and the actual charge of the target year when the data hold it."""
    t = _check_threshold(threshold, reporting_floor)
    ts = _check_top_slice(top_slice)
    st = res.settings
    infl = _inflation(res.cells)
    years = sorted(inputs.high_cost_patients["financial_year"].astype(str).unique())
    prac = sorted(inputs.practices["practice_code"].astype(str))
    charges = pool_charges(inputs.high_cost_patients, t, years, prac, reporting_floor,
                           {y: infl.get(y, np.nan) for y in years})
    if charges[["cost", "pool_charge"]].isna().any().any():
        raise ValueError("high_cost_patients has years without activity to re-price them from")
    x, n_per_year = excess_costs(inputs.high_cost_patients, t, st["base_years"], infl)
    growth = float(res.historic["list_target"].sum() / res.historic["list_base"].sum())
    lam = n_per_year * growth
    totals = simulate_pool(x, lam, n_sims, seed)
    E = float(st["envelope"])
    net, pool = apply_top_slice(res.statement[["practice_code", "budget"]], ts, E)
    cost_by_year = res.cells.groupby("financial_year")["cost_at_target"].sum()
    yr = charges.groupby("financial_year", sort=True)[["patients", "cost", "pool_charge"]].sum().reset_index()
    yr["activity_cost_at_target"] = yr["financial_year"].map(cost_by_year)
    yr["pool_share_of_cost"] = yr["pool_charge"] / yr["activity_cost_at_target"]
    yr["role"] = np.select([yr["financial_year"].isin(st["base_years"]), yr["financial_year"] == st["target_year"]],
                           ["base", "target"], "other")
    actual = yr.loc[yr["financial_year"] == st["target_year"], "pool_charge"]
    settings = {"threshold": t, "top_slice": ts, "pool": pool, "max_probability": float(max_probability),
                "n_sims": int(n_sims), "seed": int(seed), "expected_patients": lam, "list_growth": growth,
                "excess_resampled": int(len(x)), "mean_excess": float(x.mean()) if len(x) else 0.0,
                "expected_charge": lam * (float(x.mean()) if len(x) else 0.0),
                "sd_charge_analytic": float(np.sqrt(lam * np.mean(x ** 2))) if len(x) else 0.0,
                "probability_exhausted": exhaustion_probability(totals, pool),
                "smallest_top_slice": smallest_top_slice(totals, E, max_probability),
                "actual_charge_target_year": float(actual.iloc[0]) if len(actual) else None,
                "actual_percentile": float(np.mean(totals <= actual.iloc[0])) if len(actual) else None,
                "envelope": E, "target_year": st["target_year"], "base_years": list(st["base_years"])}
    return RiskResult(charges, yr, adequacy_curve(totals, E), net, totals, settings)


# --------------------------------------------------------------------------------------------------
# completeness of the latest months
# --------------------------------------------------------------------------------------------------

def completeness_table(factors: Sequence[float], last_month: str) -> pd.DataFrame:
    """Supplied completeness factors for the months up to ``last_month``, oldest first (as ``pbc synth``'s
    ``completeness`` parameter): ``month, lag, factor, ci_low, ci_high, source``."""
    f = np.asarray(factors, float)
    if f.ndim != 1 or not np.all(np.isfinite(f)) or (f <= 0).any() or (f > 1).any():
        raise ValueError(f"completeness factors must be numbers in (0, 1], oldest month first, got {list(factors)!r}")
    n = len(f)
    months = [_month_add(last_month, -(n - 1 - i)) for i in range(n)]
    return pd.DataFrame({"month": months, "lag": np.arange(n - 1, -1, -1), "factor": f, "ci_low": f, "ci_high": f,
                         "source": "supplied"})


def completeness_from_snapshots(snapshots: pd.DataFrame, value: str = "value", max_lag: int | None = None) -> pd.DataFrame:
    """Completeness factors by lag from successive data extracts (how past months filled in).

    ``snapshots``: ``extract`` (the latest month the extract covers), ``month`` and ``value`` (the month's
    total as that extract recorded it). A month's lag in an extract is ``extract - month`` in months. The
    factor for lag L is ``sum_m value(m, L) / sum_m final(m)`` over months m seen at lag L whose final
    value (the latest extract at lag > ``max_lag``, default the largest lag observed) is known: the
    chain-ladder ratio of claims reserving. Returns ``lag, factor, months`` (months used).
    """
    need = [c for c in ("extract", "month", value) if c not in snapshots.columns]
    if need:
        raise ValueError(f"snapshots lack columns {need}; they need extract, month and {value}")
    s = snapshots.copy()
    to_i = lambda col: s[col].str.slice(0, 4).astype(int) * 12 + s[col].str.slice(5, 7).astype(int)  # noqa: E731
    s["lag"] = to_i("extract") - to_i("month")
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


def completeness_from_model(activity: pd.DataFrame, months: int = 3, recent_months: int = 6,
                            level: float = 0.95) -> pd.DataFrame:
    """Completeness factors of the last ``months`` months from the data-quality model
    (:func:`pbc_analysis.stages.quality.completeness` on the PCT's monthly activity, all points of delivery):
    observed / expected from trend and seasonality, capped at 1. Returns ``month, lag, factor, ci_low,
    ci_high, source``. Used when the data carry no snapshots of past extracts."""
    if isinstance(months, bool) or not isinstance(months, (int, np.integer)) or not 1 <= months <= recent_months:
        raise ValueError(f"completeness_months must be a whole number from 1 to {recent_months}, got {months!r}")
    m = activity.groupby("month", observed=True, sort=True)["activity"].sum().reset_index().assign(pod="all")
    m["month"] = m["month"].astype(str)
    c = _quality.completeness(m, recent_months=recent_months, level=level).tail(int(months))
    return pd.DataFrame({"month": c["month"].to_numpy(), "lag": np.arange(int(months) - 1, -1, -1),
                         "factor": np.minimum(c["completeness"].to_numpy(float), 1.0),
                         "ci_low": np.minimum(c["ci_low"].to_numpy(float), 1.0),
                         "ci_high": np.minimum(c["ci_high"].to_numpy(float), 1.0), "source": "model"})


def completeness_for(inputs: Any, factors: Sequence[float] = (), months: int = 3, snapshots: str | Any = "",
                     level: float = 0.95) -> pd.DataFrame:
    """The completeness table a run uses: ``factors`` (oldest first, ending at the last month of the
    window) if given; else factors by lag from a ``snapshots`` file or table (:func:`completeness_from_snapshots`;
    lag 0 = the last month of the window) if given; else the data-quality model
    (:func:`completeness_from_model`) for the last ``months`` months."""
    last = inputs.window.end_month if inputs.window is not None else str(inputs.activity["month"].max())
    if factors is not None and len(factors):
        return completeness_table(factors, last)
    if isinstance(snapshots, pd.DataFrame) or (isinstance(snapshots, str) and snapshots):
        from pbc_analysis.core import paths as _paths

        snap = snapshots if isinstance(snapshots, pd.DataFrame) else pd.read_csv(
            _paths.resolve(snapshots), dtype={"extract": str, "month": str})
        by_lag = completeness_from_snapshots(snap)
        by_lag = by_lag[by_lag["factor"] < 1]
        f = by_lag.sort_values("lag", ascending=False)["factor"].to_numpy(float)
        out = completeness_table(np.minimum(f, 1.0), last)
        return out.assign(source="snapshots")
    return completeness_from_model(inputs.activity, months, level=level)


# --------------------------------------------------------------------------------------------------
# monthly costs, profile, forecast
# --------------------------------------------------------------------------------------------------

def monthly_costs(cells: pd.DataFrame, practices: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per practice and month (from :func:`pbc_analysis.stages.budgets.recost` cells): ``financial_year``,
    ``cost`` (recorded), ``factor`` (completeness), ``cost_adjusted`` and ``cost_at_target`` (adjusted,
    at the target year's prices), with the practice's ``consortium`` when ``practices`` is given."""
    g = cells.groupby(["practice_code", "month"], sort=True).agg(
        financial_year=("financial_year", "first"), cost=("cost", "sum"), factor=("factor", "first"),
        cost_adjusted=("cost_adjusted", "sum"), cost_at_target=("cost_at_target", "sum")).reset_index()
    if practices is not None:
        g = g.merge(practices[["practice_code", "consortium"]].astype(str), on="practice_code", how="left")
    return g


def seasonal_profile(monthly: pd.DataFrame, years: Sequence[str], value: str = "cost_adjusted") -> pd.DataFrame:
    """Each month's share of its financial year's PCT ``value``, averaged over ``years`` (complete years):
    ``period`` (1 = April ... 12 = March), ``share`` (summing to 1) and ``cumulative``."""
    if len(list(years)) == 0:
        raise ValueError("seasonal_profile needs at least one complete past financial year")
    sub = monthly[monthly["financial_year"].isin(list(years))]
    tot = sub.groupby(["financial_year", "month"], sort=True)[value].sum().reset_index()
    tot["period"] = (tot["month"].str.slice(5, 7).astype(int) - 4) % 12 + 1
    tot["share"] = tot[value] / tot.groupby("financial_year")[value].transform("sum")
    counts = tot.groupby("financial_year")["month"].count()
    short = counts[counts != 12]
    if len(short):
        raise ValueError(f"seasonal_profile: years {list(short.index)} do not have 12 months; pass complete years")
    prof = tot.groupby("period", sort=True)["share"].mean()
    prof = prof / prof.sum()
    return pd.DataFrame({"period": prof.index.astype(int), "share": prof.to_numpy(float),
                         "cumulative": prof.cumsum().to_numpy(float)})


def _period(month: pd.Series) -> np.ndarray:
    return ((month.str.slice(5, 7).astype(int) - 4) % 12 + 1).to_numpy()


def forecast_outturn(monthly: pd.DataFrame, year: str, profile: pd.DataFrame, by: str = "practice_code",
                     value: str = "cost_adjusted") -> pd.DataFrame:
    """Year-to-date cost and the run-rate forecast ``F = A_k / Pi_k`` after each month k of ``year``:
    ``by, financial_year, month, k, actual, ytd, profile_ytd, forecast``."""
    sub = monthly[monthly["financial_year"] == year].groupby([by, "month"], sort=True)[value].sum().reset_index()
    sub = sub.rename(columns={value: "actual"})
    sub["k"] = _period(sub["month"])
    sub = sub.sort_values([by, "k"])
    sub["ytd"] = sub.groupby(by, sort=False)["actual"].cumsum()
    cum = profile.set_index("period")["cumulative"]
    sub["profile_ytd"] = sub["k"].map(cum).to_numpy(float)
    sub["forecast"] = sub["ytd"] / sub["profile_ytd"]
    sub.insert(1, "financial_year", year)
    return sub.reset_index(drop=True)


def backtest(monthly: pd.DataFrame, years: Sequence[str], by: str = "practice_code",
             value: str = "cost_adjusted") -> pd.DataFrame:
    """Run-rate forecasts in each complete past year, each with the profile of the *other* years:
    ``by, financial_year, k, forecast, outturn, residual`` (``(outturn - forecast) / sqrt(forecast)``),
    for k = 1..11 (after 12 months the outturn is known)."""
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
    """Mean and SD of the standardised back-test errors per month elapsed ``k`` (``k = 12``: 0 and 0),
    leaving out ``exclude_year``: ``k, mean, sd, n``."""
    b = bt if exclude_year is None else bt[bt["financial_year"] != exclude_year]
    g = b.groupby("k", sort=True)["residual"].agg(["mean", "std", "count"]).rename(
        columns={"std": "sd", "count": "n"}).reset_index()
    g = pd.concat([g, pd.DataFrame({"k": [12], "mean": [0.0], "sd": [0.0], "n": [0]})], ignore_index=True)
    return g


def _interval(forecast: np.ndarray, k: np.ndarray, em: pd.DataFrame, z: float,
              extra_var: np.ndarray | float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    e = em.set_index("k")
    mu = e["mean"].reindex(k).to_numpy(float)
    sd = e["sd"].reindex(k).to_numpy(float)
    root = np.sqrt(np.maximum(forecast, 0.0))
    centre = forecast + mu * root
    half = z * np.sqrt((sd * root) ** 2 + extra_var)
    return centre, centre - half, centre + half, np.sqrt((sd * root) ** 2 + extra_var)


def backtest_coverage(bt: pd.DataFrame, level: float = 0.90) -> pd.DataFrame:
    """Coverage of the prediction interval in each back-test year, the interval of each year built from
    the other years' errors: ``financial_year, k, n, covered, coverage`` and, per year, ``k = 0`` for
    all months together."""
    z = stats.norm.ppf(0.5 + level / 2)
    frames = []
    for y in sorted(bt["financial_year"].unique()):  # a handful of years
        b = bt[bt["financial_year"] == y]
        _, lo, hi, _ = _interval(b["forecast"].to_numpy(float), b["k"].to_numpy(), error_model(bt, y), z)
        frames.append(b.assign(covered=(b["outturn"] >= lo) & (b["outturn"] <= hi)))
    c = pd.concat(frames, ignore_index=True)
    by_k = c.groupby(["financial_year", "k"], sort=True)["covered"].agg(["size", "sum"]).reset_index()
    by_y = c.groupby("financial_year", sort=True)["covered"].agg(["size", "sum"]).reset_index().assign(k=0)
    out = pd.concat([by_y, by_k], ignore_index=True).rename(columns={"size": "n", "sum": "covered"})
    out["coverage"] = out["covered"] / out["n"]
    out["level"] = level
    return out[["financial_year", "k", "n", "covered", "coverage", "level"]].sort_values(
        ["financial_year", "k"], ignore_index=True)


# --------------------------------------------------------------------------------------------------
# early warning
# --------------------------------------------------------------------------------------------------

def spc_signals(monthly: pd.DataFrame, profile: pd.DataFrame, baseline: tuple[str, str], through: str,
                by: str = "practice_code", value: str = "cost_at_target", run_length: int = 7,
                trend_length: int = 7) -> pd.DataFrame:
    """XmR chart (:func:`pbc_analysis.methods.spc.xmr`, Making Data Count rules, higher = concern) of the monthly
    ``value`` divided by the month's profile share (the annual cost it implies: a deseasonalised run rate),
    limits from the ``baseline`` months, from the first baseline month to ``through``. Returns the
    ``xmr`` table with ``run_rate`` as the value."""
    sub = monthly[(monthly["month"] >= baseline[0]) & (monthly["month"] <= through)]
    sub = sub.groupby([by, "month"], sort=True)[value].sum().reset_index()
    share = profile.set_index("period")["share"]
    sub["run_rate"] = sub[value] / sub["month"].pipe(_period_series).map(share).to_numpy(float)
    return _spc.xmr(sub[[by, "month", "run_rate"]], "run_rate", "month", by=by, baseline=baseline,
                    improvement="decrease", run_length=run_length, trend_length=trend_length)


def _period_series(month: pd.Series) -> pd.Series:
    return pd.Series(_period(month), index=month.index)


def rag_status(variance: np.ndarray | pd.Series, spc_concern: np.ndarray | pd.Series, amber: float = 0.02,
               red: float = 0.05) -> np.ndarray:
    """Red / amber / green: red if ``variance >= red`` or (``variance >= amber`` and an SPC concern);
    amber if ``variance >= amber`` or an SPC concern; green otherwise. ``variance`` = (forecast - budget)
    / budget (an underspend is never a warning here)."""
    a = _number(amber, "amber", 0.0)
    r = _number(red, "red", 0.0)
    if r < a:
        raise ValueError(f"red ({red!r}) must be at least amber ({amber!r}): red is the stricter trigger")
    v = np.asarray(variance, float)
    c = np.asarray(spc_concern, bool)
    return np.select([(v >= r) | ((v >= a) & c), (v >= a) | c], ["red", "amber"], "green")


@dataclass
class Monitoring:
    """In-year monitoring of the target year (:func:`monitor`); ``available`` False (with ``note``)
    when the data hold no month of it."""

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
    f = forecast_outturn(monthly, year, profile, by)
    # completeness uncertainty: adjusted months' cost x relative SE of their factor, accumulated
    adj = monthly[monthly["financial_year"] == year].groupby([by, "month"], sort=True)["cost_adjusted"].sum()
    rel = adj.index.get_level_values("month").map(comp_se).to_numpy(float)
    ev = pd.Series((adj.to_numpy(float) * np.nan_to_num(rel)) ** 2, index=adj.index).groupby(level=by).cumsum()
    ev = ev.reindex(pd.MultiIndex.from_frame(f[[by, "month"]])).to_numpy(float) / f["profile_ytd"].to_numpy() ** 2
    centre, lo, hi, sd = _interval(f["forecast"].to_numpy(float), f["k"].to_numpy(), em, z, ev)
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


def monitor(inputs: Any, res: _bud.BudgetResult, completeness: pd.DataFrame | None = None, as_at: str | None = None,
            level: float = 0.90, amber: float = 0.02, red: float = 0.05, run_length: int = 7,
            trend_length: int = 7) -> Monitoring:
    """Month-by-month monitoring of ``res``'s target year against its first-year budgets (module docstring).

    ``completeness``: the factor table used (``month, factor`` and optionally ``ci_low, ci_high``); the
    budgets must have been set with the same table (``set_budgets(..., completeness=...)``) so that the
    cells carry it. ``as_at`` (default the latest month of the target year in the data) is the month
    whose status is reported. Complete past years (all 12 months in the data, none adjusted) give the
    profile and the back-test.
    """
    _number(level, "level", 0.0, 1.0, low_open=True, high_open=True)
    rag_status(np.zeros(1), np.zeros(1, bool), amber, red)  # checks amber and red
    st = res.settings
    year = st["target_year"]
    monthly = monthly_costs(res.cells, inputs.practices)
    comp = completeness if completeness is not None else pd.DataFrame(columns=["month", "factor"])
    adjusted_months = set(comp["month"].astype(str))
    months_y = sorted(monthly.loc[monthly["financial_year"] == year, "month"].unique())
    if as_at is not None and as_at != "":
        if as_at not in set(months_y):
            raise ValueError(f"as_at {as_at!r} is not a month of {year} in the data (they run "
                             f"{months_y[0] if months_y else '-'} to {months_y[-1] if months_y else '-'}); "
                             "leave it empty for the latest")
        months_y = [m for m in months_y if m <= as_at]
    mcount = monthly.groupby("financial_year")["month"].nunique()
    complete = [y for y, n in mcount.items() if n == 12 and y < year and
                not (set(_bud.fy_months(y)) & adjusted_months)]
    empty = pd.DataFrame()
    if not months_y:
        return Monitoring(False, f"The data hold no month of {year}, so there is nothing to monitor yet.", empty, empty,
                          empty, empty, empty, comp, empty, empty, empty, empty, {"target_year": year})
    if len(complete) < 2:
        raise ValueError(f"monitoring needs at least two complete financial years before {year} for the profile "
                         f"and the back-test; the data have {complete}")
    monthly = monthly[monthly["month"] <= months_y[-1]]
    z = stats.norm.ppf(0.5 + level / 2)
    profile = seasonal_profile(monthly, complete)
    bt = backtest(monthly, complete)
    em = error_model(bt)
    cov = backtest_coverage(bt, level)
    if {"ci_low", "ci_high"} <= set(comp.columns) and len(comp):
        zc = stats.norm.ppf(0.975)
        se = (np.log(comp["ci_high"].astype(float)) - np.log(comp["ci_low"].astype(float))) / (2 * zc)
        comp_se = pd.Series(se.to_numpy(float), index=comp["month"].astype(str))
    else:
        comp_se = pd.Series(dtype=float)
    base = st["base_years"]
    baseline = (_bud.fy_months(base[0])[0], _bud.fy_months(base[-1])[-1])
    sp = spc_signals(monthly, profile, baseline, months_y[-1], run_length=run_length, trend_length=trend_length)
    concern = sp.assign(concern=sp["special_cause"].eq("concern"))[["practice_code", "month", "concern"]]
    budget = res.statement.set_index("practice_code")["budget"]
    prac = _monitor_unit(monthly, year, profile, em, budget, "practice_code", z, comp_se, concern, amber, red)
    prac = prac.merge(inputs.practices[["practice_code", "consortium"]].astype(str), on="practice_code", how="left")
    # consortia: sums of practices
    cons_budget = res.statement.groupby("consortium")["budget"].sum()
    spc_c = spc_signals(monthly, profile, baseline, months_y[-1], by="consortium", run_length=run_length,
                        trend_length=trend_length)
    concern_c = spc_c.assign(concern=spc_c["special_cause"].eq("concern"))[["consortium", "month", "concern"]]
    cons = _monitor_unit(monthly, year, profile, em, cons_budget, "consortium", z, comp_se, concern_c, amber, red)
    last = months_y[-1]
    status = prac[prac["month"] == last].reset_index(drop=True)
    cstatus = cons[cons["month"] == last].reset_index(drop=True)
    pct = cons.groupby("month", sort=True)[["ytd", "profile_budget_ytd", "forecast_centre", "budget"]].sum()
    settings = {"target_year": year, "as_at": last, "months_elapsed": int(_period(pd.Series([last]))[0]),
                "level": level, "amber": amber, "red": red, "profile_years": complete, "backtest_years": complete,
                "adjusted_months": sorted(m for m in adjusted_months if m in set(months_y)),
                "pct_forecast": float(pct["forecast_centre"].iloc[-1]), "pct_budget": float(pct["budget"].iloc[-1])}
    spc_tab = pd.concat([sp.assign(unit="practice").rename(columns={"practice_code": "code"}),
                         spc_c.assign(unit="consortium").rename(columns={"consortium": "code"})], ignore_index=True)
    return Monitoring(True, "", prac, cons, status, cstatus, profile, comp, bt, cov, em, spc_tab, settings, sp)


# --------------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------------

def headline(risk: RiskResult) -> dict:
    """Risk-pool headline figures (the ``risk`` part of results.json's ``budgets`` section)."""
    s = risk.settings
    r = _bud._r
    return {"threshold_gbp": s["threshold"], "top_slice": s["top_slice"], "pool_gbp": round(s["pool"], 2),
            "expected_pool_charge_gbp": round(s["expected_charge"], 2), "sd_pool_charge_gbp": round(s["sd_charge_analytic"], 2),
            "expected_patients_above_threshold": r(s["expected_patients"], 2),
            "probability_pool_exhausted": r(s["probability_exhausted"]),
            "max_probability": s["max_probability"], "smallest_adequate_top_slice": r(s["smallest_top_slice"]),
            "n_sims": s["n_sims"], "seed": s["seed"],
            "actual_pool_charge_target_year_gbp": (round(s["actual_charge_target_year"], 2)
                                                   if s["actual_charge_target_year"] is not None else None),
            "actual_charge_percentile": r(s["actual_percentile"]) if s["actual_percentile"] is not None else None}


def monitoring_headline(mon: Monitoring) -> dict:
    """In-year monitoring headline figures (the ``monitoring`` part of the ``budgets`` section)."""
    if not mon.available:
        return {"available": False, "note": mon.note}
    s, st = mon.settings, mon.status
    r = _bud._r
    allk = mon.coverage[mon.coverage["k"] == 0]
    counts = st["status"].value_counts()
    return {"available": True, "as_at": s["as_at"], "months_elapsed": s["months_elapsed"],
            "adjusted_months": s["adjusted_months"],
            "completeness_factors": {m: r(f) for m, f in zip(mon.completeness["month"], mon.completeness["factor"])}
            if len(mon.completeness) else {},
            "pct_forecast_outturn_gbp": round(s["pct_forecast"], 2), "pct_budget_gbp": round(s["pct_budget"], 2),
            "pct_variance": r(s["pct_forecast"] / s["pct_budget"] - 1),
            "practices": {k: int(counts.get(k, 0)) for k in ("red", "amber", "green")},
            "red_practices": sorted(st.loc[st["status"] == "red", "practice_code"].tolist()),
            "consortia": dict(zip(mon.consortium_status["consortium"], mon.consortium_status["status"])),
            "interval_level": s["level"],
            "backtest_coverage": {y: r(c) for y, c in zip(allk["financial_year"], allk["coverage"])},
            "backtest_coverage_overall": r(float(allk["covered"].sum() / allk["n"].sum()))}


def _disclosed(n: float) -> str:
    """A count of patients for publication: through :func:`pbc_analysis.methods.disclosure.disclose_counts`."""
    from pbc_analysis.methods.disclosure import disclose_counts

    v = disclose_counts([int(round(n))]).iloc[0]
    return v if isinstance(v, str) else f"{int(v):,}"


def describe(risk_head: Mapping[str, Any], monitoring_head: Mapping[str, Any] | None = None) -> str:
    """A plain-language reading of :func:`headline` and :func:`monitoring_headline` (numbers from the results)."""
    h = risk_head
    lines = [f"**Risk pool.** Cost above GBP {h['threshold_gbp']:,.0f} per patient a year goes to a pool funded by a "
             f"{h['top_slice']:.1%} top-slice (GBP {h['pool_gbp']:,.0f}). From the base years' patients, re-priced, "
             f"about {_disclosed(h['expected_patients_above_threshold'])} patients a year will cross the threshold, costing the "
             f"pool GBP {h['expected_pool_charge_gbp']:,.0f} on average (SD GBP {h['sd_pool_charge_gbp']:,.0f}). The "
             f"chance that the pool is exhausted is {h['probability_pool_exhausted']:.1%} ({h['n_sims']:,} simulated "
             f"years); the smallest top-slice that keeps it at or below {h['max_probability']:.0%} is "
             f"{h['smallest_adequate_top_slice']:.2%}."]
    if h.get("actual_pool_charge_target_year_gbp") is not None:
        lines[-1] += (f" The target year's actual charge, GBP {h['actual_pool_charge_target_year_gbp']:,.0f}, sits at the "
                      f"{h['actual_charge_percentile']:.0%} point of the simulated distribution.")
    m = monitoring_head
    if m is not None:
        if not m.get("available", False):
            lines.append(f"**In-year monitoring.** {m.get('note', 'Not available.')}")
        else:
            adj = (f" The latest months ({', '.join(m['adjusted_months'])}) are incomplete and were divided by their "
                   "completeness factors (" + ", ".join(f"{k} {v:.0%}" for k, v in m["completeness_factors"].items()
                                                         if k in m["adjusted_months"]) + ")." if m["adjusted_months"] else "")
            p = m["practices"]
            lines.append(
                f"**In-year monitoring, as at {m['as_at']}** ({m['months_elapsed']} months).{adj} The PCT's forecast "
                f"outturn is GBP {m['pct_forecast_outturn_gbp']:,.0f} against budgets of GBP {m['pct_budget_gbp']:,.0f} "
                f"({m['pct_variance']:+.1%}). Practices: {p['red']} red, {p['amber']} amber, {p['green']} green. In "
                f"back-tests over {len(m['backtest_coverage'])} past years the {m['interval_level']:.0%} forecast interval "
                f"covered the actual outturn {m['backtest_coverage_overall']:.1%} of the time.")
    return "\n\n".join(lines)


def result_tables(risk: RiskResult, mon: Monitoring) -> dict[str, pd.DataFrame]:
    """The run's risk tables (``risk_*``): ``risk_pool_charges`` (practice x year, re-priced to the target
    year), ``risk_pool_years``, ``risk_adequacy`` (top-slice vs P(exhausted)), ``risk_net_budgets``,
    ``risk_completeness``, ``risk_profile``, ``risk_monitoring`` (practice x month of the target year),
    ``risk_monitoring_consortium``, ``risk_status`` (practices at ``as_at``), ``risk_backtest_coverage``
    and ``risk_spc`` (practice and consortium XmR charts). No patient-level rows."""
    out = {"risk_pool_charges": risk.charges, "risk_pool_years": risk.years, "risk_adequacy": risk.adequacy,
           "risk_net_budgets": risk.net_budgets, "risk_completeness": mon.completeness}
    if mon.available:
        spc_cols = [c for c in mon.spc.columns if c not in ("baseline",)]
        out.update({"risk_profile": mon.profile, "risk_monitoring": mon.monthly,
                    "risk_monitoring_consortium": mon.consortium, "risk_status": mon.status,
                    "risk_backtest_coverage": mon.coverage, "risk_spc": mon.spc[spc_cols]})
    return out

