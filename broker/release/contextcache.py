"""Release contexts remembered per worker process, by key name, least recently used out.

A remembered context is never trusted: a release decides and seals with it, then commits
its audit record with ``audit_release_if_current``, which appends only if the context still
equals the key's current one. So an entry may be stale at any time (another worker or
replica disabled, rotated or rebound the key) without any release ever acting on it; a stale
entry costs the one release that finds it a fresh read and a second decision. Nothing
invalidates entries across processes, by design: correctness comes from the conditional
append alone.
"""

from __future__ import annotations

from broker.lru import Lru
from broker.store.contexts import ReleaseContext


class ContextCache:
    def __init__(self, capacity: int) -> None:
        self._entries: Lru[str, ReleaseContext] = Lru(capacity)

    @property
    def capacity(self) -> int:
        """Most entries held; 0 holds none (every release reads its context)."""
        return self._entries.capacity

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key_name: str) -> ReleaseContext | None:
        return self._entries.get(key_name)

    def put(self, context: ReleaseContext) -> None:
        """Remember ``context`` under its key's name (nothing when the capacity is 0)."""
        self._entries.put(context.name, context)

    def discard(self, context: ReleaseContext) -> None:
        """Forget ``context`` if it is still the entry for its key: an entry a concurrent
        release has meanwhile replaced with a fresher read stays."""
        self._entries.discard(context.name, context)
