"""The run config: parsed and checked against the notebooks' own ``parameters`` cells before anything runs.

Unknown or misspelt keys (with a suggestion), wrong types, values of a type the notebook's default does
not have, and dates or codes not written as quoted strings are errors. (papermill by itself only warns
about names a notebook does not declare.)
"""

from __future__ import annotations

import ast
import dataclasses
import datetime as dt
import difflib
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from . import paths, results

REPORT_NOTEBOOK = "09_evaluation_report"
RESERVED_PARAMETERS = {"run_dir"}
PATH_SUFFIXES = ("_dir", "_path", "_file")
TOP_LEVEL_KEYS = {"run", "parameters", "notebooks"}
RUN_KEYS = {"name": str, "notebooks": list, "renderer": str, "workers": int}
RENDERERS = ("auto", "quarto", "nbconvert")


class ConfigError(ValueError):
    """The run config is invalid; the message lists every problem found."""


# --------------------------------------------------------------------------------------------------
# Notebooks and their parameters cells
# --------------------------------------------------------------------------------------------------

def list_notebooks(notebooks_dir: Path = paths.NOTEBOOKS_DIR) -> list[Path]:
    """Numbered notebooks (``NN_name.ipynb``) in execution order."""
    return sorted(p for p in notebooks_dir.glob("[0-9][0-9]_*.ipynb"))


def notebook_parameters(path: Path) -> dict[str, Any]:
    """Names and default values of a notebook's ``parameters`` cell.

    The cell must be tagged ``parameters`` and contain only ``name = <literal>`` assignments
    (comments allowed), so that every default is known without running code.
    """
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = [c for c in nb["cells"] if c.get("cell_type") == "code" and "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ConfigError(f"{path.name}: expected exactly one cell tagged 'parameters', found {len(cells)}")
    source = "".join(cells[0]["source"]) if isinstance(cells[0]["source"], list) else cells[0]["source"]
    out: dict[str, Any] = {}
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise ConfigError(f"{path.name}: the parameters cell may only hold `name = literal` lines (line {node.lineno})")
        try:
            out[node.targets[0].id] = ast.literal_eval(node.value)
        except ValueError as exc:
            raise ConfigError(f"{path.name}: parameter {node.targets[0].id!r} is not a literal (line {node.lineno})") from exc
    return out


# --------------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class RunConfig:
    """A validated run config: which notebooks run, with which parameters."""

    name: str
    renderer: str
    notebooks: tuple[str, ...]                 # analysis notebooks, in order (report excluded)
    parameters: dict[str, dict[str, Any]]      # notebook -> parameters given to papermill (no run_dir)
    source: str                                # the config text as given
    path: Path | None
    notebooks_dir: Path = paths.NOTEBOOKS_DIR
    workers: int = 0                           # analysis notebooks run at once (0 = one per CPU core)

    @property
    def parameters_hash(self) -> str:
        return hashlib.sha256(results.dumps(self.parameters).encode()).hexdigest()


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _check_value(where: str, key: str, value: Any, default: Any, problems: list[str]) -> None:
    if isinstance(value, (dt.date, dt.datetime)):
        problems.append(f"{where}: {key} = {value!r} was read as a date; write dates and months as quoted strings, e.g. {key}: \"{value:%Y-%m}\"")
        return
    if default is None or value is None:
        return
    if isinstance(default, bool) or isinstance(value, bool):
        if type(default) is not type(value):
            problems.append(f"{where}: {key} must be {_type_name(default)} (default {default!r}), got {_type_name(value)} {value!r}")
        return
    if isinstance(default, float) and isinstance(value, int):
        return  # an int where a float is expected is exact
    if isinstance(default, str) and not isinstance(value, str):
        problems.append(
            f"{where}: {key} must be a quoted string (default {default!r}), got {_type_name(value)} {value!r}; "
            f"codes and dates are passed as strings: write {key}: \"{value}\""
        )
        return
    if type(default) is not type(value):
        problems.append(f"{where}: {key} must be {_type_name(default)} (default {default!r}), got {_type_name(value)} {value!r}")


def _suggest(key: str, options: set[str]) -> str:
    close = difflib.get_close_matches(key, sorted(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _resolve_paths(params: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(paths.resolve(v)) if k.endswith(PATH_SUFFIXES) and isinstance(v, str) and v else v) for k, v in params.items()}


def parse_config(text: str, path: Path | None = None, notebooks_dir: Path = paths.NOTEBOOKS_DIR) -> RunConfig:
    """Validate a YAML config against the notebooks' parameters cells; raise ConfigError listing all problems."""
    where = str(path) if path else "config"
    try:
        raw = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: the config must be a mapping with keys {sorted(TOP_LEVEL_KEYS)}")
    problems: list[str] = []
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            problems.append(f"{where}: unknown top-level key {key!r}{_suggest(str(key), TOP_LEVEL_KEYS)}; allowed: {sorted(TOP_LEVEL_KEYS)}")
    run = raw.get("run") or {}
    glob = raw.get("parameters") or {}
    per_nb = raw.get("notebooks") or {}
    for section, value in (("run", run), ("parameters", glob), ("notebooks", per_nb)):
        if not isinstance(value, dict):
            problems.append(f"{where}: '{section}' must be a mapping, got {_type_name(value)}")
    if problems:
        raise ConfigError("\n".join(problems))

    for key, value in run.items():
        if key not in RUN_KEYS:
            problems.append(f"{where}: unknown key run.{key}{_suggest(key, set(RUN_KEYS))}; allowed: {sorted(RUN_KEYS)}")
        elif not isinstance(value, RUN_KEYS[key]):
            problems.append(f"{where}: run.{key} must be {RUN_KEYS[key].__name__}, got {_type_name(value)} {value!r}")
    name = run.get("name", path.stem if path else "run")
    renderer = run.get("renderer", "auto")
    workers = run.get("workers", 0)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        problems.append(f"{where}: run.workers must be a whole number >= 0 (0 = one notebook per CPU core), got {workers!r}")
    if renderer not in RENDERERS:
        problems.append(f"{where}: run.renderer must be one of {list(RENDERERS)}, got {renderer!r}")

    available = {p.stem: p for p in list_notebooks(notebooks_dir)}
    analysis = [n for n in available if n != REPORT_NOTEBOOK]
    selected = run.get("notebooks", analysis)
    if isinstance(selected, list):
        for n in selected:
            if n not in analysis:
                problems.append(f"{where}: run.notebooks names {n!r}, which is not a notebook in {notebooks_dir}{_suggest(str(n), set(analysis))}")
        selected = [n for n in analysis if n in selected]  # always in numbered order
    declared = {n: notebook_parameters(p) for n, p in available.items()}

    for key in glob:
        if key in RESERVED_PARAMETERS:
            problems.append(f"{where}: parameters.{key} is set by the runner and cannot be configured")
        elif not any(key in declared[n] for n in list(selected) + [REPORT_NOTEBOOK] if n in declared):
            every = set().union(*declared.values()) if declared else set()
            problems.append(f"{where}: parameters.{key} is not a parameter of any notebook that runs{_suggest(key, every - RESERVED_PARAMETERS)}")
    for nb_name, values in per_nb.items():
        if nb_name not in available:
            problems.append(f"{where}: notebooks.{nb_name} is not a notebook{_suggest(str(nb_name), set(available))}")
            continue
        if not isinstance(values, dict):
            problems.append(f"{where}: notebooks.{nb_name} must be a mapping of parameters")
            continue
        for key in values:
            if key in RESERVED_PARAMETERS:
                problems.append(f"{where}: notebooks.{nb_name}.{key} is set by the runner and cannot be configured")
            elif key not in declared[nb_name]:
                problems.append(
                    f"{where}: notebooks.{nb_name}.{key} is not a parameter of {nb_name}"
                    f"{_suggest(key, set(declared[nb_name]) - RESERVED_PARAMETERS)}; its parameters are {sorted(set(declared[nb_name]) - RESERVED_PARAMETERS)}"
                )

    effective: dict[str, dict[str, Any]] = {}
    for nb_name in list(selected) + ([REPORT_NOTEBOOK] if REPORT_NOTEBOOK in available else []):
        params: dict[str, Any] = {}
        for key, value in glob.items():
            if key in declared[nb_name]:
                _check_value(f"{where} parameters", key, value, declared[nb_name][key], problems)
                params[key] = value
        for key, value in (per_nb.get(nb_name) or {}).items():
            if key in declared[nb_name] and key not in RESERVED_PARAMETERS:
                _check_value(f"{where} notebooks.{nb_name}", key, value, declared[nb_name][key], problems)
                params[key] = value
        effective[nb_name] = _resolve_paths(params)
    if problems:
        raise ConfigError("invalid run config:\n  - " + "\n  - ".join(dict.fromkeys(problems)))
    return RunConfig(name=str(name), renderer=renderer, notebooks=tuple(selected), parameters=effective, source=text,
                     path=path, notebooks_dir=notebooks_dir, workers=int(workers))


def load_config(path: str | Path) -> RunConfig:
    p = paths.resolve(path, base=Path.cwd()) if not Path(path).is_absolute() and Path(path).exists() else paths.resolve(path)
    if not p.exists():
        raise ConfigError(f"config file not found: {path} (looked at {p})")
    return parse_config(p.read_text(encoding="utf-8"), path=p)


