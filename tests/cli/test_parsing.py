"""The CLI's argument handling, without a server: --version, misspelt options, bad option values."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from headwater import __version__
from headwater.cli import main


def exit_code(args: list[str]) -> int:
    """``main(args)``'s exit code, whether it returns it or argparse exits."""
    try:
        return main(args)
    except SystemExit as exc:
        return int(exc.code or 0)


def test_version_option_in_a_real_process(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "headwater.cli", "--version"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "HEADWATER__HOME": str(tmp_path)},
    )  # fmt: skip
    assert (done.returncode, done.stdout, done.stderr) == (0, f"headwater {__version__}\n", "")


def test_version_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(["version"]) == 0
    assert capsys.readouterr().out == f"headwater {__version__}\n"


@pytest.mark.parametrize(
    ("args", "usage", "hint"),
    [
        (["run", "flow.py", "--labels", "dev"], "usage: headwater run ", "did you mean --label?"),
        (["get", "flow-runs", "--flw", "etl"], "usage: headwater get flow-runs ", "did you mean --flow?"),
        (["runs", "ls", "--projetc", "p"], "usage: headwater runs ls ", "did you mean --project?"),
        (["logs", "r1", "--levle", "info"], "usage: headwater logs ", "did you mean --level?"),
    ],
)
def test_misspelt_option_shows_the_command_usage_and_the_nearest_option(
    args: list[str], usage: str, hint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert exit_code(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(usage), err
    assert f"unrecognized arguments: {args[-2]} {args[-1]} ({hint})" in err


def test_unknown_option_with_nothing_near_gets_no_guess(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(["runs", "ls", "--zzzzzz"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: headwater runs ls ") and "did you mean" not in err


def test_executor_kwargs_bad_json_names_the_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for value in ("{bad json", '{"num_workers": 2'):
        assert exit_code(["run", str(tmp_path / "f.py"), "--executor", "local-dask", "--executor-kwargs", value]) == 2
        err = capsys.readouterr().err
        assert "argument --executor-kwargs:" in err and f"{value!r} is not JSON: " in err, err
        assert "line 1 column" in err  # the JSON error itself
    assert exit_code(["run", "f.py", "--executor", "local-dask", "--executor-kwargs", "[1, 2]"]) == 2
    assert "must be a JSON object" in capsys.readouterr().err


def test_executor_kwargs_without_executor_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "f.py"
    path.write_text("from headwater import Flow\nflow = Flow('x')\n")
    assert exit_code(["run", str(path), "--executor-kwargs", '{"num_workers": 2}']) == 2
    assert "--executor-kwargs needs --executor" in capsys.readouterr().err
    assert exit_code(["run", "--project", "p", "--name", "x", "--executor-kwargs", "{}"]) == 2
    assert "are for `headwater run FILE`" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["get", "flow-runs"], ["runs", "ls"]])
def test_unknown_state_is_refused_listing_the_states(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code([*command, "--state", "Bogus"]) == 2
    err = capsys.readouterr().err
    assert "argument --state: unknown flow-run state 'Bogus'" in err
    assert "Scheduled, Submitted, Running, Cancelling, Success, Failed, Cancelled" in err


def test_bad_log_level(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(["logs", "r1", "--level", "loud"]) == 2
    assert "unknown log level 'loud': the levels are DEBUG, INFO, WARNING, ERROR, CRITICAL" in capsys.readouterr().err
