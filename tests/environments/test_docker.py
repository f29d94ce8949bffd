"""DockerEnvironment against a real dockerd and registry: build, Dockerfile, pull, push, spec, registration.

The image is built by the same code as Docker storage (``tests/storage/test_docker.py``
proves the build itself); here each of the environment's own methods is checked.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockerd import HOST_CA_BUNDLE, free_port, run_container
from headwater import Flow
from headwater.containers.build import ImageError
from headwater.environments import environment_from_spec
from headwater.environments.docker import DockerEnvironment
from headwater.executors import DaskExecutor, LocalDaskExecutor, LocalExecutor
from headwater.storage import storage_from_spec
from headwater.storage.script import extract_flow_from_file

from .contract import InPlaceEnvironmentContract

SOURCE = """
from headwater import Flow, task

@task
def numbers():
    return [1, 2, 3]

@task
def total(values):
    return sum(values)

with Flow("env-etl") as flow:
    total(numbers())
"""


class TestDockerEnvironment(InPlaceEnvironmentContract):
    """The contract needs no daemon: a DockerEnvironment runs the flow in place, inside its container."""

    def make_environment(self, tmp_path: Path, **kwargs: Any) -> DockerEnvironment:
        return DockerEnvironment(registry_url="localhost:5000", python_dependencies=["pandas"], **kwargs)


def make_flow() -> Flow:
    """Built from source, so its tasks are pickled by value (this module isn't in the image)."""
    return extract_flow_from_file(contents=SOURCE, flow_name="env-etl")


@pytest.fixture
def env_args(docker_daemon: Any, docker_base_image: str) -> dict[str, Any]:
    return {
        "base_image": docker_base_image,
        "local_image": True,
        "base_url": docker_daemon.base_url,
        "build_kwargs": {"network_mode": "host"},
        "ca_certificates": HOST_CA_BUNDLE,
    }


@pytest.fixture
def client(docker_daemon: Any) -> Iterator[Any]:
    c = docker_daemon.client()
    yield c
    c.close()


def start() -> None:
    print("started")


def test_build_returns_a_new_environment_naming_the_image_with_every_argument_kept(
    env_args: dict[str, Any], docker_registry: Any, client: Any, tmp_path: Path
) -> None:
    (tmp_path / "data.txt").write_text("data\n")
    executor = LocalExecutor()
    env = DockerEnvironment(
        registry_url=docker_registry.address,
        python_dependencies=["cloudpickle"],  # already there: pip has nothing to fetch
        image_name="flows/env-etl",
        env_vars={"MODE": "test"},
        files={str(tmp_path / "data.txt"): "/opt/data.txt"},
        executor=executor,
        labels=["docker", "dev"],
        on_start=start,
        on_exit=start,
        metadata={"team": "data"},
        **env_args,
    )

    built = env.build(make_flow())

    assert built is not env and env.image_tag is None
    assert built.image_name == "flows/env-etl" and built.image_tag
    assert built.image == f"{docker_registry.address}/flows/env-etl:{built.image_tag}"
    kept = ("base_image", "registry_url", "python_dependencies", "env_vars", "files", "labels", "on_start", "on_exit",
            "metadata", "local_image", "base_url", "build_kwargs", "ca_certificates", "executor")  # fmt: skip
    for name in kept:
        assert getattr(built, name) == getattr(env, name), name
    assert built.executor is executor
    assert built.image_tag in docker_registry.tags("flows/env-etl")
    out = run_container(client, built.image, ["sh", "-c", "cat /opt/data.txt; echo $MODE"])
    assert out.split() == ["data", "test"]


def test_build_image_without_push_keeps_the_image_here_and_names_it(env_args: dict[str, Any], client: Any) -> None:
    env = DockerEnvironment(**env_args)

    repository, tag = env.build_image(make_flow(), push=False)

    assert repository == "env-etl"
    assert client.images.get(f"{repository}:{tag}")
    assert env.build(make_flow(), push=False).image_name == "env-etl"


def test_push_without_a_registry_is_a_clear_error(env_args: dict[str, Any]) -> None:
    env = DockerEnvironment(**env_args)

    for build in (env.build, env.build_image):
        with pytest.raises(ValueError, match=r"push=True needs registry_url= .*or build with push=False"):
            build(make_flow())


def test_create_dockerfile_writes_a_context_docker_can_build(
    env_args: dict[str, Any], client: Any, tmp_path: Path
) -> None:
    env = DockerEnvironment(python_dependencies=["cloudpickle"], env_vars={"MODE": "test"}, **env_args)

    path = env.create_dockerfile(make_flow(), directory=tmp_path / "ctx")

    assert path == str(tmp_path / "ctx" / "Dockerfile")
    text = Path(path).read_text()
    assert text.splitlines()[1] == f"FROM {env_args['base_image']}"
    assert 'RUN ["python", "-m", "pip", "install", "cloudpickle"]' in text
    assert 'ENV MODE="test"' in text
    assert text.rstrip().splitlines()[-1].startswith('RUN ["python", "/opt/headwater/healthcheck.py"')
    assert (tmp_path / "ctx" / ".headwater-build" / "flows" / "env-etl.headwater").is_file()
    image, _ = client.images.build(path=str(tmp_path / "ctx"), tag="from-dockerfile:1", network_mode="host")
    assert image.id


def test_pull_image_pulls_from_the_registry_after_the_local_image_is_removed(
    env_args: dict[str, Any], docker_registry: Any, client: Any
) -> None:
    built = DockerEnvironment(registry_url=docker_registry.address, image_name="pulled", **env_args).build(make_flow())
    image_id = client.images.get(built.image).id
    client.images.remove(built.image)

    built.pull_image()

    assert client.images.get(built.image).id == image_id
    with pytest.raises(ValueError, match="needs a built image in a registry"):
        DockerEnvironment(**env_args).pull_image()


def test_push_image_pushes_a_local_image(env_args: dict[str, Any], docker_registry: Any) -> None:
    env = DockerEnvironment(registry_url=docker_registry.address, image_name="pushed-later", **env_args)
    repository, tag = env.build_image(make_flow(), push=False)
    assert tag not in docker_registry.tags("pushed-later")

    env.push_image(repository, tag)

    assert tag in docker_registry.tags("pushed-later")


def test_pushing_to_a_registry_nobody_listens_on_names_it(env_args: dict[str, Any]) -> None:
    registry = f"localhost:{free_port()}"
    env = DockerEnvironment(registry_url=registry, **env_args)

    with pytest.raises(ImageError, match=rf"to the registry {registry} failed.*check that a registry listens"):
        env.build(make_flow())


def test_an_executor_whose_module_is_missing_in_the_image_fails_the_build(env_args: dict[str, Any]) -> None:
    env = DockerEnvironment(executor=DaskExecutor(), **env_args)

    with pytest.raises(ImageError, match=r"healthcheck failed: flow 'env-etl' uses DaskExecutor, .*'distributed'"):
        env.build(make_flow(), push=False)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match=r"files key 'data\.txt' is not an absolute path"):
        DockerEnvironment(files={"data.txt": "/opt/data.txt"})
    with pytest.raises(ValueError, match="image_name 'Bad Name'"):
        DockerEnvironment(image_name="Bad Name")
    with pytest.raises(TypeError, match="executor must be a headwater Executor"):
        DockerEnvironment(executor="headwater.executors.LocalExecutor")  # type: ignore[arg-type]


def test_the_spec_rebuilds_the_environment_executor_included() -> None:
    env = DockerEnvironment(
        "python:3.11-slim",
        registry_url="localhost:5000",
        python_dependencies=["pandas"],
        image_name="etl",
        image_tag="v1",
        env_vars={"A": "1"},
        files={"/tmp/a.txt": "/opt/a.txt"},
        executor=LocalDaskExecutor(scheduler="threads", num_workers=2),
        labels=["docker"],
        metadata={"team": "data"},
    )

    spec = json.loads(json.dumps(env.serialize()))
    rebuilt = environment_from_spec(spec)

    assert spec["kind"] == "docker" and spec["image_tag"] == "v1"
    assert isinstance(rebuilt, DockerEnvironment)
    assert rebuilt.serialize() == spec
    assert isinstance(rebuilt.executor, LocalDaskExecutor) and rebuilt.executor.num_workers == 2
    assert rebuilt.image == "localhost:5000/etl:v1"


def test_execute_runs_the_flow_in_place() -> None:
    events: list[str] = []
    env = DockerEnvironment(on_start=lambda: events.append("start"), on_exit=lambda: events.append("exit"))

    state = env.execute(make_flow())

    assert state is not None and state.is_successful()
    assert events == ["start", "exit"]


# -- registration: the environment's Docker storage is the flow's default ---------------------------------


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from client.live import LiveServer

    server = LiveServer(tmp_path_factory.mktemp("docker-env-api")).start()
    yield server
    server.stop()


def test_a_flow_with_a_docker_environment_and_no_storage_is_kept_in_its_image(
    env_args: dict[str, Any], api_server: Any, settings_env: Any, client: Any
) -> None:
    from headwater.client import Client

    settings_env(API__URL=api_server.url)
    project = f"docker-env-{uuid.uuid4().hex[:8]}"
    with Client(api_server.url) as api:
        api.create_project(project)
        flow = make_flow()
        flow.environment = DockerEnvironment(**env_args)

        flow_id = flow.register(project)

        metadata = api.get_flow(flow_id).metadata
    storage, environment = metadata.storage, metadata.environment
    assert storage is not None and environment is not None
    assert storage["kind"] == "docker" and storage["image_tag"]
    assert (environment["image_name"], environment["image_tag"]) == (storage["image_name"], storage["image_tag"])
    assert flow.environment.image == flow.storage.name
    assert client.images.get(flow.storage.name)
    assert storage_from_spec(storage).get_flow("env-etl").run().is_successful()


def test_a_docker_environment_without_an_image_and_another_storage_is_refused_before_anything_is_stored(
    env_args: dict[str, Any], api_server: Any, settings_env: Any, tmp_path: Path
) -> None:
    from headwater.client import Client
    from headwater.registration import RegistrationError
    from headwater.storage import Local

    settings_env(API__URL=api_server.url)
    project = f"docker-env-{uuid.uuid4().hex[:8]}"
    with Client(api_server.url) as api:
        api.create_project(project)
        flow = make_flow()
        flow.environment = DockerEnvironment(**env_args)
        flow.storage = Local(directory=str(tmp_path / "flows"))

        with pytest.raises(RegistrationError, match=r"names no built image.*flow.environment.build\(flow\)"):
            flow.register(project)

        assert not (tmp_path / "flows").exists()
        assert api.list_flows(project_name=project) == []
