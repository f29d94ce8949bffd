"""Helpers the model modules share."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from headwater.schemas.common import utcnow as utcnow
from headwater.server.errors import NotFound

T = TypeVar("T")


def new_id() -> str:
    return str(uuid.uuid4())


def get_row(session: Session, row_type: type[T], row_id: Any) -> T | None:
    """The row with this id, or None (also for an id that can't be one: not a string, over 36 characters)."""
    return session.get(row_type, row_id) if isinstance(row_id, str) and len(row_id) <= 36 else None


def get_or_404(session: Session, row_type: type[T], row_id: Any, what: str) -> T:
    """The row with this id, or NotFound naming ``what`` and the id."""
    row = get_row(session, row_type, row_id)
    if row is None:
        raise NotFound(f"{what} {row_id!r} not found")
    return row
