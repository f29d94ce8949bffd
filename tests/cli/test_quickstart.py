"""``headwater quickstart`` (``make demo``): it ends with the run's web UI address; ``--keep`` keeps it up."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time

import httpx


def test_quickstart_prints_the_runs_ui_address_and_keep_serves_it_until_interrupted() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "headwater", "quickstart", "--keep", "--timeout", "240"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,  # its server and agent are in its group: a failed test stops them all
    )  # fmt: skip
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 300
    try:
        for line in process.stdout:
            lines.append(line)
            if "press Ctrl-C to stop it" in line or time.monotonic() > deadline:
                break
        output = "".join(lines)
        assert "press Ctrl-C to stop it" in output, output
        assert re.search(r"flow run quickstart \([0-9a-f-]+\): Success", output), output
        found = re.search(r"See the run in the browser: (http://127\.0\.0\.1:\d+)/#/runs/([0-9a-f-]+)", output)
        assert found, output
        base, run_id = found.groups()
        page = httpx.get(f"{base}/", timeout=10)  # the web UI's page, served by the kept server
        assert page.status_code == 200 and "<html" in page.text.lower()
        run = httpx.get(f"{base}/api/v1/runs/{run_id}", timeout=10).json()
        assert run["state"] == "Success"
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
        assert process.returncode == 0, output + rest
        assert "stopping the server" in rest
        kept = re.search(r"\(kept (.+)\)", rest)
        assert kept and os.path.isdir(kept.group(1)), rest
        try:
            httpx.get(f"{base}/api/v1/health", timeout=2)
            raise AssertionError("the server still answers after Ctrl-C")
        except httpx.TransportError:
            pass
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # whatever is left of its group (nothing, when it passed)
        process.wait()
