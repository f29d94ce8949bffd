"""``FargateAgent``: runs each flow run as an ECS task (Fargate, or EC2 container instances).

For each claimed run the agent needs a task definition for the run's flow version: the given
``task_definition_arn``, else one it makes in family ``headwater-<flow>`` (the flow's image,
``python -m headwater execute flow-run``, tagged with the flow version), registered only when no
ACTIVE revision already matches it (``headwater.aws.ecs``) and remembered per flow version, so a
steady stream of runs makes one ``run_task`` call each. The task gets the run's variables as
container overrides, ``startedBy`` naming the agent, and tags naming the run and the agent.

The agent watches its tasks with one ``list_tasks`` of its running tasks every
``poll_interval`` seconds and one ``describe_tasks`` of those that left that list, and settles a run
its task left unfinished: a task that failed to start (``CannotPullContainerError``, an ENI that
was never provisioned), a container killed for memory (exit code 137, ``OutOfMemoryError``), a
non-zero exit: the run ends Failed with the stop code, reason and exit code. A task started by
the run's environment (a ``FargateTaskEnvironment``'s second hop) carries the same tags and
``startedBy``, so it is watched too. A cancelled run has its tasks stopped (``stop_task`` with a
reason naming the run). A restarted agent of the same name finds its running tasks by
``startedBy`` and tags. Throttled calls are retried with backoff (botocore's standard mode); a
``run_task`` still throttled puts the run back. Users' docs: ``docs/aws.md``.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from headwater.agent.base import Agent, DeployLater, logger
from headwater.agent.images import DeployError, image_of
from headwater.aws import ecs as tasks
from headwater.aws.errors import describe_failures, explain, is_throttling, is_unreachable
from headwater.client.errors import ApiError
from headwater.core.run_states import FINISHED, HELD, FlowRunState

if TYPE_CHECKING:
    from headwater.schemas.flow_runs import FlowRun

#: What the flow runner's container runs.
FLOW_RUN_COMMAND = ("python", "-m", "headwater", "execute", "flow-run")
#: Seconds all of a run's tasks are seen stopped before the agent judges the run (its last report lands).
SETTLE = 1.0
#: Log lines (CloudWatch Logs, for a container logging with ``awslogs``) in a failed run's message.
LOG_LINES = 20
#: Seconds a cluster found ACTIVE is taken as ready before it is described again.
READY_RECHECK = 60.0
#: Flow versions whose task definition the agent remembers.
DEFINITION_CACHE = 256
LAUNCH_TYPES = ("FARGATE", "EC2")
#: run_task arguments the agent sets itself (run_task_kwargs can't).
_AGENT_SETS = frozenset({"taskDefinition", "startedBy", "cluster", "launchType", "count"})


class FargateDeployError(DeployError):
    """A run can't be started as an ECS task: no image, a refused definition or task; says the fix."""


@dataclass
class RunTasks:
    """One run's tasks as last described (by ARN), and whether the agent is done with the run."""

    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    stopped_since: float | None = None
    looked_for_next_hop: bool = False
    settled: bool = False


class FargateAgent(Agent):
    """Runs each flow run as an ECS task in ``cluster`` (launch type FARGATE or EC2).

    Args:
        cluster: the ECS cluster the tasks run in (name or ARN).
        labels, env_vars, name, max_polls, agent_address, no_cloud_logs: as for :class:`~headwater.agent.Agent`.
        launch_type: ``"FARGATE"`` (default) or ``"EC2"``.
        task_definition_arn: run every flow in this task definition (its first container runs the
            flow) instead of one per flow version made by the agent.
        task_role_arn, execution_role_arn: the roles of the task definitions the agent makes.
        subnets, security_groups: the tasks' awsvpc network (FARGATE needs subnets).
        run_task_kwargs: more ``run_task`` arguments (``platformVersion``, ``propagateTags``,
            ``networkConfiguration``, ``overrides`` — merged with the run's own ...).
        cpu, memory: the task size of the definitions the agent makes (Fargate's sizes: "256"/"512" up).
        task_definition_kwargs: more ``register_task_definition`` arguments for the definitions the
            agent makes; a ``containerDefinitions`` list's first entry is merged into the flow's container.
        region_name, aws_access_key_id, aws_secret_access_key, aws_session_token: where and as whom
            (default: boto3's own lookup: environment, profile, role). Never passed to the tasks.
        poll_interval: seconds between two looks at the agent's stopped tasks.

    Raises:
        ValueError: a bad launch type, no subnets for awsvpc, run_task_kwargs the agent sets itself or
            that run_task doesn't take; AwsConfigError: no region or no credentials.
    """

    kind = "fargate"

    def __init__(
        self,
        cluster: str = "default",
        labels: Iterable[str] | None = None,
        launch_type: str = "FARGATE",
        task_definition_arn: str | None = None,
        task_role_arn: str | None = None,
        execution_role_arn: str | None = None,
        subnets: Iterable[str] | None = None,
        security_groups: Iterable[str] | None = None,
        run_task_kwargs: Mapping[str, Any] | None = None,
        env_vars: Mapping[str, str | None] | None = None,
        name: str | None = None,
        max_polls: int | None = None,
        agent_address: str | None = None,
        no_cloud_logs: bool = False,
        *,
        cpu: str | int = "256",
        memory: str | int = "512",
        task_definition_kwargs: Mapping[str, Any] | None = None,
        region_name: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        poll_interval: float = 5.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(name, labels, env_vars, max_polls, agent_address, no_cloud_logs, **kwargs)
        from headwater.aws.session import make_client

        if not isinstance(cluster, str) or not cluster.strip():
            raise ValueError(f"FargateAgent cluster must be the name or ARN of an ECS cluster, not {cluster!r}")
        if launch_type not in LAUNCH_TYPES:
            raise ValueError(f"FargateAgent launch_type must be one of {', '.join(LAUNCH_TYPES)}, not {launch_type!r}")
        if not (isinstance(poll_interval, int | float) and poll_interval > 0):
            raise ValueError(f"FargateAgent poll_interval must be a number of seconds > 0, not {poll_interval!r}")
        self.cluster = cluster.strip()
        self.launch_type = launch_type
        self.task_definition_arn = task_definition_arn or None
        self.task_role_arn = task_role_arn or None
        self.execution_role_arn = execution_role_arn or None
        self.subnets = _strings(subnets, "subnets")
        self.security_groups = _strings(security_groups, "security_groups")
        self.cpu, self.memory = str(cpu), str(memory)
        self.task_definition_kwargs = _json_dict(task_definition_kwargs, "task_definition_kwargs")
        self.run_task_kwargs = self._checked_run_task_kwargs(run_task_kwargs)
        self.network_configuration = self._network()
        self.poll_interval = float(poll_interval)
        #: what ECS calls the agent in ``startedBy`` (letters, digits, -, _ and /; 128 at most).
        self.started_by = ("headwater/" + re.sub(r"[^A-Za-z0-9_/-]", "-", self.name))[:128]
        def _make_client(service: str) -> Any:
            return make_client(service, f"FargateAgent {self.name!r}", aws_access_key_id, aws_secret_access_key,
                               aws_session_token, region_name)  # fmt: skip

        self._make_client = _make_client
        self.ecs = _make_client("ecs")
        self._logs: Any = None
        self.region = str(self.ecs.meta.region_name)
        #: HTTP requests sent to ECS (every attempt, retries too), for the benchmark (``bench/fargate_agent.py``).
        self.api_calls = 0
        self.ecs.meta.events.register("before-send.ecs", self._count_call)
        self._runs: dict[str, RunTasks] = {}
        self._stopped_seen: set[str] = set()
        #: (task definition ARN, flow container name, image) by flow version id.
        self._definitions: dict[str, tuple[str, str, str | None]] = {}
        self._lock = threading.Lock()
        self._defining = threading.Lock()
        self._last_poll = 0.0
        self._ready_until = 0.0
        #: the flow-run command in the task (tests swap in a stand-in).
        self._command = list(FLOW_RUN_COMMAND)

    def _count_call(self, **_: Any) -> None:
        self.api_calls += 1

    def _checked_run_task_kwargs(self, given: Mapping[str, Any] | None) -> dict[str, Any]:
        checked = _json_dict(given, "run_task_kwargs")
        reserved = sorted(set(checked) & _AGENT_SETS)
        if reserved:
            raise ValueError(
                f"FargateAgent run_task_kwargs can't set {', '.join(map(repr, reserved))}: the agent sets them "
                "(cluster= and launch_type= are its own arguments; the task definition is the flow's, or "
                "task_definition_arn=)"
            )
        unknown = sorted(set(checked) - tasks.operation_params("RunTask"))
        if unknown:
            raise ValueError(
                f"FargateAgent run_task_kwargs has key(s) {', '.join(map(repr, unknown))} that boto3's run_task "
                f"does not take; it takes: {', '.join(sorted(tasks.operation_params('RunTask')))}"
            )
        return checked

    def _network(self) -> dict[str, Any] | None:
        """The tasks' networkConfiguration: run_task_kwargs', else from subnets/security_groups."""
        given = self.run_task_kwargs.get("networkConfiguration")
        if given is not None:
            return dict(given)
        mode = self.task_definition_kwargs.get("networkMode") or ("awsvpc" if self.launch_type == "FARGATE" else None)
        if mode == "awsvpc" and not self.subnets and self.task_definition_arn is None:
            raise ValueError(
                f"FargateAgent {self.name!r}: tasks with launch type {self.launch_type} use the awsvpc network mode, "
                "which needs subnets; pass subnets=['subnet-…'] (--subnet on the command line; and security_groups=, "
                "else the VPC's default group is used), or run_task_kwargs={'networkConfiguration': …}"
            )
        if not self.subnets:
            return None
        vpc: dict[str, Any] = {"subnets": self.subnets, "assignPublicIp": "ENABLED"}
        if self.security_groups:
            vpc["securityGroups"] = self.security_groups
        return {"awsvpcConfiguration": vpc}

    @classmethod
    def add_cli_arguments(cls, parser: argparse._ActionsContainer) -> None:
        """``headwater agent fargate start``'s own options."""
        parser.add_argument("--cluster", default="default", help="the ECS cluster the tasks run in (default: default)")
        parser.add_argument("--launch-type", default="FARGATE", choices=LAUNCH_TYPES, help="FARGATE (default) or EC2")
        parser.add_argument("--task-definition-arn", metavar="ARN", help="run every flow in this task definition")
        parser.add_argument("--task-role-arn", metavar="ARN", help="the role the flows' tasks run as")
        parser.add_argument("--execution-role-arn", metavar="ARN",
                            help="the role ECS pulls images and writes logs with")  # fmt: skip
        parser.add_argument("--subnet", dest="subnets", action="append", default=None, metavar="ID",
                            help="a subnet of the tasks' network (repeatable; FARGATE needs one)")  # fmt: skip
        parser.add_argument("--security-group", dest="security_groups", action="append", default=None, metavar="ID",
                            help="a security group of the tasks (repeatable)")  # fmt: skip
        parser.add_argument("--run-task-kwargs", type=_json_arg, metavar="JSON", help="more run_task arguments")
        parser.add_argument("--task-definition-kwargs", type=_json_arg, metavar="JSON",
                            help="more register_task_definition arguments")  # fmt: skip
        parser.add_argument("--cpu", default="256", help="the tasks' CPU units (default: 256)")
        parser.add_argument("--memory", default="512", help="the tasks' memory in MiB (default: 512)")
        parser.add_argument("--region", dest="region_name", metavar="REGION", help="default: AWS_DEFAULT_REGION")
        parser.add_argument("--poll-interval", type=float, default=5.0, metavar="SECONDS",
                            help="seconds between two looks at the agent's stopped tasks (default: 5)")  # fmt: skip

    def health(self) -> dict[str, Any]:
        """The base health, plus ``tasks``: how many runs it watches with tasks not stopped."""
        return {**super().health(), "tasks": len(self.deployed_flow_run_ids())}

    def ready(self) -> str | None:
        """None when the cluster exists and answers, else why not (e.g. no such cluster, with the fix).

        Asked before each claim; a cluster found ACTIVE is asked about again after ``READY_RECHECK``
        seconds (or after a deploy that failed for it), not before every claim.
        """
        if time.monotonic() < self._ready_until:
            return None
        problem = tasks.check_cluster(self.ecs, self.cluster, f"FargateAgent {self.name!r}")
        self._ready_until = 0.0 if problem else time.monotonic() + READY_RECHECK
        return problem

    # -- deploy -----------------------------------------------------------------------------------

    def task_tags(self, flow_run: FlowRun) -> dict[str, str]:
        return {
            tasks.TAG_FLOW_RUN_ID: flow_run.id,
            tasks.TAG_FLOW_ID: flow_run.flow_id,
            tasks.TAG_AGENT_NAME: self.name,
            tasks.TAG_ROLE: "flow-run",
        }

    def definition_for(self, flow_id: str, image: str, flow_name: str) -> dict[str, Any]:
        """The task definition the agent wants for a flow version (before it is matched or registered)."""
        container: dict[str, Any] = {"name": tasks.FLOW_CONTAINER, "image": image, "essential": True,
                                     "command": list(self._command)}  # fmt: skip
        extra = dict(self.task_definition_kwargs)
        given = list(extra.pop("containerDefinitions", None) or [])
        if given:
            container.update({k: v for k, v in given[0].items() if k != "name"} if given[0] else {})
        definition: dict[str, Any] = {
            "family": _family(flow_name),
            "requiresCompatibilities": [self.launch_type],
            "cpu": self.cpu,
            "memory": self.memory,
            "containerDefinitions": [container, *given[1:]],
            "tags": tasks.tags_list({tasks.TAG_FLOW_ID: flow_id}),
        }
        if self.launch_type == "FARGATE":
            definition["networkMode"] = "awsvpc"
        if self.task_role_arn:
            definition["taskRoleArn"] = self.task_role_arn
        if self.execution_role_arn:
            definition["executionRoleArn"] = self.execution_role_arn
        definition.update(extra)
        return definition

    def _definition(self, flow_run: FlowRun) -> tuple[str, str, str | None]:
        """(task definition ARN, the flow container's name, image) of the run's flow version; cached per version."""
        cached = self._definitions.get(flow_run.flow_id)
        if cached is not None:
            return cached
        with self._defining:  # runs of one version deployed at once register one revision, not one each
            cached = self._definitions.get(flow_run.flow_id)
            return cached if cached is not None else self._find_definition(flow_run)

    def _find_definition(self, flow_run: FlowRun) -> tuple[str, str, str | None]:
        image: str | None
        try:
            if self.task_definition_arn:
                described = self.ecs.describe_task_definition(taskDefinition=self.task_definition_arn)
                first = described["taskDefinition"]["containerDefinitions"][0]
                image = first.get("image")
                found = (str(described["taskDefinition"]["taskDefinitionArn"]), str(first["name"]), image)
            else:
                flow = self.client.get_flow(flow_run.flow_id)
                image = image_of(flow)
                definition = self.definition_for(flow_run.flow_id, image, flow.metadata.name)
                arn = tasks.ensure_task_definition(self.ecs, definition, f"FargateAgent {self.name!r}")
                found = (arn, tasks.FLOW_CONTAINER, image)
        except DeployError as exc:
            raise FargateDeployError(str(exc)) from None
        except RuntimeError as exc:
            raise FargateDeployError(str(exc)) from None
        except Exception as exc:
            self._raise_for(exc, f"describe task definition {self.task_definition_arn!r}")
        if len(self._definitions) >= DEFINITION_CACHE:
            self._definitions.pop(next(iter(self._definitions)))
        self._definitions[flow_run.flow_id] = found
        return found

    def _raise_for(self, exc: Exception, action: str) -> NoReturn:
        reason = explain(exc, action)
        self._ready_until = 0.0  # ask about the cluster again before the next claim
        if is_throttling(exc) or is_unreachable(exc):
            raise DeployLater(reason) from exc
        raise FargateDeployError(reason) from None

    def context_env(self, flow_run: FlowRun) -> dict[str, str]:
        """What the run's process needs to start a next hop the agent watches: ``HEADWATER__CONTEXT__ECS``."""
        ecs: dict[str, Any] = {
            "cluster": self.cluster,
            "started_by": self.started_by,
            "tags": {**self.task_tags(flow_run), tasks.TAG_ROLE: "next-hop"},
            "region": self.region,
        }
        if self.network_configuration is not None:
            ecs["network_configuration"] = self.network_configuration
        return {"HEADWATER__CONTEXT__ECS": json.dumps(ecs)}

    def deploy_flow(self, flow_run: FlowRun) -> None:
        """Run the run's task; its container reports the run's states itself.

        Raises:
            FargateDeployError: no image, or ECS refused the definition or the task (named, with the fix).
            DeployLater: ECS throttled beyond the retries or can't be reached (the run is put back).
        """
        arn, container, image = self._definition(flow_run)
        env = self.flow_run_env(flow_run, image=image)
        env.setdefault("AWS_DEFAULT_REGION", self.region)
        env.update(self.context_env(flow_run))
        overrides = json.loads(json.dumps(self.run_task_kwargs.get("overrides") or {}))
        containers = overrides.setdefault("containerOverrides", [])
        mine = next((c for c in containers if c.get("name") == container), None)
        if mine is None:
            mine = {"name": container}
            containers.insert(0, mine)
        mine["command"] = list(self._command)
        tasks.set_container_env(mine, env)
        given_tags = list(self.run_task_kwargs.get("tags") or [])
        ours = self.task_tags(flow_run)
        call: dict[str, Any] = {
            **{k: v for k, v in self.run_task_kwargs.items() if k not in ("overrides", "tags")},
            "cluster": self.cluster,
            "taskDefinition": arn,
            "launchType": self.launch_type,
            "overrides": overrides,
            "startedBy": self.started_by,
            "tags": [t for t in given_tags if t.get("key") not in ours] + tasks.tags_list(ours),
        }
        if self.network_configuration is not None:
            call["networkConfiguration"] = self.network_configuration
        with self._lock:
            self._runs[flow_run.id] = RunTasks()
        try:
            answer = self.ecs.run_task(**call)
        except Exception as exc:
            with self._lock:
                self._runs.pop(flow_run.id, None)
            self._raise_for(exc, f"run a task of {arn} in ECS cluster {self.cluster!r}")
        started = answer.get("tasks") or []
        if not started:
            with self._lock:
                self._runs.pop(flow_run.id, None)
            raise FargateDeployError(
                f"ECS started no task of {arn} in cluster {self.cluster!r}: {describe_failures(answer) or 'no reason'}"
            )
        with self._lock:
            self._runs[flow_run.id].tasks[started[0]["taskArn"]] = started[0]
        logger.info("flow run %s runs as ECS task %s in cluster %s (%s)",
                    flow_run.id, started[0]["taskArn"], self.cluster, arn)  # fmt: skip

    # -- watch ----------------------------------------------------------------------------------------

    def on_startup(self) -> None:
        """Find the tasks this agent (by name) started before it restarted, stopped or not, and watch them."""
        for status in ("RUNNING", "STOPPED"):
            try:
                found = self._describe(self._list(status), tags=True)
            except Exception as exc:
                logger.warning("agent %r can't list its ECS tasks (%s): %s", self.name, status,
                               explain(exc, f"list tasks in cluster {self.cluster!r}"))  # fmt: skip
                continue
            for task in found:
                self._adopt(task)
        if self._runs:
            logger.info("agent %r watches %d run(s) it started before", self.name, len(self._runs))

    def _adopt(self, task: dict[str, Any]) -> str | None:
        """Watch ``task`` when its tags say it is one of this agent's runs; the run's id, or None."""
        tags = tasks.tags_of(task)
        run_id = tags.get(tasks.TAG_FLOW_RUN_ID)
        if not run_id or tags.get(tasks.TAG_AGENT_NAME) != self.name:
            return None
        with self._lock:
            self._runs.setdefault(run_id, RunTasks()).tasks[task["taskArn"]] = task
        return run_id

    def _list(self, status: str) -> list[str]:
        arns: list[str] = []
        token: str | None = None
        while True:
            page = self.ecs.list_tasks(cluster=self.cluster, startedBy=self.started_by, desiredStatus=status,
                                       **({"nextToken": token} if token else {}))  # fmt: skip
            arns.extend(page.get("taskArns") or [])
            token = page.get("nextToken")
            if not token:
                return arns

    def _describe(self, arns: list[str], tags: bool = False) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for start in range(0, len(arns), 100):
            answer = self.ecs.describe_tasks(cluster=self.cluster, tasks=arns[start:start + 100],
                                             **({"include": ["TAGS"]} if tags else {}))  # fmt: skip
            found.extend(answer.get("tasks") or [])
        return found

    def check_deployments(self) -> None:
        """Every ``poll_interval`` s: describe the tasks that left the running list, settle runs they left unfinished.

        One ``list_tasks`` of the agent's running tasks (its pages grow with what runs now, not with
        the hour of stopped tasks ECS keeps), and one ``describe_tasks`` of the watched ones missing
        from it; a task just started and not listed yet is described, found running, and kept.
        """
        with self._lock:
            watched = {arn for infra in self._runs.values() if not infra.settled for arn in infra.tasks}
        now = time.monotonic()
        if not watched or now - self._last_poll < self.poll_interval:
            return
        self._last_poll = now
        try:
            running = set(self._list("RUNNING"))
            described = self._describe([arn for arn in watched if arn not in running and arn not in self._stopped_seen])
        except Exception as exc:
            logger.warning("agent %r can't look at its ECS tasks: %s", self.name,
                           explain(exc, f"list and describe tasks in cluster {self.cluster!r}"))  # fmt: skip
            return
        for task in described:
            if task.get("lastStatus") == "STOPPED":
                self._stopped_seen.add(task["taskArn"])
            with self._lock:
                for infra in self._runs.values():
                    if task["taskArn"] in infra.tasks:
                        infra.tasks[task["taskArn"]] = task
        with self._lock:
            runs = {run_id: infra for run_id, infra in self._runs.items() if not infra.settled}
        for run_id, infra in runs.items():
            try:
                self._judge(run_id, infra, now)
            except ApiError as exc:
                logger.warning("agent %r: can't look at flow run %s: %s", self.name, run_id, exc)
        with self._lock:  # forget what is settled: a long-lived agent keeps no history
            for run_id in [r for r, infra in self._runs.items() if infra.settled]:
                self._stopped_seen.difference_update(self._runs.pop(run_id).tasks)

    def _judge(self, run_id: str, infra: RunTasks, now: float) -> None:
        with self._lock:
            described = list(infra.tasks.values())
        if not described or any(t.get("lastStatus") != "STOPPED" for t in described):
            infra.stopped_since = None
            return
        infra.stopped_since = infra.stopped_since or now
        if now - infra.stopped_since < SETTLE:
            return
        run = self.client.get_flow_run(run_id)
        if run.state in FINISHED or not self.holds(run):
            infra.settled = True
            return
        if not infra.looked_for_next_hop and self._found_next_hop(run_id):
            infra.looked_for_next_hop = True
            infra.stopped_since = None
            return
        infra.looked_for_next_hop = True
        last = max(described, key=lambda t: str(t.get("stoppedAt") or ""))
        infra.settled = True
        if run.state in HELD:
            state = FlowRunState.CANCELLED if run.state == FlowRunState.CANCELLING else FlowRunState.FAILED
            message = tasks.stop_message(last)
            tail = self._log_tail(last)
            message += f"; its last log lines:\n{tail}" if tail else ""
            self.fail_flow_run(run_id, message, state, run.version)

    def _log_tail(self, task: Mapping[str, Any]) -> str:
        """The last ``LOG_LINES`` lines the task's flow container wrote to CloudWatch Logs (``awslogs``), or ""."""
        try:
            described = self.ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"])["taskDefinition"]
            container = (task.get("containers") or [{}])[0].get("name") or tasks.FLOW_CONTAINER
            where = tasks.awslogs_stream(described, container, task["taskArn"])
            if where is None:
                return ""
            if self._logs is None:
                self._logs = self._make_client("logs")
            events = self._logs.get_log_events(logGroupName=where[0], logStreamName=where[1], limit=LOG_LINES,
                                               startFromHead=False)["events"]  # fmt: skip
        except Exception as exc:
            logger.debug("agent %r can't read the log of task %s: %s", self.name, task.get("taskArn"), exc)
            return ""
        return "\n".join(str(e.get("message", "")).rstrip() for e in events[-LOG_LINES:])

    def _found_next_hop(self, run_id: str) -> bool:
        """Whether a running task of this agent's that it doesn't know yet belongs to ``run_id`` (a next hop)."""
        with self._lock:
            known = {arn for infra in self._runs.values() for arn in infra.tasks}
        try:
            unknown = [arn for arn in self._list("RUNNING") if arn not in known]
            found = self._describe(unknown, tags=True) if unknown else []
        except Exception as exc:
            logger.warning("agent %r can't look for the next hop of flow run %s: %s", self.name, run_id, exc)
            return False
        return any(self._adopt(task) == run_id for task in found)

    # -- cancel, stop ----------------------------------------------------------------------------------

    def deployed_flow_run_ids(self) -> set[str]:
        with self._lock:
            return {
                run_id for run_id, infra in self._runs.items()
                if not infra.settled and any(t.get("lastStatus") != "STOPPED" for t in infra.tasks.values())
            }  # fmt: skip

    def stop_flow_run(self, flow_run_id: str, reason: str) -> None:
        """Stop the run's tasks (``stop_task`` with a reason naming the run) and end it Cancelled."""
        with self._lock:
            infra = self._runs.get(flow_run_id)
            arns = [arn for arn, t in infra.tasks.items() if t.get("lastStatus") != "STOPPED"] if infra else []
            if infra is not None:
                infra.settled = True
        why = f"headwater flow run {flow_run_id} was cancelled; stopped by agent {self.name!r} {reason}"[:255]
        for arn in arns:
            try:
                self.ecs.stop_task(cluster=self.cluster, task=arn, reason=why)
            except Exception as exc:
                logger.warning("agent %r: %s", self.name, explain(exc, f"stop task {arn}"))
        self.cancel_unless_finished(flow_run_id, f"the flow run's ECS task was stopped by agent {self.name!r} "
                                                 f"{reason} (stop_task: {len(arns)} task(s))")  # fmt: skip

    def on_shutdown(self, timeout: float) -> None:
        """Leave the tasks running: they don't need the agent; an agent of the same name finds them again."""
        running = self.deployed_flow_run_ids()
        if running:
            logger.info("agent %r stops; %d run(s) go on as ECS tasks in cluster %s (an agent named %r watches "
                        "them again when it starts)", self.name, len(running), self.cluster, self.name)  # fmt: skip


def _family(flow_name: str) -> str:
    """The task definition family of a flow's runs: ``headwater-<flow>`` (letters, digits, - and _; 255 at most)."""
    return ("headwater-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", flow_name).strip("-") or "flow"))[:255]


def _strings(values: Iterable[str] | None, what: str) -> list[str]:
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    found = list(values)
    if not all(isinstance(v, str) and v.strip() for v in found):
        raise ValueError(f"FargateAgent {what} must be a list of non-empty strings (ids), not {found!r}")
    return [v.strip() for v in found]


def _json_dict(given: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    if given is None:
        return {}
    if not isinstance(given, Mapping):
        raise ValueError(f"FargateAgent {what} must be a dict of keyword arguments, not {type(given).__name__}")
    try:
        return dict(json.loads(json.dumps(dict(given))))
    except (TypeError, ValueError):
        raise ValueError(f"FargateAgent {what} must hold JSON values (as boto3 takes them)") from None


def _json_arg(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object of keyword arguments")
    return value


__all__ = ["FargateAgent", "FargateDeployError"]
