"""The notebooks' kernel manager: no interrupt at shutdown unless a cell is running (pipeline/kernel.py)."""

from __future__ import annotations

import asyncio

import nbformat
import papermill as pm
from jupyter_client import AsyncKernelManager

from pbc_analysis.pipeline.kernel import CellState, kernel_manager_class, notebook_client_options


def _interrupts(monkeypatch, *, shutting_down: bool, running: bool) -> int:
    """How many times the manager passes an interrupt on to jupyter_client in the given state."""
    calls = []

    async def counted(self):
        calls.append(1)

    monkeypatch.setattr(AsyncKernelManager, "_async_interrupt_kernel", counted)
    state = CellState()
    state.running = running
    km = kernel_manager_class(state)(kernel_name="python3")
    km.shutting_down = shutting_down
    asyncio.run(km._async_interrupt_kernel())
    return len(calls)


def test_shutdown_of_an_idle_kernel_sends_no_interrupt(monkeypatch):
    assert _interrupts(monkeypatch, shutting_down=True, running=False) == 0


def test_shutdown_while_a_cell_runs_interrupts_it(monkeypatch):
    assert _interrupts(monkeypatch, shutting_down=True, running=True) == 1


def test_interrupts_outside_shutdown_are_unchanged(monkeypatch):
    """nbclient's interrupt_on_timeout and a user's interrupt still reach the kernel, idle or not."""
    assert _interrupts(monkeypatch, shutting_down=False, running=False) == 1
    assert _interrupts(monkeypatch, shutting_down=False, running=True) == 1


def test_cell_hooks_track_execution_through_a_real_notebook(tmp_path, monkeypatch):
    """Executed by papermill with the options: every cell is seen starting and finishing, and the kernel
    is shut down while idle, so the manager sends it no interrupt."""
    monkeypatch.setenv("JUPYTER_PREFER_ENV_PATH", "1")
    opts = notebook_client_options()
    seen: list[tuple[str, bool]] = []
    start, finish = opts["on_cell_execute"], opts["on_cell_executed"]
    state = start.__self__

    def on_start(**kw):
        start(**kw)
        seen.append(("start", state.running))

    def on_finish(**kw):
        finish(**kw)
        seen.append(("finish", state.running))

    sent = []
    original = AsyncKernelManager._async_interrupt_kernel

    async def spy(self):
        sent.append(1)
        await original(self)

    monkeypatch.setattr(AsyncKernelManager, "_async_interrupt_kernel", spy)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("x + 1")])
    out = pm.execute_notebook(nb, str(tmp_path / "out.ipynb"), kernel_name="python3", progress_bar=False,
                              **dict(opts, on_cell_execute=on_start, on_cell_executed=on_finish))
    assert out.cells[1].outputs[0]["data"]["text/plain"] == "2"
    assert seen == [("start", True), ("finish", False)] * 2
    assert sent == []  # the idle kernel at shutdown was not interrupted
