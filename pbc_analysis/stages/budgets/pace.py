"""Pace of change: the glide path from historic budgets to fair shares, in whole pence; winners and losers.

See :mod:`pbc_analysis.stages.budgets` ("Distance from target and pace of change") for the rules.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from pbc_analysis.core import calendar
from pbc_analysis.core.checks import check_choice, check_number
from pbc_analysis.stages.budgets.costs import check_financial_year
from pbc_analysis.stages.budgets.params import FundFrom

__all__ = ["allocate_pence", "glide_path", "winners_and_losers"]


def allocate_pence(shares: np.ndarray | Sequence[float], total: float) -> np.ndarray:
    """Split ``total`` (GBP) in proportion to ``shares`` into whole pence that add up to it exactly.

    Largest-remainder (Hamilton) rounding: every part gets the floor of its exact amount in pence, and
    the pence left over go one each to the parts with the largest fractional remainders (ties to the
    earlier part).

    Parameters
    ----------
    shares : array-like of float
        Non-negative, not all zero.
    total : float
        GBP, >= 0.

    Returns
    -------
    numpy.ndarray of int64
        Pence; divide by 100 for pounds.

    References
    ----------
    Balinski ML, Young HP (2001), *Fair Representation*, 2nd ed. (Hamilton's largest-remainder method).
    """
    s = np.asarray(shares, dtype=float)
    if s.ndim != 1 or len(s) == 0:
        raise ValueError("shares must be a non-empty 1-d array")
    if not np.all(np.isfinite(s)) or (s < 0).any() or s.sum() <= 0:
        raise ValueError("shares must be finite, non-negative and not all zero")
    total_p = int(round(float(check_number("total", total, 0.0)) * 100))
    raw = s / s.sum() * total_p
    base = np.floor(raw).astype(np.int64)
    rest = total_p - int(base.sum())
    order = np.argsort(-(raw - base), kind="stable")
    base[order[:rest]] += 1
    return base


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
    """The multi-year move from historic budgets to fair shares (:mod:`pbc_analysis.stages.budgets`, "pace of change").

    Parameters
    ----------
    start : DataFrame
        ``practice_code``, ``historic_budget`` (any scale: used as shares) and ``target_share`` (summing to 1).
    envelope : float
        GBP of the first year, > 0.
    first_year : str
        The target year (the path's first year).
    years : int
        Years on the path (``pace_years``).
    cap : float
        Largest yearly change of a practice's share (``pace_cap``).
    band : float
        Allowed distance from target.
    envelope_growth : float
        Yearly growth of the envelope.
    fund_from : {"above_target", "outside_band"}

    Returns
    -------
    DataFrame
        One row per practice and year (``year`` 0 = historic, scaled to the envelope; 1..``years`` =
        ``first_year`` onwards): ``financial_year, envelope, share, target_share, distance`` ((share -
        target) / target), ``step_share`` (change of share this year), ``cap_binding``, ``within_band`` and
        ``budget`` (GBP, whole pence summing exactly to the year's envelope).

    References
    ----------
    DH pace-of-change policy for PCT allocations; Audit Commission (2007), case study 9 (a local 5% band).
    """
    check_financial_year(first_year, "target_year")
    check_number("pace_years", years, 1, integer=True, fix="a whole number of years")
    cap = float(check_number("pace_cap", cap, 0.0, fix="a yearly cap on the change of a practice's share, e.g. 0.05 for 5%"))
    band = float(check_number("band", band, 0.0, 1.0, high_open=True,
                              fix="the allowed distance from target, e.g. 0.10 (national) or 0.05 (stricter local)"))
    g = float(check_number("envelope_growth", envelope_growth, -1.0, low_open=True, fix="e.g. 0.0 for a flat envelope"))
    check_choice("fund_from", fund_from, FundFrom)
    E = float(check_number("envelope", envelope, 0.0, low_open=True, fix="the PCT's total for the target year in GBP"))
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
            "practice_code": codes, "year": k, "financial_year": calendar.shift_year(first_year, k - 1) if k else "historic",
            "envelope": round(env, 2), "share": new, "target_share": t, "distance": (new - t) / t,
            "step_share": step, "cap_binding": capped,
            "within_band": np.abs(new / t - 1) <= band + 1e-12, "budget": pence / 100.0}))
        s = new
    return pd.concat(frames, ignore_index=True)


def winners_and_losers(path: pd.DataFrame, practices: pd.DataFrame | None = None) -> pd.DataFrame:
    """Winners and losers of the glide path, one row per practice.

    Parameters
    ----------
    path : DataFrame
        From :func:`glide_path`.
    practices : DataFrame, optional
        Adds each practice's ``consortium``.

    Returns
    -------
    DataFrame
        Historic (year 0, scaled to the first year's envelope) and first- and last-year budgets, the change
        in the first year (budget - historic, in pence) and over the path (change of share x the first
        envelope, so a growing envelope does not make everyone a winner), and ``status``: ``gains``,
        ``loses`` or ``unchanged`` (first-year change, to the penny).

    References
    ----------
    DOMAIN.md "Budgets": winners and losers must be shown.
    """
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
