"""The one secret lookup of every storage (``storage/secrets.py``) and the ``credential_secrets`` hook.

GitHub storage reads a token through it from a fake GitHub API that requires one
(``services_github.py``), over real HTTP.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from headwater.storage import Local, Memory, StorageError, storage_from_spec
from headwater.storage.azure import Azure
from headwater.storage.git import Git
from headwater.storage.github import GitHub
from headwater.storage.secrets import find_secret, forget, provide, secret_value

from .contract import check_runs, flow_script
from .services_github import Repository, serve_github

TOKEN = "private-repo-token"
SHA = "c" * 40


@pytest.fixture(autouse=True)
def _nothing_provided() -> Iterator[None]:
    forget()
    yield
    forget()


@pytest.fixture(scope="module")
def private_api() -> Iterator[str]:
    repository = Repository("acme/private", {"HEAD": SHA}, {(SHA, "flows.py"): flow_script()}, TOKEN, True)
    with serve_github(repository) as url:
        yield url


def test_provided_values_come_first_then_the_setting(settings_env: Callable[..., Any]) -> None:
    settings_env(CONTEXT__SECRETS__TOKEN="from-setting", CONTEXT__SECRETS__ONLY_LOCAL="local")

    provide({"token": SecretStr("provided")})

    assert secret_value("TOKEN", "x") == "provided"
    assert secret_value("only_local", "x") == "local"
    forget(["TOKEN"])
    assert secret_value("Token", "x") == "from-setting"


def test_a_secret_set_nowhere_names_both_ways_to_set_it(settings_env: Callable[..., Any]) -> None:
    settings_env()

    with pytest.raises(StorageError) as info:
        secret_value("gh_token", "GitHub storage acme/x:flows.py at HEAD", "its token")

    message = str(info.value)
    assert message.startswith("GitHub storage acme/x:flows.py at HEAD needs the secret 'gh_token' (its token)")
    assert "`headwater create secret GH_TOKEN`" in message and "HEADWATER__CONTEXT__SECRETS__GH_TOKEN" in message
    assert find_secret("gh_token") is None


def test_credential_secrets_name_what_the_arguments_refer_to() -> None:
    assert GitHub("a/b", "f.py", access_token_secret="GITHUB_TOKEN").credential_secrets() == ["GITHUB_TOKEN"]
    assert Git("f.py", "o/r", git_token_secret_name="GIT_TOKEN").credential_secrets() == ["GIT_TOKEN"]
    assert Azure("c", connection_string_secret="AZ").credential_secrets() == ["AZ"]
    for storage in (GitHub("a/b", "f.py"), Git("f.py", "o/r"), Azure("c"), Memory(), Local(secrets=["X"])):
        assert storage.credential_secrets() == []


def test_credential_secrets_survive_the_spec() -> None:
    storage = GitHub("a/b", "f.py", access_token_secret="GITHUB_TOKEN", secrets=["OTHER"])

    rebuilt = storage_from_spec(storage.serialize())

    assert rebuilt.credential_secrets() == ["GITHUB_TOKEN"] and rebuilt.secrets == ["OTHER"]


def test_github_reads_a_private_repo_with_a_provided_token(private_api: str, settings_env: Callable[..., Any]) -> None:
    settings_env()
    storage = GitHub("acme/private", "flows.py", base_url=private_api, access_token_secret="GITHUB_TOKEN")
    storage.flows["etl"] = "flows.py"

    provide({"GITHUB_TOKEN": SecretStr(TOKEN)})

    check_runs(storage.get_flow("etl"))


def test_github_without_a_token_is_refused_by_a_private_api(private_api: str) -> None:
    storage = GitHub("acme/private", "flows.py", base_url=private_api)

    with pytest.raises(StorageError, match=r"refused the credentials \(401\).*this API needs a token"):
        storage.get_flow("flows.py")
