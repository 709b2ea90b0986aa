"""Config validation happens before any notebook runs (pbc_analysis.pipeline.run.parse_config).

The hostile-input cases (YAML tags, code in values, unsafe names) are in tests/pipeline/test_security_config.py.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from pbc_analysis.core import paths
from pbc_analysis.data.plausibility import PlausibilitySettings
from pbc_analysis.pipeline.config import ParamType, check_name, notebook_parameter_types, parameters_source
from pbc_analysis.pipeline.run import REPORT_NOTEBOOK, ConfigError, notebook_parameters, parse_config

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
    write_nb(tmp_path, "01_alpha", 'start_month = "2003-04"\nlevel = 0.95\nn = 6\nflag = True\nrun_dir = ""')
    write_nb(tmp_path, "02_beta", 'start_month = "2003-04"\nmethod = "phi"\nrun_dir = ""')
    write_nb(tmp_path, REPORT_NOTEBOOK, 'run_dir = ""')
    return tmp_path


def test_sample_config_is_valid():
    cfg = parse_config(SAMPLE, path=paths.CONFIGS_DIR / "sample.yaml")
    assert cfg.notebooks[0] == "01_data_quality"
    dq = cfg.parameters["01_data_quality"]
    assert dq["start_month"] == "auto" and dq["completeness_recent_months"] == 6   # the window follows from the data
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
    cfg = parse_config("notebooks:\n  01_alpha:\n    level: 1\n", notebooks_dir=nbdir)  # int where float is fine
    assert cfg.parameters["01_alpha"]["level"] == 1.0 and type(cfg.parameters["01_alpha"]["level"]) is float
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
    from pbc_analysis.pipeline.run import _workers

    assert _workers(4, 2) == 2 and _workers(1, 5) == 1 and _workers(3, 5) == 3
    assert 1 <= _workers(0, 50) <= 50


def test_sample_config_has_default_validation_settings():
    cfg = parse_config(SAMPLE, path=paths.CONFIGS_DIR / "sample.yaml")
    assert cfg.validation == PlausibilitySettings()
    for nb, params in cfg.parameters.items():
        assert parameters_source(params).count("\n") == len(params), nb


def test_validation_section_is_parsed_into_settings(nbdir):
    cfg = parse_config("validation:\n  max_cost_ratio: 30\n  accept: [population_change]\n", notebooks_dir=nbdir)
    assert cfg.validation.max_cost_ratio == 30.0 and cfg.validation.accept == ("population_change",)
    with pytest.raises(ConfigError) as err:
        parse_config("validation:\n  max_cost_ratoi: 30\nparameters:\n  n: 'six'\n", notebooks_dir=nbdir)
    assert "validation.max_cost_ratoi" in str(err.value) and "did you mean 'max_cost_ratio'" in str(err.value)
    assert "parameters.n must be int" in str(err.value)  # every problem at once


def test_data_dir_is_required_where_a_notebook_declares_it(tmp_path):
    write_nb(tmp_path, "01_reads", 'data_dir = "data/sample"\nstart_month = "2003-04"\nrun_dir = ""')
    write_nb(tmp_path, "02_also", 'data_dir = "data/sample"\nrun_dir = ""')
    write_nb(tmp_path, "03_no_data", 'run_dir = ""')
    with pytest.raises(ConfigError, match=r"no data_dir for 01_reads, 02_also: set parameters.data_dir"):
        parse_config("parameters:\n  start_month: '2004-04'\n", notebooks_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"no data_dir for 02_also"):
        parse_config("notebooks:\n  01_reads:\n    data_dir: data/sample\n", notebooks_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"data_dir is empty for 01_reads, 02_also"):
        parse_config("parameters:\n  data_dir: ''\n", notebooks_dir=tmp_path)
    cfg = parse_config("parameters:\n  data_dir: data/sample\n", notebooks_dir=tmp_path)
    assert Path(cfg.parameters["02_also"]["data_dir"]) == paths.SAMPLE_DIR
    assert parse_config("run:\n  notebooks: [03_no_data]\n", notebooks_dir=tmp_path).notebooks == ("03_no_data",)


def test_declared_types_from_defaults_and_annotations(tmp_path):
    path = write_nb(tmp_path, "01_typed", "\n".join([
        "# comment", 'code = "110"', "n = 6", "level = 0.95", "flag = True", "levels = [0.9, 1]", "codes = ['a', 'b']",
        "counts = [1, 2]", "periods: list[str] = []", "factors: list[float] = []", "uplift: float | None = None",
        "k: int = 3", 'run_dir = ""']))
    types = {k: str(v) for k, v in notebook_parameter_types(path).items()}
    assert types == {"code": "str", "n": "int", "level": "float", "flag": "bool", "levels": "list[float]",
                     "codes": "list[str]", "counts": "list[int]", "periods": "list[str]", "factors": "list[float]",
                     "uplift": "float | None", "k": "int", "run_dir": "str"}
    assert notebook_parameters(path)["periods"] == [] and notebook_parameters(path)["uplift"] is None


def test_undeclared_or_unsupported_types_name_notebook_and_line(tmp_path):
    path = write_nb(tmp_path, "01_untyped", "\n".join([
        "a = None", "b = []", "c = [1, 'x']", "d: dict = {}", 'e: int = "x"', "f: list[bool] = []",
        "g: list[list[int]] = []", "h = {'k': 1}", "ok: str | None = None"]))
    with pytest.raises(ConfigError) as err:
        notebook_parameter_types(path)
    msg = str(err.value)
    for line, name in enumerate("abcdefgh", 1):
        assert f"01_untyped.ipynb line {line}: parameter {name!r}" in msg, name
    assert "declare it, e.g. `a: list[str] = []` or `a: float | None = None`" in msg
    assert "annotation `dict` is not one of" in msg and "default 'x' is not of its declared type int" in msg
    assert "'ok'" not in msg
    with pytest.raises(ConfigError, match=r"(?s)cannot be checked against.*01_untyped.ipynb line 1.*\n  - 01_untyped.ipynb line 2"):
        parse_config("", notebooks_dir=tmp_path)


def test_values_checked_element_by_element(tmp_path):
    write_nb(tmp_path, "01_typed", 'codes: list[str] = []\nlevels = [0.9, 0.99]\nns: list[int] = []\n'
             'uplift: float | None = None\nrun_dir = ""')
    cfg = parse_config("notebooks:\n  01_typed:\n    codes: ['110']\n    levels: [1, 0.5]\n    ns: [1, 2]\n"
                       "    uplift: 0.02\n", notebooks_dir=tmp_path)
    assert cfg.parameters["01_typed"] == {"codes": ["110"], "levels": [1.0, 0.5], "ns": [1, 2], "uplift": 0.02}
    assert type(cfg.parameters["01_typed"]["levels"][0]) is float
    assert parse_config("notebooks:\n  01_typed:\n    uplift: null\n", notebooks_dir=tmp_path).parameters["01_typed"] == {"uplift": None}
    with pytest.raises(ConfigError) as err:
        parse_config("notebooks:\n  01_typed:\n    codes: [110, '120']\n    levels: 0.9\n    ns: [1, true, 2.5]\n"
                     "    uplift: [0.1]\n", notebooks_dir=tmp_path)
    msg = str(err.value)
    assert "notebooks.01_typed.codes[0] must be a quoted string" in msg and 'write them quoted: ["110", "120"]' in msg
    assert "codes[1]" not in msg
    assert "notebooks.01_typed.levels must be list[float]" in msg and "write a list: [0.9]" in msg
    assert "ns[1] must be int, a list[int] element, got bool True" in msg
    assert "ns[2] must be int, a list[int] element, got float 2.5" in msg
    assert "notebooks.01_typed.uplift must be float | None (default None), got a list [0.1]" in msg


def test_check_name():
    for good in ("sample", "my-run_2.v1", "A" * 64, "_x", "-x"):
        assert check_name(good, "run.name") == good
    for bad in (".hidden", "A" * 65, "a/b", "a b", "<b>", "x\n", "", "caf\u00e9", "..", 3):
        with pytest.raises(ConfigError, match=r"run.name = .* is not a safe name: use 1-64 ASCII letters"):
            check_name(bad, "run.name")


def test_run_name_leaves_room_for_the_run_directory_name(nbdir):
    """A run directory is <stamp>-<name>-<hash>[-N]: with the longest run.name it is still a safe name."""
    from pbc_analysis.core import names

    longest = "n" * names.MAX_RUN_NAME
    parse_config(f"run:\n  name: {longest}\n", notebooks_dir=nbdir)
    assert names.is_safe_name(f"20260101-000000-{longest}-0123abcd-99")
    with pytest.raises(ConfigError, match=f"run.name = .* is not a safe name: use 1-{names.MAX_RUN_NAME} ASCII"):
        parse_config(f"run:\n  name: {longest}n\n", notebooks_dir=nbdir)


def test_parameters_source_is_checked_literals():
    params = {"s": "a'b\"c\\\n", "n": None, "i": -3, "f": 1e-300, "b": False, "ls": ["x", ""], "lf": [0.5, 2], "e": []}
    source = parameters_source(params)
    lines = source.splitlines()
    assert len(lines) == len(params) and lines[0] == "s = 'a\\'b\"c\\\\\\n'"
    namespace: dict = {}
    exec(compile(source, "<parameters>", "exec"), {"__builtins__": {}}, namespace)  # what the kernel does
    assert namespace == params
    assert parameters_source({}) == ""


class _Sneaky(str):
    def __repr__(self) -> str:
        return "__import__('os').getcwd()"


@pytest.mark.parametrize("value, fragment", [
    ((1, 2), "got a tuple"), ({"a": 1}, "got a dict"), ({1, 2}, "got a set"),
    (float("nan"), "non-finite float"), (float("inf"), "non-finite float"), ([1, [2]], "element [1] is a nested list"),
    ([None], "element [0] is a NoneType"),
    (["a", {"b": 1}], "element [1] is a dict"), (_Sneaky("x"), "_Sneaky"), (b"x", "got a bytes"),
    (["\ud800"], "unpaired surrogate"),
])
def test_parameters_source_refuses_anything_but_plain_literals(value, fragment):
    with pytest.raises(ConfigError, match=r"parameter p must be int, finite float, bool, str") as err:
        parameters_source({"p": value})
    assert fragment in str(err.value)


def test_parameters_source_refuses_bad_names():
    with pytest.raises(ConfigError) as err:
        parameters_source({"a b": 1, "import": 2, "x=1;y": 3})
    msg = str(err.value)
    assert all(f"parameter name {n!r} is not a Python identifier" in msg for n in ("a b", "import", "x=1;y"))


def test_param_type_text():
    assert str(ParamType("str", is_list=True)) == "list[str]" and str(ParamType("float", optional=True)) == "float | None"
