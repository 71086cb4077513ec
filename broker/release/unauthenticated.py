"""Requests refused before anything the broker issued was recognised in them: audited in
aggregate, per source address and minute.

A guest request carries something the broker issued: an attest its challenge's nonce
(checked by MAC), a release its token (checked by signature). Until that check passes,
nothing in the request is known to come from a guest the broker has met, and anyone can send
it at no cost. One audit record per such refusal let a stranger grow the chain without limit
and, since every append locks the chain head, slow every legitimate release while doing so
(docs/operations.md, "Unauthenticated requests"). Such a refusal
(:class:`~broker.errors.Unrecognised`) is therefore

* counted: ``keybroker_unauthenticated_requests{endpoint, reason}``;
* logged at a bounded rate: the first request of each source, endpoint and reason in a window
  (``unauthenticated_request``, with its detail and request id); when the window closes, one
  line per source whose other requests were not logged (``unauthenticated_suppressed``);
* audited in aggregate: when each minute ends, and at shutdown, one record of kind
  ``unauthenticated`` per source address with its counts by endpoint and reason.

Memory is bounded: a window tracks at most ``max_sources`` addresses, and counts requests
from any other address under one :data:`OTHER_SOURCES` bucket, so many addresses change
nothing but that bucket's counts; a window is at most a few entries per address. Each worker
keeps its own windows, as it keeps its own rate limits: N workers write at most N records per
source and minute, and at most N x (``max_sources`` + 1) records a minute in all.

A window that cannot be written (the database unavailable) is logged with its totals and
counted (``keybroker_unauthenticated_audit_failures``), and the rest of it is dropped:
nothing else waits or fails, the requests were refused anyway, and the metric counted each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from broker.errors import KeybrokerError, Unrecognised
from broker.logs import get_logger
from broker.metrics import Children, Metrics
from broker.release.origin import Origin
from broker.store.audit import AuditRecord
from broker.timeutil import iso, utcnow

log = get_logger("keybroker.unauthenticated")

KIND = "unauthenticated"
#: The bucket of every address beyond the first ``max_sources`` of a window.
OTHER_SOURCES = "other"
WINDOW = timedelta(minutes=1)

#: Why an admin request was refused before its operation ran.
AdminRefusal = Literal["admin-token-missing", "admin-token-invalid", "admin-forbidden"]

#: Requests by (endpoint, reason): a fixed few entries (``UnrecognisedReason``).
Counts = dict[tuple[str, str], int]


@dataclass(frozen=True, slots=True)
class Window:
    """What one window counted: its bounds and, per source bucket, its counts."""

    start: datetime
    end: datetime
    sources: dict[str, Counts]

    def records(self) -> list[AuditRecord]:
        """One ``unauthenticated`` record per source bucket, in order of first request."""
        return [self.record(source, counts) for source, counts in self.sources.items()]

    def record(self, source: str, counts: Counts) -> AuditRecord:
        requests: dict[str, dict[str, int]] = {}
        for (endpoint, reason), number in counts.items():
            requests.setdefault(endpoint, {})[reason] = number
        body: dict[str, Any] = {
            "source": source,
            "window": {"start": _instant(self.start), "end": _instant(self.end)},
            "requests": requests,
            "total": sum(counts.values()),
        }
        return AuditRecord(self.end, KIND, "deny", None, None, body)

    def total(self) -> int:
        return sum(sum(counts.values()) for counts in self.sources.values())


def _instant(moment: datetime) -> str:
    return iso(moment.astimezone(UTC))


class Tally:
    """The counts of the current window, bounded to ``max_sources`` addresses plus
    :data:`OTHER_SOURCES`. Pure: no clock, no I/O."""

    __slots__ = ("_sources", "max_sources", "start")

    def __init__(self, max_sources: int, start: datetime) -> None:
        if max_sources < 0:
            raise ValueError(f"max_sources {max_sources} is negative")
        self.max_sources = max_sources
        self.start = start
        self._sources: dict[str, Counts] = {}

    def count(self, source: str, endpoint: str, reason: str) -> tuple[str, bool]:
        """Count one request; its bucket (``source``, or :data:`OTHER_SOURCES` once the
        window tracks ``max_sources`` others), and whether it is the first of its bucket,
        endpoint and reason in this window (the one to log)."""
        counts = self._sources.get(source)
        if counts is None:
            if len(self._sources) - (OTHER_SOURCES in self._sources) >= self.max_sources:
                source = OTHER_SOURCES
                counts = self._sources.setdefault(OTHER_SOURCES, {})
            else:
                counts = self._sources[source] = {}
        key = (endpoint, reason)
        number = counts.get(key, 0) + 1
        counts[key] = number
        return source, number == 1

    def buckets(self) -> int:
        """Source buckets tracked now, :data:`OTHER_SOURCES` included."""
        return len(self._sources)

    def take(self, now: datetime) -> Window:
        """Close the current window at ``now`` and start the next one there."""
        window = Window(self.start, now, self._sources)
        self.start, self._sources = now, {}
        return window


class UnauthenticatedAudit:
    """Counts, logs and aggregates one worker's unrecognised requests; :meth:`run` writes
    each window's records through ``append`` (one statement each, as every append)."""

    def __init__(
        self,
        append: Callable[[AuditRecord], Awaitable[int]],
        metrics: Metrics,
        max_sources: int,
        *,
        window: timedelta = WINDOW,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._append = append
        self._requests = Children(metrics.unauthenticated)
        self._failures = metrics.unauthenticated_audit_failures
        self._clock = clock
        self._window = window.total_seconds()
        self.tally = Tally(max_sources, clock())
        self._stopping = asyncio.Event()
        self._flushing = asyncio.Lock()

    def refused(self, origin: Origin, endpoint: str, failure: Unrecognised) -> None:
        """Account for one request refused with ``failure`` (no I/O: the request's answer
        does not wait for the database)."""
        self._count(origin, endpoint, failure.reason, failure.detail)

    def refused_admin(self, origin: Origin, endpoint: str, reason: AdminRefusal) -> None:
        """Account for one admin request refused for its token (missing, not valid) or its
        role, in the same windows: ``reason`` names which."""
        self._count(origin, endpoint, reason, None)

    def _count(self, origin: Origin, endpoint: str, reason: str, detail: str | None) -> None:
        self._requests(endpoint, reason).inc()
        bucket, first = self.tally.count(origin.source, endpoint, reason)
        if first:
            log.info(
                "unauthenticated_request",
                source=origin.source,
                bucket=bucket,
                endpoint=endpoint,
                reason=reason,
                detail=detail,
            )

    async def flush(self) -> int:
        """Close the current window and append one record per source bucket; the number
        written. A failure to write is logged and counted, never raised."""
        async with self._flushing:
            window = self.tally.take(self._clock())
            _log_suppressed(window)
            records = window.records()
            for written, record in enumerate(records):
                try:
                    await self._append(record)
                except KeybrokerError as exc:
                    self._failures.inc()
                    lost = records[written:]
                    log.error(
                        "unauthenticated_audit_failed",
                        error=exc.type,
                        detail=exc.detail,
                        window_start=_instant(window.start),
                        window_end=_instant(window.end),
                        records_lost=len(lost),
                        requests_lost=sum(r.body["total"] for r in lost),
                    )
                    return written
            return len(records)

    async def run(self) -> None:
        """Flush when each window ends (on the minute) until :meth:`stop`, then once more."""
        while not self._stopping.is_set():
            with suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._until_window_ends())
            try:
                await self.flush()
            except Exception as exc:  # a bug must not end the flushing of later windows
                log.error(
                    "unauthenticated_flush_crashed", error_type=type(exc).__name__, exc_info=exc
                )

    def stop(self) -> None:
        """Make :meth:`run` flush what it holds and return."""
        self._stopping.set()

    def _until_window_ends(self) -> float:
        elapsed = self._clock().timestamp() % self._window
        return self._window - elapsed


def _log_suppressed(window: Window) -> None:
    """One line per source bucket whose requests were not all logged: one was logged per
    endpoint and reason (:meth:`UnauthenticatedAudit.refused`)."""
    for source, counts in window.sources.items():
        total = sum(counts.values())
        if total > len(counts):
            log.info(
                "unauthenticated_suppressed",
                source=source,
                window_start=_instant(window.start),
                window_end=_instant(window.end),
                requests=total,
                suppressed=total - len(counts),
            )
