"""The guest endpoints' own ASGI path, in front of Starlette's router.

A release is three requests (challenge, attest, release), so what each request costs outside
the release service counts three times. Measured on the benchmark machine, a POST through
Starlette's exception middleware, router and ``Request``/``Response`` objects costs about
40 µs more than the same work on plain ASGI (docs/performance.md). ``GuestRoutes`` therefore
serves the three guest POST endpoints itself: it matches the path, reads the body within its
limit, calls the endpoint and writes the JSON answer or the RFC 7807 problem from the same
table as every other endpoint. Everything else (admin API, health, metrics, JWKS, OpenAPI)
goes on to Starlette. It sits inside ``RequestContextMiddleware``, so request ids, the access
log and metrics are the same for both paths.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import State
from starlette.types import ASGIApp, Receive, Scope, Send

from broker import fastjson
from broker.api.problem import problem_parts
from broker.errors import InternalError, KeybrokerError, MethodNotAllowed
from broker.logs import get_logger

log = get_logger("keybroker.http")

Answer = tuple[int, Any]
Endpoint = Callable[["LeanRequest", State], Awaitable[Answer]]


class ClientGone(Exception):
    """The client disconnected before its body arrived: there is nobody to answer."""


class LeanRequest:
    """What a guest endpoint reads from a request: headers, path parameters, peer, body.

    ``headers`` maps lower-case names to latin-1 values (HTTP/1.1 header bytes; uvicorn
    lower-cases the names), the last value winning like Starlette's ``Headers.get``."""

    __slots__ = ("headers", "path_params", "receive", "scope")

    def __init__(self, scope: Scope, receive: Receive, path_params: Mapping[str, str]) -> None:
        self.scope = scope
        self.receive = receive
        self.path_params = path_params
        self.headers: dict[str, str] = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]
        }

    @property
    def client_host(self) -> str:
        client = self.scope.get("client")
        return str(client[0]) if client else "unknown"

    async def stream(self) -> AsyncIterator[bytes]:
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return


@dataclass(frozen=True, slots=True)
class LeanRoute:
    """``path`` is the OpenAPI path; a ``{name}`` segment matches one non-empty segment."""

    method: str
    path: str
    endpoint: Endpoint

    def match(self, path: str) -> dict[str, str] | None:
        prefix, brace, rest = self.path.partition("{")
        if not brace:
            return {} if path == self.path else None
        name, _, suffix = rest.partition("}")
        if len(path) <= len(prefix) + len(suffix):
            return None
        if not (path.startswith(prefix) and path.endswith(suffix)):
            return None
        value = path[len(prefix) : len(path) - len(suffix)]
        return {name: value} if "/" not in value else None


class GuestRoutes:
    """ASGI middleware serving ``routes`` directly; any other request goes on to ``app``."""

    def __init__(self, app: ASGIApp, routes: tuple[LeanRoute, ...]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            for route in self.routes:
                params = route.match(path)
                if params is None:
                    continue
                if scope["method"] != route.method:
                    await _send(send, *_method_not_allowed(route, scope))
                    return
                scope["route"] = route
                await self._serve(route, LeanRequest(scope, receive, params), send)
                return
        await self.app(scope, receive, send)

    async def _serve(self, route: LeanRoute, request: LeanRequest, send: Send) -> None:
        scope = request.scope
        request_id = scope.get("state", {}).get("request_id")
        try:
            status, payload = await route.endpoint(request, scope["app"].state)
        except ClientGone:
            return
        except KeybrokerError as exc:
            await _send(send, *problem_parts(exc, request_id))
            return
        except Exception as exc:  # the one place a bug in a guest endpoint becomes a 500
            log.error("unexpected_error", error_type=type(exc).__name__, exc_info=exc)
            internal = InternalError(
                "internal error; the broker log has the details under this request id"
            )
            await _send(send, *problem_parts(internal, request_id))
            return
        await _send(send, status, fastjson.dumps(payload), b"application/json", ())


def _method_not_allowed(
    route: LeanRoute, scope: Scope
) -> tuple[int, bytes, bytes, tuple[tuple[bytes, bytes], ...]]:
    status, body, media, headers = problem_parts(
        MethodNotAllowed(f"{scope['method']} is not allowed here; use {route.method}"),
        scope.get("state", {}).get("request_id"),
    )
    return status, body, media, (*headers, (b"allow", route.method.encode()))


async def _send(
    send: Send,
    status: int,
    body: bytes,
    media_type: bytes,
    headers: tuple[tuple[bytes, bytes], ...],
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-length", str(len(body)).encode()),
                (b"content-type", media_type),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
