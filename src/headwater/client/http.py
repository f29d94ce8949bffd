"""The client's transport: one keep-alive ``httpx.Client``, retries with backoff, errors by status.

What is sent again, with exponential backoff (capped at ``MAX_BACKOFF`` seconds):

- **Idempotent requests** (every GET, and the writes a caller marks ``idempotent=True``:
  state writes carrying a version, heartbeats, task-run upserts, log batches carrying
  a batch id, claims carrying a claim id, runs and flows carrying an idempotency key):
  on timeouts (read timeouts too: the server may be slow, not gone), dropped
  connections and failures to connect, for up to ``retry_for`` seconds in all.
- **Every request**, whether idempotent or not: a failure to connect to a server this
  transport has had an answer from before (it is probably restarting: the request
  never reached it, so sending it again is safe), also for up to ``retry_for`` seconds.
- **Non-idempotent writes** as before: a dropped connection up to ``tries`` tries; a
  read timeout is not retried (the write may have been applied).
- **5xx answers**: up to ``tries`` tries, for every request.

A server that refuses the very first connection (nothing listens there: a wrong URL,
no server started) is reported after ``tries`` quick tries, not after ``retry_for``.
Never retried: 4xx answers (the request itself is wrong). While it retries, the
transport logs a WARNING on the ``headwater.client`` logger (once per request, and
again every ``REWARN`` seconds), which a flow-run process ships into the run's log.
An error answered to a request that was sent again after a try that may have been
applied carries ``resent=True``: a 409 then may mean that first try won (the
reporter in ``engine/reporting.py`` checks). The methods using this are in ``client.py``
and ``flow_runs.py``.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from typing import Any

import httpx

from headwater.client.errors import ApiConnectionError, ApiError, ApiTimeoutError, error_for

API_PREFIX = "/api/v1"

#: The header carrying the claim a flow-run process (or its agent) writes under: ``<agent id>:<attempt>``.
CLAIM_HEADER = "Headwater-Claim"

#: The longest pause between two tries, in seconds.
MAX_BACKOFF = 4.0
#: Seconds between two warnings about the same request while it is retried.
REWARN = 20.0

logger = logging.getLogger("headwater.client")

#: The request never reached the server: sending it again is always safe.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
#: The connection broke mid-request: the server may have applied it.
_DROPPED = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
#: No answer in time: the server may have applied it (or may still).
_SLOW = (httpx.ReadTimeout, httpx.WriteTimeout)


def api_base(url: str) -> str:
    """``http://host:port`` or ``http://host:port/api/v1`` → the URL the routes hang off."""
    url = url.rstrip("/")
    return url if url.endswith(API_PREFIX) else url + API_PREFIX


class Transport:
    """Sends requests to the API and turns answers into JSON or errors.

    Args:
        url: the server's URL (``http://127.0.0.1:4200``), with or without ``/api/v1``.
        token: the API token, sent as ``Authorization: Bearer <token>``.
        tries: tries per request on 5xx answers, dropped connections of non-idempotent
            writes, and a server that refuses the first connection (at least 1).
        backoff: seconds before the second try; doubled each time, up to ``MAX_BACKOFF``.
        timeout: seconds to wait for an answer to each try, unless a request says otherwise.
        retry_for: seconds in all to keep retrying an idempotent request that times out or
            can't connect (0: no such retries). A try started within it may run past it.
        claim: ``<agent id>:<attempt>``, sent as the ``Headwater-Claim`` header on every request
            (a flow-run process writes under the claim its agent deployed it with).
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        tries: int = 4,
        backoff: float = 0.1,
        timeout: float = 30.0,
        claim: str | None = None,
        retry_for: float = 60.0,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"the API URL must start with http:// or https://, not {url!r}; set HEADWATER__API__URL")
        self.base_url = api_base(url)
        self.tries = max(1, int(tries))
        self.backoff = backoff
        self.timeout = timeout
        self.retry_for = max(0.0, float(retry_for))
        #: whether the server has answered this transport at least once (a refused
        #: connection after that is a server restarting, not a wrong URL).
        self.answered = False
        self._prefix = httpx.URL(self.base_url).path
        headers = {"User-Agent": "headwater-client"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if claim:
            headers[CLAIM_HEADER] = claim
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout, verify=ssl_context())

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Any = None,
        timeout: float | None = None,
        headers: dict[str, str] | None = None,
        idempotent: bool = False,
    ) -> Any:
        """Send one request (retrying as the module says) and return the answer's JSON (None if empty).

        Args:
            idempotent: sending it twice does what sending it once does (a GET always is),
                so it is retried after timeouts and dropped connections too.

        Raises:
            ClientError: a 4xx answer (its subclass names the status).
            ServerError: still a 5xx after the retries.
            ApiTimeoutError: no answer in time, after the retries (an ApiConnectionError).
            ApiConnectionError: the server could not be reached after the retries.
        """
        idempotent = idempotent or method == "GET"
        extra: dict[str, Any] = {} if timeout is None else {"timeout": httpx.Timeout(timeout, connect=10.0)}
        retry = _Retry(self, method, self._prefix + path, idempotent, timeout or self.timeout)
        while True:
            try:
                response = self._http.request(method, path, json=json, params=params, headers=headers, **extra)
            except (*_NOT_SENT, *_DROPPED, *_SLOW) as exc:
                retry.after_failure(exc)
                continue
            if response.status_code < 500:
                self.answered = True
            if response.status_code < 400:
                retry.done()
                return response.json() if response.content else None
            error = error_for(
                response.status_code, _detail(response), method, self._prefix + path,
                response.headers.get("Headwater-Error"),
            )  # fmt: skip
            if response.status_code < 500:
                raise retry.final(error)
            retry.after_server_error(error)


class _Retry:
    """The retry bookkeeping of one request: tries, backoff, the time budget, the warnings."""

    def __init__(self, transport: Transport, method: str, path: str, idempotent: bool, timeout: float) -> None:
        self.transport = transport
        self.method = method
        self.path = path
        self.idempotent = idempotent
        self.timeout = timeout
        self.started = time.monotonic()
        self.deadline = self.started + transport.retry_for
        self.tries = 0  # failed tries so far
        self.server_errors = 0
        self.delay = transport.backoff
        #: a failed try may have reached the server (so a later 409 may be that try's doing).
        self.maybe_applied = False
        self.warned_at: float | None = None

    def after_failure(self, exc: httpx.HTTPError) -> None:
        """Sleep before the next try, or raise the error this failure ends the request with."""
        self.tries += 1
        transport = self.transport
        refused_first = isinstance(exc, httpx.ConnectError) and not transport.answered
        if isinstance(exc, _NOT_SENT) and not refused_first:
            budget = True  # never reached the server: safe to send again, whatever the request
        elif refused_first:
            budget = False
        else:
            self.maybe_applied = True
            budget = self.idempotent
        if budget and self._pause(exc):
            return
        if not isinstance(exc, _SLOW) and self.tries < transport.tries:  # as many tries as ever, budget or not
            self._sleep(self.delay)
            return
        raise self._give_up(exc) from exc

    def after_server_error(self, error: ApiError) -> None:
        """A 5xx answer: sleep before the next try (up to ``tries``), or raise it."""
        self.server_errors += 1
        self.tries += 1
        self.maybe_applied = True
        if self.server_errors >= self.transport.tries:
            raise self.final(error)
        self._sleep(self.delay)

    def done(self) -> None:
        if self.warned_at is not None:
            logger.info(
                "the API answered %s %s after %d tries over %.0f s", self.method, self.path, self.tries + 1,
                time.monotonic() - self.started,
            )  # fmt: skip

    def final(self, error: ApiError) -> ApiError:
        error.resent = self.maybe_applied
        return error

    def _pause(self, exc: httpx.HTTPError) -> bool:
        """Within the time budget: warn (now and then), sleep, and say True."""
        now = time.monotonic()
        left = self.deadline - now
        if left <= 0:
            return False
        if self.warned_at is None or now - self.warned_at >= REWARN:
            self.warned_at = now
            logger.warning("%s; trying again for %.0f s more", self._what(exc), left)
        self._sleep(min(self.delay, left))
        return True

    def _sleep(self, seconds: float) -> None:
        time.sleep(seconds)
        self.delay = min(self.delay * 2, MAX_BACKOFF)

    def _what(self, exc: httpx.HTTPError) -> str:
        kind = type(exc).__name__
        base = self.transport.base_url
        if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout)):
            return f"the API did not answer {self.method} {self.path} in time ({kind})"
        if isinstance(exc, _NOT_SENT):
            return f"can't reach the headwater API at {base} for {self.method} {self.path} ({kind}: {exc})"
        return f"the API dropped the connection of {self.method} {self.path} ({kind}: {exc})"

    def _give_up(self, exc: httpx.HTTPError) -> ApiError:
        base = self.transport.base_url
        spent = time.monotonic() - self.started
        tried = f"{self.tries} {'try' if self.tries == 1 else 'tries'}" + (f" over {spent:.0f} s" if spent >= 1 else "")
        error: ApiError
        if isinstance(exc, _SLOW):
            why = (
                f"the headwater API at {base} did not answer {self.method} {self.path} in time "
                f"({type(exc).__name__} after {self.timeout:g} s; {tried})"
            )
            if self.idempotent:
                fix = "is the server overloaded or stopped? give it longer with HEADWATER__API__TIMEOUT (each try) or "
                fix += "HEADWATER__API__RETRY_FOR (all tries)"
            else:
                fix = "not sent again, as it may have been applied: check before repeating it, and give the server "
                fix += "longer with HEADWATER__API__TIMEOUT"
            error = ApiTimeoutError(f"{why}; {fix}")
        else:
            error = ApiConnectionError(
                f"can't reach the headwater API at {base} ({type(exc).__name__}: {exc}) "
                f"after {tried}; is the server running? start it with "
                "`headwater server start`, or point HEADWATER__API__URL at it"
            )
        return self.final(error)


def _detail(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or response.reason_phrase
    return body.get("detail", body) if isinstance(body, dict) else body


_SSL_CONTEXTS: dict[tuple[str | None, str | None], ssl.SSLContext] = {}


def ssl_context() -> ssl.SSLContext:
    """The process's verifying TLS context, made once per CA setting (``SSL_CERT_FILE``, ``SSL_CERT_DIR``).

    ``httpx.Client()`` otherwise loads the CA bundle each time it is made, ``http://`` URLs
    included: 35-50 ms of CPU, a third of a warm-started flow run's own start
    (``agent/zygote.py`` makes it once, before it forks runs). A context is safe to share
    between clients and threads.
    """
    key = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    context = _SSL_CONTEXTS.get(key)
    if context is None:
        context = _SSL_CONTEXTS[key] = httpx.create_ssl_context()
    return context
