"""DaskKubernetesEnvironment: the contract, its arguments and specs, and its cluster of worker pods.

``run(flow)`` runs here as it would in the scheduler's pod: the scheduler in this process, the
workers as pods on the Kubernetes API emulator, which the pod runner runs on the real Docker
engine in an image with headwater and Dask (``docker_image.py`` with Dask's packages), on the
host network. The whole life through an agent is in ``tests/acceptance/test_kubernetes.py``.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from headwater import Flow, task
from headwater.config.settings import load_settings
from headwater.environments import environment_from_spec
from headwater.kube import jobs as manifests
from headwater.kube.jobs import JobSpecError

from .contract import EnvironmentContract

distributed = pytest.importorskip("distributed", reason="Dask distributed is not installed")

@pytest.fixture
def in_scheduler_pod(k8s_cluster: Any, dask_image: str, settings_env: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """This process as the scheduler's pod of a run: the run's context, the API, the pod's IP."""
    run_id = f"dask-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("KUBECONFIG", str(k8s_cluster.kubeconfig))
    monkeypatch.setenv("HEADWATER__CONTEXT__POD_IP", "127.0.0.1")
    settings_env(CONTEXT__FLOW_RUN_ID=run_id, CONTEXT__NAMESPACE="default", CONTEXT__IMAGE=dask_image)
    return run_id


def make(**kwargs: Any) -> Any:
    from headwater.environments.dask_kubernetes import DaskKubernetesEnvironment

    return DaskKubernetesEnvironment(**kwargs)


def worker_pods(k8s_cluster: Any, run_id: str) -> list[Any]:
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(str(k8s_cluster.kubeconfig), client_configuration=configuration)
    selector = f"{manifests.LABEL_FLOW_RUN_ID}={run_id},{manifests.LABEL_ROLE}=dask-worker"
    with client.ApiClient(configuration) as api:
        return list(client.CoreV1Api(api).list_namespaced_pod("default", label_selector=selector).items)


class TestDaskKubernetesEnvironment(EnvironmentContract):
    """The contract's runs start a real cluster: one worker pod, the scheduler here."""

    @pytest.fixture(autouse=True)
    def _pod(self, in_scheduler_pod: str) -> None:
        self.run_id = in_scheduler_pod

    def make_environment(self, tmp_path: Path, **kwargs: Any) -> Any:
        return make(min_workers=1, max_workers=1, **kwargs)


@task
def where(i: int) -> str:
    time.sleep(1.5)
    return os.environ.get("DASK_WORKER_POD", "not in a worker pod")


@task
def nothing() -> None:
    raise ValueError("broken on purpose")


def test_tasks_run_on_worker_pods_which_are_deleted_when_the_run_ends(k8s_cluster: Any, in_scheduler_pod: str) -> None:
    with Flow("spread") as flow:
        for i in range(4):
            where(i)

    state = make(min_workers=2, max_workers=2).run(flow)

    assert state.is_successful(), state
    pods = {s.result for s in state.result.values()}
    assert len(pods) == 2 and all(p.startswith(f"headwater-{in_scheduler_pod[:8]}-dask-worker-") for p in pods), pods
    assert worker_pods(k8s_cluster, in_scheduler_pod) == []  # every worker pod deleted when the run ended


def test_worker_pods_are_deleted_when_the_flow_fails_too(k8s_cluster: Any, in_scheduler_pod: str) -> None:
    with Flow("fails") as flow:
        nothing()

    state = make(min_workers=1, max_workers=2).run(flow)

    assert state.is_failed()
    assert worker_pods(k8s_cluster, in_scheduler_pod) == []


def test_the_default_specs_carry_work_stealing_and_the_pull_secret_and_the_run(tmp_path: Path) -> None:
    env = make(min_workers=0, max_workers=3, work_stealing=False, image_pull_secret="regcred")
    settings = load_settings(
        api={"url": "http://api:4200"},
        context={"flow_run_id": "run-1234567", "namespace": "flows", "image": "reg/etl:1",
                 "job_labels": {manifests.LABEL_AGENT_NAME: "k8s-1"}},
    )  # fmt: skip

    job = env.job(settings)
    pod = env.worker_pod(settings, "w-1", "tcp://10.0.0.5:8786", worker_name="3")

    import kubernetes_validate

    kubernetes_validate.validate(job, "1.36", strict=True)
    kubernetes_validate.validate({**pod, "metadata": {**pod["metadata"], "namespace": "flows"}}, "1.36", strict=True)
    scheduler = job["spec"]["template"]["spec"]
    assert scheduler["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    env_of = {e["name"]: e for e in scheduler["containers"][0]["env"]}
    assert env_of["DASK_DISTRIBUTED__SCHEDULER__WORK_STEALING"]["value"] == "False"
    assert env_of["HEADWATER__CONTEXT__POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert job["metadata"]["labels"][manifests.LABEL_ROLE] == "dask-scheduler"
    worker = pod["spec"]["containers"][0]
    assert worker["image"] == "reg/etl:1" and worker["args"][:2] == ["dask", "worker"]
    assert worker["args"][-2:] == ["--name", "3"]  # the name the cluster scales it by
    assert {e["name"]: e.get("value") for e in worker["env"]}["DASK_SCHEDULER_ADDRESS"] == "tcp://10.0.0.5:8786"
    labels = pod["metadata"]["labels"]
    assert labels[manifests.LABEL_ROLE] == "dask-worker" and labels[manifests.LABEL_AGENT_NAME] == "k8s-1"


def test_spec_files_are_used_as_given_and_the_spec_round_trips(tmp_path: Path) -> None:
    scheduler = tmp_path / "scheduler.yaml"
    scheduler.write_text(yaml.safe_dump({"kind": "Job", "metadata": {"name": "sched"}, "spec": {"template": {"spec": {
        "containers": [{"name": "flow", "image": "mine:1"}]}}}}))  # fmt: skip
    worker = tmp_path / "worker.yaml"
    worker.write_text(yaml.safe_dump({"kind": "Pod", "metadata": {"name": "w"}, "spec": {"containers": [
        {"name": "worker", "image": "mine:1", "args": ["dask", "worker", "--nthreads", "4"]}]}}))  # fmt: skip

    with pytest.warns(DeprecationWarning, match="use|image_pull_secret"):
        env = make(scheduler_spec_file=str(scheduler), worker_spec_file=str(worker), work_stealing=False,
                   private_registry=True, docker_secret="old-secret")  # fmt: skip

    assert env.image_pull_secret == "old-secret"  # the old way still names the secret
    container = env.job_spec["spec"]["template"]["spec"]["containers"][0]
    assert "env" not in container and "imagePullSecrets" not in env.job_spec["spec"]["template"]["spec"]
    assert env.worker_spec["spec"]["containers"][0]["args"] == ["dask", "worker", "--nthreads", "4"]
    spec = env.serialize()
    assert spec["kind"] == "dask-kubernetes" and json.loads(json.dumps(spec)) == spec
    scheduler.unlink()
    worker.unlink()  # the specs travel in the environment's spec, not as files
    with pytest.warns(DeprecationWarning):
        again = environment_from_spec(spec)
    assert again.worker_spec == env.worker_spec and again.job_spec == env.job_spec


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_workers": -1}, "min_workers must be a whole number ≥ 0"),
        ({"max_workers": 0}, "max_workers must be a whole number ≥ 1"),
        ({"min_workers": 3, "max_workers": 2}, r"min_workers \(3\) is more than max_workers \(2\)"),
        ({"min_workers": 1.5}, "min_workers must be a whole number"),
    ],
)
def test_bad_worker_counts_are_clear_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make(**kwargs)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "can't be read"),
        ("kind: Job\n", "must hold one Pod"),
        ("kind: Pod\nspec: {containers: []}\n", "no containers"),
    ],
)
def test_a_bad_worker_spec_file_is_a_clear_error(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "worker.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(JobSpecError, match=message):
        make(worker_spec_file=str(path))


def test_worker_pod_errors_reach_the_run_s_log_with_log_k8s_errors(
    k8s_cluster: Any, in_scheduler_pod: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging

    from headwater.config import get_settings
    from headwater.environments import dask_kubernetes

    monkeypatch.setattr(dask_kubernetes, "ERROR_POLL", 0.5)
    env = make(min_workers=1, max_workers=1, log_k8s_errors=True,
               worker_spec={"kind": "Pod", "metadata": {"name": "w"}, "spec": {
                   "imagePullSecrets": [{"name": "absent-secret"}],
                   "containers": [{"name": "worker", "image": "localhost:1/no-such-image:1"}]}})  # fmt: skip
    pods = dask_kubernetes.WorkerPods(env, get_settings())
    with caplog.at_level(logging.ERROR, logger="headwater.environment"):
        pods.start()
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if "ErrImagePull" in caplog.text and "absent-secret" in caplog.text:
                    break
                time.sleep(0.2)
        finally:
            pods.close()
    assert "ErrImagePull" in caplog.text, caplog.text
    assert "FailedToRetrieveImagePullSecret" in caplog.text and "absent-secret" in caplog.text, caplog.text
    assert worker_pods(k8s_cluster, in_scheduler_pod) == []


def test_worker_pods_are_owned_by_the_scheduler_s_pod_and_go_with_it(
    k8s_cluster: Any, in_scheduler_pod: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cancel deletes the run's Job (foreground): its pod, the scheduler's, goes, and the cluster's
    # garbage collector takes the worker pods it owns, even if the scheduler never got to close them.
    from kubernetes import client, config

    from headwater.config import get_settings
    from headwater.environments import dask_kubernetes

    configuration = client.Configuration()
    config.load_kube_config(str(k8s_cluster.kubeconfig), client_configuration=configuration)
    with client.ApiClient(configuration) as api:
        core = client.CoreV1Api(api)
        owner = core.create_namespaced_pod("default", {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"scheduler-{in_scheduler_pod}"},
            "spec": {"nodeSelector": {"pool": "nowhere"},  # never scheduled: it stands for the scheduler's pod
                     "containers": [{"name": "flow", "image": "unused:1"}]}})  # fmt: skip
        monkeypatch.setenv("HEADWATER__CONTEXT__POD_NAME", owner.metadata.name)
        monkeypatch.setenv("HEADWATER__CONTEXT__POD_UID", owner.metadata.uid)
        pods = dask_kubernetes.WorkerPods(make(min_workers=1, max_workers=1), get_settings())
        pods.start()
        try:
            deadline = time.monotonic() + 30
            while not (workers := worker_pods(k8s_cluster, in_scheduler_pod)) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert workers, "no worker pod was made"
            refs = workers[0].metadata.owner_references
            assert [(r.kind, r.name, r.uid) for r in refs] == [("Pod", owner.metadata.name, owner.metadata.uid)]
            core.delete_namespaced_pod(owner.metadata.name, "default")
            deadline = time.monotonic() + 30
            while worker_pods(k8s_cluster, in_scheduler_pod) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert worker_pods(k8s_cluster, in_scheduler_pod) == []
        finally:
            pods.close()


@pytest.mark.parametrize("scheduler_logs", [False, True])
def test_scheduler_logs_decides_whether_the_scheduler_s_own_lines_reach_the_run_s_log(
    k8s_cluster: Any, in_scheduler_pod: str, caplog: pytest.LogCaptureFixture, scheduler_logs: bool
) -> None:
    import logging

    from headwater.config import get_settings
    from headwater.environments import dask_kubernetes

    names = ("distributed", "distributed.scheduler", "distributed.deploy")
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:  # as an earlier run's cluster in this process may have left them
        logging.getLogger(name).setLevel(logging.WARNING if scheduler_logs else logging.INFO)
    pods = dask_kubernetes.WorkerPods(make(min_workers=0, max_workers=1, scheduler_logs=scheduler_logs),
                                      get_settings())  # fmt: skip
    try:
        with caplog.at_level(logging.INFO):
            pods.start()
            pods.close()
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    own = [r for r in caplog.records if r.name.startswith("distributed.scheduler") and r.levelno == logging.INFO]
    assert bool(own) == scheduler_logs, [r.getMessage() for r in own]
