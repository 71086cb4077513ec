"""Requests that no endpoint takes: an unknown path, a method the path lacks, OPTIONS.

The guest endpoints' plain-ASGI path (``lean.py``) and Starlette answer them from here, so
both give the same answers, every one of them an RFC 7807 problem or no body at all:

* a path that no endpoint serves: 404 ``not-found``;
* a method the path does not serve: 405 ``method-not-allowed`` with ``Allow`` (RFC 9110
  §15.5.6 requires it);
* ``OPTIONS`` on a path that exists: 204 with ``Allow`` and no body (RFC 9110 §9.3.7). It
  needs no credentials, since it tells nothing that ``/v1/openapi.json`` does not.

``Allow`` lists every method of the path: its endpoints' methods, HEAD wherever GET is
(Starlette answers HEAD for each GET route), and OPTIONS.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Scope

from broker.api.headers import request_id
from broker.api.problem import Parts, parts_response, problem_parts
from broker.errors import MethodNotAllowed, NotFound

OPTIONS = "OPTIONS"


def allow_value(methods: Iterable[str]) -> bytes:
    """The ``Allow`` header's value for a path that serves ``methods``."""
    return ", ".join(sorted({*methods, OPTIONS})).encode()


def method_answer(method: str, allowed: Iterable[str], request_id: str | None) -> Parts:
    """The answer to ``method`` on a path that exists but serves only ``allowed``."""
    allow = allow_value(allowed)
    if method == OPTIONS:
        return 204, b"", b"", ((b"allow", allow),)
    status, body, media, headers = problem_parts(
        MethodNotAllowed(f"{method} is not allowed on this path; it allows {allow.decode()}"),
        request_id,
    )
    return status, body, media, (*headers, (b"allow", allow))


def unknown_path(request_id: str | None) -> Parts:
    # The detail does not repeat the path: nothing the client sent is echoed back.
    return problem_parts(
        NotFound("no endpoint has this path; the API is described at /v1/openapi.json"),
        request_id,
    )


def route_methods(routes: Sequence[BaseRoute], scope: Scope) -> set[str]:
    """The methods of every Starlette route whose path matches the request's."""
    methods: set[str] = set()
    for route in routes:
        if isinstance(route, Route) and route.methods and route.matches(scope)[0] != Match.NONE:
            methods |= route.methods
    return methods


async def starlette_unrouted(request: Request, exc: Exception) -> Response:
    """Starlette's handler for the 404 (no route) and 405 (no route for this method) its
    router raises, answered as above instead of its plain-text defaults."""
    status = getattr(exc, "status_code", 404)
    if status == 405:
        parts = method_answer(
            request.method, route_methods(request.app.routes, request.scope), request_id(request)
        )
    else:
        parts = unknown_path(request_id(request))
    return parts_response(parts)
