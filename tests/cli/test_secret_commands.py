"""``headwater create secret``, ``get secrets`` and ``delete secret`` against a live server process.

The value comes from ``--value``, ``--from-env`` or standard input (a real pipe to
a ``python -m headwater.cli`` process); it is never printed. The server is
``tests/client/live.py``'s.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from client.live import LiveServer, unique
from headwater.cli import main
from headwater.client import Client

VALUE = "cli-secret-value"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("cli-secrets-server")).start()
    yield live
    live.stop()


@pytest.fixture
def client(server: LiveServer, settings_env: Callable[..., Any]) -> Iterator[Client]:
    settings_env(API__URL=server.url)
    with Client(server.url) as c:
        yield c


def name() -> str:
    return unique("cli").replace("-", "_").upper()


def headwater(server: LiveServer, *args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "headwater.cli", *args], input=stdin, capture_output=True, text=True, timeout=60,
        env={**os.environ, "HEADWATER__API__URL": server.url, **env},
    )  # fmt: skip


def test_create_with_value_then_get_and_delete(client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    secret = name()

    assert main(["create", "secret", secret.lower(), "--value", VALUE]) == 0
    assert f"Secret '{secret}' set" in capsys.readouterr().out
    assert client.get_secret(secret).get_secret_value() == VALUE

    assert main(["get", "secrets"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("NAME") and secret in out and VALUE not in out

    assert main(["delete", "secret", secret]) == 0
    assert f"Secret '{secret}' deleted" in capsys.readouterr().out
    assert main(["delete", "secret", secret]) == 2
    assert f"secret '{secret}' not found" in capsys.readouterr().err


def test_create_from_stdin_drops_one_trailing_newline(server: LiveServer, client: Client) -> None:
    secret = name()

    done = headwater(server, "create", "secret", secret, stdin=VALUE + "\n")

    assert done.returncode == 0, done.stderr
    assert VALUE not in done.stdout + done.stderr
    assert client.get_secret(secret).get_secret_value() == VALUE


def test_create_from_stdin_keeps_a_multi_line_value(server: LiveServer, client: Client) -> None:
    secret = name()
    pem = "-----BEGIN KEY-----\nabc\n-----END KEY-----\n"

    assert headwater(server, "create", "secret", secret, stdin=pem + "\n").returncode == 0

    assert client.get_secret(secret).get_secret_value() == pem


def test_create_from_env(server: LiveServer, client: Client) -> None:
    secret = name()

    done = headwater(server, "create", "secret", secret, "--from-env", "MY_TOKEN", MY_TOKEN=VALUE)

    assert done.returncode == 0, done.stderr
    assert VALUE not in done.stdout + done.stderr
    assert client.get_secret(secret).get_secret_value() == VALUE


def test_bad_input(server: LiveServer, client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["create", "secret", "bad-name", "--value", VALUE]) == 2
    err = capsys.readouterr().err
    assert "letters, digits and single underscores" in err and VALUE not in err

    unset = headwater(server, "create", "secret", name(), "--from-env", "NOT_SET_ANYWHERE")
    assert unset.returncode == 2 and "the environment variable NOT_SET_ANYWHERE is not set" in unset.stderr

    empty = headwater(server, "create", "secret", name(), stdin="")
    assert empty.returncode == 2 and "needs a value: pass --value, --from-env VAR, or pipe it" in empty.stderr

    both = headwater(server, "create", "secret", name(), "--value", "x", "--from-env", "Y")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr


def test_get_secrets_when_there_are_none(tmp_path_factory: pytest.TempPathFactory) -> None:
    live = LiveServer(tmp_path_factory.mktemp("empty-secrets")).start()
    try:
        done = headwater(live, "get", "secrets")
    finally:
        live.stop()
    assert done.returncode == 0 and "no secrets; set one with `headwater create secret NAME`" in done.stdout
