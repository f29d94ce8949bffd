"""The flow-run process end to end: ``python -m headwater execute flow-run`` against a live server."""

from __future__ import annotations

from .conftest import Harness
from .flows import ETL, FAILING, HANDS_OFF, PROCESSES, SECRETIVE, SHORT


def test_a_run_succeeds_and_reports_task_runs_logs_and_heartbeats(harness: Harness) -> None:
    deployed = harness.deploy(ETL, parameters={"x": 5})

    done = harness.execute(deployed.run_id)

    assert done.returncode == 0, done.stderr
    run = harness.client.get_flow_run(deployed.run_id)
    assert run.state == "Success"
    assert run.state_message == "all reference tasks succeeded"
    assert run.start_time is not None and run.end_time is not None
    assert run.heartbeat is not None and run.heartbeat > run.start_time  # a heartbeat after Running
    tasks = harness.task_runs(deployed.run_id)
    assert set(tasks) == {"x", "extract-1", "flaky-1", "load-1"}
    assert {t.state for t in tasks.values()} == {"Success"}
    assert tasks["flaky-1"].attempts == 2
    assert tasks["extract-1"].attempts == 1
    for t in tasks.values():
        assert t.start_time is not None and t.end_time is not None and t.start_time <= t.end_time
    lines = harness.log_lines(deployed.run_id)
    assert "INFO etl.tasks [extract-1] extracted 5 rows" in lines  # the task's own logger, with its slug
    assert "INFO etl.tasks [load-1] loaded 5 rows" in lines
    assert any(line.startswith("WARNING headwater.task_runner [flaky-1] attempt 1 of 2 failed") for line in lines)
    assert any("flow run finished Success" in line for line in lines)
    assert not any("httpx" in line or "HTTP Request" in line for line in lines)  # reporting's own calls stay out


def test_a_failing_task_fails_the_run_with_its_message(harness: Harness) -> None:
    deployed = harness.deploy(FAILING)

    done = harness.execute(deployed.run_id)

    assert done.returncode == 1
    assert "flow run ended Failed" in done.stderr
    run = harness.client.get_flow_run(deployed.run_id)
    assert run.state == "Failed"
    assert "load-1" in (run.state_message or "")
    tasks = harness.task_runs(deployed.run_id)
    assert tasks["extract-1"].state == "Success"
    assert tasks["transform-1"].state == "Failed"
    assert tasks["transform-1"].state_message == "ValueError: bad row 7"
    assert tasks["load-1"].state == "TriggerFailed"
    assert any("ERROR headwater.task_runner [transform-1] failed: ValueError: bad row 7" in line
               for line in harness.log_lines(deployed.run_id))  # fmt: skip


def test_no_flow_run_id_exits_2_with_the_reason(harness: Harness) -> None:
    done = harness.execute(None)

    assert done.returncode == 2
    assert "HEADWATER__CONTEXT__FLOW_RUN_ID is not set" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_unknown_flow_run_exits_2(harness: Harness) -> None:
    done = harness.execute("no-such-run")

    assert done.returncode == 2
    assert "not found" in done.stderr


def test_heartbeat_off_sends_none(harness: Harness) -> None:
    deployed = harness.deploy(SHORT)

    done = harness.execute(deployed.run_id, HEADWATER__RUNNER__HEARTBEAT_INTERVAL="off")

    assert done.returncode == 0, done.stderr
    run = harness.client.get_flow_run(deployed.run_id)
    assert run.state == "Success"
    assert run.heartbeat == run.start_time  # only the move to Running stamped it


def test_tasks_in_worker_processes_are_reported_with_their_logs(harness: Harness) -> None:
    deployed = harness.deploy(PROCESSES)

    done = harness.execute(deployed.run_id)

    assert done.returncode == 0, done.stderr
    assert harness.client.get_flow_run(deployed.run_id).state == "Success"
    tasks = harness.task_runs(deployed.run_id)
    assert {slug: t.state for slug, t in tasks.items()} == {
        "square-1": "Success", "square-2": "Success", "square-3": "Success", "List-1": "Success",
        "total-1": "Success",
    }  # fmt: skip
    assert all(t.attempts == 1 for slug, t in tasks.items() if slug.startswith("square"))
    lines = harness.log_lines(deployed.run_id)
    for n in (1, 2, 3):
        assert any(line.startswith("INFO workers [square-") and f"squared {n} in a worker" in line for line in lines)


def test_storage_secrets_reach_the_run_but_never_its_log(harness: Harness) -> None:
    deployed = harness.deploy(SECRETIVE, secrets=["S3_TOKEN"])

    done = harness.execute(deployed.run_id, HEADWATER__CONTEXT__SECRETS__S3_TOKEN="hunter2-value")

    assert done.returncode == 0, done.stderr
    lines = harness.log_lines(deployed.run_id)
    assert any("secret has 13 characters: SecretStr('**********')" in line for line in lines)
    assert not any("hunter2" in line for line in lines)
    assert "hunter2" not in done.stderr + done.stdout


def test_an_environment_can_hand_the_run_to_a_second_hop(harness: Harness) -> None:
    deployed = harness.deploy(HANDS_OFF)

    first = harness.execute(deployed.run_id)

    assert first.returncode == 0, first.stderr
    assert "setup ran" in first.stdout and "second hop started" in first.stdout
    assert harness.client.get_flow_run(deployed.run_id).state == "Running"  # left for the second hop
    assert harness.task_runs(deployed.run_id) == {}

    second = harness.execute(deployed.run_id, HEADWATER__CONTEXT__SECOND_HOP="true")

    assert second.returncode == 0, second.stderr
    assert "setup ran" not in second.stdout  # the second hop runs the flow: environment.run(flow)
    assert harness.client.get_flow_run(deployed.run_id).state == "Success"
    assert harness.task_runs(deployed.run_id)["work-1"].state == "Success"


def test_a_second_process_for_a_running_run_refuses_it(harness: Harness) -> None:
    deployed = harness.deploy(HANDS_OFF)
    assert harness.execute(deployed.run_id).returncode == 0  # now Running

    again = harness.execute(deployed.run_id)

    assert again.returncode == 2
    assert "is already Running: another flow-run process runs it" in again.stderr
    assert harness.client.get_flow_run(deployed.run_id).state == "Running"
