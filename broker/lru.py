"""A bounded, thread-safe map that forgets its least recently used entry first.

The broker remembers many immutable facts (compiled policies, verified certificate links,
decoded collateral, tokens it issued, parsed certificates): each memory is one of these, so
that every one is bounded the same way; :func:`memoized` makes one the memory of a function
(``functools.lru_cache`` and ``functools.cache`` are not used, docs/architecture.md §9).
``None`` is not a value: :meth:`Lru.get` answers ``None`` for a key it does not hold.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Lru(Generic[K, V]):
    __slots__ = ("_items", "_lock", "capacity")

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"capacity {capacity} is negative")
        self.capacity = capacity
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """The value held for ``key``, which becomes the most recently used; else None."""
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def get_or_compute(self, key: K, compute: Callable[[K], V]) -> V:
        """The value held for ``key``, else ``compute(key)`` held if it returns. A failure is
        not remembered, so the next call computes again; nor is a ``None`` result."""
        value = self.get(key)
        if value is None:
            value = compute(key)
            self.put(key, value)
        return value

    def put(self, key: K, value: V) -> None:
        """Hold ``value`` for ``key`` as the most recently used; the oldest go past capacity."""
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def pop(self, key: K) -> V | None:
        with self._lock:
            return self._items.pop(key, None)

    def discard(self, key: K, value: V) -> None:
        """Forget ``key`` if it still holds this very ``value`` (not one put since)."""
        with self._lock:
            if self._items.get(key) is value:
                del self._items[key]

    def keys(self) -> list[K]:
        """The keys held, least recently used first."""
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


class Memoized(Generic[K, V]):
    """``function``, a pure function of one hashable argument, remembered per argument in an
    :class:`Lru` of ``capacity``. An exception is not remembered (the next call computes
    again), and neither is a ``None`` result."""

    __slots__ = ("_function", "_items")

    def __init__(self, function: Callable[[K], V], capacity: int) -> None:
        self._function = function
        self._items: Lru[K, V] = Lru(capacity)

    def __call__(self, argument: K) -> V:
        return self._items.get_or_compute(argument, self._function)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


def memoized(capacity: int) -> Callable[[Callable[[K], V]], Memoized[K, V]]:
    """``@memoized(capacity)``: the decorated function remembered in an :class:`Lru`."""

    def decorate(function: Callable[[K], V]) -> Memoized[K, V]:
        return Memoized(function, capacity)

    return decorate
