"""The generator: :func:`generate` runs the named steps in order and returns the tables and the ground truth.

Steps (each a function of the parameters and its own random generator):

1. window and calibration             :func:`pbc_analysis.synth.world.window`, :mod:`~pbc_analysis.synth.calibration`
2. providers                          :func:`pbc_analysis.synth.world.draw_providers`
3. practices, consortia, engagement   :func:`~pbc_analysis.synth.world.draw_practices`,
                                      :func:`~pbc_analysis.synth.world.assign_engagement`
4. practice-provider pairs            :func:`pbc_analysis.synth.world.draw_pairs`
5. population                         :func:`pbc_analysis.synth.world.population`
6. expected referrals and emergencies :func:`pbc_analysis.synth.activity.expected`
7. counts, tariff, data lag, cost     :func:`~pbc_analysis.synth.activity.draw`, :func:`~pbc_analysis.synth.activity.tariff`,
                                      :func:`~pbc_analysis.synth.activity.observed`
8. tables                             :mod:`pbc_analysis.synth.tables`
9. ground truth (spend, LMDI)         :mod:`pbc_analysis.synth.truth`
10. budgets and high-cost patients    :mod:`pbc_analysis.synth.budgets`

Every draw comes from ``numpy.random.default_rng(seed)`` and 14 child generators spawned from it (one per
step, :func:`streams`), fully vectorised (the only Python loops run over months, specialties, points of
delivery, age-sex cells or financial years, never over practices or rows), so the same parameters give
byte-identical files. Large intermediate arrays are released as soon as their tables are built.

References
----------
NumPy, ``numpy.random.Generator.spawn`` (independent child streams).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from pbc_analysis.synth import activity, budgets, tables, truth, world
from pbc_analysis.synth.calibration import specialty_model
from pbc_analysis.synth.contract import TABLE_COLUMNS
from pbc_analysis.synth.params import SynthParams

__all__ = ["SynthResult", "generate", "streams"]

# the child generators, in spawn order ("population" is reserved: the population is deterministic given the draws)
STREAMS = ("providers", "practices", "population", "engagement", "pairs", "ref", "first", "fu", "el", "ne", "ae",
           "lag", "high_cost", "names")


@dataclass
class SynthResult:
    """Tables (keys = data-dictionary table names) and the JSON-serialisable ground truth."""

    tables: dict[str, pd.DataFrame]
    truth: dict[str, Any]
    params: SynthParams = field(default_factory=SynthParams)


def streams(seed: int) -> dict[str, np.random.Generator]:
    """The child generators of ``default_rng(seed)``, one per step.

    Parameters
    ----------
    seed : int

    Returns
    -------
    dict
        Step name (:data:`STREAMS`) -> generator.
    """
    return dict(zip(STREAMS, np.random.default_rng(seed).spawn(len(STREAMS))))


class _Stages:
    def __init__(self, total: int, progress: bool, desc: str = "synth") -> None:
        self.bar = tqdm(total=total, desc=desc, unit="step", disable=not progress, leave=False)

    def __call__(self, label: str) -> None:
        self.bar.set_postfix_str(label, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def generate(params: SynthParams | None = None, progress: bool = False) -> SynthResult:
    """Generate the synthetic PCT: tables (data-dictionary format) and the ground truth.

    Parameters
    ----------
    params : SynthParams, optional
        Default: the sample's parameters.
    progress : bool
        Show a progress bar of the steps.

    Returns
    -------
    SynthResult
        ``tables``, ``truth`` and the resolved ``params``.

    Raises
    ------
    pbc_analysis.core.checks.ArgumentError
        (a ``ValueError``) listing every parameter out of range or breaking a rule (:meth:`SynthParams.problems`).

    References
    ----------
    :mod:`pbc_analysis.synth` (the model, step by step).
    """
    given = params if params is not None else SynthParams()
    p = given.resolved()
    stage = _Stages(9, progress)
    try:
        rng = streams(p.seed)
        w, population_table = _world(p, rng, stage)
        m = activity.expected(p, w.win, w.spec, w.prac, w.eng, w.pairs, w.pop, w.prov)
        prices = activity.tariff(p, w.win, w.spec)
        lay = activity.layout(w.spec, prices, w.win)
        out = _observed_tables(p, w, m, lay, rng, stage)
        truth_, budget_table, hc_table = _truth(given, p, w, m, lay, prices, rng, stage)
        out |= {"population": population_table, "budgets": budget_table, "high_cost_patients": hc_table}
        return SynthResult(tables={name: out[name][cols] for name, cols in TABLE_COLUMNS.items()}, truth=truth_,
                           params=p)
    finally:
        stage.close()


def _world(p: SynthParams, rng: dict[str, np.random.Generator],
           stage: _Stages) -> tuple[world.World, pd.DataFrame]:
    """Steps 1 to 5: window, providers, practices and engagement, pairs, population (and its table, so the
    registered counts are released at once; the table is as large and is kept to the end either way)."""
    win, spec = world.window(p), specialty_model()
    places = world.place_names(rng["names"])
    prov = world.draw_providers(p, rng["providers"], places, spec)
    stage("providers")
    prac = world.draw_practices(p, rng["practices"], rng["names"], prov, places)
    eng = world.assign_engagement(p, rng["engagement"], prac)
    stage("practices")
    pairs = world.draw_pairs(p, rng["pairs"], prac, prov)
    stage("pairs")
    registered, pop = world.population(p, win, prac, spec)
    population_table = tables.population_table(win, prac, registered)
    stage("population")
    return world.World(win=win, spec=spec, prov=prov, prac=prac, eng=eng, pairs=pairs, pop=pop), population_table


def _observed_tables(p: SynthParams, w: world.World, m: activity.Means, lay: activity.Layout,
                     rng: dict[str, np.random.Generator], stage: _Stages) -> dict[str, pd.DataFrame]:
    """Steps 7 and 8: the counts, the data lag and cost, and the tables but population, budgets, high-cost."""
    _, mu_fu, mu_el = activity.provider_means(m)
    counts = activity.draw(m, mu_fu, mu_el, rng)
    del mu_fu, mu_el
    stage("referrals")
    act, cost = activity.observed(p, lay, m, counts, rng["lag"])
    ref = counts.pop("ref")
    del counts
    stage("activity")
    out = tables.reference_tables(w.prac, w.prov, w.spec)
    out["referrals"] = tables.referrals_table(w.win, w.prac, w.prov, w.pairs, w.spec, ref)
    del ref
    out["activity"] = tables.activity_table(w.win, w.prac, w.prov, w.pairs, lay, act, cost, w.spec)
    del act, cost
    out["tariff"] = tables.tariff_table(lay, w.spec, w.win)
    out |= tables.event_tables(p, w.win, w.prac, w.prov, w.eng, w.pairs)
    out["reference_rates"] = tables.reference_rates(w.spec)
    stage("tables")
    return out


def _truth(given: SynthParams, p: SynthParams, w: world.World, m: activity.Means, lay: activity.Layout,
           prices: activity.Prices, rng: dict[str, np.random.Generator],
           stage: _Stages) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """Steps 9 and 10: expected spend, LMDI, budgets, high-cost patients and the truth dictionary."""
    spend = truth.expected_spend(w.win, m, prices, w.pairs)
    mu_first, mu_fu, mu_el = activity.provider_means(m)  # recomputed (bit-identical) rather than kept
    mu_act = lay.cube(mu_el, mu_first, mu_fu, m.ne, m.ae)  # (npair, NC, M)
    del mu_first, mu_fu, mu_el
    first = min(p.cohorts())
    lm = truth.lmdi(w.win, lay, m, mu_act, w.pop, w.pairs, spend, first)
    stage("truth")
    budget_table = budgets.historic_budgets(w, lay, m, mu_act, first)
    del mu_act
    hc_table, mean_hc = budgets.high_cost_patients(p, rng["high_cost"], spend.spend, w)
    stage("budgets and high-cost patients")
    return truth.truth_dict(given, p, w, prices, spend, lm, mean_hc), budget_table, hc_table
