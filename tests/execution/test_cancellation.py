"""Cancelling a run: mid-run it stops within seconds and ends Cancelled; before it starts, nothing runs."""

from __future__ import annotations

import time

from .conftest import Harness
from .flows import ETL, SLOW_CHAIN


def test_a_run_cancelled_mid_run_stops_soon_and_ends_cancelled(harness: Harness) -> None:
    deployed = harness.deploy(SLOW_CHAIN)
    process = harness.start(deployed.run_id)
    try:
        harness.wait_for(
            lambda: (
                harness.task_runs(deployed.run_id).get("step-1", None) is not None
                and harness.task_runs(deployed.run_id)["step-1"].state == "Success"
            ),
            what="the first task to finish",
        )
        harness.client.cancel_flow_run(deployed.run_id)
        cancelled_at = time.monotonic()
        _, stderr = process.communicate(timeout=15)
        stopped_after = time.monotonic() - cancelled_at
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert stopped_after < 4, stopped_after  # at most the running task (0.5 s) + a state check or two
    assert process.returncode == 1, stderr
    run = harness.client.get_flow_run(deployed.run_id)
    assert run.state == "Cancelled", run
    tasks = harness.task_runs(deployed.run_id)
    states = [tasks[f"step-{n}"].state if f"step-{n}" in tasks else "-" for n in range(1, 7)]
    finished = states.count("Success")
    assert 1 <= finished <= 3, states  # the task running at the cancel may finish
    assert states[finished:] == ["Cancelled"] * (6 - finished), states  # the rest never started
    lines = harness.log_lines(deployed.run_id)
    assert sum("step done" in line for line in lines) == finished
    assert any("WARNING headwater.reporting [None] the flow run was cancelled" in line for line in lines)


def test_a_run_cancelled_before_the_process_starts_runs_nothing(harness: Harness) -> None:
    deployed = harness.deploy(ETL, claim=False)
    assert harness.client.cancel_flow_run(deployed.run_id).state == "Cancelled"  # Scheduled → Cancelled

    done = harness.execute(deployed.run_id)

    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    run = harness.client.get_flow_run(deployed.run_id)
    assert (run.state, run.state_message) == ("Cancelled", "cancelled on request")
    assert harness.task_runs(deployed.run_id) == {}
    assert any("the run is already Cancelled (cancelled on request); nothing ran" in line
               for line in harness.log_lines(deployed.run_id))  # fmt: skip


def test_a_claimed_run_cancelling_before_the_process_starts_ends_cancelled(harness: Harness) -> None:
    deployed = harness.deploy(ETL)
    assert harness.client.cancel_flow_run(deployed.run_id).state == "Cancelling"  # Submitted → Cancelling

    done = harness.execute(deployed.run_id)

    assert done.returncode == 1
    run = harness.client.get_flow_run(deployed.run_id)
    assert (run.state, run.state_message) == ("Cancelled", "the flow run was cancelled before it started; nothing ran")
    assert run.start_time is None
    assert harness.task_runs(deployed.run_id) == {}


def test_a_process_for_a_run_no_agent_claimed_refuses_to_run_it(harness: Harness) -> None:
    deployed = harness.deploy(ETL, claim=False)

    done = harness.execute(deployed.run_id)

    assert done.returncode == 2
    assert "is Scheduled, not Submitted: no agent has claimed it" in done.stderr
    assert harness.client.get_flow_run(deployed.run_id).state == "Scheduled"
