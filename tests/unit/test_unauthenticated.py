"""The aggregate audit of unrecognised requests (broker/release/unauthenticated.py): its bound,
its records, its flushing, and what it logs."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest

from broker import logs
from broker.errors import DatabaseUnavailable, NonceUnrecognised, TokenUnverified
from broker.metrics import Metrics
from broker.release.origin import Origin
from broker.release.unauthenticated import OTHER_SOURCES, Tally, UnauthenticatedAudit
from broker.store.audit import AuditRecord

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ATTEST, RELEASE = "/v1/attest", "/v1/keys/{name}/release"
FORGED = NonceUnrecognised("nonce was not issued by this broker for tee 'snp'", "nonce-mac")
JUNK_TOKEN = TokenUnverified("token header is not base64url", "token-malformed")


# --- the tally's bound -----------------------------------------------------------------------


def test_many_addresses_fold_into_one_bucket_beyond_the_bound() -> None:
    tally = Tally(3, START)
    for number in range(100_000):
        tally.count(f"198.51.{number // 256}.{number % 256}", ATTEST, "nonce-mac")
        tally.count(f"198.51.{number // 256}.{number % 256}", RELEASE, "token-malformed")
    assert tally.buckets() == 4
    window = tally.take(START + timedelta(minutes=1))
    assert list(window.sources) == ["198.51.0.0", "198.51.0.1", "198.51.0.2", OTHER_SOURCES]
    assert window.sources["198.51.0.1"] == {
        (ATTEST, "nonce-mac"): 1,
        (RELEASE, "token-malformed"): 1,
    }
    assert window.sources[OTHER_SOURCES] == {
        (ATTEST, "nonce-mac"): 99_997,
        (RELEASE, "token-malformed"): 99_997,
    }
    assert window.total() == 200_000


def test_a_tracked_address_keeps_its_own_bucket_after_the_bound_is_reached() -> None:
    tally = Tally(1, START)
    assert tally.count("192.0.2.1", ATTEST, "nonce-mac") == ("192.0.2.1", True)
    assert tally.count("192.0.2.2", ATTEST, "nonce-mac") == (OTHER_SOURCES, True)
    assert tally.count("192.0.2.3", ATTEST, "nonce-mac") == (OTHER_SOURCES, False)
    assert tally.count("192.0.2.1", ATTEST, "nonce-mac") == ("192.0.2.1", False)
    assert tally.count("192.0.2.1", ATTEST, "nonce-malformed") == ("192.0.2.1", True)
    assert tally.buckets() == 2


def test_a_bound_of_zero_audits_every_address_as_other() -> None:
    tally = Tally(0, START)
    for host in range(10):
        tally.count(f"192.0.2.{host}", ATTEST, "nonce-mac")
    assert tally.take(START).sources == {OTHER_SOURCES: {(ATTEST, "nonce-mac"): 10}}


def test_a_negative_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        Tally(-1, START)


def test_taking_a_window_starts_the_next_empty_where_it_ended() -> None:
    tally = Tally(4, START)
    tally.count("192.0.2.1", ATTEST, "nonce-mac")
    end = START + timedelta(seconds=61)
    first = tally.take(end)
    assert (first.start, first.end) == (START, end)
    assert tally.buckets() == 0
    assert tally.count("192.0.2.1", ATTEST, "nonce-mac") == ("192.0.2.1", True)
    second = tally.take(end + timedelta(minutes=1))
    assert second.start == end
    assert first.sources == {"192.0.2.1": {(ATTEST, "nonce-mac"): 1}}


def test_a_window_makes_one_record_per_source_with_its_counts() -> None:
    tally = Tally(1, START)
    for _ in range(3):
        tally.count("192.0.2.1", ATTEST, "nonce-mac")
    tally.count("192.0.2.1", RELEASE, "token-signature")
    tally.count("192.0.2.9", RELEASE, "token-malformed")
    end = START + timedelta(minutes=1)
    mine, other = tally.take(end).records()
    assert (mine.at, mine.kind, mine.decision, mine.request_id, mine.key_name) == (
        end,
        "unauthenticated",
        "deny",
        None,
        None,
    )
    assert mine.body == {
        "source": "192.0.2.1",
        "window": {"start": "2026-03-01T12:00:00+00:00", "end": "2026-03-01T12:01:00+00:00"},
        "requests": {ATTEST: {"nonce-mac": 3}, RELEASE: {"token-signature": 1}},
        "total": 4,
    }
    assert other.body["source"] == OTHER_SOURCES
    assert other.body["requests"] == {RELEASE: {"token-malformed": 1}}
    assert json.loads(mine.text())["kind"] == "unauthenticated"  # as the chain hashes it


# --- the audit: metrics, flushing, failures ---------------------------------------------------


class Log:
    """An append that keeps what it is given, or fails while ``down``."""

    def __init__(self) -> None:
        self.records: list[AuditRecord] = []
        self.down = False

    async def append(self, record: AuditRecord) -> int:
        if self.down:
            raise DatabaseUnavailable("PostgreSQL unavailable: ConnectionRefusedError")
        self.records.append(record)
        return len(self.records)


def _audit(
    log: Log, max_sources: int = 8, **options: object
) -> tuple[UnauthenticatedAudit, Metrics]:
    metrics = Metrics.create()
    return UnauthenticatedAudit(log.append, metrics, max_sources, **options), metrics  # type: ignore[arg-type]


def _sample(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    return metrics.registry.get_sample_value(name, labels or {}) or 0.0


def test_every_refusal_is_counted_by_endpoint_and_reason() -> None:
    audit, metrics = _audit(Log(), max_sources=0)
    for host in range(5):
        audit.refused(Origin(None, source=f"192.0.2.{host}"), ATTEST, FORGED)
    audit.refused(Origin(None, source="192.0.2.1"), RELEASE, JUNK_TOKEN)
    name = "keybroker_unauthenticated_requests_total"
    assert _sample(metrics, name, {"endpoint": ATTEST, "reason": "nonce-mac"}) == 5
    assert _sample(metrics, name, {"endpoint": RELEASE, "reason": "token-malformed"}) == 1


def test_a_flush_appends_one_record_per_source_then_nothing() -> None:
    log = Log()
    audit, _ = _audit(log)
    for _ in range(3):
        audit.refused(Origin("r1", source="192.0.2.1"), ATTEST, FORGED)
    audit.refused(Origin("r2", source="192.0.2.2"), RELEASE, JUNK_TOKEN)
    assert asyncio.run(audit.flush()) == 2
    assert [(r.body["source"], r.body["total"]) for r in log.records] == [
        ("192.0.2.1", 3),
        ("192.0.2.2", 1),
    ]
    assert asyncio.run(audit.flush()) == 0
    assert len(log.records) == 2


def test_a_database_outage_while_flushing_is_logged_and_counted_not_raised(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.configure("json", "info")
    log = Log()
    audit, metrics = _audit(log)
    for host in range(3):
        audit.refused(Origin(None, source=f"192.0.2.{host}"), ATTEST, FORGED)
    log.down = True
    assert asyncio.run(audit.flush()) == 0
    assert _sample(metrics, "keybroker_unauthenticated_audit_failures_total") == 1
    failed = [line for line in _lines(capsys) if line["event"] == "unauthenticated_audit_failed"]
    assert len(failed) == 1
    assert (failed[0]["records_lost"], failed[0]["requests_lost"]) == (3, 3)
    assert failed[0]["error"] == "database-unavailable"
    # The next window is written once the database is back; the lost one is not kept.
    log.down = False
    audit.refused(Origin(None, source="192.0.2.7"), ATTEST, FORGED)
    assert asyncio.run(audit.flush()) == 1
    assert [r.body["source"] for r in log.records] == ["192.0.2.7"]


def test_the_timer_writes_each_window_and_stop_writes_the_rest() -> None:
    log = Log()
    audit, _ = _audit(log, window=timedelta(milliseconds=50))

    async def scenario() -> tuple[list[AuditRecord], list[AuditRecord]]:
        flusher = asyncio.create_task(audit.run())
        audit.refused(Origin(None, source="192.0.2.1"), ATTEST, FORGED)
        for _ in range(200):  # the next window ends within 50 ms
            if log.records:
                break
            await asyncio.sleep(0.01)
        by_timer = list(log.records)
        audit.refused(Origin(None, source="192.0.2.2"), ATTEST, FORGED)
        audit.stop()
        await asyncio.wait_for(flusher, 5)
        return by_timer, log.records[len(by_timer) :]

    by_timer, at_stop = asyncio.run(scenario())
    assert [r.body["source"] for r in by_timer] == ["192.0.2.1"]
    assert [r.body["source"] for r in at_stop] == ["192.0.2.2"]


def test_windows_end_on_the_minute() -> None:
    now = [START + timedelta(seconds=42.5)]
    audit, _ = _audit(Log(), clock=lambda: now[0])
    assert audit._until_window_ends() == pytest.approx(17.5)
    now[0] = START + timedelta(minutes=3)
    assert audit._until_window_ends() == pytest.approx(60.0)


# --- what is logged ---------------------------------------------------------------------------


def _lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]


def test_the_first_of_each_source_and_reason_is_logged_and_the_rest_summed_at_the_end(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.configure("json", "info")
    audit, _ = _audit(Log(), max_sources=1)
    for _ in range(500):
        audit.refused(Origin(None, source="192.0.2.1"), ATTEST, FORGED)
        audit.refused(Origin(None, source="192.0.2.1"), RELEASE, JUNK_TOKEN)
    for host in range(2, 200):  # beyond the bound: one bucket, one line per reason
        audit.refused(Origin(None, source=f"192.0.2.{host}"), ATTEST, FORGED)
    during = _lines(capsys)
    assert [(line["event"], line["bucket"], line["reason"]) for line in during] == [
        ("unauthenticated_request", "192.0.2.1", "nonce-mac"),
        ("unauthenticated_request", "192.0.2.1", "token-malformed"),
        ("unauthenticated_request", OTHER_SOURCES, "nonce-mac"),
    ]
    assert during[0]["detail"] == FORGED.detail
    assert during[2]["source"] == "192.0.2.2"  # the address that opened the bucket

    asyncio.run(audit.flush())
    summary = [line for line in _lines(capsys) if line["event"] == "unauthenticated_suppressed"]
    assert [(line["source"], line["requests"], line["suppressed"]) for line in summary] == [
        ("192.0.2.1", 1000, 998),
        (OTHER_SOURCES, 198, 197),
    ]
