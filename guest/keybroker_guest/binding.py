"""What the evidence binds: the challenge nonce and the tee key (docs/api.md, "Attest").

REPORT_DATA (64 bytes) = SHA-384(JCS({"nonce": <nonce as issued>, "tee-pubkey": <JWK>}))
followed by 16 zero bytes, or SHA-512 of the same document filling all 64: the runtime-data
binding of Trustee's KBS protocol. JCS is RFC 8785. Behind a vTPM the paravisor owns
REPORT_DATA, so the same digest, unpadded, is the TPM quote's extraData instead.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

REPORT_DATA_BYTES = 64
BINDING_HASHES = ("sha384", "sha512")
_DIGESTS = {"sha384": hashlib.sha384, "sha512": hashlib.sha512}


def canonical_runtime_data(nonce: str, jwk: Mapping[str, str]) -> bytes:
    """RFC 8785 bytes of ``{"nonce": nonce, "tee-pubkey": jwk}``.

    Every value here is a string and every name ASCII, so RFC 8785 is compact JSON with the
    names sorted (ASCII code point order is the UTF-16 order §3.2.3 asks for) and strings
    escaped as Python's encoder does without ``ensure_ascii`` (§3.2.2.2: only ``"``, ``\\``
    and control characters, the latter as ``\\b \\t \\n \\f \\r`` or lowercase ``\\u00xx``).
    Anything else is refused rather than canonicalised wrongly.
    """
    members = dict(jwk)
    if not all(
        isinstance(k, str) and k.isascii() and isinstance(v, str) for k, v in members.items()
    ):
        raise ValueError("a tee-pubkey JWK here holds ASCII names and string values only")
    document = {"nonce": nonce, "tee-pubkey": members}
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def binding_digest(nonce: str, jwk: Mapping[str, str], hash_name: str = "sha384") -> bytes:
    """H(JCS({nonce, tee-pubkey})) unpadded: 48 bytes (sha384) or 64 (sha512). A vTPM guest's
    quote carries it as extraData (TPM2B_DATA holds at most one digest of the TPM's largest
    hash), as Trustee's clients send it."""
    digest = _DIGESTS.get(hash_name)
    if digest is None:
        raise ValueError(f"binding hash {hash_name} is not one of {BINDING_HASHES}")
    return digest(canonical_runtime_data(nonce, jwk)).digest()


def report_data(nonce: str, jwk: Mapping[str, str], hash_name: str = "sha384") -> bytes:
    """The 64 bytes of REPORT_DATA that bind ``nonce`` and ``jwk`` under ``hash_name``: the
    binding digest, zero-padded."""
    return binding_digest(nonce, jwk, hash_name).ljust(REPORT_DATA_BYTES, b"\0")
