"""The price table (payment-scheme-like, long) -> the price lookup for missing costs and the ``tariff`` table,
a fixed-weight (Laspeyres) price index by specialty, point of delivery and financial year.

Outpatients are priced by treatment function: the tariff of (s, first_op | followup_op, FY) is the price of
TFC s. Admitted care and A&E are priced by HRG, and a specialty's price is the fixed-weight mean

    price(s, pod, FY) = sum_h w_h p_h(FY) / sum_h w_h,     w_h = included events of (s, pod, HRG h) in the base year,

so that between years the index moves only with the HRG prices, never with the HRG mix (a current-weighted
mean, sum_h n_h(FY) p_h(FY) / sum_h n_h(FY), would move when the mix moves at fixed prices).

References
----------
Laspeyres, E. (1871), "Die Berechnung einer mittleren Waarenpreissteigerung", Jahrbücher für
Nationalökonomie und Statistik 16; ILO/IMF/OECD/Eurostat/UNECE/World Bank (2004), *Consumer Price Index
Manual: Theory and Practice*, ch. 15 (fixed-basket indices). Source: Department of Health / NHS England,
Payment by Results national tariff (outpatient prices by treatment function, HRG prices for admitted care and A&E).
"""

from __future__ import annotations

from typing import Sequence

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from pbc_analysis.core import calendar
from pbc_analysis.data.problems import DataValidationError, Problem
from pbc_analysis.ingest.reference import _problem, arrow_table, examples

__all__ = ["OP_PODS", "default_base_year", "price_lookup", "tariff"]

#: points of delivery priced by treatment function (the others by HRG)
OP_PODS: tuple[str, ...] = ("first_op", "followup_op")
KIND = "prices"


def default_base_year(window: tuple[str, str]) -> str:
    """The auto price base year: the first full financial year of the window.

    Parameters
    ----------
    window : (str, str)
        First and last month.

    Returns
    -------
    str
        ``YYYY/YY``.

    Raises
    ------
    ValueError
        The window holds no full financial year (set ``price_base_year``).

    References
    ----------
    ``docs/extracts_reference.md``, "Tariff index".
    """
    years = calendar.full_financial_years(*window)
    if not years:
        raise ValueError(f"the window {window[0]} .. {window[1]} holds no full financial year: set price_base_year (YYYY/YY)")
    return years[0]


def _lookup_problems(p: ir.Table, file: str) -> list[Problem]:
    out: list[Problem] = []
    bad = p.filter(p.price.isnull() | (p.price <= 0) | p.price.isnan() | p.code.isnull() | p.category.isnull())
    rows, n = examples(bad)
    if n:
        out.append(_problem(file, KIND, "price", "rows have a missing code or category, or a missing, zero or negative price",
                            "give every row a code, a category and a price > 0", rows=rows, n_rows=n, check="price_value"))
    years = [y for y in p.select("financial_year").distinct().to_pyarrow().column(0).to_pylist()]
    wrong = sorted(str(y) for y in years if not calendar.is_financial_year(y))
    if wrong:
        rows, n = examples(p.filter(p.financial_year.isin(wrong) | p.financial_year.isnull()))
        out.append(_problem(file, KIND, "financial_year", "financial years are not YYYY/YY with consecutive years",
                            "write financial years as 2005/06", values=wrong, rows=rows, n_rows=n, check="financial_year"))
    g = p.group_by(["category", "code", "financial_year"]).aggregate(k=p.price.nunique())
    clash = g.filter(g.k > 1)
    keys = clash.order_by(["category", "code", "financial_year"]).limit(10).to_pyarrow().to_pylist()
    if keys:
        dup = p.semi_join(clash, ["category", "code", "financial_year"])
        rows, n = examples(dup)
        out.append(_problem(file, KIND, "price", "codes have two different prices in the same financial year and category; "
                            "values: (category, code, financial year)", "give each code one price per year and category",
                            values=[(k["category"], k["code"], k["financial_year"]) for k in keys], rows=rows, n_rows=n,
                            check="price_unique"))
    return out


def price_lookup(prices_source: ir.Table, *, problems: list[Problem] | None = None, file: str = "") -> ir.Table:
    """The price of each (point of delivery, code, financial year).

    Parameters
    ----------
    prices_source : ibis.Table
        Canonical fields ``financial_year`` (text ``YYYY/YY``), ``category`` (a point of delivery), ``code``
        (TFC for outpatients, HRG otherwise), ``price`` (and ``_row``).
    problems : list, optional
        Problems found (missing or non-positive prices, bad years, two prices for one key) are appended
        here; without a list they are raised.
    file : str
        The price file, for messages.

    Returns
    -------
    ibis.Table
        ``pod, code, financial_year, price``, one row per key (repeated identical rows are one).

    Raises
    ------
    DataValidationError
        When ``problems`` is None and the price table breaks a rule.

    References
    ----------
    Department of Health, Payment by Results national tariff; ``docs/extracts_reference.md``, "Prices".
    """
    found = _lookup_problems(prices_source, file)
    if found and problems is None:
        raise DataValidationError(found)
    if problems is not None:
        problems.extend(found)
    p = prices_source.filter(prices_source.price.notnull() & prices_source.code.notnull() & prices_source.category.notnull())
    return (p.group_by([p.category.name("pod"), "code", "financial_year"]).aggregate(price=p.price.max().cast("float64"))
            .select("pod", "code", "financial_year", "price"))


def tariff(lookup: ir.Table, weights: ir.Table, *, base_year: str, years: Sequence[str],
           file: str = "") -> tuple[pa.Table, list[Problem]]:
    """The tariff table: specialty x point of delivery x financial year prices, HRG pods as a fixed-weight index.

    Parameters
    ----------
    lookup : ibis.Table
        :func:`price_lookup`'s table (``pod, code, financial_year, price``).
    weights : ibis.Table
        ``specialty_code, pod, code, n``: included events of the base year by specialty, pod and code
        (TFC for outpatients, HRG otherwise). Outpatient rows only give the (specialty, pod) pairs.
        Rows with a missing code or ``n <= 0`` carry no weight.
    base_year : str
        The financial year the weights are from (``YYYY/YY``; messages).
    years : sequence of str
        The financial years to price.
    file : str
        The price file, for messages.

    Returns
    -------
    (pyarrow.Table, list of Problem)
        ``tariff`` (sorted by key) and the problems: an outpatient TFC or a weighted HRG without a price in a
        year, a (specialty, pod) with no HRG weights in the base year.

    References
    ----------
    Laspeyres (1871); *Consumer Price Index Manual* (2004), ch. 15; ``docs/extracts_reference.md``, "Tariff index".
    """
    yrs = ibis.memtable(pa.table({"financial_year": pa.array(sorted(set(years)), pa.string())}))
    op = weights.pod.isin(list(OP_PODS))
    w = weights.mutate(code=ibis.ifelse(op, weights.specialty_code, weights.code), n=ibis.ifelse(op, 1, weights.n))
    pairs = w.select("specialty_code", "pod").distinct()
    w = w.filter(w.code.notnull() & (w.n > 0))
    w = w.group_by(["specialty_code", "pod", "code"]).aggregate(n=w.n.sum())
    unweighted = pairs.anti_join(w, ["specialty_code", "pod"]).order_by(["specialty_code", "pod"]).to_pyarrow().to_pylist()
    cells = w.cross_join(yrs)
    lk = lookup.select(lpod="pod", lcode="code", lfy="financial_year", price="price")
    j = cells.left_join(lk, [cells.pod == lk.lpod, cells.code == lk.lcode, cells.financial_year == lk.lfy])
    j = j.select("specialty_code", "pod", "code", "financial_year", "n", "price")
    missing = j.filter(j.price.isnull()).select("pod", "code", "financial_year").distinct()
    miss = missing.order_by(["pod", "code", "financial_year"]).to_pyarrow().to_pylist()
    g = j.group_by(["specialty_code", "pod", "financial_year"]).aggregate(
        num=(j.n.cast("float64") * j.price).sum(), den=j.n.cast("float64").sum(), gaps=j.price.isnull().sum())
    g = g.filter(g.gaps == 0).mutate(price=g.num / g.den)
    out = g.select("specialty_code", "pod", "financial_year", "price").to_pyarrow()
    problems: list[Problem] = []
    if miss:
        problems.append(_problem(file, KIND, "code", f"{len(miss)} (point of delivery, code, financial year) used by the "
                                 f"events (base year {base_year}) have no price", "add their prices to the price table "
                                 "(outpatients by treatment function, admitted care and A&E by HRG)",
                                 values=[(m["pod"], m["code"], m["financial_year"]) for m in miss], check="price_known"))
    if unweighted:
        problems.append(_problem(file, KIND, "code", f"{len(unweighted)} (specialty, point of delivery) have no events with an "
                                 f"HRG in the base year {base_year}, so their price index has no weights",
                                 "supply the HRG of the events, or choose another price_base_year",
                                 values=[(u["specialty_code"], u["pod"]) for u in unweighted], check="price_weights"))
    return arrow_table("tariff", out), problems
