"""Job manifests for flow runs: read a spec, check it, and make the Job a run runs in.

One shape for the KubernetesAgent's job (``agent/kubernetes.py``) and the second hop of the
Kubernetes environments (``environments/kubernetes.py``): the first container of the spec
runs the flow; headwater sets its command and adds its ``HEADWATER__…`` variables by name
(overriding, never duplicating, one the spec has), labels the Job and its pods with the
flow run (:data:`LABEL_FLOW_RUN_ID`, ...) so whoever started them finds them, and keeps
everything else of the spec as it is. Manifests are plain dicts (JSON), never client objects.
"""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

LABEL_FLOW_RUN_ID = "headwater.io/flow-run-id"
LABEL_FLOW_ID = "headwater.io/flow-id"
LABEL_AGENT_NAME = "headwater.io/agent-name"
LABEL_AGENT_ID = "headwater.io/agent-id"
#: what a Job or pod is for: ``flow-run`` (an agent's), ``second-hop`` (an environment's), ``dask-worker``.
LABEL_ROLE = "headwater.io/role"

#: a flow-run container's own service account, from the downward API: a Kubernetes environment's
#: next hop gets it when its spec names none (``ContextSettings.service_account``).
SERVICE_ACCOUNT_FIELDS = {"HEADWATER__CONTEXT__SERVICE_ACCOUNT": "spec.serviceAccountName"}

#: the flow-run process, as a container command.
FLOW_RUN_COMMAND = ["python", "-m", "headwater", "execute", "flow-run"]

_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


class JobSpecError(ValueError):
    """A job spec (file) that can't be used: unreadable, not YAML, not a Job, no containers."""


def default_job_spec() -> dict[str, Any]:
    """The Job a flow run gets when no spec is given: one container, never restarted, no retries."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "headwater-flow-run"},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "flow"}]}},
        },
    }


def load_job_spec(path: str | Path) -> dict[str, Any]:
    """The Job in the YAML file at ``path``, checked by :func:`check_job_spec`.

    Raises:
        JobSpecError: the file is missing or unreadable, is not YAML, or holds no usable Job.
    """
    source = Path(path).expanduser()
    document = read_yaml_document(source, "job spec file", "a Job", " (kind: Job) where the flow is registered")
    return check_job_spec(document, f"job spec file {str(source)!r}")


def read_yaml_document(path: str | Path, what: str, holding: str, hint: str = "") -> Any:
    """The one YAML document in the file at ``path`` (a ``what``, to hold ``holding``; ``hint`` says more).

    Raises:
        JobSpecError: the file can't be read, is not YAML, or holds other than one document.
    """
    import yaml

    source = str(Path(path).expanduser())
    try:
        text = Path(source).read_text()
    except OSError as exc:
        raise JobSpecError(
            f"{what} {source!r} can't be read ({exc.strerror or exc}); "
            f"give the path of a YAML file holding {holding}{hint}"
        ) from exc
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise JobSpecError(f"{what} {source!r} is not valid YAML: {exc}") from exc
    if len(documents) != 1:
        raise JobSpecError(f"{what} {source!r} must hold one YAML document ({holding}), not {len(documents)}")
    return documents[0]


def check_job_spec(spec: Any, source: str = "the job spec") -> dict[str, Any]:
    """``spec`` if it is a Job with at least one container, else a JobSpecError naming ``source``."""
    if not isinstance(spec, dict):
        raise JobSpecError(f"{source} must be a Job (a mapping with kind: Job), not {type(spec).__name__}")
    if spec.get("kind") != "Job":
        raise JobSpecError(f"{source} is a {spec.get('kind') or 'manifest without a kind'}, not a Job (kind: Job)")
    containers = containers_of(spec)
    if not containers or not all(isinstance(c, dict) for c in containers):
        raise JobSpecError(
            f"{source} has no containers (spec.template.spec.containers); the first container is the one the flow "
            "runs in"
        )
    return spec


def containers_of(spec: Mapping[str, Any]) -> list[Any]:
    template = ((spec.get("spec") or {}).get("template") or {}) if isinstance(spec.get("spec"), dict) else {}
    pod = template.get("spec") if isinstance(template, dict) else None
    containers = pod.get("containers") if isinstance(pod, dict) else None
    return containers if isinstance(containers, list) else []


def job_name(prefix: str, flow_run_id: str) -> str:
    """A unique Job name for a run: ``<prefix>-<8 of the run id>-<4 random>``, a valid DNS label."""
    base = re.sub(r"[^a-z0-9-]+", "-", prefix.lower()).strip("-")[:40] or "headwater"
    return f"{base}-{flow_run_id[:8].lower()}-{uuid.uuid4().hex[:4]}".strip("-")


def check_name(name: str, what: str = "Job name") -> str:
    """``name`` if it is a valid DNS-1123 label (what Job names must be), else a JobSpecError."""
    if not (isinstance(name, str) and len(name) <= 63 and _NAME.fullmatch(name)):
        raise JobSpecError(
            f"{what} {name!r} is not a valid Kubernetes name: at most 63 lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return name


def label_value(value: str) -> str:
    """``value`` made a valid label value (63 characters of letters, digits, '-', '_', '.')."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", value)[:63].strip("-_.")
    return cleaned if _LABEL_VALUE.fullmatch(cleaned) else ""


def _put_env(container: dict[str, Any], items: list[dict[str, Any]]) -> None:
    """Give ``container`` the variables ``items``: each replaces one of the same name, or is added."""
    names = {item["name"] for item in items}
    kept = [item for item in container.get("env") or [] if isinstance(item, dict) and item.get("name") not in names]
    container["env"] = [*kept, *items]


def set_env(container: dict[str, Any], env: Mapping[str, str]) -> None:
    """Give ``container`` the variables ``env``: each replaces one of the same name, or is added."""
    _put_env(container, [{"name": name, "value": value} for name, value in env.items()])


def set_field_env(container: dict[str, Any], fields: Mapping[str, str]) -> None:
    """Give ``container`` variables from the downward API (name -> field path), replacing ones of the same name."""
    _put_env(container, [{"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}
                         for name, path in fields.items()])  # fmt: skip


def flow_run_job(
    spec: Mapping[str, Any],
    *,
    name: str,
    labels: Mapping[str, str],
    env: Mapping[str, str],
    image: str | None = None,
    command: list[str] | None = None,
    service_account_name: str | None = None,
    image_pull_secrets: list[str] | None = None,
    ttl_seconds: int | None = None,
    field_env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The Job a flow run runs in, made from ``spec`` (which is left unchanged).

    The first container gets ``command`` (default :data:`FLOW_RUN_COMMAND`), ``env`` by name,
    ``field_env`` (name -> field path of the downward API), and ``image`` when given (else it
    keeps the spec's); the Job and its pod template get ``labels``; ``restartPolicy: Never``
    and ``backoffLimit: 0`` unless the spec says otherwise (a retried pod would run the flow
    twice), ``ttlSecondsAfterFinished`` when given and the spec has none, and the service
    account and image pull secrets when given.

    Raises:
        JobSpecError: the spec is not a Job with a container, the name is not valid, or the
            first container ends up without an image.
    """
    job = copy.deepcopy(dict(check_job_spec(dict(spec))))
    metadata = job.setdefault("metadata", {})
    metadata["name"] = check_name(name)
    metadata.pop("generateName", None)
    metadata.pop("namespace", None)  # the one it is created in
    metadata["labels"] = {**(metadata.get("labels") or {}), **labels}
    body = job.setdefault("spec", {})
    body.setdefault("backoffLimit", 0)
    if ttl_seconds is not None:
        body.setdefault("ttlSecondsAfterFinished", int(ttl_seconds))
    template = body.setdefault("template", {})
    template_metadata = template.setdefault("metadata", {})
    template_metadata["labels"] = {**(template_metadata.get("labels") or {}), **labels}
    pod = template.setdefault("spec", {})
    pod.setdefault("restartPolicy", "Never")
    if service_account_name:
        pod["serviceAccountName"] = service_account_name
    if image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": secret} for secret in image_pull_secrets]
    container = pod["containers"][0]
    if image:
        container["image"] = image
    if not container.get("image"):
        raise JobSpecError(
            f"the first container of Job {name!r} has no image, and the flow names none (keep the flow in Docker "
            "storage, or set metadata={'image': ...} on its environment, or an image in the job spec)"
        )
    container.setdefault("name", "flow")
    container["command"] = list(command or FLOW_RUN_COMMAND)
    container.pop("args", None)
    set_env(container, env)
    if field_env:
        set_field_env(container, field_env)
    return job
