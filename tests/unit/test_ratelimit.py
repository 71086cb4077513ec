from __future__ import annotations

import pytest

from broker.api.ratelimit import RateLimiter
from broker.errors import RateLimited


def test_bucket_refills_at_the_rate_and_clients_are_apart() -> None:
    limiter = RateLimiter(per_second=2, burst=2)
    limiter.check("a", now=0.0)
    limiter.check("a", now=0.0)
    with pytest.raises(RateLimited, match="more than 2 requests per second"):
        limiter.check("a", now=0.0)
    limiter.check("b", now=0.0)  # another client has its own bucket
    limiter.check("a", now=0.5)  # one token back after half a second
    with pytest.raises(RateLimited):
        limiter.check("a", now=0.5)


def test_zero_disables_the_limit() -> None:
    limiter = RateLimiter(per_second=0, burst=1)
    for _ in range(100):
        limiter.check("a", now=0.0)
