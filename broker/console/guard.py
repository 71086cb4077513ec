"""What every console response and request goes through: security headers, the session
cookie, CSRF checks and form bodies (docs/console.md, "Security").

* Every response carries :data:`SECURITY_HEADERS`: a Content-Security-Policy that allows
  scripts, styles, images and connections from the broker's own origin only (no inline
  script or style, no ``eval``), framing by nobody, forms posted only to the broker; and
  ``no-store``, since pages show audit records.
* The session cookie (``broker/admin/sessions.py``) is HttpOnly, SameSite=Strict, scoped to
  ``/console``, Secure when the request came over TLS.
* A state-changing request (every POST) must carry the session's CSRF token, in the form's
  ``csrf`` member or the ``X-CSRF-Token`` header (synchronizer token, compared in constant
  time), and must not come from another site by the browser's own account
  (``Sec-Fetch-Site``). The login form, which has no session yet, carries a double-submit
  token: a random value in a short-lived cookie and in the form, which must be equal.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response

from broker.admin.sessions import ConsoleSessions, Session
from broker.api.body import bounded_body
from broker.errors import BadRequest, Forbidden
from broker.timeutil import utcnow

PREFIX = "/console"
SESSION_COOKIE = "keybroker-console"
LOGIN_COOKIE = "keybroker-console-login"
#: How long the login form's double-submit cookie lives.
LOGIN_FORM_SECONDS = 600
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
#: The largest console form (a policy draft), bytes.
MAX_FORM_BYTES = 262_144

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}


class CsrfRefused(Forbidden):
    """A state-changing console request without the session's CSRF token, or from another
    site. Same problem type as :class:`Forbidden` (403)."""


def secured(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def _secure(request: Request) -> bool:
    """Cookies are Secure when the request came over TLS (directly, or through a proxy that
    uvicorn's ``--proxy-headers`` trusts)."""
    return request.url.scheme == "https"


def _set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=PREFIX,
        secure=_secure(request),
        httponly=True,
        samesite="strict",
    )


def set_session_cookie(response: Response, request: Request, value: str, max_age: int) -> None:
    _set_cookie(response, request, SESSION_COOKIE, value, max_age)


def clear_cookie(response: Response, request: Request, name: str) -> None:
    response.delete_cookie(
        name, path=PREFIX, secure=_secure(request), httponly=True, samesite="strict"
    )


def new_login_token() -> str:
    return secrets.token_urlsafe(32)


def set_login_cookie(response: Response, request: Request, token: str) -> None:
    """The login form's double-submit cookie (the form carries the same ``token``)."""
    _set_cookie(response, request, LOGIN_COOKIE, token, LOGIN_FORM_SECONDS)


def open_session(request: Request, sessions: ConsoleSessions) -> Session | None:
    cookie = request.cookies.get(SESSION_COOKIE)
    return None if cookie is None else sessions.open(cookie, utcnow())


def _same_site(request: Request) -> None:
    # Fetch metadata (W3C): what the browser says of where the request came from. Absent in
    # old browsers and non-browser clients, which the CSRF token alone then holds.
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise CsrfRefused(f"a console request from another site ({site[:16]}) is refused")


def check_csrf(request: Request, form: dict[str, str], session: Session) -> None:
    """The synchronizer check of a state-changing request; ``CsrfRefused`` otherwise."""
    _same_site(request)
    presented = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
    if presented is None:
        raise CsrfRefused("the CSRF token is missing; reload the page and try again")
    if not hmac.compare_digest(presented.encode(), session.csrf.encode()):
        raise CsrfRefused("the CSRF token is wrong; reload the page and try again")


def check_login_csrf(request: Request, form: dict[str, str]) -> None:
    """The double-submit check of the login form; ``CsrfRefused`` otherwise."""
    _same_site(request)
    cookie = request.cookies.get(LOGIN_COOKIE)
    presented = form.get(CSRF_FIELD)
    if cookie is None or presented is None:
        raise CsrfRefused("the login form's CSRF token is missing; reload the page")
    if not hmac.compare_digest(presented.encode(), cookie.encode()):
        raise CsrfRefused("the login form's CSRF token is wrong; reload the page")


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body of at most :data:`MAX_FORM_BYTES`, each
    member given once; no members for a request without a body."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await bounded_body(request, MAX_FORM_BYTES)
    if not content_type and not raw:
        return {}
    if content_type != "application/x-www-form-urlencoded":
        raise BadRequest("Content-Type must be application/x-www-form-urlencoded")
    try:
        text = raw.decode("ascii")  # percent-encoded: UTF-8 arrives escaped
        parsed = parse_qs(text, keep_blank_values=True, strict_parsing=bool(text))
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("the form is not application/x-www-form-urlencoded") from None
    form: dict[str, str] = {}
    for name, values in parsed.items():
        if len(values) != 1:
            raise BadRequest(f"form member {name[:32]!r} given {len(values)} times")
        form[name] = values[0]
    return form
