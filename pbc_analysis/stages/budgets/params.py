"""The budget-setting stage's settings (notebook 05): one typed field per setting, the rules that derive
``target_year`` and ``as_at`` from the data, and the cross-setting rules checked before any notebook runs.

Derived settings (``"auto"``)
    ``target_year``: the last full financial year of the data window that has ``base_years`` full financial
    years before it in the window (2007/08 on the sample: 2005/06 and 2006/07 before it).
    ``as_at``: the latest month of ``target_year`` in the window (the window's last month when the window
    holds no month of it; in-year monitoring is then skipped).

Cross-setting rules (:meth:`Params.rules`)
    The base years each have activity in the window; the tariff has prices for the target year (or
    ``tariff_uplift`` projects them, and then it must not already have them) and, for ``recost="price_index"``,
    for the base years; ``as_at`` is a month of the target year inside the window; the completeness model
    has enough months; in-year monitoring has two complete financial years before the target year that no
    completeness factor adjusts.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from pbc_analysis.core import calendar
from pbc_analysis.core.checks import ArgumentError
from pbc_analysis.core.params import AUTO, StageParams, setting

__all__ = ["COMPLETENESS_RECENT_MONTHS", "BudgetBasis", "Components", "Curves", "FundFrom", "ListIndex", "Params", "Recost",
           "derive_target_year", "latest_month_of"]

Recost = Literal["price_index", "tariff"]
ListIndex = Literal["weighted", "registered"]
Curves = Literal["calibrated", "reference", "supplied", "none"]
Components = Literal["pod_group", "total"]
FundFrom = Literal["above_target", "outside_band"]
BudgetBasis = Literal["supplied", "set"]

#: months at the end of the window whose completeness the data-quality model measures (the factors of the
#: latest ``completeness_months`` of them are used); the model needs 24 months before them
COMPLETENESS_RECENT_MONTHS = 6
COMPLETENESS_FIT_MONTHS = 24
TARGET_YEAR_RULE = "the last full financial year of the window with base_years full financial years before it"
AS_AT_RULE = ("the latest month of target_year in the window (the window's last month when it holds no month of "
              "target_year: monitoring is then skipped)")


def derive_target_year(full_years: list[str], base_years: int) -> str:
    """The target year the budgets are set for when ``target_year`` is ``"auto"``.

    Parameters
    ----------
    full_years : list of str
        The financial years all of whose months are in the window, oldest first
        (:attr:`pbc_analysis.stages.facts.DataFacts.full_years`).
    base_years : int
        Full years needed before the target year.

    Returns
    -------
    str
        The last full year that has ``base_years`` full years before it.

    Raises
    ------
    ArgumentError
        When the window has too few full years, saying what to set instead.

    References
    ----------
    Audit Commission (2007), *Putting commissioning into practice*, case study 9: a budget from the two
    previous years' activity.
    """
    wanted = set(full_years)
    for year in reversed(full_years):
        if all(calendar.shift_year(year, -k) in wanted for k in range(1, base_years + 1)):
            return year
    message = (f"target_year: the window holds {len(full_years)} full financial year(s) ({', '.join(full_years) or 'none'}), "
               f"too few for a target year with base_years = {base_years} full years before it; set target_year "
               "(part base years are annualised), lower base_years, or give a longer window")
    raise ArgumentError(message, [message])


def latest_month_of(year: str, end_month: str) -> str:
    """The latest month of financial year ``year`` up to ``end_month`` (``end_month`` if the year starts after it).

    Parameters
    ----------
    year : str
        ``YYYY/YY``.
    end_month : str
        The window's last month.

    Returns
    -------
    str

    References
    ----------
    NHS financial year April to March (:mod:`pbc_analysis.core.calendar`).
    """
    return min(calendar.fy_end_month(year), end_month)


@dataclasses.dataclass(frozen=True)
class Params(StageParams):
    """Settings of indicative budget setting (notebook 05; the risk stage's are :class:`pbc_analysis.stages.risk.Params`).

    ``target_year`` ``"auto"``: the last full financial year of the window with ``base_years`` full
    financial years before it. ``as_at`` ``"auto"``: the latest month of ``target_year`` in the window.
    The completeness settings say how the incomplete latest months are adjusted, for the budgets (their
    base years) and for in-year monitoring alike; ``as_at`` is the month monitoring reports (the risk stage
    reads it from here, beside the target year it must belong to).
    """

    STAGE = "budgets"
    target_year: str = setting(AUTO, "the financial year to set budgets for", kind="financial_year", derive=TARGET_YEAR_RULE)
    base_years: int = setting(2, "financial years before target_year whose activity is averaged for the historic budget",
                              low=1, high=10)
    envelope: float = setting(0.0, "GBP for the target year (0 = the sum of the historic budgets)", low=0.0)
    envelope_growth: float = setting(0.0, "yearly growth of the envelope along the glide path (0 = flat)", low=-1.0,
                                     low_open=True)
    recost: str = setting("price_index", "re-costing at the target year's tariff: cost x new/old price (keeps the "
                          "provider's case mix) or activity x new price", choices=Recost)
    list_index: str = setting("weighted", "list growth index of the historic budget: age-sex weighted or registered list",
                              choices=ListIndex)
    curves: str = setting("calibrated", "age-sex cost curves: reference rates levelled to this PCT, as they are, a "
                          "supplied table, or none (every patient weighted equally)", choices=Curves)
    formula: str = setting("deprivation | provider_cost_index", "fair-shares regression: \"need terms | supply terms\" "
                           "(terms: deprivation, single_handed, log_list_size, provider_cost_index, follow_up_ratio, engaged)")
    components: str = setting("pod_group", "need model per component of spend (planned, non-elective, A&E) or one for "
                              "all spend", choices=Components)
    pace_years: int = setting(3, "years on the glide path from historic budget to fair share", low=1, high=20)
    pace_cap: float = setting(0.05, "largest yearly change of a practice's share (0.05 = 5%)", low=0.0)
    band: float = setting(0.10, "allowed distance from target (national 10%, a stricter local 5%)", low=0.0, high=1.0,
                          high_open=True)
    fund_from: str = setting("above_target", "who funds the moves: practices above target, or only those outside the band",
                             choices=FundFrom)
    tariff_uplift: float | None = setting(None, "yearly uplift projecting the latest tariff when target_year has no "
                                          "prices (None: the tariff must have them)", low=-0.5, high=0.5)
    completeness_factors: list[float] = setting([], "completeness factors of the latest months, oldest first, ending "
                                                "at end_month ([]: estimate them)")
    completeness_snapshots: str = setting("", "CSV of past extracts (extract, month, value) giving completeness by lag "
                                          "(\"\": none; then the data-quality model estimates it)")
    completeness_months: int = setting(3, "latest months the data-quality model's completeness factors adjust",
                                       low=1, high=COMPLETENESS_RECENT_MONTHS)
    as_at: str = setting(AUTO, "the month in-year monitoring of target_year reports", kind="month", derive=AS_AT_RULE)
    budget_basis: str = setting("supplied", "the budget of target_year that the risk pool top-slices and in-year "
                                "monitoring measures against: supplied (budgets.csv, the budget issued for the year, as "
                                "savings sharing uses; this stage's where a practice has none) or set (this stage's "
                                "fair-share budget, a proposal)", choices=BudgetBasis)

    def problems(self) -> list[str]:
        """Every field outside its type or range, and completeness factors outside (0, 1].

        Returns
        -------
        list of str
        """
        out = super().problems()
        bad = [f for f in self.completeness_factors if not 0 < f <= 1] if isinstance(self.completeness_factors, list) else []
        if bad:
            out.append(f"completeness_factors must be numbers in (0, 1], oldest month first; got {self.completeness_factors!r}")
        return out

    def derive(self, facts: Any) -> dict[str, Any]:
        """``target_year`` and ``as_at`` from the data window (module docstring).

        Parameters
        ----------
        facts : pbc_analysis.stages.facts.DataFacts

        Returns
        -------
        dict
            The derived values of the ``"auto"`` settings.

        Raises
        ------
        ArgumentError
            When the window has too few full years for a target year.
        """
        out: dict[str, Any] = {}
        target = self.target_year
        if target == AUTO:
            target = out["target_year"] = derive_target_year(facts.full_years, self.base_years)
        if self.as_at == AUTO:
            out["as_at"] = latest_month_of(target, facts.end_month)
        return out

    def rules(self, facts: Any) -> list[str]:
        """The cross-setting rules against the data (module docstring), each broken one with its fix.

        Parameters
        ----------
        facts : pbc_analysis.stages.facts.DataFacts

        Returns
        -------
        list of str
        """
        return self._year_rules(facts) + self._tariff_rules(facts) + self._monitoring_rules(facts) + self._formula_rules()

    def _formula_rules(self) -> list[str]:
        """The formula's terms: a run (notebook 05) has no covariates table, so only the built-in terms apply."""
        from pbc_analysis.stages.budgets.need import parse_formula

        try:
            parse_formula(self.formula)
        except ValueError as exc:
            return [str(exc)]
        return []

    def _base(self) -> list[str]:
        return [calendar.shift_year(self.target_year, -k) for k in range(self.base_years, 0, -1)]

    def _year_rules(self, facts: Any) -> list[str]:
        window = set(calendar.financial_year_of(calendar.month_range(facts.start_month, facts.end_month)))
        missing = [y for y in self._base() if y not in window]
        if not missing:
            return []
        return [f"target_year = {self.target_year!r} with base_years = {self.base_years} needs activity in "
                f"{', '.join(self._base())}, but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} outside the "
                f"window {facts.start_month} to {facts.end_month}; choose a later target_year (or \"auto\") or fewer base_years"]

    def _tariff_rules(self, facts: Any) -> list[str]:
        years = set(facts.tariff_years)
        if not years:
            return []
        out = []
        has_target = self.target_year in years
        if not has_target and self.tariff_uplift is None:
            out.append(f"target_year = {self.target_year!r}: the tariff has no prices for it (it has {', '.join(sorted(years))}); "
                       "add that year's national tariff to tariff.csv, or set tariff_uplift (e.g. 0.025) to project the "
                       "latest year's prices")
        if has_target and self.tariff_uplift is not None:
            out.append(f"tariff_uplift = {self.tariff_uplift!r}, but the tariff already has prices for {self.target_year}; "
                       "set tariff_uplift to None")
        missing = [y for y in self._base() if y not in years]
        if self.recost == "price_index" and missing:
            out.append(f"recost = 'price_index' re-prices each base year's cost by the tariff's price change, but the tariff "
                       f"has no prices for {', '.join(missing)}; add them, or set recost = 'tariff'")
        return out

    def _monitoring_rules(self, facts: Any) -> list[str]:
        out = []
        months = calendar.months_between(facts.start_month, facts.end_month)
        estimated = not self.completeness_factors and not self.completeness_snapshots
        if estimated and months - COMPLETENESS_RECENT_MONTHS < COMPLETENESS_FIT_MONTHS:
            out.append(f"completeness: the {months}-month window is too short for the data-quality model (it needs "
                       f"{COMPLETENESS_FIT_MONTHS + COMPLETENESS_RECENT_MONTHS} months); set completeness_factors "
                       "(e.g. [0.97, 0.85, 0.55]) or give a longer window")
        first, last = calendar.fy_start_month(self.target_year), latest_month_of(self.target_year, facts.end_month)
        if first > facts.end_month:
            return out  # no month of the target year in the data: monitoring is skipped
        if not max(first, facts.start_month) <= self.as_at <= last:
            out.append(f"as_at = {self.as_at!r} is not a month of {self.target_year} in the window (they run "
                       f"{max(first, facts.start_month)} to {last}); set one of them or \"auto\" for the latest")
        n_adjusted = len(self.completeness_factors) or (0 if self.completeness_snapshots else self.completeness_months)
        adjusted = set(calendar.month_range(calendar.add_months(facts.end_month, 1 - n_adjusted), facts.end_month)) \
            if n_adjusted else set()
        complete = [y for y in facts.full_years if y < self.target_year and not set(calendar.fy_months(y)) & adjusted]
        if len(complete) < 2:
            out.append(f"in-year monitoring of {self.target_year} needs two complete financial years before it, none of "
                       f"whose months is adjusted for completeness, for its profile and back-test; the window has "
                       f"{', '.join(complete) or 'none'}; give a longer window or choose a later target_year")
        return out
