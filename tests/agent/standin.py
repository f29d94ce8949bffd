"""A stand-in for ``headwater execute flow-run``: a real process that reports through the real client.

Reads the run from ``HEADWATER__CONTEXT__FLOW_RUN_ID`` and the server from
``HEADWATER__API__URL`` as the real entrypoint does, moves the run to Running,
then Success. The tests steer it with variables the agent passes on:

* ``STANDIN_GATE=path``: wait until that file exists before anything else (at most 120 s);
* ``STANDIN_DUMP_ENV=path``: write its environment there as JSON first;
* ``STANDIN_APPEND=path``: append the run id to that file (one ``O_APPEND`` write);
* ``STANDIN_SLEEP=seconds``: stay Running that long;
* ``STANDIN_EXIT=code``: exit with that code without reporting a final state;
* ``STANDIN_PRINT=text``: print that line to standard output first.
"""

from __future__ import annotations

import json
import os
import sys
import time

from headwater.client import Client


def main() -> int:
    run_id = os.environ["HEADWATER__CONTEXT__FLOW_RUN_ID"]
    if said := os.environ.get("STANDIN_PRINT"):
        print(said, flush=True)
    if gate := os.environ.get("STANDIN_GATE"):
        deadline = time.monotonic() + 120  # a test that failed before opening it leaves no process behind
        while not os.path.exists(gate):
            if time.monotonic() > deadline:
                return 3
            time.sleep(0.05)
    if dump := os.environ.get("STANDIN_DUMP_ENV"):
        with open(dump, "w") as out:
            json.dump(dict(os.environ), out)
    with Client() as client:
        run = client.get_flow_run(run_id)
        if run.state != "Submitted":  # as the real entry point: only a claimed run is this process's
            print(f"standin: flow run {run_id} is {run.state}, not Submitted", file=sys.stderr)
            return 2
        client.set_flow_run_state(run_id, "Running", version=run.version)
        if append := os.environ.get("STANDIN_APPEND"):
            fd = os.open(append, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, f"{run_id}\n".encode())
            finally:
                os.close(fd)
        time.sleep(float(os.environ.get("STANDIN_SLEEP", "0")))
        code = int(os.environ.get("STANDIN_EXIT", "0"))
        if code:
            return code
        client.set_flow_run_state(run_id, "Success")
    return 0


if __name__ == "__main__":
    sys.exit(main())
