"""The client against a server with auth on: tokens from `headwater server create-token`, scopes enforced."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from headwater.client import AuthError, Client, ClientError

from .flows import make_flow
from .live import LiveServer, unique


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    server = LiveServer(tmp_path_factory.mktemp("auth-server"), env={"HEADWATER__SERVER__AUTH": "true"})
    admin, agent = server.create_token("admin"), server.create_token("agent")
    server.start()
    try:
        with Client(server.url, api_token=admin) as c:
            user = c.create_token("a user", "user").token
        yield SimpleNamespace(server=server, admin=admin, agent=agent, user=user)
    finally:
        server.stop()


def test_no_token_is_401_naming_the_fix(secured: SimpleNamespace) -> None:
    with Client(secured.server.url, api_token="") as client:
        assert client.health().status == "ok"  # needs no token
        with pytest.raises(AuthError, match="needs an API token: send `Authorization: Bearer <token>`") as info:
            client.list_projects()
    assert info.value.status_code == 401


def test_a_wrong_token_is_401(secured: SimpleNamespace) -> None:
    with Client(secured.server.url, api_token="hw_wrong") as client, pytest.raises(AuthError, match="not valid"):
        client.list_agents()


def test_agent_token_reports_but_does_not_administer(secured: SimpleNamespace, tmp_path: Path) -> None:
    project, label = unique("project"), unique("label")
    with Client(secured.server.url, api_token=secured.user) as user:
        user.create_project(project)
        flow_id = user.register(make_flow("etl", tmp_path), project)
        run_id = user.create_flow_run(flow_id, labels=[label])
    with Client(secured.server.url, api_token=secured.agent) as agent:
        agent_id = agent.register_agent(unique("agent"), "local", [label])
        [claimed] = agent.claim_flow_runs(agent_id, [label])
        assert claimed.id == run_id
        agent.set_flow_run_state(run_id, "Running")
        assert agent.write_logs(run_id, [{"message": "hello"}]) == 1
        agent.set_task_run_states(run_id, [{"task_slug": "double-1", "state": "Success"}])
        agent.heartbeat_flow_run(run_id)
        assert agent.set_flow_run_state(run_id, "Success").state == "Success"
        assert [r.message for r in agent.get_flow_run_logs(run_id)] == ["hello"]
        for refused in (
            lambda: agent.create_project(unique("project")),
            lambda: agent.register(make_flow("etl", tmp_path), project),
            lambda: agent.create_flow_run(flow_id),
            lambda: agent.cancel_flow_run(run_id),
            lambda: agent.create_token("more", "admin"),
        ):
            with pytest.raises(AuthError, match="a token of scope 'agent' can't do this") as info:
                refused()
            assert info.value.status_code == 403


def test_user_token_cannot_make_tokens(secured: SimpleNamespace) -> None:
    with Client(secured.server.url, api_token=secured.user) as user, pytest.raises(ClientError) as info:
        user.create_token("more", "admin")
    assert info.value.status_code == 403 and "needs scope 'admin'" in str(info.value)


def test_token_from_settings(secured: SimpleNamespace, settings_env) -> None:
    settings_env(API__URL=secured.server.url, API__TOKEN=secured.admin)
    with Client() as client:
        assert isinstance(client.list_projects(), list)
