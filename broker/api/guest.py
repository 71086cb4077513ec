"""The guest API (v1): challenge, attest, release (with a token, or in one request with the
evidence), and the broker's public key.

Endpoints are thin: parse and validate the body, call the release service, shape the answer.
Every failure is a ``KeybrokerError`` that the problem table turns into RFC 7807.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from broker.api.body import DecodedTexts, base64_member, json_object, member
from broker.api.headers import bearer_token, origin
from broker.api.lean import Answer, LeanRequest, LeanRoute
from broker.errors import BadRequest
from broker.evidence.registry import parse_tee
from broker.names import checked_name
from broker.release.service import AttestRequest, ReleaseService, attest_request

MAX_COLLATERAL_ITEMS = 16
CHALLENGE_MAX_BYTES = 4096
RELEASE_MAX_BYTES = 65536

#: Collateral is public (certificates, CRLs, TCB documents) and recurs per chip.
_COLLATERAL_TEXTS = DecodedTexts()


def _service(state: State) -> ReleaseService:
    service: ReleaseService = state.release
    return service


async def challenge(request: LeanRequest, state: State) -> Answer:
    service = _service(state)
    body = await json_object(request, {"tee"}, CHALLENGE_MAX_BYTES)
    tee = parse_tee(member(body, "tee", str))
    return 201, await service.challenge(tee)


async def attest(request: LeanRequest, state: State) -> Answer:
    service = _service(state)
    body = await json_object(request, ATTEST_MEMBERS, int(state.settings.max_request_bytes))
    return 200, await service.attest(_attest_request(request, body))


#: The members of an attestation, at /v1/attest and in a one-request release.
ATTEST_MEMBERS = {"tee", "evidence", "tee_pubkey", "nonce", "collateral"}


def _attest_request(request: LeanRequest, body: dict[str, Any]) -> AttestRequest:
    tee = parse_tee(member(body, "tee", str))
    evidence = base64_member(body, "evidence")
    jwk = member(body, "tee_pubkey", dict)
    nonce = member(body, "nonce", str)
    collateral = collateral_items(member(body, "collateral", dict, required=False) or {})
    return attest_request(
        tee=tee,
        evidence=evidence or b"",
        tee_jwk=jwk,
        nonce_text=nonce,
        collateral=collateral,
        origin=origin(request),
    )


def collateral_items(document: dict[str, Any]) -> dict[str, bytes]:
    """A ``collateral`` member's items by name, each base64 decoded; ``BadRequest``."""
    if len(document) > MAX_COLLATERAL_ITEMS:
        raise BadRequest(f"at most {MAX_COLLATERAL_ITEMS} collateral items")
    items = {}
    for name, value in document.items():
        if not isinstance(value, str):
            raise BadRequest(f"collateral '{name}' must be base64 text")
        items[str(name)] = _COLLATERAL_TEXTS.decode(value, f"collateral.{name}")
    return items


async def release(request: LeanRequest, state: State) -> Answer:
    """A release with an attestation-result token (``Authorization: Bearer``), or in one
    request with the attestation itself in the body (``attested_release``)."""
    service = _service(state)
    # A malformed name is a malformed request (400), refused before it is judged or audited.
    key_name = checked_name(request.path_params["name"], "key")
    has_body = request.headers.get("content-length", "0") != "0" or bool(
        request.headers.get("content-type")
    )
    if "authorization" not in request.headers and has_body:
        body = await json_object(request, ATTEST_MEMBERS, int(state.settings.max_request_bytes))
        if ATTEST_MEMBERS.difference({"tee_pubkey"}).intersection(body):
            return 200, await service.attested_release(_attest_request(request, body), key_name)
        bearer_token(request, "attestation token")  # no token, no evidence: 401
    token = bearer_token(request, "attestation token")
    presented = None
    if has_body:
        body = await json_object(request, {"tee_pubkey"}, RELEASE_MAX_BYTES)
        presented = member(body, "tee_pubkey", dict, required=False)
    return 200, await service.release(token, key_name, presented, origin(request))


ROUTES = (
    LeanRoute("POST", "/v1/challenge", challenge),
    LeanRoute("POST", "/v1/attest", attest),
    LeanRoute("POST", "/v1/keys/{name}/release", release),
)
"""Served by ``broker.api.lean.GuestRoutes`` in front of Starlette (three per release with a
token, two in the one-request flow)."""


async def jwks(request: Request) -> Response:
    """The broker's signing key, to verify tokens and release envelopes (RFC 7517)."""
    service: ReleaseService = request.app.state.release
    return JSONResponse(service.jwks())
