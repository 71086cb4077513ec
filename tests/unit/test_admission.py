"""What a worker admits (broker/api/limits.py): the counts and the decision for each request,
without sockets (the protocol that applies them is tested against a running broker in
tests/integration/test_limits.py)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter
from structlog.testing import capture_logs

from broker.api.limits import LOG_INTERVAL_SECONDS, Admission
from broker.errors import Overloaded, RateLimited
from broker.settings import Settings


def admission(**settings: object) -> tuple[Admission, CollectorRegistry]:
    registry = CollectorRegistry()
    refused = Counter("refused", "refusals", ["reason"], registry=registry)
    return Admission(Settings().with_overrides(**settings), refused), registry


def refusals(registry: CollectorRegistry, reason: str) -> float:
    return registry.get_sample_value("refused_total", {"reason": reason}) or 0.0


def test_a_connection_beyond_the_limit_is_refused_503_until_one_closes() -> None:
    limits, registry = admission(max_connections=2)
    assert limits.connection_opened()
    assert limits.connection_opened()
    assert not limits.connection_opened()  # the third
    error = limits.admit("192.0.2.1", b"/healthz", beyond_connections=True)
    assert isinstance(error, Overloaded)
    assert error.detail == "this worker holds its limit of 2 connections; retry later"
    assert refusals(registry, "connections") == 1
    limits.connection_closed()
    limits.connection_closed()
    assert limits.connection_opened()  # room again
    assert limits.admit("192.0.2.1", b"/healthz", beyond_connections=False) is None


def test_a_client_past_its_open_requests_is_refused_429_and_others_are_not() -> None:
    limits, registry = admission(max_open_requests_per_client=2)
    for _ in range(3):  # counted from their first bytes, before any head is complete
        limits.request_opened("192.0.2.1")
    error = limits.admit("192.0.2.1", b"/v1/attest", beyond_connections=False)
    assert isinstance(error, RateLimited)
    assert error.detail == "more than 2 unanswered requests from this client"
    assert refusals(registry, "open_requests") == 1
    limits.request_opened("192.0.2.2")
    assert limits.admit("192.0.2.2", b"/v1/attest", beyond_connections=False) is None
    limits.request_closed("192.0.2.1")
    assert limits.admit("192.0.2.1", b"/v1/attest", beyond_connections=False) is None
    for _ in range(2):
        limits.request_closed("192.0.2.1")
    limits.request_closed("192.0.2.2")
    assert limits.open_requests("192.0.2.1") == limits.open_requests("192.0.2.2") == 0


def test_zero_open_requests_per_client_means_no_limit() -> None:
    limits, _ = admission(max_open_requests_per_client=0, rate_limit_per_second=0)
    for _ in range(1000):
        limits.request_opened("192.0.2.1")
    assert limits.admit("192.0.2.1", b"/v1/attest", beyond_connections=False) is None


def test_the_rate_is_charged_on_every_path_but_the_probes() -> None:
    limits, registry = admission(rate_limit_per_second=1)  # a burst of 2
    for path in (b"/v1/challenge", b"/v1/admin/keys"):
        assert limits.admit("192.0.2.1", path, beyond_connections=False) is None
    for path in (b"/v1/jwks", b"/nowhere"):
        error = limits.admit("192.0.2.1", path, beyond_connections=False)
        assert isinstance(error, RateLimited)
        assert error.detail == "more than 1 requests per second from this client"
    assert refusals(registry, "rate") == 2
    for probe in (b"/healthz", b"/readyz", b"/metrics"):
        assert limits.admit("192.0.2.1", probe, beyond_connections=False) is None


def test_bytes_are_held_up_to_the_limit_and_given_back() -> None:
    limits, _ = admission(max_request_bytes=1024, max_request_bytes_in_flight=1024)
    assert limits.take_bytes(1000)
    assert limits.take_bytes(24)  # exactly the limit
    assert not limits.take_bytes(1)  # one more
    assert limits.bytes_in_flight == 1025  # counted until given back
    limits.give_back_bytes(1000)
    assert limits.bytes_in_flight == 25
    limits.request_opened("192.0.2.1")
    limits.request_closed("192.0.2.1", 25)  # answered: what it had sent is no longer held
    assert limits.bytes_in_flight == 0
    assert limits.take_bytes(1024)


def test_refusals_are_logged_at_most_once_per_interval_per_reason() -> None:
    limits, registry = admission()
    with capture_logs() as logged:
        for second in range(25):
            error = limits.refuse("rate", "192.0.2.1", RateLimited("x"), now=1000.0 + second)
            assert error.detail == "x"
        limits.refuse("bytes", "192.0.2.2", Overloaded("y"), now=1000.0)
    # The first at once, then one line per 10 s with the number since the last line; each
    # reason has its own interval. Every refusal is counted in the metric.
    assert LOG_INTERVAL_SECONDS == 10.0
    assert [(line["reason"], line["count"]) for line in logged] == [
        ("rate", 1),
        ("rate", 10),
        ("rate", 10),
        ("bytes", 1),
    ]
    assert {line["event"] for line in logged} == {"requests_refused"}
    assert logged[0]["last_client"] == "192.0.2.1"
    assert refusals(registry, "rate") == 25
