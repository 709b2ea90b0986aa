"""Finding the table files of a data directory, and every way a table can be present but unreadable.

One file per table (``<table>.csv``, ``.csv.gz`` or ``.parquet``, names as in :data:`~pbc_analysis.data.schema.TABLES`).
Duplicates, names that differ only in case or extension (near misses), directories, dangling links, links
leaving the data directory, special and unreadable files are problems; so is a missing required table.
"""

from __future__ import annotations

import os
from pathlib import Path

from pbc_analysis.core import paths as _paths
from pbc_analysis.data.problems import DataValidationError, Problem
from pbc_analysis.data.schema import SUFFIXES, TABLES


def _table_of(path: Path) -> str | None:
    name = path.name
    for suffix in SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in TABLES:
            return name[: -len(suffix)]
    return None


#: checks of an entry in a table's place that keep the table from being read (it is not "missing")
_BLOCKING = frozenset({"duplicate_file", "dangling_symlink", "symlink_outside", "not_a_file", "unreadable_file"})
_SPREADSHEET = (".xlsx", ".xlsm", ".xls", ".ods", ".numbers")


def _near_table(name: str) -> str | None:
    """The table an entry's name is probably meant for (``Budgets.CSV``, ``budgets.xlsx``), else None."""
    stem = name.split(".")[0].strip().lower()
    return stem if stem in TABLES else None


def _entry_problem(p: Path, d: Path | None, table: str) -> Problem | None:
    """Why the entry ``p`` (named as table ``table``'s file) cannot be read, or None if it can.

    A symbolic link is followed only when its target lies inside the data directory ``d`` (``None``:
    an explicitly configured path, followed anywhere); a link leaving ``d`` is reported and never
    opened, so no message can quote the content of a file outside the data directory.
    """
    names = " or ".join(TABLES[table].file_names)
    if p.is_symlink():
        try:
            target = p.resolve(strict=True)
        except (OSError, RuntimeError):
            return Problem(str(p), table, None, [], [],
                           f"{p.name} is a symbolic link to {os.readlink(p)}, which does not exist (a dangling link)",
                           f"point the link at the table's file, or replace it with the file itself ({names})",
                           check="dangling_symlink")
        if d is not None and not target.is_relative_to(d.resolve()):
            return Problem(str(p), table, None, [], [],
                           f"{p.name} is a symbolic link to {target}, outside the data directory {d}; it was not read "
                           "(inputs are read only from inside the data directory)",
                           f"copy the file into {d} as {p.name}, or set data_dir to the folder that holds it",
                           check="symlink_outside")
    if p.is_dir():
        return Problem(str(p), table, None, [], [], f"{p.name} is a directory, not a file",
                       f"put table '{table}' in one file named {names}, or move the directory out of the way",
                       check="not_a_file")
    if not p.is_file():
        return Problem(str(p), table, None, [], [],
                       f"{p.name} is not a regular file (a device, socket or named pipe) and is not read",
                       f"replace it with the table's file ({names})", check="not_a_file")
    try:
        with open(p, "rb"):
            pass
    except OSError as exc:
        reason = "permission denied" if isinstance(exc, PermissionError) else (exc.strerror or str(exc))
        return Problem(str(p), table, None, [], [], f"the file cannot be opened: {reason}",
                       f"let the user running pbc read it (e.g. chmod a+r '{p}') or copy it somewhere readable",
                       check="unreadable_file")
    return None


def _misnamed_problem(p: Path, table: str, used: Path | None) -> Problem:
    names = ", ".join(TABLES[table].file_names)
    lower = p.name.lower()
    if used is not None:
        message = (f"{p.name} looks like another file for table '{table}', which is read from {used.name}; "
                   f"{p.name} is not read")
        fix = f"keep exactly one file per table: remove {p.name} or move it out of the data directory"
    else:
        kind = "optional" if not TABLES[table].required else "required"
        message = (f"{p.name} looks like {kind} table '{table}' but is not read: the file name must be exactly one "
                   f"of {names} (lower case)")
        if p.is_dir() and not p.is_symlink():
            fix = f"put table '{table}' in one file named {table}.csv or {table}.parquet, not in a directory"
        elif _table_of(Path(lower)) == table:
            fix = f"rename it to {lower}"
        elif lower.endswith(_SPREADSHEET):
            fix = f"save it from the spreadsheet as 'CSV UTF-8 (Comma delimited)' named {table}.csv"
        else:
            fix = f"save it as a comma-separated {table}.csv (UTF-8) or as {table}.parquet"
        if not TABLES[table].required:
            fix += f"; if the table is not meant to be used, move {p.name} out of the data directory"
    return Problem(str(p), table, None, [], [p.name], message, fix, check="misnamed_file")


def _find_table_files(data_dir: str | Path) -> tuple[dict[str, Path], list[Problem], Path]:
    d = _paths.resolve(data_dir)
    if not d.is_dir():
        what = "is not a directory" if d.exists() else "does not exist"
        return {}, [Problem(str(d), "", None, [], [], f"the data directory {what}",
                            "point data_dir at the folder holding the table files", check="data_dir")], d
    found: dict[str, list[Path]] = {}
    near: dict[str, list[Path]] = {}
    problems: list[Problem] = []
    for p in sorted(d.iterdir()):
        if p.name.startswith("."):
            continue
        t = _table_of(p)
        if t is not None:
            bad = _entry_problem(p, d, t)
            if bad is None:
                found.setdefault(t, []).append(p)
            else:
                problems.append(bad)
        elif _near_table(p.name) is not None:
            near.setdefault(str(_near_table(p.name)), []).append(p)
    problems += [
        Problem(", ".join(str(p) for p in ps), t, None, [], [p.name for p in ps],
                f"{len(ps)} files for table '{t}': " + ", ".join(p.name for p in ps),
                "keep exactly one file per table (remove or rename the others)", check="duplicate_file")
        for t, ps in found.items() if len(ps) > 1
    ]
    files = {t: ps[0] for t, ps in found.items() if len(ps) == 1}
    blocked = {pr.table for pr in problems}
    for t, ps in near.items():
        if t in files or t in blocked or not TABLES[t].required:  # a required table's absence says it all
            problems += [_misnamed_problem(p, t, files.get(t)) for p in ps]
    return files, problems, d


def find_table_files(data_dir: str | Path) -> dict[str, Path]:
    """The table files in a data directory, checked for every way a table can be present but unreadable.

    Parameters
    ----------
    data_dir : str or Path
        The folder holding one file per table (``<table>.csv``, ``.csv.gz`` or ``.parquet``); relative
        paths are taken from the project root. Other files (``ground_truth.json``, notes, ...) are
        ignored, unless their name looks like a table's (see Raises).

    Returns
    -------
    dict of str to Path
        ``{table: path}`` of the readable table files found.

    Raises
    ------
    DataValidationError
        Listing every problem: a missing directory; two files for one table; a file whose name differs
        from a table's only in case or extension (``Budgets.csv``, ``budgets.CSV``, ``budgets.xlsx``),
        for any table, required or optional; a directory, a dangling symbolic link, a link leaving the
        data directory, a special file or an unreadable file in a table's place. Nothing is silently
        skipped. (A *missing* required table is reported by :func:`load_inputs`.)
    """
    files, problems, _ = _find_table_files(data_dir)
    if problems:
        raise DataValidationError(problems)
    return files


def _near_misses(d: Path | None, table: str) -> list[str]:
    if d is None or not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir()
                  if not p.name.startswith(".") and _near_table(p.name) == table and _table_of(p) is None)


def _missing_table_problem(table: str, data_dir: Path | None) -> Problem:
    names = ", ".join(TABLES[table].file_names)
    near = _near_misses(data_dir, table)
    hint = f" (found {', '.join(near)}, which is not a supported name/format)" if near else ""
    where = f" in {data_dir}" if data_dir is not None else ""
    into = f" to {data_dir}" if data_dir is not None else " to the data directory"
    fix = (f"rename {', '.join(near)} to {table}.csv (save spreadsheets as 'CSV UTF-8 (Comma delimited)') or "
           f"{table}.parquet" if near else f"add the file{into}, named exactly {TABLES[table].file_names[0]} "
           f"(or {' or '.join(TABLES[table].file_names[1:])})")
    return Problem(str(data_dir) if data_dir is not None else "", table, None, [], near,
                   f"required table '{table}' is missing: expected one of {names}{where}{hint}",
                   f"{fix}; see docs/data_dictionary.md, table '{table}'", check="missing_table")
