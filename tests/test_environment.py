"""environment.yml (conda) and requirements.lock (pip) declare the same top-level packages as pyproject."""

from __future__ import annotations

import re
import tomllib

import yaml

from pbc_analysis.core import paths

ROOT = paths.PROJECT_ROOT
CONDA_ONLY = {"python", "pip", "quarto"}   # quarto: a binary, called by subprocess; pip: conda's installer
# conda-forge's names for PyPI packages where they differ (ibis-duckdb: ibis-framework with the DuckDB backend)
CONDA_NAMES = {"python-duckdb": "duckdb", "ibis-duckdb": "ibis-framework"}
# optional extras with their own lock (not in environment.yml nor requirements.lock): spark -> requirements-spark.lock
OWN_LOCK = {"spark": "requirements-spark.lock"}


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def pyproject_packages() -> set[str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = meta["dependencies"] + [r for name, extra in meta.get("optional-dependencies", {}).items() if name not in OWN_LOCK
                                   for r in extra]
    return {_name(r) for r in reqs}


def conda_packages() -> set[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    names = {_name(d) for d in env["dependencies"] if isinstance(d, str)} - CONDA_ONLY
    return {CONDA_NAMES.get(n, n) for n in names}


def lock_pins(lock: str = "requirements.lock") -> dict[str, str]:
    pins = {}
    for line in (ROOT / lock).read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^ ;\\]+)", line)
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def test_conda_and_pyproject_declare_the_same_top_level_packages():
    assert conda_packages() == pyproject_packages()


def test_environment_yml_installs_the_project_and_quarto():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "conda-forge" in env["channels"]
    assert "python=3.11" in env["dependencies"] and "quarto" in env["dependencies"]
    pip_section = [d for d in env["dependencies"] if isinstance(d, dict)][0]["pip"]
    assert "-e ." in pip_section


def test_lock_pins_every_top_level_package_with_hashes():
    pins = lock_pins()
    missing = pyproject_packages() - set(pins)
    assert not missing, f"requirements.lock lacks {sorted(missing)}: run `make lock`"
    text = (ROOT / "requirements.lock").read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text)
    unhashed = [b.split()[0] for b in blocks if "==" in b.split("\n")[0] and "--hash=sha256:" not in b]
    assert not unhashed, f"packages without hashes: {unhashed}"


def test_lock_satisfies_the_declared_lower_bounds():
    from packaging.requirements import Requirement

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = lock_pins()
    for req in meta["dependencies"] + meta["optional-dependencies"]["test"]:
        r = Requirement(req)
        assert r.specifier.contains(pins[r.name.lower()], prereleases=True), f"{r} not satisfied by {pins[r.name.lower()]}"


def test_installed_versions_match_the_lock():
    from importlib import metadata

    pins = lock_pins()
    for name in sorted(pyproject_packages()):
        assert metadata.version(name) == pins[name], f"{name}: installed {metadata.version(name)}, lock {pins[name]}; run `make venv`"


def test_spark_lock_adds_the_extra_and_changes_no_pin():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base, spark = lock_pins(), lock_pins(OWN_LOCK["spark"])
    assert {k: v for k, v in spark.items() if k in base} == base   # every pin of requirements.lock, unchanged
    assert {_name(r) for r in meta["optional-dependencies"]["spark"]} <= set(spark)
    assert spark["pyspark"] == "4.0.5"
    text = (ROOT / OWN_LOCK["spark"]).read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text)
    assert not [b.split()[0] for b in blocks if "==" in b.split("\n")[0] and "--hash=sha256:" not in b]
