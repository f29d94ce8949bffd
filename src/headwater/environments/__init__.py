"""Execution environments: how and where a deployed flow run runs. One module per environment.

``headwater.environments.execution.load_and_run_flow`` is the entrypoint of a
flow-run process.
"""

from headwater.environments.base import Environment
from headwater.environments.local import LocalEnvironment
from headwater.environments.registry import environment_class, environment_from_spec
from headwater.environments.remote import RemoteEnvironment

__all__ = ["Environment", "LocalEnvironment", "RemoteEnvironment", "environment_class", "environment_from_spec"]
