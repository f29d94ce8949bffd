"""DockerEnvironment: the flow runs in a container of its image; ``execute`` runs it in place.

The DockerAgent starts the container (``agent/docker.py``); inside it the flow-run
process loads the flow and calls ``execute(flow)``, which runs it here with the
environment's executor. ``build(flow)`` makes the image holding the flow with a Docker
storage of this environment's arguments (``storage/docker.py`` on
``headwater.containers.build``: one implementation), and returns a new environment
naming it. Registering a flow with a DockerEnvironment and no storage uses that same
Docker storage as the flow's storage (:meth:`DockerEnvironment.default_storage`), so
the image it builds holds the flow and the environment names that image.
``docs/docker.md`` is the user's side.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headwater.containers import build as images
from headwater.containers import context
from headwater.containers.names import image_reference
from headwater.environments.base import Environment

if TYPE_CHECKING:
    from headwater.core.flow import Flow
    from headwater.executors.base import Executor
    from headwater.storage.base import Storage
    from headwater.storage.docker import Docker


class DockerEnvironment(Environment):
    """Runs the flow in a container of its image, with ``executor``.

    Args:
        base_image: the image to build from; None means ``python:<major>.<minor>-slim``
            of the Python running here.
        registry_url: the registry the image is pushed to and pulled from, e.g. ``localhost:5000``.
        python_dependencies: requirements ``pip install``-ed into the image.
        image_name: the image's name; default the slug of the flow's name.
        image_tag: its tag; set by :meth:`build` (default a UTC timestamp and a short id).
        env_vars: environment variables set in the image.
        files: ``{absolute local path: absolute path in the image}`` to copy in.
        executor: an Executor instance; default the ``engine.executor`` setting.
        labels, on_start, on_exit, metadata: as for :class:`Environment`.
        local_image: the base image is on the daemon already: don't pull it.
        base_url: the Docker daemon; default the ``docker.base_url`` setting.
        build_kwargs: more arguments of the SDK's build call.
        ca_certificates: a PEM bundle trusted in the image; default the
            ``docker.ca_certificates`` setting.

    The last four are beyond the documented form, with Docker storage's meaning.

    Raises:
        ValueError: a bad argument (e.g. a ``files`` key that is not absolute), named.
    """

    kind = "docker"

    def __init__(
        self,
        base_image: str | None = None,
        registry_url: str | None = None,
        python_dependencies: Iterable[str] | None = None,
        image_name: str | None = None,
        image_tag: str | None = None,
        env_vars: Mapping[str, str] | None = None,
        files: Mapping[str, str] | None = None,
        executor: Executor | None = None,
        labels: Iterable[str] | None = None,
        on_start: Callable[[], Any] | None = None,
        on_exit: Callable[[], Any] | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        local_image: bool = False,
        base_url: str | None = None,
        build_kwargs: Mapping[str, Any] | None = None,
        ca_certificates: str | None = None,
    ) -> None:
        from headwater.containers.dockerfile import check_env_vars
        from headwater.executors.base import Executor

        super().__init__(labels=labels, on_start=on_start, on_exit=on_exit, metadata=metadata)
        owner = "DockerEnvironment"
        if executor is not None and not isinstance(executor, Executor):
            raise TypeError(f"{owner} executor must be a headwater Executor, not {type(executor).__name__}")
        self._executor = executor
        self.base_image = base_image
        self.registry_url = context.check_registry(registry_url, owner)
        self.python_dependencies = context.strings(python_dependencies, "python_dependencies", owner)
        self.image_name = context.check_image_name(image_name, owner)
        self.image_tag = context.check_image_tag(image_tag, owner)
        self.env_vars = check_env_vars(dict(env_vars or {}), owner)
        self.files = context.check_files(files, owner)
        self.local_image = bool(local_image)
        self.base_url = base_url
        self.build_kwargs = context.check_build_kwargs(build_kwargs, owner)
        self.ca_certificates = os.fspath(ca_certificates) if ca_certificates is not None else None

    def __repr__(self) -> str:
        return f"<DockerEnvironment: {self.image or self.base_image or 'default base image'}>"

    @property
    def executor(self) -> Executor | None:
        return self._executor

    @property
    def image(self) -> str | None:
        """The image's full reference once it has a name and a tag (after :meth:`build`), else None."""
        if self.image_name is None or self.image_tag is None:
            return None
        return image_reference(self.registry_url, self.image_name, self.image_tag)

    # -- the image --------------------------------------------------------------------------

    def default_storage(self, **storage_kwargs: Any) -> Docker:
        """The Docker storage of this environment's arguments (registration's default for it).

        ``storage_kwargs`` (the ``flow.register(...)`` extras) are more Docker storage arguments.
        """
        from headwater.storage.docker import Docker

        arguments: dict[str, Any] = {
            "registry_url": self.registry_url,
            "base_image": self.base_image,
            "python_dependencies": self.python_dependencies,
            "image_name": self.image_name,
            "image_tag": self.image_tag,
            "env_vars": self.env_vars,
            "files": self.files,
            "local_image": self.local_image,
            "base_url": self.base_url,
            "build_kwargs": self.build_kwargs,
            "ca_certificates": self.ca_certificates,
        }
        return Docker(**{**arguments, **storage_kwargs})

    def storage_problem(self, storage: Storage) -> str | None:
        """A flow in another storage runs in this environment's image, so that image must be built already."""
        if storage.kind == "docker" or self.image_tag is not None:
            return None
        return (
            f"the DockerEnvironment names no built image, and the flow's storage ({storage.describe()}) does not "
            "build one: build it first (flow.environment = flow.environment.build(flow)), give image_name and "
            "image_tag of an image that exists, or leave the flow's storage unset so registration builds an "
            "image holding the flow"
        )

    def adopt_storage(self, storage: Storage) -> None:
        """Name the image of ``storage`` if it is a built Docker storage (registration calls this)."""
        if storage.kind == "docker" and getattr(storage, "image_tag", None):
            self.registry_url = storage.registry_url  # type: ignore[attr-defined]
            self.image_name = storage.image_name  # type: ignore[attr-defined]
            self.image_tag = storage.image_tag  # type: ignore[attr-defined]

    def build_image(self, flow: Flow, push: bool = True) -> tuple[str, str]:
        """Build (and with ``push``, push) the image holding ``flow``; returns ``(repository, tag)``.

        The repository starts with ``registry_url`` when there is one: ``push_image`` takes the same pair.

        Raises:
            ValueError: ``push=True`` without a ``registry_url``.
            headwater.containers.build.ImageError: the build or the push failed (the message says why).
        """
        storage = self._built_storage(flow, push)
        assert storage.image_name is not None and storage.image_tag is not None
        repository = f"{self.registry_url}/{storage.image_name}" if self.registry_url else storage.image_name
        return repository, storage.image_tag

    def build(self, flow: Flow, push: bool = True) -> DockerEnvironment:
        """A new DockerEnvironment naming the image built for ``flow``; every other argument kept.

        Raises:
            ValueError: ``push=True`` without a ``registry_url``.
            headwater.containers.build.ImageError: the build or the push failed.
        """
        storage = self._built_storage(flow, push)
        return DockerEnvironment(
            base_image=self.base_image,
            registry_url=self.registry_url,
            python_dependencies=self.python_dependencies,
            image_name=storage.image_name,
            image_tag=storage.image_tag,
            env_vars=self.env_vars,
            files=self.files,
            executor=self._executor,
            labels=self.labels,
            on_start=self.on_start,
            on_exit=self.on_exit,
            metadata=self.metadata,
            local_image=self.local_image,
            base_url=self.base_url,
            build_kwargs=self.build_kwargs,
            ca_certificates=self.ca_certificates,
        )

    def _built_storage(self, flow: Flow, push: bool) -> Docker:
        from headwater.storage.errors import StorageError

        if push and not self.registry_url:
            raise ValueError(
                "DockerEnvironment: push=True needs registry_url= (e.g. 'localhost:5000') to push the image to; "
                "give one, or build with push=False to keep the image on this daemon only"
            )
        storage = self.default_storage()
        storage.require_dependencies_of(self, self._executor)
        try:
            storage.add_flow(flow)
            storage.build(push=push)
        except StorageError as exc:
            raise images.ImageError(f"DockerEnvironment: {exc}") from None
        return storage

    def create_dockerfile(self, flow: Flow, directory: str | os.PathLike[str] | None = None) -> str:
        """Write the image's Dockerfile, with the build context beside it, into ``directory``.

        ``docker build DIRECTORY`` then builds the same image. Returns the Dockerfile's path.
        ``directory`` defaults to a new temporary folder (the caller removes it).
        """
        from headwater.storage.errors import StorageError

        folder = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="headwater-docker-"))
        storage = self.default_storage()
        storage.require_dependencies_of(self, self._executor)
        try:
            storage.add_flow(flow)
            prepared = storage.build_context(dockerfile_path="Dockerfile")
        except StorageError as exc:
            raise images.ImageError(str(exc)) from None
        folder.mkdir(parents=True, exist_ok=True)
        prepared.write(folder)
        return str(folder / "Dockerfile")

    def pull_image(self) -> None:
        """Pull this environment's image from its registry.

        Raises:
            ValueError: the environment names no image yet, or has no registry.
            headwater.containers.build.ImageError: the pull failed.
        """
        reference = self.image
        if reference is None or not self.registry_url:
            raise ValueError(
                "DockerEnvironment.pull_image() needs a built image in a registry: build it with "
                f"registry_url= and env.build(flow) first (this one names {reference or 'no image'})"
            )
        self._with_client(lambda client: images.pull_image(client, reference))

    def push_image(self, image_name: str, image_tag: str) -> None:
        """Push the local image ``image_name:image_tag`` (``image_name`` starts with the registry).

        Raises:
            headwater.containers.build.ImageError: the push failed; the message names the registry.
        """
        reference = image_reference(None, image_name, image_tag)
        self._with_client(lambda client: images.push_image(client, reference))

    def _with_client(self, action: Callable[[Any], None]) -> None:
        from headwater.containers.client import DockerUnavailable, docker_client

        try:
            from headwater.config import get_settings

            client = docker_client(self.base_url or get_settings().docker.base_url)
        except DockerUnavailable as exc:
            raise images.ImageError(str(exc)) from None
        try:
            action(client)
        finally:
            client.close()

    # -- the spec ---------------------------------------------------------------------------------

    def spec_args(self) -> dict[str, Any]:
        return {
            "base_image": self.base_image,
            "registry_url": self.registry_url,
            "python_dependencies": list(self.python_dependencies),
            "image_name": self.image_name,
            "image_tag": self.image_tag,
            "env_vars": dict(self.env_vars),
            "files": dict(self.files),
            "local_image": self.local_image,
            "base_url": self.base_url,
            "build_kwargs": dict(self.build_kwargs),
            "ca_certificates": self.ca_certificates,
        }
