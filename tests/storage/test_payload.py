"""Flow payloads: cloudpickle bytes in a JSON document stamped with versions."""

from __future__ import annotations

import base64
import json
import pickle
import platform

import pytest

import headwater
from headwater.storage import StorageError
from headwater.storage.payload import (
    FORMAT,
    FORMAT_VERSION,
    current_versions,
    flow_from_bytes,
    flow_to_bytes,
    read_document,
)

from .contract import build_flow, check_runs


def test_round_trip() -> None:
    flow = flow_from_bytes(flow_to_bytes(build_flow("etl")))

    assert flow.name == "etl"
    check_runs(flow)


def test_document_carries_versions_readable_without_unpickling() -> None:
    import cloudpickle

    document = read_document(flow_to_bytes(build_flow("etl")))

    assert document["format"] == FORMAT == "headwater-flow"
    assert document["format_version"] == FORMAT_VERSION
    assert document["flow_name"] == "etl"
    assert document["versions"] == {
        "python": platform.python_version(),
        "headwater": headwater.__version__,
        "cloudpickle": cloudpickle.__version__,
    }
    assert document["versions"] == current_versions()
    assert base64.b64decode(document["payload"])[:1] == b"\x80"


@pytest.mark.parametrize("data", [b"", b"garbage", b"\xff\xfe\x00", b'{"format": "other"}', b"[1, 2]"])
def test_garbage_names_the_source(data: bytes) -> None:
    with pytest.raises(StorageError, match=r"s3://bucket/etl is not a headwater flow payload: expected"):
        flow_from_bytes(data, source="s3://bucket/etl")


def test_a_bare_pickle_is_recognised() -> None:
    with pytest.raises(StorageError, match=r"not a headwater flow payload \(it looks like a bare pickle\)"):
        flow_from_bytes(pickle.dumps({"a": 1}), source="old.pickle")


def test_a_newer_format_asks_for_an_upgrade() -> None:
    document = json.loads(flow_to_bytes(build_flow("etl")))
    document["format_version"] = FORMAT_VERSION + 1

    with pytest.raises(StorageError, match=r"format_version 2, newer than this headwater reads \(1\); upgrade"):
        flow_from_bytes(json.dumps(document).encode(), source="x")


def test_damaged_payload() -> None:
    document = json.loads(flow_to_bytes(build_flow("etl")))
    document["payload"] = "not base64 !!!"

    with pytest.raises(StorageError, match="x is a damaged flow payload: its pickle is not base64"):
        flow_from_bytes(json.dumps(document).encode(), source="x")
    del document["payload"]
    with pytest.raises(StorageError, match="x is a damaged flow payload: 'payload' or 'versions' is missing"):
        flow_from_bytes(json.dumps(document).encode(), source="x")


def test_other_versions_are_named_when_unpickling_fails() -> None:
    document = json.loads(flow_to_bytes(build_flow("etl")))
    document["versions"] = {"python": "3.9.0", "headwater": headwater.__version__}
    document["payload"] = base64.b64encode(b"cno_such_module_anywhere\nThing\n.").decode()

    with pytest.raises(StorageError) as info:
        flow_from_bytes(json.dumps(document).encode(), source="/flows/etl.headwater")

    message = str(info.value)
    assert "flow payload /flows/etl.headwater can't be unpickled (ModuleNotFoundError" in message
    assert f"python 3.9.0 (stored) vs {platform.python_version()} (here)" in message
    assert "cloudpickle unknown (stored) vs " in message
    assert "headwater" not in message.split("other versions:")[1]  # the same version is not listed


def test_other_versions_only_warn_when_the_pickle_loads(caplog: pytest.LogCaptureFixture) -> None:
    document = json.loads(flow_to_bytes(build_flow("etl")))
    document["versions"]["cloudpickle"] = "0.0.1"

    flow = flow_from_bytes(json.dumps(document).encode(), source="x")

    assert flow.name == "etl"
    assert "cloudpickle 0.0.1 (stored) vs" in caplog.text


def test_a_payload_of_something_else_is_refused() -> None:
    document = json.loads(flow_to_bytes(build_flow("etl")))
    document["payload"] = base64.b64encode(pickle.dumps([1, 2])).decode()

    with pytest.raises(StorageError, match="x holds a list, not a headwater Flow"):
        flow_from_bytes(json.dumps(document).encode(), source="x")
