"""The practice pages (``practices/<code>.html``): one per practice, self-contained, escaped, disclosed, stable."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from pbc_analysis.core import paths
from pbc_analysis.core.labels import measure_label
from pbc_analysis.methods import disclosure
from pbc_analysis.pipeline import compare, verify
from pbc_analysis.pipeline.manifest import sha256_file
from pbc_analysis.publish import practice_pages
from pbc_analysis.publish.practice_charts import FLAG_COLOURS
from pbc_analysis.publish.report import check_self_contained, extract_tables

pytestmark = pytest.mark.slow
HOSTILE = "<script>alert(1)</script>"
ONE = "P89334"
_DOT = re.compile(r'<circle class="dot" data-label="([^"]*)" data-flag="([^"]*)"[^>]*fill="([^"]*)"')


def _pages(run: Path) -> list[Path]:
    return sorted((run / "practices").glob("P*.html"))


def _text_table(run: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(run / "tables" / f"{name}.csv", dtype=str, keep_default_na=False)


def _table(page: str, caption_start: str) -> dict:
    found = [t for t in extract_tables(page) if t["caption"].startswith(caption_start)]
    assert len(found) == 1, [t["caption"] for t in extract_tables(page)]
    return found[0]


def _column(t: dict, header: str) -> list[str]:
    j = t["headers"].index(header)
    return [r[j] for r in t["rows"]]


def _copy(run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / run.name
    shutil.copytree(run, dst, symlinks=True)
    return dst


def _latest(run: Path) -> str:
    return max(_text_table(run, "bm_ratios")["period"])


def test_a_page_for_every_practice_of_the_population_table(sample_run):
    codes = sorted(pd.read_parquet(paths.SAMPLE_DIR / "population.parquet")["practice_code"].astype(str).unique())
    assert [p.stem for p in _pages(sample_run)] == codes
    index = (sample_run / "practices" / "index.html").read_text(encoding="utf-8")
    t = _table(index, "The ")
    assert _column(t, "Practice") == codes
    assert all(f'href="{c}.html"' in index for c in codes)


def test_every_page_is_self_contained(sample_run):
    for p in [*_pages(sample_run), sample_run / "practices" / "index.html"]:
        page = p.read_text(encoding="utf-8")
        assert check_self_contained(page) == [], p.name
        assert "<script" not in page and "<link" not in page and "<img" not in page
        assert "@media print" in page and "size:A4" in page


def test_a_hostile_practice_name_is_escaped(sample_run, tmp_path):
    run = _copy(sample_run, tmp_path)
    for name in ("bm_practices", "att_sharing", "bud_statement"):
        t = _text_table(run, name)
        t.loc[t["practice_code"] == ONE, "practice_name"] = HOSTILE
        t.to_csv(run / "tables" / f"{name}.csv", index=False)
    practice_pages.write_practice_pages(run)
    peers = _text_table(run, "bm_similar")
    other = peers.loc[peers["peer_code"] == ONE, "practice_code"].iloc[0]   # a page listing ONE as a peer
    for p in (f"{ONE}.html", f"{other}.html", "index.html"):
        page = (run / "practices" / p).read_text(encoding="utf-8")
        assert HOSTILE not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page, p
        assert check_self_contained(page) == [], p
    links = practice_pages.links_table(run)
    assert HOSTILE not in links and "&lt;script&gt;" in links


def test_a_count_of_three_is_shown_as_a_star_and_counts_are_rounded(sample_run, tmp_path):
    run = _copy(sample_run, tmp_path)
    latest = _latest(run)
    original = _text_table(run, "bm_ratios")
    mine = (original["practice_code"] == ONE) & (original["period"] == latest) & (original["measure"] == "referrals")
    observed = int(original.loc[mine, "observed"].iloc[0])
    page = (sample_run / "practices" / f"{ONE}.html").read_text(encoding="utf-8")
    funnel = _table(page, f"Funnel positions, {latest}")
    shown = dict(zip(_column(funnel, "Measure"), _column(funnel, "Observed")))
    assert shown["GP referrals"] == f"{int(disclosure.disclose_counts([observed]).iloc[0]):,}"
    for name, where in (("bm_ratios", "measure"), ("bm_opportunity", "measure")):
        t = _text_table(run, name)
        t.loc[(t["practice_code"] == ONE) & (t["period"] == latest) & (t[where] == "referrals"), "observed"] = "3"
        t.to_csv(run / "tables" / f"{name}.csv", index=False)
    practice_pages.write_practice_pages(run)
    page = (run / "practices" / f"{ONE}.html").read_text(encoding="utf-8")
    funnel = _table(page, f"Funnel positions, {latest}")
    assert dict(zip(_column(funnel, "Measure"), _column(funnel, "Observed")))["GP referrals"] == "*"
    opp = _table(page, "Opportunity")
    assert dict(zip(_column(opp, "Measure"), _column(opp, "Observed")))["GP referrals"] == "*"
    assert f">{observed}<" not in page and f">{observed:,}<" not in page


def test_no_count_is_printed_with_a_decimal_point(sample_run):
    whole = re.compile(r"\*|[0-9]{1,3}(,[0-9]{3})*")
    count_headers = {"Observed", "GP referrals", "List size"}
    checked = 0
    for p in _pages(sample_run):
        for t in extract_tables(p.read_text(encoding="utf-8")):
            for j, h in enumerate(t["headers"]):
                for r in t["rows"]:
                    assert not re.fullmatch(r"-?[0-9,]+\.0", r[j]), (p.name, t["caption"], h, r[j])
                    if h in count_headers and r[j]:
                        assert whole.fullmatch(r[j]), (p.name, t["caption"], h, r[j])
                        checked += 1
    assert checked > 60 * 10


def test_no_point_of_delivery_code_is_printed(sample_run):
    for p in [*_pages(sample_run), sample_run / "practices" / "index.html"]:
        page = p.read_text(encoding="utf-8")
        for code in ("first_op", "followup_op", "non_elective", "gp_referral", "_op"):
            assert code not in page, (p.name, code)
    page = (sample_run / "practices" / f"{ONE}.html").read_text(encoding="utf-8")
    assert "Follow-up outpatient attendances" in page and "Trauma and orthopaedics (110)" in page


def test_the_spine_dots_are_coloured_by_the_funnel_flag(sample_run):
    flags = _text_table(sample_run, "bm_flags")
    flags = flags[(flags["period"] == _latest(sample_run)) & (flags["specialty_code"] == "all")]
    expected = {}
    for r in flags.itertuples():
        expected[(r.practice_code, measure_label(r.measure, capital=True))] = (
            "higher" if r.high_referrer == "True" else "lower" if r.possible_under_referrer == "True" else "similar")
    seen = set()
    for p in _pages(sample_run):
        dots = _DOT.findall(p.read_text(encoding="utf-8"))
        assert len(dots) == 6, p.name   # GP referrals and five points of delivery
        for label, flag, fill in dots:
            want = expected.get((p.stem, label), "similar")
            assert flag == want and fill == FLAG_COLOURS[want], (p.stem, label, flag, fill)
            seen.add(flag)
    assert {"lower", "similar"} <= seen   # the sample has possible under-referrers


def test_the_similar_practices_table_has_ten_named_rows(sample_run):
    names = dict(pd.read_csv(paths.SAMPLE_DIR / "practices.csv", dtype=str)[["practice_code", "practice_name"]].values)
    peers = _text_table(sample_run, "bm_similar")
    for code in (ONE, "P89004"):
        page = (sample_run / "practices" / f"{code}.html").read_text(encoding="utf-8")
        t = _table(page, "The 10 most similar practices")
        assert len(t["rows"]) == 10
        want = peers[peers["practice_code"] == code].sort_values("peer_rank", key=lambda s: s.astype(int))
        assert _column(t, "Practice") == want["peer_code"].tolist()
        assert _column(t, "Name") == [names[c] for c in want["peer_code"]]
        assert _column(t, "Rank") == [str(i) for i in range(1, 11)]
        opp = _table(page, "Opportunity")
        assert _column(opp, "Measure") == ["GP referrals", "First outpatient attendances"]


def test_the_payment_is_att_sharing_to_practice(sample_run):
    sharing = _text_table(sample_run, "att_sharing")
    paid = 0
    for code, rows in sharing.groupby("practice_code"):
        page = (sample_run / "practices" / f"{code}.html").read_text(encoding="utf-8")
        t = _table(page, "Payment (GBP)")
        shown = dict(zip(_column(t, "Year"), _column(t, "To the practice")))
        for r in rows.itertuples():
            assert shown[r.financial_year] == f"{float(r.to_practice):,.2f}", (code, r.financial_year)
            paid += float(r.to_practice) > 0
        assert dict(zip(_column(t, "Year"), _column(t, "Reason"))) == dict(zip(rows["financial_year"], rows["reason"]))
    assert paid > 0




@pytest.mark.parametrize("page", [f"{ONE}.html", "index.html"])
def test_a_page_opens_in_a_headless_browser_without_console_messages(sample_run, tmp_path, page, chromium):
    exe = chromium
    shot = tmp_path / "page.png"
    proc = subprocess.run([exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--screenshot={shot}", "--window-size=1280,3000", "--enable-logging=stderr", "--v=0",
                           f"--user-data-dir={tmp_path / 'profile'}", (sample_run / "practices" / page).resolve().as_uri()],
                          capture_output=True, text=True, timeout=180)
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    assert not console, "browser console messages:\n" + "\n".join(console[:10])
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_the_same_run_gives_the_same_bytes(sample_run, tmp_path):
    run = _copy(sample_run, tmp_path)
    first = {p.name: p.read_bytes() for p in (run / "practices").glob("*.html")}
    written = practice_pages.write_practice_pages(run)
    assert {p.name: p.read_bytes() for p in written} == first
    (run / "practices" / "P00000.html").write_text("stale", encoding="utf-8")
    practice_pages.write_practice_pages(run)
    assert {p.name: p.read_bytes() for p in (run / "practices").glob("*.html")} == first


def test_an_unsafe_practice_code_is_refused_naming_the_table(sample_run, tmp_path):
    run = _copy(sample_run, tmp_path)
    shutil.rmtree(run / "practices")
    t = _text_table(run, "bm_practices")
    t.loc[t["practice_code"] == ONE, "practice_code"] = "../evil"
    t.to_csv(run / "tables" / "bm_practices.csv", index=False)
    with pytest.raises(practice_pages.PracticePageError,
                       match=re.escape("tables/bm_practices.csv column practice_code value '../evil'")):
        practice_pages.write_practice_pages(run)
    assert not (run / "practices").exists() and not (tmp_path / "evil.html").exists()


def test_the_run_links_records_and_publishes_the_pages(sample_run):
    report = (sample_run / "report.html").read_text(encoding="utf-8")
    assert 'href="practices/P89004.html"' in report and 'href="practices/index.html"' in report
    manifest = json.loads((sample_run / "manifest.json").read_text(encoding="utf-8"))
    contents = json.loads((sample_run / "published" / "CONTENTS.json").read_text(encoding="utf-8"))
    for p in [*_pages(sample_run), sample_run / "practices" / "index.html"]:
        rel = f"practices/{p.name}"
        assert manifest["outputs"][rel] == sha256_file(p)
        assert (sample_run / "published" / rel).read_bytes() == p.read_bytes()
        assert contents["files"][rel] == sha256_file(p)
    assert "practices/" in (sample_run / "published" / "README.txt").read_text(encoding="utf-8")
    index = (sample_run.parent / "index.html").read_text(encoding="utf-8")
    assert f'href="{sample_run.name}/practices/index.html"' in index


def test_verify_compares_the_pages_by_their_tables(sample_run, tmp_path):
    names = verify.compared_names([f"practices/{ONE}.html", f"published/practices/{ONE}.html", "practices/x/y.html"])
    assert names == [f"practices/{ONE}.html", f"published/practices/{ONE}.html"]
    run = _copy(sample_run, tmp_path)
    rel = f"practices/{ONE}.html"
    page = (run / rel).read_text(encoding="utf-8")
    (run / rel).write_text(page.replace("</style>", "/* another renderer */</style>"), encoding="utf-8")
    assert verify.compare_outputs(sample_run, run, [rel])[0].state == compare.IDENTICAL   # same tables
    year = _table(page, "Payment (GBP)")["rows"][0][0]
    (run / rel).write_text(page.replace(f'<td data-v="{year}">{year}</td>', '<td data-v="1999/00">1999/00</td>', 1),
                           encoding="utf-8")
    result = verify.compare_outputs(sample_run, run, [rel])[0]
    assert result.state == compare.DIFFERENT and "1999/00" in " ".join(result.details)


def test_every_count_on_every_page_is_disclosed(sample_run):
    """The disclosure scan of the report, over all the pages: every observed count is 0, * or a multiple of 5 of at
    least 10 (1 to 7 suppressed, others rounded to 5)."""
    from pbc_analysis.publish import report

    def disclosed(c: str) -> bool:
        v = c.replace(",", "").strip()
        return v in ("*", "0", "") or not v.isdigit() or (int(v) >= 10 and int(v) % 5 == 0)

    pages = sorted((sample_run / "practices").glob("P*.html"))
    assert len(pages) == 60
    checked = 0
    for page in pages:
        for t in report.extract_tables(page.read_text(encoding="utf-8")):
            for j, head in enumerate(t["headers"]):
                if head in ("Observed", "GP referrals") or "(count)" in head:
                    cells = [r[j] for r in t["rows"] if j < len(r)]
                    bad = [c for c in cells if not disclosed(c)]
                    assert not bad, f"{page.name}, {t['caption']!r}, {head!r}: {bad[:3]}"
                    checked += len(cells)
    assert checked > 60 * 10
