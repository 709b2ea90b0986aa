"""The ledger (who saved what, line by line), the disputed provider change, and sharing the resources freed up.

For each practice (and consortium, and the PCT) and evaluation year: the observed change in spend from
the base year, split into population (list), need mix, tariff, provider change (conversion + follow-up
+ HRG mix), practice action (minus the causal savings) and an unexplained remainder (the demand parts
of the accounting less practice action: common demand growth, season, emergency activity and chance),
which adds up to the observed change on every row. Resources freed up are then shared (DOMAIN.md
"Budgets"): only savings attributed to practice action are eligible, up to the practice's underspend
against its indicative budget; a practice flagged as a possible under-referrer by benchmarking gets
nothing until reviewed; savings not sustained for ``sustained_quarters`` quarters are non-recurrent;
the eligible amount is split ``practice_share`` / ``1 - practice_share`` (default 70/30).

References
----------
Audit Commission (2007), *Putting commissioning into practice*, paras 78 (the dispute) and chapter 4 (resources
freed up, the 70/30 split); DOMAIN.md "Budgets".
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from pbc_analysis import data as _data
from pbc_analysis.core.calendar import fy_of_month
from pbc_analysis.core.checks import check_choice, check_number
from pbc_analysis.stages.attribution.causal import PracticeAction
from pbc_analysis.stages.attribution.common import FACTORS, LEDGER_LINES, LINE_FACTORS, _check_columns
from pbc_analysis.stages.attribution.panel import _count
from pbc_analysis.stages.attribution.params import DEFAULTS, Basis

__all__ = ["dispute_table", "ledger", "share_savings"]

_CELL_KEYS = ["practice_code", "provider_code", "specialty_code", "pod"]


def _sum_lines(parts: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    cols = ["spend_base", "spend", "change", *FACTORS]
    g = parts.groupby(by, observed=True, sort=True)[cols].sum().reset_index()
    for line, fs in LINE_FACTORS.items():
        g[line] = g[list(fs)].sum(axis=1)
    return g


def _add_line_intervals(out: pd.DataFrame, intervals: pd.DataFrame | None, se_pa: np.ndarray, z: float,
                        completion: pd.DataFrame | None = None) -> None:
    """Normal intervals of every ledger line: accounting lines from their standard errors (delta method or Poisson
    bootstrap), practice action from the regression, the unexplained rest combining both; with ``completion``
    (:func:`pbc_analysis.stages.attribution.completion.apply`) the two are correlated through the completed
    months, and ``Var(demand + saving) = Var demand + Var saving + 2 Cov``, the covariance from its parts."""
    se = {}
    if intervals is not None and len(intervals):
        wide = intervals.pivot_table(index=["level", "unit", "financial_year"], columns="line", values="std_error",
                                     aggfunc="first")
        key = pd.MultiIndex.from_frame(out[["level", "unit", "financial_year"]])
        se = {line: wide[line].reindex(key).to_numpy(dtype=float) if line in wide else np.full(len(out), np.nan)
              for line in list(LINE_FACTORS) + ["change"]}
    nan = np.full(len(out), np.nan)
    for line in ("population", "need", "tariff", "provider_change"):
        s_ = se.get(line, nan)
        out[f"{line}_ci_low"] = out[line] - z * s_
        out[f"{line}_ci_high"] = out[line] + z * s_
    out["practice_action_ci_low"] = -out["savings_ci_high"]
    out["practice_action_ci_high"] = -out["savings_ci_low"]
    var_un = se.get("demand", nan) ** 2 + se_pa ** 2
    if completion is not None and len(completion):
        c = completion.set_index(["quantity", "level", "unit", "financial_year"])["std_error"]
        key = pd.MultiIndex.from_frame(out[["level", "unit", "financial_year"]].astype(str))
        part = {q: (c.xs(q).reindex(key).fillna(0.0).to_numpy(dtype=float) if q in c.index.get_level_values(0)
                    else np.zeros(len(out))) for q in ("unexplained", "demand", "practice_action_savings")}
        var_un = var_un + part["unexplained"] ** 2 - part["demand"] ** 2 - part["practice_action_savings"] ** 2
    s_un = np.sqrt(np.maximum(var_un, 0.0))
    out["unexplained_ci_low"] = out["unexplained"] - z * s_un
    out["unexplained_ci_high"] = out["unexplained"] + z * s_un


def ledger(parts: pd.DataFrame, action: PracticeAction, practices: pd.DataFrame,
           intervals: pd.DataFrame | None = None, confidence: float = DEFAULTS["confidence"],
           group: str = "consortium", completion: pd.DataFrame | None = None) -> pd.DataFrame:
    """The auditable ledger: per practice, per ``group`` (consortium) and for the PCT, per year.

    ``parts``: :func:`decompose` (cell level). ``action``: :func:`practice_action`. ``practices``: the
    practices table (for ``group``). ``intervals``: :func:`decomposition_delta` or :func:`decomposition_intervals`
    (optional).
    Columns: ``level`` (practice, consortium, pct), ``unit``, ``financial_year``, ``base_year``,
    ``spend_base``, ``spend``, ``change``, then the lines of :data:`LEDGER_LINES` (parts of the change,
    GBP; ``practice_action`` = minus the savings), which add up to ``change`` exactly on every row, then
    ``practice_action_savings`` with ``savings_ci_low``/``savings_ci_high``, ``<line>_ci_low`` and
    ``<line>_ci_high`` for every line (accounting lines from their standard errors, normal; practice
    action from the regression; unexplained combining both), the factor detail (``referral_rate``,
    ``emergency_rate``, ``local_variation``, ``conversion``, ``follow_up``, ``hrg_mix``) and
    ``engaged``.

    Parameters
    ----------
    parts : pandas.DataFrame
        :func:`pbc_analysis.stages.attribution.decomposition.decompose`.
    action : PracticeAction
        :func:`pbc_analysis.stages.attribution.causal.practice_action`.
    practices : pandas.DataFrame
        The practices table (for ``group``).
    intervals : pandas.DataFrame, optional
        :func:`pbc_analysis.stages.attribution.delta.decomposition_delta` (or the bootstrap's
        :func:`pbc_analysis.stages.attribution.bootstrap.decomposition_intervals`): ``level, unit, financial_year,
        line, std_error``.
    confidence : float
    group : str
        The practices' grouping column (consortium).
    completion : pandas.DataFrame, optional
        :func:`pbc_analysis.stages.attribution.completion.apply`'s completion parts, for the covariance of the
        demand line and the saving in the unexplained rest (``intervals`` and ``action`` already include them).

    Returns
    -------
    pandas.DataFrame

    References
    ----------
    The module docstring; DOMAIN.md "Spend identity".
    """
    _check_columns(parts, _CELL_KEYS + ["financial_year", "base_year", "change", *FACTORS], "parts")
    _check_columns(practices, ["practice_code", group], "practices")
    confidence = check_number("confidence", confidence, 0, 1, low_open=True, high_open=True, fix="use e.g. 0.95")
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    unit_of = practices.set_index("practice_code")[group].astype(str)
    p = parts.assign(**{group: parts["practice_code"].astype(str).map(unit_of).to_numpy()})
    frames = []
    for level, by in (("practice", ["practice_code"]), (group, [group]), ("pct", [])):
        g = _sum_lines(p.assign(_all="PCT"), (by or ["_all"]) + ["financial_year", "base_year"])
        g = g.rename(columns={(by or ["_all"])[0]: "unit"})
        g.insert(0, "level", level)
        frames.append(g)
    out = pd.concat(frames, ignore_index=True)
    out["unit"] = out["unit"].astype(str)
    # practice action (savings) and its intervals
    py = action.practice_year.rename(columns={"practice_code": "unit"})
    sav = py.assign(level="practice")[["level", "unit", "financial_year", "savings", "std_error", "ci_low", "ci_high"]]
    ag = action.aggregates
    ag = ag[(ag["pod"] == "all") & ag["level"].isin(["pct", group])]
    ag = ag.assign(unit=np.where(ag["level"] == "pct", "PCT", ag["unit"]))
    sav = pd.concat([sav, ag[["level", "unit", "financial_year", "savings", "std_error", "ci_low", "ci_high"]]],
                    ignore_index=True)
    out = out.merge(sav, on=["level", "unit", "financial_year"], how="left")
    engaged = set(action.practice_year["practice_code"])
    out["engaged"] = np.where(out["level"] == "practice", out["unit"].isin(engaged), True)
    out["practice_action_savings"] = out["savings"].fillna(0.0)
    out["savings_ci_low"] = out["ci_low"].fillna(0.0)
    out["savings_ci_high"] = out["ci_high"].fillna(0.0)
    se_pa = out["std_error"].fillna(0.0).to_numpy()
    out = out.drop(columns=["savings", "std_error", "ci_low", "ci_high"])
    out["practice_action"] = -out["practice_action_savings"]
    out["unexplained"] = out["change"] - out[["population", "need", "tariff", "provider_change",
                                              "practice_action"]].sum(axis=1)
    _add_line_intervals(out, intervals, se_pa, z, completion)
    front = ["level", "unit", "financial_year", "base_year", "spend_base", "spend", "change", *LEDGER_LINES,
             "practice_action_savings", "savings_ci_low", "savings_ci_high"]
    cis = [f"{line}_{b}" for line in LEDGER_LINES for b in ("ci_low", "ci_high")]
    detail = ["referral_rate", "emergency_rate", "local_variation", "conversion", "follow_up", "hrg_mix", "engaged"]
    order = {"practice": 0, group: 1, "pct": 2}
    out = out[front + cis + detail].sort_values(["level", "unit", "financial_year"],
                                                key=lambda s: s.map(order) if s.name == "level" else s)
    return out.reset_index(drop=True)


def _dispute_saving(action: PracticeAction, name: str, prov: str, spec: str, pod: str,
                    year: str) -> tuple[float, float, float]:
    """Practice-action saving on the disputed spend with its interval (its aggregate target), or the point estimate
    from the cells when the model had no such target."""
    ag = action.aggregates
    a = ag[(ag["target"] == name) & (ag["financial_year"] == year)]
    if len(a):
        return float(a["savings"].iloc[0]), float(a["ci_low"].iloc[0]), float(a["ci_high"].iloc[0])
    c = action.cells
    cs = (c["provider_code"] == prov) & (c["financial_year"] == year)
    if spec != _data.ALL:
        cs &= c["specialty_code"] == spec
    if pod != _data.ALL:
        cs &= c["pod"] == pod
    return float(c.loc[cs, "savings"].sum()), np.nan, np.nan


def dispute_table(parts: pd.DataFrame, action: PracticeAction, change: Mapping[str, Any], year: str,
                  confidence: float = DEFAULTS["confidence"]) -> pd.DataFrame:
    """The disputed case, spelled out: a documented provider change and who saved what.

    ``change``: a row of ``provider_changes`` (``provider_code``, ``specialty_code``, ``pod``,
    ``effective_month``, ``description``). For that provider's cells in scope, from the base year to
    ``year``: the observed change in spend; what the practices claimed (the whole fall, as if it were
    all fewer referrals); and what the evidence supports, line by line (tariff, population and need,
    the provider's own follow-up/conversion/coding change, practice action from the causal model with
    its interval, and the unexplained rest).

    Parameters
    ----------
    parts : pandas.DataFrame
        :func:`pbc_analysis.stages.attribution.decomposition.decompose` (cell level).
    action : PracticeAction
        With a target named ``dispute:<provider>:<specialty>:<pod>`` for the interval (else the point estimate).
    change : mapping
        A row of ``provider_changes``.
    year : str
        The year compared with the base year.
    confidence : float

    Returns
    -------
    pandas.DataFrame
        Rows ``item, amount, ci_low, ci_high, explanation``.

    References
    ----------
    Audit Commission (2007), para 78 (the dispute between practices and PCT over falling outpatient spend).
    """
    check_number("confidence", confidence, 0, 1, low_open=True, high_open=True, fix="use e.g. 0.95")
    prov, spec, pod = str(change["provider_code"]), str(change["specialty_code"]), str(change["pod"])
    sel = (parts["provider_code"].astype(str) == prov) & (parts["financial_year"].astype(str) == year)
    if spec != _data.ALL:
        sel &= parts["specialty_code"].astype(str) == spec
    if pod != _data.ALL:
        sel &= parts["pod"].astype(str) == pod
    p = parts.loc[sel]
    if p.empty:
        raise ValueError(f"no cells for provider {prov!r}, specialty {spec!r}, pod {pod!r} in {year!r}; check "
                         "the provider change against the data and the years decomposed")
    lines = _sum_lines(p.assign(_k=1), ["_k"]).iloc[0]
    base = str(p["base_year"].iloc[0])
    name = f"dispute:{prov}:{spec}:{pod}"
    sv, lo, hi = _dispute_saving(action, name, prov, spec, pod, year)
    ch = float(lines["change"])
    claimed = -min(ch, 0.0)
    provider = float(lines["provider_change"])
    popneed = float(lines["population"] + lines["need"])
    unexplained = ch - (float(lines["tariff"]) + popneed + provider - sv)
    where = f"{pod.replace('_', ' ')} at {prov}" + ("" if spec == _data.ALL else f", specialty {spec}")
    rows = [
        ("observed change in spend", ch, np.nan, np.nan,
         f"{where}, {base} to {year} (all practices using the provider; latest months completed)"),
        ("practices' claim: saved by referring less", claimed, np.nan, np.nan,
         "the whole fall in spend credited to practice referral behaviour" if ch < 0 else
         "spend did not fall, so nothing can be claimed as a fall"),
        ("evidence: tariff", float(lines["tariff"]), np.nan, np.nan, "national price changes (Payment by Results)"),
        ("evidence: population and need", popneed, np.nan, np.nan, "list growth and age-sex mix"),
        ("evidence: provider change", provider, np.nan, np.nan,
         "the provider's own ratios (follow-ups per first, conversion, coding); documented: "
         f"{change.get('description', '')}"
         f" from {change.get('effective_month', '')}"),
        ("evidence: practice action", -sv, -hi, -lo,
         "fewer GP referrals caused by engagement (causal model: engaged practices against never and not-yet "
         "engaged ones at the same provider), valued at the provider's current cost per referral"),
        ("evidence: unexplained", unexplained, np.nan, np.nan, "common demand changes, chance"),
        ("supported practice saving", sv, lo, hi,
         "what the evidence supports as the practices' saving on this spend (the claim it can replace)"),
    ]
    return pd.DataFrame(rows, columns=["item", "amount", "ci_low", "ci_high", "explanation"])


def _money(x: pd.Series) -> pd.Series:
    return x.map(lambda v: "n/a" if pd.isna(v) else f"GBP {v:,.0f}")


def _sharing_base(ledger_table: pd.DataFrame, budgets: pd.DataFrame | None, plan_saving_rate: float, basis: str,
                  years: Sequence[str] | None) -> pd.DataFrame:
    """One row per engaged practice and year: spend, practice-action savings, budget, underspend, plan, attributed."""
    led = ledger_table[(ledger_table["level"] == "practice") & ledger_table["engaged"]]
    if years is not None:
        led = led[led["financial_year"].isin(list(years))]
    out = led[["unit", "financial_year", "spend", "practice_action_savings", "savings_ci_low",
               "savings_ci_high"]].rename(columns={"unit": "practice_code"}).reset_index(drop=True)
    if budgets is not None and len(budgets):
        b = budgets.set_index(["practice_code", "financial_year"])["budget"]
        out["budget"] = b.reindex(pd.MultiIndex.from_frame(out[["practice_code", "financial_year"]])).to_numpy()
    else:
        out["budget"] = np.nan
    out["underspend"] = out["budget"] - out["spend"]
    out["planned_saving"] = np.where(plan_saving_rate > 0, plan_saving_rate * out["budget"], np.nan)
    out["savings_vs_plan"] = out["practice_action_savings"] - out["planned_saving"]
    out["attributed"] = out["practice_action_savings"] if basis == "estimate" else out["savings_ci_low"]
    return out


def _under_referrer_flags(out: pd.DataFrame, flags: pd.DataFrame | None) -> tuple[np.ndarray, bool]:
    """Benchmarking's possible-under-referrer flag (GP referrals, all specialties) of each row, and whether known."""
    if flags is None or not len(flags):
        return np.zeros(len(out), dtype=bool), False
    _check_columns(flags, ["period", "practice_code", "measure", "specialty_code", "possible_under_referrer"], "flags")
    f = flags[(flags["measure"].astype(str) == "referrals") & (flags["specialty_code"].astype(str) == _data.ALL)]
    fl = f.set_index([f["practice_code"].astype(str), f["period"].astype(str)])["possible_under_referrer"]
    fl = fl[~fl.index.duplicated()]
    key = pd.MultiIndex.from_frame(out[["practice_code", "financial_year"]].astype(str))
    return fl.reindex(key).fillna(False).astype(bool).to_numpy(), True


def _safety_flags(out: pd.DataFrame, safety: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray]:
    """Each row's emergency-rise flag and the measures that rose (in words; "" where none or not checked)."""
    if safety is None or not len(safety):
        return np.zeros(len(out), dtype=bool), np.full(len(out), "", dtype=object)
    _check_columns(safety, ["practice_code", "financial_year", "emergency_rise", "measures"], "safety")
    s = safety.set_index([safety["practice_code"].astype(str), safety["financial_year"].astype(str)])
    key = pd.MultiIndex.from_frame(out[["practice_code", "financial_year"]].astype(str))
    flag = s["emergency_rise"].reindex(key).fillna(False).astype(bool).to_numpy()
    return flag, s["measures"].reindex(key).fillna("").astype(str).to_numpy()


def _recurrence(out: pd.DataFrame, quarters: pd.DataFrame, sustained_quarters: int) -> tuple[np.ndarray, np.ndarray]:
    """Positive quarters in the run up to each year's Q4, and whether the saving is recurrent (that many, all full)."""
    q = quarters.copy()
    q["fy_end"] = q["quarter"].str.slice(0, 7)
    q = q.sort_values(["practice_code", "quarter"])
    full_q = q["engaged_months"] >= 3
    q["ok"] = (q["savings"] > 0) & full_q
    q["n_full"] = full_q.groupby(q["practice_code"]).cumsum()
    run = q["ok"].astype(int).groupby(q["practice_code"]).rolling(sustained_quarters, min_periods=1).sum()
    q["run"] = run.reset_index(level=0, drop=True).reindex(q.index).to_numpy()
    last = q[q["quarter"].str.endswith("Q4")].set_index(["practice_code", "fy_end"])
    key = pd.MultiIndex.from_frame(out[["practice_code", "financial_year"]])
    positive = last["run"].reindex(key).fillna(0).to_numpy()
    enough = last["n_full"].reindex(key).fillna(0).to_numpy() >= sustained_quarters
    return positive, enough & (positive >= sustained_quarters)


def _status_and_reason(out: pd.DataFrame, rfu: pd.Series, held: pd.Series, no_budget: pd.Series, below: np.ndarray,
                       practice_share: float, sustained_quarters: int, min_payment: float,
                       gate_known: bool, risen: np.ndarray) -> tuple[np.ndarray, pd.Series]:
    """The status and the plain-language reason of each row."""
    status = np.select([no_budget, held, out["eligible"] <= 0, below, ~out["recurrent"]],
                       ["no budget", "held for review", "nothing eligible", "below minimum payment",
                        "paid (non-recurrent)"], "paid (recurrent)")
    pct, rest = f"{practice_share:.0%}", f"{1 - practice_share:.0%}"
    rise = "its " + pd.Series(risen, index=out.index) + " rose above expected (the safety check)"
    held_why = np.where(out["under_referrer_flag"] & out["emergency_rise_flag"],
                        "flagged as a possible under-referrer by benchmarking and " + rise
                        + ": savings held until the practice is reviewed",
                        np.where(out["emergency_rise_flag"], rise + ": savings held until the practice is reviewed",
                                 "flagged as a possible under-referrer by benchmarking: savings held until the "
                                 "practice is reviewed"))
    reason = pd.Series(np.select(
        [no_budget, held, rfu <= 0, out["attributed"] <= 0, below],
        ["no indicative budget for the year, so resources freed up cannot be measured",
         held_why,
         "spend was not below the indicative budget: no resources freed up",
         "no saving attributed to practice action",
         f"the practice's {pct} of the eligible amount is below the minimum payment of GBP {min_payment:,.0f}: "
         "not paid, the eligible amount stays with the PCT"],
        "eligible = the smaller of the underspend and the practice-action saving; " + pct + " to the practice, "
        + rest + " to the PCT"), index=out.index)
    reason = reason + np.where(out["recurrent"], "; recurrent",
                               f"; non-recurrent (not positive in each of the last {sustained_quarters} engaged quarters)")
    reason = reason + np.where(out["settlement"] == "provisional",
                               "; provisional until the data are complete (the year's latest months were scaled up "
                               "for the data lag)", "")
    if not gate_known:
        reason = reason + "; no benchmarking flags were given, so the under-referral gate was not applied"
    return status, reason


def _reason_table(out: pd.DataFrame, practice_share: float, sustained_quarters: int, plan_saving_rate: float,
                  basis: str) -> pd.DataFrame:
    """The long table ``practice_code, financial_year, item, amount, reason``: the reason for every figure."""
    pct, rest = f"{practice_share:.0%}", f"{1 - practice_share:.0%}"
    att_txt = "the estimate" if basis == "estimate" else "the lower bound of its interval"
    items = {
        "budget": (out["budget"], np.where(out["budget"].isna(), "no budget in the budgets table",
                                           "indicative budget from the budgets table")),
        "spend": (out["spend"], "actual hospital spend, latest months completed for the data lag"),
        "underspend": (out["underspend"], "budget - spend; positive = resources freed up"),
        "planned_saving": (out["planned_saving"], "no savings plan set" if plan_saving_rate == 0 else
                           f"plan: {plan_saving_rate:.1%} of the budget"),
        "savings_vs_plan": (out["savings_vs_plan"], "practice-action savings - planned saving"),
        "practice_action_savings": (out["practice_action_savings"],
                                    "counterfactual spend without engagement - actual (causal model), 95% interval "
                                    + _money(out["savings_ci_low"]) + " to " + _money(out["savings_ci_high"])),
        "attributed": (out["attributed"], f"practice-action savings used for sharing ({att_txt})"),
        "eligible": (out["eligible"], out["reason"]),
        "to_practice": (out["to_practice"], f"{pct} of the eligible amount"),
        "to_pct": (out["to_pct"], f"{rest} of the eligible amount"),
        "retained_by_pct": (out["retained_by_pct"], "resources freed up not attributable to practice action "
                                                    "(or held): stay with the PCT"),
        "recurrent": (out["recurrent"].astype(float),
                      np.where(out["recurrent"], f"positive in each of the last {sustained_quarters} engaged quarters",
                               "non-recurrent: one-off reinvestment only")),
        "provisional": ((out["settlement"] == "provisional").astype(float),
                        np.where(out["settlement"] == "provisional",
                                 "provisional: the year's latest months are lag-adjusted; settle when the data are "
                                 "complete", "final: every month of the year is complete")),
    }
    long = []
    for item, (amount, why) in items.items():  # a dozen figures
        long.append(pd.DataFrame({"practice_code": out["practice_code"], "financial_year": out["financial_year"],
                                  "item": item, "amount": amount.to_numpy(dtype=float),
                                  "reason": np.broadcast_to(np.asarray(why, dtype=object), len(out))}))
    return pd.concat(long, ignore_index=True)


_SHARING_COLUMNS = ["practice_code", "financial_year", "budget", "spend", "underspend", "planned_saving",
                    "savings_vs_plan", "practice_action_savings", "savings_ci_low", "savings_ci_high", "attributed",
                    "under_referrer_flag", "emergency_rise_flag", "reviewed", "eligible", "recurrent", "quarters_positive", "to_practice",
                    "to_pct", "retained_by_pct", "settlement", "status", "reason"]


def share_savings(ledger_table: pd.DataFrame, budgets: pd.DataFrame | None, flags: pd.DataFrame | None,
                  quarters: pd.DataFrame, practice_share: float = DEFAULTS["practice_share"],
                  sustained_quarters: int = DEFAULTS["sustained_quarters"],
                  plan_saving_rate: float = DEFAULTS["plan_saving_rate"], reviewed: Sequence[str] = (),
                  basis: str = DEFAULTS["basis"], years: Sequence[str] | None = None,
                  min_payment: float = DEFAULTS["min_payment"],
                  lag_adjusted: Sequence[str] = (),
                  safety: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Apply the savings-sharing rules to each engaged practice and year (DOMAIN.md "Budgets").

    1. Resources freed up (RFU) = indicative budget - actual spend (completed), if positive; savings
       against plan = practice-action savings - ``plan_saving_rate`` x budget (0 = no plan set).
    2. Only savings attributed to practice action are eligible, up to the RFU:
       ``eligible = min(RFU, attributed)`` (``basis``: the ``estimate`` or the interval's ``ci_low``).
    3. A practice flagged as a possible under-referrer in the year (benchmarking ``flags``: GP
       referrals, all specialties), or whose emergency admissions or A&E attendances rose above expected
       (``safety``, :func:`pbc_analysis.stages.attribution.safety.safety_flags`), gets nothing until reviewed
       (``reviewed``: practice codes cleared).
    4. Savings are recurrent only if practice-action savings were positive in each of the last
       ``sustained_quarters`` fully engaged quarters up to the year's end; otherwise non-recurrent
       (one-off reinvestment).
    5. The eligible amount goes ``practice_share`` to the practice and the rest to the PCT; the rest
       of the RFU stays with the PCT. A practice's share below ``min_payment`` (GBP) is not paid: the
       whole eligible amount stays with the PCT (status ``below minimum payment``).
    6. A year holding a month scaled up for the data lag (``lag_adjusted``) is settled ``provisional``
       until the data are complete; every other year is ``final``.

    Parameters
    ----------
    ledger_table : pandas.DataFrame
        :func:`ledger`.
    budgets : pandas.DataFrame or None
        Indicative budgets (``practice_code, financial_year, budget``).
    flags : pandas.DataFrame or None
        Benchmarking flags (``period, practice_code, measure, specialty_code, possible_under_referrer``); None:
        the gate is not applied (and every reason says so).
    quarters : pandas.DataFrame
        :func:`pbc_analysis.stages.attribution.causal.practice_action` ``practice_quarter``.
    practice_share, sustained_quarters, plan_saving_rate, reviewed, basis
        The sharing rules above.
    years : sequence of str, optional
        Years to share (None: every year of the ledger).
    min_payment : float
        The smallest payment to a practice, GBP (0: any amount is paid).
    lag_adjusted : sequence of str
        Months (``YYYY-MM``) whose activity was scaled up by a completeness factor below 1.
    safety : pandas.DataFrame, optional
        ``practice_code, financial_year, emergency_rise, measures`` (the safety check); None: not applied.

    Returns
    -------
    sharing : pandas.DataFrame
        One row per practice and year with every figure and a ``reason``.
    reasons : pandas.DataFrame
        ``practice_code, financial_year, item, amount, reason``: the reason for every figure.

    References
    ----------
    Audit Commission (2007), chapter 4 (resources freed up; at least 70% to the practice); DOMAIN.md "Budgets".
    """
    practice_share = check_number("practice_share", practice_share, 0, 1, fix="use e.g. 0.7 for a 70/30 split")
    sustained_quarters = _count("sustained_quarters", sustained_quarters, 1,
                                "use the number of quarters savings must last to count as recurrent (e.g. 4)")
    plan_saving_rate = check_number("plan_saving_rate", plan_saving_rate, 0, 1,
                                    fix="use the planned saving as a share of the budget (0 for no plan)")
    basis = check_choice("basis", basis, Basis)
    min_payment = check_number("min_payment", min_payment, 0, None, fix="use the smallest payment in GBP (0 for none)")
    if isinstance(reviewed, str):
        raise ValueError(f"reviewed must be a list of practice codes, got the string {reviewed!r}; use [{reviewed!r}]")
    _check_columns(quarters, ["practice_code", "quarter", "engaged_months", "savings"], "quarters")
    out = _sharing_base(ledger_table, budgets, plan_saving_rate, basis, years)
    rfu = out["underspend"].clip(lower=0).fillna(0.0)
    out["under_referrer_flag"], gate_known = _under_referrer_flags(out, flags)
    out["emergency_rise_flag"], risen = _safety_flags(out, safety)
    out["reviewed"] = out["practice_code"].isin(list(reviewed))
    held = (out["under_referrer_flag"] | out["emergency_rise_flag"]) & ~out["reviewed"]
    no_budget = out["budget"].isna()
    eligible = np.minimum(rfu, out["attributed"].clip(lower=0))
    out["eligible"] = np.where(held | no_budget, 0.0, eligible)
    out["quarters_positive"], out["recurrent"] = _recurrence(out, quarters, sustained_quarters)
    share = practice_share * out["eligible"]
    below = ((share > 0) & (share < min_payment)).to_numpy()
    out["to_practice"] = np.where(below, 0.0, share)
    out["to_pct"] = out["eligible"] - out["to_practice"]
    out["retained_by_pct"] = rfu - out["eligible"]
    lagged_years = {fy_of_month(str(m)) for m in lag_adjusted}
    out["settlement"] = np.where(out["financial_year"].isin(sorted(lagged_years)), "provisional", "final")
    out["status"], out["reason"] = _status_and_reason(out, rfu, held, no_budget, below, practice_share,
                                                      sustained_quarters, min_payment, gate_known, risen)
    out = out[_SHARING_COLUMNS].sort_values(["practice_code", "financial_year"]).reset_index(drop=True)
    return out, _reason_table(out, practice_share, sustained_quarters, plan_saving_rate, basis)
