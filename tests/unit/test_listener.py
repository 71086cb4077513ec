"""The listening socket is bound first, and a busy port is one line naming it
(broker/cli/listener.py)."""

from __future__ import annotations

import socket

import pytest

from broker.cli import listener
from broker.errors import ConfigurationError
from broker.settings import Settings


def test_the_socket_is_bound_and_listening() -> None:
    sock = listener.listen(Settings(host="127.0.0.1", port=_free_port()))
    with sock, socket.create_connection(sock.getsockname(), timeout=10):
        pass  # the kernel accepts: it listens


def test_a_busy_port_names_itself_and_how_to_choose_another() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(listener.PortInUse) as refused:
            listener.listen(Settings(host="127.0.0.1", port=port))
    assert refused.value.detail == (
        f"port {port} on 127.0.0.1 is already in use; choose another with --port N "
        "(make run PORT=N)"
    )


def test_an_address_of_another_machine_is_refused_with_the_reason() -> None:
    with pytest.raises(ConfigurationError) as refused:
        listener.listen(Settings(host="192.0.2.1", port=8080))  # TEST-NET-1, not ours
    assert (
        refused.value.detail == "cannot listen on 192.0.2.1:8080: Cannot assign requested address"
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
