"""The errors hsm/ raises on purpose, kept apart from the broker's so that hsm/ stands alone.

Each carries a ``detail`` that names what failed and never holds secret material. The broker
turns each into the class of its own error tree with the same name (``broker/hsmcalls.py``,
where broker code calls into hsm/), which fixes its HTTP status, problem type and audit
outcome.
"""

from __future__ import annotations


class HsmError(Exception):
    """Base of every error hsm/ raises on purpose."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class HsmUnavailable(HsmError):
    """The module, the token or a session cannot serve now, or a key the broker needs is
    missing from the token: nothing can be released (fail closed)."""


class ConfigurationError(HsmError):
    """The module or the token is set up so that the broker must not start: a missing
    module, two tokens under one label, two objects under one of the broker's labels."""


class BlobInvalid(HsmError):
    """A wrapped blob does not unwrap under its KEK: tampered, truncated or wrong KEK."""


class KekNotFound(HsmError):
    """No KEK on the token under the label a blob names (or no KEK at all)."""


class PublicKeyInvalid(HsmError):
    """The tee public key is malformed or not an accepted algorithm and size."""


class SecretLengthInvalid(HsmError):
    """A secret to import or generate is shorter or longer than custody accepts."""


class CiphertextInvalid(HsmError):
    """A KMS ciphertext blob is not of this broker's format or does not authenticate under
    its key with the given encryption context (``hsm/kmsblob.py``)."""


class WrappedKeyInvalid(HsmError):
    """Key material to import does not open under the wrapping key it names: another
    layout, another key, other OAEP parameters, or damaged (``hsm/byok.py``)."""
