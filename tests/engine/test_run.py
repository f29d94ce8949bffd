"""flow.run(): results flow downstream and the flow State holds every task's State."""

from __future__ import annotations

import time

from headwater import Flow, Parameter, Task, task
from headwater.core.state import Failed, Success, TriggerFailed
from headwater.core.triggers import always_run
from headwater.executors import LocalExecutor


def run(flow, **kwargs):
    return flow.run(executor=LocalExecutor(), **kwargs)


@task
def numbers():
    return [1, 2, 3]


@task
def scale(data, factor=10):
    return [i * factor for i in data]


@task
def add(x, y):
    return x + y


@task
def fail():
    raise RuntimeError("nope")


def test_upstream_results_are_passed_as_arguments():
    with Flow("etl") as flow:
        data = numbers()
        scaled = scale(data)
        doubled = scale(scaled, factor=2)

    state = run(flow)

    assert isinstance(state, Success)
    assert state.message == "all reference tasks succeeded"
    assert state.result[data].result == [1, 2, 3]
    assert state.result[scaled].result == [10, 20, 30]
    assert state.result[doubled].result == [20, 40, 60]
    assert set(state.result) == flow.tasks


def test_one_upstream_result_feeds_several_arguments():
    with Flow("f") as flow:
        one = add(0, 1)
        two = add(one, one)
        four = add(x=two, y=two)

    assert run(flow).result[four].result == 4


def test_collections_and_nout():
    @task(nout=3)
    def three():
        return "a", "b", "c"

    @task
    def show(value):
        return value

    with Flow("f") as flow:
        a, b, c = three()
        as_list = show([a, b, "const"])
        as_tuple = show((c, a))
        as_set = show({a, b})
        as_dict = show({"x": a, c: "y"})
        nested = show([[a], {"k": b}])
        indexed = show(numbers()[1])

    results = run(flow).result

    assert results[as_list].result == ["a", "b", "const"]
    assert results[as_tuple].result == ("c", "a")
    assert results[as_set].result == {"a", "b"}
    assert results[as_dict].result == {"x": "a", "c": "y"}
    assert results[nested].result == [["a"], {"k": "b"}]
    assert results[indexed].result == 2


def test_parameters():
    with Flow("f") as flow:
        x = Parameter("x")
        y = Parameter("y", default=5)
        total = add(x, y)

    assert run(flow, parameters={"x": 1}).result[total].result == 6
    assert run(flow, parameters={"x": 1, "y": 2}).result[total].result == 3
    assert run(flow, parameters={"x": 1}).result[y].result == 5


def test_optional_parameter_without_default_gives_none():
    @task
    def show(value):
        return value

    with Flow("f") as flow:
        shown = show(Parameter("p", required=False))

    state = run(flow)
    assert state.result[shown].result is None
    assert state.is_successful()


def test_state_only_edges_order_tasks_without_passing_data():
    order = []

    @task
    def note(label):
        order.append(label)
        return label

    with Flow("f") as flow:
        last = note("last")
        first = note("first")
        last.set_upstream(first)
        middle = note("middle", upstream_tasks=[first])
        last.set_upstream(middle)

    state = run(flow)

    assert order == ["first", "middle", "last"]
    assert state.result[last].result == "last"


def test_a_failed_state_only_upstream_stops_the_downstream_task():
    ran = []

    @task
    def mark():
        ran.append(1)

    with Flow("f") as flow:
        broken = fail()
        after = mark(upstream_tasks=[broken])

    state = run(flow)

    assert ran == []
    assert isinstance(state.result[after], TriggerFailed)


def test_task_subclass_runs():
    class Multiply(Task):
        def run(self, x, by):
            return x * by

    with Flow("f") as flow:
        product = Multiply(name="multiply")(add(1, 2), by=3)

    state = run(flow)

    assert state.result[product].result == 9
    assert product.slug == "multiply-1"


def test_task_without_run_fails_with_a_clear_message():
    with Flow("f") as flow:
        empty = Task(name="empty")()

    state = run(flow)

    assert isinstance(state.result[empty], Failed)
    assert "override run()" in state.result[empty].message


def test_terminal_tasks_decide_the_flow_state_by_default():
    with Flow("f") as flow:
        broken = fail()
        cleanup = add(1, 1, upstream_tasks=[broken], task_args={"trigger": always_run})

    state = run(flow)

    assert isinstance(state.result[broken], Failed)
    assert state.result[cleanup].result == 2
    assert isinstance(state, Success)  # the only terminal task succeeded


def test_reference_tasks_decide_the_flow_state():
    with Flow("f") as flow:
        ok = add(1, 1)
        broken = fail(upstream_tasks=[ok])

    assert isinstance(run(flow), Failed)

    flow.set_reference_tasks([ok])
    assert isinstance(run(flow), Success)

    flow.set_reference_tasks([ok, broken])
    state = run(flow)
    assert isinstance(state, Failed)
    assert state.message.startswith(f"{broken.slug} failed: ")
    assert state.message.endswith(f"; reference task(s) did not succeed: {broken.slug}")
    # the failed flow still holds every task's state
    assert state.result[ok].result == 2


def test_timings_and_attempts_are_recorded():
    @task
    def nap():
        time.sleep(0.05)
        return "rested"

    before = time.time()
    with Flow("f") as flow:
        napped = nap()
        after = add(1, 2, upstream_tasks=[napped])

    state = run(flow)
    done = time.time()

    nap_state, add_state = state.result[napped], state.result[after]
    assert nap_state.attempts == add_state.attempts == 1
    assert before <= nap_state.started_at < nap_state.finished_at <= add_state.started_at
    assert add_state.finished_at <= done
    assert nap_state.duration >= 0.05
    assert before <= state.started_at <= nap_state.started_at
    assert add_state.finished_at <= state.finished_at <= done


def test_a_flow_runs_again_with_fresh_states():
    calls = []

    @task
    def count():
        calls.append(1)
        return len(calls)

    with Flow("f") as flow:
        c = count()

    first, second = run(flow), run(flow)

    assert (first.result[c].result, second.result[c].result) == (1, 2)
    assert first.result[c] is not second.result[c]


def test_empty_flow_succeeds():
    state = run(Flow("empty"))
    assert isinstance(state, Success)
    assert state.result == {}
