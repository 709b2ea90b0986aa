"""The DataFrame plumbing the indicators share: required columns, numeric checks, strict grouped sums.

References
----------
PHEindicatormethods v2.1.0 (UKHSA): its argument checks and its grouped sums without ``na.rm``, followed here.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pbc_analysis.methods.indicators.limits import ci_suffix

By = Hashable | Sequence[Hashable] | None

# --------------------------------------------------------------------------------------------------
# DataFrame helpers
# --------------------------------------------------------------------------------------------------

def _by_list(by: By) -> list[Hashable]:
    if by is None:
        return []
    if isinstance(by, (str, bytes)) or not isinstance(by, Sequence):
        return [by]
    return list(by)


def _require(df: pd.DataFrame, cols: Sequence[Hashable], what: str = "data") -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise KeyError(f"column(s) {missing} not found in {what}; it has {list(df.columns)}")


def _numeric(df: pd.DataFrame, col: Hashable, *, nonneg: bool = False, positive: bool = False,
             no_missing: bool = False, role: str = "values") -> np.ndarray:
    """Column ``col`` as a float array, checked; errors name the column and its role."""
    s = df[col]
    if not (pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)):
        raise TypeError(f"column {col!r} ({role}) must be numeric; it has dtype {s.dtype}")
    arr = s.to_numpy(dtype=float, na_value=np.nan)
    if no_missing and np.isnan(arr).any():
        raise ValueError(f"column {col!r} ({role}) has {int(np.isnan(arr).sum())} missing value(s); none are allowed")
    if positive and np.any(arr <= 0):
        raise ValueError(f"column {col!r} ({role}) must be greater than zero; "
                         f"{int((arr <= 0).sum())} value(s) are not")
    if nonneg and np.any(arr < 0):
        raise ValueError(f"column {col!r} ({role}) must be greater than or equal to zero; "
                         f"{int((arr < 0).sum())} value(s) are negative")
    return arr


def _groupby(frame: pd.DataFrame, keys: list[Hashable]):
    return frame.groupby(keys, sort=True, dropna=False, observed=True)


def _any_missing(frame: pd.DataFrame, keys: list[Hashable], cols: list[Hashable]) -> pd.DataFrame:
    """Per group and column: does any member have a missing value?"""
    flags = pd.concat([frame[keys], frame[cols].isna()], axis=1)
    return _groupby(flags, keys)[cols].any()


def _strict_sum(frame: pd.DataFrame, keys: list[Hashable], cols: list[Hashable]) -> pd.DataFrame:
    """Group sums that are missing when any member is missing (R's ``sum`` without ``na.rm``)."""
    sums = _groupby(frame[keys + cols], keys)[cols].sum()
    return sums.mask(_any_missing(frame, keys, cols))


def _keyed(df: pd.DataFrame, by: By) -> tuple[pd.DataFrame, list[Hashable], list[Hashable]]:
    """An empty frame on ``df``'s index holding the ``by`` columns (or one constant key when None).

    Returns the frame, the keys to group on and the user's ``by`` keys (empty when None).
    """
    keys = _by_list(by)
    _require(df, keys)
    frame = df[keys].copy() if keys else pd.DataFrame({"__all": np.zeros(len(df), dtype=int)}, index=df.index)
    return frame, (keys or ["__all"]), keys


def _finish(out: pd.DataFrame, keys: list[Hashable]) -> pd.DataFrame:
    out = out.reset_index()
    return out.drop(columns="__all") if not keys else out


def _check_equal_rows(frame: pd.DataFrame, keys: list[Hashable], what: str) -> None:
    sizes = _groupby(frame, keys).size()
    if sizes.nunique() > 1:
        raise ValueError(f"every {what} must have the same number of rows (one per standardisation category); "
                         f"found group sizes {sorted(sizes.unique().tolist())}")


def _limit_columns(levels: Sequence[float], lower: Sequence[Any], upper: Sequence[Any]) -> dict:
    cols: dict[str, np.ndarray] = {}
    for c, lo, hi in zip(levels, lower, upper):
        cols[f"lower_{ci_suffix(c)}"] = lo
        cols[f"upper_{ci_suffix(c)}"] = hi
    return cols


def _method_column(labels: np.ndarray, missing: np.ndarray, index: pd.Index) -> pd.Series:
    return pd.Series(labels, index=index, dtype="str").mask(missing)


def _row_or_grouped(df: pd.DataFrame, x: Hashable, n: Hashable, by: By) -> pd.DataFrame:
    keys = _by_list(by)
    if not keys:
        return df.copy()
    _require(df, keys)
    return _strict_sum(df, keys, [x, n]).reset_index()


def _counts_and_denominators(df: pd.DataFrame, x: Hashable, n: Hashable,
                             by: By) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Check a numerator (``x`` >= 0) and denominator (``n`` > 0) column, sum them within ``by`` groups
    (:func:`_row_or_grouped`) and return the table with both as float arrays (missing as NaN)."""
    _require(df, [x, n])
    _numeric(df, x, nonneg=True, role="numerator")
    _numeric(df, n, positive=True, role="denominator")
    out = _row_or_grouped(df, x, n, by)
    return out, out[x].to_numpy(dtype=float, na_value=np.nan), out[n].to_numpy(dtype=float, na_value=np.nan)
