"""Sampling uncertainty of the accounting lines: a Poisson parametric bootstrap of the counts, streamed.

The run's default is the delta method (:mod:`.delta`, ``decomposition_se: delta``), which linearises the same
computation and has no Monte Carlo error; this bootstrap is its check and the alternative
(``decomposition_se: bootstrap``).

Each draw replaces every count by a Poisson draw with the observed (completed) count as mean: GP referrals and
first attendances once per practice x provider x specialty x year (they feed all three elective pods), other
activity per cell, cost scaled with activity at the cell's unit cost; lists, need weights and tariffs are fixed.
The provider ratios are pooled again on every draw and the decomposition (:mod:`.decomposition`) is recomputed
and summed per practice, per group and for the PCT. The standard error of each line is the standard deviation
over draws.

Memory does not grow with the number of draws, and the working arrays do not grow with the number of cells:

- draws come in blocks of :data:`BLOCK`; of a block only its counts are kept (4 bytes per count and draw, less
  than the cells table itself holds per row), and of all blocks only each line's running mean and sum of squared
  deviations per unit (Chan, Golub and LeVeque's pairwise update), so 40 or 4,000 draws take the same memory;
- the provider ratios and the decomposition are computed over chunks of :data:`CHUNK_CELLS` cells at a time;
  every sum adds its terms in the same order as one pass over all cells would (:func:`_add_in_order`), so the
  standard errors do not depend on the chunk size, bit for bit.

The counts are drawn from the seed in the order of the first implementation (per block: every draw's GP
referrals, then every draw's first attendances, then every draw's activity), so that a seed gives the same draws
as before the streaming rewrite; the standard errors agree with the unstreamed computation to rounding (sums in a
different order: 1e-12 relative, tested).

References
----------
Efron B, Tibshirani RJ (1993), *An Introduction to the Bootstrap*, chapter 6 (the parametric bootstrap); Chan TF,
Golub GH, LeVeque RJ (1979), "Updating formulae and a pairwise algorithm for computing sample variances",
Stanford CS report STAN-CS-79-773 (merging the moments of blocks of draws).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from pbc_analysis.core.checks import check_choice
from pbc_analysis.stages.attribution.common import ELECTIVE_PODS, LINE_FACTORS
from pbc_analysis.stages.attribution.decomposition import (
    _factor_matrix,
    _group_codes,
    _line_parts,
    _once_mask,
    _pair_years,
    lmdi,
    shapley,
    spend_factors,
)
from pbc_analysis.stages.attribution.panel import _count
from pbc_analysis.stages.attribution.params import DEFAULTS, Method

__all__ = ["BLOCK", "CHUNK_CELLS", "decomposition_intervals"]

#: draws per block: the order in which the counts are drawn from the seed (fixed; another value gives other draws)
BLOCK = 20
#: cells decomposed at a time (working arrays of about CHUNK_CELLS x BLOCK x 9 factors x 5 years' rows); the
#: results do not depend on it
CHUNK_CELLS = 4096
_LINES = [*LINE_FACTORS, "change"]


def _bootstrap_base(fac: pd.DataFrame) -> dict[str, Any]:
    """What every bootstrap draw needs: the counts to redraw (referrals and first attendances once per practice x
    provider x specialty x year), the pooling groups of the provider ratios and each cell's unit cost."""
    pod = fac["pod"].astype(str).to_numpy()
    elective = np.isin(pod, ELECTIVE_PODS)
    prac = fac["practice_code"].astype(str).to_numpy()
    grp = _group_codes(fac, ("practice_code", "provider_code", "specialty_code", "financial_year"))
    g1 = _group_codes(fac, ("provider_code", "specialty_code", "financial_year"))
    g2 = _group_codes(fac, ("provider_code", "specialty_code", "pod", "financial_year"))
    col = {c: fac[c].to_numpy(dtype=float) for c in ("list", "weighted_list", "referrals", "first", "activity",
                                                     "cost", "tariff")}
    Rg = np.zeros(grp.max() + 1)
    Fg = np.zeros(grp.max() + 1)
    Rg[grp[elective]] = np.nan_to_num(col["referrals"][elective])
    Fg[grp[elective]] = np.nan_to_num(col["first"][elective])
    unit_cost = np.divide(col["cost"], col["activity"], out=np.zeros(len(fac)), where=col["activity"] > 0)
    return {"elective": elective, "is_first": pod == "first_op", "once": _once_mask(fac), "prac": prac, "grp": grp,
            "g1": g1, "g2": g2, "n1": g1.max() + 1, "n2": g2.max() + 1, "col": col, "Rg": Rg, "Fg": Fg,
            "unit_cost": unit_cost, "tariff0": np.nan_to_num(col["tariff"])}


@dataclass
class _Block:
    """The counts of one block of draws: referrals and first attendances per practice x provider x specialty x year
    ``(B, groups)`` and activity per cell row ``(B, rows)``, and the provider ratios pooled on each draw."""

    R: np.ndarray
    F: np.ndarray
    A: np.ndarray
    conv: np.ndarray | None = None
    fu: np.ndarray | None = None
    hrg: np.ndarray | None = None
    sums: dict[str, np.ndarray] | None = None   # the sums the ratios are pooled from, ``(B, groups)`` each


def _draw_block(rng: np.random.Generator, base: Mapping[str, Any], B: int) -> _Block:
    """``B`` draws of the counts, one draw's row at a time (the same stream as one call over ``(B, n)``)."""
    def rows(lam: np.ndarray) -> np.ndarray:
        out = np.empty((B, lam.size), dtype=np.int32)
        for b in range(B):
            out[b] = rng.poisson(lam)
        return out

    return _Block(rows(base["Rg"]), rows(base["Fg"]), rows(base["col"]["activity"]))


def _bins(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The bins ``codes`` touch and each row's position among them (for :func:`_add_in_order`)."""
    touched, local = np.unique(codes, return_inverse=True)
    return touched, local.reshape(-1)


def _add_in_order(acc: np.ndarray, bins: tuple[np.ndarray, np.ndarray], w: np.ndarray) -> None:
    """``acc[..., k] += w[..., i]`` over the rows ``i`` whose code (``bins`` of :func:`_bins`) is ``k``, in row order.

    One ``np.bincount`` over all rows adds each bin's terms in row order; a chunk continues that sum exactly by
    starting its bins from ``acc`` (``0 + acc`` is ``acc``), so chunked sums equal the one-pass sums bit for bit.
    ``acc`` is ``(..., bins)`` and ``w`` ``(..., rows)`` with the same leading shape.
    """
    touched, local = bins
    m = touched.size
    lead = int(np.prod(acc.shape[:-1]))
    offs = (np.arange(lead) * m)[:, None] + local[None, :]
    prior = acc[..., touched].reshape(lead * m)
    s = np.bincount(np.concatenate([np.arange(lead * m), offs.ravel()]),
                    weights=np.concatenate([prior, np.broadcast_to(w, (*acc.shape[:-1], local.size)).ravel()]),
                    minlength=lead * m)
    acc[..., touched] = s.reshape(*acc.shape[:-1], m)


def _row_counts(base: Mapping[str, Any], blk: _Block, rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """Referrals, first attendances, activity and cost of the draws at cell ``rows``: ``(B, len(rows))`` each."""
    grp = base["grp"][rows]
    Rs = blk.R[:, grp].astype(float)
    Fs = blk.F[:, grp].astype(float)
    As = np.where(base["is_first"][rows][None, :], Fs, blk.A[:, rows].astype(float))
    return Rs, Fs, As, As * base["unit_cost"][rows][None, :]


def _pool(base: Mapping[str, Any], blk: _Block) -> None:
    """The provider ratios of every draw (conversion, follow-ups per first, HRG mix), pooled over all practices."""
    B, n = blk.A.shape[0], base["grp"].size
    n1, n2 = base["n1"], base["n2"]
    s1 = np.zeros((2, B, n1))   # referrals and first attendances per provider x specialty x year
    s2 = np.zeros((4, B, n2))   # activity, first attendances, activity x tariff and cost per ... x pod x year
    once, elective = base["once"], base["elective"]
    step = CHUNK_CELLS * 5
    for r0 in range(0, n, step):
        rows = np.arange(r0, min(n, r0 + step))
        Rs, Fs, As, Vs = _row_counts(base, blk, rows)
        once_r, elec_r = once[rows][None, :], elective[rows][None, :]
        _add_in_order(s1, _bins(base["g1"][rows]), np.stack([np.where(once_r, Rs, 0.0), np.where(once_r, Fs, 0.0)]))
        _add_in_order(s2, _bins(base["g2"][rows]),
                      np.stack([As, np.where(elec_r, Fs, 0.0), As * base["tariff0"][rows][None, :], Vs]))
    (rs, fs), (as_, fs2, at, cs) = s1, s2
    blk.sums = {"rs": rs, "fs": fs, "as": as_, "fs2": fs2, "at": at, "cs": cs}
    with np.errstate(divide="ignore", invalid="ignore"):
        blk.conv = np.where(rs > 0, fs / np.where(rs > 0, rs, 1), np.nan)
        blk.fu = np.where(fs2 > 0, as_ / np.where(fs2 > 0, fs2, 1), np.nan)
        blk.hrg = np.where(at > 0, cs / np.where(at > 0, at, 1), np.nan)


def _row_factors(base: Mapping[str, Any], blk: _Block, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The factor matrices ``(B, len(rows), K)`` and costs ``(B, len(rows))`` of the draws at cell ``rows``."""
    col, elective, is_first = base["col"], base["elective"][rows], base["is_first"][rows]
    assert blk.conv is not None and blk.fu is not None and blk.hrg is not None
    Rs, Fs, As, Vs = _row_counts(base, blk, rows)
    T = np.broadcast_to(col["tariff"][rows], As.shape)
    conv = blk.conv[:, base["g1"][rows]]
    fu = np.where(is_first[None, :], 1.0, blk.fu[:, base["g2"][rows]])
    hrg = blk.hrg[:, base["g2"][rows]]
    X = _factor_matrix(col["list"][rows][None, :], col["weighted_list"][rows][None, :],
                       np.where(elective, Rs, 0.0), np.where(elective, Fs, 0.0), As, Vs, T, elective[None, :],
                       conv, fu, hrg)
    return X, Vs


class _Moments:
    """Running mean and sum of squared deviations per unit over blocks of draws (Chan et al. 1979)."""

    def __init__(self, size: int):
        self.n, self.mean, self.m2 = 0, np.zeros(size), np.zeros(size)

    def add(self, x: np.ndarray) -> None:
        nb = x.shape[0]
        mb = x.mean(axis=0)
        m2b = ((x - mb) ** 2).sum(axis=0)
        n = self.n + nb
        delta = mb - self.mean
        self.mean = self.mean + delta * (nb / n)
        self.m2 = self.m2 + m2b + delta ** 2 * (self.n * nb / n)
        self.n = n

    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / (self.n - 1))


def _block_sums(base: Mapping[str, Any], blk: _Block, p0: np.ndarray, p1: np.ndarray, years: Sequence[str],
                units: Mapping[str, tuple[np.ndarray, Any]], method: str) -> dict[tuple[str, str, str], np.ndarray]:
    """Each draw's line totals per unit of each level (and ``pct``), decomposing chunks of cells."""
    B, nc_all = blk.A.shape[0], p0.size
    sizes = {**{level: labels.size for level, (_, labels) in units.items()}, "pct": 1}
    sums = {(level, y): np.zeros((len(_LINES), B, size)) for y in years for level, size in sizes.items()}
    for c0 in range(0, nc_all, CHUNK_CELLS):
        ch = slice(c0, min(nc_all, c0 + CHUNK_CELLS))
        nc = ch.stop - ch.start
        X, Vs = _row_factors(base, blk, np.concatenate([p0[ch], p1[ch].T.ravel()]))
        x0, v0 = X[:, :nc], Vs[:, :nc]
        bins = {level: _bins(codes[ch]) for level, (codes, _) in units.items()}
        bins["pct"] = _bins(np.zeros(nc, dtype=np.int64))
        for j, y in enumerate(years):
            s = slice(nc * (1 + j), nc * (2 + j))
            parts = lmdi(v0, Vs[:, s], x0, X[:, s]) if method == "lmdi" else shapley(x0, X[:, s])
            ln = _line_parts(parts)
            lines = np.stack([ln[line] for line in LINE_FACTORS] + [Vs[:, s] - v0])
            for level, b in bins.items():
                _add_in_order(sums[(level, y)], b, lines)
    return {(level, y, line): acc[i] for (level, y), acc in sums.items() for i, line in enumerate(_LINES)}


def decomposition_intervals(cells: pd.DataFrame, base_year: str, years: Sequence[str], method: str = DEFAULTS["method"],
                            decomposition_draws: int = DEFAULTS["decomposition_draws"], seed: int = DEFAULTS["seed"],
                            groups: Mapping[str, Mapping[str, str]] | None = None) -> pd.DataFrame:
    """Standard errors of the accounting lines from the Poisson noise of the counts (module docstring).

    Parameters
    ----------
    cells : pandas.DataFrame
        :func:`pbc_analysis.stages.attribution.decomposition.spend_cells` with rows in ``base_year`` and each of
        ``years``.
    base_year : str
    years : sequence of str
    method : {"shapley", "lmdi"}
    decomposition_draws : int
        Bootstrap draws (at least 2); memory does not grow with them.
    seed : int
    groups : mapping, optional
        ``{level: {practice_code: unit}}`` (e.g. consortia).

    Returns
    -------
    pandas.DataFrame
        ``level, unit, financial_year, line, std_error`` for the lines of :data:`LINE_FACTORS` and ``change``.

    References
    ----------
    Efron B, Tibshirani RJ (1993), *An Introduction to the Bootstrap*, chapter 6 (the parametric bootstrap);
    Chan TF, Golub GH, LeVeque RJ (1979), STAN-CS-79-773 (merging moments).
    """
    method = check_choice("method", method, Method)
    decomposition_draws = _count("decomposition_draws", decomposition_draws, 2, "use e.g. 40 draws")
    fac = spend_factors(cells)
    _, p0, p1 = _pair_years(fac, base_year, years)
    if np.any(p0 < 0) or np.any(p1 < 0):
        raise ValueError("cells must have a row for every cell in base_year and each of years, as spend_cells gives")
    rng = np.random.default_rng(seed)
    base = _bootstrap_base(fac)
    units = _block_units(base, p0, groups)
    moments: dict[tuple[str, str, str], _Moments] = {}
    for b0 in range(0, decomposition_draws, BLOCK):
        blk = _draw_block(rng, base, min(BLOCK, decomposition_draws - b0))
        _pool(base, blk)
        for key, x in _block_sums(base, blk, p0, p1, years, units, method).items():
            moments.setdefault(key, _Moments(x.shape[1])).add(x)
    return _unit_frame({key: mom.std() for key, mom in moments.items()}, units)


def _block_units(base: Mapping[str, Any], p0: np.ndarray,
                 groups: Mapping[str, Mapping[str, str]] | None) -> dict[str, tuple[np.ndarray, Any]]:
    """The unit of each cell (from its base-year row) at every level, labels in order of first appearance; a
    practice in no group of a level is in the unit ``""`` (dropped from the results)."""
    unit_of = {"practice": base["prac"]}
    for level, mapping in (groups or {}).items():
        unit_of[level] = pd.Series(base["prac"]).map(dict(mapping)).fillna("").to_numpy(dtype=str)
    return {level: pd.factorize(u[p0]) for level, u in unit_of.items()}


def _unit_frame(std: Mapping[tuple[str, str, str], np.ndarray], units: Mapping[str, tuple[np.ndarray, Any]]) -> pd.DataFrame:
    """``level, unit, financial_year, line, std_error`` from the standard errors per unit of each level and year."""
    out_rows = []
    for (level, y, line), se in std.items():
        labels = ["PCT"] if level == "pct" else list(units[level][1])
        out_rows.append(pd.DataFrame({"level": level, "unit": labels, "financial_year": y, "line": line,
                                      "std_error": se}))
    out = pd.concat(out_rows, ignore_index=True)
    return out[out["unit"] != ""].reset_index(drop=True)
