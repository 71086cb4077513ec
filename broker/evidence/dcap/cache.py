"""A small thread-safe LRU memo for immutable verification facts.

Parsed certificates, CRLs whose signature was checked, TCB Info and QE Identity whose
signature was checked, and QE reports verified under a PCK key do not change: they are kept
by the SHA-256 of their bytes (and of their signer), so that a quote pays only for what is new
in it. Anything that depends on ``now`` (validity windows, nextUpdate) is checked on every
call by the verifier, never cached.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

_V = TypeVar("_V")


class Memo(Generic[_V]):
    def __init__(self, capacity: int = 1024) -> None:
        self._capacity = capacity
        self._items: OrderedDict[Hashable, _V] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_compute(self, key: Hashable, compute: Callable[[], _V]) -> _V:
        """The remembered value of ``key``, or ``compute()`` remembered if it returns.

        An exception from ``compute`` is not remembered: a failure is re-checked next time.
        """
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = compute()
        with self._lock:
            self._items[key] = value
            if len(self._items) > self._capacity:
                self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


def digest(*parts: bytes) -> bytes:
    """SHA-256 over length-prefixed parts (so that part boundaries cannot shift)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.digest()
