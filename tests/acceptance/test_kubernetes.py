"""Issue 11's acceptance: flows labelled ``k8s`` run to Success in the cluster, tasks and all.

A live server (API tokens on), ``headwater agent kubernetes start`` as a process of its own
(talking to the cluster through a kubeconfig), and the cluster: by default the Kubernetes API
emulator with the pod runner running the pods on the real Docker engine, or a real cluster
when ``HEADWATER_TEST_KUBECONFIG`` says so (``tests/k8s/target.py``; the test is the same).
Each flow is kept in Docker storage pushed to the registry, so its pods pull their image
from there:

1. with a ``LocalEnvironment``, the flow runs in the agent's job;
2. with a ``KubernetesJobEnvironment`` from a spec file, the agent's job starts the
   environment's job (carrying the agent's labels), and the flow runs there;
3. with a ``DaskKubernetesEnvironment`` (default specs), the environment's job runs the
   scheduler and the flow's tasks run on worker pods: on at least two of them, their number
   rising with the work and falling back to ``min_workers`` in the flow's long serial tail,
   and none left when the run ends;
4. a ``DaskKubernetesEnvironment`` run cancelled while its task runs on a worker ends
   Cancelled, and its jobs and pods are gone.

The runs' pods use the cluster's API as pods do: the in-cluster configuration, under the flow
runs' service account (the one ``headwater agent kubernetes install --run-service-account``
makes, given to the agent's jobs, and by the environments to their next hop).
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

from client.live import LiveServer
from dockerd import HOST_CA_BUNDLE, push
from headwater.client import Client
from headwater.containers.names import image_reference
from headwater.kube import jobs as manifests
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
    time.sleep(4)  # 32 s on one worker: long enough for more to start, however busy the machine
    return os.environ.get("DASK_WORKER_POD", "not a worker pod")

@task
def tail(pods):
    logging.getLogger("headwater.task").info("tasks ran on worker pods: %s", ", ".join(sorted(set(pods))))
    time.sleep(9)  # a long serial tail: the cluster falls back to min_workers meanwhile
    return len(set(pods))

environment = DaskKubernetesEnvironment(min_workers=1, max_workers=3, labels=["k8s"], image_pull_secret={secret!r})
with Flow("k8s-dask", environment=environment) as flow:
    tail([spread(i) for i in range(8)])
"""

CANCELLED = """
import time
from headwater import Flow, task
from headwater.environments import DaskKubernetesEnvironment

@task
def endless():
    time.sleep(300)  # ends only when its pod goes

environment = DaskKubernetesEnvironment(min_workers=1, max_workers=1, labels=["k8s"], image_pull_secret={secret!r})
with Flow("k8s-dask-cancelled", environment=environment) as flow:
    endless()
"""

FINAL = ("Success", "Failed", "Cancelled")


def job_spec(target: Any, name: str = "etl-job") -> dict[str, Any]:
    """The KubernetesJobEnvironment's spec file: no service account (the run's is given), the pull secret."""
    pod: dict[str, Any] = {"containers": [{"name": "flow", "resources": {"requests": {"memory": "64Mi"}}}]}
    if target.image_pull_secret:
        pod["imagePullSecrets"] = [{"name": target.image_pull_secret}]
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "labels": {"team": "data"}},
            "spec": {"template": {"spec": pod}}}  # fmt: skip


def kube(target: Any) -> Any:
    """An API client for the target cluster, as the agent makes one."""
    from headwater.kube.client import api_client

    return api_client(target.kubeconfig, target.context)


def run_service_account(target: Any) -> None:
    """Make the flow runs' ServiceAccount, Role and RoleBinding (`agent kubernetes install`'s) if missing."""
    from kubernetes import client as k8s

    from headwater.kube.install import agent_manifests, to_yaml

    wanted = [m for m in agent_manifests(namespace=target.namespace, image="unused", api_url="http://unused",
                                         run_service_account=target.service_account)
              if m["metadata"]["name"] == target.service_account]  # fmt: skip
    with kube(target) as api:
        core, rbac = k8s.CoreV1Api(api), k8s.RbacAuthorizationV1Api(api)
        create = {"ServiceAccount": core.create_namespaced_service_account,
                  "Role": rbac.create_namespaced_role, "RoleBinding": rbac.create_namespaced_role_binding}  # fmt: skip
        for manifest in wanted:
            try:
                create[manifest["kind"]](target.namespace, manifest)
            except k8s.ApiException as exc:
                if exc.status == 409:  # there already (an earlier run made it, or its admin)
                    continue
                pytest.fail(
                    f"can't create {manifest['kind']} {target.service_account!r} in namespace {target.namespace!r} "
                    f"({exc.status} {exc.reason}): apply these first (kubectl apply -f -):\n{to_yaml(wanted)}",
                    pytrace=False,
                )  # fmt: skip


@pytest.fixture
def k8s_agent(tmp_path: Path, k8s_target: Any) -> Iterator[Any]:
    """Starts ``headwater agent kubernetes start`` processes against a server; stops them after."""
    started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(api_url: str, token: str, *args: str) -> subprocess.Popen[bytes]:
        log = tmp_path / f"k8s-agent-{len(started)}.log"
        options = ["--kubeconfig", str(k8s_target.kubeconfig), "--namespace", k8s_target.namespace,
                   "--service-account-name", k8s_target.service_account]  # fmt: skip
        if k8s_target.context:
            options += ["--context", k8s_target.context]
        if k8s_target.image_pull_secret:
            options += ["--image-pull-secret", k8s_target.image_pull_secret]
        process = subprocess.Popen(
            [sys.executable, "-m", "headwater", "agent", "kubernetes", "start", *options, *args],
            env={**os.environ, "HEADWATER__API__URL": api_url, "HEADWATER__API__TOKEN": token,
                 "HEADWATER__AGENT__CLAIM_WAIT": "1", "HEADWATER__AGENT__CANCEL_GRACE": "3"},
            stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        started.append((process, log))
        return process

    def stop_all() -> None:
        for process, _ in started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process, _ in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    start.logs = lambda: "\n".join(log.read_text(errors="replace") for _, log in started)  # type: ignore[attr-defined]
    # The test stops them before its server: an agent whose server is gone retries its last writes
    # (``api.retry_for``) past the 30 s it is given here.
    start.stop_all = stop_all  # type: ignore[attr-defined]
    yield start
    stop_all()


def docker_storage(registry_url: str, base_image: str, docker_daemon: Any, **kwargs: Any) -> Any:
    from headwater.storage import Docker

    return Docker(
        registry_url=registry_url, base_image=base_image, local_image=True,
        base_url=docker_daemon.base_url, build_kwargs={"network_mode": "host"}, ca_certificates=HOST_CA_BUNDLE,
        **kwargs,
    )  # fmt: skip


# Its set-up (the emulator, the Dask image) counts too, and the Docker group's worker shares the two cores.
@pytest.mark.timeout(600)
def test_flows_labelled_k8s_run_to_success_in_the_cluster(
    tmp_path: Path, k8s_target: Any, docker_daemon: Any, dask_image: str, k8s_agent: Any, settings_env: Any,
) -> None:  # fmt: skip
    target = k8s_target
    run_service_account(target)
    server = LiveServer(tmp_path / "home", env={"HEADWATER__SERVER__AUTH": "true"}, host=target.server_bind)
    admin, agent_token = server.create_token("admin"), server.create_token("agent")
    server.start()
    try:
        settings_env(API__URL=server.url, API__TOKEN=admin)
        with Client(server.url, api_token=admin) as client:
            client.create_project("k8s")
            secret = target.image_pull_secret
            local = extract_flow_from_file(path=str(write_flow(tmp_path, "local", LOCAL)))
            spec = tmp_path / "job.yaml"
            spec.write_text(yaml.safe_dump(job_spec(target)))
            second = extract_flow_from_file(path=str(write_flow(tmp_path, "second", JOB_ENVIRONMENT.format(
                spec=str(spec)))))  # fmt: skip
            dask = extract_flow_from_file(path=str(write_flow(tmp_path, "dask", DASK.format(secret=secret))))
            doomed = extract_flow_from_file(path=str(write_flow(tmp_path, "doomed", CANCELLED.format(secret=secret))))
            flows = {"local": local, "second": second, "dask": dask, "cancelled": doomed}
            # one image holds the flows (built once); each is registered naming it
            storage = docker_storage(target.registry, dask_image, docker_daemon)  # it has dask and kubernetes
            for flow in flows.values():
                storage.add_flow(flow)
            storage.build(push=False)  # pushed below, again if a push stalls
            push(docker_daemon.base_url, image_reference(storage.registry_url, storage.image_name, storage.image_tag))
            flow_ids = {}
            for what, flow in flows.items():
                flow.storage = storage
                flow_ids[what] = flow.register("k8s", build=False)

            pods_reach_server_at = f"http://{target.server_host}:{server.port}"
            k8s_agent(pods_reach_server_at, agent_token, "-l", "k8s", "--name", "k8s-e2e")
            runs = {what: client.create_flow_run(flow_id) for what, flow_id in flow_ids.items()}
            counts = watch_workers(target, runs["dask"], client)
            cancelled = cancel_when_its_worker_runs(target, runs["cancelled"], client)

            for what in ("local", "second", "dask"):
                run = finished(client, runs[what], timeout=240)
                logs = "\n".join(r.message for r in client.get_flow_run_logs(runs[what]))
                assert run.state == "Success", f"{what}: {run.state_message}\n{logs}\n{k8s_agent.logs()}"
                assert {t.state for t in client.get_task_runs(runs[what])} == {"Success"}
            states = {t.task_slug: t.state for t in client.get_task_runs(runs["local"])}
            assert states == {"n": "Success", "numbers-1": "Success", "total-1": "Success"}, states
            local_logs = "\n".join(r.message for r in client.get_flow_run_logs(runs["local"]))
            assert "the total in the agent's job is 10" in local_logs
            second_logs = "\n".join(r.message for r in client.get_flow_run_logs(runs["second"]))
            assert "the total in the environment's job is 6 (second hop: true)" in second_logs

            from kubernetes import client as k8s

            with kube(target) as api:
                selector = f"{manifests.LABEL_FLOW_RUN_ID}={runs['second']}"
                jobs = k8s.BatchV1Api(api).list_namespaced_job(target.namespace, label_selector=selector).items
            roles = sorted(j.metadata.labels[manifests.LABEL_ROLE] for j in jobs)
            assert roles == ["flow-run", "second-hop"]  # the agent's job, then the environment's
            hop = next(j for j in jobs if j.metadata.labels[manifests.LABEL_ROLE] == "second-hop")
            assert hop.metadata.labels[manifests.LABEL_AGENT_NAME] == "k8s-e2e"  # carried: the agent watches it
            assert hop.metadata.name.startswith("etl-job-") and hop.metadata.labels["team"] == "data"
            assert hop.spec.template.spec.service_account_name == target.service_account  # the run's, given on
            dask_logs = "\n".join(r.message for r in client.get_flow_run_logs(runs["dask"]))
            used = next(line for line in dask_logs.splitlines() if "tasks ran on worker pods" in line)
            assert len(used.split(": ", 1)[1].split(", ")) >= 2, used  # on at least two worker pods
            seen = counts()
            assert max(seen) >= 2, seen  # it rose with the work ...
            peak = seen.index(max(seen))
            assert 1 in seen[peak:], seen  # ... and fell back to min_workers in the serial tail
            assert seen[-1] == 0, seen  # none left when the run ended

            run, left = cancelled()
            assert run.state == "Cancelled", f"{run.state}: {run.state_message}\n{k8s_agent.logs()}"
            assert left == ([], []), left  # its jobs and pods (scheduler, worker) are gone
            if target.emulator is not None:
                assert not target.emulator.emulator.invalid  # everything sent fits the Kubernetes schema
    finally:
        k8s_agent.stop_all()
        server.stop()


def watch_workers(target: Any, run_id: str, api: Client) -> Any:
    """Count the run's Dask worker pods every 0.3 s until the run ends; ``counts()`` waits and gives them."""
    from kubernetes import client as k8s

    seen: list[int] = []
    selector = f"{manifests.LABEL_FLOW_RUN_ID}={run_id},{manifests.LABEL_ROLE}=dask-worker"

    def watch() -> None:
        with kube(target) as client:
            core = k8s.CoreV1Api(client)
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                seen.append(len(core.list_namespaced_pod(target.namespace, label_selector=selector).items))
                if api.get_flow_run(run_id).state in FINAL:
                    time.sleep(1.0)  # the pods go as the run ends
                    seen.append(len(core.list_namespaced_pod(target.namespace, label_selector=selector).items))
                    return
                time.sleep(0.3)

    return in_thread(watch, seen)


def cancel_when_its_worker_runs(target: Any, run_id: str, api: Client) -> Any:
    """Cancel the run once its task runs on a worker pod; ``result()`` gives its final run and what is left of it.

    What is left: the names of the run's jobs and pods a few seconds after it ended (none, if all went).
    """
    from kubernetes import client as k8s

    outcome: list[Any] = []
    namespace = target.namespace
    selector = f"{manifests.LABEL_FLOW_RUN_ID}={run_id}"

    def cancel() -> None:
        with kube(target) as client:
            core, batch = k8s.CoreV1Api(client), k8s.BatchV1Api(client)
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and not any(  # the task runs once its worker is Running
                t.state == "Running" for t in api.get_task_runs(run_id)
            ):
                time.sleep(0.5)
            api.cancel_flow_run(run_id)
            run = finished(api, run_id, timeout=120)
            jobs: list[str] = []
            pods: list[str] = []
            for _ in range(40):  # deletion runs on: the pods go with the job, the workers with the scheduler
                jobs = [j.metadata.name for j in batch.list_namespaced_job(namespace, label_selector=selector).items]
                pods = [p.metadata.name for p in core.list_namespaced_pod(namespace, label_selector=selector).items]
                if not jobs and not pods:
                    break
                time.sleep(0.5)
            outcome.append((run, (jobs, pods)))

    return in_thread(cancel, outcome, lambda: outcome[0] if outcome else (None, "the cancelling thread failed"))


def in_thread(work: Any, results: list[Any], result: Any = None) -> Any:
    """Run ``work`` in a daemon thread; the function returned waits for it and gives ``result()`` (or ``results``)."""
    import threading

    def guarded() -> None:
        try:
            work()
        except Exception as exc:  # the test ended (its client closed) or the API went: say so, stop
            print(f"{work.__name__} stopped: {exc!r}", file=sys.stderr)
            results.append(-1)

    thread = threading.Thread(target=guarded, daemon=True)
    thread.start()

    def wait() -> Any:
        thread.join(310)
        return result() if result is not None else results

    return wait
