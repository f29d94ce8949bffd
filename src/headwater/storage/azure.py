"""Azure storage: flows kept as blobs in an Azure Blob Storage container.

Everything but the service's calls is shared with S3 and GCS storage in
``objects.py``: pickle mode uploads each flow's versioned payload (``payload.py``)
to ``blob_name`` or ``<flow-slug>/<UTC time>-<id>.headwater``; script mode
(``stored_as_script=True``) keeps the flow's ``.py`` source in the blob
``blob_name``, uploaded from ``path`` when given (else the blob must already hold
it), and runs it to load the flow (``script.py``). A flow's location is its
``azure://<container>/<blob>`` URL (a bare blob name, as older specs hold, is read
too). This module holds what is Azure's own: the connection string, the client and
its calls, its timeouts and its errors. ``docs/storage-azure.md`` is the user's side,
and ``tests/storage/test_azure.py`` runs it against Azurite.

``azure.storage.blob`` (the ``azure`` extra) is imported only when a blob is
read or written. The connection string never leaves this object: it is not in
``serialize()``, ``repr`` or any error message.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import SecretStr

from headwater.storage.errors import StorageError
from headwater.storage.objects import ObjectStorage

if TYPE_CHECKING:
    from azure.storage.blob import BlobServiceClient

#: the environment variable read when no connection string or secret is given.
ENV_VAR = "AZURE_STORAGE_CONNECTION_STRING"
SCHEME = "azure://"

# Fail fast: a dead endpoint should be a clear error in seconds, not minutes of retries.
CONNECTION_TIMEOUT = 5
READ_TIMEOUT = 30
RETRIES = 1
# What a wrong key or SAS token gets back (Azurite says AuthorizationFailure where Azure says
# AuthenticationFailed).
_AUTH_CODES = {"AuthenticationFailed", "AuthorizationFailure", "InvalidAuthenticationInfo"}


class Azure(ObjectStorage):
    """Keeps flows as blobs in an Azure Storage container.

    The connection string is the first of: ``connection_string`` (kept in this
    object only, never in the spec), the secret named ``connection_string_secret``
    (what the flow-run process resolved from the setting ``context.secrets`` —
    ``HEADWATER__CONTEXT__SECRETS__<NAME>`` — or the API's secret store: ``secrets.py``;
    names match case-insensitively), then the ``AZURE_STORAGE_CONNECTION_STRING``
    environment variable. It is looked up when a blob is first read or written.

    Args:
        container: the container's name; it must exist.
        connection_string: a literal connection string, for this process only.
        connection_string_secret: the name of the secret holding the connection
            string; travels in the spec so agents can find the string.
        blob_name: the blob a pickled flow is written to (default
            ``<flow-slug>/<UTC time>-<id>.headwater``), or the script's blob in script mode.
        stored_as_script: keep the flow's ``.py`` source in ``blob_name``.
        path: with ``stored_as_script``, a local ``.py`` file uploaded to
            ``blob_name`` at ``add_flow``; without it the blob must already hold the script.
        secrets: names of secrets flows kept here need.
        labels: labels for the flows' runs.
        add_default_labels: accepted for symmetry; Azure has no default labels.
    """

    kind: ClassVar[str] = "azure"
    scheme: ClassVar[str] = SCHEME
    key_noun: ClassVar[str] = "blob name"
    object_noun: ClassVar[str] = "blob"
    bucket_noun: ClassVar[str] = "container"
    argument_names: ClassVar[tuple[str, str, str]] = ("container", "blob_name", "path")
    bare_keys: ClassVar[bool] = True

    def __init__(
        self,
        container: str,
        connection_string: str | None = None,
        blob_name: str | None = None,
        stored_as_script: bool = False,
        *,
        connection_string_secret: str | None = None,
        path: str | os.PathLike[str] | None = None,
        secrets: Iterable[str] | None = None,
        labels: Iterable[str] | None = None,
        add_default_labels: bool = True,
    ) -> None:
        if not isinstance(container, str) or not container.strip():
            raise StorageError(f"Azure storage needs a container name (a non-empty string), not {container!r}")
        if stored_as_script and not blob_name:
            raise StorageError("Azure(stored_as_script=True) needs blob_name= (the blob holding the flow's .py file)")
        super().__init__(
            container,
            blob_name or None,
            stored_as_script,
            path,
            secrets=secrets,
            labels=labels,
            add_default_labels=add_default_labels,
        )
        self._connection_string = SecretStr(connection_string) if connection_string else None
        self.connection_string_secret = connection_string_secret or None

    def __getstate__(self) -> dict[str, Any]:
        # A flow carries its storage when pickled (into the blob itself): neither the client
        # nor a literal connection string may travel with it.
        state = super().__getstate__()
        state["_connection_string"] = None
        return state

    @property
    def container(self) -> str:
        return self.bucket

    @property
    def blob_name(self) -> str | None:
        return self.key

    @property
    def path(self) -> str | None:
        return self.local_script_path

    def url(self, blob: str) -> str:
        """How errors name a blob: ``azure://<container>/<blob>``."""
        return self._url(blob)

    # -- what differs from the other object stores -----------------------------------

    def credential_secrets(self) -> list[str]:
        return [self.connection_string_secret] if self.connection_string_secret else []

    def spec_args(self) -> dict[str, Any]:
        return {**super().spec_args(), "connection_string_secret": self.connection_string_secret}

    def locate(self, key: str) -> str | None:
        """An ``azure://<container>/<blob>`` URL of this container, or the name of a blob that exists."""
        if key.startswith(SCHEME):
            return super().locate(key)
        if "/" in key or key.endswith(".py"):
            with self._failing(f"can't look for {self.url(key)}"):
                found = self._exists(key)
            return key if found else None  # a bare blob name is a location too (bare_keys)
        return None

    # -- the service -----------------------------------------------------------------

    def _connection(self) -> str:
        if self._connection_string is not None:
            return self._connection_string.get_secret_value()
        if self.connection_string_secret:
            from headwater.storage.secrets import secret_value

            return secret_value(self.connection_string_secret, self.describe(), "its connection string")
        from_env = os.environ.get(ENV_VAR)
        if not from_env:
            raise StorageError(
                f"{self.describe()} has no connection string: pass connection_string_secret='NAME' "
                f"(with HEADWATER__CONTEXT__SECRETS__NAME set), connection_string=..., or set {ENV_VAR}"
            )
        return from_env

    def _service(self) -> BlobServiceClient:
        if self._client is None:
            from azure.storage.blob import BlobServiceClient, LinearRetry

            connection = self._connection()
            try:
                self._client = BlobServiceClient.from_connection_string(
                    connection,
                    retry_policy=LinearRetry(backoff=1, retry_total=RETRIES, random_jitter_range=0),
                    connection_timeout=CONNECTION_TIMEOUT,
                    read_timeout=READ_TIMEOUT,
                )
            except (ValueError, KeyError) as exc:
                # The parser's message may quote the string: name only the exception type.
                raise StorageError(
                    f"{self.describe()}: the connection string is malformed ({type(exc).__name__}); it "
                    "should look like DefaultEndpointsProtocol=https;AccountName=...;AccountKey=...;"
                ) from None
        client: BlobServiceClient = self._client
        return client

    def _put(self, key: str, data: bytes, content_type: str) -> None:
        from azure.storage.blob import ContentSettings

        blob = self._service().get_blob_client(self.container, key)
        blob.upload_blob(data, overwrite=True, content_settings=ContentSettings(content_type=content_type))

    def _get(self, key: str) -> bytes:
        data: bytes = self._service().get_blob_client(self.container, key).download_blob().readall()
        return data

    def _exists(self, key: str) -> bool:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self._service().get_blob_client(self.container, key).get_blob_properties()
        except ResourceNotFoundError as exc:
            if _error_code(exc) == "ContainerNotFound":
                raise  # not "no such blob": _explain names the missing container
            return False
        return True

    def _explain(self, exc: Exception) -> str:
        """Why the SDK raised ``exc`` and the fix; never quotes credentials."""
        from azure.core.exceptions import ClientAuthenticationError, ResourceNotFoundError, ServiceRequestError

        code = _error_code(exc)
        status = getattr(exc, "status_code", None)
        if isinstance(exc, ResourceNotFoundError) and code == "ContainerNotFound":
            return (
                f"the container {self.container!r} does not exist; create it "
                f"(az storage container create --name {self.container}) or fix the name"
            )
        if isinstance(exc, ResourceNotFoundError):
            return "the blob does not exist; was it deleted or renamed? register the flow again"
        if isinstance(exc, ClientAuthenticationError) or code in _AUTH_CODES or status == 401:
            return (
                f"the service refused the credentials ({code or 'authentication failed'}); check the "
                "connection string's AccountName and AccountKey (or SAS token)"
            )
        if isinstance(exc, ServiceRequestError):
            return (
                "the storage service can't be reached; check the connection string's endpoint and the "
                "network (is the account or Azurite up?)"
            )
        return f"the service answered {status} {code or type(exc).__name__}; check the container's access"


def _error_code(exc: Exception) -> str | None:
    """The service's error code (``"BlobNotFound"``), from the SDK's enum or string."""
    code = getattr(exc, "error_code", None)
    return None if code is None else str(getattr(code, "value", code))
