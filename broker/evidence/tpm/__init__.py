"""A plain (v)TPM: quotes signed by an attestation key whose certificate chains to a cloud's
pinned root (GCE shielded and confidential VMs), with an optional measured-boot log.

Layers: :mod:`.abi` (TPMS_ATTEST, TPMT_SIGNATURE, TPML_PCR_SELECTION, TPMT_PUBLIC <->
bytes), :mod:`.eventlog` (the TCG crypto-agile log <-> bytes, replay), :mod:`.evidence` (the
forms evidence arrives in), :mod:`.quote`, :mod:`.akcert` and :mod:`.verify` (signatures,
chains, replay, at ``now``), :mod:`.boot` (facts read from the log), :mod:`.claims`. The
paravisor vTPMs (:mod:`broker.evidence.vtpm`) reuse all of it. See docs/vtpm.md.

The signer is the AK certificate's root (``origin: infrastructure-provider``, ``key: ak``):
the cloud's vTPM vouches for the PCRs and the nonce, so the cloud stays fully trusted. A
plain vTPM attests no debug mode, so ``debug`` is false.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from broker.errors import ChainInvalid, MalformedEvidence, UnsupportedEvidence
from broker.evidence.claims import Claims, Signer, SignerOrigin, Tee
from broker.evidence.dcap.options import EVENT_LOG_OPTION
from broker.evidence.registry import CollateralOption, TeeVerifier
from broker.evidence.tpm import roots
from broker.evidence.tpm.abi import FIXED_TPM, RESTRICTED, SIGN_ENCRYPT, Public
from broker.evidence.tpm.akcert import load_ak_certificate
from broker.evidence.tpm.claims import tpm_fields
from broker.evidence.tpm.evidence import parse_tpm_evidence, with_collateral
from broker.evidence.tpm.quote import AkPublicKey, spki_fingerprint
from broker.evidence.tpm.verify import verify_tpm
from broker.evidence.trust import TrustedRoot

#: ``signer.vendor`` of evidence whose AK chains to a test root (``insecure_test_roots``).
TEST_VENDOR = "test"
#: TPMA_OBJECT bits an attestation key has: it signs only what the TPM generates, and
#: never leaves the TPM (TPM 2.0 Library Part 2, TPMA_OBJECT).
AK_ATTRIBUTES = FIXED_TPM | RESTRICTED | SIGN_ENCRYPT

AK_CERT_OPTION = CollateralOption(
    "ak_cert", "--ak-cert", "AK certificate (DER, zero padding after it tolerated, or PEM)"
)
AK_CHAIN_OPTION = CollateralOption(
    "ak_chain", "--ak-chain", "the AK certificate's issuers (PEM bundle or one DER certificate)"
)


def verify(
    evidence: bytes,
    collateral: Mapping[str, bytes],
    *,
    now: datetime,
    extra_roots: Sequence[TrustedRoot] = (),
) -> Claims:
    """Verify a plain vTPM's evidence (a keybroker TPM bundle or a go-tpm-tools
    ``attest.Attestation``) at ``now`` and return its claims (registry contract)."""
    parsed = with_collateral(parse_tpm_evidence(evidence), collateral)
    if parsed.ak_cert is None:
        raise MalformedEvidence(
            "tee tpm needs the AK certificate (ak_cert): nothing else vouches for the AK"
        )
    ak = certified_key(parsed.ak_cert)
    if parsed.ak_public is not None:
        _check_ak_public(parsed.ak_public, ak)
    verified = verify_tpm(
        parsed.quotes,
        ak,
        ak_cert=parsed.ak_cert,
        ak_chain=parsed.ak_chain,
        event_log=parsed.event_log,
        now=now,
        extra_roots=extra_roots,
    )
    root = verified.ak_root
    if root is None:  # pragma: no cover - verify_tpm verified the certificate given
        raise ChainInvalid("the AK certificate did not chain to a root")
    signer = Signer(
        vendor=roots.vendor(root.name) or TEST_VENDOR,
        origin=SignerOrigin.INFRASTRUCTURE_PROVIDER,
        root=root.name,
        key="ak",
    )
    return Claims(Tee.TPM, signer, debug=False, fields={"tpm": tpm_fields(verified)})


def certified_key(ak_cert: bytes) -> AkPublicKey:
    key = load_ak_certificate(ak_cert).public_key()
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise UnsupportedEvidence(f"the AK certificate's key is {type(key).__name__}, not RSA/EC")
    return key


def _check_ak_public(public: Public, ak: AkPublicKey) -> None:
    """The AK's TPMT_PUBLIC, where the evidence carries it, is the certified key, and a key
    the TPM uses only to sign what it generates."""
    if spki_fingerprint(public.public_key()) != spki_fingerprint(ak):
        raise ChainInvalid(
            "ak_pub (TPMT_PUBLIC) is not the key of the AK certificate "
            f"(SPKI SHA-256 {spki_fingerprint(ak)[:16]}...)"
        )
    if public.attributes & AK_ATTRIBUTES != AK_ATTRIBUTES:
        raise UnsupportedEvidence(
            f"ak_pub TPMT_PUBLIC.objectAttributes {public.attributes:#010x} lack fixedTPM, "
            "restricted or sign: not an attestation key"
        )


COLLATERAL_OPTIONS = (AK_CERT_OPTION, AK_CHAIN_OPTION, EVENT_LOG_OPTION)

VERIFIER = TeeVerifier(tee=Tee.TPM, verify=verify, collateral_options=COLLATERAL_OPTIONS)

__all__ = ["COLLATERAL_OPTIONS", "VERIFIER", "certified_key", "verify"]
