"""Release contexts remembered per worker process, by key name, least recently used out.

A remembered context is never trusted: a release decides and seals with it, then commits
its audit record with ``audit_release_if_current``, which appends only if the context still
equals the key's current one. So an entry may be stale at any time (another worker or
replica disabled, rotated or rebound the key) without any release ever acting on it; a stale
entry costs the one release that finds it a fresh read and a second decision. Nothing
invalidates entries across processes, by design: correctness comes from the conditional
append alone.

Used only from the worker's event loop, so it takes no lock.
"""

from __future__ import annotations

from collections import OrderedDict

from broker.store.contexts import ReleaseContext


class ContextCache:
    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"capacity {capacity} is negative")
        self._capacity = capacity
        self._entries: OrderedDict[str, ReleaseContext] = OrderedDict()

    @property
    def capacity(self) -> int:
        """Most entries held; 0 holds none (every release reads its context)."""
        return self._capacity

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key_name: str) -> ReleaseContext | None:
        context = self._entries.get(key_name)
        if context is not None:
            self._entries.move_to_end(key_name)
        return context

    def put(self, context: ReleaseContext) -> None:
        """Remember ``context`` under its key's name (nothing when the capacity is 0)."""
        if self._capacity == 0:
            return
        self._entries[context.name] = context
        self._entries.move_to_end(context.name)
        if len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def discard(self, context: ReleaseContext) -> None:
        """Forget ``context`` if it is still the entry for its key: an entry a concurrent
        release has meanwhile replaced with a fresher read stays."""
        if self._entries.get(context.name) is context:
            del self._entries[context.name]
