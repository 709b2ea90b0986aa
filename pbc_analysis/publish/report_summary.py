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

_SAVINGS_PARTS = (("practice_action_savings", "Practice action (referral behaviour)"),
                  ("provider_change", "Provider change (follow-up, conversion)"),
                  ("tariff", "Tariff"), ("population", "Population (list size)"))


def executive_summary_table(res: dict[str, Any]) -> HTML:
    """One table of the headline estimates with their intervals (all modelled, from ``results.json``).

    Parameters
    ----------
    res : dict
        The run's ``results.json``.

    Returns
    -------
    IPython.display.HTML
    """
    rows = []
    ev = res.get("evaluation") or {}
    if ev.get("referrals_avoided"):
        r = ev["referrals_avoided"]
        rows.append({"Estimate": "GP referrals avoided by engaged practices",
                     "Value": f"{r['estimate']:,.0f}", "95% CI": f"{r['ci_low']:,.0f} to {r['ci_high']:,.0f}",
                     "Unit": "referrals, from engagement to the end of the window"})
    att = res.get("attribution") or {}
    year = att.get("evaluation_year", "")
    for key, label in _SAVINGS_PARTS:
        d = att.get(key)
        if d:
            rows.append({"Estimate": f"Spend change due to {label.lower()}" if key != "practice_action_savings"
                         else "Savings attributed to practice action",
                         "Value": f"{d['estimate']:,.0f}", "95% CI": f"{d['ci_low']:,.0f} to {d['ci_high']:,.0f}",
                         "Unit": f"GBP{', ' + year if year else ''}"})
    if not rows:
        rows.append({"Estimate": "No evaluation or attribution results in this run", "Value": "", "95% CI": "", "Unit": ""})
    return _table(pd.DataFrame(rows), "Headline estimates (modelled, with 95% intervals)")


def executive_summary_figure(res: dict[str, Any]) -> HTML | None:
    """The attribution's parts with their intervals as one chart (drawn from ``results.json`` only).

    Parameters
    ----------
    res : dict
        The run's ``results.json``.

    Returns
    -------
    IPython.display.HTML or None
        None when the run has no attribution.
    """
    att = res.get("attribution") or {}
    parts = [(label, att[key]) for key, label in _SAVINGS_PARTS if att.get(key)]
    if not parts:
        return None
    import matplotlib.pyplot as plt

    from pbc_analysis.publish import figures
    from pbc_analysis.publish.report_content import _png_figure

    df = pd.DataFrame({"label": [p[0] for p in parts], "estimate": [p[1]["estimate"] / 1e6 for p in parts],
                       "ci_low": [p[1]["ci_low"] / 1e6 for p in parts], "ci_high": [p[1]["ci_high"] / 1e6 for p in parts]})
    fig = figures.forest_figure(df, "label", "estimate", "ci_low", "ci_high", xlabel="GBP million", percent=False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    cap = (f"What moved spend{' in ' + att['evaluation_year'] if att.get('evaluation_year') else ''}: savings "
           "attributed to practice action and the parts due to provider change, tariff and population, GBP million "
           "with 95% intervals.")
    return _png_figure(buf.getvalue(), cap)


def referrals_verdict(ev: dict[str, Any]) -> str | None:
    """The verdict on referrals: fewer, more, or not shown, by where the interval of the relative change lies.

    Parameters
    ----------
    ev : dict
        ``results.json``'s ``evaluation`` section.

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
    if rel["ci_high"] < 0:
        text = (f"Engaged practices did refer less than comparable practices: about {-rel['estimate']:.0%} fewer GP "
                f"referrals once the change had built up ({-rel['ci_high']:.0%} to {-rel['ci_low']:.0%} fewer), "
                f"{av['estimate']:,.0f} referrals in all.")
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
    return ("**Verdict on savings.** " + text + "changes at the hospitals, in the tariff and in the population are "
            "accounted for separately and are not the practices' savings.")


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
    out = [v for v in (referrals_verdict(ev), savings_verdict(att)) if v]
    caveats = [pretrend_caveat(ev), data_caveat(att),
               "Referrals avoided are not shown to have been unnecessary."]
    out.append("**Caveats.** " + " ".join(c for c in caveats if c))
    return "\n\n".join(out)

