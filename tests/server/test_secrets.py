"""The secrets resource over HTTP, on SQLite and PostgreSQL: CRUD, scopes, bad input, encryption at rest, keys."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text

from headwater.config.settings import ServerSettings
from headwater.schemas.secrets import MAX_VALUE_LENGTH
from headwater.server.database.engine import database_url
from headwater.server.serve import make_token

from .conftest import DATABASES, _database_url
from .live import LiveServer, free_port

VALUE = "hunter2-is-the-value"


def stored_rows(live: LiveServer) -> list[tuple[str, str, str]]:
    """The secrets table as the database holds it: (name, ciphertext, key_id)."""
    engine = create_engine(database_url(live.database_url, live.home))
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text("SELECT name, ciphertext, key_id FROM secrets"))]
    finally:
        engine.dispose()


def database_bytes(live: LiveServer) -> bytes:
    """Every byte of a SQLite database, with its WAL."""
    path = Path(live.database_url.removeprefix("sqlite:///"))
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


# -- create, read, list, delete ------------------------------------------------------


def test_put_creates_then_replaces_and_get_reads_case_insensitively(api: httpx.Client, unique: str) -> None:
    name = f"tok_{unique}"
    created = api.put(f"/secrets/{name}", json={"value": "first"})
    assert created.status_code == 201, created.text
    assert created.json()["name"] == name.upper() and "value" not in created.json()
    replaced = api.put(f"/secrets/{name.upper()}", json={"value": VALUE})
    assert replaced.status_code == 200 and replaced.json()["created"] == created.json()["created"]
    assert replaced.json()["updated"] > created.json()["updated"]

    read = api.get(f"/secrets/{name.title()}")

    assert read.status_code == 200
    assert read.json()["name"] == name.upper() and read.json()["value"] == VALUE


def test_list_names_and_times_never_values(api: httpx.Client, unique: str) -> None:
    names = [f"A_{unique}".upper(), f"B_{unique}".upper()]
    for name in names:
        assert api.put(f"/secrets/{name}", json={"value": VALUE}).status_code == 201

    listed = api.get("/secrets")

    assert listed.status_code == 200 and VALUE not in listed.text
    mine = [s for s in listed.json() if s["name"] in names]
    assert [s["name"] for s in mine] == names
    assert all(set(s) == {"name", "projects", "created", "updated"} for s in mine)


def test_delete_then_404(api: httpx.Client, unique: str) -> None:
    name = f"GONE_{unique}".upper()
    api.put(f"/secrets/{name}", json={"value": VALUE})

    assert api.delete(f"/secrets/{name.lower()}").status_code == 204

    for response in (api.get(f"/secrets/{name}"), api.delete(f"/secrets/{name}")):
        assert response.status_code == 404
        assert f"secret {name!r} not found" in response.json()["detail"]
        assert f"headwater create secret {name}" in response.json()["detail"]


# -- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bad-name", "two__underscores", "_lead", "trail_", "x" * 101, "dot.ted", "é", "a/b"])
def test_bad_names_are_422_naming_the_field(api: httpx.Client, name: str) -> None:
    for response in (
        api.put(f"/secrets/{name}", json={"value": VALUE}),
        api.get(f"/secrets/{name}"),
        api.delete(f"/secrets/{name}"),
    ):
        assert response.status_code == 422, response.text
        [error] = response.json()["detail"]
        assert error["loc"] == ["path", "name"]
        assert "secret name" in error["msg"]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"value": ""}, "value", "must not be empty"),
        ({"value": VALUE * (MAX_VALUE_LENGTH // len(VALUE) + 1)}, "value", f"at most {MAX_VALUE_LENGTH} characters"),
        ({"value": 12345}, "value", "valid string"),
        ({"value": ["hunter2-is-the-value"]}, "value", "valid string"),
        ({}, "value", "required"),
        ({"value": "ok", "extra": VALUE}, "extra", "not permitted"),
    ],
)
def test_bad_values_are_422_naming_the_field_never_the_value(
    api: httpx.Client, unique: str, body: dict[str, object], field: str, message: str
) -> None:
    response = api.put(f"/secrets/V_{unique}", json=body)

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", field] and message in error["msg"]
    assert VALUE not in response.text and "12345" not in response.text
    assert api.get(f"/secrets/V_{unique}").status_code == 404  # nothing half-written


def test_a_body_that_is_not_json_is_422(api: httpx.Client, unique: str) -> None:
    truncated = b'{"value": "hunter2-is-the-value"'
    response = api.put(f"/secrets/J_{unique}", content=truncated, headers={"content-type": "application/json"})

    assert response.status_code == 422 and VALUE not in response.text


def test_the_openapi_document_has_no_value_examples(api: httpx.Client) -> None:
    schemas = api.get("/openapi.json").json()["components"]["schemas"]

    for model in ("SecretWrite", "SecretValue", "SecretInfo"):
        assert "example" not in str(schemas[model])
    assert schemas["SecretWrite"]["properties"]["value"]["writeOnly"] is True


# -- encryption at rest ---------------------------------------------------------------


def test_values_are_encrypted_at_rest_with_the_home_key_file(
    server: LiveServer, api: httpx.Client, unique: str
) -> None:
    name = f"AT_REST_{unique}".upper()
    plain = f"plaintext-{unique}-value"
    assert api.put(f"/secrets/{name}", json={"value": plain}).status_code == 201

    rows = {row[0]: row for row in stored_rows(server)}
    _, ciphertext, key_id = rows[name]
    assert plain not in ciphertext and unique not in ciphertext
    if server.database_url.startswith("sqlite"):
        assert plain.encode() not in database_bytes(server)
    key_file = server.home / "secrets.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert Fernet(key_file.read_bytes().strip()).decrypt(ciphertext.encode()).decode() == plain
    assert key_file.read_text().strip() not in server.output() and plain not in server.output()
    assert len(key_id) == 16


# -- keys -----------------------------------------------------------------------------


@pytest.fixture(params=DATABASES)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL of each kind, for several servers in turn."""
    return _database_url(request.param, tmp_path, request)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """``servers(database, home_name, env)`` starts a server; all are stopped after the test."""
    started: list[LiveServer] = []

    def start(database: str, home: str, env: dict[str, str] | None = None) -> LiveServer:
        live = LiveServer(tmp_path / home, database, env=env)
        started.append(live)
        return live.start()

    yield start
    for live in started:
        live.stop()


def test_another_key_is_a_clear_error_a_value_set_again_reads_and_the_right_key_reads_again(
    database: str, servers: Callable[..., LiveServer]
) -> None:
    first = servers(database, "first")
    assert httpx.put(f"{first.api}/secrets/DB_PASSWORD", json={"value": VALUE}).status_code == 201
    httpx.put(f"{first.api}/secrets/TOKEN", json={"value": "old"})
    first.stop()
    other_key = Fernet.generate_key().decode()

    other = servers(database, "other", {"HEADWATER__SERVER__SECRETS_KEY": other_key})
    refused = httpx.get(f"{other.api}/secrets/DB_PASSWORD")

    assert refused.status_code == 409
    detail = refused.json()["detail"]
    assert "secret 'DB_PASSWORD' was encrypted with another key" in detail
    assert "start the server with the key the secrets were written with" in detail
    assert "server.secrets_key" in detail and "headwater create secret DB_PASSWORD" in detail
    assert VALUE not in refused.text and other_key not in detail
    assert [s["name"] for s in httpx.get(f"{other.api}/secrets").json()] == ["DB_PASSWORD", "TOKEN"]  # names list
    # a value set again under the new key reads
    assert httpx.get(f"{other.api}/secrets/TOKEN").status_code == 409
    assert httpx.put(f"{other.api}/secrets/TOKEN", json={"value": VALUE}).status_code == 200
    assert httpx.get(f"{other.api}/secrets/TOKEN").json()["value"] == VALUE
    other.stop()

    old_key = (first.home / "secrets.key").read_text().strip()
    right = servers(database, "right", {"HEADWATER__SERVER__SECRETS_KEY": old_key})
    assert httpx.get(f"{right.api}/secrets/DB_PASSWORD").json()["value"] == VALUE
    assert not (right.home / "secrets.key").exists()  # the setting wins: no key file made
    assert old_key not in right.output()


def test_a_damaged_value_is_a_clear_error(server: LiveServer, api: httpx.Client, unique: str) -> None:
    name = f"DAMAGED_{unique}".upper()
    api.put(f"/secrets/{name}", json={"value": VALUE})
    engine = create_engine(database_url(server.database_url, server.home))
    with engine.begin() as conn:
        conn.execute(text("UPDATE secrets SET ciphertext = :c WHERE name = :n"), {"c": "gAAAAAtampered", "n": name})
    engine.dispose()

    response = api.get(f"/secrets/{name}")

    assert response.status_code == 409 and "is damaged" in response.json()["detail"]
    assert f"headwater create secret {name}" in response.json()["detail"]


@pytest.mark.parametrize("key", ["not-a-key", "c2hvcnQ="])
def test_a_malformed_key_setting_refuses_to_start(tmp_path: Path, key: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "headwater.cli", "server", "start", "--port", str(free_port()),
         "--database", f"sqlite:///{tmp_path / 'x.db'}"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "HEADWATER__HOME": str(tmp_path), "HEADWATER__SERVER__SECRETS_KEY": key},
    )  # fmt: skip

    assert result.returncode == 2, result.stderr
    assert "server.secrets_key (HEADWATER__SERVER__SECRETS_KEY) is not a Fernet key" in result.stderr
    assert "Fernet.generate_key()" in result.stderr
    assert key not in result.stderr and "Traceback" not in result.stderr


def test_a_malformed_key_file_refuses_to_start(tmp_path: Path) -> None:
    (tmp_path / "secrets.key").write_text("garbage\n")
    result = subprocess.run(
        [sys.executable, "-m", "headwater.cli", "server", "start", "--port", str(free_port()),
         "--database", f"sqlite:///{tmp_path / 'x.db'}"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "HEADWATER__HOME": str(tmp_path)},
    )  # fmt: skip

    assert result.returncode == 2, result.stderr
    assert f"the key file {tmp_path / 'secrets.key'} is not a Fernet key" in result.stderr
    assert "restore the file" in result.stderr and "Traceback" not in result.stderr


# -- scopes ---------------------------------------------------------------------------


@pytest.fixture
def auth_server(database: str, tmp_path: Path) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    """A server with auth on, and a token of each scope made in its database before it starts."""
    home = tmp_path / "auth"
    home.mkdir()
    settings = ServerSettings(database_url=database)
    tokens = {scope: make_token(settings, home, f"{scope}-token", scope).token for scope in ("agent", "user", "admin")}
    live = LiveServer(home, database, env={"HEADWATER__SERVER__AUTH": "true"}).start()
    yield live, tokens
    live.stop()


def test_scopes(auth_server: tuple[LiveServer, dict[str, str]]) -> None:
    live, tokens = auth_server

    def as_(scope: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {tokens[scope]}"} if scope else {}
        return httpx.Client(base_url=live.api, headers=headers, timeout=30)

    with as_(None) as anonymous, as_("agent") as agent, as_("user") as user, as_("admin") as admin:
        assert anonymous.get("/secrets/GH").status_code == 401
        denied = agent.put("/secrets/GH", json={"value": VALUE})
        assert denied.status_code == 403 and "scope 'user'" in denied.json()["detail"]
        assert user.put("/secrets/GH", json={"value": VALUE}).status_code == 201
        assert admin.put("/secrets/GH2", json={"value": VALUE}).status_code == 201

        assert agent.get("/secrets/gh").json()["value"] == VALUE  # what a flow-run process does
        assert agent.get("/secrets").status_code == 403
        assert agent.delete("/secrets/GH").status_code == 403
        assert agent.get("/secrets/NOPE").status_code == 404

        assert [s["name"] for s in user.get("/secrets").json()] == ["GH", "GH2"]
        assert user.get("/secrets/GH").json()["value"] == VALUE
        assert user.delete("/secrets/GH").status_code == 204
        assert admin.delete("/secrets/GH2").status_code == 204
        assert user.get("/secrets").json() == []
    assert VALUE not in live.output()
