"""Render an executed notebook to ONE self-contained HTML file.

The published report must open offline, from an e-mail attachment or a shared drive, and must not
make any request to a third party when it is opened (an NHS reader may be on a locked-down network,
and a CDN request leaks who is reading what). Two renderers are supported:

Quarto (preferred)
    ``quarto render <nb>.ipynb --to html --no-execute -M embed-resources:true -M echo:false
    -M warning:false --output <nb>.html``, run in a fresh temporary directory holding a copy of
    the notebook (so that Quarto's ``*_files`` side products and ``.quarto`` caches never land in
    the project tree). ``embed-resources: true`` "produces a standalone HTML file with no external
    dependencies, using ``data:`` URIs to incorporate the contents of linked scripts, stylesheets,
    images, and videos" (Quarto HTML options reference,
    https://quarto.org/docs/reference/formats/html.html#rendering, and
    https://quarto.org/docs/output-formats/html-publishing.html#standalone-html). Note Quarto's
    own caveat (https://quarto.org/docs/advanced/html/external-sources.html): math libraries are
    *not* embedded by default, so a notebook containing LaTeX math would make Quarto emit a
    MathJax ``<script src="https://cdn.jsdelivr.net/...">``; :func:`check_self_contained` then
    rejects the page (set ``self-contained-math: true`` or ``html-math-method: plain`` in the
    notebook's front matter if that happens).

nbconvert (fallback, always available in the venv)
    ``HTMLExporter`` with the ``lab`` template, code input and prompts excluded, images embedded as
    ``data:`` URIs, and a small template override that blanks every block which would load
    something from a CDN (require.js, MathJax, mermaid.js, the Jupyter widgets manager). Tables
    are static HTML (pandas ``to_html``) styled by the inlined lab CSS, so they read without
    JavaScript. LaTeX math is left as its TeX source (no MathJax). A visible footer line says
    which renderer was used and why.

Whichever renderer runs, the result goes through :func:`check_self_contained` and a page that
still references the network is an error (:class:`ReportError`), never a silent success.
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "RenderInfo",
    "ReportError",
    "check_self_contained",
    "find_quarto",
    "quarto_command",
    "render_html",
]

QUARTO_ENV_VAR = "PBC_QUARTO"
QUARTO_INSTALL_HINT = (
    "Install Quarto from https://quarto.org/docs/get-started/ (or point the PBC_QUARTO "
    "environment variable at the quarto executable), or render with renderer='nbconvert'."
)
_STDERR_TAIL_LINES = 40


class ReportError(RuntimeError):
    """Rendering the HTML report failed, or the result is not a self-contained page."""


@dataclass(frozen=True)
class RenderInfo:
    """What rendered the report, how, and where it went (for the run manifest)."""

    renderer: str  # "quarto" or "nbconvert"
    renderer_version: str
    command: list[str] | None  # the Quarto command line; None for the in-process nbconvert
    seconds: float
    output: Path


# --------------------------------------------------------------------------------------------------
# Finding Quarto
# --------------------------------------------------------------------------------------------------
def find_quarto() -> str | None:
    """Return the Quarto executable to use, or None.

    The environment variable ``PBC_QUARTO`` (a path to an executable) wins when set and non-empty;
    otherwise ``shutil.which("quarto")``.
    """
    env = os.environ.get(QUARTO_ENV_VAR, "").strip()
    if env:
        return env
    return shutil.which("quarto")


def quarto_version(quarto: str, timeout: int = 60) -> str:
    """``quarto --version``, or ``"unknown"`` if that does not answer cleanly."""
    try:
        proc = subprocess.run(
            [quarto, "--version"],
            capture_output=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    out = proc.stdout.strip().splitlines()
    return out[0].strip() if proc.returncode == 0 and out else "unknown"


def quarto_command(quarto: str, stem: str, title: str | None = None) -> list[str]:
    """The exact ``quarto render`` command line used for ``<stem>.ipynb`` (run in its temp dir)."""
    cmd = [
        quarto,
        "render",
        f"{stem}.ipynb",
        "--to",
        "html",
        "--no-execute",
        "-M",
        "embed-resources:true",
        "-M",
        "echo:false",
        "-M",
        "warning:false",
        "--output",
        f"{stem}.html",
    ]
    if title is not None:
        # Quarto parses a -M value as YAML; a JSON string is a valid YAML double-quoted scalar, so
        # titles containing ':' or quotes survive intact.
        cmd += ["-M", f"title:{json.dumps(title)}"]
    return cmd


# --------------------------------------------------------------------------------------------------
# Self-containment check
# --------------------------------------------------------------------------------------------------
_EXTERNAL = re.compile(r"^\s*(?:https?:)?//", re.IGNORECASE)
_CSS_URL = re.compile(r"""url\(\s*(['"]?)(.*?)\1\s*\)""", re.IGNORECASE | re.DOTALL)
_CSS_IMPORT = re.compile(r"""@import\s+(?:url\(\s*)?(['"]?)([^'")\s;]+)\1""", re.IGNORECASE)
_JS_IMPORT = re.compile(
    r"""(?:\bimport\s*\(\s*|\bimport\s+[^'";]*?\bfrom\s*|\bimport\s+)(['"`])([^'"`]+)\1"""
)
# Attributes that make the browser fetch something. <a>/<area> href are navigation, not loading.
_FETCH_ATTRS = ("src", "href", "srcset", "poster", "data", "xlink:href", "background")
_NAVIGATION_TAGS = {"a", "area"}


def _is_external(url: str) -> bool:
    return bool(_EXTERNAL.match(url or ""))


def _srcset_urls(value: str) -> list[str]:
    return [part.strip().split()[0] for part in value.split(",") if part.strip()]


def check_self_contained(html_text: str) -> list[str]:
    """Return every reference in ``html_text`` that would be fetched from the network.

    Flagged (as ``"<tag> <attr>=<url>"`` / ``"<tag> url(<url>)"`` strings, in document order,
    without duplicates): any ``src``, ``href``, ``srcset``, ``poster``, ``data`` or ``xlink:href``
    attribute of an element other than ``<a>``/``<area>`` (so ``<script src>``, ``<link href>``,
    ``<img src>``, ``<iframe src>``, ``<source src>``, SVG ``<image href>`` ...), any CSS
    ``url(...)`` or ``@import`` in a ``<style>`` element or ``style=""`` attribute, and ES module
    imports (``import(...)``, ``import ... from "..."``) inside inline ``<script>``, when the URL
    starts with ``http://``, ``https://`` or is protocol-relative (``//host/...``).

    Not flagged: ``data:`` URIs, in-page ``#fragment`` references, and ordinary hyperlinks
    (``<a href="https://...">``) in the prose. An empty list means the page is self-contained.
    """
    from bs4 import BeautifulSoup  # nbconvert dependency

    soup = BeautifulSoup(html_text, "html.parser")
    found: list[str] = []

    def add(item: str) -> None:
        if item not in found:
            found.append(item)

    def scan_css(tag: str, css: str) -> None:
        for m in _CSS_URL.finditer(css):
            if _is_external(m.group(2)):
                add(f"{tag} url({m.group(2).strip()})")
        for m in _CSS_IMPORT.finditer(css):
            if _is_external(m.group(2)):
                add(f"{tag} @import {m.group(2).strip()}")

    for el in soup.find_all(True):
        name = el.name.lower()
        for attr in _FETCH_ATTRS:
            value = el.attrs.get(attr)
            if value is None or (name in _NAVIGATION_TAGS and attr in ("href", "xlink:href")):
                continue
            if isinstance(value, list):  # bs4 splits multi-valued attributes
                value = " ".join(value)
            urls = _srcset_urls(value) if attr == "srcset" else [value]
            for url in urls:
                if _is_external(url):
                    add(f"{name} {attr}={url.strip()}")
        style_attr = el.attrs.get("style")
        if style_attr:
            scan_css(f"{name}[style]", style_attr)
        if name == "style":
            scan_css("style", el.get_text())
        elif name == "script" and not el.attrs.get("src"):
            for m in _JS_IMPORT.finditer(el.get_text()):
                if _is_external(m.group(2)):
                    add(f"script import {m.group(2).strip()}")
    return found


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------
def render_html(
    notebook: Path,
    out_html: Path,
    renderer: str = "auto",
    title: str | None = None,
    timeout: int = 600,
) -> RenderInfo:
    """Render the executed ``notebook`` to the single self-contained HTML file ``out_html``.

    ``renderer``: ``"auto"`` (Quarto if :func:`find_quarto` finds it, else nbconvert),
    ``"quarto"`` (a :class:`ReportError` if Quarto is not installed) or ``"nbconvert"``.
    ``title`` sets the page ``<title>`` (default: the notebook's own title / file name).
    ``timeout`` bounds the Quarto subprocess (seconds). The notebook is never executed here: it
    must already carry its outputs (papermill's output notebook).

    Raises :class:`ReportError` when the renderer fails, produces nothing, or produces a page
    that still loads something from the network (see :func:`check_self_contained`).
    """
    notebook = Path(notebook)
    out_html = Path(out_html)
    if renderer not in ("auto", "quarto", "nbconvert"):
        raise ValueError(f"renderer must be 'auto', 'quarto' or 'nbconvert', not {renderer!r}")
    if not notebook.is_file():
        raise ReportError(f"notebook not found: {notebook}")

    quarto = find_quarto() if renderer in ("auto", "quarto") else None
    if renderer == "quarto" and quarto is None:
        raise ReportError(f"renderer='quarto' requested but Quarto was not found. {QUARTO_INSTALL_HINT}")

    start = time.perf_counter()
    if quarto is not None:
        html_bytes, command, version = _render_quarto(quarto, notebook, title, timeout)
        used = "quarto"
    else:
        reason = "Quarto not found" if renderer == "auto" else "renderer=nbconvert requested"
        html_bytes, version = _render_nbconvert(notebook, title, reason)
        command, used = None, "nbconvert"

    offending = check_self_contained(html_bytes.decode("utf-8", errors="replace"))
    if offending:
        shown = "\n  ".join(offending[:20])
        more = f"\n  ... and {len(offending) - 20} more" if len(offending) > 20 else ""
        raise ReportError(
            f"{used} produced an HTML page that is not self-contained; it references:\n  "
            f"{shown}{more}"
        )

    # Write next to the target and rename, so a reader never sees a half-written report.
    out_html.parent.mkdir(parents=True, exist_ok=True)
    partial = out_html.with_name(f".{out_html.name}.partial")
    partial.write_bytes(html_bytes)
    os.replace(partial, out_html)
    return RenderInfo(
        renderer=used,
        renderer_version=version,
        command=command,
        seconds=time.perf_counter() - start,
        output=out_html,
    )


def _tail(text: str, n: int = _STDERR_TAIL_LINES) -> str:
    return "\n".join((text or "").rstrip().splitlines()[-n:])


def _render_quarto(
    quarto: str, notebook: Path, title: str | None, timeout: int
) -> tuple[bytes, list[str], str]:
    version = quarto_version(quarto, timeout=min(timeout, 60))
    with tempfile.TemporaryDirectory(prefix="pbc-quarto-") as tmp:
        work = Path(tmp)
        stem = notebook.stem
        shutil.copyfile(notebook, work / f"{stem}.ipynb")
        cmd = quarto_command(quarto, stem, title)
        shown = shlex.join(cmd)
        try:
            proc = subprocess.run(
                cmd,
                cwd=work,
                capture_output=True,
                encoding="utf-8",
                errors="replace",
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ReportError(f"Quarto timed out after {timeout}s: {shown}") from exc
        except OSError as exc:
            raise ReportError(f"could not run Quarto ({exc}): {shown}") from exc
        if proc.returncode != 0:
            raise ReportError(
                f"Quarto failed (exit code {proc.returncode}): {shown}\n"
                f"--- last {_STDERR_TAIL_LINES} lines of stderr ---\n{_tail(proc.stderr)}"
            )
        produced = work / f"{stem}.html"
        if not produced.is_file():
            raise ReportError(
                f"Quarto exited 0 but wrote no {produced.name}: {shown}\n"
                f"--- stderr ---\n{_tail(proc.stderr)}\n--- stdout ---\n{_tail(proc.stdout)}"
            )
        return produced.read_bytes(), cmd, version


# -- nbconvert ---------------------------------------------------------------------------------------
# Blocks of nbconvert's ``lab`` template (share/jupyter/nbconvert/templates/lab/index.html.j2) that
# load code from a CDN are emptied; a footer naming the renderer is added.
_NBCONVERT_TEMPLATE_NAME = "pbc_static_report.html.j2"
_NBCONVERT_TEMPLATE = """\
{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block extra_css -%}
<style type="text/css">
footer.pbc-render-footer { margin: 2em 0 1em 0; padding-top: 0.5em; border-top: 1px solid #ccc;
  color: #555; font-size: 0.85em; font-family: var(--jp-ui-font-family, sans-serif); }
</style>
{%- endblock extra_css -%}
{% block body_footer %}
<footer class="pbc-render-footer"><p>{{ resources.pbc_footer | e }}</p></footer>
</main>
</body>
{% endblock body_footer %}
"""
_REMOVE_CELL_TAGS = {"remove-cell", "remove_cell"}
_REMOVE_OUTPUT_TAGS = {"remove-output", "remove_output"}
_QUARTO_OPTION = re.compile(r"^#\|\s*([\w-]+)\s*:\s*(.*?)\s*$")


def _quarto_cell_options(source: str) -> dict[str, str]:
    """Leading ``#| key: value`` lines of a code cell (Quarto cell options), lower-cased values."""
    options: dict[str, str] = {}
    for line in source.splitlines():
        m = _QUARTO_OPTION.match(line.strip())
        if not m:
            break
        options[m.group(1).lower()] = m.group(2).lower()
    return options


def _prepare_for_publication(nb):  # nbformat.NotebookNode -> NotebookNode (a copy)
    """Apply what Quarto would (echo:false, warning:false, remove-* tags, include/output options).

    Drops cells tagged ``remove-cell`` or with ``#| include: false``; drops the outputs of cells
    tagged ``remove-output`` or with ``#| output: false``; drops ``stderr`` stream outputs
    (warnings; Quarto's ``warning: false``). Code input is hidden by the exporter itself.
    """
    nb = copy.deepcopy(nb)
    kept = []
    for cell in nb.cells:
        tags = set(cell.get("metadata", {}).get("tags", []) or [])
        if tags & _REMOVE_CELL_TAGS:
            continue
        if cell.cell_type == "code":
            opts = _quarto_cell_options(cell.source)
            if opts.get("include") == "false":
                continue
            if tags & _REMOVE_OUTPUT_TAGS or opts.get("output") == "false":
                cell.outputs = []
            else:
                cell.outputs = [
                    o
                    for o in cell.outputs
                    if not (o.get("output_type") == "stream" and o.get("name") == "stderr")
                ]
        kept.append(cell)
    nb.cells = kept
    return nb


def _make_exporter():
    import jinja2
    from nbconvert import HTMLExporter

    class _StaticHTMLExporter(HTMLExporter):
        """HTMLExporter whose generated element ids are a counter, not ``uuid4()`` (determinism)."""

        def _create_environment(self):
            env = super()._create_environment()
            counter = itertools.count(1)
            env.globals["uuid4"] = lambda: f"pbc-output-{next(counter)}"
            return env

    return _StaticHTMLExporter(
        # nbconvert's own messages (e.g. "Alternative text is missing on N image(s)") go to this
        # module's logger, not the process-wide "traitlets" logger.
        log=logging.getLogger(f"{__name__}.nbconvert"),
        template_name="lab",
        template_file=_NBCONVERT_TEMPLATE_NAME,
        extra_loaders=[jinja2.DictLoader({_NBCONVERT_TEMPLATE_NAME: _NBCONVERT_TEMPLATE})],
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        embed_images=True,
        theme="light",
        # Belt and braces: the blocks that use these are emptied by the template above, but
        # nothing external should be configured either.
        mathjax_url="",
        require_js_url="",
        mermaid_js_url="",
        jupyter_widgets_base_url="",
        widget_renderer_url="",
    )


def _render_nbconvert(notebook: Path, title: str | None, reason: str) -> tuple[bytes, str]:
    import nbconvert
    import nbformat

    try:
        nb = nbformat.read(str(notebook), as_version=4)
    except Exception as exc:  # noqa: BLE001 - any parse error is a report failure
        raise ReportError(f"could not read notebook {notebook}: {exc}") from exc
    nb = _prepare_for_publication(nb)
    if title is not None:
        nb.metadata["title"] = title

    exporter = _make_exporter()
    version = nbconvert.__version__
    resources = {
        "metadata": {"name": notebook.stem, "path": str(notebook.parent)},
        "pbc_footer": f"Rendered by nbconvert {version} ({reason})",
    }
    try:
        body, _ = exporter.from_notebook_node(nb, resources=resources)
    except Exception as exc:  # noqa: BLE001
        raise ReportError(f"nbconvert failed to render {notebook}: {exc}") from exc
    return body.encode("utf-8"), version


# --------------------------------------------------------------------------------------------------
# Reading the published tables back (disclosure scan)
# --------------------------------------------------------------------------------------------------

def extract_tables(html_text: str) -> list[dict]:
    """Every ``<table>`` of an HTML page as ``{"caption", "headers", "rows"}`` (cell texts, stripped), with
    the standard library's parser only. Used to scan a published report for undisclosed counts."""
    from html.parser import HTMLParser

    class _P(HTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.tables: list[dict] = []
            self.stack: list[dict] = []
            self.cell: list[str] | None = None
            self.in_caption = False
            self.row: list[str] | None = None
            self.row_is_header = False

        def handle_starttag(self, tag, attrs):
            if tag == "table":
                self.stack.append({"caption": "", "headers": [], "rows": []})
            elif not self.stack:
                return
            elif tag == "caption":
                self.in_caption = True
            elif tag == "tr":
                self.row, self.row_is_header = [], True
            elif tag in ("td", "th"):
                self.cell = []
                if tag == "td":
                    self.row_is_header = False

        def handle_endtag(self, tag):
            if not self.stack:
                return
            t = self.stack[-1]
            if tag == "caption":
                self.in_caption = False
            elif tag in ("td", "th") and self.cell is not None and self.row is not None:
                self.row.append(" ".join("".join(self.cell).split()))
                self.cell = None
            elif tag == "tr" and self.row is not None:
                if self.row_is_header and not t["rows"]:
                    t["headers"] = self.row if not t["headers"] else [f"{a} {b}".strip() for a, b in zip(t["headers"], self.row)]
                else:
                    t["rows"].append(self.row)
                self.row = None
            elif tag == "table":
                self.tables.append(self.stack.pop())

        def handle_data(self, data):
            if self.in_caption and self.stack:
                self.stack[-1]["caption"] += data
            elif self.cell is not None:
                self.cell.append(data)

    p = _P()
    p.feed(html_text)
    for t in p.tables:
        t["caption"] = " ".join(t["caption"].split())
    return p.tables


# --------------------------------------------------------------------------------------------------
# reports/index.html: every run with its date, parameters and headline figures
# --------------------------------------------------------------------------------------------------

def _headline_cells(headline: dict) -> dict[str, str]:
    """The few figures the index shows for a run (modelled estimates; '' when the section is absent)."""
    def ci(d: dict | None, money: bool = False) -> str:
        if not d:
            return ""
        unit = "GBP " if money else ""
        return f"{unit}{d['estimate']:,.0f} ({d['ci_low']:,.0f} to {d['ci_high']:,.0f})"

    ev = headline.get("evaluation") or {}
    att = headline.get("attribution") or {}
    bud = headline.get("budgets") or {}
    bm = headline.get("benchmarking") or {}
    flagged = None
    if bm:
        flagged = len(set(bm.get("high_referrers") or []) | set(bm.get("possible_under_referrers") or []))
    return {
        "GP referrals avoided (95% CI)": ci(ev.get("referrals_avoided")),
        "Practice-action savings (95% CI)": ci(att.get("practice_action_savings"), money=True),
        "Budget envelope": f"GBP {bud['envelope_gbp']:,.0f} ({bud['target_year']})" if "envelope_gbp" in bud else "",
        "Practices flagged": "" if flagged is None else f"{flagged} ({bm.get('latest_period', '')})",
    }


def write_index(reports_dir: str | Path) -> Path:
    """Write ``<reports_dir>/index.html``: one row per run directory holding a ``manifest.json`` (newest
    first) with its start time, config, parameters hash, code version, link to its report and headline
    figures. Plain HTML and inline CSS only (no scripts, nothing fetched), so it opens offline."""
    import html as _html
    import json

    reports_dir = Path(reports_dir)
    rows = []
    for m in sorted(reports_dir.glob("*/manifest.json")):
        run = m.parent
        if run.is_symlink():
            continue
        try:
            man = json.loads(m.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        code = man.get("code") or {}
        commit = (code.get("commit") or "")[:10] + (" (modified)" if code.get("dirty") else "")
        rows.append({"started": man.get("started_utc", ""), "run": run.name,
                     "report": (run / "report.html").exists(), "config": man.get("config_name", ""),
                     "parameters hash": (man.get("parameters_hash") or "")[:12], "code": commit,
                     **_headline_cells(man.get("headline") or {})})
    rows.sort(key=lambda r: (r["started"], r["run"]), reverse=True)
    cols = ["started", "run", "config", "parameters hash", "code", "GP referrals avoided (95% CI)",
            "Practice-action savings (95% CI)", "Budget envelope", "Practices flagged"]
    esc = _html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in cols)
    body = []
    for r in rows:
        cells = []
        for c in cols:
            v = str(r.get(c, ""))
            if c == "run" and r["report"]:
                cells.append(f'<td><a href="{esc(r["run"])}/report.html">{esc(v)}</a></td>')
            else:
                cells.append(f"<td>{esc(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>PBC evaluation runs</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse}}
th,td{{border-bottom:1px solid #ccc;padding:.3em .6em;text-align:left;font-size:.9em}}th{{background:#f2f2f2}}</style>
</head><body><h1>PBC evaluation runs</h1>
<p>{len(rows)} run(s) in this directory, newest first. Headline figures are modelled estimates with 95%
intervals. Check a run with <code>pbc verify reports/&lt;run&gt;</code>.</p>
<table><caption>Runs</caption><thead><tr>{head}</tr></thead><tbody>
{chr(10).join(body)}
</tbody></table></body></html>
"""
    out = reports_dir / "index.html"
    out.write_text(page, encoding="utf-8")
    return out
