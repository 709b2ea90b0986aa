"""Exact accounting of a change in spend: the spend identity's cells and factors, LMDI-I and Shapley.

Spend of each cell, practice p x provider v x specialty s x point of delivery (pod) x financial year,
is written as the product of DOMAIN.md's spend identity, with the price split into the national
tariff and the provider's HRG mix (cost per unit relative to tariff)::

    spend = list x need x referral_rate x conversion x follow_up x tariff x hrg_mix x local_variation  (elective)
          = list x need x emergency_rate x tariff x hrg_mix x local_variation                          (emergency)

``list`` = registered person-years; ``need`` = need-weighted person-years / list, the weights being the
reference age-sex rates of the ``reference_rates`` table for GP referrals of the specialty (elective
pods), non-elective admissions of the specialty, or A&E (need index 1 when the table is absent);
``referral_rate`` = the cell's GP referrals / weighted person-years (practice behaviour);
``emergency_rate`` = emergency activity / weighted person-years; ``tariff`` = national price. Provider
behaviour is measured where it happens, over all the practices a provider serves in the year:
``conversion`` = its first attendances per referral in the specialty, ``follow_up`` = its activity of
the pod per first attendance (1 for first attendances; follow-ups per first; elective admissions per
first), ``hrg_mix`` = its cost / (activity x tariff). ``local_variation`` = the cell's own ratios
relative to its provider's (chance over a handful of patients, and the practice's case mix): the
product telescopes to the cell's cost exactly. (Measured cell by cell, a practice's follow-ups per
first over a few dozen patients are mostly noise, and with small counts the noise does not average
out of a decomposition: on the synthetic PCT it moved about GBP 0.7m a year onto the provider line.)

The change between a base year and a later year is split into one additive part per factor by

- **LMDI-I** (Ang 2005, "The LMDI approach to decomposition analysis: a practical guide", Energy Policy
  33:867-871): ``part_k = L(V1, V0) ln(x_k1 / x_k0)``, ``L(a, b) = (a - b) / (ln a - ln b)``;
- **Shapley** (Shorrocks 2013, J Econ Inequality 11:99-126; Albrecht, Francois and Schoors 2002,
  "A Shapley decomposition of carbon emissions without residuals", Energy Policy 30:727-736):
  ``part_k`` = the average over all orders of switching factors from base to target of the change
  when factor k switches; for a product it is ``(x_k1 - x_k0) int_0^1 prod_{j != k} (x0_j + t (x1_j -
  x0_j)) dt`` (Owen's multilinear extension), integrated exactly by Gauss-Legendre quadrature,
  vectorised over cells, valid with zeros.

Both add up to each cell's change with no residual, so every aggregation (practice, consortium, PCT;
specialty; provider; pod) of the cell parts adds up to the aggregate change (tested to 1e-9 relative).
The ledger uses Shapley by default: with the small counts of practice x provider cells LMDI-I's
logarithmic-mean weights are pulled down by count noise (``E L(a, b) < L(E a, E b)``): over ten
synthetic PCTs its tariff and population lines were about 1.1% below the truth, Shapley's within 0.3%.
Zeros, new and closed cells are handled by explicit rules:

- *chain gaps*: a zero count followed by a positive count further down the cell's chain (e.g.
  follow-ups in a year with no first attendance, referred the year before) is replaced, for the factor
  definitions only, by the next positive count, so that the ratio between them is 1 and the identity
  still holds (a zero weighted list is replaced by the list: need index 1);
- *undefined factors*: in a year with spend every factor is defined (a provider ratio that is 0/0 is
  1 and the cell's local variation carries it); in a year without spend, a ratio 0/0 (every factor
  after the first zero of the chain) takes the other year's value (it does not change); a missing
  tariff likewise;
- *new or closed cells* (spend zero in exactly one year, e.g. a specialty a practice starts or stops
  using): exactly one factor is zero in that year (the first zero of the chain: the referral rate when
  the practice stopped referring, the provider's conversion when the provider stopped the service, the
  local variation otherwise); LMDI gives it the whole change (the limit of Ang and Liu 2007, "Handling
  zero values in the LMDI", Energy Policy 35:238-246; several zero factors share it equally); Shapley
  computes the products directly and needs no rule;
- cells with no spend in either year contribute nothing.

Sampling uncertainty of the accounting lines: :mod:`pbc_analysis.stages.attribution.delta` (the delta method,
by default) and :mod:`pbc_analysis.stages.attribution.bootstrap` (a Poisson parametric bootstrap of the counts,
its check); lists, need weights and tariffs fixed.

References
----------
Ang BW (2005), Energy Policy 33:867-871; Ang BW, Liu N (2007), Energy Policy 35:238-246; Shorrocks AF (2013),
J Econ Inequality 11:99-126; Albrecht J, Francois D, Schoors K (2002), Energy Policy 30:727-736; Owen G (1972),
Management Science 18:P64-P79 (the multilinear extension).
"""

from __future__ import annotations

import functools
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from pbc_analysis import data as _data
from pbc_analysis.core.checks import check_choice
from pbc_analysis.stages.attribution.common import (
    ELECTIVE_PODS,
    FACTORS,
    LINE_FACTORS,
    _check_columns,
    _full_years,
    _fy_of_months,
    _inputs_codes,
    _need_rates,
    _population,
    _weighted_lists,
    _window_months,
)
from pbc_analysis.stages.attribution.panel import _completion_array, completeness_factors
from pbc_analysis.stages.attribution.params import DEFAULTS, Method

__all__ = ["decompose", "lmdi", "shapley", "spend_cells", "spend_factors"]

_CELL_KEYS = ["practice_code", "provider_code", "specialty_code", "pod"]


def _pair_counts(inputs: _data.Inputs, ix: Mapping[str, Any], years: Sequence[str], comp: pd.DataFrame,
                 lag_months: Sequence[str] = ()) -> tuple[np.ndarray, ...]:
    """Practice-provider pairs seen and their completed activity and cost ``(pair, specialty, pod, year)``, GP
    referrals ``(pair, specialty, year)`` and the completed activity of each of ``lag_months``
    ``(month, pair, specialty, pod)``; returns ``pair_p, pair_v, A, C, R, lagged``."""
    practices, providers, specs, pods, months = ix["practices"], ix["providers"], ix["specs"], ix["pods"], ix["months"]
    P, V, S, K, Y = len(practices), len(providers), len(specs), len(pods), len(years)
    yi_m = pd.Index(years).get_indexer(_fy_of_months(months))  # -1: month not in a kept year
    act, ref = inputs.activity, inputs.referrals
    ap = _inputs_codes(inputs, "activity", "practice_code", practices)
    av = _inputs_codes(inputs, "activity", "provider_code", providers)
    rp = _inputs_codes(inputs, "referrals", "practice_code", practices)
    rv = _inputs_codes(inputs, "referrals", "provider_code", providers)
    present = np.zeros(V * P, dtype=bool)
    present[av * P + ap] = True
    present[rv * P + rp] = True
    pair_of = np.cumsum(present) - 1
    pkeys = np.flatnonzero(present)
    NP = pkeys.size
    a_pair = pair_of[av * P + ap]
    a_s = _inputs_codes(inputs, "activity", "specialty_code", specs)
    a_k = _inputs_codes(inputs, "activity", "pod", pods)
    a_m = _inputs_codes(inputs, "activity", "month", months)
    div = _completion_array(comp, pods, months)[a_k, a_m]
    a_y = yi_m[a_m]
    ok = a_y >= 0
    flat = ((a_pair * S + a_s) * K + a_k) * Y + a_y
    n4 = NP * S * K * Y
    A = np.bincount(flat[ok], weights=(act["activity"].to_numpy(dtype=float) / div)[ok], minlength=n4)
    C = np.bincount(flat[ok], weights=(act["cost"].to_numpy(dtype=float) / div)[ok], minlength=n4)
    r_s = _inputs_codes(inputs, "referrals", "specialty_code", specs)
    r_y = yi_m[_inputs_codes(inputs, "referrals", "month", months)]
    okr = r_y >= 0
    Rr = np.bincount(((pair_of[rv * P + rp] * S + r_s) * Y + r_y)[okr],
                     weights=ref["referrals"].to_numpy(dtype=float)[okr], minlength=NP * S * Y).reshape(NP, S, Y)
    lagged = np.zeros((len(lag_months), NP, S, K))
    for j, m in enumerate(pd.Index(months).get_indexer(list(lag_months))):   # a few lagged months
        at = a_m == m
        lagged[j] = np.bincount(((a_pair * S + a_s) * K + a_k)[at], weights=(act["activity"].to_numpy(dtype=float)
                                                                            / div)[at], minlength=NP * S * K
                                ).reshape(NP, S, K)
    return pkeys % P, pkeys // P, A.reshape(NP, S, K, Y), C.reshape(NP, S, K, Y), Rr, lagged


def _lists_and_tariff(inputs: _data.Inputs, ix: Mapping[str, Any],
                      years: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Person-years ``(practice, year)``, need-weighted person-years ``(practice, curve, year)`` (curves: GP
    referrals by specialty, non-elective by specialty, A&E) and the tariff ``(specialty, pod, year)``."""
    practices, specs, pods, months = ix["practices"], ix["specs"], ix["pods"], ix["months"]
    M, S, K, Y = len(months), len(specs), len(pods), len(years)
    yi_m = pd.Index(years).get_indexer(_fy_of_months(months))
    reg = _population(inputs, practices, months)
    onehot = np.zeros((M, Y))
    onehot[np.flatnonzero(yi_m >= 0), yi_m[yi_m >= 0]] = 1.0
    L = reg.sum(axis=2) @ onehot / 12.0  # (P, Y) person-years
    curves = ([("referrals", s) for s in specs] + [("non_elective", s) for s in specs] + [("ae", _data.AE_SPECIALTY)])
    Wc = np.einsum("pcm,my->pcy", _weighted_lists(reg, _need_rates(inputs, curves)), onehot) / 12.0
    tar = inputs.tariff
    T = np.full((S, K, Y), np.nan)
    ts, tk, ty = specs.get_indexer(tar["specialty_code"]), pd.Index(pods).get_indexer(tar["pod"]), \
        pd.Index(years).get_indexer(tar["financial_year"])
    okt = (ts >= 0) & (tk >= 0) & (ty >= 0)
    T[ts[okt], tk[okt], ty[okt]] = tar["price"].to_numpy(dtype=float)[okt]
    return L, Wc, T


def spend_cells(inputs: _data.Inputs, years: Sequence[str] | None = None, lag_months: int = DEFAULTS["lag_months"],
                reference_months: int = DEFAULTS["reference_months"],
                completeness: pd.DataFrame | None = None, lagged: bool = False) -> pd.DataFrame:
    """The counts behind the spend identity, per practice x provider x specialty x pod x financial year.

    Parameters
    ----------
    inputs : pbc_analysis.data.Inputs
        Validated inputs loaded with a window.
    years : sequence of str, optional
        Full financial years to keep (None: every full year of the window).
    lag_months, reference_months : int
        For :func:`pbc_analysis.stages.attribution.panel.completeness_factors` (when ``completeness`` is not given).
    completeness : pandas.DataFrame, optional
        The completeness of the lagged months; their activity and cost are divided by it.
    lagged : bool
        Also ``lagged_0``, ``lagged_1``, ...: the row's completed activity in each lagged month of
        ``completeness`` (sorted; 0 in other years), for the completion error (:mod:`.completion`).

    Returns
    -------
    pandas.DataFrame
        ``practice_code, provider_code, specialty_code, pod, financial_year, list`` (registered person-years),
        ``weighted_list`` (need-weighted person-years: GP-referral reference rates of the specialty for elective
        pods, non-elective or A&E rates for those), ``referrals`` and ``first`` (GP referrals to the provider in
        the specialty and the first attendances they led to; missing for emergency pods), ``activity``, ``cost``
        (GBP) and ``tariff`` (national price; missing when the tariff has none). Only cells with spend,
        referrals or activity in some kept year appear, with a row for every kept year.

    References
    ----------
    DOMAIN.md "Spend identity"; the module docstring.
    """
    months = _window_months(inputs)
    full = _full_years(months)
    years = full if years is None else list(years)
    bad = [y for y in years if y not in full]
    if bad:
        raise ValueError(f"years {bad} are not full financial years of the window; full years are {full}")
    comp = completeness if completeness is not None else completeness_factors(inputs, lag_months, reference_months)
    ix = {"practices": pd.Index(sorted(inputs.practices["practice_code"])),
          "providers": pd.Index(sorted(inputs.providers["provider_code"])),
          "specs": pd.Index(sorted(inputs.specialties["specialty_code"])), "pods": list(_data.PODS), "months": months}
    specs, pods, Y = ix["specs"], ix["pods"], len(years)
    S = len(specs)
    lagged_months = sorted(set(comp["month"].astype(str))) if lagged and len(comp) else []
    pair_p, pair_v, A, C, Rr, lag = _pair_counts(inputs, ix, years, comp, lagged_months)
    L, Wc, T = _lists_and_tariff(inputs, ix, years)
    # which (pair, specialty, pod) cells exist
    is_ae_spec = specs.to_numpy() == _data.AE_SPECIALTY
    el_k = np.isin(np.array(pods), ELECTIVE_PODS)
    allowed = np.where(is_ae_spec[:, None], np.array(pods)[None, :] == "ae",
                       np.array(pods)[None, :] != "ae")  # (S, K)
    active = (A.sum(axis=3) > 0) | (C.sum(axis=3) > 0) | ((Rr.sum(axis=2) > 0)[:, :, None] & el_k[None, None, :])
    cp, cs, ck = np.nonzero(active & allowed[None, :, :])
    cp_r, cs_r, ck_r = np.repeat(cp, Y), np.repeat(cs, Y), np.repeat(ck, Y)
    yy = np.tile(np.arange(Y), cp.size)
    elective = el_k[ck_r]
    curve = np.where(elective, cs_r, np.where(np.array(pods)[ck_r] == "ae", 2 * S, S + cs_r))
    first_k = pods.index("first_op")
    return pd.DataFrame({
        "practice_code": ix["practices"].to_numpy()[pair_p[cp_r]], "provider_code": ix["providers"].to_numpy()[pair_v[cp_r]],
        "specialty_code": specs.to_numpy()[cs_r], "pod": np.array(pods)[ck_r], "financial_year": np.array(years)[yy],
        "list": L[pair_p[cp_r], yy], "weighted_list": Wc[pair_p[cp_r], curve, yy],
        "referrals": np.where(elective, Rr[cp_r, cs_r, yy], np.nan),
        "first": np.where(elective, A[cp_r, cs_r, first_k, yy], np.nan),
        "activity": A[cp_r, cs_r, ck_r, yy], "cost": C[cp_r, cs_r, ck_r, yy], "tariff": T[cs_r, ck_r, yy],
        **{f"lagged_{j}": np.where(np.array(years)[yy] == _fy_of_months([m])[0], lag[j][cp_r, cs_r, ck_r], 0.0)
           for j, m in enumerate(lagged_months)}})


def _group_codes(frame: pd.DataFrame, cols: Sequence[str]) -> np.ndarray:
    """Codes of the combinations of ``cols`` in order of first appearance (what factorising a MultiIndex of the
    columns gives, from each column's own codes: no tuples or text built, about 20 times faster)."""
    key = np.zeros(len(frame), dtype=np.int64)
    for c in cols:
        codes = pd.factorize(frame[c])[0].astype(np.int64) + 1      # missing (-1) is a value of its own
        key = pd.factorize(key * (int(codes.max(initial=0)) + 1) + codes)[0].astype(np.int64)
    return key


def _once_mask(cells: pd.DataFrame) -> np.ndarray:
    """One elective row per practice x provider x specialty x year: referrals and first attendances
    repeat on the three elective pods of a cell and must be counted once."""
    elective = cells["pod"].isin(ELECTIVE_PODS).to_numpy()
    g0 = _group_codes(cells, ("practice_code", "provider_code", "specialty_code", "financial_year"))
    once = np.zeros(len(cells), dtype=bool)
    once[pd.Series(np.flatnonzero(elective)).groupby(g0[elective]).first().to_numpy()] = True
    return once


def _pooled(cells: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Provider-level ratios per cell row: conversion (first attendances per referral) of the provider
    and specialty, activity per first attendance and HRG mix (cost / (activity x tariff)) of the
    provider, specialty and pod, each pooled over all practices in the year (NaN where 0/0)."""
    pod = cells["pod"].astype(str).to_numpy()
    elective = np.isin(pod, ELECTIVE_PODS)
    g1 = _group_codes(cells, ("provider_code", "specialty_code", "financial_year"))
    g2 = _group_codes(cells, ("provider_code", "specialty_code", "pod", "financial_year"))
    R = np.nan_to_num(cells["referrals"].to_numpy(dtype=float))
    F = np.nan_to_num(cells["first"].to_numpy(dtype=float))
    A = cells["activity"].to_numpy(dtype=float)
    V = cells["cost"].to_numpy(dtype=float)
    T = cells["tariff"].to_numpy(dtype=float)
    once = _once_mask(cells)
    rs = np.bincount(g1, weights=np.where(once, R, 0.0))
    fs = np.bincount(g1, weights=np.where(once, F, 0.0))
    as_ = np.bincount(g2, weights=A)
    fs2 = np.bincount(g2, weights=np.where(elective, F, 0.0))
    at = np.bincount(g2, weights=A * np.nan_to_num(T))
    cs = np.bincount(g2, weights=V)
    with np.errstate(divide="ignore", invalid="ignore"):
        conv = np.where(rs > 0, fs / np.where(rs > 0, rs, 1.0), np.nan)[g1]
        fu = np.where(fs2 > 0, as_ / np.where(fs2 > 0, fs2, 1.0), np.nan)[g2]
        hrg = np.where(at > 0, cs / np.where(at > 0, at, 1.0), np.nan)[g2]
    fu = np.where(pod == "first_op", 1.0, fu)
    return conv, fu, hrg


def _factor_matrix(L, W, R, F, A, V, T, elective, conv, fu, hrg) -> np.ndarray:
    """Factors ``(..., 9)`` in :data:`FACTORS` order (any leading shape): the cell's own list, need and
    referral (or emergency) rate, its provider's pooled conversion, follow-up ratio and HRG mix, the
    tariff, and ``local_variation`` = cost / the product of the others (the cell's deviation from its
    provider's pooled ratios). Chain-gap rule on the cell's own counts; NaN marks an undefined factor."""
    with np.errstate(divide="ignore", invalid="ignore"):
        W = np.where(W > 0, W, L)
        F = np.where((F <= 0) & (A > 0), A, F)          # chain gaps: a zero before a positive count
        R = np.where((R <= 0) & (F > 0), F, R)
        one = np.ones(np.broadcast(L, W, A, V).shape)
        rate = np.where(elective, R / W, one)
        erate = np.where(elective, one, A / W)
        cv = np.where(elective, conv, one)
        fv = np.where(elective, fu, one)
        others = [L * one, W / L * one, rate, erate, cv, fv, T * one, hrg * one]
        # with spend, every factor must be defined: an undefined pooled ratio (the provider had none of
        # that activity in the year) is 1 and the cell's own deviation carries it
        others = [np.where(np.isnan(x) & (V > 0), 1.0, x) for x in others]
        prod = one.copy()
        for x in others:
            prod = prod * np.where(np.isnan(x), 1.0, x)
        local = np.where(V > 0, V / np.where(prod > 0, prod, np.nan), np.where(prod > 0, 0.0, np.nan))
        out = np.stack(others + [local], axis=-1)
    return out


def spend_factors(cells: pd.DataFrame) -> pd.DataFrame:
    """``cells`` (:func:`spend_cells`) with one column per factor of :data:`FACTORS`; NaN where a factor
    is undefined in that year (it then takes the other year's value in :func:`decompose`).

    Provider behaviour is measured where it happens: ``conversion``, ``follow_up`` and ``hrg_mix`` are
    the provider's ratios pooled over all its practices in the year (a hospital's follow-up policy
    applies to every practice it serves; a single practice's ratios over a handful of patients are
    mostly chance), and ``local_variation`` is the cell's own deviation from them (chance and the
    practice's case mix; it joins the unexplained line). The product of the factors is the cell's cost.

    Parameters
    ----------
    cells : pandas.DataFrame
        :func:`spend_cells`.

    Returns
    -------
    pandas.DataFrame
        ``cells`` with one column per factor.

    References
    ----------
    DOMAIN.md "Spend identity"; the module docstring (chain gaps and undefined factors).
    """
    _check_columns(cells, ["provider_code", "specialty_code", "pod", "financial_year", "list", "weighted_list",
                           "referrals", "first", "activity", "cost", "tariff"], "cells")
    elective = cells["pod"].isin(ELECTIVE_PODS).to_numpy()
    cols = [cells[c].to_numpy(dtype=float) for c in ("list", "weighted_list", "referrals", "first", "activity",
                                                    "cost", "tariff")]
    cols[2], cols[3] = np.nan_to_num(cols[2]), np.nan_to_num(cols[3])
    L, W, R, F, A, V, T = cols
    X = _factor_matrix(L, W, R, F, A, V, T, elective, *_pooled(cells))
    out = cells.copy()
    for i, f in enumerate(FACTORS):
        out[f] = X[:, i]
    return out


def _logmean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Logarithmic mean ``L(a, b) = (a - b) / (ln a - ln b)``, ``L(a, a) = a``, 0 if either is 0."""
    out = np.zeros(np.broadcast(a, b).shape, dtype=np.result_type(a, b, float))
    a, b = np.broadcast_to(a, out.shape), np.broadcast_to(b, out.shape)
    pos = (a.real > 0) & (b.real > 0)   # real parts: a complex step (:mod:`.delta`) keeps every branch
    aa, bb = a[pos], b[pos]
    d = np.log(aa) - np.log(bb)
    small = np.abs(d) < 1e-8
    out[pos] = np.where(small, (aa + bb) / 2, (aa - bb) / np.where(small, 1.0, d))
    return out


def _numeric(x: Any) -> np.ndarray:
    """``x`` as float64, or complex128 when it is complex (the complex step of :mod:`.delta` differentiates the
    decompositions exactly; every branch is taken on real parts, so real inputs give the same result as before)."""
    x = np.asarray(x)
    return x.astype(complex) if np.iscomplexobj(x) else x.astype(float)


def _fill_pair(x0: np.ndarray, x1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Undefined factors take the other year's value; undefined in both: 1 (no change)."""
    x0 = np.where(np.isnan(x0), x1, x0)
    x1 = np.where(np.isnan(x1), x0, x1)
    return np.where(np.isnan(x0), 1.0, x0), np.where(np.isnan(x1), 1.0, x1)


def lmdi(v0: np.ndarray, v1: np.ndarray, x0: np.ndarray, x1: np.ndarray) -> np.ndarray:
    """LMDI-I parts (Ang 2005) of ``v1 - v0`` over factors: ``(n, K)`` from factor matrices ``(n, K)``.

    ``part_k = L(v1, v0) ln(x1_k / x0_k)`` where both values are positive. When exactly one of ``v0``,
    ``v1`` is zero, the whole change goes to the factor(s) that are zero in that year (split equally if
    several; Ang and Liu 2007's limit); when both are zero every part is 0. Undefined (NaN) factors
    take the other year's value. Parts add up to ``v1 - v0`` in every row when the factors multiply to
    ``v0`` and ``v1``.

    Parameters
    ----------
    v0, v1 : numpy.ndarray
        ``(n,)`` values in the base and target year.
    x0, x1 : numpy.ndarray
        ``(n, K)`` factors in the base and target year.

    Returns
    -------
    numpy.ndarray
        ``(n, K)`` parts.

    References
    ----------
    Ang BW (2005), Energy Policy 33:867-871; Ang BW, Liu N (2007), Energy Policy 35:238-246 (zero values).
    """
    v0, v1 = _numeric(v0), _numeric(v1)
    x0, x1 = _fill_pair(_numeric(x0), _numeric(x1))
    parts = np.zeros(np.broadcast(x0, x1).shape, dtype=np.result_type(x0, x1, v0, v1))
    both = (v0.real > 0) & (v1.real > 0)
    L = _logmean(v1, v0)
    with np.errstate(divide="ignore", invalid="ignore"):
        lr = np.log(x1 / x0)
    parts[both] = (L[..., None] * np.where(np.isfinite(lr), lr, 0.0))[both]
    one = (v0.real > 0) ^ (v1.real > 0)
    if one.any():
        zero_fac = np.where((v0.real > 0)[..., None], x1.real == 0, x0.real == 0) & one[..., None]
        nz = zero_fac.sum(axis=-1, keepdims=True)
        share = np.where(nz > 0, zero_fac / np.maximum(nz, 1), 1.0 / x0.shape[-1])
        parts = np.where(one[..., None], share * (v1 - v0)[..., None], parts)
    return parts


def shapley(x0: np.ndarray, x1: np.ndarray) -> np.ndarray:
    """Shapley parts of ``prod(x1) - prod(x0)`` over factors: ``(..., K)`` from factor matrices ``(..., K)``.

    The Shapley value of factor k (Shorrocks 2013; Albrecht et al. 2002) averages, over all orders in
    which the factors switch from base to target values, the change when k switches:
    ``part_k = (x1_k - x0_k) sum_{s=0}^{K-1} s!(K-s-1)!/K! e_s^{(k)}``, ``e_s^{(k)}`` the sum over subsets
    S of the other factors with ``|S| = s`` of ``prod_{j in S} x1_j prod_{j not in S} x0_j``. Since
    ``s!(K-s-1)!/K! = int_0^1 t^s (1-t)^(K-1-s) dt``, this is Owen's (1972) multilinear extension:
    ``part_k = (x1_k - x0_k) int_0^1 prod_{j != k} (x0_j + t (x1_j - x0_j)) dt``, a polynomial of degree
    K - 1 in t, integrated exactly by Gauss-Legendre quadrature with ``K // 2 + 1`` nodes (products
    without factor k from prefix and suffix products: no division, exact with zeros). Undefined (NaN)
    factors take the other year's value. The parts add up to ``prod(x1) - prod(x0)`` (to rounding).

    Parameters
    ----------
    x0, x1 : numpy.ndarray
        ``(..., K)`` factors in the base and target year.

    Returns
    -------
    numpy.ndarray
        ``(..., K)`` parts.

    References
    ----------
    Shorrocks AF (2013), J Econ Inequality 11:99-126; Albrecht J, Francois D, Schoors K (2002), Energy Policy
    30:727-736; Owen G (1972), Management Science 18:P64-P79.
    """
    x0, x1 = _fill_pair(_numeric(x0), _numeric(x1))
    x0, x1 = np.broadcast_arrays(x0, x1)
    K = x0.shape[-1]
    nodes, wts = np.polynomial.legendre.leggauss(K // 2 + 1)
    nodes, wts = (nodes + 1) / 2, wts / 2  # [-1, 1] -> [0, 1]
    a = np.ascontiguousarray(np.moveaxis(x0, -1, 0))  # factors first: fast products over factors
    d = np.ascontiguousarray(np.moveaxis(x1, -1, 0)) - a
    acc = np.zeros(a.shape, dtype=a.dtype)
    z = np.empty(a.shape, dtype=a.dtype)
    prefix = np.empty(a.shape, dtype=a.dtype)
    suffix = np.empty(a.shape, dtype=a.dtype)
    prefix[0] = 1.0
    suffix[K - 1] = 1.0
    for t, w in zip(nodes, wts):  # a handful of quadrature nodes
        np.multiply(d, t, out=z)
        z += a
        for k in range(1, K):  # a loop over the handful of factors
            np.multiply(prefix[k - 1], z[k - 1], out=prefix[k])
            np.multiply(suffix[K - k], z[K - k], out=suffix[K - 1 - k])
        prefix *= suffix
        prefix *= w
        acc += prefix
        prefix[0] = 1.0
    acc *= d
    return np.moveaxis(acc, 0, -1)


def _pair_years(cells: pd.DataFrame, base_year: str,
                years: Sequence[str]) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Key table and row positions ``(cell, year)`` of each cell's base row and target rows."""
    keys = cells[_CELL_KEYS].astype(str)
    cid, uniq = pd.factorize(pd.MultiIndex.from_frame(keys))
    yid = pd.Index([base_year, *years]).get_indexer(cells["financial_year"].astype(str))
    n = len(uniq)
    pos = np.full((n, 1 + len(years)), -1, dtype=np.int64)
    ok = yid >= 0
    pos[cid[ok], yid[ok]] = np.flatnonzero(ok)
    key_frame = uniq.to_frame(index=False)
    key_frame.columns = _CELL_KEYS
    return key_frame, pos[:, 0], pos[:, 1:]


def decompose(cells: pd.DataFrame, base_year: str, years: Sequence[str] | None = None,
              method: str = DEFAULTS["method"]) -> pd.DataFrame:
    """Additive parts of each cell's change in spend from ``base_year`` to each of ``years``.

    ``cells``: :func:`spend_cells` (factors are computed here). ``method``: ``lmdi`` (LMDI-I) or
    ``shapley``. Returns one row per cell and target year: the cell keys, ``financial_year``,
    ``base_year``, ``spend_base``, ``spend``, ``change`` and one column per factor of :data:`FACTORS`;
    the factor columns add up to ``change`` in every row (so any aggregation adds up too). Every cell
    needs a row (zeros included) in ``base_year`` and each target year, as :func:`spend_cells` gives.

    Parameters
    ----------
    cells : pandas.DataFrame
        :func:`spend_cells`.
    base_year : str
        The year changes are measured from.
    years : sequence of str, optional
        Target years (None: every year of ``cells`` after ``base_year``).
    method : {"shapley", "lmdi"}

    Returns
    -------
    pandas.DataFrame

    References
    ----------
    :func:`lmdi`, :func:`shapley`.
    """
    method = check_choice("method", method, Method)
    _check_columns(cells, _CELL_KEYS + ["financial_year", "cost"], "cells")
    present = sorted(set(cells["financial_year"].astype(str)))
    if base_year not in present:
        raise ValueError(f"base_year {base_year!r} is not in cells (years {present}); build the cells with it")
    years = [y for y in present if y > base_year] if years is None else list(years)
    miss = [y for y in years if y not in present]
    if miss or not years:
        raise ValueError(f"years {miss or years} are not in cells (years {present})")
    fac = spend_factors(cells)
    X = fac[list(FACTORS)].to_numpy(dtype=float)
    Vc = fac["cost"].to_numpy(dtype=float)
    keys, p0, p1 = _pair_years(fac, base_year, years)
    sel = np.concatenate([p0[:, None], p1], axis=1)
    if np.any(sel < 0):
        bad = keys.loc[(sel < 0).any(axis=1)].head(3).to_dict("records")
        raise ValueError(f"cells must have a row for every cell in base_year and each of years (zeros included, as "
                         f"spend_cells gives); {int((sel < 0).any(axis=1).sum())} cells lack one, e.g. {bad}")
    frames = []
    for j, y in enumerate(years):
        x0, x1, v0, v1 = X[p0], X[p1[:, j]], Vc[p0], Vc[p1[:, j]]
        keep = (v0 > 0) | (v1 > 0)
        x0, x1, v0, v1 = x0[keep], x1[keep], v0[keep], v1[keep]
        if method == "lmdi":
            parts = lmdi(v0, v1, x0, x1)
        else:
            parts = shapley(x0, x1)
            # the product of the factors equals the cost up to rounding; put the rounding on the largest part
            resid = (v1 - v0) - parts.sum(axis=1)
            big = np.argmax(np.abs(parts), axis=1)
            parts[np.arange(parts.shape[0]), big] += resid
        f = keys.loc[keep].reset_index(drop=True)
        f["financial_year"] = y
        f["base_year"] = base_year
        f["spend_base"], f["spend"], f["change"] = v0, v1, v1 - v0
        for i, name in enumerate(FACTORS):
            f[name] = parts[:, i]
        frames.append(f)
    return pd.concat(frames, ignore_index=True)


def _line_parts(parts: np.ndarray) -> dict[str, np.ndarray]:
    """Accounting lines from factor parts ``(..., K)``."""
    idx = {f: i for i, f in enumerate(FACTORS)}
    return {line: functools.reduce(np.add, [parts[..., idx[f]] for f in fs]) for line, fs in LINE_FACTORS.items()}
