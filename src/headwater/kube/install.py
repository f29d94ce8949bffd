"""The manifests that run a KubernetesAgent in a cluster: ``headwater agent kubernetes install``.

Least privilege, in one namespace: the agent's ServiceAccount gets a Role on what it touches —
``jobs`` (create, get, list, watch, delete), ``pods`` (get, list, watch), ``pods/log`` (get)
and ``events`` (get, list, watch) — bound by a RoleBinding, and a Deployment of one replica
runs ``headwater agent kubernetes start`` under it. With ``run_service_account``, a second
ServiceAccount (and Role) is made for the flow runs themselves, for flows whose environment
starts jobs and pods of its own (``KubernetesJobEnvironment``, ``DaskKubernetesEnvironment``),
and the agent gives it to their pods. Every manifest passes the Kubernetes schema (the tests
check it with ``kubernetes-validate``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

AGENT_RULES = [
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "list", "watch", "delete"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list", "watch"]},
]
#: what a flow run needs whose environment starts jobs (a second hop) and pods (Dask workers).
RUN_RULES = [
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "list", "watch", "delete"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "get", "list", "watch", "delete"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list", "watch"]},
]


def _account(name: str, namespace: str, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    metadata = {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/part-of": "headwater"}}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": metadata, "rules": rules},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": metadata,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
    ]


def agent_manifests(
    *,
    namespace: str = "default",
    image: str,
    api_url: str,
    labels: Iterable[str] = (),
    name: str = "headwater-agent",
    token_secret: str | None = None,
    run_service_account: str | None = None,
) -> list[dict[str, Any]]:
    """ServiceAccount, Role, RoleBinding and Deployment of an agent (and the flow runs' account, if asked).

    Args:
        namespace: where the agent runs and runs flows.
        image: an image with ``headwater[kubernetes]`` installed.
        api_url: the headwater API server, as pods reach it.
        labels: the agent's labels.
        name: the agent's name (and its ServiceAccount's and Deployment's).
        token_secret: a Secret holding the agent's API token under the key ``token``.
        run_service_account: make this ServiceAccount for the flow runs and give it to their pods.
    """
    command = ["headwater", "agent", "kubernetes", "start", "--namespace", namespace, "--name", name]
    for label in labels:
        command += ["--label", label]
    manifests = _account(name, namespace, AGENT_RULES)
    if run_service_account:
        manifests += _account(run_service_account, namespace, RUN_RULES)
        command += ["--service-account-name", run_service_account]
    env: list[dict[str, Any]] = [{"name": "HEADWATER__API__URL", "value": api_url}]
    if token_secret:
        env.append({"name": "HEADWATER__API__TOKEN",
                    "valueFrom": {"secretKeyRef": {"name": token_secret, "key": "token"}}})  # fmt: skip
    selector = {"app.kubernetes.io/name": name}
    manifests.append({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {**selector, "app.kubernetes.io/part-of": "headwater"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": selector},
                "spec": {
                    "serviceAccountName": name,
                    "containers": [{
                        "name": "agent",
                        "image": image,
                        "command": command,
                        "env": env,
                        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                                      "limits": {"cpu": "500m", "memory": "512Mi"}},
                    }],
                },
            },
        },
    })  # fmt: skip
    return manifests


def to_yaml(manifests: list[dict[str, Any]]) -> str:
    """The manifests as one YAML stream (``kubectl apply -f -`` takes it)."""
    import yaml

    return "---\n".join(yaml.safe_dump(m, sort_keys=False) for m in manifests)
