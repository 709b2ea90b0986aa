"""Config validation happens before any notebook runs (pbc_analysis.run.parse_config)."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from pbc_analysis import paths
from pbc_analysis.run import REPORT_NOTEBOOK, ConfigError, notebook_parameters, parse_config

SAMPLE = (paths.CONFIGS_DIR / "sample.yaml").read_text()


def write_nb(folder: Path, name: str, params_src: str, body: str = "x = 1") -> Path:
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell(params_src)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell(body)]
    path = folder / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture()
def nbdir(tmp_path):
    write_nb(tmp_path, "01_alpha", 'data_dir = "data/sample"\nstart_month = "2003-04"\nlevel = 0.95\nn = 6\nflag = True\nrun_dir = ""')
    write_nb(tmp_path, "02_beta", 'start_month = "2003-04"\nmethod = "phi"\nrun_dir = ""')
    write_nb(tmp_path, REPORT_NOTEBOOK, 'run_dir = ""')
    return tmp_path


def test_sample_config_is_valid():
    cfg = parse_config(SAMPLE, path=paths.CONFIGS_DIR / "sample.yaml")
    assert cfg.notebooks[0] == "01_data_quality"
    dq = cfg.parameters["01_data_quality"]
    assert dq["start_month"] == "2003-04" and dq["completeness_recent_months"] == 6
    assert Path(dq["data_dir"]).is_absolute() and Path(dq["data_dir"]) == paths.SAMPLE_DIR
    assert "run_dir" not in dq


def test_globals_go_only_to_notebooks_that_declare_them(nbdir):
    cfg = parse_config("parameters:\n  start_month: '2004-04'\n  method: tau2\n", notebooks_dir=nbdir)
    assert cfg.parameters["01_alpha"] == {"start_month": "2004-04"}
    assert cfg.parameters["02_beta"] == {"start_month": "2004-04", "method": "tau2"}
    assert cfg.parameters[REPORT_NOTEBOOK] == {}
    assert cfg.notebooks == ("01_alpha", "02_beta")


def test_misspelt_keys_are_errors_with_suggestions(nbdir):
    text = "parameter:\n  x: 1\n"
    with pytest.raises(ConfigError, match=r"unknown top-level key 'parameter'.*did you mean 'parameters'"):
        parse_config(text, notebooks_dir=nbdir)
    with pytest.raises(ConfigError, match=r"parameters.strat_month is not a parameter.*did you mean 'start_month'"):
        parse_config("parameters:\n  strat_month: '2004-04'\n", notebooks_dir=nbdir)
    with pytest.raises(ConfigError, match=r"notebooks.01_alpha.levle is not a parameter of 01_alpha.*did you mean 'level'"):
        parse_config("notebooks:\n  01_alpha:\n    levle: 0.99\n", notebooks_dir=nbdir)
    with pytest.raises(ConfigError, match=r"notebooks.01_alfa is not a notebook.*did you mean '01_alpha'"):
        parse_config("notebooks:\n  01_alfa:\n    level: 0.99\n", notebooks_dir=nbdir)
    with pytest.raises(ConfigError, match=r"unknown key run.rendrer"):
        parse_config("run:\n  rendrer: quarto\n", notebooks_dir=nbdir)


def test_all_problems_reported_at_once(nbdir):
    with pytest.raises(ConfigError) as err:
        parse_config("parameters:\n  strat_month: '2004-04'\n  n: 'six'\nnotebooks:\n  01_alpha:\n    flag: 1\n", notebooks_dir=nbdir)
    msg = str(err.value)
    assert "strat_month" in msg and "n must be int" in msg and "flag must be bool" in msg


@pytest.mark.parametrize("yaml_value, expected", [
    ("2003-04-01", "read as a date"),
    ("200304", "must be a quoted string"),
])
def test_dates_and_codes_must_be_strings(nbdir, yaml_value, expected):
    with pytest.raises(ConfigError, match=expected):
        parse_config(f"parameters:\n  start_month: {yaml_value}\n", notebooks_dir=nbdir)


def test_types_follow_the_notebook_defaults(nbdir):
    parse_config("notebooks:\n  01_alpha:\n    level: 1\n", notebooks_dir=nbdir)  # int where float is fine
    with pytest.raises(ConfigError, match="level must be float"):
        parse_config("notebooks:\n  01_alpha:\n    level: '0.99'\n", notebooks_dir=nbdir)
    with pytest.raises(ConfigError, match="n must be int"):
        parse_config("notebooks:\n  01_alpha:\n    n: 6.5\n", notebooks_dir=nbdir)


def test_reserved_and_renderer(nbdir):
    with pytest.raises(ConfigError, match="set by the runner"):
        parse_config("parameters:\n  run_dir: /tmp/x\n", notebooks_dir=nbdir)
    with pytest.raises(ConfigError, match="run.renderer must be one of"):
        parse_config("run:\n  renderer: pdf\n", notebooks_dir=nbdir)
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_config("run: [unclosed\n", notebooks_dir=nbdir)


def test_notebook_selection(nbdir):
    cfg = parse_config("run:\n  notebooks: [02_beta]\n", notebooks_dir=nbdir)
    assert cfg.notebooks == ("02_beta",)
    with pytest.raises(ConfigError, match="run.notebooks names '03_gamma'"):
        parse_config("run:\n  notebooks: [03_gamma]\n", notebooks_dir=nbdir)


def test_parameters_cell_must_be_literals(tmp_path):
    path = write_nb(tmp_path, "01_bad", "import os\nx = os.getcwd()")
    with pytest.raises(ConfigError, match="may only hold `name = literal`"):
        notebook_parameters(path)
    path = write_nb(tmp_path, "01_bad2", "x = len('a')")
    with pytest.raises(ConfigError, match="not a literal"):
        notebook_parameters(path)


def test_parameters_hash_is_stable_and_sensitive(nbdir):
    a = parse_config("parameters:\n  start_month: '2004-04'\n", notebooks_dir=nbdir)
    b = parse_config("# comment\nparameters:\n  start_month: '2004-04'\n", notebooks_dir=nbdir)
    c = parse_config("parameters:\n  start_month: '2004-05'\n", notebooks_dir=nbdir)
    assert a.parameters_hash == b.parameters_hash != c.parameters_hash


def test_workers_setting(nbdir):
    assert parse_config("", notebooks_dir=nbdir).workers == 0
    assert parse_config("run:\n  workers: 1\n", notebooks_dir=nbdir).workers == 1
    for bad in ("-1", "true", '"2"', "1.5"):
        with pytest.raises(ConfigError, match="run.workers must be"):
            parse_config(f"run:\n  workers: {bad}\n", notebooks_dir=nbdir)


def test_workers_are_capped_by_cores_and_notebooks():
    from pbc_analysis.run import _workers

    assert _workers(4, 2) == 2 and _workers(1, 5) == 1 and _workers(3, 5) == 3
    assert 1 <= _workers(0, 50) <= 50
