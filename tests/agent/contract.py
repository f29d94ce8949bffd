"""The contract every agent passes (STYLE.md rule 4): claim, deploy, fail, cancel, env vars, sharing runs.

A platform's test module subclasses :class:`AgentContract` as ``Test<Kind>Agent``
(the LocalAgent's takes :class:`LoopContract`, which adds the claim loop's own rules — the
same code for every platform, so tested once: max_polls, the label rule, put-back on stop)
and overrides :meth:`~AgentContract.make_agent`: an agent of that kind, against
the live ``server``, whose deployed flow-run process is the stand-in
(``standin.py``) and passes on the ``STANDIN_*`` variables it is given in
``env_vars``. Everything runs for real: a server process, agents in threads,
flow-run processes (or containers) that report through the client.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from headwater.agent import Agent
from headwater.client import Client
from headwater.server.process import ServerProcess

from .helpers import FAST, running, unique, wait_for


class AgentContract:
    #: whether this kind runs flow runs in an image (then HEADWATER__CONTEXT__IMAGE is passed).
    uses_image: ClassVar[bool] = False
    #: runs the two-agent test shares out (lower it for slow platforms).
    many_runs: ClassVar[int] = 50

    def make_agent(self, server: ServerProcess, **kwargs: Any) -> Agent:
        """An agent of this kind for ``server`` whose flow-run process is the stand-in.

        ``kwargs`` are Agent arguments (``labels``, ``env_vars``, ``max_polls``,
        ``name``, ``settings``, ...); default ``settings`` :data:`FAST`.
        """
        raise NotImplementedError

    def agent(self, server: ServerProcess, **kwargs: Any) -> Agent:
        kwargs.setdefault("settings", FAST)
        kwargs.setdefault("name", unique("agent"))
        return self.make_agent(server, **kwargs)

    # -- claim and deploy ------------------------------------------------------------

    def test_claims_and_deploys_a_run(self, server: ServerProcess, client: Client, flow_id: str) -> None:
        label = unique("label")
        run_id = client.create_flow_run(flow_id, labels=[label])
        with running(self.agent(server, labels=[label])) as agent:
            run = client.wait_for_flow_run(run_id, timeout=30)
        assert run.state == "Success", run.state_message
        assert run.agent_id == agent.agent_id

    def test_a_deploy_error_fails_the_run_with_its_message(
        self, server: ServerProcess, client: Client, flow_id: str
    ) -> None:
        label = unique("label")
        run_id = client.create_flow_run(flow_id, labels=[label])
        agent = self.agent(server, labels=[label])

        def deploy_flow(flow_run: Any) -> None:
            raise RuntimeError("no capacity left on the cluster")

        agent.deploy_flow = deploy_flow
        with running(agent):
            run = client.wait_for_flow_run(run_id, timeout=30)
        assert run.state == "Failed"
        assert "could not deploy" in (run.state_message or "")
        assert "RuntimeError: no capacity left on the cluster" in (run.state_message or "")
        logs = [r.message for r in client.get_flow_run_logs(run_id)]
        assert any("no capacity left on the cluster" in line for line in logs), logs

    def test_a_process_that_dies_without_reporting_fails_the_run_with_its_exit_code(
        self, server: ServerProcess, client: Client, flow_id: str
    ) -> None:
        label = unique("label")
        run_id = client.create_flow_run(flow_id, labels=[label])
        with running(self.agent(server, labels=[label], env_vars={"STANDIN_EXIT": "3"})):
            run = client.wait_for_flow_run(run_id, timeout=30)
        assert run.state == "Failed"
        assert "exited with code 3" in (run.state_message or ""), run.state_message

    def test_a_process_that_fails_after_its_run_was_recovered_leaves_the_run_to_its_new_agent(
        self, server: ServerProcess, client: Client, flow_id: str, tmp_path: Path
    ) -> None:
        # The server's recovery gives a run back (Scheduled, no agent) when its process is slow to
        # start; another agent claims and runs it; the slow process then finds the run not its own
        # and exits non-zero. Its agent must not fail the run: it is the other agent's now.
        label, gate = unique("label"), tmp_path / "gate"
        run_id = client.create_flow_run(flow_id, labels=[label])
        slow = self.agent(server, labels=[label], env_vars={"STANDIN_GATE": str(gate)})
        with running(slow):
            wait_for(lambda: slow.deployed_flow_run_ids() == {run_id}, 30, "the slow agent's process")
            slow.ready = lambda: "claims nothing more in this test"  # type: ignore[method-assign]
            polls = -1
            while polls != slow.polls:  # let a claim call in flight end (claim_wait is 0.5 s)
                polls = slow.polls
                time.sleep(1.0)
            submitted = client.get_flow_run(run_id)
            client.set_flow_run_state(run_id, "Scheduled", version=submitted.version, message="recovered (test)")
            with running(self.agent(server, labels=[label], env_vars={"STANDIN_SLEEP": "5"})) as other:
                wait_for(lambda: client.get_flow_run(run_id).state == "Running", 30, "the other agent's run")
                gate.touch()
                wait_for(lambda: not slow.deployed_flow_run_ids(), 30, "the slow process exiting")
                run = client.wait_for_flow_run(run_id, timeout=60)
        assert run.state == "Success", (run.state, run.state_message)
        assert run.agent_id == other.agent_id
        messages = [r.message for r in client.get_flow_run_logs(run_id)]
        assert not any("exited with" in line for line in messages), messages

    # -- cancellation ------------------------------------------------------------------

    @contextmanager
    def cancelled_while_running(
        self, server: ServerProcess, client: Client, flow_id: str, cancel_grace: float, sleep: float
    ) -> Iterator[tuple[Agent, str]]:
        """A running agent whose stand-in (staying Running ``sleep`` s) was just cancelled: ``(agent, run id)``."""
        label = unique("label")
        run_id = client.create_flow_run(flow_id, labels=[label])
        settings = FAST.model_copy(update={"cancel_grace": cancel_grace})
        agent = self.agent(server, labels=[label], env_vars={"STANDIN_SLEEP": str(sleep)}, settings=settings)
        with running(agent):
            wait_for(lambda: client.get_flow_run(run_id).state == "Running", 30, "the run starting")
            wait_for(lambda: agent.deployed_flow_run_ids() == {run_id}, 10, "the agent seeing its process")
            client.cancel_flow_run(run_id)
            yield agent, run_id

    def test_a_run_still_running_cancel_grace_after_its_cancel_is_stopped_and_ends_cancelled(
        self, server: ServerProcess, client: Client, flow_id: str
    ) -> None:
        with self.cancelled_while_running(server, client, flow_id, cancel_grace=1.0, sleep=120) as (agent, run_id):
            run = client.wait_for_flow_run(run_id, timeout=30)
            wait_for(lambda: agent.deployed_flow_run_ids() == set(), 10, "the process going")
        assert run.state == "Cancelled", (run.state, run.state_message)
        message = run.state_message or ""
        assert f"stopped by agent {agent.name!r} 1s after the run was cancelled" in message, message

    def test_a_cancelled_run_gets_cancel_grace_to_end_by_itself(
        self, server: ServerProcess, client: Client, flow_id: str
    ) -> None:
        with self.cancelled_while_running(server, client, flow_id, cancel_grace=60.0, sleep=8) as (agent, run_id):
            time.sleep(4.5)  # two of the agent's looks for cancelled runs
            assert client.get_flow_run(run_id).state == "Cancelling"
            assert agent.deployed_flow_run_ids() == {run_id}
            run = client.wait_for_flow_run(run_id, timeout=30)
        # the stand-in was left to end by itself: it reports Success (a cancel that came too late)
        assert run.state == "Success", (run.state, run.state_message)

    # -- environment ----------------------------------------------------------------------

    def test_env_vars_reach_the_process_and_cannot_override_the_required_ones(
        self, server: ServerProcess, client: Client, flow_id: str, tmp_path: Path
    ) -> None:
        label = unique("label")
        dump = tmp_path / "env.json"
        run_id = client.create_flow_run(flow_id, labels=[label])
        env_vars = {
            "HEADWATER__CONTEXT__FLOW_RUN_ID": "not-this-run",
            "HEADWATER__CONTEXT__FLOW_ID": "not-this-flow",
            "HEADWATER__API__URL": "http://127.0.0.1:9",
            "MY_SETTING": "42",
            "STANDIN_DUMP_ENV": str(dump),
        }
        with running(self.agent(server, labels=[label], env_vars=env_vars)):
            assert client.wait_for_flow_run(run_id, timeout=30).state == "Success"
        env = json.loads(dump.read_text())
        assert env["HEADWATER__CONTEXT__FLOW_RUN_ID"] == run_id
        assert env["HEADWATER__CONTEXT__FLOW_ID"] == flow_id
        assert env["HEADWATER__API__URL"] == server.url
        assert env["MY_SETTING"] == "42"
        assert "HEADWATER__API__TOKEN" not in env  # none configured
        assert ("HEADWATER__CONTEXT__IMAGE" in env) == self.uses_image

    # -- sharing --------------------------------------------------------------------------------

    def test_two_agents_run_each_of_many_runs_exactly_once(
        self, server: ServerProcess, client: Client, flow_id: str, tmp_path: Path
    ) -> None:
        label = unique("label")
        ledger = tmp_path / "ran.txt"
        run_ids = [client.create_flow_run(flow_id, labels=[label]) for _ in range(self.many_runs)]
        env_vars = {"STANDIN_APPEND": str(ledger)}
        settings = FAST.model_copy(update={"max_workers": 5})
        first = self.agent(server, labels=[label], env_vars=env_vars, settings=settings)
        second = self.agent(server, labels=[label], env_vars=env_vars, settings=settings)
        with running(first), running(second):
            for run_id in run_ids:
                assert client.wait_for_flow_run(run_id, timeout=60).state == "Success"
        ran = ledger.read_text().split()
        assert sorted(ran) == sorted(run_ids)  # each once: no duplicates, none missing
        takers = {client.get_flow_run(run_id).agent_id for run_id in run_ids}
        assert takers <= {first.agent_id, second.agent_id}


class LoopContract(AgentContract):
    """The claim loop's own rules (``agent/loop.py``: the same code for every platform), run once on
    an agent whose deploys are cheap (the LocalAgent): max_polls, the label rule, put-back on stop.
    """

    def test_max_polls_ends_the_loop_after_that_many_claims(self, server: ServerProcess) -> None:
        agent = self.agent(
            server, labels=[unique("label")], max_polls=3, settings=FAST.model_copy(update={"claim_wait": 0.1})
        )
        agent.start()  # in the main thread: installs and restores signal handlers
        assert agent.polls == 3

    def test_max_polls_finishes_what_it_claimed(self, server: ServerProcess, client: Client, flow_id: str) -> None:
        label = unique("label")
        run_id = client.create_flow_run(flow_id, labels=[label])
        self.agent(server, labels=[label], max_polls=1).start()
        assert client.wait_for_flow_run(run_id, timeout=30).state == "Success"

    def test_labels_rule(self, server: ServerProcess, client: Client, flow_id: str) -> None:
        dev, staging = unique("dev"), unique("staging")
        dev_run = client.create_flow_run(flow_id, labels=[dev])
        both_run = client.create_flow_run(flow_id, labels=[dev, staging])
        with running(self.agent(server, labels=[dev])) as only_dev:
            assert client.wait_for_flow_run(dev_run, timeout=30).state == "Success"
            seen = only_dev.polls
            wait_for(lambda: only_dev.polls >= seen + 2, what="a whole claim call since")
            assert client.get_flow_run(both_run).state == "Scheduled"
        with running(self.agent(server, labels=[dev, staging])) as both:
            run = client.wait_for_flow_run(both_run, timeout=30)
        assert run.state == "Success" and run.agent_id == both.agent_id
        assert client.get_flow_run(dev_run).agent_id == only_dev.agent_id

    def test_an_agent_with_labels_takes_a_run_with_fewer(
        self, server: ServerProcess, client: Client, flow_id: str
    ) -> None:
        dev, staging = unique("dev"), unique("staging")
        run_id = client.create_flow_run(flow_id, labels=[dev])
        with running(self.agent(server, labels=[dev, staging])):
            assert client.wait_for_flow_run(run_id, timeout=30).state == "Success"

    def test_stop_puts_back_a_run_claimed_while_stopping(
        self, server: ServerProcess, client: Client, flow_id: str
    ) -> None:
        label = unique("label")
        settings = FAST.model_copy(update={"claim_wait": 10.0})
        agent = self.agent(server, labels=[label], settings=settings)
        # its release lost on the way (e.g. sent to a replica that can't pass it on), so the claim
        # in flight is still waiting when the run comes
        agent._loop._release_claim = lambda: None  # type: ignore[method-assign]
        with running(agent):
            wait_for(agent._loop.claiming.is_set, what="a claim call")
            agent.stop()  # the long-poll claim is in flight: it ends with the run, which must go back
            run_id = client.create_flow_run(flow_id, labels=[label])
        run = client.get_flow_run(run_id)
        assert run.state == "Scheduled" and run.agent_id is None, run
        assert "put back" in (run.state_message or "")
        assert any("put back" in r.message for r in client.get_flow_run_logs(run_id))
