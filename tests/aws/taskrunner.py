"""The ECS container agent of the tests' cloud: a RUNNING task's first container runs on the real Docker engine.

:class:`TaskRunner` looks at moto's ECS backend (in this process, ``cloud.py``) five times a
second and does what ECS does with a task:

- a task RUNNING that it has not started: its first container's image is taken from the
  daemon or pulled from its registry (a failure stops the task as ECS does: ``stopCode``
  ``TaskFailedToStart``, ``stoppedReason`` ``CannotPullContainerError: …``), then run with the
  definition's command and environment, the task's container overrides on top (by name), on
  the host network, with the folders in ``binds`` mounted at the same path (an EFS volume);
  a test may make a task fail to start with another reason (:attr:`TaskRunner.refuse`, e.g.
  an ENI that was never provisioned);
- a container that exits: its output goes to CloudWatch Logs when its definition logs with
  ``awslogs`` (stream ``<prefix>/<container>/<task id>``), and the task is STOPPED,
  ``EssentialContainerExited``, the container's exit code (and ``OutOfMemoryError: …`` when
  a test asked for that task, :meth:`TaskRunner.oom`, since this machine's cgroups can't be
  made to kill for memory);
- a task a caller stopped (``stop_task`` sets its desired status): its container is stopped,
  the task STOPPED with ``UserInitiated`` and the caller's reason.

It never connects to an address moto invents for a task or its network interface.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .cloud import Cloud

logger = logging.getLogger("tests.aws.taskrunner")

#: Label on every container the runner starts (the task's ARN), to find and clean up its own.
CONTAINER_LABEL = "headwater.test/ecs-task"


@dataclass
class Running:
    task: Any
    container_id: str


class TaskRunner:
    """Runs the tasks of ``cloud``'s ECS on ``docker`` (a Docker SDK client) until :meth:`stop`."""

    def __init__(self, cloud: Cloud, docker: Any, binds: list[str] | None = None, interval: float = 0.2) -> None:
        self.cloud = cloud
        self.docker = docker
        self.binds = list(binds or [])
        self.interval = interval
        #: task → a stop reason: the task fails to start with it (``None``: it starts).
        self.refuse: Callable[[Any], str | None] = lambda task: None
        self._oom: set[str] = set()
        self._running: dict[str, Running] = {}
        self._done: set[str] = set()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> TaskRunner:
        self._thread = threading.Thread(target=self._loop, name="ecs-task-runner", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for running in list(self._running.values()):
            self._remove(running.container_id)

    def oom(self, task_arn: str) -> None:
        """Kill the task's container as the kernel does past its memory: it ends with 137 and ``OutOfMemoryError``."""
        self._oom.add(task_arn)
        container_id = self.container_of(task_arn)
        if container_id is not None:
            self.docker.containers.get(container_id).kill()

    def container_of(self, task_arn: str) -> str | None:
        with self._lock:
            running = self._running.get(task_arn)
        return running.container_id if running else None

    # -- the loop ----------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                self._reconcile()
            except Exception:
                logger.exception("the ECS task runner failed to reconcile")

    def _reconcile(self) -> None:
        for cluster_tasks in list(self.cloud.ecs_backend.tasks.values()):
            for arn, task in list(cluster_tasks.items()):
                if arn in self._done:
                    continue
                running = self._running.get(arn)
                if running is None:
                    if task.last_status == "RUNNING" and task.desired_status == "RUNNING":
                        self._start(arn, task)
                    elif task.desired_status == "STOPPED":
                        self._done.add(arn)
                    continue
                self._follow(arn, running)

    def _start(self, arn: str, task: Any) -> None:
        definition = self.cloud.ecs_backend.describe_task_definition(task.task_definition_arn)
        first = definition.container_definitions[0]
        override = next(
            (o for o in (task.overrides or {}).get("containerOverrides") or [] if o.get("name") == first.get("name")),
            {},
        )
        env = {e["name"]: e["value"] for e in first.get("environment") or []}
        env.update({e["name"]: e["value"] for e in override.get("environment") or []})
        command = override.get("command") or first.get("command")
        refused = self.refuse(task)
        if refused:
            self._stopped(arn, task, "TaskFailedToStart", refused, exit_code=None)
            return
        image = first["image"]
        try:
            self._ensure_image(image)
        except Exception as exc:
            self._stopped(arn, task, "TaskFailedToStart",
                          f"CannotPullContainerError: pull image manifest has been retried 1 time(s): {exc}",
                          exit_code=None)  # fmt: skip
            return
        container = self.docker.containers.run(
            image, command, environment=env, network_mode="host", detach=True,
            labels={CONTAINER_LABEL: arn}, volumes={path: {"bind": path, "mode": "rw"} for path in self.binds},
        )  # fmt: skip
        task.containers[0].last_status = "RUNNING"
        with self._lock:
            self._running[arn] = Running(task, container.id)

    def _ensure_image(self, image: str) -> None:
        import docker

        try:
            self.docker.images.get(image)
        except docker.errors.ImageNotFound:
            repository, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "latest")
            self.docker.images.pull(repository, tag=tag or "latest")

    def _follow(self, arn: str, running: Running) -> None:
        import docker

        task = running.task
        try:
            container = self.docker.containers.get(running.container_id)
        except docker.errors.NotFound:
            self._stopped(arn, task, "EssentialContainerExited", "Essential container in task exited", exit_code=137)
            return
        if task.desired_status == "STOPPED" and container.status == "running":
            container.stop(timeout=2)  # SIGTERM, then SIGKILL: as ECS's stopTimeout
            container.reload()
        if container.status not in ("exited", "dead"):
            return
        code = int(container.attrs["State"].get("ExitCode", -1))
        self._ship_logs(arn, task, container)
        if task.desired_status == "STOPPED":
            self._stopped(arn, task, "UserInitiated", task.stopped_reason or "Task stopped by user", exit_code=code)
        else:
            reason = None
            if arn in self._oom:
                code, reason = 137, "OutOfMemoryError: Container killed due to memory usage"
            self._stopped(arn, task, "EssentialContainerExited", "Essential container in task exited",
                          exit_code=code, container_reason=reason)  # fmt: skip
        self._remove(running.container_id)

    def _ship_logs(self, arn: str, task: Any, container: Any) -> None:
        """The container's output into CloudWatch Logs, as the ``awslogs`` driver sends it (when configured)."""
        definition = self.cloud.ecs_backend.describe_task_definition(task.task_definition_arn)
        first = definition.container_definitions[0]
        config = first.get("logConfiguration") or {}
        options = config.get("options") or {}
        if config.get("logDriver") != "awslogs" or not options.get("awslogs-stream-prefix"):
            return
        group = options["awslogs-group"]
        stream = f"{options['awslogs-stream-prefix']}/{first['name']}/{arn.rsplit('/', 1)[-1]}"
        logs = self.cloud.client("logs")
        with contextlib.suppress(Exception):  # it exists already
            logs.create_log_group(logGroupName=group)
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
        lines = container.logs().decode(errors="replace").splitlines() or ["(no output)"]
        now = int(time.time() * 1000)
        logs.put_log_events(logGroupName=group, logStreamName=stream,
                            logEvents=[{"timestamp": now, "message": line} for line in lines])  # fmt: skip

    def _stopped(self, arn: str, task: Any, code: str, reason: str, exit_code: int | None,
                 container_reason: str | None = None) -> None:  # fmt: skip
        """The task STOPPED as ECS reports it: stop code and reason, and its container's exit."""
        logger.info("task %s stopped: %s: %s (exit code %s)", arn, code, reason, exit_code)
        container = task.containers[0]
        container.last_status = "STOPPED"
        container.exitCode = exit_code
        if container_reason or exit_code is None:
            container.reason = container_reason or reason
        task.stop_code = code
        task.stopped_reason = reason
        task.stopped_at = datetime.datetime.now(datetime.UTC)
        task.desired_status = "STOPPED"
        task.last_status = "STOPPED"
        with self._lock:
            self._running.pop(arn, None)
        self._done.add(arn)

    def _remove(self, container_id: str) -> None:
        try:
            self.docker.containers.get(container_id).remove(force=True)
        except Exception:
            logger.debug("container %s is gone already", container_id)
