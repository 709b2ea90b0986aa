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
   is executed and rendered to one self-contained HTML file (:mod:`pbc_analysis.publish.report`).
4. ``manifest.json`` records the code version, parameters and their hash, input file hashes, package
   versions, the lockfile hash, timings, every output's hash and how the report was rendered;
   ``reports/latest`` points at the run.

``pbc verify`` is in :mod:`pbc_analysis.pipeline.verify`; config parsing in :mod:`pbc_analysis.pipeline.config`, provenance in
:mod:`pbc_analysis.pipeline.manifest`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import numbers
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from pbc_analysis.core import names, paths
from pbc_analysis.pipeline.config import (  # noqa: F401
    REPORT_NOTEBOOK,
    ConfigError,
    RunConfig,
    list_notebooks,
    load_config,
    notebook_parameters,
    parse_config,
)
from pbc_analysis.pipeline.manifest import (  # noqa: F401
    _package_version,
    _rel,
    git_info,
    input_files,
    output_hashes,
    package_versions,
    sha256_file,
    write_manifest,
)
from pbc_analysis.publish import results

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


def _parameterised(nb_path: Path, params: dict[str, Any]):
    """The notebook with an ``injected-parameters`` cell written by :func:`config.parameters_source`.

    papermill's own translation of parameters is not used: the only code that reaches the kernel from a
    config is ``name = repr(value)`` of values checked to be plain literals, round-tripped through
    ``ast.literal_eval``.
    """
    import nbformat

    from pbc_analysis.pipeline.config import parameters_source

    nb = nbformat.read(str(nb_path), as_version=4)
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise RunError(f"notebook {nb_path.name}: expected exactly one cell tagged 'parameters', found {len(tagged)}")
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    cell = nbformat.v4.new_code_cell(source="# Parameters injected by pbc run\n" + parameters_source(params))
    cell.metadata["tags"] = ["injected-parameters"]
    cell["id"] = "injected-parameters"  # fixed, not nbformat's random id: the executed notebooks stay byte-stable,
    # and a cell with an id keeps nbformat's validator quiet (no MissingIDFieldWarning in run.log)
    nb.cells.insert(tagged[0] + 1, cell)
    nb.metadata.setdefault("papermill", {})["parameters"] = params
    return nb


def _execute(nb_path: Path, out_path: Path, params: dict[str, Any], cwd: Path) -> float:
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    from pbc_analysis.pipeline.kernel import notebook_client_options

    start = time.perf_counter()
    nb = _parameterised(nb_path, params)
    try:
        with _stderr_to(cwd / "run.log"):
            pm.execute_notebook(
                nb, str(out_path), parameters=None, kernel_name=KERNEL_NAME, cwd=str(cwd),
                progress_bar=False, log_output=False, report_mode=False, **notebook_client_options(),
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

    Each notebook runs in a worker process (:mod:`pbc_analysis.pipeline.supervise`): Ctrl-C or SIGTERM stops every
    running and queued notebook, and no worker outlives the runner. Each analysis notebook writes only its
    own tables, figures and results section, so they can run side by side; the report notebook runs alone,
    after them. Progress lines are printed as notebooks finish; the first failure starts no further
    notebook and stops the run after the running ones end.
    """
    from pbc_analysis.pipeline.supervise import run_jobs

    jobs = {name: (cfg.notebooks_dir / f"{name}.ipynb", run_dir / "notebooks" / f"{name}.ipynb",
                   dict(cfg.parameters[name], run_dir=str(run_dir.resolve())), run_dir) for name in names}
    for name, job in jobs.items():
        log.info("executing %s with %s", name, job[2])
    timings: dict[str, float] = {}
    errors: list[str] = []
    counter = iter(range(first, first + len(names)))
    sequential = workers <= 1 or len(names) <= 1
    if sequential:
        echo(f"[{first}/{total}] {names[0]} ...", end="", flush=True)
    else:
        echo(f"running {len(names)} notebooks, {workers} at a time: {', '.join(names)}")

    def done(name: str, seconds: float, err: str | None) -> bool:
        i = next(counter)
        if err:
            echo(" FAILED" if sequential else f"[{i}/{total}] {name} FAILED")
            log.error("%s", err)
            errors.append(err)
            return False
        timings[name] = round(seconds, 2)
        echo(f" {seconds:.1f} s" if sequential else f"[{i}/{total}] {name} {seconds:.1f} s")
        log.info("%s finished in %.1f s", name, seconds)
        nxt = names.index(name) + 1
        if sequential and nxt < len(names):
            echo(f"[{i + 1}/{total}] {names[nxt]} ...", end="", flush=True)
        return True

    run_jobs(jobs, _execute_job, 1 if sequential else workers, done)
    if errors:
        raise RunError("\n".join(errors))
    return {name: timings[name] for name in names if name in timings}


INCOMPLETE = names.INCOMPLETE
LATEST = names.LATEST


def _new_run_id(cfg: RunConfig) -> str:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{cfg.name}-{cfg.parameters_hash[:8]}"


def _make_run_dir(reports_dir: Path, cfg: RunConfig, run_id: str | None) -> Path:
    """Create a new, unique run directory directly under ``reports_dir`` and return it.

    The name is checked to be a safe name (``config.check_name``) and the resolved path to sit directly
    in the resolved reports directory. Without ``run_id``, two runs started in the same second get
    ``<stamp>-<name>-<hash>`` and ``...-2``: ``mkdir`` is atomic, so they never share a directory.
    """
    from pbc_analysis.pipeline.config import check_name

    reports = Path(reports_dir).resolve()
    if any(ch in str(reports) for ch in "{}"):
        raise RunError(f"the reports directory {reports} contains '{{' or '}}'; choose a path without braces")
    try:
        names = [check_name(run_id, "run id")] if run_id else [check_name(cfg.name, "run.name")]
    except ConfigError as exc:
        raise RunError(str(exc)) from exc
    if not run_id:
        base = _new_run_id(cfg)
        names = [base] + [f"{base}-{k}" for k in range(2, 100)]
    reports.mkdir(parents=True, exist_ok=True)
    for name in names:
        d = reports / name
        if d.resolve().parent != reports:
            raise RunError(f"run directory {d} would not be inside {reports}")
        try:
            d.mkdir()
        except FileExistsError:
            if run_id:
                raise RunError(f"run directory {d} already exists") from None
            continue
        return d
    raise RunError(f"could not create a new run directory in {reports} (100 runs named {names[0]} already exist)")


def _is_complete(run_dir: Path) -> bool:
    return (run_dir / "manifest.json").is_file() and not (run_dir / INCOMPLETE).exists()


def _point_latest(reports_dir: Path, run_dir: Path) -> None:
    """Point ``reports/latest`` at ``run_dir`` atomically (a new link renamed over the old one)."""
    latest = Path(reports_dir) / LATEST
    if latest.exists() and not latest.is_symlink():
        log.warning("%s is not a symbolic link; left as it is", latest)
        return
    tmp = Path(reports_dir) / f".{LATEST}.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(run_dir.name, target_is_directory=True)
    os.replace(tmp, latest)


def _finished(run_dir: Path) -> str:
    """When a complete run finished (its manifest's ``finished_utc``; "" if unreadable)."""
    try:
        value = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8")).get("finished_utc")
    except (OSError, ValueError, AttributeError):
        return ""
    return value if isinstance(value, str) else ""


def _intact(run_dir: Path) -> bool:
    """A complete run with a safe name whose files all match its manifest (:func:`manifest.check_published`)."""
    from pbc_analysis.pipeline.manifest import check_published

    return names.is_safe_name(run_dir.name) and _is_complete(run_dir) and not check_published(run_dir)


def repair_latest(reports_dir: Path) -> Path | None:
    """Make sure ``reports/latest`` points at an intact complete run, or does not exist.

    A ``latest`` that dangles (its run was deleted), leaves the reports directory, or points at an
    incomplete, unsafely named or altered run (:func:`manifest.check_published`) is moved to the intact
    run that finished last (the manifest's ``finished_utc``, then the name), or removed when there is
    none. A ``latest`` that is not a symbolic link is left alone.

    Parameters
    ----------
    reports_dir : Path
        The reports directory.

    Returns
    -------
    Path or None
        The run ``latest`` now points at, or None.
    """
    reports = Path(reports_dir)
    latest = reports / LATEST
    if not latest.is_symlink():
        return latest.resolve() if latest.is_dir() else None
    target = latest.resolve()
    if target.parent == reports.resolve() and _intact(target):
        return target
    complete = [d for d in reports.iterdir() if d.is_dir() and not d.is_symlink() and _is_complete(d)]
    for run_dir in sorted(complete, key=lambda d: (_finished(d), d.name), reverse=True):
        if _intact(run_dir):
            _point_latest(reports, run_dir)
            return run_dir
    latest.unlink()
    return None


def _mark_incomplete(run_dir: Path, reason: str) -> None:
    (run_dir / INCOMPLETE).write_text(f"{reason}\n", encoding="utf-8")


def _disclose_rows(summary: dict[str, Any]) -> dict[str, Any]:
    """The validation summary with its row counts under the disclosure rule (1-7 as "*", others to 5)."""
    from pbc_analysis.methods.disclosure import disclose_counts

    def rounded(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**it, "rows": disclose_counts([int(it["rows"])]).iloc[0]
                 if isinstance(it.get("rows"), numbers.Integral) and not isinstance(it.get("rows"), bool) else it.get("rows")}
                for it in items]

    return {**summary, "tables": rounded(summary.get("tables", [])),
            "accepted_exceptions": rounded(summary.get("accepted_exceptions", []))}


def validate_inputs(cfg: RunConfig, echo: Any = print) -> dict[str, Any]:
    """Validate every input the run reads (:func:`validate_and_derive` without the derived settings).

    Parameters
    ----------
    cfg : RunConfig
    echo : callable

    Returns
    -------
    dict
        The validation summary.
    """
    return validate_and_derive(cfg, echo)[0]


def validate_and_derive(cfg: RunConfig, echo: Any = print) -> tuple[dict[str, Any], RunConfig, Any]:
    """Validate every input the run reads, once, before any notebook starts; return the summary.

    Each distinct (``data_dir``, ``start_month``, ``end_month``) of the selected notebooks is loaded and
    checked against the data dictionary and the plausibility rules (:mod:`pbc_analysis.data.plausibility`,
    with the config's ``validation`` settings). Every problem is reported at once, as a :class:`RunError`.

    Parameters
    ----------
    cfg : RunConfig
        The validated config.
    echo : callable
        Progress printer.

    Then every setting that follows from the data (``"auto"``) is derived and every cross-setting rule checked
    (:func:`pbc_analysis.pipeline.derive.resolve_settings`), still before any notebook starts.

    Returns
    -------
    summary : dict
        The summary of :func:`plausibility.validate_run_inputs` for the data used by most notebooks, with
        ``notebooks`` (which notebooks read it) and, when notebooks read different data, ``other_data``
        (the same for each other data directory); it becomes the ``validation`` section of results.json,
        with every row count under the disclosure rule.
    resolved : RunConfig
        ``cfg`` with the derived values in place of ``"auto"`` (what the notebooks are given).
    resolution : pbc_analysis.pipeline.derive.Resolution
        The derived settings with their rules, and the facts of the data they came from.
    """
    from pbc_analysis.core.checks import ArgumentError
    from pbc_analysis.data import DataValidationError
    from pbc_analysis.data.plausibility import load_run_inputs
    from pbc_analysis.data.window import WindowError
    from pbc_analysis.pipeline.derive import resolve_settings, resolve_windows

    try:
        windowed, window_derived = resolve_windows(cfg.parameters)
    except (WindowError, DataValidationError) as exc:
        raise RunError(f"the data window (start_month / end_month auto) cannot be derived; no notebook was run.\n{exc}") from None
    uses: dict[tuple[str, Any, Any], list[str]] = {}
    for nb_name, params in windowed.items():
        if params.get("data_dir"):
            key = (params["data_dir"], params.get("start_month"), params.get("end_month"))
            uses.setdefault(key, []).append(nb_name)
    summaries, inputs, validated = [], {}, {}
    for (data_dir, start, end), nbs in sorted(uses.items(), key=lambda kv: -len(kv[1])):
        echo(f"validating {_rel(Path(data_dir))} ({start} to {end}) ...", end="", flush=True)
        t0 = time.perf_counter()
        try:
            summary, inputs[data_dir] = load_run_inputs(data_dir, start, end, cfg.validation)
            validated[data_dir] = inputs[data_dir]
        except DataValidationError as exc:
            echo(" FAILED")
            raise RunError(f"the inputs did not pass validation; no notebook was run.\n{exc}") from None
        echo(f" {time.perf_counter() - t0:.1f} s")
        summaries.append({**_disclose_rows(summary), "notebooks": nbs})
    t0 = time.perf_counter()
    try:
        resolution = resolve_settings(windowed, inputs, where=str(cfg.path or "config"), window_derived=window_derived)
    except ArgumentError as exc:
        raise RunError(str(exc)) from None
    if resolution.derived:
        echo(f"settings derived from the data ({time.perf_counter() - t0:.1f} s):")
        for line in resolution.lines():
            echo(line)
    resolved = dataclasses.replace(cfg, parameters=resolution.parameters)
    resolution = dataclasses.replace(resolution, validated=validated)
    if not summaries:
        return {}, resolved, resolution
    summary = {**summaries[0], "other_data": summaries[1:]} if len(summaries) > 1 else summaries[0]
    return summary, resolved, resolution


def _settings_section(resolution: Any) -> dict[str, Any]:
    """The ``settings`` section of results.json: each derived setting (value as text) with its rule, and the
    dates of the data it was derived from (no counts: nothing here needs disclosure)."""
    keep = ("start_month", "end_month", "first_engagement", "cohorts", "full_years", "activity_end", "referrals_end",
            "completeness_note")
    return {"derived": [{"notebook": d["notebook"], "setting": d["setting"],
                         "value": d["value"] if isinstance(d["value"], str) else ", ".join(map(str, d["value"])),
                         "rule": d["rule"]} for d in resolution.derived],
            "data": {k: v for f in list(resolution.facts.values())[:1] for k, v in f.items() if k in keep}}


def _provenance(cfg: RunConfig, run_dir: Path) -> dict[str, Any]:
    """What the run is made of: config, parameters, code, environment and input file hashes."""
    lock = paths.PROJECT_ROOT / "requirements.lock"
    return {
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


def _write_reconciliation(run_dir: Path, ingested: Any) -> None:
    """The ingest's reconciliation as a result table (``tables/ingest_reconciliation.csv``) and results section."""
    from pbc_analysis.pipeline.extracts import RECONCILIATION_TABLE

    rec = ingested.reconciliation
    results.write_table(rec, RECONCILIATION_TABLE, run_dir, sort_by=[c for c in ("source", "outcome", "reason") if c in rec.columns])
    section = ingested.section
    results.write_section(run_dir, "ingest", {"window": section["window"], "referrals_from": section["settings"].get("referrals"),
                                             "sources": sorted(section["reconciliation_rows"]),
                                             "extracts": [e.get("source") for e in section["extracts"]]})


def _render(cfg: RunConfig, run_dir: Path, echo: Any) -> dict[str, Any]:
    """Render the executed report notebook to ``report.html``; return how it was rendered."""
    from pbc_analysis.publish.report import ReportError, render_html

    try:
        info = render_html(run_dir / "notebooks" / f"{REPORT_NOTEBOOK}.ipynb", run_dir / "report.html",
                           renderer=cfg.renderer, title=f"PBC evaluation: {cfg.name}")
    except ReportError as exc:
        raise RunError(f"the report could not be rendered (the analysis notebooks ran; their output is kept in "
                       f"{run_dir}): {exc}") from None
    echo(f"report: {run_dir / 'report.html'} ({info.renderer})")
    log.info("report rendered by %s in %.1f s", info.renderer, info.seconds)
    return {"renderer": info.renderer, "version": info.renderer_version, "command": info.command,
            "seconds": round(info.seconds, 2), "output": "report.html"}


def _practice_pages(run_dir: Path, echo: Any) -> None:
    """``practices/<code>.html`` and their index, from the run's tables (:mod:`pbc_analysis.publish.practice_pages`)."""
    from pbc_analysis.publish.practice_pages import PracticePageError, write_practice_pages

    try:
        pages = write_practice_pages(run_dir)
    except PracticePageError as exc:
        raise RunError(f"the practice pages could not be written (the report was rendered): {exc}") from None
    echo(f"practice pages: {len(pages) - 1} in {run_dir / 'practices'}")
    log.info("%d practice pages written", len(pages) - 1)


def _build_bundle(run_dir: Path, echo: Any) -> None:
    """The ``published/`` bundle: what may be sent with the report (:mod:`pbc_analysis.publish.bundle`)."""
    from pbc_analysis.publish.bundle import PublishError, build_bundle

    try:
        bundle = build_bundle(run_dir)
    except PublishError as exc:
        raise RunError(f"the report was made but nothing may be published: {exc}") from None
    echo(f"publishable bundle (disclosure rules applied): {bundle}")
    log.info("published bundle written to %s", bundle)


def _finish_index(reports_dir: Path) -> None:
    """``latest`` never dangles and the index lists every run, whatever happened to this one."""
    from pbc_analysis.pipeline.runs_index import write_index

    try:
        repair_latest(reports_dir)
        write_index(reports_dir)
    except Exception as exc:  # noqa: BLE001 - the run's own outcome matters more than the index
        log.warning("could not update %s/index.html: %s", reports_dir, exc)


def run_pipeline(cfg: RunConfig, reports_dir: Path = paths.REPORTS_DIR, render: bool = True, run_id: str | None = None,
                 echo: Any = print) -> Path:
    """Validate the inputs, execute the config's notebooks, publish the report and write the manifest.

    Parameters
    ----------
    cfg : RunConfig
        A config from :func:`config.parse_config`.
    reports_dir : Path
        Where the run directory is made (resolved; the run directory is always directly in it).
    render : bool
        Run the report notebook and render ``report.html`` and the ``published/`` bundle.
    run_id : str, optional
        The run directory's name (a safe name); default ``<stamp>-<name>-<hash>``, made unique.
    echo : callable
        Progress printer.

    Returns
    -------
    Path
        The run directory. It holds ``manifest.json`` only when the run completed; a failed or
        interrupted run keeps its partial output and an ``INCOMPLETE`` file saying why, and
        ``reports/latest`` keeps pointing at the last complete run.

    Raises
    ------
    RunError
        Inputs invalid (before any notebook ran), a notebook failed, the report could not be rendered
        or nothing may be published. With ``run.partition: commissioner`` the run is a national run
        (:func:`pbc_analysis.pipeline.national.run_national`), and ``national.CommissionersFailed`` (a
        RunError) says which commissioners failed when the others completed.
    supervise.Interrupted
        SIGINT or SIGTERM: every notebook was stopped.

    References
    ----------
    papermill (https://papermill.readthedocs.io) executes the notebooks; the manifest follows the
    spirit of RO-Crate / W3C PROV (inputs, code, environment and outputs with their hashes).
    """
    from pbc_analysis.pipeline.supervise import stop_on_signals

    _check_kernel()
    with stop_on_signals():
        if cfg.partition == "commissioner":   # a national run: one run per commissioner (pipeline.national)
            from pbc_analysis.pipeline.national import raise_if_failed, run_national

            return raise_if_failed(run_national(cfg, reports_dir, echo, run_id=run_id))
        if cfg.extracts is not None:
            return _run_from_extracts(cfg, reports_dir, render, run_id, echo)
        validation, resolved, resolution = validate_and_derive(cfg, echo=echo)
        run_dir = _make_run_dir(reports_dir, cfg, run_id)
        _run_in(run_dir, cfg, render, validation, run_id is None, echo, resolved, resolution)
    return run_dir


def _run_from_extracts(cfg: RunConfig, reports_dir: Path, render: bool, run_id: str | None, echo: Any) -> Path:
    """A config with ``extracts:``: ingest into the new run directory's ``data/`` first, then run as usual.

    The run directory is made first (the ingested tables are outputs of the run) and stays marked INCOMPLETE,
    with the reason, when the extracts fail validation or the ingested tables fail the data dictionary.
    """
    from pbc_analysis.data import DataValidationError
    from pbc_analysis.pipeline.extracts import ingest_for_run, with_data_dir

    run_dir = _make_run_dir(reports_dir, cfg, run_id)
    _mark_incomplete(run_dir, f"ingesting the extracts (pid {os.getpid()})")
    try:
        ingested = ingest_for_run(cfg.extracts, run_dir, echo=echo)
        data_cfg = with_data_dir(cfg, ingested.data_dir)
        validation, resolved, resolution = validate_and_derive(data_cfg, echo=echo)
    except DataValidationError as exc:
        _mark_incomplete(run_dir, "failed: the extracts did not pass validation; no notebook was run")
        _finish_index(run_dir.parent)
        raise RunError(f"the extracts did not pass validation; no notebook was run (run directory {run_dir}).\n{exc}") from None
    except BaseException as exc:
        _mark_incomplete(run_dir, f"failed before any notebook: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        _finish_index(run_dir.parent)
        raise
    _run_in(run_dir, cfg, render, validation, run_id is None, echo, resolved, resolution, ingested=ingested)
    return run_dir


def _run_in(run_dir: Path, cfg: RunConfig, render: bool, validation: dict[str, Any], point_latest: bool,
            echo: Any, resolved: RunConfig | None = None, resolution: Any = None, ingested: Any = None) -> None:
    """Run into a new run directory: marked INCOMPLETE until its manifest is written, whatever happens."""
    from pbc_analysis.pipeline.supervise import Interrupted

    _mark_incomplete(run_dir, f"running (pid {os.getpid()})")
    (run_dir / "notebooks").mkdir()
    handler = logging.FileHandler(run_dir / "run.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        _complete_run(cfg, run_dir, render, validation, dt.datetime.now(dt.UTC), echo,
                      resolved or cfg, resolution, ingested)
    except Interrupted as exc:
        _mark_incomplete(run_dir, f"{exc}; stopped every notebook; partial output kept in {run_dir}")
        log.error("%s", exc)
        raise
    except BaseException as exc:
        _mark_incomplete(run_dir, f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        raise
    else:
        if point_latest:
            _point_latest(run_dir.parent, run_dir)
    finally:
        _finish_index(run_dir.parent)
        log.removeHandler(handler)
        handler.close()


def _write_stores(run_dir: Path, validated: dict[str, Any]) -> list[dict[str, Any]]:
    """The validated tables of each data directory, for the notebooks (:mod:`pbc_analysis.data.store`): validated
    once here, read by every notebook; returns their folders and hashes for the manifest."""
    from pbc_analysis.data.store import write_store

    t0 = time.perf_counter()
    out = [write_store(inputs, run_dir, data_dir) for data_dir, inputs in sorted(validated.items())]
    log.info("validated tables kept for the notebooks in %.1f s", time.perf_counter() - t0)
    return out


def _complete_run(cfg: RunConfig, run_dir: Path, render: bool, validation: dict[str, Any], started: dt.datetime,
                  echo: Any, resolved: RunConfig, resolution: Any, ingested: Any = None) -> None:
    """The body of :func:`run_pipeline`: notebooks (given the derived settings), report, bundle, manifest.

    ``cfg`` is the config as written (recorded in the manifest); ``resolved`` the same with every ``"auto"``
    replaced by its derived value (what the notebooks are given); ``resolution`` the derived settings.
    """
    provenance = _provenance(cfg, run_dir)
    if resolution is not None:
        provenance["derived"] = {"settings": resolution.derived, "facts": resolution.facts}
    if ingested is not None:
        provenance["ingest"] = ingested.section
        _write_reconciliation(run_dir, ingested)
    (run_dir / "provenance.json").write_text(results.dumps(provenance), encoding="utf-8")
    if validation:
        results.write_section(run_dir, "validation", validation)
    if resolution is not None:
        results.write_section(run_dir, "settings", _settings_section(resolution))
    if resolution is not None and resolution.validated:
        provenance["validated"] = _write_stores(run_dir, resolution.validated)
    log.info("run %s: %d notebooks, parameters hash %s", run_dir.name, len(cfg.notebooks), cfg.parameters_hash)
    order = list(cfg.notebooks) + ([REPORT_NOTEBOOK] if render and REPORT_NOTEBOOK in cfg.parameters else [])
    workers = _workers(cfg.workers, len(cfg.notebooks))
    timings = _run_notebooks(resolved, list(cfg.notebooks), run_dir, workers, len(order), echo) if cfg.notebooks else {}
    if REPORT_NOTEBOOK in order:
        results.merge_sections(run_dir)
        timings |= _run_notebooks(resolved, [REPORT_NOTEBOOK], run_dir, 1, len(order), echo, first=len(order))
    merged = results.merge_sections(run_dir)
    render_info = _render(cfg, run_dir, echo) if REPORT_NOTEBOOK in order else None
    if render_info is not None:
        _practice_pages(run_dir, echo)
        _build_bundle(run_dir, echo)
    manifest = {
        **provenance,
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "notebooks": {"order": order, "seconds": timings},
        "report": render_info,
        "outputs": output_hashes(run_dir),
        "headline": merged,
    }
    write_manifest(run_dir, manifest)
    (run_dir / INCOMPLETE).unlink()  # only now: a run is complete when its whole manifest is in place


def __getattr__(name: str) -> Any:  # ``from pbc_analysis.pipeline.run import verify`` keeps working
    if name in ("verify", "VerifyReport"):
        from pbc_analysis.pipeline import verify as _verify

        return getattr(_verify, name)
    raise AttributeError(name)
