"""The Dockerfile of a flow's image, written from a plan: pure text, no Docker, no files.

``context.py`` makes the :class:`DockerfilePlan` (it knows the build context's
paths) and ``build.py`` builds the image; this module only decides the text and its order.
The order is the point: everything that changes rarely comes first, so that a
rebuild after changing only the flow reuses every layer up to the flow payloads
(the layer cache matches instructions, and a ``COPY``'s files by content):

1. ``FROM base_image``, or the user's own Dockerfile;
2. the CA bundle, trusted by Python and pip from here on;
3. headwater's own dependencies (and its build backend), then the user's
   ``python_dependencies``, each one ``pip install``;
4. headwater itself: from a copy of the local source tree, or from the index;
5. ``files``, ``env_vars``, then ``extra_dockerfile_commands``;
6. the healthcheck script, then the flow payloads;
7. the healthcheck run (unless it is turned off).

``docs/docker.md`` explains the same to users.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

#: What building headwater from its source needs: ``pyproject.toml``'s ``[build-system] requires``
#: (a test keeps them equal). Installed before the source, which is built without isolation:
#: an image's own setuptools may be older (Debian's reads no SPDX ``license`` string).
BUILD_REQUIREMENTS = ("setuptools>=77",)

#: where the flow payloads go in the image (``/opt/headwater/flows/<flow-slug>.headwater``).
FLOWS_DIR = "/opt/headwater/flows"
#: where the healthcheck script goes in the image.
HEALTHCHECK_PATH = "/opt/headwater/healthcheck.py"
#: where the CA bundle goes in the image; SSL_CERT_FILE, PIP_CERT and REQUESTS_CA_BUNDLE name it.
CA_BUNDLE_PATH = "/usr/local/share/headwater/ca-bundle.pem"
#: where the copy of headwater's source tree goes in the image (installed from there).
SOURCE_DIR = "/opt/headwater/source"

#: pip's settings in the image: quiet about its version, no cache kept in the layers.
_PIP_SETTINGS = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_CACHE_DIR": "1", "PIP_ROOT_USER_ACTION": "ignore"}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class DockerfilePlan:
    """What goes into the image, with paths inside the build context already chosen.

    Attributes:
        start: the first lines: ``FROM <base_image>`` or the user's Dockerfile text.
        ca_bundle: context path of the CA bundle to trust, or None.
        core_requirements: headwater's own requirements (and its build backend's).
        python_dependencies: the user's requirements, installed after headwater's.
        headwater_source: context path of headwater's source tree, installed with
            ``pip install --no-deps``; None means ``headwater_requirement`` from the index.
        headwater_requirement: e.g. ``headwater==0.1.0``, used when there is no source.
        files: ``(context path, path in the image)`` pairs, in order.
        env_vars: environment variables set in the image.
        extra_commands: Dockerfile lines added after the env vars.
        healthcheck_script: context path of the healthcheck script.
        flows_dir: context path of the folder of flow payloads (None: script mode, no payloads).
        healthcheck_args: the healthcheck's JSON argument, or None to skip it.
    """

    start: str
    ca_bundle: str | None = None
    core_requirements: list[str] = field(default_factory=list)
    python_dependencies: list[str] = field(default_factory=list)
    headwater_source: str | None = None
    headwater_requirement: str | None = None
    files: list[tuple[str, str]] = field(default_factory=list)
    env_vars: dict[str, str] = field(default_factory=dict)
    extra_commands: list[str] = field(default_factory=list)
    healthcheck_script: str | None = None
    flows_dir: str | None = None
    healthcheck_args: str | None = None


def check_env_vars(env_vars: dict[str, str], owner: str) -> dict[str, str]:
    """``env_vars`` as str → str, or a ValueError naming the bad name or value."""
    checked: dict[str, str] = {}
    for name, value in env_vars.items():
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise ValueError(
                f"{owner}: env_vars name {name!r} is not a valid variable name (letters, digits and _, "
                "not starting with a digit)"
            )
        text = str(value)
        if "\n" in text or "\r" in text:
            raise ValueError(f"{owner}: env_vars {name!r} has a line break, which an image's ENV can't hold")
        checked[name] = text
    return checked


def render(plan: DockerfilePlan) -> str:
    """The Dockerfile's text for ``plan``, in the order the module docstring gives."""
    lines = ["# The image of a headwater flow, written by headwater.containers.dockerfile.", plan.start.rstrip(), ""]
    if plan.ca_bundle:
        lines += [
            "# The CA bundle Python and pip trust in this image (the `ca_certificates` option).",
            _copy(plan.ca_bundle, CA_BUNDLE_PATH),
            _env({name: CA_BUNDLE_PATH for name in ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE")}),
            "",
        ]
    lines.append(_env(_PIP_SETTINGS))
    if plan.core_requirements:
        lines += ["# headwater's own dependencies: one layer, shared by flow images.", _pip(plan.core_requirements)]
    if plan.python_dependencies:
        lines += ["# The flow's python_dependencies.", _pip(plan.python_dependencies)]
    lines.append("")
    if plan.headwater_source:
        lines += [
            "# headwater itself, from a copy of the source tree it runs from where the image was built.",
            _copy(plan.headwater_source, SOURCE_DIR),
            _pip(list(BUILD_REQUIREMENTS)),
            _pip(["--no-deps", "--no-build-isolation", SOURCE_DIR]),
        ]
    elif plan.headwater_requirement:
        lines += ["# headwater itself, from the package index.", _pip([plan.headwater_requirement])]
    lines.append("")
    if plan.files:
        lines += ["# files", *(_copy(source, target) for source, target in plan.files)]
    if plan.env_vars:
        lines += ["# env_vars", _env(plan.env_vars)]
    if plan.extra_commands:
        lines += ["# extra_dockerfile_commands", *plan.extra_commands]
    lines.append("")
    if plan.healthcheck_script:
        lines.append(_copy(plan.healthcheck_script, HEALTHCHECK_PATH))
    if plan.flows_dir:
        lines += ["# The flows: last, so a new flow rebuilds from here only.", _copy(plan.flows_dir, FLOWS_DIR + "/")]
    if plan.healthcheck_args is not None:
        lines += [
            "# The healthcheck: every flow loads here, with the modules its environment needs.",
            "RUN " + json.dumps(["python", HEALTHCHECK_PATH, plan.healthcheck_args]),
        ]
    return "\n".join(lines).rstrip() + "\n"


def _escape(text: str) -> str:
    """``text`` safe inside a Dockerfile's quoted string: no variable expansion, quotes kept."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")


def _copy(source: str, target: str) -> str:
    # The JSON form keeps paths with spaces whole; Docker still expands `$` in it, so `$` is escaped.
    return "COPY " + json.dumps([path.replace("$", "\\$") for path in (source, target)])


def _env(values: dict[str, str]) -> str:
    return "ENV " + " ".join(f'{name}="{_escape(value)}"' for name, value in values.items())


def _pip(arguments: Sequence[str]) -> str:
    # The exec form: requirement specifiers like `x>=1` reach pip whole, with no shell in between.
    return "RUN " + json.dumps(["python", "-m", "pip", "install", *arguments])
