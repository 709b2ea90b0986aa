"""Hospital activity of the synthetic PCT: expected counts, draws, tariff, the activity cube, data lag and cost.

GP referrals (MAR-style counts; DOMAIN.md "Spend identity" and calibration)
  mu^R_pvs(m) = r_s/1000 x W_ps(m) x exp(beta z_p + u_p + u_ps) x S^el(moy) x exp(0.01 t(m))
                x E_ps(m) x share_pv
  r_s: referrals per 1,000 weighted patients per month (10.9 in total over the 12 specialties,
  about 130 a year); beta = 0.21 per SD of IMD, u_p ~ N(0, 0.18^2) persistent practice
  propensity, u_ps ~ N(0, 0.10^2). Because deprived practices are younger (lower need), IMD then
  explains about 27-30% of the between-practice variance of crude log referral rates per
  registered patient (checked on 1,500 practices; DOMAIN.md: a quarter to a third), and
  the 5th-95th percentile range of rates is about 2.3-fold (DOMAIN.md: about 2.5-fold).
  Planted under-referrers have u_p = -0.5 (:mod:`pbc_analysis.synth.world`).
  S^el: August 0.89 and December 0.89 dips, mean 1 over the year (DOMAIN.md "Seasonality").
  R_pvs(m) ~ Poisson(mu^R).
Engagement effect (the planted practice action; DOMAIN.md "Evidence on effects")
  E_ps(m) = 1 - delta_s k_c ramp(m - e_p),  ramp(j) = clip((j+1)/6, 0, 1) for j >= 0, else 0
  (1/6 of the effect in the month of engagement, full from the sixth month), delta_s = 0.14
  (110 T&O), 0.12 (410 rheumatology), 0.15 (330 dermatology), 0.02-0.08 elsewhere, k_c a
  cohort scale (1 by default). Engagement changes nothing else.
Outpatients and elective admissions (provider behaviour)
  First_pvs(m) ~ Binomial(R_pvs(m), c_vs)              mean mu^F = c_vs mu^R
  FollowUp_pvs(m) ~ Poisson(f_vs C_v(m) mu^F)          C_v(m) = 1 - 0.20 for the cut provider from
                                                        offset round(45 M/60) (2007-01), else 1
  Elective_pvs(m) ~ Poisson(x_s mu^F)                  x_s electives per first attendance
  The follow-up cut is the planted provider change: it moves follow-ups (and their spend) only.
Emergency activity (not affected by engagement)
  mu^NE_pvs(m) = n_s/1000 x W^NE_ps(m) x exp(0.15 z_p + u^NE_p) x S^NE(moy) x exp(0.015 t(m))
                 x share^NE_pv;   NonElective ~ Poisson(mu^NE)
  mu^AE_pv(m)  = 22/1000 x W^AE_p(m) x exp(0.20 z_p + u^AE_p) x S^AE(moy) x exp(0.02 t(m))
                 x share^AE_pv;   AE ~ Poisson(mu^AE), specialty 180, A&E providers only
  u^NE_p, u^AE_p ~ N(0, 0.10^2); S^NE winter peak (Dec 1.08, Aug 0.95); S^AE from 0.96 (August)
  to 1.04 (DOMAIN.md: NHS England 2016-19). share^AE = share restricted to A&E providers,
  share^NE the same with weight 0.1 for providers without A&E.
Tariff (Payment by Results)
  price_{s,pod}(FY) = base_{s,pod} x 1.025^(FY - 2005/06) x (1 + sigma_pod [FY >= FY*]),
  rounded to pence; base prices in 2005/06 money: first OP 150-250, follow-up 80-110, elective
  2,000-4,400, non-elective 1,200-2,450, A&E 85. Structural change from the April at offset
  48 (2007/08 by default; the first April at or after round(48 M/60)): sigma = +8% first OP,
  -10% follow-up. cost = rint_pence(activity x price x h_v).
Data lag (DOMAIN.md "Data lag")
  The last months of activity (three by default) are binomially thinned with completeness
  (0.97, 0.85, 0.55) (latest month last) and their cost recomputed; referrals are complete.

References
----------
``../shared/DOMAIN.md`` "Spend identity", "Seasonality", "Data lag", "Numbers for calibrating synthetic data".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pbc_analysis.synth.calibration import AE_BASE_PRICE, AE_RATE, AE_SPECIALTY, SpecialtyModel
from pbc_analysis.synth.contract import PODS, SPEC_PODS
from pbc_analysis.synth.params import SynthParams
from pbc_analysis.synth.world import Engagement, Pairs, Population, Practices, Providers, Window

__all__ = ["Layout", "Means", "Prices", "draw", "expected", "layout", "observed", "provider_means", "season_trend",
           "tariff"]


@dataclass(frozen=True)
class Means:
    """Expected counts (Poisson means) by pair, and the multipliers the ground truth needs."""

    season_trend: np.ndarray       # (3, M): referrals, non-elective, A&E season x trend
    E: np.ndarray                  # (P, S, M) engagement multiplier
    C: np.ndarray                  # (npair, 1, M) provider-cut multiplier
    conv: np.ndarray               # (npair, S, 1) first attendances per referral
    fu: np.ndarray                 # (npair, S, 1) follow-ups per first attendance
    el_conv: np.ndarray            # (1, S, 1) electives per first attendance
    hrg: np.ndarray                # (npair,) the provider's HRG factor
    ref: np.ndarray                # (npair, S, M) expected referrals
    ref_noeng: np.ndarray          # (npair, S, M) the same without engagement (E = 1)
    ne: np.ndarray                 # (npair, S, M) expected non-elective admissions
    ae: np.ndarray                 # (npair, M) expected A&E attendances


def season_trend(p: SynthParams, win: Window) -> np.ndarray:
    """Season x secular trend of each month for referrals, non-elective admissions and A&E.

    Parameters
    ----------
    p : SynthParams
    win : Window

    Returns
    -------
    numpy.ndarray
        (3, M).

    References
    ----------
    DOMAIN.md "Seasonality" and calibration (A&E index 0.96 to 1.04).
    """
    return np.stack([np.asarray(p.elective_season, float)[win.moy] * np.exp(p.referral_trend * win.t),
                     np.asarray(p.non_elective_season, float)[win.moy] * np.exp(p.non_elective_trend * win.t),
                     np.asarray(p.ae_season, float)[win.moy] * np.exp(p.ae_trend * win.t)])


def expected(p: SynthParams, win: Window, spec: SpecialtyModel, prac: Practices, eng: Engagement, pairs: Pairs,
             pop: Population, prov: Providers) -> Means:
    """Expected referrals (with and without engagement) and emergency activity by pair, specialty and month.

    Parameters
    ----------
    p : SynthParams
        Resolved.
    win : Window
    spec : SpecialtyModel
    prac : Practices
    eng : Engagement
    pairs : Pairs
    pop : Population
    prov : Providers

    Returns
    -------
    Means

    References
    ----------
    The module docstring ("GP referrals", "Engagement effect", "Emergency activity").
    """
    M, S, W, col = win.n_months, spec.n, pop.W, spec.col
    ts = season_trend(p, win)
    j_since = np.arange(M)[None, :] - eng.engaged_from[:, None]  # (P, M)
    ramp = np.where(j_since >= 0, np.clip((j_since + 1) / p.ramp_months, 0.0, 1.0), 0.0)
    effects = np.array([e for _, e in p.engagement_effects])
    E = 1.0 - effects[None, :, None] * (eng.scale[:, None] * ramp)[:, None, :]  # (P, S, M)
    rate_ps = col["ref_rate"][None, :] / 1000.0 * np.exp(p.beta_deprivation * prac.z[:, None] + eng.u_p[:, None]
                                                         + prac.u_ps)
    Wel = np.ascontiguousarray(W[:, :, :S].transpose(0, 2, 1))  # (P, S, M)
    mu_prac_noeng = rate_ps[:, :, None] * Wel * ts[0][None, None, :]
    del Wel
    share3 = pairs.share[:, None, None]
    mu_ref = (mu_prac_noeng * E)[pairs.practice] * share3  # (npair, S, M)
    mu_ref_noeng = mu_prac_noeng[pairs.practice] * share3
    del mu_prac_noeng
    cut_mult = np.where(np.arange(M) >= p.cut_offset(), 1.0 + p.provider_cut_size, 1.0)  # (M,)
    C = np.where((pairs.provider == pairs.cut)[:, None], cut_mult[None, :], 1.0)[:, None, :]  # (npair, 1, M)
    rate_ne = col["ne_rate"][None, :] / 1000.0 * np.exp(p.beta_deprivation_non_elective * prac.z + prac.u_ne)[:, None]
    Wne = np.ascontiguousarray(W[:, :, S:2 * S].transpose(0, 2, 1))
    mu_ne = (rate_ne[:, :, None] * Wne * ts[1][None, None, :])[pairs.practice] * pairs.ne_share[:, None, None]
    del Wne
    rate_ae = AE_RATE / 1000.0 * np.exp(p.beta_deprivation_ae * prac.z + prac.u_ae)
    mu_ae = (rate_ae[:, None] * W[:, :, 2 * S] * ts[2][None, :])[pairs.practice] * pairs.ae_share[:, None]
    return Means(season_trend=ts, E=E, C=C, conv=prov.conversion[pairs.provider][:, :, None],
                 fu=prov.follow_up[pairs.provider][:, :, None], el_conv=col["el_conv"][None, :, None],
                 hrg=prov.hrg[pairs.provider], ref=mu_ref, ref_noeng=mu_ref_noeng, ne=mu_ne, ae=mu_ae)


def provider_means(m: Means) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expected first attendances, follow-ups and elective admissions from the expected referrals.

    Parameters
    ----------
    m : Means

    Returns
    -------
    first, follow_up, elective : numpy.ndarray
        (npair, S, M) each: c mu^R, f C c mu^R, x c mu^R.

    References
    ----------
    The module docstring ("Outpatients and elective admissions").
    """
    mu_first = m.conv * m.ref
    return mu_first, m.fu * m.C * mu_first, m.el_conv * mu_first


def draw(m: Means, mu_fu: np.ndarray, mu_el: np.ndarray, gens: dict[str, np.random.Generator]) -> dict[str, np.ndarray]:
    """Draw the counts: referrals, first attendances (binomial of referrals), follow-ups, electives, emergencies.

    Parameters
    ----------
    m : Means
    mu_fu, mu_el : numpy.ndarray
        From :func:`provider_means`.
    gens : dict
        Generator of each count: ``ref``, ``first``, ``fu``, ``el``, ``ne``, ``ae``.

    Returns
    -------
    dict
        Count name -> int64 array of the mean's shape.

    References
    ----------
    The module docstring.
    """
    ref = gens["ref"].poisson(m.ref)
    return {"ref": ref, "first": gens["first"].binomial(ref, np.broadcast_to(m.conv, ref.shape)),
            "fu": gens["fu"].poisson(mu_fu), "el": gens["el"].poisson(mu_el), "ne": gens["ne"].poisson(m.ne),
            "ae": gens["ae"].poisson(m.ae)}


# ---------------------------------------------------------------------------------------------
# tariff and the activity cube
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Prices:
    """Tariff prices by point of delivery and financial year."""

    price: dict[str, np.ndarray]   # pod -> (S, n_fy); "ae" -> (n_fy,)
    uplift: np.ndarray             # (n_fy,) uplift index
    struct_fy: int                 # first financial year (index) of the structural change (n_fy: none)


def tariff(p: SynthParams, win: Window, spec: SpecialtyModel) -> Prices:
    """Prices: base x uplift^(years from the base year) x (1 + structural change from its year), to pence.

    Parameters
    ----------
    p : SynthParams
        Resolved.
    win : Window
    spec : SpecialtyModel

    Returns
    -------
    Prices

    References
    ----------
    The module docstring ("Tariff"); DOMAIN.md "Setting" (tariff prices change every April).
    """
    n_fy, col = win.n_fy, spec.col
    offset = p.structural_offset()
    struct_fy = int(win.fy_idx[offset]) if offset >= 0 else n_fy
    sc = dict(p.structural_change)
    base_prices = {"first_op": col["p_first"], "followup_op": col["p_fu"], "elective": col["p_el"],
                   "non_elective": col["p_ne"]}
    uplift = (1.0 + p.tariff_uplift) ** (win.fy_years - p.tariff_base_year).astype(float)  # (n_fy,)
    price: dict[str, np.ndarray] = {}
    for pod, bp in base_prices.items():
        struct = np.where(np.arange(n_fy) >= struct_fy, 1.0 + sc.get(pod, 0.0), 1.0)
        price[pod] = np.round(bp[:, None] * uplift[None, :] * struct[None, :], 2)
    struct_ae = np.where(np.arange(n_fy) >= struct_fy, 1.0 + sc.get("ae", 0.0), 1.0)
    price["ae"] = np.round(AE_BASE_PRICE * uplift * struct_ae, 2)
    return Prices(price=price, uplift=uplift, struct_fy=struct_fy)


@dataclass(frozen=True)
class Layout:
    """The activity cube's combos (specialty x pod, in key order; 180 has only A&E) and their prices."""

    ae_pos: int                    # position of the A&E combo
    spec: np.ndarray               # (NC,) index into the sorted specialty codes (180 included)
    pod: np.ndarray                # (NC,) index into PODS
    curve: np.ndarray              # (NC,) need curve
    kind: np.ndarray               # (NC,) 0 elective pods (referral driven), 1 non-elective, 2 A&E
    s: np.ndarray                  # (NC,) elective specialty index (-1 for A&E)
    podname: list[str]
    price_cf: np.ndarray           # (NC, n_fy)
    price_cm: np.ndarray           # (NC, M)

    @property
    def n(self) -> int:
        """NC = 4 S + 1."""
        return int(self.spec.size)

    def cube(self, el: np.ndarray, first: np.ndarray, fu: np.ndarray, ne: np.ndarray, ae: np.ndarray) -> np.ndarray:
        """Stack (pair, S, M) arrays of the four pods and the (pair, M) A&E into (pair, NC, M) in key order.

        Parameters
        ----------
        el, first, fu, ne : numpy.ndarray
            (npair, S, M).
        ae : numpy.ndarray
            (npair, M).

        Returns
        -------
        numpy.ndarray
            (npair, NC, M).
        """
        x = np.stack([el, first, fu, ne], axis=2).reshape(el.shape[0], 4 * el.shape[1], -1)
        return np.concatenate([x[:, :self.ae_pos], ae[:, None, :], x[:, self.ae_pos:]], axis=1)


def layout(spec: SpecialtyModel, prices: Prices, win: Window) -> Layout:
    """The combos of the activity cube: for each specialty code in sorted order its pods in sorted order.

    Parameters
    ----------
    spec : SpecialtyModel
    prices : Prices
    win : Window

    Returns
    -------
    Layout
    """
    S = spec.n
    ae_pos = 4 * int(np.sum(np.array(spec.codes) < AE_SPECIALTY[0]))
    sp_of = np.repeat(np.arange(S), 4)
    pod_of = np.tile(np.arange(4), S)

    def ins(a: np.ndarray, v: int) -> np.ndarray:
        return np.concatenate([a[:ae_pos], [v], a[ae_pos:]])

    combo_s = ins(sp_of, -1)
    combo_pod = ins(np.array([PODS.index(x) for x in SPEC_PODS])[pod_of], PODS.index("ae"))
    podname = [PODS[i] for i in combo_pod]
    price_cf = np.empty((4 * S + 1, win.n_fy))
    for c in range(4 * S + 1):
        price_cf[c] = prices.price["ae"] if podname[c] == "ae" else prices.price[podname[c]][combo_s[c]]
    return Layout(ae_pos=ae_pos, spec=ins(spec.all_idx[sp_of], spec.all_codes.index(AE_SPECIALTY[0])), pod=combo_pod,
                  curve=ins(np.where(pod_of == 3, S + sp_of, sp_of), 2 * S), kind=ins(np.where(pod_of == 3, 1, 0), 2),
                  s=combo_s, podname=podname, price_cf=price_cf, price_cm=price_cf[:, win.fy_idx])


def observed(p: SynthParams, lay: Layout, m: Means, counts: dict[str, np.ndarray],
             g_lag: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The activity as the PCT sees it: the last months thinned by their completeness, and its cost.

    Parameters
    ----------
    p : SynthParams
        Resolved.
    lay : Layout
    m : Means
    counts : dict
        :func:`draw`'s counts.
    g_lag : numpy.random.Generator

    Returns
    -------
    activity : numpy.ndarray of int64
        (npair, NC, M).
    cost : numpy.ndarray
        activity x price x HRG factor, to pence.

    References
    ----------
    The module docstring ("Data lag", "Tariff").
    """
    act = lay.cube(counts["el"], counts["first"], counts["fu"], counts["ne"], counts["ae"])  # int64 (npair, NC, M)
    comp = np.asarray(p.completeness, float)
    M, k = p.n_months, comp.size
    n_lag = min(k, M)
    for j in range(n_lag):
        mcol = M - n_lag + j
        act[:, :, mcol] = g_lag.binomial(act[:, :, mcol], comp[k - n_lag + j])
    return act, np.round(act * lay.price_cm[None, :, :] * m.hrg[:, None, None], 2)
