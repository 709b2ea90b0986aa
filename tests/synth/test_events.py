"""``pbc synth --events``: the event-level extracts' shapes, byte-identical reruns, and dirt that equals its truth.

A hand-made PCT (2 practices, 1 provider, 3 months) checks the counts by hand; a small generated PCT
(12 practices, 12 months) is classified row by row in DuckDB by the ingest rules' order (issue 14's contract),
written here independently of the ingest package, and must give the truth file's counts and the tables back.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from pbc_analysis.synth import SynthParams, generate
from pbc_analysis.synth.contract import AGE_BANDS
from pbc_analysis.synth.events import EVENT_SOURCES, write_events
from pbc_analysis.synth.events_reference import LOCAL_TABLES
from pbc_analysis.synth.write import write_result_events, write_tables

MONTHS = ["2005-04", "2005-05", "2005-06"]


def _hand_tables() -> dict[str, pd.DataFrame]:
    act = pd.DataFrame([
        ("P81001", "RXX", "100", "first_op", "2005-04", 40, 4000.0),      # 40 events of 100.00
        ("P81002", "RXX", "100", "followup_op", "2005-05", 60, 3000.0),   # 60 events of 50.00
        ("P81001", "RXX", "100", "elective", "2005-06", 10, 20000.0),     # 10 spells of 2000.00
        ("P81002", "RXX", "100", "non_elective", "2005-04", 0, 0.0),      # a zero row: no event
        ("P81001", "RXX", "180", "ae", "2005-05", 50, 5000.0),            # 50 attendances of 100.00
    ], columns=["practice_code", "provider_code", "specialty_code", "pod", "month", "activity", "cost"])
    ref = pd.DataFrame([("P81001", "RXX", "100", "2005-04", 30), ("P81002", "RXX", "100", "2005-05", 0)],
                       columns=["practice_code", "provider_code", "specialty_code", "month", "referrals"])
    rows = [(p, m, b, s, 17 if b == "90+" else 100) for p in ("P81001", "P81002") for m in MONTHS for b in AGE_BANDS
            for s in ("F", "M")]
    pop = pd.DataFrame(rows, columns=["practice_code", "month", "age_band", "sex", "registered"])
    tariff = pd.DataFrame([("100", pod, "2005/06", price) for pod, price in
                           (("elective", 2000.0), ("first_op", 100.0), ("followup_op", 50.0), ("non_elective", 1500.0))]
                          + [("180", "ae", "2005/06", 100.0)], columns=["specialty_code", "pod", "financial_year", "price"])
    return {"practices": pd.DataFrame({"practice_code": ["P81001", "P81002"], "practice_name": ["A Surgery", "B Surgery"],
                                       "consortium": ["North", "South"], "imd_score": [12.345, 40.0],
                                       "single_handed": [False, True]}),
            "providers": pd.DataFrame({"provider_code": ["RXX"], "provider_name": ["X Trust"], "has_ae": [True]}),
            "specialties": pd.DataFrame({"specialty_code": ["100", "180"],
                                         "specialty_name": ["General surgery", "Emergency medicine"]}),
            "population": pop, "activity": act, "referrals": ref, "tariff": tariff}


@pytest.fixture(scope="module")
def hand(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("hand")
    for name in LOCAL_TABLES:
        (out / f"{name}.csv").write_text(f"a,b\n{name},1\n", encoding="utf-8")
    write_events(_hand_tables(), out, seed=7, start_month="2005-04", n_months=3)
    return out / "extracts", json.loads((out / "extracts" / "events_truth.json").read_text())


def test_hand_made_counts(hand):
    ext, truth = hand
    src = truth["sources"]
    op = src["outpatients"]
    # 100 clean rows; each reason max(1, round(rate x 100)): not_attended round(6.0) = 6, every other 1
    # (duplicate 0.2, outside 0.4, FIRSTATT 5 0.4, six practice reasons 0.1-0.3): 100 + 6 + 9 = 115
    assert op["aggregated"] == {"rows": 100, "cost": pytest.approx(7000.0, rel=1e-12)}  # 40 x 100 + 60 x 50
    assert op["read"]["rows"] == 115
    assert op["excluded"]["not_attended"] == {"rows": 6, "cost": 0.0}
    assert {r: v["rows"] for r, v in op["excluded"].items() if r != "not_attended"} == dict.fromkeys(
        ["duplicate_event_id", "outside_window", "first_attendance_excluded", "practice_code_missing", "pseudo_practice",
         "unknown_practice", "other_commissioner", "not_gp_practice", "not_open_throughout_window"], 1)
    # 10 spells (2000 each) + later episodes; 10 dirt reasons of max(1, round(rate x 10)) = 1 row each
    apc = src["admitted"]
    assert apc["aggregated"] == {"rows": 10, "cost": pytest.approx(20000.0, rel=1e-12)}
    assert apc["read"]["rows"] == 10 + apc["excluded"]["later_episode"]["rows"] + 10
    assert apc["excluded"]["later_episode"]["cost"] == 0.0
    assert src["ae"]["read"]["rows"] == 50 + 8 and src["referrals"]["read"]["rows"] == 30 + 8   # 2 + 6 reasons
    n = {name: pq.ParquetFile(ext / s.file).metadata.num_rows for name, s in EVENT_SOURCES.items()}
    assert n == {name: src[name]["read"]["rows"] for name in EVENT_SOURCES}


def test_hand_made_registrations(hand):
    ext, truth = hand
    reg = truth["sources"]["registrations"]
    # organisation-months: 2 practices x 3 + the old code 1 (before the merge, month (2 x 3) // 5 = 1) + 2 of the
    # other commissioner x 3 + the closing practice 1 (closes in month 3 // 2 = 1) = 14, each 3 total + 40 band rows
    assert reg["read"]["rows"] == 14 * 43
    assert reg["excluded"]["total_row"]["rows"] == 14 * 3
    assert reg["excluded"]["other_commissioner"] == {"rows": 2 * 3 * 40, "patients": 2 * 3 * 3634}  # 2 x (18 x 100 + 17)
    assert reg["excluded"]["not_open_throughout_window"] == {"rows": 40, "patients": 3634}
    assert reg["aggregated"] == {"rows": 7 * 40, "patients": 6 * 3634}
    # the old code's share in month 0: floor(2 x 100 / 5) = 40 a band; 90+ 17 -> 95+ floor(51 / 10) = 5, 90_94 12;
    # their old shares floor(24 / 5) = 4 and floor(10 / 5) = 2: 2 sexes x (18 x 40 + 4 + 2) = 1452
    assert reg["merged"] == {"rows": 40, "patients": 1452}
    df = pd.read_csv(ext / "registrations.csv", dtype=str)
    assert list(df.columns) == ["PUBLICATION", "EXTRACT_DATE", "TYPE", "ORG_CODE", "SEX", "AGE_GROUP_5", "NUMBER_OF_PATIENTS"]
    last = df[(df.EXTRACT_DATE == "01JUN2005") & (df.ORG_CODE == "P81002") & (df.SEX == "FEMALE")]
    assert dict(zip(last.AGE_GROUP_5, last.NUMBER_OF_PATIENTS.astype(int))) == (
        {b: 100 for b in [f"{5 * i}_{5 * i + 4}" for i in range(18)]} | {"90_94": 12, "95+": 5, "ALL": 1817})
    merged = truth["settings"]["merged"]
    assert merged["old_code"] == "W95006" and merged["new_code"] in ("P81001", "P81002")
    assert merged["effective_date"] == "2005-05-01"


def test_hand_made_reference_files(hand):
    ext, _ = hand
    ref = pd.read_csv(ext / "practice_reference.csv", header=None, dtype=str, keep_default_na=False)
    assert ref.shape == (2 + 1 + 4, 27)   # 2 practices, the old code, 2 other commissioner, closing, not GP
    by = ref.set_index(0)
    assert by.loc["P81001", 1] == "A Surgery" and by.loc["P81001", 10] == "19740401" and by.loc["P81001", 11] == ""
    assert by.loc["P81001", 14] == "5ZZ" and by.loc["P81001", 25] == "4"
    assert by.loc["W95001", 14] == "5ZY" and by.loc["W95004", 25] == "2"
    assert by.loc["W95003", 11] == "20050501" and by.loc["W95006", 11] == "20050501"
    assert (ext / "practice_attributes.csv").read_text() == (
        "practice_code,consortium,imd_score,single_handed\nP81001,North,12.35,false\nP81002,South,40.00,true\n")
    prices = pd.read_csv(ext / "prices.csv", dtype=str)
    assert prices.values.tolist() == [
        ["2005/06", "AE", "VB180Z", "100.00"], ["2005/06", "APC_ELECTIVE", "EL100Z", "2000.00"],
        ["2005/06", "APC_NON_ELECTIVE", "NE100Z", "1500.00"], ["2005/06", "OP_FIRST", "100", "100.00"],
        ["2005/06", "OP_FOLLOWUP", "100", "50.00"]]
    assert (ext / "local" / "budgets.csv").read_text() == "a,b\nbudgets,1\n"


# ---- a small generated PCT ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, dict, dict]:
    out = tmp_path_factory.mktemp("small")
    result = generate(SynthParams(n_practices=12, n_months=12))
    write_tables(result, out)
    write_result_events(result, out)
    return out, result.tables, json.loads((out / "extracts" / "events_truth.json").read_text())


def _digest(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*")) if p.is_file()}


def test_byte_identical_rerun(small, tmp_path):
    out, _, _ = small
    again = generate(SynthParams(n_practices=12, n_months=12))
    write_tables(again, tmp_path)
    write_result_events(again, tmp_path)
    first, second = _digest(out / "extracts"), _digest(tmp_path / "extracts")
    assert len(first) == 10 + 1 + len(LOCAL_TABLES) and first == second


def test_shapes(small):
    out, _, _ = small
    ext = out / "extracts"
    for name, src in EVENT_SOURCES.items():
        schema = pq.read_schema(ext / src.file)
        assert schema.names == [c[0] for c in src.columns], name
    con = duckdb.connect()
    types = dict(con.execute(f"select column_name, column_type from (describe select * from '{ext / 'admitted.parquet'}')")
                 .fetchall())
    assert types["EPIKEY"] == "BIGINT" and types["TRETSPEF"] == "VARCHAR" and types["DISDATE"] == "DATE"
    assert types["COST"] == "DOUBLE"
    # unique identifiers but for the planted duplicates
    n, distinct = con.execute(f"select count(*), count(distinct ATTENDKEY) from '{ext / 'outpatients.parquet'}'").fetchone()
    truth = json.loads((ext / "events_truth.json").read_text())["sources"]["outpatients"]
    assert n - distinct == truth["excluded"]["duplicate_event_id"]["rows"]
    codes = dict(con.execute(f"select EC_DEPARTMENT_TYPE, count(*) from '{ext / 'ae.parquet'}' group by 1").fetchall())
    assert list(codes) == ["01"]


def _practice_case(col: str, settings: dict, practices: list[str]) -> str:
    """The practice rules in order; the old code maps to its successor."""
    q = lambda codes: ", ".join(f"'{c}'" for c in codes)  # noqa: E731
    known = practices + [settings["merged"]["old_code"]] + [c for r, cs in settings["extra_practices"].items()
                                                              if r != "unknown_practice" for c in cs]
    return (f"when {col} is null then 'practice_code_missing' when {col} in ({q(settings['pseudo_practices'])}) "
            f"then 'pseudo_practice' when {col} not in ({q(known)}) then 'unknown_practice' "
            + " ".join(f"when {col} in ({q(cs)}) then '{r}'" for r, cs in settings["extra_practices"].items()
                       if r != "unknown_practice") + " else null end")


_RULES = {  # source: (id, window date, rules before the practice ones, pod, specialty, cost)
    "outpatients": ("ATTENDKEY", "APPTDATE", "when ATTENDED not in ('5', '6') then 'not_attended' "
                    "when FIRSTATT = '5' then 'first_attendance_excluded'",
                    "case when FIRSTATT in ('1', '3') then 'first_op' else 'followup_op' end", "TRETSPEF", "COST"),
    "admitted": ("EPIKEY", "DISDATE", "when EPIORDER > 1 then 'later_episode' when DISDATE is null then 'unfinished_spell' "
                 "when ADMIMETH not like '1%' and ADMIMETH not like '2%' then 'admission_method_excluded'",
                 "case when ADMIMETH like '1%' then 'elective' else 'non_elective' end", "TRETSPEF", "COST"),
    "ae": ("EC_IDENT", "ARRIVAL_DATE", "", "'ae'", "'180'", "COST"),
    "referrals": ("UBRN", "REFERRAL_DATE", "", "'ref'", "TFC", "0.0"),
}


def _classify(con, ext: Path, name: str, settings: dict, practices: list[str]) -> None:
    """A view ``rel``: every row of the extract with its reason (``ok``: aggregated) and its table cell."""
    key, date, rules, pod, spec, cost = _RULES[name]
    src = EVENT_SOURCES[name]
    start, end = settings["start_month"] + "-01", settings["end_month"] + "-01"
    window = f"({date} < DATE '{start}' or {date} >= DATE '{end}' + INTERVAL 1 MONTH)"
    if name == "admitted":   # later episodes come before the window; unfinished spells have no discharge date
        rules, window = rules.replace("when DISDATE is null then 'unfinished_spell' ",
                                      f"when DISDATE is null then 'unfinished_spell' when {window} then 'outside_window' "), "false"
    pcol = src.practice
    case = (f"case when k > 1 then 'duplicate_event_id' when {window} then 'outside_window' {rules} "
            + _practice_case(pcol, settings, practices).replace(" else null end", " else 'ok' end"))
    old, new = settings["merged"]["old_code"], settings["merged"]["new_code"]
    con.execute(f"""
        create view rel as select {case} as reason, {cost} as cost,
               case when {pcol} = '{old}' then '{new}' else {pcol} end as practice_code, {pcol} = '{old}' as merged,
               PROVIDER_COL as provider_code, {spec} as specialty_code, {pod} as pod, strftime({date}, '%Y-%m') as month
        from (select *, row_number() over (partition by {key} order by file_row_number) as k
              from read_parquet('{ext / src.file}', file_row_number = true))
    """.replace("PROVIDER_COL", [c[0] for c in src.columns if c[1] == "provider"][0]))


@pytest.mark.parametrize("name", list(EVENT_SOURCES))
def test_dirt_equals_truth_and_clean_rows_give_the_tables(small, name):
    out, tables, truth = small
    settings, got = truth["settings"], truth["sources"][name]
    con = duckdb.connect()
    _classify(con, out / "extracts", name, settings, tables["practices"]["practice_code"].astype(str).tolist())
    by = {r: (n, c) for r, n, c in con.execute("select reason, count(*), sum(cost) from rel group by 1").fetchall()}
    ok_rows, ok_cost = by.pop("ok")
    assert ok_rows == got["aggregated"]["rows"]
    assert sorted(by) == sorted(got["excluded"])
    for reason, (n, c) in by.items():
        assert n == got["excluded"][reason]["rows"], reason
        if name != "referrals":
            assert c == pytest.approx(got["excluded"][reason]["cost"], rel=1e-9, abs=1e-9), reason
    assert sum(n for n, _ in by.values()) + ok_rows == got["read"]["rows"]
    merged = con.execute("select count(*) from rel where reason = 'ok' and merged").fetchone()[0]
    assert merged == got["merged"]["rows"] > 0
    agg = con.execute("select practice_code, provider_code, specialty_code, pod, month, count(*) as n, sum(cost) as c "
                      "from rel where reason = 'ok' group by all order by all").fetch_df()
    table = tables["referrals" if name == "referrals" else "activity"]
    count = "referrals" if name == "referrals" else "activity"
    pods = {"outpatients": ["first_op", "followup_op"], "admitted": ["elective", "non_elective"], "ae": ["ae"]}
    sel = table[table[count] > 0] if name == "referrals" else table[(table[count] > 0) & table["pod"].isin(pods[name])]
    want = pd.DataFrame({c: sel[c].astype(str).to_numpy() for c in ["practice_code", "provider_code", "specialty_code",
                                                                   "month"]} | {"n": sel[count].to_numpy()})
    key = ["practice_code", "provider_code", "specialty_code", "month"]
    if name != "referrals":
        want["pod"], want["c"] = sel["pod"].astype(str).to_numpy(), sel["cost"].to_numpy()
        key.insert(3, "pod")
    merged_tab = want.merge(agg, on=key, how="outer", suffixes=("_want", "_got"), indicator=True)
    assert (merged_tab["_merge"] == "both").all()
    assert (merged_tab["n_want"] == merged_tab["n_got"]).all()
    if name != "referrals":
        np.testing.assert_allclose(merged_tab["c_got"], merged_tab["c_want"], rtol=1e-9)


def test_cli_events_beside_unchanged_tables(tmp_path):
    from pbc_analysis.pipeline import cli

    shape = ["--practices", "12", "--months", "12", "--quiet"]
    assert cli.main(["synth", "--out", str(tmp_path / "plain"), *shape]) == 0
    assert cli.main(["synth", "--out", str(tmp_path / "ev"), "--events", *shape]) == 0
    plain, ev = _digest(tmp_path / "plain"), _digest(tmp_path / "ev")
    assert {k: v for k, v in ev.items() if not k.startswith("extracts/")} == plain    # the tables are unchanged
    assert {"extracts/outpatients.parquet", "extracts/events_truth.json", "extracts/local/budgets.csv"} <= set(ev)
