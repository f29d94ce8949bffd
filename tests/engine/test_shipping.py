"""The shipper (``engine/shipping.py``) against a real server: log requests kept under the byte
budget, and a batch sent again after its answer was lost stored once."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from headwater import Flow, task
from headwater.client import Client
from headwater.engine.shipping import Shipper
from headwater.schemas.logs import MAX_BATCH_BYTES, log_batches
from headwater.server.process import ServerProcess
from headwater.storage import Local


@task
def noop() -> None:
    pass


class Recording(Client):
    """A real client that also notes the size of each log request it makes."""

    sizes: list[int]

    def write_logs(self, flow_run_id: str, records: Iterable[Any], *args: Any, **kwargs: Any) -> int:
        records = list(records)
        self.sizes.append(len(json.dumps({"records": records}, default=str)))
        return super().write_logs(flow_run_id, records, *args, **kwargs)


#: Seconds a server process may take to start: more than a minute beside other test suites on 2 cores.
STARTUP = 90.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("shipping-server")
    live = ServerProcess(home, f"sqlite:///{home / 'hw.db'}").start(timeout=STARTUP)
    yield live
    assert live.process is not None
    os.kill(live.process.pid, signal.SIGCONT)
    live.stop()


def a_run(client: Client, folder: Path) -> str:
    with Flow("shipped", storage=Local(directory=str(folder), add_default_labels=False)) as flow:
        noop()
    project = f"p-{time.monotonic_ns()}"
    client.create_project(project)
    return client.create_flow_run(client.register(flow, project))


def record(message: str) -> dict[str, Any]:
    return {"timestamp": time.time(), "level": "INFO", "message": message, "name": "t", "task_slug": None}


def test_log_batches_are_cut_by_count_and_by_bytes() -> None:
    small = [{"message": "x"}] * 2500
    assert [len(b) for b in log_batches(small)] == [1000, 1000, 500]
    big = [{"message": "x" * 1_000_000}] * 10
    batches = log_batches(big)
    assert [len(b) for b in batches] == [4, 4, 2]
    assert all(len(json.dumps({"records": b})) <= MAX_BATCH_BYTES for b in batches)
    assert [len(b) for b in log_batches([{"message": "x" * (5 << 20)}, {"message": "y"}])] == [1, 1]  # alone
    assert log_batches([]) == []


def test_a_shipper_keeps_each_log_request_under_the_byte_budget(server: ServerProcess, tmp_path: Path) -> None:
    with Recording(server.url) as client:
        client.sizes = []
        run_id = a_run(client, tmp_path)
        shipper = Shipper(client, run_id, interval=60)
        for i in range(100):  # 100 records of ~99 kB: ~10 MB, past the server's 8 MiB limit in one request
            shipper.add_log(record(f"{i:03d} " + "x" * 99_000))
        assert shipper.flush() is True
        assert len(client.sizes) == 3 and max(client.sizes) <= MAX_BATCH_BYTES, client.sizes
        messages = [r.message[:3] for r in client.get_flow_run_logs(run_id)]
    assert messages == [f"{i:03d}" for i in range(100)]


def test_a_batch_sent_again_keeps_its_id_and_is_stored_once(
    server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert server.process is not None
    with Client(server.url) as client, Client(server.url, timeout=0.5, retry_for=1) as impatient:
        run_id = a_run(client, tmp_path)
        shipper = Shipper(impatient, run_id, interval=60)
        for i in range(3):
            shipper.add_log(record(f"line {i}"))
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            assert shipper.flush() is False  # no answer within retry_for: kept, with its batch id
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        assert "can't send log records" in capsys.readouterr().err
        shipper.api = client  # a patient one for the server just back (and busy with the stale tries)
        shipper.add_log(record("line 3"))
        assert shipper.flush() is True  # the kept batch again (its earlier tries were applied meanwhile), then the new
        messages = [r.message for r in client.get_flow_run_logs(run_id)]
    assert messages == ["line 0", "line 1", "line 2", "line 3"]


def test_logs_wait_while_task_states_find_the_api_unreachable() -> None:
    from headwater.server.process import free_port

    with Recording(f"http://127.0.0.1:{free_port()}", tries=1) as nowhere:
        nowhere.sizes = []
        shipper = Shipper(nowhere, "some-run", interval=60)
        shipper.add_task(("extract-1", "Running", None, None, time.time(), None))
        shipper.add_log(record("kept"))
        assert shipper.flush() is False
    assert nowhere.sizes == []  # not tried: the task states just found no server
