"""The published bundle: the only part of a run directory that may be sent with a report.

A run directory (``reports/<run_id>/``) is the analyst's **private working area**: ``tables/*.csv``,
``results/*.json``, ``results.json``, ``notebooks/*.ipynb``, ``provenance.json``, ``manifest.json`` and
``run.log`` hold unrounded counts and must never be sent. :func:`build_bundle` makes
``<run_dir>/published/``, the one thing that may be::

    published/
      README.txt        what is here, the disclosure rule, what was withheld and why
      CONTENTS.json     every file with its sha256, every table's columns with their kind
      report.html       the report (its tables already apply the rule)
      results.json      headline figures, counts disclosed (JSON_RULES)
      tables/<name>.csv every result table that may be sent, counts disclosed (TABLES)
      figures/*.png     the report's figures

The rule (``disclosure``; NHS Digital HES/ECDS disclosure control, see ../shared/DOMAIN.md "Publishing
rules"): counts of people or events 0 -> 0, 1 to 7 -> ``*``, otherwise rounded to the nearest 5;
simple ratios recomputed from the rounded counts (``*`` when an input is suppressed); modelled outputs,
money, rates, intervals and already-public figures are exempt.

**Registries, not guesses.** :data:`TABLES` classifies every column of every result table (kinds in
:data:`KINDS`); a table, or a column, that is not in it stops :func:`build_bundle` with the list of all of
them, so a new table cannot slip out undisclosed. Tables with a patient-level column, or whose figures would
give back a small count (:data:`TABLES` ``withhold``), are never copied. :data:`JSON_RULES` classifies every
numeric figure of ``results.json`` by its path (e.g. ``data_quality.activity_by_financial_year.*``); an
unclassified number is an error too. Registered list sizes are ``public``: NHS Digital publishes every
practice's list ("Patients Registered at a GP Practice"), and ``disclosure.disclose_table``'s
``public_columns`` treat them so.

The bundle is byte-stable: the same run directory gives the same bytes (cells of exempt columns are
copied as text, JSON is canonical, nothing records a time).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pandas as pd

from pbc_analysis import data
from pbc_analysis.methods import disclosure
from pbc_analysis.publish import results

__all__ = [
    "BUNDLE",
    "JSON_RULES",
    "KINDS",
    "PATIENT_LEVEL_INPUTS",
    "TABLES",
    "Column",
    "PublishError",
    "TableSpec",
    "build_bundle",
    "disclose_input_rows",
    "disclose_results",
    "disclose_table_text",
]

BUNDLE = "published"

KINDS: dict[str, str] = {
    "key": "identifier or label of an aggregate row (code, name, period, category): published as it is",
    "count": "count of people or events: 0 stays 0, 1 to 7 become *, others are rounded to the nearest 5",
    "ratio": "simple ratio of counts: recomputed from the disclosed counts (* when an input is suppressed)",
    "modelled": "modelled estimate, expected count, standardised ratio, interval, limit or test: exempt",
    "money": "amount in GBP: exempt",
    "rate": "observed rate over totals that are not in the table, so it cannot be recomputed here: exempt",
    "public": "already public (a practice's registered list, published monthly by NHS Digital): exempt",
    "tally": "count of practices, months, cells, terms or file rows, not of people or events: exempt",
    "setting": "a run setting echoed back (threshold, level, seed): exempt",
    "flag": "yes/no: exempt",
    "text": "free text (status, reason, explanation): published as it is",
    "withheld": "not published: the column would give back an unrounded count",
    "patient": "patient-level identifier: the whole table stays private",
}


class PublishError(ValueError):
    """The run directory cannot be published as it is (unregistered tables or columns, bad counts)."""


@dataclass(frozen=True)
class Column:
    """How one result-table column is published.

    Parameters
    ----------
    kind : str
        One of :data:`KINDS`.
    ratio : tuple of (str, str, float), optional
        For ``kind="ratio"``: ``(numerator, denominator, multiplier)``, both columns of the same table,
        ``count`` or ``public``.
    rows_where : tuple of (str, frozenset of str), optional
        For ``kind="count"``: the column is a count of people only in rows whose ``rows_where[0]`` is in
        ``rows_where[1]`` (elsewhere a ``tally``), e.g. the row counts of patient-level input files.
    note : str
        Why (for ``withheld``) or any other remark; printed in ``CONTENTS.json``.
    """

    kind: str
    ratio: tuple[str, str, float] | None = None
    rows_where: tuple[str, frozenset[str]] | None = None
    note: str = ""


@dataclass(frozen=True)
class TableSpec:
    """Every column of one result table (names or ``fnmatch`` patterns for parameter-dependent names).

    Parameters
    ----------
    description : str
        What one row is.
    columns : dict of str to Column
        Exact column names first, then patterns such as ``"*_observed"`` (first match wins).
    withhold : str
        Non-empty: the table is never published, for this reason.
    """

    description: str
    columns: dict[str, Column] = field(default_factory=dict)
    withhold: str = ""

    def column(self, name: str) -> Column | None:
        """The rule for one column of the table.

        Parameters
        ----------
        name : str
            The column's name in the result table.

        Returns
        -------
        Column or None
            The rule registered under ``name`` exactly; else that of the first pattern of
            :attr:`columns` (in order; ``*``, ``?`` or ``[`` make a key a pattern) that ``name`` matches,
            case-sensitively (``fnmatch.fnmatchcase``); None when the column is not classified
            (publishing then refuses the table).
        """
        if name in self.columns:
            return self.columns[name]
        return next((c for pat, c in self.columns.items() if any(ch in pat for ch in "*?[") and fnmatchcase(name, pat)),
                    None)

    @property
    def withheld_reason(self) -> str:
        """Why the table stays private ('' when it is published)."""
        if self.withhold:
            return self.withhold
        ids = [n for n, c in self.columns.items() if c.kind == "patient"]
        return f"patient-level identifier column(s) {ids}" if ids else ""


def _patient_level_inputs() -> frozenset[str]:
    """Input tables with a patient-level identifier column (data dictionary kind ``id``)."""
    return frozenset(n for n, s in data.TABLES.items() if any(s.meta(c).get("kind") == "id" for c in s.column_names))


PATIENT_LEVEL_INPUTS: frozenset[str] = _patient_level_inputs()


def _t(description: str, *, withhold: str = "", ratio: Mapping[str, tuple[str, str, float]] | None = None,
       withheld: Mapping[str, str] | None = None, counts_where: Mapping[str, tuple[str, frozenset[str]]] | None = None,
       **kinds: Any) -> TableSpec:
    cols: dict[str, Column] = {}

    def add(name: str, col: Column) -> None:
        if name in cols:
            raise ValueError(f"publish registry: column {name!r} of {description!r} classified twice")
        cols[name] = col

    for kind, names in kinds.items():
        if kind not in KINDS or kind in ("ratio", "withheld"):
            raise ValueError(f"publish registry: unknown kind {kind!r}; use one of {sorted(KINDS)}")
        for n in names:
            add(n, Column(kind))
    for n, spec in (ratio or {}).items():
        add(n, Column("ratio", ratio=spec))
    for n, why in (withheld or {}).items():
        add(n, Column("withheld", note=why))
    for n, where in (counts_where or {}).items():
        add(n, Column("count", rows_where=where))
    return TableSpec(description, cols, withhold)


_PRACTICE = ("practice_code", "consortium")
_SPC: dict[str, Any] = {  # Making Data Count chart columns (bm_spc, risk_spc)
    "modelled": ("moving_range", "average_moving_range", "mean", "sigma", "lpl", "upl", "lower_2sigma",
                 "upper_2sigma", "relative_to_mean", "target"),
    "flag": ("outside_limits", "close_to_limits", "run", "trend", "two_in_three", "special_cause_flag"),
    "text": ("special_cause_type", "point_type", "special_cause", "variation_icon", "assurance_icon")}
_MONITOR: dict[str, Any] = {  # risk_monitoring, risk_monitoring_consortium, risk_status
    "key": ("practice_code", "consortium", "financial_year", "month", "k"),
    "money": ("actual", "ytd", "forecast", "forecast_centre", "lower", "upper", "budget", "profile_budget_ytd"),
    "modelled": ("profile_ytd", "ytd_variance", "variance", "probability_overspend"),
    "flag": ("spc_concern", "spc_concern_to_date"), "text": ("status",)}
_DID: dict[str, Any] = {  # ev_did_effects, ev_placebo
    "key": ("specialty_code", "specialty_name"),
    "modelled": ("att", "att_std_error", "att_ci_low", "att_ci_high", "treated_rate", "counterfactual_rate",
                 "relative", "relative_ci_low", "relative_ci_high", "pretrend_p", "pretrend_p_chi2"),
    "tally": ("engaged_practices", "comparison_practices")}
_RATIO_COLS = ("ratio", "lower_*", "upper_*", "limit_*", "z", "pct_percentile", "pct_decile", "consortium_percentile",
               "consortium_decile", "change", "trend_per_period", "standardised_rate_per_1000")
_POOL_CHARGE = "cost - pool_charge = patients x threshold would give back the unrounded number of patients"

#: Every result table a run writes, every column classified (see :data:`KINDS`).
TABLES: dict[str, TableSpec] = {
    # ---- 01 data quality -------------------------------------------------------------------------
    "dq_table_summary": _t("one row per input file read", key=("table", "file", "first_period", "last_period"),
                           tally=("columns", "practices"),
                           counts_where={"rows": ("table", PATIENT_LEVEL_INPUTS)}),
    "dq_monthly_totals": _t("point of delivery x month", key=("pod", "month"), count=("activity",), money=("cost",)),
    "dq_completeness": _t("point of delivery x latest month", key=("pod", "month"), count=("observed",),
                          modelled=("expected", "completeness", "ci_low", "ci_high"), flag=("incomplete",)),
    "dq_latest_complete_month": _t("point of delivery", key=("pod", "latest_complete_month"),
                                   tally=("incomplete_trailing_months",)),
    "dq_practice_consistency": _t("practice", key=("practice_code",), public=("list_first_month", "list_last_month"),
                                  modelled=("annual_list_growth", "max_monthly_list_change", "activity_rate_robust_z"),
                                  rate=("activity_per_1000_per_year",), text=("flag",)),
    "dq_totals_provider_pod_year": _t("provider x pod x year", key=("provider_code", "pod", "financial_year"),
                                      count=("activity",), money=("cost",)),
    "dq_totals_specialty_pod_year": _t("specialty x pod x year", key=("specialty_code", "pod", "financial_year"),
                                       count=("activity",), money=("cost",)),
    # ---- 02 benchmarking -------------------------------------------------------------------------
    "bm_ratios": _t("period x practice x measure x specialty",
                    key=("period", *_PRACTICE, "measure", "specialty_code"), count=("observed",),
                    modelled=("expected", *_RATIO_COLS), public=("person_years",), money=("cost",),
                    text=("position",), ratio={"rate_per_1000": ("observed", "person_years", 1000.0)}),
    "bm_specialty_ratios": _t("period x practice x measure x specialty",
                              key=("period", "practice_code", "measure", "specialty_code"), count=("observed",),
                              modelled=("expected", *_RATIO_COLS), text=("position",)),
    "bm_flags": _t("flagged practice x measure x specialty", key=("period", *_PRACTICE, "measure", "specialty_code"),
                   count=("observed",), modelled=("expected", "ratio"),
                   flag=("high_referrer", "possible_under_referrer", "persistent_outlier"), text=("flag",)),
    "bm_scorecard": _t("practice", key=_PRACTICE, public=("person_years",), money=("cost", "cost_per_head"),
                       count=("*_observed",), modelled=("*_ratio", "*_lower", "*_upper", "pct_percentile"),
                       text=("flag", "flagged_specialties")),
    "bm_dispersion": _t("period x measure x specialty", key=("period", "measure", "specialty_code"),
                        modelled=("target", "phi", "tau2", "dispersion_statistic", "dispersion_p"),
                        tally=("n_units", "n_used", "dispersion_df", "n_outliers", "n_no_expected"),
                        text=("overdispersion_requested", "overdispersion_used", "overdispersion_reason",
                              "trim_method"), flag=("consistency_corrected",)),
    "bm_decile_fan": _t("period x measure x percentile", key=("period", "measure", "specialty_code", "percentile"),
                        modelled=("value",)),
    "bm_deprivation": _t("period x measure x specialty", key=("period", "measure", "specialty_code"),
                         modelled=("deprivation_log_rr", "rate_ratio_per_sd")),
    "bm_spc": _t("practice x month (SPC of the standardised ratio)", key=("practice_code", "month", "segment"),
                 **{**_SPC, "modelled": ("ratio", *_SPC["modelled"])}),
    # ---- 03 referral evaluation ------------------------------------------------------------------
    "ev_its": _t("ITS model", key=("model",),
                 modelled=("level_change", "level_change_ci_low", "level_change_ci_high", "slope_change",
                           "slope_change_ci_low", "slope_change_ci_high", "dispersion", "ljung_box_p", "avoided",
                           "avoided_ci_low", "avoided_ci_high")),
    "ev_its_coefficients": _t("ITS model x term", key=("model", "term"),
                              modelled=("estimate", "std_error", "ratio", "ci_low", "ci_high", "p_value")),
    "ev_did_effects": _t("specialty (DiD effect)", **_DID),
    "ev_placebo": _t("specialty (placebo DiD)", **_DID),
    "ev_event_study": _t("specialty x event time", key=("specialty_code", "event_time"),
                         modelled=("estimate", "std_error", "ci_low", "ci_high")),
    "ev_attgt_all": _t("cohort x period (group-time ATT)", key=("cohort", "time", "post"),
                       modelled=("att", "std_error", "ci_low", "ci_high", "cband_low", "cband_high"),
                       tally=("n_treated", "n_control")),
    "ev_avoided": _t("financial year (modelled referrals avoided)", key=("financial_year",),
                     modelled=("avoided", "std_error", "ci_low", "ci_high"), tally=("cells",)),
    "ev_estimators": _t("estimator", key=("estimator", "effect_scale"),
                        modelled=("effect", "avoided", "ci_low", "ci_high")),
    "ev_bacon": _t("Bacon comparison type", key=("type",), modelled=("weight", "avg_est")),
    "ev_rtm": _t("regression-to-the-mean group", key=("group",), tally=("practices",),
                 modelled=("baseline_ratio", "follow_up_ratio", "change")),
    "ev_provider_check": _t("provider change x series",
                            key=("provider_code", "change_month", "pod", "specialty_code", "series"),
                            modelled=("level_change", "ci_low", "ci_high", "p_value"), tally=("months",)),
    # ---- 04 savings attribution ------------------------------------------------------------------
    "att_ledger": _t("level x unit x year (counterfactual ledger, GBP)",
                     key=("level", "unit", "financial_year", "base_year"), flag=("engaged",),
                     money=("spend_base", "spend", "change", "population", "need", "tariff", "provider_change",
                            "practice_action", "unexplained", "practice_action_savings", "referral_rate",
                            "emergency_rate", "local_variation", "conversion", "follow_up", "hrg_mix", "*_ci_low",
                            "*_ci_high")),
    "att_waterfall": _t("year x line (GBP)", key=("financial_year", "base_year", "line", "label"),
                        money=("estimate", "ci_low", "ci_high")),
    "att_factors": _t("method x year (GBP decomposition)", key=("method", "financial_year"),
                      money=("spend_base", "spend", "change", "list", "need", "referral_rate", "emergency_rate",
                             "conversion", "follow_up", "tariff", "hrg_mix", "local_variation", "population",
                             "provider_change", "practice_action", "unexplained")),
    "att_savings": _t("target x pod x year", key=("target", "level", "unit", "pod", "financial_year", "inference"),
                      count=("referrals",), modelled=("counterfactual_referrals", "referrals_avoided"),
                      money=("savings", "std_error_model", "std_error_cluster", "std_error", "ci_low", "ci_high",
                             "std_error_floor", "std_error_own_noise", "std_error_controls"),
                      tally=("n_clusters",)),
    "att_precision": _t("target x year", key=("target", "financial_year"),
                        money=("savings", "std_error", "std_error_floor", "std_error_own_noise", "std_error_controls"),
                        modelled=("relative_std_error", "relative_floor", "relative_own_noise", "relative_controls",
                                  "floor_half_width", "chance_within_tolerance_at_floor"), setting=("tolerance",)),
    "att_practice_savings": _t("practice x year", key=(*_PRACTICE, "financial_year", "cohort_month"),
                               count=("referrals", "referrals_not_estimable"),
                               modelled=("counterfactual_referrals", "referrals_avoided"),
                               money=("savings", "savings_*", "std_error", "ci_low", "ci_high")),
    "att_effects": _t("specialty x year", key=("specialty_code", "financial_year"), count=("referrals",),
                      modelled=("counterfactual_referrals", "rate_ratio", "referrals_avoided"), money=("savings",)),
    "att_completeness": _t("pod x latest month", key=("pod", "month"), count=("observed",),
                           modelled=("expected", "completeness")),
    "att_cost_per_referral": _t("provider x specialty x pod x year (model's valuation)",
                                key=("provider_code", "specialty_code", "pod", "financial_year"),
                                modelled=("activity_per_referral",), money=("cost_per_unit", "cost_per_referral")),
    "att_disputes": _t("disputed provider change x item", key=("provider_code", "specialty_code", "pod",
                                                               "financial_year", "item"),
                       money=("amount", "ci_low", "ci_high"), text=("explanation",)),
    "att_sharing": _t("practice x year (savings sharing, GBP)", key=("practice_code", "financial_year"),
                      money=("budget", "spend", "underspend", "planned_saving", "savings_vs_plan",
                             "practice_action_savings", "savings_ci_low", "savings_ci_high", "attributed", "eligible",
                             "to_practice", "to_pct", "retained_by_pct"),
                      flag=("under_referrer_flag", "reviewed", "recurrent"), tally=("quarters_positive",),
                      text=("status", "reason")),
    "att_sharing_reasons": _t("practice x year x item", key=("practice_code", "financial_year", "item"),
                              money=("amount",), text=("reason",)),
    # ---- 05 budgets and risk ---------------------------------------------------------------------
    "bud_statement": _t("practice (budget statement)",
                        key=("practice_code", "practice_name", "consortium", "financial_year", "list_month",
                             "base_years"), public=("registered",),
                        modelled=("weighted_list", "age_sex_index", "need_index", "list_share", "target_share",
                                  "list_index", "distance_from_target", "budget_share", "change_pct",
                                  "distance_after_step"),
                        money=("historic_spend", "historic_budget", "historic_at_envelope", "fair_share", "band_low",
                               "band_high", "step", "budget"),
                        flag=("within_band_now", "cap_binding"), tally=("years_to_band",),
                        text=("status", "explanation")),
    "bud_historic": _t("practice", key=("practice_code", "financial_year", "list_month"),
                       money=("historic_spend", "historic_budget", "historic_budget_registered"),
                       modelled=("list_base", "list_target", "list_index", "list_index_registered")),
    "bud_curves": _t("component x age band x sex", key=("component", "age_band", "sex"), money=("cost_per_head",),
                     modelled=("weight",)),
    "bud_need_model": _t("component x term", key=("component", "term", "role"), tally=("n_practices",),
                         modelled=("estimate", "std_error", "ci_low", "ci_high", "rate_ratio", "dispersion")),
    "bud_model_fit": _t("component", key=("component",), tally=("n_practices",), money=("cost",),
                        modelled=("r_squared", "r_squared_need", "share_more_than_10pct_from_actual")),
    "bud_glide_path": _t("practice x year", key=("practice_code", "year", "financial_year"),
                         money=("envelope", "budget"), flag=("cap_binding", "within_band"),
                         modelled=("share", "target_share", "distance", "step_share")),
    "bud_winners_losers": _t("practice", key=_PRACTICE, text=("status",),
                             money=("historic_at_envelope", "budget_first_year", "budget_last_year",
                                    "change_first_year", "change_over_path"), modelled=("change_first_year_pct",)),
    "bud_provided_comparison": _t("practice", key=("practice_code", "financial_year"),
                                  money=("historic_budget", "provided_budget", "difference",
                                         "historic_budget_registered"),
                                  modelled=("relative_difference", "relative_difference_registered")),
    "risk_pool_charges": _t("practice x year: patients above the risk-pool threshold",
                            withhold=("per practice and year, a count of 1 to 7 patients makes cost the cost of one "
                                      "or a few patients, and practice_charge = patients x threshold (as does "
                                      "cost - pool_charge) gives back the unrounded count"),
                            key=("practice_code", "financial_year"), count=("patients",),
                            money=("cost", "pool_charge", "practice_charge")),
    "risk_pool_years": _t("financial year (PCT risk pool)", key=("financial_year", "role"), count=("patients",),
                          money=("pool_charge", "activity_cost_at_target"), modelled=("pool_share_of_cost",),
                          withheld={"cost": _POOL_CHARGE}),
    "risk_adequacy": _t("top-slice", setting=("top_slice",), money=("pool",), modelled=("probability_exhausted",)),
    "risk_net_budgets": _t("practice", key=("practice_code",),
                           money=("budget", "top_slice_contribution", "net_budget")),
    "risk_completeness": _t("latest month", key=("month", "lag", "source"), modelled=("factor", "ci_low", "ci_high")),
    "risk_profile": _t("month of the year", key=("period",), modelled=("share", "cumulative")),
    "risk_monitoring": _t("practice x month (in-year monitoring, GBP)", **_MONITOR),
    "risk_monitoring_consortium": _t("consortium x month (in-year monitoring, GBP)", **_MONITOR),
    "risk_status": _t("practice at the reporting month (GBP)", **_MONITOR),
    "risk_backtest_coverage": _t("year x months elapsed (forecast back-test)", key=("financial_year", "k"),
                                 tally=("n", "covered"), modelled=("coverage",), setting=("level",)),
    "risk_spc": _t("practice or consortium x month (SPC of the run rate, GBP)",
                   key=("code", "month", "segment", "unit"), **{**_SPC, "modelled": ("run_rate", *_SPC["modelled"])}),
}

#: Every numeric figure of ``results.json``, by path: keys joined by ``.``, a list's items as ``name[]``;
#: ``*`` matches one key, ``**`` any number. First match wins. ``expected_count`` is an expected number of
#: people shown in the report: rounded to a whole number, then disclosed like a count.
JSON_RULES: tuple[tuple[str, str], ...] = (
    # data quality
    ("data_quality.activity_by_financial_year.*", "count"),
    ("data_quality.activity_rows", "tally"),
    ("data_quality.cost_by_financial_year_gbp.*", "money"),
    ("data_quality.incomplete_trailing_months.*", "tally"),
    ("data_quality.window.months", "tally"),
    ("data_quality.practices", "tally"), ("data_quality.consortia", "tally"), ("data_quality.providers", "tally"),
    ("data_quality.specialties", "tally"), ("data_quality.engaged_practices", "tally"),
    ("data_quality.practices_flagged", "tally"),
    # benchmarking
    ("benchmarking.flags_by_measure.*.*", "tally"), ("benchmarking.n_practices", "tally"),
    ("benchmarking.overdispersion.*", "modelled"), ("benchmarking.deprivation_rate_ratio_per_sd_median", "modelled"),
    # evaluation
    ("evaluation.provider_changes[].months", "tally"), ("evaluation.provider_changes[].*", "modelled"),
    ("evaluation.period_months", "setting"), ("evaluation.placebo_shift_months", "setting"),
    ("evaluation.full_effect_from_periods", "setting"), ("evaluation.confidence", "setting"),
    ("evaluation.specialties_evaluated", "tally"),
    ("evaluation.*_avoided.*", "modelled"), ("evaluation.referrals_avoided_by_year.*.*", "modelled"),
    ("evaluation.att_rate_per_1000.*", "modelled"), ("evaluation.placebo_relative.*", "modelled"),
    ("evaluation.relative_effect_full.*", "modelled"), ("evaluation.pretrend_p", "modelled"),
    ("evaluation.rtm_top_group_change", "modelled"),
    # attribution
    ("attribution.referrals_avoided", "modelled"), ("attribution.confidence", "setting"),
    ("attribution.data_lag.completeness.*", "modelled"), ("attribution.data_lag.lag_months", "setting"),
    ("attribution.practice_action_precision.*.std_error*", "money"),
    ("attribution.practice_action_precision.*.*", "modelled"),
    ("attribution.sharing.practice_share", "setting"), ("attribution.sharing.engaged_practices", "tally"),
    ("attribution.sharing.practices_paid", "tally"), ("attribution.sharing.non_recurrent", "tally"),
    ("attribution.sharing.*", "money"), ("attribution.disputes[].**", "money"),
    ("attribution.change", "money"), ("attribution.spend", "money"), ("attribution.spend_base", "money"),
    ("attribution.practice_action_savings_by_year.*.*", "money"), ("attribution.*.estimate", "money"),
    ("attribution.*.ci_low", "money"), ("attribution.*.ci_high", "money"),
    # budgets and risk
    ("budgets.risk.expected_patients_above_threshold", "expected_count"),
    ("budgets.risk.n_sims", "setting"), ("budgets.risk.seed", "setting"), ("budgets.risk.max_probability", "setting"),
    ("budgets.risk.top_slice", "setting"), ("budgets.risk.*_gbp", "money"), ("budgets.risk.*", "modelled"),
    ("budgets.monitoring.practices.*", "tally"), ("budgets.monitoring.months_elapsed", "tally"),
    ("budgets.monitoring.interval_level", "setting"), ("budgets.monitoring.*_gbp", "money"),
    ("budgets.monitoring.**", "modelled"),
    ("budgets.pace.years", "setting"), ("budgets.pace.*", "setting"),
    ("budgets.provided_budgets_check.n", "tally"), ("budgets.provided_budgets_check.*", "modelled"),
    ("budgets.need_model.*.*", "modelled"), ("budgets.distance_from_target.*", "modelled"),
    ("budgets.*_gbp", "money"),
    ("budgets.cap_binding", "tally"), ("budgets.losers", "tally"), ("budgets.winners", "tally"),
    ("budgets.unchanged", "tally"), ("budgets.within_band_after_path", "tally"), ("budgets.n_practices", "tally"),
    ("budgets.largest_gain_pct", "modelled"), ("budgets.largest_loss_pct", "modelled"),
    ("budgets.r_squared", "modelled"), ("budgets.r_squared_need", "modelled"),
    ("budgets.share_more_than_10pct_from_actual", "modelled"),
    # input validation (the runner's section; its row counts are already disclosed, disclosing again is a no-op)
    ("validation.tables[].rows", "count"), ("validation.accepted_exceptions[].rows", "count"),
    ("validation.settings.**", "setting"),
)

_JSON_KINDS = frozenset(KINDS) | {"expected_count"}


# --------------------------------------------------------------------------------------------------
# disclosing cells (text in, text out: exempt cells are never re-formatted)
# --------------------------------------------------------------------------------------------------
def _count_cell(cell: str) -> int | str | None:
    """A CSV cell of a count column as a non-negative int, ``"*"`` or ``""``; None if it is not a count
    (the rule of ``disclosure._as_count``: a non-negative whole number; only the text is parsed here)."""
    s = cell.strip()
    if s in ("", disclosure.SUPPRESSED):
        return s
    try:
        value: int | float = int(s) if s.isdigit() else float(s)  # int(): exact beyond 2**53
    except ValueError:
        return None
    return disclosure._as_count(value)


def _disclose_cells(cells: list[str], what: str) -> list[str]:
    parsed = [_count_cell(c) for c in cells]
    bad = [(i, c) for i, (c, p) in enumerate(zip(cells, parsed)) if p is None]
    if bad:
        shown = ", ".join(f"row {i + 1} {c!r}" for i, c in bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10
                                                                          else "")
        raise PublishError(f"{what}: a count column holds values that are not non-negative whole numbers ({shown}); "
                           f"fix the table, or classify the column correctly in pbc_analysis/publish/bundle.py TABLES")
    nums = [p for p in parsed if isinstance(p, int)]
    done = iter(disclosure.disclose_counts(nums).tolist())
    return [str(next(done)) if isinstance(p, int) else str(p) for p in parsed]


def _ratio_input(cell: str) -> object:
    """A text cell as an input of ``disclosure._ratio``: ``"*"`` kept, blank or non-finite as missing."""
    s = cell.strip()
    if s in ("", disclosure.SUPPRESSED):
        return s or None
    try:
        f = float(s)
    except ValueError:
        return s  # disclosure._ratio refuses it, naming the value
    return f if math.isfinite(f) else None


def _ratio_cell(num: str, den: str, mult: float) -> str:
    """``num / den * mult`` by ``disclosure._ratio`` (the HTML tables' rule) as text: ``"*"``, ``""`` (blank,
    non-finite or zero denominator) or :data:`results.FLOAT_FORMAT`; ValueError for a non-number."""
    value = disclosure._ratio(_ratio_input(num), _ratio_input(den), mult, None)
    if isinstance(value, str):
        return value
    return "" if value is pd.NA else results.FLOAT_FORMAT % value


def disclose_table_text(name: str, df: pd.DataFrame, spec: TableSpec | None = None) -> pd.DataFrame:
    """Apply the publishing rule to one result table read as text; return the published copy.

    Parameters
    ----------
    name : str
        The table's name (a key of :data:`TABLES`, used for the rule and in error messages).
    df : pandas.DataFrame
        The table with every cell as text (``pd.read_csv(..., dtype=str, keep_default_na=False)``).
    spec : TableSpec, optional
        The table's rules; default ``TABLES[name]``.

    Returns
    -------
    pandas.DataFrame
        Text cells: ``count`` columns disclosed (0, ``*`` or a multiple of 5 from 10), ``ratio`` columns
        recomputed from them, ``withheld`` columns dropped, every other cell unchanged. Disclosing a
        disclosed table again gives the same table.

    Raises
    ------
    PublishError
        Naming every unregistered column at once, or the rows of a count that is not a whole number.

    References
    ----------
    NHS Digital, disclosure control methodology for HES and ECDS (2018); ../shared/DOMAIN.md.
    """
    spec = spec or TABLES.get(name)
    if spec is None:
        raise PublishError(f"table {name!r} is not in pbc_analysis/publish/bundle.py TABLES; classify each of its columns")
    found = {c: spec.column(c) for c in df.columns}
    missing = [c for c, r in found.items() if r is None]
    rules = {c: r for c, r in found.items() if r is not None}
    if missing:
        raise PublishError(f"table {name!r}: column(s) {missing} are not classified in pbc_analysis/publish/bundle.py "
                           f"TABLES[{name!r}]; add each with its kind ({', '.join(KINDS)})")
    out = df.copy()
    for col, rule in rules.items():
        if rule.kind != "count":
            continue
        rows = slice(None) if rule.rows_where is None else df[rule.rows_where[0]].isin(rule.rows_where[1]).to_numpy()
        cells = df[col].to_numpy(dtype=object)[rows].tolist()
        disclosed = _disclose_cells(cells, f"table {name!r}, column {col!r}")
        values = out[col].to_numpy(dtype=object).copy()
        values[rows] = disclosed
        out[col] = values
    for col, rule in rules.items():
        if rule.kind == "ratio":
            assert rule.ratio is not None, "a ratio column names its inputs"
            num, den, mult = rule.ratio
            kinds = {c: (found_col.kind if (found_col := spec.column(c)) else None) for c in (num, den)}
            if kinds[num] != "count" or kinds[den] not in ("count", "public") or num not in df or den not in df:
                raise PublishError(f"table {name!r}, ratio column {col!r}: inputs {num!r} ({kinds[num]}) and {den!r} "
                                   f"({kinds[den]}) must be a count and a count or public column of the table")
            try:
                out[col] = [_ratio_cell(n, d, mult) for n, d in zip(out[num], out[den])]
            except ValueError:  # the count was checked above: a denominator is not a number
                bad = [f"row {i + 1} {d!r}" for i, d in enumerate(out[den]) if _ratio_input(d) not in (None, "*")
                       and isinstance(_ratio_input(d), str)]
                raise PublishError(f"table {name!r}, ratio column {col!r}: denominator {den!r} is not a number at "
                                   f"{', '.join(bad[:10])}; fix the table, or classify {den!r} correctly in "
                                   "pbc_analysis/publish/bundle.py TABLES") from None
    return out.drop(columns=[c for c, r in rules.items() if r.kind == "withheld"])


def disclose_input_rows(summary: pd.DataFrame) -> pd.DataFrame:
    """The input-file summary (``quality.table_summary``) with patient-level files' row counts disclosed.

    Parameters
    ----------
    summary : pandas.DataFrame
        One row per input file with ``table`` and ``rows``.

    Returns
    -------
    pandas.DataFrame
        A copy whose ``rows`` of tables in :data:`PATIENT_LEVEL_INPUTS` (one row per patient and year)
        follow the rule (0, ``*`` or rounded to 5); other files' rows are file rows, not people, and stay.

    References
    ----------
    NHS Digital, disclosure control methodology for HES and ECDS (2018).
    """
    out = summary.copy()
    mask = out["table"].isin(PATIENT_LEVEL_INPUTS).to_numpy()
    values = out["rows"].astype(object).to_numpy().copy()
    if mask.any():
        values[mask] = disclosure.disclose_counts(pd.Series(values[mask], dtype=object)).tolist()
    out["rows"] = values
    return out


# --------------------------------------------------------------------------------------------------
# results.json
# --------------------------------------------------------------------------------------------------
def _match(path: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    if not pattern:
        return not path
    if pattern[0] == "**":
        return any(_match(path[i:], pattern[1:]) for i in range(len(path) + 1))
    return bool(path) and fnmatchcase(path[0], pattern[0]) and _match(path[1:], pattern[1:])


def _json_kind(path: tuple[str, ...], rules: tuple[tuple[str, str], ...]) -> str | None:
    return next((kind for pat, kind in rules if _match(path, tuple(pat.split(".")))), None)


def _walk(obj: Any, path: tuple[str, ...], rules: tuple[tuple[str, str], ...], problems: list[str]) -> Any:
    if isinstance(obj, Mapping):
        return {k: _walk(v, (*path, str(k)), rules, problems) for k, v in obj.items()}
    if isinstance(obj, list):
        item = (*path[:-1], path[-1] + "[]") if path else ("[]",)
        return [_walk(v, item, rules, problems) for v in obj]
    is_number = isinstance(obj, (int, float)) and not isinstance(obj, bool)
    kind = _json_kind(path, rules) if is_number or obj == disclosure.SUPPRESSED else None
    where = ".".join(path)
    if is_number and kind is None:
        problems.append(f"{where} = {obj!r}: not classified in pbc_analysis/publish/bundle.py JSON_RULES")
    elif kind in ("count", "expected_count") and obj != disclosure.SUPPRESSED:
        n = obj if kind == "count" else math.floor(obj + 0.5)
        if not (isinstance(n, int) or float(n).is_integer()) or n < 0:
            problems.append(f"{where} = {obj!r}: a count must be a non-negative whole number")
            return obj
        return disclosure.disclose_counts([int(n)]).iloc[0]
    return obj


def disclose_results(res: Mapping[str, Any], rules: tuple[tuple[str, str], ...] = JSON_RULES) -> dict[str, Any]:
    """The published copy of ``results.json``: every figure classified ``count`` disclosed.

    Parameters
    ----------
    res : mapping
        The merged headline figures (``results.json``).
    rules : tuple of (pattern, kind)
        Path rules, default :data:`JSON_RULES` (kinds: :data:`KINDS` plus ``expected_count``).

    Returns
    -------
    dict
        The same structure; counts are ``0``, ``"*"`` or multiples of 5 from 10, other values unchanged.

    Raises
    ------
    PublishError
        Listing every numeric figure no rule classifies, and every count that is not a whole number.

    References
    ----------
    NHS Digital, disclosure control methodology for HES and ECDS (2018).
    """
    bad_kinds = sorted({k for _, k in rules} - _JSON_KINDS)
    if bad_kinds:
        raise PublishError(f"JSON_RULES: unknown kind(s) {bad_kinds}; use one of {sorted(_JSON_KINDS)}")
    problems: list[str] = []
    out = _walk(results.to_jsonable(res), (), rules, problems)
    if problems:
        raise PublishError("results.json cannot be published; classify or fix these figures (path rules in "
                           "pbc_analysis/publish/bundle.py JSON_RULES):\n  " + "\n  ".join(problems))
    return out


# --------------------------------------------------------------------------------------------------
# the bundle
# --------------------------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_text_table(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)


def _check_registered(tables: list[Path]) -> list[str]:
    """Every problem that stops publication, all at once: unregistered tables and columns."""
    problems = []
    for path in tables:
        spec = TABLES.get(path.stem)
        if spec is None:
            problems.append(f"tables/{path.name}: table {path.stem!r} is not in pbc_analysis/publish/bundle.py TABLES; add "
                            f"it with every column classified ({', '.join(KINDS)}), or withhold it with a reason")
            continue
        header = list(pd.read_csv(path, nrows=0).columns)
        missing = [c for c in header if spec.column(c) is None]
        if missing:
            problems.append(f"tables/{path.name}: column(s) {missing} are not classified in "
                            f"pbc_analysis/publish/bundle.py TABLES[{path.stem!r}]; add each with its kind")
    return problems


def _readme(run_id: str, contents: dict[str, Any]) -> str:
    tables = contents["tables"]
    withheld = contents["withheld_tables"]
    lines = [
        f"Published bundle of run {run_id}",
        "",
        "This directory is the only part of the run that may be sent with the report. Everything else in the",
        "run directory (tables/, results/, results.json, notebooks/, provenance.json, manifest.json, run.log) is",
        "the analyst's private working area: it holds unrounded counts and is never to be sent.",
        "",
        "Disclosure rule (NHS Digital HES/ECDS disclosure control):",
        "  " + disclosure.disclosure_footnote(),
        "  In the tables: columns of kind 'count' follow the rule; 'ratio' columns are recomputed from the",
        "  rounded counts ('*' when an input is suppressed); modelled figures, money, rates, intervals and",
        "  already-public registered lists are exempt. CONTENTS.json gives the kind of every column.",
        "",
        "Contents:",
        "  README.txt      this file",
        "  CONTENTS.json   every file with its sha256; every table's columns and their kind",
    ]
    if "report.html" in contents["files"]:
        lines.append("  report.html     the report (self-contained; its tables apply the same rule)")
    lines += ["  results.json    headline figures, counts disclosed",
              f"  tables/         {len(tables)} result tables, counts disclosed",
              f"  figures/        {sum(1 for f in contents['files'] if f.startswith('figures/'))} figures of the report",
              "", "Withheld (kept in the private working area only):"]
    for name, why in sorted(withheld.items()):
        lines.append(f"  tables/{name}.csv: {why}")
    for name, cols in sorted(contents["withheld_columns"].items()):
        for col, why in sorted(cols.items()):
            lines.append(f"  column {col} of tables/{name}.csv: {why}")
    if not withheld and not contents["withheld_columns"]:
        lines.append("  nothing")
    return "\n".join(lines) + "\n"


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?|[-+]?(inf|nan)", re.IGNORECASE)


def neutralise_formulas(df: pd.DataFrame) -> pd.DataFrame:
    """Text cells that a spreadsheet would run as a formula, prefixed with ``'`` (numbers untouched).

    A practice named ``=HYPERLINK(...)`` or ``@SUM(...)`` in an input file would otherwise become a live
    formula when a published CSV is opened in Excel or LibreOffice ("CSV injection").

    Parameters
    ----------
    df : pandas.DataFrame
        A table read as text.

    Returns
    -------
    pandas.DataFrame
        The same table, with every cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
        return and is not a number written as ``'`` followed by the cell.

    References
    ----------
    OWASP, "CSV Injection" (https://owasp.org/www-community/attacks/CSV_Injection).
    """
    def safe(cell: Any) -> Any:
        if isinstance(cell, str) and cell.startswith(_FORMULA_START) and not _NUMBER.fullmatch(cell):
            return "'" + cell
        return cell

    return df.apply(lambda col: col.map(safe)) if len(df) else df


def _write_tables(run_dir: Path, stage: Path, tables: list[Path], contents: dict[str, Any]) -> None:
    (stage / results.TABLES).mkdir(parents=True)
    for path in tables:
        spec = TABLES[path.stem]
        if spec.withheld_reason:
            contents["withheld_tables"][path.stem] = spec.withheld_reason
            continue
        df = _read_text_table(path)
        out = neutralise_formulas(disclose_table_text(path.stem, df, spec))
        target = stage / results.TABLES / path.name
        out.to_csv(target, index=False, lineterminator="\n")
        kinds = {c: spec.column(c).kind for c in df.columns}  # type: ignore[union-attr]
        notes = {c: spec.column(c).note for c in df.columns if spec.column(c).note}  # type: ignore[union-attr]
        if notes:
            contents["withheld_columns"][path.stem] = notes
        contents["tables"][path.stem] = {"description": spec.description, "rows": len(df), "columns": kinds}


def build_bundle(run_dir: str | Path) -> Path:
    """Create ``<run_dir>/published/``: the report, results and tables that may be sent, counts disclosed.

    Parameters
    ----------
    run_dir : str or Path
        A finished run directory (``tables/``, ``results.json``; ``report.html`` and ``figures/`` when
        rendered).

    Returns
    -------
    Path
        The bundle directory. It is rebuilt from scratch (an older bundle is replaced only once the new one
        is complete) and is byte-identical for the same run directory.

    Raises
    ------
    PublishError
        Before anything is written: every result table or column not in :data:`TABLES`, every figure of
        ``results.json`` not in :data:`JSON_RULES`, a missing ``tables/`` or ``results.json``.

    References
    ----------
    NHS Digital, disclosure control methodology for HES and ECDS (2018); ../shared/DOMAIN.md,
    "Publishing rules".
    """
    run_dir = Path(run_dir).resolve()
    res_path = run_dir / "results.json"
    tables = sorted((run_dir / results.TABLES).glob("*.csv"))
    missing = [p for p in (run_dir / results.TABLES, res_path) if not p.exists()]
    if missing:
        raise PublishError(f"run directory {run_dir} is not a finished run: {[p.name for p in missing]} missing; "
                           f"run `pbc run` to completion first")
    problems = _check_registered(tables)
    try:
        published_results = disclose_results(json.loads(res_path.read_text(encoding="utf-8")))
    except PublishError as err:
        problems.append(str(err))
    if problems:
        raise PublishError(f"cannot publish {run_dir.name}: nothing was written.\n" + "\n".join(problems))

    stage = run_dir / f".{BUNDLE}.tmp"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir()
    try:
        contents: dict[str, Any] = {"run_id": run_dir.name, "files": {}, "tables": {}, "withheld_tables": {},
                                    "withheld_columns": {}}
        _write_tables(run_dir, stage, tables, contents)
        (stage / "results.json").write_text(results.dumps(published_results), encoding="utf-8")
        if (run_dir / "report.html").exists():
            shutil.copyfile(run_dir / "report.html", stage / "report.html")
        figures = sorted((run_dir / results.FIGURES).glob("*.png"))
        if figures:
            (stage / results.FIGURES).mkdir()
        for fig in figures:
            shutil.copyfile(fig, stage / results.FIGURES / fig.name)
        contents["files"] = {p.relative_to(stage).as_posix(): "" for p in stage.rglob("*") if p.is_file()}
        (stage / "README.txt").write_text(_readme(run_dir.name, contents), encoding="utf-8")
        files = sorted(p for p in stage.rglob("*") if p.is_file())
        contents["files"] = {p.relative_to(stage).as_posix(): _sha256(p) for p in files}
        contents["disclosure"] = {"suppress_max": disclosure.SUPPRESS_MAX, "round_to": disclosure.ROUND_TO,
                                  "suppressed": disclosure.SUPPRESSED, "rule": disclosure.disclosure_footnote(),
                                  "kinds": KINDS}
        contents["private"] = ("everything in the run directory outside published/ is the private working area "
                               "and is never to be sent")
        (stage / "CONTENTS.json").write_text(results.dumps(contents), encoding="utf-8")
        target = run_dir / BUNDLE
        if target.exists():
            shutil.rmtree(target)
        stage.rename(target)
    finally:
        if stage.exists():
            shutil.rmtree(stage)
    return target
