"""Edges: ``upstream`` must finish before ``downstream`` runs.

An edge with a ``key`` also carries data: the upstream result is passed to the
downstream task's ``run()`` as the argument named ``key``. Without a key it
carries state only (``upstream_tasks=[...]``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from headwater.core.task import Task


class Edge:
    """An edge of the flow graph. Equal edges (same ends and key) are one edge."""

    __slots__ = ("downstream_task", "key", "upstream_task")

    def __init__(self, upstream_task: Task, downstream_task: Task, key: str | None = None) -> None:
        if key is not None and (not isinstance(key, str) or not key.isidentifier()):
            raise ValueError(
                f"edge {upstream_task.name} → {downstream_task.name}: key must be a valid "
                f"argument name, not {key!r}"
            )
        self.upstream_task = upstream_task
        self.downstream_task = downstream_task
        self.key = key

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Edge):
            return NotImplemented
        return (
            self.upstream_task is other.upstream_task
            and self.downstream_task is other.downstream_task
            and self.key == other.key
        )

    def __hash__(self) -> int:
        return hash((id(self.upstream_task), id(self.downstream_task), self.key))

    def __repr__(self) -> str:
        key = f" ({self.key})" if self.key else ""
        return f"<Edge: {self.upstream_task.name} → {self.downstream_task.name}{key}>"
