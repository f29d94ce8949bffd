"""The reporter's parts against a live server, in this process: batching, an unreachable API,
the version lock of the final state, and a run moved by someone else while it runs."""

from __future__ import annotations

import time
from typing import Any

import pytest

from headwater.client import Client
from headwater.core.state import Failed, Success
from headwater.engine.handlers import CancelRun
from headwater.engine.reporting import ApiReporter
from headwater.engine.shipping import Shipper
from headwater.environments.execution import load_and_run_flow
from headwater.server.process import free_port

from .conftest import Harness
from .flows import ETL


def running_run(harness: Harness) -> tuple[str, int]:
    """A claimed run moved to Running, as the flow-run process does; (id, version)."""
    deployed = harness.deploy(ETL)
    run = harness.client.get_flow_run(deployed.run_id)
    moved = harness.client.set_flow_run_state(run.id, "Running", version=run.version)
    return run.id, moved.version


def reporter_for(harness: Harness, run_id: str, version: int, **kwargs: Any) -> ApiReporter:
    options: dict[str, Any] = {"heartbeat_interval": None, "cancel_check_interval": 0.05, "log_batch_interval": 0.05}
    return ApiReporter(harness.client, run_id, version, **{**options, **kwargs})


def test_a_shipper_keeps_what_it_could_not_send_and_sends_it_later(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id, _ = running_run(harness)
    with Client(f"http://127.0.0.1:{free_port()}", tries=1) as nowhere:
        shipper = Shipper(nowhere, run_id, interval=60)
        shipper.add_task(("extract-1", "Running", None, None, time.time(), None))
        shipper.add_log({"timestamp": time.time(), "level": "INFO", "message": "kept", "name": "t", "task_slug": None})
        assert shipper.flush() is False
    assert "can't send task-run states" in capsys.readouterr().err

    shipper.api = harness.client
    assert shipper.flush() is True
    assert [t.state for t in harness.client.get_task_runs(run_id)] == ["Running"]
    assert [r.message for r in harness.client.get_flow_run_logs(run_id)] == ["kept"]


def test_a_shipper_drops_what_the_api_refuses(harness: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    shipper = Shipper(harness.client, "no-such-run", interval=60)
    shipper.add_task(("extract-1", "Running", None, None, time.time(), None))

    assert shipper.flush() is True  # refused (404): nothing is kept to retry
    assert "the API refused 1 task-run states of flow run no-such-run; dropped" in capsys.readouterr().err


def test_the_final_state_follows_a_cancel_that_came_meanwhile(harness: Harness) -> None:
    run_id, version = running_run(harness)
    reporter = reporter_for(harness, run_id, version, cancel_check_interval=60)  # it won't look by itself
    harness.client.cancel_flow_run(run_id)  # now Cancelling, at a newer version

    final = reporter.finish(Failed("a task failed"))

    assert final.is_cancelled()
    assert final.message == "the flow run was cancelled (a task failed)"
    run = harness.client.get_flow_run(run_id)
    assert (run.state, run.state_message) == ("Cancelled", final.message)


def test_a_run_that_succeeded_despite_a_late_cancel_ends_success(harness: Harness) -> None:
    run_id, version = running_run(harness)
    reporter = reporter_for(harness, run_id, version, cancel_check_interval=60)
    harness.client.cancel_flow_run(run_id)

    assert reporter.finish(Success("all reference tasks succeeded")).is_successful()
    assert harness.client.get_flow_run(run_id).state == "Success"


def test_a_run_moved_elsewhere_stops_its_tasks_and_is_not_reported_over(harness: Harness) -> None:
    run_id, version = running_run(harness)
    reporter = reporter_for(harness, run_id, version).start()
    try:
        harness.client.set_flow_run_state(run_id, "Failed", message="failed by an operator")
        harness.wait_for(lambda: reporter.taken is not None, what="the reporter to notice")
        with pytest.raises(CancelRun, match="moved to Failed elsewhere"):
            reporter.on_task_state(None, _Task("load-1"), _running())  # type: ignore[arg-type]
        reporter.finish(Success("done"))
    finally:
        reporter.close()
    run = harness.client.get_flow_run(run_id)
    assert (run.state, run.state_message) == ("Failed", "failed by an operator")


def test_heartbeats_are_sent_at_the_interval(harness: Harness) -> None:
    run_id, version = running_run(harness)
    reporter = reporter_for(harness, run_id, version, heartbeat_interval=0.05).start()
    try:
        harness.wait_for(lambda: reporter.heartbeats >= 3, timeout=5, what="three heartbeats")
    finally:
        reporter.close()
    run = harness.client.get_flow_run(run_id)
    assert run.heartbeat is not None and run.start_time is not None and run.heartbeat > run.start_time


def test_load_and_run_flow_in_this_process(harness: Harness, settings_env: Any) -> None:
    deployed = harness.deploy(ETL, parameters={"x": 2})
    settings_env(CONTEXT__FLOW_RUN_ID=deployed.run_id, RUNNER__LOG_BATCH_INTERVAL="0.05")

    state = load_and_run_flow(client=harness.client)

    assert state.is_successful()
    assert harness.client.get_flow_run(deployed.run_id).state == "Success"
    assert "INFO etl.tasks [load-1] loaded 2 rows" in harness.log_lines(deployed.run_id)


class _Task:
    def __init__(self, slug: str) -> None:
        self.slug = self.name = slug


def _running() -> Any:
    from headwater.core.state import Running

    return Running()
