"""The pieces without a server: the engine's CancelRun, secrets, the task check, the runner settings."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from pydantic import SecretStr

from headwater import Flow, task
from headwater.config import ConfigError
from headwater.core.state import State
from headwater.engine.handlers import CancelRun, StateHandler
from headwater.environments.execution import ExecutionError, check_tasks, resolve_secrets
from headwater.executors import LocalExecutor
from headwater.schemas.flows import FlowMetadata


@task
def first() -> int:
    return 1


@task
def second(x: int) -> int:
    return x + 1


@task
def independent() -> int:
    return 3


def chain() -> Flow:
    with Flow("chain") as flow:
        second(first())
        independent()
    return flow


class CancelAfter(StateHandler):
    """Lets ``n`` tasks start, then cancels the rest."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.started: list[str] = []

    def on_task_state(self, context: Any, task: Any, state: State) -> None:
        if state.is_running():
            if len(self.started) >= self.n:
                raise CancelRun("stop now")
            self.started.append(task.slug)


def test_cancel_run_from_a_handler_stops_tasks_from_starting() -> None:
    handler = CancelAfter(1)
    state = chain().run(executor=LocalExecutor(), state_handlers=[handler])

    by_slug = {t.slug: s for t, s in state.result.items()}
    assert handler.started == ["first-1"]
    assert by_slug["first-1"].is_successful()
    assert by_slug["second-1"].is_cancelled()  # its upstream was fine, but it never started
    assert by_slug["independent-1"].is_cancelled() and by_slug["independent-1"].message == "stop now"
    assert by_slug["independent-1"].attempts == 0
    assert state.is_cancelled()
    assert state.message == "the flow run was cancelled: 2 task(s) did not start"


def test_downstream_of_a_cancelled_task_is_cancelled_not_trigger_failed() -> None:
    state = chain().run(executor=LocalExecutor(), state_handlers=[CancelAfter(0)])

    by_slug = {t.slug: s for t, s in state.result.items()}
    assert by_slug["first-1"].message == "stop now"
    assert by_slug["second-1"].is_cancelled() and by_slug["second-1"].message == "an upstream task was cancelled"


def test_cancel_run_on_a_final_state_is_only_logged(caplog: pytest.LogCaptureFixture) -> None:
    class Odd(StateHandler):
        def on_task_state(self, context: Any, task: Any, state: State) -> None:
            if state.is_finished():
                raise CancelRun("too late")

    engine_logger = logging.getLogger("headwater.engine")
    engine_logger.addHandler(caplog.handler)  # the 'headwater' logger may not propagate to the root
    try:
        with caplog.at_level(logging.WARNING, logger="headwater.engine"):
            state = chain().run(executor=LocalExecutor(), state_handlers=[Odd()])
    finally:
        engine_logger.removeHandler(caplog.handler)

    assert state.is_successful()
    assert "raised CancelRun on a Success state; ignored" in caplog.text


def test_secrets_resolve_by_name_then_case_insensitively() -> None:
    available = {"github_token": SecretStr("value-1"), "Exact": SecretStr("value-2")}

    found = resolve_secrets(["GITHUB_TOKEN", "Exact"], available)

    assert {k: v.get_secret_value() for k, v in found.items()} == {"GITHUB_TOKEN": "value-1", "Exact": "value-2"}
    assert "value" not in repr(found)


def test_a_missing_secret_names_it_and_the_variable() -> None:
    expected = r"needs secret\(s\) 'S3_KEY', 'other'.*HEADWATER__CONTEXT__SECRETS__S3_KEY"
    with pytest.raises(ExecutionError, match=expected):
        resolve_secrets(["S3_KEY", "other"], {"unrelated": SecretStr("x")})


def test_task_check_names_the_slugs_on_each_side() -> None:
    flow = chain()
    metadata = FlowMetadata.model_validate(flow.serialize())
    check_tasks(flow, metadata, 3)  # the same flow: fine

    with Flow("chain") as other:
        second(first())
        second(independent())
    with pytest.raises(ExecutionError) as info:
        check_tasks(other, metadata, 3)
    assert str(info.value) == (
        "the flow in storage does not match its registered version 3 (in storage but not registered: "
        "'second-2'); re-register the flow"
    )


def test_runner_settings(settings_env: Any) -> None:
    runner = settings_env().runner
    assert (runner.heartbeat_interval, runner.cancel_check_interval, runner.log_batch_interval) == (10.0, 2.0, 1.0)
    assert settings_env(RUNNER__HEARTBEAT_INTERVAL="off").runner.heartbeat_interval == "off"
    assert settings_env(RUNNER__HEARTBEAT_INTERVAL="2.5").runner.heartbeat_interval == 2.5
    with pytest.raises(ConfigError, match=r"HEADWATER__RUNNER__HEARTBEAT_INTERVAL.*greater than 0, or 'off'"):
        settings_env(RUNNER__HEARTBEAT_INTERVAL="0")
