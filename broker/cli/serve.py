"""``keybroker serve`` and ``keybroker dev up|down|run``: run the broker, manage local state."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import uvicorn

from broker import logs
from broker.api.coalesce import HttpProtocol
from broker.api.middleware import Edge
from broker.app import create_app
from broker.cli import demo, locate
from broker.cli.common import add_settings_arguments, fail, run_async, settings_from
from broker.errors import KeybrokerError
from broker.localstate.postgres import LocalPostgres
from broker.localstate.softhsm import LocalSoftHsm
from broker.logs import get_logger
from broker.redact import Secret
from broker.runtime import open_custody
from broker.settings import ENV_PREFIX, Settings, load_settings

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


def worker_environment(
    settings: Settings, config_file: Path | None, environ: Mapping[str, str]
) -> dict[str, str]:
    """The environment from which a worker's ``load_settings()`` rebuilds exactly ``settings``.

    Workers are separate processes that read only ``KEYBROKER_*`` variables: the settings
    file given with ``--config`` becomes ``KEYBROKER_CONFIG``, and every value that differs
    from what that file and ``environ`` give (command-line overrides such as ``--host``,
    ``--port``, ``--state-dir``, and the demo's test root) becomes its own variable. Values
    the file or environment already give are not copied, so a database URL from the file
    stays out of the environment.
    """
    env = dict(environ)
    if config_file is not None:
        env[f"{ENV_PREFIX}CONFIG"] = str(config_file)
    base = load_settings(None, env)
    for field in fields(Settings):
        value = getattr(settings, field.name)
        if value != getattr(base, field.name):
            env[ENV_PREFIX + field.name.upper()] = _environment_value(value)
    return env


def _environment_value(value: object) -> str:
    """The text ``load_settings`` converts back to ``value``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, tuple):
        return os.pathsep.join(str(item) for item in value)
    return str(value)


def prepare_token(settings: Settings) -> None:
    """Create the token's objects (first KEK, signing key, nonce key) once, in this process.

    Workers make the token ready as they start, all at once: on a fresh token each could
    find an object missing and create its own, leaving two signing keys, KEKs or nonce keys
    under one label (which every worker then refuses). Made here first, they find them all.
    """
    prepared = open_custody(locate.hsm_location(settings), settings.with_overrides(hsm_threads=0))
    prepared.close()
    log.info("token_prepared")


def serve(settings: Settings, config_file: Path | None = None) -> None:
    """Run uvicorn in this process (one worker) or as a supervisor of several."""
    if settings.workers > 1:
        prepare_token(settings)
        # Workers are separate processes: they rebuild the settings from the environment.
        os.environ.update(worker_environment(settings, config_file, os.environ))
        uvicorn.run(
            "broker.cli.serve:app_from_environment",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_config=None,
            access_log=False,
            proxy_headers=False,
            http=HttpProtocol,
        )
        return
    uvicorn.run(
        create_app(settings, locate=locate.location),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        # The peer address is the client (rate limiting, logs): X-Forwarded-For is not
        # believed, not even from loopback, where any local process could send it.
        proxy_headers=False,
        # One write per response (broker/api/coalesce.py).
        http=HttpProtocol,
        lifespan="on",
    )


def app_from_environment() -> Edge:
    """Factory for uvicorn worker processes: settings from ``KEYBROKER_*`` variables, the
    database and the token found as the supervisor found them."""
    settings = load_settings()
    logs.configure(settings.log_format, settings.log_level)
    return create_app(settings, locate=locate.location)


def run_serve(args: argparse.Namespace) -> int:
    settings = _with_listen(settings_from(args, service=True), args)
    try:
        serve(settings, args.config)
    except KeybrokerError as exc:  # the supervisor could not prepare the token
        return fail(exc)
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
        serve(settings, args.config)
    except KeybrokerError as exc:
        return fail(exc)
    finally:
        if cluster is not None:
            cluster.stop()
            log.info("postgres_stopped")
    return 0
