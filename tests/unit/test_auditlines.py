"""Audit records as SIEM lines: JSON Lines and CEF, with CEF's escaping rules."""

from __future__ import annotations

import json
from typing import Any

import pytest

from broker import __version__
from broker.auditlines import cef, jsonl, line

ENTRY: dict[str, Any] = {
    "seq": 7,
    "at": "2026-12-07T08:00:00.250000+00:00",
    "kind": "release",
    "decision": "deny",
    "request_id": "00ff00ff00ff00ff",
    "key_name": "disk-key",
    "hash": "ab" * 32,
    "record": {"tee": "snp", "error": {"type": "policy-denied", "detail": "x"}},
}


def test_a_jsonl_line_is_the_entry_compact_and_sorted() -> None:
    text = jsonl(ENTRY)
    assert "\n" not in text
    assert json.loads(text) == ENTRY
    assert text.startswith('{"at":"2026-12-07T08:00:00.250000+00:00","decision":"deny",')


def test_a_cef_line_names_the_event_and_its_place_in_the_chain() -> None:
    assert cef(ENTRY) == (
        f"CEF:0|keybroker|keybroker|{__version__}|release|release deny|6|"
        "rt=1796630400250 externalId=7 outcome=deny reason=policy-denied "
        "cs1Label=key cs1=disk-key cs2Label=requestId cs2=00ff00ff00ff00ff "
        f"cs3Label=tee cs3=snp cs4Label=chainHash cs4={'ab' * 32}"
    )


def test_cef_escapes_what_would_end_a_field() -> None:
    admin = {
        **ENTRY,
        "kind": "admin",
        "decision": "ok",
        "key_name": None,
        "request_id": None,
        "record": {"action": "key.destroy", "actor": "token:1:ops=a\\b\nc|d"},
    }
    text = cef(admin)
    assert text.startswith(f"CEF:0|keybroker|keybroker|{__version__}|admin:key.destroy|")
    assert "|8|" in text  # destroying something ranks above an ordinary action
    assert "suser=token:1:ops\\=a\\\\b\\nc|d " in text
    assert "cs1Label" not in text  # no label without its value
    assert "\n" not in text


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^format 'xml' is not one of jsonl, cef$"):
        line(ENTRY, "xml")
