"""The risk stage's entry point: :func:`run` (settings from :class:`~pbc_analysis.stages.risk.params.Params`),
its :class:`Result`, and the results: tables, results.json headlines, plain-language description.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import pandas as pd

from pbc_analysis import data as _data
from pbc_analysis.stages import budgets as _bud
from pbc_analysis.stages.risk.monitoring import Monitoring, monitor
from pbc_analysis.stages.risk.params import Params
from pbc_analysis.stages.risk.pool import RiskResult, assess_pool

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
            "interval_level": s["level"],
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

    def tables(self) -> dict[str, pd.DataFrame]:
        """The result tables the notebook writes (``risk_*``, :func:`result_tables`).

        Returns
        -------
        dict
        """
        return result_tables(self.pool, self.monitoring)

    def headline(self) -> dict[str, Any]:
        """The ``risk`` and ``monitoring`` parts of results.json's ``budgets`` section.

        Returns
        -------
        dict
        """
        return {"risk": headline(self.pool), "monitoring": monitoring_headline(self.monitoring)}

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
    pool = assess_pool(inputs, budgets, params, reporting_floor=reporting_floor)
    return Result(pool, monitor(inputs, budgets, params, as_at=budgets.params.as_at), params)
