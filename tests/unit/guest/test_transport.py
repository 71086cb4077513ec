"""The lean client's transport without a network: the broker URL, RFC 7469 pins, the backoff
and what is retried. TLS against a real broker is in tests/integration/test_guest_tls.py."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from keybroker_guest.errors import Unreachable, Untrusted, UsageError
from keybroker_guest.transport import (
    Backoff,
    BrokerUrl,
    Reply,
    RetryingTransport,
    parse_pin,
)


@pytest.mark.parametrize(
    ("text", "shown", "authenticated"),
    [
        ("http://127.0.0.1:18400", "http://127.0.0.1:18400", True),
        ("http://localhost", "http://localhost:80", True),
        ("http://[::1]:18400/kb/", "http://[::1]:18400/kb", True),
        ("http://10.0.0.5:8080", "http://10.0.0.5:8080", False),
        ("https://broker.example", "https://broker.example:443", True),
    ],
)
def test_broker_urls(text: str, shown: str, authenticated: bool) -> None:
    url = BrokerUrl.parse(text)
    assert (str(url), url.authenticated) == (shown, authenticated)


@pytest.mark.parametrize(
    "text",
    ["ftp://host", "https://", "https://host/?a=1", "https://user:pw@host", "http://host:99999"],
)
def test_broker_urls_that_are_refused(text: str) -> None:
    with pytest.raises(UsageError, match="broker URL"):
        BrokerUrl.parse(text)


def test_a_pin_is_the_padded_standard_base64_of_32_bytes() -> None:
    digest = hashlib.sha256(b"spki").digest()
    assert parse_pin(base64.b64encode(digest).decode()) == digest
    for wrong in (
        base64.urlsafe_b64encode(b"\xff" * 32).decode(),  # the URL alphabet
        base64.b64encode(digest).decode().rstrip("="),  # unpadded
        base64.b64encode(digest[:20]).decode(),  # SHA-1 length
        "",
    ):
        with pytest.raises(UsageError, match="is not the standard base64 of a SHA-256 digest"):
            parse_pin(wrong)


def test_backoff_doubles_to_its_cap_within_the_upper_half() -> None:
    drawn: list[tuple[float, float]] = []

    def draw(low: float, high: float) -> float:
        drawn.append((low, high))
        return high

    backoff = Backoff(first=0.5, cap=8.0, _draw=draw)
    assert [backoff.delay(n) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert drawn[0] == (0.25, 0.5)
    assert backoff.delay(10_000) == 8.0  # no overflow on a long wait


@dataclass
class Scripted:
    """Answers (or failures) in order; records the requests."""

    outcomes: list[Reply | Exception]
    calls: int = 0

    def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        token: str | None = None,
    ) -> Reply:
        outcome = self.outcomes[self.calls]
        self.calls += 1
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


@dataclass
class Clock:
    now: float = 0.0
    slept: list[float] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def retrying(outcomes: list[Reply | Exception], wait: float) -> tuple[RetryingTransport, Clock]:
    clock = Clock()
    notices: list[str] = []
    transport = RetryingTransport(
        Scripted(outcomes),
        wait_seconds=wait,
        notice=notices.append,
        backoff=Backoff(first=1.0, cap=4.0, _draw=lambda low, high: high),
        clock=lambda: clock.now,
        sleep=clock.sleep,
    )
    return transport, clock


DOWN = Unreachable("cannot reach http://127.0.0.1:18400: Connection refused")


def test_an_unreachable_broker_is_retried_until_it_answers() -> None:
    transport, clock = retrying([DOWN, DOWN, Reply(200, b"{}")], wait=60)
    assert transport.request("GET", "/v1/jwks") == Reply(200, b"{}")
    assert clock.slept == [1.0, 2.0]


def test_the_wait_bounds_the_retries_and_the_last_failure_stands() -> None:
    transport, clock = retrying([DOWN] * 10, wait=5)
    with pytest.raises(Unreachable) as caught:
        transport.request("GET", "/v1/jwks")
    assert str(caught.value) == (
        "cannot reach http://127.0.0.1:18400: Connection refused (gave up after 3 attempts)"
    )
    assert clock.slept == [1.0, 2.0]  # the next (4 s) would end past the 5 s wait


def test_a_transient_status_is_retried_and_retry_after_is_honoured_up_to_30_s() -> None:
    busy = Reply(503, b"{}", retry_after=3.0)
    stalling = Reply(429, b"{}", retry_after=3600.0)
    transport, clock = retrying([busy, stalling, Reply(200, b"{}")], wait=120)
    assert transport.request("POST", "/v1/challenge").status == 200
    assert clock.slept == [3.0, 30.0]


def test_a_transient_status_at_the_end_of_the_wait_is_returned_for_the_caller_to_judge() -> None:
    transport, _ = retrying([Reply(503, b"{}")] * 5, wait=0)
    assert transport.request("POST", "/v1/challenge").status == 503


@pytest.mark.parametrize(
    "outcome", [Reply(403, b"{}"), Reply(409, b"{}"), Untrusted("the broker's TLS key")]
)
def test_refusals_and_untrusted_answers_are_never_retried(outcome: Reply | Exception) -> None:
    transport, clock = retrying([outcome, Reply(200, b"{}")], wait=60)
    if isinstance(outcome, Exception):
        with pytest.raises(Untrusted):
            transport.request("POST", "/v1/attest")
    else:
        assert transport.request("POST", "/v1/attest") == outcome
    assert clock.slept == []
