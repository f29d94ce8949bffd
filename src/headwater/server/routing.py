"""The route class every router uses: it refuses query parameters the route does not take.

Without this a misspelt filter (``?labels=x`` for ``?label=x``) would be ignored
and the answer would silently hold everything. The allowed names are the
route's own declared query parameters (its dependencies' included), so the check
can't drift from the routes. It wraps the route's handler rather than being a
FastAPI dependency: a request without a query string pays one dict lookup.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from headwater.server.errors import Invalid


class CheckedRoute(APIRoute):
    """An ``APIRoute`` that answers 422, naming the names it takes, for an unknown query parameter."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        allowed = query_names(self.dependant)

        async def route(request: Request) -> Response:
            if request.scope.get("query_string"):
                unknown = sorted({name for name in request.query_params if name not in allowed})
                if unknown:
                    raise Invalid(unknown_query_message(unknown, allowed, request.method, request.url.path))
            return await handler(request)

        return route


def query_names(dependant: Any) -> frozenset[str]:
    """The query names a route's dependant declares, its sub-dependencies' included."""
    names: set[str] = set()
    stack = [dependant]
    while stack:
        node = stack.pop()
        names.update(field.alias for field in node.query_params)
        stack.extend(node.dependencies)
    return frozenset(names)


def unknown_query_message(unknown: list[str], allowed: frozenset[str], method: str, path: str) -> str:
    """``GET /api/v1/runs has no query parameter 'labels'; did you mean 'labels' → 'label'? (it takes: …)``."""
    listed = ", ".join(repr(name) for name in unknown)
    noun = "parameter" if len(unknown) == 1 else "parameters"
    message = f"{method} {path} has no query {noun} {listed}"
    hints = [f"{name!r} → {match[0]!r}" for name in unknown if (match := difflib.get_close_matches(name, allowed, 1))]
    if hints:
        message += f"; did you mean {', '.join(hints)}?"
    takes = ", ".join(sorted(allowed)) if allowed else "none"
    return f"{message} (it takes: {takes})"
