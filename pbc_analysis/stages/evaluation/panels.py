"""The data the referral evaluation's estimators take: practice-month panels, periods, PCT series.

- :func:`practice_month_panel`: one row per practice, month and specialty (and ``all``): events (GP referrals
  or activity at a point of delivery), the registered list that month, the rate per 1,000 patients per year,
  and the practice's engagement cohort as a month index (``cohort``: the 1-based index of its first engaged
  month in the window, 0 = never engaged within the window), the convention of R's ``did`` package
  (``gname``);
- :func:`restrict_window` keeps the analysis window (baseline start to evaluation end) and renumbers months
  and cohorts; :func:`period_panel` sums months into periods (quarters by default); :func:`placebo_panel`
  moves engagement earlier on the pre-engagement months (an in-time placebo);
- :func:`pct_series`: monthly totals of events and list for the PCT, or for engaged and never-engaged
  practices separately (a controlled ITS), and :func:`its_frame` adds the interruption;
- :func:`cohort_exposure`: each cohort's person-years per period, the weights that turn an effect on a rate
  into a count.

Months, month indices and financial years come from :mod:`pbc_analysis.core.calendar`.

References
----------
Callaway B, Sant'Anna PHC (2021). Difference-in-differences with multiple time periods. J Econometrics
225:200-230 (the cohort coding).
Abadie A, Diamond A, Hainmueller J (2015). Comparative politics and the synthetic control method. Am J Polit
Sci 59:495-510 (in-time placebos).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from pbc_analysis.core import calendar
from pbc_analysis.core.checks import check_number
from pbc_analysis.stages import benchmark as _bm

if TYPE_CHECKING:
    from pbc_analysis.data import Inputs

__all__ = ["cohort_exposure", "its_frame", "pct_series", "period_panel", "placebo_panel", "practice_month_panel",
           "restrict_window"]

PANEL_TEXT_COLUMNS = ("practice_code", "consortium", "specialty_code", "month", "engaged_from")


def practice_month_panel(inputs: Inputs, measure: str = "referrals", specialties: Sequence[str] | None = None,
                         cube: _bm.Cube | None = None, include_all: bool = True) -> pd.DataFrame:
    """A balanced practice x month panel of ``measure`` per specialty (and all specialties).

    Parameters
    ----------
    inputs : pbc_analysis.data.Inputs
        Validated inputs.
    measure : str
        ``referrals`` (GP referrals) or a point of delivery.
    specialties : sequence of str, optional
        The specialties kept (None: all of the measure's).
    cube : pbc_analysis.stages.benchmark.Cube, optional
        The count cube of ``inputs``, if already built.
    include_all : bool
        Add the all-specialty rows (``specialty_code == "all"``).

    Returns
    -------
    pandas.DataFrame
        ``practice_code, consortium, specialty_code, month, t`` (1..M), ``cohort`` (``t`` of the practice's first
        engaged month, 0 = never engaged in the window), ``engaged_from, events, registered`` (list at the start
        of the month), ``rate`` (``12000 x events / registered``: per 1,000 patients per year) and ``post`` (1
        from the engagement month on).

    Raises
    ------
    ValueError
        Naming specialties that have no ``measure`` in the data, and the ones that have.

    References
    ----------
    Callaway and Sant'Anna (2021): the cohort as first treated period, 0 = never treated (R ``did``'s ``gname``).
    """
    cube = cube if cube is not None else _bm.build_cube(inputs)
    sub = _bm.select_measures(cube, [measure])
    spec = sub.series["specialty_code"].to_numpy()
    keep = np.ones(len(spec), bool) if not specialties else np.isin(spec, list(specialties))
    if specialties:
        unknown = sorted(set(specialties) - set(spec))
        if unknown:
            raise ValueError(f"specialties {unknown} have no {measure} in the data; they are {sorted(set(spec))}")
    counts = sub.counts[:, keep, :]  # (P, K, M)
    spec = spec[keep]
    if include_all:
        counts = np.concatenate([counts, counts.sum(axis=1, keepdims=True)], axis=1)
        spec = np.append(spec, _bm.ALL)
    P, K, M = counts.shape
    reg = cube.registered.sum(axis=2)  # (P, M)
    eng = inputs.engagement.set_index("practice_code")["engaged_from"].reindex(cube.practices)
    has = eng.notna().to_numpy()
    cohort = np.zeros(P, dtype=np.int64)
    cohort[has] = calendar.month_index(eng[has].astype(str).to_numpy(), cube.months[0])
    cons = cube.practice_info.set_index("practice_code")["consortium"].reindex(cube.practices).to_numpy()
    out = pd.DataFrame({
        "practice_code": np.repeat(cube.practices.to_numpy(), K * M),
        "consortium": np.repeat(cons, K * M),
        "specialty_code": np.tile(np.repeat(spec, M), P),
        "month": np.tile(np.array(cube.months), P * K),
        "t": np.tile(np.arange(1, M + 1), P * K),
        "cohort": np.repeat(cohort, K * M),
        "engaged_from": np.repeat(eng.fillna("").astype(str).to_numpy(), K * M),
        "events": counts.reshape(-1),
        "registered": np.repeat(reg[:, None, :], K, axis=1).reshape(-1),
    })
    out["rate"] = 12000.0 * out["events"] / out["registered"]
    out["post"] = ((out["cohort"] > 0) & (out["t"] >= out["cohort"])).astype(int)
    for c in PANEL_TEXT_COLUMNS:
        out[c] = out[c].astype("str")
    return out


def pct_series(panel: pd.DataFrame, specialty_code: str = _bm.ALL, by_engagement: bool = False) -> pd.DataFrame:
    """Monthly totals of ``events`` and ``registered`` for one specialty, for the PCT or by engagement.

    Parameters
    ----------
    panel : pandas.DataFrame
        A :func:`practice_month_panel`.
    specialty_code : str
        The specialty (``all`` by default).
    by_engagement : bool
        Separate series for ever-engaged and never-engaged practices (``group`` column ``engaged`` / ``never``).

    Returns
    -------
    pandas.DataFrame
        ``[group,] month, t, events, registered, rate`` (per 1,000 per year) and ``calendar_month`` (1-12).

    References
    ----------
    Lopez Bernal J, Cummins S, Gasparrini A (2018), Int J Epidemiol 47:2082-2093 (a comparison series).
    """
    p = panel[panel["specialty_code"] == specialty_code]
    if p.empty:
        raise ValueError(f"specialty {specialty_code!r} not in the panel")
    keys = ["month", "t"]
    if by_engagement:
        p = p.assign(group=np.where(p["cohort"] > 0, "engaged", "never"))
        keys = ["group"] + keys
    out = p.groupby(keys, as_index=False, sort=True)[["events", "registered"]].sum()
    out["rate"] = 12000.0 * out["events"] / out["registered"]
    out["calendar_month"] = out["month"].str.slice(5, 7).astype(int)
    return out


def its_frame(series: pd.DataFrame, interruption: str, end: str | None = None) -> pd.DataFrame:
    """A :func:`pct_series` table with ``post`` (1 from the ``interruption`` month on), up to ``end``.

    Parameters
    ----------
    series : pandas.DataFrame
        Monthly series with a ``month`` column.
    interruption : str
        The first post-interruption month.
    end : str, optional
        The last month kept (inclusive; e.g. the last complete month).

    Returns
    -------
    pandas.DataFrame

    Raises
    ------
    ValueError
        Naming the month when it is not in the series, or when no pre or post month is left.

    References
    ----------
    Lopez Bernal J, Cummins S, Gasparrini A (2017), Int J Epidemiol 46:348-355.
    """
    months = set(series["month"])
    for name, m in (("interruption", interruption), ("end", end)):
        if m is not None and m not in months:
            raise ValueError(f"{name} month {m!r} is not in the series ({min(months)} to {max(months)})")
    out = series[series["month"] <= end].copy() if end else series.copy()
    out["post"] = (out["month"] >= interruption).astype(int)
    if out["post"].nunique() < 2:
        raise ValueError(f"interruption {interruption!r} leaves no pre or no post months before {end!r}")
    return out.reset_index(drop=True)


def restrict_window(panel: pd.DataFrame, first: str | None = None, last: str | None = None) -> pd.DataFrame:
    """Keep the months ``first`` to ``last`` of a :func:`practice_month_panel`, renumbering ``t`` and cohorts.

    A practice engaged after ``last`` is never engaged within the kept months (cohort 0); one engaged in or
    before ``first`` would have no pre-period, which is an error naming the practices.

    Parameters
    ----------
    panel : pandas.DataFrame
        A :func:`practice_month_panel`.
    first, last : str, optional
        The first and last months kept (None: the panel's own).

    Returns
    -------
    pandas.DataFrame
        The same columns, ``t`` counted from 1 at ``first``.

    References
    ----------
    Callaway and Sant'Anna (2021): cohorts after the last period are never treated within the data.
    """
    months = sorted(panel["month"].unique())
    first, last = first or months[0], last or months[-1]
    for name, m in (("first", first), ("last", last)):
        if m not in months:
            raise ValueError(f"window {name} month {m!r} is not in the panel ({months[0]} to {months[-1]})")
    if first >= last:
        raise ValueError(f"window first month {first} must be before its last month {last}")
    offset = months.index(first)
    out = panel[(panel["month"] >= first) & (panel["month"] <= last)].copy()
    out["t"] = out["t"] - offset
    n = int(out["t"].max())
    early = out.loc[(out["cohort"] > 0) & (out["cohort"] - offset <= 1), "practice_code"].unique()
    if len(early):
        raise ValueError(f"{len(early)} practice(s) engaged in or before the window's first month {first} "
                         f"(e.g. {list(early[:5])}): start the baseline earlier so every cohort has a pre-period")
    cohort = out["cohort"] - offset
    out["cohort"] = np.where((out["cohort"] > 0) & (cohort <= n), cohort, 0)
    out["engaged_from"] = np.where(out["cohort"] > 0, out["engaged_from"], "")
    out["post"] = ((out["cohort"] > 0) & (out["t"] >= out["cohort"])).astype(int)
    return out.reset_index(drop=True)


def period_panel(panel: pd.DataFrame, months: int = 3) -> pd.DataFrame:
    """Sum a :func:`practice_month_panel` into periods of ``months`` consecutive months from its first month.

    Monthly specialty counts are small (a typical practice makes about ten referrals a month in a specialty),
    and a difference-in-differences compares each post period with one base period, so noise in that single
    base month weighs on every estimate; quarters cut it by about sqrt(3) while a 6-month ramp still spans two
    periods. ``cohort`` becomes the period containing the practice's first engaged month (so the first treated
    period may be partly treated). A trailing incomplete period is dropped with a warning naming its months.

    Parameters
    ----------
    panel : pandas.DataFrame
        A (restricted) :func:`practice_month_panel`.
    months : int
        Months per period (3 and a window starting in April: financial quarters).

    Returns
    -------
    pandas.DataFrame
        The monthly panel's columns with ``t`` the period number, ``month`` and ``last_month`` its first and
        last months, ``events`` summed, ``person_months`` the summed monthly lists, ``registered`` their mean
        and ``rate = 12000 x events / person_months`` (per 1,000 patients per year).

    References
    ----------
    Callaway and Sant'Anna (2021): any period length; the cohort is the first (partly) treated period.
    """
    check_number("months", months, 1, integer=True)
    M = int(panel["t"].max())
    n_full = M // months
    if n_full == 0:
        raise ValueError(f"the panel has {M} month(s), fewer than one period of {months}")
    if n_full * months < M:
        left = sorted(panel.loc[panel["t"] > n_full * months, "month"].unique())
        warnings.warn(f"period_panel: months {left[0]} to {left[-1]} do not fill a period of {months} months "
                      "and are left out", UserWarning, stacklevel=2)
    p = panel[panel["t"] <= n_full * months]
    period = (p["t"].to_numpy() - 1) // months + 1
    keys = ["practice_code", "consortium", "specialty_code", "cohort", "engaged_from"]
    g = p.assign(period=period).groupby(keys + ["period"], sort=True, observed=True)
    out = g.agg(month=("month", "first"), last_month=("month", "last"), events=("events", "sum"),
                person_months=("registered", "sum")).reset_index()
    out["registered"] = out["person_months"] / months
    out["rate"] = 12000.0 * out["events"] / out["person_months"]
    out["cohort"] = np.where(out["cohort"] > 0, (out["cohort"] - 1) // months + 1, 0)
    out = out.rename(columns={"period": "t"})
    out["post"] = ((out["cohort"] > 0) & (out["t"] >= out["cohort"])).astype(int)
    cols = ["practice_code", "consortium", "specialty_code", "month", "last_month", "t", "cohort", "engaged_from",
            "events", "person_months", "registered", "rate", "post"]
    return out[cols].sort_values(["practice_code", "specialty_code", "t"], ignore_index=True)


def placebo_panel(panel: pd.DataFrame, shift_months: int = 12) -> pd.DataFrame:
    """A placebo test's panel: the months before any practice engaged, with engagement ``shift_months`` earlier.

    Abadie, Diamond and Hainmueller's "in-time placebo". A practice whose moved date falls before the second
    month or at or after the real first engagement is a comparison (cohort 0) in the placebo: it was untreated
    throughout the kept months. An effect found here is not an effect of engagement but a sign of diverging
    trends or anticipation.

    Parameters
    ----------
    panel : pandas.DataFrame
        A (restricted) :func:`practice_month_panel`.
    shift_months : int
        How many months engagement is moved earlier (>= 1).

    Returns
    -------
    pandas.DataFrame
        The pre-engagement months with the moved cohorts, ``engaged_from`` and ``post``.

    References
    ----------
    Abadie A, Diamond A, Hainmueller J (2015), Am J Polit Sci 59:495-510.
    """
    check_number("shift_months", shift_months, 1, integer=True)
    real = panel.loc[panel["cohort"] > 0, "cohort"]
    if real.empty:
        raise ValueError("no practice engaged in the window, so there is no pre-period for a placebo")
    cut = int(real.min())
    p = panel[panel["t"] < cut].copy()
    fake = p["cohort"] - shift_months
    p["cohort"] = np.where((p["cohort"] > 0) & (fake >= 2) & (fake < cut), fake, 0)
    if not (p["cohort"] > 0).any():
        raise ValueError(f"shifting engagement {shift_months} months earlier leaves no practice engaged inside "
                         f"the {cut - 1} months before the first real engagement; use a smaller shift_months")
    first = p.groupby("t")["month"].first()
    p["engaged_from"] = np.where(p["cohort"] > 0, p["cohort"].map(first).fillna("").astype(str), "")
    p["post"] = ((p["cohort"] > 0) & (p["t"] >= p["cohort"])).astype(int)
    return p.reset_index(drop=True)


def cohort_exposure(panel: pd.DataFrame, specialty_code: str = _bm.ALL) -> pd.DataFrame:
    """Each engagement cohort's person-years per 1,000 in each period, with the period's financial year.

    Parameters
    ----------
    panel : pandas.DataFrame
        A :func:`period_panel` (or monthly panel).
    specialty_code : str
        The specialty.

    Returns
    -------
    pandas.DataFrame
        ``cohort, time, month, financial_year, exposure``: the weights turning an effect on a rate per 1,000 per
        year into a count.

    References
    ----------
    Callaway and Sant'Anna (2021): a total effect as a weighted sum of ATT(g,t).
    """
    p = panel[(panel["specialty_code"] == specialty_code) & (panel["cohort"] > 0)]
    col = "person_months" if "person_months" in p.columns else "registered"
    out = p.groupby(["cohort", "t"], as_index=False).agg(person_months=(col, "sum"), month=("month", "first"))
    out["exposure"] = out["person_months"] / 12000.0
    out["financial_year"] = calendar.financial_year_of(out["month"])
    return out.rename(columns={"t": "time"})[["cohort", "time", "month", "financial_year", "exposure"]]
