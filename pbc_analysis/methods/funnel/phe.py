"""PHE / Fingertips funnels: control limits and significance as PHEindicatormethods v2.1.0 computes them.

:func:`funnel_limits` and :func:`assign_funnel_significance` reproduce ``calculate_funnel_limits`` and
``assign_funnel_significance`` of PHEindicatormethods v2.1.0 (UKHSA/DHSC, GPL-3; R/Funnels.R and R/utils.R),
following the Fingertips technical guidance: proportions with Wilson-score limits, ratios (``ratio_type``
``"count"`` or ``"isr"``) and rates (``rate_type`` ``"crude"`` or ``"dsr"``) with exact Poisson limits found by
bisection, at 95% ("2 sigma", probabilities 0.025/0.975) and 99.8% ("3 sigma", 0.001/0.999).
:func:`funnel_points` is PHE's ``calculate_funnel_points`` (rate and annual population of each unit, for
plotting units on a rate funnel). R's quirks that move PHE's axis (``nchar`` of doubles, ``signif.floor``,
``signif.ceiling``) are reproduced so that its published vectors are matched row for row.

References
----------
PHEindicatormethods v2.1.0 (UKHSA/DHSC), R/Funnels.R and R/utils.R.
Public Health England (2018), Fingertips technical guidance: funnel plots.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import special, stats

from pbc_analysis.core.checks import check_choice, check_number
from pbc_analysis.methods.funnel.common import RateType, RatioType, Side, Statistic, check_counts, check_positive, column

__all__ = ["DSR_NOT_APPLICABLE", "SIGNIFICANCE_LEVELS", "assign_funnel_significance", "funnel_limits", "funnel_points",
           "funnel_ratio_interval", "phe_poisson_probability", "poisson_funnel", "wilson_funnel_limit"]

SIGNIFICANCE_LEVELS = ["High (0.001)", "High (0.025)", "Low (0.001)", "Low (0.025)", "Not significant"]
DSR_NOT_APPLICABLE = "Not applicable for events less than 10 for dsrs"
TableType = Literal["full", "standard"]


# ------------------------------------------------------------------------------------------------
# R emulation helpers (PHE's axis)
# ------------------------------------------------------------------------------------------------
def _r_nchar_number(v: float) -> int:
    """``nchar(v)`` for a non-negative whole number stored as an R double.

    ``nchar`` formats doubles with ``as.character``, which switches to scientific notation when that
    is strictly shorter (``scipen = 0``): ``nchar(1e5)`` is 5 ("1e+05") but ``nchar(120000)`` is 6.
    PHEindicatormethods' axis rounding (``signif.floor``/``signif.ceiling``) depends on this.
    """
    if v == 0:
        return 1
    digits = str(int(v))
    sig = digits.rstrip("0")
    exponent = len(digits) - 1
    mantissa = 1 if len(sig) == 1 else len(sig) + 1
    sci_width = mantissa + 2 + max(2, len(str(exponent)))
    return len(digits) if len(digits) <= sci_width else sci_width


def _signif_floor(x: float, percentage_down: float = 0.95) -> float:
    """PHE ``signif.floor``: round ``x * 0.95`` down to its leading digit (0 stays 0)."""
    if x == 0:
        return 0.0
    n = _r_nchar_number(math.floor(x * percentage_down)) - 1
    return math.floor(x * percentage_down / 10**n) * 10**n


def _signif_ceiling(x: float, percentage_up: float = 1.05) -> float:
    """PHE ``signif.ceiling``: round ``x * 1.05`` up to its two leading digits (0 stays 0)."""
    if x == 0:
        return 0.0
    n = _r_nchar_number(math.ceil(x * percentage_up)) - 2
    return math.ceil(x * percentage_up / 10.0**n) * 10.0**n


# ------------------------------------------------------------------------------------------------
# Limits and probabilities
# ------------------------------------------------------------------------------------------------
def wilson_funnel_limit(p: float, population: Any, average_proportion: float, side: str,
                        multiplier: float = 100.0) -> np.ndarray:
    """PHE ``sigma_adjustment``: the Wilson-score control limit for a proportion.

    With ``z = qnorm(p)``, ``n`` the population and ``a`` the average proportion, the limit is
    ``(A -/+ sqrt(B)/8) / C / n * multiplier`` where ``A = a (n/z^2 + 1)``,
    ``C = 1/z^2 + 1/n`` and ``B = (8 a (n/z^2 + 1))^2 - 64 C a (n (a (n/z^2 + 2) - 1) + z^2 (a - 1))``
    (PHEindicatormethods R/utils.R; the proportion whose Wilson interval just reaches the average).

    Parameters
    ----------
    p : float
        The probability of the limit (0.975 for 2 sigma, 0.999 for 3 sigma).
    population : array_like
        Denominators ``n``.
    average_proportion : float
        The target ``a`` (a fraction).
    side : {"low", "high"}
    multiplier : float
        Scale of the result (100: per cent).

    Returns
    -------
    numpy.ndarray

    References
    ----------
    PHEindicatormethods v2.1.0, R/utils.R ``sigma_adjustment``; Wilson EB (1927), JASA 22:209-212.
    """
    check_choice("side", side, Side)
    n = np.asarray(population, dtype=float)
    z2 = stats.norm.ppf(p) ** 2
    first = average_proportion * (n / z2 + 1)
    adj = np.sqrt((-8 * average_proportion * (n / z2 + 1)) ** 2
                  - 64 * (1 / z2 + 1 / n) * average_proportion
                  * (n * (average_proportion * (n / z2 + 2) - 1) + z2 * (average_proportion - 1)))
    last = 1 / z2 + 1 / n
    out = (first - adj / 8) / last if side == "low" else (first + adj / 8) / last
    return out / n * multiplier


def phe_poisson_probability(mean: Any, x_a: Any, x_b: Any) -> np.ndarray:
    """PHE ``poisson_cis(z, x_a, x_b)``: ``P(x_a <= X <= x_b)`` for ``X ~ Poisson(mean)``, as PHE sums it.

    PHE (R/utils.R) adds the terms ``z^k/k!`` from ``k = 0`` and stops at the first ``K > z`` whose
    term is at most 1e-10 times the running total, returning the in-range share of the *truncated*
    sum: ``(F(min(x_b, K-1)) - F(x_a - 1)) / F(K - 1)`` with ``F`` the Poisson cdf. The dropped tail
    (a few 1e-10) matters: it moves the last bisection step of :func:`poisson_funnel` for some counts
    (e.g. 328 events at p = 0.001), so it is reproduced here in closed form, vectorised, with ``K``
    found on a grid of candidates above ``z``.

    Parameters
    ----------
    mean : array_like
        Poisson means ``z``.
    x_a, x_b : array_like
        The range of counts (inclusive; ``x_b`` may be very large for an upper tail).

    Returns
    -------
    numpy.ndarray

    References
    ----------
    PHEindicatormethods v2.1.0, R/utils.R ``poisson_cis``.
    """
    z = np.atleast_1d(np.asarray(mean, dtype=float))
    x_a = np.broadcast_to(np.asarray(x_a, dtype=float), z.shape)
    x_b = np.broadcast_to(np.asarray(x_b, dtype=float), z.shape)
    k0 = np.floor(z) + 1  # the first k with k > z
    log_threshold = np.log(1e-10)

    def stops(k: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            log_term = k * np.log(z) - z - special.gammaln(k + 1)
            return log_term <= log_threshold + np.log(special.pdtr(k - 1, z))

    # beyond z the condition is monotone in k: integer bisection for the first k that stops
    lo = k0 - 1  # never a stopping point (k must exceed z)
    hi = k0 + np.ceil(10 * np.sqrt(z) + 40)
    if not stops(hi).all():  # pragma: no cover - the bracket is wide enough by construction
        raise RuntimeError("PHE Poisson summation: stopping point not found")
    while (hi - lo > 1).any():
        mid = np.floor((lo + hi) / 2)
        ok = (mid >= k0) & stops(mid)
        hi = np.where(ok, mid, hi)
        lo = np.where(ok, lo, mid)
    big_k = hi
    tail = special.pdtrc(big_k - 1, z)  # mass dropped by PHE's summation

    def cdf(k: np.ndarray) -> np.ndarray:
        return np.where(k < 0, 0.0, special.pdtr(np.maximum(k, 0), z))

    def sf(k: np.ndarray) -> np.ndarray:
        return np.where(k < 0, 1.0, special.pdtrc(np.maximum(k, 0), z))

    inside = cdf(np.minimum(x_b, big_k - 1)) - cdf(x_a - 1)
    # for a lower bound only (x_b at or beyond the stop) use survival functions to keep precision
    inside = np.where(x_b >= big_k - 1, sf(x_a - 1) - tail, inside)
    return inside / (1 - tail)


def poisson_funnel(obs: Any, p: float, side: str) -> np.ndarray:
    """PHE ``poisson_funnel``: the Poisson mean at which ``obs`` events sit on a control limit.

    ``side="low"``: the mean ``m`` with ``P(X >= obs | m) = p`` (upper limit for the expected count);
    ``side="high"``: the mean with ``P(X <= obs | m) = p``. As PHEindicatormethods (R/utils.R, from
    the Fingertips Excel macro) the root is found by bisection on ``v`` in ``m = (1 + obs) v/(1 - v)``
    from ``v = dv = 0.5``, halving ``dv`` while it exceeds 1e-7 (23 steps), with PHE's truncated
    Poisson sums (:func:`phe_poisson_probability`). The result therefore differs from the closed-form
    chi-squared quantile (``chi2_p(2 obs)/2`` and ``chi2_{1-p}(2 obs + 2)/2``) by up to about 5e-5
    relative at 1 event, and reproduces PHE's own output to its printed precision.

    Parameters
    ----------
    obs : array_like
        Observed events.
    p : float
        The tail probability of the limit (0.025, 0.001, ...).
    side : {"low", "high"}

    Returns
    -------
    numpy.ndarray
        The Poisson mean of each ``obs``.

    References
    ----------
    PHEindicatormethods v2.1.0, R/utils.R ``poisson_funnel`` (from the Fingertips Excel macro).
    """
    obs = np.asarray(obs, dtype=float)
    check_choice("side", side, Side)
    v = np.full(obs.shape, 0.5)
    dv = 0.5
    while dv > 1e-7:
        dv /= 2
        mean = (1 + obs) * v / (1 - v)
        if side == "low":
            prob = phe_poisson_probability(mean, obs, 1e10)  # P(obs <= X)
            v = np.where(prob > p, v - dv, v + dv)
        else:
            prob = phe_poisson_probability(mean, 0.0, obs)  # P(X <= obs)
            v = np.where(prob < p, v - dv, v + dv)
    return (1 + obs) * v / (1 - v)


def _axis(axis_minimum: float, axis_maximum: float, offset_shift: int, n_points: int) -> np.ndarray:
    """PHE's geometric axis: ``x_j = max(round((max/x_{j-1})^(1/(n+1-offset)) x_{j-1}), x_{j-1} + 1)``.

    ``offset = j`` for proportions and rates, ``j - 1`` for ratios (so a ratio axis stops short of the
    maximum, as in PHE). ``round`` is R's (half to even, as numpy's ``rint``).
    """
    first = [max(1.0, float(axis_minimum))]
    for j in range(2, n_points + 1):
        prev = first[-1]
        offset = j - offset_shift
        step = float(np.rint((axis_maximum / prev) ** (1 / (n_points + 1 - offset)) * prev))
        first.append(max(step, prev + 1))
    return np.asarray(first)


def _derived_denominator(numerator: np.ndarray, rate: np.ndarray, denominator: np.ndarray | None,
                         rate_type: str, multiplier: float) -> np.ndarray:
    """PHE's ``denominator_derived`` for rates: ``multiplier * O / rate``.

    DSR: missing where O = 0. Crude: the given denominator where O = 0 (required then).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        derived = multiplier * numerator / rate
    zero = numerator == 0
    if rate_type == "dsr":
        return np.where(zero, np.nan, derived)
    if zero.any():
        if denominator is None:
            raise ValueError("for rates, where there are 0 events for a record, the denominator field "
                             "needs to be provided using the denominator argument")
        return np.where(zero, denominator, derived)
    return derived


def funnel_limits(data: pd.DataFrame, numerator: str, denominator: str | None = None, *,
                  statistic: Statistic, multiplier: float, rate: str | None = None,
                  ratio_type: RatioType | None = None, rate_type: RateType | None = None,
                  years_of_data: float | None = None, n_points: int = 100, type: TableType = "full") -> pd.DataFrame:
    """Funnel control-limit lines as PHEindicatormethods v2.1.0 ``calculate_funnel_limits``.

    Axis (R/Funnels.R): from the unit denominators ``d`` (for rates the derived denominator
    ``multiplier O / rate``, missing for DSRs with O = 0; for ratios the expected counts) the axis runs
    from ``max(1, signif.floor(min d))`` -- or 1 when ``max d > 2 min d`` -- to
    ``signif.ceiling(max d)`` (``0.95 min`` rounded down to one significant figure; ``1.05 max``
    rounded up to two, with R's ``nchar`` quirks), over ``n_points`` geometric steps (see
    :func:`_axis`). For rates the axis is per year (divided by, then multiplied by ``years_of_data``)
    and converted to events by ``floor``/``ceiling`` of ``axis * average``.

    Limits at each axis point:

    * ``"proportion"``: Wilson limits (:func:`wilson_funnel_limit`) at p = 0.975 (2 sigma) and 0.999
      (3 sigma) around ``sum O / sum d``, clamped to ``[0, 100]`` as PHE (PHE clamps at 100 whatever
      the multiplier); columns ``Population, lower_2s_limit, upper_2s_limit, lower_3s_limit,
      upper_3s_limit, baseline``.
    * ``"ratio"``: axis of observed events ``O``; the expected counts putting ``O`` on a limit
      (:func:`poisson_funnel`) and the ratio limits ``O / E``, minus 1 for ``ratio_type="count"`` or
      times 100 for ``"isr"``; columns ``Observed_events, lower_2s_exp_events, lower_2s_limit,
      upper_2s_exp_events, upper_2s_limit, lower_3s_exp_events, lower_3s_limit, upper_3s_exp_events,
      upper_3s_limit`` (PHE returns no baseline for ratios: it is 0 for counts, 100 for ISRs).
    * ``"rate"``: axis of events; ``*_population_1_year = poisson_funnel(O) / average / years`` and
      ``*_limit = O / (population) * multiplier``; columns ``Events, lower_2s_population_1_year,
      lower_2s_limit, upper_2s_population_1_year, upper_2s_limit, lower_3s_..., upper_3s_...,
      baseline``.

    ``type="full"`` adds ``statistic`` (e.g. ``"rate (dsr per 100,000)"``) and ``method``
    (``"Wilson"`` or ``"Poisson"``).

    Parameters
    ----------
    data : pandas.DataFrame
        One row per unit.
    numerator, denominator : str
        Columns of events and of denominators (expected counts for ratios; optional for rates, where it is
        needed only for units with no events).
    statistic : {"proportion", "ratio", "rate"}
    multiplier : float
        Scale of the indicator (100 for a percentage, 100000 for a rate per 100,000, 1 for a ratio).
    rate : str, optional
        Column of the units' rates (rates only).
    ratio_type : {"count", "isr"}, optional
        Ratios only.
    rate_type : {"dsr", "crude"}, optional
        Rates only.
    years_of_data : float, optional
        Rates only: years the rates cover.
    n_points : int
        Points of the axis (at least 2).
    type : {"full", "standard"}
        ``"full"`` adds the ``statistic`` and ``method`` columns.

    Returns
    -------
    pandas.DataFrame
        One row per axis point (columns as above).

    References
    ----------
    PHEindicatormethods v2.1.0, R/Funnels.R ``calculate_funnel_limits``; Public Health England (2018),
    Fingertips technical guidance: funnel plots.
    """
    check_choice("statistic", statistic, Statistic)
    check_choice("type", type, TableType)
    if multiplier is None:
        raise ValueError(f"multiplier is required for {statistic} funnels")
    check_number("n_points", n_points, 2, integer=True)
    num, derived = _funnel_denominators(data, numerator, denominator, statistic, multiplier, rate, ratio_type,
                                        rate_type, years_of_data)
    x, av = _funnel_axis(num, derived, statistic, years_of_data, n_points)
    out = _limit_lines(x, av, statistic, multiplier, ratio_type, years_of_data)
    if type == "full":
        if statistic == "ratio":
            label = f"ratio ({ratio_type})"
        elif statistic == "rate":
            label = f"rate ({rate_type} per {_format_multiplier(multiplier)})"
        else:
            label = "proportion"
        out["statistic"] = label
        out["method"] = "Wilson" if statistic == "proportion" else "Poisson"
    return out


def _funnel_denominators(data: pd.DataFrame, numerator: str, denominator: str | None, statistic: str,
                         multiplier: float, rate: str | None, ratio_type: str | None, rate_type: str | None,
                         years_of_data: float | None) -> tuple[np.ndarray, np.ndarray]:
    """The checked numerators and the denominators of the axis (derived ones for rates)."""
    num = column(data, numerator, "numerator")
    check_counts(num, "numerators")
    den = column(data, denominator, "denominator") if denominator is not None else None
    if statistic == "rate":
        if rate is None or rate_type is None or years_of_data is None:
            raise ValueError("the following arguments are required for rates: data, numerator, rate, "
                             "rate_type, multiplier, years_of_data")
        check_choice("rate_type", rate_type, RateType)
        if (num == 0).any() and den is None:
            raise ValueError("for rates, where there are 0 events for a record, the denominator field "
                             "needs to be provided using the denominator argument")
        return num, _derived_denominator(num, column(data, rate, "rate"), den, rate_type, multiplier)
    if den is None:
        raise ValueError(f"a denominator column is required for {statistic} funnels")
    check_positive(den, "denominators")
    if statistic == "ratio":
        check_choice("ratio_type", ratio_type, RatioType)
    if statistic == "proportion" and (num > den).any():
        raise ValueError("numerators must be less than or equal to denominator for a proportion statistic")
    return num, den


def _funnel_axis(num: np.ndarray, derived: np.ndarray, statistic: str, years_of_data: float | None,
                 n_points: int) -> tuple[np.ndarray, float]:
    """PHE's axis (see :func:`funnel_limits`) and the average ``sum O / sum d``."""
    av = num.sum() / np.nansum(derived)
    min_d, max_d = np.nanmin(derived), np.nanmax(derived)
    years = float(years_of_data) if years_of_data is not None else 1.0
    if max_d > 2 * min_d:
        axis_minimum = 0.0
    elif statistic == "rate":
        axis_minimum = _signif_floor(min_d / years) * years
    else:
        axis_minimum = _signif_floor(min_d)
    if statistic == "rate":
        axis_maximum = _signif_ceiling(max_d / years) * years
        axis_minimum = math.floor(axis_minimum * av)
        axis_maximum = math.ceil(axis_maximum * av)
    else:
        axis_maximum = _signif_ceiling(max_d)
    return _axis(axis_minimum, axis_maximum, 1 if statistic == "ratio" else 0, n_points), float(av)


def _limit_lines(x: np.ndarray, av: float, statistic: str, multiplier: float, ratio_type: str | None,
                 years_of_data: float | None) -> pd.DataFrame:
    """The 2- and 3-sigma limits at each axis point (columns as :func:`funnel_limits` describes)."""
    sides = {"2s": 0.025, "3s": 0.001}
    years = 1.0 if years_of_data is None else float(years_of_data)
    if statistic == "proportion":
        out = pd.DataFrame({"Population": x})
        for name, p in (("2s", 0.975), ("3s", 0.999)):
            out[f"lower_{name}_limit"] = np.maximum(0.0, wilson_funnel_limit(p, x, av, "low", multiplier))
            out[f"upper_{name}_limit"] = np.minimum(100.0, wilson_funnel_limit(p, x, av, "high", multiplier))
        out = out[["Population", "lower_2s_limit", "upper_2s_limit", "lower_3s_limit", "upper_3s_limit"]]
        out["baseline"] = av * multiplier
    elif statistic == "ratio":
        out = pd.DataFrame({"Observed_events": x})
        for name, p in sides.items():
            for bound, side in (("lower", "high"), ("upper", "low")):
                exp_events = poisson_funnel(x, p, side)
                limit = x / exp_events
                limit = limit - 1 if ratio_type == "count" else limit * 100
                out[f"{bound}_{name}_exp_events"] = exp_events
                out[f"{bound}_{name}_limit"] = limit
    else:
        out = pd.DataFrame({"Events": x})
        for name, p in sides.items():
            for bound, side in (("lower", "high"), ("upper", "low")):
                population = poisson_funnel(x, p, side) / av
                out[f"{bound}_{name}_population_1_year"] = population / years
                out[f"{bound}_{name}_limit"] = x / population * multiplier
        out["baseline"] = av * multiplier
    return out


def _format_multiplier(multiplier: float) -> str:
    """R ``format(m, big.mark = ",", scientific = FALSE)`` for the statistic label."""
    if float(multiplier).is_integer():
        return f"{int(multiplier):,}"
    return f"{multiplier:,}"


def funnel_ratio_interval(obs: Any, expected: Any, confidence: float, side: str) -> np.ndarray:
    """PHE ``funnel_ratio_significance``: one end of the confidence interval of ``obs / expected``.

    Exact (chi-squared) below 10 events -- lower ``qchisq((1-c)/2, 2 O)/2``, upper
    ``qchisq((1+c)/2, 2 O + 2)/2`` (lower end 0 when O = 0) -- and Byar's approximation from 10:
    lower ``O (1 - 1/(9 O) - z/(3 sqrt O))^3``, upper ``(O+1) (1 - 1/(9(O+1)) + z/(3 sqrt(O+1)))^3``
    with ``z = qnorm((1+c)/2)``; divided by ``expected``. ``side="low"`` gives the lower end.

    Parameters
    ----------
    obs, expected : array_like
        Observed and expected events.
    confidence : float
        Two-sided level, e.g. 0.95.
    side : {"low", "high"}

    Returns
    -------
    numpy.ndarray

    References
    ----------
    PHEindicatormethods v2.1.0, R/utils.R ``funnel_ratio_significance``; Breslow NE, Day NE (1987), Statistical
    methods in cancer research II, ch. 2 (Byar's approximation).
    """
    check_choice("side", side, Side)
    obs = np.asarray(obs, dtype=float)
    expected = np.asarray(expected, dtype=float)
    q = 0.5 + confidence / 2
    z = stats.norm.ppf(q)
    with np.errstate(divide="ignore", invalid="ignore"):
        if side == "low":
            exact = stats.chi2.isf(q, 2 * obs) / 2
            byars = obs * (1 - 1 / (9 * obs) - z / 3 / np.sqrt(obs)) ** 3
            value = np.where(obs == 0, 0.0, np.where(obs < 10, exact, byars))
        else:
            exact = stats.chi2.ppf(q, 2 * obs + 2) / 2
            o1 = obs + 1
            byars = o1 * (1 - 1 / (9 * o1) + z / 3 / np.sqrt(o1)) ** 3
            value = np.where(obs < 10, exact, byars)
        return value / expected


def assign_funnel_significance(data: pd.DataFrame, numerator: str, denominator: str | None = None, *,
                               statistic: Statistic, rate: str | None = None, rate_type: RateType | None = None,
                               multiplier: float | None = None) -> pd.DataFrame:
    """Each unit's significance against the funnel, as PHEindicatormethods ``assign_funnel_significance``.

    Returns a copy of ``data`` with a categorical ``significance`` column, levels
    ``High (0.001), High (0.025), Low (0.001), Low (0.025), Not significant`` (plus
    ``Not applicable for events less than 10 for dsrs`` for DSRs), checked in that order:

    * proportion ``O/n`` against the Wilson limits at the unit's own ``n`` around ``sum O / sum n``
      (strictly below the 0.999-low limit is ``Low (0.001)``, and so on);
    * ratio: ``High`` when the 99.8% (95%) interval of ``O/E`` (:func:`funnel_ratio_interval`) lies
      wholly above 1, ``Low`` when wholly below;
    * rate: the same interval for ``O / d`` with ``d = O / rate * multiplier`` (the given denominator
      where O = 0 for crude rates, missing for DSRs) against ``sum O / sum d``; DSRs with fewer than
      10 events are ``Not applicable``.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per unit.
    numerator, denominator : str
        Columns of events and denominators (expected counts for ratios; for rates only needed where O = 0).
    statistic : {"proportion", "ratio", "rate"}
    rate : str, optional
        Column of the units' rates (rates only).
    rate_type : {"dsr", "crude"}, optional
        Rates only.
    multiplier : float, optional
        Scale of the rates (rates only).

    Returns
    -------
    pandas.DataFrame
        ``data`` with ``significance``.

    References
    ----------
    PHEindicatormethods v2.1.0, R/Funnels.R ``assign_funnel_significance``.
    """
    num, d = _significance_inputs(data, numerator, denominator, statistic, rate, rate_type, multiplier)
    levels = list(SIGNIFICANCE_LEVELS)
    if statistic == "proportion":
        den = d
        average = num.sum() / den.sum()
        value = num / den
        conditions = [
            value < wilson_funnel_limit(0.999, den, average, "low", 1),
            value < wilson_funnel_limit(0.975, den, average, "low", 1),
            value > wilson_funnel_limit(0.999, den, average, "high", 1),
            value > wilson_funnel_limit(0.975, den, average, "high", 1),
        ]
        choices = ["Low (0.001)", "Low (0.025)", "High (0.001)", "High (0.025)"]
        label = np.select(conditions, choices, default="Not significant")
    else:
        reference = 1.0 if statistic == "ratio" else num.sum() / np.nansum(d)
        with np.errstate(invalid="ignore"):
            conditions = [
                reference < funnel_ratio_interval(num, d, 0.998, "low"),
                reference < funnel_ratio_interval(num, d, 0.95, "low"),
                reference > funnel_ratio_interval(num, d, 0.998, "high"),
                reference > funnel_ratio_interval(num, d, 0.95, "high"),
            ]
        choices = ["High (0.001)", "High (0.025)", "Low (0.001)", "Low (0.025)"]
        label = np.select(conditions, choices, default="Not significant")
        if statistic == "rate":
            levels.append(DSR_NOT_APPLICABLE)
            if rate_type == "dsr":
                label = np.where(num < 10, DSR_NOT_APPLICABLE, label)
    out = data.copy()
    out["significance"] = pd.Categorical(label, categories=levels)
    return out


def _significance_inputs(data: pd.DataFrame, numerator: str, denominator: str | None, statistic: str, rate: str | None,
                         rate_type: str | None, multiplier: float | None) -> tuple[np.ndarray, np.ndarray]:
    """The checked numerators and the denominators of :func:`assign_funnel_significance` (derived ones for rates)."""
    check_choice("statistic", statistic, Statistic)
    num = column(data, numerator, "numerator")
    den = column(data, denominator, "denominator") if denominator is not None else None
    if statistic == "rate":
        if rate is None or rate_type is None or multiplier is None:
            raise ValueError("the following arguments are required for rates: data, numerator, rate, "
                             "rate_type, multiplier")
        check_choice("rate_type", rate_type, RateType)
        if (num == 0).any() and den is None:
            raise ValueError("for rates, where there are 0 events for a record, the denominator field "
                             "needs to be provided using the denominator argument")
    elif den is None:
        raise ValueError("the following arguments are required for ratios and proportions: "
                         "data, numerator, denominator")
    if (num < 0).any():
        raise ValueError("numerators must be greater than or equal to zero")
    if den is not None and (den <= 0).any():
        raise ValueError("denominators must be greater than zero")
    if statistic == "proportion" and den is not None and (num > den).any():
        raise ValueError("numerators must be less than or equal to denominator for a proportion statistic")
    if statistic == "rate" and rate is not None and rate_type is not None and multiplier is not None:
        return num, _derived_denominator(num, column(data, rate, "rate"), den, rate_type, multiplier)
    if den is None:  # pragma: no cover - refused above
        raise ValueError("a denominator column is required")
    return num, den


def funnel_points(data: pd.DataFrame, numerator: str, rate: str, *, rate_type: RateType,
                  years_of_data: float, multiplier: float, denominator: str | None = None) -> pd.DataFrame:
    """Rate-funnel plotting points, as PHEindicatormethods ``calculate_funnel_points``.

    Adds ``<rate>_chart`` (the rate; missing for DSRs with fewer than 10 events) and
    ``denominator_derived = multiplier O / rate / years_of_data`` (the annual population; for crude
    rates with O = 0, ``denominator / years_of_data``; missing for DSRs with fewer than 10 events).

    Parameters
    ----------
    data : pandas.DataFrame
        One row per unit.
    numerator, rate : str
        Columns of events and rates.
    rate_type : {"dsr", "crude"}
    years_of_data : float
        Years the rates cover.
    multiplier : float
        Scale of the rates (e.g. 100000).
    denominator : str, optional
        Column of denominators (crude rates with no events only).

    Returns
    -------
    pandas.DataFrame
        ``data`` with the two columns added.

    References
    ----------
    PHEindicatormethods v2.1.0, R/Funnels.R ``calculate_funnel_points``.
    """
    check_choice("rate_type", rate_type, RateType)
    num = column(data, numerator, "numerator")
    rate_values = column(data, rate, "rate")
    den = column(data, denominator, "denominator") if denominator is not None else None
    if (num == 0).any() and den is None:
        raise ValueError("for rates, where there are 0 events for a record, the denominator field "
                         "needs to be provided using the denominator argument")
    with np.errstate(divide="ignore", invalid="ignore"):
        derived = multiplier * num / rate_values / years_of_data
    out = data.copy()
    if rate_type == "dsr":
        out[f"{rate}_chart"] = np.where(num < 10, np.nan, rate_values)
        out["denominator_derived"] = np.where(num < 10, np.nan, derived)
    else:
        out[f"{rate}_chart"] = rate_values
        out["denominator_derived"] = derived if den is None else np.where(num == 0, den / years_of_data, derived)
    return out
