"""The paravisor's runtime data: the JSON whose hash the hardware report carries.

Azure's paravisor writes it as the HCL report's variable data (:mod:`.hcl`):
``{"keys": [JWK, ...], "vm-configuration": {...}, "user-data": "<hex>"}``. ``keys`` holds
the vTPM's attestation key as the JWK whose ``kid`` is ``HCLAkPub`` (and its encryption key,
``HCLEkPub``); ``vm-configuration`` what the host set up (``secure-boot``, ``tpm-enabled``,
``console-enabled``, ``vmUniqueId``...); ``user-data`` the 64 bytes the guest last wrote to NV
index 0x01400002, in hex (zeros unless it did).

The bytes are hashed exactly as given (REPORT_DATA binds them, not a re-encoding); the JSON
is then read with duplicate members refused, since two readers must not see two documents.

A VM's AK is the same in every attestation it makes, while its runtime data is not (Trustee's
v2 clients write the binding into ``user-data``), so the AK's public key is remembered by its
JWK members' exact text (:data:`AK_KEYS`), with its SPKI fingerprint: decoding the modulus
and building the key is then paid once per VM, not per quote.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from broker.errors import MalformedEvidence, UnsupportedEvidence
from broker.evidence.tpm.evidence import load_json, padded_base64
from broker.evidence.tpm.quote import AkPublicKey, spki_fingerprint
from broker.lru import Lru

AK_KID = "HCLAkPub"
USER_DATA = "user-data"
USER_DATA_SIZE = 64
_CURVES: dict[str, ec.EllipticCurve] = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1()}
#: The members of a JWK that make its public key (RFC 7518 §6.2, §6.3).
_KEY_MEMBERS = ("kty", "crv", "n", "e", "x", "y")
#: AKs met so far, by the exact text of their JWK's key members: (key, SPKI fingerprint).
AK_KEYS: Lru[tuple[object, ...], tuple[AkPublicKey, str]] = Lru(1024)


@dataclass(frozen=True, slots=True)
class RuntimeData:
    raw: bytes
    """The bytes as the hardware report hashes them."""
    document: Mapping[str, Any]

    def ak(self) -> AkPublicKey:
        """The public key of ``keys[kid=HCLAkPub]``: the vTPM's attestation key."""
        return self.ak_and_fingerprint()[0]

    def ak_and_fingerprint(self) -> tuple[AkPublicKey, str]:
        """:meth:`ak` and the SHA-256 of its DER SubjectPublicKeyInfo, remembered by the
        JWK's key members (module docstring)."""
        keys = self.document.get("keys")
        if not isinstance(keys, list):
            raise MalformedEvidence("runtime data: 'keys' is not a list of JWKs")
        found = [key for key in keys if isinstance(key, dict) and key.get("kid") == AK_KID]
        if len(found) != 1:
            raise MalformedEvidence(
                f"runtime data: 'keys' holds {len(found)} JWKs with kid {AK_KID}, not one"
            )
        jwk = found[0]
        remembered = tuple(jwk.get(name) for name in _KEY_MEMBERS)
        loaded = AK_KEYS.get(remembered)
        if loaded is None:
            key = jwk_public_key(jwk, f"runtime data keys[kid={AK_KID}]")
            loaded = (key, spki_fingerprint(key))
            if all(value is None or isinstance(value, str) for value in remembered):
                AK_KEYS.put(remembered, loaded)
        return loaded

    def user_data(self) -> bytes | None:
        """The ``user-data`` bytes, or None when the runtime data has none."""
        text = self.document.get(USER_DATA)
        if text is None:
            return None
        if not isinstance(text, str):
            raise MalformedEvidence(f"runtime data: '{USER_DATA}' is not a hex string")
        try:
            value = bytes.fromhex(text)
        except ValueError:
            raise MalformedEvidence(f"runtime data: '{USER_DATA}' is not hex") from None
        if len(value) != USER_DATA_SIZE:
            raise MalformedEvidence(
                f"runtime data: '{USER_DATA}' is {len(value)} bytes, not {USER_DATA_SIZE}"
            )
        return value


def parse_runtime_data(data: bytes) -> RuntimeData:
    return RuntimeData(bytes(data), load_json(data, "runtime data"))


def jwk_public_key(jwk: Mapping[str, Any], where: str) -> AkPublicKey:
    """An RSA or EC public key from its JWK (RFC 7518 §6.2, §6.3)."""
    kty = jwk.get("kty")
    try:
        if kty == "RSA":
            modulus = _b64url_int(jwk.get("n"), f"{where}.n")
            exponent = _b64url_int(jwk.get("e"), f"{where}.e")
            return rsa.RSAPublicNumbers(exponent, modulus).public_key()
        if kty == "EC":
            curve = _CURVES.get(str(jwk.get("crv")))
            if curve is None:
                raise UnsupportedEvidence(f"{where}: crv {jwk.get('crv')!r} is not P-256 or P-384")
            x = _b64url_int(jwk.get("x"), f"{where}.x")
            y = _b64url_int(jwk.get("y"), f"{where}.y")
            return ec.EllipticCurvePublicNumbers(x, y, curve).public_key()
    except ValueError as exc:
        raise MalformedEvidence(f"{where} is not a usable public key: {exc}") from None
    raise UnsupportedEvidence(f"{where}: kty {kty!r} is not RSA or EC")


def _b64url_int(value: Any, where: str) -> int:
    if not isinstance(value, str) or not value:
        raise MalformedEvidence(f"{where} is not a base64url string")
    try:
        raw = padded_base64(value + "=" * (-len(value) % 4), urlsafe=True)
    except ValueError:
        raise MalformedEvidence(f"{where} is not base64url") from None
    return int.from_bytes(raw, "big")
