"""``DockerAgent``: runs each flow run in a Docker container of its flow's image.

The image comes from the flow version's registered metadata, never from the flow
itself (:func:`image_of`, DESIGN.md §4). The container runs ``python -m headwater
execute flow-run`` with the run's variables and the labels ``io.headwater.*``; the
agent finds its containers by those labels (so a restarted agent finds what it
started before), reports one that exited without a final state as Failed with its
exit code and last log lines, and removes it. A daemon that stops answering makes
:meth:`DockerAgent.ready` give a reason: the base loop (``loop.py``) then claims
nothing until it answers again, and a run claimed just before is put back.
The daemon connection is ``headwater.containers.client``; users' docs ``docs/agent-docker.md``.
"""

from __future__ import annotations

import argparse
import re
import secrets
import signal
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from headwater.agent.base import Agent, DeployLater, logger
from headwater.agent.images import DeployError, image_of
from headwater.client.errors import ApiError
from headwater.containers.client import INSTALL_HINT, DockerUnavailable, describe_daemon, docker_client
from headwater.containers.names import registry_of, split_reference
from headwater.core.labels import check_strings
from headwater.core.run_states import HELD, FlowRunState

if TYPE_CHECKING:
    from docker import DockerClient

    from headwater.schemas.flow_runs import FlowRun

LABEL_FLOW_RUN_ID = "io.headwater.flow-run-id"
LABEL_FLOW_ID = "io.headwater.flow-id"
LABEL_AGENT_ID = "io.headwater.agent-id"
LABEL_AGENT_NAME = "io.headwater.agent-name"
#: Log lines of an exited container that go into its run's state message.
LOG_LINES = 20
#: Seconds a stopped container gets to exit before the daemon kills it.
TERMINATE_GRACE = 5
#: Seconds the readiness ping may take (a hung daemon counts as not answering).
PING_TIMEOUT = 10
_VOLUME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class DockerDeployError(DeployError):
    """A run can't be deployed in a container: a refused registry, a failed pull; says the fix."""


def parse_volume(spec: str) -> tuple[str, dict[str, str]]:
    """``"host:container[:ro|rw]"`` → ``(host, {"bind": container, "mode": mode})`` (the SDK's form).

    ``host`` is an absolute path or a named volume; ``container`` an absolute path.

    Raises:
        ValueError: naming the spec and the form it must have.
    """
    parts = spec.split(":") if isinstance(spec, str) else []
    mode = parts.pop() if len(parts) == 3 else "rw"
    ok = len(parts) == 2 and mode in ("ro", "rw") and parts[1].startswith("/")
    if not (ok and (parts[0].startswith("/") or _VOLUME_NAME.fullmatch(parts[0]))):
        raise ValueError(
            f"volume {spec!r} must look like HOST:CONTAINER[:ro|rw], HOST an absolute path or a volume name "
            "and CONTAINER an absolute path, e.g. '/srv/data:/data:ro'"
        )
    return parts[0], {"bind": parts[1], "mode": mode}


def describe_exit(code: int, oom: bool = False) -> str:
    """``code 3``; ``code 137 (killed by SIGKILL)`` (Docker reports a signal as 128 + its number)."""
    text = f"code {code}"
    name = {s.value: s.name for s in signal.Signals}.get(code - 128) if code > 128 else None
    if name:
        text += f" (killed by {name})"
    return text + (", out of memory" if oom else "")


class DockerAgent(Agent):
    """Deploys each flow run as a container of its flow's image on a Docker daemon.

    Args:
        base_url: the daemon, e.g. ``unix:///var/run/docker.sock``; default the
            ``docker.base_url`` setting, then ``DOCKER_HOST``, then the local socket.
        no_pull: never pull: run images the daemon has (a missing one fails the run).
        volumes: ``"host:container[:ro|rw]"`` mounts for every container.
        networks: Docker networks to attach the containers to (the first at creation);
            default the ``docker.network_mode`` setting (``host``).
        show_flow_logs: stream each container's output to this agent's stdout, prefixed with the run id.
        reg_allow_list: registries (``localhost:5000``, or ``ghcr.io/org`` for a prefix)
            images may come from; a run of any other image fails. None: any registry.

    The other arguments are :class:`~headwater.agent.Agent`'s. On stop it waits up to
    ``agent.stop_timeout`` for its containers, then stops the rest: a run not started
    yet (Submitted) is put back, a Running one is marked Failed.

    Raises:
        ValueError: a bad volume, network or registry entry, named.
    """

    kind = "docker"

    def __init__(
        self,
        name: str | None = None,
        labels: Iterable[str] | None = None,
        env_vars: Mapping[str, str | None] | None = None,
        max_polls: int | None = None,
        agent_address: str | None = None,
        no_cloud_logs: bool = False,
        base_url: str | None = None,
        no_pull: bool = False,
        volumes: Iterable[str] | None = None,
        networks: Iterable[str] | None = None,
        show_flow_logs: bool = False,
        reg_allow_list: Iterable[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(name, labels, env_vars, max_polls, agent_address, no_cloud_logs, **kwargs)
        from headwater.config import get_settings

        try:
            import docker  # noqa: F401  (the SDK: missing, it is an error now rather than at the first run)
        except ImportError as exc:
            raise ImportError(f"the DockerAgent needs the Docker SDK: `{INSTALL_HINT}` ({exc})") from exc

        docker_settings = get_settings().docker
        self.base_url = base_url or docker_settings.base_url
        self.no_pull = bool(no_pull)
        self.volumes = check_strings(volumes, "volumes", "DockerAgent")
        self._binds = dict(parse_volume(v) for v in self.volumes)
        self.networks = check_strings(networks, "networks", "DockerAgent")
        self.show_flow_logs = show_flow_logs
        self.reg_allow_list: list[str] | None = None
        if reg_allow_list is not None:
            allowed = check_strings(reg_allow_list, "reg_allow_list", "DockerAgent")
            self.reg_allow_list = [entry.rstrip("/") for entry in allowed]
        if self.reg_allow_list == []:
            raise ValueError("reg_allow_list is empty, which would refuse every image; give None to allow any registry")
        self.network_mode = docker_settings.network_mode
        #: the flow-run command in the container (tests swap in a stand-in).
        self._command = ["python", "-m", "headwater", "execute", "flow-run"]
        self._lock = threading.Lock()
        self._docker_client: DockerClient | None = None
        self._ping_client: DockerClient | None = None
        self._reap_lock = threading.Lock()
        self._starting: set[str] = set()  # runs between "container created" and "started"
        self._streams: dict[str, threading.Thread] = {}  # show_flow_logs, by container id
        self._live = 0
        self._live_runs: dict[str, str] = {}  # run id → id of its running container (check_deployments)

    @classmethod
    def add_cli_arguments(cls, parser: argparse._ActionsContainer) -> None:
        """``headwater agent docker start``'s own options."""
        parser.add_argument("--base-url", metavar="URL",
                            help="the Docker daemon, e.g. unix:///var/run/docker.sock (default: the docker.base_url "
                                 "setting, then DOCKER_HOST)")  # fmt: skip
        parser.add_argument("--no-pull", action="store_true", help="run only images the daemon has; never pull")
        parser.add_argument("--volume", dest="volumes", action="append", default=[], metavar="HOST:CONTAINER[:ro|rw]",
                            help="mount this in every flow-run container (repeatable)")  # fmt: skip
        parser.add_argument("--network", dest="networks", action="append", default=[], metavar="NETWORK",
                            help="attach the containers to this Docker network (repeatable; default: the "
                                 "docker.network_mode setting)")  # fmt: skip
        parser.add_argument("--show-flow-logs", action="store_true",
                            help="stream the containers' output here, each line prefixed with its run id")  # fmt: skip
        parser.add_argument("--reg-allow", dest="reg_allow_list", action="append", default=None, metavar="REGISTRY",
                            help="only run images from this registry, e.g. localhost:5000 (repeatable; default: "
                                 "any)")  # fmt: skip

    def health(self) -> dict[str, Any]:
        """The base health, plus ``containers``: how many of its containers are running or starting."""
        return {**super().health(), "containers": self._live}

    # -- the daemon ----------------------------------------------------------------------

    def docker(self) -> DockerClient:
        """The SDK client of the agent's daemon (made on first use; :meth:`ready` remakes it after an outage).

        Raises:
            DockerUnavailable: the daemon does not answer.
        """
        with self._lock:
            if self._docker_client is None:
                self._docker_client = docker_client(self.base_url, check=False)
            return self._docker_client

    def ready(self) -> str | None:
        """None when the daemon answers a ping, else why it doesn't (and the clients are dropped, to reconnect)."""
        try:
            with self._lock:
                if self._ping_client is None:
                    self._ping_client = docker_client(self.base_url, timeout=PING_TIMEOUT)
                self._ping_client.ping()
        except Exception as exc:
            with self._lock:
                for client in (self._docker_client, self._ping_client):
                    if client is not None:
                        client.close()
                self._docker_client = self._ping_client = None
            cause = exc.__cause__ if isinstance(exc, DockerUnavailable) and exc.__cause__ is not None else exc
            return (
                f"the Docker daemon at {describe_daemon(self.base_url)} does not answer "
                f"({type(cause).__name__}: {cause}); is dockerd running there?"
            )
        return None

    # -- deploy ----------------------------------------------------------------------------

    def deploy_flow(self, flow_run: FlowRun) -> None:
        """Find the flow's image, check its registry, pull it (unless ``no_pull``) and start its container.

        Raises:
            DockerDeployError: no image, a refused registry, a failed pull, a refused container.
            DeployLater: the daemon stopped answering (the run is put back).
        """
        image = image_of(self.client.get_flow(flow_run.flow_id))
        self._check_registry(image)
        try:
            client = self.docker()
            self._ensure_image(client, image)
            container = self._start_container(client, flow_run, image)
        except Exception as exc:
            down = self.ready()
            if down is not None:
                raise DeployLater(down) from exc
            if isinstance(exc, DockerDeployError):
                raise
            why = _explain(exc)
            if self.networks and "network" in why:
                why += f" (the agent's networks {self.networks} must exist on the daemon: see `docker network ls`)"
            raise DockerDeployError(
                f"the Docker daemon at {describe_daemon(self.base_url)} could not start a container of {image!r}: {why}"
            ) from exc
        logger.info("flow run %s runs in container %s (%s)", flow_run.id, container.short_id, image)

    def _check_registry(self, image: str) -> None:
        if self.reg_allow_list is None:
            return
        registry = registry_of(image)
        if any(registry == allowed or image.startswith(f"{allowed}/") for allowed in self.reg_allow_list):
            return
        raise DockerDeployError(
            f"image {image!r} is from registry {registry!r}, which is not in this agent's reg_allow_list "
            f"{self.reg_allow_list}: push the image to one of those, or allow it (--reg-allow {registry})"
        )

    def _ensure_image(self, client: DockerClient, image: str) -> None:
        """Pull ``image`` — unless ``no_pull``, or it names no registry and the daemon has it (built here)."""
        from docker.errors import APIError, ImageNotFound

        first, sep, _ = image.partition("/")
        names_registry = bool(sep) and registry_of(image) == first
        if self.no_pull or not names_registry:
            try:
                client.images.get(image)
                return
            except ImageNotFound:
                if self.no_pull:
                    raise DockerDeployError(
                        f"image {image!r} is not on the Docker daemon at {describe_daemon(self.base_url)} and this "
                        "agent does not pull (no_pull=True / --no-pull): build or pull it there first, or start the "
                        "agent without --no-pull"
                    ) from None
        repository, tag = split_reference(image)
        failure = None
        try:  # the daemon reports a failure either as the answer's status or in the progress stream
            for event in client.api.pull(repository, tag=tag or None, stream=True, decode=True):
                failure = failure or event.get("error")
        except APIError as exc:
            failure = _explain(exc)
        if failure:
            registry = registry_of(image)
            raise DockerDeployError(
                f"could not pull image {image!r} from registry {registry!r}: {failure}; check that the image was "
                f"pushed there (Docker storage pushes on build() when registry_url is set), that the daemon "
                f"reaches the registry and is logged in to it (docker login {registry}), or run an image the "
                "daemon already has with no_pull=True (--no-pull)"
            )

    def _start_container(self, client: DockerClient, flow_run: FlowRun, image: str) -> Any:
        labels = {
            LABEL_FLOW_RUN_ID: flow_run.id,
            LABEL_FLOW_ID: flow_run.flow_id,
            LABEL_AGENT_ID: self.agent_id or "",
            LABEL_AGENT_NAME: self.name,
        }
        network: dict[str, Any] = {"network": self.networks[0]} if self.networks else {}
        if not self.networks and self.network_mode:
            network["network_mode"] = self.network_mode
        self._starting.add(flow_run.id)
        try:
            container = client.containers.create(
                image, self._command, environment=self.flow_run_env(flow_run, image=image), labels=labels,
                name=f"headwater-{flow_run.id[:8]}-{secrets.token_hex(3)}", volumes=self._binds or None,
                detach=True, init=True, **network,
            )  # fmt: skip
            try:
                for extra in self.networks[1:]:
                    client.networks.get(extra).connect(container)
                container.start()
                if self.show_flow_logs:  # before the run leaves _starting: it is reaped only after
                    stream = threading.Thread(target=self._stream_logs, args=(client, container.id, flow_run.id),
                                              name=f"headwater-logs-{flow_run.id[:8]}", daemon=True)  # fmt: skip
                    self._streams[container.id] = stream
                    stream.start()
            except Exception:
                _remove(client, container.id)
                raise
        finally:
            self._starting.discard(flow_run.id)
        return container

    def _stream_logs(self, client: DockerClient, container_id: str, flow_run_id: str) -> None:
        """Copy a container's output to stdout, line by line, each line prefixed ``[RUN_ID]``."""
        pending = b""
        try:
            for chunk in client.api.logs(container_id, stream=True, follow=True):
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    sys.stdout.write(f"[{flow_run_id}] {line.decode(errors='replace')}\n")
                sys.stdout.flush()
        except Exception as exc:  # the daemon went away, or the container was removed
            logger.debug("stopped streaming the logs of flow run %s: %s", flow_run_id, exc)
        if pending:
            sys.stdout.write(f"[{flow_run_id}] {pending.decode(errors='replace')}\n")
            sys.stdout.flush()

    # -- watch, report, clean up --------------------------------------------------------------

    def _containers(self) -> list[dict[str, Any]] | None:
        """This agent's containers (by its name label, whoever started them); None if the daemon is away."""
        try:
            found = self.docker().api.containers(all=True, filters={"label": f"{LABEL_AGENT_NAME}={self.name}"})
        except Exception as exc:
            logger.debug("agent %r can't list its containers: %s", self.name, exc)
            return None
        return list(found)

    def check_deployments(self) -> None:
        """Report and remove containers that ended (or were created and never started); count the live ones."""
        with self._reap_lock:
            found = self._containers()
            if found is None:
                return
            live = 0
            live_runs: dict[str, str] = {}
            for entry in found:
                run_id = (entry.get("Labels") or {}).get(LABEL_FLOW_RUN_ID, "")
                if entry.get("State") in ("exited", "dead", "created"):
                    self._settle(entry["Id"], run_id)
                elif entry.get("State") != "removing":
                    live += 1
                    if run_id:
                        live_runs[run_id] = entry["Id"]
            self._live = live
            self._live_runs = live_runs

    def deployed_flow_run_ids(self) -> set[str]:
        return set(self._live_runs)

    def stop_flow_run(self, flow_run_id: str, reason: str) -> None:
        """Stop the run's container (``docker stop``: SIGTERM, SIGKILL after a grace), settle the run, remove it."""
        container_id = self._live_runs.get(flow_run_id)
        if container_id is None:
            return
        with self._reap_lock:
            self._settle(container_id, flow_run_id, stop=True, why=reason)

    def _settle(self, container_id: str, run_id: str, stop: bool = False, why: str = "as it shut down") -> bool:
        """Report the run of an ended container (``stop``: stop it first, ``why``) and remove it; True if removed."""
        from docker.errors import NotFound

        client = self.docker()
        try:
            state = client.api.inspect_container(container_id).get("State") or {}
            stopped = stop and state.get("Status") in ("running", "paused", "restarting")
            if stopped:
                client.api.stop(container_id, timeout=0 if self.force_stopping else TERMINATE_GRACE)
                logger.warning("agent %r stopped the container of flow run %s", self.name, run_id)
                state = client.api.inspect_container(container_id).get("State") or {}
            status = state.get("Status")
            if not stop and (status not in ("exited", "dead", "created") or run_id in self._starting):
                return False  # started meanwhile, or its deploy is still starting it
            stream = self._streams.pop(container_id, None)
            if stream is not None:
                stream.join(5)  # the last lines reach stdout before the container goes
            tail = client.api.logs(container_id, tail=LOG_LINES).decode(errors="replace").rstrip()
        except NotFound:
            return True  # removed meanwhile (a failed start)
        except Exception as exc:
            logger.warning("agent %r can't inspect container %s: %s", self.name, container_id[:12], exc)
            return False
        code = int(state.get("ExitCode") or 0)
        if stopped:
            how = f"was stopped by agent {self.name!r} {why} ({describe_exit(code)})"
        elif status == "created":
            how = "was created but never started"
        else:
            how = f"exited with {describe_exit(code, bool(state.get('OOMKilled')))}"
        report = f"the flow-run container {container_id[:12]} {how}", tail, code
        if run_id and not self._report_exit(run_id, *report, stopping=stop or status == "created"):
            return False  # the server can't be asked: keep the container and try again later
        _remove(client, container_id)
        return True

    def _report_exit(self, flow_run_id: str, what: str, tail: str, code: int, stopping: bool) -> bool:
        """Settle a run whose container ended; False if the server could not be asked (try again later)."""
        try:
            run = self.client.get_flow_run(flow_run_id)
        except ApiError as exc:
            logger.warning("could not read flow run %s after its container ended: %s", flow_run_id, exc)
            return False
        if not self.holds(run) or run.state not in HELD:
            logger.info("flow run %s is %s; %s", flow_run_id, run.state, what)  # finished, or not ours now
            return True
        if run.state == FlowRunState.SUBMITTED and stopping:
            self.put_back(run, f"{what} (the run had not started)")
            return True
        if code == 0 and not stopping:
            what += f" but left the run {run.state}"
        message = what + (f"; its last log lines:\n{tail}" if tail else " (it wrote no output)")
        if run.state == FlowRunState.CANCELLING:
            cancelled = f"{message}\n(while the run was cancelling)"
            self.fail_flow_run(flow_run_id, cancelled, FlowRunState.CANCELLED, run.version)
        else:
            self.fail_flow_run(flow_run_id, message, FlowRunState.FAILED, run.version)
        return True

    def on_shutdown(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for the containers, then stop the rest, settle their runs and remove them."""
        deadline = time.monotonic() + timeout
        if self._live:
            logger.info("agent %r waits up to %.0fs for %d container(s) to end", self.name, timeout, self._live)
        while not self.force_stopping and time.monotonic() < deadline:
            self.check_deployments()
            found = self._containers()
            if found == [] or (found is None and not self._live):  # none left, or none known before the daemon went
                break
            time.sleep(0.2)
        self.check_deployments()
        with self._reap_lock:
            found = self._containers()
            if found is None:
                logger.warning("agent %r stops without reaching the Docker daemon: its containers are left as they "
                               "are (an agent of the same name finds them when it starts)", self.name)  # fmt: skip
                return
            for entry in found:
                self._settle(entry["Id"], (entry.get("Labels") or {}).get(LABEL_FLOW_RUN_ID, ""), stop=True)


def _remove(client: DockerClient, container_id: str) -> None:
    try:
        client.api.remove_container(container_id, force=True)
    except Exception as exc:
        logger.warning("could not remove container %s: %s", container_id[:12], exc)


def _explain(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation) if explanation else f"{type(exc).__name__}: {exc}"
