"""A bounded cache of unwrapped customer secrets, one per PKCS#11 session.

Unwrapping a secret under its KEK (``C_UnwrapKey``, RFC 5649 KWP) is a fifth of a SoftHSM
envelope and a network round trip on a network HSM. A release of a key released shortly
before can reuse the secret's session object instead. The cache holds **object handles**,
never key material: the object is the same SENSITIVE, non-token session object a release
makes today, so its value never leaves the HSM, and it dies with the session that made it
(PKCS#11 v2.40 §4.4, session objects). That is why each session owns its own cache and why
the session pool forgets the cache whenever it closes a session.

An entry is keyed by the KEK label and the SHA-256 of the wrapped blob, so a new key
version, a rotated KEK or any other blob can never reach an old entry. The count is bounded
(least recently used first out) and so is an entry's age from its unwrap; an entry leaving
the cache is destroyed in the HSM at once. Expired entries are destroyed the next time the
session uses its cache, since a session may only be driven from the thread that owns it.

A secret is kept only from its second release in a while (:meth:`SecretCache.admit`): a key
released once (one VM's own disk key at its boot), or keys released evenly among far more
than the cache holds, would otherwise each push out an entry that is used, and pay an
eviction in the HSM besides (docs/performance.md). Such releases cost what they cost without
a cache; a key released again soon is kept from its second release on.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hsm.handles import AgedHandles

CacheKey = tuple[str, bytes]

#: Misses remembered for admission, per entry the cache may hold.
SEEN_PER_ENTRY = 4


def cache_key(kek_label: str, blob: bytes) -> CacheKey:
    return (kek_label, hashlib.sha256(blob).digest())


@dataclass(frozen=True, slots=True)
class SecretCacheLimits:
    """How many unwrapped secrets one session keeps, and for how long (0 entries: none)."""

    size: int = 0
    max_age_seconds: float = 300.0
    clock: Callable[[], float] = time.monotonic
    """Seconds on a monotonic scale; injectable so tests expire entries without waiting."""

    def __post_init__(self) -> None:
        if self.size < 0 or self.max_age_seconds <= 0:
            raise ValueError(
                f"secret cache size {self.size} must be >= 0 and max age "
                f"{self.max_age_seconds} s > 0"
            )

    @property
    def enabled(self) -> bool:
        return self.size > 0


@dataclass(frozen=True, slots=True)
class SecretCacheStats:
    entries: int
    hits: int
    misses: int


class SecretCache:
    """Unwrapped-secret handles of one session, least recently used first.

    Not thread-safe, and need not be: like its session, it is used by one thread only.
    """

    def __init__(self, limits: SecretCacheLimits) -> None:
        if not limits.enabled:
            raise ValueError("a secret cache needs a size of at least 1")
        self._handles = AgedHandles(limits.max_age_seconds, limits.clock, bound=limits.size)
        # Keys that missed lately, least recent first: what admission remembers, bounded.
        self._seen: OrderedDict[CacheKey, bool] = OrderedDict()
        self._seen_bound = SEEN_PER_ENTRY * limits.size
        self._hits = 0
        self._misses = 0

    def get(self, key: CacheKey) -> Any | None:
        """The live handle for ``key``, or None (the caller unwraps and :meth:`put` s it)."""
        handle = self._handles.get(key)
        if handle is None:
            self._misses += 1
        else:
            self._hits += 1
        return handle

    def admit(self, key: CacheKey) -> bool:
        """After a miss for ``key``: whether its secret, once unwrapped, is kept. Yes when
        ``key`` missed before, among the last ``SEEN_PER_ENTRY * size`` keys that missed."""
        if self._seen.pop(key, False):
            return True
        self._seen[key] = True
        if len(self._seen) > self._seen_bound:
            self._seen.popitem(last=False)
        return False

    def put(self, key: CacheKey, handle: Any) -> None:
        """Own ``handle`` from now on; destroy what falls out of the bound."""
        self._handles.put(key, handle, owned=True)

    def expire(self) -> None:
        """Destroy every entry unwrapped ``max_age_seconds`` ago or more."""
        self._handles.expire()

    def stats(self) -> SecretCacheStats:
        return SecretCacheStats(len(self._handles), self._hits, self._misses)
