"""Tests for pbc_analysis.stages.benchmark: hand-computed cases, recovery on the synthetic PCT, real open data."""

from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from pbc_analysis import data as D
from pbc_analysis.core import calendar, paths
from pbc_analysis.core.checks import ArgumentError, choices_of
from pbc_analysis.core.params import AUTO
from pbc_analysis.methods.indicators import byars_lower, byars_upper
from pbc_analysis.stages import benchmark as B
from pbc_analysis.stages.facts import DataFacts

OPEN_DATA = paths.REFERENCE_DIR / "nhs-open-data" / "HEEC_practice_reference_england_2022-23.csv"


# --------------------------------------------------------------------------------------------------
# a hand-made cube: 3 practices, one series, 4 months (two financial years: 2005/06 has 2005-02..03
# -> no: the months are 2005-02, 2005-03 (FY 2004/05) and 2005-04, 2005-05 (FY 2005/06))
# --------------------------------------------------------------------------------------------------

def hand_cube(rates: bool = True) -> B.Cube:
    practices = pd.Index(["P1", "P2", "P3"], name="practice_code")
    info = pd.DataFrame({"practice_code": practices, "practice_name": ["a", "b", "c"],
                         "consortium": ["X", "X", "Y"], "imd_score": [10.0, 20.0, 30.0],
                         "single_handed": [False, False, False]})
    series = pd.DataFrame({"measure": ["referrals"], "specialty_code": ["110"]}).astype("str")
    months = ["2005-02", "2005-03", "2005-04", "2005-05"]
    counts = np.array([[[10, 20, 30, 40]], [[5, 5, 5, 5]], [[0, 1, 2, 3]]], dtype=float)
    registered = np.zeros((3, 4, B.N_AS))
    registered[:, :, 0] = [[1200, 1200, 1200, 1200], [600, 600, 600, 600], [1200, 1200, 2400, 2400]]  # F 0-4
    registered[:, :, 1] = [[0, 0, 0, 0], [600, 600, 600, 600], [0, 0, 0, 0]]                       # M 0-4
    ref = np.full((1, B.N_AS), np.nan)
    if rates:
        ref[0, :] = 0.0
        ref[0, 0], ref[0, 1] = 100.0, 50.0  # per 1,000 a year: F 0-4 and M 0-4
    return B.Cube(practices, info, series, months, counts, np.full_like(counts, np.nan), registered, ref)


def test_period_labels():
    months = ["2005-03", "2005-04", "2005-07", "2006-01", "2006-03"]
    assert B.period_of_months(months).tolist() == ["2004/05", "2005/06", "2005/06", "2005/06", "2005/06"]
    assert B.period_of_months(months, "calendar_year").tolist() == ["2005", "2005", "2005", "2006", "2006"]
    assert B.period_of_months(months, "quarter").tolist() == ["2004/05 Q4", "2005/06 Q1", "2005/06 Q2",
                                                             "2005/06 Q4", "2005/06 Q4"]
    assert B.period_of_months(["1999-12"], "financial_year").tolist() == ["1999/00"]
    with pytest.raises(ValueError, match="period must be one of"):
        B.period_of_months(months, "fiscal")


def test_expected_by_hand_reference_target():
    """E = person-years x reference rate: P1 in 2004/05 has 2 x 1200/12 = 200 person-years of F 0-4 at
    100 per 1,000 = 20 expected; P2 has 100 F + 100 M person-years: 10 + 5 = 15."""
    ex = B.expected_counts(hand_cube(), standardisation="age_sex", target="reference")
    one = ex[ex["specialty_code"] == "110"].set_index(["period", "practice_code"])
    assert one.loc[("2004/05", "P1"), "expected"] == pytest.approx(20.0)
    assert one.loc[("2004/05", "P2"), "expected"] == pytest.approx(15.0)
    assert one.loc[("2005/06", "P3"), "expected"] == pytest.approx(40.0)
    assert one.loc[("2004/05", "P1"), "observed"] == 30
    assert one.loc[("2004/05", "P2"), "person_years"] == pytest.approx(200.0)
    # "all" specialties equals the single specialty here
    allr = ex[ex["specialty_code"] == B.ALL].set_index(["period", "practice_code"])
    assert np.allclose(allr["expected"], one["expected"]) and np.allclose(allr["observed"], one["observed"])


def test_expected_pct_target_rescales_to_observed_total():
    """target='pct': E scaled so that sum E = sum O in each period: 2004/05 O = 30 + 10 + 1 = 41 and
    reference E = 20 + 15 + 20 = 55, so each E is multiplied by 41/55."""
    ex = B.expected_counts(hand_cube(), standardisation="age_sex", target="pct")
    one = ex[(ex["specialty_code"] == "110") & (ex["period"] == "2004/05")].set_index("practice_code")
    assert one["expected"].to_dict() == pytest.approx({"P1": 20 * 41 / 55, "P2": 15 * 41 / 55, "P3": 20 * 41 / 55})
    tot = ex.groupby(["period", "specialty_code"])[["observed", "expected"]].sum()
    assert np.allclose(tot["observed"], tot["expected"])


def test_crude_standardisation_is_proportional_to_person_years():
    ex = B.expected_counts(hand_cube(rates=False), standardisation="none", target="pct")
    one = ex[(ex["specialty_code"] == "110") & (ex["period"] == "2005/06")].set_index("practice_code")
    py = one["person_years"]
    assert np.allclose(one["expected"], py / py.sum() * one["observed"].sum())


def test_age_sex_without_reference_rates_is_a_clear_error():
    with pytest.raises(B.BenchmarkError, match="reference_rates"):
        B.expected_counts(hand_cube(rates=False), standardisation="age_sex")
    with pytest.raises(ValueError, match="standardisation must be one of"):
        B.expected_counts(hand_cube(), standardisation="age-sex")
    with pytest.raises(B.BenchmarkError, match="periods"):
        B.expected_counts(hand_cube(), periods=["2009/10"])


def test_poisson_offset_fit_matches_statsmodels_glm():
    """The vectorised Newton fit equals statsmodels' GLM (Poisson, log link, offset) group by group."""
    rng = np.random.default_rng(1)
    G, n = 4, 50
    x = rng.normal(size=n)
    off = np.log(rng.uniform(50, 500, size=(G, n)))
    a_true, b_true = rng.normal(0, 0.3, G), rng.normal(0.2, 0.1, G)
    y = rng.poisson(np.exp(off + a_true[:, None] + b_true[:, None] * x))
    a, b = B.poisson_offset_fit(y, off, x[None, :])
    for g in range(G):
        fit = sm.GLM(y[g], sm.add_constant(x), family=sm.families.Poisson(), offset=off[g]).fit(tol=1e-12)
        assert a[g] == pytest.approx(fit.params[0], abs=1e-8)
        assert b[g] == pytest.approx(fit.params[1], abs=1e-8)


def test_poisson_offset_fit_group_without_events():
    a, b = B.poisson_offset_fit(np.zeros((1, 3)), np.zeros((1, 3)), np.array([0.0, 1.0, 2.0]))
    assert a[0] == -np.inf and b[0] == 0.0


def test_standardised_ratio_limits_by_hand():
    """O = 20, E = 16: ratio 1.25; Byar's limits of 20 divided by 16 (95% and 99.8%); O = 3 uses exact
    Poisson: 95% lower = chi2_{0.025}(6)/2 = 0.6186721 events."""
    df = pd.DataFrame({"period": ["y", "y"], "practice_code": ["P1", "P2"], "measure": ["referrals"] * 2,
                       "specialty_code": ["110"] * 2, "observed": [20.0, 3.0], "expected": [16.0, 2.0],
                       "person_years": [1000.0, 1000.0]})
    sr = B.standardised_ratios(df)
    assert sr.loc[0, "ratio"] == pytest.approx(1.25)
    assert sr.loc[0, "lower_95_0"] == pytest.approx(byars_lower(20, 0.95) / 16)
    assert sr.loc[0, "upper_99_8"] == pytest.approx(byars_upper(20, 0.998) / 16)
    assert sr.loc[1, "lower_95_0"] == pytest.approx(0.6186721 / 2, rel=1e-6)
    assert sr.loc[0, "rate_per_1000"] == pytest.approx(20.0)
    # PCT crude rate 23 / 2000 person-years = 11.5 per 1,000; standardised rate = ratio x 11.5
    assert sr.loc[0, "standardised_rate_per_1000"] == pytest.approx(1.25 * 11.5)


def _ratios(values: dict[str, list[float]], consortium: dict[str, str]) -> pd.DataFrame:
    rows = [{"period": f"200{i}", "practice_code": p, "consortium": consortium[p], "measure": "referrals",
             "specialty_code": "all", "ratio": v} for p, vs in values.items() for i, v in enumerate(vs)]
    return pd.DataFrame(rows)


def test_peer_positions_by_hand():
    r = _ratios({"A": [0.5, 1.0], "B": [1.0, 1.0], "C": [1.5, 2.0], "D": [2.0, 4.0], "E": [0.8, 0.4]},
                {"A": "X", "B": "X", "C": "X", "D": "Y", "E": "Y"})
    pp = B.peer_positions(r).set_index(["period", "practice_code"])
    # 2000: values 0.5, 1.0, 1.5, 2.0, 0.8 -> ranks 1, 3, 4, 5, 2 -> 0, 50, 75, 100, 25
    assert pp.xs("2000")["pct_percentile"].to_dict() == {"A": 0, "B": 50, "C": 75, "D": 100, "E": 25}
    assert pp.xs("2000")["pct_decile"].to_dict() == {"A": 1, "B": 6, "C": 8, "D": 10, "E": 3}
    # 2001: A and B tie at 1.0 -> both min rank 2 -> 25
    assert pp.xs("2001")["pct_percentile"].to_dict() == {"A": 25, "B": 25, "C": 75, "D": 100, "E": 0}
    # consortium Y has D and E only
    assert pp.xs("2000")["consortium_percentile"].to_dict() == {"A": 0, "B": 50, "C": 100, "D": 100, "E": 0}
    assert pp.loc[("2001", "D"), "change"] == pytest.approx(2.0)
    assert np.isnan(pp.loc[("2000", "D"), "change"])
    # trend: two periods, log(4/2) per period -> exp(log 2) - 1 = 1
    assert pp.loc[("2000", "D"), "trend_per_period"] == pytest.approx(1.0)
    assert pp.loc[("2001", "E"), "trend_per_period"] == pytest.approx(-0.5)


def test_decile_fan_equals_numpy_percentiles():
    rng = np.random.default_rng(3)
    vals = {f"P{i}": list(rng.lognormal(0, 0.2, 3)) for i in range(23)}
    r = _ratios(vals, {p: "X" for p in vals})
    fan = B.decile_fan(r)
    for period in ("2000", "2001", "2002"):
        v = r[r["period"] == period]["ratio"].to_numpy()
        got = fan[fan["period"] == period].set_index("percentile")["value"]
        assert np.allclose(got.to_numpy(), np.percentile(v, np.arange(10, 100, 10)))


def test_flags_persistence_by_hand():
    """Flags in periods 1, 2, 4 of 5: persistent (2 of the last 3) in periods 2 and 4 only."""
    ratio = [2.0, 2.0, 1.0, 2.0, 0.1]
    f = pd.DataFrame({"period": [f"p{i}" for i in range(5)], "practice_code": "P1", "consortium": "X",
                      "measure": "referrals", "specialty_code": "all", "observed": 1.0, "expected": 1.0,
                      "ratio": ratio, "limit_upper_99_8": 1.5, "limit_lower_99_8": 0.5,
                      "limit_upper_95_0": 1.2, "limit_lower_95_0": 0.8})
    out = B.flags(f)
    assert out["high_referrer"].tolist() == [True, True, False, True, False]
    assert out["possible_under_referrer"].tolist() == [False] * 4 + [True]
    assert out["persistent_outlier"].tolist() == [False, True, True, True, True]
    assert out["flag"].tolist() == ["high", "high, persistent", "", "high, persistent", "under, persistent"]
    with pytest.raises(ValueError, match="persistent_min_periods must be >= 1 and <= 3, got 4"):
        B.flags(f, persistent_min_periods=4, persistent_window=3)


# --------------------------------------------------------------------------------------------------
# the synthetic PCT
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sample(sample_inputs, sample_truth):
    return sample_inputs, B.build_cube(sample_inputs), sample_truth


def test_cube_totals_equal_the_input_tables(sample):
    inputs, cube, _ = sample
    k_ref = (cube.series["measure"] == "referrals").to_numpy()
    assert cube.counts[:, k_ref, :].sum() == inputs.referrals["referrals"].sum()
    assert cube.counts[:, ~k_ref, :].sum() == inputs.activity["activity"].sum()
    assert np.nansum(cube.cost) == pytest.approx(inputs.activity["cost"].sum())
    assert cube.registered.sum() == inputs.population["registered"].sum()
    assert cube.has_reference_rates


def test_planted_under_referrers_are_flagged(sample):
    """The synthetic PCT's planted under-referrers (log propensity -0.5, about 2.5 between-practice SDs
    below the mean) are flagged as possible under-referrers (all specialties) in at least 4 of the 5
    financial years, in the latest year, and as persistent outliers there; never as high referrers."""
    _, cube, truth = sample
    bm = B.benchmark_practices(cube)
    planted = set(truth["under_referrers"]["practices"])
    f = bm.flags[(bm.flags["measure"] == "referrals") & (bm.flags["specialty_code"] == B.ALL)]
    mine = f[f["practice_code"].isin(planted)]
    assert len(mine) == 5 * len(planted)
    per_practice = mine.groupby("practice_code")["possible_under_referrer"].sum()
    assert (per_practice >= 4).all(), per_practice
    latest = mine[mine["period"] == "2007/08"]
    assert latest["possible_under_referrer"].all() and latest["persistent_outlier"].all()
    assert not f["high_referrer"][f["practice_code"].isin(planted)].any()


def test_other_practices_are_not_flagged_more_often_than_the_limits_imply(sample):
    """Among practices that are not planted under-referrers, the share below the 95% limit (one-sided
    2.5%) and above the 99.8% limit (0.1%), over all specialties, points of delivery and years, stays
    within a binomial 99.9% bound of its nominal rate. (scripts/simulate_benchmark.py checks it over seeds.)"""
    from scipy import stats

    _, cube, truth = sample
    bm = B.benchmark_practices(cube)
    planted = set(truth["under_referrers"]["practices"])
    f = bm.flags[~bm.flags["practice_code"].isin(planted) & (bm.flags["specialty_code"] != B.ALL)]
    n = len(f)
    for col, rate in (("possible_under_referrer", 0.025), ("high_referrer", 0.001)):
        bound = stats.binom.ppf(0.999, n, rate)
        assert f[col].sum() <= bound, f"{col}: {f[col].sum()} of {n} (nominal {rate:.1%}, bound {bound:.0f})"


def test_deprivation_gradient_and_age_sex_standardisation_recovered(sample):
    """The fitted deprivation log rate ratio per SD of IMD is close to the planted 0.21 for every
    specialty's referrals; ignoring age and sex biases the crude comparison (deprived practices are
    younger), standardising removes that bias."""
    _, cube, truth = sample
    ex = B.expected_counts(cube, standardisation="age_sex+deprivation")
    beta = ex[(ex["measure"] == "referrals") & (ex["specialty_code"] != B.ALL)]["deprivation_log_rr"]
    assert abs(beta.median() - truth["deprivation"]["beta_referrals"]) < 0.03
    # ratios by practice against the truth's propensity: standardised ratios track the planted propensity
    sr = B.standardised_ratios(ex)
    r = sr[(sr["measure"] == "referrals") & (sr["specialty_code"] == B.ALL) & (sr["period"] == "2004/05")]
    prop = pd.DataFrame(truth["practices"]).set_index("practice_code")["log_propensity"]
    corr = np.corrcoef(np.log(r.set_index("practice_code")["ratio"].astype(float)), prop.reindex(r["practice_code"].astype(str)))[0, 1]
    assert corr > 0.9


def test_result_tables_and_headline(sample):
    _, cube, truth = sample
    bm = B.benchmark_practices(cube)
    tables = B.result_tables(bm)
    assert set(tables) == {"bm_ratios", "bm_specialty_ratios", "bm_deprivation", "bm_dispersion", "bm_flags",
                           "bm_scorecard", "bm_decile_fan", "bm_spc"}
    head = B.headline(bm)
    assert set(truth["under_referrers"]["practices"]) <= set(head["possible_under_referrers"])
    assert head["overdispersion"]["used"] == "tau2"
    text = B.describe(head)
    for code in head["possible_under_referrers"]:
        assert code in text
    card = tables["bm_scorecard"]
    assert len(card) == 60 and card["practice_code"].is_unique
    # the SPC table covers exactly the flagged practices of the latest period, 60 months each
    flagged = set(card.loc[card["flag"] != "", "practice_code"])
    assert set(bm.spc["practice_code"]) == flagged and (bm.spc.groupby("practice_code").size() == 60).all()


# --------------------------------------------------------------------------------------------------
# real open data: A&E attendances of under-fives by English practice, with IMD 2019
# --------------------------------------------------------------------------------------------------

@pytest.mark.reference
def test_open_data_deprivation_adjusted_ratio_for_every_practice(tmp_path):
    """NHS England / OHID Fingertips practice data (OGL v3.0; compiled by the Health Equity Evidence
    Centre): A&E attendances of children aged 0-4 in 2021/22 and IMD 2019 for 6,669 practices. Every
    practice gets a row; practices with all inputs get a deprivation-adjusted ratio with limits and a
    funnel position; the deprivation gradient agrees with statsmodels' GLM; a funnel plot is drawn."""
    if not OPEN_DATA.exists():
        pytest.skip(f"reference data absent: {OPEN_DATA} (see ../shared/reference/README.md)")
    from pbc_analysis.publish import figures

    df = pd.read_csv(OPEN_DATA, dtype={"practice_code": str})
    table, fit = B.deprivation_adjusted_ratios(df, "practice_code", "ae_attend_0_4_count_2021_22",
                                               "pop_0_4_2021_22", "imd2019_score")
    assert len(table) == len(df) and table["practice_code"].tolist() == df["practice_code"].tolist()
    used = table["excluded"] == ""
    assert used.sum() == fit["n_used"] > 6000
    assert table.loc[used, "ratio"].notna().all() and table.loc[~used, "ratio"].isna().all()
    assert table.loc[used, "position"].isin(["within", "above 95%", "below 95%", "above 99.8%", "below 99.8%"]).all()
    assert np.isclose(table.loc[used, "expected"].sum(), table.loc[used, "ae_attend_0_4_count_2021_22"].sum())
    # the gradient: same as a statsmodels Poisson GLM with log(population) offset
    d = table[used]
    z = (d["imd2019_score"] - fit["score_mean"]) / fit["score_sd"]
    glm = sm.GLM(d["ae_attend_0_4_count_2021_22"], sm.add_constant(z.to_numpy()), family=sm.families.Poisson(),
                 offset=np.log(d["pop_0_4_2021_22"])).fit()
    assert fit["beta"] == pytest.approx(glm.params.iloc[1], abs=1e-7)
    assert fit["beta"] > 0  # more deprived practices: more A&E attendances of under-fives
    assert fit["overdispersion_used"] == "tau2"
    # a funnel plot of every used practice
    units = d.assign(panel="A&E attendances 0-4, 2021/22", expected=d["expected"], ratio=d["ratio"])
    units["practice_code"] = d["practice_code"]
    lines = od_lines(fit, units["expected"].to_numpy())
    lines["panel"] = units["panel"].iloc[0]
    fig = figures.funnel_grid_figure(units, lines, ncols=1)
    fig.savefig(tmp_path / "funnel.png")
    assert (tmp_path / "funnel.png").stat().st_size > 10_000


def od_lines(fit: dict, expected: np.ndarray) -> pd.DataFrame:
    from pbc_analysis.methods.funnel import od_limits

    grid = np.geomspace(max(1.1, expected.min()), expected.max(), 200)
    lim = od_limits(grid, data_type="SR", sr_method="CQC", phi=fit["phi"], tau2=fit["tau2"])
    prefix = "" if fit["overdispersion_used"] == "none" else f"{fit['overdispersion_used']}_"
    return pd.DataFrame({"denominator": grid, "target": 1.0, "lower95": lim[prefix + "ll95"],
                         "upper95": lim[prefix + "ul95"], "lower998": lim[prefix + "ll998"],
                         "upper998": lim[prefix + "ul998"]})


# --------------------------------------------------------------------------------------------------
# the stage's settings (Params), its entry point and notebook 04's gate
# --------------------------------------------------------------------------------------------------

def _facts(start: str, end: str, engaged: dict[str, str | None] | None = None) -> DataFacts:
    engaged = engaged if engaged is not None else {"P1": "2005-04", "P2": None, "P3": None}
    return DataFacts(start_month=start, end_month=end, n_practices=len(engaged), engaged_from=engaged,
                     latest_complete={}, optional_tables=("reference_rates",))


def test_params_defaults_choices_and_one_source_of_defaults():
    p = B.Params()
    assert (p.period, p.periods, p.standardisation, p.target, p.confidence, p.under_level, p.high_level) == \
        ("financial_year", AUTO, "age_sex+deprivation", "pct", [0.95, 0.998], 0.95, 0.998)
    assert choices_of(B.Measure) == D.MEASURES and choices_of(B.Period) == calendar.PERIODS
    assert B.STANDARDISATIONS == ("none", "age_sex", "deprivation", "age_sex+deprivation")
    shared = {n for n, s in B.Params.settings().items() if s.shared}
    assert shared == {"standardisation", "target", "overdispersion", "sr_method", "trim_by", "consistency", "under_level"}
    # the method functions' defaults are the stage's: no second copy that could drift
    defaults = B.Params.defaults()
    for func in (B.expected_counts, B.funnel_table, B.flags, B.deprivation_adjusted_ratios):
        for name, par in inspect.signature(func).parameters.items():
            if name == "periods":  # None: every period, the value "auto" derives
                assert par.default is None
            elif name in defaults and par.default is not inspect.Parameter.empty:
                want = tuple(defaults[name]) if isinstance(par.default, tuple) else defaults[name]
                assert par.default == want, f"{func.__name__}({name}={par.default!r}) but Params says {defaults[name]!r}"
    assert set(inspect.signature(B.benchmark_practices).parameters) == {"cube", "params", "improvement", "settings"}


def test_params_refuse_bad_values_naming_each_setting():
    with pytest.raises(ArgumentError) as err:
        B.Params(standardisation="age-sex", period="fiscal", trim_by=0.6, under_level=95.0, confidence=[95.0],
                 spc_measure="referral", periods=[], persistent_window=0, overdispersion="tau")
    problems = err.value.problems
    assert len(problems) == 9, problems
    for text in ("standardisation must be one of 'none', 'age_sex', 'deprivation', 'age_sex+deprivation'; got 'age-sex'",
                 "period must be one of", "trim_by must be > 0 and < 0.5, got 0.6", "under_level must be > 0.5 and < 1",
                 "(give it as a fraction, e.g. 0.95, not a percentage)", "did you mean 'referrals'",
                 'periods = [] selects no period: write "auto"', "persistent_window must be >= 1",
                 "overdispersion must be one of"):
        assert any(text in p for p in problems), text
    with pytest.raises(ArgumentError, match="high_level must be float"):
        B.Params(high_level="0.998")
    with pytest.raises(ArgumentError, match="confidence levels must be distinct"):
        B.Params(confidence=[0.95, 0.95])
    with pytest.raises(ValueError, match="benchmarking has no setting 'under_levl' \\(did you mean 'under_level'\\?\\)"):
        B.benchmark_practices(hand_cube(), under_levl=0.9)


def test_periods_derived_from_the_window():
    # a financial-year window, a January start, a short window and quarters
    assert B.Params().derive(_facts("2003-04", "2008-03"))["periods"] == ["2003/04", "2004/05", "2005/06", "2006/07", "2007/08"]
    jan = _facts("2004-01", "2007-12")
    assert B.Params().derive(jan)["periods"] == ["2003/04", "2004/05", "2005/06", "2006/07", "2007/08"]
    assert B.Params(period="calendar_year").derive(jan)["periods"] == ["2004", "2005", "2006", "2007"]
    short = _facts("2006-04", "2006-09")
    assert B.Params().derive(short)["periods"] == ["2006/07"]
    assert B.Params(period="quarter").derive(short)["periods"] == ["2006/07 Q1", "2006/07 Q2"]
    # a PCT where every practice engaged (none never engaged): benchmarking needs no comparison group
    all_engaged = _facts("2004-01", "2007-12", {"P1": "2005-01", "P2": "2006-01"})
    resolved, derived = B.Params().resolve(all_engaged)
    assert resolved.periods == ["2003/04", "2004/05", "2005/06", "2006/07", "2007/08"]
    assert [(d.name, d.rule) for d in derived] == [("periods", B.params.PERIODS_RULE)]


def test_reference_rates_needed_by_age_sex_or_reference_target_are_checked_before_the_run():
    without = DataFacts(start_month="2003-04", end_month="2008-03", n_practices=3, engaged_from={}, latest_complete={})
    for settings in ({}, {"standardisation": "age_sex"}, {"standardisation": "deprivation", "target": "reference"}):
        with pytest.raises(ValueError, match="needs the optional reference_rates table"):
            B.Params(**settings).resolve(without)
    B.Params(standardisation="deprivation").resolve(without)  # deprivation against the PCT needs no reference rates
    B.Params().resolve(_facts("2003-04", "2008-03"))


def test_rules_catch_each_broken_rule_with_its_fix():
    facts = _facts("2004-01", "2007-12")
    assert B.Params().rules(facts) == []
    with pytest.raises(ArgumentError, match=r"periods \['2008/09'\] are not financial_year periods of the data window "
                                            r"\(2004-01 to 2007-12: 2003/04, .*\); use those labels"):
        B.Params(periods=["2005/06", "2008/09"]).resolve(facts)
    with pytest.raises(ArgumentError, match="periods .* are not quarter periods"):
        B.Params(period="quarter", periods=["2005/06"]).resolve(facts)
    with pytest.raises(ArgumentError, match="persistent_min_periods = 4 is more than persistent_window = 3"):
        B.Params(persistent_min_periods=4).resolve(facts)
    with pytest.raises(ArgumentError, match="persistent_min_periods = 2 but only 1 financial_year period"):
        B.Params().resolve(_facts("2006-04", "2007-03"))
    assert B.Params(persistent_min_periods=1).rules(_facts("2006-04", "2007-03")) == []
    with pytest.raises(ArgumentError, match="spc_baseline_months = 24 is longer than the 12-month data window"):
        B.Params(spc_baseline_months=24, persistent_min_periods=1).resolve(_facts("2006-04", "2007-03"))


def test_sample_derived_settings_are_the_values_used_until_now(sample_facts):
    """The config never set periods: the empty list meant every period, which is what "auto" derives; the
    settings configs/sample.yaml spells out are the defaults."""
    resolved, derived = B.Params().resolve(sample_facts)
    assert [d.name for d in derived] == ["periods"]
    assert resolved.periods == ["2003/04", "2004/05", "2005/06", "2006/07", "2007/08"]
    config = {"standardisation": "age_sex+deprivation", "target": "pct", "overdispersion": "auto", "high_level": 0.998,
              "under_level": 0.95}
    assert B.Params(**config) == B.Params()


def test_run_equals_the_call_notebook_02_used_to_make(sample):
    inputs, cube, _ = sample
    params, _ = B.Params().resolve(DataFacts(start_month="2003-04", end_month="2008-03", n_practices=60,
                                             engaged_from={}, latest_complete={}, optional_tables=("reference_rates",)))
    res = B.run(inputs, params, cube=cube)
    old = B.benchmark_practices(cube)  # periods "auto": every period
    for name, table in res.tables().items():
        pd.testing.assert_frame_equal(table, old.tables()[name], check_exact=True, obj=name)
    assert res.headline() == old.headline() and res.describe() == B.describe(old.headline())
    assert res.settings["periods"] == ["2003/04", "2004/05", "2005/06", "2006/07", "2007/08"]


def test_under_referrer_gate_is_benchmarking_with_the_shared_settings(sample):
    """Notebook 04's gate: the referral flags of a full benchmarking run with the same settings; a shared setting
    changed (under_level, overdispersion) changes the gate as it changes notebook 02's flags."""
    inputs, cube, truth = sample
    keys = ["period", "practice_code", "consortium", "measure", "specialty_code"]

    def tidy(f: pd.DataFrame) -> pd.DataFrame:
        return f.astype({k: str for k in keys}).reset_index(drop=True)

    for params in (B.Params(), B.Params(under_level=0.9, overdispersion="phi", standardisation="age_sex")):
        gate = B.under_referrer_flags(inputs, params, cube)
        full = B.benchmark_practices(cube, params).flags
        pd.testing.assert_frame_equal(tidy(gate), tidy(full[full["measure"] == "referrals"]))
    # the gate ignores 02's period choice: it always works on every financial year
    quarterly = B.under_referrer_flags(inputs, B.Params(period="quarter", periods=["2007/08 Q4"]), cube)
    pd.testing.assert_frame_equal(tidy(quarterly), tidy(B.under_referrer_flags(inputs, B.Params(), cube)))
    # a looser screen flags more practices (a superset), a stricter one fewer
    allr = {}
    for level in (0.9, 0.95, 0.998):
        f = B.under_referrer_flags(inputs, B.Params(under_level=level), cube)
        f = f[(f["specialty_code"] == B.ALL)]
        allr[level] = set(f.loc[f["possible_under_referrer"], ["practice_code", "period"]].astype(str).itertuples(index=False))
    assert allr[0.998] <= allr[0.95] <= allr[0.9] and allr[0.998] < allr[0.9]
    planted = set(truth["under_referrers"]["practices"])
    assert planted <= {p for p, y in allr[0.95] if y == "2007/08"}


def test_any_flag_level_gets_its_own_funnel_limits(sample):
    _, cube, _ = sample
    bm = B.benchmark_practices(cube, under_level=0.9, high_level=0.99)
    r = bm.ratios
    for col in ("limit_lower_90_0", "limit_upper_99_0"):
        assert col in r.columns and r[col].notna().any()
    ok = r["limit_lower_95_0"].notna()
    assert (r.loc[ok, "limit_lower_90_0"] >= r.loc[ok, "limit_lower_95_0"]).all()
    assert (r.loc[ok, "limit_upper_99_0"] <= r.loc[ok, "limit_upper_99_8"]).all()
    assert (bm.flags["possible_under_referrer"] == (r["ratio"] < r["limit_lower_90_0"]).to_numpy()).all()
    # the written tables keep their columns
    assert list(bm.tables()["bm_ratios"].columns) == [c for c in B.RATIO_COLUMNS]
