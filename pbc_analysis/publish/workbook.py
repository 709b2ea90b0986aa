"""The finance workbook (``finance.xlsx``): the payment schedule and the budget statements as spreadsheets.

Finance teams work in spreadsheets, so the published bundle carries one workbook beside the report, written from
the bundle's own disclosed tables (never the private ones): a "Read me" sheet (the run, the basis of payment, the
budget basis, the disclosure rule), the payment schedule of every engaged practice for the evaluation year
(:func:`pbc_analysis.publish.report_payments.schedule_frame`'s columns, as numbers), the budgets on one basis
(:func:`pbc_analysis.publish.finance.budget_basis_frame`), the budget statement of every practice and the risk pool's
threshold table. Cells are values, never formulas: a text cell that a spreadsheet would read as a formula
(``=``, ``+``, ``-``, ``@``) is written as text by openpyxl's data type and prefixed as the CSV tables are
(:func:`pbc_analysis.publish.bundle.neutralise_formulas` rule). The file is byte-identical for the same tables: the
document's dates are fixed and the zip entries carry a fixed time.

References
----------
openpyxl (https://openpyxl.readthedocs.io), the Python library for Office Open XML workbooks; ECMA-376 (Office Open
XML file formats); OWASP, CSV injection.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pbc_analysis.publish import results
from pbc_analysis.publish.finance import BASIS_WORDS, budget_basis_frame

__all__ = ["WORKBOOK", "payment_frame", "write_finance_workbook"]

WORKBOOK = "finance.xlsx"
_FIXED = dt.datetime(2000, 1, 1)
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_MODIFIED = re.compile(r"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)")
_FIXED_MODIFIED = r"\g<1>2000-01-01T00:00:00Z\g<2>"

_PAYMENT_COLUMNS = {
    "practice_code": "Practice code", "practice_name": "Practice", "financial_year": "Financial year",
    "practice_action_savings": "Practice-action saving (GBP)", "savings_ci_low": "Saving, 95% CI low (GBP)",
    "savings_ci_high": "Saving, 95% CI high (GBP)", "attributed": "Attributed on the basis of payment (GBP)",
    "budget": "Budget issued (GBP)", "spend": "Spend (GBP)", "underspend": "Underspend (GBP)",
    "under_referrer_flag": "Possible under-referrer", "reviewed": "Review cleared", "recurrent": "Recurrent",
    "eligible": "Eligible (GBP)", "to_practice": "Payable to practice (GBP)", "to_pct": "To the PCT (GBP)",
    "retained_by_pct": "Retained by the PCT (GBP)", "settlement": "Settlement", "status": "Status", "reason": "Reason"}


def payment_frame(sharing: pd.DataFrame) -> pd.DataFrame:
    """The payment schedule of the latest year of ``att_sharing`` as numbers, largest payment first.

    Parameters
    ----------
    sharing : pandas.DataFrame
        The (published) ``att_sharing`` table.

    Returns
    -------
    pandas.DataFrame
        The columns of :data:`_PAYMENT_COLUMNS` present, renamed for the reader.

    References
    ----------
    Audit Commission (2007), Putting commissioning into practice, chapter 4.
    """
    year = sorted(sharing["financial_year"].astype(str).unique())[-1]
    y = sharing[sharing["financial_year"].astype(str) == year]
    y = y.sort_values(["to_practice", "practice_code"], ascending=[False, True], kind="stable")
    cols = [c for c in _PAYMENT_COLUMNS if c in y.columns]
    return y[cols].rename(columns=_PAYMENT_COLUMNS).reset_index(drop=True)


def _cell(v: Any) -> Any:
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
        return None
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, str) and v.startswith(_FORMULA_START):
        return "'" + v
    return v


def _sheet(wb: Any, title: str, frame: pd.DataFrame, money: tuple[str, ...] = ()) -> None:
    from openpyxl.styles import Font

    ws = wb.create_sheet(title)
    ws.append([str(c) for c in frame.columns])
    for c in ws[1]:
        c.font = Font(bold=True)
    for row in frame.itertuples(index=False):
        ws.append([_cell(v) for v in row])
    for j, name in enumerate(frame.columns, start=1):
        letter = ws.cell(row=1, column=j).column_letter
        width = max([len(str(name))] + [len(str(v)) for v in frame[name].head(200)])
        ws.column_dimensions[letter].width = min(60, max(10, width + 2))
        if name in money or "(GBP)" in str(name):
            for cell in ws[letter][1:]:
                cell.number_format = "#,##0"
    ws.freeze_panes = "A2"


def _read_me(run_id: str, res: dict[str, Any]) -> pd.DataFrame:
    sharing = ((res.get("attribution") or {}).get("sharing") or {})
    risk = ((res.get("budgets") or {}).get("risk") or {})
    basis = "lower end of the 95% interval" if sharing.get("basis") == "ci_low" else "point estimate"
    rows = [("Run", run_id),
            ("Contents", "payment schedule of the evaluation year, budgets on one basis, budget statement, risk pool "
                         "thresholds; values only, no formulas"),
            ("Basis of payment", f"the attributed practice-action saving's {basis}; a share below GBP "
                                 f"{float(sharing.get('min_payment', 0.0)):,.0f} is not paid"),
            ("Budget basis", BASIS_WORDS.get(str(risk.get("budget_basis", "set")), "")),
            ("Provisional", "rows whose settlement is 'provisional' used lag-adjusted months: settle them when the "
                            "data are complete"),
            ("Disclosure", "counts follow the publishing rules of the report (1 to 7 shown as *, others rounded to 5); "
                           "money and modelled figures are exempt"),
            ("Estimates", "savings, intervals and forecasts are modelled estimates, not audited accounts")]
    return pd.DataFrame(rows, columns=["Item", "Value"])


def _deterministic(data: bytes) -> bytes:
    """The workbook's zip rewritten with every entry at a fixed time (same tables, same bytes)."""
    src = zipfile.ZipFile(io.BytesIO(data))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            entry = zipfile.ZipInfo(info.filename, date_time=_ZIP_TIME)
            entry.compress_type, entry.external_attr = zipfile.ZIP_DEFLATED, 0o600 << 16
            data = src.read(info.filename)
            if info.filename == "docProps/core.xml":  # openpyxl stamps the time of saving as "modified"
                data = _MODIFIED.sub(_FIXED_MODIFIED, data.decode("utf-8")).encode("utf-8")
            out.writestr(entry, data)
    return buf.getvalue()


def write_finance_workbook(bundle_dir: str | Path, path: str | Path | None = None, run_id: str = "") -> Path | None:
    """Write ``finance.xlsx`` from a bundle's disclosed tables and results.

    Parameters
    ----------
    bundle_dir : str or Path
        A directory with ``tables/*.csv`` and ``results.json`` (the ``published/`` bundle being built).
    path : str or Path, optional
        Where to write (default ``bundle_dir / "finance.xlsx"``).
    run_id : str
        The run's id, printed on the "Read me" sheet.

    Returns
    -------
    Path or None
        The workbook, or None when the run has neither sharing nor budgets to put in it.

    References
    ----------
    openpyxl documentation (workbook, styles, document properties); module docstring.
    """
    from openpyxl import Workbook

    bundle_dir = Path(bundle_dir)
    res = results.read_results(bundle_dir)
    tables = bundle_dir / results.TABLES
    sheets: list[tuple[str, pd.DataFrame]] = []
    if (tables / "att_sharing.csv").is_file():
        sheets.append(("Payment schedule", payment_frame(results.read_table(bundle_dir, "att_sharing"))))
    basis = budget_basis_frame(bundle_dir)
    if basis is not None:
        sheets.append(("Budgets on one basis", basis))
    if (tables / "bud_statement.csv").is_file():
        sheets.append(("Budget statement", results.read_table(bundle_dir, "bud_statement")))
    if (tables / "risk_thresholds.csv").is_file():
        sheets.append(("Risk pool thresholds", results.read_table(bundle_dir, "risk_thresholds")))
    if not sheets:
        return None
    wb = Workbook()
    wb.remove(wb.active)
    _sheet(wb, "Read me", _read_me(run_id, res))
    for title, frame in sheets:
        _sheet(wb, title, frame, money=("supplied_budget", "set_budget", "budget", "top_slice_contribution",
                                        "net_budget", "forecast_outturn"))
    wb.properties.created = wb.properties.modified = _FIXED
    wb.properties.creator = "pbc-evaluation"
    buf = io.BytesIO()
    wb.save(buf)
    out = Path(path) if path is not None else bundle_dir / WORKBOOK
    out.write_bytes(_deterministic(buf.getvalue()))
    return out
