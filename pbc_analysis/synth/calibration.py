"""Calibration of the synthetic PCT: age-sex pyramid, specialties, need curves, names (not drawn).

Specialty calibration is not in ``DOMAIN.md``: plausible 2005 English values (referral rates, conversion,
follow-up ratios, electives per first attendance, emergency admission rates, 2005/06 prices). The
England-like pyramid is mid-2005 (thousands, 19 quinary bands, female then male).

Need curves (relative use by age-sex, normalised to mean 1 over the England pyramid):
  need_s(a) = sex_s(a) x (child_s e^{-age/4} + exp(slope_s x + curv_s x^2)), x = (age - 45)/10,
  (ophthalmology slope 0.45: steep with age; gynaecology female and adult only; urology mostly
  male; ENT high in children, ...). Non-elective admissions use a U-shaped emergency curve times
  the specialty's sex factor, A&E a flatter U-shaped curve (:func:`need_curve`, :func:`specialty_model`).

References
----------
``../shared/DOMAIN.md``, "Numbers for calibrating synthetic data (England)".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["AE_BASE_PRICE", "AE_CURVE", "AE_RATE", "AE_SPECIALTY", "AGE_MID", "COMPASS", "DEFAULT_EFFECTS", "LETTERS",
           "LMDI_FACTORS", "NE_CURVE", "PRACTICE_KINDS", "PREFIXES", "PYR_F", "PYR_M", "SPECIALTIES", "STEMS", "SUFFIXES",
           "SYNTH_MODEL_VERSION", "SpecialtyModel", "need_curve", "specialty_model"]

SYNTH_MODEL_VERSION = "1"
AGE_MID = np.array([5 * i + 2.5 for i in range(18)] + [92.5])

# England mid-2005-like pyramid (thousands), 19 bands, female then male.
PYR_F = np.array([1430, 1490, 1600, 1570, 1560, 1530, 1740, 1950, 1920, 1700, 1570, 1660, 1350,
                  1190, 1100, 990, 800, 500, 260], dtype=float)
PYR_M = np.array([1500, 1560, 1680, 1650, 1600, 1530, 1720, 1930, 1900, 1680, 1540, 1620, 1300,
                  1110, 960, 760, 480, 230, 80], dtype=float)

# Specialty calibration (not in DOMAIN.md: plausible 2005 English values).
# code, name, referrals per 1,000 weighted per month, conversion (firsts per referral),
# follow-ups per first, electives per first, non-elective admissions per 1,000 per month,
# 2005/06 prices (first OP, follow-up, elective, non-elective), need curve: female factor,
# male factor, child term, age slope, age curvature, adults only.
SPECIALTIES = (
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
AE_BASE_PRICE = 85.0
AE_RATE = 22.0  # A&E attendances per 1,000 weighted patients per month (about 260 a year)
# Emergency-admission and A&E age curves: child term, slope, curvature.
NE_CURVE = (1.5, 0.33, 0.02)
AE_CURVE = (0.8, 0.05, 0.03)

LETTERS = np.array(list("ABCDEFGHJKLMNPY"))
PREFIXES = np.arange(81, 93)
STEMS = np.array(["Ash", "Brad", "Carl", "Dun", "Elm", "Fair", "Glen", "Hart", "Ivy", "Kings", "Lang",
                  "Mill", "Nor", "Oak", "Pen", "Queens", "Red", "Stan", "Thorn", "Up", "Wal", "West",
                  "Whit", "York", "Bar", "Chester", "Dal", "Hol", "Lin", "Mor", "Roch", "Sand",
                  "Brook", "Castle", "Green", "High", "Kirk", "Long", "Marl", "New"])
SUFFIXES = np.array(["ford", "ton", "field", "ley", "bury", "wick", "ham", "worth", "by", "stead",
                     "dale", "well", "bridge", "mouth", "port", "minster", "combe", "hurst", "land",
                     "thorpe", "more", "side", "gate", "wood", "holme"])
PRACTICE_KINDS = np.array(["Surgery", "Medical Centre", "Health Centre", "Medical Practice",
                           "Road Surgery", "Family Practice", "Group Practice", "Lane Surgery"])
COMPASS = ("Central", "North", "North East", "East", "South East", "South", "South West", "West",
           "North West")

DEFAULT_EFFECTS = (
    ("100", 0.05), ("101", 0.04), ("110", 0.14), ("120", 0.06), ("130", 0.03), ("300", 0.02),
    ("301", 0.05), ("320", 0.04), ("330", 0.15), ("340", 0.03), ("410", 0.12), ("502", 0.08),
)
LMDI_FACTORS = ("population", "secular_trend_and_season", "practice_action", "provider_change", "tariff")
# The columns of SPECIALTIES from the third on, by name (the first two are code and name).
_COLUMNS = ("ref_rate", "conversion", "fu_ratio", "el_conv", "ne_rate", "p_first", "p_fu", "p_el", "p_ne", "sex_f",
            "sex_m", "child", "slope", "curv")


def need_curve(child: float, slope: float, curv: float, sex_f: float, sex_m: float,
               adult_only: bool = False) -> np.ndarray:
    """Relative use by age-sex cell, normalised to mean 1 over the England pyramid.

    Parameters
    ----------
    child, slope, curv : float
        Child term, age slope and curvature of ``child e^{-age/4} + exp(slope x + curv x^2)``,
        x = (age - 45)/10.
    sex_f, sex_m : float
        Female and male factors.
    adult_only : bool
        Whether children (under 15) use 5% of the curve (gynaecology).

    Returns
    -------
    numpy.ndarray
        38 cells, band-major, F then M.

    References
    ----------
    The module docstring ("Need curves").
    """
    x = (AGE_MID - 45.0) / 10.0
    base = child * np.exp(-AGE_MID / 4.0) + np.exp(slope * x + curv * x * x)
    if adult_only:
        base = base * np.where(AGE_MID < 15, 0.05, 1.0)
    cell = np.stack([sex_f * base, sex_m * base], axis=1).ravel()  # (38,) band-major, F then M
    pyr = np.stack([PYR_F, PYR_M], axis=1).ravel()
    pyr = pyr / pyr.sum()
    return cell / float(np.sum(cell * pyr))


@dataclass(frozen=True)
class SpecialtyModel:
    """The 12 elective specialties' calibration as arrays, and the 25 need curves."""

    codes: list[str]               # the 12 elective specialty codes, in SPECIALTIES order (sorted)
    names: list[str]
    all_codes: list[str]           # sorted, A&E's 180 included
    all_idx: np.ndarray            # position of each elective code in all_codes
    col: dict[str, np.ndarray]     # calibration column name -> (S,) floats
    need: np.ndarray               # (38, 2S + 1): S elective (referral) curves, S non-elective, A&E

    @property
    def n(self) -> int:
        """The number of elective specialties S."""
        return len(self.codes)


def specialty_model() -> SpecialtyModel:
    """The specialty calibration and need curves of :data:`SPECIALTIES`.

    Returns
    -------
    SpecialtyModel

    References
    ----------
    The module docstring.
    """
    codes = [s[0] for s in SPECIALTIES]
    all_codes = sorted(codes + [AE_SPECIALTY[0]])
    col = {name: np.array([s[i + 2] for s in SPECIALTIES], dtype=float) for i, name in enumerate(_COLUMNS)}
    S = len(SPECIALTIES)
    need = np.empty((38, 2 * S + 1))
    for j, sp in enumerate(SPECIALTIES):
        need[:, j] = need_curve(sp[13], sp[14], sp[15], sp[11], sp[12], sp[16])
        need[:, S + j] = need_curve(*NE_CURVE, sp[11], sp[12], sp[16])
    need[:, 2 * S] = need_curve(*AE_CURVE, 1.0, 1.0)
    return SpecialtyModel(codes=codes, names=[s[1] for s in SPECIALTIES], all_codes=all_codes,
                          all_idx=np.array([all_codes.index(c) for c in codes]), col=col, need=need)
