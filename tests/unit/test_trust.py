"""Shared chain checks: anchoring by bytes or by signature, validity, revocation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from broker.errors import CertificateExpired, CertificateRevoked, ChainInvalid
from broker.evidence.trust import (
    LinkCache,
    TrustedRoot,
    check_not_revoked,
    insecure_root,
    verify_chain,
)

START = datetime(2024, 1, 1, tzinfo=UTC)
NOW = START + timedelta(days=10)


def _cert(
    subject: str,
    issuer: str,
    key: ec.EllipticCurvePrivateKey,
    signer: ec.EllipticCurvePrivateKey,
    *,
    days: int = 365,
    serial: int = 7,
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(START)
        .not_valid_after(START + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(signer, hashes.SHA256())
    )


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def test_two_roots_with_one_name_anchor_the_chain_their_key_signed() -> None:
    first_key, second_key, leaf_key = _key(), _key(), _key()
    first = TrustedRoot("first", _cert("Root", "Root", first_key, first_key))
    second = TrustedRoot("second", _cert("Root", "Root", second_key, second_key))
    leaf = _cert("Leaf", "Root", leaf_key, second_key)
    assert verify_chain([("leaf", leaf)], [first, second], NOW, LinkCache()).name == "second"
    assert verify_chain([("leaf", leaf)], [second, first], NOW, LinkCache()).name == "second"
    with pytest.raises(ChainInvalid, match="is not signed by 'Root'"):
        verify_chain([("leaf", leaf)], [first], NOW, LinkCache())


def test_a_root_is_trusted_by_its_bytes_not_its_name() -> None:
    real_key, fake_key = _key(), _key()
    real = TrustedRoot("real", _cert("Root", "Root", real_key, real_key))
    impostor = _cert("Root", "Root", fake_key, fake_key)
    with pytest.raises(ChainInvalid):
        verify_chain([("root", impostor)], [real], NOW, LinkCache())
    assert verify_chain([("root", real.certificate)], [real], NOW, LinkCache()).name == "real"


def test_expired_links_are_refused_with_the_instant() -> None:
    root_key, leaf_key = _key(), _key()
    root = TrustedRoot("r", _cert("Root", "Root", root_key, root_key))
    leaf = _cert("Leaf", "Root", leaf_key, root_key, days=5)
    with pytest.raises(CertificateExpired, match="leaf certificate 'Leaf' expired at 2024-01-06"):
        verify_chain([("leaf", leaf)], [root], NOW, LinkCache())
    with pytest.raises(CertificateExpired, match="not valid before"):
        verify_chain([("leaf", leaf)], [root], START - timedelta(days=1), LinkCache())


def test_revocation_needs_a_crl_signed_by_the_issuer() -> None:
    root_key, leaf_key, other_key = _key(), _key(), _key()
    root = _cert("Root", "Root", root_key, root_key)
    leaf = _cert("Leaf", "Root", leaf_key, root_key, serial=42)

    def crl(
        signer: ec.EllipticCurvePrivateKey, serials: list[int]
    ) -> x509.CertificateRevocationList:
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(root.subject)
            .last_update(START)
            .next_update(START + timedelta(days=30))
        )
        for serial in serials:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(START)
                .build()
            )
        return builder.sign(signer, hashes.SHA256())

    check_not_revoked(leaf, crl(root_key, [1, 2]), root, "leaf", LinkCache())
    with pytest.raises(CertificateRevoked, match="serial 0x2a revoked"):
        check_not_revoked(leaf, crl(root_key, [42]), root, "leaf", LinkCache())
    with pytest.raises(ChainInvalid, match="CRL for leaf is not signed by 'Root'"):
        check_not_revoked(leaf, crl(other_key, [42]), root, "leaf", LinkCache())


def test_insecure_roots_are_named_so() -> None:
    key = _key()
    assert insecure_root(_cert("T", "T", key, key), "kit").name == "insecure-test-kit"
