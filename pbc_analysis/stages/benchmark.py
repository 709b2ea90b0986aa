"""Fair benchmarking of practices: standardised ratios, funnels, peer positions, flags, scorecard.

The question a PBC consortium asks is "does this practice refer more than its patients need?". The
answer compares each practice's observed count with the count *expected* from its list, its age-sex
structure and (optionally) its deprivation, never with the raw PCT average:

1. **The count cube** (:func:`build_cube`). Validated inputs are reduced once to arrays:
   observed counts ``O[p, k, m]`` for practice p, series k (a measure, i.e. GP referrals or a point
   of delivery, by specialty) and month m, cost alongside, and the registered list
   ``N[p, m, a]`` by age-sex cell a. Everything after that is numpy on these arrays; there are no
   loops over practices or rows, so all of England (6,500 practices x 61 series x 60 months) takes
   seconds.
2. **Expected counts** (:func:`expected_counts`). Person-years ``PY[p, y, a] = sum_{m in y} N[p, m, a]
   / 12``. With ``standardisation`` containing ``age_sex``, ``E^AS[p, k, y] = sum_a PY[p, y, a] x
   r[k, a] / 1000`` from the reference rates r (events per 1,000 a year, the optional
   ``reference_rates`` table, typically national HES/MAR rates): indirect standardisation
   (Breslow & Day 1987, ch. 2; PHEindicatormethods ``calculate_ISRatio``). Without it the
   expected count is proportional to person-years (a crude comparison, labelled as such).
   With ``deprivation``, a Poisson regression per series and period,
   ``O[p] ~ Poisson(E^AS[p] exp(alpha + beta z_p))`` (z_p the practice's IMD score standardised
   over the PCT), fitted by Newton-Raphson vectorised over all series and periods at once, gives
   ``E[p] = E^AS[p] exp(alpha + beta z_p)``: the count expected for a practice of that list, age-sex
   mix and deprivation, as need-adjusted expected counts in NHS England's referral benchmarking
   (and the "expected" of SHMI, NHS Digital 2023). With ``target="pct"`` (default) the expected
   counts are scaled so that they sum to the observed count of the PCT in every series and period
   (the PCT is its own benchmark: a ratio of 1 is the PCT average for a practice like this one);
   with ``target="reference"`` they stay on the reference rates (national benchmark). With the
   deprivation regression the intercept alpha does that scaling; for ``target="reference"``
   alpha is dropped.
3. **Standardised ratios** (:func:`standardised_ratios`): O/E with exact Poisson limits below 10
   events and Byar's approximation from 10, applied to O and divided by E (PHEindicatormethods'
   rule, :mod:`pbc_analysis.methods.indicators`), at 95% and 99.8%; per specialty and for all specialties
   together (sums of O and E).
4. **Funnels** (:func:`funnel_table`): each practice's z-score against the target, the
   over-dispersion estimate (phi, tau^2, from z-scores winsorised at 10% each end; Spiegelhalter
   2005) and the practice's position against the unadjusted or adjusted 95% and 99.8% limits,
   via :mod:`pbc_analysis.methods.funnel`.
5. **Peer positions and flags** (:func:`peer_positions`, :func:`flags`): percentile and decile of
   each practice's ratio among PCT and consortium practices per period (OpenPrescribing's deciles),
   the trend, and the flags ``high_referrer`` (above the upper 99.8% limit), ``possible_under_referrer``
   (below the lower 99.8% limit: fewer referrals than its need implies; reviewed before any saving
   is paid) and ``persistent_outlier`` (flagged in at least ``min_periods`` of the last
   ``window`` periods).
6. **Scorecard** (:func:`scorecard`): per practice, its list, cost, activity by point of delivery,
   standardised ratios and flags in the latest period.

Monthly monitoring uses :func:`monthly_ratios` (each month's O/E, expected counts scaled to the PCT
total in that month, so seasonality cancels) with :mod:`pbc_analysis.methods.spc`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import pandas as pd

from pbc_analysis import data as _data

__all__ = [
    "ALL",
    "Cube",
    "STANDARDISATIONS",
    "build_cube",
    "decile_fan",
    "expected_counts",
    "flags",
    "funnel_lines",
    "funnel_panels",
    "funnel_table",
    "period_of_months",
    "peer_positions",
    "scorecard",
    "select_measures",
    "standardised_ratios",
]

ALL = "all"
#: what the expected counts adjust for
STANDARDISATIONS: tuple[str, ...] = ("none", "age_sex", "deprivation", "age_sex+deprivation")
PERIODS: tuple[str, ...] = ("financial_year", "calendar_year", "quarter", "month")
N_AS = len(_data.AGE_BANDS) * len(_data.SEXES)


class BenchmarkError(ValueError):
    """A benchmarking parameter that cannot work with these inputs (says what to change)."""


# --------------------------------------------------------------------------------------------------
# The count cube
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Cube:
    """Counts, cost and lists as arrays over practices, series and months.

    ``counts[p, k, m]`` and ``cost[p, k, m]`` (cost is NaN for GP referrals) for practice
    ``practices[p]``, series ``series.iloc[k]`` (``measure``, ``specialty_code``) and month
    ``months[m]``; ``registered[p, m, a]`` the list by age-sex cell a (age band major, F then M,
    as :data:`pbc_analysis.data.AGE_BANDS` x ``SEXES``); ``practice_info`` the practices table in the
    same order; ``reference_rates[k, a]`` per 1,000 a year (NaN where the reference table has no
    rate for the series, or when the table is absent).
    """

    practices: pd.Index
    practice_info: pd.DataFrame
    series: pd.DataFrame
    months: list[str]
    counts: np.ndarray
    cost: np.ndarray
    registered: np.ndarray
    reference_rates: np.ndarray

    @property
    def has_reference_rates(self) -> bool:
        return bool(np.isfinite(self.reference_rates).any())


def _codes(inputs: _data.Inputs, table: str, column: str, categories: Sequence[str] | pd.Index) -> np.ndarray:
    """Integer positions of ``inputs.<table>[column]`` in ``categories`` (validated inputs: all known)."""
    codes, uniques = inputs.factorize(table, column)
    pos = pd.Index(categories).get_indexer(pd.Index(uniques))
    if (pos < 0).any():  # cannot happen after validation; a guard, not a filter
        raise BenchmarkError(f"{table}.{column}: values not in the reference list: {list(pd.Index(uniques)[pos < 0][:5])}")
    return pos[codes]


def build_cube(inputs: _data.Inputs) -> Cube:
    """Reduce validated inputs to the :class:`Cube` (one pass over each large table)."""
    window = inputs.window
    months = window.months if window is not None else sorted(inputs.population["month"].unique())
    practices = pd.Index(sorted(inputs.practices["practice_code"]), name="practice_code")
    info = inputs.practices.set_index("practice_code").loc[practices].reset_index()
    P, M = len(practices), len(months)

    act = inputs.activity
    ref = inputs.referrals
    s_raw, spec_seen = inputs.factorize("activity", "specialty_code")
    spec_act = pd.Index(sorted(spec_seen))
    s_codes = spec_act.get_indexer(spec_seen)[s_raw]
    p_raw, pod_seen = inputs.factorize("activity", "pod")
    pod_act = pd.Index([p for p in _data.PODS if p in set(pod_seen)])
    p_codes = pod_act.get_indexer(pod_seen)[p_raw]
    r_raw, spec_ref_seen = inputs.factorize("referrals", "specialty_code")
    spec_ref = pd.Index(sorted(spec_ref_seen))
    r_codes = spec_ref.get_indexer(spec_ref_seen)[r_raw]
    # series: referrals by specialty, then each pod by specialty (only combinations that occur)
    combo = np.flatnonzero(np.bincount(p_codes * len(spec_act) + s_codes, minlength=len(pod_act) * len(spec_act)))
    series = pd.DataFrame({
        "measure": ["referrals"] * len(spec_ref) + [pod_act[c // len(spec_act)] for c in combo],
        "specialty_code": list(spec_ref) + [spec_act[c % len(spec_act)] for c in combo]})
    series = series.astype({"measure": "str", "specialty_code": "str"})
    K = len(series)
    combo_k = np.full(len(pod_act) * len(spec_act), -1)
    combo_k[combo] = len(spec_ref) + np.arange(len(combo))

    counts = np.zeros((P, K, M))
    cost = np.full((P, K, M), np.nan)
    cost[:, len(spec_ref):, :] = 0.0
    # activity
    pi = _codes(inputs, "activity", "practice_code", practices)
    mi = _codes(inputs, "activity", "month", months)
    ki = combo_k[p_codes * len(spec_act) + s_codes]
    flat = (pi * K + ki) * M + mi
    counts.reshape(-1)[:] += np.bincount(flat, weights=act["activity"].to_numpy(dtype=float), minlength=P * K * M)
    cost_flat = np.bincount(flat, weights=act["cost"].to_numpy(dtype=float), minlength=P * K * M).reshape(P, K, M)
    cost[:, len(spec_ref):, :] = cost_flat[:, len(spec_ref):, :]
    # referrals
    pi = _codes(inputs, "referrals", "practice_code", practices)
    mi = _codes(inputs, "referrals", "month", months)
    ki = r_codes
    flat = (pi * K + ki) * M + mi
    counts.reshape(-1)[:] += np.bincount(flat, weights=ref["referrals"].to_numpy(dtype=float), minlength=P * K * M)

    pop = inputs.population
    pi = _codes(inputs, "population", "practice_code", practices)
    mi = _codes(inputs, "population", "month", months)
    ai = _codes(inputs, "population", "age_band", _data.AGE_BANDS) * 2 + _codes(inputs, "population", "sex", _data.SEXES)
    registered = np.bincount((pi * M + mi) * N_AS + ai, weights=pop["registered"].to_numpy(dtype=float),
                             minlength=P * M * N_AS).reshape(P, M, N_AS)

    rates = np.full((K, N_AS), np.nan)
    rr = inputs.reference_rates
    if rr is not None and len(rr):
        key = pd.MultiIndex.from_frame(series)
        k = key.get_indexer(pd.MultiIndex.from_arrays([rr["measure"], rr["specialty_code"]]))
        a = _codes(inputs, "reference_rates", "age_band", _data.AGE_BANDS) * 2 + \
            _codes(inputs, "reference_rates", "sex", _data.SEXES)
        ok = k >= 0
        rates[k[ok], a[ok]] = rr["rate"].to_numpy(dtype=float)[ok]
    return Cube(practices, info, series, list(months), counts, cost, registered, rates)


# --------------------------------------------------------------------------------------------------
# Periods
# --------------------------------------------------------------------------------------------------

def period_of_months(months: Sequence[str], period: str = "financial_year") -> np.ndarray:
    """The period label of each month: ``2005/06`` (financial year, April to March), ``2005``
    (calendar year), ``2005/06 Q1`` (financial quarter, Q1 = April to June) or the month itself."""
    if period not in PERIODS:
        raise BenchmarkError(f"period must be one of {', '.join(PERIODS)}, not {period!r}")
    if period == "month":
        return np.asarray(months, dtype=str)
    y = np.array([int(m[:4]) for m in months])
    mo = np.array([int(m[5:7]) for m in months])
    if period == "calendar_year":
        return y.astype(str)
    fy = np.where(mo >= 4, y, y - 1)
    lab = np.char.add(np.char.add(fy.astype(str), "/"), np.char.zfill(((fy + 1) % 100).astype(str), 2))
    if period == "financial_year":
        return lab
    q = ((mo - 4) % 12) // 3 + 1
    return np.char.add(np.char.add(lab, " Q"), q.astype(str))


def _period_index(cube: Cube, period: str, periods: Sequence[str] | None) -> tuple[list[str], np.ndarray]:
    labels = period_of_months(cube.months, period)
    uniq = list(dict.fromkeys(labels))
    if periods is not None:
        unknown = [p for p in periods if p not in uniq]
        if unknown:
            raise BenchmarkError(f"periods {unknown} are not in the data ({period} labels are {', '.join(uniq)}); "
                                 "use those labels or leave periods empty for all")
        uniq = [p for p in uniq if p in set(periods)]
    idx = pd.Index(uniq).get_indexer(labels)  # -1: month not in a chosen period
    return uniq, idx


def _sum_months(arr: np.ndarray, idx: np.ndarray, n: int, axis: int) -> np.ndarray:
    """Sum ``arr`` over months (``axis``) into ``n`` periods by ``idx`` (months with -1 dropped)."""
    arr = np.moveaxis(arr, axis, -1)
    keep = idx >= 0
    onehot = np.zeros((int(keep.sum()), n))
    onehot[np.arange(onehot.shape[0]), idx[keep]] = 1.0
    out = arr[..., keep] @ onehot
    return np.moveaxis(out, -1, axis)


# --------------------------------------------------------------------------------------------------
# Expected counts
# --------------------------------------------------------------------------------------------------

def _check_standardisation(cube: Cube, standardisation: str, target: str) -> tuple[bool, bool]:
    if standardisation not in STANDARDISATIONS:
        raise BenchmarkError(f"standardisation must be one of {', '.join(STANDARDISATIONS)}, not {standardisation!r}")
    if target not in ("pct", "reference"):
        raise BenchmarkError(f"target must be 'pct' or 'reference', not {target!r}")
    age_sex = "age_sex" in standardisation
    if (age_sex or target == "reference") and not cube.has_reference_rates:
        raise BenchmarkError(
            f"standardisation {standardisation!r} with target {target!r} needs reference age-sex rates, but the "
            "inputs have no reference_rates table; add reference_rates.csv (docs/data_dictionary.md) or use "
            "standardisation 'none' or 'deprivation' with target 'pct'")
    return age_sex, "deprivation" in standardisation


def poisson_offset_fit(y: np.ndarray, offset: np.ndarray, x: np.ndarray, iterations: int = 50,
                       tol: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """Poisson regression ``y[g, i] ~ Poisson(exp(offset[g, i] + a_g + b_g x[i]))`` for every group g at once.

    Newton-Raphson on the log-likelihood (the canonical-link GLM's IRLS, McCullagh & Nelder 1989,
    s. 2.5), vectorised over groups; units with ``offset = -inf`` (no expected count) drop out. Returns
    ``(a, b)`` per group. A group with no events has ``a = -inf`` and ``b = 0``.
    """
    y = np.asarray(y, float)
    off = np.asarray(offset, float)
    x = np.broadcast_to(np.asarray(x, float), y.shape)
    w = np.isfinite(off)
    off0 = np.where(w, off, 0.0)
    ysum = np.where(w, y, 0.0).sum(axis=1)
    esum = np.where(w, np.exp(off0), 0.0).sum(axis=1)
    with np.errstate(divide="ignore"):
        a = np.log(ysum / np.where(esum > 0, esum, 1.0))
    b = np.zeros(len(a))
    live = (ysum > 0) & (esum > 0)
    for _ in range(iterations):
        eta = off0 + np.where(live, a, 0.0)[:, None] + b[:, None] * x
        mu = np.where(w, np.exp(eta), 0.0)
        r = np.where(w, y, 0.0) - mu
        g0, g1 = r.sum(axis=1), (r * x).sum(axis=1)
        h00, h01, h11 = mu.sum(axis=1), (mu * x).sum(axis=1), (mu * x * x).sum(axis=1)
        det = h00 * h11 - h01 * h01
        ok = live & (det > 0)
        da = np.where(ok, (h11 * g0 - h01 * g1) / np.where(ok, det, 1.0), 0.0)
        db = np.where(ok, (h00 * g1 - h01 * g0) / np.where(ok, det, 1.0), 0.0)
        a, b = a + da, b + db
        if np.all(np.abs(da) < tol) and np.all(np.abs(db) < tol):
            break
    return np.where(live, a, -np.inf), np.where(live, b, 0.0)


def _deprivation_z(cube: Cube) -> np.ndarray:
    imd = cube.practice_info["imd_score"].to_numpy(dtype=float)
    sd = imd.std()
    return (imd - imd.mean()) / (sd if sd > 0 else 1.0)


def select_measures(cube: Cube, measures: Sequence[str]) -> Cube:
    """The cube restricted to the series of ``measures`` (e.g. ``["referrals"]``)."""
    unknown = [m for m in measures if m not in set(cube.series["measure"])]
    if unknown:
        raise BenchmarkError(f"measures {unknown} are not in the data; measures are "
                             f"{', '.join(dict.fromkeys(cube.series['measure']))}")
    k = np.flatnonzero(cube.series["measure"].isin(list(measures)).to_numpy())
    return replace(cube, series=cube.series.iloc[k].reset_index(drop=True), counts=cube.counts[:, k, :],
                   cost=cube.cost[:, k, :], reference_rates=cube.reference_rates[k, :])


def expected_counts(cube: Cube, period: str = "financial_year", periods: Sequence[str] | None = None,
                    standardisation: str = "age_sex+deprivation", target: str = "pct") -> pd.DataFrame:
    """Observed and expected counts per practice, series and period (see the module docstring).

    Returns a tidy DataFrame: ``period``, ``practice_code``, ``measure``, ``specialty_code``,
    ``observed``, ``expected``, ``person_years``, ``cost`` (NaN for referrals) and the fitted
    ``deprivation_log_rr`` (beta, the log rate ratio per standard deviation of IMD score; NaN when not
    adjusted), for every specialty and for ``specialty_code == "all"`` (sums over specialties).
    """
    age_sex, deprivation = _check_standardisation(cube, standardisation, target)
    labels, idx = _period_index(cube, period, periods)
    Y = len(labels)
    P, K, _ = cube.counts.shape
    O = _sum_months(cube.counts, idx, Y, axis=2)                      # (P, K, Y)
    C = _sum_months(cube.cost, idx, Y, axis=2)
    PYa = _sum_months(np.moveaxis(cube.registered, 1, 2), idx, Y, axis=2) / 12.0  # (P, A, Y)
    PY = PYa.sum(axis=1)                                              # (P, Y)
    if age_sex or target == "reference":
        rates = np.nan_to_num(cube.reference_rates, nan=0.0) / 1000.0  # (K, A)
        E0 = np.einsum("pay,ka->pky", PYa, rates)
        missing = ~np.isfinite(cube.reference_rates).all(axis=1)
        if missing.any():
            bad = cube.series[missing]
            raise BenchmarkError(
                "reference_rates has no rates for " + ", ".join(f"{m} {s}" for m, s in bad.itertuples(index=False))
                + ": add them to reference_rates (all 38 age-sex cells) or use standardisation 'none'/'deprivation'")
    else:
        E0 = np.broadcast_to(PY[:, None, :], (P, K, Y)).copy()
    if not age_sex and target == "reference":  # crude reference: the all-age reference rate x person-years
        E0 = PY[:, None, :] * (np.einsum("pay,ka->ky", PYa, rates) / PY.sum(axis=0))[None, :, :]
    beta = np.full((K, Y), np.nan)
    if deprivation:
        z = _deprivation_z(cube)
        yy = O.transpose(1, 2, 0).reshape(K * Y, P)
        with np.errstate(divide="ignore"):
            off = np.log(E0.transpose(1, 2, 0).reshape(K * Y, P))
        a, b = poisson_offset_fit(yy, off, z[None, :])
        if target == "reference":
            a = np.where(np.isfinite(a), 0.0, a)
        E = E0 * np.exp((np.where(np.isfinite(a), a, 0.0)[:, None] + b[:, None] * z[None, :])
                        .reshape(K, Y, P).transpose(2, 0, 1))
        beta = np.where(np.isfinite(a), b, np.nan).reshape(K, Y)
    elif target == "pct":
        tot_o, tot_e = O.sum(axis=0), E0.sum(axis=0)
        E = E0 * np.where(tot_e > 0, tot_o / np.where(tot_e > 0, tot_e, 1.0), 0.0)[None, :, :]
    else:
        E = E0
    return _tidy(cube, labels, O, E, PY, C, beta)


def _cat(codes: np.ndarray, categories: Sequence[str]) -> pd.Categorical:
    return pd.Categorical.from_codes(np.asarray(codes, dtype=np.int32), categories=pd.Index(list(categories), dtype="str"))


def _tidy(cube: Cube, labels: list[str], O: np.ndarray, E: np.ndarray, PY: np.ndarray, C: np.ndarray,
          beta: np.ndarray) -> pd.DataFrame:
    """Long table from (P, K, Y) arrays. Key columns are categoricals whose categories are sorted
    text (cheap at national scale; :func:`pbc_analysis.publish.results.write_table` writes them as text)."""
    P, K, Y = O.shape
    ser = cube.series
    meas = pd.Index(list(dict.fromkeys(ser["measure"])))
    mk = meas.get_indexer(ser["measure"])
    # all specialties: sum series of each measure
    onehot = np.zeros((K, len(meas)))
    onehot[np.arange(K), mk] = 1.0
    O_all = np.einsum("pky,km->pmy", O, onehot)
    E_all = np.einsum("pky,km->pmy", E, onehot)
    C_all = np.einsum("pky,km->pmy", np.nan_to_num(C, nan=0.0), onehot)
    C_all[:, np.asarray(meas == "referrals"), :] = np.nan
    period_cats = sorted(labels)
    meas_cats = sorted(meas)
    spec_cats = sorted(set(ser["specialty_code"]) | {ALL})
    y_code = pd.Index(period_cats).get_indexer(labels)
    p_code = np.arange(P)
    frames = []
    for o, e, c, b, m_codes, s_codes in (
            (O, E, C, beta, ser["measure"].to_numpy(), ser["specialty_code"].to_numpy()),
            (O_all, E_all, C_all, np.full((len(meas), Y), np.nan), meas.to_numpy(), np.full(len(meas), ALL))):
        k = o.shape[1]
        mc = pd.Index(meas_cats).get_indexer(m_codes)
        sc = pd.Index(spec_cats).get_indexer(s_codes)
        frames.append(pd.DataFrame({
            "period": _cat(np.tile(y_code, P * k), period_cats),
            "practice_code": _cat(np.repeat(p_code, k * Y), cube.practices),
            "measure": _cat(np.tile(np.repeat(mc, Y), P), meas_cats),
            "specialty_code": _cat(np.tile(np.repeat(sc, Y), P), spec_cats),
            "observed": o.reshape(-1),
            "expected": e.reshape(-1),
            "person_years": np.repeat(PY[:, None, :], k, axis=1).reshape(-1),
            "cost": c.reshape(-1),
            "deprivation_log_rr": np.tile(b.reshape(-1), P),
        }))
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------------------------------
# Standardised ratios
# --------------------------------------------------------------------------------------------------

def standardised_ratios(expected: pd.DataFrame, confidence: Sequence[float] = (0.95, 0.998),
                        info: pd.DataFrame | None = None) -> pd.DataFrame:
    """Indirectly standardised ratios O/E with confidence limits, per row of :func:`expected_counts`.

    Limits: exact Poisson below 10 observed events, Byar's approximation from 10, for O, divided by
    E (E treated as fixed; PHEindicatormethods ``calculate_ISRatio``, via
    :func:`pbc_analysis.methods.indicators.poisson_limits`). Adds ``ratio``, ``lower_<c>``/``upper_<c>`` per
    level (``lower_95_0``, ``upper_99_8``, ...), ``rate_per_1000`` (crude: observed per 1,000
    person-years) and ``standardised_rate_per_1000`` (ratio x the PCT crude rate of the series and
    period), and the practice's ``consortium`` when ``info`` (the practices table) is given. A row
    with no expected events has a missing ratio.
    """
    from pbc_analysis.methods.indicators import ci_suffix, confidence_levels, poisson_limits

    out = expected.copy()
    o = out["observed"].to_numpy(dtype=float)
    e = out["expected"].to_numpy(dtype=float)
    pos = e > 0
    e_safe = np.where(pos, e, 1.0)
    out["ratio"] = np.where(pos, o / e_safe, np.nan)
    for level in (confidence_levels(tuple(confidence)) if len(confidence) else ()):
        lo, hi = poisson_limits(o, level)
        sfx = ci_suffix(level)
        out[f"lower_{sfx}"] = np.where(pos, np.nan_to_num(np.asarray(lo, float), nan=0.0) / e_safe, np.nan)
        out[f"upper_{sfx}"] = np.where(pos, np.asarray(hi, float) / e_safe, np.nan)
    py = out["person_years"].to_numpy(dtype=float)
    out["rate_per_1000"] = np.where(py > 0, 1000.0 * o / np.where(py > 0, py, 1.0), np.nan)
    keys = ["period", "measure", "specialty_code"]
    tot = out.groupby(keys, sort=False, observed=True)[["observed", "person_years"]].transform("sum")
    pct_rate = 1000.0 * tot["observed"].to_numpy(float) / tot["person_years"].to_numpy(float)
    out["standardised_rate_per_1000"] = out["ratio"].to_numpy(float) * pct_rate
    if info is not None:
        cons = info.set_index("practice_code")["consortium"]
        pc = out["practice_code"]
        if isinstance(pc.dtype, pd.CategoricalDtype):  # map the categories, not every row
            per_cat = cons.reindex(pc.cat.categories).to_numpy()
            cats = sorted(set(per_cat))
            codes = pd.Index(cats).get_indexer(per_cat)[pc.cat.codes.to_numpy()]
            col = _cat(codes, cats)
        else:
            col = cons.reindex(pc).to_numpy()
        out.insert(out.columns.get_loc("practice_code") + 1, "consortium", col)
    return out


# --------------------------------------------------------------------------------------------------
# Peer positions
# --------------------------------------------------------------------------------------------------

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
    (linear interpolation between order statistics, numpy's default)."""
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
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN groups give NaN
            qs = np.nanpercentile(mat, np.asarray(percentiles, float), axis=1)  # (Q, G)
    g = groups
    n_q = len(percentiles)
    out = pd.DataFrame({k: np.tile(g[k].to_numpy(), n_q) for k in keys})
    out["percentile"] = np.repeat(np.asarray(percentiles, int), len(g))
    out["value"] = qs.reshape(-1)
    return out.sort_values(keys + ["percentile"], kind="stable", ignore_index=True)


# --------------------------------------------------------------------------------------------------
# Funnels
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Funnels:
    """Funnel results for every period, measure and specialty.

    ``units``: the ratio table with, per practice, ``z`` (the z-score on the method's scale),
    ``limit_lower_95_0``, ``limit_upper_95_0``, ``limit_lower_99_8``, ``limit_upper_99_8`` (control
    limits at the practice's expected count, with the over-dispersion adjustment in use) and
    ``position`` (``above 99.8%``, ``above 95%``, ``within``, ``below 95%``, ``below 99.8%``);
    ``dispersion``: per group the target, units, phi, tau2, the dispersion test and the adjustment
    used and why. :func:`funnel_lines` draws a group's limits over a grid of expected counts.
    """

    units: pd.DataFrame
    dispersion: pd.DataFrame
    sr_method: str = "CQC"


FUNNEL_KEYS = ["period", "measure", "specialty_code"]


def funnel_table(ratios: pd.DataFrame, overdispersion: str = "auto", sr_method: str = "CQC", trim_by: float = 0.1,
                 alpha: float = 0.05, consistency: bool = True) -> Funnels:
    """Spiegelhalter funnels of standardised ratios O/E for every period, measure and specialty.

    Each group (period x measure x specialty; the practices are the units) is a funnel as
    :func:`pbc_analysis.methods.funnel.funnel_overdispersion` with ``data_type="SR"`` computes it, done for
    all groups at once by :func:`pbc_analysis.methods.funnel.sr_overdispersion_by_group`: z-scores on the
    square-root scale (``sr_method="CQC"``, winsorised at ``trim_by`` each end; Spiegelhalter 2005)
    or the log scale (``"SHMI"``, truncated), phi = mean trimmed z^2, tau^2 by DerSimonian-Laird,
    and limits that are unadjusted (exact Poisson), multiplicative (``"phi"``) or additive
    (``"tau2"``); ``"auto"`` adjusts additively only when the dispersion test rejects at ``alpha``.
    Expected counts are not rounded. ``consistency`` (default on) rescales phi to the variance of
    untrimmed normal z-scores (:func:`pbc_analysis.methods.funnel.trimmed_normal_second_moment`): practice
    propensities really do differ, and without it the limits are about a fifth too narrow and flag
    several times more practices than their level says (measured over seeds by
    ``scripts/simulate_benchmark.py``). Practices with no expected events in a group have no ratio and
    are left out of that group's funnel (counted in ``dispersion.n_no_expected``).
    """
    from pbc_analysis.methods.funnel import sr_overdispersion_by_group

    need = FUNNEL_KEYS + ["practice_code", "observed", "expected", "ratio"]
    missing = [c for c in need if c not in ratios.columns]
    if missing:
        raise BenchmarkError(f"funnel_table needs columns {missing} (from standardised_ratios)")
    out = ratios.reset_index(drop=True).copy()
    raw = _group_codes(out, FUNNEL_KEYS)
    uniq, codes = np.unique(raw, return_inverse=True)
    first = np.unique(codes, return_index=True)[1]
    groups = pd.MultiIndex.from_frame(out[FUNNEL_KEYS].iloc[first].astype("str"))
    e = out["expected"].to_numpy(float)
    ok = e > 0
    sub_codes, sub_groups = pd.factorize(codes[ok], sort=True)
    units, summary = sr_overdispersion_by_group(out["observed"].to_numpy(float)[ok], e[ok], sub_codes,
                                                sr_method=sr_method, trim_by=trim_by,
                                                overdispersion=overdispersion, alpha=alpha,
                                                consistency=consistency)
    for src, dst in (("z", "z"), ("lower95", "limit_lower_95_0"), ("upper95", "limit_upper_95_0"),
                     ("lower998", "limit_lower_99_8"), ("upper998", "limit_upper_99_8")):
        col = np.full(len(out), np.nan)
        col[ok] = units[src].to_numpy(float)
        out[dst] = col
    r = out["ratio"].to_numpy(float)
    out["position"] = np.select(
        [np.isnan(out["limit_upper_95_0"].to_numpy()), r > out["limit_upper_99_8"], r > out["limit_upper_95_0"],
         r < out["limit_lower_99_8"], r < out["limit_lower_95_0"]],
        ["", "above 99.8%", "above 95%", "below 99.8%", "below 95%"], default="within")
    keys = pd.DataFrame(list(groups[np.asarray(sub_groups)]), columns=FUNNEL_KEYS) if len(summary) else \
        pd.DataFrame(columns=FUNNEL_KEYS)
    disp = pd.concat([keys, summary.drop(columns="group")], axis=1)
    n_all = np.bincount(codes, minlength=len(groups))
    disp["n_no_expected"] = n_all[np.asarray(sub_groups)] - disp["n_units"].to_numpy()
    for c in FUNNEL_KEYS:
        disp[c] = disp[c].astype("str")
    return Funnels(out, disp.sort_values(FUNNEL_KEYS, ignore_index=True), sr_method)


def funnel_lines(funnels: Funnels, period: str, measure: str, specialty_code: str, n_grid: int = 300) -> pd.DataFrame:
    """One funnel's target and 95%/99.8% limits (the adjustment in use) over a grid of expected
    counts, for :func:`pbc_analysis.publish.figures.plot_funnel` (columns ``denominator``, ``target``,
    ``lower95``, ``upper95``, ``lower998``, ``upper998``)."""
    from pbc_analysis.methods.funnel import od_limits

    d = funnels.dispersion
    row = d[(d["period"] == period) & (d["measure"] == measure) & (d["specialty_code"] == specialty_code)]
    if row.empty:
        raise BenchmarkError(f"no funnel for {period} {measure} {specialty_code}")
    row = row.iloc[0]
    u = funnels.units
    e = u.loc[(u["period"] == period) & (u["measure"] == measure) & (u["specialty_code"] == specialty_code),
              "expected"].to_numpy(float)
    e = e[e > 0]
    grid = np.unique(np.concatenate([np.geomspace(max(1.1, e.min() * 0.8), e.max() * 1.05, n_grid), e]))
    lim = od_limits(grid, data_type="SR", sr_method=funnels.sr_method, phi=float(row["phi"]), tau2=float(row["tau2"]))
    prefix = "" if row["overdispersion_used"] == "none" else f"{row['overdispersion_used']}_"
    out = pd.DataFrame({"denominator": grid, "target": 1.0})
    for src, dst in zip(["ll95", "ul95", "ll998", "ul998"], ["lower95", "upper95", "lower998", "upper998"]):
        out[dst] = lim[prefix + src].to_numpy()
    return out


def funnel_panels(funnels: Funnels, period: str, measure: str | None = None, specialty_code: str | None = ALL,
                  labels: dict[str, str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Units and limit lines of several funnels for small multiples (:func:`pbc_analysis.publish.figures.funnel_grid_figure`).

    With ``measure`` given and ``specialty_code=None``: one panel per specialty of that measure; with
    ``measure=None``: one panel per measure at ``specialty_code`` (``all`` by default). Panels are
    named by ``labels`` (e.g. ``{"110": "110 Trauma and orthopaedics"}``) where given.
    """
    u = funnels.units
    sel = u["period"] == period
    if measure is not None:
        sel &= u["measure"] == measure
    if specialty_code is not None:
        sel &= u["specialty_code"] == specialty_code
    else:
        sel &= u["specialty_code"] != ALL
    units = u[sel & u["expected"].gt(0)].copy()
    key = "specialty_code" if specialty_code is None else "measure"
    names = labels or {}
    units["panel"] = units[key].astype("str").map(lambda v: names.get(v, v))
    lines = []
    for (m, sc), g in units.groupby(["measure", "specialty_code"], sort=True, observed=True):
        ln = funnel_lines(funnels, period, str(m), str(sc))
        ln["panel"] = g["panel"].iloc[0]
        lines.append(ln)
    units = units.sort_values([key, "practice_code"], kind="stable")
    return units, pd.concat(lines, ignore_index=True)


# --------------------------------------------------------------------------------------------------
# Flags and scorecard
# --------------------------------------------------------------------------------------------------

def flags(funnel: pd.DataFrame, high_level: float = 0.998, under_level: float = 0.95,
          persistent_min_periods: int = 2, persistent_window: int = 3) -> pd.DataFrame:
    """Outlier flags per practice, period, measure and specialty from a :func:`funnel_table`.

    - ``high_referrer``: ratio above the upper control limit at ``high_level`` (99.8% by default),
      after standardisation and the chosen over-dispersion adjustment;
    - ``possible_under_referrer``: ratio below the lower limit at ``under_level`` (95% by default):
      fewer events than the practice's need implies. The level is deliberately looser than for high
      referrers: this flag is a screen whose cost of a miss is paying savings for under-referral (which
      the Audit Commission warned against), and its consequence is only a review. It is a prompt for
      review, not a verdict (coding, list
      inflation and a younger-than-recorded list all look the same), and it gates savings in
      :mod:`pbc_analysis.stages.attribution` so that under-referral is never rewarded unreviewed;
    - ``persistent_outlier``: flagged (either way) in at least ``persistent_min_periods`` of the last
      ``persistent_window`` periods up to and including this one (a single period can be chance or
      regression to the mean; persistence is what deserves a conversation).
    ``flag`` summarises: ``high``, ``under``, with ``, persistent`` appended, or empty.
    """
    from pbc_analysis.methods.indicators import ci_suffix

    if not 1 <= persistent_min_periods <= persistent_window:
        raise BenchmarkError("need 1 <= persistent_min_periods <= persistent_window, got "
                             f"{persistent_min_periods} and {persistent_window}")
    hi_col, lo_col = f"limit_upper_{ci_suffix(high_level)}", f"limit_lower_{ci_suffix(under_level)}"
    missing = [c for c in (hi_col, lo_col) if c not in funnel.columns]
    if missing:
        raise BenchmarkError(f"the funnel table has no {missing}: compute it with levels including "
                             f"{high_level} and {under_level}")
    keep = ["period", "practice_code", "consortium", "measure", "specialty_code", "observed", "expected", "ratio"]
    out = funnel[[c for c in keep if c in funnel.columns]].copy()
    r = funnel["ratio"].to_numpy(float)
    out["high_referrer"] = r > funnel[hi_col].to_numpy(float)
    out["possible_under_referrer"] = r < funnel[lo_col].to_numpy(float)
    out, unit = _by_unit_then_period(out)
    any_flag = (out["high_referrer"] | out["possible_under_referrer"]).astype(int)
    cum = any_flag.groupby(unit, sort=False).cumsum()
    recent = cum - cum.groupby(unit, sort=False).shift(persistent_window, fill_value=0)  # rolling window sum
    out["persistent_outlier"] = recent.to_numpy() >= persistent_min_periods
    label = np.where(out["high_referrer"], "high", np.where(out["possible_under_referrer"], "under", ""))
    out["flag"] = np.where(out["persistent_outlier"] & (label != ""), np.char.add(label.astype(str), ", persistent"),
                           label)
    return out.sort_index().reset_index(drop=True)


def scorecard(ratios: pd.DataFrame, flag_table: pd.DataFrame, period: str, measure: str = "referrals",
              level: float = 0.95) -> pd.DataFrame:
    """One row per practice for ``period``: list (person-years), cost, activity by measure, ratios, flags.

    Columns: ``practice_code``, ``consortium``, ``person_years``, ``cost`` (all points of delivery,
    GBP), ``cost_per_head``, then per measure (all specialties) ``<measure>_observed`` and
    ``<measure>_ratio`` with ``<measure>_lower``/``<measure>_upper`` at ``level``, then the
    ``flag`` of ``measure`` (all specialties), ``flagged_specialties`` (specialties of ``measure``
    flagged in the period, ``;``-separated) and ``pct_percentile`` of ``measure``.
    """
    from pbc_analysis.methods.indicators import ci_suffix

    sfx = ci_suffix(level)
    r = ratios[(ratios["period"] == period) & (ratios["specialty_code"] == ALL)]
    if r.empty:
        raise BenchmarkError(f"no ratios for period {period!r}; periods are {sorted(ratios['period'].unique())}")
    base = r[r["measure"] == measure][["practice_code", "consortium", "person_years"]].set_index("practice_code")
    cost = r.groupby("practice_code")["cost"].sum(min_count=1)
    base["cost"] = cost.reindex(base.index)
    base["cost_per_head"] = base["cost"] / base["person_years"]
    wide = r.pivot(index="practice_code", columns="measure", values=["observed", "ratio", f"lower_{sfx}", f"upper_{sfx}"])
    order = [m for m in _data.MEASURES if m in set(r["measure"])]
    for m in order:
        base[f"{m}_observed"] = wide[("observed", m)].reindex(base.index)
        base[f"{m}_ratio"] = wide[("ratio", m)].reindex(base.index)
        base[f"{m}_lower"] = wide[(f"lower_{sfx}", m)].reindex(base.index)
        base[f"{m}_upper"] = wide[(f"upper_{sfx}", m)].reindex(base.index)
    f = flag_table[(flag_table["period"] == period) & (flag_table["measure"] == measure)]
    fa = f[f["specialty_code"] == ALL].set_index("practice_code")["flag"]
    base["flag"] = fa.reindex(base.index).fillna("").to_numpy()
    fs = f[(f["specialty_code"] != ALL) & (f["flag"] != "")]
    spec = fs.groupby("practice_code")["specialty_code"].agg(lambda s: ";".join(sorted(s)))
    base["flagged_specialties"] = spec.reindex(base.index).fillna("").to_numpy()
    if "pct_percentile" in ratios.columns:
        pr = r[r["measure"] == measure].set_index("practice_code")["pct_percentile"]
        base["pct_percentile"] = pr.reindex(base.index)
    return base.reset_index()


# --------------------------------------------------------------------------------------------------
# Everything at once (what notebook 02 runs)
# --------------------------------------------------------------------------------------------------

IMPROVEMENT: dict[str, str] = {"referrals": "decrease", "first_op": "decrease", "followup_op": "decrease",
                               "elective": "neither", "non_elective": "decrease", "ae": "decrease"}


@dataclass(frozen=True, eq=False)
class Benchmark:
    """All benchmarking tables of a run (see :func:`benchmark_practices`)."""

    ratios: pd.DataFrame
    funnels: Funnels
    flags: pd.DataFrame
    scorecard: pd.DataFrame
    monthly: pd.DataFrame
    fan: pd.DataFrame
    spc: pd.DataFrame
    latest_period: str
    settings: dict


def benchmark_practices(cube: Cube, period: str = "financial_year", periods: Sequence[str] | None = None,
                        standardisation: str = "age_sex+deprivation", target: str = "pct",
                        confidence: Sequence[float] = (0.95, 0.998), overdispersion: str = "auto",
                        sr_method: str = "CQC", trim_by: float = 0.1, consistency: bool = True,
                        high_level: float = 0.998, under_level: float = 0.95, persistent_min_periods: int = 2,
                        persistent_window: int = 3, spc_measure: str = "referrals", spc_baseline_months: int = 12,
                        improvement: dict[str, str] | None = None) -> Benchmark:
    """Standardised ratios, funnels, peer positions, flags, scorecard, decile fan and SPC in one call.

    ``ratios`` holds, per period, practice, measure and specialty (and ``all``), the observed and
    expected counts, ratio and limits, funnel position and peer position; ``monthly`` the monthly
    ratios of ``spc_measure`` (all specialties) for the fan chart and SPC; ``spc`` XmR charts of the
    monthly ratio of every practice flagged in the latest period (limits from its first
    ``spc_baseline_months`` months; improvement direction from ``improvement``, by measure).
    """
    improvement = {**IMPROVEMENT, **(improvement or {})}
    bad = {k: v for k, v in improvement.items() if v not in ("increase", "decrease", "neither")}
    if bad:
        raise BenchmarkError(f"improvement directions must be increase, decrease or neither: {bad}")
    if spc_measure not in set(cube.series["measure"]):
        raise BenchmarkError(f"spc_measure {spc_measure!r} is not in the data; measures are "
                             f"{', '.join(dict.fromkeys(cube.series['measure']))}")
    expected = expected_counts(cube, period=period, periods=periods, standardisation=standardisation, target=target)
    ratios = standardised_ratios(expected, confidence=confidence, info=cube.practice_info)
    funnels = funnel_table(ratios, overdispersion=overdispersion, sr_method=sr_method, trim_by=trim_by,
                           consistency=consistency)
    ratios = funnels.units
    peers = peer_positions(ratios)  # same rows, same order
    ratios = pd.concat([ratios, peers.drop(columns=FUNNEL_KEYS + ["practice_code", "consortium", "ratio"])], axis=1)
    flag_table = flags(ratios, high_level=high_level, under_level=under_level,
                       persistent_min_periods=persistent_min_periods, persistent_window=persistent_window)
    latest = sorted(ratios["period"].unique())[-1]
    card = scorecard(ratios, flag_table, latest, measure=spc_measure)

    monthly = standardised_ratios(expected_counts(select_measures(cube, [spc_measure]), period="month",
                                                  standardisation=standardisation, target="pct"),
                                  confidence=(), info=cube.practice_info)
    fan = decile_fan(monthly)
    from pbc_analysis.methods import spc as _spc

    flagged = flag_table[(flag_table["period"] == latest) & (flag_table["measure"] == spc_measure)
                         & (flag_table["specialty_code"] == ALL) & (flag_table["flag"] != "")]["practice_code"]
    series = monthly[(monthly["specialty_code"] == ALL) & monthly["practice_code"].isin(set(flagged))]
    if len(series):
        chart = _spc.xmr(series[["practice_code", "period", "ratio"]].rename(columns={"period": "month"}),
                         "ratio", "month", by="practice_code", baseline=spc_baseline_months,
                         improvement=improvement[spc_measure])
    else:
        chart = pd.DataFrame(columns=["practice_code", "month", "ratio"])
    settings = {"period": period, "periods": list(periods) if periods else [], "standardisation": standardisation,
                "target": target, "confidence": list(confidence), "overdispersion": overdispersion,
                "sr_method": sr_method, "trim_by": trim_by, "consistency": consistency, "high_level": high_level,
                "under_level": under_level, "persistent_min_periods": persistent_min_periods,
                "persistent_window": persistent_window, "spc_measure": spc_measure,
                "spc_baseline_months": spc_baseline_months, "improvement": improvement,
                "reference_rates": cube.has_reference_rates}
    return Benchmark(ratios, funnels, flag_table, card, monthly, fan, chart, latest, settings)


def headline(bm: Benchmark) -> dict:
    """Headline figures for ``results.json`` (section ``benchmarking``): the latest period's flagged
    practices for the SPC measure (all specialties), the over-dispersion of its funnel, the
    deprivation gradient and counts of flags by measure."""
    s = bm.settings
    m, latest = s["spc_measure"], bm.latest_period
    f = bm.flags[(bm.flags["period"] == latest) & (bm.flags["specialty_code"] == ALL)]
    fm = f[f["measure"] == m]
    d = bm.funnels.dispersion
    dm = d[(d["period"] == latest) & (d["measure"] == m) & (d["specialty_code"] == ALL)].iloc[0]
    spec = bm.ratios[(bm.ratios["period"] == latest) & (bm.ratios["measure"] == m) & (bm.ratios["specialty_code"] != ALL)]
    beta = spec.groupby("specialty_code")["deprivation_log_rr"].first()
    by_measure = f.groupby("measure")[["high_referrer", "possible_under_referrer", "persistent_outlier"]].sum()
    return {
        "latest_period": latest,
        "measure": m,
        "standardisation": s["standardisation"],
        "target": s["target"],
        "n_practices": int(fm["practice_code"].nunique()),
        "high_referrers": sorted(fm.loc[fm["high_referrer"], "practice_code"].tolist()),
        "possible_under_referrers": sorted(fm.loc[fm["possible_under_referrer"], "practice_code"].tolist()),
        "persistent_outliers": sorted(fm.loc[fm["persistent_outlier"], "practice_code"].tolist()),
        "overdispersion": {"used": str(dm["overdispersion_used"]), "phi": float(dm["phi"]), "tau2": float(dm["tau2"]),
                           "dispersion_p": float(dm["dispersion_p"]), "reason": str(dm["overdispersion_reason"])},
        "deprivation_rate_ratio_per_sd_median": (float(np.exp(np.nanmedian(beta.to_numpy(float))))
                                                 if beta.notna().any() else None),
        "flags_by_measure": {k: {c: int(v) for c, v in row.items()} for k, row in by_measure.iterrows()},
    }


RATIO_COLUMNS = ["period", "practice_code", "consortium", "measure", "specialty_code", "observed", "expected",
                 "person_years", "cost", "ratio", "lower_95_0", "upper_95_0", "lower_99_8", "upper_99_8",
                 "rate_per_1000", "standardised_rate_per_1000", "z", "limit_lower_95_0", "limit_upper_95_0",
                 "limit_lower_99_8", "limit_upper_99_8", "position", "pct_percentile", "pct_decile",
                 "consortium_percentile", "consortium_decile", "change", "trend_per_period"]
SPECIALTY_RATIO_COLUMNS = ["period", "practice_code", "measure", "specialty_code", "observed", "expected", "ratio",
                           "limit_lower_95_0", "limit_upper_95_0", "limit_lower_99_8", "limit_upper_99_8",
                           "position", "pct_percentile"]


def result_tables(bm: Benchmark) -> dict[str, pd.DataFrame]:
    """The run's benchmarking tables (written by notebook 02 to ``tables/``).

    ``bm_ratios`` (all specialties together, every measure and period, all columns),
    ``bm_specialty_ratios`` (each specialty in the latest period, the funnel columns; every flagged
    specialty of every period is in ``bm_flags``), ``bm_deprivation`` (the fitted deprivation gradient),
    ``bm_dispersion`` (one row per funnel), ``bm_flags`` (flagged practice-periods only),
    ``bm_scorecard``, ``bm_decile_fan`` (all specialties) and ``bm_spc`` (monthly SPC of flagged practices).
    """
    r = bm.ratios
    cols = [c for c in RATIO_COLUMNS if c in r.columns]
    allr = r.loc[r["specialty_code"] == ALL, cols]
    spec = r.loc[(r["specialty_code"] != ALL) & (r["period"] == bm.latest_period),
                 [c for c in SPECIALTY_RATIO_COLUMNS if c in r.columns]]
    dep = (r.loc[r["specialty_code"] != ALL].groupby(["period", "measure", "specialty_code"], observed=True)
           ["deprivation_log_rr"].first().reset_index())
    dep["rate_ratio_per_sd"] = np.exp(dep["deprivation_log_rr"])
    f = bm.flags
    flagged = f.loc[f["flag"] != ""]
    spc_cols = [c for c in bm.spc.columns if c not in ("baseline",)]
    return {
        "bm_ratios": allr,
        "bm_specialty_ratios": spec,
        "bm_deprivation": dep,
        "bm_dispersion": bm.funnels.dispersion,
        "bm_flags": flagged,
        "bm_scorecard": bm.scorecard,
        "bm_decile_fan": bm.fan.loc[bm.fan["specialty_code"] == ALL],
        "bm_spc": bm.spc[spc_cols],
    }


def describe(head: dict) -> str:
    """A short plain-language reading of :func:`headline` (numbers from the results, none typed in)."""
    od = head["overdispersion"]
    lines = [f"**{head['latest_period']}, {head['measure'].replace('_', ' ')}, all specialties:** "
             f"{head['n_practices']} practices compared on expected counts adjusted for "
             f"{head['standardisation'].replace('+', ' and ').replace('_', '-')} "
             f"(benchmark: {'this PCT' if head['target'] == 'pct' else 'the reference rates'})."]
    if od["used"] == "none":
        lines.append(f"Practices vary no more than chance predicts (phi = {od['phi']:.2f}); the limits are unadjusted.")
    else:
        p = od["dispersion_p"]
        ptxt = "p < 0.0001" if p < 1e-4 else f"p = {p:.2g}"
        lines.append(f"Practices vary {od['phi']:.1f} times more than Poisson noise (dispersion test {ptxt}), "
                     f"so the limits are widened ({'additive random effects, tau squared' if od['used'] == 'tau2' else 'multiplicative phi'}).")
    for key, label in (("high_referrers", "High referrers"), ("possible_under_referrers", "Possible under-referrers"),
                       ("persistent_outliers", "Persistent outliers")):
        codes = head[key]
        lines.append(f"{label}: {', '.join(codes) if codes else 'none'}.")
    if head.get("deprivation_rate_ratio_per_sd_median") is not None:
        lines.append(f"Deprivation gradient: one standard deviation of IMD score goes with "
                     f"{head['deprivation_rate_ratio_per_sd_median']:.2f} times the rate (median over specialties).")
    return "\n\n".join(lines)


def deprivation_adjusted_ratios(df: pd.DataFrame, unit: str, observed: str, population: str, score: str,
                                confidence: Sequence[float] = (0.95, 0.998), overdispersion: str = "auto",
                                sr_method: str = "CQC", trim_by: float = 0.1, consistency: bool = True) -> tuple[pd.DataFrame, dict]:
    """Need-adjusted ratios for any table of units with a count, a population and a deprivation score.

    ``E_i = n_i exp(alpha + beta z_i)`` from the Poisson regression ``O_i ~ Poisson(n_i exp(alpha + beta
    z_i))`` (z the score standardised over the units used; :func:`poisson_offset_fit`), so that sum E =
    sum O; then the ratio O/E with exact/Byar limits and its funnel position as
    :func:`funnel_table`. Units with a missing or negative count, a missing or zero population or a
    missing score keep their row with ``excluded`` saying why (nothing is dropped silently). Returns
    ``(table, fit)`` where ``fit`` has ``alpha``, ``beta`` (per SD of score), ``score_mean``,
    ``score_sd``, ``n_used``, ``n_excluded`` and the funnel's dispersion summary.
    """
    need = [unit, observed, population, score]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise BenchmarkError(f"columns {missing} not in the table; it has {list(df.columns)}")
    out = df[need].copy().reset_index(drop=True)
    o = pd.to_numeric(out[observed], errors="raise").to_numpy(float)
    n = pd.to_numeric(out[population], errors="raise").to_numpy(float)
    x = pd.to_numeric(out[score], errors="raise").to_numpy(float)
    reason = np.select([np.isnan(o), o < 0, np.isnan(n), n <= 0, np.isnan(x)],
                       [f"{observed} missing", f"{observed} negative", f"{population} missing", f"{population} not positive",
                        f"{score} missing"], default="")
    ok = reason == ""
    if ok.sum() < 3:
        raise BenchmarkError(f"fewer than 3 units with {observed}, {population} and {score} all present")
    mean, sd = float(x[ok].mean()), float(x[ok].std())
    z = (x - mean) / (sd if sd > 0 else 1.0)
    a, b = poisson_offset_fit(o[ok][None, :], np.log(n[ok])[None, :], z[ok][None, :])
    e = np.where(ok, n * np.exp(a[0] + b[0] * np.where(ok, z, 0.0)), np.nan)
    out["expected"] = e
    out["excluded"] = reason
    frame = pd.DataFrame({"period": "all", "practice_code": out[unit].astype(str), "measure": observed,
                          "specialty_code": ALL, "observed": np.where(ok, o, np.nan), "expected": np.where(ok, e, 0.0),
                          "person_years": np.where(ok, n, np.nan)})
    sr = standardised_ratios(frame, confidence=confidence)
    fu = funnel_table(sr[ok].reset_index(drop=True), overdispersion=overdispersion, sr_method=sr_method,
                      trim_by=trim_by, consistency=consistency)
    keep = [c for c in fu.units.columns if c.startswith(("ratio", "lower_", "upper_", "limit_")) or c in ("z", "position")]
    res = pd.DataFrame(np.nan, index=out.index, columns=[c for c in keep if c != "position"])
    res.loc[ok, res.columns] = fu.units[res.columns].to_numpy()
    out = pd.concat([out, res], axis=1)
    out["position"] = ""
    out.loc[ok, "position"] = fu.units["position"].to_numpy()
    disp = fu.dispersion.iloc[0].to_dict()
    fit = {"alpha": float(a[0]), "beta": float(b[0]), "score_mean": mean, "score_sd": sd, "n_used": int(ok.sum()),
           "n_excluded": int((~ok).sum()), **{k: disp[k] for k in ("phi", "tau2", "dispersion_p", "overdispersion_used")}}
    return out, fit
