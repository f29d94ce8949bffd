"""A live API server for the client tests: ``headwater server start`` on a free 127.0.0.1 port.

``live_server`` is one server for the whole session (tests keep to their own
projects and labels, made unique with ``unique``); tests that need a server of
their own (auth on, a late start) build a ``LiveServer`` from ``live.py``. A
failed test's report carries the server's output.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from headwater.client import Client

from .live import LiveServer, unique


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path_factory.mktemp("live-server")).start()
    yield server
    server.stop()


@pytest.fixture
def client(live_server: LiveServer) -> Iterator[Client]:
    with Client(live_server.url) as c:
        yield c


@pytest.fixture
def project(client: Client) -> str:
    """A new project's name."""
    name = unique("project")
    client.create_project(name)
    return name


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    server = getattr(item, "funcargs", {}).get("live_server")
    if report.failed and isinstance(server, LiveServer):
        report.sections.append(("live server output", server.output()[-5000:]))
