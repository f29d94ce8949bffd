"""Agents by kind: ``"local"``, ``"docker"``, ``"kubernetes"``, ``"fargate"`` → lazy import paths.

The one place that maps agent kinds to classes (``headwater.plugins`` is the shape
every family shares); ``headwater agent KIND start`` offers one subcommand per kind
here, each with the common options and the class's own (``Agent.add_cli_arguments``).
"""

from __future__ import annotations

from headwater.agent.base import Agent
from headwater.plugins import Entry, Registry

registry: Registry[Agent] = Registry(
    "agent",
    Agent,
    {
        "local": Entry("headwater.agent.local.LocalAgent"),
        "docker": Entry("headwater.agent.docker.DockerAgent", "docker"),
        "kubernetes": Entry("headwater.agent.kubernetes.KubernetesAgent", "kubernetes"),
        "fargate": Entry("headwater.agent.fargate.FargateAgent", "aws"),
    },
    register_function="headwater.agent.register_agent",
)


def register_agent(kind: str, path: str, extra: str | None = None, clobber: bool = False) -> None:
    """Register an agent class by import path under ``kind`` (for third-party platforms)."""
    registry.register(kind, path, extra, clobber)


def get_agent_class(kind: str) -> type[Agent]:
    """The class of ``kind`` (a registered kind or an import path), imported now.

    Raises:
        PluginError: an unknown kind; PluginNotAvailable: its extra isn't installed here.
    """
    return registry.get_class(kind)
