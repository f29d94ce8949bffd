"""The healthcheck that runs inside a flow's image while it is built, so a broken image never ships.

Docker storage (``docker.py``) hands this file to the image builder, whose ``context.py``
copies it into the image (``/opt/headwater/healthcheck.py``); the Dockerfile's last step
runs it with a JSON argument naming each flow::

    python /opt/headwater/healthcheck.py '{"flows": [{"name": "etl", "location": "/opt/...", "script": false}]}'

For each flow it checks that a pickle was written with this image's Python
major.minor and cloudpickle (a pickle does not load across them), loads the flow
with the installed headwater, and imports the modules its environment and
executors declare in their ``dependencies`` (``DaskExecutor`` → ``distributed``), and
those the JSON names as ``requires``.
Each problem is printed on a line starting with :data:`FAILED` and the script exits
1; ``headwater.containers.build`` puts those lines in the build's error. It uses only the standard
library and headwater, and runs on the host too (the unit tests call :func:`check`).
"""

from __future__ import annotations

import importlib
import json
import sys
from typing import Any

from headwater.containers.build import HEALTHCHECK_FAILED as FAILED

__all__ = ["FAILED", "check", "dependency_problems", "main", "version_problems"]


def version_problems(name: str, stored: dict[str, Any], here: dict[str, str]) -> list[str]:
    """Why a pickle stamped with ``stored`` versions can't load where ``here`` holds, if it can't.

    Python must match in major.minor, cloudpickle exactly (headwater pins it to
    the version the flow was pickled with).
    """
    problems = []
    stored_python = str(stored.get("python", "unknown"))
    wanted = _major_minor(stored_python)
    if wanted != _major_minor(here["python"]):
        problems.append(
            f"flow {name!r} was pickled with Python {stored_python}, but the image has Python {here['python']}: "
            f"use a base image with Python {wanted} (e.g. python:{wanted}-slim), or keep the flow as a script "
            "(stored_as_script=True)"
        )
    stored_cloudpickle = str(stored.get("cloudpickle", "unknown"))
    if stored_cloudpickle != here["cloudpickle"]:
        problems.append(
            f"flow {name!r} was pickled with cloudpickle {stored_cloudpickle}, but the image has cloudpickle "
            f"{here['cloudpickle']}: install cloudpickle=={stored_cloudpickle} in the image, or keep the flow as a "
            "script (stored_as_script=True)"
        )
    return problems


def dependency_problems(name: str, flow: Any, requires: dict[str, list[str]] | None = None) -> list[str]:
    """The declared ``dependencies`` of the flow's environment and executors that don't import here.

    ``requires`` adds more, by owner (what a DockerEnvironment building the image declares).
    """
    wanted = {owner: list(modules) for owner, modules in (requires or {}).items()}
    for owner in (flow.environment, getattr(flow.environment, "executor", None), flow.executor):
        if owner is not None:
            wanted.setdefault(type(owner).__name__, []).extend(getattr(type(owner), "dependencies", ()))
    problems = []
    for owner, modules in wanted.items():
        for module in dict.fromkeys(modules):
            try:
                importlib.import_module(module)
            except Exception as exc:
                problems.append(
                    f"flow {name!r} uses {owner}, which needs the module {module!r}, but it can't be imported in "
                    f"the image ({type(exc).__name__}: {exc}); add the package that provides it to "
                    "python_dependencies"
                )
    return problems


def check(entry: dict[str, Any]) -> list[str]:
    """The problems of one flow in this Python; [] when it is healthy.

    ``entry`` is ``{"name", "location", "script"}`` and optionally ``"requires"``: {owner: [module, ...]}.
    """
    name, location = entry["name"], entry["location"]
    try:
        if entry.get("script"):
            from headwater.storage.script import extract_flow_from_file

            flow = extract_flow_from_file(path=location, flow_name=name)
        else:
            import cloudpickle

            from headwater.storage.payload import flow_from_bytes, read_document

            with open(location, "rb") as file:
                data = file.read()
            here = {"python": ".".join(map(str, sys.version_info[:3])), "cloudpickle": cloudpickle.__version__}
            problems = version_problems(name, read_document(data, location)["versions"], here)
            if problems:
                return problems
            flow = flow_from_bytes(data, source=location)
    except Exception as exc:
        return [
            f"flow {name!r} can't be loaded in the image from {location}: {type(exc).__name__}: {exc}. "
            "Install what it imports with python_dependencies, or copy its modules in with files"
        ]
    if flow.name != name:
        return [f"{location} holds flow {flow.name!r}, not {name!r}"]
    return dependency_problems(name, flow, entry.get("requires"))


def main(argv: list[str]) -> int:
    """Check every flow named in ``argv[0]``'s JSON; print the result; 0 when all are healthy."""
    if len(argv) != 1:
        print(FAILED + "usage: healthcheck.py '{\"flows\": [...]}'")
        return 2
    flows = json.loads(argv[0])["flows"]
    problems = [problem for entry in flows for problem in check(entry)]
    for problem in problems:
        print(FAILED + problem, flush=True)
    if problems:
        return 1
    import headwater

    names = ", ".join(repr(entry["name"]) for entry in flows)
    print(f"headwater healthcheck passed: {len(flows)} flow(s) load with headwater {headwater.__version__}: {names}")
    return 0


def _major_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
