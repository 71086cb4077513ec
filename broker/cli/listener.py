"""The broker's listening socket, bound before anything else starts, and the open-file limit
its connections need.

Binding first means a port in use is reported before the database or the token is touched and
before the broker announces itself: one line naming the address and how to choose another,
and nothing to undo.
"""

from __future__ import annotations

import errno
import resource
import socket

from broker.errors import ConfigurationError
from broker.logs import get_logger
from broker.settings import Settings

log = get_logger("keybroker.cli")

#: Pending connections the kernel queues before the broker accepts them (uvicorn's default).
BACKLOG = 2048
#: Descriptors a worker needs besides its connections: database pool, token, logs, libraries.
OTHER_FILES = 256


class PortInUse(ConfigurationError):
    """Another process listens on the broker's address."""


def listen(settings: Settings) -> socket.socket:
    """A socket bound to ``settings.host``:``settings.port`` and listening."""
    where = f"{settings.host}:{settings.port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            settings.host, settings.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ConfigurationError(f"cannot listen on {where}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    try:
        # A restarted broker may bind while its predecessor's connections are in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(
                f"port {settings.port} on {settings.host} is already in use; choose another "
                "with --port N (make run PORT=N)"
            ) from None
        raise ConfigurationError(f"cannot listen on {where}: {exc.strerror}") from None
    # Worker processes receive it from the supervisor (uvicorn's multiprocess supervisor).
    sock.set_inheritable(True)
    return sock


def allow_open_files(settings: Settings) -> int:
    """Raise this process's soft open-file limit (workers inherit it) to what
    ``max_connections`` needs, as far as the hard limit allows; returns the limit. Beyond
    it the kernel refuses connections before the broker can answer them 503."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = settings.max_connections + OTHER_FILES
    if soft != resource.RLIM_INFINITY and soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft != resource.RLIM_INFINITY and soft < wanted:
        log.warning(
            "open_file_limit_low",
            limit=soft,
            max_connections=settings.max_connections,
            detail="raise the hard limit (ulimit -Hn, systemd LimitNOFILE=) or lower "
            "max_connections: connections beyond the limit fail in the kernel, unanswered",
        )
    return soft
