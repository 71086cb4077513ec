"""Verify a Nitro attestation document at an instant: chain, signature, then content.

The steps follow the AWS Nitro Enclaves User Guide, "Verifying the root of trust" (sections
"Certificates validity", "Certificates chain validity", "COSE and CBOR"), in an order chosen so
that every error names the first thing that is really wrong:

1. parse the COSE_Sign1 envelope and its payload strictly (``abi.py``; ``malformed``);
2. parse ``certificate`` and every ``cabundle`` entry as DER (``malformed``);
3. verify the chain ``certificate <- cabundle[-1] <- ... <- cabundle[0]`` to the pinned AWS
   root: ``cabundle[0]`` must be byte-identical to a trusted root or issued by one, every link's
   signature must hold, every certificate must be valid at ``now`` (``trust.verify_chain``;
   ``chain-invalid``, ``certificate-expired``);
4. check the X.509 profile that makes the chain a chain of authorities: every bundle entry is
   a CA (``basicConstraints`` cA, ``keyCertSign``, path length), the leaf is not
   (``chain-invalid``);
5. verify the ES384 signature over the COSE Sig_structure with the leaf's P-384 key
   (``signature-invalid``; another key type is ``unsupported``);
6. only then judge the now-authentic content: ``digest`` must be ``SHA384`` (``unsupported``),
   every PCR must then be 48 bytes and PCR0-2 must be present (``malformed``).

Judging the content after the signature means a flipped byte anywhere in the signed payload
is reported as ``signature-invalid`` (or ``malformed`` when it no longer parses, or
``chain-invalid`` when it lands in a certificate), never as a content verdict on forged bytes.

Nitro documents carry no collateral: everything needed is in the document and the pinned root.
The intermediate certificates name CRL distribution points; revocation is not checked
(AWS's guide does not ask for it, and the leaf lives three hours).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from broker.errors import (
    ChainInvalid,
    MalformedEvidence,
    SignatureInvalid,
    UnsupportedEvidence,
)
from broker.evidence import der
from broker.evidence.claims import Claims
from broker.evidence.nitro import roots
from broker.evidence.nitro.abi import AttestationDocument, SignedDocument, parse_signed_document
from broker.evidence.nitro.claims import DEBUG_PCRS, to_claims
from broker.evidence.registry import Collateral
from broker.evidence.trust import (
    DEFAULT_LINKS,
    LinkCache,
    TrustedRoot,
    common_name,
    load_der_certificate,
    load_pinned_root,
    verify_chain,
)
from broker.lru import Memoized

#: The only digest AWS defines for PCRs (CDDL ``digest = "SHA384"``), and its output size.
SUPPORTED_DIGEST = "SHA384"
SHA384_PCR_SIZE = 48

# The largest timestamp a datetime can hold (year 9999), in ms; the CDDL allows up to 2^64-1.
_MAX_TIMESTAMP_MS = int(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()) * 1000


#: The AWS Nitro Enclaves Root G1, loaded at import and checked against its published
#: fingerprint.
PINNED_ROOT: TrustedRoot = load_pinned_root(
    roots.PACKAGE,
    roots.AWS_NITRO_ROOT_G1_FILE,
    roots.AWS_NITRO_ROOT_G1_NAME,
    roots.AWS_NITRO_ROOT_G1_SHA256,
)


@dataclass(frozen=True, slots=True)
class VerifiedDocument:
    """A document whose chain, signature and content passed at the given instant."""

    document: AttestationDocument
    root: TrustedRoot
    """The root the chain ended in (the pinned AWS root, or an ``insecure-test-`` root)."""
    leaf: x509.Certificate


def verify(
    evidence: bytes,
    collateral: Collateral,
    *,
    now: datetime,
    extra_roots: Sequence[TrustedRoot] = (),
) -> Claims:
    """The registry's entry point: verify ``evidence`` at ``now`` and return its claims."""
    if collateral:
        names = ", ".join(sorted(collateral))
        raise UnsupportedEvidence(f"nitro evidence takes no collateral; received {names}")
    verified = verify_document(evidence, now=now, extra_roots=extra_roots)
    return to_claims(verified.document, verified.root)


def verify_document(
    evidence: bytes,
    *,
    now: datetime,
    extra_roots: Sequence[TrustedRoot] = (),
    links: LinkCache = DEFAULT_LINKS,
) -> VerifiedDocument:
    """Verify a Nitro document (steps in the module docstring); raise an ``EvidenceError``."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    signed = parse_signed_document(evidence)
    document = signed.document
    leaf = _load_der(document.certificate, "certificate")
    bundle = [_load_der(data, f"cabundle[{i}]") for i, data in enumerate(document.cabundle)]

    chain = [("leaf", leaf)]
    chain += [(f"cabundle[{i}]", bundle[i]) for i in reversed(range(len(bundle)))]
    root = verify_chain(chain, (PINNED_ROOT, *extra_roots), now, links)
    for i, cert in enumerate(bundle):
        _check_authority(cert, f"cabundle[{i}]", cas_below=len(bundle) - 1 - i)
    _check_end_entity(leaf)

    _verify_signature(signed, leaf)
    _check_content(document)
    return VerifiedDocument(document=document, root=root, leaf=leaf)


# Parsed certificates are immutable; documents from one enclave repeat all but the leaf. The
# loader parses every field the chain code reads (a failure is not cached).
_parse_der = Memoized(load_der_certificate, 1024)


def _load_der(data: bytes, role: str) -> x509.Certificate:
    try:
        return _parse_der(data)
    except MalformedEvidence as exc:
        raise MalformedEvidence(
            f"{role} is not a usable DER X.509 certificate: {exc.detail}"
        ) from None


def _extension(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> object:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _check_authority(cert: x509.Certificate, role: str, cas_below: int) -> None:
    """RFC 5280 §4.2.1.9 and §4.2.1.3 for a certificate that issues others."""
    name = common_name(cert.subject)
    constraints = _extension(cert, x509.BasicConstraints)
    if not isinstance(constraints, x509.BasicConstraints) or not constraints.ca:
        raise ChainInvalid(f"{role} '{name}' is not a CA (basicConstraints cA is not TRUE)")
    if constraints.path_length is not None and constraints.path_length < cas_below:
        raise ChainInvalid(
            f"{role} '{name}' pathLenConstraint {constraints.path_length} < "
            f"{cas_below} CA certificates below it"
        )
    usage = _extension(cert, x509.KeyUsage)
    if isinstance(usage, x509.KeyUsage) and not usage.key_cert_sign:
        raise ChainInvalid(f"{role} '{name}' keyUsage lacks keyCertSign")


def _check_end_entity(leaf: x509.Certificate) -> None:
    name = common_name(leaf.subject)
    constraints = _extension(leaf, x509.BasicConstraints)
    if isinstance(constraints, x509.BasicConstraints) and constraints.ca:
        raise ChainInvalid(
            f"leaf certificate '{name}' is a CA (basicConstraints cA TRUE); documents are signed "
            "by an end-entity certificate"
        )
    usage = _extension(leaf, x509.KeyUsage)
    if isinstance(usage, x509.KeyUsage) and not usage.digital_signature:
        raise ChainInvalid(f"leaf certificate '{name}' keyUsage lacks digitalSignature")


def _verify_signature(signed: SignedDocument, leaf: x509.Certificate) -> None:
    """ES384 over the Sig_structure (RFC 9052 §4.4) with the leaf's key (RFC 9053 §2.1)."""
    name = common_name(leaf.subject)
    key = leaf.public_key()  # loads: load_der_certificate tried it
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        found = key.curve.name if isinstance(key, ec.EllipticCurvePublicKey) else type(key).__name__
        raise UnsupportedEvidence(
            f"leaf certificate '{name}' key is {found}; ES384 needs an EC P-384 (secp384r1) key"
        )
    signature = der.ecdsa_signature(signed.envelope.signature)  # ES384_SIGNATURE_SIZE bytes
    try:
        key.verify(signature, signed.envelope.sig_structure(), ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise SignatureInvalid(
            f"COSE_Sign1 ES384 signature does not verify with the key of leaf certificate '{name}'"
        ) from None


def _check_content(document: AttestationDocument) -> None:
    """Judge the authenticated payload (AWS guide, "Semantic validity")."""
    if document.digest != SUPPORTED_DIGEST:
        raise UnsupportedEvidence(
            f"digest '{document.digest}' != '{SUPPORTED_DIGEST}'; AWS defines no other PCR digest"
        )
    for index, pcr in document.pcrs.items():
        if len(pcr) != SHA384_PCR_SIZE:
            raise MalformedEvidence(
                f"pcrs[{index}] is {len(pcr)} bytes != {SHA384_PCR_SIZE} (digest {document.digest})"
            )
    missing = [str(index) for index in DEBUG_PCRS if index not in document.pcrs]
    if missing:
        raise MalformedEvidence(
            f"pcrs lacks PCR{', PCR'.join(missing)}; PCR0-2 (image, kernel, application) are "
            "always measured"
        )
    if document.timestamp > _MAX_TIMESTAMP_MS:
        raise MalformedEvidence(f"timestamp {document.timestamp} ms is after the year 9999")
