"""What the funnel methods share: their choice types, the normal quantiles, R's rounding and the input checks.

References
----------
R Core Team, ``src/nmath/fround.c`` (R >= 4.0.0 rounding, reproduced by :func:`r_round`).
FunnelPlotR v0.6.0 (nhs-r-community, MIT): the truncated normal quantiles of ``compat="funnelplotr"``.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from pbc_analysis.core.checks import check_number

__all__ = ["EXACT_Z", "FUNNELPLOTR_Z", "STANDARD_LEVELS", "AutoRule", "DataType", "Overdispersion", "RateType", "RatioType",
           "Side", "SrMethod", "Statistic", "TrimMethod", "check_counts", "check_positive", "check_trim_by", "column",
           "level_tag", "r_round", "z_of_level"]

Statistic = Literal["proportion", "ratio", "rate"]
DataType = Literal["SR", "PR", "RC"]
Overdispersion = Literal["none", "phi", "tau2", "auto"]
SrMethod = Literal["SHMI", "CQC"]
AutoRule = Literal["test", "funnelplotr"]
RateType = Literal["dsr", "crude"]
RatioType = Literal["count", "isr"]
Side = Literal["low", "high"]
TrimMethod = Literal["winsorisation", "truncation"]

#: FunnelPlotR's hard-coded normal quantiles (used only with ``compat="funnelplotr"``).
FUNNELPLOTR_Z = {95: 1.959964, 99: 3.090232}
#: Exact two-sided normal quantiles for 95% and 99.8% limits.
EXACT_Z = {95: float(stats.norm.ppf(0.975)), 99: float(stats.norm.ppf(0.999))}
#: the two conventional funnel levels: level -> (lower tail probability, upper tail probability, normal quantile)
STANDARD_LEVELS = {0.95: (0.025, 0.975, EXACT_Z[95]), 0.998: (0.001, 0.999, EXACT_Z[99])}


def level_tag(level: float) -> str:
    """The column tag of a funnel level: ``0.95 -> "95"``, ``0.998 -> "998"``, ``0.9 -> "90"``.

    Parameters
    ----------
    level : float
        A two-sided level in (0, 1).

    Returns
    -------
    str

    References
    ----------
    The 95% / 99.8% column names of FunnelPlotR v0.6.0 (``ll95``, ``ul998``), extended to any level.
    """
    pct = np.format_float_positional(round(level * 100, 10), trim="-")
    return pct.replace(".", "")


def z_of_level(level: float) -> tuple[float, float, float]:
    """The tail probabilities and normal quantile of a two-sided level (exactly as before for 95% and 99.8%).

    Parameters
    ----------
    level : float
        In (0, 1).

    Returns
    -------
    lower_p, upper_p, z : float
        ``(1 - level) / 2``, ``1 - (1 - level) / 2`` and the standard normal quantile of ``upper_p``.

    References
    ----------
    Spiegelhalter DJ (2005), Funnel plots for comparing institutional performance, Stat Med 24:1185-1202.
    """
    if level in STANDARD_LEVELS:
        return STANDARD_LEVELS[level]
    lo = (1 - level) / 2
    return lo, 1 - lo, float(stats.norm.ppf(1 - lo))


def check_trim_by(trim_by: float) -> float:
    """Refuse a trimming share outside (0, 0.5).

    Parameters
    ----------
    trim_by : float
        The share of units trimmed at each end.

    Returns
    -------
    float
        ``trim_by``, unchanged.

    Raises
    ------
    pbc_analysis.core.checks.ArgumentError
        A ``ValueError`` naming the allowed range.

    References
    ----------
    Spiegelhalter (2005), s. 3.3 (trimming at 10% each end; a share of 0.5 or more would leave nothing).
    """
    return check_number("trim_by", trim_by, 0.0, 0.5, low_open=True, high_open=True)


def r_round(x: Any, digits: int = 0) -> np.ndarray:
    """R's ``round(x, digits)`` (R >= 4.0.0, src/nmath/fround.c), vectorised.

    R rounds the *binary* value: it takes the two decimal candidates either side of ``x`` and keeps
    the nearer one, breaking exact ties to the even last digit. So ``round(101.475, 2)`` is 101.47
    (101.475 is stored as 101.47499999...), and ``round(0.125, 2)`` is 0.12. FunnelPlotR rounds
    expected counts to 2 decimals this way for the SHMI method.

    Parameters
    ----------
    x : array_like
    digits : int
        Decimals kept.

    Returns
    -------
    numpy.ndarray

    References
    ----------
    R Core Team, ``src/nmath/fround.c`` (R >= 4.0.0).
    """
    x = np.asarray(x, dtype=float)
    p10 = 10.0 ** digits
    sign = np.sign(x)
    ax = np.abs(x)
    x10 = p10 * ax
    i10 = np.floor(x10)
    xd = i10 / p10
    xu = np.ceil(x10) / p10
    du = xu - ax
    dd = ax - xd
    odd = np.mod(i10, 2.0) == 1.0
    out = np.where((du < dd) | ((du == dd) & odd), xu, xd)
    return np.where(np.isfinite(x), sign * out, x)


# ------------------------------------------------------------------------------------------------
# Checks of the input columns
# ------------------------------------------------------------------------------------------------
def column(data: pd.DataFrame, name: str | None, role: str) -> np.ndarray:
    """Column ``name`` of ``data`` as floats (a ``ValueError`` naming the column and its role when absent or not numeric).

    Parameters
    ----------
    data : pandas.DataFrame
    name : str or None
        The column (None: not given).
    role : str
        What the column is, for the message ("numerator", "denominator", ...).

    Returns
    -------
    numpy.ndarray

    References
    ----------
    PHEindicatormethods v2.1.0 and FunnelPlotR v0.6.0 (their argument checks, whose messages these follow).
    """
    if name is None:
        raise ValueError(f"the {role} column must be given")
    if name not in data.columns:
        raise ValueError(f"column {name!r} ({role}) not found; columns are {list(data.columns)}")
    try:
        return pd.to_numeric(data[name], errors="raise").to_numpy(dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"column {name!r} ({role}) must be numeric: {err}") from err


def check_counts(values: np.ndarray, name: str) -> None:
    """Refuse missing, negative or infinite counts (naming the first rows).

    Parameters
    ----------
    values : numpy.ndarray
    name : str
        What they are, for the message.

    Returns
    -------
    None

    References
    ----------
    PHEindicatormethods v2.1.0 (``numerators must be greater than or equal to zero``).
    """
    if np.isnan(values).any():
        rows = np.flatnonzero(np.isnan(values))[:5].tolist()
        raise ValueError(f"{name} has missing values (rows {rows})")
    if (values < 0).any():
        rows = np.flatnonzero(values < 0)[:5].tolist()
        raise ValueError(f"{name} must be greater than or equal to zero; negative at rows {rows}")
    if np.isinf(values).any():
        raise ValueError(f"{name} must be finite")


def check_positive(values: np.ndarray, name: str) -> None:
    """Refuse missing, zero, negative or infinite denominators (naming the first rows).

    Parameters
    ----------
    values : numpy.ndarray
    name : str
        What they are, for the message.

    Returns
    -------
    None

    References
    ----------
    PHEindicatormethods v2.1.0 (``denominators must be greater than zero``).
    """
    if np.isnan(values).any():
        rows = np.flatnonzero(np.isnan(values))[:5].tolist()
        raise ValueError(f"{name} has missing values (rows {rows})")
    if (values <= 0).any():
        rows = np.flatnonzero(values <= 0)[:5].tolist()
        raise ValueError(f"{name} must be greater than zero (zero or negative at rows {rows})")
    if np.isinf(values).any():
        raise ValueError(f"{name} must be finite")


# ------------------------------------------------------------------------------------------------
