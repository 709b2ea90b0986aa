"""Tests of pbc_analysis.data: the data model and validated loading.

A tiny valid dataset (3 practices, 2 providers, 2 specialties, 3 months: 2005-04 to 2005-06) is built
by :func:`make_dataset` from the hand-written tables in ``tests/fixtures/tiny`` plus generated
population, activity and referrals; each test breaks one thing and checks that the error names the
file, the column, the rows (1-based data rows, header = row 0) and the values.
"""

from __future__ import annotations

import csv
import gzip
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pbc_analysis import data as D
from pbc_analysis.data import TABLES, DataValidationError, Inputs, Problem, Window, find_table_files, load_inputs, read_table, validate
from pbc_analysis.data import checks as data_checks

FIXTURES = Path(__file__).parents[1] / "fixtures" / "tiny"
START, END = "2005-04", "2005-06"
MONTHS = ["2005-04", "2005-05", "2005-06"]
PRACTICES = ["P81001", "P81002", "P81003"]
PROVIDERS = ["RA7", "RXN"]
SERIES = [("110", "first_op"), ("110", "elective"), ("180", "ae")]
PRICES = {("110", "first_op"): 120.0, ("110", "elective"): 1850.0, ("180", "ae"): 85.0}


# --------------------------------------------------------------------------------------------------
# The tiny dataset and helpers to break it
# --------------------------------------------------------------------------------------------------

def make_dataset(d: Path) -> Path:
    """Write the tiny valid dataset into ``d``; return ``d``."""
    d.mkdir(parents=True, exist_ok=True)
    for f in FIXTURES.glob("*.csv"):
        shutil.copy(f, d / f.name)
    pop = [["practice_code", "month", "age_band", "sex", "registered"]]
    for p in PRACTICES:
        for m in MONTHS:
            for b, band in enumerate(D.AGE_BANDS):
                for s, sex in enumerate(D.SEXES):
                    pop.append([p, m, band, sex, str(50 + 3 * b + s)])
    act = [["practice_code", "provider_code", "specialty_code", "pod", "month", "activity", "cost"]]
    i = 0
    for p in PRACTICES:
        for prov in PROVIDERS:
            for spec, pod in SERIES:
                for m in MONTHS:
                    n = (i * 7) % 5
                    i += 1
                    act.append([p, prov, spec, pod, m, str(n), repr(n * PRICES[(spec, pod)])])
    ref = [["practice_code", "provider_code", "specialty_code", "month", "referrals"]]
    for j, (p, prov, m) in enumerate((p, prov, m) for p in PRACTICES for prov in PROVIDERS for m in MONTHS):
        ref.append([p, prov, "110", m, str(j % 4)])
    rr = [["measure", "specialty_code", "age_band", "sex", "rate"]]
    for measure, spec in (("referrals", "110"), ("first_op", "110"), ("ae", "180")):
        for b, band in enumerate(D.AGE_BANDS):
            for sex in D.SEXES:
                rr.append([measure, spec, band, sex, f"{1.5 + b * 0.25:.4f}"])
    cm = [["practice_code", "commissioner_code", "commissioner_name"]] + [[p, "5QA", "Testshire PCT"] for p in PRACTICES]
    for name, rows in (("population", pop), ("activity", act), ("referrals", ref), ("reference_rates", rr),
                       ("commissioners", cm)):
        write_rows(d / f"{name}.csv", rows[0], rows[1:])
    return d


def act_row(practice: str, provider: str, series: tuple[str, str], month: str) -> int:
    """1-based data row number of an activity row in the tiny dataset."""
    return ((PRACTICES.index(practice) * 2 + PROVIDERS.index(provider)) * 3 + SERIES.index(series)) * 3 \
        + MONTHS.index(month) + 1


def read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def write_rows(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def set_cell(d: Path, table: str, row: int, column: str, value: str) -> None:
    path = d / f"{table}.csv"
    header, rows = read_rows(path)
    rows[row - 1][header.index(column)] = value
    write_rows(path, header, rows)


def get_cell(d: Path, table: str, row: int, column: str) -> str:
    header, rows = read_rows(d / f"{table}.csv")
    return rows[row - 1][header.index(column)]


def drop_rows(d: Path, table: str, keep) -> list[int]:
    """Keep rows where ``keep(dict_row)``; return the dropped 1-based row numbers."""
    path = d / f"{table}.csv"
    header, rows = read_rows(path)
    dropped = [i for i, r in enumerate(rows, 1) if not keep(dict(zip(header, r)))]
    write_rows(path, header, [r for r in rows if keep(dict(zip(header, r)))])
    return dropped


def load(d: Path, **kw) -> Inputs:
    return load_inputs(d, start_month=START, end_month=END, **kw)


def fails(d: Path, **kw) -> DataValidationError:
    with pytest.raises(DataValidationError) as info:
        load(d, **kw)
    return info.value


def the(err: DataValidationError, check: str, table: str | None = None, column: str | None = None) -> Problem:
    """The one problem of ``check`` (and table/column); also checks the report names it."""
    found = [p for p in err.problems if p.check == check and (table is None or p.table == table)
             and (column is None or p.column == column)]
    assert len(found) == 1, f"expected one {check} problem for {table}.{column}, got:\n{err}"
    p = found[0]
    text = str(err)
    assert str(p).replace("\n", "\n  ") in text
    if p.file:
        assert Path(p.file).name in text
    if p.column:
        assert f"column '{p.column}'" in text
    if p.rows:
        assert ("rows: " + ", ".join(map(str, p.rows[:D.SHOW_ROWS]))) in text
    if p.values:
        assert "values: " + D._fmt_value(p.values[0]) in text
    return p


@pytest.fixture
def ds(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "data")


# --------------------------------------------------------------------------------------------------
# Valid data
# --------------------------------------------------------------------------------------------------

def test_valid_load_returns_exactly_the_rows_in_the_files(ds: Path) -> None:
    inputs = load(ds)
    assert inputs.window == Window(START, END)
    assert set(inputs.files) == set(TABLES)
    for table, spec in TABLES.items():
        df = getattr(inputs, table)
        header, rows = read_rows(ds / f"{table}.csv")
        assert list(df.columns) == spec.column_names
        assert len(df) == len(rows), table
        for c in spec.column_names:
            raw = [r[header.index(c)] for r in rows]
            dtype = spec.dtypes[c]
            # the text columns of the large tables load as ordered categoricals of str (data/read.py)
            loaded = "category" if spec.categorical and dtype == "str" else dtype
            assert str(df[c].dtype) == loaded, (table, c, df[c].dtype)
            if loaded == "category":
                assert df[c].cat.categories.dtype == "str" and df[c].cat.ordered, (table, c)
            if dtype == "str":
                got = [None if pd.isna(v) else v for v in df[c]]
                assert got == [v if v != "" else None for v in raw], (table, c)
            elif dtype == "int64":
                assert df[c].tolist() == [int(v) for v in raw]
            elif dtype == "float64":
                assert df[c].tolist() == [float(v) for v in raw]
            else:
                assert df[c].tolist() == [v == "true" for v in raw]


def test_types_codes_and_missing_engagement(ds: Path) -> None:
    # a provider code with leading zeros stays text
    for t in ("providers", "activity", "referrals", "provider_changes"):
        p = ds / f"{t}.csv"
        p.write_text(p.read_text().replace("RXN", "007"))
    inputs = load(ds)
    assert inputs.providers["provider_code"].tolist() == ["RA7", "007"]
    assert inputs.activity["specialty_code"].dtype == "category"
    assert inputs.activity["specialty_code"].cat.categories.dtype == "str"
    assert inputs.activity["activity"].dtype == np.int64 and inputs.activity["cost"].dtype == np.float64
    assert inputs.practices["single_handed"].dtype == bool
    eng = inputs.engagement.set_index("practice_code")["engaged_from"]
    assert pd.isna(eng["P81002"]) and eng["P81001"] == "2005-05"
    assert inputs.practices.loc[1, "practice_name"] == "Smith, Jones and Partners"


def test_csv_gz_parquet_and_bom_are_accepted(ds: Path) -> None:
    expected = load(ds)
    act = pd.read_csv(ds / "activity.csv", dtype={"specialty_code": str})
    act["practice_code"] = act["practice_code"].astype("category")  # written as a Parquet dictionary column
    act["activity"] = act["activity"].astype("int32")  # any integer width is fine
    (ds / "activity.csv").unlink()
    act.to_parquet(ds / "activity.parquet", index=False)
    with gzip.open(ds / "population.csv.gz", "wb") as f:
        f.write((ds / "population.csv").read_bytes())
    (ds / "population.csv").unlink()
    (ds / "practices.csv").write_bytes(b"\xef\xbb\xbf" + (ds / "practices.csv").read_bytes())
    (ds / "providers.csv").write_bytes((ds / "providers.csv").read_bytes().replace(b"\n", b"\r\n"))
    got = load(ds)
    assert got.files["activity"].name == "activity.parquet"
    assert got.files["population"].name == "population.csv.gz"
    for t in TABLES:
        pd.testing.assert_frame_equal(getattr(got, t), getattr(expected, t))


def test_quoted_commas_and_newlines_are_kept(ds: Path) -> None:
    path = ds / "provider_changes.csv"
    path.write_text(path.read_text() + 'RA7,all,all,2005-06,"two lines:\nfirst, then second"\n')
    set_cell(ds, "provider_changes", 1, "pod", "bad")
    p = the(fails(ds), "not_allowed", table="provider_changes", column="pod")
    assert p.rows == [1]
    set_cell(ds, "provider_changes", 1, "pod", "followup_op")
    df = load(ds).provider_changes
    assert df["description"].tolist()[2] == "two lines:\nfirst, then second" and len(df) == 3


def test_loaded_tables_pass_their_pandera_schemas(ds: Path) -> None:
    inputs = load(ds)
    for table, spec in TABLES.items():
        df = getattr(inputs, table)   # categorical text columns are validated as their text
        spec.schema.validate(df.astype({c: "str" for c in df.select_dtypes("category").columns}), lazy=True)


def test_checks_on_distinct_values_match_checks_on_rows(ds: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Text columns of large tables are checked on their distinct values; the problems must be identical."""
    set_cell(ds, "activity", 3, "pod", "outpatient")
    set_cell(ds, "activity", 9, "pod", "outpatient")
    set_cell(ds, "activity", 11, "pod", "")
    set_cell(ds, "population", 5, "month", "2005-13")
    set_cell(ds, "practices", 2, "practice_code", "p81002")
    set_cell(ds, "high_cost_patients", 1, "financial_year", "2005/07")
    set_cell(ds, "engagement", 2, "engaged_from", "2005-5")
    by_row = fails(ds).problems
    monkeypatch.setattr(data_checks, "DEDUPE_MIN_ROWS", 0)
    by_value = fails(ds).problems
    assert by_value == by_row
    assert {p.check for p in by_row} >= {"not_allowed", "missing_value", "bad_month", "bad_pattern",
                                         "bad_financial_year"}


def test_optional_tables_may_be_absent(ds: Path) -> None:
    (ds / "budgets.csv").unlink()
    (ds / "provider_changes.csv").unlink()
    inputs = load(ds)
    assert inputs.budgets is None and inputs.provider_changes is None
    assert "budgets" not in inputs.files


def test_paths_override_a_table(ds: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere" / "my_prices.csv"
    other.parent.mkdir()
    shutil.move(ds / "tariff.csv", other)
    assert load(ds, paths={"tariff": other}).files["tariff"] == other
    err = fails(ds, paths={"tarif": other})
    assert the(err, "unknown_table").table == "tarif"


def test_read_table_converts_types(ds: Path) -> None:
    df = read_table(ds / "practices.csv", "practices")
    assert df["imd_score"].tolist() == [23.4, 41.0, 12.75]
    assert df["single_handed"].tolist() == [False, True, False]
    set_cell(ds, "practices", 2, "imd_score", "high")
    with pytest.raises(DataValidationError) as info:
        read_table(ds / "practices.csv", "practices")
    assert the(info.value, "wrong_type", column="imd_score").rows == [2]


def test_window_helpers() -> None:
    w = Window("2005-02", "2006-04")
    assert w.months[:3] == ["2005-02", "2005-03", "2005-04"] and len(w.months) == 15
    assert w.financial_years == ["2004/05", "2005/06", "2006/07"]
    assert Window("1999-04", "2000-03").financial_years == ["1999/00"]
    with pytest.raises(ValueError):
        Window("2005-13", "2006-01")
    with pytest.raises(ValueError):
        Window("2006-01", "2005-01")


def test_find_table_files(ds: Path) -> None:
    (ds / "ground_truth.json").write_text("{}")
    (ds / "notes.txt").write_text("hello")
    files = find_table_files(ds)
    assert set(files) == set(TABLES) and files["activity"] == ds / "activity.csv"
    pd.read_csv(ds / "activity.csv").to_parquet(ds / "activity.parquet")
    with pytest.raises(DataValidationError) as info:
        find_table_files(ds)
    p = the(info.value, "duplicate_file", table="activity")
    assert "activity.csv" in p.message and "activity.parquet" in p.message


# --------------------------------------------------------------------------------------------------
# Files and structure
# --------------------------------------------------------------------------------------------------

def test_missing_required_table_names_the_expected_files(ds: Path) -> None:
    (ds / "tariff.csv").unlink()
    (ds / "Tariff.xlsx").write_bytes(b"PK")
    p = the(fails(ds), "missing_table", table="tariff")
    for name in ("tariff.csv", "tariff.csv.gz", "tariff.parquet", "Tariff.xlsx"):
        assert name in p.message


def test_optional_table_present_but_unreadable_is_never_silently_dropped(ds: Path) -> None:
    (ds / "budgets.csv").rename(ds / "Budgets.CSV")
    (ds / "provider_changes.csv").unlink()
    (ds / "provider_changes.csv").mkdir()
    with pytest.raises(DataValidationError) as info:
        find_table_files(ds)
    by = {p.check: p for p in info.value.problems}
    assert set(by) == {"misnamed_file", "not_a_file"}
    assert by["misnamed_file"].table == "budgets" and by["misnamed_file"].fix.startswith("rename it to budgets.csv")
    assert by["not_a_file"].table == "provider_changes" and "is a directory" in by["not_a_file"].message
    err = fails(ds)
    assert {p.check for p in err.problems} == {"misnamed_file", "not_a_file"}


def test_missing_data_directory(tmp_path: Path) -> None:
    p = the(fails(tmp_path / "nowhere"), "data_dir")
    assert "does not exist" in p.message and p.file.endswith("nowhere")


def test_two_files_for_one_table(ds: Path) -> None:
    with gzip.open(ds / "referrals.csv.gz", "wb") as f:
        f.write((ds / "referrals.csv").read_bytes())
    p = the(fails(ds), "duplicate_file", table="referrals")
    assert "referrals.csv" in p.file and "referrals.csv.gz" in p.file


def test_empty_file_zero_bytes(ds: Path) -> None:
    (ds / "specialties.csv").write_bytes(b"")
    p = the(fails(ds), "empty_file", table="specialties")
    assert p.file.endswith("specialties.csv") and "0 bytes" in p.message


def test_empty_file_header_only(ds: Path) -> None:
    (ds / "budgets.csv").write_text("practice_code,financial_year,budget\n")
    p = the(fails(ds), "no_rows", table="budgets")
    assert p.file.endswith("budgets.csv") and p.rows == [0]


@pytest.mark.parametrize("delim,name", [(";", "semicolon"), ("\t", "tab")])
def test_wrong_delimiter(ds: Path, delim: str, name: str) -> None:
    path = ds / "practices.csv"
    header, rows = read_rows(path)
    with open(path, "w", newline="") as f:
        csv.writer(f, delimiter=delim, lineterminator="\n").writerows([header] + rows)
    p = the(fails(ds), "delimiter", table="practices")
    assert name in p.message and p.rows == [0]
    assert "practice_code" in p.values[0]


def test_wrong_encoding_reports_position_and_line(ds: Path) -> None:
    path = ds / "practices.csv"
    text = path.read_text().replace("Riverside Health Centre", "Riverside Health Caf\u00e9")
    path.write_bytes(text.encode("cp1252"))
    p = the(fails(ds), "encoding", table="practices")
    pos = text.encode("cp1252").index(b"\xe9")
    assert f"byte position {pos:,}" in p.message and "line 4" in p.message
    assert p.rows == [3] and "Caf\\xe9" in p.values[0]
    assert "UTF-8" in p.fix


def test_utf16_is_reported(ds: Path) -> None:
    path = ds / "providers.csv"
    path.write_bytes(path.read_text().encode("utf-16"))
    assert "UTF-16" in the(fails(ds), "encoding", table="providers").message


def test_missing_column(ds: Path) -> None:
    path = ds / "activity.csv"
    header, rows = read_rows(path)
    i = header.index("cost")
    write_rows(path, header[:i] + header[i + 1:], [r[:i] + r[i + 1:] for r in rows])
    p = the(fails(ds), "missing_column", table="activity", column="cost")
    assert p.file.endswith("activity.csv") and p.rows == [0]


def test_extra_column(ds: Path) -> None:
    path = ds / "providers.csv"
    header, rows = read_rows(path)
    write_rows(path, header + ["Has_AE "], [r + ["x"] for r in rows])
    p = the(fails(ds), "extra_column", table="providers", column="Has_AE ")
    assert p.rows == [0] and p.values == ["Has_AE "]


def test_wrong_number_of_fields_and_row_numbers_after_it(ds: Path) -> None:
    path = ds / "practices.csv"
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace('"Smith, Jones and Partners"', "Smith, Jones and Partners")  # data row 2
    lines[3] = lines[3].replace("12.75", "abc")  # data row 3
    path.write_text("\n".join(lines) + "\n")
    err = fails(ds)
    p = the(err, "field_count", table="practices")
    assert p.rows == [2] and "Smith" in p.values[0]
    assert the(err, "wrong_type", table="practices", column="imd_score").rows == [3]


# --------------------------------------------------------------------------------------------------
# Cells
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("table,row,column,value,check", [
    ("activity", 5, "activity", "abc", "wrong_type"),
    ("activity", 7, "activity", "2.5", "wrong_type"),
    ("activity", 8, "cost", "\u00a312.00", "wrong_type"),
    ("population", 40, "registered", "1,200", "wrong_type"),
    ("practices", 1, "single_handed", "yes", "wrong_type"),
    ("tariff", 2, "price", "nan", "wrong_type"),
    ("referrals", 4, "month", "2005-13", "bad_month"),
    ("population", 3, "month", "2005/04", "bad_month"),
    ("tariff", 1, "financial_year", "2005/07", "bad_financial_year"),
    ("high_cost_patients", 2, "financial_year", "2005-06", "bad_financial_year"),
])
def test_wrong_type(ds: Path, table: str, row: int, column: str, value: str, check: str) -> None:
    set_cell(ds, table, row, column, value)
    p = the(fails(ds), check, table=table, column=column)
    assert p.file.endswith(f"{table}.csv") and p.rows == [row] and p.values == [value] and p.n_rows == 1


def test_wrong_type_reports_every_cell(ds: Path) -> None:
    for r in (3, 9, 30):
        set_cell(ds, "activity", r, "activity", "n/a")
    set_cell(ds, "activity", 12, "activity", "")
    err = fails(ds)
    p = the(err, "wrong_type", table="activity", column="activity")
    assert p.rows == [3, 9, 30] and p.values == ["n/a"] and p.n_rows == 3
    assert the(err, "missing_value", table="activity", column="activity").rows == [12]
    assert "rows: 3, 9, 30 (3 rows in total)" in str(err)


@pytest.mark.parametrize("table,row,column", [
    ("activity", 4, "activity"), ("activity", 2, "cost"), ("referrals", 6, "referrals"),
    ("population", 100, "registered"), ("budgets", 3, "budget"),
])
def test_negative_count_or_cost(ds: Path, table: str, row: int, column: str) -> None:
    set_cell(ds, table, row, column, "-3")
    p = the(fails(ds), "negative", table=table, column=column)
    assert p.rows == [row] and p.values in ([-3], [-3.0]) and p.file.endswith(f"{table}.csv")


@pytest.mark.parametrize("table,row,column,value", [
    ("tariff", 3, "price", "0"), ("high_cost_patients", 1, "cost", "0.0"),
])
def test_not_positive(ds: Path, table: str, row: int, column: str, value: str) -> None:
    set_cell(ds, table, row, column, value)
    p = the(fails(ds), "not_positive", table=table, column=column)
    assert p.rows == [row] and p.values == [0.0]


def test_imd_out_of_range(ds: Path) -> None:
    set_cell(ds, "practices", 3, "imd_score", "101.5")
    p = the(fails(ds), "out_of_range", table="practices", column="imd_score")
    assert p.rows == [3] and p.values == [101.5]


@pytest.mark.parametrize("table,row,column", [
    ("practices", 2, "practice_name"), ("practices", 3, "consortium"), ("providers", 1, "has_ae"),
    ("activity", 10, "provider_code"), ("high_cost_patients", 2, "patient_id"), ("tariff", 1, "price"),
    ("provider_changes", 1, "description"), ("population", 7, "sex"),
])
def test_missing_values_in_not_null_columns(ds: Path, table: str, row: int, column: str) -> None:
    set_cell(ds, table, row, column, "")
    p = the(fails(ds), "missing_value", table=table, column=column)
    assert p.rows == [row] and p.values == [None] and p.file.endswith(f"{table}.csv")


@pytest.mark.parametrize("table,row,column,value", [
    ("practices", 2, "practice_code", "p81002"),
    ("practices", 3, "practice_code", "P8100"),
    ("providers", 1, "provider_code", "RA-7"),
    ("specialties", 1, "specialty_code", "11"),
])
def test_bad_code_patterns(ds: Path, table: str, row: int, column: str, value: str) -> None:
    set_cell(ds, table, row, column, value)
    p = the(fails(ds), "bad_pattern", table=table, column=column)
    assert p.rows == [row] and p.values == [value]


@pytest.mark.parametrize("table,row,column,value", [
    ("activity", 2, "pod", "outpatient"), ("population", 5, "age_band", "90-94"), ("population", 6, "sex", "X"),
    ("provider_changes", 1, "pod", "ALL"), ("referrals", 3, "specialty_code", "180"),
])
def test_values_not_allowed(ds: Path, table: str, row: int, column: str, value: str) -> None:
    set_cell(ds, table, row, column, value)
    p = the(fails(ds), "not_allowed", table=table, column=column)
    assert p.rows == [row] and p.values == [value]


# --------------------------------------------------------------------------------------------------
# Keys and references
# --------------------------------------------------------------------------------------------------

def test_duplicate_key_reports_values_and_all_rows(ds: Path) -> None:
    path = ds / "activity.csv"
    header, rows = read_rows(path)
    rows.append(list(rows[4]))  # a copy of data row 5 becomes row 55
    rows[9][header.index("cost")] = "1.0"  # irrelevant change
    write_rows(path, header, rows)
    p = the(fails(ds), "duplicate_key", table="activity")
    assert p.rows == [5, 55] and p.n_rows == 2
    assert p.values == [tuple(rows[4][:5])]
    assert "rows 5, 55" in p.message and "practice_code, provider_code, specialty_code, pod, month" in p.message


def test_duplicate_single_column_key(ds: Path) -> None:
    path = ds / "specialties.csv"
    path.write_text(path.read_text() + "110,Orthopaedics again\n")
    p = the(fails(ds), "duplicate_key", table="specialties")
    assert p.rows == [1, 3] and p.values == [("110",)]


@pytest.mark.parametrize("table,row,column,value", [
    ("activity", 7, "practice_code", "Y99999"),
    ("population", 12, "practice_code", "Y99999"),
    ("referrals", 2, "practice_code", "Y99999"),
    ("high_cost_patients", 3, "practice_code", "Y99999"),
    ("budgets", 2, "practice_code", "Y99999"),
    ("activity", 8, "provider_code", "RZZ"),
    ("referrals", 5, "provider_code", "RZZ"),
    ("provider_changes", 2, "provider_code", "RZZ"),
    ("activity", 4, "specialty_code", "999"),
    ("tariff", 2, "specialty_code", "999"),
    ("provider_changes", 1, "specialty_code", "999"),
])
def test_unknown_codes(ds: Path, table: str, row: int, column: str, value: str) -> None:
    set_cell(ds, table, row, column, value)
    p = the(fails(ds), "unknown_code", table=table, column=column)
    assert p.rows == [row] and p.values == [value] and p.file.endswith(f"{table}.csv")


def test_engagement_unknown_and_missing_practice(ds: Path) -> None:
    set_cell(ds, "engagement", 2, "practice_code", "Y11111")
    err = fails(ds)
    p = the(err, "unknown_code", table="engagement", column="practice_code")
    assert p.rows == [2] and p.values == ["Y11111"]
    m = the(err, "engagement_missing", table="engagement", column="practice_code")
    assert m.values == ["P81002"] and "P81002" in m.message


# --------------------------------------------------------------------------------------------------
# Window and coverage
# --------------------------------------------------------------------------------------------------

def test_dates_outside_window(ds: Path) -> None:
    path = ds / "activity.csv"
    header, rows = read_rows(path)
    extra = list(rows[2])
    extra[header.index("month")] = "2005-07"
    rows.append(extra)  # row 55 extends a series past the window
    write_rows(path, header, rows)
    set_cell(ds, "population", 1, "month", "2005-03")
    set_cell(ds, "engagement", 3, "engaged_from", "2006-01")
    set_cell(ds, "high_cost_patients", 2, "financial_year", "2006/07")
    err = fails(ds)
    assert the(err, "outside_window", table="activity", column="month").rows == [55]
    assert the(err, "outside_window", table="activity").values == ["2005-07"]
    assert the(err, "outside_window", table="population").rows == [1]
    assert the(err, "outside_window", table="engagement", column="engaged_from").values == ["2006-01"]
    assert the(err, "outside_window", table="high_cost_patients", column="financial_year").rows == [2]
    assert not [p for p in err.problems if p.check == "series_gap"]


# Activity and referrals may be sparse (implicit zeros): the old gap and coverage rules are gone; what replaces
# them is tested in tests/data/test_sparse.py.


def test_population_practice_month_missing(ds: Path) -> None:
    drop_rows(ds, "population", lambda r: not (r["practice_code"] == "P81001" and r["month"] == "2005-05"))
    p = the(fails(ds), "population_missing", table="population")
    assert p.values == [("P81001", "2005-05")] and "P81001 2005-05" in p.message


def test_population_incomplete_age_sex_rows(ds: Path) -> None:
    dropped = drop_rows(ds, "population", lambda r: not (r["practice_code"] == "P81003" and r["month"] == "2005-04"
                                                         and r["age_band"] == "90+" and r["sex"] == "M"))
    p = the(fails(ds), "population_incomplete", table="population")
    assert p.values == [("P81003", "2005-04")] and "M 90+" in p.message and "37 of 38" in p.message
    assert p.n_rows == 37 and p.rows[0] == dropped[0] - 37


def test_zero_list_size(ds: Path) -> None:
    path = ds / "population.csv"
    header, rows = read_rows(path)
    hit = [i for i, r in enumerate(rows, 1) if r[0] == "P81002" and r[1] == "2005-06"]
    for i in hit:
        rows[i - 1][header.index("registered")] = "0"
    write_rows(path, header, rows)
    p = the(fails(ds), "zero_list", table="population", column="registered")
    assert p.values == [("P81002", "2005-06")] and p.rows == hit[:D.KEEP_ROWS] and p.n_rows == 38


# --------------------------------------------------------------------------------------------------
# Activity rules
# --------------------------------------------------------------------------------------------------

def test_missing_price_names_specialty_pod_and_year(ds: Path) -> None:
    drop_rows(ds, "tariff", lambda r: r["pod"] != "elective")
    p = the(fails(ds), "missing_price", table="activity")
    assert p.values == [("110", "elective", "2005/06")]
    assert "specialty 110, pod elective, 2005/06" in p.message
    header, rows = read_rows(ds / "activity.csv")
    expected = [i for i, r in enumerate(rows, 1) if r[3] == "elective" and int(r[5]) > 0]
    assert p.rows == expected


def test_zero_activity_needs_no_price(ds: Path) -> None:
    path = ds / "activity.csv"
    header, rows = read_rows(path)
    for r in rows:
        if r[3] == "elective":
            r[5], r[6] = "0", "0.0"
    write_rows(path, header, rows)
    drop_rows(ds, "tariff", lambda r: r["pod"] != "elective")
    load(ds)


def test_cost_with_zero_activity(ds: Path) -> None:
    row = next(i for i in range(1, 55) if get_cell(ds, "activity", i, "activity") == "0")
    set_cell(ds, "activity", row, "cost", "99.5")
    p = the(fails(ds), "cost_without_activity", table="activity", column="cost")
    assert p.rows == [row] and p.values == [(0, 99.5)]


def test_specialty_180_iff_ae(ds: Path) -> None:
    r1 = act_row("P81001", "RA7", ("180", "ae"), "2005-04")
    r2 = act_row("P81003", "RXN", ("110", "first_op"), "2005-06")
    set_cell(ds, "activity", r1, "pod", "non_elective")
    set_cell(ds, "activity", r2, "specialty_code", "180")
    p = the(fails(ds), "ae_specialty", table="activity")
    assert p.rows == [r1, r2] and p.values == [("180", "non_elective"), ("180", "first_op")]


# --------------------------------------------------------------------------------------------------
# Parquet, validate() on frames, and many problems at once
# --------------------------------------------------------------------------------------------------

def test_parquet_column_with_wrong_type(ds: Path) -> None:
    df = pd.read_csv(ds / "tariff.csv")  # specialty_code becomes int64
    df.loc[1, "price"] = -5.0
    (ds / "tariff.csv").unlink()
    df.to_parquet(ds / "tariff.parquet", index=False)
    err = fails(ds)
    p = the(err, "wrong_type", table="tariff", column="specialty_code")
    assert "int64" in p.message and "text" in p.message and p.file.endswith("tariff.parquet")
    n = the(err, "not_positive", table="tariff", column="price")
    assert n.rows == [2] and n.values == [-5.0]


def test_parquet_nulls_are_missing_values(ds: Path) -> None:
    t = pq.read_table(ds / "activity.csv") if False else None  # noqa: F841 (CSV is not Parquet)
    df = pd.read_csv(ds / "providers.csv")
    table = pa.table({"provider_code": pa.array(["RA7", None]), "provider_name": df["provider_name"],
                      "has_ae": df["has_ae"]})
    (ds / "providers.csv").unlink()
    pq.write_table(table, ds / "providers.parquet")
    p = the(fails(ds), "missing_value", table="providers", column="provider_code")
    assert p.rows == [2]


def test_validate_on_frames(ds: Path) -> None:
    inputs = load(ds)
    tables = inputs.tables()
    validate(tables, inputs.window)
    bad = dict(tables)
    bad["activity"] = tables["activity"].assign(activity=tables["activity"]["activity"].astype(float))
    bad["referrals"] = tables["referrals"].drop(columns="referrals")
    del bad["tariff"]
    with pytest.raises(DataValidationError) as info:
        validate(bad, inputs.window, files=inputs.files)
    err = info.value
    assert "float64" in the(err, "wrong_type", table="activity", column="activity").message
    assert the(err, "missing_column", table="referrals", column="referrals").file.endswith("referrals.csv")
    assert the(err, "missing_table", table="tariff")


def test_all_problems_are_reported_at_once(ds: Path) -> None:
    set_cell(ds, "activity", 5, "activity", "abc")
    set_cell(ds, "referrals", 2, "month", "2005-13")
    set_cell(ds, "practices", 1, "single_handed", "yes")
    set_cell(ds, "population", 10, "registered", "-1")
    (ds / "specialties.csv").write_bytes(b"")
    (ds / "budgets.csv").write_text("practice_code;financial_year;budget\nP81001;2005/06;1.0\n")
    err = fails(ds)
    checks = {(p.table, p.check) for p in err.problems}
    assert {("activity", "wrong_type"), ("referrals", "bad_month"), ("practices", "wrong_type"),
            ("population", "negative"), ("specialties", "empty_file"), ("budgets", "delimiter")} <= checks
    text = str(err)
    assert text.count("\n[") == len(err.problems) and f"{len(err.problems)} problems" in text
    for name in ("activity.csv", "referrals.csv", "practices.csv", "population.csv", "specialties.csv", "budgets.csv"):
        assert name in text


def test_report_is_readable(ds: Path) -> None:
    for r in range(1, 16):
        set_cell(ds, "activity", r, "cost", "-1")
    p = the(fails(ds), "negative", table="activity", column="cost")
    assert p.n_rows == 15 and p.rows == list(range(1, 16))
    text = str(p)
    assert "rows: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, ... (15 rows in total)" in text
    assert "values: -1.0" in text and "fix:" in text and "activity.csv" in text


def test_data_dictionary_lists_every_column() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "data_dictionary.md").read_text()
    for table, spec in TABLES.items():
        assert f"### `{table}`" in doc
        for c in spec.column_names:
            assert f"| `{c}` |" in doc, (table, c)


# --------------------------------------------------------------------------------------------------
# reference_rates (optional): age-sex rates for indirect standardisation
# --------------------------------------------------------------------------------------------------

def test_reference_rates_load_with_all_age_sex_cells(ds: Path) -> None:
    rr = load(ds).reference_rates
    assert len(rr) == 3 * 38
    assert rr.groupby(["measure", "specialty_code"]).size().eq(38).all()
    assert str(rr["rate"].dtype) == "float64"


def test_reference_rates_need_every_age_sex_cell(ds: Path) -> None:
    dropped = drop_rows(ds, "reference_rates", lambda r: not (r["measure"] == "first_op" and r["age_band"] == "90+"))
    p = the(fails(ds), "reference_rates_incomplete", table="reference_rates")
    assert len(dropped) == 2
    assert ("first_op", "110") in p.values
    assert "first_op 110" in p.message and "38" in p.fix


def test_reference_rates_ae_only_with_specialty_180(ds: Path) -> None:
    set_cell(ds, "reference_rates", 1, "specialty_code", "180")  # a referrals row
    p = the(fails(ds), "ae_specialty", table="reference_rates")
    assert p.rows == [1] and ("referrals", "180") in p.values


def test_reference_rates_negative_and_unknown_measure(ds: Path) -> None:
    set_cell(ds, "reference_rates", 2, "rate", "-0.5")
    set_cell(ds, "reference_rates", 3, "measure", "outpatients")
    err = fails(ds)
    assert the(err, "negative", table="reference_rates", column="rate").rows == [2]
    assert the(err, "not_allowed", table="reference_rates", column="measure").rows == [3]
