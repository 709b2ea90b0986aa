"""Tests for pbc_analysis.evaluation: panels and series built from the validated sample."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pbc_analysis import data as D
from pbc_analysis import evaluation as ev
from pbc_analysis import paths


@pytest.fixture(scope="module")
def sample():
    inputs = D.load_inputs(paths.SAMPLE_DIR, "2003-04", "2008-03")
    truth = json.loads((paths.SAMPLE_DIR / "ground_truth.json").read_text())
    return inputs, truth


def test_month_index():
    assert ev.month_index(["2003-04", "2003-05", "2004-04", "2005-03"], "2003-04").tolist() == [1, 2, 13, 24]


def test_panel_is_balanced_and_adds_up(sample):
    inputs, _ = sample
    p = ev.practice_month_panel(inputs)
    n_spec = inputs.referrals["specialty_code"].nunique()
    assert len(p) == 60 * 60 * (n_spec + 1)
    assert not p.duplicated(["practice_code", "specialty_code", "t"]).any()
    allr = p[p["specialty_code"] == "all"]
    assert allr["events"].sum() == inputs.referrals["referrals"].sum()
    assert p[p["specialty_code"] != "all"]["events"].sum() == inputs.referrals["referrals"].sum()
    reg = inputs.population.groupby(["practice_code", "month"])["registered"].sum()
    got = allr.set_index(["practice_code", "month"])["registered"]
    assert np.array_equal(got.sort_index().to_numpy(), reg.sort_index().to_numpy().astype(float))
    one = allr.iloc[0]
    assert one["rate"] == pytest.approx(12000 * one["events"] / one["registered"])


def test_cohorts_follow_engagement(sample):
    inputs, truth = sample
    p = ev.practice_month_panel(inputs, specialties=["110"], include_all=False)
    coh = p.groupby("practice_code")["cohort"].first()
    for c in truth["engagement"]["cohorts"]:
        expected = ev.month_index([c["start_month"]], "2003-04")[0]
        assert (coh.loc[c["practices"]] == expected).all()
    assert (coh.loc[truth["engagement"]["never_engaged"]] == 0).all()
    # post switches on at the cohort month and stays on
    x = p[p["cohort"] > 0]
    assert ((x["t"] >= x["cohort"]) == (x["post"] == 1)).all()
    with pytest.raises(ValueError, match="specialties"):
        ev.practice_month_panel(inputs, specialties=["999"])


def test_pct_series_by_engagement(sample):
    inputs, _ = sample
    p = ev.practice_month_panel(inputs)
    s = ev.pct_series(p)
    assert len(s) == 60 and s["events"].sum() == inputs.referrals["referrals"].sum()
    g = ev.pct_series(p, by_engagement=True)
    assert set(g["group"]) == {"engaged", "never"} and g["events"].sum() == s["events"].sum()
    assert s["calendar_month"].iloc[0] == 4


def test_planted_truth_tables(sample):
    _, truth = sample
    t = ev.planted_truth(truth)
    assert len(t["effects"]) == 12 and (t["effects"]["delta"] > 0).all()
    assert np.allclose(np.exp(t["effects"]["log_effect"]), 1 - t["effects"]["delta"])
    assert t["cohorts"]["n_practices"].sum() + len(truth["engagement"]["never_engaged"]) == 60
    assert (t["avoided"]["referrals_avoided"] >= 0).all()


def test_its_frame(sample):
    inputs, _ = sample
    s = ev.pct_series(ev.practice_month_panel(inputs))
    f = ev.its_frame(s, "2005-04", end="2007-12")
    assert f["month"].max() == "2007-12" and f["post"].sum() == 33 and f["post"].iloc[23] == 0
    with pytest.raises(ValueError, match="interruption month '2009-01'"):
        ev.its_frame(s, "2009-01")
    with pytest.raises(ValueError, match="no pre or no post"):
        ev.its_frame(s, "2003-04")


def test_regression_to_the_mean_by_hand():
    """Four never-engaged practices with equal lists; baseline rates 4, 2, 1, 1 and follow-up 2, 2, 2, 2:
    PCT rate 2 then 2, so baseline ratios 2, 1, .5, .5 and follow-up ratios 1 each; the top quarter
    (one practice) falls from 2 to 1."""
    import pandas as pd

    rows = []
    for code, base in (("A", 4), ("B", 2), ("C", 1), ("D", 1)):
        rows.append({"practice_code": code, "specialty_code": "all", "cohort": 0, "month": "2003-04",
                     "events": base, "registered": 100})
        rows.append({"practice_code": code, "specialty_code": "all", "cohort": 0, "month": "2004-04",
                     "events": 2, "registered": 100})
    rows.append({"practice_code": "E", "specialty_code": "all", "cohort": 5, "month": "2003-04", "events": 50,
                 "registered": 100})  # engaged: left out
    out = ev.regression_to_the_mean(pd.DataFrame(rows), ("2003-04", "2003-04"), ("2004-04", "2004-04"), top_share=0.25)
    top = out.set_index("group").loc["top"]
    assert top["practices"] == 1 and top["baseline_ratio"] == pytest.approx(2.0) and top["follow_up_ratio"] == pytest.approx(1.0)
    rest = out.set_index("group").loc["rest"]
    assert rest["baseline_ratio"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    with pytest.raises(ValueError, match="top_share"):
        ev.regression_to_the_mean(pd.DataFrame(rows), ("2003-04", "2003-04"), ("2004-04", "2004-04"), top_share=1.5)
