"""The pipeline runner: validate a config, execute the numbered notebooks with papermill, publish.

``pbc run --config configs/sample.yaml``

1. The config is read and validated against the notebooks' own ``parameters`` cells *before anything
   runs*: unknown or misspelt keys (with a suggestion), wrong types, values of a type the notebook's
   default does not have, and dates or codes not written as quoted strings are errors. (papermill by
   itself only warns about names a notebook does not declare.)
2. Each numbered notebook ``notebooks/NN_name.ipynb`` is executed in order with papermill, with the
   explicit ``python3`` kernel of this environment, absolute paths, and ``run_dir`` injected. A failing
   cell stops the run with an error naming the notebook, the cell and the exception; the partial
   output notebook is kept in the run directory.
3. Results sections are merged into ``results.json``; the report notebook (which only reads results)
   is executed and rendered to one self-contained HTML file (:mod:`pbc_analysis.report`).
4. ``manifest.json`` records the code version, parameters and their hash, input file hashes, package
   versions, the lockfile hash, timings, every output's hash and how the report was rendered;
   ``reports/latest`` points at the run.

``pbc verify reports/<run_id>`` re-runs a run from its manifest in a temporary directory and compares
its result tables, table by table.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import datetime as dt
import difflib
import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from . import paths, results

REPORT_NOTEBOOK = "09_evaluation_report"
RESERVED_PARAMETERS = {"run_dir"}
PATH_SUFFIXES = ("_dir", "_path", "_file")
TOP_LEVEL_KEYS = {"run", "parameters", "notebooks"}
RUN_KEYS = {"name": str, "notebooks": list, "renderer": str, "workers": int}
RENDERERS = ("auto", "quarto", "nbconvert")
KERNEL_NAME = "python3"

log = logging.getLogger("pbc.run")


class ConfigError(ValueError):
    """The run config is invalid; the message lists every problem found."""


class RunError(RuntimeError):
    """A notebook failed; the message names the notebook, the cell and the error."""


# --------------------------------------------------------------------------------------------------
# Notebooks and their parameters cells
# --------------------------------------------------------------------------------------------------

def list_notebooks(notebooks_dir: Path = paths.NOTEBOOKS_DIR) -> list[Path]:
    """Numbered notebooks (``NN_name.ipynb``) in execution order."""
    return sorted(p for p in notebooks_dir.glob("[0-9][0-9]_*.ipynb"))


def notebook_parameters(path: Path) -> dict[str, Any]:
    """Names and default values of a notebook's ``parameters`` cell.

    The cell must be tagged ``parameters`` and contain only ``name = <literal>`` assignments
    (comments allowed), so that every default is known without running code.
    """
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = [c for c in nb["cells"] if c.get("cell_type") == "code" and "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ConfigError(f"{path.name}: expected exactly one cell tagged 'parameters', found {len(cells)}")
    source = "".join(cells[0]["source"]) if isinstance(cells[0]["source"], list) else cells[0]["source"]
    out: dict[str, Any] = {}
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise ConfigError(f"{path.name}: the parameters cell may only hold `name = literal` lines (line {node.lineno})")
        try:
            out[node.targets[0].id] = ast.literal_eval(node.value)
        except ValueError as exc:
            raise ConfigError(f"{path.name}: parameter {node.targets[0].id!r} is not a literal (line {node.lineno})") from exc
    return out


# --------------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class RunConfig:
    """A validated run config: which notebooks run, with which parameters."""

    name: str
    renderer: str
    notebooks: tuple[str, ...]                 # analysis notebooks, in order (report excluded)
    parameters: dict[str, dict[str, Any]]      # notebook -> parameters given to papermill (no run_dir)
    source: str                                # the config text as given
    path: Path | None
    notebooks_dir: Path = paths.NOTEBOOKS_DIR
    workers: int = 0                           # analysis notebooks run at once (0 = one per CPU core)

    @property
    def parameters_hash(self) -> str:
        return hashlib.sha256(results.dumps(self.parameters).encode()).hexdigest()


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _check_value(where: str, key: str, value: Any, default: Any, problems: list[str]) -> None:
    if isinstance(value, (dt.date, dt.datetime)):
        problems.append(f"{where}: {key} = {value!r} was read as a date; write dates and months as quoted strings, e.g. {key}: \"{value:%Y-%m}\"")
        return
    if default is None or value is None:
        return
    if isinstance(default, bool) or isinstance(value, bool):
        if type(default) is not type(value):
            problems.append(f"{where}: {key} must be {_type_name(default)} (default {default!r}), got {_type_name(value)} {value!r}")
        return
    if isinstance(default, float) and isinstance(value, int):
        return  # an int where a float is expected is exact
    if isinstance(default, str) and not isinstance(value, str):
        problems.append(
            f"{where}: {key} must be a quoted string (default {default!r}), got {_type_name(value)} {value!r}; "
            f"codes and dates are passed as strings: write {key}: \"{value}\""
        )
        return
    if type(default) is not type(value):
        problems.append(f"{where}: {key} must be {_type_name(default)} (default {default!r}), got {_type_name(value)} {value!r}")


def _suggest(key: str, options: set[str]) -> str:
    close = difflib.get_close_matches(key, sorted(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _resolve_paths(params: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(paths.resolve(v)) if k.endswith(PATH_SUFFIXES) and isinstance(v, str) and v else v) for k, v in params.items()}


def parse_config(text: str, path: Path | None = None, notebooks_dir: Path = paths.NOTEBOOKS_DIR) -> RunConfig:
    """Validate a YAML config against the notebooks' parameters cells; raise ConfigError listing all problems."""
    where = str(path) if path else "config"
    try:
        raw = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: the config must be a mapping with keys {sorted(TOP_LEVEL_KEYS)}")
    problems: list[str] = []
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            problems.append(f"{where}: unknown top-level key {key!r}{_suggest(str(key), TOP_LEVEL_KEYS)}; allowed: {sorted(TOP_LEVEL_KEYS)}")
    run = raw.get("run") or {}
    glob = raw.get("parameters") or {}
    per_nb = raw.get("notebooks") or {}
    for section, value in (("run", run), ("parameters", glob), ("notebooks", per_nb)):
        if not isinstance(value, dict):
            problems.append(f"{where}: '{section}' must be a mapping, got {_type_name(value)}")
    if problems:
        raise ConfigError("\n".join(problems))

    for key, value in run.items():
        if key not in RUN_KEYS:
            problems.append(f"{where}: unknown key run.{key}{_suggest(key, set(RUN_KEYS))}; allowed: {sorted(RUN_KEYS)}")
        elif not isinstance(value, RUN_KEYS[key]):
            problems.append(f"{where}: run.{key} must be {RUN_KEYS[key].__name__}, got {_type_name(value)} {value!r}")
    name = run.get("name", path.stem if path else "run")
    renderer = run.get("renderer", "auto")
    workers = run.get("workers", 0)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        problems.append(f"{where}: run.workers must be a whole number >= 0 (0 = one notebook per CPU core), got {workers!r}")
    if renderer not in RENDERERS:
        problems.append(f"{where}: run.renderer must be one of {list(RENDERERS)}, got {renderer!r}")

    available = {p.stem: p for p in list_notebooks(notebooks_dir)}
    analysis = [n for n in available if n != REPORT_NOTEBOOK]
    selected = run.get("notebooks", analysis)
    if isinstance(selected, list):
        for n in selected:
            if n not in analysis:
                problems.append(f"{where}: run.notebooks names {n!r}, which is not a notebook in {notebooks_dir}{_suggest(str(n), set(analysis))}")
        selected = [n for n in analysis if n in selected]  # always in numbered order
    declared = {n: notebook_parameters(p) for n, p in available.items()}

    for key in glob:
        if key in RESERVED_PARAMETERS:
            problems.append(f"{where}: parameters.{key} is set by the runner and cannot be configured")
        elif not any(key in declared[n] for n in list(selected) + [REPORT_NOTEBOOK] if n in declared):
            every = set().union(*declared.values()) if declared else set()
            problems.append(f"{where}: parameters.{key} is not a parameter of any notebook that runs{_suggest(key, every - RESERVED_PARAMETERS)}")
    for nb_name, values in per_nb.items():
        if nb_name not in available:
            problems.append(f"{where}: notebooks.{nb_name} is not a notebook{_suggest(str(nb_name), set(available))}")
            continue
        if not isinstance(values, dict):
            problems.append(f"{where}: notebooks.{nb_name} must be a mapping of parameters")
            continue
        for key in values:
            if key in RESERVED_PARAMETERS:
                problems.append(f"{where}: notebooks.{nb_name}.{key} is set by the runner and cannot be configured")
            elif key not in declared[nb_name]:
                problems.append(
                    f"{where}: notebooks.{nb_name}.{key} is not a parameter of {nb_name}"
                    f"{_suggest(key, set(declared[nb_name]) - RESERVED_PARAMETERS)}; its parameters are {sorted(set(declared[nb_name]) - RESERVED_PARAMETERS)}"
                )

    effective: dict[str, dict[str, Any]] = {}
    for nb_name in list(selected) + ([REPORT_NOTEBOOK] if REPORT_NOTEBOOK in available else []):
        params: dict[str, Any] = {}
        for key, value in glob.items():
            if key in declared[nb_name]:
                _check_value(f"{where} parameters", key, value, declared[nb_name][key], problems)
                params[key] = value
        for key, value in (per_nb.get(nb_name) or {}).items():
            if key in declared[nb_name] and key not in RESERVED_PARAMETERS:
                _check_value(f"{where} notebooks.{nb_name}", key, value, declared[nb_name][key], problems)
                params[key] = value
        effective[nb_name] = _resolve_paths(params)
    if problems:
        raise ConfigError("invalid run config:\n  - " + "\n  - ".join(dict.fromkeys(problems)))
    return RunConfig(name=str(name), renderer=renderer, notebooks=tuple(selected), parameters=effective, source=text,
                     path=path, notebooks_dir=notebooks_dir, workers=int(workers))


def load_config(path: str | Path) -> RunConfig:
    p = paths.resolve(path, base=Path.cwd()) if not Path(path).is_absolute() and Path(path).exists() else paths.resolve(path)
    if not p.exists():
        raise ConfigError(f"config file not found: {path} (looked at {p})")
    return parse_config(p.read_text(encoding="utf-8"), path=p)


# --------------------------------------------------------------------------------------------------
# Provenance
# --------------------------------------------------------------------------------------------------

def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def git_info(root: Path = paths.PROJECT_ROOT) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain")
    return {"commit": commit, "dirty": bool(status) if status is not None else None, "changed_files": status.splitlines() if status else []}


def package_versions() -> dict[str, str]:
    return {d.metadata["Name"].lower(): d.version for d in sorted(metadata.distributions(), key=lambda d: d.metadata["Name"].lower())}


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(paths.PROJECT_ROOT))
    except ValueError:
        return str(path.resolve())


def input_files(cfg: RunConfig) -> dict[str, Path]:
    """Every input table file the run reads (from each notebook's ``data_dir``)."""
    from .data import find_table_files

    files: dict[str, Path] = {}
    for params in cfg.parameters.values():
        if params.get("data_dir"):
            for table, path in find_table_files(params["data_dir"]).items():
                files[_rel(path)] = path
    return dict(sorted(files.items()))


# --------------------------------------------------------------------------------------------------
# Execution
# --------------------------------------------------------------------------------------------------

def _check_kernel() -> None:
    """Make sure papermill's ``python3`` kernel is this environment's interpreter."""
    os.environ["JUPYTER_PREFER_ENV_PATH"] = "1"
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    except NoSuchKernel as exc:
        raise RunError(f"no '{KERNEL_NAME}' Jupyter kernel; run `make venv` (or `python -m ipykernel install --sys-prefix --name python3`)") from exc
    exe = spec.argv[0]
    if exe not in ("python", "python3", "{python}") and Path(exe).resolve() != Path(sys.executable).resolve():
        raise RunError(
            f"the '{KERNEL_NAME}' kernel runs {exe}, not this environment's {sys.executable}; "
            f"register this environment's kernel with `{sys.executable} -m ipykernel install --sys-prefix --name python3`"
        )


@contextlib.contextmanager
def _stderr_to(path: Path):
    """Send this process's (and so the kernel's) file descriptor 2 to ``path`` while notebooks run.

    The kernel writes its own start-up and shut-down chatter to stderr; it belongs in run.log, not on
    the user's console between the progress lines.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as fh:
        os.dup2(fh.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _execute(nb_path: Path, out_path: Path, params: dict[str, Any], cwd: Path) -> float:
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    start = time.perf_counter()
    try:
        with _stderr_to(cwd / "run.log"):
            pm.execute_notebook(
                str(nb_path), str(out_path), parameters=params, kernel_name=KERNEL_NAME, cwd=str(cwd),
                progress_bar=False, log_output=False, report_mode=False,
            )
    except PapermillExecutionError as exc:
        raise RunError(
            f"notebook {nb_path.name} failed in cell {exc.cell_index} (execution count {exc.exec_count}): "
            f"{exc.ename}: {exc.evalue}\n  partial output kept at {out_path}"
        ) from exc
    return time.perf_counter() - start


def _workers(requested: int, n_notebooks: int) -> int:
    """Analysis notebooks run side by side: ``requested`` (0 = one per CPU core), at most one per notebook."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n = requested or cores
    return max(1, min(n, n_notebooks))


def _execute_job(nb_path: Path, out_path: Path, params: dict[str, Any], cwd: Path) -> tuple[float, str | None]:
    """:func:`_execute` in a worker process: the seconds taken, or the error message."""
    try:
        return _execute(nb_path, out_path, params, cwd), None
    except RunError as exc:
        return 0.0, str(exc)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises RunError
        return 0.0, f"notebook {nb_path.name} could not run: {type(exc).__name__}: {exc}"


def _run_notebooks(cfg: RunConfig, names: list[str], run_dir: Path, workers: int, total: int, echo: Any,
                   first: int = 1) -> dict[str, float]:
    """Execute ``names`` (independent notebooks) with up to ``workers`` kernels at once; return their seconds.

    Each analysis notebook reads the validated inputs itself and writes only its own tables, figures and
    results section, so they can run side by side; the report notebook runs alone, after them. Progress
    lines are printed as notebooks finish; the first failure stops the run after the running ones end.
    """
    jobs = {name: (cfg.notebooks_dir / f"{name}.ipynb", run_dir / "notebooks" / f"{name}.ipynb",
                   dict(cfg.parameters[name], run_dir=str(run_dir.resolve())), run_dir) for name in names}
    for name, job in jobs.items():
        log.info("executing %s with %s", name, job[2])
    timings: dict[str, float] = {}
    errors: list[str] = []
    if workers <= 1 or len(names) <= 1:
        for i, name in enumerate(names, first):
            echo(f"[{i}/{total}] {name} ...", end="", flush=True)
            seconds, err = _execute_job(*jobs[name])
            if err:
                echo(" FAILED")
                log.error("%s", err)
                raise RunError(err)
            timings[name] = round(seconds, 2)
            echo(f" {seconds:.1f} s")
            log.info("%s finished in %.1f s", name, seconds)
        return timings
    import concurrent.futures as cf
    import multiprocessing as mp

    echo(f"running {len(names)} notebooks, {workers} at a time: {', '.join(names)}")
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("fork")) as pool:
        futures = {pool.submit(_execute_job, *jobs[name]): name for name in names}
        for i, fut in enumerate(cf.as_completed(futures), first):
            name = futures[fut]
            seconds, err = fut.result()
            if err:
                echo(f"[{i}/{total}] {name} FAILED")
                log.error("%s", err)
                errors.append(err)
                for other in futures:
                    other.cancel()
                continue
            timings[name] = round(seconds, 2)
            echo(f"[{i}/{total}] {name} {seconds:.1f} s")
            log.info("%s finished in %.1f s", name, seconds)
    if errors:
        raise RunError("\n".join(errors))
    return {name: timings[name] for name in names if name in timings}


def _new_run_id(cfg: RunConfig) -> str:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{cfg.name}-{cfg.parameters_hash[:8]}"


def _point_latest(reports_dir: Path, run_dir: Path) -> None:
    latest = reports_dir / "latest"
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    latest.symlink_to(run_dir.name, target_is_directory=True)


def run_pipeline(cfg: RunConfig, reports_dir: Path = paths.REPORTS_DIR, render: bool = True, run_id: str | None = None,
                 echo: Any = print) -> Path:
    """Execute the config's notebooks, publish the report and write the manifest; return the run directory."""
    _check_kernel()
    reports_dir = Path(reports_dir)
    run_dir = reports_dir / (run_id or _new_run_id(cfg))
    if run_dir.exists():
        raise RunError(f"run directory {run_dir} already exists")
    (run_dir / "notebooks").mkdir(parents=True)
    handler = logging.FileHandler(run_dir / "run.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    started = dt.datetime.now(dt.timezone.utc)
    try:
        lock = paths.PROJECT_ROOT / "requirements.lock"
        provenance = {
            "run_id": run_dir.name,
            "config_name": cfg.name,
            "command": f"pbc run --config {_rel(cfg.path) if cfg.path else '<config>'}",
            "verify_command": f"pbc verify {_rel(run_dir)}",
            "config": {"path": _rel(cfg.path) if cfg.path else None, "text": cfg.source,
                       "sha256": hashlib.sha256(cfg.source.encode()).hexdigest()},
            "parameters": cfg.parameters,
            "parameters_hash": cfg.parameters_hash,
            "code": {**git_info(), "package_version": _package_version()},
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "lockfile_sha256": sha256_file(lock) if lock.exists() else None,
            "packages": package_versions(),
            "inputs": {rel: sha256_file(p) for rel, p in input_files(cfg).items()},
        }
        (run_dir / "provenance.json").write_text(results.dumps(provenance), encoding="utf-8")
        log.info("run %s: %d notebooks, parameters hash %s", run_dir.name, len(cfg.notebooks), cfg.parameters_hash)
        order = list(cfg.notebooks) + ([REPORT_NOTEBOOK] if render and REPORT_NOTEBOOK in cfg.parameters else [])
        workers = _workers(cfg.workers, len(cfg.notebooks))
        timings = _run_notebooks(cfg, list(cfg.notebooks), run_dir, workers, len(order), echo)
        if REPORT_NOTEBOOK in order:
            results.merge_sections(run_dir)
            timings |= _run_notebooks(cfg, [REPORT_NOTEBOOK], run_dir, 1, len(order), echo, first=len(order))
        merged = results.merge_sections(run_dir)
        render_info = None
        if render and REPORT_NOTEBOOK in cfg.parameters:
            from .report import render_html

            info = render_html(run_dir / "notebooks" / f"{REPORT_NOTEBOOK}.ipynb", run_dir / "report.html",
                               renderer=cfg.renderer, title=f"PBC evaluation: {cfg.name}")
            render_info = {"renderer": info.renderer, "version": info.renderer_version, "command": info.command,
                           "seconds": round(info.seconds, 2), "output": "report.html"}
            echo(f"report: {run_dir / 'report.html'} ({info.renderer})")
            log.info("report rendered by %s in %.1f s", info.renderer, info.seconds)
        manifest = {
            **provenance,
            "started_utc": started.isoformat(timespec="seconds"),
            "finished_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "notebooks": {"order": order, "seconds": timings},
            "report": render_info,
            "outputs": output_hashes(run_dir),
            "headline": merged,
        }
        (run_dir / "manifest.json").write_text(results.dumps(manifest), encoding="utf-8")
        if run_id is None:
            _point_latest(reports_dir, run_dir)
        from .report import write_index

        write_index(reports_dir)
        return run_dir
    finally:
        log.removeHandler(handler)
        handler.close()


def _package_version() -> str:
    from . import __version__

    return __version__


def output_hashes(run_dir: Path) -> dict[str, str]:
    """sha256 of every result table and results.json (the things an auditor compares)."""
    files = sorted((run_dir / results.TABLES).glob("*.csv")) + [run_dir / "results.json"]
    return {str(p.relative_to(run_dir)): sha256_file(p) for p in files if p.exists()}


# --------------------------------------------------------------------------------------------------
# Verify
# --------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class VerifyReport:
    identical: bool
    lines: list[str]

    def __str__(self) -> str:
        return "\n".join(self.lines)


def _describe_difference(a: Path, b: Path) -> str:
    import numpy as np
    import pandas as pd

    if a.suffix != ".csv":
        return "content differs"
    x, y = pd.read_csv(a, dtype=str, keep_default_na=False), pd.read_csv(b, dtype=str, keep_default_na=False)
    if list(x.columns) != list(y.columns):
        return f"columns differ: {list(x.columns)} vs {list(y.columns)}"
    if len(x) != len(y):
        return f"{len(x)} rows published vs {len(y)} rows re-run"
    parts = []
    for col in x.columns:
        diff = x[col] != y[col]
        if not diff.any():
            continue
        xn, yn = pd.to_numeric(x[col], errors="coerce"), pd.to_numeric(y[col], errors="coerce")
        if xn.notna().all() and yn.notna().all():
            d = np.abs(xn - yn)
            rel = (d / np.maximum(np.abs(xn), 1e-300)).max()
            parts.append(f"{col}: {int(diff.sum())} rows, max abs diff {d.max():.3g}, max rel diff {rel:.3g}")
        else:
            parts.append(f"{col}: {int(diff.sum())} rows differ (e.g. row {int(diff.idxmax()) + 1}: {x[col][diff].iloc[0]!r} vs {y[col][diff].iloc[0]!r})")
    return "; ".join(parts) or "bytes differ (formatting)"


def verify(run_dir: str | Path, echo: Any = print) -> VerifyReport:
    """Re-run a published run from its manifest in a temporary directory and compare its tables."""
    run_dir = paths.resolve(run_dir, base=Path.cwd()) if Path(run_dir).exists() else paths.resolve(run_dir)
    manifest_path = run_dir / "manifest.json"
    if not manifest_path.exists():
        raise FileNotFoundError(f"{run_dir} has no manifest.json: is it a run directory made by `pbc run`?")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    lines: list[str] = []
    code_now = git_info()
    if manifest["code"].get("commit") != code_now.get("commit"):
        lines.append(f"note: the run was made at commit {manifest['code'].get('commit')}, this checkout is at {code_now.get('commit')}")
    if manifest["code"].get("dirty"):
        lines.append("note: the run was made from a checkout with uncommitted changes")
    cfg_path = paths.resolve(manifest["config"]["path"]) if manifest["config"].get("path") else None
    cfg = parse_config(manifest["config"]["text"], path=cfg_path)
    if cfg.parameters != manifest["parameters"]:
        lines.append("note: the config resolves to different parameters on this machine (paths differ?)")
    changed_inputs = []
    current = {rel: sha256_file(p) for rel, p in input_files(cfg).items()}
    for rel, digest in manifest["inputs"].items():
        if current.get(rel) != digest:
            changed_inputs.append(f"input {rel}: {'missing' if rel not in current else 'sha256 differs'}")
    with tempfile.TemporaryDirectory(prefix="pbc-verify-") as tmp:
        echo(f"re-running {manifest['run_id']} in {tmp}")
        new_dir = run_pipeline(cfg, reports_dir=Path(tmp), render=False, run_id="rerun", echo=echo)
        new = output_hashes(new_dir)
        old = manifest["outputs"]
        differing = []
        for name in sorted(set(old) | set(new)):
            if name not in new:
                differing.append(f"{name}: missing from the re-run")
            elif name not in old:
                differing.append(f"{name}: new in the re-run")
            elif old[name] != new[name]:
                published = run_dir / name
                detail = _describe_difference(published, new_dir / name) if published.exists() else "published file missing; hash differs"
                differing.append(f"{name}: differs ({detail})")
            else:
                lines.append(f"{name}: identical")
    for item in changed_inputs:
        lines.append(item)
    if differing:
        lines.extend(differing)
        lines.append(f"NOT IDENTICAL: {len(differing)} of {len(set(old) | set(new))} outputs differ")
    else:
        lines.append(f"identical: all {len(old)} outputs match the manifest")
    return VerifyReport(identical=not differing and not changed_inputs, lines=lines)
