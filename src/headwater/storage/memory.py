"""Memory storage: flow objects kept in this process, for tests and ``flow.run()`` setups.

Nothing is written anywhere, so a Memory storage rebuilt from its spec in
another process (an agent's flow-run process) holds no flows, and ``get_flow``
says so. The contract is ``base.py``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from headwater.core.flow import Flow
from headwater.storage.base import Storage
from headwater.storage.errors import StorageError


class Memory(Storage):
    """Keeps flow objects in a dict in this process; a flow's location is its name.

    Args:
        secrets: names of secrets flows kept here need.
        labels: labels for the flows' runs.
        add_default_labels: kept for symmetry; Memory has no default labels.

    Example:
        >>> storage = Memory()
        >>> storage.add_flow(flow)
        'etl'
        >>> storage.get_flow("etl") is flow
        True
    """

    kind: ClassVar[str] = "memory"
    flows_in_spec: ClassVar[bool] = False
    missing_hint: ClassVar[str] = (
        "Memory storage holds flow objects only in the process that added them (one rebuilt "
        "from its spec, e.g. in a flow-run process, holds none): add it with "
        "storage.add_flow(flow), or use Local or Module storage for flows that run elsewhere"
    )

    def __init__(
        self,
        *,
        secrets: Iterable[str] | None = None,
        labels: Iterable[str] | None = None,
        add_default_labels: bool = True,
    ) -> None:
        super().__init__(secrets=secrets, labels=labels, add_default_labels=add_default_labels)
        self._objects: dict[str, Flow] = {}

    def save_flow(self, flow: Flow) -> str:
        self._objects[flow.name] = flow
        return flow.name

    def load_flow(self, location: str, flow_name: str | None) -> Flow:
        flow = self._objects.get(location)
        if flow is None:
            raise StorageError(
                f"flow {flow_name or location!r} is not in {self.describe()} "
                f"(known: {', '.join(map(repr, self._objects)) or 'none'}); {self.missing_hint}"
            )
        return flow
