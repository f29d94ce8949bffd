"""GCS storage: flows kept as objects in a Google Cloud Storage bucket.

Pickle mode (the default) uploads each flow as a versioned payload
(``payload.py``) to ``key``, or to ``<flow-slug>/<UTC time>-<id>.headwater``.
Script mode (``stored_as_script=True``) uploads the ``.py`` file at
``local_script_path`` and runs the downloaded source to load the flow
(``script.py``). A flow's location is its ``gs://bucket/key`` URL. All of
that is shared with S3 storage in ``objects.py``; this module holds what is
GCS's own: the client and its calls, its timeout and its errors.

``google-cloud-storage`` (the ``gcp`` extra) is imported only when the bucket
is first used. Credentials: with ``STORAGE_EMULATOR_HOST`` set (an emulator,
as in the tests) the client is anonymous; otherwise Google's Application
Default Credentials are used (``GOOGLE_APPLICATION_CREDENTIALS``, ``gcloud auth
application-default login``, or the metadata server). No credential is ever
kept on the storage, in its spec or in its errors. The contract is ``base.py``;
``docs/storage-gcs.md`` is the user's side, and ``tests/storage/test_gcs.py``
runs it against gcp-storage-emulator.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, ClassVar

from headwater.storage.errors import StorageError
from headwater.storage.objects import ObjectStorage

EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
#: the project an anonymous (emulator) client reports when none is given.
EMULATOR_PROJECT = "headwater-emulator"


class GCS(ObjectStorage):
    """Keeps flows as objects in a GCS bucket, so agents anywhere with access can load them.

    Args:
        bucket: the bucket's name (it must exist).
        key: the object to write; default ``<flow-slug>/<UTC time>-<id>.headwater``
            (``.py`` in script mode). A pickle-mode ``key`` holds one flow.
        project: the Google Cloud project of the client; default the one of the
            credentials.
        stored_as_script: upload the flow's ``.py`` file instead of a pickle.
        local_script_path: the ``.py`` file to upload, with ``stored_as_script=True``.
        timeout: seconds each call to GCS may take, retries included, so an
            unreachable endpoint fails fast.
        secrets: names of secrets flows kept here need.
        labels: labels for the flows' runs.
        add_default_labels: GCS storage has no default labels; kept for the contract.
    """

    kind: ClassVar[str] = "gcs"
    scheme: ClassVar[str] = "gs://"
    key_noun: ClassVar[str] = "object name"

    def __init__(
        self,
        bucket: str,
        key: str | None = None,
        project: str | None = None,
        stored_as_script: bool = False,
        local_script_path: str | os.PathLike[str] | None = None,
        timeout: float = 30.0,
        *,
        secrets: Iterable[str] | None = None,
        labels: Iterable[str] | None = None,
        add_default_labels: bool = True,
    ) -> None:
        super().__init__(
            bucket,
            key,
            stored_as_script,
            local_script_path,
            secrets=secrets,
            labels=labels,
            add_default_labels=add_default_labels,
        )
        if not isinstance(timeout, int | float) or timeout <= 0:
            raise StorageError(f"GCS storage timeout must be a positive number of seconds, not {timeout!r}")
        self.project = project
        self.timeout = float(timeout)

    def spec_args(self) -> dict[str, Any]:
        return {**super().spec_args(), "project": self.project, "timeout": self.timeout}

    # -- the object store's hooks ------------------------------------------------------

    def _put(self, key: str, data: bytes, content_type: str) -> None:
        blob = self._bucket().blob(key)
        blob.upload_from_string(data, content_type=content_type, timeout=self.timeout, retry=self._retry())

    def _get(self, key: str) -> bytes:
        data: bytes = self._bucket().blob(key).download_as_bytes(timeout=self.timeout, retry=self._retry())
        return data

    def _exists(self, key: str) -> bool:
        # The client answers False for a missing object and raises NotFound for a missing bucket.
        return bool(self._bucket().blob(key).exists(timeout=self.timeout, retry=self._retry()))

    def _explain(self, exc: Exception) -> str:
        from google.api_core import exceptions as api
        from google.auth.exceptions import GoogleAuthError

        if isinstance(exc, api.NotFound):
            if self._bucket_exists():
                return "there is no such object; was it deleted or never uploaded? register the flow again"
            return (
                f"bucket {self.bucket!r} does not exist at {self._endpoint()}; create it "
                f"(`gcloud storage buckets create gs://{self.bucket}`) or check the name"
            )
        if isinstance(exc, api.Unauthorized | api.Forbidden | GoogleAuthError):
            return (
                f"access denied ({type(exc).__name__}); check that the credentials "
                f"(GOOGLE_APPLICATION_CREDENTIALS or gcloud's) may read and write objects in gs://{self.bucket}"
            )
        if isinstance(exc, api.RetryError | api.DeadlineExceeded | ConnectionError | TimeoutError) or _is_network(exc):
            emulator = f", or that the emulator at {EMULATOR_ENV} is running" if os.environ.get(EMULATOR_ENV) else ""
            return f"can't reach GCS at {self._endpoint()} within {self.timeout:g}s; check the network{emulator}"
        return f"{type(exc).__name__}: {exc}"

    # -- the client ----------------------------------------------------------------

    def _endpoint(self) -> str:
        return os.environ.get(EMULATOR_ENV) or "https://storage.googleapis.com"

    def _retry(self) -> Any:
        from google.cloud.storage.retry import DEFAULT_RETRY

        return DEFAULT_RETRY.with_timeout(self.timeout)

    def _bucket(self) -> Any:
        """The bucket handle; the client is made on first use and never serialized."""
        if self._client is None:
            from google.auth.exceptions import GoogleAuthError
            from google.cloud import storage

            try:
                if os.environ.get(EMULATOR_ENV):
                    from google.auth.credentials import AnonymousCredentials

                    self._client = storage.Client(
                        project=self.project or EMULATOR_PROJECT, credentials=AnonymousCredentials()
                    )
                else:
                    self._client = storage.Client(project=self.project)
            except GoogleAuthError as exc:
                raise StorageError(
                    f"{self.describe()} found no usable Google Cloud credentials ({type(exc).__name__}); "
                    "set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file, run "
                    "`gcloud auth application-default login`, or set STORAGE_EMULATOR_HOST for an emulator"
                ) from exc
        return self._client.bucket(self.bucket)

    def _bucket_exists(self) -> bool:
        try:
            return bool(self._bucket().exists(timeout=self.timeout, retry=self._retry()))
        except Exception:
            return True  # unknown: report the object as missing rather than guess at the bucket


def _is_network(exc: BaseException) -> bool:
    """Whether ``exc`` is a requests connection error or timeout (requests comes with the client)."""
    import requests

    return isinstance(exc, requests.ConnectionError | requests.Timeout)
