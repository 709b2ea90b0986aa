"""The ground truth of the synthetic PCT (``truth`` / ``ground_truth.json``).

Every planted parameter, and per practice x financial year, from expected values (complete
data, no lag): expected_spend; cf_no_practice_action (E = 1); cf_no_provider_change (C = 1);
savings_* = counterfactual - expected_spend; expected_referrals, referrals_avoided; and an
LMDI-I decomposition (Ang 2005) of expected_spend(Y) - expected_spend(base), base = the last
full financial year before the first engagement (2004/05 by default), over cells
(pair, specialty, pod, month of the financial year), each cell's spend being the product of
population (W), secular_trend_and_season (S x trend), practice_action (E), provider_change (C),
tariff (price) and constants:  part_k = sum_i L(V_i^Y, V_i^0) ln(x_ki^Y / x_ki^0),
L(a, b) = (a - b)/(ln a - ln b). The parts add up exactly to the change; they are reported in
pence with the rounding residual (at most a few pence) on the largest part, so they add up
exactly to the rounded change. Only full financial years are decomposed.

References
----------
Ang, B.W. (2005). The LMDI approach to decomposition analysis: a practical guide. Energy Policy 33, 867-871.
``../shared/DOMAIN.md`` "Spend identity".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from pbc_analysis.core import calendar
from pbc_analysis.synth.activity import Layout, Means, Prices
from pbc_analysis.synth.budgets import BUDGET_RULE
from pbc_analysis.synth.calibration import AE_RATE, LMDI_FACTORS, SPECIALTIES, SYNTH_MODEL_VERSION
from pbc_analysis.synth.params import SynthParams
from pbc_analysis.synth.world import Pairs, Population, Window, World

__all__ = ["Lmdi", "Spend", "base_year", "expected_spend", "lmdi", "lmdi_decompose", "pct_rows", "practice_fy",
           "records", "truth_dict", "without_provider_cut"]


def practice_fy(x_pair_m: np.ndarray, fy_first: np.ndarray, pair_start: np.ndarray) -> np.ndarray:
    """Sum a (pair, month) array to (practice, financial year).

    Parameters
    ----------
    x_pair_m : numpy.ndarray
        (npair, M), pairs sorted by practice.
    fy_first : numpy.ndarray
        First month of each financial year.
    pair_start : numpy.ndarray
        First pair of each practice.

    Returns
    -------
    numpy.ndarray
        (P, n_fy).
    """
    return np.add.reduceat(np.add.reduceat(x_pair_m, fy_first, axis=1), pair_start, axis=0)


def _cents(x: Any) -> np.ndarray:
    return np.rint(np.asarray(x) * 100.0).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# expected spend and counterfactuals
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Spend:
    """Expected spend and counterfactuals by practice and financial year (pence), expected referrals."""

    spend: np.ndarray              # (P, n_fy) expected spend in pounds (unrounded)
    spend_c: np.ndarray            # the same in pence
    cf_prac_c: np.ndarray          # without practice action (E = 1), pence
    cf_prov_c: np.ndarray          # without the provider change (C = 1), pence
    exp_ref: np.ndarray            # (P, n_fy) expected referrals
    exp_ref_noeng: np.ndarray      # the same without engagement


def expected_spend(win: Window, m: Means, prices: Prices, pairs: Pairs) -> Spend:
    """Expected spend, its two counterfactuals and the expected referrals, by practice and financial year.

    Parameters
    ----------
    win : Window
    m : Means
    prices : Prices
    pairs : Pairs

    Returns
    -------
    Spend

    References
    ----------
    The module docstring.
    """
    price, fy_idx, fy_first, start = prices.price, win.fy_idx, win.fy_first, pairs.start
    hrg = m.hrg[:, None]
    ne_spend = practice_fy(np.sum(m.ne * (price["non_elective"][:, fy_idx])[None, :, :], axis=1) * hrg, fy_first, start)
    ae_spend = practice_fy(m.ae * price["ae"][fy_idx][None, :] * hrg, fy_first, start)
    pf, pfu, pel = (price[k][:, fy_idx][None, :, :] for k in ("first_op", "followup_op", "elective"))

    def elective_spend(mu_r: np.ndarray, c_mult: np.ndarray) -> np.ndarray:
        per_ref = m.conv * (pf + m.fu * c_mult * pfu + m.el_conv * pel)
        return practice_fy(np.sum(mu_r * per_ref, axis=1) * hrg, fy_first, start)

    emerg = ne_spend + ae_spend
    spend = elective_spend(m.ref, m.C) + emerg
    return Spend(spend=spend, spend_c=_cents(spend), cf_prac_c=_cents(elective_spend(m.ref_noeng, m.C) + emerg),
                 cf_prov_c=_cents(elective_spend(m.ref, np.ones_like(m.C)) + emerg),
                 exp_ref=practice_fy(m.ref.sum(axis=1), fy_first, start),
                 exp_ref_noeng=practice_fy(m.ref_noeng.sum(axis=1), fy_first, start))


# ---------------------------------------------------------------------------------------------
# LMDI
# ---------------------------------------------------------------------------------------------
def _logmean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Logarithmic mean L(a, b) = (a - b)/(ln a - ln b), L(a, a) = a, 0 where either is 0."""
    out = np.zeros(np.broadcast(a, b).shape)
    pos = (a > 0) & (b > 0)
    aa, bb = np.broadcast_to(a, out.shape)[pos], np.broadcast_to(b, out.shape)[pos]
    same = aa == bb
    d = np.log(aa) - np.log(bb)
    val = np.where(same, aa, (aa - bb) / np.where(same, 1.0, d))
    out[pos] = val
    return out


def lmdi_decompose(v0: np.ndarray, v1: np.ndarray, log_ratios: dict[str, np.ndarray]) -> dict[str, float]:
    """LMDI-I: additive parts of ``sum(v1) - sum(v0)`` over cells.

    Parameters
    ----------
    v0, v1 : numpy.ndarray
        Cell values (products of factors) in the base and the comparison period.
    log_ratios : dict
        Factor -> the cell log ratio ln(x_k^1/x_k^0) (broadcastable to the cells).

    Returns
    -------
    dict
        Factor -> its part. The parts add up to the change exactly when the factors' log ratios add up
        to ln(v1/v0) in every cell.

    References
    ----------
    Ang, B.W. (2005). The LMDI approach to decomposition analysis: a practical guide. Energy Policy 33.
    """
    L = _logmean(np.asarray(v1, float), np.asarray(v0, float))
    return {k: float(np.sum(L * np.broadcast_to(r, L.shape))) for k, r in log_ratios.items()}


@dataclass(frozen=True)
class Lmdi:
    """The LMDI parts by practice, year and factor (pence), which years have them, and the largest error."""

    base_fy: int | None            # the base year (index), None when no full year precedes the first engagement
    parts: np.ndarray              # (P, n_fy, 5) int64 pence
    ok: np.ndarray                 # (n_fy,) bool: decomposed (and the base year)
    check: float                   # largest relative error of the parts before rounding


def base_year(win: Window, first_engagement: int) -> int | None:
    """The last full financial year (index) that ends before the first engagement, or None.

    Parameters
    ----------
    win : Window
    first_engagement : int
        Offset of the first cohort.

    Returns
    -------
    int or None
    """
    pre = [int(y) for y in np.flatnonzero(win.fy_months == 12) if win.fy_first[y] + 11 < first_engagement]
    return pre[-1] if pre else None


def lmdi(win: Window, lay: Layout, m: Means, mu_act: np.ndarray, pop: Population, pairs: Pairs, spend: Spend,
         first_engagement: int) -> Lmdi:
    """LMDI-I of each full year's expected spend change from the base year, by practice, in pence.

    Parameters
    ----------
    win : Window
    lay : Layout
    m : Means
    mu_act : numpy.ndarray
        (npair, NC, M) expected activity (complete data).
    pop : Population
    pairs : Pairs
    spend : Spend
    first_engagement : int

    Returns
    -------
    Lmdi

    References
    ----------
    The module docstring; :func:`lmdi_decompose`.
    """
    P = pop.W.shape[0]
    base_fy = base_year(win, first_engagement)
    parts_c = np.zeros((P, win.n_fy, len(LMDI_FACTORS)), dtype=np.int64)
    ok = np.zeros(win.n_fy, bool)
    check = 0.0
    if base_fy is None:
        return Lmdi(None, parts_c, ok, check)
    E_pair = m.E[pairs.practice]  # (npair, S, M)
    for full in np.flatnonzero(win.fy_months == 12):
        y = int(full)
        if y <= base_fy:
            continue
        parts, change = _lmdi_year(win, lay, m, mu_act, pop, pairs, E_pair, base_fy, y)
        check = max(check, float(np.max(np.abs(parts.sum(axis=1) - change) / np.maximum(np.abs(change), 1.0))))
        # pence, with the rounding residual on the largest part: parts add to the rounded change
        pc = _cents(parts)
        resid = (spend.spend_c[:, y] - spend.spend_c[:, base_fy]) - pc.sum(axis=1)
        pc[np.arange(P), np.argmax(np.abs(parts), axis=1)] += resid
        parts_c[:, y] = pc
        ok[y] = True
    ok[base_fy] = True
    return Lmdi(base_fy, parts_c, ok, check)


def _lmdi_year(win: Window, lay: Layout, m: Means, mu_act: np.ndarray, pop: Population, pairs: Pairs,
               E_pair: np.ndarray, base_fy: int, y: int) -> tuple[np.ndarray, np.ndarray]:
    """The (P, 5) LMDI parts of year ``y`` against the base year, and each practice's change."""
    npair, NC = mu_act.shape[:2]
    m0_ = np.arange(win.fy_first[base_fy], win.fy_first[base_fy] + 12)
    m1_ = np.arange(win.fy_first[y], win.fy_first[y] + 12)
    hrg_pair, price_cm = m.hrg[:, None, None], lay.price_cm
    sel_el = lay.kind == 0
    is_fu = np.array([x == "followup_op" for x in lay.podname])
    ts_combo = m.season_trend[lay.kind]  # (NC, M)
    v0 = mu_act[:, :, m0_] * price_cm[None, :, m0_] * hrg_pair
    v1 = mu_act[:, :, m1_] * price_cm[None, :, m1_] * hrg_pair
    W = pop.W
    lnW = np.log(W[:, m1_] / W[:, m0_])[pairs.practice][:, :, lay.curve].transpose(0, 2, 1)  # (npair, NC, 12)
    lnE = np.zeros((npair, NC, 12))
    lnE[:, sel_el] = np.log(E_pair[:, lay.s[sel_el]][:, :, m1_] / E_pair[:, lay.s[sel_el]][:, :, m0_])
    lnC = np.zeros((npair, NC, 12))
    lnC[:, is_fu] = np.log(m.C[:, :, m1_] / m.C[:, :, m0_])
    ratios = {
        "population": lnW,
        "secular_trend_and_season": np.log(ts_combo[:, m1_] / ts_combo[:, m0_])[None],
        "practice_action": lnE,
        "provider_change": lnC,
        "tariff": np.log(price_cm[:, m1_] / price_cm[:, m0_])[None],
    }
    L = _logmean(v1, v0)
    parts = np.stack([np.add.reduceat(np.sum(L * np.broadcast_to(r, L.shape), axis=(1, 2)), pairs.start)
                      for r in ratios.values()], axis=1)  # (P, 5)
    return parts, np.add.reduceat(np.sum(v1 - v0, axis=(1, 2)), pairs.start)


# ---------------------------------------------------------------------------------------------
# records
# ---------------------------------------------------------------------------------------------
def records(prac_list: list[str], win: Window, spend: Spend, lm: Lmdi) -> list[dict[str, Any]]:
    """The ``practice_year`` records of the truth: one per practice and financial year.

    Parameters
    ----------
    prac_list : list of str
        Practice codes.
    win : Window
    spend : Spend
    lm : Lmdi

    Returns
    -------
    list of dict
    """
    spend_c, cf_prac_c, cf_prov_c = spend.spend_c, spend.cf_prac_c, spend.cf_prov_c
    P, n_fy = spend_c.shape
    pc = np.repeat(np.arange(P), n_fy)
    yc = np.tile(np.arange(n_fy), P)
    cols: dict[str, list] = {
        "practice_code": np.array(prac_list)[pc].tolist(),
        "financial_year": np.array(win.fy_labels)[yc].tolist(),
        "months_in_window": win.fy_months[yc].tolist(),
        "expected_spend": (spend_c.ravel() / 100.0).round(2).tolist(),
        "cf_no_practice_action": (cf_prac_c.ravel() / 100.0).round(2).tolist(),
        "cf_no_provider_change": (cf_prov_c.ravel() / 100.0).round(2).tolist(),
        "savings_practice_action": ((cf_prac_c - spend_c).ravel() / 100.0).round(2).tolist(),
        "savings_provider_change": ((cf_prov_c - spend_c).ravel() / 100.0).round(2).tolist(),
        "expected_referrals": spend.exp_ref.ravel().round(3).tolist(),
        "referrals_avoided": (spend.exp_ref_noeng - spend.exp_ref).ravel().round(3).tolist(),
    }
    ok = lm.ok[yc]
    for ki, kname in enumerate(LMDI_FACTORS):
        vals = (lm.parts[:, :, ki].ravel() / 100.0).round(2)
        cols[f"lmdi_{kname}"] = [v if o else None for v, o in zip(vals.tolist(), ok.tolist())]
    if lm.base_fy is not None:
        ch = ((spend_c - spend_c[:, [lm.base_fy]]).ravel() / 100.0).round(2)
        cols["spend_change_from_base"] = [v if o else None for v, o in zip(ch.tolist(), ok.tolist())]
    else:
        cols["spend_change_from_base"] = [None] * (P * n_fy)
    keys = list(cols)
    return [dict(zip(keys, vals)) for vals in zip(*cols.values())]


def pct_rows(win: Window, spend: Spend, lm: Lmdi) -> list[dict[str, Any]]:
    """The ``pct_year`` records of the truth: the PCT's totals by financial year.

    Parameters
    ----------
    win : Window
    spend : Spend
    lm : Lmdi

    Returns
    -------
    list of dict
    """
    def money(c: Any) -> float:
        return round(int(c) / 100.0, 2)

    s, cf_prac, cf_prov = spend.spend_c, spend.cf_prac_c, spend.cf_prov_c
    out = []
    for y in range(win.n_fy):
        row = {"financial_year": win.fy_labels[y], "months_in_window": int(win.fy_months[y]),
               "expected_spend": money(s[:, y].sum()),
               "cf_no_practice_action": money(cf_prac[:, y].sum()),
               "cf_no_provider_change": money(cf_prov[:, y].sum()),
               "savings_practice_action": money((cf_prac[:, y] - s[:, y]).sum()),
               "savings_provider_change": money((cf_prov[:, y] - s[:, y]).sum()),
               "expected_referrals": round(float(spend.exp_ref[:, y].sum()), 3),
               "referrals_avoided": round(float((spend.exp_ref_noeng[:, y] - spend.exp_ref[:, y]).sum()), 3)}
        for ki, kname in enumerate(LMDI_FACTORS):
            row[f"lmdi_{kname}"] = money(lm.parts[:, y, ki].sum()) if lm.ok[y] else None
        row["spend_change_from_base"] = money((s[:, y] - s[:, lm.base_fy]).sum()) if lm.ok[y] else None
        out.append(row)
    return out


# ---------------------------------------------------------------------------------------------
# the truth dictionary
# ---------------------------------------------------------------------------------------------
def truth_dict(given: SynthParams, p: SynthParams, w: World, prices: Prices, spend: Spend, lm: Lmdi,
               mean_hc: float) -> dict[str, Any]:
    """The JSON-serialisable ground truth: every planted parameter and the true spend, savings and parts.

    Parameters
    ----------
    given : SynthParams
        The parameters as given (``None`` for derived values).
    p : SynthParams
        Resolved.
    w : World
    prices : Prices
    spend : Spend
    lm : Lmdi
    mean_hc : float
        Mean cost of a high-cost patient.

    Returns
    -------
    dict
        Written as ``ground_truth.json`` (:func:`pbc_analysis.synth.write.write_tables`).
    """
    labels = w.win.month_labels
    head = {"generator": {"module": "pbc_analysis.synth", "model_version": SYNTH_MODEL_VERSION,
                          "params": given.to_dict(), "resolved_params": p.to_dict()},
            "seed": int(p.seed),
            "window": {"start_month": labels[0], "end_month": labels[-1], "n_months": w.win.n_months,
                       "financial_years": w.win.fy_labels}}
    tail = {"lmdi": {"method": "LMDI-I (Ang 2005), cells = practice x provider x specialty x pod x month of year",
                     "base_year": w.win.fy_labels[lm.base_fy] if lm.base_fy is not None else None,
                     "factors": list(LMDI_FACTORS),
                     "max_relative_error_before_rounding": float(f"{lm.check:.3g}")},
            "practices": _practice_info(w),
            "practice_year": records(w.prac.codes.tolist(), w.win, spend, lm),
            "pct_year": pct_rows(w.win, spend, lm)}
    return {**head, **_planted(p, w, prices), **_calibration(p, w, mean_hc), **tail}


def _practice_info(w: World) -> list[dict[str, Any]]:
    """One record per practice: cohort, engagement month, under-referrer, propensity, IMD z, list, consortium."""
    eng, prac, labels = w.eng, w.prac, w.win.month_labels
    n_cohorts, under_set = eng.n_cohorts, set(eng.under.tolist())
    return [
        {"practice_code": c, "cohort": (int(k_) + 1 if k_ < n_cohorts else None),
         "engaged_from": (labels[int(e_)] if k_ < n_cohorts else None),
         "under_referrer": bool(i in under_set), "log_propensity": round(float(up), 6),
         "imd_z": round(float(zz), 6), "list_size_start": int(ls), "consortium": cn}
        for i, (c, k_, e_, up, zz, ls, cn) in enumerate(zip(
            prac.codes.tolist(), eng.cohort.tolist(), eng.engaged_from.tolist(), eng.u_p.tolist(), prac.z.tolist(),
            w.pop.list_total[:, 0].tolist(), prac.consortium_names[prac.consortium].tolist()))
    ]


def _planted(p: SynthParams, w: World, prices: Prices) -> dict[str, Any]:
    """The planted effects: engagement, under-referrers, provider change, tariff, season, trend, deprivation, lag."""
    labels, codes, fy_labels, n_fy = w.win.month_labels, w.prac.codes, w.win.fy_labels, w.win.n_fy
    eng, struct_fy, M = w.eng, prices.struct_fy, w.win.n_months
    n_lag, k = min(len(p.completeness), M), len(p.completeness)
    return {
        "engagement": {
            "cohorts": [{"cohort": i + 1, "offset": int(o_), "start_month": labels[int(o_)],
                         "effect_scale": float(p.effect_scales()[i]),
                         "practices": codes[eng.cohort == i].tolist()}
                        for i, o_ in enumerate(p.cohorts())],
            "never_engaged": codes[eng.cohort == eng.n_cohorts].tolist(),
            "effects_by_specialty": {c: float(e) for c, e in p.engagement_effects},
            "ramp_months": int(p.ramp_months),
            "ramp_rule": "multiplier 1 - effect x scale x clip((months since engagement + 1)/ramp_months, 0, 1)",
        },
        "under_referrers": {"practices": codes[eng.under].tolist(),
                            "log_propensity": float(p.under_referrer_log_propensity)},
        "provider_change": {"provider_code": w.prov.codes.tolist()[w.pairs.cut],
                            "effective_month": labels[p.cut_offset()],
                            "offset": p.cut_offset(), "pod": "followup_op", "specialty_code": "all",
                            "relative_change_in_follow_up_ratio": float(p.provider_cut_size)},
        "tariff": {"annual_uplift": float(p.tariff_uplift),
                   "price_base_year": calendar.financial_year_label(p.tariff_base_year),
                   "uplift_index_by_year": {fy_labels[i]: round(float(prices.uplift[i]), 8) for i in range(n_fy)},
                   "structural_change": {
                       "financial_year": fy_labels[struct_fy] if struct_fy < n_fy else None,
                       "offset": p.structural_offset(),
                       "relative_change_by_pod": {k_: float(v_) for k_, v_ in p.structural_change}}},
        "seasonality": {kname: {f"{i + 1:02d}": float(v_) for i, v_ in enumerate(vals)} for kname, vals in
                        (("elective_referrals", p.elective_season), ("non_elective", p.non_elective_season),
                         ("ae", p.ae_season))},
        "secular_trend": {"referrals": p.referral_trend, "non_elective": p.non_elective_trend, "ae": p.ae_trend},
        "deprivation": {"beta_referrals": p.beta_deprivation, "beta_non_elective": p.beta_deprivation_non_elective,
                        "beta_ae": p.beta_deprivation_ae, "imd_mean": round(w.prac.imd_mean, 6),
                        "imd_sd": round(w.prac.imd_sd, 6), "practice_propensity_sd": p.practice_propensity_sd,
                        "share_of_propensity_variance": round(p.beta_deprivation ** 2 / (
                            p.beta_deprivation ** 2 + p.practice_propensity_sd ** 2), 4)},
        "completeness": {labels[M - n_lag + j]: float(p.completeness[k - n_lag + j]) for j in range(n_lag)},
    }


def _calibration(p: SynthParams, w: World, mean_hc: float) -> dict[str, Any]:
    """The calibration: specialty rates, A&E rate, provider constants, high-cost tail, budget rule."""
    prov, spec_codes = w.prov, w.spec.codes
    S, prov_list = len(spec_codes), prov.codes.tolist()
    return {
        "specialties": {c: {"referrals_per_1000_weighted_per_month": sp[2], "conversion": sp[3],
                            "follow_up_ratio": sp[4], "electives_per_first": sp[5],
                            "non_elective_per_1000_per_month": sp[6]} for c, sp in zip(spec_codes, SPECIALTIES)},
        "ae_per_1000_weighted_per_month": AE_RATE,
        "providers": {prov_list[v]: {"has_ae": bool(prov.has_ae[v]), "hrg_factor": float(prov.hrg[v]),
                                     "conversion": {spec_codes[s]: float(prov.conversion[v, s]) for s in range(S)},
                                     "follow_up_ratio": {spec_codes[s]: float(prov.follow_up[v, s]) for s in range(S)}}
                      for v in range(prov.n)},
        "high_cost": {"threshold": p.high_cost_threshold, "pareto_alpha": p.high_cost_alpha, "cap": p.high_cost_cap,
                      "share_of_spend": p.high_cost_share, "mean_cost": round(float(mean_hc), 2),
                      "chronic_fraction": p.high_cost_chronic_fraction},
        "budget_rule": BUDGET_RULE,
    }


def without_provider_cut(inputs: Any, truth: dict) -> Any:
    """The synthetic PCT's validated inputs with its planted provider follow-up cut undone.

    The cut provider's follow-up activity and cost from the effective month are divided by
    ``1 + relative change`` (``truth["provider_change"]``). Used to check how much of the cut an
    attribution puts on the practices' side (compare with the same PCT generated with
    ``provider_cut_size=0``).

    Parameters
    ----------
    inputs : pbc_analysis.data.Inputs
        Validated inputs of a synthetic PCT.
    truth : dict
        Its ``ground_truth.json``.

    Returns
    -------
    pbc_analysis.data.Inputs
        A copy with the activity table changed.
    """
    cut = truth["provider_change"]
    act = inputs.activity
    hit = ((act["provider_code"] == cut["provider_code"]) & (act["pod"] == cut["pod"])
           & (act["month"].astype(str) >= cut["effective_month"])).to_numpy()
    scale = np.where(hit, 1.0 / (1.0 + cut["relative_change_in_follow_up_ratio"]), 1.0)
    return dataclasses.replace(inputs, activity=act.assign(activity=act["activity"] * scale, cost=act["cost"] * scale))
