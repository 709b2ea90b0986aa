"""Public-health indicator methods: crude rates, proportions, means, DSRs and ISRs with confidence limits.

A vectorised port of the methods of the UKHSA R package PHEindicatormethods v2.1.0 (GPL-3; functions
``calculate_rate``/``phe_rate``, ``phe_proportion``, ``phe_mean``, ``calculate_dsr``,
``calculate_ISRatio`` and ``calculate_ISRate``, with the internal ``byars_lower``/``byars_upper`` and
``wilson_lower``/``wilson_upper``), reproducing the package's own test vectors (see
``tests/test_indicators.py``). Every function takes and returns tidy DataFrames; none loops over rows or
groups in Python.

Confidence limits
-----------------
Poisson counts ``O`` (rates, ISRs, DSRs):

* *Byar's approximation* (Breslow and Day 1987, vol. II), used from 10 events::

      lower = O * (1 - 1/(9 O) - z / (3 sqrt(O)))^3
      upper = (O + 1) * (1 - 1/(9 (O + 1)) + z / (3 sqrt(O + 1)))^3

  with ``z = Phi^-1(c + (1 - c)/2)``. A negative lower limit (tiny ``O`` at high confidence, e.g.
  ``O = 1`` at 99.8%) is returned as missing, as PHE does.
* *Exact Poisson* limits via chi-squared quantiles (Armitage and Berry 2002), used below 10 events::

      lower = chi2_{(1-c)/2}(2 O) / 2            (0 when O = 0)
      upper = chi2_{c+(1-c)/2}(2 O + 2) / 2

Proportions ``x / n``: the *Wilson score* interval (Wilson 1927; Newcombe and Altman 2000)::

      (2x + z^2 -/+ z sqrt(z^2 + 4x(1 - x/n))) / (2 (n + z^2))

Means: Student's t, ``mean -/+ |t_{(1-c)/2, k-1}| s / sqrt(k)``.

Confidence levels and column names
----------------------------------
``confidence`` is a fraction in [0.9, 1), e.g. ``0.95`` or ``0.998``, or a list/tuple of such levels
to get several intervals at once. Percentages (PHE also accepts ``95``) are rejected so that a level
is never ambiguous. Limit columns are always suffixed with the level, also for a single level:

* ``0.95``  -> ``lower_95_0``, ``upper_95_0``  (PHE: ``lowercl``/``uppercl`` for a single level,
  ``lower95_0cl``/``upper95_0cl`` when both levels are requested);
* ``0.998`` -> ``lower_99_8``, ``upper_99_8``  (PHE: ``lowercl``/``uppercl`` or ``lower99_8cl``/``upper99_8cl``);
* any other level likewise, e.g. ``0.9`` -> ``lower_90_0``, ``0.9999`` -> ``lower_99_99`` (see :func:`ci_suffix`).

Each output also carries PHE's metadata columns ``confidence`` (e.g. ``"95%, 99.8%"``), ``statistic``
(e.g. ``"rate per 100000"``) and ``method`` (``"Byars"``, ``"Exact"``, ``"Wilson"``, ``"Dobson"``, ...).

Missing values follow PHE: a crude rate or proportion with a missing numerator or denominator is
missing (and a group containing one is missing when ``by`` is given, since PHE sums without
``na.rm``); missing age-band counts in a DSR or ISR count as zero events.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "DSR_MIN_COUNT",
    "ESP2013",
    "ESP2013_BANDS",
    "EXACT_BELOW",
    "byars_lower",
    "byars_upper",
    "ci_suffix",
    "confidence_levels",
    "crude_rate",
    "dsr",
    "indirectly_standardised",
    "isr",
    "mean_ci",
    "poisson_exact_lower",
    "poisson_exact_upper",
    "poisson_limits",
    "proportion",
    "reference_rates",
    "wilson_lower",
    "wilson_upper",
]

ESP2013_BANDS: tuple[str, ...] = (
    "0-4", "5-9", "10-14", "15-19", "20-24", "25-29", "30-34", "35-39", "40-44", "45-49",
    "50-54", "55-59", "60-64", "65-69", "70-74", "75-79", "80-84", "85-89", "90+",
)
#: European Standard Population 2013 (Eurostat 2013; PHEindicatormethods ``esp2013``): 19 five-year
#: bands, total 100,000, indexed by the band labels this project's population table uses.
ESP2013: pd.Series = pd.Series(
    [5000, 5500, 5500, 5500, 6000, 6000, 6500, 7000, 7000, 7000,
     7000, 6500, 6000, 5500, 5000, 4000, 2500, 1500, 1000],
    index=pd.Index(ESP2013_BANDS, name="ageband"), name="esp2013", dtype="int64",
)

#: Counts below this use exact Poisson limits, from it Byar's (crude rates and ISRs, as PHE).
EXACT_BELOW = 10
#: DSRs with fewer total events are suppressed (PHE: "dsr NA for total count < 10").
DSR_MIN_COUNT = 10

ConfidenceArg = float | Sequence[float]
By = Hashable | Sequence[Hashable] | None


# --------------------------------------------------------------------------------------------------
# confidence levels
# --------------------------------------------------------------------------------------------------

def confidence_levels(confidence: ConfidenceArg) -> tuple[float, ...]:
    """Validate ``confidence`` (a fraction in [0.9, 1) or a list/tuple of them) and return a tuple.

    Raises ``ValueError`` for a level outside [0.9, 1) (including percentages such as ``95``), for an
    empty list and for two levels that would give the same column names.
    """
    if np.isscalar(confidence):
        levels: tuple = (confidence,)
    elif isinstance(confidence, Sequence | np.ndarray):
        levels = tuple(confidence)
    else:
        raise ValueError(f"confidence must be a fraction such as 0.95, or a list of them; got {confidence!r}")
    if not levels:
        raise ValueError("confidence must be a fraction such as 0.95, or a list of them; got an empty list")
    out = []
    for c in levels:
        if isinstance(c, bool) or not isinstance(c, (int, float, np.integer, np.floating)):
            raise ValueError(f"confidence must be a number such as 0.95 or 0.998; got {c!r}")
        c = float(c)
        if not 0.9 <= c < 1:
            hint = " (give it as a fraction, e.g. 0.95, not a percentage)" if 90 <= c <= 100 else ""
            raise ValueError(f"confidence must be a fraction between 0.9 and 1 (e.g. 0.95 or 0.998); got {c:g}{hint}")
        out.append(c)
    suffixes = [ci_suffix(c) for c in out]
    if len(set(suffixes)) != len(suffixes):
        raise ValueError(f"confidence levels must be distinct; got {list(levels)}")
    return tuple(out)


def _pct(level: float) -> str:
    """``0.95 -> '95'``, ``0.998 -> '99.8'`` (shortest decimal, as R prints ``confidence * 100``)."""
    return np.format_float_positional(round(level * 100, 10), trim="-")


def ci_suffix(level: float) -> str:
    """Column suffix of a confidence level: ``0.95 -> '95_0'``, ``0.998 -> '99_8'``, ``0.9999 -> '99_99'``."""
    p = _pct(level)
    return (p if "." in p else p + ".0").replace(".", "_")


def _confidence_label(levels: Sequence[float]) -> str:
    return ", ".join(f"{_pct(c)}%" for c in levels)


def _z(level: float) -> float:
    """Two-sided standard normal quantile, computed as PHE does: ``qnorm(c + (1 - c)/2)``."""
    return float(stats.norm.ppf(level + (1 - level) / 2))


def _fmt_multiplier(m: float) -> str:
    """``100000 -> '100000'`` (R's ``format(m, scientific = FALSE)``), ``0.5 -> '0.5'``."""
    m = float(m)
    return str(int(m)) if m.is_integer() else np.format_float_positional(m, trim="-")


def _single_level(confidence: float) -> float:
    levels = confidence_levels(confidence)
    if len(levels) != 1:
        raise ValueError("this function takes a single confidence level, e.g. 0.95")
    return levels[0]


# --------------------------------------------------------------------------------------------------
# limits on arrays
# --------------------------------------------------------------------------------------------------

def _as_float(x: object, what: str) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if np.any(arr < 0):
        raise ValueError(f"{what} must all be greater than or equal to zero")
    return arr


def _out(arr: np.ndarray, like: object) -> np.ndarray | float:
    return float(arr) if np.ndim(like) == 0 else arr


def byars_lower(x: object, confidence: float = 0.95) -> np.ndarray | float:
    """Byar's lower limit for observed Poisson counts ``x`` (Breslow and Day 1987).

    ``x * (1 - 1/(9x) - z/(3 sqrt(x)))^3`` with ``z = Phi^-1(c + (1-c)/2)``; negative results (and
    ``x = 0``) are missing, as in PHEindicatormethods' ``byars_lower``. Scalars in, float out.
    """
    z = _z(_single_level(confidence))
    arr = _as_float(x, "observed events")
    with np.errstate(divide="ignore", invalid="ignore"):
        lo = arr * (1 - 1 / (9 * arr) - z / (3 * np.sqrt(arr))) ** 3
    return _out(np.where(lo < 0, np.nan, lo), x)


def byars_upper(x: object, confidence: float = 0.95) -> np.ndarray | float:
    """Byar's upper limit ``(x+1) * (1 - 1/(9(x+1)) + z/(3 sqrt(x+1)))^3`` (Breslow and Day 1987)."""
    z = _z(_single_level(confidence))
    arr = _as_float(x, "observed events") + 1
    return _out(arr * (1 - 1 / (9 * arr) + z / (3 * np.sqrt(arr))) ** 3, x)


def poisson_exact_lower(x: object, confidence: float = 0.95) -> np.ndarray | float:
    """Exact Poisson lower limit ``chi2.ppf((1-c)/2, 2x) / 2``, 0 for ``x = 0`` (as R's ``qchisq``)."""
    c = _single_level(confidence)
    arr = _as_float(x, "observed events")
    with np.errstate(invalid="ignore"):
        lo = stats.chi2.ppf((1 - c) / 2, 2 * arr) / 2
    return _out(np.where(arr == 0, 0.0, lo), x)


def poisson_exact_upper(x: object, confidence: float = 0.95) -> np.ndarray | float:
    """Exact Poisson upper limit ``chi2.ppf(c + (1-c)/2, 2x + 2) / 2``."""
    c = _single_level(confidence)
    arr = _as_float(x, "observed events")
    return _out(stats.chi2.ppf(c + (1 - c) / 2, 2 * arr + 2) / 2, x)


def poisson_limits(x: object, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Limits for counts as PHE's rates and ISRs: exact Poisson below 10 events, Byar's from 10.

    Returns ``(lower, upper)`` arrays of counts; missing ``x`` gives missing limits.
    """
    arr = np.atleast_1d(np.asarray(x, dtype=float))
    exact = arr < EXACT_BELOW
    lower, upper = byars_lower(arr, confidence), byars_upper(arr, confidence)
    if exact.any():  # chi-squared quantiles are slow: compute them once per distinct small count
        vals, inv = np.unique(arr[exact], return_inverse=True)
        lower[exact] = np.asarray(poisson_exact_lower(vals, confidence))[inv]
        upper[exact] = np.asarray(poisson_exact_upper(vals, confidence))[inv]
    return lower, upper


def _wilson(x: object, n: object, confidence: float, sign: int) -> np.ndarray | float:
    c = _single_level(confidence)
    xa = _as_float(x, "observed events")
    na = np.asarray(n, dtype=float)
    if np.any(na < 0):
        raise ValueError("sample sizes must all be greater than or equal to zero")
    if np.any(xa > na):
        raise ValueError("numerators must be less than or equal to denominators for a Wilson score")
    z = _z(c)
    with np.errstate(divide="ignore", invalid="ignore"):
        res = (2 * xa + z**2 + sign * z * np.sqrt(z**2 + 4 * xa * (1 - xa / na))) / 2 / (na + z**2)
    return _out(res, np.broadcast(x, n))


def wilson_lower(x: object, n: object, confidence: float = 0.95) -> np.ndarray | float:
    """Wilson score lower limit of the proportion ``x/n`` (Wilson 1927; Newcombe and Altman 2000)."""
    return _wilson(x, n, confidence, -1)


def wilson_upper(x: object, n: object, confidence: float = 0.95) -> np.ndarray | float:
    """Wilson score upper limit of the proportion ``x/n`` (Wilson 1927; Newcombe and Altman 2000)."""
    return _wilson(x, n, confidence, +1)


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


def _limit_columns(levels: Sequence[float], lower: Sequence[np.ndarray], upper: Sequence[np.ndarray]) -> dict:
    cols: dict[str, np.ndarray] = {}
    for c, lo, hi in zip(levels, lower, upper):
        cols[f"lower_{ci_suffix(c)}"] = lo
        cols[f"upper_{ci_suffix(c)}"] = hi
    return cols


def _method_column(labels: np.ndarray, missing: np.ndarray, index: pd.Index) -> pd.Series:
    return pd.Series(labels, index=index, dtype="str").mask(missing)


# --------------------------------------------------------------------------------------------------
# crude rates and proportions
# --------------------------------------------------------------------------------------------------

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


def crude_rate(df: pd.DataFrame, x: Hashable, n: Hashable, multiplier: float = 1000,
               confidence: ConfidenceArg = 0.95, by: By = None) -> pd.DataFrame:
    """Crude rates ``x / n * multiplier`` with exact Poisson (x < 10) or Byar's (x >= 10) limits.

    As PHEindicatormethods v2.1.0 ``calculate_rate``/``phe_rate``: the limits are those of the count,
    divided by ``n`` and scaled, exact ``chi2_{(1-c)/2}(2x)/2`` and ``chi2_{c+(1-c)/2}(2x+2)/2`` below 10
    events and Byar's (Breslow and Day 1987) from 10. A missing numerator or denominator gives missing
    value and limits (``method`` is missing only when the numerator is). Note PHE's default multiplier is
    100000; here it is 1000.

    Without ``by`` the rows of ``df`` are returned with the results appended. With ``by`` (a column or
    list of columns), ``x`` and ``n`` are first summed within groups (a group with any missing ``x``
    or ``n`` has a missing sum, as PHE's grouped version) and one row per group is returned: the ``by``
    columns, ``x``, ``n``, ``value``, ``lower_<c>``/``upper_<c>`` per level, ``confidence``,
    ``statistic`` (``"rate per <multiplier>"``) and ``method`` (``"Exact"``/``"Byars"``).

    Raises ``ValueError`` for negative numerators or denominators <= 0, naming the column.
    """
    levels = confidence_levels(confidence)
    out, xv, nv = _counts_and_denominators(df, x, n, by)
    lowers, uppers = zip(*(poisson_limits(xv, c) for c in levels))
    scale = multiplier / nv
    result = {"value": xv * scale,
              **_limit_columns(levels, [lo * scale for lo in lowers], [hi * scale for hi in uppers])}
    for k, v in result.items():
        out[k] = v
    out["confidence"] = _confidence_label(levels)
    out["statistic"] = f"rate per {_fmt_multiplier(multiplier)}"
    out["method"] = _method_column(np.where(xv < EXACT_BELOW, "Exact", "Byars"), np.isnan(xv), out.index)
    return out


def proportion(df: pd.DataFrame, x: Hashable, n: Hashable, multiplier: float = 1,
               confidence: ConfidenceArg = 0.95, by: By = None) -> pd.DataFrame:
    """Proportions ``x / n * multiplier`` with Wilson score limits (Wilson 1927; Newcombe 1998).

    As PHEindicatormethods v2.1.0 ``phe_proportion``: limits
    ``(2x + z^2 -/+ z sqrt(z^2 + 4x(1 - x/n))) / (2(n + z^2)) * multiplier``. Missing numerator or
    denominator gives missing value and limits. ``statistic`` is ``"percentage"`` for a multiplier of
    100, else ``"proportion of <multiplier>"``; ``method`` is ``"Wilson"``. ``by`` sums within groups
    first (missing if any member is missing), as for :func:`crude_rate`; output columns likewise.

    Raises ``ValueError`` for negative numerators, denominators <= 0 or numerators above their
    denominator, naming the columns.
    """
    levels = confidence_levels(confidence)
    out, xv, nv = _counts_and_denominators(df, x, n, by)
    bad = xv > nv
    if bad.any():
        raise ValueError(f"column {x!r} (numerator) exceeds column {n!r} (denominator) in {int(bad.sum())} "
                         f"row(s){' after summing by group' if _by_list(by) else ''}; a proportion needs x <= n")
    result = {"value": xv / nv * multiplier,
              **_limit_columns(levels, [wilson_lower(xv, nv, c) * multiplier for c in levels],
                               [wilson_upper(xv, nv, c) * multiplier for c in levels])}
    for k, v in result.items():
        out[k] = v
    out["confidence"] = _confidence_label(levels)
    out["statistic"] = "percentage" if float(multiplier) == 100 else f"proportion of {_fmt_multiplier(multiplier)}"
    out["method"] = "Wilson"
    return out


# --------------------------------------------------------------------------------------------------
# means
# --------------------------------------------------------------------------------------------------

def mean_ci(df: pd.DataFrame, x: Hashable, by: By = None, confidence: ConfidenceArg = 0.95) -> pd.DataFrame:
    """Means with Student's t limits, as PHEindicatormethods v2.1.0 ``phe_mean``.

    ``value = sum / k``, limits ``value -/+ |t_{(1-c)/2, k-1}| * s / sqrt(k)`` where ``k`` is the number
    of rows and ``s`` the sample standard deviation (``ddof = 1``). As in PHE, a group with a missing
    value has missing sum, standard deviation, mean and limits (``value_count`` still counts its rows).

    Returns one row per ``by`` group (one row overall without ``by``): the ``by`` columns,
    ``value_sum``, ``value_count``, ``stdev``, ``value``, ``lower_<c>``/``upper_<c>``, ``confidence``,
    ``statistic`` (``"mean"``) and ``method`` (``"Student's t-distribution"``).
    """
    levels = confidence_levels(confidence)
    _require(df, [x])
    frame, keys_used, keys = _keyed(df, by)
    frame["__v"] = _numeric(df, x, role="values")
    g = _groupby(frame, keys_used)["__v"]
    out = pd.DataFrame({"value_sum": g.sum(), "value_count": g.size(), "stdev": g.std(ddof=1)})
    out.loc[_any_missing(frame, keys_used, ["__v"])["__v"].to_numpy(), ["value_sum", "stdev"]] = np.nan
    k = out["value_count"].to_numpy(dtype=float)
    out["value"] = out["value_sum"].to_numpy() / k
    se = out["stdev"].to_numpy() / np.sqrt(k)
    v = out["value"].to_numpy()
    with np.errstate(invalid="ignore"):
        half = [np.abs(stats.t.ppf((1 - c) / 2, k - 1)) * se for c in levels]
    for name, col in _limit_columns(levels, [v - h for h in half], [v + h for h in half]).items():
        out[name] = col
    out["confidence"] = _confidence_label(levels)
    out["statistic"] = "mean"
    out["method"] = "Student's t-distribution"
    return _finish(out, keys)


# --------------------------------------------------------------------------------------------------
# directly standardised rates
# --------------------------------------------------------------------------------------------------

def _stdpop_values(df: pd.DataFrame, stdpop: Hashable | pd.Series, ageband: Hashable | None) -> np.ndarray:
    if isinstance(stdpop, pd.Series):
        if ageband is None:
            raise ValueError("stdpop given as a Series of weights by age band needs ageband=<column of df>")
        _require(df, [ageband])
        w = df[ageband].map(stdpop)
        unknown = df.loc[w.isna(), ageband].unique().tolist()
        if unknown:
            raise ValueError(f"age bands {unknown} in column {ageband!r} are not in the stdpop index "
                             f"{stdpop.index.tolist()}")
        arr = w.to_numpy(dtype=float)
        if np.any(arr < 0):
            raise ValueError("stdpop weights must be greater than or equal to zero")
        return arr
    if isinstance(stdpop, Hashable) and stdpop in df.columns:
        return _numeric(df, stdpop, nonneg=True, no_missing=True, role="standard population")
    raise TypeError("stdpop must be a column name of df or a pandas Series of weights indexed by age band "
                    f"(e.g. ESP2013); got {stdpop!r}")


def dsr(df: pd.DataFrame, x: Hashable, n: Hashable, stdpop: Hashable | pd.Series = "esp2013", *,
        by: By = None, ageband: Hashable | None = None, multiplier: float = 100000,
        confidence: ConfidenceArg = 0.95, eventfreq: Hashable | None = None) -> pd.DataFrame:
    """Directly standardised rates with Dobson limits, as PHEindicatormethods v2.1.0 ``calculate_dsr``.

    Within each ``by`` group, with age-band events ``x_i`` (missing counted as 0), populations ``n_i``
    and standard-population weights ``w_i``::

        DSR    = sum(w_i x_i / n_i) / sum(w_i) * multiplier
        var    = sum(x_i (w_i / n_i)^2) / sum(w_i)^2
        limits = DSR + sqrt(var / O) * (L(O) - O) * multiplier

    where ``O = sum(x_i)`` and ``L`` is Byar's lower or upper limit for ``O`` (Dobson et al. 1991, with
    Byar's approximation from Breslow and Day 1987). DSRs with ``O < 10`` are unreliable and suppressed:
    value and limits missing and ``statistic`` set to ``"dsr NA for total count < 10"``.

    ``stdpop`` is a column of ``df`` holding the weights, or a Series of weights indexed by age band
    (e.g. :data:`ESP2013`) matched on the ``ageband`` column, never by position. Each group must have
    the same number of rows (PHE's check that every group covers the same categories).

    Non-independent events (``eventfreq`` given, e.g. several admissions of one person): ``x`` is then
    the number of *people* in each age band with ``eventfreq`` events each, and ``ageband`` is required.
    The variance is computed per frequency ``f`` over its rows and summed as
    ``var = sum_f f^2 * sum_i(x_if (w_i/n_i)^2) / sum_i(w_i)^2``; events ``sum_f f x_if`` per band then
    give the DSR and ``O``; method ``"Dobson, with confidence adjusted for non-independent events"``.

    Returns one row per group: the ``by`` columns, ``total_count``, ``total_pop``, ``value``,
    ``lower_<c>``/``upper_<c>``, ``confidence``, ``statistic`` (``"dsr per <multiplier>"``) and
    ``method``. Raises ``ValueError`` for negative events, populations that are missing or <= 0,
    missing or negative weights, and unequal group sizes.
    """
    levels = confidence_levels(confidence)
    _require(df, [x, n] + [c for c in (ageband, eventfreq) if c is not None])
    frame, keys_used, keys = _keyed(df, by)
    x0 = np.nan_to_num(_numeric(df, x, nonneg=True, role="numerator (events)"), nan=0.0)
    nv = _numeric(df, n, positive=True, no_missing=True, role="denominator (population)")
    w = _stdpop_values(df, stdpop, ageband)
    frame["__n"], frame["__w"] = nv, w
    frame["__sq"] = x0 * (w / nv) ** 2

    if eventfreq is None:
        method = "Dobson"
        _check_equal_rows(frame, keys_used, "group")
        frame["__x"], frame["__wt"] = x0, x0 * w / nv
        agg = _groupby(frame, keys_used)[["__x", "__n", "__wt", "__w", "__sq"]].sum()
        vardsr = (agg["__sq"] / agg["__w"] ** 2).to_numpy()
    else:
        method = "Dobson, with confidence adjusted for non-independent events"
        if ageband is None:
            raise ValueError("dsr with eventfreq (non-independent events) needs ageband=<column of df>")
        if df[ageband].isna().any():
            raise ValueError(f"column {ageband!r} (age band) must not have missing values")
        freq = _numeric(df, eventfreq, positive=True, no_missing=True, role="event frequency")
        frame["__f"], frame["__band"] = freq, df[ageband]
        _check_equal_rows(frame, keys_used + ["__f"], "group and event frequency")
        by_band = _groupby(frame, keys_used + ["__band"])
        if (by_band["__n"].nunique() > 1).any() or (by_band["__w"].nunique() > 1).any():
            raise ValueError("rows with the same groups and age band must share the population "
                             f"({n!r}) and standard population")
        per_freq = _groupby(frame, keys_used + ["__f"])[["__sq", "__w"]].sum().reset_index()
        per_freq["__var"] = per_freq["__sq"] / per_freq["__w"] ** 2 * per_freq["__f"] ** 2
        frame["__ev"] = freq * x0
        bands = by_band.agg(__x=("__ev", "sum"), __n=("__n", "first"), __w=("__w", "first")).reset_index()
        bands["__wt"] = bands["__x"] * bands["__w"] / bands["__n"]
        agg = _groupby(bands, keys_used)[["__x", "__n", "__wt", "__w"]].sum()
        vardsr = _groupby(per_freq, keys_used)["__var"].sum().reindex(agg.index).to_numpy()

    total = agg["__x"].to_numpy()
    value = agg["__wt"].to_numpy() / agg["__w"].to_numpy() * multiplier
    with np.errstate(divide="ignore", invalid="ignore"):
        sd_per_event = np.sqrt(vardsr / total)
        lowers = [value + sd_per_event * (byars_lower(total, c) - total) * multiplier for c in levels]
        uppers = [value + sd_per_event * (byars_upper(total, c) - total) * multiplier for c in levels]
    suppressed = total < DSR_MIN_COUNT
    out = pd.DataFrame({"total_count": total, "total_pop": agg["__n"].to_numpy(),
                        "value": value, **_limit_columns(levels, lowers, uppers)}, index=agg.index)
    out.loc[suppressed, [c for c in out.columns if c not in ("total_count", "total_pop")]] = np.nan
    out["confidence"] = _confidence_label(levels)
    out["statistic"] = np.where(suppressed, f"dsr NA for total count < {DSR_MIN_COUNT}",
                                f"dsr per {_fmt_multiplier(multiplier)}")
    out["method"] = method
    return _finish(out, keys)


# --------------------------------------------------------------------------------------------------
# indirectly standardised ratios and rates
# --------------------------------------------------------------------------------------------------

def isr(df: pd.DataFrame, observed: Hashable, population: Hashable, *,
        ref_numerator: Hashable | None = None, ref_denominator: Hashable | None = None,
        ref_rate: Hashable | None = None, by: By = None, observed_totals: pd.DataFrame | None = None,
        type: Literal["ratio", "rate"] = "ratio", refvalue: float = 1, multiplier: float = 100000,
        confidence: ConfidenceArg = 0.95) -> pd.DataFrame:
    """Indirectly standardised ratios or rates, as PHEindicatormethods v2.1.0 ``calculate_ISRatio``
    and ``calculate_ISRate``.

    Within each ``by`` group, with local populations ``n_i`` by band (missing counted as 0) and
    reference band rates ``r_i`` (``ref_rate``, or ``ref_numerator / ref_denominator`` with a missing
    numerator counted as 0)::

        E = sum(r_i * n_i)                      expected events
        O = sum(observed_i)                     observed events (missing counted as 0)
        ratio: value = O / E * refvalue,  limits = L(O) / E * refvalue
        rate:  value = O / E * R,         limits = L(O) / E * R,
               R = sum(ref_numerator) / sum(ref_denominator) * multiplier   (column ``ref_rate``)

    where ``L`` gives exact Poisson limits (chi-squared quantiles) when ``O < 10`` and Byar's
    (Breslow and Day 1987) from 10. Rows with zero population simply add nothing to ``E``. A group with
    ``E = 0`` has missing value and limits.

    Reference values are columns of ``df`` (merge a reference table onto it by band first, e.g. the
    output of :func:`reference_rates`). ``type="rate"`` needs ``ref_numerator`` and ``ref_denominator``,
    since the overall reference rate cannot be recovered from band rates alone.

    ``observed_totals``: observed events without an age breakdown (PHE's ``observed_totals``), a
    DataFrame with the ``by`` columns and the ``observed`` column, one row per group; ``df`` then needs
    no ``observed`` column. Groups without a total get missing results.

    Returns one row per group: the ``by`` columns, ``observed``, ``expected``, ``ref_rate`` (rates
    only), ``value``, ``lower_<c>``/``upper_<c>``, ``confidence``, ``statistic``
    (``"indirectly standardised ratio x <refvalue>"`` or ``"indirectly standardised rate per
    <multiplier>"``) and ``method`` (``"Exact"``/``"Byars"``).
    """
    levels = confidence_levels(confidence)
    if type not in ("ratio", "rate"):
        raise ValueError(f"type must be 'ratio' or 'rate'; got {type!r}")
    if ref_rate is not None and (ref_numerator is not None or ref_denominator is not None):
        raise ValueError("give either ref_rate or ref_numerator and ref_denominator, not both")
    if ref_rate is None and (ref_numerator is None or ref_denominator is None):
        raise ValueError("isr needs reference data: ref_rate, or both ref_numerator and ref_denominator")
    if type == "rate" and ref_rate is not None:
        raise ValueError("type='rate' needs ref_numerator and ref_denominator: the rate is scaled by the overall "
                         "reference rate sum(ref_numerator) / sum(ref_denominator), which band rates do not give")

    _require(df, [population])
    frame, keys_used, keys = _keyed(df, by)
    pop = np.nan_to_num(_numeric(df, population, nonneg=True, role="population"), nan=0.0)
    if ref_rate is not None:
        _require(df, [ref_rate])
        band_rate = np.nan_to_num(_numeric(df, ref_rate, nonneg=True, role="reference rate"), nan=0.0)
    else:
        _require(df, [ref_numerator, ref_denominator])
        frame["__rn"] = _numeric(df, ref_numerator, nonneg=True, role="reference numerator")
        frame["__rd"] = _numeric(df, ref_denominator, positive=True, no_missing=True, role="reference denominator")
        band_rate = np.nan_to_num(frame["__rn"].to_numpy(), nan=0.0) / frame["__rd"].to_numpy()
    frame["__exp"] = band_rate * pop
    cols = ["__exp"] + (["__rn", "__rd"] if ref_rate is None else [])
    if observed_totals is None:
        _require(df, [observed])
        frame["__obs"] = _numeric(df, observed, nonneg=True, role="observed events")
        cols.append("__obs")
    agg = _groupby(frame, keys_used)[cols].sum()

    if observed_totals is not None:
        _require(observed_totals, keys + [observed], "observed_totals")
        obs = _numeric(observed_totals, observed, nonneg=True, role="observed events")
        if keys:
            tot = observed_totals[keys].assign(__obs=obs)
            if tot.duplicated(keys).any():
                raise ValueError(f"observed_totals must have one row per group of {keys}")
            agg = agg.reset_index().merge(tot, on=keys, how="left").set_index(keys)
        elif len(obs) != 1:
            raise ValueError("without by, observed_totals must have exactly one row")
        else:
            agg["__obs"] = obs[0]

    o = agg["__obs"].to_numpy(dtype=float)
    e = agg["__exp"].to_numpy(dtype=float)
    out = pd.DataFrame({"observed": o, "expected": e}, index=agg.index)
    if type == "rate":
        out["ref_rate"] = agg["__rn"].to_numpy() / agg["__rd"].to_numpy() * multiplier
        factor = out["ref_rate"].to_numpy()
        statistic = f"indirectly standardised rate per {_fmt_multiplier(multiplier)}"
    else:
        factor = np.full(len(out), float(refvalue))
        statistic = f"indirectly standardised ratio x {_fmt_multiplier(refvalue)}"
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(e > 0, factor / e, np.nan)
    limits = [poisson_limits(o, c) for c in levels]
    out["value"] = o * scale
    for name, col in _limit_columns(levels, [lo * scale for lo, _ in limits], [hi * scale for _, hi in limits]).items():
        out[name] = col
    out["confidence"] = _confidence_label(levels)
    out["statistic"] = statistic
    out["method"] = _method_column(np.where(o < EXACT_BELOW, "Exact", "Byars"), np.isnan(o), out.index)
    return _finish(out, keys)


#: Long-form alias of :func:`isr`.
indirectly_standardised = isr


def reference_rates(df: pd.DataFrame, events: Hashable, population: Hashable,
                    by: By = ("ageband", "sex")) -> pd.DataFrame:
    """Reference rates by standardisation category (e.g. age band and sex) from a tidy table.

    Sums ``events`` and ``population`` within ``by`` (over areas, years, ...; a category with any
    missing value has a missing sum) and returns the ``by`` columns, ``ref_numerator``,
    ``ref_denominator`` and ``ref_rate = ref_numerator / ref_denominator`` (missing when the
    denominator is 0). Merge the result onto local data by the same columns and pass
    ``ref_numerator="ref_numerator", ref_denominator="ref_denominator"`` to :func:`isr`.
    """
    _require(df, [events, population])
    frame, keys_used, keys = _keyed(df, by)
    frame["ref_numerator"] = _numeric(df, events, nonneg=True, role="reference events")
    frame["ref_denominator"] = _numeric(df, population, nonneg=True, role="reference population")
    out = _strict_sum(frame, keys_used, ["ref_numerator", "ref_denominator"])
    den = out["ref_denominator"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        out["ref_rate"] = np.where(den > 0, out["ref_numerator"].to_numpy() / den, np.nan)
    return _finish(out, keys)
