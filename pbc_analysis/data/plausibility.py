"""Plausibility checks: values that are valid numbers but not believable.

The data dictionary (:mod:`pbc_analysis.data`) checks types, ranges, keys and coverage. A cost of
GBP 3 million for one outpatient attendance, a practice whose list halves for one month or a count of
10^12 pass those checks and would silently distort every figure (or surface much later as an
unrelated plotting error). The rules here flag such values with the rows and the reason:

``unit_cost_vs_tariff``
    cost per unit (``cost / activity``) more than ``max_cost_ratio`` times the tariff price for the
    same specialty, point of delivery and financial year, or below ``1 / max_cost_ratio`` of it.
``unit_cost_ceiling``
    cost per unit above ``max_unit_cost`` GBP.
``activity_rate``
    activity per 1,000 registered patients per year, for a practice, point of delivery and financial
    year, outside the band ``activity_rate[pod]`` (low, high).
``population_change``
    a practice's total registered list changing by more than ``max_population_change`` (a share of
    the earlier month's list) between consecutive months.
``count_ceiling``
    any count (activity, referrals, registered) above ``max_count``.
``tariff_price_ceiling``, ``patient_cost_ceiling``, ``budget_ceiling``, ``reference_rate_ceiling``
    a tariff price above ``max_tariff_price``, a patient's annual hospital cost above
    ``max_patient_cost``, a practice budget above ``max_budget`` (GBP) and a reference rate above
    ``max_reference_rate`` (per 1,000 patients a year): with ``unit_cost_ceiling`` (activity cost) and
    the data dictionary's range of ``imd_score``, every money and rate column has a ceiling
    (:data:`COLUMN_CEILINGS`), so no finite but absurd amount (1e300) reaches a result.

Thresholds are :class:`PlausibilitySettings` with documented defaults, set in a run config's
``validation:`` section (:func:`parse_settings`). An implausible value stops the run unless its rule
is accepted explicitly (``accept: [rule, ...]``); accepted exceptions are listed in the summary that
:func:`validate_run_inputs` returns (and the report shows). See docs/data_dictionary.md,
"Plausibility checks".
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from pbc_analysis import data as _data
from pbc_analysis.core import names
from pbc_analysis.data.problems import KEEP_VALUES, SHOW_ROWS, DataValidationError, Problem
from pbc_analysis.data.window import Window

__all__ = [
    "COLUMN_CEILINGS",
    "DEFAULT_ACTIVITY_RATE",
    "RULES",
    "PlausibilitySettings",
    "check_plausibility",
    "parse_settings",
    "validate_inputs_for_cli",
    "validate_run_inputs",
]

#: the rules, with what each flags (also the ``reason`` of an accepted exception)
RULES: Mapping[str, str] = MappingProxyType({
    "unit_cost_vs_tariff": "cost per unit more than max_cost_ratio times, or less than 1/max_cost_ratio of, "
                           "the tariff price for the same specialty, pod and financial year",
    "unit_cost_ceiling": "cost per unit above max_unit_cost GBP",
    "activity_rate": "activity per 1,000 registered patients per year outside the plausible band for its pod",
    "population_change": "a practice's registered list changing by more than max_population_change "
                         "between consecutive months",
    "count_ceiling": "a count above max_count",
    "tariff_price_ceiling": "a tariff price per unit above max_tariff_price GBP",
    "patient_cost_ceiling": "a patient's annual hospital cost above max_patient_cost GBP",
    "budget_ceiling": "a practice's indicative budget above max_budget GBP",
    "reference_rate_ceiling": "a reference rate above max_reference_rate per 1,000 patients a year",
})

#: activity per 1,000 registered patients per year (a practice's whole list, all specialties), by point
#: of delivery: (low, high). England has about 96 million attended outpatient appointments (about a
#: third of them first attendances) and about 16 million finished admitted episodes a year for about
#: 60 million registered patients (NHS Digital HES, 2019-20), i.e. roughly 500 first and 1,100 follow-up
#: attendances, 150 elective and 100 non-elective admissions and 400 A&E attendances per 1,000 a year.
#: The bands allow about 10 times either way (wider below: a young practice has few admissions), so only
#: a unit or scaling error (activity in the wrong column, lists in hundreds, a year's activity on a
#: month, a missing extract) falls outside; a real outlier practice does not.
DEFAULT_ACTIVITY_RATE: Mapping[str, tuple[float, float]] = MappingProxyType({
    "first_op": (10.0, 5000.0),
    "followup_op": (10.0, 10000.0),
    "elective": (2.0, 1500.0),
    "non_elective": (2.0, 1000.0),
    "ae": (10.0, 4000.0),
})


@dataclasses.dataclass(frozen=True)
class PlausibilitySettings:
    """Thresholds of the plausibility rules (see :data:`RULES`) and the rules accepted by the user.

    Parameters
    ----------
    max_cost_ratio : float, default 20
        ``unit_cost_vs_tariff``: largest accepted ratio of cost per unit to the tariff price (and of
        the tariff price to the cost per unit). Must be > 1.
    max_unit_cost : float, default 250000
        ``unit_cost_ceiling``: largest accepted cost per unit, GBP (the costliest tariff spells, e.g.
        complex transplants, are below GBP 100,000).
    activity_rate : tuple of (str, float, float), default :data:`DEFAULT_ACTIVITY_RATE`
        ``activity_rate``: plausible band ``(pod, low, high)`` of activity per 1,000 registered
        patients per year, per point of delivery (:attr:`bands` gives them as a dict). In a config it
        is a mapping ``{pod: [low, high]}``; a pod not given keeps its default band.
    max_population_change : float, default 0.25
        ``population_change``: largest accepted change of a practice's total list between consecutive
        months, as a share of the earlier month (0.25 = 25%). List cleaning rarely moves a list by
        more than a few per cent; mergers and splits do, and should be accepted explicitly.
    max_count : int, default 10000000
        ``count_ceiling``: largest accepted count in one row (no practice has ten million patients,
        attendances or referrals in a month).
    max_tariff_price : float, default 250000
        ``tariff_price_ceiling``: largest accepted tariff price per unit, GBP (as ``max_unit_cost``: the
        costliest national tariff spells are below GBP 100,000).
    max_patient_cost : float, default 5000000
        ``patient_cost_ceiling``: largest accepted hospital cost of one patient in one financial year,
        GBP (``high_cost_patients.cost``). The costliest patients (long intensive care, transplants,
        haemophilia) cost a few hundred thousand to about GBP 1 million a year.
    max_budget : float, default 2000000000
        ``budget_ceiling``: largest accepted indicative budget of one practice for one year, GBP
        (``budgets.budget``). A very large practice (50,000 patients) at about GBP 1,500 a head of
        hospital spend needs about GBP 75 million.
    max_reference_rate : float, default 5000
        ``reference_rate_ceiling``: largest accepted reference rate, events per 1,000 registered
        patients a year (``reference_rates.rate``, per measure, specialty, age band and sex). Even
        the oldest age bands have well under 5 events a head a year in any one specialty and pod.
    accept : tuple of str, default ()
        Rules whose exceptions are accepted: they are reported, not raised.
    """

    max_cost_ratio: float = 20.0
    max_unit_cost: float = 250_000.0
    activity_rate: tuple[tuple[str, float, float], ...] = tuple(
        (pod, lo, hi) for pod, (lo, hi) in DEFAULT_ACTIVITY_RATE.items())
    max_population_change: float = 0.25
    max_count: int = 10_000_000
    max_tariff_price: float = 250_000.0
    max_patient_cost: float = 5_000_000.0
    max_budget: float = 2_000_000_000.0
    max_reference_rate: float = 5_000.0
    accept: tuple[str, ...] = ()

    @property
    def bands(self) -> dict[str, tuple[float, float]]:
        """``{pod: (low, high)}`` of :attr:`activity_rate`."""
        return {pod: (float(lo), float(hi)) for pod, lo, hi in self.activity_rate}

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-able plain values (for the run's results and manifest).

        Returns
        -------
        dict
            ``{"max_cost_ratio": ..., "activity_rate": {pod: [low, high]}, "accept": [...], ...}``.
        """
        return {
            "max_cost_ratio": float(self.max_cost_ratio),
            "max_unit_cost": float(self.max_unit_cost),
            "activity_rate": {pod: [lo, hi] for pod, (lo, hi) in self.bands.items()},
            "max_population_change": float(self.max_population_change),
            "max_count": int(self.max_count),
            "max_tariff_price": float(self.max_tariff_price),
            "max_patient_cost": float(self.max_patient_cost),
            "max_budget": float(self.max_budget),
            "max_reference_rate": float(self.max_reference_rate),
            "accept": list(self.accept),
        }


_NUMBER_KEYS: dict[str, str] = {
    "max_cost_ratio": "a number > 1",
    "max_unit_cost": "a number > 0",
    "max_population_change": "a number > 0",
    "max_count": "a whole number > 0",
    "max_tariff_price": "a number > 0",
    "max_patient_cost": "a number > 0",
    "max_budget": "a number > 0",
    "max_reference_rate": "a number > 0",
}
KEYS: tuple[str, ...] = (*_NUMBER_KEYS, "activity_rate", "accept")



def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))


def _number(where: str, key: str, value: Any, problems: list[str]) -> float | int | None:
    want = _NUMBER_KEYS[key]
    whole = key == "max_count"
    ok = _is_number(value) and (not whole or float(value).is_integer())
    if ok:
        ok = float(value) > (1 if key == "max_cost_ratio" else 0)
    if not ok:
        problems.append(f"{where}: validation.{key} must be {want}, got {type(value).__name__} {value!r}")
        return None
    return int(value) if whole else float(value)


def _bands(where: str, value: Any, problems: list[str]) -> dict[str, tuple[float, float]] | None:
    from pbc_analysis.data.schema import PODS

    if not isinstance(value, Mapping):
        problems.append(f"{where}: validation.activity_rate must be a mapping of point of delivery to "
                        f"[low, high] (per 1,000 patients a year), e.g. {{elective: [2, 1500]}}; "
                        f"got {type(value).__name__} {value!r}")
        return None
    out = dict(DEFAULT_ACTIVITY_RATE)
    n_before = len(problems)
    for pod, band in value.items():
        if pod not in PODS:
            problems.append(f"{where}: validation.activity_rate.{pod} is not a point of delivery"
                            f"{names.did_you_mean(str(pod), PODS)}; pods are {list(PODS)}")
            continue
        if not (isinstance(band, list) and len(band) == 2 and all(_is_number(b) for b in band)
                and 0 <= float(band[0]) < float(band[1])):
            problems.append(f"{where}: validation.activity_rate.{pod} must be [low, high] with 0 <= low < high "
                            f"(activity per 1,000 patients a year), got {band!r}")
            continue
        out[str(pod)] = (float(band[0]), float(band[1]))
    return out if len(problems) == n_before else None


def _accept(where: str, value: Any, problems: list[str]) -> tuple[str, ...] | None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        kinds: dict[type, str] = {dict: "mapping", list: "list"}
        shown = kinds.get(type(value), type(value).__name__)
        hint = f"; write it as a list: accept: [{value}]" if isinstance(value, str) else ""
        problems.append(f"{where}: validation.accept must be a list of rule names (of {list(RULES)}), "
                        f"got {shown} {value!r}{hint}")
        return None
    bad = [v for v in value if v not in RULES]
    for v in bad:
        problems.append(f"{where}: validation.accept names {v!r}, which is not a rule{names.did_you_mean(v, RULES)}; "
                        f"rules are {list(RULES)}")
    return None if bad else tuple(dict.fromkeys(value))


def parse_settings(raw: Mapping[str, Any] | None, where: str) -> tuple[PlausibilitySettings, list[str]]:
    """Parse a config's ``validation:`` section into :class:`PlausibilitySettings`; never raises.

    Parameters
    ----------
    raw : mapping or None
        The section as read from YAML, e.g. ``{"max_cost_ratio": 30, "accept": ["population_change"]}``.
        ``None`` (no section) gives the defaults.
    where : str
        Names the config in problem messages (e.g. its path).

    Returns
    -------
    settings : PlausibilitySettings
        The settings; a key with a problem keeps its default.
    problems : list of str
        Every problem found (unknown keys with a suggestion, wrong types or ranges, unknown pods or
        rule names), each naming ``where`` and the key; empty when the section is valid.
    """
    if raw is None:
        return PlausibilitySettings(), []
    if not isinstance(raw, Mapping):
        return PlausibilitySettings(), [(f"{where}: 'validation' must be a mapping with keys {list(KEYS)}, "
                                         f"got {type(raw).__name__} {raw!r}")]
    problems: list[str] = []
    values: dict[str, Any] = {}
    for key, value in raw.items():
        parsed: Any
        if key in _NUMBER_KEYS:
            parsed = _number(where, key, value, problems)
        elif key == "activity_rate":
            bands = _bands(where, value, problems)
            parsed = tuple((pod, lo, hi) for pod, (lo, hi) in bands.items()) if bands is not None else None
        elif key == "accept":
            parsed = _accept(where, value, problems)
        else:
            problems.append(f"{where}: unknown key validation.{key}{names.did_you_mean(str(key), KEYS)}; allowed: {list(KEYS)}")
            continue
        if parsed is not None:
            values[str(key)] = parsed
    return PlausibilitySettings(**values), problems


# --------------------------------------------------------------------------------------------------
# The rules (vectorised: bincounts and factorisations, no loops over rows)
# --------------------------------------------------------------------------------------------------

def _accept_fix(rule: str, setting: str) -> str:
    return (f"if the values are right, change {setting} in the config's validation: section, or accept the rule "
            f"explicitly (validation: {{accept: [{rule}]}}); accepted exceptions are listed in the report")


def _floats(ctx: Any, col: str) -> np.ndarray:
    """A numeric column as floats; NaN where missing or already reported as invalid (not judged twice)."""
    values = ctx.df[col].to_numpy(dtype=float, na_value=np.nan, copy=True)
    if col in ctx.invalid:
        values[np.asarray(ctx.invalid[col], dtype=bool)] = np.nan
    if col in ctx.excluded:
        values[np.asarray(ctx.excluded[col], dtype=np.int64)] = np.nan
    return values


def _money(x: float) -> str:
    return f"GBP {x:,.2f}" if abs(x) < 1e15 else f"GBP {x:.3g}"


def _rate(x: float) -> str:
    return (f"{x:,.1f}" if abs(x) < 1e15 else f"{x:.3g}") + " per 1,000 patients a year"


def _activity_rows(ctx: Any, positions: np.ndarray, extra: Mapping[str, np.ndarray]) -> list[Any]:
    """Sample values (practice, specialty, pod, month, activity, cost, extras...) of some rows."""
    pos = positions[:KEEP_VALUES]
    cols = [c for c in ("practice_code", "specialty_code", "pod", "month", "activity", "cost") if c in ctx.df]
    frame = ctx.df.iloc[pos][cols]
    rows = [tuple(r) for r in frame.itertuples(index=False, name=None)]
    return [r + tuple(round(float(v[i]), 2) for v in extra.values()) for r, i in zip(rows, pos)]


def _unit_costs(ctx: Any) -> tuple[np.ndarray, np.ndarray]:
    """Cost per unit of each activity row (NaN where activity is not > 0) and where it is defined."""
    act, cost = _floats(ctx, "activity"), _floats(ctx, "cost")
    ok = (act > 0) & np.isfinite(cost)
    unit = np.full(len(act), np.nan)
    np.divide(cost, act, out=unit, where=ok)
    return unit, ok


def _unit_cost_ceiling(ctxs: Mapping[str, Any], window: Window, s: PlausibilitySettings) -> list[Problem]:
    ctx = ctxs.get("activity")
    if ctx is None or not ctx.has("activity", "cost"):
        return []
    unit, ok = _unit_costs(ctx)
    pos = np.flatnonzero(ok & (unit > s.max_unit_cost))
    if not len(pos):
        return []
    return [ctx.problem(
        "cost", pos,
        f"{_data._n(len(pos), 'row')} {_data._have(len(pos))} a cost per unit (cost / activity) above the ceiling "
        f"of {_money(s.max_unit_cost)}, up to {_money(float(np.max(unit[pos])))} (values are (practice_code, "
        "specialty_code, pod, month, activity, cost, cost per unit))",
        "check the cost column's unit (pence instead of pounds?) and the activity count (a year's cost on one "
        "row?); " + _accept_fix("unit_cost_ceiling", "max_unit_cost"),
        "unit_cost_ceiling", values=_activity_rows(ctx, pos, {"unit": unit}))]


def _tariff_prices(ctx: Any, tariff: Any, rows: np.ndarray) -> np.ndarray:
    """The tariff price for the specialty, pod and financial year of each of ``rows`` (NaN if none)."""
    sc, su = ctx.factorize("specialty_code")
    pc_, pu = ctx.factorize("pod")
    fy = (ctx.month_index("month") - 3) // 12
    ok = (sc[rows] >= 0) & (pc_[rows] >= 0) & (ctx.month_index("month")[rows] >= 0)
    out = np.full(len(rows), np.nan)
    if not ok.any():
        return out
    r = rows[ok]
    fy0, n_fy = int(fy[r].min()), int(fy[r].max() - fy[r].min()) + 1
    code = (sc[r].astype(np.int64) * len(pu) + pc_[r]) * n_fy + (fy[r] - fy0)  # codes may be narrow (int8)
    uniq, inv = np.unique(code, return_inverse=True)
    start = uniq % n_fy + fy0
    want = pd.MultiIndex.from_arrays([
        pd.Index(su).astype(str)[uniq // n_fy // len(pu)], pd.Index(pu).astype(str)[uniq // n_fy % len(pu)],
        pd.Index([_data.financial_year_label(y) for y in start.tolist()])])
    t = tariff.df[["specialty_code", "pod", "financial_year", "price"]].dropna()
    t = t.drop_duplicates(["specialty_code", "pod", "financial_year"])
    key = pd.MultiIndex.from_frame(t[["specialty_code", "pod", "financial_year"]].astype(str))
    hit = key.get_indexer(want)
    price = np.where(hit >= 0, t["price"].to_numpy(dtype=float)[np.maximum(hit, 0)], np.nan)
    out[ok] = price[inv]
    return out


def _unit_cost_vs_tariff(ctxs: Mapping[str, Any], window: Window, s: PlausibilitySettings) -> list[Problem]:
    ctx, tariff = ctxs.get("activity"), ctxs.get("tariff")
    if ctx is None or tariff is None or not ctx.has("activity", "cost", "specialty_code", "pod", "month") \
            or not tariff.has("specialty_code", "pod", "financial_year", "price"):
        return []
    unit, ok = _unit_costs(ctx)
    rows = np.flatnonzero(ok)
    price = _tariff_prices(ctx, tariff, rows)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = unit[rows] / price
    bad = (price > 0) & ((ratio > s.max_cost_ratio) | (ratio < 1.0 / s.max_cost_ratio))
    pos = rows[bad]
    if not len(pos):
        return []
    r = ratio[bad]
    return [ctx.problem(
        "cost", pos,
        f"{_data._n(len(pos), 'row')} {_data._have(len(pos))} a cost per unit more than {s.max_cost_ratio:g} times, or "
        f"less than 1/{s.max_cost_ratio:g} of, the tariff price for the same specialty, pod and financial year "
        f"(cost per unit / price: {_span(r)}; values are (practice_code, "
        "specialty_code, pod, month, activity, cost, cost per unit, tariff price))",
        "check the cost column's unit (pence instead of pounds?), that activity counts units the tariff prices "
        f"(attendances or spells) and the prices in {Path(tariff.file).name or 'tariff'}; "
        + _accept_fix("unit_cost_vs_tariff", "max_cost_ratio"),
        "unit_cost_vs_tariff", values=_activity_rows(ctx, pos, {"unit": unit, "price": _at(price, rows, pos)}))]


def _span(x: np.ndarray) -> str:
    lo, hi = float(np.min(x)), float(np.max(x))
    return f"{lo:.3g}" if f"{lo:.3g}" == f"{hi:.3g}" else f"{lo:.3g} to {hi:.3g}"


def _at(values: np.ndarray, rows: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """``values`` (one per ``rows``) spread to a full-length array so that ``out[pos]`` works."""
    out = np.full(int(rows.max()) + 1 if len(rows) else 0, np.nan)
    out[rows] = values
    return out


def _practice_codes(ctx: Any, practices: pd.Index) -> np.ndarray:
    """Each row's practice as an index into ``practices`` (-1 if missing or invalid)."""
    codes, uniques = ctx.factorize("practice_code")
    idx = np.append(practices.get_indexer(pd.Index(uniques)), -1)
    return idx[codes]


def _window_months(ctx: Any, window: Window) -> np.ndarray:
    """Each row's month as 0-based index into the window (-1 if missing or outside)."""
    mi = ctx.month_index("month")
    ok = (mi >= window.start_index) & (mi <= window.end_index)
    return np.where(ok, mi - window.start_index, -1)


def _list_sizes(pop: Any, window: Window) -> tuple[pd.Index, np.ndarray]:
    """Practices of the population table and their total registered list per window month."""
    _, uniques = pop.factorize("practice_code")
    practices = pd.Index(uniques).astype(str)
    pp, m = _practice_codes(pop, practices), _window_months(pop, window)
    reg = _floats(pop, "registered")
    ok = (pp >= 0) & (m >= 0) & np.isfinite(reg)
    n_m = window.n_months
    total = np.bincount(pp[ok] * n_m + m[ok], weights=reg[ok], minlength=len(practices) * n_m)
    return practices, total.reshape(len(practices), n_m)


def _activity_rate(ctxs: Mapping[str, Any], window: Window, s: PlausibilitySettings) -> list[Problem]:
    ctx, pop = ctxs.get("activity"), ctxs.get("population")
    if ctx is None or pop is None or not ctx.has("practice_code", "pod", "month", "activity") \
            or not pop.has("practice_code", "month", "registered"):
        return []
    practices, lists = _list_sizes(pop, window)
    fy_of = (np.arange(window.start_index, window.end_index + 1) - 3) // 12
    fy0 = int(fy_of[0])
    fy_of = fy_of - fy0
    n_fy = int(fy_of[-1]) + 1
    years = np.zeros((len(practices), n_fy))
    np.add.at(years.T, fy_of, lists.T / 12.0)                   # patient-years per practice and year
    pods = [p for p in _data.PODS if p in s.bands]
    pod = _data._lookup(ctx, "pod", pods)
    pp, m = _practice_codes(ctx, practices), _window_months(ctx, window)
    act = _floats(ctx, "activity")
    ok = (pp >= 0) & (m >= 0) & (pod >= 0) & np.isfinite(act)
    fy = fy_of[np.maximum(m, 0)]
    code = (pp * len(pods) + pod) * n_fy + fy
    present_pod = np.bincount(pod[ok], minlength=len(pods)) > 0
    counts = np.bincount(code[ok], weights=act[ok], minlength=len(practices) * len(pods) * n_fy)
    counts = counts.reshape(len(practices), len(pods), n_fy)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = counts / years[:, None, :] * 1000.0
    lo = np.array([s.bands[p][0] for p in pods])[None, :, None]
    hi = np.array([s.bands[p][1] for p in pods])[None, :, None]
    judged = (years[:, None, :] > 0) & present_pod[None, :, None]
    bad = judged & ((rate < lo) | (rate > hi))
    if not bad.any():
        return []
    flat = np.flatnonzero(bad.ravel())
    positions = np.flatnonzero(ok & np.isin(code, flat))
    i_p, i_pod, i_fy = np.unravel_index(flat, bad.shape)
    labels = [(str(practices[a]), pods[b], _data.financial_year_label(c + fy0), round(float(rate[a, b, c]), 1))
              for a, b, c in zip(i_p[:KEEP_VALUES], i_pod[:KEEP_VALUES], i_fy[:KEEP_VALUES])]
    shown = ", ".join(f"{a} {b} {c}: {r:,} (band {s.bands[b][0]:g} to {s.bands[b][1]:,g})"
                      for a, b, c, r in labels[:SHOW_ROWS])
    return [ctx.problem(
        "activity", positions,
        f"{_data._n(len(flat), '(practice, pod, financial year)', '(practice, pod, financial year) combinations')} "
        f"{_data._have(len(flat))} activity per 1,000 registered patients a year outside the plausible band of its "
        f"pod ({_data._n(len(positions), 'row')}): {shown}" + (" ..." if len(flat) > SHOW_ROWS else ""),
        "check that activity counts attendances or admissions (not episodes, pence or a cumulative total), that "
        "population holds the practice's whole list, and that no month is missing or doubled; "
        + _accept_fix("activity_rate", "activity_rate.<pod>: [low, high]"),
        "activity_rate", values=labels)]


def _population_change(ctxs: Mapping[str, Any], window: Window, s: PlausibilitySettings) -> list[Problem]:
    pop = ctxs.get("population")
    if pop is None or not pop.has("practice_code", "month", "registered") or window.n_months < 2:
        return []
    practices, lists = _list_sizes(pop, window)
    before, after = lists[:, :-1], lists[:, 1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        change = (after - before) / before
    bad = (before > 0) & (after > 0) & (np.abs(change) > s.max_population_change)
    if not bad.any():
        return []
    i_p, i_m = np.nonzero(bad)
    n_m = window.n_months
    pp, m = _practice_codes(pop, practices), _window_months(pop, window)
    flagged = i_p * n_m + i_m + 1                               # the later month of each pair
    positions = np.flatnonzero((pp >= 0) & (m >= 0) & np.isin(pp * n_m + m, flagged))
    months = window.months
    labels = [(str(practices[a]), months[b], months[b + 1], int(before[a, b]), int(after[a, b]))
              for a, b in zip(i_p[:KEEP_VALUES], i_m[:KEEP_VALUES])]
    shown = ", ".join(f"{a} {b} to {c}: {d:,} -> {e:,} ({(e - d) / d:+.0%})" for a, b, c, d, e in labels[:SHOW_ROWS])
    return [pop.problem(
        "registered", positions,
        f"{_data._n(len(i_p), 'practice-month')} {_data._have(len(i_p))} a total registered list that changes by more "
        f"than {s.max_population_change:.0%} from the month before ({_data._n(len(positions), 'row')} of the later "
        f"months): {shown}" + (" ..." if len(i_p) > SHOW_ROWS else ""),
        "check the list sizes of these months (a missing or doubled extract, a practice code reused?); a real "
        "merger or split should be accepted; " + _accept_fix("population_change", "max_population_change"),
        "population_change", values=labels)]


def _count_ceiling(ctxs: Mapping[str, Any], window: Window, s: PlausibilitySettings) -> list[Problem]:
    problems: list[Problem] = []
    for ctx in ctxs.values():
        for col in ctx.spec.column_names:
            if ctx.spec.meta(col).get("kind") != "count" or not ctx.has(col):
                continue
            values = _floats(ctx, col)
            pos = np.flatnonzero(values > s.max_count)
            if len(pos):
                problems.append(ctx.problem(
                    col, pos,
                    f"{_data._n(len(pos), 'row')} {_data._have(len(pos))} a count above the ceiling of "
                    f"{s.max_count:,}, up to {float(values[pos].max()):,.0f}",
                    "a count this large is an error (a total row, a concatenated or mis-scaled number?): correct it; "
                    + _accept_fix("count_ceiling", "max_count"), "count_ceiling"))
    return problems


@dataclasses.dataclass(frozen=True)
class _Ceiling:
    """A ceiling on one money or rate column: ``column`` of ``table`` above ``settings.<setting>``."""

    table: str
    column: str
    setting: str
    what: str
    unit: str                       # "money" (GBP) or "rate" (per 1,000 patients a year)
    show: tuple[str, ...]           # the columns shown for each flagged row (never a patient identifier)
    fix: str


_CEILINGS: dict[str, _Ceiling] = {
    "tariff_price_ceiling": _Ceiling(
        "tariff", "price", "max_tariff_price", "a tariff price per unit", "money",
        ("specialty_code", "pod", "financial_year", "price"),
        "check the price column's unit (pence instead of pounds?) and that each row is the price of one "
        "attendance or spell, not a total"),
    "patient_cost_ceiling": _Ceiling(
        "high_cost_patients", "cost", "max_patient_cost", "a patient's annual hospital cost", "money",
        ("practice_code", "financial_year", "cost"),
        "check the cost column's unit (pence instead of pounds?) and that each row is one patient's cost in one "
        "financial year (not a practice's or the risk pool's total)"),
    "budget_ceiling": _Ceiling(
        "budgets", "budget", "max_budget", "an indicative budget", "money",
        ("practice_code", "financial_year", "budget"),
        "check the budget column's unit (pence instead of pounds?) and that each row is one practice's budget for "
        "one financial year (not a consortium's or the PCT's)"),
    "reference_rate_ceiling": _Ceiling(
        "reference_rates", "rate", "max_reference_rate", "a reference rate", "rate",
        ("measure", "specialty_code", "age_band", "sex", "rate"),
        "check that the rates are events per 1,000 registered patients a year (not per 100,000, not counts)"),
}

#: every money or rate column with a ceiling of its own: ``{rule: (table, column, setting)}``. The other
#: float columns are bounded elsewhere: ``activity.cost`` by ``unit_cost_ceiling`` (cost per unit; a cost
#: where activity is 0 must be 0) and ``practices.imd_score`` by the data dictionary's range 0 to 100.
COLUMN_CEILINGS: Mapping[str, tuple[str, str, str]] = MappingProxyType(
    {rule: (c.table, c.column, c.setting) for rule, c in _CEILINGS.items()})


def _ceiling_values(ctx: Any, cols: tuple[str, ...], pos: np.ndarray) -> list[tuple[Any, ...]]:
    frame = ctx.df.iloc[pos[:KEEP_VALUES]][[c for c in cols if c in ctx.df]]
    return [tuple(round(float(v), 2) if isinstance(v, float) else v for v in r)
            for r in frame.itertuples(index=False, name=None)]


def _column_ceiling(rule: str) -> Callable[[Mapping[str, Any], Window, PlausibilitySettings], list[Problem]]:
    """The rule function of a :data:`_CEILINGS` entry (vectorised: one comparison per column)."""
    c = _CEILINGS[rule]

    def check(ctxs: Mapping[str, Any], window: Window, s: PlausibilitySettings) -> list[Problem]:
        ctx = ctxs.get(c.table)
        if ctx is None or not ctx.has(c.column):
            return []
        limit = float(getattr(s, c.setting))
        values = _floats(ctx, c.column)
        pos = np.flatnonzero(values > limit)         # NaN (missing or already invalid) compares False
        if not len(pos):
            return []
        fmt = _money if c.unit == "money" else _rate
        shown = ", ".join(col for col in c.show if col in ctx.df)
        return [ctx.problem(
            c.column, pos,
            f"{_data._n(len(pos), 'row')} {_data._have(len(pos))} {c.what} above the ceiling of {fmt(limit)}, up to "
            f"{fmt(float(values[pos].max()))} (values are ({shown}))",
            f"{c.fix}; " + _accept_fix(rule, c.setting), rule, values=_ceiling_values(ctx, c.show, pos))]

    check.__name__ = f"_{rule}"
    return check


_RULE_FUNCTIONS: dict[str, Callable[[Mapping[str, Any], Window, PlausibilitySettings], list[Problem]]] = {
    "unit_cost_vs_tariff": _unit_cost_vs_tariff,
    "unit_cost_ceiling": _unit_cost_ceiling,
    "activity_rate": _activity_rate,
    "population_change": _population_change,
    "count_ceiling": _count_ceiling,
    **{rule: _column_ceiling(rule) for rule in _CEILINGS},
}


def check_plausibility(contexts: Mapping[str, Any], window: Window,
                       settings: PlausibilitySettings | None = None) -> list[Problem]:
    """Run every plausibility rule on tables read by :mod:`pbc_analysis.data`.

    Parameters
    ----------
    contexts : mapping of str to data._Ctx
        The tables under validation, as built by ``data._load_contexts`` (frames with their row
        numbering; cells already found invalid are skipped).
    window : data.Window
        The analysis window.
    settings : PlausibilitySettings, optional
        Thresholds (defaults when omitted). ``settings.accept`` is not applied here.

    Returns
    -------
    list of data.Problem
        One problem per rule (and table/column) with implausible values; ``Problem.check`` is the
        rule's name, ``rows`` the 1-based data rows, ``message`` the reason and ``fix`` what to do.
    """
    settings = settings or PlausibilitySettings()
    return [p for fn in _RULE_FUNCTIONS.values() for p in fn(contexts, window, settings)]


# --------------------------------------------------------------------------------------------------
# The run's input validation
# --------------------------------------------------------------------------------------------------

def _summary(ctxs: Mapping[str, Any], files: Mapping[str, Path], accepted: list[Problem],
             settings: PlausibilitySettings) -> dict[str, Any]:
    tables = [{"table": t, "file": files[t].name if t in files else None, "required": spec.required,
               "present": t in ctxs, "used": t in ctxs, "rows": int(ctxs[t].n) if t in ctxs else None}
              for t, spec in _data.TABLES.items()]
    exceptions = [{"rule": p.check, "table": p.table, "column": p.column, "rows": int(p.n_rows),
                   "reason": RULES[p.check]} for p in accepted]
    return {"tables": tables, "accepted_exceptions": exceptions, "settings": settings.to_dict()}


def _validate(data_dir: str | Path | None, start_month: str, end_month: str,
              settings: PlausibilitySettings | None) -> tuple[dict[str, Any], _data.Inputs, list[Problem]]:
    settings = settings or PlausibilitySettings()
    window = Window(str(start_month), str(end_month))
    ctxs, files, problems = _data._load_contexts(data_dir, window, None)
    implausible = check_plausibility(ctxs, window, settings)
    accepted = [p for p in implausible if p.check in settings.accept]
    refused = [p for p in implausible if p.check not in settings.accept]
    if problems or refused:
        raise DataValidationError(_data._in_table_order(problems) + _data._in_table_order(refused))
    return _summary(ctxs, files, accepted, settings), _data._inputs(ctxs, files, window), accepted


def validate_run_inputs(data_dir: str | Path | None, start_month: str, end_month: str,
                        settings: PlausibilitySettings | None = None) -> dict[str, Any]:
    """Load and validate a run's inputs: the data dictionary's rules and the plausibility rules.

    Parameters
    ----------
    data_dir : str or Path or None
        The data directory (relative paths from the project root; ``None``: the embedded sample).
    start_month, end_month : str
        The analysis window, ``YYYY-MM``.
    settings : PlausibilitySettings, optional
        Plausibility thresholds and accepted rules (a config's ``validation:`` section, see
        :func:`parse_settings`); defaults when omitted.

    Returns
    -------
    dict
        JSON-able summary: ``tables`` (per table of the data dictionary: ``table``, ``file`` (name
        only), ``required``, ``present``, ``used`` (read, validated and given to the analyses),
        ``rows``), ``accepted_exceptions`` (``rule``, ``table``, ``column``, ``rows``, ``reason``) and
        ``settings``. Row counts are exact: the runner applies the disclosure rule before the summary
        is written to a run's results (:func:`pbc_analysis.pipeline.run.validate_inputs`).

    Raises
    ------
    data.DataValidationError
        Listing every problem at once: every breach of the data dictionary, then every implausible
        value of a rule not in ``settings.accept``.
    ValueError
        If ``start_month`` or ``end_month`` is not a month ``YYYY-MM`` or the window is reversed.

    References
    ----------
    NHS Digital, "Disclosure control methodology for HES and ECDS" (2018), for the rounded counts.
    """
    summary, _, _ = _validate(data_dir, start_month, end_month, settings)
    return summary


def load_run_inputs(data_dir: str | Path | None, start_month: str, end_month: str,
                    settings: PlausibilitySettings | None = None) -> tuple[dict[str, Any], _data.Inputs]:
    """:func:`validate_run_inputs`, also returning the validated inputs (the runner derives settings from them).

    Parameters
    ----------
    data_dir, start_month, end_month, settings
        As for :func:`validate_run_inputs`.

    Returns
    -------
    summary : dict
        As :func:`validate_run_inputs` returns.
    inputs : data.Inputs
        The validated tables.

    Raises
    ------
    data.DataValidationError
        As :func:`validate_run_inputs`.
    """
    summary, inputs, _ = _validate(data_dir, start_month, end_month, settings)
    return summary, inputs


def validate_inputs_for_cli(data_dir: str | Path, start_month: str, end_month: str,
                            settings: PlausibilitySettings | None = None) -> tuple[_data.Inputs, list[Problem]]:
    """What ``pbc validate`` needs: the validated inputs and the accepted implausible values.

    Parameters
    ----------
    data_dir : str or Path
        The data directory.
    start_month, end_month : str
        The analysis window, ``YYYY-MM``.
    settings : PlausibilitySettings, optional
        Thresholds and accepted rules.

    Returns
    -------
    inputs : data.Inputs
        The validated tables.
    accepted : list of data.Problem
        The implausible values of accepted rules, with their rows (for the user, not for publishing).

    Raises
    ------
    data.DataValidationError
        As :func:`validate_run_inputs`.
    """
    _, inputs, accepted = _validate(data_dir, start_month, end_month, settings)
    return inputs, accepted
