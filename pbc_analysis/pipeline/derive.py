"""Settings that follow from the data: derived, checked against every cross-setting rule, before any notebook runs.

Each analysis notebook's settings are the fields of its stages' ``Params`` (:data:`NOTEBOOK_STAGES`). After the
inputs are validated, :func:`resolve_settings`

1. reads the facts of the validated data once per data directory (:func:`pbc_analysis.stages.facts.data_facts`,
   with notebook 01's completeness settings so the last complete month is the one 01 reports);
2. builds each stage's ``Params`` from the config's values (so every type, choice and range is checked), and
   resolves every ``"auto"`` by its rule (``Params.derive``);
3. checks every cross-setting rule against the data (``Params.rules``: base year before the first engagement,
   windows inside the data, evaluation year complete, enough comparison practices, ...);

and reports every problem at once, with its fix. The notebooks are then given the derived values (nothing is
``"auto"`` by the time papermill runs them); the derived values, each with its rule, are printed, recorded in
the manifest and shown in the report's methods section.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Mapping

from pbc_analysis.core.checks import ArgumentError
from pbc_analysis.core.params import StageParams
from pbc_analysis.stages import facts as _facts

__all__ = ["DATA_PARAMETERS", "NOTEBOOK_STAGES", "Resolution", "WINDOW_RULE", "notebook_rows", "notebook_settings", "params_classes",
           "resolve_settings",
           "resolve_windows"]

#: notebook -> the stage modules (pbc_analysis.stages.<name>) whose Params make up its parameters cell; a name
#: ending in ``:shared`` contributes only its shared settings (04 gates on benchmarking's under-referrers)
NOTEBOOK_STAGES: dict[str, tuple[str, ...]] = {
    "01_data_quality": ("quality",),
    "02_benchmarking": ("benchmark",),
    "03_referral_evaluation": ("evaluation",),
    "04_savings_attribution": ("attribution", "benchmark:shared"),
    "05_budgets_and_risk": ("budgets", "risk"),
}
#: parameters every analysis notebook declares besides its stages' settings (and run_dir, set by the runner)
DATA_PARAMETERS = ("data_dir", "start_month", "end_month")
QUALITY_NOTEBOOK = "01_data_quality"


def params_classes(notebook: str) -> list[type[StageParams]]:
    """The ``Params`` classes of a notebook's stages.

    Parameters
    ----------
    notebook : str
        E.g. ``"03_referral_evaluation"``.

    Returns
    -------
    list of StageParams subclasses
        Empty for a notebook without stages (the report).
    """
    out = []
    for name in NOTEBOOK_STAGES.get(notebook, ()):
        module = importlib.import_module(f"pbc_analysis.stages.{name.split(':')[0]}")
        out.append(module.Params)
    return out


def notebook_settings(notebook: str) -> dict[str, tuple[type[StageParams], Any]]:
    """The settings a notebook's parameters cell declares besides :data:`DATA_PARAMETERS` and ``run_dir``.

    Parameters
    ----------
    notebook : str

    Returns
    -------
    dict
        Setting name -> (its Params class, its :class:`~pbc_analysis.core.params.Setting`), in cell order:
        every field of the notebook's own stages, and the shared fields of a ``:shared`` stage.
    """
    out: dict[str, tuple[type[StageParams], Any]] = {}
    for name, cls in zip(NOTEBOOK_STAGES.get(notebook, ()), params_classes(notebook)):
        for field, info in cls.settings().items():
            if not name.endswith(":shared") or info.shared:
                out.setdefault(field, (cls, info))
    return out


@dataclasses.dataclass(frozen=True)
class Resolution:
    """The outcome of :func:`resolve_settings`."""

    parameters: dict[str, dict[str, Any]]          # notebook -> parameters to inject (no "auto" left)
    derived: list[dict[str, Any]]                  # notebook, setting, value, rule: every derived setting
    facts: dict[str, dict[str, Any]]               # data directory -> DataFacts.summary()
    #: data directory -> the validated Inputs (kept for the run's store, pbc_analysis.data.store); not recorded
    validated: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def lines(self) -> list[str]:
        """The derived settings as printable lines (``notebook.setting = value   (rule)``).

        Returns
        -------
        list of str
        """
        groups: dict[tuple[str, str, str], list[str]] = {}
        for d in self.derived:
            groups.setdefault((d["setting"], repr(d["value"]), d["rule"]), []).append(d["notebook"])
        lines = []
        for (setting, value, rule), notebooks in groups.items():
            where = notebooks[0] if len(notebooks) == 1 else f"{len(notebooks)} notebooks"
            lines.append(f"  {setting} = {value}  [{where}]: {rule}")
        return lines


WINDOW_RULE = ("the months every monthly table (population, activity, referrals) covers: from the latest of their "
               "first months to the earliest of their last months")


def resolve_windows(parameters: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Replace ``start_month``/``end_month`` ``"auto"`` by the data window of each notebook's ``data_dir``.

    Parameters
    ----------
    parameters : mapping
        Notebook -> the config's checked parameters.

    Returns
    -------
    parameters : dict
        With the window filled in.
    derived : list of dict
        ``notebook, setting, value, rule`` of each window month derived.

    Raises
    ------
    pbc_analysis.data.window.WindowError
        When a window cannot be read from the files.
    """
    from pbc_analysis.data.window import resolve_window

    out, derived, cache = {}, [], {}
    for notebook, given in parameters.items():
        params = dict(given)
        if "auto" in (params.get("start_month"), params.get("end_month")) and params.get("data_dir"):
            key = (params["data_dir"], params.get("start_month"), params.get("end_month"))
            if key not in cache:
                cache[key] = resolve_window(params["data_dir"], params["start_month"], params["end_month"])
            for name, value in zip(("start_month", "end_month"), cache[key]):
                if params[name] == "auto":
                    params[name] = value
                    derived.append({"notebook": notebook, "setting": name, "value": value, "rule": WINDOW_RULE})
        out[notebook] = params
    return out, derived


def _quality_settings(parameters: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    from pbc_analysis.stages import quality

    given = parameters.get(QUALITY_NOTEBOOK, {})
    cls = quality.Params
    values = {**cls.defaults(), **{k: v for k, v in given.items() if k in cls.settings()}}
    return {"completeness_recent_months": values["completeness_recent_months"],
            "completeness_threshold": values["completeness_threshold"]}


def resolve_settings(parameters: Mapping[str, Mapping[str, Any]], inputs_by_data: Mapping[str, Any],
                     where: str = "config", window_derived: list[dict[str, Any]] | None = None) -> Resolution:
    """Derive every ``"auto"`` setting of the running notebooks from their data and check every cross-setting rule.

    Parameters
    ----------
    parameters : mapping
        Notebook -> the config's checked parameters for it (:attr:`pbc_analysis.pipeline.config.RunConfig.parameters`).
    inputs_by_data : mapping
        ``data_dir`` -> the validated :class:`~pbc_analysis.data.Inputs` read from it (once per directory).
    where : str
        The config's name, for messages.
    window_derived : list of dict, optional
        The window months :func:`resolve_windows` derived (recorded first).

    Returns
    -------
    Resolution

    Raises
    ------
    ArgumentError
        Listing every invalid setting and broken rule of every notebook at once, each with its fix.
    """
    quality_settings = _quality_settings(parameters)
    facts = {d: _facts.data_facts(inp, **quality_settings) for d, inp in inputs_by_data.items()}
    resolved: dict[str, dict[str, Any]] = {}
    derived: list[dict[str, Any]] = list(window_derived or [])
    problems: list[str] = []
    for notebook, given in parameters.items():
        params = dict(given)
        data_facts = facts.get(str(given.get("data_dir", "")))
        declared = notebook_settings(notebook)
        for cls in params_classes(notebook):
            values = {k: v for k, v in given.items() if k in declared and declared[k][0] is cls}
            try:
                stage = cls(**values)
                if data_facts is None:
                    continue
                stage, found = stage.resolve(data_facts)
            except ArgumentError as exc:
                problems.extend(f"{where}: {notebook}: {p}" for p in exc.problems)
                continue
            for d in found:
                if d.name not in declared or declared[d.name][0] is not cls:
                    continue  # a field the notebook does not declare (a :shared stage's own settings), or another stage's
                if d.name in params and params[d.name] != "auto":
                    continue  # shared setting already derived by another stage of this notebook
                params[d.name] = d.value
                derived.append({"notebook": notebook, "setting": d.name, "value": d.value, "rule": d.rule})
        resolved[notebook] = params
    if problems:
        raise ArgumentError("the settings do not fit the data; no notebook was run:\n  - " + "\n  - ".join(problems), problems)
    return Resolution(parameters=resolved, derived=derived, facts={d: f.summary() for d, f in facts.items()})


def notebook_rows(notebook: str) -> list[dict[str, Any]]:
    """:func:`~pbc_analysis.core.params.describe_settings` of exactly the settings a notebook declares.

    Parameters
    ----------
    notebook : str

    Returns
    -------
    list of dict
        One row per setting (stage, name, default, type, allowed, kind, derive, help, shared), in cell order.
    """
    from pbc_analysis.core.params import describe_settings

    declared = notebook_settings(notebook)
    rows = describe_settings(list(dict.fromkeys(cls for cls, _ in declared.values())))
    return [r for r in rows if r["name"] in declared and declared[r["name"]][0].STAGE == r["stage"]]


def settings_markdown() -> str:
    """``docs/settings.md``: every setting of every notebook, from the stages' ``Params`` (the one source).

    One table per notebook: name, default, type, allowed values and what it does; settings that follow from
    the data are marked ``auto`` with their rule. ``make docs`` writes it; a test checks it is current.

    Returns
    -------
    str
        Markdown.
    """
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["# Settings", "",
             "Every setting of every analysis notebook, written from the stages' `Params` classes (the one source of",
             "each setting's type, default, allowed values and rule; `make docs` regenerates this file). A config sets",
             "them per notebook under `notebooks:` (shared settings once, under `parameters:`); `pbc init` writes them",
             "all. A setting whose default is `auto` follows from the validated data by the rule given, before any",
             "notebook runs; the derived values are printed, recorded in the run's manifest (`derived`) and shown in",
             "the report's methods section. Write a value instead of `auto` to fix it; every cross-setting rule is",
             "checked against the data either way.", "",
             "Every notebook also takes `data_dir`, `start_month` and `end_month` (`auto`: " + WINDOW_RULE + ").", ""]
    for notebook in NOTEBOOK_STAGES:
        rows = notebook_rows(notebook)
        lines += [f"## {notebook}", "", "| setting | default | type | allowed | what it does |", "|---|---|---|---|---|"]
        for r in rows:
            what = r["help"] + (f". **auto**: {r['derive']}" if r["derive"] else "") + (" (shared: set once)" if r["shared"] else "")
            lines.append(f"| `{r['name']}` | `{cell(r['default'])}` | {cell(r['type'])} | {cell(r['allowed'])} | {cell(what)} |")
        lines.append("")
    return "\n".join(lines)
