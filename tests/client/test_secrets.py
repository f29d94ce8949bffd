"""``Client.set_secret``/``get_secret``/``list_secrets``/``delete_secret`` against a live server, typed errors."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from pydantic import SecretStr

from headwater.client import AuthError, Client, NotFoundError, ValidationError

from .live import LiveServer, unique

VALUE = "client-side-secret-value"


def secret_name() -> str:
    return unique("s").replace("-", "_").upper()


def test_set_get_list_delete(client: Client) -> None:
    name = secret_name()

    info = client.set_secret(name.lower(), VALUE)
    value = client.get_secret(name)

    assert info.name == name
    assert isinstance(value, SecretStr) and value.get_secret_value() == VALUE
    assert VALUE not in repr(value) and VALUE not in repr(info)
    assert name in [s.name for s in client.list_secrets()]
    client.delete_secret(name)
    assert name not in [s.name for s in client.list_secrets()]


def test_a_secretstr_value_and_replacing(client: Client) -> None:
    name = secret_name()
    first = client.set_secret(name, SecretStr("one"))

    second = client.set_secret(name, SecretStr(VALUE))

    assert second.created == first.created and second.updated > first.updated
    assert client.get_secret(name).get_secret_value() == VALUE


def test_a_missing_secret_is_not_found(client: Client) -> None:
    name = secret_name()
    with pytest.raises(NotFoundError, match=f"secret '{name}' not found; set it with `headwater create secret"):
        client.get_secret(name)
    with pytest.raises(NotFoundError):
        client.delete_secret(name)


def test_a_bad_name_is_a_validation_error_naming_the_field(client: Client) -> None:
    with pytest.raises(ValidationError, match="letters, digits and single underscores") as info:
        client.set_secret("no-dashes", VALUE)
    assert info.value.fields == ["name"]
    with pytest.raises(ValidationError):
        client.get_secret("a/b")  # quoted into one path segment: still a name, and a bad one


def test_an_empty_value_is_a_validation_error_without_the_value(client: Client) -> None:
    with pytest.raises(ValidationError, match="must not be empty") as info:
        client.set_secret(secret_name(), "")
    assert info.value.fields == ["value"]
    with pytest.raises(ValidationError, match="at most 65536 characters") as too_long:
        client.set_secret(secret_name(), VALUE * 5000)
    assert VALUE not in str(too_long.value)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    server = LiveServer(tmp_path_factory.mktemp("secrets-auth"), env={"HEADWATER__SERVER__AUTH": "true"})
    user, agent = server.create_token("user"), server.create_token("agent")
    server.start()
    try:
        yield SimpleNamespace(server=server, user=user, agent=agent)
    finally:
        server.stop()


def test_an_agent_token_reads_but_cannot_write_list_or_delete(secured: SimpleNamespace) -> None:
    name = secret_name()
    with Client(secured.server.url, api_token=secured.user) as user:
        user.set_secret(name, VALUE)
    with Client(secured.server.url, api_token=secured.agent) as agent:
        assert agent.get_secret(name).get_secret_value() == VALUE
        for attempt in (lambda: agent.set_secret(name, "x"), agent.list_secrets, lambda: agent.delete_secret(name)):
            with pytest.raises(AuthError, match="needs scope 'user'") as info:
                attempt()
            assert info.value.status_code == 403
    with Client(secured.server.url, api_token=secured.user) as user:
        assert user.get_secret(name).get_secret_value() == VALUE  # untouched
