"""``KubernetesAgent``: runs each flow run as a Kubernetes Job of its flow's image.

For each claimed run the agent creates a Job (``headwater.kube.jobs``: the default spec or
``job_template``, the image from the flow version's metadata, ``python -m headwater execute
flow-run`` with the run's variables, labelled with the run and the agent). The job's process
runs the flow's environment: a ``LocalEnvironment`` flow runs in that job; a Kubernetes
environment's ``execute`` starts the next hop, a Job carrying the same labels
(``HEADWATER__CONTEXT__JOB_LABELS``), which the agent watches too.

The agent watches its jobs and their pods through two watch streams (label
``headwater.io/agent-name=<name>``), not a poll per run, and settles a run its pods leave
unfinished on the server: a pod that can't pull its image for ``agent.image_pull_grace``
seconds, a container that exits without the run reporting a final state (exit code, reason —
``OOMKilled``, ``Evicted`` — and the last log lines), a job deleted by hand. A pod waiting
for a node writes its scheduling events into the run's log and is not failed for that. A
cancelled run has its jobs deleted (foreground: pods too). Finished jobs go after
``kubernetes.job_ttl`` seconds (``ttlSecondsAfterFinished``). A restarted agent of the same
name finds its jobs by label and goes on watching them; two agents of different names in one
namespace never touch each other's. Users' docs: ``docs/kubernetes.md``.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headwater.agent.base import Agent, DeployLater, logger
from headwater.agent.common import log_to_run
from headwater.agent.images import DeployError, image_of
from headwater.client.errors import ApiError
from headwater.core.labels import check_strings
from headwater.core.run_states import FINISHED, HELD, FlowRunState
from headwater.kube import jobs as manifests
from headwater.kube.client import KubernetesUnavailable, api_client, explain

if TYPE_CHECKING:
    from headwater.schemas.flow_runs import FlowRun

#: Log lines of a failed pod that go into its run's state message.
LOG_LINES = 20
#: Seconds a terminated pod of a run is left before the agent judges it (a second hop may be starting).
SETTLE = 1.0
#: Seconds between two reads of a waiting pod's events.
EVENT_POLL = 5.0
#: The watch streams' server-side timeout (they are restarted at once).
WATCH_TIMEOUT = 30
#: Flow versions whose image the agent remembers.
IMAGE_CACHE = 256
_WAITING_FOR_IMAGE = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")


class KubernetesDeployError(DeployError):
    """A run can't be deployed as a Job: no image, a refused or invalid manifest; says the fix."""


@dataclass
class RunInfra:
    """What the agent sees of one run: its jobs and pods (latest state of each), and what it reported."""

    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> job (None once deleted)
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> pod
    deleted_jobs: set[str] = field(default_factory=set)
    pulling_since: float | None = None
    terminated_since: float | None = None
    events_read: float = 0.0
    events_seen: set[str] = field(default_factory=set)
    settled: bool = False


class KubernetesAgent(Agent):
    """Deploys each flow run as a Kubernetes Job of its flow's image, in one namespace.

    Args:
        namespace: where the jobs go (the agent's service account needs jobs, pods, pods/log
            and events there: ``headwater agent kubernetes install``).
        labels, env_vars, name, max_polls, agent_address, no_cloud_logs: as for
            :class:`~headwater.agent.Agent`.
        job_template: a YAML file holding a Job (or the Job as a dict) to start from; its first
            container runs the flow; default a one-container job never restarted.
        service_account_name: the service account of the runs' pods (a Kubernetes environment's
            run needs one that may create jobs).
        image_pull_secrets: secrets the runs' pods pull their images with.
        kubeconfig, context: a kubeconfig and its context; default in-cluster in a pod, else
            ``KUBECONFIG`` or ``~/.kube/config``.

    Raises:
        KubernetesUnavailable: no kubernetes package, not in a cluster and no kubeconfig.
        JobSpecError: a job template that is unreadable or not a Job with a container.
    """

    kind = "kubernetes"

    def __init__(
        self,
        namespace: str = "default",
        labels: Iterable[str] | None = None,
        job_template: str | Path | Mapping[str, Any] | None = None,
        service_account_name: str | None = None,
        image_pull_secrets: Iterable[str] | None = None,
        env_vars: Mapping[str, str | None] | None = None,
        name: str | None = None,
        max_polls: int | None = None,
        agent_address: str | None = None,
        no_cloud_logs: bool = False,
        *,
        kubeconfig: str | Path | None = None,
        context: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(name, labels, env_vars, max_polls, agent_address, no_cloud_logs, **kwargs)
        from headwater.config import get_settings

        self.namespace = manifests.check_name(namespace, "namespace")
        if job_template is None:
            self.job_template = manifests.default_job_spec()
        elif isinstance(job_template, Mapping):
            self.job_template = manifests.check_job_spec(dict(job_template), "job_template")
        else:
            self.job_template = manifests.load_job_spec(job_template)
        self.service_account_name = service_account_name or None
        self.image_pull_secrets = check_strings(image_pull_secrets, "image_pull_secrets", "KubernetesAgent")
        self.job_ttl = get_settings().kubernetes.job_ttl
        self.api = api_client(kubeconfig, context)
        from kubernetes import client as k8s

        self.core = k8s.CoreV1Api(self.api)
        self.batch = k8s.BatchV1Api(self.api)
        self._runs: dict[str, RunInfra] = {}
        #: image by flow version id (a version's metadata doesn't change): one server call per version.
        self._images: dict[str, str] = {}
        self._lock = threading.Lock()
        self._watching = threading.Event()
        self._watchers: list[threading.Thread] = []
        #: API calls made by deploys and watches, for the benchmark (``bench/kubernetes.py``).
        self.api_calls = 0
        #: the flow-run command in the job (tests swap in a stand-in).
        self._command = list(manifests.FLOW_RUN_COMMAND)

    @classmethod
    def add_cli_arguments(cls, parser: argparse._ActionsContainer) -> None:
        """``headwater agent kubernetes start``'s own options."""
        parser.add_argument("--namespace", default="default", help="where the flow runs' jobs go (default: default)")
        parser.add_argument("--job-template", metavar="FILE", help="a YAML Job to start each run's job from")
        parser.add_argument("--service-account-name", metavar="NAME", help="the service account of the runs' pods")
        parser.add_argument("--image-pull-secret", dest="image_pull_secrets", action="append", default=None,
                            metavar="SECRET", help="a secret the runs' pods pull images with (repeatable)")  # fmt: skip
        parser.add_argument(
            "--kubeconfig", metavar="FILE", help="a kubeconfig (default: in a pod its own, else KUBECONFIG)"
        )
        parser.add_argument("--context", metavar="NAME", help="the kubeconfig's context to use")

    @classmethod
    def add_cli_commands(cls, commands: Any) -> None:
        """``headwater agent kubernetes install``: print the manifests that run an agent in a cluster."""
        from headwater import __version__

        install = commands.add_parser(
            "install", help="print the ServiceAccount, Role, RoleBinding and Deployment of an agent (for kubectl apply)"
        )
        install.add_argument("--namespace", default="default", help="where the agent runs (default: default)")
        install.add_argument("--image", default=f"headwater:{__version__}",
                             help="an image with headwater[kubernetes] in it (default: headwater:VERSION)")  # fmt: skip
        install.add_argument("--api-url", default="http://headwater-server:4200",
                             help="the headwater API server as pods reach it")  # fmt: skip
        install.add_argument("--label", "-l", action="append", default=[], metavar="LABEL", help="an agent label")
        install.add_argument("--name", default="headwater-agent", help="the agent's (and its account's) name")
        install.add_argument("--token-secret", metavar="SECRET",
                             help="a Secret holding the agent's API token under the key 'token'")  # fmt: skip
        install.add_argument("--run-service-account", metavar="NAME",
                             help="also make this ServiceAccount (jobs and pods) for flow runs whose environment "
                                  "starts jobs or Dask workers, and give it to their pods")  # fmt: skip
        install.set_defaults(handler=_print_install)

    def health(self) -> dict[str, Any]:
        """The base health, plus ``jobs``: how many runs it watches with unfinished jobs."""
        return {**super().health(), "jobs": len(self.deployed_flow_run_ids())}

    # -- deploy -----------------------------------------------------------------------------

    def job_labels(self, flow_run: FlowRun) -> dict[str, str]:
        return {
            manifests.LABEL_FLOW_RUN_ID: manifests.label_value(flow_run.id),
            manifests.LABEL_FLOW_ID: manifests.label_value(flow_run.flow_id),
            manifests.LABEL_AGENT_NAME: manifests.label_value(self.name),
            manifests.LABEL_AGENT_ID: manifests.label_value(self.agent_id or ""),
            manifests.LABEL_ROLE: "flow-run",
        }

    def job_for(self, flow_run: FlowRun, image: str) -> dict[str, Any]:
        """The Job manifest of ``flow_run`` (as JSON), in image ``image``."""
        labels = self.job_labels(flow_run)
        env = self.flow_run_env(flow_run, image=image)
        env["HEADWATER__CONTEXT__NAMESPACE"] = self.namespace
        carried = {key: value for key, value in labels.items() if key != manifests.LABEL_ROLE}
        env["HEADWATER__CONTEXT__JOB_LABELS"] = json.dumps(carried)
        return manifests.flow_run_job(
            self.job_template,
            name=manifests.job_name("headwater", flow_run.id),
            labels=labels,
            env=env,
            image=image,
            command=self._command,
            service_account_name=self.service_account_name,
            image_pull_secrets=self.image_pull_secrets,
            ttl_seconds=self.job_ttl,
            field_env=manifests.SERVICE_ACCOUNT_FIELDS,
        )

    def deploy_flow(self, flow_run: FlowRun) -> None:
        """Create the run's Job; the pod it gets reports the run's states itself.

        Raises:
            KubernetesDeployError: no image, or the API refused the Job (named, with the fix).
            DeployLater: the API can't be reached (the run is put back).
        """
        image = self._images.get(flow_run.flow_id)
        if image is None:
            try:
                image = image_of(self.client.get_flow(flow_run.flow_id))
            except DeployError as exc:
                raise KubernetesDeployError(str(exc)) from None
            if len(self._images) >= IMAGE_CACHE:
                self._images.pop(next(iter(self._images)))
            self._images[flow_run.flow_id] = image
        job = self.job_for(flow_run, image)
        name = job["metadata"]["name"]
        with self._lock:
            self._runs.setdefault(flow_run.id, RunInfra()).jobs[name] = job
        try:
            self.api_calls += 1
            self.batch.create_namespaced_job(self.namespace, job)
        except Exception as exc:
            with self._lock:
                self._runs.pop(flow_run.id, None)
            reason = explain(exc, f"create Job {name!r} in namespace {self.namespace!r}")
            if getattr(exc, "status", None) is None:
                raise DeployLater(reason) from exc
            raise KubernetesDeployError(reason) from None
        logger.info("flow run %s runs as Job %s in namespace %s (%s)", flow_run.id, name, self.namespace, image)

    # -- watch -------------------------------------------------------------------------------

    def ready(self) -> str | None:
        """None when the API answers and the agent may list its jobs, else why not (e.g. a missing permission)."""
        if self._watching.is_set():
            return None
        try:
            self.api_calls += 1
            self.batch.list_namespaced_job(self.namespace, limit=1, label_selector=self._selector())
        except Exception as exc:
            return explain(exc, f"list jobs in namespace {self.namespace!r}")
        return None

    def on_startup(self) -> None:
        """Start the two watch streams (jobs and pods with this agent's name label)."""
        for kind, lister in (("jobs", self.batch.list_namespaced_job), ("pods", self.core.list_namespaced_pod)):
            thread = threading.Thread(target=self._watch, args=(kind, lister), name=f"headwater-k8s-watch-{kind}",
                                      daemon=True)  # fmt: skip
            thread.start()
            self._watchers.append(thread)

    def _selector(self) -> str:
        return f"{manifests.LABEL_AGENT_NAME}={manifests.label_value(self.name)}"

    def _watch(self, kind: str, lister: Callable[..., Any]) -> None:
        from kubernetes import watch

        failures = 0
        while not self._loop.stopping.is_set():
            stream = watch.Watch()
            try:
                self.api_calls += 1
                for event in stream.stream(lister, self.namespace, label_selector=self._selector(),
                                           timeout_seconds=WATCH_TIMEOUT):  # fmt: skip
                    self._watching.set()
                    failures = 0
                    obj = event.get("raw_object") or {}
                    self._observe(kind, str(event.get("type")), obj)
                    if self._loop.stopping.is_set():
                        stream.stop()
            except Exception as exc:
                failures += 1
                self._watching.clear()
                logger.warning("agent %r: watching %s in namespace %s failed (%s); watching again",
                               self.name, kind, self.namespace, explain(exc, f"watch {kind}"))  # fmt: skip
                self._loop.stopping.wait(min(2.0**failures, 30.0))

    def _observe(self, kind: str, event: str, obj: dict[str, Any]) -> None:
        metadata = obj.get("metadata") or {}
        run_id = (metadata.get("labels") or {}).get(manifests.LABEL_FLOW_RUN_ID)
        name = metadata.get("name")
        if not run_id or not name:
            return
        with self._lock:
            infra = self._runs.setdefault(run_id, RunInfra())
            table = infra.jobs if kind == "jobs" else infra.pods
            if event == "DELETED":
                table.pop(name, None)
                if kind == "jobs":
                    infra.deleted_jobs.add(name)
                if infra.settled and not infra.jobs and not infra.pods:  # all gone (the TTL): forget the run
                    self._runs.pop(run_id, None)
            else:
                table[name] = obj

    # -- judge -------------------------------------------------------------------------------

    def check_deployments(self) -> None:
        """Settle runs whose pods can't pull, ended without a final state, or lost their job."""
        with self._lock:
            runs = {run_id: infra for run_id, infra in self._runs.items() if not infra.settled}
        now = time.monotonic()
        for run_id, infra in runs.items():
            try:
                self._judge(run_id, infra, now)
            except ApiError as exc:
                logger.warning("agent %r: can't look at flow run %s: %s", self.name, run_id, exc)

    def _judge(self, run_id: str, infra: RunInfra, now: float) -> None:
        with self._lock:
            pods = list(infra.pods.values())
            jobs = list(infra.jobs.values())
            deleted = set(infra.deleted_jobs)
        live = [p for p in pods if _phase(p) not in ("Succeeded", "Failed")]
        pulling = [(p, w) for p in live for w in _waiting(p) if w.get("reason") in _WAITING_FOR_IMAGE]
        if pulling:
            infra.pulling_since = infra.pulling_since or now
            self._copy_events(run_id, infra, [p for p, _ in pulling], now)
            if now - infra.pulling_since >= self.settings.image_pull_grace:
                pod, waiting = pulling[0]
                message = (
                    f"the flow run's pod {_name(pod)} could not pull its image for {self.settings.image_pull_grace:g}s "
                    f"(agent.image_pull_grace): {waiting.get('reason')}: {waiting.get('message') or ''}".rstrip(": ")
                )
                self._settle(run_id, infra, message, delete=True)
            return
        infra.pulling_since = None
        unscheduled = [p for p in live if _unschedulable(p)]
        if unscheduled:
            self._copy_events(run_id, infra, unscheduled, now)
            return
        if live or any(not _finished_job(j) for j in jobs if j is not None and not pods_of(pods, j)):
            infra.terminated_since = None
            return
        if not pods and not deleted:
            return  # created, no pod yet
        infra.terminated_since = infra.terminated_since or now
        if now - infra.terminated_since < SETTLE:
            return
        ended = sorted(pods, key=lambda p: _finished_at(p))
        if ended:
            last = ended[-1]
            self._settle(run_id, infra, lambda: self._ended_message(last), delete=False)
        elif deleted:
            self._settle(run_id, infra, f"its Job {sorted(deleted)[0]} was deleted before the run ended", delete=False)

    def _ended_message(self, pod: dict[str, Any]) -> str:
        status = pod.get("status") or {}
        if status.get("reason") == "Evicted":
            how = f"was evicted ({status.get('message') or 'Evicted'})"
        else:
            terminated: dict[str, Any] = next(
                (s["state"]["terminated"] for s in status.get("containerStatuses") or []
                 if (s.get("state") or {}).get("terminated")), {},
            )  # fmt: skip
            code = terminated.get("exitCode")
            reason = terminated.get("reason")
            told = f" ({reason})" if reason and reason not in ("Error", "Completed") else ""
            how = f"exited with code {code}{told}"
            if code == 0:
                how += " but left the run unfinished"
        tail = self._log_tail(_name(pod))
        message = f"the flow run's pod {_name(pod)} {how}"
        return message + (f"; its last log lines:\n{tail}" if tail else " (it wrote no output)")

    def _settle(self, run_id: str, infra: RunInfra, message: str | Callable[[], str], delete: bool) -> None:
        """End the run Failed (Cancelled if it was being cancelled) unless it already ended; maybe delete its jobs.

        ``message`` may be a function: it is called (e.g. reading the pod's log) only when the run is failed.
        """
        infra.settled = True
        run = self.client.get_flow_run(run_id)
        if run.state in FINISHED or not self.holds(run):
            logger.info("flow run %s is %s and its pods are done", run_id, run.state)
        elif run.state in HELD:
            state = FlowRunState.CANCELLED if run.state == FlowRunState.CANCELLING else FlowRunState.FAILED
            self.fail_flow_run(run_id, message() if callable(message) else message, state, run.version)
        if delete:
            self._delete_jobs(run_id)

    def _copy_events(self, run_id: str, infra: RunInfra, pods: list[dict[str, Any]], now: float) -> None:
        """Write a waiting pod's new events (scheduling, pulling) into the run's log, every EVENT_POLL seconds."""
        if now - infra.events_read < EVENT_POLL:
            return
        infra.events_read = now
        for pod in pods:
            try:
                self.api_calls += 1
                listed = self.core.list_namespaced_event(
                    self.namespace, field_selector=f"involvedObject.name={_name(pod)}", _preload_content=False
                )
            except Exception as exc:
                logger.debug("can't read the events of pod %s: %s", _name(pod), exc)
                continue
            for event in json.loads(listed.data).get("items") or []:
                key = f"{event.get('reason')}: {event.get('message')}"
                if key in infra.events_seen:
                    continue
                infra.events_seen.add(key)
                level = "WARNING" if event.get("type") == "Warning" else "INFO"
                log_to_run(self.client, run_id, level, f"pod {_name(pod)}: {key}")

    def _log_tail(self, pod_name: str) -> str:
        try:
            self.api_calls += 1
            response = self.core.read_namespaced_pod_log(
                pod_name, self.namespace, tail_lines=LOG_LINES, _preload_content=False
            )
        except Exception:
            return ""
        text = response.data.decode(errors="replace") if isinstance(response.data, bytes) else str(response.data)
        return "\n".join(text.rstrip().splitlines()[-LOG_LINES:])

    # -- cancel, stop ---------------------------------------------------------------------------

    def deployed_flow_run_ids(self) -> set[str]:
        with self._lock:
            return {
                run_id for run_id, infra in self._runs.items()
                if not infra.settled and any(not _finished_job(j) for j in infra.jobs.values() if j is not None)
            }  # fmt: skip

    def stop_flow_run(self, flow_run_id: str, reason: str) -> None:
        """Delete the run's jobs (foreground: their pods first) and end it Cancelled."""
        self._delete_jobs(flow_run_id)
        with self._lock:
            infra = self._runs.get(flow_run_id)
            if infra is not None:
                infra.settled = True
        self.cancel_unless_finished(flow_run_id, f"the flow run's job was stopped by agent {self.name!r} {reason} "
                                                 "(its job and pods were deleted)")  # fmt: skip

    def _delete_jobs(self, flow_run_id: str) -> None:
        with self._lock:
            infra = self._runs.get(flow_run_id)
            names = list(infra.jobs) if infra is not None else []
        for name in names:
            try:
                self.api_calls += 1
                self.batch.delete_namespaced_job(name, self.namespace, propagation_policy="Foreground")
            except Exception as exc:
                if getattr(exc, "status", None) != 404:
                    logger.warning("agent %r: %s", self.name, explain(exc, f"delete Job {name!r}"))

    def on_shutdown(self, timeout: float) -> None:
        """Leave the jobs running: they don't need the agent; an agent of the same name finds them again."""
        running = self.deployed_flow_run_ids()
        if running:
            logger.info("agent %r stops; %d run(s) go on as jobs in namespace %s (an agent named %r watches them "
                        "again when it starts)", self.name, len(running), self.namespace, self.name)  # fmt: skip
        for thread in self._watchers:
            thread.join(timeout=1)


def _print_install(args: argparse.Namespace) -> int:
    from headwater.kube.install import agent_manifests, to_yaml

    print(to_yaml(agent_manifests(
        namespace=manifests.check_name(args.namespace, "namespace"), image=args.image, api_url=args.api_url,
        labels=args.label, name=manifests.check_name(args.name, "agent name"), token_secret=args.token_secret,
        run_service_account=args.run_service_account,
    )), end="")  # fmt: skip
    return 0


# -- reading pods and jobs (plain dicts, as the API sends them) --------------------------------


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name"))


def _phase(pod: Mapping[str, Any]) -> str | None:
    return (pod.get("status") or {}).get("phase")


def _waiting(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return [s["state"]["waiting"] for s in statuses if (s.get("state") or {}).get("waiting")]


def _unschedulable(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "PodScheduled" and c.get("status") == "False" for c in conditions)


def _finished_job(job: Mapping[str, Any]) -> bool:
    conditions = (job.get("status") or {}).get("conditions") or []
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in conditions)


def _finished_at(pod: Mapping[str, Any]) -> str:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    times = [((s.get("state") or {}).get("terminated") or {}).get("finishedAt") or "" for s in statuses]
    return max(times, default="")


def pods_of(pods: list[dict[str, Any]], job: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The pods of ``job`` (by the ``job-name`` label the job controller gives them)."""
    name = _name(job)
    return [p for p in pods if ((p.get("metadata") or {}).get("labels") or {}).get("job-name") == name]


__all__ = ["KubernetesAgent", "KubernetesDeployError", "KubernetesUnavailable"]
