"""The client's transport: one keep-alive ``httpx.Client``, bounded retries, errors by status.

Retried (with exponential backoff): failures to connect, connections the server
dropped, and 5xx answers. Never retried: 4xx answers (the request itself is
wrong) and read timeouts (the server is slow, not gone; a long-poll claim sets
its own timeout). A POST retried after the server dropped the connection could
have been applied once already; runs created with an ``idempotency_key`` are
safe against that. The methods that use this are in ``client.py``.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from headwater.client.errors import ApiConnectionError, error_for

API_PREFIX = "/api/v1"

#: The header carrying the claim a flow-run process (or its agent) writes under: ``<agent id>:<attempt>``.
CLAIM_HEADER = "Headwater-Claim"

#: Transport failures worth another try: the request did not get an answer.
_RETRYABLE = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


def api_base(url: str) -> str:
    """``http://host:port`` or ``http://host:port/api/v1`` → the URL the routes hang off."""
    url = url.rstrip("/")
    return url if url.endswith(API_PREFIX) else url + API_PREFIX


class Transport:
    """Sends requests to the API and turns answers into JSON or errors.

    Args:
        url: the server's URL (``http://127.0.0.1:4200``), with or without ``/api/v1``.
        token: the API token, sent as ``Authorization: Bearer <token>``.
        tries: attempts per request before giving up (at least 1).
        backoff: seconds before the second attempt; doubled each time.
        timeout: seconds to wait for an answer, unless a request says otherwise.
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
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"the API URL must start with http:// or https://, not {url!r}; set HEADWATER__API__URL")
        self.base_url = api_base(url)
        self.tries = max(1, int(tries))
        self.backoff = backoff
        self._prefix = httpx.URL(self.base_url).path
        headers = {"User-Agent": "headwater-client"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if claim:
            headers[CLAIM_HEADER] = claim
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

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
    ) -> Any:
        """Send one request (retrying as the module says) and return the answer's JSON (None if empty).

        Raises:
            ClientError: a 4xx answer (its subclass names the status).
            ServerError: still a 5xx after the retries.
            ApiConnectionError: the server could not be reached after the retries.
        """
        extra: dict[str, Any] = {} if timeout is None else {"timeout": httpx.Timeout(timeout, connect=10.0)}
        delay = self.backoff
        for attempt in range(1, self.tries + 1):
            last = attempt == self.tries
            try:
                response = self._http.request(method, path, json=json, params=params, headers=headers, **extra)
            except _RETRYABLE as exc:
                if last:
                    raise ApiConnectionError(
                        f"can't reach the headwater API at {self.base_url} ({type(exc).__name__}: {exc}) "
                        f"after {self.tries} tries; is the server running? start it with "
                        "`headwater server start`, or point HEADWATER__API__URL at it"
                    ) from exc
            except httpx.TimeoutException as exc:
                raise ApiConnectionError(
                    f"the headwater API at {self.base_url} did not answer {method} {path} in time ({exc})"
                ) from exc
            else:
                if response.status_code < 400:
                    return response.json() if response.content else None
                if response.status_code < 500 or last:
                    raise error_for(
                        response.status_code,
                        _detail(response),
                        method,
                        self._prefix + path,
                        response.headers.get("Headwater-Error"),
                    )
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover


def _detail(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or response.reason_phrase
    return body.get("detail", body) if isinstance(body, dict) else body
