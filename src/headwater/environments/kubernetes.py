"""KubernetesJobEnvironment: the flow runs in a Kubernetes Job of its own, made from a YAML spec.

The first hop (the flow-run process an agent started) calls ``execute(flow)``, which creates
the Job and returns; the Job's first container runs ``python -m headwater execute
flow-run`` again with ``HEADWATER__CONTEXT__SECOND_HOP=true``, and there ``run(flow)`` runs
the flow with ``on_start``/``on_exit`` (``environments/execution.py``). The spec is read when
the environment is made and kept in its JSON spec, so the file need not exist where the flow
runs; the Job is made by ``headwater.kube.jobs`` (the same as a KubernetesAgent's): command and
``HEADWATER__…`` variables set by name, the labels of the agent's job carried over
(``HEADWATER__CONTEXT__JOB_LABELS``) so the agent watches, settles and cleans up this Job too.
Users' docs: ``docs/kubernetes.md``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from headwater.environments.base import Environment
from headwater.kube import jobs as manifests

if TYPE_CHECKING:
    from headwater.config import Settings
    from headwater.core.flow import Flow
    from headwater.executors.base import Executor


class KubernetesJobEnvironment(Environment):
    """Runs the flow in a Kubernetes Job made from ``job_spec_file`` (a second hop).

    Args:
        job_spec_file: a YAML file holding the Job; its first container runs the flow (its
            image, else the flow's image). Default: a one-container Job never restarted.
        unique_job_name: give each run's Job a name of its own (the spec's name, the run's id
            and a few random characters); with False the spec's name is used, and a run
            whose Job name is taken fails with a clear error.
        executor: the executor the flow runs with in the Job; default the ``engine.executor`` setting.
        labels, on_start, on_exit, metadata: as for :class:`Environment`.
        job_spec: the Job itself (a dict), instead of a file (what a spec rebuilt elsewhere holds).

    Raises:
        JobSpecError: the file is missing or unreadable, or holds no Job with a container.
    """

    kind = "kubernetes-job"
    dependencies: ClassVar[tuple[str, ...]] = ("kubernetes",)

    def __init__(
        self,
        job_spec_file: str | os.PathLike[str] | None = None,
        unique_job_name: bool = False,
        executor: Executor | None = None,
        labels: Iterable[str] | None = None,
        on_start: Callable[[], Any] | None = None,
        on_exit: Callable[[], Any] | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        job_spec: Mapping[str, Any] | None = None,
    ) -> None:
        from headwater.executors.base import Executor

        super().__init__(labels=labels, on_start=on_start, on_exit=on_exit, metadata=metadata)
        if executor is not None and not isinstance(executor, Executor):
            raise TypeError(
                f"KubernetesJobEnvironment executor must be a headwater Executor, not {type(executor).__name__}"
            )
        self._executor = executor
        self.job_spec_file = os.path.abspath(os.fspath(job_spec_file)) if job_spec_file is not None else None
        if job_spec is not None:
            self.job_spec = manifests.check_job_spec(json.loads(json.dumps(job_spec)), "job_spec")
        elif self.job_spec_file is not None:
            self.job_spec = manifests.load_job_spec(self.job_spec_file)
        else:
            self.job_spec = manifests.default_job_spec()
        manifests.check_name(self.job_name_base, "the job spec's metadata.name")
        self.unique_job_name = bool(unique_job_name)

    @property
    def executor(self) -> Executor | None:
        return self._executor

    @property
    def job_name_base(self) -> str:
        return str((self.job_spec.get("metadata") or {}).get("name") or "headwater-flow-run")

    def spec_args(self) -> dict[str, Any]:
        """The Job spec itself travels in the spec (the file need not exist where the flow runs)."""
        return {"job_spec_file": self.job_spec_file, "unique_job_name": self.unique_job_name, "job_spec": self.job_spec}

    # -- the second hop ----------------------------------------------------------------------

    def job(self, settings: Settings) -> dict[str, Any]:
        """The Job of the run this process runs (``settings.context``): the second hop's manifest.

        Raises:
            ValueError: not in a flow-run process (no ``HEADWATER__CONTEXT__FLOW_RUN_ID``).
            JobSpecError: the spec's first container has no image and the run names none.
        """
        context = settings.context
        run_id = context.flow_run_id
        if not run_id:
            raise ValueError(
                "KubernetesJobEnvironment.execute(flow) starts the flow run's Job and works only in a flow-run "
                "process an agent started (HEADWATER__CONTEXT__FLOW_RUN_ID is not set); to run the flow here, "
                "call environment.run(flow)"
            )
        namespace = self.namespace(settings)
        name = manifests.job_name(self.job_name_base, run_id) if self.unique_job_name else self.job_name_base
        env = {
            "HEADWATER__API__URL": settings.api.url,
            "HEADWATER__CONTEXT__FLOW_RUN_ID": run_id,
            "HEADWATER__CONTEXT__NAMESPACE": namespace,
            "HEADWATER__CONTEXT__SECOND_HOP": "true",
            "HEADWATER__CONTEXT__JOB_LABELS": json.dumps(context.job_labels),
        }
        if settings.api.token is not None:
            env["HEADWATER__API__TOKEN"] = settings.api.token.get_secret_value()
        if context.flow_id:
            env["HEADWATER__CONTEXT__FLOW_ID"] = context.flow_id
        if context.claim:  # the next hop writes under the claim this run was deployed with
            env["HEADWATER__CONTEXT__CLAIM"] = context.claim
        own_image = (manifests.containers_of(self.job_spec)[0] or {}).get("image")
        image = own_image or context.image
        if image:
            env["HEADWATER__CONTEXT__IMAGE"] = image
        labels = {**context.job_labels, manifests.LABEL_FLOW_RUN_ID: manifests.label_value(run_id),
                  manifests.LABEL_ROLE: "second-hop"}  # fmt: skip
        pod = self.job_spec["spec"]["template"]["spec"]
        # the spec's own service account wins; else the one of the job starting this one (the run's)
        account = None if pod.get("serviceAccountName") or pod.get("serviceAccount") else context.service_account
        return manifests.flow_run_job(
            self.job_spec, name=name, labels=labels, env=env, image=image, ttl_seconds=settings.kubernetes.job_ttl,
            service_account_name=account,
        )  # fmt: skip

    def namespace(self, settings: Settings) -> str:
        """Where the Job goes: the run's namespace (set by the agent), else this pod's, else ``default``."""
        from headwater.kube.client import pod_namespace

        return settings.context.namespace or pod_namespace() or "default"

    def execute(self, flow: Flow, **runner_kwargs: Any) -> None:
        """Create the run's Job and return; the Job's process runs ``run(flow)``.

        Raises:
            ValueError: not in a flow-run process, or the Job's name is taken (with
                ``unique_job_name=False``) — the message names it and the fix.
            RuntimeError: the API refused the Job or can't be reached (the message says why).
        """
        from headwater.config import get_settings
        from headwater.kube.client import api_client, explain

        settings = get_settings()
        job = self.job(settings)
        namespace, name = self.namespace(settings), job["metadata"]["name"]
        from kubernetes import client as k8s

        with api_client() as api:
            try:
                k8s.BatchV1Api(api).create_namespaced_job(namespace, job)
            except Exception as exc:
                if getattr(exc, "status", None) == 409 and not self.unique_job_name:
                    raise ValueError(
                        f"a Job named {name!r} already exists in namespace {namespace!r} (another run of this flow, "
                        f"still running or not cleaned up yet): give the environment unique_job_name=True so each "
                        f"run's Job gets a name of its own, or delete it (kubectl delete job {name} -n {namespace})"
                    ) from None
                raise RuntimeError(explain(exc, f"create Job {name!r} in namespace {namespace!r}")) from None
        return None
