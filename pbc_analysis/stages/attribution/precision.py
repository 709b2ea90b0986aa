"""How precise can the practice-action saving be? Its standard error against the precision floor.

:func:`pbc_analysis.stages.attribution.causal.practice_action` gives every aggregate the standard error its
interval uses and ``std_error_floor``, the standard error it would have if every practice's own level were known
(the Cramer-Rao bound of the model with practice levels known, :mod:`.causal`). :func:`precision` sets the two
side by side as shares of the estimate, and :func:`chance_within` says how often an unbiased estimate with a
given standard error lands within a tolerance of the truth.

References
----------
Casella G, Berger RL (2002), *Statistical Inference*, 2nd ed., 10.1 (asymptotic normality); Borusyak K, Jaravel X,
Spiess J (2024), Rev Econ Stud 91:3253-3285 (imputation and its efficiency).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from pbc_analysis.core.checks import check_number
from pbc_analysis.stages.attribution.common import _check_columns
from pbc_analysis.stages.attribution.params import DEFAULTS

__all__ = ["chance_within", "precision"]


def chance_within(relative_se: np.ndarray | pd.Series | float, tolerance: float = 0.10) -> np.ndarray:
    """The probability that an unbiased, normally distributed estimate lands within ``tolerance`` of the truth.

    Parameters
    ----------
    relative_se : array-like or float
        Its standard error as a share of the true value.
    tolerance : float
        The tolerance, as a share of the true value.

    Returns
    -------
    numpy.ndarray
        ``2 Phi(tolerance / relative_se) - 1`` (NaN where ``relative_se`` is).

    References
    ----------
    The normal distribution of an asymptotically normal estimator (e.g. Casella G, Berger RL (2002),
    *Statistical Inference*, 2nd ed., 10.1).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return 2 * stats.norm.cdf(tolerance / np.asarray(relative_se, dtype=float)) - 1


def precision(aggregates: pd.DataFrame, tolerance: float = 0.10, target: str = "pct",
              confidence: float = DEFAULTS["confidence"]) -> pd.DataFrame:
    """How precise the practice-action saving of ``target`` is, and how precise it could be, per year.

    From :func:`pbc_analysis.stages.attribution.causal.practice_action` ``aggregates``: ``savings``, the ``std_error`` used for the interval,
    ``std_error_floor`` (the smallest standard error any unbiased estimator that lets the effect differ by
    month can have with these data: practice levels known, see :mod:`.causal`) and its two parts
    (``own_noise``: the engaged practices' own chance; ``controls``: the chance in the untreated
    referrals that give each month's counterfactual), each also as a share of the estimate; the
    half-width of the ``confidence`` interval at the floor as a share of the estimate; and
    ``chance_within_tolerance_at_floor``: the probability that an unbiased, normally distributed estimate
    with the floor's standard error lands within ``tolerance`` (a share) of a true saving of the
    estimate's size (:func:`chance_within`). When that probability is far from 1,
    no method can promise the tolerance: the data (the number of untreated practice-months) limit it.

    Parameters
    ----------
    aggregates : pandas.DataFrame
        :func:`pbc_analysis.stages.attribution.causal.practice_action` ``aggregates``.
    tolerance : float
        The share of the saving an estimate should land within.
    target : str
        The aggregate target (``pct``, ``consortium:<name>``, a dispute target).
    confidence : float
        Level of the interval whose half-width is given.

    Returns
    -------
    pandas.DataFrame
        One row per year of ``target``.

    References
    ----------
    The Cramer-Rao bound of the model with practice levels known: see :mod:`.causal`.
    """
    _check_columns(aggregates, ["target", "financial_year", "savings", "std_error", "std_error_floor",
                                "std_error_own_noise"], "aggregates")
    tolerance = check_number("tolerance", tolerance, 0, 1, low_open=True, high_open=True, fix="use e.g. 0.10 for within 10%")
    confidence = check_number("confidence", confidence, 0, 1, low_open=True, high_open=True,
                              fix="use e.g. 0.95 for 95% intervals")
    a = aggregates[aggregates["target"] == target]
    if not len(a):
        raise ValueError(f"aggregates has no rows for target {target!r}; targets: "
                         f"{', '.join(map(str, aggregates['target'].unique()))}")
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    est = a["savings"].to_numpy(float)
    size = np.where(np.abs(est) > 0, np.abs(est), np.nan)
    floor = a["std_error_floor"].to_numpy(float)
    own = a["std_error_own_noise"].to_numpy(float)
    controls = np.sqrt(np.maximum(floor ** 2 - own ** 2, 0.0))
    return pd.DataFrame({
        "target": a["target"].to_numpy(), "financial_year": a["financial_year"].to_numpy(), "savings": est,
        "std_error": a["std_error"].to_numpy(float), "std_error_floor": floor,
        "std_error_own_noise": own, "std_error_controls": controls,
        "relative_std_error": a["std_error"].to_numpy(float) / size, "relative_floor": floor / size,
        "relative_own_noise": own / size, "relative_controls": controls / size,
        "floor_half_width": z * floor / size, "tolerance": tolerance,
        "chance_within_tolerance_at_floor": chance_within(floor / size, tolerance)})

