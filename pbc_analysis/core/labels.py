"""Codes in words: measures and points of delivery ("follow-up outpatient attendances", never ``followup_op``).

The data's codes (``pbc_analysis.data.MEASURES``: GP referrals and the points of delivery) are for programs;
a page a person reads names them in words. :data:`MEASURE_LABELS` is the one list; :func:`measure_label`
never returns a code with an underscore, whatever it is given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["MEASURE_LABELS", "measure_label", "specialty_label"]

#: measure / point-of-delivery code -> words (lower case, for use inside a sentence or a table cell)
MEASURE_LABELS: dict[str, str] = {
    "referrals": "GP referrals",
    "gp_referral": "GP referrals",
    "gp_referrals": "GP referrals",
    "planned": "planned care (outpatients and elective admissions)",
    "first_op": "first outpatient attendances",
    "followup_op": "follow-up outpatient attendances",
    "elective": "elective admissions",
    "non_elective": "non-elective (emergency) admissions",
    "ae": "A&E attendances",
    "all": "all points of delivery",
}


def measure_label(code: Any, capital: bool = False) -> str:
    """A measure or point of delivery in words.

    Parameters
    ----------
    code : object
        The code (``"followup_op"``); an unknown code is returned with underscores as spaces.
    capital : bool
        Start with a capital letter (for a heading or the first cell of a row).

    Returns
    -------
    str

    References
    ----------
    NHS Data Dictionary, "Point of delivery" (the commissioning data sets' activity types).
    """
    text = MEASURE_LABELS.get(str(code), str(code).replace("_", " "))
    return text[:1].upper() + text[1:] if capital and text else text


def specialty_label(code: Any, names: Mapping[str, str]) -> str:
    """A specialty as ``"<name> (<code>)"`` from the specialties table's names; ``"all specialties"`` for ``all``.

    Parameters
    ----------
    code : object
        A treatment-function code (``"110"``) or ``"all"``.
    names : mapping of str to str
        Code -> name (the ``specialties`` table).

    Returns
    -------
    str
        The name with its code in brackets, or ``"specialty <code>"`` when the name is unknown.

    References
    ----------
    NHS Data Dictionary, "Treatment function code".
    """
    c = str(code)
    if c == "all":
        return "all specialties"
    name = str(names.get(c, "")).strip()
    return f"{name} ({c})" if name else f"specialty {c}"
