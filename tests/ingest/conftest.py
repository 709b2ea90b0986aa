"""Shared fixtures of the ingest tests: the DuckDB connection and the hand-made fixture's practice-code status."""

from __future__ import annotations

import ibis
import pyarrow as pa
import pytest

from pbc_analysis.ingest import engine, hospital

# the practice-code status the practice reference gives for the fixture (tests/ingest/test_run.py checks it end to end)
FIXTURE_CODES = pa.table({"code": ["P81001", "P81002", "P81003", "P81004", "P81005", "P81006"],
                          "practice_code": ["P81001", "P81002", "P81002", None, None, None],
                          "status": ["included", "included", "merged", "other_commissioner", "not_gp_practice",
                                     "not_open_throughout_window"]})


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    c = engine.connect(engine.EngineSettings(memory_limit="1GB", threads=2), tmp_path_factory.mktemp("duck"))
    yield c
    c.disconnect()


@pytest.fixture(scope="module")
def rules(con):
    return hospital.EventRules("2005-04", "2006-03", engine.materialise(con, ibis.memtable(FIXTURE_CODES), "codes"))
