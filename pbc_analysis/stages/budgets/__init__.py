"""Indicative budgets: historic budgets, fair shares, distance from target, pace of change, statements.

The Audit Commission (2007, *Putting commissioning into practice: implementing practice based
commissioning through good financial management*, paras 80-94 and case study 9) found that practices
did not understand how their indicative budgets were set, received them late and were not told their
fair share. Every number here is therefore built from a few explicit, tested rules, and
:func:`budget_statement` writes out, per practice, every input of its own budget.

Settings and entry point
    :class:`Params` holds every setting (type, default, allowed values, help; ``target_year`` and ``as_at``
    ``"auto"`` are derived from the data, and the cross-setting rules are checked before any notebook
    runs: see :mod:`pbc_analysis.stages.budgets.params`). :func:`run` ``(inputs, params)`` measures the
    completeness of the latest months (:mod:`~pbc_analysis.stages.budgets.completeness`) and sets the budgets
    (:func:`set_budgets`); its :class:`Result` gives ``tables()``, ``headline()`` and ``describe()``. The
    risk stage (:mod:`pbc_analysis.stages.risk`) takes the Result on to the risk pool and in-year monitoring.

Modules: ``params`` (settings), ``costs`` (cells, re-costing, annual costs), ``completeness`` (factors of
the latest months), ``lists`` (age-sex cost curves, weighted lists, list growth), ``need`` (historic budgets,
the need model, fair shares), ``pace`` (glide path, pence, winners and losers), ``statement`` (the budget
statement, tables, headline, description), ``stage`` (:func:`run`, :func:`set_budgets`, :class:`Result`).

Historic budget (:func:`historic_budgets`; DOMAIN.md "Budgets"; Audit Commission case study 9)
    For target year T with base years B = the ``base_years`` financial years before T (default two,
    which dampens year-to-year noise):

        spend_p   = mean_{y in B} ( 12 / months_y x sum_cells cost_at_T[p, cell, y] )
        budget_p  = spend_p x L_p(T) / mean_{m in B} L_p(m)

    ``cost_at_T`` re-costs each (specialty, point of delivery) cell of year y at T's national tariff:
    ``recost="price_index"`` (default) multiplies the cell's actual cost by ``price(T) / price(y)``, which
    keeps each provider's case-mix (HRG) factor; ``recost="tariff"`` uses ``activity x price(T)``
    (:func:`recost_cells`).
    ``months_y`` is the number of months of y in the window (a part year is annualised). ``L`` is the
    registered list (``list_index="registered"``) or the age-sex weighted list (``"weighted"``, default:
    a list growing in its older patients needs more than one growing in its young); ``L(T)`` is the list
    at the first month of T (or the latest month in the data when T lies beyond it, which the statement
    names; :func:`list_growth`). This is the rule ``pbc synth`` uses to write ``budgets.csv`` (``ground_truth["budget_rule"]``:
    mean of the two previous years, new tariff x provider HRG factor, registered list ratio), applied to
    its expected rather than its observed activity. Months named in a ``completeness`` table (month,
    factor) are divided by their factor first, so the incomplete latest months of a data extract do not
    lower a budget.

Age-sex cost curves (:func:`cost_curves`)
    Cost per head by age band and sex for each component of spend (``planned``: first and follow-up
    outpatients and elective admissions; ``non_elective``; ``ae``), ``sum_k rate_k(a) / 1000 x
    price_k(T)`` over the measures k (point of delivery x specialty) of the ``reference_rates`` table
    (national HES age-sex rates in real use), as the Department of Health's weighted capitation formula
    builds its age-cost curves from national utilisation (DH, *Resource allocation: weighted capitation
    formula*, 6th edition 2008, the "Exposition Book", ch. 3-4). ``method="calibrated"`` (default) first
    scales each measure's rates by this PCT's observed / expected count in the base years (indirect
    standardisation), so the levels are the PCT's own; ``"reference"`` uses the rates as they are;
    ``"supplied"`` takes a table of curves; ``"none"`` weights every patient equally. Practice-level
    data cannot identify an age curve of their own (the 38 age-sex cells are nearly collinear across
    practices), so the age *shape* always comes from the reference rates or the supplied curves.
    Weights are normalised to mean 1 over the PCT's base-year population, so weighted and registered
    lists have the same PCT total.

Fair shares (:func:`fit_need_model`, :func:`fair_shares`)
    Per component c, a quasi-Poisson log-linear regression of each practice's base-year cost (at T's
    prices) with the age-sex weighted list as exposure,

        cost_pc ~ WL_pc x exp(a_c + sum_need beta_cj x_pj + sum_supply gamma_ck s_pk),

    (McCullagh and Nelder 1989; dispersion by Pearson chi-squared, as R's ``quasipoisson``). The
    ``formula`` ``"need terms | supply terms"`` names the covariates (:data:`TERMS`, or columns of a
    ``covariates`` table, e.g. disease prevalence, which the synthetic data do not carry). Supply terms
    (e.g. the providers' cost index) are in the regression so that they do not bias the need
    coefficients, and are held at the PCT average when predicting need, as in the DH formula (and PBRA,
    Dixon et al. 2011, BMJ 342:d930); a constant factor cancels in the shares, so the need of practice p
    is ``N_pc = WL_pc(T) x exp(sum_need beta_cj x_pj)``. The target share is

        t_p = sum_c w_c N_pc / sum_p N_pc,   w_c = the component's share of base-year PCT cost,

    and the fair share is ``t_p x envelope``. Actual use plays no part in t_p beyond the PCT-wide
    coefficients. The fit is reported as R squared of cost per registered patient at practice level
    (list-weighted; with supply terms at their actual values, and for the need-only prediction) and
    the share of practices whose need-only prediction is more than 10% from their actual cost
    (PBRA: R squared 0.74-0.79, about a third of practices beyond 10%; DOMAIN.md).

Distance from target and pace of change (:func:`glide_path`)
    distance = (historic - fair share) / fair share, with historic budgets scaled to the envelope. The
    glide path works on shares s (budget / envelope, summing to 1) for ``years`` years. Each year a
    practice outside the band ``[t (1 - band), t (1 + band)]`` wants to close an equal part of its gap
    to the nearer band edge, ``(edge - s) / years_left``, capped at ``cap x s`` (the change of share in a
    year; in a flat envelope, of budget). Gains and losses must balance: the smaller side is topped up,
    with ``fund_from="above_target"`` (default), from practices above target (or, for spare losses, to
    practices below target) in proportion to their room, never past their target nor beyond their cap;
    if that is not enough (or ``fund_from="outside_band"``), the larger side is scaled down. So no cap is
    ever exceeded, no practice overshoots its target, and shares always sum to 1. Budgets are the
    envelope (``x (1 + envelope_growth)`` a year) times the shares, in pence by largest-remainder
    rounding (:func:`allocate_pence`), so they always add up to the envelope exactly. This follows the
    DH's pace-of-change policy for PCT allocations (distance from target, capped moves towards it)
    and the practice-level bands of 10% (national guidance) or a local 5% (Audit Commission case
    study 9, North East Lincolnshire PCT).

Everything is vectorised numpy/pandas: the only Python loops run over components, years of the glide
path or formula terms, never over practices or rows.
"""

from __future__ import annotations

from pbc_analysis.stages.budgets.completeness import completeness_for, completeness_from_model, completeness_from_snapshots, completeness_table
from pbc_analysis.stages.budgets.costs import (
                                                      COMPONENTS,
                                                      annual_costs,
                                                      base_years_for,
                                                      check_financial_year,
                                                      factor_map,
                                                      practice_cells,
                                                      project_tariff,
                                                      recost_cells,
)
from pbc_analysis.stages.budgets.lists import N_CELLS, cell_index, cost_curves, list_growth, practice_lists, weighted_lists
from pbc_analysis.stages.budgets.need import (
                                                      TERMS,
                                                      compare_with_provided,
                                                      fair_shares,
                                                      fit_need_model,
                                                      historic_budgets,
                                                      model_fit,
                                                      parse_formula,
                                                      practice_covariates,
)
from pbc_analysis.stages.budgets.pace import allocate_pence, glide_path, winners_and_losers
from pbc_analysis.stages.budgets.params import Components, Curves, FundFrom, ListIndex, Params, Recost
from pbc_analysis.stages.budgets.stage import Result, resolved, run, set_budgets
from pbc_analysis.stages.budgets.statement import STATEMENT_COLUMNS, budget_statement, describe, headline, result_tables, rounded

__all__ = [
    "COMPONENTS", "Components", "Curves", "FundFrom", "ListIndex", "N_CELLS", "Params", "Recost", "Result",
    "STATEMENT_COLUMNS", "TERMS", "allocate_pence", "annual_costs", "base_years_for", "budget_statement", "cell_index",
    "check_financial_year", "compare_with_provided", "completeness_for", "completeness_from_model",
    "completeness_from_snapshots", "completeness_table", "cost_curves", "describe", "factor_map", "fair_shares",
    "fit_need_model", "glide_path", "headline", "historic_budgets", "list_growth", "model_fit", "parse_formula",
    "practice_cells", "practice_covariates", "practice_lists", "project_tariff", "recost_cells", "resolved",
    "result_tables", "rounded", "run", "set_budgets", "weighted_lists", "winners_and_losers",
]
