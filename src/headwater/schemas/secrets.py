"""Secrets on the wire. Server side: ``server/api/secrets.py``; client: ``client/secrets.py``.

A secret is a name and a value. Names fit the environment variable
``HEADWATER__CONTEXT__SECRETS__<NAME>`` (letters, digits, single underscores
between them) and are case-insensitive: they are kept upper-cased, the way
environment variables are written. Values are ``SecretStr`` in every model, so
a repr or log line shows ``**********``; only :class:`SecretValue` puts the
value itself into JSON, and it is read only by ``GET /secrets/{name}``.
``docs/secrets.md`` is the user's side.
"""

from __future__ import annotations

import datetime
import re
from typing import Annotated

from pydantic import AfterValidator, Field, SecretStr, WithJsonSchema, field_serializer

from headwater.schemas.common import Model, Name

#: Longest secret name, in characters.
MAX_NAME_LENGTH = 100
#: Largest secret value, in characters (64 KiB: room for a service-account key or a certificate chain).
MAX_VALUE_LENGTH = 65_536

_NAME = re.compile(r"[A-Za-z0-9]+(?:_[A-Za-z0-9]+)*")


def secret_name_problem(name: object) -> str | None:
    """Why ``name`` can't be a secret's name, or None when it can."""
    if not isinstance(name, str) or not name:
        return "a secret name is a non-empty string"
    if len(name) > MAX_NAME_LENGTH:
        return f"a secret name has at most {MAX_NAME_LENGTH} characters, not {len(name)}"
    if not _NAME.fullmatch(name):
        return (
            f"secret name {name!r} must be letters, digits and single underscores between them (like "
            "GITHUB_TOKEN), so it also fits the variable HEADWATER__CONTEXT__SECRETS__<NAME>"
        )
    return None


def _secret_name(name: str) -> str:
    problem = secret_name_problem(name)
    if problem is not None:
        raise ValueError(problem)
    return name.upper()


def _secret_value(value: SecretStr) -> SecretStr:
    # The messages never quote the value (the server also strips it from error bodies).
    length = len(value.get_secret_value())
    if length == 0:
        raise ValueError("a secret's value must not be empty")
    if length > MAX_VALUE_LENGTH:
        raise ValueError(f"a secret's value has at most {MAX_VALUE_LENGTH} characters, not {length}")
    return value


#: A secret's name, checked and upper-cased.
SecretName = Annotated[str, AfterValidator(_secret_name)]


class SecretWrite(Model):
    """The body of ``PUT /secrets/{name}``: the value to keep (created or replaced)."""

    value: Annotated[SecretStr, AfterValidator(_secret_value)] = Field(
        description=f"The secret's value: 1 to {MAX_VALUE_LENGTH} characters, kept encrypted."
    )
    projects: list[Name] | None = Field(
        None,
        max_length=100,
        description="Project names: an agent token reads the secret only while one of its agents holds a run of "
        "one of them. Default: any agent token may read it.",
    )


class SecretInfo(Model):
    """A secret without its value: what listing and writing return."""

    name: str
    projects: list[str] | None = None
    created: datetime.datetime
    updated: datetime.datetime


class SecretValue(SecretInfo):
    """A secret with its value (``GET /secrets/{name}``: agent scope and above)."""

    # the default schema of SecretStr says writeOnly, which is wrong for an answer
    value: Annotated[SecretStr, WithJsonSchema({"type": "string", "format": "password"})] = Field(
        description="The secret's value."
    )

    @field_serializer("value", when_used="json")
    def _reveal(self, value: SecretStr) -> str:
        return value.get_secret_value()
