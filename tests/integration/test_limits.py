"""The connection limits against ``keybroker serve`` run as a process of its own, as a hostile
client meets them: over raw sockets, from several loopback addresses (all of 127/8 is
loopback on Linux, so each address is a client of its own)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from broker.localstate.postgres import LocalPostgres
from broker.localstate.softhsm import LocalSoftHsm
from tests.integration.server import broker_process

pytestmark = pytest.mark.integration

LIMITS: dict[str, object] = {
    "max_connections": 24,
    "max_open_requests_per_client": 4,
    "max_request_bytes": 65536,
    "max_request_bytes_in_flight": 100_000,
    "max_request_head_bytes": 8192,
}


@pytest.fixture(scope="module")
def deadlines(
    state_dir: Path,
    cluster: LocalPostgres,
    softhsm: LocalSoftHsm,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """A broker whose head and body deadlines are 2 s."""
    log = tmp_path_factory.mktemp("deadlines") / "broker.log"
    with broker_process(
        state_dir, log, request_head_timeout_seconds=2, request_body_timeout_seconds=2
    ) as base:
        yield base


@pytest.fixture(scope="module")
def limited(
    state_dir: Path,
    cluster: LocalPostgres,
    softhsm: LocalSoftHsm,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """A broker with small limits (``LIMITS``) and deadlines far beyond any test's length,
    so that what the tests hold stays held."""
    log = tmp_path_factory.mktemp("limited") / "broker.log"
    with broker_process(
        state_dir,
        log,
        request_head_timeout_seconds=300,
        request_body_timeout_seconds=300,
        keep_alive_timeout_seconds=300,
        **LIMITS,
    ) as base:
        yield base


def connect(base: str, source: str) -> socket.socket:
    address = urlsplit(base)
    sock = socket.create_connection(
        (address.hostname, address.port), timeout=60, source_address=(source, 0)
    )
    return sock


def post_head(length: int, path: str = "/v1/attest") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: broker\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


GET_HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: broker\r\n\r\n"


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], Any]:
    """One HTTP/1.1 answer: status, headers, body (JSON when it is)."""
    reader = sock.makefile("rb")
    status_line = reader.readline()
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    headers = {}
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = reader.read(int(headers["content-length"]))
    content_type = headers.get("content-type", "")
    return int(status_line[9:12]), headers, json.loads(body) if "json" in content_type else body


def closed_by_broker(sock: socket.socket) -> bool:
    """Whether the broker has closed the connection (end of stream; a reset counts too)."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def synchronise(base: str) -> None:
    """One request answered on a connection of its own. Whatever the test sent before on its
    other connections was already in the broker's receive buffers: the broker has read it by
    the time it answers this (its event loop reads every ready connection in each turn)."""
    assert httpx.get(f"{base}/healthz").status_code == 200


def problem_type(document: dict[str, Any]) -> str:
    return str(document["type"]).rsplit("/", 1)[-1]


# --- deadlines ------------------------------------------------------------------------------


def test_a_slow_body_gets_408_and_its_connection_is_closed(deadlines: str) -> None:
    with connect(deadlines, "127.0.2.1") as sock:
        sock.sendall(post_head(1000) + b'{"tee": "snp", "evi')
        status, headers, problem = read_answer(sock)  # after the 2 s deadline
        assert status == 408
        assert problem_type(problem) == "request-timeout"
        assert problem["detail"] == "request body not received within 2 s"
        assert headers["connection"] == "close"
        assert closed_by_broker(sock)


def test_an_answer_before_the_body_says_the_connection_closes(deadlines: str) -> None:
    # A refusal decided on the head alone (no admin token) is answered while the body is
    # still to come; the connection closes after it, so the answer must say so, or a client
    # sends its next request on that connection and loses it.
    with connect(deadlines, "127.0.0.1") as sock:
        sock.sendall(post_head(10, "/v1/admin/keys"))
        status, headers, _ = read_answer(sock)
        assert status == 401
        assert headers.get("connection") == "close"
        assert closed_by_broker(sock)


def test_an_answer_after_the_whole_body_keeps_the_connection(deadlines: str) -> None:
    with connect(deadlines, "127.0.0.1") as sock:
        sock.sendall(post_head(2, "/v1/admin/keys") + b"{}")
        status, headers, _ = read_answer(sock)
        assert status == 401
        assert "connection" not in headers
        sock.sendall(GET_HEALTHZ)
        assert read_answer(sock)[0] == 200


def test_the_kbs_endpoints_have_the_same_deadline(deadlines: str) -> None:
    with connect(deadlines, "127.0.2.4") as sock:
        sock.sendall(post_head(1000, "/kbs/v0/auth") + b'{"version": "0.4.0", ')
        status, headers, problem = read_answer(sock)  # Trustee's error shape, as KBS answers
        assert status == 408
        assert problem == {
            "type": "https://github.com/confidential-containers/kbs/errors/RequestTimeout",
            "detail": "request body not received within 2 s",
        }
        assert headers["connection"] == "close"
        assert closed_by_broker(sock)


def test_a_slow_head_gets_408_and_a_silent_connection_is_closed(deadlines: str) -> None:
    with connect(deadlines, "127.0.2.2") as slow, connect(deadlines, "127.0.2.3") as silent:
        slow.sendall(b"POST /v1/attest HTTP/1.1\r\nHost: bro")
        status, headers, problem = read_answer(slow)
        assert (status, problem_type(problem)) == (408, "request-timeout")
        assert problem["detail"] == "request head not received within 2 s"
        assert headers["x-request-id"] == problem["request_id"]
        assert closed_by_broker(slow)
        assert closed_by_broker(silent)  # sent nothing: closed, with nothing to answer


# --- limits ---------------------------------------------------------------------------------


def test_a_head_beyond_its_limit_gets_431(limited: str) -> None:
    with connect(limited, "127.0.3.1") as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nX-Padding: " + b"x" * 9000)
        status, _, problem = read_answer(sock)
        assert (status, problem_type(problem)) == (431, "request-head-too-large")
        assert closed_by_broker(sock)


def test_connections_beyond_the_limit_get_503(limited: str) -> None:
    statuses = []
    with ExitStack() as held:
        for index in range(int(str(LIMITS["max_connections"])) + 1):
            # Kept open after its answer (keep-alive): each holds a connection, no request.
            sock = held.enter_context(connect(limited, f"127.0.4.{1 + index}"))
            sock.sendall(GET_HEALTHZ)
            status, headers, body = read_answer(sock)
            statuses.append(status)
            if status != 200:
                break
        assert statuses[-1] == 503
        assert set(statuses[:-1]) == {200}
        assert problem_type(body) == "overloaded"
        assert headers["retry-after"] == "5"
        assert closed_by_broker(sock)
    # Once the broker has seen them close, connections are served again.
    deadline = time.monotonic() + 30
    while httpx.get(f"{limited}/healthz").status_code != 200:
        assert time.monotonic() < deadline, "still refused 30 s after the connections closed"
        time.sleep(0.1)


def test_request_bytes_held_beyond_the_limit_get_503(limited: str) -> None:
    with connect(limited, "127.0.5.1") as first, connect(limited, "127.0.5.2") as second:
        first.sendall(post_head(60000) + b" " * 50000)
        synchronise(limited)
        second.sendall(post_head(60000) + b" " * 55000)  # 105,000 bytes held: one too many
        status, _, problem = read_answer(second)
        assert (status, problem_type(problem)) == (503, "overloaded")
        assert "request bytes" in problem["detail"]
        assert closed_by_broker(second)
        # The first is still being received: it was within the limit.
        first.sendall(b" " * 9998 + b"{}")
        status, _, problem = read_answer(first)
        assert (status, problem_type(problem)) == (400, "malformed-request")


def test_a_client_holding_many_unanswered_requests_gets_429(limited: str) -> None:
    with ExitStack() as held:
        for _ in range(int(str(LIMITS["max_open_requests_per_client"]))):
            sock = held.enter_context(connect(limited, "127.0.6.1"))
            sock.sendall(post_head(1000) + b"{")  # never finished
        synchronise(limited)
        one_more = held.enter_context(connect(limited, "127.0.6.1"))
        one_more.sendall(GET_HEALTHZ)  # even a probe: it is a fifth open request
        status, headers, problem = read_answer(one_more)
        assert (status, problem_type(problem)) == (429, "rate-limited")
        assert problem["detail"] == "more than 4 unanswered requests from this client"
        assert headers["retry-after"] == "5"
        assert closed_by_broker(one_more)
        # Another address is not held back by it.
        with connect(limited, "127.0.6.2") as other:
            other.sendall(GET_HEALTHZ)
            assert read_answer(other)[0] == 200


def test_a_legitimate_guest_is_served_while_slow_connections_are_held(limited: str) -> None:
    with ExitStack() as held:
        slow = []
        for client in range(3):
            for _ in range(int(str(LIMITS["max_open_requests_per_client"])) + 1):
                sock = held.enter_context(connect(limited, f"127.0.7.{1 + client}"))
                sock.sendall(post_head(60000) + b"{" + b" " * 1000)
                slow.append(sock)
        synchronise(limited)
        with httpx.Client(base_url=limited) as guest:
            challenge = guest.post("/v1/challenge", json={"tee": "snp"})
            assert challenge.status_code == 201, challenge.text
            assert set(challenge.json()) >= {"nonce"}
            assert guest.get("/readyz").status_code == 200
        # The slow ones were held meanwhile: the last of each address refused (429), the
        # others still unanswered.
        refused = [s for s in slow if not _unanswered(s)]
        assert len(refused) == 3
        assert all(read_answer(s)[0] == 429 for s in refused)


def _unanswered(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    finally:
        sock.setblocking(True)
    return False
