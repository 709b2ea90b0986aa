"""The budgets on one basis and the finance workbook: read from the run's tables, values not formulas, byte-stable."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from openpyxl import load_workbook

from pbc_analysis.pipeline import compare
from pbc_analysis.publish import finance, results, workbook


def _sheet(path, title) -> pd.DataFrame:
    wb = load_workbook(path, read_only=True)
    rows = list(wb[title].iter_rows(values_only=True))
    wb.close()
    return pd.DataFrame(rows[1:], columns=rows[0])


def test_budget_basis_frame_reads_one_basis_side_by_side(sample_run):
    """Every practice once; gross = the issued budget on the default basis; net = gross - top-slice to the penny;
    the set budget is the budget statement's; monitoring's forecast and status are risk_status's."""
    f = finance.budget_basis_frame(sample_run)
    statement = results.read_table(sample_run, "bud_statement").set_index("practice_code")
    status = results.read_table(sample_run, "risk_status").set_index("practice_code")
    assert f["practice_code"].is_unique and set(f["practice_code"]) == set(statement.index)
    f = f.set_index("practice_code")
    assert (f["budget_source"] == "supplied").all() and np.allclose(f["budget"], f["supplied_budget"])
    assert np.allclose(f["set_budget"], statement["budget"].reindex(f.index))
    assert np.allclose(f["net_budget"] + f["top_slice_contribution"], f["budget"], atol=0.011)
    assert np.allclose(f["forecast_outturn"], status["forecast_centre"].reindex(f.index))
    assert (f["status"] == status["status"].reindex(f.index)).all()
    html = finance.budget_basis_table(sample_run).data
    assert "Basis: the budget issued for the year (budgets.csv)" in html and "Net budget (GBP)" in html
    assert "Forecast outturn at " in html


def test_threshold_table_recommends_from_the_stage_figures(sample_run):
    t = results.read_table(sample_run, "risk_thresholds")
    risk = results.read_results(sample_run)["budgets"]["risk"]
    html = finance.threshold_table(sample_run).data
    assert f"{risk['threshold_gbp']:,.0f} (current)" in html
    for r in t.itertuples():
        assert f"{r.smallest_adequate_top_slice:.2%}" in html
    # the current threshold's row is the pool's own figure
    now = t.set_index("threshold").loc[risk["threshold_gbp"]]
    assert now["smallest_adequate_top_slice"] == pytest.approx(risk["smallest_adequate_top_slice"], abs=1e-4)


def test_workbook_in_the_bundle_holds_the_schedule_and_budgets(sample_run):
    book = sample_run / "published" / workbook.WORKBOOK
    assert book.is_file()
    wb = load_workbook(book, read_only=True)
    assert wb.sheetnames == ["Read me", "Payment schedule", "Budgets on one basis", "Budget statement",
                             "Risk pool thresholds"]
    wb.close()
    pay = _sheet(book, "Payment schedule")
    sharing = results.read_table(sample_run / "published", "att_sharing")
    year = sorted(sharing["financial_year"].unique())[-1]
    y = sharing[sharing["financial_year"] == year].set_index("practice_code")
    assert len(pay) == len(y) and set(pay["Financial year"]) == {year}
    got = pay.set_index("Practice code")["Payable to practice (GBP)"].astype(float)
    assert np.allclose(got, y["to_practice"].reindex(got.index).astype(float))
    assert got.is_monotonic_decreasing  # largest payment first
    assert set(pay["Settlement"]) <= {"final", "provisional"}
    budgets = _sheet(book, "Budgets on one basis")
    assert "pool_charge" not in budgets.columns  # withheld per practice: the cost of one or a few patients
    assert len(budgets) == len(results.read_table(sample_run, "bud_statement"))
    readme = _sheet(book, "Read me").set_index("Item")["Value"]
    assert readme["Run"] == sample_run.name
    assert "point estimate" in readme["Basis of payment"] and "budget issued" in readme["Budget basis"]
    assert "finance.xlsx" in (sample_run / "published" / "README.txt").read_text(encoding="utf-8")


def test_workbook_is_byte_stable_and_hostile_text_is_never_a_formula(sample_run, tmp_path):
    bundle = tmp_path / "published"
    shutil.copytree(sample_run / "published", bundle)
    first = workbook.write_finance_workbook(bundle, tmp_path / "a.xlsx", run_id=sample_run.name).read_bytes()
    assert first == workbook.write_finance_workbook(bundle, tmp_path / "b.xlsx", run_id=sample_run.name).read_bytes()
    assert first == (sample_run / "published" / workbook.WORKBOOK).read_bytes()
    path = bundle / "tables" / "att_sharing.csv"
    t = pd.read_csv(path, dtype=str, keep_default_na=False)
    rows = t.index[t["financial_year"] == sorted(t["financial_year"].unique())[-1]]
    t.loc[rows[0], "practice_name"] = '=HYPERLINK("http://example.invalid","x")'
    t.loc[rows[1], "practice_name"] = "@SUM(A1:A9)"
    t.to_csv(path, index=False)
    out = workbook.write_finance_workbook(bundle, tmp_path / "c.xlsx")
    wb = load_workbook(out)  # not read-only: data types are seen
    ws = wb["Payment schedule"]
    cells = [c for row in ws.iter_rows() for c in row]
    assert not any(c.data_type == "f" for c in cells)
    names = {c.value for c in cells if isinstance(c.value, str) and ("HYPERLINK" in c.value or "SUM(" in c.value)}
    assert names == {"'=HYPERLINK(\"http://example.invalid\",\"x\")", "'@SUM(A1:A9)"}


def test_verify_compares_workbooks_by_their_sheets(sample_run, tmp_path):
    """Identical bytes are identical; a changed payment is named by sheet and column; a missing sheet differs."""
    book = sample_run / "published" / workbook.WORKBOOK
    assert compare.compare_files(book, book).state == compare.IDENTICAL
    bundle = tmp_path / "published"
    shutil.copytree(sample_run / "published", bundle)
    same = workbook.write_finance_workbook(bundle, tmp_path / "same.xlsx", run_id=sample_run.name)
    assert compare.compare_files(book, same).state == compare.IDENTICAL
    path = bundle / "tables" / "att_sharing.csv"
    t = pd.read_csv(path, dtype=str, keep_default_na=False)
    latest = t["financial_year"] == sorted(t["financial_year"].unique())[-1]
    paid = t.index[latest & (t["to_practice"].astype(float) > 0)][0]
    t.loc[paid, "to_practice"] = str(float(t.loc[paid, "to_practice"]) + 1000.0)
    t.to_csv(path, index=False)
    changed = workbook.write_finance_workbook(bundle, tmp_path / "changed.xlsx", run_id=sample_run.name)
    c = compare.compare_files(book, changed)
    assert c.state == compare.DIFFERENT and any("[Payment schedule]" in d and "Payable to practice" in d
                                                for d in c.details)


def test_one_quantity_its_figures_side_by_side(sample_run):
    """The evaluation year's spend: recorded, completed for the lag and forecast, each from the section that uses it;
    the completeness of each lagged month by the three models, in words, never a point-of-delivery code."""
    res = results.read_results(sample_run)
    year = res["attribution"]["evaluation_year"]
    html = finance.spend_definitions_table(sample_run).data
    for value in (res["data_quality"]["cost_by_financial_year_gbp"][year], res["attribution"]["spend"],
                  res["budgets"]["monitoring"]["pct_forecast_outturn_gbp"]):
        assert f"{value:,.0f}" in html
    comp = finance.completeness_comparison_table(sample_run).data
    att = results.read_table(sample_run, "att_completeness")
    assert comp.count("<tr>") == len(att)  # one body row per lagged month and point of delivery
    assert "followup_op" not in comp and "Follow-up outpatient attendances" in comp
    for v in att["completeness"]:
        assert f"{v:.1%}" in comp
    report_html = (sample_run / "report.html").read_text(encoding="utf-8")
    assert f"Spend of {year}: one quantity" in report_html and "Completeness of the latest months by each model" in report_html
