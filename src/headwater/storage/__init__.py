"""Storage: where a flow's code is kept between registering it and running it.

``Memory``, ``Local`` and ``Module`` are here; the other kinds (``S3``, ``GCS``,
``Azure``, ``Git``, ``GitHub``, ``Docker``) load through the registry on first
use, so ``from headwater.storage import S3`` imports its SDK only then — or
raises :class:`StorageNotAvailable` (an ``ImportError``) saying what to install.
``Docker`` bakes flows into an image it builds with ``headwater.containers``.
The contract is ``base.py``; kinds and specs are ``registry.py``.
"""

from __future__ import annotations

from typing import Any

from headwater.storage.base import Storage
from headwater.storage.errors import StorageError, StorageNotAvailable
from headwater.storage.local import Local
from headwater.storage.memory import Memory
from headwater.storage.module import Module
from headwater.storage.registry import (
    get_storage_class,
    known_kinds,
    register_storage,
    storage_from_spec,
)

__all__ = [
    "Local",
    "Memory",
    "Module",
    "Storage",
    "StorageError",
    "StorageNotAvailable",
    "get_storage_class",
    "known_kinds",
    "register_storage",
    "storage_from_spec",
]


def __getattr__(name: str) -> Any:
    from headwater.storage.registry import kind_of_class_name

    kind = kind_of_class_name(name)
    if kind is None:
        raise AttributeError(f"module 'headwater.storage' has no attribute {name!r}")
    return get_storage_class(kind)
