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

from typing import Any, Sequence

import numpy as np
import pandas as pd

from pbc_analysis import data as _data
from pbc_analysis.core.checks import check_number
from pbc_analysis.stages.attribution.common import ELECTIVE_PODS, _fy_of_months, _inputs_codes, _need_rates, _population, _weighted_lists, _window_months
from pbc_analysis.stages.attribution.params import DEFAULTS

__all__ = ["completeness_factors", "cost_per_referral", "referral_panel"]


def _count(name: str, value: Any, low: int, fix: str) -> int:
    """A whole number >= ``low`` (numpy integers accepted), by :func:`pbc_analysis.core.checks.check_number`."""
    value = int(value) if isinstance(value, np.integer) else value
    return int(check_number(name, value, low, integer=True, fix=fix))


def completeness_factors(inputs: _data.Inputs, lag_months: int = DEFAULTS["lag_months"],
                         reference_months: int = DEFAULTS["reference_months"]) -> pd.DataFrame:
    """Completeness of the last ``lag_months`` months of activity, by point of delivery.

    Elective pods (first and follow-up outpatients, elective admissions) follow GP referrals, which do
    not pass through the SUS lag: expected activity in month m = sum over provider x specialty of
    referrals_m x (activity / referrals over the ``reference_months`` complete months before the lag).
    Emergency pods: expected = the same month a year earlier x (activity of the reference months / the
    same months a year earlier). ``completeness = min(1, observed / expected)``. Activity and cost of those
    months are divided by ``completeness`` wherever the attribution completes data.

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
        ``pod, month, observed, expected, completeness``: one row per pod and lagged month (empty when
        ``lag_months`` is 0).

    References
    ----------
    DOMAIN.md "Data lag" (SUS activity arrives about three months late); the module docstring.
    """
    lag_months = _count("lag_months", lag_months, 0, "use 0 when the data are complete, or the number "
                        "of trailing months the hospital-data lag leaves incomplete (about 3 for SUS)")
    reference_months = _count("reference_months", reference_months, 1,
                              "use the number of complete months (e.g. 12) to estimate activity per referral from")
    months = _window_months(inputs)
    M = len(months)
    cols = ["pod", "month", "observed", "expected", "completeness"]
    if lag_months == 0:
        return pd.DataFrame({c: pd.Series(dtype=float if c in cols[2:] else str) for c in cols})
    need = lag_months + reference_months + 12
    if M < need:
        raise ValueError(f"lag_months={lag_months} with reference_months={reference_months} needs at least "
                         f"{need} months of data (the reference months and the year before them); the window has "
                         f"{M}. Lower reference_months or lag_months")
    act = inputs.activity
    providers = pd.Index(sorted(inputs.providers["provider_code"]))
    specs = pd.Index(sorted(inputs.specialties["specialty_code"]))
    pods = pd.Index(list(_data.PODS))
    V, S, K = len(providers), len(specs), len(pods)
    av = _inputs_codes(inputs, "activity", "provider_code", providers)
    asp = _inputs_codes(inputs, "activity", "specialty_code", specs)
    ak = _inputs_codes(inputs, "activity", "pod", pods)
    am = _inputs_codes(inputs, "activity", "month", months)
    A = np.bincount(((av * S + asp) * K + ak) * M + am, weights=act["activity"].to_numpy(dtype=float),
                    minlength=V * S * K * M).reshape(V, S, K, M)
    R = _referral_array(inputs, providers, specs, months)
    lag = np.arange(M - lag_months, M)
    refm = np.arange(M - lag_months - reference_months, M - lag_months)
    rows = []
    for k, pod in enumerate(pods):
        obs = A[:, :, k, :].sum(axis=(0, 1))[lag]
        if pod in ELECTIVE_PODS:
            rsum = R[:, :, refm].sum(axis=2)
            rho = np.divide(A[:, :, k, refm].sum(axis=2), rsum, out=np.zeros_like(rsum), where=rsum > 0)
            exp_ = np.einsum("vs,vsm->m", rho, R[:, :, lag])
        else:
            tot = A[:, :, k, :].sum(axis=(0, 1))
            prev = tot[refm - 12].sum()
            growth = tot[refm].sum() / prev if prev > 0 else 1.0
            exp_ = tot[lag - 12] * growth
        if not (obs.sum() > 0 or exp_.sum() > 0):
            continue
        comp = np.where(exp_ > 0, np.minimum(1.0, obs / np.where(exp_ > 0, exp_, 1.0)), 1.0)
        rows.append(pd.DataFrame({"pod": pod, "month": [months[j] for j in lag], "observed": obs,
                                  "expected": exp_, "completeness": comp}))
    return pd.concat(rows, ignore_index=True)[cols]


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
    months = _window_months(inputs)
    comp = completeness if completeness is not None else completeness_factors(inputs, lag_months, reference_months)
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
    n = V * S * K * M
    idx = np.arange(n)
    return pd.DataFrame({
        "provider_code": pd.Categorical.from_codes(idx // (S * K * M), categories=providers.astype("str")),
        "specialty_code": pd.Categorical.from_codes((idx // (K * M)) % S, categories=specs.astype("str")),
        "month": pd.Categorical.from_codes(idx % M, categories=pd.Index(months, dtype="str")),
        "pod": pd.Categorical.from_codes((idx // M) % K, categories=pd.Index(pods, dtype="str")),
        "activity_per_referral": rho.ravel(), "cost_per_unit": unit.ravel(),
        "cost_per_referral": (rho * unit).ravel()})

