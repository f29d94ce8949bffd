"""``Agent``: takes flow runs from the API server and deploys them; one subclass per platform.

A subclass implements one hook, :meth:`Agent.deploy_flow` (start the flow-run
process on its infrastructure); optional hooks let it watch and clean up what it
started (:meth:`Agent.check_deployments`, :meth:`Agent.on_shutdown`), stop the
process of a cancelled run that outlives ``agent.cancel_grace``
(:meth:`Agent.deployed_flow_run_ids`, :meth:`Agent.stop_flow_run`) and say when
its infrastructure can't take runs (:meth:`Agent.ready`; a deploy that finds it gone
raises :class:`DeployLater` and the run is put back). The
machinery — registration, the long-poll claim loop, deploys in a bounded thread
pool, heartbeats, the health endpoint (``health.py``), graceful stop — is here.
Server side: ``server/api/work.py`` (the claim) and ``server/api/agents.py``.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar

from headwater.agent.common import (
    check_env_vars,
    check_labels,
    install_stop_signals,
    report_state,
    restore_signals,
)
from headwater.agent.health import HealthServer, parse_address
from headwater.client.errors import ApiError, ClientError, NotFoundError

if TYPE_CHECKING:
    from pydantic import SecretStr

    from headwater.client import Client
    from headwater.config.settings import AgentSettings
    from headwater.schemas.flow_runs import FlowRun

logger = logging.getLogger("headwater.agent")

#: Seconds between two calls of ``check_deployments`` (and checks whether a heartbeat is due).
MONITOR_INTERVAL = 0.5
#: Seconds between two looks for Cancelling runs among the ones this agent has running.
CANCEL_CHECK_INTERVAL = 2.0
#: Longest wait, in seconds, between two calls of ``ready()`` while the agent is not ready.
READY_RETRY_MAX = 10.0


class DeployLater(Exception):
    """Raised by ``deploy_flow``: the run can't be deployed now (its infrastructure is away), maybe later.

    The run is put back (Scheduled, for this or another agent) with the error's text
    as the reason, instead of being failed.
    """


class Agent:
    """Claims flow runs whose labels fit its own and deploys each with :meth:`deploy_flow`.

    Args:
        name: the agent's name on the server; default ``<kind>-<hostname>``
            (agents of one kind on one host need names of their own).
        labels: the agent's labels: it takes runs whose labels L satisfy L ⊆ labels,
            and unlabelled runs only when it has no labels itself.
        env_vars: extra environment variables for every flow-run process; the
            ``HEADWATER__CONTEXT__*`` and ``HEADWATER__API__*`` ones the agent sets win.
        max_polls: stop after this many claim calls (then finish what was claimed); None: run until stopped.
        agent_address: serve ``GET /api/health`` and ``POST /api/poke`` here, e.g. ``http://127.0.0.1:8080``.
        no_cloud_logs: recorded for agents that would forward their own log to the server.
        api_url: the server; default the ``api.url`` setting.
        api_token: the API token; default the ``api.token`` setting.
        settings: claim wait, poll interval, heartbeat, workers, stop timeout; default the ``agent`` settings.
    """

    #: the platform's name, registered with the server (``local``, ``docker``, ...).
    kind: ClassVar[str] = "agent"

    def __init__(
        self,
        name: str | None = None,
        labels: Iterable[str] | None = None,
        env_vars: Mapping[str, str] | None = None,
        max_polls: int | None = None,
        agent_address: str | None = None,
        no_cloud_logs: bool = False,
        *,
        api_url: str | None = None,
        api_token: str | SecretStr | None = None,
        settings: AgentSettings | None = None,
    ) -> None:
        if api_url is None or api_token is None or settings is None:
            from headwater.config import get_settings

            loaded = get_settings()
            api_url = loaded.api.url if api_url is None else api_url
            api_token = loaded.api.token if api_token is None else api_token
            settings = loaded.agent if settings is None else settings
        if name is not None and not (isinstance(name, str) and name.strip()):
            raise ValueError(f"an agent's name must be a non-empty string, not {name!r}")
        if max_polls is not None and (not isinstance(max_polls, int) or max_polls < 0):
            raise ValueError(f"max_polls must be a whole number ≥ 0 or None, not {max_polls!r}")
        if agent_address is not None:
            parse_address(agent_address)
        self.name = name or f"{self.kind}-{socket.gethostname()}"
        self.labels = check_labels(labels, f"agent {self.name!r}")
        self.env_vars = check_env_vars(env_vars)
        self.max_polls = max_polls
        self.agent_address = agent_address
        self.no_cloud_logs = no_cloud_logs
        self.api_url = api_url
        self.api_token = api_token if isinstance(api_token, str) or api_token is None else api_token.get_secret_value()
        self.settings = settings
        self.agent_id: str | None = None
        self.polls = 0
        self.health_url: str | None = None
        self._client: Client | None = None
        self._stop = threading.Event()  # stop claiming (stop(), a signal)
        self._forced = threading.Event()  # a second signal: don't wait for what is running
        self._wake = threading.Event()  # poke, stop, a free slot: claim (or end) now
        self._claiming = threading.Event()  # a claim call is in flight
        self._slots = threading.Lock()
        self._in_flight = 0
        self._last_contact = 0.0  # time.monotonic() of the last claim or heartbeat
        self._not_ready: str | None = None  # why the agent claims nothing now (ready()'s last reason)
        self._cancelling: dict[str, float] = {}  # run id → time.monotonic() the agent first saw it Cancelling
        self._last_cancel_check = 0.0

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.name} labels={sorted(self.labels)}>"

    # ------------------------------------------------------------------------------
    # hooks for subclasses
    # ------------------------------------------------------------------------------

    def deploy_flow(self, flow_run: FlowRun) -> None:
        """Start the flow-run process for ``flow_run`` on this agent's infrastructure.

        Called in a worker thread for each claimed run (Submitted to this agent).
        Give the process :meth:`flow_run_env`. Return once it is started; raise to
        fail the run — the error's text becomes the run's state message.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement deploy_flow(flow_run)")

    def ready(self) -> str | None:
        """None when the agent can deploy runs now, else why not (e.g. "the Docker daemon … does not answer").

        Optional (default: always ready). Called before each claim: while it gives a
        reason the agent claims nothing, logs the reason once, shows it in :meth:`health`,
        and asks again after a growing wait (up to :data:`READY_RETRY_MAX` s; a poke asks at once).
        """
        return None

    def check_deployments(self) -> None:
        """Look at what this agent started (e.g. reap processes); called about twice a second. Optional."""

    def deployed_flow_run_ids(self) -> set[str]:
        """Hook: the runs whose flow-run processes this agent has running now; default none.

        The agent looks for Cancelling runs among them and, once one has been
        Cancelling for ``agent.cancel_grace`` seconds, calls :meth:`stop_flow_run`.
        """
        return set()

    def stop_flow_run(self, flow_run_id: str, reason: str) -> None:
        """Hook: stop the process of a run that stays Cancelling, and settle the run (Cancelled, with ``reason``).

        Only called for runs :meth:`deployed_flow_run_ids` named; default nothing.
        """

    def on_shutdown(self, timeout: float) -> None:
        """The loop has ended and every deploy returned: wait up to ``timeout`` s for, or clean up, what runs.

        Optional. After a second SIGINT/SIGTERM, :attr:`force_stopping` is true: stop waiting.
        """

    # ------------------------------------------------------------------------------
    # machinery
    # ------------------------------------------------------------------------------

    @property
    def client(self) -> Client:
        """The API client; exists while :meth:`start` runs."""
        if self._client is None:
            raise RuntimeError(f"agent {self.name!r} is not started; call start() first")
        return self._client

    @property
    def force_stopping(self) -> bool:
        """A second stop signal came: what is still running should be stopped now."""
        return self._forced.is_set()

    def flow_run_env(self, flow_run: FlowRun, image: str | None = None) -> dict[str, str]:
        """The environment variables of ``flow_run``'s process, by name.

        ``env_vars`` first, then the ones the flow-run process needs, so those
        can't be overridden; ``HEADWATER__API__TOKEN`` only when a token is
        configured, ``HEADWATER__CONTEXT__IMAGE`` only when ``image`` is given.
        """
        env = dict(self.env_vars)
        env["HEADWATER__CONTEXT__FLOW_RUN_ID"] = flow_run.id
        env["HEADWATER__CONTEXT__FLOW_ID"] = flow_run.flow_id
        env["HEADWATER__API__URL"] = self.api_url
        if self.api_token:
            env["HEADWATER__API__TOKEN"] = self.api_token
        if image is not None:
            env["HEADWATER__CONTEXT__IMAGE"] = image
        return env

    def health(self) -> dict[str, Any]:
        """What ``GET /api/health`` answers: status, name, kind, id, labels, deploys in flight, claim calls.

        While :meth:`ready` gives a reason, the status is ``waiting`` and ``waiting_for`` holds the reason.
        """
        not_ready = self._not_ready
        status = "stopping" if self._stop.is_set() else "starting" if not self.agent_id else "ok"
        if status == "ok" and not_ready is not None:
            status = "waiting"
        body: dict[str, Any] = {
            "status": status,
            "name": self.name,
            "kind": self.kind,
            "agent_id": self.agent_id,
            "labels": sorted(self.labels),
            "in_flight": self._in_flight,
            "polls": self.polls,
        }
        if not_ready is not None:
            body["waiting_for"] = not_ready
        return body

    def poke(self) -> None:
        """Claim now instead of after the current wait (``POST /api/poke``)."""
        self._wake.set()

    def stop(self) -> None:
        """Stop claiming; :meth:`start` returns once claimed runs are deployed or put back."""
        self._stop.set()
        self._wake.set()

    def start(self) -> None:
        """Register with the server and claim and deploy runs until stopped or ``max_polls`` is reached.

        In the main thread, SIGINT and SIGTERM call :meth:`stop` (a second one
        sets :attr:`force_stopping`). Returns after every claimed run was deployed
        or put back (Scheduled again) and :meth:`on_shutdown` has run.

        Raises:
            ApiError: the server can't be reached to register, or refuses the agent (e.g. a bad token).
        """
        from headwater.client import Client

        self._stop.clear()
        self._forced.clear()
        self.polls = 0
        previous = install_stop_signals(self._on_signal)
        done = threading.Event()
        monitor = threading.Thread(target=self._monitor, args=(done,), name="headwater-agent-monitor", daemon=True)
        health = None
        try:
            # The health endpoint is up before registering: it answers "starting" until then.
            if self.agent_address:
                health = HealthServer(self.agent_address, self.health, self.poke)
                self.health_url = health.url
            with Client(self.api_url, self.api_token) as client:
                self._client = client
                self.agent_id = client.register_agent(self.name, self.kind, sorted(self.labels))
                logger.info("agent %r (%s, id %s) started with labels %s; claiming runs from %s",
                            self.name, self.kind, self.agent_id, sorted(self.labels), client.api_url)  # fmt: skip
                self._last_contact = time.monotonic()
                try:
                    monitor.start()
                    with ThreadPoolExecutor(self.settings.max_workers, thread_name_prefix="headwater-deploy") as pool:
                        self._claim_loop(pool)
                finally:
                    self._stop.set()
                    self.on_shutdown(self.settings.stop_timeout)
        finally:
            self._stop.set()
            done.set()
            if monitor.is_alive():
                monitor.join(timeout=10)
            if health is not None:
                health.close()
            self._client = None
            restore_signals(previous)
        logger.info("agent %r stopped after %d claim call(s)", self.name, self.polls)

    def fail_flow_run(self, flow_run_id: str, message: str, state: str = "Failed", version: int | None = None) -> bool:
        """Move a run this agent holds to Failed (or ``state``) with ``message``, also written in the run's log.

        Returns False, after logging why, if the server refused (e.g. the run is finished already).
        """
        return report_state(self.client, flow_run_id, state, message, version=version)

    def put_back(self, flow_run: FlowRun, reason: str) -> bool:
        """Give a claimed, undeployed run back to the server (Scheduled, for any agent to claim)."""
        message = f"put back by agent {self.name!r}: {reason}"
        if report_state(self.client, flow_run.id, "Scheduled", message, version=flow_run.version, level="INFO"):
            logger.info("agent %r put back flow run %s: %s", self.name, flow_run.id, reason)
            return True
        return False

    def _claim_loop(self, pool: ThreadPoolExecutor) -> None:
        """Claim and deploy until stopped or ``max_polls`` claim calls are made."""
        failures = not_ready = 0
        while not self._stop.is_set() and (self.max_polls is None or self.polls < self.max_polls):
            with self._slots:
                free = self.settings.max_workers - self._in_flight
            if free <= 0:  # a deploy freeing a slot, a poke or stop() sets _wake
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            self._wake.clear()
            if not self._check_ready():
                not_ready += 1
                self._wake.wait(min(0.5 * 2.0 ** (not_ready - 1), READY_RETRY_MAX))
                continue
            not_ready = 0
            began = time.monotonic()
            try:
                runs = self._claim(free)
            except ClientError:  # the server refuses this agent (e.g. a bad token): asking again won't help
                raise
            except ApiError as exc:
                failures += 1
                delay = min(2.0 ** (failures - 1), 30.0)
                logger.warning("agent %r could not claim runs (%s); trying again in %.0fs", self.name, exc, delay)
                self._wake.wait(delay)
                continue
            failures = 0
            if self._stop.is_set():  # stopped while the claim was in flight: nothing new gets deployed
                for run in runs:
                    self.put_back(run, "the agent is stopping")
                break
            for run in runs:
                with self._slots:
                    self._in_flight += 1
                pool.submit(self._deploy, run)
            rest = self.settings.poll_interval - (time.monotonic() - began)
            if not runs and rest > 0:
                self._wake.wait(rest)

    def _check_ready(self) -> bool:
        """Ask :meth:`ready`; log when the agent stops or starts being ready (once per outage)."""
        try:
            reason = self.ready()
        except Exception as exc:  # a broken check must not end the loop: it counts as not ready
            reason = f"its readiness check raised {type(exc).__name__}: {exc}"
        if reason is not None and self._not_ready is None:
            logger.warning("agent %r claims no runs until this changes: %s", self.name, reason)
        elif reason is None and self._not_ready is not None:
            logger.info("agent %r is ready again and claims runs (it was not: %s)", self.name, self._not_ready)
        self._not_ready = reason
        return reason is None

    def _claim(self, limit: int) -> list[FlowRun]:
        """One claim call (counted in ``polls``); re-registers if the server forgot the agent."""
        assert self.agent_id is not None
        self._claiming.set()
        try:
            runs = self.client.claim_flow_runs(self.agent_id, sorted(self.labels), limit, self.settings.claim_wait)
        except NotFoundError:
            logger.warning("the server does not know agent %r (id %s): registering it again", self.name, self.agent_id)
            self.agent_id = self.client.register_agent(self.name, self.kind, sorted(self.labels))
            return []
        finally:
            self.polls += 1
            self._claiming.clear()
        self._last_contact = time.monotonic()
        if runs:
            logger.info("agent %r claimed %d flow run(s): %s", self.name, len(runs), ", ".join(r.id for r in runs))
        return runs

    def _heartbeat_if_due(self) -> None:
        if self.agent_id is None or time.monotonic() - self._last_contact < self.settings.heartbeat_interval:
            return
        try:
            self.client.agent_heartbeat(self.agent_id)
        except ApiError as exc:
            logger.warning("agent %r: heartbeat failed: %s", self.name, exc)
        else:
            self._last_contact = time.monotonic()

    def _on_signal(self, signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        if self._stop.is_set():
            self._forced.set()
            logger.warning("agent %r got %s again: stopping what it started now", self.name, name)
        else:
            logger.info("agent %r got %s: it stops claiming and finishes what it holds", self.name, name)
            self.stop()

    def _monitor(self, done: threading.Event) -> None:
        """Calls ``check_deployments`` and sends heartbeats until ``done``."""
        while not done.wait(MONITOR_INTERVAL):
            try:
                self.check_deployments()
            except Exception:
                logger.exception("agent %r: checking its deployments failed", self.name)
            try:
                self._stop_cancelled_if_due()
            except Exception:
                logger.exception("agent %r: stopping cancelled runs failed", self.name)
            self._heartbeat_if_due()

    def _stop_cancelled_if_due(self) -> None:
        """Stop the processes of this agent's runs that have been Cancelling for ``cancel_grace`` seconds."""
        now = time.monotonic()
        if now - self._last_cancel_check < CANCEL_CHECK_INTERVAL:
            return
        self._last_cancel_check = now
        deployed = self.deployed_flow_run_ids()
        if not deployed:
            self._cancelling.clear()
            return
        try:
            runs = self.client.list_flow_runs(state="Cancelling", limit=1000)
        except ApiError as exc:
            logger.warning("agent %r can't look for cancelled runs: %s", self.name, exc)
            return
        mine = [r.id for r in runs if r.agent_id == self.agent_id and r.id in deployed]
        self._cancelling = {run_id: self._cancelling.get(run_id, now) for run_id in mine}
        grace = self.settings.cancel_grace
        for run_id, since in list(self._cancelling.items()):
            if now - since >= grace:
                logger.warning("agent %r stops flow run %s: still running %gs after it was cancelled",
                               self.name, run_id, grace)  # fmt: skip
                reason = (
                    f"{grace:g}s after the run was cancelled (agent.cancel_grace; a task was still running)"
                )
                self.stop_flow_run(run_id, reason)
                self._cancelling.pop(run_id, None)

    def _deploy(self, flow_run: FlowRun) -> None:
        """Deploy one claimed run in a worker thread: put it back if stopping, fail it if deploy raises."""
        try:
            if self._stop.is_set():
                self.put_back(flow_run, "the agent stopped before deploying it")
                return
            try:
                self.deploy_flow(flow_run)
            except DeployLater as exc:
                logger.warning("agent %r can't deploy flow run %s now: %s", self.name, flow_run.id, exc)
                self.put_back(flow_run, str(exc))
            except Exception as exc:
                logger.warning("agent %r could not deploy flow run %s: %s", self.name, flow_run.id, exc)
                reason = f"{type(exc).__name__}: {exc}"
                self.fail_flow_run(flow_run.id, f"agent {self.name!r} could not deploy the flow run: {reason}")
            else:
                logger.info("agent %r deployed flow run %s (%s of %s)",
                            self.name, flow_run.id, flow_run.run_name, flow_run.flow_name)  # fmt: skip
        finally:
            with self._slots:
                was_full = self._in_flight >= self.settings.max_workers
                self._in_flight -= 1
            if was_full:  # the loop waits for a free slot
                self._wake.set()
