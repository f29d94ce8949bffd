"""An agent's health endpoint: a small stdlib HTTP server in a daemon thread.

``GET /api/health`` answers 200 with the agent's status as JSON (what
:meth:`Agent.health` returns); ``POST /api/poke`` wakes the agent's claim loop
so it claims at once. Anything else is a 404. The agent side is ``loop.py`` (it starts this) and ``base.py``.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

logger = logging.getLogger("headwater.agent")


def parse_address(address: str) -> tuple[str, int]:
    """``http://HOST:PORT`` → ``(host, port)``; an empty host binds every interface.

    Raises:
        ValueError: not an ``http://`` address with a port.
    """
    parts = urllib.parse.urlsplit(address)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "http" or port is None:
        raise ValueError(
            f"agent_address must look like http://127.0.0.1:8080 (http, a host and a port), not {address!r}"
        )
    return parts.hostname or "", port


class HealthServer:
    """Serves ``/api/health`` and ``/api/poke`` for one agent until :meth:`close`.

    Args:
        address: ``http://HOST:PORT`` (port 0: any free port; see :attr:`url`).
        status: returns the JSON body of ``GET /api/health``.
        poke: called on ``POST /api/poke``.
    """

    def __init__(self, address: str, status: Callable[[], dict[str, Any]], poke: Callable[[], None]) -> None:
        host, port = parse_address(address)
        handler = _handler(status, poke)
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise OSError(f"the agent's health server can't listen on {address}: {exc}") from exc
        self._server.daemon_threads = True
        bound_host, bound_port = self._server.server_address[:2]
        shown = host or "127.0.0.1"
        self.url = f"http://{shown}:{bound_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="headwater-agent-health", daemon=True
        )
        self._thread.start()
        logger.info("agent health endpoint at %s/api/health (bound to %s:%s)", self.url, bound_host, bound_port)

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _handler(status: Callable[[], dict[str, Any]], poke: Callable[[], None]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "headwater-agent"

        def _answer(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.split("?")[0].rstrip("/") == "/api/health":
                self._answer(200, status())
            else:
                self._answer(404, {"detail": f"no route {self.path}; try GET /api/health or POST /api/poke"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            if self.path.split("?")[0].rstrip("/") == "/api/poke":
                poke()
                self._answer(200, {"status": "poked"})
            else:
                self._answer(404, {"detail": f"no route {self.path}; try GET /api/health or POST /api/poke"})

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("health endpoint: " + format, *args)

    return Handler
