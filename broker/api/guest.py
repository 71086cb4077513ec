"""The guest API (v1): challenge, attest, release, and the broker's public key.

Endpoints are thin: parse and validate the body, call the release service, shape the answer.
Every failure is a ``KeybrokerError`` that the problem table turns into RFC 7807.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from broker import fastjson, jose
from broker.api.body import base64_member, decode_base64, json_object, member
from broker.api.headers import bearer_token, request_id
from broker.errors import BadRequest
from broker.evidence.registry import parse_tee
from broker.names import checked_name
from broker.release.service import AttestRequest, ReleaseService
from hsm.pubkey import from_jwk

MAX_COLLATERAL_ITEMS = 16


class FastJSONResponse(JSONResponse):
    """The same compact JSON as Starlette's, written by orjson (broker/fastjson.py)."""

    def render(self, content: Any) -> bytes:
        return fastjson.dumps(content)


def _service(request: Request) -> ReleaseService:
    service: ReleaseService = request.app.state.release
    limiter = request.app.state.rate_limiter
    client = request.client.host if request.client else "unknown"
    limiter.check(client)
    return service


def _max_bytes(request: Request) -> int:
    return int(request.app.state.settings.max_request_bytes)


async def challenge(request: Request) -> Response:
    service = _service(request)
    body = await json_object(request, {"tee"}, 4096)
    tee = parse_tee(member(body, "tee", str))
    return FastJSONResponse(await service.challenge(tee), status_code=201)


async def attest(request: Request) -> Response:
    service = _service(request)
    body = await json_object(
        request, {"tee", "evidence", "tee_pubkey", "nonce", "collateral"}, _max_bytes(request)
    )
    tee = parse_tee(member(body, "tee", str))
    evidence = base64_member(body, "evidence")
    jwk = member(body, "tee_pubkey", dict)
    nonce = member(body, "nonce", str)
    collateral = _collateral(member(body, "collateral", dict, required=False) or {})
    attest_request = AttestRequest(
        tee=tee,
        evidence=evidence or b"",
        tee_jwk=jwk,
        tee_key=from_jwk(jwk),
        nonce_text=nonce,
        collateral=collateral,
        request_id=request_id(request),
    )
    return FastJSONResponse(await service.attest(attest_request))


def _collateral(document: dict[str, Any]) -> dict[str, bytes]:
    if len(document) > MAX_COLLATERAL_ITEMS:
        raise BadRequest(f"at most {MAX_COLLATERAL_ITEMS} collateral items")
    items = {}
    for name, value in document.items():
        if not isinstance(value, str):
            raise BadRequest(f"collateral '{name}' must be base64 text")
        items[str(name)] = decode_base64(value, f"collateral.{name}")
    return items


async def release(request: Request) -> Response:
    service = _service(request)
    token = bearer_token(request, "attestation token")
    # A malformed name is a malformed request (400), refused before it is judged or audited.
    key_name = checked_name(request.path_params["name"], "key")
    presented = None
    if request.headers.get("content-length", "0") != "0" or request.headers.get("content-type"):
        body = await json_object(request, {"tee_pubkey"}, 65536)
        presented = member(body, "tee_pubkey", dict, required=False)
    answer = await service.release(token, key_name, presented, request_id(request))
    return FastJSONResponse(answer)


async def jwks(request: Request) -> Response:
    """The broker's signing key, to verify tokens and release envelopes (RFC 7517)."""
    public = request.app.state.runtime.custody.signing_public_key
    key = {**jose.ec_jwk(public), "kid": jose.key_id(public), "alg": "ES256", "use": "sig"}
    return JSONResponse({"keys": [key]})
