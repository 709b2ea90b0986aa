"""Fair benchmarking of practices: standardised ratios, funnels, peer positions, flags, scorecard (notebook 02).

The question a PBC consortium asks is "does this practice refer more than its patients need?". The answer
compares each practice's observed count with the count *expected* from its list, its age-sex structure and
(optionally) its deprivation, never with the raw PCT average. One module per step:

1. :mod:`~pbc_analysis.stages.benchmark.cube` -- **the count cube** (:func:`build_cube`): validated inputs
   reduced once to arrays of counts, cost and lists over practices, series and months; everything after
   is numpy on them (all of England, 6,500 practices x 61 series x 60 months, takes seconds).
2. :mod:`~pbc_analysis.stages.benchmark.expected` -- **expected counts** (:func:`expected_counts`): indirect
   age-sex standardisation on reference rates (Breslow & Day 1987), a Poisson regression on deprivation
   (:func:`poisson_offset_fit`), scaled to the PCT (``target="pct"``) or kept on the reference rates; and
   **standardised ratios** O/E with exact or Byar's limits (:func:`standardised_ratios`, as
   PHEindicatormethods).
3. :mod:`~pbc_analysis.stages.benchmark.funnels` -- **funnels** (:func:`funnel_table`): z-scores,
   over-dispersion (phi, tau^2 from winsorised z-scores; Spiegelhalter 2005) and each practice's position
   against the 95% and 99.8% limits, via :mod:`pbc_analysis.methods.funnel`.
4. :mod:`~pbc_analysis.stages.benchmark.peers` -- **peer positions** (:func:`peer_positions`): percentile and
   decile among the PCT's and the consortium's practices (OpenPrescribing's deciles), change and trend;
   :func:`decile_fan` for the monthly decile chart.
5. :mod:`~pbc_analysis.stages.benchmark.flagging` -- **flags** (:func:`flags`): ``high_referrer`` (above the
   upper limit at ``high_level``, 99.8%), ``possible_under_referrer`` (below the lower limit at
   ``under_level``, 95%: fewer referrals than need implies, reviewed before any saving is paid) and
   ``persistent_outlier``; the **scorecard** (:func:`scorecard`).
6. :mod:`~pbc_analysis.stages.benchmark.stage` -- the stage in one call: :func:`run` with the
   :class:`Params` of :mod:`~pbc_analysis.stages.benchmark.params` (the one source of every setting; the
   ones notebook 04's under-referrer gate uses are ``shared``), its :class:`Result` (``tables()``,
   ``headline()``, ``describe()``), and :func:`under_referrer_flags` for the gate. Monthly monitoring uses
   each month's O/E (expected counts scaled to the PCT total in that month, so seasonality cancels) with
   :mod:`pbc_analysis.methods.spc`.

:mod:`~pbc_analysis.stages.benchmark.national` calibrates national age-sex reference rates to every practice's counts
in the engine (:func:`~pbc_analysis.stages.benchmark.national.national_reference_rates`: national expected = observed, each measure and specialty) and
benchmarks every practice of the nation against them
(:func:`~pbc_analysis.stages.benchmark.national.national_benchmark`, ``target="reference"``).

:mod:`~pbc_analysis.stages.benchmark.adjusted` applies the deprivation adjustment and funnel to any table of
units (:func:`deprivation_adjusted_ratios`, e.g. England's practices from open data).

References
----------
Breslow NE, Day NE (1987), Statistical methods in cancer research II, ch. 2.
Spiegelhalter DJ (2005), Funnel plots for comparing institutional performance, Stat Med 24:1185-1202.
PHEindicatormethods v2.1.0 (UKHSA/DHSC): ``calculate_ISRatio``.
NHS Digital (2023), SHMI methodology; NHS England (2019), Making Data Count.
"""

from __future__ import annotations

from pbc_analysis.stages.benchmark.adjusted import deprivation_adjusted_ratios
from pbc_analysis.stages.benchmark.cube import ALL, N_AS, BenchmarkError, Cube, build_cube, period_of_months, select_measures
from pbc_analysis.stages.benchmark.expected import expected_counts, poisson_offset_fit, standardised_ratios
from pbc_analysis.stages.benchmark.flagging import flags, scorecard
from pbc_analysis.stages.benchmark.funnels import FUNNEL_KEYS, Funnels, funnel_lines, funnel_panels, funnel_table
from pbc_analysis.stages.benchmark.params import STANDARDISATIONS, Measure, Params, Period, Standardisation, Target
from pbc_analysis.stages.benchmark.peers import decile_fan, peer_positions
from pbc_analysis.stages.benchmark.stage import (
    IMPROVEMENT,
    RATIO_COLUMNS,
    SPECIALTY_RATIO_COLUMNS,
    Result,
    benchmark_practices,
    describe,
    headline,
    result_tables,
    run,
    under_referrer_flags,
)

__all__ = [
    "ALL", "FUNNEL_KEYS", "IMPROVEMENT", "N_AS", "RATIO_COLUMNS", "SPECIALTY_RATIO_COLUMNS", "STANDARDISATIONS",
    "BenchmarkError", "Cube", "Funnels", "Measure", "Params", "Period", "Result", "Standardisation", "Target",
    "benchmark_practices", "build_cube", "decile_fan", "deprivation_adjusted_ratios", "describe", "expected_counts",
    "flags", "funnel_lines", "funnel_panels", "funnel_table", "headline", "peer_positions", "period_of_months",
    "poisson_offset_fit", "result_tables", "run", "scorecard", "select_measures", "standardised_ratios",
    "under_referrer_flags",
]
