"""The one error tree of keybroker.

Every failure the broker can report is a subclass of :class:`KeybrokerError` with a stable
``type`` string in kebab-case (lowercase words joined by ``-``, as the problem type URIs of
RFC 7807 and most web APIs are spelt). ``broker/api/problem.py`` maps each class to an HTTP
status and an RFC 7807 problem type in one table; the offline CLI prints ``type`` verbatim.
Messages name the spec field and give the found and wanted values, and never carry secret
material.

"Could not check" (:class:`CollateralUnavailable`, :class:`Unavailable`) is kept apart from
"checked and bad" (every other :class:`EvidenceError`), because the first is worth retrying
and the second is not.

Each class also declares the ``outcome`` an attestation or a release that ends in it is
audited and counted under: ``deny`` when the request was judged and refused, ``error`` when
it could not be judged or served (infrastructure, collateral, HSM, the broker's own
configuration, stored policies or code). A subclass inherits its parent's. The two follow
the HTTP status (``broker/api/problem.py``): the caller's fault (4xx) is ``deny``, the
broker's (5xx) is ``error``, which ``tests/unit/test_outcomes.py`` holds for every class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

#: The decision an audit record and the decision metrics carry.
Outcome = Literal["allow", "deny", "error"]
#: The outcome of a request that ends in an error.
FailureOutcome = Literal["deny", "error"]


class KeybrokerError(Exception):
    """Base of every error keybroker raises on purpose."""

    type: ClassVar[str] = "error"
    #: ``error`` unless a class says the caller is at fault: a class the problem table does
    #: not name answers 500, the broker's fault.
    outcome: ClassVar[FailureOutcome] = "error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def extra(self) -> dict[str, Any]:
        """Additional, non-secret members for the problem document."""
        return {}


#: The package release from which the former spellings below are no longer written.
FORMER_TYPES_REMOVED_IN = "0.3.0"

#: The types whose spelling changed from snake_case to kebab-case, each with its former
#: spelling. Until :data:`FORMER_TYPES_REMOVED_IN`, a problem document or a CLI error of
#: one of these types carries its former spelling too, as ``deprecated_type``, for clients
#: that matched on it (docs/api.md, "Former problem types"). Audit records keep the spelling
#: they were written with: records from before the change hold the former one.
FORMER_TYPES: Mapping[str, str] = {
    "evidence-error": "evidence_error",
    "signature-invalid": "signature_invalid",
    "chain-invalid": "chain_invalid",
    "certificate-expired": "certificate_expired",
    "certificate-revoked": "certificate_revoked",
    "tcb-mismatch": "tcb_mismatch",
    "collateral-unavailable": "collateral_unavailable",
    "collateral-expired": "collateral_expired",
    "collateral-invalid": "collateral_invalid",
    "tcb-level-not-found": "tcb_level_not_found",
    "qe-identity-mismatch": "qe_identity_mismatch",
    "tcb-revoked": "tcb_revoked",
    "event-log-mismatch": "event_log_mismatch",
    "binding-mismatch": "binding_mismatch",
}


# --- Request problems -----------------------------------------------------------------------


class BadRequest(KeybrokerError):
    """The request is malformed: wrong JSON, missing member, wrong encoding."""

    type = "malformed-request"
    outcome = "deny"


class RateLimited(KeybrokerError):
    type = "rate-limited"
    outcome = "deny"


class RequestTimeout(KeybrokerError):
    """A request's head or body did not arrive within its deadline (the connection closes)."""

    type = "request-timeout"
    outcome = "deny"


class RequestHeadTooLarge(KeybrokerError):
    """A request line and headers longer than ``max_request_head_bytes``."""

    type = "request-head-too-large"
    outcome = "deny"


class MethodNotAllowed(KeybrokerError):
    """The path exists, the method does not (the answer names the one allowed)."""

    type = "method-not-allowed"
    outcome = "deny"


# --- Evidence verification (ARCHITECTURE §8.3) ---------------------------------------------


class EvidenceError(KeybrokerError):
    """Evidence was checked and is not acceptable, or could not be checked."""

    type = "evidence-error"
    outcome: ClassVar[FailureOutcome] = "deny"  # CollateralUnavailable is error


class MalformedEvidence(EvidenceError):
    """The bytes do not parse as the format claims (truncated, oversized, bad field)."""

    type = "malformed"


class UnsupportedEvidence(EvidenceError):
    """Well-formed, but a version, algorithm or product this broker does not verify."""

    type = "unsupported"


class SignatureInvalid(EvidenceError):
    type = "signature-invalid"


class ChainInvalid(EvidenceError):
    """A certificate chain does not lead to a pinned root, or a link's signature is bad."""

    type = "chain-invalid"


class CertificateExpired(EvidenceError):
    """A certificate is outside its validity window at the verification instant."""

    type = "certificate-expired"


class CertificateRevoked(EvidenceError):
    type = "certificate-revoked"


class TcbMismatch(EvidenceError):
    """The TCB the evidence reports does not match its endorsement (VCEK extensions, PCK)."""

    type = "tcb-mismatch"


class VcekChipMismatch(TcbMismatch):
    """The VCEK was issued for another chip than the one that signed the report: its hwID is
    not the report's CHIP_ID (the VCEK of the wrong machine, or of a VLEK-signed guest)."""

    type = "vcek-chip-mismatch"


class CollateralUnavailable(EvidenceError):
    """The endorsement or collateral needed to check the evidence could not be obtained."""

    type = "collateral-unavailable"
    outcome = "error"


class CollateralExpired(EvidenceError):
    """Collateral (TCB Info, QE Identity, CRL) is outside its issueDate/thisUpdate..nextUpdate
    window at the instant: past its nextUpdate, or issued after it."""

    type = "collateral-expired"


class CollateralInvalid(EvidenceError):
    """Collateral is badly signed or malformed."""

    type = "collateral-invalid"


class TcbLevelNotFound(EvidenceError):
    type = "tcb-level-not-found"


class QeIdentityMismatch(EvidenceError):
    type = "qe-identity-mismatch"


class TcbRevoked(EvidenceError):
    """The TCB appraisal (Intel TCB Info / QE Identity) ended in status Revoked."""

    type = "tcb-revoked"


class EventLogMismatch(EvidenceError):
    """A measurement event log does not replay to the registers the evidence signs."""

    type = "event-log-mismatch"


class PcrMismatch(EvidenceError):
    """The PCR values given do not hash to the pcrDigest a TPM quote signs."""

    type = "pcr-mismatch"


class RuntimeDataMismatch(EvidenceError):
    """A paravisor's runtime data is not what the hardware report vouches for: REPORT_DATA
    is not its hash, the report was not made at VMPL 0, or the HCL report and the TD quote
    answer different requests."""

    type = "runtime-data-mismatch"


class BindingMismatch(EvidenceError):
    """The evidence does not bind the challenge nonce and the tee public key."""

    type = "binding-mismatch"


# --- Challenge, token and policy ------------------------------------------------------------


class NonceError(KeybrokerError):
    type = "nonce"
    outcome = "deny"


class NonceUnknown(NonceError):
    type = "nonce-unknown"


class NonceExpired(NonceError):
    type = "nonce-expired"


class NonceReplayed(NonceError):
    type = "nonce-replayed"


class TokenInvalid(KeybrokerError):
    """A bearer token is missing, badly signed, expired or not meant for this use."""

    type = "token-invalid"
    outcome = "deny"


class TokenMissing(TokenInvalid):
    """No bearer token was presented at all. Same problem type as :class:`TokenInvalid`;
    the HTTP challenge differs (RFC 6750 §3.1: no error code when no token was sent)."""


# --- Requests in which nothing the broker issued was recognised -----------------------------

#: Why such a request was refused: a metric label and a count in the aggregate audit record
#: (docs/operations.md, "Unauthenticated requests"). A fixed few, so neither can grow.
UnrecognisedReason = Literal[
    "nonce-malformed",
    "nonce-mac",
    "token-malformed",
    "token-key",
    "token-signature",
    "sigv4-malformed",
    "sigv4-key",
    "sigv4-signature",
]


class Unrecognised(KeybrokerError):
    """Refused before anything the broker issued was recognised in the request: a nonce
    whose MAC was not verified, a token whose signature was not. Anyone can send such a
    request at no cost, so it is counted, logged at a bounded rate and audited in aggregate
    per source address and minute (``broker/release/unauthenticated.py``), never one record
    each. Only its subclasses are raised; they keep their parents' problem types."""

    def __init__(self, detail: str, reason: UnrecognisedReason) -> None:
        super().__init__(detail)
        self.reason: UnrecognisedReason = reason


class NonceUnrecognised(NonceUnknown, Unrecognised):
    """Not a nonce this broker issued for this tee: not 32 bytes of standard base64, another
    format version, or a MAC that does not verify (``broker/release/nonces.py``)."""


class TokenUnverified(TokenInvalid, Unrecognised):
    """A token whose signature was never verified: not a compact JWS with this broker's
    header, signed by another key, or a signature that does not verify (``broker/jose.py``)."""


class SignatureRefused(Unrecognised):
    """A KMS request whose SigV4 signature was not verified: wrong, stale, badly formed, or
    by an access key the broker never issued. Counted and audited in aggregate, as a token
    whose signature does not verify."""

    type = "signature-refused"
    outcome = "deny"

    def __init__(self, detail: str, reason: UnrecognisedReason = "sigv4-signature") -> None:
        super().__init__(detail, reason)


class SignatureIncomplete(SignatureRefused):
    """The request carries no SigV4 ``Authorization`` or lacks a part the signature needs."""

    type = "signature-incomplete"

    def __init__(self, detail: str, reason: UnrecognisedReason = "sigv4-malformed") -> None:
        super().__init__(detail, reason)


class AccessKeyUnknown(SignatureRefused):
    """The access key id of a signed request is not one this broker issued."""

    type = "access-key-unknown"

    def __init__(self, detail: str, reason: UnrecognisedReason = "sigv4-key") -> None:
        super().__init__(detail, reason)


class Forbidden(KeybrokerError):
    """An authenticated caller lacks the role an operation needs."""

    type = "forbidden"
    outcome = "deny"


class PolicyDenied(KeybrokerError):
    """The release policy evaluated to deny; ``reasons`` lists every failed clause."""

    type = "policy-denied"
    outcome = "deny"

    def __init__(self, detail: str, reasons: list[dict[str, Any]]) -> None:
        super().__init__(detail)
        self.reasons = reasons

    def extra(self) -> dict[str, Any]:
        return {"reasons": self.reasons}


class PolicyError(KeybrokerError):
    """A policy document is invalid (schema, unknown key, bad reference).

    ``problems`` lists every problem found at once, each ``{"file", "line", "column",
    "path", "message"}`` (``line``/``column`` 1-based or None, ``path`` a JSONPath such as
    ``$.admit.snp.minimum_tcb.bootloader``), so an author can fix them in one pass.
    """

    type = "policy-invalid"
    outcome = "deny"

    def __init__(self, detail: str, problems: Sequence[Mapping[str, Any]] = ()) -> None:
        super().__init__(detail)
        self.problems = [dict(problem) for problem in problems]

    def extra(self) -> dict[str, Any]:
        return {"problems": self.problems} if self.problems else {}


class NotFound(KeybrokerError):
    type = "not-found"
    outcome = "deny"


class KeyNotFound(NotFound):
    type = "key-not-found"


class Conflict(KeybrokerError):
    type = "conflict"
    outcome = "deny"


class KeyDisabled(KeybrokerError):
    type = "key-disabled"
    outcome = "deny"


class KeyPendingDeletion(KeyDisabled):
    """The key is scheduled for destruction (docs/operations.md, "Deleting a key"): refused
    as a disabled key is, under the same problem type; the KMS endpoint names the state as
    AWS KMS does (``KMSInvalidStateException``)."""


class KeyDestroyed(KeyDisabled):
    """The key's sealed blobs were destroyed: nothing can ever unwrap it again. Refused as a
    disabled key is; over KMS it no longer exists (``NotFoundException``), as for AWS KMS."""


class ExposureRefused(KeybrokerError):
    """The release would put the key's secret where its exposure setting forbids: a KBS
    (JWE) answer for a key that is ``hsm-only`` (``hsm/jwe.py``)."""

    type = "exposure-refused"
    outcome = "deny"


class KmsUseRefused(KeybrokerError):
    """The key's bound policy does not let this KMS request use it: no ``kms`` member, an
    access key it does not name, or plaintext to a caller it did not attest
    (docs/kms.md)."""

    type = "kms-use-refused"
    outcome = "deny"


class CiphertextInvalid(KeybrokerError):
    """A KMS ciphertext blob is not one of this broker's, names another key, or does not
    authenticate under its key with the given encryption context."""

    type = "ciphertext-invalid"
    outcome = "deny"


class IncorrectKey(KeybrokerError):
    """A KMS ``Decrypt`` named a key other than the one its ciphertext was made with."""

    type = "incorrect-key"
    outcome = "deny"


# --- KMS request authentication (AWS Signature Version 4) -----------------------------------


class AccessKeyRevoked(KeybrokerError):
    """A correctly signed KMS request whose access key was revoked (audited alone: the
    signature proves who signed it)."""

    type = "access-key-revoked"
    outcome = "deny"


class SignatureReplayed(KeybrokerError):
    """A correctly signed KMS request whose signature was accepted before, within the
    clock-skew window (audited alone)."""

    type = "signature-replayed"
    outcome = "deny"


# --- HSM custody ----------------------------------------------------------------------------


class HsmError(KeybrokerError):
    """A PKCS#11 operation failed: the token refused a stored object (a blob that does not
    unwrap, a KEK that is gone) or the operation itself. The subclasses that reject what a
    caller sent (a tee key, a secret length) are ``deny`` like any other bad request."""

    type = "hsm-error"


class BlobInvalid(HsmError):
    """A wrapped blob does not unwrap under its KEK: tampered, truncated or wrong KEK."""

    type = "blob-invalid"


class KekNotFound(HsmError):
    type = "kek-not-found"


class PublicKeyInvalid(HsmError):
    """The tee public key is malformed or not an accepted algorithm and size."""

    type = "public-key-invalid"
    outcome = "deny"  # what the caller sent (400)


class SecretLengthInvalid(HsmError):
    """A secret to import or generate is shorter or longer than a key may be."""

    type = "secret-length-invalid"
    outcome = "deny"  # what the caller asked for (400)


class WrappedKeyInvalid(HsmError):
    """Key material to import (BYOK) does not open under the wrapping key it names."""

    type = "wrapped-key-invalid"
    outcome = "deny"  # what the caller sent (400)


# --- Infrastructure (fail closed: 503) ------------------------------------------------------


class Unavailable(KeybrokerError):
    type = "unavailable"


class DatabaseUnavailable(Unavailable):
    type = "database-unavailable"


class HsmUnavailable(Unavailable):
    type = "hsm-unavailable"


class Overloaded(Unavailable):
    """A worker holds as many connections, or as many request body bytes, as its settings
    allow: the request is refused before it costs more (worth retrying)."""

    type = "overloaded"


class ConfigurationError(KeybrokerError):
    """The broker's own settings, files or token are not usable: its fault (500), never the
    caller's."""

    type = "configuration"


class StoredPolicyInvalid(KeybrokerError):
    """A policy read back from the database no longer matches its recorded digest, or does
    not load: server-side corruption or tampering, never the caller's fault."""

    type = "stored-policy-invalid"


class InternalError(KeybrokerError):
    """An unexpected failure; the detail points at the log, never at internals."""

    type = "internal"
