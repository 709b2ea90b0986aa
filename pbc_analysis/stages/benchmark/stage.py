"""The benchmarking stage in one call: :func:`run` (notebook 02), its :class:`Result`, and notebook 04's gate.

:func:`run` takes the stage's :class:`~pbc_analysis.stages.benchmark.params.Params` (the one source of every
setting) and returns a :class:`Result` whose :meth:`Result.tables` are the tables notebook 02 writes,
:meth:`Result.headline` the ``benchmarking`` section of ``results.json`` and :meth:`Result.describe` its
reading in words. :func:`under_referrer_flags` is the part of benchmarking notebook 04's under-referrer gate
needs, with the same (shared) settings.

References
----------
Spiegelhalter DJ (2005), Funnel plots for comparing institutional performance, Stat Med 24:1185-1202.
NHS England (2019), Making Data Count (the SPC charts of flagged practices).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import pandas as pd

from pbc_analysis.core import numbers
from pbc_analysis.core.checks import check_choice
from pbc_analysis.core.names import did_you_mean
from pbc_analysis.core.params import AUTO
from pbc_analysis.methods import spc as _spc
from pbc_analysis.stages.benchmark.cube import ALL, BenchmarkError, Cube, build_cube, select_measures
from pbc_analysis.stages.benchmark.expected import expected_counts, standardised_ratios
from pbc_analysis.stages.benchmark.flagging import flags, scorecard
from pbc_analysis.stages.benchmark.funnels import FUNNEL_KEYS, Funnels, funnel_table
from pbc_analysis.stages.benchmark.params import Params
from pbc_analysis.stages.benchmark.peers import decile_fan, peer_positions

if TYPE_CHECKING:
    from pbc_analysis.data import Inputs

__all__ = ["IMPROVEMENT", "RATIO_COLUMNS", "SPECIALTY_RATIO_COLUMNS", "Result", "benchmark_practices", "describe",
           "headline", "result_tables", "run", "under_referrer_flags"]

#: the direction of improvement of each measure, for the SPC charts
IMPROVEMENT: dict[str, str] = {"referrals": "decrease", "first_op": "decrease", "followup_op": "decrease",
                               "elective": "neither", "non_elective": "decrease", "ae": "decrease"}
RATIO_COLUMNS = ["period", "practice_code", "consortium", "measure", "specialty_code", "observed", "expected",
                 "person_years", "cost", "ratio", "lower_95_0", "upper_95_0", "lower_99_8", "upper_99_8",
                 "rate_per_1000", "standardised_rate_per_1000", "z", "limit_lower_95_0", "limit_upper_95_0",
                 "limit_lower_99_8", "limit_upper_99_8", "position", "pct_percentile", "pct_decile",
                 "consortium_percentile", "consortium_decile", "change", "trend_per_period"]
SPECIALTY_RATIO_COLUMNS = ["period", "practice_code", "measure", "specialty_code", "observed", "expected", "ratio",
                           "limit_lower_95_0", "limit_upper_95_0", "limit_lower_99_8", "limit_upper_99_8",
                           "position", "pct_percentile"]


@dataclass(frozen=True, eq=False)
class Result:
    """All benchmarking tables of a run (:func:`run`, :func:`benchmark_practices`).

    ``ratios`` holds, per period, practice, measure and specialty (and ``all``), the observed and expected
    counts, ratio and limits, funnel position and peer position; ``funnels`` the funnels; ``flags`` every
    practice-period's flags; ``scorecard`` one row per practice in ``latest_period``; ``monthly`` the monthly
    ratios of the SPC measure (for the fan chart and SPC); ``fan`` their deciles; ``spc`` XmR charts of the
    practices flagged in the latest period; ``settings`` the settings used.
    """

    ratios: pd.DataFrame
    funnels: Funnels
    flags: pd.DataFrame
    scorecard: pd.DataFrame
    monthly: pd.DataFrame
    fan: pd.DataFrame
    spc: pd.DataFrame
    latest_period: str
    settings: dict

    def tables(self) -> dict[str, pd.DataFrame]:
        """The result tables notebook 02 writes (:func:`result_tables`).

        Returns
        -------
        dict
            Table name -> DataFrame.
        """
        return result_tables(self)

    def headline(self) -> dict[str, Any]:
        """The ``benchmarking`` section of ``results.json`` (:func:`headline`).

        Returns
        -------
        dict
        """
        return headline(self)

    def describe(self) -> str:
        """The headline in plain words (:func:`describe`).

        Returns
        -------
        str
        """
        return describe(headline(self))


def run(inputs: Inputs, params: Params, cube: Cube | None = None) -> Result:
    """The benchmarking stage (notebook 02): expected counts, ratios, funnels, peers, flags, scorecard, SPC.

    Parameters
    ----------
    inputs : pbc_analysis.data.Inputs
        Validated inputs.
    params : Params
        The stage's settings (``periods`` ``"auto"``: every period of the window, the rule's value).
    cube : Cube, optional
        The inputs' :func:`build_cube`, when already built.

    Returns
    -------
    Result

    References
    ----------
    See :mod:`pbc_analysis.stages.benchmark` (each step and its source).
    """
    return benchmark_practices(cube if cube is not None else build_cube(inputs), params)


def _settings(params: Params | None, settings: Mapping[str, Any]) -> Params:
    """``params`` (defaults: :class:`Params`) with ``settings`` replaced, every value checked."""
    params = params if params is not None else Params()
    unknown = [k for k in settings if k not in Params.settings()]
    if unknown:
        raise BenchmarkError(f"benchmarking has no setting {unknown[0]!r}{did_you_mean(unknown[0], set(Params.settings()))}; "
                             f"its settings are {', '.join(Params.settings())}")
    return dataclasses.replace(params, **settings) if settings else params


def benchmark_practices(cube: Cube, params: Params | None = None, *, improvement: Mapping[str, str] | None = None,
                        **settings: Any) -> Result:
    """Standardised ratios, funnels, peer positions, flags, scorecard, decile fan and SPC in one call.

    Every setting is a field of :class:`Params` (its defaults are the stage's, the notebook's and the config's:
    there is no other copy); ``settings`` replace single fields (``benchmark_practices(cube,
    overdispersion="phi")``). ``monthly`` has the monthly ratios of ``spc_measure`` (all specialties) for the
    fan chart and SPC; ``spc`` XmR charts of the monthly ratio of every practice flagged in the latest period
    (limits from its first ``spc_baseline_months`` months; improvement direction from ``improvement``, by
    measure: :data:`IMPROVEMENT` by default).

    Parameters
    ----------
    cube : Cube
        :func:`build_cube` of the validated inputs.
    params : Params, optional
        The settings (default: ``Params()``).
    improvement : mapping, optional
        Measure -> ``increase`` | ``decrease`` | ``neither`` | ``neutral``, overriding :data:`IMPROVEMENT`.
    **settings
        Fields of :class:`Params` to replace.

    Returns
    -------
    Result

    References
    ----------
    Spiegelhalter (2005) (funnels); PHEindicatormethods (ratios); OpenPrescribing (deciles); NHS England (2019),
    Making Data Count (SPC).
    """
    p = _settings(params, settings)
    directions = {**IMPROVEMENT, **(improvement or {})}
    for measure, direction in directions.items():
        check_choice(f"improvement[{measure!r}]", direction, _spc.Improvement)
    if p.spc_measure not in set(cube.series["measure"]):
        raise BenchmarkError(f"spc_measure {p.spc_measure!r} is not in the data; measures are "
                             f"{', '.join(dict.fromkeys(cube.series['measure']))}")
    periods = None if p.periods == AUTO else list(p.periods)
    expected = expected_counts(cube, period=p.period, periods=periods, standardisation=p.standardisation,
                               target=p.target)
    ratios = standardised_ratios(expected, confidence=p.confidence, info=cube.practice_info)
    funnels = funnel_table(ratios, overdispersion=p.overdispersion, sr_method=p.sr_method, trim_by=p.trim_by,
                           consistency=p.consistency, levels=(p.high_level, p.under_level))
    ratios = funnels.units
    peers = peer_positions(ratios)  # same rows, same order
    ratios = pd.concat([ratios, peers.drop(columns=FUNNEL_KEYS + ["practice_code", "consortium", "ratio"])], axis=1)
    flag_table = flags(ratios, high_level=p.high_level, under_level=p.under_level,
                       persistent_min_periods=p.persistent_min_periods, persistent_window=p.persistent_window)
    latest = sorted(ratios["period"].unique())[-1]
    card = scorecard(ratios, flag_table, latest, measure=p.spc_measure, level=p.confidence[0])
    monthly, fan, chart = _monitoring(cube, p, flag_table, latest, directions[p.spc_measure])
    used = {**p.values(), "improvement": directions, "reference_rates": cube.has_reference_rates}
    return Result(ratios, funnels, flag_table, card, monthly, fan, chart, latest, used)


def _monitoring(cube: Cube, p: Params, flag_table: pd.DataFrame, latest: str,
                improvement: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Monthly ratios of the SPC measure (expected counts scaled to the PCT each month, so seasonality cancels),
    their decile fan, and the XmR charts of the practices flagged in ``latest``."""
    monthly = standardised_ratios(expected_counts(select_measures(cube, [p.spc_measure]), period="month",
                                                  standardisation=p.standardisation, target="pct"),
                                  confidence=(), info=cube.practice_info)
    fan = decile_fan(monthly)
    flagged = flag_table[(flag_table["period"] == latest) & (flag_table["measure"] == p.spc_measure)
                         & (flag_table["specialty_code"] == ALL) & (flag_table["flag"] != "")]["practice_code"]
    series = monthly[(monthly["specialty_code"] == ALL) & monthly["practice_code"].isin(set(flagged))]
    if len(series):
        chart = _spc.xmr(series[["practice_code", "period", "ratio"]].rename(columns={"period": "month"}),
                         "ratio", "month", by="practice_code", baseline=p.spc_baseline_months,
                         improvement=improvement)
    else:
        chart = pd.DataFrame(columns=["practice_code", "month", "ratio"])
    return monthly, fan, chart


def under_referrer_flags(inputs: Inputs, params: Params, cube: Cube | None = None) -> pd.DataFrame:
    """The benchmarking flags notebook 04's under-referrer gate reads: GP referrals, every financial year.

    The same expected counts, ratios, funnels and flags as :func:`run` with ``params``' shared settings
    (``standardisation``, ``target``, ``overdispersion``, ``sr_method``, ``trim_by``, ``consistency``,
    ``under_level``), over every financial year of the window whatever ``period`` and ``periods`` say (the
    gate matches financial years), for GP referrals only (the gate's measure; each series' funnel is its
    own, so these rows equal those of a full run). Its ``possible_under_referrer`` of all specialties holds
    a practice's share of savings for review (:mod:`pbc_analysis.stages.attribution`).

    Parameters
    ----------
    inputs : pbc_analysis.data.Inputs
        Validated inputs.
    params : Params
        Benchmarking's settings (notebook 04: ``Params.from_namespace(globals())``).
    cube : Cube, optional
        The inputs' :func:`build_cube`, when already built.

    Returns
    -------
    pandas.DataFrame
        :func:`~pbc_analysis.stages.benchmark.flagging.flags` rows of ``referrals``.

    References
    ----------
    Audit Commission (2007), Putting commissioning into practice (savings not paid for under-referral);
    Spiegelhalter (2005) (the funnel limits).
    """
    sub = select_measures(cube if cube is not None else build_cube(inputs), ["referrals"])
    expected = expected_counts(sub, period="financial_year", standardisation=params.standardisation,
                               target=params.target)
    ratios = standardised_ratios(expected, confidence=(), info=sub.practice_info)
    funnels = funnel_table(ratios, overdispersion=params.overdispersion, sr_method=params.sr_method,
                           trim_by=params.trim_by, consistency=params.consistency,
                           levels=(params.high_level, params.under_level))
    return flags(funnels.units, high_level=params.high_level, under_level=params.under_level,
                 persistent_min_periods=params.persistent_min_periods, persistent_window=params.persistent_window)


def headline(bm: Result) -> dict[str, Any]:
    """Headline figures for ``results.json`` (section ``benchmarking``).

    The latest period's flagged practices for the SPC measure (all specialties), the over-dispersion of its
    funnel, the deprivation gradient and counts of flags by measure.

    Parameters
    ----------
    bm : Result

    Returns
    -------
    dict

    References
    ----------
    Spiegelhalter (2005) (phi, tau^2, the dispersion test).
    """
    s = bm.settings
    m, latest = s["spc_measure"], bm.latest_period
    f = bm.flags[(bm.flags["period"] == latest) & (bm.flags["specialty_code"] == ALL)]
    fm = f[f["measure"] == m]
    d = bm.funnels.dispersion
    dm = d[(d["period"] == latest) & (d["measure"] == m) & (d["specialty_code"] == ALL)].iloc[0]
    spec = bm.ratios[(bm.ratios["period"] == latest) & (bm.ratios["measure"] == m) & (bm.ratios["specialty_code"] != ALL)]
    beta = spec.groupby("specialty_code")["deprivation_log_rr"].first()
    by_measure = f.groupby("measure")[["high_referrer", "possible_under_referrer", "persistent_outlier"]].sum()
    return {
        "latest_period": latest,
        "measure": m,
        "standardisation": s["standardisation"],
        "target": s["target"],
        "n_practices": int(fm["practice_code"].nunique()),
        "high_referrers": sorted(fm.loc[fm["high_referrer"], "practice_code"].tolist()),
        "possible_under_referrers": sorted(fm.loc[fm["possible_under_referrer"], "practice_code"].tolist()),
        "persistent_outliers": sorted(fm.loc[fm["persistent_outlier"], "practice_code"].tolist()),
        "overdispersion": {"used": str(dm["overdispersion_used"]), "phi": float(dm["phi"]), "tau2": float(dm["tau2"]),
                           "dispersion_p": float(dm["dispersion_p"]), "reason": str(dm["overdispersion_reason"])},
        "deprivation_rate_ratio_per_sd_median": (float(np.exp(np.nanmedian(beta.to_numpy(float))))
                                                 if beta.notna().any() else None),
        "flags_by_measure": {k: {c: int(v) for c, v in row.items()} for k, row in by_measure.iterrows()},
    }


def result_tables(bm: Result) -> dict[str, pd.DataFrame]:
    """The run's benchmarking tables (written by notebook 02 to ``tables/``).

    ``bm_ratios`` (all specialties together, every measure and period, all columns),
    ``bm_specialty_ratios`` (each specialty in the latest period, the funnel columns; every flagged
    specialty of every period is in ``bm_flags``), ``bm_deprivation`` (the fitted deprivation gradient),
    ``bm_dispersion`` (one row per funnel), ``bm_flags`` (flagged practice-periods only),
    ``bm_scorecard``, ``bm_decile_fan`` (all specialties) and ``bm_spc`` (monthly SPC of flagged practices).

    Parameters
    ----------
    bm : Result

    Returns
    -------
    dict
        Table name -> DataFrame.

    References
    ----------
    See :mod:`pbc_analysis.stages.benchmark`.
    """
    r = bm.ratios
    cols = [c for c in RATIO_COLUMNS if c in r.columns]
    allr = r.loc[r["specialty_code"] == ALL, cols]
    spec = r.loc[(r["specialty_code"] != ALL) & (r["period"] == bm.latest_period),
                 [c for c in SPECIALTY_RATIO_COLUMNS if c in r.columns]]
    dep = (r.loc[r["specialty_code"] != ALL].groupby(["period", "measure", "specialty_code"], observed=True)
           ["deprivation_log_rr"].first().reset_index())
    dep["rate_ratio_per_sd"] = np.exp(dep["deprivation_log_rr"])
    f = bm.flags
    flagged = f.loc[f["flag"] != ""]
    spc_cols = [c for c in bm.spc.columns if c not in ("baseline",)]
    return {
        "bm_ratios": allr,
        "bm_specialty_ratios": spec,
        "bm_deprivation": dep,
        "bm_dispersion": bm.funnels.dispersion,
        "bm_flags": flagged,
        "bm_scorecard": bm.scorecard,
        "bm_decile_fan": bm.fan.loc[bm.fan["specialty_code"] == ALL],
        "bm_spc": bm.spc[spc_cols],
    }


def describe(head: Mapping[str, Any]) -> str:
    """A short plain-language reading of :func:`headline` (numbers from the results, none typed in).

    Parameters
    ----------
    head : mapping
        :func:`headline` (or the ``benchmarking`` section of ``results.json``).

    Returns
    -------
    str
        Markdown paragraphs.

    References
    ----------
    Spiegelhalter (2005) (what over-dispersion means for the limits).
    """
    od = head["overdispersion"]
    lines = [f"**{head['latest_period']}, {head['measure'].replace('_', ' ')}, all specialties:** "
             f"{head['n_practices']} practices compared on expected counts adjusted for "
             f"{head['standardisation'].replace('+', ' and ').replace('_', '-')} "
             f"(benchmark: {'this PCT' if head['target'] == 'pct' else 'the reference rates'})."]
    if od["used"] == "none":
        lines.append(f"Practices vary no more than chance predicts (phi = {od['phi']:.2f}); the limits are unadjusted.")
    else:
        ptxt = numbers.p_text(od["dispersion_p"])
        lines.append(f"Practices vary {od['phi']:.1f} times more than Poisson noise (dispersion test {ptxt}), "
                     f"so the limits are widened ({'additive random effects, tau squared' if od['used'] == 'tau2' else 'multiplicative phi'}).")
    for key, label in (("high_referrers", "High referrers"), ("possible_under_referrers", "Possible under-referrers"),
                       ("persistent_outliers", "Persistent outliers")):
        codes = head[key]
        lines.append(f"{label}: {', '.join(codes) if codes else 'none'}.")
    if head.get("deprivation_rate_ratio_per_sd_median") is not None:
        lines.append(f"Deprivation gradient: one standard deviation of IMD score goes with "
                     f"{head['deprivation_rate_ratio_per_sd_median']:.2f} times the rate (median over specialties).")
    return "\n\n".join(lines)
