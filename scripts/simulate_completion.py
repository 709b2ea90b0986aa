"""Coverage of the data lag's completion error over many synthetic PCTs (not run in CI).

    .venv/bin/python scripts/simulate_completion.py [--seeds 30] [--first-seed 1] [--practices 60]

For each seed the synthetic PCT is written twice with the same draws (``pbc_analysis.synth``): as the PCT sees
it, its last three months thinned by the data lag, and complete (``completeness`` 1, the same seed: the thinning
has its own random stream, so every other count is identical). Then:

- every completed pod-month total (:func:`pbc_analysis.stages.attribution.completeness_factors`' expected
  activity) against the month's complete total: ``z = log(completed / complete) / std_error``, with the
  backtest's standard error and, for comparison, the Poisson one (the expectation's noise and the records to
  arrive, :func:`pbc_analysis.stages.attribution.panel._completeness_arrays` with no backtests);
- every PCT accounting line of the evaluation year (Shapley, as notebook 04) computed from the completed data
  against the same line from the complete data: ``z = (completed - complete) / completion standard error``
  (:mod:`pbc_analysis.stages.attribution.completion`: the totals' error and the late records' thinning), the
  error the completion error model speaks of; also against the totals' error alone.

Printed: the share of |z| below 1.96 (nominal 95%) and the root mean square of z (1 when calibrated).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pbc_analysis.data import load_inputs  # noqa: E402
from pbc_analysis.stages import attribution as at  # noqa: E402
from pbc_analysis.stages.attribution import decomposition, delta, panel  # noqa: E402
from pbc_analysis.synth import SynthParams, generate, write_tables  # noqa: E402

BASE, YEARS = "2004/05", ["2005/06", "2006/07", "2007/08"]


def _pct_lines(inputs, comp: pd.DataFrame) -> pd.Series:
    cells = decomposition.spend_cells(inputs, years=[BASE, *YEARS], completeness=comp)
    parts = decomposition.decompose(cells, BASE, YEARS, method="shapley")
    g = parts[parts["financial_year"] == YEARS[-1]][[*at.FACTORS, "change"]].sum()
    return pd.Series({**{line: g[list(fs)].sum() for line, fs in at.LINE_FACTORS.items()}, "change": g["change"]})


def one_seed(seed: int, practices: int, tmp: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    params = SynthParams(seed=seed, n_practices=practices, n_months=60, start_month="2003-04")
    lagged_dir, full_dir = tmp / f"lag{seed}", tmp / f"full{seed}"
    write_tables(generate(params), lagged_dir, fmt="parquet")
    write_tables(generate(dataclasses.replace(params, completeness=(1.0, 1.0, 1.0))), full_dir, fmt="parquet")
    lagged, full = load_inputs(lagged_dir, "2003-04", "2008-03"), load_inputs(full_dir, "2003-04", "2008-03")
    comp, cov = panel._completeness(lagged, 3, 12)
    months = panel._window_months(lagged)
    A, R, pods = panel._activity_and_referrals(lagged, months)
    se_poisson = np.zeros(len(comp))
    for pod in comp["pod"].unique():          # the Poisson covariance (no backtest), as panel's fallback
        k_ = list(pods).index(pod)
        e_, cov_e, o_ = panel._expected(A[:, :, k_, :], R, pod in at.ELECTIVE_PODS, len(months) - 3, 3, 12)
        rows = np.flatnonzero(comp["pod"].to_numpy() == pod)
        se_poisson[rows] = np.sqrt((np.diag(cov_e) + np.maximum(e_ - o_, 0.0)) / e_ ** 2)
    Af, _, _ = panel._activity_and_referrals(full, months)
    truth = Af.sum(axis=(0, 1))[:, -3:]                      # (pod, lagged month) complete totals
    k = pd.Index(list(pods)).get_indexer(comp["pod"])
    j = pd.Index(list(months[-3:])).get_indexer(comp["month"])
    done = comp["completeness"].to_numpy() < 1
    err = np.log(comp["expected"].to_numpy() / truth[k, j])
    totals = pd.DataFrame({"seed": seed, "pod": comp["pod"], "month": comp["month"], "log_error": err,
                           "z_backtest": err / comp["std_error"].to_numpy(),
                           "z_poisson": err / se_poisson})[done]
    # the lines: completed against complete, in the completion standard errors
    cells = decomposition.spend_cells(lagged, years=[BASE, *YEARS], completeness=comp, lagged=True)
    L = delta.lag_matrix(cells, comp)
    plain = cells.drop(columns=[c for c in cells.columns if c.startswith("lagged_")])
    grads, thin, _ = delta.completion_gradients(plain, L, BASE, YEARS, "shapley",
                                                completeness=comp["completeness"].to_numpy())
    g = grads[(grads["level"] == "pct") & (grads["financial_year"] == YEARS[-1])]
    G = np.zeros((len(at.LINE_FACTORS) + 1, len(comp)))
    names = [*at.LINE_FACTORS, "change"]
    np.add.at(G, (pd.Index(names).get_indexer(g["line"]), g["q"].to_numpy()), g["gradient"].to_numpy())
    v_tot = np.einsum("lq,qr,lr->l", G, cov, G)
    t = thin[(thin["level"] == "pct") & (thin["financial_year"] == YEARS[-1])].set_index("line")["variance"]
    v_thin = t.reindex(names).fillna(0.0).to_numpy(dtype=float)
    se = np.sqrt(v_tot + v_thin)
    diff = _pct_lines(lagged, comp) - _pct_lines(full, comp.iloc[0:0])
    lines = pd.DataFrame({"seed": seed, "line": names, "error": diff[names].to_numpy(), "std_error": se,
                          "z": diff[names].to_numpy() / se, "z_totals_only": diff[names].to_numpy() / np.sqrt(v_tot)})
    return totals, lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=30)
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--practices", type=int, default=60)
    a = ap.parse_args()
    t0 = time.time()
    totals, lines = [], []
    with tempfile.TemporaryDirectory(prefix="pbc-sim-completion-") as tmp:
        for seed in tqdm(range(a.first_seed, a.first_seed + a.seeds), desc="PCTs"):
            t, ln = one_seed(seed, a.practices, Path(tmp))
            totals.append(t)
            lines.append(ln)
    T, L = pd.concat(totals, ignore_index=True), pd.concat(lines, ignore_index=True)
    cover = lambda z: float((np.abs(z) < 1.959964).mean())  # noqa: E731
    rms = lambda z: float(np.sqrt(np.mean(np.square(z))))  # noqa: E731
    print(f"{a.seeds} synthetic PCTs of {a.practices} practices, {time.time() - t0:.0f} s")
    print(f"completed pod-month totals ({len(T)}): backtest coverage {cover(T['z_backtest']):.1%}, RMS z "
          f"{rms(T['z_backtest']):.2f}; Poisson coverage {cover(T['z_poisson']):.1%}, RMS z {rms(T['z_poisson']):.2f}")
    for pod, g in T.groupby("pod", sort=False):
        print(f"  {pod:13s} backtest {cover(g['z_backtest']):6.1%} (RMS {rms(g['z_backtest']):.2f})   Poisson "
              f"{cover(g['z_poisson']):6.1%} (RMS {rms(g['z_poisson']):.2f})")
    print(f"PCT lines of {YEARS[-1]}, completed minus complete, in completion standard errors:")
    for line, g in L.groupby("line", sort=False):
        print(f"  {line:16s} coverage {cover(g['z']):6.1%}  RMS z {rms(g['z']):.2f}  (totals' error alone: "
              f"{cover(g['z_totals_only']):6.1%}, RMS {rms(g['z_totals_only']):.2f})  mean |error| GBP "
              f"{g['error'].abs().mean():,.0f}  mean SE GBP {g['std_error'].mean():,.0f}")


if __name__ == "__main__":
    main()
