"""The secrets routes: write, list and delete need scope user; reading one value needs only agent.

The flow-run process reads the secrets its flow's storage names with the
agent's token (``environments/execution.py``), so ``GET /secrets/{name}`` is the
one route an agent token may use here. A request that does not fit the schema
gets the usual 422 naming the field, but without the ``input`` pydantic would
echo: that could be the value. Queries: ``server/models/secrets.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError

from headwater.schemas.secrets import SecretInfo, SecretName, SecretValue, SecretWrite
from headwater.server.deps import AGENT, USER, db
from headwater.server.identity import caller_of
from headwater.server.models import secrets
from headwater.server.routing import CheckedRoute


class QuietValidationRoute(CheckedRoute):
    """A route (query names checked) whose 422 bodies name the field and the problem, never the value that was sent."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                quiet = [{k: v for k, v in error.items() if k not in ("input", "ctx")} for error in exc.errors()]
                raise RequestValidationError(quiet) from None

        return route


router = APIRouter(prefix="/secrets", tags=["secrets"], route_class=QuietValidationRoute)


@router.get("", response_model=list[SecretInfo], dependencies=[USER])
def list_secrets(request: Request) -> list[SecretInfo]:
    """Every secret's name, creation and update time, by name. Values are never listed."""
    with db(request) as session:
        return secrets.list_secrets(session)


@router.put(
    "/{name:path}",
    response_model=SecretInfo,
    dependencies=[USER],
    responses={201: {"model": SecretInfo, "description": "Created"}},
)
def set_secret(name: SecretName, body: SecretWrite, request: Request, response: Response) -> SecretInfo:
    """Create (201) or replace (200) the secret ``name``; its value is encrypted before it is stored."""
    with db(request) as session:
        info, created = secrets.set_secret(session, name, body, request.app.state.secret_key)
    response.status_code = 201 if created else 200
    return info


@router.get("/{name:path}", response_model=SecretValue, dependencies=[AGENT])
def get_secret(name: SecretName, request: Request) -> SecretValue:
    """The secret with its value (an agent's token may read it: flow-run processes need it).

    An agent token reads a secret scoped to projects only while one of its agents holds a run of one of them.
    """
    caller = caller_of(request)
    with db(request) as session:
        if caller.is_agent and caller.identity is not None:
            secrets.check_reader(session, name, caller.identity)
        return secrets.get_secret(session, name, request.app.state.secret_key)


@router.delete("/{name:path}", status_code=204, dependencies=[USER])
def delete_secret(name: SecretName, request: Request) -> Response:
    with db(request) as session:
        secrets.delete_secret(session, name)
    return Response(status_code=204)
