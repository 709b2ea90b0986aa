"""The savings attribution stage: one entry point, :func:`run`, from validated inputs and :class:`Params` to the results.

:func:`run` completes the latest months (:mod:`.panel`), estimates practice action (:mod:`.causal`), splits each
change in spend exactly (:mod:`.decomposition`), builds the ledger, the disputed cases and the sharing of the
resources freed up (:mod:`.ledger`); :class:`Result` gives the tables notebook 04 writes (:meth:`Result.tables`),
the ``attribution`` section of ``results.json`` (:meth:`Result.headline`) and its plain-language reading
(:meth:`Result.describe`).

References
----------
Audit Commission (2007), *Putting commissioning into practice* (the dispute, para 78; resources freed up);
DOMAIN.md "Spend identity" and "Budgets".
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from pbc_analysis import data as _data
from pbc_analysis.core.labels import measure_label
from pbc_analysis.stages.attribution.bootstrap import decomposition_intervals
from pbc_analysis.stages.attribution.causal import PracticeAction, practice_action
from pbc_analysis.stages.attribution.common import ELECTIVE_PODS, FACTORS, LEDGER_LINES, LINE_LABELS, _check_years, _full_years, _fy_of_months, _window_months
from pbc_analysis.stages.attribution.completion import apply, cost_gradients
from pbc_analysis.stages.attribution.decomposition import decompose, spend_cells
from pbc_analysis.stages.attribution.delta import completion_gradients, lag_matrix
from pbc_analysis.stages.attribution.ledger import dispute_table, ledger, share_savings
from pbc_analysis.stages.attribution.panel import _completeness, _labelled, cost_per_referral, referral_panel
from pbc_analysis.stages.attribution.params import Params
from pbc_analysis.stages.attribution.precision import precision
from pbc_analysis.stages.attribution.safety import safety_check, safety_flags
from pbc_analysis.stages.facts import data_facts

__all__ = ["GROUP", "NOTIONAL_TARGET", "Result", "describe", "headline", "notional_text", "result_tables", "run"]

#: the practices' grouping with its own ledger rows and savings (the practices table's column)
GROUP = "consortium"
_DISPUTE_COLUMNS = ["provider_code", "specialty_code", "pod", "financial_year", "item", "amount", "ci_low", "ci_high",
                    "explanation"]


def _json_number(v: float | None, digits: int = 2) -> float | None:
    """A number for ``results.json``: rounded, None when missing or not finite (JSON has no NaN)."""
    return None if v is None or not np.isfinite(v) else round(float(v), digits)


def _ci(estimate: float, lo: float, hi: float) -> dict[str, float | None]:
    return {"estimate": _json_number(estimate), "ci_low": _json_number(lo), "ci_high": _json_number(hi)}


@dataclasses.dataclass(frozen=True, eq=False)
class Result:
    """Everything :func:`run` computes (tables tidy; :meth:`tables` gives what notebook 04 writes)."""

    completeness: pd.DataFrame
    cost: pd.DataFrame
    action: PracticeAction
    cells: pd.DataFrame
    parts: pd.DataFrame
    factors_by_method: pd.DataFrame
    intervals: pd.DataFrame
    ledger: pd.DataFrame
    sharing: pd.DataFrame
    sharing_reasons: pd.DataFrame
    disputes: pd.DataFrame
    settings: dict = dataclasses.field(default_factory=dict)
    #: the safety check (:func:`pbc_analysis.stages.attribution.safety.safety_check`)
    safety: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    #: the completion error's part of each standard error (:func:`pbc_analysis.stages.attribution.completion.apply`)
    completion: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)

    def tables(self) -> dict[str, pd.DataFrame]:
        """The result tables, by name, as notebook 04 writes them (:func:`result_tables`).

        Returns
        -------
        dict
        """
        return result_tables(self)

    def headline(self) -> dict[str, Any]:
        """The ``attribution`` section of ``results.json`` (:func:`headline`).

        Returns
        -------
        dict
        """
        return headline(self)

    def describe(self) -> str:
        """The plain-language reading the notebook displays (:func:`describe` of :meth:`headline`).

        Returns
        -------
        str
        """
        return describe(self.headline())


def headline(att: Result) -> dict:
    """Headline figures for ``results.json`` section ``attribution`` (GBP, evaluation year).

    ``practice_action_savings`` is a saving (positive: spend lower than without engagement);
    ``population``, ``need``, ``tariff``, ``provider_change`` and ``unexplained`` are parts of the
    change in spend from the base year (negative: they lowered spend). Each has ``estimate``,
    ``ci_low``, ``ci_high``. Also per-year savings, their precision (standard error, the floor no
    estimator can beat with these data and the chance of landing within 10% at it: :func:`precision`),
    referrals avoided, sharing totals and the disputes.

    Parameters
    ----------
    att : Result
        :func:`run`.

    Returns
    -------
    dict
        JSON-able (no NaN).

    References
    ----------
    The ledger's lines: :mod:`pbc_analysis.stages.attribution.ledger`.
    """
    s = att.settings
    y = s["evaluation_year"]
    led = att.ledger
    r = led[(led["level"] == "pct") & (led["financial_year"] == y)].iloc[0]
    ag = att.action.aggregates
    pct_ag = ag[(ag["target"] == "pct")].set_index("financial_year")
    out: dict[str, Any] = {
        "base_year": s["base_year"], "evaluation_year": y, "method": s["method"],
        "inference": str(att.action.fit["inference"]), "confidence": s["confidence"],
        "spend_base": round(float(r["spend_base"]), 2), "spend": round(float(r["spend"]), 2),
        "change": round(float(r["change"]), 2),
        "practice_action_savings": _ci(r["practice_action_savings"], r["savings_ci_low"], r["savings_ci_high"]),
    }
    for line in ("provider_change", "tariff", "population", "need", "unexplained"):
        out[line] = _ci(r[line], r[f"{line}_ci_low"], r[f"{line}_ci_high"])
    out["referrals_avoided"] = round(float(pct_ag.loc[y, "referrals_avoided"]), 1) if y in pct_ag.index else None
    out["practice_action_savings_by_year"] = {
        fy: _ci(a["savings"], a["ci_low"], a["ci_high"]) for fy, a in pct_ag.iterrows()}
    prec = precision(ag, confidence=s["confidence"]).set_index("financial_year")
    out["practice_action_precision"] = {
        fy: {"std_error": _json_number(p["std_error"]), "std_error_floor": _json_number(p["std_error_floor"]),
             "relative_floor": _json_number(p["relative_floor"], 4),
             "chance_within_10pct_at_floor": _json_number(p["chance_within_tolerance_at_floor"], 4)}
        for fy, p in prec.iterrows()}
    sh = att.sharing[att.sharing["financial_year"] == y]
    out["sharing"] = {
        "practice_share": s["practice_share"], "engaged_practices": int(len(sh)),
        "eligible": round(float(sh["eligible"].sum()), 2), "to_practices": round(float(sh["to_practice"].sum()), 2),
        "to_pct": round(float(sh["to_pct"].sum()), 2),
        "retained_by_pct": round(float(sh["retained_by_pct"].sum()), 2),
        "practices_paid": int((sh["to_practice"] > 0).sum()),
        "held_for_review": sorted(sh.loc[sh["status"] == "held for review", "practice_code"].tolist()),
        "non_recurrent": int(((sh["to_practice"] > 0) & ~sh["recurrent"]).sum()),
        "basis": s["basis"], "min_payment": s["min_payment"],
        "below_minimum": int((sh["status"] == "below minimum payment").sum()),
        "paid_with_interval_including_zero": int(((sh["to_practice"] > 0) & (sh["savings_ci_low"] <= 0)).sum()),
        "settlement": "provisional" if (sh["settlement"] == "provisional").any() else "final",
        "held_for_emergency_rise": sorted(sh.loc[(sh["status"] == "held for review") & sh["emergency_rise_flag"],
                                                 "practice_code"].tolist())}
    sf = att.safety[att.safety["financial_year"] == y] if len(att.safety) else att.safety
    out["safety"] = {"level": s["safety_level"], "practices_checked": int(sf["practice_code"].nunique()) if len(sf) else 0,
                     "rise": sorted(sf.loc[sf["rise"].astype(bool), "practice_code"].unique().tolist()) if len(sf) else []}
    out["disputes"] = _dispute_heads(att.disputes)
    out["notional"] = _notional_head(ag, y, s.get("block_contracts") or [])
    out["data_lag"] = {"lag_months": s["lag_months"],
                       "completeness": {f"{c.pod} {c.month}": round(float(c.completeness), 4)
                                        for c in att.completeness.itertuples()}}
    return out


def _dispute_heads(disputes: pd.DataFrame) -> list[dict[str, Any]]:
    """The headline of each disputed provider change (:func:`pbc_analysis.stages.attribution.ledger.dispute_table`)."""
    out: list[dict[str, Any]] = []
    if not len(disputes):
        return out
    for (prov, pod, spec), d in disputes.groupby(["provider_code", "pod", "specialty_code"], sort=True):
        dd = d.set_index("item")
        out.append({
            "provider_code": prov, "pod": pod, "specialty_code": spec,
            "observed_change": round(float(dd.loc["observed change in spend", "amount"]), 2),
            "claimed_by_practices": round(float(dd.loc["practices' claim: saved by referring less", "amount"]), 2),
            "provider_change": round(float(dd.loc["evidence: provider change", "amount"]), 2),
            "supported_practice_saving": _ci(*(dd.loc["supported practice saving", c] for c in
                                               ("amount", "ci_low", "ci_high")))})
    return out


def describe(head: Mapping[str, Any]) -> str:
    """A short plain-language reading of :func:`headline` (numbers from the results, none typed in).

    Parameters
    ----------
    head : mapping
        :func:`headline` (or the ``attribution`` section of ``results.json``).

    Returns
    -------
    str
        Markdown.

    References
    ----------
    The notebook 04 narrative; figures only from ``head``.
    """
    m = lambda v: "n/a" if v is None else f"GBP {v / 1e6:,.2f}m"  # noqa: E731
    pa = head["practice_action_savings"]
    sh = head["sharing"]
    lines = [
        f"**{head['base_year']} to {head['evaluation_year']}:** hospital spend changed by {m(head['change'])} "
        f"({m(head['spend_base'])} to {m(head['spend'])}).",
        f"Practice action saved {m(pa['estimate'])} (95% interval {m(pa['ci_low'])} to {m(pa['ci_high'])}), "
        f"about {head['referrals_avoided']:,.0f} GP referrals avoided." if head.get("referrals_avoided") is not None
        else f"Practice action saved {m(pa['estimate'])}.",
        f"Tariff {m(head['tariff']['estimate'])}, population {m(head['population']['estimate'])}, need mix "
        f"{m(head['need']['estimate'])}, provider follow-up, conversion and coding "
        f"{m(head['provider_change']['estimate'])}, "
        f"unexplained {m(head['unexplained']['estimate'])}.",
    ]
    pr = head.get("practice_action_precision", {}).get(head["evaluation_year"])
    if pr is not None and pr["relative_floor"] is not None:
        lines.append(
            f"With these data no method that lets the effect differ by month could pin the saving down more "
            f"closely than a standard error of {m(pr['std_error_floor'])} ({pr['relative_floor']:.0%} of it; this "
            f"estimate's: {m(pr['std_error'])}).")
    basis = ("the lower end of each practice's interval" if sh.get("basis") == "ci_low"
             else "each practice's point estimate (not the lower end of its interval)")
    lines += [
        f"Eligible for sharing: {m(sh['eligible'])}, measured on {basis}; {sh['practices_paid']} practices are paid "
        f"({sh['practice_share']:.0%} to practices: {m(sh['to_practices'])})"
        + (f", {sh['paid_with_interval_including_zero']} of them with an interval that includes zero"
           if sh.get("paid_with_interval_including_zero") else "")
        + (f"; {sh['below_minimum']} below the minimum payment of GBP {sh['min_payment']:,.0f} are not paid"
           if sh.get("below_minimum") else "") + ";"
        + (f" held for review: {', '.join(sh['held_for_review'])}." if sh["held_for_review"]
           else " no practice is held for review.")
        + (" The payments are provisional until the data are complete: the year's latest months were scaled up "
           "for the data lag." if sh.get("settlement") == "provisional" else ""),
    ]
    lines.append(notional_text(head.get("notional") or {}))
    sf = head.get("safety")
    if sf:
        lines.append(
            f"Safety check ({sf['practices_checked']} engaged practices and possible under-referrers, emergency "
            f"admissions and A&E attendances against expected at {sf['level']:.1%}): "
            + (f"a rise for {', '.join(sf['rise'])}"
               + (f"; savings held for {', '.join(sh['held_for_emergency_rise'])}." if sh.get("held_for_emergency_rise")
                  else ".") if sf["rise"] else "no practice's emergencies rose above expected."))
    for d in head.get("disputes", []):
        sp = d["supported_practice_saving"]
        lines.append(f"Disputed change at {d['provider_code']} ({measure_label(d['pod'])}): practices claimed "
                     f"{m(d['claimed_by_practices'])}; the provider's own change accounts for "
                     f"{m(d['provider_change'])}; "
                     f"the evidence supports a practice saving of {m(sp['estimate'])} "
                     f"({m(sp['ci_low'])} to {m(sp['ci_high'])}).")
    return " ".join(lines)


def result_tables(att: Result) -> dict[str, pd.DataFrame]:
    """The run's attribution tables (written by notebook 04 to ``tables/``), all prefixed ``att_``.

    ``att_ledger`` (practice, consortium and PCT rows per year; lines add up to the change),
    ``att_waterfall`` (PCT lines per year, long, with intervals), ``att_factors`` (PCT parts per factor
    and year by both LMDI-I and Shapley), ``att_savings`` (PCT, consortium and dispute targets per year
    with model, cluster and bootstrap uncertainty and the precision floor), ``att_precision`` (PCT: how
    precise the saving is and could be, :func:`precision`), ``att_practice_savings`` (per engaged practice and
    year), ``att_effects`` (observed / counterfactual referrals by specialty and year),
    ``att_sharing`` and ``att_sharing_reasons``, ``att_disputes``, ``att_cost_per_referral`` (provider x
    specialty x pod x year), ``att_completeness`` (with each completed total's standard error), ``att_completion``
    (the completion error's part of every line's and saving's standard error, :mod:`.completion`) and ``att_safety`` (emergency admissions and A&E attendances
    against expected for engaged practices and possible under-referrers, :mod:`.safety`).

    Parameters
    ----------
    att : Result

    Returns
    -------
    dict
        Table name -> DataFrame, exactly as written.

    References
    ----------
    :func:`pbc_analysis.stages.attribution.precision.precision` for ``att_precision``.
    """
    led = att.ledger
    pct = led[led["level"] == "pct"]
    wf = []
    for line in LEDGER_LINES:
        wf.append(pd.DataFrame({"financial_year": pct["financial_year"], "base_year": pct["base_year"], "line": line,
                                "label": LINE_LABELS[line], "estimate": pct[line],
                                "ci_low": pct[f"{line}_ci_low"], "ci_high": pct[f"{line}_ci_high"]}))
    waterfall = pd.concat(wf, ignore_index=True)
    cost = att.cost.assign(financial_year=_fy_of_months(att.cost["month"].astype(str).to_numpy()))
    cpr = (cost.groupby(["provider_code", "specialty_code", "pod", "financial_year"], observed=True)
           [["activity_per_referral", "cost_per_unit", "cost_per_referral"]].mean().reset_index())
    return {
        "att_ledger": led,
        "att_waterfall": waterfall,
        "att_factors": att.factors_by_method,
        "att_savings": att.action.aggregates,
        "att_precision": precision(att.action.aggregates, confidence=att.settings["confidence"]),
        "att_practice_savings": att.action.practice_year,
        "att_effects": att.action.effects,
        "att_sharing": att.sharing,
        "att_sharing_reasons": att.sharing_reasons,
        "att_disputes": att.disputes,
        "att_cost_per_referral": cpr,
        "att_completeness": att.completeness,
        "att_completion": att.completion,
        "att_safety": att.safety,
    }


# ==================================================================================================
# Everything at once (what notebook 04 runs)
# ==================================================================================================

#: the causal model's target of the savings at providers on block or aligned-payment contracts
NOTIONAL_TARGET = "contract:block"


def _contract_targets(inputs: _data.Inputs, block: Sequence[str]) -> list[dict[str, Any]]:
    """The target of the savings at block-contract providers (none when every provider is paid activity x price)."""
    if not block:
        return []
    known = set(inputs.activity["provider_code"].astype(str).unique())
    unknown = sorted(set(map(str, block)) - known)
    if unknown:
        raise ValueError(f"block_contracts: {', '.join(unknown)} not among the activity's providers "
                         f"({', '.join(sorted(known))}); fix the provider codes in the run config")
    return [{"name": NOTIONAL_TARGET, "provider_code": sorted(set(map(str, block)))}]


def _dispute_targets(changes: pd.DataFrame) -> list[dict[str, Any]]:
    """One aggregate target of the causal model per documented provider change (for the dispute's interval)."""
    targets = []
    for ch in changes.itertuples(index=False):
        t: dict[str, Any] = {"name": f"dispute:{ch.provider_code}:{ch.specialty_code}:{ch.pod}",
                             "provider_code": ch.provider_code,
                             "pod": ch.pod if ch.pod in ELECTIVE_PODS else "all"}
        if ch.specialty_code != _data.ALL:
            t["specialty_code"] = ch.specialty_code
        targets.append(t)
    return targets


def _accounting(inputs: _data.Inputs, comp: pd.DataFrame, params: Params, years: Sequence[str],
                group: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame,
                                     tuple[pd.DataFrame, pd.DataFrame]]:
    """Cells, their parts by ``params.method``, the PCT's parts by both methods, the lines' standard errors, and their
    derivatives with respect to the completed totals with the late records' thinning variance."""
    base, method = params.base_year, params.method
    other = "lmdi" if method == "shapley" else "shapley"
    cells = spend_cells(inputs, years=[base, *years], completeness=comp, lagged=True)
    lagged = lag_matrix(cells, comp)
    cells = cells.drop(columns=[c for c in cells.columns if c.startswith("lagged_")])
    parts = decompose(cells, base, years, method=method)
    fbm = []
    for name, pr in ((method, parts), (other, decompose(cells, base, years, method=other))):
        g = pr.groupby("financial_year")[["spend_base", "spend", "change", *FACTORS]].sum().reset_index()
        g.insert(0, "method", name)
        fbm.append(g)
    grp_map = inputs.practices.set_index("practice_code")[group].astype(str).to_dict()
    delta = params.decomposition_se == "delta"
    grads, thinned, intervals = completion_gradients(cells, lagged, base, years, method=method,
                                                     groups={group: grp_map}, with_std_errors=delta,
                                                     completeness=comp["completeness"].to_numpy(dtype=float))
    if not delta:
        intervals = decomposition_intervals(cells, base, years, method=method, groups={group: grp_map},
                                            decomposition_draws=params.decomposition_draws, seed=params.seed)
    assert intervals is not None
    return cells, parts, pd.concat(fbm, ignore_index=True), intervals, (grads, thinned)


def _disputes(parts: pd.DataFrame, action: PracticeAction, changes: pd.DataFrame, year: str,
              confidence: float) -> pd.DataFrame:
    """The dispute table of every documented provider change, for ``year``."""
    disputes = []
    for ch in changes.itertuples(index=False):
        d = dispute_table(parts, action, ch._asdict(), year, confidence)
        d.insert(0, "provider_code", ch.provider_code)
        d.insert(1, "specialty_code", ch.specialty_code)
        d.insert(2, "pod", ch.pod)
        d.insert(3, "financial_year", year)
        disputes.append(d)
    return pd.concat(disputes, ignore_index=True) if disputes else pd.DataFrame(columns=_DISPUTE_COLUMNS)


def run(inputs: _data.Inputs, params: Params, flags: pd.DataFrame | None = None, facts: Any = None) -> Result:
    """Accounting, causal attribution, ledger, disputes and sharing in one call (notebook 04).

    Every full year after ``params.base_year`` up to ``params.evaluation_year`` is decomposed and attributed.

    Parameters
    ----------
    inputs : pbc_analysis.data.Inputs
        Validated inputs loaded with a window.
    params : Params
        The stage's settings; any still ``"auto"`` are derived first (``Params.resolve``, which also checks every
        rule against the data).
    flags : pandas.DataFrame, optional
        Benchmarking flags (the benchmarking stage's ``flags`` table) for the under-referral gate; None: the gate
        is not applied, and every sharing reason says so.
    facts : pbc_analysis.stages.facts.DataFacts, optional
        For resolving ``"auto"`` settings (default: :func:`pbc_analysis.stages.facts.data_facts` of ``inputs``).

    Returns
    -------
    Result

    References
    ----------
    The methods of :mod:`.panel`, :mod:`.causal`, :mod:`.decomposition` and :mod:`.ledger`.
    """
    if not isinstance(params, Params):
        raise TypeError(f"params must be attribution.Params, got {type(params).__name__}; build it with "
                        "attribution.Params(**settings) or attribution.Params.from_namespace(globals())")
    if params.auto():
        params, _ = params.resolve(facts if facts is not None else data_facts(inputs))
    months = _window_months(inputs)
    full = _full_years(months)
    if params.evaluation_year not in full:
        raise ValueError(f"evaluation_year must be a full financial year of the window ({', '.join(full)}), got "
                         f"{params.evaluation_year!r}")
    years = _check_years(months, params.base_year, [y for y in full if params.base_year < y <= params.evaluation_year])
    comp, cov = _completeness(inputs, params.lag_months, params.reference_months)
    comp_cov = _labelled(comp, cov)   # as completeness_covariance gives it, from the same pass
    cost = cost_per_referral(inputs, completeness=comp)
    grads = cost_gradients(inputs, comp, comp_cov)
    changes = inputs.provider_changes if inputs.provider_changes is not None else pd.DataFrame(
        columns=["provider_code", "specialty_code", "pod", "effective_month", "description"])
    action = practice_action(referral_panel(inputs), pd.concat([cost, grads], axis=1), values=list(grads.columns),
                             confidence=params.confidence, inference=params.inference, n_boot=params.n_boot,
                             seed=params.seed, bootstrap_weights=params.bootstrap_weights, by=GROUP,
                             targets=_dispute_targets(changes) + _contract_targets(inputs, params.block_contracts))
    cells, parts, factors_by_method, intervals, line_grads = _accounting(inputs, comp, params, years, GROUP)
    action, intervals, completion = apply(action, intervals, line_grads[0], comp_cov,
                                          float(stats.norm.ppf(0.5 + params.confidence / 2)), GROUP,
                                          thinning=line_grads[1])
    action = dataclasses.replace(action, valued=None)   # the derivatives are in ``completion``
    led = ledger(parts, action, inputs.practices, intervals, confidence=params.confidence, group=GROUP,
                 completion=completion)
    lagged = sorted(comp.loc[comp["completeness"] < 1, "month"].astype(str).unique())
    safety = safety_check(inputs.activity, inputs.population, inputs.engagement, params.base_year, years,
                          _checked_practices(inputs, flags), lagged, params.safety_level)
    sharing, reasons = share_savings(led, inputs.budgets, flags, action.practice_quarter, params.practice_share,
                                     params.sustained_quarters, params.plan_saving_rate, params.reviewed, params.basis,
                                     min_payment=params.min_payment, lag_adjusted=lagged,
                                     safety=safety_flags(safety))
    names = inputs.practices.set_index("practice_code")["practice_name"]
    sharing.insert(1, "practice_name", sharing["practice_code"].map(names).fillna(""))
    disputes = _disputes(parts, action, changes, params.evaluation_year, params.confidence)
    settings = {**params.values(), "years": list(years), "group": GROUP}
    return Result(comp, cost, action, cells, parts, factors_by_method,
                  intervals, led, sharing, reasons, disputes, settings, safety, completion)


def notional_text(notional: Mapping[str, Any]) -> str:
    """Whether the savings are cash or notional: which providers are on block or aligned-payment contracts.

    Parameters
    ----------
    notional : mapping
        The headline's ``notional`` part (``block_contracts``, and ``savings`` and ``share_of_savings`` when any).

    Returns
    -------
    str

    References
    ----------
    NHS England (2023), NHS Payment Scheme: aligned payment and incentive (fixed payments, with a variable element);
    DH (2002), Reforming NHS financial flows: introducing payment by results (activity x national tariff).
    """
    block = list(notional.get("block_contracts") or [])
    if not block:
        return ("Savings are valued as cash: every provider is taken to be paid activity x price (payment by "
                "results). Where a provider's contract is a block or aligned payment, list it in block_contracts: "
                "savings there are notional, since the PCT pays the contract whatever the activity.")
    sv = notional.get("savings")
    m = lambda v: f"GBP {v / 1e6:,.2f}m"  # noqa: E731
    amount = (f": {m(sv['estimate'])} ({m(sv['ci_low'])} to {m(sv['ci_high'])})"
              + (f", {notional['share_of_savings']:.0%} of the practice-action saving"
                 if notional.get("share_of_savings") is not None else "") if sv else "")
    return (f"Savings at {', '.join(block)} (block or aligned-payment contracts) are notional{amount}: the PCT's "
            "payments to them do not fall with the activity unless the contract is renegotiated; only the rest is "
            "cash.")


def _notional_head(ag: pd.DataFrame, year: str, block: Sequence[str]) -> dict[str, Any]:
    """The savings at block-contract providers in ``year`` (notional), and their share of the PCT's."""
    out: dict[str, Any] = {"block_contracts": sorted(map(str, block))}
    row = ag[(ag["target"] == NOTIONAL_TARGET) & (ag["financial_year"] == year)]
    pct = ag[(ag["target"] == "pct") & (ag["financial_year"] == year)]
    if len(row) and len(pct):
        r = row.iloc[0]
        out["savings"] = _ci(r["savings"], r["ci_low"], r["ci_high"])
        total = float(pct.iloc[0]["savings"])
        out["share_of_savings"] = round(float(r["savings"]) / total, 4) if total else None
    return out


def _checked_practices(inputs: _data.Inputs, flags: pd.DataFrame | None) -> list[str]:
    """The practices the safety check covers: every engaged practice and every possible under-referrer."""
    e = inputs.engagement
    codes = set(e.loc[e["engaged_from"].notna(), "practice_code"].astype(str))
    if flags is not None and len(flags) and "possible_under_referrer" in flags.columns:
        codes |= set(flags.loc[flags["possible_under_referrer"].astype(bool), "practice_code"].astype(str))
    return sorted(codes)
