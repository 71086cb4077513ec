"""The key that authenticates challenge nonces: a token object, and the key derived from it.

A challenge nonce carries its own expiry and an HMAC over it (``broker/release/nonces.py``),
so the broker issues nonces without writing them anywhere. The MAC key must be the same in
every worker process and every replica that shares the token, and must never sit in the
database. So:

* The token holds a dedicated secret key, ``keybroker-nonce-key-v1``: CKK_GENERIC_SECRET,
  256 bits, made by ``CKM_GENERIC_SECRET_KEY_GEN`` inside the token, whose one permitted
  use is signing (CKA_SIGN; the broker signs with ``CKM_SHA256_HMAC``, PKCS#11 v2.40
  current mechanisms, SHA-256-HMAC, for which the key is a generic secret), SENSITIVE,
  never EXTRACTABLE, PRIVATE (needs the user login), neither copyable nor modifiable; every
  other usage flag false. :func:`ensure_nonce_key` creates it when absent, when
  ``hsm/provision.py`` provisions the token (with the first KEK and the signing key).
* At start each process computes, once, ``HMAC-SHA256(token key, DERIVATION_LABEL)`` with
  ``C_Sign`` (:func:`derive_nonce_mac_key`): 32 bytes, equal in every process on the token,
  kept in memory in a :class:`~hsm.redact.SecretBytes` (redacted ``repr``). The token key
  itself never leaves the HSM; the derived key is what the nonce code uses, about 1 µs per
  HMAC instead of a PKCS#11 call per challenge and per attestation.

The console's session cookies (``broker/admin/sessions.py``) are sealed under a second key
derived the same way under its own label, :data:`CONSOLE_SESSION_LABEL`
(:func:`derive_key`): the same in every process on the token, and unrelated to the nonce
MAC key, so neither use can forge the other's values.

Two objects with the label would give two processes two different keys, and a nonce issued
by one would be refused by the other: :func:`derive_nonce_mac_key` refuses to choose. The
derived key is read once: destroying the token object takes effect at the next start.
"""

from __future__ import annotations

from typing import Any

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

from hsm.errors import ConfigurationError, HsmUnavailable
from hsm.redact import SecretBytes

NONCE_KEY_LABEL = "keybroker-nonce-key-v1"
#: What the token key signs to give the in-memory MAC key; a fixed, versioned label, so the
#: derived key is used for nothing else (and a later format can derive another).
DERIVATION_LABEL = b"keybroker challenge-nonce MAC key v1"
#: What the token key signs to give the console's session-cookie key.
CONSOLE_SESSION_LABEL = b"keybroker console session key v1"
NONCE_KEY_BITS = 256
DERIVED_KEY_BYTES = 32  # SHA-256 output

_NONCE_KEY_TEMPLATE = {
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.SIGN: True,
    Attribute.VERIFY: False,
    Attribute.ENCRYPT: False,
    Attribute.DECRYPT: False,
    Attribute.WRAP: False,
    Attribute.UNWRAP: False,
    Attribute.DERIVE: False,
    Attribute.COPYABLE: False,
    Attribute.MODIFIABLE: False,
}


def nonce_key_objects(session: pkcs11.Session) -> list[Any]:
    """Every token object labelled :data:`NONCE_KEY_LABEL` (session objects never count)."""
    template = {
        Attribute.CLASS: ObjectClass.SECRET_KEY,
        Attribute.LABEL: NONCE_KEY_LABEL,
        Attribute.TOKEN: True,
    }
    return list(session.get_objects(template))


def ensure_nonce_key(session: pkcs11.Session) -> None:
    """Create the nonce key on the token unless one exists."""
    if nonce_key_objects(session):
        return
    session.generate_key(
        KeyType.GENERIC_SECRET,
        NONCE_KEY_BITS,
        label=NONCE_KEY_LABEL,
        store=True,
        mechanism=Mechanism.GENERIC_SECRET_KEY_GEN,
        template=_NONCE_KEY_TEMPLATE,
    )


def derive_nonce_mac_key(session: pkcs11.Session) -> SecretBytes:
    """``HMAC-SHA256(nonce key, DERIVATION_LABEL)``, computed inside the token."""
    return derive_key(session, DERIVATION_LABEL)


def derive_key(session: pkcs11.Session, label: bytes) -> SecretBytes:
    """``HMAC-SHA256(nonce key, label)``, computed inside the token: one 32-byte key per
    label, equal in every process on the token."""
    found = nonce_key_objects(session)
    if not found:
        raise HsmUnavailable(f"the nonce key '{NONCE_KEY_LABEL}' is missing from the token")
    if len(found) > 1:
        raise ConfigurationError(
            f"the token holds {len(found)} objects labelled '{NONCE_KEY_LABEL}', 1 wanted: "
            "processes could derive different nonce keys, so the broker refuses to start; "
            "destroy all but one (any one: only nonces of the last few minutes depend on it)"
        )
    derived: bytes = found[0].sign(label, mechanism=Mechanism.SHA256_HMAC)
    if len(derived) != DERIVED_KEY_BYTES:
        raise HsmUnavailable(
            f"CKM_SHA256_HMAC returned {len(derived)} bytes, {DERIVED_KEY_BYTES} wanted"
        )
    return SecretBytes(derived)
