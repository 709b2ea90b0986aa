"""``reports/index.html``: the runs in a reports directory, and which of them can be trusted.

A run is listed as complete only when its ``manifest.json`` is there, no ``INCOMPLETE`` marker is left and
:func:`pbc_analysis.manifest.check_published` finds every published file as recorded; its headline figures
are then read from the run's own (just verified) ``results.json``, never from the manifest alone. Runs that
are incomplete or fail the check are listed apart, with their state and no figures. Every value printed
comes from files that may have been edited by anyone, so all of it is HTML-escaped; links are made only
for directory names that are safe names (and percent-encoded even so). The page is plain HTML with
inline CSS: no script, nothing fetched.
"""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

__all__ = ["run_states", "write_index"]

INDEX = "index.html"
LATEST = "latest"
INCOMPLETE = "INCOMPLETE"
_RUN_MARKERS = ("manifest.json", INCOMPLETE, "provenance.json", "notebooks")
_REASON_CHARS = 200

HEADLINE_COLUMNS = ("GP referrals avoided (95% CI)", "Practice-action savings (95% CI)", "Budget envelope",
                    "Practices flagged")
COMPLETE_COLUMNS = ("started", "run", "config", "parameters hash", "code", *HEADLINE_COLUMNS)


def _safe_name(name: str) -> bool:
    from .config import ConfigError, check_name

    try:
        check_name(name, "run directory")
    except ConfigError:
        return False
    return True


def _number(value: Any) -> float | None:
    """A finite int/float from an untrusted JSON value, else None (booleans are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _interval(d: Any, money: bool = False) -> str:
    if not isinstance(d, dict):
        return ""
    est, lo, hi = (_number(d.get(k)) for k in ("estimate", "ci_low", "ci_high"))
    if est is None or lo is None or hi is None:
        return ""
    return f"{'GBP ' if money else ''}{est:,.0f} ({lo:,.0f} to {hi:,.0f})"


def _section(res: dict[str, Any], name: str) -> dict[str, Any]:
    value = res.get(name)
    return value if isinstance(value, dict) else {}


def headline_cells(res: Any) -> dict[str, str]:
    """The few figures the index shows for a run, from its ``results.json`` (modelled estimates).

    Parameters
    ----------
    res : the parsed ``results.json`` (untrusted: any shape).

    Returns
    -------
    dict
        One text per :data:`HEADLINE_COLUMNS`; ``""`` where the section is absent or not of the
        expected shape and type (never an exception).
    """
    res = res if isinstance(res, dict) else {}
    ev, att, bud, bm = (_section(res, k) for k in ("evaluation", "attribution", "budgets", "benchmarking"))
    envelope = _number(bud.get("envelope_gbp"))
    flagged = ""
    if bm:
        codes = [c for key in ("high_referrers", "possible_under_referrers")
                 for c in (bm.get(key) if isinstance(bm.get(key), list) else []) if isinstance(c, str)]
        flagged = f"{len(set(codes))} ({bm.get('latest_period', '')})"
    return {
        "GP referrals avoided (95% CI)": _interval(ev.get("referrals_avoided")),
        "Practice-action savings (95% CI)": _interval(att.get("practice_action_savings"), money=True),
        "Budget envelope": "" if envelope is None else f"GBP {envelope:,.0f} ({bud.get('target_year', '')})",
        "Practices flagged": flagged,
    }


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _check(run: Path) -> list[str] | None:
    """:func:`manifest.check_published` of ``run``; None when this version of the package has no such check."""
    try:
        from .manifest import check_published
    except ImportError:
        return None
    try:
        return check_published(run)
    except Exception as exc:  # noqa: BLE001 - a damaged run directory must not stop the index
        return [f"the check itself failed: {type(exc).__name__}: {exc}"]


def _complete_row(run: Path, man: dict[str, Any]) -> dict[str, Any]:
    code = man.get("code") if isinstance(man.get("code"), dict) else {}
    commit = str(code.get("commit") or "no git commit recorded")[:12]
    if code.get("dirty") is True:
        changed = code.get("changed_files")
        n = len(changed) if isinstance(changed, list) else changed if isinstance(changed, int) else None
        commit += f" (modified: {n} files)" if n is not None else " (modified)"
    report = run / "report.html"
    return {"started": str(man.get("started_utc", "")), "run": run.name, "config": str(man.get("config_name", "")),
            "parameters hash": str(man.get("parameters_hash") or "")[:12], "code": commit,
            "href": f"{quote(run.name)}/report.html" if report.is_file() and not report.is_symlink() else None,
            **headline_cells(_read_json(run / "results.json"))}


def run_states(reports_dir: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Sort the run directories of ``reports_dir`` into complete (verified) runs and the others.

    Parameters
    ----------
    reports_dir : the reports directory.

    Returns
    -------
    (list of dict, list of dict)
        Complete runs, newest first: ``started``, ``run``, ``config``, ``parameters hash``, ``code``,
        ``href`` (None without a report) and :func:`headline_cells` from the verified ``results.json``.
        Other runs, by name, newest first: ``run`` and ``state`` (``"incomplete: <reason>"``,
        ``"integrity check failed: N files"`` or ``"not verified: ..."``) and ``detail`` (the problems).
        Entries that are not directories, are symbolic links (``latest`` included: it points at a listed
        run), have names that are not safe names, or hold nothing a run writes, are ignored.
    """
    reports_dir = Path(reports_dir)
    complete: list[dict[str, Any]] = []
    others: list[dict[str, str]] = []
    entries = sorted(reports_dir.iterdir()) if reports_dir.is_dir() else []
    for run in entries:
        if run.is_symlink() or not run.is_dir() or not _safe_name(run.name):
            continue
        if not any((run / m).exists() or (run / m).is_symlink() for m in _RUN_MARKERS):
            continue
        if not (run / "manifest.json").exists() or (run / INCOMPLETE).exists():
            reason = ""
            marker = run / INCOMPLETE
            if marker.is_file() and not marker.is_symlink():
                try:
                    reason = " ".join(marker.read_text(encoding="utf-8", errors="replace").split())[:_REASON_CHARS]
                except OSError:
                    reason = ""
            others.append({"run": run.name, "state": f"incomplete: {reason}" if reason else "incomplete", "detail": ""})
            continue
        problems = _check(run)
        if problems is None:
            others.append({"run": run.name, "state": "not verified: this version of pbc_analysis cannot check "
                                                      "run integrity", "detail": ""})
        elif problems:
            others.append({"run": run.name, "state": f"integrity check failed: {len(problems)} files",
                           "detail": "; ".join(problems[:5]) + (" ..." if len(problems) > 5 else "")})
        else:
            man = _read_json(run / "manifest.json")
            complete.append(_complete_row(run, man if isinstance(man, dict) else {}))
    complete.sort(key=lambda r: (r["started"], r["run"]), reverse=True)
    others.sort(key=lambda r: r["run"], reverse=True)
    return complete, others


def _latest_target(reports_dir: Path) -> str | None:
    link = reports_dir / LATEST
    if not link.is_symlink():
        return None
    target = Path(os.readlink(link)).name
    return target if _safe_name(target) else None


_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin-bottom:2em}
th,td{border-bottom:1px solid #ccc;padding:.3em .6em;text-align:left;font-size:.9em;vertical-align:top}
th{background:#f2f2f2}caption{text-align:left;font-weight:bold;padding:.3em 0}.state{color:#a00}"""


def _cell(value: Any) -> str:
    return f"<td>{html.escape(str(value))}</td>"


def _complete_table(rows: list[dict[str, Any]], latest: str | None) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COMPLETE_COLUMNS)
    body = []
    for r in rows:
        cells = []
        for c in COMPLETE_COLUMNS:
            if c == "run":
                label = html.escape(r["run"]) + (" (latest)" if r["run"] == latest else "")
                link = f'<a href="{html.escape(r["href"])}">{label}</a>' if r["href"] else label
                cells.append(f"<td>{link}</td>")
            else:
                cells.append(_cell(r.get(c, "")))
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f"<table><caption>Complete runs, checked against their manifests</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>\n{chr(10).join(body)}\n</tbody></table>")


def _others_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return ""
    body = "\n".join(f'<tr>{_cell(r["run"])}<td class="state">{html.escape(r["state"])}</td>{_cell(r["detail"])}</tr>'
                     for r in rows)
    return ("<table><caption>Runs that are not listed as results (incomplete, or failing the integrity check); "
            "no figures are shown for them</caption><thead><tr><th>run</th><th>state</th><th>problems</th></tr>"
            f"</thead><tbody>\n{body}\n</tbody></table>")


def write_index(reports_dir: str | Path) -> Path:
    """Write ``<reports_dir>/index.html`` listing the runs (see :func:`run_states`).

    Parameters
    ----------
    reports_dir : the reports directory.

    Returns
    -------
    Path
        The index file, written next to itself and renamed into place (a reader never sees half a
        page; a symbolic link at ``index.html`` is replaced, never written through).
    """
    reports_dir = Path(reports_dir)
    complete, others = run_states(reports_dir)
    latest = _latest_target(reports_dir)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>PBC evaluation runs</title>
<style>{_STYLE}</style>
</head><body><h1>PBC evaluation runs</h1>
<p>{len(complete)} complete run(s), newest first; {len(others)} other run(s) below. A run is complete when its
manifest is present and every file it publishes matches the sha256 recorded there; its headline figures are
read from its verified <code>results.json</code> and are modelled estimates with 95% intervals. Check a run
again, and re-run it, with <code>pbc verify reports/&lt;run&gt;</code>.</p>
{_complete_table(complete, latest)}
{_others_table(others)}
</body></html>
"""
    out = reports_dir / INDEX
    partial = reports_dir / f".{INDEX}.partial"
    partial.unlink(missing_ok=True)  # never write through a link left in its place
    partial.write_text(page, encoding="utf-8")
    os.replace(partial, out)
    return out
