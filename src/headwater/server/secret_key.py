"""The key that encrypts secrets at rest (Fernet), and the encryption itself.

The key is the setting ``server.secrets_key`` (``HEADWATER__SERVER__SECRETS_KEY``)
when it is set, else the key file ``<home>/secrets.key``, made with mode 0600
the first time a secret is written or read. Each stored value carries the
:attr:`SecretKey.key_id` of the key that encrypted it (a fingerprint: it
reveals nothing of the key), so a database moved to a server with another key
gets a clear error instead of a failed decryption. The queries that use this
are ``server/models/secrets.py``; ``docs/secrets.md`` is the user's side.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

logger = logging.getLogger("headwater.server")

#: The key file's name in the server's home.
KEY_FILE = "secrets.key"
#: How to make a key for the setting.
MAKE_KEY = 'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'


class SecretKeyError(ValueError):
    """The secrets key can't be used (malformed, unreadable); the message names it and the fix."""


class SecretKey:
    """The server's secrets key, loaded (or made) on first use.

    Args:
        configured: the setting ``server.secrets_key``, or None to use the key file.
        home: the server's home folder, where the key file lives.
    """

    def __init__(self, configured: SecretStr | None, home: Path) -> None:
        self._configured = configured
        self.path = Path(home) / KEY_FILE
        self._fernet: Fernet | None = None
        self._key_id: str | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<SecretKey from {self.describe()}>"

    def describe(self) -> str:
        """Where the key comes from, for messages."""
        if self._configured is not None:
            return "the setting server.secrets_key (HEADWATER__SERVER__SECRETS_KEY)"
        return f"the key file {self.path}"

    def check(self) -> None:
        """Raise SecretKeyError now if the configured key or an existing key file is unusable.

        Makes no key file: the server checks this at start-up, before any secret is used.
        """
        if self._configured is not None:
            self._parse(self._configured.get_secret_value().encode())
        elif self.path.exists():
            self._parse(self._read_file())

    @property
    def key_id(self) -> str:
        """The fingerprint of this key stored with each value it encrypts."""
        self._load()
        assert self._key_id is not None
        return self._key_id

    def encrypt(self, value: str) -> str:
        """The Fernet token of ``value`` (text, safe to store)."""
        return self._load().encrypt(value.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        """The value of a token this key made; ``cryptography.fernet.InvalidToken`` if it did not."""
        return self._load().decrypt(token.encode("ascii")).decode("utf-8")

    # -- loading ----------------------------------------------------------------------

    def _load(self) -> Fernet:
        with self._lock:
            if self._fernet is None:
                if self._configured is not None:
                    key = self._configured.get_secret_value().encode()
                else:
                    if not self.path.exists():
                        self._make_file()
                    key = self._read_file()
                self._fernet = self._parse(key)
                self._key_id = fingerprint(key.strip())
            return self._fernet

    def _parse(self, key: bytes) -> Fernet:
        from cryptography.fernet import Fernet

        try:
            return Fernet(key.strip())
        except ValueError:
            # binascii.Error is a ValueError; the message would not quote the key, but say nothing of it anyway
            if self._configured is not None:
                fix = f"set it to a key made with {MAKE_KEY}"
            else:
                fix = (
                    "restore the file the secrets were written with, or delete it to make a new key (secrets "
                    "written with the old one must then be set again), or set server.secrets_key"
                )
            raise SecretKeyError(
                f"the secrets key from {self.describe()} is not a Fernet key (32 url-safe base64-encoded "
                f"bytes); {fix}"
            ) from None

    def _read_file(self) -> bytes:
        try:
            data = self.path.read_bytes()
            mode = self.path.stat().st_mode
        except OSError as exc:
            raise SecretKeyError(
                f"can't read the secrets key file {self.path}: {exc.strerror}; check its owner and "
                "permissions, or set server.secrets_key"
            ) from None
        if os.name == "posix" and mode & 0o077:
            logger.warning(
                "the secrets key file %s can be read by other users (mode %o); run `chmod 600 %s`",
                self.path,
                mode & 0o777,
                self.path,
            )
        return data

    def _make_file(self) -> None:
        """Write a new key to the key file, atomically: two servers starting at once agree on one key."""
        from cryptography.fernet import Fernet

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_name(f".{KEY_FILE}.{uuid.uuid4().hex}.tmp")
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(descriptor, "wb") as f:
                    os.fchmod(f.fileno(), 0o600)
                    f.write(Fernet.generate_key() + b"\n")
                    f.flush()
                    os.fsync(f.fileno())
                try:
                    os.link(temporary, self.path)
                except FileExistsError:  # another process made it first: use that one
                    return
            finally:
                temporary.unlink(missing_ok=True)
        except OSError as exc:
            raise SecretKeyError(
                f"can't create the secrets key file {self.path}: {exc.strerror}; make the server's home "
                "writable, or set server.secrets_key"
            ) from None
        logger.warning("made a new secrets key in %s (mode 0600); back it up with the database", self.path)


def fingerprint(key: bytes) -> str:
    """16 hex digits identifying ``key`` (a salted SHA-256: the key can't be recovered from it)."""
    return hashlib.sha256(b"headwater secrets key\x00" + key).hexdigest()[:16]
