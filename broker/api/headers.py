"""What endpoints read from a request besides its body: request id and bearer token."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from broker.errors import TokenMissing


class HasHeaders(Protocol):
    """Starlette's ``Request`` or the guest path's ``LeanRequest``."""

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def scope(self) -> Mapping[str, Any]: ...


def request_id(request: HasHeaders) -> str | None:
    """The id the request-context middleware gave this request."""
    state = request.scope.get("state", {})
    return state.get("request_id") if isinstance(state, dict) else None


def bearer_token(request: HasHeaders, what: str) -> str:
    """The token of ``Authorization: Bearer <token>``; ``TokenMissing`` naming ``what``."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenMissing(f"Authorization: Bearer <{what}> is required")
    return token.strip()
