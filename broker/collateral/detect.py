"""What a collateral file is, and where it belongs in the store (``keybroker collateral import``).

Recognised by content, not by file name, so that files named by any tool import alike:

* JSON with ``tcbInfo`` -> Intel TCB Info (tee from its ``id``: ``TDX``, else SGX), keyed by
  FMSPC; with ``enclaveIdentity`` -> QE Identity (``TD_QE`` for TDX, ``QE`` for SGX);
* one certificate whose subject is ``SEV-VCEK`` / ``SEV-VLEK`` -> VCEK / VLEK, keyed by its
  product, hwID and SPL extensions (:func:`~broker.collateral.keys.endorsement_ref`);
* an AMD ASK (``SEV-<product>``) or ASVK (``SEV-VLEK-<product>``) with its ARK -> ``cert_chain``;
* a chain starting with an Intel ``... SGX TCB Signing`` certificate -> the TCB Signing chain
  (also URL-encoded, as the PCS ``TCB-Info-Issuer-Chain`` header carries it);
* a CRL issued by an AMD ARK (``ARK-<product>``) -> the product's ``crl``; by an Intel
  ``... PCK Platform CA`` / ``... PCK Processor CA`` -> ``pck_crl``; by an Intel
  ``... SGX Root CA`` -> ``root_crl``. CRLs are stored DER; a PEM file may hold several.

Recognised files the broker has no use for (PCK certificate chains, which quotes carry;
pinned roots) are reported as skipped. Anything else is ``CollateralInvalid``. Nothing here
verifies signatures: every document is verified when a report or quote uses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from broker.collateral.keys import (
    INTEL_PKI,
    ROOT_CRL_ITEM,
    TCB_SIGNING_ITEM,
    ItemKey,
    amd_product_of_name,
    cert_chain_key,
    crl_key,
    endorsement_ref,
    pck_crl_key,
    qe_identity_key,
    tcb_info_key,
)
from broker.collateral.store import CollateralItem
from broker.errors import CollateralInvalid, MalformedEvidence
from broker.evidence.claims import Tee
from broker.evidence.dcap.collateral import (
    parse_qe_identity,
    parse_tcb_info,
    top_level_members,
)
from broker.evidence.snp.endorsement import KIND_BY_COMMON_NAME, load_endorsement
from broker.evidence.trust import (
    common_name,
    load_certificates,
    load_crls,
    zero_serial_tolerated,
)

_PEM_CRL = b"-----BEGIN X509 CRL-----"
_PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"
# Intel's header spells "-----BEGIN%20CERTIFICATE-----%0A..."; stricter encoders escape "-".
_URL_ENCODED_PEM = (b"-----BEGIN%20", b"%2D%2D%2D%2D%2DBEGIN")


@dataclass(frozen=True, slots=True)
class Classified:
    """The store items a file holds, or why a recognised file is not imported."""

    items: tuple[CollateralItem, ...] = ()
    skipped: str | None = None


def classify(data: bytes, source: str) -> Classified:
    """Recognise ``data``; each item's ``source`` is ``source``. ``CollateralInvalid`` when
    it is no collateral this broker knows or does not parse."""
    text = bytes(data).rstrip(b"\x00").strip()
    if text.startswith(_URL_ENCODED_PEM):  # a PCS issuer-chain header saved as is
        data = unquote_to_bytes(text)
        text = data.strip()
    if text.startswith(b"{"):
        return Classified((_json_document(data, source),))
    if text.startswith(_PEM_CRL):
        return Classified(tuple(_crl_item(crl, source) for crl in _crls(text)))
    if text.startswith(_PEM_CERTIFICATE):
        return _certificates(data, source)
    if text.startswith(b"-----BEGIN"):
        raise CollateralInvalid(
            f"PEM block '{text.splitlines()[0].decode(errors='replace')}' "
            "is neither a certificate nor a CRL"
        )
    if data[:1] == b"\x30":  # a DER SEQUENCE: a certificate or a CRL
        try:
            return _certificates(data, source)
        except CollateralInvalid as cert_error:
            try:
                crls = _crls(data)
            except CollateralInvalid:
                raise cert_error from None
            return Classified(tuple(_crl_item(crl, source) for crl in crls))
    raise CollateralInvalid("not collateral: neither JSON, PEM nor DER")


def check_expected(items: Sequence[CollateralItem], tee: str | None, kind: str | None) -> None:
    """``CollateralInvalid`` unless every item is of ``kind`` and for ``tee`` (when given).

    Intel SGX PKI items (PCK and Root CA CRLs, the TCB Signing chain) serve TDX too.
    """
    for item in items:
        found = item.key
        if kind is not None and found.kind != kind:
            raise CollateralInvalid(f"is a {found.kind} ({found.tee}), not a {kind}")
        shared = found.tee == INTEL_PKI and tee == Tee.TDX.value
        if tee is not None and found.tee != tee and not shared:
            raise CollateralInvalid(f"is {found.tee} collateral ({found.kind}), not {tee}")


# --- Intel JSON ------------------------------------------------------------------------------


def _json_document(data: bytes, source: str) -> CollateralItem:
    members = top_level_members(data, "JSON collateral")
    if "tcbInfo" in members:
        info = parse_tcb_info(data).body
        tee = Tee.TDX if info.id == "TDX" else Tee.SGX
        return CollateralItem(tcb_info_key(tee, info.fmspc), bytes(data), info.next_update, source)
    if "enclaveIdentity" in members:
        identity = parse_qe_identity(data).body
        tees = {"TD_QE": Tee.TDX, "QE": Tee.SGX}
        if identity.id not in tees:
            raise CollateralInvalid(
                f"enclaveIdentity.id '{identity.id}' is not a QE identity (QE, TD_QE)"
            )
        key = qe_identity_key(tees[identity.id])
        return CollateralItem(key, bytes(data), identity.next_update, source)
    raise CollateralInvalid(
        f"JSON with members {sorted(members)}: neither TCB Info (tcbInfo) nor QE Identity "
        "(enclaveIdentity)"
    )


# --- CRLs ------------------------------------------------------------------------------------


def _crls(data: bytes) -> list[x509.CertificateRevocationList]:
    try:  # every field parsed at load: nothing below raises a bare cryptography error
        return load_crls(data)
    except MalformedEvidence as exc:
        raise CollateralInvalid(exc.detail) from None


def _crl_item(crl: x509.CertificateRevocationList, source: str) -> CollateralItem:
    issuer = common_name(crl.issuer)
    next_update = crl.next_update_utc
    der = crl.public_bytes(Encoding.DER)
    key = _crl_key(issuer)
    if key is None:
        raise CollateralInvalid(
            f"CRL issuer '{issuer}' is neither an AMD ARK nor an Intel SGX PCK or Root CA"
        )
    return CollateralItem(key, der, next_update, source)


def _crl_key(issuer: str) -> ItemKey | None:
    product = amd_product_of_name(issuer) if issuer.startswith("ARK-") else None
    if product is not None:
        return crl_key(product)
    if "PCK Platform CA" in issuer:
        return pck_crl_key("platform")
    if "PCK Processor CA" in issuer:
        return pck_crl_key("processor")
    if "SGX Root CA" in issuer:
        return ROOT_CRL_ITEM
    return None


# --- certificates ----------------------------------------------------------------------------


def _certificates(data: bytes, source: str) -> Classified:
    try:
        with zero_serial_tolerated():  # AMD issues VCEKs and VLEKs with serial number 0
            certs = load_certificates(data)
    except MalformedEvidence as exc:
        raise CollateralInvalid(exc.detail) from None
    names = [common_name(cert.subject) for cert in certs]
    first = names[0]
    if len(certs) == 1 and first in KIND_BY_COMMON_NAME:
        try:
            ref = endorsement_ref(load_endorsement(data))
        except MalformedEvidence as exc:
            raise CollateralInvalid(f"{first}: {exc.detail}") from None
        body = certs[0].public_bytes(Encoding.DER)
        return Classified((CollateralItem(ref.key, body, None, source),))
    chain_key = _amd_chain_key(names)
    if chain_key is not None:
        return Classified((CollateralItem(chain_key, bytes(data), None, source),))
    if "SGX TCB Signing" in first:
        return Classified((CollateralItem(TCB_SIGNING_ITEM, bytes(data), None, source),))
    if "SGX PCK" in first:
        return Classified(skipped=f"a PCK certificate chain ({first}): quotes carry their own")
    if all(cert.subject == cert.issuer for cert in certs):
        return Classified(skipped=f"a root certificate ({first}): vendor roots are pinned")
    raise CollateralInvalid(
        f"certificates {names}: neither a VCEK/VLEK, an AMD cert_chain nor an Intel TCB "
        "Signing chain"
    )


def _amd_chain_key(names: Sequence[str]) -> ItemKey | None:
    """An AMD ``cert_chain``: one ARK-<product> and its ASK (SEV-<product>) or ASVK
    (SEV-VLEK-<product>), in either order."""
    if len(names) != 2:
        return None
    arks = [name for name in names if name.startswith("ARK-")]
    others = [name for name in names if not name.startswith("ARK-")]
    if len(arks) != 1 or len(others) != 1 or not others[0].startswith("SEV-"):
        return None
    product = amd_product_of_name(arks[0])
    if product is None or amd_product_of_name(others[0]) is not product:
        return None
    kind = "vlek" if others[0].startswith("SEV-VLEK-") else "vcek"
    return cert_chain_key(product, kind)


# --- a whole import --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImportPlan:
    """What importing a set of files would store, skip, and refuse (file, reason)."""

    items: tuple[CollateralItem, ...]
    skipped: tuple[tuple[str, str], ...]
    refused: tuple[tuple[str, str], ...]


def plan_import(
    files: Sequence[tuple[str, bytes]], *, tee: str | None, kind: str | None, actor: str
) -> ImportPlan:
    """Classify every file; two files that land on one key must hold the same document
    (``qe_identity_issuer_chain.pem`` and ``tcb_info_issuer_chain.pem`` both hold the TCB
    Signing chain), else the second is refused."""
    items: dict[ItemKey, tuple[str, CollateralItem]] = {}
    skipped: list[tuple[str, str]] = []
    refused: list[tuple[str, str]] = []
    for name, data in files:
        try:
            found = classify(data, f"import {name} by {actor}")
            check_expected(found.items, tee, kind)
        except CollateralInvalid as exc:
            refused.append((name, exc.detail))
            continue
        if found.skipped is not None:
            skipped.append((name, found.skipped))
        for item in found.items:
            earlier = items.get(item.key)
            if earlier is not None and earlier[1].body != item.body:
                refused.append((name, f"{item.key} differs from the one in {earlier[0]}"))
            elif earlier is None:
                items[item.key] = (name, item)
    return ImportPlan(tuple(item for _, item in items.values()), tuple(skipped), tuple(refused))
