"""A live API server for the agent tests, a flow to make runs of, and its output in a failed test's report.

One server process (SQLite, its own home) serves the whole session; each test
keeps to its own labels (``unique``), so agents of different tests never take
each other's runs. Helpers (agents in threads, unique names) are in ``helpers.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from headwater import Flow, Parameter, task
from headwater.client import Client
from headwater.server.process import ServerProcess


@task
def double(x: int) -> int:
    return 2 * x


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("agent-server")
    live = ServerProcess(home, f"sqlite:///{home / 'hw.db'}").start()
    yield live
    live.stop()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[Client]:
    with Client(server.url) as c:
        yield c


@pytest.fixture(scope="session")
def flow_id(server: ServerProcess) -> str:
    """A flow version (metadata only: the stand-in never loads it) to make runs of."""
    with Flow("agent-test") as flow:
        double(Parameter("x", default=1))
    with Client(server.url) as c:
        c.create_project("agents")
        return c.register_flow_metadata("agents", flow.serialize()).id


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: object) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    server = getattr(item, "funcargs", {}).get("server")
    if report.failed and isinstance(server, ServerProcess):
        report.sections.append(("live server output", server.output()[-5000:]))
