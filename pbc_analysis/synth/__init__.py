"""A synthetic primary care trust (PCT) with planted effects and a known ground truth.

This is the embedded default data of the project (``data/sample/``) and the ground truth every
estimator is checked against. Everything is drawn from ``numpy.random.default_rng(seed)`` and child
generators spawned from it, fully vectorised (the only Python loops run over months, specialties,
points of delivery, age-sex cells or financial years, never over practices or rows), so the same
parameters give byte-identical files. Calibration numbers come from ``../shared/DOMAIN.md``
("Numbers for calibrating synthetic data (England)") unless stated otherwise.

Notation: practice p, provider v, specialty s (12 elective treatment functions; ``180`` is A&E),
age-sex cell a (19 ESP-2013 bands x F/M), month m = 0..M-1 from ``start_month``, t(m) = m/12 in
years, moy(m) its calendar month, FY(m) its financial year (April to March), z_p the standardised
IMD score of p (sample mean and SD, recorded in the truth).

Practices (DOMAIN.md: list median 8,100, IQR 5,200-12,000; IMD median 21, range 3-70)
  L0_p ~ exp(N(ln 8100, 0.62^2)) clipped to [1000, 40000]; ln IQR = 0.836 = 2 x 0.674 x 0.62.
  single_handed_p = L0_p < 3,200 (about 5%) or p is the smallest practice (when >= 10 practices).
  IMD_p ~ exp(N(ln 21, 0.55^2)) truncated to [3, 75] (inverse-CDF draw; DOMAIN.md range 3-70).
  Codes: one letter, two-digit area prefix (81-92), three digits (``P81001``); one area block per
  500 practices, so a PCT shares one prefix. Location in the unit square: 75% of practices around
  a provider's town (N(0, 0.08^2) scatter), 25% uniform; it drives provider choice and consortia
  (strip partition of the map into max(1, round(P/11)) contiguous groups of about 11) and is
  not written out.

Population (registered list at the start of each month; DOMAIN.md "Setting" and calibration)
  list_p(m)     = L0_p x exp(g_p t(m)),  g_p ~ N(0.01, 0.01^2)  (about 1% a year, some shrink)
  share_pa(m)   ∝ pyr_a x exp(tilt_p (age_a - 40)/20 + e_pa) x exp(0.005 t(m) (age_a - 40)/40)
  tilt_p        = -0.15 z_p + N(0, 0.10^2)  (more deprived = younger), e_pa ~ N(0, 0.08^2),
                  pyr_a an England 2005-like pyramid; the last factor is slow ageing.
  registered_pam = rint(list_p(m) x share_pa(m))   (integers; the list total is their sum).
Need curves (relative use by age-sex, normalised to mean 1 over the England pyramid):
  need_s(a) = sex_s(a) x (child_s e^{-age/4} + exp(slope_s x + curv_s x^2)), x = (age - 45)/10,
  (ophthalmology slope 0.45: steep with age; gynaecology female and adult only; urology mostly
  male; ENT high in children, ...). Non-elective admissions use a U-shaped emergency curve times
  the specialty's sex factor, A&E a flatter U-shaped curve. Weighted list
  W_pc(m) = sum_a registered_pam need_c(a) for each of the 25 curves c.

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

GP referrals (MAR-style counts; DOMAIN.md "Spend identity" and calibration)
  mu^R_pvs(m) = r_s/1000 x W_ps(m) x exp(beta z_p + u_p + u_ps) x S^el(moy) x exp(0.01 t(m))
                x E_ps(m) x share_pv
  r_s: referrals per 1,000 weighted patients per month (10.9 in total over the 12 specialties,
  about 130 a year); beta = 0.21 per SD of IMD, u_p ~ N(0, 0.18^2) persistent practice
  propensity, u_ps ~ N(0, 0.10^2). Because deprived practices are younger (lower need), IMD then
  explains about 27-30% of the between-practice variance of crude log referral rates per
  registered patient (checked on 1,500 practices; DOMAIN.md: a quarter to a third), and
  the 5th-95th percentile range of rates is about 2.3-fold (DOMAIN.md: about 2.5-fold).
  max(1, round(P/30)) engaged practices are planted under-referrers with u_p = -0.5.
  S^el: August 0.89 and December 0.89 dips, mean 1 over the year (DOMAIN.md "Seasonality").
  R_pvs(m) ~ Poisson(mu^R).
Engagement (the planted practice action; DOMAIN.md "Evidence on effects")
  Staggered cohorts start at month offsets round((24, 30, 36) x M/60) (2005-04, 2005-10, 2006-04
  for the default 60 months from 2003-04) with 30%, 25%, 15% of practices; 30% never engage
  (larger practices tend to engage earlier: score 0.5 z(ln L0) + N(0,1)).
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
  The last three months of activity are binomially thinned with completeness (0.97, 0.85, 0.55)
  (latest month last) and their cost recomputed; referrals are complete.
High-cost patients (DOMAIN.md: top 5% average GBP 9,800 vs 490, about half of all cost)
  With a Pareto(alpha=1.8) tail for the top 5%, patients above GBP 10,000 hold about 26% of
  hospital cost, so per practice-year N ~ Poisson(0.26 x expected spend / E[cost]), costs
  10,000 x Pareto(1.8) truncated at 300,000 (mean about 21,000; about 5% above 50,000).
  About 35% of a practice's patients (up to last year's count) are chronic and keep their
  pseudonymised id (a bijective 64-bit mix of a counter and a random key, in hex) from the
  previous year.
Budgets (DOMAIN.md "Historic budget")
  For each financial year Y from the one of the first engagement on:
  budget_pY = sum_{v,s,pod} mean_{y in {Y-1, Y-2} in window}(12/months_y x A_pvs,pod,y)
              x price_{s,pod}(Y) x h_v x list_p(first month of Y)/mean list_p over those years
              x months_Y/12,
  A the EXPECTED activity (Poisson means, complete data): the historic average of the two
  previous years re-costed at the new tariff and scaled for list growth.

Reference rates (the optional ``reference_rates`` table)
  Per 1,000 registered patients per year by measure, specialty, age band and sex: the rates of a
  practice of average deprivation and propensity at the start of the window (``_reference_rates``),
  standing in for national HES/MAR age-sex rates in indirect standardisation.

Ground truth (``truth`` / ``ground_truth.json``)
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

Files (``write_synthetic_pct`` / ``write_tables``; docs/data_dictionary.md is the contract)
  One file per table, columns in data-dictionary order, rows sorted by the table key (codes as
  text; the age bands of population and reference_rates in age order, ``0-4`` ... ``90+``). population, activity and
  referrals are Parquet (pyarrow, zstd, code columns dictionary-encoded: pandas reads them back as
  categoricals with the same values) or CSV; the other tables are always CSV (UTF-8, ``\n``,
  floats with two decimals (reference rates four), booleans ``true``/``false``, missing as an empty field). Money is
  rounded to pence in the data frames, so Parquet and CSV hold the same values. Nothing depends
  on the clock (gzip mtime 0, no timestamps in Parquet metadata): the same parameters give the
  same bytes with the locked pandas/pyarrow. ``ground_truth.json`` is ``json.dumps(truth,
  sort_keys=True, indent=1)``. The sample is ``make sample`` = ``write_synthetic_pct(
  "data/sample", seed=20070401, n_practices=60, n_months=60, start_month="2003-04",
  fmt="parquet")`` (about 2 MB); 6,500 practices x 60 months (84 million rows) takes about 45 s
  and 4.5 GB on 2 cores (``scripts/benchmark.py``).
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.optimize import linear_sum_assignment
from scipy.special import ndtr, ndtri
from tqdm import tqdm

__all__ = [
    "SynthParams",
    "SynthResult",
    "generate",
    "write_tables",
    "write_synthetic_pct",
    "without_provider_cut",
    "lmdi_decompose",
    "TABLE_COLUMNS",
    "LARGE_TABLES",
    "SYNTH_MODEL_VERSION",
]

SYNTH_MODEL_VERSION = "1"

# ---------------------------------------------------------------------------------------------
# The file contract (docs/data_dictionary.md): column order of every table.
# ---------------------------------------------------------------------------------------------
TABLE_COLUMNS: dict[str, list[str]] = {
    "practices": ["practice_code", "practice_name", "consortium", "imd_score", "single_handed"],
    "providers": ["provider_code", "provider_name", "has_ae"],
    "specialties": ["specialty_code", "specialty_name"],
    "population": ["practice_code", "month", "age_band", "sex", "registered"],
    "activity": ["practice_code", "provider_code", "specialty_code", "pod", "month", "activity", "cost"],
    "referrals": ["practice_code", "provider_code", "specialty_code", "month", "referrals"],
    "tariff": ["specialty_code", "pod", "financial_year", "price"],
    "engagement": ["practice_code", "engaged_from"],
    "high_cost_patients": ["patient_id", "practice_code", "financial_year", "cost"],
    "budgets": ["practice_code", "financial_year", "budget"],
    "provider_changes": ["provider_code", "specialty_code", "pod", "effective_month", "description"],
    "reference_rates": ["measure", "specialty_code", "age_band", "sex", "rate"],
}
TABLE_KEYS: dict[str, list[str]] = {
    "practices": ["practice_code"],
    "providers": ["provider_code"],
    "specialties": ["specialty_code"],
    "population": ["practice_code", "month", "age_band", "sex"],
    "activity": ["practice_code", "provider_code", "specialty_code", "pod", "month"],
    "referrals": ["practice_code", "provider_code", "specialty_code", "month"],
    "tariff": ["specialty_code", "pod", "financial_year"],
    "engagement": ["practice_code"],
    "high_cost_patients": ["patient_id", "financial_year"],
    "budgets": ["practice_code", "financial_year"],
    "provider_changes": ["provider_code", "specialty_code", "pod", "effective_month"],
    "reference_rates": ["measure", "specialty_code", "age_band", "sex"],
}
LARGE_TABLES = ("population", "activity", "referrals")

# Points of delivery in sort (lexicographic) order.
PODS = ("ae", "elective", "first_op", "followup_op", "non_elective")
# Order of the four per-specialty pods inside a specialty block (also lexicographic).
_SPEC_PODS = ("elective", "first_op", "followup_op", "non_elective")

AGE_BANDS = tuple([f"{5 * i}-{5 * i + 4}" for i in range(18)] + ["90+"])
_AGE_MID = np.array([5 * i + 2.5 for i in range(18)] + [92.5])
SEXES = ("F", "M")

# England mid-2005-like pyramid (thousands), 19 bands, female then male.
_PYR_F = np.array([1430, 1490, 1600, 1570, 1560, 1530, 1740, 1950, 1920, 1700, 1570, 1660, 1350,
                   1190, 1100, 990, 800, 500, 260], dtype=float)
_PYR_M = np.array([1500, 1560, 1680, 1650, 1600, 1530, 1720, 1930, 1900, 1680, 1540, 1620, 1300,
                   1110, 960, 760, 480, 230, 80], dtype=float)

# Specialty calibration (not in DOMAIN.md: plausible 2005 English values).
# code, name, referrals per 1,000 weighted per month, conversion (firsts per referral),
# follow-ups per first, electives per first, non-elective admissions per 1,000 per month,
# 2005/06 prices (first OP, follow-up, elective, non-elective), need curve: female factor,
# male factor, child term, age slope, age curvature, adults only.
_SPECIALTIES = (
    ("100", "General surgery", 1.40, 0.90, 1.4, 0.35, 1.30, 165, 95, 2300, 1900, 1.0, 1.0, 0.20, 0.10, -0.01, False),
    ("101", "Urology", 0.80, 0.90, 2.8, 0.35, 0.30, 190, 100, 2100, 1600, 0.5, 1.5, 0.10, 0.35, -0.02, False),
    ("110", "Trauma and orthopaedics", 1.80, 0.88, 2.2, 0.25, 0.80, 170, 90, 4400, 2450, 1.2, 1.0, 0.30, 0.20, -0.03, False),
    ("120", "Ear, nose and throat", 1.00, 0.90, 1.8, 0.20, 0.20, 160, 85, 2000, 1300, 1.0, 1.0, 1.00, 0.05, 0.00, False),
    ("130", "Ophthalmology", 1.30, 0.93, 3.2, 0.30, 0.05, 150, 80, 2200, 1200, 1.1, 0.9, 0.30, 0.45, 0.00, False),
    ("300", "General medicine", 0.50, 0.88, 2.2, 0.05, 3.00, 230, 110, 2000, 2000, 1.0, 1.0, 0.10, 0.30, 0.00, False),
    ("301", "Gastroenterology", 0.60, 0.88, 2.0, 0.35, 0.40, 220, 105, 2000, 1800, 1.0, 1.0, 0.10, 0.15, -0.01, False),
    ("320", "Cardiology", 0.60, 0.90, 2.2, 0.15, 0.50, 250, 110, 3800, 2300, 0.8, 1.2, 0.10, 0.35, -0.02, False),
    ("330", "Dermatology", 1.00, 0.92, 2.3, 0.05, 0.03, 150, 85, 2000, 1500, 1.1, 0.9, 0.40, 0.10, 0.00, False),
    ("340", "Respiratory medicine", 0.40, 0.87, 2.5, 0.05, 0.60, 230, 105, 2100, 2100, 1.0, 1.0, 0.50, 0.25, 0.00, False),
    ("410", "Rheumatology", 0.50, 0.87, 3.6, 0.05, 0.03, 245, 110, 2100, 2000, 1.5, 0.6, 0.05, 0.20, -0.03, False),
    ("502", "Gynaecology", 1.00, 0.90, 1.6, 0.30, 0.30, 170, 90, 2300, 1400, 1.0, 0.0, 0.00, 0.00, -0.08, True),
)
AE_SPECIALTY = ("180", "Emergency medicine")
_AE_BASE_PRICE = 85.0
_AE_RATE = 22.0  # A&E attendances per 1,000 weighted patients per month (about 260 a year)
# Emergency-admission and A&E age curves: child term, slope, curvature.
_NE_CURVE = (1.5, 0.33, 0.02)
_AE_CURVE = (0.8, 0.05, 0.03)

_LETTERS = np.array(list("ABCDEFGHJKLMNPY"))
_PREFIXES = np.arange(81, 93)
_STEMS = np.array(["Ash", "Brad", "Carl", "Dun", "Elm", "Fair", "Glen", "Hart", "Ivy", "Kings", "Lang",
                   "Mill", "Nor", "Oak", "Pen", "Queens", "Red", "Stan", "Thorn", "Up", "Wal", "West",
                   "Whit", "York", "Bar", "Chester", "Dal", "Hol", "Lin", "Mor", "Roch", "Sand",
                   "Brook", "Castle", "Green", "High", "Kirk", "Long", "Marl", "New"])
_SUFFIXES = np.array(["ford", "ton", "field", "ley", "bury", "wick", "ham", "worth", "by", "stead",
                      "dale", "well", "bridge", "mouth", "port", "minster", "combe", "hurst", "land",
                      "thorpe", "more", "side", "gate", "wood", "holme"])
_PRACTICE_KINDS = np.array(["Surgery", "Medical Centre", "Health Centre", "Medical Practice",
                            "Road Surgery", "Family Practice", "Group Practice", "Lane Surgery"])
_COMPASS = ("Central", "North", "North East", "East", "South East", "South", "South West", "West",
            "North West")

_DEFAULT_EFFECTS = (
    ("100", 0.05), ("101", 0.04), ("110", 0.14), ("120", 0.06), ("130", 0.03), ("300", 0.02),
    ("301", 0.05), ("320", 0.04), ("330", 0.15), ("340", 0.03), ("410", 0.12), ("502", 0.08),
)
LMDI_FACTORS = ("population", "secular_trend_and_season", "practice_action", "provider_change", "tariff")


@dataclass(frozen=True)
class SynthParams:
    """Every planted parameter of the synthetic PCT (see the module docstring for the model).

    Offsets are months from ``start_month``; ``None`` means the documented default scaled with
    ``n_months / 60`` (see :meth:`resolved`).
    """

    seed: int = 20070401
    n_practices: int = 60
    n_months: int = 60
    start_month: str = "2003-04"
    # practices and population
    list_median: float = 8100.0
    list_log_sd: float = 0.62
    list_min: int = 1000
    list_max: int = 40000
    single_handed_below: int = 3200
    imd_median: float = 21.0
    imd_log_sd: float = 0.55
    imd_min: float = 3.0
    imd_max: float = 75.0
    practices_per_consortium: float = 11.0
    list_growth_mean: float = 0.01
    list_growth_sd: float = 0.01
    ageing_rate: float = 0.005
    age_tilt_per_imd_sd: float = -0.15
    age_tilt_sd: float = 0.10
    age_cell_noise_sd: float = 0.08
    # providers
    n_providers: int | None = None
    providers_per_practice: int = 3
    ae_fraction: float = 0.8
    distance_decay: float = 0.15
    share_concentration: float = 30.0
    drop_third_provider: float = 0.15
    conversion_sd: float = 0.03
    follow_up_ratio_sd: float = 0.15
    hrg_factor_sd: float = 0.03
    # referrals
    beta_deprivation: float = 0.21
    practice_propensity_sd: float = 0.18
    practice_specialty_propensity_sd: float = 0.10
    n_under_referrers: int | None = None
    under_referrer_log_propensity: float = -0.5
    referral_trend: float = 0.01
    elective_season: tuple[float, ...] = (1.03, 1.01, 1.06, 0.96, 1.00, 1.03, 1.03, 0.89, 1.02, 1.05, 1.03, 0.89)
    # emergency activity
    beta_deprivation_non_elective: float = 0.15
    beta_deprivation_ae: float = 0.20
    emergency_propensity_sd: float = 0.10
    non_elective_trend: float = 0.015
    ae_trend: float = 0.02
    non_elective_season: tuple[float, ...] = (1.06, 0.99, 1.02, 0.97, 0.99, 0.96, 0.99, 0.95, 0.96, 1.01, 1.02, 1.08)
    ae_season: tuple[float, ...] = (0.98, 0.97, 1.01, 1.00, 1.04, 1.03, 1.04, 0.96, 0.99, 1.00, 0.98, 1.00)
    # engagement (practice action)
    cohort_offsets: tuple[int, ...] | None = None
    cohort_fractions: tuple[float, ...] = (0.30, 0.25, 0.15)
    never_engaged_fraction: float = 0.30
    cohort_effect_scale: tuple[float, ...] | None = None
    engagement_effects: tuple[tuple[str, float], ...] = _DEFAULT_EFFECTS
    ramp_months: int = 6
    # provider change
    provider_cut_provider: str | None = None
    provider_cut_offset: int | None = None
    provider_cut_size: float = -0.20
    # tariff
    tariff_uplift: float = 0.025
    tariff_base_year: int = 2005
    structural_change_offset: int | None = None
    structural_change: tuple[tuple[str, float], ...] = (("first_op", 0.08), ("followup_op", -0.10))
    # data lag: completeness of the third-last, second-last and last month of activity
    completeness: tuple[float, ...] = (0.97, 0.85, 0.55)
    # high-cost patients
    high_cost_threshold: float = 10000.0
    high_cost_alpha: float = 1.8
    high_cost_cap: float = 300000.0
    high_cost_share: float = 0.26
    high_cost_chronic_fraction: float = 0.35

    # -- derived -------------------------------------------------------------------------------
    def resolved(self) -> "SynthParams":
        """Return a copy with every ``None`` replaced by its documented default, validated."""
        P, M = int(self.n_practices), int(self.n_months)
        if P < 2 or M < 12:
            raise ValueError("need at least 2 practices and 12 months")
        _parse_month(self.start_month)
        n_prov = self.n_providers if self.n_providers is not None else (4 if P <= 200 else max(4, round(P / 40)))
        scale = M / 60.0
        cohorts = self.cohort_offsets
        if cohorts is None:
            cohorts = tuple(int(round(o * scale)) for o in (24, 30, 36))
        cohorts = tuple(int(c) for c in cohorts)
        if len(cohorts) != len(self.cohort_fractions):
            raise ValueError("cohort_offsets and cohort_fractions differ in length")
        if any(b <= a for a, b in zip(cohorts, cohorts[1:])) or cohorts[0] < 1 or cohorts[-1] >= M:
            raise ValueError(f"cohort offsets {cohorts} must increase inside 1..{M - 1}")
        ces = self.cohort_effect_scale or tuple(1.0 for _ in cohorts)
        if len(ces) != len(cohorts):
            raise ValueError("cohort_effect_scale must have one value per cohort")
        cut = self.provider_cut_offset if self.provider_cut_offset is not None else int(round(45 * scale))
        if not 0 < cut < M:
            raise ValueError("provider_cut_offset outside the window")
        months = _parse_month(self.start_month)[1] - 1 + np.arange(M)
        aprils = np.flatnonzero(months % 12 == 3)
        struct = self.structural_change_offset
        if struct is None:
            target = int(round(48 * scale))
            later = aprils[aprils >= target]
            struct = int(later[0]) if later.size else (int(aprils[-1]) if aprils.size else -1)
        elif struct not in set(aprils.tolist()):
            raise ValueError("structural_change_offset must be an April inside the window")
        n_under = self.n_under_referrers if self.n_under_referrers is not None else max(1, round(P / 30))
        spec_codes = [s[0] for s in _SPECIALTIES]
        eff = dict(self.engagement_effects)
        if sorted(eff) != sorted(spec_codes):
            raise ValueError(f"engagement_effects must give one effect for each of {spec_codes}")
        if len(self.completeness) != 3:
            raise ValueError("completeness needs three factors")
        return dataclasses.replace(
            self, n_providers=int(n_prov), cohort_offsets=cohorts, cohort_effect_scale=tuple(float(c) for c in ces),
            provider_cut_offset=int(cut), structural_change_offset=int(struct), n_under_referrers=int(n_under),
            engagement_effects=tuple((c, float(eff[c])) for c in spec_codes),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SynthParams":
        """Inverse of :meth:`to_dict` (lists become tuples)."""

        def tup(x: Any) -> Any:
            return tuple(tup(i) for i in x) if isinstance(x, list) else x

        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tup(v) for k, v in d.items() if k in names})


@dataclass
class SynthResult:
    """Tables (keys = data-dictionary table names) and the JSON-serialisable ground truth."""

    tables: dict[str, pd.DataFrame]
    truth: dict[str, Any]
    params: SynthParams = field(default_factory=SynthParams)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _parse_month(s: str) -> tuple[int, int]:
    try:
        y, m = int(s[:4]), int(s[5:7])
        assert len(s) == 7 and s[4] == "-" and 1 <= m <= 12
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"month must be YYYY-MM, got {s!r}") from exc
    return y, m


def _fy_label(y: int) -> str:
    return f"{y}/{(y + 1) % 100:02d}"


def _cat(codes: np.ndarray, categories: list[str] | tuple[str, ...]) -> pd.Categorical:
    return pd.Categorical.from_codes(codes, categories=pd.Index(list(categories), dtype="str"))


def _largest_remainder(total: int, fractions: np.ndarray, minimum: int = 1) -> np.ndarray:
    f = np.asarray(fractions, float) / np.sum(fractions)
    raw = total * f
    n = np.floor(raw).astype(np.int64)
    rest = total - int(n.sum())
    order = np.argsort(-(raw - n), kind="stable")
    n[order[:rest]] += 1
    # make sure every group has at least `minimum` members (taken from the largest groups)
    for i in np.flatnonzero(n < minimum):
        j = int(np.argmax(n))
        give = minimum - n[i]
        if n[j] - give >= minimum:
            n[j] -= give
            n[i] += give
    return n


def _mix64(x: np.ndarray, key: np.uint64) -> np.ndarray:
    """Bijective 64-bit mix (splitmix64 finaliser) of ``x + key``: distinct inputs, distinct ids."""
    z = x.astype(np.uint64) + np.uint64(key)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _hex_ids(z: np.ndarray) -> np.ndarray:
    if z.size == 0:
        return np.array([], dtype=object)
    s = z.astype(">u8").tobytes().hex().encode("ascii")
    return np.frombuffer(s, dtype="S16").astype(str)


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
    """LMDI-I (Ang 2005): additive parts of ``sum(v1) - sum(v0)`` over cells.

    ``v0``, ``v1`` are cell values (products of factors), ``log_ratios[k]`` the cell log ratio
    ln(x_k^1/x_k^0) of factor k (broadcastable). The parts add up to the change exactly when
    the factors' log ratios add up to ln(v1/v0) in every cell.
    """
    L = _logmean(np.asarray(v1, float), np.asarray(v0, float))
    return {k: float(np.sum(L * np.broadcast_to(r, L.shape))) for k, r in log_ratios.items()}


def _need_curve(child: float, slope: float, curv: float, sex_f: float, sex_m: float,
                adult_only: bool = False) -> np.ndarray:
    x = (_AGE_MID - 45.0) / 10.0
    base = child * np.exp(-_AGE_MID / 4.0) + np.exp(slope * x + curv * x * x)
    if adult_only:
        base = base * np.where(_AGE_MID < 15, 0.05, 1.0)
    cell = np.stack([sex_f * base, sex_m * base], axis=1).ravel()  # (38,) band-major, F then M
    pyr = np.stack([_PYR_F, _PYR_M], axis=1).ravel()
    pyr = pyr / pyr.sum()
    return cell / float(np.sum(cell * pyr))


# ---------------------------------------------------------------------------------------------
# generation
# ---------------------------------------------------------------------------------------------
class _Stages:
    def __init__(self, total: int, progress: bool, desc: str = "synth") -> None:
        self.bar = tqdm(total=total, desc=desc, unit="step", disable=not progress, leave=False)

    def __call__(self, label: str) -> None:
        self.bar.set_postfix_str(label, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def generate(params: SynthParams | None = None, progress: bool = False) -> SynthResult:
    """Generate the synthetic PCT: tables (data-dictionary format) and the ground truth."""
    given = params if params is not None else SynthParams()
    p = given.resolved()
    stage = _Stages(9, progress)
    try:
        return _generate(given, p, stage)
    finally:
        stage.close()


def _generate(given: SynthParams, p: SynthParams, stage: _Stages) -> SynthResult:  # noqa: C901
    P, M, V = p.n_practices, p.n_months, p.n_providers
    S = len(_SPECIALTIES)
    root = np.random.default_rng(p.seed)
    (g_prov, g_prac, g_pop, g_eng, g_pair, g_ref, g_first, g_fu, g_el, g_ne, g_ae, g_lag, g_hc,
     g_names) = root.spawn(14)  # g_pop is reserved (population is deterministic given the draws)

    # ---- calendar ---------------------------------------------------------------------------
    y0, m0 = _parse_month(p.start_month)
    k = np.arange(M) + (m0 - 1)
    cal_year, cal_month = y0 + k // 12, k % 12 + 1
    month_labels = [f"{int(y):04d}-{int(mm):02d}" for y, mm in zip(cal_year, cal_month)]
    fy_start = np.where(cal_month >= 4, cal_year, cal_year - 1)
    fy_years = np.unique(fy_start)
    n_fy = fy_years.size
    fy_idx = np.searchsorted(fy_years, fy_start)
    fy_labels = [_fy_label(int(y)) for y in fy_years]
    fy_first = np.searchsorted(fy_idx, np.arange(n_fy))  # first month offset of each FY
    fy_months = np.bincount(fy_idx, minlength=n_fy)
    moy = cal_month - 1
    t = np.arange(M) / 12.0

    spec_codes = [s[0] for s in _SPECIALTIES]
    spec_names = [s[1] for s in _SPECIALTIES]
    all_spec_codes = sorted(spec_codes + [AE_SPECIALTY[0]])
    spec_all_idx = np.array([all_spec_codes.index(c) for c in spec_codes])
    col = {name: np.array([s[i] for s in _SPECIALTIES], dtype=float) for i, name in enumerate(
        ["_code", "_name", "ref_rate", "conversion", "fu_ratio", "el_conv", "ne_rate", "p_first", "p_fu",
         "p_el", "p_ne", "sex_f", "sex_m", "child", "slope", "curv"]) if i >= 2}
    effects = np.array([e for _, e in p.engagement_effects])

    # need curves: 0..S-1 elective (referral) curves, S..2S-1 non-elective, 2S A&E
    need = np.empty((38, 2 * S + 1))
    for j, sp in enumerate(_SPECIALTIES):
        need[:, j] = _need_curve(sp[13], sp[14], sp[15], sp[11], sp[12], sp[16])
        need[:, S + j] = _need_curve(*_NE_CURVE, sp[11], sp[12], sp[16])
    need[:, 2 * S] = _need_curve(*_AE_CURVE, 1.0, 1.0)

    # ---- providers --------------------------------------------------------------------------
    town_xy = g_prov.uniform(0.1, 0.9, size=(V, 2))
    size_v = np.exp(g_prov.normal(0.0, 0.3, size=V))
    n_ae = max(1, int(round(p.ae_fraction * V))) if V > 1 else 1
    has_ae = np.zeros(V, bool)
    has_ae[g_prov.choice(V, size=n_ae, replace=False)] = True
    size_v = np.where(has_ae, size_v, 0.5 * size_v)
    if V <= 900:
        alphabet = np.array(list("ABCDEFGHJKLMNPQRSTVWXY0123456789"))
        pick = g_prov.choice(26 * alphabet.size, size=V, replace=False)
        letters2 = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
        prov_codes = np.char.add(np.char.add("R", letters2[pick // alphabet.size]), alphabet[pick % alphabet.size])
    else:
        alphabet = np.array(list("ABCDEFGHJKLMNPQRSTVWXY0123456789"))
        pick = g_prov.choice(22 * alphabet.size ** 2, size=V, replace=False)
        prov_codes = np.char.add(np.char.add(np.char.add("R", alphabet[pick // alphabet.size ** 2]),
                                             alphabet[(pick // alphabet.size) % alphabet.size]),
                                 alphabet[pick % alphabet.size])
    # sort providers by code (the table key); carry attributes along
    order_v = np.argsort(prov_codes, kind="stable")
    prov_codes, town_xy, size_v, has_ae = prov_codes[order_v], town_xy[order_v], size_v[order_v], has_ae[order_v]
    place_perm = g_names.permutation(_STEMS.size * _SUFFIXES.size)
    places = np.char.add(_STEMS[place_perm // _SUFFIXES.size], _SUFFIXES[place_perm % _SUFFIXES.size])
    n_places = places.size

    def place_names(start: int, n: int) -> np.ndarray:
        idx = start + np.arange(n)
        base = places[idx % n_places]
        extra = idx // n_places
        return np.where(extra > 0, np.char.add(np.char.add(base, " "), (extra + 1).astype(str)), base)

    prov_place = place_names(0, V)
    prov_names = np.where(has_ae, np.char.add(prov_place, " Hospitals NHS Trust"),
                          np.char.add(prov_place, " Treatment Centre NHS Trust"))
    conv_v = np.clip(col["conversion"][None, :] * np.exp(g_prov.normal(0, p.conversion_sd, (V, S))), 0.5, 0.98).round(4)
    fu_v = (col["fu_ratio"][None, :] * np.exp(g_prov.normal(0, p.follow_up_ratio_sd, (V, S)))).round(4)
    hrg_v = np.clip(np.exp(g_prov.normal(0, p.hrg_factor_sd, V)), 0.93, 1.07).round(3)
    stage("providers")

    # ---- practices --------------------------------------------------------------------------
    n_blocks_total = _LETTERS.size * _PREFIXES.size
    if P > n_blocks_total * 999:
        raise ValueError("too many practices for the code space")
    n_blocks = min(n_blocks_total, max(1, math.ceil(P / 500)))
    blocks = (int(g_prac.integers(n_blocks_total)) + np.arange(n_blocks)) % n_blocks_total
    flat = g_prac.choice(n_blocks * 999, size=P, replace=False)
    blk = blocks[flat // 999]
    codes_num = _PREFIXES[blk % _PREFIXES.size] * 1000 + flat % 999 + 1
    prac_codes = np.sort(np.char.add(_LETTERS[blk // _PREFIXES.size], codes_num.astype(str)))

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
    town = g_prac.choice(V, size=P, p=size_v / size_v.sum())
    xy = np.where(near_town[:, None], town_xy[town] + g_prac.normal(0, 0.08, (P, 2)), g_prac.random((P, 2)))
    xy = np.clip(xy, 0.0, 1.0)
    growth = g_prac.normal(p.list_growth_mean, p.list_growth_sd, P)
    tilt = p.age_tilt_per_imd_sd * z + g_prac.normal(0, p.age_tilt_sd, P)
    cell_noise = g_prac.normal(0, p.age_cell_noise_sd, (P, 38))
    u_p = g_prac.normal(0, p.practice_propensity_sd, P)
    u_ps = g_prac.normal(0, p.practice_specialty_propensity_sd, (P, S))
    u_ne = g_prac.normal(0, p.emergency_propensity_sd, P)
    u_ae = g_prac.normal(0, p.emergency_propensity_sd, P)

    # consortia: strip partition of the map into groups of about `practices_per_consortium`
    n_c = max(1, int(round(P / p.practices_per_consortium)))
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
    consortium = cum_g[strip] + (r_in * g_per_strip[strip]) // n_in
    cx = np.bincount(consortium, weights=xy[:, 0], minlength=n_c) / np.bincount(consortium, minlength=n_c)
    cy = np.bincount(consortium, weights=xy[:, 1], minlength=n_c) / np.bincount(consortium, minlength=n_c)
    if n_c <= len(_COMPASS):
        ang = np.deg2rad(np.array([0, 90, 45, 0, -45, -90, -135, 180, 135]))
        anchor = np.stack([0.3 * np.cos(ang), 0.3 * np.sin(ang)], axis=1)
        anchor[0] = 0.0
        cost = np.hypot(cx[:, None] - 0.5 - anchor[None, :, 0], cy[:, None] - 0.5 - anchor[None, :, 1])
        _, which = linear_sum_assignment(cost)
        cons_names = np.array([_COMPASS[i] for i in which])
    else:
        cons_names = place_names(V, n_c)
    cons_names = np.char.add(cons_names, " Locality Consortium")
    kinds = _PRACTICE_KINDS[g_names.integers(_PRACTICE_KINDS.size, size=P)]
    prac_place = places[g_names.integers(n_places, size=P)]  # names need not be unique
    prac_names = np.char.add(np.char.add(prac_place, " "), kinds)

    # ---- engagement cohorts and under-referrers ---------------------------------------------
    n_cohorts = len(p.cohort_offsets)
    counts = _largest_remainder(P, np.array(list(p.cohort_fractions) + [p.never_engaged_fraction]))
    score = 0.5 * (np.log(L0) - np.log(L0).mean()) / max(np.log(L0).std(), 1e-9) + g_eng.standard_normal(P)
    order_e = np.argsort(-score, kind="stable")
    grp_sorted = np.repeat(np.arange(n_cohorts + 1), counts)  # n_cohorts = never
    cohort = np.empty(P, np.int64)
    cohort[order_e] = grp_sorted
    offsets_arr = np.array(list(p.cohort_offsets) + [M + 10**6])
    engaged_from = offsets_arr[cohort]  # beyond the window for never engaged
    engaged = cohort < n_cohorts
    eng_idx = np.flatnonzero(engaged)
    n_under = min(p.n_under_referrers, eng_idx.size)
    under = np.sort(g_eng.choice(eng_idx, size=n_under, replace=False)) if n_under else np.array([], np.int64)
    u_p[under] = p.under_referrer_log_propensity
    cohort_scale = np.array(list(p.cohort_effect_scale) + [0.0])[cohort]
    stage("practices")

    # ---- practice-provider pairs --------------------------------------------------------------
    d = np.hypot(xy[:, None, 0] - town_xy[None, :, 0], xy[:, None, 1] - town_xy[None, :, 1])
    kk = min(p.providers_per_practice, V)
    near = np.argsort(d, axis=1, kind="stable")[:, :kk]
    if kk >= 1:
        no_ae = ~has_ae[near].any(axis=1)
        nearest_ae = np.argmin(np.where(has_ae[None, :], d, np.inf), axis=1)
        near[no_ae, kk - 1] = nearest_ae[no_ae]
    keep = np.ones((P, kk), bool)
    if kk >= 3:
        drop = (g_pair.random(P) < p.drop_third_provider) & has_ae[near[:, : kk - 1]].any(axis=1)
        keep[:, kk - 1] = ~drop
    w = size_v[near] * np.exp(-np.take_along_axis(d, near, axis=1) / p.distance_decay) * keep
    w = w / w.sum(axis=1, keepdims=True)
    gam = g_pair.gamma(p.share_concentration * w + 0.5) * keep
    shares = gam / gam.sum(axis=1, keepdims=True)
    pr_idx = np.repeat(np.arange(P), kk).reshape(P, kk)
    pair_prac, pair_prov, pair_share = pr_idx[keep], near[keep], shares[keep]
    o = np.lexsort((pair_prov, pair_prac))
    pair_prac, pair_prov, pair_share = pair_prac[o], pair_prov[o], pair_share[o]
    npair = pair_prac.size
    pair_start = np.searchsorted(pair_prac, np.arange(P))
    ae_w = pair_share * has_ae[pair_prov]
    ae_share = ae_w / np.bincount(pair_prac, weights=ae_w, minlength=P)[pair_prac]
    ne_w = pair_share * np.where(has_ae[pair_prov], 1.0, 0.1)
    ne_share = ne_w / np.bincount(pair_prac, weights=ne_w, minlength=P)[pair_prac]
    # the cut provider: the largest by expected first attendances (share x list) unless given
    if p.provider_cut_provider is not None:
        hits = np.flatnonzero(prov_codes == p.provider_cut_provider)
        if hits.size != 1:
            raise ValueError(f"unknown provider_cut_provider {p.provider_cut_provider!r}")
        cut_v = int(hits[0])
    else:
        cut_v = int(np.argmax(np.bincount(pair_prov, weights=pair_share * L0[pair_prac], minlength=V)))
    stage("pairs")

    # ---- population -------------------------------------------------------------------------
    age_cell = np.repeat(_AGE_MID, 2)  # (38,)
    pyr = np.stack([_PYR_F, _PYR_M], axis=1).ravel()
    logw = np.log(pyr)[None, :] + tilt[:, None] * (age_cell[None, :] - 40) / 20 + cell_noise  # (P, 38)
    base_w = np.exp(logw - logw.max(axis=1, keepdims=True))
    ageing = np.exp(p.ageing_rate * t[:, None] * (age_cell[None, :] - 40) / 40)  # (M, 38)
    sh = base_w[:, None, :] * ageing[None, :, :]
    sh /= sh.sum(axis=2, keepdims=True)
    list_pm = L0[:, None] * np.exp(growth[:, None] * t[None, :])
    registered = np.rint(list_pm[:, :, None] * sh).astype(np.int64)  # (P, M, 38)
    del sh
    list_tot = registered.sum(axis=2)  # (P, M)
    # weighted lists for the 25 curves, (P, M, 25); an explicit loop over the 38 cells keeps the
    # arithmetic elementwise (bit-identical on every machine)
    W = np.zeros((P, M, 2 * S + 1))
    for a in range(38):
        W += registered[:, :, a, None].astype(float) * need[a][None, None, :]
    stage("population")

    # ---- referrals and elective activity (pair, specialty, month) -----------------------------
    season_el = np.asarray(p.elective_season, float)[moy]
    season_ne = np.asarray(p.non_elective_season, float)[moy]
    season_ae = np.asarray(p.ae_season, float)[moy]
    ts_ref = season_el * np.exp(p.referral_trend * t)
    ts_ne = season_ne * np.exp(p.non_elective_trend * t)
    ts_ae = season_ae * np.exp(p.ae_trend * t)
    j_since = np.arange(M)[None, :] - engaged_from[:, None]  # (P, M)
    ramp = np.where(j_since >= 0, np.clip((j_since + 1) / p.ramp_months, 0.0, 1.0), 0.0)
    E = 1.0 - effects[None, :, None] * (cohort_scale[:, None] * ramp)[:, None, :]  # (P, S, M)
    rate_ps = col["ref_rate"][None, :] / 1000.0 * np.exp(p.beta_deprivation * z[:, None] + u_p[:, None] + u_ps)
    Wel = np.ascontiguousarray(W[:, :, :S].transpose(0, 2, 1))  # (P, S, M)
    mu_prac_noeng = rate_ps[:, :, None] * Wel * ts_ref[None, None, :]
    mu_prac = mu_prac_noeng * E
    share3 = pair_share[:, None, None]
    mu_ref = mu_prac[pair_prac] * share3  # (npair, S, M)
    mu_ref_noeng = mu_prac_noeng[pair_prac] * share3
    del mu_prac, mu_prac_noeng, Wel
    conv_pair = conv_v[pair_prov][:, :, None]  # (npair, S, 1)
    fu_pair = fu_v[pair_prov][:, :, None]
    cut_mult = np.where(np.arange(M) >= p.provider_cut_offset, 1.0 + p.provider_cut_size, 1.0)  # (M,)
    C = np.where((pair_prov == cut_v)[:, None], cut_mult[None, :], 1.0)[:, None, :]  # (npair, 1, M)
    el_conv = col["el_conv"][None, :, None]
    mu_first = conv_pair * mu_ref
    mu_fu = fu_pair * C * mu_first
    mu_el = el_conv * mu_first

    ref = g_ref.poisson(mu_ref)
    first = g_first.binomial(ref, np.broadcast_to(conv_pair, ref.shape))
    fu = g_fu.poisson(mu_fu)
    el = g_el.poisson(mu_el)
    stage("referrals")

    # ---- emergency activity -----------------------------------------------------------------
    rate_ne = col["ne_rate"][None, :] / 1000.0 * np.exp(p.beta_deprivation_non_elective * z + u_ne)[:, None]
    Wne = np.ascontiguousarray(W[:, :, S:2 * S].transpose(0, 2, 1))
    mu_ne = (rate_ne[:, :, None] * Wne * ts_ne[None, None, :])[pair_prac] * ne_share[:, None, None]
    del Wne
    rate_ae = _AE_RATE / 1000.0 * np.exp(p.beta_deprivation_ae * z + u_ae)
    mu_ae = (rate_ae[:, None] * W[:, :, 2 * S] * ts_ae[None, :])[pair_prac] * ae_share[:, None]  # (npair, M)
    ne = g_ne.poisson(mu_ne)
    ae = g_ae.poisson(mu_ae)

    # ---- tariff -----------------------------------------------------------------------------
    struct_fy = int(fy_idx[p.structural_change_offset]) if p.structural_change_offset >= 0 else n_fy
    sc = dict(p.structural_change)
    base_prices = {"first_op": col["p_first"], "followup_op": col["p_fu"], "elective": col["p_el"],
                   "non_elective": col["p_ne"]}
    uplift = (1.0 + p.tariff_uplift) ** (fy_years - p.tariff_base_year).astype(float)  # (n_fy,)
    price = {}  # pod -> (S, n_fy) for the 12 specialties; ae -> (n_fy,)
    for pod, bp in base_prices.items():
        struct = np.where(np.arange(n_fy) >= struct_fy, 1.0 + sc.get(pod, 0.0), 1.0)
        price[pod] = np.round(bp[:, None] * uplift[None, :] * struct[None, :], 2)
    struct_ae = np.where(np.arange(n_fy) >= struct_fy, 1.0 + sc.get("ae", 0.0), 1.0)
    price["ae"] = np.round(_AE_BASE_PRICE * uplift * struct_ae, 2)

    # ---- the activity cube (pair, combo, month) in key order --------------------------------
    # combos: for each specialty code in sorted order its pods in sorted order; 180 has only ae
    n_before = int(np.sum(np.array(spec_codes) < AE_SPECIALTY[0]))
    ae_pos = 4 * n_before
    NC = 4 * S + 1

    def cube(el_a, first_a, fu_a, ne_a, ae_a):
        x = np.stack([el_a, first_a, fu_a, ne_a], axis=2).reshape(el_a.shape[0], 4 * S, -1)
        return np.concatenate([x[:, :ae_pos], ae_a[:, None, :], x[:, ae_pos:]], axis=1)

    combo_spec = np.empty(NC, np.int64)
    combo_pod = np.empty(NC, np.int64)
    combo_curve = np.empty(NC, np.int64)
    combo_kind = np.empty(NC, np.int64)  # 0 elective pods (referral driven), 1 non-elective, 2 A&E
    sp_of = np.repeat(np.arange(S), 4)
    pod_of = np.tile(np.arange(4), S)
    ins = lambda a, v: np.concatenate([a[:ae_pos], [v], a[ae_pos:]])  # noqa: E731
    combo_spec[:] = ins(spec_all_idx[sp_of], all_spec_codes.index(AE_SPECIALTY[0]))
    combo_pod[:] = ins(np.array([PODS.index(x) for x in _SPEC_PODS])[pod_of], PODS.index("ae"))
    combo_curve[:] = ins(np.where(pod_of == 3, S + sp_of, sp_of), 2 * S)
    combo_kind[:] = ins(np.where(pod_of == 3, 1, 0), 2)
    combo_s = ins(sp_of, -1)  # elective specialty index (-1 for A&E)
    combo_podname = [PODS[i] for i in combo_pod]
    price_cf = np.empty((NC, n_fy))
    for c in range(NC):
        price_cf[c] = price["ae"] if combo_podname[c] == "ae" else price[combo_podname[c]][combo_s[c]]
    price_cm = price_cf[:, fy_idx]  # (NC, M)
    hrg_pair = hrg_v[pair_prov][:, None, None]

    act = cube(el, first, fu, ne, ae)  # int64 (npair, NC, M)
    del el, first, fu, ne
    keep_rows = np.ones((npair, NC), bool)
    keep_rows[:, ae_pos] = has_ae[pair_prov]
    # data lag: binomial thinning of the last three months
    comp = np.asarray(p.completeness, float)
    n_lag = min(3, M)
    for j in range(n_lag):
        mcol = M - n_lag + j
        act[:, :, mcol] = g_lag.binomial(act[:, :, mcol], comp[3 - n_lag + j])
    cost = np.round(act * price_cm[None, :, :] * hrg_pair, 2)
    stage("activity")

    # ---- tables -------------------------------------------------------------------------------
    prac_list, prov_list = prac_codes.tolist(), prov_codes.tolist()
    tables: dict[str, pd.DataFrame] = {}
    tables["practices"] = pd.DataFrame({
        "practice_code": pd.array(prac_list, dtype="str"), "practice_name": pd.array(prac_names.tolist(), dtype="str"),
        "consortium": pd.array(cons_names[consortium].tolist(), dtype="str"), "imd_score": imd,
        "single_handed": single})
    tables["providers"] = pd.DataFrame({
        "provider_code": pd.array(prov_list, dtype="str"), "provider_name": pd.array(prov_names.tolist(), dtype="str"),
        "has_ae": has_ae})
    spec_name_map = dict(zip(spec_codes, spec_names)) | {AE_SPECIALTY[0]: AE_SPECIALTY[1]}
    tables["specialties"] = pd.DataFrame({
        "specialty_code": pd.array(all_spec_codes, dtype="str"),
        "specialty_name": pd.array([spec_name_map[c] for c in all_spec_codes], dtype="str")})

    ci = lambda n: np.int16 if n < 2**15 else np.int32  # noqa: E731
    n_rows = P * M * 38
    tables["population"] = pd.DataFrame({
        "practice_code": _cat(np.repeat(np.arange(P, dtype=ci(P)), M * 38), prac_list),
        "month": _cat(np.tile(np.repeat(np.arange(M, dtype=np.int16), 38), P), month_labels),
        "age_band": _cat(np.tile(np.repeat(np.arange(19, dtype=np.int8), 2), P * M), AGE_BANDS),
        "sex": _cat(np.tile(np.arange(2, dtype=np.int8), n_rows // 2), SEXES),
        "registered": registered.reshape(-1)})
    del registered

    n_ref_rows = npair * S * M
    tables["referrals"] = pd.DataFrame({
        "practice_code": _cat(np.repeat(pair_prac.astype(ci(P)), S * M), prac_list),
        "provider_code": _cat(np.repeat(pair_prov.astype(ci(V)), S * M), prov_list),
        "specialty_code": _cat(np.tile(np.repeat(spec_all_idx.astype(np.int8), M), npair), all_spec_codes),
        "month": _cat(np.tile(np.arange(M, dtype=np.int16), n_ref_rows // M), month_labels),
        "referrals": ref.reshape(-1)})
    del ref

    sel = np.flatnonzero(keep_rows.ravel())
    sel_pair, sel_combo = sel // NC, sel % NC
    tables["activity"] = pd.DataFrame({
        "practice_code": _cat(np.repeat(pair_prac[sel_pair].astype(ci(P)), M), prac_list),
        "provider_code": _cat(np.repeat(pair_prov[sel_pair].astype(ci(V)), M), prov_list),
        "specialty_code": _cat(np.repeat(combo_spec[sel_combo].astype(np.int8), M), all_spec_codes),
        "pod": _cat(np.repeat(combo_pod[sel_combo].astype(np.int8), M), PODS),
        "month": _cat(np.tile(np.arange(M, dtype=np.int16), sel.size), month_labels),
        "activity": act.reshape(npair * NC, M)[sel].reshape(-1),
        "cost": cost.reshape(npair * NC, M)[sel].reshape(-1)})
    del act, cost

    tar_s, tar_p, tar_f, tar_price = [], [], [], []
    for c in range(NC):
        tar_s += [all_spec_codes[combo_spec[c]]] * n_fy
        tar_p += [combo_podname[c]] * n_fy
        tar_f += fy_labels
        tar_price.append(price_cf[c])
    tariff = pd.DataFrame({"specialty_code": pd.array(tar_s, dtype="str"), "pod": pd.array(tar_p, dtype="str"),
                           "financial_year": pd.array(tar_f, dtype="str"), "price": np.concatenate(tar_price)})
    tables["tariff"] = tariff.sort_values(TABLE_KEYS["tariff"], kind="stable", ignore_index=True)

    eng_month = np.array([month_labels[o] if o < M else "" for o in offsets_arr[:-1]] + [""])[cohort]
    tables["engagement"] = pd.DataFrame({
        "practice_code": pd.array(prac_list, dtype="str"),
        "engaged_from": pd.array(np.where(engaged, eng_month, None).tolist(), dtype="str")})
    cut_month = month_labels[p.provider_cut_offset]
    tables["provider_changes"] = pd.DataFrame({
        "provider_code": pd.array([prov_list[cut_v]], dtype="str"), "specialty_code": pd.array(["all"], dtype="str"),
        "pod": pd.array(["followup_op"], dtype="str"), "effective_month": pd.array([cut_month], dtype="str"),
        "description": pd.array([f"Follow-up to first attendance ratio target: follow-ups cut by "
                                 f"{abs(p.provider_cut_size):.0%} in every specialty"], dtype="str")})
    tables["reference_rates"] = _reference_rates(need, col, spec_codes)
    stage("tables")

    # ---- ground truth: expected spend, counterfactuals --------------------------------------
    ne_spend_p = _practice_fy(np.sum(mu_ne * (price["non_elective"][:, fy_idx])[None, :, :], axis=1) * hrg_v[pair_prov][:, None],
                              fy_first, pair_start)
    ae_spend_p = _practice_fy(mu_ae * price["ae"][fy_idx][None, :] * hrg_v[pair_prov][:, None], fy_first, pair_start)
    pf, pfu, pel = (price[k][:, fy_idx][None, :, :] for k in ("first_op", "followup_op", "elective"))

    def elective_spend(mu_r: np.ndarray, c_mult: np.ndarray) -> np.ndarray:
        per_ref = conv_pair * (pf + fu_pair * c_mult * pfu + el_conv * pel)
        return _practice_fy(np.sum(mu_r * per_ref, axis=1) * hrg_v[pair_prov][:, None], fy_first, pair_start)

    emerg = ne_spend_p + ae_spend_p
    spend = elective_spend(mu_ref, C) + emerg
    cf_prac = elective_spend(mu_ref_noeng, C) + emerg
    cf_prov = elective_spend(mu_ref, np.ones_like(C)) + emerg
    exp_ref = _practice_fy(mu_ref.sum(axis=1), fy_first, pair_start)
    exp_ref_noeng = _practice_fy(mu_ref_noeng.sum(axis=1), fy_first, pair_start)
    cents = lambda x: np.rint(np.asarray(x) * 100.0).astype(np.int64)  # noqa: E731
    spend_c, cf_prac_c, cf_prov_c = cents(spend), cents(cf_prac), cents(cf_prov)

    # ---- LMDI ---------------------------------------------------------------------------------
    mu_act = cube(mu_el, mu_first, mu_fu, mu_ne, mu_ae)  # (npair, NC, M)
    del mu_el, mu_fu
    full_fy = np.flatnonzero(fy_months == 12)
    first_eng = min(p.cohort_offsets)
    pre = [int(y) for y in full_fy if fy_first[y] + 11 < first_eng]
    base_fy = pre[-1] if pre else None
    lmdi_parts = np.zeros((P, n_fy, len(LMDI_FACTORS)), dtype=np.int64)
    lmdi_ok = np.zeros(n_fy, bool)
    lmdi_check = 0.0
    if base_fy is not None:
        ts_combo = np.stack([ts_ref, ts_ne, ts_ae])[combo_kind]  # (NC, M)
        E_pair = E[pair_prac]  # (npair, S, M)
        sel_el = combo_kind == 0
        is_fu = np.array([x == "followup_op" for x in combo_podname])
        for y in full_fy:
            y = int(y)
            if y <= base_fy:
                continue
            m0_, m1_ = np.arange(fy_first[base_fy], fy_first[base_fy] + 12), np.arange(fy_first[y], fy_first[y] + 12)
            v0 = mu_act[:, :, m0_] * price_cm[None, :, m0_] * hrg_pair
            v1 = mu_act[:, :, m1_] * price_cm[None, :, m1_] * hrg_pair
            lnW = np.log(W[:, m1_] / W[:, m0_])[pair_prac][:, :, combo_curve].transpose(0, 2, 1)  # (npair, NC, 12)
            lnE = np.zeros((npair, NC, 12))
            lnE[:, sel_el] = np.log(E_pair[:, combo_s[sel_el]][:, :, m1_] / E_pair[:, combo_s[sel_el]][:, :, m0_])
            lnC = np.zeros((npair, NC, 12))
            lnC[:, is_fu] = np.log(C[:, :, m1_] / C[:, :, m0_])
            ratios = {
                "population": lnW,
                "secular_trend_and_season": np.log(ts_combo[:, m1_] / ts_combo[:, m0_])[None],
                "practice_action": lnE,
                "provider_change": lnC,
                "tariff": np.log(price_cm[:, m1_] / price_cm[:, m0_])[None],
            }
            L = _logmean(v1, v0)
            parts = np.stack([np.add.reduceat(np.sum(L * np.broadcast_to(r, L.shape), axis=(1, 2)), pair_start)
                              for r in ratios.values()], axis=1)  # (P, 5)
            change = np.add.reduceat(np.sum(v1 - v0, axis=(1, 2)), pair_start)
            lmdi_check = max(lmdi_check, float(np.max(np.abs(parts.sum(axis=1) - change) / np.maximum(np.abs(change), 1.0))))
            # pence, with the rounding residual on the largest part: parts add to the rounded change
            pc = cents(parts)
            resid = (spend_c[:, y] - spend_c[:, base_fy]) - pc.sum(axis=1)
            big = np.argmax(np.abs(parts), axis=1)
            pc[np.arange(P), big] += resid
            lmdi_parts[:, y] = pc
            lmdi_ok[y] = True
        lmdi_ok[base_fy] = True
        del E_pair
    stage("truth")

    # ---- budgets ------------------------------------------------------------------------------
    A = np.add.reduceat(mu_act, fy_first, axis=2)  # (npair, NC, n_fy) expected activity
    del mu_act
    first_eng_fy = int(fy_idx[first_eng])
    b_prac, b_fy, b_val = [], [], []
    for y in range(first_eng_fy, n_fy):
        base = [b for b in (y - 1, y - 2) if b >= 0]
        if not base:
            continue
        annual = sum(A[:, :, b] * (12.0 / fy_months[b]) for b in base) / len(base)  # (npair, NC)
        recost = np.add.reduceat(np.sum(annual * price_cf[None, :, y], axis=1) * hrg_v[pair_prov], pair_start)
        base_months = np.concatenate([np.flatnonzero(fy_idx == b) for b in base])
        list_ratio = list_tot[:, fy_first[y]] / list_tot[:, base_months].mean(axis=1)
        b_prac.append(np.arange(P))
        b_fy.append(np.full(P, y))
        b_val.append(np.round(recost * list_ratio * fy_months[y] / 12.0, 2))
    if b_prac:
        bp_, bf_ = np.concatenate(b_prac), np.concatenate(b_fy)
        o = np.lexsort((bf_, bp_))
        budgets = pd.DataFrame({"practice_code": pd.array(prac_codes[bp_[o]].tolist(), dtype="str"),
                                "financial_year": pd.array(np.array(fy_labels)[bf_[o]].tolist(), dtype="str"),
                                "budget": np.concatenate(b_val)[o]})
    else:
        budgets = pd.DataFrame({"practice_code": pd.array([], dtype="str"), "financial_year": pd.array([], dtype="str"),
                                "budget": np.array([], float)})
    tables["budgets"] = budgets

    # ---- high-cost patients -------------------------------------------------------------------
    a_, xm, cap = p.high_cost_alpha, p.high_cost_threshold, p.high_cost_cap
    tail = 1.0 - (xm / cap) ** a_
    mean_hc = a_ * xm ** a_ / tail * (xm ** (1 - a_) - cap ** (1 - a_)) / (a_ - 1)
    n_hc = g_hc.poisson(p.high_cost_share * spend / mean_hc)  # (P, n_fy); spend covers the window's months
    n_yp = n_hc.T.ravel()  # rows ordered by (year, practice)
    N = int(n_yp.sum())
    start_yp = (np.cumsum(n_yp) - n_yp).reshape(n_fy, P)
    key = np.uint64(int(g_hc.integers(0, 2**62)))
    ids = _mix64(np.arange(N, dtype=np.uint64), key)  # every row new: distinct ids
    for y in range(1, n_fy):  # chronic patients keep last year's id (year y-1 is final by now)
        carry = g_hc.binomial(np.minimum(n_hc[:, y], n_hc[:, y - 1]), p.high_cost_chronic_fraction)
        r = np.arange(int(carry.sum())) - np.repeat(np.cumsum(carry) - carry, carry)
        ids[np.repeat(start_yp[y], carry) + r] = ids[np.repeat(start_yp[y - 1], carry) + r]
    hc_prac = np.repeat(np.tile(np.arange(P), n_fy), n_yp)
    hc_fy = np.repeat(np.repeat(np.arange(n_fy), P), n_yp)
    u = g_hc.random(N)
    hc_cost = np.round(xm * (1.0 - u * tail) ** (-1.0 / a_), 2)
    hex_ids = _hex_ids(ids)
    o = np.lexsort((hc_fy, hex_ids)) if N else np.array([], np.int64)
    tables["high_cost_patients"] = pd.DataFrame({
        "patient_id": pd.array(hex_ids[o].tolist(), dtype="str"),
        "practice_code": pd.array(prac_codes[hc_prac[o]].tolist(), dtype="str"),
        "financial_year": pd.array(np.array(fy_labels)[hc_fy[o]].tolist(), dtype="str"),
        "cost": hc_cost[o]})
    stage("budgets and high-cost patients")

    for name, cols in TABLE_COLUMNS.items():
        tables[name] = tables[name][cols]

    # ---- the truth dictionary -----------------------------------------------------------------
    money = lambda c: round(int(c) / 100.0, 2)  # noqa: E731
    records = _records(prac_list, fy_labels, spend_c, cf_prac_c, cf_prov_c, exp_ref, exp_ref_noeng,
                       lmdi_parts, lmdi_ok, base_fy, fy_months)
    pct = []
    for y in range(n_fy):
        row = {"financial_year": fy_labels[y], "months_in_window": int(fy_months[y]),
               "expected_spend": money(spend_c[:, y].sum()),
               "cf_no_practice_action": money(cf_prac_c[:, y].sum()),
               "cf_no_provider_change": money(cf_prov_c[:, y].sum()),
               "savings_practice_action": money((cf_prac_c[:, y] - spend_c[:, y]).sum()),
               "savings_provider_change": money((cf_prov_c[:, y] - spend_c[:, y]).sum()),
               "expected_referrals": round(float(exp_ref[:, y].sum()), 3),
               "referrals_avoided": round(float((exp_ref_noeng[:, y] - exp_ref[:, y]).sum()), 3)}
        for ki, kname in enumerate(LMDI_FACTORS):
            row[f"lmdi_{kname}"] = money(lmdi_parts[:, y, ki].sum()) if lmdi_ok[y] else None
        row["spend_change_from_base"] = (money((spend_c[:, y] - spend_c[:, base_fy]).sum()) if lmdi_ok[y] else None)
        pct.append(row)

    under_set = set(under.tolist())
    practice_info = [
        {"practice_code": c, "cohort": (int(k_) + 1 if k_ < n_cohorts else None),
         "engaged_from": (month_labels[int(e_)] if k_ < n_cohorts else None),
         "under_referrer": bool(i in under_set), "log_propensity": round(float(up), 6),
         "imd_z": round(float(zz), 6), "list_size_start": int(ls), "consortium": cn}
        for i, (c, k_, e_, up, zz, ls, cn) in enumerate(zip(
            prac_list, cohort.tolist(), engaged_from.tolist(), u_p.tolist(), z.tolist(), list_tot[:, 0].tolist(),
            cons_names[consortium].tolist()))
    ]
    truth: dict[str, Any] = {
        "generator": {"module": "pbc_analysis.synth", "model_version": SYNTH_MODEL_VERSION,
                      "params": given.to_dict(), "resolved_params": p.to_dict()},
        "seed": int(p.seed),
        "window": {"start_month": month_labels[0], "end_month": month_labels[-1], "n_months": M,
                   "financial_years": fy_labels},
        "engagement": {
            "cohorts": [{"cohort": i + 1, "offset": int(o_), "start_month": month_labels[int(o_)],
                         "effect_scale": float(p.cohort_effect_scale[i]),
                         "practices": prac_codes[cohort == i].tolist()}
                        for i, o_ in enumerate(p.cohort_offsets)],
            "never_engaged": prac_codes[cohort == n_cohorts].tolist(),
            "effects_by_specialty": {c: float(e) for c, e in p.engagement_effects},
            "ramp_months": int(p.ramp_months),
            "ramp_rule": "multiplier 1 - effect x scale x clip((months since engagement + 1)/ramp_months, 0, 1)",
        },
        "under_referrers": {"practices": prac_codes[under].tolist(),
                            "log_propensity": float(p.under_referrer_log_propensity)},
        "provider_change": {"provider_code": prov_list[cut_v], "effective_month": cut_month,
                            "offset": int(p.provider_cut_offset), "pod": "followup_op", "specialty_code": "all",
                            "relative_change_in_follow_up_ratio": float(p.provider_cut_size)},
        "tariff": {"annual_uplift": float(p.tariff_uplift), "price_base_year": _fy_label(p.tariff_base_year),
                   "uplift_index_by_year": {fy_labels[i]: round(float(uplift[i]), 8) for i in range(n_fy)},
                   "structural_change": {
                       "financial_year": fy_labels[struct_fy] if struct_fy < n_fy else None,
                       "offset": int(p.structural_change_offset),
                       "relative_change_by_pod": {k_: float(v_) for k_, v_ in p.structural_change}}},
        "seasonality": {kname: {f"{i + 1:02d}": float(v_) for i, v_ in enumerate(vals)} for kname, vals in
                        (("elective_referrals", p.elective_season), ("non_elective", p.non_elective_season),
                         ("ae", p.ae_season))},
        "secular_trend": {"referrals": p.referral_trend, "non_elective": p.non_elective_trend, "ae": p.ae_trend},
        "deprivation": {"beta_referrals": p.beta_deprivation, "beta_non_elective": p.beta_deprivation_non_elective,
                        "beta_ae": p.beta_deprivation_ae, "imd_mean": round(imd_mean, 6), "imd_sd": round(imd_sd, 6),
                        "practice_propensity_sd": p.practice_propensity_sd,
                        "share_of_propensity_variance": round(p.beta_deprivation ** 2 / (
                            p.beta_deprivation ** 2 + p.practice_propensity_sd ** 2), 4)},
        "completeness": {month_labels[M - n_lag + j]: float(comp[3 - n_lag + j]) for j in range(n_lag)},
        "specialties": {c: {"referrals_per_1000_weighted_per_month": sp[2], "conversion": sp[3],
                            "follow_up_ratio": sp[4], "electives_per_first": sp[5],
                            "non_elective_per_1000_per_month": sp[6]} for c, sp in zip(spec_codes, _SPECIALTIES)},
        "ae_per_1000_weighted_per_month": _AE_RATE,
        "providers": {prov_list[v]: {"has_ae": bool(has_ae[v]), "hrg_factor": float(hrg_v[v]),
                                     "conversion": {spec_codes[s]: float(conv_v[v, s]) for s in range(S)},
                                     "follow_up_ratio": {spec_codes[s]: float(fu_v[v, s]) for s in range(S)}}
                      for v in range(V)},
        "high_cost": {"threshold": p.high_cost_threshold, "pareto_alpha": p.high_cost_alpha, "cap": p.high_cost_cap,
                      "share_of_spend": p.high_cost_share, "mean_cost": round(float(mean_hc), 2),
                      "chronic_fraction": p.high_cost_chronic_fraction},
        "budget_rule": ("mean of the two previous financial years' expected activity (annualised), re-costed at "
                        "the new year's tariff x provider HRG factor, x list at the start of the year / mean list "
                        "over the base years, x months of the year in the window / 12"),
        "lmdi": {"method": "LMDI-I (Ang 2005), cells = practice x provider x specialty x pod x month of year",
                 "base_year": fy_labels[base_fy] if base_fy is not None else None,
                 "factors": list(LMDI_FACTORS),
                 "max_relative_error_before_rounding": float(f"{lmdi_check:.3g}")},
        "practices": practice_info,
        "practice_year": records,
        "pct_year": pct,
    }
    return SynthResult(tables=tables, truth=truth, params=p)


def _reference_rates(need: np.ndarray, col: dict[str, np.ndarray], spec_codes: list[str]) -> pd.DataFrame:
    """National reference rates per 1,000 registered patients per year by measure, specialty, age band and sex.

    The rates of a practice of average deprivation and propensity (z = 0, u = 0) at the start of the
    window, averaged over the season: 12 x r_s x need_s(a) for referrals, times c_s (first
    outpatients), c_s f_s (follow-ups) and c_s x_s (elective admissions); 12 x n_s x need^NE_s(a) for
    non-elective admissions; 12 x 22 x need^AE(a) for A&E. They play the part of national HES/MAR
    age-sex rates in indirect standardisation (``pbc_analysis.stages.benchmark``).
    """
    S = len(spec_codes)
    per_year = {
        "referrals": 12.0 * col["ref_rate"][None, :] * need[:, :S],
        "first_op": 12.0 * (col["ref_rate"] * col["conversion"])[None, :] * need[:, :S],
        "followup_op": 12.0 * (col["ref_rate"] * col["conversion"] * col["fu_ratio"])[None, :] * need[:, :S],
        "elective": 12.0 * (col["ref_rate"] * col["conversion"] * col["el_conv"])[None, :] * need[:, :S],
        "non_elective": 12.0 * col["ne_rate"][None, :] * need[:, S:2 * S],
    }
    frames = []
    bands = np.repeat(np.array(AGE_BANDS), 2)
    sexes = np.tile(np.array(SEXES), 19)
    for measure, r in per_year.items():  # r: (38, S)
        frames.append(pd.DataFrame({"measure": measure, "specialty_code": np.repeat(spec_codes, 38),
                                    "age_band": np.tile(bands, S), "sex": np.tile(sexes, S),
                                    "rate": r.T.ravel()}))
    frames.append(pd.DataFrame({"measure": "ae", "specialty_code": AE_SPECIALTY[0], "age_band": bands, "sex": sexes,
                                "rate": 12.0 * _AE_RATE * need[:, 2 * S]}))
    out = pd.concat(frames, ignore_index=True)
    out["rate"] = out["rate"].round(4)
    band_order = {b: i for i, b in enumerate(AGE_BANDS)}
    out = out.assign(_b=out["age_band"].map(band_order)).sort_values(
        ["measure", "specialty_code", "_b", "sex"], kind="stable", ignore_index=True).drop(columns="_b")
    for c in ("measure", "specialty_code", "age_band", "sex"):
        out[c] = out[c].astype("str")
    return out


def _practice_fy(x_pair_m: np.ndarray, fy_first: np.ndarray, pair_start: np.ndarray) -> np.ndarray:
    """Sum a (pair, month) array to (practice, financial year)."""
    return np.add.reduceat(np.add.reduceat(x_pair_m, fy_first, axis=1), pair_start, axis=0)


def _records(prac_list, fy_labels, spend_c, cf_prac_c, cf_prov_c, exp_ref, exp_ref_noeng, lmdi_parts, lmdi_ok,
             base_fy, fy_months) -> list[dict[str, Any]]:
    P, n_fy = spend_c.shape
    pc = np.repeat(np.arange(P), n_fy)
    yc = np.tile(np.arange(n_fy), P)
    cols: dict[str, list] = {
        "practice_code": np.array(prac_list)[pc].tolist(),
        "financial_year": np.array(fy_labels)[yc].tolist(),
        "months_in_window": fy_months[yc].tolist(),
        "expected_spend": (spend_c.ravel() / 100.0).round(2).tolist(),
        "cf_no_practice_action": (cf_prac_c.ravel() / 100.0).round(2).tolist(),
        "cf_no_provider_change": (cf_prov_c.ravel() / 100.0).round(2).tolist(),
        "savings_practice_action": ((cf_prac_c - spend_c).ravel() / 100.0).round(2).tolist(),
        "savings_provider_change": ((cf_prov_c - spend_c).ravel() / 100.0).round(2).tolist(),
        "expected_referrals": exp_ref.ravel().round(3).tolist(),
        "referrals_avoided": (exp_ref_noeng - exp_ref).ravel().round(3).tolist(),
    }
    ok = lmdi_ok[yc]
    for ki, kname in enumerate(LMDI_FACTORS):
        vals = (lmdi_parts[:, :, ki].ravel() / 100.0).round(2)
        cols[f"lmdi_{kname}"] = [v if o else None for v, o in zip(vals.tolist(), ok.tolist())]
    if base_fy is not None:
        ch = ((spend_c - spend_c[:, [base_fy]]).ravel() / 100.0).round(2)
        cols["spend_change_from_base"] = [v if o else None for v, o in zip(ch.tolist(), ok.tolist())]
    else:
        cols["spend_change_from_base"] = [None] * (P * n_fy)
    keys = list(cols)
    return [dict(zip(keys, vals)) for vals in zip(*cols.values())]


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------
def _csv_bytes(df: pd.DataFrame) -> bytes:
    out = df.copy()
    for c in out.columns:
        if out[c].dtype == bool:
            out[c] = np.where(out[c].to_numpy(), "true", "false")
        elif c == "rate":  # reference rates per 1,000 a year: small numbers, keep 4 decimals
            out[c] = np.char.mod("%.4f", out[c].to_numpy(dtype=float))
    buf = io.StringIO()
    out.to_csv(buf, index=False, float_format="%.2f", lineterminator="\n")
    return buf.getvalue().encode("utf-8")


def _write_csv(df: pd.DataFrame, path: Path, compress: bool = False) -> None:
    data = _csv_bytes(df)
    if compress:
        with open(path, "wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0) as gz:
            gz.write(data)
    else:
        path.write_bytes(data)


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    table = pa.Table.from_pandas(df, preserve_index=False)
    pq.write_table(table, path, compression="zstd", use_dictionary=True, write_statistics=True)


def write_tables(result: SynthResult, out_dir: str | Path, fmt: str = "parquet", progress: bool = False) -> dict[str, Path]:
    """Write ``result`` (one file per table + ``ground_truth.json``); returns table -> path.

    ``fmt`` (``parquet``, ``csv`` or ``csv.gz``) applies to population, activity and referrals;
    the small tables are always CSV. Other files of the same tables are removed first so a
    directory never holds two files for one table.
    """
    if fmt not in ("parquet", "csv", "csv.gz"):
        raise ValueError("fmt must be 'parquet', 'csv' or 'csv.gz'")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    names = list(TABLE_COLUMNS)
    for name in tqdm(names, desc="writing", unit="table", disable=not progress, leave=False):
        ext = fmt if name in LARGE_TABLES else "csv"
        path = out / f"{name}.{ext}"
        for other in ("csv", "csv.gz", "parquet"):
            stale = out / f"{name}.{other}"
            if other != ext and stale.exists():
                stale.unlink()
        df = result.tables[name]
        if ext == "parquet":
            _write_parquet(df, path)
        else:
            _write_csv(df, path, compress=ext == "csv.gz")
        paths[name] = path
    truth_path = out / "ground_truth.json"
    truth_path.write_bytes((json.dumps(result.truth, sort_keys=True, indent=1, allow_nan=False) + "\n").encode("utf-8"))
    paths["ground_truth"] = truth_path
    return paths


def write_synthetic_pct(out_dir: str | Path, seed: int = 20070401, n_practices: int = 60, n_months: int = 60,
                        start_month: str = "2003-04", fmt: str = "parquet", progress: bool = True) -> dict[str, Path]:
    """Generate the synthetic PCT with default planted effects and write it to ``out_dir``.

    The documented sample is ``write_synthetic_pct("data/sample", seed=20070401, n_practices=60,
    n_months=60, start_month="2003-04", fmt="parquet")``.
    """
    params = SynthParams(seed=seed, n_practices=n_practices, n_months=n_months, start_month=start_month)
    result = generate(params, progress=progress)
    return write_tables(result, out_dir, fmt=fmt, progress=progress)


def without_provider_cut(inputs: Any, truth: dict) -> Any:
    """The synthetic PCT's validated inputs with its planted provider follow-up cut undone: the cut
    provider's follow-up activity and cost from the effective month divided by ``1 + relative change``
    (``truth["provider_change"]``). Used to check how much of the cut an attribution puts on the
    practices' side (compare with the same PCT generated with ``provider_cut_size=0``)."""
    cut = truth["provider_change"]
    act = inputs.activity
    hit = ((act["provider_code"] == cut["provider_code"]) & (act["pod"] == cut["pod"])
           & (act["month"] >= cut["effective_month"])).to_numpy()
    scale = np.where(hit, 1.0 / (1.0 + cut["relative_change_in_follow_up_ratio"]), 1.0)
    return dataclasses.replace(inputs, activity=act.assign(activity=act["activity"] * scale, cost=act["cost"] * scale))
