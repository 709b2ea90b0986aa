"""The report's executive summary and verdicts, every sentence computed from the result it speaks of.

The headline table and chart read only ``results.json``. Each verdict sentence is chosen by the evidence,
never fixed text: the referral verdict by whether the interval of the change in referral rate excludes zero
(and on which side); the savings verdict by whether the practice-action interval excludes zero; the
parallel-trends caveat by the pre-trend tests (all specialties together and each specialty, failing below one
minus the run's confidence, :func:`pbc_analysis.stages.evaluation.stage.pretrend_level`), naming the
specialties that fail; the data caveat by the attribution's completeness factors. p-values go through
:func:`pbc_analysis.core.numbers.p_text`, so none below 0.001 is printed as "0.00".
"""

from __future__ import annotations

import io
from typing import Any

import pandas as pd
from IPython.display import HTML

from pbc_analysis.core import numbers
from pbc_analysis.publish.markdown import html_table as _table
from pbc_analysis.publish.markdown import markdown_safe

#: every line of the change in spend between the base and the evaluation year (the ledger's, in its order);
#: one sign convention throughout: the change in spend in GBP, negative where spend fell
SPEND_LINES = (("population", "Population (list size and age-sex mix)"),
               ("need", "Need (deprivation and other need factors)"),
               ("tariff", "Tariff (national prices)"),
               ("provider_change", "Provider change (follow-up, conversion, coding)"),
               ("practice_action", "Practice action (referral behaviour)"),
               ("unexplained", "Underlying growth in demand shared by all practices (trend and season)"))


#: the lines' short names, for the chart's axis (the table and the caption give them in full)
_SHORT = {"population": "Population", "need": "Need", "tariff": "Tariff", "provider_change": "Provider change",
          "practice_action": "Practice action", "unexplained": "Underlying growth (all practices)"}


def spend_lines(att: dict[str, Any]) -> pd.DataFrame:
    """Every line of the change in spend of the evaluation year, in one sign convention (GBP, negative = spend fell).

    The practice-action line is minus the practice-action saving; the last line, what population, need, tariff,
    provider change and practice action do not account for, is the growth in demand shared by all practices (on a
    synthetic PCT the generator's ``lmdi_secular_trend_and_season``; tested against it).

    Parameters
    ----------
    att : dict
        ``results.json``'s ``attribution`` section.

    Returns
    -------
    pandas.DataFrame
        ``key, label, estimate, ci_low, ci_high`` (GBP), one row per line present; empty without attribution.

    References
    ----------
    Ang BW (2005), The LMDI approach to decomposition analysis, Energy Policy 33:867-871 (the accounting);
    DOMAIN.md, attribution (which lines are the practices').
    """
    rows = []
    for key, label in SPEND_LINES:
        if key == "practice_action" and att.get("practice_action_savings"):
            d = att["practice_action_savings"]
            rows.append((key, label, -d["estimate"], -d["ci_high"], -d["ci_low"]))
        elif att.get(key):
            d = att[key]
            rows.append((key, label, d["estimate"], d["ci_low"], d["ci_high"]))
    return pd.DataFrame(rows, columns=["key", "label", "estimate", "ci_low", "ci_high"])


def _gbp_m(v: float) -> str:
    return f"{v / 1e6:+,.2f}m"


def _year_referrals(res: dict[str, Any], year: str) -> list[dict[str, str]]:
    """The evaluation year's referrals avoided, by the evaluation (with its interval) and by the attribution."""
    rows = []
    by_year = ((res.get("evaluation") or {}).get("referrals_avoided_by_year") or {}).get(year)
    if by_year:
        rows.append({"Line": f"GP referrals avoided by engaged practices, {year} (difference-in-differences)",
                     "Value": f"{by_year['estimate']:,.0f}",
                     "95% CI": f"{by_year['ci_low']:,.0f} to {by_year['ci_high']:,.0f}", "Unit": "referrals"})
    av = (res.get("attribution") or {}).get("referrals_avoided")
    if av is not None:
        rows.append({"Line": f"GP referrals avoided by engaged practices, {year} (attribution model)",
                     "Value": f"{av:,.0f}", "95% CI": "", "Unit": "referrals"})
    return rows


def executive_summary_table(res: dict[str, Any]) -> HTML:
    """The headline of one year: referrals avoided, spend in the base and evaluation years, and every line of the
    change in spend in one sign convention, adding up to the change (all modelled, from ``results.json``).

    Parameters
    ----------
    res : dict
        The run's ``results.json``.

    Returns
    -------
    IPython.display.HTML

    References
    ----------
    As :func:`spend_lines`.
    """
    att = res.get("attribution") or {}
    year = att.get("evaluation_year") or ""
    rows = _year_referrals(res, year) if year else []
    if not year and (res.get("evaluation") or {}).get("referrals_avoided"):
        r = res["evaluation"]["referrals_avoided"]
        rows.append({"Line": "GP referrals avoided by engaged practices (difference-in-differences)",
                     "Value": f"{r['estimate']:,.0f}", "95% CI": f"{r['ci_low']:,.0f} to {r['ci_high']:,.0f}",
                     "Unit": "referrals, from engagement to the end of the window"})
    lines = spend_lines(att)
    if len(lines) and att.get("spend") is not None:
        base = att.get("base_year", "the base year")
        rows.append({"Line": f"Spend, {base} (base year)", "Value": f"{att['spend_base'] / 1e6:,.2f}m", "95% CI": "",
                     "Unit": "GBP"})
        rows.append({"Line": f"Spend, {year}", "Value": f"{att['spend'] / 1e6:,.2f}m", "95% CI": "", "Unit": "GBP"})
        rows.append({"Line": f"Change in spend, {base} to {year}", "Value": _gbp_m(att["change"]), "95% CI": "",
                     "Unit": "GBP; the lines below add up to it"})
        for r in lines.itertuples():
            rows.append({"Line": f"  of which {r.label[0].lower()}{r.label[1:]}", "Value": _gbp_m(r.estimate),
                         "95% CI": f"{_gbp_m(r.ci_low)} to {_gbp_m(r.ci_high)}", "Unit": "GBP change in spend"})
    if not rows:
        rows.append({"Line": "No evaluation or attribution results in this run", "Value": "", "95% CI": "", "Unit": ""})
    note = ("One year and one sign convention: every money line is the change in spend from the base year, negative "
            "where spend fell; a saving from practice action is a negative line." if len(lines) else None)
    return _table(pd.DataFrame(rows), f"Headline{', ' + year if year else ''} (modelled, with 95% intervals)", note=note)


def executive_summary_figure(res: dict[str, Any]) -> HTML | None:
    """Every line of the change in spend with its interval, on one axis and in one sign convention.

    Parameters
    ----------
    res : dict
        The run's ``results.json``.

    Returns
    -------
    IPython.display.HTML or None
        None when the run has no attribution.

    References
    ----------
    As :func:`spend_lines`.
    """
    att = res.get("attribution") or {}
    lines = spend_lines(att)
    if not len(lines):
        return None
    import matplotlib.pyplot as plt

    from pbc_analysis.publish import figures
    from pbc_analysis.publish.report_content import _png_figure

    df = lines.assign(estimate=lines["estimate"] / 1e6, ci_low=lines["ci_low"] / 1e6, ci_high=lines["ci_high"] / 1e6,
                      short=lines["key"].map(_SHORT))  # short labels leave the axis room on the page
    fig = figures.forest_figure(df, "short", "estimate", "ci_low", "ci_high",
                                xlabel="change in spend, GBP million (negative = spend fell)", percent=False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    year, base = att.get("evaluation_year", ""), att.get("base_year", "the base year")
    cap = (f"What moved spend from {base} to {year}: every line of the change in spend, GBP million with 95% "
           f"intervals; negative lines reduced spend (practice action's is its saving). They add up to the change of "
           f"GBP {att.get('change', float('nan')) / 1e6:+,.2f} million.")
    return _png_figure(buf.getvalue(), cap)


def referrals_comparison_text(res: dict[str, Any]) -> str | None:
    """Why the evaluation and the attribution give different numbers of referrals avoided in the same year.

    Parameters
    ----------
    res : dict
        The run's ``results.json``.

    Returns
    -------
    str or None
        Markdown; None unless both are present for the evaluation year.

    References
    ----------
    Callaway B, Sant'Anna PHC (2021), J Econometrics 225:200-230; Borusyak K, Jaravel X, Spiess J (2024), Rev Econ
    Stud 91:3253-3285 (the imputation estimator of the attribution).
    """
    att = markdown_safe(res.get("attribution") or {})
    year = att.get("evaluation_year")
    did = ((res.get("evaluation") or {}).get("referrals_avoided_by_year") or {}).get(year) if year else None
    av = att.get("referrals_avoided")
    if not did or av is None:
        return None
    inside = did["ci_low"] <= av <= did["ci_high"]
    return (f"**Two estimates of referrals avoided in {year}.** The evaluation's difference-in-differences gives "
            f"{did['estimate']:,.0f} ({did['ci_low']:,.0f} to {did['ci_high']:,.0f}); the attribution model gives "
            f"{av:,.0f}. Both answer the same question with different comparisons: the evaluation compares engaged "
            "practices' quarterly referral rates with those of practices not yet engaged (Callaway and Sant'Anna), the "
            "attribution imputes each engaged practice's referrals to each provider, specialty and month from the "
            "practices not engaged in that month, with each hospital's own month-by-month pattern (Poisson imputation); "
            "savings are valued on the attribution's figure. "
            + ("The attribution's figure lies within the evaluation's interval: the two agree within its precision."
               if inside else "The attribution's figure lies outside the evaluation's interval: treat both with "
               "caution and see the event-study figure."))


def referrals_verdict(ev: dict[str, Any], year: str | None = None) -> str | None:
    """The verdict on referrals: fewer, more, or not shown, by where the interval of the relative change lies.

    Parameters
    ----------
    ev : dict
        ``results.json``'s ``evaluation`` section.
    year : str, optional
        The financial year whose referrals avoided are quoted (the attribution's evaluation year; default the
        latest year of ``referrals_avoided_by_year``).

    Returns
    -------
    str or None
        Markdown; None when the section has no relative effect.

    References
    ----------
    Callaway B, Sant'Anna PHC (2021), J Econometrics 225:200-230 (the staggered DiD the effect comes from).
    """
    rel, av = ev.get("relative_effect_full"), ev.get("referrals_avoided")
    if not rel or not av:
        return None
    years = ev.get("referrals_avoided_by_year") or {}
    year = year if year in years else (sorted(years)[-1] if years else None)
    amount = (f"{years[year]['estimate']:,.0f} referrals in {year}" if year else f"{av['estimate']:,.0f} referrals in all")
    if rel["ci_high"] < 0:
        text = (f"Engaged practices did refer less than comparable practices: about {-rel['estimate']:.0%} fewer GP "
                f"referrals once the change had built up ({-rel['ci_high']:.0%} to {-rel['ci_low']:.0%} fewer), "
                f"{amount}.")
    elif rel["ci_low"] > 0:
        text = (f"Engaged practices referred more than comparable practices: about {rel['estimate']:.0%} more GP "
                f"referrals once the change had built up ({rel['ci_low']:.0%} to {rel['ci_high']:.0%} more).")
    else:
        text = ("The data do not show that engaged practices referred less than comparable practices: the interval "
                f"for the change in their referral rate ({rel['ci_low']:+.0%} to {rel['ci_high']:+.0%}) includes no "
                "change.")
    return "**Verdict on referrals.** " + text


def savings_verdict(att: dict[str, Any]) -> str | None:
    """The verdict on savings: shown only when the practice-action interval excludes zero.

    Parameters
    ----------
    att : dict
        ``results.json``'s ``attribution`` section (already Markdown-safe).

    Returns
    -------
    str or None
        Markdown; None when the section has no practice-action savings.

    References
    ----------
    DOMAIN.md, attribution: practice-action savings are the practices' share of the change in spend; the others
    (provider change, tariff, population, need) are not theirs.
    """
    p = att.get("practice_action_savings")
    if not p:
        return None
    year = att.get("evaluation_year", "the evaluation year")
    est, lo, hi = (p[k] / 1e6 for k in ("estimate", "ci_low", "ci_high"))
    interval = f"95% interval {lo:,.2f} to {hi:,.2f} million"
    if lo > 0:
        text = f"Practice action saved GBP {est:,.2f} million ({interval}) in {year}; "
    elif hi < 0:
        text = (f"Practice action did not save money in {year}: it added GBP {-est:,.2f} million to spend "
                f"({interval} of savings); ")
    else:
        text = (f"A saving from practice action in {year} is not shown: the estimate is GBP {est:,.2f} million but its "
                f"{interval} includes zero; ")
    from pbc_analysis.stages.attribution import notional_text

    return ("**Verdict on savings.** " + text + "changes at the hospitals, in the tariff and in the population are "
            "accounted for separately and are not the practices' savings. " + notional_text(att.get("notional") or {}))


_LARGEST_MEANS = {
    "unexplained": "the growth in demand that every practice shared (trend and season), which no practice's or "
                   "hospital's decision explains; it is not a saving or a cost of practice based commissioning",
    "tariff": "national prices, which neither the practices nor the PCT set",
    "population": "the growth and ageing of the registered lists",
    "need": "the change in the lists' need (deprivation and other need factors)",
    "provider_change": "changes at the hospitals (follow-up policy, conversion, coding), not the practices' doing",
    "practice_action": "the practices' own referral behaviour",
}


def growth_text(att: dict[str, Any]) -> str | None:
    """What moved spend, led by its largest line (by size), with what that line means.

    Parameters
    ----------
    att : dict
        ``results.json``'s ``attribution`` section (already Markdown-safe).

    Returns
    -------
    str or None
        Markdown; None without attribution.

    References
    ----------
    As :func:`spend_lines`.
    """
    lines = spend_lines(att)
    if not len(lines) or att.get("change") is None:
        return None
    top = lines.iloc[int(lines["estimate"].abs().to_numpy().argmax())]
    share = abs(top["estimate"]) / abs(att["practice_action_savings"]["estimate"]) \
        if att.get("practice_action_savings") and att["practice_action_savings"]["estimate"] else None
    times = f", {share:,.2f} times the practice-action saving" if share is not None and top["key"] != "practice_action" else ""
    return (f"**What moved spend.** Spend changed by GBP {att['change'] / 1e6:+,.2f} million from "
            f"{att.get('base_year', 'the base year')} to {att.get('evaluation_year', 'the evaluation year')}. The largest "
            f"line is {top['label'][0].lower()}{top['label'][1:]}: GBP {top['estimate'] / 1e6:+,.2f} million (95% "
            f"interval {top['ci_low'] / 1e6:+,.2f} to {top['ci_high'] / 1e6:+,.2f}){times}. It is "
            f"{_LARGEST_MEANS.get(str(top['key']), 'one of the accounted lines')}." + _growth_line(lines, str(top["key"])))


def _growth_line(lines: pd.DataFrame, top: str) -> str:
    """The underlying-growth line in words, when it is not already the largest line."""
    g = lines[lines["key"] == "unexplained"]
    if top == "unexplained" or not len(g):
        return ""
    r = g.iloc[0]
    return (f" The underlying growth line, GBP {r['estimate'] / 1e6:+,.2f} million ({r['ci_low'] / 1e6:+,.2f} to "
            f"{r['ci_high'] / 1e6:+,.2f}), is {_LARGEST_MEANS['unexplained']}.")


def pretrend_caveat(ev: dict[str, Any]) -> str:
    """The parallel-trends caveat from the pre-trend tests: failed tests named, passing ones not called proof.

    Parameters
    ----------
    ev : dict
        ``results.json``'s ``evaluation`` section (already Markdown-safe); ``pretrend_p`` is the test of all
        specialties together, ``pretrend_failed`` the specialties whose own test fails, ``pretrend_level`` the
        level they fail below.

    Returns
    -------
    str
        Markdown.

    References
    ----------
    Roth J (2022), Pretest with caution, AER: Insights 4:305-322.
    """
    head = ("Engagement was chosen, not assigned: the comparison rests on engaged and other practices having had "
            "parallel trends before engagement.")
    if not ev:
        return head
    p: Any = ev.get("pretrend_p")
    level = float(ev.get("pretrend_level", 0.05))
    named = "; ".join(f"{f['specialty_code']} {f['specialty_name']} ({numbers.p_text(f['pretrend_p'])})"
                      for f in ev.get("pretrend_failed") or [])
    if numbers.p_value(p) == numbers.NOT_COMPUTED:
        overall, computed = ("The pre-trend test of all specialties together could not be computed on these data, "
                             "so the assumption is unchecked"), False
    elif float(p) < level:
        return (f"{head} The pre-engagement estimates reject parallel trends for all specialties together "
                f"({numbers.p_text(p)}, below {level:g}): the referral estimates may be biased and should not be "
                "relied on without the event-study figure." + (f" The test also fails for {named}." if named else ""))
    else:
        overall, computed = f"The pre-trend test of all specialties together does not reject them ({numbers.p_text(p)})", True
    if named:
        return (f"{head} {overall}, but it fails (below {level:g}) for {named}: those specialties' estimates are marked "
                "in the effects table and should not be relied on.")
    if not computed:
        return f"{head} {overall}."
    return f"{head} {overall}, nor does any specialty's (at {level:g}); that supports the assumption but cannot prove it."


def data_caveat(att: dict[str, Any]) -> str:
    """The caveat on incomplete data, from the attribution's completeness factors.

    Parameters
    ----------
    att : dict
        ``results.json``'s ``attribution`` section.

    Returns
    -------
    str

    References
    ----------
    DOMAIN.md, data lag: SUS/HES months are incomplete for up to three months and are scaled by completeness.
    """
    lag = att.get("data_lag") or {}
    factors = [float(v) for v in (lag.get("completeness") or {}).values()]
    if factors and min(factors) < 1:
        return (f"The latest {lag.get('lag_months', '?')} months of hospital data were incomplete (as little as "
                f"{min(factors):.0%} of the expected activity had arrived) and were scaled up: the figures that "
                "use them are provisional until the data are complete.")
    if att:
        return "The hospital data of the evaluation year were complete; no month was scaled up."
    return ""


def verdict_text(res: dict[str, Any]) -> str:
    """A plain-language verdict with its caveats, every sentence chosen by and every number from ``results.json``.

    Parameters
    ----------
    res : dict
        The run's ``results.json``.

    Returns
    -------
    str
        Markdown: the verdicts on referrals and savings (where run) and the caveats.

    References
    ----------
    Callaway and Sant'Anna (2021); Roth (2022); DOMAIN.md (attribution, data lag).
    """
    ev = markdown_safe(res.get("evaluation") or {})
    att = markdown_safe(res.get("attribution") or {})
    out = [v for v in (referrals_verdict(ev, att.get("evaluation_year")), savings_verdict(att),
                       growth_text(att)) if v]
    caveats = [pretrend_caveat(ev), data_caveat(att),
               "Referrals avoided are not shown to have been unnecessary."]
    out.append("**Caveats.** " + " ".join(c for c in caveats if c))
    return "\n\n".join(out)

