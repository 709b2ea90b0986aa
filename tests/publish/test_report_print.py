"""The report prints to A4 with every table column on the page, and navigates by its table of contents.

The print test prints the sample run's report to PDF with headless Chromium (Debian's ``chromium``) and reads it
back with poppler's ``pdftotext``/``pdfinfo`` (Debian's ``poppler-utils``); ``.ci/run`` installs both when the
machine allows it, and the test skips, saying why, without them.

A column cut off at the page's edge is not in the PDF's text at all. A header that wraps inside its cell is,
but ``pdftotext -layout`` interleaves its lines with the neighbouring cells' lines, so each table is looked for
in the text in content-stream order (``pdftotext -raw``), where a cell's lines follow one another: its whole
header row, cell after cell, and its first and last body rows must appear there, white space removed. That
finds the table itself, not a header word that happens to appear elsewhere in the report.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from pbc_analysis.publish import report, report_style

# A4 in PostScript points (210 x 297 mm), either way up: pdfinfo prints "594.96 x 841.92 pts (A4)".
A4 = (595.28, 841.89)




def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _rows(table) -> tuple[list[str], list[list[str]]]:  # table: bs4.Tag
    """The table's first header row and its body rows, as cell texts."""
    head = table.find("thead")
    header_row = (head.find("tr") if head is not None else table.find("tr"))
    headers = [c.get_text(" ", strip=True) for c in header_row.find_all(["th", "td"])]
    body = table.find("tbody") or table
    rows = [[c.get_text(" ", strip=True) for c in tr.find_all(["th", "td"])] for tr in body.find_all("tr")
            if tr is not header_row]
    return headers, [r for r in rows if r]


@pytest.fixture(scope="module")
def printed(sample_run, tmp_path_factory, chromium):
    """The sample report printed to PDF: (report.html text, pdftotext -raw text, page sizes)."""
    exe = chromium
    if shutil.which("pdftotext") is None or shutil.which("pdfinfo") is None:
        pytest.skip("no pdftotext/pdfinfo on this machine (apt-get install poppler-utils); .ci/run installs it")
    page = sample_run / "report.html"
    raw, sizes = _print_to_pdf(exe, page, tmp_path_factory.mktemp("print"), timeout=240)
    return page.read_text(encoding="utf-8"), raw, sizes


def _print_to_pdf(exe: str, page, tmp, timeout: int) -> tuple[str, list[tuple[float, float]]]:
    """``page`` printed by headless Chromium: the PDF's text in stream order (``pdftotext -raw``) and page sizes."""
    pdf = tmp / "printed.pdf"
    proc = subprocess.run([exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--disable-component-update", "--disable-sync", "--no-first-run",
                           f"--user-data-dir={tmp / 'profile'}", f"--print-to-pdf={pdf}", "--no-pdf-header-footer",
                           page.resolve().as_uri()], capture_output=True, text=True, timeout=timeout)
    assert pdf.is_file() and pdf.stat().st_size > 10_000, f"no PDF; chromium said:\n{proc.stderr[-2000:]}"
    raw = subprocess.run(["pdftotext", "-raw", "-enc", "UTF-8", str(pdf), "-"], capture_output=True, text=True,
                         check=True).stdout
    info = subprocess.run(["pdfinfo", "-f", "1", "-l", "100000", str(pdf)], capture_output=True, text=True,
                          check=True).stdout
    sizes = [(float(w), float(h)) for w, h in re.findall(r"Page\s+\d+\s+size:\s+([\d.]+)\s+x\s+([\d.]+)\s+pts", info)]
    pages = int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))
    assert len(sizes) == pages > 0, info
    return raw, sizes


def test_report_prints_on_a4_pages(printed):
    _, _, sizes = printed
    off = [(i + 1, w, h) for i, (w, h) in enumerate(sizes)
           if not any(abs(w - a) < 1.5 and abs(h - b) < 1.5 for a, b in (A4, A4[::-1]))]
    assert off == [], f"pages that are not A4 (page, width, height in pt): {off[:5]}"
    assert sum(w < h for w, h in sizes) >= len(sizes) / 2  # portrait, but for the widest tables' pages


def test_every_table_prints_with_all_its_columns(printed):
    """Every table's header row (so its last column header) and its first and last rows are in the PDF's text."""
    from bs4 import BeautifulSoup

    page, raw, _ = printed
    text = _squash(raw)
    tables = BeautifulSoup(page, "html.parser").find_all("table")
    assert len(tables) >= 10  # the sample report's tables: the test must see them, not pass on none
    missing = []
    for table in tables:
        headers, rows = _rows(table)
        caption = table.find("caption")
        name = caption.get_text(" ", strip=True) if caption is not None else f"table with headers {headers}"
        assert headers, name
        if _squash(headers[-1]) not in text:
            missing.append(f"{name}: last column header {headers[-1]!r} is not in the PDF")
        elif _squash("".join(headers)) not in text:
            missing.append(f"{name}: its header row is not printed whole (a column cut?)")
        for row in rows[:1] + rows[-1:]:
            if _squash("".join(row)) not in text:
                missing.append(f"{name}: row {row[:2]} is not printed whole (last cell {row[-1]!r})")
    assert missing == [], "\n".join(missing)


def test_the_widest_tables_are_in_the_report(printed):
    """The tables the print stylesheet is for (ledger, scorecard, budget statement, payment schedule) are there:
    the test above ran on them."""
    from bs4 import BeautifulSoup

    widths = sorted((len(_rows(t)[0]) for t in BeautifulSoup(printed[0], "html.parser").find_all("table")), reverse=True)
    assert widths[0] >= 13 and sum(w >= 10 for w in widths) >= 4, widths


def test_table_of_contents_lists_every_section_and_links_to_it(sample_run):
    from bs4 import BeautifulSoup

    soup = BeautifulSoup((sample_run / "report.html").read_text(encoding="utf-8"), "html.parser")
    navs = soup.find_all("nav", class_="pbc-toc")
    assert len(navs) == 1
    toc = navs[0]
    links = [(a["href"], a.get_text()) for a in toc.find_all("a")]
    ids = [el["id"] for el in soup.find_all(id=True)]
    assert len(ids) == len(set(ids)), "duplicate ids"
    for href, _ in links:
        assert href.startswith("#") and soup.find(id=href[1:]) is not None, f"TOC link {href} has no target"
        assert re.fullmatch(r"#sec-[a-z0-9-]+", href), href  # sanitised
    h2 = [h for h in soup.find_all("h2")]
    assert len(h2) >= 5
    for h in h2:
        title = " ".join(h.get_text(" ", strip=True).replace("¶", "").split())
        assert (f"#{h['id']}", title) in links, f"h2 {title!r} is not in the table of contents"
    h3 = [f"#{h['id']}" for h in soup.find_all("h3")]
    assert set(h3) <= {href for href, _ in links}
    # after the title, before the first section
    title = soup.find("h1")
    assert title is not None
    order = [el for el in soup.find_all(["h1", "nav", "h2"]) if el.name != "nav" or "pbc-toc" in el.get("class", [])]
    assert [el.name for el in order[:3]] == ["h1", "nav", "h2"]


def test_table_of_contents_escapes_and_sanitises():
    page = ('<html><body><main><div class="jp-Cell a"><h1 id="T:1">Title<a class="anchor-link" href="#T:1">¶</a></h1>'
            '<p>intro</p></div>'
            '<div class="jp-Cell b"><h2 id="A&amp;E-&lt;b&gt;?">A&amp;E &lt;b&gt; &amp; "costs"?<a class="anchor-link" '
            'href="#A&amp;E-&lt;b&gt;?">¶</a></h2><h3 id="x">Sub <em>one</em></h3><h3 id="x">Sub <em>one</em></h3></div>'
            '<div class="jp-Cell c"><h2>Plain</h2><p><a href="#T:1">top</a></p></div></main></body></html>')
    out = report_style.add_table_of_contents(page)
    assert out.index("<h1") < out.index('<nav class="pbc-toc"') < out.index('<div class="jp-Cell b"')
    toc = out[out.index("<nav"):out.index("</nav>")]
    assert '<a href="#sec-a-e-b-costs">A&amp;E &lt;b&gt; &amp; "costs"?</a>' in toc
    assert '<a href="#sec-sub-one">Sub one</a>' in toc and '<a href="#sec-sub-one-2">Sub one</a>' in toc
    assert '<a href="#sec-plain">Plain</a>' in toc and "sec-title" not in toc
    assert '<h2 id="sec-a-e-b-costs">' in out and 'href="#sec-a-e-b-costs">¶</a>' in out
    assert '<a href="#sec-title">top</a>' in out  # a link to a heading follows its new id
    assert report.check_self_contained(out) == []
    assert report_style.add_table_of_contents("<h1>only a title</h1>") == "<h1>only a title</h1>"


def test_print_stylesheet_is_inlined_in_the_report(sample_run):
    page = (sample_run / "report.html").read_text(encoding="utf-8")
    assert "@page { size: A4" in page and "@media print" in page and "break-before: page" in page
    assert report.check_self_contained(page) == []


@pytest.fixture(scope="module")
def printed_pages(sample_run, tmp_path_factory, chromium):
    """Every practice page printed to PDF in one go: the pages' bodies under one page's head (they share the same
    stylesheet), each starting a new sheet; (the pages' HTML, pdftotext -raw text, page sizes)."""
    from bs4 import BeautifulSoup

    exe = chromium
    if shutil.which("pdftotext") is None or shutil.which("pdfinfo") is None:
        pytest.skip("no pdftotext/pdfinfo on this machine (apt-get install poppler-utils); .ci/run installs it")
    pages = sorted((sample_run / "practices").glob("P*.html"))
    htmls = [p.read_text(encoding="utf-8") for p in pages]
    first = BeautifulSoup(htmls[0], "html.parser")
    bodies = "".join(f'<div style="break-before: page">{BeautifulSoup(h, "html.parser").body.decode_contents()}</div>'
                     for h in htmls)
    tmp = tmp_path_factory.mktemp("print-pages")
    book = tmp / "pages.html"
    book.write_text(f"<!DOCTYPE html><html lang=\"en\">{first.head}<body>{bodies}</body></html>", encoding="utf-8")
    raw, sizes = _print_to_pdf(exe, book, tmp, timeout=400)
    return htmls, raw, sizes


def test_every_practice_page_prints_on_a4_with_all_its_columns(printed_pages):
    """Each page's every table: its header row whole and its first and last rows in the PDF's text (a cut column is
    not), on A4 sheets."""
    from bs4 import BeautifulSoup

    htmls, raw, sizes = printed_pages
    assert len(htmls) == 60 and len(sizes) >= 60
    off = [(i + 1, w, h) for i, (w, h) in enumerate(sizes)
           if not any(abs(w - a) < 1.5 and abs(h - b) < 1.5 for a, b in (A4, A4[::-1]))]
    assert off == [], f"pages that are not A4: {off[:5]}"
    text = _squash(raw)
    missing = []
    for h in htmls:
        for table in BeautifulSoup(h, "html.parser").find_all("table"):
            headers, rows = _rows(table)
            caption = table.find("caption")
            name = caption.get_text(" ", strip=True) if caption is not None else str(headers)
            if _squash("".join(headers)) not in text:
                missing.append(f"{name}: header row not printed whole")
            for row in rows[:1] + rows[-1:]:
                if _squash("".join(row)) not in text:
                    missing.append(f"{name}: row {row[:2]} not printed whole (last cell {row[-1]!r})")
    assert missing == [], "\n".join(missing[:10])
