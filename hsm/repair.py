"""Repair a token left with two objects under one of the broker's labels.

Brokers before serialised provisioning could leave them when replicas started together on a
fresh token (each found the first KEK, the signing key pair or the nonce key absent and
made its own); every broker then refuses the token (``provision._refuse_duplicates``).
:func:`plan` decides which object of each label to keep and :func:`apply` destroys the
others; ``keybroker token repair`` runs both under the database's lock on the token's
objects, with every broker stopped.

What is kept, per label:

* a KEK: the one that unwraps every key version the database holds under that label (each
  blob is unwrapped into a session object, then destroyed); when none is held, the one a
  broker's lookup finds first. When no single KEK unwraps them all, nothing is planned and
  the repair refuses: such a token needs the blobs' owner, not a guess.
* the signing key pair: the private key a broker's lookup finds first, and the public key
  that verifies its signature. Tokens and envelopes signed by a destroyed key stop
  verifying: guests attest again (tokens live minutes).
* the nonce key: the one found first. Nonces issued under another are refused as unknown:
  guests ask again.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pkcs11
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from cryptography.hazmat.primitives.hashes import SHA256
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

from hsm.errors import ConfigurationError
from hsm.noncekey import NONCE_KEY_LABEL
from hsm.provision import KEK_LABEL, SIGNING_KEY_LABEL, p256_public_key

_PROBE = hashlib.sha256(b"keybroker token repair: which public key is this key's").digest()


@dataclass(frozen=True, slots=True)
class Duplicate:
    """One label naming several token objects of one class: the one kept, the others."""

    label: str
    object_class: str
    kept: Any
    destroyed: tuple[Any, ...]
    why: str

    def describe(self) -> str:
        return (
            f"{self.object_class} '{self.label}': {len(self.destroyed) + 1} objects; keeping "
            f"one ({self.why}), destroying {len(self.destroyed)}"
        )


def plan(session: pkcs11.Session, blobs: Mapping[str, Sequence[bytes]]) -> list[Duplicate]:
    """What to keep and destroy for every doubled label; ``blobs`` are the wrapped key
    versions the database holds, by KEK label. ``ConfigurationError`` when a doubled KEK
    label has no one object that unwraps all of its blobs."""
    groups: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for obj in session.get_objects({Attribute.TOKEN: True}):
        label = obj[Attribute.LABEL] or ""
        if label in (SIGNING_KEY_LABEL, NONCE_KEY_LABEL) or KEK_LABEL.fullmatch(label):
            groups[(label, ObjectClass(obj[Attribute.CLASS]).name)].append(obj)
    planned = []
    for (label, object_class), objects in sorted(groups.items()):
        if len(objects) < 2 or object_class == "PUBLIC_KEY":  # public keys go with theirs
            continue
        if KEK_LABEL.fullmatch(label):
            kept, why = _kek_to_keep(session, label, objects, blobs.get(label, ()))
        else:
            kept, why = objects[0], "the one a broker finds first"
        planned.append(
            Duplicate(label, object_class, kept, tuple(o for o in objects if o != kept), why)
        )
        if label == SIGNING_KEY_LABEL:
            planned.extend(_public_keys(groups.get((label, "PUBLIC_KEY"), []), kept))
    return planned


def apply(planned: Sequence[Duplicate]) -> None:
    """Destroy every object ``planned`` does not keep."""
    for duplicate in planned:
        for obj in duplicate.destroyed:
            obj.destroy()


def _kek_to_keep(
    session: pkcs11.Session, label: str, keks: list[Any], blobs: Sequence[bytes]
) -> tuple[Any, str]:
    if not blobs:
        return keks[0], "no key version is wrapped under it: the one a broker finds first"
    for kek in keks:
        if all(_unwraps(kek, blob) for blob in blobs):
            return kek, f"it unwraps all {len(blobs)} key versions wrapped under {label}"
    raise ConfigurationError(
        f"no one of the {len(keks)} KEKs labelled '{label}' unwraps all {len(blobs)} key "
        "versions the database holds under it: nothing was destroyed"
    )


def _unwraps(kek: Any, blob: bytes) -> bool:
    try:
        secret = kek.unwrap_key(
            ObjectClass.SECRET_KEY,
            KeyType.GENERIC_SECRET,
            blob,
            mechanism=Mechanism.AES_KEY_WRAP_PAD,
            template={Attribute.TOKEN: False, Attribute.SENSITIVE: True},
        )
    except pkcs11.exceptions.PKCS11Error:
        return False
    secret.destroy()
    return True


def _public_keys(publics: list[Any], private: Any) -> list[Duplicate]:
    """The public keys of the signing label: keep the one that verifies ``private``'s
    signature, destroy the rest (none to plan when there is one)."""
    if len(publics) < 2:
        return []
    signature = private.sign(_PROBE, mechanism=Mechanism.ECDSA)
    half = len(signature) // 2
    der = encode_dss_signature(
        int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
    )
    for public in publics:
        if _verifies(public, der):
            rest = tuple(p for p in publics if p != public)
            return [Duplicate(SIGNING_KEY_LABEL, "PUBLIC_KEY", public, rest, "the kept key's")]
    raise ConfigurationError(
        f"no public key labelled '{SIGNING_KEY_LABEL}' verifies the kept private key's "
        "signature: nothing was destroyed"
    )


def _verifies(public: Any, der_signature: bytes) -> bool:
    try:
        p256_public_key(public).verify(der_signature, _PROBE, ec.ECDSA(Prehashed(SHA256())))
    except InvalidSignature:
        return False
    return True
