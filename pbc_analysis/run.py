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

``pbc verify`` is in :mod:`pbc_analysis.verify`; config parsing in :mod:`pbc_analysis.config`, provenance in
:mod:`pbc_analysis.manifest`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from . import paths, results
from .config import (REPORT_NOTEBOOK, ConfigError, RunConfig, list_notebooks, load_config, notebook_parameters,  # noqa: F401
                     parse_config)
from .manifest import _package_version, _rel, git_info, input_files, output_hashes, package_versions, sha256_file  # noqa: F401

KERNEL_NAME = "python3"

log = logging.getLogger("pbc.run")


class RunError(RuntimeError):
    """A notebook failed; the message names the notebook, the cell and the error."""


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




def __getattr__(name: str) -> Any:  # ``from pbc_analysis.run import verify`` keeps working
    if name in ("verify", "VerifyReport"):
        from . import verify as _verify

        return getattr(_verify, name)
    raise AttributeError(name)
