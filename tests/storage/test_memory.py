"""Memory storage: the contract, and what a Memory storage rebuilt elsewhere holds (nothing)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from headwater.storage import Memory, Storage, StorageError, storage_from_spec

from .contract import StorageContract, build_flow


class TestMemory(StorageContract):
    flows_survive_spec = False

    def make_storage(self, tmp_path: Path, **kwargs: Any) -> Storage:
        return Memory(**kwargs)


def test_get_flow_returns_the_flow_object_itself() -> None:
    storage = Memory()
    flow = build_flow("etl")

    assert storage.add_flow(flow) == "etl"
    assert storage.get_flow("etl") is flow


def test_spec_has_no_flows_and_a_rebuilt_memory_holds_none() -> None:
    storage = Memory(labels=["dev"])
    storage.add_flow(build_flow("etl"))

    spec = storage.serialize()
    rebuilt = storage_from_spec(json.loads(json.dumps(spec)))

    assert spec == {"kind": "memory", "secrets": [], "labels": ["dev"], "add_default_labels": False}
    assert "etl" not in rebuilt
    with pytest.raises(StorageError) as info:
        rebuilt.get_flow("etl")
    message = str(info.value)
    assert "flow 'etl' is not in Memory storage (known: none)" in message
    assert "only in the process that added them" in message
    assert "use Local or Module storage for flows that run elsewhere" in message


def test_a_spec_giving_memory_flows_is_refused() -> None:
    with pytest.raises(StorageError, match=r"key\(s\) 'flows' that Memory does not take"):
        storage_from_spec({"kind": "memory", "flows": {"etl": "etl"}})


def test_memory_takes_no_stored_as_script() -> None:
    with pytest.raises(TypeError):
        Memory(stored_as_script=True)
