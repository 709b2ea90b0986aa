"""Funnel plots: control limits, over-dispersion and outliers for practice-level indicators.

Three families of small, pure functions on tidy DataFrames, all vectorised over units (the only
Python loops are over the 100 points of a plotted line, whose axis is a recursion, over the steps of
bisections, and over the few outlier labels of a plot):

1. **PHE / Fingertips funnels** -- :func:`funnel_limits` and :func:`assign_funnel_significance`
   reproduce ``calculate_funnel_limits`` and ``assign_funnel_significance`` of PHEindicatormethods
   v2.1.0 (UKHSA/DHSC, GPL-3; R/Funnels.R and R/utils.R), following the Fingertips technical
   guidance: proportions with Wilson-score limits, ratios (``ratio_type`` ``"count"`` or ``"isr"``)
   and rates (``rate_type`` ``"crude"`` or ``"dsr"``) with exact Poisson limits found by
   bisection, at 95% ("2 sigma", probabilities 0.025/0.975) and 99.8% ("3 sigma", 0.001/0.999).
   :func:`funnel_points` is PHE's ``calculate_funnel_points`` (rate and annual population of each
   unit, for plotting units on a rate funnel).

2. **Over-dispersed funnels** -- :func:`funnel_overdispersion` follows Spiegelhalter (2005)
   "Funnel plots for comparing institutional performance", Stat Med 24:1185-1202, and Spiegelhalter,
   Sherlaw-Johnson et al. (2012) JRSS A 175:1-47, as implemented by FunnelPlotR v0.6.0
   (nhs-r-community, MIT; R/od_adjustment.R, R/calculate_limits.R, R/build_limits_lookup.R,
   R/outliers_func.R, R/funnel_plot.R):

   * transformation and z-score per data type (``y`` the transformed indicator, ``s`` its standard
     error, ``t`` the transformed target)

     - standardised ratio O/E, SHMI method: ``y = log(O/E)``, ``s = 1/sqrt(E)``, ``z = sqrt(E) log(O/E)``
     - standardised ratio O/E, CQC method: ``y = sqrt(O/E)``, ``s = 1/(2 sqrt(E))``, ``z = (y - 1)/s``
     - proportion r/n: ``y = asin(sqrt(r/n))``, ``s = 1/(2 sqrt(n))``, ``t = asin(sqrt(sum r/sum n))``
     - ratio of counts a/b: ``y = log((a+0.5)/(b+0.5))``, ``s = sqrt(a/(a+0.5)^2 + b/(b+0.5)^2)``,
       ``t = log(sum a/sum b)``; ``z = (y - t)/s``

   * trimming: SR with the SHMI method truncates (units ranked, ``sp = floor(rank k/(n+1))`` with
     ``k = 1/trim_by``; units with ``sp = 0`` or ``sp >= k-1`` are dropped); every other case
     Winsorises at ``trim_by`` each end (R quantile type 7);
   * dispersion ``phi = mean(z_trimmed^2)`` over the ``n`` units used (Spiegelhalter 2005);
     dispersion test ``n phi ~ chi^2_{n-1}`` (statistic and upper-tail p reported);
   * additive random effects (DerSimonian and Laird 1986, as FunnelPlotR ``tau_func``), with
     ``w = 1/s^2`` over the units used:
     ``tau2 = max(0, (n phi - (n - 1)) / (sum w - sum w^2 / sum w))``, and 0 when ``n phi < n - 1``;
   * limits at denominator (expected) ``x``:

     - unadjusted: exact Poisson for SR, ``target * chi2_{p}(2x)/(2x)`` (lower) and
       ``target * chi2_{1-p}(2(x+1))/(2x)`` (upper); normal on the transformed scale for PR and RC;
     - additive: ``g^-1(t +/- z_a sqrt(s(x)^2 + tau2))`` with ``s(x)`` as above at ``x``
       (``1/(2 sqrt(x))`` for RC, as FunnelPlotR);
     - multiplicative (Spiegelhalter 2005, multiplicative over-dispersion model; not in FunnelPlotR):
       ``g^-1(t +/- z_a sqrt(phi) s(x))``; ``phi < 1`` is not used to narrow the limits (Spiegelhalter
       assumes no over-dispersion when ``phi <= 1``), so ``max(phi, 1)`` enters the formula.

   ``g^-1`` is ``exp`` (log scale), squaring (square-root scale) or ``sin(.)^2`` (arcsine scale).

   **Known upstream defect** (FunnelPlotR issue 33): for the CQC method FunnelPlotR v0.6.0 never
   squares the square-root-scale additive limits back, so its limits are ``1 +/- z sqrt(s^2+tau2)``
   and far too narrow (11 of 60 units flagged in the reference data where SHMI flags 3). The default
   here back-transforms correctly; ``compat="funnelplotr"`` reproduces the defect (and FunnelPlotR's
   truncated constants 1.959964 / 3.090232 and its unclipped back-transforms) so that its published
   numbers can be checked.

3. **Plot** -- :func:`plot_funnel` draws units, target and the 95% / 99.8% lines in the project
   theme (:func:`pbc_analysis.publish.figures.set_theme`, colour-blind palette) and labels outliers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import special, stats

Statistic = Literal["proportion", "ratio", "rate"]
DataType = Literal["SR", "PR", "RC"]
Overdispersion = Literal["none", "phi", "tau2", "auto"]

SIGNIFICANCE_LEVELS = ["High (0.001)", "High (0.025)", "Low (0.001)", "Low (0.025)", "Not significant"]
DSR_NOT_APPLICABLE = "Not applicable for events less than 10 for dsrs"

#: FunnelPlotR's hard-coded normal quantiles (used only with ``compat="funnelplotr"``).
FUNNELPLOTR_Z = {95: 1.959964, 99: 3.090232}
#: Exact two-sided normal quantiles for 95% and 99.8% limits.
EXACT_Z = {95: float(stats.norm.ppf(0.975)), 99: float(stats.norm.ppf(0.999))}


# ------------------------------------------------------------------------------------------------
# R emulation helpers
# ------------------------------------------------------------------------------------------------
def r_round(x: Any, digits: int = 0) -> np.ndarray:
    """R's ``round(x, digits)`` (R >= 4.0.0, src/nmath/fround.c), vectorised.

    R rounds the *binary* value: it takes the two decimal candidates either side of ``x`` and keeps
    the nearer one, breaking exact ties to the even last digit. So ``round(101.475, 2)`` is 101.47
    (101.475 is stored as 101.47499999...), and ``round(0.125, 2)`` is 0.12. FunnelPlotR rounds
    expected counts to 2 decimals this way for the SHMI method.
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
# Validation
# ------------------------------------------------------------------------------------------------
def _column(data: pd.DataFrame, name: str | None, role: str) -> np.ndarray:
    if name is None:
        raise ValueError(f"the {role} column must be given")
    if name not in data.columns:
        raise ValueError(f"column {name!r} ({role}) not found; columns are {list(data.columns)}")
    try:
        return pd.to_numeric(data[name], errors="raise").to_numpy(dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"column {name!r} ({role}) must be numeric: {err}") from err


def _check_counts(values: np.ndarray, name: str) -> None:
    if np.isnan(values).any():
        rows = np.flatnonzero(np.isnan(values))[:5].tolist()
        raise ValueError(f"{name} has missing values (rows {rows})")
    if (values < 0).any():
        rows = np.flatnonzero(values < 0)[:5].tolist()
        raise ValueError(f"{name} must be greater than or equal to zero; negative at rows {rows}")
    if np.isinf(values).any():
        raise ValueError(f"{name} must be finite")


def _check_positive(values: np.ndarray, name: str) -> None:
    if np.isnan(values).any():
        rows = np.flatnonzero(np.isnan(values))[:5].tolist()
        raise ValueError(f"{name} has missing values (rows {rows})")
    if (values <= 0).any():
        rows = np.flatnonzero(values <= 0)[:5].tolist()
        raise ValueError(f"{name} must be greater than zero (zero or negative at rows {rows})")
    if np.isinf(values).any():
        raise ValueError(f"{name} must be finite")


# ------------------------------------------------------------------------------------------------
# Part 1: PHEindicatormethods v2.1.0 funnels
# ------------------------------------------------------------------------------------------------
def wilson_funnel_limit(p: float, population: Any, average_proportion: float, side: str,
                        multiplier: float = 100.0) -> np.ndarray:
    """PHE ``sigma_adjustment``: the Wilson-score control limit for a proportion.

    With ``z = qnorm(p)``, ``n`` the population and ``a`` the average proportion, the limit is
    ``(A -/+ sqrt(B)/8) / C / n * multiplier`` where ``A = a (n/z^2 + 1)``,
    ``C = 1/z^2 + 1/n`` and ``B = (8 a (n/z^2 + 1))^2 - 64 C a (n (a (n/z^2 + 2) - 1) + z^2 (a - 1))``
    (PHEindicatormethods R/utils.R; the proportion whose Wilson interval just reaches the average).
    """
    n = np.asarray(population, dtype=float)
    z2 = stats.norm.ppf(p) ** 2
    first = average_proportion * (n / z2 + 1)
    adj = np.sqrt((-8 * average_proportion * (n / z2 + 1)) ** 2
                  - 64 * (1 / z2 + 1 / n) * average_proportion
                  * (n * (average_proportion * (n / z2 + 2) - 1) + z2 * (average_proportion - 1)))
    last = 1 / z2 + 1 / n
    if side == "low":
        out = (first - adj / 8) / last
    elif side == "high":
        out = (first + adj / 8) / last
    else:
        raise ValueError(f"side must be 'low' or 'high', not {side!r}")
    return out / n * multiplier


def phe_poisson_probability(mean: Any, x_a: Any, x_b: Any) -> np.ndarray:
    """PHE ``poisson_cis(z, x_a, x_b)``: ``P(x_a <= X <= x_b)`` for ``X ~ Poisson(mean)``, as PHE sums it.

    PHE (R/utils.R) adds the terms ``z^k/k!`` from ``k = 0`` and stops at the first ``K > z`` whose
    term is at most 1e-10 times the running total, returning the in-range share of the *truncated*
    sum: ``(F(min(x_b, K-1)) - F(x_a - 1)) / F(K - 1)`` with ``F`` the Poisson cdf. The dropped tail
    (a few 1e-10) matters: it moves the last bisection step of :func:`poisson_funnel` for some counts
    (e.g. 328 events at p = 0.001), so it is reproduced here in closed form, vectorised, with ``K``
    found on a grid of candidates above ``z``.
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
    """
    obs = np.asarray(obs, dtype=float)
    if side not in ("low", "high"):
        raise ValueError(f"side must be 'low' or 'high', not {side!r}")
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
                  ratio_type: Literal["count", "isr"] | None = None,
                  rate_type: Literal["dsr", "crude"] | None = None, years_of_data: float | None = None,
                  n_points: int = 100, type: Literal["full", "standard"] = "full") -> pd.DataFrame:
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
    """
    if statistic not in ("proportion", "ratio", "rate"):
        raise ValueError(f"statistic must be 'proportion', 'ratio' or 'rate', not {statistic!r}")
    if type not in ("full", "standard"):
        raise ValueError(f"type must be 'full' or 'standard', not {type!r}")
    if multiplier is None:
        raise ValueError(f"multiplier is required for {statistic} funnels")
    if n_points < 2:
        raise ValueError("n_points must be at least 2")
    num = _column(data, numerator, "numerator")
    _check_counts(num, "numerators")
    den = _column(data, denominator, "denominator") if denominator is not None else None

    if statistic == "rate":
        if rate is None or rate_type is None or years_of_data is None:
            raise ValueError("the following arguments are required for rates: data, numerator, rate, "
                             "rate_type, multiplier, years_of_data")
        if rate_type not in ("dsr", "crude"):
            raise ValueError(f"rate_type must be 'dsr' or 'crude', not {rate_type!r}")
        if (num == 0).any() and den is None:
            raise ValueError("for rates, where there are 0 events for a record, the denominator field "
                             "needs to be provided using the denominator argument")
        rate_values = _column(data, rate, "rate")
        derived = _derived_denominator(num, rate_values, den, rate_type, multiplier)
    else:
        if den is None:
            raise ValueError(f"a denominator column is required for {statistic} funnels")
        _check_positive(den, "denominators")
        if statistic == "ratio" and ratio_type not in ("count", "isr"):
            raise ValueError(f"ratio_type must be 'count' or 'isr' for ratios, not {ratio_type!r}")
        if statistic == "proportion" and (num > den).any():
            raise ValueError("numerators must be less than or equal to denominator for a proportion statistic")
        derived = den

    av = num.sum() / np.nansum(derived)
    min_d, max_d = np.nanmin(derived), np.nanmax(derived)
    if max_d > 2 * min_d:
        axis_minimum = 0.0
    elif statistic == "rate":
        axis_minimum = _signif_floor(min_d / years_of_data) * years_of_data
    else:
        axis_minimum = _signif_floor(min_d)
    if statistic == "rate":
        axis_maximum = _signif_ceiling(max_d / years_of_data) * years_of_data
        axis_minimum = math.floor(axis_minimum * av)
        axis_maximum = math.ceil(axis_maximum * av)
    else:
        axis_maximum = _signif_ceiling(max_d)

    x = _axis(axis_minimum, axis_maximum, 1 if statistic == "ratio" else 0, n_points)
    sides = {"2s": 0.025, "3s": 0.001}

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
                out[f"{bound}_{name}_population_1_year"] = population / years_of_data
                out[f"{bound}_{name}_limit"] = x / population * multiplier
        out["baseline"] = av * multiplier

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
    """
    obs = np.asarray(obs, dtype=float)
    expected = np.asarray(expected, dtype=float)
    q = 0.5 + confidence / 2
    z = stats.norm.ppf(q)
    with np.errstate(divide="ignore", invalid="ignore"):
        if side == "low":
            exact = stats.chi2.isf(q, 2 * obs) / 2
            byars = obs * (1 - 1 / (9 * obs) - z / 3 / np.sqrt(obs)) ** 3
            value = np.where(obs == 0, 0.0, np.where(obs < 10, exact, byars))
        elif side == "high":
            exact = stats.chi2.ppf(q, 2 * obs + 2) / 2
            o1 = obs + 1
            byars = o1 * (1 - 1 / (9 * o1) + z / 3 / np.sqrt(o1)) ** 3
            value = np.where(obs < 10, exact, byars)
        else:
            raise ValueError(f"side must be 'low' or 'high', not {side!r}")
        return value / expected


def assign_funnel_significance(data: pd.DataFrame, numerator: str, denominator: str | None = None, *,
                               statistic: Statistic, rate: str | None = None,
                               rate_type: Literal["dsr", "crude"] | None = None,
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
    """
    if statistic not in ("proportion", "ratio", "rate"):
        raise ValueError(f"statistic must be 'proportion', 'ratio' or 'rate', not {statistic!r}")
    num = _column(data, numerator, "numerator")
    den = _column(data, denominator, "denominator") if denominator is not None else None
    if statistic == "rate":
        if rate is None or rate_type is None or multiplier is None:
            raise ValueError("the following arguments are required for rates: data, numerator, rate, "
                             "rate_type, multiplier")
        if rate_type not in ("dsr", "crude"):
            raise ValueError(f"rate_type must be 'dsr' or 'crude', not {rate_type!r}")
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
    if statistic == "proportion" and (num > den).any():
        raise ValueError("numerators must be less than or equal to denominator for a proportion statistic")

    levels = list(SIGNIFICANCE_LEVELS)
    if statistic == "proportion":
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
        if statistic == "ratio":
            reference, d = 1.0, den
        else:
            rate_values = _column(data, rate, "rate")
            d = _derived_denominator(num, rate_values, den, rate_type, multiplier)
            reference = num.sum() / np.nansum(d)
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


def funnel_points(data: pd.DataFrame, numerator: str, rate: str, *, rate_type: Literal["dsr", "crude"],
                  years_of_data: float, multiplier: float, denominator: str | None = None) -> pd.DataFrame:
    """Rate-funnel plotting points, as PHEindicatormethods ``calculate_funnel_points``.

    Adds ``<rate>_chart`` (the rate; missing for DSRs with fewer than 10 events) and
    ``denominator_derived = multiplier O / rate / years_of_data`` (the annual population; for crude
    rates with O = 0, ``denominator / years_of_data``; missing for DSRs with fewer than 10 events).
    """
    if rate_type not in ("dsr", "crude"):
        raise ValueError(f"rate_type must be 'dsr' or 'crude', not {rate_type!r}")
    num = _column(data, numerator, "numerator")
    rate_values = _column(data, rate, "rate")
    den = _column(data, denominator, "denominator") if denominator is not None else None
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


# ------------------------------------------------------------------------------------------------
# Part 2: over-dispersion (Spiegelhalter 2005; FunnelPlotR v0.6.0)
# ------------------------------------------------------------------------------------------------
@dataclass
class FunnelResult:
    """Result of :func:`funnel_overdispersion`.

    ``units``: one row per unit (see :func:`funnel_overdispersion` for the columns); ``limits``: the
    limit lines over a grid of denominators for plotting (columns ``denominator``, ``target``,
    the unadjusted ``ll95, ul95, ll998, ul998``, ``phi_*`` and ``tau2_*`` versions, and
    ``lower95, upper95, lower998, upper998`` -- the set in use); ``outliers``: the units beyond the
    95% limits in use (see :func:`funnel_outliers`); ``summary``: the scalars (target, n, phi, tau2,
    dispersion test, over-dispersion requested and used, outlier count at ``limit``).
    """

    units: pd.DataFrame
    limits: pd.DataFrame
    outliers: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)


def _transform(num: np.ndarray, den: np.ndarray, data_type: str, sr_method: str
               ) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """FunnelPlotR ``transformed_zscore``: (y, s, transformed target, z)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if data_type == "SR" and sr_method == "SHMI":
            y = np.log(num / den)
            s = 1 / np.sqrt(den)
            t = 0.0
            z = np.sqrt(den) * np.log(num / den)
            return y, s, t, z
        if data_type == "SR":
            y = np.sqrt(num / den)
            s = 1 / (2 * np.sqrt(den))
            t = 1.0
        elif data_type == "PR":
            t = float(np.arcsin(np.sqrt(num.sum() / den.sum())))
            y = np.arcsin(np.sqrt(num / den))
            s = 1 / (2 * np.sqrt(den))
        else:  # RC
            t = float(np.log(num.sum() / den.sum()))
            y = np.log((num + 0.5) / (den + 0.5))
            s = np.sqrt(num / (num + 0.5) ** 2 + den / (den + 0.5) ** 2)
        return y, s, t, (y - t) / s


def winsorise(z: Any, trim_by: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Winsorise z-scores at ``trim_by`` each end (Spiegelhalter 2005; CQC method).

    Bounds are R's type-7 quantiles (numpy's default ``linear``). Returns ``(winsorised z, flag)``
    where ``flag`` is 1 unless the z-score lies strictly between the bounds (FunnelPlotR's
    ``winsorised`` column: a unit sitting on a bound is flagged, its value unchanged).
    """
    z = np.asarray(z, dtype=float)
    lz, uz = np.nanquantile(z, [trim_by, 1 - trim_by])
    flag = np.where((z > lz) & (z < uz), 0, 1)
    return np.clip(z, lz, uz), flag


def truncate(z: Any, trim_by: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Truncate z-scores as NHS Digital's SHMI (FunnelPlotR ``truncation``).

    ``rk`` = rank of z (ties averaged), ``sp = floor(rk k / (n + 1))`` with ``k = 1/trim_by``; units
    with ``sp`` outside ``(0, k - 1)`` are truncated (their z set missing, so they leave ``n``).
    Returns ``(truncated z, flag, rk, sp)``.
    """
    z = np.asarray(z, dtype=float)
    k = 1 / trim_by
    rk = stats.rankdata(z, method="average")
    sp = np.floor(rk * k / (len(rk) + 1))
    flag = np.where((sp > 0) & (sp < k - 1), 0, 1)
    return np.where(flag == 1, np.nan, z), flag, rk, sp


def dispersion(z_trimmed: Any, s: Any) -> dict[str, float]:
    """Over-dispersion statistics from trimmed z-scores and standard errors (missing z ignored).

    ``phi = sum z^2 / n`` (Spiegelhalter 2005); test statistic ``n phi`` against chi-squared
    with ``n - 1`` degrees of freedom (p the upper tail); additive
    ``tau2 = max(0, (n phi - (n-1)) / (sum w - sum w^2 / sum w))`` with ``w = 1/s^2`` (DerSimonian and
    Laird 1986; FunnelPlotR ``tau_func``), 0 when ``n phi < n - 1``.
    """
    z = np.asarray(z_trimmed, dtype=float)
    s = np.asarray(s, dtype=float)
    used = ~np.isnan(z)
    n = int(used.sum())
    if n == 0:
        raise ValueError("no z-scores left after trimming; cannot estimate over-dispersion")
    if not np.isfinite(z[used]).all():
        raise ValueError("z-scores must be finite: a zero observed count has no log (SHMI method); "
                         "use sr_method='CQC' or check the data")
    phi = float(np.sum(z[used] ** 2) / n)
    w = 1 / s[used] ** 2
    if n * phi < n - 1:
        tau2 = 0.0
    else:
        tau2 = float(max(0.0, (n * phi - (n - 1)) / (w.sum() - (w**2).sum() / w.sum())))
    statistic = n * phi
    p = float(stats.chi2.sf(statistic, n - 1)) if n > 1 else float("nan")
    return {"n_used": n, "phi": phi, "tau2": tau2, "dispersion_statistic": statistic,
            "dispersion_df": n - 1, "dispersion_p": p}


def _inverse(y: np.ndarray, data_type: str, sr_method: str, compat: bool) -> np.ndarray:
    """Back-transform from the z-score scale (clipped to the valid range unless ``compat``)."""
    if (data_type == "SR" and sr_method == "SHMI") or data_type == "RC":
        return np.exp(y)
    if data_type == "SR":
        return (y if compat else np.maximum(y, 0.0)) ** 2
    return np.sin(y if compat else np.clip(y, 0.0, np.pi / 2)) ** 2


def od_limits(x: Any, *, data_type: DataType = "SR", sr_method: Literal["SHMI", "CQC"] = "SHMI",
              target: float = 1.0, multiplier: float = 1.0, phi: float = 1.0, tau2: float = 0.0,
              compat: Literal["funnelplotr"] | None = None) -> pd.DataFrame:
    """All funnel limits at denominators (expected counts) ``x``: unadjusted, phi and tau2.

    Columns ``ll95, ul95, ll998, ul998`` (unadjusted: exact Poisson for SR as FunnelPlotR
    ``calculate_limits``; normal on the transformed scale for PR/RC), ``phi_*`` (Spiegelhalter's
    multiplicative ``t +/- z sqrt(max(phi, 1)) s(x)``), ``tau2_*`` (additive
    ``t +/- z sqrt(s(x)^2 + tau2)``), all back-transformed and times ``multiplier`` (SR exact limits
    also times ``target``). ``s(x)`` is ``1/sqrt(x)`` (SR, SHMI), ``1/(2 sqrt(x))`` otherwise.
    With ``compat="funnelplotr"`` the CQC ``tau2_*`` limits are *not* squared back (FunnelPlotR
    issue 33) and the normal quantiles are FunnelPlotR's 1.959964 and 3.090232.
    """
    x = np.asarray(x, dtype=float)
    is_compat = compat == "funnelplotr"
    zq = FUNNELPLOTR_Z if is_compat else EXACT_Z
    shmi = data_type == "SR" and sr_method == "SHMI"
    s = 1 / np.sqrt(x) if shmi else 1 / (2 * np.sqrt(x))
    if data_type == "SR":
        t = 0.0 if shmi else 1.0
    elif data_type == "PR":
        t = float(np.arcsin(np.sqrt(target)))
    else:
        t = float(np.log(target))
    out = pd.DataFrame({"denominator": x})
    for level, tag in ((95, "95"), (99, "998")):
        z = zq[level]
        if data_type == "SR":
            lo_p, hi_p = (0.025, 0.975) if level == 95 else (0.001, 0.999)
            with np.errstate(divide="ignore", invalid="ignore"):
                out[f"ll{tag}"] = multiplier * target * stats.chi2.ppf(lo_p, 2 * x) / 2 / x
                out[f"ul{tag}"] = multiplier * target * stats.chi2.ppf(hi_p, 2 * (x + 1)) / 2 / x
        else:
            out[f"ll{tag}"] = multiplier * _inverse(t - z * s, data_type, sr_method, is_compat)
            out[f"ul{tag}"] = multiplier * _inverse(t + z * s, data_type, sr_method, is_compat)
    for level, tag in ((95, "95"), (99, "998")):
        z = zq[level]
        se = np.sqrt(max(phi, 1.0)) * s
        out[f"phi_ll{tag}"] = multiplier * _inverse(t - z * se, data_type, sr_method, is_compat)
        out[f"phi_ul{tag}"] = multiplier * _inverse(t + z * se, data_type, sr_method, is_compat)
    for level, tag in ((95, "95"), (99, "998")):
        z = zq[level]
        se = np.sqrt(s**2 + tau2)
        lo, hi = t - z * se, t + z * se
        if is_compat and data_type == "SR" and sr_method == "CQC":
            out[f"tau2_ll{tag}"], out[f"tau2_ul{tag}"] = multiplier * lo, multiplier * hi  # issue 33
        else:
            out[f"tau2_ll{tag}"] = multiplier * _inverse(lo, data_type, sr_method, is_compat)
            out[f"tau2_ul{tag}"] = multiplier * _inverse(hi, data_type, sr_method, is_compat)
    return out


LIMIT_COLUMNS = ["ll95", "ul95", "ll998", "ul998"]
USED_COLUMNS = ["lower95", "upper95", "lower998", "upper998"]


def _choose(requested: str, summary: dict[str, Any], auto_rule: str, alpha: float) -> tuple[str, str]:
    """Resolve ``overdispersion`` to the adjustment actually used, with the reason."""
    phi, tau2, p = summary["phi"], summary["tau2"], summary["dispersion_p"]
    if requested == "none":
        return "none", "requested"
    if requested == "auto":
        if auto_rule == "funnelplotr":
            if tau2 > 0:
                return "tau2", "auto: tau2 > 0 (n*phi > n-1, FunnelPlotR rule)"
            return "none", "auto: tau2 = 0 (n*phi <= n-1, FunnelPlotR rule)"
        if p < alpha:
            return "tau2", f"auto: dispersion test p = {p:.3g} < {alpha:g}"
        return "none", f"auto: dispersion test p = {p:.3g} >= {alpha:g}"
    if requested == "tau2" and tau2 == 0:
        return "none", "tau2 requested but tau2 = 0 (no over-dispersion)"
    if requested == "phi" and phi <= 1:
        return "none", "phi requested but phi <= 1 (no over-dispersion)"
    return requested, "requested"


def funnel_overdispersion(data: pd.DataFrame, numerator: str, denominator: str, group: str | None = None,
                          *, data_type: DataType = "SR", sr_method: Literal["SHMI", "CQC"] = "SHMI",
                          trim_by: float = 0.1, multiplier: float = 1.0,
                          overdispersion: Overdispersion = "auto", limit: Literal[95, 99] = 99,
                          auto_rule: Literal["test", "funnelplotr"] = "test", alpha: float = 0.05,
                          round_expected: int | None | Literal["auto"] = "auto",
                          phi: float | None = None, tau2: float | None = None,
                          compat: Literal["funnelplotr"] | None = None,
                          n_grid: int = 1000) -> FunnelResult:
    """Funnel with over-dispersion for standardised ratios, proportions or ratios of counts.

    ``data_type``: ``"SR"`` (numerator observed, denominator expected; target 1), ``"PR"``
    (proportion numerator/denominator; target ``sum num / sum den``) or ``"RC"`` (ratio of counts;
    same target). Rows are summed by ``group`` first (FunnelPlotR ``aggregate_func``); without
    ``group`` each row is a unit labelled by its index. For SR with the SHMI method expected counts
    are rounded to 2 decimals with R's rounding (FunnelPlotR; ``round_expected="auto"``; pass an int
    or ``None`` to override).

    Transformation, z-scores, trimming (truncation for SR/SHMI, Winsorisation otherwise), ``phi``,
    the dispersion test and ``tau2`` are as in the module docstring; ``phi``/``tau2`` may be fixed
    (e.g. from a baseline year) instead of estimated.

    ``overdispersion`` picks the limits used for flags:

    * ``"none"``: unadjusted; ``"phi"``: multiplicative (falls back to none when ``phi <= 1``);
      ``"tau2"``: additive random effects (falls back to none when ``tau2 = 0``, as FunnelPlotR);
    * ``"auto"``: with ``auto_rule="test"`` (default) additive ``tau2`` limits only when the
      dispersion test rejects at ``alpha`` (``n phi > chi^2_{n-1, 1-alpha}``, which implies
      ``tau2 > 0``), otherwise none; with ``auto_rule="funnelplotr"`` whenever ``tau2 > 0`` (i.e.
      ``n phi > n - 1``, FunnelPlotR's ``draw_adjusted`` behaviour).

    ``units`` columns: ``group, numerator, denominator, rr`` (ratio), ``value`` (``rr * multiplier``),
    ``y, s`` (transformed value and its standard error), ``z`` (FunnelPlotR ``Uzscore``),
    ``z_trimmed`` (``Wuzscore``; missing when truncated), ``trimmed`` (FunnelPlotR ``winsorised`` /
    ``truncated`` flag), ``rank, sp`` (SHMI only), the limits of :func:`od_limits`, the limits in use
    ``lower95, upper95, lower998, upper998``, ``signif95`` and ``signif998`` (``"high"``, ``"low"``
    or ``"none"``: strictly beyond the limit) and ``outlier`` (beyond the limits in use at ``limit``:
    95 or 99, i.e. 99.8%, as FunnelPlotR ``outliers_func``).
    """
    if data_type not in ("SR", "PR", "RC"):
        raise ValueError(f"data_type must be 'SR', 'PR' or 'RC', not {data_type!r}")
    if sr_method not in ("SHMI", "CQC"):
        raise ValueError(f"sr_method must be 'SHMI' or 'CQC', not {sr_method!r}")
    if overdispersion not in ("none", "phi", "tau2", "auto"):
        raise ValueError(f"overdispersion must be 'none', 'phi', 'tau2' or 'auto', not {overdispersion!r}")
    if auto_rule not in ("test", "funnelplotr"):
        raise ValueError(f"auto_rule must be 'test' or 'funnelplotr', not {auto_rule!r}")
    if limit not in (95, 99):
        raise ValueError(f"limit must be 95 or 99 (99.8%), not {limit!r}")
    if compat not in (None, "funnelplotr"):
        raise ValueError(f"compat must be None or 'funnelplotr', not {compat!r}")
    if not 0 < trim_by < 0.5:
        raise ValueError(f"trim_by must be in (0, 0.5), not {trim_by!r}")
    if len(data) == 0:
        raise ValueError("no units to plot")

    num = _column(data, numerator, "numerator")
    den = _column(data, denominator, "denominator")
    den_name = "expected counts" if data_type == "SR" else "denominators"
    _check_counts(num, "numerators (observed counts)")
    _check_positive(den, den_name)
    if data_type == "PR" and (num > den).any():
        rows = np.flatnonzero(num > den)[:5].tolist()
        raise ValueError(f"numerators must not exceed denominators for proportions (rows {rows})")

    labels = data[group].astype(str).to_numpy() if group is not None else data.index.astype(str).to_numpy()
    units = (pd.DataFrame({"group": labels, "numerator": num, "denominator": den})
             .groupby("group", sort=True, as_index=False).sum())
    units["rr"] = units["numerator"] / units["denominator"]  # before rounding, as FunnelPlotR
    if round_expected == "auto":
        round_expected = 2 if (data_type == "SR" and sr_method == "SHMI") else None
    if round_expected is not None:
        units["denominator"] = r_round(units["denominator"].to_numpy(), int(round_expected))
        _check_positive(units["denominator"].to_numpy(), f"{den_name} (after rounding)")
    num = units["numerator"].to_numpy(dtype=float)
    den = units["denominator"].to_numpy(dtype=float)

    target = 1.0 if data_type == "SR" else float(num.sum() / den.sum())
    units["value"] = units["rr"] * multiplier
    y, s, _t, z = _transform(num, den, data_type, sr_method)
    units["y"], units["s"], units["z"] = y, s, z
    shmi = data_type == "SR" and sr_method == "SHMI"
    if shmi:
        zt, flag, rk, sp = truncate(z, trim_by)
        units["z_trimmed"], units["trimmed"], units["rank"], units["sp"] = zt, flag, rk, sp
    else:
        zt, flag = winsorise(z, trim_by)
        units["z_trimmed"], units["trimmed"] = zt, flag

    summary: dict[str, Any] = {"data_type": data_type, "sr_method": sr_method if data_type == "SR" else None,
                               "trim_method": "truncation" if shmi else "winsorisation",
                               "trim_by": trim_by, "multiplier": multiplier, "target": target,
                               "n_units": len(units)}
    summary.update(dispersion(zt, s))
    if phi is not None:
        summary["phi"] = float(phi)
    if tau2 is not None:
        summary["tau2"] = float(tau2)
    used, reason = _choose(overdispersion, summary, auto_rule, alpha)
    summary.update({"overdispersion_requested": overdispersion, "overdispersion_used": used,
                    "overdispersion_reason": reason, "auto_rule": auto_rule, "alpha": alpha,
                    "limit": limit, "compat": compat})

    def with_limits(x: np.ndarray) -> pd.DataFrame:
        lim = od_limits(x, data_type=data_type, sr_method=sr_method, target=target, multiplier=multiplier,
                        phi=summary["phi"], tau2=summary["tau2"], compat=compat).drop(columns="denominator")
        prefix = "" if used == "none" else f"{used}_"
        for src, dst in zip(LIMIT_COLUMNS, USED_COLUMNS):
            lim[dst] = lim[prefix + src]
        return lim

    units = pd.concat([units, with_limits(den)], axis=1)
    value = units["value"].to_numpy()
    for tag in ("95", "998"):
        units[f"signif{tag}"] = np.select([value > units[f"upper{tag}"], value < units[f"lower{tag}"]],
                                          ["high", "low"], default="none")
    tag = "95" if limit == 95 else "998"
    units["outlier"] = ((value > units[f"upper{tag}"]) | (value < units[f"lower{tag}"])).astype(int)
    summary["n_outliers"] = int(units["outlier"].sum())

    start = 1.1 if data_type == "SR" else 3.0
    max_x = math.ceil(den.max())
    grid = np.unique(np.concatenate([np.linspace(start, max(max_x, start), n_grid), den]))
    lines = pd.concat([pd.DataFrame({"denominator": grid, "target": target * multiplier}), with_limits(grid)],
                      axis=1)
    return FunnelResult(units=units, limits=lines, outliers=funnel_outliers(units), summary=summary)


def funnel_outliers(units: pd.DataFrame) -> pd.DataFrame:
    """Units beyond the 95% limits in use, with how far out they are.

    Columns: ``group, numerator, denominator, value, z, direction`` (``"high"``: above the upper
    limit, ``"low"``: below the lower), ``beyond95`` (always true here), ``beyond998`` (also beyond the
    99.8% limit), ``lower95, upper95, lower998, upper998``; sorted high before low, then by ``z``
    (most extreme first).
    """
    flagged = units[units["signif95"] != "none"].copy()
    flagged["direction"] = flagged["signif95"]
    flagged["beyond95"] = True
    flagged["beyond998"] = flagged["signif998"] != "none"
    flagged["_order"] = np.where(flagged["direction"] == "high", -flagged["z"], flagged["z"] + 1e12)
    flagged = flagged.sort_values(["_order", "group"], kind="stable")
    cols = ["group", "numerator", "denominator", "value", "z", "direction", "beyond95", "beyond998",
            *USED_COLUMNS]
    return flagged[cols].reset_index(drop=True)


# ------------------------------------------------------------------------------------------------
# Part 3: plot
# ------------------------------------------------------------------------------------------------
_LINE_SPECS = {  # PHE column stem -> (level, bound)
    "lower_2s": ("95%", "lower"), "upper_2s": ("95%", "upper"),
    "lower_3s": ("99.8%", "lower"), "upper_3s": ("99.8%", "upper"),
}


def funnel_lines(limits: pd.DataFrame) -> pd.DataFrame:
    """Limit lines in long form (``x, value, level, bound``) from either kind of limits table.

    Accepts :func:`funnel_limits` output (proportion: x = ``Population``; ratio: x = the expected
    events of each line; rate: x = the annual population of each line) or the ``limits`` table of
    :class:`FunnelResult` (x = ``denominator``, the limits in use).
    """
    frames = []
    if "lower95" in limits.columns:
        for col, (level, bound) in zip(USED_COLUMNS, [("95%", "lower"), ("95%", "upper"),
                                                      ("99.8%", "lower"), ("99.8%", "upper")]):
            frames.append(pd.DataFrame({"x": limits["denominator"], "value": limits[col],
                                        "level": level, "bound": bound}))
    else:
        for stem, (level, bound) in _LINE_SPECS.items():
            if "Population" in limits.columns:
                x = limits["Population"]
            elif f"{stem}_exp_events" in limits.columns:
                x = limits[f"{stem}_exp_events"]
            elif f"{stem}_population_1_year" in limits.columns:
                x = limits[f"{stem}_population_1_year"]
            else:
                raise ValueError("limits table not recognised: expected funnel_limits() or "
                                 "funnel_overdispersion().limits columns")
            frames.append(pd.DataFrame({"x": x, "value": limits[f"{stem}_limit"], "level": level,
                                        "bound": bound}))
    out = pd.concat(frames, ignore_index=True)
    return out[np.isfinite(out["x"].to_numpy(dtype=float)) & np.isfinite(out["value"].to_numpy(dtype=float))]


def sr_overdispersion_by_group(observed: Any, expected: Any, group: Any, *, sr_method: Literal["SHMI", "CQC"] = "CQC",
                               trim_by: float = 0.1, overdispersion: Overdispersion = "auto",
                               auto_rule: Literal["test", "funnelplotr"] = "test",
                               alpha: float = 0.05, consistency: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`funnel_overdispersion` for standardised ratios, for many funnels at once.

    ``observed``, ``expected`` (> 0) and ``group`` (integer codes 0..G-1, one funnel per code) are
    arrays over units. The same transformation, trimming (winsorisation for CQC, truncation for
    SHMI), ``phi``, dispersion test, ``tau2``, choice of adjustment and limits as
    :func:`funnel_overdispersion` (expected counts not rounded, no ``compat``), vectorised over groups
    with numpy instead of one call per group (the benchmarking of all of England has thousands of
    funnels). Returns ``(units, summary)``: ``units`` in input order with ``z``, ``z_trimmed``,
    ``lower95, upper95, lower998, upper998`` (the limits in use at each unit's expected count);
    ``summary`` one row per group as ``FunnelResult.summary``.

    ``consistency=True`` divides phi by :func:`trimmed_normal_second_moment` (``trim_by``), the
    mean trimmed z^2 of a standard normal, so that phi estimates the full variance of normally
    distributed z-scores rather than the trimmed one (winsorising at 10% each end keeps only about
    68% of it, truncating about 44%); without it, limits from the trimmed estimate are too narrow
    and flag more practices than their level implies when the between-practice spread is genuine
    rather than a few outliers. FunnelPlotR and SHMI do not correct (the default here).
    """
    if sr_method not in ("SHMI", "CQC"):
        raise ValueError(f"sr_method must be 'SHMI' or 'CQC', not {sr_method!r}")
    if overdispersion not in ("none", "phi", "tau2", "auto"):
        raise ValueError(f"overdispersion must be 'none', 'phi', 'tau2' or 'auto', not {overdispersion!r}")
    if not 0 < trim_by < 0.5:
        raise ValueError(f"trim_by must be in (0, 0.5), not {trim_by!r}")
    o = np.asarray(observed, dtype=float)
    e = np.asarray(expected, dtype=float)
    g = np.asarray(group, dtype=np.int64)
    _check_counts(o, "numerators (observed counts)")
    _check_positive(e, "expected counts")
    G = int(g.max()) + 1 if len(g) else 0
    shmi = sr_method == "SHMI"
    y, s, _t, z = _transform(o, e, "SR", sr_method)
    n_g = np.bincount(g, minlength=G)
    if shmi:
        k = 1 / trim_by
        rk = pd.Series(z).groupby(g).rank(method="average").to_numpy()
        sp = np.floor(rk * k / (n_g[g] + 1))
        zt = np.where((sp > 0) & (sp < k - 1), z, np.nan)
    else:
        order = np.lexsort((z, g))
        pos = np.empty(len(g), dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(n_g)[:-1]])
        pos[order] = np.arange(len(g)) - starts[g[order]]
        mat = np.full((G, max(int(n_g.max()) if G else 0, 1)), np.nan)
        mat[g, pos] = z
        lz, uz = np.nanquantile(mat, [trim_by, 1 - trim_by], axis=1)
        zt = np.clip(z, lz[g], uz[g])
    used = ~np.isnan(zt)
    if not np.isfinite(zt[used]).all():
        raise ValueError("z-scores must be finite: a zero observed count has no log (SHMI method); "
                         "use sr_method='CQC' or check the data")
    n = np.bincount(g[used], minlength=G).astype(float)
    phi = np.bincount(g[used], weights=zt[used] ** 2, minlength=G) / np.where(n > 0, n, 1)
    if consistency:
        phi = phi / trimmed_normal_second_moment(trim_by, "truncation" if shmi else "winsorisation")
    w = np.where(used, 1 / s**2, 0.0)
    sw, sw2 = np.bincount(g, weights=w, minlength=G), np.bincount(g, weights=w**2, minlength=G)
    with np.errstate(divide="ignore", invalid="ignore"):
        tau2 = np.where(n * phi < n - 1, 0.0, np.maximum(0.0, (n * phi - (n - 1)) / (sw - sw2 / sw)))
    stat = n * phi
    p = np.where(n > 1, stats.chi2.sf(stat, np.maximum(n - 1, 1)), np.nan)
    used_adj, reasons = [], []
    for i in range(G):  # the choice per funnel: a few string operations per group, not per unit
        u, r = _choose(overdispersion, {"phi": phi[i], "tau2": tau2[i], "dispersion_p": p[i]}, auto_rule, alpha)
        used_adj.append(u)
        reasons.append(r)
    adj = np.array(used_adj)[g]
    t = 0.0 if shmi else 1.0
    sx = 1 / np.sqrt(e) if shmi else 1 / (2 * np.sqrt(e))
    units = pd.DataFrame({"group": g, "numerator": o, "denominator": e, "z": z, "z_trimmed": zt})
    for level, tag, (lo_p, hi_p) in ((95, "95", (0.025, 0.975)), (99, "998", (0.001, 0.999))):
        zq = EXACT_Z[level]
        ll0, ul0 = np.full(len(e), np.nan), np.full(len(e), np.nan)
        plain = adj == "none"  # exact Poisson limits (slow chi-squared quantiles) only where used
        with np.errstate(divide="ignore", invalid="ignore"):
            ll0[plain] = stats.chi2.ppf(lo_p, 2 * e[plain]) / 2 / e[plain]
            ul0[plain] = stats.chi2.ppf(hi_p, 2 * (e[plain] + 1)) / 2 / e[plain]
        se_phi = np.sqrt(np.maximum(phi[g], 1.0)) * sx
        se_tau = np.sqrt(sx**2 + tau2[g])
        inv = (lambda v: np.exp(v)) if shmi else (lambda v: np.maximum(v, 0.0) ** 2)
        units[f"lower{tag}"] = np.select([adj == "phi", adj == "tau2"], [inv(t - zq * se_phi), inv(t - zq * se_tau)], ll0)
        units[f"upper{tag}"] = np.select([adj == "phi", adj == "tau2"], [inv(t + zq * se_phi), inv(t + zq * se_tau)], ul0)
    summary = pd.DataFrame({"group": np.arange(G), "target": 1.0, "n_units": n_g, "n_used": n.astype(int),
                            "phi": phi, "tau2": tau2, "dispersion_statistic": stat, "dispersion_df": n - 1,
                            "dispersion_p": p, "overdispersion_requested": overdispersion,
                            "overdispersion_used": used_adj, "overdispersion_reason": reasons,
                            "trim_method": "truncation" if shmi else "winsorisation",
                            "consistency_corrected": consistency})
    rr = o / e
    out998 = (rr > units["upper998"]) | (rr < units["lower998"])
    summary["n_outliers"] = np.bincount(g, weights=out998.to_numpy(float), minlength=G).astype(int)
    return units, summary


def trimmed_normal_second_moment(trim_by: float = 0.1, method: str = "winsorisation") -> float:
    """E[Z_t^2] for a standard normal Z trimmed at ``trim_by`` each end (q = ``trim_by``, c = Phi^-1(1 - q)).

    Winsorised: ``(1 - 2q) - 2 c phi(c) + 2 q c^2`` (0.679 at q = 0.1); truncated (units beyond the
    bounds dropped): ``1 - 2 c phi(c) / (1 - 2q)`` (0.438 at q = 0.1). The consistency factor for a
    trimmed variance estimate (Dixon and Tukey 1968, Technometrics 10:83-98).
    """
    if not 0 < trim_by < 0.5:
        raise ValueError(f"trim_by must be in (0, 0.5), not {trim_by!r}")
    c = float(stats.norm.ppf(1 - trim_by))
    dens = float(stats.norm.pdf(c))
    if method == "winsorisation":
        return (1 - 2 * trim_by) - 2 * c * dens + 2 * trim_by * c * c
    if method == "truncation":
        return 1 - 2 * c * dens / (1 - 2 * trim_by)
    raise ValueError(f"method must be 'winsorisation' or 'truncation', not {method!r}")
