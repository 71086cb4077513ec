"""The broker's listening socket, bound before anything else starts.

Binding first means a port in use is reported before the database or the token is touched and
before the broker announces itself: one line naming the address and how to choose another,
and nothing to undo.
"""

from __future__ import annotations

import errno
import socket

from broker.errors import ConfigurationError
from broker.settings import Settings

#: Pending connections the kernel queues before the broker accepts them (uvicorn's default).
BACKLOG = 2048


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
