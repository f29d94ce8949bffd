"""Git storage against real repositories: a bare repo in tmp over ``file://`` and ``git daemon``.

The module-scoped ``remote`` fixture makes a bare repository with a flow file on
branch ``main``, a second commit on branch ``dev`` and tag ``v1``; ``daemon``
serves its folder with ``git daemon`` on a free port of 127.0.0.1.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from headwater import Flow
from headwater.storage import Storage, StorageError, storage_from_spec
from headwater.storage.git import Git
from headwater.storage.script import extract_flow_from_file

from .contract import StorageContract, check_runs, flow_script

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git command")


@dataclass(frozen=True)
class Remote:
    root: Path  # the folder git daemon serves
    url: str  # file:// URL of the bare repo
    main_sha: str  # commit of main (and tag v1)
    dev_sha: str  # commit of dev (adds flows/dev.py)


def _git(*args: str, cwd: Path | None = None) -> str:
    env_args = ["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"]
    return subprocess.run(
        ["git", *env_args, *args], cwd=cwd, check=True, capture_output=True, text=True, timeout=30
    ).stdout.strip()


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Remote:
    root = tmp_path_factory.mktemp("git-remote")
    bare = root / "flows.git"
    _git("init", "--quiet", "--bare", str(bare))
    work = root / "work"
    _git("init", "--quiet", str(work))
    (work / "flows.py").write_text(flow_script())
    _git("add", ".", cwd=work)
    _git("commit", "--quiet", "-m", "flows", cwd=work)
    main_sha = _git("rev-parse", "HEAD", cwd=work)
    _git("tag", "v1", cwd=work)
    _git("checkout", "--quiet", "-b", "dev", cwd=work)
    (work / "flows").mkdir()
    (work / "flows" / "dev.py").write_text(flow_script(("dev-flow",)))
    _git("add", ".", cwd=work)
    _git("commit", "--quiet", "-m", "dev flow", cwd=work)
    dev_sha = _git("rev-parse", "HEAD", cwd=work)
    _git("push", "--quiet", str(bare), "main", "dev", "v1", cwd=work)
    _git("symbolic-ref", "HEAD", "refs/heads/main", cwd=bare)
    return Remote(root=root, url=bare.as_uri(), main_sha=main_sha, dev_sha=dev_sha)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def daemon(remote: Remote) -> Iterator[str]:
    """``git://127.0.0.1:PORT/flows.git``, served by ``git daemon`` until the module ends."""
    port = _free_port()
    proc = subprocess.Popen(
        [
            "git", "daemon", "--reuseaddr", f"--base-path={remote.root}", "--export-all",
            "--listen=127.0.0.1", f"--port={port}", str(remote.root),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"git daemon did not start on port {port}")
                time.sleep(0.05)
        yield f"git://127.0.0.1:{port}/flows.git"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# -- the contract, over file:// and git:// --------------------------------------------


class _GitContract(StorageContract):
    stored_as_script = True

    @pytest.fixture(autouse=True)
    def _url(self, remote: Remote) -> None:
        self.repo_url = remote.url

    def make_storage(self, tmp_path: Path, **kwargs: Any) -> Storage:
        return Git(flow_path="flows.py", repo=self.repo_url, branch_name="main", **kwargs)

    def make_flow(self, tmp_path: Path, name: str) -> Flow:
        path = tmp_path / "local-copy.py"
        path.write_text(flow_script())
        return extract_flow_from_file(path=path, flow_name=name)


class TestGitFile(_GitContract):
    pass


class TestGitDaemon(_GitContract):
    @pytest.fixture(autouse=True)
    def _url(self, daemon: str) -> None:
        self.repo_url = daemon


# -- refs ------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["file", "daemon"])
@pytest.mark.parametrize("ref", ["branch", "tag", "commit", "default"])
def test_each_ref_kind(request: pytest.FixtureRequest, remote: Remote, transport: str, ref: str) -> None:
    url = remote.url if transport == "file" else request.getfixturevalue("daemon")
    refs: dict[str, dict[str, Any]] = {
        "branch": {"branch_name": "main"},
        "tag": {"tag": "v1"},
        "commit": {"commit": remote.main_sha},
    }
    storage = Git(flow_path="flows.py", repo=url, **refs.get(ref, {}))
    storage.add_flow(extract_flow_from_file(contents=flow_script(), flow_name="etl"))

    check_runs(storage.get_flow("etl"))


@pytest.mark.parametrize("ref", [{"branch_name": "dev"}, {"commit": "DEV"}])
def test_a_file_only_on_another_ref(remote: Remote, ref: dict[str, Any]) -> None:
    ref = {k: remote.dev_sha if v == "DEV" else v for k, v in ref.items()}
    storage = Git(flow_path="flows/dev.py", repo=remote.url, **ref)
    storage.flows["dev-flow"] = "flows/dev.py"

    assert storage.get_flow("dev-flow").name == "dev-flow"
    with pytest.raises(StorageError, match=r"'flows/dev.py' is not in .* at branch 'main'"):
        Git(flow_path="flows/dev.py", repo=remote.url, branch_name="main").get_flow("flows/dev.py")


@pytest.mark.parametrize(
    ("ref", "named"),
    [({"branch_name": "nope"}, "branch 'nope'"), ({"tag": "v9"}, "tag 'v9'"), ({"commit": "0" * 40}, "commit '0000")],
)
def test_missing_ref_names_the_ref_and_the_repo(remote: Remote, ref: dict[str, Any], named: str) -> None:
    storage = Git(flow_path="flows.py", repo=remote.url, **ref)

    with pytest.raises(StorageError, match=named) as info:
        storage.get_flow("flows.py")
    assert remote.url in str(info.value)
    assert "does not exist" in str(info.value)


def test_missing_path_names_the_path_and_the_ref(remote: Remote, daemon: str) -> None:
    storage = Git(flow_path="nope/etl.py", repo=daemon, tag="v1")
    storage.flows["etl"] = "nope/etl.py"

    with pytest.raises(StorageError, match=r"'nope/etl.py' is not in git://.* at tag 'v1'; was it committed"):
        storage.get_flow("etl")


def test_unreachable_repo_is_a_clear_error() -> None:
    storage = Git(flow_path="flows.py", repo=f"git://127.0.0.1:{_free_port()}/flows.git")

    with pytest.raises(StorageError, match=r"can't reach repository git://127\.0\.0\.1:\d+/flows.git"):
        storage.get_flow("flows.py")


def test_no_temporary_clone_is_left(remote: Remote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    storage = Git(flow_path="flows.py", repo=remote.url)
    storage.flows["etl"] = "flows.py"

    storage.get_flow("etl")
    with pytest.raises(StorageError):
        Git(flow_path="nope.py", repo=remote.url).get_flow("nope.py")

    assert list(tmp_path.iterdir()) == []


# -- tokens ----------------------------------------------------------------------------


def test_the_token_goes_into_the_https_url_only(settings_env: Any, caplog: pytest.LogCaptureFixture) -> None:
    token = "s3cr3t-T0KEN"
    settings_env(CONTEXT__SECRETS__GIT_TOKEN=token)
    storage = Git(
        flow_path="flows.py", repo=f"https://127.0.0.1:{_free_port()}/o/r.git", git_token_secret_name="GIT_TOKEN"
    )
    storage.flows["etl"] = "flows.py"

    url, scrub = storage._secret_url()
    assert url.startswith(f"https://{token}@127.0.0.1:") and scrub == token
    with caplog.at_level("DEBUG", logger="headwater.storage"), pytest.raises(StorageError) as info:
        storage.get_flow("etl")

    assert "can't reach repository https://127.0.0.1" in str(info.value)
    for text in (str(info.value), repr(info.value.__cause__), str(storage.serialize()), repr(storage), caplog.text):
        assert token not in text
    assert storage.serialize()["git_token_secret_name"] == "GIT_TOKEN"


def test_the_token_is_scrubbed_from_gits_output(settings_env: Any) -> None:
    # A username:token pair in the URL: git echoes the URL it can't find, with the token.
    token = "tok3n/with:chars"
    settings_env(CONTEXT__SECRETS__GIT_TOKEN=token)
    storage = Git(flow_path="f.py", repo="http://127.0.0.1:1/x.git", git_token_secret_name="git_token")

    with pytest.raises(StorageError) as info:
        storage.get_flow("f.py")
    assert "tok3n" not in str(info.value)


def test_a_missing_token_secret_says_how_to_set_it(settings_env: Any) -> None:
    settings_env()
    storage = Git(flow_path="f.py", repo="o/r", git_token_secret_name="GIT_TOKEN")

    with pytest.raises(StorageError, match="HEADWATER__CONTEXT__SECRETS__GIT_TOKEN"):
        storage.get_flow("f.py")


# -- construction ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "url"),
    [
        ({"repo": "o/r"}, "https://github.com/o/r.git"),
        ({"repo": "o/r", "repo_host": "gitlab.example.com"}, "https://gitlab.example.com/o/r.git"),
        ({"repo": "o/r.git", "use_ssh": True}, "git@github.com:o/r.git"),
        ({"repo": "file:///srv/r.git", "use_ssh": True}, "file:///srv/r.git"),
    ],
)
def test_repo_urls(kwargs: dict[str, Any], url: str) -> None:
    assert Git(flow_path="f.py", **kwargs).url == url


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"branch_name": "a", "tag": "b"}, "at most one of branch_name, tag and commit"),
        ({"flow_path": "/abs.py"}, "relative to the repository's root"),
        ({"flow_path": "../x.py"}, "relative to the repository's root"),
        ({"clone_depth": 0}, "clone_depth must be a positive integer"),
        ({"repo": ""}, "needs repo="),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(StorageError, match=message):
        Git(**{"flow_path": "f.py", "repo": "o/r", **kwargs})


def test_spec_round_trip_keeps_the_ref() -> None:
    storage = Git(flow_path="f.py", repo="o/r", commit="abc", clone_depth=3, use_ssh=True)

    rebuilt = storage_from_spec(storage.serialize())

    assert isinstance(rebuilt, Git)
    assert rebuilt.serialize() == storage.serialize()
    assert rebuilt.commit == "abc" and rebuilt.stored_as_script
