"""The DCAP verifier's memos save work and never change a decision (tests/unit/memos.py)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import pytest

from broker.evidence.claims import Tee
from broker.evidence.dcap.abi import CERT_PCK_CHAIN, CertificationData, parse_quote
from broker.evidence.dcap.collateral import TcbStatus
from broker.evidence.dcap.verify import verify_quote
from broker.evidence.trust import TrustedRoot, insecure_root
from broker.simulate.intel import IntelKit
from tests.unit import memos
from tests.unit.memos import outcome

from .vectors import DEBUG_TD_QUOTE, JUNE_2023, spr_collateral

NOW = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Input:
    name: str
    quote: bytes
    collateral: Mapping[str, bytes]
    roots: Sequence[TrustedRoot] = ()
    now: dt.datetime = NOW
    tee: Tee = Tee.SGX


def _decide(given: Input) -> object:
    def check() -> object:
        result = verify_quote(
            given.quote, given.collateral, now=given.now, tee=given.tee, extra_roots=given.roots
        )
        return (result.root.name, result.root.insecure, result.appraisal.status)

    return outcome(check)


def assert_memos_change_nothing(inputs: Sequence[Input]) -> dict[str, object]:
    return memos.assert_memos_change_nothing(inputs, _decide, lambda given: given.name)


@pytest.fixture(scope="module")
def kit() -> IntelKit:
    return IntelKit.create(now=NOW)


def _with_certification_data(kit: IntelKit, data: bytes) -> bytes:
    quote = parse_quote(kit.sgx_quote())
    return kit.sign_quote(
        quote.header,
        quote.body,
        tee=Tee.SGX,
        certification_data=CertificationData(CERT_PCK_CHAIN, data),
    )


def test_an_empty_chain_in_a_quote_does_not_stand_for_an_empty_tcb_signing_chain(
    kit: IntelKit,
) -> None:
    """The sequence of the report: a quote whose certification data holds no certificate
    (its PCK chain given as collateral) was remembered as an empty tuple under its bytes
    alone; an empty tcb_signing_chain of the same bytes then took that entry, skipped the
    "holds no certificate" check and died with IndexError."""
    collateral = kit.collateral(Tee.SGX, now=NOW)
    blank = b"\n"
    inputs = [
        Input(
            "empty certification data",
            _with_certification_data(kit, blank),
            {**collateral, "pck_chain": kit.pck_chain()},
            kit.extra_roots(),
        ),
        Input(
            "empty tcb_signing_chain",
            kit.sgx_quote(),
            {**collateral, "tcb_signing_chain": blank},
            kit.extra_roots(),
        ),
        Input("valid", kit.sgx_quote(), collateral, kit.extra_roots()),
    ]
    decisions = assert_memos_change_nothing(inputs)
    assert decisions["empty tcb_signing_chain"] == (
        "refused",
        "CollateralInvalid",
        "tcb_signing_chain holds no certificate",
    )


def test_an_empty_pck_chain_is_not_an_absent_one(kit: IntelKit) -> None:
    collateral = kit.collateral(Tee.SGX, now=NOW)
    inputs = [
        Input("no pck_chain", kit.sgx_quote(), collateral, kit.extra_roots()),
        Input(
            "empty pck_chain", kit.sgx_quote(), {**collateral, "pck_chain": b""}, kit.extra_roots()
        ),
    ]
    decisions = assert_memos_change_nothing(inputs)
    assert decisions["empty pck_chain"] == (
        "refused",
        "CollateralInvalid",
        "pck_chain holds no certificate",
    )


def test_a_chain_ends_in_the_root_named_as_configured(kit: IntelKit) -> None:
    """Two configurations trusting the same certificate under other names (or one of them
    not as insecure): the claims name the root each configuration trusts."""
    certificate = kit.extra_roots()[0].certificate
    collateral = kit.collateral(Tee.SGX, now=NOW)
    inputs = [
        Input("root a", kit.sgx_quote(), collateral, (insecure_root(certificate, "a"),)),
        Input("root b", kit.sgx_quote(), collateral, (insecure_root(certificate, "b"),)),
        Input(
            "root c, not insecure",
            kit.sgx_quote(),
            collateral,
            (TrustedRoot("c", certificate, insecure=False),),
        ),
    ]
    decisions = assert_memos_change_nothing(inputs)
    assert [decisions[given.name] for given in inputs] == [
        ("decided", ("insecure-test-a", True, TcbStatus.UP_TO_DATE)),
        ("decided", ("insecure-test-b", True, TcbStatus.UP_TO_DATE)),
        ("decided", ("c", False, TcbStatus.UP_TO_DATE)),
    ]


def test_collateral_bytes_do_not_stand_for_the_pinned_tcb_signing_certificate() -> None:
    """The signer memo kept the pinned certificate under the text "pinned-<index>": a
    tcb_signing_chain of those very bytes was taken for it."""
    pinned = dict(spr_collateral())
    del pinned["tcb_signing_chain"]
    quote = DEBUG_TD_QUOTE.read_bytes()
    inputs = [
        Input("pinned", quote, pinned, now=JUNE_2023, tee=Tee.TDX),
        Input(
            "chain spelled like the pinned entry",
            quote,
            {**pinned, "tcb_signing_chain": b"pinned-0"},
            now=JUNE_2023,
            tee=Tee.TDX,
        ),
        Input("issuer chain", quote, spr_collateral(), now=JUNE_2023, tee=Tee.TDX),
    ]
    decisions = assert_memos_change_nothing(inputs)
    assert decisions["chain spelled like the pinned entry"] == (
        "refused",
        "CollateralInvalid",
        "tcb_signing_chain: certificate does not parse: error parsing asn1 value: "
        "ParseError { kind: ShortData { needed: 99 } }",
    )


def test_collateral_swapped_between_roles_decides_alike(kit: IntelKit) -> None:
    """Every memo at once: the same bytes presented in other roles (a chain as a CRL, a CRL
    as TCB Info, one document as another, blank or absent), in every order of two."""
    collateral = kit.collateral(Tee.SGX, now=NOW)
    quote = kit.sgx_quote()
    roots = kit.extra_roots()
    swaps: list[tuple[str, Callable[[dict[str, bytes]], None]]] = [
        ("valid", lambda c: None),
        ("pck_crl as root_crl", lambda c: c.update(root_crl=c["pck_crl"])),
        ("root_crl as pck_crl", lambda c: c.update(pck_crl=c["root_crl"])),
        ("tcb_info as qe_identity", lambda c: c.update(qe_identity=c["tcb_info"])),
        ("qe_identity as tcb_info", lambda c: c.update(tcb_info=c["qe_identity"])),
        ("pck chain as tcb_signing_chain", lambda c: c.update(tcb_signing_chain=kit.pck_chain())),
        ("tcb_signing_chain as pck_chain", lambda c: c.update(pck_chain=c["tcb_signing_chain"])),
        ("pck chain as pck_crl", lambda c: c.update(pck_crl=kit.pck_chain())),
        ("blank pck_crl", lambda c: c.update(pck_crl=b"\n")),
        ("no tcb_signing_chain", lambda c: c.pop("tcb_signing_chain")),
    ]
    inputs = []
    for name, change in swaps:
        changed = dict(collateral)
        change(changed)
        inputs.append(Input(name, quote, changed, roots))
    inputs.append(
        Input(
            "pck chain in the quote only",
            _with_certification_data(kit, kit.pck_chain()),
            collateral,
            roots,
        )
    )
    assert_memos_change_nothing(inputs)


def test_a_verified_collateral_set_is_checked_at_every_instant() -> None:
    """``verify._appraisable`` remembers a PCK chain's collateral verified at one instant;
    the same bytes at another instant (a document past its nextUpdate or not yet issued, the
    pinned TCB Signing certificate chosen anew) decide as they do alone."""
    quote = DEBUG_TD_QUOTE.read_bytes()
    given = spr_collateral()
    pinned = dict(given)
    del pinned["tcb_signing_chain"]
    later = JUNE_2023 + dt.timedelta(days=40)  # TCB Info and QE Identity are past nextUpdate
    earlier = dt.datetime(2023, 6, 10, tzinfo=dt.UTC)  # before the TCB Info's issueDate
    after_signer = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)  # 2018-2025 signer expired
    inputs = [
        Input(name, quote, collateral, now=now, tee=Tee.TDX)
        for name, collateral, now in [
            ("pinned, June 2023", pinned, JUNE_2023),
            ("issuer chain, June 2023", given, JUNE_2023),
            ("pinned, 40 days later", pinned, later),
            ("issuer chain, 40 days later", given, later),
            ("pinned, before the TCB Info", pinned, earlier),
            ("pinned, 2025", pinned, after_signer),
            ("issuer chain, 2025", given, after_signer),
        ]
    ]
    decisions = assert_memos_change_nothing(inputs)
    assert decisions["pinned, June 2023"] == (
        "decided",
        ("intel-sgx-root-ca", False, TcbStatus.UP_TO_DATE),
    )
    assert decisions["issuer chain, 40 days later"][:2] == ("refused", "CollateralExpired")
    assert decisions["pinned, before the TCB Info"][:2] == ("refused", "CollateralExpired")


def test_a_revoked_pck_is_not_remembered_as_verified(kit: IntelKit) -> None:
    collateral = kit.collateral(Tee.SGX, now=NOW)
    revoked = kit.pck_crl(now=NOW, revoked=[kit.certificates["pck"].serial_number])
    inputs = [
        Input("clean", kit.sgx_quote(), collateral, kit.extra_roots()),
        Input("revoked", kit.sgx_quote(), {**collateral, "pck_crl": revoked}, kit.extra_roots()),
    ]
    decisions = assert_memos_change_nothing(inputs)
    assert decisions["revoked"][:2] == ("refused", "CertificateRevoked")


def test_a_known_collateral_set_is_not_verified_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from broker.evidence.dcap import verify

    memos.clear_evidence_memos()
    quote, collateral = DEBUG_TD_QUOTE.read_bytes(), spr_collateral()
    verify_quote(quote, collateral, now=JUNE_2023, tee=Tee.TDX)

    def again(*args: object) -> None:
        raise AssertionError("the collateral was verified again instead of taken from memory")

    monkeypatch.setattr(verify, "_verified_collateral_set", again)
    later = JUNE_2023 + dt.timedelta(days=5)
    assert verify_quote(quote, collateral, now=later, tee=Tee.TDX).appraisal.status is (
        TcbStatus.UP_TO_DATE
    )


def test_appraisals_of_one_chain_follow_the_quote(kit: IntelKit) -> None:
    """``_CollateralSet.appraisals`` remembers the appraisal of a chain's quotes by the QE
    report and the TD report's TEE_TCB_SVN, MRSIGNERSEAM and SEAMATTRIBUTES: quotes of one
    chain that differ in any of them decide as they do alone."""
    collateral = kit.collateral(Tee.TDX, now=NOW)
    roots = kit.extra_roots()
    svn = bytearray(kit.platform.tee_tcb_svn)
    svn[2] = 0  # below every TDX component of the levels: no level matches
    parsed = parse_quote(kit.tdx_quote())
    qe = dataclasses.replace(kit.qe_report(Tee.TDX), isv_svn=0)
    old_qe = kit.sign_quote(parsed.header, parsed.body, tee=Tee.TDX, qe_report=qe)
    inputs = [
        Input("as issued", kit.tdx_quote(), collateral, roots, tee=Tee.TDX),
        Input("other REPORTDATA", kit.tdx_quote(b"\x01" * 64), collateral, roots, tee=Tee.TDX),
        Input("TEE_TCB_SVN", kit.tdx_quote(tee_tcb_svn=bytes(svn)), collateral, roots, tee=Tee.TDX),
        Input(
            "MRSIGNERSEAM",
            kit.tdx_quote(mr_signer_seam=b"\x01" * 48),
            collateral,
            roots,
            tee=Tee.TDX,
        ),
        Input(
            "SEAMATTRIBUTES",
            kit.tdx_quote(seam_attributes=b"\x01" * 8),
            collateral,
            roots,
            tee=Tee.TDX,
        ),
        Input("QE ISVSVN 0", old_qe, collateral, roots, tee=Tee.TDX),
    ]
    decisions = assert_memos_change_nothing(inputs)
    assert decisions["as issued"] == decisions["other REPORTDATA"]
    assert decisions["as issued"][0] == "decided"
    for name in ("TEE_TCB_SVN", "MRSIGNERSEAM", "SEAMATTRIBUTES", "QE ISVSVN 0"):
        assert decisions[name][0] == "refused", name
