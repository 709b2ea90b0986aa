"""Escaped HTML pieces of the self-contained pages (``national.html``, the practice pages): cells, tables, numbers.

Every text that reaches a page goes through :func:`html.escape` here (cells, sort keys, headers, captions); a
link is a relative path already checked by the caller, percent-quoted. No cell is ever raw markup.

References
----------
WHATWG HTML, "Serializing HTML fragments" (escaping); OWASP Cross Site Scripting Prevention Cheat Sheet.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import pandas as pd

__all__ = ["cell", "fmt", "html_table", "text"]


def text(v: Any) -> str:
    """A cell's value as text: "" when missing (None, NaN, NA).

    Parameters
    ----------
    v : object

    Returns
    -------
    str
    """
    return "" if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)) else str(v)


def fmt(v: Any, spec: str = ",.0f") -> str:
    """A number formatted with ``spec``, or "" when missing or not finite.

    Parameters
    ----------
    v : object
        A number (or None / NA / NaN).
    spec : str
        A format specification (default: whole number with thousands separators).

    Returns
    -------
    str
    """
    if v is None or v is pd.NA or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    return format(v, spec)


def cell(value: Any, sort: Any = None, cls: str = "", link: Any = "") -> str:
    """One escaped ``<td>`` (with its sort key; a relative link when given, already checked and quoted).

    Parameters
    ----------
    value : object
        The cell's text (escaped).
    sort : object, optional
        The sort key (``data-v``; default the text).
    cls : str
        A class name (a literal of the caller's, e.g. ``"n"`` for a number).
    link : object
        A relative link (percent-quoted, escaped).

    Returns
    -------
    str
    """
    body_text, link = text(value), text(link)
    key = html.escape(body_text if sort is None else text(sort), quote=True)
    body = html.escape(body_text)
    if link:
        body = f'<a href="{html.escape(quote(link, safe="/._-"), quote=True)}">{body}</a>'
    klass = f' class="{cls}"' if cls else ""
    return f'<td data-v="{key}"{klass}>{body}</td>'


def html_table(headers: Sequence[str], rows: list[list[str]], caption: str, sortable: bool = False) -> str:
    """A table of ready ``<td>`` cells (:func:`cell`) with escaped headers and caption.

    Parameters
    ----------
    headers : sequence of str
    rows : list of list of str
        Each row's ``<td>`` cells.
    caption : str
    sortable : bool
        Mark the table ``class="sortable"`` (a page's own script may sort it).

    Returns
    -------
    str
        ``<table>`` with ``<caption>``; a single "none" row when ``rows`` is empty.
    """
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(f"<tr>{''.join(r)}</tr>" for r in rows) or f'<tr><td colspan="{len(headers)}">none</td></tr>'
    cls = ' class="sortable"' if sortable else ""
    return f"<table{cls}><caption>{html.escape(caption)}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
