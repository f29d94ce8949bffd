"""Storage benchmarks (issue 5). Prints one JSON document.

    .venv/bin/python bench/storage.py [--quick] [--only KIND ...]

For each backend, against the real service running here (the same launchers the tests
use: moto_server, gcp-storage-emulator, Azurite, git daemon, a dockerd of its own), with a
flow of 1,000 tasks (built from a script file, so it pickles by value as a user's would):

- ``add_build_s``: ``storage.add_flow(flow)`` + ``storage.build()``, best of the repeats;
- ``get_flow_s``: ``storage.get_flow(name)`` in a fresh storage rebuilt from the spec (what
  a flow-run process does), best of the repeats;
- ``baseline_put_s`` / ``baseline_get_s``: plain Python doing the same job — ``cloudpickle.dumps``
  and the service's own SDK call for put; the SDK call (or ``git clone``) and
  ``cloudpickle.loads`` (or running the script) for get. It is the floor any storage pays;
  ``overhead_*`` is headwater's share above it (versioned payload, checks, error handling).

Docker storage adds ``cold_build_s`` (first build, empty layer cache: pip installs the
dependencies), ``warm_rebuild_s`` (the same storage rebuilt after changing only the flow —
target ≤ 5 s: the Dockerfile puts the flow last, so every dependency layer is reused) and,
as its baseline, ``baseline_build_s``: a raw SDK build of a Dockerfile that only copies one
file onto the same base image (the floor of any build on this daemon).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the service launchers the tests use

from headwater.core.flow import Flow  # noqa: E402
from headwater.storage import Storage, storage_from_spec  # noqa: E402
from headwater.storage.script import extract_flow_from_file  # noqa: E402

TASKS = 1000


def flow_source(tasks: int, name: str = "bench-storage", salt: int = 0) -> str:
    """A flow file of ``tasks`` tasks: a chain of additions (``salt`` changes only the flow)."""
    lines = [
        "from headwater import Flow, task",
        "",
        "@task",
        "def step(x):",
        f"    return x + 1 + {salt} * 0",
        "",
        f"with Flow({name!r}) as flow:",
        "    value = step(0)",
        f"    for _ in range({tasks - 1}):",
        "        value = step(value)",
        "",
    ]
    return "\n".join(lines)


def best(repeat: int, fn: Callable[[], Any]) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return round(min(times), 4)


def payload_of(flow: Flow) -> bytes:
    from headwater.storage.payload import flow_to_bytes

    return flow_to_bytes(flow)


def pickle_plain(flow: Flow) -> bytes:
    import cloudpickle

    return cloudpickle.dumps(flow)


def load_payload(data: bytes) -> Flow:
    """The baseline's load: unpickle, without headwater's checks."""
    import cloudpickle

    flow: Flow = cloudpickle.loads(data)
    return flow


def measure(
    make: Callable[[], Storage],
    flow: Flow,
    repeat: int,
    put: Callable[[bytes], Any] | None,
    get: Callable[[], bytes],
    load: Callable[[bytes], Any] = load_payload,
) -> dict[str, Any]:
    """add+build and get_flow of ``flow`` in fresh storages, and the raw put/get baseline."""
    specs: list[dict[str, Any]] = []

    def add_build() -> None:
        storage = make()
        storage.add_flow(flow)
        storage.build()
        specs.append(storage.serialize())

    add_build_s = best(repeat, add_build)
    spec = specs[-1]
    get_flow_s = best(repeat, lambda: storage_from_spec(spec).get_flow(flow.name))
    data = payload_of(flow)
    if put is None:  # nothing is uploaded (Git: the user pushes the file)
        baseline_put_s = 0.0
    else:
        put(pickle_plain(flow))
        # the floor: pickle the flow and move the bytes with the SDK, no checks, no versions
        baseline_put_s = best(repeat, lambda: put(pickle_plain(flow)))
    baseline_get_s = best(repeat, lambda: load(get()))
    return {
        "tasks": len(flow.tasks),
        "payload_bytes": len(data),
        "add_build_s": add_build_s,
        "get_flow_s": get_flow_s,
        "baseline_put_s": baseline_put_s,
        "baseline_get_s": baseline_get_s,
        "overhead_add_build_s": round(add_build_s - baseline_put_s, 4),
        "overhead_get_flow_s": round(get_flow_s - baseline_get_s, 4),
    }


# -- backends ------------------------------------------------------------------------------


def bench_local(flow: Flow, folder: Path, repeat: int) -> dict[str, Any]:
    from headwater.storage import Local

    target = folder / "baseline.bin"
    return measure(
        lambda: Local(directory=str(folder / "local"), add_default_labels=False),
        flow,
        repeat,
        put=target.write_bytes,
        get=target.read_bytes,
    )


def bench_s3(flow: Flow, folder: Path, repeat: int) -> dict[str, Any]:
    from headwater.storage.s3 import S3
    from storage.services_s3 import DUMMY_ENV, client, moto_server  # type: ignore[import-not-found]

    with moto_server() as url, contextlib.ExitStack() as stack:
        for name, value in {**DUMMY_ENV, "AWS_ENDPOINT_URL": url}.items():
            stack.enter_context(_env(name, value))
        raw = client(url)
        raw.create_bucket(Bucket="bench")
        return measure(
            lambda: S3("bench"),
            flow,
            repeat,
            put=lambda data: raw.put_object(Bucket="bench", Key="baseline.bin", Body=data),
            get=lambda: raw.get_object(Bucket="bench", Key="baseline.bin")["Body"].read(),
        )


def bench_docker(folder: Path, repeat: int, tasks: int) -> dict[str, Any]:
    """Docker storage: cold build, warm rebuild after changing only the flow, get_flow; a raw build's floor."""
    import io
    import tarfile

    from dockerd import HOST_CA_BUNDLE, DockerDaemon, import_base_image  # type: ignore[import-not-found]
    from headwater.storage.docker import Docker

    daemon = DockerDaemon().start()
    try:
        sdk = daemon.client()
        base = import_base_image(sdk)
        args = {
            "base_image": base,
            "local_image": True,
            "base_url": daemon.base_url,
            "build_kwargs": {"network_mode": "host"},
            "ca_certificates": HOST_CA_BUNDLE,
            "image_name": "bench-docker",
        }
        salt = iter(range(1, 1000))

        def build_once() -> Docker:
            script = folder / f"flow-{next(salt)}.py"
            script.write_text(flow_source(tasks, salt=int(script.stem.split("-")[1])))
            storage = Docker(**args)
            storage.add_flow(extract_flow_from_file(path=str(script)))
            storage.build()
            return storage

        began = time.perf_counter()
        built = build_once()
        cold = time.perf_counter() - began
        warm = best(repeat, build_once)  # each rebuild holds a changed flow: only its layers are new
        spec = built.serialize()
        get_flow_s = best(repeat, lambda: storage_from_spec(spec).get_flow("bench-storage"))

        def raw_build() -> None:
            # The floor of any build here: one small file copied onto the same base.
            dockerfile = f"FROM {base}\nCOPY flow.bin /flow.bin\n".encode()
            context = io.BytesIO()
            with tarfile.open(fileobj=context, mode="w") as tar:
                for name, data in (("Dockerfile", dockerfile), ("flow.bin", str(time.time_ns()).encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
            context.seek(0)
            sdk.images.build(fileobj=context, custom_context=True, rm=True, tag="bench-raw:latest")

        baseline = best(repeat, raw_build)
        sdk.close()
        return {
            "tasks": tasks,
            "cold_build_s": round(cold, 2),
            "warm_rebuild_s": warm,
            "warm_rebuild_target_s": 5.0,
            "warm_rebuild_meets_target": warm <= 5.0,
            "baseline_build_s": baseline,
            "overhead_warm_rebuild_s": round(warm - baseline, 4),
            "get_flow_s": get_flow_s,
        }
    finally:
        daemon.stop()


def bench_gcs(flow: Flow, folder: Path, repeat: int) -> dict[str, Any]:
    from headwater.storage.gcs import EMULATOR_ENV, GCS
    from storage.services_gcs import anonymous_client, gcs_emulator  # type: ignore[import-not-found]

    with gcs_emulator() as url, _env(EMULATOR_ENV, url):
        bucket = anonymous_client().create_bucket("bench")
        blob = bucket.blob("baseline.bin")
        return measure(
            lambda: GCS(bucket="bench"), flow, repeat, put=blob.upload_from_string, get=blob.download_as_bytes
        )


def bench_azure(flow: Flow, folder: Path, repeat: int) -> dict[str, Any]:
    from azure.storage.blob import BlobServiceClient

    from headwater.storage.azure import ENV_VAR, Azure
    from storage.services_azure import running_azurite  # type: ignore[import-not-found]

    with running_azurite(folder / "azurite") as azurite, _env(ENV_VAR, azurite.connection_string):
        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        service.create_container("bench")
        blob = service.get_blob_client("bench", "baseline.bin")
        return measure(
            lambda: Azure(container="bench"),
            flow,
            repeat,
            put=lambda data: blob.upload_blob(data, overwrite=True),
            get=lambda: blob.download_blob().readall(),
        )


def bench_git(flow: Flow, folder: Path, repeat: int, source: str) -> dict[str, Any]:
    """Git is script mode only: add+build records the path; get_flow clones and runs the file."""
    from headwater.storage.git import Git

    bare = folder / "flows.git"
    work = folder / "git-work"
    git = ["git", "-c", "user.name=b", "-c", "user.email=b@example.com", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q", "--bare", str(bare)], check=True)
    subprocess.run([*git, "init", "-q", str(work)], check=True)
    (work / "flow.py").write_text(source)
    subprocess.run([*git, "add", "."], cwd=work, check=True)
    subprocess.run([*git, "commit", "-qm", "flow"], cwd=work, check=True)
    subprocess.run([*git, "push", "-q", str(bare), "main"], cwd=work, check=True)

    def clone() -> bytes:
        with tempfile.TemporaryDirectory() as into:
            subprocess.run(["git", "clone", "-q", "--depth=1", bare.as_uri(), into], check=True)
            return (Path(into) / "flow.py").read_bytes()

    return measure(
        lambda: Git(flow_path="flow.py", repo=bare.as_uri(), branch_name="main"),
        flow,
        repeat,
        put=None,
        get=clone,
        load=lambda data: exec(compile(data, "flow.py", "exec"), {"__name__": "bench"}),
    )


@contextlib.contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    import os

    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--only", nargs="*", help="backends to measure (default: all)")
    args = parser.parse_args()
    repeat = 2 if args.quick else 5
    results: dict[str, Any] = {"tasks": TASKS, "repeat": repeat, "backends": {}}
    with tempfile.TemporaryDirectory(prefix="hw-bench-storage-") as tmp:
        folder = Path(tmp)
        source = flow_source(TASKS)
        script = folder / "flow.py"
        script.write_text(source)
        flow = extract_flow_from_file(path=str(script))
        backends: dict[str, Callable[[Path], dict[str, Any]]] = {
            "local": lambda f: bench_local(flow, f, repeat),
            "s3": lambda f: bench_s3(flow, f, repeat),
            "gcs": lambda f: bench_gcs(flow, f, repeat),
            "azure": lambda f: bench_azure(flow, f, repeat),
            "git": lambda f: bench_git(flow, f, repeat, source),
            "docker": lambda f: bench_docker(f, repeat, TASKS),
        }
        for kind, run in backends.items():
            if args.only and kind not in args.only:
                continue
            sub = folder / kind
            sub.mkdir()
            print(f"bench/storage.py: {kind} ...", file=sys.stderr)
            try:
                results["backends"][kind] = run(sub)
            except Exception as exc:  # one backend's service missing must not hide the others
                results["backends"][kind] = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(results, indent=2))
    return 0 if all("error" not in r for r in results["backends"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
