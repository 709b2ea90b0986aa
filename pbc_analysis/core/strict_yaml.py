"""The YAML reader of configs and column maps: plain data only, every refused construct named with its key and line.

A config or a column map is data, never code. :class:`StrictLoader` is a ``yaml.SafeLoader`` that first checks the
composed node tree and refuses, all at once: tags that build anything but plain mappings, lists, str,
int, float, bool and null (``!!set``, ``!!omap``, ``!!pairs``, ``!!binary``, every ``!!python/...`` and
unknown ``!tag``), explicit tags other than ``!!str``, unquoted dates (with the "quote your dates" fix),
anchors, aliases and merge keys, keys that are not plain names, and duplicate keys.

References
----------
YAML 1.1 tag repository (https://yaml.org/type/); PyYAML ``SafeLoader`` and its constructors.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from pbc_analysis.core import paths


class ConfigError(ValueError):
    """The run config is invalid; the message lists every problem found."""



# --------------------------------------------------------------------------------------------------
# YAML: plain data only
# --------------------------------------------------------------------------------------------------

_YAML = "tag:yaml.org,2002:"
_DECIMAL_INT = re.compile(r"[-+]?(0|[1-9][0-9]*)")
_DECIMAL_FLOAT = re.compile(r"[-+]?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][-+]?[0-9]+)?")
_PLAIN_SCALAR_TAGS = {_YAML + t for t in ("null", "bool", "int", "float", "str")}


def _tag_text(tag: str) -> str:
    return "!!" + tag[len(_YAML):] if tag.startswith(_YAML) else tag


def _refuse(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    raise yaml.constructor.ConstructorError(
        None, None, f"the YAML tag {_tag_text(node.tag)} is not allowed in a config (plain data only)", node.start_mark)


class StrictLoader(yaml.SafeLoader):
    """A ``yaml.SafeLoader`` for run configs: plain mappings, lists, str, int, float, bool and null only.

    Before anything is constructed, the node tree is checked (:meth:`check_node`) and every refused
    construct is listed with its key path and line; the constructors of the refused tags also raise,
    should anything reach them.
    """

    where = "config"

    def check_node(self, node: yaml.Node, path: str, problems: list[str], seen: set[int]) -> None:
        """Append a problem (key path, line, fix) for every construct in ``node`` that is not plain data.

        Parameters
        ----------
        node : yaml.Node
            A composed node.
        path : str
            Its key path, e.g. ``notebooks.03_referral_evaluation.specialties[1]`` ("" for the document).
        problems : list of str
            Collects the problems.
        seen : set of int
            Ids of nodes already visited: a node met twice is an alias.

        Returns
        -------
        None
        """
        at = f"{self.where}: {path or 'the config'} (line {node.start_mark.line + 1})"
        if id(node) in seen:
            problems.append(f"{at}: anchors and aliases (&name / *name) are not allowed; write the value out")
            return
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            if node.tag != _YAML + "map":
                problems.append(f"{at}: the YAML tag {_tag_text(node.tag)} is not allowed; a config holds only plain "
                                "mappings, lists, strings, numbers, true/false and null")
                return
            first: dict[str, int] = {}
            for key, value in node.value:
                line = key.start_mark.line + 1
                here = f"{self.where}: {path or 'the config'} (line {line})"
                if key.tag == _YAML + "merge":
                    problems.append(f"{here}: merge keys (<<) are not allowed; write the keys out")
                    continue
                if not isinstance(key, yaml.ScalarNode) or key.tag != _YAML + "str":
                    shown = key.value if isinstance(key, yaml.ScalarNode) else "a list or mapping"
                    problems.append(f"{here}: key {shown!r} is not a plain name; keys are names, "
                                    f"quoted if they look like numbers, dates or true/false: \"{shown}\"")
                    continue
                if key.value in first:
                    key_path = f"{path}.{key.value}" if path else key.value
                    problems.append(f"{self.where}: {key_path} (line {line}): duplicate key, first given on line "
                                    f"{first[key.value]}; give each key once")
                    continue
                first[key.value] = line
                self.check_node(value, f"{path}.{key.value}" if path else key.value, problems, seen)
        elif isinstance(node, yaml.SequenceNode):
            if node.tag != _YAML + "seq":
                problems.append(f"{at}: the YAML tag {_tag_text(node.tag)} is not allowed; a config holds only plain "
                                "mappings, lists, strings, numbers, true/false and null")
                return
            for i, item in enumerate(node.value):
                self.check_node(item, f"{path}[{i}]", problems, seen)
        else:
            implicit = self.resolve(yaml.ScalarNode, node.value, (node.style is None, True))
            if node.tag == _YAML + "timestamp":
                problems.append(f"{at}: {node.value} was read as a date; write dates and months as quoted strings, "
                                f"e.g. \"{node.value[:7]}\"")
            elif node.tag not in _PLAIN_SCALAR_TAGS:
                problems.append(f"{at}: the YAML tag {_tag_text(node.tag)} is not allowed; a config holds only plain "
                                "mappings, lists, strings, numbers, true/false and null")
            elif node.tag != implicit and node.tag != _YAML + "str":
                problems.append(f"{at}: the explicit tag {_tag_text(node.tag)} is not allowed; write the value plainly")
            elif node.tag == implicit:
                self._check_number(node, at, problems)

    def _check_number(self, node: yaml.ScalarNode, at: str, problems: list[str]) -> None:
        """Numbers are plain decimals: YAML 1.1's other forms (``0x10``, ``017``, ``1:30``, ``1_000``) are
        refused, a decimal with an exponent but no point (``1e-3``, a string in YAML 1.1) is a float, and
        integers have at most 18 digits."""
        if node.style is not None:
            return  # quoted: a string
        if node.tag == _YAML + "int":
            if not _DECIMAL_INT.fullmatch(node.value):
                problems.append(f"{at}: {node.value} is not a plain decimal number (YAML reads hexadecimal, octal, "
                                "sexagesimal and '_' forms); write it in decimal digits, or quote it for text")
            elif len(node.value.lstrip("+-")) > 18:
                problems.append(f"{at}: {node.value[:20]}... has {len(node.value.lstrip('+-'))} digits; whole numbers "
                                "have at most 18")
        elif node.tag == _YAML + "float":
            if not (_DECIMAL_FLOAT.fullmatch(node.value) or node.value.lower().lstrip("+-") in (".inf", ".nan")):
                problems.append(f"{at}: {node.value} is not a plain decimal number; write it like 0.95 or 1.5e-3")
        elif node.tag == _YAML + "str" and _DECIMAL_FLOAT.fullmatch(node.value):
            node.tag = _YAML + "float"  # 1e-3: YAML 1.1 reads a string, everyone means a number

    def get_single_data(self) -> Any:
        """Compose the document, refuse anything but plain data (raising ConfigError), then construct it."""
        node = self.get_single_node()
        if node is None:
            return None
        problems: list[str] = []
        self.check_node(node, "", problems, set())
        if problems:
            raise ConfigError("invalid run config:\n  - " + "\n  - ".join(problems))
        return self.construct_document(node)


for _tag in ("set", "omap", "pairs", "binary", "timestamp"):
    StrictLoader.add_constructor(_YAML + _tag, _refuse)
StrictLoader.add_constructor(None, _refuse)
StrictLoader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: _refuse(loader, node))
StrictLoader.add_multi_constructor("!", lambda loader, suffix, node: _refuse(loader, node))


def load_yaml(text: str, where: str = "config") -> Any:
    """Read config YAML with :class:`StrictLoader`.

    Parameters
    ----------
    text : str
        The YAML text.
    where : str
        Names the config in messages (its path).

    Returns
    -------
    object
        Plain data: dicts with str keys, lists, str, int, float, bool, None (``{}`` for an empty text).

    Raises
    ------
    ConfigError
        Listing every refused construct with key path and line, or the YAML syntax error.
    """
    if not text.strip():
        return {}
    loader = StrictLoader(text)
    loader.where = where
    try:
        return loader.get_single_data()
    except ConfigError:
        raise
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from exc
    except (ValueError, RecursionError) as exc:  # e.g. an int of more than 4300 digits, nesting too deep
        raise ConfigError(f"{where}: not a usable config: {type(exc).__name__}: {exc}") from None
    finally:
        loader.dispose()


def read_config_file(path: str | Path, what: str = "config file") -> tuple[str, Path]:
    """The text of a config file (a run config, an ingest config), or a ConfigError saying what is wrong.

    Parameters
    ----------
    path : str or Path
        Relative: from the current directory if it exists there, else from the project root.
    what : str
        Names the file in messages ("config file", "ingest config").

    Returns
    -------
    text : str
    path : Path
        The file read.

    Raises
    ------
    ConfigError
        Missing, a directory, unreadable or not UTF-8.
    """
    p = paths.resolve(path, base=Path.cwd()) if not Path(path).is_absolute() and Path(path).exists() else paths.resolve(path)
    if not p.is_file():
        raise ConfigError(f"{what} not found: {path} (looked at {p}{', a directory' if p.is_dir() else ''})")
    try:
        return p.read_text(encoding="utf-8"), p
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {p} cannot be read: {exc}") from None
