"""Shared pieces of the savings attribution: the spend identity's vocabulary, codes and the population arrays.

- :data:`FACTORS` (the factors of the spend identity, in chain order), :data:`ELECTIVE_PODS`,
  :data:`LEDGER_LINES`, :data:`LINE_FACTORS` and :data:`LINE_LABELS` (the ledger's lines and the factor parts
  that make each up);
- integer codes of text and categorical columns, reusing the factorisation done during validation;
- the registered list by practice x month x age-sex cell, and the need-weighted lists: the list weighted by the
  reference age-sex rates of a curve (GP referrals of a specialty, non-elective admissions of a specialty, A&E),
  divided by the PCT's crude rate over the window, so that only the age-sex mix moves the need index;
- the financial years of the window (:mod:`pbc_analysis.core.calendar`).

References
----------
Indirect standardisation of lists by reference age-sex rates: Breslow NE, Day NE (1987), *Statistical Methods
in Cancer Research* vol. II, IARC, chapter 2.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from pbc_analysis import data as _data
from pbc_analysis.core import calendar

__all__ = ["ELECTIVE_PODS", "EMERGENCY_PODS", "FACTORS", "LEDGER_LINES", "LINE_FACTORS", "LINE_LABELS"]

#: factors of the spend identity, in chain order
FACTORS: tuple[str, ...] = ("list", "need", "referral_rate", "emergency_rate", "conversion", "follow_up",
                            "tariff", "hrg_mix", "local_variation")
#: points of delivery that GP referrals drive (in this order in the cost-per-referral arrays)
ELECTIVE_PODS: tuple[str, ...] = ("first_op", "followup_op", "elective")
EMERGENCY_PODS: tuple[str, ...] = ("non_elective", "ae")
#: the ledger's lines, in waterfall order
LEDGER_LINES: tuple[str, ...] = ("population", "need", "tariff", "provider_change", "practice_action", "unexplained")
#: factor parts that make up each accounting line (the rest, less practice action, is unexplained)
LINE_FACTORS: dict[str, tuple[str, ...]] = {
    "population": ("list",), "need": ("need",), "tariff": ("tariff",),
    "provider_change": ("conversion", "follow_up", "hrg_mix"),
    "demand": ("referral_rate", "emergency_rate", "local_variation")}
LINE_LABELS: dict[str, str] = {
    "population": "Population (list size)", "need": "Need mix (age, sex)", "tariff": "Tariff",
    "provider_change": "Provider follow-up, conversion and coding", "practice_action": "Practice action",
    "unexplained": "Unexplained (common demand, emergency, chance)"}
_N_AS = len(_data.AGE_BANDS) * len(_data.SEXES)


def _check_columns(df: pd.DataFrame, columns: Iterable[str], name: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{name} must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{name} has no column(s) {missing}; it has {list(df.columns)}. Build it with the "
                         "function named in the docstring")


def _window_months(inputs: _data.Inputs) -> list[str]:
    """The months of the inputs' window (inputs must be loaded with one)."""
    if inputs.window is None:
        raise ValueError("the attribution needs inputs loaded with a window: data.load_inputs(data_dir, start_month, "
                         "end_month)")
    return list(inputs.window.months)


def _fy_of_months(months: Sequence[str]) -> np.ndarray:
    """Financial year of each month (:func:`pbc_analysis.core.calendar.financial_year_of`), as str."""
    return np.asarray(calendar.financial_year_of(list(months)), dtype=str)


def _full_years(months: Sequence[str]) -> list[str]:
    """The financial years all twelve of whose months are in ``months`` (a window: consecutive months)."""
    return calendar.full_financial_years(months[0], months[-1]) if len(months) else []


def _check_years(months: Sequence[str], base_year: str, years: Sequence[str] | None) -> list[str]:
    """``years`` (default: every full year after ``base_year``), checked to be full years of the window after it."""
    full = _full_years(months)
    if not isinstance(base_year, str) or base_year not in full:
        raise ValueError(f"base_year must be a full financial year of the window ({', '.join(full)}), got "
                         f"{base_year!r}; pick a year with all 12 months in the data")
    if years is None:
        years = [y for y in full if y > base_year]
    years = list(years)
    bad = [y for y in years if y not in full or y <= base_year]
    if bad or not years:
        raise ValueError(f"years must be full financial years after base_year {base_year} "
                         f"({', '.join(y for y in full if y > base_year) or 'none'}), got {years!r}")
    return years


def _codes(values: pd.Series, categories: Sequence[str] | pd.Index | None = None) -> tuple[np.ndarray, pd.Index]:
    """Integer codes of a text/categorical column and the sorted categories (or codes into ``categories``)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        cats = pd.Index(values.cat.categories.astype(str))
        raw = values.cat.codes.to_numpy()
        if categories is None:
            order = np.argsort(cats.to_numpy(), kind="stable")
            rank = np.empty_like(order)
            rank[order] = np.arange(order.size)
            return rank[raw].astype(np.int64), pd.Index(cats.to_numpy()[order])
        pos = pd.Index(categories).get_indexer(cats)
        return pos[raw].astype(np.int64), pd.Index(categories)
    if categories is None:
        codes, uniques = pd.factorize(values, sort=True)
        return codes.astype(np.int64), pd.Index(uniques.astype(str))
    raw, uniques = pd.factorize(values)
    pos = pd.Index(categories).get_indexer(pd.Index(uniques))
    return pos[raw].astype(np.int64), pd.Index(categories)


def _inputs_codes(inputs: _data.Inputs, table: str, column: str, categories: Sequence[str] | pd.Index) -> np.ndarray:
    """Positions of ``inputs.<table>[column]`` in ``categories`` (-1 for values not in them), reusing the
    factorisation done during validation."""
    codes, uniques = inputs.factorize(table, column)
    pos = pd.Index(categories).get_indexer(pd.Index(uniques).astype(str))
    return pos[codes].astype(np.int64)


def _population(inputs: _data.Inputs, practices: pd.Index, months: Sequence[str]) -> np.ndarray:
    """Registered list ``(practice, month, age-sex cell)``."""
    pop = inputs.population
    pi = _inputs_codes(inputs, "population", "practice_code", practices)
    mi = _inputs_codes(inputs, "population", "month", months)
    ai = (_inputs_codes(inputs, "population", "age_band", _data.AGE_BANDS) * 2
          + _inputs_codes(inputs, "population", "sex", _data.SEXES))
    P, M = len(practices), len(months)
    return np.bincount((pi * M + mi) * _N_AS + ai, weights=pop["registered"].to_numpy(dtype=float),
                       minlength=P * M * _N_AS).reshape(P, M, _N_AS)


def _need_rates(inputs: _data.Inputs, curves: Sequence[tuple[str, str]]) -> np.ndarray:
    """Reference rates ``(curve, age-sex cell)`` for ``(measure, specialty)`` curves; NaN rows when absent."""
    out = np.full((len(curves), _N_AS), np.nan)
    rr = inputs.reference_rates
    if rr is None or not len(rr):
        return out
    key = pd.MultiIndex.from_tuples(list(curves))
    k = key.get_indexer(pd.MultiIndex.from_arrays([rr["measure"].astype(str), rr["specialty_code"].astype(str)]))
    a = (_inputs_codes(inputs, "reference_rates", "age_band", _data.AGE_BANDS) * 2
         + _inputs_codes(inputs, "reference_rates", "sex", _data.SEXES))
    ok = k >= 0
    out[k[ok], a[ok]] = rr["rate"].to_numpy(dtype=float)[ok]
    return out


def _weighted_lists(registered: np.ndarray, rates: np.ndarray) -> np.ndarray:
    """Need-weighted lists ``(practice, curve, month)`` in patients: ``sum_a reg_a r_a / rbar``, rbar the
    PCT's crude rate over the window (a constant, so only the age-sex mix moves the need index). A curve
    without reference rates, or with none for the PCT's population, has need index 1 (weighted = list)."""
    reg_tot = registered.sum(axis=2)  # (P, M)
    P, M, _ = registered.shape
    out = np.empty((P, rates.shape[0], M))
    ok = np.isfinite(rates).all(axis=1)
    r = np.nan_to_num(rates)
    num = np.einsum("pma,ca->pcm", registered, r)
    rbar = num.sum(axis=(0, 2)) / max(reg_tot.sum(), 1.0)
    ok &= rbar > 0
    out[:, ok, :] = num[:, ok, :] / rbar[ok][None, :, None]
    out[:, ~ok, :] = reg_tot[:, None, :]
    return out

