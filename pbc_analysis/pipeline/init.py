"""``pbc init``: a complete run config for a data directory, every setting written out and explained.

:func:`init_config` validates the data directory (the data dictionary and the plausibility rules), reads its
window (:func:`pbc_analysis.data.window.data_window`) and derives every setting that follows from the data
(:func:`pbc_analysis.pipeline.derive.resolve_settings`); it refuses, listing every problem, when the data or
the derived settings do not pass. :func:`config_text` then writes every setting of every notebook, from the
stages' ``Params`` (one source): settings that follow from the data are written ``auto`` with the derived
value and its rule as a comment, the others with their defaults; each with its help and allowed values.
Settings shared by two stages are written once, under ``parameters:``. The text is checked by
:func:`pbc_analysis.pipeline.config.parse_config` before it is written, so what ``pbc init`` writes always runs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from pbc_analysis.core import names, paths
from pbc_analysis.core.params import AUTO
from pbc_analysis.pipeline.config import REPORT_NOTEBOOK, ConfigError, list_notebooks, parse_config
from pbc_analysis.pipeline.derive import Resolution, notebook_rows, params_classes, resolve_settings

__all__ = ["InitError", "config_text", "init_config"]


class InitError(ValueError):
    """The data directory or the settings derived from it do not pass: nothing was written."""


def _yaml_value(value: Any) -> str:
    """A value as YAML the strict loader reads back as the same literal (strings double-quoted)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"not a finite number: {value!r}")
        text = repr(value)
        return text if "e" not in text and "inf" not in text else f"{value:.12f}".rstrip("0")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def _comment(text: str) -> str:
    """One line of comment: control characters and newlines removed (a value from the data is never YAML)."""
    return "".join(c if c.isprintable() else " " for c in str(text))


def _setting_line(row: dict[str, Any], value: Any, derived: dict[str, Any] | None, indent: str) -> list[str]:
    help_text = row["help"] + (f"; allowed: {row['allowed']}" if row["allowed"] else "")
    lines = [f"{indent}# {_comment(help_text)}"]
    if derived is not None:
        lines.append(f"{indent}#   auto -> {_comment(_yaml_value(derived['value']))}: {_comment(derived['rule'])}")
    lines.append(f"{indent}{row['name']}: {_yaml_value(value)}")
    return lines


def config_text(data_dir: str, window: tuple[str, str], resolution: Resolution, name: str) -> str:
    """The YAML text of a complete config for ``data_dir``.

    Parameters
    ----------
    data_dir : str
        As written in the config (relative to the project root where possible).
    window : tuple of str
        The data window ``(start_month, end_month)`` found in the files.
    resolution : Resolution
        The settings derived from the data (for the comments).
    name : str
        ``run.name``.

    Returns
    -------
    str
    """
    derived = {(d["notebook"], d["setting"]): d for d in resolution.derived}
    notebooks = [p.stem for p in list_notebooks() if p.stem != REPORT_NOTEBOOK]
    shared: dict[str, dict[str, Any]] = {}
    lines = [f"# Run config for {_comment(data_dir)}, written by `pbc init` (edit freely; `pbc validate --config` checks it).",
             "# Settings written `auto` are derived from the data at every run, by the rule in their comment",
             "# (the value shown is what this data gives today); write a value instead to fix it.",
             "run:", f"  name: {_yaml_value(name)}",
             "  renderer: auto            # auto (Quarto if installed, else nbconvert) | quarto | nbconvert",
             "  workers: 0                # analysis notebooks run at once (0 = one per CPU core)",
             "parameters:", f"  data_dir: {_yaml_value(data_dir)}",
             f"  # the data window: the months every monthly table covers (auto -> {window[0]} to {window[1]})",
             "  start_month: \"auto\"", "  end_month: \"auto\""]
    for nb in notebooks:
        for row in notebook_rows(nb):
            if row["shared"] and row["name"] not in shared:
                shared[row["name"]] = row
    for row in shared.values():
        lines += _setting_line(row, row["default"], None, "  ")
    lines.append("notebooks:")
    for nb in notebooks:
        rows = [r for r in notebook_rows(nb) if not r["shared"]]
        if not rows:
            continue
        lines.append(f"  {nb}:")
        for row in rows:
            d = derived.get((nb, row["name"]))
            lines += _setting_line(row, AUTO if d is not None or row["default"] == AUTO else row["default"], d, "    ")
    return "\n".join(lines) + "\n"


def init_config(data_dir: str | Path, out: str | Path | None = None, name: str | None = None,
                force: bool = False, echo: Any = print) -> tuple[Path, str]:
    """Validate ``data_dir``, derive its settings and write a complete config.

    Parameters
    ----------
    data_dir : str or Path
        The data directory (relative paths from the project root).
    out : str or Path, optional
        The config to write (default ``configs/<name>.yaml``).
    name : str, optional
        ``run.name`` (default: ``out``'s stem, else the data directory's name); a safe name.
    force : bool
        Overwrite ``out`` if it exists.
    echo : callable
        Progress printer.

    Returns
    -------
    path : Path
        The config written.
    text : str
        Its text.

    Raises
    ------
    InitError
        Listing every problem (data, window, derived settings, or an existing ``out`` without ``force``).
    """
    from pbc_analysis.core.checks import ArgumentError
    from pbc_analysis.data import DataValidationError
    from pbc_analysis.data.plausibility import load_run_inputs
    from pbc_analysis.data.window import WindowError, data_window

    directory = paths.resolve(data_dir)
    name = name or (Path(out).stem if out else directory.name)
    if not names.is_safe_name(name, names.MAX_RUN_NAME):
        raise InitError(f"run name {name!r} is not a safe name: use {names.name_rule(names.MAX_RUN_NAME)} (--name)")
    target = paths.resolve(out) if out else paths.CONFIGS_DIR / f"{name}.yaml"
    if target.exists() and not force:
        raise InitError(f"{target} exists; choose another --out or add --force to overwrite it")
    try:
        window = data_window(directory)
        echo(f"data window: {window[0]} to {window[1]}; validating {directory} ...")
        _, inputs = load_run_inputs(directory, window[0], window[1])
    except (WindowError, DataValidationError) as exc:
        raise InitError(f"{directory} does not pass validation; no config was written.\n{exc}") from None
    shown = str(directory.relative_to(paths.PROJECT_ROOT)) if directory.is_relative_to(paths.PROJECT_ROOT) else str(directory)
    given = {nb: {"data_dir": str(directory), "start_month": window[0], "end_month": window[1],
                  **{k: AUTO for cls in params_classes(nb) for k, s in cls.settings().items() if s.derive}}
             for nb in (p.stem for p in list_notebooks() if p.stem != REPORT_NOTEBOOK)}
    try:
        resolution = resolve_settings(given, {str(directory): inputs}, where=str(target))
    except ArgumentError as exc:
        raise InitError(f"the settings cannot be derived from {directory}; no config was written.\n{exc}") from None
    text = config_text(shown, window, resolution, name)
    try:
        parse_config(text, path=target)
    except ConfigError as exc:  # a defect of this module: never write a config that does not run
        raise InitError(f"the config written for {directory} does not parse (please report this):\n{exc}") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    for line in resolution.lines():
        echo(line)
    echo(f"wrote {target}: run it with `pbc run --config {target}`")
    return target, text
