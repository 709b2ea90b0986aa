"""The practice reference (epraccur-like), the local practice attributes and the succession table -> the
``practices`` table and the status of every practice code the events may carry.

Rules (``docs/extracts_reference.md``): a practice is *included* when its commissioner is one of the given
commissioners (``None``: every commissioner), its prescribing setting is ``4`` (GP practice) and it is open
throughout the window (open on or before the window's first day, closed, if at all, after its last day); a
successor that opened at a merger counts as open from the earliest opening of the practices merged into it.
A code that is an old code of the succession table is *merged*: its events and registrations belong to its
final successor (chains A -> B -> C map A and B to C) at every date; a cycle is refused. Every other code
carries the first exclusion reason that applies, in the order ``other_commissioner``, ``not_gp_practice``,
``not_open_throughout_window``. The reference is small (one row per organisation), so it is handled in memory.

References
----------
NHS Digital ODS, "GP Practices" (``epraccur.csv``): field positions and the prescribing setting codes
(4 = GP practice); NHS Digital, "Patients registered at a GP practice" (practice mergers).
"""

from __future__ import annotations

import calendar as _cal
import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from pbc_analysis.core import calendar
from pbc_analysis.data.problems import Problem
from pbc_analysis.ingest.reference import _problem, arrow_table, files_of

__all__ = ["EXCLUSION_STATUSES", "GP_PRESCRIBING_SETTING", "PracticeReference", "follow_succession", "practice_reference",
           "window_days"]

GP_PRESCRIBING_SETTING = "4"
INCLUDED, MERGED = "included", "merged"
#: the practice exclusion reasons, in the order they are tried
EXCLUSION_STATUSES: tuple[str, ...] = ("other_commissioner", "not_gp_practice", "not_open_throughout_window")
_CODES_SCHEMA = pa.schema([("code", pa.string()), ("practice_code", pa.string()), ("status", pa.string())])


@dataclass
class PracticeReference:
    """The practices table, the status of every known practice code and the problems found.

    ``codes`` has one row per code the reference or the succession table knows: ``code``,
    ``practice_code`` (the code the events count under: itself when included, the final successor when
    merged, missing otherwise) and ``status`` (``included``, ``merged`` or an exclusion reason).
    ``commissioners`` has one row per included practice: ``practice_code, commissioner_code, commissioner_name``
    (the reference's ``commissioner_name`` when its map gives one, else the code), sorted by practice code.
    """

    practices: pa.Table
    codes: ir.Table
    problems: list[Problem] = field(default_factory=list)
    status: pa.Table | None = None   # ``codes`` as a pyarrow table (small)
    commissioners: pa.Table | None = None


def window_days(window: tuple[str, str]) -> tuple[dt.date, dt.date]:
    """The first day of the window's first month and the last day of its last month.

    Parameters
    ----------
    window : (str, str)
        First and last month ``YYYY-MM``.

    Returns
    -------
    (datetime.date, datetime.date)

    References
    ----------
    :mod:`pbc_analysis.core.calendar` (months as ``YYYY-MM``).
    """
    first, last = window
    if not (calendar.is_month(first) and calendar.is_month(last)) or first > last:
        raise ValueError(f"window must be two months YYYY-MM in order, got {window!r}")
    y0, m0 = int(first[:4]), int(first[5:])
    y1, m1 = int(last[:4]), int(last[5:])
    return dt.date(y0, m0, 1), dt.date(y1, m1, _cal.monthrange(y1, m1)[1])


def follow_succession(pairs: Mapping[str, str]) -> tuple[dict[str, str], list[list[str]]]:
    """The final successor of every old code, following chains, and the cycles found.

    Parameters
    ----------
    pairs : mapping of str to str
        ``{old_code: new_code}``.

    Returns
    -------
    (dict, list of list of str)
        ``{old_code: final successor}`` for the old codes outside cycles, and each cycle as its codes
        (starting at its smallest code, in succession order).

    References
    ----------
    ``docs/extracts_reference.md``, "Succession".
    """
    final: dict[str, str] = {}
    cycles: list[list[str]] = []
    in_cycle: set[str] = set()
    for start in sorted(pairs):
        path: list[str] = []
        seen: set[str] = set()
        c = start
        while c in pairs and c not in final and c not in in_cycle:
            if c in seen:
                cyc = path[path.index(c):]
                k = cyc.index(min(cyc))
                cycles.append(cyc[k:] + cyc[:k])
                in_cycle.update(cyc)
                break
            seen.add(c)
            path.append(c)
            c = pairs[c]
        if c in in_cycle:
            in_cycle.update(path)    # leads into a cycle: no final successor
            continue
        end = final.get(c, c)
        for p in path:
            final[p] = end
    return final, cycles


def _rows_of(t: pa.Table, mask: Sequence[bool]) -> tuple[list[int], int]:
    idx = [i for i, m in enumerate(mask) if m]
    if "_row" in t.column_names:
        rows = t.column("_row").to_pylist()
        return sorted(int(rows[i]) for i in idx)[:1000], len(idx)
    return [i + 1 for i in idx][:1000], len(idx)


def _duplicates(t: pa.Table, col: str, file: str, table: str) -> list[Problem]:
    codes = t.column(col).to_pylist()
    first: dict[Any, int] = {}
    mask = [c is not None and first.setdefault(c, i) != i for i, c in enumerate(codes)]
    if not any(mask):
        return []
    rows, n = _rows_of(t, mask)
    return [_problem(file, table, col, f"{n} row(s) repeat a {col} given on an earlier row",
                     f"give each {col} one row", values=[c for c, m in zip(codes, mask) if m],
                     rows=rows, n_rows=n, check="unique")]


def _succession(succession: ir.Table | None, file: str) -> tuple[dict[str, str], dict[str, str], list[Problem]]:
    """``({old: new}, {old: final}, problems)`` from the succession table."""
    if succession is None:
        return {}, {}, []
    t = succession.to_pyarrow()
    old, new = t.column("old_code").to_pylist(), t.column("new_code").to_pylist()
    problems: list[Problem] = []
    bad = [o is None or n is None or o == n for o, n in zip(old, new)]
    if any(bad):
        rows, n = _rows_of(t, bad)
        problems.append(_problem(file, "succession", "new_code", "rows have a missing code or a practice succeeding itself",
                                 "give every row an old and a different new practice code", rows=rows, n_rows=n,
                                 values=[(o, w) for o, w, b in zip(old, new, bad) if b], check="succession_pair"))
    pairs: dict[str, str] = {}
    split: list[bool] = []
    for o, w, b in zip(old, new, bad):
        split.append(not b and o in pairs and pairs[o] != w)
        if not b:
            pairs.setdefault(o, w)
    if any(split):
        rows, n = _rows_of(t, split)
        problems.append(_problem(file, "succession", "old_code", "old codes have more than one new code (a split is not supported)",
                                 "give each old code one successor", rows=rows, n_rows=n,
                                 values=[o for o, s in zip(old, split) if s], check="succession_split"))
    final, cycles = follow_succession(pairs)
    if cycles:
        problems.append(_problem(file, "succession", "new_code", f"{len(cycles)} succession cycle(s): a chain of mergers returns "
                                 "to a code it started from", "correct the succession table so that every chain ends at a "
                                 "practice that is not itself merged", values=[" -> ".join(c + [c[0]]) for c in cycles],
                                 check="succession_cycle"))
    return pairs, final, problems


def _own_status(d: dict[str, list], i: int, commissioners: set[str] | None, first_day: dt.date, last_day: dt.date,
                open_from: dt.date | None) -> str:
    if commissioners is not None and d["commissioner"][i] not in commissioners:
        return "other_commissioner"
    if d["prescribing_setting"][i] != GP_PRESCRIBING_SETTING:
        return "not_gp_practice"
    close = d["close_date"][i]
    if open_from is None or open_from > first_day or (close is not None and close <= last_day):
        return "not_open_throughout_window"
    return INCLUDED


def _statuses(ref: pa.Table, final: dict[str, str], commissioners: set[str] | None, window: tuple[str, str],
              file: str) -> tuple[dict[str, tuple[str | None, str]], list[Problem]]:
    """``{code: (practice_code, status)}`` for every reference and succession code."""
    first_day, last_day = window_days(window)
    cols = ["practice_code", "commissioner", "prescribing_setting", "open_date"]
    d = {c: ref.column(c).to_pylist() for c in cols}
    d["close_date"] = ref.column("close_date").to_pylist() if "close_date" in ref.column_names else [None] * ref.num_rows
    index = {c: i for i, c in reversed(list(enumerate(d["practice_code"]))) if c is not None}
    opens: dict[str, dt.date | None] = {c: d["open_date"][i] for c, i in index.items()}
    for old, end in final.items():      # a successor counts from the earliest opening of its predecessors
        o, e = opens.get(old), opens.get(end)
        if end in opens and o is not None and e is not None and o < e:
            opens[end] = o
    out: dict[str, tuple[str | None, str]] = {}
    for c, i in index.items():
        s = _own_status(d, i, commissioners, first_day, last_day, opens[c])
        out[c] = (c if s == INCLUDED else None, s)
    problems: list[Problem] = []
    no_open = [c for c, i in index.items() if d["open_date"][i] is None and out[c][1] == "not_open_throughout_window"]
    if no_open:
        rows, n = _rows_of(ref, [c in set(no_open) for c in d["practice_code"]])
        problems.append(_problem(file, "practice_reference", "open_date", "practices of the commissioners have no open date",
                                 "give every practice its open date (epraccur field 11, YYYYMMDD)", values=no_open,
                                 rows=rows, n_rows=n, check="not_missing"))
    unknown = sorted({end for end in final.values() if end not in index})
    for old, end in final.items():
        if end in index:
            code, s = out[end]
            out[old] = (code, MERGED) if s == INCLUDED else (None, s)
        else:
            out[old] = (None, "unknown_practice")
    if unknown:
        problems.append(_problem(file, "practice_reference", "practice_code", "successor practices of the succession table are "
                                 "not in the practice reference", "add them to the practice reference or correct the "
                                 "succession table", values=unknown, check="successor_known"))
    return out, problems


def _attributes(attributes: ir.Table, included: list[str], file: str) -> tuple[dict[str, tuple], list[Problem]]:
    """``{practice_code: (consortium, imd_score, single_handed)}`` for the included practices, and problems."""
    t = attributes.to_pyarrow()
    problems = _duplicates(t, "practice_code", file, "practice_attributes")
    d = {c: t.column(c).to_pylist() for c in ("practice_code", "consortium", "imd_score", "single_handed")}
    want = set(included)
    out: dict[str, tuple] = {}
    bad: dict[str, list[int]] = {"consortium": [], "imd_score": [], "single_handed": []}
    for i, code in enumerate(d["practice_code"]):
        if code not in want or code in out:
            continue
        cons, imd, sh = d["consortium"][i], d["imd_score"][i], d["single_handed"][i]
        flag = {"true": True, "false": False}.get(str(sh).strip().lower()) if sh is not None else None
        if cons is None or not str(cons).strip():
            bad["consortium"].append(i)
        if imd is None or imd != imd:
            bad["imd_score"].append(i)
        if flag is None:
            bad["single_handed"].append(i)
        out[code] = (cons, imd, flag)
    for col, idx in bad.items():
        if idx:
            rows, n = _rows_of(t, [i in set(idx) for i in range(t.num_rows)])
            what = "is not true or false" if col == "single_handed" else "is missing"
            problems.append(_problem(file, "practice_attributes", col, f"{col} {what} for included practices",
                                     f"give every included practice its {col}" + (" as true or false" if col == "single_handed" else ""),
                                     values=[d[col][i] for i in idx], rows=rows, n_rows=n, check="attribute_value"))
    missing = [c for c in included if c not in out]
    if missing:
        problems.append(_problem(file, "practice_attributes", "practice_code", f"{len(missing)} included practice(s) have no "
                                 "attributes (consortium, imd_score, single_handed)", "add a row for each of them to the "
                                 "practice attributes table", values=missing, check="attributes_known"))
    return out, problems


def practice_reference(con: Any, reference: ir.Table, attributes: ir.Table, succession: ir.Table | None = None, *,
                       commissioners: Sequence[str] | None, window: tuple[str, str],
                       files: Mapping[str, str] | None = None) -> PracticeReference:
    """The practices table and the status of every practice code.

    Parameters
    ----------
    con : ibis backend
        The connection the sources come from (the codes table is an in-memory table usable on it).
    reference : ibis.Table
        Practice reference, canonical fields ``practice_code, practice_name, open_date, close_date`` (optional),
        ``commissioner, prescribing_setting`` (and ``_row``).
    attributes : ibis.Table
        ``practice_code, consortium, imd_score, single_handed`` (text ``true``/``false``).
    succession : ibis.Table, optional
        ``old_code, new_code, effective_date``.
    commissioners : sequence of str or None
        The commissioners whose practices are included; ``None``: every commissioner.
    window : (str, str)
        First and last month of the analysis window.
    files : mapping, optional
        ``{source kind: file}`` for messages (``practice_reference``, ``practice_attributes``, ``succession``).

    Returns
    -------
    PracticeReference
        ``practices`` (data-dictionary table, sorted by code), ``codes`` (ibis: code, practice_code, status),
        ``problems`` (duplicate codes, included practices without attributes, succession cycles, ...),
        ``commissioners`` (the included practices' commissioner: the optional ``commissioners`` table).

    References
    ----------
    NHS Digital ODS, "GP Practices" (``epraccur``), prescribing setting 4 = GP practice; ``docs/extracts_reference.md``.
    """
    if commissioners is not None and not list(commissioners):
        raise ValueError("commissioners is an empty list: give the commissioner codes, or None for every commissioner")
    f_ref, f_att, f_suc = (files_of(files, k) for k in ("practice_reference", "practice_attributes", "succession"))
    ref = reference.to_pyarrow()
    problems = _duplicates(ref, "practice_code", f_ref, "practice_reference")
    _, final, p_succ = _succession(succession, f_suc)
    status, p_stat = _statuses(ref, final, set(commissioners) if commissioners is not None else None, window, f_ref)
    included = sorted(c for c, (_, s) in status.items() if s == INCLUDED)
    attrs, p_attr = _attributes(attributes, included, f_att)
    problems += p_succ + p_stat + p_attr
    names = dict(zip(reversed(ref.column("practice_code").to_pylist()), reversed(ref.column("practice_name").to_pylist())))
    rows = [c for c in included if c in attrs]
    unnamed = [c for c in included if names.get(c) is None or not str(names[c]).strip()]
    if unnamed:
        problems.append(_problem(f_ref, "practice_reference", "practice_name", "included practices have no name",
                                 "give every practice its name (epraccur field 2)", values=unnamed, check="not_missing"))
    practices = arrow_table("practices", pa.table({
        "practice_code": rows, "practice_name": [names[c] for c in rows],
        "consortium": [attrs[c][0] for c in rows], "imd_score": pa.array([attrs[c][1] for c in rows], pa.float64()),
        "single_handed": pa.array([attrs[c][2] for c in rows], pa.bool_())}))
    codes = sorted(status)
    table = pa.table({"code": codes, "practice_code": [status[c][0] for c in codes],
                      "status": [status[c][1] for c in codes]}, schema=_CODES_SCHEMA)
    return PracticeReference(practices=practices, codes=ibis.memtable(table), problems=problems, status=table,
                             commissioners=_commissioners(ref, rows))


def _commissioners(ref: pa.Table, rows: list[str]) -> pa.Table:
    """practice_code, commissioner_code, commissioner_name of the included practices ``rows`` (the first row of a code)."""
    code = dict(zip(reversed(ref.column("practice_code").to_pylist()), reversed(ref.column("commissioner").to_pylist())))
    named = "commissioner_name" in ref.column_names
    name = dict(zip(reversed(ref.column("practice_code").to_pylist()),
                    reversed(ref.column("commissioner_name").to_pylist()))) if named else {}
    return pa.table({"practice_code": pa.array(rows, pa.string()),
                     "commissioner_code": pa.array([code[c] for c in rows], pa.string()),
                     "commissioner_name": pa.array([name.get(c) or code[c] for c in rows], pa.string())})
