"""`keybroker audit tail`: one readable line per record, its details indented."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from broker.cli.admin import describe_audit
from broker.release.unauthenticated import Tally

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_an_unauthenticated_record_names_its_source_and_counts() -> None:
    tally = Tally(4, START)
    for _ in range(3):
        tally.count("203.0.113.7", "/v1/attest", "nonce-mac")
    tally.count("203.0.113.7", "/v1/keys/{name}/release", "token-malformed")
    (record,) = tally.take(datetime(2026, 3, 1, 12, 1, tzinfo=UTC)).records()
    entry = {
        "seq": 42,
        "at": record.at.isoformat(),
        "kind": record.kind,
        "decision": record.decision,
        "request_id": None,
        "key_name": None,
        "record": json.loads(record.text()),
    }
    assert describe_audit(entry).splitlines() == [
        "#42     2026-03-01T12:01:00  unauthenticated deny  203.0.113.7",
        "        /v1/attest: nonce-mac x3",
        "        /v1/keys/{name}/release: token-malformed x1",
    ]
