"""Statistical process control (SPC) for monthly monitoring: XmR, u and p charts.

Follows NHS England's *Making Data Count* (MDC: "Making Data Count: strengthening your decisions", NHS
Improvement 2019) as implemented by NHSRplotthedots v0.2.2 (NHS-R Community, MIT licence; functions
``ptd_spc``, ``ptd_spc_standard``, ``ptd_calculate_point_type``, ``ptd_calculate_assurance_type``). The
XmR calculations, the special-cause rules, their precedence and the point, variation and assurance
labels match that package exactly (see ``tests/test_spc.py`` for its test vectors).

Process limits (XmR chart)
--------------------------
Within each *segment* (a series, or the part of it between two change points when rebased) the centre
line is the mean of the baseline points and the moving ranges are ``|y_t - y_{t-1}|`` between consecutive
baseline points. With ``AMR`` their average:

- process limits ``mean +/- 2.66 * AMR``. ``2.66 = 3 / d2`` rounded, where ``d2 = 1.128`` is the bias
  constant of the range of two observations, so ``AMR / d2`` estimates sigma;
- two-sigma lines ``mean +/- 2 * (2.66 / 3) * AMR`` (NHSRplotthedots' "near process limits");
- optional moving-range screening (``screen_outliers=True``; NHSRplotthedots' default, not MDC Excel's):
  moving ranges of ``3.267 * AMR`` or more are dropped and AMR recomputed once. ``3.267 = D4`` for
  subgroups of two, the upper limit of the moving-range chart.

Baselines ("fix after n points"): ``baseline=n`` uses the first ``n`` points of each segment (as
NHSRplotthedots' ``fix_after_n_points``); ``baseline=(start, end)`` the points with ``start <= time <= end``.
The limits so computed are extended over the whole segment.

Attribute charts (varying denominators)
---------------------------------------
- u chart (rates): ``u_i = events_i / exposure_i``; centre ``ubar = sum(events) / sum(exposure)`` over the
  baseline; ``sigma_i = sqrt(ubar / exposure_i)``; limits ``ubar +/- 3 sigma_i`` (lower limit clipped at 0).
- p chart (proportions): ``p_i = numerator_i / denominator_i``; ``pbar = sum(numerator) / sum(denominator)``;
  ``sigma_i = sqrt(pbar (1 - pbar) / denominator_i)``; limits ``pbar +/- 3 sigma_i`` clipped to [0, 1].
  Two-sigma lines are ``centre +/- 2 sigma_i``, clipped the same way. ``multiplier`` scales everything
  (per 1,000, per cent).

Special-cause rules (within a segment)
--------------------------------------
1. *Outside limits*: a point above the upper or below the lower process limit (strictly).
2. *Shift (run)*: ``run_length`` (default 7) consecutive points on the same side of the mean; a point on
   the mean breaks the run. Every point of the run is flagged.
3. *Trend*: ``trend_length`` (default 7) consecutive points each strictly higher (or each strictly lower)
   than the one before; equal neighbours break it. Every point of the trend is flagged. NHSRplotthedots
   uses 7 for both; MDC's Excel tool allows 6 or 7, so both lengths are settings.
4. *Two in three*: two of three consecutive points beyond the same two-sigma line (between it and the
   process limit), with all three on the same side of the mean; the points beyond the line are flagged.

A point flagged by several rules takes its type from the first in the order outside limits, trend, two in
three, shift (NHSRplotthedots 0.2.2). Its direction is the side of the mean (or, for trends, the direction
of the trend), and with ``improvement`` it becomes ``special_cause_improvement`` or
``special_cause_concern`` (``special_cause_neutral_high``/``_low`` when ``improvement="neither"``).

Icons (per segment)
-------------------
- Variation: the type of the segment's last point: "common cause", "special cause improvement high/low",
  "special cause concern high/low" or "neither high/low".
- Assurance (needs a target and a direction): target above the upper limit -> "consistently fail" when
  higher is better ("consistently pass" when lower is better); below the lower limit -> the reverse;
  otherwise "inconsistent". NHSRplotthedots reports it for the last segment only (from its last point's
  limits); here every segment gets one, the last segment's equals the package's.

Everything is vectorised over many series at once: rows are sorted by series and time once, and every
per-segment quantity is a ``numpy.bincount`` or a cumulative run-length computation on the sorted arrays
(no Python loop per series), so 6,500 practices x 60 months take well under a second.

Modules: :mod:`~pbc_analysis.methods.spc.rules` (the constants and the pattern rules: runs, trends, two in
three) and :mod:`~pbc_analysis.methods.spc.charts` (the XmR, u and p charts on many series at once). The charts
are drawn by :func:`pbc_analysis.publish.figures.plot_spc`.
"""

from __future__ import annotations

from pbc_analysis.methods.spc.charts import p_chart, u_chart, xmr
from pbc_analysis.methods.spc.rules import (
    ASSURANCE_ICONS,
    D2,
    D4,
    IMPROVEMENT,
    LIMIT,
    LIMIT_CLOSE,
    POINT_TYPES,
    RUN_LENGTH,
    SPECIAL_CAUSE,
    TREND_LENGTH,
    VARIATION_ICONS,
    Improvement,
    part_of,
    part_of_two_in_three,
    run_flags,
    trend_flags,
    two_in_three_flags,
)

__all__ = ["ASSURANCE_ICONS", "D2", "D4", "IMPROVEMENT", "LIMIT", "LIMIT_CLOSE", "POINT_TYPES", "RUN_LENGTH",
           "SPECIAL_CAUSE", "TREND_LENGTH", "VARIATION_ICONS", "Improvement", "p_chart", "part_of",
           "part_of_two_in_three", "run_flags", "trend_flags", "two_in_three_flags", "u_chart", "xmr"]
