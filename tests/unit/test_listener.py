"""The listening socket is bound first, and a busy port is one line naming it
(broker/cli/listener.py); the open-file limit follows ``max_connections``."""

from __future__ import annotations

import resource
import socket

import pytest
from structlog.testing import capture_logs

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


def test_the_open_file_limit_is_raised_for_the_connections(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limits = {"soft": 1024, "hard": 4096}
    monkeypatch.setattr(resource, "getrlimit", lambda _: (limits["soft"], limits["hard"]))

    def setrlimit(_: int, values: tuple[int, int]) -> None:
        limits["soft"], limits["hard"] = values

    monkeypatch.setattr(resource, "setrlimit", setrlimit)
    assert listener.allow_open_files(Settings(max_connections=2048)) == 2048 + 256
    assert limits == {"soft": 2304, "hard": 4096}
    # Where the hard limit is lower, as far as it goes, and a warning says what to do.
    with capture_logs() as logged:
        assert listener.allow_open_files(Settings(max_connections=8192)) == 4096
    assert [line["event"] for line in logged] == ["open_file_limit_low"]
    assert "LimitNOFILE" in logged[0]["detail"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
