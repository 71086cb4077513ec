"""Where broker code calls into hsm/: hsm's errors become the broker's.

hsm/ imports nothing of broker/ and raises its own errors (``hsm/errors.py``). Every call
from the broker that can raise one runs inside :func:`hsm_errors`, which raises the broker
error of the same name in its place, with the original as its cause. So an HSM failure has
the HTTP status and problem type (``broker/api/problem.py``) and the audit outcome
(``broker/release/service.py``) of the broker's own class, as if hsm/ had raised it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any

from broker import errors
from hsm import errors as hsm
from hsm.jwe import Recipient, recipient
from hsm.pubkey import RsaPublicKey, from_jwk

#: hsm's error classes and the broker's each becomes. Every class of ``hsm/errors.py`` is
#: here (a test holds it so); one that were not would become a plain ``HsmError`` (500).
BROKER_ERROR: Mapping[type[hsm.HsmError], type[errors.KeybrokerError]] = {
    hsm.HsmUnavailable: errors.HsmUnavailable,
    hsm.ConfigurationError: errors.ConfigurationError,
    hsm.BlobInvalid: errors.BlobInvalid,
    hsm.KekNotFound: errors.KekNotFound,
    hsm.PublicKeyInvalid: errors.PublicKeyInvalid,
    hsm.SecretLengthInvalid: errors.SecretLengthInvalid,
    hsm.CiphertextInvalid: errors.CiphertextInvalid,
    hsm.WrappedKeyInvalid: errors.WrappedKeyInvalid,
}


def broker_error(exc: hsm.HsmError) -> errors.KeybrokerError:
    """The broker's error for ``exc``, with its detail."""
    return BROKER_ERROR.get(type(exc), errors.HsmError)(exc.detail)


class _HsmErrors:
    """What :func:`hsm_errors` returns: one stateless object, so a release's calls into the
    token pay no more than two method calls for it."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(exc, hsm.HsmError):
            raise broker_error(exc) from exc


_HSM_ERRORS = _HsmErrors()


def hsm_errors() -> _HsmErrors:
    """``with hsm_errors(): ...``: an hsm error raised inside leaves as the broker's."""
    return _HSM_ERRORS


def tee_key_from_jwk(jwk: Mapping[str, Any]) -> RsaPublicKey:
    """The tee public key a JWK describes (``hsm.pubkey.from_jwk``); ``PublicKeyInvalid``."""
    with hsm_errors():
        return from_jwk(jwk)


def kbs_recipient(jwk: Any) -> Recipient:
    """The recipient of a KBS ``tee-pubkey`` (``hsm.jwe.recipient``); ``PublicKeyInvalid``."""
    with hsm_errors():
        return recipient(jwk)
