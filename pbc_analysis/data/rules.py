"""The validation rules beyond the element-wise ones: keys, references, the window and the table-level rules.

Keys, foreign keys (references), the analysis window, complete age-sex lists (population: dense, every
practice in every month), the activity and cost rules, prices, engagement, commissioners and the reference rates are
vectorised numpy/pandas on integer codes; there are no Python loops over rows or practices (only over the
handful of items quoted in a message). :data:`_TABLE_RULES` is the registry of table-level rules;
:func:`_validate` runs every rule on the tables read.

``activity`` and ``referrals`` may be sparse: a missing (practice, provider, specialty[, pod], month) row
means zero, so there is no gap rule for their series and no rule that every practice has rows in every
month (docs/data_dictionary.md). Explicit zero rows stay allowed. The stages densify what they need.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import pandas as pd

from pbc_analysis.core import calendar
from pbc_analysis.data.checks import (
    _combine,
    _Ctx,
    _key_codes,
    _lookup,
    _pandera_problems,
    _practice_index,
    _reference_values,
    _window_month,
)
from pbc_analysis.data.problems import KEEP_VALUES, SHOW_ROWS, Problem, _are, _fmt_value, _have, _n, _rows, _samples
from pbc_analysis.data.read import _column_set_problems
from pbc_analysis.data.schema import AE_POD, AE_SPECIALTY, AGE_BANDS, MEASURES, SEXES, TABLES
from pbc_analysis.data.window import Window


def _sorted_dups(key: np.ndarray) -> bool:
    if len(key) < 2:
        return False
    if np.all(key[1:] > key[:-1]):
        return False
    ks = np.sort(key)
    return bool(np.any(ks[1:] == ks[:-1]))


def _key_problems(ctx: _Ctx) -> list[Problem]:
    key_cols = ctx.spec.key
    if not key_cols or not ctx.has(*key_cols):
        return []
    key, valid = _key_codes(ctx, key_cols)
    pos_valid = np.flatnonzero(valid)
    k = key[pos_valid]
    if not _sorted_dups(k):
        return []
    dup = pd.Series(k).duplicated(keep=False).to_numpy()
    positions, kd = pos_valid[dup], k[dup]
    dup_keys = pd.unique(kd)  # in order of first appearance
    n_keys = len(dup_keys)
    details, values = [], []
    for key_value in dup_keys[:SHOW_ROWS]:
        p = positions[kd == key_value]
        kv = tuple(ctx.df[c].iloc[int(p[0])] for c in key_cols)
        values.append(kv)
        rows = _rows(p[:20], ctx.rowmap)
        details.append(f"{_fmt_value(kv)} on rows {', '.join(map(str, rows))}" + (" ..." if len(p) > 20 else ""))
    label = "(" + ", ".join(key_cols) + ")"
    msg = (f"duplicate key {label}: {_n(n_keys, 'key value')} {'appears' if n_keys == 1 else 'appear'} more than "
           f"once, on {_n(len(positions), 'row')}: " + "; ".join(details) + (" ..." if n_keys > SHOW_ROWS else ""))
    return [ctx.problem(", ".join(key_cols), positions, msg,
                        f"keep one row per {label}: remove the duplicates or add them up in the source extract",
                        "duplicate_key", values=values)]


def _reference_problems(ctx: _Ctx, ctxs: Mapping[str, _Ctx]) -> list[Problem]:
    problems = []
    for col in ctx.spec.column_names:
        meta = ctx.spec.meta(col)
        ref_table = meta.get("references")
        if not ref_table or not ctx.has(col):
            continue
        known = _reference_values(ctxs, ref_table)
        if known is None:
            continue
        codes, uniques = ctx.factorize(col)
        allowed = known.append(pd.Index(list(meta.get("also_allowed", ())), dtype=known.dtype)) \
            if meta.get("also_allowed") else known
        unknown_u = ~np.asarray(pd.Index(uniques).isin(allowed), dtype=bool)
        if not unknown_u.any():
            continue
        bad = np.zeros(len(uniques) + 1, dtype=bool)
        bad[:-1] = unknown_u
        positions = np.flatnonzero(bad[codes])  # code -1 -> last slot (False)
        ref_file = ctxs[ref_table].file
        what = meta.get("kind", col).replace("_", " ")
        n_codes = int(unknown_u.sum())
        problems.append(ctx.problem(
            col, positions,
            f"{_n(n_codes, 'unknown ' + what)} (not in table '{ref_table}'), on {_n(len(positions), 'row')}",
            f"add the missing {what}s to '{ref_table}' ({Path(ref_file).name if ref_file else ref_table}) or "
            f"correct the codes here", "unknown_code",
            values=_samples(pd.Index(uniques)[unknown_u].tolist())))
    return problems


def _window_problems(ctx: _Ctx, window: Window) -> list[Problem]:
    problems = []
    for col in ctx.spec.column_names:
        meta = ctx.spec.meta(col)
        if not meta.get("in_window") or not ctx.has(col):
            continue
        if meta["kind"] == "month":
            mi = ctx.month_index(col)
            outside = (mi >= 0) & ((mi < window.start_index) | (mi > window.end_index))
        else:
            codes, uniques = ctx.factorize(col)
            inside = np.append(pd.Index(uniques).isin(window.financial_years), True)
            outside = ~inside[codes]
        positions = np.flatnonzero(outside)
        if len(positions):
            unit = "months" if meta["kind"] == "month" else "financial years"
            span = str(window) if meta["kind"] == "month" else ", ".join(window.financial_years)
            problems.append(ctx.problem(
                col, positions, f"{_n(len(positions), 'row')} {_are(len(positions))} outside the analysis window ({span})",
                "remove rows outside the window from the extract, or widen the window (start_month/end_month in "
                f"the run config) if these {unit} belong to the analysis",
                "outside_window"))
    return problems


def _population_problems(ctx: _Ctx, ctxs: Mapping[str, _Ctx], window: Window) -> list[Problem]:
    pi = _practice_index(ctx, ctxs)
    if pi is None or not ctx.has("month", "age_band", "sex"):
        return []
    p, known = pi
    m = _window_month(ctx, window)
    band = _lookup(ctx, "age_band", AGE_BANDS)
    sex = _lookup(ctx, "sex", SEXES)
    ok = (p >= 0) & (m >= 0) & (band >= 0) & (sex >= 0)
    n_m, n_as = window.n_months, len(AGE_BANDS) * len(SEXES)
    n_p = len(known)
    pm = np.where((p >= 0) & (m >= 0), p * n_m + m, n_p * n_m)  # n_p * n_m: not a practice-month of the window
    cell = np.zeros(n_p * n_m * n_as, dtype=bool)
    cell[pm[ok] * n_as + band[ok] * len(SEXES) + sex[ok]] = True
    n_cells = cell.reshape(n_p * n_m, n_as).sum(axis=1)
    # not judged (the cause is already reported): practices with a row whose month is missing or invalid,
    # practice-months with a row whose age band or sex is missing or invalid
    unsure = np.zeros(n_p * n_m + 1, dtype=bool)
    unsure[:-1] = np.repeat(np.isin(np.arange(n_p), p[(p >= 0) & (ctx.month_index("month") < 0)]), n_m)
    unsure[pm[(band < 0) | (sex < 0)]] = True
    unsure = unsure[:-1]
    problems: list[Problem] = []
    months = window.months
    # practice-months with no rows at all
    none = np.flatnonzero((n_cells == 0) & ~unsure)
    if len(none):
        pairs = [(str(known[i // n_m]), months[i % n_m]) for i in none[:KEEP_VALUES]]
        n_prac = len(np.unique(none // n_m))
        problems.append(Problem(ctx.file, ctx.table, "month", [], pairs,
                                f"{_n(len(none), 'practice-month')} ({_n(n_prac, 'practice')}) {_have(len(none))} "
                                "no population rows: "
                                + ", ".join(f"{a} {b}" for a, b in pairs) + (" ..." if len(none) > KEEP_VALUES else ""),
                                "every practice needs its registered list (38 age-sex rows) for every month of the "
                                "window; add the missing months", n_rows=0, check="population_missing"))
    # practice-months with some but not all age-sex rows
    part = (n_cells > 0) & (n_cells < n_as) & ~unsure
    if part.any():
        bad_pm = np.append(part, False)
        positions = np.flatnonzero(bad_pm[pm])
        grid = cell.reshape(n_p * n_m, n_as)
        details, values = [], []
        labels = [f"{s} {b}" for b in AGE_BANDS for s in SEXES]
        for i in np.flatnonzero(part)[:SHOW_ROWS]:
            miss = [labels[j] for j in np.flatnonzero(~grid[i])]
            values.append((str(known[i // n_m]), months[i % n_m]))
            details.append(f"{known[i // n_m]} {months[i % n_m]}: {n_cells[i]} of {n_as} rows (missing "
                           + ", ".join(miss[:5]) + (" ..." if len(miss) > 5 else "") + ")")
        problems.append(ctx.problem(
            "age_band, sex", positions,
            f"{_n(int(part.sum()), 'practice-month')} {_have(int(part.sum()))} incomplete age-sex rows: "
            + "; ".join(details) + (" ..." if part.sum() > SHOW_ROWS else ""),
            f"every practice-month needs all {n_as} rows (19 age bands x F/M), with 0 where nobody is registered",
            "population_incomplete", values=values))
    # zero list size
    if ctx.has("registered"):
        reg = ctx.df["registered"].to_numpy(dtype=float, na_value=np.nan)
        okr = ok & ~np.isnan(reg)
        total = np.bincount(pm[okr], weights=reg[okr], minlength=n_p * n_m + 1)[:-1]
        no_reg = np.bincount(pm[np.isnan(reg)], minlength=n_p * n_m + 1)[:-1] > 0
        zero = (total == 0) & (n_cells > 0) & ~no_reg
        if zero.any():
            bad_pm = np.append(zero, False)
            positions = np.flatnonzero(bad_pm[pm] & ok)
            pairs = [(str(known[i // n_m]), months[i % n_m]) for i in np.flatnonzero(zero)[:KEEP_VALUES]]
            problems.append(ctx.problem(
                "registered", positions,
                f"{_n(int(zero.sum()), 'practice-month')} {_have(int(zero.sum()))} a total registered list of 0 "
                "(a rate needs a denominator): "
                + ", ".join(f"{a} {b}" for a, b in pairs) + (" ..." if zero.sum() > KEEP_VALUES else ""),
                "give the practice's registered list for these months; if the practice had closed, remove it "
                "from all tables for those months", "zero_list", values=pairs))
    return problems


def _ae_mismatch(ctx: _Ctx, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Rows breaking 'specialty 180 exactly when ``kind`` (pod or measure) is ae', and the rows where
    both values are valid (the rule is not judged on cells already reported as invalid)."""
    sc, su = ctx.factorize("specialty_code")
    kc, ku = ctx.factorize(kind)
    is180 = np.append(np.asarray(pd.Index(su) == AE_SPECIALTY, dtype=bool), False)[sc]
    isae = np.append(np.asarray(pd.Index(ku) == AE_POD, dtype=bool), False)[kc]
    valid = (sc >= 0) & (kc >= 0)
    return np.flatnonzero(valid & (is180 != isae)), valid


def _activity_problems(ctx: _Ctx, ctxs: Mapping[str, _Ctx], window: Window) -> list[Problem]:
    problems: list[Problem] = []
    df = ctx.df
    # specialty 180 exactly when pod is ae
    if ctx.has("specialty_code", "pod"):
        positions, _ = _ae_mismatch(ctx, "pod")
        if len(positions):
            values = _samples(zip(df["specialty_code"].iloc[positions[:1000]], df["pod"].iloc[positions[:1000]]))
            problems.append(ctx.problem(
                "specialty_code, pod", positions,
                f"{_n(len(positions), 'row')} break{'s' if len(positions) == 1 else ''} the rule 'specialty 180 "
                "exactly when pod is ae' (values are (specialty_code, pod))",
                "A&E attendances have pod 'ae' and specialty 180; other points of delivery never use 180",
                "ae_specialty", values=values))
    if ctx.has("activity", "cost"):
        act = df["activity"].to_numpy(dtype=float, na_value=np.nan)
        cost = df["cost"].to_numpy(dtype=float, na_value=np.nan)
        positions = np.flatnonzero((act == 0) & (cost > 0))
        if len(positions):
            values = _samples(zip(act[positions[:1000]].astype(np.int64).tolist(), cost[positions[:1000]].tolist()))
            problems.append(ctx.problem(
                "cost", positions, f"{_n(len(positions), 'row')} {_have(len(positions))} cost > 0 with activity 0 "
                "(values are (activity, cost))",
                "cost must be 0 when there is no activity: correct the activity count or the cost",
                "cost_without_activity", values=values))
    # prices
    tariff = ctxs.get("tariff")
    if tariff is not None and ctx.has("specialty_code", "pod", "month", "activity") and \
            tariff.has("specialty_code", "pod", "financial_year"):
        act = df["activity"].to_numpy(dtype=float, na_value=np.nan)
        sc, su = ctx.factorize("specialty_code")
        pcodes, pu = ctx.factorize("pod")
        mi = ctx.month_index("month")
        need = (act > 0) & (sc >= 0) & (pcodes >= 0) & (mi >= 0)
        if need.any():
            # the calendar year each month's financial year starts in (calendar.fy_of_month, on month numbers)
            fy_start = np.where(need, (mi - (calendar.FIRST_MONTH_OF_YEAR - 1)) // 12, 0)
            y0 = int(fy_start[need].min())
            fy_idx = fy_start - y0
            n_fy = int(fy_idx[need].max()) + 1
            combo = _combine([(np.maximum(sc, 0), len(su)), (np.maximum(pcodes, 0), len(pu)), (fy_idx, n_fy)])
            used = np.flatnonzero(np.bincount(combo[need]))
            spec_u = used // (len(pu) * n_fy)
            pod_u = (used // n_fy) % len(pu)
            fy_u = used % n_fy + y0
            fy_label = pd.Series(fy_u).map(calendar.financial_year_label)
            want = pd.DataFrame({"specialty_code": pd.Index(su)[spec_u].astype(str),
                                 "pod": pd.Index(pu)[pod_u].astype(str), "financial_year": fy_label.to_numpy()})
            t = tariff.df
            tk = pd.MultiIndex.from_frame(t[["specialty_code", "pod", "financial_year"]].dropna().astype(str))
            priced = pd.MultiIndex.from_frame(want).isin(tk)
            if not priced.all():
                missing_combo = used[~priced]
                positions = np.flatnonzero(need & np.isin(combo, missing_combo))
                miss = want[~priced]
                values = list(miss.itertuples(index=False, name=None))
                problems.append(ctx.problem(
                    "specialty_code, pod, month", positions,
                    f"no tariff price for {_n(len(miss), '(specialty, pod, financial year) combination')} with "
                    f"activity > 0 ({_n(len(positions), 'row')}): "
                    + ", ".join(f"specialty {a}, pod {b}, {c}" for a, b, c in values[:SHOW_ROWS])
                    + (" ..." if len(values) > SHOW_ROWS else ""),
                    f"add these prices to table 'tariff' ({Path(tariff.file).name if tariff.file else 'tariff'})",
                    "missing_price", values=values[:KEEP_VALUES]))
    return problems


def _engagement_problems(ctx: _Ctx, ctxs: Mapping[str, _Ctx], window: Window) -> list[Problem]:
    known = _reference_values(ctxs, "practices")
    if known is None or not ctx.has("practice_code"):
        return []
    listed = pd.Index(ctx.df["practice_code"].dropna().unique())
    missing = known[~known.isin(listed)]
    if not len(missing):
        return []
    return [Problem(ctx.file, ctx.table, "practice_code", [], _samples(missing.tolist()),
                    f"{_n(len(missing), 'practice')} in 'practices' {_have(len(missing))} no engagement row: "
                    + ", ".join(map(str, missing[:SHOW_ROWS])) + (" ..." if len(missing) > SHOW_ROWS else ""),
                    "add one row per practice; leave engaged_from empty for practices that never engaged",
                    n_rows=0, check="engagement_missing")]


def _commissioner_problems(ctx: _Ctx, ctxs: Mapping[str, _Ctx], window: Window) -> list[Problem]:
    """``commissioners``, when present, has a row for every practice (a practice of no commissioner would be left
    out of a national run silently)."""
    known = _reference_values(ctxs, "practices")
    if known is None or not ctx.has("practice_code"):
        return []
    missing = known[~known.isin(pd.Index(ctx.df["practice_code"].dropna().unique()))]
    if not len(missing):
        return []
    return [Problem(ctx.file, ctx.table, "practice_code", [], _samples(missing.tolist()),
                    f"{_n(len(missing), 'practice')} in 'practices' {_have(len(missing))} no commissioners row: "
                    + ", ".join(map(str, missing[:SHOW_ROWS])) + (" ..." if len(missing) > SHOW_ROWS else ""),
                    "add one row per practice with its commissioner_code and commissioner_name (the practice "
                    "reference's commissioner), or remove the practices that belong to no commissioner of the run",
                    n_rows=0, check="commissioner_missing")]


def _reference_rate_problems(ctx: _Ctx, ctxs: Mapping[str, _Ctx], window: Window) -> list[Problem]:
    if not ctx.has("measure", "specialty_code", "age_band", "sex"):
        return []
    problems: list[Problem] = []
    df = ctx.df
    positions, valid = _ae_mismatch(ctx, "measure")
    sc, su = ctx.factorize("specialty_code")
    meas = _lookup(ctx, "measure", MEASURES)
    if len(positions):
        values = _samples(zip(df["measure"].iloc[positions[:1000]], df["specialty_code"].iloc[positions[:1000]]))
        problems.append(ctx.problem(
            "measure, specialty_code", positions,
            f"{_n(len(positions), 'row')} break{'s' if len(positions) == 1 else ''} the rule 'specialty 180 exactly "
            "when measure is ae' (values are (measure, specialty_code))",
            "A&E rates have measure 'ae' and specialty 180; referrals and other points of delivery never use 180",
            "ae_specialty", values=values))
    band = _lookup(ctx, "age_band", AGE_BANDS)
    sex = _lookup(ctx, "sex", SEXES)
    ok = valid & (band >= 0) & (sex >= 0)
    if ok.any():
        n_as = len(AGE_BANDS) * len(SEXES)
        series = meas[ok].astype(np.int64) * (len(su) + 1) + sc[ok]
        uniq, inv = np.unique(series, return_inverse=True)
        cells = np.unique(inv * n_as + band[ok] * len(SEXES) + sex[ok])
        n_cells = np.bincount(cells // n_as, minlength=len(uniq))
        short = np.flatnonzero(n_cells < n_as)
        if len(short):
            pairs = [(MEASURES[int(uniq[i] // (len(su) + 1))], str(su[int(uniq[i] % (len(su) + 1))])) for i in short]
            bad = np.isin(inv, short)
            problems.append(ctx.problem(
                "age_band, sex", np.flatnonzero(ok)[bad],
                f"{_n(len(short), '(measure, specialty)')} {_have(len(short))} fewer than {n_as} age-sex rows: "
                + ", ".join(f"{m} {s_}" for m, s_ in pairs[:SHOW_ROWS]) + (" ..." if len(short) > SHOW_ROWS else ""),
                f"give a rate for all {n_as} age-sex cells (19 age bands x F/M) of each measure and specialty, "
                "0 where there are no events", "reference_rates_incomplete", values=pairs[:KEEP_VALUES]))
    return problems


_TABLE_RULES: dict[str, Callable[[_Ctx, Mapping[str, _Ctx], Window], list[Problem]]] = {
    "population": _population_problems,
    "activity": _activity_problems,  # activity and referrals may be sparse: no gap or coverage rule (module doc)
    "engagement": _engagement_problems,
    "reference_rates": _reference_rate_problems,
    "commissioners": _commissioner_problems,
}


def _validate(ctxs: dict[str, _Ctx], window: Window) -> list[Problem]:
    problems: list[Problem] = []
    for table in TABLES:  # element-wise (pandera) first: later checks skip invalid cells
        ctx = ctxs.get(table)
        if ctx is None:
            continue
        cols = [c for c in ctx.spec.column_names if c in ctx.df.columns]
        if ctx.check_dtype:  # frames from a caller; files had their header checked when read
            problems += _column_set_problems(ctx.file, table, ctx.spec, list(map(str, ctx.df.columns)))
        for c in cols:
            problems += _pandera_problems(ctx, c)
    for table in TABLES:
        ctx = ctxs.get(table)
        if ctx is None:
            continue
        problems += _key_problems(ctx)
        problems += _reference_problems(ctx, ctxs)
        problems += _window_problems(ctx, window)
        rule = _TABLE_RULES.get(table)
        if rule is not None:
            problems += rule(ctx, ctxs, window)
    return problems
