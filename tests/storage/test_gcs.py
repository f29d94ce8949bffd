"""GCS storage against gcp-storage-emulator: the contract in pickle and script modes, then bad inputs.

``services_gcs.py`` starts the emulator once for this module; ``STORAGE_EMULATOR_HOST``
points the client at it. The emulator checks no credentials, so bad credentials
are tested only where the client itself refuses them (no emulator host set).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("google.cloud.storage")

from headwater import Flow
from headwater.storage import Storage, StorageError, storage_from_spec
from headwater.storage.gcs import EMULATOR_ENV, GCS
from headwater.storage.script import extract_flow_from_file

from .contract import StorageContract, build_flow, check_runs, flow_script
from .services_gcs import anonymous_client, emulator_command, free_port, gcs_emulator

BUCKET = "headwater-flows"


@pytest.fixture(scope="module")
def emulator() -> Iterator[str]:
    """The emulator's URL, set as STORAGE_EMULATOR_HOST for the module, with BUCKET created."""
    if emulator_command() is None:
        pytest.skip("gcp-storage-emulator is not installed")
    with gcs_emulator() as url, pytest.MonkeyPatch.context() as mp:
        mp.setenv(EMULATOR_ENV, url)
        mp.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
        anonymous_client().create_bucket(BUCKET)
        yield url


@pytest.fixture
def blobs(emulator: str) -> Any:
    """The test bucket, through a client of its own."""
    return anonymous_client().bucket(BUCKET)


class TestGCSPickle(StorageContract):
    @pytest.fixture(autouse=True)
    def _emulator(self, emulator: str) -> None:
        pass

    def make_storage(self, tmp_path: Path, **kwargs: Any) -> Storage:
        return GCS(bucket=BUCKET, timeout=5, **kwargs)


class TestGCSScript(StorageContract):
    stored_as_script = True

    @pytest.fixture(autouse=True)
    def _emulator(self, emulator: str) -> None:
        pass

    def make_storage(self, tmp_path: Path, **kwargs: Any) -> Storage:
        path = tmp_path / "flows.py"
        path.write_text(flow_script())
        return GCS(bucket=BUCKET, stored_as_script=True, local_script_path=path, timeout=5, **kwargs)

    def make_flow(self, tmp_path: Path, name: str) -> Flow:
        return extract_flow_from_file(path=tmp_path / "flows.py", flow_name=name)


# -- where flows go --------------------------------------------------------------


def test_payload_goes_under_the_flow_slug(blobs: Any) -> None:
    location = GCS(BUCKET).add_flow(build_flow("My ETL/v2"))

    assert location.startswith(f"gs://{BUCKET}/my-etl-v2/") and location.endswith(".headwater")
    document = json.loads(blobs.blob(location.removeprefix(f"gs://{BUCKET}/")).download_as_bytes())
    assert document["flow_name"] == "My ETL/v2"


def test_a_fixed_key_holds_one_flow(blobs: Any) -> None:
    storage = GCS(BUCKET, key="fixed/etl")
    assert storage.add_flow(build_flow("etl")) == f"gs://{BUCKET}/fixed/etl"

    with pytest.raises(StorageError, match=r"gs://headwater-flows/fixed/etl already holds flow 'etl'.*key= unset"):
        storage.add_flow(build_flow("etl-v2"))
    assert list(storage.flows) == ["etl"]
    check_runs(GCS(BUCKET).get_flow(f"gs://{BUCKET}/fixed/etl"))


def test_script_mode_uploads_the_file(tmp_path: Path, blobs: Any) -> None:
    path = tmp_path / "my_flow.py"
    path.write_text(flow_script(("etl",)))
    storage = GCS(BUCKET, key="scripts/my_flow.py", stored_as_script=True, local_script_path=path)

    location = storage.add_flow(extract_flow_from_file(path))
    path.unlink()

    assert blobs.blob("scripts/my_flow.py").download_as_text() == flow_script(("etl",))
    check_runs(storage_from_spec(json.loads(json.dumps(storage.serialize()))).get_flow(location))


def test_a_script_key_is_not_replaced_by_a_file_that_loses_its_flows(tmp_path: Path, blobs: Any) -> None:
    path = tmp_path / "flows.py"
    path.write_text(flow_script())
    storage = GCS(BUCKET, key="scripts/both.py", stored_as_script=True, local_script_path=path)
    storage.add_flow(extract_flow_from_file(path, flow_name="etl"))
    path.write_text(flow_script(("etl-v2",)))

    with pytest.raises(StorageError, match=r"already holds flow 'etl' .*would lose that flow .*keep flow 'etl'"):
        storage.add_flow(extract_flow_from_file(path, flow_name="etl-v2"))

    assert list(storage.flows) == ["etl"]
    assert blobs.blob("scripts/both.py").download_as_text() == flow_script()


def test_spec(emulator: str) -> None:
    storage = GCS(BUCKET, key="k", project="p", labels=["dev"], secrets=["GCP_CREDENTIALS"])

    assert storage.serialize() == {
        "kind": "gcs",
        "bucket": BUCKET,
        "key": "k",
        "project": "p",
        "stored_as_script": False,
        "local_script_path": None,
        "timeout": 30.0,
        "secrets": ["GCP_CREDENTIALS"],
        "labels": ["dev"],
        "add_default_labels": False,
        "flows": {},
    }


# -- bad inputs ----------------------------------------------------------------------


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="needs a bucket name like 'my-flows'"):
        GCS("gs://flows")
    with pytest.raises(StorageError, match="key must be an object name"):
        GCS(BUCKET, key="/")
    with pytest.raises(StorageError, match="timeout must be a positive number"):
        GCS(BUCKET, timeout=0)
    with pytest.raises(StorageError, match=r"stored_as_script=True\) needs local_script_path="):
        GCS(BUCKET, stored_as_script=True)
    with pytest.raises(StorageError, match=r"local_script_path= .* needs stored_as_script=True"):
        GCS(BUCKET, local_script_path=tmp_path / "f.py")


def test_missing_object_is_a_clear_error(blobs: Any) -> None:
    storage = GCS(BUCKET)
    location = storage.add_flow(build_flow("etl"))
    blobs.blob(location.removeprefix(f"gs://{BUCKET}/")).delete()

    with pytest.raises(StorageError, match=rf"can't download flow 'etl' from {location} .*no such object"):
        storage.get_flow("etl")
    with pytest.raises(StorageError, match=r"object\(s\) of flow\(s\) 'etl' .* are gone; register them again"):
        storage.build()


def test_bad_locations_are_clear_errors(emulator: str) -> None:
    storage = GCS(BUCKET)

    with pytest.raises(StorageError, match=r"gs://elsewhere/x is in bucket 'elsewhere', not in GCS storage gs://hea"):
        storage.get_flow("gs://elsewhere/x")
    with pytest.raises(StorageError, match=rf"gs://{BUCKET}/ names no object .*gs://{BUCKET}/<key>"):
        storage.get_flow(f"gs://{BUCKET}/")
    with pytest.raises(StorageError, match=r"'s3://x/y' is not in GCS storage gs://headwater-flows \(known: none\)"):
        storage.get_flow("s3://x/y")


def test_missing_bucket_is_a_clear_error(emulator: str) -> None:
    storage = GCS("no-such-bucket", timeout=5)

    with pytest.raises(StorageError, match=r"upload flow 'etl' to gs://no-such-bucket/etl/.*does not exist.*create it"):
        storage.add_flow(build_flow("etl"))
    assert storage.flows == {}
    with pytest.raises(StorageError, match=r"bucket 'no-such-bucket' does not exist"):
        storage.get_flow("gs://no-such-bucket/etl/x.headwater")


def test_unreachable_endpoint_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv(EMULATOR_ENV, url)
    storage = GCS(BUCKET, timeout=1)

    with pytest.raises(StorageError, match=rf"can't reach GCS at {url} within 1s.*emulator") as info:
        storage.add_flow(build_flow("etl"))
    assert "GCS storage gs://headwater-flows" in str(info.value)
    assert storage.flows == {}


def test_missing_credentials_are_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(EMULATOR_ENV, raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-key.json"))

    with pytest.raises(StorageError, match=r"no usable Google Cloud credentials.*GOOGLE_APPLICATION_CREDENTIALS"):
        GCS(BUCKET, project="p").add_flow(build_flow("etl"))


def test_script_mode_checks_the_file(tmp_path: Path, emulator: str) -> None:
    missing = GCS(BUCKET, stored_as_script=True, local_script_path=tmp_path / "nowhere.py")
    with pytest.raises(StorageError, match=r"can't read flow file .*nowhere.py to upload"):
        missing.add_flow(build_flow("etl"))

    (tmp_path / "other.py").write_text(flow_script(("other",)))
    wrong = GCS(BUCKET, stored_as_script=True, local_script_path=tmp_path / "other.py")
    with pytest.raises(StorageError, match=r"flow 'etl' is not in flow file .*flows there: 'other'"):
        wrong.add_flow(build_flow("etl"))
    assert missing.flows == wrong.flows == {}


def test_no_credential_in_spec_repr_or_errors(emulator: str) -> None:
    storage = GCS(BUCKET, secrets=["GCP_CREDENTIALS"])
    storage.add_flow(build_flow("etl"))
    text = json.dumps(storage.serialize()) + repr(storage)

    assert "token" not in text.lower() and "private_key" not in text
    assert storage._client is not None and "_client" not in storage.serialize()


def test_import_is_lazy() -> None:
    import subprocess
    import sys

    code = "import sys, headwater.storage.gcs; print('google.cloud.storage' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
    assert done.stdout.strip() == "False", done.stderr


def test_hostname_is_not_a_default_label(emulator: str) -> None:
    assert socket.gethostname() not in GCS(BUCKET).labels
