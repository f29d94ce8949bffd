"""GitHub storage against a fake GitHub API: ``http.server`` on 127.0.0.1 in a thread.

The fake (``services_github.py``) implements exactly the two endpoints GitHub
storage calls, over real HTTP: ``GET /repos/{repo}/commits/{ref}`` and
``GET /repos/{repo}/contents/{path}?ref=SHA``, and answers 401 to any
Authorization other than ``Bearer good-token``.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from headwater import Flow
from headwater.storage import Storage, StorageError, storage_from_spec
from headwater.storage.github import GitHub
from headwater.storage.script import extract_flow_from_file

from .contract import StorageContract, check_runs, flow_script
from .services_github import FakeGitHub, Repository, serve_github

TOKEN = "good-token"
REPO = "acme/flows"
SHAS = {"HEAD": "a" * 40, "main": "a" * 40, "v1": "a" * 40, "dev": "b" * 40}
FILES = {
    ("a" * 40, "flows.py"): flow_script(),
    ("b" * 40, "flows.py"): flow_script(),
    ("b" * 40, "dev/dev.py"): flow_script(("dev-flow",)),
}


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    with serve_github(Repository(REPO, SHAS, FILES, TOKEN)) as url:
        yield url


@pytest.fixture
def token(settings_env: Any) -> str:
    settings_env(CONTEXT__SECRETS__GH_TOKEN=TOKEN, CONTEXT__SECRETS__BAD_TOKEN="wrong-token")
    return TOKEN


# -- the contract ----------------------------------------------------------------------


class TestGitHub(StorageContract):
    stored_as_script = True

    @pytest.fixture(autouse=True)
    def _api(self, api: str) -> None:
        self.base_url = api

    def make_storage(self, tmp_path: Path, **kwargs: Any) -> Storage:
        return GitHub(repo=REPO, path="flows.py", ref="main", base_url=self.base_url, **kwargs)

    def make_flow(self, tmp_path: Path, name: str) -> Flow:
        return extract_flow_from_file(contents=flow_script(), flow_name=name)


# -- refs, tokens, errors --------------------------------------------------------------


@pytest.mark.parametrize("ref", [None, "main", "v1", "dev", "b" * 40])
def test_each_ref_reads_the_file_at_its_commit(api: str, token: str, ref: str | None) -> None:
    FakeGitHub.requests.clear()
    storage = GitHub(repo=REPO, path="flows.py", ref=ref, base_url=api, access_token_secret="GH_TOKEN")
    storage.flows["etl"] = "flows.py"

    check_runs(storage.get_flow("etl"))

    sha = SHAS.get(ref or "HEAD", ref)
    assert [path for path, _ in FakeGitHub.requests] == [
        f"/repos/{REPO}/commits/{ref or 'HEAD'}",
        f"/repos/{REPO}/contents/flows.py?ref={sha}",
    ]
    assert {auth for _, auth in FakeGitHub.requests} == {f"Bearer {TOKEN}"}


def test_a_file_only_on_another_ref(api: str) -> None:
    storage = GitHub(repo=REPO, path="dev/dev.py", ref="dev", base_url=api)
    storage.flows["dev-flow"] = "dev/dev.py"

    assert storage.get_flow("dev-flow").name == "dev-flow"


def test_missing_ref(api: str) -> None:
    storage = GitHub(repo=REPO, path="flows.py", ref="nope", base_url=api)

    with pytest.raises(StorageError, match=r"ref 'nope' is not in GitHub repo acme/flows .*check ref="):
        storage.get_flow("flows.py")


def test_missing_repo(api: str) -> None:
    storage = GitHub(repo="acme/nope", path="flows.py", base_url=api)

    with pytest.raises(StorageError, match=r"or the repo does not exist \(reading 'flows.py'\).*access_token_secret="):
        storage.get_flow("flows.py")


def test_missing_path(api: str) -> None:
    storage = GitHub(repo=REPO, path="nope.py", ref="v1", base_url=api)

    with pytest.raises(
        StorageError, match=r"'nope.py' is not in GitHub repo acme/flows at ref 'v1' \(commit aaaaaaaaaaaa\)"
    ):
        storage.get_flow("nope.py")


def test_a_wrong_token_is_a_401_that_never_shows_the_token(
    api: str, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    storage = GitHub(repo=REPO, path="flows.py", ref="main", base_url=api, access_token_secret="BAD_TOKEN")

    with caplog.at_level("DEBUG"), pytest.raises(StorageError, match=r"refused the credentials \(401\)") as info:
        storage.get_flow("flows.py")

    assert "check the token in secret 'BAD_TOKEN'" in str(info.value)
    for text in (str(info.value), str(storage.serialize()), repr(storage), caplog.text):
        assert "wrong-token" not in text
    assert FakeGitHub.requests[-1][1] == "Bearer wrong-token"  # it was sent, just never shown


def test_unreachable_api() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    storage = GitHub(repo=REPO, path="flows.py", base_url=f"http://127.0.0.1:{port}")

    with pytest.raises(StorageError, match=r"can't reach the GitHub API at http://127.0.0.1:\d+ .*check base_url="):
        storage.get_flow("flows.py")


def test_a_missing_token_secret_says_how_to_set_it(api: str, settings_env: Any) -> None:
    settings_env()
    storage = GitHub(repo=REPO, path="flows.py", base_url=api, access_token_secret="GH_TOKEN")

    with pytest.raises(StorageError, match="HEADWATER__CONTEXT__SECRETS__GH_TOKEN"):
        storage.get_flow("flows.py")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"repo": "acme"}, "repo='owner/name'"), ({"repo": "a/b/c"}, "repo='owner/name'"), ({"path": "/"}, "needs path=")],
)
def test_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(StorageError, match=message):
        GitHub(**{"repo": REPO, "path": "flows.py", **kwargs})


def test_spec_round_trip() -> None:
    storage = GitHub(repo=REPO, path="flows.py", ref="v1", access_token_secret="GH_TOKEN", base_url="https://x/api/v3")

    rebuilt = storage_from_spec(json.loads(json.dumps(storage.serialize())))

    assert isinstance(rebuilt, GitHub) and rebuilt.serialize() == storage.serialize()
    assert rebuilt.api == "https://x/api/v3" and rebuilt.stored_as_script
