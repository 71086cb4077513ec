"""The JWE envelope of Trustee's KBS resource answers, and what it exposes.

A Confidential Containers guest asks for a resource with an ephemeral key it bound into its
evidence, and opens the answer as a JWE (RFC 7516) in flattened JSON
``{"protected", "encrypted_key", "iv", "ciphertext", "tag"}``, base64url without padding:

* ``ECDH-ES+A256KW`` (RFC 7518 §4.6) for an EC P-256 (the client's default) or P-521 key: an
  ephemeral key on the tee key's curve, Z = ECDH x-coordinate, the key-encryption key =
  Concat KDF (SHA-256, one round; AlgorithmID the alg name, empty PartyUInfo/PartyVInfo,
  256 bits; §4.6.2), the 32-byte CEK wrapped with RFC 3394 AES key wrap (40 bytes);
* ``RSA-OAEP-256`` (§4.3) for an RSA key: OAEP with SHA-256 and MGF1-SHA-256 of the CEK;
* content ``A256GCM`` (§5.3): a 12-byte random IV, 16-byte tag, AAD = the ASCII of the
  ``protected`` string.

**The protected header is written as kbs-types regenerates it**: the reference client never
uses the received ``protected`` string as AAD; it parses the header and serialises it again
(``alg``, ``enc``, then the other members sorted by name, nested objects likewise, compact),
and uses that. :func:`protected_header` writes exactly those bytes, so the two agree; a
generic JOSE library would accept other spellings that the real client cannot open. No
``aad`` member is sent: RFC 7516 libraries would append it to the AAD, the client does not.

Where the secret is while this happens (the exposure the audit record carries):

* **In the token** would need the PKCS#11 module to encrypt a key object under A256GCM
  (``C_WrapKey`` with ``CKM_AES_GCM``), to wrap the CEK with OAEP-SHA-256 (for RSA
  recipients), and for EC recipients to derive the key-encryption key by ECDH *and* JOSE's
  Concat KDF inside the token, which no PKCS#11 2.40 key derivation function computes
  (``CKD_SHA256_KDF`` is ANSI X9.63's, which hashes Z before the counter). :func:`probe`
  asks the module for the first two by trying them; SoftHSM 2.6.1 has neither (``CKM_AES_GCM``
  encrypts data only; OAEP is SHA-1 only), so no in-token path is built.
* **In broker memory** (:func:`seal_unwrapped`): the secret is unwrapped from its KEK blob
  into a non-sensitive session object, its value read once into a ``bytearray``, the object
  destroyed, the JWE made in software, and the ``bytearray`` (and the CEK's) overwritten with
  zeros before returning. Python's ``bytes`` from the PKCS#11 binding and the AEAD's own
  buffers are outside that reach and are freed, not zeroed. This is how Trustee serves every
  resource; keybroker allows it only for keys whose exposure setting says ``broker-memory``,
  and records ``plaintext_in_broker: true``.

Nothing here logs, and no value here has a ``repr`` that shows key material.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pkcs11
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash
from cryptography.hazmat.primitives.keywrap import aes_key_wrap
from pkcs11 import Attribute, KeyType, Mechanism
from pkcs11.mechanisms import GCMParams

from hsm.errors import BlobInvalid, PublicKeyInvalid
from hsm.pubkey import b64url, b64url_decode, jwk_thumbprint

ECDH_ES_A256KW = "ECDH-ES+A256KW"
RSA_OAEP_256 = "RSA-OAEP-256"
A256GCM = "A256GCM"
ENVELOPE = "jwe"

CEK_BYTES = 32
IV_BYTES = 12
#: RSA tee keys: the sizes the native path accepts (``hsm/pubkey.py``), e = 65537.
RSA_BITS = (3072, 4096)
RSA_EXPONENT = 65537

_CURVES: dict[str, tuple[ec.EllipticCurve, int]] = {
    "P-256": (ec.SECP256R1(), 32),
    "P-521": (ec.SECP521R1(), 66),
}
_EC_MEMBERS = frozenset({"kty", "crv", "alg", "x", "y"})
_RSA_MEMBERS = frozenset({"kty", "alg", "n", "e"})
#: RFC 7638 §3.2: the required members of each key type.
_THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}
_OAEP_SHA256 = padding.OAEP(
    mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None
)


class Exposure(StrEnum):
    """Where a key's secret may be while it is released (a key's ``exposure`` setting)."""

    HSM_ONLY = "hsm-only"
    """Never outside the token: only envelopes built inside the HSM (the native release)."""
    BROKER_MEMORY = "broker-memory"
    """May be in the broker's memory for the moment a software envelope needs (KBS JWE)."""


@dataclass(frozen=True, slots=True)
class Recipient:
    """A tee public key a JWE is encrypted to, as the KBS attestation sent it."""

    alg: str
    jwk: Mapping[str, str]
    """Exactly the typed members the client sends (and hashes into its binding)."""
    key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey

    @property
    def curve(self) -> str | None:
        return self.jwk.get("crv")

    def thumbprint(self) -> str:
        """RFC 7638 thumbprint: the key's name in audit records."""
        members = _THUMBPRINT_MEMBERS[self.jwk["kty"]]
        return jwk_thumbprint({name: self.jwk[name] for name in members})

    def __repr__(self) -> str:
        return f"Recipient(alg={self.alg}, thumbprint={self.thumbprint()})"


def recipient(jwk: Any) -> Recipient:
    """The recipient of a KBS ``tee-pubkey``; ``PublicKeyInvalid`` unless it is an EC P-256 or
    P-521 key for ``ECDH-ES+A256KW`` or an RSA-3072/4096 key (e = 65537) for ``RSA-OAEP-256``,
    with exactly the members the reference client sends (a private member such as ``d``
    would mean the guest leaked its key)."""
    if not isinstance(jwk, Mapping) or not all(isinstance(v, str) for v in jwk.values()):
        raise PublicKeyInvalid("tee-pubkey must be a JWK object of strings")
    kty = jwk.get("kty")
    if kty == "EC":
        return _ec_recipient(jwk)
    if kty == "RSA":
        return _rsa_recipient(jwk)
    raise PublicKeyInvalid(f"tee-pubkey kty {kty!r} is not EC or RSA")


def _members(jwk: Mapping[str, str], wanted: frozenset[str], kty: str) -> None:
    if jwk.keys() != wanted:
        raise PublicKeyInvalid(
            f"{kty} tee-pubkey must have exactly the members {', '.join(sorted(wanted))} "
            f"(found {', '.join(sorted(jwk))})"
        )


def _ec_recipient(jwk: Mapping[str, str]) -> Recipient:
    _members(jwk, _EC_MEMBERS, "EC")
    if jwk["alg"] != ECDH_ES_A256KW:
        raise PublicKeyInvalid(f"EC tee-pubkey alg {jwk['alg']!r} is not {ECDH_ES_A256KW}")
    known = _CURVES.get(jwk["crv"])
    if known is None:
        raise PublicKeyInvalid(f"EC tee-pubkey crv {jwk['crv']!r} is not P-256 or P-521")
    curve, size = known
    x = b64url_decode(jwk["x"], "tee-pubkey x")
    y = b64url_decode(jwk["y"], "tee-pubkey y")
    if len(x) != size or len(y) != size:
        raise PublicKeyInvalid(f"{jwk['crv']} coordinates are {size} bytes each (RFC 7518 §6.2.1)")
    try:
        key = ec.EllipticCurvePublicKey.from_encoded_point(curve, b"\x04" + x + y)
    except ValueError:
        raise PublicKeyInvalid(f"tee-pubkey is not a point on {jwk['crv']}") from None
    return Recipient(ECDH_ES_A256KW, dict(jwk), key)


def _rsa_recipient(jwk: Mapping[str, str]) -> Recipient:
    _members(jwk, _RSA_MEMBERS, "RSA")
    if jwk["alg"] != RSA_OAEP_256:
        raise PublicKeyInvalid(f"RSA tee-pubkey alg {jwk['alg']!r} is not {RSA_OAEP_256}")
    n = b64url_decode(jwk["n"], "tee-pubkey n")
    e = b64url_decode(jwk["e"], "tee-pubkey e")
    if n[:1] == b"\x00" or e[:1] == b"\x00":
        raise PublicKeyInvalid("RSA n and e must be minimal big-endian integers (RFC 7518 §6.3.1)")
    modulus, exponent = int.from_bytes(n, "big"), int.from_bytes(e, "big")
    if modulus.bit_length() not in RSA_BITS or exponent != RSA_EXPONENT or modulus % 2 == 0:
        raise PublicKeyInvalid(
            f"RSA tee-pubkey must be {' or '.join(map(str, RSA_BITS))} bits with e = "
            f"{RSA_EXPONENT} (found {modulus.bit_length()} bits, e = {exponent})"
        )
    return Recipient(RSA_OAEP_256, dict(jwk), rsa.RSAPublicNumbers(exponent, modulus).public_key())


# --- the protected header as kbs-types regenerates it ------------------------------------------


def _sorted(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {name: _sorted(value[name]) for name in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


def protected_header(alg: str, enc: str, others: Mapping[str, Any] | None = None) -> str:
    """The ``protected`` string, byte for byte what kbs-types' ``generate_aad`` makes of the
    header: ``{"alg", "enc", <other members sorted by name, nested objects sorted>}``,
    compact, base64url without padding. ``others`` must not repeat ``alg`` or ``enc``."""
    extra = dict(others or {})
    if {"alg", "enc"} & extra.keys():
        raise ValueError("alg and enc are given apart from the other members")
    header = {"alg": alg, "enc": enc, **_sorted(extra)}
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False)
    return b64url(text.encode("utf-8"))


# --- the envelope -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JweEnvelope:
    """One KBS resource answer, and where the secret was while it was made."""

    protected: str
    encrypted_key: bytes
    iv: bytes
    ciphertext: bytes
    tag: bytes
    alg: str
    plaintext_in_broker: bool

    def to_json(self) -> dict[str, str]:
        """The flattened JSON serialisation Trustee answers with (no ``aad`` member)."""
        return {
            "protected": self.protected,
            "encrypted_key": b64url(self.encrypted_key),
            "iv": b64url(self.iv),
            "ciphertext": b64url(self.ciphertext),
            "tag": b64url(self.tag),
        }

    def exposure(self) -> dict[str, Any]:
        """What the audit record of this release says about the envelope."""
        return {
            "plaintext_in_broker": self.plaintext_in_broker,
            "envelope": {"format": ENVELOPE, "alg": self.alg, "enc": A256GCM},
        }

    def __repr__(self) -> str:
        return (
            f"JweEnvelope(alg={self.alg}, enc={A256GCM}, ciphertext=<{len(self.ciphertext)} "
            f"bytes>, plaintext_in_broker={self.plaintext_in_broker})"
        )


def concat_kdf(z: bytes, alg: str) -> bytes:
    """RFC 7518 §4.6.2: NIST SP 800-56A Concat KDF with SHA-256 for a 256-bit key, OtherInfo
    = ``len(alg) || alg || len(apu)=0 || len(apv)=0 || 256``, lengths 32-bit big-endian."""
    name = alg.encode("ascii")
    other = len(name).to_bytes(4, "big") + name + bytes(8) + (256).to_bytes(4, "big")
    return ConcatKDFHash(hashes.SHA256(), length=32, otherinfo=other).derive(z)


def seal(secret: bytes | bytearray, to: Recipient) -> JweEnvelope:
    """Encrypt ``secret`` to ``to`` in software (the broker-memory path). The CEK lives in a
    ``bytearray`` overwritten before returning; the caller owns ``secret``."""
    cek = bytearray(os.urandom(CEK_BYTES))
    try:
        if isinstance(to.key, ec.EllipticCurvePublicKey):
            encrypted_key, others = _ecdh_es_a256kw(cek, to.key, to.jwk["crv"])
        else:
            encrypted_key, others = to.key.encrypt(bytes(cek), _OAEP_SHA256), {}
        protected = protected_header(to.alg, A256GCM, others)
        iv = os.urandom(IV_BYTES)
        sealed = AESGCM(cek).encrypt(iv, secret, protected.encode("ascii"))
    finally:
        _zero(cek)
    return JweEnvelope(
        protected=protected,
        encrypted_key=encrypted_key,
        iv=iv,
        ciphertext=sealed[:-16],
        tag=sealed[-16:],
        alg=to.alg,
        plaintext_in_broker=True,
    )


def _ecdh_es_a256kw(
    cek: bytearray, tee_key: ec.EllipticCurvePublicKey, crv: str
) -> tuple[bytes, dict[str, Any]]:
    curve, size = _CURVES[crv]
    ephemeral = ec.generate_private_key(curve)
    kek = bytearray(concat_kdf(ephemeral.exchange(ec.ECDH(), tee_key), ECDH_ES_A256KW))
    try:
        encrypted_key = aes_key_wrap(bytes(kek), bytes(cek))
    finally:
        _zero(kek)
    numbers = ephemeral.public_key().public_numbers()
    epk = {
        "crv": crv,
        "kty": "EC",
        "x": b64url(numbers.x.to_bytes(size, "big")),
        "y": b64url(numbers.y.to_bytes(size, "big")),
    }
    return encrypted_key, {"epk": epk}


def _zero(buffer: bytearray) -> None:
    buffer[:] = bytes(len(buffer))


# --- through the token ---------------------------------------------------------------------------

#: The unwrapped secret's template on the broker-memory path: readable (SENSITIVE false), so
#: that C_GetAttributeValue returns it once; a session object, destroyed at once.
READABLE_SECRET = {
    Attribute.TOKEN: False,
    Attribute.SENSITIVE: False,
    Attribute.EXTRACTABLE: True,
}


def seal_unwrapped(unwrapped: Any, secret_length: int, to: Recipient) -> JweEnvelope:
    """Read the secret ``unwrapped`` holds (a session object made with
    :data:`READABLE_SECRET`) into broker memory for the moment :func:`seal` needs it, destroy
    the object, and overwrite the copy. ``BlobInvalid`` unless it holds ``secret_length``
    bytes followed only by SoftHSM's zero padding (``hsm/envelope.py``)."""
    try:
        secret = bytearray(unwrapped[Attribute.VALUE])
    finally:
        unwrapped.destroy()
    try:
        if len(secret) < secret_length or any(secret[secret_length:]):
            raise BlobInvalid("unwrapped secret does not match its recorded length")
        del secret[secret_length:]
        return seal(secret, to)
    finally:
        _zero(secret)


@dataclass(frozen=True, slots=True)
class InTokenSupport:
    """What the PKCS#11 module can do of a JWE inside the token (:func:`probe`)."""

    gcm_wrap: bool
    """``C_WrapKey`` with ``CKM_AES_GCM``: the content encryption of a key object."""
    oaep_sha256_wrap: bool
    """``C_WrapKey`` with OAEP-SHA-256: the CEK for an ``RSA-OAEP-256`` recipient."""

    def missing(self, alg: str) -> list[str]:
        """What keeps a JWE to ``alg`` from being made inside the token."""
        lacking = [] if self.gcm_wrap else ["C_WrapKey with CKM_AES_GCM (A256GCM content)"]
        if alg == RSA_OAEP_256 and not self.oaep_sha256_wrap:
            lacking.append("C_WrapKey with CKM_RSA_PKCS_OAEP and SHA-256 (RSA-OAEP-256)")
        if alg == ECDH_ES_A256KW:
            lacking.append("an ECDH key derivation computing JOSE's Concat KDF (none in PKCS#11)")
        return lacking

    def missing_for_cms(self) -> list[str]:
        """What keeps a KMS answer (a GCM blob of a data key; a CMS envelope with OAEP-SHA-256
        and AES-256-CBC, ``hsm/cms.py``) from being made inside the token."""
        lacking = [] if self.gcm_wrap else ["C_WrapKey/C_UnwrapKey with CKM_AES_GCM"]
        if not self.oaep_sha256_wrap:
            lacking.append("C_WrapKey with CKM_RSA_PKCS_OAEP and SHA-256")
        # Not probed: keybroker builds no in-token CMS path, which this would also need.
        lacking.append("an in-token CMS path in keybroker (C_WrapKey with CKM_AES_CBC_PAD)")
        return lacking


def probe(session: pkcs11.Session, oaep_sha256_wrap: bool) -> InTokenSupport:
    """Try ``C_WrapKey`` with ``CKM_AES_GCM`` on throwaway session keys (the OAEP hash is
    probed by custody already). Nothing it makes outlives the call."""
    template = {Attribute.TOKEN: False, Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: True}
    wrapping: Any = session.generate_key(
        KeyType.AES, 256, template={**template, Attribute.WRAP: True}
    )
    try:
        target: Any = session.generate_key(KeyType.AES, 256, template=template)
        try:
            wrapping.wrap_key(
                target,
                mechanism=Mechanism.AES_GCM,
                mechanism_param=GCMParams(os.urandom(IV_BYTES), b"probe"),
            )
            gcm_wrap = True
        except pkcs11.exceptions.PKCS11Error:
            gcm_wrap = False
        finally:
            target.destroy()
    finally:
        wrapping.destroy()
    return InTokenSupport(gcm_wrap=gcm_wrap, oaep_sha256_wrap=oaep_sha256_wrap)
