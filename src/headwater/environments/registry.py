"""Environments by kind: ``"local"``, ``"remote"``, ``"docker"``, ``"kubernetes-job"``,
``"fargate-task"``, ``"dask-kubernetes"``, ``"dask-cloudprovider"`` → lazy import paths.

The one place that maps environment kinds to classes (``headwater.plugins``
is the shape every family shares). :func:`environment_from_spec` rebuilds an
environment from ``Environment.serialize()``'s ``{"kind": ..., ...}``; a class of
the user's own, registered under no kind, is named by its import path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from headwater.environments.base import Environment
from headwater.plugins import Entry, Registry

registry: Registry[Environment] = Registry(
    "environment",
    Environment,
    {
        "local": Entry("headwater.environments.local.LocalEnvironment"),
        "remote": Entry("headwater.environments.remote.RemoteEnvironment"),
        "docker": Entry("headwater.environments.docker.DockerEnvironment", "docker"),
        "kubernetes-job": Entry("headwater.environments.kubernetes.KubernetesJobEnvironment", "kubernetes"),
        "fargate-task": Entry("headwater.environments.fargate.FargateTaskEnvironment", "aws"),
        "dask-kubernetes": Entry("headwater.environments.dask_kubernetes.DaskKubernetesEnvironment", "dask-kubernetes"),
        "dask-cloudprovider": Entry("headwater.environments.dask_cloudprovider.DaskCloudProviderEnvironment", "dask"),
    },
    register_function="headwater.environments.register_environment",
)


def register_environment(kind: str, path: str, extra: str | None = None, clobber: bool = False) -> None:
    """Register an environment class by import path under ``kind`` (for third-party environments)."""
    registry.register(kind, path, extra, clobber)


def environment_class(kind: str) -> type[Environment]:
    """The class of ``kind`` (a registered kind or an import path), imported now.

    Raises:
        PluginError: an unknown kind (the known ones are listed).
        PluginNotAvailable: its module or its extra's packages can't be imported here.
    """
    return registry.get_class(kind)


def environment_from_spec(spec: Mapping[str, Any]) -> Environment:
    """An environment rebuilt from its ``serialize()`` spec (without callables or an encrypted flow).

    Raises:
        PluginError: not a dict with a known kind, or a spec its class doesn't take.
        PluginNotAvailable: the kind's extra isn't installed here.
    """
    return environment_class(registry.spec_kind(spec)).from_spec(spec)
