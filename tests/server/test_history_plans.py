"""The history's queries use their indexes (issue 15), on SQLite and PostgreSQL.

A database holding 20,000 finished runs (``tests/history_fill.py``, analyzed), and the plan of
every statement ``GET /runs``, ``GET /runs/{id}/logs`` and the claim's candidates run
(EXPLAIN QUERY PLAN / EXPLAIN). Each must name the index migration 0007 (0004, 0008) made for
it, and none may read the whole ``flow_runs`` table or sort every matching run: drop an
index, and its test fails. PostgreSQL explains with whole-table reads, sorts, hash joins and
bitmap scans priced out (``history_fill.STEER``): on 20,000 runs reading a few hundred and
sorting them is a fair choice for its planner, and in full-suite runs it took it.
``bench/history.py`` measures the same queries on a million runs.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from headwater.server.database.engine import create_db_engine, database_url
from headwater.server.models.flow_runs import list_flow_runs
from headwater.server.models.logs import read_logs
from headwater.server.models.work import _candidates
from history_fill import fill, plans, run_id

RUNS = 20_000
NOW = datetime.datetime(2026, 12, 1, 12, 0, 0)
#: A whole-table read of a table that grows with the history.
FULL_SCAN = re.compile(
    r"^\s*(SCAN (flow_runs|logs|flow_run_labels)\s*$|.*Seq Scan on (flow_runs|logs|flow_run_labels))"
)
SORT_ALL = re.compile(r"USE TEMP B-TREE FOR ORDER BY|Sort Key")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def full(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    folder = tmp_path_factory.mktemp(f"history-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{folder / 'hw.db'}"
    else:
        url = database_url(request.getfixturevalue("postgres_cluster").create_database("history_plans"), folder)
    engine = create_db_engine(url)
    fill(engine, RUNS, NOW, progress=lambda _: None)
    yield engine
    engine.dispose()


CASES: dict[str, tuple[Callable[[Any], Any], str]] = {
    "unfiltered": (lambda s: list_flow_runs(s), "ix_flow_runs_created"),
    "by state": (lambda s: list_flow_runs(s, state=["failed"]), "ix_flow_runs_state_created"),
    "by flow": (lambda s: list_flow_runs(s, flow_name="hist-flow-7"), "ix_flow_runs_flow_created"),
    "by flow id": (lambda s: list_flow_runs(s, flow_id="00000000-0000-4000-8000-f00000000003"),
                   "ix_flow_runs_flow_created"),
    "a deep page": (lambda s: list_flow_runs(s, offset=5_000), "ix_flow_runs_created"),
    "logs of an old run": (lambda s: read_logs(s, run_id(1)), "ix_logs_run_id"),
    "claim candidates": (lambda s: s.execute(_candidates(True), {"p_now": NOW, "p_limit": 10, "p_labels": ["x"]}),
                         "ix_flow_runs_claim_order"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_query_walks_its_index(full: Engine, case: str) -> None:
    call, index = CASES[case]
    found = plans(full, call, steer=True)
    text = "\n\n".join(found)
    assert index in text, f"{case}: {index} not used:\n{text}"
    assert not [line for line in text.splitlines() if FULL_SCAN.search(line)], f"{case} reads a whole table:\n{text}"
    if case != "logs of an old run":  # a run's 3 lines may be sorted (PostgreSQL does): the index found them
        assert not SORT_ALL.search(text), f"{case} sorts the matching runs instead of walking an index:\n{text}"


def test_several_states_merge_one_walk_each(full: Engine) -> None:
    text = "\n\n".join(plans(full, lambda s: list_flow_runs(s, state=["Failed", "Cancelled"]), steer=True))
    assert "ix_flow_runs_state_created" in text, text
    assert not [line for line in text.splitlines() if FULL_SCAN.search(line)], text
    page = text.split("\n\n")[0]
    # each state's walk stops at the page's end; only their merge (at most 2 × 200 rows) is sorted
    assert len(re.findall(r"ix_flow_runs_state_created", page)) == 2, page


@pytest.mark.parametrize("label", ["team-3", "gpu"])
def test_a_label_filter_walks_that_labels_runs_newest_first(full: Engine, label: str) -> None:
    """Common (a tenth of the runs) or rare (a hundredth): the label's own index, in the page's order.

    Migration 0008 put each run's ``created`` on its label rows; without it a rare label read
    most of the history to fill a page (``bench/history.py``).
    """
    text = "\n\n".join(plans(full, lambda s: list_flow_runs(s, label=[label]), steer=True))
    assert "ix_flow_run_labels_created" in text, text
    assert not [line for line in text.splitlines() if FULL_SCAN.search(line)], text
    assert not SORT_ALL.search(text), text


def test_a_label_with_a_state_walks_the_states_runs(full: Engine) -> None:
    """A state filter keeps the state's walk (a rare state, e.g. Running, stays cheap), each run's labels looked up."""
    text = "\n\n".join(plans(full, lambda s: list_flow_runs(s, label=["gpu"], state=["failed"]), steer=True))
    assert "ix_flow_runs_state_created" in text, text
    assert not [line for line in text.splitlines() if FULL_SCAN.search(line)], text


def test_the_page_is_the_same_whatever_the_walk(full: Engine) -> None:
    """The merged walks answer what one sorted read of every matching run answers."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from headwater.server.models.flow_runs import FLOW_RUN_LABELS, FLOW_RUNS

    with Session(full) as session:
        page = list_flow_runs(session, state=["Failed", "Cancelled"], offset=150, limit=50)
        expected = list(session.scalars(
            select(FLOW_RUNS.c.id).where(FLOW_RUNS.c.state.in_(["Failed", "Cancelled"]))
            .order_by(FLOW_RUNS.c.created.desc(), FLOW_RUNS.c.id.desc()).offset(150).limit(50)
        ))  # fmt: skip
        assert [r.id for r in page.flow_runs] == expected
        assert (page.total, page.total_exact) == (150 + 150, False)
        everything = list_flow_runs(session, flow_name="hist-flow-7", offset=300, limit=100)
        assert (everything.total, everything.total_exact) == (RUNS // 50, True)  # 400 runs: counted to the end
        past = list_flow_runs(session, flow_name="hist-flow-7", offset=1_000, limit=100)
        assert (past.flow_runs, past.total, past.total_exact) == ([], RUNS // 50, True)

        def labelled(*labels: str) -> list[str]:
            ids: set[str] | None = None
            for label in labels:
                of_label = select(FLOW_RUN_LABELS.c.flow_run_id).where(FLOW_RUN_LABELS.c.label == label)
                these = set(session.scalars(of_label))
                ids = these if ids is None else ids & these
            rows = select(FLOW_RUNS.c.id).where(FLOW_RUNS.c.id.in_(sorted(ids or ())))
            return list(session.scalars(rows.order_by(FLOW_RUNS.c.created.desc(), FLOW_RUNS.c.id.desc())))

        gpu = labelled("gpu")
        assert len(gpu) == RUNS // 100
        page = list_flow_runs(session, label=["gpu"], offset=100, limit=30)
        assert [r.id for r in page.flow_runs] == gpu[100:130]
        assert (page.total, page.total_exact) == (RUNS // 100, True)  # 200 runs: the rest within the count ahead
        page = list_flow_runs(session, label=["gpu"], offset=10, limit=30)
        assert (page.total, page.total_exact) == (10 + 30 + 100, False)
        assert labelled("gpu", "team-0") == gpu  # the fill gives every hundredth run team-0 as well
        page = list_flow_runs(session, label=["team-0", "gpu"], limit=500)
        assert [r.id for r in page.flow_runs] == gpu
        assert list_flow_runs(session, label=["team-3", "gpu"]).flow_runs == []
        assert [r.id for r in list_flow_runs(session, label=["gpu"], offset=10_000).flow_runs] == []
        assert list_flow_runs(session, label=["gpu"], offset=10_000).total == RUNS // 100
