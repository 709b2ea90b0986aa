"""How often does benchmarking flag practices, over many synthetic PCTs?

    make simulate-benchmark
    .venv/bin/python scripts/simulate_benchmark.py [--seeds 20] [--first-seed 1] [--practices 60]

For each seed a synthetic PCT (``pbc_analysis.synth``, 60 practices x 60 months by default) is
benchmarked with the defaults of notebook 02. Printed per setting of the over-dispersion adjustment:

- detection: the share of planted under-referrers' practice-years (all specialties) flagged as
  possible under-referrers (95% lower limit), and flagged in the latest year;
- false flags: among the other practices, the share of practice x series x year cells below the
  95% lower limit (nominal 2.5%) and above the 99.8% upper limit (nominal 0.1%), each specialty and
  point of delivery separately, with a binomial 95% interval over all cells.

Practices that are not planted still differ in propensity (sd 0.18 on the log scale), so "false"
here means "flagged more often than the limits say for a practice drawn from the between-practice
distribution": with limits that allow for that distribution it should be near nominal.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
from scipy import stats
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pbc_analysis.data import load_inputs  # noqa: E402
from pbc_analysis.stages import benchmark as B  # noqa: E402
from pbc_analysis.synth import write_synthetic_pct  # noqa: E402

SETTINGS = {
    "tau2, consistency-corrected (default)": dict(overdispersion="auto", consistency=True),
    "tau2, uncorrected (FunnelPlotR)": dict(overdispersion="auto", consistency=False),
    "phi (multiplicative), corrected": dict(overdispersion="phi", consistency=True),
    "none (Poisson only)": dict(overdispersion="none"),
}


def one_seed(seed: int, practices: int, tmp: Path) -> list[dict]:
    import json

    d = tmp / f"seed{seed}"
    write_synthetic_pct(d, seed=seed, n_practices=practices, n_months=60, start_month="2003-04", progress=False)
    inputs = load_inputs(d, "2003-04", "2008-03")
    planted = set(json.loads((d / "ground_truth.json").read_text())["under_referrers"]["practices"])
    cube = B.build_cube(inputs)
    rows = []
    for name, kw in SETTINGS.items():
        bm = B.benchmark_practices(cube, **kw)
        f = bm.flags
        allr = f[(f["measure"] == "referrals") & (f["specialty_code"] == B.ALL) & f["practice_code"].isin(planted)]
        cells = f[(f["specialty_code"] != B.ALL) & ~f["practice_code"].isin(planted)]
        rows.append({"seed": seed, "setting": name,
                     "planted_years": len(allr), "planted_flagged": int(allr["possible_under_referrer"].sum()),
                     "planted_latest": int(allr.loc[allr["period"] == bm.latest_period, "possible_under_referrer"].sum()),
                     "planted_n": len(planted),
                     "cells": len(cells), "under": int(cells["possible_under_referrer"].sum()),
                     "high": int(cells["high_referrer"].sum())})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--practices", type=int, default=60)
    args = ap.parse_args(argv)
    import tempfile

    t0 = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in tqdm(range(args.first_seed, args.first_seed + args.seeds), desc="seeds", unit="PCT"):
            rows += one_seed(seed, args.practices, Path(tmp))
    df = pd.DataFrame(rows)
    summary = df.groupby("setting", sort=False).sum(numeric_only=True)
    print(f"{args.seeds} synthetic PCTs of {args.practices} practices, seeds {args.first_seed}.."
          f"{args.first_seed + args.seeds - 1}, {time.perf_counter() - t0:.0f} s")
    for name, s in summary.iterrows():
        lo_u, hi_u = stats.binomtest(int(s["under"]), int(s["cells"])).proportion_ci()
        lo_h, hi_h = stats.binomtest(int(s["high"]), int(s["cells"])).proportion_ci()
        print(f"\n{name}")
        print(f"  planted under-referrers flagged: {s['planted_flagged'] / s['planted_years']:.1%} of practice-years, "
              f"{s['planted_latest'] / s['planted_n']:.1%} in the latest year")
        print(f"  other practices below the 95% limit:  {s['under'] / s['cells']:.2%} "
              f"(95% CI {lo_u:.2%} to {hi_u:.2%}; nominal 2.5%)")
        print(f"  other practices above the 99.8% limit: {s['high'] / s['cells']:.3%} "
              f"(95% CI {lo_h:.3%} to {hi_h:.3%}; nominal 0.1%)  [{int(s['cells']):,d} cells]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
