"""The build context of a flow's image: what goes in it, checked, gathered as one in-memory tar.

:class:`ImageSpec` is what Docker storage and DockerEnvironment put in an image besides
the flows (their arguments, checked by the ``check_*`` functions here);
:func:`prepare_context` gathers the Dockerfile (``dockerfile.py``), the CA bundle, a
copy of headwater's source tree, ``files``, the flow payloads and the healthcheck script
its owner gives (``headwater/storage/healthcheck.py``) into a :class:`BuildContext`, which
``build.py`` sends to the daemon.
Nothing here talks to Docker.
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import os
import re
import sys
import tarfile
import tomllib
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from headwater.containers import dockerfile
from headwater.containers.build import ImageError
from headwater.core.labels import check_strings

#: the folder of headwater's own files in the build context (beside a user Dockerfile's folder).
PREFIX = ".headwater-build"
#: build_kwargs keys headwater sets itself.
_OWN_BUILD_KEYS = {"fileobj", "custom_context", "dockerfile", "tag", "path", "decode", "encoding", "gzip"}
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_NAME = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
# Files made here get this time (a zip, as in a wheel built from them, can't hold times before 1980).
_MTIME = 1577836800  # 2020-01-01


@dataclass
class ImageSpec:
    """What goes into a flow's image besides the flows: the arguments of Docker storage."""

    base_image: str | None = None
    dockerfile: str | None = None
    python_dependencies: list[str] = field(default_factory=list)
    env_vars: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    headwater_version: str | None = None
    extra_dockerfile_commands: list[str] = field(default_factory=list)
    ca_certificates: str | None = None
    ignore_healthchecks: bool = False


@dataclass
class FlowEntry:
    """A flow to bake into (or check in) the image: its location there, and its payload in pickle mode."""

    name: str
    location: str
    payload: bytes | None = None
    #: more modules the healthcheck imports, by who needs them (``{"DaskExecutor": ["distributed"]}``).
    requires: dict[str, list[str]] = field(default_factory=dict)

    @property
    def script(self) -> bool:
        return self.payload is None


@dataclass
class BuildContext:
    """The build context: context path → bytes or a local file, and which entry is the Dockerfile."""

    entries: dict[str, bytes | Path]
    dockerfile_path: str

    @property
    def dockerfile(self) -> str:
        data = self.entries[self.dockerfile_path]
        return data.decode() if isinstance(data, bytes) else data.read_text()

    def tar(self) -> bytes:
        """The context as an uncompressed tar, what the daemon's build endpoint takes."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            for name, data in sorted(self.entries.items()):
                if isinstance(data, Path):
                    info = archive.gettarinfo(str(data), arcname=name)
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    with open(data, "rb") as file:
                        archive.addfile(info, file)
                else:
                    info = tarfile.TarInfo(name)
                    info.size, info.mtime, info.mode = len(data), _MTIME, 0o644
                    archive.addfile(info, io.BytesIO(data))
        return buffer.getvalue()

    def write(self, directory: Path) -> None:
        """Write the context into ``directory`` (``docker build directory`` builds the same image)."""
        for name, data in self.entries.items():
            target = directory / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data if isinstance(data, bytes) else data.read_bytes())


# -- checking arguments ------------------------------------------------------------------------------


def check_files(files: Mapping[str, str] | None, owner: str) -> dict[str, str]:
    """``files`` as {absolute local path: absolute path in the image}, or a ValueError naming the bad entry."""
    checked: dict[str, str] = {}
    for source, target in (files or {}).items():
        local, inside = os.fspath(source), os.fspath(target)
        if not os.path.isabs(os.path.expanduser(local)):
            raise ValueError(
                f"{owner}: files key {local!r} is not an absolute path, so what is copied would depend on the "
                f"current folder; give the local file's absolute path (e.g. os.path.abspath({local!r}))"
            )
        if not inside.startswith("/"):
            raise ValueError(f"{owner}: files[{local!r}] = {inside!r} must be an absolute path in the image")
        checked[os.path.expanduser(local)] = inside
    return checked


def check_image_name(name: str | None, owner: str) -> str | None:
    """``name`` if Docker takes it as a repository name (lower case, ``a-z0-9._-/``), else a ValueError."""
    if name is not None and not (isinstance(name, str) and _NAME.match(name)):
        raise ValueError(
            f"{owner}: image_name {name!r} is not a valid image name: lower-case letters, digits, and . _ - / "
            "between them (e.g. 'flows/etl')"
        )
    return name


def check_image_tag(tag: str | None, owner: str) -> str | None:
    """``tag`` if Docker takes it as a tag (up to 128 of ``A-Za-z0-9_.-``), else a ValueError."""
    if tag is not None and not (isinstance(tag, str) and _TAG.match(tag)):
        raise ValueError(f"{owner}: image_tag {tag!r} is not a valid tag: up to 128 of A-Z a-z 0-9 _ . -")
    return tag


def check_registry(url: str | None, owner: str) -> str | None:
    """``url`` without a trailing ``/``; a URL with a scheme is a ValueError (images name hosts, not URLs)."""
    if url is None:
        return None
    if not isinstance(url, str) or not url.strip("/") or "://" in url:
        raise ValueError(
            f"{owner}: registry_url {url!r} must be a registry host and optional path, like 'localhost:5000' or "
            "'ghcr.io/my-org' (no http://)"
        )
    return url.rstrip("/")


def check_build_kwargs(kwargs: Mapping[str, Any] | None, owner: str) -> dict[str, Any]:
    """``kwargs`` for the SDK's build call, refusing the keys headwater sets itself."""
    own = sorted(_OWN_BUILD_KEYS & set(kwargs or {}))
    if own:
        raise ValueError(f"{owner}: build_kwargs can't set {', '.join(own)}: headwater sets those itself")
    return dict(kwargs or {})


def strings(values: Iterable[str] | None, what: str, owner: str) -> list[str]:
    """Distinct non-empty strings (``python_dependencies``, ``extra_dockerfile_commands``), or a ValueError."""
    return check_strings(values, what, owner)


# -- names ---------------------------------------------------------------------------------------------


def default_base_image() -> str:
    """``python:<major>.<minor>-slim`` of the running Python, so pickles made here load there."""
    return f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"


def new_tag() -> str:
    """A UTC timestamp and a short random id: ``20260101T120000Z-1a2b3c``."""
    return f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}"


# -- the build context ---------------------------------------------------------------------------------


def headwater_source_tree() -> Path | None:
    """The source tree the running headwater comes from (a ``pyproject.toml`` named headwater), if any."""
    import headwater

    package = Path(headwater.__file__).resolve().parent
    for root in (package.parent.parent, package.parent):  # src layout, then flat
        pyproject = root / "pyproject.toml"
        try:
            project = tomllib.loads(pyproject.read_text()).get("project", {})
        except (OSError, tomllib.TOMLDecodeError):
            continue
        if project.get("name") == "headwater":
            return root
    return None


def core_requirements(source: Path | None) -> list[str]:
    """headwater's own requirements (no extras), cloudpickle pinned to the version here; plus the
    source tree's build backend when headwater is installed from it."""
    import cloudpickle

    requirements = [
        requirement
        for requirement in importlib.metadata.requires("headwater") or []
        if "extra" not in requirement.partition(";")[2]
    ]
    # A pickle loads only with the cloudpickle it was written with.
    requirements = [r for r in requirements if not re.match(r"^cloudpickle\b", r)]
    requirements.insert(0, f"cloudpickle=={cloudpickle.__version__}")
    if source is not None:
        build_system = tomllib.loads((source / "pyproject.toml").read_text()).get("build-system", {})
        requirements += list(build_system.get("requires", []))
    return requirements


def _source_files(root: Path) -> Iterator[tuple[str, Path]]:
    """The files of headwater's source tree that ``pip install`` needs: no caches, no build leftovers."""
    for name in ("pyproject.toml", "README.md", "LICENSE", "setup.cfg", "setup.py"):
        if (root / name).is_file():
            yield name, root / name
    import headwater

    package = Path(headwater.__file__ or "").resolve().parent
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
            yield str(path.relative_to(root)), path


def _user_context(path: Path) -> tuple[str, dict[str, bytes | Path]]:
    """A user Dockerfile's text and its folder's files (minus ``.dockerignore``'s), the context's base."""
    from docker.utils.build import exclude_paths

    root = path.parent
    ignore = root / ".dockerignore"
    patterns = [line.strip() for line in ignore.read_text().splitlines()] if ignore.is_file() else []
    patterns = [p for p in patterns if p and not p.startswith("#")]
    entries: dict[str, bytes | Path] = {}
    for relative in sorted(exclude_paths(str(root), patterns, dockerfile=path.name)):
        local = root / relative
        if relative.split("/")[0] == PREFIX:
            raise ImageError(f"the Dockerfile's folder {root} has a {PREFIX} entry, a name headwater keeps for its own")
        if local.is_file():
            entries[relative] = local
    return path.read_text(), entries


def prepare_context(
    spec: ImageSpec,
    flows: list[FlowEntry],
    owner: str,
    dockerfile_path: str = f"{PREFIX}/Dockerfile",
    healthcheck: Path | None = None,
) -> BuildContext:
    """Everything the image needs, with its Dockerfile at ``dockerfile_path``.

    ``healthcheck`` is the script the image's last step runs to check its flows load
    (Docker storage gives ``headwater/storage/healthcheck.py``); none is run without it
    or with ``spec.ignore_healthchecks``.

    Raises:
        ImageError: a local file (a ``files`` key, the Dockerfile, the CA bundle) is missing.
    """
    entries: dict[str, bytes | Path] = {}
    if spec.dockerfile is not None:
        path = Path(spec.dockerfile)
        if not path.is_file():
            raise ImageError(f"{owner}: the Dockerfile {path} does not exist; give the path of an existing Dockerfile")
        start, entries = _user_context(path)
    else:
        start = f"FROM {spec.base_image or default_base_image()}"
    plan = dockerfile.DockerfilePlan(start=start, python_dependencies=list(spec.python_dependencies))
    ca_bundle = spec.ca_certificates  # the owner's argument, or the setting docker.ca_certificates
    if ca_bundle:
        bundle = Path(os.path.expanduser(ca_bundle))
        if not bundle.is_file():
            raise ImageError(
                f"{owner}: the CA bundle {bundle} (ca_certificates, or the setting docker.ca_certificates) does "
                "not exist; give the path of a PEM file, e.g. /etc/ssl/certs/ca-certificates.crt"
            )
        plan.ca_bundle = f"{PREFIX}/ca-bundle.pem"
        entries[plan.ca_bundle] = bundle.read_bytes()
    source = None if spec.headwater_version else headwater_source_tree()
    plan.core_requirements = core_requirements(source)
    if source is not None:
        plan.headwater_source = f"{PREFIX}/headwater-source"
        for relative, local in _source_files(source):
            entries[f"{plan.headwater_source}/{relative}"] = local
    else:
        from headwater import __version__

        plan.headwater_requirement = f"headwater=={spec.headwater_version or __version__}"
    for index, (local_name, target) in enumerate(spec.files.items()):
        local = Path(local_name)
        if not local.exists():
            raise ImageError(
                f"{owner}: files key {local_name!r} does not exist here; copy it there or fix the path "
                f"(it would go to {target} in the image)"
            )
        context_path = f"{PREFIX}/files/{index}"
        if local.is_dir():
            for path in sorted(local.rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    entries[f"{context_path}/{path.relative_to(local)}"] = path
            plan.files.append((context_path + "/", target.rstrip("/") + "/"))
        else:
            entries[f"{context_path}/{local.name}"] = local
            plan.files.append((f"{context_path}/{local.name}", target))
    plan.env_vars = dict(spec.env_vars)
    plan.extra_commands = list(spec.extra_dockerfile_commands)
    payloads = [flow for flow in flows if not flow.script]
    if payloads:
        plan.flows_dir = f"{PREFIX}/flows"
        for flow in payloads:
            assert flow.payload is not None
            entries[f"{plan.flows_dir}/{Path(flow.location).name}"] = flow.payload
    if healthcheck is not None and not spec.ignore_healthchecks and flows:
        plan.healthcheck_script = f"{PREFIX}/healthcheck.py"
        entries[plan.healthcheck_script] = healthcheck.read_bytes()
        checks = [{"name": f.name, "location": f.location, "script": f.script} for f in flows]
        for check, flow in zip(checks, flows, strict=True):
            if flow.requires:
                check["requires"] = flow.requires
        plan.healthcheck_args = json.dumps({"flows": checks})
    entries[dockerfile_path] = dockerfile.render(plan).encode()
    return BuildContext(entries, dockerfile_path)
