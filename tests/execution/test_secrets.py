"""The flow-run process resolves its storage's secrets before loading: the local setting, else the API.

Each test names a secret of its own (the server is shared by the session) and
reads what reached the run's context through the flow's log, which shows only
the value's length.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

from .conftest import Harness, unique

FLOW = """
import logging
from headwater import Flow, task
from headwater.engine.context import current_flow_run

@task
def use_secret():
    secret = current_flow_run().extra["secrets"][{name!r}]
    logging.getLogger("secretive").info("secret has %d characters: %r", len(secret.get_secret_value()), secret)

with Flow("secretive") as flow:
    use_secret()
"""


@pytest.fixture
def name(harness: Harness) -> Iterator[str]:
    """A secret name of this test's own; deleted from the API's store afterwards."""
    secret = unique("S").replace("-", "_").upper()
    yield secret
    if secret in {s.name for s in harness.client.list_secrets()}:
        harness.client.delete_secret(secret)


def test_a_secret_from_the_api_store(harness: Harness, name: str) -> None:
    harness.client.set_secret(name, "from-the-api-store")  # 18 characters
    deployed = harness.deploy(FLOW.format(name=name), secrets=[name])

    done = harness.execute(deployed.run_id)

    assert done.returncode == 0, done.stderr
    lines = harness.log_lines(deployed.run_id)
    assert any("secret has 18 characters: SecretStr('**********')" in line for line in lines), lines
    assert any(f"'{name}' from the API's secret store" in line for line in lines)
    assert not any("from-the-api-store" in line for line in lines)
    assert "from-the-api-store" not in done.stdout + done.stderr


def test_the_local_setting_wins_over_the_api_store(harness: Harness, name: str) -> None:
    harness.client.set_secret(name, "from-the-api-store")
    deployed = harness.deploy(FLOW.format(name=name), secrets=[name])

    done = harness.execute(deployed.run_id, **{f"HEADWATER__CONTEXT__SECRETS__{name.lower()}": "local"})

    assert done.returncode == 0, done.stderr
    lines = harness.log_lines(deployed.run_id)
    assert any("secret has 5 characters" in line for line in lines), lines
    assert any(f"'{name}' from the local settings" in line for line in lines)


def test_a_secret_in_neither_fails_the_run_naming_both_ways(harness: Harness, name: str) -> None:
    deployed = harness.deploy(FLOW.format(name=name), secrets=[name, "not-api-shaped"])

    done = harness.execute(deployed.run_id)

    assert done.returncode == 1, done.stderr
    run = harness.client.get_flow_run(deployed.run_id)
    message = run.state_message or ""
    assert run.state == "Failed"
    assert f"needs secret(s) '{name}', 'not-api-shaped', which are set neither where the flow runs nor" in message
    assert f"`headwater create secret {name}`" in message and f"HEADWATER__CONTEXT__SECRETS__{name}" in message
    assert "'not-api-shaped' can't be kept in the API's secret store" in message
    assert harness.task_runs(deployed.run_id) == {}


def test_a_secret_the_server_cannot_decrypt_fails_the_run_naming_it(harness: Harness, name: str) -> None:
    harness.client.set_secret(name, "written-under-another-key")
    engine = create_engine(harness.server.database_url)
    with engine.begin() as conn:  # as if the database had been restored next to another key
        conn.execute(text("UPDATE secrets SET key_id = '0000000000000000' WHERE name = :n"), {"n": name})
    engine.dispose()
    deployed = harness.deploy(FLOW.format(name=name), secrets=[name])

    done = harness.execute(deployed.run_id)

    assert done.returncode == 1, done.stderr
    message = harness.client.get_flow_run(deployed.run_id).state_message or ""
    expected = f"can't read secret '{name}' from the API's secret store: secret '{name}' was encrypted with another key"
    assert expected in message, message
    assert "written-under-another-key" not in message + done.stdout + done.stderr
