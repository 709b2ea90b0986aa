"""Registered and age-sex weighted lists: cost curves, practice lists, the list growth index.

See :mod:`pbc_analysis.stages.budgets` ("Age-sex cost curves", "Historic budget") for the rules.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from pbc_analysis import data as _data
from pbc_analysis.core import calendar
from pbc_analysis.core.checks import check_choice
from pbc_analysis.stages.budgets.costs import COMPONENTS, check_financial_year
from pbc_analysis.stages.budgets.params import Curves

__all__ = ["N_CELLS", "cell_index", "cost_curves", "list_growth", "practice_lists", "weighted_lists"]

N_CELLS = len(_data.AGE_BANDS) * len(_data.SEXES)


def cell_index(population: pd.DataFrame) -> np.ndarray:
    """The age-sex cell (0 .. :data:`N_CELLS` - 1) of each row with ``age_band`` and ``sex``.

    Parameters
    ----------
    population : DataFrame

    Returns
    -------
    numpy.ndarray of int

    Raises
    ------
    ValueError
        For an age band or sex outside the data dictionary's.

    References
    ----------
    docs/data_dictionary.md (the age bands and sexes of ``population``).
    """
    band = pd.Categorical(population["age_band"].astype(str), categories=list(_data.AGE_BANDS)).codes
    sex = pd.Categorical(population["sex"].astype(str), categories=list(_data.SEXES)).codes
    if (band < 0).any() or (sex < 0).any():
        raise ValueError("population has age bands or sexes outside the data dictionary's")
    return band.astype(np.int64) * 2 + sex.astype(np.int64)


def _person_years(population: pd.DataFrame) -> np.ndarray:
    py = np.zeros(N_CELLS)
    np.add.at(py, cell_index(population), population["person_years"].to_numpy(float))
    return py


def _supplied_cost_per_head(supplied: pd.DataFrame | None, comps: list[str]) -> np.ndarray:
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
    cph[ci, cell_index(supplied)] = supplied["cost_per_head"].to_numpy(float)
    if np.isnan(cph).any() or (cph < 0).any():
        raise ValueError("supplied curves need a non-negative cost_per_head for all 38 age-sex cells of every "
                         f"component ({', '.join(comps)})")
    return cph


def _reference_cost_per_head(reference_rates: pd.DataFrame | None, tariff: pd.DataFrame, target_year: str, curves: str,
                             observed: pd.DataFrame | None, population: pd.DataFrame | None, comps: list[str]) -> np.ndarray:
    if reference_rates is None or len(reference_rates) == 0:
        raise ValueError(f"curves={curves!r} needs the reference_rates table (docs/data_dictionary.md); add it, "
                         "pass curves='supplied' with your own curves, or curves='none' (registered lists only)")
    rr = reference_rates[reference_rates["measure"].isin(_data.PODS)]
    t = tariff.loc[tariff["financial_year"] == target_year, ["specialty_code", "pod", "price"]]
    rr = rr.merge(t, left_on=["specialty_code", "measure"], right_on=["specialty_code", "pod"], how="left")
    if rr["price"].isna().any():
        raise ValueError(f"the tariff has no {target_year} price for some reference-rate measures "
                         f"({rr.loc[rr['price'].isna(), 'measure'].unique().tolist()}); add the prices or "
                         "pass tariff_uplift")
    f = np.ones(len(rr))
    if curves == "calibrated":
        if observed is None or population is None:
            raise ValueError("curves='calibrated' needs the observed base-year activity and population")
        py = _person_years(population)
        exp_k = (rr.assign(e=rr["rate"].to_numpy(float) / 1000 * py[cell_index(rr)])
                 .groupby(["measure", "specialty_code"], sort=True)["e"].sum())
        obs_k = observed.groupby(["pod", "specialty_code"], sort=True)["activity"].sum()
        obs_k.index = obs_k.index.set_names(["measure", "specialty_code"])
        ratio = (obs_k.reindex(exp_k.index).fillna(0.0) / exp_k.where(exp_k > 0)).fillna(1.0)
        f = ratio.reindex(pd.MultiIndex.from_frame(rr[["measure", "specialty_code"]])).to_numpy(float)
    comp_of = {p: c for c, pods in COMPONENTS.items() for p in pods}
    ci = pd.Index(comps).get_indexer(rr["measure"].map(comp_of))
    cph = np.zeros((len(comps), N_CELLS))
    np.add.at(cph, (ci, cell_index(rr)), f * rr["rate"].to_numpy(float) / 1000 * rr["price"].to_numpy(float))
    return cph


def cost_curves(reference_rates: pd.DataFrame | None, tariff: pd.DataFrame, target_year: str,
                curves: str = "calibrated", observed: pd.DataFrame | None = None,
                population: pd.DataFrame | None = None, supplied: pd.DataFrame | None = None) -> pd.DataFrame:
    """Age-sex cost curves per component of :data:`~pbc_analysis.stages.budgets.costs.COMPONENTS` and ``all``.

    ``cost_per_head`` (GBP a year) = ``sum_k f_k rate_k(a) / 1000 x price_k(target_year)`` over the
    point-of-delivery measures k of the component (reference rates per 1,000 a year); ``f_k`` = 1 for
    ``curves="reference"``, and for ``"calibrated"`` the PCT's observed count of k in the base years over
    the count the reference rates predict for its population. ``weight`` = cost_per_head over its mean
    across ``population`` (so the PCT's weighted list equals its registered list; with ``population`` None
    the plain mean over cells is used). ``"supplied"`` takes ``supplied``; ``"none"`` gives weight 1
    everywhere. The ``all`` component sums the components' costs per head.

    Parameters
    ----------
    reference_rates : DataFrame or None
        ``measure, specialty_code, age_band, sex, rate`` (per 1,000 a year).
    tariff : DataFrame
        With the target year's prices.
    target_year : str
    curves : {"calibrated", "reference", "supplied", "none"}
    observed : DataFrame, optional
        ``pod, specialty_code, activity`` summed over the base years (for ``"calibrated"``).
    population : DataFrame, optional
        ``age_band, sex, person_years`` of the base years.
    supplied : DataFrame, optional
        ``component, age_band, sex, cost_per_head``, all 38 cells of every component (for ``"supplied"``).

    Returns
    -------
    DataFrame
        ``component, age_band, sex, cost_per_head, weight``.

    References
    ----------
    Department of Health (2008), *Resource allocation: weighted capitation formula*, 6th edition, ch. 3-4
    (age-cost curves from national utilisation); indirect standardisation for the calibration.
    """
    check_financial_year(target_year, "target_year")
    check_choice("curves", curves, Curves)
    bands = np.repeat(np.array(_data.AGE_BANDS), 2)
    sexes = np.tile(np.array(_data.SEXES), len(_data.AGE_BANDS))
    comps = list(COMPONENTS)
    if curves == "none":
        cph = np.ones((len(comps), N_CELLS))
    elif curves == "supplied":
        cph = _supplied_cost_per_head(supplied, comps)
    else:
        cph = _reference_cost_per_head(reference_rates, tariff, target_year, curves, observed, population, comps)
    if population is not None and len(population):
        py = _person_years(population)
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
    """Registered list per practice and month and, with ``curves``, the age-sex weighted list of every component.

    Parameters
    ----------
    population : DataFrame
        The validated ``population`` table (practice x month x age band x sex).
    curves : DataFrame, optional
        From :func:`cost_curves`.

    Returns
    -------
    DataFrame
        ``practice_code, month, registered`` and ``weighted_<component>`` (``weighted_list`` is the one of
        all spend, ``weighted_all``).

    References
    ----------
    DH weighted capitation formula (age-sex weighted list = list x the cost weight of each cell).
    """
    pc, practices = pd.factorize(population["practice_code"].astype(str), sort=True)
    mc, months = pd.factorize(population["month"].astype(str), sort=True)
    P, M = len(practices), len(months)
    reg = population["registered"].to_numpy(float)
    flat = pc.astype(np.int64) * M + mc
    out = pd.DataFrame({"practice_code": np.repeat(np.asarray(practices, dtype=str), M),
                        "month": np.tile(np.asarray(months, dtype=str), P),
                        "registered": np.bincount(flat, weights=reg, minlength=P * M)})
    if curves is not None:
        cell = cell_index(population)
        comps = list(dict.fromkeys(curves["component"]))
        W = np.zeros((len(comps), N_CELLS))
        W[pd.Index(comps).get_indexer(curves["component"]), cell_index(curves)] = curves["weight"].to_numpy(float)
        for k, comp in enumerate(comps):  # a handful of components
            out[f"weighted_{comp}"] = np.bincount(flat, weights=reg * W[k, cell], minlength=P * M)
        if "weighted_all" in out.columns:
            out["weighted_list"] = out["weighted_all"]
    return out


def list_growth(lists: pd.DataFrame, target_year: str, base_years: Sequence[str], value: str = "weighted_list") -> pd.DataFrame:
    """The list growth index of each practice's historic budget.

    Parameters
    ----------
    lists : DataFrame
        From :func:`practice_lists`.
    target_year : str
    base_years : sequence of str
    value : str
        The list column (``weighted_list`` or ``registered``).

    Returns
    -------
    DataFrame
        ``practice_code, list_month`` (first month of ``target_year``, or the latest month in ``lists`` if the
        year is beyond them), ``list_base`` (mean of ``value`` over the base years' months), ``list_target``
        (``value`` in the list month) and ``list_index = list_target / list_base``.

    References
    ----------
    DOMAIN.md "Budgets": historic budget scaled for list-size change, ideally a weighted-list index.
    """
    months = sorted(lists["month"].unique())
    first = calendar.fy_start_month(target_year)
    list_month = first if first in set(months) else months[-1]
    fy = calendar.financial_year_of(lists["month"])
    base = lists[np.isin(fy, list(base_years))].groupby("practice_code", sort=True)[value].mean()
    tgt = lists[lists["month"] == list_month].set_index("practice_code")[value]
    out = pd.DataFrame({"practice_code": base.index.astype(str), "list_month": list_month,
                        "list_base": base.to_numpy(float), "list_target": tgt.reindex(base.index).to_numpy(float)})
    out["list_index"] = out["list_target"] / out["list_base"]
    return out


def weighted_lists(lists: pd.DataFrame, months: Sequence[str]) -> pd.DataFrame:
    """Mean of the registered and weighted lists over ``months``, one row per practice.

    Parameters
    ----------
    lists : DataFrame
        From :func:`practice_lists`.
    months : sequence of str

    Returns
    -------
    DataFrame
        ``practice_code, registered, weighted_<component>...``.

    References
    ----------
    DH weighted capitation formula (list averaged over the period).
    """
    cols = [c for c in lists.columns if c == "registered" or c.startswith("weighted_")]
    sub = lists[lists["month"].isin(list(months))]
    return sub.groupby("practice_code", sort=True)[cols].mean().reset_index()
