"""Schema migrations over databases that hold data, on SQLite and PostgreSQL.

The migrations are in ``src/headwater/server/database/migrations/versions/``; the server runs
them on start (``database/migrate.py``). Rows are written with SQLAlchemy Core against the
schema as it was at the older revision (reflected, not the ORM of today).
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Engine

from headwater.server.database.engine import create_db_engine, database_url
from headwater.server.database.migrate import alembic_config, current_revision, upgrade

T0 = datetime.datetime(2024, 5, 1, 12, 0, 0)

#: (state, message, seconds from T0 to `updated`, holds an agent) of the runs made at 0005.
RUNS = [
    ("Scheduled", None, 0, False),
    ("Submitted", None, 5, True),
    ("Running", None, 10, True),
    ("Success", "All reference tasks succeeded.", 20, True),
    ("Failed", "extract-1 failed: ValueError: no", 30, True),
    ("Cancelled", "Cancelled before it was submitted", 40, False),
]


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'hw.db'}"
    else:
        url = database_url(request.getfixturevalue("postgres_url"), tmp_path)
    made = create_db_engine(url)
    yield made
    made.dispose()


def fill_at_0005(engine: Engine) -> dict[str, dict[str, Any]]:
    """A project, a flow, an agent and one run per state of ``RUNS``; the runs by id."""
    meta = sa.MetaData()
    meta.reflect(engine, only=["projects", "flows", "flow_runs", "agents"])
    projects, flows, runs, agents = (meta.tables[n] for n in ("projects", "flows", "flow_runs", "agents"))
    agent_id, project_id, flow_id = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    made: dict[str, dict[str, Any]] = {}
    with engine.begin() as conn:
        conn.execute(sa.insert(projects).values(id=project_id, name="p", created=T0))
        conn.execute(sa.insert(agents).values(id=agent_id, name="a", kind="local", labels=[], created=T0,
                                              last_seen=T0))  # fmt: skip
        conn.execute(sa.insert(flows).values(
            id=flow_id, project_id=project_id, name="etl", version=1, metadata={}, metadata_hash="0" * 64,
            labels=[], archived=False, idempotency_key=None, created=T0,
        ))  # fmt: skip
        for i, (state, message, later, held) in enumerate(RUNS):
            run = {
                "id": str(uuid.uuid4()), "flow_id": flow_id, "run_name": f"run-{i}", "state": state,
                "state_message": message, "version": 1, "labels": [], "parameters": {},
                "agent_id": agent_id if held else None, "scheduled_start_time": T0,
                "created": T0 + datetime.timedelta(seconds=i),
                "updated": T0 + datetime.timedelta(seconds=i + later), "reschedule_count": 0,
            }  # fmt: skip
            conn.execute(sa.insert(runs).values(**run))
            made[run["id"]] = run
    return made


def history(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    table = sa.Table("flow_run_states", sa.MetaData(), autoload_with=engine)
    found: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for row in conn.execute(sa.select(table).order_by(table.c.id)).mappings():
            stamp = row["timestamp"].replace(tzinfo=None)
            found.setdefault(row["flow_run_id"], []).append((row["state"], row["message"], stamp, row["agent_id"]))
    return found


def test_0006_backfills_each_runs_history_and_downgrades(engine: Engine) -> None:
    upgrade(engine, "0005")
    assert current_revision(engine) == "0005"
    runs = fill_at_0005(engine)

    upgrade(engine, "0006")
    assert current_revision(engine) == "0006"
    found = history(engine)
    assert set(found) == set(runs), "every run has a history, and only runs have one"
    for run_id, run in runs.items():
        expected = [("Scheduled", None, run["created"], None)]
        if run["state"] != "Scheduled":
            expected.append((run["state"], run["state_message"], run["updated"], run["agent_id"]))
        assert found[run_id] == expected, run["state"]

    command.downgrade(alembic_config(engine), "0005")
    assert current_revision(engine) == "0005"
    assert "flow_run_states" not in sa.inspect(engine).get_table_names()
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM flow_runs")).scalar_one() == len(RUNS)

    upgrade(engine, "0006")  # and up again: the backfill is made afresh, not doubled
    assert history(engine) == found


#: The indexes migration 0007 adds (``ix_flow_runs_flow_id`` and ``ix_logs_flow_run_id`` it replaces).
INDEXES_0007 = {
    "flow_runs": {"ix_flow_runs_created", "ix_flow_runs_state_created", "ix_flow_runs_flow_created",
                  "ix_flow_runs_state_updated"},
    "flow_run_labels": {"ix_flow_run_labels_label"},
    "logs": {"ix_logs_run_id"},
}  # fmt: skip
REPLACED_0007 = {"flow_runs": "ix_flow_runs_flow_id", "logs": "ix_logs_flow_run_id"}


def index_names(engine: Engine, table: str) -> set[str]:
    return {index["name"] for index in sa.inspect(engine).get_indexes(table) if index["name"]}


def test_0007_adds_the_history_indexes_over_data_and_downgrades(engine: Engine) -> None:
    upgrade(engine, "0005")
    runs = fill_at_0005(engine)
    upgrade(engine, "0006")
    before = history(engine)

    upgrade(engine, "0007")
    assert current_revision(engine) == "0007"
    for table, names in INDEXES_0007.items():
        assert names <= index_names(engine, table), table
    for table, name in REPLACED_0007.items():
        assert name not in index_names(engine, table), table
    with engine.connect() as conn:
        assert set(conn.execute(sa.text("SELECT id FROM flow_runs")).scalars()) == set(runs)
    assert history(engine) == before

    command.downgrade(alembic_config(engine), "0006")
    assert current_revision(engine) == "0006"
    for table, names in INDEXES_0007.items():
        assert not names & index_names(engine, table), table
    for table, name in REPLACED_0007.items():
        assert name in index_names(engine, table), table
    upgrade(engine, "0007")
    assert current_revision(engine) == "0007"


def test_0008_gives_each_label_its_runs_created_and_downgrades(engine: Engine) -> None:
    upgrade(engine, "0005")
    runs = fill_at_0005(engine)
    upgrade(engine, "0007")
    labels = sa.Table("flow_run_labels", sa.MetaData(), autoload_with=engine)
    with engine.begin() as conn:
        conn.execute(sa.insert(labels), [{"flow_run_id": run_id, "label": x} for run_id in runs for x in ("a", "b")])

    upgrade(engine)
    assert current_revision(engine) == "0008"
    assert "ix_flow_run_labels_created" in index_names(engine, "flow_run_labels")
    assert "ix_flow_run_labels_label" not in index_names(engine, "flow_run_labels")
    labels = sa.Table("flow_run_labels", sa.MetaData(), autoload_with=engine)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(labels.c.flow_run_id, labels.c.label, labels.c.created)).all()
    assert len(rows) == 2 * len(runs)
    assert {(run_id, label, created.replace(tzinfo=None)) for run_id, label, created in rows} == {
        (run_id, x, run["created"]) for run_id, run in runs.items() for x in ("a", "b")
    }

    command.downgrade(alembic_config(engine), "0007")
    assert current_revision(engine) == "0007"
    assert "ix_flow_run_labels_label" in index_names(engine, "flow_run_labels")
    assert "created" not in {c["name"] for c in sa.inspect(engine).get_columns("flow_run_labels")}
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM flow_run_labels")).scalar_one() == 2 * len(runs)
    upgrade(engine)
    assert current_revision(engine) == "0008"
