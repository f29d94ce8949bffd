"""The cluster the Kubernetes acceptance test runs against: the emulator, or a real one (the kubeconfig switch).

By default :func:`emulated` describes the API emulator and its pod runner (``emulator.py``,
``podrunner.py``), which the ``k8s_cluster`` fixture starts. With ``HEADWATER_TEST_KUBECONFIG``
set, :func:`from_environment` describes a real cluster instead, from these variables:

``HEADWATER_TEST_KUBECONFIG`` (required)
    the kubeconfig of the cluster (its current context, or ``HEADWATER_TEST_K8S_CONTEXT``).
``HEADWATER_TEST_K8S_REGISTRY`` (required)
    where the flows' image is pushed and the cluster pulls it from, e.g. ``ghcr.io/me/hw-tests``;
    the tests' Docker engine must be able to push there.
``HEADWATER_TEST_K8S_SERVER_HOST`` (required)
    an address of this machine the cluster's pods reach; the test's headwater server binds
    ``0.0.0.0`` and the pods call it at ``http://<host>:<port>`` (with API tokens, as any server
    beyond loopback).
``HEADWATER_TEST_K8S_NAMESPACE`` (default ``default``), ``HEADWATER_TEST_K8S_SERVICE_ACCOUNT``
    (default ``headwater-run``), ``HEADWATER_TEST_K8S_IMAGE_PULL_SECRET`` (default none)
    where the runs go, the service account their pods run under (it must exist with the flow
    runs' Role: ``headwater agent kubernetes install --run-service-account headwater-run``
    prints it), and a secret for a private registry.

A variable missing or wrong is a :class:`TargetError` naming it and the fix, so a real-cluster
run never half-starts. Everything else the test does is the same in both modes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SWITCH = "HEADWATER_TEST_KUBECONFIG"
DOCS = "see docs/kubernetes.md, 'Against a real cluster'"


class TargetError(ValueError):
    """The real-cluster variables can't be used: the message names the variable and the fix."""


@dataclass(frozen=True)
class Target:
    """Where the Kubernetes acceptance test runs flows.

    Attributes:
        kubeconfig: the cluster's kubeconfig (the test, the agent and its clients use it).
        context: the kubeconfig context, None for its current one.
        namespace: where the agent creates the runs' jobs.
        registry: the Docker storage's ``registry_url`` (pushed to by the tests, pulled by the cluster).
        server_bind: the address the test's headwater server binds.
        server_host: the address the pods reach that server at.
        service_account: the service account of the runs' pods (the flow runs' Role).
        image_pull_secret: a secret for the registry, if it needs one.
        emulator: the emulated cluster (``k8s_cluster``), None for a real one.
    """

    kubeconfig: Path
    namespace: str
    registry: str
    server_bind: str
    server_host: str
    service_account: str = "headwater-run"
    context: str | None = None
    image_pull_secret: str | None = None
    emulator: Any = None

    @property
    def real(self) -> bool:
        return self.emulator is None


def switched_on(env: Mapping[str, str]) -> bool:
    """Whether the tests run against a real cluster (``HEADWATER_TEST_KUBECONFIG`` is set)."""
    return bool(env.get(SWITCH, "").strip())


def from_environment(env: Mapping[str, str]) -> Target:
    """The real cluster the variables describe.

    Raises:
        TargetError: a required variable is missing, or the kubeconfig is not a readable file.
    """

    def required(name: str, what: str) -> str:
        value = env.get(name, "").strip()
        if not value:
            raise TargetError(f"{SWITCH} is set (a real cluster), so {name} is needed too: {what} ({DOCS})")
        return value

    kubeconfig = Path(required(SWITCH, "the cluster's kubeconfig")).expanduser()
    if not kubeconfig.is_file():
        raise TargetError(f"{SWITCH}={str(kubeconfig)!r} is not a file: give the path of the cluster's kubeconfig")
    registry = required("HEADWATER_TEST_K8S_REGISTRY", "a registry the tests push the flows' image to and the "
                        "cluster pulls from, e.g. ghcr.io/me/hw-tests")  # fmt: skip
    if "://" in registry:
        raise TargetError(
            f"HEADWATER_TEST_K8S_REGISTRY={registry!r} has a scheme: give it as an image prefix, "
            "e.g. ghcr.io/me/hw-tests"
        )
    host = required("HEADWATER_TEST_K8S_SERVER_HOST", "an address of this machine the cluster's pods reach "
                    "(the test's headwater server listens there)")  # fmt: skip
    if "://" in host or "/" in host or (host.rsplit(":", 1)[-1].isdigit() and host.count(":") == 1):
        raise TargetError(
            f"HEADWATER_TEST_K8S_SERVER_HOST={host!r} must be a host name or address only (no scheme, port or "
            "path): the test picks the port"
        )
    return Target(
        kubeconfig=kubeconfig,
        context=env.get("HEADWATER_TEST_K8S_CONTEXT", "").strip() or None,
        namespace=env.get("HEADWATER_TEST_K8S_NAMESPACE", "").strip() or "default",
        registry=registry.rstrip("/"),
        server_bind="0.0.0.0",
        server_host=host,
        service_account=env.get("HEADWATER_TEST_K8S_SERVICE_ACCOUNT", "").strip() or "headwater-run",
        image_pull_secret=env.get("HEADWATER_TEST_K8S_IMAGE_PULL_SECRET", "").strip() or None,
    )


def emulated(cluster: Any, registry_address: str) -> Target:
    """The emulated cluster: pods on the host network reach the server on loopback and the tests' registry."""
    return Target(
        kubeconfig=cluster.kubeconfig,
        namespace="default",
        registry=f"{registry_address}/flows",
        server_bind="127.0.0.1",
        server_host="127.0.0.1",
        emulator=cluster,
    )
