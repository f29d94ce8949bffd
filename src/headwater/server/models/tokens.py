"""API tokens: made here, stored as SHA-256 hashes, looked up on every request when auth is on.

Route: ``server/api/tokens.py``; what a token may do: ``server/identity.py``.
"""

from __future__ import annotations

import datetime
import hashlib
import secrets

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from headwater.schemas.tokens import TokenCreate, TokenCreated, TokenInfo
from headwater.server.database.orm import TokenRow
from headwater.server.errors import NotFound
from headwater.server.models.common import get_row, new_id, utcnow

#: Each scope and the scopes it includes.
SCOPES = {"agent": {"agent"}, "user": {"agent", "user"}, "admin": {"agent", "user", "admin"}}


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _info(row: TokenRow) -> TokenInfo:
    return TokenInfo(
        id=row.id, name=row.name, scope=row.scope, agent=row.agent, pool=row.pool, created=row.created,
        expires=row.expires,
    )  # fmt: skip


def create_token(session: Session, body: TokenCreate) -> TokenCreated:
    """A new random token; only its hash is kept, so this is the one time it is shown."""
    token = "hw_" + secrets.token_urlsafe(32)
    now = utcnow()
    expires = now + datetime.timedelta(seconds=body.expires_in) if body.expires_in is not None else None
    row = TokenRow(
        id=new_id(), name=body.name, scope=body.scope, token_hash=_hash(token), created=now,
        agent=body.agent, pool=body.pool, expires=expires,
    )  # fmt: skip
    session.add(row)
    session.commit()
    return TokenCreated(**_info(row).model_dump(), token=token)


def lookup_token(session: Session, token: str) -> TokenInfo | None:
    """The token's row (expired ones too: the caller says so), or None for an unknown or revoked token."""
    row = session.scalar(select(TokenRow).where(TokenRow.token_hash == _hash(token)))
    return _info(row) if row is not None else None


def scope_of(session: Session, token: str) -> str | None:
    """The scope of a known token, or None."""
    found = lookup_token(session, token)
    return found.scope if found is not None else None


def get_token(session: Session, token_id: str) -> TokenInfo | None:
    """The token with this id (never its secret), or None."""
    row = get_row(session, TokenRow, token_id)
    return _info(row) if row is not None else None


def list_tokens(session: Session) -> list[TokenInfo]:
    """Every token (never its secret), oldest first."""
    return [_info(row) for row in session.scalars(select(TokenRow).order_by(TokenRow.created, TokenRow.id))]


def revoke_token(session: Session, token_id: str) -> TokenInfo:
    """Delete the token: it is refused from the next request on. NotFound for an unknown id."""
    row = get_row(session, TokenRow, token_id)
    if row is None:
        raise NotFound(f"token {token_id!r} not found; `headwater token ls` lists the tokens and their ids")
    info = _info(row)
    session.delete(row)
    session.commit()
    return info


def token_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(TokenRow)) or 0
