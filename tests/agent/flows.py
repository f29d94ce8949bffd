"""A real flow for the test that runs ``python -m headwater execute flow-run`` under a LocalAgent.

Its tasks live in this module, so the flow-run process imports it: the agent
puts ``tests/`` on its ``PYTHONPATH`` with ``import_paths``.
"""

from __future__ import annotations

from pathlib import Path

from headwater import Flow, Parameter, task
from headwater.storage import Local

#: the folder to give ``import_paths`` so this module imports as ``agent.flows``.
TESTS_DIR = Path(__file__).resolve().parent.parent


@task
def add_one(x: int) -> int:
    return x + 1


@task
def double(x: int) -> int:
    return 2 * x


def make_flow(folder: Path) -> Flow:
    """``double(add_one(x))`` kept in Local storage under ``folder``."""
    storage = Local(directory=str(folder), add_default_labels=False)
    with Flow("agent-real", storage=storage) as flow:
        double(add_one(Parameter("x", default=1)))
    return flow
