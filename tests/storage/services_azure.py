"""Azurite, the Azure Storage emulator, for ``test_azure.py``: start it, wait, stop it.

``scripts/ensure-system-deps.sh`` (run by ``make test``) installs it with npm into
``.tools/azurite`` under the repo root. Each test module gets its own blob service on a
free port with its data in a temporary folder, so runs never share state.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
AZURITE_BLOB = REPO / ".tools" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
ACCOUNT = "devstoreaccount1"
#: Azurite's well-known development key (public, documented by Microsoft).
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def connection_string(port: int, key: str = ACCOUNT_KEY) -> str:
    """The development account's connection string for Azurite on ``port``."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={key};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Azurite:
    port: int

    @property
    def connection_string(self) -> str:
        return connection_string(self.port)


def missing_reason() -> str | None:
    """Why Azurite can't run here, or None when it can."""
    if AZURITE_BLOB.exists():
        return None
    return (
        f"Azurite is not installed ({AZURITE_BLOB} is missing): run `bash scripts/ensure-system-deps.sh` "
        "(needs npm); ALL Azure storage tests are SKIPPED"
    )


@contextmanager
def running_azurite(data: Path, timeout: float = 20.0) -> Iterator[Azurite]:
    """A blob service on a free port with its data under ``data``, stopped on exit."""
    port = free_port()
    process = subprocess.Popen(
        [
            str(AZURITE_BLOB),
            "--blobHost", "127.0.0.1",
            "--blobPort", str(port),
            "--location", str(data),
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--silent",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "NODE_NO_WARNINGS": "1"},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                err = process.stderr.read().decode(errors="replace") if process.stderr else ""
                raise RuntimeError(f"Azurite exited with {process.returncode} before answering: {err}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Azurite did not answer on port {port} within {timeout}s") from None
                time.sleep(0.1)
        yield Azurite(port)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()
