"""FargateTaskEnvironment: the flow runs in an ECS task of its own (Fargate, or EC2), a second hop.

The first hop (the flow-run process an agent started) calls ``setup(flow)``, which makes sure an
ACTIVE revision of the task definition matches the one asked for (registering one only when
none does, and logging the fields that differ: ``headwater.aws.ecs``), then ``execute(flow)``,
which runs the task and returns. The task's first container runs ``python -m headwater execute
flow-run`` again with the run's ``HEADWATER__…`` variables (set by name in the container
overrides, so the definition stays the same from run to run) and
``HEADWATER__CONTEXT__SECOND_HOP=true``; there ``run(flow)`` runs the flow with
``on_start``/``on_exit``. Started by a FargateAgent's task, the task carries that agent's
``startedBy`` and tags, so the agent watches, settles and stops it too.

Credentials given to the constructor make this object's boto3 clients and nothing else: they are
not in its spec, its repr, its log lines, or its pickle (the flow's code), so where the flow runs
the task's own role (or the environment's variables) is used. Users' docs: ``docs/aws.md``.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from headwater.environments.base import Environment

if TYPE_CHECKING:
    from headwater.config import Settings
    from headwater.core.flow import Flow
    from headwater.executors.base import Executor

logger = logging.getLogger("headwater.environment")

#: What the task's first container runs.
FLOW_RUN_COMMAND = ("python", "-m", "headwater", "execute", "flow-run")
LAUNCH_TYPES = ("FARGATE", "EC2", "EXTERNAL")
_CREDENTIALS = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")


class FargateTaskEnvironment(Environment):
    """Runs the flow in an ECS task made from boto3's own arguments (a second hop).

    Args:
        launch_type: ``"FARGATE"`` (default), ``"EC2"`` or ``"EXTERNAL"``.
        aws_access_key_id, aws_secret_access_key, aws_session_token: credentials for this object's
            clients only (never in its spec, repr, logs or pickle); default boto3's own lookup.
        region_name: the AWS region; default the environment's (``AWS_DEFAULT_REGION``, the profile).
        executor: the executor the flow runs with in the task; default the ``engine.executor`` setting.
        labels, on_start, on_exit, metadata: as for :class:`Environment`.
        **kwargs: boto3's ``register_task_definition`` and ``run_task`` arguments (``family``,
            ``containerDefinitions``, ``cpu``, ``memory``, ``taskRoleArn``, ``cluster``,
            ``networkConfiguration``, ...), sorted by name; a name both take (``tags``,
            ``placementConstraints``) goes to both.

    Raises:
        ValueError: a name neither takes (both lists named), ``family`` ≠ ``taskDefinition``, a bad
            launch type, or a value that isn't JSON.
    """

    kind = "fargate-task"
    dependencies: ClassVar[tuple[str, ...]] = ("boto3",)

    def __init__(
        self,
        launch_type: str = "FARGATE",
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        region_name: str | None = None,
        executor: Executor | None = None,
        labels: Iterable[str] | None = None,
        on_start: Callable[[], Any] | None = None,
        on_exit: Callable[[], Any] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        from headwater.aws.ecs import split_kwargs
        from headwater.executors.base import Executor

        super().__init__(labels=labels, on_start=on_start, on_exit=on_exit, metadata=metadata)
        if launch_type not in LAUNCH_TYPES:
            raise ValueError(
                f"FargateTaskEnvironment launch_type must be one of {', '.join(LAUNCH_TYPES)}, not {launch_type!r}"
            )
        if executor is not None and not isinstance(executor, Executor):
            raise TypeError(
                f"FargateTaskEnvironment executor must be a headwater Executor, not {type(executor).__name__}"
            )
        try:
            kwargs = json.loads(json.dumps(kwargs))
        except (TypeError, ValueError):
            raise ValueError(
                "FargateTaskEnvironment keyword arguments must be JSON values, as boto3 takes them"
            ) from None
        family, definition = kwargs.get("family"), kwargs.get("taskDefinition")
        if family is not None and definition is not None and family != _family_of(definition):
            raise ValueError(
                f"FargateTaskEnvironment family={family!r} and taskDefinition={definition!r} name different task "
                "definitions; the task runs the definition this environment registers, so give family alone (or "
                "taskDefinition naming the same family)"
            )
        self.launch_type = launch_type
        self.region_name = region_name
        self._executor = executor
        self.task_definition_kwargs, self.task_run_kwargs = split_kwargs(kwargs, "FargateTaskEnvironment")
        self._credentials = {"aws_access_key_id": aws_access_key_id, "aws_secret_access_key": aws_secret_access_key,
                             "aws_session_token": aws_session_token}  # fmt: skip
        self._ecs: Any = None
        #: the task definition ARN ``setup`` found or registered.
        self.task_definition_arn: str | None = None

    def __repr__(self) -> str:
        return f"<FargateTaskEnvironment: {self.launch_type} labels {sorted(self.labels)}>"

    def __getstate__(self) -> dict[str, Any]:
        """What pickles with the flow: no credentials and no client."""
        state = dict(self.__dict__)
        state["_credentials"] = dict.fromkeys(_CREDENTIALS)
        state["_ecs"] = None
        return state

    @property
    def executor(self) -> Executor | None:
        return self._executor

    @property
    def aws_access_key_id(self) -> str | None:
        """The key id given to this object (None in a copy unpickled elsewhere: it never travels)."""
        return self._credentials["aws_access_key_id"]

    @property
    def aws_secret_access_key(self) -> str | None:
        return self._credentials["aws_secret_access_key"]

    @property
    def aws_session_token(self) -> str | None:
        return self._credentials["aws_session_token"]

    def spec_args(self) -> dict[str, Any]:
        """launch type, region and boto3's arguments; never the credentials."""
        return {
            "launch_type": self.launch_type,
            "region_name": self.region_name,
            "task_definition_kwargs": self.task_definition_kwargs,
            "task_run_kwargs": self.task_run_kwargs,
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Environment:
        """Build the environment from :meth:`serialize`'s spec (boto3's arguments flattened back into kwargs)."""
        from headwater.plugins import PluginError

        args = cls.spec_to_args(spec)
        kwargs = {**(args.pop("task_definition_kwargs", None) or {}), **(args.pop("task_run_kwargs", None) or {})}
        known = {"launch_type", "region_name", "executor", "labels", "metadata"}
        unknown = sorted(set(args) - known)
        if unknown:
            raise PluginError(f"environment spec of kind 'fargate-task' has key(s) {', '.join(map(repr, unknown))} "
                              f"that FargateTaskEnvironment does not take (it takes: kind, {', '.join(sorted(known))}, "
                              "task_definition_kwargs, task_run_kwargs)")  # fmt: skip
        try:
            return cls(**args, **kwargs)
        except (TypeError, ValueError) as exc:
            raise PluginError(
                f"environment spec of kind 'fargate-task' doesn't fit FargateTaskEnvironment: {exc}"
            ) from exc

    # -- the clients --------------------------------------------------------------------------------

    def ecs(self, settings: Settings | None = None) -> Any:
        """This environment's ECS client (made once; region: the argument, else the run's, else boto3's)."""
        if self._ecs is None:
            from headwater.aws.session import make_client

            region = self.region_name or ((settings.context.ecs.get("region") or None) if settings else None)
            self._ecs = make_client(
                "ecs", "FargateTaskEnvironment", self._credentials["aws_access_key_id"],
                self._credentials["aws_secret_access_key"], self._credentials["aws_session_token"], region,
            )  # fmt: skip
        return self._ecs

    # -- the task definition --------------------------------------------------------------------------

    def task_definition(self, flow: Flow, image: str | None) -> dict[str, Any]:
        """What ``register_task_definition`` gets: the kwargs, with defaults for what they leave out.

        Default family ``headwater-<flow>``; default one container named ``flow`` in ``image``; the
        first container runs the flow-run command; FARGATE gets ``awsvpc`` and 256 CPU / 512 MiB.

        Raises:
            ValueError: the first container names no image and the run has none.
        """
        definition = copy.deepcopy(self.task_definition_kwargs)
        family = definition.get("family") or _family_of(self.task_run_kwargs.get("taskDefinition")) or (
            "headwater-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", flow.name).strip("-") or "flow"))[:255]  # fmt: skip
        definition["family"] = family
        containers = definition.get("containerDefinitions") or [{"name": "flow"}]
        first = dict(containers[0])
        first.setdefault("name", "flow")
        if not first.get("image"):
            if not image:
                raise ValueError(
                    f"FargateTaskEnvironment: the task definition's first container ({first['name']!r}) names no "
                    "image and the flow run has none (no Docker storage or image metadata); give "
                    "containerDefinitions=[{'name': 'flow', 'image': ...}] or keep the flow in Docker storage"
                )
            first["image"] = image
        first["command"] = list(FLOW_RUN_COMMAND)
        first.setdefault("essential", True)
        definition["containerDefinitions"] = [first, *containers[1:]]
        definition.setdefault("requiresCompatibilities", [self.launch_type])
        if self.launch_type == "FARGATE":
            definition.setdefault("networkMode", "awsvpc")
            definition.setdefault("cpu", "256")
            definition.setdefault("memory", "512")
        return definition

    def setup(self, flow: Flow) -> None:
        """Find an ACTIVE revision matching the task definition field by field, or register one.

        Raises:
            ValueError: no image; AwsConfigError: no region or credentials; RuntimeError: AWS refused.
        """
        from headwater.aws.ecs import ensure_task_definition
        from headwater.config import get_settings

        settings = get_settings()
        definition = self.task_definition(flow, settings.context.image)
        self.task_definition_arn = ensure_task_definition(self.ecs(settings), definition, "FargateTaskEnvironment")

    # -- the second hop ----------------------------------------------------------------------------------

    def run_task_call(self, settings: Settings) -> dict[str, Any]:
        """The ``run_task`` arguments of the run this process runs (``settings.context``).

        Raises:
            ValueError: not in a flow-run process, setup() not called, or awsvpc without subnets.
        """
        from headwater.aws import ecs as tasks

        context = settings.context
        if not context.flow_run_id:
            raise ValueError(
                "FargateTaskEnvironment.execute(flow) starts the flow run's ECS task and works only in a flow-run "
                "process an agent started (HEADWATER__CONTEXT__FLOW_RUN_ID is not set); to run the flow here, "
                "call environment.run(flow)"
            )
        if self.task_definition_arn is None:
            raise ValueError(
                "FargateTaskEnvironment.execute(flow) needs setup(flow) first (it finds the task definition)"
            )
        given = context.ecs
        call = copy.deepcopy(self.task_run_kwargs)
        call["taskDefinition"] = self.task_definition_arn
        call.setdefault("cluster", given.get("cluster") or "default")
        call.setdefault("launchType", self.launch_type)
        if given.get("started_by"):
            call.setdefault("startedBy", given["started_by"])
        if "networkConfiguration" not in call and given.get("network_configuration"):
            call["networkConfiguration"] = given["network_configuration"]
        network_mode = self.task_definition_kwargs.get("networkMode") or ("awsvpc" if self.launch_type == "FARGATE"
                                                                           else None)  # fmt: skip
        subnets = ((call.get("networkConfiguration") or {}).get("awsvpcConfiguration") or {}).get("subnets")
        if network_mode == "awsvpc" and not subnets:
            raise ValueError(
                "FargateTaskEnvironment: the task uses the awsvpc network mode, which needs subnets, and none were "
                "given; pass networkConfiguration={'awsvpcConfiguration': {'subnets': ['subnet-…'], "
                "'securityGroups': ['sg-…']}} (a FargateAgent passes its own --subnet on to the runs it starts)"
            )
        env = {
            "HEADWATER__API__URL": settings.api.url,
            "HEADWATER__CONTEXT__FLOW_RUN_ID": context.flow_run_id,
            "HEADWATER__CONTEXT__SECOND_HOP": "true",
        }
        if settings.api.token is not None:
            env["HEADWATER__API__TOKEN"] = settings.api.token.get_secret_value()
        if context.flow_id:
            env["HEADWATER__CONTEXT__FLOW_ID"] = context.flow_id
        if context.claim:  # the next hop writes under the claim this run was deployed with
            env["HEADWATER__CONTEXT__CLAIM"] = context.claim
        if context.image:
            env["HEADWATER__CONTEXT__IMAGE"] = context.image
        if given:
            env["HEADWATER__CONTEXT__ECS"] = json.dumps(given)
        region = self.region_name or given.get("region")
        if region:
            env["AWS_DEFAULT_REGION"] = region
        overrides = call.setdefault("overrides", {})
        containers = overrides.setdefault("containerOverrides", [])
        name = ((self.task_definition_kwargs.get("containerDefinitions") or [{}])[0] or {}).get("name") or "flow"
        mine = next((c for c in containers if c.get("name") == name), None)
        if mine is None:
            mine = {"name": name}
            containers.insert(0, mine)
        mine["command"] = list(FLOW_RUN_COMMAND)
        tasks.set_container_env(mine, env)
        tags = {t.get("key"): t.get("value") for t in call.get("tags") or []}
        tags.update(given.get("tags") or {})
        tags.setdefault(tasks.TAG_FLOW_RUN_ID, context.flow_run_id)
        call["tags"] = tasks.tags_list(tags)
        return call

    def execute(self, flow: Flow, **runner_kwargs: Any) -> None:
        """Run the run's ECS task and return; the task's process runs ``run(flow)``.

        Raises:
            ValueError: not in a flow-run process, no setup, or no subnets for awsvpc.
            RuntimeError: ECS refused the task or started none (the message says why).
        """
        from headwater.aws.errors import describe_failures, explain
        from headwater.config import get_settings

        settings = get_settings()
        call = self.run_task_call(settings)
        try:
            answer = self.ecs(settings).run_task(**call)
        except Exception as exc:
            raise RuntimeError(explain(exc, f"run a task of {call['taskDefinition']} in cluster {call['cluster']!r}")
                               ) from None  # fmt: skip
        if not answer.get("tasks"):
            raise RuntimeError(f"ECS started no task of {call['taskDefinition']} in cluster {call['cluster']!r}: "
                               f"{describe_failures(answer) or 'no reason given'}")  # fmt: skip
        logger.info("the flow run goes on in ECS task %s", answer["tasks"][0]["taskArn"])
        return None


def _family_of(task_definition: str | None) -> str | None:
    """The family a ``taskDefinition`` (``family``, ``family:3`` or an ARN) names."""
    if not task_definition:
        return None
    return str(task_definition).rsplit("/", 1)[-1].split(":")[0]
