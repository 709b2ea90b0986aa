"""The package's layers: imports only point down (core -> data -> ingest -> synth -> methods -> stages -> publish -> pipeline).

Checked on the source (every ``import``/``from ... import`` of ``pbc_analysis``, also those inside functions),
so a lazy import cannot hide an upward dependency; and in a fresh interpreter, importing the publish layer
loads no pipeline module.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pbc_analysis.core import paths

LAYERS = ("core", "data", "ingest", "synth", "methods", "stages", "publish", "pipeline")
RANK = {layer: i for i, layer in enumerate(LAYERS)}


def _modules() -> list[Path]:
    return sorted(p for p in paths.PACKAGE_DIR.rglob("*.py") if p.parent != paths.PACKAGE_DIR)


def _layer_of_module(path: Path) -> str:
    return path.relative_to(paths.PACKAGE_DIR).parts[0]


def _imported_layers(path: Path) -> list[tuple[int, str]]:
    """``(line, layer)`` of every pbc_analysis import in a module (``pbc_analysis`` itself: only ``__version__``)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            targets = [node.module] if node.module != "pbc_analysis" else [
                f"pbc_analysis.{alias.name}" for alias in node.names if alias.name != "__version__"]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            out.append((node.lineno, "relative"))
            continue
        else:
            continue
        for target in targets:
            parts = target.split(".")
            if parts[0] == "pbc_analysis" and len(parts) > 1:
                out.append((node.lineno, parts[1]))
    return out


def test_every_module_sits_in_a_layer():
    stray = [p.name for p in paths.PACKAGE_DIR.glob("*.py") if p.name != "__init__.py"]
    assert stray == [], f"modules outside the layers {LAYERS}: {stray}"
    assert {_layer_of_module(p) for p in _modules()} <= set(LAYERS)


@pytest.mark.parametrize("module", _modules(), ids=lambda p: str(p.relative_to(paths.PACKAGE_DIR)))
def test_imports_only_point_down(module):
    own = _layer_of_module(module)
    bad = [f"line {line}: imports {layer}" for line, layer in _imported_layers(module)
           if layer == "relative" or layer not in RANK or RANK[layer] > RANK[own]]
    assert bad == [], f"{module.relative_to(paths.PROJECT_ROOT)} ({own}) must import only {LAYERS[:RANK[own] + 1]} (absolutely): {bad}"


def test_the_rule_sees_an_upward_import(tmp_path):
    (tmp_path / "m.py").write_text("def f():\n    from pbc_analysis.publish import plots\n    from . import x\n")
    assert _imported_layers(tmp_path / "m.py") == [(2, "publish"), (3, "relative")]


def test_publish_layer_loads_no_pipeline_module():
    code = ("import sys; import pbc_analysis.publish.report, pbc_analysis.publish.report_content, pbc_analysis.publish.bundle; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('pbc_analysis.'))))")
    env = {**os.environ, "PYTHONPATH": str(paths.PROJECT_ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    loaded = set(out.split())
    assert {"pbc_analysis.publish.report", "pbc_analysis.publish.report_content", "pbc_analysis.publish.bundle"} <= loaded
    assert {m for m in loaded if m.startswith("pbc_analysis.pipeline")} == set()


MAX_MODULE_LINES = 800
MAX_FUNCTION_LINES = 80   # of code: the numpydoc docstring (Parameters, Returns, References) is not counted


def test_no_module_over_800_lines():
    big = {str(p.relative_to(paths.PACKAGE_DIR)): n for p in _modules()
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert big == {}, f"modules over {MAX_MODULE_LINES} lines: split them by concept: {big}"


def test_no_function_over_80_lines_of_code():
    long = {}
    for p in _modules():
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = node.body[0]
                doc = (first.end_lineno - first.lineno + 1) if ast.get_docstring(node, clean=False) is not None else 0
                code = node.end_lineno - node.lineno + 1 - doc
                if code > MAX_FUNCTION_LINES:
                    long[f"{p.relative_to(paths.PACKAGE_DIR)}:{node.name}"] = code
    assert long == {}, f"functions over {MAX_FUNCTION_LINES} lines of code: cut them into named steps: {long}"


def test_every_module_is_listed_in_the_package_docstring_and_the_readme():
    import pbc_analysis

    readme = (paths.PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    doc = pbc_analysis.__doc__ or ""
    missing_doc, missing_readme = [], []
    for p in _modules():
        rel = p.relative_to(paths.PACKAGE_DIR)
        name = rel.parent.as_posix() if rel.name == "__init__.py" else rel.with_suffix("").as_posix()
        if name in LAYERS:
            continue
        if f"``{name}``" not in doc and f"``{name}/``" not in doc:
            missing_doc.append(name)
        if f"`{name}`" not in readme and f"`{name}/`" not in readme:
            missing_readme.append(name)
    assert missing_doc == [] and missing_readme == [], (missing_doc, missing_readme)
