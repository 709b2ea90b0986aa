"""Column maps: the canonical fields of every source kind (:data:`FIELDS`) and the YAML map from a file's columns to them.

A column map is data, never code: it names the source kind, whether the file has a header row, the column
(name, or 1-based position) holding each canonical field, the date format of text date columns, the zero-padding
width of integer code columns and, for coded fields, which source codes mean which category. :func:`load_map`
reads a shipped map (``ingest/maps/<name>.yaml``) or a user's own YAML file with the strict plain-data loader
and refuses, all at once, unknown keys, unknown fields, a missing required field, a code listed in two
categories, a missing or unknown category and values of the wrong type.

References
----------
NHS Digital, HES data dictionaries (outpatients, admitted patient care); NHS England, ECDS technical output
specification; NHS Digital, "Patients registered at a GP practice" (quinary age files); ``epraccur`` (ODS).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

from pbc_analysis.core.names import did_you_mean
from pbc_analysis.core.strict_yaml import ConfigError, load_yaml
from pbc_analysis.data.schema import AGE_BANDS, PODS

__all__ = ["ANY", "FIELDS", "MAPS_DIR", "ColumnMap", "ColumnMapError", "Field", "load_map", "shipped_maps"]

MAPS_DIR = Path(__file__).resolve().parent / "maps"
#: the category that takes every code not listed in the other categories
ANY = "any"
FieldKind = Literal["code", "date", "money", "int", "text"]


@dataclass(frozen=True)
class Field:
    """One canonical field of a source kind.

    ``optional``: may be absent from the map and the file; ``nullable``: values may be missing (an empty CSV
    field or a null); ``categories``: for a coded field, the categories its code lists must give (every
    source value must fall in one of them).
    """

    kind: FieldKind
    optional: bool = False
    nullable: bool = False
    categories: tuple[str, ...] | None = None


def _f(kind: FieldKind, optional: bool = False, nullable: bool | None = None,
       categories: tuple[str, ...] | None = None) -> Field:
    return Field(kind, optional, optional if nullable is None else nullable, categories)


_OPTIONAL_ID = _f("code", optional=True)
#: canonical fields of every source kind, in the order of the data dictionary (docs/extracts.md)
FIELDS: dict[str, dict[str, Field]] = {
    "outpatients": {
        "event_id": _f("code"), "patient_id": _OPTIONAL_ID, "practice_code": _f("code", nullable=True),
        "provider_code": _f("code"), "specialty_code": _f("code"),
        "first_attendance": _f("code", categories=("first", "followup", "excluded")),
        "attended": _f("code", categories=("seen", "not_seen")),
        "referral_source": _f("code", categories=("gp", "other")),
        "appointment_date": _f("date"), "referral_received_date": _f("date", optional=True),
        "hrg": _f("code", optional=True), "cost": _f("money", optional=True),
    },
    "admitted": {
        "event_id": _f("code"), "spell_id": _f("code"), "episode_order": _f("int"), "patient_id": _OPTIONAL_ID,
        "practice_code": _f("code", nullable=True), "provider_code": _f("code"), "specialty_code": _f("code"),
        "admission_method": _f("code", categories=("elective", "non_elective", "excluded")),
        "admission_date": _f("date"), "discharge_date": _f("date", nullable=True),
        "hrg": _f("code", optional=True), "cost": _f("money", optional=True),
    },
    "ae": {
        "event_id": _f("code"), "patient_id": _OPTIONAL_ID, "practice_code": _f("code", nullable=True),
        "provider_code": _f("code"), "arrival_date": _f("date"),
        "department_type": _f("code", categories=("type_1", "other")),
        "hrg": _f("code", optional=True), "cost": _f("money", optional=True),
    },
    "referrals": {
        "event_id": _f("code"), "patient_id": _OPTIONAL_ID, "practice_code": _f("code", nullable=True),
        "provider_code": _f("code"), "specialty_code": _f("code"), "referral_date": _f("date"),
    },
    "registrations": {
        "extract_date": _f("date"), "practice_code": _f("code"), "sex": _f("code", categories=("F", "M", "total")),
        "age_group": _f("code", categories=(*AGE_BANDS, "total")), "patients": _f("int"),
    },
    "practice_reference": {
        "practice_code": _f("code"), "practice_name": _f("text"), "open_date": _f("date"),
        "close_date": _f("date", optional=True), "commissioner": _f("code"), "prescribing_setting": _f("code"),
    },
    "practice_attributes": {
        "practice_code": _f("code"), "consortium": _f("text"), "imd_score": _f("money"), "single_handed": _f("text"),
    },
    "succession": {"old_code": _f("code"), "new_code": _f("code"), "effective_date": _f("date")},
    "provider_reference": {"provider_code": _f("code"), "provider_name": _f("text")},
    "prices": {
        "financial_year": _f("text"), "category": _f("code", categories=tuple(PODS)), "code": _f("code"),
        "price": _f("money"),
    },
}

_KEYS = ("source", "description", "header", "columns", "date_format", "pad", "codes")
_MAP_FIX = "fix the column map (docs/extracts.md, 'Writing your own column map')"


class ColumnMapError(ConfigError):
    """A column map is invalid; ``problems`` lists every problem (the message joins them)."""

    def __init__(self, where: str, problems: list[str]):
        self.problems = list(problems)
        super().__init__(f"invalid column map {where} ({_MAP_FIX}):\n  - " + "\n  - ".join(problems))


@dataclass(frozen=True)
class ColumnMap:
    """A validated column map.

    ``columns``: field -> column name (header) or 1-based position (no header); ``codes``: coded field ->
    category -> tuple of source codes, or :data:`ANY`.
    """

    name: str
    source: str
    description: str = ""
    header: bool = True
    columns: Mapping[str, str | int] = field(default_factory=dict)
    date_format: Mapping[str, str] = field(default_factory=dict)
    pad: Mapping[str, int] = field(default_factory=dict)
    codes: Mapping[str, Mapping[str, tuple[str, ...] | str]] = field(default_factory=dict)

    @property
    def fields(self) -> dict[str, Field]:
        """The canonical fields of this map's source kind (:data:`FIELDS`).

        Returns
        -------
        dict
            Field name -> :class:`Field`.
        """
        return FIELDS[self.source]

    def category_of(self, fieldname: str) -> dict[str, str]:
        """Source code -> category of one coded field (the :data:`ANY` category left out).

        Parameters
        ----------
        fieldname : str
            A coded field of the map.

        Returns
        -------
        dict

        References
        ----------
        Method: the map's code lists, each code in one category. Source: docs/extracts.md, "Column maps".
        """
        out: dict[str, str] = {}
        for category, codes in self.codes[fieldname].items():
            if codes != ANY:
                out.update({c: category for c in codes})
        return out

    def any_category(self, fieldname: str) -> str | None:
        """The category that takes every unlisted code of one field, or None (then every code must be listed).

        Parameters
        ----------
        fieldname : str

        Returns
        -------
        str or None

        References
        ----------
        Method: the ``any`` category of a map's code lists. Source: docs/extracts.md, "Column maps".
        """
        return next((c for c, codes in self.codes[fieldname].items() if codes == ANY), None)


def shipped_maps() -> list[str]:
    """The names of the shipped column maps (``ingest/maps/*.yaml``).

    Returns
    -------
    list of str

    References
    ----------
    Source: ``pbc_analysis/ingest/maps`` (docs/extracts.md).
    """
    return sorted(p.stem for p in MAPS_DIR.glob("*.yaml"))


def _map_path(name_or_path: str | Path) -> Path:
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or "/" in text or "\\" in text or text.endswith((".yaml", ".yml")):
        return Path(name_or_path)
    shipped = MAPS_DIR / f"{text}.yaml"
    if not shipped.is_file():
        hint = did_you_mean(text, shipped_maps())
        raise ColumnMapError(repr(text), [f"no shipped column map {text!r}{hint}; shipped maps: {', '.join(shipped_maps())}; "
                                          "or give the path of your own YAML map"])
    return shipped


def load_map(name_or_path: str | Path, kind: str | None = None) -> ColumnMap:
    """Read and check a column map: a shipped map's name (``hes_opa``) or the path of a YAML file.

    Parameters
    ----------
    name_or_path : str or Path
        A shipped map's name, or a path (absolute, or relative to the working directory).
    kind : str, optional
        The source kind the map must be for (its ``source:``).

    Returns
    -------
    ColumnMap

    Raises
    ------
    ColumnMapError
        Listing every problem of the map at once.

    References
    ----------
    Method: a map is plain data read by :func:`pbc_analysis.core.strict_yaml.load_yaml`; the fields are :data:`FIELDS`.
    Source: the HES, ECDS, e-RS and GP registration data dictionaries (docs/extracts.md).
    """
    path = _map_path(name_or_path)
    where = str(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ColumnMapError(where, [f"cannot read {path}: {exc.strerror or exc}"]) from None
    raw = load_yaml(text, where)
    problems = check_map(raw, kind)
    if problems:
        raise ColumnMapError(where, problems)
    return _build(raw, path.stem if path.parent == MAPS_DIR else str(name_or_path))


def _build(raw: dict[str, Any], name: str) -> ColumnMap:
    codes = {f: {c: (ANY if v == ANY else tuple(v)) for c, v in cats.items()} for f, cats in (raw.get("codes") or {}).items()}
    return ColumnMap(name=name, source=raw["source"], description=raw.get("description", ""), header=raw.get("header", True),
                     columns=dict(raw["columns"]), date_format=dict(raw.get("date_format") or {}),
                     pad=dict(raw.get("pad") or {}), codes=codes)


def check_map(raw: Any, kind: str | None = None) -> list[str]:
    """Every problem of a map's plain data (as read from YAML).

    Parameters
    ----------
    raw : object
        The YAML document.
    kind : str, optional
        The source kind the map must be for.

    Returns
    -------
    list of str
        One message per problem, naming the key and the fix.

    References
    ----------
    Method: the fields and categories of :data:`FIELDS`. Source: docs/extracts.md.
    """
    if not isinstance(raw, dict):
        return [f"a column map is a mapping with keys {', '.join(_KEYS)}; got {type(raw).__name__}"]
    problems = [f"unknown key {k!r}{did_you_mean(k, _KEYS)}; a map has {', '.join(_KEYS)}" for k in raw if k not in _KEYS]
    source = raw.get("source")
    if source not in FIELDS:
        problems.append(f"source: {source!r} is not a source kind; one of {', '.join(FIELDS)}")
        return problems
    if kind is not None and source != kind:
        problems.append(f"source: the map is for {source!r} but is used for {kind!r}; use a map for {kind!r}")
    if not isinstance(raw.get("description", ""), str):
        problems.append("description: must be text")
    header = raw.get("header", True)
    if type(header) is not bool:
        problems.append(f"header: must be true or false, got {header!r}")
        header = True
    fields = FIELDS[source]
    problems += _column_problems(raw.get("columns"), fields, header, source)
    problems += _format_problems(raw, fields)
    problems += _code_problems(raw.get("codes"), fields, raw.get("columns"))
    return problems


def _unknown_field(key: str, fields: Mapping[str, Field], section: str) -> str:
    return f"{section}.{key}: not a field of this source{did_you_mean(key, list(fields))}; fields: {', '.join(fields)}"


def _column_problems(columns: Any, fields: Mapping[str, Field], header: bool, source: str) -> list[str]:
    if not isinstance(columns, dict):
        return [f"columns: a mapping field -> column {'name' if header else 'position'} is required"]
    out = [_unknown_field(k, fields, "columns") for k in columns if k not in fields]
    out += [f"columns: required field {f!r} of {source} is missing; name the column that holds it"
            for f, spec in fields.items() if not spec.optional and f not in columns]
    for f, col in columns.items():
        if header and not (isinstance(col, str) and col.strip()):
            out.append(f"columns.{f}: must be a column name (text), got {col!r}")
        if not header and not (type(col) is int and col >= 1):
            out.append(f"columns.{f}: with header: false, columns are 1-based positions (whole numbers >= 1), got {col!r}")
    used: dict[Any, str] = {}
    for f, col in columns.items():
        if col in used:
            out.append(f"columns.{f}: column {col!r} is already used for {used[col]!r}; each field has its own column")
        used.setdefault(col, f)
    return out


def _format_problems(raw: dict[str, Any], fields: Mapping[str, Field]) -> list[str]:
    out = []
    for section, kinds, ok, want in (("date_format", ("date",), lambda v: isinstance(v, str) and "%" in v, "a strptime format like \"%Y-%m-%d\""),
                                     ("pad", ("code",), lambda v: type(v) is int and 1 <= v <= 20, "a width 1 to 20")):
        values = raw.get(section) or {}
        if not isinstance(values, dict):
            out.append(f"{section}: must be a mapping field -> {want}")
            continue
        for f, v in values.items():
            if f not in fields:
                out.append(_unknown_field(f, fields, section))
            elif fields[f].kind not in kinds:
                out.append(f"{section}.{f}: only {' or '.join(kinds)} fields take a {section}; {f} is {fields[f].kind}")
            elif not ok(v):
                out.append(f"{section}.{f}: must be {want}, got {v!r}")
    return out


def _code_problems(codes: Any, fields: Mapping[str, Field], columns: Any) -> list[str]:
    codes = codes or {}
    if not isinstance(codes, dict):
        return ["codes: must be a mapping field -> {category: [codes]}"]
    out = [_unknown_field(f, fields, "codes") for f in codes if f not in fields]
    out += [f"codes.{f}: {f} is not a coded field; only {', '.join(n for n, s in fields.items() if s.categories)} take code lists"
            for f in codes if f in fields and not fields[f].categories]
    mapped = columns if isinstance(columns, dict) else {}
    for f, spec in fields.items():
        if not spec.categories or f not in mapped:
            continue
        if f not in codes:
            out.append(f"codes.{f}: the code lists of {f} are missing; give {', '.join(spec.categories)}")
            continue
        out += _category_problems(f, codes[f], spec.categories)
    return out


def _category_problems(f: str, cats: Any, categories: tuple[str, ...]) -> list[str]:
    if not isinstance(cats, dict):
        return [f"codes.{f}: must be a mapping category -> list of codes (or \"{ANY}\"); categories: {', '.join(categories)}"]
    out = [f"codes.{f}.{c}: not a category of {f}{did_you_mean(str(c), list(categories))}; categories: {', '.join(categories)}"
           for c in cats if c not in categories]
    out += [f"codes.{f}: category {c!r} is missing; give its codes (an empty list [] if the extract has none)"
            for c in categories if c not in cats]
    seen: dict[str, str] = {}
    n_any = 0
    for c, values in cats.items():
        if values == ANY:
            n_any += 1
            continue
        if not (isinstance(values, list) and all(isinstance(v, str) for v in values)):
            out.append(f"codes.{f}.{c}: must be a list of codes written as quoted text (\"03\", not 03), or \"{ANY}\"; got {values!r}")
            continue
        for v in values:
            if v in seen and seen[v] != c:
                out.append(f"codes.{f}: code {v!r} is in two categories, {seen[v]!r} and {c!r}; list each code once")
            seen.setdefault(v, c)
    if n_any > 1:
        out.append(f"codes.{f}: only one category may be \"{ANY}\"")
    return out
