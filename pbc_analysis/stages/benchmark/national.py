"""National reference rates from every practice, and the national benchmark of every practice against them.

**Why calibrate.** Benchmarking a practice nationally (``target="reference"``) needs age-sex-specific rates for
each measure and specialty, but the aggregated activity and referrals carry no age or sex: the national rates
cannot be counted directly. They are calibrated instead, as indirect standardisation's national step (Breslow &
Day 1987, ch. 2; the "expected" of SHMI, NHS Digital 2023): for each measure k (GP referrals or a point of
delivery) and specialty,

``r[k, a] = s[k, a] x O_k / E_k``,   ``E_k = sum_p sum_a s[k, a] x PY[p, a] / 1000``

where ``s[k, a]`` is the age-sex *shape* per 1,000 a year (the supplied ``reference_rates`` table: a published
national table, or the synthetic need curves), ``O_k`` the national observed count over the window from ALL
practices and ``PY[p, a]`` the person-years of practice p in age-sex cell a (the monthly list / 12, as the cube
of :mod:`~pbc_analysis.stages.benchmark.cube`). The shape fixes how rates vary with age and sex, the data fix their
level, so the national expected count equals the national observed count exactly, each measure and specialty.
Since ``E_k`` only needs the national person-years by age-sex cell, ``sum_p PY[p, a]``, the aggregation is three
small GROUP BYs.

**Where it runs.** :func:`national_reference_rates` aggregates in the engine (DuckDB through Ibis,
:func:`pbc_analysis.ingest.engine.connect`) directly on the data directory's files: the observed counts by
measure and specialty (``activity`` by pod and specialty, ``referrals`` by specialty) and the person-years by
age band and sex (``population``), over the months of the window; only these few hundred rows come back to
pandas. Counts are summed as integers, so the result does not depend on the engine's threads.

**National benchmark.** :func:`national_benchmark` runs the benchmarking stage's own steps
(:func:`~pbc_analysis.stages.benchmark.cube.build_cube`, :func:`~pbc_analysis.stages.benchmark.expected.expected_counts`
with ``target="reference"``, :func:`~pbc_analysis.stages.benchmark.expected.standardised_ratios`,
:func:`~pbc_analysis.stages.benchmark.funnels.funnel_table`) on the inputs of the whole nation with the national
rates in the cube: one funnel per measure over all practices of England, vectorised (no loop over practices).

A shape is required: without one (no ``shape`` argument and no ``reference_rates`` file) the rates cannot be
identified from practice totals alone without a model (the EM estimate of age-sex rates from practice totals,
Poisson with identity link, is not implemented), and :func:`national_reference_rates` says so.

References
----------
Breslow NE, Day NE (1987), Statistical methods in cancer research II, ch. 2 (indirect standardisation).
NHS Digital (2023), Summary Hospital-level Mortality Indicator: methodology (expected = observed nationally).
Spiegelhalter DJ (2005), Funnel plots for comparing institutional performance, Stat Med 24:1185-1202.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ibis
import numpy as np
import pandas as pd

from pbc_analysis import data as _data
from pbc_analysis.core.params import AUTO
from pbc_analysis.data.window import data_window
from pbc_analysis.ingest import engine as _engine
from pbc_analysis.methods.indicators import ci_suffix
from pbc_analysis.stages.benchmark.cube import ALL, N_AS, BenchmarkError, Cube, build_cube
from pbc_analysis.stages.benchmark.expected import expected_counts, standardised_ratios
from pbc_analysis.stages.benchmark.funnels import funnel_table
from pbc_analysis.stages.benchmark.params import Params

if TYPE_CHECKING:
    from pbc_analysis.data import Inputs

__all__ = ["BENCHMARK_COLUMNS", "RATE_COLUMNS", "national_benchmark", "national_observed", "national_reference_rates",
           "rates_array"]

RATE_COLUMNS = ["measure", "specialty_code", "age_band", "sex", "rate"]
BENCHMARK_COLUMNS = ["commissioner_code", "practice_code", "measure", "observed", "expected", "ratio", "lower", "upper",
                     "flag", "period"]
_KEY = ["measure", "specialty_code"]


def _table(con: Any, path: Path, columns: dict[str, str]) -> Any:
    """One table file as an Ibis table of ``columns`` (name -> ``"str"`` or ``"int"``): Parquet read as it is,
    CSV (or gzipped CSV) read as text and cast."""
    if path.name.endswith(".parquet"):
        t = con.read_parquet(path)
    else:
        t = con.read_csv(path, all_varchar=True)
    missing = [c for c in columns if c not in t.columns]
    if missing:
        raise BenchmarkError(f"{path}: columns {missing} are missing; the file must follow docs/data_dictionary.md "
                             f"(check it with pbc validate --data-dir {path.parent})")
    return t.select(**{c: (t[c].cast("string") if kind == "str" else t[c].cast("int64")) for c, kind in columns.items()})


def national_observed(data_dir: Path, start_month: str | None = None, end_month: str | None = None,
                      con: Any = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The engine's aggregation: national observed counts by measure and specialty, person-years by age-sex cell.

    Parameters
    ----------
    data_dir : Path
        A validated data directory (``pbc validate``) with ``population``, ``activity`` and ``referrals``.
    start_month, end_month : str, optional
        The window (``YYYY-MM``, inclusive); default the data window (:func:`pbc_analysis.data.window.data_window`).
    con : ibis backend, optional
        An open engine (default: a new DuckDB connection from :func:`pbc_analysis.ingest.engine.connect`, closed
        after).

    Returns
    -------
    observed : pandas.DataFrame
        ``measure, specialty_code, observed`` (int), sorted; only the series with events.
    person_years : pandas.DataFrame
        ``age_band, sex, person_years`` for every age-sex cell (0 where nobody is registered), in
        :data:`pbc_analysis.data.AGE_BANDS` x ``SEXES`` order.

    References
    ----------
    Breslow and Day (1987), ch. 2 (person-years by age-sex cell); see the module docstring.
    """
    files = _data.find_table_files(data_dir)
    absent = [t for t in ("population", "activity", "referrals") if t not in files]
    if absent:
        raise BenchmarkError(f"{data_dir}: national reference rates need tables {absent}, which are missing; "
                             "add them (docs/data_dictionary.md)")
    if start_month is None or end_month is None:
        start_month, end_month = data_window(data_dir)
    own = con is None
    con = _engine.connect() if own else con
    try:
        act = _table(con, files["activity"], {"specialty_code": "str", "pod": "str", "month": "str", "activity": "int"})
        ref = _table(con, files["referrals"], {"specialty_code": "str", "month": "str", "referrals": "int"})
        pop = _table(con, files["population"], {"age_band": "str", "sex": "str", "month": "str", "registered": "int"})
        act, ref, pop = (t.filter((t.month >= start_month) & (t.month <= end_month)) for t in (act, ref, pop))
        o_act = act.group_by(measure=act.pod, specialty_code=act.specialty_code).aggregate(observed=act.activity.sum())
        o_ref = ref.group_by(specialty_code=ref.specialty_code).aggregate(observed=ref.referrals.sum()) \
            .mutate(measure=ibis.literal("referrals"))
        obs = _engine.to_arrow(con, o_act.union(o_ref.select("measure", "specialty_code", "observed"))).to_pandas()
        py = _engine.to_arrow(con, pop.group_by(["age_band", "sex"]).aggregate(registered=pop.registered.sum())).to_pandas()
    finally:
        if own:
            _engine.close(con)
    obs = obs.astype({"measure": "str", "specialty_code": "str", "observed": "int64"})
    obs = obs[obs["observed"] > 0].sort_values(_KEY, ignore_index=True)
    cells = pd.MultiIndex.from_product([_data.AGE_BANDS, _data.SEXES], names=["age_band", "sex"])
    unknown = sorted(set(map(tuple, py[["age_band", "sex"]].astype(str).to_numpy())) - set(cells))
    if unknown:
        raise BenchmarkError(f"{files['population']}: age-sex cells {unknown[:5]} are not in the data dictionary's 38; "
                             f"check it with pbc validate --data-dir {data_dir}")
    reg = py.set_index(["age_band", "sex"])["registered"].reindex(cells, fill_value=0).to_numpy(dtype=np.int64)
    return obs, pd.DataFrame({"age_band": cells.get_level_values(0), "sex": cells.get_level_values(1),
                              "person_years": reg / 12.0})


def _shape_table(data_dir: Path, shape: pd.DataFrame | None) -> pd.DataFrame:
    """The age-sex shape: ``shape``, else the data directory's ``reference_rates``; checked (38 cells a series,
    finite rates >= 0, no duplicates)."""
    if shape is None:
        files = _data.find_table_files(data_dir)
        if "reference_rates" not in files:
            raise BenchmarkError(
                f"{data_dir}: national reference rates need an age-sex shape, but no shape was given and the data "
                "directory has no reference_rates table; add reference_rates.csv (a published national age-sex table, "
                "docs/data_dictionary.md) or pass shape= (the rates cannot be identified from practice totals alone)")
        shape = _data.read_table(files["reference_rates"], "reference_rates")
    missing = [c for c in RATE_COLUMNS if c not in shape.columns]
    if missing:
        raise BenchmarkError(f"the shape has no columns {missing}; it needs {RATE_COLUMNS} (the reference_rates format)")
    s = shape[RATE_COLUMNS].astype({c: "str" for c in RATE_COLUMNS[:4]}).reset_index(drop=True)
    rate = pd.to_numeric(s["rate"], errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~np.isfinite(rate) | (rate < 0))
    if len(bad):
        raise BenchmarkError(f"the shape's rate is missing, not finite or negative at rows {(bad + 1).tolist()[:10]}; "
                             "rates are events per 1,000 a year, >= 0")
    s["rate"] = rate
    dup = s.duplicated(RATE_COLUMNS[:4], keep=False)
    if dup.any():
        raise BenchmarkError(f"the shape has duplicate (measure, specialty_code, age_band, sex) at rows "
                             f"{(np.flatnonzero(dup) + 1).tolist()[:10]}; keep one rate per cell")
    cells = set(_data.AGE_BANDS), set(_data.SEXES)
    off = ~s["age_band"].isin(cells[0]) | ~s["sex"].isin(cells[1])
    if off.any():
        raise BenchmarkError(f"the shape has age bands or sexes outside the data dictionary's at rows "
                             f"{(np.flatnonzero(off) + 1).tolist()[:10]}: {s[off].iloc[0].tolist()}")
    n = s.groupby(_KEY, sort=True).size()
    short = n[n != N_AS]
    if len(short):
        raise BenchmarkError("the shape must have all 38 age-sex cells of each series; "
                             + ", ".join(f"{m} {sp} has {k}" for (m, sp), k in short.head(10).items()))
    return s


def national_reference_rates(data_dir: Path, shape: pd.DataFrame | None = None, *, start_month: str | None = None,
                             end_month: str | None = None, con: Any = None) -> pd.DataFrame:
    """National age-sex reference rates calibrated to every practice's counts (see the module docstring).

    ``r[k, a] = s[k, a] x O_k / E_k`` for each measure and specialty k, so that the national expected count
    ``sum_p sum_a r[k, a] PY[p, a] / 1000`` equals the national observed count ``O_k`` exactly. A series with no
    events keeps rate 0. The aggregation runs in the engine (:func:`national_observed`).

    Parameters
    ----------
    data_dir : Path
        A validated data directory of the whole nation (``pbc validate``).
    shape : pandas.DataFrame, optional
        The age-sex shape ``s`` in the reference_rates format (``measure, specialty_code, age_band, sex, rate`` per
        1,000 a year, all 38 cells per series); default the data directory's ``reference_rates`` table.
    start_month, end_month : str, optional
        The window of ``O`` and ``PY`` (default: the data window).
    con : ibis backend, optional
        An open engine (default: a new DuckDB connection).

    Returns
    -------
    pandas.DataFrame
        ``measure, specialty_code, age_band, sex, rate`` for every series of the shape, sorted by measure and
        specialty, then age band (data dictionary order) and sex: the same bytes on every run when written.

    Raises
    ------
    BenchmarkError
        With no shape (no argument and no reference_rates table); for a shape that is not complete; when the data
        have events in a series the shape lacks (named, with counts), or a series with events has expected 0
        (its shape is 0 in every cell where people are registered).

    References
    ----------
    Breslow and Day (1987), ch. 2; NHS Digital (2023), SHMI methodology (national calibration of expected counts).
    """
    s = _shape_table(data_dir, shape)
    obs, py = national_observed(data_dir, start_month, end_month, con)
    series = s[_KEY].drop_duplicates().sort_values(_KEY, ignore_index=True)
    extra = obs.merge(series, on=_KEY, how="left", indicator=True)
    extra = extra[extra["_merge"] == "left_only"]
    if len(extra):
        raise BenchmarkError("the data have events in series the shape has no rates for: "
                             + ", ".join(f"{m} {sp} ({o:,} events)" for m, sp, o in extra[_KEY + ["observed"]]
                                         .head(10).itertuples(index=False))
                             + "; add their 38 age-sex rows to the shape (reference_rates)")
    cell = pd.MultiIndex.from_frame(py[["age_band", "sex"]])
    k = pd.MultiIndex.from_frame(series).get_indexer(pd.MultiIndex.from_frame(s[_KEY]))
    a = cell.get_indexer(pd.MultiIndex.from_frame(s[["age_band", "sex"]]))
    S = np.zeros((len(series), N_AS))
    S[k, a] = s["rate"].to_numpy(dtype=float)
    E = S @ py["person_years"].to_numpy(dtype=float) / 1000.0
    O = obs.set_index(_KEY)["observed"].reindex(pd.MultiIndex.from_frame(series), fill_value=0).to_numpy(dtype=float)
    zero = (E <= 0) & (O > 0)
    if zero.any():
        bad = series[zero]
        raise BenchmarkError("the shape gives no expected events for series with events (its rates are 0 wherever "
                             "people are registered): " + ", ".join(f"{m} {sp}" for m, sp in bad.itertuples(index=False))
                             + "; give them a non-zero age-sex shape")
    factor = np.where(E > 0, O / np.where(E > 0, E, 1.0), 0.0)
    R = S * factor[:, None]
    out = pd.DataFrame({"measure": np.repeat(series["measure"].to_numpy(), N_AS),
                        "specialty_code": np.repeat(series["specialty_code"].to_numpy(), N_AS),
                        "age_band": np.tile(cell.get_level_values(0).to_numpy(), len(series)),
                        "sex": np.tile(cell.get_level_values(1).to_numpy(), len(series)),
                        "rate": R.reshape(-1)})
    return out.astype({c: "str" for c in RATE_COLUMNS[:4]})


def rates_array(cube: Cube, rates: pd.DataFrame) -> np.ndarray:
    """``rates`` (reference_rates format) as the cube's ``reference_rates[k, a]`` array (NaN: no rate for the series).

    Parameters
    ----------
    cube : Cube
    rates : pandas.DataFrame
        ``measure, specialty_code, age_band, sex, rate``.

    Returns
    -------
    numpy.ndarray
        Series x 38 age-sex cells, per 1,000 a year.

    References
    ----------
    The cube's layout: :class:`~pbc_analysis.stages.benchmark.cube.Cube`.
    """
    out = np.full((len(cube.series), N_AS), np.nan)
    k = pd.MultiIndex.from_frame(cube.series[_KEY].astype("str")).get_indexer(
        pd.MultiIndex.from_frame(rates[_KEY].astype("str")))
    cells = pd.MultiIndex.from_product([_data.AGE_BANDS, _data.SEXES])
    a = cells.get_indexer(pd.MultiIndex.from_frame(rates[["age_band", "sex"]].astype("str")))
    ok = (k >= 0) & (a >= 0)
    out[k[ok], a[ok]] = rates["rate"].to_numpy(dtype=float)[ok]
    return out


def _window_sums(cube: Cube, p: Params) -> pd.DataFrame:
    """Observed and expected counts (all specialties) per practice and measure, summed over the chosen periods,
    as one period labelled ``first`` or ``first to last``."""
    periods = None if p.periods == AUTO else list(p.periods)
    exp = expected_counts(cube, period=p.period, periods=periods, standardisation=p.standardisation, target="reference")
    exp = exp[exp["specialty_code"] == ALL]
    labels = sorted(exp["period"].astype("str").unique())
    label = labels[0] if len(labels) == 1 else f"{labels[0]} to {labels[-1]}"
    sums = exp.groupby(["practice_code", "measure"], observed=True, sort=True)[
        ["observed", "expected", "person_years"]].sum().reset_index()
    sums.insert(0, "period", label)
    sums["specialty_code"] = ALL
    return sums


def national_benchmark(inputs: Inputs, rates: pd.DataFrame, commissioners: pd.DataFrame,
                       params: Params | None = None) -> pd.DataFrame:
    """Every practice of the nation benchmarked against national expected counts, one funnel per measure.

    The benchmarking stage's own functions with ``target="reference"`` and ``rates`` (from
    :func:`national_reference_rates`) in the cube: expected counts (the ``standardisation`` of ``params``; with
    ``age_sex`` alone and rates calibrated on the same window, the national expected equals the observed), summed
    over the chosen periods (``params.period``/``periods``; default every period of the window), O/E, and the
    Spiegelhalter funnel of each measure over all practices (``overdispersion``, ``sr_method``, ``trim_by``,
    ``consistency`` of ``params``). ``upper`` is the funnel's upper limit at ``high_level`` (99.8%), ``lower`` its
    lower limit at ``under_level`` (95%), the levels of the stage's high-referrer and under-referrer flags; ``flag``
    is ``high`` above ``upper``, ``low`` below ``lower``, else ``within`` (``not_assessed`` when the practice has no
    expected events).

    Parameters
    ----------
    inputs : pbc_analysis.data.Inputs
        Validated inputs of the whole nation.
    rates : pandas.DataFrame
        National reference rates (reference_rates format).
    commissioners : pandas.DataFrame
        ``practice_code, commissioner_code`` (and ``commissioner_name``): every practice of ``inputs``.
    params : Params, optional
        Benchmarking settings (default ``Params()``); ``target`` is always ``reference``.

    Returns
    -------
    pandas.DataFrame
        One row per practice x measure, sorted by commissioner, practice and measure: ``commissioner_code,
        practice_code, measure, observed, expected, ratio, lower, upper, flag, period`` (the period label).

    Raises
    ------
    BenchmarkError
        When a practice has no commissioner (named), or a series of the data has no rate.

    References
    ----------
    Breslow and Day (1987), ch. 2; Spiegelhalter (2005); see the module docstring.
    """
    p = dataclasses.replace(params if params is not None else Params(), target="reference")
    need = [c for c in ("practice_code", "commissioner_code") if c not in commissioners.columns]
    if need:
        raise BenchmarkError(f"commissioners has no columns {need}; it needs practice_code, commissioner_code")
    cmap = commissioners.drop_duplicates("practice_code").set_index(
        commissioners.drop_duplicates("practice_code")["practice_code"].astype("str"))["commissioner_code"].astype("str")
    cube = build_cube(inputs)
    orphans = [c for c in cube.practices if c not in cmap.index]
    if orphans:
        raise BenchmarkError(f"{len(orphans)} practices have no commissioner in commissioners: {orphans[:10]}; "
                             "add a row for each (docs/data_dictionary.md, commissioners)")
    cube = dataclasses.replace(cube, reference_rates=rates_array(cube, rates))
    sums = _window_sums(cube, p)
    ratios = standardised_ratios(sums, confidence=())
    units = funnel_table(ratios, overdispersion=p.overdispersion, sr_method=p.sr_method, trim_by=p.trim_by,
                         consistency=p.consistency, levels=(p.high_level, p.under_level)).units
    upper = units[f"limit_upper_{ci_suffix(p.high_level)}"].to_numpy(float)
    lower = units[f"limit_lower_{ci_suffix(p.under_level)}"].to_numpy(float)
    r = units["ratio"].to_numpy(float)
    flag = np.select([~np.isfinite(r) | ~np.isfinite(upper), r > upper, r < lower], ["not_assessed", "high", "low"],
                     default="within")
    pc = units["practice_code"].astype("str")
    out = pd.DataFrame({"commissioner_code": cmap.reindex(pc).to_numpy(), "practice_code": pc.to_numpy(),
                        "measure": units["measure"].astype("str").to_numpy(),
                        "observed": units["observed"].to_numpy(float).round().astype(np.int64),
                        "expected": units["expected"].to_numpy(float), "ratio": r, "lower": lower, "upper": upper,
                        "flag": flag, "period": units["period"].astype("str").to_numpy()})
    return out.sort_values(["commissioner_code", "practice_code", "measure"], ignore_index=True)[BENCHMARK_COLUMNS]
