"""Agents: take flow runs from the API server and start them on the infrastructure they own.

``Agent`` (``base.py``) is the claim loop; each platform is one module with one
subclass implementing ``deploy_flow``: ``headwater.agent.local.LocalAgent`` runs
flow runs as local processes, ``headwater.agent.docker.DockerAgent`` in Docker
containers. Importing this package loads no platform SDK.
"""

from headwater.agent.base import Agent, DeployLater

__all__ = ["Agent", "DeployLater"]
