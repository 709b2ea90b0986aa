"""Time Callaway-Sant'Anna estimation at national scale (``pbc_analysis.methods.did``), optionally against ``differences``.

    .venv/bin/python scripts/benchmark_did.py [--units 6500] [--periods 60] [--repeat 3] [--seed 1]

Builds a balanced panel of 6,500 units (about the number of GP practices in England) x 60 periods with
three adoption cohorts (periods 20, 30 and 40, a quarter of the units each) and never-treated units,
then times ``att_gt`` (never-treated comparisons, analytic standard errors) plus the simple, group,
dynamic and calendar aggregations (target: under 2 s together). The best of ``--repeat`` runs is
reported.

Comparison with the ``differences`` package (Python port of R's ``did``), which the project does not
depend on: install it into a throwaway environment and run this script with that interpreter (the
script puts the project on ``sys.path``; ``differences`` brings numpy, pandas and scipy)::

    python3 -m venv /tmp/didbench && /tmp/didbench/bin/pip install differences
    /tmp/didbench/bin/python scripts/benchmark_did.py

or keep the project's interpreter and point ``--differences-python`` at the other one, which then times
``differences.ATTgt(...).fit()`` on the same data in a subprocess::

    .venv/bin/python scripts/benchmark_did.py --differences-python /tmp/didbench/bin/python

``differences`` is timed for ``ATTgt(data, cohort_column).fit("y")`` alone (no aggregations), so the
printed ratio (differences / pbc_analysis.methods.did) understates its full cost.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pbc_analysis.methods import did  # noqa: E402

COHORTS = (20, 30, 40)


def make_panel(units: int = 6500, periods: int = 60, seed: int = 1) -> pd.DataFrame:
    """Balanced panel ``unit, period, cohort, y`` (cohort 0 = never treated) with unit and period effects,
    noise and an effect growing with time since adoption."""
    rng = np.random.default_rng(seed)
    cohort = rng.choice(np.array((0,) + COHORTS), size=units)
    unit = np.repeat(np.arange(1, units + 1), periods)
    period = np.tile(np.arange(1, periods + 1), units)
    g = np.repeat(cohort, periods)
    e = period - g
    effect = np.where((g > 0) & (e >= 0), -0.05 - 0.002 * e, 0.0)
    y = (np.repeat(rng.normal(0, 1, units), periods) + 0.01 * period + np.sin(period / 6)
         + effect + rng.normal(0, 0.2, units * periods))
    return pd.DataFrame({"unit": unit, "period": period, "cohort": g, "y": y})


def time_ours(data: pd.DataFrame, repeat: int) -> dict:
    best_total = best_attgt = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = did.att_gt(data, "y", "unit", "period", "cohort")
        t1 = time.perf_counter()
        aggs = {k: did.aggregate(res, k) for k in ("simple", "group", "dynamic", "calendar")}
        t2 = time.perf_counter()
        best_attgt, best_total = min(best_attgt, t1 - t0), min(best_total, t2 - t0)
    simple = aggs["simple"].overall
    return {"attgt": best_attgt, "total": best_total, "cells": len(res), "simple": float(simple["estimate"]),
            "simple_se": float(simple["std_error"])}


def time_differences(data: pd.DataFrame, repeat: int) -> dict:
    from differences import ATTgt  # noqa: PLC0415 (optional dependency)

    panel = data.assign(cohort=data["cohort"].where(data["cohort"] > 0)).set_index(["unit", "period"])
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            att = ATTgt(data=panel, cohort_column="cohort")
            att.fit("y", control_group="never_treated", progress_bar=False)
        best = min(best, time.perf_counter() - t0)
    simple = att.aggregate("simple")
    return {"fit": best, "simple": float(simple.iloc[0, 0]), "simple_se": float(simple.iloc[0, 1])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=6500)
    ap.add_argument("--periods", type=int, default=60)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--differences-python", help="interpreter with `differences` installed")
    ap.add_argument("--differences-only", help=argparse.SUPPRESS)  # internal: time differences on a file
    args = ap.parse_args(argv)

    if args.differences_only:
        with np.load(args.differences_only) as z:
            frame = pd.DataFrame({k: z[k] for k in ("unit", "period", "cohort", "y")})
        print(json.dumps(time_differences(frame, args.repeat)))
        return 0

    data = make_panel(args.units, args.periods, args.seed)
    print(f"panel: {args.units:,} units x {args.periods} periods = {len(data):,} rows; cohorts {COHORTS} "
          f"and never treated")
    ours = time_ours(data, args.repeat)
    print(f"pbc_analysis.methods.did  att_gt ({ours['cells']} ATT(g,t) cells): {ours['attgt']:.3f} s; "
          f"+ simple/group/dynamic/calendar aggregations: {ours['total']:.3f} s "
          f"(target < 2 s: {'met' if ours['total'] < 2 else 'NOT met'})")

    theirs = None
    try:
        import differences  # noqa: F401, PLC0415

        theirs = time_differences(data, args.repeat)
    except ImportError:
        if args.differences_python:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "panel.npz"
                np.savez(path, **{k: data[k].to_numpy() for k in data.columns})
                out = subprocess.run([args.differences_python, __file__, "--differences-only", str(path),
                                      "--repeat", str(args.repeat)], capture_output=True, text=True,
                                     check=True)
                theirs = json.loads(out.stdout.strip().splitlines()[-1])
    if theirs is None:
        print("differences: not installed here (see the module docstring to time it)")
        return 0
    print(f"differences       ATTgt(...).fit(): {theirs['fit']:.3f} s")
    print(f"ratio differences fit / pbc_analysis.methods.did (att_gt + 4 aggregations): "
          f"{theirs['fit'] / ours['total']:.1f}x")
    print(f"simple ATT (analytic SE): pbc_analysis.methods.did {ours['simple']:.6f} ({ours['simple_se']:.6f}), "
          f"differences {theirs['simple']:.6f} ({theirs['simple_se']:.6f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
