"""Data for evaluating referral reductions: practice-month panels, PCT series and the planted truth.

The estimators live in :mod:`pbc_analysis.methods.its` (segmented regression) and :mod:`pbc_analysis.methods.did`
(staggered difference-in-differences); this module turns validated inputs into what they take:

- :func:`practice_month_panel`: one row per practice, month and specialty (and ``all``): events
  (GP referrals or activity at a point of delivery), the registered list that month, the rate per
  1,000 patients per year, and the practice's engagement cohort as a month index (``cohort``: the
  1-based index of its first engaged month in the window, 0 = never engaged within the window),
  the convention of R's ``did`` package (``gname``);
- :func:`pct_series`: monthly totals of events and list for the PCT, or for engaged and
  never-engaged practices separately (a controlled ITS);
- :func:`planted_truth`: the synthetic PCT's planted effects (``ground_truth.json``) as tidy tables, so
  that notebooks and tests can set estimates beside the truth.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from pbc_analysis.stages import benchmark as _bm
from pbc_analysis import data as _data

__all__ = ["DiDEvaluation", "cohort_exposure", "estimator_comparison", "evaluate_did", "events_avoided", "financial_year",
           "its_frame", "month_index", "pct_series", "period_panel", "placebo_panel", "planted_truth",
           "practice_month_panel", "regression_to_the_mean", "restrict_window"]


def month_index(months: Sequence[str] | pd.Series, first: str) -> np.ndarray:
    """1-based month number of ``YYYY-MM`` strings counted from ``first`` (``first`` is 1)."""
    y0, m0 = int(first[:4]), int(first[5:7])
    s = pd.Series(months, dtype="str")
    return ((s.str.slice(0, 4).astype(int) - y0) * 12 + s.str.slice(5, 7).astype(int) - m0 + 1).to_numpy()


def practice_month_panel(inputs: _data.Inputs, measure: str = "referrals", specialties: Sequence[str] | None = None,
                         cube: _bm.Cube | None = None, include_all: bool = True) -> pd.DataFrame:
    """A balanced practice x month panel of ``measure`` per specialty (and all specialties).

    Columns: ``practice_code``, ``consortium``, ``specialty_code``, ``month`` (``YYYY-MM``), ``t``
    (1..M), ``cohort`` (``t`` of the practice's first engaged month, 0 = never engaged in the window),
    ``engaged_from``, ``events``, ``registered`` (list at the start of the month), ``rate`` (events per
    1,000 registered patients per year: ``12000 x events / registered``) and ``post`` (1 from the
    engagement month on). ``specialties`` restricts the specialties (None = all of the measure).
    """
    cube = cube if cube is not None else _bm.build_cube(inputs)
    sub = _bm.select_measures(cube, [measure])
    spec = sub.series["specialty_code"].to_numpy()
    keep = np.ones(len(spec), bool) if not specialties else np.isin(spec, list(specialties))
    if specialties:
        unknown = sorted(set(specialties) - set(spec))
        if unknown:
            raise ValueError(f"specialties {unknown} have no {measure} in the data; they are {sorted(set(spec))}")
    counts = sub.counts[:, keep, :]  # (P, K, M)
    spec = spec[keep]
    if include_all:
        counts = np.concatenate([counts, counts.sum(axis=1, keepdims=True)], axis=1)
        spec = np.append(spec, _bm.ALL)
    P, K, M = counts.shape
    reg = cube.registered.sum(axis=2)  # (P, M)
    eng = inputs.engagement.set_index("practice_code")["engaged_from"].reindex(cube.practices)
    first = cube.months[0]
    has = eng.notna().to_numpy()
    cohort = np.zeros(P, dtype=np.int64)
    cohort[has] = month_index(eng[has].astype(str).to_numpy(), first)
    t = np.arange(1, M + 1)
    cons = cube.practice_info.set_index("practice_code")["consortium"].reindex(cube.practices).to_numpy()
    out = pd.DataFrame({
        "practice_code": np.repeat(cube.practices.to_numpy(), K * M),
        "consortium": np.repeat(cons, K * M),
        "specialty_code": np.tile(np.repeat(spec, M), P),
        "month": np.tile(np.array(cube.months), P * K),
        "t": np.tile(t, P * K),
        "cohort": np.repeat(cohort, K * M),
        "engaged_from": np.repeat(eng.fillna("").astype(str).to_numpy(), K * M),
        "events": counts.reshape(-1),
        "registered": np.repeat(reg[:, None, :], K, axis=1).reshape(-1),
    })
    out["rate"] = 12000.0 * out["events"] / out["registered"]
    out["post"] = ((out["cohort"] > 0) & (out["t"] >= out["cohort"])).astype(int)
    for c in ("practice_code", "consortium", "specialty_code", "month", "engaged_from"):
        out[c] = out[c].astype("str")
    return out


def pct_series(panel: pd.DataFrame, specialty_code: str = _bm.ALL, by_engagement: bool = False) -> pd.DataFrame:
    """Monthly totals of ``events`` and ``registered`` for one specialty (``all`` by default), for the
    whole PCT or (``by_engagement``) for ever-engaged and never-engaged practices (``group`` column
    ``engaged`` / ``never``), with ``rate`` per 1,000 per year, ``t``, ``calendar_month`` (1-12)."""
    p = panel[panel["specialty_code"] == specialty_code]
    if p.empty:
        raise ValueError(f"specialty {specialty_code!r} not in the panel")
    keys = ["month", "t"]
    if by_engagement:
        p = p.assign(group=np.where(p["cohort"] > 0, "engaged", "never"))
        keys = ["group"] + keys
    out = p.groupby(keys, as_index=False, sort=True)[["events", "registered"]].sum()
    out["rate"] = 12000.0 * out["events"] / out["registered"]
    out["calendar_month"] = out["month"].str.slice(5, 7).astype(int)
    return out


def planted_truth(truth: dict) -> dict[str, pd.DataFrame]:
    """The synthetic PCT's planted engagement effects as tables.

    ``effects``: per specialty the planted proportional cut in GP referrals at full ramp (``delta``)
    and its log (``log_effect = log(1 - delta)``); ``cohorts``: cohort, start month, practices, effect
    scale; ``avoided``: per practice and financial year the true expected referrals and referrals
    avoided (from the expected values, no noise).
    """
    eng = truth["engagement"]
    eff = pd.DataFrame({"specialty_code": list(eng["effects_by_specialty"]),
                        "delta": list(eng["effects_by_specialty"].values())})
    eff["log_effect"] = np.log1p(-eff["delta"])
    coh = pd.DataFrame([{k: c[k] for k in ("cohort", "start_month", "effect_scale")} | {"n_practices": len(c["practices"])}
                        for c in eng["cohorts"]])
    py = pd.DataFrame(truth["practice_year"])[["practice_code", "financial_year", "expected_referrals", "referrals_avoided"]]
    return {"effects": eff, "cohorts": coh, "avoided": py, "ramp_months": pd.DataFrame({"ramp_months": [eng["ramp_months"]]})}


def its_frame(series: pd.DataFrame, interruption: str, end: str | None = None) -> pd.DataFrame:
    """Add ``post`` (1 from the ``interruption`` month on) to a :func:`pct_series` table, keeping months
    up to ``end`` (inclusive; e.g. the last complete month). Errors name the month when it is not in
    the series."""
    months = set(series["month"])
    for name, m in (("interruption", interruption), ("end", end)):
        if m is not None and m not in months:
            raise ValueError(f"{name} month {m!r} is not in the series ({min(months)} to {max(months)})")
    out = series[series["month"] <= end].copy() if end else series.copy()
    out["post"] = (out["month"] >= interruption).astype(int)
    if out["post"].nunique() < 2:
        raise ValueError(f"interruption {interruption!r} leaves no pre or no post months before {end!r}")
    return out.reset_index(drop=True)


def regression_to_the_mean(panel: pd.DataFrame, baseline: tuple[str, str], follow_up: tuple[str, str],
                           top_share: float = 0.2, never_engaged_only: bool = True,
                           specialty_code: str = "all") -> pd.DataFrame:
    """How far practices selected for being the highest referrers in a baseline window fall back in a
    later window with no intervention at all (Barnett, van der Pols and Dobson 2005, Int J Epidemiol
    34:215-220).

    Each practice's ratio is its rate over the PCT's rate in the window (for ``specialty_code``, among
    never-engaged practices when ``never_engaged_only``, so no practice is treated). Returns one row
    per group (``top`` = the top ``top_share`` by baseline ratio, ``rest``) with the number of
    practices and the mean ratio in each window: the top group's fall is regression to the mean.
    """
    if not 0 < top_share < 1:
        raise ValueError(f"top_share must be between 0 and 1, got {top_share!r}")
    if specialty_code not in set(panel["specialty_code"]):
        raise ValueError(f"specialty_code {specialty_code!r} is not in the panel; choose one of "
                         f"{sorted(panel['specialty_code'].unique())} (codes are strings, e.g. \"110\")")
    p = panel[panel["specialty_code"] == specialty_code]
    if never_engaged_only:
        p = p[p["cohort"] == 0]
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


# --------------------------------------------------------------------------------------------------
# Periods, placebo and the staggered difference-in-differences by specialty
# --------------------------------------------------------------------------------------------------

def financial_year(months: Sequence[str] | pd.Series) -> np.ndarray:
    """English financial year (April to March) of ``YYYY-MM`` strings, as ``2006/07``."""
    s = pd.Series(months, dtype="str")
    y = s.str.slice(0, 4).astype(int) - (s.str.slice(5, 7).astype(int) < 4)
    return (y.astype(str) + "/" + ((y + 1) % 100).map("{:02d}".format)).to_numpy()


def restrict_window(panel: pd.DataFrame, first: str | None = None, last: str | None = None) -> pd.DataFrame:
    """Keep the months ``first`` to ``last`` of a :func:`practice_month_panel` (None = its own first or
    last month), renumbering ``t`` from 1 and the cohorts with it. A practice engaged after ``last`` is
    never engaged within the kept months (cohort 0); one engaged before ``first`` would have no
    pre-period, which is an error naming the practices."""
    months = sorted(panel["month"].unique())
    first, last = first or months[0], last or months[-1]
    for name, m in (("first", first), ("last", last)):
        if m not in months:
            raise ValueError(f"window {name} month {m!r} is not in the panel ({months[0]} to {months[-1]})")
    if first >= last:
        raise ValueError(f"window first month {first} must be before its last month {last}")
    offset = months.index(first)
    out = panel[(panel["month"] >= first) & (panel["month"] <= last)].copy()
    out["t"] = out["t"] - offset
    n = int(out["t"].max())
    early = out.loc[(out["cohort"] > 0) & (out["cohort"] - offset <= 1), "practice_code"].unique()
    if len(early):
        raise ValueError(f"{len(early)} practice(s) engaged in or before the window's first month {first} "
                         f"(e.g. {list(early[:5])}): start the baseline earlier so every cohort has a pre-period")
    cohort = out["cohort"] - offset
    out["cohort"] = np.where((out["cohort"] > 0) & (cohort <= n), cohort, 0)
    out["engaged_from"] = np.where(out["cohort"] > 0, out["engaged_from"], "")
    out["post"] = ((out["cohort"] > 0) & (out["t"] >= out["cohort"])).astype(int)
    return out.reset_index(drop=True)


def period_panel(panel: pd.DataFrame, months: int = 3) -> pd.DataFrame:
    """Sum a :func:`practice_month_panel` into periods of ``months`` consecutive months counted from the
    window's first month (``months=3`` and a window starting in April: financial quarters).

    Monthly specialty counts are small (a typical practice makes about ten referrals a month in a
    specialty), and a difference-in-differences compares each post period with one base period, so
    noise in that single base month weighs on every estimate; quarters cut it by about sqrt(3) while a
    6-month ramp still spans two periods. Columns as the monthly panel, with ``t`` the period number,
    ``month`` and ``last_month`` its first and last months, ``events`` summed, ``person_months`` the
    summed monthly lists, ``registered`` their mean, ``rate = 12000 x events / person_months`` (per 1,000
    patients per year), ``cohort`` the period containing the practice's first engaged month (so the
    first treated period may be partly treated) and ``post``. A trailing incomplete period is dropped
    with a warning that names its months.
    """
    if not isinstance(months, (int, np.integer)) or months < 1:
        raise ValueError(f"months must be a positive integer, got {months!r}")
    M = int(panel["t"].max())
    n_full = M // months
    if n_full == 0:
        raise ValueError(f"the panel has {M} month(s), fewer than one period of {months}")
    if n_full * months < M:
        left = sorted(panel.loc[panel["t"] > n_full * months, "month"].unique())
        warnings.warn(f"period_panel: months {left[0]} to {left[-1]} do not fill a period of {months} months "
                      "and are left out", UserWarning, stacklevel=2)
    p = panel[panel["t"] <= n_full * months]
    period = (p["t"].to_numpy() - 1) // months + 1
    keys = ["practice_code", "consortium", "specialty_code", "cohort", "engaged_from"]
    g = p.assign(period=period).groupby(keys + ["period"], sort=True, observed=True)
    out = g.agg(month=("month", "first"), last_month=("month", "last"), events=("events", "sum"),
                person_months=("registered", "sum")).reset_index()
    out["registered"] = out["person_months"] / months
    out["rate"] = 12000.0 * out["events"] / out["person_months"]
    out["cohort"] = np.where(out["cohort"] > 0, (out["cohort"] - 1) // months + 1, 0)
    out = out.rename(columns={"period": "t"})
    out["post"] = ((out["cohort"] > 0) & (out["t"] >= out["cohort"])).astype(int)
    cols = ["practice_code", "consortium", "specialty_code", "month", "last_month", "t", "cohort", "engaged_from",
            "events", "person_months", "registered", "rate", "post"]
    return out[cols].sort_values(["practice_code", "specialty_code", "t"], ignore_index=True)


def placebo_panel(panel: pd.DataFrame, shift_months: int = 12) -> pd.DataFrame:
    """A placebo test's panel: only the months before any practice engaged, with every practice's
    engagement moved ``shift_months`` earlier (Abadie, Diamond and Hainmueller's "in-time placebo").

    A practice whose moved date falls before the second month or at or after the real first engagement
    is a comparison (cohort 0) in the placebo: it was untreated throughout the kept months. An effect
    found here is not an effect of engagement but a sign of diverging trends or anticipation.
    """
    if not isinstance(shift_months, (int, np.integer)) or shift_months < 1:
        raise ValueError(f"shift_months must be a positive integer, got {shift_months!r}")
    real = panel.loc[panel["cohort"] > 0, "cohort"]
    if real.empty:
        raise ValueError("no practice engaged in the window, so there is no pre-period for a placebo")
    cut = int(real.min())
    p = panel[panel["t"] < cut].copy()
    fake = p["cohort"] - shift_months
    p["cohort"] = np.where((p["cohort"] > 0) & (fake >= 2) & (fake < cut), fake, 0)
    if not (p["cohort"] > 0).any():
        raise ValueError(f"shifting engagement {shift_months} months earlier leaves no practice engaged inside "
                         f"the {cut - 1} months before the first real engagement; use a smaller shift_months")
    first = p.groupby("t")["month"].first()
    p["engaged_from"] = np.where(p["cohort"] > 0, p["cohort"].map(first).fillna("").astype(str), "")
    p["post"] = ((p["cohort"] > 0) & (p["t"] >= p["cohort"])).astype(int)
    return p.reset_index(drop=True)


def cohort_exposure(panel: pd.DataFrame, specialty_code: str = _bm.ALL) -> pd.DataFrame:
    """Each engagement cohort's person-years per 1,000 in each period (``exposure``), with the period's
    financial year: the weights turning an effect on a rate per 1,000 per year into a count."""
    p = panel[(panel["specialty_code"] == specialty_code) & (panel["cohort"] > 0)]
    col = "person_months" if "person_months" in p.columns else "registered"
    out = p.groupby(["cohort", "t"], as_index=False).agg(person_months=(col, "sum"), month=("month", "first"))
    out["exposure"] = out["person_months"] / 12000.0
    out["financial_year"] = financial_year(out["month"])
    return out.rename(columns={"t": "time"})[["cohort", "time", "month", "financial_year", "exposure"]]


@dataclass
class DiDEvaluation:
    """Staggered difference-in-differences of one measure, specialty by specialty (:func:`evaluate_did`).

    ``effects``: one row per specialty; ``event_study``: dynamic effects per specialty and event time;
    ``attgt``: the ``att_gt`` DataFrames by specialty (their ``attrs`` hold the influence functions)."""

    effects: pd.DataFrame
    event_study: pd.DataFrame
    attgt: dict[str, pd.DataFrame]
    control_group: str
    full_effect_from: int
    period_months: int


def evaluate_did(panel: pd.DataFrame, control_group: str = "not_yet", full_effect_from: int = 2,
                 confidence: float = 0.95, period_months: int = 3) -> DiDEvaluation:
    """Callaway and Sant'Anna (2021) group-time effects on each specialty's practice rates per 1,000 per
    year (:func:`pbc_analysis.methods.did.att_gt`, analytic standard errors), aggregated as R's ``did::aggte``.

    ``panel``: a :func:`period_panel` (or monthly) panel. Per specialty: the simple ATT over all
    post-engagement periods (rate per 1,000 per year), the proportional effect once the effect has
    built up (:func:`pbc_analysis.methods.did.relative_effect` over event times ``>= full_effect_from`` periods:
    the ramp-up is left out so the estimate is comparable with a steady-state effect), the pre-trend Wald
    test (``pretrend_p``: Hotelling's F version; ``pretrend_p_chi2``: ``did``'s chi-squared, which
    over-rejects with many pre-periods and few practices) and the event study (``dynamic``). Returns a :class:`DiDEvaluation`. ``period_months`` is only
    recorded (how many months one period spans) for labels.
    """
    from pbc_analysis.methods import did as _did

    if control_group not in ("never", "not_yet"):
        raise ValueError(f"control_group must be 'never' or 'not_yet', not {control_group!r}")
    rows, es, fits = [], [], {}
    for spec, p in panel.groupby("specialty_code", sort=True):
        r = _did.att_gt(p, "rate", "practice_code", "t", "cohort", control_group=control_group, confidence=confidence)
        simple = _did.aggregate(r, "simple").overall
        rel = _did.relative_effect(r, min_e=full_effect_from)
        try:
            pre = _did.pretrend_test(r)
            pre_p, pre_chi2 = float(pre["f_p_value"]), float(pre["p_value"])
        except ValueError:
            pre_p = pre_chi2 = float("nan")
        dyn = _did.aggregate(r, "dynamic")
        t = dyn.table.assign(specialty_code=spec)
        es.append(t[["specialty_code", "event_time", "estimate", "std_error", "ci_low", "ci_high"]])
        fit = r.attrs["att_gt"]
        rows.append({"specialty_code": spec, "att": simple["estimate"], "att_std_error": simple["std_error"],
                     "att_ci_low": simple["ci_low"], "att_ci_high": simple["ci_high"],
                     "treated_rate": rel["treated_mean"], "counterfactual_rate": rel["counterfactual_mean"],
                     "relative": rel["relative"], "relative_ci_low": rel["relative_ci_low"],
                     "relative_ci_high": rel["relative_ci_high"], "pretrend_p": pre_p,
                     "pretrend_p_chi2": pre_chi2,
                     "engaged_practices": int((fit.unit_cohort > 0).sum()),
                     "comparison_practices": int((fit.unit_cohort == 0).sum())})
        fits[spec] = r
    return DiDEvaluation(effects=pd.DataFrame(rows), event_study=pd.concat(es, ignore_index=True), attgt=fits,
                         control_group=control_group, full_effect_from=full_effect_from,
                         period_months=period_months)


def events_avoided(attgt_result: pd.DataFrame, panel: pd.DataFrame, specialty_code: str = _bm.ALL,
                   from_month: str | None = None) -> pd.DataFrame:
    """Events (e.g. GP referrals) avoided by engagement, by financial year and in total, from the
    group-time effects on rates: ``avoided = - sum_(g,t) ATT(g,t) x person-years(g,t) / 1,000``
    (:func:`pbc_analysis.methods.did.total_effect`), with 95% (or ``att_gt``'s) intervals.

    Columns ``financial_year`` (``total`` last), ``avoided``, ``std_error``, ``ci_low``, ``ci_high``,
    ``cells`` (group-time cells summed). ``from_month``: the evaluation window's first month; periods
    starting before it count zero (they are still estimated, and used by the comparison groups).
    """
    from pbc_analysis.methods import did as _did

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
    """The same question answered three ways, on one specialty's panel: events avoided over the whole
    post-engagement period by Callaway-Sant'Anna, by static two-way fixed effects on the rate
    (:func:`pbc_analysis.methods.did.twfe`, clustered by practice) and by Poisson two-way fixed effects on the
    counts with log person-months as offset (:func:`pbc_analysis.methods.did.fepois`).

    TWFE's avoided = ``-b x`` treated post-engagement person-years per 1,000; PPML's = ``sum y (exp(-b) -
    1)`` over treated post-engagement cells (the counterfactual of each observed count), intervals by
    the same transformations of ``b``'s interval. With a ramped effect and staggered cohorts, static
    TWFE compares later cohorts with earlier ones whose effect is still growing and is biased towards
    zero (Goodman-Bacon 2021); see :func:`pbc_analysis.methods.did.bacon_decomposition`.
    """
    from pbc_analysis.methods import did as _did

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


def provider_change_check(inputs: _data.Inputs, end: str | None = None, harmonics: int = 2,
                          confidence: float = 0.95) -> pd.DataFrame:
    """Does a provider's change of policy (the ``provider_changes`` table) show up in GP referrals?

    For each listed change, two monthly series of the never-engaged practices' patients *at that
    provider* (in the change's specialty, or all): the GP referrals they sent it and the activity at the
    changed point of delivery (e.g. follow-up attendances). Each gets a segmented quasi-Poisson
    regression (:func:`pbc_analysis.methods.its.fit_segmented`: ``harmonics`` seasonal pairs, the practices' list
    as offset, a level and a slope change at the change's month), up to ``end`` (the last month whose
    activity is complete). Engagement cannot explain a step among practices that never engaged, so a
    step in follow-ups with none in referrals says the fall came from the hospital's policy, not from
    referral behaviour. Returns one row per change and series: ``provider_code, change_month, pod,
    specialty_code, series`` (``gp_referrals`` or the pod), ``level_change`` (rate ratio), ``ci_low,
    ci_high, p_value, months``.
    """
    from pbc_analysis.methods import its as _its

    cols = ["provider_code", "change_month", "pod", "specialty_code", "series", "level_change", "ci_low", "ci_high",
            "p_value", "months"]
    changes = inputs.provider_changes
    if changes is None or changes.empty:
        return pd.DataFrame(columns=cols)
    never = set(inputs.practices["practice_code"]) - set(inputs.engagement.loc[inputs.engagement["engaged_from"].notna(),
                                                                                 "practice_code"])
    if not never:
        raise ValueError("no never-engaged practices: the provider-change check needs them")
    pop = inputs.population[inputs.population["practice_code"].isin(never)]
    lists = pop.groupby("month", as_index=False)["registered"].sum()
    rows = []
    for ch in changes.itertuples(index=False):
        spec = str(ch.specialty_code)
        series = {"gp_referrals": (inputs.referrals, "referrals", None), str(ch.pod): (inputs.activity, "activity", str(ch.pod))}
        for name, (table, value, pod) in series.items():
            t = table[table["practice_code"].isin(never) & (table["provider_code"] == ch.provider_code)]
            if pod is not None:
                t = t[t["pod"] == pod]
            if spec != "all":
                t = t[t["specialty_code"] == spec]
            s = t.groupby("month", as_index=False)[value].sum().rename(columns={value: "events"})
            s = lists.merge(s, on="month", how="left").fillna({"events": 0})
            s["t"] = np.arange(1, len(s) + 1)
            s["calendar_month"] = s["month"].str.slice(5, 7).astype(int)
            frame = its_frame(s, str(ch.effective_month), end)
            fit = _its.fit_segmented(frame, "events", "t", "post", offset="registered", family="quasipoisson",
                                     harmonics=harmonics, season="calendar_month", slope_change=True,
                                     confidence=confidence)
            c = fit.coefficients.loc["level_change"]
            rows.append({"provider_code": str(ch.provider_code), "change_month": str(ch.effective_month),
                         "pod": str(ch.pod), "specialty_code": spec, "series": name, "level_change": c["ratio"],
                         "ci_low": c["ci_low"], "ci_high": c["ci_high"], "p_value": c["p_value"],
                         "months": int(len(frame))})
    return pd.DataFrame(rows, columns=cols)


# --------------------------------------------------------------------------------------------------
# The whole evaluation, its tables and headline figures
# --------------------------------------------------------------------------------------------------

@dataclass
class ReferralEvaluation:
    """Everything notebook 03 shows (:func:`evaluate_referrals`)."""

    measure: str
    panel: pd.DataFrame            # practice x month x specialty
    period_panel: pd.DataFrame     # practice x period x specialty (the DiD's data)
    interruption: str
    its_end: str
    its: Any                       # ITSResult, PCT series
    its_controlled: Any            # ITSResult, engaged vs never-engaged
    its_avoided: pd.DataFrame      # effect_summary of its (total row last)
    its_controlled_avoided: pd.DataFrame
    did: DiDEvaluation
    avoided: pd.DataFrame          # events avoided by financial year (Callaway-Sant'Anna)
    comparison: pd.DataFrame       # CS vs TWFE vs Poisson TWFE
    bacon: pd.DataFrame            # Goodman-Bacon summary of the TWFE estimate (all specialties)
    placebo: DiDEvaluation
    placebo_shift_months: int
    rtm: pd.DataFrame
    provider_check: pd.DataFrame
    confidence: float
    specialty_names: dict[str, str]


def evaluate_referrals(inputs: _data.Inputs, measure: str = "referrals", specialties: Sequence[str] | None = None,
                       baseline_window: tuple[str, str] | None = None,
                       evaluation_window: tuple[str, str] | None = None, period_months: int = 3, control_group: str = "not_yet", full_effect_from: int = 2,
                       interruption: str | None = None, its_end: str | None = None, activity_end: str | None = None,
                       harmonics: int = 2, placebo_shift_months: int = 12,
                       rtm_baseline: tuple[str, str] | None = None, rtm_follow_up: tuple[str, str] | None = None,
                       rtm_top_share: float = 0.2, rtm_specialty: str = _bm.ALL, confidence: float = 0.95, n_sims: int = 2000,
                       seed: int = 0) -> ReferralEvaluation:
    """Evaluate engagement's effect on ``measure`` (GP referrals by default) every way notebook 03 shows.

    The analysis uses the months from ``baseline_window``'s first (which must end before the first
    engagement) to ``evaluation_window``'s last (None: the whole loaded window); referrals avoided are
    counted from ``evaluation_window``'s first month.

    1. ITS: the PCT's monthly series, segmented quasi-Poisson with ``harmonics`` seasonal pairs, list
       as offset, level and slope change at ``interruption`` (default: the first engagement month), up
       to ``its_end``; and the controlled ITS with never-engaged practices as comparison
       (:mod:`pbc_analysis.methods.its`); events avoided with simulation intervals (``n_sims``, ``seed``).
    2. Staggered DiD by specialty on ``period_months`` periods (:func:`evaluate_did`), events avoided by
       financial year (:func:`events_avoided`), CS against static TWFE and Poisson TWFE
       (:func:`estimator_comparison`) and the Bacon decomposition of the TWFE estimate.
    3. Placebo: the same DiD with engagement moved ``placebo_shift_months`` earlier on pre-engagement
       months only (:func:`placebo_panel`).
    4. Regression to the mean among never-engaged practices (:func:`regression_to_the_mean`) between
       ``rtm_baseline`` and ``rtm_follow_up`` (default: the first and second 12 months) in
       ``rtm_specialty`` (a short baseline in one specialty shows it most clearly).
    5. Provider changes (:func:`provider_change_check`) up to ``activity_end`` (the last complete month
       of activity; default ``its_end``).
    """
    from pbc_analysis.methods import did as _did
    from pbc_analysis.methods import its as _its

    cube = _bm.build_cube(inputs)
    panel = practice_month_panel(inputs, measure=measure, specialties=specialties, cube=cube)
    for name, w in (("baseline_window", baseline_window), ("evaluation_window", evaluation_window)):
        if w is not None and (len(w) != 2 or w[0] > w[1]):
            raise ValueError(f"{name} must be [first month, last month] in order, got {list(w)}")
    panel = restrict_window(panel, baseline_window[0] if baseline_window else None,
                            evaluation_window[1] if evaluation_window else None)
    months = sorted(panel["month"].unique())
    engaged = panel.loc[panel["cohort"] > 0, "engaged_from"]
    if engaged.empty:
        raise ValueError("no practice engaged within the window: there is nothing to evaluate")
    if baseline_window and baseline_window[1] >= min(engaged):
        raise ValueError(f"baseline_window ends {baseline_window[1]}, not before the first engagement {min(engaged)}: "
                         "the baseline must be free of engagement")
    if evaluation_window and evaluation_window[0] < min(engaged):
        raise ValueError(f"evaluation_window starts {evaluation_window[0]}, before the first engagement "
                         f"{min(engaged)}; start it at or after that month")
    interruption = interruption or min(engaged)
    its_end = its_end or months[-1]
    kw = dict(offset="registered", family="quasipoisson", harmonics=harmonics, season="calendar_month",
              slope_change=True, confidence=confidence)
    its_fit = _its.fit_segmented(its_frame(pct_series(panel), interruption, its_end), "events", "t", "post", **kw)
    its_c = _its.fit_controlled(its_frame(pct_series(panel, by_engagement=True), interruption, its_end), "events", "t",
                                "post", group="group", treated_value="engaged", **kw)
    q = period_panel(panel, period_months)
    dd = evaluate_did(q, control_group=control_group, full_effect_from=full_effect_from, confidence=confidence,
                      period_months=period_months)
    all_q = q[q["specialty_code"] == _bm.ALL]
    bacon = _did.bacon_summary(_did.bacon_decomposition(all_q, "rate", "practice_code", "t", "cohort"))
    placebo = evaluate_did(period_panel(placebo_panel(panel, placebo_shift_months), period_months),
                           control_group=control_group, full_effect_from=full_effect_from, confidence=confidence,
                           period_months=period_months)
    rtm_baseline = tuple(rtm_baseline) if rtm_baseline else (months[0], months[11])
    rtm_follow_up = tuple(rtm_follow_up) if rtm_follow_up else (months[12], months[23])
    return ReferralEvaluation(
        measure=measure, panel=panel, period_panel=q, interruption=interruption, its_end=its_end, its=its_fit,
        its_controlled=its_c, its_avoided=_its.effect_summary(its_fit, n_sims=n_sims, seed=seed, confidence=confidence),
        its_controlled_avoided=_its.effect_summary(its_c, n_sims=n_sims, seed=seed, confidence=confidence),
        did=dd, avoided=events_avoided(dd.attgt[_bm.ALL], q,
                                      from_month=evaluation_window[0] if evaluation_window else None), comparison=estimator_comparison(q, dd.attgt[_bm.ALL]),
        bacon=bacon, placebo=placebo, placebo_shift_months=placebo_shift_months,
        rtm=regression_to_the_mean(panel, rtm_baseline, rtm_follow_up, top_share=rtm_top_share,
                                   specialty_code=rtm_specialty),
        provider_check=provider_change_check(inputs, end=activity_end or its_end, harmonics=harmonics,
                                             confidence=confidence),
        confidence=confidence,
        specialty_names={**dict(zip(inputs.specialties["specialty_code"].astype(str),
                                    inputs.specialties["specialty_name"].astype(str))), _bm.ALL: "All specialties"})


def _its_row(name: str, fit: Any, avoided: pd.DataFrame) -> dict[str, Any]:
    s = fit.summary()
    tot = avoided.iloc[-1]
    return {"model": name, "level_change": s["level_change_ratio"], "level_change_ci_low": s["level_change_ci_low"],
            "level_change_ci_high": s["level_change_ci_high"], "slope_change": s["slope_change_ratio"],
            "slope_change_ci_low": s["slope_change_ci_low"], "slope_change_ci_high": s["slope_change_ci_high"],
            "dispersion": s["dispersion"], "ljung_box_p": s["ljung_box_p"], "avoided": tot["avoided"],
            "avoided_ci_low": tot["avoided_low"], "avoided_ci_high": tot["avoided_high"]}


def _named(df: pd.DataFrame, names: dict[str, str]) -> pd.DataFrame:
    out = df.copy()
    out.insert(1, "specialty_name", out["specialty_code"].map(names).fillna(""))
    return out


def result_tables(ev: ReferralEvaluation) -> dict[str, pd.DataFrame]:
    """The evaluation's result tables (``ev_*``), all modelled or PCT-level figures: no practice-level
    counts (the RTM table holds ratios only)."""
    its_tab = pd.DataFrame([_its_row("ITS (PCT)", ev.its, ev.its_avoided),
                            _its_row("Controlled ITS (engaged vs never engaged)", ev.its_controlled,
                                     ev.its_controlled_avoided)])
    coef = pd.concat([ev.its.coefficients.assign(model="ITS (PCT)"),
                      ev.its_controlled.coefficients.assign(model="Controlled ITS")]).rename_axis("term").reset_index()
    attgt = ev.did.attgt[_bm.ALL].drop(columns=[c for c in ("cband_low", "cband_high") if c in ev.did.attgt[_bm.ALL]])
    return {
        "ev_its": its_tab,
        "ev_its_coefficients": coef[["model", "term", "estimate", "std_error", "ratio", "ci_low", "ci_high", "p_value"]],
        "ev_did_effects": _named(ev.did.effects, ev.specialty_names),
        "ev_event_study": ev.did.event_study,
        "ev_attgt_all": attgt.assign(post=attgt["post"].astype(int)),
        "ev_avoided": ev.avoided,
        "ev_estimators": ev.comparison,
        "ev_bacon": ev.bacon,
        "ev_placebo": _named(ev.placebo.effects, ev.specialty_names),
        "ev_rtm": ev.rtm,
        "ev_provider_check": ev.provider_check,
    }


def headline(ev: ReferralEvaluation) -> dict[str, Any]:
    """Headline figures for ``results.json`` section ``evaluation`` (JSON-able)."""
    eff = ev.did.effects.set_index("specialty_code")
    a = eff.loc[_bm.ALL]
    tot = ev.avoided.iloc[-1]
    its_tot, its_c = ev.its_avoided.iloc[-1], ev.its_controlled_avoided.iloc[-1]
    sig = eff.drop(index=_bm.ALL)
    pl = ev.placebo.effects.set_index("specialty_code").loc[_bm.ALL]
    comp = ev.comparison.set_index("estimator")

    def est(v, lo, hi):
        return {"estimate": float(v), "ci_low": float(lo), "ci_high": float(hi)}

    return {
        "measure": ev.measure,
        "confidence": ev.confidence,
        "control_group": ev.did.control_group,
        "period_months": ev.did.period_months,
        "full_effect_from_periods": ev.did.full_effect_from,
        "interruption": ev.interruption,
        "its_end": ev.its_end,
        "referrals_avoided": est(tot["avoided"], tot["ci_low"], tot["ci_high"]),
        "referrals_avoided_by_year": {r.financial_year: est(r.avoided, r.ci_low, r.ci_high)
                                      for r in ev.avoided.iloc[:-1].itertuples()},
        "relative_effect_full": est(a["relative"], a["relative_ci_low"], a["relative_ci_high"]),
        "att_rate_per_1000": est(a["att"], a["att_ci_low"], a["att_ci_high"]),
        "pretrend_p": float(a["pretrend_p"]),
        "specialties_with_significant_reduction": sorted(sig.index[sig["relative_ci_high"] < 0].tolist()),
        "specialties_evaluated": int(len(sig)),
        "its_avoided": est(its_tot["avoided"], its_tot["avoided_low"], its_tot["avoided_high"]),
        "controlled_its_avoided": est(its_c["avoided"], its_c["avoided_low"], its_c["avoided_high"]),
        "twfe_avoided": est(*comp.loc["TWFE (rate)", ["avoided", "ci_low", "ci_high"]]),
        "placebo_relative": est(pl["relative"], pl["relative_ci_low"], pl["relative_ci_high"]),
        "placebo_shift_months": ev.placebo_shift_months,
        "rtm_top_group_change": float(ev.rtm.set_index("group").loc["top", "change"]),
        "provider_changes": [{k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in r.items()}
                             for r in ev.provider_check.to_dict("records")],
    }


_CONTROL_LABEL = {"not_yet": "not-yet-engaged and never-engaged", "never": "never-engaged"}


def describe(head: dict[str, Any]) -> str:
    """The headline in plain words (Markdown), every number from ``head``."""
    r, rel = head["referrals_avoided"], head["relative_effect_full"]
    pl = head["placebo_relative"]
    conf = f"{head['confidence']:.0%}"
    sig = head["specialties_with_significant_reduction"]
    lines = [
        f"Engaged practices made **{r['estimate']:,.0f} fewer GP referrals** than they would have without engagement "
        f"({conf} CI {r['ci_low']:,.0f} to {r['ci_high']:,.0f}), from their engagement to the end of the window "
        f"(staggered difference-in-differences, {_CONTROL_LABEL.get(head['control_group'], head['control_group'])} practices as comparison).",
        f"Once the effect had built up, their referral rate was **{-rel['estimate']:.1%} lower** than it would have "
        f"been ({conf} CI {-rel['ci_high']:.1%} to {-rel['ci_low']:.1%} lower).",
        f"Specialties with a reduction whose interval excludes zero: {', '.join(sig) if sig else 'none'} "
        f"(of {head['specialties_evaluated']}).",
        f"Placebo (engagement moved {head['placebo_shift_months']} months earlier, pre-engagement data only): "
        f"{pl['estimate']:+.1%} ({conf} CI {pl['ci_low']:+.1%} to {pl['ci_high']:+.1%}); pre-trend test p = "
        f"{head['pretrend_p']:.2f}.",
    ]
    return "\n\n".join(lines)


def load_truth(data_dir: str | Path) -> dict | None:
    """The synthetic PCT's ``ground_truth.json`` in ``data_dir``, or None for real data."""
    import json

    p = Path(data_dir) / "ground_truth.json"
    return json.loads(p.read_text(encoding="utf-8")) if p.exists() else None


def recovery(ev: ReferralEvaluation, truth: dict) -> dict[str, pd.DataFrame]:
    """Estimates beside the planted truth of a synthetic PCT: ``specialties`` (relative effect at full
    ramp vs ``-delta``; the truth for ``all`` is the engaged practices' referrals avoided over their
    counterfactual in the last financial year, when every cohort is at full effect) and ``avoided`` (by
    financial year and in total), each with ``covered``."""
    pt = planted_truth(truth)
    eff = ev.did.effects[["specialty_code", "relative", "relative_ci_low", "relative_ci_high"]].copy()
    truth_rel = dict(zip(pt["effects"]["specialty_code"], -pt["effects"]["delta"]))
    py = pt["avoided"]
    last = py[py["financial_year"] == py["financial_year"].max()]
    truth_rel[_bm.ALL] = float(-last["referrals_avoided"].sum() / (last["expected_referrals"] + last["referrals_avoided"]).sum())
    eff["truth"] = eff["specialty_code"].map(truth_rel)
    eff["covered"] = (eff["relative_ci_low"] <= eff["truth"]) & (eff["truth"] <= eff["relative_ci_high"])
    by_year = py.groupby("financial_year")["referrals_avoided"].sum()
    av = ev.avoided.copy()
    av["truth"] = av["financial_year"].map(by_year)
    av.loc[av["financial_year"] == "total", "truth"] = float(by_year[by_year.index.isin(av["financial_year"])].sum())
    av["covered"] = (av["ci_low"] <= av["truth"]) & (av["truth"] <= av["ci_high"])
    return {"specialties": eff, "avoided": av}
