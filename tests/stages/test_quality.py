"""Data-quality measures (pbc_analysis.stages.quality) on hand-built series with known truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pbc_analysis.stages import quality


def seasonal_series(rng, months=60, level=20000.0, lag=(1.0, 1.0, 1.0), pod="first_op"):
    idx = pd.period_range("2003-04", periods=months, freq="M")
    season = np.where(idx.month == 8, 0.9, np.where(idx.month == 12, 0.92, 1.0))
    mu = level * season * (1.01 ** (np.arange(months) / 12))
    mu[-3:] *= np.asarray(lag)
    return pd.DataFrame({"pod": pod, "month": idx.strftime("%Y-%m"), "activity": rng.poisson(mu)}), mu


def test_financial_year():
    s = pd.Series(["2005-03", "2005-04", "2006-01", "1999-12"])
    assert quality.financial_year(s).tolist() == ["2004/05", "2005/06", "2005/06", "1999/00"]


def test_completeness_recovers_planted_lag_and_flags_it():
    rng = np.random.default_rng(7)
    lagged, _ = seasonal_series(rng, lag=(0.97, 0.85, 0.55))
    clean, _ = seasonal_series(rng, pod="gp_referral")
    comp = quality.completeness(pd.concat([lagged, clean]), recent_months=6, threshold=0.95)
    lag = comp[comp["pod"] == "first_op"].set_index("month")["completeness"]
    truth = [1, 1, 1, 0.97, 0.85, 0.55]
    assert np.allclose(lag.to_numpy(), truth, atol=0.03)
    rows = comp[comp["pod"] == "first_op"]
    assert rows["incomplete"].tolist() == [False, False, False, False, True, True]
    assert not comp[comp["pod"] == "gp_referral"]["incomplete"].any()
    latest = quality.latest_complete_month(comp)
    got = latest.set_index("pod")
    assert got.loc["first_op", "incomplete_trailing_months"] == 2
    assert got.loc["first_op", "latest_complete_month"] == "2008-01"
    assert got.loc["gp_referral", "incomplete_trailing_months"] == 0
    text = quality.describe_completeness(latest, comp)
    assert "first_op (last complete month 2008-01" in text and "data lag" in text


def test_completeness_intervals_cover_at_about_the_nominal_rate():
    rng = np.random.default_rng(11)
    truth = np.array([1, 1, 1, 0.97, 0.85, 0.55])
    frames = []
    for i in range(200):
        df, _ = seasonal_series(rng, level=2000.0, lag=tuple(truth[-3:]))
        frames.append(df.assign(pod=f"s{i:03d}"))
    comp = quality.completeness(pd.concat(frames), recent_months=6, level=0.95)
    covered = (comp["ci_low"].to_numpy() <= np.tile(truth, 200)) & (comp["ci_high"].to_numpy() >= np.tile(truth, 200))
    assert 0.92 <= covered.mean() <= 0.98


def test_completeness_needs_two_years_of_history():
    rng = np.random.default_rng(1)
    short, _ = seasonal_series(rng, months=20)
    with pytest.raises(ValueError, match="at least 24 months"):
        quality.completeness(short, recent_months=6)


# a perfectly flat series is fitted exactly, which statsmodels reports as perfect prediction
@pytest.mark.filterwarnings("ignore::statsmodels.tools.sm_exceptions.PerfectSeparationWarning")
def test_completeness_hand_computed_on_a_flat_series():
    # A perfectly flat series: the model predicts the level exactly, the ratio is obs/level.
    months = pd.period_range("2001-01", periods=40, freq="M").strftime("%Y-%m")
    y = np.full(40, 1000)
    y[-1] = 500
    comp = quality.completeness(pd.DataFrame({"pod": "x", "month": months, "activity": y}), recent_months=2)
    assert comp["expected"].to_numpy() == pytest.approx([1000, 1000], rel=1e-6)
    assert comp["completeness"].to_numpy() == pytest.approx([1.0, 0.5], rel=1e-6)
