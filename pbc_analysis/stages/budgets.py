"""Indicative budgets: historic budgets, fair shares, distance from target, pace of change, statements.

The Audit Commission (2007, *Putting commissioning into practice: implementing practice based
commissioning through good financial management*, paras 80-94 and case study 9) found that practices
did not understand how their indicative budgets were set, received them late and were not told their
fair share. Every number here is therefore built from a few explicit, tested rules, and
:func:`budget_statement` writes out, per practice, every input of its own budget.

Historic budget (:func:`historic_budgets`; DOMAIN.md "Budgets"; Audit Commission case study 9)
    For target year T with base years B = the ``base_years`` financial years before T (default two,
    which dampens year-to-year noise):

        spend_p   = mean_{y in B} ( 12 / months_y x sum_cells cost_at_T[p, cell, y] )
        budget_p  = spend_p x L_p(T) / mean_{m in B} L_p(m)

    ``cost_at_T`` re-costs each (specialty, point of delivery) cell of year y at T's national tariff:
    ``recost="price_index"`` (default) multiplies the cell's actual cost by ``price(T) / price(y)``, which
    keeps each provider's case-mix (HRG) factor; ``recost="tariff"`` uses ``activity x price(T)``.
    ``months_y`` is the number of months of y in the window (a part year is annualised). ``L`` is the
    registered list (``list_index="registered"``) or the age-sex weighted list (``"weighted"``, default:
    a list growing in its older patients needs more than one growing in its young); ``L(T)`` is the list
    at the first month of T (or the latest month in the data when T lies beyond it, which the statement
    names). This is the rule ``pbc synth`` uses to write ``budgets.csv`` (``ground_truth["budget_rule"]``:
    mean of the two previous years, new tariff x provider HRG factor, registered list ratio), applied to
    its expected rather than its observed activity. Months named in a ``completeness`` table (month,
    factor) are divided by their factor first, so the incomplete latest months of a data extract do not
    lower a budget.

Age-sex cost curves (:func:`cost_curves`)
    Cost per head by age band and sex for each component of spend (``planned``: first and follow-up
    outpatients and elective admissions; ``non_elective``; ``ae``), ``sum_k rate_k(a) / 1000 x
    price_k(T)`` over the measures k (point of delivery x specialty) of the ``reference_rates`` table
    (national HES age-sex rates in real use), as the Department of Health's weighted capitation formula
    builds its age-cost curves from national utilisation (DH, *Resource allocation: weighted capitation
    formula*, 6th edition 2008, the "Exposition Book", ch. 3-4). ``method="calibrated"`` (default) first
    scales each measure's rates by this PCT's observed / expected count in the base years (indirect
    standardisation), so the levels are the PCT's own; ``"reference"`` uses the rates as they are;
    ``"supplied"`` takes a table of curves; ``"none"`` weights every patient equally. Practice-level
    data cannot identify an age curve of their own (the 38 age-sex cells are nearly collinear across
    practices), so the age *shape* always comes from the reference rates or the supplied curves.
    Weights are normalised to mean 1 over the PCT's base-year population, so weighted and registered
    lists have the same PCT total.

Fair shares (:func:`fit_need_model`, :func:`fair_shares`)
    Per component c, a quasi-Poisson log-linear regression of each practice's base-year cost (at T's
    prices) with the age-sex weighted list as exposure,

        cost_pc ~ WL_pc x exp(a_c + sum_need beta_cj x_pj + sum_supply gamma_ck s_pk),

    (McCullagh and Nelder 1989; dispersion by Pearson chi-squared, as R's ``quasipoisson``). The
    ``formula`` ``"need terms | supply terms"`` names the covariates (:data:`TERMS`, or columns of a
    ``covariates`` table, e.g. disease prevalence, which the synthetic data do not carry). Supply terms
    (e.g. the providers' cost index) are in the regression so that they do not bias the need
    coefficients, and are held at the PCT average when predicting need, as in the DH formula (and PBRA,
    Dixon et al. 2011, BMJ 342:d930); a constant factor cancels in the shares, so the need of practice p
    is ``N_pc = WL_pc(T) x exp(sum_need beta_cj x_pj)``. The target share is

        t_p = sum_c w_c N_pc / sum_p N_pc,   w_c = the component's share of base-year PCT cost,

    and the fair share is ``t_p x envelope``. Actual use plays no part in t_p beyond the PCT-wide
    coefficients. The fit is reported as R squared of cost per registered patient at practice level
    (list-weighted; with supply terms at their actual values, and for the need-only prediction) and
    the share of practices whose need-only prediction is more than 10% from their actual cost
    (PBRA: R squared 0.74-0.79, about a third of practices beyond 10%; DOMAIN.md).

Distance from target and pace of change (:func:`glide_path`)
    distance = (historic - fair share) / fair share, with historic budgets scaled to the envelope. The
    glide path works on shares s (budget / envelope, summing to 1) for ``years`` years. Each year a
    practice outside the band ``[t (1 - band), t (1 + band)]`` wants to close an equal part of its gap
    to the nearer band edge, ``(edge - s) / years_left``, capped at ``cap x s`` (the change of share in a
    year; in a flat envelope, of budget). Gains and losses must balance: the smaller side is topped up,
    with ``fund_from="above_target"`` (default), from practices above target (or, for spare losses, to
    practices below target) in proportion to their room, never past their target nor beyond their cap;
    if that is not enough (or ``fund_from="outside_band"``), the larger side is scaled down. So no cap is
    ever exceeded, no practice overshoots its target, and shares always sum to 1. Budgets are the
    envelope (``x (1 + envelope_growth)`` a year) times the shares, in pence by largest-remainder
    rounding (:func:`allocate_pence`), so they always add up to the envelope exactly. This follows the
    DH's pace-of-change policy for PCT allocations (distance from target, capped moves towards it)
    and the practice-level bands of 10% (national guidance) or a local 5% (Audit Commission case
    study 9, North East Lincolnshire PCT).

Everything is vectorised numpy/pandas: the only Python loops run over components, years of the glide
path or formula terms, never over practices or rows.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from pbc_analysis import data as _data

__all__ = [
    "BudgetResult",
    "COMPONENTS",
    "CURVE_METHODS",
    "RECOST_METHODS",
    "LIST_INDEX",
    "FUND_FROM",
    "TERMS",
    "allocate_pence",
    "annual_costs",
    "base_years_for",
    "budget_statement",
    "compare_with_provided",
    "cost_curves",
    "describe",
    "fair_shares",
    "financial_year_of",
    "fit_need_model",
    "fy_months",
    "glide_path",
    "headline",
    "historic_budgets",
    "list_index",
    "model_fit",
    "parse_formula",
    "practice_cells",
    "practice_covariates",
    "practice_lists",
    "project_tariff",
    "recost",
    "result_tables",
    "set_budgets",
    "shift_year",
    "weighted_lists",
    "winners_and_losers",
]

#: components of hospital spend and their points of delivery
COMPONENTS: dict[str, tuple[str, ...]] = {
    "planned": ("first_op", "followup_op", "elective"),
    "non_elective": ("non_elective",),
    "ae": ("ae",),
}
COMPONENT_SETS = ("pod_group", "total")
CURVE_METHODS = ("calibrated", "reference", "supplied", "none")
RECOST_METHODS = ("price_index", "tariff")
LIST_INDEX = ("weighted", "registered")
FUND_FROM = ("above_target", "outside_band")
#: built-in formula terms (practice-level covariates) and what they are
TERMS: dict[str, str] = {
    "deprivation": "IMD score standardised over the PCT's practices (mean 0, SD 1)",
    "single_handed": "1 for a single-handed practice (GP supply)",
    "log_list_size": "log of the mean registered list in the base years, centred (practice scale)",
    "provider_cost_index": "log of the practice's actual cost / (activity x national tariff) in the base years, "
                           "centred: the case-mix (HRG) and price level of the providers it uses (supply)",
    "follow_up_ratio": "log of follow-up / first outpatient attendances in the base years, centred (provider "
                       "behaviour: supply)",
    "engaged": "share of base-year months the practice was engaged in PBC (practice action)",
}
N_CELLS = len(_data.AGE_BANDS) * len(_data.SEXES)
FY_RE = re.compile(r"^([0-9]{4})/([0-9]{2})$")


# --------------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------------

def _check_fy(value: Any, name: str) -> str:
    m = FY_RE.fullmatch(value) if isinstance(value, str) else None
    if not m or (int(m.group(1)) + 1) % 100 != int(m.group(2)):
        raise ValueError(f"{name} must be a financial year 'YYYY/YY' such as '2007/08', got {value!r}")
    return value


def _choice(value: Any, name: str, options: Sequence[str]) -> str:
    if value not in options:
        close = difflib.get_close_matches(str(value), list(options), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"{name} must be one of {', '.join(repr(o) for o in options)}, got {value!r}{hint}")
    return value


def _number(value: Any, name: str, low: float | None = None, high: float | None = None, low_open: bool = False,
            high_open: bool = False, fix: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}{'; ' + fix if fix else ''}")
    v = float(value)
    bad_low = low is not None and (v <= low if low_open else v < low)
    bad_high = high is not None and (v >= high if high_open else v > high)
    if bad_low or bad_high:
        lo = "" if low is None else (f"> {low:g}" if low_open else f">= {low:g}")
        hi = "" if high is None else (f"< {high:g}" if high_open else f"<= {high:g}")
        rng = " and ".join(x for x in (lo, hi) if x)
        raise ValueError(f"{name} must be {rng}, got {value!r}{'; ' + fix if fix else ''}")
    return v


def shift_year(fy: str, k: int) -> str:
    """The financial year ``k`` years after ``fy`` (``shift_year("2007/08", 1) == "2008/09"``)."""
    y = int(_check_fy(fy, "financial year")[:4]) + int(k)
    return f"{y:04d}/{(y + 1) % 100:02d}"


def fy_months(fy: str) -> list[str]:
    """The twelve months ``YYYY-MM`` of a financial year, April first."""
    y = int(_check_fy(fy, "financial year")[:4])
    return [f"{y + (m < 4):04d}-{m:02d}" for m in (4, 5, 6, 7, 8, 9, 10, 11, 12, 1, 2, 3)]


def financial_year_of(months: Sequence[str] | pd.Series | np.ndarray) -> np.ndarray:
    """Financial year ``YYYY/YY`` (April to March) of ``YYYY-MM`` month strings (vectorised on the distinct months)."""
    inv, uniq = pd.factorize(pd.Series(months, dtype="str"))
    y = np.array([int(u[:4]) for u in uniq], dtype=int)  # distinct months only
    mo = np.array([int(u[5:7]) for u in uniq], dtype=int)
    start = np.where(mo >= 4, y, y - 1)
    lab = np.array([f"{a:04d}/{(a + 1) % 100:02d}" for a in start], dtype=object)
    return lab[inv] if len(uniq) else np.array([], dtype=object)


def base_years_for(target_year: str, available: Sequence[str], n: int = 2) -> list[str]:
    """The ``n`` financial years before ``target_year`` (oldest first); all must be in ``available``."""
    _check_fy(target_year, "target_year")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"base_years must be a whole number of years >= 1, got {n!r}")
    years = [shift_year(target_year, -k) for k in range(int(n), 0, -1)]
    missing = [y for y in years if y not in set(available)]
    if missing:
        raise ValueError(f"target_year {target_year!r} with base_years={n} needs activity in {', '.join(years)}, but "
                         f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not in the data (it has "
                         f"{', '.join(sorted(available))}); choose a later target_year or fewer base_years")
    return years


def allocate_pence(shares: np.ndarray | Sequence[float], total: float) -> np.ndarray:
    """Split ``total`` (GBP) in proportion to ``shares`` into whole pence that add up to it exactly.

    Largest-remainder (Hamilton) rounding: every part gets the floor of its exact amount in pence, and
    the pence left over go one each to the parts with the largest fractional remainders (ties to the
    earlier part). Returns int64 pence; divide by 100 for pounds.
    """
    s = np.asarray(shares, dtype=float)
    if s.ndim != 1 or len(s) == 0:
        raise ValueError("shares must be a non-empty 1-d array")
    if not np.all(np.isfinite(s)) or (s < 0).any() or s.sum() <= 0:
        raise ValueError("shares must be finite, non-negative and not all zero")
    total_p = int(round(_number(total, "total", 0.0) * 100))
    raw = s / s.sum() * total_p
    base = np.floor(raw).astype(np.int64)
    rest = total_p - int(base.sum())
    order = np.argsort(-(raw - base), kind="stable")
    base[order[:rest]] += 1
    return base


# --------------------------------------------------------------------------------------------------
# activity and cost at the target year's prices
# --------------------------------------------------------------------------------------------------

def _factor_map(completeness: pd.DataFrame | None) -> dict[str, float]:
    if completeness is None or len(completeness) == 0:
        return {}
    miss = [c for c in ("month", "factor") if c not in completeness.columns]
    if miss:
        raise ValueError(f"completeness must have columns month and factor; it lacks {miss}")
    f = completeness["factor"].to_numpy(dtype=float)
    if not np.all(np.isfinite(f)) or (f <= 0).any() or (f > 1).any():
        raise ValueError(f"completeness factors must be in (0, 1], got {sorted(set(f.round(4).tolist()))}")
    if completeness["month"].duplicated().any():
        raise ValueError("completeness has a month more than once")
    return dict(zip(completeness["month"].astype(str), f))


def practice_cells(activity: pd.DataFrame, completeness: pd.DataFrame | None = None) -> pd.DataFrame:
    """Activity and cost by practice, specialty, point of delivery and month (providers summed).

    Returns ``practice_code, specialty_code, pod, month, financial_year, activity, cost, factor,
    activity_adjusted, cost_adjusted`` where ``factor`` is the month's completeness factor (1 for months
    not named in ``completeness``) and the adjusted columns are divided by it; the recorded activity and
    cost are kept.
    """
    keys = ["practice_code", "specialty_code", "pod", "month"]
    # integer codes per key column (sorted uniques), one composite key, sums by bincount
    codes, uniques = zip(*(pd.factorize(activity[c].astype("str"), sort=True) for c in keys))
    sizes = [len(u) for u in uniques]
    flat = np.zeros(len(activity), np.int64)
    for c, n in zip(codes, sizes):
        flat = flat * n + c
    key, inv = np.unique(flat, return_inverse=True)
    g = pd.DataFrame(index=np.arange(len(key)))
    rest = key
    parts = []
    for n in sizes[::-1]:
        parts.append(rest % n)
        rest = rest // n
    for c, u, part in zip(keys, uniques, parts[::-1]):
        g[c] = pd.Series(np.asarray(u, dtype=object)[part], dtype="str")
    g["activity"] = np.bincount(inv, weights=activity["activity"].to_numpy(float), minlength=len(key)).astype(np.int64)
    g["cost"] = np.bincount(inv, weights=activity["cost"].to_numpy(float), minlength=len(key))
    g.insert(4, "financial_year", financial_year_of(g["month"]))
    fmap = _factor_map(completeness)
    # months not named in the completeness table are complete (factor 1); nothing else is filled in
    g["factor"] = g["month"].map(fmap).astype(float).fillna(1.0) if fmap else 1.0
    g["activity_adjusted"] = g["activity"] / g["factor"]
    g["cost_adjusted"] = g["cost"] / g["factor"]
    return g


def project_tariff(tariff: pd.DataFrame, target_year: str, uplift: float) -> pd.DataFrame:
    """Add prices for ``target_year`` = the latest earlier year's price x (1 + uplift), rounded to pence.

    For a target year whose national tariff is not yet in the data. Raises if the year already has prices
    (nothing is overwritten).
    """
    _check_fy(target_year, "target_year")
    u = _number(uplift, "tariff_uplift", -0.5, 0.5, fix="pass a yearly uplift such as 0.025")
    if (tariff["financial_year"] == target_year).any():
        raise ValueError(f"tariff already has prices for {target_year}; leave tariff_uplift as None")
    earlier = tariff[tariff["financial_year"] < target_year]
    if earlier.empty:
        raise ValueError(f"tariff has no year before {target_year} to project from")
    last = earlier.sort_values("financial_year").groupby(["specialty_code", "pod"], sort=True).tail(1)
    new = last.assign(financial_year=target_year, price=np.round(last["price"].to_numpy(float) * (1 + u), 2))
    return pd.concat([tariff, new], ignore_index=True)


def recost(cells: pd.DataFrame, tariff: pd.DataFrame, target_year: str, method: str = "price_index",
           cost: str = "cost_adjusted") -> pd.DataFrame:
    """Add ``price`` (the cell's own year), ``target_price`` and ``cost_at_target`` to ``cells``.

    ``method="price_index"``: ``cost_at_target = cost x target_price / price`` (keeps the provider's
    case-mix factor); ``"tariff"``: ``activity x target_price`` (national prices; ``activity_adjusted``
    when ``cost="cost_adjusted"``). A cell with activity but no target-year price is an error naming the
    cells.
    """
    _check_fy(target_year, "target_year")
    _choice(method, "recost", RECOST_METHODS)
    t = tariff[["specialty_code", "pod", "financial_year", "price"]].astype(
        {"specialty_code": "str", "pod": "str", "financial_year": "str"})
    out = cells.merge(t, on=["specialty_code", "pod", "financial_year"], how="left", validate="many_to_one")
    tt = t.loc[t["financial_year"] == target_year, ["specialty_code", "pod", "price"]].rename(
        columns={"price": "target_price"})
    out = out.merge(tt, on=["specialty_code", "pod"], how="left", validate="many_to_one")
    act = out["activity"].to_numpy(float)
    need = (act > 0) & out["target_price"].isna().to_numpy()
    if need.any():
        cells_missing = out.loc[need, ["specialty_code", "pod"]].drop_duplicates()
        years = sorted(t["financial_year"].unique())
        raise ValueError(
            f"target_year {target_year!r}: the tariff has no price for {len(cells_missing)} specialty/pod cells with "
            f"activity (e.g. {', '.join((cells_missing['specialty_code'] + '/' + cells_missing['pod']).head(3))}); "
            f"the tariff covers {', '.join(years)}. Add {target_year}'s national tariff to tariff.csv, or pass "
            "tariff_uplift to project the latest year's prices")
    c = out[cost].to_numpy(float)
    price = out["price"].to_numpy(float)
    tp = out["target_price"].to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        if method == "price_index":
            val = np.where(c > 0, c * tp / price, 0.0)
        else:
            a = out["activity_adjusted"].to_numpy(float) if (cost == "cost_adjusted" and "activity_adjusted"
                                                              in out.columns) else act
            val = np.where(act > 0, a * tp, 0.0)
    out["cost_at_target"] = val
    return out


def annual_costs(cells: pd.DataFrame, years: Sequence[str], window_months: Sequence[str],
                 components: str = "pod_group") -> pd.DataFrame:
    """Per practice, component and financial year in ``years``: ``months`` in the window, ``activity``,
    ``cost`` (recorded), ``cost_adjusted`` and ``cost_at_target`` summed, and ``annual_at_target``
    (``cost_at_target x 12 / months``). ``cells`` come from :func:`recost`; ``components`` is
    ``"pod_group"`` (:data:`COMPONENTS`) or ``"total"`` (one component, ``all``)."""
    _choice(components, "components", COMPONENT_SETS)
    fy_of_window = pd.Series(financial_year_of(list(window_months))).value_counts()
    comp_of = {p: (c if components == "pod_group" else "all") for c, pods in COMPONENTS.items() for p in pods}
    sub = cells[cells["financial_year"].isin(list(years))].assign(component=lambda d: d["pod"].map(comp_of))
    g = sub.groupby(["practice_code", "component", "financial_year"], observed=True, sort=True)[
        ["activity", "cost", "cost_adjusted", "cost_at_target"]].sum().reset_index()
    g["months"] = g["financial_year"].map(fy_of_window).astype("int64")
    g["annual_at_target"] = g["cost_at_target"] * 12.0 / g["months"]
    return g


# --------------------------------------------------------------------------------------------------
# lists, age-sex cost curves, weighted lists
# --------------------------------------------------------------------------------------------------

def _cell_index(population: pd.DataFrame) -> np.ndarray:
    band = pd.Categorical(population["age_band"].astype(str), categories=list(_data.AGE_BANDS)).codes
    sex = pd.Categorical(population["sex"].astype(str), categories=list(_data.SEXES)).codes
    if (band < 0).any() or (sex < 0).any():
        raise ValueError("population has age bands or sexes outside the data dictionary's")
    return band.astype(np.int64) * 2 + sex.astype(np.int64)


def cost_curves(reference_rates: pd.DataFrame | None, tariff: pd.DataFrame, target_year: str,
                method: str = "calibrated", observed: pd.DataFrame | None = None,
                population: pd.DataFrame | None = None, supplied: pd.DataFrame | None = None) -> pd.DataFrame:
    """Age-sex cost curves per component: ``component, age_band, sex, cost_per_head, weight``.

    Components are those of :data:`COMPONENTS` and ``all`` (their costs per head summed).

    ``cost_per_head`` (GBP a year) = ``sum_k f_k rate_k(a) / 1000 x price_k(target_year)`` over the
    point-of-delivery measures k of the component (reference rates per 1,000 a year); ``f_k`` = 1 for
    ``method="reference"``, and for ``"calibrated"`` the PCT's observed count of k in the base years
    (``observed``: ``pod, specialty_code, activity`` summed) over the count the reference rates predict
    for its population (``population``: ``age_band, sex, person_years``). ``weight`` = cost_per_head
    over its mean across ``population`` (so the PCT's weighted list equals its registered list; with
    ``population`` None the plain mean over cells is used). ``"supplied"`` takes ``supplied``
    (``component, age_band, sex, cost_per_head``, all 38 cells of every component); ``"none"`` gives
    weight 1 everywhere.
    """
    _check_fy(target_year, "target_year")
    _choice(method, "curves", CURVE_METHODS)
    bands = np.repeat(np.array(_data.AGE_BANDS), 2)
    sexes = np.tile(np.array(_data.SEXES), len(_data.AGE_BANDS))
    comps = list(COMPONENTS)
    if method == "none":
        cph = np.ones((len(comps), N_CELLS))
    elif method == "supplied":
        if supplied is None:
            raise ValueError("curves='supplied' needs a supplied table (component, age_band, sex, cost_per_head)")
        miss = [c for c in ("component", "age_band", "sex", "cost_per_head") if c not in supplied.columns]
        if miss:
            raise ValueError(f"supplied curves lack columns {miss}")
        supplied = supplied[supplied["component"] != "all"]  # recomputed from the components
        bad = sorted(set(supplied["component"]) - set(comps))
        if bad:
            raise ValueError(f"supplied curves name unknown components {bad}; components are {comps}")
        cph = np.full((len(comps), N_CELLS), np.nan)
        ci = pd.Index(comps).get_indexer(supplied["component"])
        cph[ci, _cell_index(supplied)] = supplied["cost_per_head"].to_numpy(float)
        if np.isnan(cph).any() or (cph < 0).any():
            raise ValueError("supplied curves need a non-negative cost_per_head for all 38 age-sex cells of every "
                             f"component ({', '.join(comps)})")
    else:
        if reference_rates is None or len(reference_rates) == 0:
            raise ValueError(f"curves={method!r} needs the reference_rates table (docs/data_dictionary.md); add it, "
                             "pass curves='supplied' with your own curves, or curves='none' (registered lists only)")
        rr = reference_rates[reference_rates["measure"].isin(_data.PODS)]
        t = tariff.loc[tariff["financial_year"] == target_year, ["specialty_code", "pod", "price"]]
        rr = rr.merge(t, left_on=["specialty_code", "measure"], right_on=["specialty_code", "pod"], how="left")
        if rr["price"].isna().any():
            raise ValueError(f"the tariff has no {target_year} price for some reference-rate measures "
                             f"({rr.loc[rr['price'].isna(), 'measure'].unique().tolist()}); add the prices or "
                             "pass tariff_uplift")
        f = np.ones(len(rr))
        if method == "calibrated":
            if observed is None or population is None:
                raise ValueError("curves='calibrated' needs the observed base-year activity and population")
            cell = _cell_index(rr)
            py = np.zeros(N_CELLS)
            np.add.at(py, _cell_index(population), population["person_years"].to_numpy(float))
            exp_k = (rr.assign(e=rr["rate"].to_numpy(float) / 1000 * py[cell])
                     .groupby(["measure", "specialty_code"], sort=True)["e"].sum())
            obs_k = observed.groupby(["pod", "specialty_code"], sort=True)["activity"].sum()
            obs_k.index = obs_k.index.set_names(["measure", "specialty_code"])
            ratio = (obs_k.reindex(exp_k.index).fillna(0.0) / exp_k.where(exp_k > 0)).fillna(1.0)
            f = ratio.reindex(pd.MultiIndex.from_frame(rr[["measure", "specialty_code"]])).to_numpy(float)
        comp_of = {p: c for c, pods in COMPONENTS.items() for p in pods}
        ci = pd.Index(comps).get_indexer(rr["measure"].map(comp_of))
        cph = np.zeros((len(comps), N_CELLS))
        np.add.at(cph, (ci, _cell_index(rr)), f * rr["rate"].to_numpy(float) / 1000 * rr["price"].to_numpy(float))
    if population is not None and len(population):
        py = np.zeros(N_CELLS)
        np.add.at(py, _cell_index(population), population["person_years"].to_numpy(float))
        mean = (cph * py).sum(axis=1) / py.sum()
    else:
        mean = cph.mean(axis=1)
    # all spend: the components' costs per head summed
    cph = np.vstack([cph, cph.sum(axis=0, keepdims=True)])
    mean = np.append(mean, mean.sum())
    comps = comps + ["all"]
    weight = cph / np.where(mean > 0, mean, 1.0)[:, None]
    return pd.DataFrame({"component": np.repeat(comps, N_CELLS), "age_band": np.tile(bands, len(comps)),
                         "sex": np.tile(sexes, len(comps)), "cost_per_head": cph.ravel(), "weight": weight.ravel()})


def practice_lists(population: pd.DataFrame, curves: pd.DataFrame | None = None) -> pd.DataFrame:
    """Registered list per practice and month and, with ``curves`` (:func:`cost_curves`), the age-sex
    weighted list of every component (``weighted_<component>``; ``weighted_list`` is the one of all
    spend, ``weighted_all``)."""
    pc, practices = pd.factorize(population["practice_code"].astype(str), sort=True)
    mc, months = pd.factorize(population["month"].astype(str), sort=True)
    P, M = len(practices), len(months)
    reg = population["registered"].to_numpy(float)
    flat = pc.astype(np.int64) * M + mc
    out = pd.DataFrame({"practice_code": np.repeat(np.asarray(practices, dtype=str), M),
                        "month": np.tile(np.asarray(months, dtype=str), P),
                        "registered": np.bincount(flat, weights=reg, minlength=P * M)})
    if curves is not None:
        cell = _cell_index(population)
        comps = list(dict.fromkeys(curves["component"]))
        W = np.zeros((len(comps), N_CELLS))
        W[pd.Index(comps).get_indexer(curves["component"]), _cell_index(curves)] = curves["weight"].to_numpy(float)
        for k, comp in enumerate(comps):  # a handful of components
            out[f"weighted_{comp}"] = np.bincount(flat, weights=reg * W[k, cell], minlength=P * M)
        if "weighted_all" in out.columns:
            out["weighted_list"] = out["weighted_all"]
    return out


def list_index(lists: pd.DataFrame, target_year: str, base_years: Sequence[str], value: str = "weighted_list") -> pd.DataFrame:
    """Per practice: ``list_month`` (first month of ``target_year``, or the latest month in ``lists`` if the
    year is beyond them), ``list_target`` (``value`` in that month), ``list_base`` (mean of ``value`` over
    the base years' months) and ``list_index = list_target / list_base``."""
    months = sorted(lists["month"].unique())
    first = fy_months(target_year)[0]
    list_month = first if first in set(months) else months[-1]
    fy = financial_year_of(lists["month"])
    base = lists[np.isin(fy, list(base_years))].groupby("practice_code", sort=True)[value].mean()
    tgt = lists[lists["month"] == list_month].set_index("practice_code")[value]
    out = pd.DataFrame({"practice_code": base.index.astype(str), "list_month": list_month,
                        "list_base": base.to_numpy(float), "list_target": tgt.reindex(base.index).to_numpy(float)})
    out["list_index"] = out["list_target"] / out["list_base"]
    return out


def weighted_lists(lists: pd.DataFrame, months: Sequence[str]) -> pd.DataFrame:
    """Mean of the registered and weighted lists over ``months``, one row per practice."""
    cols = [c for c in lists.columns if c == "registered" or c.startswith("weighted_")]
    sub = lists[lists["month"].isin(list(months))]
    return sub.groupby("practice_code", sort=True)[cols].mean().reset_index()


# --------------------------------------------------------------------------------------------------
# historic budgets
# --------------------------------------------------------------------------------------------------

def historic_budgets(annual: pd.DataFrame, index: pd.DataFrame, base_years: Sequence[str], target_year: str) -> pd.DataFrame:
    """Historic budget per practice: mean over ``base_years`` of the annualised cost at the target year's
    prices (``annual`` from :func:`annual_costs`, components summed) x the list index (:func:`list_index`).

    Returns ``practice_code, financial_year, historic_spend, list_month, list_base, list_target,
    list_index, historic_budget`` (and ``historic_budget_registered`` with the registered-list index when
    ``index`` carries ``list_index_registered``). A practice without activity in one base year counts 0.
    """
    sub = annual[annual["financial_year"].isin(list(base_years))]
    per_year = sub.pivot_table(index="practice_code", columns="financial_year", values="annual_at_target",
                               aggfunc="sum", fill_value=0.0).reindex(columns=list(base_years), fill_value=0.0)
    spend = per_year.mean(axis=1)
    out = index.set_index("practice_code").reindex(spend.index).reset_index()
    out.insert(1, "financial_year", target_year)
    out.insert(2, "historic_spend", spend.to_numpy(float))
    out["historic_budget"] = out["historic_spend"] * out["list_index"]
    if "list_index_registered" in out.columns:
        out["historic_budget_registered"] = out["historic_spend"] * out["list_index_registered"]
    return out


def compare_with_provided(historic: pd.DataFrame, provided: pd.DataFrame | None) -> pd.DataFrame:
    """Set the historic budgets beside an existing ``budgets`` table for the same year (empty if none):
    ``practice_code, financial_year, historic_budget, provided_budget, difference, relative_difference``
    and, when ``historic`` has it, the registered-list variant (the rule ``pbc synth`` documents)."""
    cols = ["practice_code", "financial_year", "historic_budget", "provided_budget", "difference", "relative_difference"]
    reg = "historic_budget_registered" in historic.columns
    if reg:
        cols += ["historic_budget_registered", "relative_difference_registered"]
    if provided is None or len(provided) == 0:
        return pd.DataFrame(columns=cols)
    m = historic[[c for c in ("practice_code", "financial_year", "historic_budget", "historic_budget_registered")
                  if c in historic.columns]].merge(
        provided.rename(columns={"budget": "provided_budget"}).astype({"practice_code": "str", "financial_year": "str"}),
        on=["practice_code", "financial_year"], how="inner")
    m["difference"] = m["historic_budget"] - m["provided_budget"]
    m["relative_difference"] = m["difference"] / m["provided_budget"]
    if reg:
        m["relative_difference_registered"] = m["historic_budget_registered"] / m["provided_budget"] - 1
    return m[cols]


# --------------------------------------------------------------------------------------------------
# fair shares
# --------------------------------------------------------------------------------------------------

def parse_formula(formula: str, extra: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """Split ``"need terms | supply terms"`` (terms joined by ``+``) into two lists, checking every term.

    Terms are :data:`TERMS` or a column of the ``covariates`` table (``extra``). ``"1"`` or an empty side
    means no terms. Unknown, repeated or doubly assigned terms raise ``ValueError`` with a suggestion.
    """
    if not isinstance(formula, str):
        raise ValueError(f"formula must be a string such as 'deprivation | provider_cost_index', got {formula!r}")
    if formula.count("|") > 1:
        raise ValueError(f"formula {formula!r} has more than one '|': write 'need terms | supply terms'")
    need_s, _, supply_s = formula.partition("|")
    known = list(TERMS) + [c for c in extra if c not in TERMS]

    def split(side: str) -> list[str]:
        terms = [t.strip() for t in side.split("+")]
        terms = [t for t in terms if t not in ("", "1")]
        for t in terms:
            if t not in known:
                close = difflib.get_close_matches(t, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"formula: unknown term {t!r} in {formula!r}{hint} Known terms: {', '.join(known)} "
                                 "(or a column of the covariates table, e.g. disease prevalence)")
        dup = sorted({t for t in terms if terms.count(t) > 1})
        if dup:
            raise ValueError(f"formula: term(s) {dup} repeated in {formula!r}")
        return terms

    need, supply = split(need_s), split(supply_s)
    both = sorted(set(need) & set(supply))
    if both:
        raise ValueError(f"formula: term(s) {both} are both need and supply in {formula!r}; a term is one or the other")
    return need, supply


def practice_covariates(practices: pd.DataFrame, cells: pd.DataFrame, lists_base: pd.DataFrame,
                        engagement: pd.DataFrame | None, base_years: Sequence[str],
                        extra: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per practice with every built-in formula term (:data:`TERMS`) and the columns of ``extra``
    (a ``practice_code`` table, e.g. disease prevalence; every practice needs a finite value)."""
    pr = practices.sort_values("practice_code")
    codes = pr["practice_code"].astype(str).to_numpy()
    imd = pr["imd_score"].to_numpy(float)
    sd = imd.std()
    out = pd.DataFrame({"practice_code": codes, "deprivation": (imd - imd.mean()) / (sd if sd > 0 else 1.0),
                        "single_handed": pr["single_handed"].to_numpy(bool).astype(float)})
    lb = lists_base.set_index("practice_code")["registered"].reindex(codes).to_numpy(float)
    out["log_list_size"] = np.log(lb) - np.log(lb).mean()
    sub = cells[cells["financial_year"].isin(list(base_years))]
    nat = (sub["activity"].to_numpy(float) * sub["price"].fillna(0.0).to_numpy(float))
    g = sub.assign(national=nat).groupby("practice_code", sort=True)[["cost", "national"]].sum().reindex(codes)
    with np.errstate(divide="ignore", invalid="ignore"):
        pci = np.log(g["cost"].to_numpy(float) / g["national"].to_numpy(float))
    out["provider_cost_index"] = pci - np.nanmean(pci)
    pods = sub.groupby(["practice_code", "pod"], sort=True)["activity"].sum().unstack("pod").reindex(codes)
    with np.errstate(divide="ignore", invalid="ignore"):
        fur = np.log(pods.get("followup_op", pd.Series(np.nan, index=codes)).to_numpy(float)
                     / pods.get("first_op", pd.Series(np.nan, index=codes)).to_numpy(float))
    out["follow_up_ratio"] = fur - np.nanmean(fur) if np.isfinite(fur).any() else fur
    months = [m for y in base_years for m in fy_months(y)]
    if engagement is not None:
        e = engagement.set_index("practice_code")["engaged_from"].reindex(codes)
        ef = e.astype(object).where(e.notna(), "9999-99").astype(str).to_numpy()
        out["engaged"] = (np.asarray(months, dtype=str)[None, :] >= ef[:, None]).mean(axis=1)
    else:
        out["engaged"] = 0.0
    if extra is not None:
        if "practice_code" not in extra.columns:
            raise ValueError("covariates needs a practice_code column")
        x = extra.astype({"practice_code": "str"}).set_index("practice_code")
        if x.index.duplicated().any():
            raise ValueError("covariates has a practice more than once")
        clash = sorted(set(x.columns) & set(TERMS))
        if clash:
            raise ValueError(f"covariates columns {clash} clash with built-in terms; rename them")
        x = x.reindex(codes)
        for c in x.columns:
            v = pd.to_numeric(x[c], errors="coerce").to_numpy(float)
            bad = codes[~np.isfinite(v)]
            if len(bad):
                raise ValueError(f"covariates column {c!r} has no finite value for {len(bad)} practice(s) "
                                 f"(e.g. {', '.join(bad[:3])}); supply a number for every practice")
            out[c] = v
    return out


def _glm(y: np.ndarray, X: np.ndarray, offset: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Quasi-Poisson GLM (log link) by IRLS: returns coefficients, their covariance and the dispersion."""
    import statsmodels.api as sm

    fit = sm.GLM(y, X, family=sm.families.Poisson(), offset=offset).fit(scale="X2")
    return np.asarray(fit.params, float), np.asarray(fit.cov_params(), float), float(fit.scale)


def fit_need_model(base: pd.DataFrame, covariates: pd.DataFrame, need: Sequence[str], supply: Sequence[str],
                   level: float = 0.95) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fit the fair-shares regression for every component of ``base``.

    ``base``: one row per practice and component with ``cost`` (base-year annual cost at the target
    year's prices) and ``weighted_list`` (base-year mean age-sex weighted list). Returns
    ``(coefficients, fitted)``: ``component, term, role (intercept/need/supply), estimate, std_error,
    ci_low, ci_high, rate_ratio`` (per unit of the term: per SD of IMD for ``deprivation``) and, per
    practice and component, ``fitted`` (supply at actual values) and ``need`` (``weighted_list x
    exp(need terms)``, supply held at the average).
    """
    from scipy import stats

    terms = list(need) + list(supply)
    cov = covariates.set_index("practice_code")
    for t in terms:
        v = cov[t].to_numpy(float)
        if not np.all(np.isfinite(v)):
            raise ValueError(f"formula term {t!r} is missing for some practices; drop it from the formula")
        if np.ptp(v) == 0:
            raise ValueError(f"formula term {t!r} takes one value for every practice, so its effect cannot be "
                             "estimated; drop it from the formula")
    z = stats.norm.ppf(0.5 + level / 2)
    coef_rows, fitted_rows = [], []
    for comp, g in base.groupby("component", sort=False):
        g = g.sort_values("practice_code")
        X = np.column_stack([np.ones(len(g))] + [cov.loc[g["practice_code"], t].to_numpy(float) for t in terms])
        if np.linalg.matrix_rank(X) < X.shape[1]:
            raise ValueError(f"formula terms {terms} are collinear for component {comp!r}; drop one of them")
        y = g["cost"].to_numpy(float)
        off = np.log(g["weighted_list"].to_numpy(float))
        b, V, phi = _glm(y, X, off)
        se = np.sqrt(np.diag(V))
        roles = ["intercept"] + ["need"] * len(need) + ["supply"] * len(supply)
        coef_rows.append(pd.DataFrame({"component": comp, "term": ["intercept"] + terms, "role": roles,
                                       "estimate": b, "std_error": se, "ci_low": b - z * se, "ci_high": b + z * se,
                                       "rate_ratio": np.exp(b), "dispersion": phi, "n_practices": len(g)}))
        nX = 1 + len(need)
        fitted_rows.append(pd.DataFrame({
            "practice_code": g["practice_code"].to_numpy(), "component": comp, "cost": y,
            "weighted_list": g["weighted_list"].to_numpy(float),
            "fitted": np.exp(off + X @ b), "need": np.exp(off + X[:, 1:nX] @ b[1:nX])}))
    return pd.concat(coef_rows, ignore_index=True), pd.concat(fitted_rows, ignore_index=True)


def _weighted_r2(y: np.ndarray, yhat: np.ndarray, w: np.ndarray) -> float:
    ybar = np.sum(w * y) / np.sum(w)
    return float(1 - np.sum(w * (y - yhat) ** 2) / np.sum(w * (y - ybar) ** 2))


def model_fit(fitted: pd.DataFrame, lists_base: pd.DataFrame) -> pd.DataFrame:
    """Practice-level fit of the fair-shares model, per component and for all spend (``component="all"``):
    R squared of cost per registered patient (list-weighted) with supply terms at their actual values
    (``r_squared``) and for the need-only prediction scaled to the actual total (``r_squared_need``), and
    the share of practices whose need-only prediction is more than 10% from their actual cost."""
    L = lists_base.set_index("practice_code")["registered"]
    rows = []
    frames = [(c, g) for c, g in fitted.groupby("component", sort=False)]
    allg = fitted.groupby("practice_code", sort=True)[["cost", "fitted"]].sum()
    need_scaled = fitted.assign(ns=fitted["need"] * fitted.groupby("component")["cost"].transform("sum")
                                / fitted.groupby("component")["need"].transform("sum"))
    allg["need_scaled"] = need_scaled.groupby("practice_code", sort=True)["ns"].sum()
    if [c for c, _ in frames] != ["all"]:  # several components: add all spend together
        frames.append(("all", allg.reset_index()))
    for comp, g in frames:
        g = g.sort_values("practice_code")
        w = L.reindex(g["practice_code"]).to_numpy(float)
        y = g["cost"].to_numpy(float)
        ns = (g["need_scaled"].to_numpy(float) if "need_scaled" in g.columns
              else g["need"].to_numpy(float) * y.sum() / g["need"].sum())
        rows.append({"component": comp, "n_practices": len(g), "cost": float(y.sum()),
                     "r_squared": _weighted_r2(y / w, g["fitted"].to_numpy(float) / w, w),
                     "r_squared_need": _weighted_r2(y / w, ns / w, w),
                     "share_more_than_10pct_from_actual": float(np.mean(np.abs(ns / y - 1) > 0.10))})
    return pd.DataFrame(rows)


def fair_shares(fitted: pd.DataFrame, lists_target: pd.DataFrame) -> pd.DataFrame:
    """Target shares from the need model: per practice ``registered`` (at the list month),
    ``weighted_list`` (all spend), ``list_share``, ``age_sex_share`` (components' weighted-list shares
    weighted by their cost), ``target_share`` (need shares likewise), ``age_sex_index = age_sex_share /
    list_share`` and ``need_index = target_share / age_sex_share``.

    ``lists_target`` has the lists at the list month (``registered``, ``weighted_<component>``,
    ``weighted_list``); ``fitted`` the model's ``need`` at base-year lists, rescaled here to the target
    lists (``need x WL(target) / WL(base)``, i.e. ``WL(target) x exp(need terms)``).
    """
    lt = lists_target.set_index("practice_code")
    comps = list(dict.fromkeys(fitted["component"]))
    long = lists_target.melt(id_vars="practice_code", value_vars=[f"weighted_{c}" for c in comps],
                             var_name="component", value_name="wl_target")
    long["component"] = long["component"].str.slice(len("weighted_"))
    f = fitted.merge(long, on=["practice_code", "component"], how="left", validate="one_to_one")
    f["need_target"] = f["need"] * f["wl_target"] / f["weighted_list"]
    w_c = f.groupby("component")["cost"].sum()
    w_c = w_c / w_c.sum()
    f["w"] = f["component"].map(w_c)
    f["as_share"] = f["w"] * f["wl_target"] / f.groupby("component")["wl_target"].transform("sum")
    f["need_share"] = f["w"] * f["need_target"] / f.groupby("component")["need_target"].transform("sum")
    g = f.groupby("practice_code", sort=True)[["as_share", "need_share"]].sum()
    reg = lt["registered"].reindex(g.index).to_numpy(float)
    out = pd.DataFrame({"practice_code": g.index.astype(str), "registered": reg,
                        "weighted_list": lt["weighted_list"].reindex(g.index).to_numpy(float)
                        if "weighted_list" in lt.columns else reg,
                        "list_share": reg / reg.sum(), "age_sex_share": g["as_share"].to_numpy(float),
                        "target_share": g["need_share"].to_numpy(float)})
    out["target_share"] = out["target_share"] / out["target_share"].sum()
    out["age_sex_index"] = out["age_sex_share"] / out["list_share"]
    out["need_index"] = out["target_share"] / out["age_sex_share"]
    return out


# --------------------------------------------------------------------------------------------------
# pace of change
# --------------------------------------------------------------------------------------------------

def _step(s: np.ndarray, t: np.ndarray, years_left: int, cap: float, band: float, fund_from: str) -> tuple[np.ndarray, np.ndarray]:
    """One year of the glide path on shares: returns (new shares, cap binding)."""
    lo, hi = t * (1 - band), t * (1 + band)
    want_up = np.clip((lo - s) / years_left, 0.0, None)
    want_down = np.clip((s - hi) / years_left, 0.0, None)
    capped = (want_up > cap * s) | (want_down > cap * s)
    up = np.minimum(want_up, cap * s)
    down = np.minimum(want_down, cap * s)
    G, D = up.sum(), down.sum()
    if G > D:
        room = np.where(s > t, np.clip(np.minimum(cap * s, s - t) - down, 0.0, None), 0.0) \
            if fund_from == "above_target" else np.zeros_like(s)
        R = room.sum()
        extra = min(G - D, R)
        down = down + (room * (extra / R) if R > 0 else 0.0)
        up = up * ((D + extra) / G)
    elif D > G:
        room = np.where(s < t, np.clip(np.minimum(cap * s, t - s) - up, 0.0, None), 0.0) \
            if fund_from == "above_target" else np.zeros_like(s)
        R = room.sum()
        extra = min(D - G, R)
        up = up + (room * (extra / R) if R > 0 else 0.0)
        down = down * ((G + extra) / D)
    new = s + up - down
    return new / new.sum(), capped


def glide_path(start: pd.DataFrame, envelope: float, first_year: str, years: int = 3, cap: float = 0.05,
               band: float = 0.10, envelope_growth: float = 0.0, fund_from: str = "above_target") -> pd.DataFrame:
    """The multi-year move from historic budgets to fair shares (see the module docstring).

    ``start``: ``practice_code``, ``historic_budget`` (any scale: used as shares) and ``target_share``
    (summing to 1). Returns one row per practice and year (``year`` 0 = historic, scaled to the
    envelope; 1..``years`` = ``first_year`` onwards): ``financial_year, envelope, share, target_share,
    distance`` ((share - target) / target), ``step_share`` (change of share this year), ``cap_binding``,
    ``within_band`` and ``budget`` (GBP, whole pence summing exactly to the year's envelope).
    """
    _check_fy(first_year, "target_year")
    if isinstance(years, bool) or not isinstance(years, (int, np.integer)) or years < 1:
        raise ValueError(f"pace_years must be a whole number of years >= 1, got {years!r}")
    cap = _number(cap, "pace_cap", 0.0, fix="a yearly cap on the change of a practice's share, e.g. 0.05 for 5%")
    band = _number(band, "band", 0.0, 1.0, high_open=True,
                   fix="the allowed distance from target, e.g. 0.10 (national) or 0.05 (stricter local)")
    g = _number(envelope_growth, "envelope_growth", -1.0, low_open=True, fix="e.g. 0.0 for a flat envelope")
    _choice(fund_from, "fund_from", FUND_FROM)
    E = _number(envelope, "envelope", 0.0, low_open=True, fix="the PCT's total for the target year in GBP")
    h = start["historic_budget"].to_numpy(float)
    t = start["target_share"].to_numpy(float)
    if (h < 0).any() or h.sum() <= 0 or not np.all(np.isfinite(h)):
        raise ValueError("historic budgets must be finite, non-negative and not all zero")
    if (t <= 0).any() or abs(t.sum() - 1) > 1e-9:
        raise ValueError("target shares must be positive and sum to 1")
    s = h / h.sum()
    codes = start["practice_code"].astype(str).to_numpy()
    frames = []
    for k in range(int(years) + 1):
        if k == 0:
            new, capped, step = s, np.zeros(len(s), bool), np.zeros(len(s))
        else:
            new, capped = _step(s, t, int(years) - k + 1, cap, band, fund_from)
            step = new - s
        env = E * (1 + g) ** max(k - 1, 0)
        pence = allocate_pence(new, env)
        frames.append(pd.DataFrame({
            "practice_code": codes, "year": k, "financial_year": shift_year(first_year, k - 1) if k else "historic",
            "envelope": round(env, 2), "share": new, "target_share": t, "distance": (new - t) / t,
            "step_share": step, "cap_binding": capped,
            "within_band": np.abs(new / t - 1) <= band + 1e-12, "budget": pence / 100.0}))
        s = new
    return pd.concat(frames, ignore_index=True)


def winners_and_losers(path: pd.DataFrame, practices: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per practice: historic (year 0, scaled to the first year's envelope) and first- and last-year
    budgets, the change in the first year (budget - historic, in pence) and over the path (change of share
    x the first envelope, so a growing envelope does not make everyone a winner), and ``status``:
    ``gains``, ``loses`` or ``unchanged`` (first-year change, to the penny)."""
    first = path[path["year"] == 1].set_index("practice_code")
    zero = path[path["year"] == 0].set_index("practice_code").reindex(first.index)
    last = path[path["year"] == path["year"].max()].set_index("practice_code").reindex(first.index)
    E1 = first["envelope"].to_numpy(float)
    d1 = np.round(first["budget"].to_numpy(float) - zero["budget"].to_numpy(float), 2)  # both at the first envelope
    dn = np.round((last["share"] - zero["share"]).to_numpy(float) * E1, 2)
    out = pd.DataFrame({"practice_code": first.index.astype(str),
                        "historic_at_envelope": zero["budget"].to_numpy(float),
                        "budget_first_year": first["budget"].to_numpy(float),
                        "budget_last_year": last["budget"].to_numpy(float),
                        "change_first_year": d1, "change_over_path": dn,
                        "change_first_year_pct": d1 / zero["budget"].to_numpy(float),
                        "status": np.select([d1 >= 0.01, d1 <= -0.01], ["gains", "loses"], "unchanged")})
    if practices is not None:
        out = out.merge(practices[["practice_code", "consortium"]].astype(str), on="practice_code", how="left")
    return out


# --------------------------------------------------------------------------------------------------
# the whole budget-setting run
# --------------------------------------------------------------------------------------------------

@dataclass
class BudgetResult:
    """Everything :func:`set_budgets` computed (tidy tables) and the settings used."""

    statement: pd.DataFrame
    historic: pd.DataFrame
    shares: pd.DataFrame
    coefficients: pd.DataFrame
    fit: pd.DataFrame
    fitted: pd.DataFrame
    path: pd.DataFrame
    winners: pd.DataFrame
    curves: pd.DataFrame
    covariates: pd.DataFrame
    provided: pd.DataFrame
    cells: pd.DataFrame = field(repr=False)
    lists: pd.DataFrame = field(repr=False)
    settings: dict[str, Any] = field(default_factory=dict)


def set_budgets(inputs: _data.Inputs, target_year: str, envelope: float = 0.0, base_years: int = 2,
                recost_method: str = "price_index", list_index_kind: str = "weighted", curves: str = "calibrated",
                supplied_curves: pd.DataFrame | None = None, formula: str = "deprivation | provider_cost_index",
                components: str = "pod_group", covariates: pd.DataFrame | None = None, pace_years: int = 3,
                pace_cap: float = 0.05, band: float = 0.10, envelope_growth: float = 0.0,
                fund_from: str = "above_target", completeness: pd.DataFrame | None = None,
                tariff_uplift: float | None = None, level: float = 0.95) -> BudgetResult:
    """Set indicative budgets for ``target_year`` from validated inputs (every rule in the module docstring).

    ``envelope`` 0 means the sum of the historic budgets. ``components`` ``"pod_group"`` fits the need
    model separately for planned care, non-elective admissions and A&E; ``"total"`` fits one model for
    all spend (one age-sex curve: the components' summed cost per head).
    """
    _check_fy(target_year, "target_year")
    _choice(recost_method, "recost", RECOST_METHODS)
    _choice(list_index_kind, "list_index", LIST_INDEX)
    _choice(curves, "curves", CURVE_METHODS)
    _choice(components, "components", COMPONENT_SETS)
    _choice(fund_from, "fund_from", FUND_FROM)
    env_in = _number(envelope, "envelope", 0.0, fix="0 for the sum of the historic budgets, else GBP")
    _number(level, "level", 0.0, 1.0, low_open=True, high_open=True)
    need, supply = parse_formula(formula, [] if covariates is None else [c for c in covariates.columns
                                                                          if c != "practice_code"])
    window = inputs.window.months if inputs.window is not None else sorted(inputs.activity["month"].unique())
    fys = list(dict.fromkeys(financial_year_of(window)))
    years = base_years_for(target_year, fys, base_years)
    tariff = inputs.tariff
    has_target = (tariff["financial_year"] == target_year).any()
    if tariff_uplift is not None:
        tariff = project_tariff(tariff, target_year, tariff_uplift)
    elif not has_target:
        raise ValueError(f"target_year {target_year!r}: the tariff has no prices for it (it has "
                         f"{', '.join(sorted(tariff['financial_year'].unique()))}); add that year's national tariff "
                         "to tariff.csv, or pass tariff_uplift (e.g. 0.025) to project the latest year's prices")
    cells = recost(practice_cells(inputs.activity, completeness), tariff, target_year, recost_method)
    base_months = [m for y in years for m in fy_months(y) if m in set(window)]
    # age-sex curves (calibrated on the base years' activity and population)
    pop = inputs.population
    pop_base = pop[pop["month"].isin(base_months)]
    py = (pop_base.groupby(["age_band", "sex"], observed=True, sort=True)["registered"].sum() / 12.0).reset_index(
        name="person_years")
    obs = (cells[cells["financial_year"].isin(years)].groupby(["pod", "specialty_code"], sort=True)
           ["activity_adjusted"].sum().rename("activity").reset_index())
    curve_tab = cost_curves(inputs.reference_rates, tariff, target_year, curves, observed=obs, population=py,
                            supplied=supplied_curves)
    lists = practice_lists(pop, curve_tab)
    annual = annual_costs(cells, years, window, components)
    value = "weighted_list" if list_index_kind == "weighted" else "registered"
    idx = list_index(lists, target_year, years, value)
    idx["list_index_registered"] = list_index(lists, target_year, years, "registered")["list_index"].to_numpy()
    hist = historic_budgets(annual, idx, years, target_year)
    lb = weighted_lists(lists, base_months)
    cov = practice_covariates(inputs.practices, cells, lb, inputs.engagement, years, covariates)
    # the need model's data: base-year annual cost per practice and component, base-year weighted list
    comp_cost = (annual.pivot_table(index=["practice_code", "component"], columns="financial_year",
                                    values="annual_at_target", aggfunc="sum", fill_value=0.0)
                 .reindex(columns=years, fill_value=0.0).mean(axis=1).rename("cost").reset_index())
    comp_names = list(dict.fromkeys(comp_cost["component"]))
    wl = lb.melt(id_vars="practice_code", value_vars=[f"weighted_{c}" for c in comp_names], var_name="component",
                 value_name="wl").rename(columns={"wl": "weighted_list"})
    wl["component"] = wl["component"].str.slice(len("weighted_"))
    base_tab = comp_cost.merge(wl, on=["practice_code", "component"], how="left")
    coefs, fitted = fit_need_model(base_tab, cov, need, supply, level)
    fit = model_fit(fitted, lb)
    lt = lists[lists["month"] == idx["list_month"].iloc[0]]
    shares = fair_shares(fitted, lt)
    hist_total = float(np.round(hist["historic_budget"].sum(), 2))
    E = env_in if env_in > 0 else hist_total
    start = hist[["practice_code", "historic_budget"]].merge(shares[["practice_code", "target_share"]], on="practice_code")
    path = glide_path(start, E, target_year, pace_years, pace_cap, band, envelope_growth, fund_from)
    winners = winners_and_losers(path, inputs.practices)
    provided = compare_with_provided(hist, inputs.budgets)
    settings = {"target_year": target_year, "base_years": years, "envelope": round(E, 2),
                "envelope_is_historic_total": env_in == 0, "historic_total": hist_total, "recost": recost_method,
                "list_index": list_index_kind, "curves": curves, "components": components, "formula": formula,
                "need_terms": need, "supply_terms": supply, "pace_years": int(pace_years), "pace_cap": float(pace_cap),
                "band": float(band), "envelope_growth": float(envelope_growth), "fund_from": fund_from,
                "list_month": str(idx["list_month"].iloc[0]), "tariff_projected": tariff_uplift is not None,
                "tariff_uplift": tariff_uplift, "completeness_months": sorted(_factor_map(completeness)),
                "level": level}
    statement = budget_statement(inputs.practices, hist, shares, path, settings)
    return BudgetResult(statement, hist, shares, coefs, fit, fitted, path, winners, curve_tab, cov, provided, cells,
                        lists, settings)


# --------------------------------------------------------------------------------------------------
# the budget statement
# --------------------------------------------------------------------------------------------------

STATEMENT_COLUMNS = [
    "practice_code", "practice_name", "consortium", "financial_year", "list_month", "registered", "weighted_list",
    "age_sex_index", "need_index", "list_share", "target_share", "base_years", "historic_spend", "list_index",
    "historic_budget", "historic_at_envelope", "fair_share", "distance_from_target", "band_low", "band_high",
    "within_band_now", "step", "cap_binding", "budget", "budget_share", "change_pct", "distance_after_step",
    "years_to_band", "status", "explanation"]


def _fmt_money(x: pd.Series) -> pd.Series:
    return x.map("GBP {:,.0f}".format)


def _fmt_pct(x: pd.Series, signed: bool = True) -> pd.Series:
    return (100 * x).map(("{:+.1f}%" if signed else "{:.1f}%").format)


def budget_statement(practices: pd.DataFrame, hist: pd.DataFrame, shares: pd.DataFrame, path: pd.DataFrame,
                     settings: Mapping[str, Any]) -> pd.DataFrame:
    """One row per practice that explains its own budget (:data:`STATEMENT_COLUMNS`): list and weighted
    list, the age-sex and need indices, historic spend and budget, fair share, distance from target,
    this year's step, the budget and an ``explanation`` in plain words built from those numbers."""
    E = float(settings["envelope"])
    band = float(settings["band"])
    p0 = path[path["year"] == 0].set_index("practice_code")
    p1 = path[path["year"] == 1].set_index("practice_code")
    inb = path[path["year"] >= 1].pivot(index="practice_code", columns="year", values="within_band")
    first_in = np.where(inb.to_numpy().any(axis=1), inb.to_numpy().argmax(axis=1) + 1, np.nan)
    years_to_band = pd.Series(first_in, index=inb.index)
    years_to_band[p0["within_band"].reindex(inb.index).to_numpy(bool)] = 0
    s = (practices[["practice_code", "practice_name", "consortium"]].astype(str)
         .merge(hist, on="practice_code").merge(shares, on="practice_code").sort_values("practice_code"))
    codes = s["practice_code"]
    s["base_years"] = " and ".join(settings["base_years"])
    s["historic_at_envelope"] = p0["budget"].reindex(codes).to_numpy()
    s["fair_share"] = s["target_share"] * E
    s["distance_from_target"] = (s["historic_at_envelope"] - s["fair_share"]) / s["fair_share"]
    s["band_low"] = s["fair_share"] * (1 - band)
    s["band_high"] = s["fair_share"] * (1 + band)
    s["within_band_now"] = p0["within_band"].reindex(codes).to_numpy(bool)
    s["budget"] = p1["budget"].reindex(codes).to_numpy()
    s["step"] = np.round(s["budget"] - s["historic_at_envelope"], 2)
    s["cap_binding"] = p1["cap_binding"].reindex(codes).to_numpy(bool)
    s["budget_share"] = p1["share"].reindex(codes).to_numpy()
    s["change_pct"] = s["step"] / s["historic_at_envelope"]
    s["distance_after_step"] = p1["distance"].reindex(codes).to_numpy()
    s["years_to_band"] = years_to_band.reindex(codes).to_numpy()
    s["status"] = np.select([s["step"] >= 0.01, s["step"] <= -0.01], ["gains", "loses"], "unchanged")
    where = np.where(s["distance_from_target"] >= 0, "above", "below")
    inb, gains, loses = s["within_band_now"], s["status"] == "gains", s["status"] == "loses"
    move = np.select(
        [inb & gains, inb & loses, inb, gains, loses],
        ["You are within the allowed band, so pace of change does not aim to move you, but as a practice below "
         "target you receive part of what practices above their band give up",
         "You are within the allowed band, so pace of change does not aim to move you, but as a practice above "
         "target you fund part of the moves of practices below their band",
         "You are within the allowed band, so pace of change does not move you",
         "You are below your fair share, so your budget rises towards it",
         "You are above your fair share, so your budget falls towards it"], "Your budget is unchanged")
    cap_txt = np.where(s["cap_binding"], f" (the yearly cap of {100 * float(settings['pace_cap']):.0f}% limits the step)", "")
    reach = np.where(s["years_to_band"].isna(), f"You do not reach the band within the {settings['pace_years']}-year path.",
                     np.where(s["years_to_band"] == 0, "", "You reach the band in year " +
                              s["years_to_band"].fillna(0).astype(int).astype(str) + " of the path."))
    s["explanation"] = (
        "Your list of " + s["registered"].map("{:,.0f}".format) + " patients (" + s["list_month"] + ") counts as "
        + s["weighted_list"].map("{:,.0f}".format) + " once weighted for age and sex (age-sex index "
        + s["age_sex_index"].map("{:.3f}".format) + "); deprivation and other need factors give a need index of "
        + s["need_index"].map("{:.3f}".format) + ". Your fair share is " + _fmt_pct(s["target_share"], False)
        + " of the PCT's GBP " + f"{E:,.0f}" + ", i.e. " + _fmt_money(s["fair_share"]) + ". Your historic spend ("
        + s["base_years"] + " averaged, re-costed at " + s["financial_year"] + " tariff) is "
        + _fmt_money(s["historic_spend"]) + "; adjusted for list change (index " + s["list_index"].map("{:.3f}".format)
        + ") and scaled to the envelope it is " + _fmt_money(s["historic_at_envelope"]) + ", "
        + _fmt_pct(s["distance_from_target"].abs(), False) + " " + pd.Series(where, index=s.index)
        + " your fair share (allowed band " + f"+/-{100 * band:.0f}%" + "). " + pd.Series(move, index=s.index)
        + ": this year's step is " + s["step"].map("GBP {:+,.0f}".format) + pd.Series(cap_txt, index=s.index)
        + ", giving a budget of " + _fmt_money(s["budget"]) + ". " + pd.Series(reach, index=s.index))
    s["explanation"] = s["explanation"].str.strip()
    return s[STATEMENT_COLUMNS].reset_index(drop=True)


# --------------------------------------------------------------------------------------------------
# results: tables, headline, description, figures
# --------------------------------------------------------------------------------------------------

def result_tables(res: BudgetResult) -> dict[str, pd.DataFrame]:
    """The run's budget tables (``bud_*``): ``bud_statement`` (one row per practice), ``bud_historic``,
    ``bud_curves`` (age-sex cost curves), ``bud_need_model`` (coefficients), ``bud_model_fit``,
    ``bud_glide_path`` (practice x year), ``bud_winners_losers`` and ``bud_provided_comparison``
    (against an existing budgets table for the target year; empty if there is none)."""
    return {
        "bud_statement": res.statement,
        "bud_historic": res.historic,
        "bud_curves": res.curves,
        "bud_need_model": res.coefficients,
        "bud_model_fit": res.fit,
        "bud_glide_path": res.path,
        "bud_winners_losers": res.winners,
        "bud_provided_comparison": res.provided,
    }


def _r(x: float, nd: int = 4) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), nd)


def headline(res: BudgetResult, risk_head: Mapping[str, Any] | None = None,
             monitoring_head: Mapping[str, Any] | None = None) -> dict:
    """Headline figures for ``results.json`` (section ``budgets``): settings, totals, the need model's
    coefficients and fit, distance from target, winners and losers, the check against a provided budgets
    table, and (when given) the risk pool's and in-year monitoring's headlines."""
    st, s = res.settings, res.statement
    need = res.coefficients[res.coefficients["role"] != "intercept"]
    coefs = {f"{r.component}:{r.term}": {"estimate": _r(r.estimate), "std_error": _r(r.std_error),
                                           "rate_ratio": _r(r.rate_ratio)} for r in need.itertuples()}
    fit_all = res.fit[res.fit["component"] == "all"].iloc[0]
    d = s["distance_from_target"]
    out = {
        "target_year": st["target_year"], "base_years": list(st["base_years"]), "list_month": st["list_month"],
        "envelope_gbp": round(float(st["envelope"]), 2), "historic_total_gbp": round(float(st["historic_total"]), 2),
        "budgets_total_gbp": round(float(s["budget"].sum()), 2),
        "formula": st["formula"], "components": st["components"], "curves": st["curves"],
        "list_index": st["list_index"], "recost": st["recost"],
        "pace": {"years": st["pace_years"], "cap": st["pace_cap"], "band": st["band"], "fund_from": st["fund_from"],
                 "envelope_growth": st["envelope_growth"]},
        "n_practices": int(len(s)),
        "need_model": coefs,
        "r_squared": _r(fit_all["r_squared"]), "r_squared_need": _r(fit_all["r_squared_need"]),
        "share_more_than_10pct_from_actual": _r(fit_all["share_more_than_10pct_from_actual"]),
        "distance_from_target": {"min": _r(d.min()), "median": _r(d.median()), "max": _r(d.max()),
                                 "share_outside_band": _r(float((~s["within_band_now"]).mean()))},
        "winners": int((s["status"] == "gains").sum()), "losers": int((s["status"] == "loses").sum()),
        "unchanged": int((s["status"] == "unchanged").sum()),
        "largest_gain_pct": _r(s["change_pct"].max()), "largest_loss_pct": _r(s["change_pct"].min()),
        "cap_binding": int(s["cap_binding"].sum()),
        "within_band_after_path": int(res.path.loc[res.path["year"] == res.path["year"].max(), "within_band"].sum()),
    }
    if len(res.provided):
        rd = res.provided["relative_difference"]
        out["provided_budgets_check"] = {"n": int(len(rd)), "median_relative_difference": _r(rd.median(), 5),
                                         "max_abs_relative_difference": _r(rd.abs().max(), 5)}
        if "relative_difference_registered" in res.provided.columns:
            rr = res.provided["relative_difference_registered"]
            out["provided_budgets_check"].update({
                "median_relative_difference_registered_list": _r(rr.median(), 5),
                "max_abs_relative_difference_registered_list": _r(rr.abs().max(), 5)})
    if risk_head is not None:
        out["risk"] = dict(risk_head)
    if monitoring_head is not None:
        out["monitoring"] = dict(monitoring_head)
    return out


def describe(head: Mapping[str, Any]) -> str:
    """A plain-language reading of :func:`headline` (every number from the results)."""
    p = head["pace"]
    dep = {k.split(":")[0]: v for k, v in head["need_model"].items() if k.endswith(":deprivation")}
    lines = [f"**{head['target_year']} indicative budgets** for {head['n_practices']} practices, from "
             f"{' and '.join(head['base_years'])} activity re-costed at {head['target_year']} tariff. Envelope "
             f"GBP {head['envelope_gbp']:,.0f}" + (" (the sum of the historic budgets)." if abs(
                 head['envelope_gbp'] - head['historic_total_gbp']) < 0.01 else
                 f" (historic budgets total GBP {head['historic_total_gbp']:,.0f}); budgets add up to "
                 f"GBP {head['budgets_total_gbp']:,.0f}.")]
    if dep:
        lines.append("Need model (" + head["formula"] + "): one SD of IMD score goes with " + ", ".join(
            f"{v['rate_ratio']:.3f} x cost per weighted patient for {k.replace('_', ' ')}" for k, v in dep.items())
            + f". At practice level it explains {head['r_squared']:.0%} of the variation in cost per patient "
            f"({head['r_squared_need']:.0%} from need alone); "
            f"{head['share_more_than_10pct_from_actual']:.0%} of practices are more than 10% from their actual cost.")
    d = head["distance_from_target"]
    lines.append(f"Distance from target runs from {d['min']:+.1%} to {d['max']:+.1%}; {d['share_outside_band']:.0%} of "
                 f"practices are outside the +/-{p['band']:.0%} band. Over {p['years']} years with a yearly cap of "
                 f"{p['cap']:.0%}: {head['winners']} practices gain and {head['losers']} lose this year (largest gain "
                 f"{head['largest_gain_pct']:+.1%}, largest loss {head['largest_loss_pct']:+.1%}); the cap binds for "
                 f"{head['cap_binding']}; {head['within_band_after_path']} of {head['n_practices']} are within the band "
                 "at the end of the path.")
    if "provided_budgets_check" in head:
        c = head["provided_budgets_check"]
        txt = (f"Against the budgets table already held for {head['target_year']}: median difference "
               f"{c['median_relative_difference']:+.2%}, largest {c['max_abs_relative_difference']:.2%}")
        if "median_relative_difference_registered_list" in c and head["list_index"] != "registered":
            txt += (f" ({c['median_relative_difference_registered_list']:+.2%} and "
                    f"{c['max_abs_relative_difference_registered_list']:.2%} with a registered-list index)")
        lines.append(txt + ".")
    return "\n\n".join(lines)

