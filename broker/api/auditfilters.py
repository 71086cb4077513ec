"""The audit trail's filters as query parameters, read one way for the admin API
(``GET /v1/admin/audit``, ``/v1/admin/audit/verify``) and the console's audit page: what
each admits is what the OpenAPI document says (docs/api.md)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime

from broker.admin.service import AuditQuery
from broker.errors import BadRequest
from broker.names import checked_name
from broker.timeutil import parse_instant

# RFC 3339 §5.6 date-time (what the OpenAPI document's `date-time` format admits), or unix
# seconds in ASCII digits: anything else is a 400, as the document says.
_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_UNIX_SECONDS = re.compile(r"[0-9]{1,11}")
#: What each text filter admits (fullmatch), and how a refusal describes it.
_FILTERS = {
    "kind": (re.compile(r"[a-z][a-z-]{0,31}"), "a record kind (lowercase letters and -)"),
    "actor": (re.compile(r"[ -~]{1,256}"), "1 to 256 printable ASCII characters"),
    "request_id": (re.compile(r"[0-9a-f]{16}"), "16 lowercase hex digits"),
    "outcome": (re.compile(r"allow|deny|error|ok"), "one of allow, deny, error, ok"),
}


def instant_param(params: Mapping[str, str], name: str) -> datetime | None:
    """``params[name]`` as an instant (None when absent)."""
    raw = params.get(name)
    if raw is None:
        return None
    if _DATE_TIME.fullmatch(raw) or _UNIX_SECONDS.fullmatch(raw):
        try:
            return parse_instant(raw)
        except (ValueError, OverflowError, OSError):
            pass
    raise BadRequest(f"query parameter {name} must be an RFC 3339 date-time, or unix seconds")


def _text_param(params: Mapping[str, str], name: str) -> str | None:
    raw = params.get(name)
    if raw is None:
        return None
    if name == "key":
        return checked_name(raw, "key")
    pattern, words = _FILTERS[name]
    if not pattern.fullmatch(raw):
        raise BadRequest(f"query parameter {name} is not {words}")
    return raw


def audit_filters(params: Mapping[str, str]) -> AuditQuery:
    """The records ``params`` select by key, outcome, kind, actor, request id and time range
    (pagination apart); a malformed filter is a 400 naming it."""
    return AuditQuery(
        key=_text_param(params, "key"),
        decision=_text_param(params, "outcome"),
        kind=_text_param(params, "kind"),
        actor=_text_param(params, "actor"),
        request_id=_text_param(params, "request_id"),
        since=instant_param(params, "since"),
        until=instant_param(params, "until"),
    )
