"""``Agent``: takes flow runs from the API server and deploys them; one subclass per platform.

A platform implements one abstract hook, :meth:`Agent.deploy_flow` (start the
flow-run process on its infrastructure). Optional hooks, each a no-op by default,
let it watch and clean up what it started (:meth:`Agent.on_startup`, :meth:`Agent.check_deployments`,
:meth:`Agent.on_shutdown`), stop the process of a cancelled run that outlives
``agent.cancel_grace`` (:meth:`Agent.deployed_flow_run_ids`, :meth:`Agent.stop_flow_run`),
say when its infrastructure can't take runs (:meth:`Agent.ready`; a deploy that finds
it gone raises :class:`DeployLater` and the run is put back), and add its own options
to ``headwater agent KIND start`` (:meth:`Agent.add_cli_arguments`).

The machinery — registration, the long-poll claim loop, deploys in a bounded thread
pool, heartbeats, cancel enforcement, graceful stop — is ``loop.py``; the health
endpoint is ``health.py``; kinds are ``registry.py``; the contract every agent passes
is ``tests/agent/contract.py``.
"""

from __future__ import annotations

import abc
import argparse
import logging
import socket
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from headwater.agent.common import check_env_vars, claim_of, report_state
from headwater.agent.health import parse_address
from headwater.agent.loop import AgentLoop, DeployLater
from headwater.core.labels import check_labels
from headwater.core.run_states import FlowRunState

if TYPE_CHECKING:
    from pydantic import SecretStr

    from headwater.client import Client
    from headwater.config.settings import AgentSettings
    from headwater.schemas.flow_runs import FlowRun

__all__ = ["Agent", "DeployLater"]

logger = logging.getLogger("headwater.agent")

#: Claims an agent remembers (the most recent runs it deployed); older ones are forgotten.
MAX_CLAIMS = 10_000


class Agent(abc.ABC):
    """Claims flow runs whose labels fit its own and deploys each with :meth:`deploy_flow`.

    Args:
        name: the agent's name on the server; default ``<kind>-<hostname>``
            (agents of one kind on one host need names of their own).
        labels: the agent's labels: it takes runs whose labels L satisfy L ⊆ labels,
            and unlabelled runs only when it has no labels itself.
        env_vars: extra environment variables for every flow-run process; the
            ``HEADWATER__CONTEXT__*`` and ``HEADWATER__API__*`` ones the agent sets win.
            A None value drops the variable from the run's environment (one the
            agent's own environment would pass on, for a LocalAgent).
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
        env_vars: Mapping[str, str | None] | None = None,
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
        self.labels: set[str] = set(check_labels(labels, f"agent {self.name!r}"))
        self.env_vars = check_env_vars(env_vars)
        self.max_polls = max_polls
        self.agent_address = agent_address
        self.no_cloud_logs = no_cloud_logs
        self.api_url = api_url
        self.api_token = api_token if isinstance(api_token, str) or api_token is None else api_token.get_secret_value()
        self.settings = settings
        #: the agent's id on the server, once registered.
        self.agent_id: str | None = None
        #: claim calls made since :meth:`start`.
        self.polls = 0
        #: where the health endpoint answers, once started (with ``agent_address``).
        self.health_url: str | None = None
        self._client: Client | None = None
        self._claims: OrderedDict[str, str] = OrderedDict()  # run id → the claim it was deployed under
        self._claims_lock = threading.Lock()
        self._loop = AgentLoop(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.name} labels={sorted(self.labels)}>"

    # ------------------------------------------------------------------------------
    # hooks for subclasses
    # ------------------------------------------------------------------------------

    @abc.abstractmethod
    def deploy_flow(self, flow_run: FlowRun) -> None:
        """Start the flow-run process for ``flow_run`` on this agent's infrastructure.

        Called in a worker thread for each claimed run (Submitted to this agent).
        Give the process :meth:`flow_run_env`. Return once it is started; raise to
        fail the run — the error's text becomes the run's state message; raise
        :class:`DeployLater` to put it back for later.
        """

    def ready(self) -> str | None:
        """None when the agent can deploy runs now, else why not (e.g. "the Docker daemon … does not answer").

        Optional (default: always ready). Called before each claim: while it gives a
        reason the agent claims nothing, logs the reason once, shows it in :meth:`health`,
        and asks again after a growing wait (up to ``loop.READY_RETRY_MAX`` s; a poke asks at once).
        """
        return None

    def check_deployments(self) -> None:
        """Look at what this agent started (e.g. reap processes); called about twice a second. Optional."""

    def held_slots(self) -> int:
        """Deploy slots (of ``agent.max_workers``) that runs this agent deployed still hold; default 0.

        An agent whose runs go elsewhere (a cluster) frees a run's slot when its deploy returns;
        one whose runs share this machine (the LocalAgent's processes) holds it until the run's
        process ends, so a burst of runs can't start more processes at once than that.
        """
        return 0

    def deployed_flow_run_ids(self) -> set[str]:
        """The runs whose flow-run processes this agent has running now; default none.

        The agent looks for Cancelling runs among them and, once one has been
        Cancelling for ``agent.cancel_grace`` seconds, calls :meth:`stop_flow_run`.
        """
        return set()

    def stop_flow_run(self, flow_run_id: str, reason: str) -> None:
        """Stop the process of a run that stays Cancelling, and settle the run (Cancelled, with ``reason``).

        Only called for runs :meth:`deployed_flow_run_ids` named; default nothing.
        """

    def on_startup(self) -> None:
        """The agent is registered and about to claim: start watching what it runs (a watch stream). Optional."""

    def on_shutdown(self, timeout: float) -> None:
        """The loop has ended and every deploy returned: wait up to ``timeout`` s for, or clean up, what runs.

        Optional. After a second SIGINT/SIGTERM, :attr:`force_stopping` is true: stop waiting.
        """

    @classmethod
    def add_cli_commands(cls, commands: Any) -> None:
        """Add more subcommands beside ``start`` to ``headwater agent KIND`` (``commands`` is the
        argparse subparsers object); each sets its ``handler``. Default: none."""

    @classmethod
    def add_cli_arguments(cls, parser: argparse._ActionsContainer) -> None:
        """Add this kind's own options to ``headwater agent KIND start`` (beyond the common ones).

        Each option's ``dest`` is the name of a constructor argument: the command builds
        the agent with them. Default: none.
        """

    # ------------------------------------------------------------------------------
    # for subclasses and callers (the loop itself is loop.py)
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
        return self._loop.forced.is_set()

    def flow_run_env(self, flow_run: FlowRun, image: str | None = None) -> dict[str, str]:
        """The environment variables of ``flow_run``'s process, by name.

        ``env_vars`` first (less those set to None), then the ones the flow-run
        process needs, so those can't be overridden (``HEADWATER__CONTEXT__CLAIM``: the
        claim it runs under, which every write it makes carries); ``HEADWATER__API__TOKEN`` only
        when a token is configured, ``HEADWATER__CONTEXT__IMAGE`` only when ``image`` is given.
        """
        env = {name: value for name, value in self.env_vars.items() if value is not None}
        env["HEADWATER__CONTEXT__FLOW_RUN_ID"] = flow_run.id
        env["HEADWATER__CONTEXT__FLOW_ID"] = flow_run.flow_id
        claim = claim_of(flow_run)
        if claim is not None:
            env["HEADWATER__CONTEXT__CLAIM"] = claim
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
        loop = self._loop
        not_ready = loop.not_ready
        status = "stopping" if loop.stopping.is_set() else "starting" if not self.agent_id else "ok"
        if status == "ok" and not_ready is not None:
            status = "waiting"
        body: dict[str, Any] = {
            "status": status,
            "name": self.name,
            "kind": self.kind,
            "agent_id": self.agent_id,
            "labels": sorted(self.labels),
            "in_flight": loop.in_flight,
            "polls": self.polls,
        }
        if not_ready is not None:
            body["waiting_for"] = not_ready
        return body

    def poke(self) -> None:
        """Claim now instead of after the current wait (``POST /api/poke``)."""
        self._loop.wake.set()

    def stop(self) -> None:
        """Stop claiming; :meth:`start` returns once claimed runs are deployed or put back."""
        self._loop.stop()

    def start(self) -> None:
        """Register with the server and claim and deploy runs until stopped or ``max_polls`` is reached.

        In the main thread, SIGINT and SIGTERM call :meth:`stop` (a second one
        sets :attr:`force_stopping`). Returns after every claimed run was deployed
        or put back (Scheduled again) and :meth:`on_shutdown` has run.

        Raises:
            ApiError: the server can't be reached to register, or refuses the agent (e.g. a bad token).
        """
        self._loop.run()

    def fail_flow_run(
        self, flow_run_id: str, message: str, state: str = FlowRunState.FAILED, version: int | None = None
    ) -> bool:
        """Move a run this agent holds to Failed (or ``state``) with ``message``, also written in the run's log.

        Returns False, after logging why, if the server refused (e.g. the run is finished already, or
        it was taken from the claim this agent deployed it under).
        """
        return report_state(self.client, flow_run_id, state, message, version=version, claim=self.claim(flow_run_id))

    def remember_claim(self, flow_run: FlowRun) -> None:
        """Keep the claim ``flow_run`` is under: the agent's later writes about it carry it (the loop calls this
        for every run it claims; an agent that adopts runs after a restart may call it for them)."""
        claim = claim_of(flow_run)
        if claim is None:
            return
        with self._claims_lock:
            self._claims[flow_run.id] = claim
            self._claims.move_to_end(flow_run.id)
            while len(self._claims) > MAX_CLAIMS:
                self._claims.popitem(last=False)

    def claim(self, flow_run_id: str) -> str | None:
        """The claim this agent deployed the run under, ``<agent id>:<attempt>``, if it remembers one."""
        with self._claims_lock:
            return self._claims.get(flow_run_id)

    def holds(self, flow_run: FlowRun) -> bool:
        """Whether ``flow_run`` (as just read) is still under the claim this agent deployed it with.

        False once it was rescheduled, or claimed again (by another agent, or by this one again
        after recovery): the process this agent started for it is then a stale attempt's, and
        what it did must not be reported about the run.
        """
        if flow_run.agent_id != self.agent_id:
            return False
        claim = self.claim(flow_run.id)
        return claim is None or claim == claim_of(flow_run)

    def cancel_unless_finished(self, flow_run_id: str, message: str) -> None:
        """After :meth:`stop_flow_run` stopped a run's process: end the run Cancelled with ``message``,
        unless it ended by itself meanwhile (a failure to read it is only logged)."""
        from headwater.client.errors import ApiError
        from headwater.core.run_states import FINISHED

        try:
            run = self.client.get_flow_run(flow_run_id)
        except ApiError as exc:
            logger.warning("can't read flow run %s after stopping it: %s", flow_run_id, exc)
            return
        if run.state not in FINISHED:
            self.fail_flow_run(flow_run_id, message, FlowRunState.CANCELLED, run.version)

    def put_back(self, flow_run: FlowRun, reason: str) -> bool:
        """Give a claimed, undeployed run back to the server (Scheduled, for any agent to claim)."""
        message = f"put back by agent {self.name!r}: {reason}"
        if report_state(
            self.client, flow_run.id, FlowRunState.SCHEDULED, message, version=flow_run.version, level="INFO",
            claim=claim_of(flow_run),
        ):  # fmt: skip
            logger.info("agent %r put back flow run %s: %s", self.name, flow_run.id, reason)
            return True
        return False
