"""The referral evaluation (notebook 03): did engaged practices refer less, compared with what?

``evaluation.Params(**settings)`` -> ``evaluation.run(inputs, params)`` -> :class:`Result` with ``tables()``,
``headline()`` and ``describe()``. The estimators live in :mod:`pbc_analysis.methods.its` (segmented regression)
and :mod:`pbc_analysis.methods.did` (staggered difference-in-differences); this package turns validated inputs
into what they take and reads their results:

==================================================  ========================================================
module                                              what it holds
==================================================  ========================================================
:mod:`~pbc_analysis.stages.evaluation.params`        :class:`Params`: every setting, its rule when ``"auto"``
                                                    (windows, interruption, last complete months) and the
                                                    cross-setting rules checked before any notebook runs
:mod:`~pbc_analysis.stages.evaluation.stage`         :func:`run`, :class:`Result`, the result tables, the
                                                    results.json headline and its plain-language text
:mod:`~pbc_analysis.stages.evaluation.panels`        practice-month panels, the analysis window, periods, the
                                                    placebo panel, PCT series and cohort exposures
:mod:`~pbc_analysis.stages.evaluation.effects`       DiD by specialty, events avoided, estimator comparison,
                                                    regression to the mean, the provider-change check
:mod:`~pbc_analysis.stages.evaluation.truth`         the synthetic PCT's planted effects and the estimates
                                                    beside them
==================================================  ========================================================

References
----------
Callaway B, Sant'Anna PHC (2021). Difference-in-differences with multiple time periods. J Econometrics
225:200-230.
Lopez Bernal J, Cummins S, Gasparrini A (2017). Interrupted time series regression for the evaluation of public
health interventions: a tutorial. Int J Epidemiol 46:348-355.
"""

from __future__ import annotations

from pbc_analysis.stages.evaluation.effects import (
    DiDEvaluation,
    estimator_comparison,
    evaluate_did,
    events_avoided,
    provider_change_check,
    regression_to_the_mean,
)
from pbc_analysis.stages.evaluation.panels import (
    cohort_exposure,
    its_frame,
    pct_series,
    period_panel,
    placebo_panel,
    practice_month_panel,
    restrict_window,
)
from pbc_analysis.stages.evaluation.params import MIN_BASELINE_MONTHS, MIN_NEVER_ENGAGED, Params, complete_end
from pbc_analysis.stages.evaluation.stage import TABLE_NAMES, Result, describe, headline, result_tables, run
from pbc_analysis.stages.evaluation.truth import engaged_relative_truth, load_truth, planted_truth, recovery

__all__ = ["MIN_BASELINE_MONTHS", "MIN_NEVER_ENGAGED", "TABLE_NAMES", "DiDEvaluation", "Params", "Result",
           "cohort_exposure", "complete_end", "describe", "engaged_relative_truth", "estimator_comparison",
           "evaluate_did", "events_avoided", "headline", "its_frame", "load_truth", "pct_series", "period_panel",
           "placebo_panel", "planted_truth", "practice_month_panel", "provider_change_check", "recovery",
           "regression_to_the_mean", "restrict_window", "result_tables", "run"]
