"""The synthetic PCT's tables as data frames in the data dictionary's format (one function per group of tables).

Code columns of the large tables are categoricals (their categories in key order), so Parquet stores them
dictionary-encoded and a reader gets the same values; every other text column is a ``str`` array. Rows are
built in key order (:data:`pbc_analysis.synth.contract.TABLE_KEYS`), so no table is sorted after the fact
except the tariff.

Reference rates (the optional ``reference_rates`` table)
  Per 1,000 registered patients per year by measure, specialty, age band and sex: the rates of a
  practice of average deprivation and propensity at the start of the window (:func:`reference_rates`),
  standing in for national HES/MAR age-sex rates in indirect standardisation.

References
----------
``docs/data_dictionary.md`` (the file contract).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pbc_analysis.synth.activity import Layout
from pbc_analysis.synth.calibration import AE_RATE, AE_SPECIALTY, SpecialtyModel
from pbc_analysis.synth.contract import AGE_BANDS, PODS, SEXES, TABLE_KEYS
from pbc_analysis.synth.params import SynthParams
from pbc_analysis.synth.world import Engagement, Pairs, Practices, Providers, Window

__all__ = ["activity_table", "event_tables", "population_table", "reference_rates", "reference_tables",
           "referrals_table", "tariff_table"]


def _cat(codes: np.ndarray, categories: list[str] | tuple[str, ...]) -> pd.Categorical:
    return pd.Categorical.from_codes(codes, categories=pd.Index(list(categories), dtype="str"))


def _code_dtype(n: int) -> type:
    """The smallest integer type of the category codes of ``n`` categories."""
    return np.int16 if n < 2**15 else np.int32


def reference_tables(prac: Practices, prov: Providers, spec: SpecialtyModel) -> dict[str, pd.DataFrame]:
    """The practices, providers and specialties tables.

    Parameters
    ----------
    prac : Practices
    prov : Providers
    spec : SpecialtyModel

    Returns
    -------
    dict
        Table name -> data frame.
    """
    names = dict(zip(spec.codes, spec.names)) | {AE_SPECIALTY[0]: AE_SPECIALTY[1]}
    return {
        "practices": pd.DataFrame({
            "practice_code": pd.array(prac.codes.tolist(), dtype="str"),
            "practice_name": pd.array(prac.names.tolist(), dtype="str"),
            "consortium": pd.array(prac.consortium_names[prac.consortium].tolist(), dtype="str"),
            "imd_score": prac.imd, "single_handed": prac.single}),
        "providers": pd.DataFrame({
            "provider_code": pd.array(prov.codes.tolist(), dtype="str"),
            "provider_name": pd.array(prov.names.tolist(), dtype="str"), "has_ae": prov.has_ae}),
        "specialties": pd.DataFrame({
            "specialty_code": pd.array(spec.all_codes, dtype="str"),
            "specialty_name": pd.array([names[c] for c in spec.all_codes], dtype="str")}),
    }


def population_table(win: Window, prac: Practices, registered: np.ndarray) -> pd.DataFrame:
    """Registered patients by practice, month, age band and sex.

    Parameters
    ----------
    win : Window
    prac : Practices
    registered : numpy.ndarray
        (P, M, 38) counts.

    Returns
    -------
    pandas.DataFrame
    """
    P, M = prac.n, win.n_months
    return pd.DataFrame({
        "practice_code": _cat(np.repeat(np.arange(P, dtype=_code_dtype(P)), M * 38), prac.codes.tolist()),
        "month": _cat(np.tile(np.repeat(np.arange(M, dtype=np.int16), 38), P), win.month_labels),
        "age_band": _cat(np.tile(np.repeat(np.arange(19, dtype=np.int8), 2), P * M), AGE_BANDS),
        "sex": _cat(np.tile(np.arange(2, dtype=np.int8), P * M * 38 // 2), SEXES),
        "registered": registered.reshape(-1)})


def referrals_table(win: Window, prac: Practices, prov: Providers, pairs: Pairs, spec: SpecialtyModel,
                    ref: np.ndarray) -> pd.DataFrame:
    """GP referrals by practice, provider, specialty and month.

    Parameters
    ----------
    win : Window
    prac : Practices
    prov : Providers
    pairs : Pairs
    spec : SpecialtyModel
    ref : numpy.ndarray
        (npair, S, M) counts.

    Returns
    -------
    pandas.DataFrame
    """
    S, M, npair = spec.n, win.n_months, pairs.n
    return pd.DataFrame({
        "practice_code": _cat(np.repeat(pairs.practice.astype(_code_dtype(prac.n)), S * M), prac.codes.tolist()),
        "provider_code": _cat(np.repeat(pairs.provider.astype(_code_dtype(prov.n)), S * M), prov.codes.tolist()),
        "specialty_code": _cat(np.tile(np.repeat(spec.all_idx.astype(np.int8), M), npair), spec.all_codes),
        "month": _cat(np.tile(np.arange(M, dtype=np.int16), npair * S), win.month_labels),
        "referrals": ref.reshape(-1)})


def activity_table(win: Window, prac: Practices, prov: Providers, pairs: Pairs, lay: Layout, act: np.ndarray,
                   cost: np.ndarray, spec: SpecialtyModel) -> pd.DataFrame:
    """Hospital activity and cost by practice, provider, specialty, point of delivery and month.

    A&E rows only for providers with an A&E.

    Parameters
    ----------
    win : Window
    prac : Practices
    prov : Providers
    pairs : Pairs
    lay : Layout
    act, cost : numpy.ndarray
        (npair, NC, M).
    spec : SpecialtyModel

    Returns
    -------
    pandas.DataFrame
    """
    M, NC = win.n_months, lay.n
    keep_rows = np.ones((pairs.n, NC), bool)
    keep_rows[:, lay.ae_pos] = prov.has_ae[pairs.provider]
    sel = np.flatnonzero(keep_rows.ravel())
    sel_pair, sel_combo = sel // NC, sel % NC
    return pd.DataFrame({
        "practice_code": _cat(np.repeat(pairs.practice[sel_pair].astype(_code_dtype(prac.n)), M), prac.codes.tolist()),
        "provider_code": _cat(np.repeat(pairs.provider[sel_pair].astype(_code_dtype(prov.n)), M), prov.codes.tolist()),
        "specialty_code": _cat(np.repeat(lay.spec[sel_combo].astype(np.int8), M), spec.all_codes),
        "pod": _cat(np.repeat(lay.pod[sel_combo].astype(np.int8), M), PODS),
        "month": _cat(np.tile(np.arange(M, dtype=np.int16), sel.size), win.month_labels),
        "activity": act.reshape(pairs.n * NC, M)[sel].reshape(-1),
        "cost": cost.reshape(pairs.n * NC, M)[sel].reshape(-1)})


def tariff_table(lay: Layout, spec: SpecialtyModel, win: Window) -> pd.DataFrame:
    """Prices by specialty, point of delivery and financial year.

    Parameters
    ----------
    lay : Layout
    spec : SpecialtyModel
    win : Window

    Returns
    -------
    pandas.DataFrame
    """
    tar_s, tar_p, tar_f, tar_price = [], [], [], []
    for c in range(lay.n):
        tar_s += [spec.all_codes[lay.spec[c]]] * win.n_fy
        tar_p += [lay.podname[c]] * win.n_fy
        tar_f += win.fy_labels
        tar_price.append(lay.price_cf[c])
    tariff = pd.DataFrame({"specialty_code": pd.array(tar_s, dtype="str"), "pod": pd.array(tar_p, dtype="str"),
                           "financial_year": pd.array(tar_f, dtype="str"), "price": np.concatenate(tar_price)})
    return tariff.sort_values(TABLE_KEYS["tariff"], kind="stable", ignore_index=True)


def event_tables(p: SynthParams, win: Window, prac: Practices, prov: Providers, eng: Engagement,
                 pairs: Pairs) -> dict[str, pd.DataFrame]:
    """The engagement table (first engaged month, empty for never engaged) and the provider_changes table.

    Parameters
    ----------
    p : SynthParams
        Resolved.
    win : Window
    prac : Practices
    prov : Providers
    eng : Engagement
    pairs : Pairs

    Returns
    -------
    dict
        Table name -> data frame.
    """
    M, labels = win.n_months, win.month_labels
    eng_month = np.array([labels[o] if o < M else "" for o in eng.offsets[:-1]] + [""])[eng.cohort]
    return {
        "engagement": pd.DataFrame({
            "practice_code": pd.array(prac.codes.tolist(), dtype="str"),
            "engaged_from": pd.array(list(np.where(eng.engaged, eng_month, None)), dtype="str")}),
        "provider_changes": pd.DataFrame({
            "provider_code": pd.array([prov.codes.tolist()[pairs.cut]], dtype="str"),
            "specialty_code": pd.array(["all"], dtype="str"), "pod": pd.array(["followup_op"], dtype="str"),
            "effective_month": pd.array([labels[p.cut_offset()]], dtype="str"),
            "description": pd.array([f"Follow-up to first attendance ratio target: follow-ups cut by "
                                     f"{abs(p.provider_cut_size):.0%} in every specialty"], dtype="str")}),
    }


def reference_rates(spec: SpecialtyModel) -> pd.DataFrame:
    """National reference rates per 1,000 registered patients per year by measure, specialty, age band and sex.

    The rates of a practice of average deprivation and propensity (z = 0, u = 0) at the start of the
    window, averaged over the season: 12 x r_s x need_s(a) for referrals, times c_s (first
    outpatients), c_s f_s (follow-ups) and c_s x_s (elective admissions); 12 x n_s x need^NE_s(a) for
    non-elective admissions; 12 x 22 x need^AE(a) for A&E.

    Parameters
    ----------
    spec : SpecialtyModel

    Returns
    -------
    pandas.DataFrame
        measure, specialty_code, age_band, sex, rate (4 decimals), sorted with bands in age order.

    References
    ----------
    They play the part of national HES/MAR age-sex rates in indirect standardisation
    (``pbc_analysis.stages.benchmark``).
    """
    S, col, need, spec_codes = spec.n, spec.col, spec.need, spec.codes
    per_year = {
        "referrals": 12.0 * col["ref_rate"][None, :] * need[:, :S],
        "first_op": 12.0 * (col["ref_rate"] * col["conversion"])[None, :] * need[:, :S],
        "followup_op": 12.0 * (col["ref_rate"] * col["conversion"] * col["fu_ratio"])[None, :] * need[:, :S],
        "elective": 12.0 * (col["ref_rate"] * col["conversion"] * col["el_conv"])[None, :] * need[:, :S],
        "non_elective": 12.0 * col["ne_rate"][None, :] * need[:, S:2 * S],
    }
    frames = []
    bands = np.repeat(np.array(AGE_BANDS), 2)
    sexes = np.tile(np.array(SEXES), 19)
    for measure, r in per_year.items():  # r: (38, S)
        frames.append(pd.DataFrame({"measure": measure, "specialty_code": np.repeat(spec_codes, 38),
                                    "age_band": np.tile(bands, S), "sex": np.tile(sexes, S),
                                    "rate": r.T.ravel()}))
    frames.append(pd.DataFrame({"measure": "ae", "specialty_code": AE_SPECIALTY[0], "age_band": bands, "sex": sexes,
                                "rate": 12.0 * AE_RATE * need[:, 2 * S]}))
    out = pd.concat(frames, ignore_index=True)
    out["rate"] = out["rate"].round(4)
    band_order = {b: i for i, b in enumerate(AGE_BANDS)}
    out = out.assign(_b=out["age_band"].map(band_order)).sort_values(
        ["measure", "specialty_code", "_b", "sex"], kind="stable", ignore_index=True).drop(columns="_b")
    for c in ("measure", "specialty_code", "age_band", "sex"):
        out[c] = out[c].astype("str")
    return out
