"""Issue 5's acceptance for the cloud backends: each one carries a flow through a LocalAgent run.

For every backend the flow is registered with a live server in that storage (the real
service running here: gcp-storage-emulator, Azurite, a git daemon, ...), a real
``headwater agent local start`` process claims the run, and its flow-run process loads
the flow from the service — nothing is read from this test's memory — and runs it to
Success. The agent's process gets only what a real deployment would: the service's
address and credentials in its environment. GitHub storage's run through an agent is in
``test_secrets.py`` (its token comes from the API's secret store); Docker storage's, under a
DockerAgent, in ``test_docker_storage.py``.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from headwater.client import Client
from headwater.server.process import ServerProcess
from headwater.storage import Storage
from headwater.storage.script import extract_flow_from_file

from .conftest import Agents, finished, write_flow

LABEL = "cloud"

FLOW = """
from headwater import Flow, Parameter, task
from headwater.environments import LocalEnvironment

@task
def numbers(n):
    return list(range(n))

@task
def total(values):
    if sum(values) != 10:
        raise ValueError(f"wrong sum {sum(values)}")
    return sum(values)

with Flow("cloud-etl", environment=LocalEnvironment(labels=["cloud"])) as flow:
    total(numbers(Parameter("n", default=5)))
"""


@dataclass
class Backend:
    """A storage for the flow file at ``script``, and the variables the agent's processes need to reach it."""

    storage: Callable[[Path], Storage]
    agent_env: dict[str, str] = field(default_factory=dict)


@contextlib.contextmanager
def s3(stored_as_script: bool) -> Iterator[Backend]:
    """moto's S3 server; boto3 finds it (and dummy credentials) through the standard AWS variables."""
    pytest.importorskip("boto3")
    from headwater.storage.s3 import S3
    from storage.services_s3 import DUMMY_ENV, client, moto_command, moto_server

    if moto_command() is None:
        pytest.skip("moto_server is not installed")
    with moto_server() as url, pytest.MonkeyPatch.context() as mp:
        env = {**DUMMY_ENV, "AWS_ENDPOINT_URL": url, "AWS_DEFAULT_REGION": "us-east-1"}
        for name, value in env.items():
            mp.setenv(name, value)
        client(url).create_bucket(Bucket="cloud-flows")
        if stored_as_script:
            yield Backend(lambda script: S3("cloud-flows", stored_as_script=True, local_script_path=script), env)
        else:
            yield Backend(lambda script: S3("cloud-flows"), env)


@contextlib.contextmanager
def gcs() -> Iterator[Backend]:
    pytest.importorskip("google.cloud.storage")
    from headwater.storage.gcs import EMULATOR_ENV, GCS
    from storage.services_gcs import anonymous_client, emulator_command, gcs_emulator

    if emulator_command() is None:
        pytest.skip("gcp-storage-emulator is not installed")
    with gcs_emulator() as url, pytest.MonkeyPatch.context() as mp:
        mp.setenv(EMULATOR_ENV, url)
        anonymous_client().create_bucket("cloud-flows")
        yield Backend(lambda script: GCS(bucket="cloud-flows"), {EMULATOR_ENV: url})


@contextlib.contextmanager
def azure(tmp_path: Path) -> Iterator[Backend]:
    pytest.importorskip("azure.storage.blob")
    from azure.storage.blob import BlobServiceClient

    from headwater.storage.azure import Azure
    from storage.services_azure import missing_reason, running_azurite

    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    from headwater.config import reload_settings

    try:
        with running_azurite(tmp_path / "azurite") as azurite, pytest.MonkeyPatch.context() as mp:
            BlobServiceClient.from_connection_string(azurite.connection_string).create_container("flows")
            # The connection string is a secret where the flow is registered and where it loads,
            # never in the spec.
            mp.setenv("HEADWATER__CONTEXT__SECRETS__AZURE_CONN", azurite.connection_string)
            reload_settings()
            yield Backend(
                lambda script: Azure(container="flows", connection_string_secret="AZURE_CONN"),
                {"HEADWATER__CONTEXT__SECRETS__AZURE_CONN": azurite.connection_string},
            )
    finally:
        reload_settings()


def _git(*args: str, cwd: Path | None = None) -> None:
    config = ["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"]
    subprocess.run(["git", *config, *args], cwd=cwd, check=True, capture_output=True, timeout=30)


@contextlib.contextmanager
def git(tmp_path: Path) -> Iterator[Backend]:
    """A bare repository served by ``git daemon``; the flow file is committed and pushed to ``main``."""
    from headwater.storage.git import Git

    root = tmp_path / "git-root"
    work = tmp_path / "git-work"
    _git("init", "--quiet", "--bare", str(root / "flows.git"))
    _git("init", "--quiet", str(work))
    (work / "flows").mkdir()
    (work / "flows" / "etl.py").write_text(FLOW)
    _git("add", ".", cwd=work)
    _git("commit", "--quiet", "-m", "flow", cwd=work)
    _git("push", "--quiet", str(root / "flows.git"), "main", cwd=work)
    port = _free_port()
    daemon = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", f"--base-path={root}", "--export-all", "--listen=127.0.0.1",
         f"--port={port}", str(root)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        from .conftest import wait_for

        wait_for(lambda: _connects(port), timeout=10, what="git daemon")
        url = f"git://127.0.0.1:{port}/flows.git"
        yield Backend(lambda script: Git(flow_path="flows/etl.py", repo=url, branch_name="main"))
    finally:
        daemon.terminate()
        daemon.wait(10)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _connects(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


@pytest.fixture(params=["s3", "s3-script", "gcs", "azure", "git"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    starters: dict[str, Callable[[], Any]] = {
        "s3": lambda: s3(stored_as_script=False),
        "s3-script": lambda: s3(stored_as_script=True),
        "gcs": gcs,
        "azure": lambda: azure(tmp_path),
        "git": lambda: git(tmp_path),
    }
    with starters[request.param]() as started:
        yield started


def test_a_flow_kept_in_the_backend_runs_under_a_local_agent(
    live: tuple[ServerProcess, Client, Agents], backend: Backend, tmp_path: Path
) -> None:
    _, client, agents = live
    script = write_flow(tmp_path, "etl", FLOW)
    flow = extract_flow_from_file(path=str(script))
    flow.storage = backend.storage(script)
    flow_id = client.register(flow, "acceptance")
    spec = client.get_flow(flow_id).metadata.storage
    assert spec is not None and spec["kind"] == flow.storage.kind
    script.unlink()  # the flow-run process must load it from the service, not from this file

    agents.start("-l", LABEL, env=backend.agent_env)
    run = finished(client, client.create_flow_run(flow_id), timeout=90)

    logs = "\n".join(r.message for r in client.get_flow_run_logs(run.id))
    assert run.state == "Success", f"{run.state_message}\n{logs}\n{agents.logs()}"
    assert f"loaded from {flow.storage.describe()}" in logs
    states = {t.task_slug: t.state for t in client.get_task_runs(run.id)}
    assert states == {"n": "Success", "numbers-1": "Success", "total-1": "Success"}, states
