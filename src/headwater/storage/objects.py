"""The half S3, GCS and Azure storage share: flows kept as objects at keys in a bucket.

:class:`ObjectStorage` does everything that is not a call to the service once —
checking ``bucket``/``key``/``local_script_path``, naming objects
``<flow-slug>/<UTC time>-<id>.headwater`` (``.py`` in script mode), the
one-flow-per-key rule, checking a script builds its flows before uploading it,
telling a script from a payload when loading, ``<scheme>bucket/key`` locations,
and ``build``'s check that every flow's object is still there. A backend
(``s3.py``, ``gcs.py``, ``azure.py``, whose bucket is a container and whose
objects are blobs) adds its SDK calls, its client and the translation of its
errors, through four hooks. In script mode the ``.py`` file is uploaded from
``local_script_path``, or — with a ``key`` and no ``local_script_path`` — the
object at ``key`` already holds it and is checked to build the flow. The Storage contract itself is ``base.py``;
payloads are ``payload.py``'s, scripts ``script.py``'s.
"""

from __future__ import annotations

import abc
import contextlib
import os
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

from headwater.core.flow import Flow
from headwater.storage.base import Storage
from headwater.storage.errors import StorageError
from headwater.storage.naming import SUFFIX, slugify, stamp


class ObjectStorage(Storage):
    """Keeps flows as objects in a bucket, so agents anywhere with access can load them.

    Args:
        bucket: the bucket's name (it must exist).
        key: the object to write; default ``<flow-slug>/<UTC time>-<id>.headwater``
            (``.py`` in script mode). A pickle-mode ``key`` holds one flow.
        stored_as_script: keep the flow's ``.py`` file instead of a pickle.
        local_script_path: the ``.py`` file to upload, with ``stored_as_script=True``;
            without it, ``key`` must name an object that already holds the script.
        secrets: names of secrets flows kept here need.
        labels: labels for the flows' runs.
        add_default_labels: object stores have no default labels; kept for the contract.
    """

    #: how locations start: ``"s3://"``, ``"gs://"``.
    scheme: ClassVar[str] = ""
    #: what the service calls a key, for the error a bad ``key=`` gets.
    key_noun: ClassVar[str] = "object key"
    #: what the service calls an object and a bucket, in messages.
    object_noun: ClassVar[str] = "object"
    bucket_noun: ClassVar[str] = "bucket"
    #: the constructor's names for ``bucket``, ``key`` and ``local_script_path`` (a backend may say
    #: ``container``, ``blob_name``, ``path``), for messages and the spec.
    argument_names: ClassVar[tuple[str, str, str]] = ("bucket", "key", "local_script_path")
    #: whether a location may be a bare key (older specs of a backend named objects so).
    bare_keys: ClassVar[bool] = False

    def __init__(
        self,
        bucket: str,
        key: str | None = None,
        stored_as_script: bool = False,
        local_script_path: str | os.PathLike[str] | None = None,
        *,
        secrets: Iterable[str] | None = None,
        labels: Iterable[str] | None = None,
        add_default_labels: bool = True,
    ) -> None:
        super().__init__(
            secrets=secrets, labels=labels, add_default_labels=add_default_labels, stored_as_script=stored_as_script
        )
        name = type(self).__name__
        _, key_arg, script_arg = self.argument_names
        if not isinstance(bucket, str) or not bucket or "/" in bucket:
            raise StorageError(
                f"{name} storage needs a {self.bucket_noun} name like 'my-flows' (no {self.scheme}, no '/'), "
                f"not {bucket!r}"
            )
        if key is not None and (not isinstance(key, str) or not key.strip("/")):
            raise StorageError(f"{name} storage {key_arg} must be an {self.key_noun} like 'flows/etl', not {key!r}")
        self.bucket = bucket
        self.key = key.lstrip("/") if key is not None else None
        self.local_script_path: str | None = None
        if local_script_path is not None:
            if not stored_as_script:
                raise StorageError(
                    f"{name} storage's {script_arg}= is the flow's .py file to upload and needs "
                    "stored_as_script=True; pickled flows are uploaded without it"
                )
            self.local_script_path = os.path.abspath(os.path.expanduser(os.fspath(local_script_path)))
        elif stored_as_script and self.key is None:
            raise StorageError(
                f"{name}(stored_as_script=True) needs {script_arg}= (the .py file to upload), or {key_arg}= "
                f"naming an {self.object_noun} that already holds it"
            )
        #: the SDK's client, made by the backend on first use.
        self._client: Any = None

    def __getstate__(self) -> dict[str, Any]:
        # A flow carrying this storage is pickled with it; an SDK client can't (and needn't) travel.
        state = dict(self.__dict__)
        state["_client"] = None
        return state

    # -- hooks for subclasses ------------------------------------------------------

    @abc.abstractmethod
    def _put(self, key: str, data: bytes, content_type: str) -> None:
        """Upload ``data`` to ``key``, replacing what is there. SDK errors go to :meth:`_explain`."""

    @abc.abstractmethod
    def _get(self, key: str) -> bytes:
        """The bytes of the object at ``key``. SDK errors go to :meth:`_explain`."""

    @abc.abstractmethod
    def _exists(self, key: str) -> bool:
        """Whether the object at ``key`` exists; False only when the bucket does and the object doesn't."""

    @abc.abstractmethod
    def _explain(self, exc: Exception) -> str:
        """Why the SDK raised ``exc`` and the fix (a missing bucket, refused credentials, no network...).

        Quotes only the error's type and code, never a request's headers or a credential.
        """

    # -- machinery -----------------------------------------------------------------

    def describe(self) -> str:
        where = self._url(self.key) if self.key else f"{self.scheme}{self.bucket}"
        script = f" (script {self.local_script_path})" if self.stored_as_script and self.local_script_path else ""
        return f"{type(self).__name__} storage {where}{script}"

    def spec_args(self) -> dict[str, Any]:
        bucket_arg, key_arg, script_arg = self.argument_names
        return {
            bucket_arg: self.bucket,
            key_arg: self.key,
            "stored_as_script": self.stored_as_script,
            script_arg: self.local_script_path,
            **super().spec_args(),
        }

    def save_flow(self, flow: Flow) -> str:
        if self.stored_as_script and self.local_script_path is None:
            assert self.key is not None  # checked at construction
            self._check_uploaded_script(flow, self.key)
            return self._url(self.key)
        if self.stored_as_script:
            key = self.key or f"{slugify(flow.name)}/{stamp()}.py"
            data, content_type = self._checked_script(flow, self._url(key)), "text/x-python"
        else:
            key = self.key or f"{slugify(flow.name)}/{stamp()}{SUFFIX}"
            taken = [name for name, loc in self.flows.items() if loc == self._url(key)]
            if taken:
                raise StorageError(
                    f"{self._url(key)} already holds flow {taken[0]!r} of {self.describe()}, and a pickle-mode "
                    f"key holds one flow; leave key= unset to give flow {flow.name!r} its own object"
                )
            from headwater.storage.payload import flow_to_bytes

            data, content_type = flow_to_bytes(flow), "application/json"
        with self._failing(f"can't upload flow {flow.name!r} to {self._url(key)}"):
            self._put(key, data, content_type)
        return self._url(key)

    def load_flow(self, location: str, flow_name: str | None) -> Flow:
        key = self._key_of(location)
        with self._failing(
            f"can't download flow {flow_name!r} from {location}" if flow_name else f"can't download {location}"
        ):
            data = self._get(key)
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
        """A ``<scheme><this bucket>/<key>`` URL is its own location; another bucket's is refused."""
        if not key.startswith(self.scheme):
            return None
        bucket, _, name = key[len(self.scheme) :].partition("/")
        if bucket != self.bucket:
            raise StorageError(
                f"{key} is in {self.bucket_noun} {bucket!r}, not in {self.describe()}; "
                f"load it with {type(self).__name__}({self.argument_names[0]}={bucket!r})"
            )
        if not name.strip("/"):
            raise StorageError(
                f"{key} names no object of {self.describe()}; a location is {self.scheme}{self.bucket}/<key>"
            )
        return key

    def build(self) -> Storage:
        """Check that every flow's object is still in the bucket."""
        gone = []
        for name, location in self.flows.items():
            key = self._key_of(location)
            with self._failing(f"can't check flow {name!r} at {location}"):
                exists = self._exists(key)
            if not exists:
                gone.append(f"{name!r} ({location})")
        if gone:
            raise StorageError(
                f"{self.describe()}: the {self.object_noun}(s) of flow(s) {', '.join(gone)} are gone; "
                "register them again"
            )
        return self

    def _url(self, key: str) -> str:
        return f"{self.scheme}{self.bucket}/{key}"

    def _key_of(self, location: str) -> str:
        prefix = f"{self.scheme}{self.bucket}/"
        if self.bare_keys and not location.startswith(self.scheme):
            return location
        if not location.startswith(prefix) or len(location) == len(prefix):
            raise StorageError(f"{location} is not in {self.describe()}; its locations start with {prefix}")
        return location[len(prefix) :]

    @contextlib.contextmanager
    def _failing(self, doing: str) -> Iterator[None]:
        """Turn an SDK failure inside the block into a StorageError naming ``doing``, this storage and the fix."""
        try:
            yield
        except StorageError:
            raise
        except Exception as exc:
            raise StorageError(f"{doing} ({self.describe()}): {self._explain(exc)}") from exc

    def _check_uploaded_script(self, flow: Flow, key: str) -> None:
        """Check that the script already at ``key`` builds ``flow`` (script mode without a local file)."""
        from headwater.storage.script import extract_flow_from_file

        location = self._url(key)
        with self._failing(f"can't read the flow file {location} for flow {flow.name!r}"):
            data = self._get(key)
        try:
            source = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StorageError(f"{location} of {self.describe()} is not a UTF-8 .py file: {exc}") from exc
        extract_flow_from_file(path=location, contents=source, flow_name=flow.name)

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
