"""The state history of flow runs (``GET /runs/{id}/states``) and ``GET /runs?agent_id=``, on both databases."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from .helpers import agent, project, register, run
from .live import LiveServer
from .test_recovery import FAST_RECOVERY, wait_for_state


def states(api: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    response = api.get(f"/runs/{run_id}/states")
    assert response.status_code == 200, response.text
    return list(response.json())


def at(stamp: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def claim(api: httpx.Client, agent_id: str, labels: list[str]) -> list[str]:
    response = api.post("/work/claim", json={"agent_id": agent_id, "labels": labels})
    assert response.status_code == 200, response.text
    return [r["id"] for r in response.json()["flow_runs"]]


def test_a_run_records_every_state_it_enters_oldest_first(api: httpx.Client, unique: str) -> None:
    project(api, f"s-{unique}")
    label = f"hist-{unique}"
    r = run(api, register(api, f"s-{unique}", "etl", labels=[label]))
    created = states(api, r["id"])
    assert [(e["state"], e["agent_id"]) for e in created] == [("Scheduled", None)]
    assert at(created[0]["timestamp"]) == at(r["created"])

    aid = agent(api, f"hist-agent-{unique}", [label])
    assert claim(api, aid, [label]) == [r["id"]]
    put = api.post(f"/runs/{r['id']}/state", json={"state": "Scheduled", "message": "no room on this machine"})
    assert put.status_code == 200, put.text
    assert claim(api, aid, [label]) == [r["id"]]
    assert api.post(f"/runs/{r['id']}/state", json={"state": "Running", "message": "started"}).status_code == 200
    assert api.post(f"/runs/{r['id']}/state", json={"state": "Success", "message": "all tasks done"}).status_code == 200

    history = states(api, r["id"])
    # the first claim's Submitted is only known once the claim records it (docs/api.md): the
    # current claim's always shows, made from the run's submitted_at
    shown = [(e["state"], e["message"], e["agent_id"]) for e in history if e["state"] != "Submitted"]
    assert shown == [
        ("Scheduled", None, None),
        ("Scheduled", "no room on this machine", aid),
        ("Running", "started", aid),
        ("Success", "all tasks done", aid),
    ]
    submitted = [e for e in history if e["state"] == "Submitted"]
    assert submitted and submitted[-1]["agent_id"] == aid
    assert submitted[-1]["message"] == f"claimed by agent 'hist-agent-{unique}'"
    assert history.index(submitted[-1]) == len(history) - 3  # between the put-back and Running
    stamps = [e["timestamp"] for e in history]
    assert stamps == sorted(stamps)
    final = api.get(f"/runs/{r['id']}").json()
    assert at(history[-1]["timestamp"]) == at(final["end_time"])


def test_cancel_is_recorded(api: httpx.Client, unique: str) -> None:
    project(api, f"c-{unique}")
    r = run(api, register(api, f"c-{unique}", "etl", labels=[f"c-{unique}"]))
    assert api.post(f"/runs/{r['id']}/cancel").status_code == 200
    assert [(e["state"], e["message"]) for e in states(api, r["id"])] == [
        ("Scheduled", None),
        ("Cancelled", "cancelled on request"),
    ]


def test_a_refused_move_records_nothing_and_an_unknown_run_is_404(api: httpx.Client, unique: str) -> None:
    project(api, f"n-{unique}")
    r = run(api, register(api, f"n-{unique}", "etl", labels=[f"n-{unique}"]))
    assert api.post(f"/runs/{r['id']}/state", json={"state": "Success"}).status_code == 409
    assert api.post(f"/runs/{r['id']}/state", json={"state": "Sleeping"}).status_code == 422
    assert [e["state"] for e in states(api, r["id"])] == ["Scheduled"]
    missing = api.get("/runs/no-such-run/states")
    assert missing.status_code == 404 and "flow run 'no-such-run' not found" in missing.json()["detail"]


def test_runs_filter_by_agent(api: httpx.Client, unique: str) -> None:
    project(api, f"a-{unique}")
    label = f"by-agent-{unique}"
    flow_id = register(api, f"a-{unique}", "etl", labels=[label])
    first, second, waiting = run(api, flow_id), run(api, flow_id), run(api, flow_id)
    one = agent(api, f"one-{unique}", [label])
    two = agent(api, f"two-{unique}", [label])
    taken = {aid: claim(api, aid, [label]) for aid in (one, two)}
    assert sorted(taken[one] + taken[two]) == sorted([first["id"], second["id"]])
    for aid in (one, two):
        page = api.get("/runs", params={"agent_id": aid}).json()
        assert [r["id"] for r in page["flow_runs"]] == taken[aid] and page["total"] == 1
        held = api.get("/runs", params={"agent_id": aid, "state": ["Submitted", "Running", "Cancelling"]}).json()
        assert held["total"] == 1
    assert api.get("/runs", params={"agent_id": "no-such-agent"}).json()["total"] == 0
    too_long = api.get("/runs", params={"agent_id": "x" * 37})
    assert too_long.status_code == 422 and "agent_id" in too_long.text
    assert api.get(f"/runs/{waiting['id']}").json()["agent_id"] is None


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_recovery_records_the_reschedule_and_the_failure(fresh_server: Callable[..., LiveServer], kind: str) -> None:
    live = fresh_server(kind, env=FAST_RECOVERY)
    with httpx.Client(base_url=live.api, timeout=30) as api:
        project(api, "r")
        r = run(api, register(api, "r", "etl", labels=["x"]))
        aid = agent(api, "a", ["x"])
        assert claim(api, aid, ["x"]) == [r["id"]]
        wait_for_state(api, r["id"], "Scheduled")
        assert claim(api, aid, ["x"]) == [r["id"]]
        wait_for_state(api, r["id"], "Failed")
        recorded = [e for e in states(api, r["id"]) if e["state"] != "Submitted"]
        assert [(e["state"], e["agent_id"]) for e in recorded] == [
            ("Scheduled", None),
            ("Scheduled", aid),
            ("Failed", aid),
        ]
        assert "rescheduled (1 of 1)" in recorded[1]["message"] and "most allowed" in recorded[2]["message"]


def test_agents_are_live_within_the_seen_window_then_stale(fresh_server: Callable[..., LiveServer]) -> None:
    live = fresh_server("sqlite", env={"HEADWATER__SERVER__AGENT_SEEN_WINDOW": "1"})
    with httpx.Client(base_url=live.api, timeout=30) as api:
        aid = agent(api, "soon-stale", ["x"])
        assert [(a["id"], a["live"]) for a in api.get("/agents").json()] == [(aid, True)]

        def stale() -> bool:
            return api.get("/agents").json()[0]["live"] is False

        deadline = time.monotonic() + 15
        while not stale() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert stale()
        assert api.post(f"/agents/{aid}/heartbeat").json()["live"] is True
        assert api.get("/agents").json()[0]["live"] is True
