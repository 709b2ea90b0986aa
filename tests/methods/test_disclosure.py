"""Tests for pbc_analysis.methods.disclosure: the NHS Digital rule, hand-computed."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pbc_analysis.methods.disclosure import (
    SUPPRESSED,
    TOTALS_FOOTNOTE,
    disclose_counts,
    disclose_table,
    disclosure_footnote,
    round_total,
)


# --------------------------------------------------------------------------------------------------
# disclose_counts
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "count, published",
    [
        (0, 0),  # zero stays zero
        (1, "*"),  # lower edge of suppression
        (4, "*"),
        (7, "*"),  # upper edge of suppression
        (8, 10),  # first published count
        (10, 10),
        (12, 10),  # rounds down
        (13, 15),  # rounds up
        (17, 15),
        (18, 20),
        (22, 20),
        (23, 25),
        (1000, 1000),  # already a multiple
        (1002, 1000),
        (1003, 1005),
        (123457, 123455),
    ],
)
def test_default_rule(count, published):
    out = disclose_counts([count])
    assert out.iloc[0] == published
    assert type(out.iloc[0]) is type(published)  # Python int or str, never numpy scalars


def test_result_is_object_series_keeping_index_and_name():
    s = pd.Series([0, 3, 12, 13], index=["P1", "P2", "P3", "P4"], name="referrals")
    out = disclose_counts(s)
    assert out.dtype == object
    assert out.name == "referrals"
    assert list(out.index) == ["P1", "P2", "P3", "P4"]
    assert out.tolist() == [0, "*", 10, 15]
    assert s.tolist() == [0, 3, 12, 13]  # input untouched


def test_all_suppressed_stays_object_dtype():
    out = disclose_counts([1, 2, 3])
    assert out.dtype == object and out.tolist() == ["*", "*", "*"]


@pytest.mark.parametrize("missing", [None, float("nan"), np.nan, pd.NA])
def test_missing_stays_missing(missing):
    out = disclose_counts([5, missing, 20])
    assert out.iloc[0] == "*" and out.iloc[2] == 20
    assert out.iloc[1] is pd.NA


def test_accepts_nullable_float_and_numpy_inputs():
    assert disclose_counts(pd.Series([0, 9, None], dtype="Int64")).tolist()[:2] == [0, 10]
    assert disclose_counts(pd.Series([0.0, 9.0, np.nan])).tolist()[:2] == [0, 10]
    assert disclose_counts(np.array([0, 3, 14], dtype=np.int64)).tolist() == [0, "*", 15]
    assert disclose_counts(x for x in (8, 0)).tolist() == [10, 0]
    assert disclose_counts([]).tolist() == []


@pytest.mark.parametrize(
    "suppress_max, round_to, values, expected",
    [
        (5, 5, [0, 5, 6, 7, 8], [0, "*", 5, 5, 10]),  # the pre-2018 HES rule: 1..5 suppressed
        (7, 10, [8, 14, 15, 16, 25], [10, 10, 20, 20, 30]),  # even base: ties (15, 25) round up
        (7, 1, [7, 8, 13], ["*", 8, 13]),  # no rounding
        (0, 1, [0, 1, 2], [0, 1, 2]),  # no control at all (national level)
        (9, 3, [9, 10, 11, 12], ["*", 9, 12, 12]),
        (2, 5, [2, 3, 4], ["*", 5, 5]),  # 3 is the smallest published count and must not become 0
    ],
)
def test_thresholds_are_parameters(suppress_max, round_to, values, expected):
    assert disclose_counts(values, suppress_max=suppress_max, round_to=round_to).tolist() == expected


def test_invalid_values_raise_naming_positions():
    s = pd.Series([3, -1, 12, 2.5, "ten", True, math.inf], index=list("abcdefg"), name="n")
    with pytest.raises(ValueError) as err:
        disclose_counts(s)
    msg = str(err.value)
    assert "'n'" in msg
    for pos, label in [(1, "b"), (3, "d"), (4, "e"), (5, "f"), (6, "g")]:
        assert f"{pos} (index '{label}'" in msg
    assert "0 (index" not in msg and "2 (index" not in msg  # valid entries are not named


def test_negative_only():
    with pytest.raises(ValueError, match=r"position\(s\) 2 \(index 2: -5\)"):
        disclose_counts([0, 10, -5])


def test_whole_floats_are_counts_but_fractions_are_not():
    assert disclose_counts([12.0]).tolist() == [10]
    with pytest.raises(ValueError, match="12.5"):
        disclose_counts([12.5])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"suppress_max": -1},
        {"suppress_max": 7.5},
        {"round_to": 0},
        {"round_to": 2.5},
        {"round_to": True},
        {"suppress_max": 0, "round_to": 5},  # 1 and 2 would be published as 0
        {"suppress_max": 3, "round_to": 10},  # 4 would be published as 0
    ],
)
def test_bad_thresholds(kwargs):
    with pytest.raises(ValueError):
        disclose_counts([10], **kwargs)


def test_rejects_non_1d_input():
    with pytest.raises(ValueError):
        disclose_counts(np.zeros((2, 2)))
    with pytest.raises(ValueError):
        disclose_counts("123")
    with pytest.raises(ValueError):
        disclose_counts(pd.DataFrame({"a": [1]}))


# --------------------------------------------------------------------------------------------------
# disclose_table
# --------------------------------------------------------------------------------------------------
@pytest.fixture
def table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "practice": ["P1", "P2", "P3", "P4", "P5", "P6"],
            "referrals": [13, 5, 0, 9, 48, pd.NA],
            "attendances": [12, 100, 40, 0, 7, 30],
            "list_size": [2000, 3000, 4000, 5000, 6000, 7000],
            "sir": [0.91, 1.23, 0.5, 1.0, 1.1, 0.8],  # modelled: exempt, must be untouched
        }
    )


def test_table_counts_and_ratios_from_rounded_counts(table):
    before = table.copy()
    out = disclose_table(
        table,
        ["referrals", "attendances"],
        {
            "pct": ("referrals", "attendances", 100),
            "per_1000": ("referrals", "list_size", 1000),
        },
        public_columns=["list_size"],
    )
    pd.testing.assert_frame_equal(table, before)  # input untouched
    assert out["referrals"].tolist()[:5] == [15, "*", 0, 10, 50]
    assert out["referrals"].iloc[5] is pd.NA
    assert out["attendances"].tolist() == [10, 100, 40, 0, "*", 30]
    # percentages from the ROUNDED counts (15/10, not 13/12), suppressed when an input is
    pct = out["pct"].tolist()
    assert pct[0] == pytest.approx(150.0)  # 13/12 raw would be 108.3
    assert pct[1] == SUPPRESSED  # numerator suppressed
    assert pct[2] == pytest.approx(0.0)  # 0 / 40
    assert pct[3] is pd.NA  # denominator 0
    assert pct[4] == SUPPRESSED  # denominator suppressed
    assert pct[5] is pd.NA  # numerator missing
    # rate per 1,000 on a public denominator: rounded numerator / raw list size
    rate = out["per_1000"].tolist()
    assert rate[0] == pytest.approx(15 / 2000 * 1000)
    assert rate[3] == pytest.approx(10 / 5000 * 1000)  # 9 -> 10
    assert rate[1] == SUPPRESSED
    # untouched columns
    assert out["list_size"].tolist() == table["list_size"].tolist()
    assert out["sir"].tolist() == table["sir"].tolist()
    assert list(out.columns) == [*table.columns, "pct", "per_1000"]
    assert out["pct"].dtype == object and out["referrals"].dtype == object


def test_ratio_decimals_and_overwrite_existing_column(table):
    t = table.assign(pct=[1.0] * 6)  # a raw percentage that must be replaced
    out = disclose_table(t, ["referrals", "attendances"], {"pct": ("referrals", "attendances", 100)}, ratio_decimals=1)
    assert out["pct"].iloc[0] == 150.0
    out2 = disclose_table(
        pd.DataFrame({"a": [10, 8], "b": [15, 30]}), ["a", "b"], {"r": ("a", "b", 100)}, ratio_decimals=1
    )
    assert out2["r"].tolist() == [66.7, 33.3]  # 10/15, 10/30


def test_table_thresholds_passed_through():
    df = pd.DataFrame({"n": [5, 6, 15], "d": [20, 20, 20]})
    out = disclose_table(df, ["n", "d"], {"pct": ("n", "d", 100)}, suppress_max=5, round_to=10)
    assert out["n"].tolist() == ["*", 10, 20]
    assert out["pct"].tolist() == ["*", 50.0, 100.0]


def test_table_suppression_propagates_even_when_other_input_is_zero():
    df = pd.DataFrame({"n": [3], "d": [0]})
    assert disclose_table(df, ["n", "d"], {"r": ("n", "d", 1)})["r"].tolist() == ["*"]


def test_table_duplicate_index_is_kept():
    df = pd.DataFrame({"n": [3, 13]}, index=["x", "x"])
    out = disclose_table(df, ["n"])
    assert out["n"].tolist() == ["*", 15]


def test_table_errors(table):
    with pytest.raises(ValueError, match="not in the table"):
        disclose_table(table, ["nope"])
    with pytest.raises(ValueError, match="neither a disclosed count column nor a public column"):
        # list_size not declared public: refuse to compute a ratio from an undisclosed column
        disclose_table(table, ["referrals"], {"r": ("referrals", "list_size", 1000)})
    with pytest.raises(ValueError, match="overwrite a count column"):
        disclose_table(table, ["referrals", "attendances"], {"referrals": ("referrals", "attendances", 1)})
    with pytest.raises(ValueError, match="expected"):
        disclose_table(table, ["referrals", "attendances"], {"r": ("referrals", "attendances")})
    with pytest.raises(ValueError, match="multiplier"):
        disclose_table(table, ["referrals", "attendances"], {"r": ("referrals", "attendances", "100")})
    with pytest.raises(ValueError, match="both counts and public"):
        disclose_table(table, ["referrals"], public_columns=["referrals"])
    with pytest.raises(ValueError, match="ratio_decimals"):
        disclose_table(table, ["referrals", "attendances"], {"r": ("referrals", "attendances", 1)}, ratio_decimals=1.5)
    bad = table.assign(referrals=[1, 2, -3, 4, 5, 6])
    with pytest.raises(ValueError, match=r"'referrals' at position\(s\) 2"):
        disclose_table(bad, ["referrals"])


# --------------------------------------------------------------------------------------------------
# totals
# --------------------------------------------------------------------------------------------------
def test_round_total_independent_of_components():
    components = [9, 9, 9]
    published = disclose_counts(components).tolist()
    assert published == [10, 10, 10]
    assert round_total(sum(components)) == 25  # 27 -> 25, not 30: totals do not add up
    assert round_total(12 + 13) == 25  # components publish as 10 and 15
    assert round_total(0) == 0
    assert round_total(6) == SUPPRESSED  # a small total is still a small count
    assert round_total(1003) == 1005
    assert round_total(1003, round_to=10) == 1000
    assert round_total(15, round_to=10) == 20
    assert round_total(None) is pd.NA
    assert isinstance(round_total(np.int64(48)), int)
    with pytest.raises(ValueError):
        round_total(-1)


def test_footnote():
    assert "rounded independently" in TOTALS_FOOTNOTE
    assert "1 to 7" in TOTALS_FOOTNOTE and "nearest 5" in TOTALS_FOOTNOTE and "*" in TOTALS_FOOTNOTE
    assert "1 to 5" in disclosure_footnote(5, 10) and "nearest 10" in disclosure_footnote(5, 10)
