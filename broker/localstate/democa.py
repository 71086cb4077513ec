"""The demo's TLS: a CA made for one state directory and the broker's certificate from it.

``make run TLS=1`` serves HTTPS with these (docs/boot.md, "HTTPS in the demo"): a guest
trusts the demo CA with ``--ca <state>/demo/tls/ca.pem``, or pins the broker's key with
``--pin-sha256``. The CA's private key is not kept: the server certificate is issued once,
when the directory is made, so nothing can issue another under this CA later. Nothing here is
meant for a deployment, whose certificate comes from its own CA.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from broker.privatefiles import write_private_bytes

#: Where a guest on this machine reaches the demo broker.
SERVER_NAMES = ("localhost",)
SERVER_ADDRESSES = ("127.0.0.1", "::1")
VALIDITY = timedelta(days=825)  # the longest a public TLS server certificate was allowed


@dataclass(frozen=True)
class DemoTls:
    ca_file: Path
    cert_file: Path
    key_file: Path

    @property
    def pin_sha256(self) -> str:
        """RFC 7469 pin of the broker's key: base64 SHA-256 of its SubjectPublicKeyInfo."""
        certificate = x509.load_pem_x509_certificate(self.cert_file.read_bytes())
        spki = certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def demo_tls(state_dir: Path) -> DemoTls:
    """The demo CA and server certificate under ``<state>/demo/tls``, made on first use."""
    folder = state_dir / "demo" / "tls"
    tls = DemoTls(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    if not (tls.ca_file.exists() and tls.cert_file.exists() and tls.key_file.exists()):
        folder.mkdir(parents=True, exist_ok=True)
        _issue(tls)
    return tls


def make_ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed P-256 CA that may issue end-entity certificates only."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    certificate = (
        _valid_now(x509.CertificateBuilder())
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return key, certificate


def issue(
    ca_key: ec.EllipticCurvePrivateKey,
    ca: x509.Certificate,
    common_name: str,
    *extensions: x509.ExtensionType,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A new P-256 key and its end-entity certificate from ``ca`` (extensions not critical)."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        _valid_now(x509.CertificateBuilder())
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def _valid_now(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = datetime.now(UTC)  # a leaf: no broker.timeutil
    return (
        builder.serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


def private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _issue(tls: DemoTls) -> None:
    ca_key, ca = make_ca("keybroker demo CA")
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in SERVER_NAMES]
    names += [x509.IPAddress(ipaddress.ip_address(address)) for address in SERVER_ADDRESSES]
    server_key, server = issue(
        ca_key,
        ca,
        "keybroker demo",
        x509.SubjectAlternativeName(names),
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
    )
    write_private_bytes(tls.key_file, private_pem(server_key))
    tls.cert_file.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    tls.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
