"""Safe names and the names of a run directory's markers: the core rules every layer shares.

A name that reaches a file name, a URL or HTML (a run's name, a run id, a notebook name) is 1 to
:data:`MAX_NAME` ASCII letters, digits, ``-``, ``_`` or ``.``, not starting with ``.``; it can then
never be a path (no ``/``, no ``..`` as a whole name, no hidden file) nor markup. A run directory is
``<YYYYMMDD-HHMMSS>-<run.name>-<hash8>[-N]``, so ``run.name`` is limited to :data:`MAX_RUN_NAME`
characters and every run directory's name is itself a safe name.
"""

from __future__ import annotations

import re
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
