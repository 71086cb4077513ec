"""Verify a vTPM attestation-key (AK) certificate to a pinned cloud root.

The AK certificate is read from the vTPM's NV storage (Azure: index 0x01C101D0; GCE: index
0x01C10000 for the RSA AK), which returns the whole index: the DER certificate and then
zeros. So the certificate is taken byte for byte up to the end its own DER length gives, and
only zero bytes may follow (:func:`broker.evidence.der.strip_terminator`). Then, each step
raising:

1. the chain: the AK certificate, then issuers found by subject among the ``ak_chain`` given
   and the intermediates that ship pinned (:mod:`.roots`), up to a pinned root or a test root
   admitted through an ``insecure_`` setting; every link's signature, and every
   certificate's validity at ``now`` (``trust.verify_chain``: ``chain-invalid``,
   ``certificate-expired``);
2. the AK certificate is not a CA (``chain-invalid``);
3. its public key is the AK that signed the quote, compared as DER SubjectPublicKeyInfo
   (``chain-invalid``): a genuine certificate of another key vouches for nothing here.

Revocation is not checked: neither cloud publishes CRLs that its guests or go-tpm-tools
consult for AK certificates, and the AK lives as long as the VM.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from broker.errors import ChainInvalid, MalformedEvidence
from broker.evidence.tpm import roots
from broker.evidence.tpm.quote import AkPublicKey, spki_fingerprint
from broker.evidence.trust import (
    DEFAULT_LINKS,
    LinkCache,
    TrustedRoot,
    load_certificates,
    verify_chain,
)
from broker.lru import memoized

#: Most certificates between an AK certificate and its root (Azure and GCE use one).
MAX_INTERMEDIATES = 4
_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@memoized(256)
def _certificates(data: bytes) -> tuple[x509.Certificate, ...]:
    """:func:`load_certificates`, remembered by the exact bytes: a VM sends the same AK
    certificate (and chain) with every quote, and a parsed certificate never changes. What
    is checked of it (links, validity at ``now``, the key) is checked on every call."""
    return tuple(load_certificates(data))


def load_ak_certificate(data: bytes) -> x509.Certificate:
    """The one certificate of ``data`` (DER, zero padding after it tolerated, or PEM)."""
    certificates = _certificates(data)
    if len(certificates) != 1:
        raise MalformedEvidence(
            f"ak_cert holds {len(certificates)} certificates; it is the AK certificate alone "
            "(its issuers go in ak_chain)"
        )
    return certificates[0]


def load_ak_chain(items: Sequence[bytes]) -> list[x509.Certificate]:
    """Every certificate of ``items``, each a DER certificate or a PEM bundle."""
    return [cert for item in items for cert in _certificates(item)]


def verify_ak_certificate(
    certificate: x509.Certificate,
    chain: Sequence[x509.Certificate],
    ak: AkPublicKey,
    *,
    now: datetime,
    extra_roots: Sequence[TrustedRoot] = (),
    links: LinkCache = DEFAULT_LINKS,
) -> TrustedRoot:
    """Verify ``certificate`` for ``ak`` at ``now`` (steps in the module docstring); return
    the root its chain ended in."""
    trusted = (*roots.roots(), *extra_roots)
    path = _path(certificate, [*chain, *roots.intermediates()], trusted, links)
    root = verify_chain(path, trusted, now, links)
    constraints = _basic_constraints(certificate)
    if constraints is not None and constraints.ca:
        raise ChainInvalid("AK certificate is a CA (basicConstraints cA TRUE), not a key's")
    found = certificate.public_key().public_bytes(*_SPKI)
    wanted = ak.public_bytes(*_SPKI)
    if found != wanted:
        certified = hashlib.sha256(found).hexdigest()
        raise ChainInvalid(
            f"AK certificate key (SPKI SHA-256 {certified[:16]}...) is not the AK that signed "
            f"the quote (SPKI SHA-256 {spki_fingerprint(ak)[:16]}...)"
        )
    return root


def _path(
    leaf: x509.Certificate,
    candidates: Sequence[x509.Certificate],
    trusted: Sequence[TrustedRoot],
    links: LinkCache,
) -> list[tuple[str, x509.Certificate]]:
    """The AK certificate and its issuers, as far as the candidates go, up to (not
    including) a trusted root; ``verify_chain`` then says where it fails to end in one.
    Where two candidates share a subject, the one whose key verifies the link is taken."""
    path: list[tuple[str, x509.Certificate]] = [("AK", leaf)]
    roots_by_subject = {root.certificate.subject for root in trusted}
    current = leaf
    for depth in range(MAX_INTERMEDIATES + 1):
        if current.issuer in roots_by_subject or current.subject == current.issuer:
            return path
        issuer = _issuer_of(current, candidates, links)
        if issuer is None:
            return path
        if depth == MAX_INTERMEDIATES:
            break
        path.append((f"AK CA {depth + 1}", issuer))
        current = issuer
    raise ChainInvalid(
        f"AK certificate chain: more than {MAX_INTERMEDIATES} intermediates before a root"
    )


def _issuer_of(
    child: x509.Certificate, candidates: Sequence[x509.Certificate], links: LinkCache
) -> x509.Certificate | None:
    named = [cert for cert in candidates if cert.subject == child.issuer and cert != child]
    for cert in named:
        try:
            links.verify_link(child, cert, "AK")
        except ChainInvalid:
            continue
        return cert
    return named[0] if named else None  # verify_chain then reports the bad link


def _basic_constraints(cert: x509.Certificate) -> x509.BasicConstraints | None:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None
