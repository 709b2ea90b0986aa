"""``pbc synth``'s flags, generated from the fields of :class:`~pbc_analysis.synth.params.SynthParams`.

One source: each flag's name, type, default, allowed range and help come from the field and its
:class:`~pbc_analysis.synth.params.Option` (:func:`flags`); :func:`params_from_flags` parses what was typed,
builds the parameters and checks them, naming the flag of every problem.

How values are written on the command line:

- numbers and text as usual; ``auto`` for a field derived from the window (e.g. ``--providers auto``);
- lists comma-separated: ``--completeness 0.9,0.6`` (``--completeness none``: every month complete);
- months of the window as ``YYYY-MM`` or as offsets from ``--start``: ``--cohort-offsets 2005-04,2005-10`` or
  ``--cohort-offsets 24,30`` (offset 0 is the first month);
- ``code=value`` pairs, merged into the defaults: ``--engagement-effects 110=0.2,330=0.1`` changes two
  specialties; ``all=X`` sets every code first (``--engagement-effects all=0.1,110=0.2``); ``none`` sets
  every code to 0 (no practice action; ``--structural-change none``: no structural price change).

References
----------
Python ``argparse`` (the parser is built in :mod:`pbc_analysis.pipeline.cli` from :func:`flags`).
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Mapping

from pbc_analysis.core import calendar
from pbc_analysis.core.checks import ArgumentError
from pbc_analysis.synth.params import Option, SynthParams

__all__ = ["SynthFlag", "flag_label", "flags", "name_flags", "params_from_flags", "parse_flag"]

AUTO = "auto"
NONE = "none"


@dataclass(frozen=True)
class SynthFlag:
    """One ``pbc synth`` flag: the field it sets and how ``--help`` shows it."""

    name: str                      # the SynthParams field
    flag: str                      # e.g. --practices
    group: str                     # the section of --help
    metavar: str
    help: str                      # the field's help, allowed values and default
    default: Any                   # the field's default (None: derived)


def _hint(name: str) -> Any:
    return typing.get_type_hints(SynthParams)[name]


def _parts(hint: Any) -> tuple[Any, bool]:
    """(the type without ``None``, whether ``None`` is allowed)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        return next(a for a in args if a is not type(None)), True
    return hint, False


def flag_label(name: str) -> str:
    """The flag of a :class:`SynthParams` field (``n_practices`` -> ``--practices``).

    Parameters
    ----------
    name : str

    Returns
    -------
    str
    """
    return SynthParams.options()[name].flag or "--" + name.replace("_", "-")


def _default(name: str) -> Any:
    return next(f.default for f in dataclasses.fields(SynthParams) if f.name == name)


def _value_text(value: Any) -> str:
    """A value as it is typed on the command line (``0.3,0.25``, ``110=0.14,...``)."""
    if isinstance(value, tuple):
        if not value:
            return NONE
        if isinstance(value[0], tuple):
            return ",".join(f"{k}={_value_text(v)}" for k, v in value)
        return ",".join(_value_text(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _metavar(hint: Any, opt: Option) -> str:
    base, optional = _parts(hint)
    if opt.kind == "pairs":
        text = "CODE=X,..."
    elif opt.kind == "offset":
        text = "MONTH,..." if typing.get_origin(base) is tuple else "MONTH"
    elif opt.kind == "month":
        text = "YYYY-MM"
    elif typing.get_origin(base) is tuple:
        text = "X,..."
    else:
        text = {int: "N", float: "X", str: "TEXT"}.get(base, "VALUE")
    return f"{text}|{AUTO}" if optional and opt.derive else text


def _range_text(opt: Option, many: bool) -> str:
    """The allowed range in words (``each > 0 and <= 1`` for a list)."""
    lo = "" if opt.low is None else f"{'>' if opt.low_open else '>='} {opt.low:g}"
    hi = "" if opt.high is None else f"{'<' if opt.high_open else '<='} {opt.high:g}"
    length = f"{opt.length} values, " if opt.length is not None else ""
    return (length + ("each " if many else "") + " and ".join(x for x in (lo, hi) if x)) if lo or hi else ""


def flags() -> list[SynthFlag]:
    """Every ``pbc synth`` flag, one per :class:`SynthParams` field, in field order.

    Returns
    -------
    list of SynthFlag
    """
    out = []
    for f in dataclasses.fields(SynthParams):
        opt = f.metadata["synth"]
        hint = _hint(f.name)
        default = f"derived: {opt.derive}" if f.default is None and opt.derive else _value_text(f.default)
        limits = _range_text(opt, typing.get_origin(_parts(hint)[0]) is tuple)
        text = name_flags(f"{opt.help}" + (f"; {limits}" if limits else "") + f" (default: {default})")
        out.append(SynthFlag(f.name, flag_label(f.name), opt.group, _metavar(hint, opt), text, f.default))
    return out


# ---------------------------------------------------------------------------------------------
# parsing
# ---------------------------------------------------------------------------------------------
def _scalar(text: str, kind: Any, opt: Option, start: str | None) -> Any:
    """One value of type ``kind``; raises ValueError with what was expected."""
    text = text.strip()
    if opt.kind == "offset" and calendar.is_month(text):
        if start is None:
            raise ValueError(f"cannot place month {text} before --start is valid")
        return calendar.month_int(text) - calendar.month_int(start)
    if kind is int:
        if not re.fullmatch(r"[+-]?[0-9_]+", text):
            raise ValueError(f"expected a whole number{' or a month YYYY-MM' if opt.kind == 'offset' else ''}, "
                             f"got {text!r}")
        return int(text)
    if kind is float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {text!r}")
        return value
    return text


def _pairs(text: str, default: tuple[tuple[str, float], ...]) -> tuple[tuple[str, float], ...]:
    """``code=value`` pairs merged into the default (``all=X`` first sets every code, ``none`` sets every code 0)."""
    merged = dict(default)
    if text.strip().lower() == NONE:
        return tuple((k, 0.0) for k in merged)
    for item in [x for x in text.split(",") if x.strip()]:
        code, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"expected code=value pairs such as {_value_text(default[:2])}, got {item!r}")
        try:
            number = _scalar(value, float, Option("", ""), None)
        except ValueError as exc:
            raise ValueError(f"{code.strip()}: {exc}") from None
        if code.strip() == "all":
            merged = {k: number for k in merged}
        else:
            merged[code.strip()] = number
    return tuple(merged.items())


def parse_flag(name: str, text: str, start_month: str | None = None) -> Any:
    """The value of a :class:`SynthParams` field from its flag's text.

    Parameters
    ----------
    name : str
        The field.
    text : str
        As typed.
    start_month : str, optional
        The window's first month, to turn months into offsets.

    Returns
    -------
    object
        Of the field's type.

    Raises
    ------
    ValueError
        Saying what was expected.
    """
    opt = SynthParams.options()[name]
    base, optional = _parts(_hint(name))
    if optional and text.strip().lower() == AUTO:
        return None
    if opt.kind == "pairs":
        return _pairs(text, _default(name))
    if typing.get_origin(base) is tuple:
        element = typing.get_args(base)[0]
        if text.strip().lower() in ("", NONE):
            return ()
        return tuple(_scalar(x, element, opt, start_month) for x in text.split(","))
    return _scalar(text, base, opt, start_month)


def params_from_flags(given: Mapping[str, str]) -> SynthParams:
    """The parameters ``pbc synth`` was given (field -> text as typed), checked, every problem naming its flag.

    Parameters
    ----------
    given : mapping
        Field name -> the flag's text; fields not given keep their defaults.

    Returns
    -------
    SynthParams
        As given (unresolved: ``None`` fields are derived by :meth:`SynthParams.resolved`).

    Raises
    ------
    ArgumentError
        Listing every problem: a value that does not parse, is out of range or breaks a rule
        (:meth:`SynthParams.problems`), each naming the flag and the fix.
    """
    start = given.get("start_month", _default("start_month"))
    start = start if calendar.is_month(start) else None
    values, problems = {}, []
    for name, text in given.items():
        try:
            values[name] = parse_flag(name, text, start)
        except ValueError as exc:
            problems.append(f"{flag_label(name)}: {exc}")
    if not problems:
        params = SynthParams(**values)
        problems = params.problems(label=flag_label)
    if problems:
        raise ArgumentError("pbc synth: " + "; ".join(problems), problems)
    return params


def name_flags(message: str) -> str:
    """``message`` with every :class:`SynthParams` field name of two or more words replaced by its flag.

    One-word names (``seed``, ``completeness``) are also plain words, so they are left as they are.

    Parameters
    ----------
    message : str

    Returns
    -------
    str
    """
    for f in sorted((n for n in SynthParams.options() if "_" in n), key=len, reverse=True):
        message = re.sub(rf"(?<![\w-]){f}(?!\w)", flag_label(f), message)
    return message
