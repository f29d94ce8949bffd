"""``headwater agent local start``: a real agent process, stopped by a signal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
import pytest

from headwater.client import Client
from headwater.server.process import ServerProcess, free_port

from .helpers import unique, wait_for


def agent_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "headwater", "agent", "local", "start", *args]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_agent_cleanly(
    signum: signal.Signals, server: ServerProcess, client: Client, flow_id: str
) -> None:
    label, name, port = unique("label"), unique("cli-agent"), free_port()
    env = {**os.environ, "HEADWATER__API__URL": server.url, "HEADWATER__AGENT__CLAIM_WAIT": "1",
           "HEADWATER__AGENT__STOP_TIMEOUT": "20"}  # fmt: skip
    args = ["-l", label, "--name", name, "--no-hostname-label", "--agent-address", f"http://127.0.0.1:{port}"]
    process = subprocess.Popen(
        agent_command(*args), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:

        def healthy() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).json()["status"] == "ok"
            except httpx.TransportError:
                assert process.poll() is None, process.communicate()[0]
                return False

        wait_for(healthy, timeout=20, what="the agent's health endpoint")
        # a run it claims and deploys with the real entrypoint (which can't load this metadata-only flow)
        run_id = client.create_flow_run(flow_id, labels=[label])
        process.send_signal(signum)
        output, _ = process.communicate(timeout=40)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output
    assert f"got {signum.name}" in output and f"agent {name!r} stopped" in output, output
    assert client.get_flow_run(run_id).state not in ("Submitted", "Running")  # finished, or put back
    (registered,) = [a for a in client.list_agents() if a.name == name]
    assert registered.kind == "local" and registered.labels == [label]


def test_an_unreachable_server_is_a_clear_error() -> None:
    env = {**os.environ, "HEADWATER__API__URL": f"http://127.0.0.1:{free_port()}"}
    done = subprocess.run(agent_command("-l", "dev"), env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "headwater: error: can't reach the headwater API" in done.stderr


def test_a_malformed_env_var_is_refused() -> None:
    done = subprocess.run(agent_command("--env", "NOVALUE"), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "must look like NAME=VALUE" in done.stderr
