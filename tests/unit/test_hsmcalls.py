"""Where the broker calls into hsm/, hsm's errors become the broker's errors of the same
name: each keeps the HTTP status, problem type and audit outcome it had when hsm/ raised the
broker's classes itself."""

from __future__ import annotations

import pytest

from broker import errors
from broker.api.problem import PROBLEM_BASE, problem_document
from broker.hsmcalls import BROKER_ERROR, broker_error, hsm_errors, tee_key_from_jwk
from broker.release.service import outcome
from hsm import errors as hsm


def _descendants(cls: type[hsm.HsmError]) -> set[type[hsm.HsmError]]:
    """The classes ``hsm/errors.py`` derives from ``cls`` (a test's own subclass is not one)."""
    found = set()
    for sub in cls.__subclasses__():
        if sub.__module__ == hsm.__name__:
            found |= {sub, *_descendants(sub)}
    return found


def test_every_hsm_error_has_its_broker_error() -> None:
    assert set(BROKER_ERROR) == _descendants(hsm.HsmError)
    for source, target in BROKER_ERROR.items():
        assert target is getattr(errors, source.__name__)


@pytest.mark.parametrize(
    ("raised", "problem_type", "status"),
    [
        (hsm.HsmUnavailable, "hsm-unavailable", 503),
        (hsm.ConfigurationError, "configuration", 500),
        (hsm.BlobInvalid, "blob-invalid", 500),
        (hsm.KekNotFound, "kek-not-found", 500),
        (hsm.PublicKeyInvalid, "public-key-invalid", 400),
        (hsm.SecretLengthInvalid, "secret-length-invalid", 400),
        (hsm.WrappedKeyInvalid, "wrapped-key-invalid", 400),
    ],
)
def test_an_hsm_error_answers_as_before(
    raised: type[hsm.HsmError], problem_type: str, status: int
) -> None:
    with pytest.raises(errors.KeybrokerError) as caught, hsm_errors():
        raise raised("what failed")
    assert type(caught.value) is BROKER_ERROR[raised]
    assert isinstance(caught.value.__cause__, raised)
    document = problem_document(caught.value, None)
    assert (document["type"], document["status"], document["detail"]) == (
        PROBLEM_BASE + problem_type,
        status,
        "what failed",
    )


@pytest.mark.parametrize(
    ("raised", "audited"),
    [
        (hsm.HsmUnavailable, "error"),
        (hsm.ConfigurationError, "error"),
        (hsm.BlobInvalid, "error"),
        (hsm.KekNotFound, "error"),
        # What the caller sent (400): judged and refused (docs/architecture.md §9).
        (hsm.PublicKeyInvalid, "deny"),
        (hsm.SecretLengthInvalid, "deny"),
        (hsm.WrappedKeyInvalid, "deny"),
    ],
)
def test_an_hsm_failure_in_a_release_is_audited_by_whose_fault_it_is(
    raised: type[hsm.HsmError], audited: str
) -> None:
    assert outcome(broker_error(raised("x"))) == audited


def test_other_exceptions_pass_unchanged() -> None:
    with pytest.raises(ValueError, match=r"^not an hsm error$"), hsm_errors():
        raise ValueError("not an hsm error")
    with pytest.raises(errors.HsmUnavailable, match=r"^already the broker's$"), hsm_errors():
        raise errors.HsmUnavailable("already the broker's")


def test_an_unlisted_hsm_error_is_a_plain_hsm_error() -> None:
    class Unlisted(hsm.HsmError):
        pass

    mapped = broker_error(Unlisted("new"))
    assert type(mapped) is errors.HsmError
    assert mapped.detail == "new"


def test_a_bad_tee_key_is_the_brokers_public_key_invalid() -> None:
    with pytest.raises(errors.PublicKeyInvalid, match=r"^JWK kty 'EC' != 'RSA'$"):
        tee_key_from_jwk({"kty": "EC"})
