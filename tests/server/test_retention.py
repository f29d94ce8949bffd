"""Retention (issue 15): pruning finished runs past a window, on SQLite and PostgreSQL.

``server/services/retention.py`` directly on a database (batches, what is kept, refusals),
then ``POST /runs/prune`` and the server's periodic prune (``server.prune_older_than``)
against live server processes. Old runs are written straight into the database: the API
can't make a run that finished a month ago.
"""

from __future__ import annotations

import datetime
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from headwater.server.database.engine import create_db_engine, database_url
from headwater.server.database.migrate import upgrade
from headwater.server.errors import Conflict
from headwater.server.models.common import utcnow
from headwater.server.services.retention import RetentionService, prune

from .live import LiveServer

DAY = 86400.0
TABLES = ("flow_runs", "flow_run_labels", "task_runs", "logs", "flow_run_states")


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'hw.db'}"
    else:
        url = database_url(request.getfixturevalue("postgres_url"), tmp_path)
    made = create_db_engine(url)
    upgrade(made)
    yield made
    made.dispose()


class History:
    """Writes runs of one flow with given ages, each with 2 task runs, 3 log lines, 2 states and 2 labels."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.now = utcnow()
        self.flow = str(uuid.uuid4())
        meta = sa.MetaData()
        meta.reflect(engine, only=["projects", "flows", *TABLES])
        self.t = meta.tables
        project = str(uuid.uuid4())
        with engine.begin() as conn:
            conn.execute(sa.insert(self.t["projects"]).values(id=project, name=f"p-{project[:8]}", created=self.now))
            conn.execute(sa.insert(self.t["flows"]).values(
                id=self.flow, project_id=project, name="etl", version=1, metadata={"parameters": []},
                metadata_hash="0" * 64, labels=[], archived=False, idempotency_key=None, created=self.now,
            ))  # fmt: skip

    def run(self, state: str, days_ago: float, due_days_ago: float | None = None) -> str:
        """A run in ``state`` whose last change (its end, when finished) was ``days_ago`` days ago."""
        run_id = str(uuid.uuid4())
        ended = self.now - datetime.timedelta(days=days_ago)
        due = self.now - datetime.timedelta(days=days_ago if due_days_ago is None else due_days_ago)
        created = min(due, ended) - datetime.timedelta(minutes=5)
        finished = state in ("Success", "Failed", "Cancelled")
        with self.engine.begin() as conn:
            conn.execute(sa.insert(self.t["flow_runs"]).values(
                id=run_id, flow_id=self.flow, run_name=f"r-{run_id[:8]}", state=state, state_message=None, version=3,
                labels=["a", "b"], parameters={}, agent_id=None, idempotency_key=None, scheduled_start_time=due,
                created=created, updated=ended, start_time=created, end_time=ended if finished else None,
                reschedule_count=0, attempt=1,
            ))  # fmt: skip
            conn.execute(sa.insert(self.t["flow_run_labels"]),
                         [{"flow_run_id": run_id, "label": x, "created": created} for x in "ab"])
            conn.execute(sa.insert(self.t["task_runs"]), [
                {"id": str(uuid.uuid4()), "flow_run_id": run_id, "task_slug": slug, "state": "Success",
                 "attempts": 1, "updated": ended} for slug in ("t-1", "t-2")
            ])  # fmt: skip
            conn.execute(sa.insert(self.t["logs"]), [
                {"flow_run_id": run_id, "timestamp": ended, "level": "INFO", "name": "n", "message": f"m{i}"}
                for i in range(3)
            ])  # fmt: skip
            conn.execute(sa.insert(self.t["flow_run_states"]), [
                {"flow_run_id": run_id, "state": "Scheduled", "timestamp": created},
                {"flow_run_id": run_id, "state": state, "timestamp": ended},
            ])  # fmt: skip
        return run_id

    def stored(self) -> dict[str, set[str]]:
        """The run ids each table holds rows of."""
        found = {}
        with self.engine.connect() as conn:
            for name in TABLES:
                column = self.t[name].c.id if name == "flow_runs" else self.t[name].c.flow_run_id
                found[name] = set(conn.execute(sa.select(column).distinct()).scalars())
        return found

    def rows(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {name: conn.execute(sa.select(sa.func.count()).select_from(self.t[name])).scalar_one()
                    for name in TABLES}  # fmt: skip


def test_prune_deletes_exactly_the_finished_runs_past_the_window_with_their_rows(engine: Engine) -> None:
    history = History(engine)
    for state, days in (("Success", 40), ("Failed", 35), ("Cancelled", 31), ("Success", 30.01), ("Failed", 400)):
        history.run(state, days)
    kept = {
        history.run("Success", 29.9),  # inside the window
        history.run("Failed", 1),
        history.run("Running", 2),  # unfinished, due inside the window
        history.run("Scheduled", 0.5),
        history.run("Scheduled", 40, due_days_ago=-3),  # made 40 days ago, due in 3 days: not overdue
    }
    sessions = sessionmaker(engine)

    result = prune(sessions, 30 * DAY, batch_size=2)

    assert (result.runs, result.task_runs, result.logs, result.states) == (5, 10, 15, 10)
    assert result.batches == 3 and result.remaining == 0 and not result.dry_run
    for table, ids in history.stored().items():
        assert ids == kept, table
    assert prune(sessions, 30 * DAY, batch_size=2).runs == 0  # nothing left to prune


def test_dry_run_counts_and_deletes_nothing(engine: Engine) -> None:
    history = History(engine)
    for days in (40, 50, 60):
        history.run("Success", days)
    history.run("Success", 1)
    before = history.rows()

    dry = prune(sessionmaker(engine), 30 * DAY, batch_size=1000, dry_run=True)

    assert (dry.runs, dry.task_runs, dry.logs, dry.states, dry.batches) == (3, 6, 9, 6, 0) and dry.dry_run
    assert history.rows() == before


def test_max_runs_bounds_one_prune_and_says_what_remains(engine: Engine) -> None:
    history = History(engine)
    for days in range(40, 47):
        history.run("Success", days)
    sessions = sessionmaker(engine)

    first = prune(sessions, 30 * DAY, batch_size=3, max_runs=5)
    assert (first.runs, first.batches, first.remaining) == (5, 2, 2)
    second = prune(sessions, 30 * DAY, batch_size=3, max_runs=5)
    assert (second.runs, second.remaining) == (2, 0)
    assert history.rows()["flow_runs"] == 0


def test_a_window_reaching_past_an_unfinished_run_is_refused(engine: Engine) -> None:
    history = History(engine)
    finished = history.run("Success", 45)
    stuck = history.run("Scheduled", 1, due_days_ago=40)  # due 40 days ago, never taken
    running = history.run("Running", 35)
    sessions = sessionmaker(engine)
    before = history.rows()

    for dry in (False, True):
        with pytest.raises(Conflict) as refused:
            prune(sessions, 30 * DAY, batch_size=10, dry_run=dry)
        message = refused.value.detail
        assert "2 unfinished run(s)" in message and stuck in message and running in message, message
        assert "--older-than 41d" in message and "headwater cancel" in message, message
    assert history.rows() == before

    assert prune(sessions, 41 * DAY, batch_size=10).runs == 1  # past the oldest unfinished run: allowed
    assert finished not in history.stored()["flow_runs"]
    # the periodic prune never refuses: it prunes what is finished and leaves the rest
    again = history.run("Failed", 50)
    assert prune(sessions, 30 * DAY, batch_size=10, check=False).runs == 1
    assert history.stored()["flow_runs"] == {stuck, running} and again not in history.stored()["logs"]


# -- the API and the server's setting ---------------------------------------------------------


def _server_engine(live: LiveServer) -> Engine:
    return create_db_engine(database_url(live.database_url, live.home))


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_the_prune_route(kind: str, fresh_server: Any) -> None:
    live = fresh_server(kind)
    engine = _server_engine(live)
    history = History(engine)
    old = [history.run("Success", 40 + i) for i in range(3)]
    new = history.run("Failed", 2)
    with httpx.Client(base_url=live.api, timeout=30) as api:
        for body in ({"older_than": 0}, {"older_than": -60}, {"older_than": "30d"}, {}, {"older_than": 1e12},
                     {"older_than": 60, "max_runs": 0}):  # fmt: skip
            answer = api.post("/runs/prune", json=body)
            assert answer.status_code == 422, (body, answer.text)
        dry = api.post("/runs/prune", json={"older_than": 30 * DAY, "dry_run": True})
        assert dry.status_code == 200 and dry.json()["runs"] == 3 and dry.json()["logs"] == 9, dry.text
        assert set(old) <= history.stored()["flow_runs"]
        done = api.post("/runs/prune", json={"older_than": 30 * DAY, "max_runs": 2})
        assert done.status_code == 200 and (done.json()["runs"], done.json()["remaining"]) == (2, 1), done.text
        stuck = history.run("Submitted", 60)
        refused = api.post("/runs/prune", json={"older_than": 30 * DAY})
        assert refused.status_code == 409 and stuck in refused.json()["detail"], refused.text
    left = history.stored()["flow_runs"]
    assert {new, stuck} <= left and len(left & set(old)) == 1 and len(left) == 3  # batches take runs in no order
    engine.dispose()


def test_the_server_prunes_periodically_and_names_what_it_skipped(fresh_server: Any) -> None:
    live = fresh_server(
        "sqlite", env={"HEADWATER__SERVER__PRUNE_OLDER_THAN": "30d", "HEADWATER__SERVER__PRUNE_INTERVAL": "0.2",
                       "HEADWATER__SERVER__PRUNE_BATCH_SIZE": "2"},
    )  # fmt: skip
    engine = _server_engine(live)
    history = History(engine)
    stuck = history.run("Running", 50)
    kept = history.run("Success", 3)
    for days in range(31, 36):
        history.run("Success", days)
    deadline = time.monotonic() + 30
    while history.stored()["flow_runs"] != {stuck, kept} and time.monotonic() < deadline:
        time.sleep(0.1)
    assert history.stored()["flow_runs"] == {stuck, kept}
    assert history.stored()["logs"] == {stuck, kept}
    while "skipped 1 unfinished run(s)" not in live.output() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "skipped 1 unfinished run(s)" in live.output() and stuck in live.output(), live.output()[-2000:]
    engine.dispose()


def test_the_periodic_prune_is_off_by_default_and_reads_durations(engine: Engine) -> None:
    from headwater.config.settings import ServerSettings

    assert ServerSettings().prune_older_than is None
    assert ServerSettings(prune_older_than="12h").prune_older_than == 12 * 3600
    for bad in ("0", "-1d", "soon", "1x"):
        with pytest.raises(ValueError, match="duration"):
            ServerSettings(prune_older_than=bad)
    history = History(engine)
    history.run("Success", 40)
    service = RetentionService(sessionmaker(engine), ServerSettings())
    assert service.prune_once() is None and history.rows()["flow_runs"] == 1
