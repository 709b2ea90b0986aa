"""Checks of analysis arguments: one helper per kind, each returning the problem as text (or raising).

Choice arguments are typed ``Literal[...]`` (the allowed values live in the type, as in pyfixest's
``internals/literals.py``) and checked by :func:`check_choice`; numbers by :func:`check_number`. Each message
names the argument, the allowed values or range, the value given and (for a near miss) the likely intended
value, so a user fixes every problem at once.

References
----------
pyfixest, ``pyfixest/estimation/literals.py`` (``Literal`` types for choice arguments, checked by one helper).
"""

from __future__ import annotations

import math
from typing import Any, get_args

from pbc_analysis.core.names import did_you_mean

__all__ = ["ArgumentError", "check_choice", "check_number", "choices_of", "choice_problem", "number_problem"]


class ArgumentError(ValueError):
    """An analysis argument outside its allowed values (a ``ValueError``, so existing handlers still catch it).

    ``problems`` lists each problem on its own (the message joins them), so a caller can report every
    problem of every stage at once.
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems) if problems else [message]


def choices_of(literal: Any) -> tuple[Any, ...]:
    """The allowed values of a ``Literal[...]`` type (also of a union of Literals).

    Parameters
    ----------
    literal : typing.Literal
        E.g. ``Literal["never", "not_yet"]``.

    Returns
    -------
    tuple
        The values, in the order written.
    """
    out: list[Any] = []
    for arg in get_args(literal):
        out.extend(choices_of(arg) if get_args(arg) else [arg])
    return tuple(out)


def choice_problem(name: str, value: Any, literal: Any) -> str | None:
    """The problem with ``value`` as a choice of ``literal``, or None if it is one of its values.

    Parameters
    ----------
    name : str
        The argument's name, for the message.
    value : object
    literal : typing.Literal

    Returns
    -------
    str or None
    """
    options = choices_of(literal)
    if any(value == o and type(value) is type(o) for o in options):
        return None
    hint = did_you_mean(str(value), {str(o) for o in options}) if isinstance(value, str) else ""
    return f"{name} must be one of {', '.join(repr(o) for o in options)}; got {value!r}{hint}"


def check_choice(name: str, value: Any, literal: Any) -> Any:
    """Check that ``value`` is one of the values of ``literal``.

    Parameters
    ----------
    name : str
        The argument's name.
    value : object
    literal : typing.Literal

    Returns
    -------
    object
        ``value``, unchanged.

    Raises
    ------
    ArgumentError
        Naming the argument, the allowed values and the likely intended one.
    """
    problem = choice_problem(name, value, literal)
    if problem:
        raise ArgumentError(problem)
    return value


def number_problem(name: str, value: Any, low: float | None = None, high: float | None = None, *,
                   low_open: bool = False, high_open: bool = False, integer: bool = False, fix: str = "") -> str | None:
    """The problem with ``value`` as a number in a range, or None.

    Parameters
    ----------
    name : str
        The argument's name.
    value : object
    low, high : float, optional
        The bounds (None: unbounded).
    low_open, high_open : bool
        Whether the bound itself is excluded.
    integer : bool
        Whether a whole number (an ``int``, not a bool) is required.
    fix : str
        Advice appended to the message.

    Returns
    -------
    str or None
    """
    tail = f"; {fix}" if fix else ""
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if integer and not (numeric and float(value).is_integer() and isinstance(value, int)):
        return f"{name} must be a whole number, got {value!r}{tail}"
    if not numeric or not math.isfinite(value):
        return f"{name} must be a finite number, got {value!r}{tail}"
    bad_low = low is not None and (value <= low if low_open else value < low)
    bad_high = high is not None and (value >= high if high_open else value > high)
    if bad_low or bad_high:
        parts = [] if low is None else [f"> {low:g}" if low_open else f">= {low:g}"]
        parts += [] if high is None else [f"< {high:g}" if high_open else f"<= {high:g}"]
        return f"{name} must be {' and '.join(parts)}, got {value!r}{tail}"
    return None


def check_number(name: str, value: Any, low: float | None = None, high: float | None = None, *,
                 low_open: bool = False, high_open: bool = False, integer: bool = False, fix: str = "") -> Any:
    """Check that ``value`` is a finite number (whole if ``integer``) within ``low`` .. ``high``.

    Parameters
    ----------
    name, value, low, high, low_open, high_open, integer, fix
        As for :func:`number_problem`.

    Returns
    -------
    int or float
        ``value``, unchanged.

    Raises
    ------
    ArgumentError
    """
    problem = number_problem(name, value, low, high, low_open=low_open, high_open=high_open, integer=integer, fix=fix)
    if problem:
        raise ArgumentError(problem)
    return value
