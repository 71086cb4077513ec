"""What one worker process admits: connections, requests per client, request bytes held.

Every count here lives in one worker and is decided on its event loop's thread, so none needs
a lock. ``broker/api/guard.py`` applies the decisions on every connection before any route
sees a request; this module only counts and decides:

* **connections**: at most ``max_connections`` open at once; one beyond is answered 503.
* **open requests per client**: a request counts from its first byte until its answer is
  sent, so a client that opens many requests and finishes none (a slow-body or slow-header
  attack) reaches ``max_open_requests_per_client`` at once and gets 429, however slowly it
  opens them.
* **request rate per client**: the token bucket of ``broker/api/ratelimit.py`` is charged
  when a request's head is complete, for every path but the probes (health, readiness and
  metrics are never limited).
* **request bytes held**: heads and bodies received for requests not yet answered, at most
  ``max_request_bytes_in_flight`` per worker; the request whose bytes would pass it is
  answered 503.

A refusal is counted in ``keybroker_http_refused_total{reason}`` and logged at most once per
:data:`LOG_INTERVAL_SECONDS` per reason, with the number since the last line: an attack must
not be able to turn each of its connections into a log line.
"""

from __future__ import annotations

import time
from typing import Any

from broker.api.ratelimit import RateLimiter
from broker.errors import KeybrokerError, Overloaded, RateLimited
from broker.logs import get_logger
from broker.metrics import Children
from broker.settings import Settings

log = get_logger("keybroker.http")

#: Paths never charged to the request-rate bucket: what an orchestrator polls.
PROBES = frozenset({b"/healthz", b"/readyz", b"/metrics"})

LOG_INTERVAL_SECONDS = 10.0

#: The lifespan state key under which the application hands its Admission to the protocol.
STATE_KEY = "keybroker.admission"


class Admission:
    def __init__(self, settings: Settings, refused: Any) -> None:
        """``refused`` is the metric counting refusals by reason (a prometheus Counter)."""
        self.settings = settings
        self.connections = 0
        self.bytes_in_flight = 0
        self._open: dict[str, int] = {}
        rate = settings.rate_limit_per_second
        self._rate = RateLimiter(rate, max(1, 2 * rate))
        self._refused = Children(refused)
        self._unlogged: dict[str, int] = {}
        self._logged_at: dict[str, float] = {}

    # --- connections -----------------------------------------------------------------------

    def connection_opened(self) -> bool:
        """Count a new connection; False when it is one more than the worker may hold."""
        self.connections += 1
        return self.connections <= self.settings.max_connections

    def connection_closed(self) -> None:
        self.connections -= 1

    # --- requests --------------------------------------------------------------------------

    def request_opened(self, client: str) -> None:
        """A request's first byte arrived."""
        self._open[client] = self._open.get(client, 0) + 1

    def request_closed(self, client: str, bytes_answered: int = 0) -> None:
        """Its answer was sent, or its connection closed; ``bytes_answered`` received bytes
        are no longer held (see :meth:`take_bytes`)."""
        remaining = self._open[client] - 1
        if remaining:
            self._open[client] = remaining
        else:
            del self._open[client]
        self.bytes_in_flight -= bytes_answered

    def open_requests(self, client: str) -> int:
        return self._open.get(client, 0)

    def admit(self, client: str, path: bytes, beyond_connections: bool) -> KeybrokerError | None:
        """Whether a request whose head is complete may go on to the application: None, or
        the error to answer it with (its connection then closes)."""
        if beyond_connections:
            return self.refuse(
                "connections",
                client,
                Overloaded(
                    f"this worker holds its limit of {self.settings.max_connections} "
                    "connections; retry later"
                ),
            )
        cap = self.settings.max_open_requests_per_client
        if cap and self._open.get(client, 0) > cap:
            return self.refuse(
                "open_requests",
                client,
                RateLimited(f"more than {cap} unanswered requests from this client"),
            )
        if path not in PROBES:
            try:
                self._rate.check(client)
            except RateLimited as exc:
                return self.refuse("rate", client, exc)
        return None

    # --- bytes -----------------------------------------------------------------------------

    def take_bytes(self, count: int) -> bool:
        """Count ``count`` request bytes received; False when they pass the worker's limit
        (they stay counted until given back, by :meth:`request_closed` or
        :meth:`give_back_bytes`)."""
        self.bytes_in_flight += count
        return self.bytes_in_flight <= self.settings.max_request_bytes_in_flight

    def give_back_bytes(self, count: int) -> None:
        self.bytes_in_flight -= count

    # --- refusals --------------------------------------------------------------------------

    def refuse(
        self, reason: str, client: str, error: KeybrokerError, now: float | None = None
    ) -> KeybrokerError:
        """Count and (rate-limited) log one refusal; return ``error`` for the answer."""
        self._refused(reason).inc()
        self._unlogged[reason] = self._unlogged.get(reason, 0) + 1
        now = time.monotonic() if now is None else now
        if now - self._logged_at.get(reason, -LOG_INTERVAL_SECONDS) >= LOG_INTERVAL_SECONDS:
            log.warning(
                "requests_refused",
                reason=reason,
                count=self._unlogged.pop(reason),
                last_client=client,
                detail=error.detail,
            )
            self._logged_at[reason] = now
        return error
