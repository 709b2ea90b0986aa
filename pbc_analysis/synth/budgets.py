"""The synthetic PCT's indicative budgets (historic rule) and its high-cost patients (the risk pool's cases).

Budgets (DOMAIN.md "Historic budget")
  For each financial year Y from the one of the first engagement on:
  budget_pY = sum_{v,s,pod} mean_{y in {Y-1, Y-2} in window}(12/months_y x A_pvs,pod,y)
              x price_{s,pod}(Y) x h_v x list_p(first month of Y)/mean list_p over those years
              x months_Y/12,
  A the EXPECTED activity (Poisson means, complete data): the historic average of the two
  previous years re-costed at the new tariff and scaled for list growth.

High-cost patients (DOMAIN.md: top 5% average GBP 9,800 vs 490, about half of all cost)
  With a Pareto(alpha=1.8) tail for the top 5%, patients above GBP 10,000 hold about 26% of
  hospital cost, so per practice-year N ~ Poisson(0.26 x expected spend / E[cost]), costs
  10,000 x Pareto(1.8) truncated at 300,000 (mean about 21,000; about 5% above 50,000).
  About 35% of a practice's patients (up to last year's count) are chronic and keep their
  pseudonymised id (a bijective 64-bit mix of a counter and a random key, in hex) from the
  previous year.

References
----------
``../shared/DOMAIN.md`` "Budgets" and "Numbers for calibrating synthetic data (England)".
Steele, G. (2014), "Fast splittable pseudorandom number generators" (the splitmix64 finaliser of :func:`mix64`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pbc_analysis.synth.activity import Layout, Means
from pbc_analysis.synth.params import SynthParams
from pbc_analysis.synth.world import World

__all__ = ["BUDGET_RULE", "hex_ids", "high_cost_patients", "historic_budgets", "mix64"]

BUDGET_RULE = ("mean of the two previous financial years' expected activity (annualised), re-costed at "
               "the new year's tariff x provider HRG factor, x list at the start of the year / mean list "
               "over the base years, x months of the year in the window / 12")


def historic_budgets(w: World, lay: Layout, m: Means, mu_act: np.ndarray, first_engagement: int) -> pd.DataFrame:
    """The budgets table: each practice's historic budget for every year from the first engagement's.

    Parameters
    ----------
    w : World
    lay : Layout
    m : Means
    mu_act : numpy.ndarray
        (npair, NC, M) expected activity (complete data).
    first_engagement : int
        Offset of the first cohort.

    Returns
    -------
    pandas.DataFrame
        practice_code, financial_year, budget (pence-rounded pounds), sorted by practice and year.

    References
    ----------
    The module docstring ("Budgets"); :data:`BUDGET_RULE`.
    """
    win, P = w.win, w.prac.n
    fy_idx, fy_first, fy_months = win.fy_idx, win.fy_first, win.fy_months
    A = np.add.reduceat(mu_act, fy_first, axis=2)  # (npair, NC, n_fy) expected activity
    b_prac, b_fy, b_val = [], [], []
    for y in range(int(fy_idx[first_engagement]), win.n_fy):
        base = [b for b in (y - 1, y - 2) if b >= 0]
        if not base:
            continue
        annual = sum(A[:, :, b] * (12.0 / fy_months[b]) for b in base) / len(base)  # (npair, NC)
        recost = np.add.reduceat(np.sum(annual * lay.price_cf[None, :, y], axis=1) * m.hrg, w.pairs.start)
        base_months = np.concatenate([np.flatnonzero(fy_idx == b) for b in base])
        list_tot = w.pop.list_total
        list_ratio = list_tot[:, fy_first[y]] / list_tot[:, base_months].mean(axis=1)
        b_prac.append(np.arange(P))
        b_fy.append(np.full(P, y))
        b_val.append(np.round(recost * list_ratio * fy_months[y] / 12.0, 2))
    if not b_prac:
        return pd.DataFrame({"practice_code": pd.array([], dtype="str"), "financial_year": pd.array([], dtype="str"),
                             "budget": np.array([], float)})
    bp_, bf_ = np.concatenate(b_prac), np.concatenate(b_fy)
    o = np.lexsort((bf_, bp_))
    return pd.DataFrame({"practice_code": pd.array(w.prac.codes[bp_[o]].tolist(), dtype="str"),
                         "financial_year": pd.array(np.array(win.fy_labels)[bf_[o]].tolist(), dtype="str"),
                         "budget": np.concatenate(b_val)[o]})


def mix64(x: np.ndarray, key: np.uint64) -> np.ndarray:
    """Bijective 64-bit mix (splitmix64 finaliser) of ``x + key``: distinct inputs, distinct ids.

    Parameters
    ----------
    x : numpy.ndarray of uint64
    key : numpy.uint64

    Returns
    -------
    numpy.ndarray of uint64
    """
    z = x.astype(np.uint64) + np.uint64(key)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def hex_ids(z: np.ndarray) -> np.ndarray:
    """16-character lower-case hex strings of 64-bit ids (big-endian).

    Parameters
    ----------
    z : numpy.ndarray of uint64

    Returns
    -------
    numpy.ndarray of str
    """
    if z.size == 0:
        return np.array([], dtype=object)
    s = z.astype(">u8").tobytes().hex().encode("ascii")
    return np.frombuffer(s, dtype="S16").astype(str)


def high_cost_patients(p: SynthParams, g_hc: np.random.Generator, spend: np.ndarray,
                       w: World) -> tuple[pd.DataFrame, float]:
    """High-cost patients by practice and financial year, chronic ones keeping last year's id.

    Parameters
    ----------
    p : SynthParams
        Resolved.
    g_hc : numpy.random.Generator
    spend : numpy.ndarray
        (P, n_fy) expected spend (covering the window's months of each year).
    w : World

    Returns
    -------
    table : pandas.DataFrame
        patient_id, practice_code, financial_year, cost; sorted by id and year.
    mean_cost : float
        The truncated Pareto's mean.

    References
    ----------
    The module docstring ("High-cost patients").
    """
    P, n_fy = w.prac.n, w.win.n_fy
    a_, xm, cap = p.high_cost_alpha, p.high_cost_threshold, p.high_cost_cap
    tail = 1.0 - (xm / cap) ** a_
    mean_hc = a_ * xm ** a_ / tail * (xm ** (1 - a_) - cap ** (1 - a_)) / (a_ - 1)
    n_hc = g_hc.poisson(p.high_cost_share * spend / mean_hc)  # (P, n_fy)
    n_yp = n_hc.T.ravel()  # rows ordered by (year, practice)
    N = int(n_yp.sum())
    start_yp = (np.cumsum(n_yp) - n_yp).reshape(n_fy, P)
    key = np.uint64(int(g_hc.integers(0, 2**62)))
    ids = mix64(np.arange(N, dtype=np.uint64), key)  # every row new: distinct ids
    for y in range(1, n_fy):  # chronic patients keep last year's id (year y-1 is final by now)
        carry = g_hc.binomial(np.minimum(n_hc[:, y], n_hc[:, y - 1]), p.high_cost_chronic_fraction)
        r = np.arange(int(carry.sum())) - np.repeat(np.cumsum(carry) - carry, carry)
        ids[np.repeat(start_yp[y], carry) + r] = ids[np.repeat(start_yp[y - 1], carry) + r]
    hc_prac = np.repeat(np.tile(np.arange(P), n_fy), n_yp)
    hc_fy = np.repeat(np.repeat(np.arange(n_fy), P), n_yp)
    u = g_hc.random(N)
    hc_cost = np.round(xm * (1.0 - u * tail) ** (-1.0 / a_), 2)
    hexes = hex_ids(ids)
    o = np.lexsort((hc_fy, hexes)) if N else np.array([], np.int64)
    table = pd.DataFrame({
        "patient_id": pd.array(hexes[o].tolist(), dtype="str"),
        "practice_code": pd.array(w.prac.codes[hc_prac[o]].tolist(), dtype="str"),
        "financial_year": pd.array(np.array(w.win.fy_labels)[hc_fy[o]].tolist(), dtype="str"),
        "cost": hc_cost[o]})
    return table, float(mean_hc)
