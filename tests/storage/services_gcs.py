"""Start gcp-storage-emulator for the GCS storage tests (``test_gcs.py``).

:func:`gcs_emulator` runs ``gcp-storage-emulator start --in-memory`` on a free
local port as a subprocess and yields its URL once it answers, for use as
``STORAGE_EMULATOR_HOST``. The emulator accepts any (or no) credentials.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def emulator_command() -> str | None:
    """The emulator's executable: next to this Python, else on PATH; None when not installed."""
    beside = Path(sys.executable).parent / "gcp-storage-emulator"
    return str(beside) if beside.exists() else shutil.which("gcp-storage-emulator")


def anonymous_client() -> Any:
    """A google.cloud.storage client for the emulator that ``STORAGE_EMULATOR_HOST`` names."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
    return storage.Client(project="test", credentials=credentials)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def gcs_emulator(wait: float = 15.0) -> Iterator[str]:
    """Run the emulator in memory and yield its URL (``http://127.0.0.1:<port>``).

    Raises:
        RuntimeError: the emulator is not installed, exits, or doesn't answer within ``wait`` s.
    """
    command = emulator_command()
    if command is None:
        raise RuntimeError("gcp-storage-emulator is not installed (pip install 'headwater[test]')")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [command, "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory", "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + wait
        while True:
            if process.poll() is not None:
                err = process.stderr.read().decode(errors="replace") if process.stderr else ""
                raise RuntimeError(f"gcp-storage-emulator exited with {process.returncode}: {err[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1):
                    break
            except urllib.error.HTTPError:
                break  # it answers, even if with an error status
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"gcp-storage-emulator did not answer at {url} within {wait:g}s") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()
