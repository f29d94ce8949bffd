"""DaskExecutor's packed graph form (``executors/_packed.py``), used from ``PACK_FROM`` calls a wait.

The contract suite's flows are small, so they go in the plain task-tuple form;
here flows and submissions are large enough to be packed, on the same real
2-worker LocalCluster, and the packed graph itself is checked without a cluster.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from dask.local import get_sync
from dask.tokenize import tokenize

from headwater import Flow
from headwater.core.state import Failed, Success, TriggerFailed
from headwater.core.triggers import always_run
from headwater.executors import DaskExecutor
from headwater.executors._graph import GraphBuilder
from headwater.executors._packed import Packed, call_packed
from headwater.executors.dask import PACK_FROM

from . import tasks as T
from .contract import count_call, double, scale
from .tasks import by_slug

MANY = PACK_FROM + 20


def _pair(a: int, b: tuple[int, int], c: list[int], label: str) -> tuple[int, int, list[int], str]:
    return a, b[0] + b[1], c, label


@pytest.fixture
def executor(dask_cluster) -> DaskExecutor:
    return DaskExecutor(address=dask_cluster.scheduler_address)


# -- the graph, without a cluster -----------------------------------------------------------


def test_a_large_wait_packs_every_call_into_one_payload_and_indexes_it():
    builder = GraphBuilder(pack_from=3)
    first = builder.submit(double, (1,), {}, "double")
    second = builder.submit(double, (first,), {}, "double")
    third = builder.submit(_pair, (first, (first, second), [second, 5], "x"), {}, "pair")

    graph = builder.graph(list(builder.calls))

    payloads = [v[1] for v in graph.values() if isinstance(v[1], Packed)]
    assert len(payloads) == 1 and len(graph) == 4
    payload_key = payloads[0].key
    assert graph[first.key] == (call_packed, payload_key, 0)  # no future among its arguments
    assert graph[second.key] == (call_packed, payload_key, 1, first.key)
    # only the arguments that hold futures stay in the graph, for Dask to resolve
    assert graph[third.key] == (call_packed, payload_key, 2, first.key, (tuple, [first.key, second.key]),
                                [second.key, 5])  # fmt: skip
    assert get_sync(graph, [first.key, second.key, third.key]) == (2, 4, (2, 6, [4, 5], "x"))


def test_below_pack_from_the_graph_stays_in_task_tuples():
    builder = GraphBuilder(pack_from=3)
    one = builder.submit(double, (1,), {}, "double")
    two = builder.submit(scale, (one,), {"by": 3}, "scale")

    graph = builder.graph(list(builder.calls))

    assert graph[one.key] == (double, 1)
    assert graph[two.key][1:] == (one.key,)
    assert get_sync(graph, [two.key]) == (6,)


def test_the_payload_pickles_as_its_bytes_and_unpickles_once_where_it_is_used():
    builder = GraphBuilder(pack_from=1)
    future = builder.submit(scale, (2,), {"by": 21}, "scale")
    (payload,) = [v[1] for v in builder.graph([future.key]).values() if isinstance(v[1], Packed)]

    copy = pickle.loads(pickle.dumps(payload))

    assert copy.blob == payload.blob and copy._entries is None  # nothing unpickled on the way
    assert call_packed(copy, 0) == 42
    assert copy.entries() is copy.entries()  # unpickled once, then kept
    assert tokenize(copy) == tokenize(payload)  # named by its unique key, not hashed
    assert copy.__sizeof__() >= len(copy.blob)


# -- on the cluster -------------------------------------------------------------------------


def test_a_large_flow_keeps_every_state_result_retry_trigger_and_failure(executor):
    with Flow("packed") as flow:
        numbers = [T.number(i) for i in range(MANY)]
        summed = T.total(numbers)
        broken = T.boom()
        after = T.add(broken, 1)
        T.cleanup(upstream_tasks=[broken, after], task_args={"trigger": always_run})
        T.flaky(2)
        T.add(summed, 1)

    state = flow.run(executor=executor)

    states = by_slug(state)
    assert len(states) >= MANY + 6  # (the list of numbers may be a task of its own)
    assert [states[f"number-{i + 1}"].result for i in range(MANY)] == list(range(MANY))
    assert states["total-1"].result == sum(range(MANY))
    assert states["add-2"].result == sum(range(MANY)) + 1
    assert type(states["boom-1"]) is Failed
    assert states["boom-1"].message == "ValueError: boom: broken on purpose"
    assert "in boom" in states["boom-1"].traceback
    assert isinstance(states["add-1"], TriggerFailed)
    assert states["cleanup-1"].result == "cleaned"
    assert isinstance(states["flaky-1"], Success) and states["flaky-1"].attempts == 2
    assert state.is_successful()  # its terminal tasks succeeded


def test_a_large_flow_that_fails_names_the_task_that_failed_first(executor):
    with Flow("packed-failure") as flow:
        for i in range(MANY):
            T.number(i)
        T.add(T.boom(), 1)

    state = flow.run(executor=executor)

    assert state.is_failed()
    assert state.message.startswith("boom-1 failed: ValueError: boom: broken on purpose"), state.message


def test_a_large_flow_tells_the_state_handlers_every_state(executor, tmp_path: Path):
    log = tmp_path / "states.log"
    with Flow("handlers") as flow:
        for i in range(MANY):
            T.number(i)

    assert flow.run(executor=executor, state_handlers=[T.FileStateHandler(str(log))], run_name="r").is_successful()

    lines = log.read_text().splitlines()
    assert lines[0] == "flow Running r" and lines[-1] == "flow Success r"
    assert sorted(lines[1:-1]) == sorted(
        [f"task number-{i + 1} {name} r" for i in range(MANY) for name in ("Running", "Success")]
    )


def test_packed_waits_run_each_call_once_and_resolve_futures_in_lists_and_tuples(executor, tmp_path: Path):
    calls = tmp_path / "calls.txt"
    with executor.start():
        first = [executor.submit(count_call, str(calls), i) for i in range(MANY)]
        assert executor.wait(first) == list(range(MANY))
        # a second large wait: its calls take the first wait's futures as arguments
        second = [executor.submit(_pair, f, (f, f), [f, 1], "y") for f in first]
        assert executor.wait(second[:2]) == [(0, 0, [0, 1], "y"), (1, 2, [1, 1], "y")]
        assert executor.wait({"again": first[-1]}) == {"again": MANY - 1}
    assert sorted(map(int, calls.read_text().split())) == list(range(MANY))


def test_a_raising_call_in_a_packed_wait_raises_from_wait(executor):
    with executor.start():
        futures = [executor.submit(double, i) for i in range(MANY)]
        futures.append(executor.submit(T.boom.run))
        with pytest.raises(ValueError, match="boom: broken on purpose"):
            executor.wait(futures)
