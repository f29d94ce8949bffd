"""A real headwater API server process on 127.0.0.1, and a fake agent that drives runs through the client.

The client tests (``conftest.py`` here) and the CLI's API command tests
(``tests/cli/test_api_commands.py``) both use these.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from headwater.client import Client
from headwater.server.process import ServerProcess, free_port

__all__ = ["LiveServer", "drive_in_thread", "drive_run", "free_port", "unique"]


class LiveServer(ServerProcess):
    """The package's server launcher, with a SQLite database in ``home`` and two CLI helpers.

    Attributes:
        url: ``http://127.0.0.1:PORT``.
        database_url: the server's database URL (for ``server create-token --database``).
    """

    def __init__(
        self, home: Path, env: dict[str, str] | None = None, port: int | None = None, host: str = "127.0.0.1"
    ) -> None:
        home.mkdir(parents=True, exist_ok=True)
        super().__init__(home, f"sqlite:///{home / 'hw.db'}", env=env, port=port, host=host)

    def headwater(self, *args: str) -> str:
        """Run ``python -m headwater.cli ARGS`` with this server's home; its stdout."""
        done = subprocess.run(
            [sys.executable, "-m", "headwater.cli", *args],
            env=self.env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    def create_token(self, scope: str) -> str:
        """A token made with ``headwater server create-token --scope SCOPE --database ...``."""
        return self.headwater("server", "create-token", "--scope", scope, "--database", self.database_url).strip()


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def drive_run(
    client: Client,
    flow_run_id: str,
    labels: list[str],
    final: str = "Success",
    log_lines: tuple[str, ...] = ("extract done", "load done"),
    delay: float = 0.0,
) -> None:
    """Do what an agent and a flow-run process would: claim the run, run it, log, finish it."""
    agent_id = client.register_agent(unique("agent"), "fake", labels)
    claimed = client.claim_flow_runs(agent_id, labels, limit=1, wait=10)
    assert [r.id for r in claimed] == [flow_run_id], claimed
    time.sleep(delay)
    client.set_flow_run_state(flow_run_id, "Running", version=claimed[0].version)
    for line in log_lines:
        client.write_logs(flow_run_id, [{"message": line, "level": "INFO"}])
        time.sleep(delay)
    message = None if final == "Success" else "task 'load' failed"
    client.set_flow_run_state(flow_run_id, final, message=message)


def drive_in_thread(client: Client, flow_run_id: str, labels: list[str], **kwargs: object) -> threading.Thread:
    """:func:`drive_run` in a daemon thread (join it to see it finished); errors are re-raised at join."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            drive_run(client, flow_run_id, labels, **kwargs)  # type: ignore[arg-type]
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    original_join = thread.join

    def join(timeout: float | None = 30) -> None:
        original_join(timeout)
        if errors:
            raise errors[0]

    thread.join = join  # type: ignore[method-assign]
    thread.start()
    return thread
