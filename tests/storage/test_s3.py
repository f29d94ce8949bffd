"""S3 storage against moto_server: the contract in pickle and script modes, then bad inputs.

``services_s3.py`` starts ``moto_server`` once for this module; the tests point
boto3 at it with ``client_options={"endpoint_url": ...}`` (pickle mode) or the
``AWS_ENDPOINT_URL`` variable (script mode), with dummy credentials in the AWS
variables. Bad credentials are tested against a second moto server that
enforces authentication (``enforce_authentication``), which knows one IAM user
with no permissions.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("boto3")

from headwater import Flow
from headwater.storage import Storage, StorageError, storage_from_spec
from headwater.storage.s3 import ATTEMPTS, CONNECT_TIMEOUT, READ_TIMEOUT, S3
from headwater.storage.script import extract_flow_from_file

from .contract import StorageContract, build_flow, check_runs, flow_script
from .services_s3 import DUMMY_ENV, client, enforce_authentication, free_port, moto_command, moto_server

BUCKET = "headwater-flows"
# Where a developer's own AWS setup could leak in: cleared for the module.
_AWS_ENV = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION")


def _moto_or_skip() -> None:
    if moto_command() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("moto_server is required in CI (CI=true) but not installed", pytrace=False)
        pytest.skip("MOTO_SERVER IS NOT INSTALLED, these tests did not run: pip install 'headwater[test]'")


@pytest.fixture(scope="module")
def aws_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Dummy credentials and no AWS config of the developer's, for the module."""
    nowhere = tmp_path_factory.mktemp("no-aws") / "none"
    with pytest.MonkeyPatch.context() as mp:
        for name, value in DUMMY_ENV.items():
            mp.setenv(name, value)
        for name in _AWS_ENV:
            mp.delenv(name, raising=False)
        mp.setenv("AWS_CONFIG_FILE", str(nowhere))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(nowhere))
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        yield


@pytest.fixture(scope="module")
def moto(aws_env: None) -> Iterator[str]:
    """The moto server's URL, with BUCKET created."""
    _moto_or_skip()
    with moto_server() as url:
        client(url).create_bucket(Bucket=BUCKET)
        yield url


@pytest.fixture
def objects(moto: str) -> Any:
    """A boto3 client of the tests' own for the moto server."""
    return client(moto)


def _at(moto: str) -> dict[str, str]:
    return {"endpoint_url": moto}


class TestS3Pickle(StorageContract):
    """Pointed at moto with ``client_options``."""

    @pytest.fixture(autouse=True)
    def _moto(self, moto: str) -> None:
        self.endpoint = moto

    def make_storage(self, tmp_path: Path, **kwargs: Any) -> Storage:
        return S3(bucket=BUCKET, client_options=_at(self.endpoint), **kwargs)


class TestS3Script(StorageContract):
    """Pointed at moto with ``AWS_ENDPOINT_URL``, so the spec holds no endpoint at all."""

    stored_as_script = True

    @pytest.fixture(autouse=True)
    def _moto(self, moto: str, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("AWS_ENDPOINT_URL", moto)

    def make_storage(self, tmp_path: Path, **kwargs: Any) -> Storage:
        path = tmp_path / "flows.py"
        path.write_text(flow_script())
        return S3(bucket=BUCKET, stored_as_script=True, local_script_path=path, **kwargs)

    def make_flow(self, tmp_path: Path, name: str) -> Flow:
        return extract_flow_from_file(path=tmp_path / "flows.py", flow_name=name)


def _key(location: str) -> str:
    return location.removeprefix(f"s3://{BUCKET}/")


# -- where flows go --------------------------------------------------------------


def test_payload_goes_under_the_flow_slug(moto: str, objects: Any) -> None:
    location = S3(BUCKET, client_options=_at(moto)).add_flow(build_flow("My ETL/v2"))

    assert location.startswith(f"s3://{BUCKET}/my-etl-v2/") and location.endswith(".headwater")
    got = objects.get_object(Bucket=BUCKET, Key=_key(location))
    assert got["ContentType"] == "application/json"
    assert json.loads(got["Body"].read())["flow_name"] == "My ETL/v2"


def test_a_fixed_key_holds_one_flow(moto: str) -> None:
    storage = S3(BUCKET, key="fixed/etl", client_options=_at(moto))
    assert storage.add_flow(build_flow("etl")) == f"s3://{BUCKET}/fixed/etl"

    with pytest.raises(StorageError, match=rf"s3://{BUCKET}/fixed/etl already holds flow 'etl'.*key= unset"):
        storage.add_flow(build_flow("etl-v2"))
    assert list(storage.flows) == ["etl"]
    check_runs(S3(BUCKET, client_options=_at(moto)).get_flow(f"s3://{BUCKET}/fixed/etl"))


def test_script_mode_uploads_the_file(tmp_path: Path, moto: str, objects: Any) -> None:
    path = tmp_path / "my_flow.py"
    path.write_text(flow_script(("etl",)))
    storage = S3(
        BUCKET, key="scripts/my_flow.py", stored_as_script=True, local_script_path=path, client_options=_at(moto)
    )

    location = storage.add_flow(extract_flow_from_file(path))
    path.unlink()

    got = objects.get_object(Bucket=BUCKET, Key="scripts/my_flow.py")
    assert got["ContentType"] == "text/x-python"
    assert got["Body"].read().decode() == flow_script(("etl",))
    check_runs(storage_from_spec(json.loads(json.dumps(storage.serialize()))).get_flow(location))


def test_script_mode_without_a_local_file_uses_the_script_already_at_key(moto: str, objects: Any) -> None:
    objects.put_object(Bucket=BUCKET, Key="scripts/uploaded.py", Body=flow_script(("etl",)).encode())
    storage = S3(BUCKET, key="scripts/uploaded.py", stored_as_script=True, client_options=_at(moto))

    location = storage.add_flow(build_flow("etl"))

    assert location == f"s3://{BUCKET}/scripts/uploaded.py"
    check_runs(storage.get_flow("etl"))
    with pytest.raises(StorageError, match=r"flow 'other' is not in flow file s3://headwater-flows/scripts/uploaded"):
        storage.add_flow(build_flow("other"))
    missing = S3(BUCKET, key="scripts/absent.py", stored_as_script=True, client_options=_at(moto))
    with pytest.raises(StorageError, match=r"can't read the flow file s3://headwater-flows/scripts/absent.py"):
        missing.add_flow(build_flow("etl"))
    assert missing.flows == {}


def test_a_script_key_is_not_replaced_by_a_file_that_loses_its_flows(tmp_path: Path, moto: str, objects: Any) -> None:
    path = tmp_path / "flows.py"
    path.write_text(flow_script())
    storage = S3(BUCKET, key="scripts/both.py", stored_as_script=True, local_script_path=path, client_options=_at(moto))
    storage.add_flow(extract_flow_from_file(path, flow_name="etl"))
    path.write_text(flow_script(("etl-v2",)))

    with pytest.raises(StorageError, match=r"already holds flow 'etl' .*would lose that flow .*keep flow 'etl'"):
        storage.add_flow(extract_flow_from_file(path, flow_name="etl-v2"))

    assert list(storage.flows) == ["etl"]
    assert objects.get_object(Bucket=BUCKET, Key="scripts/both.py")["Body"].read().decode() == flow_script()
    path.write_text(flow_script())
    storage.add_flow(extract_flow_from_file(path, flow_name="etl-v2"))
    for name in ("etl", "etl-v2"):
        check_runs(storage.get_flow(name))


def test_upload_options_reach_the_object(moto: str, objects: Any) -> None:
    options = {"ServerSideEncryption": "AES256", "Metadata": {"team": "data"}, "ContentType": "application/x-flow"}
    storage = S3(BUCKET, client_options=_at(moto), upload_options=options)

    location = storage.add_flow(build_flow("etl"))

    head = objects.head_object(Bucket=BUCKET, Key=_key(location))
    assert head["ServerSideEncryption"] == "AES256"
    assert head["Metadata"] == {"team": "data"}
    assert head["ContentType"] == "application/x-flow"
    check_runs(storage_from_spec(json.loads(json.dumps(storage.serialize()))).get_flow("etl"))


@pytest.mark.parametrize("variable", ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"])
def test_the_endpoint_can_come_from_the_aws_variables(
    moto: str, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, moto)
    storage = S3(BUCKET)

    location = storage.add_flow(build_flow("etl"))

    assert storage.serialize()["client_options"] == {}
    check_runs(storage_from_spec(json.loads(json.dumps(storage.serialize()))).get_flow(location))


def test_a_flow_carrying_its_storage_can_be_pickled_after_the_client_exists(moto: str) -> None:
    storage = S3(BUCKET, client_options=_at(moto))
    for name in ("etl", "etl-v2"):
        flow = build_flow(name)
        flow.storage = storage  # as `with Flow(name, storage=S3(...))` does
        storage.add_flow(flow)

    loaded = storage.get_flow("etl-v2")
    check_runs(loaded)
    assert isinstance(loaded.storage, S3) and loaded.storage._client is None


def test_spec(moto: str) -> None:
    storage = S3(
        BUCKET,
        key="k",
        client_options={"endpoint_url": moto, "region_name": "us-east-1"},
        upload_options={"ServerSideEncryption": "AES256"},
        labels=["dev"],
        secrets=["OTHER_TOKEN"],
    )

    assert storage.serialize() == {
        "kind": "s3",
        "bucket": BUCKET,
        "key": "k",
        "stored_as_script": False,
        "local_script_path": None,
        "client_options": {"endpoint_url": moto, "region_name": "us-east-1"},
        "upload_options": {"ServerSideEncryption": "AES256"},
        "secrets": ["OTHER_TOKEN"],
        "labels": ["dev"],
        "add_default_labels": False,
        "flows": {},
    }
    assert repr(storage) == "<S3 storage s3://headwater-flows/k: 0 flow(s)>"


# -- bad inputs ----------------------------------------------------------------------


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="needs a bucket name like 'my-flows'"):
        S3("s3://flows")
    with pytest.raises(StorageError, match="key must be an object key"):
        S3(BUCKET, key="/")
    with pytest.raises(StorageError, match=r"stored_as_script=True\) needs local_script_path="):
        S3(BUCKET, stored_as_script=True)
    with pytest.raises(StorageError, match=r"local_script_path= .* needs stored_as_script=True"):
        S3(BUCKET, local_script_path=tmp_path / "f.py")
    with pytest.raises(StorageError, match=r"client_options must be a dict of keyword arguments, not list"):
        S3(BUCKET, client_options=["endpoint_url"])  # type: ignore[arg-type]
    with pytest.raises(StorageError, match=r"client_options must hold JSON values .*'verify' is a PosixPath"):
        S3(BUCKET, client_options={"verify": tmp_path})
    with pytest.raises(StorageError, match=r"'config' that boto3.client\('s3'\) does not take here \(timeouts"):
        S3(BUCKET, client_options={"config": {"retries": {"max_attempts": 10}}})
    with pytest.raises(
        StorageError, match=r"'endpoint' that boto3.*it takes: api_version, aws_account_id, endpoint_url,"
    ):
        S3(BUCKET, client_options={"endpoint": "http://x"})
    with pytest.raises(StorageError, match=r"upload_options can't set 'Body', 'Key'"):
        S3(BUCKET, upload_options={"Key": "k", "Body": "b"})


@pytest.mark.parametrize(
    "options",
    [
        {"aws_access_key_id": "AKIAHWREFUSED000001"},
        {"aws_secret_access_key": "hw-refused-secret-1"},
        {"aws_session_token": "hw-refused-secret-1"},
        {"AWS_SECRET_ACCESS_KEY": "hw-refused-secret-1", "region_name": "us-east-1"},
    ],
)
def test_credentials_in_client_options_are_refused_without_echoing_them(options: dict[str, str]) -> None:
    with pytest.raises(StorageError) as info:
        S3(BUCKET, client_options=options)

    message = str(info.value)
    assert f"does not take credentials in client_options ({next(iter(options))})" in message
    assert "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in message and "profile (AWS_PROFILE)" in message
    assert "AKIAHWREFUSED" not in message and "hw-refused-secret" not in message


def test_an_endpoint_with_a_password_is_refused_without_echoing_it() -> None:
    with pytest.raises(StorageError, match=r"credentials in client_options \(endpoint_url with a user") as info:
        S3(BUCKET, client_options={"endpoint_url": "http://minio:hw-pass-123@127.0.0.1:9000"})
    assert "hw-pass-123" not in str(info.value)


def test_an_sse_c_key_in_upload_options_is_refused_without_echoing_it() -> None:
    with pytest.raises(StorageError, match=r"can't set 'SSECustomerKey'.*secret.*ServerSideEncryption") as info:
        S3(BUCKET, upload_options={"SSECustomerAlgorithm": "AES256", "SSECustomerKey": "hw-sse-key-0123"})
    assert "hw-sse-key-0123" not in str(info.value)


def test_upload_options_s3_rejects_are_a_clear_error(moto: str) -> None:
    storage = S3(BUCKET, client_options=_at(moto), upload_options={"Colour": "blue"})

    with pytest.raises(StorageError, match=r"upload flow 'etl' to s3://.*upload_options= don't fit .*\"Colour\""):
        storage.add_flow(build_flow("etl"))
    assert storage.flows == {}


def test_missing_object_is_a_clear_error(moto: str, objects: Any) -> None:
    storage = S3(BUCKET, client_options=_at(moto))
    location = storage.add_flow(build_flow("etl"))
    objects.delete_object(Bucket=BUCKET, Key=_key(location))

    with pytest.raises(StorageError, match=rf"can't download flow 'etl' from {location} \(S3 storage .*no such object"):
        storage.get_flow("etl")
    with pytest.raises(StorageError, match=r"object\(s\) of flow\(s\) 'etl' .* are gone; register them again"):
        storage.build()


def test_bad_locations_are_clear_errors(moto: str) -> None:
    storage = S3(BUCKET, client_options=_at(moto))

    with pytest.raises(StorageError, match=r"s3://elsewhere/x is in bucket 'elsewhere', not in S3 storage s3://headw"):
        storage.get_flow("s3://elsewhere/x")
    with pytest.raises(StorageError, match=rf"s3://{BUCKET}/ names no object .*s3://{BUCKET}/<key>"):
        storage.get_flow(f"s3://{BUCKET}/")
    with pytest.raises(StorageError, match=r"'gs://x/y' is not in S3 storage s3://headwater-flows \(known: none\)"):
        storage.get_flow("gs://x/y")
    edited = storage_from_spec({"kind": "s3", "bucket": BUCKET, "flows": {"etl": "s3://other/etl.headwater"}})
    with pytest.raises(StorageError, match=rf"s3://other/etl.headwater is not in .*start with s3://{BUCKET}/"):
        edited.get_flow("etl")


def test_missing_bucket_is_a_clear_error(moto: str) -> None:
    storage = S3("no-such-bucket", client_options=_at(moto))

    with pytest.raises(StorageError, match=rf"upload flow 'etl' to s3://no-such-bucket/etl/.*does not exist at {moto}"):
        storage.add_flow(build_flow("etl"))
    assert storage.flows == {}
    with pytest.raises(StorageError, match=r"bucket 'no-such-bucket' does not exist.*`aws s3 mb s3://no-such-bucket`"):
        storage.get_flow("s3://no-such-bucket/etl/x.headwater")
    storage.flows = {"etl": "s3://no-such-bucket/etl/x.headwater"}
    with pytest.raises(StorageError, match=r"check flow 'etl' at s3://no-such-bucket/etl/x.headwater .*does not exist"):
        storage.build()


@pytest.mark.parametrize("how", ["client_options", "AWS_ENDPOINT_URL"])
def test_unreachable_endpoint_fails_fast(aws_env: None, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    if how == "AWS_ENDPOINT_URL":
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    storage = S3(BUCKET, client_options=_at(url) if how == "client_options" else None)

    with pytest.raises(StorageError, match=rf"can't reach S3 at {url} \(EndpointConnectionError, 2 attempts\)") as info:
        storage.add_flow(build_flow("etl"))

    assert "S3 storage s3://headwater-flows" in str(info.value) and "AWS_ENDPOINT_URL" in str(info.value)
    assert storage.flows == {}
    # Fail fast: the client waits seconds, not boto3's default minute per attempt, and retries once.
    config = storage._s3().meta.config
    assert (config.connect_timeout, config.read_timeout) == (CONNECT_TIMEOUT, READ_TIMEOUT) == (5, 30)
    assert config.retries["total_max_attempts"] == ATTEMPTS == 2


def test_missing_credentials_are_a_clear_error(moto: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")

    with pytest.raises(StorageError, match=r"no usable AWS credentials .*NoCredentialsError.*AWS_PROFILE"):
        S3(BUCKET, client_options=_at(moto)).add_flow(build_flow("etl"))

    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    with pytest.raises(StorageError, match=r"can't make its S3 client \(ProfileNotFound.*no-such-profile"):
        S3(BUCKET, client_options=_at(moto)).add_flow(build_flow("etl"))


def test_script_mode_checks_the_file(tmp_path: Path, moto: str) -> None:
    options = _at(moto)
    missing = S3(BUCKET, stored_as_script=True, local_script_path=tmp_path / "nowhere.py", client_options=options)
    with pytest.raises(StorageError, match=r"can't read flow file .*nowhere.py to upload"):
        missing.add_flow(build_flow("etl"))

    (tmp_path / "other.py").write_text(flow_script(("other",)))
    wrong = S3(BUCKET, stored_as_script=True, local_script_path=tmp_path / "other.py", client_options=options)
    with pytest.raises(StorageError, match=r"flow 'etl' is not in flow file .*flows there: 'other'"):
        wrong.add_flow(build_flow("etl"))
    assert missing.flows == wrong.flows == {}


# -- credentials ---------------------------------------------------------------------

#: the IAM user of the authenticating server; it has no policy, so it may do nothing.
_USER = "headwater-nobody"
_UNKNOWN_KEY_ID = "AKIAHWUNKNOWN0000001"
_UNKNOWN_SECRET = "hw-unknown-secret-value-0001"


@pytest.fixture(scope="module")
def strict_moto(aws_env: None) -> Iterator[tuple[str, dict[str, str]]]:
    """A second moto server that checks signatures and permissions, and the access key of its one user."""
    _moto_or_skip()
    with moto_server() as url:
        client(url).create_bucket(Bucket=BUCKET)
        iam = client(url, service="iam")
        iam.create_user(UserName=_USER)
        key = iam.create_access_key(UserName=_USER)["AccessKey"]
        enforce_authentication(url)
        yield url, {"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}


@pytest.mark.parametrize(
    ("who", "code"),
    [("unknown", "InvalidAccessKeyId"), ("wrong-secret", "SignatureDoesNotMatch"), ("no-permission", "AccessDenied")],
)
def test_bad_credentials_are_a_clear_error_that_never_shows_them(
    strict_moto: tuple[str, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    who: str,
    code: str,
) -> None:
    url, user = strict_moto
    key_id, secret = {
        "unknown": (_UNKNOWN_KEY_ID, _UNKNOWN_SECRET),
        "wrong-secret": (user["id"], _UNKNOWN_SECRET),
        "no-permission": (user["id"], user["secret"]),
    }[who]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    caplog.set_level(logging.DEBUG, logger="headwater")
    storage = S3(BUCKET, client_options=_at(url))
    location = f"s3://{BUCKET}/etl/x.headwater"

    errors = []
    with pytest.raises(StorageError, match=rf"upload flow 'etl' to s3://{BUCKET}/etl/.*\({code}\)") as info:
        storage.add_flow(build_flow("etl"))
    errors.append(info.value)
    with pytest.raises(StorageError, match=rf"can't download {location} \(S3 storage .*\({code}\)") as info:
        storage.get_flow(location)
    errors.append(info.value)
    storage.flows = {"etl": location}
    with pytest.raises(StorageError, match=r"check flow 'etl' at .*access denied \(403\); check that the AWS") as info:
        storage.build()
    errors.append(info.value)

    fix = "AWS_SECRET_ACCESS_KEY" if code != "AccessDenied" else "s3:GetObject, s3:PutObject"
    assert fix in str(errors[0]) and "S3 storage s3://headwater-flows" in str(errors[0])
    everything = "".join("".join(traceback.format_exception(e)) for e in errors)
    everything += json.dumps(storage.serialize()) + repr(storage)
    everything += "".join(r.getMessage() for r in caplog.records if r.name.startswith("headwater"))
    assert key_id not in everything and secret not in everything


def test_no_credential_in_spec_or_repr(moto: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAHWSPECCHECK00001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hw-spec-check-secret-0001")
    storage = S3(BUCKET, client_options=_at(moto), secrets=["OTHER_TOKEN"])
    storage.add_flow(build_flow("etl"))
    storage.build().get_flow("etl")

    text = json.dumps(storage.serialize()) + repr(storage)

    assert "AKIAHWSPECCHECK" not in text and "hw-spec-check-secret" not in text
    assert not any(word in text.lower() for word in ("access_key", "secret_access", "session_token", "password"))
    assert storage._client is not None and "_client" not in storage.serialize()


def test_import_is_lazy() -> None:
    code = "import sys, headwater.storage.s3 as s; s.S3('b'); print(bool({'boto3', 'botocore'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
    assert done.stdout.strip() == "False", done.stderr


def test_hostname_is_not_a_default_label(moto: str) -> None:
    assert socket.gethostname() not in S3(BUCKET).labels
