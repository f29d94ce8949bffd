"""Secret queries: values are encrypted with the server's key before they reach the database.

Route: ``server/api/secrets.py``; the key and the encryption: ``server/secret_key.py``.
Names arrive checked and upper-cased (``schemas/secrets.py``). No value is ever
put in an error message.
"""

from __future__ import annotations

from cryptography.fernet import InvalidToken
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from headwater.core.run_states import HELD
from headwater.schemas.secrets import SecretInfo, SecretValue, SecretWrite
from headwater.server.database.orm import AgentRow, FlowRow, FlowRunRow, ProjectRow, SecretRow
from headwater.server.errors import ApiError, Conflict, Forbidden, NotFound
from headwater.server.models.common import utcnow
from headwater.server.secret_key import SecretKey, SecretKeyError


def _info(row: SecretRow) -> SecretInfo:
    return SecretInfo(name=row.name, projects=row.projects, created=row.created, updated=row.updated)


def _missing(name: str) -> NotFound:
    return NotFound(
        f"secret {name!r} not found; set it with `headwater create secret {name}` (or Client.set_secret)"
    )


def set_secret(session: Session, name: str, body: SecretWrite, key: SecretKey) -> tuple[SecretInfo, bool]:
    """Create or replace the secret ``name``; its info, and whether it was created."""
    ciphertext, key_id = _encrypt(key, body.value.get_secret_value())
    projects = sorted(set(body.projects)) if body.projects is not None else None
    now = utcnow()
    for _ in range(2):  # a concurrent create of the same name: the second try replaces it
        row = session.get(SecretRow, name)
        created = row is None
        if row is None:
            row = SecretRow(
                name=name, ciphertext=ciphertext, key_id=key_id, projects=projects, created=now, updated=now
            )
            session.add(row)
        else:
            row.ciphertext, row.key_id, row.updated, row.projects = ciphertext, key_id, now, projects
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            continue
        return _info(row), created
    raise Conflict(f"secret {name!r} was written by another request at the same time; try again")


def list_secrets(session: Session) -> list[SecretInfo]:
    """Every secret's name and times, by name; never a value."""
    return [_info(row) for row in session.scalars(select(SecretRow).order_by(SecretRow.name))]


def check_reader(session: Session, name: str, identity: str) -> None:
    """An agent token (``identity``) reads a project-scoped secret only while one of its agents holds a run
    of one of the secret's projects (Forbidden otherwise; an unscoped secret any agent token reads)."""
    row = session.get(SecretRow, name)
    if row is None or row.projects is None:
        return
    held = session.scalar(
        select(FlowRunRow.id)
        .join(AgentRow, AgentRow.id == FlowRunRow.agent_id)
        .join(FlowRow, FlowRow.id == FlowRunRow.flow_id)
        .join(ProjectRow, ProjectRow.id == FlowRow.project_id)
        .where(AgentRow.owner == identity, FlowRunRow.state.in_(sorted(HELD)), ProjectRow.name.in_(row.projects))
        .limit(1)
    )
    if held is None:
        raise Forbidden(
            f"secret {name!r} is scoped to project(s) {', '.join(row.projects)}, and no agent of this token holds a "
            "run of them now: an agent token reads it only for the runs it holds"
        )


def get_secret(session: Session, name: str, key: SecretKey) -> SecretValue:
    """The secret with its value decrypted.

    Raises:
        NotFound: no such secret.
        Conflict: it was encrypted with another key, or its stored value is damaged.
    """
    row = session.get(SecretRow, name)
    if row is None:
        raise _missing(name)
    current = _key_id(key)
    if row.key_id != current:
        raise Conflict(
            f"secret {name!r} was encrypted with another key (key id {row.key_id}) than this server's, "
            f"{key.describe()} (key id {current}); start the server with the key the secrets were written "
            f"with (server.secrets_key, or the key file {key.path.name} in its home), or set the secret again "
            f"with `headwater create secret {name}`"
        )
    try:
        value = key.decrypt(row.ciphertext)
    except (InvalidToken, ValueError):
        raise Conflict(
            f"the stored value of secret {name!r} is damaged (it fails its integrity check under the right "
            f"key); set it again with `headwater create secret {name}`"
        ) from None
    return SecretValue(
        name=row.name, value=SecretStr(value), projects=row.projects, created=row.created, updated=row.updated
    )


def delete_secret(session: Session, name: str) -> None:
    row = session.get(SecretRow, name)
    if row is None:
        raise _missing(name)
    session.delete(row)
    session.commit()


def _key_id(key: SecretKey) -> str:
    try:
        return key.key_id
    except SecretKeyError as exc:
        raise ApiError(str(exc)) from None


def _encrypt(key: SecretKey, value: str) -> tuple[str, str]:
    try:
        return key.encrypt(value), key.key_id
    except SecretKeyError as exc:
        raise ApiError(str(exc)) from None
