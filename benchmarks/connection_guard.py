"""What the connection limits cost a request: ``python -m benchmarks.connection_guard``.

Every request to the broker goes through ``broker/api/guard.py``'s protocol: an object per
request, a deadline armed and cancelled for its head and its body, the admission's counts and
its rate bucket, a ``receive()`` that checks for a failure. This measures that cost, in µs of
CPU per request, against the protocol without it (``broker/api/coalesce.py``'s), in process
and on one core: each protocol serves ``--requests`` keep-alive requests (a guest's attest
head and a small JSON body, arriving in one read) on one connection over an in-memory
transport, to an ASGI application that reads the body and answers ``{}``. The protocols are
interleaved for ``--rounds`` rounds and the best round of each is reported: on a shared
machine other work only ever adds to a figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import uvloop
from prometheus_client import Counter
from starlette.types import Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.server import ServerState

from broker.api.coalesce import HttpProtocol
from broker.api.guard import GuardedProtocol
from broker.api.limits import STATE_KEY, Admission
from broker.settings import Settings

BODY = json.dumps({"tee": "snp", "evidence": "A" * 2000, "nonce": "n" * 44}).encode()
REQUEST = (
    b"POST /v1/attest HTTP/1.1\r\nHost: broker\r\nContent-Type: application/json\r\n"
    b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY
)


async def answer(scope: Scope, receive: Receive, send: Send) -> None:
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    headers = [(b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"{}"})


class MemoryTransport(asyncio.Transport):
    """Signals each answer written to it; the loop's reads are the benchmark's calls."""

    def __init__(self) -> None:
        super().__init__()
        self.answered = asyncio.Event()
        self.closed = False

    def write(self, data: Any) -> None:
        if bytes(data).startswith(b"HTTP/1.1 200"):
            self.answered.set()

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("192.0.2.7", 4242), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def admission() -> Admission:
    """The broker's defaults, without the rate limit (one client sends every request)."""
    refused = Counter("refused", "refusals", ["reason"], registry=None)
    return Admission(Settings(rate_limit_per_second=0), refused)


async def serve(
    protocol_class: type[HttpProtocol], requests: int, limits: Admission | None = None
) -> float:
    """CPU seconds per request of ``requests`` requests on one connection."""
    config = Config(answer, http=protocol_class, log_config=None, access_log=False)
    config.load()
    app_state = {STATE_KEY: limits or admission()}
    protocol = protocol_class(config=config, server_state=ServerState(), app_state=app_state)
    transport = MemoryTransport()
    protocol.connection_made(transport)
    started = time.process_time()
    for _ in range(requests):
        transport.answered.clear()
        protocol.data_received(REQUEST)
        await transport.answered.wait()
    spent = time.process_time() - started
    protocol.connection_lost(None)
    return spent / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, protocol_class in (("coalesce", HttpProtocol), ("guard", GuardedProtocol)):
            seconds = uvloop.run(serve(protocol_class, args.requests))
            best[name] = min(best.get(name, seconds), seconds)
    for name, seconds in best.items():
        print(f"{name:10} {seconds * 1e6:7.2f} µs per request")
    print(f"{'added':10} {(best['guard'] - best['coalesce']) * 1e6:7.2f} µs per request")


if __name__ == "__main__":
    main()
