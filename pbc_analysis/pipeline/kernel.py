"""The notebooks' kernel: shut down without an interrupt when no cell is running.

jupyter_client's ``shutdown_kernel`` always sends the kernel SIGINT before its shutdown request. When a
cell is running that is what stops it; when none is, ipykernel ignores SIGINT while idle, but if the
signal lands while the kernel is still finishing its last message (sending the reply, saving history,
which takes longer on a loaded machine) its handler catches a ``KeyboardInterrupt`` and logs
``ERROR | KeyboardInterrupt caught in kernel.`` to stderr, that is into ``run.log`` of a run that
succeeded. :func:`notebook_client_options` gives papermill a kernel manager that interrupts at shutdown
only while a cell is executing (a cell still running at a timeout, or a run stopped by Ctrl-C), tracked
by nbclient's cell hooks; every other interrupt (nbclient's ``interrupt_on_timeout``) is unchanged.

References
----------
jupyter_client ``KernelManager._async_shutdown_kernel`` (interrupt, then shutdown request, then kill);
ipykernel ``Kernel.dispatch_shell`` (``pre_handler_hook`` installs the SIGINT handler while a message is
handled); nbclient ``NotebookClient.on_cell_execute`` / ``on_cell_executed`` hooks.
"""

from __future__ import annotations

from typing import Any


class CellState:
    """Whether one of the notebook's cells is executing now (set by nbclient's hooks)."""

    def __init__(self) -> None:
        self.running = False

    def started(self, **_: Any) -> None:
        """Called by nbclient's ``on_cell_execute`` hook: a cell's execute request is about to be sent."""
        self.running = True

    def finished(self, **_: Any) -> None:
        """Called by nbclient's ``on_cell_executed`` hook: the cell's execute reply has arrived."""
        self.running = False


def kernel_manager_class(state: CellState) -> type:
    """An ``AsyncKernelManager`` whose shutdown sends no interrupt unless ``state`` says a cell is running.

    Parameters
    ----------
    state : CellState
        Updated by the notebook client's cell hooks (see :func:`notebook_client_options`).

    Returns
    -------
    type
        A subclass of ``jupyter_client.AsyncKernelManager`` bound to ``state``.

    References
    ----------
    jupyter_client ``KernelManager.shutdown_kernel``, which calls ``interrupt_kernel`` first.
    """
    from jupyter_client import AsyncKernelManager

    class QuietShutdownKernelManager(AsyncKernelManager):
        """Interrupt at shutdown only a kernel that is executing a cell."""

        async def _async_interrupt_kernel(self) -> None:
            if self.shutting_down and not state.running:
                return  # idle: nothing to stop, and a SIGINT racing the last reply is logged as an error
            await super()._async_interrupt_kernel()

    return QuietShutdownKernelManager


def notebook_client_options() -> dict[str, Any]:
    """Keyword arguments for ``papermill.execute_notebook`` (passed on to nbclient's ``NotebookClient``).

    Returns
    -------
    dict
        ``kernel_manager_class`` from :func:`kernel_manager_class` and the two cell hooks that keep its
        state, one fresh :class:`CellState` per notebook.

    References
    ----------
    papermill ``NBClientEngine.execute_managed_notebook`` (extra keywords reach ``NotebookClient``).
    """
    state = CellState()
    return {"kernel_manager_class": kernel_manager_class(state),
            "on_cell_execute": state.started, "on_cell_executed": state.finished}
