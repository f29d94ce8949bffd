"""ECS for the FargateAgent and the FargateTaskEnvironment: task definitions reused, tasks read.

* :func:`split_kwargs`: keyword arguments sorted by name into what ``register_task_definition``
  takes and what ``run_task`` takes (from botocore's own model of ECS; a name both take goes to
  both), an unknown name an error naming both lists.
* :func:`ensure_task_definition`: the ARN of an ACTIVE revision of the family that matches the
  wanted definition field by field, registering one only when none does, and saying which
  fields differed (a run never makes a revision of its own).
* :func:`set_container_env`: a container override's variables replaced by name.
* :func:`stop_message`: why a task stopped, in words (stop code, reason, exit code, container reason).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from headwater.aws.errors import describe_failures, error_code, explain

logger = logging.getLogger("headwater.aws")

#: Tags headwater puts on the tasks it runs (an agent finds its runs' tasks by them).
TAG_FLOW_RUN_ID = "headwater.flow-run-id"
TAG_FLOW_ID = "headwater.flow-id"
TAG_AGENT_NAME = "headwater.agent-name"
TAG_ROLE = "headwater.role"
#: The flow runner's container, when headwater makes the task definition.
FLOW_CONTAINER = "flow"
#: Revisions of a family looked at (newest first) for one that matches, beyond the latest.
REVISIONS_LOOKED_AT = 10
#: Fields ECS adds to a description that a registration does not give (never compared).
_DESCRIBED_ONLY = frozenset({
    "taskDefinitionArn", "revision", "status", "requiresAttributes", "compatibilities", "registeredAt",
    "registeredBy", "deregisteredAt",
})  # fmt: skip


class EcsConfigError(ValueError):
    """ECS arguments that can't work (unknown names, family ≠ taskDefinition, no subnets for awsvpc)."""


@functools.cache
def operation_params(operation: str) -> frozenset[str]:
    """The parameter names of an ECS operation (``"RunTask"``), from botocore's model of ECS."""
    from botocore.model import ServiceModel

    from headwater.aws.session import model_loader

    model = ServiceModel(model_loader().load_service_model("ecs", "service-2"), "ecs")
    return frozenset(model.operation_model(operation).input_shape.members)


def split_kwargs(kwargs: Mapping[str, Any], what: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``kwargs`` as (register_task_definition's, run_task's); a name both take goes to both.

    Raises:
        EcsConfigError: a name neither takes; the message lists both operations' names.
    """
    register, run = operation_params("RegisterTaskDefinition"), operation_params("RunTask")
    unknown = sorted(set(kwargs) - register - run)
    if unknown:
        raise EcsConfigError(
            f"{what} got keyword argument(s) {', '.join(map(repr, unknown))} that neither boto3's "
            f"register_task_definition nor run_task takes. register_task_definition takes: "
            f"{', '.join(sorted(register))}. run_task takes: {', '.join(sorted(run))}"
        )
    return ({k: v for k, v in kwargs.items() if k in register}, {k: v for k, v in kwargs.items() if k in run})


def tags_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"key": key, "value": value} for key, value in tags.items()]


def tags_of(described: Mapping[str, Any]) -> dict[str, str]:
    return {t.get("key", ""): t.get("value", "") for t in described.get("tags") or []}


def set_container_env(override: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """``override`` (a containerOverride) with ``env`` set by name: a variable it named is replaced, not doubled."""
    kept = [e for e in override.get("environment") or [] if e.get("name") not in env]
    override["environment"] = kept + [{"name": name, "value": value} for name, value in env.items()]
    return override


# -- task definitions -------------------------------------------------------------------------------


def differences(wanted: Mapping[str, Any], described: Mapping[str, Any], path: str = "") -> list[str]:
    """The fields of ``wanted`` a described task definition holds otherwise (dotted paths).

    Only what ``wanted`` gives is compared (ECS fills in defaults); numbers and their strings
    are equal (ECS answers ``"256"`` for 256); variables, secrets and tags compare as sets.
    """
    found: list[str] = []
    for key, value in wanted.items():
        if key in _DESCRIBED_ONLY:
            continue
        where = f"{path}{key}"
        if not _same(value, described.get(key), key, where, found):
            found.append(where)
    return found


def _same(value: Any, other: Any, key: str, where: str, found: list[str]) -> bool:
    if value in (None, [], {}, "") and other in (None, [], {}, ""):
        return True
    if isinstance(value, Mapping):
        if not isinstance(other, Mapping):
            return False
        inner = differences(value, other, f"{where}.")
        found.extend(inner)
        return True  # the inner fields were named
    if isinstance(value, list):
        if not isinstance(other, list):
            return False
        if key in ("environment", "secrets", "tags", "environmentFiles"):
            return _as_set(value) == _as_set(other)
        if len(value) != len(other):
            return False
        for index, (mine, theirs) in enumerate(zip(value, other, strict=True)):
            if isinstance(mine, Mapping) and isinstance(theirs, Mapping):
                found.extend(differences(mine, theirs, f"{where}[{index}]."))
            elif not _same(mine, theirs, key, f"{where}[{index}]", found):
                return False
        return True
    if isinstance(value, bool) or isinstance(other, bool):
        return bool(value == other)
    return str(value) == str(other)


def _as_set(items: Iterable[Any]) -> set[str]:
    import json

    return {json.dumps(item, sort_keys=True, default=str) for item in items}


def ensure_task_definition(ecs: Any, definition: Mapping[str, Any], what: str) -> str:
    """The ARN of an ACTIVE revision of ``definition["family"]`` matching ``definition``, registered if none does.

    One call when the latest revision matches; when it doesn't, the log says which fields differ.

    Raises:
        RuntimeError: AWS refused (the message names the family and the fix).
    """
    family = str(definition["family"])
    latest = _describe(ecs, family)
    if latest is not None:
        changed = differences(definition, latest)
        if not changed:
            return str(latest["taskDefinitionArn"])
        for arn in _other_active_revisions(ecs, family, latest):
            candidate = _describe(ecs, arn)
            if candidate is not None and not differences(definition, candidate):
                logger.info("%s: task definition %s matches (the family's latest revision does not)", what, arn)
                return arn
        logger.info(
            "%s: registering a new revision of task definition family %r: the latest ACTIVE revision (%s) differs "
            "in %s", what, family, latest.get("revision"), ", ".join(changed),
        )  # fmt: skip
    try:
        answer = ecs.register_task_definition(**definition)
    except Exception as exc:
        raise RuntimeError(f"{what}: {explain(exc, f'register task definition family {family!r}')}") from None
    arn = str(answer["taskDefinition"]["taskDefinitionArn"])
    logger.info("%s: registered task definition %s", what, arn)
    return arn


def _describe(ecs: Any, name: str) -> dict[str, Any] | None:
    try:
        answer = ecs.describe_task_definition(taskDefinition=name, include=["TAGS"])
    except Exception as exc:
        if error_code(exc) in ("ClientException", "InvalidParameterException"):
            return None  # no such family (or revision): ECS answers "Unable to describe task definition."
        raise RuntimeError(explain(exc, f"describe task definition {name!r}")) from None
    described = dict(answer["taskDefinition"])
    if described.get("status") not in (None, "ACTIVE"):
        return None
    described["tags"] = answer.get("tags") or []
    return described


def _other_active_revisions(ecs: Any, family: str, latest: Mapping[str, Any]) -> list[str]:
    try:
        arns = ecs.list_task_definitions(familyPrefix=family, status="ACTIVE", sort="DESC")["taskDefinitionArns"]
    except Exception as exc:
        logger.debug("can't list the revisions of %s: %s", family, exc)
        return []
    others = [a for a in arns if a != latest.get("taskDefinitionArn") and a.rsplit("/", 1)[-1].split(":")[0] == family]
    others.sort(key=lambda arn: int(arn.rsplit(":", 1)[-1]), reverse=True)
    return others[:REVISIONS_LOOKED_AT]


# -- clusters and tasks ------------------------------------------------------------------------------


def check_cluster(ecs: Any, cluster: str, what: str) -> str | None:
    """None when ``cluster`` exists and is ACTIVE, else why not (with the fix)."""
    try:
        answer = ecs.describe_clusters(clusters=[cluster])
    except Exception as exc:
        return f"{what}: {explain(exc, f'describe ECS cluster {cluster!r}')}"
    clusters = answer.get("clusters") or []
    if not clusters or clusters[0].get("status") != "ACTIVE":
        status = clusters[0].get("status") if clusters else (describe_failures(answer) or "MISSING")
        return (
            f"{what}: the ECS cluster {cluster!r} does not exist in this account and region ({status}); create it "
            "(aws ecs create-cluster --cluster-name NAME) or name an existing one (aws ecs list-clusters)"
        )
    return None


def stop_message(task: Mapping[str, Any], container: str | None = None) -> str:
    """Why ``task`` stopped, in words: its stop code and reason, and its (first, or named) container's exit."""
    task_id = str(task.get("taskArn", "")).rsplit("/", 1)[-1]
    message = f"the flow run's ECS task {task_id} stopped"
    said = [str(part) for part in (task.get("stopCode"), task.get("stoppedReason")) if part]
    if said:
        message += f" ({': '.join(said)})"
    containers = task.get("containers") or []
    chosen = next((c for c in containers if c.get("name") == container), containers[0] if containers else None)
    if chosen is None or not (chosen.get("lastStatus") == "STOPPED" or chosen.get("reason")):
        return message
    exit_code = chosen.get("exitCode")
    message += f"; its container {chosen.get('name')!r} "
    message += f"exited with code {exit_code}" if exit_code is not None else "did not run"
    if chosen.get("reason"):
        message += f" ({chosen['reason']})"
    if exit_code == 0:
        message += " but left the run unfinished"
    return message


def awslogs_stream(definition: Mapping[str, Any], container: str, task_arn: str) -> tuple[str, str] | None:
    """(log group, log stream) of ``container`` in a task of ``definition`` when it logs with ``awslogs``.

    ECS names the stream ``<awslogs-stream-prefix>/<container>/<task id>``; without a prefix
    the stream's name is not knowable, and None is returned.
    """
    found = next((c for c in definition.get("containerDefinitions") or [] if c.get("name") == container), None)
    config = (found or {}).get("logConfiguration") or {}
    options = config.get("options") or {}
    group, prefix = options.get("awslogs-group"), options.get("awslogs-stream-prefix")
    if config.get("logDriver") != "awslogs" or not group or not prefix:
        return None
    task_id = task_arn.rsplit("/", 1)[-1]
    return str(group), f"{prefix}/{container}/{task_id}"
