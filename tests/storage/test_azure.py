"""Azure storage against Azurite (started by ``services_azure.py``): the contract, then Azure's errors."""

from __future__ import annotations

import base64
import json
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from headwater import Flow
from headwater.storage import Storage, StorageError, storage_from_spec
from headwater.storage.azure import Azure
from headwater.storage.payload import read_document
from headwater.storage.script import extract_flow_from_file

from .contract import StorageContract, build_flow, check_runs, flow_script
from .services_azure import ACCOUNT_KEY, Azurite, connection_string, free_port, missing_reason, running_azurite

SECRET = "AZURITE_CONNECTION"


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    reason = missing_reason()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    with running_azurite(tmp_path_factory.mktemp("azurite")) as service:
        from azure.storage.blob import BlobServiceClient

        BlobServiceClient.from_connection_string(service.connection_string).create_container("flows")
        yield service


@pytest.fixture
def with_secret(azurite: Azurite, settings_env: Callable[..., Any]) -> Azurite:
    """The connection string as the secret SECRET, as agents get it."""
    settings_env(**{f"CONTEXT__SECRETS__{SECRET}": azurite.connection_string})
    return azurite


@pytest.mark.usefixtures("with_secret")
class TestAzurePickle(StorageContract):
    def make_storage(self, tmp_path: Path, **kwargs: Any) -> Storage:
        return Azure("flows", connection_string_secret=SECRET, **kwargs)


@pytest.mark.usefixtures("with_secret")
class TestAzureScript(StorageContract):
    stored_as_script = True

    def make_storage(self, tmp_path: Path, **kwargs: Any) -> Storage:
        path = tmp_path / "flows.py"
        path.write_text(flow_script())
        # A blob per test, so tests never read each other's scripts.
        blob = f"scripts/{tmp_path.name}-{uuid.uuid4().hex[:6]}/flows.py"
        return Azure(
            "flows", connection_string_secret=SECRET, blob_name=blob, stored_as_script=True, path=path, **kwargs
        )

    def make_flow(self, tmp_path: Path, name: str) -> Flow:
        return extract_flow_from_file(path=tmp_path / "flows.py", flow_name=name)


# -- where flows go ---------------------------------------------------------------


def test_pickle_blob_name_is_slug_and_time_and_holds_a_payload(azurite: Azurite) -> None:
    storage = Azure("flows", connection_string=azurite.connection_string)

    location = storage.add_flow(build_flow("My ETL/v2"))

    # named as S3 and GCS name objects (objects.py): the container's URL, the slug, the time, the suffix
    assert location.startswith("azure://flows/my-etl-v2/") and location.endswith(".headwater")
    from azure.storage.blob import BlobServiceClient

    name = location.removeprefix("azure://flows/")
    blob = BlobServiceClient.from_connection_string(azurite.connection_string).get_blob_client("flows", name)
    document = json.loads(blob.download_blob().readall())
    assert document["flow_name"] == "My ETL/v2"
    check_runs(storage.get_flow(location))
    # a spec written before locations were URLs names the bare blob: it still loads
    older = Azure("flows", connection_string=azurite.connection_string)
    older.flows = {"My ETL/v2": name}
    check_runs(older.get_flow("My ETL/v2"))
    check_runs(older.get_flow(name))


def test_given_blob_name_is_used(azurite: Azurite) -> None:
    storage = Azure("flows", connection_string=azurite.connection_string, blob_name="fixed/etl.headwater")

    assert storage.add_flow(build_flow("etl")) == "azure://flows/fixed/etl.headwater"
    check_runs(Azure("flows", connection_string=azurite.connection_string).get_flow("fixed/etl.headwater"))


def test_script_mode_without_path_reads_the_existing_blob(azurite: Azurite, tmp_path: Path) -> None:
    script = tmp_path / "flow.py"
    script.write_text(flow_script(("etl",)))
    blob = f"scripts/{uuid.uuid4().hex}.py"
    uploader = Azure(
        "flows", connection_string=azurite.connection_string, blob_name=blob, stored_as_script=True, path=script
    )
    uploader.add_flow(extract_flow_from_file(script))

    reader = Azure("flows", connection_string=azurite.connection_string, blob_name=blob, stored_as_script=True)
    assert reader.add_flow(build_flow("etl")) == f"azure://flows/{blob}"
    with pytest.raises(StorageError, match=r"flow 'other' is not in flow file azure://flows/scripts/"):
        reader.add_flow(build_flow("other"))
    check_runs(reader.get_flow("etl"))


def test_script_mode_needs_a_blob_name_and_path_needs_script_mode() -> None:
    with pytest.raises(StorageError, match=r"stored_as_script=True\) needs blob_name="):
        Azure("flows", stored_as_script=True)
    with pytest.raises(StorageError, match=r"path= is the flow's .py file .*needs stored_as_script=True"):
        Azure("flows", path="flow.py")
    with pytest.raises(StorageError, match="needs a container name"):
        Azure("")


# -- the connection string --------------------------------------------------------


def test_connection_string_never_shows_in_spec_repr_errors_or_logs(
    azurite: Azurite, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    storage = Azure("flows", connection_string=azurite.connection_string)
    storage.add_flow(build_flow("etl"))
    with pytest.raises(StorageError) as missing:
        storage.get_flow("etl/not-there")
    bad = Azure("flows", connection_string=connection_string(azurite.port, key="A" * 88))
    with pytest.raises(StorageError) as refused:
        bad.add_flow(build_flow("etl"))

    shown = [json.dumps(storage.serialize()), repr(storage), repr(vars(storage)), str(missing.value)]
    shown += [str(refused.value), caplog.text]
    for text in shown:
        assert ACCOUNT_KEY not in text
        assert "A" * 88 not in text
        assert "AccountKey" not in text or "check the connection string's AccountName and AccountKey" in text
    assert "connection_string" not in storage.serialize()


def test_a_flow_that_carries_the_storage_is_stored_without_its_connection_string(azurite: Azurite) -> None:
    storage = Azure("flows", connection_string=azurite.connection_string)
    flow = build_flow("etl")
    flow.storage = storage  # as registration does: the storage is pickled with the flow
    location = storage.add_flow(flow)

    pickled = base64.b64decode(read_document(storage._get(location.removeprefix("azure://flows/")))["payload"])
    assert ACCOUNT_KEY.encode() not in pickled and b"AccountKey" not in pickled
    loaded = storage.get_flow("etl")
    assert isinstance(loaded.storage, Azure) and loaded.storage._connection_string is None
    check_runs(loaded)


def test_connection_string_from_the_environment(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    storage = Azure("flows")
    storage.add_flow(build_flow("etl"))

    check_runs(storage_from_spec(storage.serialize()).get_flow("etl"))


def test_no_connection_string_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)

    with pytest.raises(StorageError, match=r"has no connection string: pass connection_string_secret="):
        Azure("flows").add_flow(build_flow("etl"))


def test_missing_secret_names_the_variable(settings_env: Callable[..., Any]) -> None:
    settings_env()

    with pytest.raises(StorageError, match=r"needs the secret 'NOPE' .*HEADWATER__CONTEXT__SECRETS__NOPE"):
        Azure("flows", connection_string_secret="NOPE").add_flow(build_flow("etl"))


def test_malformed_connection_string_does_not_quote_it() -> None:
    storage = Azure("flows", connection_string="not-a-connection-string-s3cr3t")

    with pytest.raises(StorageError, match="connection string is malformed") as info:
        storage.add_flow(build_flow("etl"))
    assert "s3cr3t" not in str(info.value)


# -- service errors -----------------------------------------------------------------


def test_wrong_account_key_is_an_auth_error(azurite: Azurite) -> None:
    storage = Azure("flows", connection_string=connection_string(azurite.port, key="A" * 88))

    with pytest.raises(StorageError, match=r"refused the credentials .*AccountKey") as info:
        storage.add_flow(build_flow("etl"))
    assert "azure://flows/etl/" in str(info.value)
    assert storage.flows == {}


def test_missing_container_is_a_clear_error(azurite: Azurite) -> None:
    storage = Azure("nowhere", connection_string=azurite.connection_string)

    with pytest.raises(StorageError, match=r"azure://nowhere/etl/.*container 'nowhere' does not exist; create it"):
        storage.add_flow(build_flow("etl"))
    assert storage.flows == {}


def test_missing_blob_is_a_clear_error_on_get_and_build(azurite: Azurite) -> None:
    from azure.storage.blob import BlobServiceClient

    storage = Azure("flows", connection_string=azurite.connection_string)
    location = storage.add_flow(build_flow("etl"))
    name = location.removeprefix("azure://flows/")
    BlobServiceClient.from_connection_string(azurite.connection_string).get_blob_client("flows", name).delete_blob()

    with pytest.raises(StorageError, match=rf"{location} .*blob does not exist.*register the flow"):
        storage.get_flow("etl")
    with pytest.raises(StorageError, match=r"blob\(s\) of flow\(s\) 'etl' .* are gone"):
        storage.build()


def test_unreachable_service_fails_fast() -> None:
    import time

    storage = Azure("flows", connection_string=connection_string(free_port()))
    started = time.monotonic()

    with pytest.raises(StorageError, match=r"can't be reached; check the connection string's endpoint"):
        storage.add_flow(build_flow("etl"))
    assert time.monotonic() - started < 10


def test_location_of_another_container_is_refused(azurite: Azurite) -> None:
    storage = Azure("flows", connection_string=azurite.connection_string)

    with pytest.raises(StorageError, match=r"azure://other/x is in container 'other', not in Azure storage azure://flows"):
        storage.get_flow("azure://other/x")
