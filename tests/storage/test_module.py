"""Module storage: the contract, then picking flows out of modules and the errors on the way."""

from __future__ import annotations

import importlib
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from headwater import Flow
from headwater.storage import Module, Storage, StorageError, storage_from_spec

from .contract import StorageContract, build_flow, check_runs, flow_script


@pytest.fixture
def write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], str]]:
    """``write_module(source)`` writes an importable module under a fresh name and returns the name."""
    monkeypatch.syspath_prepend(str(tmp_path))
    names: list[str] = []

    def write(source: str) -> str:
        name = f"hw_test_flows_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{name}.py").write_text(source)
        importlib.invalidate_caches()
        names.append(name)
        return name

    yield write
    for name in names:
        sys.modules.pop(name, None)


class TestModule(StorageContract):
    stored_as_script = True

    @pytest.fixture(autouse=True)
    def _module(self, write_module: Callable[[str], str]) -> None:
        self.module_name = write_module(flow_script())

    def make_storage(self, tmp_path: Path, **kwargs: Any) -> Storage:
        return Module(self.module_name, **kwargs)

    def make_flow(self, tmp_path: Path, name: str) -> Flow:
        module = importlib.import_module(self.module_name)
        return next(v for v in vars(module).values() if isinstance(v, Flow) and v.name == name)


def test_flow_by_attribute(write_module: Callable[[str], str]) -> None:
    name = write_module(flow_script())
    storage = Module(f"{name}:flow_1")

    storage.add_flow(build_flow("etl-v2"))

    assert storage.flows == {"etl-v2": f"{name}:flow_1"}
    check_runs(storage.get_flow("etl-v2"))
    assert storage_from_spec(storage.serialize()).get_flow(f"{name}:flow_0").name == "etl"


def test_the_only_flow_needs_no_name(write_module: Callable[[str], str]) -> None:
    name = write_module(flow_script(("solo",)))

    flow = Module(name).get_flow(name)

    assert flow.name == "solo"
    check_runs(flow)


def test_a_flow_never_added_is_found_by_name(write_module: Callable[[str], str]) -> None:
    name = write_module(flow_script())

    assert Module(name).get_flow("etl-v2").name == "etl-v2"


def test_several_flows_and_no_name_lists_them(write_module: Callable[[str], str]) -> None:
    name = write_module(flow_script())

    with pytest.raises(StorageError, match=rf"Module storage {name} builds 2 flows \('etl', 'etl-v2'\); pick one"):
        Module(name).get_flow(name)


def test_module_without_flows(write_module: Callable[[str], str]) -> None:
    name = write_module("x = 1\n")

    with pytest.raises(StorageError, match=rf"Module storage {name} builds no Flow"):
        Module(name).get_flow(name)


def test_module_not_importable() -> None:
    storage = Module("hw_no_such_module.flows")
    storage.add_flow(build_flow("etl"))

    with pytest.raises(StorageError) as info:
        storage.get_flow("etl")
    assert "can't import module 'hw_no_such_module.flows' of Module storage" in str(info.value)
    assert "ModuleNotFoundError" in str(info.value)
    assert "on PYTHONPATH" in str(info.value)


def test_module_that_raises_on_import(write_module: Callable[[str], str]) -> None:
    name = write_module("raise RuntimeError('no config here')\n")

    with pytest.raises(StorageError, match=r"can't import module .*RuntimeError: no config here"):
        Module(name).get_flow("etl")


def test_missing_attribute_lists_the_flows(write_module: Callable[[str], str]) -> None:
    name = write_module(flow_script())
    storage = Module(f"{name}:etl_flow")
    storage.add_flow(build_flow("etl"))

    with pytest.raises(StorageError, match=r"has no attribute 'etl_flow' \(flows there: 'etl', 'etl-v2'\)"):
        storage.get_flow("etl")


def test_attribute_that_is_not_a_flow(write_module: Callable[[str], str]) -> None:
    name = write_module(flow_script() + "\nnot_a_flow = 3\n")

    with pytest.raises(StorageError, match=rf"{name}:not_a_flow is a int, not a headwater Flow"):
        Module(f"{name}:not_a_flow").get_flow(f"{name}:not_a_flow")


def test_attribute_holding_another_flow_is_not_the_named_one(write_module: Callable[[str], str]) -> None:
    name = write_module(flow_script())

    with pytest.raises(StorageError, match=rf"flow 'etl-v2' is not in Module storage {name}:flow_0"):
        Module(f"{name}:flow_0").get_flow("etl-v2")


@pytest.mark.parametrize("bad", ["", "pkg/flows.py", "pkg.flows:", "1pkg", "pkg:a:b"])
def test_bad_module_path(bad: str) -> None:
    with pytest.raises(StorageError, match=r"needs an import path like 'pkg\.flows'"):
        Module(bad)


def test_spec(write_module: Callable[[str], str]) -> None:
    name = write_module(flow_script())
    storage = Module(name, labels=["dev"])
    storage.add_flow(build_flow("etl"))

    assert storage.serialize() == {
        "kind": "module",
        "module": name,
        "secrets": [],
        "labels": ["dev"],
        "add_default_labels": False,
        "flows": {"etl": name},
    }


def test_spec_without_module_names_the_missing_key() -> None:
    with pytest.raises(StorageError, match=r"lacks required key\(s\) 'module' of Module"):
        storage_from_spec({"kind": "module"})
