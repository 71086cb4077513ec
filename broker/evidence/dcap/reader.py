"""A bounds-checked cursor over bytes, shared by the quote, event-log and TPM parsers.

Integers are little-endian (Intel quotes, TCG event logs) unless the reader is made
``byteorder="big"`` (TPM 2.0 structures, which the TPM marshals big-endian: TPM 2.0 Library
Part 1, "Marshaling"). Every shortfall is a ``MalformedEvidence`` that names the structure
and the field being read.
"""

from __future__ import annotations

from typing import Literal

from broker.errors import MalformedEvidence


class ByteReader:
    __slots__ = ("_fill_from", "byteorder", "data", "pos", "where")

    def __init__(
        self, data: bytes, where: str, byteorder: Literal["little", "big"] = "little"
    ) -> None:
        self.data = data
        self.pos = 0
        self.where = where
        self.byteorder: Literal["little", "big"] = byteorder
        self._fill_from: int | None = None

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, size: int, what: str) -> bytes:
        start = self.pos
        end = start + size
        if end > len(self.data):
            raise MalformedEvidence(
                f"{self.where}: {what} needs {size} bytes at offset {start}, "
                f"only {self.remaining} left"
            )
        self.pos = end
        return self.data[start:end]

    def uint(self, size: int, what: str) -> int:
        return int.from_bytes(self.take(size, what), self.byteorder)

    def u16(self, what: str) -> int:
        return self.uint(2, what)

    def u32(self, what: str) -> int:
        return self.uint(4, what)

    def rest(self) -> bytes:
        return self.take(self.remaining, "rest")

    def expect_end(self, what: str) -> None:
        if self.remaining:
            raise MalformedEvidence(
                f"{self.where}: {self.remaining} unexpected bytes after {what} at offset {self.pos}"
            )

    def at_fill(self) -> bool:
        """True when everything left is 0x00 or 0xFF fill (or nothing is left).

        Where the fill starts is found once, from the end: a parser that asks after each of
        its records then pays a comparison, not a scan of the rest (which made reading n
        records of a buffer n times its length)."""
        if self._fill_from is None:
            data = self.data
            self._fill_from = min(len(data.rstrip(b"\x00")), len(data.rstrip(b"\xff")))
        return self.pos >= self._fill_from
