"""The budget-setting stage's entry point: :func:`run` (settings from :class:`~pbc_analysis.stages.budgets.params.Params`)
and its :class:`Result`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pbc_analysis import data as _data
from pbc_analysis.core import calendar
from pbc_analysis.core.checks import check_number
from pbc_analysis.core.params import AUTO
from pbc_analysis.stages.budgets.completeness import completeness_for
from pbc_analysis.stages.budgets.costs import annual_costs, base_years_for, factor_map, practice_cells, project_tariff, recost_cells
from pbc_analysis.stages.budgets.lists import cost_curves, list_growth, practice_lists, weighted_lists
from pbc_analysis.stages.budgets.need import compare_with_provided, fair_shares, fit_need_model, historic_budgets, model_fit, parse_formula, practice_covariates
from pbc_analysis.stages.budgets.pace import glide_path, winners_and_losers
from pbc_analysis.stages.budgets.params import Params
from pbc_analysis.stages.budgets.statement import budget_statement, describe, headline, result_tables

__all__ = ["Result", "resolved", "run", "set_budgets"]


@dataclass
class Result:
    """Everything the budget stage computed (tidy tables), its settings and the completeness table it used."""

    statement: pd.DataFrame
    historic: pd.DataFrame
    shares: pd.DataFrame
    coefficients: pd.DataFrame
    fit: pd.DataFrame
    fitted: pd.DataFrame
    path: pd.DataFrame
    winners: pd.DataFrame
    curves: pd.DataFrame
    covariates: pd.DataFrame
    provided: pd.DataFrame
    cells: pd.DataFrame = field(repr=False)
    lists: pd.DataFrame = field(repr=False)
    settings: dict[str, Any] = field(default_factory=dict)
    params: Params = field(default_factory=Params)
    #: month, factor (ci_low, ci_high, source): the completeness factors the cells were divided by
    completeness: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["month", "factor"]), repr=False)

    def tables(self) -> dict[str, pd.DataFrame]:
        """The result tables the notebook writes (``bud_*``, :func:`~pbc_analysis.stages.budgets.statement.result_tables`).

        Returns
        -------
        dict
        """
        return result_tables(self)

    def headline(self) -> dict[str, Any]:
        """The ``budgets`` section of results.json without the risk stage's parts (:func:`headline`).

        Returns
        -------
        dict
        """
        return headline(self)

    def describe(self) -> str:
        """The plain-language reading of the headline (:func:`describe`).

        Returns
        -------
        str
        """
        return describe(self.headline())


def resolved(inputs: _data.Inputs, params: Params) -> Params:
    """``params`` with every ``"auto"`` derived from ``inputs`` and the cross-setting rules checked.

    Parameters
    ----------
    inputs : pbc_analysis.data.Inputs
    params : Params

    Returns
    -------
    Params
        ``params`` itself when nothing is ``"auto"`` (``pbc run`` injects resolved values).

    References
    ----------
    :meth:`pbc_analysis.core.params.StageParams.resolve`.
    """
    if not params.auto():
        return params
    from pbc_analysis.stages import facts as _facts

    return params.resolve(_facts.data_facts(inputs))[0]


def run(inputs: _data.Inputs, params: Params, supplied_curves: pd.DataFrame | None = None,
        covariates: pd.DataFrame | None = None) -> Result:
    """The budget stage: completeness of the latest months, then budgets set by :func:`set_budgets`.

    Parameters
    ----------
    inputs : pbc_analysis.data.Inputs
        Validated inputs.
    params : Params
        The stage's settings (an ``"auto"`` left is derived from ``inputs``).
    supplied_curves : DataFrame, optional
        Age-sex cost curves for ``curves="supplied"``.
    covariates : DataFrame, optional
        Further practice covariates the formula may name (``practice_code`` and one column each).

    Returns
    -------
    Result

    References
    ----------
    See :mod:`pbc_analysis.stages.budgets` (Audit Commission 2007; DH weighted capitation formula).
    """
    params = resolved(inputs, params)
    completeness = completeness_for(inputs, params.completeness_factors, params.completeness_months,
                                    params.completeness_snapshots)
    return set_budgets(inputs, params, completeness, supplied_curves=supplied_curves, covariates=covariates)


def _tariff(inputs: _data.Inputs, params: Params) -> pd.DataFrame:
    tariff, target = inputs.tariff, params.target_year
    if params.tariff_uplift is not None:
        return project_tariff(tariff, target, params.tariff_uplift)
    if not (tariff["financial_year"] == target).any():
        raise ValueError(f"target_year {target!r}: the tariff has no prices for it (it has "
                         f"{', '.join(sorted(tariff['financial_year'].unique()))}); add that year's national tariff "
                         "to tariff.csv, or set tariff_uplift (e.g. 0.025) to project the latest year's prices")
    return tariff


def _curves(inputs: _data.Inputs, cells: pd.DataFrame, tariff: pd.DataFrame, params: Params, years: list[str],
            base_months: list[str], supplied: pd.DataFrame | None) -> pd.DataFrame:
    """Age-sex cost curves, calibrated on the base years' activity and population."""
    pop_base = inputs.population[inputs.population["month"].isin(base_months)]
    py = (pop_base.groupby(["age_band", "sex"], observed=True, sort=True)["registered"].sum() / 12.0).reset_index(
        name="person_years")
    obs = (cells[cells["financial_year"].isin(years)].groupby(["pod", "specialty_code"], sort=True)
           ["activity_adjusted"].sum().rename("activity").reset_index())
    return cost_curves(inputs.reference_rates, tariff, params.target_year, params.curves, observed=obs, population=py,
                       supplied=supplied)


def _need_data(annual: pd.DataFrame, lists_base: pd.DataFrame, years: list[str]) -> pd.DataFrame:
    """The need model's data: base-year annual cost per practice and component, base-year weighted list."""
    comp_cost = (annual.pivot_table(index=["practice_code", "component"], columns="financial_year",
                                    values="annual_at_target", aggfunc="sum", fill_value=0.0)
                 .reindex(columns=years, fill_value=0.0).mean(axis=1).rename("cost").reset_index())
    comp_names = list(dict.fromkeys(comp_cost["component"]))
    wl = lists_base.melt(id_vars="practice_code", value_vars=[f"weighted_{c}" for c in comp_names], var_name="component",
                         value_name="wl").rename(columns={"wl": "weighted_list"})
    wl["component"] = wl["component"].str.slice(len("weighted_"))
    return comp_cost.merge(wl, on=["practice_code", "component"], how="left")


def set_budgets(inputs: _data.Inputs, params: Params, completeness: pd.DataFrame | None = None,
                supplied_curves: pd.DataFrame | None = None, covariates: pd.DataFrame | None = None,
                level: float = 0.95) -> Result:
    """Set indicative budgets for ``params.target_year`` from validated inputs (every rule in the module docstring).

    Parameters
    ----------
    inputs : pbc_analysis.data.Inputs
        Validated inputs.
    params : Params
        The stage's settings: ``envelope`` 0 means the sum of the historic budgets; ``components``
        ``"pod_group"`` fits the need model separately for planned care, non-elective admissions and A&E,
        ``"total"`` one model for all spend.
    completeness : DataFrame, optional
        ``month, factor``: incomplete months divided by their factor (``run`` computes it from the settings).
    supplied_curves, covariates : DataFrame, optional
        As for :func:`run`.
    level : float
        Level of the need model's confidence intervals.

    Returns
    -------
    Result

    References
    ----------
    Audit Commission (2007), paras 80-94 and case study 9; DH (2008), weighted capitation formula; Dixon J
    et al. (2011), BMJ 342:d930.
    """
    if params.target_year == AUTO:
        params = resolved(inputs, params)
    target = params.target_year
    check_number("level", level, 0.0, 1.0, low_open=True, high_open=True)
    need, supply = parse_formula(params.formula, [] if covariates is None else [c for c in covariates.columns
                                                                                 if c != "practice_code"])
    window = inputs.window.months if inputs.window is not None else sorted(inputs.activity["month"].unique())
    years = base_years_for(target, list(dict.fromkeys(calendar.financial_year_of(window))), params.base_years)
    tariff = _tariff(inputs, params)
    cells = recost_cells(practice_cells(inputs.activity, completeness), tariff, target, params.recost)
    base_months = [m for y in years for m in calendar.fy_months(y) if m in set(window)]
    curve_tab = _curves(inputs, cells, tariff, params, years, base_months, supplied_curves)
    lists = practice_lists(inputs.population, curve_tab)
    annual = annual_costs(cells, years, window, params.components)
    idx = list_growth(lists, target, years, "weighted_list" if params.list_index == "weighted" else "registered")
    idx["list_index_registered"] = list_growth(lists, target, years, "registered")["list_index"].to_numpy()
    hist = historic_budgets(annual, idx, years, target)
    lb = weighted_lists(lists, base_months)
    cov = practice_covariates(inputs.practices, cells, lb, inputs.engagement, years, covariates)
    coefs, fitted = fit_need_model(_need_data(annual, lb, years), cov, need, supply, level)
    shares = fair_shares(fitted, lists[lists["month"] == idx["list_month"].iloc[0]])
    hist_total = float(np.round(hist["historic_budget"].sum(), 2))
    E = float(params.envelope) if params.envelope > 0 else hist_total
    start = hist[["practice_code", "historic_budget"]].merge(shares[["practice_code", "target_share"]], on="practice_code")
    path = glide_path(start, E, target, params.pace_years, params.pace_cap, params.band, params.envelope_growth,
                      params.fund_from)
    settings = {"target_year": target, "base_years": years, "envelope": round(E, 2),
                "envelope_is_historic_total": params.envelope == 0, "historic_total": hist_total, "recost": params.recost,
                "list_index": params.list_index, "curves": params.curves, "components": params.components,
                "formula": params.formula, "need_terms": need, "supply_terms": supply, "pace_years": int(params.pace_years),
                "pace_cap": float(params.pace_cap), "band": float(params.band),
                "envelope_growth": float(params.envelope_growth), "fund_from": params.fund_from,
                "list_month": str(idx["list_month"].iloc[0]), "tariff_projected": params.tariff_uplift is not None,
                "tariff_uplift": params.tariff_uplift, "completeness_months": sorted(factor_map(completeness)),
                "level": level}
    statement = budget_statement(inputs.practices, hist, shares, path, settings)
    return Result(statement, hist, shares, coefs, fit=model_fit(fitted, lb), fitted=fitted, path=path,
                  winners=winners_and_losers(path, inputs.practices), curves=curve_tab, covariates=cov,
                  provided=compare_with_provided(hist, inputs.budgets), cells=cells, lists=lists, settings=settings,
                  params=params, completeness=pd.DataFrame(columns=["month", "factor"]) if completeness is None
                  else completeness)
