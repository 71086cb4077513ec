"""The Intel ECDSA quote verification model, at an injected instant ``now``.

Order of checks (each raises; nothing returns False):

1. parse the quote (``abi``); QE vendor must be Intel's, the body must be the TEE asked for;
2. the PCK chain (from certification data type 5 or 4, completed or replaced by the
   ``pck_chain`` collateral): PCK leaf -> Intel SGX PCK Platform/Processor CA -> pinned Intel
   SGX Root CA (or an ``extra_roots`` test root), every certificate valid at ``now``;
3. the QE report signed by the PCK key; QE REPORTDATA[0:32] == SHA-256(attestation key ||
   QE authentication data); the quote (header, [v5 body descriptor], body) signed by the
   attestation key;
4. collateral must be present (``tcb_info``, ``qe_identity``, ``pck_crl``, ``root_crl``),
   otherwise ``CollateralUnavailable``: signatures alone say nothing about the platform's
   TCB, and a broker must fail closed on what it could not check;
5. the Root CA CRL (signed by the root) and the PCK CRL (signed by the PCK's CA), each inside
   its thisUpdate..nextUpdate window (``trust.check_not_revoked``: a badly signed CRL or one
   without nextUpdate is ``CollateralInvalid``, one outside its window ``CollateralExpired``):
   the CA, the PCK and the TCB Signing certificate must not be listed;
6. TCB Info and QE Identity signed by the TCB Signing certificate (``tcb_signing_chain``, or
   the pinned Intel TCB Signing certificates, 2018-2025 and 2025-2032), which must chain to
   the same root as the PCK; each inside issueDate..nextUpdate;
7. TCB appraisal (``appraisal``); a Revoked result is ``TcbRevoked``.

Verified facts that do not depend on ``now`` (parsed certificates and CRLs, PCK extensions,
collateral signatures, QE reports under a PCK key) are memoised in :mod:`cache` memos;
certificate and CRL signatures by ``trust.DEFAULT_LINKS``. A PCK chain's collateral whose
every check of steps 5 and 6 passed is remembered as one set (with the appraisals of the
chain's quotes), after which only the checks at ``now`` run. A memo's key holds everything its
value depends on, the role of the bytes included (certificates read from a quote may be
none; from collateral, never), so that a remembered value is the one its computation would
give: the memo saves work and never changes a decision (docs/architecture.md §9).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from broker.errors import (
    CertificateExpired,
    ChainInvalid,
    CollateralInvalid,
    CollateralUnavailable,
    MalformedEvidence,
    SignatureInvalid,
    TcbRevoked,
    UnsupportedEvidence,
)
from broker.evidence import der
from broker.evidence.claims import Tee
from broker.evidence.dcap import cache
from broker.evidence.dcap.abi import (
    CERT_PCK_CHAIN,
    CERT_PCK_LEAF,
    INTEL_QE_VENDOR_ID,
    Quote,
    TdReportBody10,
    parse_quote,
)
from broker.evidence.dcap.appraisal import Appraisal, appraise
from broker.evidence.dcap.collateral import (
    EnclaveIdentity,
    SignedCollateral,
    TcbInfo,
    TcbStatus,
    parse_qe_identity,
    parse_tcb_info,
    verify_collateral_signature,
)
from broker.evidence.dcap.pck import PckExtensions, pck_extensions
from broker.evidence.dcap.roots import INTEL_ROOT, KNOWN_TCB_SIGNING_CERTS
from broker.evidence.trust import (
    TrustedRoot,
    certificate_digest,
    check_not_revoked,
    check_validity,
    check_window,
    common_name,
    load_certificates,
    load_crls,
    parse_collateral,
    verify_chain,
)
from broker.lru import Lru
from broker.timeutil import iso

#: Collateral without which the TCB cannot be appraised.
REQUIRED_COLLATERAL = ("tcb_info", "qe_identity", "pck_crl", "root_crl")

_PCK_LEAF_PHRASE = "SGX PCK Certificate"
_PCK_CA_PHRASES = ("SGX PCK Platform CA", "SGX PCK Processor CA")
_TCB_SIGNING_PHRASE = "SGX TCB Signing"
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_ONE_SECOND = timedelta(seconds=1)

_T = TypeVar("_T")

_certificates: cache.Memo[tuple[x509.Certificate, ...]] = cache.Memo()
_chains: cache.Memo[PckChain] = cache.Memo()
_signers: cache.Memo[_Signer] = cache.Memo(64)
_attestation_keys: cache.Memo[ec.EllipticCurvePublicKey] = cache.Memo()
_qe_reports: cache.Memo[bool] = cache.Memo()
_crls: cache.Memo[x509.CertificateRevocationList] = cache.Memo(256)
_tcb_infos: cache.Memo[SignedCollateral[TcbInfo]] = cache.Memo(256)
_qe_identities: cache.Memo[SignedCollateral[EnclaveIdentity]] = cache.Memo(64)
_appraisable: cache.Memo[_CollateralSet] = cache.Memo(256)
_MEMOS: tuple[cache.Memo[Any], ...] = (
    _appraisable,
    _certificates,
    _chains,
    _signers,
    _attestation_keys,
    _qe_reports,
    _crls,
    _tcb_infos,
    _qe_identities,
)


def clear_caches() -> None:
    """Forget every memoised fact (tests and benchmarks)."""
    for memo in _MEMOS:
        memo.clear()


@dataclass(frozen=True, slots=True)
class VerifiedQuote:
    quote: Quote
    pck: PckExtensions
    root: TrustedRoot
    appraisal: Appraisal
    collateral_time: datetime
    """The oldest issueDate of the TCB Info and QE Identity used."""
    warnings: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PckChain:
    """A PCK chain verified to a trusted root, with its SGX extensions (memoised)."""

    leaf: x509.Certificate
    ca: x509.Certificate
    root: TrustedRoot
    pck: PckExtensions
    key: bytes
    """Digest of the certificate bytes it was built from and of the trusted roots."""
    root_id: bytes
    validity: tuple[datetime, datetime]
    """The instants the PCK, its CA and the root are all valid between."""

    def check_at(self, now: datetime) -> None:
        """The PCK, its CA and the root valid at ``now``: one comparison of the instants all
        three share, and the three checks (for the error) only when ``now`` is outside."""
        valid_from, valid_until = self.validity
        if not valid_from <= now <= valid_until:
            check_validity(self.leaf, now, "PCK")
            check_validity(self.ca, now, "PCK CA")
            check_validity(self.root.certificate, now, "root")


def _common_window(
    windows: Sequence[tuple[datetime, datetime | None]],
) -> tuple[datetime, datetime]:
    """The instants inside every one of ``windows``; none if one has no end (a CRL without
    nextUpdate, refused by its own check, which then always runs)."""
    start = max(begin for begin, _ in windows)
    ends = [until for _, until in windows if until is not None]
    if len(ends) < len(windows):
        return start, start - _ONE_SECOND
    return start, min(ends)


@dataclass(frozen=True, slots=True)
class AuthenticatedQuote:
    """A quote whose signatures and PCK chain verified (steps 1-3), not yet appraised."""

    quote: Quote
    chain: PckChain

    @property
    def root(self) -> TrustedRoot:
        return self.chain.root

    @property
    def pck(self) -> PckExtensions:
        return self.chain.pck


def verify_quote(
    evidence: bytes,
    collateral: Mapping[str, bytes],
    *,
    now: datetime,
    tee: Tee,
    extra_roots: Sequence[TrustedRoot] = (),
) -> VerifiedQuote:
    """Verify a DCAP quote for ``tee`` (TDX or SGX) at ``now``; raise an ``EvidenceError``."""
    authenticated = authenticate_quote(
        evidence, collateral, now=now, tee=tee, extra_roots=extra_roots
    )
    return appraise_quote(authenticated, collateral, now=now)


def authenticate_quote(
    evidence: bytes,
    collateral: Mapping[str, bytes],
    *,
    now: datetime,
    tee: Tee,
    extra_roots: Sequence[TrustedRoot] = (),
) -> AuthenticatedQuote:
    """Steps 1-3: parse, PCK chain, QE report, attestation key binding, quote signature."""
    quote = parse_quote(evidence)
    _check_kind(quote, tee)
    chain = _verified_pck_chain(quote, collateral, (INTEL_ROOT, *extra_roots), now)
    _verify_qe_report(quote, chain)
    _verify_attestation_key_binding(quote)
    _verify_quote_signature(quote, evidence)
    return AuthenticatedQuote(quote, chain)


def appraise_quote(
    authenticated: AuthenticatedQuote,
    collateral: Mapping[str, bytes],
    *,
    now: datetime,
    also_verified: Sequence[str] = (),
) -> VerifiedQuote:
    """Steps 4-7: CRLs, TCB Info and QE Identity at ``now``, and the TCB appraisal.

    ``also_verified`` names checks the caller made in between (for the message of
    ``CollateralUnavailable``, which otherwise reads as if nothing had been checked).
    """
    quote, chain = authenticated.quote, authenticated.chain
    root = chain.root
    missing = [name for name in REQUIRED_COLLATERAL if name not in collateral]
    if missing:
        verified = ", ".join(
            (f"quote signature, QE report and PCK chain to {root.name}", *also_verified)
        )
        raise CollateralUnavailable(
            f"{verified} verified, but the TCB cannot be appraised without {', '.join(missing)}"
        )
    collateral_set = _appraisable.get_or_compute(
        _appraisable_key(chain, collateral, now),
        lambda: _verified_collateral_set(chain, collateral, now),
    )
    collateral_set.check_at(now)
    tcb_info, qe_identity = collateral_set.tcb_info, collateral_set.qe_identity

    appraisal = collateral_set.appraise(quote)
    if appraisal.status is TcbStatus.REVOKED:
        raise TcbRevoked(
            f"TCB status Revoked (platform level {appraisal.platform_level.status.value}, QE "
            f"ISVSVN level {appraisal.qe_level.status.value}"
            + (
                ""
                if appraisal.module_level is None
                else f", TDX module level {appraisal.module_level.status.value}"
            )
            + f"); advisories {', '.join(appraisal.advisory_ids) or 'none'}"
        )
    warnings = []
    if quote.padding:
        warnings.append(f"quote is followed by {quote.padding} bytes of zero padding (ignored)")
    return VerifiedQuote(
        quote=quote,
        pck=chain.pck,
        root=root,
        appraisal=appraisal,
        collateral_time=min(tcb_info.issue_date, qe_identity.issue_date),
        warnings=tuple(warnings),
    )


@dataclass(frozen=True, slots=True)
class _CollateralSet:
    """The collateral of one PCK chain, verified (steps 5 and 6) but for the checks at
    ``now``: the CRLs' signatures and listings, the TCB Signing certificate's link to the
    root and its listing, the TCB Info and QE Identity signatures."""

    root_crl: x509.CertificateRevocationList
    pck_crl: x509.CertificateRevocationList
    signer: x509.Certificate
    tcb_info: TcbInfo
    qe_identity: EnclaveIdentity
    pck: PckExtensions
    current: tuple[datetime, datetime]
    """The instants inside every window :meth:`check_at` checks."""
    appraisals: Lru[Hashable, Appraisal] = field(
        default_factory=lambda: Lru(64), compare=False, repr=False
    )
    """The TCB appraisals of this chain's quotes (step 7, a pure function of the collateral,
    the PCK extensions, the QE report and the TD report's TEE_TCB_SVN, MRSIGNERSEAM and
    SEAMATTRIBUTES): by the QE report's bytes and those three fields, none for SGX."""

    def appraise(self, quote: Quote) -> Appraisal:
        body, qe_report = quote.body, quote.signature_data.qe.qe_report
        module = (
            (body.tee_tcb_svn, body.mr_signer_seam, body.seam_attributes)
            if isinstance(body, TdReportBody10)
            else None
        )
        return self.appraisals.get_or_compute(
            (qe_report.to_bytes(), module),
            lambda _: appraise(self.tcb_info, self.qe_identity, self.pck, body, qe_report),
        )

    def check_at(self, now: datetime) -> None:
        """What steps 5 and 6 check at ``now``, in their order: the CRL windows, the TCB
        Signing certificate's validity, the TCB Info and QE Identity windows (one comparison
        of the instants they all share, and the checks, for the error, only outside)."""
        current_from, current_until = self.current
        if current_from <= now <= current_until:
            return
        for name, crl in (("root_crl", self.root_crl), ("pck_crl", self.pck_crl)):
            check_window(name, crl.last_update_utc, crl.next_update_utc, now, start="thisUpdate")
        check_validity(self.signer, now, "TCB Signing")
        info, identity = self.tcb_info, self.qe_identity
        check_window("TCB Info", info.issue_date, info.next_update, now)
        check_window("QE Identity", identity.issue_date, identity.next_update, now)


def _appraisable_key(chain: PckChain, collateral: Mapping[str, bytes], now: datetime) -> Hashable:
    """Everything a :class:`_CollateralSet` depends on: the chain (its bytes and roots), the
    bytes of each document, and which TCB Signing certificate signs (the one given, or the
    pinned one chosen at ``now``; none chosen is a key that never verifies)."""
    signing_chain = collateral.get("tcb_signing_chain")
    signer = (
        ("pinned", _pinned_signer_index(now))
        if signing_chain is None
        else ("tcb_signing_chain", signing_chain)
    )
    return (
        chain.key,
        collateral["root_crl"],
        collateral["pck_crl"],
        signer,
        collateral["tcb_info"],
        collateral["qe_identity"],
    )


def _verified_collateral_set(
    chain: PckChain, collateral: Mapping[str, bytes], now: datetime
) -> _CollateralSet:
    """Steps 5 and 6 in full, each check in its order (the memo of this set remembers only
    a success, after which :meth:`_CollateralSet.check_at` repeats the checks at ``now``)."""
    root = chain.root
    root_crl = _crl(collateral["root_crl"], "root_crl")
    check_not_revoked(chain.ca, root_crl, root.certificate, "PCK CA", now=now, name="root_crl")
    pck_crl = _crl(collateral["pck_crl"], "pck_crl")
    check_not_revoked(chain.leaf, pck_crl, chain.ca, "PCK", now=now, name="pck_crl")
    signer = _tcb_signer(collateral.get("tcb_signing_chain"), chain, now)
    check_not_revoked(
        signer.certificate, root_crl, root.certificate, "TCB Signing", now=now, name="root_crl"
    )

    tcb_info = _verified_collateral(
        _tcb_infos, collateral["tcb_info"], signer, parse_tcb_info, "TCB Info"
    )
    check_window("TCB Info", tcb_info.issue_date, tcb_info.next_update, now)
    qe_identity = _verified_collateral(
        _qe_identities, collateral["qe_identity"], signer, parse_qe_identity, "QE Identity"
    )
    check_window("QE Identity", qe_identity.issue_date, qe_identity.next_update, now)
    current = _common_window(
        [
            (root_crl.last_update_utc, root_crl.next_update_utc),
            (pck_crl.last_update_utc, pck_crl.next_update_utc),
            (signer.certificate.not_valid_before_utc, signer.certificate.not_valid_after_utc),
            (tcb_info.issue_date, tcb_info.next_update),
            (qe_identity.issue_date, qe_identity.next_update),
        ]
    )
    return _CollateralSet(
        root_crl, pck_crl, signer.certificate, tcb_info, qe_identity, chain.pck, current
    )


def _check_kind(quote: Quote, tee: Tee) -> None:
    if quote.header.qe_vendor_id != INTEL_QE_VENDOR_ID:
        raise UnsupportedEvidence(
            f"quote header.qe_vendor_id {quote.header.qe_vendor_id.hex()} is not Intel's QE "
            f"{INTEL_QE_VENDOR_ID.hex()}"
        )
    found = Tee.TDX if quote.is_tdx else Tee.SGX
    if found is not tee:
        raise UnsupportedEvidence(
            f"quote v{quote.header.version} carries a {found.value.upper()} body, not "
            f"{tee.value.upper()}: verify it as tee {found.value}"
        )


# --- PCK chain ------------------------------------------------------------------------------


def _cached_certificates(
    role: str, data: bytes, load: Callable[[bytes], Sequence[x509.Certificate]]
) -> tuple[x509.Certificate, ...]:
    """``load(data)``, remembered under ``role`` and ``data``: each role has one loader, and
    loaders differ in what they accept (a quote's certification data may hold none)."""
    key = cache.digest(role.encode(), data)
    return _certificates.get_or_compute(key, lambda: tuple(load(data)))


def _quote_certificates(data: bytes) -> tuple[x509.Certificate, ...]:
    """The certificates of a quote's certification data (type 5 or 4): possibly none."""
    return _cached_certificates("quote certification data", data, load_certificates)


def _collateral_certificates(data: bytes, name: str) -> tuple[x509.Certificate, ...]:
    """The certificates of collateral ``name`` (``pck_chain``, ``tcb_signing_chain``): a PEM
    bundle or one DER certificate, NUL-terminated or not; ``CollateralInvalid`` otherwise.
    Never empty."""

    def load(data: bytes) -> list[x509.Certificate]:
        certificates = parse_collateral(name, load_certificates, data)
        if not certificates:
            raise CollateralInvalid(f"{name} holds no certificate")
        return certificates

    return _cached_certificates(f"collateral {name}", data, load)


def _fingerprint(cert: x509.Certificate) -> bytes:
    return certificate_digest(cert)


def _root_id(root: TrustedRoot) -> bytes:
    """What a memo needs of a trusted root: its certificate, and the name and insecure flag
    that the claims of a chain ending in it carry (remembered per root object: hashing a
    ``TrustedRoot`` hashes its whole certificate, each quote)."""
    return _ROOT_IDS.get(root)


class _RootIds:
    """:func:`_root_id` of the roots seen, by object identity; each entry holds its root, so
    an id is never reused while it is remembered (as ``trust._DigestMemo``)."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._entries: dict[int, tuple[TrustedRoot, bytes]] = {}
        self._lock = threading.Lock()

    def get(self, root: TrustedRoot) -> bytes:
        entry = self._entries.get(id(root))
        if entry is not None and entry[0] is root:
            return entry[1]
        value = cache.digest(
            _fingerprint(root.certificate), root.name.encode(), bytes([root.insecure])
        )
        with self._lock:
            if len(self._entries) >= self._capacity:
                del self._entries[next(iter(self._entries))]  # oldest first
            self._entries[id(root)] = (root, value)
        return value


_ROOT_IDS = _RootIds(64)


def _optional(data: bytes | None) -> bytes:
    """A memo key part telling an absent item from a present one, empty or not."""
    return b"absent" if data is None else b"given:" + data


def _verified_pck_chain(
    quote: Quote, collateral: Mapping[str, bytes], roots: Sequence[TrustedRoot], now: datetime
) -> PckChain:
    """The PCK chain verified to one of ``roots``; links memoised, validity checked at ``now``."""
    cert_data = quote.signature_data.qe.certification_data
    pck_chain = collateral.get("pck_chain")
    # The memo's key is a tuple of the parts, hashed as Python hashes bytes (the SHA-256 of
    # the chain's 4 KB cost more than the rest of the lookup); the chain's own ``key``, which
    # other memos' keys hold, is their digest, made once when the chain is built.
    parts = (cert_data.type, cert_data.data, pck_chain, *(_root_id(root) for root in roots))

    def build() -> PckChain:
        leaf, ca = _pck_chain(quote, collateral)
        root = verify_chain([("PCK", leaf), ("PCK CA", ca)], roots, now)
        key = cache.digest(
            cert_data.type.to_bytes(2, "little"),
            cert_data.data,
            _optional(pck_chain),
            *(_root_id(root) for root in roots),
        )
        validity = _common_window(
            [
                (cert.not_valid_before_utc, cert.not_valid_after_utc)
                for cert in (leaf, ca, root.certificate)
            ]
        )
        return PckChain(leaf, ca, root, pck_extensions(leaf), key, _root_id(root), validity)

    chain = _chains.get_or_compute(parts, build)
    chain.check_at(now)
    return chain


def _pck_chain(
    quote: Quote, collateral: Mapping[str, bytes]
) -> tuple[x509.Certificate, x509.Certificate]:
    """The PCK leaf and its CA, from the quote's certification data and ``pck_chain``."""
    cert_data = quote.signature_data.qe.certification_data
    from_quote: tuple[x509.Certificate, ...] = ()
    if cert_data.type in (CERT_PCK_CHAIN, CERT_PCK_LEAF):
        from_quote = _quote_certificates(cert_data.data)
    from_collateral: tuple[x509.Certificate, ...] = ()
    if "pck_chain" in collateral:
        from_collateral = _collateral_certificates(collateral["pck_chain"], "pck_chain")
    pool = (*from_quote, *from_collateral)
    if not pool:
        raise CollateralUnavailable(
            f"quote certification data type {cert_data.type} carries no PCK certificate and "
            "no pck_chain was given"
        )
    leaf = pool[0]
    if _PCK_LEAF_PHRASE not in common_name(leaf.subject):
        raise ChainInvalid(
            f"PCK certificate CN '{common_name(leaf.subject)}' does not contain "
            f"'{_PCK_LEAF_PHRASE}'"
        )
    for candidate in pool[1:]:
        if candidate.subject == leaf.issuer and candidate != leaf:
            ca = candidate
            break
    else:
        raise ChainInvalid(
            f"PCK issuer '{common_name(leaf.issuer)}' is in neither the quote's "
            "certification data nor pck_chain"
        )
    if not any(phrase in common_name(ca.subject) for phrase in _PCK_CA_PHRASES):
        raise ChainInvalid(
            f"PCK CA certificate CN '{common_name(ca.subject)}' is not an Intel SGX PCK "
            "Platform or Processor CA"
        )
    return leaf, ca


# --- signatures -----------------------------------------------------------------------------


def _verify_qe_report(quote: Quote, chain: PckChain) -> None:
    qe = quote.signature_data.qe
    report = qe.qe_report.to_bytes()
    key = (report, qe.qe_report_signature, chain.key)

    def check() -> bool:
        public_key = chain.leaf.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise ChainInvalid("PCK certificate key is not ECDSA")
        try:
            public_key.verify(der.ecdsa_signature(qe.qe_report_signature), report, _ECDSA_SHA256)
        except InvalidSignature:
            raise SignatureInvalid(
                "QE report signature does not verify with the PCK certificate key"
            ) from None
        return True

    _qe_reports.get_or_compute(key, check)


def _verify_attestation_key_binding(quote: Quote) -> None:
    qe = quote.signature_data.qe
    expected = hashlib.sha256(quote.signature_data.attestation_key + qe.qe_auth_data).digest()
    found = qe.qe_report.report_data[:32]
    if found != expected:
        raise SignatureInvalid(
            f"QE REPORTDATA[0:32] {found.hex()} != SHA-256(attestation key || QE "
            f"authentication data) {expected.hex()}"
        )


def _attestation_key(raw: bytes) -> ec.EllipticCurvePublicKey:
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + raw)
    except ValueError:
        raise MalformedEvidence("attestation key is not a point on P-256") from None


def _verify_quote_signature(quote: Quote, evidence: bytes) -> None:
    raw_key = quote.signature_data.attestation_key
    key = _attestation_keys.get_or_compute(raw_key, lambda: _attestation_key(raw_key))
    signed = bytes(evidence[: quote.signed_size])
    try:
        key.verify(der.ecdsa_signature(quote.signature_data.signature), signed, _ECDSA_SHA256)
    except InvalidSignature:
        raise SignatureInvalid(
            "quote signature does not verify with the attestation key (ECDSA P-256 over "
            "header and body)"
        ) from None


# --- CRLs and the TCB Signing certificate ---------------------------------------------------


def _crl(data: bytes, name: str) -> x509.CertificateRevocationList:
    """The one CRL of collateral ``name`` (DER or PEM, NUL-terminated or not), parsed once per
    distinct bytes; its signature and window are checked by ``trust.check_not_revoked``."""

    def load() -> x509.CertificateRevocationList:
        crls = parse_collateral(name, load_crls, data)
        if len(crls) != 1:
            raise CollateralInvalid(f"{name} holds {len(crls)} CRLs, not one")
        return crls[0]

    return _crls.get_or_compute(cache.digest(data), load)


def _pinned_signer_index(now: datetime) -> int | None:
    """The newest pinned TCB Signing certificate valid at ``now``, if any."""
    pinned = KNOWN_TCB_SIGNING_CERTS
    valid = [
        index
        for index, cert in enumerate(pinned)
        if cert.not_valid_before_utc <= now <= cert.not_valid_after_utc
    ]
    return max(valid, key=lambda index: pinned[index].not_valid_before_utc) if valid else None


@dataclass(frozen=True, slots=True)
class _Signer:
    certificate: x509.Certificate
    id: bytes


def _tcb_signer(chain_data: bytes | None, chain: PckChain, now: datetime) -> _Signer:
    """The TCB Signing certificate, verified to the PCK chain's root at ``now``."""
    root = chain.root
    if chain_data is None:
        if root.insecure:
            raise CollateralUnavailable(
                f"evidence rooted in {root.name} needs a tcb_signing_chain: the pinned Intel "
                "TCB Signing certificates chain only to the Intel root"
            )
        index = _pinned_signer_index(now)
        if index is None:
            raise CertificateExpired(
                f"no pinned Intel SGX TCB Signing certificate is valid at {iso(now)}"
            )
        pinned = KNOWN_TCB_SIGNING_CERTS[index]
        source = cache.digest(b"pinned", _fingerprint(pinned))

        def certificate() -> x509.Certificate:
            return pinned

    else:
        given = chain_data
        source = cache.digest(b"tcb_signing_chain", given)

        def certificate() -> x509.Certificate:
            return _collateral_certificates(given, "tcb_signing_chain")[0]

    def build() -> _Signer:
        signer = certificate()
        if _TCB_SIGNING_PHRASE not in common_name(signer.subject):
            raise ChainInvalid(
                f"TCB Signing certificate CN '{common_name(signer.subject)}' does not contain "
                f"'{_TCB_SIGNING_PHRASE}'"
            )
        verify_chain([("TCB Signing", signer)], (root,), now)
        return _Signer(signer, _fingerprint(signer))

    signer = _signers.get_or_compute(cache.digest(source, chain.root_id), build)
    check_validity(signer.certificate, now, "TCB Signing")
    return signer


def _verified_collateral(
    memo: cache.Memo[SignedCollateral[_T]],
    data: bytes,
    signer: _Signer,
    parse: Callable[[bytes], SignedCollateral[_T]],
    name: str,
) -> _T:
    def load() -> SignedCollateral[_T]:
        signed = parse(data)
        verify_collateral_signature(signed, signer.certificate, name)
        return signed

    key = cache.digest(data, signer.id)
    return memo.get_or_compute(key, load).body
