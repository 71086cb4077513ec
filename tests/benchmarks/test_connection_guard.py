"""The connection-limits micro-benchmark (benchmarks/connection_guard.py) serves every request
through both protocols, and the guard's counts return to nothing after its connection."""

from __future__ import annotations

from benchmarks import connection_guard
from broker.api.coalesce import HttpProtocol
from broker.api.guard import GuardedProtocol


async def test_both_protocols_answer_every_request() -> None:
    assert await connection_guard.serve(HttpProtocol, 20) > 0
    limits = connection_guard.admission()
    assert await connection_guard.serve(GuardedProtocol, 20, limits) > 0
    assert (limits.connections, limits.bytes_in_flight, limits.open_requests("192.0.2.7")) == (
        0,
        0,
        0,
    )
