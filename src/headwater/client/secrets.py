"""The secrets half of ``Client``: set, read, list and delete secrets in the API's secret store.

Mixed into ``client.py``'s ``Client``. Server side: ``server/api/secrets.py``.
Reading a value needs only an agent token (the flow-run process does it);
the rest needs scope user. Values travel as ``SecretStr``, so they don't show
in reprs or logs by accident.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr, TypeAdapter

from headwater.client.flow_runs import segment
from headwater.schemas.secrets import SecretInfo, SecretValue

if TYPE_CHECKING:
    from headwater.client.http import Transport

_INFOS = TypeAdapter(list[SecretInfo])


class SecretsMixin:
    """Secret methods of ``Client``; they need its transport ``_http``."""

    _http: Transport

    def set_secret(
        self, name: str, value: str | SecretStr, projects: Iterable[str] | None = None
    ) -> SecretInfo:
        """Create or replace the secret ``name`` (case-insensitive; kept upper-cased).

        With ``projects``, an agent token reads it only while one of its agents holds a run of
        one of those projects (``docs/security.md``); without, any agent token may.

        Raises:
            ValidationError: the name is not letters, digits and single
                underscores, or the value is empty or too long (the message never
                quotes the value).
            AuthError: the token's scope is narrower than user.
        """
        plain = value.get_secret_value() if isinstance(value, SecretStr) else value
        body: dict[str, Any] = {"value": plain}
        if projects is not None:
            body["projects"] = list(projects)
        answer = self._http.request("PUT", f"/secrets/{segment(name)}", json=body)
        return SecretInfo.model_validate(answer)

    def get_secret(self, name: str) -> SecretStr:
        """The value of the secret ``name``.

        Raises:
            NotFoundError: no such secret.
            ConflictError: the server can't decrypt it (it was written with another key).
        """
        answer = self._http.request("GET", f"/secrets/{segment(name)}")
        return SecretValue.model_validate(answer).value

    def list_secrets(self) -> list[SecretInfo]:
        """Every secret's name and times, by name (never the values)."""
        return _INFOS.validate_python(self._http.request("GET", "/secrets"))

    def delete_secret(self, name: str) -> None:
        """Delete the secret ``name`` (NotFoundError if there is none)."""
        self._http.request("DELETE", f"/secrets/{segment(name)}")
