"""The one lookup of secret values every storage uses (a token, a connection string).

A storage names its secrets (``storage.secrets``, plus the ones its own
arguments name: :meth:`Storage.credential_secrets`); their values come from,
in order:

1. the values the flow-run process resolved before loading the flow
   (``environments/execution.py`` calls :func:`provide`: the local setting
   first, else the API's secret store);
2. the setting ``context.secrets`` (``HEADWATER__CONTEXT__SECRETS__<NAME>``),
   for a storage used outside a flow-run process;

else a StorageError naming the secret and both ways to set it. Names match
case-insensitively (environment variables arrive lower-cased). Values stay
``SecretStr`` until the moment a storage hands one to its SDK.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from headwater.storage.errors import StorageError

if TYPE_CHECKING:
    from pydantic import SecretStr

_lock = threading.Lock()
#: the flow-run process's resolved values, by lower-cased name.
_provided: dict[str, SecretStr] = {}


def provide(values: Mapping[str, SecretStr]) -> None:
    """Make ``values`` the first place :func:`secret_value` looks (the flow-run process calls this)."""
    with _lock:
        _provided.update({name.lower(): value for name, value in values.items()})


def forget(names: Iterable[str] | None = None) -> None:
    """Drop provided values: those of ``names``, or all of them."""
    with _lock:
        if names is None:
            _provided.clear()
        for name in names or ():
            _provided.pop(name.lower(), None)


def local_secret(name: str, available: Mapping[str, SecretStr] | None = None) -> SecretStr | None:
    """The value of ``name`` in ``available`` (default the setting ``context.secrets``), or None.

    The exact name wins, else the first case-insensitive match.
    """
    if available is None:
        from headwater.config import get_settings

        available = get_settings().context.secrets
    value = available.get(name)
    if value is None:
        value = next((v for k, v in available.items() if k.lower() == name.lower()), None)
    return value


def find_secret(name: str) -> SecretStr | None:
    """The value of ``name``: provided by the flow-run process, else the local setting, else None."""
    with _lock:
        value = _provided.get(name.lower())
    return value if value is not None else local_secret(name)


def how_to_set(name: str) -> str:
    """The two ways to set the secret ``name``, for messages."""
    upper = name.upper()
    return (
        f"set it in the API's secret store (`headwater create secret {upper}`) for runs an agent starts, "
        f"or as HEADWATER__CONTEXT__SECRETS__{upper}=<value> (or [context.secrets] in config.toml) where "
        "the flow loads"
    )


def secret_value(name: str, what: str, purpose: str = "") -> str:
    """The plain value of the secret ``name`` that ``what`` (e.g. a storage's description) needs.

    Args:
        name: the secret's name.
        what: who needs it, for the message (``storage.describe()``).
        purpose: what it is, for the message, e.g. ``"its connection string"``.

    Raises:
        StorageError: it is set nowhere; the message names it and how to set it.
    """
    value = find_secret(name)
    if value is None:
        why = f" ({purpose})" if purpose else ""
        raise StorageError(f"{what} needs the secret {name!r}{why}, which is not set here; {how_to_set(name)}")
    return value.get_secret_value()
