"""Fill a headwater database with a long history of finished runs, fast, in SQL (``bench/history.py``).

Each run ``n`` of ``1..N``:

- is one of 50 flows (``hist-flow-{n % 50}``), in state Success (80 %), Failed (15 %) or
  Cancelled (5 %), created ``N - n`` × ``STEP`` seconds before the fill's ``now`` (1,000,000
  runs span about 400 days), finished a minute after it was created;
- carries the label ``team-{n % 10}`` (10 % of runs each) and, one run in 100, ``gpu`` (1 %);
- has 2 task runs (``extract``, ``load``), 3 log lines and 2 state-history rows
  (Scheduled, then its final state).

A million runs are therefore 1,000,000 runs, 1,010,000 labels, 2,000,000 task runs,
3,000,000 log lines and 2,000,000 states. Rows are made by the database itself
(``generate_series`` on PostgreSQL, a recursive CTE on SQLite) in chunks of ``CHUNK`` runs,
one transaction each; ids look like UUIDs whose first part is scattered (as random UUIDs
are in the primary key's B-tree). The schema is migrated first and ``ANALYZE`` runs last.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from headwater.server.database.migrate import upgrade

PROJECT_ID = "00000000-0000-4000-8000-00000000b0b0"
FLOWS = 50
#: Seconds between two runs' creation: 1,000,000 runs span about 400 days.
STEP = 34.56
CHUNK = 100_000


def run_id(n: int) -> str:
    """The id the fill gives run ``n`` (as its SQL makes it)."""
    return f"{(n * 2654435761) % 4294967296:08x}-0000-4000-8000-{n:012x}"


def flow_id(k: int) -> str:
    return f"00000000-0000-4000-8000-f{k:011d}"


def fill(engine: Engine, runs: int, now: datetime.datetime, progress: Callable[[str], None] = print) -> None:
    """Migrate ``engine``'s database and add ``runs`` finished runs ending before ``now`` (naive UTC)."""
    upgrade(engine)
    postgres = engine.dialect.name == "postgresql"
    start = now - datetime.timedelta(seconds=STEP * (runs + 1))
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO projects (id, name, created) VALUES (:id, 'history', :t)"), {"id": PROJECT_ID, "t": start}
        )
        conn.execute(
            text(
                "INSERT INTO flows (id, project_id, name, version, metadata, metadata_hash, labels, archived, "
                "idempotency_key, created) VALUES (:id, :p, :name, 1, :meta, :hash, '[]', false, NULL, :t)"
            ),
            [
                {
                    "id": flow_id(k),
                    "p": PROJECT_ID,
                    "name": f"hist-flow-{k}",
                    "t": start,
                    "meta": '{"parameters": [], "tasks": []}',
                    "hash": f"{k:064d}",
                }
                for k in range(FLOWS)
            ],
        )
    indexes = _secondary_indexes(engine)
    with engine.begin() as conn:
        for name, _, _ in indexes:
            conn.execute(text(f"DROP INDEX {name}"))
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if postgres:
            cursor.execute("SET session_replication_role = replica")  # no foreign-key triggers: every parent is there
            cursor.execute("SET maintenance_work_mem = '512MB'")
        else:
            raw.driver_connection.isolation_level = ""  # type: ignore[union-attr]  # plain BEGIN, not IMMEDIATE
            for pragma in ("foreign_keys=OFF", "synchronous=OFF", "cache_size=-1000000"):
                cursor.execute(f"PRAGMA {pragma}")
        for lo in range(1, runs + 1, CHUNK):
            hi = min(lo + CHUNK - 1, runs)
            for statement in (_pg_statements if postgres else _sqlite_statements)(lo, hi, start):
                cursor.execute(statement)
            raw.commit()
            progress(f"filled runs {lo:,}..{hi:,}")
        for name, table, columns in indexes:
            cursor.execute(f"CREATE INDEX {name} ON {table} ({', '.join(columns)})")
            raw.commit()
        progress(f"indexes made again: {', '.join(name for name, _, _ in indexes)}")
        if postgres:
            raw.driver_connection.autocommit = True  # type: ignore[union-attr]  # VACUUM can't run in a transaction
            cursor.execute("VACUUM ANALYZE")
        else:
            cursor.execute("ANALYZE")
            raw.commit()
    finally:
        raw.close()


def _secondary_indexes(engine: Engine) -> list[tuple[str, str, list[str]]]:
    """(name, table, columns) of the non-unique indexes of the tables the fill writes (made again after it)."""
    inspector = inspect(engine)
    found = []
    for table in ("flow_runs", "flow_run_labels", "task_runs", "logs", "flow_run_states"):
        for index in inspector.get_indexes(table):
            if not index.get("unique") and index["name"]:
                found.append((index["name"], table, [c for c in index["column_names"] if c]))
    return found


def _sqlite_statements(lo: int, hi: int, start: datetime.datetime) -> list[str]:
    seq = f"WITH RECURSIVE seq(n) AS (SELECT {lo} UNION ALL SELECT n + 1 FROM seq WHERE n < {hi}) "
    base = f"julianday('{start:%Y-%m-%d %H:%M:%S}')"

    def ts(offset: str = "0") -> str:
        return f"strftime('%Y-%m-%d %H:%M:%S', {base} + (n * {STEP} + {offset}) / 86400.0) || '.000000'"

    def uid(kind: int) -> str:
        return f"printf('%08x-{kind:04x}-4000-8000-%012x', (n * 2654435761) % 4294967296, n)"

    state = "CASE WHEN n % 20 < 16 THEN 'Success' WHEN n % 20 < 19 THEN 'Failed' ELSE 'Cancelled' END"
    labels = (
        "CASE WHEN n % 100 = 0 THEN '[\"team-' || (n % 10) || '\",\"gpu\"]' ELSE '[\"team-' || (n % 10) || '\"]' END"
    )
    flow = f"'00000000-0000-4000-8000-f' || printf('%011d', n % {FLOWS})"
    return _statements(seq, ts, uid, state, labels, flow)


def _pg_statements(lo: int, hi: int, start: datetime.datetime) -> list[str]:
    seq = f"WITH seq AS (SELECT n FROM generate_series({lo}::bigint, {hi}::bigint) AS n) "

    def ts(offset: str = "0") -> str:
        return f"(TIMESTAMP '{start:%Y-%m-%d %H:%M:%S}' + make_interval(secs => n * {STEP} + {offset}))"

    def uid(kind: int) -> str:
        return (f"lpad(to_hex((n * 2654435761) % 4294967296), 8, '0') || '-{kind:04x}-4000-8000-' "
                "|| lpad(to_hex(n), 12, '0')")  # fmt: skip

    state = "CASE WHEN n % 20 < 16 THEN 'Success' WHEN n % 20 < 19 THEN 'Failed' ELSE 'Cancelled' END"
    labels = ("(CASE WHEN n % 100 = 0 THEN '[\"team-' || (n % 10) || '\",\"gpu\"]' "
              "ELSE '[\"team-' || (n % 10) || '\"]' END)::json")  # fmt: skip
    flow = f"'00000000-0000-4000-8000-f' || lpad((n % {FLOWS})::text, 11, '0')"
    return _statements(seq, ts, uid, state, labels, flow)


def _statements(
    seq: str, ts: Callable[..., str], uid: Callable[[int], str], state: str, labels: str, flow: str
) -> list[str]:
    run = uid(0)
    return [
        "INSERT INTO flow_runs (id, flow_id, run_name, state, state_message, version, labels, parameters, agent_id, "
        "idempotency_key, scheduled_start_time, created, updated, submitted_at, start_time, end_time, heartbeat, "
        f"reschedule_count, attempt, claim_id) {seq}SELECT {run}, {flow}, 'run-' || n, {state}, NULL, 5, {labels}, "
        f"'{{}}', NULL, NULL, {ts()}, {ts()}, {ts('60')}, {ts('1')}, {ts('2')}, {ts('60')}, {ts('59')}, 0, 1, NULL "
        "FROM seq",
        f"INSERT INTO flow_run_labels (flow_run_id, label, created) {seq}SELECT {run}, 'team-' || (n % 10), {ts()} "
        "FROM seq",
        f"INSERT INTO flow_run_labels (flow_run_id, label, created) {seq}SELECT {run}, 'gpu', {ts()} FROM seq "
        "WHERE n % 100 = 0",
        "INSERT INTO task_runs (id, flow_run_id, task_slug, state, state_message, attempts, start_time, end_time, "
        f"updated) {seq}SELECT {uid(1)}, {run}, 'extract-1', 'Success', NULL, 1, {ts('2')}, {ts('20')}, {ts('20')} "
        "FROM seq",
        "INSERT INTO task_runs (id, flow_run_id, task_slug, state, state_message, attempts, start_time, end_time, "
        f"updated) {seq}SELECT {uid(2)}, {run}, 'load-1', {state}, NULL, 1, {ts('20')}, {ts('58')}, {ts('58')} "
        "FROM seq",
        f"INSERT INTO logs (flow_run_id, timestamp, level, name, message, task_slug, batch_id) {seq}"
        f"SELECT {run}, {ts('2')}, 'INFO', 'headwater.flow_runner', 'Beginning flow run ' || n, NULL, NULL FROM seq",
        f"INSERT INTO logs (flow_run_id, timestamp, level, name, message, task_slug, batch_id) {seq}"
        f"SELECT {run}, {ts('20')}, 'INFO', 'headwater.task_runner', 'extracted ' || (n % 997) || ' rows', "
        "'extract-1', NULL FROM seq",
        f"INSERT INTO logs (flow_run_id, timestamp, level, name, message, task_slug, batch_id) {seq}"
        f"SELECT {run}, {ts('59')}, 'INFO', 'headwater.flow_runner', 'Flow run finished: ' || {state}, NULL, NULL "
        "FROM seq",
        "INSERT INTO flow_run_states (flow_run_id, state, message, timestamp, agent_id) "
        f"{seq}SELECT {run}, 'Scheduled', NULL, {ts()}, NULL FROM seq",
        "INSERT INTO flow_run_states (flow_run_id, state, message, timestamp, agent_id) "
        f"{seq}SELECT {run}, {state}, NULL, {ts('60')}, NULL FROM seq",
    ]


# -- query plans ------------------------------------------------------------------------------


#: PostgreSQL settings that price a whole-table read, a sort, a hash join and a bitmap scan out of reach,
#: so EXPLAIN shows the index walk when one exists (each still appears when nothing else can answer).
STEER = ("enable_seqscan", "enable_sort", "enable_hashjoin", "enable_bitmapscan")


def plans(engine: Engine, call: Callable[[Any], Any], steer: bool = False) -> list[str]:
    """The plan of each SELECT that ``call(session)`` runs: EXPLAIN QUERY PLAN on SQLite, EXPLAIN on PostgreSQL.

    ``steer`` (PostgreSQL): explain with :data:`STEER` off (checked: they must take). On a small table the planner may
    rightly prefer reading and sorting a few hundred rows to walking an index, and which it
    picks there moved with the machine's state; the tests ask whether the walk *exists*
    (a dropped index still shows as a whole-table read or a sort), ``bench/history.py`` what
    the planner picks on a million runs.
    """
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    captured: list[tuple[str, Any]] = []

    def before(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        captured.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", before)
    try:
        with Session(engine) as session:
            call(session)
            session.rollback()
    finally:
        event.remove(engine, "before_cursor_execute", before)
    sqlite = engine.dialect.name == "sqlite"
    found = []
    steering = steer and not sqlite
    with engine.connect() as conn:
        try:
            if steering:  # for this connection (it is in autocommit: SET LOCAL would last one statement)
                for setting in STEER:
                    conn.exec_driver_sql(f"SET {setting} = off")
                took = {setting: conn.exec_driver_sql(f"SHOW {setting}").scalar() for setting in STEER}
                assert set(took.values()) == {"off"}, f"the planner settings did not take: {took}"
            for statement, parameters in captured:
                if not statement.lstrip().upper().startswith(("SELECT", "WITH")):
                    continue
                prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "
                rows = conn.exec_driver_sql(prefix + statement, parameters).all()
                found.append("\n".join(str(row[-1]) for row in rows))
        finally:
            conn.rollback()
            if steering:  # the connection goes back to the pool as it came
                for setting in STEER:
                    conn.exec_driver_sql(f"RESET {setting}")
                conn.commit()
    return found
