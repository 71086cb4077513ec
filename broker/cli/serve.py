"""``keybroker serve`` and ``keybroker dev up|down|run``: run the broker, manage local state."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import uvicorn

from broker.app import create_app
from broker.cli.common import add_settings_arguments, fail, run_async, settings_from
from broker.errors import KeybrokerError
from broker.localstate import demo
from broker.localstate.postgres import LocalPostgres
from broker.localstate.softhsm import LocalSoftHsm
from broker.logs import get_logger
from broker.settings import Settings

log = get_logger("keybroker.cli")


def register(subparsers: Any) -> None:
    serve = subparsers.add_parser("serve", help="run the broker (HTTP API)")
    add_settings_arguments(serve)
    serve.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default 8080)")
    serve.add_argument("--workers", type=int, help="uvicorn worker processes")
    serve.set_defaults(func=run_serve)

    dev = subparsers.add_parser("dev", help="local state: PostgreSQL cluster and SoftHSM token")
    actions = dev.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, func, text in (
        ("up", run_up, "create/start the local cluster and token"),
        ("down", run_down, "stop the local cluster"),
        ("run", run_dev, "up, then serve until Ctrl-C, then stop the cluster"),
    ):
        parser = actions.add_parser(name, help=text)
        add_settings_arguments(parser)
        if name == "run":
            parser.add_argument("--host")
            parser.add_argument("--port", type=int)
            parser.add_argument(
                "--demo",
                action="store_true",
                help="seed the demo: a simulated SNP guest's test root, key and policy",
            )
        parser.set_defaults(func=func)


def _with_listen(settings: Settings, args: argparse.Namespace) -> Settings:
    changes = {
        name: getattr(args, name)
        for name in ("host", "port", "workers")
        if getattr(args, name, None) is not None
    }
    return settings.with_overrides(**changes)


def serve(settings: Settings) -> None:
    """Run uvicorn in this process (one worker) or as a supervisor of several."""
    if settings.workers > 1:
        # Workers are separate processes: they rebuild the settings from the environment.
        os.environ["KEYBROKER_STATE_DIR"] = str(settings.state_dir)
        uvicorn.run(
            "broker.app:app_from_environment",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_config=None,
            access_log=False,
        )
        return
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="on",
    )


def run_serve(args: argparse.Namespace) -> int:
    settings = _with_listen(settings_from(args, service=True), args)
    serve(settings)
    return 0


def local_up(settings: Settings) -> LocalPostgres | None:
    """Bring up whatever local state the settings rely on; return the cluster if local."""
    cluster = None
    if settings.database_url is None:
        cluster = LocalPostgres(settings.state_dir)
        cluster.up()
        log.info("postgres_ready", socket_dir=str(cluster.socket_dir))
    if settings.token_label is None:
        LocalSoftHsm(settings.state_dir, settings.pkcs11_module).up()
        log.info("softhsm_ready", state_dir=str(settings.state_dir))
    return cluster


def run_up(args: argparse.Namespace) -> int:
    try:
        local_up(settings_from(args))
    except KeybrokerError as exc:
        return fail(exc)
    return 0


def run_down(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if settings.database_url is None:
        LocalPostgres(settings.state_dir).stop()
    return 0


def run_dev(args: argparse.Namespace) -> int:
    settings = _with_listen(settings_from(args, service=True), args)
    try:
        cluster = local_up(settings)
    except KeybrokerError as exc:
        return fail(exc)
    try:
        if args.demo:
            settings = demo.prepare(settings)
            run_async(lambda: demo.seed(settings))
            print(demo.instructions(settings), file=sys.stderr, flush=True)
        serve(settings)
    finally:
        if cluster is not None:
            cluster.stop()
            log.info("postgres_stopped")
    return 0
