"""The KBS endpoints: parse, call the orchestrator, answer with the session cookie.

Each endpoint answers every ``KeybrokerError`` in the protocol's shape (``problems.py``) and
any other exception as a 500 ``InternalError`` naming the request id only: nothing raised
here reaches Starlette's RFC 7807 handlers or shows a traceback. Rate limiting, body limits,
request ids, metrics and the access line are the broker's as for every endpoint.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from email.utils import format_datetime

from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from broker.api.body import json_object
from broker.api.headers import origin, request_id
from broker.api.kbs import wire
from broker.api.kbs.problems import Stage, error_response, information
from broker.api.routing import allow_value
from broker.errors import InternalError, KeybrokerError
from broker.logs import get_logger
from broker.names import parse_kbs_path
from broker.release.service import ReleaseService, kbs_attest_request
from broker.release.sessions import KbsSession, KbsSessions
from broker.timeutil import utcnow

log = get_logger("keybroker.kbs")

COOKIE = "kbs-session-id"
AUTH_MAX_BYTES = 4096
#: The endpoints of this protocol and their one method each (for 405 and ``Allow``).
METHODS = {"auth": "POST", "attest": "POST", "resource": "GET"}


def _service(request: Request) -> tuple[ReleaseService, KbsSessions, State]:
    state: State = request.app.state
    return state.release, state.kbs_sessions, state


def _cookie(session_id: str, expires_at: datetime) -> dict[str, str]:
    """Trustee's cookie: the id and an ``Expires`` (RFC 6265 §4.1.1), nothing else. Without
    ``Path`` the cookie belongs to ``/kbs/v0``, which covers attest and resource; ``Secure``
    would keep the reference client (reqwest's cookie store) from sending it over plain HTTP
    to any host but loopback (docs/kbs.md)."""
    return {
        "Set-Cookie": f"{COOKIE}={session_id}; Expires={format_datetime(expires_at, usegmt=True)}"
    }


def _unexpected(exc: Exception, stage: Stage, request: Request) -> Response:
    log.error(
        "kbs_unexpected_error", stage=stage.value, error_type=type(exc).__name__, exc_info=exc
    )
    failure = InternalError(
        f"internal error; the broker log has the details under request id {request_id(request)}"
    )
    return error_response(failure, stage)


async def auth(request: Request) -> Response:
    try:
        service, sessions, _ = _service(request)
        parsed = wire.parse_auth(
            await json_object(request, {"version", "tee", "extra-params"}, AUTH_MAX_BYTES)
        )
        issued = await service.challenge(parsed.tee)
        expires_at = datetime.fromisoformat(issued["expires_at"])
        session = KbsSession(parsed.tee, issued["nonce"], parsed.hash_name, expires_at)
        session_id = sessions.open(session)
    except KeybrokerError as exc:
        return error_response(exc, Stage.AUTH)
    except Exception as exc:
        return _unexpected(exc, Stage.AUTH, request)
    return JSONResponse(
        wire.challenge(issued["nonce"], parsed.hash_name), headers=_cookie(session_id, expires_at)
    )


async def attest(request: Request) -> Response:
    try:
        service, sessions, state = _service(request)
        session_id = request.cookies.get(COOKIE, "")
        session = sessions.get(session_id, utcnow())
        if session is None:
            return information(
                401,
                "AttestationError",
                "RCAR handshake Attest failed: no live session for this kbs-session-id cookie "
                "(sessions are per broker process and expire): POST /kbs/v0/auth again",
            )
        if session.token is not None:  # as Trustee: an attested session answers its token
            return JSONResponse(
                {"token": session.token}, headers=_cookie(session_id, session.expires_at)
            )
        body = await json_object(
            request,
            {"init-data", "runtime-data", "tee-evidence"},
            int(state.settings.max_request_bytes),
        )
        parsed = wire.parse_attestation(body, session.tee, session.nonce, session.hash_name)
        answer = await service.attest(
            kbs_attest_request(
                tee=session.tee,
                tee_pubkey=parsed.tee_pubkey,
                primary_evidence=parsed.primary_evidence,
                nonce_text=session.nonce,
                origin=origin(request),
                rcar=parsed.rcar,
            )
        )
    except KeybrokerError as exc:
        return error_response(exc, Stage.ATTEST)
    except Exception as exc:
        return _unexpected(exc, Stage.ATTEST, request)
    token: str = answer["token"]
    expires_at = utcnow() + timedelta(seconds=int(answer["expires_in"]))
    sessions.attested(session_id, session, token, expires_at)
    return JSONResponse({"token": token}, headers=_cookie(session_id, expires_at))


async def resource(request: Request) -> Response:
    if request.method != "GET":  # HEAD: Starlette routes it with GET; it must not release
        return _wrong_method(request, "resource")
    try:
        service, sessions, _ = _service(request)
        token = _token(request, sessions)
        if token is None:
            return information(
                401,
                "TokenNotFound",
                "no attested kbs-session-id cookie and no Authorization: Bearer token",
            )
        path = parse_kbs_path(request.path_params["path"])
        answer = await service.release_resource(token, path, origin(request))
    except KeybrokerError as exc:
        return error_response(exc, Stage.RESOURCE)
    except Exception as exc:
        return _unexpected(exc, Stage.RESOURCE, request)
    return JSONResponse(answer["jwe"])


def _token(request: Request, sessions: KbsSessions) -> str | None:
    """The attested session's token, else the Bearer token (as Trustee reads them)."""
    session = sessions.get(request.cookies.get(COOKIE, ""), utcnow())
    if session is not None and session.token is not None:
        return session.token
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


async def unknown(request: Request) -> Response:
    """A path under ``/kbs/v0`` that is no endpoint: 404 ``PluginNotFound`` as Trustee
    answers it; an endpoint asked with another method: 405 with ``Allow`` (RFC 9110
    §15.5.6), or 204 with ``Allow`` for ``OPTIONS`` (§9.3.7)."""
    path: str = request.path_params["plugin"]
    endpoint = "resource" if path.startswith("resource/") else path
    if endpoint not in METHODS:
        return information(404, "PluginNotFound", "no KBS endpoint has this path")
    return _wrong_method(request, endpoint)


def _wrong_method(request: Request, endpoint: str) -> Response:
    allow = allow_value((METHODS[endpoint],)).decode()
    if request.method == "OPTIONS":
        return Response(status_code=204, headers={"Allow": allow})
    return information(
        405,
        "MethodNotAllowed",
        f"{request.method} is not allowed on /kbs/v0/{endpoint}; it allows {allow}",
        {"Allow": allow},
    )
