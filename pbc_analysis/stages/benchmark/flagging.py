"""Flags and the scorecard of practices (benchmarking steps 5 and 6).

A flag is a reason to look, not a verdict: ``high_referrer`` (ratio above the upper funnel limit at
``high_level``), ``possible_under_referrer`` (below the lower limit at ``under_level``: fewer referrals than its
need implies, reviewed before any saving is paid: the Audit Commission's warning against rewarding
under-referral) and ``persistent_outlier`` (flagged in at least ``persistent_min_periods`` of the last
``persistent_window`` periods: one period can be chance or regression to the mean). The scorecard puts each
practice's list, cost, activity, ratios and flags of one period on one row.

References
----------
Audit Commission (2007), Putting commissioning into practice, paras 78-80 (under-referral and savings).
Spiegelhalter DJ (2005), Stat Med 24:1185-1202 (funnel limits as screens).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pbc_analysis import data as _data
from pbc_analysis.core.checks import check_number
from pbc_analysis.methods.indicators import ci_suffix
from pbc_analysis.stages.benchmark.cube import ALL, BenchmarkError
from pbc_analysis.stages.benchmark.peers import _by_unit_then_period

__all__ = ["flags", "scorecard"]


def flags(funnel: pd.DataFrame, high_level: float = 0.998, under_level: float = 0.95,
          persistent_min_periods: int = 2, persistent_window: int = 3) -> pd.DataFrame:
    """Outlier flags per practice, period, measure and specialty from a funnel table.

    - ``high_referrer``: ratio above the upper control limit at ``high_level`` (99.8% by default),
      after standardisation and the chosen over-dispersion adjustment;
    - ``possible_under_referrer``: ratio below the lower limit at ``under_level`` (95% by default):
      fewer events than the practice's need implies. The level is deliberately looser than for high
      referrers: this flag is a screen whose cost of a miss is paying savings for under-referral (which
      the Audit Commission warned against), and its consequence is only a review. It is a prompt for
      review, not a verdict (coding, list
      inflation and a younger-than-recorded list all look the same), and it gates savings in
      :mod:`pbc_analysis.stages.attribution` so that under-referral is never rewarded unreviewed;
    - ``persistent_outlier``: flagged (either way) in at least ``persistent_min_periods`` of the last
      ``persistent_window`` periods up to and including this one (a single period can be chance or
      regression to the mean; persistence is what deserves a conversation).
    ``flag`` summarises: ``high``, ``under``, with ``, persistent`` appended, or empty.

    Parameters
    ----------
    funnel : pandas.DataFrame
        :attr:`~pbc_analysis.stages.benchmark.funnels.Funnels.units` with limit columns at both levels
        (:func:`~pbc_analysis.stages.benchmark.funnels.funnel_table` ``levels``).
    high_level, under_level : float
        The levels of the high-referrer and possible-under-referrer limits.
    persistent_min_periods, persistent_window : int
        Persistent: flagged in at least this many of the last so many periods.

    Returns
    -------
    pandas.DataFrame
        Every row of ``funnel`` (key columns, observed, expected, ratio) with the flags.

    References
    ----------
    Spiegelhalter (2005) (limits as screens); Audit Commission (2007) (under-referral and savings).
    """
    check_number("persistent_window", persistent_window, 1, integer=True)
    check_number("persistent_min_periods", persistent_min_periods, 1, persistent_window, integer=True,
                 fix=f"it counts flagged periods among the last persistent_window = {persistent_window}")
    hi_col, lo_col = f"limit_upper_{ci_suffix(high_level)}", f"limit_lower_{ci_suffix(under_level)}"
    missing = [c for c in (hi_col, lo_col) if c not in funnel.columns]
    if missing:
        raise BenchmarkError(f"the funnel table has no {missing}: compute it with funnel_table(..., "
                             f"levels=[{high_level}, {under_level}])")
    keep = ["period", "practice_code", "consortium", "measure", "specialty_code", "observed", "expected", "ratio"]
    out = funnel[[c for c in keep if c in funnel.columns]].copy()
    r = funnel["ratio"].to_numpy(float)
    out["high_referrer"] = r > funnel[hi_col].to_numpy(float)
    out["possible_under_referrer"] = r < funnel[lo_col].to_numpy(float)
    out, unit = _by_unit_then_period(out)
    any_flag = (out["high_referrer"] | out["possible_under_referrer"]).astype(int)
    cum = any_flag.groupby(unit, sort=False).cumsum()
    recent = cum - cum.groupby(unit, sort=False).shift(persistent_window, fill_value=0)  # rolling window sum
    out["persistent_outlier"] = recent.to_numpy() >= persistent_min_periods
    label = np.where(out["high_referrer"], "high", np.where(out["possible_under_referrer"], "under", ""))
    out["flag"] = np.where(out["persistent_outlier"] & (label != ""), np.char.add(label.astype(str), ", persistent"),
                           label)
    return out.sort_index().reset_index(drop=True)


def scorecard(ratios: pd.DataFrame, flag_table: pd.DataFrame, period: str, measure: str = "referrals",
              level: float = 0.95) -> pd.DataFrame:
    """One row per practice for ``period``: list (person-years), cost, activity by measure, ratios, flags.

    Columns: ``practice_code``, ``consortium``, ``person_years``, ``cost`` (all points of delivery,
    GBP), ``cost_per_head``, then per measure (all specialties) ``<measure>_observed`` and
    ``<measure>_ratio`` with ``<measure>_lower``/``<measure>_upper`` at ``level``, then the
    ``flag`` of ``measure`` (all specialties), ``flagged_specialties`` (specialties of ``measure``
    flagged in the period, ``;``-separated) and ``pct_percentile`` of ``measure``.

    Parameters
    ----------
    ratios : pandas.DataFrame
        Ratios with funnel and peer columns (all periods).
    flag_table : pandas.DataFrame
        :func:`flags` of them.
    period : str
        The period of the scorecard.
    measure : str
        The measure whose flag and percentile are shown.
    level : float
        The confidence level of the intervals shown (one of the ratios' levels).

    Returns
    -------
    pandas.DataFrame
        One row per practice.

    References
    ----------
    PHEindicatormethods (the ratios' intervals); see the module docstring.
    """
    sfx = ci_suffix(level)
    r = ratios[(ratios["period"] == period) & (ratios["specialty_code"] == ALL)]
    if r.empty:
        raise BenchmarkError(f"no ratios for period {period!r}; periods are {sorted(ratios['period'].unique())}")
    base = r[r["measure"] == measure][["practice_code", "consortium", "person_years"]].set_index("practice_code")
    cost = r.groupby("practice_code")["cost"].sum(min_count=1)
    base["cost"] = cost.reindex(base.index)
    base["cost_per_head"] = base["cost"] / base["person_years"]
    wide = r.pivot(index="practice_code", columns="measure", values=["observed", "ratio", f"lower_{sfx}", f"upper_{sfx}"])
    order = [m for m in _data.MEASURES if m in set(r["measure"])]
    for m in order:
        base[f"{m}_observed"] = wide[("observed", m)].reindex(base.index)
        base[f"{m}_ratio"] = wide[("ratio", m)].reindex(base.index)
        base[f"{m}_lower"] = wide[(f"lower_{sfx}", m)].reindex(base.index)
        base[f"{m}_upper"] = wide[(f"upper_{sfx}", m)].reindex(base.index)
    f = flag_table[(flag_table["period"] == period) & (flag_table["measure"] == measure)]
    fa = f[f["specialty_code"] == ALL].set_index("practice_code")["flag"]
    base["flag"] = fa.reindex(base.index).fillna("").to_numpy()
    fs = f[(f["specialty_code"] != ALL) & (f["flag"] != "")]
    spec = fs.groupby("practice_code")["specialty_code"].agg(lambda s: ";".join(sorted(s)))
    base["flagged_specialties"] = spec.reindex(base.index).fillna("").to_numpy()
    if "pct_percentile" in ratios.columns:
        pr = r[r["measure"] == measure].set_index("practice_code")["pct_percentile"]
        base["pct_percentile"] = pr.reindex(base.index)
    return base.reset_index()
