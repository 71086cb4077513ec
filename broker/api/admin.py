"""The admin API (v1): bearer admin tokens, role checks in ``broker/admin/service.py``."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from broker.admin.service import DEFAULT_REPLAY_WINDOW, AdminService
from broker.api.body import base64_member, json_object, member
from broker.api.headers import bearer_token
from broker.api.numbers import is_ascii_digits
from broker.errors import BadRequest
from broker.policy.source import nesting_error
from broker.roles import Principal, Role

Handler = Callable[[Request, AdminService, Principal], Awaitable[Any]]


def endpoint(handler: Handler, status: int = 200) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        admin: AdminService = request.app.state.admin
        principal = await admin.authenticate(bearer_token(request, "admin token"))
        result = await handler(request, admin, principal)
        return JSONResponse(result, status_code=status)

    return run


def _int_param(request: Request, name: str, default: int | None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not is_ascii_digits(raw):
        raise BadRequest(f"query parameter {name} must be a non-negative integer (digits 0-9)")
    return int(raw)


async def _secret_spec(request: Request) -> tuple[str | None, bytes | None, int | None]:
    body = await json_object(request, {"name", "secret", "generate_length"}, 65536)
    secret = base64_member(body, "secret", required=False)
    length = member(body, "generate_length", int, required=False)
    return member(body, "name", str, required=False), secret, length


async def list_keys(request: Request, admin: AdminService, who: Principal) -> Any:
    return {"keys": await admin.list_keys(who)}


async def create_key(request: Request, admin: AdminService, who: Principal) -> Any:
    name, secret, length = await _secret_spec(request)
    if name is None:
        raise BadRequest("member 'name' is required")
    return await admin.create_key(who, name, secret, length)


async def add_key_version(request: Request, admin: AdminService, who: Principal) -> Any:
    _, secret, length = await _secret_spec(request)
    return await admin.create_key(who, request.path_params["name"], secret, length, True)


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


async def audit_tail(request: Request, admin: AdminService, who: Principal) -> Any:
    return {"records": await admin.audit_tail(who, _int_param(request, "limit", 50) or 50)}


async def audit_verify(request: Request, admin: AdminService, who: Principal) -> Any:
    report = await admin.audit_verify(who)
    return {
        "ok": report.ok,
        "records": report.records,
        "first_bad_seq": report.first_bad_seq,
        "reason": report.reason,
    }


async def create_token(request: Request, admin: AdminService, who: Principal) -> Any:
    body = await json_object(request, {"name", "role"}, 4096)
    try:
        role = Role(member(body, "role", str))
    except ValueError:
        raise BadRequest(f"role must be one of {', '.join(r.value for r in Role)}") from None
    return await admin.create_token(who, member(body, "name", str), role)


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
    Route("/v1/admin/keys/{name}/versions", endpoint(add_key_version, 201), methods=["POST"]),
    Route("/v1/admin/keys/{name}/disable", endpoint(disable_key), methods=["POST"]),
    Route("/v1/admin/keys/{name}/enable", endpoint(enable_key), methods=["POST"]),
    Route("/v1/admin/keys/{name}/policy", endpoint(bind_policy), methods=["PUT"]),
    Route("/v1/admin/keys/{name}/exposure", endpoint(set_exposure), methods=["PUT"]),
    Route("/v1/admin/keys/{name}/kbs-path", endpoint(set_kbs_path), methods=["PUT"]),
    Route("/v1/admin/keys/{name}/kbs-path", endpoint(clear_kbs_path), methods=["DELETE"]),
    Route("/v1/admin/kek/rotate", endpoint(rotate_kek), methods=["POST"]),
    Route("/v1/admin/policies", endpoint(publish_policy, 201), methods=["POST"]),
    Route("/v1/admin/policies", endpoint(list_policies), methods=["GET"]),
    Route("/v1/admin/policies/{name}", endpoint(get_policy), methods=["GET"]),
    Route("/v1/admin/policies/{name}/replay", endpoint(replay_policy), methods=["POST"]),
    Route("/v1/admin/policies/{name}/diff", endpoint(diff_policy), methods=["GET"]),
    Route("/v1/admin/audit", endpoint(audit_tail), methods=["GET"]),
    Route("/v1/admin/audit/verify", endpoint(audit_verify), methods=["GET"]),
    Route("/v1/admin/tokens", endpoint(create_token, 201), methods=["POST"]),
    Route("/v1/admin/tokens", endpoint(list_tokens), methods=["GET"]),
    Route("/v1/admin/tokens/{token_id}", endpoint(revoke_token), methods=["DELETE"]),
    Route("/v1/admin/access-keys", endpoint(create_access_key, 201), methods=["POST"]),
    Route("/v1/admin/access-keys", endpoint(list_access_keys), methods=["GET"]),
    Route("/v1/admin/access-keys/{access_key_id}", endpoint(revoke_access_key), methods=["DELETE"]),
]
