"""Running a whole flow: check it, plan each task call once, hand them to an executor.

``flow.run()`` lands in :func:`run_flow`. The per-task work is in
``task_runner.py``; where tasks run is the executor's business
(``headwater.executors``).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from headwater.core.errors import ParameterError
from headwater.core.flow import Flow
from headwater.core.state import Cancelled, Failed, Pending, Running, State, Success, TriggerFailed
from headwater.core.task import Parameter
from headwater.engine.collector import spared
from headwater.engine.context import FlowRunContext, _current_flow_run, take_deployment
from headwater.engine.handlers import StateHandler, notify_flow
from headwater.engine.task_runner import TaskCall, run_task

logger = logging.getLogger("headwater.flow_runner")


def check_parameters(flow: Flow, parameters: dict[str, Any]) -> None:
    """Raise ParameterError for unknown parameter names or missing required ones."""
    declared = {p.name: p for p in flow.parameters()}
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        known = ", ".join(sorted(declared)) or "none"
        raise ParameterError(
            f"flow {flow.name!r} has no parameter(s) {', '.join(map(repr, unknown))}; "
            f"its parameters are: {known}"
        )
    missing = sorted(n for n, p in declared.items() if p.required and n not in parameters)
    if missing:
        raise ParameterError(
            f"flow {flow.name!r} needs parameter(s) {', '.join(map(repr, missing))} "
            "(required, no default): pass parameters={...}"
        )


#: the constants of a task that has none: one dict shared by every such call, which the engine
#: only reads (a dict, not a read-only mapping proxy, so a call pickles for other processes).
_NO_CONSTANTS: Mapping[str, Any] = {}


def plan(flow: Flow, parameters: dict[str, Any]) -> list[TaskCall]:
    """Each task's call in run order; ``call.upstream`` holds the positions of its upstream tasks.

    Few objects per task (one call; its keys shared with every call of the same
    keys), since they stay alive for the whole run and the garbage collector walks
    what stays alive.
    """
    order = flow.sorted_tasks()
    position = {t: i for i, t in enumerate(order)}
    all_constants = flow.constants
    edges_into = flow.edges_into()
    calls: list[TaskCall] = []
    shared_keys: dict[tuple[str | None, ...], tuple[str | None, ...]] = {}
    for t in order:
        edges = edges_into[t]
        given = all_constants.get(t)
        if isinstance(t, Parameter) and t.name in parameters:
            constants: Mapping[str, Any] = {**(given or {}), "value": parameters[t.name]}
        else:
            constants = given if given else _NO_CONSTANTS
        if not edges:
            calls.append(TaskCall(t, (), constants))
            continue
        if len(edges) == 1:
            upstream: tuple[int, ...] = (position[edges[0].upstream_task],)
            keys: tuple[str | None, ...] = (edges[0].key,)
        else:
            upstream = tuple([position[e.upstream_task] for e in edges])
            keys = tuple([e.key for e in edges])
        calls.append(TaskCall(t, shared_keys.setdefault(keys, keys), constants, upstream))
    return calls


def _resolve_executor(flow: Flow, executor: Any) -> Any:
    from headwater.executors.base import Executor, executor_from_path

    if executor is None:
        executor = flow.executor
    if executor is None:
        from headwater.config import get_settings

        default = get_settings().engine.executor
        return executor_from_path(default.default_class, default.default_kwargs)
    if not isinstance(executor, Executor):
        raise TypeError(
            f"executor must be a headwater Executor (e.g. LocalExecutor()), "
            f"not {type(executor).__name__}"
        )
    return executor


def run_flow(
    flow: Flow,
    parameters: dict[str, Any] | None = None,
    executor: Any = None,
    *,
    run_name: str | None = None,
    flow_run_id: str | None = None,
    state_handlers: Iterable[StateHandler] = (),
    context: dict[str, Any] | None = None,
) -> State:
    """Run ``flow`` in this process with ``executor`` and return its final State.

    The State's ``result`` maps each task to its final State. The flow succeeds
    when its reference tasks (by default its terminal tasks) all succeed.

    Args:
        flow: the flow.
        parameters: values of the flow's Parameters, by name.
        executor: where tasks run; default ``flow.executor``, then the
            ``engine.executor.default_class`` setting.
        run_name: a name for the run in logs; default ``<flow>-<short id>``.
        flow_run_id: the run's id (given by the API when run by an agent).
        state_handlers: told of every state change (see ``engine/handlers.py``).
        context: extra values for tasks to read from ``headwater.engine.context``.

    Raises:
        FlowValidationError: the flow's graph is invalid; nothing ran.
        ParameterError: unknown or missing parameters; nothing ran.
        TypeError: ``executor`` is not an Executor; nothing ran.
    """
    from headwater.engine.logs import ensure_logging, log_format

    deployment = take_deployment(flow.name)
    if deployment is not None:  # the run a flow-run process deploys: its arguments fill what is not given
        given = deployment.runner_kwargs
        parameters = given.get("parameters") if parameters is None else parameters
        run_name = run_name or given.get("run_name")
        flow_run_id = flow_run_id or given.get("flow_run_id")
        state_handlers = (*given.get("state_handlers", ()), *state_handlers)
        context = {**(given.get("context") or {}), **(context or {})}
    parameters = dict(parameters or {})
    flow.validate()
    check_parameters(flow, parameters)
    resolved = _resolve_executor(flow, executor)
    ensure_logging()
    run_id = flow_run_id or str(uuid.uuid4())
    ctx = FlowRunContext(
        flow_name=flow.name,
        flow_run_id=run_id,
        flow_run_name=run_name or f"{flow.name}-{run_id[:8]}",
        parameters=parameters,
        state_handlers=tuple(state_handlers),
        extra=dict(context or {}),
        log_task_events=logging.getLogger("headwater.task_runner").isEnabledFor(logging.DEBUG),
        log_level=logging.getLevelName(logging.getLogger("headwater").getEffectiveLevel()),
        log_format=log_format(),
        results_cross_processes=resolved.crosses_processes,
    )
    token = _current_flow_run.set(ctx)
    try:
        with spared():  # the collector leaves the built flow alone while it runs (collector.py)
            final = _run(flow, parameters, resolved, ctx)
    finally:
        _current_flow_run.reset(token)
    if deployment is not None:
        deployment.final_state = final
    return final


def _run(flow: Flow, parameters: dict[str, Any], executor: Any, ctx: FlowRunContext) -> State:
    started = time.time()
    notify_flow(ctx, Running())
    logger.info("flow run of %r starts (%d tasks)", flow.name, len(flow))
    calls = plan(flow, parameters)
    try:
        with executor.start():
            futures: list[Any] = []
            future_at = futures.__getitem__
            for call in calls:
                futures.append(
                    executor.submit(run_task, call, list(map(future_at, call.upstream)), ctx, key=call.task.slug)
                )
            states: list[State] = executor.wait(futures)
    except Exception as exc:
        logger.exception("the executor failed")
        unknown = Pending(f"unknown: the executor failed before reporting this task ({exc!r})")
        final: State = Failed(
            f"the executor {type(executor).__name__} failed: {exc!r}", {call.task: unknown for call in calls}
        )
    else:
        by_task = {call.task: state for call, state in zip(calls, states, strict=True)}
        failed = sorted(t.slug or t.name for t in flow.reference_tasks() if not by_task[t].is_successful())
        cancelled = sum(1 for s in states if s.is_cancelled()) if failed else 0
        if cancelled:
            final = Cancelled(f"the flow run was cancelled: {cancelled} task(s) did not start", by_task)
        elif failed:
            # the task that failed first (by when it finished; a TriggerFailed only follows an upstream's
            # failure) and its error, then the reference tasks: a summary that says what went wrong
            order = {call.task: i for i, call in enumerate(calls)}
            causes = [(t, s) for t, s in by_task.items() if s.is_failed() and not isinstance(s, TriggerFailed)]
            causes.sort(key=lambda ts: (ts[1].finished_at or float("inf"), order[ts[0]]))
            first = f"{causes[0][0].slug or causes[0][0].name} failed: {causes[0][1].message}; " if causes else ""
            final = Failed(f"{first}reference task(s) did not succeed: {', '.join(failed)}", by_task)
        else:
            final = Success("all reference tasks succeeded", by_task)
    final.started_at, final.finished_at = started, time.time()
    log = logger.info if final.is_successful() else logger.error
    log("flow run finished %s: %s", final.name, final.message)
    notify_flow(ctx, final)
    return final
