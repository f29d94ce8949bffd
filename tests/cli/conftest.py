"""A live server per CLI test module, and a client of it whose URL the CLI reads from the settings."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from client.live import LiveServer
from headwater.client import Client


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("cli-server")).start()
    yield live
    live.stop()


@pytest.fixture
def client(server: LiveServer, settings_env) -> Iterator[Client]:
    """A client of the server, whose URL the CLI reads from HEADWATER__API__URL."""
    settings_env(API__URL=server.url)
    with Client(server.url) as c:
        yield c
