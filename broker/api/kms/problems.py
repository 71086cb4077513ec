"""KMS errors as the AWS SDKs read them: ``{"__type": <exception name>, "message": ...}``.

The SDKs raise a typed exception from ``__type`` (boto3: ``kms.exceptions.NotFoundException``
and the like, for every name the service model declares; a ``ClientError`` with that code for
the others). AWS answers client errors with HTTP 400 and its own failures with 500; keybroker
does the same, and answers 503 ``DependencyTimeoutException`` when its database or HSM cannot
serve (the SDKs retry 5xx answers). The message is keybroker's error detail, which never
carries secret material.
"""

from __future__ import annotations

from starlette.responses import JSONResponse

from broker import errors
from broker.api.kms.wire import UnknownOperation

#: By keybroker error class, most specific first through the MRO.
NAMES: dict[type[errors.KeybrokerError], str] = {
    UnknownOperation: "UnknownOperationException",
    errors.BadRequest: "ValidationException",
    errors.PublicKeyInvalid: "ValidationException",
    errors.SecretLengthInvalid: "ValidationException",
    errors.SignatureIncomplete: "IncompleteSignatureException",
    errors.AccessKeyUnknown: "UnrecognizedClientException",
    errors.AccessKeyRevoked: "UnrecognizedClientException",
    errors.SignatureRefused: "InvalidSignatureException",
    errors.SignatureReplayed: "InvalidSignatureException",
    errors.KeyNotFound: "NotFoundException",
    errors.NotFound: "NotFoundException",
    errors.KeyPendingDeletion: "KMSInvalidStateException",
    errors.KeyDestroyed: "NotFoundException",
    errors.KeyDisabled: "DisabledException",
    errors.CiphertextInvalid: "InvalidCiphertextException",
    errors.IncorrectKey: "IncorrectKeyException",
    errors.PolicyDenied: "AccessDeniedException",
    errors.KmsUseRefused: "AccessDeniedException",
    errors.ExposureRefused: "AccessDeniedException",
    errors.EvidenceError: "AccessDeniedException",
    errors.NonceError: "AccessDeniedException",
    errors.RateLimited: "ThrottlingException",
    errors.CollateralUnavailable: "DependencyTimeoutException",
    errors.Unavailable: "DependencyTimeoutException",
}
INTERNAL = "KMSInternalException"
UNAVAILABLE = "DependencyTimeoutException"


def name_of(exc: errors.KeybrokerError) -> str:
    for cls in type(exc).__mro__:
        if cls in NAMES:
            return NAMES[cls]
    return INTERNAL


def error_response(exc: errors.KeybrokerError, request_id: str | None) -> JSONResponse:
    name = name_of(exc)
    status = {INTERNAL: 500, UNAVAILABLE: 503}.get(name, 400)
    headers = {"x-amzn-RequestId": request_id} if request_id else {}
    return JSONResponse(
        {"__type": name, "message": exc.detail},
        status_code=status,
        headers=headers,
        media_type="application/x-amz-json-1.1",
    )
