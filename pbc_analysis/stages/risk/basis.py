"""One budget basis for the risk pool and in-year monitoring, and the choice of threshold and top-slice.

**Budget basis** (the budget stage's setting ``budget_basis``). An underspend is measured against the budget
issued for the year: savings sharing (notebook 04) uses ``budgets.csv``, so with ``budget_basis: supplied`` (the
default) the risk pool's top-slice, the net budgets and in-year monitoring use the same supplied budget of the
target year; a practice with no supplied budget keeps the budget stage's (counted, and named in the table's
``budget_source``). ``set`` top-slices and monitors the budget stage's fair-share budgets instead (a rehearsal of
the budgets proposed; sharing still settles against the budgets issued). :func:`basis_budgets` returns the budget
stage's result with those budgets and the envelope they sum to, so the pool and monitoring read one figure.

**Thresholds** (:func:`threshold_table`). For each candidate threshold (setting ``threshold_options``, with
``threshold``), the pool simulation is repeated: expected patients above it and their charge, the chance the
pool at the current top-slice is exhausted, and the smallest top-slice that keeps that chance at or below
``max_probability`` (the recommendation, as :func:`pbc_analysis.stages.risk.pool.smallest_top_slice`).

References
----------
Audit Commission (2007), Putting commissioning into practice, paras 130-134 (a contingency of 3 to 5% of
budgets; thresholds of GBP 10,000 to 20,000 a patient); DH (2006), Practice based commissioning: budget setting
refinements and clarification.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
import pandas as pd

from pbc_analysis.stages import budgets as _bud
from pbc_analysis.stages.risk.pool import (
    check_threshold,
    excess_costs,
    exhaustion_probability,
    simulate_pool,
    smallest_top_slice,
)

__all__ = ["SUPPLIED", "basis_budgets", "threshold_table"]

SUPPLIED, SET, SET_NO_SUPPLIED = "supplied", "set", "set (no supplied budget)"


def basis_budgets(inputs: Any, res: _bud.Result) -> tuple[_bud.Result, pd.DataFrame]:
    """The budget stage's result with the target year's budgets on the run's basis, and the basis table.

    Parameters
    ----------
    inputs : pbc_analysis.data.Inputs
        Validated inputs (``budgets``, optional: the supplied indicative budgets).
    res : pbc_analysis.stages.budgets.Result
        The budget stage's result; ``res.params.budget_basis`` is ``supplied`` or ``set``.

    Returns
    -------
    (Result, pandas.DataFrame)
        The result whose ``statement["budget"]`` and ``settings["envelope"]`` are the basis budgets (the input
        result when nothing changes), and ``practice_code, supplied_budget, set_budget, budget, budget_source``.

    References
    ----------
    Audit Commission (2007), paras 100-110 (indicative budgets issued for the year); module docstring.
    """
    year, basis = str(res.settings["target_year"]), str(res.params.budget_basis)
    st = res.statement
    set_budget = st["budget"].to_numpy(float)
    supplied = np.full(len(st), np.nan)
    if inputs.budgets is not None and len(inputs.budgets):
        b = inputs.budgets[inputs.budgets["financial_year"].astype(str) == year]
        by_code = pd.Series(b["budget"].to_numpy(float), index=b["practice_code"].astype(str))
        supplied = st["practice_code"].astype(str).map(by_code).to_numpy(float)
    has = ~np.isnan(supplied)
    use = has if basis == SUPPLIED else np.zeros(len(st), bool)
    budget = np.where(use, supplied, set_budget)
    source = np.where(use, SUPPLIED, SET_NO_SUPPLIED if basis == SUPPLIED else SET)
    table = pd.DataFrame({"practice_code": st["practice_code"].astype(str).to_numpy(), "supplied_budget": supplied,
                          "set_budget": set_budget, "budget": budget, "budget_source": source})
    if not use.any():
        return res, table
    out = dataclasses.replace(res, statement=st.assign(budget=budget),
                              settings={**res.settings, "envelope": float(np.round(budget.sum(), 2)),
                                        "envelope_of_set_budgets": float(res.settings["envelope"])})
    return out, table


def threshold_table(inputs: Any, res: _bud.Result, thresholds: Sequence[float], top_slice: float,
                    max_probability: float, n_sims: int, seed: int, reporting_floor: float | None = None,
                    inflation: dict[str, float] | None = None) -> pd.DataFrame:
    """The pool at each candidate threshold: expected charge, chance of exhaustion and the smallest adequate top-slice.

    Parameters
    ----------
    inputs : pbc_analysis.data.Inputs
        Validated inputs (``high_cost_patients``).
    res : pbc_analysis.stages.budgets.Result
        The budgets on the run's basis (:func:`basis_budgets`): base years, envelope, lists.
    thresholds : sequence of float
        GBP per patient a year; each is checked against the reporting floor.
    top_slice, max_probability : float
        The current top-slice and the accepted chance that the pool is exhausted.
    n_sims, seed : int
        The pool simulation's (each threshold uses the same seed).
    reporting_floor : float, optional
        The high-cost table's reporting floor.
    inflation : dict, optional
        Re-pricing of each year to the target year (as :func:`pbc_analysis.stages.risk.pool.assess_pool`).

    Returns
    -------
    pandas.DataFrame
        ``threshold, expected_patients, expected_charge, pool, probability_exhausted, smallest_adequate_top_slice,
        recommended_pool`` (GBP), one row per threshold, ascending.

    References
    ----------
    Klugman, Panjer and Willmot, *Loss Models*, ch. 9 (the compound Poisson charge); Audit Commission (2007),
    paras 130-134.
    """
    st = res.settings
    envelope = float(st["envelope"])
    growth = float(res.historic["list_target"].sum() / res.historic["list_base"].sum())
    rows = []
    for t in sorted({float(check_threshold(v, reporting_floor)) for v in thresholds}):
        x, n_per_year = excess_costs(inputs.high_cost_patients, t, st["base_years"], inflation)
        lam = n_per_year * growth
        totals = simulate_pool(x, lam, n_sims, seed)
        smallest = smallest_top_slice(totals, envelope, max_probability)
        rows.append({"threshold": t, "expected_patients": lam,
                     "expected_charge": lam * (float(x.mean()) if len(x) else 0.0),
                     "pool": top_slice * envelope, "probability_exhausted": exhaustion_probability(totals, top_slice * envelope),
                     "smallest_adequate_top_slice": smallest, "recommended_pool": smallest * envelope})
    return pd.DataFrame(rows)
