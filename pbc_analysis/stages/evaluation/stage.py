"""The referral evaluation as one stage: :func:`run` (inputs and :class:`~.params.Params` in, :class:`Result` out).

:func:`run` evaluates engagement's effect on the measure (GP referrals by default) every way notebook 03 shows,
on the months from ``baseline_window``'s first to ``evaluation_window``'s last:

1. ITS: the PCT's monthly series, segmented quasi-Poisson with ``harmonics`` seasonal pairs, list as offset,
   level and slope change at ``interruption``, up to ``its_end``; and the controlled ITS with never-engaged
   practices as comparison (:mod:`pbc_analysis.methods.its`); events avoided with simulation intervals
   (``n_sims``, ``seed``).
2. Staggered DiD by specialty on ``period_months`` periods (:func:`~.effects.evaluate_did`), events avoided by
   financial year from ``evaluation_window``'s first month (:func:`~.effects.events_avoided`), CS against static
   TWFE and Poisson TWFE (:func:`~.effects.estimator_comparison`) and the Bacon decomposition of the TWFE
   estimate.
3. Placebo: the same DiD with engagement moved ``placebo_shift_months`` earlier on pre-engagement months only.
4. Regression to the mean among never-engaged practices between ``rtm_baseline`` and ``rtm_follow_up`` in
   ``rtm_specialty``.
5. Provider changes (:func:`~.effects.provider_change_check`) up to ``activity_end``.

References
----------
Callaway B, Sant'Anna PHC (2021), J Econometrics 225:200-230; Lopez Bernal J, Cummins S, Gasparrini A (2017),
Int J Epidemiol 46:348-355; Goodman-Bacon A (2021), J Econometrics 225:254-277.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pbc_analysis.core import numbers
from pbc_analysis.methods import did as _did
from pbc_analysis.methods import its as _its
from pbc_analysis.stages import benchmark as _bm
from pbc_analysis.stages import facts as _facts
from pbc_analysis.stages.evaluation.effects import (
    DiDEvaluation,
    estimator_comparison,
    evaluate_did,
    events_avoided,
    provider_change_check,
    regression_to_the_mean,
)
from pbc_analysis.stages.evaluation.panels import (
    its_frame,
    pct_series,
    period_panel,
    placebo_panel,
    practice_month_panel,
    restrict_window,
)
from pbc_analysis.stages.evaluation.params import Params

if TYPE_CHECKING:
    from pbc_analysis.data import Inputs

__all__ = ["TABLE_NAMES", "Result", "describe", "headline", "result_tables", "run"]

#: the result tables notebook 03 writes
TABLE_NAMES = ("ev_its", "ev_its_coefficients", "ev_did_effects", "ev_event_study", "ev_attgt_all", "ev_avoided",
               "ev_estimators", "ev_bacon", "ev_placebo", "ev_rtm", "ev_provider_check")


@dataclass
class Result:
    """Everything notebook 03 shows (:func:`run`)."""

    params: Params                 # the settings, every "auto" resolved
    panel: pd.DataFrame            # practice x month x specialty (the analysis window)
    period_panel: pd.DataFrame     # practice x period x specialty (the DiD's data)
    its: Any                       # ITSResult, PCT series
    its_controlled: Any            # ITSResult, engaged vs never-engaged
    its_avoided: pd.DataFrame      # effect_summary of its (total row last)
    its_controlled_avoided: pd.DataFrame
    did: DiDEvaluation
    avoided: pd.DataFrame          # events avoided by financial year (Callaway-Sant'Anna)
    comparison: pd.DataFrame       # CS vs TWFE vs Poisson TWFE
    bacon: pd.DataFrame            # Goodman-Bacon summary of the TWFE estimate (all specialties)
    placebo: DiDEvaluation
    rtm: pd.DataFrame
    provider_check: pd.DataFrame
    specialty_names: dict[str, str]

    @property
    def measure(self) -> str:
        """The measure evaluated."""
        return self.params.measure

    @property
    def interruption(self) -> str:
        """The ITS interruption month."""
        return self.params.interruption

    @property
    def its_end(self) -> str:
        """The ITS's last month."""
        return self.params.its_end

    @property
    def confidence(self) -> float:
        """The level of every interval."""
        return self.params.confidence

    def tables(self) -> dict[str, pd.DataFrame]:
        """The result tables notebook 03 writes (:func:`result_tables`).

        Returns
        -------
        dict
            Name -> DataFrame.
        """
        return result_tables(self)

    def headline(self) -> dict[str, Any]:
        """The ``evaluation`` section of results.json (:func:`headline`).

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
        return describe(self.headline())


def _its_fits(panel: pd.DataFrame, p: Params) -> tuple[Any, Any]:
    """The PCT's segmented ITS and the controlled ITS (engaged against never-engaged practices)."""
    single = its_frame(pct_series(panel), p.interruption, p.its_end)
    fit = _its.fit_segmented(single, "events", "t", "post", offset="registered", family="quasipoisson",
                             harmonics=p.harmonics, season="calendar_month", slope_change=True, confidence=p.confidence)
    both = its_frame(pct_series(panel, by_engagement=True), p.interruption, p.its_end)
    controlled = _its.fit_controlled(both, "events", "t", "post", group="group", treated_value="engaged",
                                     offset="registered", family="quasipoisson", harmonics=p.harmonics,
                                     season="calendar_month", slope_change=True, confidence=p.confidence)
    return fit, controlled


def run(inputs: Inputs, params: Params, facts: _facts.DataFacts | None = None) -> Result:
    """The referral evaluation: ITS, staggered DiD by specialty, placebo, regression to the mean, provider check.

    Parameters
    ----------
    inputs : pbc_analysis.data.Inputs
        Validated inputs.
    params : Params
        The stage's settings; any ``"auto"`` left is derived from ``facts`` and every cross-setting rule is
        checked (:meth:`Params.resolve`) before anything is estimated.
    facts : pbc_analysis.stages.facts.DataFacts, optional
        The facts of ``inputs`` (read from them when not given).

    Returns
    -------
    Result

    Raises
    ------
    pbc_analysis.core.checks.ArgumentError
        Listing every broken rule, with its fix.

    References
    ----------
    See the module docstring: Callaway and Sant'Anna (2021), Lopez Bernal et al. (2017), Goodman-Bacon (2021),
    Barnett et al. (2005).
    """
    p, _ = params.resolve(facts if facts is not None else _facts.data_facts(inputs))
    cube = _bm.build_cube(inputs)
    panel = practice_month_panel(inputs, measure=p.measure, specialties=p.specialties or None, cube=cube)
    panel = restrict_window(panel, p.baseline_window[0], p.evaluation_window[1])
    its_fit, its_c = _its_fits(panel, p)
    q = period_panel(panel, p.period_months)
    did_of = functools.partial(evaluate_did, control_group=p.control_group, full_effect_from=p.full_effect_from,
                               confidence=p.confidence, period_months=p.period_months)
    dd = did_of(q)
    all_q = q[q["specialty_code"] == _bm.ALL]
    bacon = _did.bacon_summary(_did.bacon_decomposition(all_q, "rate", "practice_code", "t", "cohort"))
    placebo = did_of(period_panel(placebo_panel(panel, p.placebo_shift_months), p.period_months))
    names = dict(zip(inputs.specialties["specialty_code"].astype(str), inputs.specialties["specialty_name"].astype(str)))
    return Result(
        params=p, panel=panel, period_panel=q, its=its_fit, its_controlled=its_c,
        its_avoided=_its.effect_summary(its_fit, n_sims=p.n_sims, seed=p.seed, confidence=p.confidence),
        its_controlled_avoided=_its.effect_summary(its_c, n_sims=p.n_sims, seed=p.seed, confidence=p.confidence),
        did=dd, avoided=events_avoided(dd.attgt[_bm.ALL], q, from_month=p.evaluation_window[0]),
        comparison=estimator_comparison(q, dd.attgt[_bm.ALL]), bacon=bacon, placebo=placebo,
        rtm=regression_to_the_mean(panel, p.window("rtm_baseline"), p.window("rtm_follow_up"), top_share=p.rtm_top_share,
                                   specialty_code=p.rtm_specialty),
        provider_check=provider_change_check(inputs, end=p.activity_end, harmonics=p.harmonics, confidence=p.confidence),
        specialty_names={**names, _bm.ALL: "All specialties"})


def _its_row(name: str, fit: Any, avoided: pd.DataFrame) -> dict[str, Any]:
    s = fit.summary()
    tot = avoided.iloc[-1]
    return {"model": name, "level_change": s["level_change_ratio"], "level_change_ci_low": s["level_change_ci_low"],
            "level_change_ci_high": s["level_change_ci_high"], "slope_change": s["slope_change_ratio"],
            "slope_change_ci_low": s["slope_change_ci_low"], "slope_change_ci_high": s["slope_change_ci_high"],
            "dispersion": s["dispersion"], "ljung_box_p": s["ljung_box_p"], "avoided": tot["avoided"],
            "avoided_ci_low": tot["avoided_low"], "avoided_ci_high": tot["avoided_high"]}


def _named(df: pd.DataFrame, names: dict[str, str]) -> pd.DataFrame:
    out = df.copy()
    out.insert(1, "specialty_name", out["specialty_code"].map(names).fillna(""))
    return out


def result_tables(ev: Result) -> dict[str, pd.DataFrame]:
    """The evaluation's result tables (``ev_*``): modelled or PCT-level figures only, no practice-level counts.

    Parameters
    ----------
    ev : Result

    Returns
    -------
    dict
        :data:`TABLE_NAMES` -> DataFrame (the regression-to-the-mean table holds ratios only).

    References
    ----------
    The publishing rules (``DOMAIN.md``): modelled outputs are exempt from suppression; no patient- or
    practice-level counts.
    """
    its_tab = pd.DataFrame([_its_row("ITS (PCT)", ev.its, ev.its_avoided),
                            _its_row("Controlled ITS (engaged vs never engaged)", ev.its_controlled,
                                     ev.its_controlled_avoided)])
    coef = pd.concat([ev.its.coefficients.assign(model="ITS (PCT)"),
                      ev.its_controlled.coefficients.assign(model="Controlled ITS")]).rename_axis("term").reset_index()
    attgt = ev.did.attgt[_bm.ALL].drop(columns=[c for c in ("cband_low", "cband_high") if c in ev.did.attgt[_bm.ALL]])
    return {
        "ev_its": its_tab,
        "ev_its_coefficients": coef[["model", "term", "estimate", "std_error", "ratio", "ci_low", "ci_high", "p_value"]],
        "ev_did_effects": _named(ev.did.effects, ev.specialty_names),
        "ev_event_study": ev.did.event_study,
        "ev_attgt_all": attgt.assign(post=attgt["post"].astype(int)),
        "ev_avoided": ev.avoided,
        "ev_estimators": ev.comparison,
        "ev_bacon": ev.bacon,
        "ev_placebo": _named(ev.placebo.effects, ev.specialty_names),
        "ev_rtm": ev.rtm,
        "ev_provider_check": ev.provider_check,
    }


def _est(v: Any, lo: Any, hi: Any) -> dict[str, float]:
    return {"estimate": float(v), "ci_low": float(lo), "ci_high": float(hi)}


def headline(ev: Result) -> dict[str, Any]:
    """Headline figures for ``results.json`` section ``evaluation`` (JSON-able).

    Parameters
    ----------
    ev : Result

    Returns
    -------
    dict
        Referrals avoided (total and by year), the relative effect once built up, the ATT, the pre-trend test,
        specialties with a significant reduction, the ITS and TWFE figures, the placebo, regression to the mean
        and the provider changes.

    References
    ----------
    Callaway B, Sant'Anna PHC (2021), J Econometrics 225:200-230.
    """
    eff = ev.did.effects.set_index("specialty_code")
    a = eff.loc[_bm.ALL]
    tot = ev.avoided.iloc[-1]
    its_tot, its_c = ev.its_avoided.iloc[-1], ev.its_controlled_avoided.iloc[-1]
    sig = eff.drop(index=_bm.ALL)
    pl = ev.placebo.effects.set_index("specialty_code").loc[_bm.ALL]
    comp = ev.comparison.set_index("estimator")
    return {
        "measure": ev.measure,
        "confidence": ev.confidence,
        "control_group": ev.did.control_group,
        "period_months": ev.did.period_months,
        "full_effect_from_periods": ev.did.full_effect_from,
        "interruption": ev.interruption,
        "its_end": ev.its_end,
        "referrals_avoided": _est(tot["avoided"], tot["ci_low"], tot["ci_high"]),
        "referrals_avoided_by_year": {r.financial_year: _est(r.avoided, r.ci_low, r.ci_high)
                                      for r in ev.avoided.iloc[:-1].itertuples()},
        "relative_effect_full": _est(a["relative"], a["relative_ci_low"], a["relative_ci_high"]),
        "att_rate_per_1000": _est(a["att"], a["att_ci_low"], a["att_ci_high"]),
        "pretrend_p": float(a["pretrend_p"]),
        "pretrend_level": pretrend_level(ev.confidence),
        "pretrend_failed": _pretrend_failed(sig, ev.confidence, ev.specialty_names),
        "specialties_with_significant_reduction": sorted(sig.index[sig["relative_ci_high"] < 0].tolist()),
        "specialties_evaluated": int(len(sig)),
        "its_avoided": _est(its_tot["avoided"], its_tot["avoided_low"], its_tot["avoided_high"]),
        "controlled_its_avoided": _est(its_c["avoided"], its_c["avoided_low"], its_c["avoided_high"]),
        "twfe_avoided": _est(*comp.loc["TWFE (rate)", ["avoided", "ci_low", "ci_high"]]),
        "placebo_relative": _est(pl["relative"], pl["relative_ci_low"], pl["relative_ci_high"]),
        "placebo_shift_months": ev.params.placebo_shift_months,
        "rtm_top_group_change": float(ev.rtm.set_index("group").loc["top", "change"]),
        "provider_changes": [{k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in r.items()}
                             for r in ev.provider_check.to_dict("records")],
    }


def pretrend_level(confidence: float) -> float:
    """The level below which a pre-trend test fails: one minus the run's confidence (0.05 at 95%).

    Parameters
    ----------
    confidence : float
        The level of every interval of the evaluation.

    Returns
    -------
    float

    References
    ----------
    Roth J (2022), Pretest with caution: event-study estimates after testing for parallel trends. AER: Insights
    4:305-322 (a pre-test that fails is evidence against the design; one that passes is not proof of it).
    """
    return round(1.0 - float(confidence), 10)


def _pretrend_failed(eff: pd.DataFrame, confidence: float, names: dict[str, str]) -> list[dict[str, Any]]:
    """The specialties whose pre-trend test fails (p below :func:`pretrend_level`), in code order, with their names."""
    p = pd.to_numeric(eff["pretrend_p"], errors="coerce")
    bad = eff[p < pretrend_level(confidence)]
    return [{"specialty_code": str(code), "specialty_name": names.get(str(code), ""), "pretrend_p": float(r["pretrend_p"])}
            for code, r in bad.sort_index().iterrows()]


_CONTROL_LABEL = {"not_yet": "not-yet-engaged and never-engaged", "never": "never-engaged"}


def _pretrend_text(p: Any) -> str:
    """The pre-trend test's p-value in words; a test that could not be computed (null or NaN: e.g. Hotelling's F
    with no more practices than pre-engagement periods) is said to be so, never printed as a number."""
    if p is None or not np.isfinite(float(p)):
        return ("the pre-trend test could not be computed on these data (too few practices for the number of "
                "pre-engagement periods)")
    return f"pre-trend test {numbers.p_text(p)}"


def describe(head: dict[str, Any]) -> str:
    """The headline in plain words (Markdown), every number from ``head``.

    Parameters
    ----------
    head : dict
        A :func:`headline` (or results.json's ``evaluation`` section).

    Returns
    -------
    str

    References
    ----------
    Callaway B, Sant'Anna PHC (2021), J Econometrics 225:200-230.
    """
    r, rel = head["referrals_avoided"], head["relative_effect_full"]
    pl = head["placebo_relative"]
    conf = f"{head['confidence']:.0%}"
    sig = head["specialties_with_significant_reduction"]
    lines = [
        f"Engaged practices made **{r['estimate']:,.0f} fewer GP referrals** than they would have without engagement "
        f"({conf} CI {r['ci_low']:,.0f} to {r['ci_high']:,.0f}), from their engagement to the end of the window "
        f"(staggered difference-in-differences, {_CONTROL_LABEL.get(head['control_group'], head['control_group'])} practices as comparison).",
        f"Once the effect had built up, their referral rate was **{-rel['estimate']:.1%} lower** than it would have "
        f"been ({conf} CI {-rel['ci_high']:.1%} to {-rel['ci_low']:.1%} lower).",
        f"Specialties with a reduction whose interval excludes zero: {', '.join(sig) if sig else 'none'} "
        f"(of {head['specialties_evaluated']}).",
        f"Placebo (engagement moved {head['placebo_shift_months']} months earlier, pre-engagement data only): "
        f"{pl['estimate']:+.1%} ({conf} CI {pl['ci_low']:+.1%} to {pl['ci_high']:+.1%}); {_pretrend_text(head['pretrend_p'])}.",
    ]
    return "\n\n".join(lines)
