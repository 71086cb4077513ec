"""A fake AWS Nitro attestation PKI that signs attestation documents like the NSM does.

The chain has AWS's shape and algorithms (EC P-384 keys, ecdsa-with-SHA384, CA constraints,
a fresh end-entity certificate per document that lives three hours), with one intermediate
where AWS has three (regional, zonal, instance). Documents are COSE_Sign1/ES384 with the NSM's
payload encoding (``AttestationDocument.to_bytes``).

Nothing here is trusted by default: the verifier accepts these documents only when the root is
passed in ``extra_roots`` (``FakeNitroAuthority.trusted_root()``, named
``insecure-test-nitro-sim``). The authority can be saved to and loaded from a directory of PEM
files (private keys unencrypted, mode 0600), so a simulated enclave and a broker started with
an ``insecure_`` test-root setting can share it.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypedDict, Unpack

import cbor2
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from broker.errors import ConfigurationError
from broker.evidence.nitro.abi import (
    COSE_ALG_ES384,
    COSE_HEADER_ALG,
    ES384_SIGNATURE_SIZE,
    AttestationDocument,
    CoseSign1,
)
from broker.evidence.trust import TrustedRoot, insecure_root
from broker.privatefiles import write_private_bytes

#: Label of the simulator's root; as a trusted root it is named ``insecure-test-nitro-sim``.
SIMULATOR_LABEL = "nitro-sim"
#: AWS end-entity certificates for documents are valid for three hours (real documents).
LEAF_LIFETIME = timedelta(hours=3)
#: Default validity of the fake root and intermediate: 2020 to 2050, deterministic for tests.
DEFAULT_NOT_BEFORE = datetime(2020, 1, 1, tzinfo=UTC)
DEFAULT_CA_LIFETIME = timedelta(days=30 * 365)
DEFAULT_MODULE_ID = "i-0123456789abcdef0-enc0123456789abcdef"

_CURVE = ec.SECP384R1()
_HASH = hashes.SHA384()
_ORGANISATION = "keybroker simulator (insecure test PKI)"
_FILES = {
    "root": "root.pem",
    "root_key": "root-key.pem",
    "intermediate": "intermediate.pem",
    "intermediate_key": "intermediate-key.pem",
}


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANISATION),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "insecure-test"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def make_certificate(
    *,
    common_name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    not_before: datetime,
    lifetime: timedelta,
    ca: bool | None,
    path_length: int | None = None,
) -> x509.Certificate:
    """One certificate with AWS's Nitro profile.

    ``issuer`` None makes it self-signed. ``ca`` True: basicConstraints cA (with
    ``path_length``) and keyUsage keyCertSign/cRLSign/digitalSignature, as the AWS root and
    intermediates; False: an end-entity with cA FALSE and keyUsage digitalSignature and
    nonRepudiation, as the AWS document certificate; None: no such extensions at all.
    """
    subject = _name(common_name)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if issuer is None else issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + lifetime)
    )
    if ca is not None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True
        )
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=not ca,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=ca,
        )
    return builder.sign(issuer_key, _HASH)


class DocumentFields(TypedDict, total=False):
    """The optional fields of a synthetic document (absent: null, as the NSM writes them)."""

    nonce: bytes | None
    public_key: bytes | None
    user_data: bytes | None
    module_id: str


@dataclass(frozen=True, slots=True)
class NitroLeaf:
    """The end-entity key and certificate that sign one document (as the NSM's per-document
    certificate)."""

    key: ec.EllipticCurvePrivateKey = field(repr=False)
    certificate: x509.Certificate


def sign_cose(payload: bytes, key: ec.EllipticCurvePrivateKey, *, tagged: bool = False) -> bytes:
    """A COSE_Sign1 (ES384, empty unprotected header) of ``payload`` bytes, signed by ``key``."""
    protected: bytes = cbor2.dumps({COSE_HEADER_ALG: COSE_ALG_ES384})
    unsigned = CoseSign1(
        protected=protected, payload=payload, signature=b"", tagged=tagged
    ).sig_structure()
    r, s = decode_dss_signature(key.sign(unsigned, ec.ECDSA(_HASH)))
    half = ES384_SIGNATURE_SIZE // 2
    signature = r.to_bytes(half, "big") + s.to_bytes(half, "big")
    return CoseSign1(
        protected=protected, payload=payload, signature=signature, tagged=tagged
    ).to_bytes()


@dataclass(frozen=True, slots=True)
class FakeNitroAuthority:
    """A test root and intermediate (EC P-384) that issue document certificates and sign."""

    root_key: ec.EllipticCurvePrivateKey = field(repr=False)
    root: x509.Certificate
    intermediate_key: ec.EllipticCurvePrivateKey = field(repr=False)
    intermediate: x509.Certificate

    @classmethod
    def generate(
        cls,
        *,
        not_before: datetime = DEFAULT_NOT_BEFORE,
        lifetime: timedelta = DEFAULT_CA_LIFETIME,
    ) -> FakeNitroAuthority:
        root_key = ec.generate_private_key(_CURVE)
        root = make_certificate(
            common_name="simulated.nitro-enclaves",
            key=root_key,
            issuer=None,
            issuer_key=root_key,
            not_before=not_before,
            lifetime=lifetime,
            ca=True,
        )
        intermediate_key = ec.generate_private_key(_CURVE)
        intermediate = make_certificate(
            common_name=f"{secrets.token_hex(8)}.sim-region.simulated.nitro-enclaves",
            key=intermediate_key,
            issuer=root,
            issuer_key=root_key,
            not_before=not_before,
            lifetime=lifetime,
            ca=True,
            path_length=0,
        )
        return cls(root_key, root, intermediate_key, intermediate)

    def trusted_root(self) -> TrustedRoot:
        """The root to pass as ``extra_roots`` (named ``insecure-test-nitro-sim``)."""
        return insecure_root(self.root, SIMULATOR_LABEL)

    @property
    def cabundle(self) -> tuple[bytes, ...]:
        """DER certificates from the root towards the leaf's issuer, as in a document."""
        return (_der(self.root), _der(self.intermediate))

    def issue_leaf(
        self,
        *,
        module_id: str = DEFAULT_MODULE_ID,
        not_before: datetime,
        lifetime: timedelta = LEAF_LIFETIME,
        key: ec.EllipticCurvePrivateKey | None = None,
    ) -> NitroLeaf:
        """A document-signing certificate (P-384 unless ``key`` says otherwise)."""
        key = ec.generate_private_key(_CURVE) if key is None else key
        certificate = make_certificate(
            common_name=f"{module_id}.sim-region.aws",
            key=key,
            issuer=self.intermediate,
            issuer_key=self.intermediate_key,
            not_before=not_before,
            lifetime=lifetime,
            ca=False,
        )
        return NitroLeaf(key=key, certificate=certificate)

    def build(
        self, *, pcrs: Mapping[int, bytes], timestamp: datetime, **fields: Unpack[DocumentFields]
    ) -> tuple[AttestationDocument, NitroLeaf]:
        """An unsigned document and the fresh leaf that will sign it.

        The leaf becomes valid three seconds before ``timestamp`` (truncated to the second), as
        in the real documents, and lives ``LEAF_LIFETIME``.
        """
        if timestamp.tzinfo is None:
            raise ValueError("timestamp must be timezone-aware")
        module_id = fields.get("module_id", DEFAULT_MODULE_ID)
        leaf = self.issue_leaf(
            module_id=module_id,
            not_before=timestamp.replace(microsecond=0) - timedelta(seconds=3),
        )
        document = AttestationDocument(
            module_id=module_id,
            digest="SHA384",
            timestamp=int(timestamp.timestamp() * 1000),
            pcrs=dict(pcrs),
            certificate=_der(leaf.certificate),
            cabundle=self.cabundle,
            public_key=fields.get("public_key"),
            user_data=fields.get("user_data"),
            nonce=fields.get("nonce"),
        )
        return document, leaf

    @staticmethod
    def sign(document: AttestationDocument, leaf: NitroLeaf, *, tagged: bool = False) -> bytes:
        """The COSE_Sign1 bytes of ``document`` signed with ``leaf``'s key."""
        return sign_cose(document.to_bytes(), leaf.key, tagged=tagged)

    def sign_document(
        self,
        *,
        pcrs: Mapping[int, bytes],
        timestamp: datetime,
        tagged: bool = False,
        **fields: Unpack[DocumentFields],
    ) -> bytes:
        """A complete signed attestation document (what an enclave's NSM would return)."""
        document, leaf = self.build(pcrs=pcrs, timestamp=timestamp, **fields)
        return self.sign(document, leaf, tagged=tagged)

    # --- Persistence ----------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        """Write the chain as PEM; private keys unencrypted with mode 0600."""
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        (directory / _FILES["root"]).write_bytes(_pem(self.root))
        (directory / _FILES["intermediate"]).write_bytes(_pem(self.intermediate))
        _write_private(directory / _FILES["root_key"], self.root_key)
        _write_private(directory / _FILES["intermediate_key"], self.intermediate_key)

    @classmethod
    def load(cls, directory: Path) -> FakeNitroAuthority:
        """Read a saved authority; ``ConfigurationError`` when files are missing or disagree."""
        root = _read_certificate(directory / _FILES["root"])
        intermediate = _read_certificate(directory / _FILES["intermediate"])
        root_key = _read_private(directory / _FILES["root_key"])
        intermediate_key = _read_private(directory / _FILES["intermediate_key"])
        pairs = {"root": (root_key, root), "intermediate": (intermediate_key, intermediate)}
        for what, (key, cert) in pairs.items():
            if key.public_key() != cert.public_key():
                raise ConfigurationError(f"{directory}: {what} key does not match its certificate")
        try:
            intermediate.verify_directly_issued_by(root)
        except (ValueError, TypeError, InvalidSignature):
            raise ConfigurationError(f"{directory}: intermediate is not issued by root") from None
        return cls(root_key, root, intermediate_key, intermediate)


def _der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _write_private(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private_bytes(path, data)


def _read_certificate(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"{path}: not a readable PEM certificate: {exc}") from None


def _read_private(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        if path.stat().st_mode & 0o077:
            raise ConfigurationError(f"{path}: private key is readable by others; chmod 600 it")
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigurationError(f"{path}: not a readable PEM private key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigurationError(f"{path}: not an EC private key")
    return key
