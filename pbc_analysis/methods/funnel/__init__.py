"""Funnel plots: control limits, over-dispersion and outliers for practice-level indicators.

Small, pure functions on tidy DataFrames, vectorised over units (the only Python loops are over the points
of a plotted axis, whose construction is a recursion, over the steps of bisections, and over funnels when
choosing each one's adjustment):

- :mod:`~pbc_analysis.methods.funnel.phe` -- **PHE / Fingertips funnels**: :func:`funnel_limits`,
  :func:`assign_funnel_significance` and :func:`funnel_points` reproduce PHEindicatormethods v2.1.0
  (proportions with Wilson-score limits; ratios and rates with exact Poisson limits found by bisection; 95%
  and 99.8%).
- :mod:`~pbc_analysis.methods.funnel.overdispersion` -- **over-dispersed funnels** (Spiegelhalter 2005, as
  FunnelPlotR v0.6.0 implements them, with its issue 33 corrected): :func:`funnel_overdispersion` (z-scores,
  winsorising or truncation, phi, the dispersion test, tau^2 by DerSimonian-Laird, unadjusted,
  multiplicative and additive limits), :func:`od_limits`, :func:`funnel_outliers`,
  :func:`trimmed_normal_second_moment`.
- :mod:`~pbc_analysis.methods.funnel.grouped` -- :func:`sr_overdispersion_by_group`: the same for thousands
  of funnels of standardised ratios at once (benchmarking).
- :mod:`~pbc_analysis.methods.funnel.lines` -- :func:`funnel_lines`: limit lines in long form for
  :func:`pbc_analysis.publish.figures.plot_funnel`, which draws them.
- :mod:`~pbc_analysis.methods.funnel.common` -- the choice types (``Literal``), normal quantiles, R's rounding
  and the checks of input columns they share.

References
----------
Spiegelhalter DJ (2005), Funnel plots for comparing institutional performance, Stat Med 24:1185-1202.
Spiegelhalter DJ, Sherlaw-Johnson C, Bardsley M et al. (2012), JRSS A 175:1-47.
PHEindicatormethods v2.1.0 (UKHSA/DHSC, GPL-3), R/Funnels.R and R/utils.R.
FunnelPlotR v0.6.0 (nhs-r-community, MIT), R/od_adjustment.R, R/calculate_limits.R, R/outliers_func.R.
"""

from __future__ import annotations

from pbc_analysis.methods.funnel.common import (
    EXACT_Z,
    FUNNELPLOTR_Z,
    AutoRule,
    DataType,
    Overdispersion,
    RateType,
    RatioType,
    SrMethod,
    Statistic,
    level_tag,
    r_round,
)
from pbc_analysis.methods.funnel.grouped import FUNNEL_LEVELS, sr_overdispersion_by_group
from pbc_analysis.methods.funnel.lines import funnel_lines
from pbc_analysis.methods.funnel.overdispersion import (
    LIMIT_COLUMNS,
    USED_COLUMNS,
    FunnelResult,
    dispersion,
    funnel_outliers,
    funnel_overdispersion,
    od_limits,
    trimmed_normal_second_moment,
    truncate,
    winsorise,
)
from pbc_analysis.methods.funnel.phe import (
    DSR_NOT_APPLICABLE,
    SIGNIFICANCE_LEVELS,
    assign_funnel_significance,
    funnel_limits,
    funnel_points,
    funnel_ratio_interval,
    phe_poisson_probability,
    poisson_funnel,
    wilson_funnel_limit,
)

__all__ = [
    "DSR_NOT_APPLICABLE", "EXACT_Z", "FUNNELPLOTR_Z", "FUNNEL_LEVELS", "LIMIT_COLUMNS", "SIGNIFICANCE_LEVELS",
    "USED_COLUMNS", "AutoRule", "DataType", "FunnelResult", "Overdispersion", "RateType", "RatioType", "SrMethod",
    "Statistic", "assign_funnel_significance", "dispersion", "funnel_limits", "funnel_lines", "funnel_outliers",
    "funnel_overdispersion", "funnel_points", "funnel_ratio_interval", "level_tag", "od_limits",
    "phe_poisson_probability", "poisson_funnel", "r_round", "sr_overdispersion_by_group",
    "trimmed_normal_second_moment", "truncate", "wilson_funnel_limit", "winsorise",
]
