"""Faults kept as tests (issue 13, part 5), with real processes on 127.0.0.1.

- The server killed with SIGKILL three times during concurrent run creation loses no
  acknowledged run. A run is *acknowledged* when its create call was answered 201; a call
  cut off by a kill is not, and may or may not have been stored.
- An agent and its flow-run process killed with SIGKILL while two server processes share
  the database (both sweeping for lost runs): the run is rescheduled once, and an agent of
  the *other* server process finishes it.

Held elsewhere: the same agent kill with one server (``test_recovery_with_agents.py``);
each run claimed once across two server processes, and the cross-process wake-up
(``tests/server/test_replicas.py``).
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from headwater.client import Client
from headwater.server.process import ServerProcess
from server.helpers import metadata

from .conftest import Agents, finished, register_script, wait_for, write_flow
from .test_recovery_with_agents import AGENT_ENV, FAST, SLOW_FIRST_TIME, pid_alive

DATABASES = ["sqlite", "postgres"]

KILLS = 3
CREATORS = 4
#: Runs acknowledged between one start and the next kill: the kill lands in steady creation.
PER_LIFE = 40


def _stored(api: str, label: str) -> dict[str, str]:
    """Every run with ``label``, id → state, read page by page."""
    found: dict[str, str] = {}
    with httpx.Client(base_url=api, timeout=30) as client:
        while True:
            page = client.get("/runs", params={"label": label, "limit": 1000, "offset": len(found)})
            assert page.status_code == 200, page.text
            runs = page.json()["flow_runs"]
            found.update((run["id"], run["state"]) for run in runs)
            if len(runs) < 1000:
                return found


def _database(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    return f"sqlite:///{tmp_path / 'hw.db'}" if kind == "sqlite" else str(request.getfixturevalue("postgres_url"))


@pytest.mark.parametrize("kind", DATABASES)
def test_killing_the_server_three_times_during_run_creation_loses_no_acknowledged_run(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = _database(kind, tmp_path, request)
    server = ServerProcess(tmp_path / "life0", url).start()
    label = uuid.uuid4().hex[:8]
    with httpx.Client(base_url=server.api, timeout=30) as api:
        assert api.post("/projects", json={"name": "faults"}).status_code == 201
        flow = api.post("/flows", json={"project_name": "faults", "metadata": metadata("faults")})
        assert flow.status_code in (200, 201), flow.text
        flow_id = flow.json()["id"]

    acknowledged: set[str] = set()
    cut_off = [0]
    current = {"api": server.api}  # a restarted server gets a new port (the old one may be taken meanwhile)
    lock = threading.Lock()
    stop = threading.Event()

    def create() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                try:
                    answer = client.post(f"{current['api']}/runs", json={"flow_id": flow_id, "labels": [label]})
                except httpx.TransportError:  # the server died under this call, or is not up again yet
                    with lock:
                        cut_off[0] += 1
                    time.sleep(0.02)
                    continue
                if answer.status_code == 201:
                    with lock:
                        acknowledged.add(answer.json()["id"])

    def wait_for_more(count: int) -> None:
        with lock:
            target = len(acknowledged) + count
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with lock:
                if len(acknowledged) >= target:
                    return
            time.sleep(0.01)
        raise AssertionError(f"the creators got fewer than {count} runs acknowledged in 30 s:\n{server.output()}")

    creators = [threading.Thread(target=create) for _ in range(CREATORS)]
    for thread in creators:
        thread.start()
    try:
        for life in range(1, KILLS + 1):
            wait_for_more(PER_LIFE)
            assert server.process is not None
            server.process.kill()  # SIGKILL, mid-creation
            server.process.wait()
            server = ServerProcess(tmp_path / f"life{life}", url).start()  # the same database
            current["api"] = server.api
        wait_for_more(PER_LIFE)
    finally:
        stop.set()
        for thread in creators:
            thread.join(timeout=30)
        server.stop()

    server = ServerProcess(tmp_path / "check", url).start()
    try:
        stored = _stored(server.api, label)
    finally:
        server.stop()
    lost = acknowledged - set(stored)
    print(f"{kind}: {len(acknowledged)} runs acknowledged over {KILLS} kills, {cut_off[0]} calls cut off, "
          f"{len(set(stored) - acknowledged)} stored unacknowledged, {len(lost)} lost")  # fmt: skip
    assert not lost, f"{len(lost)} acknowledged runs lost: {sorted(lost)[:5]}"
    assert {stored[run] for run in acknowledged} == {"Scheduled"}


@pytest.mark.parametrize("kind", DATABASES)
def test_a_killed_agent_s_run_is_finished_through_another_server_process(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = _database(kind, tmp_path, request)
    servers = [ServerProcess(tmp_path / f"server{i}", url, env=FAST) for i in range(2)]
    agents: list[Agents] = []
    try:
        for server in servers:  # one after the other: the first migrates the database
            server.start()
            agents.append(Agents(server, server.home))
        with Client(servers[0].url) as client:
            client.create_project("acceptance")
            flow_id = register_script(
                client, write_flow(tmp_path, "survivor", SLOW_FIRST_TIME.format(folder=str(tmp_path)))
            )
            run_id = client.create_flow_run(flow_id)
        first = agents[0].start("-l", "r", "--name", "first", env=AGENT_ENV)
        spans = tmp_path / "spans.txt"
        wait_for(lambda: spans.exists() and "start" in spans.read_text(), what="the first attempt to start")
        first_pid = int(spans.read_text().split()[1])
        os.kill(first.pid, signal.SIGKILL)  # the agent and its flow-run process, at once
        os.kill(first_pid, signal.SIGKILL)
        first.wait()
        wait_for(lambda: not pid_alive(first_pid), what="the flow-run process to die")
        agents[1].start("-l", "r", "--name", "second", env=AGENT_ENV)
        with Client(servers[1].url) as client:
            run = finished(client, run_id, timeout=60)
            assert run.state == "Success", run.state_message
            assert run.agent_id == {a.name: a.id for a in client.list_agents()}["second"]
            # two servers swept for lost runs; the run was rescheduled by one of them, once
            assert run.reschedule_count == 1
            messages = [r.message for r in client.get_flow_run_logs(run_id)]
        assert sum("no heartbeat" in m for m in messages) == 1, messages
        starts = [line for line in spans.read_text().splitlines() if line.startswith("start")]
        assert len(starts) == 2
    finally:
        for starter in agents:
            starter.stop_all()
        for server in servers:
            server.stop()
