"""The settings of the savings attribution (notebook 04): one typed source, derived from the data where they follow.

:class:`Params` holds every analysis setting of notebook 04's parameters cell (the same names), with its type,
default, allowed values, range and help. Two settings follow from the data when ``"auto"``:

- ``base_year``: the last full financial year of the window that ends before the first engagement (so the
  base year's spend is untouched by engagement);
- ``evaluation_year``: the last full financial year of the window whose months after the last complete month
  of hospital activity (``activity_end``, measured by the data-quality stage's completeness model) are all
  among the last ``lag_months`` months of the window, which are completed for the data lag.

:meth:`Params.rules` checks, before any notebook runs, every rule between the settings and the data (the base
year before the first engagement, both years full years of the window, the evaluation year complete, a window
long enough to complete the lagged months, enough practices not yet engaged to give the counterfactual, tariff
prices for every year compared, reviewed practices that exist), each with its fix.

The functions of the stage take their defaults from :data:`DEFAULTS` (= ``Params.defaults()``), so a function's
default can no longer drift from the notebook's.

References
----------
Borusyak K, Jaravel X, Spiess J (2024). Revisiting event-study designs: robust and efficient estimation.
Rev Econ Stud 91:3253-3285 (untreated observations give the counterfactual: the not-yet-engaged controls).
NHS Digital, SUS data lag (DOMAIN.md "Data lag"): the latest months of hospital activity are incomplete.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from pbc_analysis.core import calendar
from pbc_analysis.core.checks import ArgumentError
from pbc_analysis.core.params import StageParams, setting

__all__ = ["DEFAULTS", "Basis", "BootstrapWeights", "Cells", "Inference", "LineErrors", "Method", "Params", "base_year_rule",
           "evaluation_year_rule"]

#: exact decomposition of a change in spend
Method = Literal["shapley", "lmdi"]
#: standard errors of the accounting lines: the delta method (exact) or the Poisson bootstrap (its check)
LineErrors = Literal["delta", "bootstrap"]
#: standard errors of PCT and consortium savings
Inference = Literal["max", "wild", "cluster", "model", "auto"]
#: weights of the wild cluster bootstrap
BootstrapWeights = Literal["webb", "rademacher"]
#: the saving used for sharing: the estimate or the lower end of its interval
Basis = Literal["estimate", "ci_low"]
#: engagement coefficients of the generic ETWFE Poisson: one per engaged observation or per cohort x month
Cells = Literal["observation", "cohort_month"]
#: points of delivery an aggregate target may be restricted to
TargetPod = Literal["all", "first_op", "followup_op", "elective"]

#: practices not yet engaged (never engaged included) at the end of the evaluation year below which the month
#: effects of the counterfactual cannot be learned
MIN_CONTROLS = 2
#: months before the lagged ones whose activity per referral completes them, and the year before those
COMPLETENESS_YEAR = 12

BASE_YEAR_RULE = "the last full financial year of the window that ends before the first engagement"
EVALUATION_YEAR_RULE = ("the last full financial year of the window whose months after the last complete month of "
                        "hospital activity (activity_end, measured by data quality) are all among the last lag_months "
                        "months, which are completed for the data lag")


@dataclasses.dataclass(frozen=True)
class Params(StageParams):
    """Settings of the savings attribution (notebook 04); see the module docstring for the derived ones.

    ``base_year`` ("auto"): the last full financial year of the window that ends before the first engagement.
    ``evaluation_year`` ("auto"): the last full financial year whose months after ``activity_end`` (the last
    complete month of hospital activity) are all among the window's last ``lag_months`` months.
    """

    STAGE = "attribution"
    base_year: str = setting("auto", "the year spend changes are measured from (before any engagement)",
                             kind="financial_year", derive=BASE_YEAR_RULE)
    evaluation_year: str = setting("auto", "the year the headline figures are for", kind="financial_year",
                                   derive=EVALUATION_YEAR_RULE)
    method: str = setting("shapley", "exact decomposition of the spend change (Shapley or LMDI-I)", choices=Method)
    lag_months: int = setting(3, "latest months of hospital activity completed for the data lag (SUS: about 3)",
                              low=0, high=12)
    reference_months: int = setting(12, "complete months before the lagged ones whose activity per referral "
                                        "completes them", low=1)
    confidence: float = setting(0.95, "level of every interval", low=0.0, high=1.0, low_open=True, high_open=True)
    inference: str = setting("max", "standard errors of PCT and consortium savings: max (larger of model and "
                                    "cluster-robust), wild (wild cluster bootstrap), cluster, model, auto (wild "
                                    "below 50 practices, else cluster)", choices=Inference)
    n_boot: int = setting(999, "draws of the wild cluster bootstrap", low=1)
    bootstrap_weights: str = setting("webb", "weights of the wild cluster bootstrap (Webb's six-point or "
                                             "Rademacher)", choices=BootstrapWeights)
    decomposition_se: str = setting("delta", "standard errors of the accounting lines: delta (the delta method, exact: "
                                             "no Monte Carlo error) or bootstrap (Poisson bootstrap, "
                                             "decomposition_draws draws)", choices=LineErrors)
    decomposition_draws: int = setting(40, "Poisson bootstrap draws for the intervals of the accounting lines "
                                           "(decomposition_se: bootstrap)", low=2)
    seed: int = setting(20070401, "seed of both bootstraps", low=0)
    practice_share: float = setting(0.7, "share of eligible savings kept by the practice (the rest to the PCT)",
                                    low=0.0, high=1.0)
    sustained_quarters: int = setting(4, "savings count as recurrent only when sustained this many quarters",
                                      low=1)
    plan_saving_rate: float = setting(0.0, "planned saving as a share of the budget (0 = no savings plan)",
                                      low=0.0, high=1.0)
    reviewed: list[str] = setting([], "practices flagged as possible under-referrers whose review cleared them")
    basis: str = setting("estimate", "saving used for sharing: the estimate or the lower end of its interval "
                                     "(ci_low)", choices=Basis)
    min_payment: float = setting(1000.0, "smallest payment to a practice (GBP): a smaller share is not paid and the "
                                         "eligible amount stays with the PCT (0 = pay any amount)", low=0.0)
    block_contracts: list[str] = setting([], "providers paid by block or aligned-payment contract, not activity x "
                                         "price: savings there are notional (the PCT pays the contract regardless)")
    safety_level: float = setting(0.998, "confidence of the safety check: a practice whose emergency admissions or A&E "
                                         "attendances rose above expected at this level is held for review",
                                  low=0.5, high=1.0, high_open=True)

    def derive(self, facts: Any) -> dict[str, Any]:
        """``base_year`` and ``evaluation_year`` from the data (see the module docstring).

        Parameters
        ----------
        facts : pbc_analysis.stages.facts.DataFacts

        Returns
        -------
        dict
            Setting name -> value.

        Raises
        ------
        ArgumentError
            When a year cannot be derived, saying why and what to change.

        References
        ----------
        The rules: :func:`base_year_rule`, :func:`evaluation_year_rule`.
        """
        out: dict[str, Any] = {}
        problems: list[str] = []
        for name, rule in (("base_year", base_year_rule), ("evaluation_year", evaluation_year_rule)):
            if getattr(self, name) != "auto":
                continue
            value, why = rule(facts, self.lag_months)
            if value is None:
                problems.append(f"cannot derive {name} ({why}); set it in the config")
            else:
                out[name] = value
        if problems:
            raise ArgumentError(f"{self.STAGE}: " + "; ".join(problems), problems)
        return out

    def rules(self, facts: Any) -> list[str]:
        """Every rule between the settings and the data, each broken one with its fix.

        Parameters
        ----------
        facts : pbc_analysis.stages.facts.DataFacts

        Returns
        -------
        list of str

        References
        ----------
        See the module docstring.
        """
        out = _year_problems(self, facts)
        if out:
            return out
        out += _completeness_problems(self, facts)
        out += _control_problems(self, facts)
        years = [y for y in facts.full_years if self.base_year <= y <= self.evaluation_year]
        missing = [y for y in years if facts.tariff_years and y not in facts.tariff_years]
        if missing:
            out.append(f"the tariff table has no prices for {', '.join(missing)} (it has {', '.join(facts.tariff_years)}): "
                       "the tariff line of every year compared needs them; add the prices or choose base_year and "
                       "evaluation_year among the years with prices")
        unknown = sorted(set(self.reviewed) - set(facts.engaged_from))
        if unknown:
            out.append(f"reviewed names practice(s) not in the data: {', '.join(unknown)}; use practice codes of the "
                       "practices table")
        return out


#: the defaults of every setting: the stage's functions take theirs from here
DEFAULTS: dict[str, Any] = Params.defaults()


def base_year_rule(facts: Any, lag_months: int = 3) -> tuple[str | None, str]:
    """The base year the data give: the last full financial year of the window that ends before the first engagement.

    Parameters
    ----------
    facts : pbc_analysis.stages.facts.DataFacts
    lag_months : int
        Unused (the signature of every year rule).

    Returns
    -------
    year : str or None
        None when no year qualifies.
    why : str
        Why none qualifies ("" otherwise).

    References
    ----------
    DOMAIN.md "Spend identity": changes are measured from a year before any practice engaged.
    """
    first = facts.first_engagement
    if first is None:
        return None, f"no practice engaged between {facts.start_month} and {facts.end_month}"
    before = [y for y in facts.full_years if calendar.fy_end_month(y) < first]
    if not before:
        return None, (f"no full financial year of the window ({facts.start_month} to {facts.end_month}) ends before the "
                      f"first engagement ({first}); the data must start at least a full April-to-March year before it")
    return before[-1], ""


def _incomplete_months(facts: Any) -> int:
    """Months of the window after the last complete month of hospital activity."""
    return calendar.months_between(calendar.add_months(facts.activity_end, 1), facts.end_month)


def _year_complete(year: str, facts: Any, lag_months: int) -> bool:
    """Whether every month of ``year`` is complete or among the last ``lag_months`` (completed)."""
    return calendar.fy_end_month(year) <= facts.activity_end or _incomplete_months(facts) <= lag_months


def evaluation_year_rule(facts: Any, lag_months: int = 3) -> tuple[str | None, str]:
    """The evaluation year the data give (see the module docstring).

    Parameters
    ----------
    facts : pbc_analysis.stages.facts.DataFacts
    lag_months : int
        The trailing months completed for the data lag.

    Returns
    -------
    year : str or None
        None when no year qualifies.
    why : str
        Why none qualifies ("" otherwise).

    References
    ----------
    DOMAIN.md "Data lag": SUS activity arrives about three months after the period ends.
    """
    full = facts.full_years
    if not full:
        return None, f"the window {facts.start_month} to {facts.end_month} holds no full April-to-March financial year"
    ok = [y for y in full if _year_complete(y, facts, lag_months)]
    if not ok:
        return None, (f"hospital activity is complete only to {facts.activity_end}, {_incomplete_months(facts)} months "
                      f"before the window's end, more than lag_months = {lag_months}, and no full year ends by then")
    return ok[-1], ""


def _year_problems(p: Params, facts: Any) -> list[str]:
    """Both years full years of the window, the base year before the first engagement and before the evaluation year."""
    full = facts.full_years
    window = f"{facts.start_month} to {facts.end_month}"
    out = [f"{name} = {getattr(p, name)!r} is not a full financial year of the window ({window}; full years: "
           f"{', '.join(full) or 'none'}); choose one of them or \"auto\""
           for name in ("base_year", "evaluation_year") if getattr(p, name) not in full]
    if out:
        return out
    first = facts.first_engagement
    if first is None:
        return [f"no practice engaged within the window ({window}): there is no practice action to attribute; check "
                "engagement.engaged_from or widen the window"]
    if calendar.fy_end_month(p.base_year) >= first:
        best, _ = base_year_rule(facts)
        return [f"base_year = {p.base_year!r} does not end before the first engagement ({first}): its spend would "
                f"already include practice action; use {best!r} (or \"auto\")" if best else
                f"base_year = {p.base_year!r} does not end before the first engagement ({first}) and no full year of "
                "the window does: start the data at least a full April-to-March year before the first engagement"]
    if p.evaluation_year <= p.base_year:
        return [f"evaluation_year = {p.evaluation_year!r} is not after base_year = {p.base_year!r}; choose a later "
                "evaluation year (or \"auto\")"]
    return []


def _completeness_problems(p: Params, facts: Any) -> list[str]:
    """The evaluation year complete (its incomplete months completed) and a window long enough to complete them."""
    out = []
    months = calendar.months_between(facts.start_month, facts.end_month)
    need = p.lag_months + p.reference_months + COMPLETENESS_YEAR
    if p.lag_months > 0 and months < need:
        out.append(f"lag_months = {p.lag_months} with reference_months = {p.reference_months} needs at least {need} "
                   f"months of data (the reference months and the year before them); the window has {months}: lower "
                   "reference_months or lag_months")
    if not _year_complete(p.evaluation_year, facts, p.lag_months):
        best, _ = evaluation_year_rule(facts, p.lag_months)
        out.append(f"evaluation_year = {p.evaluation_year!r} is incomplete: hospital activity is complete only to "
                   f"{facts.activity_end} (data quality), {_incomplete_months(facts)} months before the window's end, "
                   f"and lag_months = {p.lag_months} completes only the last {p.lag_months}; raise lag_months to "
                   f"{_incomplete_months(facts)} or choose an earlier year" + (f" ({best!r}, or \"auto\")" if best else ""))
    return out


def _control_problems(p: Params, facts: Any) -> list[str]:
    """Enough practices not yet engaged at the end of the evaluation year to learn each month's counterfactual."""
    end = calendar.fy_end_month(p.evaluation_year)
    controls = facts.n_not_yet_engaged(end)
    if controls >= MIN_CONTROLS:
        return []
    return [f"only {controls} practice(s) are not yet engaged by {end}, the end of evaluation_year {p.evaluation_year}: "
            f"the counterfactual of engaged practices is learned from practices not (yet) engaged in the same months, "
            f"and needs at least {MIN_CONTROLS}; choose an earlier evaluation year (before most practices engaged)"]
