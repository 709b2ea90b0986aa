"""The report's provenance and input sections: how to reproduce and verify the run, what was validated.

Made only from the run's ``provenance.json`` and results.json's ``validation`` section; every value is
untrusted text, escaped as in :mod:`pbc_analysis.publish.report_content`.
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping

import pandas as pd
from IPython.display import HTML

from pbc_analysis.methods import disclosure
from pbc_analysis.publish.markdown import html_table as _table
from pbc_analysis.publish.markdown import markdown_code
from pbc_analysis.publish.markdown import markdown_text as _md


def packages_table(prov: dict[str, Any]) -> HTML:
    """The versions of the packages the analysis rests on (all of them are in ``manifest.json``)."""
    key = ("numpy", "pandas", "scipy", "statsmodels", "pandera", "pyarrow", "matplotlib", "seaborn", "papermill",
           "nbconvert", "jupyter-client", "ipykernel", "pyyaml")
    pk = {k.lower(): v for k, v in (prov.get("packages") or {}).items()}
    rows = [{"Package": k, "Version": pk[k]} for k in key if k in pk]
    return _table(pd.DataFrame(rows, columns=["Package", "Version"]),
                  f"Key package versions ({len(pk)} packages in all, listed in manifest.json)")


def changed_count(code: Mapping[str, Any]) -> int | None:
    """How many files a run's checkout had modified (``code.changed_files`` of its provenance or manifest).

    Parameters
    ----------
    code : dict of str to object
        The ``code`` record (``changed_files``: the list of ``git status --porcelain`` lines, or a count).

    Returns
    -------
    int or None
        The count, or None when it was not recorded.
    """
    changed = code.get("changed_files")
    if isinstance(changed, list):
        return len(changed)
    return changed if isinstance(changed, int) and not isinstance(changed, bool) else None


def code_warning(prov: dict[str, Any]) -> str | None:
    """The warning a run's code version calls for, or None when it was a clean git checkout.

    Parameters
    ----------
    prov : dict of str to object
        The run's provenance (``code.commit``, ``code.dirty``, ``code.changed_files``).

    Returns
    -------
    str or None
        For a checkout with uncommitted changes: ``"This run was made from a checkout with uncommitted
        changes (N files modified) ..."``; with no git information: ``"No git information was
        recorded ..."``; None for a clean checkout or a notebook run by hand (no provenance). Markdown;
        values escaped.
    """
    if not prov:
        return None
    recorded = prov.get("code")
    code: dict[str, Any] = recorded if isinstance(recorded, dict) else {}
    commit = code.get("commit")
    if not commit or code.get("dirty") is None:
        return ("No git information was recorded for this run (not run from a git checkout, or git was not "
                "available): the code it ran cannot be identified, so it cannot be reproduced or verified from a commit.")
    if code.get("dirty"):
        n = changed_count(code)
        files = f"{n} file{'s' if n != 1 else ''} modified" if n is not None else "files modified"
        return (f"This run was made from a checkout with uncommitted changes ({files} at commit "
                f"{markdown_code(str(commit)[:12])}): it is not reproducible from the commit alone, and "
                "`pbc verify` reports the difference.")
    return None


def reproducibility_text(prov: dict[str, Any]) -> str:
    """The reproducibility section: code version (with a warning for changed code), environment, commands.

    Parameters
    ----------
    prov : dict of str to object
        The run's provenance (:func:`read_provenance`).

    Returns
    -------
    str
        Markdown: a warning block first when :func:`code_warning` has one, then the facts; every value
        from the provenance escaped or in a code span, the parameters in a fenced JSON block.
    """
    if not prov:
        return "This notebook was run by hand, not by `pbc run`; it has no provenance record."
    recorded = prov.get("code")
    code: dict[str, Any] = recorded if isinstance(recorded, dict) else {}
    warning = code_warning(prov)
    head = [f"> **Warning.** {warning}", ""] if warning else []
    state = ("uncommitted changes" if code.get("dirty") else "clean checkout" if code.get("dirty") is False
             else "no git information")
    params = json.dumps(prov.get("parameters", {}), indent=2, sort_keys=True, default=str)
    fence = "`" * max(3, max((len(r) for r in re.findall(r"`+", params)), default=0) + 1)
    return "\n".join(head + [
        f"- Code: `pbc-evaluation` {markdown_code(code.get('package_version'))} at commit "
        f"{markdown_code(code.get('commit') or 'none recorded')} ({state})",
        f"- Python {_md(prov.get('python'))}; lockfile sha256 {markdown_code(prov.get('lockfile_sha256'))}; "
        f"{len(prov.get('packages') or {})} packages (listed in `manifest.json`)",
        f"- Parameters hash {markdown_code(prov.get('parameters_hash'))}",
        f"- Re-create this run: {markdown_code(prov.get('command'))}",
        f"- Check it, as an auditor: {markdown_code(prov.get('verify_command'))} (checks every published file "
        "against the manifest, re-runs from the manifest and compares every result table)",
        "",
        "Parameters given to each notebook:",
        "",
        f"{fence}json",
        params,
        fence,
    ])


def _rows_text(value: Any) -> str:
    """A recorded row count as shown: integers disclosure-controlled again (idempotent), text as is."""
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        shown = disclosure.disclose_counts(pd.Series([value]))[0]
        return f"{shown:,}" if isinstance(shown, int) else str(shown)
    return str(value)


def validation_text(res: dict[str, Any]) -> str:
    """What the input validation recorded, in words (Markdown, from results.json's ``validation``).

    Parameters
    ----------
    res : dict of str to object
        The run's results.json.

    Returns
    -------
    str
        A sentence on the tables present and used and the accepted plausibility exceptions, or that
        the validation summary was not recorded (runs made before it was).
    """
    val = res.get("validation")
    if not isinstance(val, dict):
        return ("Input tables and accepted plausibility exceptions: not recorded (this run was made by a version "
                "that did not record them).")
    tables = [t for t in val.get("tables") or [] if isinstance(t, dict)]
    used = [t for t in tables if t.get("used")]
    optional_absent = [t for t in tables if not t.get("required") and not t.get("present")]
    accepted = [e for e in val.get("accepted_exceptions") or [] if isinstance(e, dict)]
    text = (f"{len(used)} of {len(tables)} tables of the data dictionary were read, validated and used"
            + (f"; optional tables not supplied: {_md(', '.join(str(t.get('table')) for t in optional_absent))}"
               if optional_absent else "") + ". ")
    if accepted:
        text += (f"{len(accepted)} plausibility rule{'s' if len(accepted) != 1 else ''} flagged values that the "
                 "config accepted explicitly; they are listed below with the reason.")
    else:
        text += "No implausible value was accepted: every plausibility rule passed."
    return text


def validation_tables(res: dict[str, Any]) -> list[HTML]:
    """The input tables (required or optional, present, used) and the accepted exceptions.

    Parameters
    ----------
    res : dict of str to object
        The run's results.json (its ``validation`` section, written by the runner).

    Returns
    -------
    list of IPython.display.HTML
        Two tables, or none when the section was not recorded (see :func:`validation_text`). The rows of
        each file are in the data-quality table (patient-level inputs rounded there); the accepted
        exceptions' row counts are as recorded, rounded again under the disclosure rules.
    """
    val = res.get("validation")
    if not isinstance(val, dict):
        return []
    yes = {True: "yes", False: "no"}
    rows = [{"Table": t.get("table"), "File": t.get("file") or "",
             "Required or optional": "required" if t.get("required") else "optional",
             "Present": yes.get(bool(t.get("present"))), "Used": yes.get(bool(t.get("used")))}
            for t in val.get("tables") or [] if isinstance(t, dict)]
    cols = ["Table", "File", "Required or optional", "Present", "Used"]
    out = [_table(pd.DataFrame(rows, columns=cols), "Tables of the data dictionary: required or optional, "
                  "present, used")]
    exc = [{"Rule": e.get("rule"), "Table": e.get("table"), "Column": e.get("column") or "",
            "Rows (count)": _rows_text(e.get("rows")), "Reason accepted": e.get("reason") or ""}
           for e in val.get("accepted_exceptions") or [] if isinstance(e, dict)]
    cols = ["Rule", "Table", "Column", "Rows (count)", "Reason accepted"]
    if exc:
        out.append(_table(pd.DataFrame(exc, columns=cols), "Accepted plausibility exceptions (values flagged as "
                          "implausible that the config accepted explicitly)"))
    else:
        out.append(HTML("<p>No plausibility exception was accepted.</p>"))
    return out


def inputs_table(prov: dict[str, Any]) -> HTML:
    """The input files of the run with their SHA-256 hashes (from the provenance).

    Parameters
    ----------
    prov : dict of str to object
        The run's provenance (its ``inputs``: file name to sha256).

    Returns
    -------
    IPython.display.HTML
        A table, one row per input file by name (escaped).
    """
    rows = [{"Input file": k, "sha256": v} for k, v in sorted((prov.get("inputs") or {}).items())]
    return _table(pd.DataFrame(rows, columns=["Input file", "sha256"]), "Input files and their SHA-256 hashes")
