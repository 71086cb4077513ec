"""KBS errors as Trustee's clients read them: kbs-types ``ErrorInformation``.

Every error answer is ``{"type": "https://github.com/confidential-containers/kbs/errors/<Name>",
"detail": "..."}`` with Trustee's status codes: 404 only for a path no KBS plugin serves
(``PluginNotFound``) and 401 for every refusal, a policy deny and a missing resource included,
since the reference client answers a 401 from ``/resource`` by redoing the handshake. The
broker's own failures keep their status (429 rate limited, 500 internal, 503 unavailable,
with ``Retry-After``): those are not the guest's to fix by attesting again. The names are
Trustee's error variants; the detail is keybroker's error detail, which never carries
secret material, and never a traceback.
"""

from __future__ import annotations

from enum import StrEnum

from starlette.responses import JSONResponse

from broker import errors
from broker.api.problem import (
    BEARER_CHALLENGE,
    INVALID_TOKEN_CHALLENGE,
    RETRY_AFTER_SECONDS,
    status_for,
)

ERROR_TYPE_PREFIX = "https://github.com/confidential-containers/kbs/errors/"
# RFC 9110 §11.6.1: a 401 carries a challenge, the broker's own (RFC 6750 §3: with
# error="invalid_token" when a token was presented and refused).
_CHALLENGE = BEARER_CHALLENGE.decode()
_REFUSED_CHALLENGE = INVALID_TOKEN_CHALLENGE.decode()


class Stage(StrEnum):
    """Which request failed: the variant and detail prefix Trustee uses for each."""

    AUTH = "auth"
    ATTEST = "attest"
    RESOURCE = "resource"


# Trustee reports RCAR failures as its AttestationError, whose detail names the step.
_HANDSHAKE = {
    Stage.AUTH: "RCAR handshake Auth failed",
    Stage.ATTEST: "RCAR handshake Attest failed",
}

#: Resource refusals, by keybroker error class (most specific first through the MRO).
_RESOURCE: dict[type[errors.KeybrokerError], str] = {
    errors.TokenInvalid: "TokenVerifierError",
    errors.PolicyDenied: "PolicyDeny",
    errors.KeyDisabled: "PolicyDeny",
    errors.ExposureRefused: "JweError",
    errors.KeyNotFound: "PluginInternalError",
    errors.BadRequest: "PluginInternalError",
}


_PASSED_THROUGH = {
    408: "RequestTimeout",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
}


def _variant(exc: errors.KeybrokerError) -> str:
    for cls in type(exc).__mro__:
        if cls in _RESOURCE:
            return _RESOURCE[cls]
    return "PluginInternalError"


def error_response(
    exc: errors.KeybrokerError, stage: Stage, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The answer to a request of ``stage`` that ended in ``exc``."""
    native = status_for(exc)
    extra = dict(headers or {})
    if native in _PASSED_THROUGH:
        # Not the guest's evidence or token: the connection limits' body deadline (408),
        # limits, infrastructure and the broker's own faults keep their status.
        status, name, detail = native, _PASSED_THROUGH[native], exc.detail
        if native in (429, 503):
            extra["Retry-After"] = RETRY_AFTER_SECONDS
    elif stage is Stage.RESOURCE:
        status, name, detail = 401, _variant(exc), exc.detail
        if name == "TokenVerifierError":
            extra["WWW-Authenticate"] = _REFUSED_CHALLENGE
    else:
        status, name, detail = 401, "AttestationError", f"{_HANDSHAKE[stage]}: {exc.detail}"
    return information(status, name, detail, extra)


def information(
    status: int, name: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An ``ErrorInformation`` answer (a 401 with its challenge)."""
    extra = dict(headers or {})
    if status == 401:
        extra.setdefault("WWW-Authenticate", _CHALLENGE)
    return JSONResponse(
        {"type": ERROR_TYPE_PREFIX + name, "detail": detail}, status_code=status, headers=extra
    )
