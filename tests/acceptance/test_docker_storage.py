"""Issue 5's Docker acceptance: the documented Docker storage example, end to end.

A flow with ``Docker(registry_url="localhost:<port>/…")`` is registered with a live
server: its image is built and pushed to the local registry. The image is then removed
from the daemon (a cleaned cache), so the ``headwater agent docker start`` process must
pull it back from the registry; its container runs the flow to Success, and the flow's
own log lines (written inside the container) arrive in the API.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockerd import HOST_CA_BUNDLE
from headwater.client import Client
from headwater.server.process import ServerProcess
from headwater.storage.script import extract_flow_from_file

from .conftest import finished, wait_for, write_flow

LABEL = "docker-e2e"

FLOW = """
import logging
from headwater import Flow, Parameter, task
from headwater.environments import LocalEnvironment

@task
def numbers(n):
    return list(range(n))

@task
def total(values):
    logging.getLogger("headwater.task").info("the total inside the container is %d", sum(values))
    return sum(values)

with Flow("docker-etl", environment=LocalEnvironment(labels=["docker-e2e"])) as flow:
    total(numbers(Parameter("n", default=5)))
"""


@pytest.fixture
def docker_agent(tmp_path: Path, docker_daemon: Any) -> Iterator[Any]:
    """Starts ``headwater agent docker start`` processes against a server; stops them after."""
    started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(server: ServerProcess, *args: str) -> subprocess.Popen[bytes]:
        log = tmp_path / f"docker-agent-{len(started)}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "headwater", "agent", "docker", "start", *args],
            env={**os.environ, "HEADWATER__API__URL": server.url,
                 "HEADWATER__DOCKER__BASE_URL": docker_daemon.base_url},
            stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        started.append((process, log))
        return process

    def stop_all() -> None:
        for process, _ in started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process, _ in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    start.logs = lambda: "\n".join(log.read_text(errors="replace") for _, log in started)  # type: ignore[attr-defined]
    # The test stops them before its server: an agent whose server is gone retries its last writes
    # (``api.retry_for``) past the 30 s it is given here.
    start.stop_all = stop_all  # type: ignore[attr-defined]
    yield start
    stop_all()


def test_the_documented_docker_storage_example_runs_from_the_registry(
    tmp_path: Path,
    docker_daemon: Any,
    docker_base_image: str,
    docker_registry: Any,
    docker_agent: Any,
    settings_env: Any,
) -> None:
    from headwater.storage import Docker

    home = tmp_path / "home"
    home.mkdir()
    server = ServerProcess(home, f"sqlite:///{home / 'hw.db'}").start()
    sdk = docker_daemon.client()
    try:
        settings_env(API__URL=server.url)
        with Client(server.url) as client:
            client.create_project("My First Project")
            flow = extract_flow_from_file(path=str(write_flow(tmp_path, "etl", FLOW)))
            flow.storage = Docker(
                registry_url=f"{docker_registry.address}/flows",
                base_image=docker_base_image,
                local_image=True,
                base_url=docker_daemon.base_url,
                build_kwargs={"network_mode": "host"},
                ca_certificates=HOST_CA_BUNDLE,
            )

            flow_id = flow.register("My First Project")

            image = flow.storage.name
            assert image is not None and image.startswith(f"{docker_registry.address}/flows/docker-etl:")
            assert flow.storage.image_tag in docker_registry.tags("flows/docker-etl")
            pushed_id = sdk.images.get(image).id
            sdk.images.remove(image, force=True)  # a cleaned cache: the agent must pull it
            assert not any(image in i.tags for i in sdk.images.list())

            docker_agent(server, "-l", LABEL, "--name", "docker-e2e")
            run = finished(client, client.create_flow_run(flow_id), timeout=180)

            logs = "\n".join(r.message for r in client.get_flow_run_logs(run.id))
            assert run.state == "Success", f"{run.state_message}\n{logs}\n{docker_agent.logs()}"
            assert "the total inside the container is 10" in logs
            assert f"loaded from {flow.storage.describe()}" in logs
            states = {t.task_slug: t.state for t in client.get_task_runs(run.id)}
            assert states == {"n": "Success", "numbers-1": "Success", "total-1": "Success"}, states
            assert sdk.images.get(image).id == pushed_id  # pulled back from the registry
            wait_for(
                lambda: not sdk.containers.list(all=True, filters={"label": f"io.headwater.flow-run-id={run.id}"}),
                timeout=30,
                what="the agent to remove the run's container",
            )
    finally:
        docker_agent.stop_all()
        sdk.close()
        server.stop()
