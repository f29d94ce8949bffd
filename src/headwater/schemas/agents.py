"""Agents on the wire, and the claim call agents make."""

from __future__ import annotations

import datetime

from pydantic import Field

from headwater.schemas.common import Labels, Model, Name, RequestId
from headwater.schemas.flow_runs import FlowRun


class AgentRegister(Model):
    name: Name
    kind: Name
    labels: Labels = Field(default_factory=list)


class Agent(Model):
    id: str
    name: str
    kind: str
    labels: list[str]
    created: datetime.datetime
    last_seen: datetime.datetime
    live: bool = Field(
        True,
        description="Seen within the server's server.agent_seen_window (the window explain uses); "
        "GET /agents sets it, the other answers are made as the agent is seen.",
    )


class ClaimRequest(Model):
    """Ask for due runs this agent can take; waits up to ``wait`` seconds for one."""

    agent_id: str
    labels: Labels = Field(default_factory=list)
    limit: int = Field(1, ge=1, le=100)
    wait: float = Field(0.0, ge=0, le=300)
    claim_id: RequestId | None = Field(
        None,
        description="An id the agent makes per claim and sends again when it retries the claim: the retry "
        "answers the runs the first try took, instead of taking (and stranding) others.",
    )


class ClaimRelease(Model):
    """End a waiting claim now (its agent is stopping): the claim answers what it holds, taking nothing more."""

    agent_id: str = Field(min_length=1, max_length=64)
    claim_id: RequestId


class ClaimResponse(Model):
    flow_runs: list[FlowRun]
