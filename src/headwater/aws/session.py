"""boto3 clients for headwater's AWS pieces: a session of their own, a region, credentials found.

Each client comes from a session of its own (boto3's default session keeps the first
credentials and settings it read for the whole process), with the parsed service models
shared between sessions. Credentials given as arguments are used to make the session and are
kept nowhere else. Before the first call, :func:`make_client` checks what AWS would refuse
later with a vaguer message: no region anywhere, no credentials anywhere (naming the
variables, the profile and the files it looked at). The endpoint comes from boto3's own
``AWS_ENDPOINT_URL``/``AWS_ENDPOINT_URL_<SERVICE>`` variables (moto in the tests).
"""

from __future__ import annotations

import functools
import os
from typing import Any

#: Seconds to connect and to wait for an answer, and attempts per call (standard mode: throttling
#: and 5xx answers are retried with exponential backoff and jitter).
CONNECT_TIMEOUT = 10
READ_TIMEOUT = 60
ATTEMPTS = 8

REGION_VARIABLES = ("AWS_REGION", "AWS_DEFAULT_REGION")
CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


class AwsConfigError(ValueError):
    """No region, no credentials, or half of a key pair: the message names where it looked and the fix."""


@functools.cache
def model_loader() -> Any:
    """botocore's loader of service models, shared by every session (it caches what it parsed)."""
    from botocore.loaders import create_loader

    return create_loader()


def session(
    aws_access_key_id: str | None = None,
    aws_secret_access_key: str | None = None,
    aws_session_token: str | None = None,
    region_name: str | None = None,
) -> Any:
    """A boto3 session of its own (credentials as given, else boto3's chain), sharing the model loader."""
    import boto3
    import botocore.session

    core = botocore.session.Session()
    core.register_component("data_loader", model_loader())
    return boto3.session.Session(
        aws_access_key_id=aws_access_key_id,
        aws_secret_access_key=aws_secret_access_key,
        aws_session_token=aws_session_token,
        region_name=region_name,
        botocore_session=core,
    )


def client_config(**overrides: Any) -> Any:
    """The botocore ``Config`` of headwater's clients: timeouts, and standard retries with backoff."""
    from botocore.config import Config

    settings: dict[str, Any] = {
        "connect_timeout": CONNECT_TIMEOUT,
        "read_timeout": READ_TIMEOUT,
        "retries": {"total_max_attempts": ATTEMPTS, "mode": "standard"},
    }
    settings.update(overrides)
    return Config(**settings)


def make_client(
    service: str,
    what: str,
    aws_access_key_id: str | None = None,
    aws_secret_access_key: str | None = None,
    aws_session_token: str | None = None,
    region_name: str | None = None,
    check_credentials: bool = True,
) -> Any:
    """A boto3 client of ``service`` for ``what`` (how errors name the caller, e.g. "FargateAgent").

    Raises:
        AwsConfigError: half a key pair given, no region anywhere, or (``check_credentials``) no
            credentials anywhere; the message says where it looked and what to set.
    """
    if bool(aws_access_key_id) != bool(aws_secret_access_key):
        given, missing = (
            ("aws_access_key_id", "aws_secret_access_key")
            if aws_access_key_id
            else ("aws_secret_access_key", "aws_access_key_id")
        )
        raise AwsConfigError(f"{what} was given {given} without {missing}: give both, or neither (then "
                             "boto3 looks in the environment, the profile and the instance or task role)")  # fmt: skip
    made = session(aws_access_key_id, aws_secret_access_key, aws_session_token, region_name)
    if not made.region_name:
        profile = os.environ.get("AWS_PROFILE") or "default"
        raise AwsConfigError(
            f"{what} has no AWS region: none was given (region_name=), none is set in "
            f"{' or '.join(REGION_VARIABLES)}, and the profile {profile!r} (AWS_CONFIG_FILE, ~/.aws/config) "
            "names none; pass region_name='us-east-1' (for example) or set AWS_DEFAULT_REGION"
        )
    if check_credentials and made.get_credentials() is None:
        profile = os.environ.get("AWS_PROFILE") or "default"
        raise AwsConfigError(
            f"{what} found no AWS credentials: none were given (aws_access_key_id=, aws_secret_access_key=), "
            f"none are set in {', '.join(CREDENTIAL_VARIABLES[:2])}, the profile {profile!r} (AWS_PROFILE; "
            "AWS_SHARED_CREDENTIALS_FILE, ~/.aws/credentials, ~/.aws/config) has none, and there is no container "
            "or instance role; set one of them"
        )
    return made.client(service, config=client_config())
