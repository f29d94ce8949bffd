"""State handlers: how the engine tells the outside world about state changes.

A handler is told each new state of the flow run and of each task run. Local
runs use it for progress output; running under the API, a handler reports
states to the server. Handlers run where the task runs (a Dask worker, for a
DaskExecutor), so they must be picklable there.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from headwater.core.state import State
    from headwater.core.task import Task
    from headwater.engine.context import FlowRunContext

logger = logging.getLogger("headwater.engine")


class CancelRun(Exception):
    """Raised by a handler's ``on_task_state`` for a ``Running`` state: the task does not start.

    The task ends ``Cancelled`` with this message (so do the tasks after it whose
    handlers raise it too), and the flow run ends ``Cancelled``. The API reporter
    raises it once the run was cancelled. Raised for any other state, it is
    logged like any handler error.
    """


class StateHandler:
    """Base class; override the hooks you need. Both are no-ops here."""

    def on_flow_state(self, context: FlowRunContext, state: State) -> None:
        """The flow run moved to ``state``."""

    def on_task_state(self, context: FlowRunContext, task: Task, state: State) -> None:
        """Task ``task`` moved to ``state`` (Running, Retrying, or a final state)."""


def notify_task(context: FlowRunContext, task: Task, state: State) -> None:
    """Tell every handler of ``context`` about a task state; a handler's error is logged."""
    for handler in context.state_handlers:
        try:
            handler.on_task_state(context, task, state)
        except CancelRun:
            if state.is_running():
                raise
            logger.warning("state handler %r raised CancelRun on a %s state; ignored", handler, state.name)
        except Exception:
            logger.exception("state handler %r failed on task %s", handler, task.slug)


def notify_flow(context: FlowRunContext, state: State) -> None:
    """Tell every handler of ``context`` about a flow state; a handler's error is logged."""
    for handler in context.state_handlers:
        try:
            handler.on_flow_state(context, state)
        except Exception:
            logger.exception("state handler %r failed on flow run %s", handler, context.flow_run_name)
