"""A per-client token bucket for the guest endpoints (429 when empty).

In-process and per worker: it protects the broker's CPU and HSM from one noisy client, not a
fleet (put a shared limiter in front of the broker for that). Clients are told apart by
peer address.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from broker.errors import RateLimited

_MAX_CLIENTS = 65536


class RateLimiter:
    def __init__(self, per_second: float, burst: int) -> None:
        self.rate = per_second
        self.burst = float(burst)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def check(self, client: str, now: float | None = None) -> None:
        if self.rate <= 0:
            return
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[client] = (tokens, now)
            raise RateLimited(f"more than {self.rate:g} requests per second from this client")
        self._buckets[client] = (tokens - 1.0, now)
        if len(self._buckets) > _MAX_CLIENTS:
            self._buckets.popitem(last=False)
