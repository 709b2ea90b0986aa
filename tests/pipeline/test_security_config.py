"""Issue 12, "No code from data or config": a config value only ever becomes a checked literal.

Every hostile or careless config below is refused by ``pbc run`` before anything runs: exit code 2,
the message names the key and the expected type, no run directory is created and nothing executes
(a ``!!python/object/apply:os.system`` value does not create its marker file). A notebook given strings
with quotes, backslashes, newlines and code receives exactly those strings.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from pbc_analysis.core import paths
from pbc_analysis.pipeline.config import (
    ConfigError,
    StrictLoader,
    load_config,
    load_yaml,
    parse_config,
)

SAMPLE = (paths.CONFIGS_DIR / "sample.yaml").read_text(encoding="utf-8")
MEASURE = "    measure: referrals\n"          # notebooks.03_referral_evaluation.measure (str)
LAG = "    lag_months: 3 "                    # notebooks.04_savings_attribution.lag_months (int)
BAND = "    band: 0.10 "                       # notebooks.05_budgets_and_risk.band (float)
HIGH = "    high_level: 0.998 "                # notebooks.02_benchmarking.high_level (float)
WINDOW = "baseline_window: auto"


def _case(old: str, new: str) -> str:
    assert SAMPLE.count(old) == 1, old
    return SAMPLE.replace(old, new)


def _nb03(extra: str) -> str:
    return _case(MEASURE, MEASURE + extra)


def _nb02(extra: str) -> str:
    return _case(HIGH, extra + HIGH)


# (id, config text with {marker} for a file that must never be created, fragments the error must show)
CASES = [
    ("python-object-apply", _case(MEASURE, '    measure: !!python/object/apply:os.system ["touch {marker}"]\n'),
     ["notebooks.03_referral_evaluation.measure (line", "!!python/object/apply:os.system is not allowed"]),
    ("python-name", _case(MEASURE, "    measure: !!python/name:os.system\n"),
     ["notebooks.03_referral_evaluation.measure", "!!python/name:os.system is not allowed"]),
    ("python-tuple", _case(WINDOW, 'baseline_window: !!python/tuple ["2003-04", "2005-03"]'),
     ["notebooks.03_referral_evaluation.baseline_window", "!!python/tuple is not allowed"]),
    ("set", _case(WINDOW, "baseline_window: !!set {2003-04, 2005-03}"),
     ["notebooks.03_referral_evaluation.baseline_window", "!!set is not allowed"]),
    ("omap", _case(WINDOW, 'baseline_window: !!omap [{a: "2003-04"}]'),
     ["notebooks.03_referral_evaluation.baseline_window", "!!omap is not allowed"]),
    ("pairs", _case(WINDOW, 'baseline_window: !!pairs [{a: "2003-04"}]'),
     ["notebooks.03_referral_evaluation.baseline_window", "!!pairs is not allowed"]),
    ("binary", _case(MEASURE, "    measure: !!binary cmVmZXJyYWxz\n"),
     ["notebooks.03_referral_evaluation.measure", "!!binary is not allowed"]),
    ("unknown-tag", _case(MEASURE, "    measure: !env HOME\n"),
     ["notebooks.03_referral_evaluation.measure", "!env is not allowed"]),
    ("date-in-list", _case(WINDOW, "baseline_window: [2003-04-01, 2005-03-31]"),
     ["notebooks.03_referral_evaluation.baseline_window[0]", "notebooks.03_referral_evaluation.baseline_window[1]",
      "read as a date; write dates and months as quoted strings"]),
    ("duplicate-key", _nb03("    measure: first_op\n"),
     ["notebooks.03_referral_evaluation.measure (line", "duplicate key"]),
    ("alias", _case(MEASURE, "    measure: &m referrals\n    activity_end: *m\n").replace("    activity_end: auto", ""),
     ["notebooks.03_referral_evaluation.activity_end", "anchors and aliases"]),
    ("ints-for-strings", _nb03("    specialties: [110, 120]\n"),
     ["notebooks.03_referral_evaluation.specialties[0] must be a quoted string (str, a list[str] element)",
      'write them quoted: ["110", "120"]']),
    ("nested-list", _nb02("    confidence: [[0.95], 0.998]\n"),
     ["notebooks.02_benchmarking.confidence[0] must be float, a list[float] element", "nested lists"]),
    ("mapping-in-list", _nb03('    specialties: ["110", {code: 120}]\n'),
     ["notebooks.03_referral_evaluation.specialties[1] must be str, a list[str] element", "got a mapping"]),
    ("mapping-for-scalar", _case(MEASURE, '    measure: {code: "__import__(\'os\')"}\n'),
     ["notebooks.03_referral_evaluation.measure must be str", "got a mapping"]),
    ("none-default-wrong-type", _case(BAND, '    tariff_uplift: "0.025"\n' + BAND),
     ["notebooks.05_budgets_and_risk.tariff_uplift must be float | None", "got str '0.025'"]),
    ("bool-for-int", _case(LAG, "    lag_months: true "),
     ["notebooks.04_savings_attribution.lag_months must be int", "got bool True"]),
    ("code-for-int", _case(LAG, "    lag_months: \"__import__('os').system('touch {marker}')\" "),
     ["notebooks.04_savings_attribution.lag_months must be int", "got str"]),
    ("nan", _case(BAND, "    band: .nan "),
     ["notebooks.05_budgets_and_risk.band must be float", "a finite number; got nan"]),
    ("inf-in-list", _nb02("    confidence: [.inf, 0.998]\n"),
     ["notebooks.02_benchmarking.confidence[0] must be float, a list[float] element", "a finite number; got inf"]),
    ("name-path", _case("  name: sample\n", '  name: "../../outside"\n'),
     ["run.name = '../../outside' is not a safe name", "letters, digits"]),
    ("name-markup", _case("  name: sample\n", '  name: "<script>alert(1)</script>"\n'),
     ["run.name = '<script>alert(1)</script>' is not a safe name"]),
    ("notebook-name-path", _case("  workers: 0 ", '  notebooks: ["../01_data_quality"]\n  workers: 0 '),
     ["run.notebooks[0] = '../01_data_quality' is not a safe name"]),
    ("no-data-dir", _case("  data_dir: data/sample\n", ""),
     ["no data_dir for 01_data_quality", "set parameters.data_dir"]),
]


# Driven through `pbc run` in a subprocess: code in a tag, the traceback case of issue 12, a path as run.name.
# Every other case is refused by load_config, the first thing `pbc run` does (test_config_refused_in_process).
CLI_IDS = ("python-object-apply", "date-in-list", "name-path")
CLI_CASES = [c for c in CASES if c[0] in CLI_IDS]
IN_PROCESS_CASES = [c for c in CASES if c[0] not in CLI_IDS]


def _write_config(tmp_path: Path, text: str) -> tuple[Path, Path]:
    """(config file, marker file that must never be created) for a case's text."""
    marker = tmp_path / "pwned"
    config = tmp_path / "evil.yaml"
    config.write_text(text.replace("{marker}", str(marker)), encoding="utf-8")
    return config, marker


def test_cases_are_split_between_cli_and_in_process():
    ids = [c[0] for c in CASES]
    assert len(set(ids)) == len(ids) and set(CLI_IDS) <= set(ids)  # every case runs once, one way or the other


@pytest.mark.parametrize("text, fragments", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_refuses_before_anything_runs(tmp_path, text, fragments):
    config, marker = _write_config(tmp_path, text)
    reports = tmp_path / "reports"
    proc = subprocess.run([sys.executable, "-m", "pbc_analysis.pipeline.cli", "run", "--config", str(config), "--reports-dir", str(reports)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: invalid run config:") and "Traceback" not in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, (fragment, proc.stderr)
    assert str(config) in proc.stderr                      # the file is named
    assert not reports.exists() and not marker.exists()
    assert proc.stdout == ""


@pytest.mark.parametrize("text, fragments", [c[1:] for c in IN_PROCESS_CASES], ids=[c[0] for c in IN_PROCESS_CASES])
def test_config_refused_in_process(tmp_path, monkeypatch, text, fragments):
    """The same refusals through load_config, which `pbc run` calls before anything else (its message is
    what `pbc run` prints after "error: ", with exit code 2: test_cli_refuses_before_anything_runs)."""
    config, marker = _write_config(tmp_path, text)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_config(config)
    msg = str(err.value)
    assert msg.startswith("invalid run config:") and "Traceback" not in msg, msg
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)
    assert str(config) in msg                              # the file is named
    assert not marker.exists() and list(tmp_path.iterdir()) == [config]


def test_every_problem_is_listed_at_once():
    text = _nb03("    specialties: [110]\n").replace("    band: 0.10 ", "    band: .inf ").replace("  name: sample", "  name: a/b")
    with pytest.raises(ConfigError) as err:
        parse_config(text, path=paths.CONFIGS_DIR / "sample.yaml")
    msg = str(err.value)
    assert "specialties[0]" in msg and "band must be float" in msg and "run.name = 'a/b'" in msg
    tags = SAMPLE.replace("    measure: referrals", "    measure: !!set {a}").replace("baseline_window: auto", "baseline_window: [2003-04-01]")
    with pytest.raises(ConfigError) as err:
        parse_config(tags)
    assert "!!set is not allowed" in str(err.value) and "baseline_window[0] (line" in str(err.value)


def test_strict_loader_is_a_safe_loader_that_refuses_tags(tmp_path):
    marker = tmp_path / "pwned"
    assert issubclass(StrictLoader, yaml.SafeLoader)
    for text in (f'x: !!python/object/apply:os.system ["touch {marker}"]', "x: !!python/object/new:list [[1]]",
                 "x: !!set {a: null}", "x: !!omap [{a: 1}]", "x: !!binary aGk=", "x: !custom 1", "x: !!float 1",
                 "x: [1, [2003-04-01]]", "? [a, b]\n: 1", "x: 1\nx: 2", "<<: {a: 1}"):
        with pytest.raises(ConfigError, match=r"\(line \d+\)"):
            yaml.load(text, Loader=StrictLoader)  # the strict loader is the point
    assert not marker.exists()
    assert load_yaml("a: [1, 2.5, '3', true, null]\nb: !!str 110\nc: {d: e}\n") == {
        "a": [1, 2.5, "3", True, None], "b": "110", "c": {"d": "e"}}
    with pytest.raises(ConfigError, match="has 5000 digits; whole numbers have at most 18"):
        load_yaml("x: " + "9" * 5000)  # more digits than Python converts: an error, not a traceback


# --------------------------------------------------------------------------------------------------
# End to end: a probe notebook receives exactly the strings it was given
# --------------------------------------------------------------------------------------------------

PROBE_PARAMETERS = """\
s = "default"
i = 1
f = 0.5
b = False
ls: list[str] = []
li: list[int] = []
lf: list[float] = []
run_dir = ""
"""
PROBE_BODY = """\
import json, pathlib
received = {"s": s, "i": i, "f": f, "b": b, "ls": ls, "li": li, "lf": lf}
types = {k: [type(x).__name__ for x in v] if isinstance(v, list) else type(v).__name__ for k, v in received.items()}
pathlib.Path(run_dir, "received.json").write_text(json.dumps({"values": received, "types": types}))
"""
KINDS = {"s": "str", "i": "int", "f": "float", "b": "bool", "ls": "list[str]", "li": "list[int]", "lf": "list[float]"}
DEFAULTS = {"s": "'default'", "i": "1", "f": "0.5", "b": "False", "ls": "[]", "li": "[]", "lf": "[]"}
NESTED = "; nested lists and mappings are not allowed"


def _shown(value: object) -> str:
    """A value as the config check shows it: its repr, cut to 80 characters."""
    text = repr(value)
    return text if len(text) <= 80 else text[:75] + "...)"


def _refusal(param: str, kind: str, code: str) -> str:
    """The exact message parse_config gives for hostile value ``kind`` of probe parameter ``param``."""
    key, ptype = f"notebooks.01_probe.{param}", KINDS[param]
    must = f"{key} must be {ptype} (default {DEFAULTS[param]}), got"
    element = ptype[5:-1] if ptype.startswith("list[") else None
    if kind in ("tuple", "object"):     # refused by the YAML loader, before any type is looked at
        tag = "!!python/tuple" if kind == "tuple" else "!!python/object/apply:os.system"
        lines = [(f"{key} (line 3): the YAML tag {tag} is not allowed; a config holds only plain mappings, lists, "
                  "strings, numbers, true/false and null")]
    elif kind == "mapping":
        lines = [f"{must} mapping {{'a': 1}}" if element else f"{must} a mapping {{'a': 1}}{NESTED}"]
    elif kind == "nested":
        lines = ([f"{key}[{i}] must be {element}, a {ptype} element, got a list [{i + 1}]{NESTED}" for i in range(2)]
                 if element else [f"{must} a list [[1], [2]]{NESTED}"])
    elif ptype == "list[str]":          # code given as a mapping (as a string it would be a valid element)
        lines = [f"{must} mapping {_shown({'code': code})}"]
    else:
        lines = [f"{must} str {_shown(code)}" + (f"; write a list: [{json.dumps(code)}]" if element else "")]
    return "invalid run config:\n" + "\n".join(f"  - config: {line}" for line in lines)


def _nasty(marker: Path) -> list[str]:
    m = str(marker)
    return [
        f"\"); import os; os.system('touch {m}') #",
        f"'); import os; os.system(\"touch {m}\") #",
        f"'''; __import__('os').system('touch {m}'); '''",
        f'"""; __import__("os").system("touch {m}"); """',
        f"\\\"); __import__('os').system('touch {m}') #",
        f"line one\nimport os; os.system('touch {m}')\n",
        "tab\there, carriage\rreturn, nul-free \u00e9\u2713",
        "{{ run_dir }} {0} %s ${HOME} `id` $(id)",
        "</script><script>alert(1)</script>",
        "\\",
        "",
    ]


@pytest.fixture()
def probe_dir(tmp_path) -> Path:
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    params = nbformat.v4.new_code_cell(PROBE_PARAMETERS)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(PROBE_BODY)]
    nbformat.write(nb, nbdir / "01_probe.ipynb")
    return nbdir


def test_probe_notebook_receives_exactly_the_strings(tmp_path, probe_dir):
    from pbc_analysis.pipeline.run import run_pipeline

    marker = tmp_path / "pwned"
    nasty = _nasty(marker)
    given = {"s": nasty[0], "i": -7, "f": 1e-300, "b": True, "ls": nasty, "li": [1, -2, 3], "lf": [0.1, 2]}
    text = yaml.safe_dump({"run": {"name": "probe", "workers": 1}, "notebooks": {"01_probe": given}}, allow_unicode=True)
    text += '# hand-written forms of the same kind of string\nparameters:\n  s: "\\"); import os; os.system(\'touch ' + str(marker) + '\') #"\n'
    cfg = parse_config(text, notebooks_dir=probe_dir)
    assert cfg.parameters["01_probe"]["s"] == nasty[0]  # the notebook's own section wins over `parameters`
    run_dir = run_pipeline(cfg, reports_dir=tmp_path / "reports", render=False, run_id="probe", echo=lambda *a, **k: None)
    out = json.loads((run_dir / "received.json").read_text(encoding="utf-8"))
    assert out["values"] == {**given, "lf": [0.1, 2.0]}
    assert out["types"] == {"s": "str", "i": "int", "f": "float", "b": "bool", "ls": ["str"] * len(nasty),
                            "li": ["int"] * 3, "lf": ["float", "float"]}
    assert not marker.exists()
    executed = nbformat.read(run_dir / "notebooks" / "01_probe.ipynb", as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1
    for node in ast.parse(injected[0].source).body:  # whoever wrote the cell: literal assignments only
        assert isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name), ast.dump(node)
        ast.literal_eval(node.value)


@pytest.mark.parametrize("param", list(KINDS))
def test_every_parameter_kind_refuses_tuple_mapping_and_code(tmp_path, probe_dir, param):
    marker = tmp_path / "pwned"
    code = f"__import__('os').system('touch {marker}')"
    hostile = {"tuple": "!!python/tuple [1, 2]", "mapping": "{a: 1}", "object": f'!!python/object/apply:os.system ["touch {marker}"]',
               "nested": "[[1], [2]]", "code": json.dumps(code)}
    for kind, value in hostile.items():
        text = f"notebooks:\n  01_probe:\n    {param}: {value}\n"
        if kind == "code" and KINDS[param] == "str":
            assert parse_config(text, notebooks_dir=probe_dir).parameters["01_probe"][param] == code  # a literal, no more
            continue
        if kind == "code" and KINDS[param] == "list[str]":
            text = f"notebooks:\n  01_probe:\n    {param}: {{code: {json.dumps(code)}}}\n"
        with pytest.raises(ConfigError) as err:
            parse_config(text, notebooks_dir=probe_dir)
        assert str(err.value) == _refusal(param, kind, code), kind
    assert not marker.exists()


def test_numbers_are_plain_decimals():
    """YAML 1.1 reads 0x10 as 16, 017 as 15 and 1:30 as 90, and 1e-3 as a string: none of that in a config."""
    assert load_yaml("a: 1e-3\nb: [0.95, 1.5e-3, 10, -5]\nc: '0x10'\nd: !!str 110\n") == {
        "a": 0.001, "b": [0.95, 0.0015, 10, -5], "c": "0x10", "d": "110"}
    for text, fragment in (("a: 0x10", "0x10 is not a plain decimal number"), ("a: 017", "017 is not a plain decimal"),
                           ("a: 1:30", "1:30 is not a plain decimal"), ("a: 1_000", "1_000 is not a plain decimal"),
                           ("a: 1_0.5", "1_0.5 is not a plain decimal number; write it like 0.95"),
                           ("a: [1, 1234567890123456789]", "a[1] (line 1): 1234567890123456789... has 19 digits")):
        with pytest.raises(ConfigError) as err:
            load_yaml(text)
        assert fragment in str(err.value), (text, str(err.value))


def test_path_parameters_refuse_control_characters_and_missing_files(tmp_path):
    from pbc_analysis.core import paths as _paths

    text = ('parameters:\n  data_dir: "data/sample\\0x"\n  start_month: "2003-04"\n  end_month: "2008-03"\n'
            'notebooks:\n  05_budgets_and_risk:\n    completeness_snapshots: ' + str(tmp_path / "none.csv") + "\n")
    with pytest.raises(ConfigError) as err:
        parse_config(text, notebooks_dir=_paths.NOTEBOOKS_DIR)
    msg = str(err.value)
    assert "data_dir [01_data_quality] = 'data/sample\\x00x' contains a control character" in msg
    # a long value is shown shortened ('...'), however deep tmp_path is; the path looked at is given in full
    assert re.search(r"completeness_snapshots \[05_budgets_and_risk\] = '[^\n]*? is not a file \(looked at "
                     + re.escape(str(tmp_path / "none.csv")) + r"\)", msg), msg
