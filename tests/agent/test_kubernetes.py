"""KubernetesAgent against the Kubernetes API emulator and its pod runner (``tests/k8s/``).

The agent talks to the emulator with the real ``kubernetes`` client over HTTP, as to a
cluster; the pod runner runs each job's pod on the real Docker engine of the tests, in the
agent tests' image (headwater from this tree plus the stand-in, ``docker_image.py``), with the
session's temp folder mounted at the same path (a ``hostPath`` volume of the job template), so
what the stand-in writes reaches the test. Everything the agent creates is validated against
the Kubernetes schema by the emulator. First the agent contract, then Kubernetes' own cases.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from headwater.agent.kubernetes import KubernetesAgent
from headwater.client import Client
from headwater.kube import jobs as manifests
from headwater.server.process import ServerProcess

from .contract import AgentContract
from .docker_image import STANDIN_COMMAND
from .helpers import FAST, running, unique, wait_for
from .test_docker import agent_image, flow_id, project, register, shared_tmp  # noqa: F401  (fixtures, shared)


def template(folder: str) -> dict[str, Any]:
    """A job template mounting the session's temp root at the same path (where the stand-in writes)."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "from-template", "labels": {"team": "data"}},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "flow", "volumeMounts": [{"name": "shared", "mountPath": folder}]},
                    ],
                    "volumes": [{"name": "shared", "hostPath": {"path": folder}}],
                }
            }
        },
    }


def kubernetes_agent(cluster: Any, server: ServerProcess, folder: str, **kwargs: Any) -> KubernetesAgent:
    """A KubernetesAgent on the emulator whose jobs run the stand-in, with ``folder`` mounted at its own path."""
    kwargs.setdefault("settings", FAST)
    kwargs.setdefault("name", unique("k8s"))
    kwargs.setdefault("job_template", template(folder))
    agent = KubernetesAgent(api_url=server.url, kubeconfig=cluster.kubeconfig, **kwargs)
    agent._command = list(STANDIN_COMMAND)
    return agent


@pytest.fixture
def batch(k8s_cluster: Any) -> Iterator[Any]:
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(str(k8s_cluster.kubeconfig), client_configuration=configuration)
    api = client.ApiClient(configuration)
    yield client.BatchV1Api(api)
    api.close()


class TestKubernetesAgent(AgentContract):
    uses_image = True
    many_runs = 6

    @pytest.fixture(autouse=True)
    def _cluster(self, k8s_cluster: Any, shared_tmp: str, agent_image: str) -> None:  # noqa: F811
        self.cluster, self.shared_tmp = k8s_cluster, shared_tmp

    def make_agent(self, server: ServerProcess, **kwargs: Any) -> KubernetesAgent:
        return kubernetes_agent(self.cluster, server, self.shared_tmp, **kwargs)


def test_the_job_is_labelled_named_and_carries_the_run_s_variables(
    k8s_cluster: Any, server: ServerProcess, client: Client, flow_id: str, shared_tmp: str, batch: Any  # noqa: F811
) -> None:
    label = unique("label")
    run_id = client.create_flow_run(flow_id, labels=[label])
    dump = Path(shared_tmp) / f"{label}.env.json"
    agent = kubernetes_agent(k8s_cluster, server, shared_tmp, labels=[label], service_account_name="runner",
                             env_vars={"STANDIN_DUMP_ENV": str(dump)})  # fmt: skip
    with running(agent):
        assert client.wait_for_flow_run(run_id, timeout=60).state == "Success"
        (job,) = batch.list_namespaced_job("default", label_selector=f"{manifests.LABEL_FLOW_RUN_ID}={run_id}").items
    labels = job.metadata.labels
    assert labels[manifests.LABEL_AGENT_NAME] == agent.name and labels[manifests.LABEL_AGENT_ID] == agent.agent_id
    assert labels["team"] == "data"  # the template's own labels stay
    assert job.metadata.name.startswith(f"headwater-{run_id[:8]}-")
    assert job.spec.backoff_limit == 0 and job.spec.ttl_seconds_after_finished == 600
    pod = job.spec.template.spec
    assert pod.restart_policy == "Never" and pod.service_account_name == "runner"
    env = {e.name: e.value for e in pod.containers[0].env}
    assert env["HEADWATER__CONTEXT__FLOW_RUN_ID"] == run_id
    assert env["HEADWATER__CONTEXT__NAMESPACE"] == "default"
    assert json.loads(env["HEADWATER__CONTEXT__JOB_LABELS"])[manifests.LABEL_FLOW_RUN_ID] == run_id
    assert [e.name for e in pod.containers[0].env].count("HEADWATER__API__URL") == 1
    seen = json.loads(dump.read_text())  # what the flow-run process saw in its pod
    assert seen["HEADWATER__CONTEXT__SERVICE_ACCOUNT"] == "runner"  # from the downward API: a next hop's default
    assert seen["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"  # the in-cluster configuration, as a kubelet gives it
    assert not k8s_cluster.emulator.invalid  # everything the agent sent fits the Kubernetes schema


def test_a_missing_permission_keeps_the_agent_from_claiming_and_says_which(
    k8s_cluster: Any, server: ServerProcess, client: Client, flow_id: str, shared_tmp: str  # noqa: F811
) -> None:
    emulator = k8s_cluster.emulator
    agent = kubernetes_agent(k8s_cluster, server, shared_tmp, labels=[unique("label")])
    emulator.forbid("list", "jobs")
    try:
        reason = agent.ready()
    finally:
        emulator.forbidden.clear()
    assert reason is not None
    assert "403 Forbidden" in reason and 'cannot list resource "jobs" in API group "batch"' in reason
    assert "headwater agent kubernetes install" in reason
    assert agent.ready() is None


# -- what hurt the anchors' users -----------------------------------------------------------------


def _with(base: dict[str, Any], **pod: Any) -> dict[str, Any]:
    """``base`` (a job template) with more pod spec fields, and pod annotations under ``annotations``."""
    job = json.loads(json.dumps(base))
    annotations = pod.pop("annotations", None)
    job["spec"]["template"]["spec"].update(pod)
    if annotations:
        job["spec"]["template"].setdefault("metadata", {})["annotations"] = annotations
    return job


def _pods(k8s_cluster: Any, run_id: str) -> list[Any]:
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(str(k8s_cluster.kubeconfig), client_configuration=configuration)
    with client.ApiClient(configuration) as api:
        selector = f"{manifests.LABEL_FLOW_RUN_ID}={run_id}"
        return list(client.CoreV1Api(api).list_namespaced_pod("default", label_selector=selector).items)


def test_an_image_that_cant_be_pulled_fails_the_run_after_the_grace_and_deletes_the_job(
    k8s_cluster: Any, server: ServerProcess, client: Client, project: str, shared_tmp: str, batch: Any,  # noqa: F811
    docker_registry: Any,
) -> None:
    missing = f"{docker_registry.address}/headwater-absent:1"
    flow = register(server, project, missing)
    label = unique("label")
    run_id = client.create_flow_run(flow, labels=[label])
    settings = FAST.model_copy(update={"image_pull_grace": 2.0})
    with running(kubernetes_agent(k8s_cluster, server, shared_tmp, labels=[label], settings=settings)):
        wait_for(lambda: client.get_flow_run(run_id).state == "Submitted", 30, "the claim")
        time.sleep(1.0)
        assert client.get_flow_run(run_id).state == "Submitted"  # within the grace: still waiting
        run = client.wait_for_flow_run(run_id, timeout=60)
        wait_for(lambda: not batch.list_namespaced_job("default", label_selector=f"{manifests.LABEL_FLOW_RUN_ID}="
                                                       f"{run_id}").items, 20, "the job's deletion")  # fmt: skip
    message = run.state_message or ""
    assert run.state == "Failed", message
    assert "could not pull its image for 2s (agent.image_pull_grace)" in message
    assert "ErrImagePull" in message or "ImagePullBackOff" in message
    logs = [r.message for r in client.get_flow_run_logs(run_id)]
    assert any(f'Failed to pull image "{missing}"' in line for line in logs), logs


def test_a_pod_waiting_for_a_node_stays_submitted_with_its_events_in_the_log_until_it_is_scheduled(
    k8s_cluster: Any, server: ServerProcess, client: Client, flow_id: str, shared_tmp: str  # noqa: F811
) -> None:
    pool = unique("pool")
    label = unique("label")
    run_id = client.create_flow_run(flow_id, labels=[label])
    job = _with(template(shared_tmp), nodeSelector={"headwater.test/pool": pool})
    with running(kubernetes_agent(k8s_cluster, server, shared_tmp, labels=[label], job_template=job)):
        def scheduling_logged() -> bool:
            return any("FailedScheduling" in r.message for r in client.get_flow_run_logs(run_id))

        wait_for(scheduling_logged, 30, "the scheduling event in the run's log")
        time.sleep(1)
        assert client.get_flow_run(run_id).state == "Submitted"  # not failed for waiting
        k8s_cluster.runner.node_labels["headwater.test/pool"] = pool  # a node with that label arrives
        try:
            run = client.wait_for_flow_run(run_id, timeout=60)
        finally:
            k8s_cluster.runner.node_labels.pop("headwater.test/pool", None)
    assert run.state == "Success", run.state_message


def test_an_oom_killed_container_fails_the_run_with_the_reason_and_its_last_lines(
    k8s_cluster: Any, server: ServerProcess, client: Client, flow_id: str, shared_tmp: str  # noqa: F811
) -> None:
    label = unique("label")
    run_id = client.create_flow_run(flow_id, labels=[label])
    job = _with(template(shared_tmp), annotations={"headwater.test/oom-killed": "true"})
    agent = kubernetes_agent(k8s_cluster, server, shared_tmp, labels=[label], job_template=job,
                             env_vars={"STANDIN_EXIT": "137"})  # fmt: skip
    with running(agent):
        run = client.wait_for_flow_run(run_id, timeout=60)
    message = run.state_message or ""
    assert run.state == "Failed" and "exited with code 137 (OOMKilled)" in message, message


def test_an_evicted_pod_fails_the_run_with_the_reason(
    k8s_cluster: Any, server: ServerProcess, client: Client, flow_id: str, shared_tmp: str  # noqa: F811
) -> None:
    label = unique("label")
    run_id = client.create_flow_run(flow_id, labels=[label])
    agent = kubernetes_agent(k8s_cluster, server, shared_tmp, labels=[label], env_vars={"STANDIN_SLEEP": "60"})
    with running(agent):
        wait_for(lambda: client.get_flow_run(run_id).state == "Running", 30, "the run starting")
        (pod,) = _pods(k8s_cluster, run_id)
        k8s_cluster.runner.evict("default", pod.metadata.name)
        run = client.wait_for_flow_run(run_id, timeout=30)
    message = run.state_message or ""
    assert run.state == "Failed" and "was evicted (The node was low on resource: memory.)" in message, message


def test_a_job_deleted_by_hand_fails_the_run(
    k8s_cluster: Any, server: ServerProcess, client: Client, flow_id: str, shared_tmp: str, batch: Any  # noqa: F811
) -> None:
    label = unique("label")
    run_id = client.create_flow_run(flow_id, labels=[label])
    agent = kubernetes_agent(k8s_cluster, server, shared_tmp, labels=[label], env_vars={"STANDIN_SLEEP": "60"})
    with running(agent):
        wait_for(lambda: client.get_flow_run(run_id).state == "Running", 30, "the run starting")
        (job,) = batch.list_namespaced_job("default", label_selector=f"{manifests.LABEL_FLOW_RUN_ID}={run_id}").items
        batch.delete_namespaced_job(job.metadata.name, "default", propagation_policy="Background")
        run = client.wait_for_flow_run(run_id, timeout=30)
    assert run.state == "Failed", run.state_message
    message = run.state_message or ""
    assert f"its Job {job.metadata.name} was deleted before the run ended" in message, message


def test_finished_jobs_go_after_their_ttl(
    k8s_cluster: Any, server: ServerProcess, client: Client, flow_id: str, shared_tmp: str, batch: Any,  # noqa: F811
    settings_env: Any,
) -> None:
    settings_env(KUBERNETES__JOB_TTL="2")
    label = unique("label")
    run_id = client.create_flow_run(flow_id, labels=[label])
    selector = f"{manifests.LABEL_FLOW_RUN_ID}={run_id}"
    with running(kubernetes_agent(k8s_cluster, server, shared_tmp, labels=[label])) as agent:
        assert client.wait_for_flow_run(run_id, timeout=60).state == "Success"
        (job,) = batch.list_namespaced_job("default", label_selector=selector).items
        assert job.spec.ttl_seconds_after_finished == 2
        wait_for(lambda: not batch.list_namespaced_job("default", label_selector=selector).items, 20, "the TTL")
        wait_for(lambda: not _pods(k8s_cluster, run_id), 10, "the pods going with the job")
        wait_for(lambda: run_id not in agent._runs, 30, "the agent forgetting the run")


def test_a_restarted_agent_finds_its_jobs_and_settles_them(
    k8s_cluster: Any, server: ServerProcess, client: Client, flow_id: str, shared_tmp: str  # noqa: F811
) -> None:
    label = unique("label")
    name = unique("k8s-restarting")
    run_id = client.create_flow_run(flow_id, labels=[label])
    env = {"STANDIN_SLEEP": "2", "STANDIN_EXIT": "3"}
    with running(kubernetes_agent(k8s_cluster, server, shared_tmp, labels=[label], name=name, env_vars=env)):
        wait_for(lambda: client.get_flow_run(run_id).state == "Running", 30, "the run starting")
    assert client.get_flow_run(run_id).state == "Running"  # the job goes on without its agent
    again = kubernetes_agent(k8s_cluster, server, shared_tmp, labels=[unique("other")], name=name)
    with running(again):
        run = client.wait_for_flow_run(run_id, timeout=60)
    assert run.state == "Failed" and "exited with code 3" in (run.state_message or ""), run.state_message


def test_two_agents_in_one_namespace_never_act_on_each_others_jobs(
    k8s_cluster: Any, server: ServerProcess, client: Client, flow_id: str, shared_tmp: str  # noqa: F811
) -> None:
    mine, theirs = unique("mine"), unique("theirs")
    run_id = client.create_flow_run(flow_id, labels=[mine])
    first = kubernetes_agent(k8s_cluster, server, shared_tmp, labels=[mine], env_vars={"STANDIN_SLEEP": "1"})
    second = kubernetes_agent(k8s_cluster, server, shared_tmp, labels=[theirs])
    with running(first), running(second):
        wait_for(lambda: first.deployed_flow_run_ids() == {run_id}, 30, "the first agent's job")
        assert client.wait_for_flow_run(run_id, timeout=60).state == "Success"
        assert second._runs == {} and second.deployed_flow_run_ids() == set()
    assert client.get_flow_run(run_id).agent_id == first.agent_id


# -- bad input ------------------------------------------------------------------------------------


def test_no_kubeconfig_and_not_in_a_cluster_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from headwater.kube.client import KubernetesUnavailable

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    with pytest.raises(KubernetesUnavailable, match=r"not running in a pod .* no kubeconfig at .*absent"):
        KubernetesAgent(api_url="http://127.0.0.1:9")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "can't be read"),
        ("a: [1", "is not valid YAML"),
        ("kind: Pod\nspec: {}", "is a Pod, not a Job"),
        ("kind: Job\nspec: {template: {spec: {containers: []}}}", "has no containers"),
        ("kind: Job\n---\nkind: Job\n", "must hold one YAML document"),
    ],
)
def test_a_bad_job_template_is_a_clear_error(
    k8s_cluster: Any, tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "job.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=message):
        KubernetesAgent(api_url="http://127.0.0.1:9", kubeconfig=k8s_cluster.kubeconfig, job_template=path)


# -- running the agent in a cluster --------------------------------------------------------------------


def test_install_prints_least_privilege_manifests_that_pass_the_kubernetes_schema() -> None:
    import subprocess
    import sys

    import kubernetes_validate
    import yaml

    done = subprocess.run(
        [sys.executable, "-m", "headwater", "agent", "kubernetes", "install", "--namespace", "flows", "-l", "k8s",
         "--token-secret", "agent-token", "--run-service-account", "headwater-runs", "--image", "reg/hw:1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    documents = list(yaml.safe_load_all(done.stdout))
    assert [d["kind"] for d in documents] == [
        "ServiceAccount", "Role", "RoleBinding", "ServiceAccount", "Role", "RoleBinding", "Deployment"
    ]  # fmt: skip
    for document in documents:
        kubernetes_validate.validate(document, "1.36", strict=True)
        assert document["metadata"]["namespace"] == "flows"
    agent_role = documents[1]
    granted = {(res, verb) for rule in agent_role["rules"] for res in rule["resources"] for verb in rule["verbs"]}
    assert granted == {
        *(("jobs", v) for v in ("create", "get", "list", "watch", "delete")),
        ("pods", "get"), ("pods", "list"), ("pods", "watch"), ("pods/log", "get"),
        ("events", "get"), ("events", "list"), ("events", "watch"),
    }  # fmt: skip
    container = documents[-1]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "reg/hw:1"
    assert container["command"] == ["headwater", "agent", "kubernetes", "start", "--namespace", "flows", "--name",
                                    "headwater-agent", "--label", "k8s", "--service-account-name", "headwater-runs"]
    token = next(e for e in container["env"] if e["name"] == "HEADWATER__API__TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {"name": "agent-token", "key": "token"}
    assert documents[-1]["spec"]["template"]["spec"]["serviceAccountName"] == "headwater-agent"
