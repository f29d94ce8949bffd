"""Issue 5's secrets end to end: a flow in a private GitHub repo loads only with a token from the API.

A server with auth on, a fake GitHub API that refuses requests without the
token (``tests/storage/services_github.py``), a flow registered with
``GitHub(access_token_secret="GITHUB_TOKEN")``, the token set with
``Client.set_secret``, and a real ``headwater agent local start`` process holding
only an agent-scope API token and no local secret: its flow-run process must
read the token from the API's secret store to load the flow. Without the secret
the run fails naming it. The token never shows in a log, the agent's output
(which carries the flow-run processes' output) or the server's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from headwater.client import Client
from headwater.config.settings import ServerSettings
from headwater.server.process import ServerProcess
from headwater.server.serve import make_token
from headwater.storage.github import GitHub
from headwater.storage.script import extract_flow_from_file
from storage.services_github import Repository, serve_github

from .conftest import Agents, finished, wait_for, write_flow

TOKEN = "ghp_the-private-repo-token-0123456789"
SHA = "d" * 40
FLOW = """
from headwater import Flow, task
from headwater.environments import LocalEnvironment

@task
def hello():
    return "hi"

with Flow("private-etl", environment=LocalEnvironment(labels=["private"])) as flow:
    hello()
"""


@dataclass
class Setup:
    server: ServerProcess
    user: Client
    agents: Agents
    agent_token: str
    repository: Repository
    flow_id: str


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    assert not any(k.upper().startswith("HEADWATER__CONTEXT__SECRETS__") for k in os.environ)
    home = tmp_path / "home"
    home.mkdir()
    database = f"sqlite:///{home / 'hw.db'}"
    settings = ServerSettings(database_url=database)
    user_token = make_token(settings, home, "user", "user").token
    agent_token = make_token(settings, home, "agent", "agent").token
    server = ServerProcess(home, database, env={"HEADWATER__SERVER__AUTH": "true"}).start()
    repository = Repository("acme/private", {"main": SHA}, {(SHA, "flows/etl.py"): FLOW}, TOKEN, require_token=True)
    agents = Agents(server, home)
    with serve_github(repository) as github, Client(server.url, api_token=user_token) as user:
        try:
            user.create_project("acceptance")
            flow = extract_flow_from_file(path=str(write_flow(tmp_path, "etl", FLOW)))
            flow.storage = GitHub(
                "acme/private", "flows/etl.py", ref="main", base_url=github, access_token_secret="GITHUB_TOKEN"
            )
            flow_id = user.register(flow, "acceptance")
            yield Setup(server, user, agents, agent_token, repository, flow_id)
        finally:
            agents.stop_all()
            server.stop()


def start_agent(setup: Setup) -> None:
    setup.agents.start(
        "-l", "private", "--show-flow-logs",
        env={
            "HEADWATER__API__TOKEN": setup.agent_token,
            "HEADWATER__LOGGING__LEVEL": "DEBUG",
            "HEADWATER__AGENT__CLAIM_WAIT": "1",  # so it stops soon after the test
        },
    )  # fmt: skip
    wait_for(lambda: setup.user.list_agents(), what="the agent to register")


def run_logs(client: Client, run_id: str) -> str:
    return "\n".join(f"{r.level} {r.name} {r.message}" for r in client.get_flow_run_logs(run_id))


def test_the_token_comes_from_the_api_secret_store(setup: Setup) -> None:
    setup.user.set_secret("GITHUB_TOKEN", TOKEN)
    start_agent(setup)

    run = finished(setup.user, setup.user.create_flow_run(setup.flow_id), timeout=90)

    logs = run_logs(setup.user, run.id)
    assert run.state == "Success", f"{run.state_message}\n{logs}\n{setup.agents.logs()}"
    assert "secret(s) of the flow's storage resolved: 'GITHUB_TOKEN' from the API's secret store" in logs
    assert {auth for _, auth in setup.repository.requests} == {f"Bearer {TOKEN}"}
    agent_output = setup.agents.logs()
    assert "flow 'private-etl' version 1 loaded from GitHub storage" in agent_output  # the process's output is here
    for output in (logs, agent_output, setup.server.output(), run.state_message or ""):
        assert TOKEN not in output


def test_without_the_secret_anywhere_the_run_fails_naming_it(setup: Setup) -> None:
    start_agent(setup)

    run = finished(setup.user, setup.user.create_flow_run(setup.flow_id), timeout=90)

    message = run.state_message or ""
    assert run.state == "Failed", message
    assert "needs secret(s) 'GITHUB_TOKEN'" in message
    assert "`headwater create secret GITHUB_TOKEN`" in message
    assert "HEADWATER__CONTEXT__SECRETS__GITHUB_TOKEN" in message
    assert "needs secret(s) 'GITHUB_TOKEN'" in run_logs(setup.user, run.id)
    assert setup.repository.requests == []  # resolved before get_flow: GitHub was never asked
    assert setup.user.get_task_runs(run.id) == []
