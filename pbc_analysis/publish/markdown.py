"""Untrusted text as Markdown that renders exactly as written: never markup, a link, an image, math or code.

Every value the report prints in Markdown comes from a run's files (results.json, result tables, the
provenance, a manifest), which anyone may have edited; it goes through :func:`markdown_text` (prose),
:func:`markdown_code` (a code span) or :func:`markdown_safe` (a whole results.json section handed to an
analysis module's ``describe``). The module imports nothing from the package, so any layer may use it;
:mod:`pbc_analysis.publish.report` (the page title) and :mod:`pbc_analysis.publish.report_content` (the report's
Markdown) do.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["markdown_code", "markdown_safe", "markdown_text"]

# Characters with a meaning in Markdown or HTML, written as character references: both Pandoc and
# mistune (nbconvert) decode these as literal text, so a value can never become markup, a link, an
# image, math or a code span.
_MARKDOWN_REFS = {c: f"&#{ord(c)};" for c in "\\`*_{}[]<>#!|~$"} | {"&": "&amp;"}
_MARKDOWN_SAFE_REFS = {c: _MARKDOWN_REFS[c] for c in "&<>[]`\\$"}
_WHITESPACE = re.compile(r"\s+")


def markdown_text(value: object, *, keep_emphasis: bool = False) -> str:
    """``value`` as Markdown text that renders exactly as written, never as markup.

    Parameters
    ----------
    value : object
        Any value (``str()`` is taken); possibly hostile text from results.json or a manifest.
    keep_emphasis : bool
        Escape only what could become HTML, a link, an image, math or a code span
        (``& < > [ ] ` \\ $``), leaving ``* _ # | ~ ! { }``: for identifiers that code compares or
        splits on ``_`` after escaping. Emphasis is the worst such a value can then do.

    Returns
    -------
    str
        One line (every run of white space, newlines included, becomes one space, so a value cannot
        start a new block), with the characters above as HTML character references.

    References
    ----------
    CommonMark 0.31, sections 2.5 (entity and numeric character references) and 6.6 (raw HTML),
    https://spec.commonmark.org/0.31.2/.
    """
    refs = _MARKDOWN_SAFE_REFS if keep_emphasis else _MARKDOWN_REFS
    text = _WHITESPACE.sub(" ", str(value)).strip()
    return "".join(refs.get(c, c) for c in text)


def markdown_code(value: object) -> str:
    """``value`` as a Markdown code span (rendered literally and HTML-escaped by the renderer).

    Parameters
    ----------
    value : object
        Any value (``str()`` is taken).

    Returns
    -------
    str
        The text on one line, fenced by one more backtick than its longest run of backticks, padded
        with a space when it starts or ends with a backtick.

    References
    ----------
    CommonMark 0.31, section 6.1 (code spans), https://spec.commonmark.org/0.31.2/#code-spans.
    """
    text = _WHITESPACE.sub(" ", str(value)).strip() or " "
    fence = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def markdown_safe(obj: Any) -> Any:
    """A copy of a results.json section whose strings (keys and values) cannot become markup.

    Parameters
    ----------
    obj : object
        A JSON-like value (dict, list, tuple, str, number, bool or None).

    Returns
    -------
    object
        The same structure (tuples as lists) with every string passed through
        ``markdown_text(..., keep_emphasis=True)`` (``& < > [ ] ` \\ $`` as character references, white
        space collapsed), for the ``describe`` functions of the analysis modules, which compare and
        format these strings into Markdown. Numbers, booleans and None are unchanged.
    """
    if isinstance(obj, str):
        return markdown_text(obj, keep_emphasis=True)
    if isinstance(obj, dict):
        return {markdown_safe(k) if isinstance(k, str) else k: markdown_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [markdown_safe(v) for v in obj]
    return obj


def html_table(df: Any, title: str, note: str | None = None) -> Any:
    """A table as escaped HTML with a caption (and an optional note): every cell and the caption escaped.

    Parameters
    ----------
    df : pandas.DataFrame
        The table (its cells may be untrusted text).
    title : str
        The caption.
    note : str, optional
        A note printed under the table.

    Returns
    -------
    IPython.display.HTML
    """
    import html

    from IPython.display import HTML

    body = df.to_html(index=False, border=0, classes="pbc-table", na_rep="", escape=True)
    body = body.replace('<table class="dataframe pbc-table">', f'<table class="pbc-table"><caption>{html.escape(title)}</caption>', 1)
    if note:
        body += f'<p class="pbc-note"><small>{html.escape(note)}</small></p>'
    return HTML(body)
