"""The hospital event rules: outpatient appointments, admitted-care episodes and A&E attendances -> activity.

Each event gets the first exclusion ``reason`` that applies (null = included), in the order of the design:

- outpatients: ``duplicate_event_id``, ``outside_window``, ``not_attended``, ``first_attendance_excluded``;
- admitted care: ``duplicate_event_id``, ``later_episode`` (a spell counts once, on its first episode row),
  ``unfinished_spell`` (no discharge date), ``outside_window`` (month of discharge), ``admission_method_excluded``;
- A&E: ``duplicate_event_id``, ``outside_window`` (month of arrival);

then the practice reasons (:func:`practice_reason`): ``practice_code_missing``, ``pseudo_practice``,
``unknown_practice`` and the reference's own statuses (``other_commissioner``, ``not_gp_practice``,
``not_open_throughout_window``); a merged practice's events count under its final successor. The point of
delivery follows from first/follow-up (``first_op``, ``followup_op``), the admission method (``elective``,
``non_elective``) or is ``ae`` (specialty ``180``). :func:`condense` reads the extract once (after
:func:`duplicate_ids`, a separate small aggregate) into one row per distinct rule-independent key (with the
validation check bits), so :func:`classify` runs on those groups, never on the events; :func:`group_events`
condenses the classified groups into
one row per (reason, practice, provider, specialty, pod, month, price code, cost missing), materialised once:
activity, pricing, the reconciliation and the tariff weights are all read from it, never from the events again.

References
----------
NHS Digital, HES data dictionaries: outpatients (``FIRSTATT``, ``ATTENDED``, ``REFSOURC``), admitted patient
care (``ADMIMETH``, ``EPIORDER``, spells and episodes); NHS England, ECDS (``EC_DEPARTMENT_TYPE``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Sequence

import ibis
import ibis.expr.datatypes as dt

from pbc_analysis.data.schema import AE_POD, AE_SPECIALTY
from pbc_analysis.ingest import engine

__all__ = ["EXCLUSIONS", "HOSPITAL", "PRACTICE_REASONS", "EventRules", "activity_rows", "classify", "exact_sum", "with_duplicates",
           "condense", "duplicate_ids", "financial_year", "group_events", "month_of", "prepare", "practice_reason", "priced", "unpriced", "weights"]

#: reasons of the practice column, in the order they apply (the reference's own statuses follow)
PRACTICE_REASONS: tuple[str, ...] = ("practice_code_missing", "pseudo_practice", "unknown_practice", "other_commissioner",
                                     "not_gp_practice", "not_open_throughout_window")
#: every exclusion reason of each event source, in the order they apply
EXCLUSIONS: dict[str, tuple[str, ...]] = {
    "outpatients": ("duplicate_event_id", "outside_window", "not_attended", "first_attendance_excluded", *PRACTICE_REASONS),
    "admitted": ("duplicate_event_id", "later_episode", "unfinished_spell", "outside_window", "admission_method_excluded",
                 *PRACTICE_REASONS),
    "ae": ("duplicate_event_id", "outside_window", *PRACTICE_REASONS),
    "referrals": ("duplicate_event_id", "outside_window", *PRACTICE_REASONS),
    "referrals (derived)": ("referral_date_missing", "outside_window"),
}
#: the hospital sources (activity), in the order they are reported
HOSPITAL: tuple[str, ...] = ("outpatients", "admitted", "ae")
_MAPPED = ("included", "merged")
_GROUP_KEYS = ("reason", "merged", "practice_code", "provider_code", "specialty_code", "pod", "month", "price_code",
               "cost_missing", "type_1", "candidate", "ref_month")


@dataclass(frozen=True)
class EventRules:
    """What the event rules need: the window (first and last month), the practice-code status table
    (``code, practice_code, status``: :attr:`pbc_analysis.ingest.practices.PracticeReference.codes`) and the
    pseudo practice codes."""

    start_month: str
    end_month: str
    codes: Any
    pseudo_practices: Sequence[str] = ("V81997", "V81998", "V81999")


def month_of(date: Any) -> Any:
    """The ``YYYY-MM`` month of a date column.

    Parameters
    ----------
    date : ibis date column

    Returns
    -------
    ibis string column

    References
    ----------
    Source: DuckDB ``strftime``; the data dictionary's month format.
    """
    return date.strftime("%Y-%m")


def financial_year(month: Any) -> Any:
    """The financial-year label ``YYYY/YY`` (April to March) of a ``YYYY-MM`` month column.

    Parameters
    ----------
    month : ibis string column

    Returns
    -------
    ibis string column

    References
    ----------
    Method: the year of April on or before the month. Source: :func:`pbc_analysis.core.calendar.fy_of_month`.
    """
    year = month.substr(0, 4).cast("int64")
    start = ibis.ifelse(month.substr(5, 2).cast("int64") >= 4, year, year - 1)
    return start.cast("string").concat("/", ((start + 1) % 100).cast("string").lpad(2, "0"))


def exact_sum(money: Any) -> Any:
    """The sum of a money column, exact to 1e-9 and independent of the order DuckDB's threads add in.

    Parameters
    ----------
    money : ibis float column

    Returns
    -------
    ibis float64 scalar

    References
    ----------
    Method: summed as DECIMAL(38, 9) (integer arithmetic), so a rerun gives the same bits.
    Source: DuckDB, "Fixed-Point Decimals".
    """
    return money.cast(dt.Decimal(38, 9)).sum().cast("float64")


def _in_window(month: Any, rules: EventRules) -> Any:
    return (month >= rules.start_month) & (month <= rules.end_month)


def practice_reason(t: Any, rules: EventRules) -> tuple[Any, list[tuple[Any, Any]]]:
    """Join the practice-code status onto events: the table and the practice rules as (condition, reason) pairs.

    Parameters
    ----------
    t : ibis.Table
        Events with ``practice_code``.
    rules : EventRules

    Returns
    -------
    (ibis.Table, list)
        The events with ``_target`` (the practice they count under) and ``_status``; the (condition, reason)
        pairs of the practice rules, in order.

    References
    ----------
    Method: the order of docs/extracts.md ("Practice rules"). Source: the practice reference and succession
    (:mod:`pbc_analysis.ingest.practices`).
    """
    codes = rules.codes.select(_code="code", _target="practice_code", _status="status")
    j = t.left_join(codes, t.practice_code == codes._code).drop("_code")
    pseudo = list(rules.pseudo_practices)
    pairs = [(j.practice_code.isnull(), ibis.literal("practice_code_missing")),
             (j.practice_code.isin(pseudo) if pseudo else ibis.literal(False), ibis.literal("pseudo_practice")),
             (j._status.isnull(), ibis.literal("unknown_practice")),
             (~j._status.isin(list(_MAPPED)), j._status)]
    return j, pairs


def _id_key(t: Any) -> str:
    return "_id" if "_id" in t.columns else "event_id"


def duplicate_ids(t: Any) -> Any:
    """The event ids that occur more than once, with the lowest ``_row`` of each (the row kept).

    Parameters
    ----------
    t : ibis.Table
        Events with ``event_id`` (or ``_id``, the id as the file holds it) and ``_row``.

    Returns
    -------
    ibis.Table
        ``_did, _first`` (small: one row per repeated id).

    References
    ----------
    Method: one hash aggregation of the ids. Source: DuckDB hash aggregate.
    """
    key = _id_key(t)
    ids = t.group_by(t[key].name("_did")).aggregate(_first=t._row.min(), _n=t.count())
    return ids.filter(ids._n > 1).drop("_n")


def with_duplicates(t: Any, ids: Any = None) -> Any:
    """The events with ``_dup``: true on the second and later rows of an event id (the kept row is the lowest ``_row``).

    Parameters
    ----------
    t : ibis.Table
        Events with ``event_id`` (or ``_id``, the id as the file holds it) and ``_row``.
    ids : ibis.Table, optional
        :func:`duplicate_ids` of ``t``, already computed (e.g. materialised); default: computed here.

    Returns
    -------
    ibis.Table

    References
    ----------
    Method: one hash aggregation finds the repeated ids (a small table), joined back to the events; cheaper than
    a window over every row. Source: DuckDB hash aggregate and hash join.
    """
    key = _id_key(t)
    ids = duplicate_ids(t) if ids is None else ids
    j = t.left_join(ids, t[key] == ids._did).drop("_did")
    return j.mutate(_dup=j._first.notnull() & (j._row != j._first)).drop("_first")


#: the type money is summed in (exact, order-independent: :func:`exact_sum`)
_COST = dt.Decimal(38, 9)


def _keys(kind: str, t: Any) -> dict[str, Any]:
    """The rule-independent keys of one event (a function of the event alone): what :func:`classify` reads."""
    if kind == "outpatients":
        gp = t.referral_source == "gp"
        ref = ibis.ifelse((t.first_attendance == "first") & gp, month_of(t.referral_received_date), ibis.null("string"))
        return {"_month": month_of(t.appointment_date), "specialty_code": t.specialty_code,
                "first_attendance": t.first_attendance, "attended": t.attended, "_gp": gp, "_ref_month": ref}
    if kind == "admitted":
        return {"_month": month_of(t.discharge_date), "specialty_code": t.specialty_code, "hrg": t.hrg,
                "admission_method": t.admission_method, "_later": t.episode_order != 1,
                "_unfinished": t.discharge_date.isnull()}
    if kind == "ae":
        return {"_month": month_of(t.arrival_date), "hrg": t.hrg, "_t1": t.department_type == "type_1"}
    if kind == "referrals":
        return {"_month": month_of(t.referral_date), "specialty_code": t.specialty_code}
    raise ValueError(f"not an event source: {kind!r}; one of {', '.join(HOSPITAL)}, referrals")


def prepare(kind: str, events: Any, ids: Any = None) -> Any:
    """One row per event with the keys the rules read, ``_dup``, ``cost_missing``, ``rows`` (1) and ``cost`` (exact decimal).

    Parameters
    ----------
    kind : str
        ``outpatients``, ``admitted``, ``ae`` or ``referrals``.
    events : ibis.Table
        :attr:`pbc_analysis.ingest.sources.Source.table` (or :meth:`~pbc_analysis.ingest.sources.Source.checked`,
        whose ``_bad`` is kept) of that kind.
    ids : ibis.Table, optional
        Its :func:`duplicate_ids`, if already computed.

    Returns
    -------
    ibis.Table

    References
    ----------
    Method: every rule of :func:`classify` is a function of these keys, so events with equal keys can be
    condensed first (:func:`condense`). Source: docs/extracts.md.
    """
    t = with_duplicates(events, ids)
    cost = t.cost if "cost" in t.columns else ibis.null("float64")
    extra = {"_bad": t._bad} if "_bad" in t.columns else {}
    return t.select(_dup=t._dup, practice_code=t.practice_code, provider_code=t.provider_code, **_keys(kind, t), **extra,
                    cost_missing=cost.isnull(), rows=ibis.literal(1, "int64"), cost=cost.fill_null(0.0).cast(_COST))


def condense(con: Any, kind: str, events: Any, name: str) -> Any:
    """The events of one source condensed to one row per distinct (keys of :func:`prepare`), materialised: the
    single pass over the extract after the duplicate ids are found.

    Parameters
    ----------
    con : ibis DuckDB backend
    kind : str
    events : ibis.Table
        As for :func:`prepare` (with ``_bad``: the check counts are kept too).
    name : str
        The temporary table's name.

    Returns
    -------
    ibis.Table
        The keys, ``rows`` (events) and ``cost`` (exact decimal sum of the extract's cost, missing = 0).

    References
    ----------
    Method: one hash aggregation of the extract; the rules, pricing, reconciliation and validation counts all
    read the (small) result. Source: DuckDB hash aggregation (spills beyond the memory limit).
    """
    ids = engine.materialise(con, duplicate_ids(events), f"{name}_dups")   # apart, so the events are never stored
    p = prepare(kind, events, ids)
    keys = [c for c in p.columns if c not in ("rows", "cost")]
    return engine.materialise(con, p.group_by(keys).aggregate(rows=p.rows.sum(), cost=p.cost.sum()), name)


def _classified(j: Any, own: list[tuple[Any, str]], practice: list[tuple[Any, Any]], **columns: Any) -> Any:
    cases = [(cond, ibis.literal(r) if isinstance(r, str) else r) for cond, r in itertools.chain(own, practice)]
    reason = ibis.cases(*cases, else_=ibis.null("string"))
    return j.mutate(reason=reason, merged=j._status == "merged", **columns)


def classify(kind: str, events: Any, rules: EventRules) -> Any:
    """Every event (or group of events) of one hospital source with its exclusion ``reason`` (null = included)
    and what it counts as.

    Parameters
    ----------
    kind : str
        ``outpatients``, ``admitted`` or ``ae``.
    events : ibis.Table
        :attr:`pbc_analysis.ingest.sources.Source.table` of that kind (one row per event), or its
        :func:`condense` (one row per group, with ``rows``).
    rules : EventRules

    Returns
    -------
    ibis.Table
        ``reason, merged`` (bool), ``practice_code`` (the practice counted), ``provider_code, specialty_code,
        pod, month, price_code`` (TFC for outpatients, HRG otherwise), ``cost_missing``, ``type_1`` (A&E type 1
        department), ``candidate`` (an included GP-referred first outpatient attendance: a derived referral),
        ``ref_month`` (its month of referral received), ``rows`` and ``cost`` (exact decimal, missing = 0).

    References
    ----------
    Method: first applicable reason, in the order of :data:`EXCLUSIONS`. Source: HES and ECDS data dictionaries.
    """
    if kind not in HOSPITAL:
        raise ValueError(f"not a hospital source: {kind!r}; one of {', '.join(HOSPITAL)}")
    t = events if "rows" in events.columns else prepare(kind, events)
    win = ~_in_window(t._month, rules)
    if kind == "outpatients":
        own = [(t._dup, "duplicate_event_id"), (win, "outside_window"), (t.attended != "seen", "not_attended"),
               (t.first_attendance == "excluded", "first_attendance_excluded")]
        pod = ibis.ifelse(t.first_attendance == "first", "first_op", "followup_op")
        extra = {"_pod": pod, "_pcode": t.specialty_code, "_spec": t.specialty_code, "_t1": ibis.literal(False)}
    elif kind == "admitted":
        own = [(t._dup, "duplicate_event_id"), (t._later, "later_episode"), (t._unfinished, "unfinished_spell"),
               (win, "outside_window"), (t.admission_method == "excluded", "admission_method_excluded")]
        pod = ibis.ifelse(t.admission_method == "elective", "elective", "non_elective")
        extra = {"_pod": pod, "_pcode": t.hrg, "_spec": t.specialty_code, "_t1": ibis.literal(False)}
    else:
        own = [(t._dup, "duplicate_event_id"), (win, "outside_window")]
        extra = {"_pod": ibis.literal(AE_POD), "_pcode": t.hrg, "_spec": ibis.literal(AE_SPECIALTY), "_t1": t._t1}
    t = t.mutate(**extra)
    j, practice = practice_reason(t, rules)
    out = _classified(j, own, practice)
    if kind == "outpatients":
        candidate = out.reason.isnull() & (out.first_attendance == "first") & out._gp
        ref_month = ibis.ifelse(candidate, out._ref_month, ibis.null("string"))
    else:
        candidate, ref_month = ibis.literal(False), ibis.null("string")
    return out.select("reason", "merged", "cost_missing", "rows", "cost", practice_code=out._target,
                      provider_code=out.provider_code, specialty_code=out._spec, pod=out._pod, month=out._month,
                      price_code=out._pcode, type_1=out._t1, candidate=candidate, ref_month=ref_month)


def group_events(con: Any, classified: Any, name: str) -> Any:
    """Condense classified events to one row per (reason, merged, practice, provider, specialty, pod, month,
    price code, cost missing, type 1, referral candidate and month), materialised as a temporary table.

    Parameters
    ----------
    con : ibis DuckDB backend
    classified : ibis.Table
        From :func:`classify`.
    name : str
        The temporary table's name.

    Returns
    -------
    ibis.Table
        The keys and ``rows`` (events), ``cost`` (sum of the extract's cost, missing = 0).

    References
    ----------
    Method: sums of exact decimals (the same bits whatever the grouping before); everything downstream reads
    this small table. Source: DuckDB hash aggregation (spills beyond the memory limit).
    """
    c = classified.mutate(merged=classified.merged.fill_null(False))
    g = c.group_by(list(_GROUP_KEYS)).aggregate(rows=c.rows.sum(), cost=c.cost.sum().cast("float64"))
    return engine.materialise(con, g, name)


def priced(grouped: Any, lookup: Any) -> Any:
    """The included groups with the price of their events whose cost is missing.

    Parameters
    ----------
    grouped : ibis.Table
        From :func:`group_events`.
    lookup : ibis.Table
        ``pod, code, financial_year, price`` (:func:`pbc_analysis.ingest.prices.price_lookup`).

    Returns
    -------
    ibis.Table
        The included groups with ``financial_year``, ``price`` (null when not found or not needed) and
        ``priced_cost`` (``rows * price`` for groups whose cost is missing).

    References
    ----------
    Method: price = (pod, TFC for outpatients else HRG, financial year of the month).
    Source: Payment by Results national tariff.
    """
    g = grouped.filter(grouped.reason.isnull())
    g = g.mutate(financial_year=financial_year(g.month))
    lk = lookup.select(_lpod="pod", _lcode="code", _lfy="financial_year", price="price")
    j = g.left_join(lk, [g.pod == lk._lpod, g.price_code == lk._lcode, g.financial_year == lk._lfy])
    j = j.drop("_lpod", "_lcode", "_lfy")
    return j.mutate(priced_cost=ibis.ifelse(j.cost_missing & j.price.notnull(), j.rows.cast("float64") * j.price, 0.0))


def activity_rows(priced_groups: Any) -> Any:
    """The activity table's rows of one source: events and cost (the extract's plus the priced) by key.

    Parameters
    ----------
    priced_groups : ibis.Table
        From :func:`priced`.

    Returns
    -------
    ibis.Table
        ``practice_code, provider_code, specialty_code, pod, month, activity, cost`` (no zero rows).

    References
    ----------
    Method: counts of events (appointments, spells, attendances). Source: docs/data_dictionary.md, ``activity``.
    """
    p = priced_groups
    keys = ["practice_code", "provider_code", "specialty_code", "pod", "month"]
    return p.group_by(keys).aggregate(activity=p.rows.sum().cast("int64"), cost=exact_sum(p.cost + p.priced_cost))


def weights(priced_groups: Any, base_year: str) -> Any:
    """The tariff index's weights: included events of the base year by specialty, pod and price code.

    Parameters
    ----------
    priced_groups : ibis.Table
        From :func:`priced`.
    base_year : str
        ``YYYY/YY``.

    Returns
    -------
    ibis.Table
        ``specialty_code, pod, code, n``.

    References
    ----------
    Method: fixed (base-year) weights, Laspeyres. Source: :func:`pbc_analysis.ingest.prices.tariff`.
    """
    p = priced_groups.filter(priced_groups.financial_year == base_year)
    return p.group_by(["specialty_code", "pod", p.price_code.name("code")]).aggregate(n=p.rows.sum().cast("int64"))


def unpriced(priced_groups: Any) -> Any:
    """The (pod, code, financial year) keys of included events whose cost is missing and has no price.

    Parameters
    ----------
    priced_groups : ibis.Table
        From :func:`priced`.

    Returns
    -------
    ibis.Table
        ``pod, code, financial_year, rows``, sorted.

    References
    ----------
    Method: the keys :func:`priced` could not price. Source: docs/extracts.md, "Missing costs".
    """
    p = priced_groups.filter(priced_groups.cost_missing & priced_groups.price.isnull())
    g = p.group_by(["pod", p.price_code.name("code"), "financial_year"]).aggregate(rows=p.rows.sum())
    return g.order_by(["pod", "code", "financial_year"])
