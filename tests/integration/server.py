"""Run the real broker on a loopback port: in a background thread (``running_broker``), or as
a ``keybroker serve`` process of its own (``broker_process``)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from broker.api.coalesce import HttpProtocol
from broker.app import create_app
from broker.bench.deploy import RunningBroker, free_port, stop, wait_ready
from broker.cli import locate
from broker.cli.serve import uvicorn_options
from broker.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def running_broker(settings: Settings) -> Iterator[str]:
    """Yield the base URL of a broker serving ``settings`` until the block exits. As
    ``keybroker serve`` does, it finds what the settings do not name (database, token) under
    their state directory, and runs uvicorn as it does."""
    with serving(create_app(settings, locate=locate.location), **broker_options(settings)) as base:
        yield base


def broker_options(settings: Settings) -> dict[str, Any]:
    """``keybroker serve``'s uvicorn options (its protocol with the connection limits), on a
    loopback port of the system's choosing."""
    return {**uvicorn_options(settings), "host": "127.0.0.1", "port": 0}


@contextmanager
def serving(app: ASGIApp, **options: Any) -> Iterator[str]:
    """Yield the base URL of ``app`` served by uvicorn on a loopback port until the block
    exits: the broker (with :func:`broker_options`), or a fake vendor service it talks to;
    over HTTPS when ``options`` name a certificate (uvicorn's ``ssl_certfile``)."""
    config = uvicorn.Config(
        app,
        **{
            "host": "127.0.0.1",
            "port": 0,
            "log_config": None,
            "access_log": False,
            "http": HttpProtocol,
            "lifespan": "on",
            **options,
        },
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
        scheme = "https" if options.get("ssl_certfile") else "http"
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextmanager
def broker_process(state_dir: Path, log_file: Path, **settings: object) -> Iterator[str]:
    """Yield the base URL of ``keybroker serve`` run as a process of its own on the local
    cluster and token under ``state_dir``, with ``settings`` as ``KEYBROKER_*`` variables,
    until the block exits (then SIGTERM). Its log goes to ``log_file``."""
    with broker_processes(state_dir, [log_file], **settings) as (base,):
        yield base


@contextmanager
def broker_processes(
    state_dir: Path, log_files: list[Path], **settings: object
) -> Iterator[list[str]]:
    """As :func:`broker_process`, one ``keybroker serve`` per log file, all started at once
    (replicas), then each waited for; the base URLs in the order of ``log_files``."""
    env = {
        **os.environ,
        f"{ENV_PREFIX}LOG_FORMAT": "json",
        **{ENV_PREFIX + name.upper(): str(value) for name, value in settings.items()},
    }
    env.pop(f"{ENV_PREFIX}CONFIG", None)
    command = [sys.executable, "-m", "broker", "serve", "--state-dir", str(state_dir)]
    started: list[tuple[RunningBroker, subprocess.Popen[bytes], Path]] = []
    try:
        for log_file in log_files:
            port = free_port()
            with log_file.open("ab") as log:
                process = subprocess.Popen(
                    [*command, "--port", str(port)], env=env, stdout=log, stderr=log, cwd=ROOT
                )
            started.append((RunningBroker("127.0.0.1", port, process.pid), process, log_file))
        for running, process, log_file in started:
            wait_ready(running, process, 1, log_file)
        yield [running.base for running, _, _ in started]
    finally:
        for _, process, _ in started:
            stop(process)
