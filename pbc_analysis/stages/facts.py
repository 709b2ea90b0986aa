"""What the validated data say about the settings that follow from them: the facts every ``"auto"`` is derived from.

:func:`data_facts` reads them once from validated :class:`~pbc_analysis.data.Inputs` (aggregated tables only,
in a second or two on the sample):

- the data window (``start_month`` .. ``end_month``) and its full financial years;
- the engagement cohorts (``engagement.engaged_from``): the first engagement month, the cohorts inside the
  window, the practices never engaged within it;
- the measured completeness of the latest months (the data-quality stage's model,
  :func:`pbc_analysis.stages.quality.completeness` with notebook 01's settings): the last complete month of
  hospital activity (every point of delivery except GP referrals) and of GP referrals;
- the financial years with tariff prices, and which optional tables are present.

Each stage's ``Params.derive`` turns these into its settings, and ``Params.rules`` checks the settings against
them before any notebook runs (:mod:`pbc_analysis.pipeline.derive`).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import pandas as pd

from pbc_analysis.core import calendar
from pbc_analysis.stages import quality

if TYPE_CHECKING:
    from pbc_analysis.data import Inputs

__all__ = ["DataFacts", "data_facts"]

HOSPITAL_PODS = tuple(quality.POD_ORDER)   # every point of delivery but GP referrals


@dataclasses.dataclass(frozen=True)
class DataFacts:
    """Facts of the validated data that settings are derived from and checked against."""

    start_month: str                        # the data window's first month
    end_month: str                          # ... and last
    n_practices: int
    engaged_from: dict[str, str | None]     # practice -> first engaged month (None: never engaged)
    latest_complete: dict[str, str | None]  # point of delivery -> last complete month (data-quality model)
    tariff_years: tuple[str, ...] = ()      # financial years with tariff prices
    completeness_note: str = ""             # why completeness was not measured (then no month is taken as incomplete)
    optional_tables: tuple[str, ...] = ()   # the optional tables present (budgets, provider_changes, reference_rates)
    specialties: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)  # measure -> its specialty codes

    @property
    def cohorts(self) -> tuple[str, ...]:
        """The engagement months inside the window, oldest first."""
        return tuple(sorted({m for m in self.engaged_from.values() if m is not None and m <= self.end_month}))

    @property
    def first_engagement(self) -> str | None:
        """The first month any practice engaged (inside the window), or None."""
        return self.cohorts[0] if self.cohorts else None

    @property
    def n_never_engaged(self) -> int:
        """Practices not engaged by the end of the window."""
        return sum(m is None or m > self.end_month for m in self.engaged_from.values())

    def n_not_yet_engaged(self, month: str) -> int:
        """Practices not engaged by ``month`` (never engaged included)."""
        return sum(m is None or m > month for m in self.engaged_from.values())

    @property
    def full_years(self) -> list[str]:
        """Financial years all of whose months are in the window, oldest first."""
        return calendar.full_financial_years(self.start_month, self.end_month)

    @property
    def activity_end(self) -> str:
        """The last month whose hospital activity is complete in every point of delivery (the earliest of them);
        the window's end where no hospital series is measured."""
        months = [m for pod, m in self.latest_complete.items() if pod in HOSPITAL_PODS and m is not None]
        return min(months) if months else self.end_month

    @property
    def referrals_end(self) -> str:
        """The last month whose GP referrals are complete (the window's end where not measured)."""
        return self.latest_complete.get("gp_referral") or self.end_month

    def summary(self) -> dict[str, object]:
        """The facts as a plain dict (for the printout and the manifest).

        Returns
        -------
        dict
        """
        return {"start_month": self.start_month, "end_month": self.end_month, "practices": self.n_practices,
                "first_engagement": self.first_engagement, "cohorts": list(self.cohorts),
                "never_engaged": self.n_never_engaged, "full_years": self.full_years,
                "activity_end": self.activity_end, "referrals_end": self.referrals_end,
                "tariff_years": list(self.tariff_years), "completeness_note": self.completeness_note,
                "optional_tables": list(self.optional_tables)}


def data_facts(inputs: Inputs, completeness_recent_months: int = 6, completeness_threshold: float = 0.95) -> DataFacts:
    """The facts of validated inputs that derived settings follow from.

    Parameters
    ----------
    inputs : pbc_analysis.data.Inputs
        Validated inputs (their window is the data window).
    completeness_recent_months, completeness_threshold : int, float
        The data-quality stage's completeness settings (notebook 01), so that the last complete month is the
        one notebook 01 reports.

    Returns
    -------
    DataFacts

    References
    ----------
    The completeness model: :func:`pbc_analysis.stages.quality.completeness` (quasi-Poisson trend and
    seasonality on the earlier months; McCullagh and Nelder 1989).
    """
    window = inputs.window
    if window is None:
        raise ValueError("data_facts needs inputs loaded with a window (data.load_inputs)")
    monthly = quality.monthly_totals(inputs, by=["pod"])
    try:
        comp = quality.completeness(monthly, by=["pod"], recent_months=completeness_recent_months,
                                    threshold=completeness_threshold)
        latest = quality.latest_complete_month(comp, by=["pod"])
        latest_complete = {str(p): (None if pd.isna(m) else str(m))
                           for p, m in zip(latest["pod"], latest["latest_complete_month"])}
        note = ""
    except ValueError as exc:  # too short a series to model: said in the printout, the manifest and the report
        latest_complete, note = {}, f"completeness not measured ({exc}); every month is taken as complete"
    eng = inputs.engagement
    engaged_from = {str(p): (None if pd.isna(m) else str(m)) for p, m in zip(eng["practice_code"], eng["engaged_from"])}
    tariff_years: tuple[str, ...] = ()
    if inputs.tariff is not None and "financial_year" in inputs.tariff.columns:
        tariff_years = tuple(sorted(set(inputs.tariff["financial_year"].astype(str))))
    # each measure's specialties with a count > 0 (the benchmarking cube's series): the same whether zeros are
    # explicit rows or implicit (sparse activity and referrals)
    ref = inputs.referrals[inputs.referrals["referrals"].to_numpy() > 0]
    specialties = {"referrals": tuple(sorted(set(ref["specialty_code"].astype(str))))}
    act = inputs.activity[inputs.activity["activity"].to_numpy() > 0]
    for pod, codes in act.groupby("pod", observed=True)["specialty_code"]:
        specialties[str(pod)] = tuple(sorted(set(codes.astype(str))))
    return DataFacts(start_month=window.start_month, end_month=window.end_month, specialties=specialties,
                     n_practices=int(inputs.practices["practice_code"].nunique()), engaged_from=engaged_from,
                     latest_complete=latest_complete, tariff_years=tariff_years, completeness_note=note,
                     optional_tables=tuple(t for t in ("budgets", "provider_changes", "reference_rates")
                                           if getattr(inputs, t, None) is not None))
