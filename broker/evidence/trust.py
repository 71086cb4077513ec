"""Pinned trust anchors and the certificate-chain checks every TEE verifier shares.

Vendor roots live beside the verifier that uses them (``<tee>/roots/``) with their source,
fetch date and SHA-256 fingerprint; :func:`load_pinned_root` refuses a file whose fingerprint
differs from the pin. A root created for tests is admitted only through the
``insecure_test_roots`` setting and is then named ``insecure-test-...`` wherever it appears,
so a policy and an auditor can always tell.

Signature links between two certificates are immutable facts, so :class:`LinkCache` remembers
the verified (child, issuer) pairs by fingerprint; validity windows and revocation depend on
``now`` and are checked on every call.

Certificates and CRLs are read by the loaders here (:func:`load_certificate`,
:func:`load_der_certificate`, :func:`load_certificates`, :func:`load_crls`), which parse every
field the verifiers read at load time, so that damaged bytes are ``MalformedEvidence`` there
and never a bare pyca/cryptography exception later. :func:`check_not_revoked` is the one CRL
check: the CRL's issuer and signature (cached), its window at ``now``, then the listing.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.utils import CryptographyDeprecationWarning
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
from broker.evidence import der
from broker.lru import Lru
from broker.timeutil import iso

INSECURE_ROOT_PREFIX = "insecure-test-"
_T = TypeVar("_T")
_SHA256 = hashes.SHA256()


@dataclass(frozen=True, slots=True)
class TrustedRoot:
    """A self-signed certificate that ends chains for one vendor."""

    name: str
    certificate: x509.Certificate
    insecure: bool = False

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.certificate)


_Signed = x509.Certificate | x509.CertificateRevocationList


class _DigestMemo:
    """SHA-256 digests of certificates and CRLs, remembered by object identity.

    A certificate or CRL object is immutable, and the verifiers keep the ones they see often
    (pinned roots, cached VCEKs, PCKs and CRLs) as the same objects, so a repeat costs a
    dictionary lookup instead of re-encoding and hashing the DER (about 11 us each, several
    per chain). Each entry holds its object, so an id is never reused while it is remembered.
    """

    def __init__(self, capacity: int = 1024) -> None:
        self._capacity = capacity
        self._entries: dict[int, tuple[_Signed, bytes]] = {}
        self._lock = threading.Lock()

    def digest(self, cert: _Signed) -> bytes:
        entry = self._entries.get(id(cert))
        if entry is not None and entry[0] is cert:
            return entry[1]
        value = cert.fingerprint(_SHA256)
        self.remember(cert, value)
        return value

    def remember(self, cert: _Signed, value: bytes) -> None:
        """Record ``value`` as the digest of ``cert`` (its DER, hashed by a loader that holds
        the exact bytes): ``fingerprint`` encodes the object again to hash it, about 80 us
        for a CRL of 44 entries."""
        with self._lock:
            if len(self._entries) >= self._capacity:
                del self._entries[next(iter(self._entries))]  # oldest first
            self._entries[id(cert)] = (cert, value)


_DIGESTS = _DigestMemo()


def fingerprint(cert: x509.Certificate) -> str:
    """Lowercase hex SHA-256 of the DER encoding."""
    return _DIGESTS.digest(cert).hex()


def certificate_digest(cert: x509.Certificate) -> bytes:
    """SHA-256 of the DER encoding (remembered for the objects seen most recently)."""
    return _DIGESTS.digest(cert)


#: Every pinned certificate (roots and the vendor intermediates shipped with them), as read
#: in full when its module was imported. A chain or collateral carrying one of them, as most
#: do (Intel's quotes and issuer chains end in the root; AMD's cert_chain is ASK and ARK), is
#: given the pinned object: equal bytes make an equal certificate, so nothing read from it
#: can differ, and it is not read again. Filled at import only; never cleared.
_PINNED: dict[x509.Certificate, x509.Certificate] = {}


def load_pinned_root(package: str, filename: str, name: str, sha256: str) -> TrustedRoot:
    """Load a root shipped in ``package`` and check it against its pinned fingerprint."""
    return TrustedRoot(
        name=name, certificate=load_pinned_certificate(package, filename, name, sha256)
    )


def load_pinned_certificate(
    package: str, filename: str, name: str, sha256: str
) -> x509.Certificate:
    """Load a certificate shipped in ``package`` (a root or a vendor intermediate that ships
    with it) and check it against its pinned fingerprint."""
    data = resources.files(package).joinpath(filename).read_bytes()
    cert = load_certificate(data)
    found = fingerprint(cert)
    if found != sha256.lower().replace(":", ""):
        raise ConfigurationError(f"pinned certificate {name}: SHA-256 {found} != pinned {sha256}")
    return _PINNED.setdefault(cert, cert)


def insecure_root(cert: x509.Certificate, label: str) -> TrustedRoot:
    """A test root, named so that nobody can mistake it for a vendor's."""
    return TrustedRoot(name=f"{INSECURE_ROOT_PREFIX}{label}", certificate=cert, insecure=True)


#: What pyca/cryptography raises for a certificate it cannot read; some of these only when
#: a field is first accessed, which :func:`_read_fully` forces at load time.
UNREADABLE = (
    ValueError,
    TypeError,  # e.g. a name attribute whose value type does not fit its OID
    UnsupportedAlgorithm,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)


@contextmanager
def zero_serial_tolerated() -> Iterator[None]:
    """Silence exactly the warning pyca/cryptography gives for a serial number of zero.

    AMD KDS issues VCEKs and VLEKs with serial number 0, which RFC 5280 forbids; cryptography
    still loads them but emits a CryptographyDeprecationWarning on load and on every
    ``serial_number`` read (an error under pytest's ``-W error``). We knowingly accept them,
    at certificate load and where serial numbers are read. ``catch_warnings`` swaps a
    process-global filter list, so a concurrent thread may briefly see the default filters:
    harmless, the warning would only be printed.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message="Parsed a serial number which wasn't positive",
            category=CryptographyDeprecationWarning,
        )
        yield


@contextmanager
def long_names_tolerated() -> Iterator[None]:
    """Silence exactly the warning pyca/cryptography gives for a name attribute whose length
    is outside RFC 5280's bounds (ub-common-name 64, a country name of 2): Google's vTPM EK/AK
    CAs have common names of 79 and 84 characters, and a damaged certificate may have any
    length, which under ``-W error`` escaped as a UserWarning instead of failing its chain.
    cryptography loads the name all the same; the names are read once, at load
    (:func:`_read_fully`), and kept, so the warning cannot come back later."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Attribute's length must be >= ", category=UserWarning
        )
        yield


def load_certificate(data: bytes) -> x509.Certificate:
    """One certificate from DER or PEM; ``MalformedEvidence`` when it is neither, or when a
    field the verifiers read (names, validity, key, extensions) does not parse."""
    if data.lstrip().startswith(b"-----BEGIN"):
        return _certificate(x509.load_pem_x509_certificate, data)
    return load_der_certificate(data)


def load_der_certificate(data: bytes) -> x509.Certificate:
    """One DER certificate, byte for byte (no text, no terminator); ``MalformedEvidence``
    when it does not parse, as :func:`load_certificate`."""
    return _certificate(x509.load_der_x509_certificate, data)


def _certificate(load: Callable[[bytes], x509.Certificate], data: bytes) -> x509.Certificate:
    try:
        with zero_serial_tolerated(), long_names_tolerated():
            return _pinned_or_read_fully(load(data))
    except UNREADABLE as exc:
        raise MalformedEvidence(f"certificate does not parse: {exc}") from None


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle (NUL terminators and blank text tolerated) or one DER
    certificate (NULs after it tolerated)."""
    stripped = data.rstrip(b"\x00").strip()
    if not stripped:
        return []
    if stripped.startswith(b"-----BEGIN"):
        try:
            with zero_serial_tolerated(), long_names_tolerated():
                return [
                    _pinned_or_read_fully(cert)
                    for cert in x509.load_pem_x509_certificates(stripped)
                ]
        except UNREADABLE as exc:
            raise MalformedEvidence(f"certificate bundle does not parse: {exc}") from None
    # DER is taken byte for byte: a DER certificate may well end in 0x00 or 0x20 (the last
    # byte of its signature), which the text stripping above would cut off.
    return [load_der_certificate(der.strip_terminator(data))]


def parse_collateral(name: str, parse: Callable[[bytes], _T], data: bytes) -> _T:
    """Parse one piece of collateral named ``name``; a parse failure is ``CollateralInvalid``
    (bytes that came with the evidence would be ``MalformedEvidence``)."""
    try:
        return parse(data)
    except MalformedEvidence as exc:
        raise CollateralInvalid(f"{name}: {exc.detail}") from None


def _pinned_or_read_fully(cert: x509.Certificate) -> x509.Certificate:
    pinned = _PINNED.get(cert)
    return _read_fully(cert) if pinned is None else pinned


def _read_fully(cert: x509.Certificate) -> x509.Certificate:
    """Parse now what pyca/cryptography parses lazily, so that a malformed certificate fails
    at load as ``MalformedEvidence`` instead of later with a bare ``ValueError``."""
    _ = (cert.version, cert.subject, cert.issuer, cert.extensions, cert.signature_algorithm_oid)
    _ = (cert.signature_hash_algorithm, cert.not_valid_before_utc, cert.not_valid_after_utc)
    _ = cert.public_key()
    return cert


_PEM_CRL_END = b"-----END X509 CRL-----"


def load_crls(data: bytes) -> list[x509.CertificateRevocationList]:
    """Every CRL of a PEM bundle (NUL terminators and blank text tolerated) or one DER CRL
    (byte for byte, NULs after it tolerated), with every field the verifiers read parsed now;
    ``MalformedEvidence`` otherwise. Never empty."""
    stripped = data.rstrip(b"\x00").strip()
    if stripped.startswith(b"-----BEGIN"):
        blocks = [block + _PEM_CRL_END for block in stripped.split(_PEM_CRL_END) if block.strip()]
        try:
            return [_read_crl_fully(x509.load_pem_x509_crl(block.strip())) for block in blocks]
        except UNREADABLE as exc:
            raise MalformedEvidence(f"PEM CRL bundle does not parse: {exc}") from None
    encoded = der.strip_terminator(data)
    try:
        crl = _read_crl_fully(x509.load_der_x509_crl(encoded))
    except UNREADABLE as exc:
        raise MalformedEvidence(f"DER CRL does not parse: {exc}") from None
    # DER has one encoding, so the bytes parsed are the bytes ``fingerprint`` would encode.
    _DIGESTS.remember(crl, hashlib.sha256(encoded).digest())
    return [crl]


def _read_crl_fully(crl: x509.CertificateRevocationList) -> x509.CertificateRevocationList:
    """What :func:`_read_fully` is for certificates: the lazily parsed fields of a CRL, read
    now.

    Its entries are not read one by one: the verifiers ask only whether a serial number is
    listed (``get_revoked_certificate_by_serial_number``, over entries whose serial numbers
    and dates pyca/cryptography checked when it parsed the list) and then read that entry's
    date (:func:`check_not_revoked`). Reading every entry as Python objects cost about 10 us
    an entry, most of a new platform's cost with Intel's PCK CRLs of a few hundred entries.
    """
    _ = (crl.issuer, crl.last_update_utc, crl.next_update_utc, crl.extensions)
    _ = (crl.signature_algorithm_oid, crl.signature_hash_algorithm)
    return crl


def common_name(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else name.rfc4514_string()


def check_validity(cert: x509.Certificate, now: datetime, role: str) -> None:
    """Raise ``CertificateExpired`` unless ``not_before <= now <= not_after``."""
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now < not_before:
        raise CertificateExpired(
            f"{role} certificate '{common_name(cert.subject)}' is not valid before "
            f"{iso(not_before)} (now {iso(now)})"
        )
    if now > not_after:
        raise CertificateExpired(
            f"{role} certificate '{common_name(cert.subject)}' expired at "
            f"{iso(not_after)} (now {iso(now)})"
        )


class LinkCache:
    """Thread-safe bounded memory of verified signature links: (child, issuer) certificate
    pairs and (CRL, issuer) pairs, each by SHA-256 fingerprint, kept apart (the two checks
    differ, and a remembered link answers only the check that made it)."""

    def __init__(self, capacity: int = 4096) -> None:
        self._links: Lru[tuple[bytes, bytes], bool] = Lru(capacity)
        self._crl_signatures: Lru[tuple[bytes, bytes], bool] = Lru(capacity)
        self._pinned: set[tuple[bytes, bytes]] = set()

    def pin(self, child: x509.Certificate, issuer: x509.Certificate, role: str) -> None:
        """Verify now, at import, that pinned ``issuer`` signed pinned ``child`` (a vendor's
        intermediate shipped with its root), and remember it for the life of the process:
        :meth:`clear` forgets what evidence brought, not the broker's own certificates.
        ``ConfigurationError`` if the link does not verify."""
        try:
            self.verify_link(child, issuer, role)
        except ChainInvalid as exc:
            raise ConfigurationError(f"pinned {exc.detail}") from None
        self._pinned.add((_DIGESTS.digest(child), _DIGESTS.digest(issuer)))

    def verify_link(self, child: x509.Certificate, issuer: x509.Certificate, role: str) -> None:
        """Raise ``ChainInvalid`` unless ``issuer`` signed ``child`` (names and signature)."""
        key = (_DIGESTS.digest(child), _DIGESTS.digest(issuer))
        if key in self._pinned or self._links.get(key):
            return
        try:
            child.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm) as exc:
            reason = str(exc) or type(exc).__name__
            raise ChainInvalid(
                f"{role} certificate '{common_name(child.subject)}' is not signed by "
                f"'{common_name(issuer.subject)}': {reason}"
            ) from None
        self._links.put(key, True)

    def verify_crl(
        self, crl: x509.CertificateRevocationList, issuer: x509.Certificate, name: str
    ) -> None:
        """Raise ``CollateralInvalid`` unless ``issuer`` issued and signed ``crl`` (remembered).

        A CRL is collateral: one that its issuer did not sign is badly signed collateral, as a
        badly signed TCB Info is, whichever TEE it serves.
        """
        key = (_DIGESTS.digest(crl), _DIGESTS.digest(issuer))
        if self._crl_signatures.get(key):
            return
        issuer_name = common_name(issuer.subject)
        if crl.issuer != issuer.subject:
            raise CollateralInvalid(f"{name} issuer '{common_name(crl.issuer)}' != '{issuer_name}'")
        try:
            valid = crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
        except UNREADABLE:
            valid = False
        if not valid:
            raise CollateralInvalid(
                f"{name} is not signed by '{issuer_name}': its signature does not verify"
            )
        self._crl_signatures.put(key, True)

    def clear(self) -> None:
        """Forget every link and CRL signature remembered, but the pinned links."""
        self._links.clear()
        self._crl_signatures.clear()

    def __len__(self) -> int:
        """Links remembered, certificate and CRL signatures together."""
        return len(self._links) + len(self._crl_signatures)


DEFAULT_LINKS = LinkCache()


def verify_chain(
    chain: Sequence[tuple[str, x509.Certificate]],
    roots: Iterable[TrustedRoot],
    now: datetime,
    links: LinkCache = DEFAULT_LINKS,
) -> TrustedRoot:
    """Verify ``chain`` (leaf first, each with a role name for messages) up to a trusted root.

    The last element must be byte-identical to one of ``roots`` (a root is trusted by its
    pinned bytes, never by its name), or be directly issued by one of them. Every certificate
    must be valid at ``now``. Returns the root that ended the chain.
    """
    if not chain:
        raise ChainInvalid("empty certificate chain")
    for (role, child), (_, issuer) in itertools.pairwise(chain):
        links.verify_link(child, issuer, role)
    top_role, top = chain[-1]
    root = _anchor(top_role, top, roots, links)
    for role, cert in chain:
        check_validity(cert, now, role)
    check_validity(root.certificate, now, "root")
    return root


def _anchor(
    role: str, top: x509.Certificate, roots: Iterable[TrustedRoot], links: LinkCache
) -> TrustedRoot:
    top_fp = fingerprint(top)
    candidates = list(roots)
    for root in candidates:
        if root.fingerprint == top_fp:
            return root
    # Several trusted roots may share a subject name (a product's ARK and a test root made in
    # its image): the chain ends in whichever of them actually signed it.
    named = [root for root in candidates if root.certificate.subject == top.issuer]
    failure: ChainInvalid | None = None
    for root in named:
        try:
            links.verify_link(top, root.certificate, role)
        except ChainInvalid as exc:
            failure = exc
            continue
        return root
    if failure is not None:
        raise failure
    raise ChainInvalid(
        f"{role} certificate '{common_name(top.subject)}' (SHA-256 {top_fp}) does not chain "
        f"to a pinned root (issuer '{common_name(top.issuer)}')"
    )


def check_not_revoked(
    cert: x509.Certificate,
    crl: x509.CertificateRevocationList,
    issuer: x509.Certificate,
    role: str,
    links: LinkCache = DEFAULT_LINKS,
    *,
    now: datetime,
    name: str | None = None,
) -> None:
    """Raise unless ``crl``, issued by ``issuer`` and current at ``now``, leaves ``cert`` out.

    In this order, each raising:

    1. ``crl`` names ``issuer`` as its issuer and ``issuer``'s key signed it, else
       ``CollateralInvalid`` (the signature is remembered in ``links`` like a certificate
       link): an unverifiable revocation list must not silently count as "nothing revoked";
    2. its window holds ``now`` (:func:`check_window`): no nextUpdate is ``CollateralInvalid``
       (RFC 5280 §5.1.2.5 makes it mandatory; without it a CRL would be honoured forever),
       nextUpdate before ``now`` or thisUpdate after ``now`` is ``CollateralExpired``;
    3. ``cert``'s serial number is not listed, else ``CertificateRevoked``.

    ``name`` names the CRL in messages (the collateral name); by default ``CRL for <role>``.
    """
    label = name or f"CRL for {role}"
    links.verify_crl(crl, issuer, label)
    check_window(label, crl.last_update_utc, crl.next_update_utc, now, start="thisUpdate")
    revoked = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    if revoked is not None:
        try:
            when = f" at {iso(revoked.revocation_date_utc)}"
        except UNREADABLE:  # a date Python cannot hold (year 0): listed all the same
            when = ""
        raise CertificateRevoked(
            f"{role} certificate '{common_name(cert.subject)}' serial "
            f"{cert.serial_number:#x} revoked{when}"
        )


def check_window(
    name: str,
    issued: datetime,
    next_update: datetime | None,
    now: datetime,
    *,
    start: str = "issueDate",
) -> None:
    """Collateral (a CRL, TCB Info, QE Identity) is current at ``now``: ``issued <= now <=
    next_update``.

    A missing nextUpdate is ``CollateralInvalid``: the document does not say until when it
    may be relied upon. Outside the window either way is ``CollateralExpired``, as a
    certificate outside its validity is ``CertificateExpired`` either way: a document issued
    after ``now`` is not current at ``now`` (a clock problem or a document from the future),
    just as one past its nextUpdate is not. ``start`` names the field of ``issued`` in
    messages (``issueDate``, or ``thisUpdate`` for a CRL).
    """
    if next_update is None:
        raise CollateralInvalid(f"{name} has no nextUpdate")
    if now > next_update:
        raise CollateralExpired(
            f"{name} nextUpdate {iso(next_update, zulu=True)} is before now {iso(now, zulu=True)}"
        )
    if now < issued:
        raise CollateralExpired(
            f"{name} {start} {iso(issued, zulu=True)} is after now {iso(now, zulu=True)}"
        )


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
