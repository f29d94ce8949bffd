"""The pure parts of the image builder: the Dockerfile's text and order, the build context, the healthcheck.

No daemon here; ``tests/storage/test_docker.py`` and ``tests/environments/test_docker.py``
build real images.
"""

from __future__ import annotations

import io
import json
import sys
import tarfile
from pathlib import Path

import cloudpickle
import pytest

import headwater
from headwater.containers import build, context, dockerfile
from headwater.storage import healthcheck
from headwater.storage.payload import flow_to_bytes
from headwater.storage.script import extract_flow_from_file

HERE = {"python": "3.11.2", "cloudpickle": cloudpickle.__version__}


def flow_source(name: str = "etl") -> str:
    return (
        f"from headwater import Flow, task\n@task\ndef one():\n    return 1\nwith Flow({name!r}) as flow:\n    one()\n"
    )


def test_render_orders_the_steps_from_least_to_most_often_changed() -> None:
    plan = dockerfile.DockerfilePlan(
        start="FROM python:3.11-slim",
        ca_bundle="ctx/ca.pem",
        core_requirements=["cloudpickle==3.1.3", "httpx>=0.27"],
        python_dependencies=["pandas"],
        headwater_source="ctx/src",
        files=[("ctx/files/0/a.txt", "/opt/a.txt")],
        env_vars={"MODE": "prod"},
        extra_commands=["RUN echo extra"],
        healthcheck_script="ctx/healthcheck.py",
        flows_dir="ctx/flows",
        healthcheck_args='{"flows": []}',
    )
    text = dockerfile.render(plan)
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]

    order = [
        "FROM python:3.11-slim",
        'COPY ["ctx/ca.pem", "/usr/local/share/headwater/ca-bundle.pem"]',
        'RUN ["python", "-m", "pip", "install", "cloudpickle==3.1.3", "httpx>=0.27"]',
        'RUN ["python", "-m", "pip", "install", "pandas"]',
        'COPY ["ctx/src", "/opt/headwater/source"]',
        'RUN ["python", "-m", "pip", "install", "setuptools>=77"]',
        'RUN ["python", "-m", "pip", "install", "--no-deps", "--no-build-isolation", "/opt/headwater/source"]',
        'COPY ["ctx/files/0/a.txt", "/opt/a.txt"]',
        'ENV MODE="prod"',
        "RUN echo extra",
        'COPY ["ctx/healthcheck.py", "/opt/headwater/healthcheck.py"]',
        'COPY ["ctx/flows", "/opt/headwater/flows/"]',
        'RUN ["python", "/opt/headwater/healthcheck.py", "{\\"flows\\": []}"]',
    ]
    assert [line for line in lines if line in order] == order
    assert lines[-1] == order[-1]
    ca_env = next(line for line in lines if line.startswith("ENV SSL_CERT_FILE"))
    assert lines.index(ca_env) < lines.index(order[2])
    for name in ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE"):
        assert f'{name}="/usr/local/share/headwater/ca-bundle.pem"' in ca_env


def test_render_without_optional_parts_has_no_empty_steps() -> None:
    text = dockerfile.render(dockerfile.DockerfilePlan(start="FROM x", headwater_requirement="headwater==0.1.0"))
    steps = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert steps[0] == "FROM x"
    assert steps[-1] == 'RUN ["python", "-m", "pip", "install", "headwater==0.1.0"]'
    assert not any("healthcheck" in line or "ca-bundle" in line for line in steps)


def test_env_values_are_quoted_so_nothing_expands_or_breaks() -> None:
    text = dockerfile.render(dockerfile.DockerfilePlan(start="FROM x", env_vars={"A": 'say "hi" $HOME \\ ok'}))
    assert 'ENV A="say \\"hi\\" \\$HOME \\\\ ok"' in text


def test_copy_paths_with_spaces_and_dollars_stay_whole() -> None:
    text = dockerfile.render(dockerfile.DockerfilePlan(start="FROM x", files=[("ctx/a b", "/opt/$x y")]))
    assert 'COPY ["ctx/a b", "/opt/\\\\$x y"]' in text


@pytest.mark.parametrize(
    ("env", "message"),
    [({"1BAD": "x"}, "not a valid variable name"), ({"OK": "two\nlines"}, "has a line break")],
)
def test_bad_env_vars_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dockerfile.check_env_vars(env, "Docker storage")


def test_files_keys_must_be_absolute_and_values_too() -> None:
    with pytest.raises(ValueError, match=r"files key 'flow.py' is not an absolute path.*os.path.abspath"):
        context.check_files({"flow.py": "/opt/flow.py"}, "Docker storage")
    with pytest.raises(ValueError, match=r"must be an absolute path in the image"):
        context.check_files({"/tmp/flow.py": "opt/flow.py"}, "Docker storage")
    assert context.check_files({"/tmp/flow.py": "/opt/flow.py"}, "x") == {"/tmp/flow.py": "/opt/flow.py"}


@pytest.mark.parametrize(
    ("check", "value"),
    [
        (context.check_image_name, "Has Capitals"),
        (context.check_image_tag, "bad:tag"),
        (context.check_registry, "http://localhost:5000"),
    ],
)
def test_bad_image_names_tags_and_registries_are_refused(check: object, value: str) -> None:
    with pytest.raises(ValueError, match=r"image_name|image_tag|registry_url"):
        check(value, "Docker storage")  # type: ignore[operator]


def test_build_kwargs_headwater_sets_itself_are_refused() -> None:
    with pytest.raises(ValueError, match="build_kwargs can't set tag"):
        context.check_build_kwargs({"tag": "x", "network_mode": "host"}, "Docker storage")


def test_default_base_image_is_the_running_python() -> None:
    assert context.default_base_image() == f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"


def test_core_requirements_pin_cloudpickle_and_leave_out_extras() -> None:
    requirements = context.core_requirements(None)
    assert requirements[0] == f"cloudpickle=={cloudpickle.__version__}"
    assert not any("extra" in r or r.startswith(("dask", "docker", "boto3")) for r in requirements)
    assert any(r.startswith("pydantic") for r in requirements)


def test_the_context_holds_headwater_s_source_without_caches(tmp_path: Path) -> None:
    source = context.headwater_source_tree()
    assert source is not None and (source / "pyproject.toml").is_file()  # this checkout
    flow = extract_flow_from_file(contents=flow_source(), flow_name="etl")
    entry = context.FlowEntry("etl", f"{dockerfile.FLOWS_DIR}/etl.headwater", flow_to_bytes(flow))

    made = context.prepare_context(
        context.ImageSpec(base_image="base:1"), [entry], "Docker storage", healthcheck=Path(healthcheck.__file__)
    )

    names = set(made.entries)
    assert made.entries[".headwater-build/healthcheck.py"] == Path(healthcheck.__file__).read_bytes()
    assert ".headwater-build/headwater-source/pyproject.toml" in names
    assert ".headwater-build/headwater-source/src/headwater/__init__.py" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert made.entries[".headwater-build/flows/etl.headwater"] == entry.payload
    assert made.dockerfile.startswith("# The image of a headwater flow")
    with tarfile.open(fileobj=io.BytesIO(made.tar())) as archive:
        assert set(archive.getnames()) == names


def test_a_missing_local_file_is_named_before_any_build(tmp_path: Path) -> None:
    spec = context.ImageSpec(base_image="base:1", files={str(tmp_path / "gone.txt"): "/opt/gone.txt"})
    with pytest.raises(build.ImageError, match=r"files key '.*gone.txt' does not exist here.*/opt/gone.txt"):
        context.prepare_context(spec, [], "Docker storage")
    spec = context.ImageSpec(ca_certificates=str(tmp_path / "ca.pem"))
    with pytest.raises(build.ImageError, match=r"CA bundle .*ca.pem .* does not exist"):
        context.prepare_context(spec, [], "Docker storage")


def test_a_user_dockerfile_starts_the_file_and_its_folder_is_the_context(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM base:1\nCOPY data.txt /data.txt\n")
    (tmp_path / "data.txt").write_text("data")
    (tmp_path / "secret.txt").write_text("no")
    (tmp_path / ".dockerignore").write_text("secret.txt\n")

    made = context.prepare_context(context.ImageSpec(dockerfile=str(tmp_path / "Dockerfile")), [], "x")

    assert "data.txt" in made.entries and "secret.txt" not in made.entries
    assert "FROM base:1\nCOPY data.txt /data.txt" in made.dockerfile
    assert "FROM python" not in made.dockerfile


# -- the healthcheck, run here ------------------------------------------------------------------


def test_versions_differing_in_python_major_minor_or_cloudpickle_are_named() -> None:
    assert healthcheck.version_problems("etl", {"python": "3.11.7", "cloudpickle": HERE["cloudpickle"]}, HERE) == []
    (python,) = healthcheck.version_problems("etl", {"python": "3.12.1", "cloudpickle": HERE["cloudpickle"]}, HERE)
    assert "pickled with Python 3.12.1, but the image has Python 3.11.2" in python
    assert "python:3.12-slim" in python
    (pickle,) = healthcheck.version_problems("etl", {"python": "3.11.2", "cloudpickle": "2.0.0"}, HERE)
    assert f"cloudpickle 2.0.0, but the image has cloudpickle {HERE['cloudpickle']}" in pickle


def test_the_healthcheck_loads_a_payload_and_a_script(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "flows.py"
    script.write_text(flow_source("etl"))
    payload = tmp_path / "etl.headwater"
    payload.write_bytes(flow_to_bytes(extract_flow_from_file(path=script, flow_name="etl")))
    flows = [
        {"name": "etl", "location": str(payload), "script": False},
        {"name": "etl", "location": str(script), "script": True},
    ]

    assert healthcheck.main([json.dumps({"flows": flows})]) == 0
    assert f"2 flow(s) load with headwater {headwater.__version__}" in capsys.readouterr().out


def test_the_healthcheck_reports_a_flow_that_does_not_load(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "flows.py"
    script.write_text("import no_such_module_here\n")
    flows = [{"name": "etl", "location": str(script), "script": True}]

    assert healthcheck.main([json.dumps({"flows": flows})]) == 1
    out = capsys.readouterr().out
    assert out.startswith(healthcheck.FAILED + "flow 'etl' can't be loaded in the image")
    assert "No module named 'no_such_module_here'" in out


def test_the_healthcheck_imports_the_executor_s_dependencies() -> None:
    from headwater import Flow
    from headwater.environments import LocalEnvironment
    from headwater.executors import LocalExecutor

    class NeedsMissing(LocalExecutor):
        dependencies = ("no_such_module_here",)

    flow = Flow("etl", environment=LocalEnvironment(executor=NeedsMissing()))
    (problem,) = healthcheck.dependency_problems("etl", flow)
    assert "uses NeedsMissing, which needs the module 'no_such_module_here'" in problem
    assert healthcheck.dependency_problems("etl", Flow("etl", environment=LocalEnvironment())) == []


def test_the_healthcheck_imports_what_requires_names_too() -> None:
    from headwater import Flow

    (problem,) = healthcheck.dependency_problems("etl", Flow("etl"), {"DaskExecutor": ["no_such_module_here", "json"]})
    assert "uses DaskExecutor, which needs the module 'no_such_module_here'" in problem


def test_the_build_requirements_are_the_source_trees() -> None:
    # the source is built without isolation in images: what it needs to build is installed first
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert list(dockerfile.BUILD_REQUIREMENTS) == pyproject["build-system"]["requires"]
