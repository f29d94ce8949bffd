"""Start moto's S3 server for the S3 storage tests (``test_s3.py``).

:func:`moto_server` runs ``moto_server -H 127.0.0.1 -p <free port>`` as a
subprocess and yields its URL once it answers. By default moto checks no
credentials; :func:`enforce_authentication` switches a running server to
checking every request's signature and IAM permissions, through the
``/moto-api/reset-auth`` endpoint that moto's own ``set_initial_no_auth_action_count``
uses in server mode (the ``INITIAL_NO_AUTH_ACTION_COUNT`` setting, counted from now).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

#: dummy credentials: moto accepts any unless authentication is enforced.
DUMMY_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def moto_command() -> str | None:
    """The server's executable: next to this Python, else on PATH; None when not installed."""
    beside = Path(sys.executable).parent / "moto_server"
    return str(beside) if beside.exists() else shutil.which("moto_server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def client(
    url: str,
    service: str = "s3",
    key_id: str = DUMMY_ENV["AWS_ACCESS_KEY_ID"],
    secret: str = DUMMY_ENV["AWS_SECRET_ACCESS_KEY"],
) -> Any:
    """A boto3 client of ``service`` for the server at ``url`` (the tests' own, not S3 storage's)."""
    import boto3

    return boto3.session.Session().client(
        service, endpoint_url=url, region_name="us-east-1", aws_access_key_id=key_id, aws_secret_access_key=secret
    )


def enforce_authentication(url: str) -> None:
    """From now on the server at ``url`` refuses unknown keys, bad signatures and missing permissions."""
    request = urllib.request.Request(
        f"{url}/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"}
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        answer.read()


@contextlib.contextmanager
def moto_server(wait: float = 20.0) -> Iterator[str]:
    """Run moto's server in memory and yield its URL (``http://127.0.0.1:<port>``).

    Raises:
        RuntimeError: moto_server is not installed, exits, or doesn't answer within ``wait`` s.
    """
    command = moto_command()
    if command is None:
        raise RuntimeError("moto_server is not installed (pip install 'headwater[test]')")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "INITIAL_NO_AUTH_ACTION_COUNT"}
    # The server logs every request: a file, not a pipe nobody drains, takes them.
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen([command, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log, env=env)
        try:
            _wait_until_it_answers(process, url, log, wait)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_it_answers(process: subprocess.Popen[bytes], url: str, log: IO[bytes], wait: float) -> None:
    deadline = time.monotonic() + wait
    while True:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(
                f"moto_server exited with {process.returncode}: {log.read().decode(errors='replace')[-2000:]}"
            )
        try:
            # moto's own API answers without touching any service (or the auth counter).
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answers, even if with an error status
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"moto_server did not answer at {url} within {wait:g}s") from None
            time.sleep(0.1)
