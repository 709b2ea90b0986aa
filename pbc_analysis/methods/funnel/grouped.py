"""Over-dispersed funnels of standardised ratios for many funnels at once (one per group), vectorised with numpy.

:func:`sr_overdispersion_by_group` computes what
:func:`pbc_analysis.methods.funnel.overdispersion.funnel_overdispersion` computes for one funnel of standardised
ratios (``data_type="SR"``): z-scores on the square-root (CQC) or log (SHMI) scale, winsorised or truncated,
phi, the dispersion test, tau^2 and the limits in use; for every group in one pass, because the benchmarking of
all of England has thousands of funnels (practices x specialties x points of delivery x periods).

References
----------
Spiegelhalter DJ (2005), Funnel plots for comparing institutional performance, Stat Med 24:1185-1202.
DerSimonian R, Laird N (1986), Meta-analysis in clinical trials, Control Clin Trials 7:177-188.
Dixon WJ, Tukey JW (1968), Technometrics 10:83-98 (the consistency factor of a trimmed variance).
FunnelPlotR v0.6.0 (nhs-r-community, MIT), the single-funnel reference.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from pbc_analysis.core.checks import check_choice, check_number
from pbc_analysis.methods.funnel.common import AutoRule, Overdispersion, SrMethod, check_counts, check_positive, check_trim_by, level_tag, z_of_level
from pbc_analysis.methods.funnel.overdispersion import _choose, _transform, trimmed_normal_second_moment

__all__ = ["FUNNEL_LEVELS", "sr_overdispersion_by_group"]

#: the levels every funnel has limits at (95% and 99.8%; "2 and 3 sigma")
FUNNEL_LEVELS = (0.95, 0.998)


def sr_overdispersion_by_group(observed: Any, expected: Any, group: Any, *, sr_method: SrMethod = "CQC",
                               trim_by: float = 0.1, overdispersion: Overdispersion = "auto",
                               auto_rule: AutoRule = "test", alpha: float = 0.05, consistency: bool = False,
                               extra_levels: Sequence[float] = ()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`~pbc_analysis.methods.funnel.overdispersion.funnel_overdispersion` for standardised ratios, for many
    funnels at once.

    ``observed``, ``expected`` (> 0) and ``group`` (integer codes 0..G-1, one funnel per code) are
    arrays over units. The same transformation, trimming (winsorisation for CQC, truncation for
    SHMI), ``phi``, dispersion test, ``tau2``, choice of adjustment and limits as
    ``funnel_overdispersion`` (expected counts not rounded, no ``compat``), vectorised over groups
    with numpy instead of one call per group. ``units`` has, in input order, ``z``, ``z_trimmed`` and
    ``lower95, upper95, lower998, upper998`` (the limits in use at each unit's expected count), plus
    ``lower<tag>``/``upper<tag>`` for each of ``extra_levels`` (tag: ``0.9 -> "90"``); ``summary`` one row per
    group as ``FunnelResult.summary``.

    ``consistency=True`` divides phi by
    :func:`~pbc_analysis.methods.funnel.overdispersion.trimmed_normal_second_moment` (``trim_by``), the
    mean trimmed z^2 of a standard normal, so that phi estimates the full variance of normally
    distributed z-scores rather than the trimmed one (winsorising at 10% each end keeps only about
    68% of it, truncating about 44%); without it, limits from the trimmed estimate are too narrow
    and flag more practices than their level implies when the between-practice spread is genuine
    rather than a few outliers. FunnelPlotR and SHMI do not correct (the default here).

    Parameters
    ----------
    observed, expected : array_like
        Observed and expected counts of each unit (expected > 0).
    group : array_like of int
        The unit's funnel, 0..G-1.
    sr_method : {"CQC", "SHMI"}
    trim_by : float
        Share trimmed at each end, in (0, 0.5).
    overdispersion : {"auto", "tau2", "phi", "none"}
    auto_rule : {"test", "funnelplotr"}
    alpha : float
        Level of the dispersion test of ``"auto"``.
    consistency : bool
        Rescale the trimmed phi to the full variance.
    extra_levels : sequence of float
        Levels in (0, 1) with limits besides 95% and 99.8%.

    Returns
    -------
    units, summary : pandas.DataFrame

    References
    ----------
    Spiegelhalter (2005); DerSimonian and Laird (1986); Dixon and Tukey (1968); see the module docstring.
    """
    check_choice("sr_method", sr_method, SrMethod)
    check_choice("overdispersion", overdispersion, Overdispersion)
    check_choice("auto_rule", auto_rule, AutoRule)
    check_trim_by(trim_by)
    for level in extra_levels:
        check_number("extra_levels", level, 0.0, 1.0, low_open=True, high_open=True)
    o = np.asarray(observed, dtype=float)
    e = np.asarray(expected, dtype=float)
    g = np.asarray(group, dtype=np.int64)
    check_counts(o, "numerators (observed counts)")
    check_positive(e, "expected counts")
    G = int(g.max()) + 1 if len(g) else 0
    shmi = sr_method == "SHMI"
    _y, s, _t, z = _transform(o, e, "SR", sr_method)
    n_g = np.bincount(g, minlength=G)
    zt = _trimmed(z, g, n_g, trim_by, shmi)
    stat = _dispersion_by_group(zt, s, g, G, trim_by, shmi, consistency)
    used_adj, reasons = [], []
    for i in range(G):  # the choice per funnel: a few string operations per group, not per unit
        u, r = _choose(overdispersion, {"phi": stat["phi"][i], "tau2": stat["tau2"][i], "dispersion_p": stat["p"][i]},
                       auto_rule, alpha)
        used_adj.append(u)
        reasons.append(r)
    adj = np.array(used_adj)[g]
    units = pd.DataFrame({"group": g, "numerator": o, "denominator": e, "z": z, "z_trimmed": zt})
    for level in dict.fromkeys((*FUNNEL_LEVELS, *extra_levels)):
        tag = level_tag(level)
        units[f"lower{tag}"], units[f"upper{tag}"] = _limits(e, adj, stat["phi"][g], stat["tau2"][g], level, shmi)
    n = stat["n"]
    summary = pd.DataFrame({"group": np.arange(G), "target": 1.0, "n_units": n_g, "n_used": n.astype(int),
                            "phi": stat["phi"], "tau2": stat["tau2"], "dispersion_statistic": n * stat["phi"],
                            "dispersion_df": n - 1, "dispersion_p": stat["p"],
                            "overdispersion_requested": overdispersion, "overdispersion_used": used_adj,
                            "overdispersion_reason": reasons,
                            "trim_method": "truncation" if shmi else "winsorisation",
                            "consistency_corrected": consistency})
    rr = o / e
    out998 = (rr > units["upper998"]) | (rr < units["lower998"])
    summary["n_outliers"] = np.bincount(g, weights=out998.to_numpy(float), minlength=G).astype(int)
    return units, summary


def _trimmed(z: np.ndarray, g: np.ndarray, n_g: np.ndarray, trim_by: float, shmi: bool) -> np.ndarray:
    """z-scores truncated (SHMI: missing outside the bands) or winsorised (CQC: clipped) within each group."""
    G = len(n_g)
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
    return zt


def _dispersion_by_group(zt: np.ndarray, s: np.ndarray, g: np.ndarray, G: int, trim_by: float, shmi: bool,
                         consistency: bool) -> dict[str, np.ndarray]:
    """Per group: units used ``n``, ``phi`` (consistency-corrected if asked), ``tau2`` and the test's ``p``."""
    used = ~np.isnan(zt)
    n = np.bincount(g[used], minlength=G).astype(float)
    phi = np.bincount(g[used], weights=zt[used] ** 2, minlength=G) / np.where(n > 0, n, 1)
    if consistency:
        phi = phi / trimmed_normal_second_moment(trim_by, "truncation" if shmi else "winsorisation")
    w = np.where(used, 1 / s**2, 0.0)
    sw, sw2 = np.bincount(g, weights=w, minlength=G), np.bincount(g, weights=w**2, minlength=G)
    with np.errstate(divide="ignore", invalid="ignore"):
        tau2 = np.where(n * phi < n - 1, 0.0, np.maximum(0.0, (n * phi - (n - 1)) / (sw - sw2 / sw)))
    p = np.where(n > 1, stats.chi2.sf(n * phi, np.maximum(n - 1, 1)), np.nan)
    return {"n": n, "phi": phi, "tau2": tau2, "p": p}


def _limits(e: np.ndarray, adj: np.ndarray, phi: np.ndarray, tau2: np.ndarray, level: float,
            shmi: bool) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper limits at ``level`` at each unit's expected count, with the adjustment it uses."""
    lo_p, hi_p, zq = z_of_level(level)
    t = 0.0 if shmi else 1.0
    sx = 1 / np.sqrt(e) if shmi else 1 / (2 * np.sqrt(e))
    ll0, ul0 = np.full(len(e), np.nan), np.full(len(e), np.nan)
    plain = adj == "none"  # exact Poisson limits (slow chi-squared quantiles) only where used
    with np.errstate(divide="ignore", invalid="ignore"):
        ll0[plain] = stats.chi2.ppf(lo_p, 2 * e[plain]) / 2 / e[plain]
        ul0[plain] = stats.chi2.ppf(hi_p, 2 * (e[plain] + 1)) / 2 / e[plain]
    se_phi = np.sqrt(np.maximum(phi, 1.0)) * sx
    se_tau = np.sqrt(sx**2 + tau2)

    def inv(v: np.ndarray) -> np.ndarray:
        return np.exp(v) if shmi else np.maximum(v, 0.0) ** 2

    lower = np.select([adj == "phi", adj == "tau2"], [inv(t - zq * se_phi), inv(t - zq * se_tau)], ll0)
    upper = np.select([adj == "phi", adj == "tau2"], [inv(t + zq * se_phi), inv(t + zq * se_tau)], ul0)
    return lower, upper
