"""Schemathesis against the server's own OpenAPI document: no input makes it answer 5xx."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from .live import LiveServer


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_no_server_errors(fresh_server: Callable[..., LiveServer], kind: str) -> None:
    schemathesis = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert schemathesis, "schemathesis is part of the test extra; reinstall with `pip install -e .[test]`"
    live = fresh_server(kind, env={"HEADWATER__SERVER__MAX_CLAIM_WAIT": "0.5"})
    result = subprocess.run(
        [schemathesis, "run", f"{live.api}/openapi.json", "--checks", "not_a_server_error",
         "--phases", "examples,coverage,fuzzing", "--max-examples", "4", "--seed", "7", "--no-color"],
        capture_output=True, text=True, timeout=600,
    )
    summary = result.stdout[-3000:]
    assert result.returncode == 0, summary + "\n--- server log ---\n" + live.output()[-3000:]
    assert " passed" in summary and "generated" in summary
