"""Live servers for the server tests: one per database kind for the session, fresh ones on request.

Tests that share a session server isolate themselves by unique names and labels
(``unique``); tests whose claims must see every run use ``fresh_server``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .live import LiveServer

DATABASES = ["sqlite", "postgres"]


def _database_url(kind: str, folder: Path, request: pytest.FixtureRequest) -> str:
    if kind == "sqlite":
        return f"sqlite:///{folder / 'headwater.db'}"
    cluster = request.getfixturevalue("postgres_cluster")
    return str(cluster.create_database(f"hw_{uuid.uuid4().hex[:12]}"))


@pytest.fixture(scope="session", params=DATABASES)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server process for the whole session, on SQLite or PostgreSQL."""
    folder = tmp_path_factory.mktemp(f"server-{request.param}")
    live = LiveServer(folder, _database_url(request.param, folder, request)).start()
    yield live
    live.stop()


@pytest.fixture
def fresh_server(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., LiveServer]]:
    """Start servers of your own: ``fresh_server("sqlite", env={...})``; stopped after the test."""
    started: list[LiveServer] = []

    def start(kind: str = "sqlite", env: dict[str, str] | None = None, **kwargs: Any) -> LiveServer:
        folder = tmp_path / f"srv{len(started)}"
        folder.mkdir()
        live = LiveServer(folder, _database_url(kind, folder, request), env=env, **kwargs)
        started.append(live)
        return live.start()

    yield start
    for live in started:
        live.stop()


@pytest.fixture
def api(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.api, timeout=30) as client:
        yield client


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]
