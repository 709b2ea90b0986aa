"""Activity and cost by practice at the target year's prices: cells, completeness, re-costing, annual costs.

See :mod:`pbc_analysis.stages.budgets` ("Historic budget") for the rules.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from pbc_analysis.core import calendar
from pbc_analysis.core.checks import ArgumentError, check_choice, check_number
from pbc_analysis.stages.budgets.params import Components, Recost

__all__ = ["COMPONENTS", "annual_costs", "base_years_for", "check_financial_year", "factor_map", "practice_cells",
           "project_tariff", "recost_cells"]

#: components of hospital spend and their points of delivery
COMPONENTS: dict[str, tuple[str, ...]] = {
    "planned": ("first_op", "followup_op", "elective"),
    "non_elective": ("non_elective",),
    "ae": ("ae",),
}


def check_financial_year(value: Any, name: str) -> str:
    """Check that ``value`` is a financial-year label ``YYYY/YY`` (:func:`pbc_analysis.core.calendar.is_financial_year`).

    Parameters
    ----------
    value : object
    name : str
        The argument's name, for the message.

    Returns
    -------
    str
        ``value``.

    Raises
    ------
    ArgumentError
        Naming the argument and the form expected.

    References
    ----------
    NHS financial year, April to March (:mod:`pbc_analysis.core.calendar`).
    """
    if not calendar.is_financial_year(value):
        raise ArgumentError(f"{name} must be a financial year 'YYYY/YY' such as '2007/08', got {value!r}")
    return str(value)


def base_years_for(target_year: str, available: Sequence[str], n: int = 2) -> list[str]:
    """The ``n`` financial years before ``target_year``, oldest first; all must be in ``available``.

    Parameters
    ----------
    target_year : str
        ``YYYY/YY``.
    available : sequence of str
        The financial years with months in the window.
    n : int
        How many base years.

    Returns
    -------
    list of str

    Raises
    ------
    ValueError
        When a base year is not in the data, naming it and the fix.

    References
    ----------
    Audit Commission (2007), case study 9: the historic budget averages the two previous years.
    """
    check_financial_year(target_year, "target_year")
    check_number("base_years", n, 1, integer=True, fix="a whole number of years")
    years = [calendar.shift_year(target_year, -k) for k in range(int(n), 0, -1)]
    missing = [y for y in years if y not in set(available)]
    if missing:
        raise ValueError(f"target_year {target_year!r} with base_years={n} needs activity in {', '.join(years)}, but "
                         f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not in the data (it has "
                         f"{', '.join(sorted(available))}); choose a later target_year or fewer base_years")
    return years


def factor_map(completeness: pd.DataFrame | None) -> dict[str, float]:
    """Month -> completeness factor of a completeness table (``month, factor``), checked.

    Parameters
    ----------
    completeness : DataFrame or None

    Returns
    -------
    dict
        Empty for no table.

    Raises
    ------
    ValueError
        For missing columns, factors outside (0, 1] or a month given twice.

    References
    ----------
    Completeness factors (recorded / eventual): :mod:`pbc_analysis.stages.budgets.completeness`.
    """
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

    Parameters
    ----------
    activity : DataFrame
        The validated ``activity`` table.
    completeness : DataFrame, optional
        ``month, factor``: months named are divided by their factor.

    Returns
    -------
    DataFrame
        ``practice_code, specialty_code, pod, month, financial_year, activity, cost, factor,
        activity_adjusted, cost_adjusted``: ``factor`` is the month's completeness factor (1 for months not
        named in ``completeness``) and the adjusted columns are divided by it; the recorded activity and
        cost are kept. Cells with activity 0 and cost 0 are left out (``activity`` may be sparse: a missing
        row is a zero), so every sum below is the same whether the zeros were explicit rows or not.

    References
    ----------
    DOMAIN.md "Data lag": SUS activity arrives about three months late, so the latest months are incomplete.
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
    g = g[(g["activity"].to_numpy() != 0) | (g["cost"].to_numpy() != 0)].reset_index(drop=True)  # implicit zeros
    g.insert(4, "financial_year", calendar.financial_year_of(g["month"]))
    fmap = factor_map(completeness)
    # months not named in the completeness table are complete (factor 1); nothing else is filled in
    g["factor"] = g["month"].map(fmap).astype(float).fillna(1.0) if fmap else 1.0
    g["activity_adjusted"] = g["activity"] / g["factor"]
    g["cost_adjusted"] = g["cost"] / g["factor"]
    return g


def project_tariff(tariff: pd.DataFrame, target_year: str, uplift: float) -> pd.DataFrame:
    """Add prices for ``target_year`` = the latest earlier year's price x (1 + uplift), rounded to pence.

    Parameters
    ----------
    tariff : DataFrame
        ``specialty_code, pod, financial_year, price``.
    target_year : str
        A year whose national tariff is not yet in the data.
    uplift : float
        Yearly uplift, in -0.5 .. 0.5.

    Returns
    -------
    DataFrame
        The tariff with the projected year added.

    Raises
    ------
    ValueError
        If the year already has prices (nothing is overwritten) or none is earlier.

    References
    ----------
    NHS Payment by Results: national prices change every April (DOMAIN.md "The setting").
    """
    check_financial_year(target_year, "target_year")
    u = float(check_number("tariff_uplift", uplift, -0.5, 0.5, fix="pass a yearly uplift such as 0.025"))
    if (tariff["financial_year"] == target_year).any():
        raise ValueError(f"tariff already has prices for {target_year}; leave tariff_uplift as None")
    earlier = tariff[tariff["financial_year"] < target_year]
    if earlier.empty:
        raise ValueError(f"tariff has no year before {target_year} to project from")
    last = earlier.sort_values("financial_year").groupby(["specialty_code", "pod"], sort=True).tail(1)
    new = last.assign(financial_year=target_year, price=np.round(last["price"].to_numpy(float) * (1 + u), 2))
    return pd.concat([tariff, new], ignore_index=True)


def recost_cells(cells: pd.DataFrame, tariff: pd.DataFrame, target_year: str, recost: str = "price_index",
                 cost: str = "cost_adjusted") -> pd.DataFrame:
    """Add ``price`` (the cell's own year), ``target_price`` and ``cost_at_target`` to ``cells``.

    Parameters
    ----------
    cells : DataFrame
        From :func:`practice_cells`.
    tariff : DataFrame
        ``specialty_code, pod, financial_year, price``.
    target_year : str
    recost : {"price_index", "tariff"}
        ``"price_index"``: ``cost_at_target = cost x target_price / price`` (keeps the provider's case-mix
        factor); ``"tariff"``: ``activity x target_price`` (national prices; ``activity_adjusted`` when
        ``cost="cost_adjusted"``).
    cost : str
        The cost column re-costed.

    Returns
    -------
    DataFrame

    Raises
    ------
    ValueError
        For a cell with activity but no target-year price, naming the cells and the fix.

    References
    ----------
    Audit Commission (2007), case study 9: historic activity re-costed at the new year's tariff.
    """
    check_financial_year(target_year, "target_year")
    check_choice("recost", recost, Recost)
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
        if recost == "price_index":
            val = np.where(c > 0, c * tp / price, 0.0)
        else:
            a = out["activity_adjusted"].to_numpy(float) if (cost == "cost_adjusted" and "activity_adjusted"
                                                              in out.columns) else act
            val = np.where(act > 0, a * tp, 0.0)
    out["cost_at_target"] = val
    return out


def annual_costs(cells: pd.DataFrame, years: Sequence[str], window_months: Sequence[str],
                 components: str = "pod_group") -> pd.DataFrame:
    """Annual cost at the target year's prices per practice, component and financial year.

    Parameters
    ----------
    cells : DataFrame
        From :func:`recost_cells`.
    years : sequence of str
        The financial years kept.
    window_months : sequence of str
        The window's months (a part year is annualised by its months in the window).
    components : {"pod_group", "total"}
        :data:`COMPONENTS`, or one component ``all``.

    Returns
    -------
    DataFrame
        ``practice_code, component, financial_year, activity, cost, cost_adjusted, cost_at_target, months,
        annual_at_target`` (``cost_at_target x 12 / months``).

    References
    ----------
    The historic budget rule, :mod:`pbc_analysis.stages.budgets`.
    """
    check_choice("components", components, Components)
    fy_of_window = pd.Series(calendar.financial_year_of(list(window_months))).value_counts()
    comp_of = {p: (c if components == "pod_group" else "all") for c, pods in COMPONENTS.items() for p in pods}
    sub = cells[cells["financial_year"].isin(list(years))].assign(component=lambda d: d["pod"].map(comp_of))
    g = sub.groupby(["practice_code", "component", "financial_year"], observed=True, sort=True)[
        ["activity", "cost", "cost_adjusted", "cost_at_target"]].sum().reset_index()
    g["months"] = g["financial_year"].map(fy_of_window).astype("int64")
    g["annual_at_target"] = g["cost_at_target"] * 12.0 / g["months"]
    return g
