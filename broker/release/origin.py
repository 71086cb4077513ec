"""Where a guest request came from, as the release orchestrator records it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Origin:
    request_id: str | None
    """The broker's own id of the request (``X-Request-Id`` of the answer): the audit
    record's ``request_id``, which no client chooses."""
    client_request_id: str | None = None
    """The client's ``X-Request-Id``, when it was a short token (``broker/api/middleware.py``):
    recorded beside the broker's id to correlate with the client's own logs, never in its
    place, since any client may send any other guest's id."""
    source: str = "unknown"
    """The TCP peer's address (``X-Forwarded-For`` is not believed, docs/operations.md)."""
