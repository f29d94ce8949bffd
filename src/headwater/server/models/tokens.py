"""API tokens: made here, stored as SHA-256 hashes, checked on every request when auth is on."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from headwater.schemas.tokens import TokenCreate, TokenCreated
from headwater.server.database.orm import TokenRow
from headwater.server.models.common import new_id, utcnow

#: Each scope and the scopes it includes.
SCOPES = {"agent": {"agent"}, "user": {"agent", "user"}, "admin": {"agent", "user", "admin"}}


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, body: TokenCreate) -> TokenCreated:
    """A new random token; only its hash is kept, so this is the one time it is shown."""
    token = "hw_" + secrets.token_urlsafe(32)
    row = TokenRow(id=new_id(), name=body.name, scope=body.scope, token_hash=_hash(token), created=utcnow())
    session.add(row)
    session.commit()
    return TokenCreated(id=row.id, name=row.name, scope=body.scope, token=token, created=row.created)


def scope_of(session: Session, token: str) -> str | None:
    """The scope of a valid token, or None."""
    return session.scalar(select(TokenRow.scope).where(TokenRow.token_hash == _hash(token)))


def token_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(TokenRow)) or 0
