"""Issue 11's acceptance: flows labelled ``k8s`` run to Success in the (emulated) cluster, tasks and all.

A live server, ``headwater agent kubernetes start`` as a process of its own (talking to the
Kubernetes API emulator through a kubeconfig, as to a cluster), and the pod runner running
the pods on the real Docker engine. Each flow is kept in Docker storage pushed to the test
registry, so its pods pull their image from there:

1. with a ``LocalEnvironment``, the flow runs in the agent's job;
2. with a ``KubernetesJobEnvironment`` from a spec file, the agent's job starts the
   environment's job (carrying the agent's labels), and the flow runs there;
3. with a ``DaskKubernetesEnvironment``, the environment's job runs the scheduler and the
   flow's tasks run on worker pods: on at least two of them, their number rising with the
   work and falling back to ``min_workers`` in the flow's long serial tail, and none left
   when the run ends.

The pods reach the emulator through a kubeconfig in a ``hostPath`` volume (on a real cluster
the in-cluster configuration does that), and the server through the host network.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dockerd import HOST_CA_BUNDLE
from headwater.client import Client
from headwater.kube import jobs as manifests
from headwater.server.process import ServerProcess
from headwater.storage.script import extract_flow_from_file

from .conftest import finished, write_flow

LOCAL = """
import logging
from headwater import Flow, Parameter, task
from headwater.environments import LocalEnvironment

@task
def numbers(n):
    return list(range(n))

@task
def total(values):
    logging.getLogger("headwater.task").info("the total in the agent's job is %d", sum(values))
    return sum(values)

with Flow("k8s-local", environment=LocalEnvironment(labels=["k8s"])) as flow:
    total(numbers(Parameter("n", default=5)))
"""

JOB_ENVIRONMENT = """
import logging
import os
from headwater import Flow, Parameter, task
from headwater.environments import KubernetesJobEnvironment

@task
def numbers(n):
    return list(range(n))

@task
def total(values):
    logging.getLogger("headwater.task").info("the total in the environment's job is %d (second hop: %s)",
                                             sum(values), os.environ.get("HEADWATER__CONTEXT__SECOND_HOP"))
    return sum(values)

environment = KubernetesJobEnvironment(job_spec_file={spec!r}, unique_job_name=True, labels=["k8s"])
with Flow("k8s-job", environment=environment) as flow:
    total(numbers(Parameter("n", default=4)))
"""


DASK = """
import logging
import os
import time
from headwater import Flow, task
from headwater.environments import DaskKubernetesEnvironment

@task
def spread(i):
    time.sleep(2.5)
    return os.environ.get("DASK_WORKER_POD", "not a worker pod")

@task
def tail(pods):
    logging.getLogger("headwater.task").info("tasks ran on worker pods: %s", ", ".join(sorted(set(pods))))
    time.sleep(9)  # a long serial tail: the cluster falls back to min_workers meanwhile
    return len(set(pods))

environment = DaskKubernetesEnvironment(min_workers=1, max_workers=3, labels=["k8s"], scheduler_spec_file={spec!r})
with Flow("k8s-dask", environment=environment) as flow:
    tail([spread(i) for i in range(6)])
"""


def mounted_job(kubeconfig_dir: str, name: str = "etl-job") -> dict[str, Any]:
    """A Job whose pods see the emulator's kubeconfig at the same path (``KUBECONFIG`` names it)."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"team": "data"}},
        "spec": {"template": {"spec": {
            "containers": [{"name": "flow", "env": [{"name": "KUBECONFIG", "value": f"{kubeconfig_dir}/kubeconfig"}],
                            "volumeMounts": [{"name": "kube", "mountPath": kubeconfig_dir, "readOnly": True}]}],
            "volumes": [{"name": "kube", "hostPath": {"path": kubeconfig_dir}}],
        }}},
    }  # fmt: skip


@pytest.fixture
def k8s_agent(tmp_path: Path, k8s_cluster: Any) -> Iterator[Any]:
    """Starts ``headwater agent kubernetes start`` processes against a server; stops them after."""
    started: list[tuple[subprocess.Popen[bytes], Path]] = []
    template = tmp_path / "agent-job.yaml"
    kube_dir = str(k8s_cluster.kubeconfig.parent)
    template.write_text(yaml.safe_dump(mounted_job(kube_dir, "agent-template")))

    def start(server: ServerProcess, *args: str) -> subprocess.Popen[bytes]:
        log = tmp_path / f"k8s-agent-{len(started)}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "headwater", "agent", "kubernetes", "start", "--kubeconfig",
             str(k8s_cluster.kubeconfig), "--job-template", str(template), *args],
            env={**os.environ, "HEADWATER__API__URL": server.url, "HEADWATER__AGENT__CLAIM_WAIT": "1"},
            stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        started.append((process, log))
        return process

    start.logs = lambda: "\n".join(log.read_text(errors="replace") for _, log in started)  # type: ignore[attr-defined]
    yield start
    for process, _ in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process, _ in started:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def docker_storage(docker_registry: Any, docker_base_image: str, docker_daemon: Any, **kwargs: Any) -> Any:
    from headwater.storage import Docker

    return Docker(
        registry_url=f"{docker_registry.address}/flows", base_image=docker_base_image, local_image=True,
        base_url=docker_daemon.base_url, build_kwargs={"network_mode": "host"}, ca_certificates=HOST_CA_BUNDLE,
        **kwargs,
    )  # fmt: skip


def test_flows_labelled_k8s_run_to_success_in_the_cluster(
    tmp_path: Path, k8s_cluster: Any, docker_daemon: Any, docker_base_image: str, docker_registry: Any,
    k8s_agent: Any, settings_env: Any,
) -> None:  # fmt: skip
    home = tmp_path / "home"
    home.mkdir()
    server = ServerProcess(home, f"sqlite:///{home / 'hw.db'}").start()
    try:
        settings_env(API__URL=server.url)
        with Client(server.url) as client:
            client.create_project("k8s")
            local = extract_flow_from_file(path=str(write_flow(tmp_path, "local", LOCAL)))
            spec = tmp_path / "job.yaml"
            spec.write_text(yaml.safe_dump(mounted_job(str(k8s_cluster.kubeconfig.parent))))
            second = extract_flow_from_file(path=str(write_flow(tmp_path, "second", JOB_ENVIRONMENT.format(
                spec=str(spec)))))  # fmt: skip
            scheduler = tmp_path / "scheduler.yaml"
            scheduler.write_text(yaml.safe_dump(mounted_job(str(k8s_cluster.kubeconfig.parent), "dask-scheduler")))
            dask = extract_flow_from_file(path=str(write_flow(tmp_path, "dask", DASK.format(spec=str(scheduler)))))
            # one image holds the three flows (built once); each is registered naming it
            import distributed

            storage = docker_storage(
                docker_registry, docker_base_image, docker_daemon,
                python_dependencies=["kubernetes>=29,<37", f"dask[distributed]=={distributed.__version__}"],
            )  # fmt: skip
            for flow in (local, second, dask):
                storage.add_flow(flow)
            storage.build()
            local.storage = second.storage = dask.storage = storage
            local_id = local.register("k8s", build=False)
            second_id = second.register("k8s", build=False)
            dask_id = dask.register("k8s", build=False)

            k8s_agent(server, "-l", "k8s", "--name", "k8s-e2e")
            runs = {"local": client.create_flow_run(local_id), "second": client.create_flow_run(second_id),
                    "dask": client.create_flow_run(dask_id)}  # fmt: skip
            counts = watch_workers(k8s_cluster, runs["dask"], client)

            for what, run_id in runs.items():
                run = finished(client, run_id, timeout=240)
                logs = "\n".join(r.message for r in client.get_flow_run_logs(run_id))
                assert run.state == "Success", f"{what}: {run.state_message}\n{logs}\n{k8s_agent.logs()}"
                assert {t.state for t in client.get_task_runs(run_id)} == {"Success"}
            states = {t.task_slug: t.state for t in client.get_task_runs(runs["local"])}
            assert states == {"n": "Success", "numbers-1": "Success", "total-1": "Success"}, states
            local_logs = "\n".join(r.message for r in client.get_flow_run_logs(runs["local"]))
            assert "the total in the agent's job is 10" in local_logs
            second_logs = "\n".join(r.message for r in client.get_flow_run_logs(runs["second"]))
            assert "the total in the environment's job is 6 (second hop: true)" in second_logs

            from kubernetes import client as k8s
            from kubernetes import config

            configuration = k8s.Configuration()
            config.load_kube_config(str(k8s_cluster.kubeconfig), client_configuration=configuration)
            with k8s.ApiClient(configuration) as api:
                selector = f"{manifests.LABEL_FLOW_RUN_ID}={runs['second']}"
                jobs = k8s.BatchV1Api(api).list_namespaced_job("default", label_selector=selector).items
            roles = sorted(j.metadata.labels[manifests.LABEL_ROLE] for j in jobs)
            assert roles == ["flow-run", "second-hop"]  # the agent's job, then the environment's
            hop = next(j for j in jobs if j.metadata.labels[manifests.LABEL_ROLE] == "second-hop")
            assert hop.metadata.labels[manifests.LABEL_AGENT_NAME] == "k8s-e2e"  # carried: the agent watches it
            assert hop.metadata.name.startswith("etl-job-") and hop.metadata.labels["team"] == "data"
            dask_logs = "\n".join(r.message for r in client.get_flow_run_logs(runs["dask"]))
            used = next(line for line in dask_logs.splitlines() if "tasks ran on worker pods" in line)
            assert len(used.split(": ", 1)[1].split(", ")) >= 2, used  # on at least two worker pods
            seen = counts()
            assert max(seen) >= 2, seen  # it rose with the work ...
            peak = seen.index(max(seen))
            assert 1 in seen[peak:], seen  # ... and fell back to min_workers in the serial tail
            assert seen[-1] == 0, seen  # none left when the run ended
            assert not k8s_cluster.emulator.invalid
    finally:
        server.stop()


def watch_workers(k8s_cluster: Any, run_id: str, api: Client) -> Any:
    """Count the run's Dask worker pods every 0.3 s until the run ends; ``counts()`` waits and gives them."""
    import threading

    from kubernetes import client as k8s
    from kubernetes import config

    seen: list[int] = []
    configuration = k8s.Configuration()
    config.load_kube_config(str(k8s_cluster.kubeconfig), client_configuration=configuration)
    selector = f"{manifests.LABEL_FLOW_RUN_ID}={run_id},{manifests.LABEL_ROLE}=dask-worker"

    def count() -> None:
        try:
            watch()
        except Exception as exc:  # the test ended (its client closed) or the API went: stop counting
            seen.append(-1)
            print(f"counting worker pods stopped: {exc}", file=sys.stderr)

    def watch() -> None:
        with k8s.ApiClient(configuration) as client:
            core = k8s.CoreV1Api(client)
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                seen.append(len(core.list_namespaced_pod("default", label_selector=selector).items))
                if api.get_flow_run(run_id).state in ("Success", "Failed", "Cancelled"):
                    time.sleep(1.0)  # the pods go as the run ends
                    seen.append(len(core.list_namespaced_pod("default", label_selector=selector).items))
                    return
                time.sleep(0.3)

    thread = threading.Thread(target=count, daemon=True)
    thread.start()

    def counts() -> list[int]:
        thread.join(310)
        return seen

    return counts
