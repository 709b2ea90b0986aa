"""The risk stage's entry point: :func:`run` (settings from :class:`~pbc_analysis.stages.risk.params.Params`),
its :class:`Result`, and the results: tables, results.json headlines, plain-language description.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

from pbc_analysis import data as _data
from pbc_analysis.stages import budgets as _bud
from pbc_analysis.stages.risk.basis import SUPPLIED, basis_budgets, threshold_table
from pbc_analysis.stages.risk.monitoring import Monitoring, monitor
from pbc_analysis.stages.risk.params import Params
from pbc_analysis.stages.risk.pool import RiskResult, assess_pool, inflation_to_target

__all__ = ["Result", "describe", "headline", "monitoring_headline", "result_tables", "run"]


def headline(risk: RiskResult) -> dict:
    """Risk-pool headline figures (the ``risk`` part of results.json's ``budgets`` section).

    Parameters
    ----------
    risk : RiskResult
        From :func:`pbc_analysis.stages.risk.pool.assess_pool`.

    Returns
    -------
    dict

    References
    ----------
    See :mod:`pbc_analysis.stages.risk` ("Risk pool", "Pool adequacy").
    """
    s = risk.settings
    r = _bud.rounded
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
    """In-year monitoring headline figures (the ``monitoring`` part of the ``budgets`` section).

    Parameters
    ----------
    mon : Monitoring
        From :func:`pbc_analysis.stages.risk.monitoring.monitor`.

    Returns
    -------
    dict

    References
    ----------
    See :mod:`pbc_analysis.stages.risk` ("In-year monitoring").
    """
    if not mon.available:
        return {"available": False, "note": mon.note}
    s, st = mon.settings, mon.status
    r = _bud.rounded
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
            "interval_level": s["level"], "amber": s["amber"], "red": s["red"],
            "backtest_coverage": {y: r(c) for y, c in zip(allk["financial_year"], allk["coverage"])},
            "backtest_coverage_overall": r(float(allk["covered"].sum() / allk["n"].sum()))}


def _disclosed(n: float) -> str:
    """A count of patients for publication: through :func:`pbc_analysis.methods.disclosure.disclose_counts`."""
    from pbc_analysis.methods.disclosure import disclose_counts

    v = disclose_counts([int(round(n))]).iloc[0]
    return v if isinstance(v, str) else f"{int(v):,}"


def describe(risk_head: Mapping[str, Any], monitoring_head: Mapping[str, Any] | None = None) -> str:
    """A plain-language reading of :func:`headline` and :func:`monitoring_headline` (numbers from the results).

    Parameters
    ----------
    risk_head : mapping
        The ``risk`` part of the ``budgets`` section.
    monitoring_head : mapping, optional
        The ``monitoring`` part.

    Returns
    -------
    str
        Markdown; patient counts through the disclosure rule.

    References
    ----------
    NHS Digital disclosure rule for counts (DOMAIN.md "Publishing rules").
    """
    h = risk_head
    lines = [f"**Risk pool.** Cost above GBP {h['threshold_gbp']:,.0f} per patient a year goes to a pool funded by a "
             f"{h['top_slice']:.1%} top-slice (GBP {h['pool_gbp']:,.0f}). From the base years' patients, re-priced, "
             f"about {_disclosed(h['expected_patients_above_threshold'])} patients a year will cross the threshold, costing the "
             f"pool GBP {h['expected_pool_charge_gbp']:,.0f} on average (SD GBP {h['sd_pool_charge_gbp']:,.0f}). The "
             f"chance that the pool is exhausted is {h['probability_pool_exhausted']:.1%} ({h['n_sims']:,} simulated "
             f"years); the smallest top-slice that keeps it at or below {h['max_probability']:.0%} is "
             f"{h['smallest_adequate_top_slice']:.2%}."]
    lines[-1] += _recommendation(h)
    if h.get("budget_basis"):
        lines.insert(0, _basis_sentence(h))
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
                f"covered the actual outturn {m['backtest_coverage_overall']:.1%} of the time." + _rag_rules(m))
    return "\n\n".join(lines)


def _basis_sentence(h: Mapping[str, Any]) -> str:
    """Which budget the pool and monitoring use (the budget basis), in words."""
    if h["budget_basis"] == "supplied":
        text = ("**Budget basis.** The pool's top-slice and in-year monitoring use the budget issued for the year "
                "(budgets.csv), the same budget savings sharing measures underspends against")
        n = int(h.get("practices_without_supplied_budget") or 0)
        text += (f"; {n} practice(s) had none and keep the budget set here." if n else ".")
    else:
        text = ("**Budget basis.** The pool's top-slice and in-year monitoring use the budgets set here (fair shares "
                "with pace of change), a proposal; savings sharing measures underspends against the budgets issued.")
    return text + f" The envelope is GBP {h['envelope_gbp']:,.0f}." if h.get("envelope_gbp") is not None else text


def _recommendation(h: Mapping[str, Any]) -> str:
    """The recommended top-slice at the current threshold and the others of the threshold table."""
    rows = h.get("thresholds") or []
    if not rows:
        return ""
    now = next((t for t in rows if t["threshold_gbp"] == h["threshold_gbp"]), None)
    text = ""
    if now is not None and now["smallest_adequate_top_slice"] > h["top_slice"]:
        text = (f" **Recommendation:** the {h['top_slice']:.1%} top-slice is not adequate; at a GBP "
                f"{h['threshold_gbp']:,.0f} threshold set it to at least {now['smallest_adequate_top_slice']:.2%} (a "
                f"pool of GBP {now['recommended_pool_gbp']:,.0f}).")
    elif now is not None:
        text = f" The {h['top_slice']:.1%} top-slice is adequate at the GBP {h['threshold_gbp']:,.0f} threshold."
    others = [t for t in rows if t is not now]
    if others:
        text += " Other thresholds: " + "; ".join(
            f"GBP {t['threshold_gbp']:,.0f} needs {t['smallest_adequate_top_slice']:.2%} (pool exhausted in "
            f"{t['probability_exhausted']:.0%} of years at {h['top_slice']:.1%})" for t in others) + "."
    return text


def _rag_rules(m: Mapping[str, Any]) -> str:
    """The red / amber / green rules with the run's triggers."""
    if "amber" not in m:
        return ""
    return (f" Red: forecast overspend of {m['red']:.0%} of budget or more, or {m['amber']:.0%} or more with a special "
            f"cause of concern on the practice's SPC chart; amber: {m['amber']:.0%} or more, or such a special cause; "
            "green: otherwise (an underspend is never a warning).")


def result_tables(risk: RiskResult, mon: Monitoring) -> dict[str, pd.DataFrame]:
    """The run's risk tables (``risk_*``); no patient-level rows.

    Parameters
    ----------
    risk : RiskResult
    mon : Monitoring

    Returns
    -------
    dict
        ``risk_pool_charges`` (practice x year, re-priced to the target year), ``risk_pool_years``,
        ``risk_adequacy`` (top-slice vs P(exhausted)), ``risk_net_budgets``, ``risk_completeness`` and, when
        monitoring is available, ``risk_profile``, ``risk_monitoring`` (practice x month of the target
        year), ``risk_monitoring_consortium``, ``risk_status`` (practices at ``as_at``),
        ``risk_backtest_coverage`` and ``risk_spc`` (practice and consortium XmR charts).

    References
    ----------
    docs/data_dictionary.md (result tables).
    """
    out = {"risk_pool_charges": risk.charges, "risk_pool_years": risk.years, "risk_adequacy": risk.adequacy,
           "risk_net_budgets": risk.net_budgets, "risk_completeness": mon.completeness}
    if mon.available:
        spc_cols = [c for c in mon.spc.columns if c not in ("baseline",)]
        out.update({"risk_profile": mon.profile, "risk_monitoring": mon.monthly,
                    "risk_monitoring_consortium": mon.consortium, "risk_status": mon.status,
                    "risk_backtest_coverage": mon.coverage, "risk_spc": mon.spc[spc_cols]})
    return out


@dataclass
class Result:
    """The risk stage's outputs (:func:`run`): the risk pool and in-year monitoring, with the settings used."""

    pool: RiskResult
    monitoring: Monitoring
    params: Params
    #: practice_code, supplied_budget, set_budget, budget, budget_source (:func:`basis.basis_budgets`)
    basis: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    #: the pool at each candidate threshold (:func:`basis.threshold_table`)
    thresholds: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    budget_basis: str = SUPPLIED

    def tables(self) -> dict[str, pd.DataFrame]:
        """The result tables the notebook writes (``risk_*``, :func:`result_tables`).

        Returns
        -------
        dict
        """
        out = result_tables(self.pool, self.monitoring)
        out["risk_net_budgets"] = net_budget_table(self.pool, self.basis)
        out["risk_thresholds"] = self.thresholds
        return out

    def headline(self) -> dict[str, Any]:
        """The ``risk`` and ``monitoring`` parts of results.json's ``budgets`` section.

        Returns
        -------
        dict
        """
        risk_head = headline(self.pool)
        risk_head.update(basis_headline(self.basis, self.budget_basis, self.thresholds, self.pool))
        return {"risk": risk_head, "monitoring": monitoring_headline(self.monitoring)}

    def describe(self) -> str:
        """The plain-language reading of the headline (:func:`describe`).

        Returns
        -------
        str
        """
        head = self.headline()
        return describe(head["risk"], head["monitoring"])


def run(inputs: _data.Inputs, params: Params, budgets: _bud.Result, reporting_floor: float | None = None) -> Result:
    """The risk stage: the risk pool and in-year monitoring of the budgets the budget stage set.

    Parameters
    ----------
    inputs : pbc_analysis.data.Inputs
        Validated inputs.
    params : Params
        The stage's settings.
    budgets : pbc_analysis.stages.budgets.Result
        From :func:`pbc_analysis.stages.budgets.run`: target year, base years, envelope, cells at the target
        year's prices, the completeness table, and ``as_at`` (its settings) for monitoring.
    reporting_floor : float, optional
        The ``high_cost_patients`` table's reporting floor (the threshold may not be below it).

    Returns
    -------
    Result

    References
    ----------
    See :mod:`pbc_analysis.stages.risk` (Klugman, Panjer and Willmot; Williams and Goodman 1971; Making Data
    Count; Audit Commission 2007, paras 130-134).
    """
    on_basis, basis = basis_budgets(inputs, budgets)
    pool = assess_pool(inputs, on_basis, params, reporting_floor=reporting_floor)
    thresholds = threshold_table(inputs, on_basis, [params.threshold, *params.threshold_options], params.top_slice,
                                 params.max_probability, params.n_sims, params.seed, reporting_floor,
                                 inflation_to_target(on_basis.cells))
    return Result(pool, monitor(inputs, on_basis, params, as_at=budgets.params.as_at), params, basis, thresholds,
                  str(budgets.params.budget_basis))


def net_budget_table(pool: RiskResult, basis: pd.DataFrame) -> pd.DataFrame:
    """Each practice's budget of the target year side by side: supplied, set, the basis used, the top-slice, the pool
    charges of its patients above the threshold in that year, and the net budget.

    Parameters
    ----------
    pool : RiskResult
        From :func:`pbc_analysis.stages.risk.pool.assess_pool` (on the basis budgets).
    basis : pandas.DataFrame
        From :func:`pbc_analysis.stages.risk.basis.basis_budgets`.

    Returns
    -------
    pandas.DataFrame
        ``practice_code, supplied_budget, set_budget, budget_source, budget, top_slice_contribution, net_budget,
        pool_charge`` (GBP; ``pool_charge`` is what the pool pays for the practice's patients in the target year, 0
        when none, missing when the high-cost table has no such year).

    References
    ----------
    Audit Commission (2007), paras 130-134; module :mod:`pbc_analysis.stages.risk.basis`.
    """
    year = pool.settings["target_year"]
    charges = pool.charges[pool.charges["financial_year"].astype(str) == year]
    by_code = charges.groupby("practice_code")["pool_charge"].sum()
    out = pool.net_budgets.copy()
    if len(basis):
        out = out.merge(basis[["practice_code", "supplied_budget", "set_budget", "budget_source"]], on="practice_code",
                        how="left", validate="one_to_one")
    out["pool_charge"] = out["practice_code"].map(by_code).fillna(0.0) if len(charges) else np.nan
    cols = ["practice_code", "supplied_budget", "set_budget", "budget_source", "budget", "top_slice_contribution",
            "net_budget", "pool_charge"]
    return out[[c for c in cols if c in out.columns]]


def basis_headline(basis: pd.DataFrame, budget_basis: str, thresholds: pd.DataFrame, pool: RiskResult) -> dict[str, Any]:
    """The budget basis and the threshold table's recommendation, for the ``risk`` part of results.json.

    Parameters
    ----------
    basis : pandas.DataFrame
    budget_basis : str
    thresholds : pandas.DataFrame
    pool : RiskResult

    Returns
    -------
    dict
        ``budget_basis``, ``practices_without_supplied_budget``, ``envelope_gbp`` and ``thresholds`` (per threshold:
        P(exhausted) at the current top-slice and the smallest adequate top-slice).

    References
    ----------
    Module :mod:`pbc_analysis.stages.risk.basis`.
    """
    r = _bud.rounded
    missing = int((basis["budget_source"] == "set (no supplied budget)").sum()) if len(basis) else 0
    return {"budget_basis": budget_basis, "practices_without_supplied_budget": missing,
            "envelope_gbp": round(float(pool.settings["envelope"]), 2),
            "thresholds": [{"threshold_gbp": float(t.threshold), "probability_exhausted": r(t.probability_exhausted),
                            "smallest_adequate_top_slice": r(t.smallest_adequate_top_slice),
                            "recommended_pool_gbp": round(float(t.recommended_pool), 2)}
                           for t in thresholds.itertuples()]}
