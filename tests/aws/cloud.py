"""moto's server in the test process, as the AWS account the Fargate tests run against.

:class:`Cloud` starts moto's ``ThreadedMotoServer`` on a free port of 127.0.0.1 (in-process, so
the task runner and the tests can put a task into the state AWS would — stopped with a reason,
an exit code — by changing moto's backend objects, never the agent's code paths). Every boto3
client in the tests, the agents and the flow-run containers (host network) reaches it through
``AWS_ENDPOINT_URL`` (:meth:`Cloud.env`). ECS tasks do not age by themselves here
(``ecs::task`` transitions are manual and never due): the task runner (``taskrunner.py``)
moves them, from what their containers do. Known moto gaps, worked around in the tests and
written in docs/aws.md: a container definition without container-level ``memory`` and an
awsvpc configuration without ``securityGroups`` make ``run_task`` answer 500.

No test connects to an address moto invents for a task or ENI (private ranges).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: moto's default account; any credentials are accepted.
ACCOUNT = "123456789012"
REGION = "us-east-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


class Cloud:
    """moto's server (``.url``), its ECS backend (``.ecs_backend``), and the default VPC's subnet and group."""

    def __init__(self) -> None:
        self.server: Any = None
        self.url = ""
        self.subnet = ""
        self.security_group = ""

    def start(self) -> Cloud:
        from moto.moto_api import state_manager
        from moto.server import ThreadedMotoServer

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.server.start()
        self.url = f"http://127.0.0.1:{port}"
        # Tasks stay as the task runner (or a test) sets them: moto would otherwise stop one a step per describe.
        state_manager.set_transition("ecs::task", {"progression": "manual", "times": 10**9})
        ec2 = self.client("ec2")
        self.subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
        self.security_group = ec2.describe_security_groups()["SecurityGroups"][0]["GroupId"]
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def env(self) -> dict[str, str]:
        """What a process needs to use this cloud: endpoint, credentials, region (and no instance metadata)."""
        return {"AWS_ENDPOINT_URL": self.url, "AWS_DEFAULT_REGION": REGION, "AWS_EC2_METADATA_DISABLED": "true",
                **CREDENTIALS}  # fmt: skip

    def client(self, service: str) -> Any:
        """A boto3 client of the tests' own (not headwater's)."""
        import boto3

        return boto3.session.Session().client(
            service, endpoint_url=self.url, region_name=REGION, aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )  # fmt: skip

    @property
    def ecs_backend(self) -> Any:
        from moto.backends import get_backend

        return get_backend("ecs")[ACCOUNT][REGION]

    def create_cluster(self, name: str) -> str:
        return str(self.client("ecs").create_cluster(clusterName=name)["cluster"]["clusterArn"])

    def tasks(self, cluster: str) -> list[Any]:
        """moto's task objects in ``cluster`` (by name)."""
        return list(self.ecs_backend.tasks.get(cluster, {}).values())

    def network(self) -> dict[str, Any]:
        """An awsvpc configuration naming the default subnet and group (moto needs the group)."""
        return {"awsvpcConfiguration": {"subnets": [self.subnet], "securityGroups": [self.security_group]}}


@contextmanager
def throttled(cloud: Cloud, operation: str, times: int) -> Iterator[list[str]]:
    """ECS answers ``ThrottlingException`` to the next ``times`` calls of ``operation`` (``"run_task"``), as
    AWS does past its rate; yields the list of calls refused (one entry each)."""
    from moto.core.exceptions import JsonRESTError

    backend = cloud.ecs_backend
    original = getattr(backend, operation)
    refused: list[str] = []

    def refusing(*args: Any, **kwargs: Any) -> Any:
        if len(refused) < times:
            refused.append(operation)
            raise JsonRESTError("ThrottlingException", "Rate exceeded")
        return original(*args, **kwargs)

    setattr(backend, operation, refusing)
    try:
        yield refused
    finally:
        delattr(backend, operation)  # the class's method again
