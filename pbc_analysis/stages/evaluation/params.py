"""Settings of the referral evaluation (notebook 03): the one source of each, its rule when ``"auto"``, its checks.

Every window and month setting follows from the data unless the config says otherwise
(:meth:`Params.derive`, from :class:`~pbc_analysis.stages.facts.DataFacts`), and every cross-setting rule is
checked against the data before any notebook runs (:meth:`Params.rules`), each broken rule with its fix.

References
----------
Callaway B, Sant'Anna PHC (2021). Difference-in-differences with multiple time periods. J Econometrics
225:200-230 (a baseline free of treatment; comparison units).
Lopez Bernal J, Cummins S, Gasparrini A (2017). Interrupted time series regression for the evaluation of public
health interventions: a tutorial. Int J Epidemiol 46:348-355 (at least a seasonal cycle before the interruption).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pbc_analysis.core import calendar
from pbc_analysis.core.checks import ArgumentError
from pbc_analysis.core.params import AUTO, StageParams, setting
from pbc_analysis.methods.did import ControlGroup
from pbc_analysis.stages.benchmark import Measure

__all__ = ["BASELINE_RULE", "EVALUATION_RULE", "MIN_BASELINE_MONTHS", "MIN_NEVER_ENGAGED", "Params", "RTM_BASELINE_MONTHS",
           "RTM_FOLLOW_UP_MONTHS", "complete_end"]

MIN_BASELINE_MONTHS = 12     # a full seasonal cycle before the first engagement (the ITS separates trend and season)
MIN_NEVER_ENGAGED = 2        # never-engaged practices the controlled ITS, regression to the mean and provider check need
RTM_BASELINE_MONTHS = 3      # a short baseline shows regression to the mean most clearly ...
RTM_FOLLOW_UP_MONTHS = 12    # ... against the following year

BASELINE_RULE = "from the data window's first month to the month before the first engagement"
EVALUATION_RULE = ("from the first engagement to the last complete month of the measure (data-quality model); if "
                   f"fewer than {MIN_NEVER_ENGAGED} practices would then be never engaged, up to the month before the "
                   "latest cohort that leaves that many (its practices are the comparison)")
INTERRUPTION_RULE = "the first engagement month"
ITS_END_RULE = "the evaluation window's last month"
ACTIVITY_END_RULE = "the last month whose hospital activity is complete in every point of delivery (data-quality model)"
RTM_BASELINE_RULE = f"the first {RTM_BASELINE_MONTHS} months of the baseline window"
RTM_FOLLOW_UP_RULE = (f"the {RTM_FOLLOW_UP_MONTHS} months after rtm_baseline (fewer if the evaluation window ends "
                      "sooner)")

#: the completeness series (DataFacts.latest_complete key) of each measure
_COMPLETENESS_SERIES = {"referrals": "gp_referral"}


def complete_end(facts: Any, measure: str) -> str:
    """The last complete month of ``measure`` by the data-quality model (the window's end where not measured).

    Parameters
    ----------
    facts : pbc_analysis.stages.facts.DataFacts
        The facts of the validated data.
    measure : str
        ``referrals`` or a point of delivery.

    Returns
    -------
    str
        A month ``YYYY-MM``.

    References
    ----------
    :func:`pbc_analysis.stages.quality.completeness` (quasi-Poisson trend and season; McCullagh and Nelder 1989).
    """
    return facts.latest_complete.get(_COMPLETENESS_SERIES.get(measure, measure)) or facts.end_month


@dataclasses.dataclass(frozen=True)
class Params(StageParams):
    """Settings of the referral evaluation (notebook 03).

    Derived when ``"auto"`` (the rules, also in each setting's ``derive``):

    - ``baseline_window``: from the data window's first month to the month before the first engagement;
    - ``evaluation_window``: from the first engagement to the last complete month of the measure (the
      data-quality model's completeness); if fewer than :data:`MIN_NEVER_ENGAGED` practices would then be
      never engaged, it ends the month before the latest cohort that leaves that many, whose practices are
      then the comparison;
    - ``interruption``: the first engagement month; ``its_end``: the evaluation window's last month;
    - ``activity_end``: the last month whose hospital activity is complete in every point of delivery;
    - ``rtm_baseline``: the first 3 months of the baseline window; ``rtm_follow_up``: the 12 months after it
      (fewer if the evaluation window ends sooner).

    Cross-setting rules checked against the data (:meth:`rules`): some practice engaged inside the data window;
    every window inside the data; the baseline ends before the first engagement and holds at least
    :data:`MIN_BASELINE_MONTHS` months and one period; the evaluation window starts at or after the first
    engagement; at least :data:`MIN_NEVER_ENGAGED` practices never engaged within the analysis window (for
    ``control_group = "never"`` and the comparisons of the controlled ITS, regression to the mean and the
    provider check); the interruption and ``its_end`` inside the analysis window with months on both sides;
    the regression-to-the-mean windows inside it and in order; the placebo shift moving a cohort inside the
    pre-engagement months; ``full_effect_from`` reached by the first cohort.
    """

    STAGE = "referral_evaluation"
    measure: str = setting("referrals", "the events evaluated: referrals (GP referrals) or a point of delivery",
                               choices=Measure)
    specialties: list[str] = setting([], "specialty codes evaluated ([] = all of the measure's); \"all\" is always added")
    baseline_window: list[str] | str = setting(
        AUTO, "first and last month of the pre-engagement baseline (the analysis starts at its first month)",
        kind="window", derive=BASELINE_RULE)
    evaluation_window: list[str] | str = setting(
        AUTO, "first and last month over which effects and referrals avoided are counted", kind="window",
        derive=EVALUATION_RULE)
    period_months: int = setting(3, "months per difference-in-differences period (3 = quarters)", low=1, high=12)
    control_group: str = setting("not_yet", "comparison practices of the staggered DiD: never engaged, or "
                                          "not yet engaged", choices=ControlGroup)
    full_effect_from: int = setting(2, "periods after engagement from which the effect counts as built up", low=0)
    interruption: str = setting(AUTO, "the ITS interruption month", kind="month", derive=INTERRUPTION_RULE)
    its_end: str = setting(AUTO, "the ITS's last month", kind="month", derive=ITS_END_RULE)
    harmonics: int = setting(2, "seasonal sine/cosine pairs of the ITS models", low=0, high=5)
    activity_end: str = setting(AUTO, "last month of complete hospital activity (the provider-change check ends there)",
                                kind="month", derive=ACTIVITY_END_RULE)
    placebo_shift_months: int = setting(12, "months the placebo moves engagement earlier", low=1)
    rtm_baseline: list[str] | str = setting(AUTO, "regression to the mean: the window the top referrers are picked in",
                                            kind="window", derive=RTM_BASELINE_RULE)
    rtm_follow_up: list[str] | str = setting(AUTO, "regression to the mean: the later window they are followed in",
                                             kind="window", derive=RTM_FOLLOW_UP_RULE)
    rtm_top_share: float = setting(0.2, "regression to the mean: share of practices picked as top referrers",
                                   low=0.0, high=1.0, low_open=True, high_open=True)
    rtm_specialty: str = setting("all", "regression to the mean: \"all\" or a specialty code")
    confidence: float = setting(0.95, "level of every interval", low=0.0, high=1.0, low_open=True, high_open=True)
    n_sims: int = setting(2000, "simulation draws of the ITS intervals for referrals avoided", low=100)
    seed: int = setting(20070401, "seed of the ITS simulation", low=0)

    # ---- derivation ------------------------------------------------------------------------------
    def derive(self, facts: Any) -> dict[str, Any]:
        """Values for the ``"auto"`` settings from the data (the rules are in the class docstring).

        Parameters
        ----------
        facts : pbc_analysis.stages.facts.DataFacts

        Returns
        -------
        dict
            Setting name -> value, for every derivable setting (those given are returned unchanged).

        Raises
        ------
        ArgumentError
            When no practice engaged inside the data window (there is nothing to evaluate).

        References
        ----------
        Callaway and Sant'Anna (2021): the baseline is free of treatment; Lopez Bernal et al. (2017): the
        interruption is the intervention's start.
        """
        first = facts.first_engagement
        if first is None:
            message = (f"no practice engaged between {facts.start_month} and {facts.end_month} (engagement.csv): there "
                       "is nothing to evaluate; leave 03_referral_evaluation out of run.notebooks")
            raise ArgumentError(f"{self.STAGE}: {message}", [message])
        out: dict[str, Any] = {}
        out["baseline_window"] = self._given("baseline_window", [facts.start_month, calendar.add_months(first, -1)])
        out["evaluation_window"] = self._given("evaluation_window", [first, _evaluation_end(facts, self.measure)])
        out["interruption"] = self._given("interruption", first)
        out["its_end"] = self._given("its_end", out["evaluation_window"][1])
        out["activity_end"] = self._given("activity_end", facts.activity_end)
        b0 = out["baseline_window"][0]
        out["rtm_baseline"] = self._given("rtm_baseline", [b0, calendar.add_months(b0, RTM_BASELINE_MONTHS - 1)])
        f0 = calendar.add_months(out["rtm_baseline"][1], 1)
        f1 = min(calendar.add_months(f0, RTM_FOLLOW_UP_MONTHS - 1), out["evaluation_window"][1])
        out["rtm_follow_up"] = self._given("rtm_follow_up", [f0, f1])
        return out

    def window(self, name: str) -> tuple[str, str]:
        """A window setting's first and last months (once resolved: not ``"auto"``).

        Parameters
        ----------
        name : str
            ``baseline_window``, ``evaluation_window``, ``rtm_baseline`` or ``rtm_follow_up``.

        Returns
        -------
        tuple of str

        Raises
        ------
        ValueError
            If the window is still ``"auto"`` (resolve the settings first: :meth:`resolve`).

        References
        ----------
        :mod:`pbc_analysis.core.params` (a window is two months, first and last, inclusive).
        """
        value = getattr(self, name)
        if not isinstance(value, list):
            raise ValueError(f"{name} is still {value!r}: resolve the settings first (Params.resolve(facts))")
        return value[0], value[1]

    def _given(self, name: str, derived: Any) -> Any:
        value = getattr(self, name)
        return derived if value == AUTO else value

    # ---- rules -----------------------------------------------------------------------------------
    def rules(self, facts: Any) -> list[str]:
        """Every cross-setting rule the settings break against the data, each with its fix.

        Parameters
        ----------
        facts : pbc_analysis.stages.facts.DataFacts

        Returns
        -------
        list of str
            One message per broken rule, naming the setting(s) (empty: all rules hold).

        References
        ----------
        The rules are listed in the class docstring.
        """
        if facts.first_engagement is None:
            return [f"no practice engaged between {facts.start_month} and {facts.end_month}: there is nothing to "
                    "evaluate; leave 03_referral_evaluation out of run.notebooks"]
        windows = self._window_problems(facts)
        if windows:  # the rules below assume windows inside the data
            return windows
        return [*self._baseline_problems(facts), *self._comparison_problems(facts), *self._its_problems(),
                *self._rtm_problems(), *self._placebo_problems(facts), *self._full_effect_problems(facts),
                *self._specialty_problems(facts)]

    def _specialty_problems(self, facts: Any) -> list[str]:
        known = getattr(facts, "specialties", {}).get(self.measure)
        if not known:  # facts without specialties (built by hand): nothing to check against
            return []
        out = []
        unknown = [s for s in self.specialties if s != "all" and s not in known]
        if unknown:
            out.append(f"specialties {unknown} have no {self.measure} in the data; they are {list(known)} (or [] for all)")
        if self.rtm_specialty != "all" and self.rtm_specialty not in known:
            out.append(f"rtm_specialty = {self.rtm_specialty!r} has no {self.measure} in the data; use \"all\" or one of "
                       f"{list(known)}")
        return out

    def _window_problems(self, facts: Any) -> list[str]:
        out = []
        data = f"the data window {facts.start_month} to {facts.end_month}"
        for name in ("baseline_window", "evaluation_window", "rtm_baseline", "rtm_follow_up"):
            w = getattr(self, name)
            if w[0] < facts.start_month or w[1] > facts.end_month:
                out.append(f"{name} = {w} is not inside {data}: give months inside it, or \"auto\"")
        for name in ("interruption", "its_end", "activity_end"):
            m = getattr(self, name)
            if not facts.start_month <= m <= facts.end_month:
                out.append(f"{name} = {m!r} is not inside {data}: give a month inside it, or \"auto\"")
        return out

    def _baseline_problems(self, facts: Any) -> list[str]:
        first, (b0, b1), (e0, e1) = facts.first_engagement, self.window("baseline_window"), self.window("evaluation_window")
        out = []
        if b1 >= first:
            out.append(f"baseline_window ends {b1}, not before the first engagement {first}: the baseline must be free "
                       f"of engagement; end it by {calendar.add_months(first, -1)} (or \"auto\")")
        months = calendar.months_between(b0, min(b1, calendar.add_months(first, -1)))
        if months < max(MIN_BASELINE_MONTHS, self.period_months):
            out.append(f"baseline_window {b0} to {b1} gives {months} month(s) before the first engagement {first}; the "
                       f"evaluation needs at least {max(MIN_BASELINE_MONTHS, self.period_months)} (a seasonal cycle for "
                       "the ITS, a period for the DiD): start it earlier, or give data that start earlier")
        if e0 < first:
            out.append(f"evaluation_window starts {e0}, before the first engagement {first}; start it at or after "
                       "that month")
        if e1 <= b1:
            out.append(f"evaluation_window ends {e1}, not after baseline_window's end {b1}")
        return out

    def _comparison_problems(self, facts: Any) -> list[str]:
        end = self.evaluation_window[1]
        never = facts.n_not_yet_engaged(end)
        if never >= MIN_NEVER_ENGAGED:
            return []
        later = [c for c in facts.cohorts if c <= end and facts.n_not_yet_engaged(calendar.add_months(c, -1))
                 >= MIN_NEVER_ENGAGED and c > self.evaluation_window[0]]
        fix = (f"end evaluation_window by {calendar.add_months(later[-1], -1)} so that the cohort engaging {later[-1]} "
               "is the comparison, or set it to \"auto\"") if later else "this PCT has too few practices to compare with"
        use = " (control_group = \"never\" compares with them only)" if self.control_group == "never" else ""
        return [f"{never} practice(s) are never engaged up to evaluation_window's end {end}; the controlled ITS, "
                f"regression to the mean and the provider-change check compare with them{use} and need at least "
                f"{MIN_NEVER_ENGAGED}: {fix}"]

    def _its_problems(self) -> list[str]:
        start, end = self.baseline_window[0], self.evaluation_window[1]
        out = []
        if not start < self.interruption <= end:
            out.append(f"interruption = {self.interruption!r} must fall after the analysis window's first month "
                       f"{start} and by its last {end}: give a month in between, or \"auto\" (the first engagement)")
        if not self.interruption <= self.its_end <= end:
            out.append(f"its_end = {self.its_end!r} must be from the interruption {self.interruption} to the evaluation "
                       f"window's end {end}: give a month in between, or \"auto\"")
        return out

    def _rtm_problems(self) -> list[str]:
        start, end = self.baseline_window[0], self.evaluation_window[1]
        out = [f"{name} = {getattr(self, name)} is not inside the analysis window {start} to {end} (baseline_window's "
               "first month to evaluation_window's last): give months inside it, or \"auto\""
               for name in ("rtm_baseline", "rtm_follow_up") if getattr(self, name)[0] < start or getattr(self, name)[1] > end]
        if self.rtm_follow_up[0] <= self.rtm_baseline[1]:
            out.append(f"rtm_follow_up starts {self.rtm_follow_up[0]}, not after rtm_baseline's end "
                       f"{self.rtm_baseline[1]}: the follow-up must come after the baseline")
        return out

    def _placebo_problems(self, facts: Any) -> list[str]:
        start, end, pm = self.baseline_window[0], self.evaluation_window[1], self.period_months
        index = [calendar.months_between(start, c) for c in facts.cohorts if start < c <= end]
        if not index:
            return []
        cut = index[0]  # the first engagement's month number: the placebo keeps months 1 .. cut - 1
        moved = [c - self.placebo_shift_months for c in index]
        if any(pm + 1 <= m <= cut - 1 for m in moved):
            return []
        valid = [s for s in range(1, max(index)) if any(pm + 1 <= c - s <= cut - 1 for c in index)]
        if not valid:
            fix = "the baseline is too short for a placebo"
        elif valid == list(range(valid[0], valid[-1] + 1)):
            fix = f"use a shift from {valid[0]} to {valid[-1]}"
        else:
            fix = f"use one of {valid}"
        return [f"placebo_shift_months = {self.placebo_shift_months} moves no cohort inside the {cut - 1} months before "
                f"the first engagement (after their first period of {pm}): {fix}"]

    def _full_effect_problems(self, facts: Any) -> list[str]:
        start, end, pm = self.baseline_window[0], self.evaluation_window[1], self.period_months
        first = calendar.months_between(start, facts.first_engagement)
        periods = calendar.months_between(start, end) // pm
        reached = periods - ((first - 1) // pm + 1)
        if self.full_effect_from <= reached:
            return []
        if reached < 0:
            return [f"evaluation_window ends {end}, before a whole period of {pm} months from the first engagement "
                    f"{facts.first_engagement} has passed (periods are counted from {start}): end it later, or give "
                    "data that run longer"]
        return [f"full_effect_from = {self.full_effect_from} periods, but the first cohort is followed only {reached} "
                f"period(s) of {pm} months after engagement by {end}: lower full_effect_from to at most {max(reached, 0)}"]


def _evaluation_end(facts: Any, measure: str) -> str:
    """The derived evaluation window's last month (see :data:`EVALUATION_RULE`)."""
    end = complete_end(facts, measure)
    if facts.n_not_yet_engaged(end) >= MIN_NEVER_ENGAGED:
        return end
    for cohort in reversed(facts.cohorts):
        before = calendar.add_months(cohort, -1)
        if cohort > facts.first_engagement and before < end and facts.n_not_yet_engaged(before) >= MIN_NEVER_ENGAGED:
            return before
    return end
