"""A live server and real LocalAgent processes, for the life-of-a-run acceptance tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from executors.conftest import dask_scheduler_address  # noqa: F401  (a fixture, shared)
from headwater.client import Client
from headwater.server.process import ServerProcess
from headwater.storage import Local
from headwater.storage.script import extract_flow_from_file


class Agents:
    """Starts ``headwater agent KIND start`` processes (``local`` by default) against one server; stops them all."""

    def __init__(self, server: ServerProcess, home: Path, kind: str = "local") -> None:
        self.server = server
        self.home = home
        self.kind = kind
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = (self.home / f"agent-{len(self.processes)}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "headwater", "agent", self.kind, "start", *args],
            # A 1 s claim wait: a stopped agent ends its in-flight long-poll (and the test) sooner.
            env={**os.environ, "HEADWATER__HOME": str(self.home), "HEADWATER__API__URL": self.server.url,
                 "HEADWATER__AGENT__CLAIM_WAIT": "1", **(env or {})},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.home.glob("agent-*.log")))


Live = tuple[ServerProcess, Client, Agents]


@pytest.fixture
def live_factory(tmp_path: Path) -> Iterator[Callable[..., Live]]:
    """``live_factory(env={...})``: a server (with those settings), a client and an agent starter."""
    started: list[Live] = []

    def start(env: dict[str, str] | None = None) -> Live:
        home = tmp_path / f"home{len(started)}"
        home.mkdir()
        server = ServerProcess(home, f"sqlite:///{home / 'hw.db'}", env=env).start()
        client = Client(server.url)
        client.create_project("acceptance")
        started.append((server, client, Agents(server, home)))
        return started[-1]

    yield start
    for server, client, agents in started:
        agents.stop_all()
        client.close()
        server.stop()


@pytest.fixture
def live(live_factory: Callable[..., Live]) -> Live:
    return live_factory()


def write_flow(folder: Path, name: str, body: str) -> Path:
    """A flow script file: ``body`` must build a flow (kept as a script, loaded by the flow-run process)."""
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return path


def register_script(client: Client, path: Path, **storage: Any) -> str:
    flow = extract_flow_from_file(path=str(path))
    flow.storage = Local(stored_as_script=True, path=str(path), **storage)
    return client.register(flow, "acceptance")


def wait_for(predicate: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def finished(client: Client, run_id: str, timeout: float = 60) -> Any:
    return wait_for(
        lambda: (r := client.get_flow_run(run_id)).state in ("Success", "Failed", "Cancelled") and r,
        timeout, f"run {run_id} to finish",
    )
