"""The report is readable by the people it is about: names beside codes, points of delivery in words, whole counts."""

from __future__ import annotations

import re

from pbc_analysis.core.labels import MEASURE_LABELS
from pbc_analysis.publish import report

_CODES = [c for c in MEASURE_LABELS if "_" in c]          # followup_op, first_op, non_elective, gp_referral(s)
_PRACTICE = re.compile(r"P\d{5}")
_WHOLE_AS_FLOAT = re.compile(r"-?\d[\d,]*\.0")


def _tables(sample_run):
    return report.extract_tables((sample_run / "report.html").read_text(encoding="utf-8"))


def test_no_point_of_delivery_code_in_any_table_or_sentence(sample_run):
    html = (sample_run / "report.html").read_text(encoding="utf-8")
    for t in _tables(sample_run):
        cells = t["headers"] + [c for r in t["rows"] for c in r]
        bad = [c for c in cells if any(code in c for code in _CODES)]
        assert not bad, f"{t['caption']!r}: {bad[:3]}"
    text = re.sub(r"<[^>]+>", " ", re.sub(r"(?s)<(script|style|img)[^>]*>.*?</\1>|<img[^>]*>", " ", html))
    assert not [code for code in _CODES if code in text]


def test_practices_are_named_beside_their_codes(sample_run):
    """A cell that is only a practice code appears only in a table that also has the practice's name in a column."""
    for t in _tables(sample_run):
        named = any("name" in h.lower() for h in t["headers"])
        bare = [c for r in t["rows"] for c in r if _PRACTICE.fullmatch(c.strip())]
        assert not bare or named, f"{t['caption']!r}: bare practice codes {bare[:3]}"


def test_counts_are_whole_numbers(sample_run):
    for t in _tables(sample_run):
        for j, h in enumerate(t["headers"]):
            if "count" in h.lower() or "observed" in h.lower():
                bad = [r[j] for r in t["rows"] if j < len(r) and _WHOLE_AS_FLOAT.fullmatch(r[j])]
                assert not bad, f"{t['caption']!r}, {h!r}: {bad[:3]}"
    card = next(t for t in _tables(sample_run) if t["caption"].startswith("Practice scorecard"))
    j = card["headers"].index("Percentile (referrals)")
    assert not [r[j] for r in card["rows"] if r[j].endswith(".0")]
