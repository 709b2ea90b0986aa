"""Settings of the benchmarking stage (notebook 02), the one source of each; and the ones notebook 04 shares.

Notebook 04 (savings attribution) re-runs benchmarking for its under-referrer gate
(:func:`pbc_analysis.stages.benchmark.stage.under_referrer_flags`): every setting that changes which practices
are possible under-referrers is ``shared=True`` here (``standardisation``, ``target``, ``overdispersion``,
``sr_method``, ``trim_by``, ``consistency``, ``under_level``), so the config sets it once, under
``parameters:``, for both notebooks, and 04 declares exactly those names. The gate always benchmarks every
financial year (the years savings are shared for), whatever ``period`` and ``periods`` say.

References
----------
Spiegelhalter DJ (2005), Funnel plots for comparing institutional performance, Stat Med 24:1185-1202.
PHEindicatormethods v2.1.0 (UKHSA/DHSC): indirectly standardised ratios and their intervals.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from pbc_analysis.core import calendar
from pbc_analysis.core.checks import choices_of
from pbc_analysis.core.params import AUTO, StageParams, setting
from pbc_analysis.methods.funnel import Overdispersion, SrMethod
from pbc_analysis.methods.indicators import confidence_levels

__all__ = ["PERIODS_RULE", "STANDARDISATIONS", "Measure", "Params", "Period", "Standardisation", "Target",
           "window_periods"]

#: the periods practices are compared over (labels: "2005/06", "2005", "2005/06 Q1", "2005-04")
Period = Literal["financial_year", "calendar_year", "quarter", "month"]
#: what the expected counts adjust for
Standardisation = Literal["none", "age_sex", "deprivation", "age_sex+deprivation"]
#: the benchmark: this PCT's practices, or the reference rates
Target = Literal["pct", "reference"]
#: the measures (GP referrals and the points of delivery, as pbc_analysis.data.MEASURES)
Measure = Literal["referrals", "first_op", "followup_op", "elective", "non_elective", "ae"]
STANDARDISATIONS: tuple[str, ...] = choices_of(Standardisation)

PERIODS_RULE = "every period (of the kind `period` names) that a month of the data window falls in, oldest first"


def window_periods(period: str, start_month: str, end_month: str) -> list[str]:
    """The period labels of the months ``start_month`` .. ``end_month``, oldest first (partial periods included).

    Parameters
    ----------
    period : {"financial_year", "calendar_year", "quarter", "month"}
    start_month, end_month : str
        ``YYYY-MM``.

    Returns
    -------
    list of str

    References
    ----------
    :func:`pbc_analysis.core.calendar.period_of_months` (the one calendar).
    """
    return list(dict.fromkeys(str(p) for p in calendar.period_of_months(calendar.month_range(start_month, end_month),
                                                                        period)))


@dataclasses.dataclass(frozen=True)
class Params(StageParams):
    """Settings of fair benchmarking (notebook 02); the ``shared`` ones are also notebook 04's gate's.

    Derived when ``"auto"``:

    - ``periods``: every period (of the kind ``period`` names) that a month of the data window falls in,
      oldest first: all five financial years 2003/04 to 2007/08 on the sample, as the empty list meant before.

    Rules checked against the data before any notebook runs (:meth:`rules`): ``persistent_min_periods`` at
    most ``persistent_window``, and at most the number of periods benchmarked; the periods named exist in the
    data window; the SPC baseline no longer than the window. The flag levels must be conventional funnel
    levels or others in (0.5, 1); the confidence levels in [0.9, 1), distinct (:meth:`problems`).
    """

    STAGE = "benchmarking"
    period: str = setting("financial_year", "the periods practices are compared over", choices=Period)
    periods: list[str] | str = setting(
        AUTO, 'the period labels to benchmark, e.g. ["2006/07", "2007/08"] (labels of `period`)', derive=PERIODS_RULE)
    standardisation: str = setting(
        "age_sex+deprivation", "what the expected counts adjust for (age_sex needs the reference_rates table)",
        choices=Standardisation, shared=True)
    target: str = setting(
        "pct", "the benchmark: pct (this PCT's practices: a ratio of 1 is the PCT average for a practice like this) "
        "or reference (the reference_rates table)", choices=Target, shared=True)
    confidence: list[float] = setting(
        [0.95, 0.998], "levels of each ratio's interval (exact below 10 events, Byar's from 10); the first is the "
        "scorecard's")
    overdispersion: str = setting(
        "auto", "funnel limits widened for over-dispersion: auto (additive, when the dispersion test rejects at 5%), "
        "tau2 (additive), phi (multiplicative) or none", choices=Overdispersion, shared=True)
    sr_method: str = setting(
        "CQC", "z-scores of the over-dispersion estimate: CQC (square-root scale, winsorised) or SHMI (log scale, "
        "truncated)", choices=SrMethod, shared=True)
    trim_by: float = setting(0.1, "share of z-scores trimmed at each end before over-dispersion is estimated",
                             low=0.0, high=0.5, low_open=True, high_open=True, shared=True)
    consistency: bool = setting(
        True, "rescale the trimmed over-dispersion estimate to the full variance of normal z-scores "
              "(methods.funnel.trimmed_normal_second_moment)", shared=True)
    high_level: float = setting(0.998, "high referrer: ratio above the upper funnel limit at this level",
                                low=0.5, high=1.0, low_open=True, high_open=True)
    under_level: float = setting(
        0.95, "possible under-referrer (savings held for review): ratio below the lower funnel limit at this level",
        low=0.5, high=1.0, low_open=True, high_open=True, shared=True)
    persistent_min_periods: int = setting(2, "persistent outlier: flagged in at least this many ...", low=1)
    persistent_window: int = setting(3, "... of the last this many periods", low=1)
    spc_measure: str = setting(
        "referrals", "the measure of the headline, the scorecard's flag and the monthly monitoring", choices=Measure)
    spc_baseline_months: int = setting(12, "first months of each flagged practice's monthly series that set its "
                                           "SPC limits", low=2)
    max_spc_charts: int = setting(6, "most SPC charts drawn (one per flagged practice, in code order)", low=0)
    similar_k: int = setting(
        10, "peers of each practice in its similar-practices table (nearest by list size, age mix and deprivation, "
            "as RightCare's similar 10; capped at the number of other practices)", low=1)

    def problems(self) -> list[str]:
        """Every field outside its type, choices or range (:meth:`StageParams.problems`), and the list settings.

        ``confidence`` must hold distinct levels in [0.9, 1); ``periods`` must not be an empty list (``"auto"``
        is every period).

        Returns
        -------
        list of str
        """
        out = super().problems()
        if type(self.confidence) is list and not any(p.startswith("confidence") for p in out):
            try:
                confidence_levels(self.confidence)
            except ValueError as exc:
                out.append(str(exc))
        if self.periods == []:
            out.append('periods = [] selects no period: write "auto" for every period of the data, or list the labels')
        return out

    def derive(self, facts: Any) -> dict[str, Any]:
        """``periods``: every period label of the data window (see the class docstring).

        Parameters
        ----------
        facts : pbc_analysis.stages.facts.DataFacts

        Returns
        -------
        dict
        """
        return {"periods": window_periods(self.period, facts.start_month, facts.end_month)}

    def rules(self, facts: Any) -> list[str]:
        """The cross-setting rules, against the data window, each with its fix.

        Parameters
        ----------
        facts : pbc_analysis.stages.facts.DataFacts

        Returns
        -------
        list of str
        """
        out = []
        labels = window_periods(self.period, facts.start_month, facts.end_month)
        chosen = labels if self.periods == AUTO else list(self.periods)
        unknown = [p for p in chosen if p not in labels]
        if unknown:
            out.append(f"periods {unknown} are not {self.period} periods of the data window ({facts.start_month} to "
                       f"{facts.end_month}: {', '.join(labels)}); use those labels, or \"auto\" for all of them")
        if self.persistent_min_periods > self.persistent_window:
            out.append(f"persistent_min_periods = {self.persistent_min_periods} is more than persistent_window = "
                       f"{self.persistent_window}: no practice could be persistent; lower persistent_min_periods to at "
                       f"most {self.persistent_window} or widen persistent_window")
        n = len([p for p in chosen if p in labels])
        if n and self.persistent_min_periods > n:
            out.append(f"persistent_min_periods = {self.persistent_min_periods} but only {n} {self.period} period(s) "
                       f"are benchmarked: no practice could be persistent; lower persistent_min_periods to at most {n} "
                       "or benchmark shorter periods")
        needs_rates = "age_sex" in self.standardisation or self.target == "reference"
        if needs_rates and "reference_rates" not in facts.optional_tables:
            out.append(f"standardisation = {self.standardisation!r} with target = {self.target!r} needs the optional "
                       "reference_rates table (age-sex rates), which the data directory does not have: add "
                       "reference_rates.csv (docs/data_dictionary.md), or set standardisation to 'deprivation' or 'none' "
                       "and target to 'pct'")
        months = calendar.months_between(facts.start_month, facts.end_month)
        if self.spc_baseline_months > months:
            out.append(f"spc_baseline_months = {self.spc_baseline_months} is longer than the {months}-month data "
                       f"window ({facts.start_month} to {facts.end_month}); lower it to at most {months}")
        return out
