"""Every real SNP vector verifies at its manifest instant with the manifest's claims, and
every negative the manifests name fails with the named error type."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.errors import (
    CertificateExpired,
    ChainInvalid,
    CollateralInvalid,
    EvidenceError,
    SignatureInvalid,
    TcbMismatch,
)
from broker.evidence.claims import Claims
from broker.evidence.snp import verify
from broker.evidence.snp.abi import SIGNED_SIZE
from broker.evidence.snp.endorsement import load_endorsement
from broker.evidence.snp.products import Product, parse_product
from broker.evidence.snp.roots import ark, intermediate
from broker.evidence.trust import load_certificates, verify_chain
from broker.timeutil import parse_instant
from tests.unit.mutation import same_signed_content
from tests.unit.snp.conftest import SNP, TRUSTEE_VCEK, TRUSTEE_VLEK, VECTORS, VIRTEE, Vector


def _flip(data: bytes, offset: int, delta: int = 1) -> bytes:
    return data[:offset] + bytes([(data[offset] + delta) % 256]) + data[offset + 1 :]


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v.name)
def test_vector_verifies_with_manifest_claims(vector: Vector) -> None:
    claims = verify(vector.evidence(), vector.collateral_bytes(), now=vector.now)
    assert claims.signer.vendor == "amd"
    assert claims.signer.origin == "silicon-vendor"
    assert claims.signer.root == "amd-ark-milan"
    assert claims.signer.product == "Milan"
    document = claims.document()
    for path, expected in vector.expected.items():
        assert _thawed(claims.lookup(path)) == expected, path
    assert claims.debug is document["policy"]["debug"]
    assert claims.report_data == vector.evidence()[0x50:0x90]
    assert claims.warnings == ()
    assert Claims.from_json(json.loads(json.dumps(claims.to_json()))) == claims


def _thawed(value: object) -> object:
    from broker.evidence.claims import thaw

    return thaw(value)


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v.name)
def test_every_claim_name_is_present(vector: Vector) -> None:
    document = verify(vector.evidence(), vector.collateral_bytes(), now=vector.now).document()
    assert set(document) == {
        "tee", "signer", "debug", "version", "guest_svn", "policy", "family_id", "image_id",
        "vmpl", "signature_algo", "current_tcb", "reported_tcb", "committed_tcb", "launch_tcb",
        "platform_info", "signer_info", "report_data", "measurement", "host_data",
        "id_key_digest", "author_key_digest", "report_id", "report_id_ma", "chip_id", "cpuid",
        "current_version", "committed_version", "launch_mit_vector", "current_mit_vector",
    }  # fmt: skip
    assert set(document["policy"]) == {
        "abi_minor", "abi_major", "smt", "migrate_ma", "debug", "single_socket", "cxl_allow",
        "mem_aes_256_xts", "rapl_dis", "ciphertext_hiding", "page_swap_disable",
    }  # fmt: skip
    assert set(document["platform_info"]) == {
        "smt_enabled", "tsme_enabled", "ecc_enabled", "rapl_disabled",
        "ciphertext_hiding_enabled", "alias_check_complete", "tio_enabled",
    }  # fmt: skip
    assert set(document["reported_tcb"]) == {"bootloader", "tee", "snp", "microcode", "fmc"}
    assert set(document["signer_info"]) == {"signing_key", "mask_chip_key", "author_key_en"}


def test_trustee_byte_42_is_a_signature_failure() -> None:
    evidence = _flip(TRUSTEE_VCEK.evidence(), 42)
    with pytest.raises(SignatureInvalid):
        verify(evidence, TRUSTEE_VCEK.collateral_bytes(), now=TRUSTEE_VCEK.now)


def test_trustee_byte_384_is_a_tcb_failure() -> None:
    evidence = _flip(TRUSTEE_VCEK.evidence(), 384)
    with pytest.raises(TcbMismatch, match=r"REPORTED_TCB.BOOT_LOADER 4 != VCEK blSPL 3"):
        verify(evidence, TRUSTEE_VCEK.collateral_bytes(), now=TRUSTEE_VCEK.now)


def test_vlek_byte_42_and_384() -> None:
    with pytest.raises(SignatureInvalid):
        verify(
            _flip(TRUSTEE_VLEK.evidence(), 42),
            TRUSTEE_VLEK.collateral_bytes(),
            now=TRUSTEE_VLEK.now,
        )
    with pytest.raises(TcbMismatch, match=r"BOOT_LOADER 5 != VLEK blSPL 4"):
        verify(
            _flip(TRUSTEE_VLEK.evidence(), 384),
            TRUSTEE_VLEK.collateral_bytes(),
            now=TRUSTEE_VLEK.now,
        )


def test_virtee_byte_21_is_a_signature_failure() -> None:
    evidence = bytearray(VIRTEE.evidence())
    evidence[21] ^= 0x80
    with pytest.raises(SignatureInvalid):
        verify(bytes(evidence), VIRTEE.collateral_bytes(), now=VIRTEE.now)


@pytest.mark.parametrize("edited", ["test-vcek-invalid-legacy.der", "test-vcek-invalid-new.der"])
def test_edited_vceks_parse_but_do_not_chain(edited: str) -> None:
    data = TRUSTEE_VCEK.path(edited).read_bytes()
    endorsement = load_endorsement(data)
    assert endorsement.hwid == bytes(range(64))
    assert set(endorsement.spls) >= {1, 2, 3, 8}
    with pytest.raises(
        ChainInvalid, match=r"VCEK certificate 'SEV-VCEK' is not signed by 'SEV-Milan'"
    ):
        verify(TRUSTEE_VCEK.evidence(), {"vcek": data}, now=TRUSTEE_VCEK.now)


def test_virtee_vcek_byte_40_fails_the_chain() -> None:
    vcek = bytearray(VIRTEE.path("vcek_milan.der").read_bytes())
    vcek[40] ^= 0xFF
    with pytest.raises(ChainInvalid, match=r"VCEK certificate 'SEV-VCEK' is not signed"):
        verify(VIRTEE.evidence(), {"vcek": bytes(vcek)}, now=VIRTEE.now)


def test_a_vcek_that_does_not_parse_is_invalid_collateral() -> None:
    vcek = VIRTEE.path("vcek_milan.der").read_bytes()[:-10]
    with pytest.raises(CollateralInvalid, match=r"^vcek: certificate does not parse"):
        verify(VIRTEE.evidence(), {"vcek": vcek}, now=VIRTEE.now)


def test_trustee_vcek_byte_42_plus_one_fails_the_chain() -> None:
    vcek = _flip(TRUSTEE_VCEK.path("test-vcek.der").read_bytes(), 42)
    with pytest.raises(ChainInvalid):
        verify(TRUSTEE_VCEK.evidence(), {"vcek": vcek}, now=TRUSTEE_VCEK.now)


def test_vcek_with_the_vlek_intermediate_fails() -> None:
    collateral = TRUSTEE_VCEK.collateral_bytes()
    collateral["cert_chain"] = (SNP / "amd-kds-cert-chains/ask_ark_milan_vlek.pem").read_bytes()
    with pytest.raises(ChainInvalid, match=r"issuer 'SEV-Milan' is not the ASK of cert_chain"):
        verify(TRUSTEE_VCEK.evidence(), collateral, now=TRUSTEE_VCEK.now)


def test_the_kds_cert_chain_may_be_supplied() -> None:
    collateral = TRUSTEE_VCEK.collateral_bytes()
    collateral["cert_chain"] = (SNP / "amd-kds-cert-chains/ask_ark_milan.pem").read_bytes()
    claims = verify(TRUSTEE_VCEK.evidence(), collateral, now=TRUSTEE_VCEK.now)
    assert claims.signer.root == "amd-ark-milan"


def test_a_cert_chain_whose_ark_is_another_products_is_refused() -> None:
    collateral = TRUSTEE_VCEK.collateral_bytes()
    collateral["cert_chain"] = (SNP / "amd-kds-cert-chains/ask_ark_genoa.pem").read_bytes()
    with pytest.raises(
        ChainInvalid, match=r"cert_chain root 'ARK-Genoa'.*not the pinned ARK of Milan"
    ):
        verify(TRUSTEE_VCEK.evidence(), collateral, now=TRUSTEE_VCEK.now)


@pytest.mark.parametrize(
    ("at", "match"),
    [("2024-12-10T22:14:20Z", "not valid before"), ("2025-12-10T22:14:22Z", "expired at")],
)
def test_vlek_outside_its_window_is_expired(at: str, match: str) -> None:
    with pytest.raises(CertificateExpired, match=match):
        verify(TRUSTEE_VLEK.evidence(), TRUSTEE_VLEK.collateral_bytes(), now=parse_instant(at))


def test_vlek_may_arrive_under_its_own_name() -> None:
    collateral = {"vlek": TRUSTEE_VLEK.path("test-vlek.der").read_bytes()}
    claims = verify(TRUSTEE_VLEK.evidence(), collateral, now=TRUSTEE_VLEK.now)
    assert claims.signer.key == "vlek"


def test_a_vcek_for_a_vlek_report_is_refused() -> None:
    collateral = TRUSTEE_VCEK.collateral_bytes()
    with pytest.raises(ChainInvalid, match=r"signed by a VLEK .* is 'SEV-VCEK'"):
        verify(TRUSTEE_VLEK.evidence(), collateral, now=TRUSTEE_VLEK.now)


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v.name)
def test_every_single_byte_flip_of_the_signed_region_is_rejected(vector: Vector) -> None:
    good = vector.evidence()
    collateral = vector.collateral_bytes()
    for offset in range(SIGNED_SIZE):
        with pytest.raises(EvidenceError):
            verify(_flip(good, offset, 0x55), collateral, now=vector.now)


def test_turin_vcek_chains_to_the_pinned_turin_ark() -> None:
    vcek = load_endorsement((SNP / "virtee-sev-turin-vcek/vcek_turin.der").read_bytes())
    assert vcek.kind == "vcek"
    assert vcek.product_name == "Turin"
    assert vcek.struct_version == 1
    assert vcek.hwid == bytes.fromhex("1e550a8ee5cf9f4d")
    assert dict(vcek.spls) == {9: 0, 1: 0, 2: 0, 3: 0, 5: 0, 6: 0, 7: 0, 8: 9}
    chain = [("VCEK", vcek.certificate), ("ASK", intermediate(Product.TURIN, "vcek"))]
    root = verify_chain(
        chain, [ark(Product.TURIN)], datetime.fromisoformat("2025-01-01T00:00:00+00:00")
    )
    assert root.name == "amd-ark-turin"
    published = load_certificates((SNP / "virtee-sev-turin-vcek/cert_chain_turin.pem").read_bytes())
    assert published[0] == intermediate(Product.TURIN, "vcek")
    assert published[1] == ark(Product.TURIN).certificate


_CHAIN = (SNP / "amd-kds-cert-chains/ask_ark_milan.pem").read_bytes()
_ARK_PEM = _CHAIN[_CHAIN.index(b"-----BEGIN", 10) :]
_ASK_DER = load_certificates(_CHAIN)[0].public_bytes(serialization.Encoding.DER)


def _crl_in_the_name_of_the_milan_ark() -> bytes:
    """A CRL that claims the real ARK-Milan as issuer (signed by some other key)."""
    issuer = load_certificates(_ARK_PEM)[0].subject
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer)
        .last_update(datetime(2023, 1, 1, tzinfo=UTC))
        .next_update(datetime(2030, 1, 1, tzinfo=UTC))
        .add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(0x10001)
            .revocation_date(datetime(2023, 1, 1, tzinfo=UTC))
            .build()
        )
        .sign(ec.generate_private_key(ec.SECP384R1()), hashes.SHA384())
    )
    return crl.public_bytes(serialization.Encoding.DER)


_REAL_LIKE_CRL = _crl_in_the_name_of_the_milan_ark()


def _mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    mutable = bytearray(data)
    for position, value in edits:
        mutable[position % len(mutable)] = value
    return bytes(mutable)


def _pem(der: bytes) -> bytes:
    body = base64.encodebytes(der)
    return b"-----BEGIN CERTIFICATE-----\n" + body + b"-----END CERTIFICATE-----\n"


@given(
    st.sampled_from(["vcek", "cert_chain", "crl", "product"]),
    st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), min_size=1, max_size=3),
    st.binary(max_size=64),
)
@settings(max_examples=300, deadline=None)
def test_corrupted_collateral_gives_only_our_errors(
    name: str, edits: list[tuple[int, int]], noise: bytes
) -> None:
    collateral = TRUSTEE_VCEK.collateral_bytes()
    # Acceptable outcomes only: the VCEK and the ASK are refused unless their signed bytes and
    # signature are intact (the unchanged bytes, or a flip pyca reads the same: see
    # same_signed_content); the CRL in the ARK's name is signed by another key, so it is
    # refused mutated or not; a product collateral verifies exactly when it names the product
    # the report's CPUID already names.
    if name == "vcek":
        original = collateral["vcek"]
        collateral["vcek"] = _mutate(original, edits)
        unchanged = same_signed_content(original, collateral["vcek"])
    elif name == "cert_chain":
        collateral["cert_chain"] = _pem(_mutate(_ASK_DER, edits)) + _ARK_PEM
        unchanged = same_signed_content(_ASK_DER, _mutate(_ASK_DER, edits))
    elif name == "crl":
        collateral["crl"] = _mutate(_REAL_LIKE_CRL, edits) + noise
        unchanged = False
    else:
        collateral["product"] = noise
        unchanged = parse_product(noise.decode(errors="replace")) is Product.MILAN
    if unchanged:
        verify(TRUSTEE_VCEK.evidence(), collateral, now=TRUSTEE_VCEK.now)
        return
    with pytest.raises(EvidenceError):
        verify(TRUSTEE_VCEK.evidence(), collateral, now=TRUSTEE_VCEK.now)
