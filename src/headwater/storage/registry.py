"""The storage registry: each kind (``"local"``, ``"s3"``, ...) → a lazy import path.

Modelled on fsspec's ``registry.py``: nothing is imported until a kind is
asked for, so registering a cloud kind costs nothing and ``import
headwater.storage`` never touches a cloud SDK. :func:`storage_from_spec` turns
``Storage.serialize()``'s ``{"kind": ..., ...}`` back into a storage through
the same table — it is the only place that maps kinds to classes.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from headwater.storage.base import Storage
from headwater.storage.errors import StorageError, StorageNotAvailable


@dataclass(frozen=True)
class StorageEntry:
    """Where a kind's class lives and what to install for it (None: nothing extra)."""

    path: str
    hint: str | None = None

    @property
    def class_name(self) -> str:
        """The class's name, as exported by ``headwater.storage``."""
        return self.path.rpartition(".")[2]


def _extra(what: str, extra: str) -> str:
    return f"{what} storage needs `pip install headwater[{extra}]`"


_registry: dict[str, StorageEntry] = {
    "memory": StorageEntry("headwater.storage.memory.Memory"),
    "local": StorageEntry("headwater.storage.local.Local"),
    "module": StorageEntry("headwater.storage.module.Module"),
    "s3": StorageEntry("headwater.storage.s3.S3", _extra("S3", "aws")),
    "gcs": StorageEntry("headwater.storage.gcs.GCS", _extra("GCS", "gcp")),
    "azure": StorageEntry("headwater.storage.azure.Azure", _extra("Azure", "azure")),
    # Git runs the `git` command and GitHub uses httpx (a core dependency): no extra to install.
    "git": StorageEntry("headwater.storage.git.Git"),
    "github": StorageEntry("headwater.storage.github.GitHub"),
    "docker": StorageEntry("headwater.storage.docker.Docker", _extra("Docker", "docker")),
}


def known_kinds() -> list[str]:
    """Every registered kind, sorted."""
    return sorted(_registry)


def registered(kind: str) -> StorageEntry:
    """The registry entry of ``kind``.

    Raises:
        StorageError: the kind is unknown; the message lists the known kinds.
    """
    entry = _registry.get(kind) if isinstance(kind, str) else None
    if entry is None:
        raise StorageError(
            f"unknown storage kind {kind!r}; known kinds: {', '.join(known_kinds())} "
            "(a third-party kind must be registered with headwater.storage.register_storage)"
        )
    return entry


def kind_of_class_name(name: str) -> str | None:
    """The kind whose class is called ``name`` (``"S3"`` → ``"s3"``), if any."""
    return next((kind for kind, entry in _registry.items() if entry.class_name == name), None)


def register_storage(kind: str, path: str, hint: str | None = None, clobber: bool = False) -> None:
    """Register a storage class by import path under ``kind`` (for third-party backends).

    Raises:
        StorageError: ``kind`` is taken by another path and ``clobber`` is False.
    """
    if not isinstance(kind, str) or not kind or "." not in path:
        raise StorageError(f"register_storage needs a kind and a dotted path, not {kind!r}, {path!r}")
    current = _registry.get(kind)
    if current is not None and current.path != path and not clobber:
        raise StorageError(
            f"storage kind {kind!r} is already registered to {current.path}; pass clobber=True to replace it"
        )
    _registry[kind] = StorageEntry(path, hint)


def get_storage_class(kind: str) -> type[Storage]:
    """Import and return the class of ``kind``.

    Raises:
        StorageError: the kind is unknown.
        StorageNotAvailable: its module or its extra's packages can't be imported here.
    """
    entry = registered(kind)
    module_name, _, attr = entry.path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            from headwater import __version__

            needs = f" (when it is: {entry.hint})" if entry.hint else ""
            raise StorageNotAvailable(
                f"storage kind {kind!r} ({entry.class_name}) is not available in this release of "
                f"headwater ({__version__}): there is no module {module_name}{needs}"
            ) from exc
        hint = entry.hint or f"{entry.class_name} storage needs packages that are not installed"
        raise StorageNotAvailable(f"{hint} (importing {module_name} failed: {exc})") from exc
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, Storage)):
        raise StorageError(f"storage kind {kind!r} points to {entry.path}, which is not a Storage class")
    return cls


def storage_from_spec(spec: Mapping[str, Any]) -> Storage:
    """Rebuild a storage from ``Storage.serialize()``'s output.

    Raises:
        StorageError: the spec is not a dict with a known ``kind``, or doesn't fit
            that kind's constructor (the message names the keys).
        StorageNotAvailable: the kind's module or extra isn't installed here.
    """
    if not isinstance(spec, Mapping):
        raise StorageError(f"a storage spec is a dict like {{'kind': 'local', ...}}, not {type(spec).__name__}")
    if "kind" not in spec:
        raise StorageError(f"storage spec {dict(spec)!r} has no 'kind'; known kinds: {', '.join(known_kinds())}")
    return get_storage_class(spec["kind"]).from_spec(spec)
