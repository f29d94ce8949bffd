"""Flows the client tests register."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from headwater import Flow, Parameter, task
from headwater.storage import Local


@task
def double(x: int) -> int:
    return 2 * x


def make_flow(name: str = "etl", folder: Path | None = None, labels: list[str] | None = None, **kwargs: Any) -> Flow:
    """A two-task flow with parameter ``x``; kept in Local storage under ``folder`` without the hostname label."""
    storage = None
    if folder is not None:
        storage = Local(directory=str(folder), labels=labels, add_default_labels=False)
    with Flow(name, storage=storage, **kwargs) as flow:
        double(Parameter("x", default=1))
    return flow
