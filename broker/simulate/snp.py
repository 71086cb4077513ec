"""Synthetic SEV-SNP evidence: a fake AMD chain that signs reports built with ``to_bytes``.

The kit mirrors AMD's real hierarchy with the same algorithms and extensions: an ARK and an
ASK (RSA-4096, RSASSA-PSS with SHA-384, salt 48) and a VCEK (EC P-384) that carries the KDS
extensions (structVersion, productName, blSPL..ucodeSPL, fmcSPL on Turin, hwID). It signs
reports exactly as the AMD-SP does: ECDSA P-384/SHA-384 over bytes 0x000..0x29F.

Its ARK is trusted by nobody by default. A verifier accepts kit evidence only when the ARK is
passed as an extra root (the ``insecure_`` setting, ``--insecure-test-root``), and then names
the root ``insecure-test-...`` in the claims, so such evidence can never pass for AMD's.

Generating two RSA-4096 keys takes seconds: create one kit and reuse it (``save``/``load``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from broker.evidence.snp.abi import (
    SIG_ALGO_ECDSA_P384_SHA384,
    SIGNED_SIZE,
    AttestationReport,
    EcdsaSignature,
    FirmwareVersion,
    GuestPolicy,
    PlatformInfo,
    SignerInfo,
    SigningKey,
    TcbParts,
    TcbVersion,
)
from broker.evidence.snp.endorsement import (
    OID_CSP_ID,
    OID_HWID,
    OID_PRODUCT_NAME,
    OID_STRUCT_VERSION,
    encode_hwid,
    encode_ia5,
    encode_integer,
    spl_layout,
    spl_oid,
)
from broker.evidence.snp.products import Product, cpuid_of
from broker.evidence.trust import TrustedRoot, insecure_root
from broker.privatefiles import write_private_bytes
from broker.simulate.crl import without_next_update

#: RSASSA-PSS as AMD signs ARK, ASK and VCEK certificates (SHA-384, MGF1-SHA-384, salt 48).
AMD_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
_ORGANIZATION = "keybroker synthetic AMD (insecure test chain)"
#: Default validity: wide enough that kit evidence verifies at any realistic instant, from
#: the fixed test instants of the suite to a demo run today.
DEFAULT_NOT_BEFORE = datetime(2020, 1, 1, tzinfo=UTC)
DEFAULT_NOT_AFTER = datetime(2049, 12, 31, tzinfo=UTC)
DEFAULT_TCB = TcbParts(bootloader=4, tee=0, snp=23, microcode=213)
DEFAULT_TURIN_TCB = TcbParts(bootloader=1, tee=1, snp=3, microcode=72, fmc=1)

_KEY_FILES = ("ark", "ask", "vcek")


def _name(common: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANIZATION),
        ]
    )


def _ca_certificate(
    subject: str,
    key: rsa.RSAPrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: rsa.RSAPrivateKey,
    serial: int,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer is not None else _name(subject))
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(DEFAULT_NOT_BEFORE)
        .not_valid_after(DEFAULT_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    return builder.sign(issuer_key, hashes.SHA384(), rsa_padding=AMD_PSS)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _hwid(product: Product, chip_id: bytes) -> bytes:
    """The VCEK hwID of a chip: CHIP_ID, of which Turin uses the first 8 bytes only."""
    return chip_id[: product.hwid_size]


def _endorsement_certificate(
    product: Product,
    ask: x509.Certificate,
    ask_key: rsa.RSAPrivateKey,
    key: ec.EllipticCurvePrivateKey,
    *,
    tcb: TcbParts,
    hwid: bytes | None,
    product_name: str | None = None,
    not_before: datetime = DEFAULT_NOT_BEFORE,
    not_after: datetime = DEFAULT_NOT_AFTER,
    serial: int | None = None,
    omit: Collection[x509.ObjectIdentifier] = (),
) -> x509.Certificate:
    """A VCEK (``hwid`` given) or VLEK (``hwid`` None) with AMD's KDS extensions, except
    those in ``omit``."""
    turin = product.is_turin
    amd: list[tuple[x509.ObjectIdentifier, bytes]] = [
        (OID_STRUCT_VERSION, encode_integer(1 if turin else 0)),
        (OID_PRODUCT_NAME, encode_ia5(product_name or f"{product.value}-B0")),
    ]
    for name, arc in spl_layout(turin):
        amd.append((spl_oid(arc), encode_integer(0 if name is None else getattr(tcb, name))))
    if hwid is not None:
        amd.append((OID_HWID, encode_hwid(hwid)))
    else:
        amd.append((OID_CSP_ID, encode_ia5("CN=keybroker-test-csp")))
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name("SEV-VCEK" if hwid is not None else "SEV-VLEK"))
        .issuer_name(ask.subject)
        .public_key(key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    for oid, value in amd:
        if oid in omit:
            continue
        builder = builder.add_extension(x509.UnrecognizedExtension(oid, value), critical=False)
    return builder.sign(ask_key, hashes.SHA384(), rsa_padding=AMD_PSS)


@dataclass(frozen=True)
class SnpKit:
    """A fake AMD ARK/ASK/VCEK for one product and one chip, and what they sign."""

    product: Product
    chip_id: bytes
    tcb: TcbParts
    ark_key: rsa.RSAPrivateKey
    ask_key: rsa.RSAPrivateKey
    vcek_key: ec.EllipticCurvePrivateKey
    ark: x509.Certificate
    ask: x509.Certificate
    vcek: x509.Certificate

    @classmethod
    def generate(
        cls,
        product: Product = Product.MILAN,
        *,
        chip_id: bytes | None = None,
        tcb: TcbParts | None = None,
        rsa_bits: int = 4096,
    ) -> SnpKit:
        """A new chain. ``chip_id`` defaults to random bytes (the first 8 only on Turin)."""
        if chip_id is None:
            chip_id = os.urandom(product.hwid_size).ljust(64, b"\0")
        if tcb is None:
            tcb = DEFAULT_TURIN_TCB if product.is_turin else DEFAULT_TCB
        ark_key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
        ask_key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
        ark = _ca_certificate(f"ARK-{product.value}", ark_key, None, ark_key, 0x10000)
        ask = _ca_certificate(f"SEV-{product.value}", ask_key, ark, ark_key, 0x10001)
        vcek_key = ec.generate_private_key(ec.SECP384R1())
        vcek = _endorsement_certificate(
            product, ask, ask_key, vcek_key, tcb=tcb, hwid=_hwid(product, chip_id)
        )
        return cls(product, chip_id, tcb, ark_key, ask_key, vcek_key, ark, ask, vcek)

    # --- certificates --------------------------------------------------------------------

    def issue_vcek(
        self,
        *,
        tcb: TcbParts | None = None,
        hwid: bytes | None = None,
        product_name: str | None = None,
        not_before: datetime = DEFAULT_NOT_BEFORE,
        not_after: datetime = DEFAULT_NOT_AFTER,
        serial: int | None = None,
        key: ec.EllipticCurvePrivateKey | None = None,
        kind: Literal["vcek", "vlek"] = "vcek",
        omit: Collection[x509.ObjectIdentifier] = (),
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """A VCEK (or VLEK) signed by the kit's ASK; defaults match the kit's chip and TCB.

        Tests use the parameters to make the variants a verifier must refuse.
        """
        key = key or ec.generate_private_key(ec.SECP384R1())
        cert = _endorsement_certificate(
            self.product,
            self.ask,
            self.ask_key,
            key,
            tcb=tcb or self.tcb,
            hwid=(hwid if hwid is not None else _hwid(self.product, self.chip_id))
            if kind == "vcek"
            else None,
            product_name=product_name,
            not_before=not_before,
            not_after=not_after,
            serial=serial,
            omit=omit,
        )
        return key, cert

    def issue_endorsement(
        self, extensions: Iterable[tuple[x509.ObjectIdentifier, bytes]]
    ) -> x509.Certificate:
        """A VCEK of the kit's key signed by its ASK that carries exactly ``extensions``
        (OID, DER value verbatim) as its AMD extensions: the fuzz campaign reaches the
        extension parsers and the TCB comparison through a valid chain."""
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name("SEV-VCEK"))
            .issuer_name(self.ask.subject)
            .public_key(self.vcek_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(DEFAULT_NOT_BEFORE)
            .not_valid_after(DEFAULT_NOT_AFTER)
        )
        for oid, value in extensions:
            extension = x509.UnrecognizedExtension(oid, value)
            builder = builder.add_extension(extension, critical=False)
        return builder.sign(self.ask_key, hashes.SHA384(), rsa_padding=AMD_PSS)

    def root(self, label: str = "snp-kit") -> TrustedRoot:
        """The kit's ARK as an *insecure* extra root (named ``insecure-test-<label>``)."""
        return insecure_root(self.ark, label)

    def cert_chain(self) -> bytes:
        """ASK then ARK, PEM: the shape of AMD KDS ``cert_chain``."""
        return _pem(self.ask) + _pem(self.ark)

    def collateral(self, vcek: x509.Certificate | None = None) -> dict[str, bytes]:
        """The collateral a verifier needs for kit evidence: ``vcek`` (DER) and ``cert_chain``."""
        cert = vcek or self.vcek
        return {
            "vcek": cert.public_bytes(serialization.Encoding.DER),
            "cert_chain": self.cert_chain(),
        }

    def crl(
        self,
        revoked: Iterable[x509.Certificate],
        *,
        issuer: Literal["ark", "ask"] = "ask",
        this_update: datetime = DEFAULT_NOT_BEFORE,
        next_update: datetime | None = DEFAULT_NOT_AFTER,
    ) -> bytes:
        """A DER CRL signed (RSASSA-PSS) by the ARK or the ASK listing ``revoked``; without
        nextUpdate when ``next_update`` is None."""
        signer, signer_key = (
            (self.ark, self.ark_key) if issuer == "ark" else (self.ask, self.ask_key)
        )
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(signer.subject)
            .last_update(this_update)
            .next_update(next_update or DEFAULT_NOT_AFTER)
        )
        for cert in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(cert.serial_number)
                .revocation_date(this_update)
                .build()
            )
        crl = builder.sign(signer_key, hashes.SHA384(), rsa_padding=AMD_PSS)
        encoded = crl.public_bytes(serialization.Encoding.DER)
        if next_update is None:
            return without_next_update(
                encoded, lambda tbs: signer_key.sign(tbs, AMD_PSS, hashes.SHA384())
            )
        return encoded

    # --- reports -------------------------------------------------------------------------

    def report(self, **overrides: Any) -> AttestationReport:
        """An unsigned report of this kit's chip: v3 with the product's CPUID by default.

        ``overrides`` are :class:`AttestationReport` field names, plus ``tcb`` (TcbParts for
        all four TCB fields). ``version=2`` drops the CPUID; ``version=5`` adds zero
        mitigation vectors unless given.
        """
        tcb = TcbVersion.compose(overrides.pop("tcb", self.tcb), self.product.is_turin)
        version = overrides.get("version", 3)
        defaults: dict[str, Any] = {
            "version": version,
            "guest_svn": 0,
            "policy": GuestPolicy(abi_minor=0, abi_major=1, smt=True),
            "family_id": bytes(16),
            "image_id": bytes(16),
            "vmpl": 0,
            "signature_algo": SIG_ALGO_ECDSA_P384_SHA384,
            "current_tcb": tcb,
            "platform_info": PlatformInfo(smt_enabled=True, tsme_enabled=True),
            "signer_info": SignerInfo(SigningKey.VCEK),
            "report_data": bytes(64),
            "measurement": bytes(48),
            "host_data": bytes(32),
            "id_key_digest": bytes(48),
            "author_key_digest": bytes(48),
            "report_id": bytes(32),
            "report_id_ma": b"\xff" * 32,
            "reported_tcb": tcb,
            "cpuid": None if version < 3 else cpuid_of(self.product),
            "chip_id": self.chip_id,
            "committed_tcb": tcb,
            "current_version": FirmwareVersion(major=1, minor=55, build=21),
            "committed_version": FirmwareVersion(major=1, minor=55, build=21),
            "launch_tcb": tcb,
            "launch_mit_vector": 0 if version >= 5 else None,
            "current_mit_vector": 0 if version >= 5 else None,
            "signature": EcdsaSignature(0, 0),
        }
        defaults.update(overrides)
        return AttestationReport(**defaults)

    def sign(
        self, report: AttestationReport, key: ec.EllipticCurvePrivateKey | None = None
    ) -> bytes:
        """The report's bytes with an AMD-SP style signature by ``key`` (default the VCEK)."""
        der = (key or self.vcek_key).sign(
            report.to_bytes()[:SIGNED_SIZE], ec.ECDSA(hashes.SHA384())
        )
        r, s = decode_dss_signature(der)
        return dataclasses.replace(report, signature=EcdsaSignature(r, s)).to_bytes()

    # --- files ---------------------------------------------------------------------------

    def save(self, directory: Path | str) -> None:
        """Write the kit as PEM files (private keys mode 0600) and ``kit.json``."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        for name in _KEY_FILES:
            (folder / f"{name}.pem").write_bytes(_pem(getattr(self, name)))
            key = getattr(self, f"{name}_key")
            write_private_bytes(
                folder / f"{name}.key",
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
            )
        meta = {
            "product": self.product.value,
            "chip_id": self.chip_id.hex(),
            "tcb": dataclasses.asdict(self.tcb),
        }
        (folder / "kit.json").write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path | str) -> SnpKit:
        folder = Path(directory)
        meta = json.loads((folder / "kit.json").read_text())
        certs = {
            name: x509.load_pem_x509_certificate((folder / f"{name}.pem").read_bytes())
            for name in _KEY_FILES
        }
        keys = {
            name: serialization.load_pem_private_key(
                (folder / f"{name}.key").read_bytes(), password=None
            )
            for name in _KEY_FILES
        }
        ark_key, ask_key, vcek_key = keys["ark"], keys["ask"], keys["vcek"]
        if not (
            isinstance(ark_key, rsa.RSAPrivateKey)
            and isinstance(ask_key, rsa.RSAPrivateKey)
            and isinstance(vcek_key, ec.EllipticCurvePrivateKey)
        ):
            raise ValueError(f"{folder}: kit keys are not RSA (ARK, ASK) and EC (VCEK)")
        return cls(
            product=Product(meta["product"]),
            chip_id=bytes.fromhex(meta["chip_id"]),
            tcb=TcbParts(**meta["tcb"]),
            ark_key=ark_key,
            ask_key=ask_key,
            vcek_key=vcek_key,
            ark=certs["ark"],
            ask=certs["ask"],
            vcek=certs["vcek"],
        )
