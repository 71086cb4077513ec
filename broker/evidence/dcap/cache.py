"""A small thread-safe LRU memo for immutable verification facts.

Parsed certificates, CRLs whose signature was checked, TCB Info and QE Identity whose
signature was checked, and QE reports verified under a PCK key do not change: they are kept
by the SHA-256 of their bytes (and of their signer), so that a quote pays only for what is new
in it. Anything that depends on ``now`` (validity windows, nextUpdate) is checked on every
call by the verifier, never cached.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from broker.lru import Lru

_V = TypeVar("_V")


class Memo(Generic[_V]):
    def __init__(self, capacity: int = 1024) -> None:
        self._items: Lru[Hashable, _V] = Lru(capacity)

    def get_or_compute(self, key: Hashable, compute: Callable[[], _V]) -> _V:
        """The remembered value of ``key``, or ``compute()`` remembered if it returns.

        An exception from ``compute`` is not remembered: a failure is re-checked next time.
        """
        return self._items.get_or_compute(key, lambda _: compute())

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


def digest(*parts: bytes) -> bytes:
    """SHA-256 over length-prefixed parts (so that part boundaries cannot shift)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.digest()
