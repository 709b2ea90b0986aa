"""The file contract of the synthetic PCT (``docs/data_dictionary.md``): tables, their columns, keys and codes.

Every table is written with its columns in :data:`TABLE_COLUMNS` order and its rows sorted by
:data:`TABLE_KEYS` (codes as text; the age bands of population and reference_rates in :data:`AGE_BANDS`
order). The :data:`LARGE_TABLES` are Parquet or CSV, the others always CSV (:mod:`pbc_analysis.synth.write`).

References
----------
``docs/data_dictionary.md`` (the contract between a PCT's data and the toolkit).
"""

from __future__ import annotations

__all__ = ["AGE_BANDS", "LARGE_TABLES", "PODS", "SEXES", "SPEC_PODS", "TABLE_COLUMNS", "TABLE_KEYS"]

TABLE_COLUMNS: dict[str, list[str]] = {
    "practices": ["practice_code", "practice_name", "consortium", "imd_score", "single_handed"],
    "providers": ["provider_code", "provider_name", "has_ae"],
    "specialties": ["specialty_code", "specialty_name"],
    "population": ["practice_code", "month", "age_band", "sex", "registered"],
    "activity": ["practice_code", "provider_code", "specialty_code", "pod", "month", "activity", "cost"],
    "referrals": ["practice_code", "provider_code", "specialty_code", "month", "referrals"],
    "tariff": ["specialty_code", "pod", "financial_year", "price"],
    "engagement": ["practice_code", "engaged_from"],
    "high_cost_patients": ["patient_id", "practice_code", "financial_year", "cost"],
    "budgets": ["practice_code", "financial_year", "budget"],
    "provider_changes": ["provider_code", "specialty_code", "pod", "effective_month", "description"],
    "reference_rates": ["measure", "specialty_code", "age_band", "sex", "rate"],
}
TABLE_KEYS: dict[str, list[str]] = {
    "practices": ["practice_code"],
    "providers": ["provider_code"],
    "specialties": ["specialty_code"],
    "population": ["practice_code", "month", "age_band", "sex"],
    "activity": ["practice_code", "provider_code", "specialty_code", "pod", "month"],
    "referrals": ["practice_code", "provider_code", "specialty_code", "month"],
    "tariff": ["specialty_code", "pod", "financial_year"],
    "engagement": ["practice_code"],
    "high_cost_patients": ["patient_id", "financial_year"],
    "budgets": ["practice_code", "financial_year"],
    "provider_changes": ["provider_code", "specialty_code", "pod", "effective_month"],
    "reference_rates": ["measure", "specialty_code", "age_band", "sex"],
}
LARGE_TABLES = ("population", "activity", "referrals")

# Points of delivery in sort (lexicographic) order.
PODS = ("ae", "elective", "first_op", "followup_op", "non_elective")
# Order of the four per-specialty pods inside a specialty block (also lexicographic).
SPEC_PODS = ("elective", "first_op", "followup_op", "non_elective")

AGE_BANDS = tuple([f"{5 * i}-{5 * i + 4}" for i in range(18)] + ["90+"])
SEXES = ("F", "M")
