"""GP referrals: from an e-RS-style referral extract, or derived from first outpatient attendances.

With an extract (source ``referrals``, map ``ers``), each referral gets the first reason that applies:
``duplicate_event_id``, ``outside_window`` (month of the referral date), then the practice reasons of
:func:`pbc_analysis.ingest.hospital.practice_reason`. Without one, referrals are derived (source
``referrals (derived)``) from the outpatient appointments that are included, first attendances (attended,
by the outpatient rules) and referred by a GP (``REFSOURC`` 03), dated by the month the referral was received
(``REQDATE``): ``referral_date_missing`` when it is missing, ``outside_window`` when that month is outside the
window. Such a count misses referrals whose first appointment falls after the window or never happens; the
report says which source the referrals came from.

References
----------
NHS Digital, e-Referral Service (UBRN); HES outpatients (``REFSOURC``, ``REQDATE``, ``FIRSTATT``); NHS England,
Monthly Activity Return (GP referrals, first outpatient attendances).
"""

from __future__ import annotations

from typing import Any

import ibis

from pbc_analysis.ingest import engine
from pbc_analysis.ingest.hospital import EventRules, _in_window, practice_reason, prepare

__all__ = ["DERIVED", "classify_extract", "derive", "group_referrals", "referral_rows"]

#: the reconciliation's name for referrals derived from outpatient first attendances
DERIVED = "referrals (derived)"
_KEYS = ("reason", "merged", "practice_code", "provider_code", "specialty_code", "month")


def classify_extract(events: Any, rules: EventRules) -> Any:
    """Every referral of an e-RS-style extract with its exclusion ``reason`` (null = included).

    Parameters
    ----------
    events : ibis.Table
        :attr:`pbc_analysis.ingest.sources.Source.table` of kind ``referrals`` (one row per referral), or its
        :func:`pbc_analysis.ingest.hospital.condense` (one row per group, with ``rows``).
    rules : EventRules

    Returns
    -------
    ibis.Table
        ``reason, merged, practice_code`` (the practice counted), ``provider_code, specialty_code, month, rows``.

    References
    ----------
    Method: first applicable reason (docs/extracts.md, "Referrals"). Source: e-Referral Service extract.
    """
    t = events if "rows" in events.columns else prepare("referrals", events)
    j, practice = practice_reason(t, rules)
    cases = [(j._dup, ibis.literal("duplicate_event_id")), (~_in_window(j._month, rules), ibis.literal("outside_window")),
             *practice]
    j = j.mutate(reason=ibis.cases(*cases, else_=ibis.null("string")), merged=(j._status == "merged").fill_null(False))
    return j.select("reason", "merged", "rows", practice_code=j._target, provider_code=j.provider_code,
                    specialty_code=j.specialty_code, month=j._month)


def derive(outpatients: Any, rules: EventRules) -> Any:
    """Referrals derived from the condensed outpatient appointments: included GP-referred first attendances.

    Parameters
    ----------
    outpatients : ibis.Table
        :func:`pbc_analysis.ingest.hospital.group_events` of the outpatients (``candidate``, ``ref_month``).
    rules : EventRules

    Returns
    -------
    ibis.Table
        One row per group of candidate appointments: ``reason`` (``referral_date_missing``, ``outside_window``
        or null), ``merged, practice_code, provider_code, specialty_code, month`` (of the referral received
        date), ``rows``.

    References
    ----------
    Method: a GP referral is seen as the first attendance it leads to, dated by referral received.
    Source: HES outpatients (``REFSOURC`` 03 = GP, ``REQDATE``).
    """
    c = outpatients.filter(outpatients.candidate)
    reason = ibis.cases((c.ref_month.isnull(), ibis.literal("referral_date_missing")),
                        (~_in_window(c.ref_month, rules), ibis.literal("outside_window")), else_=ibis.null("string"))
    return c.select("merged", "practice_code", "provider_code", "specialty_code", "rows", reason=reason, month=c.ref_month)


def group_referrals(con: Any, classified: Any, name: str) -> Any:
    """Condense classified referrals to one row per (reason, merged, practice, provider, specialty, month), materialised.

    Parameters
    ----------
    con : ibis DuckDB backend
    classified : ibis.Table
        From :func:`classify_extract` (one row per referral) or :func:`derive` (groups with ``rows``).
    name : str
        The temporary table's name.

    Returns
    -------
    ibis.Table
        The keys, ``rows`` and ``cost`` (0: referrals carry no cost).

    References
    ----------
    Method: one pass over the referrals. Source: DuckDB hash aggregation.
    """
    c = classified.mutate(merged=classified.merged.fill_null(False))
    g = c.group_by(list(_KEYS)).aggregate(rows=c.rows.sum() if "rows" in c.columns else c.count())
    g = g.mutate(cost=ibis.literal(0.0), cost_missing=ibis.literal(False))
    return engine.materialise(con, g, name)


def referral_rows(grouped: Any) -> Any:
    """The referrals table's rows: included referrals by practice, provider, specialty and month.

    Parameters
    ----------
    grouped : ibis.Table
        From :func:`group_referrals`.

    Returns
    -------
    ibis.Table
        ``practice_code, provider_code, specialty_code, month, referrals`` (no zero rows).

    References
    ----------
    Method: counts of referrals. Source: docs/data_dictionary.md, ``referrals``.
    """
    g = grouped.filter(grouped.reason.isnull())
    return g.group_by(["practice_code", "provider_code", "specialty_code", "month"]).aggregate(
        referrals=g.rows.sum().cast("int64"))
