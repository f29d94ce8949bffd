"""flow.register() / Client.register() / register_flow against a live server."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from headwater import Flow
from headwater.client import Client, NotFoundError
from headwater.registration import RegistrationError, register_flow
from headwater.storage import Local, Memory, StorageError

from .flows import double, make_flow
from .live import LiveServer, unique


def test_flow_register_uses_the_settings(live_server: LiveServer, settings_env, project: str, client: Client,
                                         capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    home = settings_env(API__URL=live_server.url).home
    flow = make_flow("etl")  # no storage: the default Local storage under <home>/flows
    flow_id = flow.register(project)
    assert isinstance(flow.storage, Local) and flow.storage.directory == str(home / "flows")
    assert os.path.isfile(flow.storage.flows["etl"])
    registered = client.get_flow(flow_id)
    assert registered.labels == [socket.gethostname()]  # Local's default label
    assert f"Flow 'etl' registered: id {flow_id}, version 1" in capsys.readouterr().out


def test_storage_kwargs_configure_the_default_storage(client: Client, project: str, tmp_path: Path) -> None:
    flow = make_flow("etl")
    flow_id = register_flow(flow, project, client=client, directory=str(tmp_path), add_default_labels=False)
    assert flow.storage.directory == str(tmp_path) and client.get_flow(flow_id).labels == []
    with pytest.raises(RegistrationError, match="are for the default storage, but flow"):
        register_flow(make_flow("etl", tmp_path), project, client=client, directory=str(tmp_path))


def test_unchanged_flow_is_idempotent_and_a_change_is_version_2(
    client: Client, project: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flow = make_flow("etl", tmp_path, labels=["dev"])
    first = client.register(flow, project)
    again = client.register(flow, project)  # the flow is in its storage: a fresh storage is used
    assert again == first
    assert "(unchanged, existing version)" in capsys.readouterr().out.splitlines()[-1]
    assert len(list((tmp_path / "etl").iterdir())) == 2  # both stored; the server keeps the first
    changed = make_flow("etl", tmp_path, labels=["dev"])
    with changed:
        double(2)  # one more task
    second = client.register(changed, project)
    assert second != first
    versions = {f.id: f.version for f in client.list_flows(project_name=project, name="etl")}
    assert versions == {first: 1, second: 2}
    assert client.register(changed, project, labels=["new"]) != second  # other labels: another version


def test_idempotency_key(client: Client, project: str, tmp_path: Path) -> None:
    first = client.register(make_flow("etl", tmp_path), project, idempotency_key="release-1")
    other = make_flow("etl", tmp_path, labels=["changed"])
    assert client.register(other, project, idempotency_key="release-1") == first


def test_labels_are_storage_labels_plus_given(client: Client, project: str, tmp_path: Path) -> None:
    flow = make_flow("etl", tmp_path, labels=["dev", "shared"])
    flow_id = client.register(flow, project, labels=["gpu", "shared"])
    assert client.get_flow(flow_id).labels == ["dev", "gpu", "shared"]
    run_id = client.create_flow_run(flow_id)
    assert client.get_flow_run(run_id).labels == ["dev", "gpu", "shared"]  # snapshotted on the run


@pytest.mark.parametrize("labels", ["dev", ["ok", ""], [" "], [3], ["x" * 201]])
def test_bad_labels_are_refused_before_storage(client: Client, project: str, tmp_path: Path, labels) -> None:
    flow = make_flow("etl", tmp_path)
    with pytest.raises(RegistrationError, match="labels must be"):
        client.register(flow, project, labels=labels)
    assert flow.storage.flows == {} and not (tmp_path / "etl").exists()


def test_refused_inside_a_flow_block(client: Client, project: str) -> None:
    with Flow("inner") as flow:
        double(1)
        with pytest.raises(RegistrationError, match=r"call flow.register\(\) after the `with Flow\(...\)` block"):
            flow.register(project)
    with make_flow("other") as other, pytest.raises(RegistrationError, match="with Flow\\('other'\\)"):
        client.register(flow, project)
    assert other.storage is None and flow.storage is None


def test_unknown_project_names_the_fix_and_stores_nothing(client: Client, tmp_path: Path) -> None:
    name = unique("nowhere")
    flow = make_flow("etl", tmp_path)
    with pytest.raises(NotFoundError, match=f"create it with `headwater create project {name}`"):
        client.register(flow, name)
    assert flow.storage.flows == {} and not (tmp_path / "etl").exists()


def test_build_false_skips_storage_build(client: Client, project: str, tmp_path: Path) -> None:
    class Counting(Memory):
        builds = 0

        def build(self) -> Memory:
            type(self).builds += 1
            return self

    flow = make_flow("etl")
    flow.storage = Counting(labels=["mem"])
    client.register(flow, project, build=False)
    assert Counting.builds == 0 and "etl" in flow.storage
    flow.storage = Counting(labels=["mem"])
    client.register(flow, project)
    assert Counting.builds == 1


def test_a_broken_storage_build_registers_nothing(client: Client, project: str, tmp_path: Path) -> None:
    class Gone(Local):
        def build(self) -> Local:
            raise StorageError("bucket is gone")

    flow = make_flow("etl")
    flow.storage = Gone(directory=str(tmp_path))
    with pytest.raises(StorageError, match="bucket is gone"):
        client.register(flow, project)
    assert client.list_flows(project_name=project) == []


def test_a_flow_that_cannot_be_described_stores_nothing(client: Client, project: str, tmp_path: Path) -> None:
    flow = make_flow("etl", tmp_path)
    flow.schedule = object()  # no serialize(): not JSON
    with pytest.raises(ValueError, match="schedule"):
        client.register(flow, project)
    assert flow.storage.flows == {}


def test_not_a_flow(client: Client, project: str) -> None:
    with pytest.raises(TypeError, match="needs a headwater Flow"):
        client.register("etl", project)  # type: ignore[arg-type]


@pytest.mark.parametrize("setting", ["memory", "headwater.storage.memory.Memory"])
def test_the_default_storage_setting_names_the_storage_of_a_flow_without_one(
    settings_env, client: Client, project: str, setting: str
) -> None:
    settings_env(FLOWS__DEFAULT_STORAGE=setting)
    flow = make_flow("etl")

    flow_id = register_flow(flow, project, client=client, labels=["mem"])

    assert isinstance(flow.storage, Memory) and "etl" in flow.storage
    assert client.get_flow(flow_id).metadata.storage["kind"] == "memory"


def test_a_bad_default_storage_setting_is_a_clear_error_and_registers_nothing(
    settings_env, client: Client, project: str
) -> None:
    settings_env(FLOWS__DEFAULT_STORAGE="ftp")
    flow = make_flow("etl")
    with pytest.raises(StorageError, match=r"HEADWATER__FLOWS__DEFAULT_STORAGE\) is 'ftp': unknown storage kind 'ftp'"):
        register_flow(flow, project, client=client)
    assert flow.storage is None and client.list_flows(project_name=project) == []

    settings_env(FLOWS__DEFAULT_STORAGE="memory")
    with pytest.raises(RegistrationError, match=r"Memory storage \(the flows.default_storage setting is 'memory'\)"):
        register_flow(flow, project, client=client, directory="/tmp")
    assert flow.storage is None and client.list_flows(project_name=project) == []
