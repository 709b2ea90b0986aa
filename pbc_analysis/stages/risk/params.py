"""The risk stage's settings (notebook 05): the risk pool, its simulation, and in-year monitoring's triggers.

The target year, its base years, the completeness of the latest months and the month monitoring reports
(``as_at``) are the budget stage's settings (:class:`pbc_analysis.stages.budgets.Params`): the risk stage
works on the budgets that stage set, so each of those is set once, where the rules that tie them to the
target year are checked. None of the settings here follows from the data, and the one rule between them
(``red`` at least ``amber``) is checked when the settings are built.
"""

from __future__ import annotations

import dataclasses

from pbc_analysis.core.params import StageParams, setting

__all__ = ["Params"]


@dataclasses.dataclass(frozen=True)
class Params(StageParams):
    """Settings of the risk pool and in-year monitoring (notebook 05, after :class:`pbc_analysis.stages.budgets.Params`).

    Nothing here is derived from the data. ``red`` must be at least ``amber`` (red is the stricter trigger).
    """

    STAGE = "risk"
    threshold: float = setting(15000.0, "GBP per patient a year above which cost is charged to the risk pool "
                               "(typically 10,000 to 20,000)", low=0.0, low_open=True)
    top_slice: float = setting(0.03, "share of the envelope top-sliced to fund the pool (typically 0.03 to 0.05)",
                               low=0.0, high=1.0, high_open=True)
    max_probability: float = setting(0.05, "accepted chance that the pool is exhausted in a year", low=0.0, high=1.0,
                                     low_open=True, high_open=True)
    threshold_options: list[float] = setting([10000.0, 15000.0, 20000.0], "further thresholds (GBP) the pool is "
                                             "simulated at, for the threshold table and its recommended top-slice")
    n_sims: int = setting(10000, "simulated years of pool charges", low=100)
    seed: int = setting(20070401, "seed of numpy's default_rng for the pool simulation", low=0)
    interval_level: float = setting(0.90, "level of the forecast outturn's prediction interval", low=0.0, high=1.0,
                                    low_open=True, high_open=True)
    amber: float = setting(0.02, "forecast overspend (share of budget) at or above which a practice is amber", low=0.0)
    red: float = setting(0.05, "forecast overspend at or above which a practice is red (at least amber)", low=0.0)
    max_spc_charts: int = setting(4, "SPC charts drawn, one per red practice, at most", low=0)

    def problems(self) -> list[str]:
        """Every field outside its type or range, a threshold option not positive, and ``red`` below ``amber``.

        Returns
        -------
        list of str
        """
        out = super().problems()
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (self.amber, self.red))
        options = self.threshold_options
        if isinstance(options, list) and any(isinstance(v, (int, float)) and not isinstance(v, bool) and not v > 0
                                             for v in options):
            out.append(f"threshold_options must be positive amounts in GBP (per patient a year); got {options!r}")
        if not out and numbers and self.red < self.amber:
            out.append(f"red ({self.red!r}) must be at least amber ({self.amber!r}): red is the stricter trigger")
        return out
