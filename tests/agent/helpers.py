"""Helpers of the agent tests: unique names, agents running in threads, waiting, the stand-in program."""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from headwater.agent import Agent
from headwater.config.settings import AgentSettings

#: The stand-in flow-run program, as a command.
STANDIN = [sys.executable, str(Path(__file__).with_name("standin.py"))]

#: Agent settings that keep tests quick: short claims, frequent heartbeats.
FAST = AgentSettings(claim_wait=0.5, poll_interval=0.1, heartbeat_interval=5.0, max_workers=4, stop_timeout=15.0)


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@contextmanager
def running(agent: Agent, timeout: float = 30.0) -> Iterator[Agent]:
    """``agent.start()`` in a thread, registered when this yields; stopped and joined after (errors re-raised)."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            agent.start()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while agent.agent_id is None and not errors and thread.is_alive():
        assert time.monotonic() < deadline, "the agent did not register"
        time.sleep(0.01)
    try:
        yield agent
    finally:
        agent.stop()
        thread.join(timeout)
        assert not thread.is_alive(), f"{agent!r} did not stop within {timeout}s"
        if errors:
            raise errors[0]


def wait_for(condition: Callable[[], object], timeout: float = 10.0, what: str = "the condition") -> None:
    """Poll ``condition()`` until it is true; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout}s"
        time.sleep(0.02)
