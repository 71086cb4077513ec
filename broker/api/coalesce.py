"""One ``write`` system call per HTTP response instead of two.

uvicorn writes a response's status line and headers when the application sends
``http.response.start`` and its body when it sends ``http.response.body``: two
``transport.write`` calls, and uvloop sends each at once. On loopback or a LAN every write
is a system call, a TCP segment, and usually a wake-up of the peer, so a small JSON answer
costs twice what it needs to (docs/performance.md). :class:`HttpProtocol` is uvicorn's own
httptools protocol over a transport that holds the first write of a burst back until the
next write (the head meets its body: one call) or, at the latest, until the event loop has
finished the callback that wrote it (a streamed response whose body comes later). Bytes
are never reordered, dropped or delayed past the current loop iteration.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport(asyncio.Transport):
    """``transport`` with consecutive writes of one loop callback joined into one."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is None:
            self._held = bytes(data)
            self._loop.call_soon(self._release)
            return
        self._held = None
        self._transport.write(held + data)

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def _release(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            # A connection closed since the write takes nothing more (uvloop raises, asyncio
            # drops); the peer is gone either way.
            if not self._transport.is_closing():
                self._transport.write(held)

    # Everything that ends or inspects the stream first sends what is held.

    def close(self) -> None:
        self._release()
        self._transport.close()

    def write_eof(self) -> None:
        self._release()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        held = self._held
        return self._transport.get_write_buffer_size() + (len(held) if held else 0)

    # The rest is the wrapped transport's.

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        limits: tuple[int, int] = self._transport.get_write_buffer_limits()
        return limits

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing through a :class:`CoalescingTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(self.wrap(transport))

    def wrap(self, transport: asyncio.Transport) -> CoalescingTransport:
        return CoalescingTransport(transport, self.loop)
