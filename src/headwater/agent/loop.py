"""The machinery every agent runs: register, claim, deploy, monitor, heartbeat, enforce cancels, stop.

:class:`AgentLoop` is what ``Agent.start()`` runs; the platform's side is the hooks
of ``base.py`` (``deploy_flow``, ``ready``, ``check_deployments``,
``deployed_flow_run_ids``, ``stop_flow_run``, ``on_shutdown``), which this module
calls and never the other way round. One loop belongs to one agent for its life:

- the claim loop long-polls the server for runs whose labels fit the agent's and
  hands each to a bounded pool of deploy threads (a run claimed while stopping, or
  whose infrastructure went away, is put back);
- a monitor thread calls ``check_deployments`` about twice a second, sends the
  agent's heartbeat when nothing else spoke to the server for a while, and stops
  the processes of runs left Cancelling for ``agent.cancel_grace`` seconds;
- the first SIGINT/SIGTERM stops claiming, a second makes ``force_stopping`` true.

Server side: ``server/api/work.py`` (the claim) and ``server/api/agents.py``.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING
from uuid import uuid4

from headwater.agent.common import install_stop_signals, restore_signals
from headwater.agent.health import HealthServer
from headwater.client.errors import ApiError, ClientError, NotFoundError
from headwater.core.run_states import FlowRunState

if TYPE_CHECKING:
    from headwater.agent.base import Agent
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


class AgentLoop:
    """The claim loop, deploy pool, monitor and stop signals of one agent."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.stopping = threading.Event()  # stop claiming (stop(), a signal)
        self.forced = threading.Event()  # a second signal: don't wait for what is running
        self.wake = threading.Event()  # poke, stop, a free slot: claim (or end) now
        self._waiting_for_slot = False  # every slot taken: the claim loop waits for one
        self.claiming = threading.Event()  # a claim call is in flight
        self._claim_id: str | None = None  # that call's claim id (stop() releases it)
        self._claim_began = 0.0  # time.monotonic() it began
        self._slots = threading.Lock()
        self.in_flight = 0
        self.not_ready: str | None = None  # why the agent claims nothing now (ready()'s last reason)
        self._last_contact = 0.0  # time.monotonic() of the last claim or heartbeat
        self._cancelling: dict[str, float] = {}  # run id → time.monotonic() the agent first saw it Cancelling
        self._last_cancel_check = 0.0

    @property
    def settings(self) -> AgentSettings:
        return self.agent.settings

    def run(self) -> None:
        """Register, then claim and deploy until stopped or ``max_polls`` is reached; see ``Agent.start``."""
        from headwater.client import Client

        agent = self.agent
        self.stopping.clear()
        self.forced.clear()
        agent.polls = 0
        previous = install_stop_signals(self._on_signal)
        done = threading.Event()
        monitor = threading.Thread(target=self._monitor, args=(done,), name="headwater-agent-monitor", daemon=True)
        health = None
        try:
            # The health endpoint is up before registering: it answers "starting" until then.
            if agent.agent_address:
                health = HealthServer(agent.agent_address, agent.health, agent.poke)
                agent.health_url = health.url
            with Client(agent.api_url, agent.api_token) as client:
                agent._client = client
                agent.agent_id = client.register_agent(agent.name, agent.kind, sorted(agent.labels))
                logger.info("agent %r (%s, id %s) started with labels %s; claiming runs from %s",
                            agent.name, agent.kind, agent.agent_id, sorted(agent.labels), client.api_url)  # fmt: skip
                self._last_contact = time.monotonic()
                try:
                    agent.on_startup()
                    monitor.start()
                    with ThreadPoolExecutor(self.settings.max_workers, thread_name_prefix="headwater-deploy") as pool:
                        self._claim_loop(pool)
                finally:
                    self.stopping.set()
                    agent.on_shutdown(self.settings.stop_timeout)
        finally:
            self.stopping.set()
            done.set()
            if monitor.is_alive():
                monitor.join(timeout=10)
            if health is not None:
                health.close()
            agent._client = None
            restore_signals(previous)
        logger.info("agent %r stopped after %d claim call(s)", agent.name, agent.polls)

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        self._release_claim()

    def _release_claim(self) -> None:
        """Have the server end the claim in flight now, instead of the stop waiting out its long-poll.

        Sent from a thread of its own: ``stop()`` may run in a signal handler, on the thread
        whose claim call is in flight. A release that does not arrive costs only time (the
        claim ends within ``claim_wait``); runs the claim had taken come back and are put back.
        """
        agent, claim_id, client = self.agent, self._claim_id, self.agent._client
        if claim_id is None or client is None or agent.agent_id is None:
            return
        agent_id = agent.agent_id

        def send() -> None:
            try:
                client.release_claim(agent_id, claim_id)
            except Exception as exc:  # an older server (404), the server away: the claim ends with its wait
                logger.info("agent %r could not release its claim in flight (%s); it ends within %gs",
                            agent.name, exc, self.settings.claim_wait)  # fmt: skip

        threading.Thread(target=send, name="headwater-agent-release", daemon=True).start()

    # -- claiming -----------------------------------------------------------------------

    def _claim_loop(self, pool: ThreadPoolExecutor) -> None:
        """Claim and deploy until stopped or ``max_polls`` claim calls are made."""
        agent = self.agent
        failures = not_ready = 0
        while not self.stopping.is_set() and (agent.max_polls is None or agent.polls < agent.max_polls):
            with self._slots:
                self._waiting_for_slot = True  # before counting: a slot freed from now on wakes the wait below
                free = self.settings.max_workers - self.in_flight - agent.held_slots()
            if free <= 0:  # a freed slot (slot_freed), a poke or stop() sets wake
                self.wake.wait(1.0)
                self.wake.clear()
                continue
            self._waiting_for_slot = False
            self.wake.clear()
            if not self._check_ready():
                not_ready += 1
                self.wake.wait(min(0.5 * 2.0 ** (not_ready - 1), READY_RETRY_MAX))
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
                logger.warning("agent %r could not claim runs (%s); trying again in %.0fs", agent.name, exc, delay)
                self.wake.wait(delay)
                continue
            failures = 0
            if self.stopping.is_set():  # stopped while the claim was in flight: nothing new gets deployed
                for run in runs:
                    agent.put_back(run, "the agent is stopping")
                break
            for run in runs:
                agent.remember_claim(run)
                with self._slots:
                    self.in_flight += 1
                pool.submit(self._deploy, run)
            rest = self.settings.poll_interval - (time.monotonic() - began)
            if not runs and rest > 0:
                self.wake.wait(rest)

    def _check_ready(self) -> bool:
        """Ask ``ready()``; log when the agent stops or starts being ready (once per outage)."""
        agent = self.agent
        try:
            reason = agent.ready()
        except Exception as exc:  # a broken check must not end the loop: it counts as not ready
            reason = f"its readiness check raised {type(exc).__name__}: {exc}"
        if reason is not None and self.not_ready is None:
            logger.warning("agent %r claims no runs until this changes: %s", agent.name, reason)
        elif reason is None and self.not_ready is not None:
            logger.info("agent %r is ready again and claims runs (it was not: %s)", agent.name, self.not_ready)
        self.not_ready = reason
        return reason is None

    def _claim(self, limit: int) -> list[FlowRun]:
        """One claim call (counted in ``polls``); re-registers if the server forgot the agent."""
        agent = self.agent
        assert agent.agent_id is not None
        self._claim_began = time.monotonic()
        self._claim_id = claim_id = uuid4().hex
        self.claiming.set()
        try:
            if self.stopping.is_set():  # stopped just now: stop() may not have seen this claim's id
                return []
            runs = agent.client.claim_flow_runs(
                agent.agent_id, sorted(agent.labels), limit, self.settings.claim_wait, claim_id=claim_id
            )
        except NotFoundError:
            logger.warning("the server does not know agent %r (id %s): registering it again",
                           agent.name, agent.agent_id)  # fmt: skip
            agent.agent_id = agent.client.register_agent(agent.name, agent.kind, sorted(agent.labels))
            return []
        finally:
            agent.polls += 1
            self.claiming.clear()
            self._claim_id = None
        self._last_contact = time.monotonic()
        if runs:
            logger.info("agent %r claimed %d flow run(s): %s", agent.name, len(runs), ", ".join(r.id for r in runs))
        return runs

    # -- deploying -----------------------------------------------------------------------

    def _deploy(self, flow_run: FlowRun) -> None:
        """Deploy one claimed run in a worker thread: put it back if stopping, fail it if deploy raises."""
        agent = self.agent
        try:
            if self.stopping.is_set():
                agent.put_back(flow_run, "the agent stopped before deploying it")
                return
            try:
                agent.deploy_flow(flow_run)
            except DeployLater as exc:
                logger.warning("agent %r can't deploy flow run %s now: %s", agent.name, flow_run.id, exc)
                agent.put_back(flow_run, str(exc))
            except Exception as exc:
                logger.warning("agent %r could not deploy flow run %s: %s", agent.name, flow_run.id, exc)
                reason = f"{type(exc).__name__}: {exc}"
                agent.fail_flow_run(flow_run.id, f"agent {agent.name!r} could not deploy the flow run: {reason}")
            else:
                logger.info("agent %r deployed flow run %s (%s of %s)",
                            agent.name, flow_run.id, flow_run.run_name, flow_run.flow_name)  # fmt: skip
        finally:
            with self._slots:
                self.in_flight -= 1
            self.slot_freed()

    def slot_freed(self) -> None:
        """A run gave its slot back: wake the claim loop if it waits for a slot (not while it rests)."""
        if self._waiting_for_slot:
            self.wake.set()

    # -- watching ------------------------------------------------------------------------

    def _monitor(self, done: threading.Event) -> None:
        """Calls ``check_deployments``, enforces cancels and sends heartbeats until ``done``."""
        agent = self.agent
        while not done.wait(MONITOR_INTERVAL):
            try:
                agent.check_deployments()
            except Exception:
                logger.exception("agent %r: checking its deployments failed", agent.name)
            try:
                self._stop_cancelled_if_due()
            except Exception:
                logger.exception("agent %r: stopping cancelled runs failed", agent.name)
            self._heartbeat_if_due()

    def _heartbeat_if_due(self) -> None:
        agent = self.agent
        now, interval = time.monotonic(), self.settings.heartbeat_interval
        if agent.agent_id is None or now - self._last_contact < interval:
            return
        if self.claiming.is_set() and now - self._claim_began < self.settings.claim_wait + interval:
            return  # a long-poll in flight: the server saw the agent when it began (last_seen)
        try:
            agent.client.agent_heartbeat(agent.agent_id)
        except ApiError as exc:
            logger.warning("agent %r: heartbeat failed: %s", agent.name, exc)
        else:
            self._last_contact = time.monotonic()

    def _stop_cancelled_if_due(self) -> None:
        """Stop the processes of this agent's runs that have been Cancelling for ``cancel_grace`` seconds."""
        agent = self.agent
        now = time.monotonic()
        if now - self._last_cancel_check < CANCEL_CHECK_INTERVAL:
            return
        self._last_cancel_check = now
        deployed = agent.deployed_flow_run_ids()
        if not deployed:
            self._cancelling.clear()
            return
        try:
            runs = agent.client.list_flow_runs(state=FlowRunState.CANCELLING, limit=1000)
        except ApiError as exc:
            logger.warning("agent %r can't look for cancelled runs: %s", agent.name, exc)
            return
        mine = [r.id for r in runs if r.id in deployed and agent.holds(r)]
        self._cancelling = {run_id: self._cancelling.get(run_id, now) for run_id in mine}
        grace = self.settings.cancel_grace
        for run_id, since in list(self._cancelling.items()):
            if now - since >= grace:
                logger.warning("agent %r stops flow run %s: still running %gs after it was cancelled",
                               agent.name, run_id, grace)  # fmt: skip
                reason = f"{grace:g}s after the run was cancelled (agent.cancel_grace; a task was still running)"
                agent.stop_flow_run(run_id, reason)
                self._cancelling.pop(run_id, None)

    # -- signals -------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        if self.stopping.is_set():
            self.forced.set()
            logger.warning("agent %r got %s again: stopping what it started now", self.agent.name, name)
        else:
            logger.info("agent %r got %s: it stops claiming and finishes what it holds", self.agent.name, name)
            self.stop()
