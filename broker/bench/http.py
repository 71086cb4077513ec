"""A lean HTTP/1.1 keep-alive client for the load generator.

The generator must not become the bottleneck it measures (ARCHITECTURE §6): a general
client such as httpx spends a few hundred microseconds of Python per request, as much as
the broker's own overhead, on a core that PostgreSQL shares. This client does only what the
benchmark needs: JSON POST and GET to one loopback origin over one persistent connection,
responses framed by ``Content-Length`` (which the broker always sends).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class HttpError(RuntimeError):
    """The connection failed or the broker answered something that is not HTTP/1.1 JSON."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Connection:
    """One keep-alive connection to ``host:port``; requests on it are sequential."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self._reader, self._writer

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def request(
        self, method: str, path: str, body: Any = None, bearer: str | None = None
    ) -> Answer:
        payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = [] if body is None else [("Content-Type", "application/json")]
        if bearer is not None:
            headers.append(("Authorization", f"Bearer {bearer}"))
        return await self.send(method, path, headers, payload)

    async def send(
        self, method: str, path: str, headers: Sequence[tuple[str, str]], payload: bytes
    ) -> Answer:
        """``payload`` with ``headers`` (besides Host and Content-Length, which this adds)."""
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        head += [f"{name}: {value}" for name, value in headers]
        head.append(f"Content-Length: {len(payload)}")
        message = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload
        try:
            return await self._exchange(message)
        except (OSError, asyncio.IncompleteReadError, HttpError) as exc:
            await self.close()
            raise HttpError(f"{method} {path}: {type(exc).__name__}: {exc}") from None

    async def _exchange(self, message: bytes) -> Answer:
        reader, writer = await self._open()
        writer.write(message)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise HttpError(f"not an HTTP/1.1 status line: {lines[0]!r}")
        length, close = None, False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value.strip())
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        if length is None:
            raise HttpError("response without Content-Length")
        body = await reader.readexactly(length)
        if close:
            await self.close()
        return Answer(int(parts[1]), body)
