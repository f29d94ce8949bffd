"""Module storage: flows that live in an importable Python module.

Nothing is written: ``add_flow`` records the module, and ``get_flow`` imports
it where the flow runs and picks the flow by attribute, by name, or as the
module's only Flow (``script.pick_flow``). The module must be importable there
(installed, or on ``PYTHONPATH``). The contract is ``base.py``.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from typing import Any, ClassVar

from headwater.core.flow import Flow
from headwater.storage.base import Storage
from headwater.storage.errors import StorageError
from headwater.storage.script import flows_in, pick_flow

_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_MODULE_SPEC = re.compile(rf"{_DOTTED}(?::{_DOTTED})?")


class Module(Storage):
    """Loads flows by importing ``module`` (``"pkg.flows"`` or ``"pkg.flows:etl_flow"``).

    The flow's code is its source, so ``stored_as_script`` is always True.

    Args:
        module: the module's import path, optionally ``:attribute`` naming the flow.
        secrets: names of secrets flows kept here need.
        labels: labels for the flows' runs.
        add_default_labels: kept for symmetry; Module has no default labels.
    """

    kind: ClassVar[str] = "module"
    missing_hint: ClassVar[str] = "check the flow's name, or add it with storage.add_flow(flow)"

    def __init__(
        self,
        module: str,
        *,
        secrets: Iterable[str] | None = None,
        labels: Iterable[str] | None = None,
        add_default_labels: bool = True,
    ) -> None:
        if not isinstance(module, str) or not _MODULE_SPEC.fullmatch(module):
            raise StorageError(
                f"Module storage needs an import path like 'pkg.flows' or 'pkg.flows:etl_flow', not {module!r}"
            )
        super().__init__(secrets=secrets, labels=labels, add_default_labels=add_default_labels, stored_as_script=True)
        self.module = module

    def describe(self) -> str:
        return f"Module storage {self.module}"

    def spec_args(self) -> dict[str, Any]:
        return {"module": self.module, **super().spec_args()}

    def save_flow(self, flow: Flow) -> str:
        # Not imported here: the module may be the one registering the flow right now.
        return self.module

    def locate(self, key: str) -> str | None:
        """A ``module:attr`` is a location; any other key is a flow name to find in ``module``."""
        return key if _MODULE_SPEC.fullmatch(key) and ":" in key else self.module

    def load_flow(self, location: str, flow_name: str | None) -> Flow:
        module_name, _, attr = location.partition(":")
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise StorageError(
                f"can't import module {module_name!r} of {self.describe()} "
                f"({type(exc).__name__}: {exc}); is it installed, or on PYTHONPATH, where the flow "
                "is loaded?"
            ) from exc
        if not attr:
            return pick_flow(flows_in(vars(module)), flow_name, f"Module storage {module_name}")
        obj: Any = module
        for part in attr.split("."):
            if not hasattr(obj, part):
                found = ", ".join(repr(f.name) for f in flows_in(vars(module))) or "none"
                raise StorageError(
                    f"module {module_name!r} has no attribute {attr!r} (flows there: {found}); check {location!r}"
                )
            obj = getattr(obj, part)
        if not isinstance(obj, Flow):
            raise StorageError(f"{location} is a {type(obj).__name__}, not a headwater Flow")
        if flow_name is not None and obj.name != flow_name:
            raise StorageError(
                f"flow {flow_name!r} is not in {self.describe()}: {location} is flow {obj.name!r}; {self.missing_hint}"
            )
        return obj
