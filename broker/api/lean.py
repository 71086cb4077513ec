"""The guest endpoints' own ASGI path, in front of Starlette's router.

A release is two requests (challenge, then release with the evidence) or three (challenge,
attest, release with the token), so what each request costs outside the release service
counts two or three times. Measured on the benchmark machine, a POST through
Starlette's exception middleware, router and ``Request``/``Response`` objects costs about
40 µs more than the same work on plain ASGI (docs/performance.md). ``GuestRoutes`` therefore
serves the three guest POST endpoints itself: it matches the path, reads the body within its
limit, calls the endpoint and writes the JSON answer or the RFC 7807 problem from the same
table as every other endpoint. Everything else (admin API, health, metrics, JWKS, OpenAPI)
goes on to Starlette. ``broker.api.middleware.Edge`` chooses between the two and gives both
the same request ids, access log and metrics.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import State
from starlette.types import Receive, Scope, Send

from broker import fastjson
from broker.api.problem import problem_parts
from broker.api.routing import method_answer
from broker.errors import InternalError, KeybrokerError
from broker.logs import get_logger

log = get_logger("keybroker.http")

Answer = tuple[int, Any]
Endpoint = Callable[["LeanRequest", State], Awaitable[Answer]]


class ClientGone(Exception):
    """The client disconnected before its body arrived: there is nobody to answer."""


class LeanRequest:
    """What a guest endpoint reads from a request: headers, path parameters, peer, body.

    ``headers`` maps lower-case names to latin-1 values (HTTP/1.1 header bytes; uvicorn
    lower-cases the names). A repeated header reads as its first value, as Starlette's
    ``Headers.get`` reads it, so both paths agree on which ``Authorization`` counts."""

    __slots__ = ("headers", "path_params", "receive", "scope")

    def __init__(self, scope: Scope, receive: Receive, path_params: Mapping[str, str]) -> None:
        self.scope = scope
        self.receive = receive
        self.path_params = path_params
        self.headers: dict[str, str] = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in reversed(scope["headers"])
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
    """The guest endpoints on plain ASGI; ``broker.api.middleware.Edge`` routes to them."""

    def __init__(self, routes: tuple[LeanRoute, ...], state: State) -> None:
        self.routes = routes
        self.state = state

    def match(self, path: str) -> tuple[LeanRoute, dict[str, str]] | None:
        for route in self.routes:
            params = route.match(path)
            if params is not None:
                return route, params
        return None

    async def serve(
        self,
        route: LeanRoute,
        params: dict[str, str],
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        request_id: str,
    ) -> int:
        """Answer the request; returns the status sent (0 when the client went away)."""
        tagged = ((b"x-request-id", request_id.encode()),)
        if scope["method"] != route.method:
            method = scope["method"]
            status, body, media, headers = method_answer(method, (route.method,), request_id)
            return await _send(send, status, body, media, (*headers, *tagged))
        try:
            status, payload = await route.endpoint(LeanRequest(scope, receive, params), self.state)
        except ClientGone:
            return 0
        except KeybrokerError as exc:
            status, body, media, headers = problem_parts(exc, request_id)
            return await _send(send, status, body, media, (*headers, *tagged))
        except Exception as exc:  # the one place a bug in a guest endpoint becomes a 500
            log.error("unexpected_error", error_type=type(exc).__name__, exc_info=exc)
            internal = InternalError(
                "internal error; the broker log has the details under this request id"
            )
            status, body, media, headers = problem_parts(internal, request_id)
            return await _send(send, status, body, media, (*headers, *tagged))
        return await _send(send, status, fastjson.dumps(payload), b"application/json", tagged)


async def _send(
    send: Send,
    status: int,
    body: bytes,
    media_type: bytes,
    headers: tuple[tuple[bytes, bytes], ...],
) -> int:
    # No body, no Content-Length: RFC 9110 §8.6 forbids it on a 204.
    framing = ((b"content-length", str(len(body)).encode()), (b"content-type", media_type))
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*framing, *headers] if media_type else list(headers),
        }
    )
    await send({"type": "http.response.body", "body": body})
    return status
