"""Need-adjusted ratios for any table of units with a count, a population and a deprivation score.

:func:`deprivation_adjusted_ratios` is benchmarking's deprivation adjustment and funnel for a table that is not
a PCT's inputs (e.g. England's practices in an open-data extract): a Poisson regression of the count on the
standardised score with log population as offset gives each unit's expected count, then the ratio O/E with
exact/Byar limits and its funnel position.

References
----------
McCullagh P, Nelder JA (1989), Generalized Linear Models, s. 2.5 (the Poisson regression).
Spiegelhalter DJ (2005), Stat Med 24:1185-1202 (the funnel).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from pbc_analysis.stages.benchmark.cube import ALL, BenchmarkError
from pbc_analysis.stages.benchmark.expected import poisson_offset_fit, standardised_ratios
from pbc_analysis.stages.benchmark.funnels import funnel_table

__all__ = ["deprivation_adjusted_ratios"]


def deprivation_adjusted_ratios(df: pd.DataFrame, unit: str, observed: str, population: str, score: str,
                                confidence: Sequence[float] = (0.95, 0.998), overdispersion: str = "auto",
                                sr_method: str = "CQC", trim_by: float = 0.1, consistency: bool = True) -> tuple[pd.DataFrame, dict]:
    """Need-adjusted ratios for any table of units with a count, a population and a deprivation score.

    ``E_i = n_i exp(alpha + beta z_i)`` from the Poisson regression ``O_i ~ Poisson(n_i exp(alpha + beta
    z_i))`` (z the score standardised over the units used; :func:`poisson_offset_fit`), so that sum E =
    sum O; then the ratio O/E with exact/Byar limits and its funnel position as
    :func:`funnel_table`. Units with a missing or negative count, a missing or zero population or a
    missing score keep their row with ``excluded`` saying why (nothing is dropped silently). Returns
    ``(table, fit)`` where ``fit`` has ``alpha``, ``beta`` (per SD of score), ``score_mean``,
    ``score_sd``, ``n_used``, ``n_excluded`` and the funnel's dispersion summary.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per unit.
    unit, observed, population, score : str
        Columns: the unit's code, its count, its population and its deprivation score.
    confidence : sequence of float
        Levels of the ratios' intervals.
    overdispersion, sr_method, trim_by, consistency
        The funnel's settings, as :func:`~pbc_analysis.stages.benchmark.funnels.funnel_table`.

    Returns
    -------
    table : pandas.DataFrame
        Every row of ``df``, in order.
    fit : dict

    References
    ----------
    McCullagh and Nelder (1989); Spiegelhalter (2005).
    """
    need = [unit, observed, population, score]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise BenchmarkError(f"columns {missing} not in the table; it has {list(df.columns)}")
    out = df[need].copy().reset_index(drop=True)
    o = pd.to_numeric(out[observed], errors="raise").to_numpy(float)
    n = pd.to_numeric(out[population], errors="raise").to_numpy(float)
    x = pd.to_numeric(out[score], errors="raise").to_numpy(float)
    reason = np.select([np.isnan(o), o < 0, np.isnan(n), n <= 0, np.isnan(x)],
                       [f"{observed} missing", f"{observed} negative", f"{population} missing", f"{population} not positive",
                        f"{score} missing"], default="")
    ok = reason == ""
    if ok.sum() < 3:
        raise BenchmarkError(f"fewer than 3 units with {observed}, {population} and {score} all present")
    mean, sd = float(x[ok].mean()), float(x[ok].std())
    z = (x - mean) / (sd if sd > 0 else 1.0)
    a, b = poisson_offset_fit(o[ok][None, :], np.log(n[ok])[None, :], z[ok][None, :])
    e = np.where(ok, n * np.exp(a[0] + b[0] * np.where(ok, z, 0.0)), np.nan)
    out["expected"] = e
    out["excluded"] = reason
    frame = pd.DataFrame({"period": "all", "practice_code": out[unit].astype(str), "measure": observed,
                          "specialty_code": ALL, "observed": np.where(ok, o, np.nan), "expected": np.where(ok, e, 0.0),
                          "person_years": np.where(ok, n, np.nan)})
    sr = standardised_ratios(frame, confidence=confidence)
    fu = funnel_table(sr[ok].reset_index(drop=True), overdispersion=overdispersion, sr_method=sr_method,
                      trim_by=trim_by, consistency=consistency)
    keep = [c for c in fu.units.columns if c.startswith(("ratio", "lower_", "upper_", "limit_")) or c in ("z", "position")]
    res = pd.DataFrame(np.nan, index=out.index, columns=[c for c in keep if c != "position"])
    res.loc[ok, res.columns] = fu.units[res.columns].to_numpy()
    out = pd.concat([out, res], axis=1)
    out["position"] = ""
    out.loc[ok, "position"] = fu.units["position"].to_numpy()
    disp = fu.dispersion.iloc[0].to_dict()
    fit = {"alpha": float(a[0]), "beta": float(b[0]), "score_mean": mean, "score_sd": sd, "n_used": int(ok.sum()),
           "n_excluded": int((~ok).sum()), **{k: disp[k] for k in ("phi", "tau2", "dispersion_p", "overdispersion_used")}}
    return out, fit
