"""ASGI middleware: request id, structured access log, metrics, error mapping.

Pure ASGI (no BaseHTTPMiddleware) to keep per-request overhead small. The request id is
taken from ``X-Request-Id`` when it is a short token, else generated, bound into structlog's
context, and echoed in the response.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from broker.logs import get_logger
from broker.metrics import Metrics

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
log = get_logger("keybroker.http")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        # Labelled children, looked up once each (``labels()`` takes a lock and validates).
        self._counted: dict[tuple[str, int], Any] = {}
        self._timed: dict[str, Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status_holder: dict[str, int] = {"status": 500}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_name(scope)
            status = status_holder["status"]
            self._count(route, status).inc()
            self._timer(route).observe(elapsed)
            log.info(
                "request",
                method=scope.get("method"),
                route=route,
                status=status,
                ms=round(elapsed * 1000, 2),
            )
            structlog.contextvars.clear_contextvars()

    def _count(self, route: str, status: int) -> Any:
        child = self._counted.get((route, status))
        if child is None:
            child = self._counted[route, status] = self.metrics.requests.labels(route, str(status))
        return child

    def _timer(self, route: str) -> Any:
        child = self._timed.get(route)
        if child is None:
            child = self._timed[route] = self.metrics.latency.labels(route)
        return child


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _REQUEST_ID.match(text) else None
    return None


def _route_name(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"
