"""GP registration snapshots (quinary age, by sex) -> the ``population`` table: the list at the start of every
month of the window, for every included practice, 19 age bands x 2 sexes (dense).

Rule (``docs/extracts_reference.md``): a snapshot is the list on its extract date. The list at the start of
month m (day d) is the linear interpolation in days between the snapshots s0 <= d <= s1 around it,
n(d) = n0 + (n1 - n0) (d - s0) / (s1 - s0), per practice, age band and sex, rounded half up to a whole number
(computed exactly in integers: floor((2 (n0 (s1 - s0) + (n1 - n0) (d - s0)) + (s1 - s0)) / (2 (s1 - s0))));
a snapshot dated d is taken as it is. Before the first or after the last snapshot the nearest snapshot
is used when it is within 3 calendar months of d, else the month is a problem. Rows of predecessor
codes are summed into their final successor; ``ALL`` rows (sex or age) are totals, checked against the
sum of the bands and not counted. Rows go through Ibis until the final dense table.

References
----------
NHS Digital, "Patients registered at a GP practice" (monthly; quarterly before April 2017), quinary age file
``gp-reg-pat-prac-quin-age.csv``: ``EXTRACT_DATE, ORG_CODE, SEX, AGE_GROUP_5, NUMBER_OF_PATIENTS``.
Method: linear interpolation between list snapshots (e.g. ONS, "Methodology guide for mid-year population
estimates", interpolation between reference dates).
"""

from __future__ import annotations

import bisect
import calendar as _cal
import datetime as dt
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from pbc_analysis.core import calendar
from pbc_analysis.data.problems import Problem
from pbc_analysis.data.schema import AGE_BANDS, SEXES
from pbc_analysis.ingest import engine
from pbc_analysis.ingest.reference import _problem, arrow_table, examples

__all__ = ["NEAREST_MONTHS", "Population", "interpolation_plan", "population", "snapshot_window"]

#: how far (calendar months) before the first / after the last snapshot the nearest snapshot is used
NEAREST_MONTHS = 3
TOTAL = "total"
INCLUDED, MERGED = "included", "merged"
KIND = "registrations"


@dataclass
class Population:
    """The population table, the problems and the reconciliation counts of the registration rows.

    ``read`` rows = ``aggregated`` + sum of ``excluded`` (reason -> rows); ``merged`` counts the aggregated
    rows of predecessor codes (information).
    """

    table: pa.Table
    problems: list[Problem] = field(default_factory=list)
    read: int = 0
    aggregated: int = 0
    excluded: dict[str, int] = field(default_factory=dict)
    merged: int = 0


def _month_day(month: str) -> dt.date:
    return dt.date(int(month[:4]), int(month[5:]), 1)


def _shift(d: dt.date, months: int) -> dt.date:
    y, m = divmod(d.year * 12 + d.month - 1 + months, 12)
    return dt.date(y, m + 1, min(d.day, _cal.monthrange(y, m + 1)[1]))


def snapshot_window(registrations: ir.Table) -> tuple[str, str]:
    """The months of the first and the last snapshot (the auto window).

    Parameters
    ----------
    registrations : ibis.Table
        With canonical field ``extract_date`` (date).

    Returns
    -------
    (str, str)
        ``YYYY-MM`` of the earliest and the latest extract date.

    References
    ----------
    ``docs/data_dictionary.md``, the auto window.
    """
    r = registrations.filter(registrations.extract_date.notnull())
    res = r.aggregate(lo=r.extract_date.min(), hi=r.extract_date.max()).to_pyarrow().to_pylist()[0]
    if res["lo"] is None:
        raise ValueError("the registrations have no extract dates: no snapshot, so no window")
    return res["lo"].strftime("%Y-%m"), res["hi"].strftime("%Y-%m")


def interpolation_plan(dates: Sequence[dt.date], window: tuple[str, str]) -> tuple[pa.Table, list[str]]:
    """For each window month, the snapshots around its first day and the interpolation weights.

    Parameters
    ----------
    dates : sequence of datetime.date
        The snapshot (extract) dates.
    window : (str, str)
        First and last month.

    Returns
    -------
    (pyarrow.Table, list of str)
        ``month, month_index, d0, d1, k, span``: the list at the start of ``month`` is
        n0 + (n1 - n0) k / span with n0, n1 the lists on d0, d1 (span >= 1; k = 0 and d0 = d1 when a
        snapshot is taken as it is); and the months with no snapshot near enough (left out of the table).

    References
    ----------
    ``docs/extracts_reference.md``, "Interpolation".
    """
    snaps = sorted(set(dates))
    rows: dict[str, list] = {"month": [], "month_index": [], "d0": [], "d1": [], "k": [], "span": []}
    uncovered = []
    for i, month in enumerate(calendar.month_range(*window)):
        d = _month_day(month)
        j = bisect.bisect_left(snaps, d)
        if j < len(snaps) and snaps[j] == d:
            d0 = d1 = d
        elif 0 < j < len(snaps):
            d0, d1 = snaps[j - 1], snaps[j]
        elif snaps and j == 0 and _shift(snaps[0], -NEAREST_MONTHS) <= d:
            d0 = d1 = snaps[0]
        elif snaps and j == len(snaps) and d <= _shift(snaps[-1], NEAREST_MONTHS):
            d0 = d1 = snaps[-1]
        else:
            uncovered.append(month)
            continue
        span = (d1 - d0).days
        for key, v in (("month", month), ("month_index", i), ("d0", d0), ("d1", d1), ("k", (d - d0).days if span else 0),
                       ("span", span or 1)):
            rows[key].append(v)
    schema = pa.schema([("month", pa.string()), ("month_index", pa.int64()), ("d0", pa.date32()), ("d1", pa.date32()),
                        ("k", pa.int64()), ("span", pa.int64())])
    return pa.table(rows, schema=schema), uncovered


def _classify(r: ir.Table, codes: ir.Table, used: list[dt.date], pseudo: Sequence[str]) -> ir.Table:
    """Each registration row with its final practice ``target`` and ``reason`` (null: aggregated)."""
    c = codes.select(code="code", target="practice_code", status="status")
    j = r.left_join(c, r.practice_code == c.code)
    reason = ibis.cases(
        ((j.sex == TOTAL) | (j.age_group == TOTAL), "total_row"),
        (~j.extract_date.isin(used) if used else ibis.literal(True), "outside_window"),
        (j.practice_code.isnull(), "practice_code_missing"),
        (j.practice_code.isin(list(pseudo)) if pseudo else ibis.literal(False), "pseudo_practice"),
        (j.status.isnull(), "unknown_practice"),
        (~j.status.isin([INCLUDED, MERGED]), j.status),
        else_=ibis.null().cast("string"))
    return j.mutate(reason=reason)


def _total_problems(r: ir.Table, file: str) -> list[Problem]:
    """Totals (``ALL`` sex or age rows) that differ from the sum of their bands."""
    keys = ["extract_date", "practice_code"]
    bands = r.filter((r.sex != TOTAL) & (r.age_group != TOTAL))
    tot = r.filter((r.sex == TOTAL) | (r.age_group == TOTAL))
    n = bands.patients.sum()
    cols = [*keys, "sex", "age_group", "expected"]
    sums = ibis.union(
        bands.group_by([*keys, "sex"]).aggregate(expected=n).mutate(age_group=ibis.literal(TOTAL)).select(cols),
        bands.group_by([*keys, "age_group"]).aggregate(expected=n).mutate(sex=ibis.literal(TOTAL)).select(cols),
        bands.group_by(keys).aggregate(expected=n).mutate(sex=ibis.literal(TOTAL), age_group=ibis.literal(TOTAL)).select(cols),
        distinct=False)
    j = tot.left_join(sums, [*keys, "sex", "age_group"])
    bad = j.filter(j.expected.fill_null(0) != j.patients.fill_null(-1))
    rows, n_bad = examples(bad)
    if not n_bad:
        return []
    sample = bad.order_by("_row" if "_row" in bad.columns else keys).limit(10).to_pyarrow().to_pylist()
    values = [(str(s["extract_date"]), s["practice_code"], s["sex"], s["age_group"], s["patients"], s["expected"] or 0)
              for s in sample]
    return [_problem(file, KIND, "patients", f"{n_bad} total row(s) (sex or age ALL) differ from the sum of their bands; "
                     "values: (extract date, practice, sex, age, total, sum of bands)",
                     "correct the extract: a total must equal the sum of its age-sex rows (or drop the total rows)",
                     values=values, rows=rows, n_rows=n_bad, check="total_row")]


def _value_problems(r: ir.Table, file: str) -> list[Problem]:
    bad = r.filter(r.patients.isnull() | (r.patients < 0) | r.extract_date.isnull())
    rows, n = examples(bad)
    out = []
    if n:
        out.append(_problem(file, KIND, "patients", "rows have a missing or negative number of patients or no extract date",
                            "give every row its extract date and a count >= 0", rows=rows, n_rows=n, check="patients_value"))
    # a cell given twice (the top band may come from several source bands: 90_94 and 95+, so it is not checked)
    keys = ["extract_date", "practice_code", "sex", "age_group"]
    cells = r.filter(r.age_group != AGE_BANDS[-1])
    g = cells.group_by(keys).aggregate(k=cells.count())
    twice = g.filter(g.k > 1)
    rows, n = examples(cells.semi_join(twice, keys))
    if n:
        sample = twice.order_by(keys).limit(10).to_pyarrow().to_pylist()
        out.append(_problem(file, KIND, "age_group", "rows repeat an (extract date, practice, sex, age group) of another row",
                            "give each practice, sex and age group one row per extract date", rows=rows, n_rows=n,
                            values=[(str(s["extract_date"]), s["practice_code"], s["sex"], s["age_group"]) for s in sample],
                            check="unique"))
    return out


def _dense(cells: ir.Table, plan: pa.Table, included: list[str]) -> ir.Table:
    """Every included practice x planned month x band x sex, with the interpolated list."""
    grid = (ibis.memtable(pa.table({"practice_code": pa.array(included, pa.string())}))
            .cross_join(ibis.memtable(plan))
            .cross_join(ibis.memtable(pa.table({"age_band": list(AGE_BANDS), "band_index": list(range(len(AGE_BANDS)))})))
            .cross_join(ibis.memtable(pa.table({"sex": list(SEXES), "sex_index": list(range(len(SEXES)))}))))
    c0 = cells.select(p0="target", e0="extract_date", s0="sex", a0="age_group", n0="n")
    c1 = cells.select(p1="target", e1="extract_date", s1="sex", a1="age_group", n1="n")
    g = grid.left_join(c0, [grid.practice_code == c0.p0, grid.d0 == c0.e0, grid.sex == c0.s0, grid.age_band == c0.a0])
    g = g.left_join(c1, [g.practice_code == c1.p1, g.d1 == c1.e1, g.sex == c1.s1, g.age_band == c1.a1])
    n0, n1 = g.n0.fill_null(0).cast("int64"), g.n1.fill_null(0).cast("int64")
    num = n0 * g.span + (n1 - n0) * g.k
    registered = (2 * num + g.span) // (2 * g.span)      # round half up, exact in integers (num >= 0)
    return g.select("practice_code", "month", "age_band", "sex", "month_index", "band_index", "sex_index",
                    registered=registered.cast("int64"))


def _presence_problems(cells: ir.Table, plan: pa.Table, included: list[str], file: str) -> list[Problem]:
    """Included practices with no rows in a snapshot the interpolation needs."""
    need = sorted(set(plan.column("d0").to_pylist()) | set(plan.column("d1").to_pylist()))
    have = cells.select("target", "extract_date").distinct().to_pyarrow().to_pylist()
    present = {(h["target"], h["extract_date"]) for h in have}
    missing = [(p, str(d)) for p in included for d in need if (p, d) not in present]
    if not missing:
        return []
    return [_problem(file, KIND, "practice_code", f"{len(missing)} practice-snapshot(s) needed for the window have no rows "
                     "(included practice, extract date)", "add the practices' rows to those snapshots, or check the "
                     "practice reference and succession table", values=missing, check="snapshot_practice")]


def _once(expr: ir.Table, name: str) -> ir.Table:
    """``expr`` computed once into a temporary table of its database (as it is when it has none: an in-memory table)."""
    try:
        con = expr._find_backend()
    except ibis.common.exceptions.IbisError:
        return expr
    return engine.materialise(con, expr, name)


def population(registrations: ir.Table, codes: ir.Table, *, window: tuple[str, str], pseudo_practices: Sequence[str] = (),
               files: Mapping[str, str] | None = None) -> Population:
    """The dense population table from registration snapshots.

    Parameters
    ----------
    registrations : ibis.Table
        Canonical fields ``extract_date`` (date), ``practice_code``, ``sex`` (``F``, ``M``, ``total``),
        ``age_group`` (a project band or ``total``), ``patients`` (int), and ``_row``.
    codes : ibis.Table
        The practice-code status (:attr:`pbc_analysis.ingest.practices.PracticeReference.codes`).
    window : (str, str)
        First and last month.
    pseudo_practices : sequence of str
        Pseudo practice codes (excluded as ``pseudo_practice``).
    files : mapping, optional
        ``{"registrations": file}`` for messages.

    Returns
    -------
    Population
        ``table`` (population, sorted by practice, month, band, sex in the data dictionary's order), problems
        (months without a snapshot near enough, totals that do not add up, practice-months of zero list, ...)
        and the reconciliation counts.

    References
    ----------
    NHS Digital, "Patients registered at a GP practice"; ``docs/extracts_reference.md``, "Interpolation".
    """
    file = str((files or {}).get(KIND, ""))
    registrations = _once(registrations, "registrations_read")   # the file is read (parsed) once
    problems = _value_problems(registrations, file) + _total_problems(registrations, file)
    dates = [d for d in registrations.select("extract_date").distinct().to_pyarrow().column(0).to_pylist() if d is not None]
    plan, uncovered = interpolation_plan(dates, window)
    if uncovered:
        problems.append(_problem(file, KIND, "extract_date", f"{len(uncovered)} month(s) of the window have no snapshot around "
                                 f"them or within {NEAREST_MONTHS} months", "add the snapshots covering these months, or "
                                 "shorten the window (start_month, end_month)", values=uncovered, check="snapshot_cover"))
    used = sorted(set(plan.column("d0").to_pylist()) | set(plan.column("d1").to_pylist()))
    j = _classify(registrations, codes, used, pseudo_practices)
    counts = {r["reason"]: (int(r["rows"]), int(r["merged"] or 0)) for r in
              j.group_by("reason").aggregate(rows=j.count(), merged=(j.status == MERGED).fill_null(False).cast("int64").sum()).to_pyarrow().to_pylist()}
    kept = j.filter(j.reason.isnull())
    cells = kept.group_by(["target", "extract_date", "sex", "age_group"]).aggregate(n=kept.patients.sum())
    cs = codes.filter(codes.status == INCLUDED)
    included = sorted(cs.select("practice_code").distinct().to_pyarrow().column(0).to_pylist())
    problems += _presence_problems(cells, plan, included, file)
    cells = _once(cells, "registrations_cells")
    dense = _once(_dense(cells, plan, included), "registrations_dense")
    totals = dense.group_by(["practice_code", "month"]).aggregate(n=dense.registered.sum())
    zero = totals.filter(totals.n == 0).order_by(["practice_code", "month"]).to_pyarrow().to_pylist()
    if zero:
        problems.append(_problem(file, KIND, "patients", f"{len(zero)} practice-month(s) have a registered list of zero",
                                 "check the snapshots of these practices (a rate needs a denominator)",
                                 values=[(z["practice_code"], z["month"]) for z in zero], check="zero_list"))
    out = dense.order_by(["practice_code", "month_index", "band_index", "sex_index"]).to_pyarrow()
    excluded = {k: counts[k][0] for k in sorted(k for k in counts if k is not None)}
    agg, merged = counts.get(None, (0, 0))
    return Population(table=arrow_table("population", out, sort=False), problems=problems,
                      read=int(registrations.count().to_pyarrow().as_py()), aggregated=agg, excluded=excluded, merged=merged)
