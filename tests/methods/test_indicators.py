"""Public-health indicator methods (pbc_analysis.methods.indicators).

Two kinds of test:

* hand-computed checks from the formulas, which need nothing outside the repository;
* the reference vectors of PHEindicatormethods v2.1.0 (UKHSA/DHSC, GPL-3; its tests/testthat files and
  their spreadsheets, converted to CSV with values unchanged) in ``../shared/reference/indicators``,
  marked ``reference`` and skipped when that folder is absent.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pbc_analysis.core import paths
from pbc_analysis.methods import indicators as ind

RTOL = 1e-9  # every reference row is reproduced to this relative tolerance (the brief asks for 1e-6)
Z95 = 1.959963984540054  # qnorm(0.975)
Z998 = 3.090232306167813  # qnorm(0.999)


def close(actual, expected, rtol: float = RTOL) -> None:
    np.testing.assert_allclose(np.asarray(actual, dtype=float), np.asarray(expected, dtype=float),
                               rtol=rtol, atol=0, equal_nan=True)


def same_labels(actual: pd.Series, expected: pd.Series) -> None:
    """String columns equal, missing matching missing."""
    a = pd.Series(actual).astype(object).where(pd.Series(actual).notna(), None).tolist()
    e = pd.Series(expected).astype(object).where(pd.Series(expected).notna(), None).tolist()
    assert a == e


# --------------------------------------------------------------------------------------------------
# hand-computed checks
# --------------------------------------------------------------------------------------------------

def byars_by_hand(o: float, z: float) -> tuple[float, float]:
    lower = o * (1 - 1 / (9 * o) - z / (3 * math.sqrt(o))) ** 3
    upper = (o + 1) * (1 - 1 / (9 * (o + 1)) + z / (3 * math.sqrt(o + 1))) ** 3
    return lower, upper


@pytest.mark.parametrize("confidence, z, lower, upper", [
    (0.95, Z95, 12.211428834875937, 30.889880369197066),
    (0.998, Z998, 8.922802365144193, 38.08503562504191),
])
def test_byars_limits_for_20_events_by_hand(confidence, z, lower, upper):
    """Byar's approximation (Breslow and Day 1987, vol. II), O = 20: formula evaluated by hand."""
    hand_lo, hand_hi = byars_by_hand(20, z)
    assert ind.byars_lower(20, confidence) == pytest.approx(hand_lo, rel=1e-12)
    assert ind.byars_upper(20, confidence) == pytest.approx(hand_hi, rel=1e-12)
    assert hand_lo == pytest.approx(lower, rel=1e-12) and hand_hi == pytest.approx(upper, rel=1e-12)
    assert isinstance(ind.byars_lower(20, confidence), float)


def test_byars_lower_is_missing_when_negative_and_arrays_work():
    """PHE's byars_lower sets a negative limit (O = 1 at 99.8%) to NA."""
    lo = ind.byars_lower(np.array([1.0, 65.0]), 0.998)
    assert np.isnan(lo[0]) and lo[1] == pytest.approx(byars_by_hand(65, Z998)[0], rel=1e-12)


def test_exact_poisson_for_zero_events():
    """Exact Poisson limits (chi-squared quantiles): O = 0 gives 0 and -ln(alpha/2)."""
    assert ind.poisson_exact_lower(0, 0.95) == 0.0
    assert ind.poisson_exact_upper(0, 0.95) == pytest.approx(-math.log(0.025), rel=1e-12)
    assert ind.poisson_exact_upper(0, 0.998) == pytest.approx(-math.log(0.001), rel=1e-12)


@pytest.mark.parametrize("confidence", [0.95, 0.998])
def test_exact_poisson_for_three_events(confidence):
    """Exact Poisson limits for O = 3 satisfy their definition P(X >= 3 | lower) = P(X <= 3 | upper) = alpha/2."""
    alpha = 1 - confidence
    lo, hi = ind.poisson_exact_lower(3, confidence), ind.poisson_exact_upper(3, confidence)
    assert stats.poisson.sf(2, lo) == pytest.approx(alpha / 2, rel=1e-9)
    assert stats.poisson.cdf(3, hi) == pytest.approx(alpha / 2, rel=1e-9)
    if confidence == 0.95:  # published table values (e.g. Garwood 1936)
        assert (round(lo, 4), round(hi, 4)) == (0.6187, 8.7673)


def test_poisson_limits_switch_to_byars_at_ten():
    """PHE rates and ISRs: exact below 10 events, Byar's from 10."""
    lo, hi = ind.poisson_limits([9, 10, np.nan])
    assert lo[0] == pytest.approx(ind.poisson_exact_lower(9), rel=1e-12)
    assert hi[1] == pytest.approx(byars_by_hand(10, Z95)[1], rel=1e-12)
    assert np.isnan(lo[2]) and np.isnan(hi[2])


@pytest.mark.parametrize("confidence, z", [(0.95, Z95), (0.998, Z998)])
def test_wilson_for_none_and_all_of_ten(confidence, z):
    """Wilson score (Wilson 1927; Newcombe 1998): 0/10 gives [0, z^2/(n+z^2)], 10/10 gives [n/(n+z^2), 1]."""
    assert ind.wilson_lower(0, 10, confidence) == pytest.approx(0.0, abs=1e-15)
    assert ind.wilson_upper(0, 10, confidence) == pytest.approx(z**2 / (10 + z**2), rel=1e-12)
    assert ind.wilson_lower(10, 10, confidence) == pytest.approx(10 / (10 + z**2), rel=1e-12)
    assert ind.wilson_upper(10, 10, confidence) == pytest.approx(1.0, rel=1e-12)


def test_confidence_levels_and_column_suffixes():
    """Column names: 0.95 -> lower_95_0 (PHE lowercl / lower95_0cl), 0.998 -> lower_99_8 (PHE lower99_8cl)."""
    assert ind.confidence_levels(0.95) == (0.95,)
    assert ind.confidence_levels([0.95, 0.998]) == (0.95, 0.998)
    assert [ind.ci_suffix(c) for c in (0.95, 0.998, 0.9, 0.9999)] == ["95_0", "99_8", "90_0", "99_99"]
    df = pd.DataFrame({"obs": [5], "pop": [100]})
    assert {"lower_95_0", "upper_95_0"} <= set(ind.crude_rate(df, "obs", "pop").columns)
    both = ind.crude_rate(df, "obs", "pop", confidence=(0.95, 0.998))
    assert {"lower_95_0", "upper_95_0", "lower_99_8", "upper_99_8"} <= set(both.columns)
    assert both["confidence"].iloc[0] == "95%, 99.8%"
    assert ind.crude_rate(df, "obs", "pop", confidence=0.9).columns.tolist()[3:5] == ["lower_90_0", "upper_90_0"]


@pytest.mark.parametrize("bad", [0.5, 95, 1.0, [0.95, 0.95], [], "0.95"])
def test_unknown_confidence_is_rejected(bad):
    """Confidence must be a fraction in [0.9, 1) (PHE: 'confidence level must be between ...')."""
    with pytest.raises(ValueError, match="confidence"):
        ind.crude_rate(pd.DataFrame({"obs": [5], "pop": [100]}), "obs", "pop", confidence=bad)


def test_percentage_confidence_hint():
    with pytest.raises(ValueError, match="fraction, e.g. 0.95, not a percentage"):
        ind.confidence_levels(99.8)


def test_crude_rate_by_hand_keeps_rows_and_columns():
    """Rate = x/n * multiplier; limits are the count limits / n * multiplier (PHE calculate_rate)."""
    df = pd.DataFrame({"practice": ["A", "B"], "obs": [3, 20], "pop": [1000, 2000]}, index=[10, 11])
    out = ind.crude_rate(df, "obs", "pop", multiplier=1000)
    assert out.index.tolist() == [10, 11] and out["practice"].tolist() == ["A", "B"]
    close(out["value"], [3.0, 10.0], rtol=1e-12)
    close(out["lower_95_0"], [ind.poisson_exact_lower(3), byars_by_hand(20, Z95)[0] / 2], rtol=1e-12)
    close(out["upper_95_0"], [ind.poisson_exact_upper(3), byars_by_hand(20, Z95)[1] / 2], rtol=1e-12)
    assert out["method"].tolist() == ["Exact", "Byars"]
    assert out["statistic"].iloc[0] == "rate per 1000"
    assert df.columns.tolist() == ["practice", "obs", "pop"]  # input untouched


def test_crude_rate_missing_inputs_give_missing():
    """Missing numerator or denominator gives missing (PHE testdata_Rate rows Area09-Area11)."""
    df = pd.DataFrame({"g": ["a", "a", "b", "c"], "obs": [np.nan, 4, 12, 5], "pop": [100, 100, np.nan, 50]})
    out = ind.crude_rate(df, "obs", "pop")
    assert out["value"].isna().tolist() == [True, False, True, False]
    assert out["lower_95_0"].isna().tolist() == [True, False, True, False]
    same_labels(out["method"], pd.Series([None, "Exact", "Byars", "Exact"]))
    grouped = ind.crude_rate(df, "obs", "pop", by="g").set_index("g")
    assert grouped.loc[["a", "b"], "value"].isna().all() and grouped.loc["c", "value"] == 100.0


def test_grouped_rate_and_proportion_sum_first():
    """PHE grouped version: x and n summed within groups before the interval is computed."""
    df = pd.DataFrame({"g": ["a", "a", "b"], "obs": [2, 3, 7], "pop": [50, 50, 70]})
    rate = ind.crude_rate(df, "obs", "pop", by=["g"], multiplier=100).set_index("g")
    assert rate.loc["a", "obs"] == 5 and rate.loc["a", "pop"] == 100
    assert rate.loc["a", "upper_95_0"] == pytest.approx(ind.poisson_exact_upper(5), rel=1e-12)
    prop = ind.proportion(df, "obs", "pop", by="g").set_index("g")
    assert prop.loc["b", "value"] == pytest.approx(0.1)
    assert prop.loc["b", "lower_95_0"] == pytest.approx(ind.wilson_lower(7, 70), rel=1e-12)


def test_proportion_multiplier_and_statistic():
    """PHE phe_proportion: statistic 'percentage' for multiplier 100, else 'proportion of <m>'."""
    df = pd.DataFrame({"obs": [0, 10], "pop": [10, 10]})
    pct = ind.proportion(df, "obs", "pop", multiplier=100)
    close(pct["upper_95_0"], [100 * Z95**2 / (10 + Z95**2), 100.0], rtol=1e-12)
    assert pct["statistic"].iloc[0] == "percentage" and pct["method"].iloc[0] == "Wilson"
    assert ind.proportion(df, "obs", "pop")["statistic"].iloc[0] == "proportion of 1"
    missing = ind.proportion(pd.DataFrame({"obs": [np.nan], "pop": [10]}), "obs", "pop")
    assert np.isnan(missing["value"].iloc[0]) and np.isnan(missing["upper_95_0"].iloc[0])


def test_input_validation_names_the_column():
    """Negative counts, zero or negative denominators, x > n, missing and non-numeric columns."""
    df = pd.DataFrame({"obs": [-1, 5], "pop": [100, 100]})
    with pytest.raises(ValueError, match="'obs' \\(numerator\\) must be greater than or equal to zero"):
        ind.crude_rate(df, "obs", "pop")
    with pytest.raises(ValueError, match="'pop' \\(denominator\\) must be greater than zero"):
        ind.crude_rate(pd.DataFrame({"obs": [1], "pop": [0]}), "obs", "pop")
    with pytest.raises(ValueError, match="'obs' \\(numerator\\) exceeds column 'pop'"):
        ind.proportion(pd.DataFrame({"obs": [11], "pop": [10]}), "obs", "pop")
    with pytest.raises(KeyError, match="'events'"):
        ind.crude_rate(df, "events", "pop")
    with pytest.raises(TypeError, match="'obs' \\(numerator\\) must be numeric"):
        ind.crude_rate(pd.DataFrame({"obs": ["1"], "pop": [10]}), "obs", "pop")
    with pytest.raises(ValueError, match="observed events must all be greater than or equal to zero"):
        ind.byars_lower(-1)
    with pytest.raises(ValueError, match="numerators must be less than or equal to denominators"):
        ind.wilson_upper(5, 4)


def test_mean_ci_by_hand_and_missing():
    """Student's t interval mean -/+ |t_{0.025, k-1}| s / sqrt(k) (PHE phe_mean); NA propagates as in R."""
    df = pd.DataFrame({"g": ["a"] * 4 + ["b"] * 2, "v": [30.0, 40, 50, 60, 1, np.nan]})
    out = ind.mean_ci(df, "v", by="g").set_index("g")
    s = np.std([30, 40, 50, 60], ddof=1)
    half = stats.t.ppf(0.975, 3) * s / 2
    assert out.loc["a", "value"] == 45 and out.loc["a", "stdev"] == pytest.approx(s)
    assert out.loc["a", "lower_95_0"] == pytest.approx(45 - half, rel=1e-12)
    assert out.loc["a", "upper_95_0"] == pytest.approx(45 + half, rel=1e-12)
    assert out.loc["b", "value_count"] == 2 and out.loc["b", ["value_sum", "value", "upper_95_0"]].isna().all()
    assert out.loc["a", "method"] == "Student's t-distribution" and out.loc["a", "statistic"] == "mean"


def two_band_isr_data() -> pd.DataFrame:
    # reference rates 10/1000 = 0.01 and 50/1000 = 0.05; E = 0.01*1000 + 0.05*200 = 20, O = 12 + 18 = 30
    return pd.DataFrame({"area": ["X", "X"], "band": ["0-44", "45+"], "obs": [12, 18], "pop": [1000, 200],
                         "refn": [10, 50], "refd": [1000, 1000]})


def test_isr_two_bands_by_hand():
    """ISR = O/E with Byar's limits on O divided by E; ISRate = ratio * overall reference rate (PHE)."""
    df = two_band_isr_data()
    lo, hi = byars_by_hand(30, Z95)
    ratio = ind.isr(df, "obs", "pop", ref_numerator="refn", ref_denominator="refd", by="area")
    row = ratio.iloc[0]
    assert (row["observed"], row["expected"]) == (30, pytest.approx(20, rel=1e-12))
    close([row["value"], row["lower_95_0"], row["upper_95_0"]], [1.5, lo / 20, hi / 20], rtol=1e-12)
    assert row["method"] == "Byars" and row["statistic"] == "indirectly standardised ratio x 1"
    rate = ind.indirectly_standardised(df, "obs", "pop", ref_numerator="refn", ref_denominator="refd",
                                       by="area", type="rate", multiplier=1000).iloc[0]
    assert rate["ref_rate"] == pytest.approx(60 / 2000 * 1000)  # overall reference rate per 1000
    close([rate["value"], rate["lower_95_0"]], [1.5 * 30, lo / 20 * 30], rtol=1e-12)
    by_rate = ind.isr(df.assign(r=df["refn"] / df["refd"]), "obs", "pop", ref_rate="r", by="area", refvalue=100)
    assert by_rate["value"].iloc[0] == pytest.approx(150)


def test_isr_exact_below_ten_zero_population_and_totals():
    """O < 10 uses exact limits; zero-population rows add nothing to E; totals without age breakdown."""
    df = two_band_isr_data().assign(obs=[2, 3])
    out = ind.isr(df, "obs", "pop", ref_numerator="refn", ref_denominator="refd", by="area").iloc[0]
    assert out["method"] == "Exact"
    assert out["lower_95_0"] == pytest.approx(ind.poisson_exact_lower(5) / 20, rel=1e-12)
    zero = ind.isr(df.assign(pop=[1000, 0]), "obs", "pop", ref_numerator="refn", ref_denominator="refd")
    assert zero["expected"].iloc[0] == pytest.approx(10) and "area" not in zero.columns
    totals = pd.DataFrame({"area": ["X", "Y"], "obs": [5, 7]})
    from_totals = ind.isr(df.drop(columns="obs"), "obs", "pop", ref_numerator="refn", ref_denominator="refd",
                          by="area", observed_totals=totals)
    pd.testing.assert_frame_equal(from_totals, ind.isr(df, "obs", "pop", ref_numerator="refn",
                                                       ref_denominator="refd", by="area"))
    missing_total = ind.isr(df.drop(columns="obs"), "obs", "pop", ref_numerator="refn", ref_denominator="refd",
                            by="area", observed_totals=totals.iloc[1:])
    assert np.isnan(missing_total["value"].iloc[0]) and pd.isna(missing_total["method"].iloc[0])


def test_isr_validation():
    df = two_band_isr_data()
    with pytest.raises(ValueError, match="not both"):
        ind.isr(df.assign(r=0.1), "obs", "pop", ref_rate="r", ref_numerator="refn", ref_denominator="refd")
    with pytest.raises(ValueError, match="type='rate' needs ref_numerator"):
        ind.isr(df.assign(r=0.1), "obs", "pop", ref_rate="r", type="rate")
    with pytest.raises(ValueError, match="'pop' \\(population\\) must be greater than or equal to zero"):
        ind.isr(df.assign(pop=[-1, 5]), "obs", "pop", ref_numerator="refn", ref_denominator="refd")
    with pytest.raises(ValueError, match="'refd' \\(reference denominator\\) must be greater than zero"):
        ind.isr(df.assign(refd=[0, 5]), "obs", "pop", ref_numerator="refn", ref_denominator="refd")
    with pytest.raises(ValueError, match="one row per group"):
        ind.isr(df, "obs", "pop", ref_numerator="refn", ref_denominator="refd", by="area",
                observed_totals=pd.DataFrame({"area": ["X", "X"], "obs": [1, 2]}))
    with pytest.raises(ValueError, match="type must be"):
        ind.isr(df, "obs", "pop", ref_numerator="refn", ref_denominator="refd", type="smr")


def test_dsr_two_bands_by_hand():
    """Dobson et al. (1991) DSR interval with Byar's limits on the total count (PHE calculate_dsr)."""
    df = pd.DataFrame({"band": ["young", "old"], "x": [20, 30], "n": [1000, 500], "w": [600, 400]})
    # DSR = (20/1000*600 + 30/500*400) / 1000 = 0.036; var = (20*0.6^2 + 30*0.8^2) / 1000^2 = 26.4e-6
    out = ind.dsr(df, "x", "n", "w", confidence=(0.95, 0.998)).iloc[0]
    value, var = 0.036 * 1e5, 26.4e-6
    assert out["value"] == pytest.approx(value, rel=1e-12)
    for c, z in ((0.95, Z95), (0.998, Z998)):
        lo, hi = byars_by_hand(50, z)
        sfx = ind.ci_suffix(c)
        assert out[f"lower_{sfx}"] == pytest.approx(value + math.sqrt(var / 50) * (lo - 50) * 1e5, rel=1e-12)
        assert out[f"upper_{sfx}"] == pytest.approx(value + math.sqrt(var / 50) * (hi - 50) * 1e5, rel=1e-12)
    assert (out["total_count"], out["total_pop"], out["method"]) == (50, 1500, "Dobson")
    assert out["statistic"] == "dsr per 100000"


def test_dsr_suppression_missing_counts_and_weights_by_label():
    """Total count < 10 is suppressed (PHE 'dsr NA for total count < 10'); missing counts are zero."""
    bands = list(ind.ESP2013_BANDS)
    df = pd.DataFrame({"area": np.repeat(["A", "B"], 19), "ageband": bands * 2,
                       "x": [1.0] * 19 + [0.0] * 18 + [9.0], "n": 1000.0})
    df.loc[0, "x"] = np.nan  # area A: 18 events after counting the missing band as 0
    out = ind.dsr(df, "x", "n", ind.ESP2013, ageband="ageband", by="area").set_index("area")
    assert out.loc["A", "total_count"] == 18 and not np.isnan(out.loc["A", "value"])
    assert out.loc["B", "total_count"] == 9 and out.loc["B", ["value", "lower_95_0", "upper_95_0"]].isna().all()
    assert out.loc["B", "statistic"] == "dsr NA for total count < 10"
    as_column = ind.dsr(df.assign(w=np.tile(ind.ESP2013.to_numpy(), 2)), "x", "n", "w", by="area")
    pd.testing.assert_frame_equal(as_column, out.reset_index())
    same_as_zero = ind.dsr(df.fillna({"x": 0}), "x", "n", ind.ESP2013, ageband="ageband", by="area")
    pd.testing.assert_frame_equal(same_as_zero, out.reset_index())


def test_dsr_nonindependent_with_single_events_equals_independent():
    """With every person having one event, the non-independent variance reduces to Dobson's."""
    df = pd.DataFrame({"area": np.repeat(["A", "B"], 3), "band": ["0-39", "40-69", "70+"] * 2,
                       "x": [10, 20, 30, 5, 6, 40], "n": [900, 800, 300] * 2, "w": [500, 350, 150] * 2})
    indep = ind.dsr(df, "x", "n", "w", by="area")
    nonind = ind.dsr(df.assign(f=1), "x", "n", "w", by="area", eventfreq="f", ageband="band")
    cols = ["total_count", "total_pop", "value", "lower_95_0", "upper_95_0"]
    close(nonind[cols].to_numpy(), indep[cols].to_numpy(), rtol=1e-12)
    assert nonind["method"].iloc[0] == "Dobson, with confidence adjusted for non-independent events"
    # people with 2 events widen the interval but leave the rate as for the same number of events
    doubled = pd.concat([df.assign(f=1, x=df["x"] // 2), df.assign(f=2, x=df["x"] - df["x"] // 2)])
    wider = ind.dsr(doubled, "x", "n", "w", by="area", eventfreq="f", ageband="band")
    events = ind.dsr(df.assign(x=df["x"] // 2 + 2 * (df["x"] - df["x"] // 2)), "x", "n", "w", by="area")
    close(wider["value"], events["value"], rtol=1e-12)
    assert (wider["upper_95_0"] - wider["lower_95_0"] > events["upper_95_0"] - events["lower_95_0"]).all()


def test_dsr_validation():
    df = pd.DataFrame({"g": ["a", "a", "b"], "band": ["0-4", "5-9", "0-4"], "x": [1, 2, 3],
                       "n": [10, 10, 10], "w": [1, 1, 1]})
    with pytest.raises(ValueError, match="same number of rows"):
        ind.dsr(df, "x", "n", "w", by="g")
    with pytest.raises(ValueError, match="'n' \\(denominator \\(population\\)\\) must be greater than zero"):
        ind.dsr(df.assign(n=[10, 0, 10]), "x", "n", "w")
    with pytest.raises(ValueError, match="'n' .* missing"):
        ind.dsr(df.assign(n=[10, np.nan, 10]), "x", "n", "w")
    with pytest.raises(ValueError, match="'x' \\(numerator \\(events\\)\\) must be greater than or equal to zero"):
        ind.dsr(df.assign(x=[1, -2, 3]), "x", "n", "w")
    with pytest.raises(ValueError, match="needs ageband"):
        ind.dsr(df, "x", "n", ind.ESP2013)
    with pytest.raises(ValueError, match=r"age bands \['5 to 9'\]"):
        ind.dsr(df.assign(band=["0-4", "5 to 9", "0-4"]), "x", "n", ind.ESP2013, ageband="band")
    with pytest.raises(TypeError, match="stdpop must be a column name"):
        ind.dsr(df, "x", "n", "nope")


def test_esp2013_constant():
    """ESP2013 (PHEindicatormethods esp2013): 19 bands 0-4 ... 90+, 5000, 5500, ..., total 100,000."""
    assert ind.ESP2013.index.tolist()[:2] == ["0-4", "5-9"] and ind.ESP2013.index[-2:].tolist() == ["85-89", "90+"]
    assert len(ind.ESP2013) == 19 and ind.ESP2013.sum() == 100_000
    assert ind.ESP2013.iloc[:3].tolist() == [5000, 5500, 5500] and ind.ESP2013.iloc[-1] == 1000


def test_reference_rates_feed_isr():
    """Reference age-sex rates from a tidy events/population table, merged onto local data for an ISR."""
    ref = pd.DataFrame({"area": ["P", "P", "Q", "Q"] * 2, "ageband": ["0-4", "5-9"] * 4,
                        "sex": ["F"] * 4 + ["M"] * 4, "events": [1, 2, 3, 4, 5, 6, 7, 8],
                        "population": [100, 100, 100, 100, 200, 200, 200, 200]})
    rates = ind.reference_rates(ref, "events", "population")
    assert rates.columns.tolist() == ["ageband", "sex", "ref_numerator", "ref_denominator", "ref_rate"]
    got = rates.set_index(["ageband", "sex"])
    assert got.loc[("0-4", "F"), "ref_numerator"] == 4 and got.loc[("0-4", "F"), "ref_denominator"] == 200
    assert got.loc[("5-9", "M"), "ref_rate"] == pytest.approx(14 / 400)
    local = pd.DataFrame({"ageband": ["0-4", "5-9", "0-4", "5-9"], "sex": ["F", "F", "M", "M"],
                          "obs": [2, 3, 4, 5], "pop": [50, 50, 40, 40]}).merge(rates, on=["ageband", "sex"])
    out = ind.isr(local, "obs", "pop", ref_numerator="ref_numerator", ref_denominator="ref_denominator")
    expected = 50 * 4 / 200 + 50 * 6 / 200 + 40 * 12 / 400 + 40 * 14 / 400
    assert out["expected"].iloc[0] == pytest.approx(expected, rel=1e-12)


# --------------------------------------------------------------------------------------------------
# PHEindicatormethods v2.1.0 reference vectors
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ind_dir():
    folder = paths.REFERENCE_DIR / "indicators"
    if not folder.is_dir():
        pytest.skip(f"PHEindicatormethods test vectors not found at {folder} (clone the project beside ../shared)")
    return folder


def limit_pairs(exp: pd.DataFrame, two_levels: bool = True) -> list[tuple[str, str]]:
    pairs = [("lower_95_0", "lower95_0cl"), ("upper_95_0", "upper95_0cl")]
    return pairs + ([("lower_99_8", "lower99_8cl"), ("upper_99_8", "upper99_8cl")] if two_levels else [])


@pytest.mark.reference
def test_reference_esp2013(ind_dir):
    """esp2013 as shipped with PHEindicatormethods v2.1.0 (data-raw)."""
    esp = pd.read_csv(ind_dir / "esp2013.csv")
    assert esp["ageband"].tolist() == list(ind.ESP2013_BANDS)
    assert esp["esp2013"].tolist() == ind.ESP2013.tolist()


@pytest.mark.reference
def test_reference_byars_and_wilson(ind_dir):
    """PHEindicatormethods v2.1.0 tests/testthat/testByars.R and testWilson.R (testdata_Byars_Wilson.xlsx):
    Byar's for O = 65, 1045, 1 (95%) and 65, 1045, 10, 1 (99.8%, no lower limit for 1); Wilson limits."""
    exp = pd.read_csv(ind_dir / "byars_wilson_expected.csv")
    conf = exp["confidence"].map({"95%": 0.95, "99.8%": 0.998})
    assert conf.notna().all()
    for (method, c), rows in exp.groupby([exp["method"], conf]):
        if method == "Byars":
            lo, hi = ind.byars_lower(rows["x"].to_numpy(), c), ind.byars_upper(rows["x"].to_numpy(), c)
        else:
            lo = ind.wilson_lower(rows["x"].to_numpy(), rows["n"].to_numpy(), c)
            hi = ind.wilson_upper(rows["x"].to_numpy(), rows["n"].to_numpy(), c)
        close(lo, rows["lowercl"])
        close(hi, rows["uppercl"])
    assert exp["lowercl"].isna().sum() == 1  # O = 1 at 99.8%


@pytest.mark.reference
@pytest.mark.parametrize("rows, multiplier", [(slice(0, 8), 100), (slice(8, 16), 100000), (slice(16, 20), 100000)])
def test_reference_rates(ind_dir, rows, multiplier):
    """PHEindicatormethods v2.1.0 tests/testthat/testRates.R (testdata_Rate.xlsx, sheet testdata_Rate):
    rows 1-8 per 100, 9-16 per 100,000, 17-20 missing numerator/denominator and numerator > denominator."""
    exp = pd.read_csv(ind_dir / "rate_expected.csv").iloc[rows].reset_index(drop=True)
    assert (exp["multiplier"] == multiplier).all()
    out = ind.crude_rate(exp[["Area", "Numerator", "Denominator"]], "Numerator", "Denominator",
                         multiplier=multiplier, confidence=(0.95, 0.998))
    close(out["value"], exp["value"])
    for ours, theirs in limit_pairs(exp):
        close(out[ours], exp[theirs])
    same_labels(out["method"], exp["method"])
    same_labels(out["statistic"], exp["statistic"])


@pytest.mark.reference
def test_reference_rates_grouped(ind_dir):
    """PHEindicatormethods v2.1.0 tests/testthat/testRates.R, grouped (test_Rate grouped by Area ->
    sheet testdata_Rate_g): Areas 1-8 appear twice in test_Rate, so their counts double."""
    data = pd.read_csv(ind_dir / "rate_expected.csv")[["Area", "Numerator", "Denominator"]]
    exp = pd.read_csv(ind_dir / "rate_grouped_expected.csv")
    out = ind.crude_rate(data, "Numerator", "Denominator", multiplier=100000, by="Area")
    out = out.set_index("Area").loc[exp["Area"]].reset_index()
    for col in ("Numerator", "Denominator", "value"):
        close(out[col], exp[col])
    close(out["lower_95_0"], exp["lowercl"])
    close(out["upper_95_0"], exp["uppercl"])
    same_labels(out["method"], exp["method"])
    assert (out["confidence"] == exp["confidence"]).all() and (out["statistic"] == exp["statistic"]).all()


@pytest.mark.reference
@pytest.mark.parametrize("rows, multiplier", [(slice(0, 8), 1), (slice(8, 16), 100), (slice(16, 19), 1)])
def test_reference_proportions(ind_dir, rows, multiplier):
    """PHEindicatormethods v2.1.0 tests/testthat/testProportions.R (testdata_Proportion.xlsx, sheet
    testdata_Prop): Wilson limits, multipliers 1 and 100, rows with missing inputs."""
    exp = pd.read_csv(ind_dir / "proportion_expected.csv").iloc[rows].reset_index(drop=True)
    assert (exp["multiplier"] == multiplier).all()
    out = ind.proportion(exp[["Area", "Numerator", "Denominator"]], "Numerator", "Denominator",
                         multiplier=multiplier, confidence=[0.95, 0.998])
    close(out["value"], exp["value"])
    for ours, theirs in limit_pairs(exp):
        close(out[ours], exp[theirs])
    same_labels(out["method"], exp["method"])
    same_labels(out["statistic"], exp["statistic"])


@pytest.mark.reference
def test_reference_proportions_grouped(ind_dir):
    """PHEindicatormethods v2.1.0 tests/testthat/testProportions.R, grouped (test_Prop grouped by Area ->
    sheet testdata_Prop_g)."""
    data = pd.read_csv(ind_dir / "proportion_expected.csv")[["Area", "Numerator", "Denominator"]]
    exp = pd.read_csv(ind_dir / "proportion_grouped_expected.csv")
    out = ind.proportion(data, "Numerator", "Denominator", by="Area").set_index("Area").loc[exp["Area"]]
    for col in ("Numerator", "Denominator", "value"):
        close(out[col], exp[col])
    close(out["lower_95_0"], exp["lowercl"])
    close(out["upper_95_0"], exp["uppercl"])
    assert (out["statistic"].to_numpy() == exp["statistic"].to_numpy()).all()


@pytest.mark.reference
def test_reference_means(ind_dir):
    """PHEindicatormethods v2.1.0 tests/testthat/testMeans.R (testdata_Mean.xlsx): grouped by area and
    ungrouped ('No grouping'), Student's t limits at 95% and 99.8%."""
    data = pd.read_csv(ind_dir / "mean_input.csv")
    exp = pd.read_csv(ind_dir / "mean_expected.csv")
    grouped = ind.mean_ci(data, "values", by="area", confidence=(0.95, 0.998))
    overall = ind.mean_ci(data, "values", confidence=(0.95, 0.998)).assign(area="No grouping")
    out = pd.concat([grouped, overall], ignore_index=True).set_index("area").loc[exp["area"]]
    for col in ("value_sum", "value_count", "stdev", "value"):
        close(out[col], exp[col])
    for ours, theirs in limit_pairs(exp):
        close(out[ours], exp[theirs])
    assert (out["method"].to_numpy() == exp["method"].to_numpy()).all()


DSR_CALLS = {
    "dsr_input_multiarea_esp2013.csv": dict(x="count", n="pop", stdpop="esp2013", by="area"),
    "dsr_input_esp1976.csv": dict(x="count", n="pop", stdpop="esp1976", by=None),
    "dsr_input_nonindependent_long.csv": dict(x="persons", n="pop", stdpop="esp2013", by="area",
                                              eventfreq="freq", ageband="ageband"),
}
DSR_CASES = ["multiarea_esp2013_mult1e4", "multiarea_esp2013_mult1e5", "esp1976_mult1e4", "esp1976_mult1e5",
             "nonindependent_mult1e5"]


@pytest.mark.reference
@pytest.mark.parametrize("case", DSR_CASES)
def test_reference_dsr(ind_dir, case):
    """PHEindicatormethods v2.1.0 tests/testthat/testDSRs.R (testdata_DSR_ISR.xlsx: testdata_multiarea,
    testdata_1976, testdata_nonindepe -> testresults_DSR). The esp1976 99.8% columns of the upstream
    sheet are 10 times too large and never read by the R tests, so only 95% is checked for them."""
    all_exp = pd.read_csv(ind_dir / "dsr_expected.csv")
    exp = all_exp[all_exp["case"] == case].reset_index(drop=True)
    assert len(exp) > 0
    file, multiplier = exp["input_file"].iloc[0], float(exp["multiplier"].iloc[0])
    data = pd.read_csv(ind_dir / file)
    out = ind.dsr(data, **DSR_CALLS[file], multiplier=multiplier, confidence=(0.95, 0.998))
    if DSR_CALLS[file]["by"] is not None:
        out = out.set_index("area").loc[exp["area"]].reset_index()
    check_998 = "10x too large" not in exp["checked_by_R_tests"].iloc[0]
    assert check_998 == (not case.startswith("esp1976"))
    for col in ("total_count", "total_pop", "value"):
        close(out[col], exp[col])
    for ours, theirs in limit_pairs(exp, two_levels=check_998):
        close(out[ours], exp[theirs])
    same_labels(out["statistic"], exp["statistic"])
    same_labels(out["method"], exp["method"])


ISR_CASES = ["ISRate_mult1e5", "ISRate_mult1e3", "ISRatio_refvalue1", "ISRatio_refvalue100",
             "ISRate_mult1e5_zero_pop", "ISRatio_refvalue100_zero_pop"]


def isr_call(ind_dir, case: str, variant: str):
    """Input and keyword arguments for one ISR reference case."""
    kind = dict(type="rate", multiplier=float(case.split("mult")[1].split("_")[0])) if case.startswith("ISRate") \
        else dict(type="ratio", refvalue=float(case.split("refvalue")[1].split("_")[0]))
    refdata = pd.read_csv(ind_dir / "isr_refdata.csv")
    if case.endswith("zero_pop"):
        # the upstream test passes the reference as vectors matched by position within each area
        data = pd.read_csv(ind_dir / "isr_input_zero_pop.csv")
        data[["refcount", "refpop"]] = np.tile(refdata[["refcount", "refpop"]].to_numpy(), (2, 1))
        return data, "count", dict(kind, ref_numerator="refcount", ref_denominator="refpop", by="area",
                                   confidence=0.95)
    data = pd.read_csv(ind_dir / "isr_input_multiarea.csv")
    kwargs = dict(kind, ref_numerator="refcount", ref_denominator="refpop", by="area", confidence=(0.95, 0.998))
    if variant == "refdata":  # reference as a separate table, joined on the age-band label
        data = data.drop(columns=["refcount", "refpop"]).merge(
            refdata.rename(columns={"Age Band": "ageband"}), on="ageband", how="left", validate="many_to_one")
    elif variant == "observed_totals":  # observed events without an age breakdown
        kwargs["observed_totals"] = pd.read_csv(ind_dir / "isr_observed_totals.csv")
        return data.drop(columns="count"), "total_count", kwargs
    return data, "count", kwargs


ISR_PARAMS = [(case, variant) for case in ISR_CASES
              for variant in (("fields",) if case.endswith("zero_pop") else ("fields", "refdata", "observed_totals"))]


@pytest.mark.reference
@pytest.mark.parametrize("case, variant", ISR_PARAMS)
def test_reference_isr(ind_dir, case, variant):
    """PHEindicatormethods v2.1.0 tests/testthat/testISRs.R (calculate_ISRate, calculate_ISRatio;
    testdata_DSR_ISR.xlsx: testdata_multiarea_isr, refdata, observed totals, zero population ->
    testresults_ISR): ISRate per 1e5 and 1e3, ISRatio x 1 and x 100, exact limits for O = 9."""
    all_exp = pd.read_csv(ind_dir / "isr_expected.csv")
    exp = all_exp[all_exp["case"] == case].reset_index(drop=True)
    data, observed, kwargs = isr_call(ind_dir, case, variant)
    out = ind.isr(data, observed, "pop", **kwargs).set_index("area").loc[exp["area"]].reset_index()
    for col in ["observed", "expected", "value"] + (["ref_rate"] if case.startswith("ISRate") else []):
        close(out[col], exp[col])
    two_levels = exp["lower99_8cl"].notna().any()
    for ours, theirs in limit_pairs(exp, two_levels=two_levels):
        close(out[ours], exp[theirs])
    same_labels(out["method"], exp["method"])
    same_labels(out["statistic"], exp["statistic"])
