"""The Docker test infrastructure itself (``tests/dockerd.py``): a daemon, the base image, a registry."""

from __future__ import annotations

from typing import Any

from dockerd import run_container


def test_the_base_image_runs_python_with_pip_on_the_host_network(docker_daemon: Any, docker_base_image: str) -> None:
    client = docker_daemon.client()
    code = "import sys, pip, ssl; print(sys.version_info[:2], ssl.OPENSSL_VERSION)"
    out = run_container(client, docker_base_image, ["python", "-c", code])
    assert out.startswith("(3, 11)")


def test_an_image_pushed_to_the_registry_is_listed_there(
    docker_daemon: Any, docker_base_image: str, docker_registry: Any
) -> None:
    client = docker_daemon.client()
    repository = f"{docker_registry.address}/fixture-check"
    client.images.get(docker_base_image).tag(repository, "t1")
    errors = [line for line in client.images.push(repository, "t1", stream=True, decode=True) if "error" in line]
    assert errors == []
    assert docker_registry.tags("fixture-check") == ["t1"]
