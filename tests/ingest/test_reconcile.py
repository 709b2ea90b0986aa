"""The reconciliation table: read = aggregated + excluded per source (rows, cost); a broken table is refused."""

from __future__ import annotations

import pandas as pd
import pytest

from pbc_analysis.ingest import reconcile


def _rows():
    return ([{"source": "ae", "outcome": "excluded", "reason": "outside_window", "rows": 3, "cost": 300.0, "priced_rows": 0,
              "priced_cost": 0.0, "merged_rows": 0}]
            + reconcile.counted("registrations", 1200, {"total_row": 42, "other_commissioner": 480}, merged=240)
            + [{"source": "ae", "outcome": "read", "reason": "", "rows": 52, "cost": 3900.0, "priced_rows": 0,
                "priced_cost": 0.0, "merged_rows": 0},
               {"source": "ae", "outcome": "excluded", "reason": "duplicate_event_id", "rows": 2, "cost": 200.0,
                "priced_rows": 0, "priced_cost": 0.0, "merged_rows": 0},
               {"source": "ae", "outcome": "excluded", "reason": "practice_code_missing", "rows": 3, "cost": 300.0,
                "priced_rows": 0, "priced_cost": 0.0, "merged_rows": 0},
               {"source": "ae", "outcome": "aggregated", "reason": "", "rows": 44, "cost": 3100.0, "priced_rows": 15,
                "priced_cost": 2250.0, "merged_rows": 4}])


def test_table_is_sorted_and_adds_up():
    t = reconcile.table(_rows())
    assert list(t.columns) == list(reconcile.COLUMNS)
    assert list(zip(t.source, t.outcome, t.reason)) == [
        ("ae", "read", ""), ("ae", "aggregated", ""), ("ae", "excluded", "duplicate_event_id"),
        ("ae", "excluded", "outside_window"), ("ae", "excluded", "practice_code_missing"),
        ("registrations", "read", ""), ("registrations", "aggregated", ""),
        ("registrations", "excluded", "other_commissioner"), ("registrations", "excluded", "total_row")]
    assert t.rows.iloc[5] == 1722   # 1200 + 42 + 480
    reconcile.check(t)   # 52 = 44 + 2 + 3 + 3; 3900 = 3100 + 200 + 300 + 300


def test_check_refuses_lost_rows_and_cost(tmp_path):
    t = reconcile.table(_rows())
    lost = t.copy()
    lost.loc[lost.reason == "outside_window", "rows"] = 2
    with pytest.raises(reconcile.ReconciliationError, match="ae: read 52 rows"):
        reconcile.check(lost)
    cost = t.copy()
    cost.loc[cost.reason == "outside_window", "cost"] = 300.01
    with pytest.raises(reconcile.ReconciliationError, match="cost 3900.00; aggregated \\+ excluded 52 rows, cost 3900.01"):
        reconcile.check(cost)
    reconcile.write(t, tmp_path / "r.csv")
    again = pd.read_csv(tmp_path / "r.csv", keep_default_na=False)
    assert again.rows.tolist() == t.rows.tolist()
    assert (tmp_path / "r.csv").read_text().splitlines()[0] == ",".join(reconcile.COLUMNS)
