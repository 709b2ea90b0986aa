"""Render an executed notebook to ONE self-contained HTML file.

The published report must open offline, from an e-mail attachment or a shared drive, and must not
make any request to a third party when it is opened (an NHS reader may be on a locked-down network,
and a CDN request leaks who is reading what). Two renderers are supported:

Quarto (preferred)
    ``quarto render <nb>.ipynb --to html --no-execute -M embed-resources:true -M echo:false
    -M warning:false -M toc:true -M include-in-header:pbc-print-style.html --output <nb>.html``, run in a
    fresh temporary directory holding a copy of the notebook and the print stylesheet (so that Quarto's
    ``*_files`` side products and ``.quarto`` caches never land in the project tree): Quarto's own table of
    contents, and the same A4 print rules as the nbconvert path (:mod:`pbc_analysis.publish.report_style`:
    its table, figure and section rules are element selectors, which Quarto's page has too).
    ``embed-resources: true`` "produces a standalone HTML file with no external
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
    which renderer was used and why. The page carries an A4 print stylesheet and a table of contents
    made from its own ``h2``/``h3`` headings (:mod:`pbc_analysis.publish.report_style`).

Whichever renderer runs, the result goes through :func:`check_self_contained` and a page that
still references the network, or carries active content (an event-handler attribute, a
``javascript:`` URL, a ``<script>`` not in :data:`ALLOWED_SCRIPTS` or shipped by the Quarto that
rendered it), is an error (:class:`ReportError`), never a silent success. Text from a run's files is
escaped for Markdown by :mod:`pbc_analysis.publish.markdown` wherever it is printed (here: the page title).
This module is in the publish layer: it imports nothing from the pipeline layer (the runs index is
:mod:`pbc_analysis.pipeline.runs_index`).
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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pbc_analysis.publish.markdown import markdown_text
from pbc_analysis.publish.report_style import PRINT_CSS, SCREEN_CSS, add_table_of_contents

__all__ = [
    "ALLOWED_SCRIPTS",
    "RenderInfo",
    "ReportError",
    "check_self_contained",
    "find_quarto",
    "quarto_command",
    "quarto_script_digests",
    "render_html",
    "script_digest",
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


#: written beside the notebook in Quarto's temporary directory: the print stylesheet (and the table of contents'
#: styles) of :mod:`pbc_analysis.publish.report_style`, inlined into the page's head by ``include-in-header``
QUARTO_HEADER = "pbc-print-style.html"


def quarto_command(quarto: str, stem: str, title: str | None = None) -> list[str]:
    """The exact ``quarto render`` command line used for ``<stem>.ipynb`` (run in its temp dir): a self-contained
    page with Quarto's table of contents (``toc``) and the print stylesheet in its head (:data:`QUARTO_HEADER`)."""
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
        "-M",
        "toc:true",
        "-M",
        f"include-in-header:{QUARTO_HEADER}",
        "--output",
        f"{stem}.html",
    ]
    if title is not None:
        # Quarto parses a -M value as YAML; a JSON string is a valid YAML double-quoted scalar, so
        # titles containing ':' or quotes survive intact. Pandoc then reads a metadata string as
        # Markdown, so the title is escaped for Markdown first (no raw HTML, links or math).
        cmd += ["-M", f"title:{json.dumps(markdown_text(title))}"]
    return cmd


# --------------------------------------------------------------------------------------------------
# Self-containment and active-content check
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
# URL schemes that run code or open an active document, wherever they appear in an attribute value
# (checked after removing every ASCII control and white-space character, as browsers ignore them).
_ACTIVE_SCHEMES = ("javascript:", "vbscript:", "data:text/html", "data:application/xhtml+xml")
_CONTROL_AND_SPACE = re.compile(r"[\x00-\x20\x7f]+")
# Elements that open what they load as a document, in which an SVG's own scripts would run.
_DOCUMENT_TAGS = {"iframe", "frame", "object", "embed"}
# The raw text is scanned too, as a second line of defence against markup that Python's parser and a
# browser read differently (for example an <img onerror=...> inside an SVG <style>).
_RAW_SCRIPT = re.compile(r"<\s*script\b", re.IGNORECASE)
_TAG_START = re.compile(r"<[a-zA-Z][^\s/>]*")
_RAW_ATTR = re.compile(r"""[\s/]*([^\s/>][^\s/>=]*)(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s>]*))?""")

#: Scripts a published page may contain, by the sha256 of their content (see :func:`script_digest`),
#: with where each one comes from. nbconvert's page has none: our template
#: (``pbc_static_report.html.j2``) empties the require.js, MathJax, mermaid.js and widget-manager
#: blocks of the ``lab`` template, and the sample run's report (nbconvert 7.17) has no ``<script>``,
#: no event-handler attribute and no ``javascript:`` URL. Quarto's own scripts are added at render
#: time from the Quarto installation that rendered the page (:func:`quarto_script_digests`).
ALLOWED_SCRIPTS: dict[str, str] = {}


def _is_external(url: str) -> bool:
    return bool(_EXTERNAL.match(url or ""))


def _srcset_urls(value: str) -> list[str]:
    return [part.strip().split()[0] for part in value.split(",") if part.strip()]


def _active_scheme(value: str) -> str | None:
    """The active URL scheme (``javascript:`` ...) that ``value`` contains, if any."""
    flat = _CONTROL_AND_SPACE.sub("", value).lower()
    return next((s for s in _ACTIVE_SCHEMES if s in flat), None)


def script_digest(src: str | None, text: str) -> str:
    """The sha256 that identifies a ``<script>`` for :data:`ALLOWED_SCRIPTS`.

    Parameters
    ----------
    src : str or None
        The element's ``src`` attribute, or None for an inline script.
    text : str
        The element's text content (used when ``src`` is None).

    Returns
    -------
    str
        Hex sha256 of the inline text (UTF-8); for ``src="data:...;base64,..."`` of the decoded bytes
        and for other ``data:`` URLs of their percent-decoded text (so a script that a renderer
        embedded from a file has the file's own sha256); for any other ``src``, of the URL itself.

    References
    ----------
    RFC 2397, The "data" URL scheme, https://www.rfc-editor.org/rfc/rfc2397; FIPS 180-4 (SHA-256).
    """
    import base64
    import hashlib
    from urllib.parse import unquote_to_bytes

    if src is None:
        payload = text.encode("utf-8")
    elif src.strip().lower().startswith("data:") and "," in src:
        head, _, data = src.strip().partition(",")
        try:
            payload = base64.b64decode(data, validate=False) if head.lower().endswith(";base64") else unquote_to_bytes(data)
        except ValueError:
            payload = src.encode("utf-8")
    else:
        payload = src.encode("utf-8")
    return hashlib.sha256(payload).hexdigest()


def check_self_contained(html_text: str, allowed_scripts: Mapping[str, str] | None = None) -> list[str]:
    """Return every reference in ``html_text`` that would be fetched, and every piece of active content.

    Parameters
    ----------
    html_text : str
        The page.
    allowed_scripts : Mapping of str to str, optional
        sha256 digests (:func:`script_digest`) of the scripts the page may hold, mapped to where they
        come from; default :data:`ALLOWED_SCRIPTS`.

    Returns
    -------
    list of str
        Problems in document order, without duplicates; an empty list means the page is
        self-contained and carries no code we did not put there. Flagged:

        - network references (``"<tag> <attr>=<url>"`` / ``"<tag> url(<url>)"``): any ``src``,
          ``href``, ``srcset``, ``poster``, ``data``, ``background`` or ``xlink:href`` attribute of an
          element other than ``<a>``/``<area>``, any CSS ``url(...)`` or ``@import`` in a ``<style>``
          element or ``style=""`` attribute, and ES module imports inside inline ``<script>``, when the
          URL is ``http://``, ``https://`` or protocol-relative;
        - event-handler attributes (``"<tag> on<event>= (event handler)"``), on any element;
        - ``javascript:``, ``vbscript:``, ``data:text/html`` and ``data:application/xhtml+xml`` URLs in
          any attribute or CSS ``url()`` (``"<tag> <attr>=javascript: URL"``), any ``srcdoc``, a
          ``data:image/svg+xml`` document in an ``<iframe>``/``<object>``/``<embed>``, CSS
          ``expression()`` and ``<meta http-equiv="refresh">``;
        - every ``<script>`` whose digest is not in ``allowed_scripts``
          (``"script sha256=<hex> not in the allow-list: <first characters>"``), unless it is already
          flagged as loading from the network;
        - ``<script`` or ``on<event>=`` markup that the parser did not see as such (raw-text scan).

        Not flagged: ``data:`` images, fonts and styles, in-page ``#fragment`` references and ordinary
        hyperlinks (``<a href="https://...">``) in the prose.

    References
    ----------
    WHATWG HTML Living Standard, sections 8.1.5 (javascript: URLs) and 8.1.8 (event handler content
    attributes), https://html.spec.whatwg.org/multipage/webappapis.html; OWASP Cross Site Scripting
    Prevention Cheat Sheet, https://cheatsheetseries.owasp.org/cheatsheets/Cross_Site_Scripting_Prevention_Cheat_Sheet.html.
    """
    from bs4 import BeautifulSoup  # nbconvert dependency

    allowed = ALLOWED_SCRIPTS if allowed_scripts is None else allowed_scripts
    soup = BeautifulSoup(html_text, "html.parser")
    found: list[str] = []

    def add(item: str) -> None:
        if item not in found:
            found.append(item)

    def scan_css(tag: str, css: str) -> None:
        for m in _CSS_URL.finditer(css):
            url = m.group(2).strip()
            if _is_external(url):
                add(f"{tag} url({url})")
            elif scheme := _active_scheme(url):
                add(f"{tag} url({scheme}) URL")
        for m in _CSS_IMPORT.finditer(css):
            if _is_external(m.group(2)):
                add(f"{tag} @import {m.group(2).strip()}")
        if re.search(r"expression\s*\(", css, re.IGNORECASE):
            add(f"{tag} CSS expression()")

    # What the parser saw, to compare with a plain scan of the text: script elements (plus the
    # "<script" and "on...=" strings inside their code) and elements with an event handler.
    seen_scripts = seen_handlers = 0
    for el in soup.find_all(True):
        name = el.name.lower()
        seen_handlers += _scan_attributes(el, name, add)
        style_attr = el.attrs.get("style")
        if style_attr:
            scan_css(f"{name}[style]", style_attr if isinstance(style_attr, str) else " ".join(style_attr))
        if name == "style":
            scan_css("style", el.get_text())
        elif name == "script":
            code = el.get_text()
            seen_scripts += 1 + len(_RAW_SCRIPT.findall(code))
            seen_handlers += _raw_handler_tags(code)
            _scan_script(el, allowed, add)
    if len(_RAW_SCRIPT.findall(html_text)) > seen_scripts:
        add("<script> markup that the HTML parser did not read as a script element (malformed or nested markup)")
    if _raw_handler_tags(html_text) > seen_handlers:
        add("event-handler attribute (on...=) in markup that the HTML parser did not read as an element")
    return found


def _raw_handler_tags(text: str) -> int:
    """How many start tags in ``text`` carry an ``on...`` attribute, read as the HTML tokenizer reads
    attributes (quoted values skipped), wherever the tags are: also inside ``<style>``, comments and
    script code, which a browser may parse differently from Python's parser."""
    count = 0
    for m in _TAG_START.finditer(text):
        i, handler = m.end(), False
        while i < len(text) and text[i] != ">":
            a = _RAW_ATTR.match(text, i)
            if a is None or a.end() == i:
                break
            handler = handler or a.group(1).lower().startswith("on")
            i = a.end()
        count += handler
    return count


def _scan_attributes(el, name: str, add) -> int:  # el: bs4.Tag; add: Callable[[str], None]
    """Network references, event handlers and active URLs among one element's attributes.

    Returns 1 if the element has an event-handler attribute, else 0.
    """
    handlers = 0
    for attr, value in el.attrs.items():
        text = " ".join(value) if isinstance(value, list) else str(value)  # bs4 splits multi-valued ones
        low = attr.lower()
        if low.startswith("on"):
            add(f"{name} {low}= (event handler)")
            handlers = 1
        if low == "srcdoc":
            add(f"{name} srcdoc= (embedded document)")
        if scheme := _active_scheme(text):
            add(f"{name} {low}={scheme} URL")
        elif name in _DOCUMENT_TAGS and "data:image/svg+xml" in _CONTROL_AND_SPACE.sub("", text).lower():
            add(f"{name} {low}=data:image/svg+xml URL (an SVG document can run scripts)")
        if name == "meta" and low == "http-equiv" and text.strip().lower() == "refresh":
            add("meta http-equiv=refresh (loads another page when opened)")
        if low in _FETCH_ATTRS and not (name in _NAVIGATION_TAGS and low in ("href", "xlink:href")):
            for url in _srcset_urls(text) if low == "srcset" else [text]:
                if _is_external(url):
                    add(f"{name} {low}={url.strip()}")
    return handlers


def _scan_script(el, allowed: Mapping[str, str], add) -> None:  # el: bs4.Tag
    """An external script is flagged as a network reference; any other one must be allow-listed."""
    src = el.attrs.get("src")
    if src is not None and _is_external(str(src)):
        return  # already flagged by _scan_attributes
    text = el.get_text()
    if src is None:
        for m in _JS_IMPORT.finditer(text):
            if _is_external(m.group(2)):
                add(f"script import {m.group(2).strip()}")
    digest = script_digest(None if src is None else str(src), text)
    if digest not in allowed:
        shown = " ".join((str(src) if src is not None else text).split())[:60]
        add(f"script sha256={digest} not in the allow-list: {shown!r}")


def quarto_script_digests(quarto: str) -> dict[str, str]:
    """Digests of every JavaScript file shipped with the Quarto installation that renders the report.

    Parameters
    ----------
    quarto : str
        The Quarto executable (``<prefix>/bin/quarto``, symbolic links followed).

    Returns
    -------
    dict of str to str
        ``{sha256: "quarto <relative path>"}`` for each ``*.js`` / ``*.mjs`` under ``<prefix>/share``
        (where Quarto keeps the libraries that ``embed-resources`` inlines); empty if there is none.
        A script Quarto generates inline is not among them and is flagged by :func:`check_self_contained`.

    References
    ----------
    Quarto, HTML options: ``embed-resources``, https://quarto.org/docs/reference/formats/html.html#rendering.
    """
    import hashlib

    share = Path(quarto).resolve().parent.parent / "share"
    digests: dict[str, str] = {}
    if share.is_dir():
        for path in sorted(share.rglob("*")):
            if path.suffix in (".js", ".mjs") and path.is_file():
                digests[hashlib.sha256(path.read_bytes()).hexdigest()] = f"quarto {path.relative_to(share)}"
    return digests


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
    allowed = dict(ALLOWED_SCRIPTS)
    if quarto is not None:
        html_bytes, command, version = _render_quarto(quarto, notebook, title, timeout)
        used = "quarto"
        allowed |= quarto_script_digests(quarto)
    else:
        reason = "Quarto not found" if renderer == "auto" else "renderer=nbconvert requested"
        html_bytes, version = _render_nbconvert(notebook, title, reason)
        command, used = None, "nbconvert"

    offending = check_self_contained(html_bytes.decode("utf-8", errors="replace"), allowed)
    if offending:
        shown = "\n  ".join(offending[:20])
        more = f"\n  ... and {len(offending) - 20} more" if len(offending) > 20 else ""
        raise ReportError(
            f"{used} produced an HTML page that is not self-contained or carries active content; "
            f"nothing was written to {out_html}. It has:\n  {shown}{more}\n"
            "Fix: remove the output that produced it from the notebook (a network resource, a JavaScript "
            "output, markup in a results value), or, for a script the renderer itself needs, review it "
            "and add its sha256 to pbc_analysis.publish.report.ALLOWED_SCRIPTS."
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
        (work / QUARTO_HEADER).write_text(f'<style type="text/css">\n{SCREEN_CSS}{PRINT_CSS}</style>\n',
                                          encoding="utf-8")
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
# The print stylesheet and the table of contents' styles (:mod:`pbc_analysis.publish.report_style`) are inlined in
# the same block, so the one file prints to A4 with no external stylesheet.
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
""" + SCREEN_CSS + PRINT_CSS + """\
</style>
{%- endblock extra_css -%}
{% block body_footer %}
<footer class="pbc-render-footer"><p>{{ resources.pbc_footer | e }}</p></footer>
</main>
</body>
{% endblock body_footer %}
"""
if any(mark in SCREEN_CSS + PRINT_CSS for mark in ("{{", "{%", "{#")):  # pragma: no cover - a Jinja marker in CSS
    raise ImportError("report_style's CSS contains a Jinja marker ({{, {% or {#)")
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
    except Exception as exc:
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
    except Exception as exc:
        raise ReportError(f"nbconvert failed to render {notebook}: {exc}") from exc
    return add_table_of_contents(body).encode("utf-8"), version


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
