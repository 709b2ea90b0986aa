"""The budgets a finance director signs: every practice's budget of the target year on one basis, side by side.

Read from the run's tables (nothing is recomputed): the budget issued for the year (``budgets.csv``), the budget
set by fair shares and pace of change, the basis the run uses (the budget stage's ``budget_basis``), the risk
pool's top-slice and the net budget (``risk_net_budgets``), and in-year monitoring's forecast outturn, variance and
status at its reporting month (``risk_status``). Pool charges are shown for the PCT only: per practice, the charge
of one to seven patients above the threshold is the cost of one or a few patients (it is withheld from the
published tables, :mod:`pbc_analysis.publish.registry`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from IPython.display import HTML

from pbc_analysis.core.labels import measure_label
from pbc_analysis.core.numbers import gbp_text as _gbp
from pbc_analysis.methods import disclosure
from pbc_analysis.publish import results
from pbc_analysis.publish.markdown import html_table as _table

__all__ = ["BASIS_WORDS", "budget_basis_frame", "budget_basis_table", "completeness_comparison_table",
           "spend_definitions_table", "threshold_table"]

#: the budget stage's budget_basis in words
BASIS_WORDS = {"supplied": "the budget issued for the year (budgets.csv)",
               "set": "the budget set by fair shares and pace of change in this run"}


def _read(run_dir: Path, name: str) -> pd.DataFrame | None:
    return results.read_table(run_dir, name) if (run_dir / results.TABLES / f"{name}.csv").is_file() else None


def budget_basis_frame(run_dir: str | Path) -> pd.DataFrame | None:
    """One row per practice: budget issued, budget set, the basis used, top-slice, net budget and monitoring (numbers).

    Parameters
    ----------
    run_dir : str or Path
        The run directory (``tables/risk_net_budgets.csv``, ``bud_statement.csv`` and, when monitoring ran,
        ``risk_status.csv``).

    Returns
    -------
    pandas.DataFrame or None
        ``practice_code, practice_name, consortium, supplied_budget, set_budget, set_vs_supplied, budget_source,
        budget, top_slice_contribution, net_budget`` and, with monitoring, ``as_at, forecast_outturn, variance,
        status`` (GBP; ``set_vs_supplied`` and ``variance`` as shares); None when the budgets notebook did not run.

    References
    ----------
    Audit Commission (2007), Putting commissioning into practice, paras 100-110 and 130-134; module
    :mod:`pbc_analysis.stages.risk.basis`.
    """
    run_dir = Path(run_dir)
    net, statement = _read(run_dir, "risk_net_budgets"), _read(run_dir, "bud_statement")
    if net is None or statement is None:
        return None
    names = statement[["practice_code", "practice_name", "consortium"]]
    out = names.merge(net, on="practice_code", how="right", validate="one_to_one")
    if "set_budget" not in out.columns:  # a run before the basis existed: the budget is the set one
        out = out.assign(supplied_budget=np.nan, set_budget=out["budget"], budget_source="set")
    out["set_vs_supplied"] = out["set_budget"] / out["supplied_budget"] - 1
    cols = ["practice_code", "practice_name", "consortium", "supplied_budget", "set_budget", "set_vs_supplied",
            "budget_source", "budget", "top_slice_contribution", "net_budget"]
    out = out[cols]
    status = _read(run_dir, "risk_status")
    if status is not None and len(status):
        s = status[["practice_code", "month", "forecast_centre", "variance", "status"]].rename(
            columns={"month": "as_at", "forecast_centre": "forecast_outturn"})
        out = out.merge(s, on="practice_code", how="left", validate="one_to_one")
    return out.sort_values("practice_code", kind="stable").reset_index(drop=True)


def _pct(v: Any) -> str:
    return "" if pd.isna(v) else f"{v:+.1%}"


def budget_basis_table(run_dir: str | Path) -> HTML | None:
    """The budget basis table for the report: gross (issued and set), basis, top-slice, net, and monitoring.

    Parameters
    ----------
    run_dir : str or Path
        The run directory.

    Returns
    -------
    IPython.display.HTML or None
        None when the budgets notebook did not run.

    References
    ----------
    As :func:`budget_basis_frame`.
    """
    f = budget_basis_frame(run_dir)
    if f is None:
        return None
    risk = ((results.read_results(run_dir).get("budgets") or {}).get("risk") or {})
    basis = str(risk.get("budget_basis", "set"))
    shown = pd.DataFrame({
        "Practice": f["practice_code"] + " " + f["practice_name"].fillna(""), "Consortium": f["consortium"],
        "Budget issued (GBP)": f["supplied_budget"].map(_gbp), "Budget set, fair shares (GBP)": f["set_budget"].map(_gbp),
        "Set vs issued": f["set_vs_supplied"].map(_pct), "Basis used": f["budget_source"],
        "Gross budget (GBP)": f["budget"].map(_gbp), "Risk-pool top-slice (GBP)": f["top_slice_contribution"].map(_gbp),
        "Net budget (GBP)": f["net_budget"].map(_gbp)})
    if "forecast_outturn" in f.columns:
        month = f["as_at"].dropna().iloc[0] if f["as_at"].notna().any() else ""
        shown[f"Forecast outturn at {month} (GBP)"] = f["forecast_outturn"].map(_gbp)
        shown["Variance vs gross"] = f["variance"].map(_pct)
        shown["Status"] = f["status"].fillna("")
    charge = risk.get("actual_pool_charge_target_year_gbp")
    note = (f"Basis: {BASIS_WORDS.get(basis, basis)}; savings sharing measures underspends against the budget issued. "
            "Net budget = gross budget - top-slice; the top-slices fund the risk pool"
            + (f", which paid GBP {charge:,.0f} in the year for patients above the threshold (shown for the PCT only: "
               "per practice it could be the cost of one patient)." if charge is not None else "."))
    return _table(shown, "Budgets of the year on one basis: issued, set, top-slice, net and monitoring (GBP)", note=note)


def threshold_table(run_dir: str | Path) -> HTML | None:
    """The risk pool at each candidate threshold, with the smallest adequate top-slice (the recommendation).

    Parameters
    ----------
    run_dir : str or Path
        The run directory (``tables/risk_thresholds.csv``).

    Returns
    -------
    IPython.display.HTML or None
        None when the run has no threshold table.

    References
    ----------
    :func:`pbc_analysis.stages.risk.basis.threshold_table`; Audit Commission (2007), paras 130-134.
    """
    t = _read(Path(run_dir), "risk_thresholds")
    if t is None or not len(t):
        return None
    risk = ((results.read_results(run_dir).get("budgets") or {}).get("risk") or {})
    top, level = risk.get("top_slice"), risk.get("max_probability")
    now = risk.get("threshold_gbp")
    shown = pd.DataFrame({
        "Threshold (GBP a patient a year)": [f"{v:,.0f}" + (" (current)" if v == now else "") for v in t["threshold"]],
        "Expected patients above it": disclosure.disclose_counts(t["expected_patients"].round().astype(int)).map(
            lambda v: f"{v:,}" if isinstance(v, (int, np.integer)) else str(v)),
        "Expected pool charge (GBP)": t["expected_charge"].map(_gbp),
        f"Chance the pool is exhausted at {top:.1%}" if top is not None else "Chance the pool is exhausted":
            t["probability_exhausted"].map(lambda v: f"{v:.1%}"),
        "Smallest adequate top-slice": t["smallest_adequate_top_slice"].map(lambda v: f"{v:.2%}"),
        "Pool it gives (GBP)": t["recommended_pool"].map(_gbp)})
    note = (f"Adequate: the pool is exhausted in at most {level:.0%} of simulated years. Expected patients are modelled "
            "(a mean over simulated years), rounded and shown as counts are." if level is not None else None)
    return _table(shown, "Risk pool: thresholds and the top-slice each needs (recommendation)", note=note)


def spend_definitions_table(run_dir: str | Path) -> HTML | None:
    """The evaluation year's spend by each of its definitions, side by side, with the question each answers.

    One quantity, one definition; where the run holds several figures for the spend of a year, they answer
    different questions and are shown together: recorded so far (data quality: the latest months incomplete),
    completed for the data lag (attribution: the ledger, savings and sharing) and the forecast outturn (in-year
    monitoring of the budgets).

    Parameters
    ----------
    run_dir : str or Path
        The run directory.

    Returns
    -------
    IPython.display.HTML or None
        None when the run has no attribution.

    References
    ----------
    DOMAIN.md, data lag (SUS/HES months incomplete for up to three months).
    """
    res = results.read_results(run_dir)
    att = res.get("attribution") or {}
    year = att.get("evaluation_year")
    if not year or att.get("spend") is None:
        return None
    rows = []
    recorded = ((res.get("data_quality") or {}).get("cost_by_financial_year_gbp") or {}).get(year)
    if recorded is not None:
        rows.append((f"Recorded so far ({year})", recorded, "data quality",
                     "activity x price as the extract holds it; its latest months are incomplete (data lag)"))
    rows.append((f"Completed for the data lag ({year})", att["spend"], "attribution",
                 "the latest months divided by their completeness (elective activity from GP referrals, emergency "
                 "activity from the same months a year earlier): the ledger, savings and sharing use it"))
    mon = ((res.get("budgets") or {}).get("monitoring") or {})
    if mon.get("available") and mon.get("pct_forecast_outturn_gbp") is not None:
        rows.append((f"Forecast outturn at {mon.get('as_at')}", mon["pct_forecast_outturn_gbp"], "in-year monitoring",
                     "the year to date projected with the seasonal profile, the latest months completed by the "
                     "data-quality model; the red/amber/green status uses it"))
    shown = pd.DataFrame([{"Figure": r[0], "GBP": _gbp(r[1]), "From": r[2], "What it answers": r[3]} for r in rows])
    note = ("The completed and forecast figures exceed the recorded one by the activity still to arrive; they differ "
            "from each other because they complete the latest months by different models (compared month by month "
            "in the next table) and because the forecast is for the year's end as seen from its reporting month.")
    return _table(shown, f"Spend of {year}: one quantity, the figures that answer different questions", note=note)


def completeness_comparison_table(run_dir: str | Path) -> HTML | None:
    """The completeness of each incomplete month by the three models that estimate it, side by side.

    Parameters
    ----------
    run_dir : str or Path
        The run directory (``dq_completeness``, ``att_completeness``, ``risk_completeness``).

    Returns
    -------
    IPython.display.HTML or None
        None when the run has none of the three tables.

    References
    ----------
    McCullagh P, Nelder JA (1989), Generalized Linear Models (the data-quality model's quasi-Poisson); Mack T (1993),
    ASTIN Bulletin 23:213-225 (chain ladder, for snapshots).
    """
    run_dir = Path(run_dir)
    dq, att, risk = (_read(run_dir, n) for n in ("dq_completeness", "att_completeness", "risk_completeness"))
    if att is None or not len(att):
        return None
    out = att[["pod", "month", "completeness"]].rename(columns={"completeness": "attribution"})
    if dq is not None and len(dq):
        out = out.merge(dq[["pod", "month", "completeness"]].rename(columns={"completeness": "data quality"}),
                        on=["pod", "month"], how="left")
    if risk is not None and len(risk):
        out = out.merge(risk[["month", "factor"]].rename(columns={"factor": "monitoring (all points of delivery)"}),
                        on="month", how="left")
    out = out.sort_values(["month", "pod"], kind="stable")
    shown = out.assign(pod=out["pod"].map(lambda c: measure_label(c, capital=True)))
    for c in shown.columns[2:]:
        shown[c] = shown[c].map(lambda v: "" if pd.isna(v) else f"{v:.1%}")
    shown = shown.rename(columns={"pod": "Point of delivery", "month": "Month"})
    note = ("Share of the month's activity already in the extract. Data quality: a quasi-Poisson trend and season model "
            "of complete months, per point of delivery; attribution: elective activity expected from GP referrals, "
            "emergency activity from the same month a year earlier; monitoring: the data-quality model applied to "
            "the activity of all points of delivery together. The figures a table uses say which model it took.")
    return _table(shown, "Completeness of the latest months by each model that estimates it", note=note)
