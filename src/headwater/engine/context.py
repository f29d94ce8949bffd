"""What a running task can know about its run: ``headwater.engine.context.current()``.

The flow runner builds one :class:`FlowRunContext` per run (never per task) and
passes it to every task call; the task runner marks the running task in a
context variable, which logging and :func:`current` read.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from headwater.core.task import Task
    from headwater.engine.handlers import StateHandler


@dataclass(frozen=True, slots=True)
class FlowRunContext:
    """Facts about one flow run, shared by all of its task calls."""

    flow_name: str
    flow_run_id: str
    flow_run_name: str
    parameters: dict[str, Any] = field(default_factory=dict)
    state_handlers: tuple[StateHandler, ...] = ()
    #: extra values given to ``flow.run(context=...)``.
    extra: dict[str, Any] = field(default_factory=dict)
    #: whether per-task DEBUG records are emitted; decided once per run.
    log_task_events: bool = False
    #: the ``headwater`` logger's level and format, so worker processes log like this one.
    log_level: str | None = None
    log_format: str | None = None
    #: tasks run in other processes: check each final state can be pickled back.
    results_cross_processes: bool = False


class TaskRunContext:
    """The flow run and the task that is running now (read-only).

    One is made for every attempt of every task, so it is a plain ``__slots__``
    class: a frozen dataclass's ``__init__`` cost about three times as much,
    which showed in the engine's per-task time.
    """

    __slots__ = ("_attempt", "_flow_run", "_task")

    def __init__(self, flow_run: FlowRunContext, task: Task, attempt: int) -> None:
        self._flow_run = flow_run
        self._task = task
        self._attempt = attempt

    @property
    def flow_run(self) -> FlowRunContext:
        """The run this task belongs to."""
        return self._flow_run

    @property
    def task(self) -> Task:
        """The running task."""
        return self._task

    @property
    def attempt(self) -> int:
        """Which attempt this is (1 for the first run of the task's code)."""
        return self._attempt

    def _fields(self) -> tuple[FlowRunContext, Task, int]:
        return (self._flow_run, self._task, self._attempt)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TaskRunContext):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return f"TaskRunContext(flow_run={self._flow_run!r}, task={self._task!r}, attempt={self._attempt!r})"


_current: contextvars.ContextVar[TaskRunContext | None] = contextvars.ContextVar(
    "headwater_task_run", default=None
)
_current_flow_run: contextvars.ContextVar[FlowRunContext | None] = contextvars.ContextVar(
    "headwater_flow_run", default=None
)


def current() -> TaskRunContext | None:
    """The running task's context, or None outside a task run."""
    return _current.get()


def current_flow_run() -> FlowRunContext | None:
    """The flow run being run in this thread (set by the flow runner), or None."""
    task_run = _current.get()
    return task_run.flow_run if task_run is not None else _current_flow_run.get()


@dataclass(slots=True)
class Deployment:
    """The run a flow-run process was started for, while its environment runs the flow.

    ``headwater.environments.execution`` sets it around ``environment.execute(flow)``
    (or ``run(flow)``), so environments keep the documented one-argument signatures:
    the first :func:`~headwater.engine.flow_runner.run_flow` of a flow of that name in
    it takes ``runner_kwargs`` (parameters, run id and name, the API reporter, context)
    and leaves its final state here.
    """

    flow_name: str
    runner_kwargs: dict[str, Any]
    taken: bool = False
    final_state: Any = None


_deployment: contextvars.ContextVar[Deployment | None] = contextvars.ContextVar("headwater_deployment", default=None)
# The same, for the whole process: an environment may run the flow in a thread of its own,
# where the context variable is not set (a flow-run process deploys one run).
_process_deployment: list[Deployment] = []
_taking = threading.Lock()


@contextlib.contextmanager
def deployed(flow_name: str, **runner_kwargs: Any) -> Iterator[Deployment]:
    """Make the next ``run_flow`` of flow ``flow_name`` (in this context, or another thread of
    this process) the deployed run."""
    deployment = Deployment(flow_name, runner_kwargs)
    token = _deployment.set(deployment)
    _process_deployment.append(deployment)
    try:
        yield deployment
    finally:
        _deployment.reset(token)
        _process_deployment.remove(deployment)


def take_deployment(flow_name: str) -> Deployment | None:
    """The deployment a ``run_flow`` of ``flow_name`` stands for, once (None: an ordinary run).

    A flow run inside a task (a task that runs a flow) is never the deployment.
    """
    if _current.get() is not None:
        return None
    deployment = _deployment.get() or (_process_deployment[-1] if _process_deployment else None)
    with _taking:
        if deployment is None or deployment.taken or deployment.flow_name != flow_name:
            return None
        deployment.taken = True
    return deployment
