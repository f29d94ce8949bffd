"""Tasks that gather results into a list, tuple or dict.

``t(data=[a, b])`` inside a flow, with tasks inside the list, makes a
:class:`List` task with an edge from each task, so ``t`` gets ``[a_result,
b_result]``.
"""

from __future__ import annotations

from typing import Any

from headwater.core.task import Task


class List(Task):
    """``run(arg_0=..., arg_1=...)`` → ``[arg_0, arg_1, ...]``."""

    def run(self, **items: Any) -> list[Any]:
        return [items[f"arg_{i}"] for i in range(len(items))]


class Tuple(List):
    """Like :class:`List`, returning a tuple."""

    def run(self, **items: Any) -> tuple[Any, ...]:  # type: ignore[override]
        return tuple(super().run(**items))


class Set(List):
    """Like :class:`List`, returning a set."""

    def run(self, **items: Any) -> set[Any]:  # type: ignore[override]
        return set(super().run(**items))


class Dict(Task):
    """``run(keys=[...], values=[...])`` → ``dict(zip(keys, values))``."""

    def run(self, keys: list[Any], values: list[Any]) -> dict[Any, Any]:  # type: ignore[override]
        return dict(zip(keys, values, strict=True))
