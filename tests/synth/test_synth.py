"""Tests of pbc_analysis.synth: file contract, reproducibility and the planted effects."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pbc_analysis.core.paths import PROJECT_ROOT, SAMPLE_DIR
from pbc_analysis.synth import (
    LARGE_TABLES,
    LMDI_FACTORS,
    TABLE_COLUMNS,
    TABLE_KEYS,
    SynthParams,
    flags,
    generate,
    lmdi_decompose,
    params_from_flags,
    pipeline_warnings,
    write_synthetic_pct,
)
from pbc_analysis.synth.options import parse_flag
from pbc_analysis.synth.params import default_cohort_offsets, first_full_year_end

SMALL = dict(n_practices=12, n_months=36)
SAMPLE_ARGS = dict(seed=20070401, n_practices=60, n_months=60, start_month="2003-04", fmt="parquet")
CODE_COLS = {"practice_code", "provider_code", "specialty_code", "patient_id"}


def sha256_dir(d: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(d).iterdir()) if p.is_file()}


def as_text(df: pd.DataFrame) -> pd.DataFrame:
    """Categorical code columns as plain text (what a CSV reader with dtype=str gives)."""
    out = df.copy()
    for c in out.columns:
        if isinstance(out[c].dtype, pd.CategoricalDtype):
            out[c] = out[c].astype(str)
    return out


@pytest.fixture(scope="module")
def small():
    return generate(SynthParams(seed=11, **SMALL))


@pytest.fixture(scope="module")
def sample():
    """The sample's parameters, in memory."""
    return generate(SynthParams(seed=20070401, n_practices=60, n_months=60, start_month="2003-04"))


def dictionary_columns() -> dict[str, list[str]]:
    """Column lists parsed from docs/data_dictionary.md (the file contract)."""
    text = (PROJECT_ROOT / "docs" / "data_dictionary.md").read_text()
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"^### `(\w+)`", line)
        if m:
            current = m.group(1)
            out[current] = []
            continue
        m = re.match(r"^\| `(\w+)` \|", line)
        if current and m:
            out[current].append(m.group(1))
    return out


# ---------------------------------------------------------------------------------------------
# reproducibility
# ---------------------------------------------------------------------------------------------
def test_byte_identical_for_same_seed_and_different_for_another(tmp_path):
    a = write_synthetic_pct(tmp_path / "a", seed=5, progress=False, **SMALL)
    b = write_synthetic_pct(tmp_path / "b", seed=5, progress=False, **SMALL)
    write_synthetic_pct(tmp_path / "c", seed=6, progress=False, **SMALL)
    ha, hb, hc = sha256_dir(tmp_path / "a"), sha256_dir(tmp_path / "b"), sha256_dir(tmp_path / "c")
    assert set(ha) == {p.name for p in a.values()} == set(hc)
    assert "ground_truth.json" in ha
    assert ha == hb
    # specialties and tariff are fixed calibration tables; everything drawn must change
    for name in ("practices.csv", "activity.parquet", "referrals.parquet", "population.parquet",
                 "engagement.csv", "high_cost_patients.csv", "budgets.csv", "ground_truth.json"):
        assert ha[name] != hc[name], name
    assert set(b) == set(TABLE_COLUMNS) | {"ground_truth"}


def test_csv_and_parquet_agree(tmp_path):
    write_synthetic_pct(tmp_path / "pq", seed=3, fmt="parquet", progress=False, **SMALL)
    write_synthetic_pct(tmp_path / "csv", seed=3, fmt="csv", progress=False, **SMALL)
    write_synthetic_pct(tmp_path / "gz", seed=3, fmt="csv.gz", progress=False, **SMALL)
    for name in LARGE_TABLES:
        a = as_text(pd.read_parquet(tmp_path / "pq" / f"{name}.parquet"))
        b = pd.read_csv(tmp_path / "csv" / f"{name}.csv", dtype={c: str for c in CODE_COLS})
        g = pd.read_csv(tmp_path / "gz" / f"{name}.csv.gz", dtype={c: str for c in CODE_COLS})
        for col in a.columns:
            assert (a[col].astype(str).to_numpy() == b[col].astype(str).to_numpy()).all(), (name, col)
            assert (g[col].astype(str).to_numpy() == b[col].astype(str).to_numpy()).all(), (name, col)
        if name == "activity":  # money in pence in both formats
            assert np.array_equal(a["cost"].to_numpy(), b["cost"].to_numpy())
    small_csv = (tmp_path / "csv" / "practices.csv").read_text()
    assert small_csv.splitlines()[0] == ",".join(TABLE_COLUMNS["practices"])
    assert re.search(r",(true|false)\n", small_csv) and "True" not in small_csv
    eng = (tmp_path / "csv" / "engagement.csv").read_text().splitlines()
    assert any(line.endswith(",") for line in eng[1:])  # never engaged: empty field


def test_sample_on_disk_regenerates_byte_identical(tmp_path):
    paths = write_synthetic_pct(tmp_path / "sample", progress=False, **SAMPLE_ARGS)
    fresh = sha256_dir(tmp_path / "sample")
    names = sorted(p.name for p in paths.values())
    missing = [n for n in names if not (SAMPLE_DIR / n).is_file()]
    assert not missing, f"data/sample lacks {missing}: regenerate it with make sample"
    committed = {n: hashlib.sha256((SAMPLE_DIR / n).read_bytes()).hexdigest() for n in names}
    assert committed == fresh, "data/sample differs from the generator's output: regenerate it with make sample"
    assert sum((SAMPLE_DIR / n).stat().st_size for n in names) < 5_000_000


# ---------------------------------------------------------------------------------------------
# the file contract
# ---------------------------------------------------------------------------------------------
def test_columns_match_data_dictionary(small):
    # a single PCT has no commissioners table (only pbc synth --national writes it: tests/synth/test_synth_national.py)
    contract = {k: v for k, v in dictionary_columns().items() if k != "commissioners"}
    assert set(contract) == set(TABLE_COLUMNS) == set(small.tables)
    for name, cols in contract.items():
        assert list(small.tables[name].columns) == cols == TABLE_COLUMNS[name], name


def test_keys_unique_and_sorted(small):
    for name, key in TABLE_KEYS.items():
        df = as_text(small.tables[name])
        assert not df.duplicated(key).any(), name
        if name in ("population", "reference_rates"):  # age bands sort in age order (documented)
            continue
        srt = df.sort_values(key, kind="stable", ignore_index=True)
        assert df[key].reset_index(drop=True).equals(srt[key]), name


def test_value_rules(small):
    t = {k: as_text(v) for k, v in small.tables.items()}
    M = SMALL["n_months"]
    assert t["practices"].practice_code.str.fullmatch(r"[A-Z][0-9]{5}").all()
    assert t["practices"].imd_score.between(0, 100).all()
    assert t["practices"].single_handed.dtype == bool
    assert t["providers"].provider_code.str.fullmatch(r"[A-Z0-9]{3,5}").all()
    assert t["providers"].has_ae.any()
    assert t["specialties"].specialty_code.str.fullmatch(r"[0-9]{3}").all()
    pop = t["population"]
    assert len(pop) == 12 * M * 38 and (pop.registered >= 0).all()
    assert (pop.groupby(["practice_code", "month"]).registered.sum() > 0).all()
    act = t["activity"]
    assert ((act.specialty_code == "180") == (act.pod == "ae")).all()
    assert (act.activity >= 0).all() and (act.cost >= 0).all()
    assert (act.loc[act.activity == 0, "cost"] == 0).all()
    # every series is a full grid: each (practice, provider, specialty, pod) has all months
    n = act.groupby(["practice_code", "provider_code", "specialty_code", "pod"]).month.nunique()
    assert (n == M).all()
    assert act.groupby("practice_code").month.nunique().eq(M).all()
    ae_prov = set(t["providers"].loc[t["providers"].has_ae, "provider_code"])
    assert set(act.loc[act.pod == "ae", "provider_code"]) <= ae_prov
    ref = t["referrals"]
    assert (ref.specialty_code != "180").all()
    assert (ref.groupby(["practice_code", "provider_code", "specialty_code"]).month.nunique() == M).all()
    # referral pairs are exactly the activity pairs; up to 3 providers per practice
    pr = ref[["practice_code", "provider_code"]].drop_duplicates()
    pa_ = act[["practice_code", "provider_code"]].drop_duplicates()
    assert len(pr) == len(pa_) and pr.groupby("practice_code").size().max() <= 3
    # every priced unit has a tariff row
    fy = small.truth["window"]["financial_years"]
    tar = t["tariff"].set_index(["specialty_code", "pod", "financial_year"])
    assert (tar.price > 0).all() and len(tar) == 49 * len(fy)
    eng = t["engagement"]
    assert len(eng) == 12 and set(eng.practice_code) == set(t["practices"].practice_code)
    hc = t["high_cost_patients"]
    assert (hc.cost > 10000).all() and set(hc.financial_year) <= set(fy)
    assert set(t["budgets"].financial_year) <= set(fy) and (t["budgets"].budget >= 0).all()
    pc = t["provider_changes"]
    assert len(pc) == 1 and pc.pod.iloc[0] == "followup_op" and pc.specialty_code.iloc[0] == "all"
    for df in t.values():  # money in pence
        for c in ("cost", "price", "budget"):
            if c in df:
                assert np.allclose(df[c], df[c].round(2), rtol=0, atol=1e-9)


def test_truth_is_json_and_records_parameters(small):
    text = json.dumps(small.truth, sort_keys=True, allow_nan=False)
    truth = json.loads(text)
    params = SynthParams.from_dict(truth["generator"]["params"])
    assert params == SynthParams(seed=11, **SMALL)
    for key in ("engagement", "under_referrers", "provider_change", "tariff", "seasonality", "deprivation",
                "completeness", "seed", "practice_year", "pct_year", "lmdi"):
        assert key in truth, key
    rec = truth["practice_year"]
    assert len(rec) == 12 * len(truth["window"]["financial_years"])
    assert [(r["practice_code"], r["financial_year"]) for r in rec] == sorted(
        (r["practice_code"], r["financial_year"]) for r in rec)
    for r in rec:
        assert r["savings_practice_action"] == pytest.approx(r["cf_no_practice_action"] - r["expected_spend"], abs=0.011)
        assert r["savings_practice_action"] >= 0 and r["savings_provider_change"] >= 0


# ---------------------------------------------------------------------------------------------
# planted structure and effects
# ---------------------------------------------------------------------------------------------
def test_engagement_cohorts_and_never_engaged(sample):
    eng = sample.tables["engagement"]
    starts = eng.engaged_from.dropna()
    assert sorted(starts.unique()) == ["2005-04", "2005-10", "2006-04"]
    never = eng.engaged_from.isna().mean()
    assert 0.25 <= never <= 0.35
    truth = sample.truth["engagement"]
    assert [c["start_month"] for c in truth["cohorts"]] == ["2005-04", "2005-10", "2006-04"]
    assert sorted(truth["never_engaged"]) == sorted(eng.loc[eng.engaged_from.isna(), "practice_code"])
    for c in truth["cohorts"]:
        assert set(eng.loc[eng.engaged_from == c["start_month"], "practice_code"]) == set(c["practices"])
    # scaled offsets for a shorter window
    small_truth = generate(SynthParams(seed=1, **SMALL)).truth
    assert [c["offset"] for c in small_truth["engagement"]["cohorts"]] == [14, 18, 22]


def test_planted_engagement_effect_recoverable(sample):
    ref = as_text(sample.tables["referrals"])
    eng = sample.tables["engagement"].set_index("practice_code").engaged_from
    ref["engaged"] = ref.practice_code.map(eng).notna()
    ref["period"] = np.where(ref.month < "2005-04", "pre", np.where(ref.month >= "2006-10", "post", "mid"))
    effects = sample.truth["engagement"]["effects_by_specialty"]
    big = [s for s, e in effects.items() if e >= 0.12]
    assert sorted(big) == ["110", "330", "410"]
    sub = ref[ref.specialty_code.isin(big) & (ref.period != "mid")]
    tab = sub.groupby(["engaged", "period"]).referrals.sum()
    ratio = (tab[(True, "post")] / tab[(True, "pre")]) / (tab[(False, "post")] / tab[(False, "pre")])
    expected = 1 - np.mean([effects[s] for s in big])
    assert ratio < 1
    assert ratio == pytest.approx(expected, abs=0.05)
    # the same crude check on all specialties is smaller but still a reduction
    tab_all = ref[ref.period != "mid"].groupby(["engaged", "period"]).referrals.sum()
    ratio_all = (tab_all[(True, "post")] / tab_all[(True, "pre")]) / (tab_all[(False, "post")] / tab_all[(False, "pre")])
    assert ratio < ratio_all < 1.0
    # truth agrees in direction and size
    pct = {r["financial_year"]: r for r in sample.truth["pct_year"]}
    assert pct["2004/05"]["referrals_avoided"] == 0
    assert 0.03 < pct["2007/08"]["referrals_avoided"] / pct["2007/08"]["expected_referrals"] < 0.10
    assert pct["2007/08"]["savings_practice_action"] > pct["2005/06"]["savings_practice_action"] > 0


def test_under_referrers_flagged_and_low(sample):
    under = sample.truth["under_referrers"]["practices"]
    assert 1 <= len(under) <= 2
    ref = as_text(sample.tables["referrals"])
    pop = as_text(sample.tables["population"])
    early = ref[ref.month < "2005-04"].groupby("practice_code").referrals.sum()
    lst = pop[pop.month < "2005-04"].groupby("practice_code").registered.sum()
    rate = (early / lst).rank(pct=True)
    assert all(rate[u] <= 0.25 for u in under)


def test_follow_up_cut_at_the_planted_size(sample):
    change = sample.truth["provider_change"]
    assert change["effective_month"] == "2007-01" and change["relative_change_in_follow_up_ratio"] == -0.2
    act = as_text(sample.tables["activity"])
    act["cut"] = act.provider_code == change["provider_code"]
    act["period"] = np.where((act.month >= "2006-01") & (act.month < "2007-01"), "before",
                             np.where((act.month >= "2007-01") & (act.month < "2007-12"), "after", "other"))
    act = act[act.period != "other"]
    tab = act.pivot_table(index=["cut", "period"], columns="pod", values="activity", aggfunc="sum", observed=True)
    fu_ratio = tab["followup_op"] / tab["first_op"]
    rel = fu_ratio[(True, "after")] / fu_ratio[(True, "before")]
    rel_other = fu_ratio[(False, "after")] / fu_ratio[(False, "before")]
    assert rel / rel_other == pytest.approx(0.8, abs=0.03)
    assert rel_other == pytest.approx(1.0, abs=0.03)
    # referrals do not move at the cut provider
    ref = as_text(sample.tables["referrals"])
    ref["cut"] = ref.provider_code == change["provider_code"]
    ref["period"] = np.where((ref.month >= "2006-01") & (ref.month < "2007-01"), "before",
                             np.where((ref.month >= "2007-01") & (ref.month < "2007-12"), "after", "other"))
    r = ref[ref.period != "other"].groupby(["cut", "period"]).referrals.sum()
    rr = (r[(True, "after")] / r[(True, "before")]) / (r[(False, "after")] / r[(False, "before")])
    assert rr == pytest.approx(1.0, abs=0.03)
    assert len(sample.tables["provider_changes"]) == 1


def test_tariff_uplift_and_structural_change(sample):
    tar = sample.tables["tariff"].pivot_table(index=["specialty_code", "pod"], columns="financial_year", values="price")
    years = list(tar.columns)
    assert years == ["2003/04", "2004/05", "2005/06", "2006/07", "2007/08"]
    step = tar[years[1:]].to_numpy() / tar[years[:-1]].to_numpy()
    pods = tar.index.get_level_values("pod")
    expected = np.full(step.shape, 1.025)
    expected[pods == "first_op", -1] *= 1.08
    expected[pods == "followup_op", -1] *= 0.90
    assert np.allclose(step, expected, rtol=2e-3, atol=0)
    assert sample.truth["tariff"]["structural_change"]["financial_year"] == "2007/08"
    fo = tar.xs("first_op", level="pod")["2005/06"]
    fu = tar.xs("followup_op", level="pod")["2005/06"]
    assert fo.between(150, 250).all() and fu.between(80, 110).all()
    assert tar.xs("ae", level="pod")["2005/06"].between(70, 100).all()


def test_last_three_months_incomplete():
    base = SynthParams(seed=21, n_practices=30, n_months=24)
    lagged = generate(base).tables
    complete = generate(SynthParams(seed=21, n_practices=30, n_months=24, completeness=(1.0, 1.0, 1.0))).tables
    a = lagged["activity"].groupby("month", observed=True).activity.sum()
    b = complete["activity"].groupby("month", observed=True).activity.sum()
    ratio = (a / b).to_numpy()
    assert np.allclose(ratio[:-3], 1.0)
    assert np.allclose(ratio[-3:], [0.97, 0.85, 0.55], atol=0.02)
    # cost recomputed from the thinned activity: activity x tariff price x provider HRG factor, in pence
    truth = generate(base).truth
    c = as_text(lagged["activity"])
    c["financial_year"] = np.where(c.month.str[5:7].astype(int) >= 4, c.month.str[:4].astype(int),
                                   c.month.str[:4].astype(int) - 1)
    c["financial_year"] = c.financial_year.astype(str) + "/" + ((c.financial_year + 1) % 100).map("{:02d}".format)
    tar = as_text(lagged["tariff"]).set_index(["specialty_code", "pod", "financial_year"]).price
    price = tar.reindex(pd.MultiIndex.from_frame(c[["specialty_code", "pod", "financial_year"]])).to_numpy()
    hrg = c.provider_code.map({k: v["hrg_factor"] for k, v in truth["providers"].items()}).to_numpy()
    assert np.array_equal(c.cost.to_numpy(), np.round(c.activity.to_numpy() * price * hrg, 2))
    assert lagged["referrals"].referrals.equals(complete["referrals"].referrals)  # referrals are not lagged
    comp = truth["completeness"]
    assert list(comp.values()) == [0.97, 0.85, 0.55] and list(comp)[-1] == "2005-03"


def test_august_and_december_dips(sample):
    ref = as_text(sample.tables["referrals"])
    by_month = ref.groupby("month").referrals.sum()
    cal = by_month.index.str[5:7]
    index = by_month.groupby(cal).mean()
    index = index / index.mean()
    planted = sample.truth["seasonality"]["elective_referrals"]
    assert planted["08"] == planted["12"] == 0.89
    assert index["08"] == pytest.approx(0.89, abs=0.025) and index["12"] == pytest.approx(0.89, abs=0.025)
    assert index.drop(["08", "12"]).min() > 0.92
    ae = as_text(sample.tables["activity"])
    ae = ae[(ae.pod == "ae") & (ae.month < "2007-12")].groupby("month").activity.sum()
    assert ae.groupby(ae.index.str[5:7]).mean().idxmin() == "08"


def test_high_cost_patients_heavy_tail_and_stable_ids(sample):
    hc = sample.tables["high_cost_patients"]
    assert (hc.cost > 10000).all() and (hc.cost > 50000).sum() >= 5
    years = hc.groupby("patient_id").financial_year.nunique()
    assert (years > 1).sum() > 0.05 * len(years)
    assert hc.patient_id.str.fullmatch(r"[0-9a-f]{16}").all()
    # consistent with the cost concentration: about a quarter of expected spend
    spend = sum(r["expected_spend"] for r in sample.truth["pct_year"])
    assert 0.15 < hc.cost.sum() / spend < 0.40


def test_budgets_from_first_engagement_year(sample):
    b = sample.tables["budgets"]
    assert sorted(b.financial_year.unique()) == ["2005/06", "2006/07", "2007/08"]
    assert len(b) == 60 * 3
    rec = pd.DataFrame(sample.truth["practice_year"]).set_index(["practice_code", "financial_year"])
    x = b.set_index(["practice_code", "financial_year"]).budget / rec.expected_spend.reindex(
        b.set_index(["practice_code", "financial_year"]).index)
    assert x.between(0.9, 1.15).all()


# ---------------------------------------------------------------------------------------------
# LMDI
# ---------------------------------------------------------------------------------------------
def test_lmdi_function_is_exact():
    rng = np.random.default_rng(0)
    x0 = rng.uniform(0.5, 2.0, size=(4, 50))
    x1 = x0 * rng.uniform(0.7, 1.4, size=(4, 50))
    x1[:, :3] = x0[:, :3]  # unchanged cells (L(a, a) = a)
    v0, v1 = x0.prod(axis=0), x1.prod(axis=0)
    parts = lmdi_decompose(v0, v1, {f"f{k}": np.log(x1[k] / x0[k]) for k in range(4)})
    assert sum(parts.values()) == pytest.approx(v1.sum() - v0.sum(), rel=1e-12)


@pytest.mark.parametrize("which", ["small", "sample"])
def test_lmdi_parts_add_up(which, request):
    res = request.getfixturevalue(which)
    truth = res.truth
    assert truth["lmdi"]["max_relative_error_before_rounding"] < 1e-9
    base = truth["lmdi"]["base_year"]
    assert base == ("2004/05" if which == "sample" else "2003/04")
    rec = pd.DataFrame(truth["practice_year"])
    spend_base = rec[rec.financial_year == base].set_index("practice_code").expected_spend
    done = rec[rec.financial_year > base]
    assert len(done) > 0
    for _, r in done.iterrows():
        parts = sum(r[f"lmdi_{k}"] for k in LMDI_FACTORS)
        change = r["expected_spend"] - spend_base[r["practice_code"]]
        assert r["spend_change_from_base"] == pytest.approx(change, rel=1e-9, abs=1e-6)
        assert parts == pytest.approx(change, rel=1e-9, abs=1e-6)
        assert r["lmdi_practice_action"] <= 0 and r["lmdi_provider_change"] <= 0
    for r in truth["pct_year"]:
        if r["financial_year"] > base:
            assert sum(r[f"lmdi_{k}"] for k in LMDI_FACTORS) == pytest.approx(r["spend_change_from_base"], rel=1e-9)
    if which == "sample":
        last = truth["pct_year"][-1]
        assert last["lmdi_provider_change"] < 0 and last["lmdi_tariff"] > 0 and last["lmdi_population"] > 0


# ---------------------------------------------------------------------------------------------
# parameters and `pbc synth`'s flags (one source: SynthParams)
# ---------------------------------------------------------------------------------------------
def _synth_args(*argv: str) -> dict[str, str]:
    """What `pbc synth` passes on: the typed flags, by SynthParams field."""
    from pbc_analysis.pipeline import cli

    ns = cli.build_parser().parse_args(["synth", "--out", "unused", *argv])
    return {f.name: getattr(ns, f.name) for f in flags() if hasattr(ns, f.name)}


def test_every_field_is_a_flag_with_its_default_and_help():
    fields = {f.name: f for f in dataclasses.fields(SynthParams)}
    by_name = {f.name: f for f in flags()}
    assert list(by_name) == list(fields)
    assert len({f.flag for f in flags()}) == len(fields)
    assert {by_name[n].flag for n in ("seed", "n_practices", "n_months", "start_month")} == {
        "--seed", "--practices", "--months", "--start"}
    for name, f in by_name.items():
        opt = SynthParams.options()[name]
        assert f.default == fields[name].default and opt.help and f.group == opt.group
        assert "(default: " in f.help and ("derived: " in f.help) == (f.default is None and opt.derive is not None)
    # the default's text, as shown in --help, parses back to the default (one source for both)
    for name, f in by_name.items():
        if f.default is not None:
            shown = f.help.rsplit("(default: ", 1)[1][:-1]
            assert SynthParams(**{name: parse_flag(name, shown, "2003-04")}) == SynthParams(), name
    assert _synth_args() == {} and params_from_flags({}) == SynthParams()


def test_flags_map_to_synth_params():
    given = _synth_args("--seed", "5", "--practices", "45", "--months", "48", "--start", "2004-01",
                        "--cohort-offsets", "2005-07,2006-01", "--cohort-fractions", "0.4,0.3",
                        "--never-engaged-fraction", "0.3", "--engagement-effects", "all=0.05,110=0.2",
                        "--cohort-effect-scale", "1,0.5", "--provider-cut-offset", "40", "--provider-cut-size", "-0.3",
                        "--under-referrers", "3", "--under-referrer-log-propensity", "-0.7",
                        "--completeness", "0.9,0.6", "--providers", "auto", "--structural-change", "none")
    p = params_from_flags(given)
    assert (p.seed, p.n_practices, p.n_months, p.start_month) == (5, 45, 48, "2004-01")
    assert p.cohort_offsets == (18, 24)  # months turned into offsets from --start
    assert p.cohort_fractions == (0.4, 0.3) and p.never_engaged_fraction == 0.3
    assert dict(p.engagement_effects) == {c: (0.2 if c == "110" else 0.05) for c, _ in SynthParams().engagement_effects}
    assert p.cohort_effect_scale == (1.0, 0.5)
    assert (p.provider_cut_offset, p.provider_cut_size) == (40, -0.3)
    assert (p.n_under_referrers, p.under_referrer_log_propensity) == (3, -0.7)
    assert p.completeness == (0.9, 0.6) and p.n_providers is None
    assert dict(p.structural_change) == {"first_op": 0.0, "followup_op": 0.0}
    r = p.resolved()
    assert r.n_providers == 4 and r.provider_cut_offset == 40 and r.cohort_offsets == (18, 24)


@pytest.mark.parametrize("argv, flag, words", [
    (["--practices", "1"], "--practices", ">= 2"),
    (["--months", "eight"], "--months", "whole number"),
    (["--start", "2004-13"], "--start", "YYYY-MM"),
    (["--cohort-offsets", "2005-04,2005-10,2009-01"], "--cohort-offsets", "inside the window"),
    (["--cohort-offsets", "30,24,36"], "--cohort-offsets", "must increase"),
    (["--cohort-offsets", "24,30"], "--cohort-fractions", "one share per cohort"),
    (["--never-engaged-fraction", "0.5"], "--never-engaged-fraction", "add up to 1"),
    (["--never-engaged-fraction", "1.5"], "--never-engaged-fraction", "<= 1"),
    (["--cohort-fractions", "0.3,-0.1,0.5"], "--cohort-fractions", "> 0"),
    (["--engagement-effects", "110=1.2"], "--engagement-effects 110", "< 1"),
    (["--engagement-effects", "999=0.1"], "--engagement-effects", "unknown specialty"),
    (["--cohort-effect-scale", "1,1"], "--cohort-effect-scale", "one value per cohort"),
    (["--cohort-effect-scale", "8,1,1"], "--cohort-effect-scale", "below 1"),
    (["--provider-cut-offset", "2010-01"], "--provider-cut-offset", "inside the window"),
    (["--provider-cut-size", "-1"], "--provider-cut-size", "> -1"),
    (["--structural-change-offset", "2007-05"], "--structural-change-offset", "an April"),
    (["--under-referrers", "60"], "--under-referrers", "engaged practices"),
    (["--completeness", "0.9,1.5"], "--completeness", "<= 1"),
    (["--elective-season", "1,1"], "--elective-season", "exactly 12"),
    (["--provider-cut-provider", "RZZ"], "--provider-cut-provider", "not a provider"),
])
def test_flags_refuse_bad_values_naming_the_flag(argv, flag, words, tmp_path, capsys):
    from pbc_analysis.pipeline import cli

    code = cli.main(["synth", "--out", str(tmp_path / "out"), "--practices", "45", "--quiet", *argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: pbc synth: ") and flag in err and words in err, err
    assert not (tmp_path / "out").exists()


def test_python_api_refuses_bad_values_naming_the_field():
    with pytest.raises(ValueError, match="n_months must be >= 12"):
        SynthParams(n_months=8).resolved()
    with pytest.raises(ValueError, match=r"cohort_offsets 24 \(2003-04\), 30 \(2003-10\), 70 \(2007-02\) must increase.*offsets 1 to 59"):
        SynthParams(n_months=60, start_month="2001-04", cohort_offsets=(24, 30, 70)).resolved()
    with pytest.raises(ValueError) as info:  # every problem at once
        generate(SynthParams(ae_fraction=2.0, high_cost_alpha=1.0))
    assert len(info.value.problems) == 2


def test_default_cohort_timing_follows_the_window():
    # the sample's rule where it leaves a full financial year before the first cohort ...
    assert default_cohort_offsets(60, "2003-04") == (24, 30, 36)
    assert default_cohort_offsets(48, "2004-01") == (19, 24, 29)
    # ... and moved later (same spacing) where it would not: 48 months from May
    assert default_cohort_offsets(48, "2004-05") == (23, 28, 33)
    for months in range(45, 151):
        for month in range(1, 13):
            start = f"2004-{month:02d}"
            p = SynthParams(n_practices=45, n_months=months, start_month=start).resolved()
            cohorts = p.cohort_offsets
            assert cohorts[0] > first_full_year_end(start) and cohorts[-1] < months, (months, start)
            assert pipeline_warnings(p) == [], (months, start)


def test_warns_when_the_pipeline_could_not_use_the_shape(tmp_path, capsys):
    from pbc_analysis.pipeline import cli

    code = cli.main(["synth", "--out", str(tmp_path / "w"), "--practices", "30", "--months", "36", "--start",
                     "2004-07", "--cohort-offsets", "2005-03,2005-06,2005-09", "--quiet"])
    err = capsys.readouterr().err
    assert code == 0 and "warning: no full April-to-March year ends before the first engagement (2005-03)" in err
    assert "--cohort-offsets after 2006-03" in err
    assert json.loads((tmp_path / "w" / "ground_truth.json").read_text())["lmdi"]["base_year"] is None


@pytest.mark.parametrize("argv", [
    ["--seed", "5", "--practices", "45", "--months", "48", "--start", "2004-05"],
    ["--seed", "8", "--practices", "100", "--months", "66", "--start", "2003-01", "--cohort-offsets",
     "2005-07,2006-01", "--cohort-fractions", "0.4,0.3", "--provider-cut-offset", "2007-06", "--provider-cut-size",
     "-0.3", "--under-referrers", "4", "--completeness", "0.95,0.9,0.7,0.4", "--engagement-effects",
     "all=0.08,110=0.2", "--format", "csv"],
], ids=["45-practices-48-months-may-derived-cohorts", "100-practices-66-months-january-custom-effects"])
def test_non_default_shape_is_valid_input(argv, tmp_path, capsys):
    from pbc_analysis.core import calendar
    from pbc_analysis.data.plausibility import validate_inputs_for_cli
    from pbc_analysis.pipeline import cli

    out = tmp_path / "pct"
    assert cli.main(["synth", *argv, "--out", str(out), "--quiet"]) == 0
    assert "warning" not in capsys.readouterr().err
    truth = json.loads((out / "ground_truth.json").read_text())
    window = truth["window"]
    inputs, accepted = validate_inputs_for_cli(out, window["start_month"], window["end_month"])
    assert accepted == []
    given = params_from_flags(_synth_args(*[a for a in argv if a not in ("--format", "csv")]))
    p = given.resolved()
    assert truth["generator"]["resolved_params"] == p.to_dict()
    assert window["n_months"] == p.n_months and window["start_month"] == p.start_month
    starts = [calendar.add_months(p.start_month, o) for o in p.cohort_offsets]
    assert [c["start_month"] for c in truth["engagement"]["cohorts"]] == starts
    assert sorted(inputs.engagement["engaged_from"].dropna().unique()) == starts
    assert truth["lmdi"]["base_year"] is not None
    assert calendar.fy_end_month(truth["lmdi"]["base_year"]) < starts[0]
    assert len(truth["under_referrers"]["practices"]) == p.n_under_referrers
    assert list(truth["completeness"].values()) == list(p.completeness)
    assert list(truth["completeness"])[-1] == window["end_month"]
    cut = inputs.provider_changes.iloc[0]
    assert cut["effective_month"] == calendar.add_months(p.start_month, p.provider_cut_offset)
    assert truth["provider_change"]["relative_change_in_follow_up_ratio"] == p.provider_cut_size
    assert inputs.practices.shape[0] == p.n_practices


def test_pbc_synth_defaults_reproduce_the_sample(tmp_path):
    from pbc_analysis.pipeline import cli

    out = tmp_path / "sample"
    assert cli.main(["synth", "--seed", "20070401", "--practices", "60", "--months", "60", "--start", "2003-04",
                     "--out", str(out), "--quiet"]) == 0
    assert sha256_dir(out) == sha256_dir(SAMPLE_DIR)
    assert cli.main(["synth", "--out", str(tmp_path / "bare"), "--quiet"]) == 0  # no flag: the same defaults
    assert sha256_dir(tmp_path / "bare") == sha256_dir(SAMPLE_DIR)
