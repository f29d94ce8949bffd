"""Kubernetes agent benchmark (issue 11). Prints one JSON document.

    .venv/bin/python bench/kubernetes_agent.py [--quick]

A KubernetesAgent (in this process, so its calls can be counted from outside it) against the
Kubernetes API emulator of the tests (``tests/k8s/emulator.py``, real HTTP, schema-validated,
in a process of its own)
and a headwater server, runs ``--runs`` flow runs one after another. The cluster's side is
played here, instantly: for each Job the agent creates, a pod is made, the run is moved to
Running then Success through the API (what the flow-run process would report), and the pod
and Job are marked Succeeded/Complete — so every run is one that succeeds, seen by the agent
through its watch streams.

- ``claim_to_create_ms``: from the agent's claim call returning a run to its
  ``create_namespaced_job`` returning, median and p90. Target ≤ 50 ms median.
- ``baseline_create_ms``: the same Job created by a bare ``kubernetes`` client against the
  same emulator (the API's own cost, which the figure above includes).
- ``k8s_api_calls_per_run``: Kubernetes API requests the agent's client made per run,
  counted on its ``ApiClient`` (not the agent's own counter), after start-up; target ≤ 10.
  The watch streams are shared by all runs: a poll per run would show here.
- ``server_api_calls_per_run``: requests to the headwater server per run (claim, flow).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch

from headwater import Flow, task
from headwater.agent.kubernetes import KubernetesAgent
from headwater.client import Client
from headwater.config.settings import AgentSettings
from headwater.environments import LocalEnvironment
from headwater.kube import jobs as manifests
from headwater.server.process import ServerProcess
from headwater.storage import Local
from stats import summary

NAMESPACE = "default"
LABEL = "bench-k8s"


@task
def one() -> int:
    return 1


def api_for(kubeconfig: Path) -> k8s.ApiClient:
    configuration = k8s.Configuration()
    k8s_config.load_kube_config(str(kubeconfig), client_configuration=configuration)
    return k8s.ApiClient(configuration)


class InstantCluster:
    """The kubelet, job controller and flow-run process of each Job the agent makes, done at once."""

    def __init__(self, kubeconfig: Path, api_url: str) -> None:
        self.api = api_for(kubeconfig)
        self.core, self.batch = k8s.CoreV1Api(self.api), k8s.BatchV1Api(self.api)
        self.headwater = Client(api_url)
        self.stopping = threading.Event()
        self.done: set[str] = set()  # job uids played (a watch that starts again lists them again)
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def start(self) -> InstantCluster:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(10)
        self.headwater.close()
        self.api.close()

    def _watch(self) -> None:
        while not self.stopping.is_set():
            for event in watch.Watch().stream(self.batch.list_namespaced_job, NAMESPACE, timeout_seconds=2):
                job = event["raw_object"]
                if event["type"] == "ADDED" and job["metadata"]["uid"] not in self.done:
                    self.done.add(job["metadata"]["uid"])
                    self._run(job)
                if self.stopping.is_set():
                    return

    def _run(self, job: dict[str, Any]) -> None:
        template = job["spec"]["template"]
        run_id = (job["metadata"].get("labels") or {}).get(manifests.LABEL_FLOW_RUN_ID)
        if run_id is None:  # the baseline's jobs
            return
        name = f"{job['metadata']['name']}-pod"
        labels = {**template["metadata"].get("labels", {}), "job-name": job["metadata"]["name"]}
        container = template["spec"]["containers"][0]
        owner = {"apiVersion": "batch/v1", "kind": "Job", "name": job["metadata"]["name"],
                 "uid": job["metadata"]["uid"], "controller": True}  # fmt: skip
        metadata = {"name": name, "namespace": NAMESPACE, "labels": labels, "ownerReferences": [owner]}
        pod = {"apiVersion": "v1", "kind": "Pod", "spec": template["spec"], "metadata": metadata}
        self.core.create_namespaced_pod(NAMESPACE, pod)
        self.core.patch_namespaced_pod_status(name, NAMESPACE, {"status": {"phase": "Running", "podIP": "127.0.0.1"}})
        run = self.headwater.set_flow_run_state(run_id, "Running")
        self.headwater.set_flow_run_state(run_id, "Success", version=run.version)
        terminated = {"exitCode": 0, "reason": "Completed"}
        status = {"phase": "Succeeded", "containerStatuses": [{
            "name": container["name"], "image": container["image"], "imageID": "", "ready": False,
            "restartCount": 0, "state": {"terminated": terminated}}]}  # fmt: skip
        self.core.patch_namespaced_pod_status(name, NAMESPACE, {"status": status})
        complete = {"type": "Complete", "status": "True"}
        self.batch.patch_namespaced_job_status(
            job["metadata"]["name"], NAMESPACE, {"status": {"succeeded": 1, "conditions": [complete]}}
        )


class Counted:
    """Counts the calls made through one method of an object (and when the last one returned)."""

    def __init__(self, owner: Any, name: str, on_return: Any = None, on_call: Any = None) -> None:
        self.calls = 0
        original = getattr(owner, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if on_call is not None:
                on_call(args, kwargs)
            result = original(*args, **kwargs)
            if on_return is not None:
                on_return(args, kwargs, result)
            return result

        setattr(owner, name, counted)


def baseline_create(kubeconfig: Path, job: dict[str, Any], samples: int) -> list[float]:
    """Milliseconds a bare client's create_namespaced_job takes, for the same Job under fresh names."""
    times = []
    with api_for(kubeconfig) as api:
        batch = k8s.BatchV1Api(api)
        for i in range(samples):
            body = json.loads(json.dumps(job))
            body["metadata"]["name"] = f"baseline-{i}"
            body["metadata"]["labels"] = {"bench": "baseline"}
            body["spec"]["template"]["metadata"]["labels"] = {"bench": "baseline"}
            began = time.perf_counter()
            batch.create_namespaced_job(NAMESPACE, body)
            times.append((time.perf_counter() - began) * 1000)
    return times


class EmulatorProcess:
    """The API emulator in a process of its own, as an API server is (not sharing this one's GIL)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True)
        self.kubeconfig = folder / "kubeconfig"
        self.folder = folder
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> EmulatorProcess:
        code = (
            "import sys; sys.path.insert(0, sys.argv[2]); from pathlib import Path; "
            "from k8s.emulator import Cluster; c = Cluster(Path(sys.argv[1])).start(); print('ready', flush=True); "
            "sys.stdin.read(); c.stop()"
        )
        tests = str(Path(__file__).resolve().parents[1] / "tests")
        self.process = subprocess.Popen([sys.executable, "-c", code, str(self.folder), tests],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError("the Kubernetes API emulator did not start")
        return self

    def stop(self) -> None:
        if self.process is not None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer runs (a smoke run)")
    parser.add_argument("--runs", type=int, default=None, help="runs to time (default 40, --quick 8)")
    args = parser.parse_args()
    runs = args.runs or (8 if args.quick else 40)
    home = Path(tempfile.mkdtemp(prefix="hw-bench-k8s-"))
    cleanup = contextlib.ExitStack()  # whatever started is stopped, also when a later start fails
    cluster = EmulatorProcess(home / "k8s")
    cleanup.callback(cluster.stop)
    cluster.start()
    server = ServerProcess(home, f"sqlite:///{home / 'hw.db'}").start()
    cleanup.callback(server.stop)
    instant = InstantCluster(cluster.kubeconfig, server.url).start()
    cleanup.callback(instant.stop)
    settings = AgentSettings(claim_wait=5.0, poll_interval=0.1, heartbeat_interval=30.0)
    try:
        agent = KubernetesAgent(labels=[LABEL], name="bench-k8s-agent", api_url=server.url,
                                kubeconfig=cluster.kubeconfig, settings=settings)  # fmt: skip
    except BaseException:
        cleanup.close()
        raise
    claimed: dict[str, float] = {}
    deploying: dict[str, float] = {}
    creating: dict[str, float] = {}
    created: dict[str, float] = {}
    jobs: list[dict[str, Any]] = []

    def on_claim(args: Any, kwargs: Any, result: Any) -> None:
        for run in result:
            claimed[run.id] = time.perf_counter()

    def on_deploy(args: Any, kwargs: Any) -> None:
        deploying[args[0].id] = time.perf_counter()

    def on_creating(args: Any, kwargs: Any) -> None:
        creating[args[1]["metadata"]["labels"][manifests.LABEL_FLOW_RUN_ID]] = time.perf_counter()

    def on_create(args: Any, kwargs: Any, result: Any) -> None:
        job = args[1]
        created[job["metadata"]["labels"][manifests.LABEL_FLOW_RUN_ID]] = time.perf_counter()
        jobs.append(job)

    thread = threading.Thread(target=agent.start, daemon=True)
    try:
        with Client(server.url) as client:
            client.create_project("bench")
            flow = Flow("k8s-bench", environment=LocalEnvironment(labels=[LABEL], metadata={"image": "bench/flow:1"}),
                        storage=Local(directory=str(home / "flows"), add_default_labels=False))  # fmt: skip
            with flow:
                one()
            with contextlib.redirect_stdout(sys.stderr):  # stdout is the JSON document only
                flow_id = client.register(flow, "bench")
            thread.start()
            deadline = time.monotonic() + 30
            while agent.agent_id is None:  # registered: its clients exist
                if time.monotonic() > deadline or not thread.is_alive():
                    raise RuntimeError("the agent did not start")
                time.sleep(0.01)
            Counted(agent.client, "claim_flow_runs", on_claim)
            Counted(agent.batch, "create_namespaced_job", on_create, on_creating)
            Counted(agent, "deploy_flow", on_call=on_deploy)
            k8s_paths: list[str] = []
            k8s_calls = Counted(agent.api, "call_api", on_call=lambda a, kw: k8s_paths.append(f"{a[1]} {a[0]}"))
            server_calls = Counted(agent.client._http, "request")

            def one_run() -> str:
                run_id = client.create_flow_run(flow_id)
                deadline = time.monotonic() + 60
                while True:
                    run = client.get_flow_run(run_id)
                    settled = not agent.deployed_flow_run_ids()
                    if run.state in ("Success", "Failed") and settled:
                        break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"run {run_id} did not end (it is {run.state})")
                    time.sleep(0.01)
                if run.state != "Success":
                    raise RuntimeError(f"run {run_id} ended {run.state}: {run.state_message}")
                return run_id

            for _ in range(3):  # warm up: connections, the watch streams, the server's caches
                one_run()
            time.sleep(0.5)
            k8s_before, server_before = k8s_calls.calls, server_calls.calls
            del k8s_paths[:]
            ids = [one_run() for _ in range(runs)]
            time.sleep(0.5)  # the agent's last watch events
            k8s_used, server_used = k8s_calls.calls - k8s_before, server_calls.calls - server_before
            overhead = [(created[i] - claimed[i]) * 1000 for i in ids]
            steps = {
                "claim_to_deploy_ms": summary([(deploying[i] - claimed[i]) * 1000 for i in ids]),
                "deploy_to_create_call_ms": summary([(creating[i] - deploying[i]) * 1000 for i in ids]),
                "create_call_ms": summary([(created[i] - creating[i]) * 1000 for i in ids]),
            }
            baseline = baseline_create(cluster.kubeconfig, jobs[-1], runs)
    finally:
        agent.stop()
        thread.join(30)
        cleanup.close()
    claim = summary(overhead)
    results = {
        "runs": runs,
        "claim_to_create_ms": claim,
        "steps": steps,
        "baseline_create_ms": summary(baseline),
        "overhead_beyond_create_ms": round(claim["median"] - statistics.median(baseline), 2),
        "k8s_api_calls_per_run": round(k8s_used / runs, 2),
        "k8s_api_calls": dict(collections.Counter(k8s_paths)),
        "server_api_calls_per_run": round(server_used / runs, 2),
        "targets": {
            "claim_to_create_median_ms_at_most_50": claim["median"] <= 50,
            "k8s_api_calls_per_run_at_most_10": k8s_used / runs <= 10,
        },
    }
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
