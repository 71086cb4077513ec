"""The lingering close (broker/api/guard.py): a connection whose request is still arriving
closes by half, so that its answer is read before the connection ends."""

from __future__ import annotations

import asyncio

import pytest

from broker.api import guard
from broker.api.guard import LingeringTransport
from tests.unit.test_coalesce import RecordingTransport


class HalfClosable(RecordingTransport):
    def can_write_eof(self) -> bool:
        return True


class WholeOnly(RecordingTransport):
    def can_write_eof(self) -> bool:
        return False


async def test_a_close_while_the_client_sends_writes_eof_then_closes_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(guard, "LINGER_SECONDS", 0.01)
    inner = HalfClosable()
    transport = LingeringTransport(inner, asyncio.get_running_loop(), lambda: True)
    transport.write(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
    transport.close()
    # The answer first, then the end of what the broker sends; the socket stays open.
    assert inner.events == [("write", b"HTTP/1.1 408 Request Timeout\r\n\r\n"), ("eof", None)]
    assert transport.is_closing()
    transport.close()  # closing again changes nothing
    assert len(inner.events) == 2
    await asyncio.sleep(0.05)
    assert inner.events[-1] == ("close", None)


async def test_a_close_when_the_request_has_arrived_closes_at_once() -> None:
    inner = HalfClosable()
    transport = LingeringTransport(inner, asyncio.get_running_loop(), lambda: False)
    transport.write(b"answer")
    transport.close()
    assert inner.events == [("write", b"answer"), ("close", None)]


async def test_a_transport_that_cannot_half_close_closes_at_once() -> None:
    inner = WholeOnly()
    transport = LingeringTransport(inner, asyncio.get_running_loop(), lambda: True)
    transport.close()
    assert inner.events == [("close", None)]
