"""Flow as a graph: adding tasks and edges, queries, sorting, validate() and copy()."""

from __future__ import annotations

import itertools

import pytest

from headwater import Flow, Parameter, Task
from headwater.core import Edge, FlowValidationError


class T(Task):
    def run(self, **kwargs):
        return kwargs


def tasks(*names):
    return [T(name=n) for n in names]


def diamond():
    """a → b, a → c, b → d, c → d."""
    a, b, c, d = tasks("a", "b", "c", "d")
    flow = Flow("diamond", edges=[Edge(a, b), Edge(a, c), Edge(b, d), Edge(c, d)])
    return flow, a, b, c, d


# -- construction -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "   ", None, 3])
def test_flow_needs_a_name(name):
    with pytest.raises(ValueError, match="flow's name"):
        Flow(name)


def test_tasks_and_edges_given_to_the_constructor():
    a, b = tasks("a", "b")
    flow = Flow("f", tasks=[a, b], edges=[Edge(a, b, key="x")])

    assert flow.tasks == {a, b}
    assert flow.edges == {Edge(a, b, key="x")}
    assert (a.slug, b.slug) == ("a-1", "b-1")


def test_edges_alone_bring_their_tasks():
    a, b = tasks("a", "b")
    flow = Flow("f", edges=[Edge(a, b)])
    assert flow.tasks == {a, b}


def test_edges_to_unknown_tasks_are_refused_when_tasks_are_given():
    a, b = tasks("a", "b")
    with pytest.raises(FlowValidationError, match="'b', which is not in tasks") as info:
        Flow("f", tasks=[a], edges=[Edge(a, b)])
    assert "'f'" in str(info.value)
    with pytest.raises(FlowValidationError, match="'a', which is not in tasks"):
        Flow("f", tasks=[b], edges=[Edge(a, b)])


def test_storage_environment_and_executor_are_settable_after_construction():
    flow = Flow("f")
    # None until set: the model chooses no run-time default (the flow-run process does)
    assert (flow.storage, flow.environment, flow.executor) == (None, None, None)

    storage, environment, executor = object(), object(), object()
    flow.storage = storage
    flow.environment = environment
    flow.executor = executor

    assert flow.storage is storage
    assert flow.environment is environment
    assert flow.executor is executor
    assert Flow("g", storage=storage).storage is storage


# -- tasks and edges ----------------------------------------------------------------


def test_add_task_gives_slugs_once():
    a, a2, b = T(name="a"), T(name="a"), T(name="b", slug="mine")
    flow = Flow("f")

    assert flow.add_task(a) is a
    flow.add_task(a)  # again: nothing changes
    flow.add_task(a2)
    flow.add_task(b)

    assert len(flow) == 3
    assert (a.slug, a2.slug, b.slug) == ("a-1", "a-2", "mine")
    assert a in flow and T() not in flow


def test_numbered_slugs_skip_ones_already_taken():
    flow = Flow("f")
    flow.add_task(T(name="a", slug="a-1"))
    b = flow.add_task(T(name="a"))
    assert b.slug == "a-2"


def test_add_task_refuses_non_tasks():
    with pytest.raises(TypeError, match="needs a Task, not str"):
        Flow("f").add_task("a")


def test_add_task_refuses_a_duplicate_slug():
    flow = Flow("f", tasks=[T(name="a", slug="x")])
    with pytest.raises(FlowValidationError, match="already has a task with slug 'x'"):
        flow.add_task(T(name="b", slug="x"))
    assert len(flow) == 1


def test_add_edge_adds_missing_tasks_and_is_idempotent():
    a, b = tasks("a", "b")
    flow = Flow("f")

    first = flow.add_edge(a, b, key="x")
    again = flow.add_edge(a, b, key="x")

    assert first == again
    assert len(flow.edges) == 1
    assert flow.tasks == {a, b}


def test_self_edge_is_refused():
    (a,) = tasks("a")
    flow = Flow("f")
    with pytest.raises(FlowValidationError, match="'a' can't depend on itself"):
        flow.add_edge(a, a)
    with pytest.raises(FlowValidationError, match="can't depend on itself"):
        Flow("g", edges=[Edge(a, a)])
    with pytest.raises(FlowValidationError, match="can't depend on itself"):
        flow.set_dependencies(a, upstream_tasks=[a])
    (b,) = tasks("b")  # new to the flow, as a task called in a flow block is
    with pytest.raises(FlowValidationError, match="'b' can't depend on itself"):
        flow.set_dependencies(b, keyword_tasks={"x": b})
    assert not flow.edges


def test_a_bad_argument_name_adds_no_edge_and_no_upstream_task():
    a, b = tasks("a", "b")
    flow = Flow("f")
    with pytest.raises(ValueError, match="key must be a valid argument name"):
        flow.set_dependencies(b, keyword_tasks={"not valid": a})
    assert flow.tasks == {b} and not flow.edges


def test_two_upstream_tasks_for_one_argument_are_refused():
    a, b, c = tasks("a", "b", "c")
    flow = Flow("f")
    flow.add_edge(a, c, key="x")

    with pytest.raises(FlowValidationError, match="already gets argument 'x' from 'a'"):
        flow.add_edge(b, c, key="x")
    with pytest.raises(FlowValidationError, match="one argument, one upstream task"):
        Flow("g", edges=[Edge(a, c, key="x"), Edge(b, c, key="x")])
    # a refused edge leaves the flow as it was
    assert b not in flow
    assert flow.edges == {Edge(a, c, key="x")}


def test_state_edges_from_many_tasks_are_fine():
    a, b, c = tasks("a", "b", "c")
    flow = Flow("f", edges=[Edge(a, c), Edge(b, c), Edge(a, c, key="x")])
    assert flow.upstream_tasks(c) == {a, b}
    assert len(flow.edges_to(c)) == 3


@pytest.mark.parametrize("key", ["1x", "a-b", "", "with space", 5])
def test_edge_keys_must_be_argument_names(key):
    a, b = tasks("a", "b")
    with pytest.raises(ValueError, match="valid argument name"):
        Edge(a, b, key=key)


def test_edge_equality_and_repr():
    a, b = tasks("a", "b")
    assert Edge(a, b, "x") == Edge(a, b, "x")
    assert hash(Edge(a, b, "x")) == hash(Edge(a, b, "x"))
    assert Edge(a, b) != Edge(a, b, "x")
    assert Edge(a, b) != Edge(b, a)
    assert repr(Edge(a, b, "x")) == "<Edge: a → b (x)>"


def test_set_dependencies():
    a, b, c, d = tasks("a", "b", "c", "d")
    flow = Flow("f")

    flow.set_dependencies(b, upstream_tasks=[a], downstream_tasks=[c], keyword_tasks={"x": d, "y": 1})

    assert flow.upstream_tasks(b) == {a, d}
    assert flow.downstream_tasks(b) == {c}
    assert {(e.upstream_task, e.key) for e in flow.edges_to(b)} == {(a, None), (d, "x")}
    assert flow.constants[b] == {"y": 1}


def test_set_dependencies_refuses_non_tasks_as_upstream_or_downstream():
    (a,) = tasks("a")
    flow = Flow("f")
    with pytest.raises(TypeError, match="upstream_tasks of task 'a' must be tasks, not int 3"):
        flow.set_dependencies(a, upstream_tasks=[3])
    with pytest.raises(TypeError, match="downstream_tasks"):
        flow.set_dependencies(a, downstream_tasks=["b"])


# -- queries ----------------------------------------------------------------------


def test_roots_terminals_upstream_downstream():
    flow, a, b, c, d = diamond()

    assert flow.root_tasks() == {a}
    assert flow.terminal_tasks() == {d}
    assert flow.upstream_tasks(d) == {b, c}
    assert flow.downstream_tasks(a) == {b, c}
    assert flow.upstream_tasks(a) == set()
    assert flow.downstream_tasks(d) == set()
    assert flow.reference_tasks() == {d}


def test_queries_about_a_task_not_in_the_flow():
    flow, *_ = diamond()
    for query in (flow.upstream_tasks, flow.downstream_tasks, flow.edges_to, flow.edges_from):
        with pytest.raises(ValueError, match="'z' is not in flow 'diamond'"):
            query(T(name="z"))


def test_reference_tasks_can_be_set():
    flow, _, b, c, _ = diamond()
    flow.set_reference_tasks([b, c])
    assert flow.reference_tasks() == {b, c}
    with pytest.raises(ValueError, match="not in flow"):
        flow.set_reference_tasks([T(name="z")])
    assert flow.reference_tasks() == {b, c}


def test_parameters_and_get_tasks():
    x = Parameter("x")
    a = T(name="a", tags=["etl"])
    b = T(name="b", tags=["etl", "db"])
    flow = Flow("f", edges=[Edge(x, a, key="x"), Edge(a, b)])

    assert flow.parameters() == {x}
    assert flow.get_tasks(name="a") == [a]
    assert flow.get_tasks(slug="b-1") == [b]
    assert set(flow.get_tasks(tags=["etl"])) == {a, b}
    assert flow.get_tasks(tags=["etl", "db"]) == [b]
    assert flow.get_tasks(name="a", tags=["db"]) == []


# -- sorting ----------------------------------------------------------------------


def test_sorted_tasks_put_upstream_first():
    flow, a, b, c, d = diamond()
    order = flow.sorted_tasks()

    assert set(order) == {a, b, c, d}
    position = {t: i for i, t in enumerate(order)}
    for edge in flow.edges:
        assert position[edge.upstream_task] < position[edge.downstream_task]


def test_sorted_tasks_of_a_long_chain_added_backwards():
    chain = tasks(*(f"t{i}" for i in range(3000)))
    flow = Flow("chain")
    for up, down in reversed(list(itertools.pairwise(chain))):
        flow.add_edge(up, down)

    assert list(flow.sorted_tasks()) == chain


def test_sorted_tasks_follow_changes():
    a, b, c = tasks("a", "b", "c")
    flow = Flow("f", edges=[Edge(b, c)])
    flow.add_task(a)
    assert flow.sorted_tasks().index(a) < 3
    flow.add_edge(c, a)
    assert list(flow.sorted_tasks()) == [b, c, a]


# -- validate -------------------------------------------------------------------------


def test_a_valid_flow_validates():
    flow, *_ = diamond()
    flow.validate()
    Flow("empty").validate()


def test_cycle_is_named():
    a, b, c, before, after = tasks("a", "b", "c", "before", "after")
    flow = Flow("f", edges=[Edge(before, a), Edge(a, b), Edge(b, c), Edge(c, a), Edge(c, after)])

    with pytest.raises(FlowValidationError, match="has a cycle") as info:
        flow.validate()

    message = str(info.value)
    cycle = message.split("cycle: ")[1].split(";")[0].split(" → ")
    assert cycle[0] == cycle[-1]
    assert sorted(cycle[:-1]) == ["a-1", "b-1", "c-1"]
    # the named cycle follows the edges
    for up, down in itertools.pairwise(cycle):
        assert Edge(*[t for s in (up, down) for t in flow.get_tasks(slug=s)]) in flow.edges
    with pytest.raises(FlowValidationError, match="cycle"):
        flow.sorted_tasks()


def test_two_task_cycle():
    a, b = tasks("a", "b")
    flow = Flow("f", edges=[Edge(a, b), Edge(b, a)])
    with pytest.raises(FlowValidationError, match=r"cycle: (a-1 → b-1 → a-1|b-1 → a-1 → b-1)"):
        flow.validate()


def test_duplicate_slugs_are_found():
    a, b = tasks("a", "b")
    flow = Flow("f", tasks=[a, b])
    b.slug = "a-1"

    with pytest.raises(FlowValidationError, match="share the slug 'a-1'"):
        flow.validate()


def test_task_without_slug_is_found():
    (a,) = tasks("a")
    flow = Flow("f", tasks=[a])
    a.slug = None

    with pytest.raises(FlowValidationError, match="'a' has no slug"):
        flow.validate()


# -- copy -----------------------------------------------------------------------------


def test_copy_is_independent():
    flow, a, b, c, d = diamond()
    flow.storage = "storage"
    flow.constants[b] = {"k": 1}
    flow.set_reference_tasks([d])
    new = flow.copy()
    e = T(name="e")

    new.add_edge(d, e)
    new.constants[b]["k"] = 2
    new.constants[c] = {"k": 3}
    new.set_reference_tasks([e])
    new.storage = "other"

    assert new.tasks == {a, b, c, d, e}
    assert flow.tasks == {a, b, c, d}
    assert len(flow.edges) == 4 and len(new.edges) == 5
    assert flow.downstream_tasks(d) == set()
    assert flow.terminal_tasks() == {d}
    assert flow.constants == {b: {"k": 1}}
    assert flow.reference_tasks() == {d}
    assert flow.storage == "storage"
    assert [t.name for t in new.sorted_tasks()][-1] == "e"
    assert e not in flow.sorted_tasks()


def test_copy_keeps_numbering_independently():
    flow = Flow("f", tasks=[T(name="a")])
    new = flow.copy()

    assert flow.add_task(T(name="a")).slug == "a-2"
    assert new.add_task(T(name="a")).slug == "a-2"


def test_repr_and_len():
    flow, *_ = diamond()
    assert repr(flow) == "<Flow: 'diamond', 4 tasks>"
    assert len(flow) == 4


def test_flows_compare_by_structure_and_stay_hashable():
    from headwater import Parameter, task

    @task
    def inc(x):
        return x + 1

    def build(name="f", extra=False):
        with Flow(name) as flow:
            y = inc(inc(Parameter("x", default=1)))
            if extra:
                inc(y)
        return flow

    a, b = build(), build()
    assert a == b and a is not b and hash(a) == hash(b)
    assert Flow("empty") == Flow("empty") and Flow("empty") != Flow("other")
    assert a != build(extra=True)  # another task and edge
    assert a != build(name="g")
    c = build()
    c.set_reference_tasks([t for t in c.tasks if t.slug == "inc-1"])
    assert a != c  # other reference tasks
    assert a != "f" and len({a, b, build(name="g")}) == 2
    assert {a: 1}[b] == 1
