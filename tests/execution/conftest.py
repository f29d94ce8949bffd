"""A live API server, and helpers that act as the agent: register a flow, create and claim a run,
then start the flow-run process (``python -m headwater execute flow-run``) as an agent would.

Flows are written to script files in a temporary folder and loaded with
``extract_flow_from_file``, so cloudpickle stores them by value and the
subprocess can load them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from headwater.client import Client
from headwater.core.flow import Flow
from headwater.server.process import ServerProcess
from headwater.storage import Local
from headwater.storage.script import extract_flow_from_file

#: Fast reporting for tests: the defaults (10 s, 2 s, 1 s) would make every test slow.
FAST = {
    "HEADWATER__RUNNER__HEARTBEAT_INTERVAL": "0.2",
    "HEADWATER__RUNNER__CANCEL_CHECK_INTERVAL": "0.2",
    "HEADWATER__RUNNER__LOG_BATCH_INTERVAL": "0.1",
}


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("execution-server")
    live = ServerProcess(home, f"sqlite:///{home}/hw.db").start()
    yield live
    live.stop()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[Client]:
    with Client(server.url) as c:
        yield c


@pytest.fixture
def project(client: Client) -> str:
    name = unique("project")
    client.create_project(name)
    return name


@dataclass
class Deployed:
    """A registered flow and one claimed (Submitted) run of it."""

    flow: Flow
    flow_id: str
    run_id: str
    label: str
    script: Path
    storage: Local


class Harness:
    """Registers flows from source, claims runs like an agent, and starts flow-run processes."""

    def __init__(self, server: ServerProcess, client: Client, project: str, folder: Path) -> None:
        self.server = server
        self.client = client
        self.project = project
        self.folder = folder

    def write(self, source: str) -> Path:
        path = self.folder / f"flow_{uuid.uuid4().hex[:6]}.py"
        path.write_text(textwrap.dedent(source))
        return path

    def register(
        self, source: str, *, script: bool = False, secrets: list[str] | None = None
    ) -> tuple[Flow, str, str, Path, Local]:
        """Build the flow in ``source``, keep it in Local storage with a unique label, and register it."""
        path = self.write(source)
        flow = extract_flow_from_file(path=path)
        label = unique("label")
        common: dict[str, Any] = {"add_default_labels": False, "labels": [label], "secrets": secrets}
        if script:
            storage = Local(path=str(path), stored_as_script=True, **common)
        else:
            storage = Local(directory=str(self.folder / "flows"), **common)
        flow.storage = storage
        flow_id = self.client.register(flow, self.project)
        return flow, flow_id, label, path, storage

    def claim(self, run_id: str, label: str) -> None:
        """Claim the run as an agent: it becomes Submitted."""
        agent_id = self.client.register_agent(unique("agent"), "test", [label])
        claimed = self.client.claim_flow_runs(agent_id, [label], limit=1, wait=5)
        assert [r.id for r in claimed] == [run_id], claimed

    def deploy(
        self,
        source: str,
        *,
        script: bool = False,
        secrets: list[str] | None = None,
        parameters: dict[str, Any] | None = None,
        claim: bool = True,
    ) -> Deployed:
        flow, flow_id, label, path, storage = self.register(source, script=script, secrets=secrets)
        run_id = self.client.create_flow_run(flow_id, parameters=parameters)
        if claim:
            self.claim(run_id, label)
        return Deployed(flow, flow_id, run_id, label, path, storage)

    def env(self, run_id: str | None, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEADWATER__")}
        env.update(FAST)
        env["HEADWATER__HOME"] = str(self.folder / "home")
        env["HEADWATER__API__URL"] = self.server.url
        if run_id is not None:
            env["HEADWATER__CONTEXT__FLOW_RUN_ID"] = run_id
        env.update(extra)
        return env

    def command(self) -> list[str]:
        return [sys.executable, "-m", "headwater", "execute", "flow-run"]

    def execute(self, run_id: str | None, timeout: float = 60, **extra: str) -> subprocess.CompletedProcess[str]:
        """Run the flow-run process to its end."""
        return subprocess.run(
            self.command(), env=self.env(run_id, **extra), capture_output=True, text=True, timeout=timeout
        )

    def start(self, run_id: str, **extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(), env=self.env(run_id, **extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def log_lines(self, run_id: str) -> list[str]:
        return [f"{r.level} {r.name} [{r.task_slug}] {r.message}" for r in self.client.get_flow_run_logs(run_id)]

    def task_runs(self, run_id: str) -> dict[str, Any]:
        return {t.task_slug: t for t in self.client.get_task_runs(run_id)}

    def wait_for(self, check: Callable[[], bool], timeout: float = 15, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.05)


@pytest.fixture
def harness(server: ServerProcess, client: Client, project: str, tmp_path: Path) -> Harness:
    return Harness(server, client, project, tmp_path)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    server = getattr(item, "funcargs", {}).get("server")
    if report.failed and isinstance(server, ServerProcess):
        report.sections.append(("live server output", server.output()[-5000:]))
