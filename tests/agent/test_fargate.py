"""FargateAgent against moto's ECS (``tests/aws/cloud.py``) and the ECS task runner (``tests/aws/taskrunner.py``).

The agent talks to moto's server with the real boto3 over HTTP, as to AWS; the task runner runs
each RUNNING task's container on the real Docker engine, in the agent tests' image (headwater
from this tree plus the stand-in, ``docker_image.py``), with the session's temp folder mounted at
the same path, so what the stand-in writes reaches the test. A task that stops the way AWS stops
one (a pull that fails, an ENI never provisioned, a container killed for memory) is put in that
state by the runner or the test on moto's backend objects, never in the agent's code paths.
First the agent contract, then Fargate's own cases.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from headwater.agent.fargate import FargateAgent
from headwater.aws import ecs as tasks
from headwater.aws.session import AwsConfigError
from headwater.client import Client
from headwater.server.process import ServerProcess

from .contract import AgentContract
from .docker_image import STANDIN_COMMAND
from .helpers import FAST, running, unique, wait_for
from .test_docker import agent_image, flow_id, project, register, shared_tmp  # noqa: F401  (fixtures, shared)

CLUSTER = "headwater-tests"
#: moto's gap: run_task answers 500 for a container without container-level memory (real ECS doesn't need it).
MOTO_CONTAINER = {"containerDefinitions": [{"memory": 512}]}


def fargate_agent(cloud: Any, server: ServerProcess, **kwargs: Any) -> FargateAgent:
    """A FargateAgent on moto whose tasks run the stand-in, in the default VPC's subnet and group."""
    kwargs.setdefault("settings", FAST)
    kwargs.setdefault("name", unique("fargate"))
    kwargs.setdefault("cluster", CLUSTER)
    kwargs.setdefault("subnets", [cloud.subnet])
    kwargs.setdefault("security_groups", [cloud.security_group])  # moto's gap: awsvpc without groups is a 500
    kwargs.setdefault("task_definition_kwargs", MOTO_CONTAINER)
    kwargs.setdefault("poll_interval", 0.5)
    agent = FargateAgent(api_url=server.url, **kwargs)
    agent._command = list(STANDIN_COMMAND)
    return agent


@pytest.fixture
def cloud(aws_cloud: Any, aws_env: dict[str, str], ecs_runner: Any, agent_image: str) -> Iterator[Any]:  # noqa: F811
    """moto with the tests' cluster, the task runner running, and this process pointed at moto."""
    aws_cloud.create_cluster(CLUSTER)
    ecs_runner.refuse = lambda task: None
    yield aws_cloud
    ecs_runner.refuse = lambda task: None


def task_of(cloud: Any, run_id: str) -> Any:
    found = [t for t in cloud.tasks(CLUSTER) if {x["key"]: x["value"] for x in t.tags}.get(tasks.TAG_FLOW_RUN_ID)
             == run_id]  # fmt: skip
    return found[0] if found else None


class TestFargateAgent(AgentContract):
    uses_image = True
    many_runs = 6

    @pytest.fixture(autouse=True)
    def _cloud(self, cloud: Any) -> None:
        self.cloud = cloud

    def make_agent(self, server: ServerProcess, **kwargs: Any) -> FargateAgent:
        return fargate_agent(self.cloud, server, **kwargs)


def test_one_definition_per_flow_version_and_tasks_tagged_with_the_run(
    cloud: Any, server: ServerProcess, client: Client, flow_id: str, shared_tmp: str  # noqa: F811
) -> None:
    label = unique("label")
    dump = f"{shared_tmp}/{label}.env.json"
    runs = [client.create_flow_run(flow_id, labels=[label]) for _ in range(3)]
    ecs = cloud.client("ecs")
    before = set(ecs.list_task_definitions()["taskDefinitionArns"])
    agent = fargate_agent(cloud, server, labels=[label], env_vars={"STANDIN_DUMP_ENV": dump},
                          run_task_kwargs={"platformVersion": "1.4.0", "tags": [{"key": "team", "value": "data"}]})
    with running(agent):
        for run_id in runs:
            assert client.wait_for_flow_run(run_id, timeout=60).state == "Success"
    described = [task_of(cloud, run_id) for run_id in runs]
    assert len({t.task_definition_arn for t in described}) == 1  # reused: no revision per run
    family = described[0].task_definition_arn.rsplit("/", 1)[-1].split(":")[0]
    assert family.startswith("headwater-")
    made = set(ecs.list_task_definitions()["taskDefinitionArns"]) - before
    assert made <= {described[0].task_definition_arn}  # at most one revision for three runs (other tests made others)
    task = described[0]
    tags = {t["key"]: t["value"] for t in task.tags}
    assert tags[tasks.TAG_FLOW_RUN_ID] == runs[0] and tags[tasks.TAG_AGENT_NAME] == agent.name
    assert tags["team"] == "data" and tags[tasks.TAG_FLOW_ID] == flow_id
    assert task.started_by == agent.started_by and task.platform_version == "1.4.0"
    override = task.overrides["containerOverrides"][0]
    env = {e["name"]: e["value"] for e in override["environment"]}
    assert env["HEADWATER__CONTEXT__FLOW_RUN_ID"] == runs[0]
    assert [e["name"] for e in override["environment"]].count("HEADWATER__CONTEXT__FLOW_RUN_ID") == 1
    context = json.loads(env["HEADWATER__CONTEXT__ECS"])
    assert context["cluster"] == CLUSTER and context["started_by"] == agent.started_by
    assert context["tags"][tasks.TAG_FLOW_RUN_ID] == runs[0]  # a next hop carries them: the agent watches it
    seen = json.loads(Path(dump).read_text())  # what the flow-run process saw in its container
    assert seen["HEADWATER__API__URL"] == server.url
    assert "AWS_SECRET_ACCESS_KEY" not in seen  # the agent's credentials never reach a task


def test_a_failed_run_gets_the_task_s_last_log_lines_and_the_definition_its_roles(
    cloud: Any, server: ServerProcess, client: Client, flow_id: str  # noqa: F811
) -> None:
    iam = cloud.client("iam")
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                        "Principal": {"Service": "ecs-tasks.amazonaws.com"}}]})  # fmt: skip
    roles = [iam.create_role(RoleName=unique("role"), AssumeRolePolicyDocument=trust)["Role"]["Arn"] for _ in "ab"]
    label = unique("label")
    run_id = client.create_flow_run(flow_id, labels=[label])
    logging = {"logDriver": "awslogs", "options": {"awslogs-group": "/headwater/tests", "awslogs-region": "us-east-1",
                                                   "awslogs-stream-prefix": label}}  # fmt: skip
    container = {"memory": 512, "logConfiguration": logging}
    agent = fargate_agent(cloud, server, labels=[label], task_role_arn=roles[0], execution_role_arn=roles[1],
                          task_definition_kwargs={"containerDefinitions": [container]},
                          env_vars={"STANDIN_PRINT": "loading the warehouse failed: disk full", "STANDIN_EXIT": "3"})
    with running(agent):
        run = client.wait_for_flow_run(run_id, timeout=60)
    assert run.state == "Failed"
    message = run.state_message or ""
    assert "exited with code 3" in message and "its last log lines:\nloading the warehouse failed: disk full" in message
    definition = cloud.client("ecs").describe_task_definition(taskDefinition=task_of(cloud, run_id).task_definition_arn)
    assert definition["taskDefinition"]["taskRoleArn"] == roles[0]
    assert definition["taskDefinition"]["executionRoleArn"] == roles[1]


def test_a_task_that_cannot_pull_its_image_fails_the_run_with_the_stop_reason(
    cloud: Any, server: ServerProcess, client: Client, project: str  # noqa: F811
) -> None:
    label = unique("label")
    missing = register(server, project, "127.0.0.1:9/no-such-image:1")
    run_id = client.create_flow_run(missing, labels=[label])
    with running(fargate_agent(cloud, server, labels=[label])):
        run = client.wait_for_flow_run(run_id, timeout=60)
    assert run.state == "Failed", run.state_message
    message = run.state_message or ""
    assert "TaskFailedToStart" in message and "CannotPullContainerError" in message, message


def test_a_task_whose_network_interface_never_came_fails_the_run(
    cloud: Any, ecs_runner: Any, server: ServerProcess, client: Client, flow_id: str  # noqa: F811
) -> None:
    label = unique("label")
    run_id = client.create_flow_run(flow_id, labels=[label])
    eni = "Timeout waiting for network interface provisioning to complete."
    ecs_runner.refuse = lambda task: eni if any(t["value"] == run_id for t in task.tags) else None
    with running(fargate_agent(cloud, server, labels=[label])):
        run = client.wait_for_flow_run(run_id, timeout=60)
    assert run.state == "Failed"
    assert f"(TaskFailedToStart: {eni})" in (run.state_message or ""), run.state_message


def test_a_container_killed_for_memory_fails_the_run_with_137(
    cloud: Any, ecs_runner: Any, server: ServerProcess, client: Client, flow_id: str  # noqa: F811
) -> None:
    label = unique("label")
    run_id = client.create_flow_run(flow_id, labels=[label])
    with running(fargate_agent(cloud, server, labels=[label], env_vars={"STANDIN_SLEEP": "60"})):
        wait_for(lambda: client.get_flow_run(run_id).state == "Running", 30, "the run starting")
        ecs_runner.oom(task_of(cloud, run_id).task_arn)
        run = client.wait_for_flow_run(run_id, timeout=30)
    assert run.state == "Failed"
    message = run.state_message or ""
    assert "exited with code 137 (OutOfMemoryError: Container killed due to memory usage)" in message, message


def test_a_cancelled_run_s_task_is_stopped_with_a_reason_naming_the_run(
    cloud: Any, server: ServerProcess, client: Client, flow_id: str  # noqa: F811
) -> None:
    label = unique("label")
    run_id = client.create_flow_run(flow_id, labels=[label])
    settings = FAST.model_copy(update={"cancel_grace": 1.0})
    agent = fargate_agent(cloud, server, labels=[label], env_vars={"STANDIN_SLEEP": "120"}, settings=settings)
    with running(agent):
        wait_for(lambda: client.get_flow_run(run_id).state == "Running", 30, "the run starting")
        wait_for(lambda: agent.deployed_flow_run_ids() == {run_id}, 10, "the agent seeing its task")
        client.cancel_flow_run(run_id)
        run = client.wait_for_flow_run(run_id, timeout=30)
        # the runner stops the container and reports the stop as ECS does (UserInitiated, the caller's reason)
        wait_for(lambda: getattr(task_of(cloud, run_id), "stop_code", None), 15, "the task stopping")
    assert run.state == "Cancelled", run.state_message
    task = task_of(cloud, run_id)
    assert task.stop_code == "UserInitiated" and f"flow run {run_id} was cancelled" in task.stopped_reason


def test_a_restarted_agent_finds_its_tasks_by_tag_and_settles_them(
    cloud: Any, server: ServerProcess, client: Client, flow_id: str  # noqa: F811
) -> None:
    label, name = unique("label"), unique("fargate-restarting")
    run_id = client.create_flow_run(flow_id, labels=[label])
    env = {"STANDIN_SLEEP": "3", "STANDIN_EXIT": "5"}
    with running(fargate_agent(cloud, server, labels=[label], name=name, env_vars=env)):
        wait_for(lambda: client.get_flow_run(run_id).state == "Running", 30, "the run starting")
    assert client.get_flow_run(run_id).state == "Running"  # the task goes on without its agent
    again = fargate_agent(cloud, server, labels=[unique("other")], name=name)
    with running(again):
        run = client.wait_for_flow_run(run_id, timeout=60)
    assert run.state == "Failed" and "exited with code 5" in (run.state_message or ""), run.state_message


def test_throttled_calls_are_retried_not_failed(
    cloud: Any, server: ServerProcess, client: Client, flow_id: str  # noqa: F811
) -> None:
    from aws.cloud import throttled

    label = unique("label")
    run_id = client.create_flow_run(flow_id, labels=[label])
    agent = fargate_agent(cloud, server, labels=[label], env_vars={"STANDIN_SLEEP": "1", "STANDIN_EXIT": "4"})
    with throttled(cloud, "run_task", 2) as runs, throttled(cloud, "describe_tasks", 2) as describes, running(agent):
        run = client.wait_for_flow_run(run_id, timeout=90)
    assert (runs, describes) == (["run_task"] * 2, ["describe_tasks"] * 2)  # refused, then retried
    assert run.state == "Failed" and "exited with code 4" in (run.state_message or ""), run.state_message


# -- bad input --------------------------------------------------------------------------------------


def test_a_cluster_that_does_not_exist_keeps_the_agent_from_claiming(
    aws_env: dict[str, str], server: ServerProcess, aws_cloud: Any
) -> None:
    agent = fargate_agent(aws_cloud, server, cluster="no-such-cluster")
    reason = agent.ready() or ""
    assert "the ECS cluster 'no-such-cluster' does not exist" in reason and "create-cluster" in reason, reason


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"launch_type": "LAMBDA"}, "launch_type must be one of FARGATE, EC2"),
        ({"subnets": None}, "awsvpc network mode, which needs subnets"),
        ({"run_task_kwargs": {"cluster": "x"}}, "can't set 'cluster': the agent sets them"),
        ({"run_task_kwargs": {"bogus": 1}}, "has key\\(s\\) 'bogus' that boto3's run_task does not take"),
        ({"cluster": " "}, "cluster must be the name or ARN"),
        ({"poll_interval": 0}, "poll_interval must be a number of seconds > 0"),
    ],
)
def test_bad_arguments_are_refused_by_name(
    aws_env: dict[str, str], aws_cloud: Any, server: ServerProcess, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        fargate_agent(aws_cloud, server, **kwargs)


def test_no_region_and_no_credentials_say_where_they_were_looked_for(
    server: ServerProcess, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE",
                 "AWS_SESSION_TOKEN", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(name, raising=False)  # fmt: skip
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(AwsConfigError, match=r"no AWS region: .* AWS_REGION or AWS_DEFAULT_REGION"):
        FargateAgent(api_url=server.url, subnets=["subnet-1"], settings=FAST)
    with pytest.raises(AwsConfigError, match=r"found no AWS credentials: .*AWS_ACCESS_KEY_ID.*profile 'default'"):
        FargateAgent(api_url=server.url, subnets=["subnet-1"], settings=FAST, region_name="eu-west-1")
    with pytest.raises(AwsConfigError, match="aws_access_key_id without aws_secret_access_key"):
        FargateAgent(api_url=server.url, subnets=["subnet-1"], settings=FAST, aws_access_key_id="AKIA")


def test_the_command_line_takes_the_agent_s_options_and_refuses_what_cannot_work(aws_env: dict[str, str]) -> None:
    import subprocess
    import sys

    shown = subprocess.run([sys.executable, "-m", "headwater", "agent", "fargate", "start", "--help"],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    for option in ("--cluster", "--launch-type", "--task-definition-arn", "--subnet", "--security-group",
                   "--run-task-kwargs", "--task-role-arn", "--execution-role-arn"):  # fmt: skip
        assert option in shown.stdout
    refused = subprocess.run([sys.executable, "-m", "headwater", "agent", "fargate", "start", "-l", "fargate"],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert refused.returncode != 0 and "needs subnets" in refused.stderr, refused.stderr
