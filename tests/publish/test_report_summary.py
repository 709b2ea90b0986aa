"""The executive summary's verdicts are computed from the evidence: flipping each input changes the sentence."""

from __future__ import annotations

import copy
import re

import pytest

from pbc_analysis.publish import report_summary, results


def _res() -> dict:
    """A run whose referral fall and saving are both shown and whose pre-trend tests all pass."""
    return {
        "evaluation": {"confidence": 0.95, "pretrend_p": 0.38, "pretrend_level": 0.05, "pretrend_failed": [],
                       "relative_effect_full": {"estimate": -0.056, "ci_low": -0.083, "ci_high": -0.029},
                       "referrals_avoided": {"estimate": 8908.0, "ci_low": 4200.0, "ci_high": 13600.0},
                       "referrals_avoided_by_year": {
                           "2006/07": {"estimate": 3631.0, "ci_low": 1421.0, "ci_high": 5841.0},
                           "2007/08": {"estimate": 3670.0, "ci_low": 1800.0, "ci_high": 5500.0}}},
        "attribution": {"evaluation_year": "2007/08",
                        "practice_action_savings": {"estimate": 3.97e6, "ci_low": 2.73e6, "ci_high": 5.2e6},
                        "data_lag": {"lag_months": 3, "completeness": {"first_op 2008-03": 0.5504, "ae 2008-01": 0.98}}},
    }


def _with(path: str, value) -> dict:
    res = copy.deepcopy(_res())
    *keys, last = path.split(".")
    d = res
    for k in keys:
        d = d[k]
    d[last] = value
    return res


def test_baseline_verdict_says_what_the_evidence_shows():
    t = report_summary.verdict_text(_res())
    assert "did refer less than comparable practices: about 6% fewer" in t and "3,670 referrals in 2007/08" in t
    assert "Practice action saved GBP 3.97 million (95% interval 2.73 to 5.20 million) in 2007/08" in t
    assert "does not reject them (p = 0.38), nor does any specialty's (at 0.05)" in t and "cannot prove it" in t
    assert "latest 3 months of hospital data were incomplete (as little as 55% " in t and "provisional" in t


@pytest.mark.parametrize(("path", "value", "present", "absent"), [
    ("evaluation.relative_effect_full", {"estimate": -0.02, "ci_low": -0.05, "ci_high": 0.01},
     "do not show that engaged practices referred less", "did refer less"),
    ("evaluation.relative_effect_full", {"estimate": 0.04, "ci_low": 0.01, "ci_high": 0.07},
     "referred more than comparable practices: about 4% more", "did refer less"),
    ("attribution.practice_action_savings", {"estimate": 0.8e6, "ci_low": -0.2e6, "ci_high": 1.8e6},
     "A saving from practice action in 2007/08 is not shown: the estimate is GBP 0.80 million but its 95% interval "
     "-0.20 to 1.80 million includes zero", "Practice action saved"),
    ("attribution.practice_action_savings", {"estimate": -0.5e6, "ci_low": -0.9e6, "ci_high": -0.1e6},
     "did not save money in 2007/08: it added GBP 0.50 million", "Practice action saved"),
    ("evaluation.pretrend_p", 0.0002,
     "reject parallel trends for all specialties together (p < 0.001, below 0.05)", "cannot prove it"),
    ("evaluation.pretrend_p", None, "could not be computed on these data, so the assumption is unchecked",
     "cannot prove it"),
    ("evaluation.pretrend_failed",
     [{"specialty_code": "100", "specialty_name": "General surgery", "pretrend_p": 0.001028},
      {"specialty_code": "101", "specialty_name": "Urology", "pretrend_p": 0.0001915}],
     "but it fails (below 0.05) for 100 General surgery (p = 0.001); 101 Urology (p < 0.001): those specialties' "
     "estimates are marked", "cannot prove it"),
    ("attribution.data_lag", {"lag_months": 0, "completeness": {}},
     "were complete; no month was scaled up", "provisional"),
])
def test_flipping_one_input_changes_its_sentence(path, value, present, absent):
    before, after = report_summary.verdict_text(_res()), report_summary.verdict_text(_with(path, value))
    assert after != before
    assert present in after and present not in before
    assert absent in before and absent not in after
    assert not re.search(r"p = 0\.00(?!\d)", after)


def test_a_stricter_confidence_moves_the_failing_level():
    res = _with("evaluation.pretrend_p", 0.03)
    assert "reject parallel trends" in report_summary.verdict_text(res)
    res["evaluation"]["pretrend_level"] = 0.01   # a 99% run: p = 0.03 passes
    assert "does not reject them (p = 0.03)" in report_summary.verdict_text(res)


def test_sections_not_run_give_only_the_caveats():
    t = report_summary.verdict_text({})
    assert "Verdict" not in t and t.startswith("**Caveats.** Engagement was chosen, not assigned")


def test_sample_run_names_the_specialties_whose_pre_trend_test_fails(sample_run):
    """On the sample, general surgery and urology fail the pre-trend test (p = 0.001, p < 0.001): the verdict names
    them with their p-values as printed, the effects table marks them, and no p-value is printed as 0.00."""
    res = results.read_results(sample_run)
    ev = res["evaluation"]
    eff = results.read_table(sample_run, "ev_did_effects")
    spec = eff[eff["specialty_code"] != "all"]
    failing = spec[spec["pretrend_p"] < ev["pretrend_level"]]
    assert ev["pretrend_level"] == pytest.approx(1 - ev["confidence"])
    assert [f["specialty_code"] for f in ev["pretrend_failed"]] == failing["specialty_code"].tolist()
    assert len(failing) >= 1
    text = report_summary.verdict_text(res)
    for f in ev["pretrend_failed"]:
        assert f"{f['specialty_code']} {f['specialty_name']} (p " in text
    html = (sample_run / "report.html").read_text(encoding="utf-8")
    assert "(fails at 0.05)" in html and ">0.00<" not in html
    assert html.count("(fails at 0.05)") == len(failing)


def _att_lines() -> dict:
    """An attribution section whose lines add up to the change (GBP)."""
    ci = lambda e, h: {"estimate": e, "ci_low": e - h, "ci_high": e + h}  # noqa: E731
    return {"evaluation_year": "2007/08", "base_year": "2004/05", "spend_base": 190.6e6, "spend": 214.5e6,
            "change": 23.9e6, "population": ci(4.9e6, 0.1e6), "need": ci(1.0e6, 0.1e6), "tariff": ci(6.0e6, 0.1e6),
            "provider_change": ci(-1.5e6, 1.4e6), "practice_action_savings": ci(4.0e6, 1.2e6),
            "unexplained": ci(17.5e6, 2.0e6), "referrals_avoided": 4477.2}


def test_spend_lines_are_one_year_in_one_sign_convention_and_add_up():
    att = _att_lines()
    lines = report_summary.spend_lines(att)
    assert lines["key"].tolist() == ["population", "need", "tariff", "provider_change", "practice_action", "unexplained"]
    pa = lines.set_index("key").loc["practice_action"]
    # a saving of 4.0m (2.8m to 5.2m) is a change in spend of -4.0m (-5.2m to -2.8m)
    assert (pa["estimate"], pa["ci_low"], pa["ci_high"]) == pytest.approx((-4.0e6, -5.2e6, -2.8e6))
    assert lines["estimate"].sum() == pytest.approx(att["change"])
    html = report_summary.executive_summary_table({"attribution": att}).data
    assert "Headline, 2007/08" in html and "+23.90m" in html and "-4.00m" in html and "+17.50m" in html
    assert "of which underlying growth in demand shared by all practices (trend and season)" in html


def test_the_largest_line_is_named_and_explained_and_moves_with_the_evidence():
    att = _att_lines()
    t = report_summary.growth_text(att)
    assert "The largest line is underlying growth in demand shared by all practices" in t
    assert "GBP +17.50 million" in t and "4.38 times the practice-action saving" in t
    att["tariff"] = {"estimate": 20.0e6, "ci_low": 19.9e6, "ci_high": 20.1e6}
    t2 = report_summary.growth_text(att)
    assert "The largest line is tariff (national prices)" in t2 and "The underlying growth line, GBP +17.50 million" in t2


def test_referrals_comparison_says_whether_the_two_estimates_agree():
    res = {"evaluation": _res()["evaluation"], "attribution": _att_lines()}
    t = report_summary.referrals_comparison_text(res)
    assert "gives 3,670 (1,800 to 5,500); the attribution model gives 4,477" in t and "agree within its precision" in t
    res["attribution"]["referrals_avoided"] = 7000.0
    assert "lies outside the evaluation's interval" in report_summary.referrals_comparison_text(res)
    assert report_summary.referrals_comparison_text({"evaluation": _res()["evaluation"]}) is None


def test_sample_underlying_growth_line_recovers_the_planted_trend_and_season(sample_run, sample_truth):
    """On the sample, the line left after population, need, tariff, provider change and practice action is the
    growth in demand the generator planted for every practice (``lmdi_secular_trend_and_season``): its interval
    covers the truth and the headline table shows it, with the lines adding up to the change."""
    res = results.read_results(sample_run)
    att = res["attribution"]
    truth = {r["financial_year"]: r for r in sample_truth["pct_year"]}[att["evaluation_year"]]
    growth = att["unexplained"]
    assert growth["ci_low"] <= truth["lmdi_secular_trend_and_season"] <= growth["ci_high"]
    assert growth["estimate"] == pytest.approx(truth["lmdi_secular_trend_and_season"], rel=0.15)
    lines = report_summary.spend_lines(att)
    assert lines["estimate"].sum() == pytest.approx(att["change"], abs=1.0)
    html = (sample_run / "report.html").read_text(encoding="utf-8")
    assert "underlying growth in demand shared by all practices (trend and season)" in html
    assert f"Headline, {att['evaluation_year']}" in html


def test_sample_text_and_table_agree_on_the_distance_from_target(sample_run):
    """The budgets text takes its range from the same rounding as the budget statement table shows: the smallest and
    largest "Distance from target" cells of the table are the text's "runs from X to Y" (once -22.2% vs -22.3%)."""
    from pbc_analysis.publish import report

    html = (sample_run / "report.html").read_text(encoding="utf-8")
    m = re.search(r"Distance from target runs from ([+-][0-9.]+%) to ([+-][0-9.]+%)", html)
    assert m is not None
    table = next(t for t in report.extract_tables(html) if t["caption"].startswith("Budget statement per practice"))
    j = table["headers"].index("Distance from target")
    cells = [row[j] for row in table["rows"]]
    as_number = sorted(cells, key=lambda c: float(c.rstrip("%")))
    assert (m.group(1), m.group(2)) == (as_number[0], as_number[-1])
