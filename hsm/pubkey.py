"""The tee public key a release is wrapped to: parsing, validation, thumbprint.

A guest sends its ephemeral key as a JWK (RFC 7517) or as DER SubjectPublicKeyInfo (Nitro's
``public_key`` field). HSM-sealed release accepts RSA with a 3072- or 4096-bit modulus and the
public exponent 65537: smaller moduli are below the 128-bit security level the KEK and the
AES-256 envelope provide (NIST SP 800-57 Part 1, Table 2), and other exponents buy nothing
but interoperability trouble with HSMs.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from hsm.errors import PublicKeyInvalid

ACCEPTED_RSA_BITS = (3072, 4096)
ACCEPTED_EXPONENT = 65537


@dataclass(frozen=True, slots=True)
class RsaPublicKey:
    modulus: int
    exponent: int
    _thumbprint: str | None = field(default=None, init=False, repr=False, compare=False)
    """Memo of :meth:`thumbprint`: attest and release both name the key in their records."""

    @property
    def bits(self) -> int:
        return self.modulus.bit_length()

    @property
    def modulus_bytes(self) -> bytes:
        return self.modulus.to_bytes((self.bits + 7) // 8, "big")

    @property
    def exponent_bytes(self) -> bytes:
        return self.exponent.to_bytes((self.exponent.bit_length() + 7) // 8, "big")

    def jwk(self) -> dict[str, str]:
        return {"kty": "RSA", "n": b64url(self.modulus_bytes), "e": b64url(self.exponent_bytes)}

    def thumbprint(self) -> str:
        """RFC 7638 JWK SHA-256 thumbprint, base64url: the key's name in audit records.

        The required members ``e``, ``kty``, ``n`` in that order with no whitespace (RFC 7638
        §3.2), written directly: base64url values need no JSON escaping, so these are the
        bytes :func:`jwk_thumbprint` hashes for :meth:`jwk` (a test compares the two).
        """
        known = self._thumbprint
        if known is None:
            canonical = b'{"e":"%s","kty":"RSA","n":"%s"}' % (
                b64url_bytes(self.exponent_bytes),
                b64url_bytes(self.modulus_bytes),
            )
            known = b64url(hashlib.sha256(canonical).digest())
            object.__setattr__(self, "_thumbprint", known)
        return known

    def to_cryptography(self) -> rsa.RSAPublicKey:
        return rsa.RSAPublicNumbers(self.exponent, self.modulus).public_key()

    def spki_der(self) -> bytes:
        return self.to_cryptography().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def spki_pem(self) -> str:
        return (
            self.to_cryptography()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode("ascii")
        )


def jwk_thumbprint(required_members: Mapping[str, str]) -> str:
    """RFC 7638: SHA-256 of the JWK's required members in lexicographic order, base64url."""
    canonical = json.dumps(dict(required_members), sort_keys=True, separators=(",", ":"))
    return b64url(hashlib.sha256(canonical.encode()).digest())


_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")


def b64url_bytes(data: bytes) -> bytes:
    """Unpadded base64url (RFC 7515 §2), as ASCII bytes.

    ``base64.urlsafe_b64encode`` without its two Python-level calls, then no padding."""
    return binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).rstrip(b"=")


def b64url(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 §2)."""
    return b64url_bytes(data).decode("ascii")


# fullmatch: with match, "$" also matched before a final newline, which reached the decoder
# and made it raise binascii.Error ("Incorrect padding") instead of PublicKeyInvalid.
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


def b64url_decode(text: str, what: str) -> bytes:
    """Strict RFC 7515 §2 base64url: alphabet only, no padding, no whitespace."""
    if not isinstance(text, str) or not text or "=" in text:
        raise PublicKeyInvalid(f"{what} must be unpadded base64url text")
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise PublicKeyInvalid(f"{what} is not base64url")
    return decode_unpadded_b64url(text)


def decode_unpadded_b64url(text: str) -> bytes:
    """``base64.urlsafe_b64decode`` of ``text`` with its padding restored, without base64's
    Python-level wrappers: no checks but the decoder's own (binascii.Error, or ValueError for
    text that is not ASCII). :func:`b64url_decode` is the strict one."""
    return binascii.a2b_base64(
        text.encode("ascii").translate(_FROM_URLSAFE) + b"=" * (-len(text) % 4)
    )


_JWK_MEMBERS = frozenset({"kty", "n", "e", "alg", "use", "kid"})


def from_jwk(jwk: Mapping[str, Any]) -> RsaPublicKey:
    """An RSA public JWK (members other than kty/n/e/alg/use/kid are refused)."""
    if not isinstance(jwk, Mapping):
        raise PublicKeyInvalid("tee public key must be a JWK object")
    if not _JWK_MEMBERS.issuperset(jwk):
        # A private member ("d", "p"...) would mean the guest leaked its private key.
        unknown = sorted(set(jwk) - _JWK_MEMBERS)
        raise PublicKeyInvalid(f"JWK has unexpected members: {unknown}")
    for member in ("alg", "use", "kid"):
        if member in jwk and not isinstance(jwk[member], str):
            raise PublicKeyInvalid(f"JWK {member} must be a string")
    if jwk.get("kty") != "RSA":
        raise PublicKeyInvalid(f"JWK kty {jwk.get('kty')!r} != 'RSA'")
    n = b64url_decode(jwk.get("n"), "JWK n")  # type: ignore[arg-type]
    e = b64url_decode(jwk.get("e"), "JWK e")  # type: ignore[arg-type]
    if n[:1] == b"\x00" or e[:1] == b"\x00":
        raise PublicKeyInvalid("JWK n and e must be minimal big-endian integers (RFC 7518 §6.3.1)")
    return _validated(int.from_bytes(n, "big"), int.from_bytes(e, "big"))


def from_spki_der(der: bytes) -> RsaPublicKey:
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, TypeError):
        raise PublicKeyInvalid("tee public key is not DER SubjectPublicKeyInfo") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise PublicKeyInvalid(f"tee public key is {type(key).__name__}, not RSA")
    numbers = key.public_numbers()
    return _validated(numbers.n, numbers.e)


def _validated(modulus: int, exponent: int) -> RsaPublicKey:
    key = RsaPublicKey(modulus, exponent)
    if key.bits not in ACCEPTED_RSA_BITS:
        raise PublicKeyInvalid(f"RSA modulus has {key.bits} bits; accepted: {ACCEPTED_RSA_BITS}")
    if exponent != ACCEPTED_EXPONENT:
        raise PublicKeyInvalid(f"RSA public exponent {exponent} != {ACCEPTED_EXPONENT}")
    if modulus % 2 == 0:
        raise PublicKeyInvalid("RSA modulus is even")
    return key
