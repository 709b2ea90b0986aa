"""Building blocks of the evaluation report, made only from a run's results.

The report notebook (``notebooks/09_evaluation_report.ipynb``) calls these. Nothing here recomputes an
estimate: each function reads ``results.json``, a result table, a saved figure or the run's provenance,
and formats it. Counts of events or patients below national level pass through
:func:`pbc_analysis.methods.disclosure.disclose_counts` before they are shown; modelled figures (ratios,
intervals) are exempt, as the publishing rules in DOMAIN.md allow.

Every value read from a run's files is treated as untrusted text: in Markdown it goes through
:func:`pbc_analysis.publish.markdown.markdown_text` (or :func:`~pbc_analysis.publish.markdown.markdown_code`), in HTML through
``html.escape`` / ``DataFrame.to_html(escape=True)``, so a ``<script>`` planted in results.json, a table or
the provenance is printed as text, never run.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import pandas as pd
from IPython.display import HTML

from pbc_analysis.core import numbers
from pbc_analysis.core.labels import measure_label
from pbc_analysis.core.numbers import gbp_text as _gbp
from pbc_analysis.methods import disclosure
from pbc_analysis.publish import results
from pbc_analysis.publish.markdown import html_table as _table
from pbc_analysis.publish.markdown import markdown_code, markdown_safe, markdown_text
from pbc_analysis.publish.report_provenance import code_warning

PROVENANCE = "provenance.json"


def read_provenance(run_dir: str | Path) -> dict[str, Any]:
    """The run's provenance (written by the runner before any notebook runs); empty when run by hand.

    Parameters
    ----------
    run_dir : str or Path
        The run directory.

    Returns
    -------
    dict of str to object
        The parsed ``provenance.json`` ({} when absent or not a JSON object).
    """
    p = Path(run_dir) / PROVENANCE
    prov = json.loads(p.read_text(encoding="utf-8")) if p.exists() else {}
    return prov if isinstance(prov, dict) else {}


def _md(value: Any) -> str:
    """An untrusted value as Markdown text that renders as written."""
    return markdown_text(value)


def figure(run_dir: str | Path, name: str, caption: str) -> HTML:
    """A saved figure embedded as a data URI, with the caption as alt text and figure caption."""
    return _png_figure((Path(run_dir) / results.FIGURES / f"{name}.png").read_bytes(), caption)


def _png_figure(png: bytes, caption: str) -> HTML:
    """PNG bytes as an embedded ``<figure>`` whose caption is also the image's alt text."""
    data = base64.b64encode(png).decode("ascii")
    cap = html.escape(caption)
    return HTML(f'<figure><img src="data:image/png;base64,{data}" alt="{cap}" style="max-width:100%"/>'
                f"<figcaption>{cap}</figcaption></figure>")


def _figures(run_dir: str | Path, captions: list[tuple[str, str]]) -> list[HTML]:
    """The saved figures among ``(name, caption)`` that exist in the run, embedded with their captions."""
    figs = Path(run_dir) / results.FIGURES
    return [figure(run_dir, name, cap) for name, cap in captions if (figs / f"{name}.png").exists()]


def title_block(res: dict[str, Any], prov: dict[str, Any]) -> str:
    """The report's title, what it covers and, for a run from changed code, a warning (Markdown).

    Parameters
    ----------
    res : dict of str to object
        The run's results.json.
    prov : dict of str to object
        Its provenance (:func:`read_provenance`).

    Returns
    -------
    str
        Markdown; every value from the run's files escaped. The counts footnote is
        :func:`pbc_analysis.methods.disclosure.disclosure_footnote`.

    References
    ----------
    NHS Digital, disclosure control methodology for HES and ECDS (2018); ../shared/DOMAIN.md, "Publishing
    rules".
    """
    dq = res.get("data_quality") or {}
    win = dq.get("window") or next((v for v in (prov.get("parameters") or {}).values()
                                    if isinstance(v, dict) and "start_month" in v), {})
    covers = (f"for {_md(dq.get('practices', '?'))} practices in {_md(dq.get('consortia', '?'))} consortia, "
              f"{_md(dq.get('engaged_practices', '?'))} of them engaged in PBC at some point." if dq else
              "(the data quality notebook `01_data_quality` was not run, so the counts of practices are not shown).")
    lines = [
        f"# Practice based commissioning evaluation: {_md(prov.get('config_name', 'interactive run'))}",
        "",
        f"Run {markdown_code(prov.get('run_id', 'interactive'))}; data from {_md(win.get('start_month', '?'))} to "
        f"{_md(win.get('end_month', '?'))} {covers}",
        "",
        "This report is built only from the run's result tables; every number in it can be traced to a file in "
        "the run directory and re-created with the command in the reproducibility section.",
        "",
        f"*Counts below national level:* {disclosure.disclosure_footnote()}",
    ]
    warning = code_warning(prov)
    if warning:
        lines += ["", f"> **{warning}** See the reproducibility section."]
    return "\n".join(lines)


def _names(run_dir: str | Path, table: str, code: str, name: str) -> dict[str, str]:
    """Code -> name from a result table of names (``bm_practices``, ``bm_providers``); empty when it is absent."""
    path = Path(run_dir) / results.TABLES / f"{table}.csv"
    if not path.is_file():
        return {}
    t = results.read_table(run_dir, table, dtype=str, keep_default_na=False)
    return dict(zip(t[code], t[name])) if code in t.columns and name in t.columns else {}


def _with_names(codes: pd.Series, names: dict[str, str]) -> pd.Series:
    """``code name`` for each code (the code alone where the name is unknown)."""
    c = codes.astype(str)
    return (c + " " + c.map(names).fillna("")).str.strip()


def practice_names(run_dir: str | Path) -> dict[str, str]:
    """Practice code -> name (from the benchmarking's ``bm_practices``, else the budget statement).

    Parameters
    ----------
    run_dir : str or Path
        The run directory.

    Returns
    -------
    dict
    """
    return _names(run_dir, "bm_practices", "practice_code", "practice_name") or _names(
        run_dir, "bud_statement", "practice_code", "practice_name")


def _pods(codes: Any) -> str:
    """Points of delivery in words, joined."""
    return ", ".join(measure_label(c) for c in sorted(map(str, codes)))


def data_quality_text(res: dict[str, Any]) -> str:
    """The data quality headline in words (Markdown, from results.json's ``data_quality`` section).

    Parameters
    ----------
    res : dict of str to object
        The run's results.json.

    Returns
    -------
    str
        Markdown; every value escaped.
    """
    dq = res.get("data_quality") or {}
    costs = dq.get("cost_by_financial_year_gbp") or {}
    years = sorted(costs, key=str)
    spend = "; ".join(f"{_md(y)}: GBP {costs[y] / 1e6:,.1f} million" for y in years)
    lagged = {k: v for k, v in (dq.get("incomplete_trailing_months") or {}).items() if v and k != "gp_referral"}
    lag_text = (f"The latest months are incomplete (hospital data lag) for {_md(_pods(lagged))}; "
                f"the last complete month is {_md(dq.get('latest_complete_month'))}. Monthly analyses stop there or "
                "adjust for completeness." if lagged else "No incomplete latest months were detected.")
    return (f"All input files passed validation. Hospital spend by financial year: {spend} "
            f"(the last year is short by the data lag). {lag_text} "
            f"{_md(dq.get('practices_flagged', 0))} practices were flagged by the list and activity consistency checks.")


def table_summary(run_dir: str | Path) -> HTML:
    """The input tables of the run (rows disclosed) as an escaped HTML table.

    Parameters
    ----------
    run_dir : str or Path
        The run directory.

    Returns
    -------
    IPython.display.HTML
    """
    df = results.read_table(run_dir, "dq_table_summary")
    df["practices"] = df["practices"].astype("Int64").astype("string").fillna("")
    df = df.rename(columns={"table": "Table", "file": "File", "rows": "Rows", "columns": "Columns",
                            "first_period": "First period", "last_period": "Last period", "practices": "Practices"})
    return _table(df, "Input files read and validated (rows are file rows, not patients)")


#: every exclusion reason of the ingest (pbc_analysis.ingest.hospital.EXCLUSIONS and the registrations'), in words
INGEST_REASON_TEXT: dict[str, str] = {
    "duplicate_event_id": "duplicate of an event already read (same event id)",
    "outside_window": "dated outside the analysis window",
    "not_attended": "appointment not attended (did not attend, cancelled)",
    "first_attendance_excluded": "first/follow-up code excluded (e.g. FIRSTATT 5, telephone)",
    "later_episode": "later episode of a spell counted once, on its first episode",
    "unfinished_spell": "spell not finished (no discharge date)",
    "admission_method_excluded": "admission method excluded (maternity, transfers, other)",
    "practice_code_missing": "no registered practice code",
    "pseudo_practice": "pseudo practice code (no registered practice, e.g. V81999)",
    "unknown_practice": "practice code not in the practice reference",
    "other_commissioner": "practice of another commissioner",
    "not_gp_practice": "not a GP practice (prescribing setting)",
    "not_open_throughout_window": "practice not open throughout the window",
    "referral_date_missing": "no referral received date",
    "total_row": "a total row of the registration file (checked against its bands)",
}
_OUTCOME_TEXT = {"read": "read", "aggregated": "aggregated into the tables", "excluded": "excluded"}


def ingest_text(res: dict[str, Any]) -> str:
    """The data section's paragraph on the ingest of event-level extracts (a run with ``extracts:``).

    Parameters
    ----------
    res : dict
        results.json, with the runner's ``ingest`` section.

    Returns
    -------
    str
        Markdown.
    """
    ing = res.get("ingest") or {}
    window = ing.get("window") or ["?", "?"]
    source = ("counted from the referral extract (one row per referral, e-Referral Service style)"
              if ing.get("referrals_from") == "extract" else
              "derived from first outpatient attendances with a GP source of referral, dated by the referral received date "
              "(no referral extract was given)")
    return (f"The input tables were built from event-level extracts by the ingest stage (window "
            f"{markdown_text(str(window[0]))} to {markdown_text(str(window[-1]))}). GP referrals were {source}. Nothing is "
            "dropped silently: for every source, the events read equal the events aggregated plus those excluded, by "
            "reason, in rows and in cost (the table below; counts of events under the disclosure rule, rounded "
            "independently, so totals need not add up; rows of the registration files are file rows, not people).")


def reconciliation_table(run_dir: str | Path) -> HTML:
    """The ingest's reconciliation (``ingest_reconciliation``): read = aggregated + excluded, per source.

    Parameters
    ----------
    run_dir : str or Path
        The run directory.

    Returns
    -------
    IPython.display.HTML

    References
    ----------
    DOMAIN.md "Publishing rules": event counts 1 to 7 suppressed, others rounded to 5.
    """
    df = results.read_table(run_dir, "ingest_reconciliation", keep_default_na=False)
    events = df["source"] != "registrations"

    def counts(col: str) -> list[str]:
        shown = disclosure.disclose_counts(df[col])
        return [(f"{d:,}" if isinstance(d, int) else str(d)) if e else f"{int(r):,}"
                for d, r, e in zip(shown.astype(object), df[col], events)]

    shown = pd.DataFrame({
        "Source": df["source"], "Outcome": df["outcome"].map(lambda o: _OUTCOME_TEXT.get(o, o)),
        "Reason": df["reason"].map(lambda r: INGEST_REASON_TEXT.get(r, r)),
        "Rows": counts("rows"), "Cost (GBP)": [f"{float(c):,.0f}" for c in df["cost"]],
        "Priced from the tariff (rows)": counts("priced_rows"), "Merged practices (rows)": counts("merged_rows"),
    })
    return _table(shown, "Reconciliation of the extracts: rows and cost read = aggregated + excluded, by reason")


def completeness_table(run_dir: str | Path) -> HTML:
    """Completeness of the latest months by point of delivery (``dq_completeness``) as an HTML table.

    Parameters
    ----------
    run_dir : str or Path
        The run directory.

    Returns
    -------
    IPython.display.HTML
    """
    df = results.read_table(run_dir, "dq_completeness")
    shown = pd.DataFrame({
        "Series": df["pod"].map(lambda c: measure_label(c, capital=True)), "Month": df["month"],
        "Observed (count)": disclosure.disclose_counts(df["observed"].round().astype("int64")),
        "Completeness (%)": (100 * df["completeness"]).round(1),
        "95% CI (%)": [f"{100 * lo:.1f} to {min(100 * hi, 999):.1f}" for lo, hi in zip(df["ci_low"], df["ci_high"])],
        "Flagged incomplete": df["incomplete"].map({True: "yes", False: ""}),
    })
    return _table(shown, "Completeness of the latest months by point of delivery (observed counts rounded; ratios are modelled)")


def flagged_practices_table(run_dir: str | Path) -> HTML:
    """Practices whose registered list and activity disagree (``dq_practice_consistency`` flags).

    Parameters
    ----------
    run_dir : str or Path
        The run directory.

    Returns
    -------
    IPython.display.HTML
    """
    df = results.read_table(run_dir, "dq_practice_consistency")
    df = df[df["flag"].fillna("") != ""]
    if df.empty:
        return HTML("<p>No practice was flagged by the list and activity consistency checks.</p>")
    shown = pd.DataFrame({
        "Practice": _with_names(df["practice_code"], practice_names(run_dir)),
        "List, latest month": disclosure.disclose_counts(df["list_last_month"]),
        "Largest monthly list change (%)": (100 * df["max_monthly_list_change"]).round(1),
        "Activity per 1,000 per year": df["activity_per_1000_per_year"].round(0),
        "Robust z": df["activity_rate_robust_z"].round(2),
        "Flag": df["flag"],
    })
    return _table(shown, "Practices flagged by the consistency checks", note="A flag asks for a check, not a verdict.")


def activity_by_provider_table(run_dir: str | Path) -> HTML:
    """Activity by provider, point of delivery and financial year, one column per year.

    Parameters
    ----------
    run_dir : str or Path
        The run directory.

    Returns
    -------
    IPython.display.HTML
    """
    df = results.read_table(run_dir, "dq_totals_provider_pod_year")
    wide = df.pivot_table(index=["provider_code", "pod"], columns="financial_year", values="activity", aggfunc="sum").reset_index()
    years = [c for c in wide.columns if c not in ("provider_code", "pod")]
    for y in years:
        wide[y] = disclosure.disclose_counts(wide[y].astype("int64"))
    wide["provider_code"] = _with_names(wide["provider_code"], _names(run_dir, "bm_providers", "provider_code",
                                                                      "provider_name"))
    wide["pod"] = wide["pod"].map(lambda c: measure_label(c, capital=True))
    wide = wide.rename(columns={"provider_code": "Provider", "pod": "Point of delivery"})
    wide.columns.name = None
    return _table(wide, "Activity by provider, point of delivery and financial year (counts, rounded)")


def benchmarking_text(res: dict[str, Any]) -> str:
    """The benchmarking headline in words (from ``results.json``; :func:`pbc_analysis.stages.benchmark.describe`)."""
    from pbc_analysis.stages.benchmark import describe

    head = res.get("benchmarking")
    if not head:
        return "Benchmarking was not part of this run."
    return describe(markdown_safe(head))


def benchmarking_figures(run_dir: str | Path) -> list[HTML]:
    """The benchmarking figures of the run, with captions (SPC charts of flagged practices included)."""
    captions = {
        "bm_funnel_specialties": "Funnel plots of GP referral ratios (observed / expected) by specialty, latest "
                                 "period, one point per practice; dashed 95% and dotted 99.8% control limits.",
        "bm_funnel_measures": "Funnel plots by point of delivery (all specialties), latest period.",
        "bm_decile_fan": "Monthly standardised referral ratios: median and deciles of practices, flagged practices "
                         "drawn on top.",
    }
    out = _figures(run_dir, list(captions.items()))
    fig_dir = Path(run_dir) / results.FIGURES
    for path in sorted(fig_dir.glob("bm_spc_*.png")):
        code = path.stem.removeprefix("bm_spc_")
        out.append(figure(run_dir, path.stem, f"SPC chart (XmR) of practice {code}'s monthly standardised referral "
                                              "ratio, with special-cause points coloured."))
    return out


def benchmarking_flags_table(run_dir: str | Path) -> HTML:
    """Flagged practices in the latest period (all specialties): observed counts disclosed, ratios exempt."""
    card = results.read_table(run_dir, "bm_scorecard")
    card = card[card["flag"].fillna("") != ""]
    if card.empty:
        return HTML("<p>No practice is flagged in the latest period.</p>")
    shown = pd.DataFrame({
        "Practice": _with_names(card["practice_code"], practice_names(run_dir)), "Consortium": card["consortium"],
        "GP referrals (count)": disclosure.disclose_counts(card["referrals_observed"].round().astype("int64")),
        "Referral ratio": card["referrals_ratio"].round(2),
        "95% CI": [f"{lo:.2f} to {hi:.2f}" for lo, hi in zip(card["referrals_lower"], card["referrals_upper"])],
        "First outpatient ratio": card["first_op_ratio"].round(2),
        "Flag": card["flag"], "Specialties flagged": card["flagged_specialties"].fillna(""),
    })
    return _table(shown, "Practices flagged in the latest period (ratios are standardised: observed / expected)",
                  note="A flag asks for a review, not a verdict: chance, coding, registration and unmeasured need all "
                       "move a practice's ratio.")


def scorecard_table(run_dir: str | Path) -> HTML:
    """Every practice's scorecard for the latest period: cost (GBP), ratios by point of delivery, flags."""
    card = results.read_table(run_dir, "bm_scorecard")
    shown = pd.DataFrame({"Practice": _with_names(card["practice_code"], practice_names(run_dir)),
                          "Consortium": card["consortium"],
                          "Cost per head (GBP)": card["cost_per_head"].map(lambda v: "" if pd.isna(v) else f"{v:,.0f}")})
    for m, label in (("referrals", "GP referrals"), ("first_op", "First OP"), ("followup_op", "Follow-up OP"),
                     ("elective", "Elective"), ("non_elective", "Non-elective"), ("ae", "A&E")):
        if f"{m}_ratio" in card.columns:
            shown[f"{label} ratio"] = card[f"{m}_ratio"].round(2)
    shown["Percentile (referrals)"] = card["pct_percentile"].map(lambda v: "" if pd.isna(v) else f"{v:.0f}")
    shown["Flag"] = card["flag"].fillna("")
    return _table(shown, "Practice scorecard, latest period: standardised ratios (observed / expected) and cost per "
                         "registered patient")


def dispersion_table(run_dir: str | Path, period: str | None = None) -> HTML:
    """Over-dispersion of the all-specialty funnels of the latest period."""
    d = results.read_table(run_dir, "bm_dispersion")
    period = period or sorted(d["period"].astype(str).unique())[-1]
    d = d[(d["period"].astype(str) == period) & (d["specialty_code"] == "all")]
    shown = pd.DataFrame({"Measure": d["measure"].map(lambda c: measure_label(c, capital=True)),
                          "Practices": d["n_units"], "phi": d["phi"].round(2),
                          "tau squared": d["tau2"].map(lambda v: f"{v:.4f}"),
                          "Dispersion test p": d["dispersion_p"].map(lambda v: "< 0.0001" if v < 1e-4 else f"{v:.2g}"),
                          "Limits used": d["overdispersion_used"]})
    return _table(shown, f"Over-dispersion of practices' standardised ratios, {period} (all specialties)")


def _pct(v: float) -> str:
    return f"{v:+.1%}"


def _ci(lo: float, hi: float, fmt: str = "{:+.1%}") -> str:
    return f"{fmt.format(lo)} to {fmt.format(hi)}"


def evaluation_text(res: dict[str, Any]) -> str:
    """The evaluation's headline in words (numbers from ``results.json``'s ``evaluation`` section)."""
    ev = res.get("evaluation")
    if not ev:
        return "The referral evaluation was not run."
    from pbc_analysis.stages import evaluation

    its_, cits, tw = ev["its_avoided"], ev["controlled_its_avoided"], ev["twfe_avoided"]
    extra = (f"For comparison, a single-date interrupted time series of the PCT puts referrals avoided at "
             f"{its_['estimate']:,.0f} ({its_['ci_low']:,.0f} to {its_['ci_high']:,.0f}), the controlled version at "
             f"{cits['estimate']:,.0f} ({cits['ci_low']:,.0f} to {cits['ci_high']:,.0f}) and static two-way fixed "
             f"effects at {tw['estimate']:,.0f} ({tw['ci_low']:,.0f} to {tw['ci_high']:,.0f}); the staggered "
             "difference-in-differences is the primary estimate because it compares each cohort only with practices "
             "not yet engaged and lets the effect build up.")
    return evaluation.describe(markdown_safe(ev)) + "\n\n" + extra


def evaluation_figures(run_dir: str | Path) -> list[HTML]:
    """The evaluation's figures that exist in the run, with captions."""
    caps = [("ev_did_forest", "Change in engaged practices' referral rate once the effect had built up, by specialty, "
             "against their counterfactual rate (staggered difference-in-differences), with 95% intervals."),
            ("ev_event_study", "Event studies: effect on referrals per 1,000 patients per year by periods since engagement; "
             "points before engagement (left of the dashed line) test parallel trends. 95% pointwise intervals."),
            ("ev_its_controlled", "Controlled interrupted time series: engaged and never-engaged practices' referrals per "
             "1,000 per year, fitted model and engaged practices' counterfactual with its 95% interval.")]
    return _figures(run_dir, caps)


def evaluation_effects_table(run_dir: str | Path) -> HTML:
    """The difference-in-differences effects by specialty (``ev_did_effects``) with their intervals.

    Parameters
    ----------
    run_dir : str or Path
        The run directory.

    Returns
    -------
    IPython.display.HTML
    """
    d = results.read_table(run_dir, "ev_did_effects")
    ev = results.read_results(run_dir).get("evaluation") or {}
    level = float(ev.get("pretrend_level", 0.05))
    failing = {f["specialty_code"] for f in ev.get("pretrend_failed") or []}   # the stage's rule, not re-derived
    if numbers.p_value(ev.get("pretrend_p")) != numbers.NOT_COMPUTED and float(ev["pretrend_p"]) < level:
        failing.add("all")
    shown = pd.DataFrame({
        "Specialty": (d["specialty_code"].where(d["specialty_code"] == "all", d["specialty_code"] + " ")
                      .replace({"all": ""}) + d["specialty_name"].fillna("")),
        "Change once built up": d["relative"].map(_pct),
        "95% CI": [_ci(a, b) for a, b in zip(d["relative_ci_low"], d["relative_ci_high"])],
        "Effect per 1,000/yr": d["att"].round(2),
        "Pre-trend p": [numbers.p_value(v) + (f" (fails at {level:g})" if str(code) in failing else "")
                        for code, v in zip(d["specialty_code"], d["pretrend_p"])],
        "Engaged / comparison practices": d["engaged_practices"].astype(str) + " / " + d["comparison_practices"].astype(str)})
    return _table(shown, "Effect of engagement on GP referral rates by specialty (modelled estimates; rates per 1,000 "
                         "patients per year)",
                  note=f"A pre-trend test that fails (p below {level:g}) is evidence against parallel trends before "
                       "engagement for that specialty: its estimate should not be relied on.")


def evaluation_avoided_table(run_dir: str | Path) -> HTML:
    """Referrals avoided by financial year (``ev_avoided``) with their intervals.

    Parameters
    ----------
    run_dir : str or Path
        The run directory.

    Returns
    -------
    IPython.display.HTML
    """
    d = results.read_table(run_dir, "ev_avoided")
    shown = pd.DataFrame({"Financial year": d["financial_year"].replace({"total": "Total"}),
                          "GP referrals avoided": d["avoided"].map(lambda v: f"{v:,.0f}"),
                          "95% CI": [f"{a:,.0f} to {b:,.0f}" for a, b in zip(d["ci_low"], d["ci_high"])]})
    return _table(shown, "GP referrals avoided by engaged practices (modelled: effect on rates x patients)",
                  note="Modelled estimates are exempt from count rounding.")


def evaluation_checks_table(run_dir: str | Path) -> HTML:
    """Placebo, regression to the mean and provider-change checks in one table."""
    rows = []
    pl = results.read_table(run_dir, "ev_placebo")
    a = pl[pl["specialty_code"] == "all"].iloc[0]
    n_sig = int(((pl["specialty_code"] != "all") & ((pl["relative_ci_high"] < 0) | (pl["relative_ci_low"] > 0))).sum())
    rows.append({"Check": "Placebo: engagement moved earlier (pre-engagement data only)",
                 "Result": f"{_pct(a['relative'])} (95% CI {_ci(a['relative_ci_low'], a['relative_ci_high'])}); "
                           f"{n_sig} of {len(pl) - 1} specialties exclude zero",
                 "Expected if the design is sound": "about zero; about 1 specialty in 20 excluding zero by chance"})
    rtm = results.read_table(run_dir, "ev_rtm").set_index("group")
    rows.append({"Check": "Regression to the mean: top referrers among never-engaged practices",
                 "Result": f"ratio to PCT {rtm.at['top', 'baseline_ratio']:.2f} at baseline, "
                           f"{rtm.at['top', 'follow_up_ratio']:.2f} at follow-up",
                 "Expected if the design is sound": "a fall with no intervention: why DiD compares with controls"})
    pc = results.read_table(run_dir, "ev_provider_check")
    for r in pc.itertuples():
        rows.append({"Check": f"Provider change {r.provider_code} {r.change_month} ({measure_label(r.pod)}): "
                              f"{measure_label(r.series)}",
                     "Result": f"level change x{r.level_change:.3f} (95% CI {r.ci_low:.3f} to {r.ci_high:.3f})",
                     "Expected if the design is sound": "a step in the changed activity, none in GP referrals"})
    return _table(pd.DataFrame(rows), "Checks on the evaluation (modelled estimates)")


def attribution_text(res: dict[str, Any]) -> str:
    """The savings attribution in words (``results.json``'s ``attribution`` section)."""
    a = res.get("attribution")
    if not a:
        return "The savings attribution was not run."
    from pbc_analysis.stages import attribution

    return attribution.describe(markdown_safe(a))


def attribution_figures(run_dir: str | Path) -> list[HTML]:
    """The attribution section's figures with their captions.

    Parameters
    ----------
    run_dir : str or Path
        The run directory.

    Returns
    -------
    list of IPython.display.HTML
    """
    caps = [("att_waterfall", "The PCT's change in spend from the base year to the evaluation year, part by part "
             "(population, need, tariff, provider change, practice action, unexplained), GBP with 95% intervals.")]
    return _figures(run_dir, caps)


def consortium_ledger_table(run_dir: str | Path, year: str | None = None) -> HTML:
    """The ledger per consortium for the evaluation year: the change in spend and its parts (GBP)."""
    led = results.read_table(run_dir, "att_ledger")
    year = year or sorted(led["financial_year"].astype(str).unique())[-1]
    c = led[(led["level"].isin(["consortium", "pct"])) & (led["financial_year"].astype(str) == year)]
    c = c.sort_values(["level", "unit"], key=lambda s: s.map({"consortium": 0, "pct": 1}) if s.name == "level" else s)
    shown = pd.DataFrame({"Consortium": c["unit"].where(c["level"] != "pct", "PCT total"),
                          "Spend, base year": c["spend_base"].map(_gbp), "Spend": c["spend"].map(_gbp),
                          "Change": c["change"].map(_gbp), "Population": c["population"].map(_gbp),
                          "Need": c["need"].map(_gbp), "Tariff": c["tariff"].map(_gbp),
                          "Provider change": c["provider_change"].map(_gbp),
                          "Practice action": c["practice_action"].map(_gbp), "Unexplained": c["unexplained"].map(_gbp),
                          "Practice-action savings (95% CI)": [f"{_gbp(v)} ({_gbp(lo)} to {_gbp(hi)})" for v, lo, hi in
                                                               zip(c["practice_action_savings"], c["savings_ci_low"],
                                                                   c["savings_ci_high"])]})
    return _table(shown, f"Ledger by consortium, {year}: change in spend from the base year and its parts (GBP; "
                         "the parts add up to the change on every row)")


def sharing_outcome_table(run_dir: str | Path, year: str | None = None) -> HTML:
    """How the freed-up resources were shared in the evaluation year, by outcome (GBP; practices counted)."""
    sh = results.read_table(run_dir, "att_sharing")
    year = year or sorted(sh["financial_year"].astype(str).unique())[-1]
    y = sh[sh["financial_year"].astype(str) == year]
    g = y.groupby("status", sort=True).agg(practices=("practice_code", "size"), attributed=("attributed", "sum"),
                                           eligible=("eligible", "sum"), to_practice=("to_practice", "sum"),
                                           to_pct=("to_pct", "sum")).reset_index()
    shown = pd.DataFrame({"Outcome": g["status"], "Practices": g["practices"],
                          "Savings attributed": g["attributed"].map(_gbp), "Eligible": g["eligible"].map(_gbp),
                          "To practices": g["to_practice"].map(_gbp), "To the PCT": g["to_pct"].map(_gbp)})
    return _table(shown, f"Sharing of resources freed up, {year}, by outcome (GBP; engaged practices)")


def budgets_text(res: dict[str, Any]) -> str:
    """Budgets, risk pool and monitoring in words (from ``results.json``'s ``budgets`` section)."""
    b = res.get("budgets")
    if not b:
        return "Budgets were not set in this run."
    from pbc_analysis.stages import budgets, risk

    b = markdown_safe(b)
    text = budgets.describe(b)
    if b.get("risk") or b.get("monitoring"):
        text += "\n\n" + risk.describe(b.get("risk"), b.get("monitoring"))
    return text


def budgets_figures(run_dir: str | Path) -> list[HTML]:
    """The budgets section's figures with their captions.

    Parameters
    ----------
    run_dir : str or Path
        The run directory.

    Returns
    -------
    list of IPython.display.HTML
    """
    caps = [("bud_distance", "Each practice's historic budget (scaled to the envelope) against its fair share; the "
             "solid line is target, dashed lines the allowed band. GBP."),
            ("bud_glide_path", "Distance from fair share over the pace-of-change path, one line per practice; the "
             "shaded band is the allowed distance."),
            ("risk_pool", "Simulated distribution of a year's risk-pool charge with the pool the top-slice buys "
             "(left) and the chance the pool is exhausted by top-slice (right)."),
            ("risk_monitoring", "Year-to-date cost against the seasonal budget profile with the forecast outturn and "
             "its interval (left); each practice's forecast variance against budget (right).")]
    return _figures(run_dir, caps)


def budget_statement_table(run_dir: str | Path) -> HTML:
    """The per-practice budget statement: list, weights, need, historic spend, target, distance, step."""
    s = results.read_table(run_dir, "bud_statement")
    shown = pd.DataFrame({
        "Practice": _with_names(s["practice_code"], dict(zip(s["practice_code"], s["practice_name"].fillna("")))),
        "Consortium": s["consortium"],
        "Weighted list": s["weighted_list"].map(lambda v: f"{v:,.0f}"),
        "Age-sex index": s["age_sex_index"].round(3), "Need index": s["need_index"].round(3),
        "Historic budget (GBP)": s["historic_budget"].map(lambda v: f"{v:,.0f}"),
        "Fair share (GBP)": s["fair_share"].map(lambda v: f"{v:,.0f}"),
        "Distance from target": s["distance_from_target"].map(lambda v: f"{v:+.1%}"),
        "Budget (GBP)": s["budget"].map(lambda v: f"{v:,.0f}"),
        "Change": s["change_pct"].map(lambda v: f"{v:+.1%}"), "Status": s["status"]})
    return _table(shown, "Budget statement per practice (GBP; weighted list is a modelled figure, not a count of "
                         "patients)")


def monitoring_status_table(run_dir: str | Path) -> HTML | None:
    """In-year monitoring status by consortium, or None when the run has no monitoring table.

    Parameters
    ----------
    run_dir : str or Path
        The run directory.

    Returns
    -------
    IPython.display.HTML or None
    """
    p = Path(run_dir) / results.TABLES / "risk_monitoring_consortium.csv"
    if not p.exists():
        return None
    m = results.read_table(run_dir, "risk_monitoring_consortium")
    last = m[m["month"] == m["month"].max()]
    shown = pd.DataFrame({"Consortium": last["consortium"], "Month": last["month"],
                          "Budget (GBP)": last["budget"].map(lambda v: f"{v:,.0f}"),
                          "Forecast outturn (GBP)": last["forecast_centre"].map(lambda v: f"{v:,.0f}"),
                          "Interval (GBP)": [f"{a:,.0f} to {b:,.0f}" for a, b in zip(last["lower"], last["upper"])],
                          "Forecast variance": last["variance"].map(lambda v: f"{v:+.1%}"),
                          "Status": last["status"]})
    return _table(shown, "In-year monitoring by consortium at the latest month (GBP; forecasts are modelled)")


def methods_text() -> str:
    """Methods, assumptions, limitations and references (fixed text; no figures)."""
    return """### Methods

- **Data and quality.** Every input file is validated against the data model before use (`docs/data_dictionary.md`).
  Completeness of the latest months is estimated by a quasi-Poisson model of each series on its own history.
- **Benchmarking.** Indirect standardisation on reference age-sex rates with a deprivation adjustment; funnel plots
  with over-dispersion (Spiegelhalter 2005); peer positions; SPC charts (NHS England, *Making Data Count*).
- **Evaluation.** Interrupted time series by segmented quasi-Poisson regression with harmonic seasonality (Lopez
  Bernal, Cummins and Gasparrini 2017) and its controlled version (2018); staggered difference-in-differences with
  group-time effects and not-yet-engaged comparisons (Callaway and Sant'Anna 2021), event studies, a placebo with
  engagement moved earlier; static two-way fixed effects and its Bacon decomposition (Goodman-Bacon 2021) for
  comparison.
- **Attribution.** Spend written as list x need x referral rate x conversion x follow-up ratio x price and
  decomposed exactly (LMDI-I, Ang 2005; Shapley); practice action estimated by Poisson regression with practice and
  provider-by-period effects (Correia, Guimaraes and Zylkin 2020) so that hospitals' own changes are absorbed.
- **Budgets.** Historic budgets re-costed at the target year's tariff; fair shares from age-sex cost curves and a
  need regression with supply variables held at their average; pace of change with a cap and an allowed band; a
  risk pool above a per-patient threshold.

### Assumptions and limitations

- **Regression to the mean.** Practices picked for high referral rates fall back without any intervention; the
  evaluation compares engaged with not-yet-engaged practices rather than with their own past alone.
- **Data lag.** Hospital activity for the latest months is incomplete when extracted; analyses stop at the last
  complete month or adjust by estimated completeness factors, which carry their own uncertainty.
- **Patient registration.** Lists include patients who have left or died (list inflation), which lowers every
  rate per 1,000; hospital records attributed to the wrong practice move activity between practices. Both blur
  comparisons between practices more than comparisons of a practice with itself.
- **Parallel trends and no spill-overs.** Engaged practices are assumed to have followed the comparison
  practices' trend had they not engaged, and engagement not to have changed other practices' referrals.
- **Precision.** Savings are learned by comparing engaged practices with those not (yet) engaged. With a few
  dozen practices, the chance in the comparison practices' referrals sets a floor on the uncertainty that no
  method can get under (reported with the savings); only more comparison practices or a longer period would
  narrow it.
- **Counts.** Counts below national level are suppressed or rounded as stated at the top; modelled figures are
  not.

### References

Ang BW (2005) The LMDI approach to decomposition analysis. *Energy Policy* 33:867-871. Audit Commission (2007)
*Putting commissioning into practice*. Barnett AG, van der Pols JC, Dobson AJ (2005) Regression to the mean.
*Int J Epidemiol* 34:215-220. Callaway B, Sant'Anna PHC (2021) Difference-in-differences with multiple time
periods. *J Econometrics* 225:200-230. Correia S, Guimaraes P, Zylkin T (2020) Fast Poisson estimation with
high-dimensional fixed effects. *Stata J* 20:95-115. Goodman-Bacon A (2021) Difference-in-differences with
variation in treatment timing. *J Econometrics* 225:254-277. Lopez Bernal J, Cummins S, Gasparrini A (2017)
Interrupted time series regression for the evaluation of public health interventions. *Int J Epidemiol*
46:348-355; (2018) The use of controls in interrupted time series studies. *Int J Epidemiol* 47:2082-2093.
Spiegelhalter DJ (2005) Funnel plots for comparing institutional performance. *Stat Med* 24:1185-1202."""
