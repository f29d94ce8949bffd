"""headwater: a Python workflow orchestrator.

``import headwater`` loads only the flow model; executors, storage, settings
and the client load when first used — also as attributes: after ``import
headwater``, ``headwater.environments.execution.load_and_run_flow()`` imports
what it names on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from headwater.core import Flow, Parameter, Task, task

__version__ = "0.1.0"

__all__ = ["Flow", "Parameter", "Task", "__version__", "task"]

#: Subpackages and modules reachable as attributes of ``headwater``, imported on first use.
_LAZY = frozenset(
    {
        "agent",
        "cli",
        "client",
        "config",
        "containers",
        "core",
        "engine",
        "environments",
        "executors",
        "plugins",
        "registration",
        "schemas",
        "serialization",
        "server",
        "storage",
        "utilities",
        "visualize",
    }
)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return importlib.import_module(f"headwater.{name}")
    raise AttributeError(f"module 'headwater' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
