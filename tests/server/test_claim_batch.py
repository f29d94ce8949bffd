"""Claims made in batches (``services/claims.py``): each ask of a batch gets its own answer.

The claim route queues its claim; one thread makes all queued claims in one go
(``models/work.py``'s ``claim_batch``). These tests call ``claim_batch`` on the live
server's own database (SQLite and PostgreSQL) with batches a busy server makes: several
agents, a refused ask among them, a retried claim, different label sets.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine, select

from headwater.schemas.flow_runs import FlowRun
from headwater.server.database.engine import create_db_engine
from headwater.server.database.orm import AgentRow
from headwater.server.errors import Forbidden, NotFound
from headwater.server.identity import OPERATOR, Caller
from headwater.server.models.run_states import STATES
from headwater.server.models.work import ClaimAsk, ClaimTaken, SeenWrites, claim_batch
from headwater.server.services.claims import ClaimQueue

from .helpers import agent, project, register, run
from .live import LiveServer


@pytest.fixture
def engine(server: LiveServer) -> Iterator[Engine]:
    engine = create_db_engine(server.database_url)
    yield engine
    engine.dispose()


def batch(engine: Engine, asks: list[ClaimAsk], seen: SeenWrites | None = None) -> list[ClaimTaken | Exception]:
    with engine.begin() as connection:
        return list(claim_batch(connection, asks, seen))


def ids(answer: ClaimTaken | Exception) -> list[str]:
    assert isinstance(answer, ClaimTaken), answer
    return [r.id for r in answer.answer()]


def test_each_ask_of_a_batch_gets_its_own_runs_oldest_first(api: httpx.Client, engine: Engine, unique: str) -> None:
    project(api, unique)
    flow_id = register(api, unique, "etl")
    blue = [run(api, flow_id, labels=[f"blue-{unique}"])["id"] for _ in range(5)]
    green = [run(api, flow_id, labels=[f"green-{unique}"])["id"] for _ in range(2)]
    a, b, c = (agent(api, f"{n}-{unique}", [f"blue-{unique}"]) for n in "abc")
    g = agent(api, f"g-{unique}", [f"green-{unique}"])
    answers = batch(engine, [
        ClaimAsk(OPERATOR, a, [f"blue-{unique}"], 2),
        ClaimAsk(OPERATOR, "no-such-agent", [f"blue-{unique}"], 1),
        ClaimAsk(OPERATOR, g, [f"green-{unique}"], 5),
        ClaimAsk(OPERATOR, b, [f"blue-{unique}"], 1),
        ClaimAsk(OPERATOR, c, [f"blue-{unique}"], 5),
    ])  # fmt: skip
    assert ids(answers[0]) == blue[:2]  # earlier asks get the older runs
    assert isinstance(answers[1], NotFound) and "no-such-agent" in str(answers[1])
    assert ids(answers[2]) == green
    assert ids(answers[3]) == blue[2:3]
    assert ids(answers[4]) == blue[3:]
    for answer, holder in ((answers[0], a), (answers[3], b), (answers[4], c), (answers[2], g)):
        assert isinstance(answer, ClaimTaken)
        for taken in answer.answer():
            assert (taken.state, taken.agent_id, taken.attempt) == ("Submitted", holder, 1)
            stored = api.get(f"/runs/{taken.id}").json()
            assert (stored["state"], stored["agent_id"]) == ("Submitted", holder)
    # nothing left: an empty answer, and when the next matching run is due (none)
    again = batch(engine, [ClaimAsk(OPERATOR, a, [f"blue-{unique}"], 1)])
    assert ids(again[0]) == [] and isinstance(again[0], ClaimTaken) and again[0].due is None


def test_a_refused_ask_writes_nothing_and_does_not_stop_the_others(
    api: httpx.Client, engine: Engine, unique: str
) -> None:
    project(api, unique)
    flow_id = register(api, unique, "etl")
    created = [run(api, flow_id, labels=[unique])["id"] for _ in range(2)]
    mine = agent(api, f"mine-{unique}", [unique])
    theirs = agent(api, f"theirs-{unique}", [unique])
    with engine.begin() as connection:  # as if an agent token had registered it
        connection.execute(AgentRow.__table__.update().where(AgentRow.id == theirs).values(owner="token:other"))
    stranger = Caller(scope="agent", identity="token:stranger")
    answers = batch(engine, [
        ClaimAsk(stranger, theirs, [unique], 1),
        ClaimAsk(OPERATOR, mine, [unique], 1),
        ClaimAsk(Caller(scope="agent", identity="token:other"), theirs, [unique, "extra"], 1),
    ])  # fmt: skip
    assert isinstance(answers[0], Forbidden) and "belongs to another token" in str(answers[0])
    assert ids(answers[1]) == created[:1]
    assert isinstance(answers[2], Forbidden) and "registered with labels" in str(answers[2])
    left = api.get("/runs", params={"state": "Scheduled", "label": unique}).json()["flow_runs"]
    assert [r["id"] for r in left] == created[1:]


def test_a_retried_claim_in_a_batch_answers_what_it_took(api: httpx.Client, engine: Engine, unique: str) -> None:
    project(api, unique)
    flow_id = register(api, unique, "etl")
    created = [run(api, flow_id, labels=[unique])["id"] for _ in range(4)]
    a = agent(api, f"a-{unique}", [unique])
    b = agent(api, f"b-{unique}", [unique])
    first = batch(engine, [ClaimAsk(OPERATOR, a, [unique], 2, claim_id=f"{unique}-1")])
    assert ids(first[0]) == created[:2]
    # the same claim again (its answer was lost), beside a new claim of another agent, and the
    # same claim id sent by another agent (which is not a retry of a's claim)
    answers = batch(engine, [
        ClaimAsk(OPERATOR, b, [unique], 1, claim_id=f"{unique}-2"),
        ClaimAsk(OPERATOR, a, [unique], 2, claim_id=f"{unique}-1"),
        ClaimAsk(OPERATOR, b, [unique], 1, claim_id=f"{unique}-1"),
    ])  # fmt: skip
    assert ids(answers[0]) == created[2:3]
    assert ids(answers[1]) == created[:2]
    assert ids(answers[2]) == created[3:]
    attempts = {i: api.get(f"/runs/{i}").json()["attempt"] for i in created}
    assert attempts == dict.fromkeys(created, 1)  # the retry took nothing again


def test_last_seen_is_written_at_most_once_per_interval(api: httpx.Client, engine: Engine, unique: str) -> None:
    a = agent(api, f"a-{unique}", [unique])

    def last_seen() -> object:
        with engine.connect() as connection:
            return connection.scalar(select(AgentRow.last_seen).where(AgentRow.id == a))

    registered = last_seen()
    seen = SeenWrites(every=0.5)
    batch(engine, [ClaimAsk(OPERATOR, a, [unique], 1)], seen)
    first = last_seen()
    assert first != registered  # the first claim writes it
    batch(engine, [ClaimAsk(OPERATOR, a, [unique], 1)], seen)
    assert last_seen() == first  # within the interval: not again
    time.sleep(0.6)
    batch(engine, [ClaimAsk(OPERATOR, a, [unique], 1)], seen)
    assert last_seen() != first


def test_the_queue_makes_concurrent_claims_each_run_once(api: httpx.Client, engine: Engine, unique: str) -> None:
    project(api, unique)
    flow_id = register(api, unique, "etl")
    created = {run(api, flow_id, labels=[unique])["id"] for _ in range(30)}
    agents = [agent(api, f"q{i}-{unique}", [unique]) for i in range(6)]
    queue = ClaimQueue(engine)

    async def claims() -> list[ClaimTaken | BaseException]:
        asks = [ClaimAsk(OPERATOR, agents[i % 6], [unique], 1) for i in range(40)]
        asks.append(ClaimAsk(OPERATOR, "missing", [unique], 1))
        return await asyncio.gather(*(queue.claim(ask) for ask in asks), return_exceptions=True)

    try:
        outcomes = asyncio.run(claims())
    finally:
        queue.stop()
    assert isinstance(outcomes[-1], NotFound)
    taken = [r.id for o in outcomes[:-1] for r in (o.answer() if isinstance(o, ClaimTaken) else [])]
    assert all(isinstance(o, ClaimTaken) for o in outcomes[:-1]), outcomes
    assert sorted(taken) == sorted(created)  # every run once, 10 asks answered empty


def test_each_claim_records_its_submitted_state_once(api: httpx.Client, engine: Engine, unique: str) -> None:
    project(api, unique)
    flow_id = register(api, unique, "etl")
    created = [run(api, flow_id, labels=[unique])["id"] for _ in range(3)]
    a = agent(api, f"a-{unique}", [unique])
    b = agent(api, f"b-{unique}", [unique])
    answers = batch(engine, [
        ClaimAsk(OPERATOR, a, [unique], 2, claim_id=f"{unique}-a"),
        ClaimAsk(OPERATOR, b, [unique], 1),
    ])  # fmt: skip
    batch(engine, [ClaimAsk(OPERATOR, a, [unique], 2, claim_id=f"{unique}-a")])  # a retry records nothing new
    with engine.connect() as connection:
        rows = connection.execute(
            select(STATES.c.flow_run_id, STATES.c.message, STATES.c.agent_id, STATES.c.timestamp)
            .where(STATES.c.flow_run_id.in_(created), STATES.c.state == "Submitted")
            .order_by(STATES.c.flow_run_id)
        ).all()
    holders = {r.id: r.agent_id for answer in answers for r in ids_and_runs(answer)}
    submitted = {r.id: r.submitted_at for answer in answers for r in ids_and_runs(answer)}
    assert sorted(r.flow_run_id for r in rows) == sorted(created)  # one row per claimed run
    for row in rows:
        assert row.agent_id == holders[row.flow_run_id]
        assert row.timestamp == submitted[row.flow_run_id]
        name = f"a-{unique}" if row.agent_id == a else f"b-{unique}"
        assert row.message == f"claimed by agent {name!r}"
    history = api.get(f"/runs/{created[0]}/states").json()
    assert [h["state"] for h in history] == ["Scheduled", "Submitted"]


def ids_and_runs(answer: ClaimTaken | Exception) -> list[FlowRun]:
    assert isinstance(answer, ClaimTaken), answer
    return answer.answer()
