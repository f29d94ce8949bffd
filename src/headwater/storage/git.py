"""Git storage: a flow's ``.py`` file in a git repository, cloned where the flow loads.

Nothing is pushed: ``add_flow`` records the flow's name → ``flow_path``; the
user commits and pushes the file. ``get_flow`` shallow-clones one ref (a
branch, a tag or a commit) into a temporary folder with the ``git`` command,
runs the file (``script.py``) and deletes the folder. A token, when the repo
needs one, is read from a secret (``secrets.py``) and lives only in the URL handed to git; it is
scrubbed from git's output. ``github.py`` reads single files through GitHub's
API instead. The contract is ``base.py``; the docs are ``docs/storage-git.md``.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from headwater.core.flow import Flow
from headwater.storage.base import Storage
from headwater.storage.errors import StorageError
from headwater.storage.secrets import secret_value

logger = logging.getLogger("headwater.storage")

#: seconds one git command may take before it is stopped.
GIT_TIMEOUT = 120.0

# git's words for each failure, matched (lower-cased) in its stderr.
_UNREACHABLE = (
    "unable to connect",
    "could not resolve host",
    "connection refused",
    "failed to connect",
    "timed out",
    "does not appear to be a git repository",
    "could not read from remote repository",
    "repository not found",
    "not found",
)
_AUTH = ("authentication failed", "could not read username", "could not read password", "error: 401", "error: 403")


class Git(Storage):
    """Loads a flow from a ``.py`` file in a git repository (always script mode).

    Args:
        flow_path: the flow file's path inside the repository, e.g. ``"flows/etl.py"``.
        repo: a clone URL (``https://…``, ``git@…``, ``file:///…``, ``git://…``) or
            ``"owner/name"`` on ``repo_host``.
        repo_host: host of an ``"owner/name"`` repo; default ``github.com``.
        branch_name: clone this branch.
        tag: clone this tag.
        commit: fetch this commit (a full SHA). At most one of the three; none
            means the repository's default branch.
        clone_depth: how much history to fetch (1: just the ref's commit).
        use_ssh: an ``"owner/name"`` repo is cloned as ``git@host:owner/name.git``.
        git_token_secret_name: the secret holding an https token; it is put in
            the clone URL in memory only.
        secrets: names of secrets flows kept here need.
        labels: labels for the flows' runs.
        add_default_labels: kept for symmetry; Git has no default labels.
    """

    kind: ClassVar[str] = "git"
    missing_hint: ClassVar[str] = (
        "add it with storage.add_flow(flow) (flow.register() does this), after committing and pushing its file"
    )

    def __init__(
        self,
        flow_path: str,
        repo: str,
        repo_host: str | None = None,
        branch_name: str | None = None,
        tag: str | None = None,
        commit: str | None = None,
        clone_depth: int = 1,
        use_ssh: bool = False,
        git_token_secret_name: str | None = None,
        *,
        secrets: Iterable[str] | None = None,
        labels: Iterable[str] | None = None,
        add_default_labels: bool = True,
    ) -> None:
        super().__init__(secrets=secrets, labels=labels, add_default_labels=add_default_labels, stored_as_script=True)
        if not isinstance(flow_path, str) or not flow_path.strip():
            raise StorageError(f"Git storage needs flow_path=, the flow file's path in the repo, not {flow_path!r}")
        if Path(flow_path).is_absolute() or ".." in Path(flow_path).parts:
            raise StorageError(
                f"Git storage flow_path {flow_path!r} must be relative to the repository's root, like 'flows/etl.py'"
            )
        if not isinstance(repo, str) or not repo.strip():
            raise StorageError(f"Git storage needs repo=, a clone URL or 'owner/name', not {repo!r}")
        refs = {k: v for k, v in (("branch_name", branch_name), ("tag", tag), ("commit", commit)) if v is not None}
        if len(refs) > 1:
            raise StorageError(f"Git storage takes at most one of branch_name, tag and commit, not {', '.join(refs)}")
        if not isinstance(clone_depth, int) or clone_depth < 1:
            raise StorageError(f"Git storage clone_depth must be a positive integer, not {clone_depth!r}")
        self.flow_path = flow_path
        self.repo = repo
        self.repo_host = repo_host
        self.branch_name = branch_name
        self.tag = tag
        self.commit = commit
        self.clone_depth = clone_depth
        self.use_ssh = bool(use_ssh)
        self.git_token_secret_name = git_token_secret_name

    # -- hooks ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The clone URL, without any token."""
        if "://" in self.repo or self.repo.startswith("git@") or os.path.isabs(self.repo):
            return self.repo
        host = self.repo_host or "github.com"
        name = self.repo if self.repo.endswith(".git") else f"{self.repo}.git"
        return f"git@{host}:{name}" if self.use_ssh else f"https://{host}/{name}"

    @property
    def ref(self) -> str:
        """The ref to clone, for messages: ``branch 'main'``, ``tag 'v1'``, ``the default branch``."""
        if self.branch_name is not None:
            return f"branch {self.branch_name!r}"
        if self.tag is not None:
            return f"tag {self.tag!r}"
        if self.commit is not None:
            return f"commit {self.commit!r}"
        return "the default branch"

    def describe(self) -> str:
        return f"Git storage {self.url} ({self.flow_path} at {self.ref})"

    def credential_secrets(self) -> list[str]:
        return [self.git_token_secret_name] if self.git_token_secret_name else []

    def spec_args(self) -> dict[str, Any]:
        return {
            "flow_path": self.flow_path,
            "repo": self.repo,
            "repo_host": self.repo_host,
            "branch_name": self.branch_name,
            "tag": self.tag,
            "commit": self.commit,
            "clone_depth": self.clone_depth,
            "use_ssh": self.use_ssh,
            "git_token_secret_name": self.git_token_secret_name,
            **super().spec_args(),
        }

    def save_flow(self, flow: Flow) -> str:
        """Record the flow's file; the user commits and pushes it (nothing is sent here)."""
        return self.flow_path

    def locate(self, key: str) -> str | None:
        return key if key == self.flow_path else None

    def load_flow(self, location: str, flow_name: str | None) -> Flow:
        from headwater.storage.script import extract_flow_from_file

        folder = tempfile.mkdtemp(prefix="headwater-git-")
        try:
            self._clone(folder)
            path = Path(folder, location).resolve()
            if not path.is_relative_to(Path(folder).resolve()) or not path.is_file():
                raise StorageError(
                    f"flow file {location!r} is not in {self.url} at {self.ref}; was it committed and "
                    "pushed to that ref? check flow_path and the ref"
                )
            try:
                contents = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise StorageError(f"can't read flow file {location!r} of {self.describe()}: {exc}") from exc
            try:
                return extract_flow_from_file(path=path, contents=contents, flow_name=flow_name)
            except StorageError as exc:
                raise StorageError(f"{exc} (the file is {location!r} of {self.describe()})") from exc
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    # -- git -------------------------------------------------------------------------

    def _secret_url(self) -> tuple[str, str | None]:
        """The URL handed to git (with the token, for https) and the token to scrub."""
        url = self.url
        if self.git_token_secret_name is None:
            return url, None
        token = secret_value(self.git_token_secret_name, self.describe())
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("https", "http"):
            return url, token
        quoted = urllib.parse.quote(token, safe=":")
        netloc = f"{quoted}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), token

    def _clone(self, folder: str) -> None:
        url, token = self._secret_url()
        depth = f"--depth={self.clone_depth}"
        if self.commit is not None:
            self._git(["init", "--quiet", folder], token)
            self._git(["-C", folder, "remote", "add", "origin", url], token)
            self._git(["-C", folder, "fetch", "--quiet", depth, "origin", self.commit], token)
            self._git(["-C", folder, "checkout", "--quiet", "FETCH_HEAD"], token)
            return
        ref = self.branch_name if self.branch_name is not None else self.tag
        args = ["clone", "--quiet", depth, "--single-branch"]
        if ref is not None:
            args += ["--branch", ref]
        self._git([*args, "--", url, folder], token)

    def _git(self, args: list[str], token: str | None) -> None:
        """Run ``git args`` (no shell, no prompts, a timeout); a failure is a StorageError."""
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "GIT_SSH_COMMAND": _ssh_command()}
        shown = " ".join(_scrub(a, token) for a in args[:1])
        logger.debug("git %s for %s", shown, self.describe())
        try:
            result = subprocess.run(
                ["git", *args], capture_output=True, text=True, timeout=GIT_TIMEOUT, env=env, check=False
            )
        except FileNotFoundError as exc:
            raise StorageError(
                f"{self.describe()} needs the git command, which is not installed here; install git "
                "(Debian: apt-get install git)"
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise StorageError(
                f"git {shown} for {self.describe()} took over {GIT_TIMEOUT:.0f}s and was stopped; "
                "is the repository reachable?"
            ) from exc
        if result.returncode == 0:
            return
        raise StorageError(self._explain(_scrub(result.stderr.strip(), token)))

    def _explain(self, stderr: str) -> str:
        """A message naming the ref, the repo and the likely fix for git's ``stderr``."""
        low = stderr.lower()
        where = f"{self.url}"
        if ("remote branch" in low and "not found" in low) or "couldn't find remote ref" in low:
            return f"{self.ref} does not exist in {where}; was it pushed? check the name (git said: {stderr})"
        if self.commit is not None and ("not our ref" in low or "unadvertised object" in low):
            return (
                f"{self.ref} can't be fetched from {where}: it does not exist there or the server "
                f"refuses fetching by SHA; push it, or use branch_name/tag (git said: {stderr})"
            )
        if any(word in low for word in _AUTH):
            fix = (
                "check the token in secret " + repr(self.git_token_secret_name)
                if self.git_token_secret_name
                else "set git_token_secret_name for a private repository"
            )
            return f"git can't authenticate to {where} for {self.ref}: {fix} (git said: {stderr})"
        if any(word in low for word in _UNREACHABLE):
            return (
                f"can't reach repository {where} (for {self.ref}): check the URL, the network and "
                f"access rights (git said: {stderr})"
            )
        return f"git failed on {where} for {self.ref}: {stderr}"


def _ssh_command() -> str:
    # Fail instead of asking about unknown host keys, which would hang a headless run.
    return os.environ.get("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")


def _scrub(text: str, token: str | None) -> str:
    """``text`` with the token (plain and URL-quoted) replaced by ``***``."""
    if not token:
        return text
    for form in {token, urllib.parse.quote(token, safe=":"), urllib.parse.quote(token, safe="")}:
        text = text.replace(form, "***")
    return text
