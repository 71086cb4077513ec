"""The guest endpoints' plain-ASGI path (broker/api/lean.py), driven without a server."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
import structlog
from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from broker.api.body import json_object
from broker.api.lean import Answer, GuestRoutes, LeanRequest, LeanRoute
from broker.api.middleware import Edge
from broker.errors import BadRequest, KeyNotFound
from broker.metrics import Metrics

Message = dict[str, Any]


def _route(path: str = "/v1/keys/{name}/release") -> LeanRoute:
    async def endpoint(request: LeanRequest, state: State) -> Answer:
        return 200, {"params": dict(request.path_params)}

    return LeanRoute("POST", path, endpoint)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v1/keys/disk-key/release", {"name": "disk-key"}),
        ("/v1/keys/a.b_c/release", {"name": "a.b_c"}),
        ("/v1/keys//release", None),
        ("/v1/keys/release", None),
        ("/v1/keys/a/b/release", None),
        ("/v1/keys/a/release/x", None),
        ("/v2/keys/a/release", None),
    ],
)
def test_a_parameter_matches_one_non_empty_segment(
    path: str, expected: dict[str, str] | None
) -> None:
    assert _route().match(path) == expected


def test_a_plain_path_matches_only_itself() -> None:
    route = _route("/v1/challenge")
    assert route.match("/v1/challenge") == {}
    assert route.match("/v1/challenge/") is None
    assert route.match("/v1/challeng") is None


class _Exchange:
    """One request through the Edge: what was sent back, and whether Starlette saw it."""

    def __init__(self, routes: tuple[LeanRoute, ...], fallback_called: list[str]) -> None:
        async def elsewhere(request: Request) -> Response:
            fallback_called.append(request.url.path)
            return PlainTextResponse("starlette", status_code=299)

        starlette = Starlette(routes=[Route("/v1/jwks", elsewhere, methods=["GET"])])
        self.app = Edge(starlette, GuestRoutes(routes, starlette.state), Metrics.create())
        self.sent: list[Message] = []

    def run(
        self, method: str, path: str, chunks: list[Message], headers: list[tuple[bytes, bytes]]
    ) -> None:
        scope = {
            "type": "http",
            "method": method,
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": headers,
            "client": ("192.0.2.7", 5000),
            "server": ("127.0.0.1", 8080),
            "scheme": "http",
            "http_version": "1.1",
            "root_path": "",
        }
        pending = list(chunks)

        async def receive() -> Message:
            return pending.pop(0)

        async def send(message: Message) -> None:
            self.sent.append(message)

        asyncio.run(self.app(scope, receive, send))

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.sent[0]["headers"])

    @property
    def document(self) -> Any:
        return json.loads(self.sent[1]["body"])


def _exchange(
    endpoint: Any,
    method: str = "POST",
    path: str = "/v1/x",
    chunks: list[Message] | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> tuple[_Exchange, list[str]]:
    fallback: list[str] = []
    exchange = _Exchange((LeanRoute("POST", "/v1/x", endpoint),), fallback)
    exchange.run(
        method,
        path,
        chunks or [{"type": "http.request", "body": b""}],
        headers or [],
    )
    return exchange, fallback


async def _ok(request: LeanRequest, state: State) -> Answer:
    return 201, {"ok": True, "client": request.client_host}


def test_a_matching_post_is_answered_with_json_and_its_length() -> None:
    exchange, fallback = _exchange(_ok)
    assert fallback == []
    assert exchange.status == 201
    assert exchange.document == {"ok": True, "client": "192.0.2.7"}
    assert exchange.headers[b"content-type"] == b"application/json"
    assert exchange.headers[b"content-length"] == str(len(exchange.sent[1]["body"])).encode()


def test_other_paths_go_on_to_starlette_with_the_request_id() -> None:
    exchange, fallback = _exchange(_ok, path="/v1/jwks", method="GET")
    assert fallback == ["/v1/jwks"]
    assert exchange.status == 299
    assert exchange.sent[1]["body"] == b"starlette"
    assert len(exchange.headers[b"x-request-id"]) == 16


async def _ids(request: LeanRequest, state: State) -> Answer:
    ids = request.scope["state"]
    return 200, {"request_id": ids["request_id"], "client": ids.get("client_request_id")}


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        (b"abc-123", "abc-123"),
        (b"A.b_c-" + b"9" * 58, "A.b_c-" + "9" * 58),  # 64 characters
        (b"9" * 65, None),  # too long
        (b"bad id", None),
        (b"tab\there", None),
        (b"trailing-newline\n", None),
        (b"", None),
        ("caf\u00e9".encode("latin-1"), None),
    ],
)
def test_the_request_id_is_the_brokers_own_and_a_sane_client_id_is_kept_beside_it(
    sent: bytes, kept: str | None
) -> None:
    exchange, _ = _exchange(_ids, headers=[(b"x-request-id", sent)])
    own = exchange.headers[b"x-request-id"].decode()
    assert re.fullmatch(r"[0-9a-f]{16}", own)
    assert exchange.document == {"request_id": own, "client": kept}


def test_no_two_requests_share_an_id_even_when_their_client_says_so() -> None:
    ids = {
        _exchange(_ok, headers=[(b"x-request-id", b"same")])[0].headers[b"x-request-id"]
        for _ in range(20)
    }
    assert len(ids) == 20


def test_another_method_on_a_guest_path_is_405_naming_the_allowed_one() -> None:
    exchange, fallback = _exchange(_ok, method="GET")
    assert fallback == []
    assert exchange.status == 405
    assert exchange.headers[b"allow"] == b"OPTIONS, POST"
    assert exchange.headers[b"content-type"] == b"application/problem+json"
    assert exchange.document["type"].endswith("/method-not-allowed")
    assert exchange.document["request_id"] == exchange.headers[b"x-request-id"].decode()


def test_a_refusal_is_the_problem_of_its_error() -> None:
    async def refuse(request: LeanRequest, state: State) -> Answer:
        raise KeyNotFound("no key named k")

    exchange, _ = _exchange(refuse)
    assert exchange.status == 404
    assert exchange.document == {
        "type": "https://keybroker.dev/problems/key-not-found",
        "title": "Not Found",
        "status": 404,
        "detail": "no key named k",
        "request_id": exchange.headers[b"x-request-id"].decode(),
    }


def test_a_bug_is_a_500_that_does_not_repeat_the_exception() -> None:
    async def crash(request: LeanRequest, state: State) -> Answer:
        raise RuntimeError("secret-looking detail 1234")

    exchange, _ = _exchange(crash)
    assert exchange.status == 500
    assert "1234" not in exchange.sent[1]["body"].decode()
    assert exchange.document["type"].endswith("/internal")


async def _echo_body(request: LeanRequest, state: State) -> Answer:
    return 200, await json_object(request, {"a"}, 16)


_JSON = [(b"content-type", b"application/json")]


def test_a_body_in_chunks_is_read_whole() -> None:
    chunks: list[Message] = [
        {"type": "http.request", "body": b'{"a":', "more_body": True},
        {"type": "http.request", "body": b'"b"}', "more_body": False},
    ]
    exchange, _ = _exchange(_echo_body, chunks=chunks, headers=_JSON)
    assert exchange.status == 200
    assert exchange.document == {"a": "b"}


def test_a_body_over_its_limit_is_refused_while_it_streams() -> None:
    chunks: list[Message] = [
        {"type": "http.request", "body": b'{"a":"' + b"x" * 12, "more_body": True},
        {"type": "http.request", "body": b'"}', "more_body": False},
    ]
    exchange, _ = _exchange(_echo_body, chunks=chunks, headers=_JSON)
    assert exchange.status == 400
    assert exchange.document["detail"] == "request body larger than 16 bytes"


def test_a_body_without_json_content_type_is_refused() -> None:
    chunks: list[Message] = [{"type": "http.request", "body": b'{"a":"b"}'}]
    exchange, _ = _exchange(_echo_body, chunks=chunks, headers=[(b"content-type", b"text/plain")])
    assert exchange.status == 400
    assert exchange.document["detail"] == "Content-Type must be application/json"


def test_a_client_gone_before_its_body_gets_no_answer() -> None:
    chunks: list[Message] = [
        {"type": "http.request", "body": b'{"a":', "more_body": True},
        {"type": "http.disconnect"},
    ]
    exchange, _ = _exchange(_echo_body, chunks=chunks, headers=_JSON)
    assert exchange.sent == []


def test_bad_request_from_an_endpoint_keeps_its_detail() -> None:
    async def bad(request: LeanRequest, state: State) -> Answer:
        raise BadRequest("member 'tee' is required")

    exchange, _ = _exchange(bad)
    assert (exchange.status, exchange.document["detail"]) == (400, "member 'tee' is required")


def test_the_request_id_is_bound_while_serving_and_reset_after() -> None:
    seen: dict[str, Any] = {}

    async def look(request: LeanRequest, state: State) -> Answer:
        seen.update(structlog.contextvars.get_contextvars())
        return 200, {}

    starlette = Starlette()
    edge = Edge(
        starlette,
        GuestRoutes((LeanRoute("POST", "/v1/x", look),), starlette.state),
        Metrics.create(),
    )
    scope = {"type": "http", "method": "POST", "path": "/v1/x", "headers": []}
    scope["headers"] = [(b"x-request-id", b"req-42")]

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        return None

    async def serve_then_look() -> dict[str, Any]:
        await edge(scope, receive, send)
        return structlog.contextvars.get_contextvars()

    after = asyncio.run(serve_then_look())
    assert seen.pop("client_request_id") == "req-42"
    assert re.fullmatch(r"[0-9a-f]{16}", seen.pop("request_id"))
    assert seen == {}
    assert after == {}


def test_a_repeated_header_reads_as_its_first_value_as_in_starlette() -> None:
    async def echo_authorization(request: LeanRequest, state: State) -> Answer:
        return 200, {"authorization": request.headers["authorization"]}

    headers = [(b"authorization", b"Bearer first"), (b"authorization", b"Bearer second")]
    exchange, _ = _exchange(echo_authorization, headers=headers)
    assert exchange.document == {"authorization": "Bearer first"}
