"""Speed and memory of the regression attribution at national size (not run in CI).

    .venv/bin/python scripts/benchmark_attribution.py [--practices 6500] [--specialties 12] [--months 60]
                                                     [--providers-per-practice 4] [--small-practices 40]
                                                     [--skip-national] [--skip-statsmodels]

1. National size: a synthetic referral panel is generated directly in memory (practices x 4 providers x
   12 specialties x 60 months: about 19 million rows; categorical codes, int32 counts), with staggered
   engagement that cuts referrals by 5-15% per specialty after a 6-month ramp, practice propensities,
   provider shares, a provider x specialty x month season and trend. :func:`pbc_analysis.stages.attribution
   .practice_action` then fits the saturated ETWFE Poisson (imputation) and computes savings with
   practice-level intervals and the cluster-robust PCT total. Printed: seconds, peak resident memory of
   this process (``resource.getrusage``; the panel itself is part of it), rows, iterations.
2. Against statsmodels: on a panel small enough for dummy variables (``--small-practices`` practices,
   one specialty) the same model is fitted by statsmodels' GLM (Poisson, offset log weighted list,
   dummies for practice x provider, provider x month and each engaged cohort x month cell), the time
   ratio is printed and the counterfactuals are checked to agree.

The generator is this script's own (not ``pbc synth``): it writes no files and holds only the referral
panel, which is all the regression needs.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pbc_analysis.stages import attribution as at  # noqa: E402


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2  # Linux: kilobytes


def make_panel(n_practices: int, n_specialties: int, n_months: int, per_practice: int, seed: int = 1,
               ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A referral panel (practice x provider x specialty x month) and a cost-per-referral table."""
    rng = np.random.default_rng(seed)
    P, S, M, K = n_practices, n_specialties, n_months, per_practice
    V = max(K, int(round(P / 40)))
    prov = (np.arange(P)[:, None] // 40 + np.arange(K)[None, :] * max(1, V // K)) % V  # (P, K)
    prov = np.sort(prov, axis=1)
    share = rng.dirichlet(np.full(K, 3.0), size=P)
    pair_p = np.repeat(np.arange(P), K)
    pair_v = prov.ravel()
    o = np.lexsort((pair_p, pair_v))
    pair_p, pair_v, pair_share = pair_p[o], pair_v[o], share.ravel()[o]
    lists = np.clip(np.exp(rng.normal(np.log(8100), 0.6, P)), 1000, 40000)
    growth = rng.normal(0.01, 0.01, P)
    t = np.arange(M) / 12
    need = np.exp(rng.normal(0, 0.05, (P, S)))
    W = (lists[:, None, None] * need[:, :, None] * np.exp(growth[:, None, None] * t[None, None, :])).astype(np.float32)
    rate = rng.uniform(0.4, 1.8, S) / 1000 * np.exp(rng.normal(0, 0.2, P))[:, None] * np.exp(rng.normal(0, 0.1, (P, S)))
    season = 1 + 0.05 * np.sin(2 * np.pi * np.arange(M) / 12)
    gam = season[None, None, :] * np.exp(0.01 * t)[None, None, :] * np.exp(rng.normal(0, 0.05, (V, S, 1)))
    cohort_month = np.array([24, 30, 36, 0])[rng.choice(4, size=P, p=[0.3, 0.25, 0.15, 0.3])] * M // 60
    eff = rng.uniform(0.02, 0.15, S)
    since = np.arange(M)[None, :] - (cohort_month[:, None] - 1)
    ramp = np.where((cohort_month[:, None] > 0) & (since >= 0), np.clip((since + 1) / 6, 0, 1), 0.0)
    E = 1 - eff[None, :, None] * ramp[:, None, :]  # (P, S, M)
    n_rows = pair_p.size * S * M
    counts = np.empty(n_rows, dtype=np.int32)
    step = max(1, pair_p.size // 20)
    for a in range(0, pair_p.size, step):  # chunks keep the float temporaries small
        b = min(a + step, pair_p.size)
        pp, vv = pair_p[a:b], pair_v[a:b]
        mu = (W[pp] * (rate[pp] * pair_share[a:b, None])[:, :, None] * gam[vv] * E[pp])
        counts[a * S * M:b * S * M] = rng.poisson(mu).astype(np.int32).ravel()
    pr = np.repeat(np.arange(pair_p.size, dtype=np.int32), S * M)
    s_code = np.tile(np.repeat(np.arange(S, dtype=np.int8), M), pair_p.size)
    m_code = np.tile(np.arange(M, dtype=np.int16), pair_p.size * S)
    pc = pair_p.astype(np.int32)[pr]
    months = [f"{2003 + (3 + m) // 12}-{(3 + m) % 12 + 1:02d}" for m in range(M)]
    pcodes = [f"{'ABCDEFGH'[i // 10000]}{i % 10000 + 80000:05d}" for i in range(P)]
    vcodes = [f"R{i:03d}" for i in range(V)]
    scodes = [f"{100 + i:03d}" for i in range(S)]
    panel = pd.DataFrame({
        "practice_code": pd.Categorical.from_codes(pc, categories=pcodes),
        "provider_code": pd.Categorical.from_codes(pair_v.astype(np.int32)[pr], categories=vcodes),
        "specialty_code": pd.Categorical.from_codes(s_code, categories=scodes),
        "month": pd.Categorical.from_codes(m_code, categories=months),
        "referrals": counts,
        "weighted_list": W[pc, s_code, m_code],
        "cohort": cohort_month.astype(np.int16)[pc],
    })
    del pr, s_code, m_code, pc
    idx = np.arange(V * S * M * 3)
    cost = pd.DataFrame({
        "provider_code": pd.Categorical.from_codes(idx // (S * M * 3), categories=vcodes),
        "specialty_code": pd.Categorical.from_codes((idx // (M * 3)) % S, categories=scodes),
        "month": pd.Categorical.from_codes((idx // 3) % M, categories=months),
        "pod": pd.Categorical.from_codes(idx % 3, categories=list(at.ELECTIVE_PODS)),
        "cost_per_referral": np.tile([160.0, 190.0, 450.0], V * S * M)})
    return panel, cost


def statsmodels_ratio(n_practices: int, n_months: int, seed: int = 2) -> None:
    """Time statsmodels' GLM with dummy variables against practice_action on one specialty.

    The model is the same: Poisson, offset log weighted list, dummies for practice x provider and
    provider x month (each provider's first month left out: full rank), fitted on the untreated
    practice-months (with one dummy per engaged observation, as practice_action's saturated model,
    those observations are fitted exactly and drop out, so this is the same fit), counterfactuals of
    engaged months predicted. Engaged cells with no untreated referrals in their practice-provider
    or provider-month are left out of both (no counterfactual level)."""
    import statsmodels.api as sm

    panel, cost = make_panel(n_practices, 1, n_months, 3, seed=seed)
    panel = panel.assign(**{c: panel[c].cat.remove_unused_categories() for c in
                            ("practice_code", "provider_code", "specialty_code", "month")})
    t0 = time.perf_counter()
    res = at.practice_action(panel, cost, inference="model", by=None)
    t_ours = time.perf_counter() - t0
    coh = panel["cohort"].to_numpy()
    m = panel["month"].cat.codes.to_numpy()
    treated = (coh > 0) & (m + 1 >= coh)
    y = panel["referrals"].to_numpy(float)
    pair = (panel["practice_code"].astype(str) + ":" + panel["provider_code"].astype(str)).to_numpy()
    pmon = (panel["provider_code"].astype(str) + ":" + panel["month"].astype(str)).to_numpy()
    u = pd.DataFrame({"pair": pair, "pm": pmon, "y": np.where(treated, 0.0, y)})
    ok = ((u.groupby("pair")["y"].transform("sum") > 0) & (u.groupby("pm")["y"].transform("sum") > 0)).to_numpy()
    pm = pd.Series(np.where(m == 0, "base", pmon))
    X = pd.concat([pd.get_dummies(pd.Series(pair), dtype=float),
                   pd.get_dummies(pm, dtype=float).drop(columns="base")], axis=1)
    fit_rows = ~treated & ok
    keep_cols = X.loc[fit_rows].sum(axis=0).to_numpy() > 0
    Xn = X.to_numpy()[:, keep_cols]
    off = np.log(panel["weighted_list"].to_numpy(float))
    t0 = time.perf_counter()
    glm = sm.GLM(y[fit_rows], Xn[fit_rows], family=sm.families.Poisson(), offset=off[fit_rows]).fit(
        tol=1e-12, maxiter=100)
    cf_sm = np.exp(Xn[treated & ok] @ glm.params + off[treated & ok])
    t_sm = time.perf_counter() - t0
    print(f"statsmodels GLM with dummies: {int(fit_rows.sum()):,} untreated rows, {Xn.shape[1]:,} dummy columns, "
          f"{t_sm:.2f} s (converged {glm.converged}); pbc_analysis.stages.attribution.practice_action (fit, savings and "
          f"intervals): {t_ours:.3f} s; ratio {t_sm / t_ours:,.0f}x")
    ours = res.practice_year["counterfactual_referrals"].sum()
    theirs = float(cf_sm.sum())
    print(f"  counterfactual referrals of engaged practice-months: ours {ours:,.6f}, statsmodels {theirs:,.6f} "
          f"(relative difference {abs(ours - theirs) / theirs:.1e})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--practices", type=int, default=6500)
    ap.add_argument("--specialties", type=int, default=12)
    ap.add_argument("--months", type=int, default=60)
    ap.add_argument("--providers-per-practice", type=int, default=4)
    ap.add_argument("--small-practices", type=int, default=40)
    ap.add_argument("--skip-national", action="store_true")
    ap.add_argument("--skip-statsmodels", action="store_true")
    args = ap.parse_args(argv)
    if not args.skip_national:
        t0 = time.perf_counter()
        panel, cost = make_panel(args.practices, args.specialties, args.months, args.providers_per_practice)
        t_gen = time.perf_counter() - t0
        before = peak_gb()
        t0 = time.perf_counter()
        res = at.practice_action(panel, cost, inference="cluster", by=None)
        secs = time.perf_counter() - t0
        pct = res.aggregates[res.aggregates["target"] == "pct"]
        print(f"national-size panel: {len(panel):,} rows ({args.practices:,} practices x "
              f"{args.providers_per_practice} providers x {args.specialties} specialties x {args.months} months), "
              f"generated in {t_gen:.1f} s (peak {before:.2f} GB)")
        print(f"regression attribution: {secs:.1f} s, peak resident memory {peak_gb():.2f} GB (whole process, panel "
              f"included); {res.fit['iterations']} fixed-effect sweeps, converged {res.fit['converged']}")
        print(pct[["financial_year", "savings", "std_error", "ci_low", "ci_high"]].to_string(index=False))
        del panel, cost, res
    if not args.skip_statsmodels:
        statsmodels_ratio(args.small_practices, 36)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
