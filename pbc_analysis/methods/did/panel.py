"""Checks of a difference-in-differences panel, shared by every estimator of :mod:`pbc_analysis.methods.did`.

Each check names the argument and the column (``cohort column 'g' is not constant within unit column
'unit'``) so a user can fix the data; :func:`treated_from_cohort` builds the treated-post indicator of a
staggered design from its cohorts.

References
----------
Callaway B, Sant'Anna PHC (2021). Difference-in-differences with multiple time periods. J Econometrics
225:200-230 (the cohort coding: first treated period, 0 = never treated, as R's ``did``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pbc_analysis.core.checks import check_number

__all__ = ["treated_from_cohort"]

SE_FLOOR = np.sqrt(np.finfo(float).eps) * 10  # did: se <= sqrt(.Machine$double.eps)*10 -> NA


def _require_columns(data: pd.DataFrame, columns: dict[str, str | None]) -> None:
    """Raise ``ValueError`` naming the first argument whose column is not in ``data``."""
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame, not {type(data).__name__}")
    for role, col in columns.items():
        if col is not None and col not in data.columns:
            raise ValueError(f"{role} column '{col}' is not in the data (columns: {list(data.columns)})")


def _no_missing(data: pd.DataFrame, col: str, role: str) -> None:
    n_missing = int(data[col].isna().sum())
    if n_missing:
        raise ValueError(f"{role} column '{col}' has {n_missing} missing value(s); drop or impute them first")


def _numeric(data: pd.DataFrame, col: str, role: str) -> np.ndarray:
    s = data[col]
    if not (pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype)):
        raise ValueError(f"{role} column '{col}' must be numeric (found dtype {s.dtype})")
    return s.to_numpy(dtype=float, na_value=np.nan)


def _cohort_array(data: pd.DataFrame, unit: str, cohort: str) -> np.ndarray:
    """Cohort per row as floats with never treated coded 0 (0 or missing in the data); checked constant
    within unit."""
    g = _numeric(data, cohort, "cohort")
    g = np.where(np.isnan(g), 0.0, g)
    if np.any(g < 0):
        raise ValueError(f"cohort column '{cohort}' has negative values; use 0 or missing for never treated")
    codes, _ = pd.factorize(data[unit], sort=True)
    n_units = codes.max() + 1 if len(codes) else 0
    gmin = np.full(n_units, np.inf)
    gmax = np.full(n_units, -np.inf)
    np.minimum.at(gmin, codes, g)
    np.maximum.at(gmax, codes, g)
    bad = np.flatnonzero(gmin != gmax)
    if bad.size:
        raise ValueError(
            f"cohort column '{cohort}' is not constant within unit column '{unit}' "
            f"({bad.size} unit(s) with more than one cohort)")
    return g


def _binary(data: pd.DataFrame, col: str, role: str) -> np.ndarray:
    d = _numeric(data, col, role)
    if not np.all((d == 0) | (d == 1)):
        raise ValueError(f"{role} column '{col}' must be 0/1 (or boolean)")
    return d


def _check_unique_cells(unit_codes: np.ndarray, time_codes: np.ndarray, n_times: int, unit: str,
                        time: str) -> None:
    key = np.sort(unit_codes.astype(np.int64) * n_times + time_codes)
    if np.any(key[1:] == key[:-1]):
        raise ValueError(f"more than one row for some ({unit}, {time}) pairs; the panel must have one row "
                         "per unit and period")


def treated_from_cohort(data: pd.DataFrame, time: str, cohort: str) -> pd.Series:
    """The treated-post indicator ``1{cohort > 0 and time >= cohort}`` of a staggered design.

    Parameters
    ----------
    data : pandas.DataFrame
        The panel.
    time, cohort : str
        The period column and the cohort column (first treated period; 0 or missing = never treated).

    Returns
    -------
    pandas.Series of int
        1 from the unit's cohort on, 0 before and for never-treated units; aligned with ``data``.

    References
    ----------
    Callaway B, Sant'Anna PHC (2021), J Econometrics 225:200-230 (the ``gname`` coding of R's ``did``).
    """
    _require_columns(data, {"time": time, "cohort": cohort})
    t = _numeric(data, time, "time")
    g = _numeric(data, cohort, "cohort")
    g = np.where(np.isnan(g), 0.0, g)
    return pd.Series(((g > 0) & (t >= g)).astype(int), index=data.index, name="treated")


def _check_treated_matches_cohort(data: pd.DataFrame, time: str, treated: str, cohort: str,
                                  d: np.ndarray) -> None:
    expected = treated_from_cohort(data, time, cohort).to_numpy()
    n_bad = int(np.sum(expected != d))
    if n_bad:
        raise ValueError(
            f"treated column '{treated}' is inconsistent with cohort column '{cohort}' in {n_bad} row(s): "
            f"expected {treated} = 1 exactly when {cohort} > 0 and {time} >= {cohort}")


def _inference(estimate: float, se: float, dist, confidence: float, n_obs: int, n_clusters: int) -> pd.Series:
    _check_confidence(confidence)
    crit = float(dist.ppf(1 - (1 - confidence) / 2))
    p = float(2 * dist.sf(abs(estimate / se))) if se > 0 else np.nan
    return pd.Series({"estimate": estimate, "std_error": se, "ci_low": estimate - crit * se,
                      "ci_high": estimate + crit * se, "p_value": p, "n_obs": n_obs, "n_clusters": n_clusters})


def _int_if_integral(values: np.ndarray) -> np.ndarray:
    """Periods and cohorts as integers when they are whole numbers (years, months), else floats."""
    values = np.asarray(values, dtype=float)
    if values.size and np.all(np.isfinite(values)) and np.all(values == np.round(values)):
        return values.astype(np.int64)
    return values


def _check_confidence(confidence: float) -> None:
    check_number("confidence", confidence, 0, 1, low_open=True, high_open=True)
