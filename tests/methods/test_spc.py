"""Statistical process control (pbc_analysis.methods.spc): XmR, u and p charts with Making Data Count rules.

Hand-computed cases need nothing outside the repository; the reference tests reproduce NHSRplotthedots
v0.2.2 (MIT) test vectors from ``../shared/reference/spc_nhsrplotthedots`` and skip when it is absent.
"""

from __future__ import annotations

import io
import json
import time as _time

import matplotlib
import numpy as np
import pandas as pd
import pytest

from pbc_analysis.core import paths
from pbc_analysis.methods import spc
from pbc_analysis.publish import figures

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

SPC_REF = paths.REFERENCE_DIR / "spc_nhsrplotthedots"

# A baseline that alternates 2, 0: mean 1, every moving range 2, so AMR = 2, process limits
# 1 +/- 2.66 * 2 = [-4.32, 6.32] and two-sigma lines 1 +/- 2 * (2.66 / 3) * 2 = [-2.5467, 4.5467].
BASE = [2.0, 0.0] * 4


def months(n: int, start: str = "2020-01") -> list[str]:
    return list(pd.period_range(start, periods=n, freq="M").strftime("%Y-%m"))


def frame(y, start: str = "2020-01") -> pd.DataFrame:
    return pd.DataFrame({"month": months(len(y), start), "y": np.asarray(y, dtype=float)})


@pytest.fixture(scope="module")
def spc_ref():
    if not SPC_REF.is_dir():
        pytest.skip(f"NHSRplotthedots reference vectors not found at {SPC_REF} "
                    "(clone the project beside ../shared to run the reference tests)")
    return SPC_REF


# ----------------------------------------------------------------------------------------------------------
# Limits by hand
# ----------------------------------------------------------------------------------------------------------

def test_ten_point_series_limits_by_hand():
    """y = 5 7 6 8 7 9 6 7 8 7: mean 70/10 = 7; moving ranges 2 1 2 1 2 3 1 1 1, AMR 14/9 = 1.5556;
    limits 7 +/- 2.66 * 14/9 = [2.8622, 11.1378]; two-sigma 7 +/- 1.7733 * 14/9 = [4.2415, 9.7585]."""
    r = spc.xmr(frame([5, 7, 6, 8, 7, 9, 6, 7, 8, 7]), "y", "month")
    amr = 14 / 9
    assert r["mean"].tolist() == pytest.approx([7.0] * 10, abs=1e-12)
    assert r["average_moving_range"].iloc[0] == pytest.approx(amr, abs=1e-12)
    assert r["upl"].iloc[0] == pytest.approx(11.137777777777778, abs=1e-12)
    assert r["lpl"].iloc[0] == pytest.approx(2.8622222222222224, abs=1e-12)
    assert r["upper_2sigma"].iloc[0] == pytest.approx(7 + 2 * 2.66 / 3 * amr, abs=1e-12)
    assert r["upper_2sigma"].iloc[0] == pytest.approx(9.758518518518519, abs=1e-12)
    assert r["lower_2sigma"].iloc[0] == pytest.approx(4.241481481481481, abs=1e-12)
    assert r["sigma"].iloc[0] == pytest.approx(amr * 2.66 / 3, abs=1e-12)
    assert np.isnan(r["moving_range"].iloc[0]) and r["moving_range"].iloc[1:].tolist() == [2, 1, 2, 1, 2, 3, 1, 1, 1]
    assert r["relative_to_mean"].tolist() == [-1, 0, -1, 1, 0, 1, -1, 0, 1, 0]
    assert not r["special_cause_flag"].any()
    assert set(r["point_type"]) == {"common_cause"} and set(r["special_cause"]) == {"none"}
    assert set(r["special_cause_type"]) == {"Common Cause"}
    assert set(r["variation_icon"]) == {"common cause"}
    assert r["assurance_icon"].isna().all() and r["target"].isna().all()
    # nothing reaches 3.267 x AMR = 5.08, so screening changes nothing
    pd.testing.assert_frame_equal(r, spc.xmr(frame([5, 7, 6, 8, 7, 9, 6, 7, 8, 7]), "y", "month",
                                             screen_outliers=True), check_like=True, check_exact=False)


def test_moving_range_screening_by_hand():
    """y = 10 11 10 11 10 11 10 40 10 11: MRs 1 x 6, 30, 30, 1, AMR 67/9 = 7.444; 3.267 x AMR = 24.3 screens both
    30s, leaving AMR 1; mean 134/10 = 13.4, limits 13.4 +/- 2.66."""
    y = [10, 11, 10, 11, 10, 11, 10, 40, 10, 11]
    raw = spc.xmr(frame(y), "y", "month")
    assert raw["average_moving_range"].iloc[0] == pytest.approx(67 / 9, abs=1e-12)
    assert raw["upl"].iloc[0] == pytest.approx(13.4 + 2.66 * 67 / 9, abs=1e-12)
    scr = spc.xmr(frame(y), "y", "month", screen_outliers=True)
    assert scr["average_moving_range"].iloc[0] == pytest.approx(1.0, abs=1e-12)
    assert scr["mean"].iloc[0] == pytest.approx(13.4, abs=1e-12)
    assert scr["lpl"].iloc[0] == pytest.approx(10.74, abs=1e-12)
    assert scr["upl"].iloc[0] == pytest.approx(16.06, abs=1e-12)
    assert scr["outside_limits"].tolist() == [True, False, True, False, True, False, True, True, True, False]
    assert scr.loc[7, "special_cause_type"] == "Above UCL" and scr.loc[7, "point_type"] == "special_cause_improvement"
    assert scr.loc[0, "special_cause_type"] == "Below LCL" and scr.loc[0, "point_type"] == "special_cause_concern"


def test_fixed_baseline_by_points_and_by_window():
    """Baseline of 8 points (2 0 2 0 ...): mean 1, AMR 2, limits [-4.32, 6.32], whatever follows."""
    y = BASE + [3.0, 5.0, 4.0, 6.0]
    r = spc.xmr(frame(y), "y", "month", baseline=8)
    assert r["baseline"].tolist() == [True] * 8 + [False] * 4
    assert r["mean"].iloc[-1] == pytest.approx(1.0) and r["lpl"].iloc[-1] == pytest.approx(-4.32)
    assert r["upl"].iloc[-1] == pytest.approx(6.32)
    w = spc.xmr(frame(y), "y", "month", baseline=("2020-01", "2020-08"))
    pd.testing.assert_frame_equal(r, w)


# ----------------------------------------------------------------------------------------------------------
# Rules by hand
# ----------------------------------------------------------------------------------------------------------

RUN7 = [1.5, 1.6, 1.4, 1.5, 1.6, 1.4, 1.5]  # above the mean of 1, zig-zag, well inside the two-sigma lines


def test_run_of_seven_above_the_mean():
    r = spc.xmr(frame(BASE + RUN7 + [0.5]), "y", "month", baseline=8)
    expected = [False] * 8 + [True] * 7 + [False]
    assert r["run"].tolist() == expected
    assert r["special_cause_flag"].tolist() == expected
    assert (r.loc[8:14, "special_cause_type"] == "7 Points Above CL").all()
    assert (r.loc[8:14, "point_type"] == "special_cause_improvement").all()
    assert not r["trend"].any() and not r["two_in_three"].any() and not r["outside_limits"].any()


def test_run_of_six_needs_run_length_six():
    y = BASE + RUN7[:6] + [0.5]
    r7 = spc.xmr(frame(y), "y", "month", baseline=8)
    assert not r7["run"].any() and not r7["special_cause_flag"].any()
    r6 = spc.xmr(frame(y), "y", "month", baseline=8, run_length=6)
    assert r6["run"].tolist() == [False] * 8 + [True] * 6 + [False]
    assert (r6.loc[8:13, "special_cause_type"] == "6 Points Above CL").all()


def test_run_below_the_mean_is_concern_when_higher_is_better():
    y = BASE + [0.5, 0.4, 0.6, 0.5, 0.4, 0.6, 0.5]
    r = spc.xmr(frame(y), "y", "month", baseline=8)
    assert (r.loc[8:, "special_cause_type"] == "7 Points Below CL").all()
    assert (r.loc[8:, "special_cause"] == "concern").all()
    assert r["variation_icon"].iloc[-1] == "special cause concern low"


def test_rising_trend_crossing_the_mean():
    """Seven rising points, the first three below the mean: all are an increasing trend (NHSRplotthedots issue
    171), so all are improvement when higher is better and concern when lower is better."""
    trend = [-0.4, 0.1, 0.6, 1.1, 1.6, 2.1, 2.6]
    y = BASE + trend + [2.0]
    r = spc.xmr(frame(y), "y", "month", baseline=8)
    expected = [False] * 8 + [True] * 7 + [False]
    assert r["trend"].tolist() == expected
    assert (r.loc[8:14, "special_cause_type"] == "7 Point Trend (Increasing)").all()
    assert (r.loc[8:14, "point_type"] == "special_cause_improvement").all()
    assert r.loc[15, "point_type"] == "common_cause"
    d = spc.xmr(frame(y), "y", "month", baseline=8, improvement="decrease")
    assert (d.loc[8:14, "point_type"] == "special_cause_concern").all()
    falling = spc.xmr(frame(BASE + trend[::-1] + [0.0]), "y", "month", baseline=8)
    assert (falling.loc[8:14, "special_cause_type"] == "7 Point Trend (Decreasing)").all()
    assert (falling.loc[8:14, "point_type"] == "special_cause_concern").all()


def test_trend_length_six_and_ties_break_a_trend():
    y = BASE + [-0.4, 0.1, 0.6, 1.1, 1.6, 2.1, 1.0]
    assert not spc.xmr(frame(y), "y", "month", baseline=8)["trend"].any()
    r6 = spc.xmr(frame(y), "y", "month", baseline=8, trend_length=6)
    assert r6["trend"].tolist() == [False] * 8 + [True] * 6 + [False]
    assert (r6.loc[8:13, "special_cause_type"] == "6 Point Trend (Increasing)").all()
    tied = BASE + [-0.4, 0.1, 0.6, 0.6, 1.1, 1.6, 2.1, 1.0]
    assert not spc.xmr(frame(tied), "y", "month", baseline=8, trend_length=6)["trend"].any()


def test_two_of_three_beyond_two_sigma():
    """Two-sigma lines [-2.5467, 4.5467], limits [-4.32, 6.32]: 5, 4, 5 -> the two 5s are flagged; 5, -3, 5 has
    points beyond opposite two-sigma lines and is not."""
    r = spc.xmr(frame(BASE + [5.0, 4.0, 5.0, 1.2, 0.8]), "y", "month", baseline=8)
    assert r["close_to_limits"].tolist() == [False] * 8 + [True, False, True, False, False]
    assert r["two_in_three"].tolist() == [False] * 8 + [True, False, True, False, False]
    assert r.loc[8, "special_cause_type"] == "2 in 3 Above CL" and r.loc[9, "special_cause_type"] == "Common Cause"
    assert r.loc[10, "point_type"] == "special_cause_improvement"
    opp = spc.xmr(frame(BASE + [5.0, -3.0, 5.0, 1.2, 0.8]), "y", "month", baseline=8)
    assert opp["close_to_limits"].tolist() == [False] * 8 + [True, True, True, False, False]
    assert not opp["two_in_three"].any() and not opp["special_cause_flag"].any()
    low = spc.xmr(frame(BASE + [-3.0, -3.0, 1.2]), "y", "month", baseline=8)
    assert low.loc[8:9, "special_cause_type"].tolist() == ["2 in 3 Below CL"] * 2
    assert low.loc[8:9, "special_cause"].tolist() == ["concern"] * 2


def test_precedence_outside_limits_before_trend():
    """A point both outside the limits and ending a trend is typed 'Above UCL' (NHSRplotthedots 0.2.2 order)."""
    y = BASE + [-0.4, 0.1, 0.6, 1.1, 1.6, 2.1, 7.0]
    r = spc.xmr(frame(y), "y", "month", baseline=8)
    assert r["trend"].iloc[-1] and r["outside_limits"].iloc[-1]
    assert r["special_cause_type"].iloc[-1] == "Above UCL"
    assert (r.loc[8:13, "special_cause_type"] == "7 Point Trend (Increasing)").all()


def test_rule_helpers_respect_segments():
    seg = [0] * 4 + [1] * 4
    assert spc.run_flags([1] * 8, run_length=4, segment=seg).tolist() == [0, 0, 0, 1, 0, 0, 0, 1]
    assert spc.run_flags([1] * 8, run_length=5, segment=seg).tolist() == [0] * 8
    assert spc.trend_flags(range(8), trend_length=5, segment=seg).tolist() == [0] * 8
    assert spc.part_of([0, 0, 0, 1, 0, 0, 0, 0], length=4, segment=seg).tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    assert spc.two_in_three_flags([0, 0, 0, 1, 1, 0, 0, 0], [1] * 8, segment=seg).tolist() == [0] * 8
    with pytest.raises(ValueError, match="run_length must be an integer of at least 2"):
        spc.run_flags([1, 1], run_length=1)


# ----------------------------------------------------------------------------------------------------------
# Rebasing, direction, icons
# ----------------------------------------------------------------------------------------------------------

def test_rebase_at_a_change_point():
    """12 months alternating 10, 11 (mean 10.5, AMR 1) then 12 alternating 20, 22 (mean 21, AMR 2)."""
    y = [10.0, 11.0] * 6 + [20.0, 22.0] * 6
    r = spc.xmr(frame(y), "y", "month", rebase=["2021-01"])
    assert r["segment"].tolist() == [0] * 12 + [1] * 12
    assert r.loc[:11, "mean"].tolist() == pytest.approx([10.5] * 12)
    assert r.loc[:11, "upl"].tolist() == pytest.approx([10.5 + 2.66] * 12)
    assert r.loc[12:, "mean"].tolist() == pytest.approx([21.0] * 12)
    assert r.loc[12:, "lpl"].tolist() == pytest.approx([21 - 2.66 * 2] * 12)
    assert np.isnan(r.loc[12, "moving_range"])  # the 10-point jump is not a moving range of either segment
    assert not r["special_cause_flag"].any()
    assert set(r["variation_icon"]) == {"common cause"}
    flat = spc.xmr(frame(y), "y", "month")
    assert flat.loc[12:, "run"].all() and flat["variation_icon"].iloc[-1] == "special cause improvement high"
    # a change point between observed times starts the segment at the next time; baseline n applies per segment
    mid = spc.xmr(frame(y), "y", "month", rebase="2020-12-15", baseline=4)
    assert mid["segment"].tolist() == r["segment"].tolist()
    assert mid.loc[12:, "baseline"].tolist() == [True] * 4 + [False] * 8


def test_improvement_direction_flips_point_types_and_icons():
    high = BASE + [1.2, 0.8, 9.0]
    cases = {"increase": ("special_cause_improvement", "improvement", "special cause improvement high"),
             "decrease": ("special_cause_concern", "concern", "special cause concern high"),
             "neither": ("special_cause_neutral_high", "neither", "neither high")}
    for direction, (ptype, cause, icon) in cases.items():
        r = spc.xmr(frame(high), "y", "month", baseline=8, improvement=direction)
        assert r["point_type"].iloc[-1] == ptype
        assert r["special_cause"].iloc[-1] == cause
        assert (r["variation_icon"] == icon).all()
    low = spc.xmr(frame(BASE + [1.2, 0.8, -9.0]), "y", "month", baseline=8, improvement="decrease")
    assert low["point_type"].iloc[-1] == "special_cause_improvement"
    assert low["variation_icon"].iloc[-1] == "special cause improvement low"
    assert spc.xmr(frame(BASE + [1.2, 0.8, -9.0]), "y", "month", baseline=8,
                   improvement="neither")["variation_icon"].iloc[-1] == "neither low"
    # the variation icon is the last point's type: a special point earlier leaves it at common cause
    assert spc.xmr(frame(BASE + [9.0, 1.2, 0.8]), "y", "month", baseline=8)["variation_icon"].iloc[-1] == "common cause"


def test_assurance_icon_with_a_target():
    """Limits [-4.32, 6.32]: a target of 10 lies above them, -10 below, 3 inside."""
    df = frame(BASE + [1.2, 0.8])
    icon = lambda **kw: spc.xmr(df, "y", "month", baseline=8, **kw)["assurance_icon"].iloc[-1]  # noqa: E731
    assert icon(target=10, improvement="increase") == "consistently fail"
    assert icon(target=10, improvement="decrease") == "consistently pass"
    assert icon(target=-10, improvement="increase") == "consistently pass"
    assert icon(target=-10, improvement="decrease") == "consistently fail"
    assert icon(target=3, improvement="increase") == "inconsistent"
    assert icon(target=6.32 - 1e-9) == "inconsistent"
    assert pd.isna(icon(target=10, improvement="neither"))
    assert pd.isna(icon())
    r = spc.xmr(df, "y", "month", baseline=8, target=10)
    assert r["target"].tolist() == [10.0] * 10


def test_assurance_and_variation_icons_per_segment():
    y = [10.0, 11.0] * 6 + [20.0, 22.0] * 6
    r = spc.xmr(frame(y), "y", "month", rebase=["2021-01"], target=15)
    assert r.groupby("segment")["assurance_icon"].first().tolist() == ["consistently fail", "consistently pass"]


# ----------------------------------------------------------------------------------------------------------
# Attribute charts by hand
# ----------------------------------------------------------------------------------------------------------

def test_u_chart_limits_by_hand():
    """events 20 30 25 45 over exposure 1000 1500 1200 2000: ubar = 120/5700 = 0.0210526; at exposure 1000
    sigma = sqrt(ubar/1000) = 0.0045883, limits 0.0210526 +/- 0.0137649 = [0.0072877, 0.0348175]."""
    df = pd.DataFrame({"month": months(4), "ev": [20, 30, 25, 45], "pop": [1000, 1500, 1200, 2000]})
    r = spc.u_chart(df, "ev", "pop", "month")
    ubar = 120 / 5700
    n = np.array([1000, 1500, 1200, 2000])
    assert r["rate"].tolist() == pytest.approx([0.02, 0.02, 25 / 1200, 0.0225], abs=1e-15)
    assert r["mean"].tolist() == pytest.approx([ubar] * 4, abs=1e-15)
    assert r["upl"].to_numpy() == pytest.approx(ubar + 3 * np.sqrt(ubar / n), abs=1e-15)
    assert r["lpl"].to_numpy() == pytest.approx(ubar - 3 * np.sqrt(ubar / n), abs=1e-15)
    assert r["lpl"].iloc[0] == pytest.approx(0.0072877, abs=1e-7)
    assert r["upl"].iloc[0] == pytest.approx(0.0348175, abs=1e-7)
    assert r["upper_2sigma"].to_numpy() == pytest.approx(ubar + 2 * np.sqrt(ubar / n), abs=1e-15)
    per1000 = spc.u_chart(df, "ev", "pop", "month", multiplier=1000)
    assert per1000["upl"].to_numpy() == pytest.approx(1000 * (ubar + 3 * np.sqrt(ubar / n)), abs=1e-12)
    assert per1000["rate"].iloc[0] == pytest.approx(20.0)
    # small exposure: the lower limit is clipped at 0
    small = spc.u_chart(pd.DataFrame({"month": months(2), "ev": [2, 3], "pop": [100, 100]}), "ev", "pop", "month")
    assert small["lpl"].tolist() == [0.0, 0.0] and small["lower_2sigma"].tolist() == [0.0, 0.0]


def test_p_chart_limits_by_hand():
    """10/100, 30/200, 5/50: pbar = 45/350 = 0.1285714; at n = 100 sigma = sqrt(pbar(1-pbar)/100) = 0.0334725,
    limits [0.0281539, 0.2289889]; at n = 50 the lower limit 0.1285714 - 0.1420046 is clipped to 0."""
    df = pd.DataFrame({"month": months(3), "k": [10, 30, 5], "n": [100, 200, 50]})
    r = spc.p_chart(df, "k", "n", "month")
    pbar = 45 / 350
    n = np.array([100, 200, 50])
    sd = np.sqrt(pbar * (1 - pbar) / n)
    assert r["proportion"].tolist() == pytest.approx([0.1, 0.15, 0.1], abs=1e-15)
    assert r["mean"].tolist() == pytest.approx([pbar] * 3, abs=1e-15)
    assert r["upl"].to_numpy() == pytest.approx(pbar + 3 * sd, abs=1e-15)
    assert r["lpl"].to_numpy() == pytest.approx(np.maximum(pbar - 3 * sd, 0), abs=1e-15)
    assert r["lpl"].iloc[0] == pytest.approx(0.0281539, abs=1e-7)
    assert r["upl"].iloc[0] == pytest.approx(0.2289889, abs=1e-7)
    assert r["lpl"].iloc[2] == 0.0
    pct = spc.p_chart(df, "k", "n", "month", multiplier=100)
    assert pct["upl"].to_numpy() == pytest.approx(100 * (pbar + 3 * sd), abs=1e-12)
    # upper limit clipped at 1: pbar = 10/11, n = 1 gives pbar + 3 sigma = 1.77
    hi = spc.p_chart(pd.DataFrame({"month": months(2), "k": [9, 1], "n": [10, 1]}), "k", "n", "month")
    assert hi["upl"].iloc[1] == 1.0 and hi["upper_2sigma"].iloc[1] == 1.0


def test_attribute_chart_rules_use_sigma_lines():
    """p chart, baseline of 8 months at 100/1000 (pbar 0.1, sigma 0.0094868 at n = 1000, two-sigma line 0.11897,
    limit 0.12846): two of three months at 0.122 are flagged, one at 0.14 is outside the limits."""
    k = [100] * 8 + [122, 105, 122, 140]
    df = pd.DataFrame({"month": months(12), "k": k, "n": [1000] * 12})
    r = spc.p_chart(df, "k", "n", "month", baseline=8, improvement="decrease", target=0.2)
    assert r["two_in_three"].tolist() == [False] * 8 + [True, False, True, False]
    assert r["outside_limits"].tolist() == [False] * 11 + [True]
    assert r["special_cause_type"].iloc[-1] == "Above UCL"
    assert r["point_type"].iloc[-1] == "special_cause_concern"
    assert r["variation_icon"].iloc[-1] == "special cause concern high"
    assert r["assurance_icon"].iloc[-1] == "consistently pass"


# ----------------------------------------------------------------------------------------------------------
# Many series at once
# ----------------------------------------------------------------------------------------------------------

def _panel(n_series: int = 25, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n_series):
        m = int(rng.integers(12, 40))
        start = f"{2015 + i % 4}-{1 + i % 12:02d}"
        y = rng.normal(50, 5, m) + np.where(np.arange(m) > m // 2, rng.normal(0, 8), 0)
        y[rng.integers(0, m)] += 25
        frames.append(pd.DataFrame({"practice": f"P{i:03d}", "month": months(m, start), "y": y.round(1),
                                    "ev": rng.poisson(30, m), "pop": rng.integers(800, 3000, m)}))
    return pd.concat(frames, ignore_index=True)


def test_many_series_at_once_equal_each_alone():
    panel = _panel()
    keys = sorted(panel["practice"].unique())
    rebase = {keys[1]: ["2017-06"], keys[4]: ["2016-03", "2016-09"]}
    target = {k: 45.0 + i for i, k in enumerate(keys[:10])}
    shuffled = panel.sort_values(["month", "practice"], kind="stable")  # interleaved rows, each series ascending
    together = spc.xmr(shuffled, "y", "month", by="practice", baseline=10, rebase=rebase, screen_outliers=True,
                       target=target, improvement="decrease", run_length=6)
    assert together["practice"].tolist() == sorted(panel["practice"])
    for k in keys:
        part = panel[panel["practice"] == k].drop(columns="practice")
        alone = spc.xmr(part, "y", "month", baseline=10, rebase=rebase.get(k), screen_outliers=True,
                        target=target.get(k), improvement="decrease", run_length=6)
        got = together[together["practice"] == k].drop(columns="practice").reset_index(drop=True)
        pd.testing.assert_frame_equal(got, alone, check_exact=True)
    assert together["special_cause_flag"].any() and (together["segment"] > 0).any()
    u_all = spc.u_chart(shuffled, "ev", "pop", "month", by="practice", rebase=rebase)
    for k in keys[:6]:
        part = panel[panel["practice"] == k].drop(columns="practice")
        alone = spc.u_chart(part, "ev", "pop", "month", rebase=rebase.get(k))
        got = u_all[u_all["practice"] == k].drop(columns="practice").reset_index(drop=True)
        pd.testing.assert_frame_equal(got, alone, check_exact=True)


def test_several_by_columns():
    panel = _panel(6)
    panel = pd.concat([panel.assign(pod="a"), panel.assign(pod="b", y=panel["y"] * 2)], ignore_index=True)
    r = spc.xmr(panel, "y", "month", by=["practice", "pod"], rebase={("P001", "b"): ["2017-01"]},
                target={("P000", "a"): 50.0})
    alone = spc.xmr(panel[(panel["practice"] == "P000") & (panel["pod"] == "a")], "y", "month", target=50.0)
    got = r[(r["practice"] == "P000") & (r["pod"] == "a")]
    assert got["upl"].tolist() == alone["upl"].tolist()
    assert got["assurance_icon"].tolist() == alone["assurance_icon"].tolist()
    assert r[(r["practice"] == "P001") & (r["pod"] == "b")]["segment"].max() == 1
    with pytest.raises(ValueError, match="must be tuples"):
        spc.xmr(panel, "y", "month", by=["practice", "pod"], rebase={"P001": ["2017-01"]})


def test_national_scale_is_fast():
    """6,500 practices x 60 months in under 2 seconds."""
    rng = np.random.default_rng(1)
    p, m = 6500, 60
    big = pd.DataFrame({"practice": np.repeat([f"P{i:05d}" for i in range(p)], m),
                        "month": np.tile(months(m, "2015-04"), p), "y": rng.poisson(50, p * m).astype(float)})
    best = np.inf
    for _ in range(2):
        t0 = _time.perf_counter()
        r = spc.xmr(big, "y", "month", by="practice", screen_outliers=True, target=45.0)
        best = min(best, _time.perf_counter() - t0)
    assert len(r) == p * m
    assert best < 5.0, f"xmr on 6,500 x 60 took {best:.2f} s (about 0.4 s on a 2-core CI machine)"


# ----------------------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------------------

def test_validation_errors():
    df = frame(BASE + [1.0, 2.0])
    with pytest.raises(ValueError, match=r"column 'y' has 1 missing values .*2020-03"):
        spc.xmr(df.assign(y=lambda d: d["y"].where(d.index != 2)), "y", "month")
    with pytest.raises(ValueError, match="times must be sorted ascending within each series.*2020-02 to 2020-01"):
        spc.xmr(df.iloc[[1, 0, 2, 3, 4]], "y", "month")
    with pytest.raises(ValueError, match="duplicate times within a series.*2020-01"):
        spc.xmr(pd.concat([df.iloc[:1], df]), "y", "month")
    with pytest.raises(ValueError, match="baseline of 12 points is longer than the series, which has 10 points"):
        spc.xmr(df, "y", "month", baseline=12)
    with pytest.raises(ValueError, match="improvement must be one of 'increase', 'decrease', 'neither', 'neutral'; got 'up'"):
        spc.xmr(df, "y", "month", improvement="up")
    with pytest.raises(ValueError, match="baseline must be at least 2 points"):
        spc.xmr(df, "y", "month", baseline=1)
    with pytest.raises(ValueError, match=r"column\(s\) \['rate'\] not in data"):
        spc.xmr(df, "rate", "month")
    with pytest.raises(ValueError, match="must be numeric"):
        spc.xmr(df.assign(y="a"), "y", "month")
    with pytest.raises(ValueError, match="trend_length must be an integer of at least 2"):
        spc.xmr(df, "y", "month", trend_length=1)
    with pytest.raises(ValueError, match="baseline window .* holds no times of the data"):
        spc.xmr(df, "y", "month", baseline=("2019-01", "2019-12"))
    late = pd.concat([df.assign(p="A"), frame([1.0, 2.0, 3.0], "2021-01").assign(p="B")])
    with pytest.raises(ValueError, match=r"baseline window .* holds 0 point\(s\) of series p='B'"):
        spc.xmr(late, "y", "month", by="p", baseline=("2020-01", "2020-06"))
    two = pd.concat([df.assign(p="A"), df.iloc[:5].assign(p="B")])
    with pytest.raises(ValueError, match="longer than series p='B', which has 5 points"):
        spc.xmr(two, "y", "month", by="p", baseline=6)
    with pytest.raises(ValueError, match="rebase names series 'C', which is not in the data"):
        spc.xmr(two, "y", "month", by="p", rebase={"C": ["2020-05"]})
    with pytest.raises(ValueError, match="duplicate times within a series: series p='B'"):
        spc.xmr(pd.concat([two, two.iloc[[-1]]]), "y", "month", by="p")
    with pytest.raises(ValueError, match="clash with output columns"):
        spc.xmr(df.rename(columns={"y": "mean"}), "mean", "month")
    counts = pd.DataFrame({"month": months(3), "k": [1, 5, 2], "n": [10, 4, 0]})
    with pytest.raises(ValueError, match="'k' exceeds 'n'"):
        spc.p_chart(counts.assign(n=[10, 4, 5]), "k", "n", "month")
    with pytest.raises(ValueError, match="'n' must be positive"):
        spc.u_chart(counts, "k", "n", "month")


# ----------------------------------------------------------------------------------------------------------
# Figure
# ----------------------------------------------------------------------------------------------------------

def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def test_plot_spc_mdc_colours_and_deterministic():
    r = spc.xmr(frame(BASE + [1.2, 9.0, 0.8, -9.0]), "y", "month", baseline=8, target=5.0)
    fig = figures.plot_spc(r, title="test")
    ax = fig.axes[0]
    pal = sns.color_palette("colorblind")
    faces = {tuple(np.round(c.get_facecolors()[0][:3], 6)) for c in ax.collections}
    assert {tuple(np.round(pal[i], 6)) for i in (7, 1, 0)} <= faces  # grey common, orange concern, blue improvement
    assert any(line.get_linestyle() == "--" for line in ax.get_lines())
    assert "Assurance: inconsistent" in "".join(t.get_text() for t in ax.texts)
    again = figures.plot_spc(r, title="test")
    assert _png(fig) == _png(again)
    plt.close(fig)
    plt.close(again)


def test_plot_spc_picks_one_series():
    panel = _panel(3)
    r = spc.u_chart(panel, "ev", "pop", "month", by="practice", rebase={"P001": ["2017-01"]}, multiplier=1000)
    with pytest.raises(ValueError, match="holds 3 series; pass series="):
        figures.plot_spc(r)
    fig = figures.plot_spc(r, series="P001")
    assert len(fig.axes[0].collections) >= 1
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------------
# NHSRplotthedots v0.2.2 reference vectors
# ----------------------------------------------------------------------------------------------------------

def _rule_cases():
    path = SPC_REF / "spc_rule_unit_vectors.json"
    if not path.is_file():
        return [pytest.param(None, None, 0, marks=pytest.mark.skip(reason=f"reference vectors not found at {path}"))]
    cases = json.loads(path.read_text())
    return [pytest.param(rule, case, i, id=f"{rule}-{i}") for rule, items in cases.items()
            for i, case in enumerate(items)]


@pytest.mark.reference
@pytest.mark.parametrize("rule, case, i", _rule_cases())
def test_rule_unit_vectors(spc_ref, rule, case, i):
    """NHSRplotthedots v0.2.2 tests/testthat/test-ptd_calculate_point_type.R: ptd_seven_point_one_side_mean,
    ptd_part_of_seven_trend, ptd_seven_point_trend, ptd_two_in_three (incl. points on opposite sides of the mean,
    issue 143) and ptd_part_of_two_in_three, reproduced exactly."""
    inp, expected = case["input"], case["expected"]
    if rule == "seven_point_one_side_mean":
        got = spc.run_flags(inp, run_length=7)
    elif rule == "part_of_seven_trend":
        got = spc.part_of(inp, length=7)
    elif rule == "seven_point_trend":
        got = spc.trend_flags(inp, trend_length=7)
    elif rule == "two_in_three":
        got = spc.two_in_three_flags(inp[0], inp[1])
    elif rule == "two_in_three_then_part_of":
        got = spc.part_of_two_in_three(spc.two_in_three_flags(inp[0], inp[1]), inp[0])
    else:
        pytest.fail(f"unknown rule {rule!r} in spc_rule_unit_vectors.json")
    assert got.tolist() == expected


def _limit_cases():
    path = SPC_REF / "spc_limits_expected.csv"
    if not path.is_file():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"reference limits not found at {path}"))]
    return [pytest.param(row, id=row["case"]) for row in pd.read_csv(path).to_dict("records")]


@pytest.mark.reference
@pytest.mark.parametrize("row", _limit_cases())
def test_limits_expected(spc_ref, row):
    """Mean and process limits with and without moving-range screening and with fixed baselines:
    NHSRplotthedots v0.2.2 snapshots (tests/testthat/_snaps/ptd_spc_standard.md, ptd_spc.md; printed to 7 or 3
    significant figures, hence the row's tolerance), its vignettes/deviations.Rmd (R default vs the MDC Excel
    tool, which does not screen) and nhspy-plotthedots' exact cases (tolerance 1e-9). Point types (improvement
    increasing) must match exactly."""
    y = [float(v) for v in row["y"].split()]
    df = pd.DataFrame({"t": np.arange(len(y)), "y": y})
    baseline = None if pd.isna(row["fix_after_n_points"]) else int(row["fix_after_n_points"])
    r = spc.xmr(df, "y", "t", baseline=baseline, screen_outliers=bool(row["screen_outliers"]))
    tol = float(row["abs_tolerance"])
    assert abs(r["mean"].iloc[0] - row["expected_mean"]) <= tol
    assert abs(r["lpl"].iloc[0] - row["expected_lpl"]) <= tol
    assert abs(r["upl"].iloc[0] - row["expected_upl"]) <= tol
    assert r["mean"].nunique() == 1 and r["upl"].nunique() == 1
    assert r["point_type"].tolist() == row["port_point_type_increase_not_upstream"].split()


@pytest.mark.reference
def test_rnorm_snapshot_data_and_facets(spc_ref):
    """rnorm(20) with set.seed(123), the data behind NHSRplotthedots' snapshots: the full series gives mean
    0.1416238, limits [-3.01138, 3.294627] (_snaps/ptd_spc_standard.md, screened); as two facets of ten
    (_snaps/ptd_spc.md, 3 s.f.) 0.0746 [-2.6, 2.75] and 0.209 [-3.28, 3.7], computed in one call with by."""
    y = np.loadtxt(spc_ref / "rnorm_seed123_n20.txt")
    ref = pd.read_csv(spc_ref / "spc_limits_expected.csv").set_index("case")
    assert y.tolist() == [float(v) for v in ref.loc["rnorm123", "y"].split()]
    df = pd.DataFrame({"f": [0] * 10 + [1] * 10, "t": list(range(10)) * 2, "y": y})
    r = spc.xmr(df, "y", "t", by="f", screen_outliers=True)
    for f, case in ((0, "rnorm123_facet0_first10"), (1, "rnorm123_facet1_last10")):
        got = r[r["f"] == f].iloc[0]
        tol = float(ref.loc[case, "abs_tolerance"])
        assert abs(got["mean"] - ref.loc[case, "expected_mean"]) <= tol
        assert abs(got["lpl"] - ref.loc[case, "expected_lpl"]) <= tol
        assert abs(got["upl"] - ref.loc[case, "expected_upl"]) <= tol
    whole = spc.xmr(pd.DataFrame({"t": range(20), "y": y}), "y", "t", screen_outliers=True)
    assert whole["mean"].iloc[0] == pytest.approx(0.1416238, abs=5e-8)
    assert whole["lpl"].iloc[0] == pytest.approx(-3.01138, abs=5e-6)
    assert whole["upl"].iloc[0] == pytest.approx(3.294627, abs=5e-7)
