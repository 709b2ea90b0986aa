"""p-values printed one way (pbc_analysis.core.numbers)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pbc_analysis.core import numbers


@pytest.mark.parametrize(("p", "cell", "text"), [
    (0.381709, "0.38", "p = 0.38"),
    (0.05, "0.05", "p = 0.05"),
    (0.0099, "0.010", "p = 0.010"),
    (0.001028, "0.001", "p = 0.001"),      # the sample's general surgery: not "0.00"
    (0.001, "0.001", "p = 0.001"),         # the floor itself is printed
    (0.0001915, "< 0.001", "p < 0.001"),   # the sample's urology
    (1e-16, "< 0.001", "p < 0.001"),
    (0.0, "< 0.001", "p < 0.001"),
    (1.0, "1.00", "p = 1.00"),
    (None, "not computable", "p not computable"),
    (math.nan, "not computable", "p not computable"),
    (np.float64("nan"), "not computable", "p not computable"),
    ("x", "not computable", "p not computable"),
])
def test_p_values_are_printed_by_hand_computed_rule(p, cell, text):
    assert numbers.p_value(p) == cell
    assert numbers.p_text(p) == text


def test_no_p_value_below_the_floor_prints_as_zero():
    for p in np.geomspace(1e-12, 0.0099, 200):
        cell = numbers.p_value(p)
        assert cell == "< 0.001" or float(cell) > 0, (p, cell)



def test_gbp_text_whole_pounds_and_missing_as_blank():
    from pbc_analysis.core.numbers import gbp_text

    assert gbp_text(1234567.49) == "1,234,567" and gbp_text(-96765.22) == "-96,765" and gbp_text(0) == "0"
    assert gbp_text(None) == gbp_text(float("nan")) == gbp_text("x") == ""
