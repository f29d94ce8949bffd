"""Logging with run context, state handlers, and the context a running task sees."""

from __future__ import annotations

import logging
import re

import pytest

from headwater import Flow, Parameter, task
from headwater.engine import StateHandler
from headwater.engine.context import current, current_flow_run
from headwater.executors import LocalDaskExecutor, LocalExecutor


@task
def chatty():
    logging.getLogger("headwater.user").info("hello from inside the task")
    return 1


@task(max_retries=1)
def broken():
    raise ValueError("broken on purpose")


# -- logging ----------------------------------------------------------------------------


def test_logger_is_headwater_with_its_own_handler():
    Flow("empty").run(executor=LocalExecutor())
    logger = logging.getLogger("headwater")
    assert logger.propagate is False
    assert [h.get_name() for h in logger.handlers].count("headwater-console") == 1
    # running again does not add a second handler
    Flow("empty").run(executor=LocalExecutor())
    assert [h.get_name() for h in logger.handlers].count("headwater-console") == 1


@pytest.mark.parametrize("executor", [LocalExecutor, lambda: LocalDaskExecutor("threads")])
def test_log_lines_carry_the_run_name_and_task_slug(capsys, executor):
    with Flow("logs") as flow:
        chatty()
        broken()

    flow.run(executor=executor(), run_name="nightly-run")

    err = capsys.readouterr().err
    lines = err.splitlines()

    def line_with(text):
        found = [line for line in lines if text in line]
        assert found, f"no log line with {text!r} in:\n{err}"
        return found[0]

    assert "nightly-run [chatty-1]" in line_with("hello from inside the task")
    assert "nightly-run [broken-1]" in line_with("attempt 1 of 2 failed")
    assert "ERROR" in line_with("failed: ValueError: broken on purpose")
    # flow-level lines carry the run name and no task
    starts = line_with("starts")
    assert "nightly-run" in starts and "[" not in starts.split("nightly-run")[1]
    assert "nightly-run" in line_with("finished Failed")


def test_default_run_name_is_the_flow_name_and_a_short_id(capsys):
    seen = []

    @task
    def note():
        seen.append(current().flow_run.flow_run_name)

    with Flow("nightly") as flow:
        note()

    flow.run(executor=LocalExecutor())

    (name,) = seen
    assert re.fullmatch(r"nightly-[0-9a-f]{8}", name)
    assert name in capsys.readouterr().err


@pytest.fixture
def logging_settings(settings_env):
    """Set ``HEADWATER__LOGGING__...`` and apply it with configure_logging(); defaults after."""
    from headwater.config.settings import LoggingSettings
    from headwater.engine.logs import configure_logging

    def apply(**values):
        settings_env(**{f"LOGGING__{k}": v for k, v in values.items()})
        configure_logging()

    yield apply
    defaults = LoggingSettings()
    configure_logging(level=defaults.level, fmt=defaults.format)


def test_task_events_are_debug_and_hidden_at_info(capsys, logging_settings):
    logging_settings(LEVEL="INFO")
    with Flow("quiet") as flow:
        chatty()
    flow.run(executor=LocalExecutor(), run_name="quiet-run")
    assert "attempt 1 starts" not in capsys.readouterr().err

    logging_settings(LEVEL="DEBUG")
    flow.run(executor=LocalExecutor(), run_name="loud-run")
    err = capsys.readouterr().err
    assert re.search(r"DEBUG .*loud-run \[chatty-1\].*attempt 1 starts", err), err


def test_log_format_from_settings(capsys, logging_settings):
    logging_settings(FORMAT="HW%(flow_run)s%(task)s :: %(message)s")
    with Flow("fmt") as flow:
        chatty()

    flow.run(executor=LocalExecutor(), run_name="fmt-run")

    assert "HW fmt-run [chatty-1] :: hello from inside the task" in capsys.readouterr().err.splitlines()


def test_logging_outside_a_run_has_empty_context(capsys):
    Flow("empty").run(executor=LocalExecutor())
    logging.getLogger("headwater.user").warning("between runs")
    line = next(line for line in capsys.readouterr().err.splitlines() if "between runs" in line)
    assert "[" not in line.split(" - ")[-1]


# -- state handlers --------------------------------------------------------------------


class Recorder(StateHandler):
    def __init__(self):
        self.events = []

    def on_flow_state(self, context, state):
        self.events.append(("flow", state.name, context.flow_run_name))

    def on_task_state(self, context, task, state):
        self.events.append((task.slug, state.name, state.message if state.is_finished() else None))


def test_state_handlers_see_running_retrying_and_final_states():
    recorder = Recorder()
    with Flow("handled") as flow:
        b = broken()
        after = chatty(upstream_tasks=[b])

    flow.run(executor=LocalExecutor(), state_handlers=[recorder], run_name="h-run")

    events = recorder.events
    assert events[:5] == [
        ("flow", "Running", "h-run"),
        ("broken-1", "Running", None),
        ("broken-1", "Retrying", None),
        ("broken-1", "Running", None),
        ("broken-1", "Failed", "ValueError: broken on purpose"),
    ]
    slug, name, message = events[5]
    assert (slug, name) == (after.slug, "TriggerFailed")
    assert "all_successful" in message
    assert events[6:] == [("flow", "Failed", "h-run")]


def test_handlers_only_override_what_they_need():
    class FlowOnly(StateHandler):
        def __init__(self):
            self.states = []

        def on_flow_state(self, context, state):
            self.states.append(state)

    handler = FlowOnly()
    with Flow("f") as flow:
        chatty()

    final = flow.run(executor=LocalExecutor(), state_handlers=[handler])

    assert [s.name for s in handler.states] == ["Running", "Success"]
    assert handler.states[-1] is final


def test_a_failing_handler_does_not_break_the_run(capsys):
    class Broken(StateHandler):
        def on_task_state(self, context, task, state):
            raise RuntimeError("handler bug")

        def on_flow_state(self, context, state):
            raise RuntimeError("handler bug")

    recorder = Recorder()
    with Flow("f") as flow:
        t = chatty()

    state = flow.run(executor=LocalExecutor(), state_handlers=[Broken(), recorder])

    assert state.is_successful()
    assert state.result[t].result == 1
    assert ("chatty-1", "Success", None) in [(s, n, None) for s, n, _ in recorder.events]
    assert "handler bug" in capsys.readouterr().err


def test_handlers_on_threads_executor():
    recorder = Recorder()
    with Flow("f") as flow:
        chatty()
        chatty()

    flow.run(executor=LocalDaskExecutor("threads"), state_handlers=[recorder])

    finals = sorted(e[:2] for e in recorder.events if e[0] != "flow" and e[1] != "Running")
    assert finals == [("chatty-1", "Success"), ("chatty-2", "Success")]


# -- context ------------------------------------------------------------------------------


def test_a_running_task_sees_its_context():
    seen = {}

    @task(max_retries=1)
    def look(x):
        ctx = current()
        seen.update(
            slug=ctx.task.slug,
            attempt=ctx.attempt,
            flow=ctx.flow_run.flow_name,
            run=ctx.flow_run.flow_run_name,
            run_id=ctx.flow_run.flow_run_id,
            parameters=ctx.flow_run.parameters,
            extra=ctx.flow_run.extra,
            same_run=current_flow_run() is ctx.flow_run,
        )
        if ctx.attempt == 1:
            raise RuntimeError("once more")
        return x

    with Flow("ctx") as flow:
        look(Parameter("x"))

    flow.run(
        parameters={"x": 3},
        executor=LocalExecutor(),
        run_name="ctx-run",
        flow_run_id="run-123",
        context={"owner": "data-team"},
    )

    assert seen == {
        "slug": "look-1",
        "attempt": 2,
        "flow": "ctx",
        "run": "ctx-run",
        "run_id": "run-123",
        "parameters": {"x": 3},
        "extra": {"owner": "data-team"},
        "same_run": True,
    }


def test_no_context_outside_a_run():
    Flow("empty").run(executor=LocalExecutor())
    assert current() is None
    assert current_flow_run() is None
