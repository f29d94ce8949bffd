"""Azure storage: flows kept as blobs in an Azure Blob Storage container.

Pickle mode (the default) uploads each flow's versioned payload (``payload.py``)
to ``blob_name`` or ``<flow-slug>/<UTC time>-<id>``. Script mode
(``stored_as_script=True``) keeps the flow's ``.py`` source in the blob
``blob_name`` (uploaded from ``path`` when given) and runs it to load the flow
(``script.py``). The contract is ``base.py``; ``docs/storage-azure.md`` is the
user's side, and ``tests/storage/test_azure.py`` runs it against Azurite.

``azure.storage.blob`` (the ``azure`` extra) is imported only when a blob is
read or written. The connection string never leaves this object: it is not in
``serialize()``, ``repr`` or any error message.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

from pydantic import SecretStr

from headwater.core.flow import Flow
from headwater.storage.base import Storage
from headwater.storage.errors import StorageError
from headwater.storage.local import slugify, stamp

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


class Azure(Storage):
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
            ``<flow-slug>/<UTC time>-<id>``), or the script's blob in script mode.
        stored_as_script: keep the flow's ``.py`` source in ``blob_name``.
        path: with ``stored_as_script``, a local ``.py`` file uploaded to
            ``blob_name`` at ``add_flow``; without it the blob must already hold the script.
        secrets: names of secrets flows kept here need.
        labels: labels for the flows' runs.
        add_default_labels: accepted for symmetry; Azure has no default labels.
    """

    kind: ClassVar[str] = "azure"

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
        super().__init__(
            secrets=secrets, labels=labels, add_default_labels=add_default_labels, stored_as_script=stored_as_script
        )
        if not isinstance(container, str) or not container.strip():
            raise StorageError(f"Azure storage needs a container name (a non-empty string), not {container!r}")
        self.container = container
        self._connection_string = SecretStr(connection_string) if connection_string else None
        self.connection_string_secret = connection_string_secret or None
        self.blob_name = blob_name or None
        self.path: str | None = os.path.abspath(os.path.expanduser(os.fspath(path))) if path is not None else None
        if stored_as_script and not self.blob_name:
            raise StorageError("Azure(stored_as_script=True) needs blob_name= (the blob holding the flow's .py file)")
        if self.path is not None and not stored_as_script:
            raise StorageError("Azure storage's path= is the flow's .py file to upload and needs stored_as_script=True")
        self._client: BlobServiceClient | None = None

    def __getstate__(self) -> dict[str, Any]:
        # A flow carries its storage when pickled (into the blob itself): neither the client
        # nor a literal connection string may travel with it.
        state = dict(self.__dict__)
        state["_client"] = None
        state["_connection_string"] = None
        return state

    # -- hooks ---------------------------------------------------------------------

    def describe(self) -> str:
        where = f"{SCHEME}{self.container}"
        if self.stored_as_script:
            where += f"/{self.blob_name}"
        return f"Azure storage {where}"

    def credential_secrets(self) -> list[str]:
        return [self.connection_string_secret] if self.connection_string_secret else []

    def spec_args(self) -> dict[str, Any]:
        return {
            "container": self.container,
            "connection_string_secret": self.connection_string_secret,
            "blob_name": self.blob_name,
            "stored_as_script": self.stored_as_script,
            "path": self.path,
            **super().spec_args(),
        }

    def save_flow(self, flow: Flow) -> str:
        if self.stored_as_script:
            assert self.blob_name is not None
            from headwater.storage.script import extract_flow_from_file

            if self.path is not None:
                extract_flow_from_file(path=self.path, flow_name=flow.name)
                try:
                    with open(self.path, "rb") as f:
                        data = f.read()
                except OSError as exc:
                    raise StorageError(f"can't read flow file {self.path}: {exc}; check the path") from exc
                self._upload(self.blob_name, data, flow.name)
            else:
                contents = self._download(self.blob_name).decode("utf-8")
                extract_flow_from_file(path=self.url(self.blob_name), contents=contents, flow_name=flow.name)
            return self.blob_name
        from headwater.storage.payload import flow_to_bytes

        data = flow_to_bytes(flow)
        blob = self.blob_name or f"{slugify(flow.name)}/{stamp()}"
        self._upload(blob, data, flow.name)
        return blob

    def load_flow(self, location: str, flow_name: str | None) -> Flow:
        blob = location[len(f"{SCHEME}{self.container}/") :] if location.startswith(SCHEME) else location
        data = self._download(blob)
        if self.stored_as_script or blob.endswith(".py"):
            from headwater.storage.script import extract_flow_from_file

            try:
                contents = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise StorageError(f"{self.url(blob)} is not a UTF-8 .py file: {exc}") from exc
            return extract_flow_from_file(path=self.url(blob), contents=contents, flow_name=flow_name)
        from headwater.storage.payload import flow_from_bytes

        return flow_from_bytes(data, source=self.url(blob))

    def locate(self, key: str) -> str | None:
        """``azure://<container>/<blob>`` of this container, or an existing blob's name."""
        if key.startswith(f"{SCHEME}{self.container}/"):
            return key
        if key.startswith(SCHEME):
            raise StorageError(
                f"{key} is not in {self.describe()}'s container {self.container!r}; "
                "use an Azure storage of that container"
            )
        if "/" in key or key.endswith(".py"):
            return key if self._exists(key) else None
        return None

    def build(self) -> Storage:
        """Check that the container is reachable and every flow's blob is there."""
        gone = [f"{name!r} ({self.url(blob)})" for name, blob in self.flows.items() if not self._exists(blob)]
        if gone:
            raise StorageError(f"{self.describe()}: the blob(s) of flow(s) {', '.join(gone)} are gone; add them again")
        return self

    # -- Azure ---------------------------------------------------------------------

    def url(self, blob: str) -> str:
        """How errors name a blob: ``azure://<container>/<blob>``."""
        return f"{SCHEME}{self.container}/{blob}"

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
        return self._client

    def _upload(self, blob: str, data: bytes, flow_name: str) -> None:
        from azure.core.exceptions import AzureError

        client = self._service().get_blob_client(self.container, blob)
        try:
            client.upload_blob(data, overwrite=True)
        except AzureError as exc:
            self._fail(exc, blob, f"can't upload flow {flow_name!r} to")

    def _download(self, blob: str) -> bytes:
        from azure.core.exceptions import AzureError

        client = self._service().get_blob_client(self.container, blob)
        try:
            return client.download_blob().readall()
        except AzureError as exc:
            self._fail(exc, blob, "can't read flow blob")

    def _exists(self, blob: str) -> bool:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        client = self._service().get_blob_client(self.container, blob)
        try:
            client.get_blob_properties()
        except ResourceNotFoundError as exc:
            if _error_code(exc) == "ContainerNotFound":
                self._fail(exc, blob, "can't look for")
            return False
        except AzureError as exc:
            self._fail(exc, blob, "can't look for")
        return True

    def _fail(self, exc: Exception, blob: str, doing: str) -> NoReturn:
        """Raise the StorageError that explains ``exc`` and its fix; never quotes credentials."""
        from azure.core.exceptions import ClientAuthenticationError, ResourceNotFoundError, ServiceRequestError

        where = f"{self.url(blob)} of {self.describe()}"
        code = _error_code(exc)
        status = getattr(exc, "status_code", None)
        if isinstance(exc, ResourceNotFoundError) and code == "ContainerNotFound":
            why = (
                f"the container {self.container!r} does not exist; create it "
                f"(az storage container create --name {self.container}) or fix the name"
            )
        elif isinstance(exc, ResourceNotFoundError):
            why = "the blob does not exist; was it deleted or renamed? register the flow again"
        elif isinstance(exc, ClientAuthenticationError) or code in _AUTH_CODES or status == 401:
            why = (
                f"the service refused the credentials ({code or 'authentication failed'}); check the "
                "connection string's AccountName and AccountKey (or SAS token)"
            )
        elif isinstance(exc, ServiceRequestError):
            why = (
                "the storage service can't be reached; check the connection string's endpoint and the "
                "network (is the account or Azurite up?)"
            )
        else:
            why = f"the service answered {status} {code or type(exc).__name__}; check the container's access"
        raise StorageError(f"{doing} {where}: {why}") from None


def _error_code(exc: Exception) -> str | None:
    """The service's error code (``"BlobNotFound"``), from the SDK's enum or string."""
    code = getattr(exc, "error_code", None)
    return None if code is None else str(getattr(code, "value", code))
