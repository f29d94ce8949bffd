"""Running one task: trigger, skip, retries, timeout, and its final State.

:func:`run_task` is what an executor runs for each task; it gets the task's
:class:`TaskCall` (built once per run by ``flow_runner.py``), the final states
of its upstream tasks, and the run's context. Per-task work is kept to plain
objects: no settings lookups, no copies of the context, and DEBUG logging
only when the run asked for it.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from headwater.core import signals
from headwater.core.state import (
    Cancelled,
    Failed,
    Retrying,
    Running,
    Skipped,
    State,
    Success,
    TimedOut,
    TriggerFailed,
)
from headwater.core.task import FunctionTask, Task
from headwater.core.triggers import all_successful
from headwater.engine.context import FlowRunContext, TaskRunContext, _current
from headwater.engine.handlers import CancelRun, notify_task
from headwater.engine.logs import configure_logging, logging_configured

logger = logging.getLogger("headwater.task_runner")


class TaskCall:
    """What the engine needs to call one task, worked out once per run.

    Args:
        task: the task.
        keys: for each upstream edge, in order, the argument it fills (None: state only).
        constants: constant arguments, including a Parameter's value. Read, never changed:
            tasks without constants share one empty mapping.
    """

    __slots__ = ("constants", "fn", "keys", "task", "upstream")

    def __init__(
        self,
        task: Task,
        keys: tuple[str | None, ...],
        constants: Mapping[str, Any],
        upstream: tuple[int, ...] = (),
    ) -> None:
        self.task = task
        self.keys = keys
        self.constants = constants
        #: positions (in the run's plan) of the upstream tasks, one per key.
        self.upstream = upstream
        #: what an attempt calls: a function task's own function (one call less), else ``task.run``.
        self.fn: Callable[..., Any] = (
            task.fn if type(task).run is FunctionTask.run and "run" not in vars(task) else task.run  # type: ignore[attr-defined]
        )

    def __repr__(self) -> str:
        return f"<TaskCall: {self.task.slug}>"

    def __reduce__(self) -> tuple[Any, ...]:
        # ``fn`` is worked out again where the call lands (a bound ``task.run`` pickles the task twice)
        return (TaskCall, (self.task, self.keys, self.constants, self.upstream))


class _TimeoutExpired(Exception):
    pass


def _call_with_timeout(task: Task, fn: Callable[..., Any], kwargs: Mapping[str, Any], timeout: float) -> Any:
    """Run ``fn`` (the task's ``run``) in a thread and wait at most ``timeout`` seconds.

    Python can't stop a thread: on a timeout the task's code keeps running in
    the background, but the run moves on and the task ends TimedOut.
    """
    outcome: list[Any] = []
    ctx = contextvars.copy_context()

    def target() -> None:
        try:
            outcome.append((True, ctx.run(fn, **kwargs)))
        except BaseException as exc:  # handed to the caller's thread below
            outcome.append((False, exc))

    thread = threading.Thread(target=target, name=f"headwater-task-{task.slug}", daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        raise _TimeoutExpired
    ok, value = outcome[0]
    if ok:
        return value
    raise value


def _final(context: FlowRunContext, task: Task, state: State, started: float, attempts: int) -> State:
    """Stamp the final state, make sure it can travel back, and tell the handlers."""
    state.started_at = started
    state.finished_at = time.time()
    state.attempts = attempts
    if context.results_cross_processes:
        state = _sendable(state, task)
    if context.state_handlers:
        notify_task(context, task, state)
    return state


def _sendable(state: State, task: Task) -> State:
    """``state`` if it can be pickled back to the flow runner, else a Failed saying why.

    On executors whose tasks run in other processes, an unpicklable result or
    exception would otherwise fail the whole run with an opaque pickling error.
    """
    import cloudpickle

    try:
        cloudpickle.dumps(state)
    except Exception as exc:
        what = "raised an exception" if state.is_failed() else "returned a value"
        kind = type(state.result).__name__
        replacement = Failed(
            f"task {task.slug!r} {what} ({kind}) that can't be sent back from the worker process: "
            f"{type(exc).__name__}: {exc}. Return plain data (or raise a plain exception), or run "
            f"with an in-process executor (LocalExecutor, LocalDaskExecutor threads)"
            + (f". The task's own error: {state.message}" if state.is_failed() else "")
        )
        replacement.traceback = getattr(state, "traceback", None)
        replacement.started_at, replacement.finished_at = state.started_at, state.finished_at
        replacement.attempts = state.attempts
        return replacement
    return state


def _failed(cls: type[Failed], message: str, exc: BaseException | None = None) -> Failed:
    state = cls(message, result=exc)
    if exc is not None:
        state.traceback = "".join(traceback.format_exception(exc))
    return state


def run_task(call: TaskCall, upstream_states: list[State], context: FlowRunContext) -> State:
    """Run ``call.task`` once its upstream tasks are final; return its final State."""
    task = call.task
    started = time.time()
    if context.results_cross_processes and context.log_level is not None and not logging_configured():
        configure_logging(level=context.log_level, fmt=context.log_format)  # a fresh worker process
    if upstream_states:
        # the common case first: the default trigger and upstream tasks that all plainly succeeded
        plain = task.trigger is all_successful
        if plain:
            for s in upstream_states:
                if type(s) is not Success:
                    plain = False
                    break
        if not plain:
            not_ready = _not_ready(task, upstream_states)
            if not_ready is not None:
                return _final(context, task, not_ready, started, 0)
        kwargs = dict(call.constants) if call.constants else {}
        for key, upstream in zip(call.keys, upstream_states, strict=True):
            if key is not None:
                kwargs[key] = upstream.result
    else:
        kwargs = call.constants  # type: ignore[assignment]  # only unpacked, never changed
    if context.state_handlers or task.max_retries or context.log_task_events:
        return _run_attempts(task, call.fn, kwargs, context, started)
    # one attempt, nobody to tell: what _run_attempts does, without its loop
    token = _current.set(TaskRunContext(context, task, 1))
    try:
        state = _attempt(task, call.fn, kwargs)
    finally:
        _current.reset(token)
    if isinstance(state, Failed):
        logger.error("failed: %s", state.message)
    return _final(context, task, state, started, 1)


def _not_ready(task: Task, upstream_states: list[State]) -> State | None:
    """The final state of a task that must not run given its upstream states, or None when it may run."""
    if task.skip_on_upstream_skip and any(s.is_skipped() for s in upstream_states):
        return Skipped("an upstream task was skipped")
    try:
        ready = task.trigger(upstream_states)
    except Exception as exc:
        return _failed(Failed, f"trigger of task {task.slug!r} raised {exc!r}", exc)
    if ready:
        return None
    if any(s.is_cancelled() for s in upstream_states):
        return Cancelled("an upstream task was cancelled")
    return TriggerFailed(
        f"trigger {getattr(task.trigger, '__name__', task.trigger)!r} was not met by the "
        f"upstream states {sorted(s.name for s in upstream_states)}"
    )


def _run_attempts(
    task: Task, fn: Callable[..., Any], kwargs: dict[str, Any], context: FlowRunContext, started: float
) -> State:
    handlers = context.state_handlers
    attempt = 0
    while True:
        attempt += 1
        if handlers:
            try:
                notify_task(context, task, Running())
            except CancelRun as exc:  # a handler learned the run was cancelled: don't start
                cancelled = Cancelled(str(exc) or f"the flow run was cancelled before task {task.slug!r} started")
                return _final(context, task, cancelled, started, attempt - 1)
        token = _current.set(TaskRunContext(context, task, attempt))
        try:
            if context.log_task_events:
                logger.debug("attempt %d starts", attempt)
            state = _attempt(task, fn, kwargs)
            if state.is_failed() and attempt <= task.max_retries and not isinstance(
                state.result, signals.FAIL
            ):
                retry = Retrying(
                    f"attempt {attempt} of {task.max_retries + 1} failed ({state.message}); "
                    f"retrying in {task.retry_delay}s"
                )
                logger.warning("%s", retry.message)
                if handlers:
                    notify_task(context, task, retry)
                if task.retry_delay:
                    time.sleep(task.retry_delay)
                continue
            if state.is_failed():
                logger.error("failed: %s", state.message)
            elif context.log_task_events:
                logger.debug("%s", state.name)
        finally:
            _current.reset(token)
        break
    return _final(context, task, state, started, attempt)


def _attempt(task: Task, fn: Callable[..., Any], kwargs: Mapping[str, Any]) -> State:
    """Run the task's code (``fn``: its ``run``) once and turn the outcome into a State."""
    try:
        if task.timeout is None:
            return Success(None, fn(**kwargs))
        return Success(None, _call_with_timeout(task, fn, kwargs, task.timeout))
    except signals.SKIP as exc:
        return Skipped(str(exc) or f"task {task.slug!r} asked to be skipped")
    except signals.FAIL as exc:
        return _failed(Failed, str(exc) or f"task {task.slug!r} signalled FAIL", exc)
    except _TimeoutExpired:
        return TimedOut(f"task {task.slug!r} ran longer than its timeout of {task.timeout}s")
    except Exception as exc:
        return _failed(Failed, f"{type(exc).__name__}: {exc}", exc)
