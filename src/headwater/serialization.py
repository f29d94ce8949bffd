"""A flow's metadata as JSON, and a flow rebuilt from it.

``serialize_flow`` is what ``flow.serialize()`` returns and what registration
sends; the shape is ``headwater.schemas.flows.FlowMetadata``.
``flow_from_metadata`` rebuilds the graph (tasks whose code stays in storage),
which is how the API and CLI show and check a registered flow without ever
unpickling it. Pickled flows and scripts are ``headwater.storage``'s business.
"""

from __future__ import annotations

import json
from typing import Any

from headwater.core.flow import Flow
from headwater.core.state import State
from headwater.core.task import FunctionTask, Parameter, Task
from headwater.core.triggers import TRIGGERS, trigger_name


class SerializationError(ValueError):
    """Part of a flow can't be described as JSON; the message names it."""


def _path(obj: Any) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


def _json_value(value: Any, what: str) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"{what} is not JSON ({exc}); use JSON values (str, number, list, dict)") from None
    return value


def _spec(obj: Any, what: str) -> dict[str, Any] | None:
    if obj is None:
        return None
    serialize = getattr(obj, "serialize", None)
    if serialize is None:
        raise SerializationError(f"{what} {obj!r} has no serialize(); is it a headwater {what}?")
    return _json_value(serialize(), f"the {what} spec")  # type: ignore[no-any-return]


def _task_type(t: Task) -> str:
    if isinstance(t, MetadataTask):
        return t.metadata_type
    return _path(type(t))


def _task_function(t: Task) -> str | None:
    if isinstance(t, MetadataTask):
        return t.metadata_function
    if isinstance(t, FunctionTask) and hasattr(t.fn, "__qualname__"):
        return _path(t.fn)
    return None


def serialize_flow(flow: Flow) -> dict[str, Any]:
    """The flow's metadata: a JSON-able dict checked against ``FlowMetadata``.

    Raises:
        FlowValidationError: the graph is invalid.
        SerializationError: a parameter default, the schedule or a spec is not JSON.
    """
    from headwater import __version__
    from headwater.schemas.flows import FlowMetadata

    flow.validate()
    tasks = []
    for t in flow.sorted_tasks():
        tasks.append(
            {
                "slug": t.slug,
                "name": t.name,
                "type": _task_type(t),
                "function": _task_function(t),
                "tags": sorted(t.tags),
                "max_retries": t.max_retries,
                "retry_delay": t.retry_delay,
                "timeout": t.timeout,
                "trigger": trigger_name(t.trigger),
                "skip_on_upstream_skip": t.skip_on_upstream_skip,
                "nout": t.nout,
                "checkpoint": t.checkpoint,
                "constant_args": sorted(flow.constants.get(t, ())),
            }
        )
    edges = [
        {"upstream": e.upstream_task.slug, "downstream": t.slug, "key": e.key}
        for t in flow.sorted_tasks()
        for e in flow.edges_to(t)
    ]
    parameters = [
        {
            "name": p.name,
            "default": _json_value(p.default, f"the default of parameter {p.name!r}"),
            "required": p.required,
        }
        for p in sorted(flow.parameters(), key=lambda p: p.name)
    ]
    labels = set(getattr(flow.storage, "labels", None) or ()) | set(
        getattr(flow.environment, "labels", None) or ()
    )
    schedule = flow.schedule
    if schedule is not None and not isinstance(schedule, dict):
        schedule = _spec(schedule, "schedule")
    metadata = {
        "headwater_version": __version__,
        "name": flow.name,
        "tasks": tasks,
        "edges": edges,
        "parameters": parameters,
        "reference_tasks": sorted(t.slug for t in flow._reference_tasks if t.slug),
        "storage": _spec(flow.storage, "storage"),
        "environment": _spec(flow.environment, "environment"),
        "executor": flow.executor.serialize() if flow.executor is not None else None,
        "schedule": _json_value(schedule, "the schedule"),
        "labels": sorted(labels),
    }
    return FlowMetadata.model_validate(metadata).model_dump(mode="json")


class MetadataTask(Task):
    """A task rebuilt from metadata: it has the task's options but not its code.

    ``metadata_type`` and ``metadata_function`` name the class and function of the
    task it stands for, so the rebuilt flow serializes to the same metadata.
    """

    metadata_type: str = ""
    metadata_function: str | None = None

    def run(self, **kwargs: Any) -> Any:
        raise RuntimeError(
            f"task {self.slug!r} was rebuilt from flow metadata and has no code; "
            "load the flow from its storage to run it"
        )


class SpecOnly:
    """A storage or environment known only by its spec (its kind isn't loaded here)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = dict(spec)
        self.labels = set(spec.get("labels") or ())

    def serialize(self) -> dict[str, Any]:
        return dict(self.spec)

    def __repr__(self) -> str:
        return f"<SpecOnly: {self.spec.get('kind', '?')}>"


def flow_from_metadata(metadata: dict[str, Any]) -> Flow:
    """Rebuild a flow's graph from its metadata (validated first).

    Raises:
        pydantic.ValidationError: the metadata does not fit ``FlowMetadata``; the
            error names the field.
    """
    from headwater.schemas.flows import FlowMetadata

    md = FlowMetadata.model_validate(metadata)
    flow = Flow(md.name)
    by_slug: dict[str, Task] = {}
    params = {p.name: p for p in md.parameters}
    for tm in md.tasks:
        task: Task
        if tm.slug in params:
            p = params[tm.slug]
            task = Parameter(p.name, default=p.default, required=p.required, tags=tm.tags)
        else:
            placeholder = MetadataTask(
                name=tm.name,
                slug=tm.slug,
                tags=tm.tags,
                max_retries=tm.max_retries,
                retry_delay=tm.retry_delay,
                timeout=tm.timeout,
                trigger=TRIGGERS.get(tm.trigger),
                skip_on_upstream_skip=tm.skip_on_upstream_skip,
                nout=tm.nout,
                checkpoint=tm.checkpoint,
            )
            placeholder.metadata_type, placeholder.metadata_function = tm.type, tm.function
            task = placeholder
        by_slug[tm.slug] = flow.add_task(task)
        for key in tm.constant_args:
            flow.constants.setdefault(task, {})[key] = None
    for e in md.edges:
        flow.add_edge(by_slug[e.upstream], by_slug[e.downstream], key=e.key)
    if md.reference_tasks:
        flow.set_reference_tasks(by_slug[s] for s in md.reference_tasks)
    if md.storage is not None:
        flow.storage = _storage_or_spec(md.storage)
    if md.environment is not None:
        flow.environment = _environment_or_spec(md.environment)
    if md.executor is not None:
        from headwater.executors.registry import executor_from_spec

        flow.executor = executor_from_spec(md.executor)
    flow.schedule = md.schedule
    return flow


def _environment_or_spec(spec: dict[str, Any]) -> Any:
    from headwater.environments.registry import environment_from_spec

    try:
        return environment_from_spec(spec)
    except ValueError:  # a kind (or executor) not available here: keep the spec
        return SpecOnly(spec)


def _storage_or_spec(spec: dict[str, Any]) -> Any:
    from headwater.storage import StorageNotAvailable, storage_from_spec

    try:
        return storage_from_spec(spec)
    except StorageNotAvailable:  # a kind whose extra isn't installed here: keep the spec
        return SpecOnly(spec)


def state_summary(state: State) -> dict[str, Any]:
    """A JSON-able summary of a finished flow State: each task's state and duration."""
    tasks = state.result if isinstance(state.result, dict) else {}
    return {
        "state": state.name,
        "message": state.message,
        "tasks": {
            t.slug: {"state": s.name, "message": s.message, "attempts": s.attempts, "duration": s.duration}
            for t, s in tasks.items()
        },
    }
