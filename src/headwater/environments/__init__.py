"""Execution environments: how and where a deployed flow run runs. One module per environment.

``headwater.environments.execution.load_and_run_flow`` is the entrypoint of a
flow-run process. The environments beyond Local and Remote (``DockerEnvironment``,
...) are imported on first use, through ``registry.py``.
"""

from headwater.environments.base import Environment
from headwater.environments.local import LocalEnvironment
from headwater.environments.registry import environment_class, environment_from_spec
from headwater.environments.remote import RemoteEnvironment

__all__ = ["Environment", "LocalEnvironment", "RemoteEnvironment", "environment_class", "environment_from_spec"]


def __getattr__(name: str) -> type[Environment]:
    """The other environments (``DockerEnvironment``, ...) by class name, imported on first use."""
    from headwater.environments.registry import KINDS

    kind = next((kind for kind, (path, _) in KINDS.items() if path.rpartition(".")[2] == name), None)
    if kind is None:
        raise AttributeError(f"module 'headwater.environments' has no attribute {name!r}")
    return environment_class(kind)
