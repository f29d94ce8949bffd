"""core/binding.py binds a task call as ``Signature.bind_partial`` did (same names, same order),
and building a flow copies tasks as ``copy.copy`` did."""

from __future__ import annotations

import copy
import inspect
from typing import Any

import pytest

from headwater import Flow, Task, task
from headwater.core.binding import Binder


def plain(a, b=1, c=2):  # type: ignore[no-untyped-def]
    return a


def keyword_only(a, *, k, m=3):  # type: ignore[no-untyped-def]
    return a


def positional_only(a, b, /, c=1):  # type: ignore[no-untyped-def]
    return a


def var_keyword(a, b=2, **rest):  # type: ignore[no-untyped-def]
    return a


def var_positional(a, *more, z=0):  # type: ignore[no-untyped-def]
    return a


def positional_only_and_var_keyword(a, /, **rest):  # type: ignore[no-untyped-def]
    return a


CALLS: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = [
    (plain, (), {}),
    (plain, (1,), {}),
    (plain, (1, 2, 3), {}),
    (plain, (), {"c": 3, "a": 1}),
    (plain, (1,), {"c": 3}),
    (plain, (1, 2, 3, 4), {}),  # too many
    (plain, (1,), {"a": 2}),  # twice
    (plain, (), {"nope": 1}),  # unknown
    (keyword_only, (1,), {"m": 4, "k": 2}),
    (keyword_only, (1, 2), {}),
    (positional_only, (1, 2), {"c": 3}),
    (positional_only, (1,), {"b": 2}),  # positional-only given by keyword
    (var_keyword, (1,), {"z": 9, "b": 3, "y": 8}),
    (var_keyword, (), {"a": 1, "x": 2}),
    (positional_only_and_var_keyword, (1,), {"a": 2}),
    (var_positional, (1,), {"z": 1}),
    (var_positional, (1, 2, 3), {}),
]


@pytest.mark.parametrize(("fn", "args", "kwargs"), CALLS)
def test_the_binder_agrees_with_bind_partial(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    signature = inspect.signature(fn)
    fast = Binder(signature).bind(args, kwargs)
    try:
        bound = signature.bind_partial(*args, **kwargs)
    except TypeError:
        assert fast is None  # the error comes from bind_partial itself
        return
    if fast is None:
        return  # left to bind_partial (e.g. *args)
    expected: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            expected.update(value)
        elif kind is not inspect.Parameter.VAR_POSITIONAL:
            expected[name] = value
    assert list(fast.items()) == list(expected.items())


def test_a_task_call_still_names_a_bad_argument() -> None:
    t = task(plain)
    with Flow("bad"), pytest.raises(TypeError, match=r"task 'plain'.*nope.*signature: run\(a, b=1, c=2\)"):
        t(nope=1)
    with Flow("twice"), pytest.raises(TypeError, match="multiple values"):
        t(1, a=2)


def test_a_task_with_its_own_signature_or_run_is_bound_by_it() -> None:
    class Custom(Task):
        def run(self, x: int, y: int = 0) -> int:  # type: ignore[override]
            return x + y

    class Signed(Task):
        def run(self, **kwargs: Any) -> Any:  # type: ignore[override]
            return kwargs["q"]

        def signature(self) -> inspect.Signature:
            return inspect.Signature([inspect.Parameter("q", inspect.Parameter.KEYWORD_ONLY)])

    with Flow("own") as flow:
        a = Custom()(1, y=2)
        b = Signed()(q=a)
        with pytest.raises(TypeError):
            Signed()(r=1)
    assert flow.constants[a] == {"x": 1, "y": 2}
    state = flow.run()
    assert state.result[b].result == 3


def test_copies_in_a_flow_are_what_copy_copy_makes() -> None:
    t = task(plain, name="p", tags=["x"], max_retries=2)
    with Flow("copies"):
        made = t(1)
    reference = copy.copy(t)
    assert type(made) is type(reference)
    assert made is not t
    assert {k: v for k, v in vars(made).items() if k != "slug"} == {
        k: v for k, v in vars(reference).items() if k != "slug"
    }

    class WithSlots(Task):
        __slots__ = ("extra",)

        def __init__(self) -> None:
            super().__init__()
            self.extra = 5

        def run(self) -> int:
            return self.extra

    with Flow("slots") as flow:
        s = WithSlots()()
    assert s.extra == 5
    assert flow.run().result[s].result == 5
