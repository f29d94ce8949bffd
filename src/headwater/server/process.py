"""A headwater server in a subprocess on 127.0.0.1: used by tests, benchmarks and the demo."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``headwater server start`` in a subprocess, with its own home folder and database.

    Args:
        home: its ``HEADWATER__HOME`` (also where its output is written).
        database_url: ``sqlite:///...`` or ``postgresql://...``.
        env: extra environment variables (e.g. ``HEADWATER__SERVER__AUTH``).
        host: the address it binds; it is always reached over 127.0.0.1.
        port: the port; default a free one.

    ``ServerProcess.spawner`` (default None: a new interpreter each time) may be set to a
    function ``spawner(argv, env, stdio)`` that starts ``python ARGV`` some faster way and
    returns a handle with ``Popen``'s ``pid``, ``poll``, ``wait``, ``send_signal``,
    ``terminate`` and ``kill``: the test suite sets it to a warm starter whose process has
    already imported the server (``tests/conftest.py``), since starting servers is the
    largest share of the suite's CPU.
    """

    spawner: ClassVar[Callable[[Sequence[str], dict[str, str], Sequence[int]], Any] | None] = None

    def __init__(
        self,
        home: Path,
        database_url: str,
        env: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
    ) -> None:
        self.home = home
        self.database_url = database_url
        self.port = port or free_port()
        self.host = host
        self.url = f"http://127.0.0.1:{self.port}"
        self.api = f"{self.url}/api/v1"
        self.env = {**os.environ, "HEADWATER__HOME": str(home), **(env or {})}
        self.log = home / f"server-{self.port}.log"
        self.process: Any = None  # a subprocess.Popen, or what ``spawner`` returned

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "headwater.cli",
            "server",
            "start",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--database",
            self.database_url,
        ]

    def start(self, timeout: float = 120.0) -> ServerProcess:
        # generous: a loaded 2-core machine was seen taking 15-25 s to start a server; a healthy
        # start still returns as soon as /health answers
        self.home.mkdir(parents=True, exist_ok=True)
        out = self.log.open("wb")
        command = self.command()
        spawner = type(self).spawner
        if spawner is not None and command[0] == sys.executable:
            with open(os.devnull, "rb") as devnull:
                self.process = spawner(command[1:], self.env, [devnull.fileno(), out.fileno(), out.fileno()])
            out.close()
        else:
            self.process = subprocess.Popen(command, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.api}/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not answer within {timeout}s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
