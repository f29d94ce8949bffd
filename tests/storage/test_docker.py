"""Docker storage against a real dockerd and registry (``tests/dockerd.py``): the contract, then Docker's own.

Every image builds from the ``docker_base_image`` fixture (``local_image=True``: nothing
is pulled from the internet) with the host network and CA bundle, so pip in the build
reaches the index through this machine's TLS interception. The session's one daemon
keeps its layer cache: the first build pip-installs headwater's dependencies, the
builds after it reuse that layer and rebuild only from the flow payloads on.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockerd import HOST_CA_BUNDLE, free_port, run_container
from headwater import Flow, task
from headwater.environments import LocalEnvironment
from headwater.executors import DaskExecutor
from headwater.storage import Storage, StorageError, storage_from_spec
from headwater.storage.docker import Docker
from headwater.storage.script import extract_flow_from_file

from .contract import StorageContract, check_runs, flow_script

IN_IMAGE_SCRIPT = "/opt/flows/flows.py"


@pytest.fixture
def docker_args(docker_daemon: Any, docker_base_image: str) -> dict[str, Any]:
    """What every Docker storage here is made with: the test daemon, its base image, host network and CAs."""
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


def script_flow(name: str = "etl", source: str | None = None) -> Flow:
    """A flow built from source, so its tasks are pickled by value (a test module isn't in the image)."""
    return extract_flow_from_file(contents=source or flow_script((name,)), flow_name=name)


def run_in_image(client: Any, image: str, *command: str) -> str:
    return run_container(client, image, list(command))


class TestDockerPickle(StorageContract):
    @pytest.fixture(autouse=True)
    def _args(self, docker_args: dict[str, Any]) -> None:
        self.args = docker_args

    def make_storage(self, tmp_path: Path, **kwargs: Any) -> Storage:
        return Docker(**self.args, **kwargs)

    def make_flow(self, tmp_path: Path, name: str) -> Flow:
        return script_flow(name)

    def gettable(self, storage: Storage) -> Storage:
        # The flow is only in the image (get_flow before build() is its own test below).
        return storage.build()


class TestDockerScript(TestDockerPickle):
    stored_as_script = True

    def make_storage(self, tmp_path: Path, **kwargs: Any) -> Storage:
        path = tmp_path / "flows.py"
        path.write_text(flow_script())
        return Docker(
            **self.args, stored_as_script=True, path=IN_IMAGE_SCRIPT, files={str(path): IN_IMAGE_SCRIPT}, **kwargs
        )

    def make_flow(self, tmp_path: Path, name: str) -> Flow:
        return extract_flow_from_file(path=tmp_path / "flows.py", flow_name=name)


# -- where flows go, and what the image holds -------------------------------------------------------


def test_add_flow_records_the_in_image_path_and_builds_nothing(docker_args: dict[str, Any]) -> None:
    storage = Docker(**docker_args)

    assert storage.add_flow(script_flow("My ETL/v2")) == "/opt/headwater/flows/my-etl-v2.headwater"
    assert storage.name is None and storage.image_tag is None
    assert storage.serialize()["flows"] == {"My ETL/v2": "/opt/headwater/flows/my-etl-v2.headwater"}
    with pytest.raises(StorageError, match=r"'My ETL/v2' and 'my etl v2' would both be kept at"):
        storage.add_flow(script_flow("my etl v2"))


def test_build_records_the_image_and_the_spec_names_it(docker_args: dict[str, Any], client: Any) -> None:
    storage = Docker(**docker_args)
    storage.add_flow(script_flow())

    assert storage.build() is storage

    assert storage.image_name == "etl" and storage.image_tag
    assert storage.name == f"etl:{storage.image_tag}"
    assert client.images.get(storage.name).id == storage.image_id
    spec = storage.serialize()
    assert (spec["image_name"], spec["image_tag"]) == ("etl", storage.image_tag)
    assert storage_from_spec(json.loads(json.dumps(spec))).name == storage.name


def test_a_rebuild_after_changing_only_the_flow_reuses_every_dependency_layer(
    docker_args: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    first = Docker(**docker_args)
    first.add_flow(script_flow())
    first.build()
    changed = Docker(**docker_args)
    changed_code = f"return sum(values) + offset + 0 * len({uuid.uuid4().hex!r})"
    changed.add_flow(script_flow(source=flow_script().replace("return sum(values) + offset", changed_code)))
    caplog.set_level(logging.DEBUG, logger="headwater.containers.build")
    caplog.clear()

    changed.build()

    prefix = f"building {changed.name}: "
    lines = [r.getMessage()[len(prefix) :] for r in caplog.records if r.getMessage().startswith(prefix)]
    steps = [i for i, line in enumerate(lines) if line.startswith("Step ")]
    outputs = {lines[i]: lines[i + 1 : j] for i, j in zip(steps, [*steps[1:], len(lines)], strict=True)}
    order = list(outputs)
    flows_step = next(step for step in order if "/opt/headwater/flows/" in step)
    before_flows = [step for step in order[: order.index(flows_step)] if " : FROM " not in step]
    assert len(before_flows) >= 5  # CA bundle, pip settings, dependencies, headwater's source, its install
    assert [step for step in before_flows if not any("Using cache" in line for line in outputs[step])] == []
    assert not any("Using cache" in line for line in outputs[flows_step])
    assert changed.image_id != first.image_id


def test_in_a_container_of_the_image_get_flow_reads_the_baked_file(
    docker_args: dict[str, Any], client: Any, tmp_path: Path
) -> None:
    (tmp_path / "data.txt").write_text("hello")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("VALUE = 42\n")
    odd = 'say "hi" $HOME \\ ok'
    storage = Docker(
        **docker_args,
        files={str(tmp_path / "data.txt"): "/opt/data/data.txt", str(tmp_path / "pkg"): "/opt/pkg"},
        env_vars={"GREETING": odd, "PYTHONPATH": "/opt"},
        extra_dockerfile_commands=["RUN echo extra > /opt/extra.txt"],
    )
    storage.add_flow(script_flow())
    storage.build()
    inside = (
        "import json, os, sys\n"
        "from headwater.storage import storage_from_spec\n"
        "storage = storage_from_spec(json.loads(sys.argv[1]))\n"
        "path = storage.flows['etl']\n"
        "state = storage.get_flow('etl').run()\n"
        "print(json.dumps({'baked': os.path.isfile(path), 'ok': state.is_successful(),\n"
        "    'greeting': os.environ['GREETING'], 'data': open('/opt/data/data.txt').read(),\n"
        "    'mod': __import__('pkg.mod').mod.VALUE, 'extra': open('/opt/extra.txt').read().strip()}))\n"
    )

    out = run_in_image(client, storage.name or "", "python", "-c", inside, json.dumps(storage.serialize()))

    assert json.loads(out.strip().splitlines()[-1]) == {
        "baked": True, "ok": True, "greeting": odd, "data": "hello", "mod": 42, "extra": "extra"
    }  # fmt: skip


def test_headwater_is_installed_in_the_image_from_the_local_source_tree(
    docker_args: dict[str, Any], client: Any
) -> None:
    import headwater

    storage = Docker(**docker_args)
    storage.add_flow(script_flow())
    storage.build()
    probe = (
        "import headwater, importlib.metadata as m, os\n"
        "print(headwater.__version__, m.version('headwater'), os.path.isfile('/opt/headwater/source/pyproject.toml'),"
        " headwater.__file__.startswith('/usr/'))\n"
    )

    out = run_in_image(client, storage.name or "", "python", "-c", probe)

    assert out.split() == [headwater.__version__, headwater.__version__, "True", "True"]


def test_a_user_dockerfile_is_the_start_and_its_folder_the_context(
    docker_args: dict[str, Any], client: Any, tmp_path: Path
) -> None:
    base = docker_args.pop("base_image")
    (tmp_path / "Dockerfile").write_text(f"FROM {base}\nCOPY data.txt /data.txt\n")
    (tmp_path / "data.txt").write_text("from the user's context")
    with pytest.raises(StorageError, match="give base_image or dockerfile, not both"):
        Docker(**docker_args, base_image=base, dockerfile=str(tmp_path / "Dockerfile"))
    storage = Docker(**docker_args, dockerfile=str(tmp_path / "Dockerfile"))
    storage.add_flow(script_flow())

    storage.build()

    assert run_in_image(client, storage.name or "", "cat", "/data.txt") == "from the user's context"
    check_runs(storage.get_flow("etl"))


def test_the_build_network_and_ca_bundle_settings_are_used(
    docker_args: dict[str, Any], settings_env: Any
) -> None:
    """A RUN step reaches a port on the host's loopback only with the host network (the setting).

    Each RUN names its own port: the layer cache ignores the network, so a step run once is not run again.
    """
    args = {k: v for k, v in docker_args.items() if k not in ("build_kwargs", "ca_certificates")}
    settings_env(DOCKER__BUILD_NETWORK="host", DOCKER__CA_CERTIFICATES=HOST_CA_BUNDLE)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(5)
        reach = "RUN python -c \"import socket; socket.create_connection(('127.0.0.1', {}), 5)\"".format
        storage = Docker(**args, extra_dockerfile_commands=[reach(listener.getsockname()[1])])
        storage.add_flow(script_flow())
        assert "/usr/local/share/headwater/ca-bundle.pem" in storage.build_context().dockerfile

        storage.build()

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(5)
        offline = Docker(
            **args, extra_dockerfile_commands=[reach(listener.getsockname()[1])], build_kwargs={"network_mode": "none"}
        )
        offline.add_flow(script_flow())
        with pytest.raises(StorageError, match=r"failed at Step \d+/\d+ : RUN python -c .*returned a non-zero code"):
            offline.build()


# -- bad input ---------------------------------------------------------------------------------------


def test_a_files_key_that_is_not_absolute_is_refused(docker_args: dict[str, Any]) -> None:
    with pytest.raises(StorageError, match=r"files key 'flows.py' is not an absolute path"):
        Docker(**docker_args, files={"flows.py": "/opt/flows.py"})


def test_a_missing_local_file_fails_the_build_before_the_daemon_is_asked(
    docker_args: dict[str, Any], tmp_path: Path
) -> None:
    storage = Docker(**{**docker_args, "base_url": "unix:///nonexistent.sock"}, files={str(tmp_path / "no.txt"): "/x"})
    storage.add_flow(script_flow())

    with pytest.raises(StorageError, match=r"files key '.*no.txt' does not exist here; copy it there or fix the path"):
        storage.build()
    assert storage.name is None


def test_script_mode_needs_the_in_image_path(docker_args: dict[str, Any]) -> None:
    with pytest.raises(StorageError, match="stored_as_script=True needs path="):
        Docker(**docker_args, stored_as_script=True)
    with pytest.raises(StorageError, match="path= is the flow script's path in the image"):
        Docker(**docker_args, path="/opt/flows.py")


def test_a_flow_that_does_not_load_in_the_image_fails_the_build_with_the_healthcheck_s_message(
    docker_args: dict[str, Any], tmp_path: Path
) -> None:
    module = f"hw_only_here_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text("def fetch():\n    return 1\n")
    sys.path.insert(0, str(tmp_path))
    try:
        fetch = __import__(module).fetch  # pickled by reference: the image has no such module
        with Flow("etl-v2") as flow:
            task(fetch)()
        storage = Docker(**docker_args)
        storage.add_flow(script_flow())
        storage.build()
        built = storage.name
        storage.add_flow(flow)

        with pytest.raises(StorageError) as info:
            storage.build()
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(module, None)

    message = str(info.value)
    assert "the image's healthcheck failed: flow 'etl-v2' can't be loaded in the image" in message
    assert f"No module named '{module}'" in message
    assert "ignore_healthchecks=True" in message
    assert storage.name == built  # the failed build changed nothing recorded
    check_runs(storage.get_flow("etl"))


def test_an_executor_dependency_missing_in_the_image_fails_the_healthcheck(docker_args: dict[str, Any]) -> None:
    flow = script_flow()
    flow.environment = LocalEnvironment(executor=DaskExecutor())
    storage = Docker(**docker_args)
    storage.add_flow(flow)

    with pytest.raises(StorageError, match=r"flow 'etl' uses DaskExecutor, which needs the module 'distributed'"):
        storage.build()
    assert storage.name is None


def test_a_python_dependency_missing_on_the_index_names_pip_s_error(docker_args: dict[str, Any]) -> None:
    missing = f"headwater-no-such-package-{uuid.uuid4().hex[:8]}"
    storage = Docker(**docker_args, python_dependencies=[missing])
    storage.add_flow(script_flow())

    with pytest.raises(StorageError) as info:
        storage.build()

    message = str(info.value)
    assert f'RUN ["python", "-m", "pip", "install", "{missing}"]' in message
    assert "returned a non-zero code" in message and "No matching distribution found" in message
    assert storage.name is None


def test_an_unreachable_daemon_is_named(docker_args: dict[str, Any], tmp_path: Path) -> None:
    url = f"unix://{tmp_path}/no-daemon.sock"
    storage = Docker(**{**docker_args, "base_url": url})
    storage.add_flow(script_flow())

    with pytest.raises(StorageError, match=rf"can't reach the Docker daemon at {url}.*is dockerd running"):
        storage.build()


def test_a_registry_nobody_listens_on_fails_the_push_and_records_nothing(docker_args: dict[str, Any]) -> None:
    registry = f"localhost:{free_port()}"
    storage = Docker(**docker_args, registry_url=registry)
    storage.add_flow(script_flow())

    with pytest.raises(StorageError) as info:
        storage.build()

    assert f"to the registry {registry} failed" in str(info.value)
    assert f"check that a registry listens at {registry}" in str(info.value)
    assert storage.name is None and storage.image_tag is None


def test_get_flow_before_build_says_to_build(docker_args: dict[str, Any]) -> None:
    storage = Docker(**docker_args)
    storage.add_flow(script_flow())

    with pytest.raises(StorageError, match=r"has not been built yet.*call storage.build\(\)"):
        storage.get_flow("etl")


def test_build_with_no_flows_or_with_flows_from_another_process_is_refused(docker_args: dict[str, Any]) -> None:
    with pytest.raises(StorageError, match="holds no flows to build"):
        Docker(**docker_args).build()
    storage = Docker(**docker_args)
    storage.add_flow(script_flow())
    rebuilt = storage_from_spec(storage.serialize())
    with pytest.raises(StorageError, match="was added in another process"):
        rebuilt.build()


# -- registries and images that are gone ---------------------------------------------------------------


def test_pushed_to_the_registry_and_pulled_back_when_the_local_image_is_gone(
    docker_args: dict[str, Any], docker_registry: Any, client: Any
) -> None:
    storage = Docker(**docker_args, registry_url=f"{docker_registry.address}/flows", image_name="pushed")
    storage.add_flow(script_flow())
    storage.build()
    assert storage.name == f"{docker_registry.address}/flows/pushed:{storage.image_tag}"
    assert storage.image_tag in docker_registry.tags("flows/pushed")

    client.images.remove(storage.name)
    rebuilt = storage_from_spec(json.loads(json.dumps(storage.serialize())))

    check_runs(rebuilt.get_flow("etl"))
    assert client.images.get(storage.name).id == storage.image_id


def test_an_image_that_is_gone_is_named(docker_args: dict[str, Any], client: Any) -> None:
    storage = Docker(**docker_args, image_name=f"gone-{uuid.uuid4().hex[:6]}")
    storage.add_flow(script_flow())
    storage.build()
    client.images.remove(storage.name)

    with pytest.raises(StorageError, match=rf"the image {storage.name} is not on the Docker daemon .*was it removed"):
        storage.get_flow("etl")


# -- registration ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from client.live import LiveServer

    server = LiveServer(tmp_path_factory.mktemp("docker-api")).start()
    yield server
    server.stop()


@pytest.fixture
def api(api_server: Any, settings_env: Any) -> Iterator[Any]:
    """A client of the live server, which ``flow.register()`` also finds through the settings."""
    from headwater.client import Client

    settings_env(API__URL=api_server.url)
    with Client(api_server.url) as c:
        yield c


def test_register_with_build_false_after_build_registers_the_image_already_built(
    docker_args: dict[str, Any], api: Any, client: Any
) -> None:
    project = f"docker-{uuid.uuid4().hex[:8]}"
    api.create_project(project)
    flow = script_flow()
    flow.storage = Docker(**docker_args)
    flow.storage.add_flow(flow)
    flow.storage.build()
    image = flow.storage.name
    image_id = client.images.get(image).id
    images_before = {i.id for i in client.images.list(all=True)}

    flow_id = flow.register(project, build=False)

    assert client.images.get(image).id == image_id
    assert {i.id for i in client.images.list(all=True)} == images_before  # nothing was built
    registered = api.get_flow(flow_id).metadata.storage
    assert registered["kind"] == "docker"
    assert (registered["image_name"], registered["image_tag"]) == (flow.storage.image_name, flow.storage.image_tag)
    check_runs(storage_from_spec(registered).get_flow("etl"))


def test_registering_a_changed_flow_again_builds_an_image_of_its_own(
    docker_args: dict[str, Any], api: Any, client: Any
) -> None:
    project = f"docker-{uuid.uuid4().hex[:8]}"
    api.create_project(project)
    flow = script_flow()
    flow.storage = Docker(**docker_args)
    first_id = flow.register(project)
    first = api.get_flow(first_id).metadata.storage
    changed = script_flow(source=flow_script(("etl",)).replace("sum(values) + offset", "sum(values) + offset + 0"))
    changed.storage = flow.storage  # the same storage object, which holds 'etl' already

    second_id = changed.register(project)

    second = api.get_flow(second_id).metadata.storage
    assert second_id != first_id
    assert second["image_tag"] != first["image_tag"]  # the first version's image is left as it was
    for spec in (first, second):
        check_runs(storage_from_spec(spec).get_flow("etl"))
    assert client.images.get(f"etl:{first['image_tag']}").id != client.images.get(f"etl:{second['image_tag']}").id


def test_a_given_image_tag_is_kept_when_registering_again(docker_args: dict[str, Any]) -> None:
    storage = Docker(**docker_args, image_tag="stable")
    storage.add_flow(script_flow())
    storage.build()

    assert storage.for_new_version(rebuild=True).image_tag == "stable"
    assert storage.for_new_version(rebuild=False).image_tag == "stable"
