"""Bring your own key without plaintext: key material wrapped to an HSM-held RSA key.

The importer asks for a wrapping key (:func:`make_wrapping_key`: RSA-3072, its private half
a token object that only unwraps), wraps its secret to the public half in the layout of
PKCS#11's ``CKM_RSA_AES_KEY_WRAP`` (PKCS#11 v2.40 §2.1.21), which Azure Key Vault and AWS
KMS BYOK use::

    RSA-OAEP(ephemeral AES-256 key) || AES key wrap with padding (RFC 5649)(secret)

and :func:`unwrap_import` opens it inside the token and seals it under a KEK: the secret
never exists in this process. SoftHSM 2.6.1 has no ``CKM_RSA_AES_KEY_WRAP``, so the two
steps run as two ``C_UnwrapKey`` calls in one session, as the mechanism does inside:

1. ``CKM_RSA_PKCS_OAEP`` with the wrapping key's private half, parameters exactly
   ``{hashAlg: CKM_SHA_1, mgf: CKG_MGF1_SHA1, source: CKZ_DATA_SPECIFIED, pSourceData:
   empty}`` (SHA-1 is the only OAEP hash SoftHSM 2.6.1 accepts, and the one
   ``CKM_RSA_AES_KEY_WRAP`` uses in Azure's and AWS's ``RSA_AES_KEY_WRAP_SHA_1``) →
   a session AES-256 key, sensitive, not extractable, usable only to unwrap;
2. ``CKM_AES_KEY_WRAP_PAD`` (RFC 5649) with that key → the secret as a session generic
   secret, sensitive;

then ``CKM_AES_KEY_WRAP_PAD`` under the KEK seals it, and both session objects are
destroyed on every path.

The token does not say how long a sensitive unwrapped secret is (SoftHSM reports
``CKA_VALUE_LEN`` 0), so the importer states it, and the RFC 5649 part's size must agree:
``8 * ceil(length / 8) + 8`` bytes.
"""

from __future__ import annotations

from typing import Any

import pkcs11
from pkcs11 import MGF, Attribute, KeyType, Mechanism, ObjectClass

from hsm.errors import HsmUnavailable, SecretLengthInvalid, WrappedKeyInvalid
from hsm.pubkey import RsaPublicKey

WRAPPING_KEY_BITS = 3072
WRAPPING_KEY_LABEL_PREFIX = "keybroker-import-"
#: The OAEP parameters of step 1, as python-pkcs11 takes them: (hash, MGF, label).
OAEP_SHA1 = (Mechanism.SHA_1, MGF.SHA1, None)
_RSA_PART = WRAPPING_KEY_BITS // 8

_UNWRAP_ONLY_AES = {
    Attribute.TOKEN: False,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.UNWRAP: True,
    Attribute.WRAP: False,
    Attribute.ENCRYPT: False,
    Attribute.DECRYPT: False,
}
# Extractable so that the KEK can wrap it (RFC 5649 needs it so); sensitive, session only.
_IMPORTED_SECRET = {
    Attribute.TOKEN: False,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: True,
}


def wrapping_key_label(key_id: str) -> str:
    return f"{WRAPPING_KEY_LABEL_PREFIX}{key_id}"


def make_wrapping_key(session: pkcs11.Session, key_id: str) -> RsaPublicKey:
    """A new RSA-3072 wrapping key: the private half a token object that only unwraps
    (sensitive, never extractable), the public half returned and left off the token."""
    public, _ = session.generate_keypair(
        KeyType.RSA,
        WRAPPING_KEY_BITS,
        store=True,
        label=wrapping_key_label(key_id),
        public_template={
            Attribute.TOKEN: False,
            Attribute.WRAP: True,
            Attribute.ENCRYPT: False,
            Attribute.VERIFY: False,
        },
        private_template={
            Attribute.PRIVATE: True,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.UNWRAP: True,
            Attribute.DECRYPT: False,
            Attribute.SIGN: False,
            Attribute.DERIVE: False,
        },
    )
    try:
        modulus = int.from_bytes(public[Attribute.MODULUS], "big")
        exponent = int.from_bytes(public[Attribute.PUBLIC_EXPONENT], "big")
    finally:
        public.destroy()
    return RsaPublicKey(modulus, exponent)


def _private_halves(session: pkcs11.Session, key_id: str) -> list[Any]:
    """The token objects holding the wrapping key's private half (one, or none)."""
    template = {
        Attribute.CLASS: ObjectClass.PRIVATE_KEY,
        Attribute.LABEL: wrapping_key_label(key_id),
        Attribute.TOKEN: True,
    }
    return list(session.get_objects(template))


def _private_half(session: pkcs11.Session, key_id: str) -> Any:
    found = _private_halves(session, key_id)
    if not found:
        raise HsmUnavailable(f"the wrapping key {key_id} is missing from the token")
    return found[0]


def destroy_wrapping_key(session: pkcs11.Session, key_id: str) -> bool:
    """Destroy the wrapping key's private half; whether there was one."""
    found = _private_halves(session, key_id)
    for key in found:
        key.destroy()
    return bool(found)


def check_layout(material: bytes, secret_length: int) -> None:
    """:class:`WrappedKeyInvalid` unless ``material`` is an RSA-3072 OAEP block followed
    by an RFC 5649 part of the size a ``secret_length``-byte secret wraps to."""
    kwp = len(material) - _RSA_PART
    expected = 8 * -(-secret_length // 8) + 8
    if kwp != expected:
        raise WrappedKeyInvalid(
            f"wrapped key material is {len(material)} bytes; a {secret_length}-byte secret "
            f"wrapped as CKM_RSA_AES_KEY_WRAP to an RSA-{WRAPPING_KEY_BITS} key is "
            f"{_RSA_PART} + {expected}"
        )


def unwrap_import(
    session: pkcs11.Session, key_id: str, material: bytes, secret_length: int, kek: Any
) -> bytes:
    """The secret wrapped in ``material`` sealed under ``kek`` (RFC 5649), unwrapped inside
    the token in the two steps of this module's docstring."""
    if secret_length < 1:
        raise SecretLengthInvalid(f"secret length {secret_length} is not positive")
    check_layout(material, secret_length)
    private = _private_half(session, key_id)
    try:
        ephemeral = private.unwrap_key(
            ObjectClass.SECRET_KEY,
            KeyType.AES,
            material[:_RSA_PART],
            mechanism=Mechanism.RSA_PKCS_OAEP,
            mechanism_param=OAEP_SHA1,
            template=_UNWRAP_ONLY_AES,
        )
    except pkcs11.exceptions.PKCS11Error as exc:
        raise WrappedKeyInvalid(
            f"the RSA-OAEP part does not unwrap under wrapping key {key_id} "
            f"(OAEP with SHA-1, MGF1-SHA1, empty label; {type(exc).__name__})"
        ) from None
    try:
        try:
            secret = ephemeral.unwrap_key(
                ObjectClass.SECRET_KEY,
                KeyType.GENERIC_SECRET,
                material[_RSA_PART:],
                mechanism=Mechanism.AES_KEY_WRAP_PAD,
                template=_IMPORTED_SECRET,
            )
        except pkcs11.exceptions.PKCS11Error as exc:
            raise WrappedKeyInvalid(
                f"the RFC 5649 part does not unwrap under the AES key of the RSA-OAEP part "
                f"({type(exc).__name__})"
            ) from None
        try:
            blob: bytes = kek.wrap_key(secret, mechanism=Mechanism.AES_KEY_WRAP_PAD)
        finally:
            secret.destroy()
    finally:
        ephemeral.destroy()
    return blob
