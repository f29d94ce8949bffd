"""A flow that can't be loaded or doesn't match its registration fails the run, with the cause in its log."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from headwater.storage import Local
from headwater.storage.script import extract_flow_from_file

from .conftest import Deployed, Harness, unique
from .flows import ETL, SECRETIVE


def run_fails(harness: Harness, deployed: Deployed, *causes: str) -> str:
    """Run the process; check the run Failed, nothing ran, and an ERROR line and the message name the causes."""
    done = harness.execute(deployed.run_id)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    run = harness.client.get_flow_run(deployed.run_id)
    assert run.state == "Failed"
    lines = harness.log_lines(deployed.run_id)
    errors = [line for line in lines if line.startswith("ERROR headwater.execution")]
    assert len(errors) == 2, lines  # the cause, then how the run ended
    assert errors[1].startswith(f"ERROR headwater.execution [None] flow run {run.run_name} ended Failed: ")
    for cause in causes:
        assert cause in (run.state_message or ""), run.state_message
        assert cause in errors[0]
    assert harness.task_runs(deployed.run_id) == {}
    return errors[0]


def test_a_flow_missing_from_its_storage(harness: Harness) -> None:
    flow = extract_flow_from_file(path=harness.write(ETL))
    label = unique("label")
    flow.storage = Local(directory=str(harness.folder / "flows"), add_default_labels=False, labels=[label])
    registered = harness.client.register_flow_metadata(harness.project, flow.serialize())  # never stored
    run_id = harness.client.create_flow_run(registered.id)
    harness.claim(run_id, label)
    deployed = Deployed(flow, registered.id, run_id, label, Path(), flow.storage)

    line = run_fails(harness, deployed, "flow 'etl' is not in Local storage", "(known: none)")
    assert "loading flow 'etl' (version 1) from its storage failed: StorageError" in line


def test_a_deleted_storage_file(harness: Harness) -> None:
    deployed = harness.deploy(ETL)
    os.remove(deployed.storage.flows["etl"])

    run_fails(harness, deployed, "can't read flow file", "was it moved or deleted?")


def test_a_script_with_a_syntax_error(harness: Harness) -> None:
    deployed = harness.deploy(ETL, script=True)
    deployed.script.write_text("from headwater import Flow\n\ndef broken(:\n    pass\n")

    run_fails(harness, deployed, f"flow file {deployed.script} has a syntax error at line 3")


def test_a_payload_from_other_versions_that_fails_to_load(harness: Harness) -> None:
    deployed = harness.deploy(ETL)
    path = Path(deployed.storage.flows["etl"])
    document = json.loads(path.read_text())
    document["versions"] = {"python": "3.99.0", "headwater": "0.0.1", "cloudpickle": "0.1"}
    document["payload"] = base64.b64encode(b"\x80\x05\x95not a pickle").decode()
    path.write_text(json.dumps(document))

    run_fails(harness, deployed, "can't be unpickled", "it was written with other versions: python 3.99.0 (stored)")


def test_task_slugs_that_do_not_match_the_registered_version(harness: Harness) -> None:
    deployed = harness.deploy(ETL, script=True)
    source = deployed.script.read_text().replace(
        'load(flaky(extract(Parameter("x", default=3))))',
        'load(flaky(extract(Parameter("x", default=3))))\n    extract(1)',
    )
    deployed.script.write_text(source)

    run_fails(
        harness, deployed,
        "the flow in storage does not match its registered version 1 (in storage but not registered: 'extract-2')",
        "re-register the flow",
    )  # fmt: skip


def test_a_missing_secret(harness: Harness) -> None:
    deployed = harness.deploy(SECRETIVE, secrets=["S3_TOKEN"])

    run_fails(harness, deployed, "needs secret(s) 'S3_TOKEN'", "HEADWATER__CONTEXT__SECRETS__S3_TOKEN")
