"""Registering a flow: keep its code in storage, then send its metadata to the API.

``flow.register(...)`` and ``Client.register(...)`` forward here (also importable as
``headwater.registration``, its documented path). The steps:

1. check everything that can be checked without side effects: not inside a
   ``with Flow(...)`` block, the labels, the graph, the metadata, and that the
   project exists on the server;
2. ``storage.add_flow(flow)`` (a flow without storage gets what its environment's
   ``default_storage(**storage_kwargs)`` gives — a DockerEnvironment's is the Docker
   storage of its arguments — else a storage of the ``flows.default_storage`` setting,
   ``Local(**storage_kwargs)`` by default) once the
   environment's ``storage_problem(storage)`` has no objection, then
   ``storage.build()`` unless ``build=False``; then the environment's
   ``adopt_storage(storage)`` (a DockerEnvironment names the storage's image);
3. POST the metadata (``flow.serialize()``) with the extra ``labels`` to
   ``/api/v1/flows``. The version's labels are the environment's and the
   storage's labels plus ``labels``.

**Decision:** if the server refuses the flow at step 3, what step 2 wrote (e.g.
a Local storage file) stays; it is harmless and the next registration writes a
new one. Registering an unchanged flow writes a new file too, while the server
keeps pointing at the first one (the same version is returned).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from headwater.core import building
from headwater.core.flow import Flow
from headwater.core.labels import check_labels as _check_labels

if TYPE_CHECKING:
    from headwater.client import Client
    from headwater.storage import Storage


class RegistrationError(ValueError):
    """A flow can't be registered as asked; the message says why and what to do."""


def check_labels(labels: Iterable[str] | None) -> list[str]:
    """``labels`` sorted, if they follow the label rule (``headwater.core.labels``); else RegistrationError."""
    return sorted(_check_labels(labels, "flow.register", RegistrationError))


def _storage_for(flow: Flow, storage_kwargs: dict[str, Any], build: bool, default_kind: str) -> Storage:
    """The storage to add the flow to: its own, a fresh copy of it if the flow is in it already, or the
    default: the environment's ``default_storage()`` if it gives one, else ``default_kind``'s class."""
    storage = flow.storage
    if storage is None:
        default = flow.environment.default_storage(**storage_kwargs) if flow.environment is not None else None
        return default if default is not None else _default_storage(default_kind, storage_kwargs)
    if storage_kwargs:
        raise RegistrationError(
            f"storage arguments {sorted(storage_kwargs)} are for the default storage, but flow "
            f"{flow.name!r} already has {storage!r}; configure that storage instead"
        )
    if flow.name in storage:
        # registered before in this process: a storage holds one flow per name, so use a fresh one
        storage = storage.for_new_version(rebuild=build)
    return storage  # type: ignore[no-any-return]


def _default_storage(kind: str, storage_kwargs: dict[str, Any]) -> Storage:
    """A storage of the ``flows.default_storage`` setting's kind (or class path), with ``storage_kwargs``.

    Raises:
        StorageError: the setting names no storage class (the message names the setting).
        RegistrationError: ``storage_kwargs`` don't fit that class.
    """
    from headwater.storage import StorageError, get_storage_class

    try:
        cls = get_storage_class(kind)
    except StorageError as exc:
        setting = "the flows.default_storage setting (HEADWATER__FLOWS__DEFAULT_STORAGE)"
        raise type(exc)(f"{setting} is {kind!r}: {exc}") from exc
    try:
        return cls(**storage_kwargs)
    except TypeError as exc:
        raise RegistrationError(
            f"flow.register() keeps a flow without storage in {cls.__name__} storage (the flows.default_storage "
            f"setting is {kind!r}), which does not take these arguments {sorted(storage_kwargs)}: {exc}"
        ) from exc


def _check_project(client: Client, project_name: str) -> None:
    from headwater.client import NotFoundError

    if not any(p.name == project_name for p in client.list_projects()):
        raise NotFoundError(
            404, f"project {project_name!r} not found; create it with `headwater create project {project_name}`"
        )


def register_flow(
    flow: Flow,
    project_name: str,
    build: bool = True,
    labels: Iterable[str] | None = None,
    idempotency_key: str | None = None,
    client: Client | None = None,
    **storage_kwargs: Any,
) -> str:
    """Store ``flow`` and register it in project ``project_name``; returns the flow version's id.

    Args:
        flow: the flow; ``flow.storage`` is set to the storage used.
        project_name: an existing project (``headwater create project NAME``).
        build: call ``storage.build()`` (False: the storage is built elsewhere).
        labels: labels added to the environment's and storage's labels.
        idempotency_key: registering again with this key returns the same version.
        client: the API client; default ``Client()`` from the settings.
        **storage_kwargs: arguments of the default storage, when the flow has none: the
            environment's ``default_storage``, else the class of the ``flows.default_storage``
            setting (``HEADWATER__FLOWS__DEFAULT_STORAGE``, default ``local``).

    Raises:
        RegistrationError: inside a ``with Flow(...)`` block, bad labels or arguments.
        FlowValidationError, SerializationError, StorageError: the flow can't be stored or described.
        headwater.client.NotFoundError: the project does not exist.
        headwater.client.ApiError: the server refused or could not be reached.
    """
    if not isinstance(flow, Flow):
        raise TypeError(f"register needs a headwater Flow, not {type(flow).__name__}")
    open_block = building.active_flow()
    if open_block is not None:
        raise RegistrationError(
            f"flow {flow.name!r} can't be registered while the `with Flow({open_block.name!r})` block is "
            "open; call flow.register() after the `with Flow(...)` block"
        )
    if not isinstance(project_name, str) or not project_name.strip():
        raise RegistrationError(f"project_name must be a project's name, not {project_name!r}")
    extra_labels = check_labels(labels)
    flow.serialize()  # validates the graph and the metadata before anything is stored
    from headwater.client import Client
    from headwater.config import get_settings

    default_kind = get_settings().flows.default_storage
    owned = client is None
    api = Client() if client is None else client
    try:
        _check_project(api, project_name)
        storage, previous = _storage_for(flow, storage_kwargs, build, default_kind), flow.storage
        problem = flow.environment.storage_problem(storage) if flow.environment is not None else None
        if problem:
            raise RegistrationError(problem)
        flow.storage = storage  # before add_flow, so the stored flow carries its storage
        try:
            storage.add_flow(flow)
        except BaseException:
            flow.storage = previous
            raise
        if build:
            storage.build()
        if flow.environment is not None:
            flow.environment.adopt_storage(storage)
        registered = api.register_flow_metadata(
            project_name, flow.serialize(), labels=extra_labels, idempotency_key=idempotency_key
        )
    finally:
        if owned:
            api.close()
    unchanged = "" if registered.created else " (unchanged, existing version)"
    print(
        f"Flow {registered.name!r} registered: id {registered.id}, version {registered.version}{unchanged}, "
        f"labels {registered.labels}"
    )
    note = executor_note(flow)
    if note:
        print(note)
    return registered.id


def executor_note(flow: Flow) -> str | None:
    """When the flow and its environment both name an executor, which one deployed runs use."""
    env_executor = getattr(flow.environment, "executor", None)
    if flow.executor is None or env_executor is None:
        return None
    return (
        f"Note: flow {flow.name!r} has flow.executor {type(flow.executor).__name__} and its environment has "
        f"executor {type(env_executor).__name__}: deployed runs use the environment's "
        f"({type(env_executor).__name__}); flow.run() uses flow.executor"
    )
