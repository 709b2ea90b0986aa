"""Issue 12, inputs: tables that exist but cannot be read are errors, implausible values stop the run.

Every case is driven as a user would: ``pbc validate`` on a copy of the embedded sample (``data/sample``)
with one thing broken, checking the exit code and that the message names the file, the rows and the
fix; and :func:`pbc_analysis.data.plausibility.validate_run_inputs`, which ``pbc run`` calls before any
notebook starts, for the summary that reaches the report. A few cases run ``pbc`` as a separate process
(``process=True``); the others call the same command in this process (:func:`pbc_analysis.pipeline.cli.main`: the
same code, exit code and output, without a new interpreter importing pandas each time), and
test_optional_table_with_wrong_case_or_extension_is_an_error checks that both ways print the same.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pbc_analysis.core import paths
from pbc_analysis.data import DataValidationError, load_inputs
from pbc_analysis.data.plausibility import (
    RULES,
    PlausibilitySettings,
    parse_settings,
    validate_run_inputs,
)
from pbc_analysis.pipeline import cli

START, END = "2003-04", "2008-03"
SAMPLE = paths.SAMPLE_DIR


def pbc(*args: str, process: bool = False) -> subprocess.CompletedProcess:
    """``pbc ARGS`` from the project root: exit code, stdout and stderr.

    With ``process``, a new Python process runs the command exactly as a user types it; otherwise
    :func:`pbc_analysis.pipeline.cli.main` runs it in this process with its output captured (an uncaught exception
    then fails the test instead of printing a traceback).
    """
    if process:
        env = {**os.environ, "MPLBACKEND": "Agg"}
        return subprocess.run([sys.executable, "-m", "pbc_analysis.pipeline.cli", *args], capture_output=True, text=True,
                              cwd=paths.PROJECT_ROOT, env=env, timeout=300, check=False)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(paths.PROJECT_ROOT), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(list(args))
        except SystemExit as exc:          # argparse's own errors
            code = exc.code
    return subprocess.CompletedProcess(["pbc", *args], code, out.getvalue(), err.getvalue())


def validate(d: Path, *extra: str, process: bool = False) -> subprocess.CompletedProcess:
    return pbc("validate", "--data-dir", str(d), "--start", START, "--end", END, *extra, process=process)


def config(tmp_path: Path, d: Path, validation: str = "") -> Path:
    """A copy of configs/sample.yaml reading ``d``, with a ``validation:`` section."""
    text = (paths.CONFIGS_DIR / "sample.yaml").read_text(encoding="utf-8")
    assert "  data_dir: data/sample\n" in text
    text = text.replace("  data_dir: data/sample\n", f"  data_dir: {json.dumps(str(d))}\n")
    path = tmp_path / "run.yaml"
    path.write_text(text + ("validation:\n" + validation if validation else ""), encoding="utf-8")
    return path


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    shutil.copytree(SAMPLE, d)
    return d


def no_traceback(r: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr


# --------------------------------------------------------------------------------------------------
# Inputs that exist but cannot be read
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, fix", [
    ("Budgets.csv", "rename it to budgets.csv"),
    ("budgets.CSV", "rename it to budgets.csv"),
    ("budgets.xlsx", "save it from the spreadsheet as 'CSV UTF-8 (Comma delimited)' named budgets.csv"),
    ("budgets.txt", "save it as a comma-separated budgets.csv"),
])
def test_optional_table_with_wrong_case_or_extension_is_an_error(data: Path, name: str, fix: str) -> None:
    (data / "budgets.csv").rename(data / name)
    r = validate(data)
    if name == "budgets.xlsx":             # the command as a process prints exactly what it prints in-process
        proc = validate(data, process=True)
        assert (proc.returncode, proc.stdout, proc.stderr) == (r.returncode, r.stdout, r.stderr)
    assert r.returncode == 1, r.stdout + r.stderr
    no_traceback(r)
    assert f"{name} looks like optional table 'budgets' but is not read" in r.stderr
    assert fix in r.stderr and "budgets.csv, budgets.csv.gz, budgets.parquet" in r.stderr
    assert "all checks passed" not in r.stdout


def test_a_second_file_beside_a_table_is_an_error(data: Path) -> None:
    shutil.copy(data / "budgets.csv", data / "Budgets.xlsx")
    r = validate(data)
    assert r.returncode == 1
    assert "Budgets.xlsx looks like another file for table 'budgets', which is read from budgets.csv" in r.stderr
    assert "remove Budgets.xlsx or move it out of the data directory" in r.stderr


def test_directory_in_a_tables_place(data: Path) -> None:
    (data / "budgets.csv").unlink()
    (data / "budgets.csv").mkdir()
    r = validate(data)
    assert r.returncode == 1
    no_traceback(r)
    assert "budgets.csv [table budgets]: budgets.csv is a directory, not a file" in r.stderr
    assert "fix: put table 'budgets' in one file named budgets.csv or budgets.csv.gz or budgets.parquet" in r.stderr


def test_dangling_symlink_in_a_tables_place(data: Path) -> None:
    (data / "provider_changes.csv").unlink()
    (data / "provider_changes.csv").symlink_to(data / "gone.csv")
    r = validate(data)
    assert r.returncode == 1
    no_traceback(r)
    assert "provider_changes.csv is a symbolic link to" in r.stderr and "which does not exist (a dangling link)" in r.stderr
    assert "fix: point the link at the table's file" in r.stderr


def test_dangling_symlink_for_a_required_table_is_not_reported_as_missing(data: Path) -> None:
    (data / "tariff.csv").unlink()
    (data / "tariff.csv").symlink_to(data / "nowhere" / "tariff.csv")
    r = validate(data)
    assert r.returncode == 1
    assert "a dangling link" in r.stderr and "required table 'tariff' is missing" not in r.stderr


def test_symlink_leaving_the_data_directory_is_refused_without_reading_it(data: Path, tmp_path: Path) -> None:
    secret = tmp_path / "outside" / "secret.csv"
    secret.parent.mkdir()
    secret.write_text("TOP-SECRET-FIRST-LINE;with;semicolons\nsecond-line-of-secret\n", encoding="utf-8")
    (data / "practices.csv").unlink()
    (data / "practices.csv").symlink_to(secret)
    r = validate(data, process=True)
    assert r.returncode == 1
    no_traceback(r)
    assert "TOP-SECRET" not in r.stderr + r.stdout and "second-line" not in r.stderr + r.stdout
    assert f"practices.csv is a symbolic link to {secret}, outside the data directory" in r.stderr
    assert "it was not read" in r.stderr and "fix: copy the file into" in r.stderr


def test_symlink_inside_the_data_directory_is_followed(data: Path) -> None:
    (data / "budgets.csv").rename(data / "budgets_2007.data")
    (data / "budgets.csv").symlink_to(data / "budgets_2007.data")
    r = validate(data)
    assert r.returncode == 0, r.stderr
    assert "budgets" in r.stdout and "all checks passed" in r.stdout


def test_unreadable_file_is_an_error(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests run as root, who can read a chmod 000 file, so the permission error is simulated."""
    target = data / "budgets.csv"
    real_open = builtins.open

    def denying_open(file, *args, **kwargs):
        if Path(file) == target:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", denying_open)
    with pytest.raises(DataValidationError) as info:
        load_inputs(data, START, END)
    [p] = [p for p in info.value.problems if p.check == "unreadable_file"]
    assert p.table == "budgets" and p.file == str(target)
    assert "the file cannot be opened: permission denied" in str(info.value)
    assert f"chmod a+r '{target}'" in str(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a chmod 000 file; "
                    "test_unreadable_file_is_an_error simulates the permission error instead")
def test_chmod_000_file_via_the_cli(data: Path) -> None:  # pragma: no cover - not run as root
    (data / "budgets.csv").chmod(0)
    r = validate(data, process=True)
    assert r.returncode == 1 and "permission denied" in r.stderr


def test_missing_table_fix_names_what_works(data: Path) -> None:
    (data / "tariff.csv").unlink()
    r = validate(data)
    assert r.returncode == 1
    assert "paths.tariff" not in r.stderr
    assert f"fix: add the file to {data}, named exactly tariff.csv (or tariff.csv.gz or tariff.parquet)" in r.stderr


# --------------------------------------------------------------------------------------------------
# pbc validate: its options
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("start, end, message, process", [
    ("2003-4", END, "error: --start must be a month written YYYY-MM, e.g. 2003-04; got '2003-4'", True),
    ("April", END, "error: --start must be a month written YYYY-MM, e.g. 2003-04; got 'April'", False),
    (START, "2008-13", "error: --end must be a month written YYYY-MM, e.g. 2003-04; got '2008-13'", False),
    (END, START, f"error: --start {END} is after --end {START}", False),
])
def test_bad_window_is_a_one_line_error(start: str, end: str, message: str, process: bool) -> None:
    r = pbc("validate", "--data-dir", str(SAMPLE), "--start", start, "--end", end, process=process)
    assert r.returncode == 2
    assert r.stderr.strip() == message and r.stdout == ""


def test_sample_passes_with_defaults_and_with_its_config() -> None:
    r = pbc("validate", "--data-dir", str(SAMPLE), "--start", START, "--end", END)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("all checks passed")
    r = pbc("validate", "--config", str(paths.CONFIGS_DIR / "sample.yaml"), process=True)
    assert r.returncode == 0, r.stderr
    assert "activity                  496,680 rows" in r.stdout


def test_bad_validation_section_in_the_config(data: Path, tmp_path: Path) -> None:
    cfg = config(tmp_path, data, "  max_cost_ratoi: 30\n  accept: [populaton_change]\n")
    r = pbc("validate", "--config", str(cfg))
    assert r.returncode == 2
    no_traceback(r)
    assert "unknown key validation.max_cost_ratoi (did you mean 'max_cost_ratio'?)" in r.stderr
    assert "validation.accept names 'populaton_change', which is not a rule (did you mean 'population_change'?)" \
        in r.stderr


# --------------------------------------------------------------------------------------------------
# Plausibility: each rule on a planted bad value, caught with rows named, then accepted
# --------------------------------------------------------------------------------------------------

def activity_row(d: Path, pod: str) -> tuple[pd.DataFrame, int]:
    act = pd.read_parquet(d / "activity.parquet")
    return act, int(np.flatnonzero((act["pod"] == pod).to_numpy() & (act["activity"] > 0).to_numpy())[100])


def plant_unit_cost_x100(d: Path) -> list[int]:
    act, i = activity_row(d, "first_op")
    act.loc[i, "cost"] *= 100
    act.to_parquet(d / "activity.parquet", index=False)
    return [i + 1]


def plant_unit_cost_ceiling(d: Path) -> list[int]:
    act, i = activity_row(d, "elective")
    act.loc[i, "cost"] = float(act.loc[i, "activity"]) * 1e6
    act.to_parquet(d / "activity.parquet", index=False)
    return [i + 1]


def plant_huge_count(d: Path) -> list[int]:
    ref = pd.read_parquet(d / "referrals.parquet")
    ref.loc[7, "referrals"] = 10**12
    ref.to_parquet(d / "referrals.parquet", index=False)
    return [8]


def plant_population_halves(d: Path) -> list[int]:
    pop = pd.read_parquet(d / "population.parquet")
    hit = (pop["practice_code"] == pop["practice_code"].iloc[0]) & (pop["month"] == "2005-06")
    pop.loc[hit, "registered"] //= 2
    pop.to_parquet(d / "population.parquet", index=False)
    return (np.flatnonzero(hit.to_numpy()) + 1).tolist()


def plant_activity_x50(d: Path) -> list[int]:
    act = pd.read_parquet(d / "activity.parquet")
    hit = ((act["practice_code"] == act["practice_code"].iloc[0]) & (act["pod"] == "non_elective")
           & act["month"].astype(str).between("2005-04", "2006-03"))
    act.loc[hit, "activity"] *= 50
    act.loc[hit, "cost"] *= 50          # the unit cost stays what it was
    act.to_parquet(d / "activity.parquet", index=False)
    return (np.flatnonzero(hit.to_numpy()) + 1).tolist()


CASES = {
    "unit_cost_vs_tariff": (plant_unit_cost_x100, "activity.parquet [table activity], column 'cost'",
                            "a cost per unit more than 20 times, or less than 1/20 of, the tariff price"),
    "unit_cost_ceiling": (plant_unit_cost_ceiling, "activity.parquet [table activity], column 'cost'",
                          "a cost per unit (cost / activity) above the ceiling of GBP 250,000.00"),
    "count_ceiling": (plant_huge_count, "referrals.parquet [table referrals], column 'referrals'",
                      "1 row has a count above the ceiling of 10,000,000, up to 1,000,000,000,000"),
    "population_change": (plant_population_halves, "population.parquet [table population], column 'registered'",
                          "2 practice-months have a total registered list that changes by more than 25%"),
    "activity_rate": (plant_activity_x50, "activity.parquet [table activity], column 'activity'",
                      "activity per 1,000 registered patients a year outside the plausible band of its pod"),
}


def rows_line(rows: list[int], n_total: int) -> str:
    shown = ", ".join(map(str, rows[:10]))
    return f"rows: {shown}, ... ({n_total:,} rows in total)" if n_total > 10 else \
        f"rows: {shown} ({n_total} row{'s' if n_total != 1 else ''} in total)"


@pytest.mark.parametrize("rule", list(CASES))
def test_planted_implausible_value_stops_validation_and_is_accepted(rule: str, data: Path, tmp_path: Path) -> None:
    plant, where, reason = CASES[rule]
    rows = plant(data)
    process = rule == "unit_cost_vs_tariff"   # one rule end to end as separate processes
    r = validate(data, process=process)
    assert r.returncode == 1, r.stdout
    no_traceback(r)
    block = next(b for b in r.stderr.split("\n\n") if "if the values are right" in b and reason in b)
    assert where in block
    if rule == "population_change":    # the drop (rows of 2005-06) and the recovery (2005-07)
        assert "2005-05 to 2005-06" in block and "2005-06 to 2005-07" in block and "(-50%)" in block
        assert rows_line(rows, 76) in block
    else:
        assert rows_line(rows, len(rows)) in block
    assert f"validation: {{accept: [{rule}]}}" in block
    # the same data pass when the rules that fire are accepted in the config, and are listed
    fired = sorted({name for name in RULES if f"accept: [{name}]" in r.stderr})
    assert rule in fired
    cfg = config(tmp_path, data, f"  accept: [{', '.join(fired)}]\n")
    ok = pbc("validate", "--config", str(cfg), "--start", START, "--end", END, process=process)
    assert ok.returncode == 0, ok.stderr
    assert f"accepted (validation.accept: {rule}): " in ok.stdout and reason in ok.stdout
    assert f"({len(fired)} accepted plausibility exception" in ok.stdout
    summary = validate_run_inputs(data, START, END, PlausibilitySettings(accept=tuple(fired)))
    [exc] = [e for e in summary["accepted_exceptions"] if e["rule"] == rule]
    assert exc["reason"] == RULES[rule] and exc["table"] == where.split("[table ")[1].split("]")[0]
    n_flagged = 76 if rule == "population_change" else len(rows)
    assert exc["rows"] == n_flagged                # exact here; the runner rounds (test_security_runs)


def test_a_huge_count_is_caught_before_any_analysis(data: Path) -> None:
    act, i = activity_row(data, "ae")
    act.loc[i, "activity"] = 10**12
    act.to_parquet(data / "activity.parquet", index=False)
    with pytest.raises(DataValidationError) as info:
        validate_run_inputs(data, START, END)
    checks = {p.check for p in info.value.problems}
    assert {"count_ceiling", "unit_cost_vs_tariff", "activity_rate"} <= checks
    [p] = [p for p in info.value.problems if p.check == "count_ceiling"]
    assert p.rows == [i + 1] and p.column == "activity"


def test_thresholds_are_settings(data: Path) -> None:
    plant_unit_cost_x100(data)
    settings, problems = parse_settings({"max_cost_ratio": 150}, "test")
    assert problems == [] and settings.max_cost_ratio == 150
    assert validate_run_inputs(data, START, END, settings)["accepted_exceptions"] == []
    strict, _ = parse_settings({"activity_rate": {"elective": [20, 30]}}, "test")
    with pytest.raises(DataValidationError) as info:
        validate_run_inputs(SAMPLE, START, END, strict)
    assert [p.check for p in info.value.problems] == ["activity_rate"]
    assert "(band 20 to 30)" in str(info.value) and " elective " in str(info.value)


def test_data_and_plausibility_problems_are_listed_at_once(data: Path) -> None:
    plant_huge_count(data)
    (data / "tariff.csv").write_text((data / "tariff.csv").read_text().replace(",first_op,", ",first_OP,", 1))
    with pytest.raises(DataValidationError) as info:
        validate_run_inputs(data, START, END)
    checks = [p.check for p in info.value.problems]
    assert "count_ceiling" in checks and any(p.table == "tariff" for p in info.value.problems)


def test_summary_of_the_sample() -> None:
    summary = validate_run_inputs(SAMPLE, START, END)
    assert json.loads(json.dumps(summary)) == summary
    by = {t["table"]: t for t in summary["tables"]}
    assert by["budgets"] == {"table": "budgets", "file": "budgets.csv", "required": False, "present": True,
                             "used": True, "rows": 180}
    assert by["high_cost_patients"]["rows"] == 12385        # exact here; the runner rounds (test_security_runs)
    assert by["providers"]["rows"] == 4
    assert by["reference_rates"]["rows"] == 2318
    assert summary["accepted_exceptions"] == []
    assert summary["settings"] == PlausibilitySettings().to_dict()


def test_summary_lists_absent_optional_tables(data: Path) -> None:
    (data / "budgets.csv").unlink()
    by = {t["table"]: t for t in validate_run_inputs(data, START, END)["tables"]}
    assert by["budgets"] == {"table": "budgets", "file": None, "required": False, "present": False,
                             "used": False, "rows": None}


def test_parse_settings_reports_every_problem_and_never_raises() -> None:
    settings, problems = parse_settings({"max_count": True, "max_cost_ratio": 0.5, "activity_rate": {"electiv": [1, 2],
                                         "ae": [5, 1]}, "accept": "count_ceiling", "colour": 1}, "c.yaml")
    assert settings == PlausibilitySettings()
    text = "\n".join(problems)
    assert len(problems) == 6
    assert ("c.yaml: validation.accept must be a list of rule names" in text
            and "got str 'count_ceiling'; write it as a list: accept: [count_ceiling]" in text)
    for expected in ("c.yaml: validation.max_count must be a whole number > 0, got bool True",
                     "c.yaml: validation.max_cost_ratio must be a number > 1, got float 0.5",
                     "validation.activity_rate.electiv is not a point of delivery (did you mean 'elective'?)",
                     "validation.activity_rate.ae must be [low, high] with 0 <= low < high",
                     "unknown key validation.colour"):
        assert expected in text
    assert parse_settings(None, "c.yaml") == (PlausibilitySettings(), [])
    assert parse_settings(["accept"], "c.yaml")[1] == [(
        "c.yaml: 'validation' must be a mapping with keys ['max_cost_ratio', 'max_unit_cost', "
        "'max_population_change', 'max_count', 'max_tariff_price', 'max_patient_cost', 'max_budget', "
        "'max_reference_rate', 'activity_rate', 'accept'], got list ['accept']")]
