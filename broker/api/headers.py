"""What endpoints read from a request besides its body: request id and bearer token."""

from __future__ import annotations

from starlette.requests import Request

from broker.errors import TokenInvalid


def request_id(request: Request) -> str | None:
    """The id the request-context middleware gave this request."""
    state = request.scope.get("state", {})
    return state.get("request_id") if isinstance(state, dict) else None


def bearer_token(request: Request, what: str) -> str:
    """The token of ``Authorization: Bearer <token>``; ``TokenInvalid`` naming ``what``."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenInvalid(f"Authorization: Bearer <{what}> is required")
    return token.strip()
