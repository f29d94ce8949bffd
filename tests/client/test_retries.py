"""The client against a real server process that stalls (SIGSTOP … SIGCONT) or restarts.

What is sent again and for how long is ``client/http.py``'s docstring; these tests hold it:
GETs and idempotent writes wait out a stalled server and say so once on the
``headwater.client`` logger, a plain POST is not sent again after a read timeout, a
log batch sent again after its answer was lost is stored once, a versioned write
whose first try was applied comes back as a ``resent`` 409, a restarting server is
waited for, and a server that never answered is reported in a moment.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from headwater.client import Client, ConflictError
from headwater.client.errors import ApiConnectionError, ApiTimeoutError
from headwater.server.process import ServerProcess, free_port

from .flows import make_flow
from .live import unique

#: Seconds a server process may take to start: more than a minute beside other test suites on 2 cores.
STARTUP = 90.0


def _serve(home: Path) -> Iterator[ServerProcess]:
    live = ServerProcess(home, f"sqlite:///{home / 'hw.db'}").start(timeout=STARTUP)
    yield live
    if live.process is not None and live.process.poll() is None:
        os.kill(live.process.pid, signal.SIGCONT)
    live.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the tests that stall it (each continues it before it ends)."""
    yield from _serve(tmp_path_factory.mktemp("stalled-server"))


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of the test's own (to stop and start again)."""
    yield from _serve(tmp_path / "server")


@contextmanager
def stalled(server: ServerProcess, seconds: float) -> Iterator[None]:
    """The server process stopped (SIGSTOP) now and continued (SIGCONT) ``seconds`` later."""
    assert server.process is not None
    pid = server.process.pid
    os.kill(pid, signal.SIGSTOP)
    timer = threading.Timer(seconds, os.kill, (pid, signal.SIGCONT))
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        os.kill(pid, signal.SIGCONT)


def client_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "headwater.client" and r.levelno == logging.WARNING]


def a_run(client: Client, tmp_path: Path) -> str:
    project = unique("project")
    client.create_project(project)
    return client.create_flow_run(client.register(make_flow("etl", tmp_path), project))


def test_a_get_waits_out_a_stalled_server_and_says_so_once(
    server: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "headwater.client")
    with Client(server.url, timeout=0.5, retry_for=20) as client:
        client.health()
        started = time.monotonic()
        with stalled(server, 3.0):
            client.list_projects()
        assert time.monotonic() - started >= 2.5
    (warning,) = client_warnings(caplog)  # once per request, not once per try
    assert warning.startswith("the API did not answer GET /api/v1/projects in time (ReadTimeout); trying again for")
    assert any("the API answered GET /api/v1/projects after" in r.getMessage() for r in caplog.records)


def test_a_plain_post_is_not_sent_again_after_a_read_timeout(server: ServerProcess) -> None:
    name = unique("project")
    with Client(server.url, timeout=0.5, retry_for=20) as client:
        client.health()
        started = time.monotonic()
        with stalled(server, 2.0), pytest.raises(ApiTimeoutError) as info:
            client.create_project(name)
        assert time.monotonic() - started < 1.5
        message = str(info.value)
        assert "did not answer POST /api/v1/projects in time (ReadTimeout after 0.5 s; 1 try)" in message
        assert "not sent again, as it may have been applied" in message and "HEADWATER__API__TIMEOUT" in message
        # it is applied once the server goes on (the request was in its socket): why it must not be
        # sent again blindly. The server may still be working through it when it answers the list.
        deadline = time.monotonic() + 15
        while name not in {p.name for p in client.list_projects()}:
            assert time.monotonic() < deadline, f"project {name} was never created by the stalled request"
            time.sleep(0.1)


def test_an_idempotent_request_gives_up_after_retry_for_naming_the_settings(server: ServerProcess) -> None:
    with Client(server.url, timeout=0.3, retry_for=1.5) as client:
        client.health()
        started = time.monotonic()
        with stalled(server, 8.0), pytest.raises(ApiTimeoutError) as info:
            client.list_projects()
        took = time.monotonic() - started
    assert 1.5 <= took < 4.0, took
    message = str(info.value)
    assert f"the headwater API at {server.api} did not answer GET /api/v1/projects in time" in message
    assert "HEADWATER__API__TIMEOUT (each try) or HEADWATER__API__RETRY_FOR (all tries)" in message
    assert isinstance(info.value, ApiConnectionError)


def test_a_log_batch_sent_again_after_its_answer_was_lost_is_stored_once(server: ServerProcess, tmp_path: Path) -> None:
    with Client(server.url) as client, Client(server.url, timeout=0.5, retry_for=20, backoff=1.0) as impatient:
        run_id = a_run(client, tmp_path)
        records = [{"message": f"line {i}"} for i in range(5)]
        # tries at 0 s and 1.5 s reach the stalled server (both are applied once it goes on,
        # answering nobody); the try at 4 s is answered: the batch is stored already.
        with stalled(server, 2.5):
            assert impatient.write_logs(run_id, records) == 5
        assert [r.message for r in client.get_flow_run_logs(run_id)] == [f"line {i}" for i in range(5)]
        # the same id again, later: still once; a new batch is a new batch
        assert client.write_logs(run_id, records[:2], batch_id="b-1") == 2
        assert client.write_logs(run_id, records[:2], batch_id="b-1") == 2
        assert len(client.get_flow_run_logs(run_id)) == 7


def test_a_versioned_write_whose_first_try_was_applied_is_a_resent_conflict(
    server: ServerProcess, tmp_path: Path
) -> None:
    with Client(server.url) as client, Client(server.url, timeout=0.5, retry_for=20, backoff=1.0) as impatient:
        run_id = a_run(client, tmp_path)
        version = client.get_flow_run(run_id).version
        with stalled(server, 2.5), pytest.raises(ConflictError) as info:
            impatient.set_flow_run_state(run_id, "Cancelled", version=version, message="by the first try")
        assert info.value.resent  # a try before this one may have done it: the caller looks
        run = client.get_flow_run(run_id)
        assert (run.state, run.version, run.state_message) == ("Cancelled", version + 1, "by the first try")
        with pytest.raises(ConflictError) as fresh:  # a conflict without retries is not resent
            client.set_flow_run_state(run_id, "Running", version=version)
        assert not fresh.value.resent


def test_a_restarting_server_is_waited_for_by_gets_and_posts(
    own_server: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    server = own_server
    with Client(server.url, timeout=2, retry_for=STARTUP) as client:
        client.health()
        server.stop()
        again = ServerProcess(server.home, server.database_url, port=server.port)
        threading.Timer(1.5, again.start, kwargs={"timeout": STARTUP}).start()
        try:
            assert client.list_projects() == []  # refused while it was down: sent again
            name = unique("project")
            client.create_project(name)  # never reached the stopped server either: safe to send again
            assert [p.name for p in client.list_projects()] == [name]
        finally:
            deadline = time.monotonic() + 30
            while again.process is None and time.monotonic() < deadline:
                time.sleep(0.05)
            again.stop()
    assert any(w.startswith(f"can't reach the headwater API at {server.api} for GET /api/v1/projects (ConnectError")
               for w in client_warnings(caplog))  # fmt: skip


def test_a_server_that_never_answered_is_reported_in_a_moment() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with Client(url, retry_for=60) as client, pytest.raises(ApiConnectionError) as info:
        client.list_projects()
    assert time.monotonic() - started < 5  # a wrong URL or no server: not worth a minute of retries
    assert "after 4 tries" in str(info.value) and "headwater server start" in str(info.value)
