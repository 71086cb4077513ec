"""The coalescing transport: a response's head and body leave in one write, nothing is
reordered, lost or held past the loop callback that wrote it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from broker.api.coalesce import CoalescingTransport


class RecordingTransport(asyncio.Transport):
    """Records what reaches the socket, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, Any]] = []
        self.buffered = 0

    def write(self, data: Any) -> None:
        self.events.append(("write", bytes(data)))

    def close(self) -> None:
        self.events.append(("close", None))

    def abort(self) -> None:
        self.events.append(("abort", None))

    def write_eof(self) -> None:
        self.events.append(("eof", None))

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("192.0.2.7", 4242)}.get(name, default)

    def is_closing(self) -> bool:
        return False


async def _one_callback_later() -> None:
    await asyncio.sleep(0)


def _pair() -> tuple[RecordingTransport, CoalescingTransport]:
    inner = RecordingTransport()
    return inner, CoalescingTransport(inner, asyncio.get_running_loop())


async def test_head_and_body_written_in_one_callback_leave_as_one_write() -> None:
    inner, transport = _pair()
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    assert inner.events == []  # the head waits for its body
    transport.write(memoryview(b"{}"))
    assert inner.events == [("write", b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")]
    await _one_callback_later()
    assert len(inner.events) == 1  # nothing left over to send again


async def test_a_lone_write_leaves_when_its_callback_is_done() -> None:
    inner, transport = _pair()
    transport.write(b"head")
    assert inner.events == []
    await _one_callback_later()
    assert inner.events == [("write", b"head")]
    transport.write(b"body")  # a later chunk (a streamed body) starts a burst of its own
    await _one_callback_later()
    assert inner.events == [("write", b"head"), ("write", b"body")]


async def test_a_third_write_in_one_callback_keeps_the_order() -> None:
    inner, transport = _pair()
    transport.writelines([b"a", b"b"])
    transport.write(b"c")
    transport.write(b"d")
    assert inner.events == [("write", b"abc")]
    await _one_callback_later()
    assert inner.events == [("write", b"abc"), ("write", b"d")]


async def test_close_sends_what_is_held_first() -> None:
    inner, transport = _pair()
    transport.write(b"last words")
    transport.close()
    assert inner.events == [("write", b"last words"), ("close", None)]
    await _one_callback_later()
    assert len(inner.events) == 2


async def test_write_eof_sends_what_is_held_first() -> None:
    inner, transport = _pair()
    transport.write(b"tail")
    transport.write_eof()
    assert inner.events == [("write", b"tail"), ("eof", None)]


async def test_abort_drops_what_is_held() -> None:
    inner, transport = _pair()
    transport.write(b"never sent")
    transport.abort()
    await _one_callback_later()
    assert inner.events == [("abort", None)]


async def test_buffer_size_counts_what_is_held() -> None:
    inner, transport = _pair()
    inner.buffered = 100
    transport.write(b"12345")
    assert transport.get_write_buffer_size() == 105
    await _one_callback_later()
    assert transport.get_write_buffer_size() == 100


async def test_extra_info_is_the_sockets() -> None:
    _, transport = _pair()
    assert transport.get_extra_info("peername") == ("192.0.2.7", 4242)
    assert transport.get_extra_info("sslcontext") is None


@pytest.mark.parametrize("chunks", [[b"x"], [b"x", b"y"], [b"x", b"y", b"z", b"w", b"v"]])
async def test_every_byte_arrives_once_in_order(chunks: list[bytes]) -> None:
    inner, transport = _pair()
    for chunk in chunks:
        transport.write(chunk)
    await _one_callback_later()
    assert b"".join(data for kind, data in inner.events if kind == "write") == b"".join(chunks)


async def test_what_is_held_is_dropped_when_the_connection_closed_meanwhile() -> None:
    class Closed(RecordingTransport):
        def is_closing(self) -> bool:
            return True

    inner = Closed()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"for nobody")
    await _one_callback_later()
    assert inner.events == []
