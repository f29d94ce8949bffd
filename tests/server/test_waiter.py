"""Waiting claims cost nothing (``services/waiter.py``, ``api/work.py``): no thread, no query until a match.

Some tests run the app in this process (uvicorn in a thread, a real SQLite file, real
HTTP) so they can read the claim queue's counts — how many claims searched for runs —
and the waiter's; the others use server processes.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from headwater.config.settings import ServerSettings
from headwater.server.app import create_app
from headwater.server.services.notifier import (
    MAX_PAYLOAD,
    make_payload,
    make_release_payloads,
    parse_payload,
    parse_release,
)
from headwater.server.services.waiter import ClaimWaiters, fits

from .helpers import agent, project, register, run
from .live import LiveServer


class InProcess:
    """The API app served by uvicorn in a thread of the test process."""

    def __init__(self, home: Path) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.sock = sock
        port = sock.getsockname()[1]
        self.app = create_app(ServerSettings(port=port, database_url=f"sqlite:///{home / 'h.db'}"), home)
        self.api = f"http://127.0.0.1:{port}/api/v1"
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)

    def start(self) -> InProcess:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "the in-process server did not start"
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    @property
    def looked(self) -> int:
        return int(self.app.state.claims.looked)

    @property
    def waiting(self) -> int:
        return int(self.app.state.waiters.waiting)


@pytest.fixture
def local(tmp_path: Path) -> Iterator[InProcess]:
    served = InProcess(tmp_path).start()
    yield served
    served.stop()


def _until(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _claim_in_thread(
    url: str, agent_id: str, labels: list[str], wait: float
) -> tuple[threading.Thread, dict[str, Any]]:
    got: dict[str, Any] = {}

    def claim() -> None:
        with httpx.Client(base_url=url, timeout=wait + 30) as own:
            response = own.post("/work/claim", json={"agent_id": agent_id, "labels": labels, "wait": wait})
            got["status"] = response.status_code
            got["ids"] = [r["id"] for r in response.json()["flow_runs"]]
            got["at"] = time.monotonic()

    thread = threading.Thread(target=claim)
    thread.start()
    return thread, got


def test_a_run_wakes_only_the_claims_its_labels_fit(local: InProcess) -> None:
    with httpx.Client(base_url=local.api, timeout=30) as api:
        project(api, "p")
        flow_id = register(api, "p", "etl")
        b = agent(api, "b", ["b"])
        thread, got = _claim_in_thread(local.api, b, ["b"], wait=20)
        assert _until(lambda: local.waiting == 1)
        looked = local.looked
        for _ in range(5):
            run(api, flow_id, labels=["a"])  # not for {b}: its claim must not even look
        run(api, flow_id, labels=["a", "b"])  # nor this: {a, b} ⊄ {b}
        time.sleep(0.5)
        assert local.looked == looked and local.waiting == 1 and thread.is_alive()
        wanted = run(api, flow_id, labels=["b"])
        thread.join(timeout=20)
        assert got["ids"] == [wanted["id"]]
        assert local.looked == looked + 1  # one search, on the run that fits


def test_a_repeated_empty_claim_does_not_search_until_something_fits(local: InProcess) -> None:
    with httpx.Client(base_url=local.api, timeout=30) as api:
        project(api, "p")
        flow_id = register(api, "p", "etl")
        idle = agent(api, "idle", ["idle"])
        claim = {"agent_id": idle, "labels": ["idle"], "wait": 0}
        assert api.post("/work/claim", json=claim).json()["flow_runs"] == []
        looked, asked = local.looked, local.app.state.claims.asked
        for _ in range(5):
            assert api.post("/work/claim", json=claim).json()["flow_runs"] == []
        assert local.looked == looked and local.app.state.claims.asked == asked + 5  # asked, but searched nothing
        # the agent is still checked on the way: an unknown one is 404, another label set 403 for its token's agent
        assert api.post("/work/claim", json={**claim, "agent_id": "no-such-agent"}).status_code == 404
        # also when it long-polls (the check is then made in a batch while it waits)
        started = time.monotonic()
        assert api.post("/work/claim", json={**claim, "agent_id": "no-such-agent", "wait": 20}).status_code == 404
        assert time.monotonic() - started < 10
        run(api, flow_id, labels=["other"])
        assert api.post("/work/claim", json=claim).json()["flow_runs"] == []
        assert local.looked == looked  # a run it does not fit changes nothing
        created = run(api, flow_id, labels=["idle"])
        assert [r["id"] for r in api.post("/work/claim", json=claim).json()["flow_runs"]] == [created["id"]]


def test_a_retried_claim_that_took_runs_answers_them_even_when_nothing_is_left(local: InProcess) -> None:
    with httpx.Client(base_url=local.api, timeout=30) as api:
        project(api, "p")
        flow_id = register(api, "p", "etl")
        taker = agent(api, "taker", ["r"])
        created = run(api, flow_id, labels=["r"])
        first = {"agent_id": taker, "labels": ["r"], "claim_id": "first-try"}
        assert [r["id"] for r in api.post("/work/claim", json=first).json()["flow_runs"]] == [created["id"]]
        assert api.post("/work/claim", json={"agent_id": taker, "labels": ["r"]}).json()["flow_runs"] == []
        assert local.app.state.waiters.known_empty(("r",))  # the next claim of {r} would not search...
        again = api.post("/work/claim", json=first).json()["flow_runs"]
        assert [r["id"] for r in again] == [created["id"]]  # ...yet a retry still gets what its first try took
        started = time.monotonic()
        again = api.post("/work/claim", json={**first, "wait": 20}).json()["flow_runs"]
        assert [r["id"] for r in again] == [created["id"]]  # also a long-polling one, without waiting its wait out
        assert time.monotonic() - started < 10


def test_last_seen_stays_fresh_for_claims_that_do_not_search(local: InProcess) -> None:
    with httpx.Client(base_url=local.api, timeout=30) as api:
        idle = agent(api, "seen", ["seen"])
        claim = {"agent_id": idle, "labels": ["seen"], "wait": 0}
        api.post("/work/claim", json=claim)

        def last_seen() -> str:
            return next(a["last_seen"] for a in api.get("/agents").json() if a["id"] == idle)

        before = last_seen()
        time.sleep(1.2)  # past the claims' last_seen interval (SEEN_EVERY)
        looked = local.looked
        api.post("/work/claim", json=claim)
        assert local.looked == looked
        assert last_seen() > before


def test_a_claim_whose_client_went_away_stops_waiting_at_once_and_takes_nothing(local: InProcess) -> None:
    with httpx.Client(base_url=local.api, timeout=30) as api:
        project(api, "p")
        flow_id = register(api, "p", "etl")
        gone = agent(api, "gone", ["gone"])
        with httpx.Client(base_url=local.api, timeout=0.5) as short, pytest.raises(httpx.ReadTimeout):
            short.post("/work/claim", json={"agent_id": gone, "labels": ["gone"], "wait": 30})
        assert _until(lambda: local.waiting == 0, timeout=5)  # noticed without a wake-up or a recheck
        created = run(api, flow_id, labels=["gone"])
        time.sleep(0.5)
        assert api.get(f"/runs/{created['id']}").json()["state"] == "Scheduled"


def test_a_run_scheduled_for_later_is_handed_to_a_waiting_claim_when_due(local: InProcess) -> None:
    with httpx.Client(base_url=local.api, timeout=30) as api:
        project(api, "p")
        flow_id = register(api, "p", "etl")
        later = agent(api, "later", ["later"])
        thread, got = _claim_in_thread(local.api, later, ["later"], wait=20)
        assert _until(lambda: local.waiting == 1)
        soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=1.5)
        due = run(api, flow_id, labels=["later"], scheduled_start_time=soon.isoformat())
        looked = local.looked
        thread.join(timeout=20)
        assert got["ids"] == [due["id"]]
        assert datetime.datetime.now(datetime.UTC) >= soon
        assert local.looked - looked <= 3  # woken by the creation (nothing due yet), then by the timer


def test_waiting_claims_hold_no_thread(fresh_server: Callable[..., LiveServer]) -> None:
    live = fresh_server("sqlite")
    waiters = 200
    with httpx.Client(base_url=live.api, timeout=60) as api:
        project(api, "p")
        flow_id = register(api, "p", "etl")
        agents = [agent(api, f"w{i}", [f"w{i}"]) for i in range(waiters)]
        target = agent(api, "target", ["target"])
    assert live.process is not None
    pid = live.process.pid

    def threads() -> int:
        status = Path(f"/proc/{pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))

    async def scenario() -> tuple[int, list[str], int]:
        async with httpx.AsyncClient(base_url=live.api, timeout=90,
                                     limits=httpx.Limits(max_connections=waiters + 10)) as client:  # fmt: skip
            idle = [asyncio.create_task(client.post("/work/claim", json={"agent_id": a, "labels": [f"w{i}"],
                                                                         "wait": 30}))
                    for i, a in enumerate(agents)]  # fmt: skip
            handed = asyncio.create_task(client.post("/work/claim", json={"agent_id": target, "labels": ["target"],
                                                                            "wait": 30}))  # fmt: skip
            await asyncio.sleep(3)  # all of them reach the server and wait
            during = threads()
            created = await client.post("/runs", json={"flow_id": flow_id, "labels": ["target"]})
            assert created.status_code == 201
            answer = await asyncio.wait_for(handed, 20)
            still = sum(1 for task in idle if not task.done())
            for task in idle:
                task.cancel()
            await asyncio.gather(*idle, return_exceptions=True)
            return during, [r["id"] for r in answer.json()["flow_runs"]], still

    during, handed, still = asyncio.run(scenario())
    assert handed  # run creation answered and the waiting agent got the run
    assert still == waiters  # the others kept waiting
    assert during < 60, f"{during} threads in the server while {waiters} claims waited"


def test_stopping_the_server_answers_waiting_claims(fresh_server: Callable[..., LiveServer]) -> None:
    live = fresh_server("sqlite")
    with httpx.Client(base_url=live.api, timeout=60) as api:
        waiting = agent(api, "stop", ["stop"])
    thread, got = _claim_in_thread(live.api, waiting, ["stop"], wait=60)
    time.sleep(1.0)
    assert live.process is not None
    stopped = time.monotonic()
    os.kill(live.process.pid, signal.SIGTERM)
    thread.join(timeout=30)
    assert got == {"status": 200, "ids": [], "at": got["at"]}
    assert got["at"] - stopped < 10  # long before its 60 s wait
    assert live.process.wait(timeout=30) is not None


# -- the parts, without a server ------------------------------------------------------------


@pytest.mark.parametrize(
    ("run_labels", "agent_labels", "expected"),
    [
        ((), (), True),
        ((), ("a",), False),
        (("a",), ("a", "b"), True),
        (("a", "c"), ("a", "b"), False),
        (("a",), (), False),
    ],
)
def test_fits_is_the_label_rule(run_labels: tuple[str, ...], agent_labels: tuple[str, ...], expected: bool) -> None:
    assert fits(frozenset(run_labels), frozenset(agent_labels)) is expected


def test_the_waiter_wakes_by_label_set_and_forgets_empty_on_a_fitting_change() -> None:
    async def scenario() -> None:
        waiters = ClaimWaiters()
        waiters.start()
        stamps = {key: waiters.stamp(key) for key in [("a",), ("a", "b"), ("b",), ()]}
        for key, stamp in stamps.items():
            waiters.note_empty(key, stamp, None)
        assert all(waiters.known_empty(key) for key in stamps)
        woken = {key: asyncio.ensure_future(waiters.wait(key, stamps[key], 5)) for key in stamps}
        await asyncio.sleep(0)
        waiters.wake([["a"]])
        await asyncio.sleep(0.05)
        assert {key for key, w in woken.items() if w.done()} == {("a",), ("a", "b")}
        assert not waiters.known_empty(("a",)) and waiters.known_empty(("b",))
        waiters.wake([[]])
        await asyncio.sleep(0.05)
        assert woken[()].done() and not woken[("b",)].done()
        await asyncio.to_thread(waiters.wake, None)  # from another thread: every label set
        await asyncio.sleep(0.05)
        assert all(w.done() for w in woken.values())
        assert not waiters.known_empty(("b",))

    asyncio.run(scenario())


def test_the_waiter_wakes_a_label_set_when_its_next_run_is_due() -> None:
    async def scenario() -> None:
        waiters = ClaimWaiters()
        waiters.start()
        stamp = waiters.stamp(("x",))
        due = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=0.3)
        waiters.note_empty(("x",), stamp, due)
        other = waiters.stamp(("y",))
        started = time.monotonic()
        assert await waiters.wait(("x",), stamp, 5) is True
        assert 0.2 < time.monotonic() - started < 3
        assert await waiters.wait(("y",), other, 0.1) is False  # the timer woke only {x}

    asyncio.run(scenario())


def test_a_claim_that_looked_while_a_fitting_change_came_does_not_remember_empty() -> None:
    async def scenario() -> None:
        waiters = ClaimWaiters()
        waiters.start()
        stamp = waiters.stamp(("x",))
        waiters.wake([["x"]])  # a run made while the claim searched (it may not have seen it)
        waiters.note_empty(("x",), stamp, None)
        assert not waiters.known_empty(("x",))
        assert await waiters.wait(("x",), stamp, 5) is True  # and its wait returns at once

    asyncio.run(scenario())


def test_a_label_set_that_comes_when_a_thousand_others_wait_is_woken_and_idle_ones_are_forgotten() -> None:
    """A new label set is never dropped as idle when it is made (a thousand agents' sets were there already).

    The first 1,000-agent bench found a claim that waited its whole long-poll while its run was
    created: its new label set had been forgotten the moment it was made (never touched yet),
    so the run's wake-up reached nobody. Sets idle past the memory's length still go.
    """

    async def scenario() -> None:
        waiters = ClaimWaiters(empty_seconds=0.2)
        waiters.start()
        for i in range(1023):
            waiters.stamp((f"agent-{i}",))
        for _ in range(3):  # the 1,024th set, and again after a claim of it came and went
            stamp = waiters.stamp(("handoff",))
            waiting = asyncio.ensure_future(waiters.wait(("handoff",), stamp, 5))
            await asyncio.sleep(0)
            waiters.wake([["handoff"]])
            assert await asyncio.wait_for(waiting, 1) is True
        await asyncio.sleep(0.3)  # every set is idle past the memory now
        for i in range(2048):
            waiters.stamp((f"later-{i}",))
        assert not waiters.known_empty(("agent-0",))
        assert len(waiters._sets) <= 2048 + 1, "idle label sets are forgotten"
        stamp = waiters.stamp(("later-0",))
        waiting = asyncio.ensure_future(waiters.wait(("later-0",), stamp, 5))
        await asyncio.sleep(0)
        waiters.wake([["later-0"]])
        assert await asyncio.wait_for(waiting, 1) is True

    asyncio.run(scenario())


def test_notice_payloads_carry_label_sets_and_fall_back_to_wake_all_when_too_long() -> None:
    token, change = parse_payload(make_payload("t1", {frozenset({"a", "b"}), frozenset()}))
    assert token == "t1" and change == {frozenset({"a", "b"}), frozenset()}
    assert parse_payload(make_payload("t2", None)) == ("t2", None)
    many = {frozenset({f"label-{i:05d}"}) for i in range(1000)}
    payload = make_payload("t3", many)
    assert len(payload.encode()) <= MAX_PAYLOAD and parse_payload(payload) == ("t3", None)
    assert parse_payload("t4 not-json") == ("t4", None)


def test_release_payloads_round_trip_and_fit_a_notice() -> None:
    pairs = [(f"agent-{n}", uuid.uuid4().hex) for n in range(300)]
    payloads = make_release_payloads("t1", pairs)
    assert len(payloads) > 1 and all(len(p.encode()) <= MAX_PAYLOAD for p in payloads)
    heard = [parse_release(p) or ("none", []) for p in payloads]
    assert {token for token, _ in heard} == {"t1"}
    assert [pair for _, got in heard for pair in got] == pairs
    assert make_release_payloads("t1", []) == []
    # a notice about work is not a release, and a malformed release releases nothing
    assert parse_release(make_payload("t2", {frozenset({"a"})})) is None
    assert parse_release(make_payload("t2", None)) is None
    assert parse_release("t3 release:not-json") == ("t3", [])
    assert parse_release('t3 release:[["only-one"]]') == ("t3", [])


def test_claims_take_the_short_path_and_anything_unusual_gets_fastapis_answer(tmp_path: Path) -> None:
    # server/api/claim_path.py: the plain claim skips FastAPI's machinery; bad input, a query
    # string or another content type goes to FastAPI, whose answers stay as they were
    server = InProcess(tmp_path).start()
    try:
        with httpx.Client(base_url=server.api, timeout=30) as api:
            project(api, "short")
            flow_id = register(api, "short", "etl")
            aid = agent(api, "short-agent", ["short"])
            created = run(api, flow_id, labels=["short"])
            body = {"agent_id": aid, "labels": ["short"], "claim_id": "c-1"}
            taken = api.post("/work/claim", json=body)
            assert taken.status_code == 200 and [r["id"] for r in taken.json()["flow_runs"]] == [created["id"]]
            again = api.post("/work/claim", json=body)  # a retry answers the same run
            assert [r["id"] for r in again.json()["flow_runs"]] == [created["id"]]
            unknown = api.post("/work/claim", json={"agent_id": "nobody", "labels": []})
            assert unknown.status_code == 404 and "nobody" in unknown.json()["detail"]
            assert server.app.state.short_claims == 3
            as_json = {"content-type": "application/json"}
            refused = {
                "no labels list": api.post("/work/claim", json={"agent_id": aid, "labels": "short"}),
                "a limit of 0": api.post("/work/claim", json={"agent_id": aid, "limit": 0}),
                "an unknown field": api.post("/work/claim", json={"agent_id": aid, "extra": 1}),
                "not JSON": api.post("/work/claim", content=b"{", headers=as_json),
                "no body": api.post("/work/claim"),
                "a number out of range": api.post("/work/claim", content=b'{"limit": 1e999}', headers=as_json),
            }
            wrong = {what: (r.status_code, r.text) for what, r in refused.items() if r.status_code != 422}
            assert not wrong, wrong
            assert isinstance(refused["no labels list"].json()["detail"], list)  # FastAPI's field errors
            assert "infinity" in refused["a number out of range"].json()["detail"]
            query = api.post("/work/claim?x=1", json={"agent_id": aid, "labels": ["short"]})
            assert query.status_code == 422 and "'x'" in query.json()["detail"]
            assert server.app.state.short_claims == 3  # none of those took the short path
    finally:
        server.stop()
