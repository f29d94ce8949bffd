"""DockerAgent against a real dockerd (``tests/dockerd.py``): the agent contract in containers, then Docker's own.

The containers run an image built once per session from ``docker_base_image``
(``docker_image.py``: headwater from this tree plus the stand-in), so the contract's
stand-in runs **inside a container** and reports through the real client over the
host network. The flow versions here name that image in their environment's
``metadata`` (or in a Docker storage spec); the pytest temp folder is mounted at the
same path in every container, so what the stand-in writes reaches the test.
Every test ends with no container of any agent left on the daemon.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dockerd import DockerDaemon
from headwater import Flow, Parameter, task
from headwater.agent.docker import LABEL_AGENT_NAME, LABEL_FLOW_RUN_ID, DockerAgent, describe_exit, parse_volume
from headwater.client import Client
from headwater.environments import LocalEnvironment
from headwater.server.process import ServerProcess, free_port

from .contract import AgentContract
from .docker_image import STANDIN_COMMAND, STANDIN_PATH, build_test_image
from .helpers import FAST, running, unique, wait_for

IMAGE = f"headwater-agent-test:{uuid.uuid4().hex[:8]}"


@task
def double(x: int) -> int:
    return 2 * x


@pytest.fixture(scope="session")
def agent_image(docker_daemon: Any, docker_base_image: str) -> str:
    client = docker_daemon.client()
    try:
        return build_test_image(client, docker_base_image, IMAGE)
    finally:
        client.close()


@pytest.fixture(scope="session")
def project(server: ServerProcess) -> str:
    name = unique("docker-agents")
    with Client(server.url) as c:
        c.create_project(name)
    return name


def register(
    server: ServerProcess, project: str, image: str | None = None, storage: dict[str, Any] | None = None
) -> str:
    """A flow version (metadata only: the stand-in never loads it) naming ``image`` or a Docker storage spec."""
    environment = LocalEnvironment(metadata={"image": image} if image else None)
    with Flow(unique("docker-agent-test"), environment=environment) as flow:
        double(Parameter("x", default=1))
    metadata = flow.serialize()
    if storage is not None:
        metadata["storage"] = storage
    with Client(server.url) as c:
        return c.register_flow_metadata(project, metadata).id


@pytest.fixture(scope="session")
def flow_id(server: ServerProcess, project: str, agent_image: str) -> str:
    """Overrides the agent tests' flow: this one names the test image."""
    return register(server, project, agent_image)


@pytest.fixture(scope="session")
def shared_tmp(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The session's temp root, mounted at the same path in every container."""
    return str(tmp_path_factory.getbasetemp())


@pytest.fixture
def docker(docker_daemon: Any) -> Iterator[Any]:
    c = docker_daemon.client()
    yield c
    c.close()


def agent_containers(client: Any) -> list[Any]:
    """The agents' containers; one removed between the listing and its inspection is gone, not an error."""
    import docker.errors

    found = []
    for entry in client.api.containers(all=True, filters={"label": LABEL_AGENT_NAME}):
        try:
            found.append(client.containers.get(entry["Id"]))
        except docker.errors.NotFound:
            continue
    return found


@pytest.fixture(autouse=True)
def _no_container_left(docker_daemon: Any) -> Iterator[None]:
    yield
    client = docker_daemon.client()
    try:
        left = agent_containers(client)
        for container in left:
            container.remove(force=True)
    finally:
        client.close()
    assert not left, f"containers left behind: {[(c.name, c.status, c.labels) for c in left]}"


def docker_agent(daemon: Any, server: ServerProcess, shared_tmp: str, **kwargs: Any) -> DockerAgent:
    """A DockerAgent on ``daemon`` whose containers run the stand-in, with the temp root mounted."""
    kwargs.setdefault("settings", FAST)
    kwargs.setdefault("name", unique("docker"))
    kwargs.setdefault("volumes", [f"{shared_tmp}:{shared_tmp}"])
    kwargs.setdefault("base_url", daemon.base_url)
    agent = DockerAgent(api_url=server.url, **kwargs)
    agent._command = list(STANDIN_COMMAND)
    return agent


class TestDockerAgent(AgentContract):
    uses_image = True
    many_runs = 10

    @pytest.fixture(autouse=True)
    def _docker(self, docker_daemon: Any, shared_tmp: str, agent_image: str) -> None:
        self.daemon, self.shared_tmp = docker_daemon, shared_tmp

    def make_agent(self, server: ServerProcess, **kwargs: Any) -> DockerAgent:
        return docker_agent(self.daemon, server, self.shared_tmp, **kwargs)


# -- arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"volumes": ["/data"]}, "volume '/data' must look like HOST:CONTAINER"),
        ({"volumes": ["/data:data"]}, "CONTAINER an absolute path"),
        ({"volumes": ["/data:/data:rx"]}, r"\[:ro\|rw\]"),
        ({"volumes": ["rel/dir:/data"]}, "HOST an absolute path or a volume name"),
        ({"volumes": "/a:/b"}, "not the string"),
        ({"networks": "host"}, "networks must be a list"),
        ({"networks": [""]}, "networks must be non-empty strings"),
        ({"reg_allow_list": "localhost:5000"}, "reg_allow_list must be a list"),
        ({"reg_allow_list": []}, "reg_allow_list is empty"),
    ],
)
def test_bad_arguments_are_refused_by_name(server: ServerProcess, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DockerAgent(api_url=server.url, settings=FAST, **kwargs)


def test_volumes_and_exit_codes() -> None:
    assert parse_volume("/srv/data:/data") == ("/srv/data", {"bind": "/data", "mode": "rw"})
    assert parse_volume("cache:/cache:ro") == ("cache", {"bind": "/cache", "mode": "ro"})
    assert describe_exit(3) == "code 3"
    assert describe_exit(143) == "code 143 (killed by SIGTERM)"
    assert describe_exit(137, oom=True) == "code 137 (killed by SIGKILL), out of memory"


# -- the container --------------------------------------------------------------------------


def test_the_container_carries_the_run_labels_env_and_host_network(
    docker_daemon: Any, docker: Any, server: ServerProcess, client: Client, flow_id: str, shared_tmp: str,
    agent_image: str,
) -> None:  # fmt: skip
    label = unique("label")
    run_id = client.create_flow_run(flow_id, labels=[label])
    agent = docker_agent(docker_daemon, server, shared_tmp, labels=[label], env_vars={"STANDIN_SLEEP": "30"},
                         settings=FAST.model_copy(update={"stop_timeout": 0.0}))  # fmt: skip
    with running(agent):
        wait_for(lambda: client.get_flow_run(run_id).state == "Running", timeout=60, what="the run starting")
        (container,) = docker.containers.list(filters={"label": f"{LABEL_FLOW_RUN_ID}={run_id}"})
        assert container.labels == {
            "io.headwater.flow-run-id": run_id,
            "io.headwater.flow-id": flow_id,
            "io.headwater.agent-id": agent.agent_id,
            "io.headwater.agent-name": agent.name,
        }
        config, host = container.attrs["Config"], container.attrs["HostConfig"]
        assert host["NetworkMode"] == "host" and host["Init"] is True
        assert host["Binds"] == [f"{shared_tmp}:{shared_tmp}:rw"]
        assert config["Image"] == agent_image and config["Cmd"] == STANDIN_COMMAND
        env = dict(line.split("=", 1) for line in config["Env"])
        assert env["HEADWATER__CONTEXT__IMAGE"] == agent_image and env["HEADWATER__CONTEXT__FLOW_RUN_ID"] == run_id
        wait_for(lambda: agent.health()["containers"] == 1, what="the health counting the container")
    # stop_timeout 0: the agent stopped the container (SIGTERM through docker-init) and failed the run
    run = client.get_flow_run(run_id)
    assert run.state == "Failed"
    assert f"was stopped by agent {agent.name!r} as it shut down (code 143 (killed by SIGTERM))" in (
        run.state_message or ""
    ), run.state_message


def test_an_exit_without_a_final_state_reports_the_last_log_lines(
    docker_daemon: Any, server: ServerProcess, client: Client, flow_id: str, shared_tmp: str
) -> None:
    label = unique("label")
    run_id = client.create_flow_run(flow_id, labels=[label])
    agent = docker_agent(docker_daemon, server, shared_tmp, labels=[label])
    # stdout and stderr are separate pipes, so the daemon may interleave them: the stderr line comes later
    agent._command = ["sh", "-c", "for i in $(seq 1 30); do echo line-$i; done; sleep 0.5; echo oops >&2; exit 3"]
    with running(agent):
        run = client.wait_for_flow_run(run_id, timeout=60)
    message = run.state_message or ""
    assert run.state == "Failed"
    assert "exited with code 3; its last log lines:" in message, message
    assert "line-30\noops" in message and "line-12" in message and "line-11\n" not in message, message
    assert any("line-30" in r.message for r in client.get_flow_run_logs(run_id))


def test_show_flow_logs_streams_container_output_prefixed_with_the_run_id(
    docker_daemon: Any, server: ServerProcess, client: Client, flow_id: str, shared_tmp: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    label = unique("label")
    run_id = client.create_flow_run(flow_id, labels=[label])
    agent = docker_agent(docker_daemon, server, shared_tmp, labels=[label], show_flow_logs=True)
    agent._command = ["sh", "-c", f"echo hello from the container; echo second line; exec python {STANDIN_PATH}"]
    with running(agent):
        assert client.wait_for_flow_run(run_id, timeout=60).state == "Success"
    out = capsys.readouterr().out
    assert f"[{run_id}] hello from the container\n[{run_id}] second line\n" in out, out


def test_an_unknown_network_fails_the_run_naming_it(
    docker_daemon: Any, server: ServerProcess, client: Client, flow_id: str, shared_tmp: str
) -> None:
    label = unique("label")
    run_id = client.create_flow_run(flow_id, labels=[label])
    with running(docker_agent(docker_daemon, server, shared_tmp, labels=[label], networks=["no-such-network"])):
        run = client.wait_for_flow_run(run_id, timeout=30)
    assert run.state == "Failed"
    message = run.state_message or ""
    assert "could not start a container of" in message and "network no-such-network not found" in message, message
    assert "must exist on the daemon: see `docker network ls`" in message, message


# -- images ---------------------------------------------------------------------------------


def test_an_image_outside_the_allow_list_is_refused(
    docker_daemon: Any, server: ServerProcess, client: Client, flow_id: str, shared_tmp: str, agent_image: str
) -> None:
    label = unique("label")
    run_id = client.create_flow_run(flow_id, labels=[label])
    agent = docker_agent(docker_daemon, server, shared_tmp, labels=[label], reg_allow_list=["registry.example.com"])
    with running(agent):
        run = client.wait_for_flow_run(run_id, timeout=30)
    message = run.state_message or ""
    assert run.state == "Failed"
    assert f"image {agent_image!r} is from registry 'docker.io'" in message, message
    assert "not in this agent's reg_allow_list ['registry.example.com']" in message and "--reg-allow" in message


@pytest.fixture(scope="session")
def pushed_image(docker_daemon: Any, docker_registry: Any, agent_image: str) -> str:
    """The test image in the registry as ``localhost:<port>/headwater-agent-test:<tag>``."""
    reference = f"{docker_registry.address}/{agent_image}"
    client = docker_daemon.client()
    try:
        client.images.get(agent_image).tag(reference)
        for event in client.api.push(reference, stream=True, decode=True):
            assert "error" not in event, event
    finally:
        client.close()
    return reference


def test_the_image_of_a_docker_storage_is_pulled_from_its_registry(
    docker_daemon: Any, docker: Any, server: ServerProcess, client: Client, project: str, shared_tmp: str,
    pushed_image: str, docker_registry: Any,
) -> None:  # fmt: skip
    docker.images.remove(pushed_image)  # only the local tag: the agent must pull it back
    name, tag = pushed_image.removeprefix(f"{docker_registry.address}/").split(":")
    storage = {"kind": "docker", "registry_url": docker_registry.address, "image_name": name, "image_tag": tag}
    flow = register(server, project, storage=storage)
    label = unique("label")
    run_id = client.create_flow_run(flow, labels=[label])
    agent = docker_agent(docker_daemon, server, shared_tmp, labels=[label], reg_allow_list=[docker_registry.address])
    with running(agent):
        run = client.wait_for_flow_run(run_id, timeout=90)
    assert run.state == "Success", run.state_message
    assert pushed_image in docker.images.get(pushed_image).tags


def test_no_pull_with_a_missing_image_fails_the_run_clearly(
    docker_daemon: Any, server: ServerProcess, client: Client, project: str, shared_tmp: str
) -> None:
    missing = f"headwater-agent-test:absent-{uuid.uuid4().hex[:6]}"
    label = unique("label")
    run_id = client.create_flow_run(register(server, project, missing), labels=[label])
    with running(docker_agent(docker_daemon, server, shared_tmp, labels=[label], no_pull=True)):
        run = client.wait_for_flow_run(run_id, timeout=30)
    message = run.state_message or ""
    assert run.state == "Failed"
    assert f"image {missing!r} is not on the Docker daemon at {docker_daemon.base_url}" in message, message
    assert "--no-pull" in message


def test_a_failed_pull_names_the_image_the_registry_and_the_fix(
    docker_daemon: Any, server: ServerProcess, client: Client, project: str, shared_tmp: str, docker_registry: Any
) -> None:
    missing = f"{docker_registry.address}/headwater-absent:1"
    label = unique("label")
    run_id = client.create_flow_run(register(server, project, missing), labels=[label])
    with running(docker_agent(docker_daemon, server, shared_tmp, labels=[label])):
        run = client.wait_for_flow_run(run_id, timeout=30)
    message = run.state_message or ""
    assert run.state == "Failed"
    assert f"could not pull image {missing!r} from registry {docker_registry.address!r}" in message, message
    assert "was pushed there" in message and "no_pull=True" in message


def test_a_flow_without_an_image_fails_clearly(
    docker_daemon: Any, server: ServerProcess, client: Client, project: str, shared_tmp: str
) -> None:
    label = unique("label")
    unbuilt = {"kind": "docker", "registry_url": None, "image_name": "etl", "image_tag": None}
    plain, docker_unbuilt = register(server, project), register(server, project, storage=unbuilt)
    runs = [client.create_flow_run(flow, labels=[label]) for flow in (plain, docker_unbuilt)]
    with running(docker_agent(docker_daemon, server, shared_tmp, labels=[label])):
        first, second = (client.wait_for_flow_run(run_id, timeout=30) for run_id in runs)
    assert first.state == second.state == "Failed"
    assert "has no image; keep it in Docker storage, use a DockerEnvironment, or set metadata={'image': ...}" in (
        first.state_message or ""
    ), first.state_message
    assert "its Docker storage names no built image" in (second.state_message or ""), second.state_message


# -- restarts and outages -------------------------------------------------------------------


def test_a_restarted_agent_reports_and_removes_what_it_started_before(
    docker_daemon: Any, docker: Any, server: ServerProcess, client: Client, flow_id: str, shared_tmp: str
) -> None:
    label, name = unique("label"), unique("docker")
    run_id = client.create_flow_run(flow_id, labels=[label])
    first = docker_agent(docker_daemon, server, shared_tmp, labels=[label], name=name,
                         env_vars={"STANDIN_SLEEP": "3", "STANDIN_EXIT": "4"})  # fmt: skip
    first.on_shutdown = lambda timeout: None  # as if it died: its container is left running
    with running(first):
        wait_for(lambda: client.get_flow_run(run_id).state == "Running", timeout=60, what="the run starting")
    assert [c.labels[LABEL_FLOW_RUN_ID] for c in agent_containers(docker)] == [run_id]
    with running(docker_agent(docker_daemon, server, shared_tmp, labels=[unique("other")], name=name)):
        run = client.wait_for_flow_run(run_id, timeout=30)
        wait_for(lambda: not agent_containers(docker), what="the container's removal")
    assert run.state == "Failed" and "exited with code 4" in (run.state_message or ""), run.state_message


@pytest.fixture
def own_daemon() -> Iterator[DockerDaemon]:
    """A second dockerd of this test's own, not started; restartable in place (same root, socket and data)."""
    root = Path(tempfile.mkdtemp(prefix="hw-dd-", dir="/tmp"))
    daemon = DockerDaemon(root=root)
    yield daemon
    daemon.stop()
    shutil.rmtree(root, ignore_errors=True)


def test_a_daemon_that_does_not_answer_is_reported_and_waited_for(
    own_daemon: DockerDaemon, server: ServerProcess, client: Client, project: str, shared_tmp: str, pushed_image: str
) -> None:
    label = unique("label")
    flow = register(server, project, pushed_image)
    settings = FAST.model_copy(update={"claim_wait": 30.0})
    agent = docker_agent(own_daemon, server, shared_tmp, labels=[label], settings=settings,
                         agent_address="http://127.0.0.1:0")  # fmt: skip

    def health() -> dict[str, Any]:
        assert agent.health_url is not None
        return dict(httpx.get(f"{agent.health_url}/api/health", timeout=5).json())

    with running(agent):
        # no daemon yet: the agent starts anyway, says why it waits, and claims nothing
        first = client.create_flow_run(flow, labels=[label])
        wait_for(lambda: health()["status"] == "waiting", what="the agent reporting the missing daemon")
        assert f"the Docker daemon at {own_daemon.base_url} does not answer" in health()["waiting_for"]
        time.sleep(1.5)
        assert agent.polls == 0 and client.get_flow_run(first).state == "Scheduled"
        own_daemon.start()
        assert client.wait_for_flow_run(first, timeout=120).state == "Success"  # resumed by itself, pulled the image
        assert health()["status"] == "ok" and "waiting_for" not in health()

        wait_for(agent._loop.claiming.is_set, what="a claim call")
        own_daemon.stop(keep=True)
        # the claim in flight hands the agent this run; it can't start a container, so it puts the run back
        second = client.create_flow_run(flow, labels=[label])
        wait_for(lambda: "put back" in (client.get_flow_run(second).state_message or ""), timeout=30,
                 what="the run put back")  # fmt: skip
        run = client.get_flow_run(second)
        assert run.state == "Scheduled" and run.agent_id is None, run
        assert f"put back by agent {agent.name!r}: the Docker daemon at {own_daemon.base_url} does not answer" in (
            run.state_message or ""
        ), run.state_message
        assert health()["status"] == "waiting" and "does not answer" in health()["waiting_for"]
        polls = agent.polls
        time.sleep(1.5)
        assert agent.polls == polls and client.get_flow_run(second).state == "Scheduled"  # no claims meanwhile
        own_daemon.start()
        assert client.wait_for_flow_run(second, timeout=60).state == "Success"
        daemon_client = own_daemon.client()
        wait_for(lambda: not agent_containers(daemon_client), what="the containers' removal")
        daemon_client.close()
        # end the claim in flight now rather than after its 30 s: its run goes back, as stopping agents do
        agent.stop()
        third = client.create_flow_run(flow, labels=[label])
    assert client.get_flow_run(third).state == "Scheduled"


# -- the command line -----------------------------------------------------------------------


FLOW_SOURCE = """
from headwater import Flow, Parameter, task

@task
def double(x):
    return 2 * x

with Flow({name!r}) as flow:
    double(Parameter("x", default=1))
"""


def test_the_cli_runs_a_real_flow_in_a_container(
    docker_daemon: Any, server: ServerProcess, client: Client, project: str, agent_image: str, tmp_path: Path
) -> None:
    """``headwater agent docker start`` runs ``python -m headwater execute flow-run`` in the image, to Success."""
    from headwater.storage import Local

    name, label, port = unique("flow"), unique("label"), free_port()
    script = tmp_path / "flow.py"
    script.write_text(FLOW_SOURCE.format(name=name))
    storage = Local(path=str(script), stored_as_script=True, add_default_labels=False)
    with Flow(name, storage=storage, environment=LocalEnvironment(metadata={"image": agent_image})) as flow:
        double(Parameter("x", default=1))
    flow_id = client.register(flow, project)
    run_id = client.create_flow_run(flow_id, labels=[label], parameters={"x": 21})
    agent_name = unique("cli-docker")
    env = {**os.environ, "HEADWATER__API__URL": server.url, "HEADWATER__AGENT__CLAIM_WAIT": "1"}
    command = [sys.executable, "-m", "headwater", "agent", "docker", "start", "-l", label, "--name", agent_name,
               "--base-url", docker_daemon.base_url, "--volume", f"{tmp_path}:{tmp_path}:ro", "--network", "host",
               "--reg-allow", "docker.io", "--no-pull", "--show-flow-logs", "--agent-address",
               f"http://127.0.0.1:{port}"]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        run = client.wait_for_flow_run(run_id, timeout=120)
        health = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5).json()
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    logs = "\n".join(r.message for r in client.get_flow_run_logs(run_id))
    assert run.state == "Success", f"{run.state}: {run.state_message}\n{logs}\n{output}"
    assert {t.state for t in client.get_task_runs(run_id)} == {"Success"}
    assert health["kind"] == "docker" and health["name"] == agent_name
    assert process.returncode == 0 and f"agent {agent_name!r} stopped" in output, output
    assert f"[{run_id}]" in output, output  # --show-flow-logs


def test_the_cli_refuses_a_bad_volume() -> None:
    command = [sys.executable, "-m", "headwater", "agent", "docker", "start", "--volume", "nope"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "headwater: error: volume 'nope' must look like HOST:CONTAINER" in done.stderr, done.stderr
