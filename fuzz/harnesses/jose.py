"""Bearer tokens (``broker/jose.py``, ``broker/release/tokens.py``): compact ES256 JWS as a
guest presents them, and the attestation result a verified token carries.

The first byte chooses the mode. Even: the rest is the token text, verified against the
broker key. Odd: the rest is a token *payload*, signed with the broker key, then read as a
release reads a token (claims, ``cnf.jwk``): what follows the signature check.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from broker import jose
from broker.evidence.snp import VERIFIER
from broker.release import tokens
from fuzz.engine import VECTORS, Harness, Target
from hsm.pubkey import RsaPublicKey, b64url_bytes

#: A fixed broker key, so that committed seeds carry valid signatures (a test key).
BROKER_KEY = ec.derive_private_key(0x6B657962726F6B65722D66757A7A, ec.SECP256R1())
NOW = datetime(2022, 9, 24, 1, tzinfo=UTC)


def _signed(payload: bytes) -> str:
    kid = jose.key_id(BROKER_KEY.public_key())
    data = jose.signing_input({}, jose.TYP_ATTESTATION_RESULT, kid).split(b".")[0]
    data += b"." + b64url_bytes(payload)
    r, s = decode_dss_signature(BROKER_KEY.sign(data, ec.ECDSA(hashes.SHA256())))
    return jose.compact(data, r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def setup() -> Target:
    public = BROKER_KEY.public_key()

    def target(data: bytes) -> None:
        if not data:
            return
        if data[0] & 1:
            tokens.read(_signed(data[1:]), public, NOW)
        else:
            jose.verify(data[1:].decode("latin-1"), jose.TYP_ATTESTATION_RESULT, public)

    return target


def seeds() -> Iterator[tuple[str, bytes]]:
    snp = VECTORS / "snp" / "go-sev-guest-milan-v2"
    claims = VERIFIER.verify(
        (snp / "attestation.bin").read_bytes(), {"vcek": (snp / "vcek.der").read_bytes()}, now=NOW
    )
    numbers = rsa.generate_private_key(65537, 3072).public_key().public_numbers()
    jwk = RsaPublicKey(numbers.n, numbers.e).jwk()
    payload = tokens.payload(claims, jwk, "00" * 32, NOW, 300)
    text = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    yield "token", b"\x00" + _signed(text).encode()
    yield "payload", b"\x01" + text


HARNESS = Harness("jose", setup, seeds, __doc__ or "", max_len=16384)
