"""DaskKubernetesEnvironment: per run, a Dask cluster of worker pods in Kubernetes, adaptive.

The first hop (the flow-run process an agent started) calls ``execute(flow)``, which creates
the scheduler's Job (``scheduler_spec_file``, or a default one in the flow's image), as a
KubernetesJobEnvironment makes its Job. In that Job's pod, ``run(flow)``:

1. starts a Dask scheduler in the pod (at its IP, from the downward API);
2. starts workers as pods made from ``worker_spec_file`` (default: the flow's image running
   ``dask worker``), each given the scheduler's address (``DASK_SCHEDULER_ADDRESS``) and
   owned by the scheduler's pod, so deleting the run's Job deletes them too;
3. adapts the number of workers between ``min_workers`` and ``max_workers`` with
   ``distributed``'s own ``SpecCluster`` and ``Adaptive`` (no scheduler is written here: a
   worker pod is a ``ProcessInterface``);
4. runs the flow with a ``DaskExecutor`` on that scheduler, with ``on_start``/``on_exit``;
5. deletes every worker pod when the run ends, also when it fails.

Users' docs: ``docs/kubernetes.md``.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import socket
import threading
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from headwater.environments.kubernetes import KubernetesJobEnvironment
from headwater.kube import jobs as manifests

if TYPE_CHECKING:
    from headwater.config import Settings
    from headwater.core.flow import Flow
    from headwater.core.state import State

logger = logging.getLogger("headwater.environment")

#: Variables the scheduler's pod gets from the downward API (name -> field).
POD_FIELDS = {
    "HEADWATER__CONTEXT__POD_NAME": "metadata.name",
    "HEADWATER__CONTEXT__POD_UID": "metadata.uid",
    "HEADWATER__CONTEXT__POD_IP": "status.podIP",
}
#: Seconds between two looks at the worker pods for errors (``log_k8s_errors``).
ERROR_POLL = 2.0
_ERROR_REASONS = (
    "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError",
    "CrashLoopBackOff", "Unschedulable", "FailedScheduling", "FailedToRetrieveImagePullSecret",
)  # fmt: skip


def default_scheduler_spec() -> dict[str, Any]:
    """The scheduler's Job when no spec file is given: the flow-run process, with work stealing as asked."""
    spec = manifests.default_job_spec()
    spec["metadata"]["name"] = "headwater-dask-scheduler"
    return spec


def default_worker_spec() -> dict[str, Any]:
    """A worker pod when no spec file is given: ``dask worker`` in the flow's image, one thread, never restarted."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "headwater-dask-worker"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "dask-worker",
                "args": ["dask", "worker", "--nthreads", "1", "--no-dashboard", "--death-timeout", "60"],
            }],
        },
    }  # fmt: skip


def load_pod_spec(path: str) -> dict[str, Any]:
    """The Pod in the YAML file at ``path``; a JobSpecError naming the file when it is not one with a container."""
    document = manifests.read_yaml_document(path, "worker spec file", "a Pod", " (kind: Pod)")
    if not isinstance(document, dict) or document.get("kind") != "Pod":
        raise manifests.JobSpecError(f"worker spec file {path!r} must hold one Pod (kind: Pod)")
    containers = (document.get("spec") or {}).get("containers")
    if not isinstance(containers, list) or not containers:
        raise manifests.JobSpecError(f"worker spec file {path!r} has no containers (spec.containers)")
    return document


class DaskKubernetesEnvironment(KubernetesJobEnvironment):
    """Runs the flow on a Dask cluster of worker pods made for each run, adaptive between two sizes.

    Args:
        min_workers: the fewest worker pods while the run runs (at least 0).
        max_workers: the most worker pods (at least 1, and at least ``min_workers``).
        work_stealing: the scheduler moves queued tasks between workers (default specs only).
        scheduler_logs: put the Dask scheduler's own log lines in the run's log.
        private_registry, docker_secret: the old way to name the secret images are pulled with
            (deprecated: use ``image_pull_secret``); with ``private_registry=True``,
            ``docker_secret`` (default ``DOCKER_REGISTRY_CREDENTIALS``) is that secret.
        labels, on_start, on_exit, metadata: as for :class:`Environment`.
        scheduler_spec_file: a YAML Job for the scheduler's pod, used as given (its first
            container runs the flow); default: a Job in the flow's image.
        worker_spec_file: a YAML Pod for each worker, used as given but for its name, labels,
            owner and ``DASK_SCHEDULER_ADDRESS``; its first container must run ``dask worker``.
        image_pull_secret: the secret pods pull their image with, set as ``imagePullSecrets``
            on the default specs (not merged into spec files).
        log_k8s_errors: put the worker pods' errors (image pulls, scheduling, crashes) in the
            run's log as they happen.

    Raises:
        ValueError: ``min_workers``/``max_workers`` out of range (named).
        JobSpecError: a spec file that can't be read or is not a Job / a Pod with a container.
    """

    kind = "dask-kubernetes"
    dependencies: ClassVar[tuple[str, ...]] = ("kubernetes", "distributed")

    def __init__(
        self,
        min_workers: int = 1,
        max_workers: int = 2,
        work_stealing: bool = True,
        scheduler_logs: bool = False,
        private_registry: bool = False,
        docker_secret: str | None = None,
        labels: Iterable[str] | None = None,
        on_start: Callable[[], Any] | None = None,
        on_exit: Callable[[], Any] | None = None,
        metadata: dict[str, Any] | None = None,
        scheduler_spec_file: str | None = None,
        worker_spec_file: str | None = None,
        image_pull_secret: str | None = None,
        log_k8s_errors: bool = False,
        *,
        scheduler_spec: Mapping[str, Any] | None = None,
        worker_spec: Mapping[str, Any] | None = None,
    ) -> None:
        for name, value, least in (("min_workers", min_workers, 0), ("max_workers", max_workers, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"DaskKubernetesEnvironment {name} must be a whole number ≥ {least}, not {value!r}")
        if min_workers > max_workers:
            raise ValueError(
                f"DaskKubernetesEnvironment min_workers ({min_workers}) is more than max_workers ({max_workers}); "
                "the cluster adapts between them"
            )
        if private_registry or docker_secret:
            warnings.warn(
                "DaskKubernetesEnvironment private_registry/docker_secret are deprecated: give the name of the "
                "Kubernetes secret pods pull their image with as image_pull_secret=",
                DeprecationWarning,
                stacklevel=2,
            )
        if private_registry and image_pull_secret is None:
            image_pull_secret = docker_secret or "DOCKER_REGISTRY_CREDENTIALS"
        self.min_workers, self.max_workers = min_workers, max_workers
        self.work_stealing = bool(work_stealing)
        self.scheduler_logs = bool(scheduler_logs)
        self.private_registry = bool(private_registry)
        self.docker_secret = docker_secret
        self.image_pull_secret = image_pull_secret or None
        self.log_k8s_errors = bool(log_k8s_errors)
        self.scheduler_spec_file = os.path.abspath(scheduler_spec_file) if scheduler_spec_file else None
        self.worker_spec_file = os.path.abspath(worker_spec_file) if worker_spec_file else None
        custom_scheduler = scheduler_spec is not None or self.scheduler_spec_file is not None
        if scheduler_spec is None and self.scheduler_spec_file is None:
            scheduler_spec = self._with_defaults(default_scheduler_spec(), pod=False)
        super().__init__(
            job_spec_file=None if scheduler_spec is not None else self.scheduler_spec_file,
            unique_job_name=True,
            labels=labels,
            on_start=on_start,
            on_exit=on_exit,
            metadata=metadata,
            job_spec=scheduler_spec,
        )
        self.custom_scheduler = custom_scheduler
        if worker_spec is not None:
            self.worker_spec = json.loads(json.dumps(dict(worker_spec)))
        elif self.worker_spec_file is not None:
            self.worker_spec = load_pod_spec(self.worker_spec_file)
        else:
            self.worker_spec = self._with_defaults(default_worker_spec(), pod=True)

    def _with_defaults(self, spec: dict[str, Any], pod: bool) -> dict[str, Any]:
        """A default spec with what the arguments put in default specs only: work stealing, the pull secret."""
        pod_spec = spec["spec"] if pod else spec["spec"]["template"]["spec"]
        container = pod_spec["containers"][0]
        manifests.set_env(container, {"DASK_DISTRIBUTED__SCHEDULER__WORK_STEALING": str(self.work_stealing)})
        if self.image_pull_secret:
            pod_spec["imagePullSecrets"] = [{"name": self.image_pull_secret}]
        return spec

    def spec_args(self) -> dict[str, Any]:
        return {
            "min_workers": self.min_workers,
            "max_workers": self.max_workers,
            "work_stealing": self.work_stealing,
            "scheduler_logs": self.scheduler_logs,
            "private_registry": self.private_registry,
            "docker_secret": self.docker_secret,
            "scheduler_spec_file": self.scheduler_spec_file,
            "worker_spec_file": self.worker_spec_file,
            "image_pull_secret": self.image_pull_secret,
            "log_k8s_errors": self.log_k8s_errors,
            "scheduler_spec": self.job_spec,
            "worker_spec": self.worker_spec,
        }

    # -- the first hop: the scheduler's Job ---------------------------------------------------

    def job(self, settings: Settings) -> dict[str, Any]:
        """The scheduler's Job: the KubernetesJobEnvironment's, plus the pod's name, uid and IP."""
        job = super().job(settings)
        manifests.set_field_env(job["spec"]["template"]["spec"]["containers"][0], POD_FIELDS)
        job["metadata"]["labels"][manifests.LABEL_ROLE] = "dask-scheduler"
        job["spec"]["template"]["metadata"]["labels"][manifests.LABEL_ROLE] = "dask-scheduler"
        return job

    # -- the second hop: the cluster, the flow, the clean-up ------------------------------------

    def worker_pod(
        self, settings: Settings, name: str, scheduler_address: str, worker_name: str | None = None
    ) -> dict[str, Any]:
        """The Pod ``name`` of a worker: the worker spec, named, labelled, owned by the scheduler's pod.

        ``worker_name`` is the name the cluster knows the worker by (``--name``, added to the first
        container's arguments unless they name one): without it the cluster could not tell which
        worker an idle one is, and scaling down would stop a busy one.
        """
        context = settings.context
        pod: dict[str, Any] = {**copy.deepcopy(self.worker_spec), "apiVersion": "v1", "kind": "Pod"}
        metadata = pod.setdefault("metadata", {})
        metadata["name"] = manifests.check_name(name, "worker pod name")
        metadata.pop("namespace", None)
        metadata.pop("generateName", None)
        metadata["labels"] = {
            **(metadata.get("labels") or {}),
            **context.job_labels,
            manifests.LABEL_FLOW_RUN_ID: manifests.label_value(context.flow_run_id or ""),
            manifests.LABEL_ROLE: "dask-worker",
        }
        owner_name = os.environ.get("HEADWATER__CONTEXT__POD_NAME")
        owner_uid = os.environ.get("HEADWATER__CONTEXT__POD_UID")
        if owner_name and owner_uid:
            metadata["ownerReferences"] = [{"apiVersion": "v1", "kind": "Pod", "name": owner_name, "uid": owner_uid,
                                            "blockOwnerDeletion": True}]  # fmt: skip
        container = pod["spec"]["containers"][0]
        if not container.get("image") and context.image:
            container["image"] = context.image
        if not container.get("image"):
            raise manifests.JobSpecError(
                f"worker pod {name!r} has no image and the flow names none (give one in the worker spec, or keep the "
                "flow in Docker storage)"
            )
        manifests.set_env(container, {"DASK_SCHEDULER_ADDRESS": scheduler_address,
                                      "HEADWATER__CONTEXT__FLOW_RUN_ID": context.flow_run_id or ""})  # fmt: skip
        args = container.setdefault("args", [])
        if worker_name is not None and not any(a == "--name" or str(a).startswith("--name=") for a in args):
            args += ["--name", worker_name]
        if not any(e.get("name") == "DASK_WORKER_POD" for e in container["env"]):
            field = {"fieldRef": {"fieldPath": "metadata.name"}}
            container["env"].append({"name": "DASK_WORKER_POD", "valueFrom": field})
        return pod

    def run(self, flow: Flow, **runner_kwargs: Any) -> State:
        """Start the cluster, run the flow on it (``on_start``/``on_exit`` around), then delete every worker pod."""
        from headwater.config import get_settings
        from headwater.executors.dask import DaskExecutor

        settings = get_settings()
        cluster = WorkerPods(self, settings)
        try:
            address = cluster.start()
            executor = DaskExecutor(address=address)
            return super().run(flow, executor=executor, **runner_kwargs)
        finally:
            cluster.close()


class WorkerPods:
    """The run's Dask cluster: a scheduler here, worker pods by ``distributed.SpecCluster`` and ``Adaptive``."""

    def __init__(self, environment: DaskKubernetesEnvironment, settings: Settings) -> None:
        self.environment = environment
        self.settings = settings
        self.namespace = environment.namespace(settings)
        self.cluster: Any = None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(self) -> str:
        """Start the scheduler and the cluster's adaptation; the scheduler's address."""
        import dask
        from distributed import Scheduler, SpecCluster

        from headwater.kube.client import api_client

        host = os.environ.get("HEADWATER__CONTEXT__POD_IP") or _own_ip()
        api = api_client()
        worker = {"cls": pod_worker, "options": {"environment": self.environment, "settings": self.settings,
                                                "api": api, "namespace": self.namespace}}  # fmt: skip
        scheduler = {"cls": Scheduler, "options": {"host": host, "port": 0, "dashboard_address": None}}
        level = logging.INFO if self.environment.scheduler_logs else logging.WARNING
        for name in ("distributed", "distributed.scheduler", "distributed.deploy"):
            logging.getLogger(name).setLevel(level)  # either way: an earlier cluster here may have set them
        with dask.config.set({"distributed.scheduler.work-stealing": self.environment.work_stealing}):
            self.cluster = SpecCluster(scheduler=scheduler, worker=worker, silence_logs=False,  # type: ignore[no-untyped-call]
                                       name=f"headwater-{(self.settings.context.flow_run_id or '')[:8]}")  # fmt: skip
        self.cluster.adapt(minimum=self.environment.min_workers, maximum=self.environment.max_workers,
                           interval="1s", wait_count=3)  # fmt: skip
        logger.info("a Dask cluster of %d to %d worker pod(s) started; its scheduler is at %s",
                    self.environment.min_workers, self.environment.max_workers,
                    self.cluster.scheduler_address)  # fmt: skip
        if self.environment.log_k8s_errors:
            self._watcher = threading.Thread(target=self._report_errors, args=(api,), daemon=True,
                                             name="headwater-dask-k8s-errors")  # fmt: skip
            self._watcher.start()
        return str(self.cluster.scheduler_address)

    def close(self) -> None:
        """Stop adapting and delete every worker pod (the cluster's close deletes the ones it knows)."""
        self._stop.set()
        if self.cluster is not None:
            try:
                self.cluster.close(timeout=30)
            except Exception as exc:
                logger.warning("closing the run's Dask cluster failed: %s", exc)
        self._delete_leftovers()

    def _selector(self) -> str:
        """The label selector of this run's worker pods."""
        run = manifests.label_value(self.settings.context.flow_run_id or "")
        return f"{manifests.LABEL_FLOW_RUN_ID}={run},{manifests.LABEL_ROLE}=dask-worker"

    def _delete_leftovers(self) -> None:
        from kubernetes import client as k8s

        from headwater.kube.client import api_client

        selector = self._selector()
        try:
            with api_client() as api:
                core = k8s.CoreV1Api(api)
                for pod in core.list_namespaced_pod(self.namespace, label_selector=selector).items:
                    core.delete_namespaced_pod(pod.metadata.name, self.namespace)
        except Exception as exc:
            logger.warning("can't delete the run's Dask worker pods: %s", exc)

    def _report_errors(self, api: Any) -> None:
        """Put the worker pods' errors (waiting reasons, warning events) in the run's log, once each."""
        from kubernetes import client as k8s

        core = k8s.CoreV1Api(api)
        seen: set[str] = set()
        selector = self._selector()
        while not self._stop.wait(ERROR_POLL):
            try:
                pods = json.loads(core.list_namespaced_pod(self.namespace, label_selector=selector,
                                                           _preload_content=False).data).get("items") or []  # fmt: skip
                for pod in pods:
                    name = pod["metadata"]["name"]
                    for status in (pod.get("status") or {}).get("containerStatuses") or []:
                        waiting = (status.get("state") or {}).get("waiting") or {}
                        if waiting.get("reason") in _ERROR_REASONS:
                            _once(seen, f"worker pod {name}: {waiting['reason']}: {waiting.get('message', '')}")
                    events = json.loads(core.list_namespaced_event(
                        self.namespace, field_selector=f"involvedObject.name={name}", _preload_content=False
                    ).data).get("items") or []  # fmt: skip
                    for event in events:
                        if event.get("type") == "Warning":
                            _once(seen, f"worker pod {name}: {event.get('reason')}: {event.get('message')}")
            except Exception as exc:
                logger.debug("can't read the worker pods: %s", exc)


def _once(seen: set[str], message: str) -> None:
    if message not in seen:
        seen.add(message)
        logger.error("%s", message)


def _own_ip() -> str:
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def pod_worker(scheduler: str, name: str, **options: Any) -> Any:
    """One Dask worker as a pod: ``distributed``'s ``ProcessInterface`` (what ``SpecCluster`` scales)."""
    return _pod_worker_class()(scheduler, name, **options)


def _pod_worker_class() -> type:
    from distributed.deploy.spec import ProcessInterface

    global _POD_WORKER
    if _POD_WORKER is not None:
        return _POD_WORKER

    class _PodWorker(ProcessInterface):
        def __init__(self, scheduler: str, name: str, *, environment: DaskKubernetesEnvironment,
                     settings: Settings, api: Any, namespace: str, **kwargs: Any) -> None:  # fmt: skip
            super().__init__(scheduler=scheduler, name=name)  # type: ignore[no-untyped-call]
            run = (settings.context.flow_run_id or "run")[:8].lower()
            self.pod_name = f"headwater-{run}-dask-worker-{uuid.uuid4().hex[:6]}"
            self.manifest = environment.worker_pod(settings, self.pod_name, scheduler, str(name))
            self.namespace = namespace
            self.api = api

        async def start(self) -> None:
            from kubernetes import client as k8s

            core = k8s.CoreV1Api(self.api)
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: core.create_namespaced_pod(self.namespace, self.manifest)
            )
            logger.info("Dask worker pod %s started", self.pod_name)
            await super().start()  # type: ignore[no-untyped-call]

        async def close(self) -> None:
            from kubernetes import client as k8s

            core = k8s.CoreV1Api(self.api)

            def delete() -> None:
                try:
                    core.delete_namespaced_pod(self.pod_name, self.namespace)
                except Exception as exc:
                    if getattr(exc, "status", None) != 404:
                        raise

            await asyncio.get_running_loop().run_in_executor(None, delete)
            logger.info("Dask worker pod %s deleted", self.pod_name)
            await super().close()  # type: ignore[no-untyped-call]

    _POD_WORKER = _PodWorker
    return _PodWorker


_POD_WORKER: type | None = None
