"""RFC 7807 problem documents: the one table from error class to HTTP status.

The ``type`` URI of each problem is stable (``https://keybroker.dev/problems/<type>``) so that
clients can branch on it; a type whose spelling changed also carries its former URI as
``deprecated_type`` until ``errors.FORMER_TYPES_REMOVED_IN``; ``detail`` is for humans and
never carries secret material.
Classes are matched most-specific first through the MRO, so a subclass inherits its parent's
status unless the table names it.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from broker import errors, fastjson

PROBLEM_BASE = "https://keybroker.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"
RETRY_AFTER_SECONDS = "5"

Parts = tuple[int, bytes, bytes, tuple[tuple[bytes, bytes], ...]]
"""An answer on plain ASGI: status, body, media type (empty for no body), extra headers."""

# RFC 6750 §3: every 401 challenges the client to present a bearer token. The error code is
# sent only when a token was presented and refused (§3.1: a request that carried no
# authentication gets none).
BEARER_CHALLENGE = b'Bearer realm="keybroker"'
INVALID_TOKEN_CHALLENGE = b'Bearer realm="keybroker", error="invalid_token"'

STATUS: dict[type[errors.KeybrokerError], int] = {
    errors.BadRequest: 400,
    errors.PublicKeyInvalid: 400,
    errors.SecretLengthInvalid: 400,
    errors.WrappedKeyInvalid: 400,
    # The request was well-formed (the API's schema admits any JSON object as a document);
    # the document is not a valid policy: its content is refused, as evidence that does not
    # verify is (RFC 9110 §15.5.21).
    errors.PolicyError: 422,
    errors.TokenInvalid: 401,
    errors.Forbidden: 403,
    errors.PolicyDenied: 403,
    errors.KeyDisabled: 403,
    errors.ExposureRefused: 403,
    errors.KmsUseRefused: 403,
    errors.CiphertextInvalid: 400,
    errors.IncorrectKey: 400,
    errors.SignatureRefused: 401,
    errors.AccessKeyRevoked: 401,
    errors.SignatureReplayed: 401,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.NonceError: 409,
    errors.EvidenceError: 422,
    errors.MethodNotAllowed: 405,
    errors.RequestTimeout: 408,
    errors.RateLimited: 429,
    errors.RequestHeadTooLarge: 431,
    errors.Unavailable: 503,
    errors.CollateralUnavailable: 503,
    errors.BlobInvalid: 500,
    errors.KekNotFound: 500,
    errors.HsmError: 500,
    errors.ConfigurationError: 500,
    errors.InternalError: 500,
    errors.StoredPolicyInvalid: 500,
}

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def status_for(exc: errors.KeybrokerError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def problem_document(exc: errors.KeybrokerError, request_id: str | None) -> dict[str, Any]:
    status = status_for(exc)
    document: dict[str, Any] = {
        "type": PROBLEM_BASE + exc.type,
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": exc.detail,
    }
    former = errors.FORMER_TYPES.get(exc.type)
    if former is not None:
        document["deprecated_type"] = PROBLEM_BASE + former
    if isinstance(exc, errors.EvidenceError):
        document["evidence_error"] = exc.type
    if request_id:
        document["request_id"] = request_id
    document.update(exc.extra())
    return document


def problem_parts(exc: errors.KeybrokerError, request_id: str | None) -> Parts:
    """Status, body, media type and extra headers of the problem answer (plain ASGI)."""
    document = problem_document(exc, request_id)
    status: int = document["status"]
    return status, fastjson.dumps(document), PROBLEM_MEDIA_TYPE.encode(), _headers(exc, status)


def _headers(exc: errors.KeybrokerError, status: int) -> tuple[tuple[bytes, bytes], ...]:
    if status == 401:
        missing = isinstance(exc, errors.TokenMissing)
        return ((b"www-authenticate", BEARER_CHALLENGE if missing else INVALID_TOKEN_CHALLENGE),)
    if status in (429, 503):
        return ((b"retry-after", RETRY_AFTER_SECONDS.encode()),)
    return ()


def problem_response(exc: errors.KeybrokerError, request_id: str | None) -> Response:
    return parts_response(problem_parts(exc, request_id))


def parts_response(parts: Parts) -> Response:
    """Starlette's ``Response`` of an answer given as parts (an empty media type: no body)."""
    status, body, media_type, headers = parts
    return Response(
        body,
        status_code=status,
        media_type=media_type.decode() or None,
        headers={name.decode(): value.decode() for name, value in headers},
    )
