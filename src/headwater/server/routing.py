"""The route class every router uses: it checks a request before the route sees it.

* Unknown query parameters are refused (422 naming the names the route takes):
  without this a misspelt filter (``?labels=x`` for ``?label=x``) would be ignored
  and the answer would silently hold everything. The allowed names are the
  route's own declared query parameters (its dependencies' included), so the
  check can't drift from the routes.
* A query value holding a lone UTF-16 surrogate is refused (422).
* A body larger than ``server.max_request_size`` is refused (413) before it is
  read past the limit, by its Content-Length or, sent chunked, while reading.
* A JSON body is parsed strictly (``strict_json``): NaN and Infinity, numbers that
  overflow a float, integers past ±(2**63-1), lone surrogates in strings or keys,
  and nesting deeper than ``MAX_DEPTH`` are refused with a 422 naming the problem
  and its JSON path. Nothing that a database can't store, or a later answer can't
  encode, gets past here. The parsed value is cached on the request, so FastAPI
  does not parse the body again.

It wraps the route's handler rather than being a FastAPI dependency: a request
without a query string or body pays one dict lookup. ``docs/limits.md`` is the
user's side.
"""

from __future__ import annotations

import difflib
import email.message
import functools
import json
import math
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.datastructures import DefaultPlaceholder
from fastapi.routing import APIRoute

from headwater.server.errors import Invalid, TooLarge

#: Deepest nesting of lists and objects a JSON body may have (the body itself is level 1).
MAX_DEPTH = 32
#: The integers every database column and JSON reader here can hold.
MAX_INT = 2**63 - 1

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_SURROGATE = re.compile("[\ud800-\udfff]")
#: A ``\\uD800``-``\\uDFFF`` escape in JSON text: only then can a parsed string hold a surrogate.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class CheckedRoute(APIRoute):
    """An ``APIRoute`` that refuses unknown query parameters, oversized bodies and JSON no database can hold.

    Its OpenAPI operation documents the error answers the route can give, each an
    ``ErrorBody`` (``detail``: a message, or FastAPI's list of field errors).
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        kwargs["responses"] = {**error_responses(path, kwargs), **(kwargs.get("responses") or {})}
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        allowed = query_names(self.dependant)
        takes_body = self.body_field is not None
        strict = getattr(self, "strict_content_type", True)
        # FastAPI reads a body without a Content-Type as JSON only when the route is not strict about it
        json_without_type = not (strict.value if isinstance(strict, DefaultPlaceholder) else strict)

        async def route(request: Request) -> Response:
            if request.scope.get("query_string"):
                check_query(request, allowed)
            if request.method in _BODY_METHODS:
                await read_body(request, takes_body, json_without_type)
            return await handler(request)

        return route


def error_responses(path: str, route: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    """The error answers a route can give, for its OpenAPI operation."""
    from headwater.schemas.common import ErrorBody

    def error(description: str) -> dict[str, Any]:
        return {"model": ErrorBody, "description": description}

    writes = bool(set(route.get("methods") or ()) & _BODY_METHODS)
    answers: dict[int | str, dict[str, Any]] = {
        422: error("Bad input: the detail names the field or value and what is wrong with it."),
        503: error("The database is full, busy, or cancelled the query (server.statement_timeout); try again."),
    }
    if route.get("dependencies"):
        answers[401] = error("No valid API token.")
        answers[403] = error("The token's scope or identity does not allow this.")
    if "{" in path or writes:
        answers[404] = error("Something the request names does not exist.")
    if writes:
        answers[409] = error("The request conflicts with the current state (the detail says which).")
        answers[413] = error("The body is over server.max_request_size (or the parameters over max_parameters_size).")
    return answers


def check_query(request: Request, allowed: frozenset[str]) -> None:
    """Invalid for a query parameter the route does not take, or a value that is not text."""
    unknown = sorted({name for name in request.query_params if name not in allowed})
    if unknown:
        raise Invalid(unknown_query_message(unknown, allowed, request.method, request.url.path))
    for name, value in request.query_params.multi_items():
        if _SURROGATE.search(value):
            raise Invalid(
                f"query parameter {name!r} holds a lone UTF-16 surrogate ({_escaped(value, 40)}), which is not a "
                "character; send UTF-8 text"
            )


# -- bodies -----------------------------------------------------------------------


async def read_body(request: Request, takes_body: bool, json_without_type: bool = False) -> None:
    """Read the body within ``server.max_request_size``; parse it strictly when the route takes JSON."""
    limit: int = request.app.state.settings.max_request_size
    length = request.headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise Invalid(f"the Content-Length header {length[:30]!r} is not a number of bytes") from None
        if declared > limit:
            raise TooLarge(too_large_message(request, f"{declared:,} bytes", limit))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(too_large_message(request, f"more than {limit:,} bytes", limit))
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # Starlette's own cache: FastAPI reads it from here
    if takes_body and body and is_json(request.headers.get("content-type"), json_without_type):
        parsed = strict_json(body)
        if parsed is not UNPARSED:
            request._json = parsed


def too_large_message(request: Request, size: str, limit: int) -> str:
    return (
        f"the body of {request.method} {request.url.path} is {size}, over the server's limit of {limit:,} bytes "
        "(setting server.max_request_size, env HEADWATER__SERVER__MAX_REQUEST_SIZE); send less per request, "
        "or raise the limit"
    )


def is_json(content_type: str | None, json_without_type: bool) -> bool:
    """Whether FastAPI would read a body with this content type as JSON."""
    if not content_type:
        return json_without_type
    return _is_json_type(content_type)


@functools.lru_cache(maxsize=64)
def _is_json_type(content_type: str) -> bool:
    """Parsing a content type costs about as much as a small body: clients send a few, each many times."""
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


class _Refused:
    """Stands in the parsed value for a number the parse hooks refuse; the walk finds its path."""

    __slots__ = ("problem",)

    def __init__(self, problem: str) -> None:
        self.problem = problem


UNPARSED = object()


def strict_json(body: bytes) -> Any:
    """The parsed body, or Invalid naming the first value no database here can hold, and where.

    Returns ``UNPARSED`` for text that is not JSON at all: FastAPI then answers its
    usual 422 with the position of the syntax error.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Invalid(f"the request body is not UTF-8 (bad byte at offset {exc.start}); send JSON as UTF-8") from None
    refused: list[_Refused] = []

    def constant(name: str) -> _Refused:
        refused.append(_Refused(f"{name} (JSON has no NaN or Infinity; send a finite number or null)"))
        return refused[-1]

    def number(literal: str) -> float | _Refused:
        value = float(literal)
        if math.isinf(value):
            refused.append(_Refused(f"the number {literal[:40]} (it overflows to infinity; send a finite number)"))
            return refused[-1]
        return value

    def integer(literal: str) -> int | _Refused:
        # 2**63-1 has 19 digits: a longer literal is out of range without converting it
        if len(literal) <= 20 and -MAX_INT <= (value := int(literal)) <= MAX_INT:
            return value
        shown = literal if len(literal) <= 40 else f"{literal[:20]}…({len(literal)} digits)"
        refused.append(_Refused(f"the integer {shown} (outside ±(2**63-1), the range that can be stored)"))
        return refused[-1]

    try:
        value = json.loads(text, parse_constant=constant, parse_float=number, parse_int=integer)
    except json.JSONDecodeError:
        return UNPARSED
    except RecursionError:
        raise Invalid(f"the request body nests lists or objects deeper than {MAX_DEPTH} levels; flatten it") from None
    strings = _SURROGATE_ESCAPE.search(text) is not None
    if refused or strings or text.count("[") + text.count("{") > MAX_DEPTH:
        problem = find_problem(value, strings=strings, numbers=bool(refused))
        if problem is not None:
            raise Invalid(problem)
    return value


def find_problem(value: Any, strings: bool = True, numbers: bool = True) -> str | None:
    """What in a parsed body can't be stored (a refused number, a lone surrogate, too deep), with its path.

    Only containers are walked; strings are searched when ``strings``, refused numbers looked
    for when ``numbers`` (a 1000-record log batch costs about a millisecond).
    """
    if not isinstance(value, dict | list):
        return _scalar_problem(value, (), strings, numbers)
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        container, path = stack.pop()
        if len(path) >= MAX_DEPTH:
            return (
                f"the request body nests lists or objects deeper than {MAX_DEPTH} levels (at {json_path(path)}); "
                "flatten it, or pass large data by reference"
            )
        items = container.items() if isinstance(container, dict) else enumerate(container)
        for key, child in items:
            if strings and isinstance(key, str) and _SURROGATE.search(key):
                return f"a key at {json_path(path)} {_surrogate_problem(key)}"
            if isinstance(child, dict | list):
                stack.append((child, (*path, key)))
            elif (strings or numbers) and (problem := _scalar_problem(child, (*path, key), strings, numbers)):
                return problem
    return None


def _scalar_problem(value: Any, path: tuple[str | int, ...], strings: bool, numbers: bool) -> str | None:
    if strings and isinstance(value, str) and _SURROGATE.search(value):
        return f"the string at {json_path(path)} {_surrogate_problem(value)}"
    if numbers and isinstance(value, _Refused):
        return f"the request body can't hold {value.problem} at {json_path(path)}"
    return None


def _surrogate_problem(text: str) -> str:
    return (
        f"holds a lone UTF-16 surrogate ({_escaped(text, 40)}), which is not a character and can't be stored; "
        "send valid Unicode text"
    )


def _escaped(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters and quoted with every non-ASCII character escaped: always encodable."""
    return json.dumps(text if len(text) <= limit else text[:limit] + "…")


def json_path(path: tuple[str | int, ...]) -> str:
    """``$.parameters.x[3]``, with odd keys quoted and escaped so the message itself is always encodable."""
    parts = ["$"]
    for step in path[:MAX_DEPTH + 1]:
        if isinstance(step, int):
            parts.append(f"[{step}]")
        elif step.isidentifier() and step.isascii() and len(step) <= 60:
            parts.append(f".{step}")
        else:
            parts.append(f"[{_escaped(step, 60)}]")
    return "".join(parts)


# -- query names --------------------------------------------------------------------


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
    listed = ", ".join(repr(name[:60]) for name in unknown)  # repr escapes surrogates: always encodable
    noun = "parameter" if len(unknown) == 1 else "parameters"
    message = f"{method} {path} has no query {noun} {listed}"
    hints = [f"{name!r} → {match[0]!r}" for name in unknown if (match := difflib.get_close_matches(name, allowed, 1))]
    if hints:
        message += f"; did you mean {', '.join(hints)}?"
    takes = ", ".join(sorted(allowed)) if allowed else "none"
    return f"{message} (it takes: {takes})"
