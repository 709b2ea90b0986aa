"""The national summary page of a partitioned run: every commissioner's headline, a funnel of commissioners and the
national benchmark of every practice, in one self-contained ``national.html``.

:func:`write_national_summary` reads, for every commissioner whose run completed, the headline of its
``results.json`` (treated as possibly tampered: every figure checked to be a finite number, every text escaped):
GP referrals avoided (``evaluation.referrals_avoided``, with its interval), savings attributed to practice action
(``attribution.practice_action_savings``, with its interval) and the budgets' distance from target
(``budgets.distance_from_target``: median, range, share outside the band). Failed commissioners are listed with
their reason. The national benchmark (:func:`pbc_analysis.stages.benchmark.national.national_benchmark`) gives the
counts of high and low practices per commissioner, the table of flagged practices and, summed by commissioner, the
funnel of commissioners' indirectly standardised referral ratios against the national reference (Spiegelhalter
2005, :func:`pbc_analysis.methods.funnel.funnel_overdispersion`).

Disclosure: counts of events (observed referrals and activity) pass through
:func:`pbc_analysis.methods.disclosure.disclose_counts` in the page and in ``tables/national_commissioners.csv`` and
``tables/national_benchmark.csv``; modelled figures (expected counts, ratios, limits, estimates and intervals) are
exempt, counts of practices do not relate to individuals (NHS Digital HES/ECDS disclosure control; DOMAIN.md). Text
cells a spreadsheet would run as a formula are prefixed with ``'``. The national totals of referrals avoided and
savings are sums of the commissioners' estimates; their intervals assume the commissioners' estimates independent
(normal approximation: half-widths / 1.96 added in quadrature).

The page has inline CSS, the figure as a base64 PNG, relative links to each commissioner's ``report.html`` only,
and a small inline script that sorts the commissioners' table by a clicked column (the page reads the same
without it). Same inputs give the same bytes.

References
----------
Spiegelhalter DJ (2005), Funnel plots for comparing institutional performance, Stat Med 24:1185-1202.
NHS Digital (2018), Disclosure control methodology for HES and ECDS.
OWASP, "CSV Injection"; WHATWG HTML, "Serializing HTML fragments" (escaping).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from pathlib import Path, PurePosixPath
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from pbc_analysis.core.names import is_safe_name
from pbc_analysis.methods import disclosure
from pbc_analysis.methods.funnel import funnel_overdispersion
from pbc_analysis.publish import results
from pbc_analysis.publish.bundle import neutralise_formulas
from pbc_analysis.publish.html_parts import cell as _cell
from pbc_analysis.publish.html_parts import fmt as _fmt
from pbc_analysis.publish.html_parts import html_table as _html_table
from pbc_analysis.publish.html_parts import text as _text

__all__ = ["HEADLINE_COLUMNS", "NATIONAL_HTML", "commissioner_rows", "headline_of", "write_national_summary"]

NATIONAL_HTML = "national.html"
HEADLINE_COLUMNS = ["referrals_avoided", "referrals_avoided_ci_low", "referrals_avoided_ci_high",
                    "practice_action_savings", "savings_ci_low", "savings_ci_high", "evaluation_year",
                    "distance_median", "distance_min", "distance_max", "share_outside_band"]
_STATUSES = ("complete", "failed")
_FY = re.compile(r"^[0-9]{4}/[0-9]{2}$")
_Z975 = 1.959963984540054
#: the largest absolute figure believed from a results.json (GBP 1e15 is far beyond any commissioner)
_MAX_ABS = 1e15
_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:80em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left}
th{background:#eee;cursor:pointer}td.n{text-align:right}caption{text-align:left;font-weight:bold;margin:.5em 0}
.failed{color:#a00}.note{font-size:.85em;color:#555}img{max-width:100%}"""
_SCRIPT = """document.querySelectorAll('table.sortable th').forEach(function(th,i){th.addEventListener('click',function(){
var t=th.closest('table'),b=t.tBodies[0],rs=Array.prototype.slice.call(b.rows),d=th.dataset.dir==='a'?-1:1;th.dataset.dir=d>0?'a':'d';
rs.sort(function(x,y){var a=x.cells[i].dataset.v,c=y.cells[i].dataset.v;var p=parseFloat(a),q=parseFloat(c);
if(!isNaN(p)&&!isNaN(q))return d*(p-q);return d*String(a).localeCompare(String(c));});rs.forEach(function(r){b.appendChild(r);});});});"""


def _number(obj: Any, *path: str) -> float | None:
    """``obj[path...]`` as a finite float of believable size, else None (missing, text, bool, NaN, huge)."""
    for key in path:
        if not isinstance(obj, Mapping) or key not in obj:
            return None
        obj = obj[key]
    if isinstance(obj, bool) or not isinstance(obj, (int, float)):
        return None
    f = float(obj)
    return f if math.isfinite(f) and abs(f) <= _MAX_ABS else None


def headline_of(res: Any) -> dict[str, Any]:
    """A commissioner's headline from its ``results.json`` (parsed), every value checked.

    Parameters
    ----------
    res : object
        The parsed ``results.json`` (anything: a value that is not a finite number where one is expected is None).

    Returns
    -------
    dict
        :data:`HEADLINE_COLUMNS`: floats or None; ``evaluation_year`` a ``YYYY/YY`` text or None.

    References
    ----------
    The sections of results.json: :mod:`pbc_analysis.publish.results`.
    """
    ev, att, bud = "evaluation", "attribution", "budgets"
    year = res.get(att, {}).get("evaluation_year") if isinstance(res, Mapping) and isinstance(res.get(att), Mapping) \
        else None
    return {
        "referrals_avoided": _number(res, ev, "referrals_avoided", "estimate"),
        "referrals_avoided_ci_low": _number(res, ev, "referrals_avoided", "ci_low"),
        "referrals_avoided_ci_high": _number(res, ev, "referrals_avoided", "ci_high"),
        "practice_action_savings": _number(res, att, "practice_action_savings", "estimate"),
        "savings_ci_low": _number(res, att, "practice_action_savings", "ci_low"),
        "savings_ci_high": _number(res, att, "practice_action_savings", "ci_high"),
        "evaluation_year": year if isinstance(year, str) and _FY.fullmatch(year) else None,
        "distance_median": _number(res, bud, "distance_from_target", "median"),
        "distance_min": _number(res, bud, "distance_from_target", "min"),
        "distance_max": _number(res, bud, "distance_from_target", "max"),
        "share_outside_band": _number(res, bud, "distance_from_target", "share_outside_band"),
    }


def _safe_run_dir(national_dir: Path, run_dir: Any) -> str | None:
    """``run_dir`` as a relative POSIX path inside ``national_dir`` made of safe names, else None."""
    if not isinstance(run_dir, (str, PurePosixPath, Path)) or not str(run_dir):
        return None
    parts = PurePosixPath(str(run_dir)).parts
    if PurePosixPath(str(run_dir)).is_absolute() or "\\" in str(run_dir) or not all(is_safe_name(p) for p in parts):
        return None
    root = national_dir.resolve()
    target = (national_dir / Path(*parts)).resolve()
    return "/".join(parts) if target.is_relative_to(root) and target != root else None


def _read_results(run: Path) -> tuple[Any, str | None]:
    """The parsed ``results.json`` of a run directory and, when it cannot be used, why."""
    p = run / "results.json"
    if p.is_symlink() or not p.is_file():
        return None, "results.json is missing"
    try:
        res = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeError, ValueError) as exc:
        return None, f"results.json cannot be read ({type(exc).__name__})"
    return (res, None) if isinstance(res, dict) else (None, "results.json is not a JSON object")


def _outcome(national_dir: Path, o: Mapping[str, Any], i: int) -> dict[str, Any]:
    """One commissioner's row: its outcome checked, its headline read (complete runs) and its report's link."""
    code, status = o.get("commissioner_code"), o.get("status")
    if not isinstance(code, str) or not code:
        raise ValueError(f"outcomes[{i}]: commissioner_code must be a non-empty text, got {code!r}")
    if status not in _STATUSES:
        raise ValueError(f"outcomes[{i}] ({code}): status must be one of {_STATUSES}, got {status!r}")
    n = o.get("n_practices")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"outcomes[{i}] ({code}): n_practices must be a whole number >= 0, got {n!r}")
    secs = _number({"s": o.get("seconds")}, "s")
    row: dict[str, Any] = {"commissioner_code": code, "commissioner_name": str(o.get("commissioner_name") or ""),
                           "n_practices": int(n), "status": status,
                           "reason": "" if o.get("reason") is None else str(o.get("reason")),
                           "seconds": secs,
                           "report": "", "note": ""}
    row.update(dict.fromkeys(HEADLINE_COLUMNS))
    rel = _safe_run_dir(national_dir, o.get("run_dir"))
    if status == "failed":
        return row
    if rel is None:
        row["note"] = "run directory not a safe relative path: not read, not linked"
        return row
    res, why = _read_results(national_dir / rel)
    if why:
        row["note"] = why
    else:
        row.update(headline_of(res))
    if (national_dir / rel / "report.html").is_file():
        row["report"] = rel + "/report.html"
    return row


def commissioner_rows(national_dir: Path, outcomes: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Every commissioner's outcome and headline, one row each, sorted by code.

    Parameters
    ----------
    national_dir : Path
        The national run directory (``run_dir`` of each outcome is relative to it).
    outcomes : sequence of mapping
        ``commissioner_code, commissioner_name, n_practices, status ("complete" | "failed"), reason, run_dir,
        seconds``.

    Returns
    -------
    pandas.DataFrame
        ``commissioner_code, commissioner_name, n_practices, status, reason, seconds, report`` (relative link or
        ""), ``note`` (why a complete run's headline is missing) and :data:`HEADLINE_COLUMNS`.

    Raises
    ------
    ValueError
        For an outcome without a code, with an unknown status or a bad practice count, or a code given twice.

    References
    ----------
    See the module docstring.
    """
    rows = pd.DataFrame([_outcome(national_dir, o, i) for i, o in enumerate(outcomes)],
                        columns=["commissioner_code", "commissioner_name", "n_practices", "status", "reason", "seconds",
                                 "report", "note", *HEADLINE_COLUMNS])
    dup = rows["commissioner_code"][rows["commissioner_code"].duplicated()].tolist()
    if dup:
        raise ValueError(f"outcomes list commissioners {sorted(set(dup))} more than once; give one outcome each")
    return rows.sort_values("commissioner_code", ignore_index=True)


def _commissioner_funnel(benchmark: pd.DataFrame, measure: str = "referrals") -> tuple[pd.DataFrame, Any]:
    """Commissioners' O/E of ``measure`` (sums of their practices) in an over-dispersed funnel: units and result."""
    b = benchmark[benchmark["measure"] == measure]
    g = b.groupby("commissioner_code", sort=True)[["observed", "expected"]].sum().reset_index()
    g = g[g["expected"] > 0].reset_index(drop=True)
    if len(g) < 3:
        return g.assign(ratio=np.nan), None
    fr = funnel_overdispersion(g, "observed", "expected", group="commissioner_code", data_type="SR", sr_method="CQC",
                               round_expected=None)
    u = fr.units.set_index("group").reindex(g["commissioner_code"])
    g["ratio"] = g["observed"] / g["expected"]
    for c in ("lower95", "upper95", "lower998", "upper998"):
        g[c] = u[c].to_numpy(float)
    g["position"] = np.select([g["ratio"] > g["upper998"], g["ratio"] > g["upper95"], g["ratio"] < g["lower998"],
                               g["ratio"] < g["lower95"]], ["above 99.8%", "above 95%", "below 99.8%", "below 95%"],
                              default="within")
    return g, fr


def _funnel_png(fr: Any) -> str:
    """The funnel of commissioners as a base64 PNG (no time stamps)."""
    import matplotlib.pyplot as plt

    from pbc_analysis.publish.figures import plot_funnel

    fig = plot_funnel(fr.units, fr.limits, x="denominator", y="value", label="group", outlier="outlier", target=1.0,
                      xlabel="Expected GP referrals (national reference rates)",
                      ylabel="Standardised referral ratio (O/E)")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _flag_counts(benchmark: pd.DataFrame) -> pd.DataFrame:
    """Per commissioner and measure: practices benchmarked, high and low."""
    b = benchmark.assign(high=benchmark["flag"].eq("high"), low=benchmark["flag"].eq("low"))
    return b.groupby(["commissioner_code", "measure"], sort=True).agg(
        n_practices=("practice_code", "nunique"), n_high=("high", "sum"), n_low=("low", "sum")).reset_index()


def _disclosed(values: pd.Series) -> pd.Series:
    """Counts (possibly float sums of whole numbers) disclosed: 0, ``*`` or a multiple of 5."""
    return disclosure.disclose_counts(pd.Series(np.asarray(values, float).round().astype(np.int64), index=values.index))


def _interval(est: Any, lo: Any, hi: Any, spec: str = ",.0f") -> str:
    """``estimate (lo to hi)`` or "" when the estimate is missing."""
    if est is None or (isinstance(est, float) and math.isnan(est)):
        return ""
    ci = f" ({_fmt(lo, spec)} to {_fmt(hi, spec)})" if _fmt(lo, spec) and _fmt(hi, spec) else ""
    return _fmt(est, spec) + ci


def _national_total(rows: pd.DataFrame, est: str, lo: str, hi: str) -> tuple[float, float, float, int]:
    """Sum of the estimates and its interval (independent, normal approximation) over commissioners with all three."""
    ok = rows[[est, lo, hi]].notna().all(axis=1)
    e, lo_v, hi_v = (rows.loc[ok, c].astype(float).to_numpy() for c in (est, lo, hi))
    total = float(e.sum())
    half = _Z975 * math.sqrt(float((((hi_v - lo_v) / (2 * _Z975)) ** 2).sum()))
    return total, total - half, total + half, int(ok.sum())


def _commissioner_table(table: pd.DataFrame) -> str:
    """The sortable table of commissioners: status, headline figures with intervals, link to each report."""
    rows = []
    for r in table.itertuples(index=False):
        failed = r.status == "failed"
        status = f"failed: {_text(r.reason)}" if failed else ("complete" + (f" ({r.note})" if _text(r.note) else ""))
        dist = "" if r.distance_median is None or pd.isna(r.distance_median) else (
            f"{r.distance_median:+.1%} ({_fmt(r.distance_min, '+.1%')} to {_fmt(r.distance_max, '+.1%')})")
        rows.append([
            _cell(r.commissioner_code, link=r.report), _cell(r.commissioner_name), _cell(str(r.n_practices), r.n_practices, "n"),
            _cell(status, cls="failed" if failed else ""),
            _cell(_interval(r.referrals_avoided, r.referrals_avoided_ci_low, r.referrals_avoided_ci_high),
                  _fmt(r.referrals_avoided, ".6g"), "n"),
            _cell(_interval(r.practice_action_savings, r.savings_ci_low, r.savings_ci_high),
                  _fmt(r.practice_action_savings, ".6g"), "n"),
            _cell(r.evaluation_year), _cell(dist, _fmt(r.distance_median, ".6g"), "n"),
            _cell(_fmt(r.share_outside_band, ".0%"), _fmt(r.share_outside_band, ".6g"), "n"),
            _cell(_fmt(r.ratio, ".3f"), _fmt(r.ratio, ".6g"), "n"), _cell(r.position),
            _cell("" if r.referrals_observed is pd.NA else str(r.referrals_observed), cls="n"),
            _cell(_fmt(r.n_high, "d"), r.n_high, "n"), _cell(_fmt(r.n_low, "d"), r.n_low, "n")])
    headers = ["Commissioner", "Name", "Practices", "Status", "GP referrals avoided (95% CI)",
               "Practice-action savings, GBP (95% CI)", "Evaluation year", "Budget distance from target: median (range)",
               "Practices outside the band", "Referral ratio O/E (national)", "Funnel position",
               "GP referrals observed", "High practices (referrals)", "Low practices (referrals)"]
    return _html_table(headers, rows, "Commissioners (click a heading to sort)", sortable=True)


def _commissioners_out(rows: pd.DataFrame, funnel: pd.DataFrame, counts: pd.DataFrame) -> pd.DataFrame:
    """The commissioners' table: outcomes, headline, funnel position and flag counts of referrals, observed disclosed."""
    ref = counts[counts["measure"] == "referrals"][["commissioner_code", "n_high", "n_low"]]
    cols = ["commissioner_code", "observed", "expected", "ratio", "lower95", "upper95", "lower998", "upper998", "position"]
    f = funnel.reindex(columns=cols).rename(columns={"observed": "referrals_observed", "expected": "referrals_expected"})
    out = rows.merge(f, on="commissioner_code", how="left").merge(ref, on="commissioner_code", how="left")
    obs = out["referrals_observed"]
    out["referrals_observed"] = pd.Series(pd.NA, index=out.index, dtype=object)
    have = obs.notna()
    out.loc[have, "referrals_observed"] = _disclosed(obs[have]).to_numpy()
    for c in ("n_high", "n_low"):
        out[c] = out[c].astype("Int64")
    return out


def _flagged_table(benchmark: pd.DataFrame, names: Mapping[str, str]) -> str:
    """The flagged practices (high or low on any measure), observed counts disclosed."""
    f = benchmark[benchmark["flag"].isin(["high", "low"])].reset_index(drop=True)
    obs = _disclosed(f["observed"]) if len(f) else pd.Series([], dtype=object)
    rows = [[_cell(r.commissioner_code), _cell(names.get(r.commissioner_code, "")), _cell(r.practice_code),
             _cell(r.measure), _cell(str(o), cls="n"), _cell(_fmt(r.expected, ",.1f"), cls="n"),
             _cell(_fmt(r.ratio, ".3f"), cls="n"), _cell(f"{_fmt(r.lower, '.3f')} to {_fmt(r.upper, '.3f')}", cls="n"),
             _cell(r.flag)] for r, o in zip(f.itertuples(index=False), obs)]
    return _html_table(["Commissioner", "Name", "Practice", "Measure", "Observed", "Expected (national)", "Ratio O/E",
                        "Funnel limits", "Flag"], rows, "Practices outside the national funnel limits")


def _counts_table(counts: pd.DataFrame) -> str:
    """High and low practices per commissioner and measure."""
    measures = sorted(counts["measure"].unique())
    wide = counts.pivot(index="commissioner_code", columns="measure")
    rows = [[_cell(code)] + [_cell(f"{int(wide.loc[code, ('n_high', m)])} / {int(wide.loc[code, ('n_low', m)])}"
                                   if not pd.isna(wide.loc[code, ("n_high", m)]) else "", cls="n") for m in measures]
            for code in wide.index]
    return _html_table(["Commissioner", *(f"{m}: high / low" for m in measures)], rows,
                       "Practices flagged high / low against national expected counts, by measure")


def _headline(rows: pd.DataFrame, benchmark: pd.DataFrame) -> str:
    """The national headline paragraph list (every value computed here from the checked rows)."""
    done, failed = int((rows["status"] == "complete").sum()), int((rows["status"] == "failed").sum())
    ra = _national_total(rows, "referrals_avoided", "referrals_avoided_ci_low", "referrals_avoided_ci_high")
    sv = _national_total(rows, "practice_action_savings", "savings_ci_low", "savings_ci_high")
    dist = rows["distance_median"].dropna().astype(float)
    ref = benchmark[benchmark["measure"] == "referrals"]
    period = ", ".join(sorted(benchmark["period"].astype(str).unique())) if "period" in benchmark else ""
    items = [
        f"{len(rows)} commissioners: {done} complete, {failed} failed; {int(rows['n_practices'].sum()):,} practices.",
        f"GP referrals avoided by engaged practices, summed over {ra[3]} commissioners: {_interval(*ra[:3])} "
        "(95% interval assuming the commissioners' estimates independent).",
        f"Savings attributed to practice action, summed over {sv[3]} commissioners: GBP {_interval(*sv[:3])}.",
        (f"Budgets' distance from target: the commissioners' medians range from {dist.min():+.1%} to {dist.max():+.1%}."
         if len(dist) else "Budgets' distance from target: not available."),
        f"National benchmark{' (' + period + ')' if period else ''}: {ref['practice_code'].nunique():,} practices, "
        f"{int((ref['flag'] == 'high').sum()):,} above and {int((ref['flag'] == 'low').sum()):,} below the national "
        "funnel limits for GP referrals."]
    return "<ul>" + "".join(f"<li>{html.escape(t)}</li>" for t in items) + "</ul>"


def _page(name: str, rows: pd.DataFrame, table: pd.DataFrame, counts: pd.DataFrame, benchmark: pd.DataFrame,
          png: str | None) -> str:
    """The whole page."""
    names = dict(zip(rows["commissioner_code"], rows["commissioner_name"]))
    failed = rows[rows["status"] == "failed"]
    fails = "".join(f"<li>{html.escape(c)} {html.escape(n)}: {html.escape(r or 'no reason given')}</li>"
                    for c, n, r in zip(failed["commissioner_code"], failed["commissioner_name"], failed["reason"]))
    fig = (f'<figure><img alt="Funnel of commissioners: standardised GP referral ratio against expected referrals" '
           f'src="data:image/png;base64,{png}"><figcaption>Commissioners\' GP referrals against national expected '
           "counts (indirectly standardised ratio O/E; 95% and 99.8% limits, over-dispersion as tested).</figcaption>"
           "</figure>") if png else "<p>Too few commissioners with expected referrals for a funnel plot (fewer than 3).</p>"
    title = html.escape(f"National summary: {name}")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{_CSS}</style></head><body><h1>{title}</h1>"
            f"<h2>National headline</h2>{_headline(rows, benchmark)}"
            f"<h2>Commissioners</h2>{_commissioner_table(table)}"
            f'<p class="note">{html.escape(disclosure.TOTALS_FOOTNOTE)} Estimates, intervals, expected counts and ratios '
            "are modelled and not rounded; counts of practices are not counts of people.</p>"
            f"<h2>Funnel of commissioners</h2>{fig}"
            f"<h2>National benchmark of every practice</h2>{_counts_table(counts)}{_flagged_table(benchmark, names)}"
            f"<h2>Failures</h2>{'<ul>' + fails + '</ul>' if fails else '<p>None.</p>'}"
            f"<script>{_SCRIPT}</script></body></html>\n")


def write_national_summary(national_dir: Path, outcomes: list[dict], benchmark: pd.DataFrame, name: str) -> dict[str, Path]:
    """Write ``national.html`` and its two tables in ``national_dir`` (see the module docstring).

    Parameters
    ----------
    national_dir : Path
        The national run directory; each outcome's ``run_dir`` is relative to it.
    outcomes : list of dict
        One per commissioner: ``commissioner_code, commissioner_name, n_practices, status ("complete" | "failed"),
        reason, run_dir, seconds``.
    benchmark : pandas.DataFrame
        :func:`pbc_analysis.stages.benchmark.national.national_benchmark` (``commissioner_code, practice_code,
        measure, observed, expected, ratio, lower, upper, flag``, optionally ``period``).
    name : str
        The run's name (the page title; escaped).

    Returns
    -------
    dict of str to Path
        ``html``, ``commissioners`` (``tables/national_commissioners.csv``) and ``benchmark``
        (``tables/national_benchmark.csv``).

    Raises
    ------
    ValueError
        For a malformed outcome (see :func:`commissioner_rows`) or a benchmark without its columns.

    References
    ----------
    Spiegelhalter (2005); NHS Digital (2018) disclosure control; see the module docstring.
    """
    national_dir = Path(national_dir)
    need = ["commissioner_code", "practice_code", "measure", "observed", "expected", "ratio", "lower", "upper", "flag"]
    missing = [c for c in need if c not in benchmark.columns]
    if missing:
        raise ValueError(f"benchmark has no columns {missing}; pass national_benchmark()'s table")
    rows = commissioner_rows(national_dir, outcomes)
    bench = benchmark.astype({"commissioner_code": "str", "practice_code": "str", "measure": "str", "flag": "str"})
    funnel, fr = _commissioner_funnel(bench)
    counts = _flag_counts(bench)
    table = _commissioners_out(rows, funnel, counts)
    page = _page(str(name), rows, table, counts, bench, _funnel_png(fr) if fr is not None else None)
    national_dir.mkdir(parents=True, exist_ok=True)
    out = national_dir / NATIONAL_HTML
    out.write_text(page, encoding="utf-8")
    pub_bench = bench.copy()
    pub_bench["observed"] = _disclosed(bench["observed"]).to_numpy() if len(bench) else []
    keys = ["commissioner_code", "practice_code", "measure"]
    return {"html": out,
            "commissioners": results.write_table(neutralise_formulas(table), "national_commissioners", national_dir,
                                                 sort_by=["commissioner_code"]),
            "benchmark": results.write_table(neutralise_formulas(pub_bench), "national_benchmark", national_dir,
                                             sort_by=keys)}
