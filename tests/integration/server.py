"""Run the real broker (uvicorn, real sockets) in a background thread on a loopback port."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp

from broker.api.coalesce import HttpProtocol
from broker.app import create_app
from broker.cli import locate
from broker.settings import Settings


@contextmanager
def running_broker(settings: Settings) -> Iterator[str]:
    """Yield the base URL of a broker serving ``settings`` until the block exits. As
    ``keybroker serve`` does, it finds what the settings do not name (database, token) under
    their state directory."""
    with serving(create_app(settings, locate=locate.location)) as base:
        yield base


@contextmanager
def serving(app: ASGIApp) -> Iterator[str]:
    """Yield the base URL of ``app`` served by uvicorn on a loopback port until the block
    exits (the broker, or a fake vendor service it talks to)."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_config=None,
        access_log=False,
        http=HttpProtocol,  # as `keybroker serve` runs it
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="app-under-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the served app failed to start; see the log above")
        if time.monotonic() > deadline:
            raise RuntimeError("the served app did not start within 30 s")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
