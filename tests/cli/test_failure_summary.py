"""A failed run's summary names the task that failed first and its error, then the reference tasks.

``headwater run FILE`` prints it (and an agent-run flow reports the same message
as the run's state message, which ``runs ls``/``run --watch`` show).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from headwater.cli import main

FLOW_FILE = """
import time
from headwater import Flow, task

@task
def extract():
    raise ValueError("row 3 has no id")

@task
def slow_check():
    time.sleep(0.2)
    raise RuntimeError("checked too late")

@task
def transform(rows):
    return rows

@task
def archive(rows):
    return rows

with Flow("etl-fails") as flow:
    archive(transform(extract()))
    slow_check()
    flow.set_reference_tasks([flow.get_tasks(name="archive")[0]])
"""


def test_summary_names_the_first_failure_and_its_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "flow.py"
    path.write_text(FLOW_FILE)
    assert main(["run", str(path)]) == 1
    out = capsys.readouterr().out
    summary = next(line for line in out.splitlines() if line.startswith("flow: "))
    assert summary == (
        "flow: Failed (extract-1 failed: ValueError: row 3 has no id; reference task(s) did not succeed: archive-1)"
    ), out
