"""The synthetic PCT's planted engagement effects, and the evaluation's estimates set beside them.

``ground_truth.json`` (written by :mod:`pbc_analysis.synth`) records, for each specialty, the planted
proportional cut in GP referrals at full ramp (``delta``), the engagement cohorts, and per practice and
financial year the expected referrals and the referrals avoided (expected values, no noise).
:func:`recovery` compares the estimands with them:

- a specialty's relative effect once built up against ``-delta``;
- the all-specialty relative effect against the *engaged practices'* referrals avoided over *their*
  counterfactual (observed expectation + avoided) in the last financial year, when every cohort engaged before
  it is at full effect. The estimand (:func:`pbc_analysis.methods.did.relative_effect`) is the treated
  cohorts' observed over counterfactual rate, so never-engaged practices, whose referrals are not changed,
  must not enter the denominator (they would shrink the truth by about a quarter on the sample: -0.057
  instead of -0.075);
- referrals avoided by financial year and in total against the planted ones.

References
----------
Morris TP, White IR, Crowther MJ (2019). Using simulation studies to evaluate statistical methods. Stat Med
38:2074-2102 (estimand, truth and coverage).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pbc_analysis.core import calendar
from pbc_analysis.stages import benchmark as _bm

__all__ = ["engaged_relative_truth", "load_truth", "planted_truth", "recovery"]


def planted_truth(truth: dict) -> dict[str, pd.DataFrame]:
    """The synthetic PCT's planted engagement effects as tables.

    Parameters
    ----------
    truth : dict
        The parsed ``ground_truth.json``.

    Returns
    -------
    dict of pandas.DataFrame
        ``effects`` (per specialty the planted proportional cut at full ramp, ``delta``, and ``log_effect =
        log(1 - delta)``), ``cohorts`` (cohort, start month, effect scale, practices), ``avoided`` (per practice
        and financial year the expected referrals and referrals avoided) and ``ramp_months``.

    References
    ----------
    The generator's documentation, :mod:`pbc_analysis.synth`.
    """
    eng = truth["engagement"]
    eff = pd.DataFrame({"specialty_code": list(eng["effects_by_specialty"]),
                        "delta": list(eng["effects_by_specialty"].values())})
    eff["log_effect"] = np.log1p(-eff["delta"])
    coh = pd.DataFrame([{k: c[k] for k in ("cohort", "start_month", "effect_scale")} | {"n_practices": len(c["practices"])}
                        for c in eng["cohorts"]])
    py = pd.DataFrame(truth["practice_year"])[["practice_code", "financial_year", "expected_referrals", "referrals_avoided"]]
    return {"effects": eff, "cohorts": coh, "avoided": py, "ramp_months": pd.DataFrame({"ramp_months": [eng["ramp_months"]]})}


def load_truth(data_dir: str | Path) -> dict | None:
    """The synthetic PCT's ``ground_truth.json`` in ``data_dir``, or None for real data.

    Parameters
    ----------
    data_dir : str or Path
        The data directory.

    Returns
    -------
    dict or None

    References
    ----------
    The generator's documentation, :mod:`pbc_analysis.synth`.
    """
    p = Path(data_dir) / "ground_truth.json"
    return json.loads(p.read_text(encoding="utf-8")) if p.exists() else None


def engaged_relative_truth(truth: dict) -> float:
    """The true all-specialty relative effect: the engaged practices' avoided referrals over their counterfactual.

    In the last financial year of ``practice_year``, over the practices of every cohort that engaged before that
    year began (all cohorts if none did): ``-sum(avoided) / sum(expected + avoided)``.

    Parameters
    ----------
    truth : dict
        The parsed ``ground_truth.json``.

    Returns
    -------
    float
        Negative for a reduction.

    References
    ----------
    The estimand of :func:`pbc_analysis.methods.did.relative_effect` (observed over counterfactual rate of the
    treated cohorts); Callaway B, Sant'Anna PHC (2021), J Econometrics 225:200-230.
    """
    py = planted_truth(truth)["avoided"]
    last_year = py["financial_year"].max()
    cohorts = truth["engagement"]["cohorts"]
    before = [c for c in cohorts if c["start_month"] < calendar.fy_start_month(last_year)] or cohorts
    engaged = {p for c in before for p in c["practices"]}
    last = py[(py["financial_year"] == last_year) & py["practice_code"].isin(engaged)]
    return float(-last["referrals_avoided"].sum() / (last["expected_referrals"] + last["referrals_avoided"]).sum())


def recovery(result: Any, truth: dict) -> dict[str, pd.DataFrame]:
    """Estimates beside the planted truth of a synthetic PCT, each with ``covered``.

    Parameters
    ----------
    result : pbc_analysis.stages.evaluation.Result
        The evaluation (its ``did.effects`` and ``avoided``).
    truth : dict
        The parsed ``ground_truth.json``.

    Returns
    -------
    dict of pandas.DataFrame
        ``specialties`` (relative effect at full ramp and its interval against ``-delta``; for ``all`` against
        :func:`engaged_relative_truth`) and ``avoided`` (by financial year and in total).

    References
    ----------
    Morris TP, White IR, Crowther MJ (2019), Stat Med 38:2074-2102 (coverage of the truth).
    """
    pt = planted_truth(truth)
    eff = result.did.effects[["specialty_code", "relative", "relative_ci_low", "relative_ci_high"]].copy()
    truth_rel = dict(zip(pt["effects"]["specialty_code"], -pt["effects"]["delta"]))
    truth_rel[_bm.ALL] = engaged_relative_truth(truth)
    eff["truth"] = eff["specialty_code"].map(truth_rel)
    eff["covered"] = (eff["relative_ci_low"] <= eff["truth"]) & (eff["truth"] <= eff["relative_ci_high"])
    by_year = pt["avoided"].groupby("financial_year")["referrals_avoided"].sum()
    av = result.avoided.copy()
    av["truth"] = av["financial_year"].map(by_year)
    av.loc[av["financial_year"] == "total", "truth"] = float(by_year[by_year.index.isin(av["financial_year"])].sum())
    av["covered"] = (av["ci_low"] <= av["truth"]) & (av["truth"] <= av["ci_high"])
    return {"specialties": eff, "avoided": av}
