"""``keybroker serve`` and ``keybroker dev up|down|run``: run the broker, manage local state."""

from __future__ import annotations

import argparse
import ipaddress
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from ssl import CERT_OPTIONAL, CERT_REQUIRED
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess

from broker import logs
from broker.api.guard import GuardedProtocol
from broker.api.middleware import Edge
from broker.app import create_app
from broker.cli import UsageError, demo, locate
from broker.cli.common import add_settings_arguments, fail, run_async, settings_from
from broker.cli.listener import allow_open_files, listen
from broker.errors import ConfigurationError, KeybrokerError
from broker.localstate.democa import demo_tls
from broker.localstate.lock import StateLock
from broker.localstate.postgres import LocalPostgres
from broker.localstate.softhsm import LocalSoftHsm
from broker.logs import get_logger
from broker.metrics import MULTIPROCESS_ENV
from broker.redact import Secret
from broker.runtime import open_custody_serialised
from broker.settings import ENV_PREFIX, Settings, load_settings, validate
from broker.store.database import Database

log = get_logger("keybroker.cli")


def register(subparsers: Any) -> None:
    serve = subparsers.add_parser("serve", help="run the broker (HTTP API)")
    add_settings_arguments(serve)
    serve.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default 8080)")
    serve.add_argument("--workers", type=int, help="uvicorn worker processes")
    add_tls_arguments(serve)
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
            add_tls_arguments(parser)
            parser.add_argument(
                "--demo-tls",
                action="store_true",
                help="serve HTTPS with a demo CA made under <state>/demo/tls (docs/boot.md)",
            )
        parser.set_defaults(func=func)


def add_tls_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tls-cert", type=Path, dest="tls_cert_file", help="PEM certificate chain: serve HTTPS"
    )
    parser.add_argument("--tls-key", type=Path, dest="tls_key_file", help="its PEM private key")
    parser.add_argument(
        "--tls-client-ca",
        type=Path,
        dest="tls_client_ca_file",
        help="PEM CA(s): require a client certificate they issued (mutual TLS)",
    )


LISTEN_OPTIONS = ("host", "port", "workers", "tls_cert_file", "tls_key_file", "tls_client_ca_file")

#: TLS 1.2 suites offered (TLS 1.3's are OpenSSL's own, all AEAD): forward-secret AEAD only.
#: uvicorn's default cipher string, "TLSv1", would offer TLS 1.2 clients CBC with SHA-1.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def _with_listen(settings: Settings, args: argparse.Namespace) -> Settings:
    given = {name: getattr(args, name, None) for name in LISTEN_OPTIONS}
    changes = {name: value for name, value in given.items() if value is not None}
    if getattr(args, "demo_tls", False):
        if "tls_cert_file" in changes:
            raise UsageError("--demo-tls makes its own certificate: not with --tls-cert")
        tls = demo_tls(settings.state_dir)
        changes.update(tls_cert_file=tls.cert_file, tls_key_file=tls.key_file)
    updated = settings.with_overrides(**changes)
    try:
        validate(updated)
    except ConfigurationError as exc:
        raise UsageError(exc.detail) from None
    return updated


def tls_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's SSL options for ``settings``: none for plain HTTP."""
    if settings.tls_cert_file is None:
        return {}
    for name in ("tls_cert_file", "tls_key_file", "tls_client_ca_file"):
        path = getattr(settings, name)
        if path is not None and not path.is_file():
            raise UsageError(f"{name} {path} is not a readable file")
    options: dict[str, Any] = {
        "ssl_certfile": str(settings.tls_cert_file),
        "ssl_keyfile": str(settings.tls_key_file),
        "ssl_ciphers": TLS12_CIPHERS,
    }
    if settings.tls_client_ca_file is not None:
        required = CERT_OPTIONAL if settings.tls_client_optional else CERT_REQUIRED
        options.update(ssl_ca_certs=str(settings.tls_client_ca_file), ssl_cert_reqs=required)
    return options


def _announce_listener(settings: Settings) -> None:
    """Plain HTTP beyond this machine leaves guests only the envelope's signature to trust
    (docs/boot.md, "TLS on the broker"): said at start, as the insecure options are."""
    tls = settings.tls_cert_file is not None
    if not tls and not _is_loopback(settings.host):
        log.warning("plain_http_beyond_loopback", host=settings.host, port=settings.port)
    log.info(
        "listening",
        scheme="https" if tls else "http",
        host=settings.host,
        port=settings.port,
        client_certificates=settings.tls_client_ca_file is not None,
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
    Another broker (a replica, or another supervisor) may be starting on the same token:
    this runs under the database's lock on the token's objects, as every start does.
    """

    async def prepare() -> None:
        db = await Database.connect(locate.database_dsn(settings).reveal(), 1, 1)
        try:
            prepared = await open_custody_serialised(
                db, locate.hsm_location(settings), settings.with_overrides(hsm_threads=0)
            )
        finally:
            await db.close()
        prepared.close()

    run_async(prepare)
    log.info("token_prepared")


def serve(
    settings: Settings, config_file: Path | None = None, listener: socket.socket | None = None
) -> None:
    """Run uvicorn in this process (one worker) or as a supervisor of several, on
    ``listener`` (bound here when not given: before anything else, so that a busy port is
    reported before the broker starts anything or announces itself)."""
    options = uvicorn_options(settings)  # first: unreadable TLS files are a usage error
    if listener is None:
        listener = listen(settings)
    allow_open_files(settings)
    _announce_listener(settings)
    if settings.workers > 1:
        prepare_token(settings)
        # Workers are separate processes: they rebuild the settings from the environment.
        os.environ.update(worker_environment(settings, config_file, os.environ))
        config = uvicorn.Config(
            "broker.cli.serve:app_from_environment",
            factory=True,
            workers=settings.workers,
            **options,
        )
        with shared_metrics():
            run_uvicorn(config, listener)
    else:
        config = uvicorn.Config(create_app(settings, locate=locate.location), **options)
        run_uvicorn(config, listener)


@contextmanager
def shared_metrics() -> Iterator[Path]:
    """The directory where the workers about to start keep their metrics, so that each
    one's ``/metrics`` answers for all (``broker/metrics.py``): ``PROMETHEUS_MULTIPROC_DIR``
    when the operator set it (emptied of a former run's files first, as prometheus-client
    requires), else a new private directory, removed when the workers are gone."""
    given = os.environ.get(MULTIPROCESS_ENV)
    if given:
        directory = Path(given)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
        yield directory
        return
    directory = Path(tempfile.mkdtemp(prefix="keybroker-metrics-"))
    os.environ[MULTIPROCESS_ENV] = str(directory)
    try:
        yield directory
    finally:
        del os.environ[MULTIPROCESS_ENV]
        shutil.rmtree(directory, ignore_errors=True)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How the broker runs uvicorn (``keybroker serve``, and the tests' brokers)."""
    return {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "access_log": False,
        # The peer address is the client (rate limiting, logs): X-Forwarded-For is not
        # believed, not even from loopback, where any local process could send it.
        "proxy_headers": False,
        # The connection limits, and one write per response (broker/api/guard.py).
        "http": GuardedProtocol,
        "timeout_keep_alive": settings.keep_alive_timeout_seconds,
        # No WebSocket endpoint: an upgrade would leave the connection limits behind.
        "ws": "none",
        "lifespan": "on",
        **tls_options(settings),
    }


def run_uvicorn(config: uvicorn.Config, listener: socket.socket) -> None:
    """What ``uvicorn.run`` does, on a socket already bound."""
    server = uvicorn.Server(config)
    try:
        if config.workers > 1:
            Multiprocess(config, sockets=[listener]).run()
        else:
            server.run(sockets=[listener])
    except KeyboardInterrupt:  # SIGINT, re-raised by uvicorn once it has stopped serving
        pass
    if config.workers == 1 and not server.started:
        sys.exit(STARTUP_FAILURE)  # uvicorn has logged why (the lifespan failed)


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
    settings = settings_from(args)
    try:
        with StateLock(settings.state_dir):
            local_up(settings)
    except KeybrokerError as exc:
        return fail(exc)
    return 0


def run_down(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    try:
        with StateLock(settings.state_dir):  # a running `dev run` owns the cluster
            if settings.database_url is None:
                LocalPostgres(settings.state_dir).stop()
    except KeybrokerError as exc:
        return fail(exc)
    return 0


def run_dev(args: argparse.Namespace) -> int:
    """``dev up``, serve until SIGINT or SIGTERM, then stop the cluster: whichever signal
    ends it, and wherever it arrives (starting the cluster, seeding the demo, serving)."""
    settings = _with_listen(settings_from(args, service=True), args)
    try:
        with stopped_by_sigterm(), StateLock(settings.state_dir):
            listener = listen(settings)  # first: a busy port leaves nothing to undo
            cluster = LocalPostgres(settings.state_dir) if settings.database_url is None else None
            try:
                local_up(settings)
                if args.demo:
                    settings = demo.prepare(settings)
                    run_async(lambda: demo.seed(settings))
                    tls = demo_tls(settings.state_dir) if args.demo_tls else None
                    print(demo.instructions(settings, tls), file=sys.stderr, flush=True)
                serve(settings, args.config, listener)
            finally:
                listener.close()
                if cluster is not None:
                    cluster.stop()
                    log.info("postgres_stopped")
    except KeybrokerError as exc:
        return fail(exc)
    return 0


class Terminated(BaseException):
    """SIGTERM arrived. A BaseException, as KeyboardInterrupt is for SIGINT: it unwinds
    through every ``finally`` and no ``except Exception`` takes it for an error."""


@contextmanager
def stopped_by_sigterm() -> Iterator[None]:
    """SIGTERM unwinds the block as SIGINT does, then ends the process by SIGTERM, as a
    supervisor expects. uvicorn handles both signals while it serves, and re-raises the one
    it received once it has stopped: Python's default for SIGTERM would end the process on
    the spot, before the block's ``finally`` stops the cluster; this handler raises instead."""

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    except Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
