"""The claim: the label rule in SQL, no starvation, oldest first, long-poll, one agent per run."""

from __future__ import annotations

import datetime
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import httpx
import pytest

from .helpers import agent, project, register, run
from .live import LiveServer


def claim(api: httpx.Client, agent_id: str, labels: list[str], limit: int = 1, wait: float = 0) -> list[str]:
    response = api.post("/work/claim", json={"agent_id": agent_id, "labels": labels, "limit": limit, "wait": wait})
    assert response.status_code == 200, response.text
    return [r["id"] for r in response.json()["flow_runs"]]


@pytest.mark.parametrize(
    ("run_labels", "agent_labels", "taken"),
    [
        (["dev"], ["dev"], True),
        (["dev"], ["dev", "gpu"], True),
        (["dev", "gpu"], ["dev"], False),
        (["dev"], ["prod"], False),
        ([], [], True),
        ([], ["dev"], False),
        (["dev"], [], False),
    ],
)
def test_label_rule(label_server: LiveServer, unique: str, run_labels: list[str], agent_labels: list[str],
                    taken: bool) -> None:
    with httpx.Client(base_url=label_server.api) as api:
        project(api, f"p-{unique}")
        r = run(api, register(api, f"p-{unique}", "etl"), labels=run_labels)
        try:
            aid = agent(api, f"a-{unique}", agent_labels)
            assert claim(api, aid, agent_labels) == ([r["id"]] if taken else [])
            state = api.get(f"/runs/{r['id']}").json()
            assert state["state"] == ("Submitted" if taken else "Scheduled")
            assert state["agent_id"] == (aid if taken else None)
        finally:
            # the next case's claims must again see only their own run
            assert api.post(f"/runs/{r['id']}/cancel").status_code == 200
            assert api.get(f"/runs/{r['id']}").json()["state"] not in ("Scheduled", "Submitted")


@pytest.fixture(scope="module")
def label_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server of this module's own for ``test_label_rule``, whose claims must see every run: each case ends
    its run (cancelled) so the next one's claim sees only its own; no recovery sweep (it would reschedule them).

    A server per case would cost a server start each (seconds)."""
    home = tmp_path_factory.mktemp("label-rule")
    live = LiveServer(home, f"sqlite:///{home / 'headwater.db'}", env={"HEADWATER__SERVER__RECOVERY_INTERVAL": "3600"})
    yield live.start()
    live.stop()


def test_a_matching_run_is_not_starved_by_older_runs_that_dont_match(api: httpx.Client, unique: str) -> None:
    project(api, f"s-{unique}")
    flow_id = register(api, f"s-{unique}", "etl")
    for _ in range(30):
        run(api, flow_id, labels=[f"other-{unique}"])
    wanted = run(api, flow_id, labels=[f"mine-{unique}"])
    aid = agent(api, f"a-{unique}", [f"mine-{unique}"])
    assert claim(api, aid, [f"mine-{unique}"], limit=1) == [wanted["id"]]


def test_oldest_due_first_and_future_runs_wait(api: httpx.Client, unique: str) -> None:
    project(api, f"o-{unique}")
    flow_id = register(api, f"o-{unique}", "etl")
    now = datetime.datetime.now(datetime.UTC)
    labels = [f"o-{unique}"]
    newer = run(api, flow_id, labels=labels, scheduled_start_time=(now - datetime.timedelta(minutes=1)).isoformat())
    older = run(api, flow_id, labels=labels, scheduled_start_time=(now - datetime.timedelta(hours=1)).isoformat())
    future = run(api, flow_id, labels=labels, scheduled_start_time=(now + datetime.timedelta(hours=1)).isoformat())
    aid = agent(api, f"a-{unique}", labels)
    assert claim(api, aid, labels, limit=10) == [older["id"], newer["id"]]
    assert api.get(f"/runs/{future['id']}").json()["state"] == "Scheduled"
    unknown = api.post("/work/claim", json={"agent_id": "no-such-agent", "labels": labels})
    assert unknown.status_code == 404


def test_long_poll_answers_when_a_matching_run_is_created(api: httpx.Client, unique: str) -> None:
    project(api, f"w-{unique}")
    flow_id = register(api, f"w-{unique}", "etl")
    labels = [f"w-{unique}"]
    aid = agent(api, f"a-{unique}", labels)
    got: dict[str, object] = {}

    def waiter() -> None:
        with httpx.Client(base_url=str(api.base_url), timeout=60) as own:
            started = time.monotonic()
            got["ids"] = claim(own, aid, labels, wait=20)
            got["waited"] = time.monotonic() - started

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.5)
    run(api, flow_id, labels=[f"other-{unique}"])  # not for this agent: it keeps waiting
    time.sleep(0.3)
    assert thread.is_alive()
    created = run(api, flow_id, labels=labels)
    thread.join(timeout=20)
    assert got["ids"] == [created["id"]]
    assert float(got["waited"]) < 10  # answered on creation, long before its 20 s wait ended


def test_long_poll_ends_after_the_wait_with_nothing(api: httpx.Client, unique: str) -> None:
    aid = agent(api, f"idle-{unique}", [f"idle-{unique}"])
    started = time.monotonic()
    assert claim(api, aid, [f"idle-{unique}"], wait=0.5) == []
    assert time.monotonic() - started >= 0.5


def test_long_poll_picks_up_a_run_when_it_becomes_due(api: httpx.Client, unique: str) -> None:
    project(api, f"d-{unique}")
    flow_id = register(api, f"d-{unique}", "etl")
    labels = [f"d-{unique}"]
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=1.5)
    due = run(api, flow_id, labels=labels, scheduled_start_time=soon.isoformat())
    aid = agent(api, f"a-{unique}", labels)
    assert claim(api, aid, labels, wait=0) == []
    assert claim(api, aid, labels, wait=10) == [due["id"]]
    assert datetime.datetime.now(datetime.UTC) >= soon


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_concurrent_claimers_never_share_a_run(fresh_server: Callable[..., LiveServer], kind: str) -> None:
    live = fresh_server(kind)
    with httpx.Client(base_url=live.api, timeout=60) as api:
        project(api, "c")
        flow_id = register(api, "c", "etl")
        runs = {run(api, flow_id, labels=["pool"])["id"] for _ in range(150)}
        agents = [agent(api, f"claimer-{i}", ["pool"]) for i in range(8)]
    claimed: list[tuple[str, str]] = []
    lock = threading.Lock()

    def claimer(aid: str) -> None:
        with httpx.Client(base_url=live.api, timeout=60) as own:
            while True:
                ids = claim(own, aid, ["pool"], limit=3)
                assert len(ids) <= 3
                if not ids:
                    return
                with lock:
                    claimed.extend((run_id, aid) for run_id in ids)

    threads = [threading.Thread(target=claimer, args=(aid,)) for aid in agents]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    counts = Counter(run_id for run_id, _ in claimed)
    assert set(counts) == runs
    assert max(counts.values()) == 1
    assert len({aid for _, aid in claimed}) > 1  # the work really was shared out
    with httpx.Client(base_url=live.api) as api:
        page = api.get("/runs", params={"state": "Submitted", "limit": 1000}).json()
        owners = {r["id"]: r["agent_id"] for r in page["flow_runs"]}
    assert owners == dict(claimed)


def test_a_claim_takes_no_more_than_its_limit(api: httpx.Client, unique: str) -> None:
    # on PostgreSQL, ``id IN (SELECT … LIMIT 1 FOR UPDATE SKIP LOCKED)`` could be rescanned per
    # row by the planner and take every due run: the claim locks its candidates once
    project(api, unique)
    flow_id = register(api, unique, "etl")
    runs = {run(api, flow_id, labels=[unique])["id"] for _ in range(40)}
    claimer = agent(api, f"{unique}-a", [unique])
    first = claim(api, claimer, [unique], limit=1)
    assert len(first) == 1 and set(first) <= runs
    second = claim(api, claimer, [unique], limit=5)
    assert len(second) == 5 and not set(second) & set(first)
    left = api.get("/runs", params={"state": "Scheduled", "label": unique, "limit": 100}).json()["flow_runs"]
    assert {r["id"] for r in left} == runs - set(first) - set(second)


def test_explain_uses_the_labels_an_agent_claims_with(api: httpx.Client, unique: str) -> None:
    project(api, f"x-{unique}")
    r = run(api, register(api, f"x-{unique}", "etl"), labels=[f"gpu-{unique}"])
    aid = agent(api, f"a-{unique}", [f"cpu-{unique}"])
    verdict = {a["id"]: a for a in api.get(f"/runs/{r['id']}/explain").json()["agents"]}
    assert verdict[aid]["can_run"] is False
    claim(api, aid, [f"cpu-{unique}", f"other-{unique}"])  # claims with other labels than it registered
    verdict = {a["id"]: a for a in api.get(f"/runs/{r['id']}/explain").json()["agents"]}
    assert verdict[aid]["labels"] == [f"cpu-{unique}", f"other-{unique}"]


def test_max_claim_wait_cuts_long_waits(fresh_server: Callable[..., LiveServer]) -> None:
    live = fresh_server("sqlite", env={"HEADWATER__SERVER__MAX_CLAIM_WAIT": "0.3"})
    with httpx.Client(base_url=live.api, timeout=60) as api:
        aid = agent(api, "a", ["x"])
        started = time.monotonic()
        assert claim(api, aid, ["x"], wait=30) == []
        assert time.monotonic() - started < 10


def test_a_claim_whose_caller_is_gone_takes_nothing(api: httpx.Client, unique: str) -> None:
    project(api, f"g-{unique}")
    flow_id = register(api, f"g-{unique}", "etl")
    labels = [f"g-{unique}"]
    aid = agent(api, f"gone-{unique}", labels)
    # the caller gives up long before the wait ends
    with httpx.Client(base_url=str(api.base_url), timeout=0.5) as short, pytest.raises(httpx.ReadTimeout):
        short.post("/work/claim", json={"agent_id": aid, "labels": labels, "wait": 20})
    time.sleep(0.3)
    created = run(api, flow_id, labels=labels)  # wakes the abandoned claim, which must not take it
    time.sleep(1.5)
    assert api.get(f"/runs/{created['id']}").json()["state"] == "Scheduled"
