"""Trustee's KBS protocol messages (``broker/api/kbs/wire.py``): the auth Request (version,
tee, hash selection) and the Attestation (runtime data, the tee public key, init-data, the
evidence in Trustee's form), read from JSON as the endpoints read them after the body reader
(which ``request_body`` covers).

The first byte chooses the message: 0 a Request; 1, 2, 3 an Attestation of an SNP, TDX or
SGX session whose challenge nonce is ``bm9uY2U=`` and whose hash is sha384. The rest is the
JSON body.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from broker import fastjson
from broker.api.kbs import wire
from broker.errors import BadRequest
from broker.evidence.claims import Tee
from fuzz.engine import VECTORS, Harness, Target

NONCE = "bm9uY2U="
SESSIONS = (Tee.SNP, Tee.TDX, Tee.SGX)


def setup() -> Target:
    def target(data: bytes) -> None:
        if not data:
            return
        try:
            document = fastjson.loads(data[1:])
        except (ValueError, RecursionError):  # the body reader's refusals
            raise BadRequest("not JSON") from None
        if not isinstance(document, dict):
            raise BadRequest("not an object")
        kind = data[0] % 4
        if kind == 0:
            wire.parse_auth(document)
        else:
            wire.parse_attestation(document, SESSIONS[kind - 1], NONCE, "sha384")

    return target


EC_KEY = {
    "kty": "EC",
    "crv": "P-256",
    "alg": "ECDH-ES+A256KW",
    "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
    "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
}


def seeds() -> Iterator[tuple[str, bytes]]:
    request = {
        "version": "0.4.0",
        "tee": "snp",
        "extra-params": {"supported-hash-algorithms": ["sha256", "sha384", "sha512", "sm3"]},
    }
    yield "auth", b"\x00" + json.dumps(request).encode()
    fixtures = VECTORS / "kbs" / "fixtures"
    yield "auth-fixture", b"\x00" + (fixtures / "parse_request.json").read_bytes()
    snp = json.loads((VECTORS / "kbs" / "evidence" / "snp-genoa.json").read_bytes())
    attestation = {
        "init-data": {"format": "toml", "body": 'version = "0.1.0"\nalgorithm = "sha384"\n'},
        "runtime-data": {"nonce": NONCE, "tee-pubkey": EC_KEY},
        "tee-evidence": {"primary_evidence": snp, "additional_evidence": ""},
    }
    yield "attest-snp", b"\x01" + json.dumps(attestation).encode()
    sgx = {**attestation, "init-data": None}
    sgx["tee-evidence"] = {"primary_evidence": {"quote": "cQ=="}, "additional_evidence": "{}"}
    yield "attest-sgx", b"\x03" + json.dumps(sgx).encode()
    yield "attest-fixture", b"\x01" + (fixtures / "parse_attestation_ec.json").read_bytes()


HARNESS = Harness("kbs_request", setup, seeds, __doc__ or "", max_len=32768)
