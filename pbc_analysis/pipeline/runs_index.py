"""``reports/index.html``: the runs in a reports directory, and which of them can be trusted.

A pipeline-layer module: it reads run directories and their manifests and calls
:func:`pbc_analysis.pipeline.manifest.check_published`, so only the runner and the CLI may import it (the publish
layer, :mod:`pbc_analysis.publish.report` included, must not).

A run is listed as complete only when its ``manifest.json`` is there, no ``INCOMPLETE`` marker is left and
:func:`pbc_analysis.pipeline.manifest.check_published` finds every published file as recorded; its headline figures
are then read from the run's own (just verified) ``results.json``, never from the manifest alone. Runs that
are incomplete or fail the check are listed apart, with their state and no figures. Every other entry of
the reports directory (a name that is not a safe name, a symbolic link other than ``latest``, a directory
or file that is not a run) is counted and named in an "ignored entries" line, never dropped without a
word. Every value printed comes from files that may have been edited by anyone, so all of it is
HTML-escaped; links are made only for directory names that are safe names (and percent-encoded even
so). The page is plain HTML with inline CSS: no script, nothing fetched.

Two runs that finish together both rewrite the index: each writes its own temporary file
(``tempfile.mkstemp`` in the reports directory) and renames it into place, and the scan and the rename
are made under an exclusive ``flock`` of the reports directory (POSIX), so the last page written lists
every run that had finished before it was written.
"""

from __future__ import annotations

import html
import json
import math
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pbc_analysis.core.names import INCOMPLETE, LATEST, is_safe_name
from pbc_analysis.pipeline.manifest import check_published
from pbc_analysis.publish.report_provenance import changed_count

if sys.platform != "win32":
    import fcntl

__all__ = ["headline_cells", "ignored_entries", "run_states", "write_index"]

INDEX = "index.html"
_TEMP_PREFIX, _TEMP_SUFFIX = f".{INDEX}.", ".partial"   # this module's temporary files (never listed)
INTERACTIVE = "interactive"   # where notebooks run by hand write (pbc_analysis.publish.results.run_dir)
_RUN_MARKERS = ("manifest.json", INCOMPLETE, "provenance.json", "notebooks")
_REASON_CHARS = 200
_NAME_CHARS = 80

HEADLINE_COLUMNS = ("GP referrals avoided (95% CI)", "Practice-action savings (95% CI)", "Budget envelope",
                    "Practices flagged")
COMPLETE_COLUMNS = ("started", "run", "config", "parameters hash", "code", *HEADLINE_COLUMNS)


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
    res : object
        The parsed ``results.json`` (untrusted: any shape; anything but a dict counts as empty).

    Returns
    -------
    dict of str to str
        One text per :data:`HEADLINE_COLUMNS`: the referrals avoided and the practice-action savings
        as ``estimate (ci_low to ci_high)``, the budget envelope with its target year, and the number
        of distinct practices flagged with the latest period; ``""`` where the section is absent or not
        of the expected shape and type (never an exception). Booleans and non-finite numbers are not
        numbers here.
    """
    res = res if isinstance(res, dict) else {}
    ev, att, bud, bm = (_section(res, k) for k in ("evaluation", "attribution", "budgets", "benchmarking"))
    envelope = _number(bud.get("envelope_gbp"))
    flagged = ""
    if bm:
        lists = [bm.get(key) for key in ("high_referrers", "possible_under_referrers")]
        codes = [c for values in lists if isinstance(values, list) for c in values if isinstance(c, str)]
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


def _check(run: Path) -> list[str]:
    """:func:`manifest.check_published` of ``run``; a check that fails is itself a problem, never an exception."""
    try:
        return check_published(run)
    except Exception as exc:  # noqa: BLE001 - a damaged run directory must not stop the index
        return [f"the check itself failed: {type(exc).__name__}: {exc}"]


def _complete_row(run: Path, man: dict[str, Any]) -> dict[str, Any]:
    recorded = man.get("code")
    code: dict[str, Any] = recorded if isinstance(recorded, dict) else {}
    commit = str(code.get("commit") or "no git commit recorded")[:12]
    if code.get("dirty") is True:
        n = changed_count(code)
        commit += f" (modified: {n} files)" if n is not None else " (modified)"
    report = run / "report.html"
    pages = run / "practices" / "index.html"
    return {"started": str(man.get("started_utc", "")), "run": run.name, "config": str(man.get("config_name", "")),
            "parameters hash": str(man.get("parameters_hash") or "")[:12], "code": commit,
            "href": f"{quote(run.name)}/report.html" if report.is_file() and not report.is_symlink() else None,
            "pages": f"{quote(run.name)}/practices/index.html" if pages.is_file() and not pages.is_symlink() else None,
            **headline_cells(_read_json(run / "results.json"))}


def _shown(name: str) -> str:
    """An entry's name as printable text: control characters and undecodable bytes escaped, shortened."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)
    return text if len(text) <= _NAME_CHARS else text[:_NAME_CHARS] + "..."


def _ignored_reason(entry: Path) -> str | None:
    """Why ``entry`` of the reports directory is not a run to check, or None when it is a candidate run."""
    if entry.is_symlink():
        return "symbolic link (only latest may be one)"
    if not is_safe_name(entry.name):
        return "name is not a safe name"
    if not entry.is_dir():
        return "not a directory"
    if entry.name == INTERACTIVE:
        return "notebooks run by hand write here (never published or verified)"
    if not any((entry / m).exists() or (entry / m).is_symlink() for m in _RUN_MARKERS):
        return "holds none of the files a run writes"
    return None


def _scan(reports_dir: Path) -> tuple[list[Path], list[dict[str, str]]]:
    """The candidate run directories of ``reports_dir`` and its ignored entries (see :func:`ignored_entries`)."""
    runs: list[Path] = []
    ignored: list[dict[str, str]] = []
    entries = sorted(reports_dir.iterdir()) if reports_dir.is_dir() else []
    for entry in entries:
        name = entry.name
        if name == INDEX or (name.startswith(_TEMP_PREFIX) and name.endswith(_TEMP_SUFFIX)):
            continue  # this module's own files
        if name == LATEST and entry.is_symlink():
            continue  # shown as "(latest)" next to the run it points at
        reason = _ignored_reason(entry)
        if reason is None:
            runs.append(entry)
        else:
            ignored.append({"entry": _shown(name), "reason": reason})
    return runs, ignored


def ignored_entries(reports_dir: str | Path) -> list[dict[str, str]]:
    """The entries of ``reports_dir`` that are not listed as runs, and why.

    Parameters
    ----------
    reports_dir : str or Path
        The reports directory.

    Returns
    -------
    list of dict of str to str
        By name: ``entry`` (the name, control characters escaped, at most 80 characters and "...") and
        ``reason``: a symbolic link other than ``latest`` (never followed), a name that is not a safe
        name (:func:`pbc_analysis.core.names.is_safe_name`), not a directory, the ``interactive`` directory
        of notebooks run by hand, or a directory holding none of the files a run writes. The index file
        itself, its temporary files and the ``latest`` link are not entries to report.
    """
    return _scan(Path(reports_dir))[1]


def _states(runs: list[Path]) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """:func:`run_states` of the candidate run directories ``runs``."""
    complete: list[dict[str, Any]] = []
    others: list[dict[str, str]] = []
    for run in runs:
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
        if problems:
            others.append({"run": run.name, "state": f"integrity check failed: {len(problems)} files",
                           "detail": "; ".join(problems[:5]) + (" ..." if len(problems) > 5 else "")})
        else:
            man = _read_json(run / "manifest.json")
            complete.append(_complete_row(run, man if isinstance(man, dict) else {}))
    complete.sort(key=lambda r: (r["started"], r["run"]), reverse=True)
    others.sort(key=lambda r: r["run"], reverse=True)
    return complete, others


def run_states(reports_dir: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Sort the run directories of ``reports_dir`` into complete (verified) runs and the others.

    Parameters
    ----------
    reports_dir : str or Path
        The reports directory.

    Returns
    -------
    complete : list of dict
        Newest first: ``started``, ``run``, ``config``, ``parameters hash``, ``code``, ``href`` (None
        without a report), ``pages`` (the practice pages' index, None without them) and :func:`headline_cells` from the verified ``results.json``.
    others : list of dict of str to str
        By name, newest first: ``run``, ``state`` (``"incomplete: <reason>"`` or ``"integrity check
        failed: N files"``) and ``detail`` (the first five problems).
        Entries that are not candidate runs are in :func:`ignored_entries`, not here.
    """
    return _states(_scan(Path(reports_dir))[0])


def _latest_target(reports_dir: Path) -> str | None:
    link = reports_dir / LATEST
    if not link.is_symlink():
        return None
    target = Path(os.readlink(link)).name
    return target if is_safe_name(target) else None


_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin-bottom:2em}
th,td{border-bottom:1px solid #ccc;padding:.3em .6em;text-align:left;font-size:.9em;vertical-align:top}
th{background:#f2f2f2}caption{text-align:left;font-weight:bold;padding:.3em 0}.state{color:#a00}.ignored{color:#555}"""


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
                if r.get("pages"):
                    link += f' (<a href="{html.escape(r["pages"])}">practice pages</a>)'
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


def _ignored_line(ignored: list[dict[str, str]]) -> str:
    if not ignored:
        return ""
    items = "; ".join(f"<code>{html.escape(i['entry'])}</code> ({html.escape(i['reason'])})" for i in ignored)
    return f'<p class="ignored">Ignored entries of the reports directory ({len(ignored)}), not runs: {items}.</p>'


@contextmanager
def _locked(reports_dir: Path) -> Iterator[None]:
    """An exclusive ``flock`` of the reports directory itself while the index is made (POSIX; a no-op on Windows)."""
    if sys.platform == "win32":
        yield
        return
    fd = os.open(reports_dir, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _replace_atomically(out: Path, page: str) -> None:
    """Write ``page`` to a temporary file of its own next to ``out`` and rename it onto ``out``."""
    fd, tmp = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=_TEMP_SUFFIX, dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(page)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; the index is read like the reports it links to
        os.replace(tmp, out)  # a link at index.html is replaced, never written through
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_index(reports_dir: str | Path) -> Path:
    """Write ``<reports_dir>/index.html`` listing the runs (see :func:`run_states`).

    Parameters
    ----------
    reports_dir : str or Path
        The reports directory (it must exist).

    Returns
    -------
    Path
        The index file. It is written to a temporary file of its own (``tempfile.mkstemp``) and renamed
        into place with ``os.replace``, so a reader never sees half a page and a symbolic link at
        ``index.html`` is replaced, never written through. The scan and the rename happen under an
        exclusive lock of the reports directory, so of two runs finishing together the later index
        lists both. Entries that are not runs are named in an "ignored entries" line
        (:func:`ignored_entries`).

    References
    ----------
    POSIX ``rename`` (atomic replacement of the target), https://pubs.opengroup.org/onlinepubs/9699919799/functions/rename.html;
    Linux ``flock(2)``.
    """
    reports_dir = Path(reports_dir)
    with _locked(reports_dir):
        runs, ignored = _scan(reports_dir)
        complete, others = _states(runs)
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
{_ignored_line(ignored)}
</body></html>
"""
        out = reports_dir / INDEX
        _replace_atomically(out, page)
    return out
