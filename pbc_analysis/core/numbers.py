"""Numbers in words: p-values printed one way in every sentence and table.

A p-value below 0.001 is printed as "p < 0.001", never rounded to "0.00"; one that could not be computed
(null or NaN) is said to be so, never printed as a number. The report's text and its tables call these same
functions, so a sentence and the cell it speaks of show the same figure.
"""

from __future__ import annotations

import math
from typing import Any

#: below this a p-value is printed as "< 0.001" (the convention of the BMJ and the Lancet)
P_FLOOR = 0.001
NOT_COMPUTED = "not computable"


def _finite(value: Any) -> float | None:
    """``value`` as a finite float, or None when it is null, NaN, infinite or not a number."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def gbp_text(value: Any) -> str:
    """An amount of money as a table cell: whole pounds with thousands separators, "" when missing.

    Parameters
    ----------
    value : object
        GBP (NaN, None or not a number: "").

    Returns
    -------
    str

    References
    ----------
    GOV.UK style guide, "Money" (figures with commas, no pence for whole-pound tables).
    """
    v = _finite(value)
    return "" if v is None else f"{v:,.0f}"


def p_value(p: Any) -> str:
    """A p-value as printed in a table cell: ``"< 0.001"``, ``"0.004"``, ``"0.38"``, or ``"not computable"``.

    Parameters
    ----------
    p : float or None
        The p-value (null or NaN when the test could not be computed).

    Returns
    -------
    str
        Below :data:`P_FLOOR`: ``"< 0.001"``; below 0.01: three decimals; otherwise two decimals (so 0.001028
        prints as ``"0.001"``, never ``"0.00"``).

    References
    ----------
    BMJ statistical guidance: report exact p-values to two significant figures, and p < 0.001 below that.
    """
    v = _finite(p)
    if v is None:
        return NOT_COMPUTED
    if v < P_FLOOR:
        return f"< {P_FLOOR:g}"
    return f"{v:.3f}" if v < 0.01 else f"{v:.2f}"


def p_text(p: Any) -> str:
    """A p-value as written in a sentence: ``"p < 0.001"``, ``"p = 0.38"`` or ``"p not computable"``.

    Parameters
    ----------
    p : float or None
        The p-value.

    Returns
    -------
    str
        :func:`p_value` with ``p`` in front (``"p = "`` unless it is below the floor).

    References
    ----------
    As :func:`p_value`.
    """
    cell = p_value(p)
    if cell == NOT_COMPUTED:
        return "p " + NOT_COMPUTED
    return "p " + cell if cell.startswith("<") else "p = " + cell

