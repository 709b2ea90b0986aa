"""The payment schedule: every engaged practice's saving, the gates it passed, and what is payable, with reasons.

Read from the attribution's ``att_sharing`` table (nothing is recomputed): one row per engaged practice for the
evaluation year with its attributed practice-action saving and interval, the basis of payment (the estimate or
the lower end of its interval), each eligibility gate and whether it passed (a budget to measure against, spend
below it, not held for under-referral review, no rise in emergency admissions or A&E attendances (the safety
check), a positive saving, the minimum payment), whether the saving is
recurrent, the split between the practice and the PCT, the settlement (final, or provisional while the year's
latest months are lag-adjusted) and the reason in words.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from IPython.display import HTML

from pbc_analysis.core.numbers import gbp_text as _gbp
from pbc_analysis.publish import results
from pbc_analysis.publish.markdown import html_table as _table


def _basis_label(basis: str) -> str:
    """The sharing setting ``basis`` in words."""
    return "lower end of interval" if basis == "ci_low" else "point estimate"


def _yes_no(flags: Any) -> Any:
    return np.where(flags, "yes", "no")


def _safety_cells(s: pd.DataFrame) -> Any:
    """The safety gate in words: no rise, or a rise that holds the saving (or was cleared by review)."""
    if "emergency_rise_flag" not in s.columns:
        return "not checked"
    rise = s["emergency_rise_flag"].astype(bool)
    return np.select([rise & s["reviewed"].astype(bool), rise], ["rise, cleared by review", "rise: held"], "no rise")


def schedule_frame(sharing: pd.DataFrame, basis: str = "estimate", min_payment: float = 0.0) -> pd.DataFrame:
    """The payment schedule of one year as a table of text cells (one row per practice, largest payment first).

    Parameters
    ----------
    sharing : pandas.DataFrame
        Rows of ``att_sharing`` for one financial year.
    basis : str
        The sharing setting ``basis`` (``estimate`` or ``ci_low``), named in the basis column.
    min_payment : float
        The sharing setting ``min_payment`` (GBP), for the minimum-payment gate.

    Returns
    -------
    pandas.DataFrame
        Text cells: practice, saving and interval, basis, each gate, recurrent, eligible, to the practice, to
        the PCT, settlement, status and reason.

    References
    ----------
    Audit Commission (2007), Putting commissioning into practice, chapter 4 (resources freed up; the practice's
    share); DOMAIN.md "Budgets".
    """
    s = sharing.sort_values(["to_practice", "practice_code"], ascending=[False, True])
    has_budget = s["budget"].notna()
    below = s["status"] == "below minimum payment"
    return pd.DataFrame({
        "Practice": s["practice_code"] + " " + s["practice_name"].fillna(""),
        "Practice-action saving (95% CI)": [f"{_gbp(v)} ({_gbp(lo)} to {_gbp(hi)})" for v, lo, hi in
                                            zip(s["practice_action_savings"], s["savings_ci_low"], s["savings_ci_high"])],
        "Interval excludes zero": _yes_no(s["savings_ci_low"] > 0),
        f"Attributed ({_basis_label(basis)})": s["attributed"].map(_gbp),
        "Budget": np.where(has_budget, "supplied", "none"),
        "Spend below budget": np.where(has_budget & (s["underspend"] > 0), "yes, by " + s["underspend"].map(_gbp), "no"),
        "Review gate (benchmarking flag)": np.select([s["status"] == "held for review", s["reviewed"].astype(bool)],
                                                     ["held", "cleared"], "not flagged"),
        "Safety check (emergencies against expected)": _safety_cells(s),
        "Saving positive": _yes_no(s["attributed"] > 0),
        f"Minimum payment (GBP {min_payment:,.0f})": np.select([below, s["to_practice"] > 0], ["not reached", "reached"], ""),
        "Recurrent": _yes_no(s["recurrent"].astype(bool)),
        "Eligible": s["eligible"].map(_gbp), "Payable to practice": s["to_practice"].map(_gbp),
        "To the PCT": s["to_pct"].map(_gbp), "Settlement": s["settlement"], "Status": s["status"],
        "Reason": s["reason"]})


def payment_schedule_table(run_dir: str | Path, year: str | None = None) -> HTML:
    """The payment schedule of the evaluation year (or ``year``) for the report, with its settlement note.

    Parameters
    ----------
    run_dir : str or Path
        The run directory.
    year : str, optional
        A financial year of ``att_sharing`` (default: the latest).

    Returns
    -------
    IPython.display.HTML

    References
    ----------
    As :func:`schedule_frame`.
    """
    sh = results.read_table(run_dir, "att_sharing")
    year = year or sorted(sh["financial_year"].astype(str).unique())[-1]
    y = sh[sh["financial_year"].astype(str) == year]
    settings = ((results.read_results(run_dir).get("attribution") or {}).get("sharing") or {})
    basis, minimum = str(settings.get("basis", "estimate")), float(settings.get("min_payment", 0.0))
    provisional = bool((y["settlement"] == "provisional").any())
    note = (f"Payments are measured on each practice's {_basis_label(basis)}"
            f"; a practice's share below GBP {minimum:,.0f} is not paid and stays with the PCT. "
            + ("Provisional: the year's latest months were scaled up for the data lag; settle when the data are "
               "complete." if provisional else "Final: every month of the year is complete."))
    return _table(schedule_frame(y, basis, minimum),
                  f"Payment schedule, {year}: every engaged practice (GBP; savings are modelled estimates)", note=note)
