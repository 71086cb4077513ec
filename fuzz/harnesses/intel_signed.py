"""Intel DCAP past the signatures: mutated content re-signed with the synthetic Intel kit
(``broker/simulate/intel.py``), so the PCK extension parser, the TCB Info and QE Identity
bodies and the TCB appraisal are reached with every signature and chain valid.

The first byte chooses the mode (low two bits) and the TEE (bit 2: TDX, else SGX):
0, the rest is a TCB Info body that the kit's TCB Signing key signs; 1, a QE Identity body
likewise; 2, the SGX extension of a PCK certificate that the kit's Platform CA issues, the
quote re-signed with the new chain; 3, the rest overlays the signed part of a valid quote
(header and report body), which the kit's attestation key re-signs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from broker.evidence.claims import Tee
from broker.evidence.dcap.abi import parse_quote
from broker.evidence.dcap.pck import SGX_EXTENSION_OID
from broker.evidence.registry import verifier_for
from broker.simulate.intel import IntelKit
from fuzz.engine import Harness, Target

NOW = datetime(2025, 6, 1, tzinfo=UTC)
TEES = (Tee.SGX, Tee.TDX)
_KIT: IntelKit | None = None


def kit() -> IntelKit:
    global _KIT  # noqa: PLW0603 - one kit per process
    if _KIT is None:
        _KIT = IntelKit.create(now=NOW)
    return _KIT


def _raw_signature(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _envelope(member: str, body: bytes, intel: IntelKit) -> bytes:
    """``{"member": body, "signature": hex}`` as Intel PCS serves it, signed by the kit."""
    signature = _raw_signature(intel.keys["tcb_signing"], body).hex().encode()
    return b'{"' + member.encode() + b'":' + body + b',"signature":"' + signature + b'"}'


def _quote(intel: IntelKit, tee: Tee) -> bytes:
    return intel.tdx_quote() if tee is Tee.TDX else intel.sgx_quote()


def _inner(document: bytes, member: str) -> bytes:
    return json.dumps(json.loads(document)[member], separators=(",", ":")).encode()


def setup() -> Target:
    intel = kit()
    roots = intel.extra_roots()
    cases = {
        tee: (verifier_for(tee), _quote(intel, tee), intel.collateral(tee, now=NOW)) for tee in TEES
    }
    attestation_key = intel.keys["attestation"]

    def target(data: bytes) -> None:
        if not data:
            return
        mode, tee = data[0] & 3, TEES[(data[0] >> 2) & 1]
        verifier, quote, collateral = cases[tee]
        rest = data[1:]
        if mode == 0:
            collateral = {**collateral, "tcb_info": _envelope("tcbInfo", rest, intel)}
        elif mode == 1:
            collateral = {**collateral, "qe_identity": _envelope("enclaveIdentity", rest, intel)}
        elif mode == 2:
            quote = _quote(intel.with_pck_extension(rest, now=NOW), tee)
        else:
            signed = parse_quote(quote).signed_bytes()
            size = len(signed)
            body = (rest + signed[len(rest) :])[:size]
            signature = _raw_signature(attestation_key, body)
            quote = body + quote[size : size + 4] + signature + quote[size + 4 + 64 :]
        verifier.verify(quote, collateral, now=NOW, extra_roots=roots).document()

    return target


def seeds() -> Iterator[tuple[str, bytes]]:
    intel = kit()
    for bit, tee in enumerate(TEES):
        selector = bit << 2
        collateral = intel.collateral(tee, now=NOW)
        yield f"{tee.value}-tcb-info", bytes([selector]) + _inner(collateral["tcb_info"], "tcbInfo")
        identity = _inner(collateral["qe_identity"], "enclaveIdentity")
        yield f"{tee.value}-qe-identity", bytes([selector | 1]) + identity
        oid = x509.ObjectIdentifier(SGX_EXTENSION_OID)
        value = intel.certificates["pck"].extensions.get_extension_for_oid(oid).value
        if not isinstance(value, x509.UnrecognizedExtension):
            raise TypeError(f"the PCK's SGX extension decoded as {type(value).__name__}")
        extension = value.value
        yield f"{tee.value}-pck-extension", bytes([selector | 2]) + extension
        yield (
            f"{tee.value}-quote",
            bytes([selector | 3]) + parse_quote(_quote(intel, tee)).signed_bytes(),
        )


HARNESS = Harness("intel_signed", setup, seeds, __doc__ or "", max_len=8192)
