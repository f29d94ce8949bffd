"""Local storage: the contract in pickle and script modes, then files, payloads and bad paths."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from headwater import Flow, task
from headwater.storage import Local, Storage, StorageError, storage_from_spec
from headwater.storage.naming import slugify
from headwater.storage.script import extract_flow_from_file

from .contract import StorageContract, build_flow, check_runs, files_under, flow_script


class TestLocalPickle(StorageContract):
    def make_storage(self, tmp_path: Path, **kwargs: Any) -> Storage:
        return Local(directory=tmp_path / "flows", **kwargs)

    def expected_default_labels(self) -> list[str]:
        return [socket.gethostname()]


class TestLocalScript(StorageContract):
    stored_as_script = True

    def make_storage(self, tmp_path: Path, **kwargs: Any) -> Storage:
        path = tmp_path / "flows.py"
        path.write_text(flow_script())
        return Local(directory=tmp_path / "flows", path=path, stored_as_script=True, **kwargs)

    def make_flow(self, tmp_path: Path, name: str) -> Flow:
        return extract_flow_from_file(path=tmp_path / "flows.py", flow_name=name)

    def expected_default_labels(self) -> list[str]:
        return [socket.gethostname()]


# -- pickle mode: files ----------------------------------------------------------


def test_payload_is_written_under_the_flow_slug_atomically(tmp_path: Path) -> None:
    storage = Local(directory=tmp_path)

    location = Path(storage.add_flow(build_flow("My ETL/v2")))

    assert location.parent == tmp_path / "my-etl-v2"
    assert location.suffix == ".headwater"
    assert [p.name for p in location.parent.iterdir()] == [location.name]  # no temp file left
    document = json.loads(location.read_bytes())
    assert document["flow_name"] == "My ETL/v2"
    assert set(document["versions"]) == {"python", "headwater", "cloudpickle"}


def test_each_add_writes_a_new_file(tmp_path: Path) -> None:
    first = Local(directory=tmp_path).add_flow(build_flow("etl"))
    second = Local(directory=tmp_path).add_flow(build_flow("etl"))

    assert first != second
    assert Path(first).exists() and Path(second).exists()


@pytest.mark.parametrize(
    ("name", "slug"), [("etl", "etl"), ("My ETL/v2", "my-etl-v2"), ("../..", "flow"), ("a b.c", "a-b.c")]
)
def test_slugify(name: str, slug: str) -> None:
    assert slugify(name) == slug


def test_default_directory_is_the_setting(tmp_path: Path, settings_env: Any) -> None:
    settings_env(FLOWS__LOCAL_STORAGE_DIRECTORY=str(tmp_path / "from-settings"))

    storage = Local()

    assert storage.directory == str(tmp_path / "from-settings")
    assert storage.add_flow(build_flow("etl")).startswith(str(tmp_path / "from-settings" / "etl"))


def test_relative_directory_is_refused_when_validating(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=r"directory 'flows' is not absolute.*or validate=False"):
        Local(directory="flows")

    assert Local(directory="flows", validate=False).directory == "flows"
    assert Local(directory="~/flows").directory == os.path.expanduser("~/flows")


def test_directory_is_created_only_when_a_flow_is_added(tmp_path: Path) -> None:
    storage = Local(directory=tmp_path / "a" / "b")
    assert not (tmp_path / "a").exists()

    storage.add_flow(build_flow("etl"))

    assert (tmp_path / "a" / "b" / "etl").is_dir()


def test_spec_holds_the_resolved_directory_and_labels(tmp_path: Path, settings_env: Any) -> None:
    settings_env(FLOWS__LOCAL_STORAGE_DIRECTORY=str(tmp_path))
    storage = Local(labels=["dev"])
    location = storage.add_flow(build_flow("etl"))

    assert storage.serialize() == {
        "kind": "local",
        "directory": str(tmp_path),
        "path": None,
        "stored_as_script": False,
        "validate": True,
        "secrets": [],
        "labels": ["dev", socket.gethostname()],
        "add_default_labels": False,
        "flows": {"etl": location},
    }


def test_unpicklable_flow_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    @task
    def hold(lock: Any) -> None:
        return None

    with Flow("locked") as flow:
        hold(threading.Lock())
    storage = Local(directory=tmp_path)

    with pytest.raises(StorageError, match=r"flow 'locked' can't be pickled .*stored_as_script=True"):
        storage.add_flow(flow)

    assert storage.flows == {}
    assert files_under(tmp_path) == {}


def test_unwritable_directory_is_a_clear_error_and_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file, not a folder")
    storage = Local(directory=tmp_path / "taken")

    with pytest.raises(StorageError, match=r"can't write flow 'etl' to Local storage .*taken"):
        storage.add_flow(build_flow("etl"))

    assert storage.flows == {}
    assert files_under(tmp_path) == {"taken": b"a file, not a folder"}


# -- pickle mode: reading --------------------------------------------------------


def test_deleted_file_is_a_clear_error_on_get_and_build(tmp_path: Path) -> None:
    storage = Local(directory=tmp_path)
    location = storage.add_flow(build_flow("etl"))
    os.remove(location)

    with pytest.raises(StorageError, match=rf"can't read flow file {location} .*register the flow again"):
        storage.get_flow("etl")
    with pytest.raises(StorageError, match=r"the file\(s\) of flow\(s\) 'etl' .* are gone"):
        storage.build()


def test_location_that_is_a_folder_or_missing_is_a_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "old.headwater"
    folder.mkdir()
    storage = Local(directory=tmp_path)

    with pytest.raises(StorageError, match=rf"can't read flow file {folder} .*Is a directory"):
        storage.get_flow(str(folder))
    with pytest.raises(StorageError, match="No such file"):
        storage.get_flow(str(tmp_path / "missing.headwater"))


def test_get_flow_by_a_path_not_in_the_mapping(tmp_path: Path) -> None:
    location = Local(directory=tmp_path).add_flow(build_flow("etl"))

    check_runs(Local(directory=tmp_path).get_flow(location))


def test_garbage_file_names_its_path(tmp_path: Path) -> None:
    storage = Local(directory=tmp_path)
    location = storage.add_flow(build_flow("etl"))
    Path(location).write_bytes(b"\x00\x01 definitely not a flow")

    with pytest.raises(StorageError, match=rf"{location} is not a headwater flow payload"):
        storage.get_flow("etl")


def _rewrite_payload(location: str, versions: dict[str, str]) -> None:
    import base64

    document = json.loads(Path(location).read_bytes())
    document["versions"] = versions
    # A protocol-0 pickle of a global in a module that does not exist here.
    document["payload"] = base64.b64encode(b"cheadwater_module_gone_away\nFlow\n.").decode()
    Path(location).write_text(json.dumps(document))


def test_payload_from_other_versions_names_them_when_it_fails(tmp_path: Path) -> None:
    storage = Local(directory=tmp_path)
    location = storage.add_flow(build_flow("etl"))
    _rewrite_payload(location, {"python": "3.8.1", "headwater": "0.0.1", "cloudpickle": "1.6.0"})

    with pytest.raises(StorageError) as info:
        storage.get_flow("etl")

    message = str(info.value)
    assert f"flow payload {location} can't be unpickled (ModuleNotFoundError" in message
    assert "python 3.8.1 (stored) vs " in message
    assert "headwater 0.0.1 (stored) vs 0.1.0 (here)" in message
    assert "cloudpickle 1.6.0 (stored) vs " in message


def test_payload_with_same_versions_that_fails_blames_a_missing_module(tmp_path: Path) -> None:
    from headwater.storage.payload import current_versions

    storage = Local(directory=tmp_path)
    location = storage.add_flow(build_flow("etl"))
    _rewrite_payload(location, current_versions())

    with pytest.raises(StorageError, match="the versions match, so a module the flow's code uses is likely"):
        storage.get_flow("etl")


def test_flow_from_a_script_loads_and_runs_in_a_fresh_process(tmp_path: Path) -> None:
    """The flow's code is pickled by value, so the new process needs neither the file nor the tests."""
    script = tmp_path / "my_flow.py"
    script.write_text(flow_script(("etl",)))
    storage = Local(directory=tmp_path / "flows")
    storage.add_flow(extract_flow_from_file(path=script))
    script.unlink()
    program = (
        "import json, sys\n"
        "from headwater.storage import storage_from_spec\n"
        "flow = storage_from_spec(json.loads(sys.argv[1])).get_flow('etl')\n"
        "state = flow.run(parameters={'n': 6})\n"
        "print(json.dumps({'state': state.name, **{t.name: s.result for t, s in state.result.items()}}))\n"
    )

    done = subprocess.run(
        [sys.executable, "-c", program, json.dumps(storage.serialize())],
        capture_output=True,
        text=True,
        cwd=tmp_path / "flows",
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"state": "Success", "n": 6, "numbers": [0, 1, 2, 3, 4, 5], "total": 25}


# -- script mode -------------------------------------------------------------------


def test_script_mode_needs_a_path_and_path_needs_script_mode(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=r"stored_as_script=True\) needs path="):
        Local(directory=tmp_path, stored_as_script=True)
    with pytest.raises(StorageError, match=r"path= is the flow's \.py file and needs stored_as_script=True"):
        Local(directory=tmp_path, path=tmp_path / "flow.py")


def test_script_location_is_the_absolute_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "flow.py").write_text(flow_script(("etl",)))
    monkeypatch.chdir(tmp_path)
    storage = Local(directory=tmp_path, path="flow.py", stored_as_script=True)

    location = storage.add_flow(extract_flow_from_file("flow.py"))

    assert location == str(tmp_path / "flow.py")
    assert files_under(tmp_path) == {"flow.py": (tmp_path / "flow.py").read_bytes()}  # nothing pickled


def test_script_mode_validates_the_file_builds_the_flow(tmp_path: Path) -> None:
    path = tmp_path / "flows.py"
    path.write_text(flow_script(("other",)))
    storage = Local(directory=tmp_path, path=path, stored_as_script=True)

    with pytest.raises(StorageError, match=r"flow 'etl' is not in flow file .*flows there: 'other'"):
        storage.add_flow(build_flow("etl"))
    assert storage.flows == {}

    missing = Local(directory=tmp_path, path=tmp_path / "nowhere.py", stored_as_script=True)
    with pytest.raises(StorageError, match=r"can't read flow file .*nowhere.py"):
        missing.add_flow(build_flow("etl"))
    assert missing.flows == {}


def test_script_mode_without_validate_records_the_path_as_given(tmp_path: Path) -> None:
    storage = Local(directory=tmp_path, path=tmp_path / "later.py", stored_as_script=True, validate=False)

    assert storage.add_flow(build_flow("etl")) == str(tmp_path / "later.py")
    assert storage.build() is storage
    (tmp_path / "later.py").write_text(flow_script(("etl",)))
    check_runs(storage_from_spec(storage.serialize()).get_flow("etl"))


def test_script_that_registers_itself_at_top_level_fails_clearly(tmp_path: Path) -> None:
    path = tmp_path / "selfish.py"
    path.write_text(
        flow_script(("etl",))
        + "\nfrom headwater.storage import Local\n"
        + f"Local(directory={str(tmp_path)!r}, path=__file__, stored_as_script=True).add_flow(flow_0)\n"
    )

    with pytest.raises(StorageError, match=r"loads itself while being loaded.*if __name__ == '__main__'"):
        extract_flow_from_file(path)
