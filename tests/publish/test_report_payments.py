"""The payment schedule: every engaged practice with its gates, payment, settlement and reason."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pbc_analysis.publish import report, report_payments, results
from pbc_analysis.stages import attribution as at


def _sharing() -> pd.DataFrame:
    led = pd.DataFrame({
        "level": "practice", "engaged": True, "unit": ["A00001", "A00002", "A00003", "A00004", "A00005"],
        "financial_year": "2007/08", "spend": [900.0, 900.0, 900.0, 1100.0, 900.0],
        "practice_action_savings": [50.0, 200.0, 80.0, 60.0, 40.0],
        "savings_ci_low": [10.0, 150.0, 20.0, -5.0, -10.0], "savings_ci_high": [90.0, 250.0, 140.0, 115.0, 90.0]})
    budgets = pd.DataFrame({"practice_code": ["A00001", "A00002", "A00003", "A00004"], "financial_year": "2007/08",
                            "budget": 1000.0})
    flags = pd.DataFrame({"period": "2007/08", "practice_code": led["unit"], "measure": "referrals",
                          "specialty_code": "all", "possible_under_referrer": [False, False, True, False, False]})
    quarters = pd.DataFrame({"practice_code": np.repeat(led["unit"].to_numpy(), 4),
                             "quarter": [f"2007/08 Q{i}" for i in (1, 2, 3, 4)] * 5, "engaged_months": 3.0,
                             "savings": 5.0})
    sh, _ = at.share_savings(led, budgets, flags, quarters, practice_share=0.7, sustained_quarters=4,
                             min_payment=40.0, lag_adjusted=["2008-03"])
    sh.insert(1, "practice_name", ["One Surgery", "Two Practice", "Three MC", "Four HC", "Five"])
    return sh


def test_schedule_shows_each_gate_and_payment_by_hand():
    t = report_payments.schedule_frame(_sharing(), "estimate", 40.0).set_index("Practice")
    assert list(t.index)[0] == "A00002 Two Practice"          # the largest payment first: 0.7 x 100 = 70
    assert t.loc["A00002 Two Practice", "Payable to practice"] == "70"
    assert t.loc["A00002 Two Practice", "Spend below budget"] == "yes, by 100"
    # A00001: 0.7 x 50 = 35 < 40: not paid, the PCT keeps the 50
    one = t.loc["A00001 One Surgery"]
    assert one["Minimum payment (GBP 40)"] == "not reached" and one["Payable to practice"] == "0"
    assert one["To the PCT"] == "50" and one["Status"] == "below minimum payment"
    assert t.loc["A00003 Three MC", "Review gate (benchmarking flag)"] == "held"
    assert t.loc["A00004 Four HC", "Spend below budget"] == "no"
    assert t.loc["A00004 Four HC", "Interval excludes zero"] == "no"
    assert t.loc["A00005 Five", "Budget"] == "none"
    assert set(t["Settlement"]) == {"provisional"}
    assert "Attributed (point estimate)" in t.columns
    assert "Attributed (lower end of interval)" in report_payments.schedule_frame(_sharing(), "ci_low").columns


def test_sample_report_has_the_payment_schedule_of_every_engaged_practice(sample_run):
    res = results.read_results(sample_run)
    sh = res["attribution"]["sharing"]
    tables = report.extract_tables((sample_run / "report.html").read_text(encoding="utf-8"))
    sched = [t for t in tables if t["caption"].startswith("Payment schedule")]
    assert len(sched) == 1
    rows = sched[0]["rows"]
    assert len(rows) == sh["engaged_practices"]
    header = sched[0]["headers"]
    paid = sum(1 for r in rows if r[header.index("Payable to practice")] not in ("0", ""))
    assert paid == sh["practices_paid"]
    assert sum(1 for r in rows if r[header.index("Settlement")] == "provisional") == len(rows)
    assert "P89334" in " ".join(r[0] for r in rows if r[header.index("Status")] == "below minimum payment")
