"""The high-cost risk pool: charges, the top-slice that funds it, and its adequacy by simulation.

See :mod:`pbc_analysis.stages.risk` ("Risk pool", "Pool adequacy") for the rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from pbc_analysis.core.checks import check_number
from pbc_analysis.stages import budgets as _bud
from pbc_analysis.stages.risk.params import Params

_DEFAULTS = Params.defaults()   # function defaults are the stage's settings' defaults: one source

__all__ = ["RiskResult", "adequacy_curve", "apply_top_slice", "assess_pool", "check_threshold", "check_top_slice",
           "excess_costs", "inflation_to_target", "exhaustion_probability", "pool_charges", "simulate_pool", "smallest_top_slice"]


def check_top_slice(top_slice: Any) -> float:
    """Check a top-slice: a share of the envelope in [0, 1).

    Parameters
    ----------
    top_slice : object

    Returns
    -------
    float

    Raises
    ------
    ArgumentError
        Naming ``top_slice`` and its range.

    References
    ----------
    Audit Commission (2007), paras 130-134 (a contingency of 3 to 5% of budgets).
    """
    return float(check_number("top_slice", top_slice, 0.0, 1.0, high_open=True,
                              fix="a share of the envelope in [0, 1), e.g. 0.03 to 0.05"))


def check_threshold(threshold: Any, reporting_floor: float | None) -> float:
    """Check a pool threshold: GBP > 0 and not below the high-cost table's reporting floor.

    Parameters
    ----------
    threshold : object
    reporting_floor : float or None
        The cost above which the ``high_cost_patients`` table lists patients (None: not known).

    Returns
    -------
    float

    Raises
    ------
    ValueError
        Naming the threshold, the floor and the fix.

    References
    ----------
    DOMAIN.md "Budgets" (a per-patient threshold of typically GBP 10,000 to 20,000).
    """
    t = float(check_number("threshold", threshold, 0.0, low_open=True, fix="GBP per patient per year, e.g. 15000"))
    if reporting_floor is not None and t < float(reporting_floor):
        raise ValueError(f"threshold {threshold!r} is below the high_cost_patients reporting floor "
                         f"{reporting_floor!r}: patients between them are missing from the table, so the pool's "
                         "charges would be understated; use a threshold at or above the floor")
    return t


def pool_charges(high_cost_patients: pd.DataFrame, threshold: float = _DEFAULTS["threshold"], years: Sequence[str] | None = None,
                 practices: Sequence[str] | None = None, reporting_floor: float | None = None,
                 inflation: Mapping[str, float] | None = None) -> pd.DataFrame:
    """The risk pool's charges per practice and financial year (patient-level rows never leave this function).

    Parameters
    ----------
    high_cost_patients : DataFrame
        ``patient_id, practice_code, financial_year, cost``.
    threshold : float
        GBP per patient a year above which cost goes to the pool.
    years : sequence of str, optional
        The financial years kept.
    practices : sequence of str, optional
        Adds zero rows for practices with no patient above the threshold.
    reporting_floor : float, optional
        The table's reporting floor (the threshold may not be below it).
    inflation : mapping, optional
        Financial year -> factor re-pricing each year's costs first (e.g. to the target year's tariff).

    Returns
    -------
    DataFrame
        ``practice_code, financial_year, patients`` (above the threshold), ``cost`` (theirs),
        ``pool_charge`` (the part above ``threshold``) and ``practice_charge`` (``threshold`` per patient).

    References
    ----------
    Audit Commission (2007), paras 130-134 (risk pools for high-cost patients).
    """
    t = check_threshold(threshold, reporting_floor)
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
    """The excess over ``threshold`` of every patient-year above it in ``years``, and their mean number a year.

    Parameters
    ----------
    high_cost_patients : DataFrame
    threshold : float
    years : sequence of str
    inflation : mapping, optional
        Financial year -> re-pricing factor.

    Returns
    -------
    excess : numpy.ndarray
    per_year : float

    References
    ----------
    Klugman SA, Panjer HH, Willmot GE, *Loss Models*, ch. 9 (severity of the collective risk model).
    """
    hc = high_cost_patients[high_cost_patients["financial_year"].isin(list(years))]
    cost = hc["cost"].to_numpy(float)
    if inflation is not None:
        cost = cost * hc["financial_year"].map(dict(inflation)).astype(float).to_numpy()
    x = cost[cost > threshold] - threshold
    return x, len(x) / max(len(list(years)), 1)


def simulate_pool(excess: np.ndarray, expected_count: float, n_sims: int = _DEFAULTS["n_sims"], seed: int = _DEFAULTS["seed"],
                  max_draws: int = 2_000_000) -> np.ndarray:
    """Simulated annual pool charges ``S = sum_{i<=N} X_i``, ``N ~ Poisson(expected_count)``, ``X_i`` resampled.

    Parameters
    ----------
    excess : numpy.ndarray
        Excess costs, drawn with replacement.
    expected_count : float
        The Poisson mean of patients above the threshold a year.
    n_sims : int
        Simulated years (>= 100).
    seed : int
        Seed of ``numpy.random.default_rng``.
    max_draws : int
        Chunks of at most this many patient draws keep memory flat.

    Returns
    -------
    numpy.ndarray
        ``n_sims`` totals.

    References
    ----------
    Klugman, Panjer and Willmot, *Loss Models*, ch. 9 (compound Poisson sums); Efron B, Tibshirani RJ (1993),
    *An Introduction to the Bootstrap* (resampled severities).
    """
    x = np.asarray(excess, float)
    lam = float(check_number("expected_count", expected_count, 0.0))
    check_number("n_sims", n_sims, 100, integer=True)
    if lam > 0 and len(x) == 0:
        raise ValueError("expected_count > 0 but there are no excess costs to resample")
    check_number("seed", seed, 0, integer=True, fix="a non-negative whole number (numpy default_rng)")
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
    """Share of simulated years whose pool charge exceeds ``pool`` (strictly).

    Parameters
    ----------
    totals : numpy.ndarray
        From :func:`simulate_pool`.
    pool : float

    Returns
    -------
    float

    References
    ----------
    Klugman, Panjer and Willmot, *Loss Models* (probability of ruin over one period).
    """
    return float(np.mean(np.asarray(totals, float) > float(pool)))


def smallest_top_slice(totals: np.ndarray, envelope: float, max_probability: float = _DEFAULTS["max_probability"]) -> float:
    """The smallest top-slice whose pool (``top_slice x envelope``) is exceeded in at most ``max_probability`` of years.

    Parameters
    ----------
    totals : numpy.ndarray
        From :func:`simulate_pool`.
    envelope : float
    max_probability : float

    Returns
    -------
    float
        The ``ceil((1 - max_probability) n)``-th smallest total over the envelope (may be 1 or more if the
        pool cannot be made adequate).

    References
    ----------
    Hyndman RJ, Fan Y (1996), Sample quantiles in statistical packages, *Am Stat* 50:361 (type 1 quantile).
    """
    a = float(check_number("max_probability", max_probability, 0.0, 1.0, low_open=True, high_open=True,
                           fix="e.g. 0.05 for a 1 in 20 chance of exhausting the pool"))
    E = float(check_number("envelope", envelope, 0.0, low_open=True))
    s = np.sort(np.asarray(totals, float))
    n = len(s)
    k = int(np.ceil((1 - a) * n)) - 1  # at most floor(a n) draws lie above s[k]
    k = min(max(k, 0), n - 1)
    return float(s[k] / E)


def adequacy_curve(totals: np.ndarray, envelope: float, top_slices: Sequence[float] | None = None) -> pd.DataFrame:
    """P(pool exhausted) for a grid of top-slices.

    Parameters
    ----------
    totals : numpy.ndarray
        From :func:`simulate_pool`.
    envelope : float
    top_slices : sequence of float, optional
        Default 0 to 0.20 by 0.0025.

    Returns
    -------
    DataFrame
        ``top_slice, pool, probability_exhausted``.

    References
    ----------
    As :func:`exhaustion_probability`.
    """
    E = float(check_number("envelope", envelope, 0.0, low_open=True))
    grid = np.asarray(top_slices if top_slices is not None else np.round(np.arange(0.0, 0.2001, 0.0025), 4), float)
    s = np.sort(np.asarray(totals, float))
    above = len(s) - np.searchsorted(s, grid * E, side="right")
    return pd.DataFrame({"top_slice": grid, "pool": grid * E, "probability_exhausted": above / len(s)})


def apply_top_slice(budgets: pd.DataFrame, top_slice: float, envelope: float | None = None) -> tuple[pd.DataFrame, float]:
    """Net budgets after the contingency top-slice, and the pool, so that net budgets + pool = envelope exactly.

    Parameters
    ----------
    budgets : DataFrame
        ``practice_code, budget``.
    top_slice : float
    envelope : float, optional
        Default the sum of the budgets.

    Returns
    -------
    net : DataFrame
        ``practice_code, budget, top_slice_contribution, net_budget`` (whole pence; net budgets are ``(1 -
        top_slice) x`` the envelope split in proportion to the budgets by largest remainder).
    pool : float

    References
    ----------
    Audit Commission (2007), paras 130-134 (a contingency top-slice).
    """
    ts = check_top_slice(top_slice)
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
    """The risk pool's charges, simulation and adequacy (:func:`assess_pool`); ``settings`` for the headline."""

    charges: pd.DataFrame
    years: pd.DataFrame
    adequacy: pd.DataFrame
    net_budgets: pd.DataFrame
    totals: np.ndarray = field(repr=False)
    settings: dict[str, Any] = field(default_factory=dict)


def inflation_to_target(cells: pd.DataFrame) -> dict[str, float]:
    """Each financial year's re-pricing factor to the target year: cost at target prices / cost, of the cells.

    Parameters
    ----------
    cells : pandas.DataFrame
        The budget stage's cells (``financial_year, cost_adjusted, cost_at_target``).

    Returns
    -------
    dict
        Financial year -> factor.

    References
    ----------
    DOMAIN.md "Budgets" (re-costing at the target year's tariff).
    """
    g = cells.groupby("financial_year", sort=True)[["cost_adjusted", "cost_at_target"]].sum()
    return (g["cost_at_target"] / g["cost_adjusted"]).to_dict()


def assess_pool(inputs: Any, res: _bud.Result, params: Params, reporting_floor: float | None = None) -> RiskResult:
    """The risk pool for ``res``'s target year.

    Parameters
    ----------
    inputs : pbc_analysis.data.Inputs
        Validated inputs (``high_cost_patients``, ``practices``).
    res : pbc_analysis.stages.budgets.Result
        The budgets (cells at the target year's prices, base years, envelope).
    params : Params
        ``threshold, top_slice, max_probability, n_sims, seed``.
    reporting_floor : float, optional
        The high-cost table's reporting floor (the threshold may not be below it).

    Returns
    -------
    RiskResult
        Charges by practice and year (re-priced to the target year), the simulated pool charge from the base
        years' patients, P(exhausted) at ``top_slice``, the smallest adequate top-slice, and the actual charge
        of the target year when the data hold it.

    References
    ----------
    Klugman, Panjer and Willmot, *Loss Models*, ch. 9; Efron and Tibshirani (1993); Audit Commission (2007),
    paras 130-134.
    """
    t = check_threshold(params.threshold, reporting_floor)
    ts = check_top_slice(params.top_slice)
    max_probability, n_sims, seed = params.max_probability, params.n_sims, params.seed
    st = res.settings
    infl = inflation_to_target(res.cells)
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
