"""``headwater server start`` refusing what it can't serve from, in a real process, without a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from headwater.server.database.engine import DatabaseError, database_url
from headwater.server.process import free_port


def start(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``headwater server start ARGS`` in a process; it must exit (it can't serve)."""
    return subprocess.run(
        [sys.executable, "-m", "headwater.cli", "server", "start", "--port", str(free_port()), *args],
        capture_output=True, text=True, timeout=60, env={**os.environ, "HEADWATER__HOME": str(tmp_path)},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("sqlite://hw.db", "a SQLite URL has three slashes and then the file's path, e.g. sqlite:///hw.db"),
        ("sqlite:///:memory:", "in-memory SQLite database: it lasts only as long as one connection"),
        ("sqlite://", "in-memory SQLite database"),
        ("sqlite:///file:x?mode=memory&uri=true", "in-memory SQLite database"),
        ("hw.db", "is not a URL: use sqlite:///path/to/file.db"),
        ("mysql://u@h/db", "headwater supports SQLite and PostgreSQL: use sqlite:///path/to/file.db"),
        ("postgresql://user@127.0.0.1:5432", "names no database"),
    ],
)
def test_bad_database_urls_are_refused_plainly(tmp_path: Path, url: str, says: str) -> None:
    done = start(tmp_path, "--database", url)
    assert done.returncode == 2, done.stdout + done.stderr
    assert says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "headwater API on" not in done.stdout
    assert "postgresql://user@host:port/db" in done.stderr or "use a file, e.g. sqlite:///headwater.db" in done.stderr


def test_database_url_checks_in_process(tmp_path: Path) -> None:
    assert database_url(None, tmp_path) == f"sqlite:///{tmp_path / 'headwater.db'}"
    assert database_url("postgres://u@h:1/db", tmp_path) == "postgresql+psycopg://u@h:1/db"
    assert database_url(f"sqlite:///{tmp_path}/a.db", tmp_path) == f"sqlite:///{tmp_path}/a.db"
    with pytest.raises(DatabaseError, match="outlive every connection"):
        database_url("sqlite:///:memory:", tmp_path)


def test_port_in_use_is_reported_before_anything_is_announced(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "headwater.cli", "server", "start", "--port", str(port),
             "--database", f"sqlite:///{tmp_path / 'hw.db'}"],
            capture_output=True, text=True, timeout=60, env={**os.environ, "HEADWATER__HOME": str(tmp_path)},
        )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in done.stderr
    assert f"--port {port + 1}" in done.stderr and f"HEADWATER__SERVER__PORT={port + 1}" in done.stderr
    assert "headwater API on" not in done.stdout and "Errno" not in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "hw.db").exists()  # refused before the database was touched


def test_host_not_of_this_machine(tmp_path: Path) -> None:
    done = start(tmp_path, "--host", "192.0.2.1", "--database", f"sqlite:///{tmp_path / 'hw.db'}")
    assert done.returncode == 2
    assert "192.0.2.1 is not an address of this machine" in done.stderr, done.stderr
