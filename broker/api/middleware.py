"""The outermost ASGI application: request id, access log and metrics around every request,
then the guest endpoints on plain ASGI (``broker/api/lean.py``) or Starlette for the rest.

Every request gets the broker's own id, generated here, bound into structlog's context,
returned in ``X-Request-Id`` and recorded as the audit record's ``request_id``. A client's
``X-Request-Id``, when it is a short token, is kept beside it as ``client_request_id`` (log
lines, audit body), never in its place: a client could otherwise give its records another
guest's id. The guest endpoints are served before Starlette's own layers (its error
middleware, router and request objects), since a release is three of them
(docs/performance.md).
"""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.routing import BaseRoute
from starlette.types import Message, Receive, Scope, Send

from broker import logs
from broker.api.lean import GuestRoutes
from broker.metrics import Children, Metrics

_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")  # fullmatch: no trailing newline


class Edge:
    def __init__(self, app: Starlette, guest: GuestRoutes, metrics: Metrics) -> None:
        self.app = app
        self.guest = guest
        self.metrics = metrics
        self._requests = Children(metrics.requests)
        self._latency = Children(metrics.latency)

    @property
    def state(self) -> State:
        return self.app.state

    @property
    def routes(self) -> list[BaseRoute]:
        """Starlette's routes; the guest endpoints are ``self.guest.routes``."""
        return self.app.routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan
            await self.app(scope, receive, send)
            return
        request_id = secrets.token_hex(8)
        client_request_id = _client_request_id(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        ids = {"request_id": request_id}
        if client_request_id is not None:
            state["client_request_id"] = ids["client_request_id"] = client_request_id
        # uvicorn runs each request in a task of its own, whose context starts as a copy of
        # the server's: nothing of another request's is bound there. Binding and resetting our
        # own keys is enough (clearing walks every context variable: 7 µs, twice a request).
        bound = structlog.contextvars.bind_contextvars(**ids)
        started = time.perf_counter()
        status = 500
        matched = self.guest.match(scope["path"])
        route = matched[0].path if matched is not None else "unmatched"
        try:
            if matched is not None:
                status = await self.guest.serve(
                    *matched, scope, receive, send, request_id=request_id
                )
            else:
                status = await self._starlette(scope, receive, send, request_id)
                route = _route_name(scope)
        finally:
            elapsed = time.perf_counter() - started
            self._requests(route, str(status)).inc()
            self._latency(route).observe(elapsed)
            logs.access(
                scope.get("method"),
                route,
                status,
                round(elapsed * 1000, 2),
                request_id,
                client_request_id=client_request_id,
            )
            structlog.contextvars.reset_contextvars(**bound)

    async def _starlette(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> int:
        sent = [500]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                sent[0] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)
        return sent[0]


def _client_request_id(scope: Scope) -> str | None:
    """The client's ``X-Request-Id`` when it is 1-64 of ``[A-Za-z0-9._-]``, else None."""
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _CLIENT_REQUEST_ID.fullmatch(text) else None
    return None


def _route_name(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"
