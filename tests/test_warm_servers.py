"""The suite's servers start warm (``tests/conftest.py``), and still behave as processes of their own."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from headwater.agent.warm import WarmProcess
from headwater.server.process import ServerProcess


def test_a_test_server_is_forked_warm_with_its_own_settings_and_output(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, f"sqlite:///{tmp_path / 'hw.db'}",
                           env={"HEADWATER__SERVER__MAX_RUN_BATCH": "7"}).start()  # fmt: skip
    try:
        assert isinstance(server.process, WarmProcess)
        assert httpx.get(f"{server.api}/health").status_code == 200
        assert (tmp_path / "hw.db").exists()  # its own database, from its own arguments
        too_many = httpx.post(f"{server.api}/runs/batch", json={"flow_runs": [{"flow_id": "f"}] * 8})
        assert too_many.status_code == 413 and "7" in too_many.text, too_many.text  # its own setting
    finally:
        server.stop()
    assert server.process.returncode == -signal.SIGTERM
    assert server.output(), "the server's output goes to its log"


def test_a_killed_warm_server_ends_with_sigkill(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, f"sqlite:///{tmp_path / 'hw.db'}").start()
    server.process.kill()
    assert server.process.wait(timeout=10) == -signal.SIGKILL
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.api}/health", timeout=2)


def test_without_the_spawner_a_server_starts_cold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ServerProcess, "spawner", None)
    server = ServerProcess(tmp_path, f"sqlite:///{tmp_path / 'hw.db'}").start()
    try:
        assert not isinstance(server.process, WarmProcess)
        assert httpx.get(f"{server.api}/health").status_code == 200
    finally:
        server.stop()
