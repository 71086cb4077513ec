"""Every branch of the DCAP verifier, driven by the synthetic Intel kit."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID

from broker.errors import (
    CertificateExpired,
    CertificateRevoked,
    ChainInvalid,
    CollateralExpired,
    CollateralInvalid,
    CollateralUnavailable,
    MalformedEvidence,
    QeIdentityMismatch,
    TcbLevelNotFound,
    TcbMismatch,
    TcbRevoked,
    UnsupportedEvidence,
)
from broker.evidence.claims import Claims, Tee
from broker.evidence.dcap import verify as dcap_verify
from broker.evidence.dcap.abi import (
    CERT_PCK_CHAIN,
    INTEL_QE_VENDOR_ID,
    CertificationData,
    parse_quote,
)
from broker.evidence.dcap.pck import SGX_EXTENSION_OID
from broker.evidence.dcap.verify import clear_caches
from broker.evidence.registry import verifier_for
from broker.simulate.intel import (
    IdentityLevel,
    IntelKit,
    Level,
    ModuleIdentity,
    event_log,
    sgx_extension_der,
)

NOW = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def kit() -> IntelKit:
    return IntelKit.create(now=NOW)


@pytest.fixture(autouse=True)
def _fresh_caches() -> None:
    clear_caches()


def verify(kit: IntelKit, tee: Tee, quote: bytes | None = None, **collateral: bytes) -> Claims:
    if quote is None:
        quote = kit.tdx_quote() if tee is Tee.TDX else kit.sgx_quote()
    return verifier_for(tee).verify(
        quote,
        kit.collateral(tee, now=NOW, **collateral),
        now=NOW,
        extra_roots=kit.extra_roots(),
    )


# --- the happy paths ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tee", "make"),
    [
        (Tee.TDX, lambda kit: kit.tdx_quote(b"\x11" * 64)),
        (Tee.TDX, lambda kit: kit.tdx_quote(b"\x11" * 64, version=5)),
        (Tee.TDX, lambda kit: kit.tdx_quote(b"\x11" * 64, version=5, mr_service_td=b"\x22" * 48)),
        (Tee.SGX, lambda kit: kit.sgx_quote(b"\x11" * 64)),
        (Tee.SGX, lambda kit: kit.sgx_quote(b"\x11" * 64, version=4)),
        (Tee.SGX, lambda kit: kit.sgx_quote(b"\x11" * 64, version=5)),
    ],
    ids=["tdx-v4", "tdx-v5-td10", "tdx-v5-td15", "sgx-v3", "sgx-v4", "sgx-v5"],
)
def test_simulated_quotes_verify(
    kit: IntelKit, tee: Tee, make: Callable[[IntelKit], bytes]
) -> None:
    claims = verify(kit, tee, make(kit))
    assert claims.report_data == b"\x11" * 64
    assert claims.lookup("tcb_status") == "UpToDate"
    assert claims.signer.root == "insecure-test-intel-sim"
    assert claims.debug is False


def test_v5_td15_claims_carry_mr_service_td(kit: IntelKit) -> None:
    claims = verify(kit, Tee.TDX, kit.tdx_quote(version=5, mr_service_td=b"\x22" * 48))
    assert claims.lookup("quote_version") == 5
    assert claims.lookup("mr_service_td") == "22" * 48


def test_debug_td_and_debug_enclave(kit: IntelKit) -> None:
    td = verify(kit, Tee.TDX, kit.tdx_quote(td_attributes=bytes.fromhex("0100001000000000")))
    assert td.debug is True
    assert td.lookup("td_attributes.debug") is True
    enclave = verify(
        kit, Tee.SGX, kit.sgx_quote(attributes=bytes.fromhex("07000000000000000700000000000000"))
    )
    assert enclave.debug is True
    assert enclave.lookup("attributes.debug") is True


def test_save_and_load(kit: IntelKit, tmp_path: Path) -> None:
    kit.save(tmp_path / "kit")
    for key in (tmp_path / "kit").glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    loaded = IntelKit.load(tmp_path / "kit")
    assert loaded.platform == kit.platform
    assert loaded.certificates == kit.certificates
    assert loaded.attestation_key_raw == kit.attestation_key_raw
    verify(loaded, Tee.TDX)


def test_event_log_claims(kit: IntelKit) -> None:
    log, rtmrs = event_log([(1, 0x80000008, b"firmware"), (3, 0x0D, b"kernel cmdline")])
    quote = kit.tdx_quote(rtmrs=rtmrs)
    claims = verifier_for("tdx").verify(
        quote,
        {**kit.collateral(Tee.TDX, now=NOW), "event_log": log},
        now=NOW,
        extra_roots=kit.extra_roots(),
    )
    events = claims.lookup("event_log")
    assert [(e["rtmr"], e["type"], e["description"]) for e in events] == [
        (0, "EV_EFI_PLATFORM_FIRMWARE_BLOB", "firmware"),
        (2, "EV_IPL", "kernel cmdline"),
    ]
    assert all(e["data_matches_digest"] for e in events)


# --- trust anchors and chains ---------------------------------------------------------------


def test_test_root_is_not_trusted_by_default(kit: IntelKit) -> None:
    with pytest.raises(ChainInvalid, match="does not chain to a pinned root"):
        verifier_for("tdx").verify(kit.tdx_quote(), kit.collateral(Tee.TDX, now=NOW), now=NOW)


def test_test_root_needs_its_tcb_signing_chain(kit: IntelKit) -> None:
    collateral = kit.collateral(Tee.TDX, now=NOW)
    del collateral["tcb_signing_chain"]
    with pytest.raises(CollateralUnavailable, match="needs a tcb_signing_chain"):
        verifier_for("tdx").verify(
            kit.tdx_quote(), collateral, now=NOW, extra_roots=kit.extra_roots()
        )


def test_tcb_signing_chain_must_share_the_pck_root(kit: IntelKit) -> None:
    other = IntelKit.create(now=NOW)
    with pytest.raises(ChainInvalid, match="TCB Signing certificate"):
        verifier_for("tdx").verify(
            kit.tdx_quote(),
            {
                **kit.collateral(Tee.TDX, now=NOW),
                "tcb_signing_chain": other.tcb_signing_chain(),
                "tcb_info": other.tcb_info(Tee.TDX, now=NOW),
            },
            now=NOW,
            extra_roots=(*kit.extra_roots(), *other.extra_roots()),
        )


def test_collateral_signed_by_another_key(kit: IntelKit) -> None:
    other = IntelKit.create(now=NOW, platform=kit.platform)
    with pytest.raises(CollateralInvalid, match="TCB Info signature does not verify"):
        verify(kit, Tee.TDX, tcb_info=other.tcb_info(Tee.TDX, now=NOW))
    with pytest.raises(CollateralInvalid, match="QE Identity signature does not verify"):
        verify(kit, Tee.TDX, qe_identity=other.qe_identity(Tee.TDX, now=NOW))


def test_pck_chain_collateral_supplies_a_missing_chain(kit: IntelKit) -> None:
    header = parse_quote(kit.sgx_quote()).header
    body = parse_quote(kit.sgx_quote()).body
    encrypted_ppid = CertificationData(3, bytes(384 + 2 + 2))
    quote = kit.sign_quote(header, body, tee=Tee.SGX, certification_data=encrypted_ppid)
    with pytest.raises(CollateralUnavailable, match="certification data type 3"):
        verify(kit, Tee.SGX, quote)
    claims = verify(kit, Tee.SGX, quote, pck_chain=kit.pck_chain())
    assert claims.lookup("tcb_status") == "UpToDate"


def test_pck_chain_without_the_ca(kit: IntelKit) -> None:
    header = parse_quote(kit.sgx_quote()).header
    body = parse_quote(kit.sgx_quote()).body
    leaf_only = kit.pck_chain().split(b"-----END CERTIFICATE-----")[0]
    leaf_only += b"-----END CERTIFICATE-----\n"
    quote = kit.sign_quote(
        header, body, tee=Tee.SGX, certification_data=CertificationData(4, leaf_only)
    )
    with pytest.raises(ChainInvalid, match="is in neither the quote's certification data"):
        verify(kit, Tee.SGX, quote)


def _issue(
    kit: IntelKit,
    common_name: str,
    public_key: CertificatePublicKeyTypes,
    issuer: str,
    *,
    extension: bytes | None = None,
) -> x509.Certificate:
    """A certificate issued by the kit's ``issuer`` (``root`` or ``platform_ca``) for shapes
    the kit does not make (other names, other key types)."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(kit.certificates[issuer].subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
    )
    if extension is not None:
        oid = x509.ObjectIdentifier(SGX_EXTENSION_OID)
        builder = builder.add_extension(x509.UnrecognizedExtension(oid, extension), critical=False)
    return builder.sign(kit.keys[issuer], hashes.SHA256())


def _pem(*certificates: x509.Certificate) -> bytes:
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certificates)


def _sgx_quote_with_chain(kit: IntelKit, chain: bytes) -> bytes:
    quote = parse_quote(kit.sgx_quote())
    data = CertificationData(CERT_PCK_CHAIN, chain)
    return kit.sign_quote(quote.header, quote.body, tee=Tee.SGX, certification_data=data)


def _pck(kit: IntelKit, public_key: CertificatePublicKeyTypes, issuer: str) -> x509.Certificate:
    """A PCK certificate (name and SGX extension as the kit's) for ``public_key``."""
    platform = kit.platform
    extension = sgx_extension_der(
        ppid=bytes(16),
        components=platform.components,
        pce_svn=platform.pce_svn,
        cpu_svn=platform.cpu_svn,
        pce_id=platform.pce_id,
        fmspc=platform.fmspc,
    )
    return _issue(kit, "Fake Intel SGX PCK Certificate", public_key, issuer, extension=extension)


def test_pck_leaf_must_be_a_pck_certificate(kit: IntelKit) -> None:
    quote = _sgx_quote_with_chain(kit, kit.tcb_signing_chain())
    with pytest.raises(
        ChainInvalid,
        match=r"^PCK certificate CN 'Fake Intel SGX TCB Signing' does not contain "
        r"'SGX PCK Certificate'$",
    ):
        verify(kit, Tee.SGX, quote)


def test_pck_issuer_must_be_a_pck_ca(kit: IntelKit) -> None:
    # A PCK issued by the root itself: its issuer is found, but it is no PCK CA.
    leaf = _pck(kit, kit.keys["pck"].public_key(), "root")
    quote = _sgx_quote_with_chain(kit, _pem(leaf, kit.certificates["root"]))
    with pytest.raises(
        ChainInvalid,
        match=r"^PCK CA certificate CN 'Fake Intel SGX Root CA' is not an Intel SGX PCK "
        r"Platform or Processor CA$",
    ):
        verify(kit, Tee.SGX, quote)


def test_pck_key_must_be_ecdsa(kit: IntelKit) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    leaf = _pck(kit, rsa_key.public_key(), "platform_ca")
    chain = _pem(leaf, kit.certificates["platform_ca"], kit.certificates["root"])
    with pytest.raises(ChainInvalid, match=r"^PCK certificate key is not ECDSA$"):
        verify(kit, Tee.SGX, _sgx_quote_with_chain(kit, chain))


def test_attestation_key_must_be_a_p256_point(kit: IntelKit) -> None:
    # The QE report binds the bogus key (and is signed by the PCK), so only the key is wrong.
    bogus = bytes(64)  # (0, 0) is on no curve
    report = dataclasses.replace(
        kit.qe_report(Tee.SGX), report_data=hashlib.sha256(bogus + bytes(32)).digest() + bytes(32)
    )
    signed = parse_quote(kit.sgx_quote())
    signed = parse_quote(kit.sign_quote(signed.header, signed.body, tee=Tee.SGX, qe_report=report))
    quote = dataclasses.replace(
        signed, signature_data=dataclasses.replace(signed.signature_data, attestation_key=bogus)
    )
    with pytest.raises(MalformedEvidence, match=r"^attestation key is not a point on P-256$"):
        verify(kit, Tee.SGX, quote.to_bytes())


def test_collateral_signer_must_be_p256(kit: IntelKit) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    signer = _issue(kit, "Fake Intel SGX TCB Signing", p384.public_key(), "root")
    chain = _pem(signer, kit.certificates["root"])
    with pytest.raises(CollateralInvalid, match=r"^TCB Info signer key is not ECDSA P-256$"):
        verify(kit, Tee.SGX, tcb_signing_chain=chain)


def test_qe_vendor_must_be_intel(kit: IntelKit) -> None:
    quote = parse_quote(kit.sgx_quote())
    header = dataclasses.replace(quote.header, qe_vendor_id=b"\x01" * 16)
    with pytest.raises(
        UnsupportedEvidence,
        match=rf"^quote header.qe_vendor_id {'01' * 16} is not Intel's QE "
        rf"{INTEL_QE_VENDOR_ID.hex()}$",
    ):
        verify(kit, Tee.SGX, kit.sign_quote(header, quote.body, tee=Tee.SGX))


@pytest.mark.parametrize(
    ("name", "role"),
    [
        ("platform_ca", "PCK CA certificate 'Fake Intel SGX PCK Platform CA'"),
        ("root", "root certificate 'Fake Intel SGX Root CA'"),
    ],
)
@pytest.mark.parametrize(
    ("instant", "phrase"),
    [
        (NOW + dt.timedelta(days=20), "expired at"),
        (NOW - dt.timedelta(days=2), "is not valid before"),
    ],
)
def test_cached_pck_chain_is_still_checked_at_the_instant(
    monkeypatch: pytest.MonkeyPatch, name: str, role: str, instant: dt.datetime, phrase: str
) -> None:
    # Only ``name`` is outside its window at ``instant``: the PCK and the other CA are valid.
    window = (NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=10))
    kit = IntelKit.create(now=NOW, validity={name: window})
    quote = kit.sgx_quote()
    verify(kit, Tee.SGX, quote)

    def rebuilt(*args: object, **kwargs: object) -> None:
        raise AssertionError("the PCK chain was verified again instead of taken from the cache")

    monkeypatch.setattr(dcap_verify, "verify_chain", rebuilt)
    with pytest.raises(CertificateExpired, match=f"^{role} {phrase}"):
        verifier_for("sgx").verify(
            quote, kit.collateral(Tee.SGX, now=instant), now=instant, extra_roots=kit.extra_roots()
        )


# --- revocation -----------------------------------------------------------------------------


def test_revoked_pck(kit: IntelKit) -> None:
    crl = kit.pck_crl(now=NOW, revoked=[kit.certificates["pck"].serial_number])
    with pytest.raises(
        CertificateRevoked, match="PCK certificate 'Fake Intel SGX PCK Certificate'"
    ):
        verify(kit, Tee.TDX, pck_crl=crl)


def test_revoked_pck_ca(kit: IntelKit) -> None:
    crl = kit.root_crl(now=NOW, revoked=[kit.certificates["platform_ca"].serial_number])
    with pytest.raises(CertificateRevoked, match="PCK CA certificate"):
        verify(kit, Tee.SGX, root_crl=crl)


def test_revoked_tcb_signing_certificate(kit: IntelKit) -> None:
    crl = kit.root_crl(now=NOW, revoked=[kit.certificates["tcb_signing"].serial_number])
    with pytest.raises(CertificateRevoked, match="TCB Signing certificate"):
        verify(kit, Tee.SGX, root_crl=crl)


# --- time -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "make", "match"),
    [
        (
            "tcb_info",
            lambda kit: kit.tcb_info(Tee.TDX, now=NOW, next_update=NOW - dt.timedelta(seconds=1)),
            "TCB Info nextUpdate",
        ),
        (
            "qe_identity",
            lambda kit: kit.qe_identity(Tee.TDX, now=NOW, next_update=NOW - dt.timedelta(hours=1)),
            "QE Identity nextUpdate",
        ),
        ("pck_crl", lambda kit: kit.pck_crl(now=NOW - dt.timedelta(days=40)), "pck_crl nextUpdate"),
        (
            "root_crl",
            lambda kit: kit.root_crl(now=NOW - dt.timedelta(days=400)),
            "root_crl nextUpdate",
        ),
        (
            "tcb_info",
            lambda kit: kit.tcb_info(Tee.TDX, now=NOW, issue_date=NOW + dt.timedelta(days=1)),
            "TCB Info issueDate",
        ),
        (
            "qe_identity",
            lambda kit: kit.qe_identity(Tee.TDX, now=NOW, issue_date=NOW + dt.timedelta(hours=1)),
            "QE Identity issueDate 2025-06-01T01:00:00Z is after now 2025-06-01T00:00:00Z",
        ),
        # A CRL issued after the instant is not current at it either (trust.check_window).
        (
            "pck_crl",
            lambda kit: kit.pck_crl(now=NOW, this_update=NOW + dt.timedelta(seconds=1)),
            "pck_crl thisUpdate 2025-06-01T00:00:01Z is after now 2025-06-01T00:00:00Z",
        ),
        (
            "root_crl",
            lambda kit: kit.root_crl(now=NOW, this_update=NOW + dt.timedelta(days=2)),
            "root_crl thisUpdate 2025-06-03T00:00:00Z is after now",
        ),
    ],
)
def test_expired_collateral(
    kit: IntelKit, name: str, make: Callable[[IntelKit], bytes], match: str
) -> None:
    with pytest.raises(CollateralExpired, match=match):
        verify(kit, Tee.TDX, **{name: make(kit)})


@pytest.mark.parametrize("name", ["pck_crl", "root_crl"])
def test_crl_without_next_update_is_invalid(kit: IntelKit, name: str) -> None:
    # Without nextUpdate a CRL would be honoured forever (RFC 5280 §5.1.2.5 requires one).
    make = kit.pck_crl if name == "pck_crl" else kit.root_crl
    with pytest.raises(CollateralInvalid, match=rf"^{name} has no nextUpdate$"):
        verify(kit, Tee.TDX, **{name: make(now=NOW, days=None)})


@pytest.mark.parametrize(
    ("name", "issuer"),
    [("pck_crl", "Fake Intel SGX PCK Platform CA"), ("root_crl", "Fake Intel SGX Root CA")],
)
def test_crl_signed_by_another_key_is_invalid(kit: IntelKit, name: str, issuer: str) -> None:
    # The same names, other keys: the CRL claims the right issuer but its signature fails.
    other = IntelKit.create(now=NOW)
    make = other.pck_crl if name == "pck_crl" else other.root_crl
    with pytest.raises(CollateralInvalid, match=rf"^{name} is not signed by '{issuer}'"):
        verify(kit, Tee.SGX, **{name: make(now=NOW)})


def test_crl_of_another_issuer_is_invalid(kit: IntelKit) -> None:
    with pytest.raises(
        CollateralInvalid,
        match=r"^root_crl issuer 'Fake Intel SGX PCK Platform CA' != 'Fake Intel SGX Root CA'$",
    ):
        verify(kit, Tee.SGX, root_crl=kit.pck_crl(now=NOW))


def test_a_cached_crl_is_still_checked_at_the_instant(kit: IntelKit) -> None:
    pck_crl = kit.pck_crl(now=NOW, days=2)
    verify(kit, Tee.SGX, pck_crl=pck_crl)
    later = NOW + dt.timedelta(days=3)
    with pytest.raises(CollateralExpired, match=r"^pck_crl nextUpdate 2025-06-03T00:00:00Z"):
        verifier_for("sgx").verify(
            kit.sgx_quote(),
            {**kit.collateral(Tee.SGX, now=later), "pck_crl": pck_crl},
            now=later,
            extra_roots=kit.extra_roots(),
        )


# --- collateral that does not fit -----------------------------------------------------------


def test_tcb_info_for_another_pce_id(kit: IntelKit) -> None:
    other = kit.with_pck(dataclasses.replace(kit.platform, pce_id=b"\x00\x01"), now=NOW)
    with pytest.raises(CollateralInvalid, match=r"^tcbInfo.pceId 0000 != PCK PCE-ID 0001$"):
        verify(other, Tee.SGX, tcb_info=kit.tcb_info(Tee.SGX, now=NOW))


def test_tcb_info_for_another_fmspc(kit: IntelKit) -> None:
    info = kit.tcb_info(Tee.TDX, now=NOW, fmspc=bytes.fromhex("00906ed50000"))
    with pytest.raises(CollateralInvalid, match=r"tcbInfo.fmspc 00906ed50000 != PCK FMSPC 5a5a5a"):
        verify(kit, Tee.TDX, tcb_info=info)


@pytest.mark.parametrize(
    ("tee", "info"),
    [
        (Tee.TDX, lambda kit: kit.tcb_info(Tee.SGX, now=NOW)),
        (Tee.SGX, lambda kit: kit.tcb_info(Tee.TDX, now=NOW)),
        (Tee.TDX, lambda kit: kit.tcb_info(Tee.SGX, now=NOW, version=2)),
    ],
)
def test_tcb_info_for_the_other_tee(
    kit: IntelKit, tee: Tee, info: Callable[[IntelKit], bytes]
) -> None:
    with pytest.raises(CollateralInvalid, match=r"tcbInfo.id (SGX|TDX) \(version \d\) !="):
        verify(kit, tee, tcb_info=info(kit))


def test_sgx_tcb_info_version_2(kit: IntelKit) -> None:
    claims = verify(kit, Tee.SGX, tcb_info=kit.tcb_info(Tee.SGX, now=NOW, version=2))
    assert claims.lookup("tcb_status") == "UpToDate"


# --- QE identity ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"identity_id": "QE"}, "enclaveIdentity.id QE != TD_QE"),
        ({"mrsigner": b"\x01" * 32}, "QE MRSIGNER 5a5a"),
        ({"isvprodid": 1}, "QE ISVPRODID 2 != enclaveIdentity.isvprodid 1"),
        ({"miscselect": b"\x01\x00\x00\x00"}, "QE MISCSELECT 00000000 under mask ffffffff"),
        ({"attributes": bytes(16)}, "QE ATTRIBUTES 11000000000000000700000000000000 under mask"),
    ],
)
def test_qe_identity_mismatch(kit: IntelKit, overrides: dict[str, object], match: str) -> None:
    identity = kit.qe_identity(Tee.TDX, now=NOW, **overrides)  # type: ignore[arg-type]
    with pytest.raises(QeIdentityMismatch, match=match):
        verify(kit, Tee.TDX, qe_identity=identity)


def test_qe_svn_below_every_level(kit: IntelKit) -> None:
    identity = kit.qe_identity(Tee.SGX, now=NOW, levels=[IdentityLevel(9)])
    with pytest.raises(TcbLevelNotFound, match=r"QE ISVSVN 8 is below every .* \(9\)"):
        verify(kit, Tee.SGX, qe_identity=identity)


# --- TCB status convergence -----------------------------------------------------------------

STATUSES = [
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
]
QE_OUT_OF_DATE = {
    "UpToDate": "OutOfDate",
    "SWHardeningNeeded": "OutOfDate",
    "ConfigurationNeeded": "OutOfDateConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded": "OutOfDateConfigurationNeeded",
    "OutOfDate": "OutOfDate",
    "OutOfDateConfigurationNeeded": "OutOfDateConfigurationNeeded",
}


@pytest.mark.parametrize("tee", [Tee.SGX, Tee.TDX])
@pytest.mark.parametrize("platform_status", STATUSES)
@pytest.mark.parametrize("qe_status", ["UpToDate", "OutOfDate"])
def test_status_convergence(kit: IntelKit, tee: Tee, platform_status: str, qe_status: str) -> None:
    info = kit.tcb_info(
        tee, now=NOW, levels=[Level(platform_status, advisories=("INTEL-SA-00010",))]
    )
    identity = kit.qe_identity(
        tee,
        now=NOW,
        levels=[IdentityLevel(8, qe_status, ("INTEL-SA-00005",), "2019-01-01T00:00:00Z")],
    )
    claims = verify(kit, tee, tcb_info=info, qe_identity=identity)
    wanted = platform_status if qe_status == "UpToDate" else QE_OUT_OF_DATE[platform_status]
    assert claims.lookup("tcb_status") == wanted
    # Advisories of every matched level, platform and QE, sorted.
    assert claims.lookup("advisory_ids") == ("INTEL-SA-00005", "INTEL-SA-00010")
    # The oldest matched tcbDate is the QE level's.
    assert claims.lookup("tcb_date") == "2019-01-01T00:00:00Z"


@pytest.mark.parametrize("tee", [Tee.SGX, Tee.TDX])
def test_revoked_platform_level(kit: IntelKit, tee: Tee) -> None:
    info = kit.tcb_info(tee, now=NOW, levels=[Level("Revoked", advisories=("INTEL-SA-00099",))])
    with pytest.raises(TcbRevoked, match=r"TCB status Revoked .*INTEL-SA-00099"):
        verify(kit, tee, tcb_info=info)


def test_revoked_qe(kit: IntelKit) -> None:
    identity = kit.qe_identity(Tee.SGX, now=NOW, levels=[IdentityLevel(8, "Revoked")])
    with pytest.raises(TcbRevoked, match="QE ISVSVN level Revoked"):
        verify(kit, Tee.SGX, qe_identity=identity)


def test_first_matching_level_wins(kit: IntelKit) -> None:
    newer = tuple(c + 1 for c in kit.platform.components)
    info = kit.tcb_info(
        Tee.SGX,
        now=NOW,
        levels=[
            Level("UpToDate", sgx=newer),
            Level("SWHardeningNeeded", advisories=("INTEL-SA-00615",)),
            Level("OutOfDate", sgx=(0,) * 16),
        ],
    )
    claims = verify(kit, Tee.SGX, tcb_info=info)
    assert claims.lookup("tcb_status") == "SWHardeningNeeded"
    assert claims.lookup("advisory_ids") == ("INTEL-SA-00615",)


def test_pce_svn_must_be_met(kit: IntelKit) -> None:
    info = kit.tcb_info(Tee.SGX, now=NOW, levels=[Level("UpToDate", pce_svn=14)])
    with pytest.raises(TcbLevelNotFound, match="PCESVN 13"):
        verify(kit, Tee.SGX, tcb_info=info)


def test_evaluation_data_number_is_the_lower(kit: IntelKit) -> None:
    claims = verify(
        kit,
        Tee.SGX,
        tcb_info=kit.tcb_info(Tee.SGX, now=NOW, evaluation_data_number=18),
        qe_identity=kit.qe_identity(Tee.SGX, now=NOW, evaluation_data_number=16),
    )
    assert claims.lookup("tcb_evaluation_data_number") == 16


# --- TDX module ----------------------------------------------------------------------------


def test_tdx_components_must_be_met(kit: IntelKit) -> None:
    higher = bytes.fromhex("03000600000000000000000000000000")
    info = kit.tcb_info(Tee.TDX, now=NOW, levels=[Level("UpToDate", tdx=higher)])
    with pytest.raises(TcbLevelNotFound, match="TEE_TCB_SVN 03000500"):
        verify(kit, Tee.TDX, tcb_info=info)


def test_tdx_level_chosen_after_the_sgx_level(kit: IntelKit) -> None:
    higher = bytes.fromhex("03000600000000000000000000000000")
    info = kit.tcb_info(
        Tee.TDX,
        now=NOW,
        levels=[Level("UpToDate", tdx=higher), Level("OutOfDate", advisories=("INTEL-SA-00837",))],
    )
    claims = verify(kit, Tee.TDX, tcb_info=info)
    assert claims.lookup("tcb_status") == "OutOfDate"
    assert "INTEL-SA-00837" in claims.lookup("advisory_ids")


def test_tdx_module_mrsigner_mismatch(kit: IntelKit) -> None:
    info = kit.tcb_info(Tee.TDX, now=NOW, module_mrsigner=b"\x01" * 48)
    with pytest.raises(
        TcbMismatch, match=r"MRSIGNERSEAM 0000.* != tcbInfo.tdxModule.mrsigner 0101"
    ):
        verify(kit, Tee.TDX, tcb_info=info)


def test_seam_attributes_mismatch(kit: IntelKit) -> None:
    quote = kit.tdx_quote(seam_attributes=b"\x01" + bytes(7))
    with pytest.raises(TcbMismatch, match="SEAMATTRIBUTES 0100000000000000 under mask"):
        verify(kit, Tee.TDX, quote)


MAJOR_1 = bytes.fromhex("05010500000000000000000000000000")  # module SVN 5, major version 1


def test_module_major_version_without_identity(kit: IntelKit) -> None:
    quote = kit.tdx_quote(tee_tcb_svn=MAJOR_1)
    info = kit.tcb_info(Tee.TDX, now=NOW, levels=[Level("UpToDate", tdx=MAJOR_1)])
    with pytest.raises(TcbMismatch, match=r"no tcbInfo.tdxModuleIdentities entry TDX_01"):
        verify(kit, Tee.TDX, quote, tcb_info=info)


@pytest.mark.parametrize(
    ("module_levels", "wanted"),
    [
        ([IdentityLevel(5)], "UpToDate"),
        ([IdentityLevel(6), IdentityLevel(4, "OutOfDate", ("INTEL-SA-01036",))], "OutOfDate"),
    ],
)
def test_module_identity_levels(
    kit: IntelKit, module_levels: list[IdentityLevel], wanted: str
) -> None:
    # Bytes 0-1 are judged by the module identity: a TDX level asking for more there is met.
    level_components = bytes.fromhex("09090500000000000000000000000000")
    info = kit.tcb_info(
        Tee.TDX,
        now=NOW,
        levels=[Level("UpToDate", tdx=level_components)],
        module_identities=[ModuleIdentity(1, module_levels)],
    )
    claims = verify(kit, Tee.TDX, kit.tdx_quote(tee_tcb_svn=MAJOR_1), tcb_info=info)
    assert claims.lookup("tcb_status") == wanted


def test_module_identity_revoked(kit: IntelKit) -> None:
    info = kit.tcb_info(
        Tee.TDX,
        now=NOW,
        levels=[Level("UpToDate", tdx=MAJOR_1)],
        module_identities=[ModuleIdentity(1, [IdentityLevel(5, "Revoked")])],
    )
    with pytest.raises(TcbRevoked, match="TDX module level Revoked"):
        verify(kit, Tee.TDX, kit.tdx_quote(tee_tcb_svn=MAJOR_1), tcb_info=info)


def test_module_svn_below_every_level(kit: IntelKit) -> None:
    info = kit.tcb_info(
        Tee.TDX,
        now=NOW,
        levels=[Level("UpToDate", tdx=MAJOR_1)],
        module_identities=[ModuleIdentity(1, [IdentityLevel(7)])],
    )
    with pytest.raises(TcbLevelNotFound, match=r"TEE_TCB_SVN\[0\] \(TDX module SVN\) 5"):
        verify(kit, Tee.TDX, kit.tdx_quote(tee_tcb_svn=MAJOR_1), tcb_info=info)


def test_module_identity_mrsigner(kit: IntelKit) -> None:
    info = kit.tcb_info(
        Tee.TDX,
        now=NOW,
        levels=[Level("UpToDate", tdx=MAJOR_1)],
        module_identities=[ModuleIdentity(1, [IdentityLevel(5)], mrsigner=b"\x02" * 48)],
    )
    with pytest.raises(TcbMismatch, match=r"tdxModuleIdentities\[TDX_01\].mrsigner 0202"):
        verify(kit, Tee.TDX, kit.tdx_quote(tee_tcb_svn=MAJOR_1), tcb_info=info)


# --- a re-issued PCK ------------------------------------------------------------------------


def test_out_of_date_platform(kit: IntelKit) -> None:
    older = dataclasses.replace(kit.platform, components=(4, 4, 12, 2, 3, 1, 0, 3, *[0] * 8))
    old_kit = kit.with_pck(older, now=NOW)
    claims = verify(old_kit, Tee.SGX, tcb_info=kit.tcb_info(Tee.SGX, now=NOW))
    assert claims.lookup("tcb_status") == "OutOfDate"
    assert claims.lookup("advisory_ids") == ("INTEL-SA-00001",)
    assert claims.lookup("cpu_svn") == "04040c02030100030000000000000000"


def test_cached_tcb_signer_is_still_checked_at_the_instant(kit: IntelKit) -> None:
    verify(kit, Tee.SGX)
    later = kit.certificates["tcb_signing"].not_valid_after_utc + dt.timedelta(days=1)
    with pytest.raises(CertificateExpired, match="TCB Signing certificate"):
        verifier_for("sgx").verify(
            kit.sgx_quote(),
            kit.collateral(Tee.SGX, now=later),
            now=later,
            extra_roots=kit.extra_roots(),
        )
