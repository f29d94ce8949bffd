"""The base machinery every agent shares: argument checks, env vars, the health endpoint, poke, heartbeats."""

from __future__ import annotations

import time

import httpx
import pytest

from headwater.agent import Agent
from headwater.client import Client
from headwater.server.process import ServerProcess

from .helpers import FAST, running, unique, wait_for
from .test_local import local_agent


class NoPlatformAgent(Agent):
    """The base machinery alone: a platform that can deploy nothing."""

    kind = "none"

    def deploy_flow(self, flow_run: object) -> None:
        raise RuntimeError("this agent has no platform to deploy to")


def test_the_base_is_an_abc_whose_one_abstract_hook_is_deploy_flow() -> None:
    assert Agent.__abstractmethods__ == frozenset({"deploy_flow"})
    with pytest.raises(TypeError, match="abstract method deploy_flow"):
        Agent()  # type: ignore[abstract]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"labels": "dev"}, "not the string 'dev'"),
        ({"labels": ["dev", " "]}, "non-empty strings"),
        ({"labels": ["dev", 3]}, "non-empty strings"),
        ({"env_vars": {"A": 1}}, "string values"),
        ({"env_vars": {"A=B": "1"}}, "without '='"),
        ({"agent_address": "127.0.0.1:8080"}, "http://127.0.0.1:8080"),
        ({"max_polls": -1}, "max_polls"),
        ({"name": " "}, "name"),
    ],
)
def test_bad_arguments_are_refused_by_name(server: ServerProcess, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NoPlatformAgent(api_url=server.url, settings=FAST, **kwargs)


def test_labels_are_a_set(server: ServerProcess) -> None:
    assert NoPlatformAgent(labels=["b", "a", "b"], api_url=server.url).labels == {"a", "b"}


def test_flow_run_env_carries_the_token_and_image_only_when_there_are_some(
    server: ServerProcess, client: Client, flow_id: str
) -> None:
    run = client.get_flow_run(client.create_flow_run(flow_id, labels=[unique("label")]))
    plain = NoPlatformAgent(api_url=server.url, api_token="", env_vars={"HEADWATER__API__TOKEN": "mine", "X": "1"})
    assert plain.flow_run_env(run) == {
        "HEADWATER__API__TOKEN": "mine",  # no token configured: nothing to protect
        "X": "1",
        "HEADWATER__CONTEXT__FLOW_RUN_ID": run.id,
        "HEADWATER__CONTEXT__FLOW_ID": run.flow_id,
        "HEADWATER__API__URL": server.url,
    }
    tokened = NoPlatformAgent(api_url=server.url, api_token="s3cret", env_vars={"HEADWATER__API__TOKEN": "mine"})
    env = tokened.flow_run_env(run, image="flows:1")
    assert env["HEADWATER__API__TOKEN"] == "s3cret"
    assert env["HEADWATER__CONTEXT__IMAGE"] == "flows:1"


def test_the_base_agent_fails_runs_it_cannot_deploy(server: ServerProcess, client: Client, flow_id: str) -> None:
    label = unique("label")
    run_id = client.create_flow_run(flow_id, labels=[label])
    with running(NoPlatformAgent(name=unique("base"), labels=[label], api_url=server.url, settings=FAST)):
        run = client.wait_for_flow_run(run_id, timeout=30)
    assert run.state == "Failed"
    assert "RuntimeError: this agent has no platform to deploy to" in (run.state_message or "")


def test_health_endpoint_and_poke(server: ServerProcess, client: Client, flow_id: str) -> None:
    label = unique("label")
    # claims answer at once and the agent then rests a minute: only a poke makes it claim sooner
    settings = FAST.model_copy(update={"claim_wait": 0.0, "poll_interval": 60.0})
    agent = local_agent(server, labels=[label], settings=settings, agent_address="http://127.0.0.1:0")
    with running(agent):
        assert agent.health_url is not None
        wait_for(lambda: agent.polls >= 1, what="the first claim")
        health = httpx.get(f"{agent.health_url}/api/health")
        assert health.status_code == 200
        body = health.json()
        assert body == {
            "status": "ok",
            "name": agent.name,
            "kind": "local",
            "agent_id": agent.agent_id,
            "labels": [label],
            "in_flight": 0,
            "polls": 1,
            "processes": 0,
        }
        assert httpx.get(f"{agent.health_url}/nope").status_code == 404

        run_id = client.create_flow_run(flow_id, labels=[label])
        time.sleep(0.5)
        assert client.get_flow_run(run_id).state == "Scheduled"  # resting, not claiming
        poked = httpx.post(f"{agent.health_url}/api/poke")
        assert poked.status_code == 200
        assert client.wait_for_flow_run(run_id, timeout=20).state == "Success"
        # the poked claim took the run; having got one, it claimed again at once, then rested
        assert httpx.get(f"{agent.health_url}/api/health").json()["polls"] == 3
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{agent.health_url}/api/health", timeout=2)  # closed with the agent


def test_heartbeats_while_idle(server: ServerProcess, client: Client) -> None:
    settings = FAST.model_copy(update={"claim_wait": 0.0, "poll_interval": 60.0, "heartbeat_interval": 0.3})
    with running(local_agent(server, labels=[unique("label")], settings=settings)) as agent:
        wait_for(lambda: agent.polls >= 1, what="the first claim")

        def last_seen() -> float:
            (seen,) = [a.last_seen for a in client.list_agents() if a.id == agent.agent_id]
            return seen.timestamp()

        first = last_seen()
        wait_for(lambda: last_seen() > first + 0.5, timeout=5, what="a heartbeat")
        assert agent.polls == 1  # seen without claiming


def test_stop_releases_the_claim_in_flight(server: ServerProcess, client: Client, flow_id: str) -> None:
    # a long claim_wait costs the server fewer requests; stopping must not wait it out
    label = unique("label")
    settings = FAST.model_copy(update={"claim_wait": 60.0})
    agent = NoPlatformAgent(name=unique("stopping"), labels=[label], api_url=server.url, settings=settings)
    with running(agent, timeout=10):
        wait_for(agent._loop.claiming.is_set, what="a claim call")
        time.sleep(0.5)  # the claim waits at the server
        stopped = time.monotonic()
    assert time.monotonic() - stopped < 5  # not the claim's 60 s
    assert agent.polls == 1
    run_id = client.create_flow_run(flow_id, labels=[label])  # the released claim takes nothing
    time.sleep(0.5)
    assert client.get_flow_run(run_id).state == "Scheduled"


def test_heartbeats_wait_for_no_long_poll_in_flight(server: ServerProcess, client: Client) -> None:
    # the claim tells the server the agent is alive as it begins: no heartbeat is sent beside it
    settings = FAST.model_copy(update={"claim_wait": 3.0, "heartbeat_interval": 0.5})
    with running(NoPlatformAgent(name=unique("quiet"), labels=[unique("label")], api_url=server.url,
                                 settings=settings)) as agent:  # fmt: skip
        wait_for(agent._loop.claiming.is_set, what="a claim call")
        assert agent.agent_id is not None
        seen = [a.last_seen for a in client.list_agents() if a.id == agent.agent_id]
        time.sleep(2.0)
        assert agent.polls == 0  # still in its first claim
        assert [a.last_seen for a in client.list_agents() if a.id == agent.agent_id] == seen


def test_an_unreachable_server_stops_start_with_a_clear_error() -> None:
    from headwater.client import ApiConnectionError
    from headwater.server.process import free_port

    agent = NoPlatformAgent(api_url=f"http://127.0.0.1:{free_port()}", settings=FAST)
    with pytest.raises(ApiConnectionError, match="can't reach the headwater API"):
        agent.start()


def test_an_env_var_set_to_none_is_dropped_from_the_runs_environment(
    server: ServerProcess, client: Client, flow_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = client.get_flow_run(client.create_flow_run(flow_id, labels=[unique("label")]))
    monkeypatch.setenv("HW_INHERITED", "from the agent's own environment")
    monkeypatch.setenv("HW_KEPT", "kept")

    agent = local_agent(server, env_vars={"HW_INHERITED": None, "HW_SET": "1", "HW_NEVER_SET": None})

    assert agent.env_vars == {"HW_INHERITED": None, "HW_SET": "1", "HW_NEVER_SET": None}
    env = agent.flow_run_env(run)
    assert env["HW_SET"] == "1" and "HW_INHERITED" not in env and "HW_NEVER_SET" not in env
    process_env = agent.process_env(run)  # what the LocalAgent's flow-run process gets
    assert "HW_INHERITED" not in process_env and process_env["HW_KEPT"] == "kept"
    assert process_env["HW_SET"] == "1" and process_env["HEADWATER__CONTEXT__FLOW_RUN_ID"] == run.id
    with pytest.raises(ValueError, match="or to None to drop the variable"):
        local_agent(server, env_vars={"HW_BAD": 3})
