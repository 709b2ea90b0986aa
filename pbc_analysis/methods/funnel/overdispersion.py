"""Over-dispersed funnels for one indicator: z-scores, trimming, phi, tau^2, adjusted limits and outliers.

:func:`funnel_overdispersion` follows Spiegelhalter (2005)
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

:func:`pbc_analysis.methods.funnel.grouped.sr_overdispersion_by_group` does the same for many funnels of
standardised ratios at once.

References
----------
Spiegelhalter DJ (2005), Funnel plots for comparing institutional performance, Stat Med 24:1185-1202.
Spiegelhalter DJ, Sherlaw-Johnson C, Bardsley M et al. (2012), Statistical methods for healthcare regulation:
rating, screening and surveillance, JRSS A 175:1-47.
DerSimonian R, Laird N (1986), Meta-analysis in clinical trials, Control Clin Trials 7:177-188.
FunnelPlotR v0.6.0 (nhs-r-community, MIT): R/od_adjustment.R, R/calculate_limits.R, R/outliers_func.R.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from pbc_analysis.core.checks import check_choice
from pbc_analysis.methods.funnel.common import (
    EXACT_Z,
    FUNNELPLOTR_Z,
    AutoRule,
    DataType,
    Overdispersion,
    SrMethod,
    TrimMethod,
    check_counts,
    check_positive,
    check_trim_by,
    column,
    r_round,
)

__all__ = ["LIMIT_COLUMNS", "USED_COLUMNS", "FunnelResult", "dispersion", "funnel_outliers", "funnel_overdispersion",
           "od_limits", "trimmed_normal_second_moment", "truncate", "winsorise"]

Limit = Literal[95, 99]
Compat = Literal["funnelplotr"]


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

    Parameters
    ----------
    z : array_like
        z-scores.
    trim_by : float
        Share winsorised at each end.

    Returns
    -------
    z_winsorised, flag : numpy.ndarray

    References
    ----------
    Spiegelhalter (2005), s. 3.3; FunnelPlotR v0.6.0 R/winsorisation.R.
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

    Parameters
    ----------
    z : array_like
        z-scores.
    trim_by : float
        Share truncated at each end (``k = 1 / trim_by`` bands).

    Returns
    -------
    z_truncated, flag, rk, sp : numpy.ndarray

    References
    ----------
    NHS Digital, SHMI methodology (truncation of z-scores); FunnelPlotR v0.6.0 R/truncation.R.
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

    Parameters
    ----------
    z_trimmed : array_like
        Trimmed z-scores (missing: truncated away).
    s : array_like
        Their standard errors on the transformed scale.

    Returns
    -------
    dict
        ``n_used, phi, tau2, dispersion_statistic, dispersion_df, dispersion_p``.

    References
    ----------
    Spiegelhalter (2005); DerSimonian and Laird (1986); FunnelPlotR v0.6.0 R/od_adjustment.R.
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


def od_limits(x: Any, *, data_type: DataType = "SR", sr_method: SrMethod = "SHMI", target: float = 1.0,
              multiplier: float = 1.0, phi: float = 1.0, tau2: float = 0.0, compat: Compat | None = None) -> pd.DataFrame:
    """All funnel limits at denominators (expected counts) ``x``: unadjusted, phi and tau2.

    Columns ``ll95, ul95, ll998, ul998`` (unadjusted: exact Poisson for SR as FunnelPlotR
    ``calculate_limits``; normal on the transformed scale for PR/RC), ``phi_*`` (Spiegelhalter's
    multiplicative ``t +/- z sqrt(max(phi, 1)) s(x)``), ``tau2_*`` (additive
    ``t +/- z sqrt(s(x)^2 + tau2)``), all back-transformed and times ``multiplier`` (SR exact limits
    also times ``target``). ``s(x)`` is ``1/sqrt(x)`` (SR, SHMI), ``1/(2 sqrt(x))`` otherwise.
    With ``compat="funnelplotr"`` the CQC ``tau2_*`` limits are *not* squared back (FunnelPlotR
    issue 33) and the normal quantiles are FunnelPlotR's 1.959964 and 3.090232.

    Parameters
    ----------
    x : array_like
        Denominators (expected counts for SR).
    data_type : {"SR", "PR", "RC"}
    sr_method : {"SHMI", "CQC"}
    target, multiplier : float
        The target (1 for SR) and the indicator's scale.
    phi, tau2 : float
        The multiplicative and additive over-dispersion.
    compat : {"funnelplotr"}, optional
        Reproduce FunnelPlotR v0.6.0's numbers (its defect included).

    Returns
    -------
    pandas.DataFrame
        ``denominator`` and the twelve limit columns.

    References
    ----------
    Spiegelhalter (2005); FunnelPlotR v0.6.0 R/calculate_limits.R and issue 33.
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
                          *, data_type: DataType = "SR", sr_method: SrMethod = "SHMI", trim_by: float = 0.1,
                          multiplier: float = 1.0, overdispersion: Overdispersion = "auto", limit: Limit = 99,
                          auto_rule: AutoRule = "test", alpha: float = 0.05,
                          round_expected: int | None | Literal["auto"] = "auto", phi: float | None = None,
                          tau2: float | None = None, compat: Compat | None = None, n_grid: int = 1000) -> FunnelResult:
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

    Parameters
    ----------
    data : pandas.DataFrame
        One row per unit (or several, summed by ``group``).
    numerator, denominator : str
        Columns of observed counts and of expected counts (SR) or denominators.
    group : str, optional
        Column of unit labels.
    data_type : {"SR", "PR", "RC"}
    sr_method : {"SHMI", "CQC"}
    trim_by : float
        Share trimmed at each end, in (0, 0.5).
    multiplier : float
        Scale of the indicator.
    overdispersion : {"auto", "tau2", "phi", "none"}
    limit : {95, 99}
        The limits whose units count as outliers.
    auto_rule : {"test", "funnelplotr"}
    alpha : float
        Level of the dispersion test of ``"auto"``.
    round_expected : int, None or "auto"
        Decimals expected counts are rounded to.
    phi, tau2 : float, optional
        Fixed over-dispersion (instead of estimated).
    compat : {"funnelplotr"}, optional
        Reproduce FunnelPlotR v0.6.0's numbers.
    n_grid : int
        Points of the plotted limit lines.

    Returns
    -------
    FunnelResult

    References
    ----------
    Spiegelhalter (2005); Spiegelhalter et al. (2012); FunnelPlotR v0.6.0 (see the module docstring).
    """
    for name, value, literal in (("data_type", data_type, DataType), ("sr_method", sr_method, SrMethod),
                                 ("overdispersion", overdispersion, Overdispersion), ("auto_rule", auto_rule, AutoRule),
                                 ("limit", limit, Limit)):
        check_choice(name, value, literal)
    if compat is not None:
        check_choice("compat", compat, Compat)
    check_trim_by(trim_by)
    units = _od_units(data, numerator, denominator, group, data_type, sr_method, round_expected)
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
    lim = {"data_type": data_type, "sr_method": sr_method, "target": target, "multiplier": multiplier,
           "phi": summary["phi"], "tau2": summary["tau2"], "compat": compat}
    units = pd.concat([units, _limits_in_use(den, used, lim)], axis=1)
    value = units["value"].to_numpy()
    for tag in ("95", "998"):
        units[f"signif{tag}"] = np.select([value > units[f"upper{tag}"], value < units[f"lower{tag}"]],
                                          ["high", "low"], default="none")
    tag = "95" if limit == 95 else "998"
    units["outlier"] = ((value > units[f"upper{tag}"]) | (value < units[f"lower{tag}"])).astype(int)
    summary["n_outliers"] = int(units["outlier"].sum())
    start = 1.1 if data_type == "SR" else 3.0
    grid = np.unique(np.concatenate([np.linspace(start, max(math.ceil(den.max()), start), n_grid), den]))
    lines = pd.concat([pd.DataFrame({"denominator": grid, "target": target * multiplier}),
                       _limits_in_use(grid, used, lim)], axis=1)
    return FunnelResult(units=units, limits=lines, outliers=funnel_outliers(units), summary=summary)


def _od_units(data: pd.DataFrame, numerator: str, denominator: str, group: str | None, data_type: str,
              sr_method: str, round_expected: int | None | str) -> pd.DataFrame:
    """The checked units of :func:`funnel_overdispersion`, summed by ``group``, expected counts rounded as asked."""
    if len(data) == 0:
        raise ValueError("no units to plot")
    num = column(data, numerator, "numerator")
    den = column(data, denominator, "denominator")
    den_name = "expected counts" if data_type == "SR" else "denominators"
    check_counts(num, "numerators (observed counts)")
    check_positive(den, den_name)
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
        check_positive(units["denominator"].to_numpy(), f"{den_name} (after rounding)")
    return units


def _limits_in_use(x: np.ndarray, used: str, lim: dict[str, Any]) -> pd.DataFrame:
    """Every limit of :func:`od_limits` at ``x`` and, as ``lower95 .. upper998``, the set ``used``."""
    out = od_limits(x, **lim).drop(columns="denominator")
    prefix = "" if used == "none" else f"{used}_"
    for src, dst in zip(LIMIT_COLUMNS, USED_COLUMNS):
        out[dst] = out[prefix + src]
    return out


def funnel_outliers(units: pd.DataFrame) -> pd.DataFrame:
    """Units beyond the 95% limits in use, with how far out they are.

    Columns: ``group, numerator, denominator, value, z, direction`` (``"high"``: above the upper
    limit, ``"low"``: below the lower), ``beyond95`` (always true here), ``beyond998`` (also beyond the
    99.8% limit), ``lower95, upper95, lower998, upper998``; sorted high before low, then by ``z``
    (most extreme first).

    Parameters
    ----------
    units : pandas.DataFrame
        :attr:`FunnelResult.units`.

    Returns
    -------
    pandas.DataFrame

    References
    ----------
    FunnelPlotR v0.6.0, R/outliers_func.R.
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

def trimmed_normal_second_moment(trim_by: float = 0.1, method: TrimMethod = "winsorisation") -> float:
    """E[Z_t^2] for a standard normal Z trimmed at ``trim_by`` each end (q = ``trim_by``, c = Phi^-1(1 - q)).

    Winsorised: ``(1 - 2q) - 2 c phi(c) + 2 q c^2`` (0.679 at q = 0.1); truncated (units beyond the
    bounds dropped): ``1 - 2 c phi(c) / (1 - 2q)`` (0.438 at q = 0.1). The consistency factor for a
    trimmed variance estimate.

    Parameters
    ----------
    trim_by : float
        Share trimmed at each end, in (0, 0.5).
    method : {"winsorisation", "truncation"}

    Returns
    -------
    float

    References
    ----------
    Dixon WJ, Tukey JW (1968), Approximate behavior of the distribution of Winsorized t, Technometrics 10:83-98.
    """
    check_trim_by(trim_by)
    check_choice("method", method, TrimMethod)
    c = float(stats.norm.ppf(1 - trim_by))
    dens = float(stats.norm.pdf(c))
    if method == "winsorisation":
        return (1 - 2 * trim_by) - 2 * c * dens + 2 * trim_by * c * c
    return 1 - 2 * c * dens / (1 - 2 * trim_by)
