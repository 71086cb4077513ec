"""Shared chain checks: anchoring by bytes or by signature, validity, revocation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from broker.errors import (
    CertificateExpired,
    CertificateRevoked,
    ChainInvalid,
    CollateralExpired,
    CollateralInvalid,
    ConfigurationError,
    MalformedEvidence,
)
from broker.evidence import der, trust
from broker.evidence.nitro import roots as nitro_roots
from broker.evidence.trust import (
    LinkCache,
    TrustedRoot,
    check_not_revoked,
    fingerprint,
    insecure_root,
    load_certificates,
    load_crls,
    load_der_certificate,
    load_pinned_certificate,
    load_pinned_root,
    verify_chain,
)
from broker.simulate.crl import without_next_update

_ECDSA = ec.ECDSA(hashes.SHA256())
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
    not_before: datetime = START,
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_before + timedelta(days=days))
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


def test_a_root_outside_its_validity_ends_no_chain() -> None:
    # The leaf is valid at each instant below; only the root (anchored by signature, not in
    # the chain passed) is not.
    root_key, leaf_key = _key(), _key()
    leaf_not_before = START - timedelta(days=100)
    expired = TrustedRoot("r", _cert("Root", "Root", root_key, root_key, days=5))
    leaf = _cert("Leaf", "Root", leaf_key, root_key, not_before=leaf_not_before, days=400)
    with pytest.raises(CertificateExpired, match=r"^root certificate 'Root' expired at 2024-01-06"):
        verify_chain([("leaf", leaf)], [expired], NOW, LinkCache())
    future = TrustedRoot("r", _cert("Root", "Root", root_key, root_key, not_before=NOW))
    with pytest.raises(CertificateExpired, match=r"^root certificate 'Root' is not valid before"):
        verify_chain([("leaf", leaf)], [future], NOW - timedelta(days=1), LinkCache())
    assert verify_chain([("leaf", leaf)], [future], NOW, LinkCache()) is future


def test_pinned_certificates_are_checked_against_their_fingerprint() -> None:
    args = (nitro_roots.PACKAGE, nitro_roots.AWS_NITRO_ROOT_G1_FILE, "nitro")
    pinned = nitro_roots.AWS_NITRO_ROOT_G1_SHA256
    assert load_pinned_root(*args, pinned.upper()).fingerprint == pinned
    colons = ":".join(pinned[i : i + 2] for i in range(0, len(pinned), 2))
    assert fingerprint(load_pinned_certificate(*args, colons)) == pinned
    wrong = "00" * 32
    match = rf"^pinned certificate nitro: SHA-256 {pinned} != pinned {wrong}$"
    with pytest.raises(ConfigurationError, match=match):
        load_pinned_root(*args, wrong)
    with pytest.raises(ConfigurationError, match=match):
        load_pinned_certificate(*args, wrong)


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

    check_not_revoked(leaf, crl(root_key, [1, 2]), root, "leaf", LinkCache(), now=NOW)
    with pytest.raises(CertificateRevoked, match="serial 0x2a revoked"):
        check_not_revoked(leaf, crl(root_key, [42]), root, "leaf", LinkCache(), now=NOW)
    with pytest.raises(CollateralInvalid, match="CRL for leaf is not signed by 'Root'"):
        check_not_revoked(leaf, crl(other_key, [42]), root, "leaf", LinkCache(), now=NOW)


def test_insecure_roots_are_named_so() -> None:
    key = _key()
    assert insecure_root(_cert("T", "T", key, key), "kit").name == "insecure-test-kit"


# --- loaders ----------------------------------------------------------------------------------


def _crl_der(key: ec.EllipticCurvePrivateKey, serials: list[int]) -> bytes:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Root")]))
        .last_update(START)
        .next_update(START + timedelta(days=30))
    )
    for serial in serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(START).build()
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)


def test_crls_in_der_pem_bundles_and_nul_terminated() -> None:
    key = _key()
    first, second = _crl_der(key, [1]), _crl_der(key, [2, 3])
    pem = b"".join(x509.load_der_x509_crl(d).public_bytes(Encoding.PEM) for d in (first, second))
    assert [next(iter(crl)).serial_number for crl in load_crls(pem + b"\n\x00")] == [1, 2]
    assert load_crls(first) == load_crls(first + b"\x00\x00") == [x509.load_der_x509_crl(first)]
    with pytest.raises(MalformedEvidence, match=r"^DER CRL does not parse: .*ExtraData"):
        load_crls(first + b"\x00\x01")
    with pytest.raises(MalformedEvidence, match=r"^DER CRL does not parse: .*ShortData"):
        load_crls(first[:-3])
    with pytest.raises(MalformedEvidence, match=r"^DER CRL does not parse"):
        load_crls(b"")
    with pytest.raises(MalformedEvidence, match=r"^PEM CRL bundle does not parse"):
        load_crls(pem + b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n")


def test_der_certificates_take_only_a_nul_terminator() -> None:
    key = _key()
    cert = _cert("Root", "Root", key, key)
    data = cert.public_bytes(Encoding.DER)
    assert load_certificates(data + b"\x00") == [cert]
    with pytest.raises(MalformedEvidence, match=r"^certificate does not parse"):
        load_certificates(data + b"\x00 ")
    # A certificate inside evidence (Nitro's cabundle) is DER, byte for byte: no PEM, no NUL.
    assert load_der_certificate(data) == cert
    with pytest.raises(MalformedEvidence, match=r"^certificate does not parse"):
        load_der_certificate(cert.public_bytes(Encoding.PEM))
    with pytest.raises(MalformedEvidence, match=r"^certificate does not parse"):
        load_der_certificate(data + b"\x00")


def test_strip_terminator_keeps_what_is_not_a_terminator() -> None:
    assert der.strip_terminator(b"\x30\x01\x00\x00\x00") == b"\x30\x01\x00"
    assert der.strip_terminator(b"\x30\x01\x00\x00\x01") == b"\x30\x01\x00\x00\x01"
    assert der.strip_terminator(b"\x30\x05\x00\x00") == b"\x30\x05\x00\x00"  # truncated
    assert der.strip_terminator(b"") == b""


# --- the one CRL check ------------------------------------------------------------------------


def test_crl_check_order_issuer_signature_window_listing() -> None:
    root_key, leaf_key, other_key = _key(), _key(), _key()
    root = _cert("Root", "Root", root_key, root_key)
    leaf = _cert("Leaf", "Root", leaf_key, root_key, serial=2)
    crl = x509.load_der_x509_crl(_crl_der(root_key, [2]))
    links = LinkCache()
    with pytest.raises(CollateralInvalid, match=r"^root_crl issuer 'Root' != 'Leaf'$"):
        check_not_revoked(leaf, crl, leaf, "leaf", links, now=NOW, name="root_crl")
    forged = x509.load_der_x509_crl(_crl_der(other_key, [2]))
    with pytest.raises(CollateralInvalid, match=r"^CRL for leaf is not signed by 'Root'"):
        check_not_revoked(leaf, forged, root, "leaf", links, now=START - timedelta(days=1))
    # The signature is checked before the window, the window before the listing.
    with pytest.raises(CollateralExpired, match=r"^CRL for leaf thisUpdate 2024-01-01T00:00:00Z"):
        check_not_revoked(leaf, crl, root, "leaf", links, now=START - timedelta(seconds=1))
    with pytest.raises(CollateralExpired, match=r"^CRL for leaf nextUpdate 2024-01-31T00:00:00Z"):
        check_not_revoked(leaf, crl, root, "leaf", links, now=START + timedelta(days=31))
    with pytest.raises(CertificateRevoked, match=r"^leaf certificate 'Leaf' serial 0x2 revoked"):
        check_not_revoked(leaf, crl, root, "leaf", links, now=NOW)
    assert len(links) == 1  # the verified (CRL, issuer) pair, remembered once


def test_a_crl_without_next_update_is_invalid() -> None:
    root_key = _key()
    root = _cert("Root", "Root", root_key, root_key)
    data = without_next_update(_crl_der(root_key, []), lambda tbs: root_key.sign(tbs, _ECDSA))
    [crl] = load_crls(data)
    assert crl.next_update_utc is None
    with pytest.raises(CollateralInvalid, match=r"^CRL for leaf has no nextUpdate$"):
        check_not_revoked(root, crl, root, "leaf", LinkCache(), now=NOW)


def test_a_remembered_certificate_link_does_not_answer_a_crl_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The two checks are remembered apart: even were a certificate and a CRL to share a
    fingerprint (they cannot share DER), a verified certificate link would not pass a CRL
    that its issuer did not sign."""
    root_key, other_key = _key(), _key()
    root = _cert("Root", "Root", root_key, root_key)
    child = _cert("Child", "Root", _key(), root_key)
    forged = x509.load_der_x509_crl(_crl_der(other_key, [2]))
    monkeypatch.setattr(trust._DIGESTS, "digest", lambda signed: b"one fingerprint for all")
    links = LinkCache()

    def crl_check() -> None:
        check_not_revoked(child, forged, root, "child", links, now=NOW)

    with pytest.raises(CollateralInvalid, match="is not signed by 'Root'") as uncached:
        crl_check()
    links.verify_link(child, root, "child")
    with pytest.raises(CollateralInvalid) as cached:
        crl_check()
    assert cached.value.detail == uncached.value.detail


def test_a_der_crl_is_remembered_under_its_fingerprint() -> None:
    """The loader hashes the DER it parsed instead of having the CRL encoded again: the same
    digest ``fingerprint`` gives, for every real CRL of the vectors."""
    vectors = Path(__file__).resolve().parents[1] / "vectors"
    paths = sorted(vectors.glob("*/*/*crl*.der"))
    assert len(paths) >= 4
    for path in paths:
        [crl] = load_crls(path.read_bytes() + b"\x00")
        assert trust._DIGESTS.digest(crl) == crl.fingerprint(hashes.SHA256()), path.name


def _with_revocation_date(crl: bytes, time: der.Tlv, key: ec.EllipticCurvePrivateKey) -> bytes:
    """``crl`` (DER) with every entry's revocationDate replaced by ``time``, signed again."""
    tbs, algorithm, _ = der.children(der.parse_one(crl, der.TAG_SEQUENCE, "CRL"), "CRL")
    fields = []
    for field in der.children(tbs.value, "tbsCertList"):
        if field.tag == der.TAG_SEQUENCE and field.value[:1] == b"\x30":  # revokedCertificates
            entries = []
            for entry in der.children(field.value, "entries"):
                serial, _, *rest = der.children(entry.value, "entry")
                parts = (serial, time, *rest)
                entries.append(
                    der.encode_tlv(0x30, b"".join(der.encode_tlv(p.tag, p.value) for p in parts))
                )
            field = der.Tlv(der.TAG_SEQUENCE, b"".join(entries))  # noqa: PLW2901
        fields.append(field)
    unsigned = der.encode_tlv(0x30, b"".join(der.encode_tlv(f.tag, f.value) for f in fields))
    signature = der.encode_tlv(0x03, b"\x00" + key.sign(unsigned, _ECDSA))
    return der.encode_tlv(
        0x30, unsigned + der.encode_tlv(algorithm.tag, algorithm.value) + signature
    )


def test_an_entry_dated_where_python_has_no_year_still_revokes() -> None:
    """Entries are looked up, not read one by one, when a CRL is loaded: an entry whose date
    Python cannot hold (GeneralizedTime year 0, which pyca/cryptography parses) leaves the
    list usable, and a certificate it lists is revoked all the same, without the date."""
    root_key, leaf_key = _key(), _key()
    root = _cert("Root", "Root", root_key, root_key)
    year_zero = der.Tlv(0x18, b"00000101000000Z")
    [crl] = load_crls(_with_revocation_date(_crl_der(root_key, [42]), year_zero, root_key))
    listed = _cert("Leaf", "Root", leaf_key, root_key, serial=42)
    with pytest.raises(CertificateRevoked, match=r"^leaf certificate 'Leaf' serial 0x2a revoked$"):
        check_not_revoked(listed, crl, root, "leaf", LinkCache(), now=NOW)
    unlisted = _cert("Leaf", "Root", leaf_key, root_key, serial=43)
    check_not_revoked(unlisted, crl, root, "leaf", LinkCache(), now=NOW)
