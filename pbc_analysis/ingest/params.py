"""The ingest settings (:class:`IngestParams`): typed, defaults in one place, every problem listed at once.

Read from the ``ingest:`` section of ``pbc ingest --config F`` or the ``extracts:`` section of a run config by
:meth:`IngestParams.from_mapping`, which refuses unknown keys (with the likely intended name) and lists every
problem of every setting and source together.

References
----------
pydesrap_mms (``simulation/param.py``): every model parameter defined in one place, with its default;
:mod:`pbc_analysis.core.params` (the stages' ``Params``).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Literal, Mapping

from pbc_analysis.core import paths
from pbc_analysis.core.checks import ArgumentError
from pbc_analysis.core.names import did_you_mean
from pbc_analysis.core.params import AUTO, Setting, StageParams, setting

__all__ = ["DEFAULT_MAPS", "KINDS", "LOCAL_TABLES", "REQUIRED", "IngestParams"]

#: every source kind a config may give, with its shipped column map
DEFAULT_MAPS: dict[str, str] = {
    "outpatients": "hes_opa", "admitted": "hes_apc", "ae": "ecds", "referrals": "ers",
    "registrations": "gp_reg_quinary", "practice_reference": "epraccur", "practice_attributes": "practice_attributes",
    "succession": "succession", "provider_reference": "providers", "prices": "prices",
}
KINDS = tuple(DEFAULT_MAPS)
#: sources a run needs (besides at least one hospital source)
REQUIRED = ("registrations", "practice_reference", "practice_attributes", "provider_reference", "prices")
HOSPITAL_KINDS = ("outpatients", "admitted", "ae")
#: local tables copied as they are from ``tables``
LOCAL_TABLES = ("engagement", "budgets", "provider_changes", "reference_rates", "high_cost_patients")
_SOURCE_KEYS = ("path", "map", "table")
_MEMORY = re.compile(r"^[0-9]+(\.[0-9]+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$")
ReferralsFrom = Literal["auto", "extract", "derived"]
Engine = Literal["duckdb", "spark"]
#: a Spark master: auto, local, local[N], local[*], local[N,F], yarn, spark://..., k8s://...
_MASTER = re.compile(r"^(auto|local(\[(\*|[1-9][0-9]*)(,[1-9][0-9]*)?\])?|yarn|(spark|k8s|mesos)://[A-Za-z0-9_.:/\-]+)$")
_SPARK_KEY = re.compile(r"^spark\.[A-Za-z0-9_.\-]+$")
#: a catalogue table: name, db.name or catalog.db.name
_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}$")


@dataclasses.dataclass(frozen=True)
class IngestParams(StageParams):
    """Settings of ``pbc ingest``: the extracts, the window, the practices and the engine's resources."""

    STAGE = "ingest"
    sources: dict = dataclasses.field(default_factory=dict, metadata={"setting": Setting(
        "the extracts: {kind: {path: file, map: shipped map name or YAML path}} (paths from the project root; map "
        "defaults to the shipped map of the kind; on Spark a path may be a Parquet or Delta directory, or give "
        "{table: db.name} instead)")})
    tables: str | None = setting(None, "a directory of local tables copied as they are (engagement, budgets, "
                                       "provider_changes, reference_rates, high_cost_patients); null: none")
    out: str = setting("data/ingested", "the data directory the tables are written to (from the project root)")
    start_month: str = setting(AUTO, "first month of the window", kind="month",
                               derive="the month of the first registration snapshot")
    end_month: str = setting(AUTO, "last month of the window", kind="month",
                             derive="the month of the last registration snapshot")
    commissioners: list[str] | str = setting("all", "the commissioner codes whose practices are included (\"all\": every "
                                                    "commissioner in the practice reference)")
    pseudo_practices: list[str] = setting(["V81997", "V81998", "V81999"], "pseudo practice codes (no registered "
                                                                          "practice), excluded and counted")
    referrals: str = setting(AUTO, "where referrals come from: extract (the referrals source) or derived (GP-referred "
                                   "first outpatient attendances)", choices=ReferralsFrom,
                             derive="extract when a referrals source is given, else derived")
    price_base_year: str = setting(AUTO, "the financial year whose event mix weights the tariff index",
                                   kind="financial_year", derive="the first full financial year of the window")
    memory_limit: str = setting(AUTO, "DuckDB's memory limit, e.g. \"2GB\" (beyond it, work spills to temp_directory)",
                                derive="half the machine's physical memory")
    temp_directory: str = setting(AUTO, "where DuckDB spills", derive="a hidden directory .ingest_tmp under out")
    threads: int | str = setting(AUTO, "DuckDB's threads (Spark: the cores of a local master)", derive="one per core")
    engine: str = setting("duckdb", "the engine that does the row-level work: duckdb (embedded) or spark (a local or "
                                    "cluster SparkSession; needs the spark extra and Java)", choices=Engine)
    spark_master: str = setting(AUTO, "Spark's master: a URL such as local[4], yarn, spark://host:7077",
                                derive="the active SparkSession (Databricks, spark-submit), else local[<threads>]")
    spark_conf: dict = dataclasses.field(default_factory=dict, metadata={"setting": Setting(
        "Spark settings of a session the ingest starts: {\"spark.key\": \"value\"} (text values), e.g. "
        "spark.driver.memory: \"8g\"")})

    def problems(self) -> list[str]:
        """Every setting outside its type or allowed values, and every problem of ``sources``.

        Returns
        -------
        list of str
        """
        out = super().problems()
        out += _source_problems(self.sources, self.engine)
        out += _spark_problems(self.spark_master, self.spark_conf)
        if self.start_month != AUTO and self.end_month != AUTO and not out and self.start_month > self.end_month:
            out.append(f"start_month {self.start_month} is after end_month {self.end_month}")
        if not (self.commissioners == "all" or (isinstance(self.commissioners, list) and self.commissioners
                                                and all(isinstance(c, str) and c for c in self.commissioners))):
            out.append(f"commissioners must be \"all\" or a non-empty list of codes, got {self.commissioners!r}")
        if self.memory_limit != AUTO and not (isinstance(self.memory_limit, str) and _MEMORY.match(self.memory_limit)):
            out.append(f"memory_limit must be \"auto\" or a size like \"2GB\" or \"500MB\", got {self.memory_limit!r}")
        if self.threads != AUTO and not (type(self.threads) is int and self.threads >= 1):
            out.append(f"threads must be \"auto\" or a whole number >= 1, got {self.threads!r}")
        if self.referrals == "extract" and isinstance(self.sources, dict) and "referrals" not in self.sources:
            out.append("referrals is \"extract\" but sources gives no referrals extract; add sources.referrals or use "
                       "\"derived\"")
        if self.referrals == "derived" and isinstance(self.sources, dict) and self.sources and "outpatients" not in self.sources:
            out.append("referrals is \"derived\" (from outpatient first attendances) but sources gives no outpatients")
        return out

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], where: str = "ingest") -> IngestParams:
        """Build from a config section, refusing unknown keys and listing every problem at once.

        Parameters
        ----------
        mapping : mapping
            The ``ingest:`` (or ``extracts:``) section.
        where : str
            Names the section in messages.

        Returns
        -------
        IngestParams

        Raises
        ------
        ArgumentError
            Listing every problem (unknown keys, types, values, sources).

        References
        ----------
        Method: all problems at once, as :class:`pbc_analysis.core.params.StageParams`. Source: docs/extracts.md.
        """
        if not isinstance(mapping, Mapping):
            raise ArgumentError(f"{where}: must be a mapping of settings, got {type(mapping).__name__}")
        names = list(cls.settings())
        problems = [f"{where}: unknown setting {k!r}{did_you_mean(k, names)}; settings: {', '.join(names)}"
                    for k in mapping if k not in names]
        known = {k: v for k, v in mapping.items() if k in names}
        try:
            params = cls(**known)
        except ArgumentError as exc:
            problems += [f"{where}: {p}" for p in exc.problems]
            params = None
        if problems or params is None:
            raise ArgumentError(f"{where}: " + "; ".join(problems), problems)
        return params

    def source_paths(self) -> dict[str, Path]:
        """Each source's file (or directory), resolved from the project root; a table source has none.

        Returns
        -------
        dict
            Kind -> absolute path.
        """
        return {k: paths.resolve(v["path"]) for k, v in self.sources.items() if "path" in v}

    def source_tables(self) -> dict[str, str]:
        """The sources given as catalogue tables (``{table: db.name}``, Spark only).

        Returns
        -------
        dict
            Kind -> table name (checked: letters, digits, underscores, up to three dotted parts).
        """
        return {k: v["table"] for k, v in self.sources.items() if "table" in v}

    def engine_settings(self) -> Any:
        """The engine and its resources as :class:`pbc_analysis.ingest.engine.EngineSettings`.

        Returns
        -------
        EngineSettings
        """
        from pbc_analysis.ingest.engine import EngineSettings

        return EngineSettings(self.memory_limit, self.temp_directory, self.threads, engine=self.engine,
                              spark_master=self.spark_master, spark_conf=tuple(sorted(self.spark_conf.items())))

    def source_maps(self) -> dict[str, str]:
        """Each source's column map (shipped name, or a YAML path resolved from the project root).

        Returns
        -------
        dict
            Kind -> map name or absolute path.
        """
        out = {}
        for k, v in self.sources.items():
            m = v.get("map", DEFAULT_MAPS[k])
            out[k] = str(paths.resolve(m)) if ("/" in m or m.endswith((".yaml", ".yml"))) else m
        return out

    def referrals_from(self) -> str:
        """``extract`` or ``derived`` (``auto``: extract when a referrals source is given).

        Returns
        -------
        str
        """
        if self.referrals != AUTO:
            return self.referrals
        return "extract" if "referrals" in self.sources else "derived"


def _spark_problems(master: Any, conf: Any) -> list[str]:
    out = []
    if not (isinstance(master, str) and _MASTER.match(master)):
        out.append(f"spark_master must be \"auto\" or a Spark master URL (local[4], yarn, spark://host:7077), got {master!r}")
    if not isinstance(conf, dict):
        return out + [f"spark_conf must be a mapping {{\"spark.key\": \"value\"}}, got {type(conf).__name__}"]
    for k, v in conf.items():
        if not (isinstance(k, str) and _SPARK_KEY.match(k)):
            out.append(f"spark_conf: {k!r} is not a Spark setting name (spark.<letters, digits, dots>)")
        elif type(v) is not str:
            out.append(f"spark_conf.{k}: values are text (quote it: \"{v}\"), got {type(v).__name__} {v!r}")
    return out


def _source_problems(sources: Any, engine: str = "duckdb") -> list[str]:
    if not isinstance(sources, dict):
        return [f"sources must be a mapping {{kind: {{path: ..., map: ...}}}}, got {type(sources).__name__}"]
    out = [f"sources.{k}: unknown source kind{did_you_mean(k, KINDS)}; kinds: {', '.join(KINDS)}" for k in sources if k not in KINDS]
    for kind, spec in sources.items():
        if kind not in KINDS:
            continue
        if not isinstance(spec, dict):
            out.append(f"sources.{kind}: must be a mapping with path (and map), got {spec!r}")
            continue
        out += [f"sources.{kind}.{k}: unknown key{did_you_mean(k, _SOURCE_KEYS)}; a source has path (or table) and map"
                for k in spec if k not in _SOURCE_KEYS]
        if "table" in spec:
            out += _table_problems(kind, spec, engine)
        elif not (isinstance(spec.get("path"), str) and spec["path"].strip()):
            out.append(f"sources.{kind}.path: the extract's file is required (text)")
        if "map" in spec and not (isinstance(spec["map"], str) and spec["map"].strip()):
            out.append(f"sources.{kind}.map: a shipped map name (e.g. {DEFAULT_MAPS[kind]}) or a YAML path, got {spec['map']!r}")
    if not sources:
        return out + [f"sources: no extracts given; give at least {', '.join(REQUIRED)} and one of {', '.join(HOSPITAL_KINDS)}"]
    out += [f"sources.{k}: required (e.g. {{path: data/extracts/{k}.csv}})" for k in REQUIRED if k not in sources]
    if not any(k in sources for k in HOSPITAL_KINDS):
        out.append(f"sources: give at least one hospital extract ({', '.join(HOSPITAL_KINDS)})")
    return out


def _table_problems(kind: str, spec: dict, engine: str) -> list[str]:
    out = []
    if "path" in spec:
        out.append(f"sources.{kind}: give path or table, not both")
    if not (isinstance(spec["table"], str) and _TABLE.match(spec["table"])):
        out.append(f"sources.{kind}.table: a table name (name, db.name or catalog.db.name: letters, digits, underscores), "
                   f"got {spec['table']!r}")
    if engine != "spark":
        out.append(f"sources.{kind}.table: a table source needs engine: spark (DuckDB reads files: give path)")
    return out
