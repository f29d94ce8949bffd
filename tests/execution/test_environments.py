"""Environments through a real flow-run process: the documented signatures, and the container one-liner."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .conftest import Harness
from .flows import DOCUMENTED_ENVIRONMENT, ETL

ONE_LINER = "import headwater; headwater.environments.execution.load_and_run_flow()"


def test_a_custom_environment_with_the_documented_signatures_runs_the_run(harness: Harness, tmp_path: Path) -> None:
    record = tmp_path / "record.txt"
    deployed = harness.deploy(DOCUMENTED_ENVIRONMENT.format(record=str(record)), script=True, parameters={"x": 21})

    done = harness.execute(deployed.run_id)

    assert done.returncode == 0, done.stderr
    run = harness.client.get_flow_run(deployed.run_id)
    assert run.state == "Success", run.state_message  # execute() returned None: the run's state is the flow's
    assert record.read_text().split("\n")[:-1] == ["setup", "execute", "run", "on_start", "double 21", "on_exit"]
    assert harness.task_runs(deployed.run_id)["double-1"].state == "Success"
    spec = harness.client.get_flow(deployed.flow_id).metadata.environment
    assert spec is not None and spec["kind"].endswith(".Documented") and spec["labels"] == []


def test_the_containers_one_liner_reaches_load_and_run_flow_from_import_headwater(harness: Harness) -> None:
    deployed = harness.deploy(ETL, parameters={"x": 3})

    done = subprocess.run(
        [sys.executable, "-c", ONE_LINER], env=harness.env(deployed.run_id), capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stderr
    assert harness.client.get_flow_run(deployed.run_id).state == "Success"


def test_import_headwater_alone_keeps_the_subpackages_lazy() -> None:
    program = (
        "import sys, headwater\n"
        "assert 'headwater.environments' not in sys.modules\n"
        "assert headwater.environments.execution.load_and_run_flow.__name__ == 'load_and_run_flow'\n"
        "assert headwater.executors.LocalExecutor.__name__ == 'LocalExecutor'\n"
        "try:\n"
        "    headwater.nothing_here\n"
        "except AttributeError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "module 'headwater' has no attribute 'nothing_here'"
