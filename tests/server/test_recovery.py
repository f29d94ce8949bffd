"""The recovery service: lost runs are rescheduled a bounded number of times, then Failed, with a log line."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from .helpers import agent, project, register, run
from .live import LiveServer

FAST_RECOVERY = {
    "HEADWATER__SERVER__HEARTBEAT_TIMEOUT": "1",
    "HEADWATER__SERVER__RECOVERY_INTERVAL": "0.2",
    "HEADWATER__SERVER__MAX_RESCHEDULES": "1",
}


def wait_for_state(api: httpx.Client, run_id: str, state: str, timeout: float = 15) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = api.get(f"/runs/{run_id}").json()
        if body["state"] == state:
            return dict(body)
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not reach {state}; it is {body['state']}")


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_lost_run_is_rescheduled_then_failed_with_log_lines(fresh_server: Callable[..., LiveServer], kind: str) -> None:
    live = fresh_server(kind, env=FAST_RECOVERY)
    with httpx.Client(base_url=live.api, timeout=30) as api:
        project(api, "r")
        r = run(api, register(api, "r", "etl", labels=["x"]))
        aid = agent(api, "a", ["x"])
        assert api.post("/work/claim", json={"agent_id": aid, "labels": ["x"]}).json()["flow_runs"]
        api.post(f"/runs/{r['id']}/state", json={"state": "Running"})
        back = wait_for_state(api, r["id"], "Scheduled")
        assert back["reschedule_count"] == 1 and back["agent_id"] is None
        assert "no heartbeat" in str(back["state_message"]) and "rescheduled (1 of 1)" in str(back["state_message"])
        # claimed again, and lost again: now it fails
        assert api.post("/work/claim", json={"agent_id": aid, "labels": ["x"]}).json()["flow_runs"]
        failed = wait_for_state(api, r["id"], "Failed")
        assert "Failed" in str(failed["state_message"]) or "most allowed" in str(failed["state_message"])
        logs = [x["message"] for x in api.get(f"/runs/{r['id']}/logs").json()["records"]]
        assert len(logs) == 2
        assert "rescheduled (1 of 1)" in logs[0] and "most allowed" in logs[1]


def test_heartbeats_keep_a_run_alive(fresh_server: Callable[..., LiveServer]) -> None:
    live = fresh_server("sqlite", env=FAST_RECOVERY)
    with httpx.Client(base_url=live.api, timeout=30) as api:
        project(api, "h")
        r = run(api, register(api, "h", "etl", labels=["x"]))
        aid = agent(api, "a", ["x"])
        api.post("/work/claim", json={"agent_id": aid, "labels": ["x"]})
        api.post(f"/runs/{r['id']}/state", json={"state": "Running"})
        for _ in range(12):  # 3 s: three times the timeout
            api.post(f"/runs/{r['id']}/heartbeat")
            time.sleep(0.25)
        body = api.get(f"/runs/{r['id']}").json()
        assert body["state"] == "Running" and body["reschedule_count"] == 0


def test_a_rescheduled_run_wakes_a_waiting_claimer(fresh_server: Callable[..., LiveServer]) -> None:
    live = fresh_server("sqlite", env=FAST_RECOVERY)
    with httpx.Client(base_url=live.api, timeout=30) as api:
        project(api, "w")
        r = run(api, register(api, "w", "etl", labels=["x"]))
        first = agent(api, "first", ["x"])
        second = agent(api, "second", ["x"])
        api.post("/work/claim", json={"agent_id": first, "labels": ["x"]})
        # the first agent dies; the second is waiting and gets the run back
        taken = api.post("/work/claim", json={"agent_id": second, "labels": ["x"], "wait": 15}).json()
        assert [x["id"] for x in taken["flow_runs"]] == [r["id"]]
        assert api.get(f"/runs/{r['id']}").json()["agent_id"] == second
