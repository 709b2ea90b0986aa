"""The practice pages' charts as inline SVG: a Fingertips-style spine chart and a Making Data Count XmR chart.

Inline SVG needs no image file, no script and no network; it prints sharply and scales with the page. Every
text in a chart is escaped; every number is formatted here (no locale, no time stamp), so the same data give the
same bytes. Colours are the project's colour-blind-safe palette (seaborn "colorblind", as
:mod:`pbc_analysis.publish.figures.theme`).

**Words, not verdicts.** For referrals, fewer is not necessarily better (a practice may under-refer), so neither
chart says "better", "worse" or "improvement": a practice's ratio is *higher*, *similar* or *lower*, and an SPC
special cause is *higher* or *lower* than the practice's own limits.

References
----------
Public Health England, Fingertips: the spine chart (a bar from the lowest to the highest area, the 25th to 75th
percentile darker, the benchmark as a line, the area as a coloured dot),
https://fingertips.phe.org.uk/ (Fingertips user guide, "Area profiles").
NHS England (2019), Making Data Count: XmR charts, their limits and special-cause rules.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["FLAG_COLOURS", "SPC_COLOURS", "SpineRow", "spc_svg", "spine_svg"]

#: the dot of a spine chart, by comparison with the benchmark (funnel flag)
FLAG_COLOURS: dict[str, str] = {"higher": "#d55e00", "similar": "#f0e442", "lower": "#0072b2", "no data": "#ffffff"}
#: the points of an SPC chart, by Making Data Count point type (no improvement direction: higher / lower)
SPC_COLOURS: dict[str, str] = {"common_cause": "#949494", "special_cause_neutral_high": "#d55e00",
                               "special_cause_neutral_low": "#0072b2"}
SPC_WORDS: dict[str, str] = {"common_cause": "common cause", "special_cause_neutral_high": "special cause, higher",
                             "special_cause_neutral_low": "special cause, lower"}
_FONT = 'font-family="system-ui,sans-serif" font-size="12"'


@dataclass(frozen=True)
class SpineRow:
    """One indicator of a spine chart: the PCT's spread, the benchmark and the practice."""

    label: str
    value: float            # the practice's ratio
    low: float              # the PCT's lowest practice
    q25: float
    q75: float
    high: float             # the PCT's highest practice
    flag: str               # "higher" | "similar" | "lower" | "no data"
    benchmark: float = 1.0  # the PCT average (target "pct") or the reference rates' (target "reference")


def _n(v: float) -> str:
    """A coordinate: 1 decimal, no ``-0``."""
    s = f"{v:.1f}"
    return "0.0" if s == "-0.0" else s


def _finite(values: Sequence[float]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def spine_svg(rows: Sequence[SpineRow], title: str, width: int = 760) -> str:
    """A spine chart: one row per indicator, each on its own scale centred on the benchmark.

    Parameters
    ----------
    rows : sequence of SpineRow
        The indicators (labels are escaped).
    title : str
        The chart's accessible title (escaped).
    width : int
        Width in pixels (the SVG scales to the page).

    Returns
    -------
    str
        An ``<svg>`` element; each practice dot has ``class="dot"``, ``data-label`` (its row) and ``data-flag``
        (its comparison).

    References
    ----------
    Public Health England, Fingertips spine charts (see the module docstring).
    """
    label_w, value_w, pad, row_h = 250, 60, 12, 30
    x0, x1 = label_w + value_w, width - pad
    height = 36 + row_h * len(rows)
    mid = (x0 + x1) / 2
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {width} {height}" width="100%" '
             f'class="spine" {_FONT}><title>{html.escape(title)}</title>',
             f'<text x="{x0}" y="14" fill="#555">PCT lowest</text>',
             f'<text x="{_n(mid)}" y="14" text-anchor="middle" fill="#555">benchmark</text>',
             f'<text x="{x1}" y="14" text-anchor="end" fill="#555">PCT highest</text>']
    for i, r in enumerate(rows):
        y = 28 + i * row_h
        cy = y + row_h / 2
        spread = _finite([abs(v - r.benchmark) for v in (r.low, r.high, r.value)])
        half = (max(spread) if spread else 0.0) * 1.08 or 1.0

        def x(v: float, half: float = half, bench: float = r.benchmark) -> float:
            return mid + (v - bench) / half * (x1 - x0) / 2

        parts.append(f'<text x="4" y="{_n(cy + 4)}">{html.escape(r.label)}</text>')
        shown = f"{r.value:.2f}" if math.isfinite(r.value) else "n/a"
        parts.append(f'<text x="{label_w + value_w - 8}" y="{_n(cy + 4)}" text-anchor="end">{shown}</text>')
        if all(math.isfinite(v) for v in (r.low, r.high)):
            parts.append(f'<rect x="{_n(x(r.low))}" y="{_n(y + 7)}" width="{_n(max(x(r.high) - x(r.low), 1))}" '
                         f'height="{row_h - 14}" fill="#d9d9d9"/>')
        if all(math.isfinite(v) for v in (r.q25, r.q75)):
            parts.append(f'<rect x="{_n(x(r.q25))}" y="{_n(y + 7)}" width="{_n(max(x(r.q75) - x(r.q25), 1))}" '
                         f'height="{row_h - 14}" fill="#8c8c8c"/>')
        parts.append(f'<line x1="{_n(mid)}" x2="{_n(mid)}" y1="{_n(y + 3)}" y2="{_n(y + row_h - 3)}" stroke="#000" '
                     'stroke-width="2"/>')
        if math.isfinite(r.value):
            colour = FLAG_COLOURS.get(r.flag, FLAG_COLOURS["no data"])
            parts.append(f'<circle class="dot" data-label="{html.escape(r.label, quote=True)}" '
                         f'data-flag="{html.escape(r.flag, quote=True)}" cx="{_n(x(r.value))}" '
                         f'cy="{_n(cy)}" r="7" fill="{colour}" stroke="#000" stroke-width="1"/>')
    parts.append("</svg>")
    return "".join(parts)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering ``lo`` .. ``hi``."""
    span = hi - lo if hi > lo else 1.0
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step) + 1)]


def spc_svg(months: Sequence[str], values: Sequence[float], mean: Sequence[float], lpl: Sequence[float],
            upl: Sequence[float], point_types: Sequence[str], title: str, ylabel: str, width: int = 760) -> str:
    """An XmR chart of one practice: points coloured by special cause (higher / lower), mean and process limits.

    Parameters
    ----------
    months : sequence of str
        ``YYYY-MM``, ascending.
    values, mean, lpl, upl : sequence of float
        The series, its mean and lower and upper process limits per point.
    point_types : sequence of str
        Making Data Count point types (:data:`SPC_COLOURS`).
    title, ylabel : str
        Accessible title and axis label (escaped).
    width : int
        Width in pixels.

    Returns
    -------
    str
        An ``<svg>`` element; each point has ``class="pt"`` and ``data-type``.

    References
    ----------
    NHS England (2019), Making Data Count.
    """
    height, left, right, top, bottom = 300, 60, 12, 12, 48
    v, m, lo, hi = (np.asarray(a, float) for a in (values, mean, lpl, upl))
    allv = np.concatenate([v, m, lo, hi])
    allv = allv[np.isfinite(allv)]
    ymin, ymax = (float(allv.min()), float(allv.max())) if allv.size else (0.0, 1.0)
    padv = 0.05 * (ymax - ymin or 1.0)
    ymin, ymax = ymin - padv, ymax + padv
    n = len(months)

    def px(i: int) -> float:
        return left + (width - left - right) * (i / max(n - 1, 1))

    def py(val: float) -> float:
        return top + (height - top - bottom) * (1 - (val - ymin) / (ymax - ymin))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {width} {height}" width="100%" '
             f'class="spc" {_FONT}><title>{html.escape(title)}</title>']
    for t in _ticks(ymin, ymax):
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{_n(py(t))}" y2="{_n(py(t))}" stroke="#eee"/>'
                     f'<text x="{left - 6}" y="{_n(py(t) + 4)}" text-anchor="end">{t:g}</text>')
    for i, mo in enumerate(months):
        if i % 12 == 0 or i == n - 1 and n < 12:
            parts.append(f'<text x="{_n(px(i))}" y="{height - bottom + 16}" text-anchor="middle">{html.escape(mo)}</text>')
    parts.append(f'<text x="14" y="{_n((top + height - bottom) / 2)}" text-anchor="middle" '
                 f'transform="rotate(-90 14 {_n((top + height - bottom) / 2)})">{html.escape(ylabel)}</text>')
    for series, style in ((m, 'stroke="#222" stroke-width="1.5"'), (lo, 'stroke="#555" stroke-dasharray="5 3"'),
                          (hi, 'stroke="#555" stroke-dasharray="5 3"'), (v, 'stroke="#949494" stroke-width="1"')):
        pts = " ".join(f"{_n(px(i))},{_n(py(y))}" for i, y in enumerate(series) if math.isfinite(y))
        if pts:
            parts.append(f'<polyline fill="none" {style} points="{pts}"/>')
    for i, (y, pt) in enumerate(zip(v, point_types)):
        if math.isfinite(y):
            parts.append(f'<circle class="pt" data-type="{html.escape(str(pt), quote=True)}" cx="{_n(px(i))}" '
                         f'cy="{_n(py(y))}" r="3.5" fill="{SPC_COLOURS.get(str(pt), "#949494")}"/>')
    lx = left
    for key in ("common_cause", "special_cause_neutral_high", "special_cause_neutral_low"):
        parts.append(f'<circle cx="{lx + 6}" cy="{height - 12}" r="4" fill="{SPC_COLOURS[key]}"/>'
                     f'<text x="{lx + 14}" y="{height - 8}">{SPC_WORDS[key]}</text>')
        lx += 170
    parts.append(f'<line x1="{lx}" x2="{lx + 20}" y1="{height - 12}" y2="{height - 12}" stroke="#222"/>'
                 f'<text x="{lx + 24}" y="{height - 8}">mean</text>'
                 f'<line x1="{lx + 70}" x2="{lx + 90}" y1="{height - 12}" y2="{height - 12}" stroke="#555" '
                 f'stroke-dasharray="5 3"/><text x="{lx + 94}" y="{height - 8}">process limits</text>')
    parts.append("</svg>")
    return "".join(parts)
