"""FargateTaskEnvironment against moto's ECS over HTTP (``tests/aws/cloud.py``), with the real boto3.

The environment contract first; then how its kwargs are sorted, the task definition found or
registered (never a revision per run, the differing fields logged), the run's task as
``execute`` starts it (the second hop; the acceptance test runs it for real on the ECS task
runner), where credentials never go, and the bad input the issue names.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from headwater.aws import ecs as tasks
from headwater.aws.session import AwsConfigError
from headwater.environments import environment_from_spec
from headwater.environments.fargate import FargateTaskEnvironment

from .contract import EnvironmentContract, small_flow

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#: moto's gap: a container without container-level memory makes run_task answer 500.
CONTAINERS = [{"name": "flow", "image": "registry.example/flows:1", "memory": 512}]


class TestFargateTaskEnvironment(EnvironmentContract):
    def make_environment(self, tmp_path: Path, **kwargs: Any) -> FargateTaskEnvironment:
        return FargateTaskEnvironment(family="contract", cpu="256", memory="512", cluster="c", **kwargs)


def test_kwargs_are_sorted_into_the_definition_s_and_the_run_s() -> None:
    env = FargateTaskEnvironment(
        family="etl", cpu="512", memory="1024", taskRoleArn="arn:aws:iam::1:role/flow", containerDefinitions=CONTAINERS,
        cluster="data", networkConfiguration={"awsvpcConfiguration": {"subnets": ["s-1"]}}, platformVersion="1.4.0",
        tags=[{"key": "team", "value": "data"}],
    )  # fmt: skip
    assert set(env.task_definition_kwargs) == {"family", "cpu", "memory", "taskRoleArn", "containerDefinitions", "tags"}
    assert set(env.task_run_kwargs) == {"cluster", "networkConfiguration", "platformVersion", "tags"}  # tags: both


def test_an_unknown_kwarg_is_an_error_naming_both_lists() -> None:
    with pytest.raises(ValueError, match="'familly' that neither boto3's register_task_definition nor run_task") as e:
        FargateTaskEnvironment(familly="etl")
    assert "register_task_definition takes: containerDefinitions" in str(e.value)
    assert "run_task takes: capacityProviderStrategy" in str(e.value)


def test_family_and_task_definition_must_name_the_same_definition() -> None:
    with pytest.raises(ValueError, match="family='etl' and taskDefinition='other:3' name different task definitions"):
        FargateTaskEnvironment(family="etl", taskDefinition="other:3")
    assert FargateTaskEnvironment(family="etl", taskDefinition="etl").task_run_kwargs["taskDefinition"] == "etl"


def test_credentials_are_never_in_the_spec_repr_logs_or_pickle(
    aws_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    env = FargateTaskEnvironment(aws_access_key_id="AKIAEXAMPLE", aws_secret_access_key=SECRET,
                                 aws_session_token="token-xyz", family="secretive", containerDefinitions=CONTAINERS,
                                 labels=["aws"])  # fmt: skip
    env.setup(small_flow())  # the credentials make the client: it reaches moto and registers
    assert env.task_definition_arn and "secretive:" in env.task_definition_arn
    flow = small_flow()
    flow.environment = env
    pickled = cloudpickle.dumps(flow)
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("headwater"))
    assert ours  # it did log (the definition it registered)
    for secret in (SECRET, "AKIAEXAMPLE", "token-xyz"):
        assert secret not in json.dumps(env.serialize())
        assert secret not in repr(env)
        assert secret not in ours
        assert secret.encode() not in pickled
    assert SECRET not in caplog.text  # nor in botocore's debug lines (which name the key id, as AWS's own tools do)
    again = cloudpickle.loads(pickled).environment
    assert again.serialize() == env.serialize()
    assert env.aws_secret_access_key == SECRET and again.aws_secret_access_key is None  # here, not where it runs


def test_setup_registers_only_when_no_active_revision_matches(
    aws_env: dict[str, str], aws_cloud: Any, caplog: pytest.LogCaptureFixture
) -> None:
    family = "etl-revisions"
    make = lambda **kw: FargateTaskEnvironment(family=family, containerDefinitions=CONTAINERS, **kw)  # noqa: E731
    first = make()
    first.setup(small_flow())
    again = make()
    again.setup(small_flow())  # the same definition: the same revision
    assert again.task_definition_arn == first.task_definition_arn
    caplog.set_level(logging.INFO, logger="headwater.aws")
    bigger = make(cpu="1024", memory="2048")
    bigger.setup(small_flow())
    assert bigger.task_definition_arn != first.task_definition_arn
    assert "differs in cpu, memory" in caplog.text
    first_again = make()
    first_again.setup(small_flow())  # an older ACTIVE revision that matches is used, not a third one
    assert first_again.task_definition_arn == first.task_definition_arn
    arns = aws_cloud.client("ecs").list_task_definitions(familyPrefix=family)["taskDefinitionArns"]
    assert len(arns) == 2


def test_the_default_definition_runs_the_flow_in_the_run_s_image(aws_env: dict[str, str], settings_env: Any) -> None:
    settings_env(CONTEXT__IMAGE="localhost:5000/flows:abc")
    env = FargateTaskEnvironment(containerDefinitions=[{"name": "flow", "memory": 512}])
    definition = env.task_definition(small_flow(), "localhost:5000/flows:abc")
    first = definition["containerDefinitions"][0]
    assert definition["family"] == "headwater-contract" and first["image"] == "localhost:5000/flows:abc"
    assert first["command"] == ["python", "-m", "headwater", "execute", "flow-run"]
    assert definition["networkMode"] == "awsvpc" and definition["requiresCompatibilities"] == ["FARGATE"]
    assert (definition["cpu"], definition["memory"]) == ("256", "512")
    with pytest.raises(ValueError, match="names no image and the flow run has none"):
        env.task_definition(small_flow(), None)


def test_execute_runs_the_task_with_the_run_s_variables_and_the_agent_s_tags(
    aws_env: dict[str, str], aws_cloud: Any, settings_env: Any
) -> None:
    aws_cloud.create_cluster("second-hops")
    agent_said = {"cluster": "second-hops", "started_by": "headwater/agent-x", "region": "us-east-1",
                  "tags": {tasks.TAG_FLOW_RUN_ID: "run-1", tasks.TAG_AGENT_NAME: "agent-x"},
                  "network_configuration": aws_cloud.network()}  # fmt: skip
    settings_env(CONTEXT__FLOW_RUN_ID="run-1", CONTEXT__FLOW_ID="flow-1", CONTEXT__ECS=json.dumps(agent_said),
                 API__URL="http://127.0.0.1:4200")  # fmt: skip
    env = FargateTaskEnvironment(family="hop", containerDefinitions=CONTAINERS,
                                 overrides={"containerOverrides": [{"name": "flow", "environment": [
                                     {"name": "HEADWATER__CONTEXT__FLOW_RUN_ID", "value": "not-this"},
                                     {"name": "MINE", "value": "1"}]}]})  # fmt: skip
    flow = small_flow()
    env.setup(flow)
    assert env.execute(flow) is None
    (task,) = aws_cloud.tasks("second-hops")
    assert task.started_by == "headwater/agent-x" and task.launch_type == "FARGATE"
    assert {t["key"]: t["value"] for t in task.tags}[tasks.TAG_AGENT_NAME] == "agent-x"  # the agent watches it
    override = task.overrides["containerOverrides"][0]
    env_vars = {e["name"]: e["value"] for e in override["environment"]}
    assert env_vars["HEADWATER__CONTEXT__FLOW_RUN_ID"] == "run-1" and env_vars["MINE"] == "1"
    assert env_vars["HEADWATER__CONTEXT__SECOND_HOP"] == "true"
    assert [e["name"] for e in override["environment"]].count("HEADWATER__CONTEXT__FLOW_RUN_ID") == 1


# -- bad input --------------------------------------------------------------------------------------


def test_execute_outside_a_flow_run_or_without_subnets_says_what_to_do(
    aws_env: dict[str, str], settings_env: Any
) -> None:
    env = FargateTaskEnvironment(family="nets", containerDefinitions=CONTAINERS)
    env.setup(small_flow())
    with pytest.raises(ValueError, match="works only in a flow-run process"):
        env.execute(small_flow())
    settings_env(CONTEXT__FLOW_RUN_ID="run-2")
    with pytest.raises(ValueError, match="awsvpc network mode, which needs subnets"):
        env.execute(small_flow())


def test_a_cluster_that_does_not_exist_is_named(aws_env: dict[str, str], aws_cloud: Any, settings_env: Any) -> None:
    settings_env(CONTEXT__FLOW_RUN_ID="run-3")
    env = FargateTaskEnvironment(family="lost", containerDefinitions=CONTAINERS, cluster="no-such-cluster",
                                 networkConfiguration=aws_cloud.network())  # fmt: skip
    env.setup(small_flow())
    with pytest.raises(RuntimeError, match="ClusterNotFoundException"):
        env.execute(small_flow())


def test_no_region_and_no_credentials_say_where_they_were_looked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(AwsConfigError, match="no AWS region"):
        FargateTaskEnvironment(family="x", containerDefinitions=CONTAINERS).setup(small_flow())
    with pytest.raises(AwsConfigError, match=r"no AWS credentials: .*AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY"):
        FargateTaskEnvironment(family="x", region_name="eu-west-1", containerDefinitions=CONTAINERS).setup(small_flow())


def test_a_spec_rebuilds_the_same_environment() -> None:
    env = FargateTaskEnvironment(launch_type="EC2", region_name="eu-west-1", family="etl", cluster="data",
                                 containerDefinitions=CONTAINERS, labels=["aws"])  # fmt: skip
    spec = env.serialize()
    assert spec["kind"] == "fargate-task" and spec["task_run_kwargs"] == {"cluster": "data"}
    again = environment_from_spec(spec)
    assert isinstance(again, FargateTaskEnvironment) and again.serialize() == spec
