"""The console's pages: each reads or acts through the admin service, as the caller's role.

Every handler runs inside :func:`view`, which opens the session (or sends the browser to the
login page), checks the CSRF token of every POST, renders refusals as pages with their HTTP
status, and puts the security headers on whatever is answered (``guard.py``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from broker.admin.service import DEFAULT_REPLAY_WINDOW, AdminService
from broker.admin.sessions import ConsoleSessions, Session
from broker.api.auditfilters import audit_filters
from broker.api.numbers import is_ascii_digits
from broker.api.problem import status_for
from broker.console import chart, drafts, guard, sidebyside
from broker.console.render import STATIC, page
from broker.errors import BadRequest, KeybrokerError, MethodNotAllowed, NotFound, TokenInvalid
from broker.logs import get_logger
from broker.roles import Principal, Role
from broker.timeutil import iso, utcnow

log = get_logger("keybroker.console")

LOGIN = f"{guard.PREFIX}/login"
HOME = f"{guard.PREFIX}/keys"
#: How many records the audit page lists.
AUDIT_PAGE = 100
#: The activity chart's windows: the span and the bucket each is counted in.
WINDOWS = {
    "1h": (timedelta(hours=1), timedelta(minutes=2)),
    "24h": (timedelta(hours=24), timedelta(hours=1)),
    "7d": (timedelta(days=7), timedelta(hours=6)),
    "30d": (timedelta(days=30), timedelta(days=1)),
}


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking, through which session, and what the request's form held."""

    admin: AdminService
    principal: Principal
    session: Session
    form: dict[str, str]

    def context(self, section: str, **more: Any) -> dict[str, Any]:
        """What every page's layout needs: who is logged in, the CSRF token, the section."""
        role = self.principal.role
        return {
            "actor": self.principal.actor,
            "role": "local" if role is None else role.value,
            "csrf": self.session.csrf,
            "section": section,
            **more,
        }


Handler = Callable[[Request, Caller], Awaitable[Response]]


def _sessions(request: Request) -> ConsoleSessions:
    sessions: ConsoleSessions = request.app.state.console_sessions
    return sessions


def _admin(request: Request) -> AdminService:
    admin: AdminService = request.app.state.admin
    return admin


def _to_login(request: Request) -> Response:
    response = RedirectResponse(LOGIN, status_code=303)
    if guard.SESSION_COOKIE in request.cookies:
        guard.clear_cookie(response, request, guard.SESSION_COOKIE)
    return guard.secured(response)


def refusal(exc: KeybrokerError, context: dict[str, Any] | None = None) -> Response:
    """A refusal as a page, with the status the admin API answers for it."""
    status = status_for(exc)
    if status >= 500:
        log.warning("console_refused", error=exc.type)
    return page(
        "error.html",
        status,
        **(context or {"actor": None, "section": None}),
        http_status=status,
        problem=exc.type,
        detail=exc.detail,
    )


def view(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        admin = _admin(request)
        session = guard.open_session(request, _sessions(request))
        if session is None:
            return _to_login(request)
        try:
            principal = await admin.authenticate(session.token.reveal())
        except TokenInvalid:  # revoked or expired since the login
            return _to_login(request)
        caller = Caller(admin, principal, session, {})
        try:
            if request.method == "POST":
                form = await guard.read_form(request)
                guard.check_csrf(request, form, session)
                caller = Caller(admin, principal, session, form)
            return guard.secured(await handler(request, caller))
        except KeybrokerError as exc:
            return refusal(exc, caller.context("error"))
        except Exception as exc:
            log.error("console_error", error_type=type(exc).__name__, exc_info=exc)
            return page(
                "error.html",
                500,
                **caller.context("error"),
                http_status=500,
                problem="internal-error",
                detail="internal error; the broker log has the details",
            )

    return run


# --- login and logout ---------------------------------------------------------------------


async def login_form(request: Request) -> Response:
    if guard.open_session(request, _sessions(request)) is not None:
        return guard.secured(RedirectResponse(HOME, status_code=303))
    return _login_page(request, None, 200)


def _login_page(request: Request, message: str | None, status: int) -> Response:
    """The login form with a fresh double-submit token, in its cookie and in the form."""
    token = guard.new_login_token()
    response = page("login.html", status, actor=None, section="login", message=message, csrf=token)
    guard.set_login_cookie(response, request, token)
    return response


async def login(request: Request) -> Response:
    try:
        form = await guard.read_form(request)
        guard.check_login_csrf(request, form)
    except KeybrokerError as exc:
        return refusal(exc)
    token = form.get("token", "").strip()
    try:
        principal = await _admin(request).authenticate(token)
    except TokenInvalid:
        log.info("console_login_refused")
        return _login_page(request, "That admin token was refused.", 401)
    cookie, _ = _sessions(request).seal(token, utcnow())
    log.info("console_login", actor=principal.actor)
    response = RedirectResponse(HOME, status_code=303)
    seconds = int(_sessions(request).lifetime.total_seconds())
    guard.set_session_cookie(response, request, cookie, seconds)
    guard.clear_cookie(response, request, guard.LOGIN_COOKIE)
    return guard.secured(response)


async def logout(request: Request, caller: Caller) -> Response:
    log.info("console_logout", actor=caller.principal.actor)
    response = RedirectResponse(LOGIN, status_code=303)
    guard.clear_cookie(response, request, guard.SESSION_COOKIE)
    return response


# --- keys ---------------------------------------------------------------------------------


async def keys_page(request: Request, caller: Caller) -> Response:
    found = await caller.admin.list_keys(caller.principal)
    return page("keys.html", **caller.context("keys", keys=found))


async def key_page(request: Request, caller: Caller) -> Response:
    found = await caller.admin.show_key(caller.principal, request.path_params["name"])
    return page("key.html", **caller.context("keys", key=found))


# --- policies -----------------------------------------------------------------------------


async def policies_page(request: Request, caller: Caller) -> Response:
    found = await caller.admin.list_policies(caller.principal)
    return page("policies.html", **caller.context("policies", policies=found))


def _version_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if not is_ascii_digits(raw) or len(raw) > 9:
        raise BadRequest(f"{name} must be a version number")
    return int(raw)


async def policy_page(request: Request, caller: Caller) -> Response:
    name = request.path_params["name"]
    versions = await caller.admin.policy_versions(caller.principal, name)
    shown = _version_param(request, "version") or versions[-1]["version"]
    record = await caller.admin.get_policy(caller.principal, name, shown)
    checked = drafts.check(record["document"], is_json=True)
    return page(
        "policy.html",
        **caller.context(
            "policies",
            name=name,
            versions=versions,
            record=record,
            document=drafts.as_yaml(record["document"]),
            checked=checked,
            published=request.query_params.get("published"),
        ),
    )


async def diff_page(request: Request, caller: Caller) -> Response:
    name = request.path_params["name"]
    old, new = _version_param(request, "from"), _version_param(request, "to")
    if old is None or new is None:
        raise BadRequest("choose two versions (from and to)")
    left = await caller.admin.get_policy(caller.principal, name, old)
    right = await caller.admin.get_policy(caller.principal, name, new)
    meaning = await caller.admin.diff_policy(caller.principal, name, old, new)
    rows = sidebyside.rows(
        sidebyside.pretty(left["document"]), sidebyside.pretty(right["document"])
    )
    return page(
        "diff.html",
        **caller.context("policies", name=name, left=left, right=right, rows=rows, meaning=meaning),
    )


# --- the editor ---------------------------------------------------------------------------


async def editor_page(request: Request, caller: Caller) -> Response:
    start = request.query_params.get("from")
    if start:
        record = await caller.admin.get_policy(caller.principal, start, None)
        text = drafts.as_yaml(record["document"]).replace(
            f"version: {record['version']}\n", f"version: {record['version'] + 1}\n", 1
        )
    else:
        text = drafts.NEW_DRAFT
    return _editor(caller, drafts.check(text), replay=None, replayed=None)


def _editor(
    caller: Caller,
    checked: drafts.Checked,
    *,
    replay: dict[str, Any] | None,
    replayed: str | None,
    status: int = 200,
    message: str | None = None,
) -> Response:
    return page(
        "editor.html",
        status,
        **caller.context(
            "editor",
            checked=checked,
            replay=replay,
            replayed=replayed,
            message=message,
            can_publish=caller.principal.role in (None, Role.POLICY_AUTHOR),
            replay_key=caller.form.get("key", ""),
            replay_since=caller.form.get("since") or DEFAULT_REPLAY_WINDOW,
        ),
    )


async def editor_lint(request: Request, caller: Caller) -> Response:
    """Lint as you type: the editor's script posts the draft here (JSON answer)."""
    return JSONResponse(drafts.check(caller.form.get("document", "")).to_json())


async def editor_action(request: Request, caller: Caller) -> Response:
    checked = drafts.check(caller.form.get("document", ""))
    action = caller.form.get("action", "lint")
    replayed = caller.form.get("replayed") or None
    if action == "lint" or checked.policy is None:
        status = 200 if checked.policy is not None else 422
        return _editor(caller, checked, replay=None, replayed=replayed, status=status)
    if action == "replay":
        key = caller.form.get("key") or None
        window = caller.form.get("since") or DEFAULT_REPLAY_WINDOW
        report = await caller.admin.replay_policy(caller.principal, checked.policy, key, window)
        return _editor(caller, checked, replay=report, replayed=checked.digest)
    if action == "publish":
        if replayed != checked.digest:
            return _editor(
                caller,
                checked,
                replay=None,
                replayed=replayed,
                status=409,
                message="Replay this draft over past releases before publishing it.",
            )
        summary = await caller.admin.publish_policy(caller.principal, checked.policy)
        target = f"{guard.PREFIX}/policies/{quote(summary['name'])}"
        query = urlencode({"version": summary["version"], "published": "1"})
        return RedirectResponse(f"{target}?{query}", status_code=303)
    raise BadRequest(f"unknown editor action {action[:32]!r}")


# --- audit --------------------------------------------------------------------------------


#: The audit page's filters, as GET /v1/admin/audit names them.
AUDIT_FILTERS = ("key", "outcome", "kind", "actor", "request_id", "since", "until")


async def audit_page(request: Request, caller: Caller) -> Response:
    # A field left empty in the filter form selects everything, as an absent parameter does.
    chosen = {
        name: value
        for name in AUDIT_FILTERS
        if (value := request.query_params.get(name, "").strip())
    }
    records = await caller.admin.audit_records(
        caller.principal, audit_filters(chosen), AUDIT_PAGE, newest_first=True
    )
    return page("audit.html", **caller.context("audit", records=records, chosen=chosen))


async def record_page(request: Request, caller: Caller) -> Response:
    raw = request.path_params["seq"]
    if not is_ascii_digits(raw) or len(raw) > 18:
        raise BadRequest("an audit record is named by its sequence number")
    explained = await caller.admin.explain_release(caller.principal, int(raw))
    found = explained["entry"]
    return page(
        "record.html",
        **caller.context(
            "audit",
            entry=found,
            explained=explained,
            body_text=json.dumps(found["record"], indent=2, sort_keys=True),
        ),
    )


# --- activity -----------------------------------------------------------------------------


async def activity_page(request: Request, caller: Caller) -> Response:
    window = request.query_params.get("window", "24h")
    if window not in WINDOWS:
        raise BadRequest(f"window must be one of {', '.join(WINDOWS)}")
    key = request.query_params.get("key") or None
    span, bucket = WINDOWS[window]
    # Buckets end on a bucket boundary from the epoch, so a reload shows the same buckets.
    now = utcnow()
    until = now - (now - now.replace(hour=0, minute=0, second=0, microsecond=0)) % bucket
    until += bucket
    since = until - span
    counts = await caller.admin.release_activity(caller.principal, since, until, bucket, key)
    return page(
        "activity.html",
        **caller.context(
            "activity",
            chart=chart.layout(counts, since, until, bucket),
            totals=chart.totals(counts),
            window=window,
            windows=list(WINDOWS),
            key=key,
            since=iso(since),
            until=iso(until),
        ),
    )


# --- everything else under /console ------------------------------------------------------


async def home(request: Request) -> Response:
    return guard.secured(RedirectResponse(HOME, status_code=303))


async def static(request: Request) -> Response:
    found = STATIC.get(request.path_params["name"])
    if found is None:
        return refusal(NotFound("no such console file"))
    content, media_type = found
    response = Response(content, media_type=media_type)
    guard.secured(response)
    # Static and identical for every user: a browser may keep them for an hour.
    response.headers["cache-control"] = "private, max-age=3600"
    return response


async def unknown(request: Request) -> Response:
    if request.method not in ("GET", "HEAD", "POST"):
        return refusal(MethodNotAllowed(f"the console takes no {request.method} requests"))
    return refusal(NotFound(f"no console page at {request.url.path[:200]}"))
