"""The report's print stylesheet (A4, every table column on the page) and its table of contents.

Board papers are printed: :data:`PRINT_CSS` is inlined in the report's ``<head>`` by the nbconvert exporter
(:mod:`pbc_analysis.publish.report`), so the one self-contained file prints to A4 with no external file. Wide
tables (the attribution ledger, the scorecard, the budget statement, the payment schedule) are laid out to the
page width with a smaller font and wrapping inside words where need be, so that no column is cut; every
top-level section (``h2``) starts a new page; figures and table rows are not split across pages; images are
scaled to the page; prompts, collapsers and heading anchors (screen-only) are hidden.

:func:`add_table_of_contents` writes the table of contents from the rendered page's own ``h2``/``h3``
headings (never typed in the notebook), after the title, with links to sanitised heading ids.

References
----------
W3C, CSS Paged Media Module Level 3 (``@page``, ``size: A4``), https://www.w3.org/TR/css-page-3/; W3C, CSS
Fragmentation Module Level 3 (``break-before``, ``break-inside``), https://www.w3.org/TR/css-break-3/; W3C, CSS
Text Module Level 3 (``overflow-wrap: anywhere``), https://www.w3.org/TR/css-text-3/; WHATWG HTML, the ``id``
attribute, https://html.spec.whatwg.org/multipage/dom.html#the-id-attribute.
"""

from __future__ import annotations

import html
import re
import unicodedata

__all__ = ["PRINT_CSS", "SCREEN_CSS", "add_table_of_contents", "heading_id"]

#: Styles of the table of contents on screen (and in print).
SCREEN_CSS = """\
nav.pbc-toc { margin: 1em 0 1.5em 0; padding: 0.6em 1.2em; border: 1px solid #d0d0d0; border-radius: 4px;
  background: #fafafa; font-family: var(--jp-content-font-family, sans-serif); max-width: 46em; }
nav.pbc-toc p.pbc-toc-title { margin: 0.2em 0 0.4em 0; font-weight: bold; font-size: 1.1em; }
nav.pbc-toc ol { margin: 0.2em 0; padding-left: 1.6em; }
nav.pbc-toc ol ol { list-style-type: lower-alpha; }
nav.pbc-toc li { margin: 0.15em 0; }
nav.pbc-toc a { text-decoration: none; }
nav.pbc-toc a:hover { text-decoration: underline; }
"""

#: The A4 print stylesheet (see the module docstring). Chromium, Firefox and WeasyPrint read all of it.
PRINT_CSS = """\
@page { size: A4; margin: 14mm 12mm 16mm 12mm; }
@page pbc-landscape { size: A4 landscape; margin: 12mm 12mm 14mm 12mm; }
@media print {
  html, body { background: #fff !important; }
  body, body.jp-Notebook { margin: 0 !important; padding: 0 !important; width: auto !important;
    font-size: 10pt; -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  main { margin: 0 !important; padding: 0 !important; }
  /* screen-only parts: prompts, collapsers, code input, heading anchors */
  .jp-InputPrompt, .jp-OutputPrompt, .jp-Collapser, .jp-CodeCell .jp-InputArea, a.anchor-link,
  .jp-OutputArea-prompt { display: none !important; }
  .jp-Cell, .jp-Notebook-cell, .jp-Cell-outputWrapper, .jp-Cell-inputWrapper, .jp-OutputArea,
  .jp-OutputArea-child, .jp-InputArea, .jp-RenderedHTMLCommon {
    display: block !important; width: auto !important; max-width: 100% !important; margin-left: 0 !important;
    margin-right: 0 !important; padding-left: 0 !important; padding-right: 0 !important; overflow: visible !important; }
  .jp-OutputArea-output { display: block !important; width: auto !important; max-width: 100% !important;
    overflow: visible !important; padding: 0 !important; }
  /* tables: the page's width, smaller type, wrapping inside words when a word is wider than its column */
  .jp-RenderedHTMLCommon table, table { width: 100% !important; max-width: 100% !important; table-layout: auto !important;
    font-size: 8pt !important; margin: 0 0 0.8em 0 !important; border-collapse: collapse; }
  table:has(tr > :nth-child(9)) { font-size: 7pt !important; }
  /* a table of 13 or more columns (the payment schedule) gets landscape pages of its own */
  table:has(tr > :nth-child(13)) { font-size: 7pt !important; }
  .jp-OutputArea-child:has(table tr > :nth-child(13)) { page: pbc-landscape; }
  table th, table td { white-space: normal !important; overflow-wrap: break-word; word-break: normal; hyphens: manual;
    padding: 0.25em 0.35em !important; max-width: none !important; }
  table caption { caption-side: top; text-align: left; font-weight: bold; font-size: 8.5pt; padding-bottom: 0.3em; }
  thead { display: table-header-group; }
  .jp-OutputArea-child { break-inside: auto !important; }  /* a long table may run on to the next page */
  tr, img, svg, figure, .jp-RenderedImage, .jp-RenderedSVG { break-inside: avoid; page-break-inside: avoid; }
  img, svg { max-width: 100% !important; height: auto !important; }
  pre, code { white-space: pre-wrap !important; overflow-wrap: anywhere; }
  pre { font-size: 7.5pt; overflow: visible !important; }
  /* sections */
  h2 { break-before: page; page-break-before: always; }
  h1, h2, h3, h4 { break-after: avoid; page-break-after: avoid; }
  p, li { orphans: 3; widows: 3; }
  nav.pbc-toc { background: none; border: none; padding: 0; }
  nav.pbc-toc a { color: inherit; }
  footer.pbc-render-footer { break-inside: avoid; }
}
"""

_HEADING = re.compile(r"<h([1-6])(\s[^>]*)?>(.*?)</h\1\s*>", re.IGNORECASE | re.DOTALL)
_ID_ATTR = re.compile(r"""\sid\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE)
_ANCHOR = re.compile(r"""<a\b[^>]*\bclass\s*=\s*["']anchor-link["'][^>]*>.*?</a\s*>""", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")
_CELL_START = '<div class="jp-Cell '
_FIRST_H2 = re.compile(r"<h2[\s>]", re.IGNORECASE)
_FIRST_H1_END = re.compile(r"</h1\s*>", re.IGNORECASE)
_TOC_LEVELS = (2, 3)


def heading_id(text: str, taken: set[str]) -> str:
    """A safe, unique ``id`` for a heading: ``sec-`` and the text's letters and digits, joined by hyphens.

    Parameters
    ----------
    text : str
        The heading's plain text.
    taken : set of str
        Ids already used in the page; the new id is added to it.

    Returns
    -------
    str
        ``sec-<slug>`` (ASCII lower-case letters, digits and ``-`` only, at most 60 characters of slug), with
        ``-2``, ``-3``, ... appended when the same id is already taken.

    References
    ----------
    WHATWG HTML, the ``id`` attribute, https://html.spec.whatwg.org/multipage/dom.html#the-id-attribute.
    """
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")[:60].strip("-") or "section"
    base, candidate, n = f"sec-{slug}", f"sec-{slug}", 1
    while candidate in taken:
        n += 1
        candidate = f"{base}-{n}"
    taken.add(candidate)
    return candidate


def _plain(inner_html: str) -> str:
    """A heading's text: anchor links and tags removed, entities decoded, white space collapsed."""
    return " ".join(html.unescape(_TAG.sub("", _ANCHOR.sub("", inner_html))).split())


def _toc_html(entries: list[tuple[int, str, str]]) -> str:
    """The ``<nav>`` of ``(level, id, text)`` entries: the h2 items, each with its h3 items as a nested list."""
    groups: list[tuple[str, list[str]]] = []
    for level, anchor, text in entries:
        link = f'<a href="#{html.escape(anchor, quote=True)}">{html.escape(text, quote=False)}</a>'
        if level == _TOC_LEVELS[0] or not groups:
            groups.append((link, []))
        else:
            groups[-1][1].append(link)
    lines = ['<nav class="pbc-toc" aria-label="Contents">', '<p class="pbc-toc-title">Contents</p>', "<ol>"]
    for link, subs in groups:
        nested = "<ol>" + "".join(f"<li>{s}</li>" for s in subs) + "</ol>" if subs else ""
        lines.append(f"<li>{link}{nested}</li>")
    lines += ["</ol>", "</nav>"]
    return "\n".join(lines) + "\n"


def add_table_of_contents(page: str) -> str:
    """Give every heading of a rendered report a safe id, and insert a table of contents after the title.

    Parameters
    ----------
    page : str
        The report as nbconvert's ``lab`` template writes it (headings ``<hN id="...">text<a class="anchor-link"
        href="#...">¶</a></hN>``).

    Returns
    -------
    str
        The page with each heading's ``id`` replaced by :func:`heading_id` of its text (its anchor link, and
        every other ``href="#old"`` when the old id was unique, updated), and a ``<nav class="pbc-toc">`` listing the ``h2`` headings, each with its
        ``h3`` headings, as links (texts escaped), placed before the notebook cell that holds the first ``h2``
        (after the title and the lines under it), or just before that ``h2`` when the title shares its cell.
        A page without an ``h2`` is returned unchanged.

    References
    ----------
    WHATWG HTML, the ``nav`` element, https://html.spec.whatwg.org/multipage/sections.html#the-nav-element.
    """
    if not any(m.group(1) == "2" for m in _HEADING.finditer(page)):
        return page
    taken: set[str] = set()
    renamed: dict[str, list[str]] = {}
    entries: list[tuple[int, str, str]] = []
    out: list[str] = []
    pos = 0
    for m in _HEADING.finditer(page):
        level, attrs, inner = int(m.group(1)), m.group(2) or "", m.group(3)
        text = _plain(inner)
        new_id = heading_id(text, taken)
        old = _ID_ATTR.search(attrs)
        if old is not None:
            old_id = old.group(1) if old.group(1) is not None else old.group(2)
            renamed.setdefault(old_id, []).append(new_id)
            inner = inner.replace(f'href="#{old_id}"', f'href="#{new_id}"')  # the heading's own anchor link
            attrs = attrs[:old.start()] + f' id="{new_id}"' + attrs[old.end():]
        else:
            attrs = f' id="{new_id}"{attrs}'
        out += [page[pos:m.start()], f"<h{level}{attrs}>{inner}</h{level}>"]
        pos = m.end()
        if level in _TOC_LEVELS and text:
            entries.append((level, new_id, text))
    out.append(page[pos:])
    page = "".join(out)
    for old_id, new_ids in renamed.items():  # links elsewhere to a heading (when its old id was unique)
        if len(new_ids) == 1:
            page = page.replace(f'href="#{old_id}"', f'href="#{new_ids[0]}"')
    first_h2 = _FIRST_H2.search(page)
    title = _FIRST_H1_END.search(page)
    at = first_h2.start() if first_h2 is not None else len(page)
    cell = page.rfind(_CELL_START, 0, at)
    if cell >= 0 and (title is None or cell >= title.end()):
        at = cell
    return page[:at] + _toc_html(entries) + page[at:]
