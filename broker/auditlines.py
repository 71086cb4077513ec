"""Audit records as lines a SIEM ingests: JSON Lines, and ArcSight CEF (Common Event
Format, revision 25: ``CEF:0|vendor|product|version|signature id|name|severity|extension``).

Both take the entries of ``store/audit.search`` (the record parsed, its chain hash in hex),
so an exported line names the record's place in the chain (``seq``, ``hash``) and
``keybroker audit verify`` can vouch for it.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from broker import __version__

FORMATS = ("jsonl", "cef")

#: CEF severity (0-10) by decision; admin actions that destroy something rank higher.
_SEVERITY = {"allow": 3, "ok": 3, "deny": 6, "error": 8}
_DESTRUCTIVE = {"key.schedule_deletion", "key.destroy", "kek.retire", "token.revoke"}


def jsonl(entry: dict[str, Any]) -> str:
    """One line of compact JSON with sorted members."""
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _header(text: str) -> str:
    """A CEF header field: backslash and pipe escaped, no line breaks (CEF §"Header")."""
    text = text.replace("\\", "\\\\").replace("|", "\\|")
    return text.replace("\r", " ").replace("\n", " ")


def _value(text: str) -> str:
    """A CEF extension value: backslash, equals sign and line breaks escaped."""
    text = text.replace("\\", "\\\\").replace("=", "\\=")
    return text.replace("\r", "\\r").replace("\n", "\\n")


def cef(entry: dict[str, Any]) -> str:
    """One CEF line: signature id the kind (and admin action), severity by decision."""
    record: dict[str, Any] = entry["record"]
    action = record.get("action")
    signature = entry["kind"] if action is None else f"{entry['kind']}:{action}"
    severity = _SEVERITY.get(entry["decision"], 5)
    if action in _DESTRUCTIVE:
        severity = 8
    at = datetime.fromisoformat(entry["at"])
    extension: list[tuple[str, str | None]] = [
        ("rt", str(int(at.timestamp() * 1000))),
        ("externalId", str(entry["seq"])),
        ("outcome", entry["decision"]),
        ("suser", record.get("actor")),
        ("reason", (record.get("error") or {}).get("type")),
    ]
    custom = (
        ("key", entry["key_name"]),
        ("requestId", entry["request_id"]),
        ("tee", record.get("tee")),
        ("chainHash", entry["hash"]),
    )
    for number, (label, value) in enumerate(custom, start=1):
        if value is not None:  # a label only beside its value
            extension += [(f"cs{number}Label", label), (f"cs{number}", value)]
    fields = " ".join(f"{name}={_value(value)}" for name, value in extension if value is not None)
    name = " ".join(part for part in (entry["kind"], action or entry["decision"]) if part)
    head = "|".join(
        _header(part)
        for part in ("keybroker", "keybroker", __version__, signature, name, str(severity))
    )
    return f"CEF:0|{head}|{fields}"


def line(entry: dict[str, Any], kind: str) -> str:
    """The entry as a ``kind`` line (one of :data:`FORMATS`)."""
    if kind == "cef":
        return cef(entry)
    if kind == "jsonl":
        return jsonl(entry)
    raise ValueError(f"format {kind!r} is not one of {', '.join(FORMATS)}")
