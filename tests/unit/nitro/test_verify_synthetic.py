"""Every verifier check, exercised with documents the synthetic Nitro PKI signs."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from broker.errors import (
    CertificateExpired,
    ChainInvalid,
    MalformedEvidence,
    SignatureInvalid,
    UnsupportedEvidence,
)
from broker.evidence.nitro.abi import AttestationDocument
from broker.evidence.nitro.verify import verify
from broker.evidence.trust import TrustedRoot
from broker.simulate.nitro import (
    DEFAULT_CA_LIFETIME,
    DEFAULT_NOT_BEFORE,
    LEAF_LIFETIME,
    FakeNitroAuthority,
    NitroLeaf,
    make_certificate,
    sign_cose,
)
from tests.unit.nitro.vectors import DEBUG_PCRS, PRODUCTION, PRODUCTION_PCRS, SYNTHETIC_AT

NONCE = bytes(range(32))
LEAF_NOT_BEFORE = SYNTHETIC_AT - timedelta(seconds=3)


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _roots(authority: FakeNitroAuthority) -> list[TrustedRoot]:
    return [authority.trusted_root()]


def _build(authority: FakeNitroAuthority) -> tuple[AttestationDocument, NitroLeaf]:
    return authority.build(pcrs=PRODUCTION_PCRS, timestamp=SYNTHETIC_AT, nonce=NONCE)


def _verify(authority: FakeNitroAuthority, data: bytes) -> None:
    verify(data, {}, now=SYNTHETIC_AT, extra_roots=_roots(authority))


# --- The kit's documents verify only through extra_roots -----------------------------------


def test_synthetic_document_verifies_with_extra_roots(authority: FakeNitroAuthority) -> None:
    public_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    data = authority.sign_document(
        pcrs=PRODUCTION_PCRS,
        timestamp=SYNTHETIC_AT,
        nonce=NONCE,
        public_key=spki,
        user_data=b"app",
    )
    claims = verify(data, {}, now=SYNTHETIC_AT, extra_roots=_roots(authority))
    assert claims.signer.root == "insecure-test-nitro-sim"
    assert claims.signer.origin.value == "infrastructure-provider"
    assert claims.debug is False
    assert claims.evidence_time == SYNTHETIC_AT
    assert claims.lookup("nonce") == NONCE.hex()
    assert claims.lookup("public_key") == spki.hex()
    assert claims.lookup("user_data") == b"app".hex()
    assert claims.lookup("pcrs.8") == PRODUCTION_PCRS[8].hex()
    assert claims.lookup("module_id") == "i-0123456789abcdef0-enc0123456789abcdef"


def test_synthetic_document_without_extra_roots_is_chain_invalid(
    authority: FakeNitroAuthority,
) -> None:
    data = authority.sign_document(pcrs=PRODUCTION_PCRS, timestamp=SYNTHETIC_AT)
    with pytest.raises(ChainInvalid, match=r"cabundle\[0\] .* does not chain to a pinned root"):
        verify(data, {}, now=SYNTHETIC_AT)


def test_another_test_root_is_not_enough(authority: FakeNitroAuthority) -> None:
    data = authority.sign_document(pcrs=PRODUCTION_PCRS, timestamp=SYNTHETIC_AT)
    other = FakeNitroAuthority.generate()
    with pytest.raises(ChainInvalid):
        verify(data, {}, now=SYNTHETIC_AT, extra_roots=_roots(other))


def test_extra_roots_do_not_replace_the_pinned_root(authority: FakeNitroAuthority) -> None:
    claims = verify(PRODUCTION.data, {}, now=PRODUCTION.at, extra_roots=_roots(authority))
    assert claims.signer.root == "aws-nitro-enclaves-root-g1"


def test_debug_pcrs_make_a_debug_document(authority: FakeNitroAuthority) -> None:
    data = authority.sign_document(pcrs=DEBUG_PCRS, timestamp=SYNTHETIC_AT, tagged=True)
    assert verify(data, {}, now=SYNTHETIC_AT, extra_roots=_roots(authority)).debug is True


def test_one_zero_pcr_is_not_debug(authority: FakeNitroAuthority) -> None:
    pcrs = PRODUCTION_PCRS | {0: bytes(48)}
    data = authority.sign_document(pcrs=pcrs, timestamp=SYNTHETIC_AT)
    assert verify(data, {}, now=SYNTHETIC_AT, extra_roots=_roots(authority)).debug is False


# --- Time ------------------------------------------------------------------------------------


def test_leaf_lives_three_hours(authority: FakeNitroAuthority) -> None:
    data = authority.sign_document(pcrs=PRODUCTION_PCRS, timestamp=SYNTHETIC_AT)
    roots = _roots(authority)
    verify(data, {}, now=SYNTHETIC_AT + timedelta(hours=2, minutes=59), extra_roots=roots)
    with pytest.raises(CertificateExpired, match="leaf certificate"):
        verify(data, {}, now=SYNTHETIC_AT + timedelta(hours=3), extra_roots=roots)


def test_expired_intermediate() -> None:
    short = FakeNitroAuthority.generate(
        not_before=SYNTHETIC_AT - timedelta(days=2), lifetime=timedelta(days=1)
    )
    data = short.sign_document(pcrs=PRODUCTION_PCRS, timestamp=SYNTHETIC_AT)
    with pytest.raises(CertificateExpired, match=r"cabundle\[1\] certificate .* expired"):
        verify(data, {}, now=SYNTHETIC_AT, extra_roots=_roots(short))


def test_timestamp_beyond_the_year_9999(authority: FakeNitroAuthority) -> None:
    document, leaf = _build(authority)
    data = authority.sign(replace(document, timestamp=2**64 - 1), leaf)
    with pytest.raises(MalformedEvidence, match="after the year 9999"):
        _verify(authority, data)


# --- Content checks on authentic documents ---------------------------------------------------


def test_digest_other_than_sha384_is_unsupported(authority: FakeNitroAuthority) -> None:
    document, leaf = _build(authority)
    data = authority.sign(replace(document, digest="SHA256"), leaf)
    with pytest.raises(UnsupportedEvidence, match="digest 'SHA256' != 'SHA384'"):
        _verify(authority, data)


def test_pcr_size_must_match_sha384(authority: FakeNitroAuthority) -> None:
    document, leaf = _build(authority)
    pcrs = dict(document.pcrs) | {3: b"\x03" * 32}
    data = authority.sign(replace(document, pcrs=pcrs), leaf)
    with pytest.raises(MalformedEvidence, match=r"pcrs\[3\] is 32 bytes != 48 \(digest SHA384\)"):
        _verify(authority, data)


@pytest.mark.parametrize("missing", [0, 1, 2])
def test_pcr0_to_2_must_be_present(authority: FakeNitroAuthority, missing: int) -> None:
    document, leaf = _build(authority)
    pcrs = {i: v for i, v in document.pcrs.items() if i != missing}
    data = authority.sign(replace(document, pcrs=pcrs), leaf)
    with pytest.raises(MalformedEvidence, match=f"pcrs lacks PCR{missing}"):
        _verify(authority, data)


# --- Signature -------------------------------------------------------------------------------


def test_signature_by_another_key_is_signature_invalid(authority: FakeNitroAuthority) -> None:
    document, _ = _build(authority)
    intruder = ec.generate_private_key(ec.SECP384R1())
    data = sign_cose(document.to_bytes(), intruder)
    with pytest.raises(SignatureInvalid, match="does not verify with the key of leaf certificate"):
        _verify(authority, data)


def test_leaf_key_must_be_p384(authority: FakeNitroAuthority) -> None:
    document, _ = _build(authority)
    leaf = authority.issue_leaf(
        not_before=LEAF_NOT_BEFORE, key=ec.generate_private_key(ec.SECP256R1())
    )
    data = authority.sign(replace(document, certificate=_der(leaf.certificate)), leaf)
    with pytest.raises(UnsupportedEvidence, match="key is secp256r1; ES384 needs an EC P-384"):
        _verify(authority, data)


def test_leaf_without_constraints_is_accepted(authority: FakeNitroAuthority) -> None:
    """basicConstraints and keyUsage are optional on an end-entity (RFC 5280)."""
    leaf, key = _issue("bare-leaf", _kit(authority)[1], ca=None)
    _verify(authority, _chain_document(authority, authority.cabundle, leaf, key))


# --- Chain shape and X.509 profile -----------------------------------------------------------


def _chain_document(
    authority: FakeNitroAuthority,
    cabundle: tuple[bytes, ...],
    leaf: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
) -> bytes:
    document, _ = _build(authority)
    return sign_cose(replace(document, certificate=_der(leaf), cabundle=cabundle).to_bytes(), key)


Issued = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


def _issue(
    common_name: str, issuer: Issued | None, *, ca: bool | None, path_length: int | None = None
) -> Issued:
    """A fresh P-384 key and its certificate from ``issuer`` (None: self-signed).

    CAs get the kit's 2020-2050 validity; end-entities (``ca`` not True) the three-hour window
    around the synthetic instant.
    """
    key = ec.generate_private_key(ec.SECP384R1())
    issuer_cert, issuer_key = (None, key) if issuer is None else issuer
    window = (DEFAULT_NOT_BEFORE, DEFAULT_CA_LIFETIME) if ca else (LEAF_NOT_BEFORE, LEAF_LIFETIME)
    cert = make_certificate(
        common_name=common_name,
        key=key,
        issuer=issuer_cert,
        issuer_key=issuer_key,
        not_before=window[0],
        lifetime=window[1],
        ca=ca,
        path_length=path_length,
    )
    return cert, key


def _kit(authority: FakeNitroAuthority) -> tuple[Issued, Issued]:
    return (authority.root, authority.root_key), (
        authority.intermediate,
        authority.intermediate_key,
    )


def test_bundle_without_the_root_is_anchored_by_issuer(authority: FakeNitroAuthority) -> None:
    document, leaf = _build(authority)
    data = authority.sign(replace(document, cabundle=(_der(authority.intermediate),)), leaf)
    _verify(authority, data)


def test_bundle_in_the_wrong_order_is_chain_invalid(authority: FakeNitroAuthority) -> None:
    document, leaf = _build(authority)
    reversed_bundle = tuple(reversed(document.cabundle))
    data = authority.sign(replace(document, cabundle=reversed_bundle), leaf)
    with pytest.raises(ChainInvalid, match="is not signed by"):
        _verify(authority, data)


def test_forged_root_with_the_same_name_is_chain_invalid(authority: FakeNitroAuthority) -> None:
    forged_root = _issue("simulated.nitro-enclaves", None, ca=True)
    intermediate = _issue("forged-intermediate", forged_root, ca=True)
    leaf, key = _issue("leaf", intermediate, ca=False)
    data = _chain_document(authority, (_der(forged_root[0]), _der(intermediate[0])), leaf, key)
    with pytest.raises(ChainInvalid, match=r"cabundle\[0\] certificate 'simulated"):
        _verify(authority, data)


@pytest.mark.parametrize("ca", [False, None], ids=["ca-false", "no-basic-constraints"])
def test_intermediate_must_be_a_ca(authority: FakeNitroAuthority, ca: bool | None) -> None:
    intermediate = _issue("intermediate-under-test", _kit(authority)[0], ca=ca)
    # A non-CA "intermediate" gets the short window too; it still covers the instant.
    leaf, key = _issue("leaf", intermediate, ca=False)
    data = _chain_document(authority, (_der(authority.root), _der(intermediate[0])), leaf, key)
    with pytest.raises(ChainInvalid, match=r"cabundle\[1\] .* is not a CA"):
        _verify(authority, data)


def test_path_length_is_enforced(authority: FakeNitroAuthority) -> None:
    """The kit's intermediate has pathLenConstraint 0: no CA may sit below it."""
    sub_ca = _issue("sub-ca", _kit(authority)[1], ca=True)
    leaf, key = _issue("leaf", sub_ca, ca=False)
    bundle = (*authority.cabundle, _der(sub_ca[0]))
    with pytest.raises(ChainInvalid, match=r"cabundle\[1\] .* pathLenConstraint 0 < 1"):
        _verify(authority, _chain_document(authority, bundle, leaf, key))


def test_leaf_must_not_be_a_ca(authority: FakeNitroAuthority) -> None:
    leaf, key = _issue("leaf", _kit(authority)[1], ca=True)
    data = _chain_document(authority, authority.cabundle, leaf, key)
    with pytest.raises(ChainInvalid, match="leaf certificate 'leaf' is a CA"):
        _verify(authority, data)


def _with_key_usage(
    issuer: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    digital_signature: bool,
    key_cert_sign: bool,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "key-usage-under-test")])
    usage = x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(LEAF_NOT_BEFORE)
        .not_valid_after(LEAF_NOT_BEFORE + timedelta(hours=3))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .sign(issuer_key, hashes.SHA384())
    )
    return cert, key


def test_leaf_key_usage_needs_digital_signature(authority: FakeNitroAuthority) -> None:
    leaf, key = _with_key_usage(
        authority.intermediate,
        authority.intermediate_key,
        ca=False,
        digital_signature=False,
        key_cert_sign=False,
    )
    data = _chain_document(authority, authority.cabundle, leaf, key)
    with pytest.raises(ChainInvalid, match="keyUsage lacks digitalSignature"):
        _verify(authority, data)


def test_ca_key_usage_needs_key_cert_sign(authority: FakeNitroAuthority) -> None:
    intermediate, intermediate_key = _with_key_usage(
        authority.root, authority.root_key, ca=True, digital_signature=True, key_cert_sign=False
    )
    leaf, key = _issue("leaf", (intermediate, intermediate_key), ca=False)
    data = _chain_document(authority, (_der(authority.root), _der(intermediate)), leaf, key)
    with pytest.raises(ChainInvalid, match=r"cabundle\[1\] .* keyUsage lacks keyCertSign"):
        _verify(authority, data)


def test_unparseable_certificate_is_malformed(authority: FakeNitroAuthority) -> None:
    document, leaf = _build(authority)
    data = authority.sign(replace(document, certificate=b"\x30\x03\x02\x01\x00"), leaf)
    with pytest.raises(MalformedEvidence, match=r"certificate is not a usable DER X\.509"):
        _verify(authority, data)
    data = authority.sign(replace(document, cabundle=(b"\x04\x00",)), leaf)
    with pytest.raises(MalformedEvidence, match=r"cabundle\[0\] is not a usable DER X\.509"):
        _verify(authority, data)
