"""Errors the client raises: one class per kind of answer, each carrying the server's ``detail``.

``http.py`` picks the class from the HTTP status (:func:`error_for`). Every error
is an :class:`ApiError`; a 4xx is a :class:`ClientError` (the request was
wrong, so it is never retried); :class:`ApiConnectionError` means the server
could not be reached at all, :class:`ApiTimeoutError` that it did not answer in time.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """Any failure talking to the headwater API.

    Attributes:
        resent: the request was sent again after a try that may have reached the server
            (a timeout, a dropped connection, a 5xx), so that try may have been applied:
            a 409 to a versioned write then may mean the write was done.
    """

    resent: bool = False


class ClientError(ApiError):
    """The server refused the request (HTTP 4xx); ``detail`` is its reason.

    Attributes:
        status_code: the HTTP status.
        detail: the server's ``detail`` (a string, or FastAPI's list of field errors).
        method: the request's method.
        path: the request's path, e.g. ``/api/v1/runs``.
    """

    def __init__(self, status_code: int, detail: Any, method: str = "", path: str = "") -> None:
        self.status_code = status_code
        self.detail = detail
        self.method = method
        self.path = path
        where = f" from {method} {path}" if method else ""
        super().__init__(f"{describe_detail(detail)} (HTTP {status_code}{where})")


class BadRequestError(ClientError):
    """HTTP 400: the request is malformed."""


class ValidationError(BadRequestError):
    """HTTP 422: the body or a parameter does not fit the schema; the message names the fields.

    Attributes:
        fields: the names of the offending fields (``"labels"``, ``"parameters"``, ...),
            when the server listed them.
    """

    def __init__(self, status_code: int, detail: Any, method: str = "", path: str = "") -> None:
        super().__init__(status_code, detail, method, path)
        self.fields = field_names(detail)


class AuthError(ClientError):
    """HTTP 401 (no or bad token) or 403 (the token's scope is too narrow)."""


class NotFoundError(ClientError):
    """HTTP 404: no such project, flow, run or agent."""


class ConflictError(ClientError):
    """HTTP 409: a duplicate name, a forbidden state change, or a stale ``version``."""


class ClaimSupersededError(ConflictError):
    """HTTP 409 with ``Headwater-Error: claim-superseded``: the run was taken from the claim this write
    carried (e.g. recovery rescheduled it and another agent holds it now). Stop working on the run."""

    #: what the engine looks for (``engine/heartbeat.py::is_superseded``): it does not import the client.
    claim_superseded = True


class TooLargeError(ClientError):
    """HTTP 413: the request is too big (e.g. a log batch past ``server.max_log_batch``)."""


class ServerError(ApiError):
    """HTTP 5xx, still failing after the retries."""

    def __init__(self, status_code: int, detail: Any, method: str = "", path: str = "") -> None:
        self.status_code = status_code
        self.detail = detail
        reason = describe_detail(detail)
        super().__init__(f"the headwater API failed (HTTP {status_code} from {method} {path}): {reason}")


class ApiConnectionError(ApiError, ConnectionError):
    """The server could not be reached, after the retries. Also a builtin ``ConnectionError``."""


class ApiTimeoutError(ApiConnectionError):
    """The server did not answer in time, after the retries (``api.timeout`` each, ``api.retry_for`` in all)."""


_BY_STATUS: dict[int, type[ClientError]] = {
    400: BadRequestError,
    401: AuthError,
    403: AuthError,
    404: NotFoundError,
    409: ConflictError,
    413: TooLargeError,
    422: ValidationError,
}


#: The ``Headwater-Error`` answer header's value for a superseded claim (``server/identity.py``).
SUPERSEDED = "claim-superseded"


def error_for(status_code: int, detail: Any, method: str, path: str, code: str | None = None) -> ApiError:
    """The error for a failed answer of this status (``code``: its ``Headwater-Error`` header, if any)."""
    if status_code == 409 and code == SUPERSEDED:
        return ClaimSupersededError(status_code, detail, method, path)
    if status_code >= 500:
        return ServerError(status_code, detail, method, path)
    return _BY_STATUS.get(status_code, ClientError)(status_code, detail, method, path)


def _location(error: dict[str, Any]) -> str:
    loc = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path")]
    return ".".join(loc)


def field_names(detail: Any) -> list[str]:
    """The fields FastAPI's list-shaped ``detail`` names, in order, without repeats."""
    if not isinstance(detail, list):
        return []
    names: list[str] = []
    for error in detail:
        if isinstance(error, dict):
            name = _location(error)
            if name and name not in names:
                names.append(name)
    return names


def describe_detail(detail: Any) -> str:
    """A one-line reading of ``detail``: the string itself, or ``field: message; ...``."""
    if isinstance(detail, list):
        parts = []
        for error in detail:
            if isinstance(error, dict):
                where = _location(error) or "request"
                parts.append(f"{where}: {error.get('msg', error)}")
            else:
                parts.append(str(error))
        return "invalid request: " + "; ".join(parts) if parts else "invalid request"
    return str(detail)
