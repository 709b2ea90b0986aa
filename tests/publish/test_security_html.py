"""Issue 12, "names are data, never markup": hostile text through the report, the runs index and the
self-containment check.

Every string below is the kind of value an attacker (or a careless edit) can plant in results.json, a
result table, provenance.json, a manifest or a run name. It must reach the page as text: the page
passes :func:`report.check_self_contained` (no script, no event handler, no ``javascript:`` URL) and
the hostile string is visible, escaped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from pbc_analysis.pipeline import manifest, runs_index
from pbc_analysis.pipeline.runs_index import ignored_entries, run_states, write_index
from pbc_analysis.publish import markdown, report, report_content, report_provenance, report_summary, results
from pbc_analysis.publish.markdown import markdown_code, markdown_text
from pbc_analysis.publish.report import (
    ReportError,
    check_self_contained,
    quarto_command,
    render_html,
    script_digest,
)

SCRIPT = "<script>alert(1)</script>"
ATTR = '" onmouseover="x'
LINK = "[click](javascript:alert(1))"
IMG = "<img src=x onerror=alert(1)>"
HOSTILE = [SCRIPT, ATTR, LINK, IMG, "`</code><script>alert(2)</script>`", "$x$ & **b**\n# heading\n<b>"]


def _page(body_html: str) -> str:
    return f"<!DOCTYPE html><html><head><title>t</title></head><body>{body_html}</body></html>"


def _md_to_html(md: str) -> str:
    """Markdown to HTML with the renderer nbconvert uses for the report's Markdown outputs."""
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    return markdown2html_mistune(md)


def _render_outputs(tmp_path: Path, outputs: list[dict], title: str | None = None) -> str:
    """Render a notebook holding ``outputs`` (display_data mime bundles) with render_html's nbconvert path."""
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("pass")
    cell.outputs = [nbformat.v4.new_output("display_data", data=o) for o in outputs]
    nb.cells = [cell]
    src = tmp_path / "hostile.ipynb"
    nbformat.write(nb, str(src))
    out = tmp_path / "hostile.html"
    render_html(src, out, renderer="nbconvert", title=title)  # raises ReportError on active content
    return out.read_text(encoding="utf-8")


# --------------------------------------------------------------------------------------------------
# Markdown escaping
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", HOSTILE)
def test_markdown_text_renders_as_written(value):
    html = _md_to_html(markdown_text(value))
    assert check_self_contained(_page(html)) == []
    assert "<script" not in html and "<img" not in html and "<a " not in html and "<strong>" not in html
    assert "<h1" not in html and "<b>" not in html
    import html as html_mod

    # the visible text is the value, on one line
    shown = html_mod.unescape(html.replace("<p>", "").replace("</p>", "")).strip()
    assert shown == " ".join(value.split())


@pytest.mark.parametrize("value", ["a`b", "``x``", "</code><script>alert(1)</script>", "`"])
def test_markdown_code_is_one_literal_code_span(value):
    html = _md_to_html(markdown_code(value))
    assert html.count("<code>") == 1 and "<script" not in html
    import html as html_mod

    inner = html.split("<code>", 1)[1].split("</code>", 1)[0]
    assert html_mod.unescape(inner).strip() == value.strip()


def test_markdown_safe_keeps_identifiers_and_numbers():
    safe = markdown.markdown_safe({"control_group": "not_yet", "n": 3, "ok": True, "x": None,
                                         "codes": [SCRIPT, "P001"], "k<b>": 1.5})
    assert safe["control_group"] == "not_yet" and safe["n"] == 3 and safe["ok"] is True and safe["x"] is None
    assert safe["codes"][1] == "P001" and "<" not in safe["codes"][0]
    assert safe["k&#60;b&#62;"] == 1.5


# --------------------------------------------------------------------------------------------------
# The report's title (nbconvert template and Quarto command)
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("title", [SCRIPT, ATTR, "</title><script>alert(1)</script>"])
def test_render_html_title_is_escaped(tmp_path, title):
    page = _render_outputs(tmp_path, [{"text/plain": "x"}], title=title)
    assert check_self_contained(page) == []
    assert "<script" not in page
    assert "<title>" + title.replace("<", "&lt;").replace(">", "&gt;") + "</title>" in page


def test_quarto_title_is_escaped_for_markdown():
    hostile = f"PBC: {SCRIPT} {LINK} $x$"
    cmd = quarto_command("quarto", "r", hostile)
    value = json.loads(cmd[-1].removeprefix("title:"))
    assert value == markdown_text(hostile)
    assert not set(value) & set("<>[]$`")
    assert _md_to_html(value).count("<script") == 0


# --------------------------------------------------------------------------------------------------
# report_content: prose, tables, captions, code blocks
# --------------------------------------------------------------------------------------------------
def _hostile_results() -> dict:
    ci = {"estimate": -0.1, "ci_low": -0.2, "ci_high": -0.05}
    return {
        "data_quality": {"window": {"start_month": SCRIPT, "end_month": ATTR}, "practices": IMG, "consortia": LINK,
                         "engaged_practices": 3, "cost_by_financial_year_gbp": {SCRIPT: 1.5e6},
                         "incomplete_trailing_months": {IMG: 2}, "latest_complete_month": LINK, "practices_flagged": 1},
        "benchmarking": {"latest_period": SCRIPT, "measure": IMG, "n_practices": 4, "standardisation": ATTR,
                         "target": "pct", "overdispersion": {"used": "none", "phi": 1.0, "dispersion_p": 0.5},
                         "high_referrers": [SCRIPT, LINK], "possible_under_referrers": [], "persistent_outliers": [IMG]},
        "evaluation": {"referrals_avoided": {"estimate": 10.0, "ci_low": 1.0, "ci_high": 20.0},
                       "relative_effect_full": ci, "placebo_relative": ci, "confidence": 0.95,
                       "specialties_with_significant_reduction": [SCRIPT], "specialties_evaluated": 2,
                       "control_group": IMG, "placebo_shift_months": 12, "pretrend_p": 0.4,
                       "pretrend_level": 0.05,
                       "pretrend_failed": [{"specialty_code": SCRIPT, "specialty_name": IMG, "pretrend_p": 0.0001}],
                       "its_avoided": ci, "controlled_its_avoided": ci, "twfe_avoided": ci},
        "attribution": {"evaluation_year": SCRIPT, "practice_action_savings": {"estimate": 1e6, "ci_low": 1, "ci_high": 2e6}},
    }


def _hostile_provenance(**code) -> dict:
    return {"run_id": SCRIPT, "config_name": IMG, "command": "pbc run `</code><script>alert(1)</script>`",
            "verify_command": ATTR, "parameters": {"01_data_quality": {"data_dir": "```\n" + SCRIPT, SCRIPT: [LINK]}},
            "parameters_hash": SCRIPT, "python": IMG, "lockfile_sha256": LINK, "packages": {SCRIPT: "1"},
            "inputs": {SCRIPT: ATTR}, "code": {"commit": "0123456789abcdef", "dirty": False, "changed_files": [],
                                               "package_version": SCRIPT, **code}}


def test_report_texts_with_hostile_values_render_as_text(tmp_path):
    res, prov = _hostile_results(), _hostile_provenance()
    texts = [report_content.title_block(res, prov), report_content.data_quality_text(res),
             report_content.benchmarking_text(res), report_content.evaluation_text(res),
             report_summary.verdict_text(res), report_provenance.reproducibility_text(prov),
             report_provenance.validation_text(res)]
    outputs = [{"text/markdown": t, "text/plain": "x"} for t in texts]
    outputs += [{"text/html": h.data, "text/plain": "x"}
                for h in [report_provenance.inputs_table(prov), report_provenance.packages_table(prov),
                          report_summary.executive_summary_table(res)]]
    page = _render_outputs(tmp_path, outputs)  # render_html itself refuses active content
    assert check_self_contained(page) == []
    assert "alert(" in page  # the text is there ...
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # ... as text
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and "<img src=x" not in page
    assert "<script" not in page and 'href="javascript' not in page
    # prose: each hostile value of results.json is in the page as escaped text
    for md in texts[:5]:
        assert check_self_contained(_page(_md_to_html(md))) == []


def test_tables_and_captions_escape_cells_headers_and_alt_text(tmp_path):
    run = tmp_path / "run"
    (run / results.TABLES).mkdir(parents=True)
    pd.DataFrame({"table": [SCRIPT], "file": [ATTR], "rows": [10], "columns": [3], "first_period": [IMG],
                  "last_period": [LINK], "practices": [2]}).to_csv(run / results.TABLES / "dq_table_summary.csv", index=False)
    (run / results.FIGURES).mkdir()
    import base64

    png = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")
    (run / results.FIGURES / "f.png").write_bytes(png)
    parts = [report_content.table_summary(run).data, report_content.figure(run, "f", ATTR + SCRIPT).data,
             report_content._table(pd.DataFrame({SCRIPT: [IMG]}), ATTR, note=SCRIPT).data]
    page = _page("".join(parts))
    assert check_self_contained(page) == []
    assert "<script" not in page and "<img src=x" not in page
    assert 'alt="&quot; onmouseover=&quot;x&lt;script&gt;' in page
    assert "<th>&lt;script&gt;alert(1)&lt;/script&gt;</th>" in page


def test_reproducibility_section_says_when_the_checkout_was_dirty():
    prov = _hostile_provenance(dirty=True, changed_files=[" M pbc_analysis/a.py", " M b.py", "?? c.py"])
    text = report_provenance.reproducibility_text(prov)
    assert text.startswith("> **Warning.** This run was made from a checkout with uncommitted changes (3 files modified")
    assert "not reproducible from the commit alone" in text and "(uncommitted changes)" in text
    assert "uncommitted changes (3 files modified" in report_content.title_block({}, prov)
    clean = report_provenance.reproducibility_text(_hostile_provenance())
    assert "Warning" not in clean and "(clean checkout)" in clean
    assert report_provenance.code_warning(_hostile_provenance()) is None


def test_reproducibility_section_says_when_there_was_no_git():
    prov = _hostile_provenance(commit=None, dirty=None, changed_files=[])
    text = report_provenance.reproducibility_text(prov)
    assert text.startswith("> **Warning.** No git information was recorded for this run")
    assert "(no git information)" in text
    assert "No git information" in report_content.title_block({}, prov)


def test_report_lists_input_tables_and_accepted_exceptions():
    res = {"validation": {
        "tables": [{"table": "activity", "file": "activity.csv.gz", "required": True, "present": True, "used": True,
                    "rows": 123455},
                   {"table": "budgets", "file": None, "required": False, "present": False, "used": False, "rows": None},
                   {"table": SCRIPT, "file": ATTR, "required": False, "present": True, "used": True, "rows": "*"}],
        "accepted_exceptions": [{"rule": "unit_cost_vs_tariff", "table": "activity", "column": "cost", "rows": 5,
                                 "reason": SCRIPT}],
        "settings": {}}}
    text = report_provenance.validation_text(res)
    assert text.startswith("2 of 3 tables of the data dictionary were read, validated and used; optional tables not "
                           "supplied: budgets.")
    assert "1 plausibility rule flagged values that the config accepted explicitly" in text
    inputs, accepted = report_provenance.validation_tables(res)
    tables = report.extract_tables(_page(inputs.data + accepted.data))
    assert tables[0]["headers"] == ["Table", "File", "Required or optional", "Present", "Used"]
    assert tables[0]["rows"][0] == ["activity", "activity.csv.gz", "required", "yes", "yes"]
    assert tables[0]["rows"][1] == ["budgets", "", "optional", "no", "no"]
    assert tables[0]["rows"][2][:2] == [SCRIPT, ATTR]
    assert tables[1]["rows"] == [["unit_cost_vs_tariff", "activity", "cost", "*", SCRIPT]]  # 5 rows: suppressed
    assert check_self_contained(_page(inputs.data + accepted.data)) == []


def test_report_says_validation_not_recorded_for_older_runs():
    assert "not recorded" in report_provenance.validation_text({})
    assert report_provenance.validation_tables({}) == []


# --------------------------------------------------------------------------------------------------
# check_self_contained: event handlers, active URLs, scripts
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "snippet, expected",
    [
        ("<img src=x onerror=alert(1)>", ["img onerror= (event handler)"]),
        ('<p onMouseOver="x">t</p>', ["p onmouseover= (event handler)"]),
        ('<svg onload="x"></svg>', ["svg onload= (event handler)"]),
        ('<a href="javascript:alert(1)">x</a>', ["a href=javascript: URL"]),
        ('<a href=" JaVa\tScRiPt:alert(1)">x</a>', ["a href=javascript: URL"]),
        ('<a href="&#106;avascript:alert(1)">x</a>', ["a href=javascript: URL"]),
        ('<a href="vbscript:msgbox(1)">x</a>', ["a href=vbscript: URL"]),
        ('<form action="javascript:alert(1)"></form>', ["form action=javascript: URL"]),
        ('<svg><a xlink:href="javascript:alert(1)">x</a></svg>', ["a xlink:href=javascript: URL"]),
        ('<object data="data:text/html;base64,PHNjcmlwdD4="></object>', ["object data=data:text/html URL"]),
        ('<iframe srcdoc="&lt;b&gt;hi"></iframe>', ["iframe srcdoc= (embedded document)"]),
        ('<embed src="data:image/svg+xml;base64,PHN2Zz4=">',
         ["embed src=data:image/svg+xml URL (an SVG document can run scripts)"]),
        ('<meta http-equiv="Refresh" content="0;url=https://example.org/">',
         ["meta http-equiv=refresh (loads another page when opened)"]),
        ('<div style="background:url(javascript:alert(1))"></div>',
         ["div style=javascript: URL", "div[style] url(javascript:) URL"]),
        ("<style>p{width:expression(alert(1))}</style>", ["style CSS expression()"]),
        ("<svg><style><img src=x onerror=alert(1)></style></svg>",
         ["event-handler attribute (on...=) in markup that the HTML parser did not read as an element"]),
    ],
)  # fmt: skip
def test_check_self_contained_flags_active_content(snippet, expected):
    assert check_self_contained(_page(snippet)) == expected


@pytest.mark.parametrize(
    "snippet",
    [
        '<a href="https://digital.nhs.uk/">NHS Digital</a>',
        '<img src="data:image/png;base64,iVBORw0KGgo=" alt="onload= is text here">',
        '<img src="data:image/svg+xml;base64,PHN2Zz4=" alt="an SVG image: its scripts never run">',
        "<p>&lt;script&gt;alert(1)&lt;/script&gt; and onclick=x and javascript: in prose</p>",
        '<p data-note="one">online</p><div class="only">x</div>',
        "<code>&lt;img src=x onerror=alert(1)&gt;</code>",
    ],
)
def test_check_self_contained_passes_text_and_inert_markup(snippet):
    assert check_self_contained(_page(snippet)) == []


def test_check_self_contained_flags_any_script_not_in_the_allow_list():
    found = check_self_contained(_page("<script>alert(1)</script>"))
    digest = hashlib.sha256(b"alert(1)").hexdigest()
    assert found == [f"script sha256={digest} not in the allow-list: 'alert(1)'"]
    # data: scripts are identified by their decoded content
    import base64

    data_src = "data:application/javascript;base64," + base64.b64encode(b"alert(1)").decode()
    assert script_digest(data_src, "") == digest
    assert len(check_self_contained(_page(f'<script src="{data_src}"></script>'))) == 1
    # JSON data blocks are scripts too: nothing we did not put there
    assert len(check_self_contained(_page('<script type="application/json">{}</script>'))) == 1


def test_allowed_script_passes_and_a_changed_one_fails():
    code = "document.title = 'ok';"
    allowed = {hashlib.sha256(code.encode()).hexdigest(): "test: a reviewed script"}
    assert check_self_contained(_page(f"<script>{code}</script>"), allowed) == []
    changed = check_self_contained(_page(f"<script>{code} alert(1);</script>"), allowed)
    assert len(changed) == 1 and changed[0].startswith("script sha256=") and "not in the allow-list" in changed[0]
    # the default allow-list is empty: nbconvert's report has no script at all
    assert report.ALLOWED_SCRIPTS == {}
    assert check_self_contained(_page(f"<script>{code}</script>")) != []


def test_quarto_scripts_are_allowed_by_the_installations_own_files(tmp_path, monkeypatch):
    prefix = tmp_path / "quarto"
    (prefix / "bin").mkdir(parents=True)
    lib = prefix / "share" / "formats" / "html"
    lib.mkdir(parents=True)
    (lib / "quarto.js").write_text("window.quarto = 1;")
    exe = prefix / "bin" / "quarto"
    page = _page('<script src="data:application/javascript;base64,d2luZG93LnF1YXJ0byA9IDE7"></script>')
    exe.write_text(f"#!/bin/sh\nif [ \"$1\" = --version ]; then echo 1.99.0; exit 0; fi\n"
                   f"for a in \"$@\"; do [ \"$p\" = --output ] && out=\"$a\"; p=\"$a\"; done\n"
                   f"cat > \"$out\" <<'EOF'\n{page}\nEOF\n")
    exe.chmod(0o755)
    digests = report.quarto_script_digests(str(exe))
    assert list(digests.values()) == ["quarto formats/html/quarto.js"]
    nb = nbformat.v4.new_notebook()
    src = tmp_path / "n.ipynb"
    nbformat.write(nb, str(src))
    monkeypatch.setenv("PBC_QUARTO", str(exe))
    assert render_html(src, tmp_path / "ok.html", renderer="quarto").renderer == "quarto"
    # a script Quarto does not ship is refused, and nothing is written
    (lib / "quarto.js").write_text("window.quarto = 2;")
    with pytest.raises(ReportError, match=r"(?s)active content.*script sha256=.*not in the allow-list"):
        render_html(src, tmp_path / "bad.html", renderer="quarto")
    assert not (tmp_path / "bad.html").exists()


def test_render_html_refuses_a_javascript_output(tmp_path):
    with pytest.raises(ReportError, match=r"(?s)active content.*script sha256=.*ALLOWED_SCRIPTS"):
        _render_outputs(tmp_path, [{"application/javascript": "alert(1)", "text/plain": "js"}])
    assert not (tmp_path / "hostile.html").exists()


def test_render_html_refuses_an_event_handler_in_an_html_output(tmp_path):
    with pytest.raises(ReportError, match="img onerror= \\(event handler\\)"):
        _render_outputs(tmp_path, [{"text/html": IMG, "text/plain": "x"}])


# --------------------------------------------------------------------------------------------------
# reports/index.html
# --------------------------------------------------------------------------------------------------
def _fake_run(reports: Path, name: str, *, config_name: str = "sample", started: str = "2026-01-01T00:00:00+00:00",
              res: dict | None = None, complete: bool = True) -> Path:
    """A small run directory as `pbc run` leaves it: results, a table, a report and (if complete) a manifest."""
    run = reports / name
    (run / results.TABLES).mkdir(parents=True)
    (run / results.TABLES / "t.csv").write_text("a,b\n1,2\n")
    (run / "results.json").write_text(json.dumps(res if res is not None else {
        "evaluation": {"referrals_avoided": {"estimate": 8907.5, "ci_low": 4208.6, "ci_high": 13606.4}},
        "benchmarking": {"high_referrers": ["P001"], "possible_under_referrers": ["P002", "P001"],
                         "latest_period": "2007/08"}}))
    (run / "report.html").write_text("<html><body>report</body></html>")
    (run / "provenance.json").write_text("{}")
    if complete:
        text = "run:\n  name: sample\n"
        manifest.write_manifest(run, {
            "run_id": name, "config_name": config_name, "started_utc": started, "parameters_hash": "ab" * 32,
            "config": {"text": text, "sha256": hashlib.sha256(text.encode()).hexdigest()},
            "code": {"commit": "0123456789abcdef0123", "dirty": True, "changed_files": ["?? x.py", " M y.py"]},
            "outputs": manifest.output_hashes(run)})
        assert manifest.check_published(run) == []
    else:
        (run / "INCOMPLETE").write_text(f"failed: RunError: {SCRIPT}\n")
    return run


def test_index_lists_verified_runs_with_headline_figures_escaped(tmp_path):
    reports = tmp_path / "reports"
    _fake_run(reports, "20260101-000000-sample-aaaa", config_name=SCRIPT + ATTR)
    _fake_run(reports, "20260102-000000-sample-bbbb", started="2026-01-02T00:00:00+00:00",
              res={"benchmarking": {"latest_period": SCRIPT, "high_referrers": [IMG]},
                   "evaluation": {"referrals_avoided": {"estimate": SCRIPT, "ci_low": 1, "ci_high": 2}},
                   "budgets": {"envelope_gbp": 1e6, "target_year": ATTR}})
    (reports / "latest").symlink_to("20260102-000000-sample-bbbb")
    page = write_index(reports).read_text(encoding="utf-8")
    assert check_self_contained(page) == []
    assert "<script" not in page and "onmouseover=\"x" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&quot; onmouseover=&quot;x" in page  # the config name, as text
    tables = report.extract_tables(page)
    assert len(tables) == 1  # no "other runs" table
    rows = {r[1]: dict(zip(tables[0]["headers"], r)) for r in tables[0]["rows"]}
    a, b = rows["20260101-000000-sample-aaaa"], rows["20260102-000000-sample-bbbb (latest)"]
    assert list(rows) == ["20260102-000000-sample-bbbb (latest)", "20260101-000000-sample-aaaa"]  # newest first
    assert a["GP referrals avoided (95% CI)"] == "8,908 (4,209 to 13,606)" and a["Practices flagged"] == "2 (2007/08)"
    assert a["code"] == "0123456789ab (modified: 2 files)"
    assert b["GP referrals avoided (95% CI)"] == ""  # a string where a number belongs: not shown
    assert b["Practices flagged"] == f"1 ({SCRIPT})" and b["Budget envelope"] == f"GBP 1,000,000 ({ATTR})"
    assert 'href="20260101-000000-sample-aaaa/report.html"' in page


def test_index_separates_incomplete_and_tampered_runs(tmp_path):
    reports = tmp_path / "reports"
    _fake_run(reports, "20260101-000000-good-aaaa")
    bad = _fake_run(reports, "20260102-000000-tampered-bbbb")
    (bad / "results.json").write_text(json.dumps({"evaluation": {"referrals_avoided": {
        "estimate": 999999.0, "ci_low": 999998.0, "ci_high": 1000000.0}}}))
    (bad / "tables" / "t.csv").write_text("a,b\n1,3\n")
    _fake_run(reports, "20260103-000000-partial-cccc", complete=False)
    page = write_index(reports).read_text(encoding="utf-8")
    assert check_self_contained(page) == [] and "<script" not in page
    complete, others = run_states(reports)
    assert [r["run"] for r in complete] == ["20260101-000000-good-aaaa"]
    assert [(o["run"], o["state"]) for o in others] == [
        ("20260103-000000-partial-cccc", f"incomplete: failed: RunError: {SCRIPT}"),
        ("20260102-000000-tampered-bbbb", "integrity check failed: 2 files")]
    assert "results.json: sha256 differs" in others[1]["detail"] and "tables/t.csv: sha256 differs" in others[1]["detail"]
    tables = report.extract_tables(page)
    assert [r[1] for r in tables[0]["rows"]] == ["20260101-000000-good-aaaa"]
    assert tables[1]["rows"][1][:2] == ["20260102-000000-tampered-bbbb", "integrity check failed: 2 files"]
    assert "999,999" not in page  # no headline figures from an unverified run
    assert 'href="20260102' not in page and 'href="20260103' not in page


def test_index_names_every_ignored_entry_escaped(tmp_path):
    reports = tmp_path / "reports"
    good = _fake_run(reports, "20260101-000000-good-aaaa")
    _fake_run(reports, f"evil{IMG}", config_name="evil")  # a directory whose name is markup (no "/")
    _fake_run(reports, ".hidden-run", config_name="hidden")
    (reports / "linked-run").symlink_to(good)
    outside = _fake_run(tmp_path / "elsewhere", "20260109-000000-outside-dddd")
    (reports / "20260109-000000-outside-dddd").symlink_to(outside)
    (reports / "notes").mkdir()
    (reports / "notes" / "x.txt").write_text("not a run")
    (reports / "interactive" / "tables").mkdir(parents=True)
    (reports / "bad\nname").mkdir()
    (reports / "latest").symlink_to(good.name)
    page = write_index(reports).read_text(encoding="utf-8")
    complete, others = run_states(reports)
    assert [r["run"] for r in complete] == ["20260101-000000-good-aaaa"] and others == []
    ignored = {i["entry"]: i["reason"] for i in ignored_entries(reports)}
    assert ignored == {
        ".hidden-run": "name is not a safe name", f"evil{IMG}": "name is not a safe name",
        "bad\\nname": "name is not a safe name",  # the newline shown escaped, as two characters
        "linked-run": "symbolic link (only latest may be one)",
        "20260109-000000-outside-dddd": "symbolic link (only latest may be one)",
        "notes": "holds none of the files a run writes",
        "interactive": "notebooks run by hand write here (never published or verified)"}
    assert check_self_contained(page) == [] and "<img" not in page
    line = next(p for p in page.splitlines() if p.startswith('<p class="ignored">'))
    assert "Ignored entries of the reports directory (7), not runs:" in line
    assert "<code>evil&lt;img src=x onerror=alert(1)&gt;</code> (name is not a safe name)" in line
    assert "<code>linked-run</code> (symbolic link (only latest may be one))" in line
    assert "<code>notes</code>" in line and "<code>.hidden-run</code>" in line and "<code>interactive</code>" in line
    for absent in ("hidden", "linked-run", "outside", "notes"):  # never listed as a run, nor linked
        assert absent not in "".join(r[1] for t in report.extract_tables(page) for r in t["rows"])
    assert 'href="linked-run' not in page and 'href="20260109' not in page
    assert "latest" not in ignored and "(latest)" in page


def test_index_names_an_undecodable_entry_without_failing(tmp_path):
    reports = tmp_path / "reports"
    _fake_run(reports, "20260101-000000-good-aaaa")
    os.mkdir(os.fsencode(reports) + b"/run-\xff" + b"x" * 200)  # not UTF-8, and long
    page = write_index(reports).read_text(encoding="utf-8")
    (entry,) = ignored_entries(reports)
    assert entry == {"entry": "run-\\udcff" + "x" * 70 + "...", "reason": "name is not a safe name"}
    assert f"<code>{entry['entry']}</code>" in page


def test_index_without_ignored_entries_has_no_such_line(tmp_path):
    reports = tmp_path / "reports"
    _fake_run(reports, "20260101-000000-good-aaaa")
    (reports / "latest").symlink_to("20260101-000000-good-aaaa")
    page = write_index(reports).read_text(encoding="utf-8")
    assert ignored_entries(reports) == [] and "Ignored entries" not in page


def test_index_is_replaced_not_written_through_a_link(tmp_path):
    reports = tmp_path / "reports"
    _fake_run(reports, "20260101-000000-good-aaaa")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (reports / "index.html").symlink_to(victim)
    (reports / ".index.html.partial").symlink_to(victim)  # the old fixed temporary name: not used any more
    out = write_index(reports)
    assert victim.read_text() == "keep" and not out.is_symlink() and "good-aaaa" in out.read_text()
    assert oct(out.stat().st_mode & 0o777) == "0o644"
    temps = sorted(p.name for p in reports.iterdir() if p.name.startswith(".index.html."))
    assert temps == [".index.html.partial"]  # no temporary file of this write is left behind


_WRITER = """
import sys
from pbc_analysis.pipeline.runs_index import write_index
for _ in range(int(sys.argv[2])):
    write_index(sys.argv[1])
"""


def test_two_processes_writing_the_index_at_once_both_succeed(tmp_path):
    reports = tmp_path / "reports"
    _fake_run(reports, "20260101-000000-first-aaaa")
    _fake_run(reports, "20260102-000000-second-bbbb", started="2026-01-02T00:00:00+00:00")
    env = {**os.environ, "PYTHONPATH": str(Path(runs_index.__file__).parents[2])}
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(reports), "40"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    assert outcomes == [(0, ""), (0, "")]
    page = (reports / "index.html").read_text(encoding="utf-8")
    rows = [r[1] for r in report.extract_tables(page)[0]["rows"]]
    assert rows == ["20260102-000000-second-bbbb", "20260101-000000-first-aaaa"]
    assert [p.name for p in reports.iterdir() if p.name.startswith(".index.html.")] == []


def test_a_run_finishing_while_another_writes_the_index_is_listed(tmp_path, monkeypatch):
    """Run A scans the runs; run B finishes and writes the index while A's page is still being made. The
    lock makes B wait for A, so B's page, written last, lists both (without it, A's stale page would win)."""
    reports = tmp_path / "reports"
    _fake_run(reports, "20260101-000000-first-aaaa")
    staged = _fake_run(tmp_path / "staging", "20260102-000000-second-bbbb", started="2026-01-02T00:00:00+00:00")
    a_scanned = threading.Event()
    real_states = runs_index._states

    def slow_states(runs):
        out = real_states(runs)
        if threading.current_thread().name == "run-a":
            a_scanned.set()
            threading.Event().wait(0.5)  # A is slow to write its page
        return out

    monkeypatch.setattr(runs_index, "_states", slow_states)
    errors: list[BaseException] = []

    def run_a():
        try:
            write_index(reports)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    a = threading.Thread(target=run_a, name="run-a")
    a.start()
    assert a_scanned.wait(10)
    shutil.move(str(staged), str(reports / staged.name))  # B completes after A has scanned
    write_index(reports)                                   # ... and writes the index (waits for A's lock)
    a.join(10)
    assert errors == [] and not a.is_alive()
    rows = [r[1] for r in report.extract_tables((reports / "index.html").read_text(encoding="utf-8"))[0]["rows"]]
    assert rows == ["20260102-000000-second-bbbb", "20260101-000000-first-aaaa"]


def test_report_has_no_index_writer():
    """The runs index is written by the pipeline layer (runs_index), not by the report renderer
    (the layering itself is tested in tests/test_layers.py)."""
    assert not hasattr(report, "write_index") and "write_index" not in report.__all__
