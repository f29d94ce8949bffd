"""The connection to a Docker daemon, with errors that say where it looked and what to do.

The daemon's URL is the first of: the ``base_url`` argument, the setting
``docker.base_url`` (``HEADWATER__DOCKER__BASE_URL``), then the Docker SDK's own
defaults (``DOCKER_HOST``, else the local socket).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from docker import DockerClient

INSTALL_HINT = "pip install headwater[docker]"


class DockerUnavailable(RuntimeError):
    """The Docker SDK is missing, or the daemon does not answer; the message names the URL and the fix."""


def daemon_url(base_url: str | None = None) -> str | None:
    """The URL a client made with ``base_url`` talks to: it, else ``DOCKER_HOST``; None means the SDK's
    default (the local socket). The owner (a storage, an environment, an agent) passes the
    ``docker.base_url`` setting as ``base_url`` when it was given none."""
    return base_url or os.environ.get("DOCKER_HOST") or None


def describe_daemon(base_url: str | None = None) -> str:
    """How errors name the daemon: its URL, or the SDK's default socket."""
    return daemon_url(base_url) or "unix:///var/run/docker.sock (the default; DOCKER_HOST is not set)"


def docker_client(base_url: str | None = None, timeout: int = 300, check: bool = True) -> DockerClient:
    """A Docker SDK client of the daemon at ``base_url`` (or ``DOCKER_HOST``, or the SDK's default).

    Args:
        base_url: the daemon's URL, e.g. ``unix:///var/run/docker.sock`` or ``tcp://127.0.0.1:2375``.
        timeout: seconds one API call may take.
        check: ping the daemon now, so an absent daemon is a clear error here rather than later.

    Raises:
        DockerUnavailable: the SDK is not installed, or the daemon can't be reached.
    """
    try:
        import docker
        from docker.errors import DockerException
    except ImportError as exc:
        raise DockerUnavailable(f"Docker support needs the Docker SDK: `{INSTALL_HINT}` ({exc})") from exc
    url = daemon_url(base_url)
    try:
        client = docker.DockerClient(base_url=url, timeout=timeout) if url else docker.from_env(timeout=timeout)
        if check:
            client.ping()
    except DockerException as exc:
        raise DockerUnavailable(
            f"can't reach the Docker daemon at {describe_daemon(base_url)}: {exc}; is dockerd running? "
            "point headwater at it with base_url=, HEADWATER__DOCKER__BASE_URL or DOCKER_HOST"
        ) from exc
    except Exception as exc:  # requests' connection errors, a socket that vanished
        raise DockerUnavailable(
            f"can't reach the Docker daemon at {describe_daemon(base_url)}: {type(exc).__name__}: {exc}; "
            "is dockerd running? point headwater at it with base_url=, HEADWATER__DOCKER__BASE_URL or DOCKER_HOST"
        ) from exc
    return client
