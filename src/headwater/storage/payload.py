"""Pickled flows with a version stamp: the bytes pickle-mode storages keep.

A payload is a small UTF-8 JSON document, so its versions can be read without
unpickling anything::

    {"format": "headwater-flow", "format_version": 1, "flow_name": "etl",
     "versions": {"python": "3.11.7", "headwater": "0.1.0", "cloudpickle": "3.1.2"},
     "payload": "<base64 of cloudpickle.dumps(flow)>"}

When the pickle fails to load, the error names the versions that differ
between where it was written and here. Unpickling runs code: load payloads
only from storage you trust. cloudpickle is imported here, only when used.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import platform
from typing import Any

from headwater.core.flow import Flow
from headwater.storage.errors import StorageError

FORMAT = "headwater-flow"
#: bumped when the document's shape changes incompatibly.
FORMAT_VERSION = 1

logger = logging.getLogger("headwater.storage")


def current_versions() -> dict[str, str]:
    """The versions a payload written here is stamped with."""
    import cloudpickle

    from headwater import __version__

    return {
        "python": platform.python_version(),
        "headwater": __version__,
        "cloudpickle": cloudpickle.__version__,
    }


def flow_to_bytes(flow: Flow) -> bytes:
    """The flow pickled with cloudpickle, in a versioned JSON document.

    Raises:
        StorageError: the flow can't be pickled (e.g. a task holds a lock or a client).
    """
    import cloudpickle

    try:
        pickled = cloudpickle.dumps(flow)
    except Exception as exc:
        raise StorageError(
            f"flow {flow.name!r} can't be pickled ({type(exc).__name__}: {exc}); keep unpicklable "
            "objects (clients, locks, open files) out of tasks and their arguments, or store the "
            "flow as a script (stored_as_script=True)"
        ) from exc
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "flow_name": flow.name,
        "versions": current_versions(),
        "payload": base64.b64encode(pickled).decode("ascii"),
    }
    return json.dumps(document).encode("utf-8")


def read_document(data: bytes, source: str = "<bytes>") -> dict[str, Any]:
    """The payload's JSON document, checked, without unpickling it.

    Raises:
        StorageError: ``data`` is not a headwater flow payload, or a newer format.
    """
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError):
        document = None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        looks = " (it looks like a bare pickle)" if data[:1] == b"\x80" else ""
        raise StorageError(
            f"{source} is not a headwater flow payload{looks}: expected a JSON document with "
            f"format {FORMAT!r}, as written by flow_to_bytes; register the flow again to rewrite it"
        )
    version = document.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise StorageError(
            f"{source} is a flow payload of format_version {version!r}, newer than this headwater "
            f"reads ({FORMAT_VERSION}); upgrade headwater where the flow is loaded"
        )
    if not isinstance(document.get("payload"), str) or not isinstance(document.get("versions"), dict):
        raise StorageError(f"{source} is a damaged flow payload: 'payload' or 'versions' is missing")
    return document


def version_differences(stored: dict[str, Any]) -> list[str]:
    """``"python 3.10.4 (stored) vs 3.11.7 (here)"`` for each version that differs."""
    here = current_versions()
    return [
        f"{name} {stored.get(name, 'unknown')} (stored) vs {version} (here)"
        for name, version in here.items()
        if stored.get(name) != version
    ]


def flow_from_bytes(data: bytes, source: str = "<bytes>") -> Flow:
    """The flow in a payload written by :func:`flow_to_bytes`.

    ``source`` (a path, a URL) names the payload in errors.

    Raises:
        StorageError: not a payload, damaged, or it fails to unpickle — then the
            message names the versions that differ, if any.
    """
    import cloudpickle

    document = read_document(data, source)
    try:
        pickled = base64.b64decode(document["payload"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise StorageError(f"{source} is a damaged flow payload: its pickle is not base64 ({exc})") from exc
    differences = version_differences(document["versions"])
    try:
        flow = cloudpickle.loads(pickled)
    except Exception as exc:
        if differences:
            why = (
                f"it was written with other versions: {'; '.join(differences)}. Load it where "
                "these match, or register the flow again with the versions here"
            )
        else:
            why = (
                "the versions match, so a module the flow's code uses is likely missing here; "
                "install it where the flow is loaded"
            )
        raise StorageError(f"flow payload {source} can't be unpickled ({type(exc).__name__}: {exc}); {why}") from exc
    if not isinstance(flow, Flow):
        raise StorageError(f"{source} holds a {type(flow).__name__}, not a headwater Flow")
    if differences:
        logger.warning("flow payload %s was written with other versions: %s", source, "; ".join(differences))
    return flow
