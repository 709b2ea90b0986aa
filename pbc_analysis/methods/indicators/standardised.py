"""Directly and indirectly standardised rates and ratios, as PHEindicatormethods v2.1.0.

References
----------
PHEindicatormethods v2.1.0 (UKHSA): ``calculate_dsr``, ``calculate_ISRatio``, ``calculate_ISRate``.
Dobson AJ, Kuulasmaa K, Eberle E, Scherer J (1991), Confidence intervals for weighted sums of Poisson
parameters, Stat Med 10:457-462.
Breslow NE, Day NE (1987), Statistical methods in cancer research II, ch. 2 (indirect standardisation).
Eurostat (2013), Revision of the European Standard Population.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Literal

import numpy as np
import pandas as pd

from pbc_analysis.core.checks import check_choice
from pbc_analysis.methods.indicators.frames import (
    By,
    _check_equal_rows,
    _finish,
    _groupby,
    _keyed,
    _limit_columns,
    _method_column,
    _numeric,
    _require,
    _strict_sum,
)
from pbc_analysis.methods.indicators.limits import (
    EXACT_BELOW,
    ConfidenceArg,
    _confidence_label,
    _fmt_multiplier,
    byars_lower,
    byars_upper,
    confidence_levels,
    poisson_limits,
)

__all__ = ["DSR_MIN_COUNT", "ESP2013", "ESP2013_BANDS", "IsrType", "dsr", "indirectly_standardised", "isr",
           "reference_rates"]

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


#: DSRs with fewer total events are suppressed (PHE: "dsr NA for total count < 10").
DSR_MIN_COUNT = 10

#: what :func:`isr` computes: an indirectly standardised ratio or rate
IsrType = Literal["ratio", "rate"]


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

    Parameters
    ----------
    df : pandas.DataFrame
        One row per group and age band.
    x, n : hashable
        Columns of events and populations.
    stdpop : hashable or pandas.Series
        Column of weights, or weights by age band.
    by : hashable or sequence, optional
        Group columns.
    ageband : hashable, optional
        Column of age bands (with a Series ``stdpop`` or ``eventfreq``).
    multiplier : float
        Rate per this many.
    confidence : float or sequence of float
    eventfreq : hashable, optional
        Column of events per person.

    Returns
    -------
    pandas.DataFrame

    References
    ----------
    PHEindicatormethods v2.1.0 ``calculate_dsr``; Dobson et al. (1991), Stat Med 10:457-462.
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


def isr(df: pd.DataFrame, observed: Hashable, population: Hashable, *,
        ref_numerator: Hashable | None = None, ref_denominator: Hashable | None = None,
        ref_rate: Hashable | None = None, by: By = None, observed_totals: pd.DataFrame | None = None,
        type: IsrType = "ratio", refvalue: float = 1, multiplier: float = 100000,
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

    Parameters
    ----------
    df : pandas.DataFrame
        One row per group and standardisation category.
    observed, population : hashable
        Columns of observed events and local populations.
    ref_numerator, ref_denominator, ref_rate : hashable, optional
        Reference columns (a rate, or its numerator and denominator).
    by : hashable or sequence, optional
        Group columns.
    observed_totals : pandas.DataFrame, optional
        Observed events per group without a breakdown.
    type : {"ratio", "rate"}
    refvalue, multiplier : float
        Scale of a ratio and of a rate.
    confidence : float or sequence of float

    Returns
    -------
    pandas.DataFrame

    References
    ----------
    PHEindicatormethods v2.1.0 ``calculate_ISRatio``, ``calculate_ISRate``; Breslow and Day (1987), ch. 2.
    """
    levels = confidence_levels(confidence)
    check_choice("type", type, IsrType)
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

    Parameters
    ----------
    df : pandas.DataFrame
    events, population : hashable
        Columns of reference events and populations.
    by : hashable or sequence
        The standardisation categories.

    Returns
    -------
    pandas.DataFrame

    References
    ----------
    Breslow and Day (1987), ch. 2 (reference rates of indirect standardisation).
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
