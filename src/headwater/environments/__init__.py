"""Execution environments: how and where a deployed flow run runs. One module per environment.

``headwater.environments.execution.load_and_run_flow`` is the entrypoint of a
flow-run process. The contract is ``base.py``; kinds and specs are ``registry.py``;
the environments beyond Local and Remote (``DockerEnvironment``, ...) are imported
on first use, through the registry.
"""

from __future__ import annotations

from typing import Any

from headwater.environments.base import Environment
from headwater.environments.local import LocalEnvironment
from headwater.environments.registry import environment_class, environment_from_spec, register_environment
from headwater.environments.registry import registry as _kinds
from headwater.environments.remote import RemoteEnvironment

__all__ = [
    "Environment",
    "LocalEnvironment",
    "RemoteEnvironment",
    "environment_class",
    "environment_from_spec",
    "register_environment",
]


def __getattr__(name: str) -> Any:
    """The other environments (``DockerEnvironment``, ...) by class name, and ``execution``, imported on first use."""
    if name == "execution":
        import importlib

        return importlib.import_module("headwater.environments.execution")
    kind = _kinds.kind_of_class_name(name)
    if kind is None:
        raise AttributeError(f"module 'headwater.environments' has no attribute {name!r}")
    return _kinds.get_class(kind)
