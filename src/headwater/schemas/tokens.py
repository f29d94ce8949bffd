"""API tokens on the wire. Scopes: agent < user < admin.

An agent token may be bound to one agent name (``agent``) or to a named pool of
agents (``pool``); otherwise it is an identity of its own. It acts only for the
agents registered with its identity (``server/identity.py``, ``docs/security.md``).
"""

from __future__ import annotations

import datetime
from typing import Literal

from pydantic import Field, model_validator

from headwater.schemas.common import Model, Name

Scope = Literal["agent", "user", "admin"]

#: The longest lifetime a token can be given, in seconds (ten years).
MAX_LIFETIME = 10 * 366 * 24 * 3600


class TokenCreate(Model):
    name: Name
    scope: Scope
    agent: Name | None = Field(None, description="Scope agent only: the one agent name this token acts for.")
    pool: Name | None = Field(
        None, description="Scope agent only: a named pool; every token of the pool acts for every agent of it."
    )
    expires_in: float | None = Field(
        None, gt=0, le=MAX_LIFETIME, description="Seconds until the token stops working; default never."
    )

    @model_validator(mode="after")
    def _binding(self) -> TokenCreate:
        if (self.agent or self.pool) and self.scope != "agent":
            raise ValueError("agent and pool bind an agent token: give them only with scope 'agent'")
        if self.agent and self.pool:
            raise ValueError("give agent (one agent) or pool (a pool of agents), not both")
        return self


class TokenInfo(Model):
    """A token as listed: never the token itself (the server keeps only its hash)."""

    id: str
    name: str
    scope: Scope
    agent: str | None = None
    pool: str | None = None
    created: datetime.datetime
    expires: datetime.datetime | None = None


class TokenCreated(TokenInfo):
    #: shown once; the server keeps only its hash.
    token: str


class TokenSelf(Model):
    """What the caller's own token may do (``GET /whoami``): the web UI hides what it can't write."""

    auth: bool = Field(description="Whether this server needs tokens at all.")
    token: TokenInfo | None = Field(None, description="The caller's token; None when auth is off.")
    can_write: bool = Field(description="Whether the caller may create and cancel runs (scope user or admin).")
