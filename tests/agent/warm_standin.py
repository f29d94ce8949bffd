"""A flow-run stand-in for the warm starter's tests: reports through the real client and records its process.

Like ``standin.py`` it moves its run to Running and then Success. Before that it writes
what its process got into ``$WARM_RECORD/<run id>.json`` (environment, working
directory, limits, umask, session, parent, ``sys.path``), and runs the steps in its
run's parameter ``do`` (a list of strings), each relative to ``$WARM_RECORD``:

* ``touch:NAME`` / ``wait:NAME``: make a file / wait (at most 60 s) until it exists;
* ``sleep:SECONDS``;
* ``exit:CODE``: ``os._exit(CODE)`` without a final state; ``kill:SIGNUM``: the process signals itself;
* ``segv``: a segmentation fault;
* ``grandchild:NAME``: start ``sleep 60`` in its process group and write its pid to NAME.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from headwater.client import Client


def record(folder: Path, run_id: str) -> None:
    umask = os.umask(0)
    os.umask(umask)
    got = {
        "env": dict(os.environ),
        "cwd": os.getcwd(),
        "nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
        "umask": umask,
        "pid": os.getpid(),
        "pgid": os.getpgrp(),
        "sid": os.getsid(0),
        "ppid": os.getppid(),
        "sys_path": sys.path,
        "argv": sys.argv,
        "stdin_is_devnull": os.path.samestat(os.fstat(0), os.stat(os.devnull)),
    }
    (folder / f"{run_id}.json").write_text(json.dumps(got))


#: Objects kept alive until the process exits.
KEPT: list[object] = []


def step(folder: Path, what: str) -> None:
    verb, _, arg = what.partition(":")
    if verb == "touch":
        (folder / arg).touch()
    elif verb == "wait":
        deadline = time.monotonic() + 60
        while not (folder / arg).exists():
            if time.monotonic() > deadline:
                os._exit(3)
            time.sleep(0.02)
    elif verb == "sleep":
        time.sleep(float(arg))
    elif verb == "exit":
        os._exit(int(arg))
    elif verb == "kill":
        os.kill(os.getpid(), int(arg))
        time.sleep(10)
    elif verb == "segv":
        ctypes.string_at(0)
    elif verb == "grandchild":
        child = subprocess.Popen(["sleep", "60"])
        (folder / arg).write_text(str(child.pid))
    elif verb == "pool":  # an executor left running and a non-daemon thread: the exit must end both
        import concurrent.futures
        import threading

        executor = concurrent.futures.ThreadPoolExecutor(2)
        executor.submit(time.sleep, 0.01).result()
        KEPT.append(executor)  # alive until exit, as a module's executor is (collected, its workers would end)
        threading.Thread(target=lambda: (time.sleep(0.3), (folder / arg).touch())).start()
    else:
        raise ValueError(f"unknown step {what!r}")


def main() -> int:
    run_id = os.environ["HEADWATER__CONTEXT__FLOW_RUN_ID"]
    folder = Path(os.environ["WARM_RECORD"])
    record(folder, run_id)
    with Client() as client:
        run = client.get_flow_run(run_id)
        if run.state != "Submitted":
            print(f"warm_standin: flow run {run_id} is {run.state}, not Submitted", file=sys.stderr)
            return 2
        client.set_flow_run_state(run_id, "Running", version=run.version)
        for what in run.parameters.get("do") or []:
            step(folder, what)
        client.set_flow_run_state(run_id, "Success")
    return 0


if __name__ == "__main__":
    sys.exit(main())
