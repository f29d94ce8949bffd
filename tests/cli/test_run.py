"""`headwater run FILE`: runs a flow file in-process with progress, exit code from the flow's state."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from headwater.cli import main

FLOW_FILE = '''
from headwater import Flow, Parameter, task

@task
def double(x):
    return 2 * x

@task
def check(y):
    if y > 100:
        raise ValueError(f"{y} is too big")
    return y

with Flow("cli-demo") as flow:
    check(double(Parameter("x", default=1)))

if __name__ == "__main__":
    raise SystemExit("the file's __main__ block must not run under headwater run")
'''


@pytest.fixture
def flow_file(tmp_path: Path) -> Path:
    path = tmp_path / "flow.py"
    path.write_text(FLOW_FILE)
    return path


def test_run_prints_progress_and_states(flow_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(flow_file), "-p", "x=21"]) == 0
    out = capsys.readouterr().out
    assert "check-1: Success" in out
    assert "42" in out
    assert "flow: Success" in out


def test_failing_flow_exits_1(flow_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(flow_file), "-p", "x=60"]) == 1
    assert "ValueError: 120 is too big" in capsys.readouterr().out


def test_unknown_parameter_exits_2(flow_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(flow_file), "-p", "y=1"]) == 2
    assert "has no parameter(s) 'y'" in capsys.readouterr().err


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tmp_path / "nope.py")]) == 2
    assert "nope.py" in capsys.readouterr().err


def test_bad_executor_path_exits_2(flow_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(flow_file), "--executor", "headwater.executors.Nope"]) == 2
    assert "does not resolve" in capsys.readouterr().err


def test_installed_entry_point_with_dask_executor(flow_file: Path, tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("headwater")
    assert exe.exists(), "the `headwater` console script is not installed in this environment"
    result = subprocess.run(
        [str(exe), "run", str(flow_file), "-p", "x=5",
         "--executor", "headwater.executors.LocalDaskExecutor", "--executor-kwargs", '{"num_workers": 2}'],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "HEADWATER__HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert "flow: Success" in result.stdout
    assert "check-1" in result.stdout
