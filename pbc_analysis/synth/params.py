"""The generator's parameters: one frozen dataclass, :class:`SynthParams`, the one source of every setting.

Each field carries its default, its type (the annotation) and an :class:`Option` (help text, group, allowed
range, exact length of a tuple, kind, and for fields whose default is ``None`` the rule that derives the
value from the window). ``pbc synth``'s flags are generated from these fields
(:mod:`pbc_analysis.synth.options`), :meth:`SynthParams.problems` checks every value against them, and
:meth:`SynthParams.resolved` replaces each ``None`` by its derived value.

Offsets are months from ``start_month`` (0 is the first month of the window).

Derived defaults (the rules, each in its function):

- :func:`default_cohort_offsets`: cohorts at round((24, 30, 36, ...) x M/60) (2005-04, 2005-10, 2006-04
  for the sample's 60 months from 2003-04); when that leaves no full April-to-March year before the first
  cohort (a short window starting in May to August), the cohorts move, keeping their spacing, to start the
  month after the first full financial year ends, so the pipeline can derive a base year.
- :func:`default_provider_cut_offset`: round(45 M/60) (2007-01 for the sample).
- :func:`default_structural_change_offset`: the first April at or after round(48 M/60) (2007/08).
- :func:`default_n_providers`: 4 for a PCT of up to 200 practices, else round(P/40).
- :func:`default_n_under_referrers`: max(1, round(P/30)) of the engaged practices.

``code_block`` (``None`` for a single PCT) puts the PCT's practice and provider codes in block k of the national code
space (:mod:`pbc_analysis.synth.world`); ``pbc synth --national`` gives each commissioner its own.

References
----------
pydesrap_mms (``simulation/param.py``): every model parameter defined in one place, with its default.
``../shared/DOMAIN.md`` "Numbers for calibrating synthetic data (England)" for the defaults.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from pbc_analysis.core import calendar
from pbc_analysis.core.checks import ArgumentError, number_problem
from pbc_analysis.synth.calibration import DEFAULT_EFFECTS, SPECIALTIES
from pbc_analysis.synth.contract import PODS

__all__ = ["Option", "SynthParams", "default_cohort_offsets", "first_full_year_end", "pipeline_warnings", "default_n_providers", "default_n_under_referrers",
           "default_provider_cut_offset", "default_structural_change_offset", "largest_remainder", "CODE_BLOCKS",
           "PRACTICES_PER_BLOCK", "PROVIDERS_PER_BLOCK"]

MAX_PRACTICES = 15 * 12 * 999          # the practice code space: 15 letters x 12 area prefixes x 999 numbers
MAX_PROVIDERS = 22 * 32 * 32           # three-character provider codes
PRACTICES_PER_BLOCK = 250              # practice codes of one commissioner's block (code_block)
PROVIDERS_PER_BLOCK = 32               # provider codes of one block: R + two block characters + one of 32
CODE_BLOCKS = MAX_PRACTICES // PRACTICES_PER_BLOCK  # 719 blocks of 250 practice codes


@dataclass(frozen=True)
class Option:
    """What a :class:`SynthParams` field means and which values it accepts."""

    help: str                          # one line: what the field sets
    group: str                         # the section of ``pbc synth --help``
    low: float | None = None           # bounds of the value (of each value of a tuple)
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    length: int | None = None          # the exact number of values of a tuple
    kind: str | None = None            # "month" (YYYY-MM), "offset" (a month of the window), "pairs" (code=value)
    derive: str | None = None          # the rule that gives the value when it is None
    flag: str | None = None            # the ``pbc synth`` flag, when not ``--`` + the name with dashes


def _opt(default: Any, help: str, group: str, **meta: Any) -> Any:
    return dataclasses.field(default=default, metadata={"synth": Option(help, group, **meta)})


SHAPE, POP, PROV, REF, EMERG, ENG, CUT, TARIFF, LAG, HC = (
    "shape of the PCT", "practices and population", "providers", "referrals", "emergency activity",
    "engagement (the planted practice action)", "provider change (the planted follow-up cut)", "tariff",
    "data lag (the incomplete tail of hospital activity)", "high-cost patients")
_SEASON = dict(low=0.0, low_open=True, length=12)
_SD = dict(low=0.0)
_SHARE = dict(low=0.0, high=1.0)


@dataclass(frozen=True)
class SynthParams:
    """Every planted parameter of the synthetic PCT (see :mod:`pbc_analysis.synth` for the model).

    Offsets are months from ``start_month``; ``None`` means the value derived from the window (see
    :meth:`resolved` and the module docstring).
    """

    seed: int = _opt(20070401, "seed of numpy.random.default_rng: the same seed and settings give the same bytes",
                     SHAPE, low=0)
    n_practices: int = _opt(60, "practices in the PCT (the pipeline is tested on 45 to 150; 6,500 is England)",
                            SHAPE, low=2, high=MAX_PRACTICES, flag="--practices")
    n_months: int = _opt(60, "months of data from start_month (the pipeline is tested on 48 to 72)", SHAPE, low=12,
                         high=600, flag="--months")
    start_month: str = _opt("2003-04", "first month of the data, YYYY-MM (any calendar month)", SHAPE, kind="month",
                            flag="--start")
    # practices and population
    list_median: float = _opt(8100.0, "median registered list at the start", POP, low=1.0)
    list_log_sd: float = _opt(0.62, "SD of log list size (IQR about 5,200 to 12,000)", POP, **_SD)
    list_min: int = _opt(1000, "smallest list size (lists are clipped to list_min..list_max)", POP, low=1)
    list_max: int = _opt(40000, "largest list size", POP, low=1)
    single_handed_below: int = _opt(3200, "lists below this are single-handed practices", POP, low=0)
    imd_median: float = _opt(21.0, "median IMD score", POP, low=0.0, low_open=True)
    imd_log_sd: float = _opt(0.55, "SD of log IMD score", POP, low=0.0, low_open=True)
    imd_min: float = _opt(3.0, "lowest IMD score (the draw is truncated to imd_min..imd_max)", POP, low=0.0,
                          low_open=True)
    imd_max: float = _opt(75.0, "highest IMD score", POP, low=0.0, low_open=True)
    practices_per_consortium: float = _opt(11.0, "practices per locality consortium, about", POP, low=1.0)
    list_growth_mean: float = _opt(0.01, "mean yearly log growth of lists", POP, low=-0.5, high=0.5)
    list_growth_sd: float = _opt(0.01, "SD across practices of the yearly growth", POP, **_SD)
    ageing_rate: float = _opt(0.005, "slow ageing of the lists (log share per year per 40 years of age)", POP,
                              low=-0.5, high=0.5)
    age_tilt_per_imd_sd: float = _opt(-0.15, "age tilt of the list per SD of IMD (negative: deprived are younger)",
                                      POP, low=-2.0, high=2.0)
    age_tilt_sd: float = _opt(0.10, "SD of the practice age tilt", POP, **_SD)
    age_cell_noise_sd: float = _opt(0.08, "SD of the practice x age-sex cell noise", POP, **_SD)
    # providers
    n_providers: int | None = _opt(None, "hospital providers", PROV, low=1, high=MAX_PROVIDERS, flag="--providers",
                                   derive="4 for a PCT of up to 200 practices, else round(practices / 40)")
    providers_per_practice: int = _opt(3, "providers each practice uses (its nearest)", PROV, low=1, high=10)
    ae_fraction: float = _opt(0.8, "share of providers with a type 1 A&E (at least one)", PROV, **_SHARE)
    distance_decay: float = _opt(0.15, "distance decay of provider choice (map units)", PROV, low=0.0,
                                 low_open=True)
    share_concentration: float = _opt(30.0, "Dirichlet concentration of a practice's provider shares", PROV,
                                      low=0.0)
    drop_third_provider: float = _opt(0.15, "share of practices that use only two providers", PROV, **_SHARE)
    conversion_sd: float = _opt(0.03, "SD of log conversion (first attendances per referral) across providers",
                                PROV, **_SD)
    follow_up_ratio_sd: float = _opt(0.15, "SD of log follow-up ratio across providers", PROV, **_SD)
    hrg_factor_sd: float = _opt(0.03, "SD of the log HRG-mix factor of providers", PROV, **_SD)
    # referrals
    beta_deprivation: float = _opt(0.21, "log referral rate per SD of IMD", REF, low=-2.0, high=2.0)
    practice_propensity_sd: float = _opt(0.18, "SD of the persistent practice referral propensity", REF, **_SD)
    practice_specialty_propensity_sd: float = _opt(0.10, "SD of the practice x specialty propensity", REF, **_SD)
    n_under_referrers: int | None = _opt(None, "engaged practices planted as under-referrers", REF, low=0,
                                         flag="--under-referrers",
                                         derive="max(1, round(practices / 30)), drawn among the engaged practices")
    under_referrer_log_propensity: float = _opt(-0.5, "log referral propensity of an under-referrer (-0.5: about "
                                                "40% fewer referrals than a typical practice)", REF, low=-5.0,
                                                high=0.0)
    referral_trend: float = _opt(0.01, "yearly log trend of referrals", REF, low=-0.5, high=0.5)
    elective_season: tuple[float, ...] = _opt((1.03, 1.01, 1.06, 0.96, 1.00, 1.03, 1.03, 0.89, 1.02, 1.05, 1.03,
                                               0.89), "referral season index, January to December", REF, **_SEASON)
    # emergency activity
    beta_deprivation_non_elective: float = _opt(0.15, "log emergency admission rate per SD of IMD", EMERG, low=-2.0,
                                                high=2.0)
    beta_deprivation_ae: float = _opt(0.20, "log A&E attendance rate per SD of IMD", EMERG, low=-2.0, high=2.0)
    emergency_propensity_sd: float = _opt(0.10, "SD of the practice emergency propensities", EMERG, **_SD)
    non_elective_trend: float = _opt(0.015, "yearly log trend of emergency admissions", EMERG, low=-0.5, high=0.5)
    ae_trend: float = _opt(0.02, "yearly log trend of A&E attendances", EMERG, low=-0.5, high=0.5)
    non_elective_season: tuple[float, ...] = _opt((1.06, 0.99, 1.02, 0.97, 0.99, 0.96, 0.99, 0.95, 0.96, 1.01, 1.02,
                                                   1.08), "emergency admission season index, January to December",
                                                  EMERG, **_SEASON)
    ae_season: tuple[float, ...] = _opt((0.98, 0.97, 1.01, 1.00, 1.04, 1.03, 1.04, 0.96, 0.99, 1.00, 0.98, 1.00),
                                        "A&E season index, January to December", EMERG, **_SEASON)
    # engagement (practice action)
    cohort_offsets: tuple[int, ...] | None = _opt(
        None, "month each engagement cohort starts: months YYYY-MM or offsets from the start, increasing", ENG,
        kind="offset", derive="round((24, 30, 36, ...) x months / 60), moved later (same spacing) when no full "
        "April-to-March year would precede the first cohort")
    cohort_fractions: tuple[float, ...] = _opt((0.30, 0.25, 0.15), "share of all practices in each cohort "
                                               "(with never_engaged_fraction they add up to 1)", ENG, low=0.0,
                                               low_open=True, high=1.0)
    never_engaged_fraction: float = _opt(0.30, "share of practices never engaged", ENG, **_SHARE)
    cohort_effect_scale: tuple[float, ...] | None = _opt(None, "multiplier of the engagement effects in each cohort",
                                                         ENG, low=0.0, derive="1 for every cohort")
    engagement_effects: tuple[tuple[str, float], ...] = _opt(
        DEFAULT_EFFECTS, "full relative fall in referrals after engagement by specialty, code=effect (codes not "
        "given keep their default)", ENG, low=0.0, high=1.0, high_open=True, kind="pairs")
    ramp_months: int = _opt(6, "months over which the engagement effect ramps up to full", ENG, low=1, high=120)
    # provider change
    provider_cut_provider: str | None = _opt(None, "provider code whose follow-ups are cut", CUT,
                                             derive="the largest provider by expected first attendances")
    provider_cut_offset: int | None = _opt(None, "month the follow-up cut starts (YYYY-MM or an offset)", CUT,
                                           kind="offset", derive="round(45 x months / 60)")
    provider_cut_size: float = _opt(-0.20, "relative change of the cut provider's follow-up ratio (0: no change)",
                                    CUT, low=-1.0, high=1.0, low_open=True)
    # tariff
    tariff_uplift: float = _opt(0.025, "yearly tariff uplift", TARIFF, low=-0.5, high=0.5)
    tariff_base_year: int = _opt(2005, "financial year (its first calendar year) of the base prices", TARIFF,
                                 low=1900, high=2200)
    structural_change_offset: int | None = _opt(None, "April the structural price change starts (YYYY-MM or an "
                                                "offset)", TARIFF, kind="offset",
                                                derive="the first April at or after round(48 x months / 60)")
    structural_change: tuple[tuple[str, float], ...] = _opt(
        (("first_op", 0.08), ("followup_op", -0.10)), "relative price change by point of delivery, pod=change",
        TARIFF, low=-1.0, high=1.0, low_open=True, kind="pairs")
    # data lag: completeness of the last months of activity, oldest first
    completeness: tuple[float, ...] = _opt((0.97, 0.85, 0.55), "completeness of the last months of hospital "
                                           "activity, oldest first (one value per incomplete month)", LAG, low=0.0,
                                           high=1.0, low_open=True)
    # high-cost patients
    high_cost_threshold: float = _opt(10000.0, "cost above which a patient is high-cost (GBP)", HC, low=0.0,
                                      low_open=True)
    high_cost_alpha: float = _opt(1.8, "Pareto tail index of high-cost patients' costs", HC, low=1.0, low_open=True)
    high_cost_cap: float = _opt(300000.0, "largest cost of one patient (GBP)", HC, low=0.0, low_open=True)
    high_cost_share: float = _opt(0.26, "share of hospital spend on patients above the threshold", HC, **_SHARE)
    high_cost_chronic_fraction: float = _opt(0.35, "share of last year's high-cost patients who stay high-cost",
                                             HC, **_SHARE)
    # national codes (pbc synth --national: one block per commissioner)
    code_block: int | None = _opt(None, "draw practice and provider codes in this commissioner's block of the national "
                                  f"code space (at most {PRACTICES_PER_BLOCK} practices, {PROVIDERS_PER_BLOCK} providers)",
                                  SHAPE, low=0, high=CODE_BLOCKS - 1,
                                  derive="none: codes anywhere in the code space (a single PCT)")

    # -- the declared options --------------------------------------------------------------------
    @classmethod
    def options(cls) -> dict[str, Option]:
        """Each field's :class:`Option`, in declaration order.

        Returns
        -------
        dict
            Field name -> :class:`Option`.
        """
        return {f.name: f.metadata["synth"] for f in dataclasses.fields(cls)}

    # -- checks ----------------------------------------------------------------------------------
    def problems(self, label: Callable[[str], str] | None = None) -> list[str]:
        """Every value outside its type, range or length, and every broken rule between values.

        Parameters
        ----------
        label : callable, optional
            Field name -> the name to show (``pbc synth`` passes its flag); default the field name.

        Returns
        -------
        list of str
            One message per problem, naming the field (or flag) and the fix; empty when all is well.
        """
        name = label or (lambda n: n)
        hints = typing.get_type_hints(type(self))
        out = [m for f, opt in self.options().items()
               if (m := _field_problem(name(f), getattr(self, f), hints[f], opt))]
        return out or _cross_problems(self, name)

    # -- values derived where not given (on resolved parameters: the fields themselves) ----------
    def cohorts(self) -> tuple[int, ...]:
        """The cohort offsets: as given, or derived (:func:`default_cohort_offsets`).

        Returns
        -------
        tuple of int
        """
        if self.cohort_offsets is not None:
            return tuple(int(c) for c in self.cohort_offsets)
        return default_cohort_offsets(int(self.n_months), self.start_month, len(self.cohort_fractions))

    def effect_scales(self) -> tuple[float, ...]:
        """The cohorts' effect scales: as given, or 1 for every cohort.

        Returns
        -------
        tuple of float
        """
        return tuple(float(c) for c in (self.cohort_effect_scale or tuple(1.0 for _ in self.cohorts())))

    def providers(self) -> int:
        """The number of providers: as given, or :func:`default_n_providers`.

        Returns
        -------
        int
        """
        return int(self.n_providers if self.n_providers is not None else default_n_providers(int(self.n_practices)))

    def under_referrers(self) -> int:
        """The number of under-referrers: as given, or :func:`default_n_under_referrers`.

        Returns
        -------
        int
        """
        n = self.n_under_referrers
        return int(n if n is not None else default_n_under_referrers(int(self.n_practices)))

    def cut_offset(self) -> int:
        """The offset of the provider's follow-up cut: as given, or :func:`default_provider_cut_offset`.

        Returns
        -------
        int
        """
        cut = self.provider_cut_offset
        return int(cut if cut is not None else default_provider_cut_offset(int(self.n_months)))

    def structural_offset(self) -> int:
        """The offset of the structural price change: as given, or :func:`default_structural_change_offset`.

        Returns
        -------
        int
        """
        struct = self.structural_change_offset
        return int(struct if struct is not None else default_structural_change_offset(int(self.n_months),
                                                                                        self.start_month))

    def resolved(self) -> SynthParams:
        """A copy with every ``None`` replaced by its derived value, after checking every value.

        Returns
        -------
        SynthParams

        Raises
        ------
        ArgumentError
            (a ``ValueError``) listing every problem of :meth:`problems`.
        """
        problems = self.problems()
        if problems:
            raise ArgumentError("SynthParams: " + "; ".join(problems), problems)
        eff = dict(self.engagement_effects)
        return dataclasses.replace(
            self, n_providers=self.providers(), cohort_offsets=self.cohorts(), cohort_effect_scale=self.effect_scales(),
            provider_cut_offset=self.cut_offset(), structural_change_offset=self.structural_offset(),
            n_under_referrers=self.under_referrers(), engagement_effects=tuple((s[0], float(eff[s[0]])) for s in SPECIALTIES),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists; ``code_block`` only when set).

        Returns
        -------
        dict
        """
        d = dataclasses.asdict(self)
        if d["code_block"] is None:  # written only when set, so a single PCT's ground truth keeps its bytes
            del d["code_block"]
        return json.loads(json.dumps(d))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SynthParams:
        """Inverse of :meth:`to_dict` (lists become tuples); keys that are not fields are ignored.

        Parameters
        ----------
        d : dict

        Returns
        -------
        SynthParams
        """

        def tup(x: Any) -> Any:
            return tuple(tup(i) for i in x) if isinstance(x, list) else x

        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tup(v) for k, v in d.items() if k in names})


# ---------------------------------------------------------------------------------------------
# one field's type, range and length
# ---------------------------------------------------------------------------------------------
def _scalar_ok(value: Any, kind: Any) -> bool:
    """Python numbers only (numpy scalars would not survive ``to_dict``'s JSON)."""
    if kind is int:
        return type(value) is int
    if kind is float:
        return type(value) in (int, float)
    if kind is str:
        return isinstance(value, str)
    return True


def _type_ok(value: Any, hint: Any) -> bool:
    """Whether ``value`` has the annotated type (int, float, str, tuples of them, pairs, ``| None``)."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    options = typing.get_args(hint) if union else (hint,)
    for option in options:
        if option is type(None):
            if value is None:
                return True
        elif typing.get_origin(option) is tuple:
            element = typing.get_args(option)[0]
            if isinstance(value, (tuple, list)) and all(_element_ok(v, element) for v in value):
                return True
        elif _scalar_ok(value, option):
            return True
    return False


def _element_ok(value: Any, element: Any) -> bool:
    if typing.get_origin(element) is tuple:  # a (code, number) pair
        kinds = typing.get_args(element)
        return isinstance(value, (tuple, list)) and len(value) == len(kinds) and all(
            _scalar_ok(v, k) for v, k in zip(value, kinds))
    return _scalar_ok(value, element)


def _type_text(hint: Any) -> str:
    text = str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")
    return (text.replace("tuple[tuple[str, float], ...]", "code=number pairs")
            .replace("tuple[float, ...]", "a list of numbers").replace("tuple[int, ...]", "a list of whole numbers"))


def _field_problem(name: str, value: Any, hint: Any, opt: Option) -> str | None:
    """The problem with one field's value (type, each number's range, length, month), or None."""
    if not _type_ok(value, hint):
        return f"{name} must be {_type_text(hint)}, got {value!r}"
    if value is None:
        return None
    if opt.kind == "month" and not calendar.is_month(value):
        return f"{name} must be a month written YYYY-MM, e.g. 2003-04; got {value!r}"
    if isinstance(value, (tuple, list)) and opt.length is not None and len(value) != opt.length:
        return f"{name} needs exactly {opt.length} values, got {len(value)}"
    if opt.low is None and opt.high is None or isinstance(value, str):
        return None
    if opt.kind == "pairs":  # each number named by its code
        numbers = [(f"{name} {code}", v) for code, v in value]
    elif isinstance(value, (tuple, list)):
        numbers = [(f"{name} (value {i + 1} of {', '.join(f'{x:g}' for x in value)})", v) for i, v in enumerate(value)]
    else:
        numbers = [(name, value)]
    for label, v in numbers:
        if not math.isfinite(float(v)):
            return f"{label} must be finite, got {v!r}"
        problem = number_problem(label, v, opt.low, opt.high, low_open=opt.low_open, high_open=opt.high_open)
        if problem:
            return problem
    return None


# ---------------------------------------------------------------------------------------------
# derived defaults
# ---------------------------------------------------------------------------------------------
def default_n_providers(n_practices: int) -> int:
    """Providers of a PCT: 4 for up to 200 practices, else round(P/40) (at least 4).

    Parameters
    ----------
    n_practices : int

    Returns
    -------
    int

    References
    ----------
    Not in DOMAIN.md: a plausible PCT structure (a PCT of 60 practices used about four trusts).
    """
    return 4 if n_practices <= 200 else max(4, round(n_practices / 40))


def default_n_under_referrers(n_practices: int) -> int:
    """Planted under-referrers: max(1, round(P/30)).

    Parameters
    ----------
    n_practices : int

    Returns
    -------
    int

    References
    ----------
    DOMAIN.md "Setting": a practice that under-refers should not be rewarded; a few per PCT.
    """
    return max(1, round(n_practices / 30))


def first_full_year_end(start_month: str) -> int:
    """The offset of the last month (March) of the first full April-to-March year of a window.

    Parameters
    ----------
    start_month : str
        ``YYYY-MM``.

    Returns
    -------
    int
        11 for an April start, 14 for January, 22 for May.
    """
    first_april = (calendar.FIRST_MONTH_OF_YEAR - int(start_month[5:7])) % 12
    return first_april + 11


def default_cohort_offsets(n_months: int, start_month: str, n_cohorts: int = 3) -> tuple[int, ...]:
    """Engagement cohorts derived from the window.

    round((24, 30, 36, ...) x M/60), one per cohort; if the first of them does not come after the first
    full financial year of the window (so the pipeline could derive no base year), all move later by the
    same number of months so that the first starts the month after that year ends, provided the last
    still lies inside the window.

    Parameters
    ----------
    n_months : int
        M, the months of the window.
    start_month : str
        The first month, ``YYYY-MM``.
    n_cohorts : int
        How many cohorts.

    Returns
    -------
    tuple of int
        Offsets from ``start_month``.

    References
    ----------
    DOMAIN.md "Setting" (staggered adoption) and "Spend identity" (changes measured from a year before any
    practice engaged).
    """
    scale = n_months / 60.0
    scaled = tuple(int(round((24 + 6 * i) * scale)) for i in range(n_cohorts))
    base_end = first_full_year_end(start_month)
    if not scaled or scaled[0] > base_end:
        return scaled
    shifted = tuple(o + base_end + 1 - scaled[0] for o in scaled)
    return shifted if shifted[-1] < n_months else scaled


def default_provider_cut_offset(n_months: int) -> int:
    """The follow-up cut starts at offset round(45 M/60).

    Parameters
    ----------
    n_months : int

    Returns
    -------
    int

    References
    ----------
    DOMAIN.md "The central dispute": a provider cuts follow-up appointments after practices engaged.
    """
    return int(round(45 * (n_months / 60.0)))  # (the order of operations fixes the rounding of ties)


def default_structural_change_offset(n_months: int, start_month: str) -> int:
    """The structural price change: the first April at or after round(48 M/60), else the last April, else -1.

    Parameters
    ----------
    n_months : int
    start_month : str

    Returns
    -------
    int
        An April's offset, -1 when the window has no April.

    References
    ----------
    DOMAIN.md "Setting": tariff prices change every April.
    """
    months = int(start_month[5:7]) - 1 + np.arange(n_months)
    aprils = np.flatnonzero(months % 12 == calendar.FIRST_MONTH_OF_YEAR - 1)
    target = int(round(48 * (n_months / 60.0)))
    later = aprils[aprils >= target]
    return int(later[0]) if later.size else (int(aprils[-1]) if aprils.size else -1)


def largest_remainder(total: int, fractions: np.ndarray, minimum: int = 1) -> np.ndarray:
    """Split ``total`` into whole groups in proportion to ``fractions`` (largest remainder), each >= ``minimum``.

    Parameters
    ----------
    total : int
    fractions : array of float
        Relative sizes (normalised here).
    minimum : int
        Members every group of positive fraction gets (taken from the largest groups) when possible.

    Returns
    -------
    numpy.ndarray of int
        Group sizes adding up to ``total``.

    References
    ----------
    Hamilton's (largest remainder) method of apportionment.
    """
    f = np.asarray(fractions, float) / np.sum(fractions)
    raw = total * f
    n = np.floor(raw).astype(np.int64)
    rest = total - int(n.sum())
    order = np.argsort(-(raw - n), kind="stable")
    n[order[:rest]] += 1
    for i in np.flatnonzero((n < minimum) & (f > 0)):  # an empty group (fraction 0) stays empty
        j = int(np.argmax(n))
        give = minimum - n[i]
        if n[j] - give >= minimum:
            n[j] -= give
            n[i] += give
    return n

# ---------------------------------------------------------------------------------------------
# rules between values
# ---------------------------------------------------------------------------------------------
def _months_text(offsets: tuple[int, ...] | list[int], start: str) -> str:
    """Offsets with their months: ``24 (2005-04), 30 (2005-10)``."""
    return ", ".join(f"{o} ({calendar.add_months(start, o)})" for o in offsets)


def _cross_problems(p: SynthParams, name: Callable[[str], str]) -> list[str]:
    """Rules between values: bounds, engagement cohorts, months inside the window, codes."""
    out = []
    for low, high, strict in (("list_min", "list_max", False), ("imd_min", "imd_max", True),
                              ("high_cost_threshold", "high_cost_cap", True)):
        lo, hi = getattr(p, low), getattr(p, high)
        if hi < lo or (strict and hi == lo):
            out.append(f"{name(high)} = {hi} must be {'above' if strict else 'at least'} {name(low)} = {lo}")
    if p.code_block is not None and (p.n_practices > PRACTICES_PER_BLOCK or p.providers() > PROVIDERS_PER_BLOCK):
        out.append(f"{name('code_block')} = {p.code_block} holds at most {PRACTICES_PER_BLOCK} practices and "
                   f"{PROVIDERS_PER_BLOCK} providers, got {p.n_practices} and {p.providers()}; give fewer or no "
                   f"{name('code_block')}")
    return out + _cohort_problems(p, name) + _month_problems(p, name) + _code_problems(p, name)


def _cohort_problems(p: SynthParams, name: Callable[[str], str]) -> list[str]:
    """Cohort shares adding up to 1, cohort months increasing inside the window, sizes and effects possible."""
    M, start, fr, never = p.n_months, p.start_month, tuple(p.cohort_fractions), p.never_engaged_fraction
    if not fr:
        return [f"{name('cohort_fractions')} needs at least one cohort's share"]
    total = sum(fr) + never
    if abs(total - 1.0) > 1e-6:
        hint = f" (e.g. {name('never_engaged_fraction')} {1 - sum(fr):.2f})" if 0 <= 1 - sum(fr) <= 1 else ""
        return [f"{name('cohort_fractions')} {', '.join(f'{f:g}' for f in fr)} and {name('never_engaged_fraction')} "
                f"{never:g} add up to {total:.4g}; they are shares of all practices and must add up to 1{hint}"]
    cohorts, out = p.cohorts(), []
    if len(cohorts) != len(fr):
        out.append(f"{name('cohort_offsets')} gives {len(cohorts)} cohorts and {name('cohort_fractions')} "
                   f"{len(fr)}; give one share per cohort")
    elif any(b <= a for a, b in zip(cohorts, cohorts[1:])) or cohorts[0] < 1 or cohorts[-1] >= M:
        fix = "" if p.cohort_offsets is not None else f" (derived from the window: give {name('cohort_offsets')})"
        out.append(f"{name('cohort_offsets')} {_months_text(cohorts, start)} must increase and lie inside the window "
                   f"after its first month: offsets 1 to {M - 1} ({calendar.add_months(start, 1)} to "
                   f"{calendar.add_months(start, M - 1)}){fix}")
    scales = tuple(p.cohort_effect_scale or ())
    if scales and len(scales) != len(fr):
        out.append(f"{name('cohort_effect_scale')} needs one value per cohort ({len(fr)}), got {len(scales)}")
    groups = len(fr) + (never > 0)
    if p.n_practices < groups:
        out.append(f"{name('n_practices')} = {p.n_practices} is fewer than the {groups} engagement groups (cohorts "
                   f"and never engaged); give at least {groups} practices")
    elif p.n_under_referrers is not None:
        engaged = int(largest_remainder(p.n_practices, np.array(list(fr) + [never]))[:-1].sum())
        if p.n_under_referrers > engaged:
            out.append(f"{name('n_under_referrers')} = {p.n_under_referrers} is more than the {engaged} engaged "
                       f"practices (under-referrers are engaged practices); give at most {engaged}")
    biggest = max((e for _, e in p.engagement_effects), default=0.0) * max(scales or (1.0,))
    if biggest >= 1:
        out.append(f"the largest engagement effect x {name('cohort_effect_scale')} is {biggest:g}, which would "
                   f"leave no referrals; keep {name('engagement_effects')} x scale below 1")
    return out


def _month_problems(p: SynthParams, name: Callable[[str], str]) -> list[str]:
    """The provider cut and the structural change inside the window; the incomplete tail shorter than it."""
    M, start, out = p.n_months, p.start_month, []
    inside = f"offsets 1 to {M - 1} ({calendar.add_months(start, 1)} to {calendar.add_months(start, M - 1)})"
    cut = p.provider_cut_offset
    if cut is not None and not 0 < cut < M:
        out.append(f"{name('provider_cut_offset')} {_months_text([cut], start)} must lie inside the window after "
                   f"its first month: {inside}")
    struct = p.structural_change_offset
    if struct is not None:
        aprils = [o for o in range(M) if calendar.add_months(start, o)[5:7] == "04"]
        if struct not in aprils:
            out.append(f"{name('structural_change_offset')} {_months_text([struct], start)} must be an April of the "
                       f"window (tariffs change in April): one of {_months_text(aprils, start) or 'none'}")
    if len(p.completeness) >= M:
        out.append(f"{name('completeness')} gives {len(p.completeness)} incomplete months, as many as the window "
                   f"has; give fewer than {M}")
    return out


def _code_problems(p: SynthParams, name: Callable[[str], str]) -> list[str]:
    """Engagement effects for the 12 specialties and structural changes for known points of delivery."""
    out = []
    for field, known, what in (("engagement_effects", [s[0] for s in SPECIALTIES], "specialty"),
                               ("structural_change", list(PODS), "point of delivery")):
        codes = [c for c, _ in getattr(p, field)]
        unknown = sorted(set(codes) - set(known))
        twice = sorted({c for c in codes if codes.count(c) > 1})
        missing = [c for c in known if c not in codes] if field == "engagement_effects" else []
        if unknown:
            out.append(f"{name(field)} names unknown {what} code(s) {', '.join(unknown)}; codes: {', '.join(known)}")
        if twice:
            out.append(f"{name(field)} gives {', '.join(twice)} more than once; give each {what} once")
        if missing and not unknown:
            out.append(f"{name(field)} must give one effect for each of {', '.join(known)}; missing {', '.join(missing)}")
    return out


def pipeline_warnings(p: SynthParams, label: Callable[[str], str] | None = None) -> list[str]:
    """What in a (valid) shape the analysis pipeline cannot use: the data are generated, but ``pbc run`` fails.

    Parameters
    ----------
    p : SynthParams
        Resolved parameters (:meth:`SynthParams.resolved`).
    label : callable, optional
        Field name -> the name to show (``pbc synth`` passes its flag).

    Returns
    -------
    list of str
        One message per problem, with the fix; empty when the pipeline can derive its settings.

    References
    ----------
    ``pbc_analysis.stages.attribution.params.base_year_rule`` (a full financial year before the first engagement)
    and ``MIN_CONTROLS`` (practices not yet engaged in the evaluation year).
    """
    name, out = label or (lambda n: n), []
    base_end, first = first_full_year_end(p.start_month), min(p.cohorts())
    if first <= base_end:
        out.append(f"no full April-to-March year ends before the first engagement "
                   f"({calendar.add_months(p.start_month, first)}), so `pbc run` cannot derive a base year: start "
                   f"the data earlier or give {name('cohort_offsets')} after {calendar.add_months(p.start_month, base_end)}")
    elif base_end + 12 >= p.n_months:
        out.append(f"the window has no full financial year after the base year, so `pbc run` has no evaluation year: "
                   f"give more {name('n_months')}")
    counts = largest_remainder(p.n_practices, np.array(list(p.cohort_fractions) + [p.never_engaged_fraction]))
    if counts[-1] < 2:
        out.append(f"{int(counts[-1])} practice(s) never engaged: the evaluation needs at least 2 as controls; raise "
                   f"{name('never_engaged_fraction')} or {name('n_practices')}")
    return out
