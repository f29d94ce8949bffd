"""Flow files: ``extract_flow_from_file`` runs a file and picks its flow, or says why it can't."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from headwater.storage import StorageError
from headwater.storage.script import SCRIPT_MODULE_NAME, extract_flow_from_file

from .contract import check_runs, flow_script


def write(tmp_path: Path, source: str, name: str = "flow.py") -> Path:
    path = tmp_path / name
    path.write_text(source)
    return path


def test_the_only_flow_is_picked_and_the_main_block_does_not_run(tmp_path: Path) -> None:
    path = write(tmp_path, flow_script(("etl",)))

    flow = extract_flow_from_file(path)

    assert flow.name == "etl"
    check_runs(flow)


def test_a_flow_is_picked_by_name(tmp_path: Path) -> None:
    path = write(tmp_path, flow_script())

    assert extract_flow_from_file(path=path, flow_name="etl-v2").name == "etl-v2"


def test_the_file_runs_under_its_own_name_with_its_file(tmp_path: Path) -> None:
    path = write(tmp_path, flow_script(("etl",)) + "\nassert __name__ != '__main__'\nseen = (__name__, __file__)\n")

    flow = extract_flow_from_file(path)

    fn = next(t for t in flow.tasks if t.name == "numbers").fn
    assert fn.__module__ == SCRIPT_MODULE_NAME
    assert fn.__globals__["seen"] == (SCRIPT_MODULE_NAME, str(path))


def test_contents_without_a_file(tmp_path: Path) -> None:
    flow = extract_flow_from_file(contents=flow_script(("etl",)))

    assert flow.name == "etl"


def test_contents_win_over_the_file_and_the_path_names_errors(tmp_path: Path) -> None:
    path = tmp_path / "remote.py"  # never written: the contents came from elsewhere

    assert extract_flow_from_file(path=path, contents=flow_script(("etl",))).name == "etl"
    with pytest.raises(StorageError, match=rf"flow file {path} builds no Flow"):
        extract_flow_from_file(path=path, contents="x = 1\n")


def test_a_module_next_to_the_file_is_importable_while_it_runs(tmp_path: Path) -> None:
    write(tmp_path, "OFFSET = 10\n", name="hw_helpers_for_script_test.py")
    path = write(tmp_path, "import hw_helpers_for_script_test\n" + flow_script(("etl",)))

    try:
        assert extract_flow_from_file(path).name == "etl"
    finally:
        sys.modules.pop("hw_helpers_for_script_test", None)
    assert str(tmp_path) not in sys.path


def test_no_flow(tmp_path: Path) -> None:
    path = write(tmp_path, "x = 1\n")

    with pytest.raises(StorageError, match=rf"flow file {path} builds no Flow; build one at its top level"):
        extract_flow_from_file(path)


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "from headwater import Flow\n\nwith Flow('etl') as flow\n    pass\n")

    with pytest.raises(StorageError, match=rf"flow file {path} has a syntax error at line 3: "):
        extract_flow_from_file(path)


def test_two_flows_and_no_name_lists_them(tmp_path: Path) -> None:
    path = write(tmp_path, flow_script())

    with pytest.raises(StorageError, match=r"builds 2 flows \('etl', 'etl-v2'\); pick one by its name"):
        extract_flow_from_file(path)


def test_unknown_name_lists_the_flows(tmp_path: Path) -> None:
    path = write(tmp_path, flow_script())

    with pytest.raises(StorageError, match=r"flow 'nope' is not in flow file .*\(flows there: 'etl', 'etl-v2'\)"):
        extract_flow_from_file(path, flow_name="nope")


def test_two_flows_of_one_name(tmp_path: Path) -> None:
    path = write(tmp_path, flow_script(("etl", "etl")))

    with pytest.raises(StorageError, match="builds 2 flows named 'etl'; give them distinct names"):
        extract_flow_from_file(path, flow_name="etl")


def test_error_while_running_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "x = 1\ny = x / 0\n")

    with pytest.raises(StorageError, match=rf"flow file {path} raised ZeroDivisionError at line 2 while running"):
        extract_flow_from_file(path)


@pytest.mark.parametrize("make", ["missing", "folder"])
def test_unreadable_path(tmp_path: Path, make: str) -> None:
    path = tmp_path / "flow.py"
    if make == "folder":
        path.mkdir()

    with pytest.raises(StorageError, match=rf"can't read flow file {path}: .*; check the path"):
        extract_flow_from_file(path)


def test_needs_a_path_or_contents() -> None:
    with pytest.raises(StorageError, match="needs a path or the file's contents"):
        extract_flow_from_file()


def test_cli_catches_storage_errors_as_value_errors() -> None:
    assert issubclass(StorageError, ValueError)
