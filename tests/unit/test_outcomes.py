"""Every error class declares the outcome its attestation or release is audited under."""

from __future__ import annotations

import inspect

import pytest

from broker import errors
from broker.api.problem import status_for
from broker.release.service import outcome

DENY, ERROR = "deny", "error"

# Written out class by class, so that a new class, or a changed parent, is a decision that
# shows up here rather than an inherited accident.
OUTCOMES: dict[type[errors.KeybrokerError], str] = {
    errors.KeybrokerError: ERROR,  # never raised itself; an unclassified class answers 500
    errors.BadRequest: DENY,
    errors.RateLimited: DENY,
    errors.RequestTimeout: DENY,
    errors.RequestHeadTooLarge: DENY,
    errors.MethodNotAllowed: DENY,
    errors.EvidenceError: DENY,
    errors.MalformedEvidence: DENY,
    errors.UnsupportedEvidence: DENY,
    errors.SignatureInvalid: DENY,
    errors.ChainInvalid: DENY,
    errors.CertificateExpired: DENY,
    errors.CertificateRevoked: DENY,
    errors.TcbMismatch: DENY,
    errors.VcekChipMismatch: DENY,
    errors.CollateralUnavailable: ERROR,  # could not check: not the evidence's fault
    errors.CollateralExpired: DENY,
    errors.CollateralInvalid: DENY,
    errors.TcbLevelNotFound: DENY,
    errors.QeIdentityMismatch: DENY,
    errors.TcbRevoked: DENY,
    errors.EventLogMismatch: DENY,
    errors.PcrMismatch: DENY,
    errors.RuntimeDataMismatch: DENY,
    errors.BindingMismatch: DENY,
    errors.NonceError: DENY,
    errors.NonceUnknown: DENY,
    errors.NonceExpired: DENY,
    errors.NonceReplayed: DENY,
    errors.TokenInvalid: DENY,
    errors.TokenMissing: DENY,  # no token at all: refused like a bad one
    # Never raised itself: its subclasses keep their other parent's status and outcome.
    errors.Unrecognised: ERROR,
    errors.NonceUnrecognised: DENY,
    errors.TokenUnverified: DENY,
    errors.Forbidden: DENY,
    errors.PolicyDenied: DENY,
    errors.PolicyError: DENY,
    errors.NotFound: DENY,
    errors.KeyNotFound: DENY,
    errors.Conflict: DENY,
    errors.KeyDisabled: DENY,
    errors.KeyPendingDeletion: DENY,
    errors.KeyDestroyed: DENY,
    errors.ExposureRefused: DENY,  # judged: the key's custodian keeps it in the HSM
    errors.KmsUseRefused: DENY,
    errors.CiphertextInvalid: DENY,  # judged: the blob does not authenticate
    errors.IncorrectKey: DENY,
    errors.SignatureRefused: DENY,  # audited in aggregate, as an unverified token
    errors.SignatureIncomplete: DENY,
    errors.AccessKeyUnknown: DENY,
    errors.AccessKeyRevoked: DENY,
    errors.SignatureReplayed: DENY,
    errors.HsmError: ERROR,
    errors.BlobInvalid: ERROR,
    errors.KekNotFound: ERROR,
    errors.PublicKeyInvalid: DENY,  # the tee key the caller sent (400)
    errors.SecretLengthInvalid: DENY,  # the length the caller asked for (400)
    errors.WrappedKeyInvalid: DENY,  # the key material the caller sent (400)
    errors.Unavailable: ERROR,
    errors.DatabaseUnavailable: ERROR,
    errors.HsmUnavailable: ERROR,
    errors.Overloaded: ERROR,
    errors.ConfigurationError: ERROR,  # the broker's own settings or token (500)
    errors.StoredPolicyInvalid: ERROR,
    errors.InternalError: ERROR,
}


def test_the_table_names_every_error_class() -> None:
    declared = {
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.KeybrokerError)
    }
    assert declared == set(OUTCOMES)


@pytest.mark.parametrize(
    ("cls", "expected"), OUTCOMES.items(), ids=lambda v: getattr(v, "__name__", v)
)
def test_each_class_declares_its_outcome(cls: type[errors.KeybrokerError], expected: str) -> None:
    assert cls.outcome == expected
    failure = cls.__new__(cls)  # some take more than a detail; the outcome is the class's
    assert outcome(failure) == expected


def test_no_failure_is_allow() -> None:
    assert outcome(None) == "allow"


@pytest.mark.parametrize("cls", OUTCOMES, ids=lambda cls: cls.__name__)
def test_the_outcome_follows_whose_fault_the_status_says(
    cls: type[errors.KeybrokerError],
) -> None:
    """A 4xx is the caller's fault, judged and refused (deny); a 5xx the broker's (error)."""
    status = status_for(cls.__new__(cls))
    assert cls.outcome == ("error" if status >= 500 else "deny"), status
