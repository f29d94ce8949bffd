"""The image the DockerAgent tests run: the base image, headwater from this source tree, the stand-in.

Built with the Docker SDK directly (not ``headwater.containers.build``: the agent's
tests must not depend on the image builder), from ``docker_base_image`` with a small
Dockerfile: the host CA bundle first (this machine intercepts TLS, and pip must reach
the index), then headwater's core dependencies (a layer of their own), then the
source tree (``pyproject.toml``, ``README.md``, ``src/``) installed with ``--no-deps``,
then ``standin.py`` at :data:`STANDIN_PATH`. The fixture using it is in ``test_docker.py``.
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import re
import tarfile
from pathlib import Path
from typing import Any

from dockerd import HOST_CA_BUNDLE, REPO
from headwater.containers.dockerfile import BUILD_REQUIREMENTS

#: the stand-in's path inside the image.
STANDIN_PATH = "/opt/headwater-test/standin.py"
#: the stand-in as a container command.
STANDIN_COMMAND = ["python", STANDIN_PATH]


def core_requirements() -> list[str]:
    """headwater's own dependencies without extras, as the running installation declares them."""
    return [r for r in importlib.metadata.requires("headwater") or [] if "extra ==" not in r]


def dockerfile(base_image: str, extra_requirements: list[str] | None = None) -> str:
    pip = ["python", "-m", "pip", "install", "--quiet", "--no-cache-dir", "--disable-pip-version-check"]
    extras = [f"RUN {json.dumps([*pip, *extra_requirements])}"] if extra_requirements else []
    return "\n".join(
        [
            f"FROM {base_image}",
            "COPY ca.crt /usr/local/share/ca-certificates/host-ca.crt",
            "ENV SSL_CERT_FILE=/usr/local/share/ca-certificates/host-ca.crt "
            "PIP_CERT=/usr/local/share/ca-certificates/host-ca.crt PIP_ROOT_USER_ACTION=ignore",
            f"RUN {json.dumps([*pip, *core_requirements()])}",
            *extras,
            "COPY source /opt/headwater-src",
            f"RUN {json.dumps([*pip, *BUILD_REQUIREMENTS])}",
            f"RUN {json.dumps([*pip, '--no-deps', '--no-build-isolation', '/opt/headwater-src'])}",
            f"COPY standin.py {STANDIN_PATH}",
            "",
        ]
    )


def _context(base_image: str, extra_requirements: list[str] | None = None) -> io.BytesIO:
    """The build context as a tar: Dockerfile, CA bundle, the filtered source tree, the stand-in."""
    data = io.BytesIO()
    skip = re.compile(r"(__pycache__|\.egg-info|\.pyc)$")
    with tarfile.open(fileobj=data, mode="w") as tar:

        def add_bytes(name: str, content: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))

        add_bytes("Dockerfile", dockerfile(base_image, extra_requirements).encode())
        tar.add(HOST_CA_BUNDLE, "ca.crt")
        tar.add(Path(__file__).with_name("standin.py"), "standin.py")
        for name in ("pyproject.toml", "README.md"):
            tar.add(REPO / name, f"source/{name}")
        tar.add(REPO / "src", "source/src", filter=lambda info: None if skip.search(info.name) else info)
    data.seek(0)
    return data


def build_test_image(client: Any, base_image: str, tag: str, extra_requirements: list[str] | None = None) -> str:
    """Build the agent tests' image as ``tag`` on the daemon of ``client``; returns ``tag``.

    ``extra_requirements`` are pip-installed in a layer of their own after headwater's core
    dependencies (``dask``/``distributed`` for the Dask worker pods' image).

    Raises:
        RuntimeError: the build failed, with its output.
    """
    output: list[str] = []
    stream = client.api.build(
        fileobj=_context(base_image, extra_requirements), custom_context=True, tag=tag, rm=True, forcerm=True,
        network_mode="host", decode=True,
    )  # fmt: skip
    for chunk in stream:
        if "stream" in chunk:
            output.append(chunk["stream"])
        if "error" in chunk:
            raise RuntimeError(f"building {tag} failed: {chunk['error']}\n{''.join(output)[-3000:]}")
    client.images.get(tag)
    return tag
