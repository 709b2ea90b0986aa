"""Tests for pbc_analysis.publish.national: the national summary page from fake outcomes (two complete commissioners
with crafted results.json, one failed), escaping, disclosure, safe relative links and byte-identical reruns."""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from pbc_analysis.publish.national import NATIONAL_HTML, headline_of, write_national_summary

EVIL = "<script>alert(1)</script>"


def _results(referrals: float, savings: float) -> dict:
    return {"evaluation": {"referrals_avoided": {"estimate": referrals, "ci_low": referrals / 2, "ci_high": referrals * 1.5}},
            "attribution": {"evaluation_year": "2007/08",
                            "practice_action_savings": {"estimate": savings, "ci_low": savings - 1e5, "ci_high": savings + 1e5}},
            "budgets": {"distance_from_target": {"median": 0.01, "min": -0.2, "max": 0.25, "share_outside_band": 0.3}}}


def _benchmark() -> pd.DataFrame:
    """Four commissioners x 5 practices, referrals and first_op; 5A0's P00001 is high with 5 observed referrals."""
    rng = np.random.default_rng(1)
    rows = []
    for c in range(4):
        for p in range(5):
            for m in ("first_op", "referrals"):
                e = float(rng.uniform(200, 400))
                o = int(rng.poisson(e))
                rows.append({"commissioner_code": f"5A{c}", "practice_code": f"P{c}{p:04d}", "measure": m,
                             "observed": o, "expected": e, "ratio": o / e, "lower": 0.8, "upper": 1.2, "flag": "within",
                             "period": "2003/04 to 2007/08"})
    b = pd.DataFrame(rows)
    hit = (b["practice_code"] == "P00001") & (b["measure"] == "referrals")
    b.loc[hit, ["observed", "expected", "ratio", "flag"]] = [5, 2.0, 2.5, "high"]
    low = (b["practice_code"] == "P10002") & (b["measure"] == "first_op")
    b.loc[low, ["observed", "ratio", "flag"]] = [12, 12 / b.loc[low, "expected"].iloc[0], "low"]
    return b


@pytest.fixture()
def national(tmp_path):
    for code, res in (("5A0", _results(1234.0, 2.5e6)), ("5A1", _results(100.0, 1e5))):
        run = tmp_path / "commissioners" / f"20260101-000000-{code}-abcd1234"
        run.mkdir(parents=True)
        (run / "results.json").write_text(json.dumps(res))
        (run / "report.html").write_text("<html></html>")
    outcomes = [
        {"commissioner_code": "5A1", "commissioner_name": f"West {EVIL}", "n_practices": 5, "status": "complete",
         "reason": None, "run_dir": "commissioners/20260101-000000-5A1-abcd1234", "seconds": 12.5},
        {"commissioner_code": "5A0", "commissioner_name": "North & Co", "n_practices": 5, "status": "complete",
         "reason": None, "run_dir": "commissioners/20260101-000000-5A0-abcd1234", "seconds": 10.0},
        {"commissioner_code": "5A2", "commissioner_name": "South", "n_practices": 5, "status": "failed",
         "reason": f"too few comparison practices (2 < 10) {EVIL}", "run_dir": None, "seconds": 1.0},
        {"commissioner_code": "5A3", "commissioner_name": "=HYPERLINK(\"x\")", "n_practices": 5, "status": "complete",
         "reason": None, "run_dir": "../outside", "seconds": 1.0},
    ]
    return tmp_path, outcomes


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.scripts = 0
        self.handlers: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.scripts += tag == "script"
        self.hrefs += [v for k, v in attrs if k == "href"]
        self.handlers += [k for k, _ in attrs if k.startswith("on")]


def test_page_lists_every_commissioner_escaped_and_disclosed(national):
    d, outcomes = national
    paths = write_national_summary(d, outcomes, _benchmark(), "nation <b>")
    page = paths["html"].read_text(encoding="utf-8")
    assert paths["html"] == d / NATIONAL_HTML
    for code in ("5A0", "5A1", "5A2", "5A3"):
        assert f">{code}<" in page
    assert "too few comparison practices (2 &lt; 10)" in page                     # failure reason shown
    assert EVIL not in page and html.escape(EVIL) in page                           # names and reasons escaped
    assert "National summary: nation &lt;b&gt;" in page
    assert "1,234 (617 to 1,851)" in page and "2,500,000 (2,400,000 to 2,600,000)" in page   # headline with intervals
    assert "+1.0% (-20.0% to +25.0%)" in page
    parser = _Links()
    parser.feed(page)
    assert parser.scripts == 1 and parser.handlers == []                             # only the sorting script
    assert sorted(parser.hrefs) == ["commissioners/20260101-000000-5A0-abcd1234/report.html",
                                    "commissioners/20260101-000000-5A1-abcd1234/report.html"]
    assert "not a safe relative path" in page                                       # ../outside: not read, not linked
    assert not re.search(r'(src|href)="(https?:|//|javascript:)', page)            # no network, no script URLs
    # disclosure: P00001's 5 observed referrals are suppressed in the page and the table; others rounded to 5
    flagged = page[page.index("Practices outside the national funnel limits"):]
    row = next(r for r in re.findall(r"<tr>.*?</tr>", flagged) if ">P00001<" in r)
    assert '<td data-v="*" class="n">*</td>' in row and ">5<" not in row
    bench = pd.read_csv(paths["benchmark"], dtype=str)
    obs = bench["observed"]
    assert obs[bench["practice_code"].eq("P00001") & bench["measure"].eq("referrals")].tolist() == ["*"]
    assert obs[obs != "*"].astype(int).mod(5).eq(0).all()
    assert bench[bench["practice_code"].eq("P10002") & bench["measure"].eq("first_op")]["observed"].tolist() == ["10"]
    com = pd.read_csv(paths["commissioners"], dtype=str, keep_default_na=False)
    assert com["commissioner_code"].tolist() == ["5A0", "5A1", "5A2", "5A3"]
    assert com.loc[3, "commissioner_name"].startswith("'=")                        # no live spreadsheet formula
    assert com["referrals_observed"].astype(int).mod(5).eq(0).all()
    assert com.loc[2, "status"] == "failed" and com.loc[2, "reason"].startswith("too few")
    assert com.loc[0, "n_high"] == "1" and com.loc[1, "n_high"] == "0"


def test_byte_identical_on_rerun(national, tmp_path_factory):
    d, outcomes = national
    first = {k: p.read_bytes() for k, p in write_national_summary(d, outcomes, _benchmark(), "nation").items()}
    again = {k: p.read_bytes() for k, p in write_national_summary(d, outcomes, _benchmark(), "nation").items()}
    assert first == again and set(first) == {"html", "commissioners", "benchmark"}


def test_tampered_results_are_checked(national):
    d, outcomes = national
    run = d / outcomes[0]["run_dir"]
    (run / "results.json").write_text(json.dumps({"evaluation": {"referrals_avoided": {
        "estimate": EVIL, "ci_low": True, "ci_high": 1e300}}, "attribution": {"evaluation_year": EVIL}}))
    h = headline_of(json.loads((run / "results.json").read_text()))
    assert h["referrals_avoided"] is None and h["referrals_avoided_ci_low"] is None and h["evaluation_year"] is None
    (d / outcomes[1]["run_dir"] / "results.json").write_text("{not json")
    page = write_national_summary(d, outcomes, _benchmark(), "nation")["html"].read_text(encoding="utf-8")
    assert EVIL not in page and "results.json cannot be read" in page
    with pytest.raises(ValueError, match="status must be one of"):
        write_national_summary(d, [{**outcomes[0], "status": "done"}], _benchmark(), "nation")
    with pytest.raises(ValueError, match="more than once"):
        write_national_summary(d, [outcomes[0], outcomes[0]], _benchmark(), "nation")
