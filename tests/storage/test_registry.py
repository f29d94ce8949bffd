"""The registry: kinds, lazy classes, install hints, and specs back into storages."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import headwater.storage
from headwater.storage import (
    Local,
    Memory,
    Module,
    StorageError,
    StorageNotAvailable,
    get_storage_class,
    known_kinds,
    register_storage,
    registry,
    storage_from_spec,
)

#: kinds of this release beyond the built-in three, by class name (their SDKs are test extras).
AVAILABLE = {"gcs": "GCS", "azure": "Azure", "git": "Git", "github": "GitHub", "docker": "Docker", "s3": "S3"}


@pytest.fixture
def scratch_registry() -> Iterator[None]:
    table = registry.registry._entries
    saved = dict(table)
    yield
    table.clear()
    table.update(saved)


@pytest.fixture
def future_kind(scratch_registry: None) -> str:
    """A kind registered ahead of its module, as a new backend is before its release: "nowhere"."""
    register_storage("nowhere", "headwater.storage.nowhere.Nowhere", extra="nowhere")
    return "nowhere"


def test_known_kinds() -> None:
    assert known_kinds() == sorted(["memory", "local", "module", *AVAILABLE])


@pytest.mark.parametrize(("kind", "name"), sorted(AVAILABLE.items()))
def test_backend_kinds_load_by_kind_and_by_name(kind: str, name: str) -> None:
    cls = get_storage_class(kind)
    assert cls.kind == kind and cls.__name__ == name
    assert getattr(headwater.storage, name) is cls


@pytest.mark.parametrize(("kind", "cls"), [("memory", Memory), ("local", Local), ("module", Module)])
def test_kinds_of_this_release_load_and_match_their_class(kind: str, cls: type) -> None:
    assert get_storage_class(kind) is cls
    assert cls.kind == kind


def test_future_kinds_say_they_are_not_here_and_what_they_will_need(future_kind: str) -> None:
    with pytest.raises(StorageNotAvailable) as info:
        get_storage_class(future_kind)

    message = str(info.value)
    assert "storage kind 'nowhere' (Nowhere) is not available in this release of headwater" in message
    assert "(when it is: pip install 'headwater[nowhere]')" in message
    assert isinstance(info.value, ImportError) and isinstance(info.value, StorageError)


def test_from_import_of_a_future_kind_is_an_import_error_not_an_attribute_error(future_kind: str) -> None:
    with pytest.raises(ImportError, match=r"pip install 'headwater\[nowhere\]'"):
        from headwater.storage import Nowhere  # noqa: F401
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        headwater.storage.Nope  # noqa: B018


def test_a_kind_whose_packages_are_missing_gives_its_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scratch_registry: None
) -> None:
    (tmp_path / "hw_broken_storage.py").write_text("import hw_sdk_not_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    register_storage("broken", "hw_broken_storage.Broken", hint="pip install broken-sdk")

    with pytest.raises(
        StorageNotAvailable,
        match=r"storage kind 'broken' \(Broken\) needs packages that are not installed here \(importing "
        r"hw_broken_storage failed: No module named 'hw_sdk_not_installed'\); "
        r"install them with `pip install broken-sdk`",
    ):
        storage_from_spec({"kind": "broken"})
    sys.modules.pop("hw_broken_storage", None)


def test_register_a_third_party_kind(scratch_registry: None) -> None:
    register_storage("mine", "headwater.storage.memory.Memory")

    assert isinstance(storage_from_spec({"kind": "mine"}), Memory)
    with pytest.raises(StorageError, match=r"'mine' is already registered to headwater\.storage\.memory\.Memory"):
        register_storage("mine", "headwater.storage.local.Local")
    register_storage("mine", "headwater.storage.local.Local", clobber=True)
    assert get_storage_class("mine") is Local


def test_a_path_that_is_not_a_storage(scratch_registry: None) -> None:
    register_storage("odd", "headwater.storage.errors.StorageError")

    with pytest.raises(StorageError, match=r"points to headwater\.storage\.errors\.StorageError, which is not"):
        get_storage_class("odd")


def test_unknown_kind_lists_the_known_ones() -> None:
    with pytest.raises(StorageError, match=r"unknown storage kind 'ftp'; known kinds: azure, docker, gcs, "):
        storage_from_spec({"kind": "ftp"})


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([], "a storage spec is a dict like"),
        ({"labels": []}, "has no 'kind'; known kinds: azure"),
        ({"kind": 3}, "unknown storage kind 3"),
        (
            {"kind": "local", "bucket": "x", "directory": "/d", "region": "y"},
            r"kind 'local' has key\(s\) 'bucket', 'region' that Local does not take \(it takes: kind, ",
        ),
        ({"kind": "local", "flows": ["etl"]}, "'flows' must map names to locations"),
        ({"kind": "local", "directory": "relative"}, "directory 'relative' is not absolute"),
        ({"kind": "memory", "labels": "dev"}, "labels must be a list of strings"),
    ],
)
def test_bad_specs_are_clear_errors(spec: object, message: str) -> None:
    with pytest.raises(StorageError, match=message):
        storage_from_spec(spec)


def test_storage_is_not_imported_by_headwater_and_imports_no_sdk() -> None:
    program = (
        "import sys, headwater\n"
        "assert 'headwater.storage' not in sys.modules\n"
        "import headwater.storage\n"
        "heavy = {'cloudpickle', 'boto3', 'google.cloud', 'azure', 'docker', 'dulwich', 'pydantic_settings'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )

    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
