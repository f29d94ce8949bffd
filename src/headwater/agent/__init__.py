"""Agents: take flow runs from the API server and start them on the infrastructure they own.

``Agent`` (``base.py``) is the contract: one abstract hook, ``deploy_flow``, and
optional ones; the claim loop it runs is ``loop.py``; kinds are ``registry.py``;
each platform is one module with one subclass: ``headwater.agent.local.LocalAgent``
runs flow runs as local processes, ``headwater.agent.docker.DockerAgent`` in Docker
containers. Importing this package loads no platform SDK.
"""

from headwater.agent.base import Agent, DeployLater
from headwater.agent.registry import get_agent_class, register_agent

__all__ = ["Agent", "DeployLater", "get_agent_class", "register_agent"]
