"""Fixtures shared by every test package.

* Test servers start warm: ``ServerProcess`` forks them from one process per worker
  that has already imported the server (the LocalAgent's warm starter), since 150-odd
  server starts were the largest share of the suite's CPU. They still run
  ``headwater.cli server start`` in a process of their own; when the warm starter
  can't start one, it starts cold.
* Settings are isolated: ``HEADWATER__HOME`` points at a temporary folder for
  the whole session, so a developer's ``~/.headwater/config.toml`` can't change
  what the tests see. ``settings_env`` sets ``HEADWATER__*`` variables for one
  test and reloads the settings before and after.

The Dask clusters the executor tests use are in ``tests/executors/conftest.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tests on the Docker engine in two xdist groups: those on the Kubernetes emulator, and the rest (the
    ECS task runner's too: they share that worker's engine and the agent tests' image).

    ``make test`` runs the suite on two workers (``-n $(WORKERS) --dist loadgroup``): a group's tests all
    go to one worker, so one Docker engine, registry and set of built images serve them (each
    group's worker starts its own), and the tests of neither group are shared out.
    """
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "k8s_cluster" in fixtures or "k8s_target" in fixtures:
            item.add_marker(pytest.mark.xdist_group("kubernetes"))
        elif "docker_daemon" in fixtures:
            item.add_marker(pytest.mark.xdist_group("docker"))


#: What ``headwater server start`` imports before it serves (the rest is the warm starter's own preload).
SERVER_PRELOAD = ("headwater.cli.server", "headwater.server.app", "headwater.server.serve", "uvicorn")


@pytest.fixture(scope="session", autouse=True)
def _warm_test_servers() -> Iterator[None]:
    from headwater.agent.warm import WarmStarter, WarmUnavailable
    from headwater.server.process import ServerProcess

    starters: list[WarmStarter] = []

    def spawn(argv: Sequence[str], env: dict[str, str], stdio: Sequence[int]) -> Any:
        if not starters:  # started on first use: most workers' first server comes soon, some never
            starters.append(WarmStarter(preload=SERVER_PRELOAD).start())
        starter = starters[0]
        if starter.wait_ready(60):
            try:
                return starter.spawn(argv, env, stdio)
            except WarmUnavailable:
                pass
        stdin, stdout, stderr = stdio
        return subprocess.Popen([sys.executable, *argv], env=env, stdin=stdin, stdout=stdout, stderr=stderr)

    ServerProcess.spawner = spawn
    yield
    ServerProcess.spawner = None
    for starter in starters:
        starter.close()


@pytest.fixture(scope="session", autouse=True)
def _isolated_headwater_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("headwater-home")
    old = os.environ.get("HEADWATER__HOME")
    os.environ["HEADWATER__HOME"] = str(home)
    _reload_settings_if_loaded()
    yield home
    if old is None:
        os.environ.pop("HEADWATER__HOME", None)
    else:
        os.environ["HEADWATER__HOME"] = old
    _reload_settings_if_loaded()


def _reload_settings_if_loaded() -> None:
    # Only when headwater.config is already imported: importing it here would
    # load pydantic into every test process for nothing.
    config = sys.modules.get("headwater.config")
    if config is not None:
        config.reload_settings()


@pytest.fixture
def settings_env() -> Iterator[Callable[..., Any]]:
    """``settings_env(ENGINE__EXECUTOR__DEFAULT_CLASS="...")`` sets ``HEADWATER__...`` and reloads.

    Everything it set is undone, and the settings reloaded, when the test ends.
    """
    from headwater.config import reload_settings

    with pytest.MonkeyPatch.context() as mp:

        def set_env(**values: str) -> Any:
            for key, value in values.items():
                mp.setenv(f"HEADWATER__{key}", value)
            return reload_settings()

        yield set_env
    reload_settings()


# --- PostgreSQL (tests/pg.py) -------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Any]:
    """One real PostgreSQL server (a ``pg.PostgresCluster``) on a free 127.0.0.1 port for the session.

    Skips when the server binaries are missing, unless ``CI=true``: CI installs them
    (``scripts/ensure-system-deps.sh``), so there a missing server fails instead.
    """
    from pg import PostgresCluster, postgres_available

    available, reason = postgres_available()
    if not available:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI (CI=true) but unavailable: {reason}", pytrace=False)
        pytest.skip(f"PostgreSQL IS NOT INSTALLED, these tests did not run: {reason}")
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture
def postgres_url(postgres_cluster: Any) -> Iterator[str]:
    """A fresh, empty database of its own for one test: ``postgresql://postgres@127.0.0.1:<port>/<name>``.

    Dropped after the test (closing connections left open), so a long session does not fill the disk.
    """
    import uuid

    name = f"test_{uuid.uuid4().hex[:12]}"
    url: str = postgres_cluster.create_database(name)
    yield url
    postgres_cluster.drop_database(name)


# --- Docker (tests/dockerd.py) -------------------------------------------------------------


def _docker_or_skip() -> None:
    from dockerd import docker_available

    available, reason = docker_available()
    if not available:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Docker is required in CI (CI=true) but unavailable: {reason}", pytrace=False)
        pytest.skip(f"DOCKER IS NOT AVAILABLE, these tests did not run: {reason}")


@pytest.fixture(scope="session")
def docker_daemon() -> Iterator[Any]:
    """A ``dockerd`` of the session's own (``.base_url``, ``.client()``), with the base image imported.

    Skips when dockerd or the base image tarball is missing, unless ``CI=true`` (then it fails).
    """
    _docker_or_skip()
    from dockerd import DockerDaemon, import_base_image

    daemon = DockerDaemon().start()
    try:
        client = daemon.client()
        import_base_image(client)
        client.close()
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="session")
def docker_base_image(docker_daemon: Any) -> str:
    """The tag of the Debian bookworm + Python 3 base image in ``docker_daemon``."""
    from dockerd import BASE_IMAGE

    return BASE_IMAGE


@pytest.fixture(scope="session")
def docker_registry(docker_daemon: Any) -> Iterator[Any]:
    """A ``docker-registry`` on 127.0.0.1 (``.address`` is ``localhost:<port>``, a free port)."""
    from dockerd import Registry

    registry = Registry().start()
    yield registry
    registry.stop()


@pytest.fixture(scope="session")
def dask_image(docker_daemon: Any, docker_base_image: str) -> str:
    """headwater from this tree with the Dask and Kubernetes packages of this interpreter (Dask worker pods)."""
    import uuid

    import dask
    import distributed
    import kubernetes

    from agent.docker_image import build_test_image

    client = docker_daemon.client()
    try:
        extras = [f"dask=={dask.__version__}", f"distributed=={distributed.__version__}",
                  f"kubernetes=={kubernetes.__version__}"]  # fmt: skip
        return build_test_image(client, docker_base_image, f"headwater-dask-test:{uuid.uuid4().hex[:8]}", extras)
    finally:
        client.close()


# --- Kubernetes (tests/k8s/) ------------------------------------------------------------------


@pytest.fixture(scope="session")
def k8s_cluster(docker_daemon: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The Kubernetes API emulator (``tests/k8s/emulator.py``) with its pod runner on ``docker_daemon``.

    ``.kubeconfig`` (a file), ``.url``, ``.emulator`` (its objects, ``forbid``), ``.runner``
    (``node_labels``, ``evict``). Skips like ``docker_daemon`` when Docker is missing, when the
    ``kubernetes``/``kmock`` packages are (``pip install -e '.[test]'`` has them), and when
    ``HEADWATER_TEST_KUBECONFIG`` points the tests at a real cluster (see ``k8s_target``).
    """
    from k8s.target import SWITCH, switched_on

    if switched_on(os.environ):
        pytest.skip(f"needs the Kubernetes API emulator, and {SWITCH} points the tests at a real cluster")
    pytest.importorskip("kmock", reason="kmock (the Kubernetes API emulator) is not installed")
    pytest.importorskip("kubernetes", reason="the kubernetes client is not installed")
    from k8s.emulator import Cluster
    from k8s.podrunner import PodRunner

    cluster = Cluster(tmp_path_factory.mktemp("k8s")).start()
    docker = docker_daemon.client()
    runner = PodRunner(cluster, docker).start()
    cluster.runner = runner  # type: ignore[attr-defined]
    try:
        yield cluster
    finally:
        runner.stop()
        docker.close()
        cluster.stop()


@pytest.fixture(scope="session")
def k8s_target(request: pytest.FixtureRequest) -> Any:
    """Where the Kubernetes acceptance test runs flows (``tests/k8s/target.py``): the emulated cluster,
    or the real one ``HEADWATER_TEST_KUBECONFIG`` and its companion variables describe."""
    from k8s import target

    if target.switched_on(os.environ):
        try:
            return target.from_environment(os.environ)
        except target.TargetError as exc:
            pytest.fail(str(exc), pytrace=False)
    cluster = request.getfixturevalue("k8s_cluster")
    return target.emulated(cluster, request.getfixturevalue("docker_registry").address)


# --- AWS (tests/aws/) -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def aws_cloud() -> Iterator[Any]:
    """moto's server in this process (``tests/aws/cloud.py``): ``.url``, ``.env()``, ``.ecs_backend``, ``.client()``."""
    pytest.importorskip("moto", reason="moto (the AWS emulator) is not installed")
    from aws.cloud import Cloud

    cloud = Cloud().start()
    yield cloud
    cloud.stop()


@pytest.fixture
def aws_env(aws_cloud: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This process's boto3 clients reach ``aws_cloud`` (its endpoint, dummy credentials, a region)."""
    for name in ("AWS_PROFILE", "AWS_REGION", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    env: dict[str, str] = aws_cloud.env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture(scope="session")
def ecs_runner(aws_cloud: Any, docker_daemon: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The ECS task runner (``tests/aws/taskrunner.py``): RUNNING tasks of ``aws_cloud`` run on ``docker_daemon``,
    with the session's temp root mounted at its own path."""
    from aws.taskrunner import TaskRunner

    docker = docker_daemon.client()
    runner = TaskRunner(aws_cloud, docker, binds=[str(tmp_path_factory.getbasetemp())]).start()
    try:
        yield runner
    finally:
        runner.stop()
        docker.close()
