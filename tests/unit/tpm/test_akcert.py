"""AK certificates: the real GCE one chains to Google's 2018 root through a shipped
intermediate; zero padding after the DER is tolerated and nothing else; every other check
refuses with its exact error."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding

from broker.errors import CertificateExpired, ChainInvalid, MalformedEvidence
from broker.evidence.tpm.akcert import load_ak_certificate, load_ak_chain, verify_ak_certificate
from broker.evidence.tpm.quote import spki_fingerprint
from broker.evidence.trust import LinkCache
from broker.simulate.tpm import AkAuthority, SoftwareAk

from .vectors import AT, ak_cert


@pytest.fixture(scope="module")
def authority() -> AkAuthority:
    return AkAuthority.generate()


@pytest.fixture(scope="module")
def ak() -> SoftwareAk:
    return SoftwareAk.generate()


def _gce_key() -> rsa.RSAPublicKey:
    key = x509.load_der_x509_certificate(ak_cert()).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    return key


def test_the_gce_ak_certificate_chains_to_googles_2018_root() -> None:
    cert = load_ak_certificate(ak_cert())
    root = verify_ak_certificate(cert, [], _gce_key(), now=AT, links=LinkCache())
    assert root.name == "google-tpm-ek-root-2018"


def test_the_zero_padding_of_an_nv_read_is_tolerated() -> None:
    padded = ak_cert() + bytes(4096 - len(ak_cert()))
    assert load_ak_certificate(padded) == load_ak_certificate(ak_cert())


def test_anything_but_zeros_after_the_der_is_malformed() -> None:
    with pytest.raises(MalformedEvidence, match="certificate does not parse"):
        load_ak_certificate(ak_cert() + b"\x00\x01")


def test_an_ak_cert_of_several_certificates_is_malformed(authority: AkAuthority) -> None:
    with pytest.raises(MalformedEvidence) as refused:
        load_ak_certificate(authority.chain_pem() + authority.chain_pem())
    assert refused.value.detail == (
        "ak_cert holds 2 certificates; it is the AK certificate alone (its issuers go in ak_chain)"
    )


def test_a_synthetic_chain_verifies_to_its_test_root(
    authority: AkAuthority, ak: SoftwareAk
) -> None:
    cert = authority.certify(ak.public_key())
    chain = load_ak_chain([authority.chain_pem()])
    root = verify_ak_certificate(
        cert, chain, ak.public_key(), now=AT, extra_roots=[authority.root()], links=LinkCache()
    )
    assert root.name == "insecure-test-vtpm-ca"


def test_a_chain_to_no_trusted_root_is_invalid(authority: AkAuthority, ak: SoftwareAk) -> None:
    cert = authority.certify(ak.public_key())
    with pytest.raises(ChainInvalid) as refused:
        verify_ak_certificate(cert, [authority.issuer], ak.public_key(), now=AT, links=LinkCache())
    assert refused.value.detail.startswith(
        "AK CA 1 certificate 'keybroker test vTPM CA - 01' (SHA-256 "
    )
    assert refused.value.detail.endswith(
        "does not chain to a pinned root (issuer 'keybroker test vTPM root')"
    )


def test_a_missing_intermediate_is_named(authority: AkAuthority, ak: SoftwareAk) -> None:
    cert = authority.certify(ak.public_key())
    with pytest.raises(ChainInvalid) as refused:
        verify_ak_certificate(
            cert, [], ak.public_key(), now=AT, extra_roots=[authority.root()], links=LinkCache()
        )
    assert refused.value.detail.startswith("AK certificate '' (SHA-256 ")
    assert refused.value.detail.endswith(
        "does not chain to a pinned root (issuer 'keybroker test vTPM CA - 01')"
    )


def test_the_certificate_of_another_key_is_refused(authority: AkAuthority, ak: SoftwareAk) -> None:
    other = SoftwareAk.generate()
    cert = authority.certify(other.public_key())
    with pytest.raises(ChainInvalid) as refused:
        verify_ak_certificate(
            cert,
            [authority.issuer],
            ak.public_key(),
            now=AT,
            extra_roots=[authority.root()],
            links=LinkCache(),
        )
    assert refused.value.detail == (
        f"AK certificate key (SPKI SHA-256 {spki_fingerprint(other.public_key())[:16]}...) is "
        f"not the AK that signed the quote (SPKI SHA-256 {spki_fingerprint(ak.public_key())[:16]}"
        "...)"
    )


def test_an_expired_ak_certificate_is_refused(authority: AkAuthority, ak: SoftwareAk) -> None:
    expired = datetime(2025, 1, 1, tzinfo=UTC)
    cert = authority.certify(ak.public_key(), not_after=expired)
    with pytest.raises(CertificateExpired) as refused:
        verify_ak_certificate(
            cert,
            [authority.issuer],
            ak.public_key(),
            now=AT,
            extra_roots=[authority.root()],
            links=LinkCache(),
        )
    assert refused.value.detail == (
        "AK certificate '' expired at 2025-01-01T00:00:00+00:00 (now 2026-01-01T00:00:00+00:00)"
    )


def test_a_ca_certificate_is_no_ak_certificate(authority: AkAuthority, ak: SoftwareAk) -> None:
    cert = authority.certify(ak.public_key(), ca=True)
    with pytest.raises(ChainInvalid) as refused:
        verify_ak_certificate(
            cert,
            [authority.issuer],
            ak.public_key(),
            now=AT,
            extra_roots=[authority.root()],
            links=LinkCache(),
        )
    assert refused.value.detail == "AK certificate is a CA (basicConstraints cA TRUE), not a key's"


def test_a_forged_link_is_refused(authority: AkAuthority, ak: SoftwareAk) -> None:
    impostor = AkAuthority.generate()  # same names, other keys
    cert = impostor.certify(ak.public_key())
    with pytest.raises(ChainInvalid, match="is not signed by 'keybroker test vTPM CA - 01'"):
        verify_ak_certificate(
            cert,
            [authority.issuer],
            ak.public_key(),
            now=AT,
            extra_roots=[authority.root()],
            links=LinkCache(),
        )


def test_the_chain_may_come_as_der(authority: AkAuthority) -> None:
    chain = load_ak_chain([authority.chain_der(), authority.chain_pem()])
    assert [c.public_bytes(Encoding.DER) for c in chain] == [authority.chain_der()] * 2
