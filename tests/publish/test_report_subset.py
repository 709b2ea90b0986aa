"""A run of some of the analysis notebooks (``run.notebooks``) still gives a complete, honest report."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pbc_analysis.core import paths
from pbc_analysis.publish import report_content, report_sections
from pbc_analysis.publish.report import check_self_contained

FULL = {"data_quality": {"practices": 40, "consortia": 4, "engaged_practices": 20,
                         "window": {"start_month": "2003-04", "end_month": "2008-03"}},
        "benchmarking": {"period": "2007/08"},
        "evaluation": {"referrals_avoided": {"estimate": 1.0, "ci_low": 0.0, "ci_high": 2.0}},
        "attribution": {"evaluation_year": "2007/08"},
        "budgets": {"target_year": "2007/08"},
        "validation": {"tables": []}}
PROV = {"run_id": "subset", "config_name": "sample",
        "parameters": {"01_data_quality": {"start_month": "2003-04", "end_month": "2008-03"},
                       "09_evaluation_report": {}}}


def _only(*sections: str) -> dict:
    return {k: v for k, v in FULL.items() if k in sections or k == "validation"}


def test_notebook_ran_reads_the_notebooks_section():
    res = _only("data_quality") | {"benchmarking": {}}
    assert report_sections.notebook_ran(res, "01_data_quality")
    assert not report_sections.notebook_ran(res, "02_benchmarking")          # empty section: did not run
    assert not report_sections.notebook_ran(res, "05_budgets_and_risk")      # absent
    assert report_sections.notebooks_run(FULL) == list(report_sections.NOTEBOOK_SECTIONS)
    assert report_sections.notebooks_run(_only("budgets", "data_quality")) == ["01_data_quality", "05_budgets_and_risk"]
    with pytest.raises(ValueError, match="'03_evaluation' is not an analysis notebook.*03_referral_evaluation"):
        report_sections.notebook_ran(FULL, "03_evaluation")


def test_not_run_text_names_the_notebook_and_the_setting():
    text = report_sections.not_run_text(_only("data_quality", "benchmarking"), PROV, "04_savings_attribution")
    assert text.startswith("*Not run in this run:* the savings attribution (notebook `04_savings_attribution`) "
                           "was not run in this run")
    assert "`run.notebooks` in the run config selected which notebooks ran: `01_data_quality`, `02_benchmarking`." in text
    none = report_sections.not_run_text(_only(), {}, "01_data_quality")
    assert "none of the analysis notebooks" in none and "run by hand" in none


def test_missing_headlines_text():
    assert report_sections.missing_headlines_text(FULL, PROV) is None
    text = report_sections.missing_headlines_text(_only("data_quality", "attribution"), PROV)
    assert "GP referrals avoided" in text and "`03_referral_evaluation` was not run" in text
    assert "04_savings_attribution" not in text.split("; `run.notebooks`")[0].split("Only the figures")[0]
    both = report_sections.missing_headlines_text(_only("data_quality"), PROV)
    assert "`03_referral_evaluation` was not run" in both and "`04_savings_attribution` was not run" in both
    assert both.endswith("selected which notebooks ran: `01_data_quality`.")


def test_title_block_without_data_quality_uses_the_provenance_window():
    text = report_content.title_block(_only("benchmarking"), PROV)
    assert "data from 2003-04 to 2008-03" in text
    assert "`01_data_quality` was not run" in text and "?" not in text
    full = report_content.title_block(FULL, PROV)
    assert "for 40 practices in 4 consortia, 20 of them engaged" in full


def _subset_config(notebooks: list[str]) -> str:
    text = (paths.PROJECT_ROOT / "configs" / "sample.yaml").read_text(encoding="utf-8")
    text, n = re.subn(r"(?m)^  name: sample$", f"  name: subset\n  notebooks: [{', '.join(notebooks)}]", text)
    assert n == 1
    return text


def _section(html_text: str, heading: str, next_heading: str) -> str:
    start = html_text.index(heading, html_text.find("</nav>") + 1)  # after the table of contents
    return html_text[start:html_text.index(next_heading, start)]


@pytest.mark.slow
def test_run_of_one_notebook_reports_the_others_as_not_run(tmp_path):
    from pbc_analysis.pipeline.config import parse_config
    from pbc_analysis.pipeline.run import run_pipeline

    cfg = parse_config(_subset_config(["01_data_quality"]), path=paths.PROJECT_ROOT / "configs" / "subset.yaml")
    assert cfg.notebooks == ("01_data_quality",)
    run_dir = run_pipeline(cfg, reports_dir=tmp_path, run_id="subset", echo=lambda *a, **k: None)
    page = Path(run_dir) / "report.html"
    assert page.is_file()
    html_text = page.read_text(encoding="utf-8")
    assert check_self_contained(html_text) == []
    assert "All input files passed validation." in html_text                 # data quality section rendered
    assert "Input files read and validated" in html_text
    assert "not run in this run" not in _section(html_text, "Data and data quality", "Benchmarking practices")
    for nb, heading, nxt in (("02_benchmarking", "Benchmarking practices", "Did engaged practices refer less?"),
                             ("03_referral_evaluation", "Did engaged practices refer less?", "Who saved what"),
                             ("04_savings_attribution", "Who saved what", "Budgets, fair shares and financial risk"),
                             ("05_budgets_and_risk", "Budgets, fair shares and financial risk",
                              "Methods, assumptions and limitations")):
        part = _section(html_text, heading, nxt)
        assert f"<code>{nb}</code>) was not run in this run" in part, nb
        assert "<code>run.notebooks</code> in the run config selected which notebooks ran: <code>01_data_quality</code>" in part
        assert "<table" not in part and "<img" not in part, nb             # nothing of the skipped notebook
    summary = _section(html_text, "Executive summary", "Data and data quality")
    assert "No evaluation or attribution results in this run" in summary
    assert "Not in this summary:" in summary and "<code>03_referral_evaluation</code> was not run" in summary
    assert "<code>04_savings_attribution</code> was not run" in summary
    assert "Engagement was chosen, not assigned" in summary                # caveats still shown
    methods = html_text[html_text.index("Methods, assumptions and limitations", html_text.find("</nav>") + 1):]
    assert "Regression to the mean" in methods and "Reproducibility" in methods
    assert "Re-create this run" in methods and "Input files and their SHA-256 hashes" in methods
    published = Path(run_dir) / "published"
    assert (published / "report.html").is_file()
    assert sorted(p.name for p in (published / "tables").glob("*.csv"))
    assert all(p.name.startswith("dq_") for p in (published / "tables").glob("*.csv"))
