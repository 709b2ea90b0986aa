"""Settings that follow from the data (pipeline.derive, data.window) and `pbc init` (pipeline.init).

Hand-checked facts of the sample; every "auto" of the sample derived to the value its config used to spell
out by hand (activity_end excepted: measured now); a broken cross-setting rule stops the run before any
notebook, naming the setting and the fix; `pbc init` writes a config that parses and runs.
"""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from pbc_analysis.core import paths
from pbc_analysis.core.checks import ArgumentError
from pbc_analysis.data import window
from pbc_analysis.pipeline import derive
from pbc_analysis.pipeline.config import ConfigError, parse_config
from pbc_analysis.pipeline.init import InitError, init_config

#: the values configs/sample.yaml spelt out by hand before issue 13 (activity_end was "2007-12": it is now
#: measured by the data-quality model, which finds the hospital activity complete to 2008-01)
HAND_TYPED = {
    ("03_referral_evaluation", "baseline_window"): ["2003-04", "2005-03"],
    ("03_referral_evaluation", "evaluation_window"): ["2005-04", "2008-03"],
    ("03_referral_evaluation", "activity_end"): "2008-01",
    ("03_referral_evaluation", "rtm_baseline"): ["2003-04", "2003-06"],
    ("03_referral_evaluation", "rtm_follow_up"): ["2003-07", "2004-06"],
    ("04_savings_attribution", "base_year"): "2004/05",
    ("04_savings_attribution", "evaluation_year"): "2007/08",
    ("05_budgets_and_risk", "target_year"): "2007/08",
}


def _all_auto() -> dict[str, dict]:
    out = {}
    for nb in derive.NOTEBOOK_STAGES:
        out[nb] = {"data_dir": str(paths.SAMPLE_DIR), "start_month": "2003-04", "end_month": "2008-03",
                   **{k: "auto" for k, (_, s) in derive.notebook_settings(nb).items() if s.derive}}
    return out


def test_sample_facts_by_hand(sample_facts, sample_inputs):
    eng = sample_inputs.engagement["engaged_from"]
    assert sample_facts.first_engagement == eng.dropna().min() == "2005-04"
    assert sample_facts.n_never_engaged == int(eng.isna().sum())
    assert sample_facts.full_years == ["2003/04", "2004/05", "2005/06", "2006/07", "2007/08"]
    assert sample_facts.activity_end == "2008-01" and sample_facts.referrals_end == "2008-03"
    assert sample_facts.n_not_yet_engaged("2005-03") == sample_facts.n_practices


def test_every_auto_of_the_sample_is_the_value_once_typed_by_hand(sample_inputs):
    resolution = derive.resolve_settings(_all_auto(), {str(paths.SAMPLE_DIR): sample_inputs})
    got = {(d["notebook"], d["setting"]): d["value"] for d in resolution.derived}
    for key, value in HAND_TYPED.items():
        assert got.get(key) == value, key
    assert all(d["rule"] for d in resolution.derived)
    assert all("auto" not in p.values() for p in resolution.parameters.values())


def test_a_broken_rule_is_found_before_any_notebook(sample_inputs):
    given = _all_auto()
    given["04_savings_attribution"]["base_year"] = "2006/07"           # after the first engagement
    given["03_referral_evaluation"]["baseline_window"] = ["2003-04", "2006-03"]  # runs into the engagements
    with pytest.raises(ArgumentError) as err:
        derive.resolve_settings(given, {str(paths.SAMPLE_DIR): sample_inputs}, where="mine.yaml")
    text = str(err.value)
    assert "no notebook was run" in text
    assert "mine.yaml: 04_savings_attribution: " in text and "base_year" in text
    assert "mine.yaml: 03_referral_evaluation: " in text and "baseline_window" in text
    assert len(err.value.problems) >= 2


def test_data_window_reads_only_the_month_columns(tmp_path):
    assert window.data_window(paths.SAMPLE_DIR) == ("2003-04", "2008-03")
    assert window.resolve_window(paths.SAMPLE_DIR, "auto", "2007-03") == ("2003-04", "2007-03")
    data = tmp_path / "d"
    shutil.copytree(paths.SAMPLE_DIR, data)
    ref = pd.read_parquet(data / "referrals.parquet")
    months = ref["month"].astype(str)
    ref[months >= "2004-04"].to_parquet(data / "referrals.parquet", index=False)  # starts a year later
    assert window.data_window(data) == ("2004-04", "2008-03")
    ref[months > "2009-01"].to_parquet(data / "referrals.parquet", index=False)  # no month at all
    with pytest.raises(window.WindowError, match="referrals.parquet: no month"):
        window.data_window(data)


def test_init_writes_a_config_that_parses_with_every_setting(tmp_path):
    out = tmp_path / "mine.yaml"
    path, text = init_config(paths.SAMPLE_DIR, out=out, echo=lambda *a, **k: None)
    assert path == out and out.read_text(encoding="utf-8") == text
    cfg = parse_config(text, path=out)
    assert cfg.name == "mine"
    for nb, (cls_settings) in ((nb, derive.notebook_settings(nb)) for nb in derive.NOTEBOOK_STAGES):
        for name, (_, info) in cls_settings.items():
            assert f"\n    {name}: " in text or (info.shared and f"\n  {name}: " in text), (nb, name)
    assert "#   auto -> [\"2003-04\", \"2005-03\"]" in text     # the derived baseline window, as a comment
    with pytest.raises(InitError, match="exists; choose another --out or add --force"):
        init_config(paths.SAMPLE_DIR, out=out, echo=lambda *a, **k: None)
    init_config(paths.SAMPLE_DIR, out=out, force=True, echo=lambda *a, **k: None)


def test_init_refuses_invalid_data_and_writes_nothing(tmp_path):
    data = tmp_path / "d"
    shutil.copytree(paths.SAMPLE_DIR, data)
    (data / "practices.csv").write_text("practice_code,nonsense\nX,1\n", encoding="utf-8")
    out = tmp_path / "bad.yaml"
    with pytest.raises(InitError, match="does not pass validation; no config was written"):
        init_config(data, out=out, echo=lambda *a, **k: None)
    assert not out.exists()
    with pytest.raises(InitError, match="not a safe name"):
        init_config(paths.SAMPLE_DIR, out=tmp_path / "x.yaml", name="../evil", echo=lambda *a, **k: None)


def test_a_shared_setting_set_for_one_notebook_is_an_error(tmp_path):
    text = ("parameters:\n  data_dir: data/sample\n  start_month: \"2003-04\"\n  end_month: \"2008-03\"\n"
            "notebooks:\n  02_benchmarking:\n    under_level: 0.9\n")
    with pytest.raises(ConfigError, match=r"under_level is shared by 02_benchmarking and 04_savings_attribution.*set it once under parameters:"):
        parse_config(text)
    parse_config(text.replace("notebooks:\n  02_benchmarking:\n    under_level: 0.9\n", "  under_level: 0.9\n"))


def test_a_bad_choice_is_a_config_error_before_anything_runs():
    text = ("parameters:\n  data_dir: data/sample\n  start_month: \"2003-04\"\n  end_month: \"2008-03\"\n"
            "notebooks:\n  01_data_quality:\n    completeness_threshold: 1.5\n")
    with pytest.raises(ConfigError, match=r"notebooks.01_data_quality: completeness_threshold must be > 0 and <= 1, got 1.5"):
        parse_config(text)


def test_validate_without_a_window_takes_the_data_window(capsys):
    from pbc_analysis.pipeline import cli

    assert cli.main(["validate", "--data-dir", str(paths.SAMPLE_DIR)]) == 0
    assert "all checks passed" in capsys.readouterr().out
    assert cli.main(["validate", "--data-dir", str(paths.SAMPLE_DIR), "--start", "2003-04", "--end", "auto"]) == 0


def test_settings_command_prints_the_params(capsys):
    from pbc_analysis.pipeline import cli

    assert cli.main(["settings", "03_referral_evaluation"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("## 03_referral_evaluation") and "`baseline_window` | `auto`" in out and "## 04" not in out
    assert cli.main(["settings", "nope"]) == 2
