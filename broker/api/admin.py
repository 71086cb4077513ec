"""The admin API (v1): bearer admin tokens, role checks in ``broker/admin/service.py``."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from broker.admin.service import (
    AUDIT_PAGE_LIMIT,
    DEFAULT_REPLAY_WINDOW,
    DEFAULT_TOKEN_DAYS,
    IMPORT_KEY_HOURS,
    AdminService,
    WrappedImport,
    is_wrapping_key_id,
)
from broker.api.auditfilters import audit_filters, instant_param
from broker.api.body import base64_member, json_object, member
from broker.api.clientcert import ClientRoles, scope_subject
from broker.api.headers import bearer_token, origin
from broker.api.numbers import is_ascii_digits
from broker.errors import BadRequest, Forbidden, KeybrokerError, TokenInvalid, TokenMissing
from broker.policy.source import nesting_error
from broker.release.unauthenticated import AdminRefusal
from broker.roles import Principal, Role

#: Most key versions one call of POST /v1/admin/kek/rewrap re-seals, so a call stays short;
#: the caller calls again while `remaining` is not 0.
REWRAP_API_LIMIT = 5000

MAX_SEQ = 2**63 - 1

Handler = Callable[[Request, AdminService, Principal], Awaitable[Any]]


def endpoint(handler: Handler, status: int = 200) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        admin: AdminService = request.app.state.admin
        try:
            principal = await _principal(request, admin)
            result = await handler(request, admin, principal)
        except (TokenInvalid, Forbidden) as refused:
            # Counted and audited in aggregate per source and minute, as guest junk is: one
            # record each would let anyone without a token grow the chain at will.
            route = getattr(request.scope.get("route"), "path", "unmatched")
            request.app.state.release.unauthenticated.refused_admin(
                origin(request), str(route), _refusal_reason(refused)
            )
            raise
        return JSONResponse(result, status_code=status)

    return run


async def _principal(request: Request, admin: AdminService) -> Principal:
    """Who calls: the role a verified client certificate's subject is mapped to
    (``admin_client_roles_file``), else the bearer admin token's; with
    ``admin_client_certificate_only``, the certificate's alone."""
    roles: ClientRoles = request.app.state.client_roles
    subject = scope_subject(request.scope)
    role = None if subject is None else roles.subjects.get(subject)
    if role is not None and subject is not None:
        return Principal(actor=f"cert:{subject}", role=role)
    if roles.only:
        held = "no client certificate" if subject is None else f"certificate {subject}"
        raise TokenMissing(
            f"a client certificate listed in admin_client_roles_file is required "
            f"(admin_client_certificate_only); this connection has {held}"
        )
    return await admin.authenticate(bearer_token(request, "admin token"))


def _refusal_reason(refused: KeybrokerError) -> AdminRefusal:
    if isinstance(refused, TokenMissing):
        return "admin-token-missing"
    if isinstance(refused, TokenInvalid):
        return "admin-token-invalid"
    return "admin-forbidden"


def _int_param(request: Request, name: str, default: int | None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not is_ascii_digits(raw):
        raise BadRequest(f"query parameter {name} must be a non-negative integer (digits 0-9)")
    return int(raw)


SecretSpec = tuple[str | None, bytes | None, int | None, WrappedImport | None]


async def _secret_spec(request: Request) -> SecretSpec:
    body = await json_object(request, {"name", "secret", "generate_length", "wrapped"}, 65536)
    secret = base64_member(body, "secret", required=False)
    length = member(body, "generate_length", int, required=False)
    wrapped = member(body, "wrapped", dict, required=False)
    return member(body, "name", str, required=False), secret, length, _wrapped_import(wrapped)


def _wrapped_import(wrapped: dict[str, Any] | None) -> WrappedImport | None:
    """``{wrapping_key_id, material (base64), secret_length}``: key material to import."""
    if wrapped is None:
        return None
    unknown = set(wrapped) - {"wrapping_key_id", "material", "secret_length"}
    if unknown:
        raise BadRequest(f"member 'wrapped' has unknown members: {', '.join(sorted(unknown))}")
    key_id = member(wrapped, "wrapping_key_id", str)
    if not is_wrapping_key_id(key_id):
        raise BadRequest("wrapping_key_id must be 16 lowercase hex digits")
    material = base64_member(wrapped, "material")
    return WrappedImport(key_id, material or b"", member(wrapped, "secret_length", int))


async def make_import_wrapping_key(request: Request, admin: AdminService, who: Principal) -> Any:
    body = await json_object(request, {"valid_hours"}, 4096)
    hours = member(body, "valid_hours", int, required=False)
    return await admin.make_import_wrapping_key(who, IMPORT_KEY_HOURS if hours is None else hours)


async def list_keys(request: Request, admin: AdminService, who: Principal) -> Any:
    return {"keys": await admin.list_keys(who)}


async def show_key(request: Request, admin: AdminService, who: Principal) -> Any:
    return await admin.show_key(who, request.path_params["name"])


async def schedule_deletion(request: Request, admin: AdminService, who: Principal) -> Any:
    body = await json_object(request, {"pending_days"}, 4096)
    days = member(body, "pending_days", int)
    return await admin.schedule_deletion(who, request.path_params["name"], days)


async def cancel_deletion(request: Request, admin: AdminService, who: Principal) -> Any:
    return await admin.cancel_deletion(who, request.path_params["name"])


async def create_key(request: Request, admin: AdminService, who: Principal) -> Any:
    name, secret, length, wrapped = await _secret_spec(request)
    if name is None:
        raise BadRequest("member 'name' is required")
    return await admin.create_key(who, name, secret, length, wrapped_import=wrapped)


async def add_key_version(request: Request, admin: AdminService, who: Principal) -> Any:
    _, secret, length, wrapped = await _secret_spec(request)
    name = request.path_params["name"]
    return await admin.create_key(who, name, secret, length, True, wrapped_import=wrapped)


async def disable_key(request: Request, admin: AdminService, who: Principal) -> Any:
    return await admin.set_key_state(who, request.path_params["name"], "disabled")


async def enable_key(request: Request, admin: AdminService, who: Principal) -> Any:
    return await admin.set_key_state(who, request.path_params["name"], "active")


async def set_exposure(request: Request, admin: AdminService, who: Principal) -> Any:
    body = await json_object(request, {"exposure"}, 4096)
    return await admin.set_exposure(who, request.path_params["name"], member(body, "exposure", str))


async def set_kbs_path(request: Request, admin: AdminService, who: Principal) -> Any:
    body = await json_object(request, {"path"}, 4096)
    return await admin.set_kbs_path(who, request.path_params["name"], member(body, "path", str))


async def clear_kbs_path(request: Request, admin: AdminService, who: Principal) -> Any:
    return await admin.set_kbs_path(who, request.path_params["name"], None)


async def bind_policy(request: Request, admin: AdminService, who: Principal) -> Any:
    body = await json_object(request, {"policy", "version", "lock"}, 4096)
    return await admin.bind_policy(
        who,
        request.path_params["name"],
        member(body, "policy", str),
        member(body, "version", int, required=False),
        bool(member(body, "lock", bool, required=False)),
    )


async def rotate_kek(request: Request, admin: AdminService, who: Principal) -> Any:
    return await admin.rotate_kek(who)


async def kek_status(request: Request, admin: AdminService, who: Principal) -> Any:
    return await admin.kek_status(who)


async def rewrap_keys(request: Request, admin: AdminService, who: Principal) -> Any:
    return await admin.rewrap_keys(who, _int_param(request, "limit", REWRAP_API_LIMIT))


async def retire_kek(request: Request, admin: AdminService, who: Principal) -> Any:
    version = request.path_params["version"]
    if not is_ascii_digits(version) or len(version) > 10:
        raise BadRequest("KEK version must be a positive integer (digits 0-9)")
    return await admin.retire_kek(who, int(version))


async def publish_policy(request: Request, admin: AdminService, who: Principal) -> Any:
    body = await json_object(
        request, {"document"}, int(request.app.state.settings.max_request_bytes)
    )
    document = member(body, "document", dict)
    # Refused before it is written out again: json.dumps recurses once per level.
    too_deep = nesting_error(document, "<request>")
    if too_deep is not None:
        raise too_deep
    return await admin.publish_policy_json(who, json.dumps(document))


async def list_policies(request: Request, admin: AdminService, who: Principal) -> Any:
    return {"policies": await admin.list_policies(who)}


async def get_policy(request: Request, admin: AdminService, who: Principal) -> Any:
    version = _int_param(request, "version", None)
    return await admin.get_policy(who, request.path_params["name"], version)


async def replay_policy(request: Request, admin: AdminService, who: Principal) -> Any:
    body = await json_object(
        request, {"document", "key", "since"}, int(request.app.state.settings.max_request_bytes)
    )
    document = member(body, "document", dict)
    too_deep = nesting_error(document, "<request>")
    if too_deep is not None:
        raise too_deep
    key = member(body, "key", str, required=False)
    since = member(body, "since", str, required=False) or DEFAULT_REPLAY_WINDOW
    name = request.path_params["name"]
    return await admin.replay_policy_json(who, name, json.dumps(document), key, since)


async def diff_policy(request: Request, admin: AdminService, who: Principal) -> Any:
    old, new = _int_param(request, "from", None), _int_param(request, "to", None)
    if old is None or new is None:
        raise BadRequest("query parameters from and to (policy versions) are required")
    return await admin.diff_policy(who, request.path_params["name"], old, new)


def _seq_param(request: Request, name: str) -> int | None:
    """A sequence number: PostgreSQL's bigint bounds it."""
    value = _int_param(request, name, None)
    if value is not None and value > MAX_SEQ:
        raise BadRequest(f"query parameter {name} must be at most {MAX_SEQ}")
    return value


async def audit_records(request: Request, admin: AdminService, who: Principal) -> Any:
    """Newest first; with ``after`` in sequence order from there, and ``next`` the ``after``
    of the following page (null at the end)."""
    after = _seq_param(request, "after")
    selected = dataclasses.replace(
        audit_filters(request.query_params),
        after=after or 0,
        before=_seq_param(request, "before"),
    )
    limit = _int_param(request, "limit", 50) or 50
    records = await admin.audit_records(who, selected, limit, newest_first=after is None)
    full = len(records) == min(limit, AUDIT_PAGE_LIMIT)
    following = records[-1]["seq"] if after is not None and full else None
    return {"records": records, "next": following}


async def audit_verify(request: Request, admin: AdminService, who: Principal) -> Any:
    report = await admin.audit_verify(who, instant_param(request.query_params, "since"))
    return {
        "ok": report.ok,
        "records": report.records,
        "first_bad_seq": report.first_bad_seq,
        "reason": report.reason,
    }


async def create_token(request: Request, admin: AdminService, who: Principal) -> Any:
    body = await json_object(request, {"name", "role", "expires_in_days"}, 4096)
    try:
        role = Role(member(body, "role", str))
    except ValueError:
        raise BadRequest(f"role must be one of {', '.join(r.value for r in Role)}") from None
    days = member(body, "expires_in_days", int, required=False)
    name = member(body, "name", str)
    return await admin.create_token(who, name, role, DEFAULT_TOKEN_DAYS if days is None else days)


async def rotate_token(request: Request, admin: AdminService, who: Principal) -> Any:
    body = await json_object(request, {"expires_in_days"}, 4096)
    days = member(body, "expires_in_days", int, required=False)
    token_id = request.path_params["token_id"]
    return await admin.rotate_token(who, token_id, DEFAULT_TOKEN_DAYS if days is None else days)


async def whoami(request: Request, admin: AdminService, who: Principal) -> Any:
    return await admin.whoami(who)


async def list_tokens(request: Request, admin: AdminService, who: Principal) -> Any:
    return {"tokens": await admin.list_tokens(who)}


async def revoke_token(request: Request, admin: AdminService, who: Principal) -> Any:
    return await admin.revoke_token(who, request.path_params["token_id"])


async def create_access_key(request: Request, admin: AdminService, who: Principal) -> Any:
    body = await json_object(request, {"name"}, 4096)
    return await admin.create_access_key(who, member(body, "name", str))


async def list_access_keys(request: Request, admin: AdminService, who: Principal) -> Any:
    return {"access_keys": await admin.list_access_keys(who)}


async def revoke_access_key(request: Request, admin: AdminService, who: Principal) -> Any:
    return await admin.revoke_access_key(who, request.path_params["access_key_id"])


ROUTES = [
    Route("/v1/admin/keys", endpoint(list_keys), methods=["GET"]),
    Route("/v1/admin/keys", endpoint(create_key, 201), methods=["POST"]),
    Route("/v1/admin/keys/{name}", endpoint(show_key), methods=["GET"]),
    Route("/v1/admin/keys/{name}/deletion", endpoint(schedule_deletion), methods=["PUT"]),
    Route("/v1/admin/keys/{name}/deletion", endpoint(cancel_deletion), methods=["DELETE"]),
    Route("/v1/admin/keys/{name}/versions", endpoint(add_key_version, 201), methods=["POST"]),
    Route("/v1/admin/keys/{name}/disable", endpoint(disable_key), methods=["POST"]),
    Route("/v1/admin/keys/{name}/enable", endpoint(enable_key), methods=["POST"]),
    Route("/v1/admin/keys/{name}/policy", endpoint(bind_policy), methods=["PUT"]),
    Route("/v1/admin/keys/{name}/exposure", endpoint(set_exposure), methods=["PUT"]),
    Route("/v1/admin/keys/{name}/kbs-path", endpoint(set_kbs_path), methods=["PUT"]),
    Route("/v1/admin/keys/{name}/kbs-path", endpoint(clear_kbs_path), methods=["DELETE"]),
    Route(
        "/v1/admin/import-wrapping-keys",
        endpoint(make_import_wrapping_key, 201),
        methods=["POST"],
    ),
    Route("/v1/admin/kek", endpoint(kek_status), methods=["GET"]),
    Route("/v1/admin/kek/rotate", endpoint(rotate_kek), methods=["POST"]),
    Route("/v1/admin/kek/rewrap", endpoint(rewrap_keys), methods=["POST"]),
    Route("/v1/admin/kek/{version}/retire", endpoint(retire_kek), methods=["POST"]),
    Route("/v1/admin/policies", endpoint(publish_policy, 201), methods=["POST"]),
    Route("/v1/admin/policies", endpoint(list_policies), methods=["GET"]),
    Route("/v1/admin/policies/{name}", endpoint(get_policy), methods=["GET"]),
    Route("/v1/admin/policies/{name}/replay", endpoint(replay_policy), methods=["POST"]),
    Route("/v1/admin/policies/{name}/diff", endpoint(diff_policy), methods=["GET"]),
    Route("/v1/admin/audit", endpoint(audit_records), methods=["GET"]),
    Route("/v1/admin/audit/verify", endpoint(audit_verify), methods=["GET"]),
    Route("/v1/admin/tokens", endpoint(create_token, 201), methods=["POST"]),
    Route("/v1/admin/tokens", endpoint(list_tokens), methods=["GET"]),
    Route("/v1/admin/tokens/{token_id}", endpoint(revoke_token), methods=["DELETE"]),
    Route("/v1/admin/access-keys", endpoint(create_access_key, 201), methods=["POST"]),
    Route("/v1/admin/access-keys", endpoint(list_access_keys), methods=["GET"]),
    Route("/v1/admin/access-keys/{access_key_id}", endpoint(revoke_access_key), methods=["DELETE"]),
    Route("/v1/admin/tokens/{token_id}/rotate", endpoint(rotate_token, 201), methods=["POST"]),
    Route("/v1/admin/whoami", endpoint(whoami), methods=["GET"]),
]
