"""Safe names and the names of a run directory's markers: the core rules every layer shares.

A name that reaches a file name, a URL or HTML (a run's name, a run id, a notebook name) is 1 to
:data:`MAX_NAME` ASCII letters, digits, ``-``, ``_`` or ``.``, not starting with ``.``; it can then
never be a path (no ``/``, no ``..`` as a whole name, no hidden file) nor markup. A run directory is
``<YYYYMMDD-HHMMSS>-<run.name>-<hash8>[-N]``, so ``run.name`` is limited to :data:`MAX_RUN_NAME`
characters and every run directory's name is itself a safe name.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Any

MAX_NAME = 64
RUN_ID_OVERHEAD = len("20260101-000000-") + len("-0123abcd") + len("-99")   # stamp, hash, uniquifier
MAX_RUN_NAME = MAX_NAME - RUN_ID_OVERHEAD
INCOMPLETE = "INCOMPLETE"      # in a run directory while it runs, and after a failed or interrupted run
LATEST = "latest"              # reports/latest: the last complete run
_NAME_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


def name_rule(max_len: int = MAX_NAME) -> str:
    """The rule in words, for messages.

    Parameters
    ----------
    max_len : int
        The longest name allowed.

    Returns
    -------
    str
    """
    return f"1-{max_len} ASCII letters, digits, '-', '_' or '.', not starting with '.'"


def is_safe_name(value: Any, max_len: int = MAX_NAME) -> bool:
    """Whether ``value`` is a ``str`` obeying :func:`name_rule`.

    Parameters
    ----------
    value : object
        The candidate name.
    max_len : int
        The longest name allowed.

    Returns
    -------
    bool
    """
    return type(value) is str and 0 < len(value) <= max_len and _NAME_RE.fullmatch(value) is not None


def did_you_mean(name: Any, options: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``options`` to a misspelt ``name``, or ``""``.

    Parameters
    ----------
    name : object
        The name given (made a string).
    options : iterable of str
        The names allowed.

    Returns
    -------
    str
        The suggestion, with a leading space, or an empty string when nothing is close (difflib ratio
        below 0.6).

    References
    ----------
    Python ``difflib.get_close_matches`` (Ratcliff/Obershelp similarity).
    """
    close = difflib.get_close_matches(str(name), sorted(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
