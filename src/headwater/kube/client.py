"""The connection to a Kubernetes API server, and errors that say what is wrong and what to do.

In a pod (``KUBERNETES_SERVICE_HOST`` set, a service-account token mounted) the in-cluster
configuration is used; elsewhere a kubeconfig: the ``kubeconfig`` argument, else ``KUBECONFIG``,
else ``~/.kube/config``. The ``kubernetes`` package (the ``kubernetes`` extra) is imported
only here and only when a connection is made. Users: ``headwater/agent/kubernetes.py`` and
the Kubernetes environments.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

INSTALL_HINT = "pip install 'headwater[kubernetes]'"
#: where a pod finds its namespace (and its service account's token beside it).
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubernetesUnavailable(RuntimeError):
    """No way to reach a Kubernetes API here: no client package, no kubeconfig, not in a cluster."""


def in_cluster() -> bool:
    """Whether this process runs in a pod with a service account (the in-cluster configuration)."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and (SERVICE_ACCOUNT / "token").is_file()


def pod_namespace() -> str | None:
    """The namespace of the pod this process runs in, if it runs in one."""
    try:
        return (SERVICE_ACCOUNT / "namespace").read_text().strip() or None
    except OSError:
        return None


def api_client(kubeconfig: str | os.PathLike[str] | None = None, context: str | None = None) -> ApiClient:
    """An API client: in-cluster in a pod, else from a kubeconfig.

    Raises:
        KubernetesUnavailable: the ``kubernetes`` package is missing, or there is neither an
            in-cluster configuration nor a readable kubeconfig (the message names where it looked).
    """
    try:
        from kubernetes import client as k8s
        from kubernetes import config as k8s_config
    except ImportError as exc:
        raise KubernetesUnavailable(
            f"Kubernetes support needs the kubernetes package: `{INSTALL_HINT}` ({exc})"
        ) from exc
    configuration = k8s.Configuration()
    if kubeconfig is None and context is None and in_cluster():
        k8s_config.load_incluster_config(client_configuration=configuration)
        return k8s.ApiClient(configuration)
    path = Path(os.fspath(kubeconfig)) if kubeconfig is not None else _default_kubeconfig()
    if path is None or not path.is_file():
        where = str(path) if path is not None else "KUBECONFIG or ~/.kube/config"
        raise KubernetesUnavailable(
            f"no Kubernetes configuration: not running in a pod (no KUBERNETES_SERVICE_HOST and service-account "
            f"token) and no kubeconfig at {where}; run the agent in the cluster "
            "(`headwater agent kubernetes install`), or give a kubeconfig (--kubeconfig, or KUBECONFIG)"
        )
    try:
        k8s_config.load_kube_config(config_file=str(path), context=context, client_configuration=configuration)
    except Exception as exc:  # a malformed file, an unknown context
        raise KubernetesUnavailable(f"the kubeconfig {path} can't be used: {type(exc).__name__}: {exc}") from exc
    return k8s.ApiClient(configuration)


def _default_kubeconfig() -> Path | None:
    first = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    if first:
        return Path(first).expanduser()
    home = Path("~/.kube/config").expanduser()
    return home


def explain(exc: Exception, doing: str) -> str:
    """What went wrong calling the API while ``doing`` (``"create Job 'x' in namespace 'ns'"``), and the fix.

    A 403 names the permission the service account lacks; a 404 of a namespace says so; a 409 is a
    name that is taken; anything else quotes the server's message (never a token: the client's
    error holds none).
    """
    status = getattr(exc, "status", None)
    message = _message(exc)
    if status == 403:
        return (
            f"can't {doing}: the API refused it (403 Forbidden: {message}); the agent's service account lacks "
            "that permission: apply the Role of `headwater agent kubernetes install` (jobs, pods, pods/log and "
            "events in the agent's namespace)"
        )
    if status == 401:
        return f"can't {doing}: the API refused the credentials (401: {message}); check the kubeconfig's user or token"
    if status == 409:
        return f"can't {doing}: {message} (409 Conflict)"
    if status == 422:
        return f"can't {doing}: the API server refused the manifest as invalid (422: {message})"
    if status is None:
        return f"can't {doing}: the Kubernetes API can't be reached ({type(exc).__name__}: {exc})"
    return f"can't {doing}: the API answered {status} ({message})"


def _message(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    if isinstance(body, str):
        try:
            parsed: Any = json.loads(body)
        except ValueError:
            return body[:300]
        if isinstance(parsed, dict) and parsed.get("message"):
            return str(parsed["message"])
    return str(getattr(exc, "reason", None) or exc)
