"""S3 storage: flows kept as objects in an Amazon S3 bucket (or any S3-compatible service).

Pickle mode (the default) uploads each flow as a versioned payload
(``payload.py``) to ``key``, or to ``<flow-slug>/<UTC time>-<id>.headwater``.
Script mode (``stored_as_script=True``) uploads the ``.py`` file at
``local_script_path`` and runs the downloaded source to load the flow
(``script.py``). A flow's location is its ``s3://bucket/key`` URL. All of
that is shared with GCS storage in ``objects.py``; this module holds what is
S3's own: the boto3 client and calls, its options and its errors.

``boto3`` (the ``aws`` extra) is imported only when the bucket is first used.
Credentials come only from the standard AWS chain (``AWS_ACCESS_KEY_ID`` and
friends, a profile, an instance or task role): ``client_options`` refuses
credential keys, so no credential is ever in the spec, ``repr`` or an error.
The client gets short timeouts and few retries, so a dead endpoint fails in
seconds. The contract is ``base.py``; ``docs/storage-s3.md`` is the user's side,
and ``tests/storage/test_s3.py`` runs it against ``moto_server``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

from headwater.storage.errors import StorageError
from headwater.storage.objects import ObjectStorage

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


class S3(ObjectStorage):
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
    scheme: ClassVar[str] = SCHEME

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
            bucket,
            key,
            stored_as_script,
            local_script_path,
            secrets=secrets,
            labels=labels,
            add_default_labels=add_default_labels,
        )
        self.client_options = _client_options(client_options)
        self.upload_options = _upload_options(upload_options)

    def spec_args(self) -> dict[str, Any]:
        return {
            **super().spec_args(),
            "client_options": dict(self.client_options),
            "upload_options": dict(self.upload_options),
        }

    # -- the object store's hooks ------------------------------------------------------

    def _put(self, key: str, data: bytes, content_type: str) -> None:
        options = {"ContentType": content_type, **self.upload_options}
        self._s3().put_object(Bucket=self.bucket, Key=key, Body=data, **options)

    def _get(self, key: str) -> bytes:
        data: bytes = self._s3().get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return data

    def _exists(self, key: str) -> bool:
        try:
            self._s3().head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            # A HEAD of a missing object and of a missing bucket both answer a bare 404.
            if _code(exc) in ("404", "NoSuchKey", "NotFound") and self._bucket_exists():
                return False
            raise
        return True

    def _explain(self, exc: Exception) -> str:
        from botocore import exceptions as boto

        code = _code(exc)
        if code == "NoSuchBucket" or (code in ("404", "NotFound") and not self._bucket_exists()):
            return (
                f"bucket {self.bucket!r} does not exist at {self._endpoint()}; create it "
                f"(`aws s3 mb s3://{self.bucket}`) or check the name"
            )
        if code in ("NoSuchKey", "404", "NotFound"):
            return "there is no such object; was it deleted or never uploaded? register the flow again"
        if code in _REFUSED:
            return (
                f"S3 refused the credentials ({code}); check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "(and AWS_SESSION_TOKEN), or the profile AWS_PROFILE names"
            )
        if code in _DENIED:
            return (
                f"access denied ({code}); check that the AWS credentials (environment, AWS_PROFILE or role) "
                f"are valid and may s3:GetObject, s3:PutObject and s3:ListBucket on bucket {self.bucket!r}"
            )
        if isinstance(exc, boto.NoCredentialsError | boto.PartialCredentialsError):
            return (
                f"no usable AWS credentials were found ({type(exc).__name__}); set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run with an instance or task role"
            )
        if isinstance(exc, boto.ParamValidationError):
            return f"upload_options= don't fit S3's PutObject: {' '.join(str(exc).split())}"
        if isinstance(exc, boto.ConnectionError | boto.HTTPClientError):
            return (
                f"can't reach S3 at {self._endpoint()} ({type(exc).__name__}, {ATTEMPTS} attempts); check "
                "endpoint_url= in client_options, AWS_ENDPOINT_URL or AWS_ENDPOINT_URL_S3, and the network"
            )
        if isinstance(exc, boto.ClientError):
            return f"S3 answered {code}: {exc.response.get('Error', {}).get('Message', '')}"
        return f"{type(exc).__name__}: {exc}"

    # -- the client ----------------------------------------------------------------

    def _s3(self) -> Any:
        """The boto3 S3 client: made on first use, from a session of its own, never serialized."""
        if self._client is None:
            import boto3
            import botocore.session
            from botocore.config import Config
            from botocore.exceptions import BotoCoreError

            from headwater.aws.session import model_loader

            config = Config(
                connect_timeout=CONNECT_TIMEOUT,
                read_timeout=READ_TIMEOUT,
                retries={"total_max_attempts": ATTEMPTS, "mode": "standard"},
            )
            try:
                # A session per storage, as boto3's default one keeps the first credentials and settings it
                # read for the whole process; the parsed service models are shared (~0.2 s per client).
                core = botocore.session.Session()
                core.register_component("data_loader", model_loader())
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

    def _bucket_exists(self) -> bool:
        try:
            self._s3().head_bucket(Bucket=self.bucket)
        except Exception as exc:
            return _code(exc) not in ("404", "NoSuchBucket", "NotFound")  # unknown: don't guess at the bucket
        return True


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
