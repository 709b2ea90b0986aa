"""The synthetic PCT's structure: window, providers, practices, consortia, engagement, practice-provider pairs, lists.

Each step is one function of the parameters and its own random generator (child generators spawned from
``default_rng(seed)``, :func:`pbc_analysis.synth.generator.streams`), vectorised over practices.

Practices (DOMAIN.md: list median 8,100, IQR 5,200-12,000; IMD median 21, range 3-70)
  L0_p ~ exp(N(ln 8100, 0.62^2)) clipped to [1000, 40000]; ln IQR = 0.836 = 2 x 0.674 x 0.62.
  single_handed_p = L0_p < 3,200 (about 5%) or p is the smallest practice (when >= 10 practices).
  IMD_p ~ exp(N(ln 21, 0.55^2)) truncated to [3, 75] (inverse-CDF draw; DOMAIN.md range 3-70).
  Codes: one letter, two-digit area prefix (81-92), three digits (``P81001``); one area block per
  500 practices, so a PCT shares one prefix (with ``code_block`` k, as ``pbc synth --national`` sets per
  commissioner: 250 codes of its own, after those of block k - 1; its providers ``R`` + two characters of the
  block + one). Location in the unit square: 75% of practices around
  a provider's town (N(0, 0.08^2) scatter), 25% uniform; it drives provider choice and consortia
  (strip partition of the map into max(1, round(P/11)) contiguous groups of about 11) and is
  not written out.

Population (registered list at the start of each month; DOMAIN.md "Setting" and calibration)
  list_p(m)     = L0_p x exp(g_p t(m)),  g_p ~ N(0.01, 0.01^2)  (about 1% a year, some shrink)
  share_pa(m)   ∝ pyr_a x exp(tilt_p (age_a - 40)/20 + e_pa) x exp(0.005 t(m) (age_a - 40)/40)
  tilt_p        = -0.15 z_p + N(0, 0.10^2)  (more deprived = younger), e_pa ~ N(0, 0.08^2),
                  pyr_a an England 2005-like pyramid; the last factor is slow ageing.
  registered_pam = rint(list_p(m) x share_pa(m))   (integers; the list total is their sum).
  Weighted list W_pc(m) = sum_a registered_pam need_c(a) for each of the 25 need curves c
  (:mod:`pbc_analysis.synth.calibration`).

Providers (not in DOMAIN.md; plausible PCT structure)
  V = 4 for a PCT (<= 200 practices), else round(P/40). Codes ``R`` + two characters, town names.
  round(0.8 V) have a type 1 A&E (the others are smaller elective centres). Each practice uses
  its 3 nearest providers (the third replaced by the nearest A&E provider if none of the three
  has one; the third dropped for 15% of practices when an A&E provider remains), shares
  share_pv ∝ Dirichlet(30 w_pv + 0.5),  w_pv ∝ size_v exp(-d_pv / 0.15)  (distance decay),
  summing to 1 over the practice's providers. Only those (p, v) pairs get rows, each with a full
  months x specialty x pod grid (explicit zeros) as the data dictionary's gap rule needs.
  Provider constants: conversion c_vs = c_s e^{N(0,0.03^2)} (0.85-0.95), follow-up ratio
  f_vs = f_s e^{N(0,0.15^2)} (about 2.0 per first attendance overall; DOMAIN.md: ~2.1),
  HRG-mix factor h_v = e^{N(0,0.03^2)} clipped to [0.93, 1.07] (case mix / coding of the
  provider, fixed over time: its cost per unit is h_v x tariff price).

Engagement (the planted practice action; DOMAIN.md "Evidence on effects")
  Staggered cohorts start at the offsets of :func:`pbc_analysis.synth.params.default_cohort_offsets`
  (2005-04, 2005-10, 2006-04 for the default 60 months from 2003-04) with 30%, 25%, 15% of practices;
  30% never engage (larger practices tend to engage earlier: score 0.5 z(ln L0) + N(0,1)).
  max(1, round(P/30)) engaged practices are planted under-referrers with log propensity u_p = -0.5.

References
----------
``../shared/DOMAIN.md`` "Numbers for calibrating synthetic data (England)".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.special import ndtr, ndtri

from pbc_analysis.core import calendar
from pbc_analysis.synth.calibration import (
    AGE_MID,
    COMPASS,
    LETTERS,
    PRACTICE_KINDS,
    PREFIXES,
    PYR_F,
    PYR_M,
    SPECIALTIES,
    STEMS,
    SUFFIXES,
    SpecialtyModel,
)
from pbc_analysis.synth.params import PRACTICES_PER_BLOCK, SynthParams, largest_remainder

__all__ = ["Engagement", "Pairs", "Population", "Practices", "Providers", "Window", "World", "assign_engagement",
           "draw_pairs", "draw_practices", "draw_providers", "numbered_places", "place_names", "population", "window"]


# ---------------------------------------------------------------------------------------------
# window
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    """The months of the window and their financial years (April to March)."""

    month_labels: list[str]        # M months, YYYY-MM
    moy: np.ndarray                # month of the year, 0 (January) .. 11
    t: np.ndarray                  # years since the start, m / 12
    fy_years: np.ndarray           # first calendar year of each financial year in the window
    fy_idx: np.ndarray             # financial year (index) of each month
    fy_labels: list[str]           # YYYY/YY
    fy_first: np.ndarray           # first month offset of each financial year
    fy_months: np.ndarray          # months of each financial year inside the window

    @property
    def n_months(self) -> int:
        """M."""
        return len(self.month_labels)

    @property
    def n_fy(self) -> int:
        """The number of (full or part) financial years in the window."""
        return int(self.fy_years.size)


def window(p: SynthParams) -> Window:
    """The window of ``p``: ``n_months`` months from ``start_month``.

    Parameters
    ----------
    p : SynthParams

    Returns
    -------
    Window

    References
    ----------
    :mod:`pbc_analysis.core.calendar` (the one month and financial-year arithmetic).
    """
    labels = calendar.month_range(p.start_month, calendar.add_months(p.start_month, p.n_months - 1))
    fy_start = np.array([calendar.fy_start_year(calendar.fy_of_month(m)) for m in labels])
    fy_years = np.unique(fy_start)
    fy_idx = np.searchsorted(fy_years, fy_start)
    n_fy = fy_years.size
    return Window(month_labels=labels, moy=np.array([int(m[5:7]) - 1 for m in labels]),
                  t=np.arange(p.n_months) / 12.0, fy_years=fy_years, fy_idx=fy_idx,
                  fy_labels=[calendar.financial_year_label(int(y)) for y in fy_years],
                  fy_first=np.searchsorted(fy_idx, np.arange(n_fy)), fy_months=np.bincount(fy_idx, minlength=n_fy))


# ---------------------------------------------------------------------------------------------
# names
# ---------------------------------------------------------------------------------------------
def place_names(g_names: np.random.Generator) -> np.ndarray:
    """Every stem x suffix place name (``Ashford``, ...), in a random order.

    Parameters
    ----------
    g_names : numpy.random.Generator

    Returns
    -------
    numpy.ndarray of str
    """
    perm = g_names.permutation(STEMS.size * SUFFIXES.size)
    return np.char.add(STEMS[perm // SUFFIXES.size], SUFFIXES[perm % SUFFIXES.size])


def numbered_places(places: np.ndarray, start: int, n: int) -> np.ndarray:
    """``n`` distinct place names from position ``start`` on, numbered (``Ashford 2``) once they run out.

    Parameters
    ----------
    places : numpy.ndarray of str
    start, n : int

    Returns
    -------
    numpy.ndarray of str
    """
    idx = start + np.arange(n)
    base = places[idx % places.size]
    extra = idx // places.size
    return np.where(extra > 0, np.char.add(np.char.add(base, " "), (extra + 1).astype(str)), base)


# ---------------------------------------------------------------------------------------------
# providers
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Providers:
    """Providers sorted by code, with their towns, sizes and constants."""

    codes: np.ndarray
    names: np.ndarray
    town_xy: np.ndarray            # (V, 2)
    size: np.ndarray               # (V,) relative size (halved without A&E)
    has_ae: np.ndarray             # (V,) bool
    conversion: np.ndarray         # (V, S) first attendances per referral
    follow_up: np.ndarray          # (V, S) follow-ups per first attendance
    hrg: np.ndarray                # (V,) HRG-mix factor

    @property
    def n(self) -> int:
        """V."""
        return int(self.codes.size)


def _provider_codes(g_prov: np.random.Generator, V: int, block: int | None = None) -> np.ndarray:
    """Distinct ``R`` + two (up to 900 providers) or three characters codes; in a block, ``R`` + the block's two
    characters + one drawn (so the blocks' codes sort in block order)."""
    alphabet = np.array(list("ABCDEFGHJKLMNPQRSTVWXY0123456789"))
    if block is not None:
        ordered = np.sort(alphabet)
        head = "R" + ordered[block // ordered.size] + ordered[block % ordered.size]
        return np.char.add(head, ordered[g_prov.choice(ordered.size, size=V, replace=False)])
    if V <= 900:
        pick = g_prov.choice(26 * alphabet.size, size=V, replace=False)
        letters2 = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
        return np.char.add(np.char.add("R", letters2[pick // alphabet.size]), alphabet[pick % alphabet.size])
    pick = g_prov.choice(22 * alphabet.size ** 2, size=V, replace=False)
    return np.char.add(np.char.add(np.char.add("R", alphabet[pick // alphabet.size ** 2]),
                                   alphabet[(pick // alphabet.size) % alphabet.size]),
                       alphabet[pick % alphabet.size])


def draw_providers(p: SynthParams, g_prov: np.random.Generator, places: np.ndarray,
                   spec: SpecialtyModel) -> Providers:
    """The PCT's providers: towns, sizes, A&E, codes, names, conversion, follow-up ratios and HRG factors.

    Parameters
    ----------
    p : SynthParams
        Resolved.
    g_prov : numpy.random.Generator
    places : numpy.ndarray of str
        :func:`place_names`.
    spec : SpecialtyModel

    Returns
    -------
    Providers

    References
    ----------
    The module docstring ("Providers").
    """
    V, S = p.providers(), spec.n
    town_xy = g_prov.uniform(0.1, 0.9, size=(V, 2))
    size_v = np.exp(g_prov.normal(0.0, 0.3, size=V))
    n_ae = max(1, int(round(p.ae_fraction * V))) if V > 1 else 1
    has_ae = np.zeros(V, dtype=np.bool_)
    has_ae[g_prov.choice(V, size=n_ae, replace=False)] = True
    size_v = np.where(has_ae, size_v, 0.5 * size_v)
    codes = _provider_codes(g_prov, V, p.code_block)
    order = np.argsort(codes, kind="stable")  # sort by code (the table key); carry attributes along
    codes, town_xy, size_v, has_ae = codes[order], town_xy[order], size_v[order], has_ae[order]
    place = numbered_places(places, 0, V)
    names = np.where(has_ae, np.char.add(place, " Hospitals NHS Trust"),
                     np.char.add(place, " Treatment Centre NHS Trust"))
    conv = np.clip(spec.col["conversion"][None, :] * np.exp(g_prov.normal(0, p.conversion_sd, (V, S))), 0.5, 0.98)
    fu = spec.col["fu_ratio"][None, :] * np.exp(g_prov.normal(0, p.follow_up_ratio_sd, (V, S)))
    hrg = np.clip(np.exp(g_prov.normal(0, p.hrg_factor_sd, V)), 0.93, 1.07).round(3)
    return Providers(codes=codes, names=names, town_xy=town_xy, size=size_v, has_ae=has_ae, conversion=conv.round(4),
                     follow_up=fu.round(4), hrg=hrg)


# ---------------------------------------------------------------------------------------------
# practices
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Practices:
    """Practices sorted by code: list sizes, deprivation, location, consortia, propensities."""

    codes: np.ndarray
    names: np.ndarray
    consortium: np.ndarray         # (P,) consortium index
    consortium_names: np.ndarray   # (n_c,)
    list0: np.ndarray              # (P,) list size at the start, L0
    single: np.ndarray             # (P,) bool
    imd: np.ndarray
    imd_mean: float
    imd_sd: float
    z: np.ndarray                  # standardised IMD
    xy: np.ndarray                 # (P, 2) location
    growth: np.ndarray             # yearly log list growth
    tilt: np.ndarray               # age tilt
    cell_noise: np.ndarray         # (P, 38)
    u_p: np.ndarray                # referral propensity (before under-referrers are planted)
    u_ps: np.ndarray               # (P, S)
    u_ne: np.ndarray
    u_ae: np.ndarray

    @property
    def n(self) -> int:
        """P."""
        return int(self.codes.size)


def _practice_codes(g_prac: np.random.Generator, P: int, block: int | None = None) -> np.ndarray:
    """Sorted distinct codes: letter, area prefix, three digits; one area block per 500 practices. In a
    commissioner's block (``code_block`` k), P of the 250 codes k x 250 .. k x 250 + 249 of the code space
    ordered by letter, prefix and number (so the blocks' codes sort in block order)."""
    n_blocks_total = LETTERS.size * PREFIXES.size
    if P > n_blocks_total * 999:
        raise ValueError(f"too many practices ({P}) for the code space ({n_blocks_total * 999})")
    if block is not None:
        flat = block * PRACTICES_PER_BLOCK + g_prac.choice(PRACTICES_PER_BLOCK, size=P, replace=False)
        blk = flat // 999
    else:
        n_blocks = min(n_blocks_total, max(1, math.ceil(P / 500)))
        blocks = (int(g_prac.integers(n_blocks_total)) + np.arange(n_blocks)) % n_blocks_total
        flat = g_prac.choice(n_blocks * 999, size=P, replace=False)
        blk = blocks[flat // 999]
    codes_num = PREFIXES[blk % PREFIXES.size] * 1000 + flat % 999 + 1
    return np.sort(np.char.add(LETTERS[blk // PREFIXES.size], codes_num.astype(str)))


def draw_practices(p: SynthParams, g_prac: np.random.Generator, g_names: np.random.Generator, prov: Providers,
                   places: np.ndarray) -> Practices:
    """The PCT's practices: codes, lists, IMD, location, propensities, consortia and names.

    Parameters
    ----------
    p : SynthParams
        Resolved.
    g_prac, g_names : numpy.random.Generator
    prov : Providers
    places : numpy.ndarray of str

    Returns
    -------
    Practices

    References
    ----------
    The module docstring ("Practices").
    """
    P, S = p.n_practices, len(SPECIALTIES)
    codes = _practice_codes(g_prac, P, p.code_block)
    L0 = np.clip(np.rint(np.exp(np.log(p.list_median) + p.list_log_sd * g_prac.standard_normal(P))),
                 p.list_min, p.list_max)
    single = L0 < p.single_handed_below
    if P >= 10:
        single[np.argmin(L0)] = True
    lo_, hi_ = (ndtr(np.log(b_ / p.imd_median) / p.imd_log_sd) for b_ in (p.imd_min, p.imd_max))
    imd = np.exp(np.log(p.imd_median) + p.imd_log_sd * ndtri(g_prac.uniform(lo_, hi_, P))).round(2)
    imd_mean, imd_sd = float(imd.mean()), float(imd.std())
    z = (imd - imd_mean) / imd_sd
    near_town = g_prac.random(P) < 0.75
    town = g_prac.choice(prov.n, size=P, p=prov.size / prov.size.sum())
    xy = np.where(near_town[:, None], prov.town_xy[town] + g_prac.normal(0, 0.08, (P, 2)), g_prac.random((P, 2)))
    xy = np.clip(xy, 0.0, 1.0)
    growth = g_prac.normal(p.list_growth_mean, p.list_growth_sd, P)
    tilt = p.age_tilt_per_imd_sd * z + g_prac.normal(0, p.age_tilt_sd, P)
    cell_noise = g_prac.normal(0, p.age_cell_noise_sd, (P, 38))
    u_p = g_prac.normal(0, p.practice_propensity_sd, P)
    u_ps = g_prac.normal(0, p.practice_specialty_propensity_sd, (P, S))
    u_ne = g_prac.normal(0, p.emergency_propensity_sd, P)
    u_ae = g_prac.normal(0, p.emergency_propensity_sd, P)
    consortium, n_c = _consortia(xy, p.practices_per_consortium)
    cons_names = np.char.add(_consortium_names(xy, consortium, n_c, places, prov.n), " Locality Consortium")
    kinds = PRACTICE_KINDS[g_names.integers(PRACTICE_KINDS.size, size=P)]
    prac_place = places[g_names.integers(places.size, size=P)]  # names need not be unique
    return Practices(codes=codes, names=np.char.add(np.char.add(prac_place, " "), kinds), consortium=consortium,
                     consortium_names=cons_names, list0=L0, single=single, imd=imd, imd_mean=imd_mean, imd_sd=imd_sd,
                     z=z, xy=xy, growth=growth, tilt=tilt, cell_noise=cell_noise, u_p=u_p, u_ps=u_ps, u_ne=u_ne,
                     u_ae=u_ae)


def _consortia(xy: np.ndarray, per_consortium: float) -> tuple[np.ndarray, int]:
    """Strip partition of the map into contiguous groups of about ``per_consortium`` practices."""
    P = xy.shape[0]
    n_c = max(1, int(round(P / per_consortium)))
    n_strips = max(1, int(round(math.sqrt(n_c))))
    g_per_strip = np.full(n_strips, n_c // n_strips) + (np.arange(n_strips) < n_c % n_strips)
    cum_g = np.concatenate([[0], np.cumsum(g_per_strip)])
    cum_n = np.rint(P * cum_g / n_c).astype(np.int64)
    rank_x = np.empty(P, np.int64)
    rank_x[np.argsort(xy[:, 0], kind="stable")] = np.arange(P)
    strip = np.searchsorted(cum_n, rank_x, side="right") - 1
    order_sy = np.lexsort((xy[:, 1], strip))
    pos = np.empty(P, np.int64)
    pos[order_sy] = np.arange(P)
    r_in = pos - cum_n[strip]
    n_in = (cum_n[1:] - cum_n[:-1])[strip]
    return cum_g[strip] + (r_in * g_per_strip[strip]) // n_in, n_c


def _consortium_names(xy: np.ndarray, consortium: np.ndarray, n_c: int, places: np.ndarray, V: int) -> np.ndarray:
    """Compass names (``North East``) matched to the consortia's centres, or place names beyond nine."""
    if n_c > len(COMPASS):
        return numbered_places(places, V, n_c)
    cx = np.bincount(consortium, weights=xy[:, 0], minlength=n_c) / np.bincount(consortium, minlength=n_c)
    cy = np.bincount(consortium, weights=xy[:, 1], minlength=n_c) / np.bincount(consortium, minlength=n_c)
    ang = np.deg2rad(np.array([0, 90, 45, 0, -45, -90, -135, 180, 135]))
    anchor = np.stack([0.3 * np.cos(ang), 0.3 * np.sin(ang)], axis=1)
    anchor[0] = 0.0
    cost = np.hypot(cx[:, None] - 0.5 - anchor[None, :, 0], cy[:, None] - 0.5 - anchor[None, :, 1])
    _, which = linear_sum_assignment(cost)
    return np.array([COMPASS[i] for i in which])


# ---------------------------------------------------------------------------------------------
# engagement
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Engagement:
    """Who engages when (cohorts), the planted under-referrers and the practices' final log propensities."""

    cohort: np.ndarray             # (P,) cohort index; n_cohorts = never engaged
    offsets: np.ndarray            # (n_cohorts + 1,) cohort start offsets, the last beyond the window (never)
    engaged_from: np.ndarray       # (P,) start offset (beyond the window for never engaged)
    engaged: np.ndarray            # (P,) bool
    under: np.ndarray              # sorted indices of the under-referrers
    u_p: np.ndarray                # (P,) log referral propensity, under-referrers planted
    scale: np.ndarray              # (P,) the cohort's effect scale (0 for never engaged)

    @property
    def n_cohorts(self) -> int:
        """The number of cohorts."""
        return int(self.offsets.size - 1)


def assign_engagement(p: SynthParams, g_eng: np.random.Generator, prac: Practices) -> Engagement:
    """Staggered engagement cohorts (larger practices earlier) and under-referrers among the engaged.

    Parameters
    ----------
    p : SynthParams
        Resolved.
    g_eng : numpy.random.Generator
    prac : Practices

    Returns
    -------
    Engagement

    References
    ----------
    The module docstring ("Engagement"); DOMAIN.md "Setting" (staggered adoption, under-referrers).
    """
    P, M, n_cohorts = prac.n, p.n_months, len(p.cohorts())
    counts = largest_remainder(P, np.array(list(p.cohort_fractions) + [p.never_engaged_fraction]))
    logl = np.log(prac.list0)
    score = 0.5 * (logl - logl.mean()) / max(logl.std(), 1e-9) + g_eng.standard_normal(P)
    cohort = np.empty(P, np.int64)
    cohort[np.argsort(-score, kind="stable")] = np.repeat(np.arange(n_cohorts + 1), counts)
    offsets = np.array(list(p.cohorts()) + [M + 10**6])
    engaged = cohort < n_cohorts
    eng_idx = np.flatnonzero(engaged)
    n_under = min(p.under_referrers(), eng_idx.size)
    under = np.sort(g_eng.choice(eng_idx, size=n_under, replace=False)) if n_under else np.array([], np.int64)
    u_p = prac.u_p.copy()
    u_p[under] = p.under_referrer_log_propensity
    return Engagement(cohort=cohort, offsets=offsets, engaged_from=offsets[cohort], engaged=engaged, under=under,
                      u_p=u_p, scale=np.array(list(p.effect_scales()) + [0.0])[cohort])


# ---------------------------------------------------------------------------------------------
# practice-provider pairs
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pairs:
    """The practice-provider pairs with rows, sorted by (practice, provider), and their shares."""

    practice: np.ndarray           # (npair,) practice index
    provider: np.ndarray           # (npair,) provider index
    share: np.ndarray              # elective share of the practice's activity
    start: np.ndarray              # (P,) first pair of each practice
    ae_share: np.ndarray           # A&E share (A&E providers only)
    ne_share: np.ndarray           # non-elective share (0.1 weight without A&E)
    cut: int                       # index of the provider with the planted follow-up cut

    @property
    def n(self) -> int:
        """The number of pairs."""
        return int(self.practice.size)


def draw_pairs(p: SynthParams, g_pair: np.random.Generator, prac: Practices, prov: Providers) -> Pairs:
    """Each practice's nearest providers (an A&E among them) and its Dirichlet shares; the cut provider.

    Parameters
    ----------
    p : SynthParams
        Resolved.
    g_pair : numpy.random.Generator
    prac : Practices
    prov : Providers

    Returns
    -------
    Pairs

    Raises
    ------
    ValueError
        When ``provider_cut_provider`` is not one of the PCT's providers.

    References
    ----------
    The module docstring ("Providers").
    """
    P, xy, town_xy, has_ae = prac.n, prac.xy, prov.town_xy, prov.has_ae
    d = np.hypot(xy[:, None, 0] - town_xy[None, :, 0], xy[:, None, 1] - town_xy[None, :, 1])
    kk = min(p.providers_per_practice, prov.n)
    near = np.argsort(d, axis=1, kind="stable")[:, :kk]
    no_ae = ~has_ae[near].any(axis=1)
    near[no_ae, kk - 1] = np.argmin(np.where(has_ae[None, :], d, np.inf), axis=1)[no_ae]
    keep = np.ones((P, kk), bool)
    if kk >= 3:
        drop = (g_pair.random(P) < p.drop_third_provider) & has_ae[near[:, : kk - 1]].any(axis=1)
        keep[:, kk - 1] = ~drop
    w = prov.size[near] * np.exp(-np.take_along_axis(d, near, axis=1) / p.distance_decay) * keep
    w = w / w.sum(axis=1, keepdims=True)
    gam = g_pair.gamma(p.share_concentration * w + 0.5) * keep
    shares = gam / gam.sum(axis=1, keepdims=True)
    pr_idx = np.repeat(np.arange(P), kk).reshape(P, kk)
    pair_prac, pair_prov, pair_share = pr_idx[keep], near[keep], shares[keep]
    o = np.lexsort((pair_prov, pair_prac))
    pair_prac, pair_prov, pair_share = pair_prac[o], pair_prov[o], pair_share[o]
    ae_w = pair_share * has_ae[pair_prov]
    ne_w = pair_share * np.where(has_ae[pair_prov], 1.0, 0.1)
    return Pairs(practice=pair_prac, provider=pair_prov, share=pair_share,
                 start=np.searchsorted(pair_prac, np.arange(P)),
                 ae_share=ae_w / np.bincount(pair_prac, weights=ae_w, minlength=P)[pair_prac],
                 ne_share=ne_w / np.bincount(pair_prac, weights=ne_w, minlength=P)[pair_prac],
                 cut=_cut_provider(p, prov, pair_prac, pair_prov, pair_share * prac.list0[pair_prac]))


def _cut_provider(p: SynthParams, prov: Providers, pair_prac: np.ndarray, pair_prov: np.ndarray,
                  weight: np.ndarray) -> int:
    """The provider given by ``provider_cut_provider``, else the largest by expected first attendances."""
    if p.provider_cut_provider is None:
        return int(np.argmax(np.bincount(pair_prov, weights=weight, minlength=prov.n)))
    hits = np.flatnonzero(prov.codes == p.provider_cut_provider)
    if hits.size != 1:
        raise ValueError(f"provider_cut_provider {p.provider_cut_provider!r} is not a provider of this PCT; its "
                         f"providers are {', '.join(prov.codes.tolist())} (leave it unset for the largest)")
    return int(hits[0])


# ---------------------------------------------------------------------------------------------
# population
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Population:
    """List totals and the 25 weighted lists (the registered counts are returned apart, to free them early)."""

    list_total: np.ndarray         # (P, M)
    W: np.ndarray                  # (P, M, 2S + 1) weighted lists by need curve


def population(p: SynthParams, win: Window, prac: Practices, spec: SpecialtyModel) -> tuple[np.ndarray, Population]:
    """Registered patients by practice, month and age-sex cell, and the weighted lists.

    Parameters
    ----------
    p : SynthParams
        Resolved.
    win : Window
    prac : Practices
    spec : SpecialtyModel

    Returns
    -------
    registered : numpy.ndarray of int64
        (P, M, 38).
    population : Population

    References
    ----------
    The module docstring ("Population").
    """
    t, S = win.t, spec.n
    age_cell = np.repeat(AGE_MID, 2)  # (38,)
    pyr = np.stack([PYR_F, PYR_M], axis=1).ravel()
    logw = np.log(pyr)[None, :] + prac.tilt[:, None] * (age_cell[None, :] - 40) / 20 + prac.cell_noise  # (P, 38)
    base_w = np.exp(logw - logw.max(axis=1, keepdims=True))
    ageing = np.exp(p.ageing_rate * t[:, None] * (age_cell[None, :] - 40) / 40)  # (M, 38)
    sh = base_w[:, None, :] * ageing[None, :, :]
    sh /= sh.sum(axis=2, keepdims=True)
    list_pm = prac.list0[:, None] * np.exp(prac.growth[:, None] * t[None, :])
    registered = np.rint(list_pm[:, :, None] * sh).astype(np.int64)  # (P, M, 38)
    del sh
    # weighted lists for the 25 curves, (P, M, 25); an explicit loop over the 38 cells keeps the
    # arithmetic elementwise (bit-identical on every machine)
    W = np.zeros((prac.n, win.n_months, 2 * S + 1))
    for a in range(38):
        W += registered[:, :, a, None].astype(float) * spec.need[a][None, None, :]
    return registered, Population(list_total=registered.sum(axis=2), W=W)


@dataclass(frozen=True)
class World:
    """The structure of a synthetic PCT: everything drawn before any activity."""

    win: Window
    spec: SpecialtyModel
    prov: Providers
    prac: Practices
    eng: Engagement
    pairs: Pairs
    pop: Population
