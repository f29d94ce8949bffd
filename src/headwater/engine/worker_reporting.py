"""The API reporter in other processes: what an ``ApiReporter`` becomes when pickled to a worker.

On executors whose tasks run in other processes (``DaskExecutor``,
``LocalDaskExecutor(scheduler="processes")``) the engine's state handlers travel
with each task. ``ApiReporter`` (``reporting.py``) pickles as a
:class:`WorkerReporter`; in each worker process it starts one reporting side
per run (a client of its own, a shipper for task-run states and the tasks' log
records, a thread that checks for cancellation), which closes itself once the
run is finished and is flushed when a pool's worker process exits.
"""

from __future__ import annotations

import atexit
import logging
from typing import TYPE_CHECKING, Any

from headwater.core.run_states import FINISHED, FlowRunState
from headwater.engine.handlers import StateHandler
from headwater.engine.heartbeat import RunMonitor
from headwater.engine.reporting import (
    CANCELLED,
    ReporterSpec,
    TaskReporting,
    main_reporters,
    registry_lock,
)
from headwater.engine.shipping import ApiLogHandler, Shipper, attach, detach, warn

if TYPE_CHECKING:
    from headwater.core.state import State
    from headwater.core.task import Task
    from headwater.engine.context import FlowRunContext

#: Each run's reporting side in this process (None: it could not start; tasks run unreported).
_sides: dict[str, _WorkerSide | None] = {}


class WorkerReporter(StateHandler):
    """An ``ApiReporter`` as it arrives in another process (a Dask worker).

    It reports through this process's :class:`_WorkerSide` for the run, or through
    the run's ``ApiReporter`` when that lives in this same process.
    """

    def __init__(self, spec: ReporterSpec) -> None:
        self.spec = spec

    def __repr__(self) -> str:
        return f"<WorkerReporter: flow run {self.spec.flow_run_id}>"

    def on_task_state(self, context: FlowRunContext, task: Task, state: State) -> None:
        target = _reporter_here(self.spec, context)
        if target is not None:
            target.on_task_state(context, task, state)


def _reporter_here(spec: ReporterSpec, context: FlowRunContext) -> TaskReporting | None:
    main = main_reporters.get(spec.flow_run_id)
    if main is not None:
        return main
    side = _sides.get(spec.flow_run_id)
    if side is not None or spec.connect is None:
        return side
    with registry_lock:
        if spec.flow_run_id not in _sides:
            try:
                _sides[spec.flow_run_id] = _WorkerSide(spec, context).start()
            except Exception as exc:  # the tasks still run; only their live reports are lost
                _sides[spec.flow_run_id] = None
                warn(f"can't report flow run {spec.flow_run_id} from this worker process: {exc}")
        return _sides[spec.flow_run_id]


class _WorkerSide(TaskReporting):
    """Reporting for one run in a worker process; closes itself when the run finishes."""

    def __init__(self, spec: ReporterSpec, context: FlowRunContext) -> None:
        assert spec.connect is not None
        self.spec = spec
        self.api = spec.connect()
        self._shipper = Shipper(self.api, spec.flow_run_id, spec.log_batch_interval, name="headwater-worker-shipper")
        self._monitor = RunMonitor(
            self.api, spec.flow_run_id, self._observe, spec.cancel_check_interval, None, name="headwater-worker-watch"
        )
        self._handler = ApiLogHandler(self._shipper, spec.flow_run_id, only_tasks=True)
        level = logging.getLevelName(context.log_level) if context.log_level else logging.INFO
        self._level = level if isinstance(level, int) else logging.INFO
        self._attached: Any = None
        self._closed = False

    def start(self) -> _WorkerSide:
        import multiprocessing.util

        self._attached = attach(self._handler, self._level)
        self._shipper.start()
        self._monitor.start()
        # a worker of a process pool ends without atexit; its finalizers do run
        multiprocessing.util.Finalize(None, self.close, exitpriority=10)
        atexit.register(self.close)
        return self

    def _observe(self, state: str, version: int, message: str | None) -> None:
        if state == FlowRunState.CANCELLING:
            self.cancel(CANCELLED)
        elif state in FINISHED or state == FlowRunState.SCHEDULED:
            self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._monitor.stop()
        if self._attached is not None:
            detach(self._handler, self._attached)
        self._shipper.close()
        self.api.close()
        with registry_lock:
            _sides.pop(self.spec.flow_run_id, None)
