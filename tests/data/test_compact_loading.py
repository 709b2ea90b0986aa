"""Compact loading of the large tables: text as ordered Categoricals straight from Parquet's dictionaries.

The values loaded are the same as text; only their representation changes (codes of the narrowest integer
width, the values present as sorted categories), and validation reports the same problems either way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pbc_analysis.data import TABLES, load_inputs, read_table
from pbc_analysis.data.checks import _combine, _Ctx, _pandera_problems
from pbc_analysis.data.read import _categorical
from pbc_analysis.data.schema import CATEGORICAL_TABLES

ACTIVITY: dict[str, list] = {
    "practice_code": ["P81002", "P81001", "P81001", "P81002"],
    "provider_code": ["RXN", "RA7", "RA7", "RA7"],
    "specialty_code": ["110", "110", "180", "110"],
    "pod": ["first_op", "first_op", "ae", "elective"],
    "month": ["2005-05", "2005-04", "2005-04", "2005-06"],
    "activity": [3, 2, 0, 1],
    "cost": [300.0, 200.0, 0.0, 1500.5],
}


def test_categorical_of_dictionary_chunks_keeps_the_values_present_sorted() -> None:
    # two row groups with their own dictionaries; "zz" is in a dictionary but in no row; one null cell
    c1 = pa.DictionaryArray.from_arrays(pa.array([0, 1, None, 0], pa.int32()), pa.array(["b", "a", "zz"]))
    c2 = pa.DictionaryArray.from_arrays(pa.array([1, 0], pa.int32()), pa.array(["c", "b"]))
    cat = _categorical(pa.chunked_array([c1, c2]))
    # rows: b, a, null, b, b, c -> categories a, b, c (sorted, only the values present): codes 1, 0, -1, 1, 1, 2
    assert list(cat.categories) == ["a", "b", "c"] and cat.categories.dtype == "str"
    assert cat.codes.tolist() == [1, 0, -1, 1, 1, 2] and cat.codes.dtype == np.int8
    assert cat.ordered
    # plain text encodes the same way
    same = _categorical(pa.chunked_array([pa.array(["b", "a", None, "b"]), pa.array(["b", "c"])]))
    assert same.codes.tolist() == cat.codes.tolist() and list(same.categories) == list(cat.categories)


def test_codes_widen_with_the_number_of_values() -> None:
    # 200 distinct values do not fit int8 (max 127): int16
    values = [f"{i:03d}" for i in range(200)]
    cat = _categorical(pa.array(values[::-1]))
    assert cat.codes.dtype == np.int16 and cat.codes.tolist() == list(range(199, -1, -1))


@pytest.mark.parametrize("fmt", ["csv", "parquet_text", "parquet_dictionary"])
def test_a_large_table_reads_alike_from_csv_and_both_parquet_encodings(tmp_path: Path, fmt: str) -> None:
    df = pd.DataFrame(ACTIVITY)
    if fmt == "csv":
        path = tmp_path / "activity.csv"
        df.to_csv(path, index=False)
    else:
        path = tmp_path / "activity.parquet"
        table = pa.Table.from_pandas(df, preserve_index=False)
        if fmt == "parquet_dictionary":  # Parquet written from categoricals, in two row groups
            table = pa.Table.from_pandas(df.astype({c: "category" for c in df.columns[:5]}), preserve_index=False)
        pq.write_table(table, path, row_group_size=2)
    got = read_table(path, "activity")
    for c in ("practice_code", "provider_code", "specialty_code", "pod", "month"):
        s = got[c]
        assert isinstance(s.dtype, pd.CategoricalDtype) and s.cat.ordered, (fmt, c)
        assert list(s.cat.categories) == sorted(set(ACTIVITY[c])), (fmt, c)
        assert s.astype(str).tolist() == ACTIVITY[c], (fmt, c)
        assert s.array.codes.dtype == np.int8
    # pod: categories ae, elective, first_op -> codes of first_op, first_op, ae, elective = 2, 2, 0, 1
    assert got["pod"].array.codes.tolist() == [2, 2, 0, 1]
    assert got["activity"].dtype == np.int64 and got["activity"].tolist() == [3, 2, 0, 1]
    assert got["cost"].dtype == np.float64 and got["cost"].tolist() == [300.0, 200.0, 0.0, 1500.5]
    assert got["month"].max() == "2005-06" and (got["month"] >= "2005-05").tolist() == [True, False, False, True]


def test_the_sample_loads_large_tables_as_categoricals_and_small_ones_as_str() -> None:
    inputs = load_inputs(start_month="auto", end_month="auto")  # the embedded sample
    for table, df in inputs.tables().items():
        for c, dtype in TABLES[table].dtypes.items():
            if dtype != "str":
                continue
            if table in CATEGORICAL_TABLES:
                assert isinstance(df[c].dtype, pd.CategoricalDtype), (table, c)
                cats = df[c].cat.categories
                assert cats.dtype == "str" and list(cats) == sorted(cats), (table, c)
                # only the values present: every code occurs
                assert (np.bincount(df[c].array.codes, minlength=len(cats)) > 0).all(), (table, c)
            else:
                assert df[c].dtype == "str", (table, c)
        codes, uniques = inputs.factorize(table, TABLES[table].column_names[0])
        assert (pd.Index(uniques)[codes] == df[TABLES[table].column_names[0]].astype(str).to_numpy()).all()
    # the activity codes handed to the analyses are the frame's own (no copy)
    codes, _ = inputs.factorize("activity", "practice_code")
    assert np.shares_memory(codes, inputs.activity["practice_code"].array.codes)


def test_problems_are_the_same_on_categorical_and_text_columns() -> None:
    pods = ["first_op", "outpatient", None, "outpatient", "ae"]
    text = pd.DataFrame({"pod": pd.Series(pods, dtype="str")})
    cat = pd.DataFrame({"pod": pd.Series(pods, dtype="category")})
    got = {}
    for name, df in (("text", text), ("categorical", cat)):
        ctx = _Ctx("activity", df, "activity.parquet", check_dtype=False)
        got[name] = [(p.check, p.rows, p.values, p.n_rows, p.message) for p in _pandera_problems(ctx, "pod")]
    assert got["text"] == got["categorical"]
    # 'outpatient' on data rows 2 and 4; a missing cell on row 3
    checks = {c: (rows, n) for c, rows, _, n, _ in got["categorical"]}
    assert checks == {"not_allowed": ([2, 4], 2), "missing_value": ([3], 1)}


def test_narrow_codes_combine_without_overflow() -> None:
    # int8 codes 127 and 100 on axes of 128 and 200 values: 127 * 200 + 100 = 25,500 (beyond int8), then times
    # 100,000 plus 99,999: 2,550,099,999 (beyond int32); the second row: (0 * 200 + 1) * 100,000 + 0 = 100,000
    a = np.array([127, 0], dtype=np.int8)
    b = np.array([100, 1], dtype=np.int8)
    c = np.array([99_999, 0], dtype=np.int32)
    key = _combine([(a, 128), (b, 200), (c, 100_000)])
    assert key.dtype == np.int64 and key.tolist() == [2_550_099_999, 100_000]


def test_month_index_of_categorical_months() -> None:
    df = pd.DataFrame({"month": pd.Categorical(["2005-04", None, "2005-13", "2006-01"])})
    ctx = _Ctx("activity", df, "activity.parquet", check_dtype=False)
    # 2005 * 12 + 4 - 1 = 24,063; 2006 * 12 + 0 = 24,072; missing and invalid (month 13) -1
    assert ctx.month_index("month").tolist() == [24_063, -1, -1, 24_072]


def test_a_large_table_takes_a_few_bytes_a_row(tmp_path: Path) -> None:
    n = 200_000
    rng = np.random.default_rng(1)
    df = pd.DataFrame({
        "practice_code": [f"P{81000 + i:05d}" for i in rng.integers(0, 300, n)],
        "provider_code": rng.choice(["RA7", "RXN", "RBD"], n), "specialty_code": rng.choice(["100", "110", "300"], n),
        "pod": rng.choice(["first_op", "followup_op", "elective"], n),
        "month": rng.choice([f"2005-{m:02d}" for m in range(1, 13)], n),
        "activity": rng.integers(0, 9, n), "cost": rng.random(n)})
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp_path / "activity.parquet")
    got = read_table(tmp_path / "activity.parquet", "activity")
    # codes: 2 (practice, 300 values: int16) + 4 x 1 bytes; activity and cost 8 + 8: 22 bytes a row
    # (text would take about 70: 5 strings of 3 to 11 characters with 8-byte offsets)
    per_row = got.memory_usage(deep=True, index=False).sum() / n
    assert per_row < 23
    pd.testing.assert_frame_equal(got.astype({c: "str" for c in df.columns[:5]}), df.astype({c: "str" for c in df.columns[:5]}))
