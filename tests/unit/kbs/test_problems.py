"""KBS error answers: Trustee's statuses and error names, the broker's own failures kept."""

from __future__ import annotations

import json

import pytest

from broker import errors
from broker.api.kbs.problems import ERROR_TYPE_PREFIX, Stage, error_response

_DENY = errors.PolicyDenied("policy p denies", [])


@pytest.mark.parametrize(
    ("exc", "stage", "status", "name", "detail"),
    [
        (
            errors.BadRequest("bad"),
            Stage.AUTH,
            401,
            "AttestationError",
            "RCAR handshake Auth failed: bad",
        ),
        (
            errors.NonceReplayed("used"),
            Stage.ATTEST,
            401,
            "AttestationError",
            "RCAR handshake Attest failed: used",
        ),
        (
            errors.SignatureInvalid("sig"),
            Stage.ATTEST,
            401,
            "AttestationError",
            "RCAR handshake Attest failed: sig",
        ),
        (
            errors.TokenInvalid("token expired"),
            Stage.RESOURCE,
            401,
            "TokenVerifierError",
            "token expired",
        ),
        (_DENY, Stage.RESOURCE, 401, "PolicyDeny", "policy p denies"),
        (errors.KeyDisabled("off"), Stage.RESOURCE, 401, "PolicyDeny", "off"),
        (errors.ExposureRefused("hsm-only"), Stage.RESOURCE, 401, "JweError", "hsm-only"),
        (errors.KeyNotFound("none"), Stage.RESOURCE, 401, "PluginInternalError", "none"),
        (errors.BadRequest("path"), Stage.RESOURCE, 401, "PluginInternalError", "path"),
        (errors.RateLimited("slow"), Stage.AUTH, 429, "TooManyRequests", "slow"),
        (errors.RequestTimeout("late"), Stage.ATTEST, 408, "RequestTimeout", "late"),
        (errors.Overloaded("full"), Stage.AUTH, 503, "ServiceUnavailable", "full"),
        (errors.DatabaseUnavailable("db"), Stage.RESOURCE, 503, "ServiceUnavailable", "db"),
        (errors.CollateralUnavailable("kds"), Stage.ATTEST, 503, "ServiceUnavailable", "kds"),
        (errors.InternalError("oops"), Stage.RESOURCE, 500, "InternalError", "oops"),
        (errors.BlobInvalid("blob"), Stage.RESOURCE, 500, "InternalError", "blob"),
    ],
)
def test_error_answers(
    exc: errors.KeybrokerError, stage: Stage, status: int, name: str, detail: str
) -> None:
    answer = error_response(exc, stage)
    assert answer.status_code == status
    assert json.loads(answer.body) == {"type": ERROR_TYPE_PREFIX + name, "detail": detail}
    assert answer.headers["content-type"] == "application/json"
    assert ("retry-after" in answer.headers) == (status in (429, 503))
    challenge = answer.headers.get("www-authenticate")
    if status != 401:
        assert challenge is None
    elif name == "TokenVerifierError":
        assert challenge == 'Bearer realm="keybroker", error="invalid_token"'
    else:
        assert challenge == 'Bearer realm="keybroker"'
