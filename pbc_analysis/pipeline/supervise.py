"""Worker processes that stop when they are told to, and never outlive the runner.

``pbc run`` executes each notebook in a forked worker process (which starts the notebook's kernel).
The guarantees, each tested in ``tests/test_security_runs.py``:

* **Ctrl-C or SIGTERM** to the runner: every running worker is sent SIGTERM (then SIGKILL after
  :data:`STOP_GRACE_SECONDS`), queued notebooks never start, and :class:`Interrupted` is raised, so
  the run is marked incomplete and the command exits non-zero within a few seconds.
* **SIGKILL of the runner** (no handler can run): every worker has asked the Linux kernel to send it
  SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``), and ipykernel's kernels poll for the
  death of their parent (``JPY_PARENT_PID``) and exit. Nothing is left running.
* Workers ignore SIGINT: a Ctrl-C typed at the terminal reaches the whole foreground process group,
  and it is the runner that decides what stops, once.

References
----------
Linux ``prctl(2)``, ``PR_SET_PDEATHSIG``; ipykernel ``ParentPollerUnix``; Python ``multiprocessing``
"fork" start method and ``multiprocessing.connection.wait``.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import multiprocessing.connection
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

STOP_GRACE_SECONDS = 5.0
PR_SET_PDEATHSIG = 1


class Interrupted(BaseException):
    """The runner received SIGINT or SIGTERM; ``signum`` says which.

    A ``BaseException`` (like ``KeyboardInterrupt``), so that no ``except Exception`` on the way (a
    renderer's, a reader's) can turn a stop into an ordinary error.
    """

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        """The shell convention: 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM)."""
        return 128 + self.signum


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into :class:`Interrupted` in the main thread while the block runs.

    Outside the main thread (where handlers cannot be installed) the block runs unchanged.

    Returns
    -------
    A context manager; the previous handlers are restored on exit.
    """
    if sys.platform == "win32" or _not_main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        raise Interrupted(signum)

    saved = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in saved.items():
            signal.signal(s, h)


def _not_main_thread() -> bool:
    import threading

    return threading.current_thread() is not threading.main_thread()


def _die_with_parent(parent_pid: int) -> None:
    """In a worker: SIGTERM when the parent dies (Linux), and exit now if it already has."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:
        os._exit(1)


MAX_MESSAGE = 20_000   # characters of a worker's error message sent to the parent (the rest is cut)


def _child(target: Callable[..., Any], args: Sequence[Any], conn: Any, parent_pid: int) -> None:
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def on_term(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)  # unwinds papermill, which shuts its kernel down

    signal.signal(signal.SIGTERM, on_term)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        seconds, err = target(*args)
    except BaseException as exc:  # noqa: BLE001 - sent to the parent as text
        seconds, err = 0.0, f"{type(exc).__name__}: {exc}"
    if err is not None and len(err) > MAX_MESSAGE:
        err = err[:MAX_MESSAGE] + f"\n... ({len(err) - MAX_MESSAGE:,} more characters cut)"
    with contextlib.suppress(BrokenPipeError, OSError):
        conn.send((seconds, err))
    conn.close()


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while a worker is started and registered (so none escapes ``_stop``)."""
    if sys.platform == "win32" or _not_main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _stop(procs: Sequence[mp.Process]) -> None:
    """SIGTERM every live process, wait up to the grace period, then SIGKILL what is left."""
    for p in procs:
        if p.is_alive():
            with contextlib.suppress(ProcessLookupError):
                p.terminate()
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join(1.0)


def run_jobs(jobs: Mapping[str, Sequence[Any]], target: Callable[..., tuple[float, str | None]], workers: int,
             on_done: Callable[[str, float, str | None], bool]) -> None:
    """Run ``target(*jobs[name])`` for every job in forked worker processes, ``workers`` at a time.

    Parameters
    ----------
    jobs : mapping of str to sequence
        Job name to the arguments of ``target``, started in this order.
    target : callable
        Returns ``(seconds, error message or None)``; runs in the worker. An exception becomes the
        error message; messages longer than :data:`MAX_MESSAGE` are cut.
    workers : int
        How many run at once (at least 1).
    on_done : callable
        Called in the parent as each job ends, with its name, seconds and error; return False to start
        no further jobs (the running ones are let finish).

    Returns
    -------
    None

    Raises
    ------
    Interrupted
        On SIGINT/SIGTERM when called inside :func:`stop_on_signals`, after every worker was stopped.
    """
    ctx = mp.get_context("fork")
    queue = list(jobs)
    running: dict[Any, tuple[str, Any, Any]] = {}     # result pipe -> (name, process, pipe)
    accepting = True
    try:
        while running or (queue and accepting):
            while queue and accepting and len(running) < max(1, workers):
                name = queue.pop(0)
                with _signals_held():
                    recv, send = ctx.Pipe(duplex=False)
                    proc = ctx.Process(target=_child, args=(target, jobs[name], send, os.getpid()), name=f"pbc-{name}")
                    proc.start()
                    send.close()
                    running[recv] = (name, proc, recv)
            # A worker's result is read as soon as it is sent (a long message must never wait for the
            # worker to exit, which it cannot do while the pipe is full); a worker that dies without
            # sending closes its end, which also wakes the wait.
            for ready in multiprocessing.connection.wait(list(running)):
                name, proc, recv = running.pop(ready)
                try:
                    seconds, err = recv.recv()
                except (EOFError, OSError):
                    seconds, err = 0.0, None
                recv.close()
                proc.join()
                if err is None and proc.exitcode != 0:
                    err = f"the worker running {name} ended with exit code {proc.exitcode} before reporting"
                accepting = on_done(name, seconds, err) and accepting
    finally:
        _stop([proc for _, proc, _ in running.values()])
