"""Fargate agent benchmark (issue 12). Prints one JSON document.

    .venv/bin/python bench/fargate_agent.py [--quick]

A FargateAgent (in this process, so its calls can be counted from outside it) against moto's
server (``moto_server``, real HTTP, in a process of its own, as AWS is) and a headwater server
runs ``--runs`` flow runs one after another. ECS's side is played here, at once: for each task
the agent runs, the run is moved to Running then Success through the API (what the flow-run
process would report) and the task is stopped (``stop_task``), so every run is one that
succeeds, seen by the agent through its poll of its running tasks.

- ``claim_to_run_task_ms``: from the agent's claim call returning a run to its ``run_task``
  returning, median and p90. Target ≤ 50 ms median.
- ``baseline_run_task_ms``: the same ``run_task`` call made by a bare boto3 client against the
  same server (the API's own cost, which the figure above includes).
- ``aws_calls_per_run``: HTTP requests the agent's ECS client sent per run (every attempt,
  counted by botocore's ``before-send`` event), after the task definition exists (steady
  state), including the polls until every task was seen stopped; target ≤ 6.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import queue
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from headwater import Flow, task
from headwater.agent.fargate import FargateAgent
from headwater.client import Client
from headwater.config.settings import AgentSettings
from headwater.environments import LocalEnvironment
from headwater.server.process import ServerProcess
from headwater.storage import Local
from stats import summary

LABEL = "bench-fargate"
CLUSTER = "bench"
AWS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
       "AWS_EC2_METADATA_DISABLED": "true"}  # fmt: skip


@task
def one() -> int:
    return 1


class MotoProcess:
    """``moto_server`` on a free port of 127.0.0.1, its tasks never ageing by themselves."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> MotoProcess:
        command = str(Path(sys.executable).parent / "moto_server")
        if not os.path.exists(command):
            command = shutil.which("moto_server") or "moto_server"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen([command, "-H", "127.0.0.1", "-p", str(port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        body = json.dumps({"model_name": "ecs::task", "transition": {"progression": "manual", "times": 10**9}})
        request = urllib.request.Request(f"{self.url}/moto-api/state-manager/set-transition", data=body.encode(),
                                         method="POST")  # fmt: skip
        urllib.request.urlopen(request, timeout=5).read()
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


class InstantEcs:
    """The container of each task the agent runs: reports Running then Success, and the task stops."""

    def __init__(self, ecs: Any, api_url: str) -> None:
        self.ecs = ecs
        self.headwater = Client(api_url)
        self.work: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> InstantEcs:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.work.put(None)
        self.thread.join(10)
        self.headwater.close()

    def _run(self) -> None:
        while (item := self.work.get()) is not None:
            run_id, task_arn = item
            run = self.headwater.set_flow_run_state(run_id, "Running")
            self.headwater.set_flow_run_state(run_id, "Success", version=run.version)
            self.ecs.stop_task(cluster=CLUSTER, task=task_arn, reason="Essential container in task exited")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer runs (a smoke run)")
    parser.add_argument("--runs", type=int, default=None, help="runs to time (default 40, --quick 8)")
    args = parser.parse_args()
    runs = args.runs or (8 if args.quick else 40)
    home = Path(tempfile.mkdtemp(prefix="hw-bench-fargate-"))
    cleanup = contextlib.ExitStack()
    moto = MotoProcess()
    cleanup.callback(moto.stop)
    moto.start()
    os.environ.update({**AWS, "AWS_ENDPOINT_URL": moto.url})
    import boto3

    bare = boto3.session.Session().client("ecs")
    ec2 = boto3.session.Session().client("ec2")
    bare.create_cluster(clusterName=CLUSTER)
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    group = ec2.describe_security_groups()["SecurityGroups"][0]["GroupId"]
    server = ServerProcess(home, f"sqlite:///{home / 'hw.db'}").start()
    cleanup.callback(server.stop)
    instant = InstantEcs(bare, server.url).start()
    cleanup.callback(instant.stop)
    settings = AgentSettings(claim_wait=5.0, poll_interval=0.1, heartbeat_interval=30.0)
    agent = FargateAgent(cluster=CLUSTER, labels=[LABEL], name="bench-fargate-agent", subnets=[subnet],
                         security_groups=[group], api_url=server.url, settings=settings, poll_interval=1.0,
                         task_definition_kwargs={"containerDefinitions": [{"memory": 512}]})  # fmt: skip
    claimed: dict[str, float] = {}
    returned: dict[str, float] = {}
    calls: list[str] = []
    calls_lock = threading.Lock()

    def on_send(**kwargs: Any) -> None:
        with calls_lock:
            calls.append(kwargs["request"].headers.get("X-Amz-Target", b"").decode().rsplit(".", 1)[-1])

    agent.ecs.meta.events.register("before-send.ecs", on_send)
    original_run_task = agent.ecs.run_task
    last_call: dict[str, Any] = {}

    def run_task(**kwargs: Any) -> Any:
        answer = original_run_task(**kwargs)
        run_id = next(t["value"] for t in kwargs["tags"] if t["key"] == "headwater.flow-run-id")
        returned[run_id] = time.perf_counter()
        last_call.update(kwargs)
        instant.work.put((run_id, answer["tasks"][0]["taskArn"]))
        return answer

    agent.ecs.run_task = run_task  # type: ignore[method-assign]
    thread = threading.Thread(target=agent.start, daemon=True)
    try:
        with Client(server.url) as client:
            client.create_project("bench")
            environment = LocalEnvironment(labels=[LABEL], metadata={"image": "bench/flow:1"})
            flow = Flow("fargate-bench", environment=environment,
                        storage=Local(directory=str(home / "flows"), add_default_labels=False))  # fmt: skip
            with flow:
                one()
            with contextlib.redirect_stdout(sys.stderr):  # stdout is the JSON document only
                flow_id = client.register(flow, "bench")
            thread.start()
            deadline = time.monotonic() + 30
            while agent.agent_id is None:
                if time.monotonic() > deadline or not thread.is_alive():
                    raise RuntimeError("the agent did not start")
                time.sleep(0.01)
            original_claim = agent.client.claim_flow_runs

            def claim(*a: Any, **kw: Any) -> Any:
                found = original_claim(*a, **kw)
                for run in found:
                    claimed[run.id] = time.perf_counter()
                return found

            agent.client.claim_flow_runs = claim  # type: ignore[method-assign]

            def one_run() -> str:
                run_id = client.create_flow_run(flow_id)
                deadline = time.monotonic() + 60
                while (run := client.get_flow_run(run_id)).state not in ("Success", "Failed"):
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"run {run_id} did not end (it is {run.state})")
                    time.sleep(0.01)
                if run.state != "Success":
                    raise RuntimeError(f"run {run_id} ended {run.state}: {run.state_message}")
                return run_id

            def settled() -> None:
                deadline = time.monotonic() + 60
                while agent.deployed_flow_run_ids():
                    if time.monotonic() > deadline:
                        raise TimeoutError("the agent did not see its tasks stop")
                    time.sleep(0.05)

            for _ in range(3):  # warm up: the task definition, connections, the server's caches
                one_run()
            settled()
            with calls_lock:
                del calls[:]
            ids = [one_run() for _ in range(runs)]
            settled()
            time.sleep(1.2)  # one more poll: it finds nothing left to watch, and makes no call
            with calls_lock:
                used = list(calls)
            overhead = [(returned[i] - claimed[i]) * 1000 for i in ids]
            baseline = []
            for _ in range(runs):
                began = time.perf_counter()
                bare.run_task(**{**last_call, "tags": [{"key": "bench", "value": "baseline"}]})
                baseline.append((time.perf_counter() - began) * 1000)
    finally:
        agent.stop()
        thread.join(30)
        cleanup.close()
    claim = summary(overhead)
    results = {
        "runs": runs,
        "claim_to_run_task_ms": claim,
        "baseline_run_task_ms": summary(baseline),
        "overhead_beyond_run_task_ms": round(claim["median"] - statistics.median(baseline), 2),
        "aws_calls_per_run": round(len(used) / runs, 2),
        "aws_calls": dict(collections.Counter(used)),
        "targets": {
            "claim_to_run_task_median_ms_at_most_50": claim["median"] <= 50,
            "aws_calls_per_run_at_most_6": len(used) / runs <= 6,
        },
    }
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
