"""The registry of everything a run may publish: every column of every result table, and every figure of results.json.

:data:`TABLES` classifies every column of every result table by its kind (:data:`KINDS`: counts are
disclosed, modelled figures, money, rates and public figures are exempt, patient-level columns are never
published); :data:`JSON_RULES` classifies every numeric figure of ``results.json`` by its path. The bundle
(:mod:`pbc_analysis.publish.bundle`) refuses a table, a column or a number that is not registered here, so
a new output cannot slip out undisclosed. Add a table's columns here when a stage writes a new table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from pbc_analysis import data

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

# the ingest's event sources: their row counts are counts of events (registrations: rows of snapshot files, a tally)
_EVENT_SOURCES = frozenset({"outpatients", "admitted", "ae", "referrals", "referrals (derived)"})

#: Every result table a run writes, every column classified (see :data:`KINDS`).
TABLES: dict[str, TableSpec] = {
    # ---- the ingest stage of a run with extracts: (pbc_analysis.pipeline.extracts) ----------------
    "ingest_reconciliation": _t("source x outcome x reason of the event-level extracts ingested",
                                key=("source", "outcome", "reason"), money=("cost", "priced_cost"),
                                counts_where={"rows": ("source", _EVENT_SOURCES), "priced_rows": ("source", _EVENT_SOURCES),
                                              "merged_rows": ("source", _EVENT_SOURCES)}),
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
    "bm_practices": _t("practice (list size, age mix and deprivation: the similar practices' features)",
                       key=("practice_code", "practice_name", "consortium", "month"),
                       public=("list_size", "share_0_14", "share_65_plus", "imd_score")),
    "bm_similar": _t("practice x peer rank (similar practices)", key=("practice_code", "peer_rank", "peer_code"),
                     modelled=("distance",)),
    "bm_opportunity": _t("period x practice x measure (referrals at the similar practices' median and best quartile)",
                         key=("period", "practice_code", "measure"), count=("observed",), tally=("n_peers",),
                         modelled=("expected", "ratio", "peer_median_ratio", "peer_best_quartile_ratio",
                                   "at_peer_median", "at_peer_best_quartile", "opportunity_at_median",
                                   "opportunity_at_best_quartile")),
    "bm_practice_spc": _t("practice x month (SPC of every practice's standardised ratio, no direction)",
                          key=("practice_code", "month", "segment"), count=("observed",),
                          **{**_SPC, "modelled": ("expected", "ratio", *_SPC["modelled"])}),
    "bm_specialties": _t("specialty (names)", key=("specialty_code", "specialty_name")),
    "bm_providers": _t("provider (names)", key=("provider_code", "provider_name")),
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
                             "std_error_floor", "std_error_own_noise", "std_error_controls", "std_error_completion"),
                      tally=("n_clusters",)),
    "att_precision": _t("target x year", key=("target", "financial_year"),
                        money=("savings", "std_error", "std_error_floor", "std_error_own_noise", "std_error_controls"),
                        modelled=("relative_std_error", "relative_floor", "relative_own_noise", "relative_controls",
                                  "floor_half_width", "chance_within_tolerance_at_floor"), setting=("tolerance",)),
    "att_practice_savings": _t("practice x year", key=(*_PRACTICE, "financial_year", "cohort_month"),
                               count=("referrals", "referrals_not_estimable"),
                               modelled=("counterfactual_referrals", "referrals_avoided"),
                               money=("savings", "savings_*", "std_error", "ci_low", "ci_high", "std_error_completion")),
    "att_effects": _t("specialty x year", key=("specialty_code", "financial_year"), count=("referrals",),
                      modelled=("counterfactual_referrals", "rate_ratio", "referrals_avoided"), money=("savings",)),
    "att_completeness": _t("pod x latest month", key=("pod", "month"), count=("observed",),
                           modelled=("expected", "completeness", "std_error"), text=("error_basis",),
                           tally=("backtests",)),
    "att_completion": _t("level x unit x year x quantity (the completion error's part of each standard error, GBP)",
                         key=("level", "unit", "financial_year", "quantity"), money=("std_error",)),
    "att_cost_per_referral": _t("provider x specialty x pod x year (model's valuation)",
                                key=("provider_code", "specialty_code", "pod", "financial_year"),
                                modelled=("activity_per_referral",), money=("cost_per_unit", "cost_per_referral")),
    "att_disputes": _t("disputed provider change x item", key=("provider_code", "specialty_code", "pod",
                                                               "financial_year", "item"),
                       money=("amount", "ci_low", "ci_high"), text=("explanation",)),
    "att_sharing": _t("practice x year (savings sharing, GBP)", key=("practice_code", "practice_name", "financial_year"),
                      money=("budget", "spend", "underspend", "planned_saving", "savings_vs_plan",
                             "practice_action_savings", "savings_ci_low", "savings_ci_high", "attributed", "eligible",
                             "to_practice", "to_pct", "retained_by_pct"),
                      flag=("under_referrer_flag", "emergency_rise_flag", "reviewed", "recurrent"),
                      tally=("quarters_positive",), text=("settlement", "status", "reason")),
    "att_safety": _t("practice x year x measure (emergency admissions and A&E attendances against expected)",
                     key=("practice_code", "financial_year", "measure"), tally=("months",), text=("comparison",),
                     count=("observed", "base_observed"), flag=("rise",),
                     modelled=("list_ratio", "comparison_growth", "expected", "ratio", "ci_low", "ci_high", "p_rise")),
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
    "risk_net_budgets": _t("practice (the target year's budget on the run's basis, GBP)", key=("practice_code",),
                           text=("budget_source",),
                           money=("supplied_budget", "set_budget", "budget", "top_slice_contribution", "net_budget"),
                           withheld={"pool_charge": "per practice, the pool charge of 1 to 7 patients above the "
                                                    "threshold is the cost of one or a few patients"}),
    "risk_thresholds": _t("candidate risk-pool threshold", key=("threshold",),
                          modelled=("expected_patients", "probability_exhausted", "smallest_adequate_top_slice"),
                          money=("expected_charge", "pool", "recommended_pool")),
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
    ("evaluation.pretrend_level", "setting"), ("evaluation.pretrend_failed[].pretrend_p", "modelled"),
    ("evaluation.rtm_top_group_change", "modelled"),
    # attribution
    ("attribution.referrals_avoided", "modelled"), ("attribution.confidence", "setting"),
    ("attribution.data_lag.completeness.*", "modelled"), ("attribution.data_lag.lag_months", "setting"),
    ("attribution.practice_action_precision.*.std_error*", "money"),
    ("attribution.practice_action_precision.*.*", "modelled"),
    ("attribution.sharing.practice_share", "setting"), ("attribution.sharing.engaged_practices", "tally"),
    ("attribution.sharing.practices_paid", "tally"), ("attribution.sharing.non_recurrent", "tally"),
    ("attribution.sharing.below_minimum", "tally"), ("attribution.sharing.paid_with_interval_including_zero", "tally"),
    ("attribution.sharing.min_payment", "setting"),
    ("attribution.safety.level", "setting"), ("attribution.safety.practices_checked", "tally"),
    ("attribution.notional.savings.*", "money"), ("attribution.notional.share_of_savings", "modelled"),
    ("attribution.sharing.*", "money"), ("attribution.disputes[].**", "money"),
    ("attribution.change", "money"), ("attribution.spend", "money"), ("attribution.spend_base", "money"),
    ("attribution.practice_action_savings_by_year.*.*", "money"), ("attribution.*.estimate", "money"),
    ("attribution.*.ci_low", "money"), ("attribution.*.ci_high", "money"),
    # budgets and risk
    ("budgets.risk.expected_patients_above_threshold", "expected_count"),
    ("budgets.risk.n_sims", "setting"), ("budgets.risk.seed", "setting"), ("budgets.risk.max_probability", "setting"),
    ("budgets.risk.top_slice", "setting"), ("budgets.risk.*_gbp", "money"),
    ("budgets.risk.practices_without_supplied_budget", "tally"),
    ("budgets.risk.thresholds[].*_gbp", "money"), ("budgets.risk.thresholds[].*", "modelled"),
    ("budgets.risk.*", "modelled"),
    ("budgets.monitoring.practices.*", "tally"), ("budgets.monitoring.months_elapsed", "tally"),
    ("budgets.monitoring.interval_level", "setting"), ("budgets.monitoring.amber", "setting"),
    ("budgets.monitoring.red", "setting"), ("budgets.monitoring.*_gbp", "money"),
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
