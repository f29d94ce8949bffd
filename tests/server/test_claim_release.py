"""Releasing a waiting claim (``POST /work/claim/release``): a stopping agent's long-poll ends at once.

The claim answers what it holds (nothing, when it had taken nothing) and takes nothing
more: a run created after the release stays Scheduled for another agent. A release that
reaches the server before its claim does ends that claim as soon as it arrives.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import httpx
import pytest

from .helpers import agent, project, register, run


def _claim(base_url: str, body: dict[str, Any], answer: dict[str, Any]) -> None:
    with httpx.Client(base_url=base_url, timeout=60) as own:
        started = time.monotonic()
        response = own.post("/work/claim", json=body)
        answer.update(status=response.status_code, ids=[r["id"] for r in response.json()["flow_runs"]],
                      waited=time.monotonic() - started)  # fmt: skip


def _waiting(api: httpx.Client, body: dict[str, Any]) -> tuple[threading.Thread, dict[str, Any]]:
    answer: dict[str, Any] = {}
    thread = threading.Thread(target=_claim, args=(str(api.base_url), body, answer))
    thread.start()
    time.sleep(0.5)  # the claim reaches the server, searches, finds nothing and waits
    assert thread.is_alive() and not answer
    return thread, answer


def test_a_released_claim_answers_at_once_and_takes_nothing_more(api: httpx.Client, unique: str) -> None:
    project(api, f"rel-{unique}")
    flow_id = register(api, f"rel-{unique}", "etl")
    labels = [f"rel-{unique}"]
    aid = agent(api, f"a-{unique}", labels)
    claim_id = uuid.uuid4().hex
    thread, answer = _waiting(api, {"agent_id": aid, "labels": labels, "wait": 30, "claim_id": claim_id})
    released = time.monotonic()
    response = api.post("/work/claim/release", json={"agent_id": aid, "claim_id": claim_id})
    assert response.status_code == 204, response.text
    thread.join(timeout=10)
    assert answer == {"status": 200, "ids": [], "waited": answer["waited"]}
    assert time.monotonic() - released < 5  # not its 30 s wait
    created = run(api, flow_id, labels=labels)  # after the release: for another claim, not this one
    time.sleep(0.5)
    assert api.get(f"/runs/{created['id']}").json()["state"] == "Scheduled"


def test_a_release_before_its_claim_ends_the_claim_when_it_arrives(api: httpx.Client, unique: str) -> None:
    project(api, f"early-{unique}")
    flow_id = register(api, f"early-{unique}", "etl")
    labels = [f"early-{unique}"]
    aid = agent(api, f"a-{unique}", labels)
    due = run(api, flow_id, labels=labels)
    claim_id = uuid.uuid4().hex
    assert api.post("/work/claim/release", json={"agent_id": aid, "claim_id": claim_id}).status_code == 204
    answer: dict[str, Any] = {}
    _claim(str(api.base_url), {"agent_id": aid, "labels": labels, "wait": 30, "claim_id": claim_id}, answer)
    assert answer["status"] == 200 and answer["ids"] == [] and answer["waited"] < 5
    assert api.get(f"/runs/{due['id']}").json()["state"] == "Scheduled"  # released: it takes nothing
    # the next claim (a new id) is not released, and takes the run
    again = api.post("/work/claim", json={"agent_id": aid, "labels": labels, "claim_id": uuid.uuid4().hex})
    assert [r["id"] for r in again.json()["flow_runs"]] == [due["id"]]


def test_releasing_a_claim_of_an_unknown_agent_is_a_404(api: httpx.Client) -> None:
    response = api.post("/work/claim/release", json={"agent_id": "no-such-agent", "claim_id": "c1"})
    assert response.status_code == 404 and "no-such-agent" in response.json()["detail"]


def test_a_release_of_another_claim_leaves_this_one_waiting(api: httpx.Client, unique: str) -> None:
    labels = [f"other-{unique}"]
    aid = agent(api, f"a-{unique}", labels)
    other = agent(api, f"b-{unique}", labels)
    claim_id = uuid.uuid4().hex
    thread, answer = _waiting(api, {"agent_id": aid, "labels": labels, "wait": 2, "claim_id": claim_id})
    for body in ({"agent_id": aid, "claim_id": uuid.uuid4().hex},  # another claim id of the same agent
                 {"agent_id": other, "claim_id": claim_id}):  # the same claim id, another agent  # fmt: skip
        assert api.post("/work/claim/release", json=body).status_code == 204
    thread.join(timeout=10)
    assert answer["ids"] == [] and answer["waited"] >= 2  # it waited out its wait


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"agent_id": "a"}, "claim_id"),
        ({"claim_id": "c1"}, "agent_id"),
        ({"agent_id": "a", "claim_id": ""}, "claim_id"),
        ({"agent_id": "a", "claim_id": "not an id!"}, "claim_id"),
        ({"agent_id": "a", "claim_id": "x" * 65}, "claim_id"),
        ({"agent_id": "a" * 65, "claim_id": "c1"}, "agent_id"),
        ({"agent_id": "a", "claim_id": "c1", "extra": 1}, "extra"),
    ],
)
def test_a_bad_release_is_refused_naming_the_field(api: httpx.Client, body: dict[str, Any], field: str) -> None:
    response = api.post("/work/claim/release", json=body)
    assert response.status_code == 422, response.text
    assert field in response.text
