"""A throwaway Docker Engine and registry for the Docker tests, like ``pg.py`` is for PostgreSQL.

:class:`DockerDaemon` runs ``dockerd --bridge=none --iptables=false`` with its data and
exec roots in a temporary folder and its API on a Unix socket there, so the tests never
touch (or need) a system daemon. Containers use ``--network host`` (there is no bridge).
:func:`import_base_image` loads the Debian + Python root file system that
``scripts/ensure-system-deps.sh`` made with debootstrap (no image can be pulled here).
:class:`Registry` runs Debian's ``docker-registry`` on 127.0.0.1 — the daemon treats a
loopback registry as insecure (plain HTTP), like any ``localhost:5000``.
The fixtures that use these are at the end of ``tests/conftest.py``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
#: made by scripts/ensure-system-deps.sh (ensure_base_image).
BASE_IMAGE_TAR = REPO / ".tools" / "docker" / "base-bookworm-python3.tar"
#: the tag the base image gets in the test daemon.
BASE_IMAGE = "headwater-test-base:bookworm"
#: the host's CA bundle, copied into images that pip-install (this machine intercepts TLS).
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def docker_available() -> tuple[bool, str]:
    """Whether dockerd, docker-registry and the base image tarball are here, and if not, why."""
    missing = [name for name in ("dockerd", "docker-registry") if shutil.which(name) is None]
    if missing:
        return False, f"{' and '.join(missing)} not installed (run `bash scripts/ensure-system-deps.sh` as root)"
    if not BASE_IMAGE_TAR.exists():
        return False, f"no base image tarball {BASE_IMAGE_TAR} (run `bash scripts/ensure-system-deps.sh` as root)"
    if os.geteuid() != 0:
        return False, "dockerd needs root"
    try:
        import docker  # noqa: F401
    except ImportError:
        return False, "the docker SDK is not installed (pip install -e '.[test]')"
    return True, ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DockerDaemon:
    """A ``dockerd`` of its own: ``start()``, ``base_url`` (``unix://…``), ``client()``, ``stop()``.

    With ``root`` (a short path: it holds the socket), the daemon keeps its folder, socket
    path and data there, so ``stop(keep=True)`` then ``start()`` restarts it in place; its
    ``base_url`` is known before the first start.
    """

    def __init__(self, root: Path | None = None) -> None:
        self._fixed_root = root
        self.root: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.base_url = f"unix://{root / 'docker.sock'}" if root is not None else ""

    @property
    def log_path(self) -> Path:
        assert self.root is not None
        return self.root / "dockerd.log"

    def log(self) -> str:
        """The daemon's log (for a failed test's report)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def start(self, timeout: float = 60.0) -> DockerDaemon:
        # Short: the exec root holds Unix sockets, whose paths are limited to 107 bytes.
        if self._fixed_root is not None:
            self.root = self._fixed_root
            self.root.mkdir(parents=True, exist_ok=True)
        else:
            self.root = Path(tempfile.mkdtemp(prefix="hw-dockerd-", dir="/tmp"))
        socket_path = self.root / "docker.sock"
        self.base_url = f"unix://{socket_path}"
        command = [
            "dockerd",
            "--bridge=none",
            "--iptables=false",
            "--ip-masq=false",
            f"--data-root={self.root / 'data'}",
            f"--exec-root={self.root / 'exec'}",
            f"--pidfile={self.root / 'dockerd.pid'}",
            f"--host={self.base_url}",
            "--log-level=warn",
        ]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                output = self.log()
                self.stop()
                raise RuntimeError(f"dockerd exited with {self.process.returncode} before answering:\n{output[-3000:]}")
            if socket_path.exists():
                try:
                    if self.client().ping():
                        return self
                except Exception:
                    pass
            if time.monotonic() > deadline:
                output = self.log()
                self.stop()
                raise RuntimeError(f"dockerd did not answer at {self.base_url} within {timeout:g}s:\n{output[-3000:]}")
            time.sleep(0.2)

    def client(self, timeout: int = 300) -> Any:
        import docker

        return docker.DockerClient(base_url=self.base_url, timeout=timeout)

    def stop(self, keep: bool = False) -> None:
        """Stop the daemon (and its containers), then remove its folder (``keep``: leave it, to start again)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.root is not None and not keep:
            # Mounts left by a daemon that died uncleanly (and the exec root's netns/default, which
            # even a clean stop leaves) would make rmtree fail.
            for mounted in ("data", "exec/netns/default"):
                with contextlib.suppress(OSError, subprocess.SubprocessError):
                    subprocess.run(["umount", "-R", "-l", str(self.root / mounted)], capture_output=True,
                                   check=False, timeout=30)  # fmt: skip
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None


def import_base_image(client: Any, tag: str = BASE_IMAGE) -> str:
    """``docker import`` the debootstrap tarball as ``tag`` (a few seconds); returns the tag."""
    with open(BASE_IMAGE_TAR, "rb") as tarball:
        client.api.import_image_from_data(
            tarball, repository=tag.partition(":")[0], tag=tag.partition(":")[2] or "latest"
        )
    client.images.get(tag)  # raises if the import did not make it
    return tag


class Registry:
    """Debian's ``docker-registry`` on a free port of 127.0.0.1, storing in a temporary folder."""

    def __init__(self) -> None:
        self.root: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def address(self) -> str:
        """``localhost:<port>``: what image names start with."""
        return f"localhost:{self.port}"

    def log(self) -> str:
        assert self.root is not None
        try:
            return (self.root / "registry.log").read_text(errors="replace")
        except OSError:
            return ""

    def start(self, timeout: float = 30.0) -> Registry:
        self.root = Path(tempfile.mkdtemp(prefix="hw-registry-"))
        self.port = free_port()  # never a fixed one: two sessions (xdist workers) run registries at once
        config = self.root / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.root / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n"
        )
        with open(self.root / "registry.log", "wb") as log:
            self.process = subprocess.Popen(
                ["docker-registry", "serve", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"docker-registry exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v2/", timeout=1) as answer:
                    headers = answer.headers
            except urllib.error.HTTPError as exc:
                headers = exc.headers
            except OSError:
                headers = None
            if headers is not None and "registry/2" in (headers.get("Docker-Distribution-Api-Version") or ""):
                return self  # this registry, not another process that took the port first
            if time.monotonic() > deadline:
                raise RuntimeError(f"docker-registry did not answer on port {self.port}:\n{self.log()}")
            time.sleep(0.1)

    def tags(self, repository: str) -> list[str]:
        """The tags the registry holds for ``repository`` (its HTTP API, not the daemon's view)."""
        import json

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v2/{repository}/tags/list", timeout=5) as r:
                return list(json.load(r).get("tags") or [])
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return []
            raise

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None


def push(base_url: str, reference: str, attempts: int = 3, stall: float = 90.0) -> None:
    """Push ``reference`` from the daemon at ``base_url``, again (up to ``attempts`` times) when it stalls.

    On a busy machine a push has been seen to go silent for minutes (no progress from the
    daemon). A read that waits ``stall`` seconds ends the attempt, and the next one resumes:
    the layers the registry already has are skipped.
    """
    import docker

    failures = []
    for _ in range(attempts):
        client = docker.DockerClient(base_url=base_url, timeout=int(stall))
        try:
            repository, _, tag = reference.rpartition(":")
            for chunk in client.api.push(repository, tag=tag, stream=True, decode=True):
                if "error" in chunk:
                    raise RuntimeError(f"pushing {reference} failed: {chunk['error']}")
            return
        except Exception as exc:
            if isinstance(exc, RuntimeError):
                raise
            failures.append(f"{type(exc).__name__}: {exc}")
        finally:
            client.close()
    raise RuntimeError(f"pushing {reference} stalled {attempts} times: {failures}")


def run_container(client: Any, image: str, command: list[str], timeout: float = 120, **kwargs: Any) -> str:
    """Run ``command`` in a container of ``image`` on the host network and return its output.

    Waits for the exit, then reads the logs, then removes the container — unlike
    ``containers.run(remove=True)``, whose output is sometimes empty when the container
    is gone before its logs are read. A non-zero exit raises with the output.
    """
    container = client.containers.create(image, command, network_mode="host", **kwargs)
    try:
        container.start()
        status = container.wait(timeout=timeout)
        output = container.logs(stdout=True, stderr=True).decode(errors="replace")
    finally:
        container.remove(force=True)
    if status.get("StatusCode") != 0:
        raise AssertionError(f"{command} in {image} exited with {status}: {output}")
    return str(output)
