"""Real Dask clusters for the executor tests (the contract suite itself is ``contract.py``).

* ``dask_cluster``: a session-wide ``distributed.LocalCluster`` (2 worker
  processes × 1 thread).
* ``dask_scheduler_address``: ``dask scheduler`` and ``dask worker`` started as
  separate processes on 127.0.0.1, terminated at the end of the session.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .tasks import accepts_connections, free_port

distributed = pytest.importorskip("distributed", reason="Dask distributed is not installed")


@pytest.fixture(scope="session")
def dask_cluster() -> Iterator[Any]:
    """A real ``distributed.LocalCluster``: 2 worker processes with 1 thread each."""
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        host="127.0.0.1",
    ) as cluster, distributed.Client(cluster) as client:
        client.wait_for_workers(2, timeout=60)
        yield cluster


@pytest.fixture(scope="session")
def dask_scheduler_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``dask scheduler`` and ``dask worker --nthreads 2``, as separate processes on 127.0.0.1.

    The worker's ``PYTHONPATH`` is this process's ``sys.path``, so the tasks in
    ``tests/executors/tasks.py`` unpickle by reference there.
    """
    cli = Path(sys.executable).parent / "dask"
    if not cli.exists():
        pytest.skip(f"the `dask` command is not installed next to {sys.executable}")
    logs = tmp_path_factory.mktemp("dask-processes")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    commands = {
        "scheduler": [str(cli), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        "worker": [str(cli), "worker", address, "--nthreads", "2", "--no-dashboard", "--host", "127.0.0.1"],
    }
    procs: list[subprocess.Popen[bytes]] = []
    with contextlib.ExitStack() as stack:
        try:
            for name, argv in commands.items():
                log = stack.enter_context(open(logs / f"{name}.log", "wb"))
                procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env))
            deadline = time.monotonic() + 60
            while not accepts_connections(address):
                if time.monotonic() > deadline or procs[0].poll() is not None:
                    pytest.fail(f"dask scheduler did not start:\n{(logs / 'scheduler.log').read_text()}")
                time.sleep(0.1)
            with distributed.Client(address, timeout="20s") as client:
                client.wait_for_workers(1, timeout=60)
            yield address
        finally:
            for proc in reversed(procs):
                proc.terminate()
            for proc in reversed(procs):
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
