"""A page per practice (``practices/<code>.html``) and their index, made only from a run's tables and results.

Each page is one self-contained HTML file (inline CSS and SVG, no script, no network) that a GP, a finance
director or an auditor can read or print on A4:

1. **Funnel positions**: for each measure (GP referrals and the points of delivery, all specialties) and for each
   specialty's GP referrals, the latest period's observed count, expected count, standardised ratio with its 95%
   interval, the 99.8% funnel limits, the position, the percentile among the PCT's practices and the flag, in
   words (``bm_ratios``, ``bm_specialty_ratios``, ``bm_flags``).
2. **Spine chart** (Fingertips style, :func:`pbc_analysis.publish.practice_charts.spine_svg`): per measure the
   PCT's range of practice ratios, its 25th to 75th percentile, the benchmark (ratio 1) and the practice as a dot
   coloured *higher* (high flag), *lower* (low flag) or *similar*: fewer referrals is not necessarily better.
3. **SPC chart** of its monthly standardised GP referral ratio (``bm_practice_spc``), special causes *higher* or
   *lower*, never "improvement".
4. **Savings, budget and payment**: its counterfactual ledger line (``att_ledger``), referrals avoided and savings
   (``att_practice_savings``), its budget statement with the risk-pool top-slice and net budget
   (``bud_statement``, ``risk_net_budgets``, ``risk_status``), and each year's eligibility and payment with the
   reason (``att_sharing``).
5. **Similar practices** (``bm_similar``, ``bm_practices``, RightCare's "similar 10") with names, and the
   opportunity: its referrals at the peers' median and best-quartile ratio (``bm_opportunity``).

**Disclosure.** Every table is read as text and passed through the bundle's rule first
(:func:`pbc_analysis.publish.bundle.disclose_table_text`, the registry's kinds): counts of events are 0, ``*`` (1
to 7) or rounded to 5, exactly as in ``published/tables``; modelled figures, money and public list sizes are
exempt. Counts are printed as whole numbers with thousands separators.

**Safety.** A practice code becomes a file name only if it is a safe name
(:func:`pbc_analysis.core.names.is_safe_name`); any other code stops the pages, naming the table, column and
value. Every text (names from the data files may be hostile) is HTML-escaped. The same run directory gives the
same bytes (nothing records a time).

References
----------
NHS England, RightCare methodology ("similar 10"); Public Health England, Fingertips spine charts; NHS England
(2019), Making Data Count; NHS Digital (2018), disclosure control for HES and ECDS.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from pbc_analysis.core.labels import measure_label, specialty_label
from pbc_analysis.core.names import is_safe_name
from pbc_analysis.methods import disclosure
from pbc_analysis.publish import results
from pbc_analysis.publish.bundle import disclose_table_text
from pbc_analysis.publish.html_parts import cell, fmt, html_table, text
from pbc_analysis.publish.practice_charts import FLAG_COLOURS, SpineRow, spc_svg, spine_svg

__all__ = ["INDEX", "PRACTICES", "PracticePageError", "links_table", "page_name", "practice_codes",
           "write_practice_pages"]

PRACTICES = "practices"
INDEX = "index.html"
#: the tables the pages read (each optional: a section whose tables are missing says so)
TABLES = ("bm_practices", "bm_ratios", "bm_specialty_ratios", "bm_flags", "bm_similar", "bm_opportunity",
          "bm_practice_spc", "bm_specialties", "bm_scorecard", "att_ledger", "att_practice_savings", "att_sharing",
          "bud_statement", "risk_net_budgets", "risk_status")
#: tables whose ``practice_code`` columns name the practices that get a page (and must be safe names)
_CODE_COLUMNS = (("bm_practices", "practice_code"), ("bm_scorecard", "practice_code"), ("bm_similar", "peer_code"),
                 ("bud_statement", "practice_code"), ("att_sharing", "practice_code"))
_MEASURE_ORDER = ("referrals", "first_op", "followup_op", "elective", "non_elective", "ae")
_CSS = """body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:60em;color:#222;line-height:1.35}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.6em 0 1em;font-size:.85em;width:100%}
th,td{border:1px solid #ccc;padding:.2em .4em;text-align:left;vertical-align:top}th{background:#eee}
td.n{text-align:right;white-space:nowrap}caption{text-align:left;font-weight:bold;margin:.3em 0}
.note{font-size:.85em;color:#444}.key span{display:inline-block;width:.9em;height:.9em;border:1px solid #000;
border-radius:50%;margin:0 .3em 0 1em;vertical-align:middle}nav a{margin-right:1em}svg{max-width:100%;height:auto}
@media print{@page{size:A4;margin:12mm}body{margin:0;max-width:none;font-size:10pt}nav{display:none}
h2{break-before:auto;break-after:avoid}table,svg,figure{break-inside:avoid}table{font-size:8pt}
th,td{padding:1px 3px}a{color:inherit;text-decoration:none}}"""


class PracticePageError(ValueError):
    """The practice pages cannot be written (an unsafe practice code, an unreadable table)."""


@dataclass(frozen=True)
class _Run:
    """What every page reads: the disclosed tables (text), the settings and the lookups built from them."""

    tables: Mapping[str, pd.DataFrame | None]
    names: Mapping[str, str]
    consortia: Mapping[str, str]
    specialties: Mapping[str, str]
    period: str
    target: str
    run_id: str
    cache: dict[Any, Any] = field(default_factory=dict, repr=False)

    def table(self, name: str, code: str | None = None, column: str = "practice_code") -> pd.DataFrame | None:
        """A table (the rows of one practice when ``code`` is given), or None when the run has no such table."""
        t = self.tables.get(name)
        if t is None or code is None:
            return t
        key = (name, column)
        if key not in self.cache:
            self.cache[key] = {k: g for k, g in t.groupby(column, sort=False)}
        return self.cache[key].get(code, t.iloc[0:0])


# --------------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------------
def _read(run_dir: Path, name: str) -> pd.DataFrame | None:
    """A result table as text with the publishing rule applied, or None when the run has none."""
    path = results.table_path(run_dir, name)
    if not path.is_file():
        return None
    df = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    try:
        return disclose_table_text(name, df).astype(object)
    except ValueError as exc:
        raise PracticePageError(f"tables/{name}.csv cannot be shown on the practice pages: {exc}") from None


def _num(v: Any) -> float:
    """A text cell as a float (NaN when blank, suppressed or not a number)."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def practice_codes(tables: Mapping[str, pd.DataFrame | None]) -> list[str]:
    """The practices that get a page: every code of the practice tables, each checked to be a safe name.

    Parameters
    ----------
    tables : mapping of str to DataFrame or None
        The run's tables by name (text cells).

    Returns
    -------
    list of str
        Sorted codes.

    Raises
    ------
    PracticePageError
        Naming every table, column and value that is not a safe name (:func:`pbc_analysis.core.names.is_safe_name`).

    References
    ----------
    :mod:`pbc_analysis.core.names` (the rule that keeps a value from becoming a path or markup).
    """
    codes: set[str] = set()
    bad: list[str] = []
    for name, column in _CODE_COLUMNS:
        t = tables.get(name)
        if t is None or column not in t:
            continue
        for v in sorted(set(t[column])):
            if is_safe_name(v):
                codes.add(v)
            else:
                bad.append(f"tables/{name}.csv column {column} value {v!r}")
    if bad:
        raise PracticePageError("practice codes must be safe names (letters, digits, '-', '_', '.'; not starting with "
                                "'.') to become page names; refused: " + "; ".join(bad[:10])
                                + (f" and {len(bad) - 10} more" if len(bad) > 10 else ""))
    return sorted(codes)


def _lookup(tables: Mapping[str, pd.DataFrame | None], column: str) -> dict[str, str]:
    """Practice code -> ``column`` (name or consortium) from the first table that has it."""
    out: dict[str, str] = {}
    for name in ("att_sharing", "bud_statement", "bm_scorecard", "bm_practices"):   # later tables win
        t = tables.get(name)
        if t is not None and column in t:
            out.update(zip(t["practice_code"], t[column]))
    return out


def _load(run_dir: Path) -> _Run:
    """Every table the pages read, the latest benchmarking period and the lookups."""
    tables = {name: _read(run_dir, name) for name in TABLES}
    ratios = tables["bm_ratios"]
    period = max(ratios["period"]) if ratios is not None and len(ratios) else ""
    spec = tables["bm_specialties"]
    specialties = dict(zip(spec["specialty_code"], spec["specialty_name"])) if spec is not None else {}
    target = "pct"
    res_path = run_dir / "results.json"
    if res_path.is_file():
        try:
            bm = json.loads(res_path.read_text(encoding="utf-8")).get("benchmarking", {})
            target = "reference" if isinstance(bm, dict) and bm.get("target") == "reference" else "pct"
        except (OSError, ValueError):
            target = "pct"
    return _Run(tables, _lookup(tables, "practice_name"), _lookup(tables, "consortium"), specialties, period, target,
                run_dir.name)


# --------------------------------------------------------------------------------------------------
# numbers in words
# --------------------------------------------------------------------------------------------------
def _count(v: Any) -> str:
    """A disclosed count as text: thousands separators, ``*`` and blanks kept; never ``19.0``."""
    s = text(v).strip()
    f = _num(s)
    return f"{int(round(f)):,}" if math.isfinite(f) else s


def _whole(v: Any) -> str:
    """A modelled figure or amount to the nearest whole number, with thousands separators ("" when missing)."""
    f = _num(v)
    return f"{round(f):,d}" if math.isfinite(f) else ""


def _pence(v: Any) -> str:
    """An amount in GBP to the penny."""
    f = _num(v)
    return "" if not math.isfinite(f) else f"{f:,.2f}".replace("-0.00", "0.00")


def _ratio(v: Any) -> str:
    f = _num(v)
    return f"{f:.2f}" if math.isfinite(f) else ""


def _interval(lo: Any, hi: Any, show: Callable[[Any], str] = _ratio) -> str:
    a, b = show(lo), show(hi)
    return f"{a} to {b}" if a and b else ""


def _score(v: Any) -> str:
    """A score (IMD) at the precision of the data (2 decimals at most), never with a bare ``.0``."""
    f = _num(v)
    return f"{f:.2f}".rstrip("0").rstrip(".") if math.isfinite(f) else ""


def _pct(v: Any, spec: str = ".1%") -> str:
    f = _num(v)
    return format(f, spec) if math.isfinite(f) else ""


def _yes(v: Any) -> str:
    return {"true": "yes", "false": "no"}.get(text(v).strip().lower(), text(v))


def _flag_words(flag: str, measure: str) -> str:
    """A benchmarking flag (``"under, persistent"``) in words."""
    referrals = measure == "referrals"
    words = {"high": "high referrer (above the upper funnel limit)" if referrals else "high (above the upper funnel limit)",
             "under": "possible under-referrer (below the lower funnel limit)" if referrals
             else "low (below the lower funnel limit)",
             "persistent": "persistent outlier (flagged in most recent periods)"}
    parts = [p.strip() for p in text(flag).split(",") if p.strip()]
    return "; ".join(words.get(p, p) for p in parts) or "none"


def _flags(run: _Run, code: str) -> dict[tuple[str, str], dict[str, Any]]:
    """The practice's flags of the latest period: (measure, specialty) -> its ``bm_flags`` row."""
    f = run.table("bm_flags", code)
    if f is None:
        return {}
    f = f[f["period"] == run.period]
    return {(r["measure"], r["specialty_code"]): r for r in f.to_dict("records")}


def _comparison(flags: Mapping[tuple[str, str], Mapping[str, Any]], measure: str, specialty: str = "all") -> str:
    """``higher``, ``lower`` or ``similar``: the practice's funnel flag of ``measure`` (:func:`_flags`)."""
    f = flags.get((measure, specialty))
    if f is None:
        return "similar"
    if _yes(f["high_referrer"]) == "yes":
        return "higher"
    return "lower" if _yes(f["possible_under_referrer"]) == "yes" else "similar"


def _ordered(measures: Sequence[str]) -> list[str]:
    known = [m for m in _MEASURE_ORDER if m in set(measures)]
    return known + sorted(set(measures) - set(known))


# --------------------------------------------------------------------------------------------------
# sections
# --------------------------------------------------------------------------------------------------
def _missing(what: str) -> str:
    return f'<p class="note">{html.escape(what)}: not in this run (the stage that makes it was not run).</p>'


def _header(code: str, run: _Run) -> str:
    """Title, consortium, list size and the features the similar practices are matched on."""
    name = run.names.get(code, "")
    feats = run.table("bm_practices", code)
    facts = [f"Consortium: {run.consortia.get(code, '') or 'not known'}"]
    if feats is not None and len(feats):
        f = feats.iloc[0]
        facts += [f"Registered list: {_count(f['list_size'])} patients ({text(f['month'])})",
                  f"Aged 0 to 14: {_pct(f['share_0_14'])}; aged 65 and over: {_pct(f['share_65_plus'])}",
                  f"Deprivation (IMD score): {_score(f['imd_score'])}"]
    nav = ('<nav><a href="index.html">All practices</a><a href="../report.html">The report</a></nav>')
    title = html.escape(f"{code} {name}".strip())
    return (f"{nav}<h1>{title}</h1><p>{'<br>'.join(html.escape(x) for x in facts)}</p>"
            f'<p class="note">Run {html.escape(run.run_id)}; benchmarking period {html.escape(run.period)}. '
            f"{html.escape(disclosure.TOTALS_FOOTNOTE)} Expected counts, ratios, limits, estimates and money are "
            "modelled or financial figures and are not rounded.</p>")


def _funnel_section(code: str, run: _Run) -> str:
    """Funnel positions of every measure (all specialties) and of each specialty's GP referrals."""
    ratios = run.table("bm_ratios", code)
    if ratios is None:
        return "<h2>1. Funnel positions</h2>" + _missing("Benchmarking (bm_ratios)")
    flags = _flags(run, code)
    r = ratios[ratios["period"] == run.period].set_index("measure")
    rows = []
    for m in _ordered(list(r.index)):
        x = r.loc[m]
        rows.append([cell(measure_label(m, capital=True)), cell(_count(x["observed"]), cls="n"),
                     cell(_whole(x["expected"]), cls="n"), cell(_ratio(x["ratio"]), cls="n"),
                     cell(_interval(x["lower_95_0"], x["upper_95_0"]), cls="n"),
                     cell(_interval(x["limit_lower_99_8"], x["limit_upper_99_8"]), cls="n"), cell(x["position"]),
                     cell(fmt(_num(x["pct_percentile"]), ".0f"), cls="n"),
                     cell(_flag_words(flags.get((m, "all"), {}).get("flag", ""), m))])
    heads = ["Measure", "Observed", "Expected", "Ratio O/E", "95% interval", "Funnel limits (99.8%)", "Position",
             "PCT percentile", "Flag"]
    out = ("<h2>1. Funnel positions</h2>" + html_table(heads, rows, f"Funnel positions, {run.period}, all specialties")
           + _specialty_table(code, run, flags))
    return out + ('<p class="note">Ratio O/E: observed / expected for a practice of this list, age-sex mix and '
                  "deprivation; 1 is the benchmark. Position: against the funnel limits (widened for over-dispersion "
                  "where tested). Percentile: share of the PCT's practices with a lower ratio.</p>")


def _specialty_table(code: str, run: _Run, flags: Mapping[tuple[str, str], Mapping[str, Any]]) -> str:
    """GP referrals by specialty in the latest period, named."""
    spec = run.table("bm_specialty_ratios", code)
    if spec is None:
        return ""
    s = spec[(spec["period"] == run.period) & (spec["measure"] == "referrals")]
    s = s.assign(_order=s["specialty_code"].map(_num)).sort_values(["_order", "specialty_code"])
    rows = [[cell(specialty_label(x["specialty_code"], run.specialties)), cell(_count(x["observed"]), cls="n"),
             cell(_whole(x["expected"]), cls="n"), cell(_ratio(x["ratio"]), cls="n"),
             cell(_interval(x["limit_lower_99_8"], x["limit_upper_99_8"]), cls="n"), cell(x["position"]),
             cell(fmt(_num(x["pct_percentile"]), ".0f"), cls="n"),
             cell(_flag_words(flags.get(("referrals", x["specialty_code"]), {}).get("flag", ""), "referrals"))]
            for x in s.to_dict("records")]
    return html_table(["Specialty", "Observed", "Expected", "Ratio O/E", "Funnel limits (99.8%)", "Position",
                       "PCT percentile", "Flag"], rows, f"GP referrals by specialty, {run.period}")


def _spread(run: _Run) -> dict[str, tuple[float, float, float, float]]:
    """Per measure, the PCT's practices' lowest, 25th and 75th percentile and highest ratio (latest period)."""
    if "spread" not in run.cache:
        ratios = run.table("bm_ratios")
        r = ratios[ratios["period"] == run.period] if ratios is not None else pd.DataFrame(columns=["measure", "ratio"])
        out = {}
        for m, g in r.groupby("measure", sort=True):
            values = g["ratio"].map(_num).to_numpy(float)
            values = values[np.isfinite(values)]
            if values.size:
                q25, q75 = np.percentile(values, [25, 75])
                out[str(m)] = (float(values.min()), float(q25), float(q75), float(values.max()))
        run.cache["spread"] = out
    return run.cache["spread"]


def _spine_section(code: str, run: _Run) -> str:
    """The spine chart of every measure's ratio against the PCT's practices."""
    ratios = run.table("bm_ratios", code)
    if ratios is None:
        return "<h2>2. Spine chart</h2>" + _missing("Benchmarking (bm_ratios)")
    mine = ratios[ratios["period"] == run.period].set_index("measure")["ratio"]
    flags = _flags(run, code)
    rows = []
    spread = _spread(run)
    for m in _ordered(list(spread)):
        value = _num(mine.get(m))
        low, q25, q75, high = spread[m]
        rows.append(SpineRow(measure_label(m, capital=True), value, low, q25, q75, high,
                             _comparison(flags, m) if math.isfinite(value) else "no data"))
    bench = "the PCT average for a practice like this" if run.target == "pct" else "the reference rates"
    key = "".join(f'<span style="background:{FLAG_COLOURS[k]}"></span>{k}' for k in ("higher", "similar", "lower"))
    return ("<h2>2. Spine chart</h2><figure>" + spine_svg(rows, f"Spine chart of {code}'s standardised ratios")
            + f'<figcaption class="key">Each row: the PCT\'s practices from the lowest to the highest ratio (light '
            f"grey), the middle half of them (25th to 75th percentile, dark grey), the benchmark (black line: ratio "
            f"1, {html.escape(bench)}) and this practice (dot).{key}</figcaption></figure>"
            '<p class="note">The dot\'s colour is the practice\'s funnel flag, not a judgement: <b>higher</b> = above '
            "the upper funnel limit (high-referrer flag), <b>lower</b> = below the lower funnel limit (possible "
            "under-referrer flag), <b>similar</b> = within the limits. For referrals fewer is not necessarily "
            "better, so no row says better or worse.</p>")


def _spc_words(s: pd.DataFrame) -> str:
    """The special causes of one practice's chart in a sentence."""
    high = int((s["point_type"] == "special_cause_neutral_high").sum())
    low = int((s["point_type"] == "special_cause_neutral_low").sum())
    last = s.iloc[-1]
    return (f"{len(s)} months, {text(s['month'].iloc[0])} to {text(last['month'])}. Special cause, higher: {high} "
            f"month(s); special cause, lower: {low} month(s). Latest month: ratio {_ratio(last['ratio'])} (mean "
            f"{_ratio(last['mean'])}, process limits {_interval(last['lpl'], last['upl'])}); variation: "
            f"{text(last['variation_icon']).replace('neither ', '') or 'not known'}.")


def _spc_section(code: str, run: _Run) -> str:
    """The XmR chart of the practice's monthly standardised GP referral ratio."""
    spc = run.table("bm_practice_spc", code)
    if spc is None or spc.empty:
        return "<h2>3. Monthly GP referrals (SPC)</h2>" + _missing("The practice's monthly SPC (bm_practice_spc)")
    s = spc.sort_values("month")
    svg = spc_svg(list(s["month"]), s["ratio"].map(_num).tolist(), s["mean"].map(_num).tolist(),
                  s["lpl"].map(_num).tolist(), s["upl"].map(_num).tolist(), list(s["point_type"]),
                  f"{code}: monthly standardised GP referral ratio", "observed / expected")
    return ("<h2>3. Monthly GP referrals (SPC)</h2><figure>" + svg + "<figcaption>Monthly GP referrals as observed / "
            "expected (expected counts set month by month, so the season cancels); the mean and process limits come "
            "from the practice's first months (Making Data Count XmR rules). Coloured points are special causes: "
            "higher or lower than the practice's own history, not an improvement or a concern.</figcaption></figure>"
            f"<p>{html.escape(_spc_words(s))}</p>")


def _ledger_section(code: str, run: _Run) -> str:
    """The practice's counterfactual ledger line and its referrals avoided and savings."""
    ledger = run.table("att_ledger", code, column="unit")
    out = "<h2>4. Savings: the counterfactual ledger</h2>"
    if ledger is None:
        return out + _missing("Savings attribution (att_ledger)")
    led = ledger[ledger["level"] == "practice"].sort_values("financial_year")
    rows = [[cell(x["financial_year"]), cell(_whole(x["spend_base"]), cls="n"), cell(_whole(x["spend"]), cls="n"),
             cell(_whole(x["change"]), cls="n"), cell(_whole(x["population"]), cls="n"),
             cell(_whole(x["need"]), cls="n"), cell(_whole(x["tariff"]), cls="n"),
             cell(_whole(x["provider_change"]), cls="n"),
             cell(f"{_whole(x['practice_action'])} ({_interval(x['practice_action_ci_low'], x['practice_action_ci_high'], _whole)})", cls="n"),
             cell(_whole(x["unexplained"]), cls="n")] for x in led.to_dict("records")]
    out += html_table(["Year", "Base-year spend", "Spend", "Change", "Population", "Need", "Tariff", "Provider change",
                       "Practice action (95% CI)", "Unexplained"], rows,
                      "Change in hospital spend since the base year, by cause (GBP; practice action negative = saving)")
    sav = run.table("att_practice_savings", code)
    if sav is not None and len(sav):
        rows = [[cell(x["financial_year"]), cell(_count(x["referrals"]), cls="n"),
                 cell(_whole(x["counterfactual_referrals"]), cls="n"), cell(_whole(x["referrals_avoided"]), cls="n"),
                 cell(f"{_whole(x['savings'])} ({_interval(x['ci_low'], x['ci_high'], _whole)})", cls="n")]
                for x in sav.sort_values("financial_year").to_dict("records")]
        out += html_table(["Year", "GP referrals", "Without engagement (modelled)", "Referrals avoided (modelled)",
                           "Savings from practice action, GBP (95% CI)"], rows, "Referrals avoided and savings")
    return out


def _budget_section(code: str, run: _Run) -> str:
    """The budget statement: list, need, historic budget, fair share, budget, top-slice and net budget, monitoring."""
    out = "<h2>5. Budget statement</h2>"
    st = run.table("bud_statement", code)
    if st is None or st.empty:
        return out + _missing("The budget statement (bud_statement)")
    x = st.iloc[0]
    items = [("Financial year", text(x["financial_year"])),
             ("Registered list", f"{_count(x['registered'])} ({text(x['list_month'])})"),
             ("Weighted list (age and sex)", _whole(x["weighted_list"])), ("Need index", fmt(_num(x["need_index"]), ".3f")),
             (f"Historic spend, GBP ({text(x['base_years'])})", _whole(x["historic_spend"])),
             ("Historic budget, GBP", _whole(x["historic_budget"])), ("Fair share, GBP", _whole(x["fair_share"])),
             ("Distance from target", _pct(x["distance_from_target"], "+.1%")),
             ("Pace-of-change step, GBP", _whole(x["step"])),
             ("Budget set by fair shares and pace of change (proposed), GBP", _whole(x["budget"])),
             ("Status", text(x["status"]))]
    net = run.table("risk_net_budgets", code)
    if net is not None and len(net):
        n = net.iloc[0]
        if "supplied_budget" in n.index:  # the run's one basis (the budget stage's budget_basis)
            items += [("Budget issued for the year (budgets.csv), GBP", _whole(n["supplied_budget"])),
                      ("Basis used for the pool, monitoring and payment", text(n["budget_source"]))]
        items += [("Gross budget on that basis, GBP", _whole(n["budget"])),
                  ("Risk-pool top-slice, GBP", _whole(n["top_slice_contribution"])),
                  ("Net budget (gross - top-slice), GBP", _whole(n["net_budget"]))]
    mon = run.table("risk_status", code)
    if mon is not None and len(mon):
        m = mon.iloc[0]
        items += [(f"In-year monitoring at {text(m['month'])}: forecast outturn, GBP", _whole(m["forecast"])),
                  ("Forecast variance from budget", f"{_pct(m['variance'], '+.1%')} ({text(m['status'])})")]
    rows = [[cell(k), cell(v, cls="n")] for k, v in items]
    return (out + html_table(["Item", "Value"], rows, f"Budget statement, {text(x['financial_year'])}")
            + f"<p>{html.escape(text(x['explanation']))}</p>")


def _gates(x: Mapping[str, Any]) -> str:
    """The eligibility gates of one year's sharing in words."""
    q = text(x.get("quarters_positive", ""))
    gates = [("under-referrer flag", "under_referrer_flag"), ("emergency admissions rose (safety check)",
                                                              "emergency_rise_flag"),
             ("reviewed", "reviewed"), ("recurrent", "recurrent")]
    words = [f"{label}: {_yes(x[col])}" for label, col in gates if col in x]
    return "; ".join(words) + (f" ({q} engaged quarters positive)" if q else "")


def _payment_section(code: str, run: _Run) -> str:
    """Each year's underspend, eligibility gates and payment with its reason."""
    out = "<h2>6. Payment</h2>"
    sh = run.table("att_sharing", code)
    if sh is None:
        return out + _missing("Savings sharing (att_sharing)")
    if sh.empty:
        return out + ("<p>No savings-sharing line for this practice: it was not engaged in PBC in the years whose "
                      "resources freed up are shared, so nothing is payable to it.</p>")
    s = sh.sort_values("financial_year")
    rows = [[cell(x["financial_year"]), cell(_whole(x["budget"]), cls="n"), cell(_whole(x["spend"]), cls="n"),
             cell(_whole(x["underspend"]), cls="n"),
             cell(f"{_whole(x['practice_action_savings'])} ({_interval(x['savings_ci_low'], x['savings_ci_high'], _whole)})", cls="n"),
             cell(_gates(x)), cell(_pence(x["eligible"]), cls="n")] for x in s.to_dict("records")]
    out += html_table(["Year", "Budget", "Spend", "Underspend", "Practice-action saving (95% CI)", "Gates",
                       "Eligible"], rows, "Resources freed up and eligibility (GBP)")
    rows = [[cell(x["financial_year"]), cell(_pence(x["to_practice"]), cls="n pay"), cell(_pence(x["to_pct"]), cls="n"),
             cell(_pence(x["retained_by_pct"]), cls="n"), cell(x["settlement"]), cell(x["status"]), cell(x["reason"])]
            for x in s.to_dict("records")]
    return out + html_table(["Year", "To the practice", "To the PCT", "Retained by the PCT", "Settlement", "Status",
                             "Reason"], rows, "Payment (GBP)")


def _features(run: _Run) -> dict[str, dict[str, Any]]:
    """Practice code -> its ``bm_practices`` row (list size, age mix, IMD)."""
    if "features" not in run.cache:
        t = run.table("bm_practices")
        run.cache["features"] = {r["practice_code"]: r for r in t.to_dict("records")} if t is not None else {}
    return run.cache["features"]


def _referral_ratios(run: _Run) -> dict[str, str]:
    """Practice code -> its GP referral ratio O/E (text) in the latest period."""
    if "referral_ratios" not in run.cache:
        t = run.table("bm_ratios")
        r = t[(t["period"] == run.period) & (t["measure"] == "referrals")] if t is not None else None
        run.cache["referral_ratios"] = dict(zip(r["practice_code"], r["ratio"])) if r is not None else {}
    return run.cache["referral_ratios"]


def _peers_section(code: str, run: _Run) -> str:
    """The similar practices with names and features, and the opportunity at their median and best quartile."""
    out = "<h2>7. Similar practices and the opportunity</h2>"
    sim = run.table("bm_similar", code)
    if sim is None or sim.empty:
        return out + _missing("Similar practices (bm_similar)")
    f, ref = _features(run), _referral_ratios(run)
    rows = []
    for p in sim.assign(_rank=sim["peer_rank"].map(_num)).sort_values("_rank").to_dict("records"):
        pc = p["peer_code"]
        fr = f.get(pc)
        rows.append([cell(p["peer_rank"], cls="n"), cell(pc, link=f"{pc}.html"), cell(run.names.get(pc, "")),
                     cell(run.consortia.get(pc, "")), cell(_count(fr["list_size"]) if fr is not None else "", cls="n"),
                     cell(_pct(fr["share_0_14"]) if fr is not None else "", cls="n"),
                     cell(_pct(fr["share_65_plus"]) if fr is not None else "", cls="n"),
                     cell(_score(fr["imd_score"]) if fr is not None else "", cls="n"),
                     cell(fmt(_num(p["distance"]), ".2f"), cls="n"),
                     cell(_ratio(ref.get(pc)), cls="n")])
    out += html_table(["Rank", "Practice", "Name", "Consortium", "List size", "Aged 0-14", "Aged 65+", "IMD score",
                       "Distance", "GP referral ratio O/E"], rows,
                      f"The {len(rows)} most similar practices (list size, age mix, deprivation)")
    return out + _opportunity_table(code, run) + (
        '<p class="note">Similar practices: the nearest practices of the PCT by list size (log scale), the shares '
        "aged 0-14 and 65+ and the IMD score, each standardised over the PCT (Euclidean distance; NHS RightCare's "
        "\"similar 10\" for practices). Opportunity: the practice's expected count times its peers' median, or "
        "best-quartile (25th percentile: fewest per expected), ratio, against what it did; a positive difference "
        "is that many more than at the peers' rate. Fewer is not necessarily better: see the under-referrer "
        "flag.</p>")


def _opportunity_table(code: str, run: _Run) -> str:
    opp = run.table("bm_opportunity", code)
    if opp is None or opp.empty:
        return ""
    rows = [[cell(measure_label(x["measure"], capital=True)), cell(_count(x["observed"]), cls="n"),
             cell(_ratio(x["ratio"]), cls="n"), cell(_ratio(x["peer_median_ratio"]), cls="n"),
             cell(_whole(x["at_peer_median"]), cls="n"), cell(_whole(x["opportunity_at_median"]), cls="n"),
             cell(_ratio(x["peer_best_quartile_ratio"]), cls="n"), cell(_whole(x["at_peer_best_quartile"]), cls="n"),
             cell(_whole(x["opportunity_at_best_quartile"]), cls="n")]
            for x in opp.assign(_o=opp["measure"].map(lambda m: _ordered(list(opp["measure"])).index(m)))
            .sort_values("_o").to_dict("records")]
    period = text(opp["period"].iloc[0])
    return html_table(["Measure", "Observed", "Ratio O/E", "Peer median ratio", "At the peer median",
                       "Difference from the median", "Peer best-quartile ratio", "At the best quartile",
                       "Difference from the best quartile"], rows,
                      f"Opportunity, {period}: referrals at the similar practices' median and best quartile")


# --------------------------------------------------------------------------------------------------
# pages
# --------------------------------------------------------------------------------------------------
def page_name(code: str) -> str:
    """The file name of a practice's page (``<code>.html``), for a code that is a safe name.

    Parameters
    ----------
    code : str

    Returns
    -------
    str

    Raises
    ------
    PracticePageError
        If ``code`` is not a safe name.
    """
    if not is_safe_name(code):
        raise PracticePageError(f"practice code {code!r} is not a safe name; it cannot name a page")
    return f"{code}.html"


def _document(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>'
            f"<body>{body}</body></html>\n")


def _page(code: str, run: _Run) -> str:
    sections = (_header, _funnel_section, _spine_section, _spc_section, _ledger_section, _budget_section,
                _payment_section, _peers_section)
    return _document(f"{code} {run.names.get(code, '')}".strip(), "".join(s(code, run) for s in sections))


def _index_rows(codes: Sequence[str], run: _Run, prefix: str = "") -> list[list[str]]:
    """One row per practice: code (linked), name, consortium, list, GP referral ratio, flag, latest payment."""
    sharing = run.table("att_sharing")
    f, ref = _features(run), _referral_ratios(run)
    pay = sharing.sort_values("financial_year").groupby("practice_code").last() if sharing is not None and len(sharing) \
        else pd.DataFrame()
    rows = []
    for c in codes:
        rows.append([cell(c, link=prefix + page_name(c)), cell(run.names.get(c, "")), cell(run.consortia.get(c, "")),
                     cell(_count(f[c]["list_size"]) if c in f else "", cls="n"), cell(_ratio(ref.get(c)), cls="n"),
                     cell(_comparison(_flags(run, c), "referrals")),
                     cell(f"{_pence(pay.loc[c, 'to_practice'])} ({text(pay.loc[c, 'financial_year'])})"
                          if c in pay.index else "", cls="n")])
    return rows


_INDEX_HEADERS = ["Practice", "Name", "Consortium", "List size", "GP referral ratio O/E",
                  "GP referrals against the funnel", "Latest payment to the practice, GBP (year)"]


def _index_page(codes: Sequence[str], run: _Run) -> str:
    body = (f'<nav><a href="../report.html">The report</a></nav><h1>Practice pages: run {html.escape(run.run_id)}</h1>'
            f"<p>One page per practice: funnel positions, spine chart, monthly SPC, savings, budget, payment and "
            f"similar practices. Benchmarking period {html.escape(run.period)}.</p>"
            + html_table(_INDEX_HEADERS, _index_rows(codes, run), f"The {len(codes)} practices"))
    return _document(f"Practice pages: {run.run_id}", body)


def write_practice_pages(run_dir: str | Path) -> list[Path]:
    """Write ``<run_dir>/practices/<code>.html`` for every practice and ``practices/index.html`` listing them.

    Parameters
    ----------
    run_dir : str or Path
        A run directory with ``tables/`` (and ``results.json``); sections whose tables are missing say so.

    Returns
    -------
    list of Path
        The pages written, the index last. Pages of practices no longer in the tables are removed.

    Raises
    ------
    PracticePageError
        Before anything is written: a practice code that is not a safe name (naming the table, column and value),
        or a table that the publishing rule refuses.

    References
    ----------
    See the module docstring.
    """
    run_dir = Path(run_dir)
    run = _load(run_dir)
    codes = practice_codes(run.tables)
    out_dir = run_dir / PRACTICES
    out_dir.mkdir(exist_ok=True)
    written = []
    for c in codes:
        p = out_dir / page_name(c)
        p.write_text(_page(c, run), encoding="utf-8")
        written.append(p)
    index = out_dir / INDEX
    index.write_text(_index_page(codes, run), encoding="utf-8")
    keep = {p.name for p in written} | {INDEX}
    for stale in sorted(out_dir.glob("*.html")):
        if stale.name not in keep:
            stale.unlink()
    return [*written, index]


def links_table(run_dir: str | Path) -> str:
    """The report's table of practices, each linked to its page (``practices/<code>.html``), as escaped HTML.

    Parameters
    ----------
    run_dir : str or Path
        The run directory (its tables; the pages themselves are written after the report notebook runs).

    Returns
    -------
    str
        A ``<table>`` (code linked, name, consortium, list size, GP referral ratio, funnel comparison, latest
        payment), or a sentence when the run has no practice tables.

    Raises
    ------
    PracticePageError
        For a practice code that is not a safe name.

    References
    ----------
    See the module docstring.
    """
    run = _load(Path(run_dir))
    codes = practice_codes(run.tables)
    if not codes:
        return "<p>No practice tables in this run, so there are no practice pages.</p>"
    return (html_table(_INDEX_HEADERS, _index_rows(codes, run, prefix=quote(PRACTICES) + "/"),
                       f"Practice pages: one per practice ({len(codes)}), benchmarking period {run.period}")
            + f'<p><a href="{PRACTICES}/{INDEX}">All practice pages</a></p>')
