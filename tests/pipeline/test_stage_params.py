"""Each notebook's parameters cell is its stages' Params, field for field (one typed source for every setting).

The cell holds the data parameters (data_dir, start_month, end_month), run_dir, and exactly the fields of the
notebook's stages (:data:`pbc_analysis.pipeline.derive.NOTEBOOK_STAGES`; a ``:shared`` stage contributes its
shared fields), with the same defaults and the same types; and the settings derived on the sample are the ones
its config used to spell out by hand.
"""

from __future__ import annotations

import types
import typing

import pytest

from pbc_analysis.core import paths
from pbc_analysis.core.params import AUTO, StageParams
from pbc_analysis.pipeline.config import ParamType, notebook_parameter_types, notebook_parameters
from pbc_analysis.pipeline.derive import DATA_PARAMETERS, NOTEBOOK_STAGES, notebook_settings, params_classes

_SCALARS = {int: "int", float: "float", bool: "bool", str: "str"}


def _param_type(hint: typing.Any) -> ParamType:
    """The config's ParamType of a Params annotation (int, float, bool, str, list[...], | None, list[...] | str)."""
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    optional = type(None) in args
    rest = [a for a in args if a is not type(None)]
    lists = [a for a in rest if typing.get_origin(a) is list]
    if lists:
        (element,) = typing.get_args(lists[0])
        return ParamType(_SCALARS[element], is_list=True, optional=optional, auto=str in rest)
    (only,) = rest
    return ParamType(_SCALARS[only], optional=optional)


@pytest.mark.parametrize("notebook", sorted(NOTEBOOK_STAGES))
def test_every_stage_of_a_notebook_has_params(notebook):
    classes = params_classes(notebook)
    assert len(classes) == len(NOTEBOOK_STAGES[notebook]), f"{notebook}: a stage has no Params class"
    assert all(issubclass(c, StageParams) and c.STAGE for c in classes)


@pytest.mark.parametrize("notebook", sorted(NOTEBOOK_STAGES))
def test_parameters_cell_matches_params_field_for_field(notebook):
    path = paths.NOTEBOOKS_DIR / f"{notebook}.ipynb"
    cell = notebook_parameters(path)
    declared_types = notebook_parameter_types(path)
    settings = notebook_settings(notebook)
    assert set(cell) == set(DATA_PARAMETERS) | {"run_dir"} | set(settings), (
        f"{notebook}: only in the cell {sorted(set(cell) - set(settings) - set(DATA_PARAMETERS) - {'run_dir'})}; "
        f"only in Params {sorted(set(settings) - set(cell))}")
    for name, (cls, _) in settings.items():
        default = cls.defaults()[name]
        assert type(cell[name]) is type(default) and cell[name] == default, f"{notebook}.{name}: cell {cell[name]!r}, Params {default!r}"
        assert declared_types[name] == _param_type(typing.get_type_hints(cls)[name]), f"{notebook}.{name}: types differ"


def test_shared_settings_are_declared_by_each_notebook_that_uses_them():
    users: dict[str, set[str]] = {}
    for notebook in NOTEBOOK_STAGES:
        for name, (_, info) in notebook_settings(notebook).items():
            if info.shared:
                users.setdefault(name, set()).add(notebook)
    assert {"standardisation", "under_level"} <= set(users)
    assert all(users[n] == {"02_benchmarking", "04_savings_attribution"} for n in ("standardisation", "under_level"))


def test_derivable_settings_default_to_auto():
    for notebook in NOTEBOOK_STAGES:
        for name, (cls, info) in notebook_settings(notebook).items():
            if info.derive:
                assert cls.defaults()[name] == AUTO, f"{notebook}.{name} has a rule but defaults to {cls.defaults()[name]!r}"


def test_docs_settings_is_current():
    from pbc_analysis.pipeline.derive import settings_markdown

    doc = paths.PROJECT_ROOT / "docs" / "settings.md"
    assert doc.read_text(encoding="utf-8") == settings_markdown(), "docs/settings.md is out of date: run `make docs`"
