"""Local storage: flows kept as files on this machine.

Pickle mode (the default) writes each flow as a versioned payload
(``payload.py``) to ``<directory>/<flow-slug>/<UTC time>-<id>.headwater``,
atomically: a temporary file in the same folder, then ``os.replace``. Script
mode (``stored_as_script=True``) keeps only the path of the user's ``.py`` file
and runs it to load the flow (``script.py``). The contract is ``base.py``; how
files are named is ``naming.py``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from headwater.core.flow import Flow
from headwater.storage.base import Storage
from headwater.storage.errors import StorageError
from headwater.storage.naming import SUFFIX, slugify, stamp


class Local(Storage):
    """Keeps flows in files on this machine; labels runs with its hostname.

    Args:
        directory: where pickled flows are written; default the setting
            ``flows.local_storage_directory`` (``~/.headwater/flows``).
        path: the flow's ``.py`` file, with ``stored_as_script=True``.
        stored_as_script: keep the path of the source file instead of a pickle.
        validate: check now that ``directory`` is absolute (after ``~`` expansion),
            make ``path`` absolute, and check at ``add_flow`` that ``path`` builds
            the flow. Without it both are kept as given.
        secrets: names of secrets flows kept here need.
        labels: labels for the flows' runs.
        add_default_labels: also label runs with this machine's hostname, so only
            agents on this machine (which can read these files) run them.
    """

    kind: ClassVar[str] = "local"

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        path: str | os.PathLike[str] | None = None,
        stored_as_script: bool = False,
        validate: bool = True,
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
        if directory is None:
            from headwater.config import get_settings

            directory = get_settings().flows.local_storage_directory
        expanded = os.path.expanduser(os.fspath(directory))
        if validate and not os.path.isabs(expanded):
            raise StorageError(
                f"Local storage directory {os.fspath(directory)!r} is not absolute, so where flows "
                "go would depend on the current folder; give an absolute path (e.g. "
                "os.path.abspath(...)) or validate=False"
            )
        self.directory = expanded
        self.validate = bool(validate)
        self.path: str | None = None
        if path is not None:
            if not stored_as_script:
                raise StorageError(
                    "Local storage's path= is the flow's .py file and needs stored_as_script=True; "
                    "pickled flows are written under directory="
                )
            # Checked to exist at add_flow, so a relative path is unambiguous here.
            self.path = os.path.expanduser(os.fspath(path))
            if validate:
                self.path = os.path.abspath(self.path)
        elif stored_as_script:
            raise StorageError("Local(stored_as_script=True) needs path= (the .py file that builds the flow)")

    # -- hooks ---------------------------------------------------------------------

    def describe(self) -> str:
        if self.stored_as_script:
            return f"Local storage (script {self.path})"
        return f"Local storage {self.directory}"

    def default_labels(self) -> list[str]:
        return [socket.gethostname()]

    def spec_args(self) -> dict[str, Any]:
        return {
            "directory": self.directory,
            "path": self.path,
            "stored_as_script": self.stored_as_script,
            "validate": self.validate,
            **super().spec_args(),
        }

    def save_flow(self, flow: Flow) -> str:
        if self.stored_as_script:
            assert self.path is not None
            if self.validate:
                from headwater.storage.script import extract_flow_from_file

                extract_flow_from_file(path=self.path, flow_name=flow.name)
            return self.path
        from headwater.storage.payload import flow_to_bytes

        data = flow_to_bytes(flow)
        folder = Path(self.directory) / slugify(flow.name)
        target = folder / f"{stamp()}{SUFFIX}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            _write_atomically(target, data)
        except OSError as exc:
            raise StorageError(
                f"can't write flow {flow.name!r} to {self.describe()}: {exc}; check that "
                f"{self.directory} is a folder this user can write"
            ) from exc
        return str(target)

    def load_flow(self, location: str, flow_name: str | None) -> Flow:
        if location.endswith(".py") or (self.stored_as_script and not location.endswith(SUFFIX)):
            from headwater.storage.script import extract_flow_from_file

            return extract_flow_from_file(path=location, flow_name=flow_name)
        from headwater.storage.payload import flow_from_bytes

        try:
            data = Path(location).read_bytes()
        except OSError as exc:
            raise StorageError(
                f"can't read flow file {location} of {self.describe()}: {exc}; was it moved or "
                "deleted? register the flow again"
            ) from exc
        return flow_from_bytes(data, source=location)

    def locate(self, key: str) -> str | None:
        """A flow file's path (``…/x.headwater``, ``….py``) is its own location."""
        if key.endswith((SUFFIX, ".py")) or os.path.isfile(key):
            return key
        return None

    def build(self) -> Storage:
        """Check that every flow's file is still there (a script's only when ``validate``)."""
        if self.stored_as_script and not self.validate:
            return self
        gone = [f"{name!r} ({loc})" for name, loc in self.flows.items() if not os.path.isfile(loc)]
        if gone:
            raise StorageError(f"{self.describe()}: the file(s) of flow(s) {', '.join(gone)} are gone; add them again")
        return self


def _write_atomically(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` so readers see the whole file or none of it."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
