"""``pbc verify``: check a published run against its manifest, re-run it from its validated config, compare.

In order, each step printed as it happens:

1. **Code** (first line when it applies): a checkout at another commit than the run's, with
   uncommitted changes (``git status --porcelain``, files under ``reports/`` ignored), or a run made
   from a checkout with uncommitted changes, is reported as ``code differs from the run's: commit X vs
   Y, N files modified`` and fails verify unless ``allow_dirty``.
2. **Published files** (:func:`manifest.check_published`): the manifest's own hash, the config text
   against its hash, and every file in the run directory against the manifest. Any problem is
   reported by file and fails verify (verdict ``TAMPERED``); nothing is re-run, since the manifest
   no longer vouches for what would be compared.
3. **Config**: the manifest's config text is parsed with exactly the checks of ``pbc run``
   (:func:`config.parse_config`); a text that fails them, or does not match its recorded hash, is
   refused (:class:`VerifyRefused`, exit 2) and never run.
4. **Inputs**: the files the config reads against the recorded sha256.
5. **Re-run** in a new temporary directory (kept, and its path printed, when the re-run fails or
   ``keep`` is given), rendered as ``pbc run`` renders it: the report and the ``published/`` bundle
   are rebuilt. Rewriting every hash (and the manifest's own) after editing a file defeats step 2,
   so what is published is reproduced and compared (:mod:`pbc_analysis.pipeline.compare`), not trusted:

   - ``tables/*.csv``, ``results.json``, ``results/*.json``, ``published/tables/*.csv`` and
     ``published/results.json``: byte-identical, equal within tolerance (largest differences shown)
     or different;
   - ``report.html`` and ``published/report.html``, and the practice pages (``practices/*.html``, also in
     ``published/``): every table, caption, headers and cells, as exact text (:func:`compare.compare_report`);
     the first differing cell of each differing table is named;
   - ``published/README.txt``: exactly; ``published/finance.xlsx``: sheet by sheet, as tables with the tolerance.

   With ``against`` (``pbc verify RUN --against RERUN``) an existing re-run is compared instead of making one,
   so that an auditor re-runs once and checks several published copies. It is accepted only when it is itself
   intact (its files match its manifest), has the run's id and config text (sha256), read the inputs as they are
   now (their sha256) and was made by this checkout (commit and uncommitted changes), and is not the run itself or
   a copy of it (the same manifest); otherwise verify is refused. It must be a re-run the auditor made
   (``pbc verify --keep`` or ``pbc run``): verify cannot tell a re-run from a forgery made to match.

   Figures (``figures/*.png``, ``published/figures/*.png``, and the images and inline SVG charts of the reports
   and practice pages) are compared by their decoded pixels: PNG metadata (software version, time) is the one
   part excluded, by rule; pixels that differ by a root-mean-square of at most
   :data:`compare.FIGURE_RMS` on the 0-255 scale (another machine's anti-aliasing) are within tolerance. The
   notebooks, ``provenance.json`` and ``published/CONTENTS.json`` hold timings and paths: they are checked
   against their hashes only, and the verdict says so.

Exit codes: 0 identical or within tolerance (or, with ``rerun=False``, intact); 1 tampered, different,
code differs or the re-run failed; 2 refused (no readable manifest, a file of the run that cannot be
read, or a config that fails the checks). Every error is one line (or one list), never a traceback.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pbc_analysis.core import names, paths
from pbc_analysis.pipeline import compare
from pbc_analysis.pipeline import manifest as mf
from pbc_analysis.pipeline.config import ConfigError, RunConfig, parse_config
from pbc_analysis.pipeline.run import RunError, run_pipeline
from pbc_analysis.publish.report import ReportError
from pbc_analysis.publish.report_provenance import changed_count

#: the practice pages (pbc_analysis.publish.practice_pages): compared by their tables, like report.html
PAGES = ("practices/*.html", "published/practices/*.html")
#: Outputs re-run and compared (tables and JSON with the tolerance, reports by their tables, text exactly).
COMPARED = ("tables/*.csv", "results.json", "results/*.json", "report.html", "published/tables/*.csv",
            "published/results.json", "published/report.html", "published/README.txt", "published/finance.xlsx",
            "data/*.parquet", "data/*.csv", "data/*.csv.gz", "data/ingest.json", *PAGES,   # data/: a run's ingested tables
            "figures/*.png", "published/figures/*.png")   # figures by their pixels (compare.FIGURE_RMS)
REPORTS = frozenset({"report.html", "published/report.html"})   # compared by their tables
HASH_ONLY = ("notebooks, provenance.json and published/CONTENTS.json (timings and paths) are checked against their "
             "hashes only; figures are compared by their pixels")
TAMPERED, NOT_IDENTICAL, CODE_DIFFERS, RERUN_FAILED = "TAMPERED", "NOT IDENTICAL", "CODE DIFFERS", "RE-RUN FAILED"
INTACT = "intact"
_HEX = re.compile(r"^[0-9a-f]{7,40}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class VerifyRefused(Exception):
    """Verify cannot check this run (no readable manifest, unreadable files, a config that fails the checks); exit 2."""


@dataclasses.dataclass
class VerifyReport:
    """The outcome of :func:`verify`.

    Attributes
    ----------
    verdict : str
        ``identical``, ``within tolerance``, ``intact`` (files checked, not re-run), ``TAMPERED``,
        ``NOT IDENTICAL``, ``CODE DIFFERS`` or ``RE-RUN FAILED``.
    exit_code : int
        0 when verified, 1 otherwise.
    lines : list of str
        Everything printed, in order; the last line is the verdict (or the re-run's error).
    published_problems : list of str
        :func:`manifest.check_published` problems.
    code : str or None
        The "code differs" line, if any.
    comparisons : list of compare.Comparison
        One per compared output.
    rerun_dir : Path or None
        The re-run's directory, when it was kept.
    error : str or None
        The one-line error of a failed re-run.
    """

    verdict: str
    exit_code: int
    lines: list[str]
    published_problems: list[str] = dataclasses.field(default_factory=list)
    code: str | None = None
    comparisons: list[compare.Comparison] = dataclasses.field(default_factory=list)
    rerun_dir: Path | None = None
    error: str | None = None

    @property
    def identical(self) -> bool:
        """Verified: every re-run output byte-identical or within tolerance, and nothing else wrong."""
        return self.exit_code == 0 and self.verdict in (compare.IDENTICAL, compare.WITHIN)

    def __str__(self) -> str:
        return "\n".join(self.lines)


def _shown(value: Any, width: int = 80) -> str:
    """An untrusted manifest value made safe to print: no control characters, bounded length."""
    text = value if isinstance(value, str) else repr(value)
    text = _CONTROL.sub("?", text)
    return text if len(text) <= width else text[: width - 3] + "..."


def _commit(value: Any) -> str:
    return value[:12] if isinstance(value, str) and _HEX.match(value) else ("unknown" if value is None else _shown(value, 40))


def code_difference(recorded: Mapping[str, Any], now: Mapping[str, Any]) -> str | None:
    """The "code differs" line, or None when this checkout is the run's commit, clean, and the run was clean.

    Parameters
    ----------
    recorded : Mapping
        The manifest's ``code`` (``commit``, ``dirty``, ``changed_files``).
    now : Mapping
        :func:`manifest.git_info` of this checkout.

    Returns
    -------
    str or None
        ``code differs from the run's: commit X vs Y, N files modified`` (X the run's commit, Y this
        checkout's, N files with uncommitted changes here), plus a note when the run itself was made
        from a checkout with uncommitted changes.
    """
    modified = len(now.get("changed_files") or []) or (1 if now.get("dirty") else 0)
    run_dirty = recorded.get("dirty") is not False
    same = isinstance(recorded.get("commit"), str) and recorded.get("commit") == now.get("commit")
    if same and not modified and not run_dirty and now.get("dirty") is False:
        return None
    line = f"code differs from the run's: commit {_commit(recorded.get('commit'))} vs {_commit(now.get('commit'))}, {modified} files modified"
    if now.get("dirty") is None:
        line += " (this checkout's changes are unknown: not a git checkout?)"
    if run_dirty:
        n = changed_count(recorded)
        line += (f"; the run itself was made from a checkout with uncommitted changes ({'?' if n is None else n} files), "
                 "which no commit holds")
    return line


def validated_config(manifest: Mapping[str, Any]) -> RunConfig:
    """The manifest's config, parsed with the same checks as ``pbc run``; refused if it fails them.

    Parameters
    ----------
    manifest : Mapping
        A manifest read by :func:`manifest.read_manifest`.

    Returns
    -------
    RunConfig

    Raises
    ------
    VerifyRefused
        The config text does not match its recorded sha256, or fails a check of :func:`config.parse_config`.
    """
    text, digest = manifest["config"]["text"], manifest["config"]["sha256"]
    if hashlib.sha256(text.encode("utf-8")).hexdigest() != digest:
        raise VerifyRefused("the config text in manifest.json does not match its recorded config.sha256; "
                            "it was edited after the run and is not run. Obtain the run directory again from its publisher.")
    recorded_path = manifest["config"].get("path")
    path = Path(recorded_path) if isinstance(recorded_path, str) and recorded_path and "\0" not in recorded_path else None
    try:
        return parse_config(text, path=path)
    except ConfigError as exc:
        raise VerifyRefused(f"the config in manifest.json fails the checks of `pbc run` and is not run:\n{exc}") from None


def _changed_inputs(cfg: RunConfig, recorded: Any) -> list[str]:
    """Input files whose sha256 differs from the manifest's (or that are missing or new)."""
    recorded = recorded if isinstance(recorded, dict) else {}
    try:
        current = {rel: mf.sha256_file(p) for rel, p in mf.input_files(cfg).items()}
    except Exception as exc:  # noqa: BLE001 - the re-run's validation will name the problem in full
        return [f"inputs: cannot be listed ({type(exc).__name__}: {exc})"]
    out = [f"input {_shown(rel)}: {'missing' if rel not in current else 'sha256 differs from the manifest'}"
           for rel in sorted(recorded) if current.get(rel) != recorded[rel]]
    out += [f"input {rel}: read now but not in the manifest" for rel in sorted(set(current) - set(recorded))]
    return out


def compared_names(names: Any) -> list[str]:
    """The outputs that a re-run reproduces and :func:`compare_outputs` compares (:data:`COMPARED`).

    Parameters
    ----------
    names : iterable of str
        Output paths (as in a manifest's ``outputs``).

    Returns
    -------
    list of str
        Sorted.
    """
    return sorted(n for n in names if any(fnmatch.fnmatchcase(n, pat) and n.count("/") == pat.count("/") for pat in COMPARED))


def compare_outputs(published: Path, rerun: Path, outputs: list[str], tol: compare.Tolerance = compare.DEFAULT) -> list[compare.Comparison]:
    """Compare each named output of a published run directory with the re-run's.

    Parameters
    ----------
    published, rerun : Path
        The two run directories.
    outputs : list of str
        Output paths (relative posix) to compare; a name neither safe nor present in one of them is
        reported as different, never read outside the run directory. Reports (:data:`REPORTS`) are
        compared by their tables (:func:`compare.compare_report`), everything else by
        :func:`compare.compare_files`.
    tol : compare.Tolerance
        The tolerance for floats.

    Returns
    -------
    list of compare.Comparison
    """
    out = []
    for name in outputs:
        a, b = mf.output_path(published, name), mf.output_path(rerun, name)
        if a is None or b is None:
            out.append(compare.Comparison(name, compare.DIFFERENT, ["not a plain relative path inside the run directory"]))
        elif name in REPORTS or any(fnmatch.fnmatchcase(name, pat) and name.count("/") == pat.count("/") for pat in PAGES):
            out.append(compare.compare_report(a, b, name))
        else:
            out.append(compare.compare_files(a, b, name, tol))
    return out


def _rerun(cfg: RunConfig, manifest: Mapping[str, Any], keep: bool, tol: compare.Tolerance,
           say: Callable[[str], None], echo: Any, run_dir: Path) -> tuple[list[compare.Comparison], Path | None, str | None]:
    """Re-run ``cfg`` in a new temporary directory and compare; (comparisons, kept directory, error line)."""
    work = Path(tempfile.mkdtemp(prefix="pbc-verify-"))
    recorded_id = manifest.get("run_id")
    run_id = recorded_id if isinstance(recorded_id, str) and names.is_safe_name(recorded_id) else "rerun"   # as named in the report
    say(f"re-running {_shown(manifest.get('run_id'))} in {work} (notebooks, report and published/ bundle)")
    try:
        new_dir = run_pipeline(cfg, reports_dir=work, render=True, run_id=run_id, echo=echo)
        listed = mf.output_hashes(new_dir)
    except BaseException as exc:
        partial = work / run_id if (work / run_id).exists() else work
        if not isinstance(exc, (RunError, ReportError, OSError, ValueError)):   # interrupted, or a defect
            echo(f"partial re-run output kept at {partial}")
            raise
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "failed")
        what = ("the report could not be rendered: " if isinstance(exc, ReportError)
                else "" if isinstance(exc, RunError) else f"{type(exc).__name__}: ")
        return [], partial, f"the re-run failed: {what}{_shown(first, 400)}; partial re-run output kept at {partial}"
    comparisons = compare_outputs(run_dir, new_dir, compared_names(set(manifest["outputs"]) | set(listed)), tol)
    if keep:
        return comparisons, new_dir, None
    shutil.rmtree(work, ignore_errors=True)
    return comparisons, None, None


def _rerun_problems(rerun_dir: Path, manifest: Mapping[str, Any], cfg: RunConfig,
                    allow_dirty: bool) -> tuple[dict[str, Any], list[str], str | None]:
    """The manifest of ``rerun_dir`` and why it is not a re-run of the run of ``manifest`` made here and now."""
    theirs, problems = mf.read_manifest(rerun_dir)
    if theirs is None:
        return {}, problems, None
    problems = list(mf.check_published(rerun_dir))
    if theirs == manifest:   # each run records its own times: the same manifest is the run itself or a copy of it
        problems.append("it is the run itself or a copy of it (the same manifest), not a re-run")
    if theirs.get("run_id") != manifest.get("run_id"):
        problems.append(f"its run id is {_shown(theirs.get('run_id'))}, the run's {_shown(manifest.get('run_id'))}")
    if theirs.get("config", {}).get("sha256") != manifest["config"]["sha256"]:
        problems.append("it was run from another config text (sha256 differs)")
    changed = _changed_inputs(cfg, theirs.get("inputs"))
    problems += [f"it read other inputs than those here now: {c}" for c in changed]
    recorded = theirs.get("code")
    code = code_difference(recorded if isinstance(recorded, dict) else {}, mf.git_info())
    if code and not allow_dirty:
        problems.append(f"it was made by other code than this checkout's, or code no commit holds ({code}); give "
                        "--allow-dirty to accept")
    return theirs, problems, code


def _against(rerun_dir: Path, manifest: Mapping[str, Any], cfg: RunConfig, tol: compare.Tolerance, run_dir: Path,
             say: Callable[[str], None], allow_dirty: bool) -> list[compare.Comparison]:
    """Compare the run with an existing re-run, refused (:class:`VerifyRefused`) unless it is one made here and now."""
    theirs, problems, code = _rerun_problems(rerun_dir, manifest, cfg, allow_dirty)
    if problems:
        raise VerifyRefused(f"{_shown(str(rerun_dir))} cannot stand as the re-run (verify without --against to re-run):\n  "
                            + "\n  ".join(problems))
    if code:
        say(f"WARNING: the re-run's {code} (accepted: --allow-dirty)")
    say(f"comparing with the re-run {_shown(str(rerun_dir))} (intact; the run's id and config, the inputs as they are "
        "now" + ("" if code else " and this checkout's code") + ")")
    return compare_outputs(run_dir, rerun_dir, compared_names(set(manifest["outputs"]) | set(theirs["outputs"])), tol)


def _verdict(report: VerifyReport, allow_dirty: bool, changed_inputs: list[str], rerun: bool, tol: compare.Tolerance) -> None:
    """Fill in the verdict, exit code and final line of ``report``."""
    comps = report.comparisons
    different = [c for c in comps if c.state == compare.DIFFERENT]
    within = [c for c in comps if c.state == compare.WITHIN]
    code = "" if allow_dirty or not report.code else "; the code differs from the run's (give --allow-dirty to accept)"
    n = len(report.published_problems)
    if report.published_problems:
        report.verdict, line = TAMPERED, f"{TAMPERED}: {n} problem{'s' if n != 1 else ''} with the published files (listed above); not re-run"
    elif report.error:
        report.verdict, line = RERUN_FAILED, f"error: {report.error}"
    elif different or changed_inputs:
        report.verdict = NOT_IDENTICAL
        line = f"{NOT_IDENTICAL}: {len(different)} of {len(comps)} outputs differ" + (f", {len(changed_inputs)} input files changed" if changed_inputs else "")
    elif not rerun:
        report.verdict, line = INTACT, f"{INTACT}: every published file matches the manifest (not re-run)"
    elif within:
        report.verdict = compare.WITHIN
        line = (f"equal within tolerance: {len(comps) - len(within)} of {len(comps)} outputs identical, "
                f"{len(within)} equal within tolerance ({tol}): {', '.join(c.name for c in within)}; {HASH_ONLY}")
    else:
        report.verdict = compare.IDENTICAL
        line = (f"identical: all {len(comps)} re-run outputs reproduce the published ones (tables and JSON byte for byte, "
                f"the reports' tables cell for cell); {HASH_ONLY}")
    if code and report.verdict in (compare.IDENTICAL, compare.WITHIN, INTACT):
        report.verdict, line = CODE_DIFFERS, f"{CODE_DIFFERS}: {line}"
    report.exit_code = 0 if report.verdict in (compare.IDENTICAL, compare.WITHIN, INTACT) else 1
    report.lines.append(line + code)


def verify(run_dir: str | Path, echo: Any = print, allow_dirty: bool = False, rerun: bool = True, keep: bool = False,
           tol: compare.Tolerance = compare.DEFAULT, against: str | Path | None = None) -> VerifyReport:
    """Verify a published run: code, published files, config, inputs, then a re-run compared output by output.

    Parameters
    ----------
    run_dir : str or Path
        The run directory (relative paths from the current directory, else the project root).
    echo : callable
        Printer for each line as it is found and for the re-run's progress (``print``).
    allow_dirty : bool
        Accept a checkout at another commit or with uncommitted changes (still reported).
    rerun : bool
        Re-run and compare (default); False checks the published files and the config only.
    keep : bool
        Keep the re-run's directory (it is always kept when the re-run fails).
    tol : compare.Tolerance
        Tolerance for floats in tables and JSON.
    against : str or Path, optional
        An existing re-run to compare with instead of re-running (e.g. one kept by ``keep``): accepted only when
        it is intact and was made from the run's id and config, the inputs as they are now and this checkout.

    Returns
    -------
    VerifyReport

    Raises
    ------
    VerifyRefused
        No readable manifest, a file of the run that cannot be read (every such file listed), or a
        config text that does not match its hash or fails the checks, or an ``against`` directory that is not
        such a re-run (every reason listed). A re-run that fails (a notebook,
        the report's rendering, a file it cannot write) is not raised: it is the report's ``error``.
    """
    given = Path(run_dir)
    run_dir = given.resolve() if given.exists() else paths.resolve(given)
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        echo(line)

    manifest, problems = mf.read_manifest(run_dir)
    if manifest is None:
        raise VerifyRefused("\n".join(problems))
    unreadable = mf.unreadable_files(run_dir)
    if unreadable:
        raise VerifyRefused(f"{len(unreadable)} file{'s' if len(unreadable) != 1 else ''} of the run cannot be read, so it "
                            "cannot be checked; make them readable (e.g. chmod -R u+rX on the run directory) and verify "
                            "again:\n  " + "\n  ".join(unreadable))
    try:
        return _verify(run_dir, manifest, say, lines, echo, allow_dirty, rerun, keep, tol,
                       None if against is None else Path(against).resolve())
    except OSError as exc:   # a file that became unreadable, or a full disk, while verifying
        raise VerifyRefused(f"{exc.filename or run_dir}: {exc.strerror or exc} while verifying; fix it and verify again") from None


def _verify(run_dir: Path, manifest: dict[str, Any], say: Callable[[str], None], lines: list[str], echo: Any,
            allow_dirty: bool, rerun: bool, keep: bool, tol: compare.Tolerance, against: Path | None) -> VerifyReport:
    """The steps of :func:`verify` once the manifest is read and every file of the run can be read."""
    report = VerifyReport(verdict="", exit_code=1, lines=lines)
    code = manifest.get("code")
    report.code = code_difference(code if isinstance(code, dict) else {}, mf.git_info())
    if report.code:
        say(f"WARNING: {report.code}" + ("" if allow_dirty else "; verify fails unless --allow-dirty is given"))
    report.published_problems = mf.check_published(run_dir)
    for problem in report.published_problems:
        say(f"{TAMPERED}: {problem}")
    if not report.published_problems:
        say(f"published files: all {len(manifest['outputs'])} listed in manifest.json match their sha256; "
            "the manifest matches its own hash and the config text its hash")
    cfg = validated_config(manifest)
    say(f"config: passes the checks of `pbc run` (sha256 {manifest['config']['sha256'][:12]})")
    if cfg.parameters != manifest.get("parameters"):
        say("note: the config resolves to different parameters on this machine (paths differ?)")
    changed_inputs = _changed_inputs(cfg, manifest.get("inputs"))
    for item in changed_inputs:
        say(item)
    if rerun and not report.published_problems:
        if against is not None:
            report.comparisons = _against(against, manifest, cfg, tol, run_dir, say, allow_dirty)
        else:
            report.comparisons, report.rerun_dir, report.error = _rerun(cfg, manifest, keep, tol, say, echo, run_dir)
        for comp in report.comparisons:
            say(str(comp))
        if report.comparisons:
            say(HASH_ONLY)
    if report.rerun_dir and not report.error:
        say(f"re-run kept at {report.rerun_dir}")
    _verdict(report, allow_dirty, changed_inputs, rerun and not report.published_problems, tol)
    if report.verdict != RERUN_FAILED:
        echo(report.lines[-1])
    return report
