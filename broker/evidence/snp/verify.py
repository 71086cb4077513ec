"""Verify an SEV-SNP attestation report back to a pinned AMD root at an instant.

Order of the checks (each raises; nothing returns False):

1. parse (:mod:`.abi`): size, VERSION, SIGNATURE_ALGO, reserved fields;
2. the endorsement key SIGNER_INFO.SIGNING_KEY names: the ``vcek`` (or ``vlek``) collateral;
3. the product: the report's CPUID (v3+), else the VCEK's productName, else the ``product``
   collateral; all that are present must agree;
4. the chain VCEK -> ASK -> ARK (VLEK -> ASVK -> ARK) to the product's pinned ARK (or a root
   admitted through an ``insecure_`` setting), RSASSA-PSS links cached by fingerprint, every
   certificate valid at ``now``, and the CRLs supplied;
5. the VCEK's TCB extensions equal REPORTED_TCB byte for byte, and its hwID equals CHIP_ID;
6. the report signature: ECDSA P-384 with SHA-384 over bytes 0x000..0x29F.

TCB before signature on purpose: a report whose REPORTED_TCB was edited is reported as the
TCB mismatch it is, not as a bare bad signature.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from broker.errors import (
    ChainInvalid,
    CollateralInvalid,
    CollateralUnavailable,
    SignatureInvalid,
    TcbMismatch,
    VcekChipMismatch,
)
from broker.evidence.snp import roots
from broker.evidence.snp.abi import (
    SIGNED_SIZE,
    AttestationReport,
    SigningKey,
    parse_report,
)
from broker.evidence.snp.endorsement import (
    SPL_NAMES,
    Endorsement,
    load_endorsement,
    spl_layout,
)
from broker.evidence.snp.products import Product, parse_product, product_from_cpuid
from broker.evidence.snp.roots import KeyKind
from broker.evidence.trust import (
    DEFAULT_LINKS,
    LinkCache,
    TrustedRoot,
    check_not_revoked,
    common_name,
    fingerprint,
    load_certificates,
    load_crls,
    parse_collateral,
    verify_chain,
    zero_serial_tolerated,
)
from broker.lru import memoized

_ECDSA_SHA384 = ec.ECDSA(hashes.SHA384())
_INTERMEDIATE_ROLE = {"vcek": "ASK", "vlek": "ASVK"}
_TCB_FIELD = {
    "bootloader": "BOOT_LOADER",
    "tee": "TEE",
    "snp": "SNP",
    "microcode": "MICROCODE",
    "fmc": "FMC",
}


@dataclass(frozen=True, slots=True)
class VerifiedReport:
    """A report whose signature, chain and TCB endorsement verified at one instant."""

    report: AttestationReport
    product: Product
    key: KeyKind
    """``vcek`` or ``vlek``: the endorsement key kind that signed."""
    root: TrustedRoot
    warnings: tuple[str, ...] = ()


def verify_report(
    evidence: bytes,
    collateral: Mapping[str, bytes],
    *,
    now: datetime,
    extra_roots: Sequence[TrustedRoot] = (),
    links: LinkCache = DEFAULT_LINKS,
) -> VerifiedReport:
    """Verify one raw ATTESTATION_REPORT (1184 bytes) at ``now``; raise an ``EvidenceError``.

    ``collateral`` names: ``vcek`` (DER or PEM; a VLEK may come under this name too),
    ``vlek``, ``cert_chain`` (ASK/ASVK + ARK PEM, optional), ``crl`` (DER or PEM, optional),
    ``product`` (``Milan``/``Genoa``/``Turin``, needed only when neither the report nor the
    VCEK names it). ``extra_roots`` are test roots trusted besides the pinned ARKs.
    """
    report = parse_report(evidence)
    key = _signing_key(report)
    endorsement = _endorsement(collateral, key)
    product = _product(report, endorsement, collateral.get("product"))
    allowed_roots = [roots.ark(product), *extra_roots]
    issuer = _issuer(endorsement, collateral.get("cert_chain"), product, key, allowed_roots)
    chain = [(key.upper(), endorsement.certificate), (_INTERMEDIATE_ROLE[key], issuer)]
    root = verify_chain(chain, allowed_roots, now, links)
    crl = collateral.get("crl")
    if crl is not None:
        _check_revocation(
            crl, endorsement=endorsement, key=key, issuer=issuer, root=root, now=now, links=links
        )
    warnings = _check_tcb(report, endorsement, key, product)
    _check_signature(evidence, report, endorsement, key)
    return VerifiedReport(report, product, key, root, tuple(warnings))


def _signing_key(report: AttestationReport) -> KeyKind:
    signing_key = report.signer_info.signing_key
    if signing_key is SigningKey.NONE:
        raise SignatureInvalid("SIGNER_INFO.SIGNING_KEY 7: the report is not signed")
    return "vcek" if signing_key is SigningKey.VCEK else "vlek"


def _endorsement(collateral: Mapping[str, bytes], key: KeyKind) -> Endorsement:
    # A VLEK may arrive under either name: hosts and tools often call every endorsement
    # certificate "vcek". A VCEK-signed report never takes the "vlek" slot.
    name = "vlek" if key == "vlek" and "vlek" in collateral else "vcek"
    data = collateral.get(name)
    if data is None:
        raise CollateralUnavailable(
            f"the report is signed by a {key.upper()} (SIGNER_INFO.SIGNING_KEY) and no "
            f"'{key}' certificate was supplied"
        )
    endorsement = parse_collateral(name, load_endorsement, data)
    if endorsement.kind != key:
        found = common_name(endorsement.certificate.subject)
        raise ChainInvalid(
            f"the report is signed by a {key.upper()} (SIGNER_INFO.SIGNING_KEY) but the "
            f"'{name}' certificate is '{found}', not 'SEV-{key.upper()}'"
        )
    if endorsement.public_key is None:
        raise ChainInvalid(f"the {key.upper()} public key is not an EC P-384 key")
    return endorsement


def _product(
    report: AttestationReport, endorsement: Endorsement, supplied: bytes | None
) -> Product:
    kind = (endorsement.kind or "vcek").upper()
    from_cert = None
    if endorsement.product_name is not None:
        from_cert = parse_product(endorsement.product_name)
        if from_cert is None:
            raise CollateralInvalid(
                f"{kind} productName '{endorsement.product_name}' is not Milan, Genoa or Turin"
            )
    if report.cpuid is not None:
        product = product_from_cpuid(report.cpuid)
        if from_cert is not None and from_cert is not product:
            raise TcbMismatch(
                f"CPUID_FAM_ID/CPUID_MOD_ID {report.cpuid.family:#04x}/{report.cpuid.model:#04x} "
                f"({product.value}) != {kind} productName '{endorsement.product_name}'"
            )
    elif from_cert is not None:
        product = from_cert
    elif supplied is not None:
        product = _supplied_product(supplied)
    else:
        raise CollateralUnavailable(
            f"report version {report.version} carries no CPUID and the certificate has no "
            "productName: supply the product (Milan, Genoa, Turin)"
        )
    if supplied is not None and _supplied_product(supplied) is not product:
        raise CollateralInvalid(
            f"product collateral '{supplied.decode(errors='replace').strip()}' != "
            f"{product.value} (from the report or the VCEK)"
        )
    return product


def _supplied_product(supplied: bytes) -> Product:
    text = supplied.decode(errors="replace")
    product = parse_product(text)
    if product is None:
        raise CollateralInvalid(f"product '{text.strip()}' is not Milan, Genoa or Turin")
    return product


@memoized(64)
def _parse_cert_chain(data: bytes) -> tuple[x509.Certificate, ...]:
    return tuple(parse_collateral("cert_chain", load_certificates, data))


def _issuer(
    endorsement: Endorsement,
    cert_chain: bytes | None,
    product: Product,
    key: KeyKind,
    allowed_roots: Sequence[TrustedRoot],
) -> x509.Certificate:
    """The ASK/ASVK that issued the endorsement: from ``cert_chain`` when one is supplied (its
    root must be one we trust, byte for byte), else the pinned one of ``product``."""
    role = _INTERMEDIATE_ROLE[key]
    if cert_chain is None:
        candidates: Sequence[x509.Certificate] = [roots.intermediate(product, key)]
    else:
        candidates = []
        trusted = {root.fingerprint for root in allowed_roots}
        for cert in _parse_cert_chain(cert_chain):
            if cert.subject != cert.issuer:
                candidates.append(cert)
            elif fingerprint(cert) not in trusted:
                raise ChainInvalid(
                    f"cert_chain root '{common_name(cert.subject)}' (SHA-256 "
                    f"{fingerprint(cert)}) is not the pinned ARK of {product.value}"
                )
    wanted = endorsement.certificate.issuer
    for cert in candidates:
        if cert.subject == wanted:
            return cert
    source = "cert_chain" if cert_chain is not None else f"the pinned {product.value} chain"
    raise ChainInvalid(
        f"{key.upper()} issuer '{common_name(wanted)}' is not the {role} of {source} "
        f"({', '.join(common_name(c.subject) for c in candidates) or 'none'})"
    )


@memoized(64)
def _parse_crls(data: bytes) -> tuple[x509.CertificateRevocationList, ...]:
    return tuple(parse_collateral("crl", load_crls, data))


def _check_revocation(
    data: bytes,
    *,
    endorsement: Endorsement,
    key: KeyKind,
    issuer: x509.Certificate,
    root: TrustedRoot,
    now: datetime,
    links: LinkCache,
) -> None:
    """Honour every CRL supplied. A CRL covers the certificates its issuer issued (RFC 5280):
    AMD KDS serves one signed by the ARK that lists revoked ASKs/ASVKs; one signed by the
    ASK would list VCEKs. A CRL from neither is refused rather than ignored. Each must verify
    under its issuer and be current at ``now`` (:func:`trust.check_not_revoked`)."""
    role = _INTERMEDIATE_ROLE[key]
    for crl in _parse_crls(data):
        if crl.issuer == root.certificate.subject:
            check_not_revoked(issuer, crl, root.certificate, role, links, now=now)
        elif crl.issuer == issuer.subject:
            with zero_serial_tolerated():
                check_not_revoked(endorsement.certificate, crl, issuer, key.upper(), links, now=now)
        else:
            raise CollateralInvalid(
                f"CRL issuer '{common_name(crl.issuer)}' is neither the ARK "
                f"'{common_name(root.certificate.subject)}' nor the {role} "
                f"'{common_name(issuer.subject)}' of this chain"
            )


def _check_tcb(
    report: AttestationReport, endorsement: Endorsement, key: KeyKind, product: Product
) -> list[str]:
    """REPORTED_TCB against the SPL extensions, byte by byte, and CHIP_ID against hwID."""
    kind = key.upper()
    for index, (name, arc) in enumerate(spl_layout(product.is_turin)):
        found = report.reported_tcb.raw[index]
        wanted = endorsement.spls.get(arc)
        if wanted is None:
            if name is not None:
                raise TcbMismatch(
                    f"{kind} has no {SPL_NAMES[arc]} extension (1.3.6.1.4.1.3704.1.3.{arc}) "
                    f"to endorse REPORTED_TCB.{_TCB_FIELD[name]}"
                )
            wanted = 0  # an absent reserved SPL endorses zero
        if found != wanted:
            field = _TCB_FIELD[name] if name is not None else f"byte {index} (reserved)"
            raise TcbMismatch(
                f"REPORTED_TCB.{field} {found} != {kind} {SPL_NAMES[arc]} {wanted} "
                f"(REPORTED_TCB {report.reported_tcb.value:#018x})"
            )
    if key != "vcek":
        return []  # a VLEK is not chip-specific: no hwID, and CHIP_ID is zero
    if report.signer_info.mask_chip_key:
        return ["CHIP_ID is masked (SIGNER_INFO.MASK_CHIP_KEY): VCEK hwID not compared"]
    size = product.hwid_size
    hwid = endorsement.hwid
    if hwid is None:
        raise TcbMismatch("VCEK has no hwID extension (1.3.6.1.4.1.3704.1.4)")
    if len(hwid) != size:
        raise TcbMismatch(f"VCEK hwID is {len(hwid)} bytes; {product.value} uses {size}")
    if report.chip_id[:size] != hwid:
        raise VcekChipMismatch(
            f"the VCEK is another chip's: its hwID {hwid.hex()} is not this report's CHIP_ID "
            f"{report.chip_id[:size].hex()}; use the VCEK of the chip that signed it (AMD KDS "
            "serves it by CHIP_ID and REPORTED_TCB)"
        )
    return []


def _check_signature(
    evidence: bytes, report: AttestationReport, endorsement: Endorsement, key: KeyKind
) -> None:
    public_key = endorsement.public_key
    if public_key is None:  # pragma: no cover - _endorsement() refused it already
        raise ChainInvalid(f"the {key.upper()} public key is not an EC P-384 key")
    signature = encode_dss_signature(report.signature.r, report.signature.s)
    try:
        # The raw bytes as received, not a re-encoding: what was signed is what we check.
        public_key.verify(signature, evidence[:SIGNED_SIZE], _ECDSA_SHA384)
    except InvalidSignature:
        raise SignatureInvalid(
            f"ATTESTATION_REPORT signature (bytes 0x000..0x29F, ECDSA P-384/SHA-384) does not "
            f"verify with the {key.upper()} '{fingerprint(endorsement.certificate)[:16]}...'"
        ) from None
