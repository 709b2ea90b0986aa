"""Statistical disclosure control for counts published below national level.

The rule (NHS Digital, Secondary Care Analysis: "Disclosure control methodology for Hospital
Episode Statistics (HES) and Emergency Care Data Set (ECDS)", applied from September 2018 and
described in the HES Analysis Guide,
https://digital.nhs.uk/data-and-information/data-tools-and-services/data-services/hospital-episode-statistics/change-to-disclosure-control-methodology-for-hes-and-ecds-from-september-2018
; see also ../shared/DOMAIN.md, "Publishing rules"):

* a count of **0** is shown as ``0``;
* counts **1 to 7** are suppressed and shown as ``"*"``;
* every other count is **rounded to the nearest 5** (a count ending in 2.5 cannot occur, so
  "nearest" is unambiguous for the default base 5; for an even base the tie is rounded **up**,
  e.g. 15 -> 20 with ``round_to=10``): 8 -> 10, 12 -> 10, 13 -> 15, 1000 -> 1000;
* percentages and rates that are simple ratios are computed from the **rounded** counts, and are
  suppressed when an input is suppressed (:func:`disclose_table`);
* totals are calculated from the unrounded counts and rounded independently
  (:func:`round_total`), so they need not equal the sum of the rounded rows: say so in the table
  footnote (:data:`TOTALS_FOOTNOTE`).

Modelled outputs (standardised ratios, confidence intervals, regression estimates) are exempt and
must not be passed through these functions. Values that do not relate to individuals (a count of
practices, a published registered-list size) need no control either: see ``public_columns``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

__all__ = [
    "ROUND_TO",
    "SUPPRESSED",
    "SUPPRESS_MAX",
    "TOTALS_FOOTNOTE",
    "disclose_counts",
    "disclose_table",
    "disclosure_footnote",
    "round_total",
]

SUPPRESS_MAX = 7
ROUND_TO = 5
SUPPRESSED = "*"


def disclosure_footnote(suppress_max: int = SUPPRESS_MAX, round_to: int = ROUND_TO) -> str:
    """The standard footnote for a table published under the rule with these thresholds."""
    return (
        f"To protect patient confidentiality, counts from 1 to {suppress_max} are suppressed "
        f"(shown as {SUPPRESSED}) and all other counts are rounded to the nearest {round_to}; "
        f"0 means none. Percentages and rates are calculated from the rounded counts. Totals are "
        f"calculated from unrounded counts and rounded independently, so they may not equal the "
        f"sum of the rounded figures shown. (NHS Digital HES/ECDS disclosure control.)"
    )


TOTALS_FOOTNOTE = disclosure_footnote()


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def _check_thresholds(suppress_max: int, round_to: int) -> None:
    if isinstance(suppress_max, bool) or not isinstance(suppress_max, numbers.Integral) or suppress_max < 0:
        raise ValueError(f"suppress_max must be an integer >= 0, got {suppress_max!r}")
    if isinstance(round_to, bool) or not isinstance(round_to, numbers.Integral) or round_to < 1:
        raise ValueError(f"round_to must be an integer >= 1, got {round_to!r}")
    # The smallest count that is published must not round to 0 (0 must mean "none").
    if 2 * (suppress_max + 1) < round_to:
        raise ValueError(
            f"suppress_max={suppress_max} with round_to={round_to} would publish a count of "
            f"{suppress_max + 1} as 0, indistinguishable from a true zero; raise suppress_max to at "
            f"least {math.ceil(round_to / 2) - 1}"
        )


def _round_half_up(n: int, base: int) -> int:
    """Nearest multiple of ``base`` to the non-negative integer ``n``; ties go up."""
    return (2 * n + base) // (2 * base) * base


def _is_missing(v: object) -> bool:
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _as_count(v: object) -> int | None:
    """``v`` as a Python int if it is a non-negative whole number, else None (invalid)."""
    if isinstance(v, (bool, np.bool_)):
        return None
    if isinstance(v, numbers.Integral):
        return int(v) if int(v) >= 0 else None
    if isinstance(v, numbers.Real):
        f = float(v)
        if math.isfinite(f) and f >= 0 and f.is_integer():
            return int(f)
    return None


def _as_number(v: object) -> float | None:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        return None
    return float(v)


def _describe_positions(bad: list[tuple[int, object, object]], what: str, name: object = None) -> str:
    shown = ", ".join(f"{pos} (index {label!r}: {value!r})" for pos, label, value in bad[:10])
    more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
    where = f" in {name!r}" if name is not None else ""
    return f"{what}{where} at position(s) {shown}{more}"


# --------------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------------
def disclose_counts(values, suppress_max: int = SUPPRESS_MAX, round_to: int = ROUND_TO) -> pd.Series:
    """Apply the NHS Digital disclosure rule to counts; return an ``object`` Series.

    Rule (NHS Digital HES/ECDS disclosure control methodology, 2018; HES Analysis Guide):

    * ``0`` stays ``0``;
    * ``1`` .. ``suppress_max`` (default 7) become ``"*"``;
    * anything larger is rounded to the nearest multiple of ``round_to`` (default 5), ties
      rounded up. Counts are whole numbers, so with ``round_to=5`` there are no ties:
      ``8 -> 10``, ``12 -> 10``, ``13 -> 15``, ``1000 -> 1000``; with ``round_to=10``,
      ``15 -> 20``.
    * missing values (``None``, ``NaN``, ``pd.NA``) stay missing (``pd.NA`` in the result).

    ``values`` may be a Series (index and name are kept), a list, a tuple or a 1-d array.
    Published values are Python ``int`` or the string ``"*"``.

    Raises ``ValueError`` naming the 0-based positions (and index labels) of any negative,
    fractional, infinite, boolean or non-numeric input, and for thresholds that would let a small
    count round to 0 (``2 * (suppress_max + 1) < round_to``).
    """
    _check_thresholds(suppress_max, round_to)
    if isinstance(values, pd.Series):
        s = values
    elif isinstance(values, (str, bytes, pd.DataFrame)) or (
        isinstance(values, np.ndarray) and values.ndim != 1
    ):
        raise ValueError("disclose_counts expects a 1-dimensional sequence of counts")
    else:
        s = pd.Series(list(values), dtype=object)

    out: list[object] = []
    bad: list[tuple[int, object, object]] = []
    for pos, (label, v) in enumerate(zip(s.index, s.array, strict=True)):
        if _is_missing(v):
            out.append(pd.NA)
            continue
        n = _as_count(v)
        if n is None:
            bad.append((pos, label, v))
            out.append(pd.NA)
        elif n == 0:
            out.append(0)
        elif n <= suppress_max:
            out.append(SUPPRESSED)
        else:
            out.append(_round_half_up(n, round_to))
    if bad:
        raise ValueError(
            _describe_positions(bad, "counts must be non-negative whole numbers; got invalid values", s.name)
        )
    return pd.Series(out, index=s.index, name=s.name, dtype=object)


def round_total(value, round_to: int = ROUND_TO, *, suppress_max: int = SUPPRESS_MAX):
    """Disclose a total (row/column/grand total) independently of its components.

    Pass the total of the **unrounded** counts; it is published under the same rule as any count
    (0 -> 0; 1..``suppress_max`` -> ``"*"``; otherwise the nearest multiple of ``round_to``, ties
    up), so it generally differs from the sum of the rounded components. Print
    :data:`TOTALS_FOOTNOTE` under such a table. Missing -> ``pd.NA``. E.g. components 12 and 13
    publish as 10 and 15, their total 25 as 25; components 9, 9, 9 publish as 10, 10, 10, their
    total 27 as 25.
    """
    return disclose_counts([value], suppress_max=suppress_max, round_to=round_to).iloc[0]


def disclose_table(
    df: pd.DataFrame,
    count_columns: Iterable[str],
    ratio_columns: Mapping[str, tuple[str, str, float]] | None = None,
    *,
    suppress_max: int = SUPPRESS_MAX,
    round_to: int = ROUND_TO,
    public_columns: Iterable[str] = (),
    ratio_decimals: int | None = None,
) -> pd.DataFrame:
    """Return a copy of ``df`` ready to publish: counts disclosed, simple ratios recomputed.

    * Every column in ``count_columns`` goes through :func:`disclose_counts` (0 stays 0, 1..7 ->
      ``"*"``, otherwise rounded to the nearest 5) and becomes an ``object`` column.
    * ``ratio_columns`` maps an output column name (new, or an existing column to overwrite) to
      ``(numerator_column, denominator_column, multiplier)``; the value is
      ``rounded_numerator / rounded_denominator * multiplier`` (multiplier 100 for a percentage,
      1000 for a rate per 1,000, ...), i.e. computed from the **rounded** counts as the NHS Digital
      rule requires, never from the raw ones. It is ``"*"`` when the numerator or denominator is
      suppressed, missing (``pd.NA``) when either is missing or the denominator is 0; otherwise a
      float, rounded to ``ratio_decimals`` places if given. (Rounding both inputs can move a
      percentage past 100: 13 of 12 publishes as 15 / 10 = 150%. That is the rule's known cost.)
    * Ratio inputs must be disclosed count columns, or be listed in ``public_columns``: columns
      that do not relate to individuals or are already public (e.g. a practice's published
      registered-list size) and are used as they are. Anything else raises ``ValueError`` so a
      ratio can never be computed from an undisclosed count by mistake.
    * Other columns are copied unchanged; ``df`` itself is not modified.

    Only simple ratios belong here: modelled outputs (standardised ratios, confidence intervals,
    regression estimates) are exempt from the rule and must not be recomputed.
    """
    count_columns = list(dict.fromkeys(count_columns))
    public_columns = list(dict.fromkeys(public_columns))
    ratio_columns = dict(ratio_columns or {})
    missing = [c for c in count_columns + public_columns if c not in df.columns]
    if missing:
        raise ValueError(f"columns not in the table: {missing}")
    both = sorted(set(count_columns) & set(public_columns))
    if both:
        raise ValueError(f"columns cannot be both counts and public: {both}")
    for name, spec in ratio_columns.items():
        if not (isinstance(spec, tuple) and len(spec) == 3):
            raise ValueError(f"ratio column {name!r}: expected (numerator, denominator, multiplier), got {spec!r}")
        num, den, mult = spec
        for col in (num, den):
            if col not in count_columns and col not in public_columns:
                raise ValueError(
                    f"ratio column {name!r}: input {col!r} is neither a disclosed count column nor a "
                    f"public column; ratios must be computed from rounded counts"
                )
        if name in count_columns:
            raise ValueError(f"ratio column {name!r} would overwrite a count column")
        if isinstance(mult, bool) or not isinstance(mult, numbers.Real) or not math.isfinite(mult):
            raise ValueError(f"ratio column {name!r}: multiplier must be a finite number, got {mult!r}")

    if ratio_decimals is not None and (
        isinstance(ratio_decimals, bool) or not isinstance(ratio_decimals, numbers.Integral)
    ):
        raise ValueError(f"ratio_decimals must be an integer or None, got {ratio_decimals!r}")

    out = df.copy()
    for col in count_columns:
        out[col] = disclose_counts(df[col], suppress_max=suppress_max, round_to=round_to)

    for name, (num, den, mult) in ratio_columns.items():
        values = [
            _ratio(n, d, mult, ratio_decimals)
            for n, d in zip(out[num].array, out[den].array, strict=True)
        ]
        out[name] = pd.Series(values, index=out.index, dtype=object)
    return out


def _ratio(n: object, d: object, mult: float, decimals: int | None) -> object:
    if (isinstance(n, str) and n == SUPPRESSED) or (isinstance(d, str) and d == SUPPRESSED):
        return SUPPRESSED  # an input was suppressed
    if _is_missing(n) or _is_missing(d):
        return pd.NA
    if _as_number(n) is None or _as_number(d) is None:
        raise ValueError(f"ratio inputs must be numbers, got {n!r} / {d!r}")
    n, d = float(n), float(d)  # type: ignore[arg-type]  # checked numbers just above
    if d == 0:
        return pd.NA
    value = n / d * float(mult)
    return round(value, decimals) if decimals is not None else value
