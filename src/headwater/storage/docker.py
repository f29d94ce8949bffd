"""Docker storage: flows baked into a Docker image, which is then what runs them.

``add_flow`` keeps the flow's payload (pickle mode) and returns where it will be in
the image, ``/opt/headwater/flows/<flow-slug>.headwater``; ``build()`` makes the
image with ``headwater.containers.build`` (the same code DockerEnvironment uses),
runs the healthcheck inside the build, pushes when ``registry_url`` is set, and
records the image's name and tag. Script mode (``stored_as_script=True``) keeps
``path``, the flow script's path in the image (put it there with ``files``).

``get_flow`` inside a container of the image reads the baked file; anywhere else
it reads the file out of the image through the daemon (pulling the image first
when ``registry_url`` is set and the daemon doesn't have it). The contract is
``base.py``; ``docs/docker.md`` is the user's side and ``tests/storage/test_docker.py``
runs it against a real dockerd and registry.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from headwater.containers import build as images
from headwater.containers import context
from headwater.containers.dockerfile import FLOWS_DIR, check_env_vars
from headwater.containers.names import image_reference
from headwater.core.flow import Flow
from headwater.storage.base import Storage
from headwater.storage.errors import StorageError
from headwater.storage.naming import SUFFIX, slugify

if TYPE_CHECKING:
    from headwater.config.settings import DockerSettings


class Docker(Storage):
    """Keeps flows in a Docker image built from ``base_image`` (or ``dockerfile``).

    Args:
        registry_url: the registry to push to, e.g. ``localhost:5000`` or ``ghcr.io/org``;
            None keeps the image on the daemon that built it.
        base_image: the image to start from; default ``python:<major>.<minor>-slim`` of
            the Python running here (a pickle loads only in the same major.minor).
        dockerfile: a Dockerfile to start from instead of ``FROM base_image``; its
            folder is the build context (``.dockerignore`` is honoured).
        python_dependencies: requirements ``pip install``-ed into the image.
        image_name: the image's repository name; default the slug of the first flow's name.
        image_tag: the tag; default a UTC timestamp and a short id chosen at the first
            ``build()`` and kept, so ``serialize()`` names the image built.
        env_vars: environment variables set in the image.
        files: ``{absolute local path: absolute path in the image}`` to copy in (files or folders).
        headwater_version: ``pip install headwater==X`` in the image; default the running
            headwater, from its source tree when it runs from one, else from the index.
        local_image: the base image is on the daemon already: don't pull it.
        ignore_healthchecks: don't run the healthcheck inside the build.
        base_url: the Docker daemon; default the ``docker.base_url`` setting, then ``DOCKER_HOST``.
        build_kwargs: more arguments of the SDK's build call, e.g. ``{"network_mode": "host"}``.
        stored_as_script: keep the flow as a script in the image, at ``path``.
        path: the flow script's path in the image (script mode).
        extra_dockerfile_commands: Dockerfile lines added after the env vars.
        ca_certificates: a PEM bundle copied into the image and trusted by Python and pip
            there (for networks that intercept TLS); default the ``docker.ca_certificates``
            setting of the machine that builds.
        secrets, labels, add_default_labels: as for :class:`Storage` (no default labels).
    """

    kind: ClassVar[str] = "docker"
    missing_hint: ClassVar[str] = "add it with storage.add_flow(flow) and build the image again"

    def __init__(
        self,
        registry_url: str | None = None,
        base_image: str | None = None,
        dockerfile: str | None = None,
        python_dependencies: Iterable[str] | None = None,
        image_name: str | None = None,
        image_tag: str | None = None,
        env_vars: Mapping[str, str] | None = None,
        files: Mapping[str, str] | None = None,
        headwater_version: str | None = None,
        local_image: bool = False,
        ignore_healthchecks: bool = False,
        base_url: str | None = None,
        build_kwargs: Mapping[str, Any] | None = None,
        stored_as_script: bool = False,
        path: str | None = None,
        extra_dockerfile_commands: Iterable[str] | None = None,
        ca_certificates: str | None = None,
        *,
        secrets: Iterable[str] | None = None,
        labels: Iterable[str] | None = None,
        add_default_labels: bool = True,
    ) -> None:
        super().__init__(
            secrets=secrets, labels=labels, add_default_labels=add_default_labels, stored_as_script=stored_as_script
        )
        owner = "Docker storage"
        try:
            if base_image is not None and dockerfile is not None:
                raise ValueError(
                    f"{owner}: give base_image or dockerfile, not both (the Dockerfile's own FROM is the base)"
                )
            self.registry_url = context.check_registry(registry_url, owner)
            self.base_image = base_image
            self.dockerfile = os.path.abspath(os.path.expanduser(dockerfile)) if dockerfile is not None else None
            self.python_dependencies = context.strings(python_dependencies, "python_dependencies", owner)
            self.image_name = context.check_image_name(image_name, owner)
            self.image_tag = context.check_image_tag(image_tag, owner)
            self.env_vars = check_env_vars(dict(env_vars or {}), owner)
            self.files = context.check_files(files, owner)
            self.build_kwargs = context.check_build_kwargs(build_kwargs, owner)
            self.extra_dockerfile_commands = context.strings(
                extra_dockerfile_commands, "extra_dockerfile_commands", owner
            )
            if stored_as_script and not (isinstance(path, str) and path.startswith("/")):
                raise ValueError(
                    f"{owner}: stored_as_script=True needs path=, the flow script's absolute path in the image "
                    "(copy the script there with files={'/local/flow.py': '/opt/flows/flow.py'})"
                )
            if path is not None and not stored_as_script:
                raise ValueError(
                    f"{owner}: path= is the flow script's path in the image and needs stored_as_script=True; "
                    f"pickled flows go to {FLOWS_DIR}"
                )
        except ValueError as exc:
            raise StorageError(str(exc)) from None
        self.headwater_version = headwater_version
        self.local_image = bool(local_image)
        self.ignore_healthchecks = bool(ignore_healthchecks)
        self.base_url = base_url
        self.path = path
        self.ca_certificates = os.fspath(ca_certificates) if ca_certificates is not None else None
        #: the id of the image the last build() made here (not in the spec).
        self.image_id: str | None = None
        # Whether build() chose image_tag (none was given): a new version may then get a new one.
        self._tag_chosen_by_build = False
        # The payloads add_flow made, by flow name; only this process has them (not in the spec).
        self._payloads: dict[str, bytes] = {}
        # More modules the healthcheck imports, by who needs them (require_dependencies_of).
        self._requires: dict[str, list[str]] = {}

    def __getstate__(self) -> dict[str, Any]:
        # A flow pickled with this storage must not carry the other flows' payloads along.
        state = dict(self.__dict__)
        state["_payloads"] = {}
        return state

    # -- the image -------------------------------------------------------------------------

    @property
    def name(self) -> str | None:
        """The image's full reference, ``[registry_url/]image_name:image_tag``; None before ``build()``."""
        if self.image_name is None or self.image_tag is None:
            return None
        return image_reference(self.registry_url, self.image_name, self.image_tag)

    image = name

    def require_dependencies_of(self, *owners: object) -> None:
        """Have the healthcheck also import the ``dependencies`` of ``owners`` (an environment, an executor).

        The flow's own environment and executors are checked anyway; a DockerEnvironment
        building an image for a flow adds itself and its executor here.
        """
        for owner in owners:
            modules = list(getattr(type(owner), "dependencies", ()))
            if owner is not None and modules:
                self._requires.setdefault(type(owner).__name__, []).extend(modules)

    def image_spec(self) -> context.ImageSpec:
        """What goes into the image besides the flows (the CA bundle: ``ca_certificates``, else the setting)."""
        setting = _docker_settings().ca_certificates
        return context.ImageSpec(
            base_image=self.base_image,
            dockerfile=self.dockerfile,
            python_dependencies=list(self.python_dependencies),
            env_vars=dict(self.env_vars),
            files=dict(self.files),
            headwater_version=self.headwater_version,
            extra_dockerfile_commands=list(self.extra_dockerfile_commands),
            ca_certificates=self.ca_certificates or (str(setting) if setting is not None else None),
            ignore_healthchecks=self.ignore_healthchecks,
        )

    def build_context(self, dockerfile_path: str = f"{context.PREFIX}/Dockerfile") -> context.BuildContext:
        """The build context of the image: its Dockerfile, headwater, ``files`` and the flows.

        Raises:
            StorageError: no flows, a flow added in another process, or a local file is missing.
        """
        if not self.flows:
            raise StorageError(f"{self.describe()} holds no flows to build into an image; add one with add_flow(flow)")
        entries = []
        for name, location in self.flows.items():
            payload = self._payloads.get(name)
            if payload is None and not self.stored_as_script:
                raise StorageError(
                    f"{self.describe()}: flow {name!r} was added in another process (this storage was rebuilt "
                    "from its spec), so its payload is not here to build; add the flow again with add_flow"
                )
            entries.append(context.FlowEntry(name, location, payload, dict(self._requires)))
        try:
            from headwater.storage import healthcheck

            return context.prepare_context(
                self.image_spec(), entries, self.describe(), dockerfile_path, healthcheck=Path(healthcheck.__file__)
            )
        except images.ImageError as exc:
            raise StorageError(str(exc)) from None

    def build(self, push: bool = True) -> Storage:
        """Build the image holding the flows (and push it when ``registry_url`` is set and ``push``).

        The image's name and tag are recorded only once it is built (and pushed), so a
        failed build leaves the storage naming the image it named before.

        Raises:
            StorageError: a missing local file, the daemon is unreachable, a build step or
                the healthcheck failed, or the push failed; the message says which and the fix.
        """
        prepared = self.build_context()
        image_name = self.image_name or slugify(next(iter(self.flows)))
        image_tag = self.image_tag or context.new_tag()
        reference = image_reference(self.registry_url, image_name, image_tag)
        client = self._client()
        try:
            build_kwargs = {"network_mode": _docker_settings().build_network, **self.build_kwargs}
            image_id = images.build_image(
                client, prepared, reference, pull=not self.local_image, build_kwargs=build_kwargs
            )
            if self.registry_url and push:
                images.push_image(client, reference)
        except images.ImageError as exc:
            raise StorageError(f"{self.describe()}: {exc}") from None
        finally:
            client.close()
        self._tag_chosen_by_build = self._tag_chosen_by_build or self.image_tag is None
        self.image_name, self.image_tag, self.image_id = image_name, image_tag, image_id
        return self

    def for_new_version(self, rebuild: bool) -> Storage:
        """A copy without flows; rebuilt, it gets a tag of its own unless the tag was given.

        So registering a changed flow again never overwrites the image an earlier
        version runs; with ``build=False`` the copy names the image already built.
        """
        copy = super().for_new_version(rebuild)
        if rebuild and self._tag_chosen_by_build:
            assert isinstance(copy, Docker)
            copy.image_tag = None
        return copy

    def _client(self) -> Any:
        from headwater.containers.client import DockerUnavailable, docker_client

        try:
            return docker_client(self.base_url or _docker_settings().base_url)
        except DockerUnavailable as exc:
            raise StorageError(f"{self.describe()}: {exc}") from None

    # -- hooks -------------------------------------------------------------------------------

    def describe(self) -> str:
        return f"Docker storage {self.name or '(image not built yet)'}"

    def spec_args(self) -> dict[str, Any]:
        return {
            "registry_url": self.registry_url,
            "base_image": self.base_image,
            "dockerfile": self.dockerfile,
            "python_dependencies": list(self.python_dependencies),
            "image_name": self.image_name,
            "image_tag": self.image_tag,
            "env_vars": dict(self.env_vars),
            "files": dict(self.files),
            "headwater_version": self.headwater_version,
            "local_image": self.local_image,
            "ignore_healthchecks": self.ignore_healthchecks,
            "base_url": self.base_url,
            "build_kwargs": dict(self.build_kwargs),
            "stored_as_script": self.stored_as_script,
            "path": self.path,
            "extra_dockerfile_commands": list(self.extra_dockerfile_commands),
            "ca_certificates": self.ca_certificates,
            **super().spec_args(),
        }

    def save_flow(self, flow: Flow) -> str:
        if self.stored_as_script:
            assert self.path is not None
            local = self._local_script()
            if local is not None:
                from headwater.storage.script import extract_flow_from_file

                extract_flow_from_file(path=local, flow_name=flow.name)
            return self.path
        location = f"{FLOWS_DIR}/{slugify(flow.name)}{SUFFIX}"
        clash = next((name for name, loc in self.flows.items() if loc == location), None)
        if clash is not None:
            raise StorageError(
                f"flows {clash!r} and {flow.name!r} would both be kept at {location} in {self.describe()} "
                "(their names make the same file name); rename one, or use another Docker storage"
            )
        from headwater.storage.payload import flow_to_bytes

        self._payloads[flow.name] = flow_to_bytes(flow)
        return location

    def _local_script(self) -> str | None:
        """The local file ``files`` copies to ``path``, if any (checked at add_flow to build the flow)."""
        assert self.path is not None
        for local, inside in self.files.items():
            if inside == self.path:
                return local
            folder = inside.rstrip("/") + "/"
            if self.path.startswith(folder) and os.path.isdir(local):
                return os.path.join(local, self.path[len(folder) :])
        return None

    def locate(self, key: str) -> str | None:
        """A path in the image (``/opt/headwater/flows/….headwater``, a script) is its own location."""
        if key.startswith(FLOWS_DIR + "/") or (self.stored_as_script and key == self.path):
            return key
        return None

    def load_flow(self, location: str, flow_name: str | None) -> Flow:
        script = self.stored_as_script or not location.endswith(SUFFIX)
        if os.path.isfile(location):  # inside a container of the image
            if script:
                from headwater.storage.script import extract_flow_from_file

                return extract_flow_from_file(path=location, flow_name=flow_name)
            from headwater.storage.payload import flow_from_bytes

            with open(location, "rb") as file:
                return flow_from_bytes(file.read(), source=location)
        data = self._read_from_image(location)
        if script:
            from headwater.storage.script import extract_flow_from_file

            return extract_flow_from_file(path=location, contents=data.decode("utf-8"), flow_name=flow_name)
        from headwater.storage.payload import flow_from_bytes

        return flow_from_bytes(data, source=f"{location} in image {self.name}")

    def _read_from_image(self, location: str) -> bytes:
        """The file at ``location`` in the built image, pulled first if the daemon lacks it and it has a registry."""
        reference = self.name
        if reference is None:
            raise StorageError(
                f"{self.describe()}: the image has not been built yet, so {location} is in no image; call "
                "storage.build() (flow.register() does) before get_flow outside a container of the image"
            )
        client = self._client()
        try:
            try:
                return images.read_file(client, reference, location)
            except images.ImageMissing:
                if not self.registry_url:
                    raise
                images.pull_image(client, reference)
                return images.read_file(client, reference, location)
        except images.ImageError as exc:
            raise StorageError(f"{self.describe()}: {exc}") from None
        finally:
            client.close()


def _docker_settings() -> DockerSettings:
    """The ``docker`` settings: the defaults of this storage's daemon, build network and CA bundle.

    Read by the storage itself when it builds (the owner of those arguments), never by
    ``headwater.containers``, which takes each value as an argument.
    """
    from headwater.config import get_settings

    return get_settings().docker
