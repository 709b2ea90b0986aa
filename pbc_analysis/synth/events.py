"""``pbc synth --events``: the synthetic PCT as event-level extracts, with the dirt the ingest rules handle.

:func:`write_events` writes, into ``<out>/extracts/`` beside the aggregated tables (which are written as
always, so a round trip can compare with them), one row per event of the tables:

==========================  ===================================================================================
file                        rows and columns (the standard names of the shipped column maps)
==========================  ===================================================================================
``outpatients.parquet``     one per first / follow-up attendance of ``activity`` (SUS/HES OPA): ``ATTENDKEY,
                            TOKEN_PERSON_ID, GPPRAC, PROCODE3, TRETSPEF, FIRSTATT`` (1 or 3 / 2 or 4),
                            ``ATTENDED`` (5 or 6), ``REFSOURC`` (``03`` for 85%), ``APPTDATE`` (a day of the
                            month), ``REQDATE`` (before it), ``HRG, COST``
``admitted.parquet``        one per episode of the elective and non-elective spells (APC): ``EPIKEY, SPELL_ID,
                            EPIORDER`` (20% of spells have 2 episodes, 5% of them 3), ``TOKEN_PERSON_ID, GPPRAC,
                            PROCODE3, TRETSPEF, ADMIMETH`` (11-13 / 21-2D), ``ADMIDATE`` (not before the window),
                            ``DISDATE`` (a day of the month), ``SPELHRG, COST`` (on the first episode; 0 after)
``ae.parquet``              one per A&E attendance (ECDS): ``EC_IDENT, TOKEN_PERSON_ID, GP_PRACTICE_CODE,
                            PROVIDER_CODE, ARRIVAL_DATE, EC_DEPARTMENT_TYPE`` (``01``), ``HRG, COST``
``referrals.parquet``       one per GP referral of ``referrals`` (e-RS style): ``UBRN, TOKEN_PERSON_ID,
                            REFERRER_ORG, PROVIDER_ORG, TFC, REFERRAL_DATE``
reference and local files   :mod:`pbc_analysis.synth.events_reference` (registrations, practice reference, ...)
``events_truth.json``       per source: rows (and cost) read, aggregated, excluded by reason, merged
==========================  ===================================================================================

An event's cost is its cell's cost divided by the cell's count, so the sums give the table back (to rounding,
far inside 1e-9 relative). Codes are dictionary-encoded strings, identifiers int64, dates ``date32``.

The dirt, each a modest seeded number of extra rows per row group (``max(1, round(rate x clean rows))``,
:data:`DIRT`), copies of clean rows (new identifiers but for the duplicates) changed in one way, so that its
exclusion reason (the first of the rules' order that applies) is known: exact duplicates
(``duplicate_event_id``), dates shifted 1 to 92 days before the window or after it (``outside_window``; an
admitted spell by its discharge date, the admission date moving with it), ``ATTENDED`` 2/3/4/7 with cost 0
(``not_attended``), ``FIRSTATT`` 5 (``first_attendance_excluded``), ``DISDATE`` missing (``unfinished_spell``),
``ADMIMETH`` 31/32/81/82/83/98/99 (``admission_method_excluded``), and the practice column set to a missing
code, a pseudo code (``V81999``, ``V81998``), a code in no reference, or a practice of another commissioner, a
closing practice or a practice that is not a GP practice. The later episodes of the admitted spells are
``later_episode`` rows. Before the merge date a share of the merged practice's events carry its old code
(``merged``: aggregated under the practice). The dirt rows follow their chunk's clean rows, so a duplicate's
original is always the earlier row.

Speed: the events of a chunk of cells (about :data:`CHUNK_EVENTS` events, one Parquet row group) are made by
``numpy.repeat`` of the cell indices by their counts, with no Python loop over events or cells; the same
parameters give the same bytes (one seeded generator per source, consumed chunk by chunk).

References
----------
NHS Digital, HES data dictionaries (outpatients, admitted patient care); NHS England, ECDS technical output
specification; NHS e-Referral Service (UBRN); Apache Parquet (row groups, dictionary encoding).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from pbc_analysis.synth.contract import PODS
from pbc_analysis.synth.events_reference import (
    OLD_SHARE,
    PSEUDO_PRACTICES,
    Codes,
    Frame,
    frame,
    hrg_code,
    write_reference,
)

__all__ = ["CHUNK_EVENTS", "DIRT", "EVENT_SOURCES", "PRACTICE_REASONS", "write_events"]

CHUNK_EVENTS = 1_000_000
NULL_DAY = np.iinfo(np.int32).min
PRACTICE_REASONS = ("practice_code_missing", "pseudo_practice", "unknown_practice", "other_commissioner",
                    "not_gp_practice", "not_open_throughout_window")
_PRACTICE_RATES = dict(zip(PRACTICE_REASONS, (0.001, 0.002, 0.001, 0.003, 0.001, 0.001)))
#: extra rows per source and reason, as a share of a chunk's clean (counted) rows
DIRT: dict[str, dict[str, float]] = {
    "outpatients": {"duplicate_event_id": 0.002, "outside_window": 0.004, "not_attended": 0.06,
                    "first_attendance_excluded": 0.004} | _PRACTICE_RATES,
    "admitted": {"duplicate_event_id": 0.002, "unfinished_spell": 0.004, "outside_window": 0.004,
                 "admission_method_excluded": 0.01} | _PRACTICE_RATES,
    "ae": {"duplicate_event_id": 0.002, "outside_window": 0.004} | _PRACTICE_RATES,
    "referrals": {"duplicate_event_id": 0.002, "outside_window": 0.004} | _PRACTICE_RATES,
}
_FIRSTATT = ("1", "2", "3", "4", "5")
_ATTENDED = ("2", "3", "4", "5", "6", "7")
_REFSOURC = ("01", "02", "03", "04", "05", "10", "11", "92")
_ADMIMETH_EL = ("11", "12", "13")
_ADMIMETH_NE = ("21", "22", "23", "24", "25", "28", "2A", "2B", "2C", "2D")
_ADMIMETH_EX = ("31", "32", "81", "82", "83", "98", "99")
_ADMIMETH = _ADMIMETH_EL + _ADMIMETH_NE + _ADMIMETH_EX
_POD = {p: i for i, p in enumerate(PODS)}
Batch = dict[str, np.ndarray]


@dataclass(frozen=True)
class Cells:
    """The non-zero cells of a table for some points of delivery: codes as indices, count and cost per event."""

    prac: np.ndarray
    prov: np.ndarray
    spec: np.ndarray
    pod: np.ndarray
    month: np.ndarray
    count: np.ndarray
    unit_cost: np.ndarray

    def chunks(self, target: int) -> list[tuple[int, int]]:
        """Ranges of cells holding about ``target`` events each."""
        cum = np.cumsum(self.count)
        if cum.size == 0:
            return []
        cuts = np.unique(np.searchsorted(cum, np.arange(target, int(cum[-1]), target), side="right"))
        edges = [0, *[int(c) for c in cuts if 0 < c < cum.size], int(cum.size)]
        return list(zip(edges[:-1], edges[1:]))


class _Ids:
    """Running identifiers, one counter per identifier column."""

    def __init__(self, base: dict[str, int]) -> None:
        self.next = dict(base)

    def take(self, name: str, n: int) -> np.ndarray:
        start = self.next[name]
        self.next[name] = start + n
        return np.arange(start, start + n, dtype=np.int64)


@dataclass(frozen=True)
class EventSource:
    """One event extract: its file, columns ``(name, kind, codes)``, identifier, practice and date columns."""

    name: str
    file: str
    columns: tuple[tuple[str, str, tuple[str, ...]], ...]
    ids: tuple[str, ...]
    practice: str
    dates: tuple[str, ...]        # the first decides the window; the others move with it
    cost: str | None
    build: Callable[[Cells, int, int, Frame, np.random.Generator, _Ids], tuple[Batch, np.ndarray]]


def _codes(series: pd.Series, dictionary: list[str]) -> np.ndarray:
    """Indices of ``series``'s values in ``dictionary`` (-1 for a value not in it)."""
    cat = series if isinstance(series.dtype, pd.CategoricalDtype) else series.astype("category")
    lookup = pd.Index(dictionary).get_indexer(cat.cat.categories.astype(str))
    return lookup[cat.cat.codes.to_numpy()]


def _cells(df: pd.DataFrame, count: str, pods: tuple[str, ...] | None, fr: Frame) -> Cells:
    n = df[count].to_numpy(dtype=np.int64)
    pod = _codes(df["pod"], list(PODS)) if pods is not None else np.full(n.size, -1)
    keep = n > 0
    if pods is not None:
        keep &= np.isin(pod, [_POD[p] for p in pods])
    idx = np.flatnonzero(keep)
    cost = df["cost"].to_numpy(dtype=float)[idx] / n[idx] if "cost" in df.columns else np.zeros(idx.size)
    return Cells(prac=_codes(df["practice_code"], fr.practices)[idx], prov=_codes(df["provider_code"], fr.providers)[idx],
                 spec=_codes(df["specialty_code"], fr.specialties)[idx], pod=pod[idx],
                 month=_codes(df["month"], fr.months)[idx], count=n[idx], unit_cost=cost)


def _days(cells: Cells, idx: np.ndarray, fr: Frame, rng: np.random.Generator) -> np.ndarray:
    """A seeded day of each event's month."""
    m = cells.month[idx]
    return fr.first_day[m] + np.floor(rng.random(idx.size) * fr.month_len[m]).astype(np.int64)


def _common(cells: Cells, lo: int, hi: int, fr: Frame, rng: np.random.Generator) -> tuple[np.ndarray, Batch, np.ndarray]:
    """Cell index, practice/provider/specialty/patient columns and the day of every event of cells lo..hi; the
    merged practice's events before the merge date carry the old code with probability OLD_SHARE."""
    idx = np.repeat(np.arange(lo, hi), cells.count[lo:hi])
    day = _days(cells, idx, fr, rng)
    prac = cells.prac[idx].copy()
    old = (prac == fr.merged) & (day < fr.merge_day) & (rng.random(idx.size) < OLD_SHARE)
    pid = (prac.astype(np.int64) + fr.codes.patient_offset) * 100_000 + rng.integers(0, 30_000, idx.size)
    prac[old] = fr.old_index
    return idx, {"practice": prac, "provider": cells.prov[idx], "specialty": cells.spec[idx],
                 "patient": (pid * 2_654_435_761 + 97_531) % 10**11}, day


def _pick(values: tuple[str, ...], choices: tuple[str, ...], p: list[float] | None, n: int,
          rng: np.random.Generator) -> np.ndarray:
    at = np.array([values.index(c) for c in choices])
    return at[rng.choice(len(choices), size=n, p=p)]


def _hrg(cells: Cells, idx: np.ndarray) -> np.ndarray:
    return cells.spec[idx] * len(PODS) + cells.pod[idx]


def _outpatients(cells: Cells, lo: int, hi: int, fr: Frame, rng: np.random.Generator,
                 ids: _Ids) -> tuple[Batch, np.ndarray]:
    idx, c, day = _common(cells, lo, hi, fr, rng)
    n = idx.size
    first = cells.pod[idx] == _POD["first_op"]
    later = rng.random(n) < 0.1
    firstatt = np.where(first, np.where(later, 2, 0), np.where(later, 3, 1))      # indices of 1, 3 / 2, 4
    gp = rng.random(n) < 0.85
    other = _pick(_REFSOURC, ("01", "02", "04", "05", "10", "11", "92"), None, n, rng)
    wait = np.where(first, 7 + rng.integers(0, 120, n), 30 + rng.integers(0, 300, n))
    batch = {"ATTENDKEY": ids.take("ATTENDKEY", n), "TOKEN_PERSON_ID": c["patient"], "GPPRAC": c["practice"],
             "PROCODE3": c["provider"], "TRETSPEF": c["specialty"], "FIRSTATT": firstatt,
             "ATTENDED": np.where(rng.random(n) < 0.97, 3, 4), "REFSOURC": np.where(gp, 2, other),
             "APPTDATE": day, "REQDATE": day - wait, "HRG": _hrg(cells, idx), "COST": cells.unit_cost[idx]}
    return batch, np.ones(n, bool)


def _admitted(cells: Cells, lo: int, hi: int, fr: Frame, rng: np.random.Generator,
              ids: _Ids) -> tuple[Batch, np.ndarray]:
    idx, c, dis = _common(cells, lo, hi, fr, rng)
    ns = idx.size
    el = cells.pod[idx] == _POD["elective"]
    los = np.where(el, rng.integers(0, 4, ns), rng.geometric(0.25, ns) - 1)
    meth = np.where(el, _pick(_ADMIMETH, _ADMIMETH_EL, [0.8, 0.15, 0.05], ns, rng),
                    _pick(_ADMIMETH, _ADMIMETH_NE, [0.6, 0.1, 0.05, 0.05, 0.05, 0.03, 0.03, 0.03, 0.03, 0.03], ns, rng))
    u = rng.random(ns)
    n_ep = 1 + (u < 0.2) + (u < 0.05)
    r = np.repeat(np.arange(ns), n_ep)
    order = np.arange(r.size) - np.repeat(np.cumsum(n_ep) - n_ep, n_ep) + 1
    first = order == 1
    spell = ids.take("SPELL_ID", ns)
    batch = {"EPIKEY": ids.take("EPIKEY", r.size), "SPELL_ID": spell[r], "EPIORDER": order,
             "TOKEN_PERSON_ID": c["patient"][r], "GPPRAC": c["practice"][r], "PROCODE3": c["provider"][r],
             "TRETSPEF": c["specialty"][r], "ADMIMETH": meth[r], "ADMIDATE": np.maximum(dis - los, fr.start_day)[r],
             "DISDATE": dis[r], "SPELHRG": _hrg(cells, idx)[r], "COST": np.where(first, cells.unit_cost[idx][r], 0.0)}
    return batch, first


def _ae(cells: Cells, lo: int, hi: int, fr: Frame, rng: np.random.Generator, ids: _Ids) -> tuple[Batch, np.ndarray]:
    idx, c, day = _common(cells, lo, hi, fr, rng)
    n = idx.size
    batch = {"EC_IDENT": ids.take("EC_IDENT", n), "TOKEN_PERSON_ID": c["patient"], "GP_PRACTICE_CODE": c["practice"],
             "PROVIDER_CODE": c["provider"], "ARRIVAL_DATE": day, "EC_DEPARTMENT_TYPE": np.zeros(n, np.int64),
             "HRG": _hrg(cells, idx), "COST": cells.unit_cost[idx]}
    return batch, np.ones(n, bool)


def _referrals(cells: Cells, lo: int, hi: int, fr: Frame, rng: np.random.Generator,
               ids: _Ids) -> tuple[Batch, np.ndarray]:
    idx, c, day = _common(cells, lo, hi, fr, rng)
    n = idx.size
    batch = {"UBRN": ids.take("UBRN", n), "TOKEN_PERSON_ID": c["patient"], "REFERRER_ORG": c["practice"],
             "PROVIDER_ORG": c["provider"], "TFC": c["specialty"], "REFERRAL_DATE": day}
    return batch, np.ones(n, bool)


_PATIENT = ("TOKEN_PERSON_ID", "patient", ())
EVENT_SOURCES: dict[str, EventSource] = {
    "outpatients": EventSource("outpatients", "outpatients.parquet", (
        ("ATTENDKEY", "id", ()), _PATIENT, ("GPPRAC", "practice", ()), ("PROCODE3", "provider", ()),
        ("TRETSPEF", "specialty", ()), ("FIRSTATT", "code", _FIRSTATT), ("ATTENDED", "code", _ATTENDED),
        ("REFSOURC", "code", _REFSOURC), ("APPTDATE", "date", ()), ("REQDATE", "date", ()), ("HRG", "hrg", ()),
        ("COST", "money", ())), ("ATTENDKEY",), "GPPRAC", ("APPTDATE", "REQDATE"), "COST", _outpatients),
    "admitted": EventSource("admitted", "admitted.parquet", (
        ("EPIKEY", "id", ()), ("SPELL_ID", "id", ()), ("EPIORDER", "int", ()), _PATIENT, ("GPPRAC", "practice", ()),
        ("PROCODE3", "provider", ()), ("TRETSPEF", "specialty", ()), ("ADMIMETH", "code", _ADMIMETH),
        ("ADMIDATE", "date", ()), ("DISDATE", "date", ()), ("SPELHRG", "hrg", ()), ("COST", "money", ())),
        ("EPIKEY", "SPELL_ID"), "GPPRAC", ("DISDATE", "ADMIDATE"), "COST", _admitted),
    "ae": EventSource("ae", "ae.parquet", (
        ("EC_IDENT", "id", ()), _PATIENT, ("GP_PRACTICE_CODE", "practice", ()), ("PROVIDER_CODE", "provider", ()),
        ("ARRIVAL_DATE", "date", ()), ("EC_DEPARTMENT_TYPE", "code", ("01",)), ("HRG", "hrg", ()),
        ("COST", "money", ())), ("EC_IDENT",), "GP_PRACTICE_CODE", ("ARRIVAL_DATE",), "COST", _ae),
    "referrals": EventSource("referrals", "referrals.parquet", (
        ("UBRN", "id", ()), _PATIENT, ("REFERRER_ORG", "practice", ()), ("PROVIDER_ORG", "provider", ()),
        ("TFC", "specialty", ()), ("REFERRAL_DATE", "date", ())), ("UBRN",), "REFERRER_ORG", ("REFERRAL_DATE",),
        None, _referrals),
}
_ID_BASE = {"ATTENDKEY": 100_000_000_001, "EPIKEY": 300_000_000_001, "SPELL_ID": 500_000_000_001,
            "EC_IDENT": 700_000_000_001, "UBRN": 900_000_000_001}


def _change(reason: str, rows: Batch, src: EventSource, fr: Frame, rng: np.random.Generator) -> None:
    """Change copies of clean rows in the one way that gives ``reason``."""
    n = next(iter(rows.values())).size
    if reason in PRACTICE_REASONS:
        rows[src.practice] = rng.choice(fr.reason_codes()[reason], size=n)
    elif reason == "outside_window":
        before = rng.random(n) < 0.5
        main = rows[src.dates[0]]
        new = np.where(before, fr.start_day - 1 - rng.integers(0, 92, n), fr.end_day + 1 + rng.integers(0, 92, n))
        for d in src.dates:
            rows[d] = np.where(rows[d] == NULL_DAY, NULL_DAY, rows[d] + (new - main))
    elif reason == "not_attended":
        rows["ATTENDED"] = _pick(_ATTENDED, ("2", "3", "4", "7"), None, n, rng)
        rows["COST"] = np.zeros(n)
    elif reason == "first_attendance_excluded":
        rows["FIRSTATT"] = np.full(n, _FIRSTATT.index("5"))
    elif reason == "unfinished_spell":
        rows["DISDATE"] = np.full(n, NULL_DAY)
    elif reason == "admission_method_excluded":
        rows["ADMIMETH"] = _pick(_ADMIMETH, _ADMIMETH_EX, None, n, rng)
    elif reason != "duplicate_event_id":
        raise ValueError(f"no dirt rule for {reason!r}")


def _dirt(src: EventSource, clean: Batch, counted: np.ndarray, fr: Frame, rng: np.random.Generator,
          ids: _Ids) -> list[tuple[str, Batch]]:
    """The dirt rows of one chunk: (reason, rows) per reason of :data:`DIRT`."""
    base = np.flatnonzero(counted)
    out = []
    reasons = fr.reason_codes()
    for reason, rate in DIRT[src.name].items():
        if base.size == 0:
            break
        if reason in PRACTICE_REASONS and reason not in reasons:  # a reason without codes in this frame
            continue
        k = max(1, round(rate * base.size))
        if reason == "duplicate_event_id":
            take = rng.choice(next(iter(clean.values())).size, size=k, replace=False)
        else:
            take = base[rng.choice(base.size, size=k, replace=False)]
        rows = {name: v[take].copy() for name, v in clean.items()}
        if reason != "duplicate_event_id":
            for col in src.ids:
                rows[col] = ids.take(col, k)
            if "EPIORDER" in rows:
                rows["EPIORDER"] = np.ones(k, np.int64)
        _change(reason, rows, src, fr, rng)
        out.append((reason, rows))
    return out


def _dictionary(kind: str, codes: tuple[str, ...], fr: Frame) -> pa.Array:
    values = {"practice": fr.practices, "provider": fr.providers, "specialty": fr.specialties,
              "hrg": [hrg_code(s, p) for s in fr.specialties for p in PODS]}.get(kind, list(codes))
    return pa.array(values, pa.string())


def _schema(src: EventSource) -> pa.Schema:
    types = {"id": pa.int64(), "int": pa.int64(), "patient": pa.string(), "date": pa.date32(), "money": pa.float64()}
    return pa.schema([(name, types.get(kind, pa.dictionary(pa.int32(), pa.string()))) for name, kind, _ in src.columns])


def _arrow(batch: Batch, src: EventSource, fr: Frame, dictionaries: dict[str, pa.Array]) -> pa.Table:
    arrays = []
    for name, kind, _ in src.columns:
        v = batch[name]
        if kind in ("id", "int"):
            arrays.append(pa.array(v, pa.int64()))
        elif kind == "patient":
            arrays.append(pc.binary_join_element_wise("TP", pc.cast(pa.array(v, pa.int64()), pa.string()), ""))
        elif kind == "date":
            arrays.append(pa.array(v.astype(np.int32), pa.int32(), mask=v == NULL_DAY).cast(pa.date32()))
        elif kind == "money":
            arrays.append(pa.array(v, pa.float64()))
        else:
            arrays.append(pa.DictionaryArray.from_arrays(pa.array(v.astype(np.int32), pa.int32(), mask=v < 0),
                                                         dictionaries[name]))
    return pa.Table.from_arrays(arrays, schema=_schema(src))


def _tally(acc: dict[str, list[float]], key: str, rows: Batch, mask: np.ndarray | None, src: EventSource) -> None:
    n = int(next(iter(rows.values())).size if mask is None else mask.sum())
    cost = 0.0 if src.cost is None else float(rows[src.cost].sum() if mask is None else rows[src.cost][mask].sum())
    got = acc.setdefault(key, [0, 0.0])
    got[0] += n
    got[1] += cost


def _write_source(src: EventSource, cells: Cells, fr: Frame, path: Path, stream: int,
                  progress: bool) -> dict[str, Any]:
    """Write one event extract, chunk by chunk (one row group each); its truth."""
    rng = np.random.default_rng([fr.seed, 14, stream])
    ids = _Ids({name: base + fr.codes.id_offset for name, base in _ID_BASE.items()})
    dictionaries = {name: _dictionary(kind, codes, fr) for name, kind, codes in src.columns
                    if kind not in ("id", "int", "patient", "date", "money")}
    acc: dict[str, list[float]] = {}
    coded = [name for name, kind, _ in src.columns if kind not in ("id", "patient", "money")]   # dates too
    with pq.ParquetWriter(path, _schema(src), compression="zstd", use_dictionary=coded,
                          write_statistics=True) as writer:
        for lo, hi in tqdm(cells.chunks(CHUNK_EVENTS), desc=src.name, unit="chunk", disable=not progress, leave=False):
            clean, counted = src.build(cells, lo, hi, fr, rng, ids)
            _tally(acc, "aggregated", clean, counted, src)
            _tally(acc, "merged", clean, counted & (clean[src.practice] == fr.old_index), src)
            if src.name == "admitted":
                _tally(acc, "later_episode", clean, ~counted, src)
            parts = [clean]
            for reason, rows in _dirt(src, clean, counted, fr, rng, ids):
                _tally(acc, reason, rows, None, src)
                parts.append(rows)
            batch = {name: np.concatenate([p[name] for p in parts]) for name in clean}
            _tally(acc, "read", batch, None, src)
            table = _arrow(batch, src, fr, dictionaries)
            writer.write_table(table, row_group_size=max(1, table.num_rows))
    return _truth_of(acc, src, path)


def _truth_of(acc: dict[str, list[float]], src: EventSource, path: Path) -> dict[str, Any]:
    def entry(key: str) -> dict[str, Any]:
        rows, cost = acc.get(key, [0, 0.0])
        return {"rows": int(rows), "cost": float(cost)} if src.cost else {"rows": int(rows)}

    reasons = [r for r in ("later_episode", *DIRT[src.name]) if r in acc]
    return {"file": path.name, "read": entry("read"), "aggregated": entry("aggregated"), "merged": entry("merged"),
            "excluded": {r: entry(r) for r in reasons}}


def write_events(tables: dict[str, pd.DataFrame], out_dir: str | Path, *, seed: int, start_month: str, n_months: int,
                 progress: bool = False, codes: Codes | None = None) -> dict[str, Path]:
    """Write the synthetic PCT's event-level extracts, reference files and truth into ``<out_dir>/extracts/``.

    The aggregated tables must already be in ``out_dir`` (the local tables are copied from there).

    Parameters
    ----------
    tables : dict
        The generator's tables (``SynthResult.tables``).
    out_dir : str or Path
        The directory of the aggregated tables.
    seed, start_month, n_months
        The PCT's (resolved) parameters.
    progress : bool
        Show progress bars.
    codes : Codes, optional
        The commissioner, extra practice codes and identifier offsets (default: the single PCT's;
        ``pbc synth --national`` gives each commissioner its own).

    Returns
    -------
    dict
        Extract name (and ``events_truth``) -> path written.

    References
    ----------
    The module docstring; :mod:`pbc_analysis.synth.events_reference`; the ingest rules (issue 14).
    """
    out = Path(out_dir) / "extracts"
    out.mkdir(parents=True, exist_ok=True)
    fr = frame(tables, start_month, n_months, seed, codes)
    paths: dict[str, Path] = {}
    truth: dict[str, Any] = {}
    inputs = {"outpatients": ("activity", "activity", ("first_op", "followup_op")),
              "admitted": ("activity", "activity", ("elective", "non_elective")),
              "ae": ("activity", "activity", ("ae",)), "referrals": ("referrals", "referrals", None)}
    for stream, (name, (table, count, pods)) in enumerate(inputs.items(), start=1):
        src = EVENT_SOURCES[name]
        cells = _cells(tables[table], count, pods, fr)
        paths[name] = out / src.file
        truth[name] = _write_source(src, cells, fr, paths[name], stream, progress)
        del cells
    ref = write_reference(fr, tables, Path(out_dir), out)
    truth["registrations"] = ref["registrations"]
    paths |= {name: out / f for name, f in ref["files"].items()}
    doc = {"sources": truth, "settings": _settings(fr), "files": {k: p.name for k, p in sorted(paths.items())}}
    paths["events_truth"] = out / "events_truth.json"
    paths["events_truth"].write_bytes((json.dumps(doc, sort_keys=True, indent=1, allow_nan=False) + "\n").encode("utf-8"))
    return paths


def _settings(fr: Frame) -> dict[str, Any]:
    """What an ingest of the extracts needs to know (commissioner, pseudo codes, window) and the planted codes."""
    return {"commissioners": [fr.codes.commissioner], "pseudo_practices": list(PSEUDO_PRACTICES),
            "start_month": fr.months[0], "end_month": fr.months[-1],
            "merged": {"old_code": fr.codes.old_code, "new_code": fr.practices[fr.merged],
                       "effective_date": fr.date_text(fr.merge_day)},
            "extra_practices": {k: list(v) for k, v in fr.codes.extra} | {"unknown_practice": [fr.codes.unknown]},
            "closing_date": fr.date_text(int(fr.first_day[fr.close_month]))}
