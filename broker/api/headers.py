"""What endpoints read from a request besides its body: request ids, peer, bearer token."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from broker.errors import TokenMissing
from broker.release.origin import Origin


class HasHeaders(Protocol):
    """Starlette's ``Request`` or the guest path's ``LeanRequest``."""

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def scope(self) -> Mapping[str, Any]: ...


def request_id(request: HasHeaders) -> str | None:
    """The id the broker gave this request (``broker/api/middleware.py``)."""
    state = request.scope.get("state", {})
    return state.get("request_id") if isinstance(state, dict) else None


def origin(request: HasHeaders) -> Origin:
    """The broker's id of this request, the client's own id if it sent a sane one, and the
    TCP peer's address."""
    state = request.scope.get("state", {})
    client = request.scope.get("client")
    return Origin(
        request_id=state.get("request_id") if isinstance(state, dict) else None,
        client_request_id=state.get("client_request_id") if isinstance(state, dict) else None,
        source=str(client[0]) if client else "unknown",
    )


def bearer_token(request: HasHeaders, what: str) -> str:
    """The token of ``Authorization: Bearer <token>``; ``TokenMissing`` naming ``what``."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenMissing(f"Authorization: Bearer <{what}> is required")
    return token.strip()
