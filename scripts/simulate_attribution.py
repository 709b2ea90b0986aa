"""Bias and coverage of the savings attribution over many synthetic PCTs (not run in CI).

    .venv/bin/python scripts/simulate_attribution.py [--seeds 50] [--first-seed 1] [--practices 60]
                                                    [--inference max] [--no-leak] [--out rows.csv]

For each seed a synthetic PCT (``pbc_analysis.synth.write_synthetic_pct``, the sample's parameters
otherwise) is generated, loaded and attributed as notebook 04 does. Printed per evaluation year:

- PCT practice-action savings (:func:`pbc_analysis.stages.attribution.practice_action`) against the truth
  (``ground_truth.json`` ``pct_year.savings_practice_action``): mean bias (GBP and relative), RMSE, share
  of seeds within 10% of the truth, coverage of the 95% interval, the mean standard error relative to the
  truth, the precision floor (``std_error_floor``: practice levels known) relative to the truth and the
  chance that an unbiased estimate at the floor lands within 10%, and the share of PCTs with every year
  within 10%; per practice: mean correlation with the true savings and coverage of the practice intervals;
- the provider follow-up cut landing on the practices' side: the planted cut is undone in the data (the
  cut provider's follow-up activity and cost divided by 0.8 from the effective month) and the attribution
  re-run; the practice-action savings move by ``est_move``, the truth (the same PCT generated without the
  cut) by ``true_move`` (the same referrals avoided are worth less after the cut);
  ``|est_move - true_move|`` over the truth's ``savings_provider_change`` is the share of the cut that
  landed on the practices;
- the tariff and population lines of the exact accounting (Shapley and LMDI-I) against the truth's
  LMDI parts (``lmdi_tariff``, ``lmdi_population``): mean and largest relative error.
"""

from __future__ import annotations

import argparse
import json
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
from pbc_analysis.synth import SynthParams, generate, without_provider_cut, write_tables  # noqa: E402

YEARS = ("2005/06", "2006/07", "2007/08")


def one_seed(seed: int, practices: int, tmp: Path, inference: str, leak: bool) -> list[dict]:
    params = SynthParams(seed=seed, n_practices=practices, n_months=60, start_month="2003-04")
    d = tmp / f"seed{seed}"
    write_tables(generate(params), d, fmt="parquet")
    truth = json.loads((d / "ground_truth.json").read_text())
    inputs = load_inputs(d, "2003-04", "2008-03")
    comp = at.completeness_factors(inputs)
    cost = at.cost_per_referral(inputs, completeness=comp)
    action = at.practice_action(at.referral_panel(inputs), cost, inference=inference, n_boot=499, seed=seed)
    tr = pd.DataFrame(truth["pct_year"]).set_index("financial_year")
    pct = action.aggregates.query("target == 'pct'").set_index("financial_year")
    py = pd.DataFrame(truth["practice_year"])[["practice_code", "financial_year", "savings_practice_action"]]
    m = action.practice_year.merge(py, on=["practice_code", "financial_year"])
    cells = at.spend_cells(inputs, years=["2004/05", *YEARS], completeness=comp)
    dec = {meth: at.decompose(cells, "2004/05", list(YEARS), method=meth).groupby("financial_year")[
        ["list", "need", "tariff"]].sum() for meth in ("shapley", "lmdi")}
    moved = {}
    if leak:
        undone = without_provider_cut(inputs, truth)
        a0 = at.practice_action(at.referral_panel(undone), at.cost_per_referral(undone), inference="model")
        t0 = pd.DataFrame(generate(SynthParams(**{**params.__dict__, "provider_cut_size": 0.0})).truth["pct_year"]) \
            .set_index("financial_year")
        p0 = a0.aggregates.query("target == 'pct'").set_index("financial_year")
        for fy in YEARS:
            if tr.loc[fy, "savings_provider_change"] > 0:
                est_move = pct.loc[fy, "savings"] - p0.loc[fy, "savings"]
                true_move = tr.loc[fy, "savings_practice_action"] - t0.loc[fy, "savings_practice_action"]
                moved[fy] = abs(est_move - true_move) / tr.loc[fy, "savings_provider_change"]
    rows = []
    for fy in YEARS:
        t = tr.loc[fy, "savings_practice_action"]
        g = m[m["financial_year"] == fy]
        row = {"seed": seed, "year": fy, "truth": t, "estimate": pct.loc[fy, "savings"],
               "se": pct.loc[fy, "std_error"], "floor": pct.loc[fy, "std_error_floor"],
               "low": pct.loc[fy, "ci_low"], "high": pct.loc[fy, "ci_high"],
               "practice_corr": np.corrcoef(g["savings"], g["savings_practice_action"])[0, 1],
               "practice_cover": ((g["ci_low"] <= g["savings_practice_action"])
                                  & (g["savings_practice_action"] <= g["ci_high"])).mean(),
               "leak": moved.get(fy, np.nan)}
        for meth, dd in dec.items():
            row[f"tariff_{meth}"] = dd.loc[fy, "tariff"] / tr.loc[fy, "lmdi_tariff"] - 1
            row[f"population_{meth}"] = (dd.loc[fy, "list"] + dd.loc[fy, "need"]) / tr.loc[fy, "lmdi_population"] - 1
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=50)
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--practices", type=int, default=60)
    ap.add_argument("--inference", default="max", choices=["max", "wild", "cluster", "model"])
    ap.add_argument("--no-leak", action="store_true", help="skip the no-cut twin (halves the time)")
    ap.add_argument("--out", type=Path, help="also write the per-seed rows to this CSV file")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in tqdm(range(args.first_seed, args.first_seed + args.seeds), desc="seeds", unit="PCT"):
            rows += one_seed(seed, args.practices, Path(tmp), args.inference, not args.no_leak)
    df = pd.DataFrame(rows)
    df["error"] = df["estimate"] - df["truth"]
    df["rel"] = df["error"] / df["truth"]
    df["covered"] = (df["low"] <= df["truth"]) & (df["truth"] <= df["high"])
    df["floor_rel"] = df["floor"] / df["truth"]
    df["floor_chance"] = at.chance_within(df["floor_rel"], 0.10)
    if args.out is not None:
        df.to_csv(args.out, index=False)
    print(f"{args.seeds} synthetic PCTs of {args.practices} practices, {time.perf_counter() - t0:.0f} s; "
          f"inference for the PCT total: {args.inference}")
    print("PCT practice-action savings (GBP) against ground_truth.json pct_year.savings_practice_action")
    print(f"{'year':8s} {'mean truth':>12s} {'mean bias':>10s} {'rel. bias':>9s} {'RMSE':>10s} {'RMSE/truth':>10s} "
          f"{'SE/truth':>9s} {'floor/truth':>11s} {'|err|<10%':>9s} {'at floor':>8s} {'coverage':>9s} "
          f"{'prac.corr':>9s} {'prac.cover':>10s}")
    for fy, g in df.groupby("year"):
        print(f"{fy:8s} {g['truth'].mean():12,.0f} {g['error'].mean():10,.0f} {g['error'].mean() / g['truth'].mean():9.1%} "
              f"{np.sqrt((g['error'] ** 2).mean()):10,.0f} {np.sqrt((g['rel'] ** 2).mean()):10.1%} "
              f"{(g['se'] / g['truth']).mean():9.1%} {g['floor_rel'].mean():11.1%} "
              f"{(g['rel'].abs() < 0.10).mean():9.0%} {g['floor_chance'].mean():8.0%} {g['covered'].mean():9.0%} "
              f"{g['practice_corr'].mean():9.2f} {g['practice_cover'].mean():10.0%}")
    every = (df["rel"].abs() < 0.10).groupby(df["seed"]).all()
    print(f"PCTs with every year within 10% of the truth: {every.mean():.0%} of {every.size} "
          "('at floor': the chance an unbiased estimate with the floor's standard error lands within 10%)")
    if df["leak"].notna().any():
        lk = df.dropna(subset=["leak"])
        print("Provider follow-up cut landing on the practices' side (share of the cut): "
              + ", ".join(f"{fy} mean {g['leak'].mean():.2%} max {g['leak'].max():.2%}" for fy, g in lk.groupby("year")))
    for meth in ("shapley", "lmdi"):
        print(f"{meth:8s} tariff line vs truth: mean {df[f'tariff_{meth}'].mean():+.2%}, largest "
              f"{df[f'tariff_{meth}'].abs().max():.2%}; population: mean {df[f'population_{meth}'].mean():+.2%}, "
              f"largest {df[f'population_{meth}'].abs().max():.2%}; within 1%: "
              f"{((df[f'tariff_{meth}'].abs() < 0.01) & (df[f'population_{meth}'].abs() < 0.01)).mean():.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
