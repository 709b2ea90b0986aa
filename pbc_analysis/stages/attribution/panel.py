"""Inputs of the attribution's models: completeness of the latest months, the referral panel, the cost of a referral.

Completeness of the latest months (:func:`completeness_factors`)
-----------------------------------------------------------------
Hospital data arrive late (SUS lag): the last ``lag_months`` months of activity are incomplete. Their
completeness is estimated by point of delivery (elective pods: observed / GP referrals x activity per referral of
each provider and specialty in the ``reference_months`` before; emergency pods: observed / the same month a year
earlier x the year-on-year growth of the reference months; referrals are complete) and activity and cost of those
months are divided by it ("completed") before any accounting, so that the latest year is compared like for like.

The referral panel (:func:`referral_panel`) and the cost of a referral (:func:`cost_per_referral`)
-------------------------------------------------------------------------------------------------
GP referrals per practice x provider x specialty x month with the need-weighted list as exposure and the
practice's engagement cohort: the data of the causal model (:mod:`.causal`). Each avoided referral is valued at
the cost per referral of its provider and specialty in that month (first attendances, follow-ups and elective
admissions per referral, pooled over the provider's practices within the financial year and between documented
provider changes, times the provider's cost per unit), i.e. at the provider's current follow-up policy: the
saving is what the PCT did not pay.

References
----------
NHS Digital, Secondary Uses Service (SUS): activity arrives about three months after the period ends
(DOMAIN.md "Data lag"). Callaway B, Sant'Anna PHC (2021), J Econometrics 225:200-230 (cohort coding as R's ``did``).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from pbc_analysis import data as _data
from pbc_analysis.core.checks import check_number
from pbc_analysis.stages.attribution.common import ELECTIVE_PODS, _fy_of_months, _inputs_codes, _need_rates, _population, _weighted_lists, _window_months
from pbc_analysis.stages.attribution.params import DEFAULTS

__all__ = ["completeness_covariance", "completeness_factors", "cost_per_referral", "referral_panel"]


def _count(name: str, value: Any, low: int, fix: str) -> int:
    """A whole number >= ``low`` (numpy integers accepted), by :func:`pbc_analysis.core.checks.check_number`."""
    value = int(value) if isinstance(value, np.integer) else value
    return int(check_number(name, value, low, integer=True, fix=fix))


#: the columns of :func:`completeness_factors`
_COMPLETENESS_COLUMNS = ["pod", "month", "observed", "expected", "completeness", "std_error", "error_basis", "backtests"]
#: complete origins the completion method must be backtested on before its errors' covariance is taken from them
MIN_BACKTESTS = 12


def completeness_factors(inputs: _data.Inputs, lag_months: int = DEFAULTS["lag_months"],
                         reference_months: int = DEFAULTS["reference_months"]) -> pd.DataFrame:
    """Completeness of the last ``lag_months`` months of activity, by point of delivery.

    Elective pods (first and follow-up outpatients, elective admissions) follow GP referrals, which do
    not pass through the SUS lag: expected activity in month m = sum over provider x specialty of
    referrals_m x (activity / referrals over the ``reference_months`` complete months before the lag).
    Emergency pods: expected = the same month a year earlier x (activity of the reference months / the
    same months a year earlier). ``completeness = min(1, observed / expected)``. Activity and cost of those
    months are divided by ``completeness`` wherever the attribution completes data.

    ``std_error`` is the standard error of the completed month's log total (:func:`completeness_covariance`).

    Parameters
    ----------
    inputs : pbc_analysis.data.Inputs
        Validated inputs loaded with a window.
    lag_months : int
        Trailing months of the window to complete (0: none).
    reference_months : int
        Complete months before the lagged ones that give activity per referral and growth.

    Returns
    -------
    pandas.DataFrame
        ``pod, month, observed, expected, completeness, std_error``: one row per pod and lagged month (empty when
        ``lag_months`` is 0).

    References
    ----------
    DOMAIN.md "Data lag" (SUS activity arrives about three months late); the module docstring.
    """
    return _completeness(inputs, lag_months, reference_months)[0]


def completeness_covariance(inputs: _data.Inputs, lag_months: int = DEFAULTS["lag_months"],
                            reference_months: int = DEFAULTS["reference_months"]) -> pd.DataFrame:
    """Covariance of the errors of the completed months' log totals, one row and column per pod and lagged month.

    A completed month's total is its expected activity (:func:`completeness_factors`), an estimate of what the
    month will hold once every record has arrived. Its error has two independent parts, both Poisson:

    - the expectation's own noise: elective pods, ``E_m = sum_vs R_vsm A_vs / R_vs`` with the reference months'
      activity ``A_vs`` Poisson and referrals fixed, so ``Cov(E_m, E_m') = sum_vs R_vsm R_vsm' A_vs / R_vs^2``
      (months share the reference ratios); emergency pods, ``log E_m = log T_(m-12) + log S_ref - log S_prev``
      of monthly totals, each Poisson, so the covariance is ``sum_i t_i (d log E_m/dt_i)(d log E_m'/dt_i)`` over
      the months (overlapping windows included);
    - the records still to arrive: Poisson with mean ``E_m - observed_m``, independent between months.

    On the log scale ``Cov = (Cov(E_m, E_m') + 1(m = m') (E_m - O_m)) / (E_m E_m')``. A month whose completeness
    is 1 (observed at least expected: nothing is added) has no completion error and a zero row. Pods are
    independent (their reference counts differ).

    Parameters
    ----------
    inputs : pbc_analysis.data.Inputs
        Validated inputs loaded with a window.
    lag_months, reference_months : int
        As :func:`completeness_factors`.

    Returns
    -------
    pandas.DataFrame
        Square, indexed both ways by ``(pod, month)`` in the row order of :func:`completeness_factors`.

    References
    ----------
    Oehlert GW (1992), "A note on the delta method", The American Statistician 46:27-29; DOMAIN.md "Data lag".
    """
    return _labelled(*_completeness(inputs, lag_months, reference_months))


def _labelled(table: pd.DataFrame, cov: np.ndarray) -> pd.DataFrame:
    """The covariance matrix indexed both ways by the table's ``(pod, month)``."""
    ix = pd.MultiIndex.from_frame(table[["pod", "month"]])
    return pd.DataFrame(cov, index=ix, columns=ix)


def _completeness(inputs: _data.Inputs, lag_months: Any, reference_months: Any) -> tuple[pd.DataFrame, np.ndarray]:
    """:func:`completeness_factors`' table and :func:`completeness_covariance`'s matrix, from one pass."""
    lag_months = _count("lag_months", lag_months, 0, "use 0 when the data are complete, or the number "
                        "of trailing months the hospital-data lag leaves incomplete (about 3 for SUS)")
    reference_months = _count("reference_months", reference_months, 1,
                              "use the number of complete months (e.g. 12) to estimate activity per referral from")
    months = _window_months(inputs)
    M = len(months)
    cols = _COMPLETENESS_COLUMNS
    if lag_months == 0:
        dtypes = dict.fromkeys(cols[2:6], float) | {"backtests": "int64"}
        return pd.DataFrame({c: pd.Series(dtype=dtypes.get(c, str)) for c in cols}), np.zeros((0, 0))
    need = lag_months + reference_months + 12
    if M < need:
        raise ValueError(f"lag_months={lag_months} with reference_months={reference_months} needs at least "
                         f"{need} months of data (the reference months and the year before them); the window has "
                         f"{M}. Lower reference_months or lag_months")
    A, R, pods = _activity_and_referrals(inputs, months)
    return _completeness_arrays(A, R, list(pods), list(months), lag_months, reference_months)


def _completeness_arrays(A: np.ndarray, R: np.ndarray, pods: Sequence[str], months: Sequence[str], lag_months: int,
                         reference_months: int) -> tuple[pd.DataFrame, np.ndarray]:
    """:func:`_completeness` on activity ``(provider, specialty, pod, month)`` and referrals ``(provider, specialty,
    month)`` arrays (at least ``lag_months + reference_months + 12`` months)."""
    M = len(months)
    origins = np.arange(reference_months + 12, M - 2 * lag_months + 1)   # complete months to backtest on
    rows, blocks = [], []
    for k, pod in enumerate(pods):
        exp_, cov_e, obs = _expected(A[:, :, k, :], R, pod in ELECTIVE_PODS, M - lag_months, lag_months,
                                     reference_months)
        if not (obs.sum() > 0 or exp_.sum() > 0):
            continue
        comp = np.where(exp_ > 0, np.minimum(1.0, obs / np.where(exp_ > 0, exp_, 1.0)), 1.0)
        completed = comp < 1            # only those months are changed, and only they carry a completion error
        errors = _backtest(A[:, :, k, :], R, pod in ELECTIVE_PODS, origins, lag_months, reference_months)
        if len(errors) >= MIN_BACKTESTS:
            cov, basis = errors.T @ errors / len(errors), "backtest"
        else:
            cov = (cov_e + np.diag(np.maximum(exp_ - obs, 0.0))) / np.outer(np.where(completed, exp_, 1.0),
                                                                            np.where(completed, exp_, 1.0))
            basis = "poisson"
        cov = np.where(np.outer(completed, completed), cov, 0.0)
        blocks.append(cov)
        rows.append(pd.DataFrame({"pod": pod, "month": list(months[M - lag_months:]), "observed": obs,
                                  "expected": exp_, "completeness": comp, "std_error": np.sqrt(np.diag(cov)),
                                  "error_basis": basis, "backtests": len(errors)}))
    n = sum(b.shape[0] for b in blocks)
    full, at = np.zeros((n, n)), 0
    for b in blocks:
        full[at:at + b.shape[0], at:at + b.shape[0]] = b
        at += b.shape[0]
    return pd.concat(rows, ignore_index=True)[_COMPLETENESS_COLUMNS], full


def _expected(Ak: np.ndarray, R: np.ndarray, elective: bool, start: int, lag_months: int,
              reference_months: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expected activity of one pod in the ``lag_months`` months from ``start``, its Poisson covariance and the
    activity observed then."""
    lag = np.arange(start, start + lag_months)
    refm = np.arange(start - reference_months, start)
    exp_, cov = (_elective_expected(Ak, R, lag, refm) if elective else _emergency_expected(Ak.sum(axis=(0, 1)), lag, refm))
    return exp_, cov, Ak.sum(axis=(0, 1))[lag]


def _backtest(Ak: np.ndarray, R: np.ndarray, elective: bool, origins: np.ndarray, lag_months: int,
              reference_months: int) -> np.ndarray:
    """The method's errors ``log(observed / expected)`` ``(origin, position)`` when it completes months that are
    complete: each origin's ``lag_months`` months (all before the lagged ones) as if they were the latest.
    Origins where a month has nothing observed or expected are left out."""
    out = []
    for o in origins:
        exp_, _, obs = _expected(Ak, R, elective, int(o), lag_months, reference_months)
        if np.all(exp_ > 0) and np.all(obs > 0):
            out.append(np.log(obs / exp_))
    return np.array(out).reshape(-1, lag_months)


def _activity_and_referrals(inputs: _data.Inputs, months: Sequence[str]) -> tuple[np.ndarray, np.ndarray, pd.Index]:
    """Activity ``(provider, specialty, pod, month)``, GP referrals ``(provider, specialty, month)`` and the pods."""
    providers = pd.Index(sorted(inputs.providers["provider_code"]))
    specs = pd.Index(sorted(inputs.specialties["specialty_code"]))
    pods = pd.Index(list(_data.PODS))
    V, S, K, M = len(providers), len(specs), len(pods), len(months)
    codes = [_inputs_codes(inputs, "activity", c, idx) for c, idx in
             (("provider_code", providers), ("specialty_code", specs), ("pod", pods), ("month", months))]
    av, asp, ak, am = codes
    A = np.bincount(((av * S + asp) * K + ak) * M + am, weights=inputs.activity["activity"].to_numpy(dtype=float),
                    minlength=V * S * K * M).reshape(V, S, K, M)
    return A, _referral_array(inputs, providers, specs, months), pods


def _elective_expected(Ak: np.ndarray, R: np.ndarray, lag: np.ndarray, refm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Expected activity of the lagged months from referrals x the reference months' activity per referral, and
    the covariance of that expectation (the reference activity Poisson, referrals fixed)."""
    rsum = R[:, :, refm].sum(axis=2)
    aref = Ak[:, :, refm].sum(axis=2)
    inv = np.divide(1.0, rsum, out=np.zeros_like(rsum), where=rsum > 0)
    exp_ = np.einsum("vs,vsm->m", aref * inv, R[:, :, lag])
    w = R[:, :, lag] * inv[:, :, None]            # d E_m / d A_vs
    return exp_, np.einsum("vsm,vs,vsn->mn", w, aref, w)


def _emergency_expected(tot: np.ndarray, lag: np.ndarray, refm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Expected activity of the lagged months from the same months a year earlier x the reference months' growth,
    and its covariance (every monthly total Poisson), by the gradient of its logarithm in the monthly totals."""
    prev = tot[refm - 12].sum()
    ref = tot[refm].sum()
    growth = ref / prev if prev > 0 else 1.0
    exp_ = tot[lag - 12] * growth
    G = np.zeros((lag.size, tot.size))            # d log E_m / d t_i
    G[np.arange(lag.size), lag - 12] += np.divide(1.0, tot[lag - 12], out=np.zeros(lag.size), where=tot[lag - 12] > 0)
    if prev > 0 and ref > 0:
        G[:, refm] += 1.0 / ref
        G[:, refm - 12] -= 1.0 / prev
    cov_log = (G * tot[None, :]) @ G.T
    return exp_, cov_log * np.outer(exp_, exp_)   # on the count scale, as the elective pods'


def _referral_array(inputs: _data.Inputs, providers: pd.Index, specs: pd.Index, months: Sequence[str]) -> np.ndarray:
    """GP referrals ``(provider, specialty, month)`` (specialties outside ``specs`` must not occur)."""
    V, S, M = len(providers), len(specs), len(months)
    rv = _inputs_codes(inputs, "referrals", "provider_code", providers)
    rs = _inputs_codes(inputs, "referrals", "specialty_code", specs)
    rm = _inputs_codes(inputs, "referrals", "month", months)
    return np.bincount((rv * S + rs) * M + rm, weights=inputs.referrals["referrals"].to_numpy(dtype=float),
                       minlength=V * S * M).reshape(V, S, M)


def _completion_array(comp: pd.DataFrame, pods: Sequence[str], months: Sequence[str]) -> np.ndarray:
    """Divisors ``(pod, month)``: 1 except the completeness of lagged months."""
    out = np.ones((len(pods), len(months)))
    if comp is None or not len(comp):
        return out
    k = pd.Index(list(pods)).get_indexer(comp["pod"])
    m = pd.Index(list(months)).get_indexer(comp["month"])
    ok = (k >= 0) & (m >= 0)
    c = comp["completeness"].to_numpy(dtype=float)
    if np.any(c[ok] <= 0):
        raise ValueError("completeness must be > 0; a month with no activity at all cannot be completed: "
                         "lower lag_months or fix the data")
    out[k[ok], m[ok]] = c[ok]
    return out


def _dense_series(codes: Sequence[np.ndarray], sizes: Sequence[int], values: np.ndarray
                  ) -> tuple[np.ndarray, ...]:
    """Every month of every series with a row: the codes of ``(practice, provider, specialty, month)`` rows
    (month last, ``sizes`` their ranges) and their counts, expanded to one row per series and month of the
    window, sorted by series and month; months without a row get 0 (a sparse table's implicit zeros).
    Vectorised on the integer codes: the output has (series with a row) x months rows, never the full cross
    product of practices, providers and specialties."""
    *keys, month = (np.asarray(c, dtype=np.int64) for c in codes)
    *key_sizes, n_m = sizes
    series = np.zeros(len(month), dtype=np.int64)
    for c, n in zip(keys, key_sizes):
        series = series * n + c
    uniq, inv = np.unique(series, return_inverse=True)
    dense = np.zeros(len(uniq) * n_m, dtype=np.int64)
    dense[inv * n_m + month] = values
    out = []
    rest = np.repeat(uniq, n_m)
    for n in reversed(key_sizes):
        out.append(rest % n)
        rest = rest // n
    return (*reversed(out), np.tile(np.arange(n_m, dtype=np.int64), len(uniq)), dense)


def referral_panel(inputs: _data.Inputs) -> pd.DataFrame:
    """GP referrals per practice x provider x specialty x month with the exposure and engagement.

    Parameters
    ----------
    inputs : pbc_analysis.data.Inputs
        Validated inputs loaded with a window.

    Returns
    -------
    pandas.DataFrame
        One row per month of the window for every (practice, provider, specialty) series with a row in
        ``referrals`` (``referrals`` may be sparse: a missing month is 0 referrals, and is a 0 row here, so the
        model sees the same observations whether the zeros were explicit or not), sorted by series and month;
        codes as categoricals with sorted text categories:
        ``practice_code``, ``provider_code``, ``specialty_code``, ``month``, ``referrals``, ``weighted_list``
        (the practice's list weighted by the specialty's reference age-sex referral rates; the registered
        list when ``reference_rates`` is absent), ``cohort`` (1-based month index of the practice's first
        engaged month, 0 = never engaged in the window, as R's ``did``) and ``consortium``.

    References
    ----------
    Callaway B, Sant'Anna PHC (2021), J Econometrics 225:200-230 (the cohort coding of R's ``did``).
    """
    months = _window_months(inputs)
    practices = pd.Index(sorted(inputs.practices["practice_code"]))
    providers = pd.Index(sorted(inputs.providers["provider_code"]))
    ref = inputs.referrals
    _, spec_seen = inputs.factorize("referrals", "specialty_code")
    specs = pd.Index(sorted(pd.Index(spec_seen).astype(str)))
    pi, vi, si, mi, counts = _dense_series(
        [_inputs_codes(inputs, "referrals", c, idx) for c, idx in
         (("practice_code", practices), ("provider_code", providers), ("specialty_code", specs), ("month", months))],
        (len(practices), len(providers), len(specs), len(months)), ref["referrals"].to_numpy(dtype=np.int64))
    reg = _population(inputs, practices, months)
    W = _weighted_lists(reg, _need_rates(inputs, [("referrals", s) for s in specs]))  # (P, S, M)
    eng = inputs.engagement.set_index("practice_code")["engaged_from"].reindex(practices)
    cohort = np.zeros(len(practices), dtype=np.int64)
    has = eng.notna().to_numpy()
    cohort[has] = pd.Index(months).get_indexer(eng[has].astype(str)) + 1
    cons = inputs.practices.set_index("practice_code")["consortium"].reindex(practices).astype(str)
    cons_cats = pd.Index(sorted(set(cons)))

    def cat(codes: np.ndarray, cats: Sequence[str]) -> pd.Categorical:
        return pd.Categorical.from_codes(codes.astype(np.int32), categories=pd.Index(list(cats), dtype="str"))

    return pd.DataFrame({
        "practice_code": cat(pi, practices), "provider_code": cat(vi, providers), "specialty_code": cat(si, specs),
        "month": cat(mi, months), "referrals": counts,
        "weighted_list": W[pi, si, mi], "cohort": cohort[pi],
        "consortium": cat(cons_cats.get_indexer(cons.to_numpy())[pi], cons_cats)})


def _provider_changes_mask(changes: pd.DataFrame | None, providers: pd.Index, specs: pd.Index,
                           pods: Sequence[str], months: Sequence[str]) -> np.ndarray:
    """Number of documented provider changes in effect, ``(provider, specialty, pod, month)``."""
    V, S, K, M = len(providers), len(specs), len(pods), len(months)
    out = np.zeros((V, S, K, M), dtype=np.int64)
    if changes is None or not len(changes):
        return out
    mon = np.array(months)
    for row in changes.itertuples(index=False):  # a handful of documented changes
        v = providers.get_indexer([row.provider_code])[0]
        if v < 0:
            continue
        s_sel = np.arange(S) if row.specialty_code == _data.ALL else specs.get_indexer([row.specialty_code])
        k_sel = np.arange(K) if row.pod == _data.ALL else pd.Index(list(pods)).get_indexer([row.pod])
        s_sel, k_sel = s_sel[s_sel >= 0], k_sel[k_sel >= 0]
        on = (mon >= str(row.effective_month)).astype(np.int64)
        out[v, s_sel[:, None], k_sel[None, :], :] += on
    return out


def _elective_activity(inputs: _data.Inputs, providers: pd.Index, specs: pd.Index, months: Sequence[str],
                       comp: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Completed activity and cost ``(provider, specialty, elective pod, month)``."""
    pods = list(ELECTIVE_PODS)
    V, S, K, M = len(providers), len(specs), len(pods), len(months)
    act = inputs.activity
    ak = _inputs_codes(inputs, "activity", "pod", list(_data.PODS))
    keep = np.isin(ak, [list(_data.PODS).index(p) for p in pods])
    av = _inputs_codes(inputs, "activity", "provider_code", providers)[keep]
    asp = _inputs_codes(inputs, "activity", "specialty_code", specs)[keep]
    am = _inputs_codes(inputs, "activity", "month", months)[keep]
    akk = pd.Index(pods).get_indexer(np.array(_data.PODS)[ak[keep]])
    ok = asp >= 0
    flat = ((av * S + asp) * K + akk) * M + am
    A = np.bincount(flat[ok], weights=act["activity"].to_numpy(dtype=float)[keep][ok], minlength=V * S * K * M)
    C = np.bincount(flat[ok], weights=act["cost"].to_numpy(dtype=float)[keep][ok], minlength=V * S * K * M)
    div = _completion_array(comp, pods, months)[None, None, :, :]
    return A.reshape(V, S, K, M) / div, C.reshape(V, S, K, M) / div


def cost_per_referral(inputs: _data.Inputs, lag_months: int = DEFAULTS["lag_months"],
                      reference_months: int = DEFAULTS["reference_months"],
                      completeness: pd.DataFrame | None = None) -> pd.DataFrame:
    """What one GP referral costs the PCT, by provider, specialty, month and point of delivery.

    For each provider x specialty x elective pod: activity per referral pooled over all its practices
    within the financial year and between documented provider changes (``provider_changes``; a follow-up
    policy change starts a new period), times the cost per unit of activity pooled over the financial
    year (tariff x the provider's HRG mix).

    Parameters
    ----------
    inputs : pbc_analysis.data.Inputs
        Validated inputs loaded with a window.
    lag_months, reference_months : int
        For :func:`completeness_factors` (when ``completeness`` is not given).
    completeness : pandas.DataFrame, optional
        :func:`completeness_factors`; activity and cost of the lagged months are divided by it first.

    Returns
    -------
    pandas.DataFrame
        ``provider_code, specialty_code, month, pod, activity_per_referral, cost_per_unit, cost_per_referral``
        (0 where the provider had no referrals or activity in the period).

    References
    ----------
    DOMAIN.md "Spend identity" (conversion x follow-up ratio x price per referral); the module docstring.
    """
    comp = completeness if completeness is not None else completeness_factors(inputs, lag_months, reference_months)
    a = _cost_arrays(inputs, comp)
    return _cost_frame(a, {"activity_per_referral": a["rho"], "cost_per_unit": a["unit"],
                           "cost_per_referral": a["rho"] * a["unit"]})


def _cost_arrays(inputs: _data.Inputs, comp: pd.DataFrame) -> dict[str, Any]:
    """The arrays behind :func:`cost_per_referral` ``(provider, specialty, elective pod, month)``: completed activity
    ``A`` and cost ``C``, referrals ``R``, the pooling segments (``seg``: financial year and change period, ``seg2``:
    financial year), their sums and the pooled ``rho`` (activity per referral) and ``unit`` (cost per unit)."""
    months = _window_months(inputs)
    providers = pd.Index(sorted(inputs.providers["provider_code"]))
    _, spec_seen = inputs.factorize("referrals", "specialty_code")
    specs = pd.Index(sorted(pd.Index(spec_seen).astype(str)))
    pods = list(ELECTIVE_PODS)
    V, S, K, M = len(providers), len(specs), len(pods), len(months)
    A, C = _elective_activity(inputs, providers, specs, months, comp)
    R = _referral_array(inputs, providers, specs, months)
    fyi = pd.Index(sorted(set(_fy_of_months(months)))).get_indexer(_fy_of_months(months))
    chg = _provider_changes_mask(inputs.provider_changes, providers, specs, pods, months)
    base = np.arange(V * S * K).reshape(V, S, K, 1)
    n_fy, n_chg = int(fyi.max()) + 1, int(chg.max()) + 1
    # activity per referral: pooled within (provider, specialty, pod, financial year, change period)
    _, seg = np.unique((base * n_fy + fyi[None, None, None, :]) * n_chg + chg, return_inverse=True)
    seg = seg.reshape(V, S, K, M)
    Rb = np.broadcast_to(R[:, :, None, :], A.shape)
    rsum = np.bincount(seg.ravel(), weights=Rb.ravel())
    asum = np.bincount(seg.ravel(), weights=A.ravel())
    rho = np.divide(asum, rsum, out=np.zeros_like(asum), where=rsum > 0)[seg]
    # cost per unit: pooled within (provider, specialty, pod, financial year)
    _, seg2 = np.unique(np.broadcast_to(base * n_fy + fyi[None, None, None, :], A.shape), return_inverse=True)
    seg2 = seg2.reshape(V, S, K, M)
    a2 = np.bincount(seg2.ravel(), weights=A.ravel())
    c2 = np.bincount(seg2.ravel(), weights=C.ravel())
    unit = np.divide(c2, a2, out=np.zeros_like(c2), where=a2 > 0)[seg2]
    return {"providers": providers, "specs": specs, "pods": pods, "months": months, "A": A, "C": C, "R": R,
            "seg": seg, "seg2": seg2, "rsum": rsum, "a2": a2, "rho": rho, "unit": unit}


def _cost_frame(a: Mapping[str, Any], columns: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """One row per provider x specialty x month x elective pod (the layout of :func:`cost_per_referral`) with
    ``columns``, arrays ``(provider, specialty, pod, month)``."""
    providers, specs, pods, months = a["providers"], a["specs"], a["pods"], a["months"]
    S, K, M = len(specs), len(pods), len(months)
    idx = np.arange(len(providers) * S * K * M)
    return pd.DataFrame({
        "provider_code": pd.Categorical.from_codes(idx // (S * K * M), categories=providers.astype("str")),
        "specialty_code": pd.Categorical.from_codes((idx // (K * M)) % S, categories=specs.astype("str")),
        "month": pd.Categorical.from_codes(idx % M, categories=pd.Index(months, dtype="str")),
        "pod": pd.Categorical.from_codes((idx // M) % K, categories=pd.Index(pods, dtype="str")),
        **{name: np.asarray(v).ravel() for name, v in columns.items()}})

