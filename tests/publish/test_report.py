"""Tests for pbc_analysis.publish.report: Quarto invocation (with a stand-in executable), the nbconvert
fallback (real nbconvert on a really executed notebook) and the self-containment check."""

from __future__ import annotations

import os
import re
import stat
import tempfile
import textwrap
from pathlib import Path

import nbformat
import pytest

from pbc_analysis.publish import report
from pbc_analysis.publish.report import RenderInfo, ReportError, check_self_contained, find_quarto, render_html

# The real Quarto (if any), looked up before any test monkeypatches PATH / PBC_QUARTO.
REAL_QUARTO = find_quarto()


# --------------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def executed_notebook(tmp_path_factory) -> Path:
    """A small notebook (markdown, a pandas table, a matplotlib PNG) executed with nbclient."""
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell(
            "# Referral summary\n\nOutpatient referrals by practice; see "
            "[the HES guide](https://digital.nhs.uk/)."
        ),
        nbformat.v4.new_code_cell(
            "import pandas as pd\n"
            "SECRET_INPUT_MARKER = 1\n"
            "df = pd.DataFrame({'practice': ['P001', 'P002'], 'referrals': [1234, 5678]})\n"
            "from IPython.display import HTML, display\n"
            "display(HTML(df.to_html(index=False)))"
        ),
        nbformat.v4.new_code_cell(
            "import matplotlib\n"
            "matplotlib.use('module://matplotlib_inline.backend_inline')\n"
            "import matplotlib.pyplot as plt\n"
            "fig, ax = plt.subplots(figsize=(3, 2))\n"
            "ax.plot([1, 2, 3], [3, 1, 2])\n"
            "plt.show()"
        ),
    ]
    old = os.environ.get("JUPYTER_PREFER_ENV_PATH")
    os.environ["JUPYTER_PREFER_ENV_PATH"] = "1"
    try:
        NotebookClient(nb, kernel_name="python3", timeout=120).execute()
    finally:
        if old is None:
            os.environ.pop("JUPYTER_PREFER_ENV_PATH", None)
        else:
            os.environ["JUPYTER_PREFER_ENV_PATH"] = old
    path = tmp_path_factory.mktemp("nb") / "report_source.ipynb"
    nbformat.write(nb, str(path))
    return path


@pytest.fixture
def no_quarto(monkeypatch, tmp_path):
    """An environment in which Quarto cannot be found."""
    empty = tmp_path / "empty_bin"
    empty.mkdir()
    monkeypatch.delenv("PBC_QUARTO", raising=False)
    monkeypatch.setenv("PATH", str(empty))
    assert find_quarto() is None


def _write_exe(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


STANDIN_HTML = (
    "<!DOCTYPE html><html><head><title>stand-in</title>"
    "<style>body{background:url(data:image/png;base64,AAAA)}</style></head>"
    "<body><p>stand-in quarto report</p><a href='https://quarto.org'>Quarto</a></body></html>"
)


def _standin_quarto(
    tmp_path: Path, *, html: str | None = STANDIN_HTML, exit_code: int = 0, directory: Path | None = None
) -> Path:
    """A fake quarto: records argv (one per line), cwd and the cwd listing, copies ``html`` to the
    ``--output`` file (unless ``html`` is None), writes "ERROR: boom" to stderr if exit_code != 0."""
    log = tmp_path / "standin_log"
    log.mkdir(exist_ok=True)
    write = ""
    if html is not None:
        payload = tmp_path / "standin_payload.html"
        payload.write_text(html)
        write = f'cat "{payload}" > "$out"'
    fail = 'echo "ERROR: boom" >&2' if exit_code else ""
    directory = directory or tmp_path
    directory.mkdir(parents=True, exist_ok=True)
    return _write_exe(
        directory / "quarto",
        f"""\
        if [ "$1" = "--version" ]; then echo "1.99.0"; exit 0; fi
        : > "{log}/argv.txt"
        for a in "$@"; do printf '%s\\n' "$a" >> "{log}/argv.txt"; done
        pwd > "{log}/cwd.txt"
        ls > "{log}/listing.txt"
        if [ -f pbc-print-style.html ]; then cp pbc-print-style.html "{log}/header.html"; fi
        out=""; prev=""
        for a in "$@"; do
          if [ "$prev" = "--output" ]; then out="$a"; fi
          prev="$a"
        done
        {write}
        {fail}
        exit {exit_code}
        """,
    )


# --------------------------------------------------------------------------------------------------
# find_quarto
# --------------------------------------------------------------------------------------------------
def test_find_quarto_prefers_env_var(monkeypatch, tmp_path):
    exe = _standin_quarto(tmp_path)
    monkeypatch.setenv("PBC_QUARTO", str(exe))
    assert find_quarto() == str(exe)


def test_find_quarto_uses_path(monkeypatch, tmp_path):
    exe = _standin_quarto(tmp_path, directory=tmp_path / "bin")
    monkeypatch.delenv("PBC_QUARTO", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert find_quarto() == str(exe)


# --------------------------------------------------------------------------------------------------
# Quarto path, with a stand-in executable
# --------------------------------------------------------------------------------------------------
def test_quarto_command_line_temp_dir_and_output(monkeypatch, tmp_path, executed_notebook):
    exe = _standin_quarto(tmp_path)
    monkeypatch.setenv("PBC_QUARTO", str(exe))
    out = tmp_path / "published" / "sub" / "report.html"

    info = render_html(executed_notebook, out)  # renderer="auto" picks Quarto when found

    assert isinstance(info, RenderInfo)
    assert info.renderer == "quarto"
    assert info.renderer_version == "1.99.0"
    assert info.output == out and info.seconds >= 0
    expected = [
        str(exe), "render", "report_source.ipynb", "--to", "html", "--no-execute",
        "-M", "embed-resources:true", "-M", "echo:false", "-M", "warning:false",
        "-M", "toc:true", "-M", "include-in-header:pbc-print-style.html",
        "--output", "report_source.html",
    ]  # fmt: skip
    assert info.command == expected
    argv = (tmp_path / "standin_log" / "argv.txt").read_text().splitlines()
    assert argv == expected[1:]

    # ran in a fresh temporary directory holding a copy of the notebook, removed afterwards
    cwd = Path((tmp_path / "standin_log" / "cwd.txt").read_text().strip())
    assert cwd.parent.resolve() == Path(tempfile.gettempdir()).resolve()
    assert cwd.name.startswith("pbc-quarto-")
    assert cwd.resolve() != executed_notebook.parent.resolve()
    assert not cwd.exists()
    assert "report_source.ipynb" in (tmp_path / "standin_log" / "listing.txt").read_text().split()
    # the print stylesheet beside it, for Quarto to inline into the page's head (A4, no cut table columns)
    assert "pbc-print-style.html" in (tmp_path / "standin_log" / "listing.txt").read_text().split()
    header = (tmp_path / "standin_log" / "header.html").read_text()
    assert header.startswith('<style type="text/css">') and "@page { size: A4;" in header and "@media print" in header
    # nothing written next to the source notebook
    assert sorted(p.name for p in executed_notebook.parent.iterdir()) == ["report_source.ipynb"]

    assert out.read_text() == STANDIN_HTML


def test_quarto_title_passed_as_yaml_string(monkeypatch, tmp_path, executed_notebook):
    exe = _standin_quarto(tmp_path)
    monkeypatch.setenv("PBC_QUARTO", str(exe))
    info = render_html(executed_notebook, tmp_path / "r.html", renderer="quarto", title='PBC: "A"')
    assert info.command[-2:] == ["-M", 'title:"PBC: \\"A\\""']


def test_quarto_failure_reports_command_and_stderr(monkeypatch, tmp_path, executed_notebook):
    exe = _standin_quarto(tmp_path, html=None, exit_code=1)
    monkeypatch.setenv("PBC_QUARTO", str(exe))
    out = tmp_path / "r.html"
    with pytest.raises(ReportError) as err:
        render_html(executed_notebook, out, renderer="quarto")
    msg = str(err.value)
    assert "boom" in msg
    assert f"{exe} render report_source.ipynb --to html --no-execute" in msg
    assert "exit code 1" in msg
    assert not out.exists()


def test_quarto_exit_zero_without_output_is_an_error(monkeypatch, tmp_path, executed_notebook):
    exe = _standin_quarto(tmp_path, html=None, exit_code=0)
    monkeypatch.setenv("PBC_QUARTO", str(exe))
    out = tmp_path / "r.html"
    with pytest.raises(ReportError, match="wrote no report_source.html"):
        render_html(executed_notebook, out)
    assert not out.exists()


def test_quarto_output_with_cdn_script_is_rejected(monkeypatch, tmp_path, executed_notebook):
    html = "<html><head><script src=\"https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js\"></script></head></html>"
    exe = _standin_quarto(tmp_path, html=html)
    monkeypatch.setenv("PBC_QUARTO", str(exe))
    with pytest.raises(ReportError, match=r"(?s)not self-contained.*script src=https://cdn\.jsdelivr\.net"):
        render_html(executed_notebook, tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_renderer_quarto_without_quarto_is_a_clear_error(no_quarto, tmp_path, executed_notebook):
    with pytest.raises(ReportError) as err:
        render_html(executed_notebook, tmp_path / "r.html", renderer="quarto")
    msg = str(err.value)
    assert "Quarto was not found" in msg
    assert "https://quarto.org" in msg and "PBC_QUARTO" in msg and "nbconvert" in msg


def test_bad_renderer_and_missing_notebook(tmp_path, executed_notebook):
    with pytest.raises(ValueError, match="renderer"):
        render_html(executed_notebook, tmp_path / "r.html", renderer="pandoc")
    with pytest.raises(ReportError, match="notebook not found"):
        render_html(tmp_path / "nope.ipynb", tmp_path / "r.html", renderer="nbconvert")


# --------------------------------------------------------------------------------------------------
# nbconvert fallback (real nbconvert)
# --------------------------------------------------------------------------------------------------
def test_nbconvert_fallback_is_self_contained_and_deterministic(no_quarto, tmp_path, executed_notebook):
    out1, out2 = tmp_path / "a" / "r.html", tmp_path / "b" / "r.html"
    info = render_html(executed_notebook, out1, title="PBC evaluation <draft>")
    assert info.renderer == "nbconvert" and info.command is None
    import nbconvert

    assert info.renderer_version == nbconvert.__version__
    html = out1.read_text(encoding="utf-8")
    assert [p.name for p in out1.parent.iterdir()] == ["r.html"]  # no partial file left behind

    # no code input, no prompts
    assert "SECRET_INPUT_MARKER" not in html
    assert "plt.show()" not in html
    assert "jp-InputPrompt" not in html.split("</style>")[-1]
    # markdown, table and embedded figure present
    assert "Referral summary" in html
    assert "<table" in html and "P002" in html and "5678" in html
    assert re.search(r'<img[^>]*\bsrc="data:image/png;base64,[A-Za-z0-9+/]{100}', html)
    # nothing loaded from the network; the prose hyperlink survives
    assert check_self_contained(html) == []
    assert "<script" not in html
    assert "cdnjs" not in html and "require.min.js" not in html and "mathjax" not in html.lower()
    assert 'href="https://digital.nhs.uk/"' in html
    # title and footer
    assert "<title>PBC evaluation &lt;draft&gt;</title>" in html
    assert f"Rendered by nbconvert {nbconvert.__version__} (Quarto not found)" in html

    # byte-identical second render
    render_html(executed_notebook, out2, title="PBC evaluation <draft>")
    assert out1.read_bytes() == out2.read_bytes()


def test_nbconvert_requested_explicitly(monkeypatch, tmp_path, executed_notebook):
    # even with a (stand-in) Quarto available, renderer="nbconvert" must not call it
    exe = _standin_quarto(tmp_path)
    monkeypatch.setenv("PBC_QUARTO", str(exe))
    out = tmp_path / "r.html"
    info = render_html(executed_notebook, out, renderer="nbconvert")
    assert info.renderer == "nbconvert"
    assert not (tmp_path / "standin_log" / "argv.txt").exists()
    html = out.read_text(encoding="utf-8")
    assert "(renderer=nbconvert requested)" in html
    assert "<title>report_source</title>" in html


def test_nbconvert_honours_remove_tags_options_and_drops_warnings(tmp_path):
    nb = nbformat.v4.new_notebook()
    removed = nbformat.v4.new_code_cell("x", metadata={"tags": ["remove-cell"]})
    removed.outputs = [nbformat.v4.new_output("stream", name="stdout", text="GONE_CELL\n")]
    no_out = nbformat.v4.new_code_cell("#| output: false\nx")
    no_out.outputs = [nbformat.v4.new_output("stream", name="stdout", text="GONE_OUTPUT\n")]
    warn = nbformat.v4.new_code_cell("y")
    warn.outputs = [
        nbformat.v4.new_output("stream", name="stderr", text="GONE_WARNING\n"),
        nbformat.v4.new_output("stream", name="stdout", text="KEPT_STDOUT\n"),
    ]
    nb.cells = [removed, no_out, warn]
    src = tmp_path / "n.ipynb"
    nbformat.write(nb, str(src))
    render_html(src, tmp_path / "a.html", renderer="nbconvert")
    render_html(src, tmp_path / "b.html", renderer="nbconvert")
    html = (tmp_path / "a.html").read_text()
    assert "KEPT_STDOUT" in html
    for gone in ("GONE_CELL", "GONE_OUTPUT", "GONE_WARNING"):
        assert gone not in html
    assert (tmp_path / "a.html").read_bytes() == (tmp_path / "b.html").read_bytes()

    # A JavaScript output would put a script in the page that we did not put there: refused, nothing written.
    js = nbformat.v4.new_code_cell("z")
    js.outputs = [
        nbformat.v4.new_output("display_data", data={"application/javascript": "1;", "text/plain": "js"})
    ]
    nb.cells.append(js)
    nbformat.write(nb, str(src))
    with pytest.raises(ReportError, match=r"script sha256=[0-9a-f]{64} not in the allow-list: .var element = document.getElementById"):
        render_html(src, tmp_path / "c.html", renderer="nbconvert")
    assert not (tmp_path / "c.html").exists()


def test_nbconvert_notebook_with_external_image_is_rejected(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("![logo](https://example.org/logo.png)")]
    src = tmp_path / "n.ipynb"
    nbformat.write(nb, str(src))
    with pytest.raises(ReportError, match="img src=https://example.org/logo.png"):
        render_html(src, tmp_path / "r.html", renderer="nbconvert")
    assert not (tmp_path / "r.html").exists()


# --------------------------------------------------------------------------------------------------
# check_self_contained on crafted HTML
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "snippet, expected",
    [
        ('<script src="https://cdn.example/x.js"></script>', ["script src=https://cdn.example/x.js"]),
        ('<script src="//cdn.example/x.js"></script>', ["script src=//cdn.example/x.js"]),
        ('<link rel="stylesheet" href="http://fonts.example/f.css">', ["link href=http://fonts.example/f.css"]),
        ('<img src="HTTPS://img.example/a.png">', ["img src=HTTPS://img.example/a.png"]),
        ('<iframe src="https://video.example/v"></iframe>', ["iframe src=https://video.example/v"]),
        ('<video><source src="https://v.example/a.mp4"></video>', ["source src=https://v.example/a.mp4"]),
        ('<img srcset="a.png 1x, https://i.example/b.png 2x">', ["img srcset=https://i.example/b.png"]),
        ("<style>@font-face{src:url('https://f.example/a.woff2')}</style>", ["style url(https://f.example/a.woff2)"]),
        ('<style>@import "https://f.example/x.css";</style>', ["style @import https://f.example/x.css"]),
        ("<style>@import url(//f.example/x.css);</style>",
         ["style url(//f.example/x.css)", "style @import //f.example/x.css"]),
        ('<div style="background: url(http://i.example/bg.png)"></div>', ["div[style] url(http://i.example/bg.png)"]),
        ('<script type="module">const m = await import("https://cdn.example/m.mjs");</script>',
         ["script import https://cdn.example/m.mjs",
          "script sha256=6dc202dd40f868ec0758ca96fc093e9580d08409ffa2abea938c909ecfd55bc0 not in the allow-list: "
          "'const m = await import(\"https://cdn.example/m.mjs\");'"]),
        ('<svg><image href="https://i.example/a.png"/></svg>', ["image href=https://i.example/a.png"]),
    ],
)  # fmt: skip
def test_check_self_contained_flags_external_references(snippet, expected):
    assert check_self_contained(f"<html><head></head><body>{snippet}</body></html>") == expected


def test_check_self_contained_allows_inline_and_hyperlinks():
    page = """<!DOCTYPE html><html><head><title>t</title>
    <style>.a{background:url(data:image/svg+xml;base64,PHN2Zz4=)} /* see https://example.org */</style>
    </head><body>
    <a href="https://digital.nhs.uk/">NHS Digital</a> <a href="//example.org/x">rel</a>
    <a href="#section-1">jump</a>
    <img src="data:image/png;base64,iVBORw0KGgo=" alt="fig">
    <svg xmlns="http://www.w3.org/2000/svg"><use href="#sym"/></svg>
    <p>Plain text mentioning https://example.org/page and url(https://x.example) in prose.</p>
    </body></html>"""
    assert check_self_contained(page) == []


def test_check_self_contained_allows_a_listed_inline_script_only():
    import hashlib

    code = 'var u = "https://example.org/not-loaded"; document.title = "x";'
    page = f"<html><head><script>{code}</script></head><body></body></html>"
    assert check_self_contained(page, {hashlib.sha256(code.encode()).hexdigest(): "reviewed"}) == []
    assert check_self_contained(page) == [
        f"script sha256={hashlib.sha256(code.encode()).hexdigest()} not in the allow-list: {code[:60]!r}"]


def test_check_self_contained_deduplicates_in_document_order():
    page = (
        '<script src="https://b.example/1.js"></script><img src="https://a.example/i.png">'
        '<script src="https://b.example/1.js"></script>'
    )
    assert check_self_contained(page) == ["script src=https://b.example/1.js", "img src=https://a.example/i.png"]


# --------------------------------------------------------------------------------------------------
# Real Quarto, only where it is installed
# --------------------------------------------------------------------------------------------------
def test_real_quarto_render(tmp_path, executed_notebook):
    if REAL_QUARTO is None:
        pytest.skip("Quarto not installed")
    out = tmp_path / "quarto.html"
    info = render_html(executed_notebook, out, renderer="quarto", timeout=300)
    assert info.renderer == "quarto"
    html = out.read_text(encoding="utf-8")
    assert check_self_contained(html) == []
    assert "SECRET_INPUT_MARKER" not in html
    assert "data:image/png;base64," in html
    assert "P002" in html


def test_module_exports():
    assert set(report.__all__) >= {"find_quarto", "render_html", "check_self_contained", "RenderInfo", "ReportError"}
