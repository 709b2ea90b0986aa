"""Funnels of practices' standardised ratios (benchmarking step 4): z-scores, over-dispersion, limits, positions.

Each group (period x measure x specialty; the practices are the units) is a Spiegelhalter funnel of O/E with
the target 1, computed for all groups at once by
:func:`pbc_analysis.methods.funnel.grouped.sr_overdispersion_by_group`: z-scores on the square-root scale
(``sr_method="CQC"``, winsorised) or the log scale (``"SHMI"``, truncated), phi, tau^2 and the limits in use
at each practice's expected count, at 95% and 99.8% (and at the flag levels, when they differ). Positions:
``above 99.8%``, ``above 95%``, ``within``, ``below 95%``, ``below 99.8%``.

References
----------
Spiegelhalter DJ (2005), Funnel plots for comparing institutional performance, Stat Med 24:1185-1202.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, cast

import numpy as np
import pandas as pd

from pbc_analysis.methods.funnel import FUNNEL_LEVELS, Overdispersion, SrMethod, level_tag, od_limits, sr_overdispersion_by_group
from pbc_analysis.methods.indicators import ci_suffix
from pbc_analysis.stages.benchmark.cube import ALL, BenchmarkError
from pbc_analysis.stages.benchmark.peers import _group_codes

__all__ = ["FUNNEL_KEYS", "Funnels", "funnel_lines", "funnel_panels", "funnel_table"]


@dataclass(frozen=True, eq=False)
class Funnels:
    """Funnel results for every period, measure and specialty.

    ``units``: the ratio table with, per practice, ``z`` (the z-score on the method's scale),
    ``limit_lower_95_0``, ``limit_upper_95_0``, ``limit_lower_99_8``, ``limit_upper_99_8`` (control
    limits at the practice's expected count, with the over-dispersion adjustment in use) and
    ``position`` (``above 99.8%``, ``above 95%``, ``within``, ``below 95%``, ``below 99.8%``);
    ``dispersion``: per group the target, units, phi, tau2, the dispersion test and the adjustment
    used and why. :func:`funnel_lines` draws a group's limits over a grid of expected counts.
    """

    units: pd.DataFrame
    dispersion: pd.DataFrame
    sr_method: str = "CQC"


FUNNEL_KEYS = ["period", "measure", "specialty_code"]


def funnel_table(ratios: pd.DataFrame, overdispersion: str = "auto", sr_method: str = "CQC", trim_by: float = 0.1,
                 alpha: float = 0.05, consistency: bool = True, levels: Sequence[float] = ()) -> Funnels:
    """Spiegelhalter funnels of standardised ratios O/E for every period, measure and specialty.

    Each group (period x measure x specialty; the practices are the units) is a funnel as
    :func:`pbc_analysis.methods.funnel.funnel_overdispersion` with ``data_type="SR"`` computes it, done for
    all groups at once by :func:`pbc_analysis.methods.funnel.sr_overdispersion_by_group`: z-scores on the
    square-root scale (``sr_method="CQC"``, winsorised at ``trim_by`` each end; Spiegelhalter 2005)
    or the log scale (``"SHMI"``, truncated), phi = mean trimmed z^2, tau^2 by DerSimonian-Laird,
    and limits that are unadjusted (exact Poisson), multiplicative (``"phi"``) or additive
    (``"tau2"``); ``"auto"`` adjusts additively only when the dispersion test rejects at ``alpha``.
    Expected counts are not rounded. ``consistency`` (default on) rescales phi to the variance of
    untrimmed normal z-scores (:func:`pbc_analysis.methods.funnel.trimmed_normal_second_moment`): practice
    propensities really do differ, and without it the limits are about a fifth too narrow and flag
    several times more practices than their level says (measured over seeds by
    ``scripts/simulate_benchmark.py``). Practices with no expected events in a group have no ratio and
    are left out of that group's funnel (counted in ``dispersion.n_no_expected``).

    Parameters
    ----------
    ratios : pandas.DataFrame
        :func:`~pbc_analysis.stages.benchmark.expected.standardised_ratios` rows.
    overdispersion : {"auto", "tau2", "phi", "none"}
    sr_method : {"CQC", "SHMI"}
    trim_by : float
        Share of z-scores trimmed at each end, in (0, 0.5).
    alpha : float
        Level of the dispersion test of ``"auto"``.
    consistency : bool
        Rescale the trimmed phi to the full variance.
    levels : sequence of float
        Levels with limit columns (``limit_lower_<c>``, ``limit_upper_<c>``) besides 95% and 99.8% (the flag
        levels, when they are others).

    Returns
    -------
    Funnels

    References
    ----------
    Spiegelhalter (2005); FunnelPlotR v0.6.0; see :mod:`pbc_analysis.methods.funnel`.
    """
    need = FUNNEL_KEYS + ["practice_code", "observed", "expected", "ratio"]
    missing = [c for c in need if c not in ratios.columns]
    if missing:
        raise BenchmarkError(f"funnel_table needs columns {missing} (from standardised_ratios)")
    out = ratios.reset_index(drop=True).copy()
    raw = _group_codes(out, FUNNEL_KEYS)
    uniq, codes = np.unique(raw, return_inverse=True)
    first = np.unique(codes, return_index=True)[1]
    groups = pd.MultiIndex.from_frame(out[FUNNEL_KEYS].iloc[first].astype("str"))
    e = out["expected"].to_numpy(float)
    ok = e > 0
    sub_codes, sub_groups = pd.factorize(codes[ok], sort=True)
    extra = [lv for lv in dict.fromkeys(levels) if lv not in FUNNEL_LEVELS]
    units, summary = sr_overdispersion_by_group(out["observed"].to_numpy(float)[ok], e[ok], sub_codes,
                                                sr_method=cast(SrMethod, sr_method), trim_by=trim_by,
                                                overdispersion=cast(Overdispersion, overdispersion), alpha=alpha,
                                                consistency=consistency, extra_levels=extra)
    columns = [("z", "z")] + [(f"{b}{level_tag(lv)}", f"limit_{b}_{ci_suffix(lv)}")
                              for lv in (*FUNNEL_LEVELS, *extra) for b in ("lower", "upper")]
    for src, dst in columns:
        col = np.full(len(out), np.nan)
        col[ok] = units[src].to_numpy(float)
        out[dst] = col
    r = out["ratio"].to_numpy(float)
    position = np.select(
        [np.isnan(out["limit_upper_95_0"].to_numpy()), r > out["limit_upper_99_8"], r > out["limit_upper_95_0"],
         r < out["limit_lower_99_8"], r < out["limit_lower_95_0"]],
        ["", "above 99.8%", "above 95%", "below 99.8%", "below 95%"], default="within")
    out["position"] = position
    keys = pd.DataFrame(list(groups[np.asarray(sub_groups)]), columns=FUNNEL_KEYS) if len(summary) else \
        pd.DataFrame(columns=FUNNEL_KEYS)
    disp = pd.concat([keys, summary.drop(columns="group")], axis=1)
    n_all = np.bincount(codes, minlength=len(groups))
    disp["n_no_expected"] = n_all[np.asarray(sub_groups)] - disp["n_units"].to_numpy()
    for c in FUNNEL_KEYS:
        disp[c] = disp[c].astype("str")
    return Funnels(out, disp.sort_values(FUNNEL_KEYS, ignore_index=True), sr_method)


def funnel_lines(funnels: Funnels, period: str, measure: str, specialty_code: str, n_grid: int = 300) -> pd.DataFrame:
    """One funnel's target and 95%/99.8% limits (the adjustment in use) over a grid of expected
    counts, for :func:`pbc_analysis.publish.figures.plot_funnel` (columns ``denominator``, ``target``,
    ``lower95``, ``upper95``, ``lower998``, ``upper998``).

    Parameters
    ----------
    funnels : Funnels
    period, measure, specialty_code : str
        The funnel.
    n_grid : int
        Points of the grid.

    Returns
    -------
    pandas.DataFrame

    References
    ----------
    Spiegelhalter (2005): the limits of :func:`pbc_analysis.methods.funnel.od_limits`.
    """
    d = funnels.dispersion
    row = d[(d["period"] == period) & (d["measure"] == measure) & (d["specialty_code"] == specialty_code)]
    if row.empty:
        raise BenchmarkError(f"no funnel for {period} {measure} {specialty_code}")
    row = row.iloc[0]
    u = funnels.units
    e = u.loc[(u["period"] == period) & (u["measure"] == measure) & (u["specialty_code"] == specialty_code),
              "expected"].to_numpy(float)
    e = e[e > 0]
    grid = np.unique(np.concatenate([np.geomspace(max(1.1, e.min() * 0.8), e.max() * 1.05, n_grid), e]))
    lim = od_limits(grid, data_type="SR", sr_method=cast(SrMethod, funnels.sr_method), phi=float(row["phi"]), tau2=float(row["tau2"]))
    prefix = "" if row["overdispersion_used"] == "none" else f"{row['overdispersion_used']}_"
    out = pd.DataFrame({"denominator": grid, "target": 1.0})
    for src, dst in zip(["ll95", "ul95", "ll998", "ul998"], ["lower95", "upper95", "lower998", "upper998"]):
        out[dst] = lim[prefix + src].to_numpy()
    return out


def funnel_panels(funnels: Funnels, period: str, measure: str | None = None, specialty_code: str | None = ALL,
                  labels: dict[str, str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Units and limit lines of several funnels for small multiples (:func:`pbc_analysis.publish.figures.funnel_grid_figure`).

    With ``measure`` given and ``specialty_code=None``: one panel per specialty of that measure; with
    ``measure=None``: one panel per measure at ``specialty_code`` (``all`` by default). Panels are
    named by ``labels`` (e.g. ``{"110": "110 Trauma and orthopaedics"}``) where given.

    Parameters
    ----------
    funnels : Funnels
    period : str
    measure : str, optional
    specialty_code : str, optional
    labels : dict, optional
        Panel names by specialty code or measure.

    Returns
    -------
    units, lines : pandas.DataFrame
        Each with a ``panel`` column.

    References
    ----------
    Spiegelhalter (2005) (funnel plots as small multiples).
    """
    u = funnels.units
    sel = u["period"] == period
    if measure is not None:
        sel &= u["measure"] == measure
    if specialty_code is not None:
        sel &= u["specialty_code"] == specialty_code
    else:
        sel &= u["specialty_code"] != ALL
    units = u[sel & u["expected"].gt(0)].copy()
    key = "specialty_code" if specialty_code is None else "measure"
    names = labels or {}
    units["panel"] = units[key].astype("str").map(lambda v: names.get(v, v))
    lines = []
    for (m, sc), g in units.groupby(["measure", "specialty_code"], sort=True, observed=True):
        ln = funnel_lines(funnels, period, str(m), str(sc))
        ln["panel"] = g["panel"].iloc[0]
        lines.append(ln)
    units = units.sort_values([key, "practice_code"], kind="stable")
    return units, pd.concat(lines, ignore_index=True)
