"""Environments by kind: lazy dotted paths and install hints; rebuilding one from its spec."""

from __future__ import annotations

import importlib
from typing import Any

from headwater.environments.base import Environment

#: kind → (dotted path, what to install when it can't be imported)
KINDS: dict[str, tuple[str, str]] = {
    "local": ("headwater.environments.local.LocalEnvironment", ""),
    "remote": ("headwater.environments.remote.RemoteEnvironment", ""),
    "docker": ("headwater.environments.docker.DockerEnvironment", "pip install headwater[docker]"),
    "kubernetes-job": (
        "headwater.environments.kubernetes.KubernetesJobEnvironment", "pip install headwater[kubernetes]"
    ),
    "dask-kubernetes": (
        "headwater.environments.dask_kubernetes.DaskKubernetesEnvironment", "pip install headwater[kubernetes]"
    ),
    "dask-cloud-provider": (
        "headwater.environments.dask_cloud_provider.DaskCloudProviderEnvironment", "pip install headwater[aws]"
    ),
    "fargate-task": ("headwater.environments.fargate.FargateTaskEnvironment", "pip install headwater[aws]"),
}


def environment_class(kind: str) -> type[Environment]:
    """The class registered for ``kind``.

    Raises:
        ValueError: an unknown kind (the known ones are listed), or one that can't be imported here.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown environment kind {kind!r}; known kinds: {', '.join(sorted(KINDS))}")
    path, hint = KINDS[kind]
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]
    except ImportError as exc:
        fix = f"; {hint}" if hint else ""
        raise ValueError(f"environment kind {kind!r} is not available here ({exc}){fix}") from exc


def environment_from_spec(spec: dict[str, Any]) -> Environment:
    """An environment rebuilt from its ``serialize()`` spec (without callables or an encrypted flow)."""
    from headwater.executors.base import executor_from_path

    spec = dict(spec)
    kind = spec.pop("kind", None)
    if not isinstance(kind, str):
        raise ValueError(f"an environment spec needs a 'kind', not {kind!r}")
    cls = environment_class(kind)
    executor = spec.pop("executor", None)
    spec.pop("built", None)
    if kind == "remote":
        spec["executor"] = spec.pop("executor_path", None)
    elif executor is not None and kind in ("local", "docker"):
        spec["executor"] = executor_from_path(executor["class"], executor.get("kwargs"))
    try:
        return cls(**spec)
    except TypeError as exc:
        raise ValueError(f"environment spec of kind {kind!r} doesn't fit {cls.__name__}: {exc}") from exc
