"""Financial risk of indicative budgets: the high-cost risk pool, its adequacy, and in-year monitoring.

Small practices face large swings from a few very expensive patients, and the Audit Commission (2007,
*Putting commissioning into practice*, paras 130-134) found few PCTs with early-warning arrangements
and most practices unaware of how risk was shared. The rules here are those it describes.

Settings and entry point
    :class:`Params` holds the pool's and monitoring's settings (nothing here follows from the data; the
    target year, base years, completeness and ``as_at`` are the budget stage's,
    :class:`pbc_analysis.stages.budgets.Params`). :func:`run` ``(inputs, params, budgets)`` takes the budget
    stage's :class:`~pbc_analysis.stages.budgets.Result` to the risk pool (:func:`assess_pool`) and in-year
    monitoring (:func:`monitor`); its :class:`Result` gives ``tables()``, ``headline()`` and ``describe()``.

Modules: ``params`` (settings), ``pool`` (charges, top-slice, simulation, adequacy), ``forecast`` (monthly
costs, seasonal profile, run-rate forecast, back-test, prediction interval, SPC, red / amber / green),
``monitoring`` (:func:`monitor`), ``stage`` (:func:`run`, :class:`Result`, tables, headline, description).

Risk pool (:func:`pool_charges`, :func:`apply_top_slice`)
    For each patient-year of the ``high_cost_patients`` table, cost above ``threshold`` (default GBP
    15,000; typically 10,000 to 20,000) is charged to the pool and the rest to the practice. The pool is
    funded by a contingency top-slice of the envelope (typically 3 to 5%): each practice's net budget is
    ``budget x (1 - top_slice)`` in whole pence (largest remainder), and the pool is what is left, so
    net budgets + pool = envelope exactly. The table only holds patients above a reporting floor, so the
    threshold must not be below that floor (``reporting_floor``).

Pool adequacy (:func:`simulate_pool`, :func:`exhaustion_probability`, :func:`smallest_top_slice`)
    The year's pool charge is a compound Poisson sum (the collective risk model: Klugman, Panjer and
    Willmot, *Loss Models*, ch. 9): ``S = sum_{i=1}^{N} X_i`` with ``N ~ Poisson(lambda)`` patients above
    the threshold and ``X_i`` their excess costs, resampled with replacement from the base years' patients
    (a nonparametric bootstrap of the severity, Efron and Tibshirani 1993) after re-pricing each year's
    costs to the target year (the PCT's tariff index of that year) and scaling ``lambda`` (the base
    years' mean count) by list growth. P(pool exhausted) = P(S > pool) over ``n_sims`` draws from
    ``numpy.random.default_rng(seed)``; the smallest top-slice that keeps it at or below
    ``max_probability`` is the ``1 - max_probability`` quantile of S (the smallest simulated value with
    at most that share of draws above it) over the envelope.

In-year monitoring (:func:`monitor`)
    * Seasonal profile: each month's share of its financial year's PCT cost, averaged over complete past
      years (:func:`seasonal_profile`); a practice's profiled budget to month k is ``budget x Pi_k``, the
      cumulative share.
    * Completeness: hospital data (SUS) arrive about three months late, so the latest months are
      incomplete. The budget stage divides the recorded cost of each incomplete month by its completeness
      factor (:mod:`pbc_analysis.stages.budgets.completeness`: from snapshots of past extracts by the chain
      ladder, Mack 1993; from the data-quality model; or supplied), and monitoring uses the same table
      (``Result.completeness`` of :func:`pbc_analysis.stages.budgets.run`).
    * Forecast outturn by the run rate on the profile, ``F = A_k / Pi_k`` (A_k the completeness-adjusted
      year-to-date cost), with an empirical prediction interval (Williams and Goodman 1971, *JASA* 66:752):
      standardised errors ``r = (O - F) / sqrt(F)`` of the same forecast in past complete years (O the
      actual outturn; variance proportional to the forecast, as for a compound Poisson cost) give a mean
      ``mu_k`` and SD ``sigma_k`` per month elapsed, and the interval is ``F + mu_k sqrt(F) +/- z sigma_k
      sqrt(F)``, widened by the completeness factors' own uncertainty. :func:`backtest` checks its
      coverage year by year (:func:`backtest_coverage`), with each year's interval built from the other years only.
    * Early warning: forecast variance ``(F - budget) / budget`` at or above ``amber`` (default 2%) or
      ``red`` (5%); an SPC signal of concern (:func:`pbc_analysis.methods.spc.xmr`, Making Data Count rules, higher
      is worse) on the monthly cost at target-year prices divided by its month's profile share
      (an annualised, deseasonalised run rate), with limits from the base years. Status: **red** if the
      variance is at or above ``red``, or at or above ``amber`` with an SPC concern; **amber** if the
      variance is at or above ``amber`` or SPC shows concern; **green** otherwise. The same rules are
      applied to consortia (sums of their practices; the interval assumes practices' errors independent).

Monitoring is on gross cost against the gross budget: the pool's charges are known per patient-year
only, so the year-end settlement against net budgets is the pool table's job, not the monthly one's.
Everything is vectorised; loops run over years, months elapsed or simulation chunks only.
"""

from __future__ import annotations

from pbc_analysis.stages.risk.basis import basis_budgets, threshold_table
from pbc_analysis.stages.risk.forecast import (
                                               backtest,
                                               backtest_coverage,
                                               error_model,
                                               forecast_outturn,
                                               month_of_year,
                                               monthly_costs,
                                               prediction_interval,
                                               rag_status,
                                               seasonal_profile,
                                               spc_signals,
)
from pbc_analysis.stages.risk.monitoring import Monitoring, monitor
from pbc_analysis.stages.risk.params import Params
from pbc_analysis.stages.risk.pool import (
                                               RiskResult,
                                               adequacy_curve,
                                               apply_top_slice,
                                               assess_pool,
                                               check_threshold,
                                               check_top_slice,
                                               excess_costs,
                                               exhaustion_probability,
                                               pool_charges,
                                               simulate_pool,
                                               smallest_top_slice,
)
from pbc_analysis.stages.risk.stage import (
                                               Result,
                                               describe,
                                               headline,
                                               monitoring_headline,
                                               net_budget_table,
                                               result_tables,
                                               run,
)

__all__ = [
    "Monitoring", "Params", "Result", "RiskResult", "adequacy_curve", "apply_top_slice", "assess_pool", "backtest",
    "backtest_coverage", "basis_budgets", "check_threshold", "check_top_slice", "describe", "error_model", "excess_costs",
    "exhaustion_probability", "forecast_outturn", "headline", "monitor", "monitoring_headline", "month_of_year",
    "monthly_costs", "net_budget_table", "pool_charges", "prediction_interval", "rag_status", "result_tables", "run", "seasonal_profile",
    "simulate_pool", "smallest_top_slice", "spc_signals", "threshold_table",
]
