"""Issue 12, "Disclosure applies to everything published": the published/ bundle (pbc_analysis.publish.bundle).

Unit tests on small hand-made tables, then one sample run whose bundle is scanned: every count cell of every
published CSV and of results.json is 0, "*" or a multiple of 5 from 10; no patient-level identifier leaves the
private area; the bundle is byte-stable; an unregistered table or column stops publication.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from pbc_analysis import data
from pbc_analysis.core import paths
from pbc_analysis.publish import bundle, report
from pbc_analysis.publish.bundle import Column, PublishError, TableSpec

EXPECTED = Path(__file__).parents[1] / "expected"


def _disclosed(cell: object) -> bool:
    """0, '*', missing, or a whole multiple of 5 of at least 10."""
    v = str(cell).strip()
    if v in ("", "*", "0"):
        return True
    if not re.fullmatch(r"\d+", v):
        return False
    return int(v) >= 10 and int(v) % 5 == 0


# --------------------------------------------------------------------------------------------------
# unit tests: tables
# --------------------------------------------------------------------------------------------------
SPEC = TableSpec("practice x year", {
    "practice_code": Column("key"), "referrals": Column("count"), "attendances": Column("count"),
    "list_size": Column("public"), "cost": Column("money"), "sir": Column("modelled"),
    "pct": Column("ratio", ratio=("referrals", "attendances", 100.0)),
    "per_1000": Column("ratio", ratio=("referrals", "list_size", 1000.0)),
    "charge": Column("withheld", note="charge = referrals x price"), "*_observed": Column("count")})


def _text(df: pd.DataFrame) -> pd.DataFrame:
    return df.astype(str).replace({"<NA>": "", "nan": ""})


def test_table_counts_ratios_and_withheld_columns():
    df = _text(pd.DataFrame({
        "practice_code": ["P1", "P2", "P3", "P4", "P5"], "referrals": ["13", "5", "0", "9", ""],
        "attendances": ["12", "100", "40", "0", "30"], "list_size": ["2000", "3000", "4000", "5000", "6000"],
        "cost": ["10.5", "3", "0", "7", "1"], "sir": ["0.91", "1.234567891", "0.5", "1", "1.1"],
        "pct": ["108.3", "5", "0", "x", "y"], "per_1000": ["6.5", "1", "0", "1", "1"], "charge": ["1"] * 5,
        "ae_observed": ["3", "8", "1003", "0", "7"]}))
    out = bundle.disclose_table_text("t", df, SPEC)
    assert out["referrals"].tolist() == ["15", "*", "0", "10", ""]
    assert out["attendances"].tolist() == ["10", "100", "40", "0", "30"]
    assert out["ae_observed"].tolist() == ["*", "10", "1005", "0", "*"]  # a pattern-registered column
    assert out["pct"].tolist() == ["150", "*", "0", "", ""]  # 15/10, suppressed input, 0/40, 10/0, missing
    assert out["per_1000"].tolist() == ["7.5", "*", "0", "2", ""]  # rounded count over the public list
    assert "charge" not in out.columns  # withheld
    for col in ("practice_code", "list_size", "cost", "sir"):  # exempt cells are copied as text, unchanged
        assert out[col].tolist() == df[col].tolist()
    again = bundle.disclose_table_text("t", out.assign(charge="1"), SPEC)  # disclosing twice changes nothing
    pd.testing.assert_frame_equal(again, out)


def test_table_with_an_unregistered_column_is_refused_naming_every_one():
    df = _text(pd.DataFrame({"practice_code": ["P1"], "referrals": ["3"], "patients": ["4"], "spells": ["2"]}))
    with pytest.raises(PublishError) as err:
        bundle.disclose_table_text("t", df, SPEC)
    msg = str(err.value)
    assert "'patients'" in msg and "'spells'" in msg and "TABLES['t']" in msg and "kind" in msg
    with pytest.raises(PublishError, match="'nope' is not in pbc_analysis/publish/registry.py TABLES"):
        bundle.disclose_table_text("nope", df)


def test_a_count_that_is_not_a_whole_number_is_an_error_with_its_rows():
    df = _text(pd.DataFrame({"practice_code": ["P1", "P2", "P3"], "referrals": ["3", "2.5", "-1"]}))
    with pytest.raises(PublishError, match=r"'referrals'.*row 2 '2.5', row 3 '-1'"):
        bundle.disclose_table_text("t", df, SPEC)


def test_rows_where_discloses_only_the_patient_level_rows():
    spec = TableSpec("input file", {"table": Column("key"),
                                    "rows": Column("count", rows_where=("table", frozenset({"high_cost_patients"})))})
    df = pd.DataFrame({"table": ["providers", "high_cost_patients", "practices"], "rows": ["2", "12386", "60"]})
    assert bundle.disclose_table_text("s", df, spec)["rows"].tolist() == ["2", "12385", "60"]


def test_input_summary_rounds_the_rows_of_patient_level_inputs_only():
    assert bundle.PATIENT_LEVEL_INPUTS == {"high_cost_patients"}  # the data dictionary's tables with an id column
    summary = pd.DataFrame({"table": ["high_cost_patients", "providers", "practices"], "rows": [12387, 3, 61]})
    out = bundle.disclose_input_rows(summary)
    assert out["rows"].tolist() == [12385, 3, 61]
    assert bundle.disclose_input_rows(summary.assign(rows=[4, 3, 61]))["rows"].tolist() == ["*", 3, 61]
    assert summary["rows"].tolist() == [12387, 3, 61]  # input untouched


# --------------------------------------------------------------------------------------------------
# unit tests: results.json
# --------------------------------------------------------------------------------------------------
def test_results_counts_disclosed_by_path():
    rules = (("dq.activity.*", "count"), ("dq.practices", "tally"), ("risk.expected_patients", "expected_count"),
             ("v.tables[].rows", "count"), ("ev.**", "modelled"))
    res = {"dq": {"activity": {"2003/04": 456758, "2004/05": 3, "2005/06": 0}, "practices": 6, "name": "x"},
           "risk": {"expected_patients": 1301.86}, "v": {"tables": [{"rows": "*"}, {"rows": 12}, {"rows": None}]},
           "ev": {"a": {"b": [1.5, 2.25]}, "flag": True}}
    out = bundle.disclose_results(res, rules)
    assert out["dq"]["activity"] == {"2003/04": 456760, "2004/05": "*", "2005/06": 0}
    assert out["dq"]["practices"] == 6 and out["dq"]["name"] == "x"  # a tally of practices is not a count of people
    assert out["risk"]["expected_patients"] == 1300
    assert [t["rows"] for t in out["v"]["tables"]] == ["*", 10, None]
    assert out["ev"] == {"a": {"b": [1.5, 2.25]}, "flag": True}


def test_results_with_an_unclassified_number_or_a_fractional_count_is_refused():
    rules = (("dq.activity.*", "count"),)
    with pytest.raises(PublishError) as err:
        bundle.disclose_results({"dq": {"activity": {"a": 2.5}, "patients": 12, "deep": [{"n": 3}]}}, rules)
    msg = str(err.value)
    assert "dq.activity.a = 2.5: a count must be" in msg
    assert "dq.patients = 12: not classified" in msg and "dq.deep[].n = 3: not classified" in msg
    with pytest.raises(PublishError, match="unknown kind"):
        bundle.disclose_results({}, (("x", "sort of a count"),))


# --------------------------------------------------------------------------------------------------
# the registry itself
# --------------------------------------------------------------------------------------------------
def test_registry_covers_every_sample_table_and_every_column():
    problems = bundle._check_registered(sorted(EXPECTED.glob("*.csv")))
    assert problems == []
    assert {p.stem for p in EXPECTED.glob("*.csv")} <= set(bundle.TABLES)


def test_registry_is_consistent():
    for name, spec in bundle.TABLES.items():
        for col, rule in spec.columns.items():
            assert rule.kind in bundle.KINDS, (name, col)
            if rule.kind == "ratio":
                num, den, _ = rule.ratio
                assert spec.column(num).kind == "count" and spec.column(den).kind in ("count", "public"), (name, col)
            if rule.kind == "withheld":
                assert rule.note, (name, col)
    for _, kind in bundle.JSON_RULES:
        assert kind in bundle.KINDS or kind == "expected_count"


# --------------------------------------------------------------------------------------------------
# one sample run and its bundle
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(sample_run) -> Path:
    """The shared sample run (tests/conftest.py) with the ``published/`` bundle that ``pbc run`` made.

    Read-only: a test that rebuilds or changes anything works on a copy."""
    return sample_run


def _tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# Columns whose name says they count something ...
_COUNTED = re.compile(r"referral|activity|admission|attendance|patient|event|observed|spell|registered|list_|rows|"
                      r"covered|people|cases", re.IGNORECASE)
# ... unless it also says modelled, a rate, money or an interval
_NOT_A_COUNT = re.compile(r"ratio|rate|avoided|per_|expected|counterfactual|ci_|lower|upper|std_error|share|index|"
                          r"percentile|cost|saving|budget|change|relative|estimate|weighted", re.IGNORECASE)
# Count-like columns deliberately not disclosed, each reviewed: kind and reason
_REVIEWED = {
    ("dq_practice_consistency", "list_first_month"): "public",  # registered list: published by NHS Digital
    ("dq_practice_consistency", "list_last_month"): "public",
    ("bud_statement", "registered"): "public",
    ("bm_practices", "list_size"): "public",  # the registered list of the similar practices' features
    ("risk_backtest_coverage", "covered"): "tally",  # practice-years whose interval covered the outturn
}


@pytest.mark.slow
def test_bundle_layout_and_contents(run):
    pub = run / "published"
    assert (pub / "report.html").read_bytes() == (run / "report.html").read_bytes()
    assert sorted(p.name for p in (pub / "figures").glob("*.png")) == sorted(p.name for p in (run / "figures").glob("*.png"))
    contents = json.loads((pub / "CONTENTS.json").read_text(encoding="utf-8"))
    tree = _tree(pub)
    assert contents["files"] == {k: v for k, v in tree.items() if k != "CONTENTS.json"}
    private = {p.stem for p in (run / "tables").glob("*.csv")}
    published = {p.stem for p in (pub / "tables").glob("*.csv")}
    assert published | set(contents["withheld_tables"]) == private
    assert contents["withheld_tables"].keys() == {"risk_pool_charges"}
    assert "cost" not in pd.read_csv(pub / "tables" / "risk_pool_years.csv").columns
    readme = (pub / "README.txt").read_text(encoding="utf-8")
    assert "private working area" in readme and "never to be sent" in readme
    assert "rounded to the nearest 5" in readme and "risk_pool_charges" in readme
    assert not list(pub.glob("notebooks")) and not (pub / "manifest.json").exists()


def _scan(tables_dir: Path, registry: dict[str, TableSpec]) -> tuple[int, list[str]]:
    """Every count cell of every CSV in ``tables_dir``: (cells checked, problems). A column whose name says it
    counts people or events, holds whole numbers and is not classified ``count`` is a problem unless reviewed."""
    checked, problems = 0, []
    for path in sorted(tables_dir.glob("*.csv")):
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        spec = registry[path.stem]
        for col in df.columns:
            rule = spec.column(col)
            cells = df[col].tolist()
            if rule.kind == "count":
                rows = (df[rule.rows_where[0]].isin(rule.rows_where[1]) if rule.rows_where
                        else pd.Series(True, index=df.index))
                bad = [c for c, r in zip(cells, rows) if r and not _disclosed(c)]
                if bad:
                    problems.append(f"{path.name}, column {col!r}: undisclosed counts {bad[:5]}")
                checked += int(rows.sum())
            elif _COUNTED.search(col) and not _NOT_A_COUNT.search(col):
                whole = all(re.fullmatch(r"\d+", c) for c in cells if c)
                if whole and _REVIEWED.get((path.stem, col)) != rule.kind:
                    problems.append(f"{path.name}: column {col!r} looks like a count of people or events but is "
                                    f"classified {rule.kind!r}")
    return checked, problems


def test_scan_catches_a_count_column_registered_as_something_else(tmp_path):
    pd.DataFrame({"practice_code": ["P1", "P2"], "admissions": [3, 12], "n": [15, 20]}).to_csv(
        tmp_path / "t.csv", index=False)
    wrong = {"t": TableSpec("x", {"practice_code": Column("key"), "admissions": Column("money"),
                                  "n": Column("count")})}
    assert _scan(tmp_path, wrong) == (2, [("t.csv: column 'admissions' looks like a count of people or events "
                                           "but is classified 'money'")])
    right = {"t": TableSpec("x", {**wrong["t"].columns, "admissions": Column("count")})}
    assert _scan(tmp_path, right)[1] == ["t.csv, column 'admissions': undisclosed counts ['3', '12']"]


@pytest.mark.slow
def test_every_count_cell_published_is_disclosed(run):
    checked, problems = _scan(run / "published" / "tables", bundle.TABLES)
    assert problems == []
    assert checked > 5000
    # the scan is not vacuous: the private tables hold counts that the rule changes
    raw = pd.read_csv(run / "tables" / "bm_ratios.csv", dtype=str)
    assert not raw["observed"].map(_disclosed).all()
    assert _scan(run / "tables", bundle.TABLES)[1]


@pytest.mark.slow
def test_published_results_json_discloses_counts(run):
    res = json.loads((run / "results.json").read_text(encoding="utf-8"))
    pub = json.loads((run / "published" / "results.json").read_text(encoding="utf-8"))
    raw_years = res["data_quality"]["activity_by_financial_year"]
    years = pub["data_quality"]["activity_by_financial_year"]
    assert years.keys() == raw_years.keys() and all(_disclosed(v) for v in years.values())
    assert years != raw_years  # the sample's totals are not all multiples of 5
    assert _disclosed(pub["budgets"]["risk"]["expected_patients_above_threshold"])
    for section in ("attribution", "evaluation", "budgets", "benchmarking"):  # modelled figures are untouched
        assert pub[section].keys() == res[section].keys()
    assert pub["evaluation"]["referrals_avoided"] == res["evaluation"]["referrals_avoided"]
    for t in pub.get("validation", {}).get("tables", []):   # an absent optional table (commissioners) has no count
        assert _disclosed(t["rows"]) if t["present"] else t["rows"] is None


@pytest.mark.slow
def test_no_patient_level_identifier_anywhere_in_the_bundle(run):
    ids = pd.read_csv(paths.SAMPLE_DIR / "high_cost_patients.csv", dtype=str)["patient_id"]
    assert ids.str.fullmatch(r"[0-9a-f]{16}").all() and len(ids) > 1000
    id_cols = {c for s in data.TABLES.values() for c in s.column_names if s.meta(c).get("kind") == "id"}
    assert id_cols == {"patient_id"}
    id_set = set(ids)
    for path in sorted((run / "published").rglob("*")):
        if not path.is_file() or path.suffix == ".png":
            continue
        if path.suffix == ".xlsx":  # a workbook is a zip of XML parts: scan every part's text
            with zipfile.ZipFile(path) as z:
                text = "\n".join(z.read(n).decode("utf-8") for n in z.namelist())
        else:
            text = path.read_text(encoding="utf-8")
        assert "patient_id" not in text, path
        found = set(re.findall(r"\b[0-9a-f]{16}\b", text)) & id_set
        assert not found, f"{path}: patient identifiers {sorted(found)[:3]}"
    for path in (run / "published" / "tables").glob("*.csv"):
        assert not set(pd.read_csv(path, nrows=0).columns) & id_cols


@pytest.mark.slow
def test_data_summary_rounds_patient_level_rows_in_tables_and_html(run):
    for where in (run / "tables", run / "published" / "tables"):
        s = pd.read_csv(where / "dq_table_summary.csv", dtype=str).set_index("table")
        assert _disclosed(s.loc["high_cost_patients", "rows"])
        assert s.loc["providers", "rows"] == "4"  # file rows of a reference table are not people
    tables = report.extract_tables((run / "report.html").read_text(encoding="utf-8"))
    summary = next(t for t in tables if t["caption"].startswith("Input files read"))
    j = summary["headers"].index("Rows")
    row = next(r for r in summary["rows"] if r[0] == "high_cost_patients")
    assert _disclosed(row[j].replace(",", ""))


@pytest.mark.slow
def test_bundle_is_byte_stable(run, tmp_path):
    copy = tmp_path / run.name
    shutil.copytree(run, copy, symlinks=True)
    first = _tree(run / "published")              # the bundle `pbc run` made
    assert first and _tree(copy / "published") == first
    bundle.build_bundle(copy)
    assert _tree(copy / "published") == first
    bundle.build_bundle(copy)                     # and again, over a bundle it built itself
    assert _tree(copy / "published") == first
    assert not (copy / ".published.tmp").exists()


@pytest.mark.slow
def test_an_unregistered_table_or_column_stops_publication(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run / "tables", copy / "tables")
    shutil.copy(run / "results.json", copy / "results.json")
    pd.DataFrame({"practice_code": ["P1"], "patients": [3]}).to_csv(copy / "tables" / "new_counts.csv", index=False)
    s = pd.read_csv(copy / "tables" / "dq_monthly_totals.csv").assign(spells=1)
    s.to_csv(copy / "tables" / "dq_monthly_totals.csv", index=False)
    res = json.loads((copy / "results.json").read_text()) | {"extra": {"patients": 4}}
    (copy / "results.json").write_text(json.dumps(res))
    with pytest.raises(PublishError) as err:
        bundle.build_bundle(copy)
    msg = str(err.value)
    assert "nothing was written" in msg
    assert "tables/new_counts.csv: table 'new_counts' is not in pbc_analysis/publish/registry.py TABLES" in msg
    assert "tables/dq_monthly_totals.csv: column(s) ['spells']" in msg
    assert "extra.patients = 4: not classified" in msg
    assert not (copy / "published").exists() and not (copy / ".published.tmp").exists()


def test_published_text_cells_cannot_become_spreadsheet_formulas():
    """CSV injection: a name like =HYPERLINK(...) in an input must not be a live formula in a published CSV."""
    df = pd.DataFrame({"practice_name": ["=cmd|' /C calc'!A0", "+SUM(A1)", "@x", "-1+2", "Plain", "\tx"],
                       "value": ["-5.3", "1e-16", "-inf", "7", "", "0"]})
    out = bundle.neutralise_formulas(df)
    assert out["practice_name"].tolist() == ["'=cmd|' /C calc'!A0", "'+SUM(A1)", "'@x", "'-1+2", "Plain", "'\tx"]
    assert out["value"].tolist() == df["value"].tolist()            # numbers are left as they are
