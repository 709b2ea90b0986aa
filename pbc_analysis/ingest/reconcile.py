"""The reconciliation table: for every source, rows and cost read = aggregated + excluded (by reason).

One ``read`` row and one ``aggregated`` row per source and one ``excluded`` row per reason that occurs, with
``rows`` and ``cost`` (the extract's cost, missing counted as 0) and, on the ``aggregated`` row, ``priced_rows``
and ``priced_cost`` (events whose missing cost was priced from the price table; their cost is not in ``cost``)
and ``merged_rows`` (events counted under the successor of a merged practice). :func:`check` raises when a
source does not add up. Written to ``<out>/reconciliation.csv``, sorted, byte-stable.

References
----------
Method: a control total per source (read = aggregated + excluded), as in data-warehouse load reconciliation.
Source: docs/extracts.md, "Reconciliation".
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from pbc_analysis.ingest.hospital import EXCLUSIONS, exact_sum

__all__ = ["COLUMNS", "ReconciliationError", "check", "counted", "from_groups", "table", "write"]

COLUMNS = ("source", "outcome", "reason", "rows", "cost", "priced_rows", "priced_cost", "merged_rows")
OUTCOMES = ("read", "aggregated", "excluded")
#: the sources in the order they are reported
SOURCES = ("outpatients", "admitted", "ae", "referrals", "referrals (derived)", "registrations")
REL_TOL = 1e-9


class ReconciliationError(AssertionError):
    """A source's rows or cost read differ from aggregated + excluded."""


def _row(source: str, outcome: str, reason: str = "", rows: int = 0, cost: float = 0.0, priced_rows: int = 0,
         priced_cost: float = 0.0, merged_rows: int = 0) -> dict[str, Any]:
    return {"source": source, "outcome": outcome, "reason": reason, "rows": int(rows), "cost": float(cost),
            "priced_rows": int(priced_rows), "priced_cost": float(priced_cost), "merged_rows": int(merged_rows)}


def from_groups(con: Any, source: str, grouped: Any, priced_groups: Any | None = None) -> list[dict[str, Any]]:
    """The reconciliation rows of one event source from its condensed events.

    Parameters
    ----------
    con : ibis DuckDB backend
    source : str
        The source's name in the table (``outpatients``, ``referrals (derived)``, ...).
    grouped : ibis.Table
        :func:`pbc_analysis.ingest.hospital.group_events` or :func:`pbc_analysis.ingest.referrals.group_referrals`
        (``reason, merged, rows, cost, cost_missing``).
    priced_groups : ibis.Table, optional
        :func:`pbc_analysis.ingest.hospital.priced` of the same groups (hospital sources).

    Returns
    -------
    list of dict
        The ``read`` and ``aggregated`` rows and one ``excluded`` row per reason that occurs.

    References
    ----------
    Method: sums of the condensed events (exact decimal sums). Source: docs/extracts.md, "Reconciliation".
    """
    g = grouped
    by = g.group_by("reason").aggregate(rows=g.rows.sum(), cost=exact_sum(g.cost),
                                        merged_rows=(g.rows * g.merged.cast("int64")).sum())
    counts = {r["reason"]: r for r in con.to_pyarrow(by).to_pylist()}
    priced_rows, priced_cost = 0, 0.0
    if priced_groups is not None:
        p = priced_groups.filter(priced_groups.cost_missing & priced_groups.price.notnull())
        s = con.to_pyarrow(p.aggregate(n=p.rows.sum(), c=exact_sum(p.priced_cost))).to_pylist()[0]
        priced_rows, priced_cost = int(s["n"] or 0), float(s["c"] or 0.0)
    kept = counts.get(None, {"rows": 0, "cost": 0.0, "merged_rows": 0})
    out = [_row(source, "read", rows=sum(int(r["rows"]) for r in counts.values()),
                cost=float(exact_total([r["cost"] or 0.0 for r in counts.values()]))),
           _row(source, "aggregated", rows=kept["rows"], cost=kept["cost"] or 0.0, priced_rows=priced_rows,
                priced_cost=priced_cost, merged_rows=kept["merged_rows"] or 0)]
    out += [_row(source, "excluded", reason, rows=r["rows"], cost=r["cost"] or 0.0, merged_rows=r["merged_rows"] or 0)
            for reason, r in counts.items() if reason is not None]
    return out


def exact_total(values: list[float]) -> float:
    """A sum of a few floats that does not depend on their order (``math.fsum``).

    Parameters
    ----------
    values : list of float

    Returns
    -------
    float

    References
    ----------
    Source: Python ``math.fsum`` (Shewchuk's exactly rounded sum).
    """
    return math.fsum(sorted(values))


def counted(source: str, aggregated: int, excluded: Mapping[str, int], merged: int = 0) -> list[dict[str, Any]]:
    """The reconciliation rows of a source counted elsewhere (registrations: rows of the snapshot files).

    Parameters
    ----------
    source : str
    aggregated : int
        Rows used.
    excluded : mapping
        Reason -> rows.
    merged : int
        Rows of merged practices counted under their successor.

    Returns
    -------
    list of dict

    References
    ----------
    Method: read = aggregated + excluded by construction. Source: :mod:`pbc_analysis.ingest.registrations`.
    """
    return ([_row(source, "read", rows=aggregated + sum(excluded.values())),
             _row(source, "aggregated", rows=aggregated, merged_rows=merged)]
            + [_row(source, "excluded", reason, rows=n) for reason, n in excluded.items() if n])


def _reason_rank(source: str, reason: str) -> tuple[int, str]:
    order = EXCLUSIONS.get(source, ())
    return (order.index(reason), "") if reason in order else (len(order), reason)


def table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The reconciliation table, sorted (source, outcome read/aggregated/excluded, reason in rule order).

    Parameters
    ----------
    rows : list of dict
        From :func:`from_groups` and :func:`counted`.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS`.

    References
    ----------
    Method: fixed order of sources, outcomes and reasons (:data:`~pbc_analysis.ingest.hospital.EXCLUSIONS`). Source: docs/extracts.md, "Reconciliation".
    """
    def key(r: dict[str, Any]) -> tuple:
        src = SOURCES.index(r["source"]) if r["source"] in SOURCES else len(SOURCES)
        return (src, r["source"], OUTCOMES.index(r["outcome"]), _reason_rank(r["source"], r["reason"]))
    ordered = sorted(rows, key=key)
    return pd.DataFrame(ordered, columns=list(COLUMNS)).astype(
        {"rows": "int64", "priced_rows": "int64", "merged_rows": "int64", "cost": "float64", "priced_cost": "float64"})


def check(recon: pd.DataFrame) -> None:
    """Raise unless every source's rows and cost read equal aggregated + excluded.

    Parameters
    ----------
    recon : pandas.DataFrame
        From :func:`table`.

    Returns
    -------
    None

    Raises
    ------
    ReconciliationError
        Naming each source that does not add up, with the figures.

    References
    ----------
    Method: rows exactly, cost to 1e-9 relative. Source: docs/extracts.md, "Reconciliation".
    """
    bad = []
    for source, part in recon.groupby("source", sort=True):
        read = part[part.outcome == "read"]
        rest = part[part.outcome != "read"]
        if len(read) != 1 or (part.outcome == "aggregated").sum() != 1:
            bad.append(f"{source}: needs one read and one aggregated row")
            continue
        rows_read, rows_rest = int(read.rows.iloc[0]), int(rest.rows.sum())
        cost_read, cost_rest = float(read.cost.iloc[0]), math.fsum(rest.cost)
        if rows_read != rows_rest or not math.isclose(cost_read, cost_rest, rel_tol=REL_TOL, abs_tol=1e-6):
            bad.append(f"{source}: read {rows_read:,} rows, cost {cost_read:.2f}; aggregated + excluded {rows_rest:,} rows, "
                       f"cost {cost_rest:.2f}")
    if bad:
        raise ReconciliationError("the reconciliation does not add up (events were lost or counted twice): " + "; ".join(bad))


def write(recon: pd.DataFrame, path: str | Path) -> None:
    """Write the reconciliation table as CSV (byte-stable: fixed order, shortest float repr, ``\\n`` line ends).

    Parameters
    ----------
    recon : pandas.DataFrame
    path : str or Path

    Returns
    -------
    None

    References
    ----------
    Source: pandas ``DataFrame.to_csv``.
    """
    recon.to_csv(path, index=False, lineterminator="\n")
