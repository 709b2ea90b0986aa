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
