"""Errors the models raise; ``app.py`` turns each into its HTTP status with the message as detail."""

from __future__ import annotations


class ApiError(Exception):
    status_code = 500

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(ApiError):
    status_code = 404


class Conflict(ApiError):
    status_code = 409


class Invalid(ApiError):
    status_code = 422


class TooLarge(ApiError):
    status_code = 413


class Unauthorized(ApiError):
    status_code = 401


class Forbidden(ApiError):
    status_code = 403
