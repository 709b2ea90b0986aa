"""Data for evaluating referral reductions: practice-month panels, PCT series and the planted truth.

The estimators live in :mod:`pbc_analysis.its` (segmented regression) and :mod:`pbc_analysis.did`
(staggered difference-in-differences); this module turns validated inputs into what they take:

- :func:`practice_month_panel`: one row per practice, month and specialty (and ``all``): events
  (GP referrals or activity at a point of delivery), the registered list that month, the rate per
  1,000 patients per year, and the practice's engagement cohort as a month index (``cohort``: the
  1-based index of its first engaged month in the window, 0 = never engaged within the window),
  the convention of R's ``did`` package (``gname``);
- :func:`pct_series`: monthly totals of events and list for the PCT, or for engaged and
  never-engaged practices separately (a controlled ITS);
- :func:`planted_truth`: the synthetic PCT's planted effects (``ground_truth.json``) as tidy tables, so
  that notebooks and tests can set estimates beside the truth.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from . import benchmark as _bm
from . import data as _data

__all__ = ["month_index", "pct_series", "planted_truth", "practice_month_panel"]


def month_index(months: Sequence[str] | pd.Series, first: str) -> np.ndarray:
    """1-based month number of ``YYYY-MM`` strings counted from ``first`` (``first`` is 1)."""
    y0, m0 = int(first[:4]), int(first[5:7])
    s = pd.Series(months, dtype="str")
    return ((s.str.slice(0, 4).astype(int) - y0) * 12 + s.str.slice(5, 7).astype(int) - m0 + 1).to_numpy()


def practice_month_panel(inputs: _data.Inputs, measure: str = "referrals", specialties: Sequence[str] | None = None,
                         cube: _bm.Cube | None = None, include_all: bool = True) -> pd.DataFrame:
    """A balanced practice x month panel of ``measure`` per specialty (and all specialties).

    Columns: ``practice_code``, ``consortium``, ``specialty_code``, ``month`` (``YYYY-MM``), ``t``
    (1..M), ``cohort`` (``t`` of the practice's first engaged month, 0 = never engaged in the window),
    ``engaged_from``, ``events``, ``registered`` (list at the start of the month), ``rate`` (events per
    1,000 registered patients per year: ``12000 x events / registered``) and ``post`` (1 from the
    engagement month on). ``specialties`` restricts the specialties (None = all of the measure).
    """
    cube = cube if cube is not None else _bm.build_cube(inputs)
    sub = _bm.select_measures(cube, [measure])
    spec = sub.series["specialty_code"].to_numpy()
    keep = np.ones(len(spec), bool) if not specialties else np.isin(spec, list(specialties))
    if specialties:
        unknown = sorted(set(specialties) - set(spec))
        if unknown:
            raise ValueError(f"specialties {unknown} have no {measure} in the data; they are {sorted(set(spec))}")
    counts = sub.counts[:, keep, :]  # (P, K, M)
    spec = spec[keep]
    if include_all:
        counts = np.concatenate([counts, counts.sum(axis=1, keepdims=True)], axis=1)
        spec = np.append(spec, _bm.ALL)
    P, K, M = counts.shape
    reg = cube.registered.sum(axis=2)  # (P, M)
    eng = inputs.engagement.set_index("practice_code")["engaged_from"].reindex(cube.practices)
    first = cube.months[0]
    has = eng.notna().to_numpy()
    cohort = np.zeros(P, dtype=np.int64)
    cohort[has] = month_index(eng[has].astype(str).to_numpy(), first)
    t = np.arange(1, M + 1)
    cons = cube.practice_info.set_index("practice_code")["consortium"].reindex(cube.practices).to_numpy()
    out = pd.DataFrame({
        "practice_code": np.repeat(cube.practices.to_numpy(), K * M),
        "consortium": np.repeat(cons, K * M),
        "specialty_code": np.tile(np.repeat(spec, M), P),
        "month": np.tile(np.array(cube.months), P * K),
        "t": np.tile(t, P * K),
        "cohort": np.repeat(cohort, K * M),
        "engaged_from": np.repeat(eng.fillna("").astype(str).to_numpy(), K * M),
        "events": counts.reshape(-1),
        "registered": np.repeat(reg[:, None, :], K, axis=1).reshape(-1),
    })
    out["rate"] = 12000.0 * out["events"] / out["registered"]
    out["post"] = ((out["cohort"] > 0) & (out["t"] >= out["cohort"])).astype(int)
    for c in ("practice_code", "consortium", "specialty_code", "month", "engaged_from"):
        out[c] = out[c].astype("str")
    return out


def pct_series(panel: pd.DataFrame, specialty_code: str = _bm.ALL, by_engagement: bool = False) -> pd.DataFrame:
    """Monthly totals of ``events`` and ``registered`` for one specialty (``all`` by default), for the
    whole PCT or (``by_engagement``) for ever-engaged and never-engaged practices (``group`` column
    ``engaged`` / ``never``), with ``rate`` per 1,000 per year, ``t``, ``calendar_month`` (1-12)."""
    p = panel[panel["specialty_code"] == specialty_code]
    if p.empty:
        raise ValueError(f"specialty {specialty_code!r} not in the panel")
    keys = ["month", "t"]
    if by_engagement:
        p = p.assign(group=np.where(p["cohort"] > 0, "engaged", "never"))
        keys = ["group"] + keys
    out = p.groupby(keys, as_index=False, sort=True)[["events", "registered"]].sum()
    out["rate"] = 12000.0 * out["events"] / out["registered"]
    out["calendar_month"] = out["month"].str.slice(5, 7).astype(int)
    return out


def planted_truth(truth: dict) -> dict[str, pd.DataFrame]:
    """The synthetic PCT's planted engagement effects as tables.

    ``effects``: per specialty the planted proportional cut in GP referrals at full ramp (``delta``)
    and its log (``log_effect = log(1 - delta)``); ``cohorts``: cohort, start month, practices, effect
    scale; ``avoided``: per practice and financial year the true expected referrals and referrals
    avoided (from the expected values, no noise).
    """
    eng = truth["engagement"]
    eff = pd.DataFrame({"specialty_code": list(eng["effects_by_specialty"]),
                        "delta": list(eng["effects_by_specialty"].values())})
    eff["log_effect"] = np.log1p(-eff["delta"])
    coh = pd.DataFrame([{k: c[k] for k in ("cohort", "start_month", "effect_scale")} | {"n_practices": len(c["practices"])}
                        for c in eng["cohorts"]])
    py = pd.DataFrame(truth["practice_year"])[["practice_code", "financial_year", "expected_referrals", "referrals_avoided"]]
    return {"effects": eff, "cohorts": coh, "avoided": py, "ramp_months": pd.DataFrame({"ramp_months": [eng["ramp_months"]]})}


def its_frame(series: pd.DataFrame, interruption: str, end: str | None = None) -> pd.DataFrame:
    """Add ``post`` (1 from the ``interruption`` month on) to a :func:`pct_series` table, keeping months
    up to ``end`` (inclusive; e.g. the last complete month). Errors name the month when it is not in
    the series."""
    months = set(series["month"])
    for name, m in (("interruption", interruption), ("end", end)):
        if m is not None and m not in months:
            raise ValueError(f"{name} month {m!r} is not in the series ({min(months)} to {max(months)})")
    out = series[series["month"] <= end].copy() if end else series.copy()
    out["post"] = (out["month"] >= interruption).astype(int)
    if out["post"].nunique() < 2:
        raise ValueError(f"interruption {interruption!r} leaves no pre or no post months before {end!r}")
    return out.reset_index(drop=True)


def regression_to_the_mean(panel: pd.DataFrame, baseline: tuple[str, str], follow_up: tuple[str, str],
                           top_share: float = 0.2, never_engaged_only: bool = True,
                           specialty_code: str = "all") -> pd.DataFrame:
    """How far practices selected for being the highest referrers in a baseline window fall back in a
    later window with no intervention at all (Barnett, van der Pols and Dobson 2005, Int J Epidemiol
    34:215-220).

    Each practice's ratio is its rate over the PCT's rate in the window (for ``specialty_code``, among
    never-engaged practices when ``never_engaged_only``, so no practice is treated). Returns one row
    per group (``top`` = the top ``top_share`` by baseline ratio, ``rest``) with the number of
    practices and the mean ratio in each window: the top group's fall is regression to the mean.
    """
    if not 0 < top_share < 1:
        raise ValueError(f"top_share must be between 0 and 1, got {top_share!r}")
    p = panel[panel["specialty_code"] == specialty_code]
    if never_engaged_only:
        p = p[p["cohort"] == 0]
    rows = {}
    for name, (a, b) in (("baseline", baseline), ("follow_up", follow_up)):
        w = p[(p["month"] >= a) & (p["month"] <= b)]
        if w.empty:
            raise ValueError(f"{name} window {a} to {b} has no months in the panel")
        g = w.groupby("practice_code")[["events", "registered"]].sum()
        rows[name] = (g["events"] / g["registered"]) / (g["events"].sum() / g["registered"].sum())
    df = pd.DataFrame(rows)
    n_top = max(1, int(round(top_share * len(df))))
    top = df["baseline"].rank(ascending=False, method="first") <= n_top
    df["group"] = np.where(top, "top", "rest")
    out = df.groupby("group", sort=False).agg(practices=("baseline", "size"), baseline_ratio=("baseline", "mean"),
                                              follow_up_ratio=("follow_up", "mean")).reset_index()
    out["change"] = out["follow_up_ratio"] - out["baseline_ratio"]
    return out.sort_values("group", key=lambda s: s.map({"top": 0, "rest": 1}), ignore_index=True)
