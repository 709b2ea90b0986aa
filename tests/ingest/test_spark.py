"""The ingest on Spark gives what it gives on DuckDB: the same tables, reconciliation and problems.

One local SparkSession (``local[2]``, one shuffle partition, no UI) serves the module; ``run_ingest`` with
``engine: spark`` and ``spark_master: auto`` uses it. (a) A seeded random event set drawn from the hand-made
fixture (every rule's edge case: duplicate ids, outside the window, unknown, pseudo, merged and closed practices,
missing costs priced, leading-zero codes, a header-less CSV, a ``.csv.gz``) gives identical keys and counts and
money within 1e-9 relative, and the same reconciliation; the same set made dirty (unparseable dates, money and
counts, unknown codes, missing values) gives the same problems of each source, naming the same rows. (b) The round trip of
``pbc synth --events`` (8 practices, 24 months) gives the same tables on Spark as on DuckDB and as the
aggregated tables. Skips, saying why, when PySpark or Java is missing (``make venv-spark``; Java from Debian's
``default-jre-headless``).
"""

from __future__ import annotations

import csv
import gzip
import json
import random
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_round_trip import _nonzero, _read  # the round trip's readers (tests/ingest/ is on sys.path: no __init__.py)

from pbc_analysis.core import paths
from pbc_analysis.core.strict_yaml import load_yaml
from pbc_analysis.ingest import engine
from pbc_analysis.ingest import spark as spark_engine
from pbc_analysis.ingest.columnmap import load_map
from pbc_analysis.ingest.params import IngestParams
from pbc_analysis.ingest.run import OUTPUT_TABLES, run_ingest
from pbc_analysis.ingest.sources import read_source, source_problems
from pbc_analysis.synth import SynthParams, generate
from pbc_analysis.synth.write import write_result_events, write_tables

pytestmark = [pytest.mark.spark,
              # PySpark 4.0's and Ibis 12's pandas conversions use options pandas 3 deprecates (inside them, not here)
              pytest.mark.filterwarnings("ignore::DeprecationWarning"), pytest.mark.filterwarnings("ignore::FutureWarning"),
              pytest.mark.filterwarnings("ignore:.*(copy keyword|infer_string).*")]
#: settings for small data: one shuffle partition, no adaptive re-planning, no code generation (most of each query's
#: time on a few hundred rows); the results are the same with Spark's defaults (``make bench`` uses those)
SMALL = {"spark.sql.shuffle.partitions": "1", "spark.sql.adaptive.enabled": "false", "spark.sql.codegen.wholeStage": "false",
         "spark.sql.codegen.factoryMode": "NO_CODEGEN", "spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false",
         "spark.sql.session.timeZone": "UTC"}

FIX = Path(__file__).parent / "fixtures" / "events"
FILES = {"outpatients": "outpatients.csv", "admitted": "admitted.csv.gz", "ae": "ae.csv", "registrations": "registrations.csv",
         "practice_reference": "epraccur.csv", "practice_attributes": "practice_attributes.csv", "succession": "succession.csv",
         "provider_reference": "providers.csv", "prices": "prices.csv"}
KEYS = {"activity": ["practice_code", "provider_code", "specialty_code", "pod", "month"],
        "referrals": ["practice_code", "provider_code", "specialty_code", "month"]}
MONEY = ("cost", "price", "imd_score")
SEEDS = (11, 2024)


@pytest.fixture(scope="module")
def session():
    why = spark_engine.available()
    if why:
        pytest.skip(f"the Spark tests need PySpark and Java: {why}")
    pytest.importorskip("pyspark")
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master("local[2]").config("spark.pyspark.python", sys.executable)
    for key, value in SMALL.items():
        builder = builder.config(key, value)
    s = builder.getOrCreate()
    s.sparkContext.setLogLevel("FATAL")
    yield s
    s.stop()
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    if gateway is not None:   # the JVM outlives stop(): end it, so that the rest of the suite has its memory (1.2 GB)
        proc = getattr(gateway, "proc", None)
        gateway.shutdown()
        if proc is not None:
            proc.terminate()
            proc.wait(60)
        SparkContext._gateway = SparkContext._jvm = None


def _rows(name: str) -> tuple[list[str], list[list[str]]]:
    with open(FIX / name, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def _write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", newline="", encoding="utf-8") as f:  # type: ignore[operator]
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def _draw(rng: random.Random, rows: list[list[str]], n: int, dup_share: float) -> list[list[str]]:
    """``n`` rows drawn with replacement, each with a fresh id unless it repeats an earlier one (a duplicate id)."""
    out: list[list[str]] = []
    for i in range(n):
        row = list(rng.choice(rows))
        row[0] = out[rng.randrange(len(out))][0] if out and rng.random() < dup_share else f"{row[0][:2]}R{i:05d}"
        out.append(row)
    return out


def random_events(folder: Path, seed: int, dirty: bool = False) -> Path:
    """A random event set drawn from the fixture (rules' edge cases mixed at random); ``dirty``: with invalid values too."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("registrations.csv", "epraccur.csv", "practice_attributes.csv", "succession.csv", "providers.csv", "prices.csv"):
        shutil.copyfile(FIX / name, folder / name)   # epraccur.csv has no header
    head, op = _rows("outpatients.csv")
    op = _draw(rng, op, 300, 0.05)
    for r in op:
        if rng.random() < 0.1 and r[4] in ("100", "110"):
            r[11] = ""                                                # missing cost: priced from the price table
        if rng.random() < 0.05:
            r[2] = rng.choice(["V81997", "P89999", " P81001 ", ""])   # pseudo, unknown, padded, missing practice
        if rng.random() < 0.05:
            r[8] = rng.choice(["2005-3-31", "2006-04-01", "2005-04-01"])  # unpadded; outside; first day of the window
    if dirty:
        for i, (col, bad) in enumerate([(8, "2005-13-01"), (8, "10/05/2005"), (11, "1,000"), (11, "£5"), (5, "8"), (3, ""),
                                        (9, "yesterday")]):
            for r in rng.sample(op, 2 + i % 3):
                r[col] = bad
    _write(folder / "outpatients.csv", head, op)
    head, ap = _rows("admitted.csv")
    rng.shuffle(ap)                                                   # spells' episodes in random order
    if dirty:
        for r, bad in zip(rng.sample(ap, 3), ["1.5", "x", "2.0"]):
            r[2] = bad                                                # EPIORDER: not whole, not a number, whole
    _write(folder / "admitted.csv.gz", head, ap)
    head, ae = _rows("ae.csv")
    _write(folder / "ae.csv", head, _draw(rng, ae, 120, 0.05))
    return folder


def _params(folder: Path, engine: str, **extra) -> IngestParams:
    sources = {k: {"path": str(folder / f)} for k, f in FILES.items()}
    return IngestParams.from_mapping({"sources": sources, "commissioners": ["5NG"], "tables": str(FIX / "tables"),
                                      "memory_limit": "1GB", "threads": 2, "engine": engine, **extra})


def _table(d: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(d / f"{name}.parquet")


def assert_same_tables(a: Path, b: Path) -> None:
    for name in OUTPUT_TABLES:
        x, y = _table(a, name), _table(b, name)
        assert list(x.columns) == list(y.columns) and list(x.dtypes) == list(y.dtypes), name
        assert len(x) == len(y), name
        exact = [c for c in x.columns if c not in MONEY]
        assert x[exact].equals(y[exact]), name
        for c in set(MONEY) & set(x.columns):
            np.testing.assert_allclose(x[c].astype(float), y[c].astype(float), rtol=1e-9, err_msg=f"{name}.{c}")
        if x.equals(y):   # the same values in the same order: the same bytes (one writer for both engines)
            assert (a / f"{name}.parquet").read_bytes() == (b / f"{name}.parquet").read_bytes(), name
    assert (a / "reconciliation.csv").read_text() == (b / "reconciliation.csv").read_text()


def _both(tmp: Path, folder: Path, **extra) -> tuple[Path, Path]:
    run_ingest(_params(folder, "duckdb", **extra), tmp / "duckdb", progress=False)
    run_ingest(_params(folder, "spark", **extra), tmp / "spark", progress=False)
    return tmp / "duckdb", tmp / "spark"


@pytest.mark.parametrize("seed", SEEDS[:1])
def test_random_events_same_tables(session, tmp_path, seed):
    folder = random_events(tmp_path / "extracts", seed)
    duck, spark = _both(tmp_path, folder)
    assert_same_tables(duck, spark)
    recon = pd.read_csv(duck / "reconciliation.csv")
    excluded = set(recon.loc[recon.outcome == "excluded", "reason"])
    assert {"duplicate_event_id", "outside_window", "pseudo_practice", "unknown_practice", "practice_code_missing"} <= excluded
    assert recon.loc[recon.outcome == "aggregated", "priced_rows"].sum() > 0           # missing costs were priced
    engines = [json.loads((d / "ingest.json").read_text())["engine"] for d in (duck, spark)]
    assert [e["name"] for e in engines] == ["duckdb", "spark"] and engines[1]["version"].startswith("4.0")
    manifests = [{k: v for k, v in json.loads((d / "ingest.json").read_text()).items() if k != "engine"} for d in (duck, spark)]
    assert manifests[0] == manifests[1]   # the same settings, extracts and rows; only the engine differs


def _problems(con, folder: Path, kind: str, name: str, cmap: str) -> list[tuple]:
    src = read_source(con, kind, folder / name, load_map(cmap, kind))
    return [(p.file, p.table, p.column, p.rows, p.values, p.message, p.fix, p.n_rows, p.check) for p in source_problems(con, src)]


def test_bad_input_same_problems(session, tmp_path):
    folder = random_events(tmp_path / "extracts", SEEDS[1], dirty=True)
    duck_con = engine.connect(engine.EngineSettings(memory_limit="1GB", threads=2))
    spark_con = engine.connect(engine.EngineSettings(engine="spark"))
    try:
        for kind, name, cmap in (("outpatients", "outpatients.csv", "hes_opa"), ("admitted", "admitted.csv.gz", "hes_apc")):
            duck, spark = _problems(duck_con, folder, kind, name, cmap), _problems(spark_con, folder, kind, name, cmap)
            assert duck == spark, kind
            checks = {p[8] for p in duck}
            assert checks >= ({"unparseable", "unknown_code", "missing_value"} if kind == "outpatients" else {"unparseable"}), kind
    finally:
        engine.close(duck_con)
        engine.close(spark_con)
    epiorder = next(p for p in duck if p[2] == "EPIORDER")
    assert epiorder[7] == 2 and "'1.5'" in epiorder[5] and "'x'" in epiorder[5]    # 2.0 is a whole number


def test_params_engine_settings():
    p = _params(FIX, "spark", spark_master="local[2]", spark_conf={"spark.driver.memory": "2g"})
    assert p.engine_settings().engine == "spark" and p.engine_settings().spark_conf == (("spark.driver.memory", "2g"),)
    with pytest.raises(Exception) as info:
        _params(FIX, "flink", spark_master="local[x]", spark_conf={"driver.memory": "2g", "spark.executor.cores": 2})
    text = str(info.value)
    assert "engine" in text and "spark_master" in text and "'driver.memory' is not a Spark setting" in text
    assert "spark_conf.spark.executor.cores: values are text" in text
    sources = {k: {"path": str(FIX / f)} for k, f in FILES.items()} | {"ae": {"table": "db.ae; DROP TABLE x"}}
    with pytest.raises(Exception, match="a table name"):
        IngestParams.from_mapping({"sources": sources, "engine": "spark"})
    with pytest.raises(Exception, match="needs engine: spark"):
        IngestParams.from_mapping({"sources": sources | {"ae": {"table": "db.ae"}}})


@pytest.mark.parametrize("fmt,want", [("%Y-%m-%d", "y'-'M'-'d"), ("%Y%m%d", "yyyyMMdd"), ("%d%b%Y", "ddMMMyyyy"),
                                      ("%d/%m/%Y T%H", "d'/'M'/'y' T'H"), ("it's %Y", "'it''s 'y")])
def test_java_pattern(fmt, want):
    assert spark_engine.java_pattern(fmt) == want


def test_java_pattern_refuses_unknown_directive():
    with pytest.raises(ValueError, match="%Q"):
        spark_engine.java_pattern("%Y-%Q")


def test_table_source_and_row_numbers(session, tmp_path):
    """A catalogue table as a source, and ``_row`` exact across the partitions of a CSV split in four."""
    con = engine.connect(engine.EngineSettings(engine="spark"))
    path = tmp_path / "ae.csv"
    head, ae = _rows("ae.csv")
    _write(path, head, _draw(random.Random(5), ae, 4000, 0.0))
    session.conf.set("spark.sql.files.maxPartitionBytes", str(path.stat().st_size // 4 + 1))
    try:
        src = read_source(con, "ae", path, load_map("ecds", "ae"))
        rows = con.to_pyarrow(src.table.select("_row", "event_id").order_by("_row"))
    finally:
        session.conf.unset("spark.sql.files.maxPartitionBytes")
    assert rows["_row"].to_pylist() == list(range(1, 4001))
    assert rows["event_id"].to_pylist() == [f"AER{i:05d}" for i in range(4000)]
    session.read.csv(str(FIX / "providers.csv"), header=True).createOrReplaceTempView("pbc_test_providers")
    src = read_source(con, "provider_reference", Path("pbc_test_providers"), load_map("providers", "provider_reference"),
                      table="pbc_test_providers")
    got = con.to_pyarrow(src.table.order_by("_row"))
    assert src.file == "table pbc_test_providers" and got["provider_code"].to_pylist()[:2] == ["RA7", "RBA"]
    engine.close(con)
    assert session.catalog.tableExists("pbc_test_providers") and not session.catalog.tableExists("src_ae_rows")


def test_round_trip_synth_events(session, tmp_path):
    """``pbc synth --events`` (8 practices, 24 months): Spark's tables are DuckDB's, and the aggregated tables."""
    pct = tmp_path / "pct"
    result = generate(SynthParams(n_practices=8, n_months=24))
    write_tables(result, pct)
    write_result_events(result, pct)
    config = paths.CONFIGS_DIR / "ingest_sample.yaml"
    cfg = load_yaml(config.read_text(encoding="utf-8"), where=str(config))["ingest"]
    section = json.loads(json.dumps(cfg).replace("data/sample-events", str(pct))) | {"memory_limit": "1GB", "threads": 2}
    for engine_name in ("duckdb", "spark"):
        run_ingest(IngestParams.from_mapping(section | {"engine": engine_name}), tmp_path / engine_name, progress=False)
    assert_same_tables(tmp_path / "duckdb", tmp_path / "spark")
    for name, count in (("activity", "activity"), ("referrals", "referrals")):
        want = _nonzero(_read(pct, name), count, KEYS[name])
        got = _nonzero(_read(tmp_path / "spark", name), count, KEYS[name])
        assert len(got) == len(want) > 0 and got[KEYS[name]].equals(want[KEYS[name]]), name
        assert (got[count].astype(np.int64).to_numpy() == want[count].astype(np.int64).to_numpy()).all(), name
