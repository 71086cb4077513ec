"""The console's request checks (broker/console/guard.py): forms, CSRF, headers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from starlette.requests import Request
from starlette.responses import Response

from broker.admin.sessions import Session
from broker.console.guard import (
    CONTENT_SECURITY_POLICY,
    LOGIN_COOKIE,
    MAX_FORM_BYTES,
    CsrfRefused,
    check_csrf,
    check_login_csrf,
    read_form,
    secured,
)
from broker.console.render import instant
from broker.errors import BadRequest, Forbidden
from broker.redact import Secret

FORM = "application/x-www-form-urlencoded"
SESSION = Session(Secret("t"), "the-csrf-token", datetime(2026, 12, 7, tzinfo=UTC) + timedelta(1))


def _request(body: bytes = b"", headers: dict[str, str] | None = None) -> Request:
    sent = False

    async def receive() -> dict[str, object]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    scope = {"type": "http", "method": "POST", "path": "/console/x", "headers": raw}
    return Request(scope, receive)


async def test_a_form_is_read_member_by_member() -> None:
    body = b"csrf=abc&document=format%3A+x%0A%C3%A9&empty="
    form = await read_form(_request(body, {"content-type": f"{FORM}; charset=utf-8"}))
    assert form == {"csrf": "abc", "document": "format: x\né", "empty": ""}


async def test_no_body_is_no_members() -> None:
    assert await read_form(_request()) == {}


@pytest.mark.parametrize(
    ("body", "headers", "message"),
    [
        (b"a=1", {"content-type": "application/json"}, "Content-Type must be"),
        (b"a=1", {}, "Content-Type must be"),
        (b"a=1&a=2", {"content-type": FORM}, "given 2 times"),
        (b"a=\xc3\xa9", {"content-type": FORM}, "not application/x-www-form-urlencoded"),
        (b"a=1&&b", {"content-type": FORM}, "not application/x-www-form-urlencoded"),
        (b"a=" + b"x" * MAX_FORM_BYTES, {"content-type": FORM}, "larger than"),
    ],
)
async def test_what_is_not_a_form_is_refused(
    body: bytes, headers: dict[str, str], message: str
) -> None:
    with pytest.raises(BadRequest, match=message):
        await read_form(_request(body, headers))


def test_the_csrf_token_must_be_the_sessions() -> None:
    check_csrf(_request(), {"csrf": "the-csrf-token"}, SESSION)
    check_csrf(_request(headers={"x-csrf-token": "the-csrf-token"}), {}, SESSION)
    check_csrf(
        _request(headers={"sec-fetch-site": "same-origin"}), {"csrf": "the-csrf-token"}, SESSION
    )
    with pytest.raises(CsrfRefused, match="missing"):
        check_csrf(_request(), {}, SESSION)
    with pytest.raises(CsrfRefused, match="wrong"):
        check_csrf(_request(), {"csrf": "the-csrf-tokeN"}, SESSION)
    for site in ("cross-site", "same-site"):
        with pytest.raises(CsrfRefused, match="another site"):
            check_csrf(
                _request(headers={"sec-fetch-site": site}), {"csrf": "the-csrf-token"}, SESSION
            )
    assert issubclass(CsrfRefused, Forbidden)


def test_the_login_form_token_must_equal_its_cookie() -> None:
    cookie = {"cookie": f"{LOGIN_COOKIE}=abc"}
    check_login_csrf(_request(headers=cookie), {"csrf": "abc"})
    with pytest.raises(CsrfRefused, match="wrong"):
        check_login_csrf(_request(headers=cookie), {"csrf": "abd"})
    with pytest.raises(CsrfRefused, match="missing"):
        check_login_csrf(_request(), {"csrf": "abc"})
    with pytest.raises(CsrfRefused, match="missing"):
        check_login_csrf(_request(headers=cookie), {})


def test_the_policy_allows_nothing_inline_and_nothing_from_elsewhere() -> None:
    directives = dict(d.strip().split(" ", 1) for d in CONTENT_SECURITY_POLICY.split(";"))
    assert directives["default-src"] == "'none'"
    for name in ("script-src", "style-src", "img-src", "connect-src", "form-action"):
        assert directives[name] == "'self'", name
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in CONTENT_SECURITY_POLICY
    headers = secured(Response("x")).headers
    assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert headers["cache-control"] == "no-store"


def test_instants_are_shown_to_the_second() -> None:
    assert instant("2026-12-07T11:23:57.619655+00:00") == "2026-12-07 11:23:57 UTC"
    assert instant("2026-12-07T11:23:57+02:00") == "2026-12-07T11:23:57+02:00"
    assert instant(None) == ""
