"""Expected counts and indirectly standardised ratios of practices (benchmarking steps 2 and 3).

**Expected counts** (:func:`expected_counts`). Person-years ``PY[p, y, a] = sum_{m in y} N[p, m, a] / 12``.
With ``standardisation`` containing ``age_sex``, ``E^AS[p, k, y] = sum_a PY[p, y, a] x r[k, a] / 1000`` from
the reference rates r (events per 1,000 a year, the optional ``reference_rates`` table, typically national
HES/MAR rates): indirect standardisation (Breslow & Day 1987, ch. 2; PHEindicatormethods
``calculate_ISRatio``). Without it the expected count is proportional to person-years (a crude comparison,
labelled as such). With ``deprivation``, a Poisson regression per series and period,
``O[p] ~ Poisson(E^AS[p] exp(alpha + beta z_p))`` (z_p the practice's IMD score standardised over the PCT),
fitted by Newton-Raphson vectorised over all series and periods at once (:func:`poisson_offset_fit`), gives
``E[p] = E^AS[p] exp(alpha + beta z_p)``: the count expected for a practice of that list, age-sex mix and
deprivation, as need-adjusted expected counts in NHS England's referral benchmarking (and the "expected" of
SHMI, NHS Digital 2023). With ``target="pct"`` the expected counts are scaled so that they sum to the observed
count of the PCT in every series and period (the PCT is its own benchmark: a ratio of 1 is the PCT average for
a practice like this one); with ``target="reference"`` they stay on the reference rates (national benchmark).
With the deprivation regression the intercept alpha does that scaling; for ``target="reference"`` alpha is
dropped.

**Standardised ratios** (:func:`standardised_ratios`): O/E with exact Poisson limits below 10 events and
Byar's approximation from 10, applied to O and divided by E (PHEindicatormethods' rule,
:mod:`pbc_analysis.methods.indicators`); per specialty and for all specialties together (sums of O and E).

References
----------
Breslow NE, Day NE (1987), Statistical methods in cancer research II, ch. 2.
McCullagh P, Nelder JA (1989), Generalized Linear Models, s. 2.5 (IRLS for the canonical link).
PHEindicatormethods v2.1.0, ``calculate_ISRatio``.
NHS Digital (2023), Summary Hospital-level Mortality Indicator: methodology (expected counts from a model).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from pbc_analysis.core.checks import check_choice
from pbc_analysis.methods.indicators import ci_suffix, confidence_levels, poisson_limits
from pbc_analysis.stages.benchmark.cube import ALL, BenchmarkError, Cube, _period_index, _sum_months
from pbc_analysis.stages.benchmark.params import Standardisation, Target

__all__ = ["expected_counts", "poisson_offset_fit", "standardised_ratios"]


def _check_standardisation(cube: Cube, standardisation: str, target: str) -> tuple[bool, bool]:
    """Whether to adjust for age-sex and for deprivation (refusing an unknown choice, or reference rates absent)."""
    check_choice("standardisation", standardisation, Standardisation)
    check_choice("target", target, Target)
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

    Parameters
    ----------
    y : numpy.ndarray
        Counts, groups x units.
    offset : numpy.ndarray
        Log expected counts, the same shape (``-inf``: unit not in the group's fit).
    x : numpy.ndarray
        The covariate, broadcast to ``y``'s shape.
    iterations : int
        Most Newton steps.
    tol : float
        Stop when every step is smaller.

    Returns
    -------
    a, b : numpy.ndarray
        Intercept and slope per group.

    References
    ----------
    McCullagh P, Nelder JA (1989), Generalized Linear Models, s. 2.5.
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
    """Each practice's IMD score standardised over the PCT's practices (mean 0, SD 1)."""
    imd = cube.practice_info["imd_score"].to_numpy(dtype=float)
    sd = imd.std()
    return (imd - imd.mean()) / (sd if sd > 0 else 1.0)


def expected_counts(cube: Cube, period: str = "financial_year", periods: Sequence[str] | None = None,
                    standardisation: str = "age_sex+deprivation", target: str = "pct") -> pd.DataFrame:
    """Observed and expected counts per practice, series and period (see the module docstring).

    Returns a tidy DataFrame: ``period``, ``practice_code``, ``measure``, ``specialty_code``,
    ``observed``, ``expected``, ``person_years``, ``cost`` (NaN for referrals) and the fitted
    ``deprivation_log_rr`` (beta, the log rate ratio per standard deviation of IMD score; NaN when not
    adjusted), for every specialty and for ``specialty_code == "all"`` (sums over specialties).

    Parameters
    ----------
    cube : Cube
    period : {"financial_year", "calendar_year", "quarter", "month"}
    periods : sequence of str, optional
        The period labels to keep (None: all).
    standardisation : {"none", "age_sex", "deprivation", "age_sex+deprivation"}
    target : {"pct", "reference"}

    Returns
    -------
    pandas.DataFrame

    Raises
    ------
    BenchmarkError
        When age-sex standardisation or the reference target needs reference rates the inputs lack.

    References
    ----------
    Breslow and Day (1987), ch. 2 (indirect standardisation); see the module docstring for the deprivation
    regression.
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
    """A categorical of text ``categories`` from integer ``codes``."""
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

    Parameters
    ----------
    expected : pandas.DataFrame
        :func:`expected_counts` rows.
    confidence : sequence of float
        Levels of the intervals (none: no interval columns).
    info : pandas.DataFrame, optional
        The practices table (for ``consortium``).

    Returns
    -------
    pandas.DataFrame
        ``expected`` with the columns above.

    References
    ----------
    PHEindicatormethods v2.1.0 ``calculate_ISRatio``; Breslow and Day (1987), ch. 2 (Byar's approximation).
    """
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


