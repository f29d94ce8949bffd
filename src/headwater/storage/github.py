"""GitHub storage: a flow's ``.py`` file read through GitHub's REST contents API.

Nothing is pushed: ``add_flow`` records the flow's name → ``path``; the user
commits and pushes the file. ``get_flow`` resolves the ref to a commit
(``GET /repos/{repo}/commits/{ref}``), reads the file at that commit
(``GET /repos/{repo}/contents/{path}?ref={sha}``, base64 JSON) with httpx and
runs it (``script.py``). No clone, no ``git`` command; ``git.py`` clones any
git server instead. The contract is ``base.py``; the docs are
``docs/storage-git.md``.
"""

from __future__ import annotations

import base64
import binascii
import urllib.parse
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from headwater.core.flow import Flow
from headwater.storage.base import Storage
from headwater.storage.errors import StorageError

if TYPE_CHECKING:
    import httpx

DEFAULT_BASE_URL = "https://api.github.com"
#: seconds one API request may take.
TIMEOUT = 30.0


class GitHub(Storage):
    """Loads a flow from a ``.py`` file in a GitHub repository (always script mode).

    Args:
        repo: ``"owner/name"``.
        path: the flow file's path in the repository, e.g. ``"flows/etl.py"``.
        ref: a branch, tag or commit SHA; default ``HEAD``, the repository's
            default branch.
        access_token_secret: the secret holding a token, sent as
            ``Authorization: Bearer``; needed for private repositories.
        base_url: the API's root; default ``https://api.github.com`` (GitHub
            Enterprise: ``https://HOST/api/v3``).
        secrets: names of secrets flows kept here need.
        labels: labels for the flows' runs.
        add_default_labels: kept for symmetry; GitHub has no default labels.
    """

    kind: ClassVar[str] = "github"
    missing_hint: ClassVar[str] = (
        "add it with storage.add_flow(flow) (flow.register() does this), after committing and pushing its file"
    )

    def __init__(
        self,
        repo: str,
        path: str,
        ref: str | None = None,
        access_token_secret: str | None = None,
        base_url: str | None = None,
        *,
        secrets: Iterable[str] | None = None,
        labels: Iterable[str] | None = None,
        add_default_labels: bool = True,
    ) -> None:
        super().__init__(secrets=secrets, labels=labels, add_default_labels=add_default_labels, stored_as_script=True)
        if not isinstance(repo, str) or repo.count("/") != 1 or not all(repo.split("/")):
            raise StorageError(f"GitHub storage needs repo='owner/name', not {repo!r}")
        if not isinstance(path, str) or not path.strip("/"):
            raise StorageError(f"GitHub storage needs path=, the flow file's path in the repo, not {path!r}")
        self.repo = repo
        self.path = path.lstrip("/")
        self.ref = ref
        self.access_token_secret = access_token_secret
        self.base_url = base_url

    # -- hooks ---------------------------------------------------------------------

    @property
    def api(self) -> str:
        """The API root, without a trailing slash."""
        return (self.base_url or DEFAULT_BASE_URL).rstrip("/")

    def describe(self) -> str:
        return f"GitHub storage {self.repo}:{self.path} at {self.ref or 'HEAD'}"

    def credential_secrets(self) -> list[str]:
        return [self.access_token_secret] if self.access_token_secret else []

    def spec_args(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "path": self.path,
            "ref": self.ref,
            "access_token_secret": self.access_token_secret,
            "base_url": self.base_url,
            **super().spec_args(),
        }

    def save_flow(self, flow: Flow) -> str:
        """Record the flow's file; the user commits and pushes it (nothing is sent here)."""
        return self.path

    def locate(self, key: str) -> str | None:
        return key if key == self.path else None

    def load_flow(self, location: str, flow_name: str | None) -> Flow:
        from headwater.storage.script import extract_flow_from_file

        sha, contents = self.fetch(location)
        source = f"github:{self.repo}/{location}@{sha[:12]}"
        try:
            return extract_flow_from_file(contents=contents, flow_name=flow_name)
        except StorageError as exc:
            raise StorageError(f"{exc} (the file is {source})") from exc

    # -- the API ---------------------------------------------------------------------

    def fetch(self, path: str) -> tuple[str, str]:
        """The commit SHA ``ref`` points to and the text of ``path`` there.

        Raises:
            StorageError: the API is unreachable, refuses the token, or lacks the
                ref or the file; the message names the repo, path and ref.
        """
        import httpx

        ref = self.ref or "HEAD"
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
        if self.access_token_secret is not None:
            from headwater.storage.secrets import secret_value

            headers["Authorization"] = f"Bearer {secret_value(self.access_token_secret, self.describe())}"
        repo = urllib.parse.quote(self.repo, safe="/")
        with httpx.Client(base_url=self.api, headers=headers, timeout=TIMEOUT, follow_redirects=True) as client:
            response = self._get(client, f"/repos/{repo}/commits/{urllib.parse.quote(ref, safe='')}", path)
            if response.status_code in (404, 422):
                raise StorageError(
                    f"ref {ref!r} is not in GitHub repo {self.repo} ({self.api}), or the repo does not exist "
                    f"(reading {path!r}); check ref= and repo= — a private repo also answers 404 "
                    f"{'to this token' if self.access_token_secret else 'without a token: set access_token_secret='}"
                )
            sha = self._json(response, path).get("sha")
            if not isinstance(sha, str) or not sha:
                raise StorageError(f"GitHub at {self.api} gave no commit SHA for ref {ref!r} of {self.repo}")
            response = self._get(
                client, f"/repos/{repo}/contents/{urllib.parse.quote(path)}", path, params={"ref": sha}
            )
            if response.status_code == 404:
                raise StorageError(
                    f"flow file {path!r} is not in GitHub repo {self.repo} at ref {ref!r} (commit {sha[:12]}); "
                    "was it committed and pushed? check path="
                )
            document = self._json(response, path)
        return sha, self._decode(document, path, ref)

    def _get(self, client: httpx.Client, url: str, path: str, params: dict[str, str] | None = None) -> httpx.Response:
        import httpx

        ref = self.ref or "HEAD"
        try:
            response = client.get(url, params=params)
        except httpx.HTTPError as exc:
            raise StorageError(
                f"can't reach the GitHub API at {self.api} to read {path!r} of {self.repo} at ref {ref!r}: "
                f"{type(exc).__name__}: {exc}; check base_url= and the network"
            ) from None
        if response.status_code == 401:
            fix = (
                f"check the token in secret {self.access_token_secret!r} (expired or revoked?)"
                if self.access_token_secret
                else "this API needs a token: set access_token_secret="
            )
            raise StorageError(
                f"GitHub at {self.api} refused the credentials (401) reading {path!r} of {self.repo} "
                f"at ref {ref!r}: {fix}"
            )
        if response.status_code == 403:
            raise StorageError(
                f"GitHub at {self.api} forbids reading {path!r} of {self.repo} at ref {ref!r} (403: "
                f"{_message(response)}); the token lacks access to the repo, or the rate limit is hit"
            )
        return response

    def _json(self, response: httpx.Response, path: str) -> dict[str, Any]:
        if response.status_code != 200:
            raise StorageError(
                f"GitHub at {self.api} answered {response.status_code} ({_message(response)}) reading "
                f"{path!r} of {self.repo} at ref {self.ref or 'HEAD'!r}"
            )
        try:
            document = response.json()
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise StorageError(
                f"GitHub at {self.api} answered {response.request.url.path} with something other than a "
                f"JSON object reading {path!r} of {self.repo}; is base_url= the API's root?"
            )
        return document

    def _decode(self, document: dict[str, Any], path: str, ref: str) -> str:
        where = f"{path!r} of GitHub repo {self.repo} at ref {ref!r}"
        if document.get("type", "file") != "file":
            raise StorageError(f"{where} is a {document.get('type')}, not a file; point path= at the flow's .py file")
        if document.get("encoding") != "base64" or not isinstance(document.get("content"), str):
            raise StorageError(
                f"GitHub gave {where} as encoding {document.get('encoding')!r}, not base64 (files over "
                "1 MB are not inlined); keep the flow file small or use Git storage"
            )
        try:
            return base64.b64decode(document["content"]).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise StorageError(f"can't decode {where}: {exc}; is it a UTF-8 text file?") from exc


def _message(response: httpx.Response) -> str:
    """GitHub's ``message`` from an error body, or the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("message", body))[:200] if isinstance(body, dict) else str(body)[:200]
