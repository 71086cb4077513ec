"""Handles one PKCS#11 session keeps between calls, each for a bounded time.

Two memories of a session are made of this: the session copies of the token keys
(``hsm/keycopies.py``) and the unwrapped customer secrets (``hsm/secretcache.py``). Both keep
python-pkcs11 object handles, never key material; both must stop using a handle some time
after it was made, so that a change on the token (a destroyed key) takes effect; and both
must destroy the session objects they own as soon as they let go of them, whether by age,
by the count bound or by replacement. A handle that is not owned (a token object used in
place when the token refuses to copy it) is only forgotten.

Not thread-safe, and need not be: like its session, it is used by one thread only. Entries
are aged from when they were made and swept the next time the session uses the store, as a
session may only be driven from the thread that owns it.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class _Entry:
    handle: Any
    owned: bool
    made_at: float


class AgedHandles:
    """Handles by key, each used for less than ``max_age_seconds`` from when it was made;
    at most ``bound`` of them when given, least recently used first out."""

    def __init__(
        self, max_age_seconds: float, clock: Callable[[], float], bound: int | None = None
    ) -> None:
        self._max_age = max_age_seconds
        self._clock = clock
        self._bound = bound
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._next_expiry = math.inf

    def get(self, key: Hashable) -> Any | None:
        """The handle kept for ``key`` (now the most recently used), or None."""
        self.expire()
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry.handle

    def put(self, key: Hashable, handle: Any, *, owned: bool) -> None:
        """Keep ``handle`` for ``key`` from now on (``owned``: destroy it when letting go)."""
        made_at = self._clock()
        replaced = self._entries.pop(key, None)
        self._entries[key] = _Entry(handle, owned, made_at)
        self._next_expiry = min(self._next_expiry, made_at + self._max_age)
        # The new entry is kept before anything is destroyed: should a destroy fail, the
        # session pool closes the session, and every object of the session dies with it.
        if replaced is not None and replaced.handle is not handle:
            _let_go(replaced)
        if self._bound is not None:
            while len(self._entries) > self._bound:
                _let_go(self._entries.popitem(last=False)[1])

    def expire(self) -> None:
        """Let go of every entry made ``max_age_seconds`` ago or more."""
        now = self._clock()
        if now < self._next_expiry:
            return
        max_age = self._max_age
        for key in [k for k, entry in self._entries.items() if now - entry.made_at >= max_age]:
            _let_go(self._entries.pop(key))
        self._next_expiry = min(
            (entry.made_at + max_age for entry in self._entries.values()), default=math.inf
        )

    def owned(self) -> Iterator[Any]:
        """The handles this store will destroy when it lets go of them."""
        return (entry.handle for entry in self._entries.values() if entry.owned)

    def __len__(self) -> int:
        return len(self._entries)


def _let_go(entry: _Entry) -> None:
    if entry.owned:
        entry.handle.destroy()
