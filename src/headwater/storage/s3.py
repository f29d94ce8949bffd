"""S3 storage: flows kept as objects in an Amazon S3 bucket (or any S3-compatible service).

Pickle mode (the default) uploads each flow as a versioned payload
(``payload.py``) to ``key``, or to ``<flow-slug>/<UTC time>-<id>.headwater``.
Script mode (``stored_as_script=True``) uploads the ``.py`` file at
``local_script_path`` and runs the downloaded source to load the flow
(``script.py``). A flow's location is its ``s3://bucket/key`` URL.

``boto3`` (the ``aws`` extra) is imported only when the bucket is first used.
Credentials come only from the standard AWS chain (``AWS_ACCESS_KEY_ID`` and
friends, a profile, an instance or task role): ``client_options`` refuses
credential keys, so no credential is ever in the spec, ``repr`` or an error.
The client gets short timeouts and few retries, so a dead endpoint fails in
seconds. The contract is ``base.py``; ``docs/storage-s3.md`` is the user's side,
and ``tests/storage/test_s3.py`` runs it against ``moto_server``.
"""

from __future__ import annotations

import functools
import json
import os
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, NoReturn
from urllib.parse import urlsplit

from headwater.core.flow import Flow
from headwater.storage.base import Storage
from headwater.storage.errors import StorageError
from headwater.storage.local import SUFFIX, slugify

SCHEME = "s3://"
#: ``client_options`` keys that would put a credential into the spec: refused.
CREDENTIAL_OPTIONS = frozenset({"aws_access_key_id", "aws_secret_access_key", "aws_session_token"})
#: the other keyword arguments of ``boto3.client("s3", ...)``; ``config`` is S3 storage's own.
CLIENT_OPTIONS = frozenset({"region_name", "endpoint_url", "use_ssl", "verify", "api_version", "aws_account_id"})
#: ``upload_options`` S3 storage sets itself, and the one that is a secret (an SSE-C key).
RESERVED_UPLOAD_OPTIONS = frozenset({"Bucket", "Key", "Body", "SSECustomerKey"})

# Fail fast: an unreachable endpoint should be a clear error in seconds, not minutes of retries.
CONNECT_TIMEOUT = 5
READ_TIMEOUT = 30
ATTEMPTS = 2

# Error codes of a request signed with credentials S3 does not accept.
_REFUSED = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "TokenRefreshRequired"}
# Error codes of a request S3 won't serve to these credentials (HEAD answers a bare 403).
_DENIED = {"AccessDenied", "AllAccessDisabled", "AccountProblem", "403", "Forbidden"}


class S3(Storage):
    """Keeps flows as objects in an S3 bucket, so agents anywhere with access can load them.

    Args:
        bucket: the bucket's name (it must exist).
        key: the object to write; default ``<flow-slug>/<UTC time>-<id>.headwater``
            (``.py`` in script mode). A pickle-mode ``key`` holds one flow.
        stored_as_script: upload the flow's ``.py`` file instead of a pickle.
        local_script_path: the ``.py`` file to upload, with ``stored_as_script=True``.
        client_options: keyword arguments of ``boto3.client("s3", ...)`` as plain
            JSON values (``endpoint_url``, ``region_name``, ``verify``, ...); never
            credentials, which come from the AWS environment variables or a profile.
        upload_options: extra arguments of ``put_object`` (``ServerSideEncryption``,
            ``ContentType``, ``Metadata``, ...), as JSON values.
        secrets: names of secrets flows kept here need.
        labels: labels for the flows' runs.
        add_default_labels: S3 storage has no default labels; kept for the contract.
    """

    kind: ClassVar[str] = "s3"

    def __init__(
        self,
        bucket: str,
        key: str | None = None,
        stored_as_script: bool = False,
        local_script_path: str | os.PathLike[str] | None = None,
        client_options: Mapping[str, Any] | None = None,
        upload_options: Mapping[str, Any] | None = None,
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
            raise StorageError(f"S3 storage needs a bucket name like 'my-flows' (no s3://, no '/'), not {bucket!r}")
        if key is not None and (not isinstance(key, str) or not key.strip("/")):
            raise StorageError(f"S3 storage key must be an object key like 'flows/etl', not {key!r}")
        self.bucket = bucket
        self.key = key.lstrip("/") if key is not None else None
        self.client_options = _client_options(client_options)
        self.upload_options = _upload_options(upload_options)
        self.local_script_path: str | None = None
        if local_script_path is not None:
            if not stored_as_script:
                raise StorageError(
                    "S3 storage's local_script_path= is the flow's .py file to upload and needs "
                    "stored_as_script=True; pickled flows are uploaded without it"
                )
            self.local_script_path = os.path.abspath(os.path.expanduser(os.fspath(local_script_path)))
        elif stored_as_script:
            raise StorageError("S3(stored_as_script=True) needs local_script_path= (the .py file to upload)")
        self._client: Any = None

    def __getstate__(self) -> dict[str, Any]:
        # A flow carrying this storage is pickled with it; a boto3 client can't be.
        state = dict(self.__dict__)
        state["_client"] = None
        return state

    # -- hooks ---------------------------------------------------------------------

    def describe(self) -> str:
        where = self._url(self.key) if self.key else f"{SCHEME}{self.bucket}"
        return f"S3 storage {where}" + (f" (script {self.local_script_path})" if self.stored_as_script else "")

    def spec_args(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "key": self.key,
            "stored_as_script": self.stored_as_script,
            "local_script_path": self.local_script_path,
            "client_options": dict(self.client_options),
            "upload_options": dict(self.upload_options),
            **super().spec_args(),
        }

    def save_flow(self, flow: Flow) -> str:
        stamp = f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}-{uuid.uuid4().hex[:8]}"
        if self.stored_as_script:
            key = self.key or f"{slugify(flow.name)}/{stamp}.py"
            data, content_type = self._checked_script(flow, self._url(key)), "text/x-python"
        else:
            key = self.key or f"{slugify(flow.name)}/{stamp}{SUFFIX}"
            taken = [name for name, loc in self.flows.items() if loc == self._url(key)]
            if taken:
                raise StorageError(
                    f"{self._url(key)} already holds flow {taken[0]!r} of {self.describe()}, and a pickle-mode "
                    f"key holds one flow; leave key= unset to give flow {flow.name!r} its own object"
                )
            from headwater.storage.payload import flow_to_bytes

            data, content_type = flow_to_bytes(flow), "application/json"
        options = {"ContentType": content_type, **self.upload_options}
        try:
            self._s3().put_object(Bucket=self.bucket, Key=key, Body=data, **options)
        except Exception as exc:
            self._raise(exc, f"can't upload flow {flow.name!r} to {self._url(key)}")
        return self._url(key)

    def load_flow(self, location: str, flow_name: str | None) -> Flow:
        key = self._key_of(location)
        try:
            data: bytes = self._s3().get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except Exception as exc:
            self._raise(
                exc, f"can't download flow {flow_name!r} from {location}" if flow_name else f"can't download {location}"
            )
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
        """An ``s3://<this bucket>/<key>`` URL is its own location; another bucket's is refused."""
        if not key.startswith(SCHEME):
            return None
        bucket, _, name = key[len(SCHEME) :].partition("/")
        if bucket != self.bucket:
            raise StorageError(
                f"{key} is in bucket {bucket!r}, not in {self.describe()}; load it with S3(bucket={bucket!r})"
            )
        if not name.strip("/"):
            raise StorageError(f"{key} names no object of {self.describe()}; a location is s3://{self.bucket}/<key>")
        return key

    def build(self) -> Storage:
        """Check that every flow's object is still in the bucket."""
        gone = [f"{name!r} ({location})" for name, location in self.flows.items() if not self._exists(name, location)]
        if gone:
            raise StorageError(
                f"{self.describe()}: the object(s) of flow(s) {', '.join(gone)} are gone; register them again"
            )
        return self

    # -- the client ----------------------------------------------------------------

    def _url(self, key: str) -> str:
        return f"{SCHEME}{self.bucket}/{key}"

    def _key_of(self, location: str) -> str:
        prefix = f"{SCHEME}{self.bucket}/"
        if not location.startswith(prefix) or len(location) == len(prefix):
            raise StorageError(f"{location} is not in {self.describe()}; its locations start with {prefix}")
        return location[len(prefix) :]

    def _checked_script(self, flow: Flow, location: str) -> bytes:
        """The script's bytes, once it is known to build ``flow`` and every flow already at ``location``."""
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
        # Uploading replaces the object: it must still build the flows registered from it.
        for name in sorted(n for n, loc in self.flows.items() if loc == location):
            try:
                extract_flow_from_file(path=self.local_script_path, contents=source, flow_name=name)
            except StorageError as exc:
                raise StorageError(
                    f"{location} already holds flow {name!r} of {self.describe()}, and uploading "
                    f"{self.local_script_path} over it would lose that flow ({exc}); keep flow {name!r} "
                    "in the file, or leave key= unset to give each upload its own object"
                ) from exc
        return source.encode("utf-8")

    def _s3(self) -> Any:
        """The boto3 S3 client: made on first use, from a session of its own, never serialized."""
        if self._client is None:
            import boto3
            import botocore.session
            from botocore.config import Config
            from botocore.exceptions import BotoCoreError

            config = Config(
                connect_timeout=CONNECT_TIMEOUT,
                read_timeout=READ_TIMEOUT,
                retries={"total_max_attempts": ATTEMPTS, "mode": "standard"},
            )
            try:
                # A session per storage, as boto3's default one keeps the first credentials and settings it
                # read for the whole process; the parsed service models are shared (~0.2 s per client).
                core = botocore.session.Session()
                core.register_component("data_loader", _model_loader())
                session = boto3.session.Session(botocore_session=core)
                self._client = session.client("s3", config=config, **self.client_options)
            except (BotoCoreError, ValueError) as exc:
                raise StorageError(
                    f"{self.describe()} can't make its S3 client ({type(exc).__name__}: {exc}); check "
                    "client_options= and the AWS variables (AWS_PROFILE, AWS_DEFAULT_REGION, AWS_ENDPOINT_URL)"
                ) from exc
        return self._client

    def _endpoint(self) -> str:
        if self._client is not None:
            return str(self._client.meta.endpoint_url)
        return str(self.client_options.get("endpoint_url") or "the AWS endpoint")

    def _exists(self, name: str, location: str) -> bool:
        key = self._key_of(location)
        try:
            self._s3().head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if _code(exc) not in ("404", "NoSuchKey", "NotFound"):
                self._raise(exc, f"can't check flow {name!r} at {location}")
            if not self._bucket_exists():
                self._raise(exc, f"can't check flow {name!r} at {location}", bucket_gone=True)
            return False
        return True

    def _bucket_exists(self) -> bool:
        try:
            self._s3().head_bucket(Bucket=self.bucket)
        except Exception as exc:
            return _code(exc) not in ("404", "NoSuchBucket", "NotFound")  # unknown: don't guess at the bucket
        return True

    def _raise(self, exc: Exception, doing: str, bucket_gone: bool = False) -> NoReturn:
        """Turn a client failure into a StorageError naming the backend, the URL and the fix.

        Only the error's code and type are quoted, never a request's headers or credentials.
        """
        from botocore import exceptions as boto

        what = f"{doing} ({self.describe()})"
        if isinstance(exc, StorageError):
            raise exc
        code = _code(exc)
        if bucket_gone or code == "NoSuchBucket" or (code in ("404", "NotFound") and not self._bucket_exists()):
            why = (
                f"bucket {self.bucket!r} does not exist at {self._endpoint()}; create it "
                f"(`aws s3 mb s3://{self.bucket}`) or check the name"
            )
        elif code in ("NoSuchKey", "404", "NotFound"):
            why = "there is no such object; was it deleted or never uploaded? register the flow again"
        elif code in _REFUSED:
            why = (
                f"S3 refused the credentials ({code}); check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "(and AWS_SESSION_TOKEN), or the profile AWS_PROFILE names"
            )
        elif code in _DENIED:
            why = (
                f"access denied ({code}); check that the AWS credentials (environment, AWS_PROFILE or role) "
                f"are valid and may s3:GetObject, s3:PutObject and s3:ListBucket on bucket {self.bucket!r}"
            )
        elif isinstance(exc, boto.NoCredentialsError | boto.PartialCredentialsError):
            why = (
                f"no usable AWS credentials were found ({type(exc).__name__}); set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run with an instance or task role"
            )
        elif isinstance(exc, boto.ParamValidationError):
            why = f"upload_options= don't fit S3's PutObject: {' '.join(str(exc).split())}"
        elif isinstance(exc, boto.ConnectionError | boto.HTTPClientError):
            why = (
                f"can't reach S3 at {self._endpoint()} ({type(exc).__name__}, {ATTEMPTS} attempts); check "
                "endpoint_url= in client_options, AWS_ENDPOINT_URL or AWS_ENDPOINT_URL_S3, and the network"
            )
        elif isinstance(exc, boto.ClientError):
            message = exc.response.get("Error", {}).get("Message", "")
            why = f"S3 answered {code}: {message}"
        else:
            why = f"{type(exc).__name__}: {exc}"
        raise StorageError(f"{what}: {why}") from exc


@functools.cache
def _model_loader() -> Any:
    """botocore's loader of service models, shared by every S3 storage's session (it caches what it parsed)."""
    from botocore.loaders import create_loader

    return create_loader()


def _code(exc: BaseException) -> str | None:
    """A botocore ClientError's code (``"NoSuchKey"``, or ``"404"`` for a HEAD); None otherwise."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = response.get("Error", {}).get("Code") or response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return None if code is None else str(code)


def _json_options(options: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
        raise StorageError(f"S3 storage {what} must be a dict of keyword arguments, not {type(options).__name__}")
    for name, value in options.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            raise StorageError(
                f"S3 storage {what} must hold JSON values so the spec stays JSON; {name!r} is a {type(value).__name__}"
            ) from None
    return dict(options)


def _client_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``client_options`` checked: known keys, JSON values, and no credential anywhere."""
    checked = _json_options(options, "client_options")
    credentials = sorted(k for k in checked if k.lower() in CREDENTIAL_OPTIONS)
    endpoint = checked.get("endpoint_url")
    if isinstance(endpoint, str) and (urlsplit(endpoint).username or urlsplit(endpoint).password):
        credentials.append("endpoint_url with a user or password")
    if credentials:
        raise StorageError(
            f"S3 storage does not take credentials in client_options ({', '.join(credentials)}): they would "
            "travel in the flow's spec; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) "
            "in the environment, or use a profile (AWS_PROFILE) or an instance role instead"
        )
    unknown = sorted(set(checked) - CLIENT_OPTIONS)
    if unknown:
        hint = " (timeouts and retries are S3 storage's own)" if "config" in unknown else ""
        raise StorageError(
            f"S3 storage client_options has key(s) {', '.join(map(repr, unknown))} that boto3.client('s3') "
            f"does not take here{hint}; it takes: {', '.join(sorted(CLIENT_OPTIONS))}"
        )
    return checked


def _upload_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``upload_options`` checked: JSON values, none that S3 storage sets or that is a secret."""
    checked = _json_options(options, "upload_options")
    reserved = sorted(set(checked) & RESERVED_UPLOAD_OPTIONS)
    if reserved:
        raise StorageError(
            f"S3 storage upload_options can't set {', '.join(map(repr, reserved))}: Bucket, Key and Body come "
            "from the storage, and an SSE-C key is a secret the spec must not hold (use SSE-S3 or SSE-KMS: "
            "ServerSideEncryption='AES256' or 'aws:kms')"
        )
    return checked
