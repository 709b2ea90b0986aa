"""Typed parameters of an analysis stage: one frozen dataclass per stage, the one source of every setting.

A stage's ``Params`` dataclass holds, for each setting, its type (the annotation), its default, its allowed
values (a ``Literal`` or a range), its help text, and, for settings that follow from the data, the rule that
derives them when the value is ``"auto"``. Everything else reads it: the notebook's ``parameters`` cell
(a test asserts they match field for field), the config checker, ``pbc init``, the CLI help and the
report's methods section.

- :func:`setting` declares one field (``dataclasses.field`` with a :class:`Setting` as its metadata).
- :class:`StageParams` is the base: building one checks every field at once (:meth:`StageParams.problems`)
  and raises :class:`~pbc_analysis.core.checks.ArgumentError` listing them all; :meth:`StageParams.resolve`
  replaces each ``"auto"`` by its derived value (subclasses implement :meth:`StageParams.derive` and the
  cross-setting rules :meth:`StageParams.rules`).

Kinds of value (``Setting.kind``): ``month`` (``"YYYY-MM"``), ``financial_year`` (``"YYYY/YY"``) and
``window`` (a list of two months, first <= last).

References
----------
pydesrap_mms (``simulation/param.py``): every model parameter defined in one place, with its default.
pyfixest (``estimation/literals.py``): choice arguments typed as ``Literal`` and checked by one helper.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, ClassVar, Literal, Mapping, Sequence, TypeVar

from pbc_analysis.core import calendar
from pbc_analysis.core.checks import ArgumentError, choice_problem, choices_of, number_problem

AUTO = "auto"
Kind = Literal["month", "financial_year", "window"]
P = TypeVar("P", bound="StageParams")

__all__ = ["AUTO", "Derived", "Setting", "StageParams", "describe_settings", "setting"]


@dataclasses.dataclass(frozen=True)
class Setting:
    """What a field means and which values it accepts (the metadata of a :func:`setting`)."""

    help: str                          # one line: what the setting does
    choices: Any = None                # a Literal type of the allowed values
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    kind: str | None = None            # "month" | "financial_year" | "window"
    derive: str | None = None          # the rule, in words, that gives the value when it is "auto"
    shared: bool = False               # used by more than one stage: set once, under the config's `parameters:`


def setting(default: Any, help: str, **meta: Any) -> Any:
    """One parameter of a stage: its default and its :class:`Setting` metadata.

    Parameters
    ----------
    default : object
        The default (a list is copied for each instance).
    help : str
        One line saying what the setting does.
    **meta
        The other :class:`Setting` fields: ``choices`` (a ``Literal``), ``low``/``high`` (and ``low_open``,
        ``high_open``), ``kind``, ``derive`` (the rule for ``"auto"``), ``shared``.

    Returns
    -------
    dataclasses.Field
    """
    info = Setting(help=help, **meta)
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata={"setting": info})
    return dataclasses.field(default=default, metadata={"setting": info})


@dataclasses.dataclass(frozen=True)
class Derived:
    """A setting the run derived from the data: its value and the rule that gave it."""

    name: str
    value: Any
    rule: str


def _scalar_ok(value: Any, kind: Any) -> bool:
    if kind is bool:
        return type(value) is bool
    if kind is int:
        return type(value) is int
    if kind is float:
        return type(value) in (int, float)
    if kind is str:
        return type(value) is str
    return True


def _type_problem(name: str, value: Any, hint: Any) -> str | None:
    """Whether ``value`` has the annotated type (int, float, bool, str, list of those, ``| None``, ``| str``)."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    for option in options:
        if option is type(None) and value is None:
            return None
        if typing.get_origin(option) is list:
            (element,) = typing.get_args(option) or (Any,)
            if type(value) is list and all(_scalar_ok(v, element) for v in value):
                return None
        elif typing.get_origin(option) is Literal:
            if any(value == o and type(value) is type(o) for o in typing.get_args(option)):
                return None
        elif option is not type(None) and _scalar_ok(value, option):
            return None
    return f"{name} must be {_type_text(hint)}, got {type(value).__name__} {value!r}"


def _type_text(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def _kind_problem(name: str, value: Any, kind: str) -> str | None:
    if kind == "month" and not calendar.is_month(value):
        return f"{name} must be a month \"YYYY-MM\" (or \"auto\"), got {value!r}"
    if kind == "financial_year" and not calendar.is_financial_year(value):
        return f"{name} must be a financial year \"YYYY/YY\" such as \"2007/08\" (or \"auto\"), got {value!r}"
    if kind == "window":
        if not (type(value) is list and len(value) == 2 and all(calendar.is_month(v) for v in value)):
            return f"{name} must be two months [\"YYYY-MM\", \"YYYY-MM\"] (first and last, inclusive) or \"auto\", got {value!r}"
        if value[0] > value[1]:
            return f"{name} = {value!r} ends before it starts; write [first, last]"
    return None


@dataclasses.dataclass(frozen=True)
class StageParams:
    """Base of every stage's parameters: checked on construction, ``"auto"`` resolved from the data.

    Subclasses are frozen dataclasses whose fields are declared with :func:`setting`; they may override
    :meth:`derive` (values for ``"auto"`` fields) and :meth:`rules` (cross-setting rules, checked against
    the data before any notebook runs).
    """

    STAGE: ClassVar[str] = ""          # the stage's name, for messages

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ArgumentError(f"{type(self).__module__}.{type(self).__qualname__}: " + "; ".join(problems), problems)

    # ---- the declared settings ------------------------------------------------------------------
    @classmethod
    def settings(cls) -> dict[str, Setting]:
        """Each field's :class:`Setting`, in declaration order.

        Returns
        -------
        dict
            Field name -> :class:`Setting`.
        """
        return {f.name: f.metadata["setting"] for f in dataclasses.fields(cls) if "setting" in f.metadata}

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Each field's default value.

        Returns
        -------
        dict
        """
        out = {}
        for f in dataclasses.fields(cls):
            out[f.name] = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        return out

    @classmethod
    def from_namespace(cls: type[P], namespace: Mapping[str, Any]) -> P:
        """Build from the variables of a notebook's parameters cell (``globals()``), taking this stage's fields.

        Parameters
        ----------
        namespace : mapping
            Name -> value; names that are not fields are ignored, fields that are absent keep their defaults.

        Returns
        -------
        StageParams
        """
        return cls(**{name: namespace[name] for name in cls.settings() if name in namespace})

    def values(self) -> dict[str, Any]:
        """The settings as a plain dict (lists copied).

        Returns
        -------
        dict
        """
        return {name: (list(v) if isinstance(v, list) else v) for name, v in
                ((f.name, getattr(self, f.name)) for f in dataclasses.fields(self))}

    # ---- checks ---------------------------------------------------------------------------------
    def problems(self) -> list[str]:
        """Every field outside its type, allowed values, range or kind (``"auto"`` only where derivable).

        Returns
        -------
        list of str
            One message per problem, naming the setting.
        """
        hints = typing.get_type_hints(type(self))
        out: list[str] = []
        for name, info in self.settings().items():
            value = getattr(self, name)
            if value == AUTO and info.derive:
                continue
            problem = _type_problem(name, value, hints[name])
            if problem is None and info.choices is not None:
                problem = choice_problem(name, value, info.choices)
            if problem is None and (info.low is not None or info.high is not None) and value is not None:
                problem = number_problem(name, value, info.low, info.high, low_open=info.low_open, high_open=info.high_open)
            if problem is None and info.kind and value is not None:
                problem = _kind_problem(name, value, info.kind)
            if problem:
                out.append(problem)
        return out

    def auto(self) -> list[str]:
        """The names of the settings still ``"auto"``.

        Returns
        -------
        list of str
        """
        return [name for name, info in self.settings().items() if info.derive and getattr(self, name) == AUTO]

    # ---- derivation -----------------------------------------------------------------------------
    def derive(self, facts: Any) -> dict[str, Any]:
        """Values for the ``"auto"`` settings, from the facts of the validated data (subclasses).

        Parameters
        ----------
        facts : pbc_analysis.stages.facts.DataFacts
            What the validated inputs say (window, engagement cohorts, last complete month, ...).

        Returns
        -------
        dict
            Setting name -> value, for (at least) every name in :meth:`auto`.
        """
        return {}

    def rules(self, facts: Any) -> list[str]:
        """Cross-setting rules against the data (subclasses): each broken rule with its fix.

        Parameters
        ----------
        facts : pbc_analysis.stages.facts.DataFacts

        Returns
        -------
        list of str
        """
        return []

    def resolve(self: P, facts: Any) -> tuple[P, list[Derived]]:
        """Replace every ``"auto"`` by its derived value and check the cross-setting rules.

        Parameters
        ----------
        facts : pbc_analysis.stages.facts.DataFacts

        Returns
        -------
        params : StageParams
            With no ``"auto"`` left.
        derived : list of Derived
            Each derived setting, its value and its rule (for the printout, the manifest and the report).

        Raises
        ------
        ArgumentError
            Listing every rule the (resolved) settings break, with the fix.
        """
        wanted = self.auto()
        values = self.derive(facts) if wanted else {}
        missing = [n for n in wanted if n not in values]
        if missing:
            message = f"cannot derive {', '.join(missing)} from the data; set them in the config"
            raise ArgumentError(f"{self.STAGE}: {message}", [message])
        resolved = dataclasses.replace(self, **{n: values[n] for n in wanted})
        problems = resolved.rules(facts)
        if problems:
            raise ArgumentError(f"{self.STAGE}: " + "; ".join(problems), problems)
        settings = self.settings()
        return resolved, [Derived(n, values[n], settings[n].derive or "") for n in wanted]


def describe_settings(classes: Sequence[type[StageParams]]) -> list[dict[str, Any]]:
    """One row per setting of the given stages: name, default, type, allowed values, rule, help.

    Parameters
    ----------
    classes : sequence of StageParams subclasses

    Returns
    -------
    list of dict
        For ``pbc init`` comments, the CLI help and the data dictionary.
    """
    rows = []
    for cls in classes:
        hints = typing.get_type_hints(cls)
        defaults = cls.defaults()
        for name, info in cls.settings().items():
            allowed = ""
            if info.choices is not None:
                allowed = " | ".join(str(c) for c in choices_of(info.choices))
            elif info.low is not None or info.high is not None:
                lo = "" if info.low is None else f"{'>' if info.low_open else '>='} {info.low:g}"
                hi = "" if info.high is None else f"{'<' if info.high_open else '<='} {info.high:g}"
                allowed = " and ".join(x for x in (lo, hi) if x)
            rows.append({"stage": cls.STAGE, "name": name, "default": defaults[name], "type": _type_text(hints[name]),
                         "allowed": allowed, "kind": info.kind or "", "derive": info.derive or "", "help": info.help,
                         "shared": info.shared})
    return rows
