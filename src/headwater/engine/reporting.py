"""The API reporter: the state handler that reports a deployed flow run to the headwater API.

``headwater.environments.execution.load_and_run_flow`` makes one per run::

    reporter = ApiReporter(client, run.id, version, ...).start()
    state = environment.execute(flow, ..., state_handlers=[reporter])
    state = reporter.finish(state)   # the run's final state, with the version lock
    reporter.close()

Task-run states and log records go out in batches (``shipping.py``); a thread
heartbeats and watches the run's state (``heartbeat.py``). Once the run is
``Cancelling`` (or someone else moved it), no further task starts: the reporter
raises the engine's :class:`~headwater.engine.handlers.CancelRun` when a task
is about to run, and the run ends ``Cancelled``. The per-task work on the
engine's side is one append under a lock.

On executors whose tasks run in other processes (``DaskExecutor``,
``LocalDaskExecutor(scheduler="processes")``) the reporter is pickled as a
``WorkerReporter`` (``worker_reporting.py``), which reports from each worker
process through a client of its own; the final states of all tasks are sent
again from here at the end.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from headwater.core.run_states import FINISHED, FlowRunState
from headwater.core.state import Cancelled, Failed, State
from headwater.engine.handlers import CancelRun, StateHandler
from headwater.engine.heartbeat import RunMonitor, is_superseded
from headwater.engine.shipping import (
    MAX_STATE_MESSAGE,
    ApiLogHandler,
    RunApi,
    Shipper,
    TaskEntry,
    attach,
    cut,
    detach,
    warn,
)

if TYPE_CHECKING:
    from headwater.core.task import Task
    from headwater.engine.context import FlowRunContext

logger = logging.getLogger("headwater.reporting")

CANCELLED = "the flow run was cancelled"

#: The reporters running in this process, by flow-run id (``worker_reporting.py`` reports through them).
main_reporters: dict[str, ApiReporter] = {}
registry_lock = threading.Lock()


@dataclass(frozen=True)
class ReporterSpec:
    """What another process needs to report the run (it travels with the pickled reporter).

    ``connect`` makes an API client there (a picklable factory the flow-run process gives,
    e.g. ``functools.partial(Client, url, token)`` with the token a ``SecretStr``, so it
    never shows in a repr); the engine itself never imports the client.
    """

    flow_run_id: str
    connect: Callable[[], RunApi] | None
    cancel_check_interval: float
    log_batch_interval: float


def _final_entry(task: Task, state: State) -> TaskEntry:
    return (task.slug or task.name, state.name, state.message, state.attempts, state.started_at, state.finished_at)


class TaskReporting(StateHandler):
    """Queues task-run states and stops tasks from starting once the run is cancelled."""

    _shipper: Shipper
    #: why tasks must not start any more (set by the heartbeat thread), or None.
    cancel_reason: str | None = None

    def on_task_state(self, context: FlowRunContext, task: Task, state: State) -> None:
        if state.is_running():
            if self.cancel_reason is not None:
                raise CancelRun(f"{self.cancel_reason} before this task started")
            self._shipper.add_task((task.slug or task.name, "Running", None, None, time.time(), None))
        elif state.is_finished():
            self._shipper.add_task(_final_entry(task, state))
        else:  # Retrying: keeps its attempt count and start time
            self._shipper.add_task((task.slug or task.name, state.name, state.message, None, None, None))

    def cancel(self, reason: str) -> None:
        """Let no further task of the run start; the run log says why (once)."""
        if self.cancel_reason is None:
            self.cancel_reason = reason
            logger.warning("%s: tasks that have not started will not start (a running task may finish)", reason)


class ApiReporter(TaskReporting):
    """Reports one flow run to the API while it runs in this process.

    Args:
        api: the API client (``headwater.client.Client``).
        flow_run_id: the run.
        version: the run's version once it is Running (the lock for the final state).
        heartbeat_interval: seconds between heartbeats; None sends none.
        cancel_check_interval: seconds between looks at the run's state.
        log_batch_interval: seconds between sends of logs and task-run states.
        log_level: the root logger is lowered to this level while the run is
            reported, so task code's own loggers reach the run log.
        connect: how worker processes reach the API (cross-process executors): a picklable
            callable making a client there; without it they report nothing and only the
            final states are sent.
        claim: the claim the run was deployed under (``<agent id>:<attempt>``): a look at the
            run that finds it under another claim counts as the claim being superseded.
        on_superseded: called with the reason once the API says the run was taken from this
            process's claim (after the reporter stopped every further task and report); the
            flow-run process stops itself there, so a task of a stale attempt can't overlap
            the new attempt's.
    """

    def __init__(
        self,
        api: RunApi,
        flow_run_id: str,
        version: int,
        *,
        heartbeat_interval: float | None = 10.0,
        cancel_check_interval: float = 2.0,
        log_batch_interval: float = 1.0,
        log_level: int = logging.INFO,
        connect: Callable[[], RunApi] | None = None,
        claim: str | None = None,
        on_superseded: Callable[[str], None] | None = None,
    ) -> None:
        self.api = api
        self.flow_run_id = flow_run_id
        self.version = version
        self.spec = ReporterSpec(flow_run_id, connect, cancel_check_interval, log_batch_interval)
        #: (state, message) another party moved the run to while it ran (recovery, an operator).
        self.taken: tuple[str, str | None] | None = None
        self.log_level = log_level
        self._shipper = Shipper(api, flow_run_id, log_batch_interval)
        #: why the run was taken from this process's claim, or None.
        self.superseded: str | None = None
        self._on_superseded = on_superseded
        self._monitor = RunMonitor(
            api, flow_run_id, self._observe, cancel_check_interval, heartbeat_interval,
            on_superseded=self._superseded, claim=claim,
        )  # fmt: skip
        self._handler = ApiLogHandler(self._shipper, flow_run_id)
        self._attached: Any = None

    #: why the final state could not be reported, or None.
    unreported: str | None = None

    def __repr__(self) -> str:
        return f"<ApiReporter: flow run {self.flow_run_id}>"

    def __reduce__(self) -> tuple[Any, ...]:
        from headwater.engine.worker_reporting import WorkerReporter

        return (WorkerReporter, (self.spec,))

    @property
    def heartbeats(self) -> int:
        """Heartbeats sent so far."""
        return self._monitor.heartbeats

    def start(self) -> ApiReporter:
        """Start shipping and heartbeats, and catch this process's logs for the run."""
        self._attached = attach(self._handler, self.log_level)
        with registry_lock:
            main_reporters[self.flow_run_id] = self
        self._shipper.start()
        self._monitor.start()
        return self

    def close(self) -> None:
        """Stop the threads, send what is left, and release the loggers. Safe to call twice."""
        self._monitor.stop()
        if self._attached is not None:
            detach(self._handler, self._attached)
            self._attached = None
        self._shipper.close()
        with registry_lock:
            if main_reporters.get(self.flow_run_id) is self:
                del main_reporters[self.flow_run_id]

    def flush(self) -> bool:
        """Send what is queued now; True when everything went."""
        return self._shipper.flush()

    # -- the engine's hooks ----------------------------------------------------------

    def on_flow_state(self, context: FlowRunContext, state: State) -> None:
        """At the end, send every task's final state (again, when tasks ran elsewhere) before the run's."""
        if not state.is_finished():
            return
        tasks = state.result if isinstance(state.result, dict) else {}
        for task, task_state in tasks.items():
            if context.results_cross_processes or not task_state.is_finished():
                self._shipper.add_task(_final_entry(task, task_state))
        self._shipper.flush()

    # -- the run's own state ---------------------------------------------------------

    def _observe(self, state: str, version: int, message: str | None) -> None:
        """The heartbeat thread's news of the run."""
        if state in (FlowRunState.RUNNING, FlowRunState.CANCELLING):
            self.version = max(self.version, version)
        if state == FlowRunState.CANCELLING:
            self.cancel(CANCELLED)
        elif state in FINISHED or state == FlowRunState.SCHEDULED:
            self.taken = (state, message)
            self.cancel(f"the flow run was moved to {state} elsewhere ({message})")

    def _superseded(self, reason: str) -> None:
        """The run was taken from this process's claim: no task starts and nothing more is reported."""
        if self.superseded is not None:
            return
        self.superseded = reason
        self.taken = ("taken from this process", reason)
        self.cancel(f"the flow run was taken from this process ({reason})")
        if self._on_superseded is not None:
            self._on_superseded(reason)

    def check_claim(self, timeout: float = 5.0) -> bool:
        """Ask the API now whether this process still holds the run (waits up to ``timeout`` s); False
        once it is known to be superseded. A process resumed after being stopped calls this first."""
        self._monitor.look_now(timeout)
        return self.superseded is None

    def finish(self, state: State) -> State:
        """Send what is queued, then propose the run's final state; returns the state it ended in.

        A run being cancelled ends ``Cancelled`` unless it succeeded anyway. A
        state that is not final (the run continues in another process) is not
        proposed. Failures to report are logged, never raised.
        """
        self._shipper.flush()
        if not state.is_finished():
            return state
        final = self._final(state)
        if self.taken is not None:
            logger.error(
                "the flow run ended %s here, but it is already %s (%s); not reporting it",
                final.name, self.taken[0], self.taken[1],
            )  # fmt: skip
            return final
        return self._propose(final)

    def _final(self, state: State) -> State:
        if state.is_successful() or state.is_cancelled():
            return state
        if self.cancel_reason is not None:
            return _as(Cancelled, state, f"{self.cancel_reason} ({state.message})")
        return state if state.is_failed() else _as(Failed, state, state.message)

    def _propose(self, state: State) -> State:
        """Set the run's final state with the version lock; on a conflict, read the run and try again."""
        for _ in range(3):
            name = (
                FlowRunState.SUCCESS
                if state.is_successful()
                else FlowRunState.CANCELLED
                if state.is_cancelled()
                else FlowRunState.FAILED
            )
            try:
                self.api.set_flow_run_state(
                    self.flow_run_id, name, version=self.version, message=cut(state.message, MAX_STATE_MESSAGE)
                )
                return state
            except Exception as exc:
                if is_superseded(exc):
                    self._superseded(str(exc))
                    logger.error("the flow run ended %s here, but it was taken from this process; not reporting it",
                                 name)  # fmt: skip
                    return state
                if getattr(exc, "status_code", None) != 409:
                    self.unreported = f"can't report the final state {name} of flow run {self.flow_run_id}: {exc}"
                    warn(self.unreported)
                    return state
                resent = getattr(exc, "resent", False)  # a try before this one may have been applied
            try:
                run = self.api.get_flow_run(self.flow_run_id)
            except Exception as exc:
                self.unreported = f"can't read flow run {self.flow_run_id} to report its final state {name}: {exc}"
                warn(self.unreported)
                return state
            if resent and run.state == name and run.version == self.version + 1:
                logger.info("the final state %s was applied by a try whose answer was lost", name)
                return state
            if run.state in FINISHED or run.state == FlowRunState.SCHEDULED:
                logger.warning("the flow run is already %s (%s); not reporting %s", run.state, run.state_message, name)
                return state
            if run.state == FlowRunState.CANCELLING and state.is_failed():  # cancelled meanwhile: that is how it ends
                state = _as(Cancelled, state, f"{CANCELLED} ({state.message})")
            self.version = run.version
        warn(f"the final state of flow run {self.flow_run_id} kept conflicting with changes of others; not reported")
        return state


def _as(cls: type[State], state: State, message: str | None) -> State:
    new = cls(message, state.result)
    new.started_at, new.finished_at, new.attempts = state.started_at, state.finished_at, state.attempts
    return new
