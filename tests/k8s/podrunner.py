"""The kubelet and the job controller of the emulated cluster: pods' containers run on the real Docker engine.

:class:`PodRunner` talks to the Kubernetes API emulator (``emulator.py``) over HTTP with the
real ``kubernetes`` client, as the components of a cluster do, and reconciles about five
times a second:

- **job controller**: a Job without a pod gets one from its template (named
  ``<job>-<5 chars>``, labelled ``job-name`` and ``controller-uid``, owned by the job); the
  job's status follows its pod (``succeeded``/``failed``, a ``Complete``/``Failed``
  condition); a finished job with ``ttlSecondsAfterFinished`` is deleted when that has passed;
  pods whose owner (a job, or a pod) is gone are deleted (the garbage collector);
- **scheduler**: a pod whose ``nodeSelector`` the one node's labels (:attr:`PodRunner.node_labels`)
  don't match stays Pending with ``PodScheduled=False``/``Unschedulable`` and a
  ``FailedScheduling`` event, until a test adds the label (as an autoscaler adds a node);
- **kubelet**: a scheduled pod's image is taken from the daemon or pulled from its registry
  (a failure: ``ErrImagePull``, then ``ImagePullBackOff``, with ``Failed``/``BackOff``
  events; a missing ``imagePullSecrets`` secret: a ``FailedToRetrieveImagePullSecret``
  event), then each container runs with its command, args and env on the host network (pod
  IP 127.0.0.1), ``fieldRef`` variables of the downward API (name, namespace, uid, pod IP,
  service account), ``hostPath`` volumes bound in, the in-cluster configuration as a kubelet
  gives it (``KUBERNETES_SERVICE_HOST``/``_PORT`` naming the emulator's HTTPS port, and the
  pod's service account's token, CA and namespace at ``/var/run/secrets/kubernetes.io/
  serviceaccount``, unless ``automountServiceAccountToken: false``), and ``resources.limits.memory`` as the
  container's memory limit; the pod's
  status follows: ``Running``, then ``Succeeded``/``Failed`` with each container's exit code
  and reason (``Completed``, ``Error``, ``OOMKilled`` — also when the pod's annotation
  :data:`OOM_ANNOTATION` asks for it, where this machine's cgroups can't enforce a limit);
  a deleted pod's containers are killed; :meth:`PodRunner.evict` evicts a pod;
- ``pods/log`` answers with the container's output.

Everything it writes goes through the emulator's schema validation too. It is the only
stand-in in the Kubernetes tests (docs/development.md).

It reconciles when something changes — a write to the API (the emulator's ``on_write``), a
container that exits (Docker's ``die`` events) — and once a second besides (TTLs, pull
back-offs), so it costs nothing while the cluster is idle; events older than a minute are
deleted, as the API server's event TTL does.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from .emulator import SERVICE_ACCOUNT_PATH, Cluster, now

logger = logging.getLogger("tests.k8s.podrunner")

#: A pod annotation: report the pod's container as OOMKilled when it exits (exit code 137).
OOM_ANNOTATION = "headwater.test/oom-killed"
#: Label put on every container the runner starts, to find (and clean up) its own.
CONTAINER_LABEL = "headwater.test/pod-uid"
NODE = "emulated-node"
#: Seconds between two pulls of an image that could not be pulled.
PULL_BACKOFF = 3.0
#: Seconds an event is kept (the API server keeps them an hour; tests need a minute).
EVENT_TTL = 60.0


@dataclass
class PodState:
    """What the runner knows of one pod (by uid)."""

    namespace: str
    name: str
    containers: dict[str, str] = field(default_factory=dict)  # container name -> docker id
    phase: str = ""
    next_pull: float = 0.0
    pull_failures: int = 0
    events: set[str] = field(default_factory=set)  # reasons already reported (once each)
    started: str = ""
    log: str | None = None


class PodRunner:
    """Plays the kubelet, scheduler, job controller and garbage collector of one node."""

    def __init__(self, cluster: Cluster, docker: Any, interval: float = 1.0) -> None:
        self.cluster = cluster
        self.docker = docker
        #: seconds between two reconciles when nothing happens (a change wakes it at once).
        self.interval = interval
        self._dirty = threading.Event()
        configuration = k8s.Configuration()
        k8s_config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=configuration)
        self.api = k8s.ApiClient(configuration)
        self.core = k8s.CoreV1Api(self.api)
        self.batch = k8s.BatchV1Api(self.api)
        #: labels of the one node; a pod's nodeSelector must match them to be scheduled.
        self.node_labels = {"kubernetes.io/hostname": NODE, "kubernetes.io/os": "linux"}
        self.pods: dict[str, PodState] = {}
        self.jobs_with_pods: set[str] = set()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="k8s-pod-runner", daemon=True)
        self._events = threading.Thread(target=self._docker_events, name="k8s-pod-runner-events", daemon=True)
        self._last_event_sweep = 0.0

    def start(self) -> PodRunner:
        assert self.cluster.emulator is not None
        self.cluster.emulator.pod_log = self.log_of
        self.cluster.emulator.on_write = self._dirty.set
        self._thread.start()
        self._events.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()
        self._thread.join(15)
        for container in self.docker.containers.list(all=True, filters={"label": CONTAINER_LABEL}):
            with contextlib.suppress(Exception):
                container.remove(force=True)

    # -- what tests call ------------------------------------------------------------------

    def log_of(self, namespace: str, name: str) -> str | None:
        """The output of the pod's first container: live while it runs, kept once it ended."""
        with self._lock:
            state = next((s for s in self.pods.values() if (s.namespace, s.name) == (namespace, name)), None)
        if state is None:
            return None
        if state.log is not None:
            return state.log
        texts = []
        for docker_id in state.containers.values():
            with contextlib.suppress(Exception):
                texts.append(self.docker.api.logs(docker_id).decode(errors="replace"))
        return "".join(texts)

    def evict(self, namespace: str, name: str, message: str = "The node was low on resource: memory.") -> None:
        """Evict a running pod as a kubelet under memory pressure does: kill it, phase Failed, reason Evicted."""
        with self._lock:
            state = next(s for s in self.pods.values() if (s.namespace, s.name) == (namespace, name))
            state.log = self.log_of_containers(state)
            for docker_id in state.containers.values():
                with contextlib.suppress(Exception):
                    self.docker.api.remove_container(docker_id, force=True)
            state.containers.clear()
            state.phase = "Failed"
        self._patch_pod(namespace, name, {"status": {"phase": "Failed", "reason": "Evicted", "message": message}})
        self._event(namespace, "Pod", name, "Evicted", message, "Warning")

    def running_pods(self) -> list[tuple[str, str]]:
        with self._lock:
            return [(s.namespace, s.name) for s in self.pods.values() if s.phase == "Running"]

    # -- the loop ---------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._dirty.wait(self.interval)
            self._dirty.clear()
            if self._stop.is_set():
                return
            try:
                self._reconcile()
            except Exception as exc:  # keep running; a test that needs it will see errors
                logger.exception("pod runner: reconcile failed")
                self.errors.append(f"{type(exc).__name__}: {exc}")

    def _docker_events(self) -> None:
        """Wake the loop when one of the runner's containers exits."""
        while not self._stop.is_set():
            try:
                for _ in self.docker.events(decode=True, filters={"event": "die", "label": CONTAINER_LABEL}):
                    self._dirty.set()
                    if self._stop.is_set():
                        return
            except Exception:
                self._stop.wait(1.0)

    def _reconcile(self) -> None:
        jobs = {j["metadata"]["uid"]: j for j in _items(self.batch.list_job_for_all_namespaces(_preload_content=False))}
        pods = {p["metadata"]["uid"]: p for p in _items(self.core.list_pod_for_all_namespaces(_preload_content=False))}
        self._job_controller(jobs, pods)
        for uid, pod in pods.items():
            self._kubelet(uid, pod)
        with self._lock:
            gone = [uid for uid in self.pods if uid not in pods]
        for uid in gone:  # deleted through the API: its containers stop
            with self._lock:
                state = self.pods.pop(uid)
            for docker_id in state.containers.values():
                with contextlib.suppress(Exception):
                    self.docker.api.remove_container(docker_id, force=True)
        if time.monotonic() - self._last_event_sweep > EVENT_TTL / 2:
            self._last_event_sweep = time.monotonic()
            self._sweep_events()

    def _sweep_events(self) -> None:
        listed = json.loads(self.core.list_event_for_all_namespaces(_preload_content=False).data)
        for event in listed.get("items") or []:
            metadata = event.get("metadata") or {}
            if _age(event.get("lastTimestamp")) > EVENT_TTL:
                with contextlib.suppress(k8s.ApiException):
                    self.core.delete_namespaced_event(metadata["name"], metadata["namespace"])

    # -- job controller, garbage collector, TTL ----------------------------------------------

    def _job_controller(self, jobs: dict[str, dict[str, Any]], pods: dict[str, dict[str, Any]]) -> None:
        owned: dict[str, list[dict[str, Any]]] = {}
        for pod in pods.values():
            for ref in pod["metadata"].get("ownerReferences") or []:
                if ref.get("kind") == "Job":
                    owned.setdefault(ref["uid"], []).append(pod)
                if (ref.get("kind") == "Job" and ref["uid"] not in jobs) or (
                    ref.get("kind") == "Pod" and ref["uid"] not in pods
                ):  # its owner is gone: the garbage collector deletes it
                    self._delete_pod(pod["metadata"]["namespace"], pod["metadata"]["name"])
        for uid, job in jobs.items():
            metadata, status = job["metadata"], job.get("status") or {}
            namespace, name = metadata["namespace"], metadata["name"]
            conditions = status.get("conditions") or []
            finished = next((c for c in conditions if c.get("type") in ("Complete", "Failed")), None)
            if finished is not None:
                ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
                if ttl is not None and _age(finished.get("lastTransitionTime")) >= ttl:
                    with contextlib.suppress(k8s.ApiException):
                        self.batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
                continue
            if uid not in self.jobs_with_pods and uid not in owned:
                self._create_job_pod(job)
                self.jobs_with_pods.add(uid)
                continue
            for pod in owned.get(uid, []):
                phase = (pod.get("status") or {}).get("phase")
                if phase in ("Succeeded", "Failed"):
                    self._finish_job(job, phase == "Succeeded", pod)

    def _create_job_pod(self, job: dict[str, Any]) -> None:
        metadata = job["metadata"]
        template = (job.get("spec") or {}).get("template") or {}
        labels = {**((template.get("metadata") or {}).get("labels") or {}),
                  "job-name": metadata["name"], "controller-uid": metadata["uid"]}  # fmt: skip
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{metadata['name']}-{uuid.uuid4().hex[:5]}",
                "labels": labels,
                "annotations": (template.get("metadata") or {}).get("annotations") or {},
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": metadata["name"],
                                     "uid": metadata["uid"], "controller": True, "blockOwnerDeletion": True}],
            },
            "spec": template.get("spec") or {},
        }  # fmt: skip
        try:
            self.core.create_namespaced_pod(metadata["namespace"], pod)
        except k8s.ApiException as exc:  # an invalid template: the job controller reports it as an event
            self._event(metadata["namespace"], "Job", metadata["name"], "FailedCreate",
                        f"Error creating: {exc.body}", "Warning")  # fmt: skip

    def _finish_job(self, job: dict[str, Any], succeeded: bool, pod: dict[str, Any]) -> None:
        metadata = job["metadata"]
        condition = {"type": "Complete" if succeeded else "Failed", "status": "True",
                     "lastTransitionTime": now(), "lastProbeTime": now()}  # fmt: skip
        if not succeeded:
            condition.update(reason="BackoffLimitExceeded", message="Job has reached the specified backoff limit")
        status: dict[str, Any] = {"conditions": [condition], "active": 0}
        if succeeded:
            status.update(succeeded=1, completionTime=now())
        else:
            status["failed"] = 1
        with contextlib.suppress(k8s.ApiException):
            self.batch.patch_namespaced_job_status(metadata["name"], metadata["namespace"], {"status": status})

    # -- scheduler and kubelet ----------------------------------------------------------------

    def _kubelet(self, uid: str, pod: dict[str, Any]) -> None:
        metadata, spec = pod["metadata"], pod.get("spec") or {}
        namespace, name = metadata["namespace"], metadata["name"]
        with self._lock:
            state = self.pods.setdefault(uid, PodState(namespace, name))
        if state.phase in ("Succeeded", "Failed"):
            return
        if state.phase == "Running":
            self._watch_containers(state, pod)
            return
        selector = spec.get("nodeSelector") or {}
        if any(self.node_labels.get(key) != value for key, value in selector.items()):
            if "FailedScheduling" not in state.events:
                message = "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
                self._patch_pod(namespace, name, {"status": {"phase": "Pending", "conditions": [
                    {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}]}})
                self._event(namespace, "Pod", name, "FailedScheduling", message, "Warning", state)
            return
        if "Scheduled" not in state.events:
            self._event(namespace, "Pod", name, "Scheduled", f"Successfully assigned {namespace}/{name} to {NODE}",
                        "Normal", state)  # fmt: skip
            for ref in spec.get("imagePullSecrets") or []:
                if not self._secret_exists(namespace, ref.get("name", "")):
                    self._event(namespace, "Pod", name, "FailedToRetrieveImagePullSecret",
                                f'Unable to retrieve some image pull secrets ({ref.get("name")}); attempting to pull '
                                "the image may not succeed.", "Warning", state)  # fmt: skip
        if time.monotonic() < state.next_pull:
            return
        containers = spec.get("containers") or []
        for container in containers:
            problem = self._ensure_image(container.get("image", ""))
            if problem is not None:
                self._pull_failed(state, container, problem)
                return
        self._start(state, pod, containers)

    def _ensure_image(self, image: str) -> str | None:
        """None once the daemon has ``image`` (pulling it if it names a registry); else why not."""
        with contextlib.suppress(Exception):
            self.docker.images.get(image)
            return None
        repository, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "latest")
        try:
            failure = None
            for event in self.docker.api.pull(repository, tag=tag or "latest", stream=True, decode=True):
                failure = failure or event.get("error")
            return failure
        except Exception as exc:
            return str(getattr(exc, "explanation", None) or exc)

    def _pull_failed(self, state: PodState, container: dict[str, Any], problem: str) -> None:
        state.pull_failures += 1
        state.next_pull = time.monotonic() + PULL_BACKOFF
        image = container.get("image", "")
        first = state.pull_failures == 1
        reason = "ErrImagePull" if first else "ImagePullBackOff"
        message = problem if first else f'Back-off pulling image "{image}"'
        self._patch_pod(state.namespace, state.name, {"status": {"phase": "Pending", "containerStatuses": [
            {"name": container["name"], "image": image, "imageID": "", "ready": False, "restartCount": 0,
             "state": {"waiting": {"reason": reason, "message": message}}}]}})  # fmt: skip
        if first:
            self._event(state.namespace, "Pod", state.name, "Failed",
                        f'Failed to pull image "{image}": {problem}', "Warning")  # fmt: skip
            self._event(state.namespace, "Pod", state.name, "Failed", "Error: ErrImagePull", "Warning")
        else:
            self._event(state.namespace, "Pod", state.name, "BackOff", message, "Normal")

    def _start(self, state: PodState, pod: dict[str, Any], containers: list[dict[str, Any]]) -> None:
        started = now()
        statuses = []
        host_paths = {v["name"]: v["hostPath"]["path"] for v in pod["spec"].get("volumes") or [] if v.get("hostPath")}
        account = pod["spec"].get("serviceAccountName") or pod["spec"].get("serviceAccount") or "default"
        fields = {"metadata.name": state.name, "metadata.namespace": state.namespace,
                  "metadata.uid": pod["metadata"]["uid"], "status.podIP": "127.0.0.1", "status.hostIP": "127.0.0.1",
                  "spec.nodeName": NODE, "spec.serviceAccountName": account}  # fmt: skip
        # the in-cluster configuration: the API's address, and the account's token, CA and namespace
        in_cluster: dict[str, Any] = {}
        service: dict[str, str] = {}
        if pod["spec"].get("automountServiceAccountToken") is not False:
            folder = str(self.cluster.service_account_folder(state.namespace, account))
            in_cluster[folder] = {"bind": SERVICE_ACCOUNT_PATH, "mode": "ro"}
            port = str(self.cluster.https_port)
            service = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": port,
                       "KUBERNETES_SERVICE_PORT_HTTPS": port}  # fmt: skip
        for container in containers:
            binds = {
                **in_cluster,
                **{host_paths[m["name"]]: {"bind": m["mountPath"], "mode": "ro" if m.get("readOnly") else "rw"}
                   for m in container.get("volumeMounts") or [] if m.get("name") in host_paths},
            }  # fmt: skip
            env = {**service,
                   **{item["name"]: _env_value(item, fields) for item in container.get("env") or [] if "name" in item}}
            limits = ((container.get("resources") or {}).get("limits") or {}).get("memory")
            created = self.docker.api.create_container(
                container["image"],
                command=container.get("args"),
                entrypoint=container.get("command"),
                environment=env,
                labels={CONTAINER_LABEL: pod["metadata"]["uid"]},
                name=f"k8s-{state.name}-{container['name']}-{uuid.uuid4().hex[:4]}"[:63],
                host_config=self.docker.api.create_host_config(
                    network_mode="host", mem_limit=_bytes(limits) if limits else None, binds=binds or None
                ),
            )
            self.docker.api.start(created["Id"])
            state.containers[container["name"]] = created["Id"]
            statuses.append({"name": container["name"], "image": container["image"], "imageID": container["image"],
                             "ready": True, "restartCount": 0, "started": True,
                             "state": {"running": {"startedAt": started}}})  # fmt: skip
        state.phase, state.started = "Running", started
        self._patch_pod(state.namespace, state.name, {"status": {
            "phase": "Running", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}], "hostIP": "127.0.0.1",
            "startTime": started, "containerStatuses": statuses,
            "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}]}})
        self._event(state.namespace, "Pod", state.name, "Started", "Started container", "Normal")  # fmt: skip

    def _watch_containers(self, state: PodState, pod: dict[str, Any]) -> None:
        inspected = {}
        for name, docker_id in state.containers.items():
            try:
                inspected[name] = self.docker.api.inspect_container(docker_id)["State"]
            except Exception:
                return  # removed meanwhile (an eviction): nothing more to report
        if any(s.get("Running") for s in inspected.values()):
            return  # still running: its exit wakes the loop (Docker's die event)
        oom_asked = ((pod["metadata"].get("annotations") or {}).get(OOM_ANNOTATION) or "").lower() == "true"
        statuses = []
        failed = False
        for name, docker_state in inspected.items():
            code = int(docker_state.get("ExitCode") or 0)
            oom = bool(docker_state.get("OOMKilled")) or oom_asked
            if oom:
                code = code or 137
            reason = "OOMKilled" if oom else "Completed" if code == 0 else "Error"
            failed = failed or code != 0
            image = next(c["image"] for c in pod["spec"]["containers"] if c["name"] == name)
            statuses.append({"name": name, "image": image, "imageID": image, "ready": False, "restartCount": 0,
                             "started": False, "state": {"terminated": {"exitCode": code, "reason": reason,
                             "startedAt": state.started, "finishedAt": now()}}})  # fmt: skip
        state.log = self.log_of_containers(state)
        for docker_id in state.containers.values():
            with contextlib.suppress(Exception):
                self.docker.api.remove_container(docker_id, force=True)
        state.phase = "Failed" if failed else "Succeeded"
        self._patch_pod(state.namespace, state.name, {"status": {"phase": state.phase, "containerStatuses": statuses,
                        "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted"}]}})  # fmt: skip

    def log_of_containers(self, state: PodState) -> str:
        texts = []
        for docker_id in state.containers.values():
            with contextlib.suppress(Exception):
                texts.append(self.docker.api.logs(docker_id).decode(errors="replace"))
        return "".join(texts)

    # -- API helpers ------------------------------------------------------------------------

    def _patch_pod(self, namespace: str, name: str, body: dict[str, Any]) -> None:
        with contextlib.suppress(k8s.ApiException):
            self.core.patch_namespaced_pod_status(name, namespace, body)

    def _delete_pod(self, namespace: str, name: str) -> None:
        with contextlib.suppress(k8s.ApiException):
            self.core.delete_namespaced_pod(name, namespace)

    def _secret_exists(self, namespace: str, name: str) -> bool:
        try:
            self.core.read_namespaced_secret(name, namespace)
        except k8s.ApiException:
            return False
        return True

    def _event(self, namespace: str, kind: str, name: str, reason: str, message: str, type_: str,
               state: PodState | None = None) -> None:  # fmt: skip
        if state is not None:
            state.events.add(reason)
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{name}.{uuid.uuid4().hex[:12]}", "namespace": namespace},
            "involvedObject": {"apiVersion": "batch/v1" if kind == "Job" else "v1", "kind": kind, "name": name,
                               "namespace": namespace},
            "reason": reason, "message": message, "type": type_, "count": 1,
            "firstTimestamp": now(), "lastTimestamp": now(), "source": {"component": "kubelet", "host": NODE},
        }  # fmt: skip
        with contextlib.suppress(k8s.ApiException):
            self.core.create_namespaced_event(namespace, event)


def _env_value(item: dict[str, Any], fields: dict[str, str]) -> str:
    """A container variable's value: its ``value``, or a ``fieldRef`` of the downward API."""
    if "value" in item:
        return str(item["value"])
    path = ((item.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
    return fields.get(path or "", "")


def _items(response: Any) -> list[dict[str, Any]]:
    """The items of a list answer read raw (``_preload_content=False``), as plain dicts."""
    return list(json.loads(response.data).get("items") or [])


def _age(timestamp: str | None) -> float:
    if not timestamp:
        return 0.0
    then = datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    return (datetime.datetime.now(datetime.UTC) - then).total_seconds()


def _bytes(quantity: str) -> int:
    """A Kubernetes memory quantity (``64Mi``, ``1G``, ``1000``) in bytes."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * factor)
    return int(float(quantity))
