"""Notebooks are thin and committed clean: no outputs, a literal parameters cell, no function definitions."""

from __future__ import annotations

import ast
import json

import pytest

from pbc_analysis.core import paths
from pbc_analysis.pipeline.run import list_notebooks, notebook_parameters

NOTEBOOKS = list_notebooks(paths.NOTEBOOKS_DIR)


def test_there_are_numbered_notebooks():
    names = [p.stem for p in NOTEBOOKS]
    assert "01_data_quality" in names and "09_evaluation_report" in names


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(nb_path):
    nb = json.loads(nb_path.read_text())
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{nb_path.name} cell {i} has outputs"
            assert cell.get("execution_count") is None, f"{nb_path.name} cell {i} has an execution count"


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_literal_and_has_run_dir(nb_path):
    params = notebook_parameters(nb_path)
    assert params.get("run_dir") == ""
    assert json.loads(nb_path.read_text())["metadata"]["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_function_or_class_definitions(nb_path):
    nb = json.loads(nb_path.read_text())
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        tree = ast.parse("".join(cell["source"]))
        defs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda))]
        assert not defs, f"{nb_path.name} cell {i} defines code; move it into pbc_analysis"
