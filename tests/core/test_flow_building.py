"""The functional API: ``with Flow(...) as flow:`` and calling tasks inside it."""

from __future__ import annotations

import pytest

from headwater import Flow, Parameter, Task, task
from headwater.core import FlowValidationError
from headwater.core.collection_tasks import Dict, List, Set, Tuple
from headwater.core.task import GetItem


@task
def extract():
    return [1, 2, 3]


@task
def transform(data, factor=10):
    return [i * factor for i in data]


@task
def load(rows):
    return len(rows)


@task(nout=2)
def split(rows):
    return rows[:1], rows[1:]


def edges_of(flow):
    return {(e.upstream_task.slug, e.downstream_task.slug, e.key) for e in flow.edges}


def test_calling_a_task_adds_a_copy_with_data_edges():
    with Flow("etl") as flow:
        e = extract()
        t = transform(e)
        loaded = load(rows=t)

    assert e is not extract and t is not transform
    assert extract not in flow and transform not in flow
    assert flow.tasks == {e, t, loaded}
    assert edges_of(flow) == {("extract-1", "transform-1", "data"), ("transform-1", "load-1", "rows")}
    assert isinstance(t, type(transform)) and t.fn is transform.fn


def test_calling_twice_adds_two_tasks_with_numbered_slugs():
    with Flow("f") as flow:
        a = extract()
        b = extract()
        c = extract(task_args={"slug": "special"})

    assert (a.slug, b.slug, c.slug) == ("extract-1", "extract-2", "special")
    assert len(flow) == 3


def test_slugs_are_stable_across_identical_builds():
    def build():
        with Flow("f") as flow:
            transform(extract())
            transform(extract(), factor=2)
            load(Parameter("rows"))
        return sorted(t.slug for t in flow.tasks)

    assert build() == build() == [
        "extract-1", "extract-2", "load-1", "rows", "transform-1", "transform-2",
    ]


def test_upstream_tasks_make_state_only_edges():
    with Flow("f") as flow:
        first = extract()
        second = load([], upstream_tasks=[first])

    (edge,) = flow.edges
    assert (edge.upstream_task, edge.downstream_task, edge.key) == (first, second, None)
    assert flow.constants[second] == {"rows": []}


def test_constants_are_kept_per_task():
    with Flow("f") as flow:
        t = transform([1], factor=3)

    assert flow.constants[t] == {"data": [1], "factor": 3}
    assert flow.edges == frozenset()


def test_lists_of_tasks_become_a_list_task():
    with Flow("f") as flow:
        a, b = extract(), extract()
        total = load([a, b, 5])

    (gather,) = flow.upstream_tasks(total)
    assert isinstance(gather, List)
    assert {(e.upstream_task, e.key) for e in flow.edges_to(gather)} == {(a, "arg_0"), (b, "arg_1")}
    assert flow.constants[gather] == {"arg_2": 5}
    assert gather.run(arg_0="x", arg_1="y", arg_2=5) == ["x", "y", 5]


@pytest.mark.parametrize(("value", "cls"), [((1,), Tuple), ({1}, Set)])
def test_tuples_and_sets_of_tasks(value, cls):
    with Flow("f") as flow:
        a = extract()
        total = load(type(value)([a]))

    (gather,) = flow.upstream_tasks(total)
    assert isinstance(gather, cls)


def test_dicts_with_tasks_become_a_dict_task():
    with Flow("f") as flow:
        a = extract()
        total = load({"a": a, "b": 2})

    (gather,) = flow.upstream_tasks(total)
    assert isinstance(gather, Dict)
    assert gather.run(keys=["a", "b"], values=[1, 2]) == {"a": 1, "b": 2}


def test_collections_without_tasks_stay_constants():
    with Flow("f") as flow:
        t = load([1, 2])
        u = load({"a": 1})

    assert len(flow) == 2
    assert flow.constants[t] == {"rows": [1, 2]}
    assert flow.constants[u] == {"rows": {"a": 1}}


def test_nout_unpacks_into_getitem_tasks():
    with Flow("f") as flow:
        head, tail = split(extract())

    assert isinstance(head, GetItem) and isinstance(tail, GetItem)
    assert flow.constants[head] == {"key": 0}
    assert flow.constants[tail] == {"key": 1}
    assert {t.name for t in flow.tasks} == {"extract", "split", "split[0]", "split[1]"}


def test_indexing_a_task():
    with Flow("f") as flow:
        first = extract()[0]

    assert isinstance(first, GetItem)
    assert flow.constants[first] == {"key": 0}


def test_subclass_tasks_are_called_the_same_way():
    class Add(Task):
        def run(self, x, y):
            return x + y

    with Flow("f") as flow:
        total = Add()(extract(), y=1)

    assert isinstance(total, Add)
    assert flow.constants[total] == {"y": 1}


def test_passing_flow_explicitly_outside_a_with_block():
    flow = Flow("f")
    t = extract(flow=flow)
    assert t in flow


def test_nested_flow_blocks_add_to_the_innermost():
    with Flow("outer") as outer:
        a = extract()
        with Flow("inner") as inner:
            b = extract()
        c = extract()

    assert outer.tasks == {a, c}
    assert inner.tasks == {b}


def test_one_upstream_task_or_constant_per_argument():
    with Flow("f") as flow:
        t = transform(extract(), factor=2)
        with pytest.raises(FlowValidationError, match="one argument, one upstream task"):
            flow.add_edge(extract(), t, key="data")
        with pytest.raises(FlowValidationError, match="already has a constant for argument 'factor'"):
            flow.add_edge(extract(), t, key="factor")
        with pytest.raises(FlowValidationError, match="already gets argument 'data'"):
            flow.set_dependencies(t, keyword_tasks={"data": 5})


def test_nested_collections_of_tasks_become_nested_collection_tasks():
    with Flow("f") as flow:
        a = extract()
        total = load([[a], {"k": (a, 1)}, 2])

    (outer,) = flow.upstream_tasks(total)
    assert isinstance(outer, List)
    inner = {e.key: e.upstream_task for e in flow.edges_to(outer)}
    assert isinstance(inner["arg_0"], List)
    assert isinstance(inner["arg_1"], Dict)
    assert flow.constants[outer] == {"arg_2": 2}
    # no task objects are left inside constants
    assert not any(
        isinstance(v, Task) or (isinstance(v, list) and any(isinstance(i, Task) for i in v))
        for consts in flow.constants.values()
        for v in consts.values()
    )


def test_parameter_declared_in_a_flow_block_belongs_to_the_flow() -> None:
    from headwater import Flow, Parameter

    with Flow("declared") as flow:
        unused = Parameter("unused", default=1)
    assert flow.parameters() == {unused}
    outside = Parameter("outside", default=2)
    assert outside not in flow
