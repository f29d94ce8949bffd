"""Issue 12's acceptance: flows labelled ``fargate`` run to Success as ECS tasks, states and logs in the API.

A live server, ``headwater agent fargate start`` as a process of its own, moto's server as the
AWS account (``tests/aws/cloud.py``) and the ECS task runner running each task's container on
the real Docker engine (``tests/aws/taskrunner.py``). The flows are kept in Docker storage
pushed to the test registry, built on the agent tests' image with boto3 added by the storage
(``python_dependencies``):

1. with a ``LocalEnvironment``, the flow runs in the agent's task;
2. with a ``FargateTaskEnvironment``, the agent's task registers the environment's task
   definition and runs its task (the second hop, carrying the agent's tags, so the agent
   watches it), and the flow runs there;
3. a run whose container is killed for memory ends Failed with exit code 137 and the reason;
4. a run cancelled while its task runs ends Cancelled, its task stopped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from client.live import LiveServer
from dockerd import HOST_CA_BUNDLE, push
from headwater.aws import ecs as tasks
from headwater.client import Client
from headwater.containers.names import image_reference
from headwater.storage.script import extract_flow_from_file

from .conftest import Agents, finished, wait_for, write_flow

CLUSTER = "acceptance"

LOCAL = """
import logging
from headwater import Flow, Parameter, task
from headwater.environments import LocalEnvironment

@task
def numbers(n):
    return list(range(n))

@task
def total(values):
    logging.getLogger("headwater.task").info("the total in the agent's task is %d", sum(values))
    return sum(values)

with Flow("fargate-local", environment=LocalEnvironment(labels=["fargate"])) as flow:
    total(numbers(Parameter("n", default=5)))
"""

SECOND_HOP = """
import logging
import os
from headwater import Flow, task
from headwater.environments import FargateTaskEnvironment

@task
def where():
    logging.getLogger("headwater.task").info("running in the environment's task (second hop: %s)",
                                             os.environ.get("HEADWATER__CONTEXT__SECOND_HOP"))
    return 1

# moto's gap: a container without container-level memory makes run_task answer 500
environment = FargateTaskEnvironment(labels=["fargate"], family="acceptance-second-hop", cpu="256", memory="512",
                                     containerDefinitions=[{"name": "flow", "memory": 512}])
with Flow("fargate-second-hop", environment=environment) as flow:
    where()
"""

SLEEPY = """
import time
from headwater import Flow, Parameter, task
from headwater.environments import LocalEnvironment

@task
def sleep(seconds):
    time.sleep(seconds)

with Flow("fargate-sleepy", environment=LocalEnvironment(labels=["fargate"])) as flow:
    sleep(Parameter("seconds", default=120))
"""


def task_arns(cloud: Any, run_id: str) -> dict[str, Any]:
    """The run's tasks in moto, by their role tag (``flow-run``, ``next-hop``)."""
    found = {}
    for task in cloud.tasks(CLUSTER):
        tags = {t["key"]: t["value"] for t in task.tags}
        if tags.get(tasks.TAG_FLOW_RUN_ID) == run_id:
            found[tags.get(tasks.TAG_ROLE, "")] = task
    return found


@pytest.mark.timeout(600)
def test_flows_labelled_fargate_run_as_ecs_tasks(
    tmp_path: Path, aws_cloud: Any, aws_env: dict[str, str], ecs_runner: Any, docker_daemon: Any,
    docker_registry: Any, settings_env: Any,
) -> None:  # fmt: skip
    import boto3
    import botocore

    from headwater.storage import Docker

    agent_image = _agent_image(docker_daemon)
    aws_cloud.create_cluster(CLUSTER)
    server = LiveServer(tmp_path / "home")
    server.start()
    agents = Agents(server, tmp_path, kind="fargate")
    try:
        settings_env(API__URL=server.url)
        with Client(server.url) as client:
            client.create_project("aws")
            flows = {name: extract_flow_from_file(path=str(write_flow(tmp_path, name, body)))
                     for name, body in (("local", LOCAL), ("hop", SECOND_HOP), ("sleepy", SLEEPY))}  # fmt: skip
            storage = Docker(
                registry_url=docker_registry.address, base_image=agent_image, local_image=True,
                base_url=docker_daemon.base_url, build_kwargs={"network_mode": "host"},
                ca_certificates=HOST_CA_BUNDLE,
                python_dependencies=[f"boto3=={boto3.__version__}", f"botocore=={botocore.__version__}"],
            )  # fmt: skip
            for flow in flows.values():
                storage.add_flow(flow)
            storage.build(push=False)
            push(docker_daemon.base_url, image_reference(storage.registry_url, storage.image_name, storage.image_tag))
            ids = {}
            for name, flow in flows.items():
                flow.storage = storage
                ids[name] = flow.register("aws", build=False)

            cloud_env = dict(aws_env)
            agents.start(
                "-l", "fargate", "--name", "fargate-e2e", "--cluster", CLUSTER, "--subnet", aws_cloud.subnet,
                "--security-group", aws_cloud.security_group, "--poll-interval", "1",
                "--task-definition-kwargs", json.dumps({"containerDefinitions": [{"memory": 512}]}),
                *[arg for name, value in cloud_env.items() for arg in ("-e", f"{name}={value}")],
                env={"HEADWATER__AGENT__CANCEL_GRACE": "3", **cloud_env},
            )  # fmt: skip
            runs = {
                "local": client.create_flow_run(ids["local"]),
                "hop": client.create_flow_run(ids["hop"]),
                "oom": client.create_flow_run(ids["sleepy"]),
                "cancelled": client.create_flow_run(ids["sleepy"]),
            }
            for what in ("local", "hop"):
                run = finished(client, runs[what], timeout=180)
                logs = "\n".join(r.message for r in client.get_flow_run_logs(runs[what]))
                assert run.state == "Success", f"{what}: {run.state_message}\n{logs}\n{agents.logs()}"
                assert {t.state for t in client.get_task_runs(runs[what])} == {"Success"}
            local_logs = "\n".join(r.message for r in client.get_flow_run_logs(runs["local"]))
            assert "the total in the agent's task is 10" in local_logs
            hop_logs = "\n".join(r.message for r in client.get_flow_run_logs(runs["hop"]))
            assert "running in the environment's task (second hop: true)" in hop_logs
            hop_tasks = task_arns(aws_cloud, runs["hop"])
            assert set(hop_tasks) == {"flow-run", "next-hop"}, hop_tasks  # the agent's task, then the environment's
            assert hop_tasks["next-hop"].started_by == hop_tasks["flow-run"].started_by
            assert "acceptance-second-hop" in hop_tasks["next-hop"].task_definition_arn

            wait_for(lambda: client.get_flow_run(runs["oom"]).state == "Running", 120, "the sleepy run starting")
            wait_for(lambda: ecs_runner.container_of(task_arns(aws_cloud, runs["oom"])["flow-run"].task_arn),
                     30, "its container")  # fmt: skip
            ecs_runner.oom(task_arns(aws_cloud, runs["oom"])["flow-run"].task_arn)
            run = finished(client, runs["oom"], timeout=60)
            assert run.state == "Failed", run.state_message
            assert "exited with code 137 (OutOfMemoryError" in (run.state_message or ""), run.state_message

            wait_for(lambda: client.get_flow_run(runs["cancelled"]).state == "Running", 120, "the other starting")
            client.cancel_flow_run(runs["cancelled"])
            run = finished(client, runs["cancelled"], timeout=60)
            assert run.state == "Cancelled", run.state_message
            wait_for(lambda: task_arns(aws_cloud, runs["cancelled"])["flow-run"].last_status == "STOPPED", 30,
                     "its task stopping")  # fmt: skip
    finally:
        agents.stop_all()
        server.stop()


def _agent_image(docker_daemon: Any) -> str:
    """The agent tests' image (headwater from this tree), built once per session on ``docker_daemon``."""
    from agent.docker_image import build_test_image
    from agent.test_docker import IMAGE
    from dockerd import BASE_IMAGE

    client = docker_daemon.client()
    try:
        try:
            client.images.get(IMAGE)
            return IMAGE
        except Exception:
            return build_test_image(client, BASE_IMAGE, IMAGE)
    finally:
        client.close()
