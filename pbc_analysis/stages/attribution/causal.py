"""Causal attribution: referrals avoided and savings from practice action, by Poisson imputation.

GP referrals ``R`` of practice p to provider v in specialty s and month m are modelled by Poisson
pseudo-maximum likelihood (PPML) with high-dimensional fixed effects (Correia, Guimaraes and Zylkin
2020, "Fast Poisson estimation with high-dimensional fixed effects", Stata J 20:95-115)::

    E[R_pvsm] = W_psm exp(a_pvs + g_vsm + tau_k)

``W`` the need-weighted list (exposure), ``a`` practice-provider-specialty effects (the practice's
propensity and its share of each provider), ``g`` provider x specialty x month effects (absorbing each
hospital's service, counting, coding and capacity changes and the PCT-wide season and trend), and
``tau`` the engagement effects on engaged practice-months. Effects are allowed to differ by practice,
specialty and month (robust to heterogeneity in staggered adoption; Callaway and Sant'Anna 2021, J
Econometrics 225:200-230; Wooldridge 2023, "Simple approaches to nonlinear difference-in-differences
with panel data", Econometrics J 26:C31-C66): with one ``tau`` per engaged observation, PPML's
first-order conditions fit every engaged observation exactly, so ``a`` and ``g`` are fitted on the
untreated practice-months alone (never engaged and not yet engaged practices, and engaged practices
before engagement) and the counterfactual of every engaged practice-month is ``W exp(a + g)``: the
imputation estimator (Borusyak, Jaravel and Spiess 2024, Rev Econ Stud 91:3253-3285). Averaged by
cohort x specialty x month these are Wooldridge's ATT(g, t) on the rate-ratio scale (``effects``).
The fixed effects are fitted by the exact Poisson updates ``a = log(sum R / sum W e^g)``,
``g = log(sum R / sum W e^a)`` (:func:`pbc_analysis.methods.ppml.fit_two_way`, alternating until the largest
change is below ``tol``), one specialty at a time (the effects are specialty-specific, so specialties are
independent problems), vectorised over providers and practices; the generic
:func:`pbc_analysis.methods.ppml.fepois` (IRLS with weighted alternating projections over any number of
fixed-effect dimensions, as ``fixest``) fits the same model with the ``tau`` as coefficients
(:func:`etwfe_poisson`), and both equal statsmodels' GLM with dummy variables (tests).
Wooldridge's coarser ETWFE with one ``tau`` per cohort x month (:func:`etwfe_poisson` with
``cells="cohort_month"``) lets engaged months inform the practice effects and differs slightly.

Referrals avoided = counterfactual - observed; savings in GBP value each avoided referral at the cost
per referral of its provider and specialty in that month
(:func:`pbc_analysis.stages.attribution.panel.cost_per_referral`), i.e. at the provider's current follow-up
policy: the saving is what the PCT did not pay.

Uncertainty. The estimate is linearised in the fitted effects (delta method): for a target (a set of
engaged practice-months with cost weights c) the influence of untreated observation i is
``v_i (R_i - mu_i)`` with ``v = X H^-1 g``, ``H`` the Poisson information of (a, g) and ``g`` the
gradient of the target; the information is solved block by block (provider x specialty) through the
Schur complement on the month effects. ``model`` variance: quasi-Poisson, ``phi (sum_T c^2 mu + g' H^-1
g)`` (used for single practices, whose own cluster would otherwise be the whole variance); ``cluster``:
cluster-robust by practice, ``G/(G-1) sum_c IF_c^2``, with the engaged practices' own residuals
``R - mu_cf x theta_k`` (theta the cell's ETWFE ratio) carrying the noise of their own fitted levels, as
in Borusyak et al.; ``wild``: the wild cluster bootstrap (Cameron, Gelbach and Miller 2008, Rev Econ
Stat 90:414-427) of the linearised estimator, i.e. the score bootstrap of Kline and Santos (2012, J
Econometric Methods 1:23-41), with Webb's six-point or Rademacher weights, used when clusters are few.

How precise can any estimate be? (:func:`pbc_analysis.stages.attribution.precision.precision`). Every aggregate also carries ``std_error_floor``: the
standard error the estimate would have if every practice's own level ``a`` were known exactly, so that the
only unknowns are the month effects ``g`` and the engaged practices' own counts::

    floor^2 = phi (sum_T c^2 mu_t  +  sum_{v,s,m} (sum_T in (v,s,m) c cf)^2 / U_vsm)

``U_vsm`` the untreated referrals of provider x specialty x month (the Poisson information of ``g_vsm``
with ``a`` known). The first term (``std_error_own_noise``) is the chance in the engaged practices' own
referrals; the second is the chance in the controls that tell what would have happened that month. It is
the Cramer-Rao bound of the target in the model with ``a`` known, and fixing ``a`` can only lower the bound
(``H^-1`` dominates the inverse of its month block in the Loewner order), so no unbiased estimator that
lets the effect differ by month (the heterogeneity-robust designs the staggered adoption needs) can have a
smaller standard error with these data. With few never-engaged practices the second term dominates: only
more controls (or a longer untreated period) make the estimate more precise.

References
----------
Borusyak K, Jaravel X, Spiess J (2024), Rev Econ Stud 91:3253-3285; Wooldridge JM (2023), Econometrics J
26:C31-C66; Correia S, Guimaraes P, Zylkin T (2020), Stata J 20:95-115; Kline P, Santos A (2012), J Econometric
Methods 1:23-41; Cameron AC, Gelbach JB, Miller DL (2008), Rev Econ Stat 90:414-427.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from pbc_analysis.core import calendar
from pbc_analysis.core.checks import check_choice, check_number
from pbc_analysis.methods import ppml
from pbc_analysis.stages.attribution.common import ELECTIVE_PODS, _check_columns, _codes, _fy_of_months
from pbc_analysis.stages.attribution.panel import _count
from pbc_analysis.stages.attribution.params import DEFAULTS, BootstrapWeights, Cells, Inference, TargetPod

__all__ = ["PracticeAction", "etwfe_poisson", "practice_action"]

_PANEL_COLUMNS = ["practice_code", "provider_code", "specialty_code", "month", "referrals", "weighted_list", "cohort"]
_BOOT_BLOCK = 500   # bootstrap draws per block (keeps memory small)


def etwfe_poisson(panel: pd.DataFrame, anticipation: int = 0, cells: str = "observation") -> pd.DataFrame:
    """Extended TWFE Poisson by the generic :func:`pbc_analysis.methods.ppml.fepois` (small panels and proofs).

    Fixed effects practice x provider x specialty and provider x specialty x month, offset log weighted
    list, and engagement coefficients for engaged practice-months: one per observation
    (``cells="observation"``, the fully saturated model, identical to :func:`practice_action`'s
    imputation) or one per cohort x specialty x month (``cells="cohort_month"``, Wooldridge 2023's
    interactions).

    Parameters
    ----------
    panel : pandas.DataFrame
        :func:`pbc_analysis.stages.attribution.panel.referral_panel` (or a table with its columns).
    anticipation : int
        Months before engagement already counted as engaged.
    cells : {"observation", "cohort_month"}
        One engagement coefficient per engaged observation or per cohort x specialty x month.

    Returns
    -------
    pandas.DataFrame
        ``panel`` with ``treated``, ``fitted`` and ``counterfactual`` (fitted without the engagement
        coefficient) columns; the engagement coefficients in ``attrs["coef"]``.

    References
    ----------
    Wooldridge JM (2023), Econometrics J 26:C31-C66; Borusyak K, Jaravel X, Spiess J (2024), Rev Econ Stud
    91:3253-3285 (the saturated model is the imputation estimator).
    """
    _check_columns(panel, _PANEL_COLUMNS, "panel")
    cells = check_choice("cells", cells, Cells)
    p, _ = _codes(panel["practice_code"])
    v, _ = _codes(panel["provider_code"])
    s, _ = _codes(panel["specialty_code"])
    m, _ = _codes(panel["month"])
    coh = panel["cohort"].to_numpy(dtype=np.int64)
    treated = (coh > 0) & (m + 1 >= coh - anticipation)
    if cells == "observation":
        cell = np.where(treated, np.cumsum(treated) - 1, -1)
    else:
        cell = np.where(treated, pd.factorize(pd.MultiIndex.from_arrays([coh, s, m]))[0], -1)
    uniq = np.unique(cell[cell >= 0])
    X = (cell[:, None] == uniq[None, :]).astype(float)
    fe = [pd.factorize(pd.MultiIndex.from_arrays([p, v, s]))[0], pd.factorize(pd.MultiIndex.from_arrays([v, s, m]))[0]]
    fit = ppml.fepois(panel["referrals"].to_numpy(dtype=float), fe, X, np.log(panel["weighted_list"].to_numpy(float)))
    tau = X @ fit.coef
    out = panel.copy()
    out["treated"] = treated
    out["fitted"] = fit.mu
    out["counterfactual"] = fit.mu * np.exp(-tau)
    out.attrs["coef"] = fit.coef
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class PracticeAction:
    """Result of :func:`practice_action` (all tables tidy; GBP unless stated).

    ``practice_year``: per engaged practice and financial year, referrals observed and counterfactual,
    referrals avoided, ``savings`` (total and by pod) with ``std_error``, ``ci_low``, ``ci_high``
    (quasi-Poisson delta method), ``referrals_not_estimable``. ``practice_quarter``: savings per
    practice and financial quarter. ``aggregates``: the PCT (and each group of ``by``, and each extra
    target) per financial year with model, cluster-robust and (wild) bootstrap uncertainty, and the
    precision floor (``std_error_floor``, ``std_error_own_noise``; see :func:`precision`).
    ``cells``: savings per practice x provider x specialty x pod x financial year (point estimates, for
    ledgers at any level). ``effects``: observed and counterfactual referrals of engaged practices per
    specialty and year. ``fit``: convergence and size. ``settings``: the parameters. ``valued``: the referrals
    avoided valued at each of ``values`` (other columns of the cost table, e.g. the cost per referral's
    derivatives), per engaged practice (``level`` practice) and aggregate target and year; None without
    ``values``.
    """

    practice_year: pd.DataFrame
    practice_quarter: pd.DataFrame
    aggregates: pd.DataFrame
    cells: pd.DataFrame
    effects: pd.DataFrame
    fit: dict
    settings: dict
    valued: pd.DataFrame | None = None


# ==================================================================================================
# The design: dense arrays (specialty, practice-provider pair, month), valuation and targets
# ==================================================================================================

@dataclasses.dataclass(eq=False)
class _Design:
    """The panel as dense arrays: pairs are practice x provider combinations seen, sorted by provider."""

    practices: pd.Index
    providers: pd.Index
    specs: pd.Index
    months: list[str]
    pair_p: np.ndarray          # (npair,) practice of each pair
    pair_v: np.ndarray          # (npair,) provider (among those used) of each pair, sorted
    prov_used: np.ndarray       # (Vp,) providers with referrals
    R: np.ndarray               # (S, npair, M) referrals
    obs: np.ndarray             # (S, npair, M) observed
    W: np.ndarray               # (S, P, M) exposure
    coh_p: np.ndarray           # (P,) cohort (1-based month; 0 never engaged)
    treated_pm: np.ndarray      # (P, M) counted as engaged
    T_pair: np.ndarray          # (npair, M) counted as engaged, by pair
    coh_pair: np.ndarray        # (npair,) cohort index of each pair
    n_coh: int

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return len(self.practices), len(self.providers), len(self.specs), len(self.months)


def _design(panel: pd.DataFrame, anticipation: int) -> _Design:
    """Codes and dense arrays of the referral panel (see :class:`_Design`)."""
    pc, practices = _codes(panel["practice_code"])
    vc, providers = _codes(panel["provider_code"])
    sc, specs = _codes(panel["specialty_code"])
    mc, month_index = _codes(panel["month"])
    months = list(month_index)
    P, V, S, M = len(practices), len(providers), len(specs), len(months)
    present = np.zeros(V * P, dtype=bool)
    present[vc * P + pc] = True
    pair_keys = np.flatnonzero(present)
    pair_of_key = np.cumsum(present) - 1
    prov_used, pair_v = np.unique(pair_keys // P, return_inverse=True)
    npair = pair_keys.size
    flat = (sc * npair + pair_of_key[vc * P + pc]) * M + mc
    R = np.zeros(S * npair * M, dtype=np.float32)
    R[flat] = panel["referrals"].to_numpy()
    obs = np.zeros(S * npair * M, dtype=bool)
    obs[flat] = True
    wl = panel["weighted_list"].to_numpy()
    if not (np.all(np.isfinite(wl)) and np.all(wl > 0)):
        raise ValueError("panel column 'weighted_list' must be positive and finite (it is the exposure); check the "
                         "population and reference_rates tables")
    W = np.zeros(S * P * M, dtype=np.float64)
    W[(sc * P + pc) * M + mc] = wl
    coh_rows = panel["cohort"].to_numpy()
    coh_p = np.zeros(P, dtype=np.int64)
    coh_p[pc] = coh_rows
    if np.any(coh_p[pc] != coh_rows):
        raise ValueError("panel column 'cohort' must be constant within each practice")
    start = np.where(coh_p > 0, coh_p - 1 - anticipation, M + 1)  # first month counted as engaged
    pair_p = pair_keys % P
    treated_pm = np.arange(M)[None, :] >= start[:, None]  # (P, M)
    _, coh_idx = np.unique(coh_p, return_inverse=True)
    return _Design(practices=practices, providers=providers, specs=specs, months=months, pair_p=pair_p,
                   pair_v=pair_v, prov_used=prov_used, R=R.reshape(S, npair, M), obs=obs.reshape(S, npair, M),
                   W=W.reshape(S, P, M), coh_p=coh_p, treated_pm=treated_pm, T_pair=treated_pm[pair_p],
                   coh_pair=coh_idx[pair_p], n_coh=int(coh_idx.max()) + 1 if coh_idx.size else 0)


@dataclasses.dataclass(eq=False)
class _Valuation:
    """Cost per referral by provider used x specialty x pod x month, and the year and quarter indicators."""

    pods: list[str]
    Cpod: np.ndarray            # (Vp, S, K, M)
    Ctot: np.ndarray            # (Vp, S, M)
    years: list[str]            # financial years with engaged months
    Yoh: np.ndarray             # (Y, M) month -> year indicator
    quarters: list[str]
    Qoh: np.ndarray             # (Q, M)
    extra: np.ndarray           # (E, Vp, S, K, M) the other values a referral is valued at
    extra_tot: np.ndarray       # (E, Vp, S, M) over the pods


def _valuation(cost: pd.DataFrame, d: _Design, values: Sequence[str] = ()) -> _Valuation:
    """The cost table (its ``cost_per_referral`` and each of ``values``) as arrays on the design's codes, and the
    years and quarters of the engaged months."""
    pods = list(ELECTIVE_PODS)
    _, V, S, M = d.shape
    cv, _ = _codes(cost["provider_code"], d.providers)
    cs_, _ = _codes(cost["specialty_code"], d.specs)
    cm, _ = _codes(cost["month"], d.months)
    ck, _ = _codes(cost["pod"], pods)
    okc = (cv >= 0) & (cs_ >= 0) & (cm >= 0) & (ck >= 0)
    Call = np.zeros((1 + len(values), V, S, len(pods), M))
    for e, col in enumerate(["cost_per_referral", *values]):
        Call[e, cv[okc], cs_[okc], ck[okc], cm[okc]] = cost[col].to_numpy(dtype=float)[okc]
    Call = Call[:, d.prov_used]
    Cpod = Call[0]
    fy_lab = _fy_of_months(d.months)
    years = sorted(set(fy_lab[d.treated_pm.any(axis=0)]))
    yidx = pd.Index(years).get_indexer(fy_lab)
    Yoh = np.zeros((len(years), M))
    Yoh[yidx[yidx >= 0], np.flatnonzero(yidx >= 0)] = 1.0
    q_lab = np.asarray(calendar.period_of_months(d.months, "quarter"), dtype=str)
    quarters = sorted(set(q_lab))
    Qoh = np.zeros((len(quarters), M))
    Qoh[pd.Index(quarters).get_indexer(q_lab), np.arange(M)] = 1.0
    return _Valuation(pods=pods, Cpod=Cpod, Ctot=Cpod.sum(axis=2), years=years, Yoh=Yoh, quarters=quarters, Qoh=Qoh,
                      extra=Call[1:], extra_tot=Call[1:].sum(axis=3))


@dataclasses.dataclass(eq=False)
class _Targets:
    """The aggregate targets: the PCT, each group of ``by``, each extra target."""

    defs: list[dict[str, Any]]
    pair_mask: np.ndarray       # (J, npair)
    spec_mask: np.ndarray       # (J, S)
    group: np.ndarray | None    # (P,) the ``by`` group of each practice ("" if none)


def _target_def(t: Mapping[str, Any], d: _Design, pods: Sequence[str]) -> dict[str, Any]:
    """One extra target: its name, pod and practice / provider / specialty selections."""
    if "name" not in t:
        raise ValueError(f"each of targets needs a 'name'; got {dict(t)!r}")
    out = {"name": str(t["name"]), "level": "target", "unit": str(t["name"]),
           "pod": check_choice("targets pod", t.get("pod", "all"), TargetPod)}
    if "provider_code" in t:
        out["providers"] = np.isin(d.providers[d.prov_used].to_numpy(), np.atleast_1d(t["provider_code"]))
    if "specialty_code" in t:
        out["specialties"] = np.isin(d.specs.to_numpy(), np.atleast_1d(t["specialty_code"]))
    if "practice_code" in t:
        out["practices"] = np.isin(d.practices.to_numpy(), np.atleast_1d(t["practice_code"]))
    return out


def _targets(panel: pd.DataFrame, d: _Design, by: str | None, targets: Sequence[Mapping[str, Any]],
             pods: Sequence[str]) -> _Targets:
    """The PCT, one target per group of ``by`` and the extra ``targets`` as masks on pairs and specialties."""
    defs: list[dict[str, Any]] = [{"name": "pct", "level": "pct", "unit": "PCT", "pod": "all"}]
    gp = None
    if by is not None:
        gp = panel[by].astype(str).groupby(panel["practice_code"].astype(str), observed=True).first()
        gp = gp.reindex(d.practices).fillna("").to_numpy(dtype=str)
        for g in sorted(set(gp[gp != ""])):
            defs.append({"name": f"{by}:{g}", "level": by, "unit": g, "pod": "all", "practices": gp == g})
    defs += [_target_def(t, d, pods) for t in targets]
    J = len(defs)
    pair_mask = np.ones((J, d.pair_p.size), dtype=bool)
    spec_mask = np.ones((J, len(d.specs)), dtype=bool)
    for j, t in enumerate(defs):  # a handful of targets
        if "practices" in t:
            pair_mask[j] &= t["practices"][d.pair_p]
        if "providers" in t:
            pair_mask[j] &= t["providers"][d.pair_v]
        if "specialties" in t:
            spec_mask[j] &= t["specialties"]
    return _Targets(defs=defs, pair_mask=pair_mask, spec_mask=spec_mask, group=gp)


# ==================================================================================================
# Specialty by specialty: fit, counterfactual, savings, inference
# ==================================================================================================

@dataclasses.dataclass(eq=False)
class _Sums:
    """What the specialty loop accumulates (pairs x years, targets x years, practices x targets x years)."""

    var_u: np.ndarray           # g' H^-1 g of each practice-year target, by pair
    var_t: np.ndarray           # sum c^2 mu over its treated months
    ref_t: np.ndarray
    cf_t: np.ndarray
    ne_t: np.ndarray
    sav_pm: np.ndarray          # (npair, M)
    av_pm: np.ndarray
    savings_cells: np.ndarray   # (npair, S, K, Y)
    ef: np.ndarray              # (3, S, Y)
    agg_est: np.ndarray         # (J, Y) ...
    agg_ref: np.ndarray
    agg_cf: np.ndarray
    agg_var_model: np.ndarray
    agg_var_floor: np.ndarray
    agg_var_own: np.ndarray
    agg_if: np.ndarray          # (P, J, Y)
    extra_pair: np.ndarray      # (npair, E, Y) savings at the other values
    extra_agg: np.ndarray       # (J, E, Y)
    pearson: float = 0.0
    n_par: int = 0
    n_untreated: int = 0
    n_treated: int = 0
    iterations: int = 0
    converged: bool = True
    not_estimable: float = 0.0


def _sums(d: _Design, val: _Valuation, n_targets: int) -> _Sums:
    P, _, S, M = d.shape
    npair, Y, K, J, E = d.pair_p.size, len(val.years), len(val.pods), n_targets, val.extra.shape[0]
    z = lambda *shape: np.zeros(shape)  # noqa: E731
    return _Sums(var_u=z(npair, Y), var_t=z(npair, Y), ref_t=z(npair, Y), cf_t=z(npair, Y), ne_t=z(npair, Y),
                 sav_pm=z(npair, M), av_pm=z(npair, M), savings_cells=z(npair, S, K, Y), ef=z(3, S, Y),
                 agg_est=z(J, Y), agg_ref=z(J, Y), agg_cf=z(J, Y), agg_var_model=z(J, Y), agg_var_floor=z(J, Y),
                 agg_var_own=z(J, Y), agg_if=z(P, J, Y), extra_pair=z(npair, E, Y), extra_agg=z(J, E, Y))


@dataclasses.dataclass(eq=False)
class _Specialty:
    """One specialty's fit: observed, untreated and estimable masks, counterfactual and fitted means."""

    s: int
    Rs: np.ndarray              # (npair, M) referrals
    Us: np.ndarray              # untreated observations (in the fit)
    est: np.ndarray             # engaged observations with a counterfactual
    cf: np.ndarray              # fitted (untreated) / counterfactual (engaged) referrals
    mu_u: np.ndarray            # fitted means of the untreated observations
    mu_t: np.ndarray            # ETWFE fitted means of the engaged observations
    fit: ppml.TwoWayFit


def _fit_specialty(d: _Design, s: int, acc: _Sums, tol: float, max_iter: int) -> _Specialty:
    """Fit ``a`` and ``g`` on the untreated observations of specialty ``s``; counterfactual, ETWFE ratios, fit sums."""
    M = len(d.months)
    Rs = d.R[s].astype(np.float64)
    Ws = d.W[s][d.pair_p]
    Us = ~d.T_pair & d.obs[s]
    fit = ppml.fit_two_way(Rs * Us, Ws * Us, d.pair_v, tol=tol, max_iter=max_iter)
    acc.iterations, acc.converged = max(acc.iterations, fit.iterations), acc.converged and fit.converged
    A, Gp = fit.row, fit.cell[d.pair_v]
    cf = A[:, None] * Gp * Ws                       # fitted (untreated) / counterfactual (treated)
    Tm = d.T_pair & d.obs[s]
    est = Tm & (A[:, None] > 0) & (Gp > 0)
    acc.not_estimable += float(Rs[Tm & ~est].sum())
    mu_u = cf * Us
    # ETWFE: one ratio per cohort x month (this specialty)
    key = np.broadcast_to(d.coh_pair[:, None] * M + np.arange(M)[None, :], Rs.shape)
    num = np.bincount(key[est], weights=Rs[est], minlength=d.n_coh * M)
    dnm = np.bincount(key[est], weights=cf[est], minlength=d.n_coh * M)
    theta = np.where(dnm > 0, num / np.where(dnm > 0, dnm, 1.0), 0.0)
    mu_t = np.where(est, cf * theta[key], 0.0)
    pu, pt = Us & (mu_u > 0), est & (mu_t > 0)
    acc.pearson += float((((Rs - mu_u) ** 2)[pu] / mu_u[pu]).sum() + (((Rs - mu_t) ** 2)[pt] / mu_t[pt]).sum())
    acc.n_untreated += int(pu.sum())
    acc.n_treated += int(pt.sum())
    acc.n_par += int((A > 0).sum() + (fit.cell > 0).sum() - (fit.cell_total.sum(axis=1) > 0).sum() + (dnm > 0).sum())
    return _Specialty(s=s, Rs=Rs, Us=Us, est=est, cf=cf, mu_u=mu_u, mu_t=mu_t, fit=fit)


def _add_point_estimates(acc: _Sums, sp: _Specialty, d: _Design, val: _Valuation) -> None:
    """Referrals, counterfactual, referrals avoided and savings of the engaged observations (point estimates)."""
    Tm = d.T_pair & d.obs[sp.s]
    est, Rs, cf, Yoh = sp.est, sp.Rs, sp.cf, val.Yoh
    c_tot = val.Ctot[d.pair_v, sp.s, :]
    avoided = np.where(est, cf - Rs, 0.0)
    acc.ref_t += np.where(est, Rs, 0.0) @ Yoh.T
    acc.cf_t += np.where(est, cf, 0.0) @ Yoh.T
    acc.ne_t += np.where(Tm & ~est, Rs, 0.0) @ Yoh.T
    acc.sav_pm += avoided * c_tot
    acc.av_pm += avoided
    for k in range(len(val.pods)):
        acc.savings_cells[:, sp.s, k, :] = (avoided * val.Cpod[d.pair_v, sp.s, k, :]) @ Yoh.T
    acc.ef[0, sp.s] = np.where(est, Rs, 0.0).sum(axis=0) @ Yoh.T
    acc.ef[1, sp.s] = np.where(est, cf, 0.0).sum(axis=0) @ Yoh.T
    acc.ef[2, sp.s] = (avoided * c_tot).sum(axis=0) @ Yoh.T
    if val.extra.shape[0]:   # a handful of other values
        acc.extra_pair += np.einsum("pm,epm,ym->pey", avoided, val.extra_tot[:, d.pair_v, sp.s, :], Yoh)


def _add_practice_variance(acc: _Sums, sp: _Specialty, d: _Design, val: _Valuation, Kinv: np.ndarray,
                           pad: np.ndarray) -> None:
    """Delta-method variance parts of every practice-year saving (quasi-Poisson; ``phi`` applied later)."""
    M, Y, Yoh = len(d.months), len(val.years), val.Yoh
    c_tot = val.Ctot[d.pair_v, sp.s, :]
    inv_da = np.where(sp.fit.row_total > 0, 1.0 / np.where(sp.fit.row_total > 0, sp.fit.row_total, 1.0), 0.0)
    valid = pad >= 0
    wcf = np.where(sp.est, c_tot * sp.cf, 0.0)
    gg = wcf[:, None, :] * Yoh[None, :, :]
    ga = gg.sum(axis=2)
    h = gg - sp.mu_u[:, None, :] * (ga * inv_da[:, None])[:, :, None]
    Vp = pad.shape[0]
    bp = np.matmul(ppml.gather(h, pad).reshape(Vp, -1, M), Kinv).reshape(Vp, pad.shape[1], Y, M)
    b = np.zeros_like(h)
    b[pad[valid]] = bp[valid]
    del bp
    ba = (ga - np.einsum("pm,pym->py", sp.mu_u, b)) * inv_da[:, None]
    acc.var_u += ga * ba + np.einsum("pym,pym->py", gg, b)
    acc.var_t += (c_tot ** 2 * sp.mu_t) @ Yoh.T


def _add_target_variance(acc: _Sums, sp: _Specialty, d: _Design, val: _Valuation, tg: _Targets,
                         Kinv: np.ndarray) -> None:
    """Savings, delta-method variance, precision floor and cluster influence functions of every aggregate target."""
    Yoh, s = val.Yoh, sp.s
    c_tot = val.Ctot[d.pair_v, s, :]
    vstart = np.searchsorted(d.pair_v, np.arange(d.prov_used.size))
    inv_da = np.where(sp.fit.row_total > 0, 1.0 / np.where(sp.fit.row_total > 0, sp.fit.row_total, 1.0), 0.0)
    Dg = sp.fit.cell_total
    r_u = (sp.Rs - sp.mu_u) * sp.Us
    eps = np.where(sp.est, sp.Rs - sp.mu_t, 0.0)
    avoided = np.where(sp.est, sp.cf - sp.Rs, 0.0)
    for j, t in enumerate(tg.defs):  # a handful of targets
        if not tg.spec_mask[j, s]:
            continue
        c_sel = c_tot if t["pod"] == "all" else val.Cpod[d.pair_v, s, val.pods.index(t["pod"]), :]
        am = tg.pair_mask[j][:, None]
        w_j = np.where(sp.est & am, c_sel * sp.cf, 0.0)
        gg_j = w_j[:, None, :] * Yoh[None, :, :]
        ga_j = gg_j.sum(axis=2)
        h_j = gg_j - sp.mu_u[:, None, :] * (ga_j * inv_da[:, None])[:, :, None]
        bj = np.einsum("vmk,vyk->vym", Kinv, np.add.reduceat(h_j, vstart, axis=0))[d.pair_v]
        ba_j = (ga_j - np.einsum("pm,pym->py", sp.mu_u, bj)) * inv_da[:, None]
        acc.agg_var_model[j] += (ga_j * ba_j).sum(axis=0) + np.einsum("pym,pym->y", gg_j, bj)
        own_j = (c_sel ** 2 * sp.mu_t * am).sum(axis=0) @ Yoh.T
        acc.agg_var_model[j] += own_j
        acc.agg_var_own[j] += own_j
        # floor: practice effects known, month effects learned from the untreated referrals
        w_vm = np.add.reduceat(w_j, vstart, axis=0)
        acc.agg_var_floor[j] += own_j + np.where(Dg > 0, w_vm ** 2 / np.where(Dg > 0, Dg, 1.0), 0.0).sum(
            axis=0) @ Yoh.T
        acc.agg_est[j] += (avoided * c_sel * am).sum(axis=0) @ Yoh.T
        if val.extra.shape[0]:   # by provider first (pairs are sorted by provider), then every value at once
            by_v = np.add.reduceat(avoided * am, vstart, axis=0)
            x = val.extra_tot[:, :, s, :] if t["pod"] == "all" else val.extra[:, :, s, val.pods.index(t["pod"]), :]
            acc.extra_agg[j] += np.einsum("vm,evm,ym->ey", by_v, x, Yoh)
        acc.agg_ref[j] += np.where(am, np.where(sp.est, sp.Rs, 0.0), 0.0).sum(axis=0) @ Yoh.T
        acc.agg_cf[j] += np.where(am & sp.est, sp.cf, 0.0).sum(axis=0) @ Yoh.T
        if_pair = np.einsum("pm,pym->py", r_u, bj) - (c_sel * eps * am) @ Yoh.T
        np.add.at(acc.agg_if[:, j, :], d.pair_p, if_pair)


# ==================================================================================================
# Tables
# ==================================================================================================

def _to_practice(x: np.ndarray, d: _Design) -> np.ndarray:
    out = np.zeros((len(d.practices),) + x.shape[1:])
    np.add.at(out, d.pair_p, x)
    return out


def _practice_tables(acc: _Sums, d: _Design, val: _Valuation, tg: _Targets, phi: float, z: float,
                     by: str | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``practice_year`` (savings with model intervals) and ``practice_quarter`` of the engaged practices."""
    P, _, _, M = d.shape
    Y, years, pods, months = len(val.years), val.years, val.pods, d.months
    engaged = d.coh_p > 0
    ref_p, cf_p, ne_p = _to_practice(acc.ref_t, d), _to_practice(acc.cf_t, d), _to_practice(acc.ne_t, d)
    sav_p = _to_practice(acc.savings_cells.sum(axis=1), d)  # (P, K, Y)
    se_p = np.sqrt(np.maximum(phi * (_to_practice(acc.var_u, d) + _to_practice(acc.var_t, d)), 0))
    tot_p = sav_p.sum(axis=1)
    pi_, yi_ = np.nonzero(engaged[:, None] & np.ones((P, Y), dtype=bool))
    practice_year = pd.DataFrame({
        "practice_code": d.practices.to_numpy()[pi_], "financial_year": np.array(years)[yi_],
        "cohort_month": np.array(months + [""])[np.where(d.coh_p[pi_] > 0, d.coh_p[pi_] - 1, M)],
        "referrals": ref_p[pi_, yi_], "counterfactual_referrals": cf_p[pi_, yi_],
        "referrals_avoided": cf_p[pi_, yi_] - ref_p[pi_, yi_],
        "savings": tot_p[pi_, yi_], **{f"savings_{k}": sav_p[pi_, i, yi_] for i, k in enumerate(pods)},
        "std_error": se_p[pi_, yi_], "ci_low": tot_p[pi_, yi_] - z * se_p[pi_, yi_],
        "ci_high": tot_p[pi_, yi_] + z * se_p[pi_, yi_], "referrals_not_estimable": ne_p[pi_, yi_]})
    if by is not None and tg.group is not None:
        practice_year.insert(1, by, tg.group[pi_])
    Qoh, quarters = val.Qoh, val.quarters
    sav_q, av_q = _to_practice(acc.sav_pm, d) @ Qoh.T, _to_practice(acc.av_pm, d) @ Qoh.T
    pq_p, pq_q = np.nonzero(engaged[:, None] & np.ones((P, len(quarters)), dtype=bool))
    practice_quarter = pd.DataFrame({
        "practice_code": d.practices.to_numpy()[pq_p], "quarter": np.array(quarters)[pq_q],
        "financial_year": np.array([q[:7] for q in quarters])[pq_q],
        "engaged_months": (d.treated_pm.astype(float) @ Qoh.T)[pq_p, pq_q],
        "referrals_avoided": av_q[pq_p, pq_q], "savings": sav_q[pq_p, pq_q]})
    return practice_year, practice_quarter


def _webb(rng: np.random.Generator, shape: tuple[int, ...], kind: str) -> np.ndarray:
    if kind == "rademacher":
        return rng.choice(np.array([-1.0, 1.0]), size=shape)
    vals = np.array([-np.sqrt(1.5), -1.0, -np.sqrt(0.5), np.sqrt(0.5), 1.0, np.sqrt(1.5)])
    return rng.choice(vals, size=shape)


def _wild_interval(acc: _Sums, adj: float, confidence: float, n_boot: int, seed: int,
                   bootstrap_weights: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Wild cluster (score) bootstrap of the linearised estimator: interval bounds and standard errors ``(J, Y)``."""
    P, J, Y = acc.agg_if.shape
    rng = np.random.default_rng(seed)
    draws = np.zeros((n_boot, J * Y))
    IFf = acc.agg_if.reshape(P, J * Y) * np.sqrt(adj)
    for b0 in range(0, n_boot, _BOOT_BLOCK):  # blocks of draws keep memory small
        w = _webb(rng, (min(_BOOT_BLOCK, n_boot - b0), P), bootstrap_weights)
        draws[b0:b0 + w.shape[0]] = w @ IFf
    qlo, qhi = np.quantile(draws, [(1 - confidence) / 2, (1 + confidence) / 2], axis=0)
    est_f = acc.agg_est.reshape(-1)
    return (est_f - qhi).reshape(J, Y), (est_f - qlo).reshape(J, Y), draws.std(axis=0, ddof=1).reshape(J, Y)


def _aggregate_table(acc: _Sums, d: _Design, val: _Valuation, tg: _Targets, phi: float, z: float,
                     method: str, settings: Mapping[str, Any]) -> pd.DataFrame:
    """The aggregate targets per year with model, cluster-robust and the chosen (``method``) uncertainty."""
    G_cl = len(d.practices)
    J, Y = acc.agg_est.shape
    adj = G_cl / (G_cl - 1) if G_cl > 1 else 1.0
    se_model = np.sqrt(np.maximum(phi * acc.agg_var_model, 0))
    se_floor = np.sqrt(np.maximum(phi * acc.agg_var_floor, 0))
    se_own = np.sqrt(np.maximum(phi * acc.agg_var_own, 0))
    se_cluster = np.sqrt(adj * (acc.agg_if ** 2).sum(axis=0))
    if method == "wild":
        lo, hi, se_used = _wild_interval(acc, adj, settings["confidence"], settings["n_boot"], settings["seed"],
                                         settings["bootstrap_weights"])
    else:
        se_used = {"model": se_model, "cluster": se_cluster}.get(method, np.maximum(se_model, se_cluster))
        lo, hi = acc.agg_est - z * se_used, acc.agg_est + z * se_used
    ja, ya = np.nonzero(np.ones((J, Y), dtype=bool))
    defs = tg.defs
    return pd.DataFrame({
        "target": [defs[j]["name"] for j in ja], "level": [defs[j]["level"] for j in ja],
        "unit": [defs[j]["unit"] for j in ja], "pod": [defs[j]["pod"] for j in ja],
        "financial_year": np.array(val.years)[ya], "referrals": acc.agg_ref[ja, ya],
        "counterfactual_referrals": acc.agg_cf[ja, ya], "referrals_avoided": acc.agg_cf[ja, ya] - acc.agg_ref[ja, ya],
        "savings": acc.agg_est[ja, ya], "std_error_model": se_model[ja, ya], "std_error_cluster": se_cluster[ja, ya],
        "std_error": se_used[ja, ya], "ci_low": lo[ja, ya], "ci_high": hi[ja, ya], "inference": method,
        "n_clusters": G_cl, "std_error_floor": se_floor[ja, ya], "std_error_own_noise": se_own[ja, ya]})


def _valued_table(acc: _Sums, d: _Design, val: _Valuation, tg: _Targets, values: Sequence[str]) -> pd.DataFrame:
    """The referrals avoided valued at each of ``values``: engaged practices and aggregate targets, per year."""
    Y, E = len(val.years), len(values)
    prac = _to_practice(acc.extra_pair, d)                              # (P, E, Y)
    pe = np.flatnonzero(d.coh_p > 0)
    p_, e_, y_ = (a.ravel() for a in np.meshgrid(pe, np.arange(E), np.arange(Y), indexing="ij"))
    j_, ej, yj = (a.ravel() for a in np.meshgrid(np.arange(len(tg.defs)), np.arange(E), np.arange(Y), indexing="ij"))
    defs, years, vals = tg.defs, np.array(val.years), np.array(values, dtype=object)
    return pd.concat([
        pd.DataFrame({"target": "practice", "level": "practice", "unit": d.practices.to_numpy()[p_], "pod": "all",
                      "financial_year": years[y_], "value": vals[e_], "savings": prac[p_, e_, y_]}),
        pd.DataFrame({"target": [defs[j]["name"] for j in j_], "level": [defs[j]["level"] for j in j_],
                      "unit": [defs[j]["unit"] for j in j_], "pod": [defs[j]["pod"] for j in j_],
                      "financial_year": years[yj], "value": vals[ej], "savings": acc.extra_agg[j_, ej, yj]})],
        ignore_index=True)


def _cells_and_effects(acc: _Sums, d: _Design, val: _Valuation) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Savings per practice x provider x specialty x pod x year, and observed / counterfactual by specialty."""
    years, sc = np.array(val.years), acc.savings_cells
    cp, cs2, ck2, cy2 = np.nonzero(sc != 0)
    cells = pd.DataFrame({
        "practice_code": d.practices.to_numpy()[d.pair_p[cp]],
        "provider_code": d.providers.to_numpy()[d.prov_used[d.pair_v[cp]]],
        "specialty_code": d.specs.to_numpy()[cs2], "pod": np.array(val.pods)[ck2], "financial_year": years[cy2],
        "savings": sc[cp, cs2, ck2, cy2]})
    ef = acc.ef
    es, ey = np.nonzero(ef[1] > 0)
    effects = pd.DataFrame({
        "specialty_code": d.specs.to_numpy()[es], "financial_year": years[ey], "referrals": ef[0, es, ey],
        "counterfactual_referrals": ef[1, es, ey], "rate_ratio": ef[0, es, ey] / ef[1, es, ey],
        "referrals_avoided": ef[1, es, ey] - ef[0, es, ey], "savings": ef[2, es, ey]})
    return cells, effects


# ==================================================================================================
# The estimator
# ==================================================================================================

def _checked_settings(panel: pd.DataFrame, cost: pd.DataFrame, confidence: Any, inference: Any, n_boot: Any,
                      seed: Any, bootstrap_weights: Any, few_clusters: Any, anticipation: Any, by: Any,
                      tol: Any, max_iter: Any) -> dict[str, Any]:
    """Every argument of :func:`practice_action` checked (one message each, naming it and the fix)."""
    _check_columns(panel, _PANEL_COLUMNS, "panel")
    _check_columns(cost, ["provider_code", "specialty_code", "month", "pod", "cost_per_referral"], "cost")
    out = {"confidence": float(check_number("confidence", confidence, 0, 1, low_open=True, high_open=True,
                                            fix="use e.g. 0.95 for 95% intervals")),
           "inference": check_choice("inference", inference, Inference),
           "bootstrap_weights": check_choice("bootstrap_weights", bootstrap_weights, BootstrapWeights),
           "n_boot": _count("n_boot", n_boot, 1, "use e.g. 999 bootstrap draws"),
           "few_clusters": _count("few_clusters", few_clusters, 2, "use e.g. 50"),
           "anticipation": _count("anticipation", anticipation, 0, "use 0 unless practices changed before engaging"),
           "max_iter": _count("max_iter", max_iter, 1, "use e.g. 2000"), "by": by, "tol": tol}
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise ValueError(f"seed must be an integer, got {seed!r}; pass e.g. seed=20070401")
    if not (isinstance(tol, float) and 0 < tol < 1e-3):
        raise ValueError(f"tol must be a small positive float (e.g. 1e-10), got {tol!r}")
    if by is not None:
        _check_columns(panel, [by], "panel")
    return {**out, "seed": int(seed)}


def practice_action(panel: pd.DataFrame, cost: pd.DataFrame, confidence: float = DEFAULTS["confidence"],
                    inference: str = DEFAULTS["inference"], n_boot: int = DEFAULTS["n_boot"],
                    seed: int = DEFAULTS["seed"], bootstrap_weights: str = DEFAULTS["bootstrap_weights"],
                    few_clusters: int = 50, anticipation: int = 0, by: str | None = "consortium",
                    targets: Sequence[Mapping[str, Any]] = (), tol: float = 1e-10,
                    max_iter: int = 2000, values: Sequence[str] = ()) -> PracticeAction:
    """Referrals avoided and savings from practice action, with uncertainty (see the module docstring).

    Parameters
    ----------
    panel : pandas.DataFrame
        :func:`pbc_analysis.stages.attribution.panel.referral_panel` (or any table with its columns;
        categoricals keep it small at national size).
    cost : pandas.DataFrame
        :func:`pbc_analysis.stages.attribution.panel.cost_per_referral`.
    confidence : float
        Level of the intervals.
    inference : {"max", "wild", "cluster", "model", "auto"}
        For the aggregates: ``model`` (quasi-Poisson delta method), ``cluster`` (by practice), ``wild`` (wild
        cluster bootstrap), ``max`` (the larger of model and cluster: Angrist and Pischke 2009, 8.2.3, when
        clusters are few; over 30 synthetic PCTs cluster and wild intervals covered the truth 87-90% of the time,
        the model's 93-100%) or ``auto`` (``wild`` below ``few_clusters`` practices, else ``cluster``).
        Practice-level intervals are always the model's.
    n_boot, seed, bootstrap_weights : int, int, {"webb", "rademacher"}
        Draws, seed and weights (Webb's six-point or Rademacher) of the wild bootstrap.
    few_clusters : int
        ``auto`` uses the wild bootstrap below this many practices.
    anticipation : int
        Months before engagement already counted as engaged.
    by : str or None
        A practice-level column of ``panel`` whose groups get aggregate rows (e.g. ``consortium``).
    targets : sequence of mapping
        Extra aggregates, each with ``name`` and optional ``provider_code``, ``specialty_code``, ``pod`` and
        ``practice_code`` (a list) filters (e.g. a disputed provider change).
    tol, max_iter : float, int
        Convergence of the fixed effects (:func:`pbc_analysis.methods.ppml.fit_two_way`).
    values : sequence of str
        Other numeric columns of ``cost`` to value the same referrals avoided at (point estimates only:
        ``valued``), e.g. the cost per referral's derivatives with respect to the completeness factors
        (:func:`pbc_analysis.stages.attribution.completion.cost_gradients`), which makes the savings' derivatives.

    Returns
    -------
    PracticeAction

    References
    ----------
    Borusyak, Jaravel and Spiess (2024); Wooldridge (2023); Kline and Santos (2012); Cameron, Gelbach and
    Miller (2008): see the module docstring.
    """
    t_start = pd.Timestamp.now()
    settings = _checked_settings(panel, cost, confidence, inference, n_boot, seed, bootstrap_weights, few_clusters,
                                 anticipation, by, tol, max_iter)
    values = list(values)
    _check_columns(cost, values, "cost")
    d = _design(panel, settings["anticipation"])
    val = _valuation(cost, d, values)
    tg = _targets(panel, d, by, targets, val.pods)
    acc = _sums(d, val, len(tg.defs))
    pad = ppml.pad_index(d.pair_v, d.prov_used.size)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for s in range(len(d.specs)):  # fixed effects are specialty-specific: one independent fit per specialty
            sp = _fit_specialty(d, s, acc, tol, settings["max_iter"])
            _add_point_estimates(acc, sp, d, val)
            Kinv = ppml.two_way_information_inverse(sp.mu_u, sp.fit, pad)
            _add_practice_variance(acc, sp, d, val, Kinv, pad)
            _add_target_variance(acc, sp, d, val, tg, Kinv)
    if not acc.converged:
        warnings.warn(f"practice_action: the fixed effects did not converge in {max_iter} iterations; raise "
                      "max_iter", RuntimeWarning, stacklevel=2)
    n_obs = acc.n_untreated + acc.n_treated
    phi = acc.pearson / max(n_obs - acc.n_par, 1)
    z = float(stats.norm.ppf(0.5 + settings["confidence"] / 2))
    P, V, S, M = d.shape
    method = inference if inference != "auto" else ("wild" if P < settings["few_clusters"] else "cluster")
    practice_year, practice_quarter = _practice_tables(acc, d, val, tg, phi, z, by)
    aggregates = _aggregate_table(acc, d, val, tg, phi, z, method, settings)
    cells, effects = _cells_and_effects(acc, d, val)
    valued = _valued_table(acc, d, val, tg, values) if values else None
    fit = {"iterations": acc.iterations, "converged": acc.converged, "dispersion": phi, "n_obs": n_obs,
           "n_untreated": acc.n_untreated, "n_treated": acc.n_treated, "n_parameters": acc.n_par,
           "n_clusters": P, "n_practices": P, "n_providers": V, "n_specialties": S, "n_months": M,
           "referrals_not_estimable": acc.not_estimable, "inference": method,
           "seconds": (pd.Timestamp.now() - t_start).total_seconds()}
    settings = {k: settings[k] for k in ("confidence", "inference", "n_boot", "seed", "bootstrap_weights",
                                         "few_clusters", "anticipation", "by")}
    settings["targets"] = [{k: (list(np.atleast_1d(v)) if k == "practice_code" else v) for k, v in t.items()}
                           for t in targets]
    settings["tol"] = tol
    return PracticeAction(practice_year, practice_quarter, aggregates, cells, effects, fit, settings, valued)
