"""GCS storage: flows kept as objects in a Google Cloud Storage bucket.

Pickle mode (the default) uploads each flow as a versioned payload
(``payload.py``) to ``key``, or to ``<flow-slug>/<UTC time>-<id>.headwater``.
Script mode (``stored_as_script=True``) uploads the ``.py`` file at
``local_script_path`` and runs the downloaded source to load the flow
(``script.py``). A flow's location is its ``gs://bucket/key`` URL.

``google-cloud-storage`` (the ``gcp`` extra) is imported only when the bucket
is first used. Credentials: with ``STORAGE_EMULATOR_HOST`` set (an emulator,
as in the tests) the client is anonymous; otherwise Google's Application
Default Credentials are used (``GOOGLE_APPLICATION_CREDENTIALS``, ``gcloud auth
application-default login``, or the metadata server). No credential is ever
kept on the storage, in its spec or in its errors. The contract is ``base.py``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, ClassVar, NoReturn

from headwater.core.flow import Flow
from headwater.storage.base import Storage
from headwater.storage.errors import StorageError
from headwater.storage.local import SUFFIX, slugify

EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
#: the project an anonymous (emulator) client reports when none is given.
EMULATOR_PROJECT = "headwater-emulator"


class GCS(Storage):
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
            secrets=secrets,
            labels=labels,
            add_default_labels=add_default_labels,
            stored_as_script=stored_as_script,
        )
        if not isinstance(bucket, str) or not bucket or "/" in bucket:
            raise StorageError(f"GCS storage needs a bucket name like 'my-flows' (no gs://, no '/'), not {bucket!r}")
        if key is not None and (not isinstance(key, str) or not key.strip("/")):
            raise StorageError(f"GCS storage key must be an object name like 'flows/etl', not {key!r}")
        if not isinstance(timeout, int | float) or timeout <= 0:
            raise StorageError(f"GCS storage timeout must be a positive number of seconds, not {timeout!r}")
        self.bucket = bucket
        self.key = key.lstrip("/") if key is not None else None
        self.project = project
        self.timeout = float(timeout)
        self.local_script_path: str | None = None
        if local_script_path is not None:
            if not stored_as_script:
                raise StorageError(
                    "GCS storage's local_script_path= is the flow's .py file to upload and needs "
                    "stored_as_script=True; pickled flows are uploaded without it"
                )
            self.local_script_path = os.path.abspath(os.path.expanduser(os.fspath(local_script_path)))
        elif stored_as_script:
            raise StorageError("GCS(stored_as_script=True) needs local_script_path= (the .py file to upload)")
        self._client: Any = None

    def __getstate__(self) -> dict[str, Any]:
        # A flow carries its storage when pickled; the client can't (and needn't) travel with it.
        state = dict(self.__dict__)
        state["_client"] = None
        return state

    # -- hooks ---------------------------------------------------------------------

    def describe(self) -> str:
        where = f"gs://{self.bucket}/{self.key}" if self.key else f"gs://{self.bucket}"
        return f"GCS storage {where}" + (f" (script {self.local_script_path})" if self.stored_as_script else "")

    def spec_args(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "key": self.key,
            "project": self.project,
            "stored_as_script": self.stored_as_script,
            "local_script_path": self.local_script_path,
            "timeout": self.timeout,
            **super().spec_args(),
        }

    def save_flow(self, flow: Flow) -> str:
        stamp = f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}-{uuid.uuid4().hex[:8]}"
        if self.stored_as_script:
            assert self.local_script_path is not None
            from headwater.storage.script import extract_flow_from_file

            try:
                with open(self.local_script_path, encoding="utf-8") as f:
                    source = f.read()
            except (OSError, UnicodeDecodeError) as exc:
                raise StorageError(
                    f"can't read flow file {self.local_script_path} to upload to {self.describe()}: {exc}; "
                    "check local_script_path="
                ) from exc
            extract_flow_from_file(path=self.local_script_path, contents=source, flow_name=flow.name)
            key = self.key or f"{slugify(flow.name)}/{stamp}.py"
            data, content_type = source.encode("utf-8"), "text/x-python"
        else:
            key = self.key or f"{slugify(flow.name)}/{stamp}{SUFFIX}"
            location = self._url(key)
            taken = [name for name, loc in self.flows.items() if loc == location]
            if taken:
                raise StorageError(
                    f"{location} already holds flow {taken[0]!r} of {self.describe()}, and a pickle-mode "
                    f"key holds one flow; leave key= unset to give flow {flow.name!r} its own object"
                )
            from headwater.storage.payload import flow_to_bytes

            data, content_type = flow_to_bytes(flow), "application/json"
        location = self._url(key)
        blob = self._bucket().blob(key)
        try:
            blob.upload_from_string(data, content_type=content_type, timeout=self.timeout, retry=self._retry())
        except Exception as exc:
            self._raise(exc, f"can't upload flow {flow.name!r} to {location}")
        return location

    def load_flow(self, location: str, flow_name: str | None) -> Flow:
        key = self._key_of(location)
        blob = self._bucket().blob(key)
        try:
            data: bytes = blob.download_as_bytes(timeout=self.timeout, retry=self._retry())
        except Exception as exc:
            self._raise(exc, f"can't download flow {flow_name or location!r} from {location}", blob=True)
        if location.endswith(".py") or (self.stored_as_script and not location.endswith(SUFFIX)):
            from headwater.storage.script import extract_flow_from_file

            try:
                source = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise StorageError(f"{location} of {self.describe()} is not a UTF-8 .py file: {exc}") from exc
            return extract_flow_from_file(path=location, contents=source, flow_name=flow_name)
        from headwater.storage.payload import flow_from_bytes

        return flow_from_bytes(data, source=location)

    def locate(self, key: str) -> str | None:
        """A ``gs://<this bucket>/...`` URL is its own location."""
        return key if key.startswith(f"gs://{self.bucket}/") and len(key) > len(self.bucket) + 6 else None

    def build(self) -> Storage:
        """Check that every flow's object is still in the bucket."""
        gone = []
        for name, location in self.flows.items():
            blob = self._bucket().blob(self._key_of(location))
            try:
                exists = blob.exists(timeout=self.timeout, retry=self._retry())
            except Exception as exc:
                self._raise(exc, f"can't check flow {name!r} at {location}")
            if not exists:
                gone.append(f"{name!r} ({location})")
        if gone:
            raise StorageError(
                f"{self.describe()}: the object(s) of flow(s) {', '.join(gone)} are gone; register them again"
            )
        return self

    # -- the client ----------------------------------------------------------------

    def _url(self, key: str) -> str:
        return f"gs://{self.bucket}/{key}"

    def _key_of(self, location: str) -> str:
        prefix = f"gs://{self.bucket}/"
        if not location.startswith(prefix):
            raise StorageError(f"{location} is not in {self.describe()}; its locations start with {prefix}")
        return location[len(prefix) :]

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

    def _raise(self, exc: Exception, doing: str, blob: bool = False) -> NoReturn:
        """Turn a client failure into a StorageError naming the backend, the URL and the fix."""
        from google.api_core import exceptions as api
        from google.auth.exceptions import GoogleAuthError

        what = f"{doing} ({self.describe()})"
        if isinstance(exc, StorageError):
            raise exc
        if isinstance(exc, api.NotFound):
            if blob and self._bucket_exists():
                raise StorageError(
                    f"{what}: there is no such object; was it deleted or never uploaded? register the flow again"
                ) from exc
            raise StorageError(
                f"{what}: bucket {self.bucket!r} does not exist at {self._endpoint()}; create it "
                f"(`gcloud storage buckets create gs://{self.bucket}`) or check the name"
            ) from exc
        if isinstance(exc, api.Unauthorized | api.Forbidden | GoogleAuthError):
            raise StorageError(
                f"{what}: access denied ({type(exc).__name__}); check that the credentials "
                f"(GOOGLE_APPLICATION_CREDENTIALS or gcloud's) may read and write objects in gs://{self.bucket}"
            ) from exc
        if isinstance(exc, api.RetryError | api.DeadlineExceeded | ConnectionError | TimeoutError) or _is_network(exc):
            raise StorageError(
                f"{what}: can't reach GCS at {self._endpoint()} within {self.timeout:g}s; check the network"
                + (f", or that the emulator at {EMULATOR_ENV} is running" if os.environ.get(EMULATOR_ENV) else "")
            ) from exc
        raise StorageError(f"{what}: {type(exc).__name__}: {exc}") from exc

    def _bucket_exists(self) -> bool:
        try:
            return bool(self._bucket().exists(timeout=self.timeout, retry=self._retry()))
        except Exception:
            return True  # unknown: report the object as missing rather than guess at the bucket


def _is_network(exc: BaseException) -> bool:
    """Whether ``exc`` is a requests connection error or timeout (requests comes with the client)."""
    import requests

    return isinstance(exc, requests.ConnectionError | requests.Timeout)
