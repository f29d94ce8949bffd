"""A stand-in for ``headwater execute flow-run``: a real process that reports through the real client.

Reads the run from ``HEADWATER__CONTEXT__FLOW_RUN_ID`` and the server from
``HEADWATER__API__URL`` as the real entrypoint does, moves the run to Running,
then Success. The tests steer it with variables the agent passes on:

* ``STANDIN_DUMP_ENV=path``: write its environment there as JSON first;
* ``STANDIN_APPEND=path``: append the run id to that file (one ``O_APPEND`` write);
* ``STANDIN_SLEEP=seconds``: stay Running that long;
* ``STANDIN_EXIT=code``: exit with that code without reporting a final state.
"""

from __future__ import annotations

import json
import os
import sys
import time

from headwater.client import Client


def main() -> int:
    run_id = os.environ["HEADWATER__CONTEXT__FLOW_RUN_ID"]
    if dump := os.environ.get("STANDIN_DUMP_ENV"):
        with open(dump, "w") as out:
            json.dump(dict(os.environ), out)
    with Client() as client:
        client.set_flow_run_state(run_id, "Running")
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
