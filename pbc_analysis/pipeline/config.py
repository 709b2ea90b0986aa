"""The run config: parsed and checked against the notebooks' own ``parameters`` cells before anything runs.

A config can only ever set notebook parameters to *literals of the type the notebook declares*; it
cannot build objects, run code or name files outside the rules below. Every problem is reported at
once, each with its key (``notebooks.03_referral_evaluation.specialties[1]``), the line where the YAML
has one, and the fix. (papermill by itself only warns about names a notebook does not declare.)

YAML
    Read by :class:`StrictLoader`: only plain mappings, lists, strings, numbers, ``true``/``false`` and
    ``null``. Tags that build other things (``!!set``, ``!!omap``, ``!!pairs``, ``!!binary``, any
    ``!!python/...``, any unknown ``!tag``), explicit tags other than ``!!str``, anchors and aliases
    (``&a``/``*a``), merge keys (``<<``), keys that are not plain names and duplicate keys are errors.
    An unquoted date (``2003-04-01``, also inside a list) is an error: months and dates are quoted
    strings, ``"2003-04"``.

Parameter types
    Each parameter of a notebook's ``parameters`` cell (only ``name = literal`` or
    ``name: type = literal`` lines) has one declared type: ``int``, ``float``, ``bool``, ``str``,
    ``list[int]``, ``list[float]`` or ``list[str]``, and ``| None`` only where the notebook accepts
    ``None``. It is taken from the default when that is unambiguous (a non-``None`` scalar; a
    non-empty list whose elements are all ``str``, all ``int``, or ``int`` and ``float`` =
    ``list[float]``), otherwise from the annotation (``periods: list[str] = []``,
    ``tariff_uplift: float | None = None``); a parameter whose type cannot be told is an error naming
    the notebook and line. A config value must then be, element by element:

    * ``bool`` - ``true`` or ``false`` only (not 0/1);
    * ``int`` - a whole number, not a bool and not ``6.0``;
    * ``float`` - a finite number (an int is converted; ``.nan`` and ``.inf`` are refused);
    * ``str`` - a quoted string when it looks like a number (codes such as ``"110"``, years ``"2004/05"``);
    * ``list[...]`` - a flat list of those (no nested lists or mappings; a bare scalar is refused);
    * ``null`` only where ``| None`` is declared.

    :func:`parameters_source` writes the values as ``name = repr(value)`` lines and checks that they
    read back as the same literals; :func:`parse_config` guarantees every value it returns passes it.

Names
    ``run.name`` and the names in ``run.notebooks`` are safe names (:func:`check_name`): 1-64 ASCII
    letters, digits, ``-``, ``_`` and ``.``, not starting with ``.`` (``run.name`` at most 36, so that
    its run directory ``<stamp>-<name>-<hash>[-N]`` is a safe name too). They reach file names, HTML
    and the runs index.

Inputs
    A notebook that declares ``data_dir`` must be given one by the config (``parameters.data_dir`` or
    per notebook): the notebooks' default points at the embedded sample, and a run on your own config
    must never silently read it. The ``validation:`` section holds the plausibility settings
    (:func:`pbc_analysis.data.plausibility.parse_settings`).
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import keyword
import math
from pathlib import Path
from typing import Any, Mapping

from pbc_analysis.core import names, paths
from pbc_analysis.core.params import AUTO
from pbc_analysis.core.strict_yaml import ConfigError, StrictLoader, load_yaml, read_config_file  # noqa: F401 (re-exported)
from pbc_analysis.data.plausibility import PlausibilitySettings, parse_settings
from pbc_analysis.publish import results

REPORT_NOTEBOOK = "09_evaluation_report"
RESERVED_PARAMETERS = {"run_dir"}
PATH_SUFFIXES = ("_dir", "_path", "_file")
PATH_PARAMETERS = frozenset({"completeness_snapshots"})   # input files whose names do not end in PATH_SUFFIXES
TOP_LEVEL_KEYS = {"run", "parameters", "notebooks", "validation", "extracts"}
RUN_KEYS = {"name": str, "notebooks": list, "renderer": str, "workers": int, "partition": str, "commissioners": list,
            "parallel": int}
PARTITION_KEYS = ("partition", "commissioners", "parallel")   # a national run (pbc_analysis.pipeline.national)
PARTITIONS = ("none", "commissioner")
RENDERERS = ("auto", "quarto", "nbconvert")
NAME_RULE = names.name_rule()
_SCALARS: dict[str, type] = {"int": int, "float": float, "bool": bool, "str": str}
_LIST_ELEMENTS = ("int", "float", "str")
_TYPES_TEXT = "int, float, bool, str, list[int], list[float] or list[str], optionally `| None`"


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    kinds: dict[type, str] = {dict: "mapping", list: "list"}
    return kinds.get(type(value), type(value).__name__)


def _show(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + "...)"



# --------------------------------------------------------------------------------------------------
# Declared types and checking values against them
# --------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ParamType:
    """A declared parameter type: ``int``, ``float``, ``bool``, ``str`` or a flat list of int, float or str.

    ``optional`` (``| None``) only where the notebook accepts ``None``.
    """

    scalar: str                  # "int" | "float" | "bool" | "str"
    is_list: bool = False
    optional: bool = False
    auto: bool = False           # a list that may instead be the word "auto" (annotated `list[...] | str`)

    def __str__(self) -> str:
        text = f"list[{self.scalar}]" if self.is_list else self.scalar
        text = f'{text} or "auto"' if self.auto else text
        return f"{text} | None" if self.optional else text


def _parse_annotation(node: ast.expr) -> ParamType | None:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        sides = [node.left, node.right]
        words = [s for s in sides if isinstance(s, ast.Name) and s.id == "str"]
        lists = [s for s in sides if isinstance(s, ast.Subscript)]
        if len(words) == 1 and len(lists) == 1:  # `list[...] | str`: a list, or "auto" (derived from the data)
            other = _parse_annotation(sides[1] if words[0] is sides[0] else sides[0])
            return dataclasses.replace(other, auto=True) if other and other.is_list and not other.optional else None
        nones = [s for s in sides if isinstance(s, ast.Constant) and s.value is None]
        inner = [s for s in sides if s not in nones]
        base = _parse_annotation(inner[0]) if len(nones) == 1 and len(inner) == 1 else None
        return dataclasses.replace(base, optional=True) if base and not base.optional else None
    if isinstance(node, ast.Name) and node.id in _SCALARS:
        return ParamType(node.id)
    if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "list"
            and isinstance(node.slice, ast.Name) and node.slice.id in _LIST_ELEMENTS):
        return ParamType(node.slice.id, is_list=True)
    return None


def _infer_type(default: Any) -> ParamType | None:
    if type(default) in (int, float, bool, str):
        return ParamType(type(default).__name__)
    if type(default) is list and default:
        kinds = {type(v) for v in default}
        if kinds == {str}:
            return ParamType("str", is_list=True)
        if kinds == {int}:
            return ParamType("int", is_list=True)
        if kinds <= {int, float}:
            return ParamType("float", is_list=True)
    return None


def _scalar_problem(key: str, value: Any, scalar: str, expected: str) -> tuple[Any, str | None]:
    """``value`` checked (and converted: int -> float) as one ``scalar``; or the problem."""
    if isinstance(value, (dict, list)):
        return value, f"{key} must be {expected}, got a {_type_name(value)} {_show(value)}; nested lists and mappings are not allowed"
    if scalar == "str":
        if type(value) is not str:
            return value, (f"{key} must be a quoted string ({expected}), got {_type_name(value)} {_show(value)}; "
                           f"codes and dates are passed as strings: write \"{value}\"")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value, f"{key} must be text, got a string with an unpaired surrogate escape {_show(value)}"
        return value, None
    if scalar == "bool":
        ok = type(value) is bool
    elif scalar == "int":
        ok = type(value) is int
    else:
        ok = type(value) in (int, float)
        if ok:
            try:
                value = float(value)
            except OverflowError:
                ok = False
            if ok and not math.isfinite(value):
                return value, f"{key} must be {expected}, a finite number; got {_show(value)}"
    return value, None if ok else f"{key} must be {expected}, got {_type_name(value)} {_show(value)}"


def check_value(key: str, value: Any, ptype: ParamType, default: Any = None) -> tuple[Any, list[str]]:
    """Check a config value against a declared type, element by element.

    Parameters
    ----------
    key : str
        Its key path for messages, e.g. ``notebooks.03_referral_evaluation.specialties``.
    value : object
        The value read from YAML.
    ptype : ParamType
        The declared type.
    default : object
        The notebook's default, shown in messages.

    Returns
    -------
    value : object
        The value to pass (ints converted to float where float is declared).
    problems : list of str
        Each problem with the key (``key[i]`` for list elements) and the expected type; empty if valid.
    """
    expected = f"{ptype} (default {_show(default)})"
    if ptype.auto and value == AUTO:
        return value, []
    if value is None:
        return None, [] if ptype.optional else [f"{key} must be {expected}, got null; this parameter does not accept null"]
    if not ptype.is_list:
        checked, problem = _scalar_problem(key, value, ptype.scalar, expected)
        return checked, [problem] if problem else []
    if type(value) is not list:
        fix = f"; write a list: [{json.dumps(value)}]" if type(value) in (int, float, str) else ""
        return value, [f"{key} must be {expected}, got {_type_name(value)} {_show(value)}{fix}"]
    out, problems = [], []
    for i, item in enumerate(value):
        checked, problem = _scalar_problem(f"{key}[{i}]", item, ptype.scalar, f"{ptype.scalar}, a {ptype} element")
        out.append(checked)
        if problem:
            problems.append(problem)
    if ptype.scalar == "str" and problems and all(type(v) in (int, float, str) for v in value):
        problems = [p.split("; codes and dates")[0] for p in problems]
        problems.append(f"{key}: codes and dates are passed as strings: write them quoted: "
                        f"{json.dumps([str(v) for v in value])}")
    return out, problems


# --------------------------------------------------------------------------------------------------
# Notebooks and their parameters cells
# --------------------------------------------------------------------------------------------------

def list_notebooks(notebooks_dir: Path = paths.NOTEBOOKS_DIR) -> list[Path]:
    """Numbered notebooks (``NN_name.ipynb``) in execution order.

    Parameters
    ----------
    notebooks_dir : Path
        The notebooks directory.

    Returns
    -------
    list of Path
    """
    return sorted(p for p in notebooks_dir.glob("[0-9][0-9]_*.ipynb"))


def _parameters_cell(path: Path) -> list[tuple[str, Any, ast.expr | None, int]]:
    """``(name, default, annotation, line)`` of each line of the notebook's ``parameters`` cell."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = [c for c in nb["cells"] if c.get("cell_type") == "code" and "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ConfigError(f"{path.name}: expected exactly one cell tagged 'parameters', found {len(cells)}")
    source = "".join(cells[0]["source"]) if isinstance(cells[0]["source"], list) else cells[0]["source"]
    out = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, annotation = node.targets[0].id, None
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name, annotation = node.target.id, node.annotation
        else:
            raise ConfigError(f"{path.name}: the parameters cell may only hold `name = literal` or `name: type = literal` "
                              f"lines (line {node.lineno})")
        assert node.value is not None  # an AnnAssign without a value was refused above
        try:
            default = ast.literal_eval(node.value)
        except ValueError as exc:
            raise ConfigError(f"{path.name}: parameter {name!r} is not a literal (line {node.lineno})") from exc
        out.append((name, default, annotation, node.lineno))
    return out


def notebook_parameters(path: Path) -> dict[str, Any]:
    """Names and default values of a notebook's ``parameters`` cell.

    The cell must be tagged ``parameters`` and contain only ``name = <literal>`` (or
    ``name: <type> = <literal>``) assignments, comments allowed, so that every default is known
    without running code.

    Parameters
    ----------
    path : Path
        The notebook.

    Returns
    -------
    dict
        Parameter name -> default value.
    """
    return {name: default for name, default, _, _ in _parameters_cell(path)}


def notebook_parameter_types(path: Path) -> dict[str, ParamType]:
    """The declared type of each parameter of a notebook (see the module docstring for the rules).

    Parameters
    ----------
    path : Path
        The notebook.

    Returns
    -------
    dict
        Parameter name -> :class:`ParamType`.

    Raises
    ------
    ConfigError
        Naming the notebook and line of every parameter whose type cannot be told, whose annotation is
        not a supported type, or whose default does not have the annotated type.
    """
    types: dict[str, ParamType] = {}
    problems: list[str] = []
    for name, default, annotation, line in _parameters_cell(path):
        at = f"{path.name} line {line}: parameter {name!r}"
        if annotation is None:
            ptype = _infer_type(default)
            if ptype is None:
                problems.append(f"{at} = {_show(default)}: its type cannot be told from the default; declare it, "
                                f"e.g. `{name}: list[str] = []` or `{name}: float | None = None` (types: {_TYPES_TEXT})")
                continue
        else:
            ptype = _parse_annotation(annotation)
            if ptype is None:
                problems.append(f"{at}: annotation `{ast.unparse(annotation)}` is not one of {_TYPES_TEXT}")
                continue
            if check_value(name, default, ptype, default)[1]:
                problems.append(f"{at}: default {_show(default)} is not of its declared type {ptype}")
                continue
        types[name] = ptype
    if problems:
        raise ConfigError("\n".join(problems))
    return types


# --------------------------------------------------------------------------------------------------
# Safe names and the injected parameters cell
# --------------------------------------------------------------------------------------------------

def check_name(value: str, what: str, max_len: int = names.MAX_NAME) -> str:
    """Check that ``value`` is a safe name (it reaches file names, HTML and the runs index).

    Parameters
    ----------
    value : str
        The name.
    what : str
        What it is, for the message (e.g. ``"configs/mine.yaml: run.name"``).
    max_len : int
        The longest name allowed (``run.name``: :data:`names.MAX_RUN_NAME`, so that its run directory's
        name is a safe name too).

    Returns
    -------
    str
        ``value``, unchanged.

    Raises
    ------
    ConfigError
        If it is not 1 to ``max_len`` ASCII letters, digits, ``-``, ``_`` or ``.``, not starting with ``.``
        (:mod:`pbc_analysis.core.names`).
    """
    if names.is_safe_name(value, max_len):
        return value
    raise ConfigError(f"{what} = {_show(value)} is not a safe name: use {names.name_rule(max_len)}")


def _literal_problem(value: Any, top: bool = True) -> str | None:
    if value is None and top:  # only where a parameter is declared `| None`
        return None
    if type(value) in (bool, int, str):
        if type(value) is str:
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return "a string with an unpaired surrogate"
        return None
    if type(value) is float:
        return None if math.isfinite(value) else f"a non-finite float {value!r}"
    if type(value) is list:
        for i, item in enumerate(value):
            if type(item) is list or (problem := _literal_problem(item, top=False)) is not None:
                return f"element [{i}] is {'a nested list' if type(item) is list else problem}"
        return None
    kind = type(value).__qualname__ if type(value).__module__ == "builtins" else f"{type(value).__module__}.{type(value).__qualname__}"
    return f"a {kind}"


def _same_literal(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if type(a) is list:
        return len(a) == len(b) and all(_same_literal(x, y) for x, y in zip(a, b))
    return a == b


def parameters_source(params: Mapping[str, Any]) -> str:
    """The Python source of the injected parameters cell: one ``name = repr(value)`` line per parameter.

    Each value is re-checked as int, finite float, bool, str, a flat list of those, or None (for a
    parameter declared ``| None``) - exact types, so no subclass with its own ``repr`` - and the source is parsed back (``ast.literal_eval``) and compared
    with the values before it is returned.

    Parameters
    ----------
    params : mapping
        Parameter name (a Python identifier) -> value.

    Returns
    -------
    str
        The cell source: the assignments, one a line, ending with a newline ("" for no parameters).

    Raises
    ------
    ConfigError
        Naming every parameter that is not a plain literal, or whose source does not read back the same.
    """
    lines: list[str] = []
    problems = []
    for name, value in params.items():
        if type(name) is not str or not name.isidentifier() or keyword.iskeyword(name):
            problems.append(f"parameter name {_show(name)} is not a Python identifier")
            continue
        problem = _literal_problem(value)
        if problem is not None:
            problems.append(f"parameter {name} must be int, finite float, bool, str, a flat list of those or None; got {problem}")
            continue
        try:
            lines.append(f"{name} = {value!r}")
        except ValueError as exc:  # an int too long to print
            problems.append(f"parameter {name}: {exc}")
    if problems:
        raise ConfigError("cannot write the parameters cell:\n  - " + "\n  - ".join(problems))
    source = "".join(line + "\n" for line in lines)
    body = ast.parse(source).body
    names = list(params)
    ok = len(body) == len(names) and all(
        isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
        and node.targets[0].id == name and _same_literal(ast.literal_eval(node.value), params[name])
        for node, name in zip(body, names))
    if not ok:
        raise ConfigError(f"the parameters cell does not read back as the values given: {_show(dict(params), 200)}")
    return source


# --------------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class RunConfig:
    """A validated run config: which notebooks run, with which parameters, and the validation settings."""

    name: str
    renderer: str
    notebooks: tuple[str, ...]                 # analysis notebooks, in order (report excluded)
    parameters: dict[str, dict[str, Any]]      # notebook -> parameters given to papermill (no run_dir)
    source: str                                # the config text as given
    path: Path | None
    notebooks_dir: Path = paths.NOTEBOOKS_DIR
    workers: int = 0                           # analysis notebooks run at once (0 = one per CPU core)
    validation: PlausibilitySettings = dataclasses.field(default_factory=PlausibilitySettings)
    extracts: Any = None                       # IngestParams of an `extracts:` section: ingested first, into the run's data/
    partition: str = "none"                    # "commissioner": one run per commissioner (pipeline.national)
    commissioners: tuple[str, ...] | str = "all"   # the commissioners of a partitioned run ("all" or codes)
    parallel: int = 0                          # commissioners run at once (0 = one per CPU core)

    @property
    def parameters_hash(self) -> str:
        """sha256 of the canonical JSON of :attr:`parameters`."""
        return hashlib.sha256(results.dumps(self.parameters).encode()).hexdigest()


def is_path_parameter(key: str) -> bool:
    """Whether a parameter names a file or directory (resolved from the project root, hashed as an input).

    Parameters
    ----------
    key : str
        The parameter's name.

    Returns
    -------
    bool
        True for names ending in ``_dir``, ``_path`` or ``_file`` and for :data:`PATH_PARAMETERS`.
    """
    return key.endswith(PATH_SUFFIXES) or key in PATH_PARAMETERS


def _path_problems(effective: dict[str, dict[str, Any]], where: str) -> list[str]:
    """Paths with control characters (a NUL cannot be a path), and input files that are not plain files."""
    problems = []
    for nb_name, params in effective.items():
        for key, value in params.items():
            if not (is_path_parameter(key) and isinstance(value, str) and value):
                continue
            if any(ord(c) < 32 or ord(c) == 127 for c in value):
                problems.append(f"{where}: {key} [{nb_name}] = {_show(value)} contains a control character (NUL, "
                                "newline, tab, ...); a path cannot: write the path plainly")
            elif not key.endswith("_dir") and not paths.resolve(value).is_file():
                problems.append(f"{where}: {key} [{nb_name}] = {_show(value)} is not a file (looked at "
                                f"{paths.resolve(value)}); give the path of the file, relative to the project root")
    return problems


def _stage_problems(glob: dict[str, Any], per_nb: dict[str, Any], effective: dict[str, dict[str, Any]],
                   where: str) -> list[str]:
    """Each running notebook's settings checked by its stages' ``Params`` (choices, ranges, formats), and every
    shared setting (``Setting.shared``: used by two stages) set once, under ``parameters:``."""
    from pbc_analysis.core.checks import ArgumentError
    from pbc_analysis.pipeline.derive import notebook_settings, params_classes

    problems: list[str] = []
    users: dict[str, list[str]] = {}
    for nb_name, params in effective.items():
        declared = notebook_settings(nb_name)
        for name, (_, info) in declared.items():
            if info.shared:
                users.setdefault(name, []).append(nb_name)
        for cls in params_classes(nb_name):
            try:
                cls(**{k: v for k, v in params.items() if k in declared and declared[k][0] is cls})
            except ArgumentError as exc:
                problems.extend(f"{where}: notebooks.{nb_name}: {p}" for p in exc.problems)
    for name, nbs in sorted(users.items()):
        nbs = sorted(set(nbs))
        local = [n for n in nbs if isinstance(per_nb.get(n), dict) and name in per_nb[n]]
        if len(nbs) > 1 and local:
            problems.append(f"{where}: {name} is shared by {' and '.join(nbs)}, so that they use the same value; set it "
                            f"once under parameters: (not under notebooks.{local[0]})")
    return list(dict.fromkeys(problems))


def _resolve_paths(params: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(paths.resolve(v)) if is_path_parameter(k) and isinstance(v, str) and v else v)
            for k, v in params.items()}


def _check_run(run: dict[str, Any], path: Path | None, where: str, problems: list[str]) -> tuple[str, str, int]:
    """Check the ``run:`` section; return the name, renderer and workers."""
    for key, value in run.items():
        if key not in RUN_KEYS:
            problems.append(f"{where}: unknown key run.{key}{names.did_you_mean(key, set(RUN_KEYS))}; allowed: {sorted(RUN_KEYS)}")
        elif key not in ("workers", *PARTITION_KEYS) and (not isinstance(value, RUN_KEYS[key]) or isinstance(value, bool)):
            problems.append(f"{where}: run.{key} must be {RUN_KEYS[key].__name__}, got {_type_name(value)} {_show(value)}")
    name = run.get("name", path.stem if path else "run")
    what = f"{where}: run.name" if "name" in run else f"{where}: run.name (not set: taken from the file name)"
    if isinstance(name, str):
        try:
            check_name(name, what, names.MAX_RUN_NAME)
        except ConfigError as exc:
            problems.append(str(exc) + ("" if "name" in run else "; set run.name"))
    renderer = run.get("renderer", "auto")
    workers = run.get("workers", 0)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        problems.append(f"{where}: run.workers must be a whole number >= 0 (0 = one notebook per CPU core), got {_show(workers)}")
    if renderer not in RENDERERS:
        problems.append(f"{where}: run.renderer must be one of {list(RENDERERS)}, got {_show(renderer)}")
    return str(name), str(renderer), workers if type(workers) is int else 0


def _check_partition(run: dict[str, Any], where: str, problems: list[str]) -> tuple[str, tuple[str, ...] | str, int]:
    """The ``run:`` section's partition, commissioners and parallel (types and values; the codes against the data
    are checked by :func:`pbc_analysis.pipeline.national.partition_problems`)."""
    partition, chosen, parallel = run.get("partition", "none"), run.get("commissioners", "all"), run.get("parallel", 0)
    if partition not in PARTITIONS:
        problems.append(f"{where}: run.partition must be one of {list(PARTITIONS)}, got {_show(partition)}{names.did_you_mean(partition, PARTITIONS)}")
    if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 0:
        problems.append(f"{where}: run.parallel must be a whole number >= 0 (commissioners run at once; 0 = one per CPU core), got {_show(parallel)}")
    codes: tuple[str, ...] | str = "all"
    if isinstance(chosen, list) and chosen and all(type(c) is str and c for c in chosen):
        codes = tuple(chosen)
        if len(set(codes)) < len(codes):
            problems.append(f"{where}: run.commissioners names a commissioner more than once: {_show(chosen)}")
    elif chosen != "all":
        problems.append(f"{where}: run.commissioners must be \"all\" or a non-empty list of quoted commissioner codes "
                        f"(e.g. [\"5A0\", \"5A1\"]), got {_show(chosen)}")
    if partition != "commissioner" and ("commissioners" in run or "parallel" in run):
        problems.append(f"{where}: run.commissioners and run.parallel apply to a national run only: set run.partition: "
                        "commissioner, or remove them")
    return str(partition), codes, parallel if type(parallel) is int else 0


def _select(run: dict[str, Any], analysis: list[str], notebooks_dir: Path, where: str, problems: list[str]) -> list[str]:
    """The analysis notebooks ``run.notebooks`` selects (all by default), in numbered order."""
    selected = run.get("notebooks", analysis)
    if not isinstance(selected, list):
        return analysis
    for i, n in enumerate(selected):
        try:
            check_name(n, f"{where}: run.notebooks[{i}]")
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        if n not in analysis:
            problems.append(f"{where}: run.notebooks names {n!r}, which is not a notebook in {notebooks_dir}{names.did_you_mean(n, set(analysis))}")
    return [n for n in analysis if n in selected]


def _check_keys(glob: dict[str, Any], per_nb: dict[str, Any], declared: dict[str, dict[str, ParamType]],
                running: list[str], where: str, problems: list[str]) -> None:
    """Unknown, misspelt and reserved parameter names, and unknown notebooks."""
    for key in glob:
        if key in RESERVED_PARAMETERS:
            problems.append(f"{where}: parameters.{key} is set by the runner and cannot be configured")
        elif not any(key in params for params in declared.values()):  # a subset run keeps the shared settings
            every = set().union(*declared.values()) if declared else set()
            problems.append(f"{where}: parameters.{key} is not a parameter of any notebook{names.did_you_mean(key, every - RESERVED_PARAMETERS)}")
    for nb_name, values in per_nb.items():
        if nb_name not in declared:
            problems.append(f"{where}: notebooks.{nb_name} is not a notebook{names.did_you_mean(nb_name, set(declared))}")
        elif not isinstance(values, dict):
            problems.append(f"{where}: notebooks.{nb_name} must be a mapping of parameters, got {_type_name(values)} {_show(values)}")
        else:
            own = set(declared[nb_name]) - RESERVED_PARAMETERS
            for key in values:
                if key in RESERVED_PARAMETERS:
                    problems.append(f"{where}: notebooks.{nb_name}.{key} is set by the runner and cannot be configured")
                elif key not in declared[nb_name]:
                    problems.append(f"{where}: notebooks.{nb_name}.{key} is not a parameter of {nb_name}"
                                    f"{names.did_you_mean(key, own)}; its parameters are {sorted(own)}")


def _effective(glob: dict[str, Any], per_nb: dict[str, Any], declared: dict[str, dict[str, ParamType]],
               defaults: dict[str, dict[str, Any]], running: list[str], where: str,
               problems: list[str]) -> dict[str, dict[str, Any]]:
    """Each running notebook's checked parameters: the globals it declares, then its own section."""
    effective: dict[str, dict[str, Any]] = {}
    for nb_name in declared:
        params: dict[str, Any] = {}
        given = [(f"parameters.{k}", k, v) for k, v in glob.items()] if nb_name in running else []
        own = per_nb.get(nb_name)
        given += [(f"notebooks.{nb_name}.{k}", k, v) for k, v in own.items()] if isinstance(own, dict) else []
        for key_path, key, value in given:
            if key not in declared[nb_name] or key in RESERVED_PARAMETERS:
                continue
            checked, found = check_value(key_path, value, declared[nb_name][key], defaults[nb_name][key])
            scope = f" [{nb_name}]" if key_path.startswith("parameters.") else ""
            problems.extend(f"{where}: {p}{scope}" for p in found)
            params[key] = checked
        if nb_name in running:
            effective[nb_name] = params
    return effective


def _check_data_dir(effective: dict[str, dict[str, Any]], declared: dict[str, dict[str, ParamType]], where: str,
                    problems: list[str], extracts: bool = False) -> None:
    """Every running notebook that declares ``data_dir`` is given a non-empty one by the config (or, with an
    ``extracts:`` section, none: the run's ingested data directory is given to them)."""
    if extracts:
        given = sorted(n for n, params in effective.items() if "data_dir" in params)
        if given:
            problems.append(f"{where}: data_dir is set ({', '.join(given)}) but so is extracts:, whose tables are the run's "
                            "data (written into the run directory's data/): remove data_dir, or remove extracts: to read "
                            "a data directory of tables")
        return
    missing = [n for n, params in effective.items() if "data_dir" in declared[n] and "data_dir" not in params]
    empty = [n for n, params in effective.items() if params.get("data_dir") == ""]
    if missing:
        problems.append(f"{where}: no data_dir for {', '.join(missing)}: set parameters.data_dir to the directory of "
                        "your input tables (data/sample for the embedded synthetic PCT); the notebooks' own default "
                        "is the sample and is never used silently")
    if empty:
        problems.append(f"{where}: data_dir is empty for {', '.join(empty)}: set it to the directory of your input tables")


def _sections(raw: Any, where: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The ``run``, ``parameters`` and ``notebooks`` mappings; ConfigError for unknown keys or non-mappings."""
    raw = {} if raw is None else raw  # only comments
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: the config must be a mapping with keys {sorted(TOP_LEVEL_KEYS)}, got {_type_name(raw)}")
    problems = [f"{where}: unknown top-level key {key!r}{names.did_you_mean(key, TOP_LEVEL_KEYS)}; allowed: {sorted(TOP_LEVEL_KEYS)}"
                for key in raw if key not in TOP_LEVEL_KEYS]
    out = []
    for section in ("run", "parameters", "notebooks"):
        value = raw.get(section)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            problems.append(f"{where}: '{section}' must be a mapping, got {_type_name(value)} {_show(value)}")
        out.append(value)
    if problems:
        raise ConfigError("\n".join(problems))
    return out[0], out[1], out[2]


def _declared_types(available: dict[str, Path]) -> dict[str, dict[str, ParamType]]:
    declared, problems = {}, []
    for name, nb_path in available.items():
        try:
            declared[name] = notebook_parameter_types(nb_path)
        except ConfigError as exc:
            problems.extend(str(exc).splitlines())
    if problems:
        raise ConfigError("the notebooks' parameters cells cannot be checked against:\n  - " + "\n  - ".join(problems))
    return declared


def parse_config(text: str, path: Path | None = None, notebooks_dir: Path = paths.NOTEBOOKS_DIR) -> RunConfig:
    """Validate a YAML config against the notebooks' parameters cells.

    Parameters
    ----------
    text : str
        The config's YAML text.
    path : Path, optional
        Where it was read from (names it in messages; its stem is the default run name).
    notebooks_dir : Path
        The notebooks whose parameters cells the config is checked against.

    Returns
    -------
    RunConfig
        Every parameter value a checked literal of its declared type that passes :func:`parameters_source`.

    Raises
    ------
    ConfigError
        Listing every problem at once, each with the key, the expected type and the fix.
    """
    where = str(path) if path else "config"
    raw = load_yaml(text, where)
    run, glob, per_nb = _sections(raw, where)
    raw = raw or {}
    problems: list[str] = []
    name, renderer, workers = _check_run(run, path, where, problems)
    partition, commissioners, parallel = _check_partition(run, where, problems)
    available = {p.stem: p for p in list_notebooks(notebooks_dir)}
    selected = _select(run, [n for n in available if n != REPORT_NOTEBOOK], notebooks_dir, where, problems)
    running = selected + ([REPORT_NOTEBOOK] if REPORT_NOTEBOOK in available else [])
    declared = _declared_types(available)
    defaults = {n: notebook_parameters(p) for n, p in available.items()}
    _check_keys(glob, per_nb, declared, running, where, problems)
    effective = _effective(glob, per_nb, declared, defaults, running, where, problems)
    extracts = None
    if raw.get("extracts") is not None:
        from pbc_analysis.pipeline.extracts import parse_section

        try:
            extracts = parse_section(raw["extracts"], where, in_run=True)
        except ConfigError as exc:
            problems.extend(str(exc).splitlines())
    _check_data_dir(effective, declared, where, problems, extracts="extracts" in raw)
    validation, found = parse_settings(raw.get("validation"), where)
    problems.extend(found)
    problems.extend(_path_problems(effective, where))
    if not problems:
        problems.extend(_stage_problems(glob, per_nb, effective, where))
    if not problems and partition == "commissioner":
        from pbc_analysis.pipeline.national import partition_problems

        problems.extend(partition_problems(effective, extracts, commissioners, where))
    if not problems:
        effective = {n: _resolve_paths(params) for n, params in effective.items()}
        for nb_name, params in effective.items():
            try:
                parameters_source(params)
            except ConfigError as exc:
                problems.append(f"{where}: notebooks.{nb_name}: {exc}")
    if problems:
        raise ConfigError("invalid run config:\n  - " + "\n  - ".join(dict.fromkeys(problems)))
    return RunConfig(name=name, renderer=renderer, notebooks=tuple(selected), parameters=effective, source=text,
                     path=path, notebooks_dir=notebooks_dir, workers=workers, validation=validation, extracts=extracts,
                     partition=partition, commissioners=commissioners, parallel=parallel)


def declares_data_dir(cfg: RunConfig, notebook: str) -> bool:
    """Whether a notebook's parameters cell declares ``data_dir`` (it then reads the run's input tables).

    Parameters
    ----------
    cfg : RunConfig
    notebook : str
        A notebook of the config (its stem).

    Returns
    -------
    bool
    """
    return "data_dir" in notebook_parameter_types(cfg.notebooks_dir / f"{notebook}.ipynb")


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a config file (:func:`parse_config`).

    Parameters
    ----------
    path : str or Path
        The config file; a relative path is taken from the current directory if it exists there, else
        from the project root.

    Returns
    -------
    RunConfig

    Raises
    ------
    ConfigError
        If the file is missing or unreadable, or the config is invalid.
    """
    text, p = read_config_file(path, "config file")
    return parse_config(text, path=p)
