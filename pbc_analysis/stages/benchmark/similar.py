"""Similar practices ("similar 10"), the opportunity against them, and the monthly SPC of every practice.

A practice is compared with the practices most like it in the things it cannot change: the size of its list,
the age mix of its patients and their deprivation. :func:`practice_features` measures these from the validated
inputs (one row per practice, with its name and consortium, for the practice pages); :func:`similar_practices`
finds each practice's ``k`` nearest practices of the PCT by Euclidean distance on z-scored features, as NHS
RightCare's "similar 10" does for commissioners; :func:`peer_opportunity` says what a practice's referrals would
be at its peers' median and best-quartile standardised ratio (RightCare's "opportunity"). :func:`practice_spc`
is the XmR chart of every practice's monthly standardised ratio (the benchmarking stage draws only the flagged
ones), with no direction of improvement: a special cause is "higher" or "lower", never "improvement", because
fewer referrals is not necessarily better (an under-referrer).

Notebook 02 writes them as ``tables/bm_practices.csv``, ``bm_similar.csv``, ``bm_opportunity.csv`` and
``bm_practice_spc.csv``; :mod:`pbc_analysis.publish.practice_pages` reads them.

References
----------
NHS England, RightCare methodology: each system compared with its most similar 10 comparators on demographic
variables (deprivation, age distribution, population density, ethnicity),
https://www.england.nhs.uk/rightcare/rightcare-methodology/.
NHS England (2019), Making Data Count (XmR charts and their rules).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from pbc_analysis.core.checks import check_number
from pbc_analysis.methods import spc as _spc
from pbc_analysis.stages.benchmark.cube import ALL

__all__ = ["FEATURES", "OPPORTUNITY_MEASURES", "peer_opportunity", "practice_features", "practice_spc",
           "similar_practices"]

#: the features of :func:`similar_practices` by default (``list_size`` is compared on the log scale)
FEATURES: tuple[str, ...] = ("list_size", "share_0_14", "share_65_plus", "imd_score")
#: the measures of :func:`peer_opportunity` by default: GP referrals and first outpatient attendances
OPPORTUNITY_MEASURES: tuple[str, ...] = ("referrals", "first_op")
#: distances are ordered after rounding to this many decimals, so that floating-point noise cannot break a tie
_DECIMALS = 10


def _lower_age(band: str) -> int:
    """The lower bound of an age band (``"0-4"`` -> 0, ``"90+"`` -> 90)."""
    m = re.match(r"\s*([0-9]+)", str(band))
    if m is None:
        raise ValueError(f"age band {band!r} does not start with its lower age")
    return int(m.group(1))


def practice_features(population: pd.DataFrame, practices: pd.DataFrame, month: str | None = None) -> pd.DataFrame:
    """Each practice's list size, age mix and deprivation in one month: the features of :func:`similar_practices`.

    Parameters
    ----------
    population : pandas.DataFrame
        The ``population`` table: ``practice_code, month, age_band, sex, registered``.
    practices : pandas.DataFrame
        The ``practices`` table: ``practice_code, practice_name, consortium, imd_score``.
    month : str, optional
        ``YYYY-MM``; default the latest month of ``population``.

    Returns
    -------
    pandas.DataFrame
        One row per practice of ``practices``, sorted by code: ``practice_code, practice_name, consortium, month,
        list_size`` (registered patients), ``share_0_14`` and ``share_65_plus`` (shares of the list aged 0 to 14
        and 65 or over) and ``imd_score``. A practice with no list in ``month`` has list size 0 and missing shares.

    Raises
    ------
    ValueError
        If ``month`` is not a month of ``population``.

    References
    ----------
    NHS Digital, Patients Registered at a GP Practice (quinary age bands; lists are published, not disclosed).
    """
    months = population["month"].astype(str)
    month = max(months.unique()) if month is None else str(month)
    rows = population[(months == month).to_numpy()]
    if rows.empty:
        raise ValueError(f"month {month!r} is not in the population table ({months.min()} to {months.max()})")
    lower = rows["age_band"].astype(str).map(_lower_age).to_numpy()
    reg = rows["registered"].to_numpy(float)
    codes = rows["practice_code"].astype(str).to_numpy()
    frame = pd.DataFrame({"practice_code": codes, "all": reg, "young": np.where(lower < 15, reg, 0.0),
                          "old": np.where(lower >= 65, reg, 0.0)})
    sums = frame.groupby("practice_code", sort=True)[["all", "young", "old"]].sum()
    out = practices[["practice_code", "practice_name", "consortium", "imd_score"]].astype(
        {"practice_code": str, "practice_name": str, "consortium": str}).sort_values("practice_code", ignore_index=True)
    s = sums.reindex(out["practice_code"])
    total = s["all"].fillna(0.0).to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        young = np.where(total > 0, s["young"].to_numpy() / total, np.nan)
        old = np.where(total > 0, s["old"].to_numpy() / total, np.nan)
    out.insert(3, "month", month)
    out.insert(4, "list_size", total.round().astype(np.int64))
    out.insert(5, "share_0_14", young)
    out.insert(6, "share_65_plus", old)
    return out


def _standardised(features: pd.DataFrame, columns: Sequence[str], log: Sequence[str],
                  weights: Mapping[str, float] | None) -> np.ndarray:
    """The features as z-scores over the practices (population SD; a constant feature is 0), times sqrt(weight)."""
    missing = [c for c in columns if c not in features.columns]
    if missing:
        raise ValueError(f"features has no column(s) {missing}; pass practice_features()'s table or name its columns")
    x = features[list(columns)].to_numpy(float).copy()
    for j, c in enumerate(columns):
        if c in log:
            if (x[:, j] <= 0).any():
                bad = features.loc[x[:, j] <= 0, "practice_code"].tolist()[:10]
                raise ValueError(f"feature {c!r} is compared on the log scale but is not positive for {bad}")
            x[:, j] = np.log(x[:, j])
    bad_rows = ~np.isfinite(x).all(axis=1)
    if bad_rows.any():
        raise ValueError(f"practices {features.loc[bad_rows, 'practice_code'].tolist()[:10]} have missing or "
                         f"infinite features ({', '.join(columns)}); they cannot be matched: fix the inputs")
    sd = x.std(axis=0)
    z = np.divide(x - x.mean(axis=0), sd, out=np.zeros_like(x), where=sd > 0)
    w = np.array([float((weights or {}).get(c, 1.0)) for c in columns])
    if (w < 0).any() or not np.isfinite(w).all():
        raise ValueError(f"weights must be finite and >= 0, got {dict(zip(columns, w))}")
    return z * np.sqrt(w)


def similar_practices(features: pd.DataFrame, k: int = 10, columns: Sequence[str] = FEATURES,
                      log: Sequence[str] = ("list_size",), weights: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Each practice's ``k`` most similar practices ("similar 10"): nearest by z-scored size, age mix and deprivation.

    Every feature is z-scored over the practices given (the PCT: mean 0, population standard deviation 1; a
    feature that is the same for every practice counts for nothing), ``list_size`` on the log scale (a practice of
    4,000 is as far from one of 8,000 as 8,000 from 16,000); the distance between two practices is the Euclidean
    distance of their (weighted) z-scores. A practice is never its own peer. Ties (equal distances, after rounding
    to 10 decimals so that floating-point noise cannot decide) are broken by practice code, so the result does not
    depend on row order. ``k`` larger than the number of other practices is **capped**: every other practice is
    then a peer (a PCT of 8 practices has similar 7s).

    Parameters
    ----------
    features : pandas.DataFrame
        One row per practice with ``practice_code`` and ``columns`` (:func:`practice_features`); codes unique.
    k : int
        Peers per practice, at least 1 (default 10, RightCare's number).
    columns : sequence of str
        The features compared (default :data:`FEATURES`: list size, share aged 0-14, share aged 65+, IMD score).
    log : sequence of str
        Features compared on the log scale (must be positive).
    weights : mapping, optional
        Feature -> weight (default 1 each) on the squared z-score differences.

    Returns
    -------
    pandas.DataFrame
        ``practice_code, peer_rank`` (1 = nearest), ``peer_code, distance`` (rounded to 10 decimals, the precision
        ties are judged at); ``min(k, n - 1)`` rows per practice, sorted by practice code and rank.

    Raises
    ------
    ValueError
        For ``k`` below 1, duplicate codes, a missing column, a missing or non-finite feature, or a
        non-positive feature compared on the log scale.

    References
    ----------
    NHS England, RightCare methodology ("similar 10": https://www.england.nhs.uk/rightcare/rightcare-methodology/).
    RightCare compares commissioners (CCGs, now ICBs and places) on 12 demographic variables, nationally; this
    compares the practices of one PCT, on the variables the data hold (list size, age mix, deprivation), with
    equal weights unless ``weights`` says otherwise.
    """
    k = int(check_number("k", int(k) if isinstance(k, np.integer) else k, 1, integer=True))
    f = features.assign(practice_code=features["practice_code"].astype(str)).sort_values("practice_code",
                                                                                        ignore_index=True)
    dup = f["practice_code"][f["practice_code"].duplicated()].unique().tolist()
    if dup:
        raise ValueError(f"features lists practices {dup[:10]} more than once; give one row per practice")
    z = _standardised(f, columns, log, weights)
    n = len(f)
    kk = min(k, n - 1)
    cols = ["practice_code", "peer_rank", "peer_code", "distance"]
    if kk <= 0:
        return pd.DataFrame({c: pd.Series(dtype=float if c == "distance" else object) for c in cols}).astype(
            {"peer_rank": np.int64})
    dist = np.sqrt(((z[:, None, :] - z[None, :, :]) ** 2).sum(axis=2))
    key = np.round(dist, _DECIMALS)
    np.fill_diagonal(key, np.inf)
    order = np.argsort(key, axis=1, kind="stable")[:, :kk]   # stable: equal keys keep code order
    codes = f["practice_code"].to_numpy()
    rows = np.repeat(np.arange(n), kk)
    return pd.DataFrame({"practice_code": codes[rows], "peer_rank": np.tile(np.arange(1, kk + 1), n).astype(np.int64),
                         "peer_code": codes[order.ravel()], "distance": key[rows, order.ravel()]})


def _latest(ratios: pd.DataFrame, period: str | None) -> pd.DataFrame:
    """The all-specialty rows of one period (default the latest)."""
    per = ratios["period"].astype(str)
    period = max(per.unique()) if period is None else str(period)
    r = ratios[(per == period).to_numpy() & (ratios["specialty_code"].astype(str) == ALL).to_numpy()]
    if r.empty:
        raise ValueError(f"ratios has no all-specialty rows in period {period!r}")
    return r.assign(period=period)


def peer_opportunity(ratios: pd.DataFrame, similar: pd.DataFrame, measures: Sequence[str] = OPPORTUNITY_MEASURES,
                     period: str | None = None) -> pd.DataFrame:
    """What each practice's referrals would be at its similar practices' median and best-quartile ratio.

    For each practice and measure, its peers' (:func:`similar_practices`) indirectly standardised ratios
    (observed / expected, all specialties, one period) give the peer median and the peer **best quartile**: the
    25th percentile of the peers' ratios, i.e. the lower quartile, since for referrals fewer per expected is the
    "better" end RightCare's opportunity points at (linear interpolation between order statistics, numpy's
    default, R's type 7). Applied to the practice's own expected count they give what its count would be at the
    peer median (``at_peer_median = peer_median_ratio x expected``) and at the best quartile; the opportunity is
    the difference ``observed - at_peer_*``: positive, it refers that many more than it would at its peers' rate;
    negative, that many fewer (RightCare shows only positive opportunities; the sign is kept here, and fewer is
    not necessarily better: see the under-referrer flag).

    Parameters
    ----------
    ratios : pandas.DataFrame
        The benchmarking ratios (``bm_ratios``: ``period, practice_code, measure, specialty_code, observed,
        expected``).
    similar : pandas.DataFrame
        :func:`similar_practices`.
    measures : sequence of str
        The measures (default :data:`OPPORTUNITY_MEASURES`: GP referrals and first outpatient attendances).
    period : str, optional
        The period (default the latest).

    Returns
    -------
    pandas.DataFrame
        One row per practice and measure, sorted: ``period, practice_code, measure, observed, expected, ratio,
        n_peers, peer_median_ratio, peer_best_quartile_ratio, at_peer_median, at_peer_best_quartile,
        opportunity_at_median, opportunity_at_best_quartile`` (a practice whose peers have no ratio has missing
        peer figures).

    References
    ----------
    NHS England, RightCare methodology ("opportunity": the change if a system performed as the median or the
    best of its similar 10), https://www.england.nhs.uk/rightcare/rightcare-methodology/.
    """
    r = _latest(ratios, period)
    out = []
    for measure in measures:
        m = r[r["measure"].astype(str) == measure]
        if m.empty:
            continue
        obs = m.groupby(m["practice_code"].astype(str), sort=True)[["observed", "expected"]].sum()
        out.append(_opportunity(obs, similar).assign(measure=measure, period=r["period"].iloc[0]))
    cols = ["period", "practice_code", "measure", "observed", "expected", "ratio", "n_peers", "peer_median_ratio",
            "peer_best_quartile_ratio", "at_peer_median", "at_peer_best_quartile", "opportunity_at_median",
            "opportunity_at_best_quartile"]
    if not out:
        return pd.DataFrame(columns=cols)
    return pd.concat(out, ignore_index=True)[cols].sort_values(["practice_code", "measure"], ignore_index=True)


def _opportunity(obs: pd.DataFrame, similar: pd.DataFrame) -> pd.DataFrame:
    """One measure: the peer ratios of every practice of ``obs`` (indexed by code) as an (n x k) matrix."""
    codes = obs.index.to_numpy()
    e = obs["expected"].to_numpy(float)
    o = obs["observed"].to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(e > 0, o / e, np.nan)
    pos = {c: i for i, c in enumerate(codes)}
    s = similar[similar["practice_code"].astype(str).isin(pos)]
    k = int(s["peer_rank"].max()) if len(s) else 0
    peers = np.full((len(codes), max(k, 1)), np.nan)
    row = s["practice_code"].astype(str).map(pos).to_numpy(int)
    col = s["peer_rank"].to_numpy(int) - 1
    peer_pos = s["peer_code"].astype(str).map(pos)
    have = peer_pos.notna().to_numpy()
    peers[row[have], col[have]] = ratio[peer_pos[have].to_numpy(int)]
    n_peers = np.isfinite(peers).sum(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # all-NaN rows: no peers, missing figures
        med = np.nanmedian(peers, axis=1)
        q25 = np.nanpercentile(peers, 25, axis=1)
    at_med, at_q = med * e, q25 * e
    return pd.DataFrame({"practice_code": codes, "observed": obs["observed"].to_numpy(), "expected": e,
                         "ratio": ratio, "n_peers": n_peers.astype(np.int64), "peer_median_ratio": med,
                         "peer_best_quartile_ratio": q25, "at_peer_median": at_med, "at_peer_best_quartile": at_q,
                         "opportunity_at_median": o - at_med, "opportunity_at_best_quartile": o - at_q})


def practice_spc(monthly: pd.DataFrame, measure: str = "referrals", baseline: int | None = 12) -> pd.DataFrame:
    """XmR chart of every practice's monthly standardised ratio of ``measure`` (all specialties), no direction.

    The benchmarking stage charts only the practices it flags (``bm_spc``); a practice page charts every
    practice. No improvement direction is set (``improvement="neither"``): a special cause is a point or pattern
    above or below the practice's own limits, "higher" or "lower", never "improvement" or "concern".

    Parameters
    ----------
    monthly : pandas.DataFrame
        The stage's monthly ratios (:attr:`pbc_analysis.stages.benchmark.stage.Result.monthly`: ``period`` a
        month, ``practice_code, measure, specialty_code, observed, expected, ratio``).
    measure : str
        The measure (default GP referrals).
    baseline : int or None
        The first months of each series that set its limits (None: all months).

    Returns
    -------
    pandas.DataFrame
        One row per practice and month: ``practice_code, month, observed, expected, ratio`` and the XmR columns
        of :func:`pbc_analysis.methods.spc.xmr` but ``baseline``.

    References
    ----------
    NHS England (2019), Making Data Count; :func:`pbc_analysis.methods.spc.xmr`.
    """
    m = monthly[(monthly["measure"].astype(str) == measure).to_numpy()
                & (monthly["specialty_code"].astype(str) == ALL).to_numpy()]
    m = pd.DataFrame({"practice_code": m["practice_code"].astype(str).to_numpy(), "month": m["period"].astype(str).to_numpy(),
                      "observed": m["observed"].to_numpy(), "expected": m["expected"].to_numpy(float),
                      "ratio": m["ratio"].to_numpy(float)})
    m = m[np.isfinite(m["ratio"].to_numpy())].sort_values(["practice_code", "month"], ignore_index=True)
    if m.empty:
        return m
    chart = _spc.xmr(m[["practice_code", "month", "ratio"]], "ratio", "month", by="practice_code", baseline=baseline,
                     improvement="neither")
    chart = chart.drop(columns=["baseline", "ratio"], errors="ignore")
    return m.merge(chart, on=["practice_code", "month"], how="left", validate="one_to_one")
