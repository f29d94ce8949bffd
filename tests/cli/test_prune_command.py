"""``headwater runs prune --older-than 30d`` against a live server (issue 15): dry runs, the prompt and
``--yes``, refusals, and durations it does not take. Old runs are written straight into the server's
database (``server/test_retention.py``'s ``History``): the API can't make a run that finished a month ago.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine

from client.live import LiveServer
from headwater.cli import main
from headwater.client import Client
from headwater.server.database.engine import create_db_engine, database_url
from server.test_retention import History


@pytest.fixture
def history(server: LiveServer, client: Client) -> Iterator[History]:
    engine: Engine = create_db_engine(database_url(server.database_url, server.home))
    yield History(engine)
    engine.dispose()


@pytest.mark.parametrize(
    ("given", "says"),
    [("0", "more than 0"), ("-5d", "more than 0"), ("soon", "not a duration"), ("3w", "not a duration"),
     ("inf", "finite")],
)  # fmt: skip
def test_durations_it_refuses(given: str, says: str, client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["runs", "prune", f"--older-than={given}"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--older-than" in err and says in err and "30d" in err, err


def test_dry_run_then_yes(history: History, capsys: pytest.CaptureFixture[str]) -> None:
    old = [history.run("Success", 40), history.run("Failed", 41), history.run("Cancelled", 90)]
    new = history.run("Success", 1)
    assert main(["runs", "prune", "--older-than", "30d", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "Would delete 3 finished run(s)" in out and "6 task run(s), 9 log line(s) and 6 state(s)" in out, out
    assert set(old) <= history.stored()["flow_runs"]

    # not on a terminal, and no --yes: nothing is deleted, and it says how to go on
    assert main(["runs", "prune", "--older-than", "30d"]) == 2
    err = capsys.readouterr().err
    assert "pass --yes" in err and "3 finished run(s)" in err, err
    assert set(old) <= history.stored()["flow_runs"]

    assert main(["runs", "prune", "--older-than", "720h", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "Deleted 3 finished run(s) older than 30d" in out, out
    assert not set(old) & history.stored()["flow_runs"] and new in history.stored()["flow_runs"]
    assert not set(old) & history.stored()["logs"]

    assert main(["runs", "prune", "--older-than", "30d", "--yes"]) == 0
    assert "Nothing to prune" in capsys.readouterr().out


def test_the_prompt_on_a_terminal(history: History, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    old = history.run("Success", 50)
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    assert main(["runs", "prune", "--older-than", "30d"]) == 1
    assert "Nothing deleted" in capsys.readouterr().out and old in history.stored()["flow_runs"]
    monkeypatch.setattr("builtins.input", lambda prompt: "y")
    assert main(["runs", "prune", "--older-than", "30d"]) == 0
    assert old not in history.stored()["flow_runs"]


def test_a_window_past_an_unfinished_run_is_refused(history: History, capsys: pytest.CaptureFixture[str]) -> None:
    finished = history.run("Success", 60)
    stuck = history.run("Running", 45)
    for extra in (["--dry-run"], ["--yes"]):
        assert main(["runs", "prune", "--older-than", "30d", *extra]) == 2
        err = capsys.readouterr().err
        assert stuck in err and "unfinished" in err and "--older-than 46d" in err, err
    assert {finished, stuck} <= history.stored()["flow_runs"]
    assert main(["runs", "prune", "--older-than", "46d", "--yes"]) == 0
    assert finished not in history.stored()["flow_runs"] and stuck in history.stored()["flow_runs"]
