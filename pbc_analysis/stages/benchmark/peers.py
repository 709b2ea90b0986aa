"""Peer positions of practices: percentiles, deciles, change and trend, and the decile fan of monthly ratios.

Each practice's ratio is ranked among the PCT's practices and among its consortium's per period, measure and
specialty (dplyr's ``percent_rank``; deciles as OpenPrescribing's), with its change from the previous period and
its trend over all periods (the least-squares slope of ``log(ratio)``). :func:`decile_fan` gives the deciles of
practices' ratios per period, for OpenPrescribing's decile chart.

References
----------
OpenPrescribing (Bennett Institute for Applied Data Science, University of Oxford), decile charts of practices.
Wickham H et al., dplyr ``percent_rank`` (``(min_rank - 1) / (n - 1)``).
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import pandas as pd

from pbc_analysis.stages.benchmark.cube import BenchmarkError

__all__ = ["decile_fan", "peer_positions"]


def _group_codes(df: pd.DataFrame, cols: Sequence[str]) -> np.ndarray:
    """One integer code per distinct combination of ``cols`` (ordered as the sorted combinations)."""
    codes = np.zeros(len(df), dtype=np.int64)
    for c in cols:
        k, u = pd.factorize(df[c], sort=True)
        codes = codes * (len(u) + 1) + (k + 1)
    return codes


def _by_unit_then_period(df: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """``df`` sorted by unit (measure, specialty, practice) then period (the original index kept, for
    restoring the order), and each row's unit code."""
    unit = _group_codes(df, ["measure", "specialty_code", "practice_code"])
    order = np.lexsort((pd.factorize(df["period"], sort=True)[0], unit))
    return df.iloc[order], unit[order]


def _percent_rank(values: pd.Series | np.ndarray, groups: np.ndarray) -> np.ndarray:
    """``100 (min_rank - 1) / (n - 1)`` within groups (dplyr's ``percent_rank``; 0 = lowest, ties
    share the lowest rank, 50 for a group of one); NaN stays NaN and is not counted in n."""
    v = np.asarray(values, dtype=float)
    g = np.asarray(groups)
    order = np.lexsort((v, g))  # by group, then value (NaN last)
    gs, vs = g[order], v[order]
    idx = np.arange(len(v))
    new_group = np.r_[True, gs[1:] != gs[:-1]] if len(v) else np.zeros(0, bool)
    group_start = np.maximum.accumulate(np.where(new_group, idx, 0)) if len(v) else idx
    new_value = new_group | np.r_[True, vs[1:] != vs[:-1]] if len(v) else new_group
    run_start = np.maximum.accumulate(np.where(new_value, idx, 0)) if len(v) else idx
    valid = ~np.isnan(vs)
    gid = np.cumsum(new_group) - 1
    n = np.bincount(gid, weights=valid.astype(float))[gid] if len(v) else np.zeros(0)
    rank = (run_start - group_start + 1).astype(float)
    pr = np.where(n > 1, 100.0 * (rank - 1.0) / np.where(n > 1, n - 1.0, 1.0), np.where(n == 1, 50.0, np.nan))
    pr[~valid] = np.nan
    out = np.empty(len(v))
    out[order] = pr
    return out


def peer_positions(ratios: pd.DataFrame, value: str = "ratio") -> pd.DataFrame:
    """Each practice's position among its peers per period, measure and specialty.

    ``pct_percentile`` / ``consortium_percentile``: percent rank of ``value`` among the practices of
    the PCT / of the practice's consortium (0 = lowest, 100 = highest; ties share the lower rank);
    ``pct_decile`` / ``consortium_decile``: 1 to 10 (``floor(percentile / 10) + 1``, 100 in decile 10),
    as OpenPrescribing's deciles; ``change`` = ``value`` minus its value in the previous period;
    ``trend_per_period``: the least-squares slope of ``log(value)`` on the period number over all
    periods (a relative change per period; ``exp(slope) - 1``), the same for every period of a series.

    Parameters
    ----------
    ratios : pandas.DataFrame
        :func:`~pbc_analysis.stages.benchmark.expected.standardised_ratios` rows (with ``consortium``).
    value : str
        The column ranked.

    Returns
    -------
    pandas.DataFrame
        The key columns, ``value`` and the columns above, in ``ratios``' row order.

    References
    ----------
    dplyr ``percent_rank``; OpenPrescribing's deciles (see the module docstring).
    """
    need = ["period", "practice_code", "consortium", "measure", "specialty_code", value]
    missing = [c for c in need if c not in ratios.columns]
    if missing:
        raise BenchmarkError(f"peer_positions needs columns {missing} (pass standardised_ratios(..., info=practices))")
    out = ratios[need].copy()
    v = out[value]
    grp = _group_codes(out, ["period", "measure", "specialty_code"])
    cons = pd.factorize(out["consortium"])[0]
    out["pct_percentile"] = _percent_rank(v, grp)
    out["consortium_percentile"] = _percent_rank(v, grp * (cons.max() + 2) + cons + 1)
    for c in ("pct", "consortium"):
        p = out[f"{c}_percentile"].to_numpy(float)
        out[f"{c}_decile"] = pd.array(np.where(np.isnan(p), np.nan, np.minimum(np.floor(p / 10.0) + 1, 10)),
                                      dtype="Int64")
    out, unit = _by_unit_then_period(out)
    vals = out[value].to_numpy(float)
    first = np.r_[True, unit[1:] != unit[:-1]]
    out["change"] = np.where(first, np.nan, vals - np.r_[np.nan, vals[:-1]])
    t = out.groupby(unit, sort=False).cumcount().to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ly = np.log(vals)
    ok = np.isfinite(ly)
    tt, yy = np.where(ok, t, 0.0), np.where(ok, ly, 0.0)
    uc, inv = np.unique(unit, return_inverse=True)
    n = np.bincount(inv, weights=ok.astype(float))[inv]
    st, sy = np.bincount(inv, weights=tt)[inv], np.bincount(inv, weights=yy)[inv]
    stt, sty = np.bincount(inv, weights=tt * tt)[inv], np.bincount(inv, weights=tt * yy)[inv]
    nn = np.where(n > 0, n, 1)
    sxx = stt - st ** 2 / nn
    sxy = sty - st * sy / nn
    out["trend_per_period"] = np.where((n >= 2) & (sxx > 0), np.expm1(sxy / np.where(sxx > 0, sxx, 1)), np.nan)
    return out.sort_index().reset_index(drop=True)


def decile_fan(ratios: pd.DataFrame, value: str = "ratio",
               percentiles: Sequence[int] = (10, 20, 30, 40, 50, 60, 70, 80, 90)) -> pd.DataFrame:
    """Deciles of ``value`` across practices per period, measure and specialty (OpenPrescribing's
    decile chart): columns ``period``, ``measure``, ``specialty_code``, ``percentile``, ``value``
    (linear interpolation between order statistics, numpy's default).

    Parameters
    ----------
    ratios : pandas.DataFrame
        Rows with ``period``, ``measure``, ``specialty_code`` and ``value``.
    value : str
        The column summarised.
    percentiles : sequence of int
        The percentiles drawn.

    Returns
    -------
    pandas.DataFrame

    References
    ----------
    OpenPrescribing's decile charts (see the module docstring).
    """
    keys = ["period", "measure", "specialty_code"]
    codes = _group_codes(ratios, keys)
    gid, inv = np.unique(codes, return_inverse=True)
    order = np.argsort(inv, kind="stable")
    sizes = np.bincount(inv)
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    pos = np.empty(len(inv), dtype=np.int64)
    pos[order] = np.arange(len(inv)) - starts[inv[order]]
    mat = np.full((len(gid), int(sizes.max()) if len(sizes) else 0), np.nan)
    mat[inv, pos] = ratios[value].to_numpy(float)
    first_row = order[starts]  # a row of each group, for its key values
    groups = ratios[keys].iloc[first_row].reset_index(drop=True)
    with np.errstate(all="ignore"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN groups give NaN
            qs = np.nanpercentile(mat, np.asarray(percentiles, float), axis=1)  # (Q, G)
    g = groups
    n_q = len(percentiles)
    out = pd.DataFrame({k: np.tile(g[k].to_numpy(), n_q) for k in keys})
    out["percentile"] = np.repeat(np.asarray(percentiles, int), len(g))
    out["value"] = qs.reshape(-1)
    return out.sort_values(keys + ["percentile"], kind="stable", ignore_index=True)
