"""Import: each file recognised by content and keyed as the lookups search."""

from __future__ import annotations

import contextlib
import datetime as dt
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.collateral.detect import Classified, check_expected, classify, plan_import
from broker.collateral.keys import ItemKey
from broker.errors import CollateralInvalid
from broker.evidence.claims import Tee
from broker.simulate.intel import IntelKit
from broker.simulate.snp import SnpKit

VECTORS = Path(__file__).parents[2] / "vectors"
NOW = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
MILAN_CHIP = (
    "c38427a30d4c7af9d96f7a15b97269825a64cb76a2352ffd5d18115d89ad473f"
    "8e8c0bcd9a5d9286612bad4aadfb4426205a3b9e4fea82301135a170e477524e"
)


def _key(path: str) -> tuple[ItemKey, dt.datetime | None]:
    (item,) = classify((VECTORS / path).read_bytes(), path).items
    assert item.source == path
    return item.key, item.next_update


@pytest.mark.parametrize(
    ("path", "key", "next_update"),
    [
        (
            "snp/trustee-milan-vcek/test-vcek.der",
            ("snp", "vcek", f"Milan/{MILAN_CHIP}?blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115"),
            None,
        ),
        (
            "snp/trustee-milan-vlek/test-vlek.der",
            ("snp", "vlek", "Milan?blSPL=4&teeSPL=0&snpSPL=24&ucodeSPL=217"),
            None,
        ),
        ("snp/amd-kds-cert-chains/ask_ark_genoa.pem", ("snp", "cert_chain", "Genoa/vcek"), None),
        (
            "snp/amd-kds-cert-chains/ask_ark_turin_vlek.pem",
            ("snp", "cert_chain", "Turin/vlek"),
            None,
        ),
        (
            "tdx/go-tdx-guest-spr-v4/tcbInfo.json",
            ("tdx", "tcb_info", "50806f000000"),
            "2023-07-18T08:42:58+00:00",
        ),
        (
            "tdx/go-tdx-guest-spr-v4/qeIdentity.json",
            ("tdx", "qe_identity", "TD_QE"),
            "2023-07-08T07:24:59+00:00",
        ),
        (
            "sgx/libsignal-dcap-2023/tcbInfo.json",
            ("sgx", "tcb_info", "00606a000000"),
            "2023-02-17T21:56:09+00:00",
        ),
        ("sgx/libsignal-dcap-2023/qeIdentity.json", ("sgx", "qe_identity", "QE"), None),
        (
            "sgx/libsignal-dcap_v3-2022/tcbInfo.json",  # TCB Info v2: no id, SGX
            ("sgx", "tcb_info", "00606a000000"),
            None,
        ),
        (
            "tdx/go-tdx-guest-spr-v4/pck_platform_crl.der",
            ("sgx", "pck_crl", "platform"),
            "2023-07-08T07:27:52+00:00",
        ),
        (
            "tdx/go-tdx-guest-spr-v4/root_ca_crl.der",
            ("sgx", "root_crl", "root"),
            "2024-04-02T10:22:51+00:00",
        ),
        (
            "tdx/go-tdx-guest-spr-v4/tcb_info_issuer_chain.pem",
            ("sgx", "tcb_signing_chain", "latest"),
            None,
        ),
        (
            "intel-roots/intel_sgx_tcb_signing_chain_2025-2032.pem",
            ("sgx", "tcb_signing_chain", "latest"),
            None,
        ),
    ],
)
def test_real_files_are_recognised(
    path: str, key: tuple[str, str, str], next_update: str | None
) -> None:
    found, found_update = _key(path)
    assert found == ItemKey(*key)
    if next_update is not None:
        assert found_update == dt.datetime.fromisoformat(next_update)
    elif key[1] in ("vcek", "vlek", "cert_chain", "tcb_signing_chain"):
        assert found_update is None


def test_url_encoded_issuer_chain_header_is_decoded() -> None:
    pem = (VECTORS / "tdx/go-tdx-guest-spr-v4/tcb_info_issuer_chain.pem").read_bytes()
    for encoded in (quote(pem.decode()), quote(pem.decode(), safe="")):  # "-" kept, escaped
        (item,) = classify(encoded.encode() + b"\n", "header.txt").items
        assert item.key == ItemKey("sgx", "tcb_signing_chain", "latest")
        assert item.body == pem


def test_vcek_pem_and_der_store_the_same_der() -> None:
    der = (VECTORS / "snp/virtee-sev-milan-v2/vcek_milan.der").read_bytes()
    from_der = classify(der, "a").items[0]
    kit = SnpKit.generate(rsa_bits=2048)
    assert from_der.body == der
    pem = kit.vcek.public_bytes(Encoding.PEM)
    (from_pem,) = classify(pem, "b").items
    assert from_pem.body == kit.vcek.public_bytes(Encoding.DER)


def test_kit_collateral_is_recognised() -> None:
    snp = SnpKit.generate(rsa_bits=2048)
    intel = IntelKit.create(now=NOW)
    (crl,) = classify(snp.crl([], issuer="ark"), "crl").items
    assert crl.key == ItemKey("snp", "crl", "Milan")
    assert crl.next_update == dt.datetime(2049, 12, 31, tzinfo=dt.UTC)
    assert classify(snp.cert_chain(), "c").items[0].key == ItemKey(
        "snp", "cert_chain", "Milan/vcek"
    )
    expected = {
        "tcb_info": ItemKey("tdx", "tcb_info", "5a5a5a000000"),
        "qe_identity": ItemKey("tdx", "qe_identity", "TD_QE"),
        "pck_crl": ItemKey("sgx", "pck_crl", "platform"),
        "root_crl": ItemKey("sgx", "root_crl", "root"),
        "tcb_signing_chain": ItemKey("sgx", "tcb_signing_chain", "latest"),
    }
    for name, data in intel.collateral(Tee.TDX, now=NOW).items():
        (item,) = classify(data, name).items
        assert item.key == expected[name], name
    assert classify(intel.tcb_info(Tee.SGX, now=NOW), "s").items[0].key.tee == "sgx"


def test_several_pem_crls_in_one_file() -> None:
    snp = SnpKit.generate(rsa_bits=2048)
    intel = IntelKit.create(now=NOW)
    pem = b"".join(_pem_crl(der) for der in (snp.crl([], issuer="ark"), intel.root_crl(now=NOW)))
    keys = [item.key.kind for item in classify(pem, "both").items]
    assert keys == ["crl", "root_crl"]


def _pem_crl(der: bytes) -> bytes:
    return x509.load_der_x509_crl(der).public_bytes(Encoding.PEM)


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("tdx/go-tdx-guest-spr-v4/pck_chain.pem", "PCK certificate chain"),
        ("tdx/go-tdx-guest-spr-v4/pck_crl_issuer_chain.pem", "PCK certificate chain"),
        ("intel-roots/Intel_SGX_Provisioning_Certification_RootCA.pem", "roots are pinned"),
    ],
)
def test_recognised_files_without_use_are_skipped(path: str, reason: str) -> None:
    found = classify((VECTORS / path).read_bytes(), path)
    assert found.items == ()
    assert found.skipped is not None
    assert reason in found.skipped


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ((VECTORS / "snp/go-sev-guest-milan-v2/attestation.bin").read_bytes(), "not collateral"),
        ((VECTORS / "snp/go-sev-guest-milan-v2/MANIFEST.md").read_bytes(), "not collateral"),
        ((VECTORS / "sgx/libsignal-dcap-2023/tcb_info_v3.json").read_bytes(), "neither TCB"),
        (b'{"enclaveIdentity": 1, "signature": "00"}', "enclaveIdentity is not an object"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "PEM block"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "does not parse"),
        (b"0\x03\x02\x01\x01", "does not parse"),
        (b"", "not collateral"),
    ],
)
def test_unknown_or_broken_files_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(CollateralInvalid, match=message):
        classify(data, "x")


def test_crl_of_an_unknown_issuer_is_refused() -> None:
    ask_signed = SnpKit.generate(rsa_bits=2048).crl([], issuer="ask")
    with pytest.raises(CollateralInvalid, match=r"CRL issuer 'SEV-Milan' is neither"):
        classify(ask_signed, "x")


def test_qve_identity_is_refused() -> None:
    intel = IntelKit.create(now=NOW)
    with pytest.raises(CollateralInvalid, match=r"'QVE' is not a QE identity"):
        classify(intel.qe_identity(Tee.SGX, now=NOW, identity_id="QVE"), "x")


def test_expected_tee_and_kind() -> None:
    root_crl = classify((VECTORS / "tdx/go-tdx-guest-spr-v4/root_ca_crl.der").read_bytes(), "r")
    tdx_tcb = classify((VECTORS / "tdx/go-tdx-guest-spr-v4/tcbInfo.json").read_bytes(), "t")
    check_expected(root_crl.items, "tdx", "root_crl")  # the SGX PKI serves TDX too
    check_expected(root_crl.items, "sgx", None)
    check_expected(tdx_tcb.items, "tdx", "tcb_info")
    with pytest.raises(CollateralInvalid, match=r"is a root_crl \(sgx\), not a pck_crl"):
        check_expected(root_crl.items, None, "pck_crl")
    with pytest.raises(CollateralInvalid, match=r"is sgx collateral \(root_crl\), not snp"):
        check_expected(root_crl.items, "snp", None)
    with pytest.raises(CollateralInvalid, match=r"is tdx collateral \(tcb_info\), not sgx"):
        check_expected(tdx_tcb.items, "sgx", None)


def test_plan_deduplicates_identical_documents_and_refuses_conflicts() -> None:
    spr = VECTORS / "tdx/go-tdx-guest-spr-v4"
    files = [
        (name, (spr / name).read_bytes())
        for name in ("tcb_info_issuer_chain.pem", "qe_identity_issuer_chain.pem", "pck_chain.pem")
    ]
    plan = plan_import(files, tee="tdx", kind=None, actor="cli:ops")
    assert [item.key.kind for item in plan.items] == ["tcb_signing_chain"]
    assert plan.items[0].source == "import tcb_info_issuer_chain.pem by cli:ops"
    assert [name for name, _ in plan.skipped] == ["pck_chain.pem"]
    assert plan.refused == ()
    newer = (VECTORS / "intel-roots/intel_sgx_tcb_signing_chain_2025-2032.pem").read_bytes()
    conflicting = plan_import([*files, ("new.pem", newer)], tee=None, kind=None, actor="a")
    assert conflicting.refused == (
        (
            "new.pem",
            "sgx tcb_signing_chain latest differs from the one in tcb_info_issuer_chain.pem",
        ),
    )
    wrong_kind = plan_import(files[:1], tee=None, kind="crl", actor="a")
    assert wrong_kind.items == ()
    assert wrong_kind.refused[0][0] == "tcb_info_issuer_chain.pem"


_REAL_FILES = [
    (VECTORS / path).read_bytes()
    for path in (
        "snp/trustee-milan-vcek/test-vcek.der",
        "snp/amd-kds-cert-chains/ask_ark_milan.pem",
        "tdx/go-tdx-guest-spr-v4/tcbInfo.json",
        "tdx/go-tdx-guest-spr-v4/qeIdentity.json",
        "tdx/go-tdx-guest-spr-v4/pck_platform_crl.der",
        "tdx/go-tdx-guest-spr-v4/tcb_info_issuer_chain.pem",
    )
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    index=st.integers(0, len(_REAL_FILES) - 1),
    position=st.integers(0, 10_000),
    value=st.integers(0, 255),
    cut=st.one_of(st.none(), st.integers(0, 10_000)),
)
def test_corrupted_files_raise_only_collateral_invalid(
    index: int, position: int, value: int, cut: int | None
) -> None:
    data = bytearray(_REAL_FILES[index])
    data[position % len(data)] = value
    corrupted = bytes(data[:cut] if cut is not None else data)
    try:
        found = classify(corrupted, "fuzz")
    except CollateralInvalid:
        return
    assert isinstance(found, Classified)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_raise_only_collateral_invalid(data: bytes) -> None:
    with contextlib.suppress(CollateralInvalid):
        classify(data, "fuzz")
