"""A fake GitHub REST API (``http.server`` on 127.0.0.1 in a thread), for GitHub storage tests.

It implements exactly the two endpoints GitHub storage calls, over real HTTP:
``GET /repos/{repo}/commits/{ref}`` and ``GET /repos/{repo}/contents/{path}?ref=SHA``
(base64 JSON, lines wrapped as GitHub does). Any ``Authorization`` other than
``Bearer <token>`` gets 401; with ``require_token=True`` a request without one
gets 401 too, like a private repository's API. ``test_github.py`` runs the
storage contract against it; ``tests/acceptance/test_secrets.py`` serves a flow
that only loads when the token came from the API's secret store.
"""

from __future__ import annotations

import base64
import json
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar


@dataclass
class Repository:
    """What the fake serves: one repo's refs (name → SHA) and files ((SHA, path) → text)."""

    name: str
    shas: Mapping[str, str]
    files: Mapping[tuple[str, str], str]
    token: str
    require_token: bool = False
    #: every request's path and Authorization header, in order.
    requests: list[tuple[str, str | None]] = field(default_factory=list)


class _Server(ThreadingHTTPServer):
    repository: Repository


class FakeGitHub(BaseHTTPRequestHandler):
    """The request handler. ``FakeGitHub.requests`` collects requests to every fake server."""

    requests: ClassVar[list[tuple[str, str | None]]] = []
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        repo = self.server.repository
        url = urllib.parse.urlsplit(self.path)
        auth = self.headers.get("Authorization")
        self.requests.append((self.path, auth))
        repo.requests.append((self.path, auth))
        if (auth is not None or repo.require_token) and auth != f"Bearer {repo.token}":
            return self._send(401, {"message": "Bad credentials" if auth else "Requires authentication"})
        prefix = f"/repos/{repo.name}/"
        if not url.path.startswith(prefix):
            return self._send(404, {"message": "Not Found"})
        rest = urllib.parse.unquote(url.path[len(prefix) :])
        if rest.startswith("commits/"):
            ref = rest[len("commits/") :]
            sha = repo.shas.get(ref) or (ref if ref in repo.shas.values() else None)
            if sha is None:
                return self._send(422, {"message": f"No commit found for SHA: {ref}"})
            return self._send(200, {"sha": sha})
        if rest.startswith("contents/"):
            sha = urllib.parse.parse_qs(url.query).get("ref", [""])[0]
            text = repo.files.get((sha, rest[len("contents/") :]))
            if text is None:
                return self._send(404, {"message": "Not Found"})
            content = base64.encodebytes(text.encode()).decode()  # GitHub wraps lines too
            return self._send(200, {"type": "file", "encoding": "base64", "content": content, "sha": "f" * 40})
        return self._send(404, {"message": "Not Found"})


@contextmanager
def serve_github(repository: Repository) -> Iterator[str]:
    """Serve ``repository`` on a free 127.0.0.1 port; yields the API's base URL."""
    server = _Server(("127.0.0.1", 0), FakeGitHub)
    server.repository = repository
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
