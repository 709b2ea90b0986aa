"""The referral evaluation's estimates: staggered DiD by specialty, events avoided, estimator comparison, checks.

- :func:`evaluate_did`: Callaway and Sant'Anna group-time effects on each specialty's practice rates, the
  proportional effect once built up, the pre-trend test and the event study;
- :func:`events_avoided`: the group-time effects on rates turned into counts by financial year;
- :func:`estimator_comparison`: the same question answered by Callaway-Sant'Anna, static TWFE and Poisson
  TWFE (static TWFE is biased towards zero with ramped, staggered effects; Goodman-Bacon 2021);
- :func:`regression_to_the_mean`: how far the highest referrers of a baseline window fall back with no
  intervention (Barnett, van der Pols and Dobson 2005);
- :func:`provider_change_check`: whether a hospital's change of policy shows up in GP referrals of practices
  that never engaged.

References
----------
Callaway B, Sant'Anna PHC (2021). Difference-in-differences with multiple time periods. J Econometrics
225:200-230.
Goodman-Bacon A (2021). Difference-in-differences with variation in treatment timing. J Econometrics
225:254-277.
Barnett AG, van der Pols JC, Dobson AJ (2005). Regression to the mean: what it is and how to deal with it.
Int J Epidemiol 34:215-220.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pbc_analysis.core.checks import check_choice, check_number
from pbc_analysis.methods import did as _did
from pbc_analysis.methods import its as _its
from pbc_analysis.stages import benchmark as _bm
from pbc_analysis.stages.evaluation.panels import cohort_exposure, its_frame

if TYPE_CHECKING:
    from pbc_analysis.data import Inputs

__all__ = ["DiDEvaluation", "estimator_comparison", "evaluate_did", "events_avoided", "provider_change_check",
           "regression_to_the_mean"]


def regression_to_the_mean(panel: pd.DataFrame, baseline: tuple[str, str] | list[str],
                           follow_up: tuple[str, str] | list[str], top_share: float = 0.2,
                           never_engaged_only: bool = True, specialty_code: str = "all") -> pd.DataFrame:
    """How far the highest referrers of a baseline window fall back in a later window with no intervention.

    Each practice's ratio is its rate over the PCT's rate in the window (for ``specialty_code``, among
    never-engaged practices when ``never_engaged_only``, so no practice is treated); the top ``top_share`` by
    baseline ratio are the ``top`` group, the others ``rest``. The top group's fall is regression to the mean.

    Parameters
    ----------
    panel : pandas.DataFrame
        A :func:`~pbc_analysis.stages.evaluation.panels.practice_month_panel`.
    baseline, follow_up : pair of str
        First and last months of each window.
    top_share : float
        Share of practices picked as ``top``, in (0, 1).
    never_engaged_only : bool
        Use only practices never engaged in the panel.
    specialty_code : str
        ``all`` or a specialty code (a string, e.g. ``"110"``).

    Returns
    -------
    pandas.DataFrame
        One row per group (``top``, ``rest``): ``group, practices, baseline_ratio, follow_up_ratio, change``.

    References
    ----------
    Barnett AG, van der Pols JC, Dobson AJ (2005), Int J Epidemiol 34:215-220.
    """
    check_number("top_share", top_share, 0, 1, low_open=True, high_open=True)
    if specialty_code not in set(panel["specialty_code"]):
        raise ValueError(f"specialty_code {specialty_code!r} is not in the panel; choose one of "
                         f"{sorted(panel['specialty_code'].unique())} (codes are strings, e.g. \"110\")")
    p = panel[panel["specialty_code"] == specialty_code]
    if never_engaged_only:
        p = p[p["cohort"] == 0]
        if p.empty:
            raise ValueError("no never-engaged practices in the panel: regression to the mean is shown among them")
    rows = {}
    for name, (a, b) in (("baseline", baseline), ("follow_up", follow_up)):
        w = p[(p["month"] >= a) & (p["month"] <= b)]
        if w.empty:
            raise ValueError(f"{name} window {a} to {b} has no months in the panel")
        g = w.groupby("practice_code")[["events", "registered"]].sum()
        rows[name] = (g["events"] / g["registered"]) / (g["events"].sum() / g["registered"].sum())
    df = pd.DataFrame(rows)
    n_top = max(1, int(round(top_share * len(df))))
    top = df["baseline"].rank(ascending=False, method="first") <= n_top
    df["group"] = np.where(top, "top", "rest")
    out = df.groupby("group", sort=False).agg(practices=("baseline", "size"), baseline_ratio=("baseline", "mean"),
                                              follow_up_ratio=("follow_up", "mean")).reset_index()
    out["change"] = out["follow_up_ratio"] - out["baseline_ratio"]
    return out.sort_values("group", key=lambda s: s.map({"top": 0, "rest": 1}), ignore_index=True)


@dataclass
class DiDEvaluation:
    """Staggered difference-in-differences of one measure, specialty by specialty (:func:`evaluate_did`).

    ``effects``: one row per specialty; ``event_study``: dynamic effects per specialty and event time;
    ``attgt``: the ``att_gt`` DataFrames by specialty (their ``attrs`` hold the influence functions).
    """

    effects: pd.DataFrame
    event_study: pd.DataFrame
    attgt: dict[str, pd.DataFrame]
    control_group: str
    full_effect_from: int
    period_months: int


def _specialty_did(p: pd.DataFrame, spec: str, control_group: str, full_effect_from: int,
                   confidence: float) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """One specialty's effects row, event study and ``att_gt`` result."""
    r = _did.att_gt(p, "rate", "practice_code", "t", "cohort", confidence=confidence,
                    control_group=check_choice("control_group", control_group, _did.ControlGroup))
    simple = _did.aggregate(r, "simple").overall
    rel = _did.relative_effect(r, min_e=full_effect_from)
    try:
        pre = _did.pretrend_test(r)
        pre_p, pre_chi2 = float(pre["f_p_value"]), float(pre["p_value"])
    except ValueError:
        pre_p = pre_chi2 = float("nan")
    t = _did.aggregate(r, "dynamic").table.assign(specialty_code=spec)
    fit = r.attrs["att_gt"]
    row = {"specialty_code": spec, "att": simple["estimate"], "att_std_error": simple["std_error"],
           "att_ci_low": simple["ci_low"], "att_ci_high": simple["ci_high"],
           "treated_rate": rel["treated_mean"], "counterfactual_rate": rel["counterfactual_mean"],
           "relative": rel["relative"], "relative_ci_low": rel["relative_ci_low"],
           "relative_ci_high": rel["relative_ci_high"], "pretrend_p": pre_p, "pretrend_p_chi2": pre_chi2,
           "engaged_practices": int((fit.unit_cohort > 0).sum()),
           "comparison_practices": int((fit.unit_cohort == 0).sum())}
    return row, t[["specialty_code", "event_time", "estimate", "std_error", "ci_low", "ci_high"]], r


def evaluate_did(panel: pd.DataFrame, control_group: str = "not_yet", full_effect_from: int = 2,
                 confidence: float = 0.95, period_months: int = 3) -> DiDEvaluation:
    """Callaway and Sant'Anna group-time effects on each specialty's practice rates per 1,000 per year.

    Per specialty (:func:`pbc_analysis.methods.did.att_gt`, analytic standard errors, aggregated as R's
    ``did::aggte``): the simple ATT over all post-engagement periods, the proportional effect once the effect
    has built up (:func:`pbc_analysis.methods.did.relative_effect` over event times ``>= full_effect_from``: the
    ramp-up is left out so the estimate is comparable with a steady-state effect), the pre-trend Wald test
    (``pretrend_p``: Hotelling's F version; ``pretrend_p_chi2``: ``did``'s chi-squared, which over-rejects with
    many pre-periods and few practices) and the event study.

    Parameters
    ----------
    panel : pandas.DataFrame
        A :func:`~pbc_analysis.stages.evaluation.panels.period_panel` (or monthly panel).
    control_group : {"never", "not_yet"}
        Comparison practices.
    full_effect_from : int
        The first event time (periods after engagement) at which the effect counts as built up.
    confidence : float
        Interval level.
    period_months : int
        Months per period (only recorded, for labels).

    Returns
    -------
    DiDEvaluation

    References
    ----------
    Callaway B, Sant'Anna PHC (2021), J Econometrics 225:200-230.
    """
    check_choice("control_group", control_group, _did.ControlGroup)
    rows, es, fits = [], [], {}
    for spec, p in panel.groupby("specialty_code", sort=True):
        row, table, r = _specialty_did(p, str(spec), control_group, full_effect_from, confidence)
        rows.append(row)
        es.append(table)
        fits[str(spec)] = r
    return DiDEvaluation(effects=pd.DataFrame(rows), event_study=pd.concat(es, ignore_index=True), attgt=fits,
                         control_group=control_group, full_effect_from=full_effect_from,
                         period_months=period_months)


def events_avoided(attgt_result: pd.DataFrame, panel: pd.DataFrame, specialty_code: str = _bm.ALL,
                   from_month: str | None = None) -> pd.DataFrame:
    """Events (e.g. GP referrals) avoided by engagement, by financial year and in total.

    ``avoided = - sum_(g,t) ATT(g,t) x person-years(g,t) / 1,000``
    (:func:`pbc_analysis.methods.did.total_effect`), with ``att_gt``'s interval level.

    Parameters
    ----------
    attgt_result : pandas.DataFrame
        The ``att_gt`` result of ``specialty_code``.
    panel : pandas.DataFrame
        The period panel it was estimated on.
    specialty_code : str
        The specialty.
    from_month : str, optional
        The evaluation window's first month: periods starting before it count zero (they are still estimated,
        and used by the comparison groups).

    Returns
    -------
    pandas.DataFrame
        ``financial_year`` (``total`` last), ``avoided, std_error, ci_low, ci_high, cells``.

    References
    ----------
    Callaway B, Sant'Anna PHC (2021), J Econometrics 225:200-230.
    """
    ex = cohort_exposure(panel, specialty_code)
    if from_month:
        before = ex["month"] < from_month
        ex.loc[before, "exposure"] = 0.0
        ex.loc[before, "financial_year"] = "before"
    tot = _did.total_effect(attgt_result, ex, by="financial_year")
    tot = tot[tot["financial_year"] != "before"]
    return pd.DataFrame({"financial_year": tot["financial_year"].astype(str), "avoided": -tot["estimate"],
                         "std_error": tot["std_error"], "ci_low": -tot["ci_high"], "ci_high": -tot["ci_low"],
                         "cells": tot["cells"]})


def estimator_comparison(panel: pd.DataFrame, attgt_result: pd.DataFrame, specialty_code: str = _bm.ALL) -> pd.DataFrame:
    """The same question answered three ways: events avoided by Callaway-Sant'Anna, static TWFE and Poisson TWFE.

    TWFE (:func:`pbc_analysis.methods.did.twfe` on the rate, clustered by practice): avoided = ``-b x`` treated
    post-engagement person-years per 1,000; Poisson TWFE (:func:`pbc_analysis.methods.did.fepois` on counts with
    log person-months as offset): ``sum y (exp(-b) - 1)`` over treated post-engagement cells; intervals by the
    same transformations of ``b``'s interval. With a ramped effect and staggered cohorts, static TWFE compares
    later cohorts with earlier ones whose effect is still growing and is biased towards zero.

    Parameters
    ----------
    panel : pandas.DataFrame
        The period panel.
    attgt_result : pandas.DataFrame
        The ``att_gt`` result of ``specialty_code``.
    specialty_code : str
        The specialty.

    Returns
    -------
    pandas.DataFrame
        ``estimator, effect, effect_scale, avoided, ci_low, ci_high``, one row per estimator.

    References
    ----------
    Goodman-Bacon A (2021), J Econometrics 225:254-277; Callaway B, Sant'Anna PHC (2021), J Econometrics
    225:200-230; Correia S, Guimaraes P, Zylkin T (2020), Stata J 20:95-115.
    """
    p = panel[panel["specialty_code"] == specialty_code].copy()
    pm = (p["person_months"] if "person_months" in p.columns else p["registered"]).astype(float)
    exp_post = float(pm[p["post"] == 1].sum() / 12000.0)
    cs = events_avoided(attgt_result, panel, specialty_code).iloc[-1]
    rows = [{"estimator": "Callaway-Sant'Anna (rate)", "effect": float(-cs["avoided"] / exp_post),
             "effect_scale": "rate per 1,000/yr", "avoided": cs["avoided"], "ci_low": cs["ci_low"],
             "ci_high": cs["ci_high"]}]
    tw = _did.twfe(p, "rate", "practice_code", "t", "post", cluster="practice_code")
    rows.append({"estimator": "TWFE (rate)", "effect": tw["estimate"], "effect_scale": "rate per 1,000/yr",
                 "avoided": -tw["estimate"] * exp_post, "ci_low": -tw["ci_high"] * exp_post,
                 "ci_high": -tw["ci_low"] * exp_post})
    p["log_exposure"] = np.log(pm)
    pp = _did.fepois(p, "events", "practice_code", "t", "post", offset="log_exposure", cluster="practice_code")
    y_post = float(p.loc[p["post"] == 1, "events"].sum())
    rows.append({"estimator": "Poisson TWFE (counts)", "effect": pp["ratio"], "effect_scale": "rate ratio",
                 "avoided": y_post * (np.exp(-pp["estimate"]) - 1), "ci_low": y_post * (np.exp(-pp["ci_high"]) - 1),
                 "ci_high": y_post * (np.exp(-pp["ci_low"]) - 1)})
    return pd.DataFrame(rows)


PROVIDER_CHECK_COLUMNS = ["provider_code", "change_month", "pod", "specialty_code", "series", "level_change",
                          "ci_low", "ci_high", "p_value", "months"]


def _provider_series(never: set, lists: pd.DataFrame, provider: str, spec: str,
                     table: pd.DataFrame, value: str, pod: str | None) -> pd.DataFrame:
    """One monthly series of the never-engaged practices' patients at ``provider``, with the list as offset."""
    t = table[table["practice_code"].isin(never) & (table["provider_code"] == provider)]
    if pod is not None:
        t = t[t["pod"] == pod]
    if spec != "all":
        t = t[t["specialty_code"] == spec]
    s = t.groupby("month", as_index=False, observed=True)[value].sum().rename(columns={value: "events"})
    s["month"] = s["month"].astype(str)
    s = lists.merge(s, on="month", how="left").fillna({"events": 0})
    s["t"] = np.arange(1, len(s) + 1)
    s["calendar_month"] = s["month"].str.slice(5, 7).astype(int)
    return s


def provider_change_check(inputs: Inputs, end: str | None = None, harmonics: int = 2,
                          confidence: float = 0.95) -> pd.DataFrame:
    """Does a provider's change of policy (the ``provider_changes`` table) show up in GP referrals?

    For each listed change, two monthly series of the never-engaged practices' patients *at that provider* (in
    the change's specialty, or all): the GP referrals they sent it and the activity at the changed point of
    delivery (e.g. follow-up attendances). Each gets a segmented quasi-Poisson regression
    (:func:`pbc_analysis.methods.its.fit_segmented`: ``harmonics`` seasonal pairs, the practices' list as
    offset, a level and a slope change at the change's month), up to ``end``. Engagement cannot explain a step
    among practices that never engaged, so a step in follow-ups with none in referrals says the fall came from
    the hospital's policy, not from referral behaviour.

    Parameters
    ----------
    inputs : pbc_analysis.data.Inputs
        Validated inputs.
    end : str, optional
        The last month whose activity is complete.
    harmonics : int
        Seasonal sine/cosine pairs.
    confidence : float
        Interval level.

    Returns
    -------
    pandas.DataFrame
        One row per change and series: ``provider_code, change_month, pod, specialty_code, series``
        (``gp_referrals`` or the pod), ``level_change`` (rate ratio), ``ci_low, ci_high, p_value, months``.

    References
    ----------
    Lopez Bernal J, Cummins S, Gasparrini A (2017), Int J Epidemiol 46:348-355.
    """
    changes = inputs.provider_changes
    if changes is None or changes.empty:
        return pd.DataFrame(columns=PROVIDER_CHECK_COLUMNS)
    engaged = inputs.engagement.loc[inputs.engagement["engaged_from"].notna(), "practice_code"]
    never = set(inputs.practices["practice_code"]) - set(engaged)
    if not never:
        raise ValueError("no never-engaged practices: the provider-change check needs them")
    pop = inputs.population[inputs.population["practice_code"].isin(never)]
    lists = pop.groupby("month", as_index=False, observed=True)["registered"].sum()
    lists["month"] = lists["month"].astype(str)   # text months (the table may hold them as categoricals)
    rows = []
    for ch in changes.itertuples(index=False):
        spec = str(ch.specialty_code)
        series = {"gp_referrals": (inputs.referrals, "referrals", None), str(ch.pod): (inputs.activity, "activity", str(ch.pod))}
        for name, (table, value, pod) in series.items():
            s = _provider_series(never, lists, str(ch.provider_code), spec, table, value, pod)
            frame = its_frame(s, str(ch.effective_month), end)
            fit = _its.fit_segmented(frame, "events", "t", "post", offset="registered", family="quasipoisson",
                                     harmonics=harmonics, season="calendar_month", slope_change=True,
                                     confidence=confidence)
            c = fit.coefficients.loc["level_change"]
            rows.append({"provider_code": str(ch.provider_code), "change_month": str(ch.effective_month),
                         "pod": str(ch.pod), "specialty_code": spec, "series": name, "level_change": c["ratio"],
                         "ci_low": c["ci_low"], "ci_high": c["ci_high"], "p_value": c["p_value"],
                         "months": int(len(frame))})
    return pd.DataFrame(rows, columns=PROVIDER_CHECK_COLUMNS)
