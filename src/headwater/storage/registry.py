"""The storage registry: each kind (``"local"``, ``"s3"``, ...) → a lazy import path.

Built on the registry shape every plugin family shares (``headwater.plugins``):
nothing is imported until a kind is asked for, so registering a cloud kind costs
nothing and ``import headwater.storage`` never touches a cloud SDK.
:func:`storage_from_spec` turns ``Storage.serialize()``'s ``{"kind": ..., ...}``
back into a storage through the same table — it is the only place that maps
kinds to classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from headwater.plugins import Entry, Registry
from headwater.storage.base import Storage
from headwater.storage.errors import StorageError, StorageNotAvailable

registry: Registry[Storage] = Registry(
    "storage",
    Storage,
    {
        "memory": Entry("headwater.storage.memory.Memory"),
        "local": Entry("headwater.storage.local.Local"),
        "module": Entry("headwater.storage.module.Module"),
        "s3": Entry("headwater.storage.s3.S3", "aws"),
        "gcs": Entry("headwater.storage.gcs.GCS", "gcp"),
        "azure": Entry("headwater.storage.azure.Azure", "azure"),
        # Git runs the `git` command and GitHub uses httpx (a core dependency): no extra to install.
        "git": Entry("headwater.storage.git.Git"),
        "github": Entry("headwater.storage.github.GitHub"),
        # read inside its own image, where the Docker SDK is not: it needs the SDK only to build
        "docker": Entry("headwater.storage.docker.Docker", "docker", extra_to_load=False),
    },
    register_function="headwater.storage.register_storage",
    error=StorageError,
    not_available=StorageNotAvailable,
)


def known_kinds() -> list[str]:
    """Every registered kind, sorted."""
    return registry.known_kinds()


def kind_of_class_name(name: str) -> str | None:
    """The kind whose class is called ``name`` (``"S3"`` → ``"s3"``), if any."""
    return registry.kind_of_class_name(name)


def register_storage(
    kind: str, path: str, hint: str | None = None, clobber: bool = False, extra: str | None = None
) -> None:
    """Register a storage class by import path under ``kind`` (for third-party backends).

    ``hint`` says what to install when its module can't be imported (``"pip install
    team-pkg"``); ``extra`` names a headwater extra instead.

    Raises:
        StorageError: ``kind`` is taken by another path and ``clobber`` is False.
    """
    registry.register(kind, path, extra=extra, clobber=clobber, hint=hint)


def get_storage_class(kind: str) -> type[Storage]:
    """Import and return the class of ``kind`` (a registered kind, or an import path).

    Raises:
        StorageError: the kind is unknown.
        StorageNotAvailable: its module or its extra's packages can't be imported here.
    """
    return registry.get_class(kind)


def storage_from_spec(spec: Mapping[str, Any]) -> Storage:
    """Rebuild a storage from ``Storage.serialize()``'s output.

    Raises:
        StorageError: the spec is not a dict with a known ``kind``, or doesn't fit
            that kind's constructor (the message names the keys).
        StorageNotAvailable: the kind's module or extra isn't installed here.
    """
    return get_storage_class(registry.spec_kind(spec)).from_spec(spec)
