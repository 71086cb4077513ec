"""The broker's objects on its token: their labels, how each is made, and the one-off
provisioning that makes the first of each.

A token serving the broker holds, under fixed labels:

* KEKs ``keybroker-kek-v<N>``: AES-256, sensitive, never extractable, usable only to wrap
  and unwrap. The first is made here; rotation (``Custody.rotate_kek``) adds the next.
* The signing key pair ``keybroker-signing``: EC P-256, whose private half only signs.
* The nonce key ``keybroker-nonce-key-v1`` (``hsm/noncekey.py``, which makes it).

:func:`provision` creates whichever of the first KEK, the signing key pair and the nonce key
is absent, then refuses a token that holds two objects under one of these labels: processes
could then pick different keys. Processes starting together on a fresh token would race to
create them, so ``keybroker serve --workers N`` provisions the token once before it starts
its workers, and every broker provisions under the database's lock on the token's objects
(``broker/runtime.py``); ``hsm/repair.py`` repairs a token an older version left doubled.

Lookups find token objects only (CKA_TOKEN true): no session object, such as a key copy
(``hsm/keycopies.py``), can stand in for one of these keys.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pkcs11
from cryptography.hazmat.primitives.asymmetric import ec
from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11.util.ec import encode_named_curve_parameters

from hsm.errors import ConfigurationError
from hsm.noncekey import NONCE_KEY_LABEL, ensure_nonce_key

KEK_LABEL_PREFIX = "keybroker-kek-v"
# Matched with fullmatch and ASCII digits: "$" would admit "keybroker-kek-v1\n", and \d other
# scripts' digits, which int() reads (an Arabic-Indic "keybroker-kek-v\u0661" would be 1).
KEK_LABEL = re.compile(r"keybroker-kek-v([0-9]+)")
SIGNING_KEY_LABEL = "keybroker-signing"


def kek_label(version: int) -> str:
    return f"{KEK_LABEL_PREFIX}{version}"


def find_one(session: pkcs11.Session, object_class: ObjectClass, label: str) -> Any | None:
    """The token object of this class and label: never a session object (a key copy, or
    any other object this process made in a session, cannot stand in for a token key)."""
    template = {Attribute.CLASS: object_class, Attribute.LABEL: label, Attribute.TOKEN: True}
    found = list(session.get_objects(template))
    return found[0] if found else None


def p256_public_key(public: Any) -> ec.EllipticCurvePublicKey:
    """The P-256 public key of the token object ``public`` (the signing key's public half)."""
    point: bytes = public[Attribute.EC_POINT]
    # CKA_EC_POINT is a DER OCTET STRING around the X9.62 uncompressed point (PKCS#11 v2.40
    # §2.3.3); for P-256 the point is 65 bytes, so the header is the two bytes 04 41.
    if len(point) == 67 and point[:2] == b"\x04\x41":
        point = point[2:]
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)


def kek_versions(session: pkcs11.Session) -> list[int]:
    """The versions of the KEKs on the token, in ascending order."""
    versions = []
    for key in session.get_objects(
        {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.TOKEN: True}
    ):
        match = KEK_LABEL.fullmatch(key[Attribute.LABEL] or "")
        if match:
            versions.append(int(match.group(1)))
    return sorted(versions)


def provision(session: pkcs11.Session) -> None:
    """Create the first KEK, the signing key pair and the nonce key where absent; refuse a
    token with two objects under one of their labels."""
    if not kek_versions(session):
        generate_kek(session, 1)
    if find_one(session, ObjectClass.PRIVATE_KEY, SIGNING_KEY_LABEL) is None:
        _generate_signing_key(session)
    ensure_nonce_key(session)
    _refuse_duplicates(session)


def generate_kek(session: pkcs11.Session, version: int) -> None:
    """Make the token KEK ``keybroker-kek-v<version>``."""
    session.generate_key(
        KeyType.AES,
        256,
        label=kek_label(version),
        store=True,
        template={
            Attribute.PRIVATE: True,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.WRAP: True,
            Attribute.UNWRAP: True,
            Attribute.ENCRYPT: False,
            Attribute.DECRYPT: False,
            Attribute.SIGN: False,
            Attribute.VERIFY: False,
            Attribute.DERIVE: False,
        },
    )


def _generate_signing_key(session: pkcs11.Session) -> None:
    parameters = session.create_domain_parameters(
        KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True
    )
    parameters.generate_keypair(
        store=True,
        label=SIGNING_KEY_LABEL,
        public_template={Attribute.VERIFY: True},
        private_template={
            Attribute.SIGN: True,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.PRIVATE: True,
            Attribute.DERIVE: False,
        },
    )


def _refuse_duplicates(session: pkcs11.Session) -> None:
    """Raise unless each of the broker's labels names at most one token object of a class:
    with two signing keys, KEKs or nonce keys under one label, processes on the token could
    each pick another (tokens that do not verify, secrets sealed under a KEK another process
    cannot find, nonces refused)."""
    seen: Counter[tuple[int, str]] = Counter()
    for obj in session.get_objects({Attribute.TOKEN: True}):
        label = obj[Attribute.LABEL] or ""
        if label in (SIGNING_KEY_LABEL, NONCE_KEY_LABEL) or KEK_LABEL.fullmatch(label):
            seen[(int(obj[Attribute.CLASS]), label)] += 1
    doubled = sorted(f"'{label}' x{count}" for (_, label), count in seen.items() if count > 1)
    if doubled:
        raise ConfigurationError(
            f"the token holds several objects under one label ({', '.join(doubled)}), 1 wanted "
            "each: processes could choose different keys, so the broker refuses to start"
        )
