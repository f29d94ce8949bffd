"""KubernetesJobEnvironment: the contract, the Job it makes, its bad input, and its Job on the API emulator.

The whole life (an agent's job starting this environment's job, which runs the flow) is in
``tests/acceptance/test_kubernetes.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from headwater.config.settings import load_settings
from headwater.environments import KubernetesJobEnvironment, environment_from_spec
from headwater.kube import jobs as manifests
from headwater.kube.jobs import JobSpecError

from .contract import EnvironmentContract

SPEC = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"name": "etl-job", "labels": {"team": "data"}},
    "spec": {
        "template": {
            "spec": {
                "containers": [
                    {"name": "flow", "image": "registry.example/etl:1", "args": ["ignored"],
                     "env": [{"name": "HEADWATER__API__URL", "value": "http://wrong"}, {"name": "KEEP", "value": "1"}],
                     "resources": {"limits": {"memory": "1Gi"}}},
                    {"name": "sidecar", "image": "busybox:1"},
                ],
            }
        }
    },
}  # fmt: skip


def write_spec(folder: Path, spec: Any = SPEC) -> Path:
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(spec) if not isinstance(spec, str) else spec)
    return path


def run_settings(**context: Any) -> Any:
    values = {"flow_run_id": "3f1c2d3e-aaaa-bbbb-cccc-000000000000", "flow_id": "f1", "namespace": "flows",
              "image": "registry.example/etl:9",
              "job_labels": {manifests.LABEL_AGENT_NAME: "k8s-1", manifests.LABEL_FLOW_RUN_ID: "x"}}  # fmt: skip
    values.update(context)
    return load_settings(api={"url": "http://api:4200", "token": "s3cret"}, context=values)


class TestKubernetesJobEnvironment(EnvironmentContract):
    def make_environment(self, tmp_path: Path, **kwargs: Any) -> KubernetesJobEnvironment:
        return KubernetesJobEnvironment(job_spec_file=write_spec(tmp_path), **kwargs)


def test_the_spec_is_read_when_made_and_travels_in_the_json_spec(tmp_path: Path) -> None:
    path = write_spec(tmp_path)
    env = KubernetesJobEnvironment(job_spec_file=path, unique_job_name=True, labels=["k8s"])
    path.unlink()  # the file need not exist where the flow runs

    spec = env.serialize()

    assert spec["kind"] == "kubernetes-job" and spec["job_spec"] == SPEC and spec["unique_job_name"] is True
    again = environment_from_spec(json.loads(json.dumps(spec)))
    assert isinstance(again, KubernetesJobEnvironment) and again.job_spec == SPEC and again.labels == {"k8s"}


def test_the_job_runs_the_flow_run_command_with_the_run_s_variables_by_name(tmp_path: Path) -> None:
    env = KubernetesJobEnvironment(job_spec_file=write_spec(tmp_path))

    job = env.job(run_settings())

    assert job["metadata"]["name"] == "etl-job"
    labels = job["metadata"]["labels"]
    assert labels["team"] == "data" and labels[manifests.LABEL_AGENT_NAME] == "k8s-1"
    assert labels[manifests.LABEL_FLOW_RUN_ID] == "3f1c2d3e-aaaa-bbbb-cccc-000000000000"  # the run's, not a carried one
    assert labels[manifests.LABEL_ROLE] == "second-hop"
    pod_labels = job["spec"]["template"]["metadata"]["labels"]
    assert pod_labels == {k: v for k, v in labels.items() if k != "team"}  # its pods carry the run's labels too
    flow, sidecar = job["spec"]["template"]["spec"]["containers"]
    assert flow["command"] == manifests.FLOW_RUN_COMMAND and "args" not in flow
    assert flow["image"] == "registry.example/etl:1"  # the spec's image wins over the run's
    env_vars = [(e["name"], e["value"]) for e in flow["env"]]
    names = [name for name, _ in env_vars]
    assert len(names) == len(set(names))  # overridden by name, never duplicated
    values = dict(env_vars)
    assert values["HEADWATER__API__URL"] == "http://api:4200" and values["KEEP"] == "1"
    assert values["HEADWATER__API__TOKEN"] == "s3cret"
    assert values["HEADWATER__CONTEXT__FLOW_RUN_ID"] == "3f1c2d3e-aaaa-bbbb-cccc-000000000000"
    assert values["HEADWATER__CONTEXT__NAMESPACE"] == "flows"
    assert values["HEADWATER__CONTEXT__IMAGE"] == "registry.example/etl:1"
    assert values["HEADWATER__CONTEXT__SECOND_HOP"] == "true"
    assert json.loads(values["HEADWATER__CONTEXT__JOB_LABELS"])[manifests.LABEL_AGENT_NAME] == "k8s-1"
    assert flow["resources"] == {"limits": {"memory": "1Gi"}} and sidecar == {"name": "sidecar", "image": "busybox:1"}
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    import kubernetes_validate

    kubernetes_validate.validate(job, "1.36", strict=True)


def test_unique_job_names_and_the_default_spec_in_the_run_s_image(tmp_path: Path) -> None:
    env = KubernetesJobEnvironment(unique_job_name=True)
    first, second = env.job(run_settings()), env.job(run_settings())
    assert first["metadata"]["name"] != second["metadata"]["name"]
    assert first["metadata"]["name"].startswith("headwater-flow-run-3f1c2d3e-")
    assert first["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/etl:9"
    with pytest.raises(JobSpecError, match="has no image, and the flow names none"):
        env.job(run_settings(image=None))


def test_the_next_hop_runs_under_the_run_s_service_account_unless_its_spec_names_one(tmp_path: Path) -> None:
    settings = run_settings(service_account="headwater-run")
    plain = KubernetesJobEnvironment().job(settings)
    assert plain["spec"]["template"]["spec"]["serviceAccountName"] == "headwater-run"
    spec = tmp_path / "own.yaml"
    spec.write_text(yaml.safe_dump({"kind": "Job", "metadata": {"name": "own"}, "spec": {"template": {"spec": {
        "serviceAccountName": "etl", "containers": [{"name": "flow"}]}}}}))  # fmt: skip
    own = KubernetesJobEnvironment(job_spec_file=spec).job(settings)
    assert own["spec"]["template"]["spec"]["serviceAccountName"] == "etl"
    assert "serviceAccountName" not in KubernetesJobEnvironment().job(run_settings())["spec"]["template"]["spec"]


def test_execute_outside_a_flow_run_process_says_so(tmp_path: Path) -> None:
    env = KubernetesJobEnvironment()
    with pytest.raises(ValueError, match=r"works only in a flow-run process .* call environment.run\(flow\)"):
        env.job(load_settings())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, r"job spec file '.*job.yaml' can't be read"),
        ("kind: Job\nspec: [", "is not valid YAML"),
        ("kind: Deployment\n", "is a Deployment, not a Job"),
        ("kind: Job\nspec:\n  template:\n    spec: {containers: []}\n", "has no containers"),
        ("kind: Job\nmetadata: {name: Bad_Name}\nspec: {template: {spec: {containers: [{name: c}]}}}\n",
         "'Bad_Name' is not a valid Kubernetes name"),
    ],
)  # fmt: skip
def test_a_bad_job_spec_file_is_a_clear_error(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "job.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(JobSpecError, match=message):
        KubernetesJobEnvironment(job_spec_file=path)


def test_a_job_name_that_is_taken_is_a_clear_error_unless_names_are_unique(
    k8s_cluster: Any, tmp_path: Path, settings_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from headwater import Flow

    monkeypatch.setenv("KUBECONFIG", str(k8s_cluster.kubeconfig))
    settings_env(CONTEXT__FLOW_RUN_ID="run-1", CONTEXT__NAMESPACE="default", CONTEXT__IMAGE="base:1")
    name = f"taken-{tmp_path.name[-6:].lower().replace('_', '-')}".strip("-")
    spec = {**SPEC, "metadata": {"name": name}}
    env = KubernetesJobEnvironment(job_spec_file=write_spec(tmp_path, spec))
    flow = Flow("k8s")

    assert env.execute(flow) is None  # the Job is made; the run goes on there
    taken = rf"a Job named '{name}' already exists in namespace 'default' .*unique_job_name=True"
    with pytest.raises(ValueError, match=taken):
        env.execute(flow)
    unique = KubernetesJobEnvironment(job_spec_file=write_spec(tmp_path, spec), unique_job_name=True)
    assert unique.execute(flow) is None and unique.execute(flow) is None
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(str(k8s_cluster.kubeconfig), client_configuration=configuration)
    with client.ApiClient(configuration) as api:
        selector = f"{manifests.LABEL_FLOW_RUN_ID}=run-1"
        jobs = client.BatchV1Api(api).list_namespaced_job("default", label_selector=selector)
        names = sorted(j.metadata.name for j in jobs.items if j.metadata.name.startswith(name))
        for job in names:
            client.BatchV1Api(api).delete_namespaced_job(job, "default")
    assert len(names) == 3 and name in names
    assert not k8s_cluster.emulator.invalid
