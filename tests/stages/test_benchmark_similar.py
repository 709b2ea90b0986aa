"""Similar practices ("similar 10"), the opportunity against them, and every practice's monthly SPC."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pbc_analysis.stages.benchmark import similar


def _line(values=(0.0, 1.0, 2.0, 3.0, 4.0), codes=("A", "B", "C", "D", "E")) -> pd.DataFrame:
    """Practices on a line: one feature, so the nearest are known by hand."""
    return pd.DataFrame({"practice_code": list(codes), "imd_score": list(values)})


def _peers(table: pd.DataFrame) -> dict[str, list[str]]:
    return {c: g.sort_values("peer_rank")["peer_code"].tolist() for c, g in table.groupby("practice_code")}


def test_five_practices_on_a_line_have_their_neighbours_as_peers():
    got = similar.similar_practices(_line(), k=2, columns=("imd_score",), log=())
    # equal distances (B is as far from A as from C) go to the lower code
    assert _peers(got) == {"A": ["B", "C"], "B": ["A", "C"], "C": ["B", "D"], "D": ["C", "E"], "E": ["D", "C"]}
    sd = np.std([0.0, 1.0, 2.0, 3.0, 4.0])   # z-scored over the practices: population SD sqrt(2)
    a = got[got["practice_code"] == "A"]["distance"].to_numpy()
    np.testing.assert_allclose(a, [1 / sd, 2 / sd], atol=1e-10)   # distances are rounded to 10 decimals
    assert got["peer_rank"].tolist() == [1, 2] * 5


def test_ties_and_row_order_do_not_change_the_answer():
    f = _line(values=(5.0, 5.0, 5.0, 9.0, 1.0), codes=("P3", "P1", "P2", "P5", "P4"))
    a = similar.similar_practices(f, k=3, columns=("imd_score",), log=())
    b = similar.similar_practices(f.iloc[::-1].reset_index(drop=True), k=3, columns=("imd_score",), log=())
    pd.testing.assert_frame_equal(a, b)
    # P1, P2, P3 are identical: each other's nearest, in code order, then the nearer of P4 (1) and P5 (9): a tie
    # (both 4 away) that goes to the lower code
    assert _peers(a)["P1"] == ["P2", "P3", "P4"] and _peers(a)["P3"] == ["P1", "P2", "P4"]


def test_a_practice_is_never_its_own_peer_and_every_other_is_listed_once():
    rng = np.random.default_rng(1)
    f = pd.DataFrame({"practice_code": [f"P{i:02d}" for i in range(12)], "list_size": rng.integers(2000, 20000, 12),
                      "share_0_14": rng.uniform(0.1, 0.3, 12), "share_65_plus": rng.uniform(0.05, 0.3, 12),
                      "imd_score": rng.uniform(3, 60, 12)})
    got = similar.similar_practices(f, k=11)
    assert not (got["practice_code"] == got["peer_code"]).any()
    for code, peers in _peers(got).items():
        assert sorted(peers) == sorted(set(f["practice_code"]) - {code})
    d = got.pivot(index="practice_code", columns="peer_rank", values="distance").to_numpy()
    assert (np.diff(d, axis=1) >= 0).all()  # nearest first


def test_k_larger_than_the_other_practices_is_capped_and_k_below_one_refused():
    got = similar.similar_practices(_line(), k=10, columns=("imd_score",), log=())
    assert got.groupby("practice_code").size().tolist() == [4] * 5
    assert similar.similar_practices(_line(values=(1.0,), codes=("A",)), k=10, columns=("imd_score",), log=()).empty
    with pytest.raises(ValueError, match="k must be >= 1"):
        similar.similar_practices(_line(), k=0, columns=("imd_score",), log=())
    with pytest.raises(ValueError, match="missing or infinite"):
        similar.similar_practices(_line(values=(0.0, 1.0, np.nan, 3.0, 4.0)), columns=("imd_score",), log=())
    with pytest.raises(ValueError, match="more than once"):
        similar.similar_practices(_line(codes=("A", "A", "C", "D", "E")), columns=("imd_score",), log=())


def test_list_size_is_compared_on_the_log_scale():
    f = pd.DataFrame({"practice_code": ["A", "B", "C"], "list_size": [4000, 8000, 16000]})
    got = similar.similar_practices(f, k=2, columns=("list_size",))
    d = dict(zip(zip(got["practice_code"], got["peer_code"]), got["distance"]))
    assert d[("B", "A")] == pytest.approx(d[("B", "C")])   # 8,000 is as far from 4,000 as from 16,000
    assert _peers(got)["B"] == ["A", "C"]


def test_a_practice_identical_to_ten_others_is_matched_with_them():
    rng = np.random.default_rng(7)
    n = 50
    f = pd.DataFrame({"practice_code": [f"Q{i:03d}" for i in range(n)], "list_size": rng.integers(2000, 30000, n),
                      "share_0_14": rng.uniform(0.08, 0.35, n), "share_65_plus": rng.uniform(0.05, 0.3, n),
                      "imd_score": rng.uniform(3, 70, n)})
    twins = [f"T{i:02d}" for i in range(10)]
    target = {"list_size": 9000, "share_0_14": 0.19, "share_65_plus": 0.17, "imd_score": 22.0}
    f = pd.concat([f, pd.DataFrame([{"practice_code": c, **target} for c in ["TARGET", *twins]])], ignore_index=True)
    got = similar.similar_practices(f, k=10)
    mine = got[got["practice_code"] == "TARGET"]
    assert sorted(mine["peer_code"]) == twins and (mine["distance"] == 0).all()


def _ratios(rows) -> pd.DataFrame:
    return pd.DataFrame([{"period": "2007/08", "practice_code": c, "measure": "referrals", "specialty_code": "all",
                          "observed": o, "expected": e} for c, o, e in rows])


def test_opportunity_against_hand_arithmetic():
    ratios = _ratios([("A", 120, 100.0), ("B", 80, 100.0), ("C", 50, 50.0), ("D", 60, 50.0), ("E", 10, 40.0)])
    sim = pd.DataFrame({"practice_code": ["A", "A", "A", "B", "B"], "peer_rank": [1, 2, 3, 1, 2],
                        "peer_code": ["B", "C", "D", "A", "E"], "distance": [1.0, 2.0, 3.0, 1.0, 2.0]})
    got = similar.peer_opportunity(ratios, sim, measures=("referrals",)).set_index("practice_code")
    a = got.loc["A"]
    # A's peers' ratios: B 0.8, C 1.0, D 1.2 -> median 1.0; 25th percentile (linear) 0.8 + 0.5 * 0.2 = 0.9
    assert a["n_peers"] == 3 and a["ratio"] == pytest.approx(1.2)
    assert a["peer_median_ratio"] == pytest.approx(1.0) and a["peer_best_quartile_ratio"] == pytest.approx(0.9)
    assert a["at_peer_median"] == pytest.approx(100.0) and a["at_peer_best_quartile"] == pytest.approx(90.0)
    assert a["opportunity_at_median"] == pytest.approx(20.0) and a["opportunity_at_best_quartile"] == pytest.approx(30.0)
    b = got.loc["B"]
    # B's peers: A 1.2, E 0.25 -> median 0.725, 25th percentile 0.25 + 0.25 * 0.95 = 0.4875; B expected 100
    assert b["at_peer_median"] == pytest.approx(72.5) and b["at_peer_best_quartile"] == pytest.approx(48.75)
    assert b["opportunity_at_median"] == pytest.approx(80 - 72.5)
    assert math.isnan(got.loc["C", "peer_median_ratio"]) and got.loc["C", "n_peers"] == 0   # no peers listed


def test_opportunity_uses_the_latest_period_and_all_specialties_only():
    r = pd.concat([_ratios([("A", 100, 100.0), ("B", 50, 100.0)]),
                   _ratios([("A", 999, 1.0), ("B", 999, 1.0)]).assign(period="2006/07"),
                   _ratios([("A", 999, 1.0), ("B", 999, 1.0)]).assign(specialty_code="110")])
    sim = similar.similar_practices(pd.DataFrame({"practice_code": ["A", "B"], "imd_score": [1.0, 2.0]}), k=1,
                                    columns=("imd_score",), log=())
    got = similar.peer_opportunity(r, sim, measures=("referrals", "ae")).set_index("practice_code")
    assert got["period"].unique().tolist() == ["2007/08"] and got["measure"].unique().tolist() == ["referrals"]
    assert got.loc["A", "at_peer_median"] == pytest.approx(50.0)   # B's ratio 0.5 x A's expected 100


def test_practice_features_by_hand():
    rows = []
    for code, counts in (("P1", {"0-4": 10, "10-14": 10, "40-44": 60, "65-69": 16, "90+": 4}),
                         ("P2", {"0-4": 0, "40-44": 100})):
        for band, n in counts.items():
            rows += [{"practice_code": code, "month": "2008-03", "age_band": band, "sex": s, "registered": n // 2}
                     for s in ("F", "M")]
            rows += [{"practice_code": code, "month": "2008-02", "age_band": band, "sex": "F", "registered": 999}]
    practices = pd.DataFrame({"practice_code": ["P2", "P1"], "practice_name": ["Two", "One"],
                              "consortium": ["X", "Y"], "imd_score": [30.0, 10.0]})
    got = similar.practice_features(pd.DataFrame(rows), practices).set_index("practice_code")
    assert got.loc["P1", "list_size"] == 100 and got.loc["P1", "month"] == "2008-03"
    assert got.loc["P1", "share_0_14"] == pytest.approx(0.2) and got.loc["P1", "share_65_plus"] == pytest.approx(0.2)
    assert got.loc["P2", "share_0_14"] == 0 and got.loc["P2", "practice_name"] == "Two"
    assert list(got.index) == ["P1", "P2"]
    with pytest.raises(ValueError, match="not in the population"):
        similar.practice_features(pd.DataFrame(rows), practices, month="2001-01")


def test_practice_spc_says_higher_or_lower_never_improvement():
    months = [f"{2005 + (i + 3) // 12}-{(i + 3) % 12 + 1:02d}" for i in range(36)]
    ratio = np.r_[np.tile([0.98, 1.02], 12), np.full(12, 1.5)]   # a step up after two years
    monthly = pd.DataFrame({"period": months, "practice_code": "P1", "measure": "referrals", "specialty_code": "all",
                            "observed": (ratio * 100).round().astype(int), "expected": 100.0, "ratio": ratio})
    other = monthly.assign(measure="ae", ratio=0.1)
    got = similar.practice_spc(pd.concat([monthly, other]), baseline=24)
    assert len(got) == 36 and got["observed"].iloc[-1] == 150
    assert set(got["point_type"].iloc[24:]) == {"special_cause_neutral_high"}
    assert not got["point_type"].str.contains("improvement|concern").any()
    assert set(got["special_cause"]) <= {"none", "neither"}


def test_on_the_sample_every_practice_has_ten_peers(sample_inputs):
    f = similar.practice_features(sample_inputs.population, sample_inputs.practices)
    got = similar.similar_practices(f)
    assert set(got["practice_code"]) == set(sample_inputs.practices["practice_code"].astype(str))
    assert got.groupby("practice_code").size().eq(10).all()
    assert got.groupby("practice_code")["peer_code"].nunique().eq(10).all()
