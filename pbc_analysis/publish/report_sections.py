"""Which of the report's sections a run holds, and the lines that stand in for the others.

A run may execute only some of the analysis notebooks (``run.notebooks`` in the config,
:mod:`pbc_analysis.pipeline.config`). Each analysis notebook writes one ``results.json`` section and its own
result tables and figures (name prefix in brackets):

=========================  ====================  ==========================================
notebook                   results.json section  tables and figures
=========================  ====================  ==========================================
01_data_quality            ``data_quality``      ``dq_*``
02_benchmarking            ``benchmarking``      ``bm_*``
03_referral_evaluation     ``evaluation``        ``ev_*``
04_savings_attribution     ``attribution``       ``att_*``
05_budgets_and_risk        ``budgets``           ``bud_*``, ``risk_*``
=========================  ====================  ==========================================

The runner's own ``validation`` section is written whatever notebooks run. The report notebook asks
:func:`notebook_ran` before it reads a notebook's tables, and shows :func:`not_run_text` in place of a
section whose notebook did not run. Names shown come from this module or the run's provenance and are
escaped as Markdown code.
"""

from __future__ import annotations

from typing import Any

from pbc_analysis.publish.markdown import html_table, markdown_code

NOTEBOOK_SECTIONS: dict[str, tuple[str, str]] = {
    "01_data_quality": ("data_quality", "data and data quality"),
    "02_benchmarking": ("benchmarking", "benchmarking of practices"),
    "03_referral_evaluation": ("evaluation", "referral evaluation"),
    "04_savings_attribution": ("attribution", "savings attribution"),
    "05_budgets_and_risk": ("budgets", "budgets, fair shares and financial risk"),
}

# Headline figures of the executive summary: (label, notebook that makes it).
_HEADLINES: tuple[tuple[str, str], ...] = (
    ("GP referrals avoided and the verdict on referrals", "03_referral_evaluation"),
    ("savings attributed to practice action, the other parts of the spend change, their chart and the verdict "
     "on savings", "04_savings_attribution"),
)


def _check_notebook(notebook: str) -> tuple[str, str]:
    """The (section, description) of an analysis notebook; ValueError naming the known ones otherwise."""
    try:
        return NOTEBOOK_SECTIONS[notebook]
    except KeyError:
        raise ValueError(f"{notebook!r} is not an analysis notebook of the report; known notebooks: "
                         f"{', '.join(NOTEBOOK_SECTIONS)}") from None


def notebook_ran(res: dict[str, Any], notebook: str) -> bool:
    """Whether an analysis notebook ran in this run: its results.json section is there and not empty.

    Parameters
    ----------
    res : dict of str to object
        The run's results.json (:func:`pbc_analysis.publish.results.read_results`).
    notebook : str
        An analysis notebook's name, e.g. ``"03_referral_evaluation"`` (a key of :data:`NOTEBOOK_SECTIONS`).

    Returns
    -------
    bool
        True when ``res[section]`` is a non-empty mapping. The notebook writes its section last, after
        its tables and figures, so a present section means they are there too.

    Raises
    ------
    ValueError
        For a name that is not one of the analysis notebooks (a typo in the report notebook).
    """
    section, _ = _check_notebook(notebook)
    value = res.get(section)
    return isinstance(value, dict) and bool(value)


def notebooks_run(res: dict[str, Any]) -> list[str]:
    """The analysis notebooks that ran in this run, in numbered order.

    Parameters
    ----------
    res : dict of str to object
        The run's results.json.

    Returns
    -------
    list of str
        Notebook names for which :func:`notebook_ran` is true.
    """
    return [n for n in NOTEBOOK_SECTIONS if notebook_ran(res, n)]


def _selected_text(res: dict[str, Any], prov: dict[str, Any]) -> str:
    """Which notebooks ran, as Markdown, with the config setting that chose them."""
    ran = notebooks_run(res)
    listed = ", ".join(markdown_code(n) for n in ran) if ran else "none of the analysis notebooks"
    where = "`run.notebooks` in the run config" if prov else "`run.notebooks` in the run config (or a run by hand)"
    return f"{where} selected which notebooks ran: {listed}"


def not_run_text(res: dict[str, Any], prov: dict[str, Any], notebook: str) -> str:
    """The line shown in place of a section whose notebook did not run (Markdown).

    Parameters
    ----------
    res : dict of str to object
        The run's results.json.
    prov : dict of str to object
        The run's provenance (:func:`pbc_analysis.publish.report_content.read_provenance`; {} for a run by hand).
    notebook : str
        The analysis notebook of the section.

    Returns
    -------
    str
        E.g. ``"*Not run in this run:* the referral evaluation (notebook `03_referral_evaluation`) was not
        run in this run; `run.notebooks` in the run config selected which notebooks ran: `01_data_quality`."``
    """
    _, what = _check_notebook(notebook)
    return (f"*Not run in this run:* the {what} (notebook {markdown_code(notebook)}) was not run in this run; "
            f"{_selected_text(res, prov)}.")


def missing_headlines_text(res: dict[str, Any], prov: dict[str, Any]) -> str | None:
    """What the executive summary cannot show because its notebooks did not run (Markdown), or None.

    Parameters
    ----------
    res : dict of str to object
        The run's results.json.
    prov : dict of str to object
        The run's provenance ({} for a run by hand).

    Returns
    -------
    str or None
        One sentence naming each missing headline figure and the notebook that makes it, and which
        notebooks ran; None when every headline's notebook ran.
    """
    missing = [f"{label} (notebook {markdown_code(nb)} was not run)" for label, nb in _HEADLINES
               if not notebook_ran(res, nb)]
    if not missing:
        return None
    return (f"*Not in this summary:* {'; '.join(missing)}. Only the figures of the notebooks that ran are shown; "
            f"{_selected_text(res, prov)}.")


def derived_settings_text(res: dict[str, Any]) -> str:
    """The methods section's paragraph on the settings the run derived from the data.

    Parameters
    ----------
    res : dict
        The run's ``results.json`` (its ``settings`` section, written by the runner).

    Returns
    -------
    str
        Markdown; names and values escaped.
    """
    section = res.get("settings") or {}
    derived = section.get("derived") or []
    data = section.get("data") or {}
    window = (f" The data run from {markdown_code(data.get('start_month', '?'))} to {markdown_code(data.get('end_month', '?'))}; "
              f"the first practice engaged in {markdown_code(data.get('first_engagement') or 'none')}; hospital activity is "
              f"complete to {markdown_code(data.get('activity_end', '?'))} (measured by the data-quality model).") if data else ""
    note = f" {markdown_code(data['completeness_note'])}" if data.get("completeness_note") else ""
    if not derived:
        return ("**Settings.** Every window, year and month setting was given in the config; none was derived from "
                "the data." + window + note)
    return (f"**Settings derived from the data.** {len(derived)} settings were set to `auto` (or left at their "
            "default) and derived from the validated inputs before any notebook ran, by the rules below; every "
            "cross-setting rule (base year before the first engagement, windows inside the data, complete years, "
            "enough comparison practices) was checked against the data at the same time." + window + note)


def derived_settings_table(res: dict[str, Any]) -> Any:
    """The derived settings, their values and rules, as an escaped HTML table (None when there are none).

    Parameters
    ----------
    res : dict
        The run's ``results.json``.

    Returns
    -------
    IPython.display.HTML or None
    """
    import pandas as pd

    derived = (res.get("settings") or {}).get("derived") or []
    if not derived:
        return None
    df = pd.DataFrame(derived, columns=["notebook", "setting", "value", "rule"]).astype(str)
    return html_table(df, "Settings derived from the data (value and rule)")
