"""The Python client of the headwater API.

``Client()`` reads the server's URL and token from the settings
(``HEADWATER__API__URL``, ``HEADWATER__API__TOKEN``). Methods are in
``client.py`` and ``flow_runs.py``; the transport (retries) in ``http.py``; the
errors, one per kind of answer, in ``errors.py``. ``import headwater`` does not
import this package (it needs httpx and pydantic).
"""

from headwater.client.client import Client
from headwater.client.errors import (
    ApiConnectionError,
    ApiError,
    ApiTimeoutError,
    AuthError,
    BadRequestError,
    ClaimSupersededError,
    ClientError,
    ConflictError,
    NotFoundError,
    ServerError,
    TooLargeError,
    ValidationError,
)

__all__ = [
    "ApiConnectionError",
    "ApiError",
    "ApiTimeoutError",
    "AuthError",
    "BadRequestError",
    "ClaimSupersededError",
    "Client",
    "ClientError",
    "ConflictError",
    "NotFoundError",
    "ServerError",
    "TooLargeError",
    "ValidationError",
]
