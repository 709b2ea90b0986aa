"""The budget statement and the stage's results: tables, results.json headline, plain-language description.

See :mod:`pbc_analysis.stages.budgets` for the rules behind each number.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import pandas as pd

from pbc_analysis.core.labels import measure_label

if TYPE_CHECKING:
    from pbc_analysis.stages.budgets.stage import Result

__all__ = ["STATEMENT_COLUMNS", "budget_statement", "describe", "headline", "result_tables", "rounded"]

STATEMENT_COLUMNS = [
    "practice_code", "practice_name", "consortium", "financial_year", "list_month", "registered", "weighted_list",
    "age_sex_index", "need_index", "list_share", "target_share", "base_years", "historic_spend", "list_index",
    "historic_budget", "historic_at_envelope", "fair_share", "distance_from_target", "band_low", "band_high",
    "within_band_now", "step", "cap_binding", "budget", "budget_share", "change_pct", "distance_after_step",
    "years_to_band", "status", "explanation"]


def _fmt_money(x: pd.Series) -> pd.Series:
    return x.map("GBP {:,.0f}".format)


def _fmt_pct(x: pd.Series, signed: bool = True) -> pd.Series:
    return (100 * x).map(("{:+.1f}%" if signed else "{:.1f}%").format)


def budget_statement(practices: pd.DataFrame, hist: pd.DataFrame, shares: pd.DataFrame, path: pd.DataFrame,
                     settings: Mapping[str, Any]) -> pd.DataFrame:
    """One row per practice that explains its own budget (:data:`STATEMENT_COLUMNS`).

    Parameters
    ----------
    practices : DataFrame
        ``practice_code, practice_name, consortium``.
    hist : DataFrame
        Historic budgets (:func:`pbc_analysis.stages.budgets.need.historic_budgets`).
    shares : DataFrame
        Fair shares (:func:`pbc_analysis.stages.budgets.need.fair_shares`).
    path : DataFrame
        The glide path (:func:`pbc_analysis.stages.budgets.pace.glide_path`).
    settings : mapping
        ``envelope, band, base_years, pace_cap, pace_years``.

    Returns
    -------
    DataFrame
        List and weighted list, the age-sex and need indices, historic spend and budget, fair share,
        distance from target, this year's step, the budget and an ``explanation`` in plain words built from
        those numbers.

    References
    ----------
    Audit Commission (2007), paras 80-94: practices must be told how their budgets were set.
    """
    E = float(settings["envelope"])
    band = float(settings["band"])
    p0 = path[path["year"] == 0].set_index("practice_code")
    p1 = path[path["year"] == 1].set_index("practice_code")
    inb = path[path["year"] >= 1].pivot(index="practice_code", columns="year", values="within_band")
    first_in = np.where(inb.to_numpy().any(axis=1), inb.to_numpy().argmax(axis=1) + 1, np.nan)
    years_to_band = pd.Series(first_in, index=inb.index)
    years_to_band[p0["within_band"].reindex(inb.index).to_numpy(bool)] = 0
    s = (practices[["practice_code", "practice_name", "consortium"]].astype(str)
         .merge(hist, on="practice_code").merge(shares, on="practice_code").sort_values("practice_code"))
    codes = s["practice_code"]
    s["base_years"] = " and ".join(settings["base_years"])
    s["historic_at_envelope"] = p0["budget"].reindex(codes).to_numpy()
    s["fair_share"] = s["target_share"] * E
    s["distance_from_target"] = (s["historic_at_envelope"] - s["fair_share"]) / s["fair_share"]
    s["band_low"] = s["fair_share"] * (1 - band)
    s["band_high"] = s["fair_share"] * (1 + band)
    s["within_band_now"] = p0["within_band"].reindex(codes).to_numpy(bool)
    s["budget"] = p1["budget"].reindex(codes).to_numpy()
    s["step"] = np.round(s["budget"] - s["historic_at_envelope"], 2)
    s["cap_binding"] = p1["cap_binding"].reindex(codes).to_numpy(bool)
    s["budget_share"] = p1["share"].reindex(codes).to_numpy()
    s["change_pct"] = s["step"] / s["historic_at_envelope"]
    s["distance_after_step"] = p1["distance"].reindex(codes).to_numpy()
    s["years_to_band"] = years_to_band.reindex(codes).to_numpy()
    s["status"] = np.select([s["step"] >= 0.01, s["step"] <= -0.01], ["gains", "loses"], "unchanged")
    s["explanation"] = _explanation(s, E, band, settings)
    return s[STATEMENT_COLUMNS].reset_index(drop=True)


def _explanation(s: pd.DataFrame, E: float, band: float, settings: Mapping[str, Any]) -> pd.Series:
    """Each practice's budget in plain words, from the statement's numbers."""
    where = np.where(s["distance_from_target"] >= 0, "above", "below")
    inb, gains, loses = s["within_band_now"], s["status"] == "gains", s["status"] == "loses"
    move = np.select(
        [inb & gains, inb & loses, inb, gains, loses],
        ["You are within the allowed band, so pace of change does not aim to move you, but as a practice below "
         "target you receive part of what practices above their band give up",
         "You are within the allowed band, so pace of change does not aim to move you, but as a practice above "
         "target you fund part of the moves of practices below their band",
         "You are within the allowed band, so pace of change does not move you",
         "You are below your fair share, so your budget rises towards it",
         "You are above your fair share, so your budget falls towards it"], "Your budget is unchanged")
    cap_txt = np.where(s["cap_binding"], f" (the yearly cap of {100 * float(settings['pace_cap']):.0f}% limits the step)", "")
    reach = np.where(s["years_to_band"].isna(), f"You do not reach the band within the {settings['pace_years']}-year path.",
                     np.where(s["years_to_band"] == 0, "", "You reach the band in year " +
                              s["years_to_band"].fillna(0).astype(int).astype(str) + " of the path."))
    text = (
        "Your list of " + s["registered"].map("{:,.0f}".format) + " patients (" + s["list_month"] + ") counts as "
        + s["weighted_list"].map("{:,.0f}".format) + " once weighted for age and sex (age-sex index "
        + s["age_sex_index"].map("{:.3f}".format) + "); deprivation and other need factors give a need index of "
        + s["need_index"].map("{:.3f}".format) + ". Your fair share is " + _fmt_pct(s["target_share"], False)
        + " of the PCT's GBP " + f"{E:,.0f}" + ", i.e. " + _fmt_money(s["fair_share"]) + ". Your historic spend ("
        + s["base_years"] + " averaged, re-costed at " + s["financial_year"] + " tariff) is "
        + _fmt_money(s["historic_spend"]) + "; adjusted for list change (index " + s["list_index"].map("{:.3f}".format)
        + ") and scaled to the envelope it is " + _fmt_money(s["historic_at_envelope"]) + ", "
        + _fmt_pct(s["distance_from_target"].abs(), False) + " " + pd.Series(where, index=s.index)
        + " your fair share (allowed band " + f"+/-{100 * band:.0f}%" + "). " + pd.Series(move, index=s.index)
        + ": this year's step is " + s["step"].map("GBP {:+,.0f}".format) + pd.Series(cap_txt, index=s.index)
        + ", giving a budget of " + _fmt_money(s["budget"]) + ". " + pd.Series(reach, index=s.index))
    return text.str.strip()


def result_tables(res: Result) -> dict[str, pd.DataFrame]:
    """The run's budget tables (``bud_*``).

    Parameters
    ----------
    res : pbc_analysis.stages.budgets.Result

    Returns
    -------
    dict
        ``bud_statement`` (one row per practice), ``bud_historic``, ``bud_curves`` (age-sex cost curves),
        ``bud_need_model`` (coefficients), ``bud_model_fit``, ``bud_glide_path`` (practice x year),
        ``bud_winners_losers`` and ``bud_provided_comparison`` (against an existing budgets table for the
        target year; empty if there is none).

    References
    ----------
    docs/data_dictionary.md (result tables).
    """
    return {
        "bud_statement": res.statement,
        "bud_historic": res.historic,
        "bud_curves": res.curves,
        "bud_need_model": res.coefficients,
        "bud_model_fit": res.fit,
        "bud_glide_path": res.path,
        "bud_winners_losers": res.winners,
        "bud_provided_comparison": res.provided,
    }


def rounded(x: float | None, nd: int = 4) -> float | None:
    """``x`` rounded to ``nd`` decimals for results.json, None when missing or not finite.

    Parameters
    ----------
    x : float or None
    nd : int

    Returns
    -------
    float or None

    References
    ----------
    JSON (RFC 8259) has no NaN or infinity.
    """
    return None if x is None or not np.isfinite(x) else round(float(x), nd)


def headline(res: Result) -> dict:
    """Headline figures for ``results.json`` (section ``budgets``; the risk stage adds ``risk`` and ``monitoring``).

    Parameters
    ----------
    res : pbc_analysis.stages.budgets.Result

    Returns
    -------
    dict
        Settings, totals, the need model's coefficients and fit, distance from target, winners and losers,
        and the check against a provided budgets table.

    References
    ----------
    See :mod:`pbc_analysis.stages.budgets`.
    """
    st, s = res.settings, res.statement
    need = res.coefficients[res.coefficients["role"] != "intercept"]
    coefs = {f"{r.component}:{r.term}": {"estimate": rounded(r.estimate), "std_error": rounded(r.std_error),
                                           "rate_ratio": rounded(r.rate_ratio)} for r in need.itertuples()}
    fit_all = res.fit[res.fit["component"] == "all"].iloc[0]
    d = s["distance_from_target"]
    out = {
        "target_year": st["target_year"], "base_years": list(st["base_years"]), "list_month": st["list_month"],
        "envelope_gbp": round(float(st["envelope"]), 2), "historic_total_gbp": round(float(st["historic_total"]), 2),
        "budgets_total_gbp": round(float(s["budget"].sum()), 2),
        "formula": st["formula"], "components": st["components"], "curves": st["curves"],
        "list_index": st["list_index"], "recost": st["recost"],
        "pace": {"years": st["pace_years"], "cap": st["pace_cap"], "band": st["band"], "fund_from": st["fund_from"],
                 "envelope_growth": st["envelope_growth"]},
        "n_practices": int(len(s)),
        "need_model": coefs,
        "r_squared": rounded(fit_all["r_squared"]), "r_squared_need": rounded(fit_all["r_squared_need"]),
        "share_more_than_10pct_from_actual": rounded(fit_all["share_more_than_10pct_from_actual"]),
        # shown as percentages with one decimal: stored at that precision, so the text and the tables that format
        # the unrounded values (the budget statement) show the same figure (one rounding, not two)
        "distance_from_target": {"min": rounded(d.min(), 3), "median": rounded(d.median(), 3), "max": rounded(d.max(), 3),
                                 "share_outside_band": rounded(float((~s["within_band_now"]).mean()))},
        "winners": int((s["status"] == "gains").sum()), "losers": int((s["status"] == "loses").sum()),
        "unchanged": int((s["status"] == "unchanged").sum()),
        "largest_gain_pct": rounded(s["change_pct"].max(), 3), "largest_loss_pct": rounded(s["change_pct"].min(), 3),
        "cap_binding": int(s["cap_binding"].sum()),
        "within_band_after_path": int(res.path.loc[res.path["year"] == res.path["year"].max(), "within_band"].sum()),
    }
    if len(res.provided):
        rd = res.provided["relative_difference"]
        out["provided_budgets_check"] = {"n": int(len(rd)), "median_relative_difference": rounded(rd.median(), 5),
                                         "max_abs_relative_difference": rounded(rd.abs().max(), 5)}
        if "relative_difference_registered" in res.provided.columns:
            rr = res.provided["relative_difference_registered"]
            out["provided_budgets_check"].update({
                "median_relative_difference_registered_list": rounded(rr.median(), 5),
                "max_abs_relative_difference_registered_list": rounded(rr.abs().max(), 5)})
    return out


def describe(head: Mapping[str, Any]) -> str:
    """A plain-language reading of :func:`headline` (every number from the results).

    Parameters
    ----------
    head : mapping
        The ``budgets`` section of results.json.

    Returns
    -------
    str
        Markdown.

    References
    ----------
    See :mod:`pbc_analysis.stages.budgets`.
    """
    p = head["pace"]
    dep = {k.split(":")[0]: v for k, v in head["need_model"].items() if k.endswith(":deprivation")}
    lines = [f"**{head['target_year']} indicative budgets** for {head['n_practices']} practices, from "
             f"{' and '.join(head['base_years'])} activity re-costed at {head['target_year']} tariff. Envelope "
             f"GBP {head['envelope_gbp']:,.0f}" + (" (the sum of the historic budgets)." if abs(
                 head['envelope_gbp'] - head['historic_total_gbp']) < 0.01 else
                 f" (historic budgets total GBP {head['historic_total_gbp']:,.0f}); budgets add up to "
                 f"GBP {head['budgets_total_gbp']:,.0f}.")]
    if dep:
        lines.append("Need model (" + head["formula"] + "): one SD of IMD score goes with " + ", ".join(
            f"{v['rate_ratio']:.3f} x cost per weighted patient for {measure_label(k)}" for k, v in dep.items())
            + f". At practice level it explains {head['r_squared']:.0%} of the variation in cost per patient "
            f"({head['r_squared_need']:.0%} from need alone); "
            f"{head['share_more_than_10pct_from_actual']:.0%} of practices are more than 10% from their actual cost.")
    d = head["distance_from_target"]
    lines.append(f"Distance from target runs from {d['min']:+.1%} to {d['max']:+.1%}; {d['share_outside_band']:.0%} of "
                 f"practices are outside the +/-{p['band']:.0%} band. Over {p['years']} years with a yearly cap of "
                 f"{p['cap']:.0%}: {head['winners']} practices gain and {head['losers']} lose this year (largest gain "
                 f"{head['largest_gain_pct']:+.1%}, largest loss {head['largest_loss_pct']:+.1%}); the cap binds for "
                 f"{head['cap_binding']}; {head['within_band_after_path']} of {head['n_practices']} are within the band "
                 "at the end of the path.")
    if "provided_budgets_check" in head:
        c = head["provided_budgets_check"]
        txt = (f"Against the budgets table already held for {head['target_year']}: median difference "
               f"{c['median_relative_difference']:+.2%}, largest {c['max_abs_relative_difference']:.2%}")
        if "median_relative_difference_registered_list" in c and head["list_index"] != "registered":
            txt += (f" ({c['median_relative_difference_registered_list']:+.2%} and "
                    f"{c['max_abs_relative_difference_registered_list']:.2%} with a registered-list index)")
        lines.append(txt + ".")
    return "\n\n".join(lines)
