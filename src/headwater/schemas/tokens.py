"""API tokens on the wire. Scopes: agent < user < admin."""

from __future__ import annotations

import datetime
from typing import Literal

from headwater.schemas.common import Model, Name

Scope = Literal["agent", "user", "admin"]


class TokenCreate(Model):
    name: Name
    scope: Scope


class TokenCreated(Model):
    id: str
    name: str
    scope: Scope
    #: shown once; the server keeps only its hash.
    token: str
    created: datetime.datetime
